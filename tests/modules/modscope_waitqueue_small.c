// SPDX-License-Identifier: GPL-2.0
/*
 * A wait queue head laid out as Debian's generic kernels have it (24
 * bytes: a 4-byte spinlock and a list head), placed at the end of the
 * module's own allocation, as a module built for the generic kernel would
 * size its structure. On a kernel whose wait_queue_head is bigger
 * (PREEMPT_RT: 48 bytes, lock debugging: 80) the kernel's
 * __init_waitqueue_head writes past the end of that allocation: modscope's
 * object_bounds detector must flag the call, once, and nothing on the
 * generic kernels, where 24 bytes is right.
 *
 * So that the test itself corrupts nothing, the allocation is made at
 * 4096 bytes and shrunk in place to 4000 with krealloc: the module's
 * allocation is 4000 bytes, the memory behind it still 4096.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/wait.h>

#define GENERIC_WAIT_QUEUE_HEAD_SIZE 24
#define ASKED 4000

static char *buffer;

static int __init modscope_waitqueue_small_init(void)
{
	char *big = kmalloc(4096, GFP_KERNEL);
	struct wait_queue_head *wq;

	if (!big)
		return -ENOMEM;
	buffer = krealloc(big, ASKED, GFP_KERNEL);
	if (!buffer) {
		kfree(big);
		return -ENOMEM;
	}
	wq = (struct wait_queue_head *)(buffer + ASKED - GENERIC_WAIT_QUEUE_HEAD_SIZE);
	init_waitqueue_head(wq);
	return 0;
}

static void __exit modscope_waitqueue_small_exit(void)
{
	/* Not a tail call (the store follows it): the free is counted. */
	kfree(buffer);
	buffer = NULL;
}

module_init(modscope_waitqueue_small_init);
module_exit(modscope_waitqueue_small_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("modscope test module: a wait queue sized for the generic kernel");
