/* SPDX-License-Identifier: LGPL-2.1-or-later OR MIT */
/*
 * Strict parsers and small helpers shared by vmresetctl and vmreset-store,
 * so that both tools accept exactly the same numbers and sizes.
 *
 * Not part of libvmreset's API: a program compiles helper/util.c in
 * itself (it needs only libc) and includes this header.
 *
 * Every parser takes the whole string: no leading or trailing blanks, no
 * sign, no trailing text. It returns 0 and stores the value, or -EINVAL
 * (not a number of that form) or -ERANGE (too large), leaving *out alone.
 */
#ifndef VMRESET_UTIL_H
#define VMRESET_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/*
 * An unsigned integer: decimal ("4096"; leading zeros do not make it
 * octal) or hexadecimal with 0x/0X ("0x1000").
 */
int vmr_parse_u64(const char *s, uint64_t *out);
int vmr_parse_u32(const char *s, uint32_t *out);

/*
 * A byte count: vmr_parse_u64() syntax, then optionally one of the
 * suffixes k, M, G, T (either case; powers of 1024), optionally followed
 * by "iB": "4096", "0x1000", "64k", "2M", "1G", "1GiB", "1t".
 */
int vmr_parse_size(const char *s, uint64_t *out);

/* The length of a content ID (SHA-256) in the snapshot store. */
#define VMR_ID_LEN	32

/* qsort()/bsearch() order of VMR_ID_LEN-byte IDs: memcmp() order. */
int vmr_cmp_id(const void *a, const void *b);

/*
 * "PROG: message" and a newline on stderr, for the tools' one error format;
 * returns @status so that a command can end with `return vmr_err(...)`.
 */
int vmr_err(const char *prog, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vmr_verr(const char *prog, int status, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#endif /* VMRESET_UTIL_H */
