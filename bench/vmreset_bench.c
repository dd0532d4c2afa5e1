// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset_bench - reset and cycle cost of vmreset against what VMMs and KVM
 * fuzzers do today, side by side in one run, on the same guest code.
 *
 * For each guest RAM size and each number D of 4 KiB pages the guest
 * dirties, every method runs the same loop:
 *
 *	guest run (dirties D pages) | reset | verify | guest run | reset | ...
 *
 * "reset" is timed from the guest's stop to memory equal to the snapshot;
 * "cycle" is a reset plus the next guest run, so that the refaults a method
 * causes are counted. Methods:
 *
 *	M1	 memcpy of the whole snapshot into anonymous guest RAM
 *	M2	 guest RAM is a MAP_PRIVATE mapping of a memfd that holds the
 *		 snapshot (Firecracker); reset = MADV_DONTNEED over it
 *	M3	 KVM dirty log (manual protect): GET_DIRTY_LOG, copy each dirty
 *		 page back, CLEAR_DIRTY_LOG (wtf, Snapchange)
 *	M4	 memfd registered uffd-wp-async; PAGEMAP_SCAN reports and
 *		 write-protects written pages, copy them back (Linux 6.7+)
 *	vmreset	 REVERT ioctl on a vmresetfs file
 *	vmreset-nl VM-level REVERT through the netlink family
 *
 * Results go to a JSON file (bench/report.py turns it into Markdown and
 * plots); progress goes to stdout.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>

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

/* Beyond the largest guest RAM (4 GiB at VM_TEST_GPA), inside the 64 GiB map. */
#define BPARAM_GPA	(32ULL << 30)
#define BPARAM_SIZE	(1UL << 20)		/* up to 131072 page indices */
#define SEED		7
#define NR_SAMPLES	64			/* fixed pages checked every iteration */
#define MAX_ITERS	64
#define VMM_PAGES	16
#define RLIST_OFF	65536			/* read list, in params[] */

enum layout { SCATTERED, CONTIGUOUS, READ_WS };
static const char *const layouts[] = { "scattered", "contiguous", "scattered+reads" };

enum method { M1, M2, M3, M4, VMR, VMR_NL, NR_METHODS };

static const struct {
	const char *name, *label;
} methods[NR_METHODS] = {
	[M1] = { "M1", "memcpy of the whole snapshot" },
	[M2] = { "M2", "MAP_PRIVATE memfd + MADV_DONTNEED" },
	[M3] = { "M3", "KVM dirty log + copy" },
	[M4] = { "M4", "PAGEMAP_SCAN uffd-wp + copy" },
	[VMR] = { "vmreset", "vmresetfs REVERT ioctl" },
	[VMR_NL] = { "vmreset-nl", "VM-level netlink REVERT" },
};

struct inst {
	enum method m;
	uint64_t npages;
	size_t size;
	uint8_t *ram;		/* what KVM maps and the VMM writes */
	uint8_t *snap;		/* M1, M3, M4: the snapshot copy */
	uint8_t *alias;		/* M4: a second, unregistered view of the memfd */
	int fd;			/* memfd (M2, M4) or vmresetfs file */
	int uffd, pagemap;	/* M4 */
	unsigned long *bitmap;	/* M3 */
	struct page_region *vec; /* M4 */
	struct vmreset_nl *nl;	/* vmreset-nl */
	uint32_t vm_id;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	uint64_t *params;
	uint64_t nread;		/* pages the guest reads before it writes */
	double snapshot_us;
};

static struct {
	uint64_t ram_mib[8];
	int nr_ram;
	uint64_t d[8];
	int nr_d;
	bool want[NR_METHODS];
	double budget_s;
	int max_iters;
	uint64_t clone_mib;
	int clones;
	uint64_t read_ws;
	const char *out;
	const char *mnt;
	bool quick;
} cfg = {
	.ram_mib = { 64, 1024, 4096 }, .nr_ram = 3,
	.d = { 1, 16, 256, 4096, 65536 }, .nr_d = 5,
	.want = { true, true, true, true, true, true },
	.budget_s = 5, .max_iters = 15, .clone_mib = 256, .clones = 16, .read_ws = 2048,
	.out = "vmreset-bench.json",
};

