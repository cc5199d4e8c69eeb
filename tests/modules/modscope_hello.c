// SPDX-License-Identifier: GPL-2.0
/*
 * The plainest module: loads, unloads, nothing else. It publishes, as
 * read-only parameters, the boot-clock time its init ran and the addresses
 * of one init-text and one core-text function, so the VM suite can check
 * that modscope registered both ranges, and did so before init ran.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/timekeeping.h>

static unsigned long long init_boot_ns;
module_param(init_boot_ns, ullong, 0444);
MODULE_PARM_DESC(init_boot_ns, "ktime_get_boot_fast_ns() when init ran");

static unsigned long init_fn;
module_param(init_fn, ulong, 0444);
MODULE_PARM_DESC(init_fn, "address of this module's init function (init text)");

static unsigned long core_fn;
module_param(core_fn, ulong, 0444);
MODULE_PARM_DESC(core_fn, "address of a function in this module's core text");

static noinline unsigned long modscope_hello_core(void)
{
	return (unsigned long)modscope_hello_core;
}

static int __init modscope_hello_init(void)
{
	init_boot_ns = ktime_get_boot_fast_ns();
	init_fn = (unsigned long)modscope_hello_init;
	core_fn = modscope_hello_core();
	pr_info("modscope_hello: loaded\n");
	return 0;
}

static void __exit modscope_hello_exit(void)
{
	pr_info("modscope_hello: unloaded\n");
}

module_init(modscope_hello_init);
module_exit(modscope_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: load and unload, with its own addresses");
