// SPDX-License-Identifier: GPL-2.0
/*
 * store_test - drives the real vmreset-store binary (VMRESET_STORE, else
 * ../store/vmreset-store next to this program, else /usr/bin/vmreset-store)
 * on real files: round trips, dedup, the redundancy bound, tampering
 * (blocks, manifests swapped or rolled back, keys), gc racing saves, kill -9
 * at every stage of a save, JSON with hostile names, and vmresetfs
 * incremental saves (including a base a revert made stale).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
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
#include <json-c/json.h>

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

/* Runs @argv (no shell), its stdout into @out; returns the exit code. */
static int runv(char *out, size_t len, const char *const argv[])
{
	int p[2], status;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	while (out && n + 1 < len && (r = read(p[0], out + n, len - 1 - n)) > 0)
		n += (size_t)r;
	if (out)
		out[n] = 0;
	close(p[0]);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* list -j of @store, parsed strictly by json-c; NULL if it does not parse. */
static json_object *list_json(const char *store)
{
	static char buf[1 << 20];
	const char *argv[] = { tool, "list", "-j", store, NULL };
	struct json_tokener *t;
	json_object *o;

	if (runv(buf, sizeof(buf), argv))
		return NULL;
	t = json_tokener_new();
	json_tokener_set_flags(t, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(t, buf, (int)strlen(buf));
	/* Nothing but white space may follow the object. */
	if (o && strspn(buf + json_tokener_get_parse_end(t), " \n") !=
		 strlen(buf + json_tokener_get_parse_end(t))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(t);
	return o;
}

static long long jint(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

/* The store's block count, from list -j. */
static long blocks(const char *store)
{
	json_object *o = list_json(store);
	long n = (long)jint(o, "blocks");

	json_object_put(o);
	return n;
}

/* The first line a tool command prints. */
static int st_line(char *out, size_t len, const char *fmt, ...)
{
	char args[4096], cmd[8192];
	va_list ap;
	FILE *p;
	int ret;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s", tool, args);
	out[0] = 0;
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (!fgets(out, (int)len, p))
		out[0] = 0;
	ret = pclose(p);
	return WIFEXITED(ret) ? WEXITSTATUS(ret) : 128;
}

/* A file of the store holding sealed blocks (a pack; a block before packs). */
static void some_pack(const char *store, char *path, size_t len)
{
	char cmd[512];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls %s/packs/* %s/blocks/*/* 2>/dev/null | head -1", store, store);
	path[0] = 0;
	p = popen(cmd, "r");
	if (p) {
		if (!fgets(path, (int)len, p))
			path[0] = 0;
		pclose(p);
	}
	path[strcspn(path, "\n")] = 0;
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

/* A fresh directory with a store (4 KiB blocks) and a key in it. */
static void store_dir(char dir[64], char s[128], char k[128])
{
	find_tool();
	ASSERT_EQ(0, access(tool, X_OK)) TH_LOG("no vmreset-store at %s", tool);
	snprintf(dir, 64, "/tmp/store_test.XXXXXX");
	ASSERT_NONNULL(mkdtemp(dir));
	snprintf(s, 128, "%s/store", dir);
	snprintf(k, 128, "%s/key", dir);
	ASSERT_EQ(0, st("init %s --block-size 4k >/dev/null", s));
	ASSERT_EQ(0, st("keygen %s", k));
}

FIXTURE_SETUP(store)
{
	store_dir(self->dir, self->s, self->k);
}

FIXTURE_TEARDOWN(store)
{
	sh("rm -rf %s", self->dir);
}

/* Timeouts: the test VM's emulated CPU, shared with other VMs, hashes at ~1 MiB/s. */
TEST_F_TIMEOUT(store, round_trip_random_and_sparse, 600)
{
	char *d = self->dir, out[8192];

	sh("head -c 1000001 /dev/urandom > %s/a", d);
	ASSERT_EQ(0, st("save %s/a %s --key %s --name a >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, st("load %s a %s/a.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/a %s/a.out", d, d));

	/* Sparse: holes and a few data blocks; zero blocks are not stored. */
	ASSERT_EQ(0, sh("truncate -s 8M %s/sp && printf x | dd of=%s/sp bs=1 seek=5000000 conv=notrunc 2>/dev/null", d, d));
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s/sp %s --key %s --name sp", d, self->s,
			     self->k));
	/* Holes (SEEK_DATA, where the filesystem tracks them) are not even read. */
	ASSERT_NONNULL(strstr(out, "2048 blocks of 4096: 2047 zero, 1 new")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s sp %s/sp.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/sp %s/sp.out", d, d));
	/* Data after a hole, a hole after data, in one chunk and across chunks. */
	ASSERT_EQ(0, sh("truncate -s 5M %s/sp2 && head -c 8192 /dev/urandom | dd of=%s/sp2 bs=4096 seek=3 conv=notrunc 2>/dev/null && "
			"head -c 1500000 /dev/urandom | dd of=%s/sp2 bs=4096 seek=200 conv=notrunc 2>/dev/null && "
			"printf y | dd of=%s/sp2 bs=1 seek=5242879 conv=notrunc 2>/dev/null", d, d, d, d));
	ASSERT_EQ(0, st("save %s/sp2 %s --key %s --name sp2 >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, st("load %s sp2 %s/sp2.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/sp2 %s/sp2.out", d, d));
	ASSERT_EQ(0, st("delete %s sp2 >/dev/null", self->s));
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	/* 245 blocks of a (1000001 bytes), 1 of sp. */
	ASSERT_EQ(245 + 1, blocks(self->s));
	/* Loading over an existing file replaces it and keeps its mode. */
	ASSERT_EQ(0, sh("chmod 0640 %s/sp.out", d));
	ASSERT_EQ(0, st("load %s a %s/sp.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/a %s/sp.out", d, d));
	ASSERT_EQ(0, sh("test \"$(stat -c %%a %s/sp.out)\" = 640", d));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	/* The VM-state blob travels with the snapshot. */
	ASSERT_EQ(0, sh("head -c 777 /dev/urandom > %s/state", d));
	ASSERT_EQ(0, st("save %s/sp %s --key %s --name withstate --state %s/state >/dev/null",
			d, self->s, self->k, d));
	ASSERT_EQ(0, st("load %s withstate %s/ws.out --key %s --state-out %s/state.out >/dev/null",
			self->s, d, self->k, d));
	ASSERT_EQ(0, sh("cmp %s/state %s/state.out && cmp %s/sp %s/ws.out", d, d, d, d));
}

/*
 * One named snapshot is memory + VM state (+ a working-set profile,
 * docs/bpf.md): both inside the authenticated, encrypted manifest, each
 * manifest with its own (an incremental one does not inherit its base's).
 */
TEST_F_TIMEOUT(store, state_and_profile_travel_with_the_snapshot, 600)
{
	char *d = self->dir, m[300];
	struct stat sb;

	sh("head -c 20000 /dev/urandom > %s/a && head -c 777 /dev/urandom > %s/st1 && "
	   "head -c 500 /dev/urandom > %s/st2 && : > %s/st0", d, d, d, d);
	ASSERT_EQ(0, sh("printf 'vmreset-profile 1\n# 3 pages read, 1 written\n"
			"r 0x40000000 3\nw 0x40003000 1\n' > %s/prof", d));
	ASSERT_EQ(0, st("save %s/a %s --key %s --name v1 --state %s/st1 --profile %s/prof >/dev/null",
			d, self->s, self->k, d, d));
	ASSERT_EQ(0, st("load %s v1 %s/a.out --key %s --state-out %s/st.out --profile-out %s/p.out"
			" >/dev/null", self->s, d, self->k, d, d));
	ASSERT_EQ(0, sh("cmp %s/a %s/a.out && cmp %s/st1 %s/st.out && cmp %s/prof %s/p.out",
			d, d, d, d, d, d));
	/* The older spelling, load --state FILE, still writes the state. */
	ASSERT_EQ(0, st("load %s v1 %s/a.out --key %s --state %s/st.old >/dev/null",
			self->s, d, self->k, d));
	ASSERT_EQ(0, sh("cmp %s/st1 %s/st.old", d, d));

	/* Incremental: its own state, no profile; asking for one touches nothing. */
	ASSERT_EQ(0, sh("printf x | dd of=%s/a bs=1 seek=9000 conv=notrunc 2>/dev/null", d));
	ASSERT_EQ(0, st("save %s/a %s --key %s --name v2 --base v1 --state %s/st2 >/dev/null",
			d, self->s, self->k, d));
	ASSERT_EQ(0, st("load %s v2 %s/v2.out --key %s --state-out %s/st.out >/dev/null",
			self->s, d, self->k, d));
	ASSERT_EQ(0, sh("cmp %s/a %s/v2.out && cmp %s/st2 %s/st.out", d, d, d, d));
	ASSERT_EQ(1, st("load %s v2 %s/none.out --key %s --profile-out %s/p2.out 2>%s/err",
			self->s, d, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"snapshot 'v2' has no working-set profile (saved without --profile)\" %s/err",
			d));
	ASSERT_EQ(0, sh("test ! -e %s/none.out && test ! -e %s/p2.out", d, d));
	/* Saved without --state: none to write. An empty state is one. */
	ASSERT_EQ(0, st("save %s/a %s --key %s --name bare >/dev/null", d, self->s, self->k));
	ASSERT_EQ(1, st("load %s bare %s/none.out --key %s --state-out %s/st.bare 2>%s/err",
			self->s, d, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"snapshot 'bare' has no VM state (saved without --state)\" %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/none.out && test ! -e %s/st.bare", d, d));
	ASSERT_EQ(0, st("save %s/a %s --key %s --name empty --state %s/st0 >/dev/null",
			d, self->s, self->k, d));
	ASSERT_EQ(0, st("load %s empty %s/e.out --key %s --state-out %s/st.e >/dev/null",
			self->s, d, self->k, d));
	ASSERT_EQ(0, sh("test -e %s/st.e && test ! -s %s/st.e", d, d));

	/* Only a well-formed profile is stored; the error names the line. */
	ASSERT_EQ(0, sh("printf 'vmreset-profile 1\nr 0x40000001 1\n' > %s/bad1 && "
			"printf '# no header\nvmreset-profile 1\n' > %s/bad2 && : > %s/bad3", d, d, d));
	ASSERT_EQ(1, st("save %s/a %s --key %s --name bad --profile %s/bad1 2>%s/err",
			d, self->s, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"profile '%s/bad1' line 2: expected 'r|w GPA PAGES'\" %s/err", d, d));
	ASSERT_EQ(1, st("save %s/a %s --key %s --name bad --profile %s/bad2 2>%s/err",
			d, self->s, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"profile '%s/bad2' line 1: expected 'vmreset-profile 1'\" %s/err", d, d));
	ASSERT_EQ(1, st("save %s/a %s --key %s --name bad --profile %s/bad3 2>%s/err",
			d, self->s, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"profile '%s/bad3': empty\" %s/err", d, d));
	ASSERT_EQ(1, st("save %s/a %s --key %s --name bad --state %s/nosuch 2>%s/err",
			d, self->s, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"state file '%s/nosuch': No such file or directory\" %s/err", d, d));
	ASSERT_EQ(0, sh("test ! -e %s/manifests/bad", self->s));
	/* Each option belongs to one command. */
	ASSERT_EQ(2, st("save %s/a %s --key %s --profile-out %s/x 2>/dev/null", d, self->s, self->k, d));
	ASSERT_EQ(2, st("load %s v1 %s/x --key %s --profile %s/prof 2>/dev/null", self->s, d, self->k, d));
	ASSERT_EQ(2, st("load %s v1 %s/x --key %s --state %s/y --state-out %s/z 2>/dev/null",
			self->s, d, self->k, d, d));

	/* The profile is authenticated with the manifest: its last byte flipped. */
	snprintf(m, sizeof(m), "%s/manifests/v1", self->s);
	ASSERT_EQ(0, stat(m, &sb));
	flip(m, sb.st_size - 16 - 1);
	ASSERT_EQ(1, st("load %s v1 %s/t.out --key %s --profile-out %s/p.t 2>%s/err",
			self->s, d, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'v1': authentication failed\" %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/t.out && test ! -e %s/p.t", d, d));
}

TEST_F_TIMEOUT(store, dedup_identical_and_nearly_identical, 600)
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
	/* A block repeated inside one object is stored once. */
	ASSERT_EQ(0, sh("head -c 4096 /dev/urandom > %s/p && for i in 1 2 3 4 5 6 7 8; do cat %s/p; done > %s/rep",
			d, d, d));
	ASSERT_EQ(0, st("save %s/rep %s --key %s --name rep -t 4 >/dev/null", d, self->s, self->k));
	ASSERT_EQ(259, blocks(self->s));
}

/*
 * The selector picks one of R salts through the store's secret, so which
 * selectors cover all R is known only at run time: save under new selectors
 * until every salt was used (the tool says which), then check that the
 * store holds exactly R copies of each block, and that more saves add none.
 */
static void redundancy(struct __th_fixture_store *self, int r)
{
	char s[256], f[256], line[1024];
	unsigned int seen = 0, idx, of;
	int i, users = 0;

	snprintf(s, sizeof(s), "%s/r%d", self->dir, r);
	snprintf(f, sizeof(f), "%s/f", self->dir);
	fill_random(f, 64 * 4096, 3);
	ASSERT_EQ(0, st("init %s --block-size 4k --copies %d --salt user >/dev/null", s, r));
	for (i = 0; i < 400 && seen != (1U << r) - 1; i++) {
		const char *salt;

		ASSERT_EQ(0, st_line(line, sizeof(line), "save %s %s --key %s --name u%d --selector user%d",
				     f, s, self->k, i, i));
		salt = strstr(line, "; salt ");
		ASSERT_NONNULL(salt) TH_LOG("%s", line);
		ASSERT_EQ(2, sscanf(salt, "; salt %u of %u", &idx, &of));
		ASSERT_EQ((unsigned int)r, of);
		ASSERT_LT(idx, (unsigned int)r);
		seen |= 1U << idx;
		users++;
		ASSERT_EQ(64 * __builtin_popcount(seen), blocks(s));
	}
	ASSERT_EQ((1U << r) - 1, seen) TH_LOG("%d selectors used only salts %#x", users, seen);
	/* Every salt in use: more users add no copies. */
	for (int k = 0; k < 8; k++, i++)
		ASSERT_EQ(0, st("save %s %s --key %s --name u%d --selector user%d >/dev/null",
				f, s, self->k, i, i));
	ASSERT_EQ(64 * r, blocks(s));
	ASSERT_EQ(0, st("load %s u%d %s.out --key %s >/dev/null", s, i - 1, f, self->k));
	ASSERT_EQ(0, sh("cmp %s %s.out", f, f));
}

TEST_F_TIMEOUT(store, redundancy_bound_r1, 600)
{
	redundancy(self, 1);
}

TEST_F_TIMEOUT(store, redundancy_bound_r2, 600)
{
	redundancy(self, 2);
}

TEST_F_TIMEOUT(store, redundancy_bound_r4, 600)
{
	redundancy(self, 4);
}

TEST_F_TIMEOUT(store, tamper_block_manifest_key, 600)
{
	char *d = self->dir, f[256], path[512];

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 40 * 4096, 5);
	ASSERT_EQ(0, st("save %s %s --key %s --name a >/dev/null", f, self->s, self->k));

	/* A flipped byte in one block: the load names it and writes nothing. */
	some_pack(self->s, path, sizeof(path));
	ASSERT_NE(0, path[0]);
	flip(path, 100);
	ASSERT_EQ(1, st("load %s a %s/out --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'block [0-9]* (offset [0-9]*, id [0-9a-f]*): tampered' %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/out && ! ls %s/out.vmrs-* 2>/dev/null", d, d));
	ASSERT_EQ(1, st("verify %s --key %s 2>/dev/null >&2", self->s, self->k));
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

	/* A missing pack, and a truncated one: verify needs no key for these. */
	ASSERT_EQ(0, sh("mv %s %s.away", path, path));
	ASSERT_EQ(1, st("load %s a %s/out2 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'missing from the store' %s/err", d));
	ASSERT_EQ(1, st("verify %s 2>/dev/null >&2", self->s));
	ASSERT_EQ(0, sh("cp %s.away %s && truncate -s 5000 %s", path, path, path));
	ASSERT_EQ(1, st("verify %s 2>%s/err >&2", self->s, d));
	ASSERT_EQ(0, sh("grep -q truncated %s/err", d));
	ASSERT_EQ(1, st("load %s a %s/out2 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'block 1 (offset 4096, id [0-9a-f]*): truncated in the store' %s/err",
			d));
	/* The run read whole fails; block 0, inside what is left, still loads. */
	ASSERT_EQ(1, st("load %s a %s/trunc.part --key %s --partial 2>/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp -n 4096 %s %s/trunc.part", f, d));
	ASSERT_EQ(1, sh("cmp -s -n 8192 %s %s/trunc.part", f, d));
	ASSERT_EQ(0, sh("mv %s.away %s", path, path));
	ASSERT_EQ(0, st("verify %s >/dev/null", self->s));

	/* A flipped byte in the manifest, in its clear part and in its body. */
	snprintf(path, sizeof(path), "%s/manifests/a", self->s);
	ASSERT_EQ(0, sh("cp %s %s/man", path, d));
	flip(path, 20);
	ASSERT_EQ(1, st("load %s a %s/out3 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'a': authentication failed\" %s/err", d));
	ASSERT_EQ(0, sh("cp %s/man %s", d, path));
	flip(path, 96 + 1 + 40 * 32 + 12 + 8 + 100);
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

/*
 * Issue 14: a manifest copied over another's name, or an older manifest
 * of the same name put back, must not load as if it were the right one.
 */
TEST_F_TIMEOUT(store, manifest_swap_and_rollback, 600)
{
	char *d = self->dir, f[256], line[1024];
	json_object *o, *snaps, *e, *v;

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 16 * 4096, 21);
	ASSERT_EQ(0, st("save %s %s --key %s --name a >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, sh("cp %s %s/a.v1", f, d));
	fill_random(f, 16 * 4096, 22);
	ASSERT_EQ(0, st("save %s %s --key %s --name b >/dev/null", f, self->s, self->k));
	/* b's manifest under a's name. */
	ASSERT_EQ(0, sh("cp %s/manifests/a %s/man.a && cp %s/manifests/b %s/manifests/a",
			self->s, d, self->s, self->s));
	ASSERT_EQ(1, st("load %s a %s/out --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'a': it is the manifest of 'b' (renamed or swapped)\" %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/out", d));
	ASSERT_EQ(0, sh("cp %s/man.a %s/manifests/a", d, self->s));
	ASSERT_EQ(0, st("load %s a %s/out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s/a.v1 %s/out", d, d));

	/* Saving a again makes seq 2; putting seq 1 back is a rollback. */
	ASSERT_EQ(0, st_line(line, sizeof(line), "save %s %s --key %s --name a", f, self->s, self->k));
	ASSERT_NONNULL(strstr(line, "saved 'a' (seq 2)")) TH_LOG("%s", line);
	o = list_json(self->s);
	ASSERT_NONNULL(o);
	ASSERT_TRUE(json_object_object_get_ex(o, "snapshots", &snaps));
	e = json_object_array_get_idx(snaps, 0);
	ASSERT_TRUE(json_object_object_get_ex(e, "name", &v));
	ASSERT_EQ(0, strcmp("a", json_object_get_string(v)));
	ASSERT_EQ(2, jint(e, "seq"));
	json_object_put(o);
	ASSERT_EQ(0, sh("cp %s/man.a %s/manifests/a", d, self->s));
	ASSERT_EQ(1, st("load %s a %s/out --key %s --min-seq 2 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'a': seq 1 is older than --min-seq 2 (rolled back?)\" %s/err", d));
	ASSERT_EQ(0, sh("cmp %s/a.v1 %s/out", d, d));
}

/*
 * Issue 14: dedup used to trust any block file that existed. A damaged
 * or truncated stored copy must be replaced by the next save of that
 * content, which then loads intact.
 */
TEST_F_TIMEOUT(store, damaged_block_not_trusted_by_dedup, 600)
{
	char *d = self->dir, f[256], path[512], line[1024];

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 8 * 4096, 31);
	ASSERT_EQ(0, st("save %s %s --key %s --name a >/dev/null", f, self->s, self->k));
	some_pack(self->s, path, sizeof(path));
	ASSERT_NE(0, path[0]);
	flip(path, 100);	/* inside the first block */
	ASSERT_EQ(0, st_line(line, sizeof(line), "save %s %s --key %s --name b 2>%s/err",
			     f, self->s, self->k, d));
	ASSERT_NONNULL(strstr(line, " 1 new, 7 deduplicated")) TH_LOG("%s", line);
	ASSERT_EQ(0, sh("grep -q 'is damaged; storing it again' %s/err", d));
	ASSERT_EQ(0, st("load %s b %s/b.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/b.out", f, d));
	/* The repaired copy serves the older snapshot too. */
	ASSERT_EQ(0, st("load %s a %s/a.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/a.out", f, d));

	/*
	 * Truncated: the store lost the tail of a pack. Of the packs this
	 * save wrote (named by listing, not by mtime: a coarse clock ties),
	 * the biggest holds blocks of it.
	 */
	fill_random(f, 8 * 4096, 32);
	ASSERT_EQ(0, sh("ls %s/packs > %s/packs.before", self->s, d));
	ASSERT_EQ(0, st("save %s %s --key %s --name c >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, sh("cd %s/packs && p=$(ls | grep -vxF -f %s/packs.before | xargs -r ls -S | head -n 1) && "
			"[ -n \"$p\" ] && truncate -s $(( $(stat -c %%s $p) - 10 )) $p", self->s, d));
	ASSERT_EQ(0, st_line(line, sizeof(line), "save %s %s --key %s --name d 2>/dev/null",
			     f, self->s, self->k));
	ASSERT_NONNULL(strstr(line, " 1 new, 7 deduplicated")) TH_LOG("%s", line);
	ASSERT_EQ(0, st("load %s d %s/d.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/d.out", f, d));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
}

TEST_F_TIMEOUT(store, incremental_with_dirty_list, 600)
{
	char *d = self->dir, f[256], out[8192];
	json_object *o, *snaps, *e;
	long long full, inc;

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 100 * 4096, 9);
	ASSERT_EQ(0, st("save %s %s --key %s --name v1 >/dev/null", f, self->s, self->k));
	poke(f, 4096 * 3 + 1, 1);
	poke(f, 4096 * 50, 1);
	poke(f, 4096 * 51 + 4095, 1);
	ASSERT_EQ(0, sh("printf '# offset length\\n0x3001 1\\n%d 4097\\n' > %s/dirty", 4096 * 50, d));
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s %s --key %s --name v2 --base v1 --dirty %s/dirty",
			     f, self->s, self->k, d));
	ASSERT_NONNULL(strstr(out, " 3 new, 0 deduplicated, 97 unchanged")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s v2 %s/v2 --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/v2", f, d));
	ASSERT_EQ(0, st("load %s v1 %s/v1 --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(1, sh("cmp -s %s %s/v1", f, d));
	/* The incremental manifest lists the 3 changed entries, not 100. */
	o = list_json(self->s);
	ASSERT_NONNULL(o);
	ASSERT_TRUE(json_object_object_get_ex(o, "snapshots", &snaps));
	e = json_object_array_get_idx(snaps, 0);
	full = jint(e, "manifest_bytes");
	e = json_object_array_get_idx(snaps, 1);
	inc = jint(e, "manifest_bytes");
	ASSERT_EQ(3, jint(e, "blocks"));
	ASSERT_EQ(1, jint(e, "chain"));
	json_object_put(o);
	ASSERT_LT(inc + 95 * 64, full) TH_LOG("full %lld, incremental %lld bytes", full, inc);
	/* A base with dependents cannot go or be replaced. */
	ASSERT_EQ(1, st("delete %s v1 2>%s/err", self->s, d));
	ASSERT_EQ(0, sh("grep -q \"'v1' is the base of 'v2'\" %s/err", d));
	ASSERT_EQ(1, st("save %s %s --key %s --name v1 2>/dev/null", f, self->s, self->k));
	/* A bad dirty list is quoted. */
	ASSERT_EQ(0, sh("echo 'ten twenty' > %s/bad", d));
	ASSERT_EQ(1, st("save %s %s --key %s --base v1 --dirty %s/bad 2>%s/err", f, self->s, self->k, d, d));
	ASSERT_EQ(0, sh("grep -q \"got 'ten twenty'\" %s/err", d));
	/* A regular file without a dirty list: every block is read, only changes kept. */
	poke(f, 4096 * 70, 9);
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s %s --key %s --name v3 --base v2",
			     f, self->s, self->k));
	ASSERT_NONNULL(strstr(out, " 1 new, 0 deduplicated, 99 unchanged")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s v3 %s/v3 --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/v3", f, d));
	/* Chains are bounded: the ninth link is a full manifest again. */
	for (int i = 4; i <= 12; i++) {
		poke(f, 4096 * (70 + i), (unsigned char)i);
		ASSERT_EQ(0, st("save %s %s --key %s --name v%d --base v%d >/dev/null",
				f, self->s, self->k, i, i - 1));
	}
	o = list_json(self->s);
	ASSERT_NONNULL(o);
	ASSERT_TRUE(json_object_object_get_ex(o, "snapshots", &snaps));
	for (size_t k = 0; k < json_object_array_length(snaps); k++)
		ASSERT_GE(8, jint(json_object_array_get_idx(snaps, k), "chain"));
	json_object_put(o);
	ASSERT_EQ(0, st("load %s v12 %s/v12 --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/v12", f, d));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	/* A base put back from elsewhere breaks its dependents loudly. */
	ASSERT_EQ(0, sh("cp %s/manifests/v11 %s/v11 && cp %s/manifests/v10 %s/manifests/v11",
			self->s, d, self->s, self->s));
	ASSERT_EQ(1, st("load %s v12 %s/v12 --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q \"manifest 'v11': it changed after a snapshot based on it was saved\" %s/err", d));
	ASSERT_EQ(0, sh("cp %s/v11 %s/manifests/v11", d, self->s));
	ASSERT_EQ(0, st("load %s v12 %s/v12 --key %s >/dev/null", self->s, d, self->k));
}

/*
 * A child saves f0..f3 (as s0..s3) @rounds times over while this process
 * runs gc @gcs times (with @env before the command): each gc must succeed,
 * and so must every save.
 */
static void gc_while_saving(struct __th_fixture_store *self, int rounds, int gcs,
			    const char *env)
{
	char *d = self->dir;
	pid_t pid = fork();
	int status;

	ASSERT_GE(pid, 0);
	if (!pid) {
		for (int r = 0; r < rounds; r++)
			for (int i = 0; i < 4; i++)
				if (st("save %s/f%d %s --key %s --name s%d >/dev/null",
				       d, i, self->s, self->k, i))
					_exit(1);
		_exit(0);
	}
	for (int i = 0; i < gcs; i++)
		ASSERT_EQ(0, sh("%s%s gc %s >/dev/null 2>%s/err || { cat %s/err >&2; false; }",
				env, tool, self->s, d, d));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

TEST_F_TIMEOUT(store, gc_with_concurrent_saves, 300)
{
	char *d = self->dir, f[256], line[1024];

	for (int i = 0; i < 4; i++) {
		snprintf(f, sizeof(f), "%s/f%d", d, i);
		fill_random(f, 128 * 4096, 100 + i);
	}
	ASSERT_EQ(0, st("save %s/f0 %s --key %s --name gone >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, st("delete %s gone >/dev/null", self->s));
	gc_while_saving(self, 3, 10, "");
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(4 * 128, blocks(self->s));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(0, st("load %s s%d %s/o --key %s >/dev/null", self->s, i, d, self->k));
		ASSERT_EQ(0, sh("cmp %s/f%d %s/o", d, i, d));
	}
	/* Everything unreferenced goes; half-dead packs are rewritten. */
	ASSERT_EQ(0, st("delete %s s1 >/dev/null && %s delete %s s2 >/dev/null",
			self->s, tool, self->s));
	ASSERT_EQ(0, st_line(line, sizeof(line), "gc %s", self->s));
	ASSERT_NONNULL(strstr(line, "removed 256 blocks")) TH_LOG("%s", line);
	ASSERT_EQ(2 * 128, blocks(self->s));
	ASSERT_EQ(0, sh("test $(cat %s/packs/* | wc -c) -le $((2 * 128 * 4112 + 4 * 16))", self->s));
	for (int i = 0; i < 4; i += 3) {
		ASSERT_EQ(0, st("load %s s%d %s/o --key %s >/dev/null", self->s, i, d, self->k));
		ASSERT_EQ(0, sh("cmp %s/f%d %s/o", d, i, d));
	}
}

/*
 * gc used to hold every live block ID in one array (3.2 GB for 100 M
 * blocks). Past VMRESET_STORE_GC_MEM the set goes to a temporary LMDB
 * table: here 2 KiB (64 IDs) against 640 live references, shared blocks
 * included, with saves running; the result must be exactly the in-memory
 * one's, the table gone afterwards, and a table that cannot be made must
 * stop gc before it removes anything.
 */
TEST_F_TIMEOUT(store, gc_live_set_spills_to_disk, 600)
{
	char *d = self->dir, f[256], line[1024];

	for (int i = 0; i < 4; i++) {
		snprintf(f, sizeof(f), "%s/f%d", d, i);
		fill_random(f, 128 * 4096, 300 + i);
	}
	snprintf(f, sizeof(f), "%s/gone", d);
	fill_random(f, 100 * 4096, 399);
	ASSERT_EQ(0, st("save %s %s --key %s --name gone >/dev/null", f, self->s, self->k));
	/* s4 shares every block with s0. */
	ASSERT_EQ(0, st("save %s/f0 %s --key %s --name s4 >/dev/null", d, self->s, self->k));
	ASSERT_EQ(0, st("delete %s gone >/dev/null", self->s));
	ASSERT_EQ(1, sh("VMRESET_STORE_GC_MEM=2k VMRESET_STORE_GC_TMP=%s/none %s gc %s "
			">/dev/null 2>%s/err", d, tool, self->s, d));
	ASSERT_EQ(0, sh("grep -q \"the live-block table in '%s/none': create: \" %s/err && "
			"grep -q 'gc: stopped, nothing removed' %s/err || "
			"{ cat %s/err >&2; false; }", d, d, d, d));
	ASSERT_EQ(228, blocks(self->s));
	gc_while_saving(self, 2, 6, "VMRESET_STORE_GC_MEM=2k ");
	ASSERT_EQ(0, sh("VMRESET_STORE_GC_MEM=2k %s gc %s >%s/out 2>%s/err", tool, self->s,
			d, d));
	ASSERT_EQ(0, sh("grep -q 'block references over the memory bound' %s/err && "
			"grep -q 'kept 512 blocks' %s/out || { cat %s/out %s/err >&2; false; }",
			d, d, d, d));
	ASSERT_EQ(4 * 128, blocks(self->s));
	ASSERT_EQ(0, sh("! ls -a %s | grep -q gc-live", self->s));
	/* Exactly what the in-memory set removes: s1's blocks and s2's. */
	ASSERT_EQ(0, st("delete %s s1 >/dev/null && %s delete %s s2 >/dev/null",
			self->s, tool, self->s));
	ASSERT_EQ(0, sh("VMRESET_STORE_GC_MEM=2k %s gc %s >%s/out", tool, self->s, d));
	ASSERT_EQ(0, sh("grep -q 'removed 256 blocks' %s/out || { cat %s/out >&2; false; }",
			d, d));
	ASSERT_EQ(0, st_line(line, sizeof(line), "gc %s", self->s));
	ASSERT_NONNULL(strstr(line, "removed 0 blocks")) TH_LOG("%s", line);
	ASSERT_EQ(2 * 128, blocks(self->s));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	for (int i = 0; i < 5; i++) {
		if (i == 1 || i == 2)
			continue;
		ASSERT_EQ(0, st("load %s s%d %s/o --key %s >/dev/null", self->s, i, d, self->k));
		ASSERT_EQ(0, sh("cmp %s/f%d %s/o", d, i == 4 ? 0 : i, d));
	}
}

/*
 * An incremental manifest's unchanged blocks are listed only in its base:
 * with the base's file missing (moved away, restored later), gc used to
 * remove them and the dependent could never load again.
 */
TEST_F_TIMEOUT(store, gc_stops_on_missing_base, 600)
{
	char *d = self->dir, f[256];

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 32 * 4096, 71);
	ASSERT_EQ(0, st("save %s %s --key %s --name v1 >/dev/null", f, self->s, self->k));
	poke(f, 4096 * 5, 1);
	ASSERT_EQ(0, st("save %s %s --key %s --name v2 --base v1 >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, sh("mv %s/manifests/v1 %s/v1.away", self->s, d));
	ASSERT_EQ(1, st("gc %s >/dev/null 2>%s/err", self->s, d));
	ASSERT_EQ(0, sh("grep -q \"gc: manifest 'v2' is based on 'v1', which is missing: stopped, nothing removed\" %s/err", d));
	ASSERT_EQ(33, blocks(self->s));
	ASSERT_EQ(0, sh("mv %s/v1.away %s/manifests/v1", d, self->s));
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(0, st("load %s v2 %s/v2.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/v2.out", f, d));
}

/* Consistent: verify with and without key, "keep" loads, no "big" half-made. */
static void consistent(struct __th_fixture_store *self, const char *small, const char *big)
{
	char *d = self->dir;

	ASSERT_EQ(0, st("verify %s >/dev/null", self->s));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	ASSERT_EQ(0, st("load %s keep %s/k.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/k.out", small, d));
	if (!sh("test -e %s/manifests/%s", self->s, big)) {
		ASSERT_EQ(0, st("load %s %s %s/b.out --key %s >/dev/null", self->s, big, d, self->k));
		ASSERT_EQ(0, sh("cmp %s/a %s/b.out", d, d));
	}
}

/*
 * Issue 16: kills must land at every stage of a save, each leaving a
 * consistent store. VMRESET_STORE_STOP_AT makes the real binary stop
 * itself (SIGSTOP) exactly at a stage; the test kills it there, checks the
 * store, and checks that gc finds precisely the garbage that stage leaves.
 */
TEST_F_TIMEOUT(store, kill9_during_save, 1200)
{
	static const char *const stages[] = {
		"before-blocks", "mid-blocks", "after-blocks", "before-manifest",
	};
	char *d = self->dir, f[256], small[300], line[1024];
	struct timeval t0, t1;
	int killed = 0;
	long span;

	snprintf(f, sizeof(f), "%s/a", d);
	snprintf(small, sizeof(small), "%s/small", d);
	fill_random(f, 1 << 20, 11);
	ASSERT_EQ(0, st("save %s %s --key %s --name keep >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, sh("cp %s %s", f, small));
	for (int k = 0; k < 4; k++) {
		int status;
		pid_t pid;

		fill_random(f, 1 << 20, 500 + k);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			if (!freopen("/dev/null", "w", stdout))
				_exit(126);
			setenv("VMRESET_STORE_STOP_AT", stages[k], 1);
			execl(tool, tool, "save", f, self->s, "--key", self->k,
			      "--name", "staged", (char *)NULL);
			_exit(127);
		}
		ASSERT_EQ(pid, waitpid(pid, &status, WUNTRACED));
		ASSERT_TRUE(WIFSTOPPED(status)) TH_LOG("save did not reach %s (status %#x)",
						       stages[k], status);
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFSIGNALED(status));
		ASSERT_EQ(1, sh("test -e %s/manifests/staged", self->s));
		consistent(self, small, "staged");
		ASSERT_EQ(0, st_line(line, sizeof(line), "gc %s", self->s));
		/* What each stage leaves behind, and that gc removes all of it. */
		if (k == 0)
			ASSERT_NONNULL(strstr(line, "removed 0 blocks, 0 packs")) TH_LOG("%s", line);
		if (k == 1)
			ASSERT_NONNULL(strstr(line, "removed 0 blocks, 0 packs")) TH_LOG("%s", line);
		if (k == 1)
			ASSERT_EQ(NULL, strstr(line, " 0 temporary files")) TH_LOG("%s", line);
		/* Finished packs (one per thread), not yet or no longer indexed. */
		if (k == 2)
			ASSERT_NONNULL(strstr(line, "removed 0 blocks, ")) TH_LOG("%s", line);
		if (k == 3)
			ASSERT_NONNULL(strstr(line, "removed 256 blocks, ")) TH_LOG("%s", line);
		if (k >= 2)
			ASSERT_EQ(NULL, strstr(line, "blocks, 0 packs")) TH_LOG("%s", line);
		ASSERT_EQ(256, blocks(self->s));
		ASSERT_EQ(0, sh("test -z \"$(find %s -name '.tmp.*')\"", self->s));
		consistent(self, small, "staged");
	}

	/* And at random moments of an uncut save. */
	fill_random(f, 2 << 20, 999);
	gettimeofday(&t0, NULL);
	ASSERT_EQ(0, st("save %s %s --key %s --name timing -t 1 >/dev/null", f, self->s, self->k));
	gettimeofday(&t1, NULL);
	ASSERT_EQ(0, st("delete %s timing >/dev/null", self->s));
	span = (t1.tv_sec - t0.tv_sec) * 1000000L + t1.tv_usec - t0.tv_usec;
	srandom((unsigned int)getpid());
	for (int round = 0; round < 6; round++) {
		char name[32];
		int status;
		pid_t pid;

		snprintf(name, sizeof(name), "big%d", round);
		fill_random(f, 2 << 20, 1000 + round);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			if (!freopen("/dev/null", "w", stdout))
				_exit(126);
			execl(tool, tool, "save", f, self->s, "--key", self->k,
			      "--name", name, "-t", "1", (char *)NULL);
			_exit(127);
		}
		usleep((useconds_t)(random() % (span + 1)));
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		killed += WIFSIGNALED(status);
		consistent(self, small, name);
	}
	TH_LOG("%d of 6 saves killed at a random moment (a save takes %ld us)", killed, span);
	ASSERT_EQ(0, st("gc %s >/dev/null", self->s));
	ASSERT_EQ(0, sh("test -z \"$(find %s -name '.tmp.*')\"", self->s));
	ASSERT_EQ(0, st("save %s %s --key %s --name big >/dev/null", f, self->s, self->k));
	ASSERT_EQ(0, st("load %s big %s/b.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/b.out", f, d));
}

/*
 * Run from cron or a daemon with fds 0-2 closed, the store's own files got
 * them: the "damaged; storing it again" message went into the LMDB index
 * (fd 2) and made the whole store unreadable (MDB_INVALID).
 */
TEST_F_TIMEOUT(store, closed_std_fds, 600)
{
	char *d = self->dir, f[256], path[512];

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 8 * 4096, 51);
	ASSERT_EQ(0, st("save %s %s --key %s --name a <&- >&- 2>&-", f, self->s, self->k));
	some_pack(self->s, path, sizeof(path));
	ASSERT_NE(0, path[0]);
	flip(path, 100);	/* the next save repairs it, saying so on stderr */
	ASSERT_EQ(0, st("save %s %s --key %s --name b <&- >&- 2>&-", f, self->s, self->k));
	ASSERT_EQ(0, st("load %s b %s/b.out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/b.out", f, d));
	ASSERT_EQ(0, st("load %s a %s/a.out --key %s <&- >&- 2>&-", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/a.out", f, d));
	ASSERT_EQ(0, st("verify %s --key %s >/dev/null", self->s, self->k));
	ASSERT_EQ(8, blocks(self->s));
}

/*
 * Block @blk of @f (snapshot 'a', saved on one thread) is the @nth (from
 * 0) in the store's pack: a byte flipped in it fails a two-thread load
 * under @env, which names that block alone, leaves no target and no
 * temporary file; with --partial every other block is written.
 */
static void bad_block_named(struct __th_fixture_store *self, const char *f, int blk, int nth,
			    const char *env)
{
	char *d = self->dir, path[512];

	some_pack(self->s, path, sizeof(path));
	ASSERT_NE(0, path[0]);
	flip(path, 16 + (off_t)nth * 4112 + 100);
	ASSERT_EQ(1, sh("rm -f %s/out && %s %s load %s a %s/out --key %s -t 2 2>%s/err",
			d, env, tool, self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'block %d (offset %d, id [0-9a-f]*): tampered' %s/err && "
			"test $(grep -c tampered %s/err) = 1", blk, blk * 4096, d, d));
	ASSERT_EQ(0, sh("test ! -e %s/out && ! ls %s/out.vmrs-* 2>/dev/null", d, d));
	ASSERT_EQ(1, sh("rm -f %s/part && %s %s load %s a %s/part --key %s -t 2 --partial 2>/dev/null",
			d, env, tool, self->s, d, self->k));
	ASSERT_EQ(0, sh("test \"$(cmp -l %s %s/part | awk '{print int(($1 - 1) / 4096)}' | sort -u)\" = %d",
			f, d, blk));
}

/*
 * A load looks its blocks up a window at a time (1 M blocks; fewer under
 * VMRESET_STORE_LOCATE_WINDOW), then runs the workers over that window:
 * with windows of 7 and of 1 block, loads on one and two threads, verify,
 * and a bad block past the first window must behave exactly as in one
 * window, named by its own number.
 */
TEST_F_TIMEOUT(store, load_in_windows, 600)
{
	char *d = self->dir, f[256];
	const char *ws[] = { "7", "1" };

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 40 * 4096 + 100, 71);
	/* A zero block in the second window, and a short last block. */
	ASSERT_EQ(0, sh("dd if=/dev/zero of=%s bs=4096 seek=9 count=1 conv=notrunc 2>/dev/null", f));
	ASSERT_EQ(0, st("save %s %s --key %s --name a -t 1 >/dev/null", f, self->s, self->k));
	for (int w = 0; w < 2; w++)
		for (int t = 1; t <= 2; t++) {
			ASSERT_EQ(0, sh("rm -f %s/out && VMRESET_STORE_LOCATE_WINDOW=%s %s load %s a %s/out "
					"--key %s -t %d >/dev/null", d, ws[w], tool, self->s, d, self->k, t));
			ASSERT_EQ(0, sh("cmp %s %s/out", f, d));
		}
	ASSERT_EQ(0, sh("VMRESET_STORE_LOCATE_WINDOW=7 %s verify %s a --key %s >/dev/null",
			tool, self->s, self->k));
	/* Block 20 is the 20th stored (block 9 is not). */
	bad_block_named(self, f, 20, 19, "VMRESET_STORE_LOCATE_WINDOW=7");
	ASSERT_EQ(1, sh("VMRESET_STORE_LOCATE_WINDOW=7 %s verify %s a --key %s 2>/dev/null >&2",
			tool, self->s, self->k));
}

/*
 * Writes into one file take its inode lock, so a load thread that finds
 * the target busy leaves its chunk for after its next one (cmd.c,
 * submit()). VMRESET_STORE_WRITE_LATE=1 makes every chunk wait: five
 * chunks of 64 blocks with holes and a short tail must come back exact on
 * one and two threads; a bad block in the third chunk fails the load and
 * leaves no target, and --partial still writes every other block.
 */
TEST_F_TIMEOUT(store, load_writes_late, 600)
{
	char *d = self->dir, f[256];

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 300 * 4096 + 1000, 73);
	ASSERT_EQ(0, sh("dd if=/dev/zero of=%s bs=4096 seek=70 count=6 conv=notrunc 2>/dev/null && "
			"dd if=/dev/zero of=%s bs=4096 seek=200 count=1 conv=notrunc 2>/dev/null",
			f, f));
	ASSERT_EQ(0, st("save %s %s --key %s --name a -t 1 >/dev/null", f, self->s, self->k));
	for (int late = 0; late < 2; late++)
		for (int t = 1; t <= 2; t++) {
			ASSERT_EQ(0, sh("rm -f %s/out && %s %s load %s a %s/out --key %s -t %d >/dev/null",
					d, late ? "VMRESET_STORE_WRITE_LATE=1" : "", tool, self->s, d,
					self->k, t));
			ASSERT_EQ(0, sh("cmp %s %s/out", f, d)) TH_LOG("late %d, %d threads", late, t);
		}
	/* Block 150 is the 145th stored (70-75 are not). */
	bad_block_named(self, f, 150, 144, "VMRESET_STORE_WRITE_LATE=1");
}

/*
 * The index is not authenticated: an entry whose length is wrong must be
 * reported, not read into a one-block buffer (a heap overflow before).
 */
TEST_F_TIMEOUT(store, damaged_index_entry_length, 600)
{
	char *d = self->dir, f[256], path[512], ipath[300];
	unsigned char pat[20], *buf;
	unsigned long long pack;
	uint64_t off = 16;
	uint32_t len = 4112, big = 1U << 20;
	int fd, hits = 0;
	struct stat sb;

	snprintf(f, sizeof(f), "%s/a", d);
	fill_random(f, 40 * 4096, 61);
	ASSERT_EQ(0, st("save %s %s --key %s --name a -t 1 >/dev/null", f, self->s, self->k));
	some_pack(self->s, path, sizeof(path));
	ASSERT_NE(0, path[0]);
	ASSERT_EQ(1, sscanf(strrchr(path, '/') + 1, "%llx", &pack));
	/* The first block's value: (pack, offset 16, length 4096 + 16). */
	memcpy(pat, &pack, 8);
	memcpy(pat + 8, &off, 8);
	memcpy(pat + 16, &len, 4);
	snprintf(ipath, sizeof(ipath), "%s/index", self->s);
	fd = open(ipath, O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, fstat(fd, &sb));
	buf = malloc((size_t)sb.st_size);
	ASSERT_NONNULL(buf);
	ASSERT_EQ(sb.st_size, pread(fd, buf, (size_t)sb.st_size, 0));
	for (off_t o = 0; o + 20 <= sb.st_size; o++)
		if (!memcmp(buf + o, pat, 20)) {
			ASSERT_EQ(4, pwrite(fd, &big, 4, o + 16));
			hits++;
		}
	close(fd);
	free(buf);
	ASSERT_LT(0, hits);
	ASSERT_EQ(1, st("load %s a %s/out --key %s 2>%s/err", self->s, d, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'block 0 (offset 0, id [0-9a-f]*): damaged index entry' %s/err", d));
	ASSERT_EQ(0, sh("test ! -e %s/out", d));
	ASSERT_EQ(1, st("verify %s --key %s 2>%s/err >&2", self->s, self->k, d));
	ASSERT_EQ(0, sh("grep -q 'damaged index entry' %s/err", d));
	ASSERT_EQ(1, st("verify %s 2>%s/err >&2", self->s, d));
	ASSERT_EQ(0, sh("grep -q 'damaged index entry (length 1048576)' %s/err", d));
	/* The next save of that content replaces the entry. */
	ASSERT_EQ(0, st("save %s %s --key %s --name b 2>/dev/null >&2", f, self->s, self->k));
	ASSERT_EQ(0, st("load %s a %s/out --key %s >/dev/null", self->s, d, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/out", f, d));
}

/* Names and paths with quotes, backslashes and control characters. */
TEST_F_TIMEOUT(store, json_hostile_names, 600)
{
	static const char *const names[] = {
		"quote\"d", "back\\slash", "both\\\"\\\\", "sp ace \u00e9\u4e2d", "{\"a\":[1]}",
	};
	char store[512], f[300], out[4096];
	json_object *o, *snaps, *v;

	snprintf(store, sizeof(store), "%s/st\"o\\re\t\x01\x1f\n", self->dir);
	snprintf(f, sizeof(f), "%s/a", self->dir);
	fill_random(f, 4096, 41);
	{
		const char *argv[] = { tool, "init", store, NULL };

		ASSERT_EQ(0, runv(out, sizeof(out), argv));
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *argv[] = { tool, "save", f, store, "--key", self->k, "--name",
				       names[i], NULL };

		ASSERT_EQ(0, runv(out, sizeof(out), argv)) TH_LOG("%s", names[i]);
	}
	o = list_json(store);
	ASSERT_NONNULL(o);
	ASSERT_TRUE(json_object_object_get_ex(o, "store", &v));
	ASSERT_EQ(0, strcmp(store, json_object_get_string(v)));
	ASSERT_TRUE(json_object_object_get_ex(o, "snapshots", &snaps));
	ASSERT_EQ(sizeof(names) / sizeof(names[0]), json_object_array_length(snaps));
	for (size_t i = 0; i < json_object_array_length(snaps); i++) {
		bool found = false;

		ASSERT_TRUE(json_object_object_get_ex(json_object_array_get_idx(snaps, i), "name", &v));
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			found |= !strcmp(names[k], json_object_get_string(v));
		ASSERT_TRUE(found) TH_LOG("%s", json_object_get_string(v));
	}
	json_object_put(o);
	/* Control characters are refused in names (they reach terminals). */
	{
		const char *argv[] = { tool, "save", f, store, "--key", self->k, "--name",
				       "bell\a", NULL };

		ASSERT_EQ(2, runv(out, sizeof(out), argv));
	}
}

TEST_F(store, usage_errors)
{
	ASSERT_EQ(2, st("2>/dev/null"));
	ASSERT_EQ(2, st("frobnicate 2>/dev/null"));
	ASSERT_EQ(2, st("save onlyone 2>/dev/null"));
	ASSERT_EQ(2, st("save a b 2>/dev/null"));
	ASSERT_EQ(2, st("init x --block-size 3000 2>/dev/null"));
	ASSERT_EQ(2, st("init x --block-size 4kk 2>/dev/null"));
	ASSERT_EQ(2, st("init x --copies -1 2>/dev/null"));
	ASSERT_EQ(2, st("init x --salt weekly 2>/dev/null"));
	ASSERT_EQ(2, st("save a %s --key %s --name ../x 2>/dev/null", self->s, self->k));
	ASSERT_EQ(2, st("save a %s --key %s --name .hidden 2>/dev/null", self->s, self->k));
	ASSERT_EQ(2, st("save a %s --key %s --name x --base x 2>/dev/null", self->s, self->k));
	ASSERT_EQ(2, st("load %s a b --key %s --min-seq 2x 2>/dev/null", self->s, self->k));
	ASSERT_EQ(2, st("delete %s 2>/dev/null", self->s));
	ASSERT_EQ(0, st("save --help >/dev/null"));
	ASSERT_EQ(1, st("list %s/nostore 2>/dev/null", self->dir));
	ASSERT_EQ(1, st("init %s 2>/dev/null", self->s));
	ASSERT_EQ(1, st("load %s nosuch %s/x --key %s 2>%s/err", self->s, self->dir, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q \"vmreset-store: manifest 'nosuch': no such snapshot\" %s/err", self->dir));
	ASSERT_EQ(1, st("delete %s nosuch 2>/dev/null", self->s));
	ASSERT_EQ(1, st("list %s >/dev/full 2>/dev/null", self->s));
	/* A name that is a path is refused before any file is read. */
	ASSERT_EQ(2, st("load %s ../policy %s/x --key %s 2>/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(2, st("verify %s ../policy 2>/dev/null", self->s));
	/* A device or pipe has st_size 0: it used to be saved as an empty snapshot. */
	ASSERT_EQ(1, st("save /dev/zero %s --key %s --name z 2>%s/err", self->s, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q \"'/dev/zero': not a regular file or a block device\" %s/err", self->dir));
	ASSERT_EQ(0, sh("mkfifo %s/fifo", self->dir));
	ASSERT_EQ(1, st("save %s/fifo %s --key %s --name z 2>/dev/null", self->dir, self->s, self->k));
	ASSERT_EQ(0, sh("test ! -e %s/manifests/z", self->s));
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


static int vmr_file(const char *mnt, const char *name, char *f, size_t len)
{
	unsigned char page[4096];
	int fd;

	snprintf(f, len, "%s/%s", mnt, name);
	fd = open(f, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 4 << 20))
		return -1;
	srandom(1);
	for (int i = 0; i < 512; i++) {
		for (size_t k = 0; k < sizeof(page); k++)
			page[k] = (unsigned char)random();
		if (pwrite(fd, page, 4096, (off_t)i * 8192) != 4096)
			return -1;
	}
	return fd;
}

/*
 * The vmresetfs cases: a store as above, vmresetfs mounted in the same
 * directory, and a 4 MiB "vm.ram" in it (vmr_file). Without vmresetfs
 * (not in the test VM) they are skipped.
 */
FIXTURE(vmr) {
	char dir[64];
	char s[128];
	char k[128];
	char mnt[256];
	char f[300];
	int fd;
	unsigned char *m;	/* vmr_map() */
};

FIXTURE_SETUP(vmr)
{
	self->fd = -1;
	store_dir(self->dir, self->s, self->k);
	snprintf(self->mnt, sizeof(self->mnt), "%s/mnt", self->dir);
	ASSERT_EQ(0, mkdir(self->mnt, 0755));
	if (mount("none", self->mnt, "vmresetfs", 0, "size=64m")) {
		ASSERT_TRUE(errno == ENODEV || errno == EPERM) TH_LOG("mount: %s", strerror(errno));
		self->mnt[0] = 0;
		SKIP(return, "no vmresetfs here");
	}
	self->fd = vmr_file(self->mnt, "vm.ram", self->f, sizeof(self->f));
	ASSERT_GE(self->fd, 0);
}

FIXTURE_TEARDOWN(vmr)
{
	if (self->m)
		munmap(self->m, 4 << 20);
	if (self->fd >= 0)
		close(self->fd);
	if (self->mnt[0])
		umount(self->mnt);
	sh("rm -rf %s", self->dir);
}

/* vm.ram mapped shared, as a VMM maps guest RAM. */
static void vmr_map(FIXTURE_DATA(vmr) *self)
{
	self->m = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, self->m);
}

TEST_F_TIMEOUT(vmr, vmresetfs_incremental, 300)
{
	struct vmreset_snapshot snap = { 0 };
	struct vmreset_preserve pr = { .op = VMRESET_PRESERVE_ADD, .offset = 64 * 4096,
				       .length = 3 * 4096 };
	struct vmreset_range r[4];
	struct vmreset_range_list l = { .ranges = (uintptr_t)r, .nr = 4 };
	char f2[300], out[8192];
	int fd2;

	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_PRESERVE, &pr));
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &snap));
	ASSERT_EQ(0, st("save %s %s --key %s --name base >/dev/null", self->f, self->s, self->k));
	/* "The guest" changes three pages through a shared mapping. */
	guest_writes(self->fd);
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s %s --key %s --name inc --base base",
			     self->f, self->s, self->k));
	ASSERT_NONNULL(strstr(out, " 3 new, 0 deduplicated, 1021 unchanged")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s inc %s/inc.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/inc.out", self->f, self->dir));
	/* Load the base back into the vmresetfs file, in place. */
	ASSERT_EQ(0, st("load %s base %s --key %s >/dev/null", self->s, self->f, self->k));
	ASSERT_EQ(0, st("load %s base %s/base.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/base.out", self->f, self->dir));
	/* Into a fresh vmresetfs file: content and the preserved range. */
	snprintf(f2, sizeof(f2), "%s/other.ram", self->mnt);
	fd2 = open(f2, O_RDWR | O_CREAT, 0644);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(0, st_line(out, sizeof(out), "load %s base %s --key %s", self->s, f2, self->k));
	ASSERT_NONNULL(strstr(out, "preserved ranges re-applied")) TH_LOG("%s", out);
	ASSERT_EQ(0, sh("cmp %s %s/base.out", f2, self->dir));
	ASSERT_EQ(0, ioctl(fd2, VMRESET_IOC_PRESERVE_LIST, &l));
	ASSERT_EQ(1, l.nr);
	ASSERT_EQ(64 * 4096, r[0].offset);
	ASSERT_EQ(3 * 4096, r[0].length);
	close(fd2);
}

/*
 * Issue 14: snapshot; the guest writes page X; save the base; revert; the
 * guest writes Y; save --base. The dirty list now names only Y, and X in
 * the base has the content the revert undid: the save must refuse the base.
 */
TEST_F_TIMEOUT(vmr, vmresetfs_base_after_revert, 300)
{
	struct vmreset_snapshot snap = { 0 };
	struct vmreset_revert rev = { 0 };
	char out[8192];

	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &snap));
	vmr_map(self);
	self->m[10 * 4096] ^= 0x55;					/* X */
	ASSERT_EQ(0, st("save %s %s --key %s --name base >/dev/null", self->f, self->s, self->k));
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_REVERT, &rev));
	self->m[20 * 4096] ^= 0x55;					/* Y */
	ASSERT_EQ(1, st("save %s %s --key %s --name inc --base base 2>%s/err",
			self->f, self->s, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q \"base 'base' was saved at snapshot 1, revert 0 of '.*', which is now at snapshot 1, revert 1\" %s/err",
			self->dir));
	ASSERT_EQ(1, sh("test -e %s/manifests/inc", self->s));
	/* Another snapshot after the base is refused the same way. */
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &snap));
	ASSERT_EQ(1, st("save %s %s --key %s --name inc --base base 2>/dev/null",
			self->f, self->s, self->k));
	/* Saved on a fresh base, it round-trips. */
	ASSERT_EQ(0, st("save %s %s --key %s --name base2 >/dev/null", self->f, self->s, self->k));
	self->m[30 * 4096] ^= 0x55;
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s %s --key %s --name inc --base base2",
			     self->f, self->s, self->k));
	ASSERT_NONNULL(strstr(out, " 1 new, 0 deduplicated")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s inc %s/inc.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/inc.out", self->f, self->dir));
	/* A base from another object is refused too. */
	close(self->fd);
	self->fd = vmr_file(self->mnt, "other.ram", self->f, sizeof(self->f));
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &snap));
	ASSERT_EQ(1, st("save %s %s --key %s --name inc2 --base base2 2>%s/err",
			self->f, self->s, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q 'saved from another object' %s/err", self->dir));
}

/*
 * A vmresetfs file that never had a snapshot has no dirty list (the ioctl
 * returns an empty one), so save --base used to read nothing and store
 * the base's content again, whatever the guest had written.
 */
TEST_F_TIMEOUT(vmr, vmresetfs_base_without_snapshot, 300)
{
	char out[8192];

	ASSERT_EQ(0, st("save %s %s --key %s --name base >/dev/null", self->f, self->s, self->k));
	vmr_map(self);
	self->m[10 * 4096] ^= 0x55;		/* a data page */
	self->m[11 * 4096 + 7] = 9;		/* a hole */
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s %s --key %s --name inc --base base",
			     self->f, self->s, self->k));
	ASSERT_NONNULL(strstr(out, " 2 new, 0 deduplicated, ")) TH_LOG("%s", out);
	ASSERT_EQ(0, st("load %s inc %s/inc.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/inc.out", self->f, self->dir));
}

