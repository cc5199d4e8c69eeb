// SPDX-License-Identifier: GPL-2.0
/*
 * Locks used correctly for the kernel the module was built for: a spinlock,
 * a mutex and a wait queue in a kzalloc'd object of the right size, each
 * initialised with its API, then taken many times. On every kernel of the
 * suite (generic, PREEMPT_RT, lock debugging) modscope's detectors must
 * report nothing for it.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

struct guarded {
	spinlock_t spin;
	struct mutex mutex;
	wait_queue_head_t waiters;
	unsigned long count;
};

static struct guarded *g;
static DEFINE_SPINLOCK(static_spin);
static DEFINE_MUTEX(static_mutex);

static int __init modscope_clean_init(void)
{
	int i;

	g = kzalloc(sizeof(*g), GFP_KERNEL);
	if (!g)
		return -ENOMEM;
	spin_lock_init(&g->spin);
	mutex_init(&g->mutex);
	init_waitqueue_head(&g->waiters);
	for (i = 0; i < 500; i++) {
		spin_lock(&g->spin);
		g->count++;
		spin_unlock(&g->spin);
		mutex_lock(&g->mutex);
		g->count++;
		mutex_unlock(&g->mutex);
		spin_lock(&static_spin);
		g->count++;
		spin_unlock(&static_spin);
		if (mutex_trylock(&static_mutex)) {
			g->count++;
			mutex_unlock(&static_mutex);
		}
	}
	wake_up(&g->waiters);
	return 0;
}

static void __exit modscope_clean_exit(void)
{
	kfree(g);
}

module_init(modscope_clean_init);
module_exit(modscope_clean_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: locks used correctly");
