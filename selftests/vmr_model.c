// SPDX-License-Identifier: GPL-2.0
/*
 * A randomized model test: thousands of random operations on one vmresetfs
 * file (and a second one it is cloned to and from), each applied to the
 * file and to a shadow model in user space. Guest writes through KVM, VMM
 * writes through the mapping, pwrite, punch, truncate, snapshot, revert,
 * dry-run revert, preserve add/del, hot add/del/set, hot modes, clones,
 * and the kept copies of reverted pages: their bound, their mode
 * (keep_copies: off, in place, swap) and drop_caches, which frees them.
 * The whole file (read and mapped), the clone, and the dirty list (every
 * page that differs from the snapshot must be listed) are compared after
 * every revert and every 64 operations.
 *
 *   vmr_model [--seed N] [--ops N] [harness options]
 *
 * The seed is printed; the same seed replays the same operations.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include "harness.h"
#include "kvm_guest.h"
#include "vmr_util.h"
#include "vmr_guest.h"

#define NP	256			/* pages of the file at most */
#define FSZ	(NP * PG)
#define LOGN	24

static uint64_t seed, nops = 3000;
static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* The model. */
static uint8_t cur[FSZ], snap[FSZ], bcur[FSZ], buf[FSZ];
static uint64_t size, snap_size, bsize;
static bool has_snap, pres[NP];

static char oplog[LOGN][128];
static uint64_t opno;

#define LOG(...) snprintf(oplog[opno % LOGN], sizeof(oplog[0]), __VA_ARGS__)

static void dump_log(void)
{
	fprintf(stderr, "# seed %" PRIu64 ", failed at op %" PRIu64 "; last ops:\n",
		seed, opno);
	for (uint64_t i = opno >= LOGN ? opno - LOGN + 1 : 0; i <= opno; i++)
		fprintf(stderr, "#   %" PRIu64 ": %s\n", i, oplog[i % LOGN]);
}

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		dump_log();						\
		ASSERT_TRUE(cond);					\
	}								\
} while (0)

/*
 * Half the writes go to a page written lately: a page reverted since keeps
 * a copy (kmod/kept.c), which only a write after the revert takes.
 */
static uint64_t recent[32], nrecent;

static uint64_t pick_page(uint64_t full)
{
	uint64_t p;

	if (nrecent && (rnd() & 1)) {
		p = recent[below(nrecent < 32 ? nrecent : 32)];
		if (p < full)
			return p;
	}
	p = below(full);
	recent[nrecent++ % 32] = p;
	return p;
}

static bool pres_overlap(uint64_t first, uint64_t end)
{
	for (uint64_t p = first; p < end && p < NP; p++)
		if (pres[p])
			return true;
	return false;
}

struct model_ctx {
	int fd, bfd;
	uint8_t *map;
	uint64_t *params;
	struct kvm_vcpu *vcpu;
};

