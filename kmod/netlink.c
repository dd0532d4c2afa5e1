// SPDX-License-Identifier: GPL-2.0
/*
 * The generic netlink family "vmreset": manage vmresetfs files by object ID
 * from any process, and hear about snapshots, reverts and removals.
 * docs/netlink/vmreset.yaml is the spec; scripts/check-spec.py keeps this
 * file's policies in line with it.
 */
#include <linux/dcache.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include "vmreset.h"
#include "reply.h"

static const struct genl_multicast_group vmr_mcgrps[] = {
	[VMR_MCGRP_EVENTS] = { .name = VMRESET_MCGRP_EVENTS },
};

/* The object named by VMRESET_A_OBJ_ID, checked for the caller's rights. */
static struct vmr_inode *vmr_obj_from_info(struct genl_info *info)
{
	struct vmr_inode *vi;

	if (GENL_REQ_ATTR_CHECK(info, VMRESET_A_OBJ_ID))
		return ERR_PTR(-EINVAL);
	vi = vmr_obj_get(nla_get_u64(info->attrs[VMRESET_A_OBJ_ID]));
	if (!vi) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_OBJ_ID],
				    "no such object");
		return ERR_PTR(-ENOENT);
	}
	if (!vmr_may_manage(vi)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_OBJ_ID],
				    "no write permission on the object");
		vmr_obj_put(vi);
		return ERR_PTR(-EACCES);
	}
	return vi;
}

static int vmr_put_path(struct sk_buff *skb, struct vmr_inode *vi)
{
	struct dentry *d = d_find_alias(&vi->vfs_inode);
	char *buf, *path;
	int err = 0;

	if (!d)		/* unlinked */
		return 0;
	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (buf) {
		path = dentry_path_raw(d, buf, PATH_MAX);
		if (!IS_ERR(path))
			err = nla_put_string(skb, VMRESET_A_PATH, path);
		kfree(buf);
	}
	dput(d);
	return err;
}

/*
 * The attributes of @vi but its path; vi->lock held. @shared and
 * @hot_changed come from the walks that must not run in this hold.
 */
static int vmr_put_obj_locked(struct sk_buff *skb, struct vmr_inode *vi,
			      u64 shared, u64 hot_changed)
{
	struct inode *inode = &vi->vfs_inode;
	struct nlattr *nest, *range;
	unsigned int i;

	lockdep_assert_held(&vi->lock);
	if (nla_put_u64_64bit(skb, VMRESET_A_OBJ_ID, vi->id, VMRESET_A_PAD) ||
	    nla_put_u32(skb, VMRESET_A_DEV, new_encode_dev(inode->i_sb->s_dev)) ||
	    nla_put_u32(skb, VMRESET_A_UID,
			from_kuid_munged(&init_user_ns, inode->i_uid)) ||
	    nla_put_u64_64bit(skb, VMRESET_A_SIZE, i_size_read(inode), VMRESET_A_PAD) ||
	    (vi->has_snap && nla_put_flag(skb, VMRESET_A_SNAPSHOT)) ||
	    nla_put_u64_64bit(skb, VMRESET_A_SNAPSHOT_SIZE, vi->snap_size, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_RESIDENT_PAGES, vi->nr_pages, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_SHARED_PAGES, shared, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_UNDO_PAGES, vi->nr_undo_pages, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_DIRTY_PAGES,
			      vi->nr_dirty + hot_changed, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_COW_FAULTS,
			      atomic64_read(&vi->cow_faults), VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_FAULTS, atomic64_read(&vi->faults),
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_SNAPSHOTS, vi->snapshots, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_REVERTS, vi->reverts, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_REVERTED_PAGES, vi->reverted_pages,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_HOT_PAGES, vi->nr_hot, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_HOT_PROMOTIONS, vi->hot_promotions,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_HOT_DEMOTIONS, vi->hot_demotions,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_HOT_COPIES, vi->hot_copies,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_CACHED_PAGES, vi->nr_kept, VMRESET_A_PAD) ||
	    nla_put_u32(skb, VMRESET_A_HOT_MODE, vi->hot_mode))
		return -EMSGSIZE;
	nest = nla_nest_start(skb, VMRESET_A_PRESERVED);
	if (!nest)
		return -EMSGSIZE;
	for (i = 0; i < vi->nr_preserved; i++) {
		range = nla_nest_start(skb, VMRESET_A_RANGE);
		if (!range ||
		    nla_put_u64_64bit(skb, VMRESET_A_RANGE_OFFSET,
				      (u64)vi->preserved[i].start << PAGE_SHIFT, 0) ||
		    nla_put_u64_64bit(skb, VMRESET_A_RANGE_LENGTH,
				      (u64)(vi->preserved[i].end - vi->preserved[i].start)
				      << PAGE_SHIFT, 0))
			return -EMSGSIZE;
		nla_nest_end(skb, range);
	}
	nla_nest_end(skb, nest);
	return 0;
}

