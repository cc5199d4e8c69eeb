// SPDX-License-Identifier: GPL-2.0
/*
 * A module with more than 4 MiB of text (like large vendor drivers), whose
 * calls come from past the first 4 MiB: each write of N to
 * parameters/trigger makes N kstrdup and N kfree calls from there.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/string.h>

static noinline void modscope_big_work(unsigned int n)
{
	unsigned int i;

	/* 5 MiB of never-executed padding (trap instructions) before the calls. */
#if defined(__aarch64__)
	asm volatile("b 1f\n\t.fill 0x140000, 4, 0xd4200000\n1:");
#else
	asm volatile("jmp 1f\n\t.fill 0x500000, 1, 0xcc\n1:");
#endif
	for (i = 0; i < n; i++) {
		char *s = kstrdup("modscope", GFP_KERNEL);

		kfree(s);
	}
}

static int modscope_big_trigger(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret = kstrtouint(val, 0, &n);

	if (ret)
		return ret;
	modscope_big_work(n);
	return 0;
}

static const struct kernel_param_ops modscope_big_trigger_ops = {
	.set = modscope_big_trigger,
};
module_param_cb(trigger, &modscope_big_trigger_ops, NULL, 0200);

static int __init modscope_big_init(void)
{
	return 0;
}

static void __exit modscope_big_exit(void)
{
}

module_init(modscope_big_init);
module_exit(modscope_big_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: calls from past 4 MiB of text");
