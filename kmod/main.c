// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset: page-level reset of KVM guest memory. See docs/design.md.
 */

#include <linux/module.h>
#include <net/genetlink.h>
#include "vmreset.h"

static int __init vmr_init(void)
{
	int err;

	err = vmr_vm_init();
	if (err)
		return err;
	err = vmr_nl_init();
	if (err)
		goto err_vm;
	err = vmr_fs_init();
	if (err)
		goto err_nl;
	pr_info("vmresetfs " VMRESET_VERSION " loaded\n");
	return 0;

err_nl:
	vmr_nl_exit();
err_vm:
	vmr_vm_exit();
	return err;
}

static void __exit vmr_exit(void)
{
	vmr_fs_exit();
	/* No new attachments once the family is gone; then drop the rest. */
	vmr_nl_exit();
	vmr_vm_exit();
}

module_init(vmr_init);
module_exit(vmr_exit);

MODULE_LICENSE("GPL");
MODULE_VERSION(VMRESET_VERSION);
MODULE_DESCRIPTION("vmresetfs: copy-on-write snapshots and O(dirty) reset of KVM guest memory");
MODULE_AUTHOR("The vmreset authors");
MODULE_ALIAS_GENL_FAMILY(VMRESET_GENL_NAME);
