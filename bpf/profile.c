// SPDX-License-Identifier: LGPL-2.1-or-later OR MIT
/*
 * Working-set profiles: the file format (docs/bpf.md) and applying one to
 * a memslot.
 *
 *   vmreset-profile 1
 *   # comments and blank lines are ignored
 *   r 0x40000000 4        pages read (never written): GPA, page count
 *   w 0x40004000 1        pages written (and maybe read)
 *
 * Runs are ascending, do not overlap, and adjacent runs differ in kind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include "vmreset_bpf.h"

#define PG		4096ULL
#define EXPORT		__attribute__((visibility("default")))

/* Linux 6.10 (include/uapi/linux/kvm.h); bookworm's headers predate it. */
#ifndef KVM_PRE_FAULT_MEMORY
struct kvm_pre_fault_memory {
	__u64 gpa;
	__u64 size;
	__u64 flags;
	__u64 padding[5];
};
#define KVM_PRE_FAULT_MEMORY	_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#define MADV_POPULATE_WRITE	23
#endif

EXPORT void vmreset_profile_init(struct vmreset_profile *p)
{
	memset(p, 0, sizeof(*p));
}

EXPORT void vmreset_profile_free(struct vmreset_profile *p)
{
	free(p->runs);
	free(p->raw);
	vmreset_profile_init(p);
}

