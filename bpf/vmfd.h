/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Shared by vmfd.bpf.c and hcdrain.c. */
#ifndef VMRESET_BPF_VMFD_H
#define VMRESET_BPF_VMFD_H

/* One KVM VM file a process holds: its fd there, and its struct kvm. */
struct vmfd_rec {
	__u32 fd;
	__u32 __pad;
	__u64 kvm;
};

#endif
