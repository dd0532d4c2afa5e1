// SPDX-License-Identifier: GPL-2.0
/*
 * Hot pages: restored in place at REVERT, never unmapped, so a guest's next
 * run takes no fault on them. Checks whole pages against what the file held
 * at the snapshot, with real KVM guests writing; the bound, the dirty list,
 * and clones, punch, truncate and preserved ranges over hot pages.
 */
#define _GNU_SOURCE
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sys/statfs.h>
#include "harness.h"
#include "kvm_guest.h"
#include "vmr_util.h"
#include "vmr_guest.h"

#define NPAGES		1024

/* Pages [first, first + n), rounds times, each round a new tag; sync after. */
GUEST_CODE static uint64_t guest_fill_rounds(uint64_t base, uint64_t first,
					     uint64_t n, uint64_t tag)
{
	for (uint64_t r = 1;; r++) {
		for (uint64_t i = first; i < first + n; i++) {
			volatile uint64_t *p = (volatile uint64_t *)(base + i * PG);

			for (uint64_t w = 0; w < PG / 8; w++)
				p[w] = tag ^ r ^ (i << 12) ^ w;
		}
		GUEST_SYNC(r);
	}
	return 0;
}

static void fill_whole(uint8_t *map, uint64_t idx, uint64_t seed)
{
	uint64_t *p = (uint64_t *)(map + idx * PG);

	for (uint64_t w = 0; w < PG / 8; w++)
		p[w] = pat(seed, idx) ^ (w << 32);
}

static int hot(int fd, uint32_t op, const struct vmreset_range *r, uint32_t nr)
{
	struct vmreset_hot h = { .op = op, .nr = nr, .ranges = (uintptr_t)r };

	return ioctl(fd, VMRESET_IOC_HOT, &h);
}

static int hot_range(int fd, uint32_t op, uint64_t first, uint64_t n)
{
	struct vmreset_range r = { first * PG, n * PG };

	return hot(fd, op, &r, 1);
}

static int hot_config(int fd, uint32_t flags, struct vmreset_hot_config *c)
{
	c->flags = flags;
	return ioctl(fd, VMRESET_IOC_HOT_CONFIG, c);
}

/* Number of pages in the ranges listed by @cmd (with @flags). */
static long list_pages(int fd, unsigned long cmd, uint32_t flags)
{
	static struct vmreset_range r[NPAGES];
	struct vmreset_range_list l = { .ranges = (uintptr_t)r, .nr = NPAGES,
					.flags = flags };
	long n = 0;

	if (ioctl(fd, cmd, &l))
		return -1;
	for (uint32_t i = 0; i < l.nr; i++)
		n += r[i].length / PG;
	return n;
}

FIXTURE(hot) {
	char dir[64];
	int fd;
	uint8_t *map;
	uint64_t *params;
	struct kvm_vm *vm;
	uint8_t *snap;		/* the file's content at the snapshot */
	uint8_t *now;
};

FIXTURE_SETUP(hot)
{
	self->fd = -1;
	self->map = NULL;
	self->vm = NULL;
	self->params = NULL;
	self->snap = malloc(NPAGES * PG);
	self->now = malloc(NPAGES * PG);
	ASSERT_NONNULL(self->snap);
	ASSERT_NONNULL(self->now);
	TEST_REQUIRE_KVM();
	ASSERT_EQ(0, vmr_mount(self->dir, "size=64m"))
		TH_LOG("mount vmresetfs: %s", strerror(errno));
	self->fd = vmr_file(self->dir, "ram", NPAGES * PG);
	ASSERT_LE(0, self->fd);
	self->map = vmr_map(self->fd, NPAGES * PG);
	ASSERT_NONNULL(self->map);
	for (uint64_t i = 0; i < NPAGES; i++)
		fill_whole(self->map, i, 5);
	self->params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->params);
	self->vm = vm_create();
	vm_add_slot(self->vm, 1, VM_TEST_GPA, NPAGES * PG, self->map, 0);
	vm_add_slot(self->vm, 2, PARAM_GPA, PARAM_SIZE, self->params, 0);
}

FIXTURE_TEARDOWN(hot)
{
	vm_free(self->vm);
	if (self->params && self->params != MAP_FAILED)
		munmap(self->params, PARAM_SIZE);
	if (self->map)
		munmap(self->map, NPAGES * PG);
	if (self->fd >= 0)
		close(self->fd);
	if (self->dir[0])
		vmr_umount(self->dir);
	free(self->snap);
	free(self->now);
}

static void save_snap(FIXTURE_DATA(hot) *self)
{
	ASSERT_EQ((ssize_t)(NPAGES * PG), pread(self->fd, self->snap, NPAGES * PG, 0));
}

/*
 * The file, read both ways (or with pread only, which maps nothing and so
 * leaves the fault counters alone), is exactly what it was at the snapshot.
 */
static void check_snap_how(FIXTURE_DATA(hot) *self, bool map)
{
	ASSERT_EQ((ssize_t)(NPAGES * PG), pread(self->fd, self->now, NPAGES * PG, 0));
	for (uint64_t i = 0; i < NPAGES; i++) {
		ASSERT_EQ(0, memcmp(self->snap + i * PG, self->now + i * PG, PG))
			TH_LOG("page %lu differs from the snapshot (pread)",
			       (unsigned long)i);
		if (map)
			ASSERT_EQ(0, memcmp(self->snap + i * PG, self->map + i * PG, PG))
			TH_LOG("page %lu differs from the snapshot (mapping)",
			       (unsigned long)i);
	}
}