/* File, mapping, clone and dirty list against the model. */
static void check_all(struct model_ctx *c)
{
	static struct vmreset_range r[NP];
	struct vmreset_range_list l = { .ranges = (uintptr_t)r, .nr = NP };
	struct stat st;
	bool listed[NP] = { false };
	struct vmreset_stats vs;
	uint64_t nlisted = 0;

	CHECK(!fstat(c->fd, &st) && (uint64_t)st.st_size == size);
	CHECK(pread(c->fd, buf, FSZ, 0) == (ssize_t)size);
	for (uint64_t p = 0; p * PG < size; p++) {
		uint64_t n = size - p * PG < PG ? size - p * PG : PG;

		if (memcmp(buf + p * PG, cur + p * PG, n)) {
			fprintf(stderr, "# page %" PRIu64 " differs (pread)\n", p);
			CHECK(0);
		}
		if (memcmp(c->map + p * PG, cur + p * PG, n)) {
			fprintf(stderr, "# page %" PRIu64 " differs (mapping)\n", p);
			CHECK(0);
		}
	}
	CHECK(!fstat(c->bfd, &st) && (uint64_t)st.st_size == bsize);
	CHECK(pread(c->bfd, buf, FSZ, 0) == (ssize_t)bsize);
	CHECK(!memcmp(buf, bcur, bsize));
	if (!has_snap)
		return;
	CHECK(!ioctl(c->fd, VMRESET_IOC_DIRTY, &l));
	CHECK(l.cursor == VMRESET_CURSOR_END);
	for (uint32_t i = 0; i < l.nr; i++)
		for (uint64_t o = r[i].offset; o < r[i].offset + r[i].length; o += PG) {
			if (o / PG < NP)
				listed[o / PG] = true;
			nlisted++;
		}
	/* STATS counts what DIRTY lists, hot pages included. */
	CHECK(!vmr_stats(c->fd, &vs) && vs.dirty_pages == nlisted);
	/*
	 * A range at a time, from the cursor: the kernel's walk stops and
	 * goes on at every VMR_HOT_SCAN hot pages and every call; the same
	 * ranges, each once, in order.
	 */
	{
		struct vmreset_range one;
		struct vmreset_range_list l1 = { .ranges = (uintptr_t)&one };
		uint32_t i = 0;

		do {
			l1.nr = 1;
			CHECK(!ioctl(c->fd, VMRESET_IOC_DIRTY, &l1));
			if (l1.cursor == VMRESET_CURSOR_END && !l1.nr)
				break;
			CHECK(l1.nr == 1 && i < l.nr);
			CHECK(one.offset == r[i].offset && one.length == r[i].length);
			i++;
		} while (l1.cursor != VMRESET_CURSOR_END);
		CHECK(i == l.nr);
	}
	{
		struct vmreset_hot_config hc = { 0 };

		/* Kept copies: within the file's bound, none for a dirty page. */
		CHECK(!ioctl(c->fd, VMRESET_IOC_HOT_CONFIG, &hc));
		CHECK(vs.cached_pages == hc.kept_pages && hc.kept_pages <= hc.kept_max);
		CHECK(vs.cached_pages + vs.dirty_pages + vs.hot_pages <= NP + nlisted);
	}
	for (uint64_t p = 0; p < NP; p++)
		if (memcmp(cur + p * PG, snap + p * PG, PG) && !listed[p]) {
			fprintf(stderr, "# page %" PRIu64 " changed, not in DIRTY\n", p);
			CHECK(0);
		}
}

static void op_guest(struct model_ctx *c)
{
	uint64_t full = size / PG, n = 1 + below(8), tag = rnd();

	if (!full)
		return;
	for (uint64_t i = 0; i < n; i++)
		c->params[i] = pick_page(full);
	LOG("guest writes %" PRIu64 " pages, first %" PRIu64, n, c->params[0]);
	vcpu_set_entry(c->vcpu, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, n, tag);
	CHECK(vcpu_run_to_done(c->vcpu) == n);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t *p = (uint64_t *)(cur + c->params[i] * PG);

		for (uint64_t w = 0; w < PG / 8; w++)
			p[w] = tag ^ (c->params[i] << 12) ^ w;
	}
}

static void op_mapw(struct model_ctx *c)
{
	uint64_t full = size / PG, p, o, n;
	int v = (int)below(256);

	if (!full)
		return;
	p = pick_page(full);
	o = below(PG);
	n = 1 + below(PG - o);
	LOG("map write page %" PRIu64 " +%" PRIu64 " len %" PRIu64 " = %d", p, o, n, v);
	memset(c->map + p * PG + o, v, n);
	memset(cur + p * PG + o, v, n);
}

static void op_pwrite(struct model_ctx *c)
{
	uint64_t off = below(FSZ), len = 1 + below(2 * PG);

	if (off + len > FSZ)
		len = FSZ - off;
	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rnd();
	LOG("pwrite %#" PRIx64 " len %" PRIu64, off, len);
	CHECK(pwrite(c->fd, buf, len, off) == (ssize_t)len);
	memcpy(cur + off, buf, len);
	if (off + len > size)
		size = off + len;
}

