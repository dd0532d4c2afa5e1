// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-trace: KVM's tracepoints, per VM. A VM is its struct kvm, reached
 * through the vCPU where the tracepoint carries one (kvm_exit, kvm_entry,
 * kvm_page_fault) and through the vCPU thread otherwise (kvm_pio,
 * kvm_mmio, kvm_hypercall fire between a kvm_exit and the next kvm_entry
 * on the same thread).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kvm_core.h"
#include "trace.h"

char LICENSE[] SEC("license") = "GPL";

/* Load-time configuration (set by trace.c before loading). */
const volatile __u32 targ_pid = 0;	/* the VMM's tgid; 0: every VM */
const volatile bool record_ws = false;	/* working set to the ring buffer */
const volatile bool measure_latency = true;	/* exit -> entry histograms */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct trace_key);
	__type(value, struct trace_val);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);		/* thread id */
	__type(value, struct trace_task);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);		/* trace.c sizes it when recording */
	__type(key, struct ws_key);
	__type(value, __u64);		/* WS_* */
} ws SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Events we could not account: a full map or ring buffer. */
__u64 dropped = 0;

static __always_inline bool vcpu_vm(struct kvm_vcpu *vcpu, __u64 *kvm, __u32 *pid)
{
	struct kvm *k = BPF_CORE_READ(vcpu, kvm);

	*pid = BPF_CORE_READ(k, userspace_pid);
	*kvm = (__u64)k;
	return !targ_pid || *pid == targ_pid;
}

/* The vendor's own exit code: SVM's VMCB exit code, VMX's basic reason. */
static __always_inline __u32 exit_code(struct kvm_vcpu *vcpu)
{
	if (bpf_core_type_exists(struct vcpu_svm___vr)) {
		struct vcpu_svm___vr *svm = (void *)vcpu;

		return BPF_CORE_READ(svm, vmcb, control.exit_code);
	}
	if (bpf_core_type_exists(struct vcpu_vmx___vr)) {
		struct vcpu_vmx___vr *vmx = (void *)vcpu;

		return BPF_CORE_READ(vmx, exit_reason.full) & 0xffff;
	}
	return ~0U;
}

static __always_inline struct trace_val *val_of(__u64 kvm, __u32 pid, __u32 kind, __u64 id)
{
	struct trace_key key = { .kvm = kvm, .pid = pid, .kind = kind, .id = id };
	static const struct trace_val zero;
	struct trace_val *v;

	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		return v;
	if (bpf_map_update_elem(&counts, &key, &zero, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&counts, &key)) {
		__sync_fetch_and_add(&dropped, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&counts, &key);
}

static __always_inline void count(__u64 kvm, __u32 pid, __u32 kind, __u64 id)
{
	struct trace_val *v = val_of(kvm, pid, kind, id);

	if (v)
		__sync_fetch_and_add(&v->count, 1);
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0;

	/* Unrolled: the verifier wants bounded loops on 6.1 too. */
#pragma unroll
	for (int i = 5; i >= 0; i--) {
		__u32 s = 1U << i;

		if (v >> s) {
			v >>= s;
			r += s;
		}
	}
	return r < TRACE_HIST_SLOTS ? r : TRACE_HIST_SLOTS - 1;
}

/* The thread's VM, for the tracepoints that have no vCPU. */
static __always_inline struct trace_task *this_task(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&tasks, &tid);
}

SEC("raw_tp/kvm_exit")
int BPF_PROG(on_exit, struct kvm_vcpu *vcpu)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct trace_task t, *cur;

	if (!vcpu_vm(vcpu, &t.kvm, &t.pid))
		return 0;
	t.reason = exit_code(vcpu);
	t.exit_ns = measure_latency ? bpf_ktime_get_ns() : 0;
	/* In place: a hash update would swap in a new element every exit. */
	cur = bpf_map_lookup_elem(&tasks, &tid);
	if (cur)
		*cur = t;
	else
		bpf_map_update_elem(&tasks, &tid, &t, BPF_ANY);
	/* Counted here: the last exit of a vCPU has no entry after it. */
	count(t.kvm, t.pid, TK_EXIT, t.reason);
	return 0;
}

