// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset_bench - reset and cycle cost of vmreset against what VMMs and KVM
 * fuzzers do today, each at its best, side by side in one run, on the same
 * guest code.
 *
 * For each guest RAM size, workload, vCPU count and number D of 4 KiB pages
 * the guest dirties, every method runs the same loop:
 *
 *	guest run (dirties D pages) | reset | verify | guest run | reset | ...
 *
 * "reset" is timed from the guest's stop to memory equal to the snapshot;
 * "cycle" is a reset plus the next guest run, so that the faults a method
 * causes on the next run are counted. Workloads: "steady" dirties the same
 * D pages every run, "drift" keeps half of them and picks the other half at
 * random every run, "random" picks all D at random every run. The methods
 * are listed in methods[] below and in docs/benchmarks.md.
 *
 * Every user-space copy uses the fastest of the routines in copy.c, timed
 * at startup on random pages. Results go to a JSON file (json-c; one entry
 * a line, which selftests/bench_quick.sh relies on); bench/report.py turns
 * it into Markdown and plots. Progress goes to stdout.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>

#include "copy.h"
#include "vmr_guest.h"
#include "vmreset.h"

/* Linux 6.7+ UAPI; Debian 12's libc headers predate it. */
#ifndef PAGEMAP_SCAN
#define PAGEMAP_SCAN		_IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN		(1 << 1)
#define PM_SCAN_WP_MATCHING	(1 << 0)
#define PM_SCAN_CHECK_WPASYNC	(1 << 1)
struct page_region {
	__u64 start, end, categories;
};
struct pm_scan_arg {
	__u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
	__u64 category_inverted, category_mask, category_anyof_mask;
	__u64 return_mask;
};
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_UNPOPULATED	(1 << 13)
#define UFFD_FEATURE_WP_ASYNC		(1 << 15)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM	(1 << 12)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

/* Beyond the largest guest RAM (4 GiB at VM_TEST_GPA), inside the 64 GiB map. */
#define BPARAM_GPA	(32ULL << 30)
#define BPARAM_SIZE	(1UL << 20)		/* up to 131072 page indices */
#define SEED		7
#define NR_SAMPLES	64			/* fixed pages checked every iteration */
#define MAX_ITERS	64
#define VMM_PAGES	16
#define RLIST_OFF	65536			/* read list, in params[] */
#define NR_VCPUS	2
#define RING_BYTES	(1U << 20)		/* 65536 entries a vCPU */
#define LEARN_CYCLES	6			/* runs the kernel sees before timing */

enum workload { STEADY, DRIFT, RANDOM, NR_WL };
static const char *const workloads[NR_WL] = { "steady", "drift", "random" };

enum method { M1, M2, M2D, M3, M3R, M4, VMR, VMR_HOT, VMR_LEARN, VMR_NL, VMR_K0, VMR_K2,
	      NR_METHODS };

static const struct {
	const char *name, *label;
	bool baseline;		/* candidate for the best baseline of a cell */
	bool copies;		/* restores pages with a user-space copy */
	bool vmr;		/* a vmresetfs file */
} methods[NR_METHODS] = {
	[M1] = { "M1", "memcpy of the whole snapshot", true, true },
	[M2] = { "M2", "MAP_PRIVATE memfd + MADV_DONTNEED of all RAM", true },
	[M2D] = { "M2-dirty", "MAP_PRIVATE memfd + dirty log, MADV_DONTNEED of the dirty runs", true },
	[M3] = { "M3", "KVM dirty log (bitmap, manual protect) + copy", true, true },
	[M3R] = { "M3-ring", "KVM dirty ring (acquire/release) + copy", true, true },
	[M4] = { "M4", "PAGEMAP_SCAN uffd-wp + copy, re-protect what was written", true, true },
	[VMR] = { "vmreset", "vmresetfs REVERT ioctl, hot set off", .vmr = true },
	[VMR_HOT] = { "vmreset-hot", "REVERT ioctl, hot set given", .vmr = true },
	[VMR_LEARN] = { "vmreset-learn", "REVERT ioctl, hot set learned", .vmr = true },
	[VMR_NL] = { "vmreset-nl", "VM-level netlink REVERT, hot set off", .vmr = true },
	/* Only when asked for (-m): A/B rows for the kept copies of cold pages. */
	[VMR_K0] = { "vmreset-nokeep", "REVERT ioctl, hot set off, no kept copies (keep_copies=0)",
		     .vmr = true },
	[VMR_K2] = { "vmreset-swap", "REVERT ioctl, hot set off, kept spares (keep_copies=2)",
		     .vmr = true },
};

struct inst {
	enum method m;
	uint64_t npages;
	size_t size;
	uint8_t *ram;		/* what KVM maps and the VMM writes */
	uint8_t *snap;		/* copying methods: the snapshot copy */
	uint8_t *alias;		/* M4: a second, unregistered view of the memfd */
	int fd;			/* memfd (M2, M2-dirty, M4) or vmresetfs file */
	int uffd, pagemap;	/* M4; pagemap also M2, M2-dirty */
	unsigned long *bitmap;	/* M2-dirty, M3 */
	struct page_region *vec; /* M4 */
	struct kvm_dirty_gfn *ring[NR_VCPUS];	/* M3-ring */
	uint32_t ring_fetch[NR_VCPUS], ring_entries;
	uint64_t *harvest;	/* M3-ring: dirty pages found in the rings */
	uint8_t *seen;		/* M3-ring: one byte a page, to drop duplicates */
	struct vmreset_nl *nl;	/* vmreset-nl */
	uint32_t vm_id;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu[NR_VCPUS];
	pthread_t worker;
	sem_t go, done;
	bool stop;
	uint64_t worker_ret, w_args[5];	/* vCPU 1's run */
	int nvcpu;		/* vCPUs the current series runs */
	uint64_t *params;	/* in guest memory: write list, then read list */
	uint64_t d, nread;
	uint32_t *mark, gen;	/* for picking distinct random pages */
	uint64_t rng;
	double snapshot_us;
};

static struct {
	uint64_t ram_mib[8];
	int nr_ram;
	uint64_t d[8];
	int nr_d;
	bool want[NR_METHODS];
	bool wl[NR_WL];
	uint64_t vcpus[NR_VCPUS];
	int nr_vcpus;
	double budget_s;
	int max_iters;
	uint64_t clone_mib;
	int clones;
	uint64_t read_ws;
	uint64_t snap_mib;
	int copy_pages, copy_rounds;
	double deadline_s;
	const char *out;
	bool quick;
} cfg = {
	.ram_mib = { 64, 1024 }, .nr_ram = 2,
	.d = { 1, 16, 256, 4096 }, .nr_d = 4,
	.want = { true, true, true, true, true, true, true, true, true, true },
	.wl = { true, true, true },
	.vcpus = { 1, 2 }, .nr_vcpus = 2,
	.budget_s = 2, .max_iters = 9, .clone_mib = 256, .clones = 16, .read_ws = 2048,
	.snap_mib = 0, .copy_pages = 1024, .copy_rounds = 7,
	.out = "vmreset-bench.json",
};

static uint8_t zero[PG];
static double t_start;
static const struct copy_routine *best_copy;
static char cpu_flags[4096];
static bool hot_ok;		/* the module has hot pages */
static double spread_us, same_us, serial_us;	/* a 2-vCPU run that writes nothing */
static bool one_cpu;		/* vCPU threads share one CPU (see pick_vcpu_cpus()) */
static bool serial;		/* both vCPUs run from the main thread, in turn */
static struct json_object *j_copy, *j_kphases, *j_series, *j_snapshot, *j_vmm, *j_clones, *j_skipped;

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "vmreset_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	va_list ap;

	printf("bench: [%6.0fs] ", (now_us() - t_start) / 1e6);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ---------------------------------------------------------------------
 * JSON (json-c)
 */

static void jset(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v || json_object_object_add(o, key, v))
		die("out of memory building JSON");
}

static void jint(struct json_object *o, const char *key, int64_t v)
{
	jset(o, key, json_object_new_int64(v));
}

static void jstr(struct json_object *o, const char *key, const char *v)
{
	jset(o, key, json_object_new_string(v));
}

