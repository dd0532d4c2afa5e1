// SPDX-License-Identifier: GPL-2.0
/*
 * The guest-declared preserved range service. KVM's kvm_hypercall
 * tracepoint sees the request's arguments (already truncated for 32-bit
 * guests); fexit of kvm_emulate_hypercall() sees the vCPU, hence the VM,
 * and KVM's verdict on the privilege level (rax = -KVM_EPERM at CPL > 0).
 * Both run on the vCPU's thread before the guest resumes, so a request is
 * in the pending map by the time the hypercall returns.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
/* vmlinux.h has the kernel types: skip the UAPI header's own includes. */
#define _LINUX_TYPES_H
#define _LINUX_IOCTL_H
#include "../include/uapi/linux/vmreset.h"
#include "hc.h"

char LICENSE[] SEC("license") = "GPL";

#define KVM_EPERM	1		/* include/uapi/linux/kvm_para.h */
#define PAGE_MASK_4K	0xfffULL

struct hc_args {
	__u64 a0, a1, a2, a3;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);		/* thread id */
	__type(value, struct hc_args);
} hc_stage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);		/* struct kvm * */
	__type(value, struct hc_vm);
} hc_vms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct hc_done);
} hc_done SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct hc_key);
	__type(value, struct hc_req);
} hc_pending SEC(".maps");

SEC("raw_tp/kvm_hypercall")
int BPF_PROG(on_hypercall, unsigned long nr, unsigned long a0, unsigned long a1,
	     unsigned long a2, unsigned long a3)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct hc_args args = { a0, a1, a2, a3 };

	if (nr != VMRESET_HC_PRESERVE)
		return 0;
	bpf_map_update_elem(&hc_stage, &tid, &args, BPF_ANY);
	return 0;
}

static __always_inline struct hc_vm *vm_stats(__u64 kvm, __u32 pid)
{
	struct hc_vm zero = { .pid = pid };
	struct hc_vm *st = bpf_map_lookup_elem(&hc_vms, &kvm);

	if (st)
		return st;
	bpf_map_update_elem(&hc_vms, &kvm, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&hc_vms, &kvm);
}

SEC("fexit/kvm_emulate_hypercall")
int BPF_PROG(on_hypercall_done, struct kvm_vcpu *vcpu, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct hc_args *staged, a;
	struct hc_done *done;
	struct hc_key key;
	struct hc_req req;
	struct hc_vm *st;
	struct kvm *kvm;
	__u64 rax, drained;

	staged = bpf_map_lookup_elem(&hc_stage, &tid);
	if (!staged)
		return 0;
	a = *staged;
	bpf_map_delete_elem(&hc_stage, &tid);

	kvm = BPF_CORE_READ(vcpu, kvm);
	req.pid = BPF_CORE_READ(kvm, userspace_pid);
	st = vm_stats((__u64)kvm, req.pid);
	if (!st)
		return 0;
	if (st->pid != req.pid) {
		/* A new VM where a dead one's struct kvm was: start over. */
		struct hc_vm fresh = { .pid = req.pid, .seq = st->seq };

		*st = fresh;
		bpf_map_delete_elem(&hc_done, &kvm);
	}
	__sync_fetch_and_add(&st->requests, 1);
	/* KVM refused it (CPL > 0); 32-bit guests see the low half. */
	rax = BPF_CORE_READ(vcpu, arch.regs[VCPU_REGS_RAX]);
	if ((__u32)rax == (__u32)-KVM_EPERM) {
		__sync_fetch_and_add(&st->not_kernel, 1);
		return 0;
	}
	if ((a.a2 & ~VMRESET_HC_F_ALL) || a.a3) {
		__sync_fetch_and_add(&st->bad_flags, 1);
		return 0;
	}
	if ((a.a0 | a.a1) & PAGE_MASK_4K) {
		__sync_fetch_and_add(&st->bad_align, 1);
		return 0;
	}
	if (!a.a1 || a.a0 + a.a1 < a.a0) {
		__sync_fetch_and_add(&st->bad_range, 1);
		return 0;
	}
	key.kvm = (__u64)kvm;
	done = bpf_map_lookup_elem(&hc_done, &key.kvm);
	drained = done ? done->drained : 0;
	if (st->accepted - drained >= VMRESET_HC_MAX_PENDING) {
		__sync_fetch_and_add(&st->too_many, 1);
		return 0;
	}
	key.seq = __sync_fetch_and_add(&st->seq, 1);
	req.__pad = 0;
	req.gpa = a.a0;
	req.len = a.a1;
	req.flags = a.a2;
	if (bpf_map_update_elem(&hc_pending, &key, &req, BPF_NOEXIST)) {
		__sync_fetch_and_add(&st->too_many, 1);
		return 0;
	}
	__sync_fetch_and_add(&st->accepted, 1);
	return 0;
}
