// SPDX-License-Identifier: GPL-2.0
/*
 * vmresetfs without a guest: the VMM's own writes (mapping, pwrite,
 * truncate, hole punching), preserved ranges, the dirty list, clones,
 * filesystem limits, bad input, and memory staying flat over many cycles.
 */
#define _GNU_SOURCE
#include <linux/falloc.h>
#include <linux/fs.h>
#include <dirent.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include "harness.h"
#include "vmr_util.h"

FIXTURE(fs) {
	char dir[64];
	int fd;
	uint8_t *map;
	size_t size;
};

FIXTURE_SETUP(fs)
{
	self->fd = -1;
	self->map = NULL;
	ASSERT_EQ(0, vmr_mount(self->dir, "size=256m,nr_inodes=1k"))
		TH_LOG("mount vmresetfs: %s", strerror(errno));
	self->size = 64 * PG;
	self->fd = vmr_file(self->dir, "mem", self->size);
	ASSERT_LE(0, self->fd);
	self->map = vmr_map(self->fd, self->size);
	ASSERT_NONNULL(self->map);
}

FIXTURE_TEARDOWN(fs)
{
	if (self->map)
		munmap(self->map, self->size);
	if (self->fd >= 0)
		close(self->fd);
	vmr_umount(self->dir);
}

/* Pages [0, 32) hold the pattern, [32, 64) are holes. */
static void fill_half(uint8_t *map)
{
	for (uint64_t i = 0; i < 32; i++)
		fill_page(map, i, pat(1, i));
}

static int check_half(int fd)
{
	static uint8_t buf[64 * PG];
	int bad = 0;

	if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return -1;
	for (uint64_t i = 0; i < 64; i++) {
		if (i < 32 && !page_has(buf, i, pat(1, i)))
			bad++;
		if (i >= 32) {
			for (size_t b = 0; b < PG; b++)
				if (buf[i * PG + b]) {
					bad++;
					break;
				}
		}
	}
	return bad;
}

TEST_F(fs, vmm_writes_reverted)
{
	struct vmreset_stats st;
	uint64_t n = 0, kept = 0;
	char buf[PG];

	fill_half(self->map);
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(32, st.resident_pages);
	ASSERT_EQ(0, st.dirty_pages);

	/* Through the mapping: a page with data and a hole. */
	fill_page(self->map, 1, 0xaaaa);
	fill_page(self->map, 40, 0xbbbb);
	/* pwrite: data, hole, and an unaligned write across two pages. */
	memset(buf, 0x5a, sizeof(buf));
	ASSERT_EQ((ssize_t)PG, pwrite(self->fd, buf, PG, 2 * PG));
	ASSERT_EQ((ssize_t)PG, pwrite(self->fd, buf, PG, 50 * PG));
	ASSERT_EQ(100, pwrite(self->fd, buf, 100, 4 * PG - 50));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(6, st.dirty_pages);
	ASSERT_EQ(34, st.resident_pages);
	ASSERT_EQ(4, st.undo_pages);	/* holes need no copy */

	ASSERT_EQ(0, vmr_revert(self->fd, &n, &kept));
	ASSERT_EQ(6, n);
	ASSERT_EQ(0, kept);
	ASSERT_EQ(0, check_half(self->fd));
	/* The mapping sees the reverted content too. */
	ASSERT_TRUE(page_has(self->map, 1, pat(1, 1)));
	ASSERT_TRUE(page_has(self->map, 2, pat(1, 2)));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(32, st.resident_pages);
	ASSERT_EQ(0, st.undo_pages);
	ASSERT_EQ(0, st.dirty_pages);
	ASSERT_EQ(1, st.reverts);
	ASSERT_EQ(6, st.reverted_pages);

	/* Reverting a clean file touches nothing. */
	ASSERT_EQ(0, vmr_revert(self->fd, &n, NULL));
	ASSERT_EQ(0, n);
}

TEST_F(fs, truncate_and_punch_reverted)
{
	struct stat sb;
	uint64_t n;

	fill_half(self->map);
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	munmap(self->map, self->size);
	self->map = NULL;

	/* Shrink into the data, punch a hole, grow and write past the end. */
	ASSERT_EQ(0, ftruncate(self->fd, 10 * PG + 123));
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       2 * PG, 3 * PG));
	ASSERT_EQ(0, ftruncate(self->fd, 100 * PG));
	ASSERT_EQ(3, pwrite(self->fd, "xyz", 3, 90 * PG));

	ASSERT_EQ(0, vmr_revert(self->fd, &n, NULL));
	/* pages 10..31 truncated (10 partly), 2..4 punched, 90 written */
	ASSERT_EQ(22 + 3 + 1, n);
	ASSERT_EQ(0, fstat(self->fd, &sb));
	ASSERT_EQ((off_t)self->size, sb.st_size);
	ASSERT_EQ(0, check_half(self->fd));
}

