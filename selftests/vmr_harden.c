// SPDX-License-Identifier: GPL-2.0
/*
 * Regression tests for defects found in review and by the fuzzer (issue 11):
 * what a REVERT that shrinks a file leaves past EOF, the size REVERT gives
 * back with preserved ranges, and the end of file as pwrite, ftruncate and
 * SNAPSHOT see it.
 */
#define _GNU_SOURCE
#include <linux/falloc.h>
#include <linux/fs.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <liburing.h>
#include <linux/if_xdp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "harness.h"
#include "vmr_util.h"

FIXTURE(hd) {
	char dir[64];
	int fd;
};

FIXTURE_SETUP(hd)
{
	self->fd = -1;
	ASSERT_EQ(0, vmr_mount(self->dir, "size=64m"))
		TH_LOG("mount vmresetfs: %s", strerror(errno));
	self->fd = vmr_file(self->dir, "mem", 4 * PG);
	ASSERT_LE(0, self->fd);
}

FIXTURE_TEARDOWN(hd)
{
	if (self->fd >= 0)
		close(self->fd);
	vmr_umount(self->dir);
}

static off_t fsize(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

/* Every byte of [off, off + len) of @fd is zero (read through pread). */
static bool zeros_at(int fd, off_t off, size_t len)
{
	static uint8_t buf[64 * PG];

	if (len > sizeof(buf) || pread(fd, buf, len, off) != (ssize_t)len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static bool all_bytes(const uint8_t *buf, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != v)
			return false;
	return true;
}

/* The first of 4 pages of @map not all @v, through the mapping, or 0. */
static int probe_all(const uint8_t *map, uint8_t v)
{
	for (int i = 0; i < 4; i++)
		if (!all_bytes(map + i * PG, PG, v))
			return i + 1;
	return 0;
}

/*
 * Run @fn in a child that gets SIGALRM after @secs: returns the signal that
 * ended the child (SIGALRM meaning it was stuck), 0 for a normal exit.
 */
static int in_child(void (*fn)(void *), void *arg, unsigned int secs)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		alarm(secs);
		fn(arg);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

struct tail_arg {
	int fd;
	int how;	/* 0: write, 1: read, 2: MADV_POPULATE_WRITE */
};

/*
 * In a child, so that a livelock is ended by its alarm: map the grown file,
 * read-fault all of it, write one tail page, REVERT, then touch page 5,
 * which REVERT put past EOF. The PTEs must be this process's own: a child
 * forked after the faults would not inherit them.
 */
static void tail_child(void *p)
{
	struct tail_arg *a = p;
	char *map = vmr_map(a->fd, 8 * PG);

	if (!map)
		_exit(10);
	for (int i = 0; i < 8; i++)
		(void)*(volatile uint64_t *)(map + i * PG);
	*(volatile uint64_t *)(map + 6 * PG) = 7;
	if (vmr_revert(a->fd, NULL, NULL))
		_exit(11);
	switch (a->how) {
	case 0:
		*(volatile uint64_t *)(map + 5 * PG) = 42;
		break;
	case 1:
		(void)*(volatile uint64_t *)(map + 5 * PG);
		break;
	default:
		/* GUP with FOLL_WRITE, as KVM's write fault: fail, not spin. */
		if (madvise(map + 5 * PG, PG, MADV_POPULATE_WRITE))
			_exit(errno == EFAULT ? 3 : 5);
		break;
	}
	_exit(0);
}

/*
 * Issue 11, defect 3: grow after the snapshot, read-fault the new tail,
 * REVERT. The tail pages must be gone and unmapped: a write or a read there
 * gets SIGBUS promptly, where a write used to be refused by page_mkwrite
 * with VM_FAULT_NOPAGE forever (a writer spinning, KVM_RUN spinning in GUP).
 */
TEST_F(hd, revert_unmaps_the_tail_it_cuts_off)
{
	static const char *const how[] = { "a write", "a read", "MADV_POPULATE_WRITE" };
	struct vmreset_stats st;
	uint8_t *map;

	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	for (int i = 0; i < 3; i++) {
		struct tail_arg a = { self->fd, i };
		int sig;

		ASSERT_EQ(0, ftruncate(self->fd, 8 * PG));
		sig = in_child(tail_child, &a, 10);
		if (i < 2)
			EXPECT_EQ(SIGBUS, sig) TH_LOG("%s past EOF after REVERT ended with signal %d%s",
						      how[i], sig, sig == SIGALRM ? " (stuck: livelock)" : "");
		else
			EXPECT_EQ(0, sig) TH_LOG("%s past EOF after REVERT ended with signal %d%s",
						 how[i], sig, sig == SIGALRM ? " (stuck: livelock)" : "");
		ASSERT_EQ(4 * (off_t)PG, fsize(self->fd));
		ASSERT_EQ(0, vmr_stats(self->fd, &st));
		EXPECT_EQ(0, st.dirty_pages);
		/* Pages 0-3 were read-faulted (zero pages); nothing of 4-7 is left. */
		EXPECT_GE(4, st.resident_pages) TH_LOG("resident %llu",
						       (unsigned long long)st.resident_pages);
	}

	/* Grown again, the tail reads as zeros, through pread and a mapping. */
	ASSERT_EQ(0, ftruncate(self->fd, 8 * PG));
	EXPECT_TRUE(zeros_at(self->fd, 4 * PG, 4 * PG));
	map = vmr_map(self->fd, 8 * PG);
	ASSERT_NONNULL(map);
	for (size_t b = 4 * PG; b < 8 * PG; b++)
		if (map[b]) {
			EXPECT_EQ(0, map[b]) TH_LOG("byte %zu through the mapping", b);
			break;
		}
	munmap(map, 8 * PG);
}

/*
 * harden-findings.md #2: a preserved range past EOF (it may lie anywhere)
 * made REVERT keep a grown size. The size goes back to the snapshot's, and
 * past it only to the end of a preserved range that starts below the
 * current end of file.
 */
TEST_F(hd, revert_size_with_preserved_ranges)
{
	uint8_t buf[PG];

	ASSERT_EQ(0, ftruncate(self->fd, 50 * PG));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 1ULL << 40, PG));
	ASSERT_EQ(0, ftruncate(self->fd, 60 * PG));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	EXPECT_EQ(50 * (off_t)PG, fsize(self->fd));

	/* The largest range the UAPI takes ends at MAX_LFS_FILESIZE. */
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD,
				  (0x7fffffffffffffffULL & ~(PG - 1)) - PG, PG));
	ASSERT_EQ(0, ftruncate(self->fd, 60 * PG));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	EXPECT_EQ(50 * (off_t)PG, fsize(self->fd));

	/* A preserved range over the tail, page 53 written in it. */
	ASSERT_EQ(0, vmr_preserve(self->fd, VMRESET_PRESERVE_ADD, 52 * PG, 6 * PG));
	ASSERT_EQ(0, ftruncate(self->fd, 60 * PG));
	memset(buf, 0x5a, sizeof(buf));
	ASSERT_EQ((ssize_t)PG, pwrite(self->fd, buf, PG, 53 * PG));
	ASSERT_EQ((ssize_t)PG, pwrite(self->fd, buf, PG, 58 * PG));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	EXPECT_EQ(58 * (off_t)PG, fsize(self->fd));
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ((ssize_t)PG, pread(self->fd, buf, PG, 53 * PG));
	for (size_t b = 0; b < PG; b++)
		if (buf[b] != 0x5a) {
			EXPECT_EQ(0x5a, buf[b]) TH_LOG("preserved page 53, byte %zu", b);
			break;
		}
	EXPECT_TRUE(zeros_at(self->fd, 50 * PG, 3 * PG));
	EXPECT_TRUE(zeros_at(self->fd, 54 * PG, 4 * PG));
	/* Page 58 (not preserved) is gone: grown back, it reads zero. */
	ASSERT_EQ(0, ftruncate(self->fd, 60 * PG));
	EXPECT_TRUE(zeros_at(self->fd, 54 * PG, 6 * PG));
}

