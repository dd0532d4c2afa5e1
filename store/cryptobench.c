// SPDX-License-Identifier: GPL-2.0
/*
 * cryptobench.c - the crypto ceiling of this store's design on one core:
 * what naming, sealing and opening a block cost with the very calls a
 * save and a load make (crypto.c), a new key per block included, which
 * `openssl speed` (one key for the whole run) leaves out.
 *
 *   store/cryptobench [BLOCK_SIZE [MIB]]
 *
 * Prints GB/s for: name (SHA-256 of the block, then K and id), seal
 * (AES-256-GCM with the block's own key), save = name + seal, open
 * (decrypt and authenticate), and the same with one key for all blocks
 * (what `openssl speed -evp aes-256-gcm` measures).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t bs = argc > 1 ? strtoul(argv[1], NULL, 0) : 4096;
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 0) : 256;
	/* A save works through a 1 MiB chunk at a time: that much, reused. */
	size_t chunk = 1 << 20, n = chunk / bs, rounds = mib;
	uint8_t salt[VMRS_HASH_LEN] = { 1 };
	uint8_t *plain = malloc(chunk), *sealed = malloc(n * (bs + VMRS_TAG_LEN));
	uint8_t (*key)[VMRS_KEY_LEN] = malloc(n * VMRS_KEY_LEN), id[VMRS_HASH_LEN];
	struct vmrs_crypto *c = vmrs_crypto_new(salt);
	double t, tn = 0, ts = 0, to = 0, ts1 = 0, to1 = 0, gb = (double)mib * chunk / 1e9;

	if (!bs || bs > chunk || chunk % bs || !plain || !sealed || !key || !c ||
	    vmrs_random(plain, chunk)) {
		fprintf(stderr, "usage: cryptobench [BLOCK_SIZE (divides 1 MiB)] [MIB]\n");
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
	}
	/* One key for every block: the key schedule and GHASH set-up once. */
	for (size_t r = 0; r < rounds; r++) {
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
	printf("block %zu: name %.3f, seal %.3f, save (name + seal) %.3f, open %.3f GB/s;"
	       " one key for all: seal %.3f, open %.3f GB/s; per block: name %.0f ns, seal %.0f ns,"
	       " open %.0f ns, key set-up ~%.0f ns\n",
	       bs, gb / tn, gb / ts, gb / (tn + ts), gb / to, gb / ts1, gb / to1,
	       tn * 1e9 / ((double)n * rounds), ts * 1e9 / ((double)n * rounds),
	       to * 1e9 / ((double)n * rounds), (ts - ts1) * 1e9 / ((double)n * rounds));
	vmrs_crypto_free(c);
	free(plain);
	free(sealed);
	free(key);
	return 0;
}