static uint8_t zero[PG];
static double t_start;

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

	switch (in->m) {
	case M2:
		/* Not mapped: the guest would see the memory file. */
		if (pread(in->pagemap, &ent, 8, ((uintptr_t)in->ram / PG + i) * 8) != 8)
			die("pagemap: %s", strerror(errno));
		if (ent >> 63)
			return page_ok(in->ram, i);
		/* fall through */
	case VMR:
	case VMR_NL:
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
static uint64_t verify(const struct inst *in, uint64_t d, bool full)
{
	uint64_t bad = 0, n = in->npages;

	if (full) {
		for (uint64_t i = 0; i < n; i++)
			bad += !page_ok(in->ram, i);
		return bad;
	}
	for (uint64_t k = 0; k < d; k++) {
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

static void m4_scan_arm(struct inst *in, uint64_t *pages, bool copy)
{
	uint64_t start = (uintptr_t)in->ram, end = start + in->size;

	*pages = 0;
	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
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

			/* Through the alias: writing through the registered
			 * view would mark the pages written again. */
			if (copy)
				memcpy(in->alias + off, in->snap + off, len);
			*pages += len / PG;
		}
		start = a.walk_end;
	}
}

static void m4_setup(struct inst *in)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			    UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	};
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	uint64_t pages;

	in->uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (in->uffd < 0)
		die("userfaultfd: %s", strerror(errno));
	if (ioctl(in->uffd, UFFDIO_API, &api))
		die("UFFDIO_API with WP_ASYNC: %s", strerror(errno));
	reg.range.start = (uintptr_t)in->ram;
	reg.range.len = in->size;
	if (ioctl(in->uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER WP: %s", strerror(errno));
	in->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (in->pagemap < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	in->vec = calloc(512, sizeof(*in->vec));
	m4_scan_arm(in, &pages, false);
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

static void setup(struct inst *in, enum method m, uint64_t npages,
		  const char *mnt)
{
	uint32_t flags = 0;
	uint8_t *src;
	double t0;

	memset(in, 0, sizeof(*in));
	in->m = m;
	in->npages = npages;
	in->size = npages * PG;
	in->fd = in->uffd = in->pagemap = -1;

	switch (m) {
	case M1:
	case M3:
		in->ram = map_anon(in->size);
		fill(in->ram, npages);
		t0 = now_us();
		in->snap = map_anon(in->size);
		memcpy(in->snap, in->ram, in->size);
		in->snapshot_us = now_us() - t0;
		break;
	case M2:
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
		memcpy(in->ram, src, in->size);
		munmap(in->ram, in->size);
		in->ram = map_shared(in->fd, in->size, MAP_PRIVATE);
		in->snapshot_us = now_us() - t0;
		munmap(src, in->size);
		in->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (in->pagemap < 0)
			die("/proc/self/pagemap: %s", strerror(errno));
		break;
	case M4:
		in->fd = memfd_of(in->size);
		in->ram = map_shared(in->fd, in->size, MAP_SHARED);
		in->alias = map_shared(in->fd, in->size, MAP_SHARED);
		fill(in->ram, npages);
		t0 = now_us();
		in->snap = map_anon(in->size);
		memcpy(in->snap, in->ram, in->size);
		m4_setup(in);
		in->snapshot_us = now_us() - t0;
		break;
	case VMR:
	case VMR_NL: {
		char name[16];

		snprintf(name, sizeof(name), "ram-%d", m);
		in->fd = vmr_file(mnt, name, in->size);
		if (in->fd < 0)
			die("%s/%s: %s", mnt, name, strerror(errno));
		in->ram = map_shared(in->fd, in->size, MAP_SHARED);
		fill(in->ram, npages);
		break;
	}
	default:
		break;
	}

	in->params = mmap(NULL, BPARAM_SIZE, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (in->params == MAP_FAILED)
		die("mmap params: %s", strerror(errno));
	in->vm = vm_create();
	if (m == M3) {
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
	vm_add_slot(in->vm, 1, VM_TEST_GPA, in->size, in->ram, flags);
	vm_add_slot(in->vm, 2, BPARAM_GPA, BPARAM_SIZE, in->params, 0);
	in->vcpu = vcpu_add(in->vm, 0, guest_run, 6, VM_TEST_GPA, BPARAM_GPA,
			    0, 0, BPARAM_GPA + RLIST_OFF * 8, 0);
	vcpu_run_to_done(in->vcpu);

	if (m == M3) {
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
	if (m == VMR) {
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

/* The timed part: from the guest's stop to memory equal to the snapshot.
 * Returns the pages the method restored (all of them for M1 and M2). */
static uint64_t reset(struct inst *in)
{
	uint64_t pages = 0;

	switch (in->m) {
	case M1:
		memcpy(in->ram, in->snap, in->size);
		return in->npages;
	case M2:
		if (madvise(in->ram, in->size, MADV_DONTNEED))
			die("MADV_DONTNEED: %s", strerror(errno));
		return in->npages;
	case M3: {
		struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = in->bitmap };
		struct kvm_clear_dirty_log c = {
			.slot = 1, .num_pages = in->npages, .dirty_bitmap = in->bitmap,
		};

		if (ioctl(in->vm->fd, KVM_GET_DIRTY_LOG, &log))
			die("KVM_GET_DIRTY_LOG: %s", strerror(errno));
		for (uint64_t w = 0; w < (in->npages + 63) / 64; w++) {
			for (unsigned long b = in->bitmap[w]; b; b &= b - 1) {
				uint64_t off = (w * 64 + __builtin_ctzl(b)) * PG;

				memcpy(in->ram + off, in->snap + off, PG);
				pages++;
			}
		}
		/* Write-protects exactly the pages just restored. */
		if (pages && ioctl(in->vm->fd, KVM_CLEAR_DIRTY_LOG, &c))
			die("KVM_CLEAR_DIRTY_LOG: %s", strerror(errno));
		return pages;
	}
	case M4:
		m4_scan_arm(in, &pages, true);
		return pages;
	case VMR:
		if (vmr_revert(in->fd, &pages, NULL))
			die("VMRESET_IOC_REVERT: %s", strerror(errno));
		return pages;
	case VMR_NL:
		if (vmreset_nl_vm_revert(in->nl, in->vm_id, 0, &pages, NULL))
			die("VM revert: %s", vmreset_nl_errmsg(in->nl));
		return pages;
	default:
		return 0;
	}
}

static void teardown(struct inst *in, const char *mnt)
{
	if (in->nl) {
		vmreset_nl_vm_detach(in->nl, in->vm_id);
		vmreset_nl_close(in->nl);
	}
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
	if (in->m == VMR || in->m == VMR_NL) {
		char path[128];

		snprintf(path, sizeof(path), "%s/ram-%d", mnt, in->m);
		unlink(path);
	}
	free(in->bitmap);
	free(in->vec);
}

/* ---------------------------------------------------------------------
 * Measurements
 */

static void dirty(struct inst *in, uint64_t d, uint64_t tag)
{
	vcpu_set_entry(in->vcpu, guest_run, 6, VM_TEST_GPA, BPARAM_GPA, d, tag,
		       BPARAM_GPA + RLIST_OFF * 8, in->nread);
	if (vcpu_run_to_done(in->vcpu) != d)
		die("%s: the guest did not write %lu pages", methods[in->m].name,
		    (unsigned long)d);
}

/*
 * D page indices to write: spread over RAM (no two adjacent), or one run;
 * with READ_WS, also a read working set spread over RAM.
 */
static void pick_pages(struct inst *in, uint64_t d, enum layout l)
{
	uint64_t n = in->npages, stride = n / d;

	for (uint64_t i = 0; i < d; i++)
		in->params[i] = l == CONTIGUOUS ? n / 4 + i :
			i * stride + (i * 7) % (stride - 1);
	in->nread = l == READ_WS ? cfg.read_ws : 0;
	for (uint64_t i = 0; i < in->nread; i++)
		in->params[RLIST_OFF + i] = i * (n / in->nread) + 1;
}

static void json_stat(FILE *f, const char *key, double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	fprintf(f, "\"%s\": {\"median\": %.2f, \"min\": %.2f, \"max\": %.2f}",
		key, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0],
		v[n - 1]);
}

static FILE *arr_series, *arr_snapshot, *arr_vmm, *arr_clones, *arr_skipped;
static int n_series, n_snapshot, n_vmm, n_clones, n_skipped;

static FILE *item(FILE *arr, int *n)
{
	fprintf(arr, "%s\n  {", (*n)++ ? "," : "");
	return arr;
}

static void __attribute__((format(printf, 2, 3))) skipped(const char *what,
							   const char *fmt, ...)
{
	FILE *f = item(arr_skipped, &n_skipped);
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(f, "\"what\": \"%s\", \"why\": \"%s\"}", what, why);
	say("skipped %s: %s", what, why);
}

static void series(struct inst *in, uint64_t ram_mib, uint64_t d,
		   enum layout l)
{
	double r[MAX_ITERS], c[MAX_ITERS], t0, t1, t2, begin;
	uint64_t tag = 0x5eed0000, pages = 0, bad;
	int it = 0;
	FILE *f;

	pick_pages(in, d, l);
	dirty(in, d, tag++);
	/*
	 * Warm up: the first reset also undoes the last series' pages, and
	 * the first run after it may fault differently. M1 has no state.
	 */
	if (in->m != M1) {
		reset(in);
		dirty(in, d, tag++);
	}
	begin = now_us();
	while (it < cfg.max_iters && it < MAX_ITERS) {
		t0 = now_us();
		pages = reset(in);
		t1 = now_us();
		/* A reset that is fast and wrong is worthless. */
		if (in->m != M1 && in->m != M2 && pages != d)
			die("%s: reset restored %lu pages, the guest wrote %lu",
			    methods[in->m].name, (unsigned long)pages, (unsigned long)d);
		bad = verify(in, d, false);
		if (bad)
			die("%s, %lu MiB, D=%lu: %lu pages differ from the snapshot after reset",
			    methods[in->m].name, (unsigned long)ram_mib,
			    (unsigned long)d, (unsigned long)bad);
		t2 = now_us();
		dirty(in, d, tag++);
		r[it] = t1 - t0;
		c[it] = r[it] + now_us() - t2;
		it++;
		if (it >= 3 && now_us() - begin > cfg.budget_s * 1e6)
			break;
	}
	f = item(arr_series, &n_series);
	fprintf(f, "\"ram_mib\": %lu, \"d\": %lu, \"layout\": \"%s\", \"read_pages\": %lu, \"method\": \"%s\", \"iters\": %d, ",
		(unsigned long)ram_mib, (unsigned long)d, layouts[l],
		(unsigned long)in->nread, methods[in->m].name, it);
	json_stat(f, "reset_us", r, it);
	fprintf(f, ", ");
	json_stat(f, "cycle_us", c, it);
	fprintf(f, ", \"reset_pages\": %lu, \"verified\": \"written pages, the page after each and 64 fixed pages every iteration, read without mapping them; all pages after the method's last series\"}",
		(unsigned long)pages);
	say("%-10s %5lu MiB D=%5lu %-15s reset %10.1f us  cycle %10.1f us  (%d iters)",
	    methods[in->m].name, (unsigned long)ram_mib, (unsigned long)d,
	    layouts[l], r[it / 2], c[it / 2], it);
}

/* After a method's last series: every page of RAM equals the snapshot. */
static void verify_all(struct inst *in, uint64_t ram_mib)
{
	uint64_t bad;

	reset(in);
	bad = verify(in, 0, true);
	if (bad)
		die("%s, %lu MiB: %lu pages differ from the snapshot (full check)",
		    methods[in->m].name, (unsigned long)ram_mib, (unsigned long)bad);
}

/* The VMM writes into guest RAM too (a request, a virtio buffer): which
 * methods undo those writes? */
static void vmm_writes(struct inst *in, uint64_t ram_mib)
{
	uint64_t d = 16, stride = in->npages / d, bad;
	FILE *f;

	pick_pages(in, d, SCATTERED);
	dirty(in, d, 0xabc);
	for (uint64_t k = 0; k < VMM_PAGES; k++) {
		uint64_t q = k * stride + stride / 2;

		fill_page(in->ram, q, ~pat(SEED, q));
	}
	reset(in);
	bad = verify(in, 0, true);
	f = item(arr_vmm, &n_vmm);
	fprintf(f, "\"ram_mib\": %lu, \"d\": %lu, \"vmm_pages\": %d, \"method\": \"%s\", \"differing_pages\": %lu, \"caught\": %s}",
		(unsigned long)ram_mib, (unsigned long)d, VMM_PAGES,
		methods[in->m].name, (unsigned long)bad, bad ? "false" : "true");
	say("%-10s VMM-side writes: %lu of %d pages left differing", methods[in->m].name,
	    (unsigned long)bad, VMM_PAGES);
}

static void snapshot_item(enum method m, uint64_t ram_mib, double *v, int n)
{
	FILE *f = item(arr_snapshot, &n_snapshot);

	fprintf(f, "\"ram_mib\": %lu, \"method\": \"%s\", \"iters\": %d, ",
		(unsigned long)ram_mib, methods[m].name, n);
	json_stat(f, "us", v, n);
	fprintf(f, "}");
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
	FILE *f = item(arr_clones, &n_clones);

	fprintf(f, "\"ram_mib\": %lu, \"n\": %d, \"dirty_pages_each\": %lu, \"method\": \"%s\", \"mem_mib\": %.1f, \"per_instance_mib\": %.1f}",
		(unsigned long)mib, n, (unsigned long)each, method, used, used / n);
	say("%-10s %d instances of %lu MiB, %lu pages dirtied each: %.1f MiB",
	    method, n, (unsigned long)mib, (unsigned long)each, used);
}

static void dirty_instance(uint8_t *ram, uint64_t npages, uint64_t each)
{
	for (uint64_t k = 0; k < each; k++)
		fill_page(ram, k * (npages / each), ~0ULL);
}

/*
 * Memory of N ready instances of one snapshot, each of which dirtied 1%:
 * N copies (what M1, M3 and M4 need), N MAP_PRIVATE mappings of one memfd
 * (M2), N vmresetfs clones.
 */
static void clones(uint64_t mib, int n, const char *mnt)
{
	uint64_t npages = mib << 8, each = npages / 100;
	size_t size = npages * PG;
	uint8_t **map = calloc(n, sizeof(*map)), *snap;
	int *fds = calloc(n, sizeof(*fds)), src;
	char path[160];
	long before;

	before = used_kb("M1", mnt);
	snap = map_anon(size);
	fill(snap, npages);
	for (int i = 0; i < n; i++) {
		map[i] = map_anon(size);
		memcpy(map[i], snap, size);
		dirty_instance(map[i], npages, each);
	}
	clone_item("M1", mib, n, each, before, mnt);
	for (int i = 0; i < n; i++)
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

static void bench_ram(uint64_t mib, bool first, const char *mnt)
{
	uint64_t npages = mib << 8;
	double snap_us[3];
	int first_m = 0;

	while (first_m < NR_METHODS - 1 && !cfg.want[first_m])
		first_m++;

	for (int m = 0; m < NR_METHODS; m++) {
		int reps = mib <= 256 ? 3 : 1;
		struct inst in;

		if (!cfg.want[m])
			continue;
		setup(&in, m, npages, mnt);
		say("%-10s %5lu MiB: snapshot taken in %.1f us", methods[m].name,
		    (unsigned long)mib, in.snapshot_us);
		snap_us[0] = in.snapshot_us;
		for (int k = 0; k < cfg.nr_d; k++) {
			uint64_t d = cfg.d[k];

			/* The netlink round trip is lost in the noise there. */
			if (m == VMR_NL && d > 4096)
				continue;
			if (d * 2 > npages) {
				if (m == first_m) {
					char what[64];

					snprintf(what, sizeof(what), "D=%lu at %lu MiB",
						 (unsigned long)d, (unsigned long)mib);
					skipped(what, "scattered pages need RAM of at least 2 x D pages");
				}
				continue;
			}
			series(&in, mib, d, SCATTERED);
		}
		if (first && npages >= 4096 * 2)
			series(&in, mib, 4096, CONTIGUOUS);
		if (first && cfg.read_ws && cfg.read_ws * 2 <= npages) {
			/* Methods that drop all mappings pay for the reads too. */
			for (int k = 0; k < cfg.nr_d; k++)
				if (cfg.d[k] == 16 || cfg.d[k] == 256)
					series(&in, mib, cfg.d[k], READ_WS);
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
		snapshot_item(m, mib, snap_us, reps);
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
"  -r, --ram LIST        guest RAM sizes in MiB (default: 64,1024,4096;\n"
"                        sizes that do not fit in memory are skipped)\n"
"  -d, --dirty LIST      dirtied pages per run (default: 1,16,256,4096,65536)\n"
"  -m, --methods LIST    of M1,M2,M3,M4,vmreset,vmreset-nl (default: all)\n"
"  -b, --budget SEC      time for one series; at least 3 iterations (default: 5)\n"
"  -i, --iters N         at most N iterations per series (default: 15)\n"
"  -c, --clones N        instances for the memory comparison, 0 for none\n"
"                        (default: 16)\n"
"      --clone-ram MIB   RAM of each of those instances (default: 256)\n"
"  -w, --read-ws N       pages the guest also reads, in extra series at the\n"
"                        first RAM size, D=16 and 256 (default: 2048; 0: none)\n"
"  -q, --quick           a fast smoke run: 16 MiB, D up to 256, 3 iterations\n"
"                        (sets the options above; later ones override it)\n"
"  -h, --help            this text\n");
}

static int parse_list(const char *arg, const char *what, uint64_t *out, int max)
{
	char *s = strdup(arg), *tok, *save, *end;
	int n = 0;

	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long long v = strtoull(tok, &end, 10);

		if (*end || !v || n == max || v > (1ULL << 20))
			die("bad %s '%s' in '%s' (want up to %d positive numbers)",
			    what, tok, arg, max);
		out[n++] = v;
	}
	free(s);
	if (!n)
		die("empty %s list", what);
	return n;
}

static void parse_methods(const char *arg)
{
	char *s = strdup(arg), *tok, *save;

	memset(cfg.want, 0, sizeof(cfg.want));
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int m;

		for (m = 0; m < NR_METHODS; m++)
			if (!strcasecmp(tok, methods[m].name))
				break;
		if (m == NR_METHODS)
			die("unknown method '%s' (M1, M2, M3, M4, vmreset, vmreset-nl)", tok);
		cfg.want[m] = true;
	}
	free(s);
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
		{ "budget", required_argument, NULL, 'b' },
		{ "iters", required_argument, NULL, 'i' },
		{ "clones", required_argument, NULL, 'c' },
		{ "clone-ram", required_argument, NULL, 'C' },
		{ "read-ws", required_argument, NULL, 'w' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int o;

	while ((o = getopt_long(argc, argv, "o:r:d:m:b:i:c:w:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'o': cfg.out = optarg; break;
		case 'r': cfg.nr_ram = parse_list(optarg, "RAM size", cfg.ram_mib, 8); break;
		case 'd': cfg.nr_d = parse_list(optarg, "page count", cfg.d, 8); break;
		case 'm': parse_methods(optarg); break;
		case 'b': cfg.budget_s = parse_num(optarg, "budget", 0, 3600); break;
		case 'i': cfg.max_iters = parse_num(optarg, "iterations", 3, MAX_ITERS); break;
		case 'c': cfg.clones = parse_num(optarg, "clone count", 0, 256); break;
		case 'C': cfg.clone_mib = parse_num(optarg, "clone RAM", 1, 4096); break;
		case 'w': cfg.read_ws = parse_num(optarg, "read set", 0, 65536); break;
		case 'q':
			cfg.ram_mib[0] = 16, cfg.nr_ram = 1;
			cfg.d[0] = 1, cfg.d[1] = 16, cfg.d[2] = 256, cfg.nr_d = 3;
			cfg.max_iters = 3, cfg.budget_s = 0;
			cfg.clones = 4, cfg.clone_mib = 16, cfg.read_ws = 256;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'; see --help", argv[optind]);
	for (int k = 0; k < cfg.nr_d; k++)
		if (cfg.d[k] > RLIST_OFF)
			die("at most %d dirty pages per run", RLIST_OFF);
	for (int k = 0; k < cfg.nr_ram; k++)
		if (cfg.ram_mib[k] > 4096 || cfg.ram_mib[k] < 16)
			die("RAM sizes go from 16 to 4096 MiB");
}

static void cat_array(FILE *out, const char *name, FILE *arr, bool last)
{
	char *buf;
	size_t len;

	fflush(arr);
	fseek(arr, 0, SEEK_END);
	len = ftell(arr);
	buf = malloc(len + 1);
	rewind(arr);
	len = fread(buf, 1, len, arr);
	fprintf(out, " \"%s\": [%.*s\n ]%s\n", name, (int)len, buf, last ? "" : ",");
	free(buf);
	fclose(arr);
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

/* Strings from the system go into JSON: keep them plain. */
static const char *json_safe(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '_';
	return s;
}

static void write_json(void)
{
	FILE *out = fopen(cfg.out, "w");
	struct utsname u;
	char cpu[128];

	if (!out)
		die("%s: %s", cfg.out, strerror(errno));
	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	fprintf(out, "{\n \"env\": {\"kernel\": \"%s\", \"cpu\": \"%s\", \"cpus\": %ld, \"vm_mem_mib\": %ld, \"duration_s\": %.0f},\n",
		json_safe(u.release), json_safe(cpu), sysconf(_SC_NPROCESSORS_ONLN), meminfo("MemTotal") / 1024,
		(now_us() - t_start) / 1e6);
	fprintf(out, " \"methods\": [");
	for (int m = 0; m < NR_METHODS; m++)
		fprintf(out, "%s\n  {\"name\": \"%s\", \"label\": \"%s\"}", m ? "," : "",
			methods[m].name, methods[m].label);
	fprintf(out, "\n ],\n");
	cat_array(out, "series", arr_series, false);
	cat_array(out, "snapshot", arr_snapshot, false);
	cat_array(out, "vmm_writes", arr_vmm, false);
	cat_array(out, "clones", arr_clones, false);
	cat_array(out, "skipped", arr_skipped, true);
	fprintf(out, "}\n");
	if (fclose(out))
		die("%s: %s", cfg.out, strerror(errno));
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
	arr_series = tmpfile(), arr_snapshot = tmpfile(), arr_vmm = tmpfile();
	arr_clones = tmpfile(), arr_skipped = tmpfile();
	if (!arr_series || !arr_snapshot || !arr_vmm || !arr_clones || !arr_skipped)
		die("tmpfile: %s", strerror(errno));

	for (int k = 0; k < cfg.nr_ram; k++)
		max_mib = cfg.ram_mib[k] > max_mib ? cfg.ram_mib[k] : max_mib;
	if (cfg.clone_mib * 2 > max_mib)
		max_mib = cfg.clone_mib * 2;
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

	for (int k = 0; k < cfg.nr_d; k++) {
		if (cfg.want[VMR_NL] && cfg.d[k] > 4096) {
			skipped("vmreset-nl at D > 4096",
				"the kernel path is the ioctl's; the netlink round trip is noise there");
			break;
		}
	}
	for (int k = 0; k < cfg.nr_ram; k++) {
		uint64_t mib = cfg.ram_mib[k];
		long avail = meminfo("MemAvailable") / 1024;
		char what[64];

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
	if (cfg.clones) {
		long avail = meminfo("MemAvailable") / 1024;

		if ((long)(cfg.clone_mib * (cfg.clones + 2) + 256) > avail)
			skipped("instance memory", "%d copies of %lu MiB do not fit in %ld MiB",
				cfg.clones, (unsigned long)cfg.clone_mib, avail);
		else
			clones(cfg.clone_mib, cfg.clones, mnt);
	}
	vmr_umount(mnt);
	write_json();
	say("results in %s", cfg.out);
	return 0;
}