TEST_F(fs, preserved_ranges_survive)
{
	struct vmreset_range r[8];
	uint64_t n = 0, kept = 0;

	for (uint64_t i = 0; i < 64; i++)
		fill_page(self->map, i, pat(1, i));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	/* [8, 16) as two adjacent adds, merged into one range. */
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 8 * PG, 4 * PG));
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 12 * PG, 4 * PG));
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 40 * PG, PG));
	ASSERT_EQ(2, vmr_list(self->fd, VMRESET_IOC_PRESERVE_LIST, r, 8, 8));
	ASSERT_EQ(8 * PG, r[0].offset);
	ASSERT_EQ(8 * PG, r[0].length);
	ASSERT_EQ(40 * PG, r[1].offset);
	ASSERT_EQ(PG, r[1].length);

	for (uint64_t i = 0; i < 64; i++)
		fill_page(self->map, i, pat(2, i));
	ASSERT_EQ(0, vmr_revert(self->fd, &n, &kept));
	ASSERT_EQ(55, n);
	ASSERT_EQ(9, kept);
	for (uint64_t i = 0; i < 64; i++) {
		int preserved = (i >= 8 && i < 16) || i == 40;

		ASSERT_TRUE(page_has(self->map, i, preserved ? pat(2, i) : pat(1, i)))
			TH_LOG("page %lu", (unsigned long)i);
	}

	/* Writes after a revert are tracked again, preserved or not. */
	for (uint64_t i = 0; i < 64; i++)
		fill_page(self->map, i, pat(3, i));
	/* Splitting [8, 16) by removing [10, 12). */
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_DEL, 10 * PG, 2 * PG));
	ASSERT_EQ(3, vmr_list(self->fd, VMRESET_IOC_PRESERVE_LIST, r, 8, 1));
	ASSERT_EQ(0, vmr_revert(self->fd, &n, &kept));
	ASSERT_EQ(57, n);
	ASSERT_EQ(7, kept);
	for (uint64_t i = 0; i < 64; i++) {
		uint64_t want = pat(1, i);

		if ((i >= 8 && i < 10) || (i >= 12 && i < 16) || i == 40)
			want = pat(3, i);
		else if (i >= 10 && i < 12)
			want = pat(2, i);	/* kept at the first revert */
		ASSERT_TRUE(page_has(self->map, i, want))
			TH_LOG("page %lu", (unsigned long)i);
	}

	/* Truncation and hole punching may not cut into them. */
	ASSERT_ERRNO(ftruncate(self->fd, 9 * PG), EBUSY);
	ASSERT_ERRNO(fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       39 * PG, 2 * PG), EBUSY);
	ASSERT_EQ(0, ftruncate(self->fd, 41 * PG));
}

TEST_F(fs, dirty_list_with_cursor)
{
	static const uint64_t pages[] = { 1, 2, 3, 10, 20, 21, 22, 23, 24, 25, 63 };
	struct vmreset_range r[16];
	struct vmreset_range_list l = { 0 };

	/* No snapshot: nothing is dirty. */
	fill_page(self->map, 5, 1);
	ASSERT_EQ(0, vmr_list(self->fd, VMRESET_IOC_DIRTY, r, 16, 16));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		fill_page(self->map, pages[i], 7);
	ASSERT_EQ(4, vmr_list(self->fd, VMRESET_IOC_DIRTY, r, 16, 1));
	ASSERT_EQ(1 * PG, r[0].offset);
	ASSERT_EQ(3 * PG, r[0].length);
	ASSERT_EQ(10 * PG, r[1].offset);
	ASSERT_EQ(PG, r[1].length);
	ASSERT_EQ(20 * PG, r[2].offset);
	ASSERT_EQ(6 * PG, r[2].length);
	ASSERT_EQ(63 * PG, r[3].offset);

	/* A cursor in the middle of a run starts there. */
	l.ranges = (uintptr_t)r;
	l.nr = 16;
	l.cursor = 22 * PG;
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_DIRTY, &l));
	ASSERT_EQ(2, l.nr);
	ASSERT_EQ(22 * PG, r[0].offset);
	ASSERT_EQ(4 * PG, r[0].length);
	ASSERT_EQ(VMRESET_CURSOR_END, l.cursor);
	/* Zero capacity reports where the list goes on. */
	l.nr = 0;
	l.cursor = 0;
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_DIRTY, &l));
	ASSERT_EQ(0, l.nr);
	ASSERT_EQ(1 * PG, l.cursor);
}

