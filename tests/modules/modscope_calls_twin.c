// SPDX-License-Identifier: GPL-2.0
/* The same module under another name, for concurrent attribution tests. */
#include "modscope_calls.c"
