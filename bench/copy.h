/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Page copy routines for the benchmark's user-space methods. Which one is
 * fastest depends on the CPU and on the emulator (TCG runs rep movs and
 * vector loops at very different speeds), so the benchmark times them all
 * at startup and gives every copying method the winner.
 */
#ifndef VMRESET_BENCH_COPY_H
#define VMRESET_BENCH_COPY_H

#include <stddef.h>
#include <stdbool.h>

/* Copies @len bytes, a multiple of 4 KiB, between page-aligned buffers. */
typedef void (*copy_fn)(void *dst, const void *src, size_t len);

struct copy_routine {
	const char *name;
	const char *what;
	copy_fn fn;
	bool (*usable)(void);
};

extern const struct copy_routine copy_routines[];
extern const int nr_copy_routines;

#endif
