// SPDX-License-Identifier: GPL-2.0
/*
 * Declares a non-GPL licence, so the kernel taints with P on load: the VM
 * suite checks the taint letters modscope reports against the kernel's.
 */
#include <linux/init.h>
#include <linux/module.h>

static int __init modscope_proprietary_init(void)
{
	return 0;
}

static void __exit modscope_proprietary_exit(void)
{
}

module_init(modscope_proprietary_init);
module_exit(modscope_proprietary_exit);
MODULE_LICENSE("Proprietary");
MODULE_DESCRIPTION("modscope test module: proprietary licence taint");