/* Into a dump's skb, which vmr_nl_obj_get_start() sized for any object. */
static int vmr_put_obj(struct sk_buff *skb, struct vmr_inode *vi)
{
	u64 shared = vmr_count_shared(vi), hot = vmr_hot_count_changed(vi);
	int err;

	mutex_lock(&vi->lock);
	err = vmr_put_obj_locked(skb, vi, shared, hot);
	mutex_unlock(&vi->lock);
	/* Outside vi->lock: d_find_alias() must not nest in it. */
	return err ?: vmr_put_path(skb, vi);
}

/*
 * The most vmr_put_obj() writes for an object of @nr preserved ranges: its
 * fixed attributes (well under NLMSG_GOODSIZE), a path of up to PATH_MAX
 * and the ranges, each a nest of two u64 attributes.
 */
static size_t vmr_obj_msg_size(unsigned int nr)
{
	return NLMSG_GOODSIZE + nla_total_size(PATH_MAX) + nla_total_size(0) +
	       nr * (nla_total_size(0) + 2 * nla_total_size_64bit(sizeof(u64)));
}

static int vmr_nl_obj_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vmr_inode *vi = vmr_obj_from_info(info);
	struct sk_buff *msg;
	u64 shared, hot;
	void *hdr;
	int err;

	if (IS_ERR(vi))
		return PTR_ERR(vi);
	shared = vmr_count_shared(vi);
	hot = vmr_hot_count_changed(vi);
	/*
	 * Sized under vi->lock, from the number of preserved ranges it is
	 * filled with: sized before, a PRESERVE in between could make the
	 * ranges outgrow the message.
	 */
	mutex_lock(&vi->lock);
	msg = genlmsg_new(vmr_obj_msg_size(vi->nr_preserved), GFP_KERNEL);
	if (!msg) {
		mutex_unlock(&vi->lock);
		err = -ENOMEM;
		goto out;
	}
	hdr = genlmsg_put_reply(msg, info, &vmr_genl_family, 0,
				VMRESET_CMD_OBJ_GET);
	err = hdr ? vmr_put_obj_locked(msg, vi, shared, hot) : -EMSGSIZE;
	mutex_unlock(&vi->lock);
	if (!err)
		err = vmr_put_path(msg, vi);
	if (err) {
		nlmsg_free(msg);
		goto out;
	}
	genlmsg_end(msg, hdr);
	err = genlmsg_reply(msg, info);
out:
	vmr_obj_put(vi);
	return err;
}

/*
 * Dump messages that take any object: a round's skb would otherwise be a
 * page, or what the reader took last, and a file with a hundred preserved
 * ranges (or a long path) first in a round would end the dump, everybody's,
 * with EMSGSIZE.
 */
static int vmr_nl_obj_get_start(struct netlink_callback *cb)
{
	cb->min_dump_alloc = vmr_obj_msg_size(VMRESET_MAX_PRESERVED);
	return 0;
}

