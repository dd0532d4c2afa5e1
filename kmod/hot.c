// SPDX-License-Identifier: GPL-2.0
/*
 * Hot pages: pages that stay mapped writable across SNAPSHOT and REVERT and
 * keep a private copy of their snapshot content, which REVERT copies back
 * in place. Nothing is unmapped, so KVM keeps its mappings and the guest's
 * next run takes no fault on them. Because writes to a hot page are never
 * caught, everything about it is decided by content: a hot page is dirty
 * iff it differs from its copy.
 *
 * All of it runs under vi->lock. An index enters the hot set only where the
 * move is exact (a private page now and a private page at the snapshot,
 * outside preserved ranges); anything that would share, remove or keep the
 * page (clones, punch, truncate, PRESERVE ADD) demotes it first, which turns
 * it back into an ordinary clean or dirty index.
 */

#include <linux/highmem.h>
#include <linux/sort.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "vmreset.h"

static inline struct vmr_sb *vi_sb(struct vmr_inode *vi)
{
	return VMR_SB(vi->vfs_inode.i_sb);
}

void vmr_hot_init(struct vmr_inode *vi, struct vmr_sb *sbi)
{
	xa_init(&vi->hot);
	xa_init(&vi->hist);
	vi->nr_hot = 0;
	vi->nr_explicit = 0;
	vi->hot_mode = sbi ? sbi->hot_mode : VMRESET_HOT_EXPLICIT;
	vi->hot_max = sbi ? min(VMR_HOT_FILE_MAX, sbi->hot_max) : 0;
	vi->learn_k = 2;
	vi->learn_n = 4;
	vi->hot_promotions = 0;
	vi->hot_demotions = 0;
	vi->hot_copies = 0;
}

static bool vmr_pages_differ(struct page *a, struct page *b)
{
	void *pa = kmap_local_page(a);
	void *pb = kmap_local_page(b);
	bool ret = memcmp(pa, pb, PAGE_SIZE);

	kunmap_local(pb);
	kunmap_local(pa);
	return ret;
}

/* Is hot @idx different from its snapshot copy? */
bool vmr_hot_changed(struct vmr_inode *vi, pgoff_t idx)
{
	struct page *copy = xa_load(&vi->hot, idx);

	if (!copy || xa_is_value(copy))
		return false;
	return vmr_pages_differ(xa_load(&vi->pages, idx), copy);
}

/*
 * The first hot index in [@idx, @limit) that changed, or ULONG_MAX. The
 * limit keeps a dirty list walk linear: it never compares a page twice.
 * It compares at most *@budget pages (and takes them off it): when the
 * budget runs out first, *@stop is set to the index the walk must go on
 * at (nothing before it changed) and ULONG_MAX returned.
 */
unsigned long vmr_hot_next_changed(struct vmr_inode *vi, pgoff_t idx,
				   pgoff_t limit, unsigned int *budget,
				   pgoff_t *stop)
{
	unsigned long i;
	void *e;

	if (idx >= limit)
		return ULONG_MAX;
	xa_for_each_range(&vi->hot, i, e, idx, limit - 1) {
		if (xa_is_value(e))
			continue;
		if (!*budget) {
			*stop = i;
			return ULONG_MAX;
		}
		--*budget;
		if (vmr_pages_differ(xa_load(&vi->pages, i), e))
			return i;
	}
	return ULONG_MAX;
}

static bool vmr_hot_changed_one(struct vmr_inode *vi, unsigned long idx,
				void *entry, unsigned long *n)
{
	/* VMR_WANT: not hot, nothing to compare. */
	if (xa_is_value(entry))
		return false;
	if (vmr_pages_differ(xa_load(&vi->pages, idx), entry))
		(*n)++;
	return true;
}

