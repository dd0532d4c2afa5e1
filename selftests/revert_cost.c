// SPDX-License-Identifier: GPL-2.0
/*
 * A quick measurement, side by side in one run: resetting D pages that a
 * guest dirtied, with vmresetfs REVERT and with what KVM fuzzers do today
 * (KVM_GET_DIRTY_LOG, then copy each dirty page back from a snapshot).
 * Every reset is checked to restore the snapshot exactly. Times are
 * logged, not asserted: under emulation only their ratios mean something.
 * The full benchmark is `make bench`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/utsname.h>
#include <time.h>
#include "harness.h"
#include "vmr_guest.h"
#include "vmreset.h"	/* libvmreset, for the netlink REVERT */

#define NPAGES		16384UL		/* 64 MiB of guest RAM */

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

struct method {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	uint8_t *ram;
};

static void setup_vm(struct method *m, uint8_t *ram, uint64_t *params,
		     uint32_t flags)
{
	m->ram = ram;
	m->vm = vm_create();
	vm_add_slot(m->vm, 1, VM_TEST_GPA, NPAGES * PG, ram, flags);
	vm_add_slot(m->vm, 2, PARAM_GPA, PARAM_SIZE, params, 0);
	m->vcpu = vcpu_add(m->vm, 0, guest_read_all, 2, VM_TEST_GPA, NPAGES);
	vcpu_run_to_done(m->vcpu);
}

static void dirty(struct method *m, uint64_t d)
{
	vcpu_set_entry(m->vcpu, guest_write_list, 4, VM_TEST_GPA, PARAM_GPA, d,
		       0xfeed);
	vcpu_run_to_done(m->vcpu);
}

