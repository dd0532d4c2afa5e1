// SPDX-License-Identifier: GPL-2.0
/*
 * The page state machine of a vmresetfs file: holes, clean, dirty and shared
 * pages, and the transitions SNAPSHOT, REVERT, writes, truncation and clones
 * drive. docs/design.md walks through it.
 *
 * Locking: inode_lock (size changes) > vmr_inode.lock (all state changes)
 * > page lock. An entry of @pages is only replaced or removed while its page
 * is locked, and the fault handler locks the page and re-checks the entry
 * before it installs a PTE, so a fault never maps a page that has left the
 * file. PTEs are removed after the entry changed (or before, with a
 * page_mapped() re-check under the page lock), and a page is freed only
 * after its PTEs are gone.
 */

#include <linux/highmem.h>
#include <linux/moduleparam.h>
#include <linux/pagemap.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include "vmreset.h"

static inline struct vmr_sb *vi_sb(struct vmr_inode *vi)
{
	return VMR_SB(vi->vfs_inode.i_sb);
}

static inline struct address_space *vi_mapping(struct vmr_inode *vi)
{
	return vi->vfs_inode.i_mapping;
}

/* Remove the PTEs (and so KVM's mappings) of [start, end). */
void vmr_unmap(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	if (start < end)
		unmap_mapping_pages(vi_mapping(vi), start, end - start, false);
}

/*
 * Gaps of up to this many pages between dirty pages are covered by the same
 * unmap (one MMU notifier round, one TLB flush) when nothing maps them.
 */
static unsigned int merge_gap = 32;
module_param(merge_gap, uint, 0644);
MODULE_PARM_DESC(merge_gap,
		 "merge unmaps across up to this many unmapped pages (0: never)");

/* Is [from, to) short and mapped by nobody, so an unmap may cover it? */
static bool vmr_gap_unmapped(struct vmr_inode *vi, pgoff_t from, pgoff_t to)
{
	pgoff_t i;

	if (to - from > READ_ONCE(merge_gap))
		return false;
	for (i = from; i < to; i++) {
		struct page *page = xa_load(&vi->pages, i);

		if (page && page_mapped(page))
			return false;
	}
	return true;
}

void vmr_update_blocks(struct vmr_inode *vi)
{
	vi->vfs_inode.i_blocks = (blkcnt_t)(vi->nr_pages + vi->nr_undo_pages +
					    vi->nr_hot) << (PAGE_SHIFT - 9);
}

/*
 * A new page holding zeros, or a copy of @copy_from. page_private() counts
 * the xarray slots that hold the page; each slot also holds a reference.
 */
struct page *vmr_alloc_page(struct vmr_sb *sbi, struct page *copy_from)
{
	gfp_t gfp = GFP_HIGHUSER | __GFP_ACCOUNT;
	struct page *page;

	if (atomic_long_inc_return(&sbi->used_pages) >
	    (long)READ_ONCE(sbi->max_pages)) {
		atomic_long_dec(&sbi->used_pages);
		return ERR_PTR(-ENOSPC);
	}
	if (!copy_from)
		gfp |= __GFP_ZERO;
	page = alloc_page(gfp);
	if (!page) {
		atomic_long_dec(&sbi->used_pages);
		return ERR_PTR(-ENOMEM);
	}
	if (copy_from)
		copy_highpage(page, copy_from);
	/* Always valid content, for anything in the kernel that asks. */
	SetPageUptodate(page);
	page->mapping = sbi->anchor->i_mapping;
	page->index = 0;
	set_page_private(page, 1);
	return page;
}

/* Drop one slot's hold on @page; the caller made sure no PTE maps it. */
void vmr_put_page(struct vmr_sb *sbi, struct page *page)
{
	bool last;

	lock_page(page);
	last = page_private(page) == 1;
	set_page_private(page, page_private(page) - 1);
	/* The free path reports "Bad page state" for a page with a mapping. */
	if (last)
		page->mapping = NULL;
	unlock_page(page);
	if (last)
		atomic_long_dec(&sbi->used_pages);
	put_page(page);
}

/* The current page at @idx with a reference, or NULL for a hole. */
struct page *vmr_get_page(struct vmr_inode *vi, pgoff_t idx)
{
	struct page *page;

