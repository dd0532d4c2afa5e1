/* SPDX-License-Identifier: LGPL-2.1-or-later OR MIT */
/*
 * libvmreset-bpf: what VMMs and tools use from vmreset's eBPF side.
 *
 *  - Guest-declared preserved ranges (the VMRESET_HC_PRESERVE hypercall,
 *    include/uapi/linux/vmreset.h): vmreset_hc_vm_revert() applies what
 *    the VM's guest declared, then reverts the VM. Needs the service
 *    loaded (vmreset-hc load) and CAP_BPF (or root) to read its maps.
 *  - Working-set profiles (docs/bpf.md has the file format): load/save,
 *    and apply one to a memslot: written pages as the file's hot set,
 *    read (and written) pages prefetched for the VMM and for KVM.
 *
 * Functions return 0 (or a count) or a negative errno, and never print.
 */
#ifndef VMRESET_BPF_H
#define VMRESET_BPF_H

#include <stddef.h>
#include <stdint.h>
#include "vmreset.h"

/* 0 if the caller may load BPF tracing programs, else -EPERM. */
int vmreset_bpf_check_privilege(void);
#define VMRESET_BPF_PRIV_MSG "needs root, or CAP_BPF and CAP_PERFMON"

/* ---- guest-declared preserved ranges ---- */

struct vmreset_hc_result {
	uint64_t applied;	/* requests applied to the VM */
	uint64_t no_memory;	/* refused: no vmresetfs memory there */
	uint64_t no_space;	/* refused: too many preserved ranges */
	uint64_t failed;	/* refused otherwise */
};

/*
 * Apply the requests the guest of VM @vm_id made, oldest first; @res may
 * be NULL. @vm_fd is the VM's fd in its VMM (the caller's own fd when the
 * VMM calls): it names the VM among the VMM's KVM VMs. With -1, the VMM
 * must hold exactly one VM (else -EBUSY: which one is attached is not
 * known). Returns how many requests were taken, -ENOENT if the service is
 * not loaded or there is no such VM, -EBADF if @vm_fd is no KVM VM of the
 * VMM, or another negative errno.
 */
int vmreset_hc_drain(struct vmreset_nl *nl, uint32_t vm_id, int vm_fd,
		     struct vmreset_hc_result *res);
/* Drain, then vmreset_nl_vm_revert(). Without the service: just revert. */
int vmreset_hc_vm_revert(struct vmreset_nl *nl, uint32_t vm_id, int vm_fd,
			 uint64_t flags, uint64_t *reverted_pages,
			 uint64_t *kept_pages, struct vmreset_hc_result *res);

/* ---- working-set profiles ---- */

#define VMRESET_PROF_READ	1U
#define VMRESET_PROF_WRITE	2U	/* written (and maybe read) */

struct vmreset_profile_run {
	uint64_t gpa;		/* page-aligned */
	uint64_t pages;
	uint32_t flags;		/* VMRESET_PROF_READ or VMRESET_PROF_WRITE */
};

struct vmreset_profile {
	size_t nr, cap;
	struct vmreset_profile_run *runs;	/* ascending, merged */
	uint64_t read_pages, written_pages;
	/* While recording: pages in any order, folded by _finish(). */
	size_t nraw, capraw;
	uint64_t *raw;		/* gfn << 2 | flags */
};

void vmreset_profile_init(struct vmreset_profile *p);
int vmreset_profile_add(struct vmreset_profile *p, uint64_t gpa, uint32_t flags);
/* Sort, merge duplicates (flags OR-ed) and build the runs. */
int vmreset_profile_finish(struct vmreset_profile *p);
int vmreset_profile_save(const struct vmreset_profile *p, const char *path);
/* Parse a profile file; -EINVAL (with *line set) on a malformed one. */
int vmreset_profile_load(struct vmreset_profile *p, const char *path, int *line);
void vmreset_profile_free(struct vmreset_profile *p);

struct vmreset_prefetch_stats {
	uint64_t host_pages;	/* mapped in the VMM (MADV_POPULATE_*) */
	uint64_t kvm_pages;	/* mapped for the guest (KVM_PRE_FAULT_MEMORY) */
	int kvm_err;		/* 0, or why KVM could not pre-fault (-ENOTTY
				 * before Linux 6.10) */
};

#define VMRESET_PREFETCH_WRITES	(1U << 0)	/* written pages writable */

/*
 * For the memslot [@gpa, @gpa + @size) mapped at @hva: map the profile's
 * pages in this process (read pages readable, and with
 * VMRESET_PREFETCH_WRITES written pages writable, which takes their
 * copy-on-write now), then ask KVM to map them for the guest through
 * @vcpu_fd (-1: skip). Call it after a restore, revert or clone, before
 * the vCPUs run.
 */
int vmreset_profile_prefetch(const struct vmreset_profile *p, int vcpu_fd,
			     uint64_t gpa, uint64_t size, void *hva,
			     unsigned int flags, struct vmreset_prefetch_stats *st);

/*
 * Make the profile's written pages in [@gpa, @gpa + @size) the hot set of
 * the vmresetfs file @fd that backs it from file offset @offset (the
 * engine's VMRESET_IOC_HOT, explicit mode). Returns the pages given, or
 * -EOPNOTSUPP if the module has no hot pages.
 */
long vmreset_profile_hot(const struct vmreset_profile *p, int fd, uint64_t gpa,
			 uint64_t size, uint64_t offset);

#endif