#define check_snap(self)	check_snap_how(self, true)
#define check_snap_pread(self)	check_snap_how(self, false)

TEST_F(hot, guest_next_run_takes_no_faults)
{
	const uint64_t nhot = 64, ncold = 16;
	struct vmreset_stats st, st2;
	struct vmreset_revert rv = { .flags = VMRESET_REVERT_F_DRY_RUN };
	struct kvm_vcpu *vcpu;
	uint64_t n = 0, reverted = 0;

	/* Hot: every 8th page of the first 512; cold: 16 pages above. */
	for (uint64_t i = 0; i < nhot; i++)
		ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, i * 8, 1));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(nhot, st.hot_pages);
	ASSERT_EQ((long)nhot, list_pages(self->fd, VMRESET_IOC_HOT_LIST, 0));
	ASSERT_EQ((long)nhot, list_pages(self->fd, VMRESET_IOC_HOT_LIST,
					 VMRESET_LIST_F_EXPLICIT));

	for (uint64_t i = 0; i < nhot; i++)
		self->params[n++] = i * 8;
	for (uint64_t i = 0; i < ncold; i++)
		self->params[n++] = 600 + i;
	vcpu = vcpu_add(self->vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0x1111);

	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	for (int cycle = 0; cycle < 5; cycle++) {
		uint64_t faults0 = st.faults, cow0 = st.cow_faults;

		vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n,
			       0x1111 + cycle);
		ASSERT_EQ(n, vcpu_run_to_done(vcpu));
		ASSERT_EQ(0, vmr_stats(self->fd, &st2));
		if (cycle > 0) {
			/*
			 * After a revert the hot pages are still mapped
			 * writable: only the cold pages fault (once each, for
			 * the write after they were unmapped) and copy.
			 */
			ASSERT_EQ(faults0 + ncold, st2.faults);
			ASSERT_EQ(cow0 + ncold, st2.cow_faults);
		}
		ASSERT_EQ(n, st2.dirty_pages);	/* hot ones by content */
		/* The dirty list has the written hot pages too. */
		ASSERT_EQ((long)n, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
		ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_REVERT, &rv));
		ASSERT_EQ(n, rv.reverted_pages);
		ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
		ASSERT_EQ(n, reverted);
		check_snap_pread(self);
		ASSERT_EQ(0, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
		ASSERT_EQ(0, vmr_stats(self->fd, &st));
	}
	check_snap(self);
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(nhot, st.hot_pages);
	ASSERT_EQ(5 * nhot, st.hot_copies);
	ASSERT_EQ(0, st.hot_demotions);

	/* A VMM write through the mapping to a hot page is reverted too. */
	memset(self->map + 8 * PG, 0xab, PG);
	ASSERT_EQ(1, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(1, reverted);
	check_snap(self);

	/*
	 * The last hot page, after 63 unchanged ones: DIRTY compares 32 hot
	 * pages per hold of the file's lock and goes on from where it
	 * stopped; it lists that page alone, and STATS counts it alone.
	 */
	self->map[(nhot - 1) * 8 * PG + 100] ^= 1;
	{
		struct vmreset_range r[4];
		struct vmreset_range_list l = { .ranges = (uintptr_t)r, .nr = 4 };

		ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_DIRTY, &l));
		ASSERT_EQ(1, l.nr);
		ASSERT_EQ(VMRESET_CURSOR_END, l.cursor);
		ASSERT_EQ((nhot - 1) * 8 * PG, r[0].offset);
		ASSERT_EQ(PG, r[0].length);
	}
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(1, st.dirty_pages);
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(1, reverted);
	check_snap(self);

	/* And pwrite. */
	memset(self->now, 0xcd, PG);
	ASSERT_EQ((ssize_t)PG, pwrite(self->fd, self->now, PG, 16 * PG));
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(1, reverted);
	check_snap(self);

	/* Removing the set demotes the pages; reverts still exact. */
	ASSERT_EQ(0, hot(self->fd, VMRESET_HOT_SET, NULL, 0));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(0, st.hot_pages);
	ASSERT_EQ(nhot, st.hot_demotions);
	vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0x2222);
	ASSERT_EQ(n, vcpu_run_to_done(vcpu));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(n, st.dirty_pages);
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(n, reverted);
	check_snap(self);
}

/* Hot pages added while dirty, with a snapshot: restored at the next revert. */
TEST_F(hot, promoted_while_dirty)
{
	struct vmreset_stats st;
	uint64_t reverted = 0;

	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	memset(self->map + 3 * PG, 0x77, 4 * PG);	/* pages 3..6 dirty */
	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 0, 16));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(16, st.hot_pages);
	ASSERT_EQ(4, st.dirty_pages);		/* moved to hot, still changed */
	ASSERT_EQ(4, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(4, reverted);
	check_snap(self);

	/* SNAPSHOT takes hot pages' current content as the new one. */
	memset(self->map + 1 * PG, 0x55, PG);
	ASSERT_EQ(0, vmr_snapshot(self->fd, &reverted));
	ASSERT_EQ(1, reverted);
	save_snap(self);
	memset(self->map + 1 * PG, 0x66, 2 * PG);
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(2, reverted);
	check_snap(self);
}

struct runner {
	struct kvm_vcpu *vcpu;
	pthread_t th;
	int go, done, failed;
};

