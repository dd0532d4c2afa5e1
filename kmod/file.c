// SPDX-License-Identifier: GPL-2.0
/*
 * vmresetfs regular files: read/write, mmap with write-notify, truncation,
 * fallocate and reflink clones. Every path that changes content goes
 * through vmr_write_begin() or vmr_remove_range(), so REVERT sees it.
 */

#include <linux/falloc.h>
#include <linux/highmem.h>
#include <linux/moduleparam.h>
#include <linux/pagemap.h>
#include <linux/uio.h>
#include "vmreset.h"

static inline pgoff_t size_pages(loff_t size)
{
	return DIV_ROUND_UP(size, PAGE_SIZE);
}

static vm_fault_t vmr_fault(struct vm_fault *vmf)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	struct vmr_inode *vi = VMR_I(inode);
	pgoff_t idx = vmf->pgoff;
	struct page *page;

	if (idx >= size_pages(i_size_read(inode)))
		return VM_FAULT_SIGBUS;
	page = vmr_get_page(vi, idx);
	if (!page) {
		int err;

		/*
		 * MAP_SHARED needs a real page even for a read of a hole. For
		 * a write, record the hole as the snapshot content right away
		 * rather than copying a zero page in page_mkwrite.
		 */
		mutex_lock(&vi->lock);
		/* Truncated meanwhile: no page past EOF. */
		if (idx >= size_pages(i_size_read(inode))) {
			mutex_unlock(&vi->lock);
			return VM_FAULT_SIGBUS;
		}
		if (vmf->flags & FAULT_FLAG_WRITE) {
			bool replaced;

			page = vmr_write_begin(vi, idx, &replaced);
			err = PTR_ERR_OR_ZERO(page);
			if (!err) {
				unlock_page(page);
				put_page(page);
			}
		} else {
			err = vmr_fill_hole(vi, idx);
		}
		mutex_unlock(&vi->lock);
		if (err)
			return vmf_error(err);
		page = vmr_get_page(vi, idx);
		if (!page)
			return VM_FAULT_NOPAGE;
	}
	lock_page(page);
	if (xa_load(&vi->pages, idx) != page) {
		/* Reverted, cloned over or truncated meanwhile: fault again. */
		unlock_page(page);
		put_page(page);
		return VM_FAULT_NOPAGE;
	}
	atomic64_inc(&vi->faults);
	vmf->page = page;
	return VM_FAULT_LOCKED;
}

/*
 * 1: page_mkwrite makes the copy a first write needs before it takes
 * vi->lock; 0: under it, as it used to. Writable for A/B measurement
 * (selftests/revert_cost.c, first_writes_in_threads).
 */
static bool copy_unlocked = true;
module_param(copy_unlocked, bool, 0644);
MODULE_PARM_DESC(copy_unlocked,
		 "first writes copy the page before taking the file's lock (default 1)");

/*
 * The first write through a PTE after the page was mapped or write-
 * protected: this is where a guest's (or the VMM's) write is caught.
 */
static vm_fault_t vmr_page_mkwrite(struct vm_fault *vmf)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	struct vmr_inode *vi = VMR_I(inode);
	struct vmr_sb *sbi = VMR_SB(inode->i_sb);
	struct page *page, *pre = NULL;
	pgoff_t idx = vmf->pgoff;
	vm_fault_t ret;
	bool replaced;
	u64 gen;

	/*
	 * The first write since the snapshot (or to a page shared with a
	 * clone) needs a copy of the page. Make it before taking vi->lock,
	 * so that vCPUs faulting on different pages do not serialise on
	 * the allocation and the copy; it is used only if nothing changed
	 * the page's state meanwhile (vi->gen, and the checks under the
	 * lock), and freed otherwise. A page reverted recently has a kept
	 * copy for this (kept.c) and needs none.
	 */
	gen = READ_ONCE(vi->gen);
	smp_rmb();
	if (READ_ONCE(copy_unlocked) &&
	    ((READ_ONCE(vi->has_snap) && !xa_load(&vi->undo, idx) &&
	      !vmr_is_hot(vi, idx) && !vmr_kept_has(vi, idx)) ||
	     page_private(vmf->page) > 1)) {
		pre = vmr_alloc_page(sbi, vmf->page);
		if (IS_ERR(pre))
			pre = NULL;	/* try again under the lock */
	}

	mutex_lock(&vi->lock);
	/*
	 * Past EOF (a truncation or a REVERT that shrank the file raced this
	 * fault) nothing may be written: SIGBUS, as the fault handler gives.
	 */
	if (idx >= size_pages(i_size_read(inode))) {
		ret = VM_FAULT_SIGBUS;
		goto out_unlock;
	}
	/* Replaced meanwhile, and so unmapped: map the new one. */
	if (xa_load(&vi->pages, idx) != vmf->page) {
		ret = VM_FAULT_NOPAGE;
		goto out_unlock;
	}
	page = vmr_write_begin_pre(vi, idx, &replaced,
				   vi->gen == gen ? &pre : NULL);
	if (IS_ERR(page)) {
		ret = vmf_error(PTR_ERR(page));
		goto out_unlock;
	}
	if (replaced) {
		/* A private copy replaced a shared page: map the copy. */
		unlock_page(page);
		put_page(page);
		ret = VM_FAULT_NOPAGE;
		goto out_unlock;
	}
	xa_set_mark(&vi->pages, idx, VMR_MARK_WRITABLE);
	mutex_unlock(&vi->lock);
	/* The fault holds its own reference; keep the page lock for it. */
	put_page(page);
	if (pre)
		vmr_put_page(sbi, pre);
	return VM_FAULT_LOCKED;