/* A double printed as @fmt rather than json-c's 17 digits. */
static void jdbl(struct json_object *o, const char *key, double v, const char *fmt)
{
	char buf[64];

	snprintf(buf, sizeof(buf), fmt, v);
	jset(o, key, json_object_new_double_s(v, buf));
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* {"median", "min", "max"} of @v (sorted in place). */
static void jstat(struct json_object *o, const char *key, double *v, int n)
{
	struct json_object *s = json_object_new_object();
	double med = median(v, n);

	jdbl(s, "median", med, "%.2f");
	jdbl(s, "min", v[0], "%.2f");
	jdbl(s, "max", v[n - 1], "%.2f");
	jset(o, key, s);
}

static struct json_object *item(struct json_object *arr)
{
	struct json_object *o = json_object_new_object();

	if (!o || json_object_array_add(arr, o))
		die("out of memory building JSON");
	return o;
}

static void __attribute__((format(printf, 2, 3))) skipped(const char *what,
							   const char *fmt, ...)
{
	struct json_object *o = item(j_skipped);
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	jstr(o, "what", what);
	jstr(o, "why", why);
	say("skipped %s: %s", what, why);
}

/* ---------------------------------------------------------------------
 * Memory, pages, content
 */

/*
 * The guest's request: read @nr pages (its read working set), then write
 * the first and last word of @n pages. Returns @n.
 */
GUEST_CODE static uint64_t guest_run(uint64_t base, uint64_t list, uint64_t n,
				     uint64_t tag, uint64_t rlist, uint64_t nr)
{
	const volatile uint64_t *ridx = (const volatile uint64_t *)rlist;
	uint64_t sum = 0;

	for (uint64_t i = 0; i < nr; i++)
		sum += *(volatile uint64_t *)(base + ridx[i] * PG);
	return guest_write_list(base, list, n, tag) + (sum & 0);
}

static void *map_anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu bytes: %s", size, strerror(errno));
	/* 4 KiB pages for every method: memfds and vmresetfs have no THP. */
	madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

/* A copy target that takes no first-touch faults while it is timed. */
static void populate(void *p, size_t size)
{
	if (madvise(p, size, MADV_POPULATE_WRITE))
		die("MADV_POPULATE_WRITE: %s", strerror(errno));
}

static void fill(uint8_t *ram, uint64_t npages)
{
	for (uint64_t i = 0; i < npages; i++)
		fill_page(ram, i, pat(SEED, i));
}

/* The page holds the snapshot's pattern: its two words and zeroes between. */
static bool content_ok(const uint8_t *page, uint64_t i)
{
	return page_has(page, 0, pat(SEED, i)) && !memcmp(page + 8, zero, PG - 16);
}

static bool page_ok(const uint8_t *ram, uint64_t i)
{
	return content_ok(ram + i * PG, i);
}

/*
 * Page @i as the guest would see it, read without mapping it into guest
 * RAM: a check between a reset and the next guest run must not pre-fault
 * what the reset unmapped, or the run's refaults would go uncounted.
 */
static bool page_ok_quiet(const struct inst *in, uint64_t i)
{
	static uint8_t buf[PG];
	uint64_t ent;

	if (methods[in->m].vmr) {
		if (pread(in->fd, buf, PG, i * PG) != PG)
			die("pread page %lu: %s", (unsigned long)i, strerror(errno));
		return content_ok(buf, i);
	}
	switch (in->m) {
	case M2:
	case M2D:
		/* Not mapped: the guest would see the memory file. */
		if (pread(in->pagemap, &ent, 8, ((uintptr_t)in->ram / PG + i) * 8) != 8)
			die("pagemap: %s", strerror(errno));
		if (ent >> 63)
			return page_ok(in->ram, i);
		if (pread(in->fd, buf, PG, i * PG) != PG)
			die("pread page %lu: %s", (unsigned long)i, strerror(errno));
		return content_ok(buf, i);
	case M4:
		return page_ok(in->alias, i);
	default:
		return page_ok(in->ram, i);
	}
}

/* Pages that differ from the snapshot: all of them, or the D written
 * pages, the page after each and a fixed sample (see the report). */
static uint64_t verify(const struct inst *in, bool full)
{
	uint64_t bad = 0, n = in->npages;

	if (full) {
		for (uint64_t i = 0; i < n; i++)
			bad += !page_ok(in->ram, i);
		return bad;
	}
	for (uint64_t k = 0; k < in->d; k++) {
		uint64_t p = in->params[k];

		bad += !page_ok_quiet(in, p);
		if (p + 1 < n)
			bad += !page_ok_quiet(in, p + 1);
	}
	for (uint64_t k = 0; k < NR_SAMPLES; k++)
		bad += !page_ok_quiet(in, (k * 0x9e3779b1ULL) % n);
	return bad;
}

/* ---------------------------------------------------------------------
 * The copy routine every copying method uses
 */

static void read_cpu_flags(void)
{
	char line[4096];
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "flags", 5) && strchr(line, ':')) {
			snprintf(cpu_flags, sizeof(cpu_flags), "%s", strchr(line, ':') + 2);
			cpu_flags[strcspn(cpu_flags, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
}

/*
 * Times every usable routine on the same random 4 KiB pages of two
 * populated buffers, the rounds interleaved so that a slow phase of the
 * host hits all alike; the lowest median per page wins.
 */
static void calibrate_copy(void)
{
	uint64_t npages = 16384, n = cfg.copy_pages, *idx = calloc(n, 8), x = SEED;
	uint8_t *src = map_anon(npages * PG), *dst = map_anon(npages * PG);
	double t[8][MAX_ITERS], best = 0;
	struct json_object *arr = json_object_new_array(), *flags;
	const char *f;
	char *save, *s;

	populate(src, npages * PG);
	populate(dst, npages * PG);
	fill(src, npages);
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		idx[i] = x % npages;
	}
	for (int r = 0; r < cfg.copy_rounds; r++) {
		for (int k = 0; k < nr_copy_routines; k++) {
			const struct copy_routine *c = &copy_routines[k];
			double t0;

			if (!c->usable())
				continue;
			t0 = now_us();
			for (uint64_t i = 0; i < n; i++)
				c->fn(dst + idx[i] * PG, src + idx[i] * PG, PG);
			t[k][r] = (now_us() - t0) / n;
		}
	}
	for (uint64_t i = 0; i < npages; i++)
		if (!page_ok(dst, i) && memcmp(dst + i * PG, zero, PG))
			die("copy routines: page %lu holds neither the source nor zeroes",
			    (unsigned long)i);
	for (int k = 0; k < nr_copy_routines; k++) {
		const struct copy_routine *c = &copy_routines[k];
		struct json_object *o;
		double med;

		if (!c->usable())
			continue;
		o = item(arr);
		jstr(o, "name", c->name);
		jstr(o, "what", c->what);
		jstat(o, "us_per_page", t[k], cfg.copy_rounds);
		med = median(t[k], cfg.copy_rounds);
		say("copy routine %-10s %.2f us per random 4 KiB page", c->name, med);
		if (!best_copy || med < best) {
			best_copy = c;
			best = med;
		}
	}
	j_copy = json_object_new_object();
	jint(j_copy, "pages", n);
	jint(j_copy, "rounds", cfg.copy_rounds);
	jset(j_copy, "routines", arr);
	jstr(j_copy, "chosen", best_copy->name);
	flags = json_object_new_array();
	s = strdup(cpu_flags);
	for (f = strtok_r(s, " ", &save); f; f = strtok_r(NULL, " ", &save))
		json_object_array_add(flags, json_object_new_string(f));
	free(s);
	jset(j_copy, "cpu_flags", flags);
	say("copying methods use %s", best_copy->name);
	munmap(src, npages * PG);
	munmap(dst, npages * PG);
	free(idx);
}

static void copy(void *dst, const void *src, size_t len)
{
	best_copy->fn(dst, src, len);
}

/* ---------------------------------------------------------------------
 * Methods: setup (takes the snapshot, timed), reset, teardown
 */

static int memfd_of(size_t size)
{
	int fd = memfd_create("guest-ram", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, size))
		die("memfd of %zu bytes: %s", size, strerror(errno));
	return fd;
}

static void *map_shared(int fd, size_t size, int flags)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);

	if (p == MAP_FAILED)
		die("mmap fd %d: %s", fd, strerror(errno));
	return p;
}

static int open_pagemap(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	return fd;
}

/*
 * M4: find the written ranges without write-protecting anything (a scan
 * with PM_SCAN_WP_MATCHING invalidates the whole range in the MMU
 * notifier, so KVM would drop every mapping of guest RAM), copy them back
 * through the alias, then write-protect just those ranges.
 */
static uint64_t m4_reset(struct inst *in, bool restore)
{
	uint64_t start = (uintptr_t)in->ram, end = start + in->size, pages = 0;

	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_CHECK_WPASYNC,
			.start = start, .end = end,
			.vec = (uintptr_t)in->vec, .vec_len = 512,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(in->pagemap, PAGEMAP_SCAN, &a);

		if (n < 0)
			die("PAGEMAP_SCAN: %s", strerror(errno));
		for (long r = 0; r < n; r++) {
			uint64_t off = in->vec[r].start - (uintptr_t)in->ram;
			uint64_t len = in->vec[r].end - in->vec[r].start;
			struct uffdio_writeprotect wp = {
				.range = { .start = in->vec[r].start, .len = len },
				.mode = UFFDIO_WRITEPROTECT_MODE_WP,
			};

			/* Through the alias: writing through the registered
			 * view would mark the pages written again. */
			if (restore)
				copy(in->alias + off, in->snap + off, len);
			if (ioctl(in->uffd, UFFDIO_WRITEPROTECT, &wp))
				die("UFFDIO_WRITEPROTECT: %s", strerror(errno));
			pages += len / PG;
		}
		start = a.walk_end;
	}
	return pages;
}

static void m4_setup(struct inst *in)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			    UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	};
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .mode = UFFDIO_WRITEPROTECT_MODE_WP };

	in->uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (in->uffd < 0)
		die("userfaultfd: %s", strerror(errno));
	if (ioctl(in->uffd, UFFDIO_API, &api))
		die("UFFDIO_API with WP_ASYNC: %s", strerror(errno));
	reg.range.start = (uintptr_t)in->ram;
	reg.range.len = in->size;
	if (ioctl(in->uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER WP: %s", strerror(errno));
	in->pagemap = open_pagemap();
	in->vec = calloc(512, sizeof(*in->vec));
	/* Arm: every page write-protected once. */
	wp.range = reg.range;
	if (ioctl(in->uffd, UFFDIO_WRITEPROTECT, &wp))
		die("UFFDIO_WRITEPROTECT: %s", strerror(errno));
}

static bool m4_supported(const char **why)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			    UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	};
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC);
	bool ok = fd >= 0 && !ioctl(fd, UFFDIO_API, &api);

	if (fd >= 0)
		close(fd);
	*why = "userfaultfd WP_ASYNC and PAGEMAP_SCAN need Linux 6.7 or later";
	return ok;
}

/* The dirty ring's capability: the acquire/release one where KVM has it. */
static int ring_cap(int vm_fd, int *bytes)
{
	static const int caps[] = { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING };

	for (int i = 0; i < 2; i++) {
		int max = ioctl(vm_fd, KVM_CHECK_EXTENSION, caps[i]);

		if (max > 0) {
			*bytes = max < (int)RING_BYTES ? max : (int)RING_BYTES;
			return caps[i];
		}
	}
	return 0;
}

