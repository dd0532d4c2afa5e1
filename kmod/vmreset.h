/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _VMRESET_H
#define _VMRESET_H

#include <linux/fs.h>
#include <linux/list_lru.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/xarray.h>
#include <uapi/linux/vmreset.h>

#define VMRESET_VERSION		"0.1.0"

/* Per-mount state. */
struct vmr_sb {
	/*
	 * Every page of the mount points its ->mapping here rather than at
	 * the file that holds it: a page shared by reflink clones outlives
	 * any one of its files, and ->mapping must stay valid for GUP-fast
	 * and for dirtying through the page tables as long as it is set.
	 */
	struct inode *anchor;
	unsigned long max_pages;
	unsigned long max_inodes;
	atomic_long_t used_pages;
	atomic_long_t used_inodes;
	unsigned long hot_max;		/* bound on hot pages of the mount */
	atomic_long_t hot_pages;
	u32 hot_mode;			/* default for new files */
	/* Kept copies (kept.c), on a list_lru of the sb's shrinker. */
	unsigned long kept_max;		/* bound on kept pages of the mount */
	atomic_long_t kept_pages;
	struct list_lru kept_lru;
	umode_t mode;
	kuid_t uid;
	kgid_t gid;
};

struct vmr_prange {
	pgoff_t start;
	pgoff_t end;		/* exclusive */
};

/*
 * Per-file state. A page index is in one of these states:
 *   hole      no entry in @pages;
 *   clean     an entry in @pages, none in @undo;
 *   dirty     an entry in @undo: the page was written since the snapshot,
 *             and @undo holds its snapshot content (a page, or VMR_HOLE).
 * A page in @pages or @undo may be shared with clones (page_private() counts
 * the slots that hold it); a shared page is never written in place.
 */
struct vmr_inode {
	struct mutex lock;		/* state transitions; outside page lock */
	struct xarray pages;
	struct xarray undo;
	bool has_snap;
	loff_t snap_size;
	struct vmr_prange *preserved;	/* sorted, disjoint, non-adjacent */
	unsigned int nr_preserved;
	u64 id;

	unsigned long nr_pages;
	unsigned long nr_undo_pages;
	unsigned long nr_dirty;
	/*
	 * Bumped (under @lock) whenever a clean page's content may have
	 * changed without an undo entry recording it: SNAPSHOT, REVERT, hot
	 * promotion and demotion. page_mkwrite copies outside @lock and
	 * keeps the copy only if @gen did not move.
	 */
	u64 gen;
	atomic64_t cow_faults;
	atomic64_t faults;
	u64 snapshots;
	u64 reverts;
	u64 reverted_pages;

	/*
	 * Hot pages: @hot maps an index to the page's kept snapshot copy (the
	 * index is hot) or to VMR_WANT (explicitly wanted, not hot now).
	 * VMR_MARK_EXPLICIT marks the explicit set. A hot index has a private
	 * page in @pages, no entry in @undo, lies outside preserved ranges,
	 * and its copy is private; hot copies exist only with a snapshot.
	 */
	struct xarray hot;
	struct xarray hist;		/* learning: idx -> dirty history */
	unsigned long nr_hot;
	unsigned long nr_explicit;
	unsigned long hot_max;
	u32 hot_mode;
	u32 learn_k, learn_n;
	u64 hot_promotions;
	u64 hot_demotions;
	u64 hot_copies;

	/*
	 * Kept copies (kept.c): @kept maps a clean index to the entry of a
	 * private page holding its snapshot content (or a spare, VMR_MARK_STALE), which
	 * its next first write takes as undo page. @kept_lru links those
	 * entries oldest first.
	 */
	struct xarray kept;
	struct list_head kept_lru;
	unsigned long nr_kept;
	unsigned long kept_max;
	u64 kept_hits;
	u64 kept_reclaimed;

	struct inode vfs_inode;
};