	xa_lock(&vi->pages);
	page = xa_load(&vi->pages, idx);
	if (page)
		get_page(page);
	xa_unlock(&vi->pages);
	return page;
}

/* A copy of @page: the caller's (see vmr_write_begin_pre()) or a new one. */
static struct page *vmr_take_pre(struct vmr_sb *sbi, struct page *page,
				 struct page **pre)
{
	struct page *new;

	if (pre && *pre) {
		new = *pre;
		*pre = NULL;
		return new;
	}
	return vmr_alloc_page(sbi, page);
}

/* Is the next write to @idx the first since the snapshot? Not if hot. */
static inline bool vmr_tracking(struct vmr_inode *vi, pgoff_t idx)
{
	return vi->has_snap && !xa_load(&vi->undo, idx) && !vmr_is_hot(vi, idx);
}

/* Record @old (a page or VMR_HOLE) as the snapshot content of @idx. */
int vmr_save_undo(struct vmr_inode *vi, pgoff_t idx, void *old)
{
	int err = xa_err(xa_store(&vi->undo, idx, old, GFP_KERNEL));

	if (err)
		return err;
	/* A dirty index keeps no copy: the undo entry is its copy now. */
	vmr_kept_drop(vi, idx);
	vi->nr_dirty++;
	if (!xa_is_value(old))
		vi->nr_undo_pages++;
	return 0;
}

static void vmr_forget_undo(struct vmr_inode *vi, pgoff_t idx, void *old)
{
	xa_erase(&vi->undo, idx);
	vi->nr_dirty--;
	if (!xa_is_value(old))
		vi->nr_undo_pages--;
}

/*
 * Prepare the page at @idx for a write in place: fill a hole, break sharing
 * with clones, and save the snapshot content on the first write since the
 * snapshot. Returns the page locked and with a reference. *@replaced tells
 * the caller that a new page took the place of one that was mapped (its
 * PTEs are gone already): a fault must be retried to map the new one.
 * Either everything is done or, on an error, nothing.
 *
 * *@pre, if set, is a copy of the page at @idx that the caller made without
 * vi->lock, while vi->gen had its current value: it is used instead of
 * allocating and copying here (and *@pre cleared), or left to the caller.
 */
struct page *vmr_write_begin_pre(struct vmr_inode *vi, pgoff_t idx,
				 bool *replaced, struct page **pre)
{
	struct vmr_sb *sbi = vi_sb(vi);
	bool track = vmr_tracking(vi, idx);
	struct page *page, *new;
	int err;

	lockdep_assert_held(&vi->lock);
	*replaced = false;
	page = xa_load(&vi->pages, idx);
	if (!page) {
		new = vmr_alloc_page(sbi, NULL);
		if (IS_ERR(new))
			return new;
		if (track) {
			err = vmr_save_undo(vi, idx, VMR_HOLE);
			if (err)
				goto err_put_new;
		}
		err = xa_err(xa_store(&vi->pages, idx, new, GFP_KERNEL));
		if (err) {
			if (track)
				vmr_forget_undo(vi, idx, VMR_HOLE);
			goto err_put_new;
		}
		vi->nr_pages++;
		vmr_update_blocks(vi);
		get_page(new);
		lock_page(new);
		return new;
	}

	lock_page(page);
	if (page_private(page) > 1) {
		/* Shared with a clone: the writer gets a private copy. */
		new = vmr_take_pre(sbi, page, pre);
		if (IS_ERR(new)) {
			unlock_page(page);
			return new;
		}
		if (track) {
			err = vmr_save_undo(vi, idx, page);
			if (err) {
				unlock_page(page);
				goto err_put_new;
			}
		}
		/* Replacing a present entry allocates nothing: cannot fail. */
		xa_store(&vi->pages, idx, new, GFP_KERNEL);
		xa_clear_mark(&vi->pages, idx, VMR_MARK_WRITABLE);
		/*
		 * Our PTEs of the old page go before our slot does: once the
		 * slot is dropped, the last other holder may write the page
		 * in place, and a reader here must not see that.
		 */
		unmap_mapping_pages(vi_mapping(vi), idx, 1, false);
		unlock_page(page);
		if (!track)
			vmr_put_page(sbi, page);
		atomic64_inc(&vi->cow_faults);
		vmr_update_blocks(vi);
		*replaced = true;
		get_page(new);
		lock_page(new);
		return new;
	}

	if (track) {
		bool stale = false;

		/*
		 * Copy before write: the page itself stays mapped. A kept
		 * copy (kept.c) holds this content already, or is at least
		 * a page: no allocation, and no copy unless stale.
		 */
		new = vmr_kept_take(vi, idx, &stale);
		if (!new)
			new = vmr_take_pre(sbi, page, pre);
		else if (!IS_ERR(new) && stale)
			copy_highpage(new, page);
		if (IS_ERR(new)) {
			unlock_page(page);
			return new;
		}
		err = vmr_save_undo(vi, idx, new);
		if (err) {
			unlock_page(page);
			goto err_put_new;
		}
		atomic64_inc(&vi->cow_faults);
		vmr_update_blocks(vi);
	}
	get_page(page);
	return page;

err_put_new:
	vmr_put_page(sbi, new);
	return ERR_PTR(err);
}