static void op_punch(struct model_ctx *c)
{
	uint64_t off = below(FSZ), len = 1 + below(8 * PG), end;
	int ret;

	if (rnd() & 1) {
		off &= ~(PG - 1);
		len = (len + PG - 1) & ~(PG - 1);
	}
	LOG("punch %#" PRIx64 " len %" PRIu64, off, len);
	ret = fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
	end = off + len < size ? off + len : size;
	if (off < end && pres_overlap(off / PG, (end + PG - 1) / PG)) {
		CHECK(ret == -1 && errno == EBUSY);
		return;
	}
	CHECK(ret == 0);
	if (off < end)
		memset(cur + off, 0, end - off);
}

static void op_truncate(struct model_ctx *c)
{
	uint64_t ns = below(FSZ + 1);
	int ret;

	if (rnd() & 1)
		ns &= ~(PG - 1);
	LOG("truncate %#" PRIx64 " (from %#" PRIx64 ")", ns, size);
	ret = ftruncate(c->fd, ns);
	if (ns < size && pres_overlap(ns / PG, NP)) {
		CHECK(ret == -1 && errno == EBUSY);
		return;
	}
	CHECK(ret == 0);
	if (ns < size)
		memset(cur + ns, 0, size - ns);
	size = ns;
}

static void op_snapshot(struct model_ctx *c)
{
	LOG("snapshot");
	CHECK(!vmr_snapshot(c->fd, NULL));
	memcpy(snap, cur, FSZ);
	snap_size = size;
	has_snap = true;
}

static void op_revert(struct model_ctx *c, bool dry)
{
	struct vmreset_revert r = { .flags = dry ? VMRESET_REVERT_F_DRY_RUN : 0 };
	uint64_t pend = 0, ns;
	int ret;

	LOG("%s", dry ? "dry-run revert" : "revert");
	ret = ioctl(c->fd, VMRESET_IOC_REVERT, &r);
	if (!has_snap) {
		CHECK(ret == -1 && errno == ENODATA);
		return;
	}
	CHECK(ret == 0);
	if (!dry) {
		/* Preserved pages keep their content, which becomes the snapshot's. */
		for (uint64_t p = 0; p < NP; p++) {
			if (pres[p])
				memcpy(snap + p * PG, cur + p * PG, PG);
			else
				memcpy(cur + p * PG, snap + p * PG, PG);
		}
		/*
		 * The snapshot's size, or up to the end of the last preserved
		 * page that starts below the current size (capped at it).
		 */
		ns = snap_size;
		for (uint64_t p = 0; p < NP && p * PG < size; p++)
			if (pres[p])
				pend = (p + 1) * PG;
		if (pend)
			ns = ns > (pend < size ? pend : size) ? ns : (pend < size ? pend : size);
		/* Bytes past the new end read as zero if the file grows again. */
		if (ns < FSZ)
			memset(cur + ns, 0, FSZ - ns);
		size = ns;
	}
	check_all(c);
	if (!dry) {
		struct vmreset_range_list l = { .ranges = (uintptr_t)buf, .nr = 16 };

		CHECK(!ioctl(c->fd, VMRESET_IOC_DIRTY, &l) && l.nr == 0);
	}
}

static void op_preserve(struct model_ctx *c)
{
	uint64_t a = below(NP), n = 1 + below(16);
	bool add = rnd() & 1;

	if (a + n > NP)
		n = NP - a;
	LOG("preserve %s %" PRIu64 "+%" PRIu64, add ? "add" : "del", a, n);
	CHECK(!vmr_preserve(c->fd, add ? VMRESET_PRESERVE_ADD : VMRESET_PRESERVE_DEL,
			    a * PG, n * PG));
	for (uint64_t p = a; p < a + n; p++)
		pres[p] = add;
}

static void op_hot(struct model_ctx *c)
{
	struct vmreset_range r[3];
	struct vmreset_hot h = { .op = 1 + (uint32_t)below(3), .ranges = (uintptr_t)r };

	h.nr = (uint32_t)below(4);
	if (h.op != VMRESET_HOT_SET && !h.nr)
		h.nr = 1;
	for (uint32_t i = 0; i < h.nr; i++) {
		uint64_t a = below(NP), n = 1 + below(32);

		r[i].offset = a * PG;
		r[i].length = n * PG;
	}
	LOG("hot op %u, %u ranges, first %#" PRIx64 "+%#" PRIx64, h.op, h.nr,
	    h.nr ? (uint64_t)r[0].offset : 0, h.nr ? (uint64_t)r[0].length : 0);
	CHECK(!ioctl(c->fd, VMRESET_IOC_HOT, &h));
}

