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
 * has an entry (struct vmr_kept) in @vi->kept at its index, on
 * @vi->kept_lru, oldest first, and on the mount's list_lru, which the
 * superblock's shrinker walks per memory cgroup. It exists only for a clean
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
#include <linux/list_lru.h>
#include <linux/memcontrol.h>
#include <linux/moduleparam.h>
#include <linux/pagemap.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include "vmreset.h"

/*
 * 0: keep nothing; 1: restore in place and keep the snapshot copy; 2: swap
 * and keep the written page as a spare. Writable for A/B measurement.
 */
static unsigned int keep_copies = 1;
module_param(keep_copies, uint, 0644);
MODULE_PARM_DESC(keep_copies,
		 "reverted pages keep a copy: 0 no, 1 restore in place, 2 swap and keep a spare");

/*
 * One kept page. On the mount's list_lru (@lru), whose per-cgroup lists
 * are the superblock shrinker's: the entry is charged to the kept page's
 * memory cgroup (kmem_cache_alloc_lru() under set_active_memcg()), so
 * list_lru_add() marks that cgroup as having objects for the shrinker,
 * and reclaim inside that cgroup alone calls it with sc->memcg set to it
 * and takes back that cgroup's copies. On @vi->kept_lru (@link), oldest
 * first, for the per-file bound. Both under @vi->lock; the list_lru's own
 * lock is taken inside it.
 */
struct vmr_kept {
	struct list_head lru;
	struct list_head link;
	struct vmr_inode *vi;
	struct page *page;
	pgoff_t idx;
};

static struct kmem_cache *vmr_kept_cachep;

int vmr_kept_cache_init(void)
{
	vmr_kept_cachep = KMEM_CACHE(vmr_kept, SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT);
	return vmr_kept_cachep ? 0 : -ENOMEM;
}

void vmr_kept_cache_exit(void)
{
	kmem_cache_destroy(vmr_kept_cachep);
}

int vmr_kept_sb_init(struct super_block *sb)
{
	return list_lru_init_memcg(&VMR_SB(sb)->kept_lru, vmr_sb_shrinker(sb));
}

/* Every file is gone, and with it every entry. */
void vmr_kept_sb_exit(struct vmr_sb *sbi)
{
	list_lru_destroy(&sbi->kept_lru);
}

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
	vi->nr_kept = 0;
	vi->kept_max = sbi ? min(VMR_KEPT_FILE_MAX, sbi->kept_max) : 0;
	vi->kept_hits = 0;
	vi->kept_reclaimed = 0;
}

/* Take @k out of the file's kept set (not off the list_lru). */
static void vmr_kept_forget(struct vmr_inode *vi, struct vmr_kept *k)
{
	xa_erase(&vi->kept, k->idx);
	list_del(&k->link);
	atomic_long_dec(&vi_sb(vi)->kept_pages);
	vi->nr_kept--;
}

/* Take @k out of the kept set; returns its page, still allocated. */
static struct page *vmr_kept_unlink(struct vmr_inode *vi, struct vmr_kept *k)
{
	struct page *page = k->page;

	vmr_list_lru_del(&vi_sb(vi)->kept_lru, &k->lru);
	vmr_kept_forget(vi, k);
	kmem_cache_free(vmr_kept_cachep, k);
	return page;
}

/* Free a page taken out of the kept set. */
static void vmr_kept_free(struct vmr_sb *sbi, struct page *page)
{
	/* vmr_put_page() gives back a count the kept page does not hold. */
	atomic_long_inc(&sbi->used_pages);
	vmr_put_page(sbi, page);
}

