// SPDX-License-Identifier: GPL-2.0
/*
 * sha256mb.c - SHA-256 of up to 16 messages of one length at once
 *
 * One SHA-256 stream is a chain of dependent rounds. With SHA-NI it runs
 * at ~1 GB/s here however many streams are interleaved (the SHA unit is
 * busy, not waiting). AVX-512 has no SHA instructions, but its 16 lanes of
 * 32 bits run the plain rounds of 16 messages side by side: a 4 KiB
 * block's hash costs several times less, and the hashes are the same.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include "sha256mb.h"

#if defined(__x86_64__)
#include <immintrin.h>

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV256[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define AVX512 __attribute__((target("avx512f,avx512bw")))

#define ROR(x, n)	_mm512_ror_epi32(x, n)
#define XOR3(a, b, c)	_mm512_ternarylogic_epi32(a, b, c, 0x96)
#define ADD(a, b)	_mm512_add_epi32(a, b)

/* t1 = h + S1(e) + Ch(e,f,g) + K + W; d += t1; h = t1 + S0(a) + Maj(a,b,c) */
#define ROUND(a, b, c, d, e, f, g, h, i) do {						\
	__m512i t1 = ADD(ADD(h, XOR3(ROR(e, 6), ROR(e, 11), ROR(e, 25))),			\
			 ADD(_mm512_ternarylogic_epi32(e, f, g, 0xca),			\
			     ADD(w[(i) & 15], _mm512_set1_epi32((int)K256[i]))));		\
	d = ADD(d, t1);										\
	h = ADD(t1, ADD(XOR3(ROR(a, 2), ROR(a, 13), ROR(a, 22)),				\
			_mm512_ternarylogic_epi32(a, b, c, 0xe8)));			\
} while (0)

#define SCHED(i) do {										\
	__m512i x = w[((i) - 15) & 15], y = w[((i) - 2) & 15];					\
	w[(i) & 15] = ADD(ADD(w[(i) & 15], w[((i) - 7) & 15]),					\
			  ADD(XOR3(ROR(x, 7), ROR(x, 18), _mm512_srli_epi32(x, 3)),		\
			      XOR3(ROR(y, 17), ROR(y, 19), _mm512_srli_epi32(y, 10))));		\
} while (0)

/* Rows (a lane's 16 words each) into columns (one word of every lane). */
AVX512 static void transpose16(__m512i r[16])
{
	__m512i t[16], u[16];

	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4) {
		u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	/* u[4q + m], 128-bit lane j: word 4j + m of rows 4q..4q+3 */
	for (int m = 0; m < 4; m++) {
		__m512i xl = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44);
		__m512i xh = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xee);
		__m512i yl = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
		__m512i yh = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xee);

		r[m] = _mm512_shuffle_i32x4(xl, yl, 0x88);
		r[4 + m] = _mm512_shuffle_i32x4(xl, yl, 0xdd);
		r[8 + m] = _mm512_shuffle_i32x4(xh, yh, 0x88);
		r[12 + m] = _mm512_shuffle_i32x4(xh, yh, 0xdd);
	}
}

/* @nblk 64-byte blocks of each of 16 lanes, lane l's from @p[l] on. */
AVX512 static void compress16(__m512i st[8], const uint8_t *const p[16], size_t nblk)
{
	const __m512i bswap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
	__m512i a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
	__m512i w[16];

	for (size_t k = 0; k < nblk; k++) {
#pragma GCC unroll 16
		for (int l = 0; l < 16; l++)
			w[l] = _mm512_shuffle_epi8(_mm512_loadu_si512(p[l] + 64 * k), bswap);
		transpose16(w);
#pragma GCC unroll 8
		for (int i = 0; i < 64; i += 8) {
			if (i >= 16) {
				SCHED(i); SCHED(i + 1); SCHED(i + 2); SCHED(i + 3);
				SCHED(i + 4); SCHED(i + 5); SCHED(i + 6); SCHED(i + 7);
			}
			ROUND(a, b, c, d, e, f, g, h, i);
			ROUND(h, a, b, c, d, e, f, g, i + 1);
			ROUND(g, h, a, b, c, d, e, f, i + 2);
			ROUND(f, g, h, a, b, c, d, e, i + 3);
			ROUND(e, f, g, h, a, b, c, d, i + 4);
			ROUND(d, e, f, g, h, a, b, c, i + 5);
			ROUND(c, d, e, f, g, h, a, b, i + 6);
			ROUND(b, c, d, e, f, g, h, a, i + 7);
		}
		a = st[0] = ADD(a, st[0]);
		b = st[1] = ADD(b, st[1]);
		c = st[2] = ADD(c, st[2]);
		d = st[3] = ADD(d, st[3]);
		e = st[4] = ADD(e, st[4]);
		f = st[5] = ADD(f, st[5]);
		g = st[6] = ADD(g, st[6]);
		h = st[7] = ADD(h, st[7]);
	}
}

