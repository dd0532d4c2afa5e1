// SPDX-License-Identifier: GPL-2.0
/*
 * The vmresetfs filesystem: mount options, superblock, inodes, directories.
 * Directories work like ramfs (the dcache holds every name); regular files
 * are memory objects whose pages live in per-inode xarrays (page.c).
 */

#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/statfs.h>
#include "vmreset.h"

static struct kmem_cache *vmr_inode_cachep;
static atomic64_t vmr_next_id = ATOMIC64_INIT(0);

#define VMR_DEFAULT_MODE	0755

/* Folios are never written back; dirtying them through a PTE is a no-op. */
static const struct address_space_operations vmr_aops = {
	.dirty_folio	= noop_dirty_folio,
};

static const struct inode_operations vmr_dir_iops;
static const struct super_operations vmr_sops;

static struct inode *vmr_get_inode(struct super_block *sb, VMR_IDMAP_T *idmap,
				   const struct inode *dir, umode_t mode)
{
	struct vmr_sb *sbi = VMR_SB(sb);
	struct inode *inode;

	if (atomic_long_inc_return(&sbi->used_inodes) >
	    (long)READ_ONCE(sbi->max_inodes)) {
		atomic_long_dec(&sbi->used_inodes);
		return ERR_PTR(-ENOSPC);
	}
	inode = new_inode(sb);
	if (!inode) {
		atomic_long_dec(&sbi->used_inodes);
		return ERR_PTR(-ENOMEM);
	}
	inode->i_ino = get_next_ino();
	inode_init_owner(idmap, inode, dir, mode);
	inode->i_mapping->a_ops = &vmr_aops;
	vmr_touch_all(inode);
	switch (mode & S_IFMT) {
	case S_IFREG:
		inode->i_op = &vmr_file_iops;
		inode->i_fop = &vmr_file_ops;
		VMR_I(inode)->id = atomic64_inc_return(&vmr_next_id);
		if (vmr_obj_register(VMR_I(inode))) {
			VMR_I(inode)->id = 0;
			iput(inode);	/* evict_inode gives the inode count back */
			return ERR_PTR(-ENOMEM);
		}
		break;
	case S_IFDIR:
		inode->i_op = &vmr_dir_iops;
		inode->i_fop = &simple_dir_operations;
		inc_nlink(inode);	/* "." */
		break;
	}
	return inode;
}

static int vmr_mknod(VMR_IDMAP_T *idmap, struct inode *dir,
		     struct dentry *dentry, umode_t mode)
{
	struct inode *inode = vmr_get_inode(dir->i_sb, idmap, dir, mode);

	if (IS_ERR(inode))
		return PTR_ERR(inode);
	d_instantiate(dentry, inode);
	dget(dentry);	/* the dcache is the only directory we have */
	vmr_touch_mc(dir);
	return 0;
}

static int vmr_create(VMR_IDMAP_T *idmap, struct inode *dir,
		      struct dentry *dentry, umode_t mode, bool excl)
{
	return vmr_mknod(idmap, dir, dentry, (mode & ~S_IFMT) | S_IFREG);
}

static int vmr_mkdir(VMR_IDMAP_T *idmap, struct inode *dir,
		     struct dentry *dentry, umode_t mode)
{
	int err = vmr_mknod(idmap, dir, dentry, (mode & ~S_IFMT) | S_IFDIR);

	if (!err)
		inc_nlink(dir);
	return err;
}

static int vmr_tmpfile(VMR_IDMAP_T *idmap, struct inode *dir,
		       struct file *file, umode_t mode)
{
	struct inode *inode = vmr_get_inode(dir->i_sb, idmap, dir,
					    (mode & ~S_IFMT) | S_IFREG);

	if (IS_ERR(inode))
		return PTR_ERR(inode);
	d_tmpfile(file, inode);
	return finish_open_simple(file, 0);
}

static const struct inode_operations vmr_dir_iops = {
	.create		= vmr_create,
	.lookup		= simple_lookup,
	.link		= simple_link,
	.unlink		= simple_unlink,
	.mkdir		= vmr_mkdir,
	.rmdir		= simple_rmdir,
	.rename		= simple_rename,
	.tmpfile	= vmr_tmpfile,
};