static void *run_round(void *arg)
{
	struct runner *r = arg;
	struct ucall uc;

	if (vcpu_run(r->vcpu, &uc) != UCALL_SYNC) {
		fprintf(stderr, "# vcpu: %s\n", vcpu_exit_str(r->vcpu));
		r->failed = 1;
	}
	return NULL;
}

TEST_F(hot, two_vcpus)
{
	struct runner r[2];
	struct vmreset_stats st;
	uint64_t faults0 = 0;

	/* vCPU v writes pages [v * 256, v * 256 + 128): half hot, half not. */
	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 0, 64));
	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 256, 64));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	for (int v = 0; v < 2; v++) {
		memset(&r[v], 0, sizeof(r[v]));
		r[v].vcpu = vcpu_add(self->vm, v, guest_fill_rounds, 4, VM_TEST_GPA,
				     v * 256, 128, 0x4000 + v);
	}
	for (int round = 0; round < 6; round++) {
		uint64_t reverted = 0;

		for (int v = 0; v < 2; v++)
			ASSERT_EQ(0, pthread_create(&r[v].th, NULL, run_round, &r[v]));
		for (int v = 0; v < 2; v++) {
			pthread_join(r[v].th, NULL);
			ASSERT_EQ(0, r[v].failed);
		}
		ASSERT_EQ(0, vmr_stats(self->fd, &st));
		if (round > 0)
			ASSERT_EQ(faults0 + 128, st.faults);	/* cold pages only */
		ASSERT_EQ(256, st.dirty_pages);
		ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
		ASSERT_EQ(256, reverted);
		check_snap_pread(self);
		ASSERT_EQ(0, vmr_stats(self->fd, &st));
		faults0 = st.faults;
	}
	check_snap(self);
	ASSERT_EQ(128, st.hot_pages);
}

/* Run the guest over the @n pages in params, revert, check; stats after. */
static void cycle(FIXTURE_DATA(hot) *self, struct kvm_vcpu *vcpu, uint64_t n,
		  uint64_t tag, struct vmreset_stats *before,
		  struct vmreset_stats *after)
{
	uint64_t reverted = 0;

	ASSERT_EQ(0, vmr_stats(self->fd, before));
	vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, tag);
	ASSERT_EQ(n, vcpu_run_to_done(vcpu));
	ASSERT_EQ((long)n, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(n, reverted);
	check_snap_pread(self);
	ASSERT_EQ(0, vmr_stats(self->fd, after));
}

TEST_F(hot, learned_set_converges_and_shrinks)
{
	struct vmreset_hot_config c = { .mode = VMRESET_HOT_LEARN };
	struct vmreset_stats st0, st1, st2;
	static struct vmreset_range r[64];
	struct vmreset_range_list l = { .ranges = (uintptr_t)r, .nr = 64 };
	struct kvm_vcpu *vcpu;
	const uint64_t n = 32;
	uint64_t tag = 0x100;

	ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_MODE, &c));
	ASSERT_EQ(2, c.learn_k);
	ASSERT_EQ(4, c.learn_n);
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);

	/* Steady: the same 32 scattered pages every cycle. */
	for (uint64_t i = 0; i < n; i++)
		self->params[i] = i * 7;
	vcpu = vcpu_add(self->vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, tag);
	cycle(self, vcpu, n, tag++, &st0, &st1);
	ASSERT_EQ(0, st1.hot_pages);
	cycle(self, vcpu, n, tag++, &st0, &st1);
	ASSERT_EQ(n, st1.hot_pages);		/* dirty in 2 of the last 4 */
	ASSERT_EQ(n, st1.hot_promotions);
	/* Converged: the next run neither faults nor copies on them. */
	cycle(self, vcpu, n, tag++, &st1, &st2);
	ASSERT_EQ(st1.faults, st2.faults);
	ASSERT_EQ(st1.cow_faults, st2.cow_faults);
	ASSERT_EQ(st1.hot_copies + n, st2.hot_copies);
	ASSERT_EQ(n, st2.hot_pages);

	/* The workload moves: new pages are learned, the old ones let go. */
	for (uint64_t i = 0; i < n; i++)
		self->params[i] = 512 + i * 3;
	for (int k = 0; k < 6; k++)
		cycle(self, vcpu, n, tag++, &st0, &st1);
	ASSERT_EQ(n, st1.hot_pages);
	ASSERT_EQ(2 * n, st1.hot_promotions);
	ASSERT_EQ(n, st1.hot_demotions);
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_HOT_LIST, &l));
	ASSERT_EQ(n, l.nr);
	for (uint64_t i = 0; i < n; i++) {
		ASSERT_EQ((512 + i * 3) * PG, r[i].offset);
		ASSERT_EQ(PG, r[i].length);
	}
	cycle(self, vcpu, n, tag++, &st1, &st2);
	ASSERT_EQ(st1.faults, st2.faults);
	check_snap(self);

	/* Off: all demoted, reverts exact and tracked by faults again. */
	c.mode = VMRESET_HOT_OFF;
	ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_MODE, &c));
	ASSERT_EQ(0, c.hot_pages);
	cycle(self, vcpu, n, tag++, &st1, &st2);
	ASSERT_EQ(st1.cow_faults + n, st2.cow_faults);
	ASSERT_EQ(0, st2.hot_pages);
	check_snap(self);
}

