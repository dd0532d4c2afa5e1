// SPDX-License-Identifier: LGPL-2.1-or-later OR MIT
/*
 * libvmreset: the generic netlink side, on libnl-genl-3.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include "vmreset.h"

#define VMR_EXPORT __attribute__((visibility("default")))

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

struct vmreset_nl {
	struct nl_sock *sk;
	int family;
	int mcgrp;
	int err;		/* errno of the last request */
	bool done;		/* its ack, error or end of dump arrived */
	bool intr;		/* a message of its dump had NLM_F_DUMP_INTR */
	char errmsg[256];	/* its extack message, if any */
};

VMR_EXPORT struct vmreset_nl *vmreset_nl_open(int *err)
{
	struct vmreset_nl *nl = calloc(1, sizeof(*nl));
	int one = 1, e = -ENOMEM;

	if (!nl)
		goto fail;
	nl->sk = nl_socket_alloc();
	if (!nl->sk)
		goto fail;
	e = -ECONNREFUSED;
	if (genl_connect(nl->sk))
		goto fail;
	/* Error messages from the kernel; no copy of our request in acks. */
	setsockopt(nl_socket_get_fd(nl->sk), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(nl_socket_get_fd(nl->sk), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	nl->family = genl_ctrl_resolve(nl->sk, VMRESET_GENL_NAME);
	e = -ENOENT;	/* module not loaded */
	if (nl->family < 0)
		goto fail;
	nl->mcgrp = genl_ctrl_resolve_grp(nl->sk, VMRESET_GENL_NAME, VMRESET_MCGRP_EVENTS);
	return nl;
fail:
	if (nl && nl->sk)
		nl_socket_free(nl->sk);
	free(nl);
	if (err)
		*err = e;
	return NULL;
}

VMR_EXPORT void vmreset_nl_close(struct vmreset_nl *nl)
{
	if (!nl)
		return;
	nl_socket_free(nl->sk);
	free(nl);
}

VMR_EXPORT const char *vmreset_nl_errmsg(const struct vmreset_nl *nl)
{
	return nl->errmsg;
}

/* The extack message in the TLVs at @off of @nlh, if there is one. */
static void get_errmsg(struct vmreset_nl *nl, struct nlmsghdr *nlh, int off)
{
	struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];

	if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) && (int)nlh->nlmsg_len > off &&
	    !nla_parse(tb, NLMSGERR_ATTR_MAX, (struct nlattr *)((char *)nlh + off),
		       nlh->nlmsg_len - off, NULL) && tb[NLMSGERR_ATTR_MSG])
		snprintf(nl->errmsg, sizeof(nl->errmsg), "%s",
			 nla_get_string(tb[NLMSGERR_ATTR_MSG]));
}

/* An error, an ack or the end of a dump ends a request. */
static int on_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
	struct vmreset_nl *nl = arg;
	struct nlmsghdr *nlh = (struct nlmsghdr *)((char *)e - NLMSG_HDRLEN);
	int off = NLMSG_HDRLEN + sizeof(*e);

	(void)who;
	nl->done = true;
	nl->err = -e->error;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - NLMSG_HDRLEN;
	get_errmsg(nl, nlh, off);
	return NL_STOP;
}

/*
 * An ack, or a dump's NLMSG_DONE. A dump that fails part way (a VM too big
 * for a dump message, say) reports it here, as the int after the header
 * and an extack message, not as an NLMSG_ERROR: libnl ignores both.
 */
static int on_done(struct nl_msg *msg, void *arg)
{
	struct vmreset_nl *nl = arg;
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	int err;

	nl->done = true;
	if (nlh->nlmsg_type == NLMSG_DONE &&
	    nlh->nlmsg_len >= NLMSG_HDRLEN + sizeof(err)) {
		memcpy(&err, nlmsg_data(nlh), sizeof(err));
		if (err < 0) {
			nl->err = -err;
			get_errmsg(nl, nlh, NLMSG_HDRLEN + sizeof(err));
		}
	}
	return NL_STOP;
}

/*
 * The kernel marks a message NLM_F_DUMP_INTR when what it dumps changed
 * since the dump's previous message (a VM or an object came or went):
 * the dump may then miss a record or hold a stale one. Noted here, and
 * the dump read on to its end, so that dump() can start it again.
 */
