// SPDX-License-Identifier: GPL-2.0
/*
 * store_test - drives the real vmreset-store binary (VMRESET_STORE, else
 * ../store/vmreset-store next to this program, else /usr/bin/vmreset-store)
 * on real files: round trips, dedup, the redundancy bound, tampering, gc
 * racing saves, kill -9 during saves, and a vmresetfs incremental save.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vmreset.h>

#include "harness.h"

static char tool[PATH_MAX];

static void find_tool(void)
{
	char self[PATH_MAX];
	ssize_t n;

	if (getenv("VMRESET_STORE")) {
		snprintf(tool, sizeof(tool), "%s", getenv("VMRESET_STORE"));
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		snprintf(tool, sizeof(tool), "%s/../store/vmreset-store", dirname(self));
		if (!access(tool, X_OK))
			return;
	}
	snprintf(tool, sizeof(tool), "/usr/bin/vmreset-store");
}

/* Runs the tool with a shell command tail; returns its exit code. */
static int st(const char *fmt, ...)
{
	char args[4096], cmd[8192];
	va_list ap;
	int ret;

	if (!tool[0])
		find_tool();
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s", tool, args);
	ret = system(cmd);
	return WIFEXITED(ret) ? WEXITSTATUS(ret) : 128;
}

static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	ret = system(cmd);
	return WIFEXITED(ret) ? WEXITSTATUS(ret) : 128;
}

/* The store's block count, from list -j. */
static long blocks(const char *store)
{
	char cmd[PATH_MAX + 64], buf[1 << 16];
	long n = -1;
	FILE *p;
	size_t len;
	char *b;

	snprintf(cmd, sizeof(cmd), "%s list -j %s", tool, store);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	len = fread(buf, 1, sizeof(buf) - 1, p);
	pclose(p);
	buf[len] = 0;
	b = strstr(buf, "], \"blocks\": ");
	if (b)
		n = strtol(b + 13, NULL, 10);
	return n;
}

static void fill_random(const char *path, size_t size, unsigned int seed)
{
	unsigned char *buf = malloc(size);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	srandom(seed);
	for (size_t i = 0; i < size; i++)
		buf[i] = (unsigned char)random();
	if (fd >= 0) {
		if (write(fd, buf, size) != (ssize_t)size)
			abort();
		close(fd);
	}
	free(buf);
}

static void poke(const char *path, off_t off, unsigned char val)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || pwrite(fd, &val, 1, off) != 1)
		abort();
	close(fd);
}

static void flip(const char *path, off_t off)
{
	unsigned char c;
	int fd = open(path, O_RDWR);

	if (fd < 0 || pread(fd, &c, 1, off) != 1)
		abort();
	c ^= 0x40;
	if (pwrite(fd, &c, 1, off) != 1)
		abort();
	close(fd);
}

FIXTURE(store) {
	char dir[64];
	char s[128];		/* the store */
	char k[128];		/* a key file */
};

FIXTURE_SETUP(store)
{
	find_tool();
	ASSERT_EQ(0, access(tool, X_OK)) TH_LOG("no vmreset-store at %s", tool);
	snprintf(self->dir, sizeof(self->dir), "/tmp/store_test.XXXXXX");
	ASSERT_NONNULL(mkdtemp(self->dir));
	snprintf(self->s, sizeof(self->s), "%s/store", self->dir);
	snprintf(self->k, sizeof(self->k), "%s/key", self->dir);
	ASSERT_EQ(0, st("init %s --block-size 4k >/dev/null", self->s));
	ASSERT_EQ(0, st("keygen %s", self->k));
}

FIXTURE_TEARDOWN(store)
{
	sh("rm -rf %s", self->dir);
}