AVX512 static void sha256_x16(const uint8_t *const msg[16], size_t len,
			      uint8_t out[][VMRS_SHA256_LEN], size_t n)
{
	uint8_t tail[16][128];
	const uint8_t *tp[16];
	size_t full = len / 64, rest = len % 64, ntail = rest + 9 <= 64 ? 1 : 2;
	uint64_t bits = (uint64_t)len * 8;
	uint32_t v[8][16];
	__m512i st[8];

	for (int i = 0; i < 8; i++)
		st[i] = _mm512_set1_epi32((int)IV256[i]);
	compress16(st, msg, full);
	for (int l = 0; l < 16; l++) {
		memset(tail[l], 0, sizeof(tail[l]));
		memcpy(tail[l], msg[l] + 64 * full, rest);
		tail[l][rest] = 0x80;
		for (int k = 0; k < 8; k++)
			tail[l][64 * ntail - 1 - k] = (uint8_t)(bits >> (8 * k));
		tp[l] = tail[l];
	}
	compress16(st, tp, ntail);
	for (int i = 0; i < 8; i++)
		_mm512_storeu_si512(v[i], st[i]);
	for (size_t l = 0; l < n; l++)
		for (int i = 0; i < 8; i++) {
			out[l][4 * i] = (uint8_t)(v[i][l] >> 24);
			out[l][4 * i + 1] = (uint8_t)(v[i][l] >> 16);
			out[l][4 * i + 2] = (uint8_t)(v[i][l] >> 8);
			out[l][4 * i + 3] = (uint8_t)v[i][l];
		}
}

/*
 * cpuid and the OS's saving of the zmm registers (libgcc checks XCR0);
 * VMRESET_STORE_NO_AVX512 turns it off (the test of the fallback, and
 * benchmarks of both).
 */
static bool have_avx512(void)
{
	/* Atomic: the save's workers ask at the same time (all get one answer). */
	static _Atomic int have = -1;
	int h = atomic_load_explicit(&have, memory_order_relaxed);

	if (h < 0) {
		h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		    !getenv("VMRESET_STORE_NO_AVX512");
		atomic_store_explicit(&have, h, memory_order_relaxed);
	}
	return h;
}
#endif

static void sha256_one(const uint8_t *msg, size_t len, uint8_t out[VMRS_SHA256_LEN])
{
	SHA256_CTX c;

	SHA256_Init(&c);
	SHA256_Update(&c, msg, len);
	SHA256_Final(out, &c);
}

void vmrs_sha256_many(const uint8_t *const msg[], size_t len, size_t n,
		      uint8_t out[][VMRS_SHA256_LEN])
{
#if defined(__x86_64__)
	/*
	 * A 16-lane pass costs what SHA-NI takes for 5 to 7 blocks here
	 * (24-26 us against 3.7-5.8 us a 4 KiB block): fewer go one by one.
	 */
	while (n >= 6 && have_avx512()) {
		const uint8_t *p[16];
		size_t m = n < 16 ? n : 16;

		for (size_t l = 0; l < 16; l++)
			p[l] = msg[l < m ? l : 0];
		sha256_x16(p, len, out, m);
		msg += m;
		out += m;
		n -= m;
	}
#endif
	for (size_t l = 0; l < n; l++)
		sha256_one(msg[l], len, out[l]);
}

bool vmrs_sha256_many_wide(void)
{
#if defined(__x86_64__)
	return have_avx512();
#else
	return false;
#endif
}
