// SPDX-License-Identifier: GPL-2.0
/*
 * Saving and loading the VM's state: VM-wide (PIT, kvmclock, PIC, IOAPIC),
 * per vCPU, and device models. Memory is vmreset's: the caller reverts it
 * first, because loading MSRs makes KVM write guest memory (kvmclock,
 * wall clock, steal time pages).
 *
 * Order (Firecracker's, see docs/vmm.md for why):
 *   save: mp_state, regs, sregs, xsave, xcrs, debugregs, lapic, msrs, events
 *   load: mp_state, regs, sregs, xsave, xcrs, debugregs, lapic, msrs, events
 * KVM_GET_MP_STATE first, as it makes KVM accept pending LAPIC events
 * (INIT/SIPI) that would otherwise change state saved before it; events
 * last on load, since KVM_SET_LAPIC and KVM_SET_SREGS clear pending ones.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "vmm.h"

#define MSR_IA32_TSC	0x10

static int sfail(struct vmm *vm, unsigned int cpu, const char *what)
{
	int err = errno;

	snprintf(vm->err, sizeof(vm->err), "vCPU %u: %s: %s", cpu, what, strerror(err));
	return -err;
}

static int save_vcpu(struct vmm *vm, struct vmm_vcpu *v, struct vmm_vcpu_state *s)
{
	int xs = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	int n;

	if (ioctl(v->fd, KVM_GET_MP_STATE, &s->mp))
		return sfail(vm, v->id, "KVM_GET_MP_STATE");
	if (ioctl(v->fd, KVM_GET_REGS, &s->regs))
		return sfail(vm, v->id, "KVM_GET_REGS");
	if (ioctl(v->fd, KVM_GET_SREGS, &s->sregs))
		return sfail(vm, v->id, "KVM_GET_SREGS");
	if (xs > (int)sizeof(struct kvm_xsave) && xs <= VMM_XSAVE_MAX) {
		if (ioctl(v->fd, KVM_GET_XSAVE2, s->xsave))
			return sfail(vm, v->id, "KVM_GET_XSAVE2");
		s->xsave_size = xs;
	} else {
		if (ioctl(v->fd, KVM_GET_XSAVE, s->xsave))
			return sfail(vm, v->id, "KVM_GET_XSAVE");
		s->xsave_size = sizeof(struct kvm_xsave);
	}
	if (ioctl(v->fd, KVM_GET_XCRS, &s->xcrs))
		return sfail(vm, v->id, "KVM_GET_XCRS");
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &s->dregs))
		return sfail(vm, v->id, "KVM_GET_DEBUGREGS");
	if (ioctl(v->fd, KVM_GET_LAPIC, &s->lapic))
		return sfail(vm, v->id, "KVM_GET_LAPIC");
	static __thread struct { struct kvm_msrs h; struct kvm_msr_entry e[VMM_MAX_MSRS]; } req;

	memset(&req, 0, sizeof(req));
	req.h.nmsrs = vm->nr_msrs;
	for (unsigned int i = 0; i < vm->nr_msrs; i++)
		req.e[i].index = vm->msr_index[i];
	n = ioctl(v->fd, KVM_GET_MSRS, &req);
	if (n < 0)
		return sfail(vm, v->id, "KVM_GET_MSRS");
	if ((unsigned int)n != vm->nr_msrs) {
		snprintf(vm->err, sizeof(vm->err), "vCPU %u: KVM_GET_MSRS stopped at MSR %#x",
			 v->id, vm->msr_index[n]);
		return -EIO;
	}
	s->nr_msrs = n;
	memcpy(s->msrs, req.e, n * sizeof(req.e[0]));
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events))
		return sfail(vm, v->id, "KVM_GET_VCPU_EVENTS");
	return 0;
}

static int load_vcpu(struct vmm *vm, struct vmm_vcpu *v,
		     const struct vmm_vcpu_state *s, bool in_place)
{

	static __thread struct { struct kvm_msrs h; struct kvm_msr_entry e[VMM_MAX_MSRS]; } req;
	struct kvm_vcpu_events ev = s->events;
	unsigned int first = 0;
	int n;

	unsigned int skip = vm->load_skip;

	if (!(skip & VMM_LOAD_MP) && ioctl(v->fd, KVM_SET_MP_STATE, &s->mp))
		return sfail(vm, v->id, "KVM_SET_MP_STATE");
	if (!(skip & VMM_LOAD_REGS) && ioctl(v->fd, KVM_SET_REGS, &s->regs))
		return sfail(vm, v->id, "KVM_SET_REGS");
	/*
	 * The guest's TLB outlives memory revert: KVM resets the MMU, and so
	 * flushes the guest's translations, only when CR0/CR3/CR4/EFER
	 * change. The agent rings DONE with the same CR3 it had at the
	 * snapshot, so its TLB would keep the post-fork COW copies of its
	 * own pages. A first SET_SREGS with another CR3 forces the flush.
	 */
	struct kvm_sregs sregs = s->sregs, flush;

	/*
	 * KVM_GET_SREGS on AMD reports TR as busy (type 11) whatever the VMCB
	 * holds, for migration to Intel, where VM entry wants it busy. AMD
	 * keeps the available type (9) there, and QEMU's emulated CPU allows
	 * user-mode port I/O only with TR of type 9: loading 11 back made
	 * every IN/OUT of the agent #GP after a reset, and init die of it.
	 */
	if (vm->amd && sregs.tr.type == 11)
		sregs.tr.type = 9;
	flush = sregs;
	flush.cr3 ^= 0x1000;
	if (!(skip & (VMM_LOAD_FLUSH | VMM_LOAD_SREGS)) && ioctl(v->fd, KVM_SET_SREGS, &flush))
		return sfail(vm, v->id, "KVM_SET_SREGS (TLB flush)");
	if (!(skip & VMM_LOAD_SREGS) && ioctl(v->fd, KVM_SET_SREGS, &sregs))
		return sfail(vm, v->id, "KVM_SET_SREGS");
	if (!(skip & VMM_LOAD_XSAVE) && ioctl(v->fd, KVM_SET_XSAVE, s->xsave))
		return sfail(vm, v->id, "KVM_SET_XSAVE");
	if (!(skip & VMM_LOAD_XCRS) && ioctl(v->fd, KVM_SET_XCRS, &s->xcrs))
		return sfail(vm, v->id, "KVM_SET_XCRS");
	if (!(skip & VMM_LOAD_DREGS) && ioctl(v->fd, KVM_SET_DEBUGREGS, &s->dregs))
		return sfail(vm, v->id, "KVM_SET_DEBUGREGS");
	if (!(skip & VMM_LOAD_LAPIC) && ioctl(v->fd, KVM_SET_LAPIC, &s->lapic))
		return sfail(vm, v->id, "KVM_SET_LAPIC");
	/*
	 * In place, the TSC keeps running (msrs[0] is IA32_TSC): the guest's
	 * clock then moves on by the time that passed, and a TSC deadline
	 * left from the snapshot is in the past and fires at once.
	 */
	if (in_place && s->nr_msrs && s->msrs[0].index == MSR_IA32_TSC)
		first = 1;
	req.h.nmsrs = s->nr_msrs - first;
	memcpy(req.e, s->msrs + first, req.h.nmsrs * sizeof(req.e[0]));
	n = (skip & VMM_LOAD_MSRS) ? (int)req.h.nmsrs : ioctl(v->fd, KVM_SET_MSRS, &req);
	if (n < 0)
		return sfail(vm, v->id, "KVM_SET_MSRS");
	if ((unsigned int)n != req.h.nmsrs) {
		snprintf(vm->err, sizeof(vm->err), "vCPU %u: KVM_SET_MSRS refused MSR %#x",
			 v->id, req.e[n].index);
		return -EIO;
	}
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (!(skip & VMM_LOAD_EVENTS) && ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev))
		return sfail(vm, v->id, "KVM_SET_VCPU_EVENTS");
	/* Tell the guest it was paused: no soft-lockup or RCU stall reports. */
	if (!(skip & VMM_LOAD_CLOCKCTRL))
		ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
	return 0;
}