struct page *vmr_write_begin(struct vmr_inode *vi, pgoff_t idx, bool *replaced)
{
	return vmr_write_begin_pre(vi, idx, replaced, NULL);
}

/* Back a hole with a zero page; not a change of content, so not dirty. */
int vmr_fill_hole(struct vmr_inode *vi, pgoff_t idx)
{
	struct page *page;
	int err;

	lockdep_assert_held(&vi->lock);
	if (xa_load(&vi->pages, idx))
		return 0;
	page = vmr_alloc_page(vi_sb(vi), NULL);
	if (IS_ERR(page))
		return PTR_ERR(page);
	err = xa_err(xa_store(&vi->pages, idx, page, GFP_KERNEL));
	if (err) {
		vmr_put_page(vi_sb(vi), page);
		return err;
	}
	vi->nr_pages++;
	vmr_update_blocks(vi);
	return 0;
}

/*
 * The fallible part of removing [start, end): demote hot pages (which
 * changes no content) and reserve an undo slot for every page the removal
 * will track, so that vmr_remove_commit() cannot fail.
 */
int vmr_remove_prepare(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	struct page *page;
	unsigned long idx;
	int err;

	lockdep_assert_held(&vi->lock);
	if (start >= end)
		return 0;
	err = vmr_hot_demote_range(vi, start, end);
	if (err || !vi->has_snap)
		return err;
	xa_for_each_range(&vi->pages, idx, page, start, end - 1) {
		if (!vmr_tracking(vi, idx))
			continue;
		err = xa_reserve(&vi->undo, idx, GFP_KERNEL);
		if (err) {
			vmr_remove_cancel(vi, start, idx);
			return err;
		}
		cond_resched();
	}
	return 0;
}

/* Give back what vmr_remove_prepare() reserved in [start, end). */
void vmr_remove_cancel(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	struct page *page;
	unsigned long idx;

	if (start >= end)
		return;
	/* xa_release() leaves a real entry alone. */
	xa_for_each_range(&vi->pages, idx, page, start, end - 1)
		xa_release(&vi->undo, idx);
}

/* Take @page out of @pages at @idx; the caller unmapped the index. */
static void vmr_erase_page(struct vmr_inode *vi, pgoff_t idx, struct page *page)
{
	lock_page(page);
	xa_erase(&vi->pages, idx);
	/* A fault may have mapped it again since the caller's unmap. */
	if (page_mapped(page))
		unmap_mapping_pages(vi_mapping(vi), idx, 1, false);
	unlock_page(page);
	vi->nr_pages--;
}

/*
 * Make [start, end) holes, as truncate and hole punching do. With a
 * snapshot this is a write like any other: a clean page moves to @undo.
 * After vmr_remove_prepare() over the range, this cannot fail.
 */
void vmr_remove_commit(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	struct vmr_sb *sbi = vi_sb(vi);
	struct page *page;
	unsigned long idx;

	lockdep_assert_held(&vi->lock);
	if (start >= end)
		return;
	vmr_kept_drop_range(vi, start, end);
	vmr_unmap(vi, start, end);
	xa_for_each_range(&vi->pages, idx, page, start, end - 1) {
		bool track = vmr_tracking(vi, idx);

		/* Into the reserved slot: allocates nothing. */
		if (track)
			vmr_save_undo(vi, idx, page);
		vmr_erase_page(vi, idx, page);
		if (!track)
			vmr_put_page(sbi, page);
		cond_resched();
	}
	vmr_update_blocks(vi);
}