static int on_dump_intr(struct nl_msg *msg, void *arg)
{
	struct vmreset_nl *nl = arg;

	(void)msg;
	nl->intr = true;
	return NL_OK;
}

/* Send @msg (consumed) and feed every reply to @fn. */
static int request(struct vmreset_nl *nl, struct nl_msg *msg,
		   int (*fn)(struct nl_msg *, void *), void *arg)
{
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	int ret;

	nl->err = 0;
	nl->errmsg[0] = 0;
	if (!cb) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	nl_cb_err(cb, NL_CB_CUSTOM, on_error, nl);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_done, nl);
	nl_cb_set(cb, NL_CB_FINISH, NL_CB_CUSTOM, on_done, nl);
	nl_cb_set(cb, NL_CB_DUMP_INTR, NL_CB_CUSTOM, on_dump_intr, nl);
	if (fn)
		nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, fn, arg);
	nl->done = false;
	nl->intr = false;
	ret = nl_send_auto(nl->sk, msg);
	nlmsg_free(msg);
	/*
	 * nl_recvmsgs() returns after one datagram that is not part of a
	 * dump: a reply and its ack take two calls, or the ack would be
	 * read as the answer to the next request.
	 */
	while (ret >= 0 && !nl->done)
		ret = nl_recvmsgs(nl->sk, cb);
	nl_cb_put(cb);
	if (ret == -NLE_DUMP_INTR)	/* should our callback not have run */
		nl->intr = true;
	if (nl->err)
		return -nl->err;
	return ret < 0 && ret != -NLE_DUMP_INTR ? -EIO : 0;
}

/*
 * How many times dump() starts a dump that was interrupted before it gives
 * up: each takes a few milliseconds, so only a registry that changes all
 * the time (files created and removed in a loop) defeats them all.
 */
#define VMR_DUMP_TRIES	10

/* The messages of a dump, held until the dump is known to be consistent. */
struct dump_msgs {
	struct nl_msg **m;
	size_t n, cap;
	int err;
};

static int collect(struct nl_msg *msg, void *arg)
{
	struct dump_msgs *d = arg;

	if (d->err)
		return NL_OK;	/* read the dump to its end all the same */
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct nl_msg **m = realloc(d->m, cap * sizeof(*m));

		if (!m) {
			d->err = -ENOMEM;
			return NL_OK;
		}
		d->m = m;
		d->cap = cap;
	}
	nlmsg_get(msg);
	d->m[d->n++] = msg;
	return NL_OK;
}

static struct nl_msg *new_msg(struct vmreset_nl *nl, uint8_t cmd, int flags,
			      uint64_t id)
{
	struct nl_msg *msg = nlmsg_alloc();

	if (!msg)
		return NULL;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->family, 0,
			 flags | NLM_F_ACK, cmd, VMRESET_GENL_VERSION) ||
	    (id && nla_put_u64(msg, VMRESET_A_OBJ_ID, id))) {
		nlmsg_free(msg);
		return NULL;
	}
	return msg;
}

static uint64_t get_u64(struct nlattr **tb, int type)
{
	return tb[type] ? nla_get_u64(tb[type]) : 0;
}

