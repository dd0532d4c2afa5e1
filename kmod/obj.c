// SPDX-License-Identifier: GPL-2.0
/*
 * Memory objects (vmresetfs regular files) as both front ends see them:
 * the registry that names each by a boot-unique ID, the operations the
 * ioctls (ioctl.c), the netlink family (netlink.c) and VM-level requests
 * (vm.c) share, and the messages they send: replies and the events the
 * operations raise. The front ends call in here; nothing in here calls
 * them, so events flow one way, out through the family's multicast group.
 */
#include <linux/capability.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include "vmreset.h"
#include "reply.h"

/* ID -> vmr_inode; entries are RCU-safe (inodes are freed after a grace period). */
static DEFINE_XARRAY(vmr_objects);
static atomic_t vmr_objects_gen = ATOMIC_INIT(1);

static void vmr_notify(struct vmr_inode *vi, u8 cmd, u64 a, u64 b);
static void vmr_notify_snapshot(struct vmr_inode *vi, u64 dirty);
static void vmr_notify_revert(struct vmr_inode *vi, u64 reverted, u64 kept);

int vmr_obj_register(struct vmr_inode *vi)
{
	int err = xa_err(xa_store(&vmr_objects, vi->id, vi, GFP_KERNEL));

	if (!err)
		atomic_inc(&vmr_objects_gen);
	return err;
}

void vmr_obj_unregister(struct vmr_inode *vi)
{
	if (!vi->id || xa_erase(&vmr_objects, vi->id) != vi)
		return;
	atomic_inc(&vmr_objects_gen);
	vmr_notify(vi, VMRESET_CMD_OBJ_DEL_NTF, 0, 0);
}

/*
 * The object with @id, with a reference on its inode and on its mount's
 * superblock (so that an unmount cannot find the inode busy), or NULL.
 */
struct vmr_inode *vmr_obj_get(u64 id)
{
	struct super_block *sb;
	struct vmr_inode *vi;

	rcu_read_lock();
	vi = xa_load(&vmr_objects, id);
	if (!vi)
		goto out;
	sb = vi->vfs_inode.i_sb;
	if (!atomic_inc_not_zero(&sb->s_active)) {
		vi = NULL;
		goto out;
	}
	if (!igrab(&vi->vfs_inode)) {
		rcu_read_unlock();
		/*
		 * The inode is being evicted. An unmount may have dropped
		 * its reference meanwhile, so ours can be the superblock's
		 * last: only deactivate_super() shuts it down then (and it
		 * sleeps, so not under RCU).
		 */
		deactivate_super(sb);
		return NULL;
	}
out:
	rcu_read_unlock();
	return vi;
}

void vmr_obj_put(struct vmr_inode *vi)
{
	struct super_block *sb = vi->vfs_inode.i_sb;

	iput(&vi->vfs_inode);
	deactivate_super(sb);
}

/*
 * The first object at or after *@id, referenced as by vmr_obj_get(), with
 * *@id set to its ID; NULL at the end. For dumps.
 */
struct vmr_inode *vmr_obj_next(unsigned long *id)
{
	struct vmr_inode *vi;

	for (;; (*id)++) {
		rcu_read_lock();
		vi = xa_find(&vmr_objects, id, ULONG_MAX, XA_PRESENT);
		rcu_read_unlock();
		if (!vi)
			return NULL;
		vi = vmr_obj_get(*id);
		if (vi)
			return vi;
	}
}

/* Changes when the set of objects does: dumps report NLM_F_DUMP_INTR. */
unsigned int vmr_obj_gen(void)
{
	return atomic_read(&vmr_objects_gen);
}

bool vmr_may_manage(struct vmr_inode *vi)
{
	return capable(CAP_SYS_ADMIN) ||
	       !inode_permission(VMR_IDMAP_NONE, &vi->vfs_inode, MAY_WRITE);
}

/* Page-aligned, non-empty, non-wrapping [off, off + len) in pages. */
int vmr_byte_range(u64 off, u64 len, pgoff_t *start, pgoff_t *end)
{
	if (!len || !PAGE_ALIGNED(off) || !PAGE_ALIGNED(len) ||
	    off + len < off || off + len > MAX_LFS_FILESIZE)
		return -EINVAL;
	*start = off >> PAGE_SHIFT;
	*end = (off + len) >> PAGE_SHIFT;
	return 0;
}

