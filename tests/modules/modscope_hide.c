// SPDX-License-Identifier: GPL-2.0
/*
 * Takes itself off the kernel's module list during init, as rootkits do
 * (list_del of THIS_MODULE->list): /proc/modules, lsmod, kallsyms and rmmod
 * lose it, while its kobject keeps /sys/module/modscope_hide. Parameters:
 *   trigger (write N): calls get_random_u32 N times from this module's text
 *   show (write anything): puts it back on the list, so rmmod can unload it
 * Nothing else may load or unload while it is off the list (the VM suite
 * runs its tests one at a time): it goes back after the entry it followed.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/random.h>
#include <linux/rculist.h>

static struct list_head *modscope_hide_prev;
static bool modscope_hide_hidden;
static u32 modscope_hide_sink;

static noinline void modscope_hide_work(unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		modscope_hide_sink ^= get_random_u32();
}

static int modscope_hide_trigger(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret = kstrtouint(val, 0, &n);

	if (ret)
		return ret;
	modscope_hide_work(n);
	return 0;
}

static const struct kernel_param_ops modscope_hide_trigger_ops = {
	.set = modscope_hide_trigger,
};
module_param_cb(trigger, &modscope_hide_trigger_ops, NULL, 0200);

static int modscope_hide_show(const char *val, const struct kernel_param *kp)
{
	if (modscope_hide_hidden) {
		list_add_rcu(&THIS_MODULE->list, modscope_hide_prev);
		modscope_hide_hidden = false;
	}
	return 0;
}

static const struct kernel_param_ops modscope_hide_show_ops = {
	.set = modscope_hide_show,
};
module_param_cb(show, &modscope_hide_show_ops, NULL, 0200);

static int __init modscope_hide_init(void)
{
	modscope_hide_prev = THIS_MODULE->list.prev;
	list_del_rcu(&THIS_MODULE->list);
	modscope_hide_hidden = true;
	return 0;
}

static void __exit modscope_hide_exit(void)
{
}

module_init(modscope_hide_init);
module_exit(modscope_hide_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: unlinks itself from the module list");