/* Mark on @pages: the page may have writable PTEs. */
#define VMR_MARK_WRITABLE	XA_MARK_0
#define VMR_HOLE		xa_mk_value(0)
/* On @hot. */
#define VMR_MARK_EXPLICIT	XA_MARK_0
#define VMR_WANT		xa_mk_value(1)
#define VMR_HOT_FILE_MAX	16384UL	/* default per-file bound, pages */
/* On @kept: the page is a spare, its content not the snapshot's. */
#define VMR_MARK_STALE		XA_MARK_0
#define VMR_KEPT_FILE_MAX	16384UL	/* default per-file bound, pages */
/*
 * Walks for STATS, OBJ_GET and DIRTY hold vi->lock for at most this many
 * entries (VMR_WALK_CHUNK) or hot page comparisons (VMR_HOT_SCAN, each a
 * 4 KiB memcmp) at a time, then let the faults waiting on it in.
 */
#define VMR_WALK_CHUNK		128
#define VMR_HOT_SCAN		32

static inline struct vmr_inode *VMR_I(struct inode *inode)
{
	return container_of(inode, struct vmr_inode, vfs_inode);
}

static inline struct vmr_sb *VMR_SB(struct super_block *sb)
{
	return sb->s_fs_info;
}

/* super.c */
extern const struct file_operations vmr_file_ops;
extern const struct inode_operations vmr_file_iops;
bool vmr_is_vmr_file(struct file *file);
int vmr_fs_init(void);
void vmr_fs_exit(void);

/* page.c: the page state machine */
struct page *vmr_alloc_page(struct vmr_sb *sbi, struct page *copy_from);
void vmr_put_page(struct vmr_sb *sbi, struct page *page);
struct page *vmr_get_page(struct vmr_inode *vi, pgoff_t idx);
struct page *vmr_write_begin(struct vmr_inode *vi, pgoff_t idx, bool *replaced);
struct page *vmr_write_begin_pre(struct vmr_inode *vi, pgoff_t idx,
				 bool *replaced, struct page **pre);