out_unlock:
	mutex_unlock(&vi->lock);
	if (pre)
		vmr_put_page(sbi, pre);
	return ret;
}

const struct vm_operations_struct vmr_vm_ops = {
	.fault		= vmr_fault,
	.page_mkwrite	= vmr_page_mkwrite,
};

static int vmr_mmap(struct file *file, struct vm_area_struct *vma)
{
	/*
	 * A private mapping would give the guest anonymous copies that no
	 * snapshot tracks. VM_MAYSHARE, not VM_SHARED: a shared mapping of a
	 * read-only fd loses VM_SHARED but is still shared.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	file_accessed(file);
	vma->vm_ops = &vmr_vm_ops;
	return 0;
}

/*
 * Copy out of one of our pages, never hand the page itself over. On 6.1,
 * generic_file_splice_read() reads into a pipe iterator, where
 * copy_page_to_iter() puts a reference to the page into the pipe as a page
 * cache buffer: the pipe then shows later writes to the page, and a
 * consumer that steals the buffer (FUSE with SPLICE_F_MOVE) calls
 * remove_mapping() on page->mapping, our anchor, which does not contain the
 * page (docs/design.md, "page->mapping"). copy_to_iter() gives a pipe a copy
 * in a page of its own, as copy_splice_read() does on 6.5 and later.
 */
static size_t vmr_copy_to_iter(struct page *page, size_t off, size_t n,
			       struct iov_iter *to)
{
	void *kaddr = kmap_local_page(page);
	size_t copied = copy_to_iter(kaddr + off, n, to);

	kunmap_local(kaddr);
	return copied;
}

static ssize_t vmr_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct inode *inode = file_inode(iocb->ki_filp);
	struct vmr_inode *vi = VMR_I(inode);
	loff_t pos = iocb->ki_pos;
	ssize_t done = 0;

	while (iov_iter_count(to)) {
		loff_t size = i_size_read(inode);
		size_t off = offset_in_page(pos), n, copied;
		struct page *page;

		if (pos >= size)
			break;
		n = min_t(u64, PAGE_SIZE - off, size - pos);
		n = min(n, iov_iter_count(to));
		/* No lock held: the buffer may be a mapping of this file. */
		page = vmr_get_page(vi, pos >> PAGE_SHIFT);
		if (page) {
			copied = vmr_copy_to_iter(page, off, n, to);
			put_page(page);
		} else {
			copied = iov_iter_zero(n, to);
		}
		pos += copied;
		done += copied;
		if (copied < n) {
			if (!done)
				done = -EFAULT;
			break;
		}
		cond_resched();
	}
	iocb->ki_pos = pos;
	file_accessed(iocb->ki_filp);
	return done;
}

/* Write @len bytes of @src (NULL: zeros) at @pos; vi->lock held. */
static int vmr_write_page(struct vmr_inode *vi, loff_t pos, const void *src,
			  size_t len)
{
	struct page *page;
	bool replaced;

	page = vmr_write_begin(vi, pos >> PAGE_SHIFT, &replaced);
	if (IS_ERR(page))
		return PTR_ERR(page);
	if (src)
		memcpy_to_page(page, offset_in_page(pos), src, len);
	else
		memzero_page(page, offset_in_page(pos), len);
	unlock_page(page);
	put_page(page);
	return 0;
}