static bool ring_supported(const char **why)
{
	struct kvm_vm *vm = vm_create();
	int bytes = 0, cap = ring_cap(vm->fd, &bytes);

	vm_free(vm);
	*why = "KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING_ACQ_REL)";
	return cap != 0;
}

#ifdef VMRESET_IOC_HOT_CONFIG
#define HAVE_HOT 1
#else
#define HAVE_HOT 0
#endif

/* The hot-set rows need the hot-set API, in the headers and the module. */
static bool hot_supported(const char *mnt, const char **why)
{
	struct vmreset_features f = { .size = sizeof(f) };
	char path[128];
	int fd;

	*why = "this build's UAPI header has no hot-set API";
	if (!HAVE_HOT)
		return false;
	*why = "the loaded module does not offer VMRESET_FEATURE_HOT";
	fd = vmr_file(mnt, "probe", PG);
	if (fd < 0)
		die("%s/probe: %s", mnt, strerror(errno));
	if (ioctl(fd, VMRESET_IOC_FEATURES, &f))
		die("VMRESET_IOC_FEATURES: %s", strerror(errno));
	close(fd);
	snprintf(path, sizeof(path), "%s/probe", mnt);
	unlink(path);
#if HAVE_HOT
	return f.features & VMRESET_FEATURE_HOT;
#else
	return false;
#endif
}

/* The file's hot-set mode: off, explicit or learned. */
static void hot_mode(struct inst *in)
{
#if HAVE_HOT
	struct vmreset_hot_config c = {
		.flags = VMRESET_HOT_CFG_MODE,
		.mode = in->m == VMR_HOT ? VMRESET_HOT_EXPLICIT :
			in->m == VMR_LEARN ? VMRESET_HOT_LEARN : VMRESET_HOT_OFF,
	};

	if (!hot_ok)
		return;
	if (vmreset_hot_config(in->fd, &c))
		die("VMRESET_IOC_HOT_CONFIG mode %u: %s", c.mode, strerror(errno));
#else
	(void)in;
#endif
}

/* vmreset-hot: the hot set is the pages in params[0..n). */
static void hot_set(struct inst *in, uint64_t n, const uint64_t *extra, uint64_t nx)
{
#if HAVE_HOT
	struct vmreset_range *r = calloc(n + nx + 1, sizeof(*r));

	for (uint64_t i = 0; i < n; i++)
		r[i] = (struct vmreset_range){ .offset = in->params[i] * PG, .length = PG };
	for (uint64_t i = 0; i < nx; i++)
		r[n + i] = (struct vmreset_range){ .offset = extra[i] * PG, .length = PG };
	if (vmreset_hot_set(in->fd, r, n + nx))
		die("VMRESET_IOC_HOT set of %lu pages: %s", (unsigned long)(n + nx),
		    strerror(errno));
	free(r);
#else
	(void)in, (void)n, (void)extra, (void)nx;
#endif
}

/*
 * vCPU 1's run. Always from the thread that runs it: vcpu_set_entry()
 * enters KVM_RUN to complete the last exit, and KVM_RUN from another
 * thread than last time costs a synchronize_rcu() (tens of ms under TCG).
 */
static uint64_t run_vcpu1(struct inst *in)
{
	vcpu_set_entry(in->vcpu[1], guest_run, 6, VM_TEST_GPA, in->w_args[0],
		       in->w_args[1], in->w_args[2], in->w_args[3], in->w_args[4]);
	return vcpu_run_to_done(in->vcpu[1]);
}

/* Runs vCPU 1 for the main thread, which runs vCPU 0. */
static void *worker(void *arg)
{
	struct inst *in = arg;

	for (;;) {
		sem_wait(&in->go);
		if (in->stop)
			return NULL;
		in->worker_ret = run_vcpu1(in);
		sem_post(&in->done);
	}
}

static void setup(struct inst *in, enum method m, uint64_t npages, const char *mnt)
{
	uint32_t flags = 0;
	uint8_t *src;
	double t0;

	memset(in, 0, sizeof(*in));
	in->m = m;
	in->npages = npages;
	in->size = npages * PG;
	in->fd = in->uffd = in->pagemap = -1;
	in->mark = calloc(npages, sizeof(*in->mark));

	switch (m) {
	case M1:
	case M3:
	case M3R:
		in->ram = map_anon(in->size);
		fill(in->ram, npages);
		in->snap = map_anon(in->size);
		populate(in->snap, in->size);
		t0 = now_us();
		copy(in->snap, in->ram, in->size);
		in->snapshot_us = now_us() - t0;
		break;
	case M2:
	case M2D:
		/*
		 * The running VM's RAM is anonymous; its snapshot is a memory
		 * file. Copied through a mapping: under TCG, write(2) into
		 * shmem takes minutes for 4 GiB.
		 */
		src = map_anon(in->size);
		fill(src, npages);
		t0 = now_us();
		in->fd = memfd_of(in->size);
		in->ram = map_shared(in->fd, in->size, MAP_SHARED);
		copy(in->ram, src, in->size);
		munmap(in->ram, in->size);
		in->ram = map_shared(in->fd, in->size, MAP_PRIVATE);
		in->snapshot_us = now_us() - t0;
		munmap(src, in->size);
		in->pagemap = open_pagemap();
		break;
	case M4:
		in->fd = memfd_of(in->size);
		in->ram = map_shared(in->fd, in->size, MAP_SHARED);
		in->alias = map_shared(in->fd, in->size, MAP_SHARED);
		fill(in->ram, npages);
		populate(in->alias, in->size);
		in->snap = map_anon(in->size);
		populate(in->snap, in->size);
		t0 = now_us();
		copy(in->snap, in->ram, in->size);
		m4_setup(in);
		in->snapshot_us = now_us() - t0;
		break;
	default: {
		char name[16];

		snprintf(name, sizeof(name), "ram-%d", m);
		in->fd = vmr_file(mnt, name, in->size);
		if (in->fd < 0)
			die("%s/%s: %s", mnt, name, strerror(errno));
		in->ram = map_shared(in->fd, in->size, MAP_SHARED);
		fill(in->ram, npages);
		break;
	}
	}

	in->params = mmap(NULL, BPARAM_SIZE, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (in->params == MAP_FAILED)
		die("mmap params: %s", strerror(errno));
	in->vm = vm_create();
	if (m == M3 || m == M2D) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
				   KVM_DIRTY_LOG_INITIALLY_SET,
		};

		if (ioctl(in->vm->fd, KVM_ENABLE_CAP, &cap))
			die("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: %s", strerror(errno));
		flags = KVM_MEM_LOG_DIRTY_PAGES;
		in->bitmap = calloc(npages / 64 + 1, sizeof(unsigned long));
	}
	if (m == M3R) {
		int bytes = 0, c = ring_cap(in->vm->fd, &bytes);
		struct kvm_enable_cap cap = { .cap = c, .args[0] = bytes };

		/* Before any vCPU exists, as KVM requires. */
		if (!c || ioctl(in->vm->fd, KVM_ENABLE_CAP, &cap))
			die("enable the KVM dirty ring: %s", strerror(errno));
		in->ring_entries = bytes / sizeof(struct kvm_dirty_gfn);
		in->harvest = calloc(NR_VCPUS * in->ring_entries, sizeof(*in->harvest));
		in->seen = calloc(npages, 1);
		flags = KVM_MEM_LOG_DIRTY_PAGES;
	}
	vm_add_slot(in->vm, 1, VM_TEST_GPA, in->size, in->ram, flags);
	vm_add_slot(in->vm, 2, BPARAM_GPA, BPARAM_SIZE, in->params, 0);
	for (int v = 0; v < NR_VCPUS; v++) {
		in->vcpu[v] = vcpu_add(in->vm, v, guest_run, 6, VM_TEST_GPA, BPARAM_GPA,
				       0, 0, BPARAM_GPA + RLIST_OFF * 8, 0);
		vcpu_run_to_done(in->vcpu[v]);
		if (m == M3R) {
			in->ring[v] = mmap(NULL, in->ring_entries * sizeof(struct kvm_dirty_gfn),
					   PROT_READ | PROT_WRITE, MAP_SHARED, in->vcpu[v]->fd,
					   KVM_DIRTY_LOG_PAGE_OFFSET * PG);
			if (in->ring[v] == MAP_FAILED)
				die("mmap the dirty ring: %s", strerror(errno));
		}
	}
	if (sem_init(&in->go, 0, 0) || sem_init(&in->done, 0, 0) ||
	    pthread_create(&in->worker, NULL, worker, in))
		die("vCPU thread: %s", strerror(errno));

	if (m == M3 || m == M2D) {
		/* Arming the log (every page starts dirty) is part of the snapshot. */
		struct kvm_clear_dirty_log c = {
			.slot = 1, .num_pages = npages, .dirty_bitmap = in->bitmap,
		};

		t0 = now_us();
		memset(in->bitmap, 0xff, (npages + 7) / 8);
		if (ioctl(in->vm->fd, KVM_CLEAR_DIRTY_LOG, &c))
			die("KVM_CLEAR_DIRTY_LOG: %s", strerror(errno));
		in->snapshot_us += now_us() - t0;
	}
	if (methods[m].vmr)
		hot_mode(in);
	if (methods[m].vmr && m != VMR_NL) {
		t0 = now_us();
		if (vmr_snapshot(in->fd, NULL))
			die("VMRESET_IOC_SNAPSHOT: %s", strerror(errno));
		in->snapshot_us = now_us() - t0;
	}
	if (m == VMR_NL) {
		int err;

		in->nl = vmreset_nl_open(&err);
		if (!in->nl)
			die("netlink family vmreset: %s", strerror(-err));
		if (vmreset_nl_vm_attach(in->nl, in->vm->fd, &in->vm_id))
			die("VM attach: %s", vmreset_nl_errmsg(in->nl));
		t0 = now_us();
		if (vmreset_nl_vm_snapshot(in->nl, in->vm_id, NULL))
			die("VM snapshot: %s", vmreset_nl_errmsg(in->nl));
		in->snapshot_us = now_us() - t0;
	}
}