/* All or nothing. */
int vmr_remove_range(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	int err = vmr_remove_prepare(vi, start, end);

	if (!err)
		vmr_remove_commit(vi, start, end);
	return err;
}

/* Free everything; the inode is going away and nothing maps it. */
void vmr_free_all(struct vmr_inode *vi)
{
	struct vmr_sb *sbi = vi_sb(vi);
	unsigned long idx;
	void *entry;

	xa_for_each(&vi->pages, idx, entry) {
		vmr_put_page(sbi, entry);
		cond_resched();
	}
	xa_for_each(&vi->undo, idx, entry) {
		if (!xa_is_value(entry))
			vmr_put_page(sbi, entry);
		cond_resched();
	}
	vmr_hot_free_all(vi);
	vmr_kept_drop_range(vi, 0, ULONG_MAX);
	xa_destroy(&vi->pages);
	xa_destroy(&vi->undo);
	vi->nr_pages = 0;
	vi->nr_undo_pages = 0;
	vi->nr_dirty = 0;
}

/*
 * Take away write access from the pages in [start, end) that may have it,
 * so that the next write to them faults into page_mkwrite again. Hot pages
 * keep theirs: nothing tracks their writes.
 */
static void __vmr_wrprotect(struct vmr_inode *vi, pgoff_t start, pgoff_t end,
			    bool keep_dirty)
{
	pgoff_t run_start = 0, run_end = 0;
	struct page *page;
	unsigned long idx;

	if (start >= end)
		return;
	for (idx = start;
	     (page = xa_find(&vi->pages, &idx, end - 1, VMR_MARK_WRITABLE));
	     idx++) {
		if (vmr_is_hot(vi, idx) ||
		    (keep_dirty && xa_load(&vi->undo, idx))) {
			if (idx == end - 1)
				break;
			continue;
		}
		/*
		 * A fault that page_mkwrite let through before we took
		 * vi->lock holds the page lock until its PTE is in place:
		 * wait for it, or the unmap below could run before it.
		 */
		lock_page(page);
		unlock_page(page);
		xa_clear_mark(&vi->pages, idx, VMR_MARK_WRITABLE);
		if (idx != run_end &&
		    !(run_end && vmr_gap_unmapped(vi, run_end, idx))) {
			vmr_unmap(vi, run_start, run_end);
			run_start = idx;
		}
		run_end = idx + 1;
		if (idx == end - 1)
			break;
	}
	vmr_unmap(vi, run_start, run_end);
}

void vmr_wrprotect(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	__vmr_wrprotect(vi, start, end, false);
}

/*
 * A page pinned for DMA (FOLL_LONGTERM: io_uring fixed buffers, RDMA,
 * VFIO) is written without a fault, so write protection cannot catch its
 * next write. 6.12 refuses such pins on our write-notify mappings; 6.1 does
 * not. SNAPSHOT keeps every pinned page dirty instead, its snapshot content
 * in a copy, and writable (so the next SNAPSHOT looks at it again), and
 * REVERT restores it like any dirty page. Only a page made writable since
 * the last snapshot can be pinned for writing: a pin faults it in for write.
 */
static void vmr_snapshot_pinned(struct vmr_inode *vi)
{
	struct page *page, *copy;
	unsigned long idx;

	xa_for_each_marked(&vi->pages, idx, page, VMR_MARK_WRITABLE) {
		if (!folio_maybe_dma_pinned(page_folio(page)) ||
		    vmr_is_hot(vi, idx))
			continue;
		copy = vmr_alloc_page(vi_sb(vi), page);
		if (!IS_ERR(copy) && vmr_save_undo(vi, idx, copy)) {
			vmr_put_page(vi_sb(vi), copy);
			copy = ERR_PTR(-ENOMEM);
		}
		if (IS_ERR(copy)) {
			pr_warn_ratelimited("file %llu: no memory to track pinned page %lu\n",
					    vi->id, idx);
			continue;
		}
		cond_resched();
	}
}

