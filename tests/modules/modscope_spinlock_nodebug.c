// SPDX-License-Identifier: GPL-2.0
/*
 * A spinlock exactly as a module compiled without CONFIG_DEBUG_SPINLOCK
 * leaves it in its binary: spin_lock_init is an inline store of an
 * unlocked 4-byte arch lock, spin_lock/spin_unlock are calls to
 * _raw_spin_lock/_raw_spin_unlock with the lock's address. That is a
 * correct spinlock on kernels without lock debugging (Debian's generic and
 * PREEMPT_RT raw spinlocks); on a kernel with DEBUG_SPINLOCK the lock has
 * no debug magic, and modscope's spinlock_magic detector must flag every
 * acquisition, at one call site, before the kernel's own "bad magic".
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/spinlock.h>

static unsigned int rounds = 1000;
module_param(rounds, uint, 0444);
MODULE_PARM_DESC(rounds, "how many times init takes the lock");

/*
 * The lock as a non-debug build lays it out, then room: a kernel with lock
 * debugging has a larger raw_spinlock_t and writes its owner and lockdep
 * fields past the module's 4 bytes.
 */
static struct {
	u32 arch_lock;
	unsigned long room[32];
} guarded;
static unsigned long taken;

static noinline void take_once(void)
{
	_raw_spin_lock((raw_spinlock_t *)&guarded);
	taken++;
	_raw_spin_unlock((raw_spinlock_t *)&guarded);
}

static int __init modscope_spinlock_nodebug_init(void)
{
	unsigned int i;

	WRITE_ONCE(guarded.arch_lock, 0); /* __ARCH_SPIN_LOCK_UNLOCKED */
	for (i = 0; i < rounds; i++)
		take_once();
	return 0;
}

static void __exit modscope_spinlock_nodebug_exit(void)
{
}

module_init(modscope_spinlock_nodebug_init);
module_exit(modscope_spinlock_nodebug_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: a spinlock compiled without lock debugging");