/*
 * Hot pages that differ from their snapshot copy: the dirty ones. Writes
 * to hot pages are never caught, so no counter can know this; the walk
 * compares VMR_HOT_SCAN pages per hold of vi->lock (which keeps the
 * copies alive), not the whole hot set at once.
 */
unsigned long vmr_hot_count_changed(struct vmr_inode *vi)
{
	unsigned long n = 0;

	vmr_walk_chunked(vi, &vi->hot, VMR_HOT_SCAN, vmr_hot_changed_one, &n);
	return n;
}

/*
 * Take one slot of the file's and the mount's bound, if there is room.
 * Learned pages leave room for the whole explicit set.
 */
static bool vmr_hot_take(struct vmr_inode *vi, bool learned)
{
	struct vmr_sb *sbi = vi_sb(vi);

	if (vi->hot_mode == VMRESET_HOT_OFF || vi->nr_hot >= vi->hot_max ||
	    (learned && vi->nr_hot + vi->nr_explicit >= vi->hot_max))
		return false;
	if (atomic_long_inc_return(&sbi->hot_pages) > (long)READ_ONCE(sbi->hot_max)) {
		atomic_long_dec(&sbi->hot_pages);
		return false;
	}
	vi->nr_hot++;
	vi->hot_promotions++;
	return true;
}

static void vmr_hot_release(struct vmr_inode *vi)
{
	atomic_long_dec(&vi_sb(vi)->hot_pages);
	vi->nr_hot--;
}

/*
 * Make @idx hot now, if that is exact and there is room. A dirty index
 * moves its undo page over (the next REVERT copies it back); a clean one
 * gets a copy of its current page. The page's PTEs stay as they are: a
 * read-only one takes one last write fault, which no longer tracks it.
 */
static bool vmr_hot_promote(struct vmr_inode *vi, pgoff_t idx, bool learned)
{
	struct page *cur = xa_load(&vi->pages, idx), *copy;
	void *saved = xa_load(&vi->undo, idx);
	void *e = xa_load(&vi->hot, idx);
	pgoff_t next;
	int err;

	if (!vi->has_snap || !cur || page_private(cur) != 1 ||
	    (e && !xa_is_value(e)) ||
	    (saved && (xa_is_value(saved) ||
		       page_private((struct page *)saved) != 1)) ||
	    vmr_preserved_at(vi, idx, &next))
		return false;
	if (!vmr_hot_take(vi, learned))
		return false;
	if (saved) {
		copy = saved;
	} else {
		bool stale = false;

		/* A kept copy (kept.c) is the copy, or a page for it. */
		copy = vmr_kept_take(vi, idx, &stale);
		if (!copy)
			copy = vmr_alloc_page(vi_sb(vi), cur);
		else if (!IS_ERR(copy) && stale)
			copy_highpage(copy, cur);
		if (IS_ERR(copy))
			goto err_release;
	}
	/* Over VMR_WANT this replaces a present entry and cannot fail. */
	err = xa_err(xa_store(&vi->hot, idx, copy, GFP_KERNEL));
	if (err) {
		if (!saved)
			vmr_put_page(vi_sb(vi), copy);
		goto err_release;
	}
	if (saved) {
		xa_erase(&vi->undo, idx);
		vi->nr_dirty--;
		vi->nr_undo_pages--;
	}
	WRITE_ONCE(vi->gen, vi->gen + 1);
	return true;

err_release:
	vmr_hot_release(vi);
	vi->hot_promotions--;
	return false;
}

/*
 * Make hot @idx ordinary: dirty (its copy becomes the undo page) if it
 * changed, clean otherwise. Returns 1 if the caller must write-protect
 * @idx (a clean page must not keep writable PTEs), 0, or an error.
 */