EXPORT int vmreset_profile_add(struct vmreset_profile *p, uint64_t gpa, uint32_t flags)
{
	if (!flags || (flags & ~(VMRESET_PROF_READ | VMRESET_PROF_WRITE)))
		return -EINVAL;
	if (p->nraw == p->capraw) {
		size_t cap = p->capraw ? p->capraw * 2 : 1024;
		uint64_t *n = realloc(p->raw, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		p->raw = n;
		p->capraw = cap;
	}
	p->raw[p->nraw++] = (gpa / PG) << 2 | flags;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a >> 2, y = *(const uint64_t *)b >> 2;

	return x < y ? -1 : x > y;
}

static int add_run(struct vmreset_profile *p, uint64_t gpa, uint64_t pages, uint32_t flags)
{
	struct vmreset_profile_run *r = p->nr ? &p->runs[p->nr - 1] : NULL;

	if (r && r->flags == flags && r->gpa + r->pages * PG == gpa) {
		r->pages += pages;
	} else {
		if (p->nr == p->cap) {
			size_t cap = p->cap ? p->cap * 2 : 64;
			struct vmreset_profile_run *n = realloc(p->runs, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			p->runs = n;
			p->cap = cap;
		}
		p->runs[p->nr++] = (struct vmreset_profile_run){ gpa, pages, flags };
	}
	if (flags & VMRESET_PROF_WRITE)
		p->written_pages += pages;
	else
		p->read_pages += pages;
	return 0;
}

/* Folds the raw pages into the runs (which may already hold some). */
EXPORT int vmreset_profile_finish(struct vmreset_profile *p)
{
	size_t i, j;
	int err = 0;

	qsort(p->raw, p->nraw, sizeof(*p->raw), cmp_u64);
	for (i = 0; i < p->nraw && !err; i = j) {
		uint64_t gfn = p->raw[i] >> 2;
		uint32_t flags = 0;

		for (j = i; j < p->nraw && p->raw[j] >> 2 == gfn; j++)
			flags |= p->raw[j] & 3;
		err = add_run(p, gfn * PG, 1,
			      flags & VMRESET_PROF_WRITE ? VMRESET_PROF_WRITE : VMRESET_PROF_READ);
	}
	free(p->raw);
	p->raw = NULL;
	p->nraw = p->capraw = 0;
	return err;
}

EXPORT int vmreset_profile_save(const struct vmreset_profile *p, const char *path)
{
	FILE *f = fopen(path, "we");
	size_t i;
	int err = 0;

	if (!f)
		return -errno;
	fprintf(f, "vmreset-profile 1\n# %" PRIu64 " pages read, %" PRIu64 " written\n",
		p->read_pages, p->written_pages);
	for (i = 0; i < p->nr; i++)
		fprintf(f, "%c 0x%" PRIx64 " %" PRIu64 "\n",
			p->runs[i].flags & VMRESET_PROF_WRITE ? 'w' : 'r',
			p->runs[i].gpa, p->runs[i].pages);
	if (ferror(f))
		err = -EIO;
	if (fclose(f) && !err)
		err = -errno;
	return err;
}

EXPORT int vmreset_profile_load(struct vmreset_profile *p, const char *path, int *line)
{
	char buf[256], kind, extra;
	unsigned long long gpa, pages;
	int n = 0, err = 0;
	uint64_t last_end = 0;
	FILE *f;

	vmreset_profile_init(p);
	if (line)
		*line = 0;
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(buf, sizeof(buf), f)) {
		n++;
		/* The format line comes first, before any comment. */
		if (n == 1) {
			if (strcmp(buf, "vmreset-profile 1\n"))
				goto bad;
			continue;
		}
		if (buf[0] == '#' || buf[0] == '\n')
			continue;
		if (sscanf(buf, "%c %lli %llu %c", &kind, &gpa, &pages, &extra) != 3 ||
		    (kind != 'r' && kind != 'w') || (gpa & (PG - 1)) || !pages ||
		    pages > (UINT64_MAX - gpa) / PG || gpa < last_end)
			goto bad;
		last_end = gpa + pages * PG;
		err = add_run(p, gpa, pages, kind == 'w' ? VMRESET_PROF_WRITE : VMRESET_PROF_READ);
		if (err)
			break;
	}
	if (!err && n == 0)
		goto bad;
	fclose(f);
	if (err)
		vmreset_profile_free(p);
	return err;
bad:
	fclose(f);
	vmreset_profile_free(p);
	if (line)
		*line = n;
	return -EINVAL;
}

/* The part of run @r inside [gpa, gpa + size), as [*lo, *hi). */
static int clip(const struct vmreset_profile_run *r, uint64_t gpa, uint64_t size,
		uint64_t *lo, uint64_t *hi)
{
	uint64_t end = r->gpa + r->pages * PG;

	*lo = r->gpa > gpa ? r->gpa : gpa;
	*hi = end < gpa + size ? end : gpa + size;
	return *lo < *hi;
}

static int pre_fault(int vcpu_fd, uint64_t gpa, uint64_t len)
{
	struct kvm_pre_fault_memory r = { .gpa = gpa, .size = len };

	/* KVM maps part of the range at a time and updates gpa/size. */
	while (r.size) {
		if (ioctl(vcpu_fd, KVM_PRE_FAULT_MEMORY, &r) < 0 &&
		    errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	return 0;
}

EXPORT int vmreset_profile_prefetch(const struct vmreset_profile *p, int vcpu_fd,
				    uint64_t gpa, uint64_t size, void *hva,
				    unsigned int flags, struct vmreset_prefetch_stats *st)
{
	struct vmreset_prefetch_stats dummy;
	uint64_t lo, hi;
	size_t i;
	int err;

	if (flags & ~VMRESET_PREFETCH_WRITES)
		return -EINVAL;
	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	for (i = 0; i < p->nr; i++) {
		const struct vmreset_profile_run *r = &p->runs[i];
		int advice = MADV_POPULATE_READ;

		if (!clip(r, gpa, size, &lo, &hi))
			continue;
		if ((r->flags & VMRESET_PROF_WRITE) && (flags & VMRESET_PREFETCH_WRITES))
			advice = MADV_POPULATE_WRITE;
		if (madvise((char *)hva + (lo - gpa), hi - lo, advice))
			return -errno;
		st->host_pages += (hi - lo) / PG;
	}
	if (vcpu_fd < 0)
		return 0;
	for (i = 0; i < p->nr; i++) {
		if (!clip(&p->runs[i], gpa, size, &lo, &hi))
			continue;
		err = pre_fault(vcpu_fd, lo, hi - lo);
		if (err) {
			/* Older kernels: the VMM's mapping is all we can do. */
			st->kvm_err = err;
			break;
		}
		st->kvm_pages += (hi - lo) / PG;
	}
	return 0;
}

EXPORT long vmreset_profile_hot(const struct vmreset_profile *p, int fd, uint64_t gpa,
				uint64_t size, uint64_t offset)
{
#ifdef VMRESET_IOC_HOT
	/* Explicit set only: the file's hot mode is the owner's choice. */
	struct vmreset_range *ranges = NULL, *n;
	struct vmreset_hot hot = { .op = VMRESET_HOT_ADD };
	size_t i, nr = 0;
	uint64_t lo, hi, pages = 0;
	long ret;

	for (i = 0; i < p->nr; i++) {
		if (!(p->runs[i].flags & VMRESET_PROF_WRITE) ||
		    !clip(&p->runs[i], gpa, size, &lo, &hi))
			continue;
		n = realloc(ranges, (nr + 1) * sizeof(*n));
		if (!n) {
			free(ranges);
			return -ENOMEM;
		}
		ranges = n;
		ranges[nr++] = (struct vmreset_range){ offset + (lo - gpa), hi - lo };
		pages += (hi - lo) / PG;
	}
	hot.nr = nr;
	hot.ranges = (uintptr_t)ranges;
	if (ioctl(fd, VMRESET_IOC_HOT, &hot))
		ret = errno == ENOTTY ? -EOPNOTSUPP : -errno;
	else
		ret = pages;
	free(ranges);
	return ret;
#else
	(void)p; (void)fd; (void)gpa; (void)size; (void)offset;
	return -EOPNOTSUPP;
#endif
}
