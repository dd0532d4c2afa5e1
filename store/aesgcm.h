/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_AESGCM_H
#define VMRS_AESGCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * AES-256-GCM as a block seal uses it: a key of its own per message, the
 * all-zero 96-bit nonce, no additional data, the 16-byte tag after the
 * ciphertext. The same bytes as OpenSSL's EVP AES-256-GCM; 16 AES blocks
 * at a time in VAES and VPCLMULQDQ on 512-bit vectors.
 */

/*
 * Whether this CPU (and OS) runs it: VAES, VPCLMULQDQ, AVX-512 F/BW/VL
 * and the zmm state saved. VMRESET_STORE_NO_AVX512 makes it say no.
 */
bool vmrs_aesgcm_wide(void);

/* The longest message it takes: GCM's 32-bit block counter starts at 2. */
#define VMRS_AESGCM_MAX	(((size_t)1 << 36) - 64)

/* @out gets @len bytes of ciphertext, then the tag. Only if _wide(). */
void vmrs_aesgcm_seal(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out);
/*
 * Decrypts @len bytes of @in and checks the tag at @in + @len: 0, or -1
 * with @out zeroed (no unauthenticated plaintext is left behind).
 */
int vmrs_aesgcm_open(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out);

#endif
