// SPDX-License-Identifier: GPL-2.0
/*
 * Initialises a mutex at run time (mutex_init, which imports __mutex_init
 * on non-RT kernels) and takes it a known number of times. Built for one
 * flavour and loaded into the other, it is the VM suite's ground truth for
 * what the loader does with lock-API symbols whose CRCs or existence
 * differ between generic and PREEMPT_RT.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/mutex.h>

static struct mutex modscope_lock;
static unsigned int locked_count;
module_param(locked_count, uint, 0444);
MODULE_PARM_DESC(locked_count, "how many times init took the mutex");

static int __init modscope_mutex_init(void)
{
	int i;

	mutex_init(&modscope_lock);
	for (i = 0; i < 100; i++) {
		mutex_lock(&modscope_lock);
		locked_count++;
		mutex_unlock(&modscope_lock);
	}
	return 0;
}

static void __exit modscope_mutex_exit(void)
{
}

module_init(modscope_mutex_init);
module_exit(modscope_mutex_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: run-time initialised mutex");
