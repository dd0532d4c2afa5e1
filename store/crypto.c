// SPDX-License-Identifier: GPL-2.0
/*
 * crypto.c - convergent block encryption and the manifest AEAD (OpenSSL EVP)
 *
 * A block key depends only on the plaintext and the salt, and each key
 * encrypts exactly one plaintext, so AES-256-GCM with a fixed all-zero nonce
 * never reuses a (key, nonce) pair on two different messages: the only
 * "reuse" is re-encrypting the same block, which gives the same ciphertext.
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/*
 * SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP,
 * but EVP re-creates its provider context on every digest init (three per
 * block here): 0.3-0.5 us of a 4 KiB block's 3.6 us name. The low-level
 * calls run the same SHA-NI code with none of that.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "aesgcm.h"
#include "crypto.h"
#include "sha256mb.h"

static const uint8_t zero_nonce[VMRS_NONCE_LEN];

static EVP_CIPHER *aes_gcm;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
	aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static bool fetched(void)
{
	pthread_once(&fetch_once, fetch);
	return aes_gcm;
}

struct vmrs_crypto {
	EVP_CIPHER_CTX *enc, *dec;
	uint8_t salt[VMRS_HASH_LEN];
};

void vmrs_crypto_free(struct vmrs_crypto *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->enc);
	EVP_CIPHER_CTX_free(c->dec);
	free(c);
}

struct vmrs_crypto *vmrs_crypto_new(const uint8_t salt[VMRS_HASH_LEN])
{
	struct vmrs_crypto *c = calloc(1, sizeof(*c));

	if (!c || !fetched())
		goto err;
	if (salt)
		memcpy(c->salt, salt, VMRS_HASH_LEN);
	c->enc = EVP_CIPHER_CTX_new();
	c->dec = EVP_CIPHER_CTX_new();
	if (!c->enc || !c->dec ||
	    !EVP_EncryptInit_ex2(c->enc, aes_gcm, NULL, NULL, NULL) ||
	    !EVP_DecryptInit_ex2(c->dec, aes_gcm, NULL, NULL, NULL))
		goto err;
	return c;
err:
	vmrs_crypto_free(c);
	return NULL;
}

/* OpenSSL's update calls take int lengths: feed them in slices. */
#define SLICE	(1U << 30)

/*
 * K and id are SHA-256 of fixed-length inputs (label, salt, H), where a
 * salt prefix is as good a PRF as HMAC (no length extension possible) at
 * a third of the cost. Each is two SHA-256 compressions (80 bytes plus
 * padding), the block itself 65 at 4 KiB.
 */
#define DERIVE_LEN	(16 + 2 * VMRS_HASH_LEN)
static const char klabel[16] = "vmreset-store K", ilabel[16] = "vmreset-store id";

static void derive_in(uint8_t in[DERIVE_LEN], const char label[16],
		      const uint8_t salt[VMRS_HASH_LEN], const uint8_t h[VMRS_HASH_LEN])
{
	memcpy(in, label, 16);
	memcpy(in + 16, salt, VMRS_HASH_LEN);
	memcpy(in + 16 + VMRS_HASH_LEN, h, VMRS_HASH_LEN);
}

int vmrs_block_name(struct vmrs_crypto *c, const void *plain, size_t len,
		    uint8_t key[VMRS_KEY_LEN], uint8_t id[VMRS_HASH_LEN])
{
	const uint8_t *p = plain;

	/* A batch of one: one derivation of K and id to keep right, not two. */
	return vmrs_block_name_many(c, &p, len, 1, (uint8_t (*)[VMRS_KEY_LEN])key,
				    (uint8_t (*)[VMRS_HASH_LEN])id);
}

int vmrs_block_name_many(struct vmrs_crypto *c, const uint8_t *const plain[], size_t len,
			 size_t n, uint8_t key[][VMRS_KEY_LEN], uint8_t id[][VMRS_HASH_LEN])
{
	uint8_t h[VMRS_NAME_BATCH][VMRS_HASH_LEN], in[2 * VMRS_NAME_BATCH][DERIVE_LEN];
	uint8_t out[2 * VMRS_NAME_BATCH][VMRS_HASH_LEN];
	const uint8_t *p[2 * VMRS_NAME_BATCH];

	for (size_t o = 0; o < n; o += VMRS_NAME_BATCH) {
		size_t m = n - o < VMRS_NAME_BATCH ? n - o : VMRS_NAME_BATCH;

		vmrs_sha256_many(plain + o, len, m, h);
		/* The K and id of the batch: 2m more messages of one length. */
		for (size_t k = 0; k < m; k++) {
			derive_in(in[k], klabel, c->salt, h[k]);
			derive_in(in[m + k], ilabel, c->salt, h[k]);
			p[k] = in[k];
			p[m + k] = in[m + k];
		}
		vmrs_sha256_many(p, DERIVE_LEN, 2 * m, out);
		for (size_t k = 0; k < m; k++) {
			memcpy(key[o + k], out[k], VMRS_KEY_LEN);
			memcpy(id[o + k], out[m + k], VMRS_HASH_LEN);
		}
	}
	return 0;
}

/*
 * AES-256-GCM of @len bytes, encrypting (@enc: the tag is written after
 * the output) or decrypting (the tag is read after the input, and a
 * wrong one fails the call).
 */