static void op_hot_mode(struct model_ctx *c)
{
	struct vmreset_hot_config cfg = { .flags = VMRESET_HOT_CFG_MODE };

	cfg.mode = (uint32_t)below(3);
	if (rnd() & 1) {
		cfg.flags |= VMRESET_HOT_CFG_LEARN;
		cfg.learn_n = 1 + (uint32_t)below(VMRESET_HOT_MAX_LEARN_N);
		cfg.learn_k = 1 + (uint32_t)below(cfg.learn_n);
	}
	LOG("hot mode %u learn %u/%u", cfg.mode, cfg.learn_k, cfg.learn_n);
	CHECK(!ioctl(c->fd, VMRESET_IOC_HOT_CONFIG, &cfg));
}

/* Kept copies: a new bound or mode, or memory pressure; no content changes. */
static void op_keep(struct model_ctx *c)
{
	struct vmreset_hot_config cfg = { .flags = VMRESET_HOT_CFG_KEPT };
	uint64_t k = below(4);

	if (k == 0) {
		struct vmreset_stats st;

		LOG("drop_caches");
		CHECK(!vmr_drop_caches());
		/* Nothing else holds the file's lock: every kept copy goes. */
		CHECK(!vmr_stats(c->fd, &st) && st.cached_pages == 0);
	} else if (k == 1) {
		unsigned int mode = (unsigned int)below(3);

		LOG("keep_copies %u", mode);
		CHECK(!vmr_set_param("keep_copies", mode));
	} else {
		cfg.kept_max = below(4) ? below(NP) : 0;
		LOG("kept_max %" PRIu64, (uint64_t)cfg.kept_max);
		CHECK(!ioctl(c->fd, VMRESET_IOC_HOT_CONFIG, &cfg));
		CHECK(cfg.kept_pages <= cfg.kept_max);
	}
}

static void op_clone_out(struct model_ctx *c)
{
	LOG("clone main to b");
	CHECK(!ftruncate(c->bfd, 0));
	CHECK(!ioctl(c->bfd, FICLONE, c->fd));
	memset(bcur, 0, FSZ);
	memcpy(bcur, cur, size);
	bsize = size;
	{
		struct vmreset_stats ms, bs;

		/*
		 * b has every page main has, and nothing else: each one is
		 * shared, in both (STATS walks them a chunk at a time).
		 */
		CHECK(!vmr_stats(c->fd, &ms) && !vmr_stats(c->bfd, &bs));
		CHECK(ms.shared_pages == ms.resident_pages);
		CHECK(bs.shared_pages == bs.resident_pages);
		CHECK(bs.resident_pages == ms.resident_pages);
	}
}

static void op_clone_in(struct model_ctx *c)
{
	uint64_t bfull = bsize / PG, a, n, d;
	struct file_clone_range fcr = { .src_fd = c->bfd };
	int ret;

	if (!bfull)
		return;
	a = below(bfull);
	n = 1 + below(bfull - a < 16 ? bfull - a : 16);
	d = below(size / PG + 1);
	if (d + n > NP)
		n = NP - d;
	if (!n)
		return;
	fcr.src_offset = a * PG;
	fcr.src_length = n * PG;
	fcr.dest_offset = d * PG;
	LOG("clone b %" PRIu64 "+%" PRIu64 " to main %" PRIu64, a, n, d);
	ret = ioctl(c->fd, FICLONERANGE, &fcr);
	if (pres_overlap(d, d + n)) {
		CHECK(ret == -1 && errno == EBUSY);
		return;
	}
	CHECK(ret == 0);
	memcpy(cur + d * PG, bcur + a * PG, n * PG);
	if ((d + n) * PG > size)
		size = (d + n) * PG;
}

static void op_bwrite(struct model_ctx *c)
{
	uint64_t full = bsize / PG, p;
	int v = (int)below(256);

	if (!full)
		return;
	p = below(full);
	LOG("b pwrite page %" PRIu64 " = %d", p, v);
	memset(buf, v, PG);
	CHECK(pwrite(c->bfd, buf, PG, p * PG) == (ssize_t)PG);
	memcpy(bcur + p * PG, buf, PG);
}