static int vmr_setattr(VMR_IDMAP_T *idmap, struct dentry *dentry,
		       struct iattr *attr)
{
	struct inode *inode = d_inode(dentry);
	int err;

	err = setattr_prepare(idmap, dentry, attr);
	if (err)
		return err;
	if ((attr->ia_valid & ATTR_SIZE) && attr->ia_size != i_size_read(inode)) {
		err = vmr_setsize(inode, attr->ia_size);
		if (err)
			return err;
		if (!(attr->ia_valid & (ATTR_CTIME | ATTR_MTIME)))
			vmr_touch_mc(inode);
	}
	setattr_copy(idmap, inode, attr);
	mark_inode_dirty(inode);
	return 0;
}

const struct inode_operations vmr_file_iops = {
	.setattr	= vmr_setattr,
	.getattr	= simple_getattr,
};

static struct inode *vmr_alloc_inode(struct super_block *sb)
{
	struct vmr_inode *vi = alloc_inode_sb(sb, vmr_inode_cachep, GFP_KERNEL);

	if (!vi)
		return NULL;
	mutex_init(&vi->lock);
	xa_init(&vi->pages);
	xa_init(&vi->undo);
	vi->has_snap = false;
	vi->snap_size = 0;
	vi->preserved = NULL;
	vi->nr_preserved = 0;
	vi->id = 0;
	vi->nr_pages = 0;
	vi->nr_undo_pages = 0;
	vi->nr_dirty = 0;
	vi->gen = 0;
	atomic64_set(&vi->cow_faults, 0);
	atomic64_set(&vi->faults, 0);
	vi->snapshots = 0;
	vi->reverts = 0;
	vi->reverted_pages = 0;
	vmr_hot_init(vi, VMR_SB(sb));
	vmr_kept_init(vi, VMR_SB(sb));
	return &vi->vfs_inode;
}

static void vmr_free_inode(struct inode *inode)
{
	struct vmr_inode *vi = VMR_I(inode);

	kfree(vi->preserved);
	kmem_cache_free(vmr_inode_cachep, vi);
}

static void vmr_evict_inode(struct inode *inode)
{
	struct vmr_sb *sbi = VMR_SB(inode->i_sb);

	if (S_ISREG(inode->i_mode)) {
		struct vmr_inode *vi = VMR_I(inode);

		vmr_obj_unregister(vi);
		/*
		 * Nothing else holds the file now but the kept-copy shrinker,
		 * which holds vi->lock instead of a reference (kept.c): wait
		 * for it.
		 */
		mutex_lock(&vi->lock);
		vmr_free_all(vi);
		mutex_unlock(&vi->lock);
	}
	clear_inode(inode);
	if (inode != sbi->anchor)
		atomic_long_dec(&sbi->used_inodes);
}

static int vmr_statfs(struct dentry *dentry, struct kstatfs *buf)
{
	struct vmr_sb *sbi = VMR_SB(dentry->d_sb);
	long used = atomic_long_read(&sbi->used_pages);
	long files = atomic_long_read(&sbi->used_inodes);

	buf->f_type = VMRESET_FS_MAGIC;
	buf->f_bsize = PAGE_SIZE;
	buf->f_frsize = PAGE_SIZE;
	buf->f_namelen = NAME_MAX;
	buf->f_blocks = sbi->max_pages;
	buf->f_bfree = buf->f_bavail = max_t(long, (long)sbi->max_pages - used, 0);
	buf->f_files = sbi->max_inodes;
	buf->f_ffree = max_t(long, (long)sbi->max_inodes - files, 0);
	return 0;
}

