// SPDX-License-Identifier: GPL-2.0
/*
 * aesgcm.c - AES-256-GCM of one store block, 16 AES blocks at a time
 *
 * OpenSSL 3.0 (Debian 12) runs GCM with 128-bit AES-NI and PCLMULQDQ:
 * 2.3-3 GB/s here at 4 KiB, a quarter of a save's CPU. This CPU also has
 * VAES and VPCLMULQDQ, which do four AES rounds and four carry-less
 * multiplications per instruction on 512-bit vectors. Each block has a
 * key of its own, so the key schedule and the powers of the hash key are
 * per call too; both are short dependent chains next to 4 KiB of data.
 *
 * GHASH works on byte-reflected blocks without reflecting their bits,
 * which introduces a factor of x per multiplication; the hash key is
 * stored multiplied by x^-1 to cancel it. Sixteen blocks are multiplied
 * by H^16..H^1 and summed unreduced, then reduced once with two folds by
 * the reversed polynomial x^128 + x^127 + x^126 + x^121 + 1. This is the
 * method of Gueron and Kounavis (Intel's GCM white paper) in the vector
 * layout of Linux's aes-gcm-avx10-x86_64.S.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "aesgcm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define VAES __attribute__((target("avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmul")))

struct gcm_key {
	__m512i rk[15];		/* the round keys, in all four lanes */
	__m512i h[4];		/* [H^16..H^13], [H^12..H^9], [H^8..H^5], [H^4..H^1] */
	__m128i j0;		/* E(K, J0): masks the tag */
	/* The same powers in memory, then three zero blocks for the tail. */
	uint8_t hp[16 * 16 + 48] __attribute__((aligned(64)));
};

VAES static inline __m512i bswap_mask(void)
{
	return _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
						   14, 15));
}

VAES static inline __m512i gfpoly(void)
{
	return _mm512_broadcast_i32x4(_mm_set_epi64x((long long)0xc200000000000000ULL, 1));
}

#define XOR3(a, b, c)	_mm512_ternarylogic_epi32(a, b, c, 0x96)
#define SWAP64(a)	_mm512_shuffle_epi32(a, (_MM_PERM_ENUM)0x4e)

/* The 256-bit products of the lanes of @a and @b, added to lo, mi, hi. */
#define MUL_ADD(a, b, lo, mi, hi) do {						\
	lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(a, b, 0x00));	\
	mi = XOR3(mi, _mm512_clmulepi64_epi128(a, b, 0x01),			\
		  _mm512_clmulepi64_epi128(a, b, 0x10));			\
	hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(a, b, 0x11));	\
} while (0)

/* Each fold cancels the low 64 bits: LO into MI, then MI into HI. */
VAES static inline __m512i reduce(__m512i lo, __m512i mi, __m512i hi)
{
	__m512i p = gfpoly();

	mi = XOR3(mi, _mm512_clmulepi64_epi128(p, lo, 0x01), SWAP64(lo));
	return XOR3(hi, _mm512_clmulepi64_epi128(p, mi, 0x01), SWAP64(mi));
}

VAES static inline __m512i gmul(__m512i a, __m512i b)
{
	__m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;

	MUL_ADD(a, b, lo, mi, hi);
	return reduce(lo, mi, hi);
}

VAES static inline __m128i fold_lanes(__m512i v)
{
	return _mm_ternarylogic_epi32(_mm_xor_si128(_mm512_castsi512_si128(v),
						    _mm512_extracti32x4_epi32(v, 1)),
				      _mm512_extracti32x4_epi32(v, 2),
				      _mm512_extracti32x4_epi32(v, 3), 0x96);
}

VAES static inline __m128i kx(__m128i a, __m128i t)
{
	a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
	a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
	a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
	return _mm_xor_si128(a, t);
}

#define KX_EVEN(i, rcon) \
	k[i] = kx(k[(i) - 2], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[(i) - 1], rcon), 0xff))
#define KX_ODD(i) \
	k[i] = kx(k[(i) - 2], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[(i) - 1], 0), 0xaa))