int vmr_fill_hole(struct vmr_inode *vi, pgoff_t idx);
int vmr_remove_range(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
int vmr_remove_prepare(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
void vmr_remove_cancel(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
void vmr_remove_commit(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
void vmr_free_all(struct vmr_inode *vi);
u64 vmr_snapshot(struct vmr_inode *vi);
int vmr_revert(struct vmr_inode *vi, bool dry_run, u64 *reverted, u64 *kept);
bool vmr_range_preserved(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
/* Take vi->lock themselves, in short holds: call without it. */
typedef bool (*vmr_walk_fn)(struct vmr_inode *vi, unsigned long idx,
			    void *entry, unsigned long *n);
void vmr_walk_chunked(struct vmr_inode *vi, struct xarray *xa,
		      unsigned int budget, vmr_walk_fn fn, unsigned long *n);
unsigned long vmr_count_shared(struct vmr_inode *vi);
int vmr_clone_pages(struct vmr_inode *svi, pgoff_t src, struct vmr_inode *dvi,
		    pgoff_t dst, pgoff_t nr);

void vmr_unmap(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
void vmr_wrprotect(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
int vmr_save_undo(struct vmr_inode *vi, pgoff_t idx, void *old);
bool vmr_preserved_at(struct vmr_inode *vi, pgoff_t idx, pgoff_t *next);
void vmr_update_blocks(struct vmr_inode *vi);

/* hot.c: hot pages, restored in place */
static inline bool vmr_is_hot(struct vmr_inode *vi, pgoff_t idx)
{
	void *e = xa_load(&vi->hot, idx);

	return e && !xa_is_value(e);
}

void vmr_hot_init(struct vmr_inode *vi, struct vmr_sb *sbi);
int vmr_hot_demote_range(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
void vmr_hot_free_all(struct vmr_inode *vi);
u64 vmr_hot_snapshot(struct vmr_inode *vi);
bool vmr_hot_try_promote(struct vmr_inode *vi, pgoff_t idx);
void vmr_hot_after_snapshot(struct vmr_inode *vi);
u64 vmr_hot_revert(struct vmr_inode *vi, bool dry_run);
bool vmr_hot_changed(struct vmr_inode *vi, pgoff_t idx);
/* Like vmr_count_shared(): takes vi->lock in short holds. */
unsigned long vmr_hot_count_changed(struct vmr_inode *vi);
unsigned long vmr_hot_next_changed(struct vmr_inode *vi, pgoff_t idx,
				   pgoff_t limit, unsigned int *budget,
				   pgoff_t *stop);
long vmr_ioc_hot(struct vmr_inode *vi, void __user *argp);
long vmr_ioc_hot_config(struct vmr_inode *vi, void __user *argp, bool writer);
int vmr_hot_apply(struct vmr_inode *vi, u32 op, struct vmr_prange *r,
		  unsigned int nr);
int vmr_hot_config(struct vmr_inode *vi, struct vmreset_hot_config *c);
unsigned int vmr_fill_hot(struct vmr_inode *vi, pgoff_t idx,
			  struct vmreset_range *buf, unsigned int max,
			  pgoff_t *next, bool explicit);

/* kept.c: kept copies of reverted pages */
struct shrink_control;
int vmr_kept_cache_init(void);
void vmr_kept_cache_exit(void);
int vmr_kept_sb_init(struct super_block *sb);
void vmr_kept_sb_exit(struct vmr_sb *sbi);
unsigned int vmr_keep_mode(void);
void vmr_kept_init(struct vmr_inode *vi, struct vmr_sb *sbi);
bool vmr_kept_add(struct vmr_inode *vi, pgoff_t idx, struct page *page,
		  bool stale);
struct page *vmr_kept_take(struct vmr_inode *vi, pgoff_t idx, bool *stale);
bool vmr_kept_has(struct vmr_inode *vi, pgoff_t idx);
void vmr_kept_drop(struct vmr_inode *vi, pgoff_t idx);
void vmr_kept_drop_range(struct vmr_inode *vi, pgoff_t start, pgoff_t end);
void vmr_kept_set_max(struct vmr_inode *vi, unsigned long max);
long vmr_kept_count(struct super_block *sb, struct shrink_control *sc);
long vmr_kept_scan(struct super_block *sb, struct shrink_control *sc);

/* file.c */
extern const struct vm_operations_struct vmr_vm_ops;
int vmr_setsize(struct inode *inode, loff_t newsize);
loff_t vmr_remap_file_range(struct file *src, loff_t pos_in, struct file *dst,
			    loff_t pos_out, loff_t len, unsigned int flags);

/* obj.c: the object registry, operations both front ends share, events */
int vmr_obj_register(struct vmr_inode *vi);
void vmr_obj_unregister(struct vmr_inode *vi);
struct vmr_inode *vmr_obj_get(u64 id);
void vmr_obj_put(struct vmr_inode *vi);
struct vmr_inode *vmr_obj_next(unsigned long *id);
unsigned int vmr_obj_gen(void);
bool vmr_may_manage(struct vmr_inode *vi);
int vmr_byte_range(u64 off, u64 len, pgoff_t *start, pgoff_t *end);
int vmr_op_preserve(struct vmr_inode *vi, bool add, pgoff_t start, pgoff_t end);
int vmr_op_snapshot(struct vmr_inode *vi, u64 *dirty);
int vmr_op_revert(struct vmr_inode *vi, u64 flags, u64 *reverted, u64 *kept);
void vmr_notify_vm(u8 cmd, u32 vm_id, u32 pid);

/* ioctl.c: the ioctl front end */
long vmr_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

/* netlink.c: the netlink front end */
struct genl_family;
struct genl_info;
struct netlink_callback;
struct sk_buff;
extern struct genl_family vmr_genl_family;
enum { VMR_MCGRP_EVENTS };	/* vmr_genl_family's multicast groups */
int vmr_nl_init(void);
void vmr_nl_exit(void);

/* vm.c */
int vmr_vm_init(void);
void vmr_vm_exit(void);
int vmr_nl_vm_attach_doit(struct sk_buff *skb, struct genl_info *info);
int vmr_nl_vm_detach_doit(struct sk_buff *skb, struct genl_info *info);
int vmr_nl_vm_get_doit(struct sk_buff *skb, struct genl_info *info);
int vmr_nl_vm_get_start(struct netlink_callback *cb);
int vmr_nl_vm_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vmr_nl_vm_snapshot_doit(struct sk_buff *skb, struct genl_info *info);
int vmr_nl_vm_revert_doit(struct sk_buff *skb, struct genl_info *info);
int vmr_nl_vm_preserve_doit(struct sk_buff *skb, struct genl_info *info);

#endif /* _VMRESET_H */