static int parse_obj(struct nl_msg *msg, struct vmreset_obj *o)
{
	struct nlattr *tb[VMRESET_A_MAX + 1], *r;
	int rem;

	memset(o, 0, sizeof(*o));
	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, VMRESET_A_MAX, NULL))
		return -EPROTO;
	o->id = get_u64(tb, VMRESET_A_OBJ_ID);
	if (tb[VMRESET_A_PATH])
		snprintf(o->path, sizeof(o->path), "%s", nla_get_string(tb[VMRESET_A_PATH]));
	o->dev = tb[VMRESET_A_DEV] ? nla_get_u32(tb[VMRESET_A_DEV]) : 0;
	o->uid = tb[VMRESET_A_UID] ? nla_get_u32(tb[VMRESET_A_UID]) : 0;
	o->size = get_u64(tb, VMRESET_A_SIZE);
	o->has_snapshot = !!tb[VMRESET_A_SNAPSHOT];
	o->snapshot_size = get_u64(tb, VMRESET_A_SNAPSHOT_SIZE);
	o->resident_pages = get_u64(tb, VMRESET_A_RESIDENT_PAGES);
	o->shared_pages = get_u64(tb, VMRESET_A_SHARED_PAGES);
	o->undo_pages = get_u64(tb, VMRESET_A_UNDO_PAGES);
	o->dirty_pages = get_u64(tb, VMRESET_A_DIRTY_PAGES);
	o->cow_faults = get_u64(tb, VMRESET_A_COW_FAULTS);
	o->faults = get_u64(tb, VMRESET_A_FAULTS);
	o->snapshots = get_u64(tb, VMRESET_A_SNAPSHOTS);
	o->reverts = get_u64(tb, VMRESET_A_REVERTS);
	o->reverted_pages = get_u64(tb, VMRESET_A_REVERTED_PAGES);
	o->hot_pages = get_u64(tb, VMRESET_A_HOT_PAGES);
	o->hot_promotions = get_u64(tb, VMRESET_A_HOT_PROMOTIONS);
	o->hot_demotions = get_u64(tb, VMRESET_A_HOT_DEMOTIONS);
	o->hot_copies = get_u64(tb, VMRESET_A_HOT_COPIES);
	o->cached_pages = get_u64(tb, VMRESET_A_CACHED_PAGES);
	o->hot_mode = tb[VMRESET_A_HOT_MODE] ? nla_get_u32(tb[VMRESET_A_HOT_MODE]) : 0;
	if (tb[VMRESET_A_PRESERVED]) {
		nla_for_each_nested(r, tb[VMRESET_A_PRESERVED], rem) {
			struct nlattr *rt[VMRESET_A_RANGE_MAX + 1];
			struct vmreset_range *n;

			if (nla_parse_nested(rt, VMRESET_A_RANGE_MAX, r, NULL))
				return -EPROTO;
			n = realloc(o->preserved, (o->nr_preserved + 1) * sizeof(*n));
			if (!n)
				return -ENOMEM;
			o->preserved = n;
			n[o->nr_preserved].offset = get_u64(rt, VMRESET_A_RANGE_OFFSET);
			n[o->nr_preserved].length = get_u64(rt, VMRESET_A_RANGE_LENGTH);
			o->nr_preserved++;
		}
	}
	return 0;
}

static int parse_vm(struct nl_msg *msg, struct vmreset_vm *vm)
{
	struct nlattr *tb[VMRESET_A_MAX + 1], *sl;
	int rem;

	memset(vm, 0, sizeof(*vm));
	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, VMRESET_A_MAX, NULL))
		return -EPROTO;
	vm->id = tb[VMRESET_A_VM_ID] ? nla_get_u32(tb[VMRESET_A_VM_ID]) : 0;
	vm->pid = tb[VMRESET_A_PID] ? nla_get_u32(tb[VMRESET_A_PID]) : 0;
	vm->uid = tb[VMRESET_A_UID] ? nla_get_u32(tb[VMRESET_A_UID]) : 0;
	vm->snapshots = get_u64(tb, VMRESET_A_SNAPSHOTS);
	vm->reverts = get_u64(tb, VMRESET_A_REVERTS);
	vm->reverted_pages = get_u64(tb, VMRESET_A_REVERTED_PAGES);
	if (!tb[VMRESET_A_SLOTS])
		return 0;
	nla_for_each_nested(sl, tb[VMRESET_A_SLOTS], rem) {
		struct nlattr *st[VMRESET_A_SLOT_MAX + 1];
		struct vmreset_vm_slot *n;

		if (nla_parse_nested(st, VMRESET_A_SLOT_MAX, sl, NULL))
			continue;
		n = realloc(vm->slots, (vm->nr_slots + 1) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		vm->slots = n;
		n[vm->nr_slots].gpa = get_u64(st, VMRESET_A_SLOT_GPA);
		n[vm->nr_slots].size = get_u64(st, VMRESET_A_SLOT_SIZE);
		n[vm->nr_slots].obj_id = get_u64(st, VMRESET_A_SLOT_OBJ_ID);
		n[vm->nr_slots].offset = get_u64(st, VMRESET_A_SLOT_OFFSET);
		vm->nr_slots++;
	}
	return 0;
}

VMR_EXPORT void vmreset_obj_free(struct vmreset_obj *o)
{
	free(o->preserved);
	o->preserved = NULL;
	o->nr_preserved = 0;
}