/* The dirty log's pages: @bitmap fetched for slot 1. */
static void get_dirty_log(struct inst *in)
{
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = in->bitmap };

	if (ioctl(in->vm->fd, KVM_GET_DIRTY_LOG, &log))
		die("KVM_GET_DIRTY_LOG: %s", strerror(errno));
}

/* Clears (and write-protects) exactly the pages set in @bitmap. */
static void clear_dirty_log(struct inst *in)
{
	struct kvm_clear_dirty_log c = {
		.slot = 1, .num_pages = in->npages, .dirty_bitmap = in->bitmap,
	};

	if (ioctl(in->vm->fd, KVM_CLEAR_DIRTY_LOG, &c))
		die("KVM_CLEAR_DIRTY_LOG: %s", strerror(errno));
}

/* M3-ring: collect the dirty pages of every vCPU's ring, as QEMU-Nyx does. */
static uint64_t ring_reset(struct inst *in)
{
	uint64_t n = 0, pages = 0, mask = in->ring_entries - 1;

	for (int v = 0; v < NR_VCPUS; v++) {
		for (;;) {
			struct kvm_dirty_gfn *e = &in->ring[v][in->ring_fetch[v] & mask];

			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			if (e->slot == 1 && e->offset < in->npages)
				in->harvest[n++] = e->offset;
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			in->ring_fetch[v]++;
		}
	}
	/* Write-protects the harvested pages again. */
	if (n && ioctl(in->vm->fd, KVM_RESET_DIRTY_RINGS) < 0)
		die("KVM_RESET_DIRTY_RINGS: %s", strerror(errno));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = in->harvest[i];

		/* Two vCPUs can push the same page. */
		if (in->seen[p])
			continue;
		in->seen[p] = 1;
		copy(in->ram + p * PG, in->snap + p * PG, PG);
		pages++;
	}
	for (uint64_t i = 0; i < n; i++)
		in->seen[in->harvest[i]] = 0;
	return pages;
}

/* The timed part: from the guest's stop to memory equal to the snapshot.
 * Returns the pages the method restored (all of them for M1 and M2). */
static uint64_t reset(struct inst *in)
{
	uint64_t pages = 0, words = (in->npages + 63) / 64;

	switch (in->m) {
	case M1:
		copy(in->ram, in->snap, in->size);
		return in->npages;
	case M2:
		if (madvise(in->ram, in->size, MADV_DONTNEED))
			die("MADV_DONTNEED: %s", strerror(errno));
		return in->npages;
	case M2D: {
		uint64_t run = 0, start = 0;

		get_dirty_log(in);
		/* One MADV_DONTNEED a run of dirty pages. */
		for (uint64_t p = 0; p <= in->npages; p++) {
			bool dirty = p < in->npages &&
				     (in->bitmap[p / 64] >> (p % 64) & 1);

			if (dirty && !run++)
				start = p;
			if (!dirty && run) {
				if (madvise(in->ram + start * PG, run * PG, MADV_DONTNEED))
					die("MADV_DONTNEED: %s", strerror(errno));
				pages += run;
				run = 0;
			}
			/* Skip clean words fast. */
			if (!run && p % 64 == 0 && p + 64 <= in->npages && !in->bitmap[p / 64])
				p += 63;
		}
		if (pages)
			clear_dirty_log(in);
		return pages;
	}
	case M3:
		get_dirty_log(in);
		for (uint64_t w = 0; w < words; w++) {
			for (unsigned long b = in->bitmap[w]; b; b &= b - 1) {
				uint64_t off = (w * 64 + __builtin_ctzl(b)) * PG;

				copy(in->ram + off, in->snap + off, PG);
				pages++;
			}
		}
		if (pages)
			clear_dirty_log(in);
		return pages;
	case M3R:
		return ring_reset(in);
	case M4:
		return m4_reset(in, true);
	case VMR_NL:
		if (vmreset_nl_vm_revert(in->nl, in->vm_id, 0, &pages, NULL))
			die("VM revert: %s", vmreset_nl_errmsg(in->nl));
		return pages;
	default:
		if (vmr_revert(in->fd, &pages, NULL))
			die("VMRESET_IOC_REVERT: %s", strerror(errno));
		return pages;
	}
}

static void teardown(struct inst *in, const char *mnt)
{
	in->stop = true;
	sem_post(&in->go);
	pthread_join(in->worker, NULL);
	sem_destroy(&in->go);
	sem_destroy(&in->done);
	if (in->nl) {
		vmreset_nl_vm_detach(in->nl, in->vm_id);
		vmreset_nl_close(in->nl);
	}
	for (int v = 0; v < NR_VCPUS; v++)
		if (in->ring[v])
			munmap(in->ring[v], in->ring_entries * sizeof(struct kvm_dirty_gfn));
	vm_free(in->vm);
	munmap(in->ram, in->size);
	if (in->snap)
		munmap(in->snap, in->size);
	if (in->alias)
		munmap(in->alias, in->size);
	munmap(in->params, BPARAM_SIZE);
	if (in->uffd >= 0)
		close(in->uffd);
	if (in->pagemap >= 0)
		close(in->pagemap);
	if (in->fd >= 0)
		close(in->fd);
	if (methods[in->m].vmr) {
		char path[128];

		snprintf(path, sizeof(path), "%s/ram-%d", mnt, in->m);
		unlink(path);
	}
	free(in->bitmap);
	free(in->vec);
	free(in->harvest);
	free(in->seen);
	free(in->mark);
}

/* ---------------------------------------------------------------------
 * Measurements
 */

/* One guest run on in->nvcpu vCPUs, which split the write and read lists. */
static void dirty(struct inst *in, uint64_t tag)
{
	uint64_t d = in->d, h = in->nvcpu > 1 ? (d + 1) / 2 : d;
	uint64_t hr = in->nvcpu > 1 ? (in->nread + 1) / 2 : in->nread, n;

	vcpu_set_entry(in->vcpu[0], guest_run, 6, VM_TEST_GPA, BPARAM_GPA, h, tag,
		       BPARAM_GPA + RLIST_OFF * 8, hr);
	if (in->nvcpu > 1) {
		in->w_args[0] = BPARAM_GPA + h * 8;
		in->w_args[1] = d - h;
		in->w_args[2] = tag;
		in->w_args[3] = BPARAM_GPA + (RLIST_OFF + hr) * 8;
		in->w_args[4] = in->nread - hr;
		if (serial) {
			n = run_vcpu1(in);
			n += vcpu_run_to_done(in->vcpu[0]);
			goto out;
		}
		sem_post(&in->go);
	}
	n = vcpu_run_to_done(in->vcpu[0]);
	if (in->nvcpu > 1) {
		sem_wait(&in->done);
		n += in->worker_ret;
	}
out:
	if (n != d)
		die("%s: the guest wrote %lu pages, not %lu", methods[in->m].name,
		    (unsigned long)n, (unsigned long)d);
}

static uint64_t rnd(struct inst *in)
{
	uint64_t x = in->rng;

	x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	return in->rng = x;
}

/* The steady workload's page @i of @d: spread over RAM, no two adjacent. */
static uint64_t steady_page(const struct inst *in, uint64_t i, uint64_t d)
{
	uint64_t stride = in->npages / d;

	return i * stride + (i * 7) % (stride - 1);
}

/*
 * The D pages of the next run: steady keeps its pages, drift keeps the
 * even ones of them and draws the rest at random, random draws all; drawn
 * pages are distinct from each other and from the kept ones.
 */
static void pick_pages(struct inst *in, enum workload w)
{
	uint64_t d = in->d, k = 0, keep = w == STEADY ? d : w == DRIFT ? d - d / 2 : 0;

	if (!++in->gen) {
		memset(in->mark, 0, in->npages * sizeof(*in->mark));
		in->gen = 1;
	}
	for (; k < keep; k++) {
		uint64_t p = w == STEADY ? steady_page(in, k, d) : steady_page(in, 2 * k, d);

		in->params[k] = p;
		in->mark[p] = in->gen;
	}
	while (k < d) {
		uint64_t p = rnd(in) % in->npages;

		if (in->mark[p] == in->gen)
			continue;
		in->mark[p] = in->gen;
		in->params[k++] = p;
	}
	for (uint64_t i = 0; i < in->nread; i++)
		in->params[RLIST_OFF + i] = i * (in->npages / in->nread) + 1;
}

/* What the vmreset rows count, from VMRESET_IOC_STATS. */
struct vstats {
	uint64_t faults, cow_faults, reverted, undo;
	uint64_t hot, hot_copies, promotions, demotions;
	uint64_t kept, kept_hits;
};

/*
 * How REVERT keeps copies of cold pages (kmod/kept.c): 0 not, 1 in place
 * (the module's default), 2 swap and keep a spare. False if the module has
 * no such parameter (older than kept copies).
 */
static bool set_keep_copies(unsigned int mode)
{
	FILE *f = fopen("/sys/module/vmreset/parameters/keep_copies", "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%u\n", mode) > 0;
	return !fclose(f) && ok;
}

static unsigned int keep_copies_of(enum method m)
{
	return m == VMR_K0 ? 0 : m == VMR_K2 ? 2 : 1;
}