static ssize_t vmr_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct file *file = iocb->ki_filp;
	struct inode *inode = file_inode(file);
	struct vmr_inode *vi = VMR_I(inode);
	ssize_t done = 0, ret;
	void *bounce;
	loff_t pos;

	bounce = (void *)__get_free_page(GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	inode_lock(inode);
	ret = generic_write_checks(iocb, from);
	if (ret <= 0)
		goto out;
	ret = file_remove_privs(file);
	if (ret)
		goto out;
	ret = file_update_time(file);
	if (ret)
		goto out;
	pos = iocb->ki_pos;
	while (iov_iter_count(from)) {
		size_t n = min_t(size_t, PAGE_SIZE - offset_in_page(pos),
				 iov_iter_count(from));

		/*
		 * Copy in before taking vi->lock: the source may be a
		 * mapping of this very file, whose faults take vi->lock.
		 */
		n = copy_from_iter(bounce, n, from);
		if (!n) {
			ret = -EFAULT;
			break;
		}
		mutex_lock(&vi->lock);
		ret = vmr_write_page(vi, pos, bounce, n);
		/*
		 * The size moves with the page, under vi->lock: a SNAPSHOT
		 * in between would take the bytes without the size, and a
		 * REVERT to it would leave them past EOF.
		 */
		if (!ret && pos + n > i_size_read(inode))
			i_size_write(inode, pos + n);
		mutex_unlock(&vi->lock);
		if (ret)
			break;
		pos += n;
		done += n;
		cond_resched();
	}
	iocb->ki_pos = pos;
out:
	inode_unlock(inode);
	free_page((unsigned long)bounce);
	return done ? done : ret;
}

/* Zero [pos, end) within one page, if that page exists. */
static int vmr_zero_partial(struct vmr_inode *vi, loff_t pos, loff_t end)
{
	if (pos >= end || !xa_load(&vi->pages, pos >> PAGE_SHIFT))
		return 0;
	return vmr_write_page(vi, pos, NULL, end - pos);
}

/*
 * Make the page vmr_zero_partial(@pos, @end) would zero private and
 * tracked, as a write to it would, without changing its content: the
 * zeroing after this cannot fail.
 */
static int vmr_prepare_partial(struct vmr_inode *vi, loff_t pos, loff_t end)
{
	struct page *page;
	bool replaced;

	if (pos >= end || !xa_load(&vi->pages, pos >> PAGE_SHIFT))
		return 0;
	page = vmr_write_begin(vi, pos >> PAGE_SHIFT, &replaced);
	if (IS_ERR(page))
		return PTR_ERR(page);
	unlock_page(page);
	put_page(page);
	return 0;
}

/*
 * Zero [start, end) byte-wise at the edges and remove the pages in between
 * (all of them from @start on if @to_end: truncation). All or nothing: the
 * steps that can fail (a copy of an edge page, the undo slots) come first.
 */
static int vmr_punch(struct vmr_inode *vi, loff_t start, loff_t end,
		     bool to_end)
{
	loff_t first = round_up(start, PAGE_SIZE);
	loff_t last = round_down(end, PAGE_SIZE);
	pgoff_t rm_end = to_end ? ULONG_MAX : last >> PAGE_SHIFT;
	int err;

	if (first > last)	/* within one page */
		return vmr_zero_partial(vi, start, end);
	err = vmr_prepare_partial(vi, start, first);
	if (!err)
		err = vmr_prepare_partial(vi, last, end);
	if (!err)
		err = vmr_remove_prepare(vi, first >> PAGE_SHIFT, rm_end);
	if (err)
		return err;
	/* Prepared pages: private and tracked, so no allocation below. */
	vmr_zero_partial(vi, start, first);
	vmr_zero_partial(vi, last, end);
	vmr_remove_commit(vi, first >> PAGE_SHIFT, rm_end);
	return 0;
}

/* Called with inode_lock held. */
int vmr_setsize(struct inode *inode, loff_t newsize)
{
	struct vmr_inode *vi = VMR_I(inode);
	loff_t oldsize = i_size_read(inode);
	int err = 0;

	mutex_lock(&vi->lock);
	if (newsize >= oldsize) {
		/* Under vi->lock, as every size change: SNAPSHOT reads it. */
		i_size_write(inode, newsize);
		goto out;
	}
	if (vmr_range_preserved(vi, newsize >> PAGE_SHIFT, ULONG_MAX)) {
		err = -EBUSY;
		goto out;
	}
	/*
	 * Bytes past EOF in the last page read as zero when it grows again;
	 * pages past the old EOF (fallocate with KEEP_SIZE) go too. On an
	 * error nothing has changed.
	 */
	i_size_write(inode, newsize);
	err = vmr_punch(vi, newsize, round_up(oldsize, PAGE_SIZE), true);
	if (err)
		i_size_write(inode, oldsize);
out:
	mutex_unlock(&vi->lock);
	return err;
}