static int got_obj(struct nl_msg *msg, void *arg)
{
	return parse_obj(msg, arg) ? NL_STOP : NL_OK;
}

VMR_EXPORT int vmreset_nl_get(struct vmreset_nl *nl, uint64_t id,
			      struct vmreset_obj *o)
{
	struct nl_msg *msg = new_msg(nl, VMRESET_CMD_OBJ_GET, 0, id);

	memset(o, 0, sizeof(*o));
	return msg ? request(nl, msg, got_obj, o) : -ENOMEM;
}

/* A list: the caller's function for objects or for VMs, and its argument. */
struct list_ctx {
	vmreset_obj_fn obj_fn;
	vmreset_vm_fn vm_fn;
	void *arg;
};

/* One record to the caller: 0 to go on, or what the list returns. */
static int deliver(struct nl_msg *msg, const struct list_ctx *c)
{
	struct vmreset_obj o;
	struct vmreset_vm vm;
	int ret;

	if (c->vm_fn) {
		ret = parse_vm(msg, &vm);
		if (!ret)
			ret = c->vm_fn(&vm, c->arg);
		vmreset_vm_free(&vm);
		return ret;
	}
	ret = parse_obj(msg, &o);
	if (!ret)
		ret = c->obj_fn(&o, c->arg);
	vmreset_obj_free(&o);
	return ret;
}

/*
 * Dump @cmd and deliver each record. The records are delivered only once
 * the whole dump was read and found consistent, so the caller never sees
 * a record twice or from two states of the registry; an interrupted dump
 * is started again, VMR_DUMP_TRIES times at most, then -EAGAIN.
 */
static int dump(struct vmreset_nl *nl, uint8_t cmd, const struct list_ctx *c)
{
	int tries, ret;
	size_t i;

	for (tries = 0; tries < VMR_DUMP_TRIES; tries++) {
		struct dump_msgs d = { 0 };
		struct nl_msg *msg = new_msg(nl, cmd, NLM_F_DUMP, 0);

		if (!msg)
			return -ENOMEM;
		ret = request(nl, msg, collect, &d);
		if (!ret)
			ret = d.err;
		if (!nl->intr || !nl->done)
			for (i = 0; !ret && i < d.n; i++)
				ret = deliver(d.m[i], c);
		for (i = 0; i < d.n; i++)
			nlmsg_free(d.m[i]);
		free(d.m);
		if (!nl->intr || !nl->done)
			return ret;
	}
	snprintf(nl->errmsg, sizeof(nl->errmsg),
		 "the list changed while it was read, %d times in a row: try again",
		 VMR_DUMP_TRIES);
	return -EAGAIN;
}

VMR_EXPORT int vmreset_nl_list(struct vmreset_nl *nl, vmreset_obj_fn fn, void *arg)
{
	struct list_ctx c = { .obj_fn = fn, .arg = arg };

	return dump(nl, VMRESET_CMD_OBJ_GET, &c);
}

struct counts {
	uint64_t a, b;
	int a_type, b_type;
};

static int got_counts(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VMRESET_A_MAX + 1];
	struct counts *c = arg;

	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, VMRESET_A_MAX, NULL))
		return NL_STOP;
	c->a = get_u64(tb, c->a_type);
	if (c->b_type)
		c->b = get_u64(tb, c->b_type);
	return NL_OK;
}

/* The requests shared by objects and VMs; each consumes @msg. */
static int do_snapshot(struct vmreset_nl *nl, struct nl_msg *msg,
		       uint64_t *dirty_pages)
{
	struct counts c = { .a_type = VMRESET_A_DIRTY_PAGES };
	int ret;

	if (!msg)
		return -ENOMEM;
	ret = request(nl, msg, got_counts, &c);
	if (!ret && dirty_pages)
		*dirty_pages = c.a;
	return ret;
}

