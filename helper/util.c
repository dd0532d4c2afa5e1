// SPDX-License-Identifier: LGPL-2.1-or-later OR MIT
/*
 * Strict parsers shared by the tools (see util.h). strtoull() alone would
 * accept " 5", "-1" (as 2^64-1), "010" (as 8) and "3x" (as 3 with the
 * caller forgetting to look at the end pointer); these accept none.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "util.h"

static int digit(char c, unsigned int base)
{
	int v;

	if (c >= '0' && c <= '9')
		v = c - '0';
	else if (c >= 'a' && c <= 'f')
		v = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		v = c - 'A' + 10;
	else
		return -1;
	return v < (int)base ? v : -1;
}

/* The number at the start of @s; *end points after its last digit. */
static int parse_prefix(const char *s, uint64_t *out, const char **end)
{
	unsigned int base = 10;
	uint64_t v = 0;
	int d, range = 0;

	*end = s;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (digit(*s, base) < 0)
		return -EINVAL;	/* *end stays at the start: not a number */
	for (; (d = digit(*s, base)) >= 0; s++) {
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			range = -ERANGE;
		v = v * base + (uint64_t)d;
	}
	*end = s;
	if (range)
		return range;
	*out = v;
	return 0;
}

int vmr_parse_u64(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v;
	int err = parse_prefix(s, &v, &end);

	if (err)
		return err == -ERANGE && !*end ? err : -EINVAL;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

int vmr_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	int err = vmr_parse_u64(s, &v);

	if (err)
		return err;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int vmr_parse_size(const char *s, uint64_t *out)
{
	static const char suffixes[] = "kmgt";
	const char *end, *p;
	unsigned int shift = 0;
	uint64_t v;
	int err = parse_prefix(s, &v, &end);

	/* A hex number eats "b" and "e"; they are not suffixes anyway. */
	if (*end && (p = strchr(suffixes, *end | 0x20))) {
		shift = 10 * (unsigned int)(p - suffixes + 1);
		end++;
		if (end[0] == 'i' && end[1] == 'B')
			end += 2;
	}
	if (*end)
		return -EINVAL;
	if (err)
		return err;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int vmr_cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, VMR_ID_LEN);
}

int vmr_verr(const char *prog, int status, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return status;
}

int vmr_err(const char *prog, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	status = vmr_verr(prog, status, fmt, ap);
	va_end(ap);
	return status;
}