static int vmr_hot_demote(struct vmr_inode *vi, pgoff_t idx, struct page *copy)
{
	struct page *cur = xa_load(&vi->pages, idx);
	bool explicit = xa_get_mark(&vi->hot, idx, VMR_MARK_EXPLICIT);
	int ret = 0, err;

	if (vmr_pages_differ(cur, copy)) {
		err = vmr_save_undo(vi, idx, copy);
		if (err)
			return err;
	} else {
		/* Clean: the copy is what its next first write needs. */
		if (!vmr_kept_add(vi, idx, copy, false))
			vmr_put_page(vi_sb(vi), copy);
		ret = 1;
	}
	if (explicit)
		xa_store(&vi->hot, idx, VMR_WANT, GFP_KERNEL);
	else
		xa_erase(&vi->hot, idx);
	vmr_hot_release(vi);
	vi->hot_demotions++;
	WRITE_ONCE(vi->gen, vi->gen + 1);
	return ret;
}

/* Demote the hot pages in [start, end) (only learned ones if asked). */
static int vmr_hot_demote_where(struct vmr_inode *vi, pgoff_t start,
				pgoff_t end, bool learned_only)
{
	pgoff_t wp_start = ULONG_MAX, wp_end = 0;
	unsigned long idx;
	int ret = 0;
	void *e;

	if (!vi->nr_hot || start >= end)
		return 0;
	xa_for_each_range(&vi->hot, idx, e, start, end - 1) {
		if (xa_is_value(e) ||
		    (learned_only && xa_get_mark(&vi->hot, idx, VMR_MARK_EXPLICIT)))
			continue;
		ret = vmr_hot_demote(vi, idx, e);
		if (ret < 0)
			break;
		if (ret) {
			wp_start = min(wp_start, idx);
			wp_end = idx + 1;
		}
		ret = 0;
		cond_resched();
	}
	/* Dirty writable pages in between lose write access too: harmless. */
	if (wp_start < wp_end)
		vmr_wrprotect(vi, wp_start, wp_end);
	vmr_update_blocks(vi);
	return ret;
}

int vmr_hot_demote_range(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	lockdep_assert_held(&vi->lock);
	return vmr_hot_demote_where(vi, start, end, false);
}

void vmr_hot_free_all(struct vmr_inode *vi)
{
	unsigned long idx;
	void *e;

	xa_for_each(&vi->hot, idx, e) {
		if (!xa_is_value(e))
			vmr_put_page(vi_sb(vi), e);
	}
	atomic_long_sub(vi->nr_hot, &vi_sb(vi)->hot_pages);
	xa_destroy(&vi->hot);
	xa_destroy(&vi->hist);
	vi->nr_hot = 0;
	vi->nr_explicit = 0;
}

/* Promote every explicitly wanted index that can be hot. */
static void vmr_hot_promote_wanted(struct vmr_inode *vi, pgoff_t start,
				   pgoff_t end)
{
	unsigned long idx;
	void *e;

	if (vi->hot_mode == VMRESET_HOT_OFF || !vi->has_snap || start >= end)
		return;
	xa_for_each_range(&vi->hot, idx, e, start, end - 1) {
		if (e == VMR_WANT)
			vmr_hot_promote(vi, idx, false);
		cond_resched();
	}
}

/*
 * SNAPSHOT: the current content of hot pages becomes their snapshot
 * content (copied only where it changed), and wanted pages are promoted.
 * Returns how many hot pages changed. Runs before the file's writable
 * pages are write-protected, so the new hot pages keep their PTEs.
 */
u64 vmr_hot_snapshot(struct vmr_inode *vi)
{
	unsigned long idx;
	u64 n = 0;
	void *e;

	xa_for_each(&vi->hot, idx, e) {
		struct page *cur;

		if (xa_is_value(e))
			continue;
		cur = xa_load(&vi->pages, idx);
		if (vmr_pages_differ(cur, e)) {
			copy_highpage(e, cur);
			n++;
		}
		cond_resched();
	}
	/* has_snap may be false on the first snapshot: promote after it. */
	return n;
}