int vmm_state_save(struct vmm *vm, struct vmm_state *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	st->magic = VMM_STATE_MAGIC;
	st->version = VMM_STATE_VERSION;
	st->size = sizeof(*st);
	st->nr_vcpus = vm->nr_vcpus;
	st->mem_size = vm->mem_size;
	st->keep_size = vm->o.keep_size;
	st->mbox_gpa = vm->mbox_gpa;
	st->keep_gpa = vm->keep_gpa;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		ret = save_vcpu(vm, &vm->vcpu[i], &st->vcpu[i]);
		if (ret)
			return ret;
	}
	if (vm->o.pit && ioctl(vm->vm_fd, KVM_GET_PIT2, &st->pit))
		return sfail(vm, 0, "KVM_GET_PIT2");
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &st->clock))
		return sfail(vm, 0, "KVM_GET_CLOCK");
	for (int c = 0; c < 3; c++) {
		st->chips[c].chip_id = c;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->chips[c]))
			return sfail(vm, 0, "KVM_GET_IRQCHIP");
	}
	pthread_mutex_lock(&vm->lock);
	st->uart = vm->uart;
	st->i8042 = vm->i8042;
	st->cmos = vm->cmos;
	st->blk = vm->blk;
	st->disk_size = vm->disk_size;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vmm_state_load(struct vmm *vm, const struct vmm_state *st, bool in_place)
{
	int ret;

	if (st->magic != VMM_STATE_MAGIC || st->version != VMM_STATE_VERSION ||
	    st->size != sizeof(*st) || st->nr_vcpus != vm->nr_vcpus ||
	    st->mem_size != vm->mem_size || st->disk_size != vm->disk_size) {
		snprintf(vm->err, sizeof(vm->err),
			 "VM state does not fit this VM (%u vCPUs, %llu MiB; this one %u, %llu)",
			 st->nr_vcpus, (unsigned long long)(st->mem_size >> 20),
			 vm->nr_vcpus, (unsigned long long)(vm->mem_size >> 20));
		return -EINVAL;
	}
	/* VM-wide first: the vCPUs' LAPICs then see a settled IOAPIC/PIC. */
	if (vm->o.pit && !(vm->load_skip & VMM_LOAD_PIT) &&
	    ioctl(vm->vm_fd, KVM_SET_PIT2, &st->pit))
		return sfail(vm, 0, "KVM_SET_PIT2");
	if (!in_place) {
		struct kvm_clock_data c = { .clock = st->clock.clock };

		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c))
			return sfail(vm, 0, "KVM_SET_CLOCK");
	}
	for (int c = 0; c < 3; c++)
		if (!(vm->load_skip & VMM_LOAD_IRQCHIP) &&
		    ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &st->chips[c]))
			return sfail(vm, 0, "KVM_SET_IRQCHIP");
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		ret = load_vcpu(vm, &vm->vcpu[i], &st->vcpu[i], in_place);
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&vm->lock);
	vm->uart = st->uart;
	vm->i8042 = st->i8042;
	vm->cmos = st->cmos;
	vm->blk = st->blk;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}