/*
 * A revert while a save reads the file leaves it with blocks of two
 * states under counters that claim one: the save must fail, not succeed.
 */
TEST_F_TIMEOUT(vmr, vmresetfs_revert_during_save, 300)
{
	struct vmreset_snapshot snap = { 0 };
	struct vmreset_revert rev = { 0 };
	char err[300];
	int status;
	pid_t pid;

	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &snap));
	vmr_map(self);
	for (int i = 0; i < 1024; i += 8)
		self->m[i * 4096] ^= 0x55;
	snprintf(err, sizeof(err), "%s/err", self->dir);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		if (!freopen("/dev/null", "w", stdout) || !freopen(err, "w", stderr))
			_exit(126);
		setenv("VMRESET_STORE_STOP_AT", "mid-blocks", 1);
		execl(tool, tool, "save", self->f, self->s, "--key", self->k, "--name", "mid",
		      "-t", "1", (char *)NULL);
		_exit(127);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, WUNTRACED));
	ASSERT_TRUE(WIFSTOPPED(status)) TH_LOG("status %#x", status);
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_REVERT, &rev));
	kill(pid, SIGCONT);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(1, WEXITSTATUS(status));
	ASSERT_EQ(0, sh("grep -q 'snapshotted or reverted during the save: nothing saved' %s", err));
	ASSERT_EQ(1, sh("test -e %s/manifests/mid", self->s));
}