VAES static void setup(struct gcm_key *g, const uint8_t key[32])
{
	__m128i k[15], h, j, hlo;
	__m512i h1, h2, a, m, inc;
	uint64_t lo, hi, carry;

	k[0] = _mm_loadu_si128((const __m128i *)key);
	k[1] = _mm_loadu_si128((const __m128i *)(key + 16));
	KX_EVEN(2, 0x01);
	KX_ODD(3);
	KX_EVEN(4, 0x02);
	KX_ODD(5);
	KX_EVEN(6, 0x04);
	KX_ODD(7);
	KX_EVEN(8, 0x08);
	KX_ODD(9);
	KX_EVEN(10, 0x10);
	KX_ODD(11);
	KX_EVEN(12, 0x20);
	KX_ODD(13);
	KX_EVEN(14, 0x40);

	/* H = E(K, 0^128); J0 = nonce || 1 with the all-zero nonce. */
	h = k[0];
	j = _mm_xor_si128(_mm_set_epi32(0x01000000, 0, 0, 0), k[0]);
	for (int r = 1; r < 14; r++) {
		h = _mm_aesenc_si128(h, k[r]);
		j = _mm_aesenc_si128(j, k[r]);
	}
	h = _mm_aesenclast_si128(h, k[14]);
	g->j0 = _mm_aesenclast_si128(j, k[14]);
	for (int r = 0; r < 15; r++)
		g->rk[r] = _mm512_broadcast_i32x4(k[r]);

	/*
	 * H times x^-1: a 128-bit left shift by one, the polynomial added
	 * back if a bit falls off. Branch-free: H is secret.
	 */
	h = _mm_shuffle_epi8(h, _mm512_castsi512_si128(bswap_mask()));
	lo = (uint64_t)_mm_cvtsi128_si64(h);
	hi = (uint64_t)_mm_extract_epi64(h, 1);
	carry = 0 - (hi >> 63);
	hlo = _mm_set_epi64x((long long)(((hi << 1) | (lo >> 63)) ^ (carry & 0xc200000000000000ULL)),
			     (long long)((lo << 1) ^ (carry & 1)));

	h1 = _mm512_zextsi128_si512(hlo);
	h2 = gmul(h1, h1);
	/* [H^2, H^1] times [H^2, H^2] is [H^4, H^3]. */
	a = _mm512_inserti32x4(h2, hlo, 1);
	m = gmul(a, _mm512_broadcast_i32x4(_mm512_castsi512_si128(h2)));
	g->h[3] = _mm512_inserti64x4(m, _mm512_castsi512_si256(a), 1);
	inc = _mm512_broadcast_i32x4(_mm512_castsi512_si128(m));
	g->h[2] = gmul(g->h[3], inc);
	g->h[1] = gmul(g->h[2], inc);
	g->h[0] = gmul(g->h[1], inc);
	for (int i = 0; i < 4; i++)
		_mm512_store_si512((__m512i *)(g->hp + 64 * i), g->h[i]);
	memset(g->hp + 256, 0, 48);
}

/* Four counter blocks' keystream, but for the last round. */
VAES static inline __m512i aes_rounds(const struct gcm_key *g, __m512i x)
{
	x = _mm512_xor_si512(x, g->rk[0]);
#pragma GCC unroll 13
	for (int r = 1; r < 14; r++)
		x = _mm512_aesenc_epi128(x, g->rk[r]);
	return x;
}

/*
 * CTR and GHASH over @len bytes; inlined into seal and open, so @enc is a
 * constant in each. Counters are kept byte-reflected, the 32-bit counter
 * in each lane's low word (the nonce, all zero, above it): a shuffle gives
 * GCM's big-endian counter block. A seal's GHASH input is its own output,
 * so each group of sixteen blocks is hashed while the next one goes
 * through AES (c[] holds it until then).
 */
VAES static inline __attribute__((always_inline)) void
gcm_crypt(const struct gcm_key *g, bool enc, const uint8_t *in, size_t len, uint8_t *out,
	  __m128i *acc)
{
	const __m512i bs = bswap_mask();
	const __m512i four = _mm512_broadcast_i32x4(_mm_set_epi32(0, 0, 0, 4));
	__m512i ctr = _mm512_set_epi32(0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2);
	__m512i y = _mm512_zextsi128_si512(*acc), c[4];
	bool pending = false;
	size_t o = 0;

	for (; len - o >= 256; o += 256) {
		__m512i x[4], lo = _mm512_setzero_si512(), mi = lo, hi = lo;

#pragma GCC unroll 4
		for (int v = 0; v < 4; v++) {
			x[v] = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bs), g->rk[0]);
			ctr = _mm512_add_epi32(ctr, four);
		}
		if (pending) {
			c[0] = _mm512_xor_si512(c[0], y);
#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				MUL_ADD(c[v], g->h[v], lo, mi, hi);
		}
#pragma GCC unroll 13
		for (int r = 1; r < 14; r++)