/*
 * A file whose end is inside a page: whatever the snapshot and REVERT
 * did, bytes past EOF read as zero when the file grows again.
 */
TEST_F(hd, tail_of_last_page_stays_zero)
{
	uint8_t buf[3 * PG];

	memset(buf, 0xa5, sizeof(buf));
	ASSERT_EQ(0, ftruncate(self->fd, 1000));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(self->fd, buf, sizeof(buf), 500));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	ASSERT_EQ(1000, fsize(self->fd));
	ASSERT_EQ(0, ftruncate(self->fd, 4 * PG));
	EXPECT_TRUE(zeros_at(self->fd, 1000, 4 * PG - 1000));
	/* Shrinking into a page zeroes its tail; a REVERT brings it back. */
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(self->fd, buf, sizeof(buf), 0));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ(0, ftruncate(self->fd, 100));
	ASSERT_EQ(0, ftruncate(self->fd, 4 * PG));
	EXPECT_TRUE(zeros_at(self->fd, 100, 4 * PG - 100));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	ASSERT_EQ(4 * (off_t)PG, fsize(self->fd));
	ASSERT_EQ((ssize_t)sizeof(buf), pread(self->fd, buf, sizeof(buf), 0));
	for (size_t b = 0; b < sizeof(buf); b++)
		if (buf[b] != 0xa5) {
			EXPECT_EQ(0xa5, buf[b]) TH_LOG("byte %zu after REVERT", b);
			break;
		}
}


