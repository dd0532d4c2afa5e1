// SPDX-License-Identifier: GPL-2.0
/*
 * Which KVM VMs a process holds, by fd: a task_file iterator (limited to
 * one task by the link) writes a struct vmfd_rec for every file that is a
 * KVM VM ("kvm-vm", the name KVM gives anon_inode_getfile(); its
 * private_data is the struct kvm). The hypercall service keys requests by
 * struct kvm; this tells the drainer which of them is the VM it reverts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vmfd.h"

char LICENSE[] SEC("license") = "GPL";

SEC("iter/task_file")
int kvm_vm_files(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct vmfd_rec rec = { 0 };
	const unsigned char *name;
	char buf[8] = { 0 };

	if (!file)
		return 0;
	name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(buf, sizeof(buf), name) != 7 ||
	    buf[0] != 'k' || buf[1] != 'v' || buf[2] != 'm' || buf[3] != '-' ||
	    buf[4] != 'v' || buf[5] != 'm')
		return 0;
	rec.fd = ctx->fd;
	rec.kvm = (__u64)BPF_CORE_READ(file, private_data);
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
