// SPDX-License-Identifier: GPL-2.0
/*
 * DEFINE_MUTEX and mutex_lock from init: no __mutex_init import. Built for
 * Debian's generic kernel and loaded into the PREEMPT_RT flavour with
 * `insmod -f` (vermagic and CRCs ignored), a non-RT mutex is handed to the
 * RT mutex_lock, and the guest hangs: the post-mortem scenario, where only
 * what modscope record already wrote to disk tells what happened.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/mutex.h>

static DEFINE_MUTEX(modscope_static_lock);
static unsigned int locked_count;
module_param(locked_count, uint, 0444);
MODULE_PARM_DESC(locked_count, "how many times init took the mutex");

static int __init modscope_mutex_static_init(void)
{
	int i;

	for (i = 0; i < 100; i++) {
		mutex_lock(&modscope_static_lock);
		locked_count++;
		mutex_unlock(&modscope_static_lock);
	}
	return 0;
}

static void __exit modscope_mutex_static_exit(void)
{
}

module_init(modscope_mutex_static_init);
module_exit(modscope_mutex_static_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: a DEFINE_MUTEX taken from init");