/*
 * Issue 11, defect 1: on 6.1 splice put our live page into the pipe as a
 * page cache buffer. The pipe must hold a copy: what it gives out is the
 * content at the time of the splice, after the source is rewritten and
 * reverted (which frees the page), and a consumer asking to move the pages
 * (SPLICE_F_MOVE) onward gets them intact; then umount is clean (the test
 * VM fails on any "Bad page" or BUG in the kernel log).
 */
TEST_F(hd, splice_gives_a_copy)
{
	static uint8_t buf[4 * PG];
	char path[128];
	int p[2], q[2], out;
	loff_t off = 0, ooff = 0;

	memset(buf, 0xaa, sizeof(buf));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(self->fd, buf, sizeof(buf), 0));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	ASSERT_EQ(0, pipe(p));
	ASSERT_EQ(0, pipe(q));
	ASSERT_EQ((ssize_t)sizeof(buf), splice(self->fd, &off, p[1], NULL, sizeof(buf), 0));

	/* Rewrite the source in place, then revert it: its page is freed. */
	memset(buf, 0x55, sizeof(buf));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(self->fd, buf, sizeof(buf), 0));
	ASSERT_EQ((ssize_t)(2 * PG), splice(p[0], NULL, q[1], NULL, 2 * PG, SPLICE_F_MOVE));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	memset(buf, 0x11, sizeof(buf));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(self->fd, buf, sizeof(buf), 0));

	/* Half onward into another file with SPLICE_F_MOVE, half read. */
	snprintf(path, sizeof(path), "%s/out", self->dir);
	out = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ASSERT_LE(0, out);
	ASSERT_EQ((ssize_t)(2 * PG), splice(q[0], NULL, out, &ooff, 2 * PG, SPLICE_F_MOVE));
	ASSERT_EQ((ssize_t)(2 * PG), read(p[0], buf, 2 * PG));
	EXPECT_TRUE(all_bytes(buf, 2 * PG, 0xaa)) TH_LOG("the pipe shows %#x, not what was spliced",
							 buf[0]);
	ASSERT_EQ((ssize_t)(2 * PG), pread(out, buf, 2 * PG, 0));
	EXPECT_TRUE(all_bytes(buf, 2 * PG, 0xaa)) TH_LOG("moved on: %#x, not what was spliced",
							 buf[0]);
	ASSERT_EQ((ssize_t)(4 * PG), pread(self->fd, buf, 4 * PG, 0));
	EXPECT_TRUE(all_bytes(buf, 4 * PG, 0x11));

	/* A pipe still holding spliced data when the file and mount go. */
	off = 0;
	ASSERT_EQ((ssize_t)(4 * PG), splice(self->fd, &off, p[1], NULL, 4 * PG, 0));
	close(out);
	close(self->fd);
	self->fd = -1;
	vmr_umount(self->dir);
	ASSERT_EQ((ssize_t)(4 * PG), read(p[0], buf, 4 * PG));
	EXPECT_TRUE(all_bytes(buf, 4 * PG, 0x11));
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	/* The teardown's umount of an unmounted directory does nothing. */
}

/* Linux 6.2 and later refuse FOLL_LONGTERM write pins of such a mapping. */
static bool kernel_refuses_longterm_pins(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	uname(&u);
	sscanf(u.release, "%d.%d", &major, &minor);
	return major > 6 || (major == 6 && minor >= 2);
}

/*
 * Issue 11, defect 7: a long-term pin writes a page without a fault. The
 * suggested pinner, io_uring fixed buffers, cannot pin vmresetfs memory on
 * either kernel: 6.1's io_uring refuses file-backed buffers itself
 * (EOPNOTSUPP), 6.12's GUP refuses the write pin (EFAULT). A read into the
 * buffer would otherwise be written without a fault; if a kernel ever
 * takes the buffer, the test checks that REVERT restores the page.
 */
