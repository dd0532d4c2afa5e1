// SPDX-License-Identifier: GPL-2.0
/*
 * ioctls on vmresetfs files: the VMM's fast path. Arguments are copied in
 * before vi->lock is taken and out after it is dropped: user memory may be
 * a mapping of the same file, whose faults take vi->lock.
 */

#include <linux/slab.h>
#include <linux/uaccess.h>
#include "vmreset.h"

static bool vmr_all_zero(const void *p, size_t n)
{
	return !memchr_inv(p, 0, n);
}

static long vmr_ioc_features(void __user *argp)
{
	struct vmreset_features f;
	u32 usize;

	if (get_user(usize, (u32 __user *)argp))
		return -EFAULT;
	if (usize < offsetofend(struct vmreset_features, features))
		return -EINVAL;
	memset(&f, 0, sizeof(f));
	f.size = sizeof(f);
	f.api_version = VMRESET_API_VERSION;
	f.features = VMRESET_FEATURE_ALL;
	f.page_size = PAGE_SIZE;
	f.max_preserved = VMRESET_MAX_PRESERVED;
	f.max_list = VMRESET_MAX_LIST;
	if (copy_to_user(argp, &f, min_t(size_t, usize, sizeof(f))))
		return -EFAULT;
	return 0;
}

static long vmr_ioc_snapshot(struct vmr_inode *vi, void __user *argp)
{
	struct vmreset_snapshot s;

	if (copy_from_user(&s, argp, sizeof(s)))
		return -EFAULT;
	if (s.flags & ~VMRESET_SNAPSHOT_F_ALL ||
	    !vmr_all_zero(s.__reserved, sizeof(s.__reserved)))
		return -EINVAL;
	if (vmr_op_snapshot(vi, &s.dirty_pages))
		return -EINTR;
	return copy_to_user(argp, &s, sizeof(s)) ? -EFAULT : 0;
}

static long vmr_ioc_revert(struct vmr_inode *vi, void __user *argp)
{
	struct vmreset_revert r;
	long err;

	if (copy_from_user(&r, argp, sizeof(r)))
		return -EFAULT;
	if (r.flags & ~VMRESET_REVERT_F_ALL ||
	    !vmr_all_zero(r.__reserved, sizeof(r.__reserved)))
		return -EINVAL;
	err = vmr_op_revert(vi, r.flags, &r.reverted_pages, &r.preserved_pages);
	if (err)
		return err;
	return copy_to_user(argp, &r, sizeof(r)) ? -EFAULT : 0;
}

static long vmr_ioc_preserve(struct vmr_inode *vi, void __user *argp)
{
	struct vmreset_preserve p;
	pgoff_t start, end;
	long err;

	if (copy_from_user(&p, argp, sizeof(p)))
		return -EFAULT;
	if (p.flags & ~VMRESET_PRESERVE_F_ALL ||
	    !vmr_all_zero(p.__reserved, sizeof(p.__reserved)))
		return -EINVAL;
	err = vmr_byte_range(p.offset, p.length, &start, &end);
	if (err)
		return err;
	if (p.op != VMRESET_PRESERVE_ADD && p.op != VMRESET_PRESERVE_DEL)
		return -EINVAL;
	return vmr_op_preserve(vi, p.op == VMRESET_PRESERVE_ADD, start, end);
}

#define VMR_LIST_CHUNK	(PAGE_SIZE / sizeof(struct vmreset_range))

/*
 * Dirty: written since the snapshot as the faults saw it (an undo entry),
 * or, for a hot page, different from its snapshot copy.
 */
static bool vmr_dirty_at(struct vmr_inode *vi, pgoff_t idx)
{
	return xa_load(&vi->undo, idx) || vmr_hot_changed(vi, idx);
}

/*
 * Fill up to @max ranges at or after page @idx into @buf; returns how many
 * and sets *@next to where the next call starts (ULONG_MAX: done). One
 * call is one hold of vi->lock: it visits the dirty pages it lists (each
 * next undo entry found in O(log n)) and compares at most VMR_HOT_SCAN
 * clean hot pages on the way before it stops early, so that a big hot set
 * that did not change costs many short holds, not one long one.
 */