TEST_F(hot, clone_demotes_and_isolates)
{
	struct vmreset_stats st;
	uint64_t reverted = 0;
	uint8_t *cmap;
	int cfd;

	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 0, 32));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	memset(self->map, 0x21, 8 * PG);		/* hot pages 0..7 written */
	save_snap(self);			/* what the clone gets */

	cfd = vmr_file(self->dir, "clone", 0);
	ASSERT_LE(0, cfd);
	ASSERT_EQ(0, ioctl(cfd, FICLONE, self->fd));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(0, st.hot_pages);			/* shared now: demoted */
	ASSERT_EQ(8, st.dirty_pages);			/* the written ones */
	ASSERT_EQ(32, st.hot_demotions);
	cmap = vmr_map(cfd, NPAGES * PG);
	ASSERT_NONNULL(cmap);
	ASSERT_EQ(0, memcmp(cmap, self->snap, NPAGES * PG));

	/* Writing the source leaves the clone alone, and reverts exactly. */
	memset(self->map, 0x43, 16 * PG);
	ASSERT_EQ(0, memcmp(cmap, self->snap, NPAGES * PG));
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(16, reverted);
	for (uint64_t i = 0; i < NPAGES; i++)
		fill_whole(self->snap, i, 5);
	check_snap(self);

	/*
	 * Hot pages in the clone: shared pages cannot be hot, pages the clone
	 * made private can.
	 */
	for (uint64_t i = 0; i < 8; i++)
		fill_whole(cmap, i, 9);
	ASSERT_EQ(0, vmr_snapshot(cfd, NULL));
	ASSERT_EQ(0, hot_range(cfd, VMRESET_HOT_ADD, 0, 16));
	ASSERT_EQ(0, vmr_stats(cfd, &st));
	ASSERT_EQ(8, st.hot_pages);
	ASSERT_EQ(NPAGES - 8, st.shared_pages);
	ASSERT_EQ((ssize_t)(NPAGES * PG), pread(cfd, self->now, NPAGES * PG, 0));
	memset(cmap, 0x65, 16 * PG);
	ASSERT_EQ(0, vmr_revert(cfd, &reverted, NULL));
	ASSERT_EQ(16, reverted);
	ASSERT_EQ(0, memcmp(cmap, self->now, NPAGES * PG));
	check_snap(self);			/* the source is untouched */
	munmap(cmap, NPAGES * PG);
	close(cfd);
}

TEST_F(hot, preserved_overlap_and_punch)
{
	struct vmreset_stats st;
	uint64_t reverted = 0, kept = 0;

	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 0, 32));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	memset(self->map + 4 * PG, 0x99, 8 * PG);	/* hot pages 4..11 */

	/* Preserving 8..15 demotes them; 8..11 keep their new content. */
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 8 * PG, 8 * PG));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(24, st.hot_pages);
	ASSERT_EQ(8, st.dirty_pages);		/* 4 hot, 4 demoted */
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, &kept));
	ASSERT_EQ(4, reverted);
	ASSERT_EQ(4, kept);
	memset(self->snap + 8 * PG, 0x99, 4 * PG);
	check_snap(self);
	/* Not promoted again while preserved. */
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(24, st.hot_pages);

	/* Punch a hole over hot pages 16..19 and truncate over 30, 31. */
	save_snap(self);
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       16 * PG, 4 * PG));
	ASSERT_EQ(0, ftruncate(self->fd, 30 * PG));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(18, st.hot_pages);
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	check_snap(self);
}

TEST_F(hot, bound_holds)
{
	struct vmreset_hot_config c = { 0 };
	struct vmreset_stats st;
	uint64_t reverted = 0;

	ASSERT_EQ(0, hot_config(self->fd, 0, &c));
	ASSERT_EQ(VMRESET_HOT_EXPLICIT, c.mode);
	ASSERT_EQ(64 * 256 / 4, c.mount_max_pages);	/* a quarter of size= */
	c.max_pages = 8;
	ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_MAX, &c));
	ASSERT_EQ(8, c.max_pages);
	errno = 0;
	ASSERT_EQ(-1, hot_range(self->fd, VMRESET_HOT_ADD, 0, 9));
	ASSERT_EQ(ENOSPC, errno);
	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 0, 8));
	ASSERT_EQ(-1, hot_range(self->fd, VMRESET_HOT_ADD, 100, 1));
	ASSERT_EQ(ENOSPC, errno);
	c.max_pages = 4;
	ASSERT_EQ(-1, hot_config(self->fd, VMRESET_HOT_CFG_MAX, &c));
	ASSERT_EQ(EBUSY, errno);
	c.max_pages = 1UL << 40;
	ASSERT_EQ(-1, hot_config(self->fd, VMRESET_HOT_CFG_MAX, &c));
	ASSERT_EQ(EINVAL, errno);
	c.mode = 7;
	ASSERT_EQ(-1, hot_config(self->fd, VMRESET_HOT_CFG_MODE, &c));
	ASSERT_EQ(EINVAL, errno);
	c.learn_k = 3;
	c.learn_n = 2;
	ASSERT_EQ(-1, hot_config(self->fd, VMRESET_HOT_CFG_LEARN, &c));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, hot_config(self->fd, 1U << 31, &c));
	ASSERT_EQ(EINVAL, errno);

	/* The mount's bound: remount with room for 5 hot pages. */
	ASSERT_EQ(0, mount("none", self->dir, "vmresetfs", MS_REMOUNT, "hot_size=20k"));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(5, st.hot_pages);
	ASSERT_EQ(0, hot_config(self->fd, 0, &c));
	ASSERT_EQ(5, c.mount_hot_pages);
	ASSERT_EQ(5, c.mount_max_pages);

	/* Off: everything demoted, still exact; on again: promoted again. */
	save_snap(self);
	memset(self->map, 0x12, 8 * PG);
	c.mode = VMRESET_HOT_OFF;
	ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_MODE, &c));
	ASSERT_EQ(0, c.hot_pages);
	ASSERT_EQ(8, c.explicit_pages);
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(8, reverted);
	check_snap(self);
	c.mode = VMRESET_HOT_EXPLICIT;
	ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_MODE, &c));
	ASSERT_EQ(5, c.hot_pages);

	/* Bad input to HOT. */
	struct vmreset_hot h = { .op = 9 };

	ASSERT_EQ(-1, ioctl(self->fd, VMRESET_IOC_HOT, &h));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, hot_range(self->fd, VMRESET_HOT_ADD, 0, 0));
	ASSERT_EQ(EINVAL, errno);
	struct vmreset_range bad = { 100, PG };

	ASSERT_EQ(-1, hot(self->fd, VMRESET_HOT_ADD, &bad, 1));
	ASSERT_EQ(EINVAL, errno);
	h.op = VMRESET_HOT_ADD;
	h.nr = 1;
	h.ranges = 8;
	ASSERT_EQ(-1, ioctl(self->fd, VMRESET_IOC_HOT, &h));
	ASSERT_EQ(EFAULT, errno);
}