/* sendfile/splice read the file (6.1 passes our pages to the pipe itself). */
TEST_F(fs, sendfile_and_splice)
{
	char buf[3 * PG], out[3 * PG];
	int tmp, pfd[2];
	off_t off = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(self->fd, buf, sizeof(buf), PG));
	tmp = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	ASSERT_LE(0, tmp);
	off = PG;
	ASSERT_EQ((ssize_t)sizeof(buf), sendfile(tmp, self->fd, &off, sizeof(buf)));
	ASSERT_EQ((ssize_t)sizeof(out), pread(tmp, out, sizeof(out), 0));
	ASSERT_EQ(0, memcmp(buf, out, sizeof(buf)));
	close(tmp);

	ASSERT_EQ(0, pipe(pfd));
	off = PG + 100;
	ASSERT_EQ(1000, splice(self->fd, &off, pfd[1], NULL, 1000, 0));
	ASSERT_EQ(1000, read(pfd[0], out, sizeof(out)));
	ASSERT_EQ(0, memcmp(buf + 100, out, 1000));
	/* And into the file from a pipe. */
	ASSERT_EQ(5, write(pfd[1], "spliz", 5));
	off = 0;
	ASSERT_EQ(5, splice(pfd[0], NULL, self->fd, &off, 5, 0));
	ASSERT_EQ(5, pread(self->fd, out, 5, 0));
	ASSERT_EQ(0, memcmp("spliz", out, 5));
	close(pfd[0]);
	close(pfd[1]);
}

static long used_pages(const char *dir)
{
	struct statfs s;

	if (statfs(dir, &s))
		return -1;
	return (long)(s.f_blocks - s.f_bfree);
}

TEST_F(fs, clones_share_and_isolate)
{
	const uint64_t npages = 4096, nclones = 100, dirty = npages / 100;
	struct file_clone_range fcr = { 0 };
	struct vmreset_stats st;
	char path[256], cmd[600], dir2[64];
	int clones[100], fc, fx;
	uint8_t *a, *b;
	int fa, fb;
	long kb0, kb1;

	fa = vmr_file(self->dir, "a", npages * PG);
	ASSERT_LE(0, fa);
	a = vmr_map(fa, npages * PG);
	ASSERT_NONNULL(a);
	for (uint64_t i = 0; i < npages; i++)
		fill_page(a, i, pat(1, i));
	ASSERT_EQ(npages + 0, (uint64_t)used_pages(self->dir));

	fb = vmr_file(self->dir, "b", 0);
	ASSERT_LE(0, fb);
	ASSERT_EQ(0, ioctl(fb, FICLONE, fa));
	ASSERT_EQ(npages, (uint64_t)used_pages(self->dir));	/* nothing copied */
	b = vmr_map(fb, npages * PG);
	ASSERT_NONNULL(b);
	ASSERT_EQ(0, vmr_stats(fb, &st));
	ASSERT_EQ(npages, st.shared_pages);
	ASSERT_EQ(npages * PG, st.file_size);

	/* A write on either side never shows on the other. */
	fill_page(a, 5, 0xa);
	ASSERT_EQ((ssize_t)8, pwrite(fb, "12345678", 8, 7 * PG));
	ASSERT_TRUE(page_has(b, 5, pat(1, 5)));
	ASSERT_TRUE(page_has(a, 7, pat(1, 7)));
	ASSERT_EQ(0, memcmp(b + 7 * PG, "12345678", 8));
	ASSERT_TRUE(page_has(a, 5, 0xa));
	ASSERT_EQ(0, vmr_stats(fa, &st));
	ASSERT_EQ(npages - 2, st.shared_pages);
	ASSERT_EQ(npages + 2, (uint64_t)used_pages(self->dir));

	/* Each side snapshots and reverts on its own. */
	ASSERT_EQ(0, vmr_snapshot(fb, NULL));
	fill_page(b, 9, 0xb);
	fill_page(a, 9, 0xc);
	ASSERT_EQ(0, vmr_revert(fb, NULL, NULL));
	ASSERT_TRUE(page_has(b, 9, pat(1, 9)));
	ASSERT_TRUE(page_has(a, 9, 0xc));

	/* FICLONERANGE of a part, into the middle of another file. */
	fcr.src_fd = fa;
	fcr.src_offset = 16 * PG;
	fcr.src_length = 4 * PG;
	fcr.dest_offset = 2 * PG;
	fc = vmr_file(self->dir, "c", 8 * PG);
	ASSERT_LE(0, fc);
	if (fc >= 0) {
		ASSERT_EQ(0, ioctl(fc, FICLONERANGE, &fcr));
		ASSERT_EQ(0, vmr_stats(fc, &st));
		ASSERT_EQ(4, st.resident_pages);
		ASSERT_EQ(4, st.shared_pages);
		fcr.src_offset = 1;
		ASSERT_ERRNO(ioctl(fc, FICLONERANGE, &fcr), EINVAL);
		close(fc);
	}

	/* Many clones that each dirty 1% cost about that 1% each. */
	kb0 = meminfo("MemFree");
	for (uint64_t c = 0; c < nclones; c++) {
		snprintf(path, sizeof(path), "clone%lu", (unsigned long)c);
		clones[c] = vmr_file(self->dir, path, 0);
		ASSERT_LE(0, clones[c]);
		ASSERT_EQ(0, ioctl(clones[c], FICLONE, fa));
		for (uint64_t i = 0; i < dirty; i++)
			ASSERT_EQ(8, pwrite(clones[c], &c, 8, (i * 97 % npages) * PG));
	}
	kb1 = meminfo("MemFree");
	/* + the copies of page 9 made while B had a snapshot */
	ASSERT_EQ(npages + 3 + nclones * dirty, (uint64_t)used_pages(self->dir));
	TH_LOG("%lu clones dirtying %lu pages each: MemFree -%ld kB",
	       (unsigned long)nclones, (unsigned long)dirty, kb0 - kb1);
	ASSERT_LT(kb0 - kb1, (long)(nclones * dirty * 4 * 2 + 8192));
	for (uint64_t c = 0; c < nclones; c++)
		close(clones[c]);
	/* Removing the clones gives their private pages back. */
	for (uint64_t c = 0; c < nclones; c++) {
		snprintf(path, sizeof(path), "%s/clone%lu", self->dir, (unsigned long)c);
		ASSERT_EQ(0, unlink(path));
	}
	ASSERT_EQ(npages + 3, (uint64_t)used_pages(self->dir));

	/* cp --reflink=always goes through the same path (GNU cp if present). */
	if (!access("/usr/bin/gnucp", X_OK)) {
		snprintf(cmd, sizeof(cmd),
			 "/usr/bin/gnucp --reflink=always %s/a %s/reflinked",
			 self->dir, self->dir);
		ASSERT_EQ(0, system(cmd));
		snprintf(path, sizeof(path), "%s/reflinked", self->dir);
		fb = open(path, O_RDONLY);
		ASSERT_LE(0, fb);
		ASSERT_EQ(0, vmr_stats(fb, &st));
		ASSERT_EQ(npages, st.shared_pages);
	}

	/* Clones across mounts are refused. */
	ASSERT_EQ(0, vmr_mount(dir2, "size=1m"));
	if (dir2[0]) {
		fx = vmr_file(dir2, "x", 0);
		ASSERT_LE(0, fx);
		ASSERT_ERRNO(ioctl(fx, FICLONE, fa), EXDEV);
		close(fx);
		vmr_umount(dir2);
	}
}