static int hot_op(int fd, __u32 op, uint64_t off, uint64_t len)
{
	struct vmreset_range r = { .offset = off, .length = len };
	struct vmreset_hot h = { .op = op, .nr = 1, .ranges = (uintptr_t)&r };

	return ioctl(fd, VMRESET_IOC_HOT, &h);
}

/*
 * DIRTY lists a hot page only while it differs from its snapshot copy.
 * Snapshot, write hot page H, save the base, write H back to its snapshot
 * content, write Y, save --base: before the store read the hot list too,
 * only Y was read and H came back from the base with the content it had
 * when the base was saved. A hot page demoted after the base (HOT_DEL)
 * is in neither list: that base must be refused.
 */
TEST_F_TIMEOUT(vmr, vmresetfs_hot_page_written_back, 300)
{
	struct vmreset_snapshot snap = { 0 };
	struct vmreset_revert rev = { 0 };
	struct vmreset_stats vs = { .size = sizeof(vs) };
	char out[8192];

	ASSERT_EQ(0, hot_op(self->fd, VMRESET_HOT_ADD, 10 * 4096, 4096));	/* H */
	ASSERT_EQ(0, hot_op(self->fd, VMRESET_HOT_ADD, 40 * 4096, 4096));	/* H2 */
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_SNAPSHOT, &snap));
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_STATS, &vs));
	ASSERT_EQ(2, vs.hot_pages);
	vmr_map(self);
	self->m[10 * 4096 + 5] ^= 0x55;
	ASSERT_EQ(0, st("save %s %s --key %s --name base >/dev/null", self->f, self->s, self->k));
	self->m[10 * 4096 + 5] ^= 0x55;		/* H back to its snapshot content */
	self->m[20 * 4096] ^= 0x55;			/* Y */
	ASSERT_EQ(0, st_line(out, sizeof(out), "save %s %s --key %s --name inc --base base",
			     self->f, self->s, self->k));
	ASSERT_EQ(0, st("load %s inc %s/inc.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/inc.out", self->f, self->dir)) TH_LOG("%s", out);
	/* Only the hot pages and Y were read: H (the base's copy differs) and Y are new. */
	ASSERT_NONNULL(strstr(out, " 2 new, 0 deduplicated")) TH_LOG("%s", out);

	/* H2 changed at the base, changed back, then demoted: in neither list. */
	ASSERT_EQ(0, st("save %s %s --key %s --name base2 >/dev/null", self->f, self->s, self->k));
	self->m[40 * 4096] ^= 0x55;
	ASSERT_EQ(0, st("save %s %s --key %s --name base3 >/dev/null", self->f, self->s, self->k));
	self->m[40 * 4096] ^= 0x55;
	ASSERT_EQ(0, hot_op(self->fd, VMRESET_HOT_DEL, 40 * 4096, 4096));
	ASSERT_EQ(1, st("save %s %s --key %s --name inc3 --base base3 2>%s/err",
			self->f, self->s, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q \"hot pages of '.*' were demoted since base 'base3'\" %s/err",
			self->dir));
	ASSERT_EQ(1, sh("test -e %s/manifests/inc3", self->s));
	/* A revert after the base is still refused, hot pages or not. */
	ASSERT_EQ(0, st("save %s %s --key %s --name base4 >/dev/null", self->f, self->s, self->k));
	ASSERT_EQ(0, ioctl(self->fd, VMRESET_IOC_REVERT, &rev));
	ASSERT_EQ(1, st("save %s %s --key %s --name inc4 --base base4 2>%s/err",
			self->f, self->s, self->k, self->dir));
	ASSERT_EQ(0, sh("grep -q 'the dirty list no longer covers' %s/err", self->dir));
	/* Saved on a fresh base after the revert, it round-trips. */
	ASSERT_EQ(0, st("save %s %s --key %s --name base5 >/dev/null", self->f, self->s, self->k));
	self->m[10 * 4096 + 5] ^= 0x55;
	ASSERT_EQ(0, st("save %s %s --key %s --name base6 >/dev/null", self->f, self->s, self->k));
	self->m[10 * 4096 + 5] ^= 0x55;
	ASSERT_EQ(0, st("save %s %s --key %s --name inc6 --base base6 >/dev/null",
			self->f, self->s, self->k));
	ASSERT_EQ(0, st("load %s inc6 %s/inc6.out --key %s >/dev/null", self->s, self->dir, self->k));
	ASSERT_EQ(0, sh("cmp %s %s/inc6.out", self->f, self->dir));
}

TEST_HARNESS_MAIN