static double median5(double *v)
{
	qsort(v, 5, sizeof(*v), cmp_double);
	return v[2];
}

/*
 * Not a timed test (nothing is asserted on time): it logs, side by side in
 * one run, what REVERT and the guest's next run cost with the same 256
 * written pages ordinary and hot, for the closing numbers.
 */
TEST_F(hot, costs_logged)
{
	const uint64_t n = 256;
	double rv[2][5], run[2][5];
	struct vmreset_stats st0, st1;
	uint64_t faults[2] = { 0 };
	struct kvm_vcpu *vcpu;

	for (uint64_t i = 0; i < n; i++)
		self->params[i] = (i * 37) % NPAGES;
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	vcpu = vcpu_add(self->vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 1);
	for (int hot_on = 0; hot_on < 2; hot_on++) {
		if (hot_on) {
			struct vmreset_range r[256];

			for (uint64_t i = 0; i < n; i++)
				r[i] = (struct vmreset_range){ self->params[i] * PG, PG };
			ASSERT_EQ(0, hot(self->fd, VMRESET_HOT_SET, r, n));
		}
		/* One cycle to settle, then five measured. */
		for (int c = -1; c < 5; c++) {
			double t0, t1, t2;

			ASSERT_EQ(0, vmr_stats(self->fd, &st0));
			vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n,
				       0x77 + c);
			t0 = now_us();
			ASSERT_EQ(n, vcpu_run_to_done(vcpu));
			t1 = now_us();
			ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
			t2 = now_us();
			ASSERT_EQ(0, vmr_stats(self->fd, &st1));
			if (c < 0)
				continue;
			run[hot_on][c] = t1 - t0;
			rv[hot_on][c] = t2 - t1;
			faults[hot_on] += st1.faults - st0.faults;
		}
		check_snap_pread(self);
	}
	ASSERT_EQ(0, faults[1]);
	ASSERT_EQ(5 * n, faults[0]);
	TH_LOG("%lu pages written per cycle, medians of 5 cycles:",
	       (unsigned long)n);
	TH_LOG("  ordinary: revert %.0f us, next guest run %.0f us, %lu faults/cycle",
	       median5(rv[0]), median5(run[0]), (unsigned long)(faults[0] / 5));
	TH_LOG("  hot:      revert %.0f us, next guest run %.0f us, %lu faults/cycle",
	       median5(rv[1]), median5(run[1]), (unsigned long)(faults[1] / 5));
}

static int set_merge_gap(unsigned int v)
{
	return vmr_set_param("merge_gap", v);
}

/*
 * Scattered dirty pages with unmapped pages between them: one unmap per
 * page (merge_gap=0) against one per batch (the default). Content and
 * faults must not change; the REVERT times are logged, not asserted.
 */
TEST_F(hot, merged_unmaps_logged)
{
	const uint64_t n = 64;
	unsigned int def;
	double rv[2][5];
	struct vmreset_stats st0, st1;
	struct kvm_vcpu *vcpu;
	char path[128];
	int fd;
	uint8_t *map;

	/* A fresh file written with pwrite: nothing maps its pages. */
	snprintf(path, sizeof(path), "%s/sparse", self->dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)(NPAGES * PG), pwrite(fd, self->snap, NPAGES * PG, 0));
	map = vmr_map(fd, NPAGES * PG);
	ASSERT_NONNULL(map);
	vm_remove_slot(self->vm, 1);
	vm_add_slot(self->vm, 1, VM_TEST_GPA, NPAGES * PG, map, 0);
	ASSERT_EQ(0, vmr_snapshot(fd, NULL));
	for (uint64_t i = 0; i < n; i++)
		self->params[i] = i * 8;
	vcpu = vcpu_add(self->vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 1);
	ASSERT_EQ(0, vmr_get_param("merge_gap", &def));
	ASSERT_LE(8u, def);
	/* In turn, so that the machine's load drifts over both alike. */
	for (int c = 0; c < 5; c++) {
		for (int merge = 0; merge < 2; merge++) {
			double t0;

			ASSERT_EQ(0, set_merge_gap(merge ? def : 0));

			ASSERT_EQ(0, vmr_stats(fd, &st0));
			vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA,
				       n, 0x99 + c);
			ASSERT_EQ(n, vcpu_run_to_done(vcpu));
			t0 = now_us();
			ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
			rv[merge][c] = now_us() - t0;
			ASSERT_EQ(0, vmr_stats(fd, &st1));
			ASSERT_EQ(n, st1.cow_faults - st0.cow_faults);
			ASSERT_EQ((ssize_t)(NPAGES * PG), pread(fd, self->now, NPAGES * PG, 0));
			ASSERT_EQ(0, memcmp(self->now, self->snap, NPAGES * PG));
		}
	}
	ASSERT_EQ(0, set_merge_gap(def));
	TH_LOG("revert of %lu pages 8 apart, unmapped in between: %.0f us one unmap each, %.0f us merged (medians of 5)",
	       (unsigned long)n, median5(rv[0]), median5(rv[1]));
	munmap(map, NPAGES * PG);
	close(fd);
}

