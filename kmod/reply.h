/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Replies of the netlink operations that change something (obj.c builds
 * them for netlink.c and vm.c): allocated before the operation, so that
 * one that went through never fails for want of memory for its answer.
 */
#ifndef _VMRESET_REPLY_H
#define _VMRESET_REPLY_H

struct genl_info;
struct sk_buff;

struct vmr_reply {
	struct sk_buff *msg;
	void *hdr;
};

/* A reply of @cmd to @info, with room for an ID and two u64 counters. */
int vmr_reply_new(struct vmr_reply *r, struct genl_info *info, u8 cmd);
/* Not sent after all: the operation failed. */
void vmr_reply_free(struct vmr_reply *r);
/*
 * Send it with the object's or VM's ID (@id_type: VMRESET_A_OBJ_ID, a u64,
 * or VMRESET_A_VM_ID, a u32) and the counters of type @a_type, @b_type
 * that are not 0; consumes @r.
 */
int vmr_reply_send(struct vmr_reply *r, struct genl_info *info, int id_type,
		   u64 id, int a_type, u64 a, int b_type, u64 b);

#endif /* _VMRESET_REPLY_H */
