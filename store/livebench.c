// SPDX-License-Identifier: GPL-2.0
/*
 * livebench.c - gc's live-block set (live.c) at scale: N random 32-byte
 * IDs added in manifest-sized batches, as gc reads manifests, then 1 M
 * lookups (half hits), as gc checks index entries; prints the time of
 * each phase, the peak resident memory (anonymous and file pages apart),
 * and the size of the spilled table.
 *
 *   store/livebench DIR [MILLIONS [BOUND [PER_MANIFEST]]]   (make -C store livebench)
 *
 * BOUND is VMRESET_STORE_GC_MEM's (bytes; default 256 MiB); a bound
 * above 32 x N keeps the set in memory, as gc did before.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

void vmrs_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ID number i, reproducibly (splitmix64): lookups can ask for known ones. */
static void gen(uint64_t i, uint8_t id[VMRS_HASH_LEN])
{
	for (int w = 0; w < 4; w++) {
		uint64_t z = i * 4 + (uint64_t)w + 0x9e3779b97f4a7c15ULL;

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		z ^= z >> 31;
		memcpy(id + 8 * w, &z, 8);
	}
}

/* VmHWM, RssAnon and RssFile of /proc/self/status, in MiB. */
static void mem(const char *when)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	printf("%s:", when);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6) || !strncmp(line, "RssAnon:", 8) ||
		    !strncmp(line, "RssFile:", 8)) {
			long kb = 0;
			char k[32];

			sscanf(line, "%31s %ld", k, &kb);
			printf(" %s %ld MiB", k, kb / 1024);
		}
	printf("\n");
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	uint64_t n = (argc > 2 ? strtoull(argv[2], NULL, 0) : 10) * 1000000ULL;
	uint64_t bound = argc > 3 ? strtoull(argv[3], NULL, 0) : 256ULL << 20;
	uint64_t per = argc > 4 ? strtoull(argv[4], NULL, 0) : 1000000ULL, probes = 1000000;
	uint8_t (*batch)[VMRS_HASH_LEN] = malloc(per * VMRS_HASH_LEN);
	struct vmrs_live *l;
	double t0, c0, t1, c1;
	uint64_t hits = 0;

	if (argc < 2 || !batch || !per || bound < 2048) {
		fprintf(stderr, "usage: livebench DIR [MILLIONS [BOUND [PER_MANIFEST]]]\n");
		return 2;
	}
	l = vmrs_live_new(argv[1], bound);
	if (!l)
		return 1;
	t0 = now();
	c0 = cpu();
	for (uint64_t i = 0; i < n; i += per) {
		uint64_t k = n - i < per ? n - i : per;

		for (uint64_t j = 0; j < k; j++)
			gen(i + j, batch[j]);
		if (vmrs_live_add(l, (const uint8_t (*)[VMRS_HASH_LEN])batch, k))
			return 1;
	}
	if (vmrs_live_seal(l))
		return 1;
	t1 = now();
	c1 = cpu();
	printf("%llu M IDs, bound %llu MiB, %llu per manifest: add + seal %.1f s (cpu %.1f s), %s,"
	       " table %.0f MiB\n", (unsigned long long)(n / 1000000),
	       (unsigned long long)(bound >> 20), (unsigned long long)per, t1 - t0, c1 - c0,
	       vmrs_live_spilled(l) ? "spilled" : "in memory",
	       (double)vmrs_live_table_bytes(l) / (1 << 20));
	mem("after add");
	t0 = now();
	c0 = cpu();
	for (uint64_t p = 0; p < probes; p++) {
		uint8_t id[VMRS_HASH_LEN];
		int r;

		/* Even probes: a known ID; odd ones: one never added. */
		gen(p & 1 ? n + p : (p * 7919) % n, id);
		r = vmrs_live_has(l, id);
		if (r < 0 || r != !(p & 1)) {
			fprintf(stderr, "livebench: wrong answer for probe %llu\n",
				(unsigned long long)p);
			return 1;
		}
		hits += (uint64_t)r;
	}
	t1 = now();
	c1 = cpu();
	printf("lookups: %.0f a second (cpu %.0f), %llu hits of %llu\n", probes / (t1 - t0),
	       probes / (c1 - c0), (unsigned long long)hits, (unsigned long long)probes);
	mem("after lookups");
	vmrs_live_free(l);
	free(batch);
	return 0;
}