void vmr_hot_after_snapshot(struct vmr_inode *vi)
{
	vmr_hot_promote_wanted(vi, 0, ULONG_MAX);
	vmr_update_blocks(vi);
}

/*
 * Learning. @hist holds, for each index dirtied in the last reverts, a value
 * entry: the number of the revert that last saw it (upper bits) and a mask
 * of the VMR_HIST_BITS reverts before it, bit 0 being that revert. A mask
 * is brought up to date lazily, by shifting when the entry is next used;
 * entries too old to matter are pruned every VMR_HIST_BITS reverts.
 */
#define VMR_HIST_BITS	VMRESET_HOT_MAX_LEARN_N
#define VMR_HIST_MASK	((1UL << VMR_HIST_BITS) - 1)

static unsigned long vmr_hist_mask(unsigned long v, u64 now)
{
	u64 last = v >> VMR_HIST_BITS;
	u64 d = now - last;

	if (now < last || d >= VMR_HIST_BITS)
		return 0;
	return (v << d) & VMR_HIST_MASK;
}

/* Record whether @idx was dirty in revert @now; returns the new mask. */
static unsigned long vmr_hist_note(struct vmr_inode *vi, pgoff_t idx,
				   bool dirty)
{
	u64 now = vi->reverts & (ULONG_MAX >> (VMR_HIST_BITS + 1));
	void *e = xa_load(&vi->hist, idx);
	unsigned long mask = e ? vmr_hist_mask(xa_to_value(e), now) : 0;

	if (dirty)
		mask |= 1;
	if (!mask) {
		if (e)
			xa_erase(&vi->hist, idx);
		return 0;
	}
	/* Best effort: without memory the page is just not learned. */
	xa_store(&vi->hist, idx,
		 xa_mk_value((unsigned long)now << VMR_HIST_BITS | mask),
		 GFP_KERNEL);
	return mask;
}

static bool vmr_learning(struct vmr_inode *vi)
{
	return vi->hot_mode == VMRESET_HOT_LEARN;
}

/* Drop history too old to matter; cost O(pages dirtied lately). */
static void vmr_hist_prune(struct vmr_inode *vi)
{
	u64 now = vi->reverts & (ULONG_MAX >> (VMR_HIST_BITS + 1));
	unsigned long idx;
	void *e;

	if (vi->reverts % VMR_HIST_BITS)
		return;
	xa_for_each(&vi->hist, idx, e) {
		if (!vmr_hist_mask(xa_to_value(e), now))
			xa_erase(&vi->hist, idx);
		cond_resched();
	}
}

/*
 * REVERT, for a dirty index about to be reverted: promote it instead if it
 * is wanted, or, when learning, if it was dirty in learn_k of the last
 * learn_n reverts. Its content is then restored by vmr_hot_revert().
 */
bool vmr_hot_try_promote(struct vmr_inode *vi, pgoff_t idx)
{
	void *e = xa_load(&vi->hot, idx);
	unsigned long mask;

	if (e == VMR_WANT)
		return vmr_hot_promote(vi, idx, false);
	if (!vmr_learning(vi))
		return false;
	mask = vmr_hist_note(vi, idx, true);
	if (hweight_long(mask & ((1UL << vi->learn_n) - 1)) < vi->learn_k)
		return false;
	return vmr_hot_promote(vi, idx, true);
}

/*
 * REVERT: copy back every hot page that changed; returns how many. When
 * learning, a learned page unchanged in the last learn_n reverts is demoted
 * (clean, so its PTEs are write-protected: one notifier round per run).
 */