SEC("raw_tp/kvm_entry")
int BPF_PROG(on_entry, struct kvm_vcpu *vcpu)
{
	struct trace_task *t = this_task();
	struct trace_val *v;
	__u64 d;

	if (!t || !t->exit_ns)
		return 0;
	d = measure_latency ? bpf_ktime_get_ns() - t->exit_ns : 0;
	t->exit_ns = 0;
	if (!measure_latency)
		return 0;
	v = val_of(t->kvm, t->pid, TK_EXIT, t->reason);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->sum_ns, d);
	__sync_fetch_and_add(&v->hist[log2_slot(d)], 1);
	return 0;
}

static __always_inline void ws_record(__u64 kvm, __u32 pid, __u64 gfn, __u64 flags)
{
	struct ws_key key = { .kvm = kvm, .gfn = gfn };
	struct ws_event *e;
	__u64 *old, add = flags;

	old = bpf_map_lookup_elem(&ws, &key);
	if (old) {
		add = flags & ~*old;
		if (!add)
			return;
		__sync_fetch_and_or(old, flags);
	} else if (bpf_map_update_elem(&ws, &key, &flags, BPF_NOEXIST)) {
		old = bpf_map_lookup_elem(&ws, &key);
		if (!old) {
			__sync_fetch_and_add(&dropped, 1);
			return;
		}
		/* Another vCPU recorded it first; it reports the page. */
		add = flags & ~*old;
		if (!add)
			return;
		__sync_fetch_and_or(old, flags);
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return;
	}
	e->kvm = kvm;
	e->gfn = gfn;
	e->pid = pid;
	e->flags = add;
	bpf_ringbuf_submit(e, 0);
}

/*
 * Nested page fault (NPF on SVM, EPT violation on VMX): the error code's
 * bit 1 means a write on both (PFERR_WRITE_MASK, EPT_VIOLATION_ACC_WRITE).
 * Debian's 6.1 and 6.12 pass (vcpu, gpa, error_code); older 6.1 builds
 * passed (gpa, error_code) without the vCPU: trace.c reads the
 * tracepoint's prototype from the kvm module's BTF and says which.
 */
const volatile bool npf_has_vcpu = true;

SEC("raw_tp/kvm_page_fault")
int BPF_PROG(on_npf, __u64 a0, __u64 a1, __u64 a2)
{
	__u64 kvm, gpa, error_code;
	struct trace_task *t;
	bool write;
	__u32 pid;

	if (npf_has_vcpu) {
		if (!vcpu_vm((struct kvm_vcpu *)a0, &kvm, &pid))
			return 0;
		gpa = a1;
		error_code = a2;
	} else {
		t = this_task();
		if (!t)
			return 0;
		kvm = t->kvm;
		pid = t->pid;
		gpa = a0;
		error_code = a1;
	}
	write = error_code & 2;
	count(kvm, pid, write ? TK_NPF_WRITE : TK_NPF_READ, 0);
	count(kvm, pid, write ? TK_NPF_REGION_WRITE : TK_NPF_REGION_READ,
	      gpa >> TRACE_REGION_SHIFT);
	if (record_ws)
		ws_record(kvm, pid, gpa >> 12, write ? WS_WRITE : WS_READ);
	return 0;
}

#define KVM_PIO_OUT			1
SEC("raw_tp/kvm_pio")
int BPF_PROG(on_pio, unsigned int rw, unsigned int port)
{
	struct trace_task *t = this_task();

	if (t)
		count(t->kvm, t->pid, rw == KVM_PIO_OUT ? TK_PIO_OUT : TK_PIO_IN, port);
	return 0;
}

/* Each access is traced once as READ or WRITE; READ_UNSATISFIED (0) is
 * the exit to the VMM before the READ that completes it. */
#define KVM_TRACE_MMIO_READ		1
#define KVM_TRACE_MMIO_WRITE		2
SEC("raw_tp/kvm_mmio")
int BPF_PROG(on_mmio, int type, int len, __u64 gpa)
{
	struct trace_task *t;

	if (type != KVM_TRACE_MMIO_READ && type != KVM_TRACE_MMIO_WRITE)
		return 0;
	t = this_task();
	if (t)
		count(t->kvm, t->pid,
		      type == KVM_TRACE_MMIO_WRITE ? TK_MMIO_WRITE : TK_MMIO_READ, gpa);
	return 0;
}

SEC("raw_tp/kvm_hypercall")
int BPF_PROG(on_hypercall, unsigned long nr)
{
	struct trace_task *t = this_task();

	if (t)
		count(t->kvm, t->pid, TK_HYPERCALL, nr);
	return 0;
}