static void vstats(const struct inst *in, struct vstats *v)
{
	struct vmreset_stats st;

	memset(v, 0, sizeof(*v));
	if (!methods[in->m].vmr)
		return;
	if (vmr_stats(in->fd, &st))
		die("VMRESET_IOC_STATS: %s", strerror(errno));
	v->faults = st.faults;
	v->cow_faults = st.cow_faults;
	v->reverted = st.reverted_pages;
	v->undo = st.undo_pages;
#if HAVE_HOT
	v->hot = st.hot_pages;
	v->hot_copies = st.hot_copies;
	v->promotions = st.hot_promotions;
	v->demotions = st.hot_demotions;
#endif
	v->kept = st.cached_pages;
	v->kept_hits = st.cached_hits;
}

static void series(struct inst *in, uint64_t ram_mib, uint64_t d, enum workload w,
		   int nvcpu, uint64_t nread)
{
	double r[MAX_ITERS], c[MAX_ITERS], run[MAX_ITERS], t0, t1, t2, begin;
	double faults[MAX_ITERS], cow[MAX_ITERS], undo[MAX_ITERS], hot[MAX_ITERS];
	double hcopies[MAX_ITERS], promo[MAX_ITERS], demo[MAX_ITERS];
	double kept[MAX_ITERS], khits[MAX_ITERS];
	uint64_t tag = 0x5eed0000, pages = 0, bad, warm = 1;
	struct vstats s0, s1, s2;
	struct json_object *o;
	int it = 0;

	in->d = d;
	in->nvcpu = nvcpu;
	in->nread = nread;
	in->rng = SEED * 0x9e3779b97f4a7c15ULL ^ (ram_mib << 40 | d << 8 | w << 4 | nvcpu);
	if (methods[in->m].vmr && !set_keep_copies(keep_copies_of(in->m)) &&
	    keep_copies_of(in->m) != 1)
		die("%s: cannot set vmreset's keep_copies", methods[in->m].name);
	pick_pages(in, w);
	/* Given: the pages of the first run, as a recorded working set. */
	if (in->m == VMR_HOT)
		hot_set(in, d, NULL, 0);
	dirty(in, tag++);
	/*
	 * Warm up: the first reset also undoes the last series' pages, and
	 * the first run after it may fault differently; a learned hot set
	 * needs a few runs to form. M1 has no state.
	 */
	if (in->m == VMR_LEARN)
		warm = LEARN_CYCLES;
	for (uint64_t k = 0; in->m != M1 && k < warm; k++) {
		reset(in);
		pick_pages(in, w);
		dirty(in, tag++);
	}
	begin = now_us();
	while (it < cfg.max_iters && it < MAX_ITERS) {
		vstats(in, &s0);
		t0 = now_us();
		pages = reset(in);
		t1 = now_us();
		vstats(in, &s1);
		/* A reset that is fast and wrong is worthless. */
		if (in->m != M1 && in->m != M2 && pages != d)
			die("%s: reset restored %lu pages, the guest wrote %lu",
			    methods[in->m].name, (unsigned long)pages, (unsigned long)d);
		bad = verify(in, false);
		if (bad)
			die("%s, %lu MiB, %s, D=%lu, %d vCPUs: %lu pages differ from the snapshot after reset",
			    methods[in->m].name, (unsigned long)ram_mib, workloads[w],
			    (unsigned long)d, nvcpu, (unsigned long)bad);
		pick_pages(in, w);
		t2 = now_us();
		dirty(in, tag++);
		run[it] = now_us() - t2;
		vstats(in, &s2);
		r[it] = t1 - t0;
		c[it] = r[it] + run[it];
		faults[it] = s2.faults - s1.faults;
		cow[it] = s2.cow_faults - s1.cow_faults;
		undo[it] = s1.undo;
		hot[it] = s1.hot;
		hcopies[it] = s1.hot_copies - s0.hot_copies;
		promo[it] = s2.promotions - s0.promotions;
		demo[it] = s2.demotions - s0.demotions;
		kept[it] = s1.kept;
		khits[it] = s2.kept_hits - s1.kept_hits;
		it++;
		if (it >= 3 && now_us() - begin > cfg.budget_s * 1e6)
			break;
	}
	o = item(j_series);
	jint(o, "ram_mib", ram_mib);
	jint(o, "d", d);
	jstr(o, "workload", workloads[w]);
	jint(o, "vcpus", nvcpu);
	jint(o, "read_pages", nread);
	jstr(o, "method", methods[in->m].name);
	jint(o, "iters", it);
	jstat(o, "reset_us", r, it);
	jstat(o, "cycle_us", c, it);
	jstat(o, "run_us", run, it);
	jint(o, "reset_pages", pages);
	if (methods[in->m].copies)
		jstr(o, "copy", best_copy->name);
	if (methods[in->m].vmr) {
		struct json_object *ph = json_object_new_object();

		jstat(ph, "faults", faults, it);
		jstat(ph, "cow_faults", cow, it);
		jstat(ph, "undo_pages", undo, it);
		jstat(ph, "kept_pages", kept, it);
		jstat(ph, "kept_hits", khits, it);
		if (hot_ok) {
			jstat(ph, "hot_pages", hot, it);
			jstat(ph, "hot_copies", hcopies, it);
			jstat(ph, "promotions", promo, it);
			jstat(ph, "demotions", demo, it);
		}
		jset(o, "phases", ph);
	}
	jstr(o, "verified", "written pages, the page after each and 64 fixed pages every iteration, read without mapping them; all pages after the method's last series");
	say("%-13s %5lu MiB D=%5lu %-6s %dv%s reset %10.1f us  cycle %10.1f us  (%d iters)",
	    methods[in->m].name, (unsigned long)ram_mib, (unsigned long)d,
	    workloads[w], nvcpu, nread ? " +reads" : "", median(r, it), median(c, it), it);
}

/* After a method's last series: every page of RAM equals the snapshot. */
static void verify_all(struct inst *in, uint64_t ram_mib)
{
	uint64_t bad;

	reset(in);
	bad = verify(in, true);
	if (bad)
		die("%s, %lu MiB: %lu pages differ from the snapshot (full check)",
		    methods[in->m].name, (unsigned long)ram_mib, (unsigned long)bad);
}

/* The VMM writes into guest RAM too (a request, a virtio buffer): which
 * methods undo those writes? */
static void vmm_writes(struct inst *in, uint64_t ram_mib)
{
	uint64_t d = 16, stride = in->npages / d, bad;
	struct json_object *o;

	in->d = d;
	in->nvcpu = 1;
	in->nread = 0;
	pick_pages(in, STEADY);
	if (in->m == VMR_HOT) {
		uint64_t q[VMM_PAGES / 2];

		/* VMM writes into hot pages and into ordinary ones. */
		for (uint64_t k = 0; k < VMM_PAGES / 2; k++)
			q[k] = k * stride + stride / 2;
		hot_set(in, d, q, VMM_PAGES / 2);
	}
	dirty(in, 0xabc);
	for (uint64_t k = 0; k < VMM_PAGES; k++) {
		uint64_t q = k * stride + stride / 2;

		fill_page(in->ram, q, ~pat(SEED, q));
	}
	reset(in);
	bad = verify(in, true);
	o = item(j_vmm);
	jint(o, "ram_mib", ram_mib);
	jint(o, "d", d);
	jint(o, "vmm_pages", VMM_PAGES);
	jstr(o, "method", methods[in->m].name);
	/* wtf and Snapchange track their own writes; this M3 does not. */
	jstr(o, "label", in->m == M3 ? "M3 (raw dirty log)" : methods[in->m].name);
	jint(o, "differing_pages", bad);
	jset(o, "caught", json_object_new_boolean(!bad));
	say("%-13s VMM-side writes: %lu of %d pages left differing", methods[in->m].name,
	    (unsigned long)bad, VMM_PAGES);
	/* Leave RAM equal to the snapshot for whatever runs next. */
	if (bad)
		for (uint64_t k = 0; k < VMM_PAGES; k++) {
			uint64_t q = k * stride + stride / 2;

			fill_page(in->ram, q, pat(SEED, q));
		}
}

static void snapshot_item(enum method m, uint64_t ram_mib, double *v, int n,
			  const char *what)
{
	struct json_object *o = item(j_snapshot);

	jint(o, "ram_mib", ram_mib);
	jstr(o, "method", methods[m].name);
	jint(o, "iters", n);
	jstat(o, "us", v, n);
	jstr(o, "what", what);
}

/*
 * SNAPSHOT of a large guest after every page was written, against M3's
 * snapshot (a copy into a populated buffer, then arming the dirty log).
 */
static void snapshot_big(uint64_t mib, const char *mnt)
{
	uint64_t npages = mib << 8;
	size_t size = npages * PG;
	uint8_t *ram = map_anon(size), *snap = map_anon(size);
	double t0, us;
	int fd;

	fill(ram, npages);
	populate(snap, size);
	t0 = now_us();
	copy(snap, ram, size);
	us = now_us() - t0;
	snapshot_item(M3, mib, &us, 1, "copy of all RAM into a populated buffer (arming the dirty log not included)");
	say("%-13s %5lu MiB: snapshot copy %.0f us", "M3", (unsigned long)mib, us);
	munmap(ram, size);
	munmap(snap, size);

	fd = vmr_file(mnt, "big", size);
	if (fd < 0)
		die("%s/big: %s", mnt, strerror(errno));
	ram = map_shared(fd, size, MAP_SHARED);
	fill(ram, npages);
	t0 = now_us();
	if (vmr_snapshot(fd, NULL))
		die("VMRESET_IOC_SNAPSHOT: %s", strerror(errno));
	us = now_us() - t0;
	snapshot_item(VMR, mib, &us, 1, "SNAPSHOT with every page written since the file was created");
	say("%-13s %5lu MiB: SNAPSHOT %.0f us", "vmreset", (unsigned long)mib, us);
	munmap(ram, size);
	close(fd);
	{
		char path[128];

		snprintf(path, sizeof(path), "%s/big", mnt);
		unlink(path);
	}
}