static int vmr_nl_obj_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	unsigned long id = cb->args[0];
	struct vmr_inode *vi;
	void *hdr;
	int err = 0;

	cb->seq = vmr_obj_gen();
	while ((vi = vmr_obj_next(&id))) {
		if (!vmr_may_manage(vi)) {
			vmr_obj_put(vi);
			id++;
			continue;
		}
		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid,
				  cb->nlh->nlmsg_seq, &vmr_genl_family,
				  NLM_F_MULTI, VMRESET_CMD_OBJ_GET);
		if (!hdr) {
			err = -EMSGSIZE;
		} else {
			genl_dump_check_consistent(cb, hdr);
			err = vmr_put_obj(skb, vi);
			if (err)
				genlmsg_cancel(skb, hdr);
			else
				genlmsg_end(skb, hdr);
		}
		vmr_obj_put(vi);
		if (err)
			break;
		id++;
	}
	cb->args[0] = id;
	/* A full skb ends this round; the dump goes on in the next. */
	if (err == -EMSGSIZE && skb->len)
		return skb->len;
	if (err == -EMSGSIZE)	/* vmr_nl_obj_get_start() sized it for this */
		NL_SET_ERR_MSG(cb->extack, "an object does not fit a dump message");
	return err ?: skb->len;
}

static int vmr_nl_snapshot_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vmr_inode *vi = vmr_obj_from_info(info);
	struct vmr_reply r;
	u64 dirty;
	int err;

	if (IS_ERR(vi))
		return PTR_ERR(vi);
	err = vmr_reply_new(&r, info, VMRESET_CMD_OBJ_SNAPSHOT);
	if (err)
		goto out;
	err = vmr_op_snapshot(vi, &dirty);
	if (err) {
		NL_SET_ERR_MSG(info->extack, "interrupted while waiting for the object");
		vmr_reply_free(&r);
	} else {
		err = vmr_reply_send(&r, info, VMRESET_A_OBJ_ID, vi->id,
				     VMRESET_A_DIRTY_PAGES, dirty, 0, 0);
	}
out:
	vmr_obj_put(vi);
	return err;
}

static int vmr_nl_revert_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *fa = info->attrs[VMRESET_A_FLAGS];
	u64 flags = fa ? nla_get_u64(fa) : 0, reverted, kept;
	struct vmr_inode *vi;
	struct vmr_reply r;
	int err;

	if (flags & ~VMRESET_REVERT_F_ALL) {
		NL_SET_ERR_MSG_ATTR(info->extack, fa, "unknown flags");
		return -EINVAL;
	}
	vi = vmr_obj_from_info(info);
	if (IS_ERR(vi))
		return PTR_ERR(vi);
	err = vmr_reply_new(&r, info, VMRESET_CMD_OBJ_REVERT);
	if (err)
		goto out;
	err = vmr_op_revert(vi, flags, &reverted, &kept);
	if (err == -ENODATA)
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_OBJ_ID],
				    "object has no snapshot");
	else if (err == -EINTR)
		NL_SET_ERR_MSG(info->extack, "interrupted while waiting for the object");
	if (err)
		vmr_reply_free(&r);
	else
		err = vmr_reply_send(&r, info, VMRESET_A_OBJ_ID, vi->id,
				     VMRESET_A_REVERTED_PAGES, reverted,
				     VMRESET_A_KEPT_PAGES, kept);
out:
	vmr_obj_put(vi);
	return err;
}

static int vmr_nl_preserve_doit(struct sk_buff *skb, struct genl_info *info)
{
	bool add = info->genlhdr->cmd == VMRESET_CMD_PRESERVE_ADD;
	struct vmr_inode *vi;
	pgoff_t start, end;
	u64 off, len;
	int err;

	if (GENL_REQ_ATTR_CHECK(info, VMRESET_A_OFFSET) ||
	    GENL_REQ_ATTR_CHECK(info, VMRESET_A_LENGTH))
		return -EINVAL;
	off = nla_get_u64(info->attrs[VMRESET_A_OFFSET]);
	len = nla_get_u64(info->attrs[VMRESET_A_LENGTH]);
	if (vmr_byte_range(off, len, &start, &end)) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    PAGE_ALIGNED(off) ? info->attrs[VMRESET_A_LENGTH]
						      : info->attrs[VMRESET_A_OFFSET],
				    "range must be page-aligned, non-empty and not wrap");
		return -EINVAL;
	}
	vi = vmr_obj_from_info(info);
	if (IS_ERR(vi))
		return PTR_ERR(vi);
	err = vmr_op_preserve(vi, add, start, end);
	if (err == -ENOSPC)
		NL_SET_ERR_MSG(info->extack, "too many preserved ranges");
	else if (err == -EINTR)
		NL_SET_ERR_MSG(info->extack, "interrupted while waiting for the object");
	vmr_obj_put(vi);
	return err;
}