u64 vmr_snapshot(struct vmr_inode *vi)
{
	struct vmr_sb *sbi = vi_sb(vi);
	u64 folded = vi->nr_dirty;
	unsigned long idx;
	void *entry;

	lockdep_assert_held(&vi->lock);
	xa_for_each(&vi->undo, idx, entry) {
		if (!xa_is_value(entry))
			vmr_put_page(sbi, entry);
	}
	xa_destroy(&vi->undo);
	vi->nr_dirty = 0;
	vi->nr_undo_pages = 0;
	folded += vmr_hot_snapshot(vi);
	vi->has_snap = true;
	/* Before write-protecting: the pages promoted keep their PTEs. */
	vmr_hot_after_snapshot(vi);
	vmr_snapshot_pinned(vi);
	__vmr_wrprotect(vi, 0, ULONG_MAX, true);
	vi->snap_size = i_size_read(&vi->vfs_inode);
	vi->snapshots++;
	WRITE_ONCE(vi->gen, vi->gen + 1);
	vmr_update_blocks(vi);
	return folded;
}

/*
 * Is @idx preserved? *@next is the first index after @idx where the answer
 * changes (ULONG_MAX if never).
 */
bool vmr_preserved_at(struct vmr_inode *vi, pgoff_t idx, pgoff_t *next)
{
	unsigned int lo = 0, hi = vi->nr_preserved;

	/* First range that ends after idx. */
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (vi->preserved[mid].end <= idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == vi->nr_preserved) {
		*next = ULONG_MAX;
		return false;
	}
	if (vi->preserved[lo].start <= idx) {
		*next = vi->preserved[lo].end;
		return true;
	}
	*next = vi->preserved[lo].start;
	return false;
}

bool vmr_range_preserved(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	pgoff_t next;

	if (start >= end)
		return false;
	return vmr_preserved_at(vi, start, &next) || next < end;
}

/*
 * Can @page (at @idx, locked, its PTEs gone) or @saved be written into and
 * kept by this file alone? Only with one slot each and no other reference:
 * a fault about to map @page again holds one, and so do a pin or a reader
 * in the middle of a copy, any of which could see the write or write after
 * it. Mapped PTEs hold references too, so this also says that none is left.
 */
static bool vmr_page_alone(struct page *page)
{
	return page_private(page) == 1 && page_count(page) == 1;
}

/*
 * Give @idx its snapshot content back. A hole where the snapshot had a page
 * (a truncated or punched page) needs a slot in @pages, which
 * vmr_revert_reserve() made: this cannot fail.
 *
 * With keep_copies=1 a written page takes its snapshot content back in
 * place and the undo page is kept (kept.c), so the next first write takes
 * it back without allocating or copying; with keep_copies=2 the undo page
 * becomes current as before and the written page is kept as a spare.
 */
static void vmr_revert_one(struct vmr_inode *vi, pgoff_t idx, void *saved)
{
	struct page *page = xa_load(&vi->pages, idx);
	unsigned int keep = vmr_keep_mode();

	if (page) {
		lock_page(page);
		/* A fault may have mapped it again since the run's unmap. */
		if (page_mapped(page))
			unmap_mapping_pages(vi_mapping(vi), idx, 1, false);
	}
	xa_erase(&vi->undo, idx);
	vi->nr_dirty--;
	if (!xa_is_value(saved))
		vi->nr_undo_pages--;
	if (keep == 1 && page && !xa_is_value(saved) && vmr_page_alone(page) &&
	    vmr_page_alone(saved) && vmr_kept_add(vi, idx, saved, false)) {
		copy_highpage(page, saved);
		xa_clear_mark(&vi->pages, idx, VMR_MARK_WRITABLE);
		unlock_page(page);
		return;
	}
	if (xa_is_value(saved)) {
		xa_erase(&vi->pages, idx);
	} else {
		xa_store(&vi->pages, idx, saved, GFP_KERNEL);
		xa_clear_mark(&vi->pages, idx, VMR_MARK_WRITABLE);
		vi->nr_pages++;
	}
	if (page) {
		vi->nr_pages--;
		unlock_page(page);
		if (keep != 2 || xa_is_value(saved) || !vmr_page_alone(page) ||
		    !vmr_kept_add(vi, idx, page, true))
			vmr_put_page(vi_sb(vi), page);
	}
}