static int vmr_set_preserved(struct vmr_inode *vi, struct vmr_prange *r,
			     unsigned int n)
{
	if (n > VMRESET_MAX_PRESERVED) {
		kfree(r);
		return -ENOSPC;
	}
	kfree(vi->preserved);
	vi->preserved = r;
	vi->nr_preserved = n;
	return 0;
}

/* Merge [start, end) into the sorted set; vi->lock held. */
static int vmr_preserve_add(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	unsigned int i, n = 0;
	struct vmr_prange *r;
	bool placed = false;
	int err;

	/* Preserved pages keep their content at REVERT: not hot ones. */
	err = vmr_hot_demote_range(vi, start, end);
	if (err)
		return err;
	r = kmalloc_array(vi->nr_preserved + 1, sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	for (i = 0; i < vi->nr_preserved; i++) {
		struct vmr_prange cur = vi->preserved[i];

		if (cur.end < start) {
			r[n++] = cur;
		} else if (cur.start > end) {
			if (!placed) {
				r[n++] = (struct vmr_prange){ start, end };
				placed = true;
			}
			r[n++] = cur;
		} else {	/* overlapping or adjacent: absorb */
			start = min(start, cur.start);
			end = max(end, cur.end);
		}
	}
	if (!placed)
		r[n++] = (struct vmr_prange){ start, end };
	return vmr_set_preserved(vi, r, n);
}

/* Remove [start, end) from the set, splitting ranges; vi->lock held. */
static int vmr_preserve_del(struct vmr_inode *vi, pgoff_t start, pgoff_t end)
{
	unsigned int i, n = 0;
	struct vmr_prange *r;

	if (!vmr_range_preserved(vi, start, end))
		return 0;
	r = kmalloc_array(vi->nr_preserved + 1, sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	for (i = 0; i < vi->nr_preserved; i++) {
		struct vmr_prange cur = vi->preserved[i];

		if (cur.end <= start || cur.start >= end) {
			r[n++] = cur;
			continue;
		}
		if (cur.start < start)
			r[n++] = (struct vmr_prange){ cur.start, start };
		if (cur.end > end)
			r[n++] = (struct vmr_prange){ end, cur.end };
	}
	return vmr_set_preserved(vi, r, n);
}

/* PRESERVE_ADD (@add) or PRESERVE_DEL of the pages [start, end). */
int vmr_op_preserve(struct vmr_inode *vi, bool add, pgoff_t start, pgoff_t end)
{
	int err;

	if (mutex_lock_killable(&vi->lock))
		return -EINTR;
	err = add ? vmr_preserve_add(vi, start, end) : vmr_preserve_del(vi, start, end);
	mutex_unlock(&vi->lock);
	return err;
}

/*
 * The operations sleep killably for the file's locks: a request stuck
 * behind somebody else's write (say, one waiting on a userfaultfd page)
 * can be ended with SIGKILL, and a netlink request then lets go of genl's
 * cb_lock, which family (un)registration waits for.
 */
int vmr_op_snapshot(struct vmr_inode *vi, u64 *dirty)
{
	if (mutex_lock_killable(&vi->lock))
		return -EINTR;
	*dirty = vmr_snapshot(vi);
	mutex_unlock(&vi->lock);
	vmr_notify_snapshot(vi, *dirty);
	return 0;
}

int vmr_op_revert(struct vmr_inode *vi, u64 flags, u64 *reverted, u64 *kept)
{
	bool dry_run = flags & VMRESET_REVERT_F_DRY_RUN;
	int err;

	/* The size may change back: hold off writers and truncation. */
	if (vmr_inode_lock_killable(&vi->vfs_inode))
		return -EINTR;
	if (mutex_lock_killable(&vi->lock)) {
		inode_unlock(&vi->vfs_inode);
		return -EINTR;
	}
	err = vmr_revert(vi, dry_run, reverted, kept);
	mutex_unlock(&vi->lock);
	inode_unlock(&vi->vfs_inode);
	if (!err && !dry_run)
		vmr_notify_revert(vi, *reverted, *kept);
	return err;
}

/* An ID and two counters: the most vmr_reply_send() puts. */
#define VMR_REPLY_SIZE	(3 * nla_total_size_64bit(sizeof(u64)))

int vmr_reply_new(struct vmr_reply *r, struct genl_info *info, u8 cmd)
{
	r->msg = genlmsg_new(VMR_REPLY_SIZE, GFP_KERNEL);
	if (!r->msg)
		return -ENOMEM;
	r->hdr = genlmsg_put_reply(r->msg, info, &vmr_genl_family, 0, cmd);
	if (!r->hdr) {
		nlmsg_free(r->msg);
		return -EMSGSIZE;
	}
	return 0;
}

void vmr_reply_free(struct vmr_reply *r)
{
	nlmsg_free(r->msg);
}

int vmr_reply_send(struct vmr_reply *r, struct genl_info *info, int id_type,
		   u64 id, int a_type, u64 a, int b_type, u64 b)
{
	struct sk_buff *msg = r->msg;

	if ((id_type == VMRESET_A_VM_ID ? nla_put_u32(msg, id_type, id)
		: nla_put_u64_64bit(msg, id_type, id, VMRESET_A_PAD)) ||
	    (a_type && nla_put_u64_64bit(msg, a_type, a, VMRESET_A_PAD)) ||
	    (b_type && nla_put_u64_64bit(msg, b_type, b, VMRESET_A_PAD))) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, r->hdr);
	return genlmsg_reply(msg, info);
}

/*
 * A new event of @cmd, its header put, or NULL: nobody listens (nothing is
 * allocated on the fast path then) or no memory (events are best effort).
 */
static struct sk_buff *vmr_event_new(u8 cmd, void **hdr)
{
	struct sk_buff *msg;

	if (!genl_has_listeners(&vmr_genl_family, &init_net, VMR_MCGRP_EVENTS))
		return NULL;
	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return NULL;
	*hdr = genlmsg_put(msg, 0, 0, &vmr_genl_family, 0, cmd);
	if (!*hdr) {
		nlmsg_free(msg);
		return NULL;
	}
	return msg;
}

static void vmr_event_send(struct sk_buff *msg, void *hdr)
{
	genlmsg_end(msg, hdr);
	genlmsg_multicast(&vmr_genl_family, msg, 0, VMR_MCGRP_EVENTS, GFP_KERNEL);
}

static void vmr_notify(struct vmr_inode *vi, u8 cmd, u64 a, u64 b)
{
	struct sk_buff *msg;
	void *hdr;

	msg = vmr_event_new(cmd, &hdr);
	if (!msg)
		return;
	if (nla_put_u64_64bit(msg, VMRESET_A_OBJ_ID, vi->id, VMRESET_A_PAD) ||
	    (cmd == VMRESET_CMD_SNAPSHOT_NTF &&
	     nla_put_u64_64bit(msg, VMRESET_A_DIRTY_PAGES, a, VMRESET_A_PAD)) ||
	    (cmd == VMRESET_CMD_REVERT_NTF &&
	     (nla_put_u64_64bit(msg, VMRESET_A_REVERTED_PAGES, a, VMRESET_A_PAD) ||
	      nla_put_u64_64bit(msg, VMRESET_A_KEPT_PAGES, b, VMRESET_A_PAD)))) {
		nlmsg_free(msg);
		return;
	}
	vmr_event_send(msg, hdr);
}

void vmr_notify_vm(u8 cmd, u32 vm_id, u32 pid)
{
	struct sk_buff *msg;
	void *hdr;

	msg = vmr_event_new(cmd, &hdr);
	if (!msg)
		return;
	if (nla_put_u32(msg, VMRESET_A_VM_ID, vm_id) ||
	    nla_put_u32(msg, VMRESET_A_PID, pid)) {
		nlmsg_free(msg);
		return;
	}
	vmr_event_send(msg, hdr);
}

static void vmr_notify_snapshot(struct vmr_inode *vi, u64 dirty)
{
	vmr_notify(vi, VMRESET_CMD_SNAPSHOT_NTF, dirty, 0);
}

static void vmr_notify_revert(struct vmr_inode *vi, u64 reverted, u64 kept)
{
	vmr_notify(vi, VMRESET_CMD_REVERT_NTF, reverted, kept);
}