static int vmr_show_options(struct seq_file *m, struct dentry *root)
{
	struct vmr_sb *sbi = VMR_SB(root->d_sb);

	seq_printf(m, ",size=%luk", sbi->max_pages << (PAGE_SHIFT - 10));
	seq_printf(m, ",nr_inodes=%lu", sbi->max_inodes);
	seq_printf(m, ",hot_size=%luk", sbi->hot_max << (PAGE_SHIFT - 10));
	seq_printf(m, ",keep_size=%luk", sbi->kept_max << (PAGE_SHIFT - 10));
	if (sbi->hot_mode != VMRESET_HOT_EXPLICIT)
		seq_printf(m, ",hot=%s", sbi->hot_mode == VMRESET_HOT_OFF ? "off" : "learn");
	if (sbi->mode != VMR_DEFAULT_MODE)
		seq_printf(m, ",mode=%03o", sbi->mode);
	if (!uid_eq(sbi->uid, GLOBAL_ROOT_UID))
		seq_printf(m, ",uid=%u", from_kuid_munged(&init_user_ns, sbi->uid));
	if (!gid_eq(sbi->gid, GLOBAL_ROOT_GID))
		seq_printf(m, ",gid=%u", from_kgid_munged(&init_user_ns, sbi->gid));
	return 0;
}

static void vmr_put_super(struct super_block *sb)
{
	struct vmr_sb *sbi = VMR_SB(sb);

	iput(sbi->anchor);
	sbi->anchor = NULL;
}

static const struct super_operations vmr_sops = {
	.alloc_inode	= vmr_alloc_inode,
	.free_inode	= vmr_free_inode,
	.evict_inode	= vmr_evict_inode,
	.drop_inode	= generic_delete_inode,
	.statfs		= vmr_statfs,
	.show_options	= vmr_show_options,
	.put_super	= vmr_put_super,
	/* Kept copies are given back by the superblock's shrinker. */
	.nr_cached_objects	= vmr_kept_count,
	.free_cached_objects	= vmr_kept_scan,
};

/* Mount options */

enum { Opt_size, Opt_nr_inodes, Opt_mode, Opt_uid, Opt_gid, Opt_hot_size,
       Opt_hot, Opt_keep_size };

static const struct constant_table vmr_hot_modes[] = {
	{ "off",	VMRESET_HOT_OFF },
	{ "explicit",	VMRESET_HOT_EXPLICIT },
	{ "learn",	VMRESET_HOT_LEARN },
	{}
};

static const struct fs_parameter_spec vmr_fs_params[] = {
	fsparam_string("size", Opt_size),
	fsparam_string("hot_size", Opt_hot_size),
	fsparam_enum("hot", Opt_hot, vmr_hot_modes),
	fsparam_string("keep_size", Opt_keep_size),
	fsparam_string("nr_inodes", Opt_nr_inodes),
	fsparam_u32oct("mode", Opt_mode),
	fsparam_u32("uid", Opt_uid),
	fsparam_u32("gid", Opt_gid),
	{}
};

struct vmr_fs_ctx {
	unsigned long max_pages;
	unsigned long max_inodes;
	unsigned long hot_max;
	unsigned long kept_max;
	u32 hot_mode;
	umode_t mode;
	kuid_t uid;
	kgid_t gid;
	unsigned int seen;
};

