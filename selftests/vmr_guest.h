/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest code shared by the vmresetfs KVM tests (no libc in here), and the
 * slot layout they use: guest RAM at VM_TEST_GPA, a parameter page array
 * one GiB above it.
 */
#ifndef _VMR_GUEST_H
#define _VMR_GUEST_H

#include "kvm_guest.h"
#include "vmr_util.h"

#define PARAM_GPA	(VM_TEST_GPA + (1ULL << 30))
#define PARAM_SIZE	(1UL << 20)

GUEST_CODE static uint64_t guest_write_list(uint64_t base, uint64_t list,
					    uint64_t n, uint64_t tag)
{
	const volatile uint64_t *idx = (const volatile uint64_t *)list;

	for (uint64_t i = 0; i < n; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(base + idx[i] * PG);

		p[0] = tag ^ idx[i];
		p[PG / 8 - 1] = ~(tag ^ idx[i]);
	}
	return n;
}

/* Fill every word of the listed pages (the whole page changes). */
GUEST_CODE static uint64_t guest_fill_list(uint64_t base, uint64_t list,
					   uint64_t n, uint64_t tag)
{
	const volatile uint64_t *idx = (const volatile uint64_t *)list;

	for (uint64_t i = 0; i < n; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(base + idx[i] * PG);

		for (uint64_t w = 0; w < PG / 8; w++)
			p[w] = tag ^ (idx[i] << 12) ^ w;
	}
	return n;
}

GUEST_CODE static uint64_t guest_read_all(uint64_t base, uint64_t npages)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < npages; i++)
		sum += *(volatile uint64_t *)(base + i * PG);
	return sum;
}

/* Pages that are not the page_has() pattern of @seed, as a whole. */
GUEST_CODE static uint64_t guest_check(uint64_t base, uint64_t npages,
				       uint64_t seed)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < npages; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(base + i * PG);
		uint64_t want = (seed * 0x9e3779b97f4a7c15ULL) ^ i, mid = 0;

		for (uint64_t w = 1; w < PG / 8 - 1; w++)
			mid |= p[w];
		if (p[0] != want || p[PG / 8 - 1] != ~want || mid)
			bad++;
	}
	return bad;
}

#endif /* _VMR_GUEST_H */