u64 vmr_hot_revert(struct vmr_inode *vi, bool dry_run)
{
	bool learn = !dry_run && vmr_learning(vi);
	pgoff_t wp_start = ULONG_MAX, wp_end = 0;
	unsigned long idx;
	u64 n = 0;
	void *e;

	xa_for_each(&vi->hot, idx, e) {
		struct page *cur;
		bool changed;

		if (xa_is_value(e))
			continue;
		cur = xa_load(&vi->pages, idx);
		changed = vmr_pages_differ(cur, e);
		if (changed) {
			if (!dry_run) {
				copy_highpage(cur, e);
				vi->hot_copies++;
			}
			n++;
		}
		if (learn && !xa_get_mark(&vi->hot, idx, VMR_MARK_EXPLICIT) &&
		    !(vmr_hist_note(vi, idx, changed) & ((1UL << vi->learn_n) - 1))) {
			/* Restored and unchanged: demoting cannot fail. */
			if (vmr_hot_demote(vi, idx, e) == 1) {
				wp_start = min(wp_start, idx);
				wp_end = idx + 1;
			}
		}
		cond_resched();
	}
	if (wp_start < wp_end)
		vmr_wrprotect(vi, wp_start, wp_end);
	if (learn)
		vmr_hist_prune(vi);
	return n;
}

/* HOT_LIST: up to @max ranges at or after @idx; as vmr_fill_dirty(). */
unsigned int vmr_fill_hot(struct vmr_inode *vi, pgoff_t idx,
			  struct vmreset_range *buf, unsigned int max,
			  pgoff_t *next, bool explicit)
{
	xa_mark_t filter = explicit ? VMR_MARK_EXPLICIT : XA_PRESENT;
	unsigned int n = 0;
	void *e;

	*next = ULONG_MAX;
	while ((e = xa_find(&vi->hot, &idx, ULONG_MAX - 1, filter))) {
		pgoff_t end = idx + 1;

		if (!explicit && xa_is_value(e)) {
			idx++;
			continue;
		}
		if (n == max) {
			*next = idx;
			break;
		}
		for (;;) {
			void *x = xa_load(&vi->hot, end);

			if (end == ULONG_MAX || !x ||
			    (explicit ? !xa_get_mark(&vi->hot, end, VMR_MARK_EXPLICIT)
				      : xa_is_value(x)))
				break;
			end++;
		}
		buf[n].offset = (u64)idx << PAGE_SHIFT;
		buf[n].length = (u64)(end - idx) << PAGE_SHIFT;
		n++;
		idx = end;
		if (idx == ULONG_MAX)
			break;
	}
	return n;
}

