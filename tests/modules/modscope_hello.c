// SPDX-License-Identifier: GPL-2.0
/*
 * The plainest module: loads, unloads, nothing else. Its init and exit
 * functions live in .init.text and .text, so both ranges exist.
 */
#include <linux/init.h>
#include <linux/module.h>

static int __init modscope_hello_init(void)
{
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
MODULE_DESCRIPTION("modscope test module: load and unload");