TEST_F(store, round_trip_random_and_sparse)
{
	char *d = self->dir;

	sh("head -c 3000001 /dev/urandom > %s/a", d);
	ASSERT_EQ(0, st("save %s/a %s --key %s --name a >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, st("load %s a %s/a.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/a %s/a.out", d, d));

	/* Sparse: holes and a few data blocks; zero blocks are not stored. */
	ASSERT_EQ(0, sh("truncate -s 8M %s/sp && printf x | dd of=%s/sp bs=1 seek=5000000 conv=notrunc 2>/dev/null", d, d));
	ASSERT_EQ(0, st("save %s/sp %s --key %s --name sp >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, st("load %s sp %s/sp.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/sp %s/sp.out", d, d));
	/* 733 blocks of a (3000001 bytes), 1 of sp. */
	ASSERT_EQ(733 + 1, blocks(self->s));
	/* Loading over an existing file replaces it. */
	ASSERT_EQ(0, st("load %s a %s/sp.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/a %s/sp.out", d, d));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
}

TEST_F(store, dedup_identical_and_nearly_identical)
{
	char *d = self->dir, f[256];

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 1 << 20, 7);		/* 256 blocks */
	ASSERT_EQ(0, st("save %s %s --key %s --name a >/dev/null", f, self->s, self->k));
	ASSERT_EQ(256, blocks(self->s));
	ASSERT_EQ(0, st("save %s %s --key %s --name b >/dev/null", f, self->s, self->k));
	ASSERT_EQ(256, blocks(self->s));
	/* Another owner's key changes nothing: dedup is across owners. */
	ASSERT_EQ(0, st("keygen %s/k2", d));
	ASSERT_EQ(0, st("save %s %s --key %s/k2 --name other >/dev/null", f, self->s, d));
	ASSERT_EQ(256, blocks(self->s));
	poke(f, 4096 * 10 + 5, 1);
	poke(f, 4096 * 200, 2);
	ASSERT_EQ(0, st("save %s %s --key %s --name c >/dev/null", f, self->s, self->k));
	ASSERT_EQ(258, blocks(self->s));
	ASSERT_EQ(0, st("load %s c %s/c.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/c.out", f, d));
	/* The other owner's manifest does not open with our key. */
	ASSERT_EQ(1, st("load %s other %s/o.out --key %s 2>/dev/null", self->s, d, self->k));
}

static void redundancy(struct __th_fixture_store *self, int r)
{
	char s[256], f[256];

	snprintf(s, sizeof(s), "%s/r%d", self->dir, r);
	snprintf(f, sizeof(f), "%s/f", self->dir);
	fill_random(f, 64 * 4096, 3);
	ASSERT_EQ(0, st("init %s --block-size 4k --copies %d --salt user >/dev/null", s, r));
	for (int i = 0; i < 24; i++)
		ASSERT_EQ(0, st("save %s %s --key %s --name u%d --selector user%d >/dev/null",
				f, s, self->k, i, i));
	/* 24 users saved the same 64 blocks: exactly R copies of each. */
	ASSERT_EQ(64 * r, blocks(s));
	ASSERT_EQ(0, st("load %s u17 %s.out --key %s >/dev/null", s, f, self->k));
	ASSERT_EQ(0, sh("cmp %s %s.out", f, f));
}

TEST_F(store, redundancy_bound_r1)
{
	redundancy(self, 1);
}

TEST_F(store, redundancy_bound_r2)
{
	redundancy(self, 2);
}

TEST_F(store, redundancy_bound_r4)
{
	redundancy(self, 4);
}

TEST_F(store, tamper_block_manifest_key)
{
	char *d = self->dir, f[256], path[512];
	FILE *p;

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 40 * 4096, 5);
	ASSERT_EQ(0, st("save %s %s --key %s --name a >/dev/null", f, self->s, self->k));

	/* A flipped byte in one block: the load names it and writes nothing. */
	snprintf(path, sizeof(path), "ls %s/blocks/*/* | head -1", self->s);
	p = popen(path, "r");
	ASSERT_NONNULL(p);
	ASSERT_NONNULL(fgets(path, sizeof(path), p));
	pclose(p);
	path[strcspn(path, "\n")] = 0;
	flip(path, 100);
	ASSERT_EQ(1, st("load %s a %s/out --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'block [0-9]* (offset [0-9]*, id [0-9a-f]*): tampered' %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/out && ! ls %s/out.vmrs-* 2>/dev/null", d, d));
	ASSERT_EQ(1, st("verify %s --key %s 2>/dev/null >&2", self->s, self->k));
	ASSERT_EQ(1, st("verify %s 2>/dev/null >&2", self->s));
	/* An existing target stays untouched too. */
	ASSERT_EQ(0, sh("echo keep > %s/out", d));
	ASSERT_EQ(1, st("load %s a %s/out --key %s 2>/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("grep -qx keep %s/out", d));
	/* --partial writes every good block and still fails. */
	ASSERT_EQ(1, st("load %s a %s/part --key %s --partial 2>/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("test $(cmp -l %s %s/part | wc -l) -gt 0 && test $(cmp -l %s %s/part | wc -l) -le 4096", f, d, f, d));
	flip(path, 100);
	ASSERT_EQ(0, st("load %s a %s/out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/out", f, d));

	/* A missing block. */
	ASSERT_EQ(0, sh("mv %s %s.away", path, path));
	ASSERT_EQ(1, st("load %s a %s/out2 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'missing from the store' %s/err", d));
	ASSERT_EQ(0, sh("mv %s.away %s", path, path));

	/* A flipped byte in the manifest, in its clear part and in its body. */
	snprintf(path, sizeof(path), "%s/manifests/a", self->s);
	ASSERT_EQ(0, sh("cp %s %s/man", path, d));
	flip(path, 20);
	ASSERT_EQ(1, st("load %s a %s/out3 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'a': authentication failed\" %s/err", d));
	ASSERT_EQ(0, sh("cp %s/man %s", d, path));
	flip(path, 16 + 40 * 32 + 12 + 8 + 100);
	ASSERT_EQ(1, st("load %s a %s/out3 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'a': authentication failed\" %s/err", d));
	ASSERT_EQ(0, sh("cp %s/man %s", d, path));

	/* A flipped byte in the key file. */
	flip(self->k, 20);
	ASSERT_EQ(1, st("load %s a %s/out3 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'key file .*: corrupted' %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/out3", d));
	flip(self->k, 20);
	ASSERT_EQ(0, st("verify %s a --key %s >/dev/null", self->s, self->k));
}

TEST_F(store, incremental_with_dirty_list)
{
	char *d = self->dir, f[256], out[8192];
	FILE *p;

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 100 * 4096, 9);
	ASSERT_EQ(0, st("save %s %s --key %s --name v1 >/dev/null", f, self->s, self->k));
	poke(f, 4096 * 3 + 1, 1);
	poke(f, 4096 * 50, 1);
	poke(f, 4096 * 51 + 4095, 1);
	ASSERT_EQ(0, sh("printf '# offset length\\n0x3001 1\\n%d 4097\\n' > %s/dirty", 4096 * 50, d));
	snprintf(out, sizeof(out), "%s save %s %s --key %s --name v2 --base v1 --dirty %s/dirty",
		 tool, f, self->s, self->k, d);
	p = popen(out, "r");
	ASSERT_NONNULL(p);
	ASSERT_NONNULL(fgets(out, sizeof(out), p));
	pclose(p);
	ASSERT_NONNULL(strstr(out, " 3 new, 0 deduplicated, 97 unchanged")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s v2 %s/v2 --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/v2", f, d));
	ASSERT_EQ(0, st("load %s v1 %s/v1 --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(1, sh("cmp -s %s %s/v1", f, d));
	/* A bad dirty list is quoted. */
	ASSERT_EQ(0, sh("echo 'ten twenty' > %s/bad", d));
	ASSERT_EQ(1, st("save %s %s --key %s --base v1 --dirty %s/bad 2>%s/err", f, self->s, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"got 'ten twenty'\" %s/err", d));
	/* A regular file has no dirty ioctl. */
	ASSERT_EQ(1, st("save %s %s --key %s --base v1 2>/dev/null", f, self->s, self->k));
}

TEST_F_TIMEOUT(store, gc_with_concurrent_saves, 300)
{
	char *d = self->dir, f[256];
	pid_t pid;
	int status;

	for (int i = 0; i < 4; i++) {
		snprintf(f, sizeof(f), "%s/f%d", d, i);
		fill_random(f, 128 * 4096, 100 + i);
	}
	ASSERT_EQ(0, st("save %s/f0 %s --key %s --name gone >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, sh("rm %s/manifests/gone", self->s));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		for (int r = 0; r < 3; r++)
			for (int i = 0; i < 4; i++)
				if (st("save %s/f%d %s --key %s --name s%d >/dev/null",
				       d, i, self->s, self->k, i))
					_exit(1);
		_exit(0);
	}
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(4 * 128, blocks(self->s));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(0, st("load %s s%d %s/o --key %s >/dev/null", self->s, i, d, self->k));
		ASSERT_EQ(0, sh("cmp %s/f%d %s/o", d, i, d));
	}
	/* Everything unreferenced goes. */
	ASSERT_EQ(0, sh("rm %s/manifests/s1 %s/manifests/s2", self->s, self->s));
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(2 * 128, blocks(self->s));
}

/* Every round saves new data, so the kill lands among block writes. */
TEST_F_TIMEOUT(store, kill9_during_save, 300)
{
	char *d = self->dir, f[256];
	struct timeval t0, t1;
	int killed = 0;
	long span;

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 1 << 20, 11);
	ASSERT_EQ(0, st("save %s %s --key %s --name keep >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, sh("cp %s %s/small", f, d));
	/* Kill points spread over the whole length of an uncut save. */
	fill_random(f, 4 << 20, 999);
	gettimeofday(&t0, NULL);
	ASSERT_EQ(0, st("save %s %s --key %s --name timing >/dev/null", f, self->s, self->k));
	gettimeofday(&t1, NULL);
	span = (t1.tv_sec - t0.tv_sec) * 1000000L + t1.tv_usec - t0.tv_usec;
	srandom((unsigned int)getpid());
	for (int round = 0; round < 8; round++) {
		int status;
		pid_t pid;

		fill_random(f, 4 << 20, 1000 + round);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			char name[32];

			snprintf(name, sizeof(name), "big%d", round);
			if (!freopen("/dev/null", "w", stdout))
				_exit(126);
			execl(tool, tool, "save", f, self->s, "--key", self->k,
			      "--name", name, (char *)NULL);
			_exit(127);
		}
		usleep((useconds_t)(random() % (span + 1)));
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		killed += WIFSIGNALED(status);
		ASSERT_EQ(0, st("verify %s >/dev/null", self->s));
		ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
		ASSERT_EQ(0, st("load %s keep %s/k.out --key %s >/dev/null", self->s, d, self->k));
		ASSERT_EQ(0, sh("cmp %s/small %s/k.out", d, d));
		if (!sh("test -e %s/manifests/big%d", self->s, round)) {
			ASSERT_EQ(0, st("load %s big%d %s/b.out --key %s >/dev/null",
					self->s, round, d, self->k));
			ASSERT_EQ(0, sh("cmp %s %s/b.out", f, d));
		}
	}
	TH_LOG("%d of 8 saves killed mid-way (a save takes %ld us)", killed, span);
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(0, sh("test -z \"$(find %s -name '.tmp.*')\"", self->s));
	ASSERT_EQ(0, st("save %s %s --key %s --name big >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, st("load %s big %s/b.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/b.out", f, d));
}

TEST_F(store, usage_errors)
{
	ASSERT_EQ(2, st("2>/dev/null"));
	ASSERT_EQ(2, st("frobnicate 2>/dev/null"));
	ASSERT_EQ(2, st("save onlyone 2>/dev/null"));
	ASSERT_EQ(2, st("save a b 2>/dev/null"));
	ASSERT_EQ(2, st("init x --block-size 3000 2>/dev/null"));
	ASSERT_EQ(2, st("init x --salt weekly 2>/dev/null"));
	ASSERT_EQ(2, st("save a %s --key %s --name ../x 2>/dev/null", self->s, self->k));
	ASSERT_EQ(0, st("save --help >/dev/null"));
	ASSERT_EQ(1, st("list %s/nostore 2>/dev/null", self->dir));
	ASSERT_EQ(1, st("init %s 2>/dev/null", self->s));
	ASSERT_EQ(1, st("load %s nosuch %s/x --key %s 2>%s/err", self->s, self->dir, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q \"manifest 'nosuch': no such snapshot\" %s/err", self->dir));
}

static void guest_writes(int fd)
{
	unsigned char *m = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ASSERT_NE(MAP_FAILED, m);
	m[5 * 4096] ^= 1;
	m[7 * 4096 + 9] = 42;
	m[1000 * 4096] = 7;
	munmap(m, 4 << 20);
}

TEST_F_TIMEOUT(store, vmresetfs_incremental, 300)
{
	struct vmreset_snapshot snap = { 0 };
	char mnt[256], f[300], out[8192];
	unsigned char page[4096];
	int fd;
	FILE *p;

	snprintf(mnt, sizeof(mnt), "%s/mnt", self->dir);
	ASSERT_EQ(0, mkdir(mnt, 0755));
	if (mount("none", mnt, "vmresetfs", 0, "size=64m")) {
		if (errno == ENODEV || errno == EPERM)
			SKIP(return, "no vmresetfs here (%s)", strerror(errno));
		ASSERT_EQ(0, -errno);
	}
	snprintf(f, sizeof(f), "%s/vm.ram", mnt);
	fd = open(f, O_RDWR | O_CREAT, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ftruncate(fd, 4 << 20));
	srandom(1);
	for (int i = 0; i < 512; i++) {
		for (size_t k = 0; k < sizeof(page); k++)
			page[k] = (unsigned char)random();
		ASSERT_EQ(4096, pwrite(fd, page, 4096, (off_t)i * 8192));
	}
	ASSERT_EQ(0, ioctl(fd, VMRESET_IOC_SNAPSHOT, &snap));
	ASSERT_EQ(0, st("save %s %s --key %s --name base >/dev/null", f, self->s, self->k));
	/* "The guest" changes three pages through a shared mapping. */
	guest_writes(fd);
	snprintf(out, sizeof(out), "%s save %s %s --key %s --name inc --base base",
		 tool, f, self->s, self->k);
	p = popen(out, "r");
	ASSERT_NONNULL(p);
	ASSERT_NONNULL(fgets(out, sizeof(out), p));
	pclose(p);
	ASSERT_NONNULL(strstr(out, " 3 new, 0 deduplicated, 1021 unchanged")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s inc %s/inc.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/inc.out", f, self->dir));
	/* Load the base back into the vmresetfs file, in place. */
	ASSERT_EQ(0, st("load %s base %s --key %s >/dev/null", self->s, f, self->k));
	ASSERT_EQ(0, st("load %s base %s/base.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/base.out", f, self->dir));
	close(fd);
	umount(mnt);
}

TEST_HARNESS_MAIN
