/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels vmreset supports (Debian's 6.1 and 6.12),
 * force-included into every object so the rest of the code is written
 * against one API.
 */
#ifndef _VMRESET_COMPAT_H
#define _VMRESET_COMPAT_H

/* Before any header: printk.h only defines pr_fmt if it is unset. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/version.h>
#include <linux/fs.h>
#include <linux/mm.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "vmreset needs Linux 6.1 or newer"
#endif

/* 6.3 replaced the user namespace argument of inode operations by an idmap. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define VMR_IDMAP_T		struct mnt_idmap
#define VMR_IDMAP_NONE		(&nop_mnt_idmap)
#else
#define VMR_IDMAP_T		struct user_namespace
#define VMR_IDMAP_NONE		(&init_user_ns)
#endif

/*
 * 6.5 removed generic_file_splice_read(); copy_splice_read() replaced it.
 * On 6.1 it reads through ->read_iter into a pipe iterator, and our
 * read_iter copies (vmr_copy_to_iter()), so the pipe never holds our page.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#define vmr_splice_read		copy_splice_read
#else
#define vmr_splice_read		generic_file_splice_read
#endif

/* 6.6 moved the inode timestamps behind accessors. */
static inline void vmr_touch_mc(struct inode *inode)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
	inode_set_mtime_to_ts(inode, inode_set_ctime_current(inode));
#else
	inode->i_mtime = inode->i_ctime = current_time(inode);
#endif
}

static inline void vmr_touch_all(struct inode *inode)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
	simple_inode_init_ts(inode);
#else
	inode->i_atime = inode->i_mtime = inode->i_ctime = current_time(inode);
#endif
}

/*
 * A sleep for the inode lock that a fatal signal ends: 6.1 has no
 * inode_lock_killable(); this is what later kernels' does.
 */
static inline int __must_check vmr_inode_lock_killable(struct inode *inode)
{
	return down_write_killable(&inode->i_rwsem);
}

/*
 * 6.7 made the superblock's shrinker a pointer (shrinker_alloc()); 6.8
 * gave list_lru_add()/del() explicit node and cgroup arguments and left
 * the old ones, which take both from a slab object, as *_obj().
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
#define vmr_sb_shrinker(sb)	((sb)->s_shrink)
#else
#define vmr_sb_shrinker(sb)	(&(sb)->s_shrink)
#endif
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
#define vmr_list_lru_add	list_lru_add_obj
#define vmr_list_lru_del	list_lru_del_obj
#else
#define vmr_list_lru_add	list_lru_add
#define vmr_list_lru_del	list_lru_del
#endif

#endif /* _VMRESET_COMPAT_H */