TEST_TIMEOUT(revert_vs_dirty_log, 900)
{
	/* The last case dirties 4096 contiguous pages: one run. */
	static const uint64_t ds[] = { 0, 1, 16, 256, 4096, 4096 };
	static unsigned long bitmap[NPAGES / 64];
	struct method vr, dl;
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
	double t_vr[41], t_dl[41], med_vr[6], med_dl[6];
	uint8_t *snap, *anon;
	uint64_t *params;
	char dir[64];
	int fd;

	TEST_REQUIRE_KVM();
	ASSERT_EQ(0, vmr_mount(dir, "size=256m"));
	fd = vmr_file(dir, "ram", NPAGES * PG);
	ASSERT_LE(0, fd);
	params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	anon = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	snap = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, params);
	ASSERT_NE(MAP_FAILED, anon);
	ASSERT_NE(MAP_FAILED, snap);

	setup_vm(&vr, vmr_map(fd, NPAGES * PG), params, 0);
	ASSERT_NONNULL(vr.ram);
	setup_vm(&dl, anon, params, KVM_MEM_LOG_DIRTY_PAGES);
	for (uint64_t i = 0; i < NPAGES; i++) {
		fill_page(vr.ram, i, pat(5, i));
		fill_page(anon, i, pat(5, i));
	}
	memcpy(snap, anon, NPAGES * PG);
	ASSERT_EQ(0, vmr_snapshot(fd, NULL));
	ASSERT_EQ(0, ioctl(dl.vm->fd, KVM_GET_DIRTY_LOG, &log));

	for (int k = 0; k < 6; k++) {
		uint64_t d = ds[k], stride = d && k < 5 ? NPAGES / d : 1;
		int iters = d >= 4096 ? 9 : d >= 256 ? 21 : 41;

		for (uint64_t i = 0; i < d; i++)
			params[i] = k < 5 ? (i * stride + (i * 7) % stride) % NPAGES : i;
		for (int it = 0; it < iters; it++) {
			uint64_t reverted, copied = 0;
			double t0;

			dirty(&vr, d);
			dirty(&dl, d);

			t0 = now_us();
			ASSERT_EQ(0, vmr_revert(fd, &reverted, NULL));
			t_vr[it] = now_us() - t0;

			t0 = now_us();
			ASSERT_EQ(0, ioctl(dl.vm->fd, KVM_GET_DIRTY_LOG, &log));
			for (uint64_t w = 0; w < NPAGES / 64; w++) {
				unsigned long bits = bitmap[w];

				while (bits) {
					uint64_t p = w * 64 + __builtin_ctzl(bits);

					memcpy(anon + p * PG, snap + p * PG, PG);
					bits &= bits - 1;
					copied++;
				}
			}
			t_dl[it] = now_us() - t0;

			/* A reset that is fast and wrong is worthless. */
			ASSERT_EQ(d, reverted);
			ASSERT_EQ(d, copied);
			for (uint64_t i = 0; i < d; i++) {
				ASSERT_TRUE(page_has(vr.ram, params[i], pat(5, params[i])));
				ASSERT_TRUE(page_has(anon, params[i], pat(5, params[i])));
			}
		}
		ASSERT_EQ(0, memcmp(vr.ram, snap, NPAGES * PG));
		ASSERT_EQ(0, memcmp(anon, snap, NPAGES * PG));
		med_vr[k] = median(t_vr, iters);
		med_dl[k] = median(t_dl, iters);
		TH_LOG("D=%5lu%s vmreset REVERT %9.1f us   KVM_GET_DIRTY_LOG+copy %9.1f us   ratio %.2f",
		       (unsigned long)d, k < 5 ? " scattered " : " contiguous", med_vr[k],
		       med_dl[k], med_dl[k] / med_vr[k]);
	}
	TH_LOG("REVERT: fixed %.1f us, %.2f us per dirty page; dirty log+copy: fixed %.1f us, %.2f us per page",
	       med_vr[0], (med_vr[4] - med_vr[1]) / 4095, med_dl[0],
	       (med_dl[4] - med_dl[1]) / 4095);

	/* The same REVERT through netlink, from the same process. */
	{
		struct vmreset_stats st;
		struct vmreset_nl *nl = vmreset_nl_open(NULL);
		static const uint64_t nds[] = { 0, 16, 256 };

		ASSERT_NONNULL(nl);
		ASSERT_EQ(0, vmr_stats(fd, &st));
		for (int k = 0; k < 3; k++) {
			uint64_t d = nds[k], reverted;

			for (uint64_t i = 0; i < d; i++)
				params[i] = i * (NPAGES / 256);
			for (int it = 0; it < 21; it++) {
				double t0;

				dirty(&vr, d);
				t0 = now_us();
				ASSERT_EQ(0, vmreset_nl_revert(nl, st.id, 0, &reverted, NULL));
				t_vr[it] = now_us() - t0;
				ASSERT_EQ(d, reverted);
				dirty(&vr, d);
				t0 = now_us();
				ASSERT_EQ(0, vmr_revert(fd, &reverted, NULL));
				t_dl[it] = now_us() - t0;
				ASSERT_EQ(d, reverted);
			}
			TH_LOG("D=%5lu scattered  netlink REVERT %9.1f us   ioctl REVERT %9.1f us",
			       (unsigned long)d, median(t_vr, 21), median(t_dl, 21));
		}
		ASSERT_EQ(0, memcmp(vr.ram, snap, NPAGES * PG));
		vmreset_nl_close(nl);
	}

	vm_free(vr.vm);
	vm_free(dl.vm);
	munmap(vr.ram, NPAGES * PG);
	close(fd);
	vmr_umount(dir);
}

/*
 * Page @i holds its snapshot content, read with pread(): a check through
 * the mapping would map it, and a mapped clean page ends every batch
 * whose gap it lies in.
 */
static bool page_ok_quiet(int fd, uint64_t i)
{
	static uint8_t buf[PG];

	return pread(fd, buf, PG, i * PG) == PG && page_has(buf, 0, pat(5, i));
}

/*
 * Pages for the next REVERT: @d distinct ones, 2 apart from @first or, if
 * @first is negative, at random; @mark remembers them under @gen.
 */
static void pick_pages(uint64_t *params, uint32_t *mark, uint32_t gen, uint64_t d,
		       int64_t first, unsigned int *seed)
{
	for (uint64_t i = 0; i < d;) {
		uint64_t p = first >= 0 ? 2 * i + (uint64_t)first : rand_r(seed) % NPAGES;

		if (mark[p] == gen)
			continue;
		mark[p] = gen;
		params[i++] = p;
	}
}

/*
 * The guest dirties the @d pages in @params, REVERT puts them back: its
 * time in us, or -1 if it failed, reverted another number of pages or
 * left one of them wrong.
 */