static int vmr_prange_cmp(const void *a, const void *b)
{
	const struct vmr_prange *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Sort and merge @r in place; returns the new count. */
static unsigned int vmr_prange_merge(struct vmr_prange *r, unsigned int nr)
{
	unsigned int i, n = 0;

	if (!nr)
		return 0;
	sort(r, nr, sizeof(*r), vmr_prange_cmp, NULL);
	for (i = 1; i < nr; i++) {
		if (r[i].start <= r[n].end)
			r[n].end = max(r[n].end, r[i].end);
		else
			r[++n] = r[i];
	}
	return n + 1;
}

static bool vmr_prange_has(const struct vmr_prange *r, unsigned int nr,
			   pgoff_t idx)
{
	unsigned int lo = 0, hi = nr;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (r[mid].end <= idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nr && r[lo].start <= idx;
}

/* Remove the explicit set in [start, end) (where @keep does not hold it). */
static int vmr_hot_unwant(struct vmr_inode *vi, pgoff_t start, pgoff_t end,
			  const struct vmr_prange *keep, unsigned int nkeep)
{
	unsigned long idx;
	int err = 0;
	void *e;

	if (start >= end)
		return 0;
	xa_for_each_range(&vi->hot, idx, e, start, end - 1) {
		if (!xa_get_mark(&vi->hot, idx, VMR_MARK_EXPLICIT) ||
		    (keep && vmr_prange_has(keep, nkeep, idx)))
			continue;
		if (!xa_is_value(e)) {
			/* Demote while still marked, so it becomes VMR_WANT. */
			err = vmr_hot_demote_where(vi, idx, idx + 1, false);
			if (err)
				break;
		}
		xa_erase(&vi->hot, idx);
		vi->nr_explicit--;
		cond_resched();
	}
	return err;
}

static int vmr_hot_want(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	pgoff_t idx;
	int err;

	for (idx = start; idx < end; idx++) {
		void *e = xa_load(&vi->hot, idx);

		if (e && xa_get_mark(&vi->hot, idx, VMR_MARK_EXPLICIT))
			continue;
		if (!e) {
			err = xa_err(xa_store(&vi->hot, idx, VMR_WANT, GFP_KERNEL));
			if (err)
				return err;
		}
		xa_set_mark(&vi->hot, idx, VMR_MARK_EXPLICIT);
		vi->nr_explicit++;
		cond_resched();
	}
	return 0;
}

/* Pages of @r (merged) not yet in the explicit set; stops past @limit. */
static unsigned long vmr_hot_count_new(struct vmr_inode *vi,
				       const struct vmr_prange *r,
				       unsigned int nr, unsigned long limit)
{
	unsigned long n = 0;
	unsigned int i;
	pgoff_t idx;

	for (i = 0; i < nr; i++) {
		if (r[i].end - r[i].start > limit + vi->nr_explicit)
			return limit + 1;
		for (idx = r[i].start; idx < r[i].end; idx++) {
			if (!xa_get_mark(&vi->hot, idx, VMR_MARK_EXPLICIT) &&
			    ++n > limit)
				return n;
		}
	}
	return n;
}

/* HOT ADD/DEL/SET with page ranges @r (sorted and merged here). */
int vmr_hot_apply(struct vmr_inode *vi, u32 op, struct vmr_prange *r,
		  unsigned int nr)
{
	unsigned long total = 0;
	unsigned int i;
	int err = 0;

	lockdep_assert_held(&vi->lock);
	nr = vmr_prange_merge(r, nr);
	switch (op) {
	case VMRESET_HOT_ADD:
		if (vmr_hot_count_new(vi, r, nr, vi->hot_max - vi->nr_explicit) >
		    vi->hot_max - vi->nr_explicit)
			return -ENOSPC;
		break;
	case VMRESET_HOT_SET:
		for (i = 0; i < nr; i++) {
			total += r[i].end - r[i].start;
			if (total > vi->hot_max)
				return -ENOSPC;
		}
		err = vmr_hot_unwant(vi, 0, ULONG_MAX, r, nr);
		break;
	case VMRESET_HOT_DEL:
		for (i = 0; i < nr && !err; i++)
			err = vmr_hot_unwant(vi, r[i].start, r[i].end, NULL, 0);
		vmr_update_blocks(vi);
		return err;
	default:
		return -EINVAL;
	}
	for (i = 0; i < nr && !err; i++) {
		err = vmr_hot_want(vi, r[i].start, r[i].end);
		if (!err)
			vmr_hot_promote_wanted(vi, r[i].start, r[i].end);
	}
	vmr_update_blocks(vi);
	return err;
}

int vmr_hot_config(struct vmr_inode *vi, struct vmreset_hot_config *c)
{
	struct vmr_sb *sbi = vi_sb(vi);
	int err = 0;

	lockdep_assert_held(&vi->lock);
	if (c->flags & ~VMRESET_HOT_CFG_ALL)
		return -EINVAL;
	if ((c->flags & VMRESET_HOT_CFG_MODE) && c->mode > VMRESET_HOT_LEARN)
		return -EINVAL;
	if ((c->flags & VMRESET_HOT_CFG_KEPT) &&
	    c->kept_max > READ_ONCE(sbi->kept_max))
		return -EINVAL;
	if (c->flags & VMRESET_HOT_CFG_MAX) {
		if (c->max_pages > READ_ONCE(sbi->hot_max))
			return -EINVAL;
		if (c->max_pages < vi->nr_explicit)
			return -EBUSY;
	}
	if ((c->flags & VMRESET_HOT_CFG_LEARN) &&
	    (!c->learn_n || c->learn_n > VMRESET_HOT_MAX_LEARN_N ||
	     !c->learn_k || c->learn_k > c->learn_n))
		return -EINVAL;

	if (c->flags & VMRESET_HOT_CFG_LEARN) {
		vi->learn_k = c->learn_k;
		vi->learn_n = c->learn_n;
	}
	if (c->flags & VMRESET_HOT_CFG_KEPT)
		vmr_kept_set_max(vi, c->kept_max);
	if (c->flags & VMRESET_HOT_CFG_MAX) {
		vi->hot_max = c->max_pages;
		/* The explicit set fits: dropping learned pages is enough. */
		if (vi->nr_hot > vi->hot_max)
			err = vmr_hot_demote_where(vi, 0, ULONG_MAX, true);
	}
	if (!err && (c->flags & VMRESET_HOT_CFG_MODE)) {
		vi->hot_mode = c->mode;
		if (c->mode == VMRESET_HOT_OFF)
			err = vmr_hot_demote_where(vi, 0, ULONG_MAX, false);
		else if (c->mode == VMRESET_HOT_EXPLICIT)
			err = vmr_hot_demote_where(vi, 0, ULONG_MAX, true);
		/* The history only serves learning. */
		if (c->mode != VMRESET_HOT_LEARN)
			xa_destroy(&vi->hist);
		if (!err)
			vmr_hot_promote_wanted(vi, 0, ULONG_MAX);
		vmr_update_blocks(vi);
	}
	c->mode = vi->hot_mode;
	c->max_pages = vi->hot_max;
	c->learn_k = vi->learn_k;
	c->learn_n = vi->learn_n;
	c->explicit_pages = vi->nr_explicit;
	c->hot_pages = vi->nr_hot;
	c->mount_max_pages = READ_ONCE(sbi->hot_max);
	c->mount_hot_pages = atomic_long_read(&sbi->hot_pages);
	c->kept_max = vi->kept_max;
	c->kept_pages = vi->nr_kept;
	return err;
}

long vmr_ioc_hot(struct vmr_inode *vi, void __user *argp)
{
	struct vmreset_range __user *ur;
	struct vmreset_hot h;
	struct vmr_prange *r;
	unsigned int i;
	long err;

	if (copy_from_user(&h, argp, sizeof(h)))
		return -EFAULT;
	if (h.flags & ~VMRESET_HOT_F_ALL || h.__reserved[0] || h.__reserved[1] ||
	    h.nr > VMRESET_MAX_LIST || h.op < VMRESET_HOT_ADD ||
	    h.op > VMRESET_HOT_SET)
		return -EINVAL;
	r = kvmalloc_array(max(h.nr, 1U), sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	/* Copied in before vi->lock: the array may be in a mapping of ours. */
	ur = u64_to_user_ptr(h.ranges);
	for (i = 0; i < h.nr; i++) {
		struct vmreset_range b;

		err = -EFAULT;
		if (copy_from_user(&b, ur + i, sizeof(b)))
			goto out;
		err = vmr_byte_range(b.offset, b.length, &r[i].start, &r[i].end);
		if (err)
			goto out;
	}
	mutex_lock(&vi->lock);
	err = vmr_hot_apply(vi, h.op, r, h.nr);
	mutex_unlock(&vi->lock);
out:
	kvfree(r);
	return err;
}

long vmr_ioc_hot_config(struct vmr_inode *vi, void __user *argp, bool writer)
{
	struct vmreset_hot_config c;
	long err;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.flags && !writer)
		return -EBADF;
	mutex_lock(&vi->lock);
	err = vmr_hot_config(vi, &c);
	mutex_unlock(&vi->lock);
	if (err)
		return err;
	return copy_to_user(argp, &c, sizeof(c)) ? -EFAULT : 0;
}