/*
 * A clone's range comes from i_size, which ftruncate() makes terabytes
 * long without a page: the clone must cost what the files hold, not what
 * their size says (it used to walk every hole with both locks held, a soft
 * lockup that kill -9 could not end). Pages of the destination where the
 * source has a hole must still go.
 */
TEST_F_TIMEOUT(fs, clone_sparse_terabytes, 120)
{
	const off_t size = 64LL << 40, far = size - 3 * PG;
	uint8_t buf[PG], want[PG], zero[PG] = { 0 };
	int fa, fb;

	fa = vmr_file(self->dir, "sparse-a", 0);
	fb = vmr_file(self->dir, "sparse-b", 0);
	ASSERT_LE(0, fa);
	ASSERT_LE(0, fb);
	ASSERT_EQ(0, ftruncate(fa, size));
	ASSERT_EQ(0, ftruncate(fb, size));
	fill_page(want, 0, pat(7, 1));
	ASSERT_EQ(PG, pwrite(fa, want, PG, 0));
	ASSERT_EQ(PG, pwrite(fa, want, PG, far));
	/* b has pages where a has holes: the clone must drop them. */
	fill_page(buf, 0, pat(8, 2));
	ASSERT_EQ(PG, pwrite(fb, buf, PG, PG));
	ASSERT_EQ(PG, pwrite(fb, buf, PG, size / 2));
	ASSERT_EQ(0, ioctl(fb, FICLONE, fa));
	ASSERT_EQ(size, lseek(fb, 0, SEEK_END));
	ASSERT_EQ(PG, pread(fb, buf, PG, 0));
	ASSERT_EQ(0, memcmp(buf, want, PG));
	ASSERT_EQ(PG, pread(fb, buf, PG, far));
	ASSERT_EQ(0, memcmp(buf, want, PG));
	ASSERT_EQ(PG, pread(fb, buf, PG, PG));
	ASSERT_EQ(0, memcmp(buf, zero, PG));
	ASSERT_EQ(PG, pread(fb, buf, PG, size / 2));
	ASSERT_EQ(0, memcmp(buf, zero, PG));
	close(fa);
	close(fb);
}

