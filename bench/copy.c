// SPDX-License-Identifier: GPL-2.0
/*
 * The copy routines vmreset_bench chooses from. Each copies whole 4 KiB
 * pages between page-aligned buffers; no tail handling is needed.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "copy.h"

static void copy_memcpy(void *dst, const void *src, size_t len)
{
	memcpy(dst, src, len);
}

/*
 * Four aligned vector loads, then four stores, an iteration: the same loop
 * for each vector width, so that the widths compare fairly.
 */
#define VEC_COPY(vec, load, store)					\
	do {								\
		vec *d = dst;						\
		const vec *s = src;					\
									\
		for (size_t i = 0; i < len / sizeof(vec); i += 4) {	\
			vec a = load(s + i), b = load(s + i + 1);	\
			vec c = load(s + i + 2), e = load(s + i + 3);	\
									\
			store(d + i, a);				\
			store(d + i + 1, b);				\
			store(d + i + 2, c);				\
			store(d + i + 3, e);				\
		}							\
	} while (0)

static void copy_sse2(void *dst, const void *src, size_t len)
{
	VEC_COPY(__m128i, _mm_load_si128, _mm_store_si128);
}

__attribute__((target("avx")))
static void copy_avx(void *dst, const void *src, size_t len)
{
	VEC_COPY(__m256i, _mm256_load_si256, _mm256_store_si256);
	_mm256_zeroupper();
}

static void copy_movsb(void *dst, const void *src, size_t len)
{
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(len) : : "memory");
}

static void copy_movsq(void *dst, const void *src, size_t len)
{
	size_t n = len / 8;

	__asm__ volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

static bool always(void)
{
	return true;
}

static bool has_avx(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx");
}

const struct copy_routine copy_routines[] = {
	{ "memcpy", "glibc memcpy()", copy_memcpy, always },
	{ "sse2", "SSE2 loop, 64 bytes an iteration", copy_sse2, always },
	{ "avx", "AVX loop, 128 bytes an iteration", copy_avx, has_avx },
	{ "rep-movsb", "rep movsb", copy_movsb, always },
	{ "rep-movsq", "rep movsq (the kernel's copy_page)", copy_movsq, always },
};
const int nr_copy_routines = sizeof(copy_routines) / sizeof(copy_routines[0]);
