// SPDX-License-Identifier: GPL-2.0
/*
 * Its exit function ends in a call to proc_remove(), which the compiler
 * emits as a tail call (`jmp proc_remove` on x86-64, where the kernel
 * builds without frame pointers): proc_remove returns straight to the
 * kernel's caller, so its probe sees no return address in this module.
 * modscope must report proc_remove as tail-called, never as unused.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/proc_fs.h>

static struct proc_dir_entry *modscope_tailcall_dir;

static int __init modscope_tailcall_init(void)
{
	modscope_tailcall_dir = proc_mkdir("modscope_tailcall", NULL);
	return modscope_tailcall_dir ? 0 : -ENOMEM;
}

static void __exit modscope_tailcall_exit(void)
{
	proc_remove(modscope_tailcall_dir);
}

module_init(modscope_tailcall_init);
module_exit(modscope_tailcall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope VM test: an import reached only by a tail call");