TEST_F(fs, filesystem_limits)
{
	struct statfs s;
	char dir[64], buf[PG], path[256];
	int fd, i;

	ASSERT_EQ(0, statfs(self->dir, &s));
	ASSERT_EQ(VMRESET_FS_MAGIC, (unsigned long)s.f_type);
	ASSERT_EQ(256UL << 20, s.f_blocks * s.f_bsize);

	/* size= bounds the pages, nr_inodes= the files: ENOSPC. */
	ASSERT_EQ(0, vmr_mount(dir, "size=64k,nr_inodes=4"));
	fd = vmr_file(dir, "f", 0);
	ASSERT_LE(0, fd);
	memset(buf, 1, sizeof(buf));
	for (i = 0; i < 16; i++)
		ASSERT_EQ((ssize_t)PG, write(fd, buf, PG));
	ASSERT_ERRNO(write(fd, buf, PG), ENOSPC);
	/* Holes read as zeros and cost nothing. */
	ASSERT_EQ(0, ftruncate(fd, 1 << 30));
	ASSERT_EQ((ssize_t)PG, pread(fd, buf, PG, 512 << 20));
	ASSERT_EQ(NULL, memchr(buf, 1, PG));
	close(fd);
	for (i = 0; i < 2; i++) {	/* root + "f" + 2 = 4 */
		snprintf(path, sizeof(path), "g%d", i);
		fd = vmr_file(dir, path, 0);
		ASSERT_LE(0, fd);
		close(fd);
	}
	ASSERT_ERRNO(vmr_file(dir, "one-too-many", 0), ENOSPC);

	/* Ordinary file operations. */
	snprintf(path, sizeof(path), "%s/g0", dir);
	snprintf(buf, sizeof(buf), "%s/renamed", dir);
	ASSERT_EQ(0, rename(path, buf));
	ASSERT_EQ(0, chmod(buf, 0640));
	ASSERT_EQ(0, chown(buf, 1000, 1000));
	ASSERT_EQ(0, unlink(buf));
	vmr_umount(dir);

	/* MAP_PRIVATE would escape the snapshot. */
	ASSERT_EQ(MAP_FAILED, mmap(NULL, PG, PROT_READ, MAP_PRIVATE, self->fd, 0));
	ASSERT_EQ(EINVAL, errno);
	/* O_TMPFILE gives an anonymous memory object. */
	fd = open(self->dir, O_TMPFILE | O_RDWR, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, vmr_snapshot(fd, NULL));
	close(fd);
}

TEST_F(fs, bad_input)
{
	struct vmreset_snapshot s = { 0 };
	struct vmreset_revert r = { 0 };
	struct vmreset_preserve p = { 0 };
	struct vmreset_range_list l = { 0 };
	struct vmreset_stats st = { 0 };
	struct vmreset_features f = { 0 };
	struct {
		struct file_dedupe_range r;
		struct file_dedupe_range_info i;
	} d = { 0 };
	struct file_clone_range fcr = { 0 };
	char path[256];
	int ro, tmpfd;

	/* Revert before any snapshot. */
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_REVERT, &r), ENODATA);

	f.size = sizeof(f);
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_FEATURES, &f));
	ASSERT_EQ(VMRESET_API_VERSION, f.api_version);
	ASSERT_EQ(VMRESET_FEATURE_ALL, f.features);
	ASSERT_EQ(PG, f.page_size);
	f.size = 4;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_FEATURES, &f), EINVAL);

	/* Unknown flags and non-zero reserved fields. */
	s.flags = 1;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &s), EINVAL);
	s.flags = 0;
	s.__reserved[1] = 1;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &s), EINVAL);
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	r.flags = 1ULL << 63;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_REVERT, &r), EINVAL);
	r.flags = 0;
	r.__reserved[0] = 1;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_REVERT, &r), EINVAL);

	/* Preserve: op, alignment, length, overflow, flags. */
	p.op = 3;
	p.length = PG;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_PRESERVE, &p), EINVAL);
	ASSERT_ERRNO(vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 1, PG), EINVAL);
	ASSERT_ERRNO(vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 0, 100), EINVAL);
	ASSERT_ERRNO(vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 0, 0), EINVAL);
	ASSERT_ERRNO(vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, -PG, 2 * PG), EINVAL);
	p.op = VMRESET_PRESERVE_ADD;
	p.flags = 2;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_PRESERVE, &p), EINVAL);
	/* At most VMRESET_MAX_PRESERVED ranges. */
	for (uint64_t i = 0; i < VMRESET_MAX_PRESERVED; i++)
		ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 2 * i * PG, PG));
	ASSERT_ERRNO(vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 1ULL << 40, PG), ENOSPC);
	/* Splitting one more would exceed it too. */
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_DEL,
				  2 * (VMRESET_MAX_PRESERVED - 1) * PG, PG));
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 1ULL << 40, 3 * PG));
	ASSERT_ERRNO(vmr_preserve(self->fd, VMRESET_PRESERVE_DEL,
				  (1ULL << 40) + PG, PG), ENOSPC);
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_DEL, 0, 1ULL << 41));

	/* Lists: capacity, cursor alignment, bad pointers, flags. */
	l.nr = VMRESET_MAX_LIST + 1;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_DIRTY, &l), EINVAL);
	l.nr = 1;
	l.cursor = 1;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_DIRTY, &l), EINVAL);
	l.cursor = 0;
	l.flags = 1;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_DIRTY, &l), EINVAL);
	l.flags = 0;
	l.ranges = 0x10;	/* unmapped */
	fill_page(self->map, 0, 1);
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_DIRTY, &l), EFAULT);
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_SNAPSHOT, (void *)0x10), EFAULT);
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_STATS, NULL), EFAULT);
	st.size = 8;
	ASSERT_ERRNO(ioctl(self->fd, VMRESET_IOC_STATS, &st), EINVAL);
	/* Unknown ioctl numbers. */
	ASSERT_ERRNO(ioctl(self->fd, _IO(VMRESET_IOC_MAGIC, 0x7f), 0), ENOTTY);
	ASSERT_ERRNO(ioctl(self->fd, _IOWR(VMRESET_IOC_MAGIC, 0x01, int), &ro), ENOTTY);

	/* Changing state needs a writable fd; looking does not. */
	snprintf(path, sizeof(path), "%s/mem", self->dir);
	ro = open(path, O_RDONLY);
	ASSERT_LE(0, ro);
	ASSERT_ERRNO(ioctl(ro, VMRESET_IOC_SNAPSHOT, &s), EBADF);
	ASSERT_ERRNO(ioctl(ro, VMRESET_IOC_REVERT, &r), EBADF);
	ASSERT_ERRNO(vmr_preserve(ro, VMRESET_PRESERVE_ADD, 0, PG), EBADF);
	ASSERT_EQ(0, vmr_stats(ro, &st));
	close(ro);

	/* Our ioctls on something that is not vmresetfs. */
	tmpfd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	ASSERT_LE(0, tmpfd);
	ASSERT_ERRNO(vmr_snapshot(tmpfd, NULL), ENOTTY);
	ASSERT_ERRNO(vmr_stats(tmpfd, &st), ENOTTY);
	/* ...and FICLONE from it. */
	ASSERT_NE(0, ioctl(self->fd, FICLONE, tmpfd));
	close(tmpfd);
	/* A directory of ours. */
	tmpfd = open(self->dir, O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, tmpfd);
	ASSERT_ERRNO(vmr_snapshot(tmpfd, NULL), ENOTTY);
	close(tmpfd);

	/* Dedupe is not offered. */
	d.r.src_length = PG;
	d.r.dest_count = 1;
	d.i.dest_fd = self->fd;
	d.i.dest_offset = PG;
	ASSERT_EQ(0, ioctl(self->fd, FIDEDUPERANGE, &d));
	ASSERT_EQ(-EOPNOTSUPP, d.i.status);
	/* A clone that ends mid-page inside the destination would clobber it. */
	ro = vmr_file(self->dir, "short", PG + 100);
	ASSERT_LE(0, ro);
	fcr.src_fd = ro;
	ASSERT_ERRNO(ioctl(self->fd, FICLONERANGE, &fcr), EINVAL);
	close(ro);
	/* Unsupported fallocate modes. */
	ASSERT_ERRNO(fallocate(self->fd, FALLOC_FL_COLLAPSE_RANGE, 0, PG), EOPNOTSUPP);
}