TEST_TIMEOUT(model, 900)
{
	struct model_ctx c;
	struct kvm_vm *vm;
	struct vmreset_stats st;
	char dir[64];
	uint64_t reverts = 0;

	TEST_REQUIRE_KVM();
	fprintf(stderr, "# seed %" PRIu64 ", %" PRIu64 " ops (replay: --seed %" PRIu64 ")\n",
		seed, nops, seed);
	rng = seed ? seed : 1;
	ASSERT_EQ(0, vmr_mount(dir, "size=64m")) TH_LOG("mount: %s", strerror(errno));
	c.fd = vmr_file(dir, "main", 0);
	c.bfd = vmr_file(dir, "b", 0);
	ASSERT_LE(0, c.fd);
	ASSERT_LE(0, c.bfd);
	c.map = mmap(NULL, FSZ, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, c.map);
	c.params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, c.params);
	vm = vm_create();
	vm_add_slot(vm, 1, VM_TEST_GPA, FSZ, c.map, 0);
	vm_add_slot(vm, 2, PARAM_GPA, PARAM_SIZE, c.params, 0);
	c.vcpu = vcpu_add(vm, 0, guest_fill_list, 4, VM_TEST_GPA, PARAM_GPA, 0, 0);

	/* Start from a full file, so that most operations have pages to hit. */
	for (uint64_t i = 0; i < FSZ; i++)
		cur[i] = (uint8_t)rnd();
	ASSERT_EQ((ssize_t)FSZ, pwrite(c.fd, cur, FSZ, 0));
	size = FSZ;

	for (opno = 0; opno < nops; opno++) {
		uint64_t k = below(100);

		if (k < 22)
			op_guest(&c);
		else if (k < 34)
			op_mapw(&c);
		else if (k < 42)
			op_pwrite(&c);
		else if (k < 46)
			op_punch(&c);
		else if (k < 49)
			op_truncate(&c);
		else if (k < 57)
			op_snapshot(&c);
		else if (k < 71) {
			op_revert(&c, false);
			reverts++;
		} else if (k < 74)
			op_revert(&c, true);
		else if (k < 78)
			op_preserve(&c);
		else if (k < 87)
			op_hot(&c);
		else if (k < 90)
			op_hot_mode(&c);
		else if (k < 93)
			op_clone_out(&c);
		else if (k < 97)
			op_clone_in(&c);
		else if (k < 98)
			op_bwrite(&c);
		else
			op_keep(&c);
		/*
		 * No page past EOF: it would hold memory that only a later
		 * truncate or the file's end gives back (and a clone would
		 * not take it: the check in op_clone_out()).
		 */
		CHECK(!vmr_stats(c.fd, &st) &&
		      st.resident_pages <= (size + PG - 1) / PG);
		if (opno % 64 == 63)
			check_all(&c);
	}
	check_all(&c);
	ASSERT_EQ(0, vmr_stats(c.fd, &st));
	fprintf(stderr, "# %" PRIu64 " reverts; hot: %" PRIu64 " now, %" PRIu64
		" promoted, %" PRIu64 " demoted, %" PRIu64 " copies; kept: %" PRIu64
		" now, %" PRIu64 " taken, %" PRIu64 " reclaimed\n", reverts,
		(uint64_t)st.hot_pages, (uint64_t)st.hot_promotions,
		(uint64_t)st.hot_demotions, (uint64_t)st.hot_copies,
		(uint64_t)st.cached_pages, (uint64_t)st.cached_hits,
		(uint64_t)st.cached_reclaimed);
	/* Kept copies were made and used, or this run tested nothing new. */
	if (nops >= 1000)
		ASSERT_LT(0, st.cached_hits);
	ASSERT_EQ(0, vmr_set_param("keep_copies", 1));
	vm_free(vm);
	munmap(c.map, FSZ);
	close(c.fd);
	close(c.bfd);
	vmr_umount(dir);
}

int main(int argc, char **argv)
{
	int n = 1;

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
			nops = strtoull(argv[++i], NULL, 0);
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return __th_run(n, argv);
}