static int do_revert(struct vmreset_nl *nl, struct nl_msg *msg, uint64_t flags,
		     uint64_t *reverted, uint64_t *kept)
{
	struct counts c = { .a_type = VMRESET_A_REVERTED_PAGES,
			    .b_type = VMRESET_A_KEPT_PAGES };
	int ret;

	if (!msg)
		return -ENOMEM;
	if (flags && nla_put_u64(msg, VMRESET_A_FLAGS, flags)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	ret = request(nl, msg, got_counts, &c);
	if (!ret && reverted)
		*reverted = c.a;
	if (!ret && kept)
		*kept = c.b;
	return ret;
}

static int do_preserve(struct vmreset_nl *nl, struct nl_msg *msg,
		       uint64_t offset, uint64_t length)
{
	if (!msg)
		return -ENOMEM;
	if (nla_put_u64(msg, VMRESET_A_OFFSET, offset) ||
	    nla_put_u64(msg, VMRESET_A_LENGTH, length)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	return request(nl, msg, NULL, NULL);
}

VMR_EXPORT int vmreset_nl_snapshot(struct vmreset_nl *nl, uint64_t id,
				   uint64_t *dirty_pages)
{
	return do_snapshot(nl, new_msg(nl, VMRESET_CMD_OBJ_SNAPSHOT, 0, id),
			   dirty_pages);
}

VMR_EXPORT int vmreset_nl_revert(struct vmreset_nl *nl, uint64_t id,
				 uint64_t flags, uint64_t *reverted,
				 uint64_t *kept)
{
	return do_revert(nl, new_msg(nl, VMRESET_CMD_OBJ_REVERT, 0, id), flags,
			 reverted, kept);
}

VMR_EXPORT int vmreset_nl_preserve(struct vmreset_nl *nl, uint64_t id, int add,
				   uint64_t offset, uint64_t length)
{
	return do_preserve(nl, new_msg(nl, add ? VMRESET_CMD_PRESERVE_ADD
					       : VMRESET_CMD_PRESERVE_DEL, 0, id),
			   offset, length);
}

static struct nl_msg *new_vm_msg(struct vmreset_nl *nl, uint8_t cmd, int flags,
				 uint32_t vm_id)
{
	struct nl_msg *msg = new_msg(nl, cmd, flags, 0);

	if (msg && vm_id && nla_put_u32(msg, VMRESET_A_VM_ID, vm_id)) {
		nlmsg_free(msg);
		return NULL;
	}
	return msg;
}

struct attach_reply {
	uint32_t id;
	int fd;
};

static int got_attach(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VMRESET_A_MAX + 1];
	struct attach_reply *r = arg;

	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, VMRESET_A_MAX, NULL))
		return NL_OK;
	if (tb[VMRESET_A_VM_ID])
		r->id = nla_get_u32(tb[VMRESET_A_VM_ID]);
	if (tb[VMRESET_A_ATTACH_FD])
		r->fd = (int)nla_get_u32(tb[VMRESET_A_ATTACH_FD]);
	return NL_OK;
}

VMR_EXPORT int vmreset_nl_vm_attach_flags(struct vmreset_nl *nl, int vm_fd,
					  uint32_t flags, uint32_t *vm_id,
					  int *attach_fd)
{
	struct nl_msg *msg = new_msg(nl, VMRESET_CMD_VM_ATTACH, 0, 0);
	struct attach_reply r = { .fd = -1 };
	int ret;

	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, VMRESET_A_VM_FD, (uint32_t)vm_fd) ||
	    (flags && nla_put_u32(msg, VMRESET_A_ATTACH_FLAGS, flags))) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	ret = request(nl, msg, got_attach, &r);
	if (!ret && vm_id)
		*vm_id = r.id;
	if (attach_fd)
		*attach_fd = ret ? -1 : r.fd;
	else if (!ret && r.fd >= 0)
		close(r.fd);
	return ret;
}

VMR_EXPORT int vmreset_nl_vm_attach(struct vmreset_nl *nl, int vm_fd,
				    uint32_t *vm_id)
{
	return vmreset_nl_vm_attach_flags(nl, vm_fd, 0, vm_id, NULL);
}

VMR_EXPORT int vmreset_nl_vm_detach(struct vmreset_nl *nl, uint32_t vm_id)
{
	struct nl_msg *msg = new_vm_msg(nl, VMRESET_CMD_VM_DETACH, 0, vm_id);

	return msg ? request(nl, msg, NULL, NULL) : -ENOMEM;
}

VMR_EXPORT void vmreset_vm_free(struct vmreset_vm *vm)
{
	free(vm->slots);
	vm->slots = NULL;
	vm->nr_slots = 0;
}