#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				x[v] = _mm512_aesenc_epi128(x[v], g->rk[r]);
		if (pending)
			y = _mm512_zextsi128_si512(fold_lanes(reduce(lo, mi, hi)));
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++) {
			__m512i p = _mm512_loadu_si512(in + o + 64 * v);

			/* The last round adds p with the last round key. */
			x[v] = _mm512_aesenclast_epi128(x[v], _mm512_xor_si512(g->rk[14], p));
			_mm512_storeu_si512(out + o + 64 * v, x[v]);
			c[v] = _mm512_shuffle_epi8(enc ? x[v] : p, bs);
		}
		pending = true;
	}
	if (pending) {
		__m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;

		c[0] = _mm512_xor_si512(c[0], y);
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			MUL_ADD(c[v], g->h[v], lo, mi, hi);
		y = _mm512_zextsi128_si512(fold_lanes(reduce(lo, mi, hi)));
	}
	if (o < len) {
		/* n < 16 blocks left: block i is multiplied by H^(n - i). */
		const uint8_t *pw = g->hp + 256 - 16 * ((len - o + 15) / 16);
		__m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;

		for (; o < len; o += 64, pw += 64) {
			size_t left = len - o;
			__mmask64 k = left >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
			__m512i p = _mm512_maskz_loadu_epi8(k, in + o), x, d;

			x = _mm512_aesenclast_epi128(aes_rounds(g, _mm512_shuffle_epi8(ctr, bs)),
						     _mm512_xor_si512(g->rk[14], p));
			ctr = _mm512_add_epi32(ctr, four);
			_mm512_mask_storeu_epi8(out + o, k, x);
			/* GHASH pads the last block with zeros, not keystream. */
			d = _mm512_shuffle_epi8(enc ? _mm512_maskz_mov_epi8(k, x) : p, bs);
			d = _mm512_xor_si512(d, y);
			y = _mm512_setzero_si512();
			MUL_ADD(d, _mm512_loadu_si512(pw), lo, mi, hi);
		}
		y = _mm512_zextsi128_si512(fold_lanes(reduce(lo, mi, hi)));
	}
	*acc = _mm512_castsi512_si128(y);
}

/* The lengths block (no AAD), a last multiplication by H, E(K, J0). */
VAES static __m128i make_tag(const struct gcm_key *g, __m128i acc, size_t len)
{
	__m128i l = _mm_set_epi64x(0, (long long)((uint64_t)len * 8));
	__m512i y = gmul(_mm512_zextsi128_si512(_mm_xor_si128(acc, l)),
			 _mm512_zextsi128_si512(_mm_load_si128((const __m128i *)(g->hp + 240))));

	return _mm_xor_si128(_mm_shuffle_epi8(_mm512_castsi512_si128(y),
					      _mm512_castsi512_si128(bswap_mask())), g->j0);
}

VAES void vmrs_aesgcm_seal(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out)
{
	struct gcm_key g;
	__m128i acc = _mm_setzero_si128();

	setup(&g, key);
	gcm_crypt(&g, true, in, len, out, &acc);
	_mm_storeu_si128((__m128i *)(out + len), make_tag(&g, acc, len));
	/* The key schedule is the block key's; leave no copy on the stack. */
	explicit_bzero(&g, sizeof(g));
}

VAES int vmrs_aesgcm_open(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out)
{
	struct gcm_key g;
	__m128i acc = _mm_setzero_si128(), t;
	int ok;

	setup(&g, key);
	gcm_crypt(&g, false, in, len, out, &acc);
	/* All 16 bytes compared at once: no early exit on the first difference. */
	t = _mm_xor_si128(make_tag(&g, acc, len), _mm_loadu_si128((const __m128i *)(in + len)));
	ok = _mm_testz_si128(t, t);
	explicit_bzero(&g, sizeof(g));
	if (ok)
		return 0;
	memset(out, 0, len);
	return -1;
}

bool vmrs_aesgcm_wide(void)
{
	/* Atomic: a save's workers ask at the same time (all get one answer). */
	static _Atomic int have = -1;
	int h = atomic_load_explicit(&have, memory_order_relaxed);

	/* libgcc's checks include XCR0: the OS saves the zmm registers. */
	if (h < 0) {
		h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("vaes") &&
		    __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("aes") &&
		    __builtin_cpu_supports("pclmul") && !getenv("VMRESET_STORE_NO_AVX512");
		atomic_store_explicit(&have, h, memory_order_relaxed);
	}
	return h;
}
#else
bool vmrs_aesgcm_wide(void)
{
	return false;
}

void vmrs_aesgcm_seal(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out)
{
	(void)key, (void)in, (void)len, (void)out;
	abort();
}

int vmrs_aesgcm_open(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out)
{
	(void)key, (void)in, (void)len, (void)out;
	abort();
}
#endif
