/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_CRYPTO_H
#define VMRS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define VMRS_HASH_LEN	32
#define VMRS_KEY_LEN	32
#define VMRS_TAG_LEN	16
#define VMRS_NONCE_LEN	12

/* Convergent key of one block: HMAC-SHA256(salt, SHA-256(plaintext)). */
void vmrs_block_key(const uint8_t salt[VMRS_HASH_LEN], const void *plain,
		    size_t len, uint8_t key[VMRS_KEY_LEN]);
/* Encrypt @len bytes into @out (len + VMRS_TAG_LEN bytes); ID = SHA-256(out). */
int vmrs_block_seal(const uint8_t key[VMRS_KEY_LEN], const void *plain,
		    size_t len, uint8_t *out, uint8_t id[VMRS_HASH_LEN]);
/* Decrypt and authenticate; @in is len + VMRS_TAG_LEN bytes. */
int vmrs_block_open(const uint8_t key[VMRS_KEY_LEN], const uint8_t *in,
		    size_t len, uint8_t *plain);

int vmrs_aead_seal(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const void *plain, size_t len,
		   uint8_t *out);
int vmrs_aead_open(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const uint8_t *in, size_t len,
		   uint8_t *plain);

void vmrs_sha256(const void *data, size_t len, uint8_t out[VMRS_HASH_LEN]);
void vmrs_hmac(const void *key, size_t key_len, const void *data, size_t len,
	       uint8_t out[VMRS_HASH_LEN]);
int vmrs_random(void *buf, size_t len);
void vmrs_hex(const uint8_t *in, size_t len, char *out);
int vmrs_unhex(const char *in, uint8_t *out, size_t len);

#endif
