// SPDX-License-Identifier: GPL-2.0
/*
 * cryptobench.c - the crypto ceiling of this store's design on one core:
 * what naming, sealing and opening a block cost with the very calls a
 * save and a load make (crypto.c), a new key per block included, which
 * `openssl speed` (one key for the whole run) leaves out.
 *
 *   store/cryptobench [BLOCK_SIZE [MIB]]
 *
 * Prints GB/s for: name (SHA-256 of the block, then K and id; one block at
 * a time and, as a save does, 16 at a time), seal
 * (AES-256-GCM with the block's own key), save = name + seal, open
 * (decrypt and authenticate), and the same with one key for all blocks
 * (what `openssl speed -evp aes-256-gcm` measures), and naming, sealing
 * and opening through EVP as the store did before (side by side in the
 * same run).
 *
 *   store/cryptobench --check   compares the naming, sealing and opening
 *                               with EVP's
 *   store/cryptobench --aead [BLOCK_SIZE]   the AEADs OpenSSL offers, per block
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "aesgcm.h"
#include "crypto.h"
#include "sha256mb.h"

/*
 * The naming as crypto.c did it until session 7, through EVP: the
 * reference the low-level code is checked against (--check) and timed
 * against in the same run.
 */
static int evp_sha(EVP_MD_CTX *md, const EVP_MD *t, const void *a, size_t alen,
		   const void *b, size_t blen, const void *c, size_t clen, uint8_t *out)
{
	unsigned int n;

	return EVP_DigestInit_ex2(md, t, NULL) && EVP_DigestUpdate(md, a, alen) &&
	       EVP_DigestUpdate(md, b, blen) && EVP_DigestUpdate(md, c, clen) &&
	       EVP_DigestFinal_ex(md, out, &n) ? 0 : -1;
}

static int evp_name(EVP_MD_CTX *md, const EVP_MD *t, const uint8_t *salt, const void *p,
		    size_t len, uint8_t *key, uint8_t *id)
{
	uint8_t h[VMRS_HASH_LEN];

	return evp_sha(md, t, p, len, "", 0, "", 0, h) ||
	       evp_sha(md, t, "vmreset-store K", 16, salt, VMRS_HASH_LEN, h, VMRS_HASH_LEN, key) ||
	       evp_sha(md, t, "vmreset-store id", 16, salt, VMRS_HASH_LEN, h, VMRS_HASH_LEN, id);
}

/*
 * vmrs_block_seal()/open() against EVP: every length from 0 to 9,000 at
 * odd offsets (each tail of 1 to 15 AES blocks and of 1 to 15 bytes), a
 * new key each; every open of a changed byte (ciphertext or tag) fails
 * and leaves zeros.
 */
static int check_gcm(struct vmrs_crypto *c)
{
	static uint8_t in[9001 + 7], a[9000 + 32], b[9000 + 32], d[9000 + 32];
	uint8_t key[VMRS_KEY_LEN];

	if (vmrs_random(in, sizeof(in)))
		return 1;
	for (size_t len = 0; len <= 9000; len++) {
		const uint8_t *p = in + 1 + len % 7;
		size_t flip;

		if (vmrs_random(key, sizeof(key)) || vmrs_block_seal_evp(c, key, p, len, a) ||
		    vmrs_block_seal(c, key, p, len, b + 3) || memcmp(a, b + 3, len + VMRS_TAG_LEN)) {
			fprintf(stderr, "cryptobench: block seal differs from EVP's at length %zu\n",
				len);
			return 1;
		}
		if (vmrs_block_open(c, key, b + 3, len, d + 5) || memcmp(d + 5, p, len) ||
		    vmrs_block_open_evp(c, key, b + 3, len, d)) {
			fprintf(stderr, "cryptobench: block open fails at length %zu\n", len);
			return 1;
		}
		/* A byte of the ciphertext, then of the tag. */
		for (int t = 0; t < 2; t++) {
			flip = t || !len ? len + len % VMRS_TAG_LEN : (len * 7919) % len;
			b[3 + flip] ^= (uint8_t)(1 << (len % 8));
			memset(d + 5, 0xa5, len);
			if (!vmrs_block_open(c, key, b + 3, len, d + 5)) {
				fprintf(stderr, "cryptobench: block open of length %zu succeeded with"
					" byte %zu changed\n", len, flip);
				return 1;
			}
			for (size_t k = 0; k < len; k++)
				if (d[5 + k]) {
					fprintf(stderr, "cryptobench: a failed block open of length %zu"
						" left byte %zu behind\n", len, k);
					return 1;
				}
			b[3 + flip] ^= (uint8_t)(1 << (len % 8));
		}
	}
	printf("block seals match EVP's AES-256-GCM for lengths 0 to 9000, and opens of changed"
	       " bytes fail (%s)\n", vmrs_aesgcm_wide() ? "VAES, 16 AES blocks at a time" :
	       "no VAES: OpenSSL");
	return 0;
}