static void kphase_item(const char *what, uint64_t pages, double *v, int n, double base)
{
	struct json_object *o = item(j_kphases);
	double med = median(v, n);

	jstr(o, "what", what);
	jint(o, "pages", pages);
	jstat(o, "us", v, n);
	jdbl(o, "us_per_page", pages ? (med - base) / pages : med, "%.3f");
	say("kernel phase %-38s %10.1f us (%.2f us a page)", what, med,
	    pages ? (med - base) / pages : med);
}

/* N scattered pages of a file, each written once through the mapping. */
static void host_write(uint8_t *ram, uint64_t n, uint64_t stride, uint64_t tag)
{
	for (uint64_t k = 0; k < n; k++)
		fill_page(ram, k * stride, tag ^ k);
}

/*
 * vmreset's phases timed one at a time on a file without a guest: the
 * fixed cost of a REVERT, restoring N cold pages (swap the snapshot copy
 * back and unmap), the first write to each afterwards (->fault and
 * ->page_mkwrite's copy-before-write), and with N hot pages a REVERT that
 * only compares them and one that compares and copies them back in place.
 */
static void kernel_phases(const char *mnt)
{
	const uint64_t npages = 16384, n = 1024, stride = npages / n;
	double t[6][7], t0, base = 0;
	uint64_t pages;
	uint8_t *ram;
	char path[128];
	int fd = vmr_file(mnt, "phases", npages * PG);

	if (fd < 0)
		die("%s/phases: %s", mnt, strerror(errno));
	ram = map_shared(fd, npages * PG, MAP_SHARED);
	fill(ram, npages);
#if HAVE_HOT
	if (hot_ok) {
		struct vmreset_hot_config c = { .flags = VMRESET_HOT_CFG_MODE,
						.mode = VMRESET_HOT_OFF };

		if (vmreset_hot_config(fd, &c))
			die("VMRESET_IOC_HOT_CONFIG: %s", strerror(errno));
	}
#endif
	if (vmr_snapshot(fd, NULL))
		die("VMRESET_IOC_SNAPSHOT: %s", strerror(errno));
	/*
	 * Cold pages with each way of keeping copies (kmod/kept.c), side by
	 * side: 0 frees the written page and the next first write allocates
	 * and copies; 1 copies back in place and keeps the snapshot copy, so
	 * that write neither allocates nor copies; 2 swaps and keeps a spare,
	 * which that write copies into. A module without the parameter runs
	 * its only way, labelled as before.
	 */
	for (unsigned int keep = 0; keep <= 2; keep++) {
		static const char *const how[] = {
			"swap + unmap, nothing kept", "copy back in place + unmap, copy kept",
			"swap + unmap, spare kept",
		};
		static const char *const then[] = {
			"allocate + copy", "takes the kept copy", "copies into the spare",
		};
		bool modes = set_keep_copies(keep);
		char what[128];

		if (!modes && keep != 1)
			continue;
		/* Once, so that every page has the copy its mode keeps. */
		host_write(ram, n, stride, 0x1800 + keep);
		if (vmr_revert(fd, &pages, NULL))
			die("VMRESET_IOC_REVERT: %s", strerror(errno));
		for (int r = 0; r < 7; r++) {
			t0 = now_us();
			if (vmr_revert(fd, &pages, NULL))
				die("VMRESET_IOC_REVERT: %s", strerror(errno));
			t[0][r] = now_us() - t0;
			t0 = now_us();
			host_write(ram, n, stride, 0x1000 + keep * 16 + r);
			t[1][r] = now_us() - t0;
			t0 = now_us();
			if (vmr_revert(fd, &pages, NULL) || pages != n)
				die("REVERT of %lu cold pages: %s", (unsigned long)n, strerror(errno));
			t[2][r] = now_us() - t0;
		}
		if (keep <= 1)
			base = median(t[0], 7);
		if (keep == 0 || !modes)
			kphase_item("REVERT, nothing dirty", 0, t[0], 7, 0);
		if (!modes) {
			kphase_item("REVERT of cold pages (restore + unmap)", n, t[2], 7, base);
			kphase_item("first write after it, from user space", n, t[1], 7, 0);
			continue;
		}
		snprintf(what, sizeof(what), "REVERT of cold pages, keep_copies=%u (%s)",
			 keep, how[keep]);
		kphase_item(what, n, t[2], 7, base);
		snprintf(what, sizeof(what), "first write after it, from user space (%s)",
			 then[keep]);
		kphase_item(what, n, t[1], 7, 0);
	}
	set_keep_copies(1);
#if HAVE_HOT
	if (hot_ok) {
		struct vmreset_hot_config c = { .flags = VMRESET_HOT_CFG_MODE,
						.mode = VMRESET_HOT_EXPLICIT };
		struct inst in = { .fd = fd, .params = calloc(n, 8) };

		for (uint64_t k = 0; k < n; k++)
			in.params[k] = k * stride;
		if (vmreset_hot_config(fd, &c))
			die("VMRESET_IOC_HOT_CONFIG: %s", strerror(errno));
		hot_set(&in, n, NULL, 0);
		free(in.params);
		/* Once, so that every hot page has its copy. */
		host_write(ram, n, stride, 0x2000);
		if (vmr_revert(fd, &pages, NULL))
			die("VMRESET_IOC_REVERT: %s", strerror(errno));
		for (int r = 0; r < 7; r++) {
			t0 = now_us();
			if (vmr_revert(fd, &pages, NULL) || pages)
				die("REVERT of unchanged hot pages restored %lu: %s",
				    (unsigned long)pages, strerror(errno));
			t[3][r] = now_us() - t0;
			t0 = now_us();
			host_write(ram, n, stride, 0x3000 + r);
			t[4][r] = now_us() - t0;
			t0 = now_us();
			if (vmr_revert(fd, &pages, NULL) || pages != n)
				die("REVERT of %lu hot pages restored %lu: %s", (unsigned long)n,
				    (unsigned long)pages, strerror(errno));
			t[5][r] = now_us() - t0;
		}
		kphase_item("REVERT of unchanged hot pages (compare)", n, t[3], 7, base);
		kphase_item("REVERT of written hot pages (compare + copy)", n, t[5], 7, base);
		kphase_item("write to hot pages, from user space", n, t[4], 7, 0);
	}
#endif
	for (uint64_t i = 0; i < npages; i++)
		if (!page_ok(ram, i))
			die("phases: page %lu differs from the snapshot", (unsigned long)i);
	munmap(ram, npages * PG);
	close(fd);
	snprintf(path, sizeof(path), "%s/phases", mnt);
	unlink(path);
}

/*
 * Memory in use, in kB, where each method keeps its pages: anonymous copies
 * (M1), shmem and anonymous COW pages (M2), vmresetfs pages (vmreset: the
 * mount's used blocks). MemFree would be off by what per-CPU free lists hold.
 */
static long used_kb(const char *method, const char *mnt)
{
	struct statvfs st;

	if (!strcmp(method, "M1"))
		return meminfo("AnonPages");
	if (!strcmp(method, "M2"))
		return meminfo("AnonPages") + meminfo("Shmem");
	if (statvfs(mnt, &st))
		die("statvfs %s: %s", mnt, strerror(errno));
	return (long)((st.f_blocks - st.f_bfree) * st.f_frsize / 1024);
}

static void clone_item(const char *method, uint64_t mib, int n, uint64_t each,
		       long before_kb, const char *mnt)
{
	double used = (used_kb(method, mnt) - before_kb) / 1024.0;
	struct json_object *o = item(j_clones);

	jint(o, "ram_mib", mib);
	jint(o, "n", n);
	jint(o, "dirty_pages_each", each);
	jstr(o, "method", method);
	jdbl(o, "mem_mib", used, "%.1f");
	jdbl(o, "per_instance_mib", used / n, "%.1f");
	say("%-13s %d instances of %lu MiB, %lu pages dirtied each: %.1f MiB",
	    method, n, (unsigned long)mib, (unsigned long)each, used);
}

static void dirty_instance(uint8_t *ram, uint64_t npages, uint64_t each)
{
	for (uint64_t k = 0; k < each; k++)
		fill_page(ram, k * (npages / each), ~0ULL);
}

/*
 * Memory of N ready instances of one snapshot, each of which dirtied 1%:
 * N copies (what M1, M3, M3-ring and M4 need; measured for two when they
 * would take more than 64 MiB), N MAP_PRIVATE mappings of one memfd (M2),
 * N vmresetfs clones.
 */
static void clones(uint64_t mib, int n, const char *mnt)
{
	uint64_t npages = mib << 8, each = npages / 100;
	size_t size = npages * PG;
	int nc = n < 2 || size * n <= (64UL << 20) ? n : 2;
	uint8_t **map = calloc(n, sizeof(*map)), *snap;
	int *fds = calloc(n, sizeof(*fds)), src;
	char path[160];
	long before;

	/*
	 * Copies cost a full copy each, which TCG takes minutes over for 16
	 * of 256 MiB: two show what each one takes.
	 */
	before = used_kb("M1", mnt);
	snap = map_anon(size);
	fill(snap, npages);
	for (int i = 0; i < nc; i++) {
		map[i] = map_anon(size);
		copy(map[i], snap, size);
		dirty_instance(map[i], npages, each);
	}
	clone_item("M1", mib, nc, each, before, mnt);
	for (int i = 0; i < nc; i++)
		munmap(map[i], size);
	munmap(snap, size);

	before = used_kb("M2", mnt);
	src = memfd_of(size);
	snap = map_shared(src, size, MAP_SHARED);
	fill(snap, npages);
	munmap(snap, size);
	for (int i = 0; i < n; i++) {
		map[i] = map_shared(src, size, MAP_PRIVATE);
		dirty_instance(map[i], npages, each);
	}
	clone_item("M2", mib, n, each, before, mnt);
	for (int i = 0; i < n; i++)
		munmap(map[i], size);
	close(src);

	before = used_kb("vmreset", mnt);
	snprintf(path, sizeof(path), "%s/clone-src", mnt);
	src = vmr_file(mnt, "clone-src", size);
	if (src < 0)
		die("%s: %s", path, strerror(errno));
	snap = map_shared(src, size, MAP_SHARED);
	fill(snap, npages);
	munmap(snap, size);
	if (vmr_snapshot(src, NULL))
		die("snapshot %s: %s", path, strerror(errno));
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "clone-%d", i);
		fds[i] = vmr_file(mnt, path, 0);
		if (fds[i] < 0 || ioctl(fds[i], FICLONE, src) || vmr_snapshot(fds[i], NULL))
			die("clone %s/%s: %s", mnt, path, strerror(errno));
		map[i] = map_shared(fds[i], size, MAP_SHARED);
		dirty_instance(map[i], npages, each);
	}
	clone_item("vmreset", mib, n, each, before, mnt);
	for (int i = 0; i < n; i++) {
		munmap(map[i], size);
		close(fds[i]);
		snprintf(path, sizeof(path), "%s/clone-%d", mnt, i);
		unlink(path);
	}
	close(src);
	snprintf(path, sizeof(path), "%s/clone-src", mnt);
	unlink(path);
	free(map);
	free(fds);
}