static double revert_timed(struct method *vr, int fd, const uint64_t *params, uint64_t d)
{
	uint64_t reverted;
	double t0, t;

	dirty(vr, d);
	t0 = now_us();
	if (vmr_revert(fd, &reverted, NULL))
		return -1;
	t = now_us() - t0;
	if (reverted != d)
		return -1;
	for (uint64_t i = 0; i < d; i++)
		if (!page_ok_quiet(fd, params[i]))
			return -1;
	return t;
}

/*
 * Where a scattered REVERT's time goes, side by side in one run. D dirty
 * pages at random (new ones every cycle, as in the benchmark's random
 * workload) in 64 MiB that the guest once read whole, so that the VMM's
 * page tables and KVM's have every level, reverted with each merge_gap in
 * turn within a cycle: an unmap, and so an MMU-notifier round (KVM's SPTE
 * zap and TLB flush), per page (0) against one per batch, whose unmap walks
 * the empty entries of the gaps it covers; and 256 pages 2 apart, where
 * only the number of rounds differs. Then REVERT's copy back in place
 * (keep_copies=1) against the swaps of 0 and 2, which leave the copy to the
 * next first write. Every reset is checked; times are logged, not
 * asserted.
 */
TEST_TIMEOUT(scattered_revert_logged, 900)
{
	/* The last: 256 pages 2 apart, where only the notifier rounds differ. */
	static const uint64_t ds[] = { 16, 256, 256 };
	static const unsigned int gaps[] = { 0, 32, 256, 4096 };
	static const unsigned int modes[] = { 0, 1, 2 };
	enum { NG = sizeof(gaps) / sizeof(gaps[0]), ITERS = 9 };
	static uint32_t mark[NPAGES];
	double t[NG][ITERS];
	unsigned int def, keep, seed = 1;
	struct method vr;
	uint64_t *params;
	char dir[64];
	int fd;

	TEST_REQUIRE_KVM();
	ASSERT_EQ(0, vmr_get_param("merge_gap", &def));
	ASSERT_EQ(0, vmr_mount(dir, "size=256m"));
	fd = vmr_file(dir, "ram", NPAGES * PG);
	ASSERT_LE(0, fd);
	params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, params);
	setup_vm(&vr, vmr_map(fd, NPAGES * PG), params, 0);
	ASSERT_NONNULL(vr.ram);
	for (uint64_t i = 0; i < NPAGES; i++)
		fill_page(vr.ram, i, pat(5, i));
	ASSERT_EQ(0, vmr_snapshot(fd, NULL));

	for (int k = 0; k < 3; k++) {
		uint64_t d = ds[k];
		char line[256];
		int len;

		for (int it = 0; it < ITERS; it++) {
			for (int g = 0; g < NG; g++) {
				uint32_t gen = (k * ITERS + it) * NG + g + 1;

				pick_pages(params, mark, gen, d, k == 2 ? it : -1, &seed);
				ASSERT_EQ(0, vmr_set_param("merge_gap", gaps[g]));
				t[g][it] = revert_timed(&vr, fd, params, d);
				ASSERT_LE(0, t[g][it]);
			}
		}
		len = snprintf(line, sizeof(line), "D=%4lu %s REVERT us by merge_gap:",
			       (unsigned long)d, k == 2 ? "2 apart" : "random ");
		for (int g = 0; g < NG; g++)
			len += snprintf(line + len, sizeof(line) - len, " %u:%.0f",
					gaps[g], median(t[g], ITERS));
		TH_LOG("%s", line);
	}
	ASSERT_EQ(0, vmr_set_param("merge_gap", def));

	/*
	 * The copy back in place that kept copies cost REVERT (keep_copies=1)
	 * against a swap that keeps a spare (2) or nothing (0), which leave
	 * the copy to the next first write: 256 pages at random.
	 */
	ASSERT_EQ(0, vmr_get_param("keep_copies", &keep));
	for (int it = 0; it < ITERS; it++) {
		for (int g = 0; g < 3; g++) {
			uint32_t gen = 0x10000 + it * 3 + g;

			pick_pages(params, mark, gen, 256, -1, &seed);
			ASSERT_EQ(0, vmr_set_param("keep_copies", modes[g]));
			t[g][it] = revert_timed(&vr, fd, params, 256);
			ASSERT_LE(0, t[g][it]);
		}
	}
	ASSERT_EQ(0, vmr_set_param("keep_copies", keep));
	TH_LOG("D= 256 random  REVERT us by keep_copies: 0:%.0f 1:%.0f 2:%.0f (merge_gap %u)",
	       median(t[0], ITERS), median(t[1], ITERS), median(t[2], ITERS), def);
	for (uint64_t i = 0; i < NPAGES; i++)
		ASSERT_TRUE(page_has(vr.ram, i, pat(5, i)));
	vm_free(vr.vm);
	munmap(vr.ram, NPAGES * PG);
	munmap(params, PARAM_SIZE);
	close(fd);
	vmr_umount(dir);
}

