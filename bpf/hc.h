/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Shared by hc.bpf.c and the user-space side (hc.c, hcdrain.c). */
#ifndef VMRESET_BPF_HC_H
#define VMRESET_BPF_HC_H

/* Where `vmreset-hc load` pins the service's links and maps. */
#define HC_PIN_DIR		"/sys/fs/bpf/vmreset"

/* Per VM (struct kvm address), written by the BPF programs only. */
struct hc_vm {
	__u32 pid;		/* kvm->userspace_pid: the VMM */
	__u32 __pad;
	__u64 seq;		/* next request's sequence number */
	__u64 requests;		/* VMRESET_HC_PRESERVE hypercalls seen */
	__u64 accepted;		/* recorded for the next revert */
	__u64 bad_align;	/* address or length not page-aligned */
	__u64 bad_range;	/* zero length or wrapping */
	__u64 bad_flags;	/* unknown flags or reserved register not 0 */
	__u64 too_many;		/* VMRESET_HC_MAX_PENDING already waiting */
	__u64 not_kernel;	/* issued at CPL > 0 */
};

/* Per VM, written by the drainer (user space) only. */
struct hc_done {
	__u64 drained;		/* requests taken off the pending map */
	__u64 applied;
	__u64 no_memory;	/* no vmresetfs memory at that address */
	__u64 no_space;		/* VMRESET_MAX_PRESERVED reached */
	__u64 failed;		/* any other error */
};

struct hc_key {
	__u64 kvm;
	__u64 seq;
};

struct hc_req {
	__u32 pid;
	__u32 __pad;
	__u64 gpa;
	__u64 len;
	__u64 flags;
};

#endif