static void pin(pthread_t t, int cpu)
{
	cpu_set_t a;

	CPU_ZERO(&a);
	CPU_SET(cpu, &a);
	if (pthread_setaffinity_np(t, sizeof(a), &a))
		die("pthread_setaffinity_np: %s", strerror(errno));
}

/* The vCPU threads of @in on CPUs 0 and 1, or both on CPU 0. */
static void place_vcpus(struct inst *in)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	pin(pthread_self(), 0);
	pin(in->worker, one_cpu ? 0 : 1);
}

static double time_2vcpu_runs(struct inst *in)
{
	double t[9], t0;

	place_vcpus(in);
	for (int i = 0; i < 9; i++) {
		t0 = now_us();
		dirty(in, i);
		t[i] = now_us() - t0;
	}
	return median(t, 9);
}

/*
 * How to run two vCPUs: a thread each, on CPUs 0 and 1, in parallel. Time
 * a 2-vCPU run that writes nothing that way, with both threads on one CPU,
 * and with both vCPUs run in turn from one thread; should the threads on
 * two CPUs cost more than a ms over the last (a handoff that a slow
 * emulator makes dear, the same for every method, which would drown what
 * the 2-vCPU cells are to show), fall back to one CPU, then to in turn.
 */
static void pick_vcpu_cpus(const char *mnt)
{
	struct inst in;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	setup(&in, M1, 4096, mnt);
	in.d = 0;
	in.nvcpu = 2;
	one_cpu = false;
	spread_us = time_2vcpu_runs(&in);
	one_cpu = true;
	same_us = time_2vcpu_runs(&in);
	serial = true;
	serial_us = time_2vcpu_runs(&in);
	serial = one_cpu = false;
	if (spread_us > serial_us + 1000) {
		one_cpu = same_us <= serial_us + 1000;
		serial = !one_cpu;
	}
	teardown(&in, mnt);
	say("a 2-vCPU run that writes nothing: %.0f us with threads on two CPUs, %.0f us on one, "
	    "%.0f us in turn from one thread; 2-vCPU series run %s", spread_us, same_us, serial_us,
	    serial ? "in turn" : one_cpu ? "threads on one CPU" : "threads on two CPUs");
}

/* Past --deadline, what is left is skipped, and said so. */
static bool out_of_time(const char *what)
{
	if (!cfg.deadline_s || now_us() - t_start < cfg.deadline_s * 1e6)
		return false;
	skipped(what, "out of time (--deadline %.0f s)", cfg.deadline_s);
	return true;
}

/* The vmreset rows and the strongest baselines first, should time run out. */
static const enum method run_order[NR_METHODS] = {
	VMR_HOT, VMR_LEARN, VMR, VMR_K0, VMR_K2, M3R, M3, M2D, M4, M2, VMR_NL, M1,
};

static void bench_ram(uint64_t mib, bool first, const char *mnt)
{
	uint64_t npages = mib << 8;
	double snap_us[3];

	for (int o = 0; o < NR_METHODS; o++) {
		enum method m = run_order[o];
		int reps = mib <= 256 ? 3 : 1;
		struct inst in;
		char what[64];

		if (!cfg.want[m])
			continue;
		snprintf(what, sizeof(what), "%s at %lu MiB", methods[m].name, (unsigned long)mib);
		if (out_of_time(what))
			continue;
		setup(&in, m, npages, mnt);
		place_vcpus(&in);
		say("%-13s %5lu MiB: snapshot taken in %.1f us", methods[m].name,
		    (unsigned long)mib, in.snapshot_us);
		snap_us[0] = in.snapshot_us;
		for (int w = 0; w < NR_WL; w++) {
			if (!cfg.wl[w])
				continue;
			for (int v = 0; v < cfg.nr_vcpus; v++) {
				/*
				 * The netlink round trip adds the same at every
				 * cell; M1's copy of all RAM is the same whatever
				 * the guest wrote, and above 256 MiB far from the
				 * best baseline: measured once, where it costs
				 * seconds an iteration.
				 */
				if ((m == VMR_NL || (m == M1 && mib > 256)) &&
				    (w != STEADY || cfg.vcpus[v] != 1))
					continue;
				for (int k = 0; k < cfg.nr_d; k++)
					if (cfg.d[k] * 2 <= npages)
						series(&in, mib, cfg.d[k], w, cfg.vcpus[v], 0);
			}
		}
		if (first && cfg.read_ws && cfg.read_ws * 2 <= npages && cfg.wl[STEADY]) {
			/* Methods that drop all mappings pay for the reads too. */
			for (int k = 0; k < cfg.nr_d; k++)
				if (cfg.d[k] == 16 || cfg.d[k] == 256)
					series(&in, mib, cfg.d[k], STEADY, 1, cfg.read_ws);
		}
		verify_all(&in, mib);
		if (first)
			vmm_writes(&in, mib);
		teardown(&in, mnt);
		for (int r = 1; r < reps; r++) {
			setup(&in, m, npages, mnt);
			snap_us[r] = in.snapshot_us;
			teardown(&in, mnt);
		}
		snapshot_item(m, mib, snap_us, reps, "taking the snapshot of freshly filled RAM");
	}
}

/* ---------------------------------------------------------------------
 * Command line and output
 */

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmreset_bench [options]\n"
"\n"
"Measures reset and cycle time of guest RAM reset methods side by side, with\n"
"real KVM guests, and writes the results as JSON (see bench/report.py).\n"
"Needs /dev/kvm, the vmreset module and root (it mounts a vmresetfs).\n"
"\n"
"  -o, --output FILE     JSON results (default: vmreset-bench.json)\n"
"  -r, --ram LIST        guest RAM sizes in MiB (default: 64,1024;\n"
"                        sizes that do not fit in memory are skipped)\n"
"  -d, --dirty LIST      dirtied pages per run (default: 1,16,256,4096)\n"
"  -m, --methods LIST    of M1,M2,M2-dirty,M3,M3-ring,M4,vmreset,vmreset-hot,\n"
"                        vmreset-learn,vmreset-nl (default: all)\n"
"  -W, --workloads LIST  of steady,drift,random (default: all)\n"
"  -v, --vcpus LIST      vCPU counts, 1 and/or 2 (default: 1,2)\n"
"  -b, --budget SEC      time for one series; at least 3 iterations (default: 2)\n"
"  -i, --iters N         at most N iterations per series (default: 9)\n"
"  -c, --clones N        instances for the memory comparison, 0 for none\n"
"                        (default: 16)\n"
"      --clone-ram MIB   RAM of each of those instances (default: 256)\n"
"  -s, --snapshot-ram MIB  RAM of an extra SNAPSHOT row against M3's copy,\n"
"                        e.g. 4096 (default: 0, none; every RAM size above\n"
"                        measures both already; skipped if it does not fit)\n"
"  -w, --read-ws N       pages the guest also reads, in extra steady series\n"
"                        at the first RAM size, D=16 and 256 (default: 2048;\n"
"                        0: none)\n"
"      --deadline SEC    start no method after SEC seconds; what is left is\n"
"                        listed as skipped (default: none)\n"
"  -q, --quick           a fast smoke run: 16 MiB, D up to 256, 3 iterations\n"
"                        (sets the options above; later ones override it)\n"
"  -h, --help            this text\n");
}

static int parse_list(const char *arg, const char *what, uint64_t *out, int max)
{
	char *s = strdup(arg), *tok, *save, *end;
	int n = 0;

	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long long v;

		errno = 0;
		v = strtoull(tok, &end, 10);
		if (*end || !v || errno || *tok == '-' || n == max || v > (1ULL << 20))
			die("bad %s '%s' in '%s' (want up to %d positive numbers)",
			    what, tok, arg, max);
		out[n++] = v;
	}
	free(s);
	if (!n)
		die("empty %s list", what);
	return n;
}

static void parse_names(const char *arg, const char *what, bool *want, int nr,
			const char *(*name)(int))
{
	char *s = strdup(arg), *tok, *save;

	memset(want, 0, nr * sizeof(*want));
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int k;

		for (k = 0; k < nr; k++)
			if (!strcasecmp(tok, name(k)))
				break;
		if (k == nr)
			die("unknown %s '%s' in '%s'; see --help", what, tok, arg);
		want[k] = true;
	}
	free(s);
}

static const char *method_name(int m)
{
	return methods[m].name;
}

static const char *workload_name(int w)
{
	return workloads[w];
}

