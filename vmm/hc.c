// SPDX-License-Identifier: GPL-2.0
/*
 * Guest-declared preserved ranges (docs/bpf.md, "Guest-declared preserved
 * ranges"; docs/vmm.md): the guest asks by hypercall (VMRESET_HC_PRESERVE)
 * to keep a guest-physical range across resets, the eBPF service
 * (vmreset-hc load) records the request in a pinned map, and nothing
 * applies it but a drain. So the VM is attached over netlink once, bound
 * to an fd of ours, and every reset first drains what is pending for it:
 * a reset that follows the hypercall honours it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/types.h>
#include "vmm.h"
#include "vmreset.h"
#include "vmreset_bpf.h"
#include "hc.h"

bool vmm_hc_loaded(void)
{
	/* A stat, not a netlink dump: this comes with every reset. */
	return !access(HC_PIN_DIR "/hc_pending", F_OK);
}

static const char *hc_hint(int err)
{
	if (err == -EPERM || err == -EACCES)
		return " (needs root, or CAP_BPF and CAP_PERFMON; --hc-preserve off ignores the "
		       "guest's requests)";
	return " (--hc-preserve off ignores the guest's requests)";
}

int vmm_hc_attach(struct vmm *vm)
{
	int err = 0;

	if (vm->o.hc == VMM_HC_OFF || vm->o.no_snapshot)
		return 0;
	vm->nl = vmreset_nl_open(&err);
	if (!vm->nl && !err)
		err = -EIO;
	if (vm->nl) {
		err = vmreset_nl_vm_attach_flags(vm->nl, vm->vm_fd, VMRESET_VM_ATTACH_F_FD,
						 &vm->nl_vm_id, &vm->attach_fd);
		if (err) {
			vmreset_nl_close(vm->nl);
			vm->nl = NULL;
		}
	}
	if (err) {
		/* auto without the service: nothing to drain; say why if it comes. */
		vm->hc_attach_err = err;
		if (vm->o.hc == VMM_HC_ON || vmm_hc_loaded())
			return vmm_fail(vm, -err, "attaching the VM over netlink (for the guest's "
					"preserve requests): %s%s", strerror(-err), hc_hint(err));
		return 0;
	}
	if (vm->o.hc == VMM_HC_ON && !vmm_hc_loaded())
		return vmm_fail(vm, ENOENT, "--hc-preserve on: the hypercall service is not loaded "
				"(no %s/hc_pending; run vmreset-hc load)", HC_PIN_DIR);
	return 0;
}

void vmm_hc_detach(struct vmm *vm)
{
	if (vm->attach_fd >= 0)
		close(vm->attach_fd);
	vm->attach_fd = -1;
	if (vm->nl)
		vmreset_nl_close(vm->nl);
	vm->nl = NULL;
}

int vmm_hc_drain(struct vmm *vm)
{
	struct vmreset_hc_result r;
	uint64_t t0 = vmm_now_us();
	int n;

	vm->hc_last_applied = vm->hc_last_refused = vm->drain_us = 0;
	if (vm->o.hc == VMM_HC_OFF || vm->o.no_snapshot || !vmm_hc_loaded())
		return 0;
	if (!vm->nl)
		return vmm_fail(vm, -vm->hc_attach_err, "the guest's preserve requests: the VM is "
				"not attached over netlink: %s%s", strerror(-vm->hc_attach_err),
				hc_hint(vm->hc_attach_err));
	n = vmreset_hc_drain(vm->nl, vm->nl_vm_id, vm->vm_fd, &r);
	vm->drain_us = vmm_now_us() - t0;
	/* Unloaded since the stat: no request can be waiting. */
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return vmm_fail(vm, -n, "applying the guest's preserve requests (vmreset_hc_drain, "
				"VM %u): %s%s", vm->nl_vm_id, strerror(-n), hc_hint(n));
	vm->hc_last_applied = r.applied;
	vm->hc_last_refused = r.no_memory + r.no_space + r.failed;
	vm->hc_applied += vm->hc_last_applied;
	vm->hc_refused += vm->hc_last_refused;
	return 0;
}