TEST_F(hd, io_uring_fixed_buffers)
{
	static uint8_t buf[4 * PG];
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	struct iovec iov;
	uint8_t *map;
	int src, ret;

	map = vmr_map(self->fd, 4 * PG);
	ASSERT_NONNULL(map);
	memset(map, 0x11, 4 * PG);
	ASSERT_EQ(0, io_uring_queue_init(4, &ring, 0));
	iov.iov_base = map;
	iov.iov_len = 4 * PG;
	ret = io_uring_register_buffers(&ring, &iov, 1);
	if (ret) {
		EXPECT_TRUE(ret == -EFAULT || ret == -EOPNOTSUPP) TH_LOG("%s", strerror(-ret));
		io_uring_queue_exit(&ring);
		munmap(map, 4 * PG);
		return;
	}
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	/* Read into the fixed buffer: the kernel writes through the pin. */
	src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, src);
	ASSERT_EQ((ssize_t)sizeof(buf), pread(src, buf, sizeof(buf), 0));
	sqe = io_uring_get_sqe(&ring);
	ASSERT_NONNULL(sqe);
	io_uring_prep_read_fixed(sqe, src, map, 4 * PG, 0, 0);
	ASSERT_EQ(1, io_uring_submit(&ring));
	ASSERT_EQ(0, io_uring_wait_cqe(&ring, &cqe));
	ASSERT_EQ((int)(4 * PG), cqe->res) TH_LOG("read_fixed: %s", strerror(-cqe->res));
	io_uring_cqe_seen(&ring, cqe);
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	ASSERT_EQ((ssize_t)sizeof(buf), pread(self->fd, buf, sizeof(buf), 0));
	EXPECT_TRUE(all_bytes(buf, sizeof(buf), 0x11))
		TH_LOG("after REVERT the file holds what the pin wrote (%#x)", buf[0]);
	close(src);
	io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
	munmap(map, 4 * PG);
}

/*
 * Issue 11, defect 7, with a pinner 6.1 lets through: an AF_XDP umem
 * (pin_user_pages(FOLL_WRITE | FOLL_LONGTERM), as RDMA and VFIO do). A
 * pinned page must stay dirty across SNAPSHOT, so that a write through the
 * pin, which takes no fault, is still reverted; 6.12 refuses the pin.
 */
TEST_F(hd, pinned_pages_stay_dirty)
{
	struct xdp_umem_reg reg = { .len = 4 * PG, .chunk_size = 2048 };
	static struct vmreset_range r[8];
	static uint8_t buf[4 * PG];
	struct vmreset_stats st;
	uint8_t *map;
	int xsk, n;

	map = vmr_map(self->fd, 4 * PG);
	ASSERT_NONNULL(map);
	memset(map, 0x11, 4 * PG);
	xsk = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (xsk < 0) {
		/* The debug kernel has no AF_XDP; 6.12 would refuse the pin. */
		EXPECT_TRUE(kernel_refuses_longterm_pins())
			TH_LOG("AF_XDP socket: %s", strerror(errno));
		munmap(map, 4 * PG);
		return;
	}
	reg.addr = (uintptr_t)map;
	if (setsockopt(xsk, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg))) {
		EXPECT_TRUE(kernel_refuses_longterm_pins())
			TH_LOG("XDP_UMEM_REG refused: %s", strerror(errno));
		close(xsk);
		munmap(map, 4 * PG);
		return;
	}
	EXPECT_FALSE(kernel_refuses_longterm_pins()) TH_LOG("the pin was taken");

	/* Twice: a pinned page stays tracked for as long as it is pinned. */
	for (int round = 0; round < 2; round++) {
		ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
		ASSERT_EQ(0, vmr_stats(self->fd, &st));
		EXPECT_EQ(4, st.dirty_pages) TH_LOG("round %d: pinned pages dirty after SNAPSHOT",
						   round);
		n = vmr_list(self->fd, VMRESET_IOC_DIRTY, r, 8, 8);
		ASSERT_EQ(1, n);
		EXPECT_EQ(0, r[0].offset);
		EXPECT_EQ(4 * PG, r[0].length);
	}
	/* What a device would write through the pin, with no fault. */
	memset(map, 0x77, 4 * PG);
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	ASSERT_EQ((ssize_t)sizeof(buf), pread(self->fd, buf, sizeof(buf), 0));
	EXPECT_TRUE(all_bytes(buf, sizeof(buf), 0x11))
		TH_LOG("after REVERT the file holds %#x, not the snapshot", buf[0]);
	EXPECT_EQ(0, probe_all(map, 0x11));
	close(xsk);
	munmap(map, 4 * PG);
}

TEST_HARNESS_MAIN