#define FW_PAGES	2048UL		/* 8 MiB written after each revert */
#define FW_ROUNDS	5
#define FW_PASSES	3

struct fw_thread {
	pthread_t th;
	uint8_t *map;
	unsigned int idx, n;
	pthread_barrier_t *go, *done;
	volatile int *stop;
	uint64_t tag;
};

/* Page i of thread idx of n: every n-th page, one 8-byte store each. */
static void *fw_writer(void *arg)
{
	struct fw_thread *t = arg;

	for (;;) {
		pthread_barrier_wait(t->go);
		if (*t->stop)
			return NULL;
		for (uint64_t p = t->idx; p < FW_PAGES; p += t->n)
			*(volatile uint64_t *)(t->map + p * PG) = t->tag ^ p;
		pthread_barrier_wait(t->done);
	}
}

struct fw_row {
	unsigned int keep, unlocked;
	bool read_first;
	const char *name;
};

struct fw_ctx {
	int fd;
	uint8_t *map, *buf, *snap;
};

/*
 * @rounds reverts of a file whose every page @n threads then write once;
 * us[] gets each round's time of the writes (and rd[] that of a read of
 * every page before them, for a row that reads first).
 */
static int fw_cell(struct fw_ctx *c, const struct fw_row *row, unsigned int n,
		   int rounds, uint64_t tag, double *us, double *rd)
{
	pthread_barrier_t go, done;
	struct fw_thread t[4];
	volatile int stop = 0;
	int err = 0;

	if (vmr_set_param("keep_copies", row->keep) ||
	    vmr_set_param("copy_unlocked", row->unlocked))
		return -1;
	pthread_barrier_init(&go, NULL, n + 1);
	pthread_barrier_init(&done, NULL, n + 1);
	for (unsigned int i = 0; i < n; i++) {
		t[i] = (struct fw_thread){ .map = c->map, .idx = i, .n = n, .go = &go,
					   .done = &done, .stop = &stop, .tag = tag };
		if (pthread_create(&t[i].th, NULL, fw_writer, &t[i]))
			abort();
	}
	/* Round -1 makes every page dirty (and, kept, takes the copies). */
	for (int it = -1; it < rounds && !err; it++) {
		uint64_t reverted = 0;
		double t0;

		if (it >= 0) {
			/* Every revert restores every page, whole. */
			if (vmr_revert(c->fd, &reverted, NULL) || reverted != FW_PAGES ||
			    pread(c->fd, c->buf, FW_PAGES * PG, 0) != (ssize_t)(FW_PAGES * PG) ||
			    memcmp(c->buf, c->snap, FW_PAGES * PG)) {
				err = -2;
				tag = 0;	/* the writers' check below fails too */
			}
			if (row->read_first) {
				uint64_t sum = 0;

				t0 = now_us();
				for (uint64_t p = 0; p < FW_PAGES; p++)
					sum += *(volatile uint64_t *)(c->map + p * PG);
				rd[it] = now_us() - t0;
				if (sum == 1)
					err = -3;	/* keeps the loads */
			}
		}
		t0 = now_us();
		pthread_barrier_wait(&go);
		pthread_barrier_wait(&done);
		if (it >= 0)
			us[it] = now_us() - t0;
	}
	stop = 1;
	pthread_barrier_wait(&go);
	for (unsigned int i = 0; i < n; i++)
		pthread_join(t[i].th, NULL);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&done);
	/* The writes all landed, each on its own page. */
	for (uint64_t p = 0; p < FW_PAGES && !err; p++)
		if (*(uint64_t *)(c->map + p * PG) != (tag ^ p))
			err = -4;
	if (!err && vmr_revert(c->fd, NULL, NULL))
		err = -5;
	return err;
}

