/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_SHA256MB_H
#define VMRS_SHA256MB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMRS_SHA256_LEN	32

/*
 * SHA-256 of @n messages of @len bytes each, @msg[i] into @out[i]: 16 at
 * a time with AVX-512 where the CPU has it, else one by one (OpenSSL,
 * SHA-NI where present). The same hashes either way.
 */
void vmrs_sha256_many(const uint8_t *const msg[], size_t len, size_t n,
		      uint8_t out[][VMRS_SHA256_LEN]);
/* Whether vmrs_sha256_many() runs 16 lanes wide on this CPU. */
bool vmrs_sha256_many_wide(void);

#endif