static int vmr_parse_param(struct fs_context *fc, struct fs_parameter *param)
{
	struct vmr_fs_ctx *ctx = fc->fs_private;
	struct fs_parse_result result;
	unsigned long long size;
	char *rest;
	int opt;

	opt = fs_parse(fc, vmr_fs_params, param, &result);
	if (opt < 0)
		return opt;

	switch (opt) {
	case Opt_size:
		size = memparse(param->string, &rest);
		if (*rest == '%') {
			if (size > 100)
				goto bad_value;
			size = (totalram_pages() * size / 100) << PAGE_SHIFT;
			rest++;
		}
		if (*rest || !size)
			goto bad_value;
		ctx->max_pages = DIV_ROUND_UP(size, PAGE_SIZE);
		break;
	case Opt_hot_size:
		/* Zero is allowed: no hot pages on this mount. */
		size = memparse(param->string, &rest);
		if (*rest)
			goto bad_value;
		ctx->hot_max = DIV_ROUND_UP(size, PAGE_SIZE);
		break;
	case Opt_hot:
		ctx->hot_mode = result.uint_32;
		break;
	case Opt_keep_size:
		/* Zero is allowed: reverted pages keep no copy. */
		size = memparse(param->string, &rest);
		if (*rest)
			goto bad_value;
		ctx->kept_max = DIV_ROUND_UP(size, PAGE_SIZE);
		break;
	case Opt_nr_inodes:
		ctx->max_inodes = memparse(param->string, &rest);
		if (*rest || !ctx->max_inodes)
			goto bad_value;
		break;
	case Opt_mode:
		ctx->mode = result.uint_32 & 07777;
		break;
	case Opt_uid:
		ctx->uid = make_kuid(current_user_ns(), result.uint_32);
		if (!uid_valid(ctx->uid))
			goto bad_value;
		break;
	case Opt_gid:
		ctx->gid = make_kgid(current_user_ns(), result.uint_32);
		if (!gid_valid(ctx->gid))
			goto bad_value;
		break;
	}
	ctx->seen |= 1U << opt;
	return 0;

bad_value:
	return invalfc(fc, "bad value '%s' for %s", param->string ?: "",
		       param->key);
}

static int vmr_fill_super(struct super_block *sb, struct fs_context *fc)
{
	struct vmr_fs_ctx *ctx = fc->fs_private;
	struct vmr_sb *sbi;
	struct inode *root;
	int err;

	sbi = kzalloc(sizeof(*sbi), GFP_KERNEL);
	if (!sbi)
		return -ENOMEM;
	sb->s_fs_info = sbi;
	sbi->max_pages = ctx->max_pages;
	sbi->max_inodes = ctx->max_inodes;
	/* By default a quarter of the mount may be hot copies. */
	sbi->hot_max = ctx->seen & (1U << Opt_hot_size) ? ctx->hot_max
						       : ctx->max_pages / 4;
	sbi->hot_mode = ctx->hot_mode;
	atomic_long_set(&sbi->hot_pages, 0);
	/*
	 * Kept copies (kept.c) are a cache the shrinker empties; by default
	 * they may take as much again as a quarter of the mount.
	 */
	sbi->kept_max = ctx->seen & (1U << Opt_keep_size) ? ctx->kept_max
							 : ctx->max_pages / 4;
	atomic_long_set(&sbi->kept_pages, 0);
	err = vmr_kept_sb_init(sb);
	if (err)
		return err;
	sbi->mode = ctx->mode;
	sbi->uid = ctx->uid;
	sbi->gid = ctx->gid;
	atomic_long_set(&sbi->used_pages, 0);
	atomic_long_set(&sbi->used_inodes, 0);

	sb->s_maxbytes = MAX_LFS_FILESIZE;
	sb->s_blocksize = PAGE_SIZE;
	sb->s_blocksize_bits = PAGE_SHIFT;
	sb->s_magic = VMRESET_FS_MAGIC;
	sb->s_op = &vmr_sops;
	sb->s_time_gran = 1;

	sbi->anchor = new_inode(sb);
	if (!sbi->anchor)
		return -ENOMEM;
	sbi->anchor->i_ino = get_next_ino();
	sbi->anchor->i_mapping->a_ops = &vmr_aops;

	root = vmr_get_inode(sb, VMR_IDMAP_NONE, NULL, S_IFDIR | sbi->mode);
	if (IS_ERR(root)) {
		/* -ENOSPC with nr_inodes=0, for one: say so, not ENOMEM. */
		err = PTR_ERR(root);
		goto err_anchor;
	}
	root->i_uid = sbi->uid;
	root->i_gid = sbi->gid;
	sb->s_root = d_make_root(root);
	if (!sb->s_root) {
		err = -ENOMEM;
		goto err_anchor;
	}
	return 0;

err_anchor:
	/* put_super only runs once there is a root. */
	iput(sbi->anchor);
	sbi->anchor = NULL;
	return err;
}

static int vmr_get_tree(struct fs_context *fc)
{
	return get_tree_nodev(fc, vmr_fill_super);
}

