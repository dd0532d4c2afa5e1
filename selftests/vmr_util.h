/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for vmresetfs selftests: a scratch mount, files, and thin ioctl
 * wrappers that return the raw ioctl result (the test asserts on it).
 */
#ifndef _VMR_UTIL_H
#define _VMR_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/vmreset.h>

#define PG		4096UL

/* Mount a fresh vmresetfs on a new directory under /tmp. */
static inline int vmr_mount(char dir[64], const char *opts)
{
	strcpy(dir, "/tmp/vmrXXXXXX");
	if (!mkdtemp(dir))
		return -1;
	return mount("none", dir, "vmresetfs", 0, opts);
}

static inline void vmr_umount(const char *dir)
{
	umount2(dir, MNT_DETACH);
	rmdir(dir);
}

static inline int vmr_file(const char *dir, const char *name, off_t size)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0 && ftruncate(fd, size)) {
		close(fd);
		return -1;
	}
	return fd;
}

static inline void *vmr_map(int fd, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

static inline int vmr_snapshot(int fd, uint64_t *dirty)
{
	struct vmreset_snapshot s = { 0 };
	int ret = ioctl(fd, VMRESET_IOC_SNAPSHOT, &s);

	if (!ret && dirty)
		*dirty = s.dirty_pages;
	return ret;
}

static inline int vmr_revert(int fd, uint64_t *reverted, uint64_t *kept)
{
	struct vmreset_revert r = { 0 };
	int ret = ioctl(fd, VMRESET_IOC_REVERT, &r);

	if (!ret && reverted)
		*reverted = r.reverted_pages;
	if (!ret && kept)
		*kept = r.preserved_pages;
	return ret;
}

static inline int vmr_preserve(int fd, uint32_t op, uint64_t off, uint64_t len)
{
	struct vmreset_preserve p = { .op = op, .offset = off, .length = len };

	return ioctl(fd, VMRESET_IOC_PRESERVE, &p);
}

static inline int vmr_stats(int fd, struct vmreset_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return ioctl(fd, VMRESET_IOC_STATS, st);
}

/* /sys/module/vmreset/parameters/@name, opened with @mode. */
static inline FILE *vmr_param_open(const char *name, const char *mode)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/vmreset/parameters/%s", name);
	return fopen(path, mode);
}

/* Write @v to the module parameter @name (root only). */
static inline int vmr_set_param(const char *name, unsigned int v)
{
	FILE *f = vmr_param_open(name, "w");
	int ret;

	if (!f)
		return -1;
	ret = fprintf(f, "%u\n", v) > 0 ? 0 : -1;
	return fclose(f) || ret ? -1 : 0;
}

/* Read the module parameter @name into *@v. */
static inline int vmr_get_param(const char *name, unsigned int *v)
{
	FILE *f = vmr_param_open(name, "r");
	int ret;

	if (!f)
		return -1;
	ret = fscanf(f, "%u", v) == 1 ? 0 : -1;
	fclose(f);
	return ret;
}

/* echo 2 > /proc/sys/vm/drop_caches: every shrinker, kept copies too. */
static inline int vmr_drop_caches(void)
{
	FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
	int ret;

	if (!f)
		return -1;
	ret = fputs("2\n", f) >= 0 ? 0 : -1;
	return fclose(f) || ret ? -1 : 0;
}

/* List all ranges (DIRTY or PRESERVE_LIST), @per_call at a time. */
static inline int vmr_list(int fd, unsigned long cmd, struct vmreset_range *out,
			   unsigned int max, unsigned int per_call)
{
	struct vmreset_range_list l = { 0 };
	unsigned int n = 0;

	do {
		l.ranges = (uintptr_t)(out + n);
		l.nr = per_call < max - n ? per_call : max - n;
		if (ioctl(fd, cmd, &l))
			return -1;
		n += l.nr;
	} while (l.cursor != VMRESET_CURSOR_END && n < max);
	return n;
}

/* A /proc/meminfo field in kB, or -1. */
static inline long meminfo(const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long val = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			val = strtol(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return val;
}

/* The pattern a page holds before a test changes it. */
static inline uint64_t pat(uint64_t seed, uint64_t idx)
{
	return (seed * 0x9e3779b97f4a7c15ULL) ^ idx;
}

/*
 * A page's content as the tests write it: its first word, zeros, and its
 * last word. Only the two words are stored (so that dirtying a page costs
 * what a guest's store does); the tests' files start as holes, so the rest
 * is zero until something writes it.
 */
static inline void fill_page(void *base, uint64_t idx, uint64_t val)
{
	uint64_t *p = (uint64_t *)((char *)base + idx * PG);

	p[0] = val;
	p[PG / 8 - 1] = ~val;
}

/*
 * The whole page is what fill_page() makes of a zero page: a page that is
 * right at both ends but torn, shifted or partly another page's in between
 * does not pass.
 */
static inline int page_has(const void *base, uint64_t idx, uint64_t val)
{
	const uint64_t *p = (const uint64_t *)((const char *)base + idx * PG);

	if (p[0] != val || p[PG / 8 - 1] != ~val)
		return 0;
	for (size_t i = 1; i < PG / 8 - 1; i++)
		if (p[i])
			return 0;
	return 1;
}

/* For timing: microseconds on CLOCK_MONOTONIC. */
static inline double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* qsort() comparator for doubles, for medians. */
static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

#endif /* _VMR_UTIL_H */