/*
 * Make the slab allocator give back what it keeps for reuse, so that
 * meminfo shows memory in use: empty slabs on every kernel, and on the
 * debug kernel (make check-debug) the freed objects KASAN's quarantine
 * holds back to catch use-after-free (up to 1/32 of RAM, so 10,000 cycles
 * of frees look like a leak of megabytes). kmem_cache_shrink(), which
 * /sys/kernel/slab/<cache>/shrink calls, drains a cache's quarantined
 * objects (kasan_cache_shrink()). A grace period first, for frees that
 * wait for RCU (kmemleak's metadata, xarray nodes). Returns the number of
 * caches shrunk.
 */
static int slab_settle(void)
{
	DIR *d;
	struct dirent *e;
	int n = 0;

	syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
	usleep(100000);
	d = opendir("/sys/kernel/slab");
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[320];
		int fd;

		/* Merged caches appear again as links to the real one. */
		if (e->d_name[0] == '.' || e->d_type == DT_LNK)
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/slab/%s/shrink", e->d_name);
		fd = open(path, O_WRONLY);
		if (fd < 0)
			continue;
		if (write(fd, "1", 1) == 1)
			n++;
		close(fd);
	}
	closedir(d);
	return n;
}

/* 10,000 SNAPSHOT/REVERT cycles leave memory and slab flat. */
TEST_F_TIMEOUT(fs, cycles_leave_memory_flat, 600)
{
	long free0 = 0, slab0 = 0, free1, slab1, rawslab1;

	for (uint64_t i = 0; i < 64; i++)
		fill_page(self->map, i, pat(1, i));
	for (int pass = 0; pass < 2; pass++) {
		int cycles = pass ? 10000 : 200;	/* warm-up first */

		for (int c = 0; c < cycles; c++) {
			for (uint64_t i = 0; i < 4; i++)
				fill_page(self->map, (c * 7 + i * 13) % 64, c);
			if (c % 3 == 0)
				ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
			else
				ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
		}
		if (!pass) {
			ASSERT_LT(0, slab_settle());
			free0 = meminfo("MemFree");
			slab0 = meminfo("SUnreclaim");
		}
	}
	rawslab1 = meminfo("SUnreclaim");
	ASSERT_LT(0, slab_settle());
	free1 = meminfo("MemFree");
	slab1 = meminfo("SUnreclaim");
	TH_LOG("MemFree %+ld kB, SUnreclaim %+ld kB over 10000 cycles (settling gave back %ld kB of slab)",
	       free1 - free0, slab1 - slab0, rawslab1 - slab1);
	/* A leak of one page per cycle would be 40 MB. */
	ASSERT_LT(free0 - free1, 4096);
	ASSERT_LT(slab1 - slab0, 1024);
	/* The last cycle was a snapshot: no undo pages left. */
	ASSERT_EQ(64, used_pages(self->dir));
}

