// SPDX-License-Identifier: GPL-2.0
/*
 * Kept copies: a page reverted recently keeps a private copy of its
 * snapshot content, so that its next first write needs neither an
 * allocation nor a copy (docs/design.md, "Kept copies").
 *
 * REVERT restores a dirty page in place (its undo page is copied back into
 * it, and the undo page is kept), or, with keep_copies=2, swaps as before
 * and keeps the written page as a spare that the next first write copies
 * into. Either way the kept page then becomes the undo page of that write.
 *
 * A kept page is private (one slot, no other reference), never mapped, and
 * sits in @vi->kept at its index and on @vi->kept_lru, oldest first, with
 * page->index set to that index for eviction. It exists only for a clean
 * index that has a snapshot, a page and is not hot; anything that makes
 * the index dirty (vmr_save_undo()), shares, removes or promotes its page
 * takes or drops it. Unless VMR_MARK_STALE, its content is the snapshot
 * content of the index, which for a clean index is the current content.
 *
 * Kept pages are a cache: they are not counted in the mount's size= (a
 * page leaving @used_pages on the way in and rejoining it on the way out),
 * they are bounded per file and per mount (keep_size=), and the
 * superblock's shrinker gives them back (drop_caches included).
 */

#include <linux/highmem.h>
#include <linux/memcontrol.h>
#include <linux/moduleparam.h>
#include <linux/pagemap.h>
#include "vmreset.h"

/*
 * 0: keep nothing; 1: restore in place and keep the snapshot copy; 2: swap
 * and keep the written page as a spare. Writable for A/B measurement.
 */
static unsigned int keep_copies = 1;
module_param(keep_copies, uint, 0644);
MODULE_PARM_DESC(keep_copies,
		 "reverted pages keep a copy: 0 no, 1 restore in place, 2 swap and keep a spare");

static inline struct vmr_sb *vi_sb(struct vmr_inode *vi)
{
	return VMR_SB(vi->vfs_inode.i_sb);
}

unsigned int vmr_keep_mode(void)
{
	return READ_ONCE(keep_copies);
}

void vmr_kept_init(struct vmr_inode *vi, struct vmr_sb *sbi)
{
	xa_init(&vi->kept);
	INIT_LIST_HEAD(&vi->kept_lru);
	INIT_LIST_HEAD(&vi->kept_link);
	vi->nr_kept = 0;
	vi->kept_max = sbi ? min(VMR_KEPT_FILE_MAX, sbi->kept_max) : 0;
	vi->kept_hits = 0;
	vi->kept_reclaimed = 0;
}

/* Take @page (at @idx) out of the kept set; it stays allocated. */
static void vmr_kept_unlink(struct vmr_inode *vi, pgoff_t idx,
			    struct page *page)
{
	struct vmr_sb *sbi = vi_sb(vi);

	xa_erase(&vi->kept, idx);
	list_del(&page->lru);
	page->index = 0;
	atomic_long_dec(&sbi->kept_pages);
	if (!--vi->nr_kept) {
		spin_lock(&sbi->kept_lock);
		list_del_init(&vi->kept_link);
		sbi->kept_files_nr--;
		spin_unlock(&sbi->kept_lock);
	}
}

/* Free a page taken out of the kept set. */
static void vmr_kept_free(struct vmr_inode *vi, struct page *page)
{
	struct vmr_sb *sbi = vi_sb(vi);

	/* vmr_put_page() gives back a count the kept page does not hold. */
	atomic_long_inc(&sbi->used_pages);
	vmr_put_page(sbi, page);
}

/* Free the @nr oldest kept pages; returns how many went. */
static unsigned long vmr_kept_evict(struct vmr_inode *vi, unsigned long nr)
{
	unsigned long n = 0;

	while (n < nr && !list_empty(&vi->kept_lru)) {
		struct page *page = list_first_entry(&vi->kept_lru,
						     struct page, lru);

		vmr_kept_unlink(vi, page->index, page);
		vmr_kept_free(vi, page);
		n++;
		cond_resched();
	}
	return n;
}

/*
 * Keep @page for clean @idx (see the top of the file for what it must be).
 * Past the file's bound the oldest kept page of the file makes room; past
 * the mount's too, if the file has one. Returns false if @page was not
 * kept: it is still the caller's.
 */
/*
 * Is @page charged to a memory cgroup with a limit (memory.max or
 * memory.high), or below one? Reclaim inside such a cgroup does not reach
 * kept copies: a memcg-aware shrinker, as the superblock's is, is called
 * for a cgroup only if it has objects on the shrinker's list_lrus, and
 * vmresetfs puts nothing on the mount's dentry and inode LRUs. A copy kept
 * there would count against the limit for good and could get the cgroup
 * OOM-killed (docs/design.md, "Kept copies"). No copy is kept for it.
 */
static bool vmr_kept_memcg_limited(struct page *page)
{
#ifdef CONFIG_MEMCG
	struct mem_cgroup *memcg;
	bool limited = false;

	if (mem_cgroup_disabled())
		return false;
	rcu_read_lock();
	/* The root's limits are never set: no need to tell it apart. */
	for (memcg = folio_memcg(page_folio(page)); memcg;
	     memcg = parent_mem_cgroup(memcg)) {
		if (READ_ONCE(memcg->memory.max) != PAGE_COUNTER_MAX ||
		    READ_ONCE(memcg->memory.high) != PAGE_COUNTER_MAX) {
			limited = true;
			break;
		}
	}
	rcu_read_unlock();
	return limited;
#else
	return false;
#endif
}