static unsigned int vmr_fill_dirty(struct vmr_inode *vi, pgoff_t idx,
				   struct vmreset_range *buf, unsigned int max,
				   pgoff_t *next)
{
	unsigned int n = 0, budget = VMR_HOT_SCAN;

	*next = ULONG_MAX;
	if (!vi->has_snap)
		return 0;
	for (;;) {
		pgoff_t u = idx, stop = ULONG_MAX, end;

		if (!xa_find(&vi->undo, &u, ULONG_MAX - 1, XA_PRESENT))
			u = ULONG_MAX;
		idx = min_t(pgoff_t, u,
			    vmr_hot_next_changed(vi, idx, u, &budget, &stop));
		if (stop != ULONG_MAX) {
			*next = stop;
			break;
		}
		if (idx == ULONG_MAX)
			break;
		if (n == max) {
			*next = idx;
			break;
		}
		for (end = idx + 1; end < ULONG_MAX && vmr_dirty_at(vi, end); end++)
			;
		buf[n].offset = (u64)idx << PAGE_SHIFT;
		buf[n].length = (u64)(end - idx) << PAGE_SHIFT;
		n++;
		idx = end;
	}
	return n;
}

static unsigned int vmr_fill_preserved(struct vmr_inode *vi, pgoff_t idx,
				       struct vmreset_range *buf,
				       unsigned int max, pgoff_t *next)
{
	unsigned int i, n = 0;

	*next = ULONG_MAX;
	for (i = 0; i < vi->nr_preserved; i++) {
		struct vmr_prange r = vi->preserved[i];

		if (r.end <= idx)
			continue;
		if (n == max) {
			*next = max(r.start, idx);
			break;
		}
		r.start = max(r.start, idx);
		buf[n].offset = (u64)r.start << PAGE_SHIFT;
		buf[n].length = (u64)(r.end - r.start) << PAGE_SHIFT;
		n++;
	}
	return n;
}

enum vmr_list_kind { VMR_LIST_PRESERVED, VMR_LIST_DIRTY, VMR_LIST_HOT };

static long vmr_ioc_list(struct vmr_inode *vi, void __user *argp,
			 enum vmr_list_kind kind)
{
	struct vmreset_range_list l;
	struct vmreset_range *buf;
	struct vmreset_range __user *out;
	unsigned int done = 0;
	pgoff_t idx, next = ULONG_MAX;
	long err = 0;