/* Memory is charged to the cgroup of the process that faults it in. */
TEST(memcg_charge)
{
	const char *cg = "/sys/fs/cgroup/vmrtest";
	char dir[64], path[256], buf[64];
	long before, after;
	int fd, status;
	pid_t pid;
	FILE *f;

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) &&
	    mount("none", "/sys/fs/cgroup", "cgroup2", 0, NULL))
		SKIP(return, "no cgroup2: %s", strerror(errno));
	f = fopen("/sys/fs/cgroup/cgroup.subtree_control", "w");
	if (!f || fputs("+memory", f) < 0 || fclose(f))
		SKIP(return, "cannot enable the memory controller");
	mkdir(cg, 0755);
	snprintf(path, sizeof(path), "%s/memory.current", cg);

	ASSERT_EQ(0, vmr_mount(dir, "size=64m"));
	fd = vmr_file(dir, "m", 1024 * PG);
	ASSERT_LE(0, fd);
	f = fopen(path, "r");
	ASSERT_NONNULL(f);
	before = atol(fgets(buf, sizeof(buf), f) ? buf : "0");
	fclose(f);

	pid = fork();
	if (!pid) {
		char procs[256];
		uint8_t *m;

		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg);
		f = fopen(procs, "w");
		if (!f || fprintf(f, "%d", getpid()) < 0 || fclose(f))
			_exit(2);
		m = vmr_map(fd, 1024 * PG);
		if (!m)
			_exit(3);
		for (uint64_t i = 0; i < 1024; i++)
			m[i * PG] = 1;
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	f = fopen(path, "r");
	ASSERT_NONNULL(f);
	after = atol(fgets(buf, sizeof(buf), f) ? buf : "0");
	fclose(f);
	TH_LOG("memory.current %ld -> %ld", before, after);
	ASSERT_GE(after - before, (long)(1024 * PG));
	close(fd);
	vmr_umount(dir);
	rmdir(cg);
}

/* Write @v into the cgroup file @name of @cg; 0 or -1. */
static int cg_write(const char *cg, const char *name, const char *v)
{
	char path[256];
	FILE *f;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", cg, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	ret = fputs(v, f) < 0 ? -1 : 0;
	return fclose(f) || ret ? -1 : 0;
}

/* The value of @key in the cgroup file @name of @cg (a flat keyed file). */
static long cg_key(const char *cg, const char *name, const char *key)
{
	char path[256], line[256];
	size_t n = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cg, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ') {
			v = atol(line + n + 1);
			break;
		}
	fclose(f);
	return v;
}

/* Kept copies of @fd: now, and given back by the shrinker so far. */
static void kept_now(int fd, uint64_t *cached, uint64_t *reclaimed)
{
	struct vmreset_stats st;

	if (vmr_stats(fd, &st))
		_exit(10);
	*cached = st.cached_pages;
	*reclaimed = st.cached_reclaimed;
}

/* What kept_in_cgroup() saw, in order. */
struct kept_seen {
	uint64_t after_revert, reclaimed0;
	uint64_t after_reclaim, reclaimed1;	/* memory.reclaim of 8M */
	uint64_t after_anon, reclaimed2;	/* 20 MiB touched */
};

/*
 * In cgroup @cg: write a 4,096-page file, SNAPSHOT, write it all again,
 * REVERT (a kept copy per page), if @reclaim ask the cgroup to reclaim
 * 8 MiB (memory.reclaim; the write may say EAGAIN: freed kept pages do not
 * count as reclaimed pages, only what the shrinker reports), then touch 20 MiB
 * of anonymous memory. Exits 0, or 1 + what went wrong.
 */
