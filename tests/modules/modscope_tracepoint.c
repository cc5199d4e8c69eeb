// SPDX-License-Identifier: GPL-2.0
/*
 * Hooks a kernel tracepoint the way out-of-tree tracers do: finds
 * `module_free` with for_each_kernel_tracepoint and registers a probe on it
 * from init (one call of tracepoint_probe_register), unregisters on exit.
 * modscope's tracepoint_probe detector must flag that one call.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

static struct tracepoint *module_free_tp;
static atomic_t frees_seen = ATOMIC_INIT(0);

static void on_module_free(void *data, struct module *mod)
{
	atomic_inc(&frees_seen);
}

static void find_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "module_free"))
		module_free_tp = tp;
}

static bool registered;

static int __init modscope_tracepoint_init(void)
{
	int ret;

	for_each_kernel_tracepoint(find_tp, NULL);
	if (!module_free_tp)
		return -ENOENT;
	/*
	 * Not a tail call: calls are attributed by return address, and a
	 * `jmp` to the function would return straight to the module's caller.
	 */
	ret = tracepoint_probe_register(module_free_tp, on_module_free, NULL);
	WRITE_ONCE(registered, ret == 0);
	return ret;
}

static void __exit modscope_tracepoint_exit(void)
{
	if (registered)
		tracepoint_probe_unregister(module_free_tp, on_module_free, NULL);
	tracepoint_synchronize_unregister();
}

module_init(modscope_tracepoint_init);
module_exit(modscope_tracepoint_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: a probe on a kernel tracepoint");