/* vmrs_block_name() against the EVP reference, lengths 0 to 9,000. */
static int check(EVP_MD_CTX *md, const EVP_MD *t)
{
	static uint8_t big[1 << 18];
	uint8_t salt[VMRS_HASH_LEN], buf[9001], k1[32], i1[32], k2[32], i2[32];
	struct vmrs_crypto *c;

	if (vmrs_random(salt, sizeof(salt)) || vmrs_random(buf, sizeof(buf)) ||
	    vmrs_random(big, sizeof(big)) ||
	    !(c = vmrs_crypto_new(salt)))
		return 1;
	for (size_t len = 0; len <= 9000; len++)
		if (vmrs_block_name(c, buf, len, k1, i1) || evp_name(md, t, salt, buf, len, k2, i2) ||
		    memcmp(k1, k2, 32) || memcmp(i1, i2, 32)) {
			fprintf(stderr, "cryptobench: block name differs from EVP's at length %zu\n",
				len);
			return 1;
		}
	/*
	 * Batches as a save makes them: 1 to 33 blocks of one length (two
	 * wide batches and a rest), each block at its own odd offset.
	 */
	for (size_t len = 0; len <= 9000; len += len < 300 ? 1 : 61)
		for (size_t n = 1; n <= 33; n += n < 20 ? 1 : 13) {
			const uint8_t *p[33];
			uint8_t k[33][32], i[33][32];

			for (size_t l = 0; l < n; l++)
				p[l] = big + (l * 4099 + len) % (sizeof(big) - 9000);
			if (vmrs_block_name_many(c, p, len, n, k, i))
				return 1;
			for (size_t l = 0; l < n; l++)
				if (evp_name(md, t, salt, p[l], len, k2, i2) ||
				    memcmp(k[l], k2, 32) || memcmp(i[l], i2, 32)) {
					fprintf(stderr, "cryptobench: block %zu of %zu named 16 at a time"
						" differs from EVP's at length %zu\n", l, n, len);
					return 1;
				}
		}
	if (check_gcm(c))
		return 1;
	vmrs_crypto_free(c);
	printf("block names match EVP's for lengths 0 to 9000, one at a time and in batches"
	       " of 1 to 33 (%s)\n", vmrs_sha256_many_wide() ? "AVX-512, 16 lanes" :
	       "no AVX-512: one at a time");
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * The AEADs OpenSSL offers, each call as a block seal makes it (a new key,
 * the fixed nonce, EVP init, update, final, tag): which one a store could
 * use instead of AES-256-GCM. ns per block of @bs over 64 MiB of random
 * data, the three interleaved a megabyte at a time (this VM's speed
 * drifts by tens of percent within a minute).
 */
static int aeads(size_t bs)
{
	static const char *const names[] = { "AES-256-GCM", "ChaCha20-Poly1305", "AES-256-OCB" };
	static const uint8_t nonce[VMRS_NONCE_LEN];
	enum { NA = sizeof(names) / sizeof(names[0]) };
	size_t n = bs && bs <= (1 << 20) ? (1 << 20) / bs : 0;
	uint8_t *in = malloc(1 << 20), *out = malloc(n * (bs + VMRS_TAG_LEN) + 1), key[32] = { 0 };
	EVP_CIPHER_CTX *c[NA];
	double t[NA] = { 0 };

	if (!n || !in || !out || vmrs_random(in, 1 << 20))
		return 1;
	for (size_t a = 0; a < NA; a++) {
		EVP_CIPHER *ci = EVP_CIPHER_fetch(NULL, names[a], NULL);

		c[a] = EVP_CIPHER_CTX_new();
		if (!ci || !c[a] || !EVP_EncryptInit_ex2(c[a], ci, NULL, NULL, NULL))
			return 1;
		EVP_CIPHER_free(ci);
	}
	for (size_t r = 0; r < 64; r++)
		for (size_t a = 0; a < NA; a++) {
			double t0 = now();

			for (size_t k = 0; k < n; k++) {
				uint8_t *o = out + k * (bs + VMRS_TAG_LEN);
				int l;

				key[0] = (uint8_t)k;
				key[1] = (uint8_t)r;
				if (!EVP_EncryptInit_ex2(c[a], NULL, key, nonce, NULL) ||
				    !EVP_EncryptUpdate(c[a], o, &l, in + k * bs, (int)bs) ||
				    !EVP_EncryptFinal_ex(c[a], o + bs, &l) ||
				    !EVP_CIPHER_CTX_ctrl(c[a], EVP_CTRL_AEAD_GET_TAG, VMRS_TAG_LEN, o + bs))
					return 1;
			}
			t[a] += now() - t0;
		}
	printf("block %zu, a new key per block:", bs);
	for (size_t a = 0; a < NA; a++) {
		printf(" %s %.0f ns (%.2f GB/s)%s", names[a], t[a] * 1e9 / (64.0 * n),
		       64.0 * n * bs / t[a] / 1e9, a + 1 < NA ? "," : "\n");
		EVP_CIPHER_CTX_free(c[a]);
	}
	free(in);
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!sha || !md)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "--check"))
		return check(md, sha);
	if (argc > 1 && !strcmp(argv[1], "--aead"))
		return aeads(argc > 2 ? strtoul(argv[2], NULL, 0) : 4096);

	size_t bs = argc > 1 ? strtoul(argv[1], NULL, 0) : 4096;
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 256;
	/*
	 * A directory store's save works through a 256 KiB chunk at a time
	 * (cmd.c), which stays in L2 with its sealed copy: that much, reused.
	 */
	size_t chunk = 256 << 10, n = chunk / bs, rounds = mib * 4;
	uint8_t salt[VMRS_HASH_LEN] = { 1 };
	uint8_t *plain = malloc(chunk), *sealed = malloc(n * (bs + VMRS_TAG_LEN));
	uint8_t (*key)[VMRS_KEY_LEN] = malloc(n * VMRS_KEY_LEN), id[VMRS_HASH_LEN];
	uint8_t idb[VMRS_NAME_BATCH][VMRS_HASH_LEN];
	struct vmrs_crypto *c = vmrs_crypto_new(salt);
	double t, te = 0, tn = 0, tm = 0, ts = 0, to = 0, ts1 = 0, to1 = 0, tse = 0, toe = 0;

	double gb = (double)rounds * chunk / 1e9;

	if (!bs || bs > chunk || chunk % bs || !plain || !sealed || !key || !c ||
	    vmrs_random(plain, chunk)) {
		fprintf(stderr, "usage: cryptobench [BLOCK_SIZE (divides 256 KiB)] [MIB]\n");
		return 2;
	}
	for (size_t r = 0; r < rounds; r++) {
		plain[0] = (uint8_t)r;	/* new keys every round */
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_name(c, plain + k * bs, bs, key[k], id))
				return 1;
		tn += now() - t;
		t = now();
		for (size_t k = 0; k < n; k += VMRS_NAME_BATCH) {
			const uint8_t *p[VMRS_NAME_BATCH];
			size_t m = n - k < VMRS_NAME_BATCH ? n - k : VMRS_NAME_BATCH;

			for (size_t l = 0; l < m; l++)
				p[l] = plain + (k + l) * bs;
			if (vmrs_block_name_many(c, p, bs, m, key + k, idb))
				return 1;
		}
		tm += now() - t;
		t = now();
		for (size_t k = 0; k < n; k++)
			if (evp_name(md, sha, salt, plain + k * bs, bs, key[k], id))
				return 1;
		te += now() - t;
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_seal(c, key[k], plain + k * bs, bs,
					    sealed + k * (bs + VMRS_TAG_LEN)))
				return 1;
		ts += now() - t;
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_open(c, key[k], sealed + k * (bs + VMRS_TAG_LEN), bs,
					    plain + k * bs))
				return 1;
		to += now() - t;
		/* OpenSSL's own AES-256-GCM: the store's path without VAES, as before session 9. */
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_seal_evp(c, key[k], plain + k * bs, bs,
				    sealed + k * (bs + VMRS_TAG_LEN)))
				return 1;
		tse += now() - t;
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_open_evp(c, key[k], sealed + k * (bs + VMRS_TAG_LEN), bs,
				    plain + k * bs))
				return 1;
		toe += now() - t;
		/*
		 * One key for every block: the key schedule and GHASH set-up
		 * once. In the same round as the per-block keys, since this
		 * VM's speed drifts within a run (a loop of its own after
		 * all rounds gave key set-ups of -800 to +1,000 ns).
		 */
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_seal(c, key[0], plain + k * bs, bs,
					    sealed + k * (bs + VMRS_TAG_LEN)))
				return 1;
		ts1 += now() - t;
		t = now();
		for (size_t k = 0; k < n; k++)
			if (vmrs_block_open(c, key[0], sealed + k * (bs + VMRS_TAG_LEN), bs,
					    plain + k * bs))
				return 1;
		to1 += now() - t;
	}
	double per = 1e9 / ((double)n * rounds);

	printf("block %zu: name %.3f (16 at a time%s: %.3f), seal %.3f, save (name 16 at a time +"
	       " seal) %.3f, open %.3f GB/s (AES-GCM: %s); one key for all: seal %.3f, open %.3f"
	       " GB/s; OpenSSL's AES-GCM: seal %.3f, open %.3f GB/s; per block: name %.0f ns (16"
	       " at a time: %.0f ns), seal %.0f ns (OpenSSL %.0f ns), open %.0f ns (OpenSSL %.0f"
	       " ns), key set-up ~%.0f ns; name through EVP (before session 7) %.0f ns\n",
	       bs, gb / tn, vmrs_sha256_many_wide() ? ", AVX-512" : ", no AVX-512", gb / tm,
	       gb / ts, gb / (tm + ts), gb / to, vmrs_aesgcm_wide() ? "VAES" : "OpenSSL",
	       gb / ts1, gb / to1, gb / tse, gb / toe, tn * per, tm * per, ts * per, tse * per,
	       to * per, toe * per, (ts - ts1) * per, te * per);
	vmrs_crypto_free(c);
	free(plain);
	free(sealed);
	free(key);
	return 0;
}
