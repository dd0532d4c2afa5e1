// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset_guest: the guest side of the VMRESET_HC_PRESERVE hypercall
 * (include/uapi/linux/vmreset.h, docs/bpf.md). KVM refuses hypercalls
 * from user mode (and vmreset-hc counts them as not_kernel), so the guest
 * agent, a user process, asks this module to make it:
 *
 *   echo "GPA LEN [FLAGS]" > /sys/module/vmreset_guest/parameters/preserve
 *   cat /sys/module/vmreset_guest/parameters/result     # rax after the call
 *
 * KVM itself does not know the number and answers -KVM_ENOSYS (-1000); the
 * request is taken by vmreset-hc's programs on the host on the way.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kvm_para.h>
#include <asm/kvm_para.h>

/* The two numbers of the ABI; the UAPI header is the host's. */
#define VMRESET_HC_PRESERVE	0x766d7201UL
#define VMRESET_HC_F_ALL	1UL

static long result;

static int preserve_set(const char *val, const struct kernel_param *kp)
{
	unsigned long long gpa, len, flags = 0;
	int n = sscanf(val, "%lli %lli %lli", &gpa, &len, &flags);

	if (n < 2)
		return -EINVAL;
	/* The host checks too; refuse here what can only be a mistake. */
	if (flags & ~VMRESET_HC_F_ALL)
		return -EINVAL;
	if (!kvm_para_available())
		return -ENODEV;
	result = kvm_hypercall4(VMRESET_HC_PRESERVE, gpa, len, flags, 0);
	return 0;
}

static const struct kernel_param_ops preserve_ops = {
	.set = preserve_set,
};

module_param_cb(preserve, &preserve_ops, NULL, 0200);
MODULE_PARM_DESC(preserve, "\"GPA LEN [FLAGS]\": issue VMRESET_HC_PRESERVE");
module_param(result, long, 0444);
MODULE_PARM_DESC(result, "rax after the last hypercall");

MODULE_DESCRIPTION("vmreset guest hypercalls (preserved ranges)");
MODULE_LICENSE("GPL");