static int kept_in_cgroup(const char *cg, int fd, bool reclaim,
			  struct kept_seen *seen)
{
	struct kept_seen *shared = mmap(NULL, PG, PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char buf[32];
	int status;
	pid_t pid;

	if (shared == MAP_FAILED)
		return -1;
	pid = fork();
	if (!pid) {
		uint8_t *m, *anon;

		snprintf(buf, sizeof(buf), "%d", getpid());
		if (cg_write(cg, "cgroup.procs", buf))
			_exit(2);
		m = vmr_map(fd, 4096 * PG);
		if (!m)
			_exit(3);
		memset(m, 1, 4096 * PG);
		if (vmr_snapshot(fd, NULL))
			_exit(4);
		memset(m, 2, 4096 * PG);
		if (vmr_revert(fd, NULL, NULL))
			_exit(5);
		kept_now(fd, &shared->after_revert, &shared->reclaimed0);
		for (uint64_t i = 0; i < 4096 * PG; i++)
			if (m[i] != 1)
				_exit(6);
		if (reclaim)
			cg_write(cg, "memory.reclaim", "8M");
		kept_now(fd, &shared->after_reclaim, &shared->reclaimed1);
		anon = mmap(NULL, 20 << 20, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (anon == MAP_FAILED)
			_exit(7);
		memset(anon, 3, 20 << 20);
		kept_now(fd, &shared->after_anon, &shared->reclaimed2);
		/* Whatever reclaim took, the file is the snapshot. */
		for (uint64_t i = 0; i < 4096 * PG; i++)
			if (m[i] != 1)
				_exit(8);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	*seen = *shared;
	munmap(shared, PG);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * Kept copies are charged to the cgroup of the pages they copy, and
 * reclaim inside that cgroup gives them back: each copy has an entry on a
 * memcg-aware list_lru of the superblock's shrinker, charged to that
 * cgroup, which marks the cgroup for the shrinker (docs/design.md, "Kept
 * copies"). 16 MiB of file, its 16 MiB of kept copies and 20 MiB of
 * anonymous memory under memory.max 40M: the copies are made, memory.reclaim
 * takes some, the anonymous memory the rest it needs, and nothing is
 * OOM-killed (before the list_lru it was, so no copy was kept there at
 * all). A cgroup without a limit keeps every copy.
 */
TEST(kept_copies_in_limited_cgroup)
{
	/* A cgroup each: the files stay, and so do their charges. */
	const char *lims[2] = { "/sys/fs/cgroup/vmrkept-limited", "/sys/fs/cgroup/vmrkept-limited2" };
	const char *free_cg = "/sys/fs/cgroup/vmrkept-free";
	struct kept_seen k = { 0 };
	int fd[3], reclaim;
	long ooms;
	char dir[64];

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) &&
	    mount("none", "/sys/fs/cgroup", "cgroup2", 0, NULL))
		SKIP(return, "no cgroup2: %s", strerror(errno));
	if (cg_write("/sys/fs/cgroup", "cgroup.subtree_control", "+memory"))
		SKIP(return, "cannot enable the memory controller");
	ASSERT_EQ(0, vmr_set_param("keep_copies", 1));
	ASSERT_EQ(0, vmr_mount(dir, "size=256m,keep_size=128m"));
	/* A file each, so that each run's pages are its own cgroup's. */
	for (int i = 0; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "m%d", i);
		fd[i] = vmr_file(dir, name, 4096 * PG);
		ASSERT_LE(0, fd[i]);
	}

	/* Allocation pressure alone, then memory.reclaim first. */
	for (reclaim = 0; reclaim < 2; reclaim++) {
		const char *lim = lims[reclaim];

		ASSERT_TRUE(!mkdir(lim, 0755) || errno == EEXIST);
		ASSERT_EQ(0, cg_write(lim, "memory.max", "40M"));
		ooms = cg_key(lim, "memory.events", "oom_kill");
		ASSERT_EQ(0, kept_in_cgroup(lim, fd[reclaim], reclaim, &k))
			TH_LOG("the limited cgroup's child failed");
		TH_LOG("limited cgroup%s: kept %lu after the revert, %lu after memory.reclaim, %lu after 20 MiB (reclaimed %lu, %lu, %lu)",
		       reclaim ? ", memory.reclaim" : "",
		       (unsigned long)k.after_revert, (unsigned long)k.after_reclaim,
		       (unsigned long)k.after_anon, (unsigned long)k.reclaimed0,
		       (unsigned long)k.reclaimed1, (unsigned long)k.reclaimed2);
		/* Copies were made, and that cgroup's reclaim took them back. */
		ASSERT_LT(2048, k.after_revert);
		if (reclaim) {
			ASSERT_GT(k.after_revert, k.after_reclaim);
			ASSERT_EQ(k.after_revert - k.after_reclaim, k.reclaimed1 - k.reclaimed0);
		} else {
			ASSERT_EQ(k.after_revert, k.after_reclaim);
		}
		/* 16 + 16 + 20 MiB do not fit in 40: at least 12 MiB went. */
		ASSERT_GE(k.after_revert - k.after_anon, (uint64_t)(12 << 20) / PG);
		ASSERT_EQ(k.after_revert - k.after_anon, k.reclaimed2 - k.reclaimed0);
		ASSERT_EQ(ooms, cg_key(lim, "memory.events", "oom_kill"));
	}

	ASSERT_TRUE(!mkdir(free_cg, 0755) || errno == EEXIST);
	ASSERT_EQ(0, kept_in_cgroup(free_cg, fd[2], false, &k));
	ASSERT_EQ(4096, k.after_revert);
	ASSERT_EQ(4096, k.after_anon);

	/* The cgroups gone, their copies are their parent's, and go too. */
	ASSERT_EQ(0, rmdir(lims[0]));
	ASSERT_EQ(0, rmdir(lims[1]));
	ASSERT_EQ(0, rmdir(free_cg));
	ASSERT_EQ(0, vmr_drop_caches());
	for (int i = 0; i < 3; i++) {
		kept_now(fd[i], &k.after_anon, &k.reclaimed2);
		ASSERT_EQ(0, k.after_anon);
		close(fd[i]);
	}
	vmr_umount(dir);
}

TEST_HARNESS_MAIN
