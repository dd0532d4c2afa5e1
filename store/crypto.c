// SPDX-License-Identifier: GPL-2.0
/*
 * crypto.c - convergent block encryption and the manifest AEAD (OpenSSL EVP)
 *
 * A block key depends only on the plaintext and the salt, and each key
 * encrypts exactly one plaintext, so AES-256-GCM with a fixed all-zero nonce
 * never reuses a (key, nonce) pair on two different messages: the only
 * "reuse" is re-encrypting the same block, which gives the same ciphertext.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "crypto.h"

static const uint8_t zero_nonce[VMRS_NONCE_LEN];

void vmrs_sha256(const void *data, size_t len, uint8_t out[VMRS_HASH_LEN])
{
	SHA256(data, len, out);
}

void vmrs_hmac(const void *key, size_t key_len, const void *data, size_t len,
	       uint8_t out[VMRS_HASH_LEN])
{
	unsigned int olen = VMRS_HASH_LEN;

	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &olen);
}

void vmrs_block_key(const uint8_t salt[VMRS_HASH_LEN], const void *plain,
		    size_t len, uint8_t key[VMRS_KEY_LEN])
{
	uint8_t h[VMRS_HASH_LEN];

	vmrs_sha256(plain, len, h);
	vmrs_hmac(salt, VMRS_HASH_LEN, h, sizeof(h), key);
}

int vmrs_aead_seal(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const void *plain, size_t len,
		   uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n, ok;

	if (!c)
		return -1;
	ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) &&
	     (!aad_len || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len)) &&
	     EVP_EncryptUpdate(c, out, &n, plain, (int)len) &&
	     EVP_EncryptFinal_ex(c, out + n, &n) &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VMRS_TAG_LEN, out + len);
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

int vmrs_aead_open(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const uint8_t *in, size_t len,
		   uint8_t *plain)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t tag[VMRS_TAG_LEN];
	int n, ok;

	if (!c)
		return -1;
	/* The ctrl wants a writable buffer. */
	memcpy(tag, in + len, VMRS_TAG_LEN);
	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) &&
	     (!aad_len || EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len)) &&
	     EVP_DecryptUpdate(c, plain, &n, in, (int)len) &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, VMRS_TAG_LEN, tag) &&
	     EVP_DecryptFinal_ex(c, plain + n, &n) > 0;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

int vmrs_block_seal(const uint8_t key[VMRS_KEY_LEN], const void *plain,
		    size_t len, uint8_t *out, uint8_t id[VMRS_HASH_LEN])
{
	if (vmrs_aead_seal(key, zero_nonce, NULL, 0, plain, len, out))
		return -1;
	vmrs_sha256(out, len + VMRS_TAG_LEN, id);
	return 0;
}

int vmrs_block_open(const uint8_t key[VMRS_KEY_LEN], const uint8_t *in,
		    size_t len, uint8_t *plain)
{
	return vmrs_aead_open(key, zero_nonce, NULL, 0, in, len, plain);
}

int vmrs_random(void *buf, size_t len)
{
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

void vmrs_hex(const uint8_t *in, size_t len, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * len] = 0;
}

static int nib(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int vmrs_unhex(const char *in, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int h = nib(in[2 * i]), l = h < 0 ? -1 : nib(in[2 * i + 1]);

		if (l < 0)
			return -1;
		out[i] = (uint8_t)(h << 4 | l);
	}
	return in[2 * len] ? -1 : 0;
}