bool vmr_kept_add(struct vmr_inode *vi, pgoff_t idx, struct page *page,
		  bool stale)
{
	struct vmr_sb *sbi = vi_sb(vi);

	lockdep_assert_held(&vi->lock);
	if (!vi->kept_max || !vi->has_snap || vmr_kept_memcg_limited(page))
		return false;
	if (vi->nr_kept >= vi->kept_max)
		vmr_kept_evict(vi, vi->nr_kept - vi->kept_max + 1);
	/* A remount may have lowered the bound below what is kept. */
	while (atomic_long_inc_return(&sbi->kept_pages) > (long)READ_ONCE(sbi->kept_max)) {
		atomic_long_dec(&sbi->kept_pages);
		if (!vmr_kept_evict(vi, 1))
			return false;
	}
	/*
	 * REVERT calls this with a page locked and must not fail: no
	 * reclaim here, and without memory the page is just not kept.
	 */
	if (xa_insert(&vi->kept, idx, page, GFP_NOWAIT | __GFP_NOWARN)) {
		atomic_long_dec(&sbi->kept_pages);
		return false;
	}
	if (stale)
		xa_set_mark(&vi->kept, idx, VMR_MARK_STALE);
	page->index = idx;
	list_add_tail(&page->lru, &vi->kept_lru);
	if (!vi->nr_kept++) {
		spin_lock(&sbi->kept_lock);
		list_add_tail(&vi->kept_link, &sbi->kept_files);
		sbi->kept_files_nr++;
		spin_unlock(&sbi->kept_lock);
	}
	atomic_long_dec(&sbi->used_pages);
	return true;
}

/*
 * The kept page of @idx, taken out of the kept set and back in the mount's
 * size=, or NULL. With its snapshot content, unless *@stale. ENOSPC as
 * vmr_alloc_page() would give it.
 */
struct page *vmr_kept_take(struct vmr_inode *vi, pgoff_t idx, bool *stale)
{
	struct vmr_sb *sbi = vi_sb(vi);
	struct page *page;

	lockdep_assert_held(&vi->lock);
	if (!vi->nr_kept)
		return NULL;
	page = xa_load(&vi->kept, idx);
	if (!page)
		return NULL;
	*stale = xa_get_mark(&vi->kept, idx, VMR_MARK_STALE);
	vmr_kept_unlink(vi, idx, page);
	if (atomic_long_inc_return(&sbi->used_pages) > (long)READ_ONCE(sbi->max_pages)) {
		vmr_put_page(sbi, page);
		return ERR_PTR(-ENOSPC);
	}
	vi->kept_hits++;
	return page;
}

bool vmr_kept_has(struct vmr_inode *vi, pgoff_t idx)
{
	return READ_ONCE(vi->nr_kept) && xa_load(&vi->kept, idx);
}

/* Drop the kept pages of [start, end). */
void vmr_kept_drop_range(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	struct page *page;
	unsigned long idx;

	if (!vi->nr_kept || start >= end)
		return;
	xa_for_each_range(&vi->kept, idx, page, start, end - 1) {
		vmr_kept_unlink(vi, idx, page);
		vmr_kept_free(vi, page);
		cond_resched();
	}
}

void vmr_kept_drop(struct vmr_inode *vi, pgoff_t idx)
{
	if (vi->nr_kept)
		vmr_kept_drop_range(vi, idx, idx + 1);
}

/* A new per-file bound: drop the oldest past it. */
void vmr_kept_set_max(struct vmr_inode *vi, unsigned long max)
{
	lockdep_assert_held(&vi->lock);
	vi->kept_max = max;
	if (vi->nr_kept > max)
		vmr_kept_evict(vi, vi->nr_kept - max);
}

/*
 * The superblock shrinker's hooks (super_operations.nr_cached_objects and
 * free_cached_objects). Reclaim may run inside an allocation made under
 * some vi->lock, so a file whose lock is taken is skipped, never waited
 * for. The memory cgroup is not looked at: kept pages of every cgroup go.
 */
long vmr_kept_count(struct super_block *sb, struct shrink_control *sc)
{
	return atomic_long_read(&VMR_SB(sb)->kept_pages);
}

long vmr_kept_scan(struct super_block *sb, struct shrink_control *sc)
{
	struct vmr_sb *sbi = VMR_SB(sb);
	unsigned long want = sc->nr_to_scan, freed = 0;
	struct vmr_inode *vi;
	unsigned long tries;

	spin_lock(&sbi->kept_lock);
	/* Each file at most once a call: trylock failures must not spin. */
	tries = sbi->kept_files_nr;
	while (freed < want && tries-- &&
	       (vi = list_first_entry_or_null(&sbi->kept_files,
					      struct vmr_inode, kept_link))) {
		unsigned long n;

		list_move_tail(&vi->kept_link, &sbi->kept_files);
		/*
		 * No inode reference: dropping the last one here would evict
		 * the inode inside reclaim, whose caller may hold a page lock
		 * or a mutex eviction needs. Eviction takes vi->lock instead
		 * (vmr_evict_inode()) and takes the file off this list first,
		 * so a file found here and locked stays until the unlock.
		 */
		if (!mutex_trylock(&vi->lock))
			continue;
		spin_unlock(&sbi->kept_lock);
		n = vmr_kept_evict(vi, want - freed);
		vi->kept_reclaimed += n;
		freed += n;
		/*
		 * An eviction waiting for the lock may free the inode once it
		 * has it (after an RCU grace period): no access to it after
		 * the unlock, which itself runs inside a read-side section.
		 */
		rcu_read_lock();
		mutex_unlock(&vi->lock);
		rcu_read_unlock();
		spin_lock(&sbi->kept_lock);
	}
	spin_unlock(&sbi->kept_lock);
	return freed;
}
