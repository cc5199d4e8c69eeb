// SPDX-License-Identifier: GPL-2.0
/*
 * A struct mutex exactly as a module compiled without CONFIG_DEBUG_MUTEXES
 * (and without lockdep) lays it out and statically initialises it: owner,
 * a 4-byte wait_lock, the optimistic-spin queue, a self-linked wait_list;
 * no debug magic. On a kernel with DEBUG_MUTEXES, modscope's mutex_magic
 * detector must flag every mutex_trylock, at one call site, before the
 * kernel's own DEBUG_LOCKS_WARN_ON. Only trylock is used (exported with and
 * without lock debugging), and the mutex is never unlocked: the debug
 * kernel's unlock path would walk a wait list at its own offset.
 * For the lock-debugging kernel of the VM suite only.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/mutex.h>

static unsigned int rounds = 100;
module_param(rounds, uint, 0444);
MODULE_PARM_DESC(rounds, "how many times init tries the mutex");

/* struct mutex of Debian's generic 6.1 (32 bytes), then room. */
struct nodebug_mutex {
	atomic_long_t owner;
	u32 wait_lock;
	u32 osq;
	struct list_head wait_list;
	unsigned long room[32];
};

static struct nodebug_mutex guarded = {
	.owner = ATOMIC_LONG_INIT(0),
	.wait_list = LIST_HEAD_INIT(guarded.wait_list),
};
static unsigned long acquired;

static noinline void try_once(void)
{
	if (mutex_trylock((struct mutex *)&guarded))
		acquired++;
}

static int __init modscope_mutex_nodebug_init(void)
{
	unsigned int i;

	for (i = 0; i < rounds; i++)
		try_once();
	return 0;
}

static void __exit modscope_mutex_nodebug_exit(void)
{
}

module_init(modscope_mutex_nodebug_init);
module_exit(modscope_mutex_nodebug_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: a mutex compiled without lock debugging");