VMR_EXPORT int vmreset_nl_vm_list(struct vmreset_nl *nl, vmreset_vm_fn fn, void *arg)
{
	struct list_ctx c = { .vm_fn = fn, .arg = arg };

	return dump(nl, VMRESET_CMD_VM_GET, &c);
}

VMR_EXPORT int vmreset_nl_vm_snapshot(struct vmreset_nl *nl, uint32_t vm_id,
				      uint64_t *dirty_pages)
{
	return do_snapshot(nl, new_vm_msg(nl, VMRESET_CMD_VM_SNAPSHOT, 0, vm_id),
			   dirty_pages);
}

VMR_EXPORT int vmreset_nl_vm_revert(struct vmreset_nl *nl, uint32_t vm_id,
				    uint64_t flags, uint64_t *reverted,
				    uint64_t *kept)
{
	return do_revert(nl, new_vm_msg(nl, VMRESET_CMD_VM_REVERT, 0, vm_id),
			 flags, reverted, kept);
}

VMR_EXPORT int vmreset_nl_vm_preserve(struct vmreset_nl *nl, uint32_t vm_id,
				      int add, uint64_t gpa, uint64_t length)
{
	return do_preserve(nl, new_vm_msg(nl, add ? VMRESET_CMD_VM_PRESERVE_ADD
						  : VMRESET_CMD_VM_PRESERVE_DEL,
					  0, vm_id), gpa, length);
}

struct mon_ctx {
	vmreset_event_fn fn;
	void *arg;
	int ret;
};

static int got_event(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VMRESET_A_MAX + 1];
	struct mon_ctx *m = arg;
	struct vmreset_event ev = { 0 };

	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, VMRESET_A_MAX, NULL))
		return NL_SKIP;
	ev.cmd = ((struct genlmsghdr *)nlmsg_data(nlmsg_hdr(msg)))->cmd;
	ev.id = get_u64(tb, VMRESET_A_OBJ_ID);
	ev.dirty_pages = get_u64(tb, VMRESET_A_DIRTY_PAGES);
	ev.reverted_pages = get_u64(tb, VMRESET_A_REVERTED_PAGES);
	ev.kept_pages = get_u64(tb, VMRESET_A_KEPT_PAGES);
	ev.vm_id = tb[VMRESET_A_VM_ID] ? nla_get_u32(tb[VMRESET_A_VM_ID]) : 0;
	ev.pid = tb[VMRESET_A_PID] ? nla_get_u32(tb[VMRESET_A_PID]) : 0;
	m->ret = m->fn(&ev, m->arg);
	return m->ret ? NL_STOP : NL_OK;
}

static int any_seq(struct nl_msg *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return NL_OK;
}

VMR_EXPORT int vmreset_nl_monitor(struct vmreset_nl *nl, vmreset_event_fn fn,
				  void *arg)
{
	struct mon_ctx m = { fn, arg, 0 };
	struct nl_cb *cb;
	int ret;

	if (nl->mcgrp < 0)
		return -ENOENT;
	ret = nl_socket_add_membership(nl->sk, nl->mcgrp);
	if (ret)
		return -EPERM;
	cb = nl_cb_alloc(NL_CB_DEFAULT);
	if (!cb)
		return -ENOMEM;
	/* Events are not replies: they carry no sequence number of ours. */
	nl_cb_set(cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, any_seq, NULL);
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, got_event, &m);
	while (!m.ret) {
		ret = nl_recvmsgs(nl->sk, cb);
		if (ret < 0 && ret != -NLE_INTR && ret != -NLE_AGAIN) {
			snprintf(nl->errmsg, sizeof(nl->errmsg), "%s", nl_geterror(ret));
			m.ret = -EIO;
		}
	}
	nl_cb_put(cb);
	return m.ret > 0 ? 0 : m.ret;
}