/* The page range of OFFSET and LENGTH in @tb, or an extack and EINVAL. */
static int vmr_nl_range(struct genl_info *info, struct nlattr **tb,
			struct nlattr *where, pgoff_t *start, pgoff_t *end)
{
	u64 off, len;

	if (!tb[VMRESET_A_OFFSET] || !tb[VMRESET_A_LENGTH]) {
		NL_SET_ERR_MSG_ATTR(info->extack, where,
				    "range needs an offset and a length");
		return -EINVAL;
	}
	off = nla_get_u64(tb[VMRESET_A_OFFSET]);
	len = nla_get_u64(tb[VMRESET_A_LENGTH]);
	if (vmr_byte_range(off, len, start, end)) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    PAGE_ALIGNED(off) ? tb[VMRESET_A_LENGTH]
						      : tb[VMRESET_A_OFFSET],
				    "range must be page-aligned, non-empty and not wrap");
		return -EINVAL;
	}
	return 0;
}

static const struct nla_policy vmr_range_policy[VMRESET_A_RANGE_MAX + 1] = {
	[VMRESET_A_RANGE_OFFSET] = { .type = NLA_U64 },
	[VMRESET_A_RANGE_LENGTH] = { .type = NLA_U64 },
};

/* The ranges of the HOT nest (RANGE nests of RANGE_OFFSET, RANGE_LENGTH). */
static int vmr_nl_hot_ranges(struct genl_info *info, struct vmr_prange **out,
			     unsigned int *nr)
{
	struct nlattr *hot = info->attrs[VMRESET_A_HOT], *range;
	struct nlattr *tb[VMRESET_A_RANGE_MAX + 1];
	struct vmr_prange *r;
	unsigned int n = 0;
	int rem, err;

	*nr = 0;
	*out = NULL;
	if (!hot)
		return 0;
	nla_for_each_nested(range, hot, rem)
		n++;
	if (n > VMRESET_MAX_LIST) {
		NL_SET_ERR_MSG_ATTR(info->extack, hot, "too many ranges");
		return -EINVAL;
	}
	r = kvmalloc_array(max(n, 1U), sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	n = 0;
	nla_for_each_nested(range, hot, rem) {
		u64 off, len;

		err = -EINVAL;
		if (nla_type(range) != VMRESET_A_RANGE) {
			NL_SET_ERR_MSG_ATTR(info->extack, range, "expected a range nest");
			goto err_free;
		}
		err = nla_parse_nested(tb, VMRESET_A_RANGE_MAX, range,
				       vmr_range_policy, info->extack);
		if (err)
			goto err_free;
		err = -EINVAL;
		if (!tb[VMRESET_A_RANGE_OFFSET] || !tb[VMRESET_A_RANGE_LENGTH]) {
			NL_SET_ERR_MSG_ATTR(info->extack, range,
					    "range needs an offset and a length");
			goto err_free;
		}
		off = nla_get_u64(tb[VMRESET_A_RANGE_OFFSET]);
		len = nla_get_u64(tb[VMRESET_A_RANGE_LENGTH]);
		if (vmr_byte_range(off, len, &r[n].start, &r[n].end)) {
			NL_SET_ERR_MSG_ATTR(info->extack, range,
					    "range must be page-aligned, non-empty and not wrap");
			goto err_free;
		}
		n++;
	}
	*out = r;
	*nr = n;
	return 0;

err_free:
	kvfree(r);
	return err;
}

static int vmr_nl_hot_doit(struct sk_buff *skb, struct genl_info *info)
{
	u8 cmd = info->genlhdr->cmd;
	struct vmr_prange one, *r = &one;
	struct vmr_inode *vi;
	unsigned int nr = 1;
	u32 op;
	int err;

	if (cmd == VMRESET_CMD_HOT_SET) {
		op = VMRESET_HOT_SET;
		err = vmr_nl_hot_ranges(info, &r, &nr);
	} else {
		op = cmd == VMRESET_CMD_HOT_ADD ? VMRESET_HOT_ADD : VMRESET_HOT_DEL;
		if (GENL_REQ_ATTR_CHECK(info, VMRESET_A_OFFSET) ||
		    GENL_REQ_ATTR_CHECK(info, VMRESET_A_LENGTH))
			return -EINVAL;
		err = vmr_nl_range(info, info->attrs, NULL, &one.start, &one.end);
	}
	if (err)
		return err;
	vi = vmr_obj_from_info(info);
	if (IS_ERR(vi)) {
		err = PTR_ERR(vi);
		goto out;
	}
	mutex_lock(&vi->lock);
	err = vmr_hot_apply(vi, op, r, nr);
	mutex_unlock(&vi->lock);
	if (err == -ENOSPC)
		NL_SET_ERR_MSG(info->extack,
			       "the hot set would exceed the object's bound");
	vmr_obj_put(vi);
out:
	if (r != &one)
		kvfree(r);
	return err;
}

static int vmr_nl_hot_config_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr **a = info->attrs;
	struct vmreset_hot_config c = { 0 };
	struct vmr_inode *vi;
	struct sk_buff *msg;
	bool kept_bad;
	void *hdr;
	int err;

	if (a[VMRESET_A_HOT_MODE]) {
		c.flags |= VMRESET_HOT_CFG_MODE;
		c.mode = nla_get_u32(a[VMRESET_A_HOT_MODE]);
		if (c.mode > VMRESET_HOT_LEARN) {
			NL_SET_ERR_MSG_ATTR(info->extack, a[VMRESET_A_HOT_MODE],
					    "unknown hot mode");
			return -EINVAL;
		}
	}
	if (a[VMRESET_A_HOT_MAX]) {
		c.flags |= VMRESET_HOT_CFG_MAX;
		c.max_pages = nla_get_u64(a[VMRESET_A_HOT_MAX]);
	}
	if (!a[VMRESET_A_HOT_LEARN_K] != !a[VMRESET_A_HOT_LEARN_N]) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    a[VMRESET_A_HOT_LEARN_K] ?: a[VMRESET_A_HOT_LEARN_N],
				    "hot-learn-k and hot-learn-n go together");
		return -EINVAL;
	}
	if (a[VMRESET_A_HOT_LEARN_K]) {
		c.flags |= VMRESET_HOT_CFG_LEARN;
		c.learn_k = nla_get_u32(a[VMRESET_A_HOT_LEARN_K]);
		c.learn_n = nla_get_u32(a[VMRESET_A_HOT_LEARN_N]);
	}
	if (a[VMRESET_A_HOT_KEPT_MAX]) {
		c.flags |= VMRESET_HOT_CFG_KEPT;
		c.kept_max = nla_get_u64(a[VMRESET_A_HOT_KEPT_MAX]);
	}
	vi = vmr_obj_from_info(info);
	if (IS_ERR(vi))
		return PTR_ERR(vi);
	/* Before the change: a config that was set is answered. */
	err = -ENOMEM;
	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		goto out;
	mutex_lock(&vi->lock);
	err = vmr_hot_config(vi, &c);
	/* Checked first: an EINVAL with a kept bound above the mount's is its. */
	kept_bad = (c.flags & VMRESET_HOT_CFG_KEPT) &&
		   c.kept_max > READ_ONCE(VMR_SB(vi->vfs_inode.i_sb)->kept_max);
	mutex_unlock(&vi->lock);
	if (err == -EINVAL && kept_bad)
		NL_SET_ERR_MSG_ATTR(info->extack, a[VMRESET_A_HOT_KEPT_MAX],
				    "kept-copy bound above the mount's keep_size");
	else if (err == -EBUSY)
		NL_SET_ERR_MSG_ATTR(info->extack, a[VMRESET_A_HOT_MAX],
				    "bound below the explicit hot set");
	else if (err == -EINVAL && (c.flags & VMRESET_HOT_CFG_LEARN))
		NL_SET_ERR_MSG_ATTR(info->extack, a[VMRESET_A_HOT_LEARN_K],
				    "need 1 <= hot-learn-k <= hot-learn-n <= 16");
	else if (err == -EINVAL)
		NL_SET_ERR_MSG_ATTR(info->extack, a[VMRESET_A_HOT_MAX],
				    "bound above the mount's hot_size");
	if (err) {
		nlmsg_free(msg);
		goto out;
	}
	hdr = genlmsg_put_reply(msg, info, &vmr_genl_family, 0,
				VMRESET_CMD_HOT_CONFIG);
	if (!hdr ||
	    nla_put_u64_64bit(msg, VMRESET_A_OBJ_ID, vi->id, VMRESET_A_PAD) ||
	    nla_put_u32(msg, VMRESET_A_HOT_MODE, c.mode) ||
	    nla_put_u64_64bit(msg, VMRESET_A_HOT_MAX, c.max_pages, VMRESET_A_PAD) ||
	    nla_put_u32(msg, VMRESET_A_HOT_LEARN_K, c.learn_k) ||
	    nla_put_u32(msg, VMRESET_A_HOT_LEARN_N, c.learn_n) ||
	    nla_put_u64_64bit(msg, VMRESET_A_HOT_EXPLICIT_PAGES, c.explicit_pages,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(msg, VMRESET_A_HOT_PAGES, c.hot_pages, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(msg, VMRESET_A_HOT_MOUNT_MAX, c.mount_max_pages,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(msg, VMRESET_A_HOT_MOUNT_PAGES, c.mount_hot_pages,
			      VMRESET_A_PAD) ||
	    nla_put_u64_64bit(msg, VMRESET_A_HOT_KEPT_MAX, c.kept_max, VMRESET_A_PAD) ||
	    nla_put_u64_64bit(msg, VMRESET_A_CACHED_PAGES, c.kept_pages, VMRESET_A_PAD)) {
		nlmsg_free(msg);
		err = -EMSGSIZE;
		goto out;
	}
	genlmsg_end(msg, hdr);
	err = genlmsg_reply(msg, info);
out:
	vmr_obj_put(vi);
	return err;
}

static const struct nla_policy vmr_obj_id_policy[VMRESET_A_OBJ_ID + 1] = {
	[VMRESET_A_OBJ_ID] = { .type = NLA_U64 },
};

static const struct nla_policy vmr_revert_policy[VMRESET_A_FLAGS + 1] = {
	[VMRESET_A_OBJ_ID] = { .type = NLA_U64 },
	[VMRESET_A_FLAGS] = { .type = NLA_U64 },
};

static const struct nla_policy vmr_preserve_policy[VMRESET_A_LENGTH + 1] = {
	[VMRESET_A_OBJ_ID] = { .type = NLA_U64 },
	[VMRESET_A_OFFSET] = { .type = NLA_U64 },
	[VMRESET_A_LENGTH] = { .type = NLA_U64 },
};

static const struct nla_policy vmr_vm_attach_policy[VMRESET_A_ATTACH_FLAGS + 1] = {
	[VMRESET_A_VM_FD] = { .type = NLA_U32 },
	[VMRESET_A_ATTACH_FLAGS] = { .type = NLA_U32 },
};

static const struct nla_policy vmr_vm_id_policy[VMRESET_A_VM_ID + 1] = {
	[VMRESET_A_VM_ID] = { .type = NLA_U32 },
};

static const struct nla_policy vmr_vm_revert_policy[VMRESET_A_VM_ID + 1] = {
	[VMRESET_A_VM_ID] = { .type = NLA_U32 },
	[VMRESET_A_FLAGS] = { .type = NLA_U64 },
};

static const struct nla_policy vmr_vm_preserve_policy[VMRESET_A_VM_ID + 1] = {
	[VMRESET_A_VM_ID] = { .type = NLA_U32 },
	[VMRESET_A_OFFSET] = { .type = NLA_U64 },
	[VMRESET_A_LENGTH] = { .type = NLA_U64 },
};

static const struct nla_policy vmr_hot_set_policy[VMRESET_A_HOT + 1] = {
	[VMRESET_A_OBJ_ID] = { .type = NLA_U64 },
	[VMRESET_A_HOT] = { .type = NLA_NESTED },
};

static const struct nla_policy vmr_hot_config_policy[VMRESET_A_HOT_KEPT_MAX + 1] = {
	[VMRESET_A_OBJ_ID] = { .type = NLA_U64 },
	[VMRESET_A_HOT_MODE] = { .type = NLA_U32 },
	[VMRESET_A_HOT_MAX] = { .type = NLA_U64 },
	[VMRESET_A_HOT_LEARN_K] = { .type = NLA_U32 },
	[VMRESET_A_HOT_LEARN_N] = { .type = NLA_U32 },
	[VMRESET_A_HOT_KEPT_MAX] = { .type = NLA_U64 },
};

static const struct genl_ops vmr_genl_ops[] = {
	{
		.cmd = VMRESET_CMD_OBJ_GET,
		.doit = vmr_nl_obj_get_doit,
		.start = vmr_nl_obj_get_start,
		.dumpit = vmr_nl_obj_get_dumpit,
		.policy = vmr_obj_id_policy,
		.maxattr = ARRAY_SIZE(vmr_obj_id_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_OBJ_SNAPSHOT,
		.doit = vmr_nl_snapshot_doit,
		.policy = vmr_obj_id_policy,
		.maxattr = ARRAY_SIZE(vmr_obj_id_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_OBJ_REVERT,
		.doit = vmr_nl_revert_doit,
		.policy = vmr_revert_policy,
		.maxattr = ARRAY_SIZE(vmr_revert_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_PRESERVE_ADD,
		.doit = vmr_nl_preserve_doit,
		.policy = vmr_preserve_policy,
		.maxattr = ARRAY_SIZE(vmr_preserve_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_PRESERVE_DEL,
		.doit = vmr_nl_preserve_doit,
		.policy = vmr_preserve_policy,
		.maxattr = ARRAY_SIZE(vmr_preserve_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_ATTACH,
		.doit = vmr_nl_vm_attach_doit,
		.policy = vmr_vm_attach_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_attach_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_DETACH,
		.doit = vmr_nl_vm_detach_doit,
		.policy = vmr_vm_id_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_id_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_GET,
		.doit = vmr_nl_vm_get_doit,
		.start = vmr_nl_vm_get_start,
		.dumpit = vmr_nl_vm_get_dumpit,
		.policy = vmr_vm_id_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_id_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_SNAPSHOT,
		.doit = vmr_nl_vm_snapshot_doit,
		.policy = vmr_vm_id_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_id_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_REVERT,
		.doit = vmr_nl_vm_revert_doit,
		.policy = vmr_vm_revert_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_revert_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_PRESERVE_ADD,
		.doit = vmr_nl_vm_preserve_doit,
		.policy = vmr_vm_preserve_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_preserve_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_VM_PRESERVE_DEL,
		.doit = vmr_nl_vm_preserve_doit,
		.policy = vmr_vm_preserve_policy,
		.maxattr = ARRAY_SIZE(vmr_vm_preserve_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_HOT_ADD,
		.doit = vmr_nl_hot_doit,
		.policy = vmr_preserve_policy,
		.maxattr = ARRAY_SIZE(vmr_preserve_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_HOT_DEL,
		.doit = vmr_nl_hot_doit,
		.policy = vmr_preserve_policy,
		.maxattr = ARRAY_SIZE(vmr_preserve_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_HOT_SET,
		.doit = vmr_nl_hot_doit,
		.policy = vmr_hot_set_policy,
		.maxattr = ARRAY_SIZE(vmr_hot_set_policy) - 1,
	},
	{
		.cmd = VMRESET_CMD_HOT_CONFIG,
		.doit = vmr_nl_hot_config_doit,
		.policy = vmr_hot_config_policy,
		.maxattr = ARRAY_SIZE(vmr_hot_config_policy) - 1,
	},
};

struct genl_family vmr_genl_family __ro_after_init = {
	.name		= VMRESET_GENL_NAME,
	.version	= VMRESET_GENL_VERSION,
	.module		= THIS_MODULE,
	/*
	 * Without genl_mutex: a VM revert can take long, and would hold up
	 * every generic netlink family of the host. Objects are serialised
	 * by their inode's locks, VMs by their own lock, the registries by
	 * theirs.
	 */
	.parallel_ops	= true,
	.ops		= vmr_genl_ops,
	.n_ops		= ARRAY_SIZE(vmr_genl_ops),
	.resv_start_op	= VMRESET_CMD_MAX + 1,
	.mcgrps		= vmr_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(vmr_mcgrps),
};

int __init vmr_nl_init(void)
{
	return genl_register_family(&vmr_genl_family);
}

void vmr_nl_exit(void)
{
	genl_unregister_family(&vmr_genl_family);
}