/*
 * A REVERT's unmaps cover the gaps between scattered dirty pages only where
 * nothing maps them: clean pages mapped in between (read by the VMM, or
 * written by the guest and hot) keep their PTEs, so reading or writing
 * them again after the REVERT takes no fault (merge_gap must not reach
 * across them). Twice: the second time every page is mapped read-only
 * (the first check read them all) but one gap page, which the VMM unmapped
 * itself (MADV_DONTNEED).
 */
TEST_F(hot, mapped_gap_pages_stay_mapped)
{
	const uint64_t n = 64;
	struct vmreset_stats st0, st1;
	struct kvm_vcpu *vcpu;
	volatile uint8_t sum = 0;

	/* The guest writes pages 3 + 8i, the VMM hot page 4 and reads 5 + 8i. */
	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 4, 1));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	for (uint64_t i = 0; i < n; i++)
		self->params[i] = 3 + 8 * i;
	vcpu = vcpu_add(self->vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 1);
	for (int cycle = 0; cycle < 2; cycle++) {
		vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA,
			       n, 0x51 + cycle);
		ASSERT_EQ(n, vcpu_run_to_done(vcpu));
		self->map[4 * PG] ^= 0xff;
		for (uint64_t i = 0; i < n; i++)
			sum += self->map[(5 + 8 * i) * PG];
		if (cycle)
			ASSERT_EQ(0, madvise(self->map + 13 * PG, PG, MADV_DONTNEED));
		ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
		ASSERT_EQ(0, vmr_stats(self->fd, &st0));
		for (uint64_t i = 0; i < n; i++)
			if (i != 1 || !cycle)
				sum += self->map[(5 + 8 * i) * PG];
		self->map[4 * PG] ^= 0xff;
		ASSERT_EQ(0, vmr_stats(self->fd, &st1));
		ASSERT_EQ(st0.faults, st1.faults)
			TH_LOG("cycle %d: %lu faults on pages mapped across REVERT",
			       cycle, (unsigned long)(st1.faults - st0.faults));
		self->map[4 * PG] ^= 0xff;
		check_snap(self);
	}
	(void)sum;
}

static int keep_mode(unsigned int v)
{
	return vmr_set_param("keep_copies", v);
}

/* The kept copies the file has, and how often a first write took one. */
static void kept_counts(int fd, uint64_t *kept, uint64_t *hits)
{
	struct vmreset_stats st;

	ASSERT_EQ(0, vmr_stats(fd, &st));
	*kept = st.cached_pages;
	if (hits)
		*hits = st.cached_hits;
}

/*
 * A page reverted keeps a copy of its snapshot content: the guest's next
 * write takes it as its undo page, without allocating (in place: without
 * copying either, so the fault copies nothing). Both modes (1: restore in
 * place, 2: swap and keep a spare) and off, each with whole-page checks
 * and an exact dirty list; then drop_caches gives every kept copy back.
 */