/*
 * First writes right after a REVERT, from 1, 2 and 4 user threads writing
 * disjoint pages of one MAP_SHARED mapping: the path a guest's vCPUs take
 * after every reset (fault, then page_mkwrite, which takes vi->lock).
 * Rows: the copy a first write needs made under vi->lock (copy_unlocked=0,
 * how it was) or before it (copy_unlocked=1), both without kept copies
 * (keep_copies=0: every first write allocates and copies); with kept
 * copies (keep_copies=1, the default: no allocation, no copy); and with
 * kept copies after a read of every page, so that the writes find a
 * read-only PTE (a write-protect fault, what REVERT would leave if it
 * write-protected instead of unmapping) rather than none. Rows alternate
 * within each of FW_PASSES passes, so that a change of the machine's load
 * spreads over all of them. Every revert is checked to restore every page
 * whole. Times are logged, not asserted.
 */
TEST_TIMEOUT(first_writes_in_threads, 1800)
{
	static const struct fw_row rows[] = {
		{ 0, 0, false, "copy under vi->lock " },
		{ 0, 1, false, "copy before vi->lock" },
		{ 1, 1, false, "kept copies         " },
		{ 1, 1, true,  "kept, read first    " },
	};
	enum { NR = sizeof(rows) / sizeof(rows[0]) };
	static const unsigned int nthr[] = { 1, 2, 4 };
	static double us[NR][3][FW_PASSES * FW_ROUNDS], rd[NR][3][FW_PASSES * FW_ROUNDS];
	struct utsname uts;
	struct fw_ctx c;
	int passes = FW_PASSES, rounds = FW_ROUNDS;
	char dir[64];

	/* The debug kernel is 15-30 times slower: one short pass there. */
	ASSERT_EQ(0, uname(&uts));
	if (strstr(uts.release, "debug")) {
		passes = 1;
		rounds = 2;
	}
	ASSERT_EQ(0, vmr_mount(dir, "size=128m"));
	c.fd = vmr_file(dir, "ram", FW_PAGES * PG);
	ASSERT_LE(0, c.fd);
	c.map = vmr_map(c.fd, FW_PAGES * PG);
	ASSERT_NONNULL(c.map);
	c.buf = malloc(FW_PAGES * PG);
	c.snap = malloc(FW_PAGES * PG);
	ASSERT_NONNULL(c.buf);
	ASSERT_NONNULL(c.snap);
	for (uint64_t i = 0; i < FW_PAGES; i++)
		fill_page(c.map, i, pat(9, i));
	memcpy(c.snap, c.map, FW_PAGES * PG);
	ASSERT_EQ(0, vmr_snapshot(c.fd, NULL));
	for (int pass = 0; pass < passes; pass++)
		for (unsigned int r = 0; r < NR; r++)
			for (unsigned int k = 0; k < 3; k++)
				ASSERT_EQ(0, fw_cell(&c, &rows[r], nthr[k], rounds,
						     0x5eed0000ULL + pass * 256 + r * 16 + k,
						     us[r][k] + pass * rounds,
						     rd[r][k] + pass * rounds));
	fprintf(stderr, "# first writes after REVERT, %lu pages, median of %d rounds in %d passes: us per page (pages/s)\n",
		FW_PAGES, passes * rounds, passes);
	for (unsigned int r = 0; r < NR; r++) {
		char line[256];
		int len = snprintf(line, sizeof(line), "%s", rows[r].name);

		for (unsigned int k = 0; k < 3; k++) {
			double m = median(us[r][k], passes * rounds);

			len += snprintf(line + len, sizeof(line) - len,
					"  %u thr %5.1f (%6.0f/s)", nthr[k], m / FW_PAGES,
					FW_PAGES / m * 1e6);
		}
		if (rows[r].read_first)
			snprintf(line + len, sizeof(line) - len, "  read first %5.1f",
				 median(rd[r][0], passes * rounds) / FW_PAGES);
		TH_LOG("%s", line);
	}
	ASSERT_EQ(0, vmr_set_param("keep_copies", 1));
	ASSERT_EQ(0, vmr_set_param("copy_unlocked", 1));
	munmap(c.map, FW_PAGES * PG);
	free(c.buf);
	free(c.snap);
	close(c.fd);
	vmr_umount(dir);
}

TEST_HARNESS_MAIN