static int gcm(EVP_CIPHER_CTX *c, bool enc, const uint8_t *key, const uint8_t *nonce,
	       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t tag[VMRS_TAG_LEN];
	int n;

	/*
	 * A context already set up for AES-256-GCM only takes the new key:
	 * naming the cipher again resets and re-creates it, which at 4 KiB
	 * blocks cost a tenth of a save.
	 */
	if (!EVP_CipherInit_ex2(c, EVP_CIPHER_CTX_get0_cipher(c) ? NULL : aes_gcm, key, nonce,
				enc, NULL))
		return -1;
	for (size_t o = 0; o < aad_len; o += SLICE)
		if (!EVP_CipherUpdate(c, NULL, &n, aad + o,
				      (int)(aad_len - o < SLICE ? aad_len - o : SLICE)))
			return -1;
	for (size_t o = 0; o < len; o += SLICE)
		if (!EVP_CipherUpdate(c, out + o, &n, in + o,
				      (int)(len - o < SLICE ? len - o : SLICE)))
			return -1;
	if (enc)
		return EVP_CipherFinal_ex(c, out + len, &n) &&
		       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VMRS_TAG_LEN, out + len) ? 0 : -1;
	/* The ctrl wants a writable buffer. */
	memcpy(tag, in + len, VMRS_TAG_LEN);
	return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, VMRS_TAG_LEN, tag) &&
	       EVP_CipherFinal_ex(c, out + len, &n) > 0 ? 0 : -1;
}

int vmrs_block_seal_evp(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
			const void *plain, size_t len, uint8_t *out)
{
	return gcm(c->enc, true, key, zero_nonce, NULL, 0, plain, len, out);
}

int vmrs_block_open_evp(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
			const uint8_t *in, size_t len, uint8_t *plain)
{
	if (!gcm(c->dec, false, key, zero_nonce, NULL, 0, in, len, plain))
		return 0;
	/* EVP has written the plaintext before it checked the tag. */
	memset(plain, 0, len);
	return -1;
}

/*
 * Blocks go through aesgcm.c where the CPU has VAES (twice OpenSSL 3.0's
 * speed at 4 KiB, the same bytes); OpenSSL's EVP code otherwise.
 */
int vmrs_block_seal(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
		    const void *plain, size_t len, uint8_t *out)
{
	if (len <= VMRS_AESGCM_MAX && vmrs_aesgcm_wide()) {
		vmrs_aesgcm_seal(key, plain, len, out);
		return 0;
	}
	return vmrs_block_seal_evp(c, key, plain, len, out);
}

int vmrs_block_open(struct vmrs_crypto *c, const uint8_t key[VMRS_KEY_LEN],
		    const uint8_t *in, size_t len, uint8_t *plain)
{
	if (len <= VMRS_AESGCM_MAX && vmrs_aesgcm_wide())
		return vmrs_aesgcm_open(key, in, len, plain);
	return vmrs_block_open_evp(c, key, in, len, plain);
}

/* The manifest AEAD: a context of its own per call (manifests are few). */
static int aead(bool enc, const uint8_t *key, const uint8_t *nonce, const void *aad,
		size_t aad_len, const uint8_t *in, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *c;
	int ret;

	if (!fetched() || !(c = EVP_CIPHER_CTX_new()))
		return -1;
	ret = gcm(c, enc, key, nonce, aad, aad_len, in, len, out);
	EVP_CIPHER_CTX_free(c);
	return ret;
}

int vmrs_aead_seal(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const void *plain, size_t len,
		   uint8_t *out)
{
	return aead(true, key, nonce, aad, aad_len, plain, len, out);
}

int vmrs_aead_open(const uint8_t key[VMRS_KEY_LEN], const uint8_t nonce[VMRS_NONCE_LEN],
		   const void *aad, size_t aad_len, const uint8_t *in, size_t len,
		   uint8_t *plain)
{
	return aead(false, key, nonce, aad, aad_len, in, len, plain);
}

int vmrs_sha256(const void *data, size_t len, uint8_t out[VMRS_HASH_LEN])
{
	unsigned int n;

	/* EVP_Digest takes a size_t: no int slicing needed. */
	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL)) {
		memset(out, 0, VMRS_HASH_LEN);
		return -1;
	}
	return 0;
}

int vmrs_hmac(const void *key, size_t key_len, const void *data, size_t len,
	      uint8_t out[VMRS_HASH_LEN])
{
	size_t olen;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, data, len,
		       out, VMRS_HASH_LEN, &olen) || olen != VMRS_HASH_LEN) {
		memset(out, 0, VMRS_HASH_LEN);
		return -1;
	}
	return 0;
}

int vmrs_random(void *buf, size_t len)
{
	for (size_t o = 0; o < len; o += SLICE)
		if (RAND_bytes((uint8_t *)buf + o, (int)(len - o < SLICE ? len - o : SLICE)) != 1)
			return -1;
	return 0;
}

void vmrs_hex(const uint8_t *in, size_t len, char *out)
{
	size_t n;

	if (!OPENSSL_buf2hexstr_ex(out, 2 * len + 1, &n, in, len, '\0')) {
		out[0] = 0;
		return;
	}
	/* OpenSSL writes upper case; names and messages use lower case. */
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
}

int vmrs_unhex(const char *in, uint8_t *out, size_t len)
{
	size_t n;

	if (strlen(in) != 2 * len)
		return -1;
	return OPENSSL_hexstr2buf_ex(out, len, &n, in, '\0') && n == len ? 0 : -1;
}