TEST_F(hot, kept_copies_reused_and_reclaimed)
{
	const uint64_t n = 64;
	struct vmreset_stats st0, st1;
	struct kvm_vcpu *vcpu;
	uint64_t kept, hits, hits0, reverted;
	struct statfs sf0, sf1;

	for (uint64_t i = 0; i < n; i++)
		self->params[i] = 3 + i * 7;	/* apart: no two adjacent */
	vcpu = vcpu_add(self->vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 1);
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	ASSERT_EQ(0, statfs(self->dir, &sf0));
	for (unsigned int mode = 0; mode <= 2; mode++) {
		ASSERT_EQ(0, keep_mode(mode));
		for (int cycle = 0; cycle < 3; cycle++) {
			kept_counts(self->fd, &kept, &hits0);
			ASSERT_EQ(0, vmr_stats(self->fd, &st0));
			vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA,
				       n, 0x77 + mode * 8 + cycle);
			ASSERT_EQ(n, vcpu_run_to_done(vcpu));
			ASSERT_EQ(0, vmr_stats(self->fd, &st1));
			/* Every first write is tracked; kept copies are used up. */
			ASSERT_EQ(n, st1.cow_faults - st0.cow_faults);
			ASSERT_EQ(n, st1.dirty_pages);
			ASSERT_EQ((long)n, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
			ASSERT_EQ(kept, st1.cached_hits - hits0)
				TH_LOG("mode %u cycle %d: %lu kept, %lu taken", mode, cycle,
				       (unsigned long)kept,
				       (unsigned long)(st1.cached_hits - hits0));
			ASSERT_EQ(0, st1.cached_pages);
			ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
			ASSERT_EQ(n, reverted);
			check_snap_pread(self);
			ASSERT_EQ(0, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
			kept_counts(self->fd, &kept, NULL);
			ASSERT_EQ(mode ? n : 0, kept) TH_LOG("mode %u", mode);
			/* A cache: size= and i_blocks do not count kept copies. */
			ASSERT_EQ(0, statfs(self->dir, &sf1));
			ASSERT_EQ(sf0.f_bfree, sf1.f_bfree);
		}
	}
	check_snap(self);

	/* VMM writes (mapping, pwrite) take them too, also after SNAPSHOT. */
	ASSERT_EQ(0, keep_mode(1));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	kept_counts(self->fd, &kept, &hits0);
	ASSERT_EQ(n, kept);
	memset(self->map + self->params[0] * PG, 0x5a, PG);
	memset(self->now, 0xa5, PG);
	ASSERT_EQ((ssize_t)PG, pwrite(self->fd, self->now, PG, self->params[1] * PG));
	kept_counts(self->fd, &kept, &hits);
	ASSERT_EQ(n - 2, kept);
	ASSERT_EQ(hits0 + 2, hits);
	ASSERT_EQ(2, list_pages(self->fd, VMRESET_IOC_DIRTY, 0));
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(2, reverted);
	check_snap(self);

	/* The per-file bound: the oldest go first, none above it. */
	{
		struct vmreset_hot_config c = { .kept_max = 16 };

		ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_KEPT, &c));
		ASSERT_EQ(16, c.kept_max);
		ASSERT_EQ(16, c.kept_pages);
		c.kept_max = 1ULL << 40;
		ASSERT_EQ(-1, hot_config(self->fd, VMRESET_HOT_CFG_KEPT, &c));
		ASSERT_EQ(EINVAL, errno);
		vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0x99);
		ASSERT_EQ(n, vcpu_run_to_done(vcpu));
		ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
		check_snap_pread(self);
		kept_counts(self->fd, &kept, NULL);
		ASSERT_EQ(16, kept);
		c.kept_max = 0;
		ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_KEPT, &c));
		ASSERT_EQ(0, c.kept_pages);
		c.kept_max = n;
		ASSERT_EQ(0, hot_config(self->fd, VMRESET_HOT_CFG_KEPT, &c));
	}

	/* Memory pressure (drop_caches here) frees every kept copy. */
	vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0xaa);
	ASSERT_EQ(n, vcpu_run_to_done(vcpu));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	kept_counts(self->fd, &kept, NULL);
	ASSERT_EQ(n, kept);
	ASSERT_EQ(0, vmr_drop_caches());
	ASSERT_EQ(0, vmr_stats(self->fd, &st1));
	ASSERT_EQ(0, st1.cached_pages);
	ASSERT_LE(n, st1.cached_reclaimed);
	check_snap(self);
	/* Writes after it allocate again, and revert exactly. */
	vcpu_set_entry(vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0xbb);
	ASSERT_EQ(n, vcpu_run_to_done(vcpu));
	ASSERT_EQ(0, vmr_stats(self->fd, &st0));
	ASSERT_EQ(st1.cached_hits, st0.cached_hits);
	ASSERT_EQ(n, st0.dirty_pages);
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	check_snap(self);
}

/* Drop the file's kept copies, keep its bound (16). */
static void kept_reset(int fd)
{
	struct vmreset_hot_config c = { .kept_max = 0 };

	ASSERT_EQ(0, hot_config(fd, VMRESET_HOT_CFG_KEPT, &c));
	c.kept_max = 16;
	ASSERT_EQ(0, hot_config(fd, VMRESET_HOT_CFG_KEPT, &c));
	ASSERT_EQ(0, c.kept_pages);
}

/*
 * keep_size= bounds the mount; kept copies of a clone's source, of punched,
 * truncated and hot pages go with them, and the content stays exact.
 */