/* Fold the dirty pages of a preserved run into the snapshot. */
static void vmr_keep_run(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	unsigned long idx;
	void *saved;

	xa_for_each_range(&vi->undo, idx, saved, start, end - 1) {
		vmr_forget_undo(vi, idx, saved);
		if (!xa_is_value(saved))
			vmr_put_page(vi_sb(vi), saved);
	}
	vmr_wrprotect(vi, start, end);
}

/* Revert the dirty pages in [start, end), none of them preserved or hot. */
static void vmr_revert_batch(struct vmr_inode *vi, pgoff_t start, pgoff_t end,
			     u64 *reverted)
{
	unsigned long i;
	void *saved;

	if (start >= end)
		return;
	/* One MMU notifier round for the batch. */
	vmr_unmap(vi, start, end);
	xa_for_each_range(&vi->undo, i, saved, start, end - 1) {
		vmr_revert_one(vi, i, saved);
		(*reverted)++;
	}
	cond_resched();
}

/* Give back the slots vmr_revert_reserve() made below @upto and not used. */
static void vmr_revert_unreserve(struct vmr_inode *vi, pgoff_t upto)
{
	unsigned long idx;
	void *saved;

	if (!upto)
		return;
	xa_for_each_range(&vi->undo, idx, saved, 0, upto - 1)
		if (!xa_is_value(saved))
			xa_release(&vi->pages, idx);
}

/*
 * REVERT must not fail part way (a half-reverted file, or a preserved run
 * folded into the snapshot by a REVERT that then failed): reserve, before
 * anything changes, the @pages slot of every dirty index whose snapshot
 * page comes back into a hole.
 */
static int vmr_revert_reserve(struct vmr_inode *vi)
{
	unsigned long idx;
	void *saved;
	pgoff_t next;
	int err;

	xa_for_each(&vi->undo, idx, saved) {
		if (xa_is_value(saved) || xa_load(&vi->pages, idx) ||
		    vmr_preserved_at(vi, idx, &next))
			continue;
		err = xa_reserve(&vi->pages, idx, GFP_KERNEL);
		if (err) {
			vmr_revert_unreserve(vi, idx);
			return err;
		}
		cond_resched();
	}
	return 0;
}

/*
 * The size after REVERT: the snapshot's, or up to the end of the last
 * preserved range that starts below the current end of file (capped at
 * it), so that preserved pages written past the old end of file stay
 * reachable. A range that starts past EOF (it may lie anywhere) does not
 * count. Range ends are at most MAX_LFS_FILESIZE (vmr_byte_range()).
 */
static loff_t vmr_revert_size(struct vmr_inode *vi)
{
	loff_t isize = i_size_read(&vi->vfs_inode);
	pgoff_t eof = DIV_ROUND_UP(isize, PAGE_SIZE);
	unsigned int i;

	for (i = vi->nr_preserved; i-- > 0;) {
		/* Sorted and disjoint: the first from the top has the end. */
		if (vi->preserved[i].start < eof)
			return max_t(loff_t, vi->snap_size,
				     min_t(u64, (u64)vi->preserved[i].end << PAGE_SHIFT,
					   isize));
	}
	return vi->snap_size;
}

/*
 * Remove the pages of [start, end) after REVERT shrank the file over them
 * or restored them past its new end:
 * clean pages (a read fault in the grown tail fills a hole with a zero page
 * without tracking it) would otherwise stay mapped past EOF, where
 * page_mkwrite refuses every write. Past the snapshot's EOF they hold
 * nothing of the snapshot, so nothing is tracked.
 */
static void vmr_revert_trim(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	struct vmr_sb *sbi = vi_sb(vi);
	struct page *page;
	unsigned long idx;

	if (start >= end)
		return;
	vmr_kept_drop_range(vi, start, end);
	if (!xa_find(&vi->pages, &start, end - 1, XA_PRESENT))
		return;
	vmr_unmap(vi, start, end);
	xa_for_each_range(&vi->pages, idx, page, start, end - 1) {
		/* Demoted before the walk; never removed under its copy. */
		if (vmr_is_hot(vi, idx))
			continue;
		vmr_erase_page(vi, idx, page);
		vmr_put_page(sbi, page);
		cond_resched();
	}
}

/*
 * All or nothing: an error (ENOMEM) comes before anything has changed.
 * Called with inode_lock held (the size changes) and vi->lock.
 */