static double parse_num(const char *arg, const char *what, double lo, double hi)
{
	char *end;
	double v = strtod(arg, &end);

	if (*end || end == arg || v < lo || v > hi)
		die("bad %s '%s' (want %g to %g)", what, arg, lo, hi);
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "ram", required_argument, NULL, 'r' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "methods", required_argument, NULL, 'm' },
		{ "workloads", required_argument, NULL, 'W' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "budget", required_argument, NULL, 'b' },
		{ "iters", required_argument, NULL, 'i' },
		{ "clones", required_argument, NULL, 'c' },
		{ "clone-ram", required_argument, NULL, 'C' },
		{ "snapshot-ram", required_argument, NULL, 's' },
		{ "read-ws", required_argument, NULL, 'w' },
		{ "deadline", required_argument, NULL, 'D' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int o;

	while ((o = getopt_long(argc, argv, "o:r:d:m:W:v:b:i:c:s:w:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'o': cfg.out = optarg; break;
		case 'r': cfg.nr_ram = parse_list(optarg, "RAM size", cfg.ram_mib, 8); break;
		case 'd': cfg.nr_d = parse_list(optarg, "page count", cfg.d, 8); break;
		case 'm': parse_names(optarg, "method", cfg.want, NR_METHODS, method_name); break;
		case 'W': parse_names(optarg, "workload", cfg.wl, NR_WL, workload_name); break;
		case 'v':
			cfg.nr_vcpus = parse_list(optarg, "vCPU count", cfg.vcpus, NR_VCPUS);
			for (int k = 0; k < cfg.nr_vcpus; k++)
				if (cfg.vcpus[k] > NR_VCPUS)
					die("bad vCPU count %lu (1 or 2)", (unsigned long)cfg.vcpus[k]);
			break;
		case 'b': cfg.budget_s = parse_num(optarg, "budget", 0, 3600); break;
		case 'i': cfg.max_iters = parse_num(optarg, "iterations", 3, MAX_ITERS); break;
		case 'c': cfg.clones = parse_num(optarg, "clone count", 0, 256); break;
		case 'C': cfg.clone_mib = parse_num(optarg, "clone RAM", 1, 4096); break;
		case 's': cfg.snap_mib = parse_num(optarg, "snapshot RAM", 0, 4096); break;
		case 'w': cfg.read_ws = parse_num(optarg, "read set", 0, 65536); break;
		case 'D': cfg.deadline_s = parse_num(optarg, "deadline", 1, 86400); break;
		case 'q':
			cfg.ram_mib[0] = 16, cfg.nr_ram = 1;
			cfg.d[0] = 1, cfg.d[1] = 16, cfg.d[2] = 256, cfg.nr_d = 3;
			cfg.max_iters = 3, cfg.budget_s = 0;
			cfg.clones = 4, cfg.clone_mib = 16, cfg.read_ws = 256;
			cfg.snap_mib = 16, cfg.copy_pages = 256, cfg.copy_rounds = 3;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'; see --help", argv[optind]);
	for (int k = 0; k < cfg.nr_d; k++)
		if (cfg.d[k] > RLIST_OFF / 4)
			die("at most %d dirty pages per run", RLIST_OFF / 4);
	for (int k = 0; k < cfg.nr_ram; k++)
		if (cfg.ram_mib[k] > 4096 || cfg.ram_mib[k] < 16)
			die("RAM sizes go from 16 to 4096 MiB");
}

static void cpu_model(char *buf, size_t len)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(buf, len, "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
			snprintf(buf, len, "%s", strchr(line, ':') + 2);
			buf[strcspn(buf, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
}

#define JFLAGS	(JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/* One entry a line, so that the quick test can grep for them. */
static void write_array(FILE *out, const char *name, struct json_object *arr, bool last)
{
	size_t n = json_object_array_length(arr);

	fprintf(out, " \"%s\": [", name);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%s\n  %s", i ? "," : "",
			json_object_to_json_string_ext(json_object_array_get_idx(arr, i), JFLAGS));
	fprintf(out, "\n ]%s\n", last ? "" : ",");
	json_object_put(arr);
}

static void write_json(void)
{
	struct json_object *env = json_object_new_object(), *ms = json_object_new_array();
	FILE *out = fopen(cfg.out, "w");
	struct utsname u;
	char cpu[128];

	if (!out)
		die("%s: %s", cfg.out, strerror(errno));
	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	jstr(env, "kernel", u.release);
	jstr(env, "cpu", cpu);
	jint(env, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
	jint(env, "vm_mem_mib", meminfo("MemTotal") / 1024);
	jdbl(env, "duration_s", (now_us() - t_start) / 1e6, "%.0f");
	jdbl(env, "two_vcpu_run_two_cpus_us", spread_us, "%.1f");
	jdbl(env, "two_vcpu_run_one_cpu_us", same_us, "%.1f");
	jdbl(env, "two_vcpu_run_in_turn_us", serial_us, "%.1f");
	jstr(env, "vcpu_threads", serial ? "in turn from one thread" :
	     one_cpu ? "a thread each, on one CPU" : "a thread each, on two CPUs");
	for (int m = 0; m < NR_METHODS; m++) {
		struct json_object *o = item(ms);

		jstr(o, "name", methods[m].name);
		jstr(o, "label", methods[m].label);
		jset(o, "baseline", json_object_new_boolean(methods[m].baseline));
		if (methods[m].copies)
			jstr(o, "copy", best_copy->name);
	}
	fprintf(out, "{\n \"env\": %s,\n", json_object_to_json_string_ext(env, JFLAGS));
	fprintf(out, " \"copy\": %s,\n", json_object_to_json_string_ext(j_copy, JFLAGS));
	write_array(out, "methods", ms, false);
	write_array(out, "kernel_phases", j_kphases, false);
	write_array(out, "series", j_series, false);
	write_array(out, "snapshot", j_snapshot, false);
	write_array(out, "vmm_writes", j_vmm, false);
	write_array(out, "clones", j_clones, false);
	write_array(out, "skipped", j_skipped, true);
	fprintf(out, "}\n");
	json_object_put(env);
	json_object_put(j_copy);
	if (ferror(out) | fclose(out))
		die("%s: %s", cfg.out, strerror(errno));
}

/* vmreset's phases and the memory of N instances. */
static void extras(const char *mnt)
{
	if (cfg.want[VMR] && !out_of_time("vmreset's phases"))
		kernel_phases(mnt);
	if (cfg.clones && !out_of_time("instance memory")) {
		long avail = meminfo("MemAvailable") / 1024;

		if ((long)(cfg.clone_mib * 4 + 256) > avail)
			skipped("instance memory", "2 copies of %lu MiB do not fit in %ld MiB",
				(unsigned long)cfg.clone_mib, avail);
		else
			clones(cfg.clone_mib, cfg.clones, mnt);
	}
}

int main(int argc, char **argv)
{
	uint64_t max_mib = 0;
	const char *why;
	char mnt[64], opts[64];
	bool first = true;

	t_start = now_us();
	parse_args(argc, argv);
	why = kvm_unavailable_reason();
	if (why)
		die("KVM is not usable: %s", why);
	j_series = json_object_new_array(), j_snapshot = json_object_new_array();
	j_vmm = json_object_new_array(), j_clones = json_object_new_array();
	j_skipped = json_object_new_array(), j_kphases = json_object_new_array();
	read_cpu_flags();
	calibrate_copy();

	for (int k = 0; k < cfg.nr_ram; k++)
		max_mib = cfg.ram_mib[k] > max_mib ? cfg.ram_mib[k] : max_mib;
	if (cfg.clone_mib * 2 > max_mib)
		max_mib = cfg.clone_mib * 2;
	if (cfg.snap_mib > max_mib)
		max_mib = cfg.snap_mib;
	snprintf(opts, sizeof(opts), "size=%lum", (unsigned long)max_mib * 2 + 64);
	if (vmr_mount(mnt, opts)) {
		int err = errno;

		rmdir(mnt);
		errno = err;
		die("mount vmresetfs on %s: %s (is the vmreset module loaded?)", mnt,
		    strerror(errno));
	}
	if (cfg.want[M4] && !m4_supported(&why)) {
		cfg.want[M4] = false;
		skipped("M4", "%s", why);
	}
	if (cfg.want[M3R] && !ring_supported(&why)) {
		cfg.want[M3R] = false;
		skipped("M3-ring", "%s", why);
	}
	pick_vcpu_cpus(mnt);
	hot_ok = hot_supported(mnt, &why);
	for (int m = VMR_HOT; m <= VMR_LEARN; m++) {
		if (cfg.want[m] && !hot_ok) {
			cfg.want[m] = false;
			skipped(methods[m].name, "%s", why);
		}
	}

	for (int k = 0; k < cfg.nr_ram; k++) {
		uint64_t mib = cfg.ram_mib[k];
		long avail = meminfo("MemAvailable") / 1024;
		char what[64];

		/* The cheap extras after the first size, before the big ones. */
		if (k == 1)
			extras(mnt);

		/* RAM and a snapshot copy of it, for one method at a time. */
		if ((long)(mib * 2 + 256) > avail) {
			snprintf(what, sizeof(what), "%lu MiB", (unsigned long)mib);
			skipped(what, "needs %lu MiB of memory, %ld available",
				(unsigned long)mib * 2 + 256, avail);
			continue;
		}
		bench_ram(mib, first, mnt);
		first = false;
	}
	if (cfg.nr_ram < 2)
		extras(mnt);
	if (cfg.snap_mib && !out_of_time("large snapshot")) {
		long avail = meminfo("MemAvailable") / 1024;

		if ((long)(cfg.snap_mib * 2 + 256) > avail)
			skipped("large snapshot", "%lu MiB and a copy do not fit in %ld MiB",
				(unsigned long)cfg.snap_mib, avail);
		else
			snapshot_big(cfg.snap_mib, mnt);
	}
	vmr_umount(mnt);
	write_json();
	say("results in %s", cfg.out);
	return 0;
}
