/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Shared by trace.bpf.c and trace.c. */
#ifndef VMRESET_BPF_TRACE_H
#define VMRESET_BPF_TRACE_H

#define TRACE_HIST_SLOTS	32	/* log2(ns) buckets: [2^i, 2^(i+1)) */

enum trace_kind {
	TK_EXIT = 1,		/* id: the vendor's exit code */
	TK_NPF_READ,		/* nested page faults; id 0 */
	TK_NPF_WRITE,
	TK_PIO_IN,		/* id: port */
	TK_PIO_OUT,
	TK_MMIO_READ,		/* id: guest-physical address */
	TK_MMIO_WRITE,
	TK_HYPERCALL,		/* id: hypercall number */
	TK_WS_PAGES,		/* unused */
	TK_NPF_REGION_READ,	/* id: GPA >> TRACE_REGION_SHIFT */
	TK_NPF_REGION_WRITE,
};

#define TRACE_REGION_SHIFT	21	/* faults by GPA, in 2 MiB regions */

/* The VM is KVM's struct kvm (its address), with the VMM that made it. */
struct trace_key {
	__u64 kvm;
	__u32 pid;		/* kvm->userspace_pid */
	__u32 kind;		/* enum trace_kind */
	__u64 id;
};

struct trace_val {
	__u64 count;
	__u64 sum_ns;		/* exits: exit -> next entry */
	__u64 hist[TRACE_HIST_SLOTS];	/* exits that were followed by an entry */
};

/* What a vCPU thread last did, for events that carry no vCPU. */
struct trace_task {
	__u64 kvm;
	__u32 pid;
	__u32 reason;
	__u64 exit_ns;
};

#define WS_READ			1
#define WS_WRITE		2

struct ws_key {
	__u64 kvm;
	__u64 gfn;
};

/* Ring buffer record: a page seen for the first time (or first written). */
struct ws_event {
	__u64 kvm;
	__u64 gfn;
	__u32 pid;
	__u32 flags;		/* WS_*: what this fault added */
};

#endif