static int vmr_reconfigure(struct fs_context *fc)
{
	struct vmr_fs_ctx *ctx = fc->fs_private;
	struct vmr_sb *sbi = VMR_SB(fc->root->d_sb);

	if ((ctx->seen & (1U << Opt_size)) &&
	    ctx->max_pages < (unsigned long)atomic_long_read(&sbi->used_pages))
		return invalfc(fc, "size is below the pages in use");
	if ((ctx->seen & (1U << Opt_nr_inodes)) &&
	    ctx->max_inodes < (unsigned long)atomic_long_read(&sbi->used_inodes))
		return invalfc(fc, "nr_inodes is below the inodes in use");
	if (ctx->seen & (1U << Opt_size))
		WRITE_ONCE(sbi->max_pages, ctx->max_pages);
	if (ctx->seen & (1U << Opt_nr_inodes))
		WRITE_ONCE(sbi->max_inodes, ctx->max_inodes);
	/* Lowering it keeps the hot pages there are; no new ones past it. */
	if (ctx->seen & (1U << Opt_hot_size))
		WRITE_ONCE(sbi->hot_max, ctx->hot_max);
	if (ctx->seen & (1U << Opt_hot))
		WRITE_ONCE(sbi->hot_mode, ctx->hot_mode);
	/* As hot_size: the kept pages there are stay, or the shrinker takes them. */
	if (ctx->seen & (1U << Opt_keep_size))
		WRITE_ONCE(sbi->kept_max, ctx->kept_max);
	return 0;
}

static void vmr_free_fc(struct fs_context *fc)
{
	kfree(fc->fs_private);
}

static const struct fs_context_operations vmr_context_ops = {
	.free		= vmr_free_fc,
	.parse_param	= vmr_parse_param,
	.get_tree	= vmr_get_tree,
	.reconfigure	= vmr_reconfigure,
};

static int vmr_init_fs_context(struct fs_context *fc)
{
	struct vmr_fs_ctx *ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	/* Like tmpfs: at most half of RAM unless told otherwise. */
	ctx->max_pages = totalram_pages() / 2;
	ctx->max_inodes = totalram_pages() / 2;
	ctx->hot_mode = VMRESET_HOT_EXPLICIT;
	ctx->mode = VMR_DEFAULT_MODE;
	ctx->uid = current_fsuid();
	ctx->gid = current_fsgid();
	fc->fs_private = ctx;
	fc->ops = &vmr_context_ops;
	return 0;
}

static void vmr_kill_sb(struct super_block *sb)
{
	kill_litter_super(sb);
	if (sb->s_fs_info)
		vmr_kept_sb_exit(sb->s_fs_info);
	kfree(sb->s_fs_info);
}

static struct file_system_type vmr_fs_type = {
	.owner			= THIS_MODULE,
	.name			= "vmresetfs",
	.init_fs_context	= vmr_init_fs_context,
	.parameters		= vmr_fs_params,
	.kill_sb		= vmr_kill_sb,
};
MODULE_ALIAS_FS("vmresetfs");

static void vmr_inode_init_once(void *obj)
{
	struct vmr_inode *vi = obj;

	inode_init_once(&vi->vfs_inode);
}

int vmr_fs_init(void)
{
	int err;

	vmr_inode_cachep = kmem_cache_create("vmreset_inode",
					     sizeof(struct vmr_inode), 0,
					     SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT,
					     vmr_inode_init_once);
	if (!vmr_inode_cachep)
		return -ENOMEM;
	err = vmr_kept_cache_init();
	if (err)
		goto err_inode_cache;
	err = register_filesystem(&vmr_fs_type);
	if (err)
		goto err_kept_cache;
	return 0;

err_kept_cache:
	vmr_kept_cache_exit();
err_inode_cache:
	kmem_cache_destroy(vmr_inode_cachep);
	return err;
}

void vmr_fs_exit(void)
{
	unregister_filesystem(&vmr_fs_type);
	/* Inodes are freed after an RCU grace period. */
	rcu_barrier();
	vmr_kept_cache_exit();
	kmem_cache_destroy(vmr_inode_cachep);
}