/* Free the @nr oldest kept pages; returns how many went. */
static unsigned long vmr_kept_evict(struct vmr_inode *vi, unsigned long nr)
{
	unsigned long n = 0;

	while (n < nr && !list_empty(&vi->kept_lru)) {
		struct vmr_kept *k = list_first_entry(&vi->kept_lru,
						      struct vmr_kept, link);

		vmr_kept_free(vi_sb(vi), vmr_kept_unlink(vi, k));
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
bool vmr_kept_add(struct vmr_inode *vi, pgoff_t idx, struct page *page,
		  bool stale)
{
	struct vmr_sb *sbi = vi_sb(vi);
	struct mem_cgroup *old;
	struct vmr_kept *k;

	lockdep_assert_held(&vi->lock);
	if (!vi->kept_max || !vi->has_snap)
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
	 * reclaim here, and without memory the page is just not kept. The
	 * entry goes to the page's cgroup (the page holds a reference to
	 * it; RCU covers the look-up), and so does its list_lru slot.
	 */
	rcu_read_lock();
	old = set_active_memcg(folio_memcg(page_folio(page)));
	k = kmem_cache_alloc_lru(vmr_kept_cachep, &sbi->kept_lru,
				 GFP_NOWAIT | __GFP_NOWARN);
	set_active_memcg(old);
	rcu_read_unlock();
	if (!k)
		goto err_count;
	/* list_lru_add() adds only an item that is on no list. */
	INIT_LIST_HEAD(&k->lru);
	k->vi = vi;
	k->page = page;
	k->idx = idx;
	if (xa_insert(&vi->kept, idx, k, GFP_NOWAIT | __GFP_NOWARN))
		goto err_free;
	if (stale)
		xa_set_mark(&vi->kept, idx, VMR_MARK_STALE);
	list_add_tail(&k->link, &vi->kept_lru);
	vi->nr_kept++;
	vmr_list_lru_add(&sbi->kept_lru, &k->lru);
	atomic_long_dec(&sbi->used_pages);
	return true;

err_free:
	kmem_cache_free(vmr_kept_cachep, k);
err_count:
	atomic_long_dec(&sbi->kept_pages);
	return false;
}

/*
 * The kept page of @idx, taken out of the kept set and back in the mount's
 * size=, or NULL. With its snapshot content, unless *@stale. ENOSPC as
 * vmr_alloc_page() would give it.
 */
struct page *vmr_kept_take(struct vmr_inode *vi, pgoff_t idx, bool *stale)
{
	struct vmr_sb *sbi = vi_sb(vi);
	struct vmr_kept *k;
	struct page *page;

	lockdep_assert_held(&vi->lock);
	if (!vi->nr_kept)
		return NULL;
	k = xa_load(&vi->kept, idx);
	if (!k)
		return NULL;
	*stale = xa_get_mark(&vi->kept, idx, VMR_MARK_STALE);
	page = vmr_kept_unlink(vi, k);
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
	struct vmr_kept *k;
	unsigned long idx;

	if (!vi->nr_kept || start >= end)
		return;
	xa_for_each_range(&vi->kept, idx, k, start, end - 1) {
		vmr_kept_free(vi_sb(vi), vmr_kept_unlink(vi, k));
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
 * free_cached_objects), for the node and memory cgroup in @sc: global
 * reclaim and drop_caches visit every cgroup, reclaim in one cgroup that
 * cgroup (and those below it).
 */
long vmr_kept_count(struct super_block *sb, struct shrink_control *sc)
{
	return list_lru_shrink_count(&VMR_SB(sb)->kept_lru, sc);
}

/*
 * Called with the list's spinlock held. Reclaim may run inside an
 * allocation made under some vi->lock, so a file whose lock is taken is
 * skipped, never waited for. No inode reference either: dropping the last
 * one here would evict the inode inside reclaim, whose caller may hold a
 * page lock or a mutex eviction needs. Eviction takes vi->lock instead
 * (vmr_evict_inode()) and takes every entry off this list under the
 * list's lock, so the file of an entry found here stays while we hold
 * that lock, and a file locked here stays until the unlock.
 */
static enum lru_status vmr_kept_isolate(struct list_head *item,
					struct list_lru_one *list,
					spinlock_t *lock, void *arg)
{
	struct vmr_kept *k = container_of(item, struct vmr_kept, lru);
	struct vmr_inode *vi = k->vi;
	struct list_head *dispose = arg;

	if (!mutex_trylock(&vi->lock))
		return LRU_SKIP;
	list_lru_isolate_move(list, item, dispose);
	vmr_kept_forget(vi, k);
	vi->kept_reclaimed++;
	/*
	 * An eviction waiting for the lock may free the inode once it has
	 * it (after an RCU grace period): no access to it after the unlock,
	 * which itself runs inside a read-side section.
	 */
	rcu_read_lock();
	mutex_unlock(&vi->lock);
	rcu_read_unlock();
	return LRU_REMOVED;
}

long vmr_kept_scan(struct super_block *sb, struct shrink_control *sc)
{
	struct vmr_sb *sbi = VMR_SB(sb);
	struct vmr_kept *k, *next;
	LIST_HEAD(dispose);
	long freed;

	freed = list_lru_shrink_walk(&sbi->kept_lru, sc, vmr_kept_isolate, &dispose);
	/* Out of every set already: private pages nobody can reach. */
	list_for_each_entry_safe(k, next, &dispose, lru) {
		vmr_kept_free(sbi, k->page);
		kmem_cache_free(vmr_kept_cachep, k);
		cond_resched();
	}
	return freed;
}
