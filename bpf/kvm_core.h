/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few vendor structures of kvm-amd.ko / kvm-intel.ko the programs read.
 * They live only in those modules' BTF, not in vmlinux.h; the "___vr"
 * flavour keeps them apart from anything vmlinux.h might grow, and CO-RE
 * matches them by the name before "___" against the loaded module's BTF.
 * Only the members we read are declared: CO-RE relocates each offset.
 */
#ifndef VMRESET_BPF_KVM_CORE_H
#define VMRESET_BPF_KVM_CORE_H

struct vmcb_control_area___vr {
	u32 exit_code;
	u64 exit_info_1;
	u64 exit_info_2;
} __attribute__((preserve_access_index));

struct vmcb_save_area___vr {
	u8 cpl;
} __attribute__((preserve_access_index));

struct vmcb___vr {
	struct vmcb_control_area___vr control;
	struct vmcb_save_area___vr save;
} __attribute__((preserve_access_index));

/* struct kvm_vcpu is the first member of both: container_of is a cast. */
struct vcpu_svm___vr {
	struct vmcb___vr *vmcb;
} __attribute__((preserve_access_index));

union vmx_exit_reason___vr {
	u32 full;
} __attribute__((preserve_access_index));

struct vcpu_vmx___vr {
	union vmx_exit_reason___vr exit_reason;
} __attribute__((preserve_access_index));

#endif