VMR_EXPORT int vmreset_nl_hot(struct vmreset_nl *nl, uint64_t id, uint32_t op,
			      const struct vmreset_range *ranges, uint32_t nr)
{
	static const uint8_t cmds[] = {
		[VMRESET_HOT_ADD] = VMRESET_CMD_HOT_ADD,
		[VMRESET_HOT_DEL] = VMRESET_CMD_HOT_DEL,
		[VMRESET_HOT_SET] = VMRESET_CMD_HOT_SET,
	};
	struct nl_msg *msg;
	struct nlattr *hot, *r;

	if (op < VMRESET_HOT_ADD || op > VMRESET_HOT_SET ||
	    (op != VMRESET_HOT_SET && nr != 1))
		return -EINVAL;
	if (op != VMRESET_HOT_SET)
		return do_preserve(nl, new_msg(nl, cmds[op], 0, id),
				   ranges[0].offset, ranges[0].length);
	/* Each range takes a nest and two u64s: size the message for them. */
	msg = nlmsg_alloc_size(4096 + (size_t)nr * 40);
	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->family, 0, NLM_F_ACK,
			 VMRESET_CMD_HOT_SET, VMRESET_GENL_VERSION) ||
	    nla_put_u64(msg, VMRESET_A_OBJ_ID, id))
		goto nomem;
	if (nr) {
		hot = nla_nest_start(msg, VMRESET_A_HOT);
		if (!hot)
			goto nomem;
		for (uint32_t i = 0; i < nr; i++) {
			r = nla_nest_start(msg, VMRESET_A_RANGE);
			if (!r ||
			    nla_put_u64(msg, VMRESET_A_RANGE_OFFSET, ranges[i].offset) ||
			    nla_put_u64(msg, VMRESET_A_RANGE_LENGTH, ranges[i].length))
				goto nomem;
			nla_nest_end(msg, r);
		}
		nla_nest_end(msg, hot);
	}
	return request(nl, msg, NULL, NULL);
nomem:
	nlmsg_free(msg);
	return -ENOMEM;
}

static int got_hot_config(struct nl_msg *msg, void *arg)
{
	struct nlattr *tb[VMRESET_A_MAX + 1];
	struct vmreset_hot_config *c = arg;

	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, VMRESET_A_MAX, NULL))
		return NL_STOP;
	c->mode = tb[VMRESET_A_HOT_MODE] ? nla_get_u32(tb[VMRESET_A_HOT_MODE]) : 0;
	c->max_pages = get_u64(tb, VMRESET_A_HOT_MAX);
	c->learn_k = tb[VMRESET_A_HOT_LEARN_K] ? nla_get_u32(tb[VMRESET_A_HOT_LEARN_K]) : 0;
	c->learn_n = tb[VMRESET_A_HOT_LEARN_N] ? nla_get_u32(tb[VMRESET_A_HOT_LEARN_N]) : 0;
	c->explicit_pages = get_u64(tb, VMRESET_A_HOT_EXPLICIT_PAGES);
	c->hot_pages = get_u64(tb, VMRESET_A_HOT_PAGES);
	c->mount_max_pages = get_u64(tb, VMRESET_A_HOT_MOUNT_MAX);
	c->mount_hot_pages = get_u64(tb, VMRESET_A_HOT_MOUNT_PAGES);
	c->kept_max = get_u64(tb, VMRESET_A_HOT_KEPT_MAX);
	c->kept_pages = get_u64(tb, VMRESET_A_CACHED_PAGES);
	return NL_OK;
}

VMR_EXPORT int vmreset_nl_hot_config(struct vmreset_nl *nl, uint64_t id,
				     struct vmreset_hot_config *c)
{
	struct nl_msg *msg = new_msg(nl, VMRESET_CMD_HOT_CONFIG, 0, id);

	if (!msg)
		return -ENOMEM;
	if (c->flags & ~VMRESET_HOT_CFG_ALL) {
		nlmsg_free(msg);
		return -EINVAL;
	}
	if (((c->flags & VMRESET_HOT_CFG_MODE) &&
	     nla_put_u32(msg, VMRESET_A_HOT_MODE, c->mode)) ||
	    ((c->flags & VMRESET_HOT_CFG_MAX) &&
	     nla_put_u64(msg, VMRESET_A_HOT_MAX, c->max_pages)) ||
	    ((c->flags & VMRESET_HOT_CFG_LEARN) &&
	     (nla_put_u32(msg, VMRESET_A_HOT_LEARN_K, c->learn_k) ||
	      nla_put_u32(msg, VMRESET_A_HOT_LEARN_N, c->learn_n))) ||
	    ((c->flags & VMRESET_HOT_CFG_KEPT) &&
	     nla_put_u64(msg, VMRESET_A_HOT_KEPT_MAX, c->kept_max))) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	return request(nl, msg, got_hot_config, c);
}