static long vmr_fallocate(struct file *file, int mode, loff_t offset,
			  loff_t len)
{
	struct inode *inode = file_inode(file);
	struct vmr_inode *vi = VMR_I(inode);
	loff_t end = offset + len;
	long err = 0;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
		return -EOPNOTSUPP;

	inode_lock(inode);
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		end = min(end, i_size_read(inode));
		if (offset >= end)
			goto out;
		mutex_lock(&vi->lock);
		if (vmr_range_preserved(vi, offset >> PAGE_SHIFT,
					size_pages(end)))
			err = -EBUSY;
		else
			err = vmr_punch(vi, offset, end, false);
		mutex_unlock(&vi->lock);
	} else {
		pgoff_t idx;

		err = inode_newsize_ok(inode, end);
		if (err)
			goto out;
		/* Preallocation adds zero pages: no content changes. */
		for (idx = offset >> PAGE_SHIFT; idx < size_pages(end); idx++) {
			mutex_lock(&vi->lock);
			err = vmr_fill_hole(vi, idx);
			mutex_unlock(&vi->lock);
			if (err)
				break;
			if (fatal_signal_pending(current)) {
				err = -EINTR;
				break;
			}
			cond_resched();
		}
		mutex_lock(&vi->lock);
		if (!err && !(mode & FALLOC_FL_KEEP_SIZE) &&
		    end > i_size_read(inode))
			i_size_write(inode, end);
		mutex_unlock(&vi->lock);
	}
	if (!err)
		vmr_touch_mc(inode);
out:
	inode_unlock(inode);
	return err;
}

loff_t vmr_remap_file_range(struct file *file_in, loff_t pos_in,
			    struct file *file_out, loff_t pos_out, loff_t len,
			    unsigned int remap_flags)
{
	struct inode *src = file_inode(file_in), *dst = file_inode(file_out);
	struct vmr_inode *svi = VMR_I(src), *dvi = VMR_I(dst);
	struct vmr_inode *first = svi < dvi ? svi : dvi;
	struct vmr_inode *second = svi < dvi ? dvi : svi;
	loff_t ret;

	if (remap_flags & REMAP_FILE_DEDUP)
		return -EOPNOTSUPP;
	if (remap_flags & ~(REMAP_FILE_CAN_SHORTEN | REMAP_FILE_ADVISORY))
		return -EINVAL;

	lock_two_nondirectories(src, dst);
	/* Alignment (s_blocksize is the page size), EOF and overlap checks. */
	ret = generic_remap_file_range_prep(file_in, pos_in, file_out, pos_out,
					    &len, remap_flags);
	if (ret < 0 || len == 0)
		goto out_unlock;
	/*
	 * A clone to the source's EOF may end mid-page; sharing that page
	 * would replace the destination's bytes after pos_out + len.
	 */
	ret = -EINVAL;
	if (!PAGE_ALIGNED(len) && pos_out + len < i_size_read(dst))
		goto out_unlock;
	ret = 0;

	mutex_lock(&first->lock);
	if (second != first)
		mutex_lock_nested(&second->lock, SINGLE_DEPTH_NESTING);
	if (vmr_range_preserved(dvi, pos_out >> PAGE_SHIFT,
				size_pages(pos_out + len))) {
		ret = -EBUSY;
	} else {
		ret = vmr_clone_pages(svi, pos_in >> PAGE_SHIFT, dvi,
				      pos_out >> PAGE_SHIFT, size_pages(len));
		if (!ret && pos_out + len > i_size_read(dst))
			i_size_write(dst, pos_out + len);
	}
	if (second != first)
		mutex_unlock(&second->lock);
	mutex_unlock(&first->lock);
	if (!ret)
		vmr_touch_mc(dst);
out_unlock:
	unlock_two_nondirectories(src, dst);
	return ret < 0 ? ret : len;
}

const struct file_operations vmr_file_ops = {
	.owner			= THIS_MODULE,
	.llseek			= generic_file_llseek,
	.read_iter		= vmr_read_iter,
	.write_iter		= vmr_write_iter,
	.mmap			= vmr_mmap,
	.fsync			= noop_fsync,
	.fallocate		= vmr_fallocate,
	.unlocked_ioctl		= vmr_ioctl,
	.compat_ioctl		= compat_ptr_ioctl,
	.remap_file_range	= vmr_remap_file_range,
	.splice_read		= vmr_splice_read,
	.splice_write		= iter_file_splice_write,
};

bool vmr_is_vmr_file(struct file *file)
{
	return file->f_op == &vmr_file_ops;
}