int vmr_revert(struct vmr_inode *vi, bool dry_run, u64 *reverted, u64 *kept)
{
	pgoff_t bs = 0, be = 0;		/* the batch being gathered */
	loff_t size = 0;
	unsigned long idx = 0;
	int err;

	lockdep_assert_held(&vi->lock);
	*reverted = 0;
	*kept = 0;
	if (!vi->has_snap)
		return -ENODATA;
	if (!dry_run) {
		size = vmr_revert_size(vi);
		/* Hot pages in the tail to be cut off become ordinary first. */
		err = vmr_hot_demote_range(vi, DIV_ROUND_UP(size, PAGE_SIZE),
					   ULONG_MAX);
		if (!err)
			err = vmr_revert_reserve(vi);
		if (err)
			return err;
		WRITE_ONCE(vi->gen, vi->gen + 1);
	}

	/*
	 * Walk the dirty pages in order. Ordinary ones gather into batches
	 * that one unmap covers: consecutive pages, or pages apart by a gap
	 * nothing maps. A preserved run, or a page promoted to hot (which
	 * must stay mapped), ends a batch.
	 */
	while (xa_find(&vi->undo, &idx, ULONG_MAX - 1, XA_PRESENT)) {
		pgoff_t next, end;

		if (vmr_preserved_at(vi, idx, &next)) {
			for (end = idx + 1; end < next && xa_load(&vi->undo, end); end++)
				;
			if (!dry_run)
				vmr_revert_batch(vi, bs, be, reverted);
			bs = be = 0;
			*kept += end - idx;
			if (!dry_run)
				vmr_keep_run(vi, idx, end);
			idx = end;
			continue;
		}
		if (dry_run) {
			(*reverted)++;
		} else if (idx < DIV_ROUND_UP(size, PAGE_SIZE) &&
			   vmr_hot_try_promote(vi, idx)) {
			/* Never in the tail cut off below, where it could not stay. */
			vmr_revert_batch(vi, bs, be, reverted);
			bs = be = 0;
		} else {
			if (be && idx != be && !vmr_gap_unmapped(vi, be, idx)) {
				vmr_revert_batch(vi, bs, be, reverted);
				be = 0;
			}
			if (!be)
				bs = idx;
			be = idx + 1;
		}
		idx++;
	}
	if (!dry_run) {
		vmr_revert_batch(vi, bs, be, reverted);
		i_size_write(&vi->vfs_inode, size);
		/*
		 * To the end, not to the old EOF: the walk restores undo
		 * pages past the new EOF too. A clean zero page that a read
		 * fault put past the snapshot's EOF, then truncated off, has
		 * its page as undo, not a hole (vmr_model seed 469947592269:
		 * 150 zero pages kept past EOF, which a clone did not take).
		 */
		vmr_revert_trim(vi, DIV_ROUND_UP(size, PAGE_SIZE), ULONG_MAX);
	}
	/* After the walk: it may have promoted pages, which this restores. */
	*reverted += vmr_hot_revert(vi, dry_run);
	if (!dry_run) {
		/*
		 * Pages restored in place (hot, or cold with kept copies)
		 * changed content under the same page: a copy page_mkwrite
		 * made meanwhile without vi->lock, having seen the bump above,
		 * may hold the old content. This one tells it so.
		 */
		smp_wmb();
		WRITE_ONCE(vi->gen, vi->gen + 1);
		vi->reverts++;
		vi->reverted_pages += *reverted;
		vmr_update_blocks(vi);
	}
	return 0;
}

/* The offset from @base of the first page at or after @base + @i, or @nr. */
static pgoff_t vmr_next_present(struct xarray *xa, pgoff_t base, pgoff_t i,
				pgoff_t nr)
{
	unsigned long idx = base + i;

	if (!xa_find(xa, &idx, base + nr - 1, XA_PRESENT))
		return nr;
	return idx - base;
}

/*
 * Make [dst, dst + nr) of @dvi share the pages of [src, src + nr) of @svi.
 * Both locks are held; the caller checked the ranges.
 */
