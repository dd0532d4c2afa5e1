/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_CRYPTO_H
#define VMRS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMRS_HASH_LEN	32
#define VMRS_KEY_LEN	32
#define VMRS_TAG_LEN	16
#define VMRS_NONCE_LEN	12

/*
 * One per thread: the digest, cipher and MAC are fetched once per process
 * and the contexts re-initialised per block, not allocated per block.
 */
struct vmrs_crypto;

struct vmrs_crypto *vmrs_crypto_new(const uint8_t salt[VMRS_HASH_LEN]);
void vmrs_crypto_free(struct vmrs_crypto *c);

/*
 * Convergent block naming, one SHA-256 pass over the plaintext:
 *   H  = SHA-256(P)
 *   K  = SHA-256("vmreset-store K\0" || salt || H)
 *   id = SHA-256("vmreset-store id" || salt || H)
 */
int vmrs_block_name(struct vmrs_crypto *c, const void *plain, size_t len,
		    uint8_t key[VMRS_KEY_LEN], uint8_t id[VMRS_HASH_LEN]);
/*
 * vmrs_block_name() of @n blocks of @len bytes each, @plain[i] named into
 * @key[i] and @id[i]; with AVX-512, 16 blocks are hashed side by side.
 */
#define VMRS_NAME_BATCH	16
int vmrs_block_name_many(struct vmrs_crypto *c, const uint8_t *const plain[], size_t len,
			 size_t n, uint8_t key[][VMRS_KEY_LEN], uint8_t id[][VMRS_HASH_LEN]);
/*
 * Encrypt @len bytes into @out (len + VMRS_TAG_LEN bytes): AES-256-GCM,
 * the all-zero nonce, no AAD (aesgcm.c with VAES, else OpenSSL EVP).
 */
int vmrs_block_seal(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
		    const void *plain, size_t len, uint8_t *out);
/*
 * Decrypt and authenticate; @in is len + VMRS_TAG_LEN bytes. On failure
 * @plain is all zeros: nothing unauthenticated is left in it.
 */
int vmrs_block_open(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
		    const uint8_t *in, size_t len, uint8_t *plain);
/* The same two through OpenSSL's EVP whatever the CPU (cryptobench's reference). */
int vmrs_block_seal_evp(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
			const void *plain, size_t len, uint8_t *out);
int vmrs_block_open_evp(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
			const uint8_t *in, size_t len, uint8_t *plain);

int vmrs_aead_seal(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const void *plain, size_t len,
		   uint8_t *out);
int vmrs_aead_open(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const uint8_t *in, size_t len,
		   uint8_t *plain);

/* 0, or -1 if OpenSSL failed (the output is then all zeros: never use it). */
int vmrs_sha256(const void *data, size_t len, uint8_t out[VMRS_HASH_LEN]);
int vmrs_hmac(const void *key, size_t key_len, const void *data, size_t len,
	       uint8_t out[VMRS_HASH_LEN]);
int vmrs_random(void *buf, size_t len);
/* Lower-case hex of @len bytes into @out (2 * len + 1 bytes). */
void vmrs_hex(const uint8_t *in, size_t len, char *out);
/* Exactly 2 * @len hex digits, no separators. */
int vmrs_unhex(const char *in, uint8_t *out, size_t len);

#endif