	if (copy_from_user(&l, argp, sizeof(l)))
		return -EFAULT;
	if (l.flags & ~(kind == VMR_LIST_HOT ? VMRESET_LIST_F_EXPLICIT
					     : VMRESET_LIST_F_ALL) ||
	    !vmr_all_zero(l.__reserved, sizeof(l.__reserved)) ||
	    l.nr > VMRESET_MAX_LIST)
		return -EINVAL;
	if (l.cursor == VMRESET_CURSOR_END) {
		l.nr = 0;
		return copy_to_user(argp, &l, sizeof(l)) ? -EFAULT : 0;
	}
	if (!PAGE_ALIGNED(l.cursor) || l.cursor > MAX_LFS_FILESIZE)
		return -EINVAL;
	out = u64_to_user_ptr(l.ranges);
	idx = l.cursor >> PAGE_SHIFT;
	buf = kmalloc_array(VMR_LIST_CHUNK, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	/* Chunks keep the kernel buffer small; the list is not atomic. */
	do {
		unsigned int want = min_t(unsigned int, l.nr - done,
					  VMR_LIST_CHUNK);
		unsigned int n;

		mutex_lock(&vi->lock);
		if (kind == VMR_LIST_DIRTY)
			n = vmr_fill_dirty(vi, idx, buf, want, &next);
		else if (kind == VMR_LIST_HOT)
			n = vmr_fill_hot(vi, idx, buf, want, &next,
					 l.flags & VMRESET_LIST_F_EXPLICIT);
		else
			n = vmr_fill_preserved(vi, idx, buf, want, &next);
		mutex_unlock(&vi->lock);
		if (n && copy_to_user(out + done, buf, n * sizeof(*buf))) {
			err = -EFAULT;
			break;
		}
		done += n;
		idx = next;
	} while (next != ULONG_MAX && done < l.nr);
	kfree(buf);
	if (err)
		return err;
	l.nr = done;
	l.cursor = next == ULONG_MAX ? VMRESET_CURSOR_END
				     : (u64)next << PAGE_SHIFT;
	return copy_to_user(argp, &l, sizeof(l)) ? -EFAULT : 0;
}

static long vmr_ioc_stats(struct vmr_inode *vi, void __user *argp)
{
	struct vmreset_stats s;
	u32 usize;

	if (get_user(usize, (u32 __user *)argp))
		return -EFAULT;
	if (usize < offsetofend(struct vmreset_stats, reverted_pages))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	/*
	 * The counters in one O(1) hold of vi->lock; the two counts that no
	 * counter can keep walk the file after it, in short holds of their
	 * own (vmr_count_shared()).
	 */
	mutex_lock(&vi->lock);
	if (vi->has_snap)
		s.flags |= VMRESET_STATS_F_SNAPSHOT;
	s.file_size = i_size_read(&vi->vfs_inode);
	s.snapshot_size = vi->snap_size;
	s.resident_pages = vi->nr_pages;
	s.undo_pages = vi->nr_undo_pages;
	s.dirty_pages = vi->nr_dirty;
	s.preserved_ranges = vi->nr_preserved;
	s.cow_faults = atomic64_read(&vi->cow_faults);
	s.faults = atomic64_read(&vi->faults);
	s.id = vi->id;
	s.snapshots = vi->snapshots;
	s.reverts = vi->reverts;
	s.reverted_pages = vi->reverted_pages;
	s.hot_pages = vi->nr_hot;
	s.hot_promotions = vi->hot_promotions;
	s.hot_demotions = vi->hot_demotions;
	s.hot_copies = vi->hot_copies;
	s.cached_pages = vi->nr_kept;
	s.cached_hits = vi->kept_hits;
	s.cached_reclaimed = vi->kept_reclaimed;
	mutex_unlock(&vi->lock);
	s.shared_pages = vmr_count_shared(vi);
	/* As DIRTY lists them: hot pages count when they changed. */
	s.dirty_pages += vmr_hot_count_changed(vi);
	if (copy_to_user(argp, &s, min_t(size_t, usize, sizeof(s))))
		return -EFAULT;
	return 0;
}

long vmr_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct vmr_inode *vi = VMR_I(file_inode(file));
	void __user *argp = (void __user *)arg;
	bool writer = file->f_mode & FMODE_WRITE;

	switch (cmd) {
	case VMRESET_IOC_FEATURES:
		return vmr_ioc_features(argp);
	case VMRESET_IOC_SNAPSHOT:
		return writer ? vmr_ioc_snapshot(vi, argp) : -EBADF;
	case VMRESET_IOC_REVERT:
		return writer ? vmr_ioc_revert(vi, argp) : -EBADF;
	case VMRESET_IOC_PRESERVE:
		return writer ? vmr_ioc_preserve(vi, argp) : -EBADF;
	case VMRESET_IOC_PRESERVE_LIST:
		return vmr_ioc_list(vi, argp, VMR_LIST_PRESERVED);
	case VMRESET_IOC_DIRTY:
		return vmr_ioc_list(vi, argp, VMR_LIST_DIRTY);
	case VMRESET_IOC_STATS:
		return vmr_ioc_stats(vi, argp);
	case VMRESET_IOC_HOT:
		return writer ? vmr_ioc_hot(vi, argp) : -EBADF;
	case VMRESET_IOC_HOT_LIST:
		return vmr_ioc_list(vi, argp, VMR_LIST_HOT);
	case VMRESET_IOC_HOT_CONFIG:
		return vmr_ioc_hot_config(vi, argp, writer);
	}
	return -ENOTTY;
}