int vmr_clone_pages(struct vmr_inode *svi, pgoff_t src, struct vmr_inode *dvi,
		    pgoff_t dst, pgoff_t nr)
{
	struct vmr_sb *sbi = vi_sb(dvi);
	pgoff_t i;
	int err = 0;

	/*
	 * The source's pages are about to be shared: take write access away
	 * first, so that no write lands on a page a clone already sees. New
	 * write access needs page_mkwrite, which waits for svi->lock.
	 */
	err = vmr_hot_demote_range(svi, src, src + nr);
	if (!err)
		err = vmr_hot_demote_range(dvi, dst, dst + nr);
	if (err)
		return err;
	/* Kept copies are for private pages; clean, they are no loss. */
	vmr_kept_drop_range(svi, src, src + nr);
	vmr_kept_drop_range(dvi, dst, dst + nr);
	vmr_wrprotect(svi, src, src + nr);
	vmr_unmap(dvi, dst, dst + nr);
	/*
	 * Visit only indexes where either file has a page: the range comes
	 * from i_size, which ftruncate() sets to terabytes without a page,
	 * and a walk over its holes would hold both locks for hours.
	 */
	for (i = 0; i < nr; i++) {
		struct page *page, *old;
		bool track;

		i = min(vmr_next_present(&svi->pages, src, i, nr),
			vmr_next_present(&dvi->pages, dst, i, nr));
		if (i >= nr)
			break;
		page = xa_load(&svi->pages, src + i);
		old = xa_load(&dvi->pages, dst + i);
		if (page == old) {
			cond_resched();
			continue;
		}
		track = vmr_tracking(dvi, dst + i);
		if (track) {
			err = vmr_save_undo(dvi, dst + i, old ? old : VMR_HOLE);
			if (err)
				break;
		}
		if (page) {
			lock_page(page);
			set_page_private(page, page_private(page) + 1);
			unlock_page(page);
			get_page(page);
		}
		if (old)
			lock_page(old);
		if (page)
			err = xa_err(xa_store(&dvi->pages, dst + i, page, GFP_KERNEL));
		else
			xa_erase(&dvi->pages, dst + i);
		if (err) {
			if (old)
				unlock_page(old);
			vmr_put_page(sbi, page);
			if (track)
				vmr_forget_undo(dvi, dst + i, old ? old : VMR_HOLE);
			break;
		}
		xa_clear_mark(&dvi->pages, dst + i, VMR_MARK_WRITABLE);
		if (page)
			dvi->nr_pages++;
		if (old) {
			dvi->nr_pages--;
			if (page_mapped(old))
				unmap_mapping_pages(vi_mapping(dvi), dst + i, 1, false);
			unlock_page(old);
			if (!track)
				vmr_put_page(sbi, old);
		}
		cond_resched();
	}
	vmr_update_blocks(dvi);
	return err;
}

/*
 * Call @fn on every entry of @xa (one of @vi's xarrays) in index order,
 * holding vi->lock for at most @budget entries at a time: entries for which
 * @fn returns true count against it, the others are passed over for free.
 * Between the holds faults and every other operation get in, so that a walk
 * of a big file (STATS, OBJ_GET) does not stall its vCPUs. The entries
 * cannot go away under the lock; a result is exact for a file that nothing
 * changes meanwhile. Call without vi->lock.
 */
void vmr_walk_chunked(struct vmr_inode *vi, struct xarray *xa,
		      unsigned int budget, vmr_walk_fn fn, unsigned long *n)
{
	unsigned long idx = 0;
	bool more = true;

	while (more) {
		unsigned int seen = 0;
		void *entry;

		more = false;
		mutex_lock(&vi->lock);
		xa_for_each_start(xa, idx, entry, idx) {
			if (fn(vi, idx, entry, n) && ++seen == budget) {
				more = true;
				idx++;
				break;
			}
		}
		mutex_unlock(&vi->lock);
		cond_resched();
	}
}

static bool vmr_shared_one(struct vmr_inode *vi, unsigned long idx,
			   void *entry, unsigned long *n)
{
	if (page_private((struct page *)entry) > 1)
		(*n)++;
	return true;
}

/*
 * Pages of @vi shared with a clone. No per-file counter can follow this:
 * a clone that drops its slot unshares the page in whichever file holds
 * the other one. So it takes a walk, VMR_WALK_CHUNK entries per hold.
 */
unsigned long vmr_count_shared(struct vmr_inode *vi)
{
	unsigned long n = 0;

	vmr_walk_chunked(vi, &vi->pages, VMR_WALK_CHUNK, vmr_shared_one, &n);
	return n;
}