TEST(kept_copies_bound_and_transitions)
{
	const uint64_t np = 256;
	uint8_t *snap = malloc(np * PG), *now = malloc(np * PG), *map;
	struct vmreset_stats st;
	struct vmreset_range r;
	char dir[64], line[512];
	int fd, bfd;
	FILE *m;
	bool shown = false;

	ASSERT_NONNULL(snap);
	ASSERT_NONNULL(now);
	ASSERT_EQ(0, keep_mode(1));
	ASSERT_EQ(0, vmr_mount(dir, "size=64m,keep_size=64k"));
	m = fopen("/proc/mounts", "r");
	ASSERT_NONNULL(m);
	while (fgets(line, sizeof(line), m))
		if (strstr(line, dir) && strstr(line, ",keep_size=64k"))
			shown = true;
	fclose(m);
	ASSERT_TRUE(shown);
	fd = vmr_file(dir, "a", np * PG);
	bfd = vmr_file(dir, "b", 0);
	ASSERT_LE(0, fd);
	ASSERT_LE(0, bfd);
	map = vmr_map(fd, np * PG);
	ASSERT_NONNULL(map);
	for (uint64_t i = 0; i < np; i++)
		fill_whole(map, i, 1);
	ASSERT_EQ(0, vmr_snapshot(fd, NULL));
	ASSERT_EQ((ssize_t)(np * PG), pread(fd, snap, np * PG, 0));

	/* 64 pages reverted, 16 kept (the mount's bound). */
	for (uint64_t i = 0; i < 64; i++)
		fill_whole(map, i * 2, 2);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(16, st.cached_pages);
	ASSERT_EQ((ssize_t)(np * PG), pread(fd, now, np * PG, 0));
	ASSERT_EQ(0, memcmp(now, snap, np * PG));
	/* The newest 16 are kept: pages 96..126, every other one. */
	for (uint64_t i = 48; i < 64; i++)
		fill_whole(map, i * 2, 3);
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(0, st.cached_pages);
	ASSERT_EQ(16, st.cached_hits);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));

	/* Punch and truncate over kept pages: tracked, exact. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       96 * PG, 8 * PG));
	ASSERT_EQ(0, ftruncate(fd, 120 * PG));
	/* 96..102 punched, 120..126 cut off; 104..118 stay. */
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(8, st.cached_pages);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ((ssize_t)(np * PG), pread(fd, now, np * PG, 0));
	ASSERT_EQ(0, memcmp(now, snap, np * PG));
	kept_reset(fd);

	/* A clone of the source shares its pages: their copies go. */
	for (uint64_t i = 0; i < 8; i++)
		fill_whole(map, i, 4);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(8, st.cached_pages);
	ASSERT_EQ(0, ioctl(bfd, FICLONE, fd));
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(0, st.cached_pages);
	fill_whole(map, 0, 5);
	ASSERT_EQ((ssize_t)(np * PG), pread(bfd, now, np * PG, 0));
	ASSERT_EQ(0, memcmp(now, snap, np * PG));
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ((ssize_t)(np * PG), pread(fd, now, np * PG, 0));
	ASSERT_EQ(0, memcmp(now, snap, np * PG));
	/* Private again, so that reverts can keep copies. */
	ASSERT_EQ(0, ftruncate(bfd, 0));
	kept_reset(fd);

	/* Hot: a kept copy becomes the hot copy; demoted, kept again. */
	for (uint64_t i = 200; i < 208; i++)
		fill_whole(map, i, 6);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	r.offset = 200 * PG;
	r.length = 8 * PG;
	ASSERT_EQ(0, hot(fd, VMRESET_HOT_SET, &r, 1));
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(8, st.hot_pages);
	ASSERT_EQ(0, st.cached_pages);
	fill_whole(map, 201, 7);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ(0, hot(fd, VMRESET_HOT_SET, NULL, 0));
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(0, st.hot_pages);
	ASSERT_EQ(8, st.cached_pages);
	for (uint64_t i = 200; i < 208; i++)
		fill_whole(map, i, 8);
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(0, st.cached_pages);
	ASSERT_EQ(8, st.dirty_pages);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ((ssize_t)(np * PG), pread(fd, now, np * PG, 0));
	ASSERT_EQ(0, memcmp(now, snap, np * PG));
	ASSERT_EQ(0, memcmp(map, snap, np * PG));

	/* keep_size=0: nothing kept. */
	ASSERT_EQ(0, mount(NULL, dir, NULL, MS_REMOUNT, "keep_size=0"));
	for (uint64_t i = 0; i < 8; i++)
		fill_whole(map, 10 + i, 9);
	ASSERT_EQ(0, vmr_revert(fd, NULL, NULL));
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(0, st.cached_pages);
	munmap(map, np * PG);
	close(fd);
	close(bfd);
	vmr_umount(dir);
	free(snap);
	free(now);
}

/* Does the kernel keep freed slab objects in KASAN's quarantine? */
static bool kasan_kernel(void)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[256];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, " kasan_quarantine_put") != NULL;
	fclose(f);
	return found;
}

TEST_F_TIMEOUT(hot, memory_flat_10000_cycles, 900)
{
	struct statfs s0, s1;
	struct vmreset_stats st;
	long avail0, slab0, drop;

	ASSERT_EQ(0, hot_range(self->fd, VMRESET_HOT_ADD, 0, 8));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	save_snap(self);
	ASSERT_EQ(0, statfs(self->dir, &s0));
	avail0 = meminfo("MemAvailable");
	slab0 = meminfo("Slab");
	for (int i = 0; i < 10000; i++) {
		/* Hot pages and a cold one, through the mapping. */
		self->map[(i % 8) * PG + 8] = (uint8_t)i;
		self->map[(i % 8) * PG + 4000] = (uint8_t)(i >> 8);
		self->map[100 * PG] = (uint8_t)i;
		ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
		if (i % 1000 == 999) {
			ASSERT_EQ(0, statfs(self->dir, &s1));
			ASSERT_EQ(s0.f_bfree, s1.f_bfree);
		}
	}
	check_snap(self);
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(8, st.hot_pages);
	ASSERT_EQ(10000, st.hot_copies);
	/* The cold page took its kept copy at every write but the first. */
	ASSERT_EQ(1, st.cached_pages);
	ASSERT_LE(9999, st.cached_hits);
	/*
	 * Kernel memory outside the mount's pages stays flat too. Under
	 * KASAN the slab objects each cycle frees (xarray nodes) wait in
	 * its quarantine, up to 1/32 of RAM: there a page leak still shows,
	 * and kmemleak (the debug kernel's) is the check for slab leaks.
	 */
	drop = avail0 - meminfo("MemAvailable");
	if (kasan_kernel())
		drop -= meminfo("Slab") - slab0;
	ASSERT_GT(8192, drop) TH_LOG("MemAvailable down %ld kB (Slab %+ld kB)", drop,
				     meminfo("Slab") - slab0);
}

TEST_HARNESS_MAIN
