// SPDX-License-Identifier: GPL-2.0
/*
 * Calls known kernel functions a known number of times, so the VM suite
 * can check modscope's per-module call counts exactly:
 *   init:  kstrdup x1000, kfree x1000, mutex_lock x500, mutex_unlock x500
 *   each write of N to parameters/trigger: kstrdup xN, kfree xN (and
 *   kstrtouint once, which kprobes refuse: lib/kstrtox.c is not traceable)
 * It imports _printk and never calls it: that import must show as unused.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

static DEFINE_MUTEX(modscope_calls_lock);
static bool never;
module_param(never, bool, 0444);

static noinline void modscope_calls_work(unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		char *s = kstrdup("modscope", GFP_KERNEL);

		kfree(s);
	}
}

static int modscope_calls_trigger(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret = kstrtouint(val, 0, &n);

	if (ret)
		return ret;
	modscope_calls_work(n);
	return 0;
}

static const struct kernel_param_ops modscope_calls_trigger_ops = {
	.set = modscope_calls_trigger,
};
module_param_cb(trigger, &modscope_calls_trigger_ops, NULL, 0200);

static int __init modscope_calls_init(void)
{
	int i;

	modscope_calls_work(1000);
	for (i = 0; i < 500; i++) {
		mutex_lock(&modscope_calls_lock);
		mutex_unlock(&modscope_calls_lock);
	}
	if (never)
		pr_info("modscope_calls: never printed\n");
	return 0;
}

static void __exit modscope_calls_exit(void)
{
}

module_init(modscope_calls_init);
module_exit(modscope_calls_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: known calls, known counts");
