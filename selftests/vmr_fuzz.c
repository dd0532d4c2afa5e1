// SPDX-License-Identifier: GPL-2.0
/*
 * vmr_fuzz - random multi-threaded system call sequences against vmresetfs,
 * in the spirit of syzkaller, with a model check where the outcome is
 * deterministic.
 *
 *   vmr_fuzz [--seed N] [--time SECONDS] [--threads N] [--fault-inject]
 *            [--no-workarounds] [--big-files] [-v]
 *
 * Worker threads pick operations at random: open/O_TMPFILE/close/unlink/
 * rename, mmap/munmap/mremap/mprotect/madvise/fork, reads and writes
 * through mappings, read/write/pread/pwrite/readv/writev/splice/sendfile,
 * truncate/fallocate, FICLONE/FICLONERANGE, every VMRESET ioctl with random
 * and boundary arguments, netlink commands for objects and VMs. A vCPU
 * thread runs KVM guests whose RAM is a vmresetfs file, attaches them over
 * netlink and snapshots/reverts them. Each epoch ends with umount -l while
 * files are open and mapped, and operations on them afterwards.
 *
 * What fails the run (besides the kernel log, which the test VM checks):
 *  - a model check: with a file held exclusively, SNAPSHOT, random
 *    mutations (each checked against a byte model), REVERT, and then the
 *    file's size and every page (through pread and the mapping) must equal
 *    the snapshot, preserved ranges keeping their new content;
 *  - the invariant "a page that DIRTY does not list holds its snapshot
 *    content", and STATS.dirty_pages == the pages DIRTY lists;
 *  - an errno outside the documented set, a crash outside a deliberate
 *    probe, an operation that does not finish within 120 s (a livelock).
 * --fault-inject (debug kernel): failslab and fail_page_alloc, limited to
 * call chains through vmreset.ko and to the model-check thread while it
 * mutates and reverts; every failure must leave the invariant true, and a
 * REVERT once injection stops must restore the snapshot.
 *
 * Each thread draws from its own generator seeded from --seed, so a seed
 * reproduces every thread's sequence (not the interleaving). The seed is
 * printed first.
 *
 * Files only change size under their slot's write lock, and accesses
 * through mappings stay below the size under the read lock: that keeps
 * the model deterministic and the fuzzer from faulting on purpose where
 * it would not learn anything. After a REVERT that shrinks a file the
 * fuzzer maps the file afresh, working around a known defect (issue 11,
 * defect 3: pages past the new EOF stay mapped and a write to them spins);
 * --no-workarounds leaves the old mappings in place.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <getopt.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include "kvm_guest.h"
#include "vmr_guest.h"
#include "vmr_util.h"

#define NSLOTS		6
#define MAXPG		64		/* largest file the fuzzer makes */
#define MAXSZ		(MAXPG * PG)
#define MAXTHREADS	16
#define STUCK_SECONDS	120
#define SLOT_GPA	VM_TEST_GPA

/* ------------------------------------------------------------------------
 * Output and failures
 */
static atomic_int failures;
static bool verbose;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

#define fail(fmt, ...)	do {						\
	atomic_fetch_add(&failures, 1);					\
	say("FAIL %s:%d: " fmt, __func__, __LINE__, ##__VA_ARGS__);	\
} while (0)

/* ------------------------------------------------------------------------
 * Per-thread state: random numbers, the probe that may fault, what runs
 */
struct worker {
	int idx;
	pthread_t thread;
	uint64_t rng;
	int nl;				/* this thread's netlink socket */
	const char *op;			/* what it is doing, for the watchdog */
	_Atomic long op_start;		/* when it started, 0 when idle */
	unsigned long ops;
	unsigned long probes_faulted;
	bool fault_inject;		/* injection allowed for this thread */
	_Atomic bool done;
	_Atomic pid_t tid;
	char trail[160];		/* the calls of the current operation */
	struct slot *touched[2];	/* the slots it holds, for their logs */
};

static __thread struct worker *self;
static __thread sigjmp_buf probe_env;
static __thread volatile int in_probe;

static uint64_t rnd(void)
{
	/* xorshift64*: cheap, and per thread, so seeds reproduce sequences. */
	uint64_t x = self->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	self->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t rn(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static bool one_in(unsigned int n)
{
	return rn(n) == 0;
}

static uint64_t boundary(uint64_t size)
{
	static const uint64_t v[] = { 0, 1, PG - 1, PG, PG + 1, MAXSZ, MAXSZ + PG,
		1ULL << 31, 1ULL << 32, 1ULL << 62, 1ULL << 63, ~0ULL,
		~0ULL - PG + 1, (~0ULL >> 1) & ~(PG - 1) };

	switch (rn(4)) {
	case 0: return v[rn(sizeof(v) / sizeof(v[0]))];
	case 1: return size;
	case 2: return rnd();
	default: return rn(MAXPG + 2) * PG;
	}
}

/*
 * Sizes and offsets that make files this large: 256 MiB, or 2^47 with
 * --big-files (which finds harden-findings.md #1, the FICLONE lockup).
 */
static uint64_t big_mask = (256ULL << 20) - 1;

static uint64_t big(uint64_t size)
{
	return boundary(size) & big_mask;
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (in_probe) {
		in_probe = 0;
		siglongjmp(probe_env, sig);
	}
	/* A fault the fuzzer did not ask for: a real crash. */
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Accesses through mappings that may fault: a SIGSEGV/SIGBUS in them is
 * counted, not fatal. Out of line, so sigsetjmp() clobbers nothing of the
 * callers. probe_cmp() returns -1 for a fault, else whether they differ.
 */
#define PROBE_FN(name, args, body)					\
static __attribute__((noinline)) int name args				\
{									\
	if (sigsetjmp(probe_env, 1)) {					\
		self->probes_faulted++;					\
		return -1;						\
	}								\
	in_probe = 1;							\
	body;								\
	in_probe = 0;							\
	return 0;							\
}
PROBE_FN(probe_copy, (void *d, const void *src, size_t n), memcpy(d, src, n))
PROBE_FN(probe_fill, (void *base, uint64_t idx, uint64_t v), fill_page(base, idx, v))
PROBE_FN(probe_poke, (volatile char *p, char v), *p = v)
PROBE_FN(probe_peek, (const volatile char *p), (void)*p)

static __attribute__((noinline)) int probe_cmp(const void *a, const void *b, size_t n)
{
	int r;

	if (sigsetjmp(probe_env, 1)) {
		self->probes_faulted++;
		return -1;
	}
	in_probe = 1;
	r = memcmp(a, b, n) != 0;
	in_probe = 0;
	return r;
}

static long now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void begin(const char *op)
{
	self->op = op;
	self->trail[0] = 0;
	atomic_store(&self->op_start, now_s());
	self->ops++;
}

static void slot_log(struct slot *s);

static void end(void)
{
	for (int i = 0; i < 2; i++) {
		if (self->touched[i])
			slot_log(self->touched[i]);
		self->touched[i] = NULL;
	}
	atomic_store(&self->op_start, 0);
}

/* Note a call and its result in the current operation's trail. */
static void trail(const char *what, long ret)
{
	size_t n = strlen(self->trail);

	if (n < sizeof(self->trail) - 1)
		snprintf(self->trail + n, sizeof(self->trail) - n, " %s=%ld", what, ret);
}

/* Every errno the UAPI documents, plus what generic VFS paths return. */
static void check_errno(const char *what, long ret, int err)
{
	if (ret >= 0)
		return;
	switch (err) {
	case ENOTTY: case EFAULT: case EINVAL: case EBADF: case ENODATA:
	case ENOSPC: case EBUSY: case EXDEV: case EOPNOTSUPP: case ENOENT:
	case EPERM: case EACCES: case EEXIST: case ENOMEM: case EFBIG:
	case ESPIPE: case EAGAIN: case EINTR: case ENODEV: case ENXIO:
		return;
	}
	fail("%s: unexpected errno %d (%s)", what, err, strerror(err));
}

#define CHK(what, expr) ({ long __r = (long)(expr); int __e = errno;	\
	check_errno(what, __r, __e); trail(what, __r); errno = __e; __r; })

/* ------------------------------------------------------------------------
 * Fault injection (debugfs), on the model-check thread only
 */
static bool fi_on;
static __thread char fi_tid_path[64];	/* per thread: each epoch has new ones */

static int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

static int fi_knob(const char *attr, const char *file, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s/%s", attr, file);
	if (write_str(path, val)) {
		say("fault injection: cannot write %s to %s: %s", val, path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Allocations fail only with vmreset.ko's text on the stack. Since 6.4 a
 * module's text is an allocation of its own and /proc/modules gives its
 * start with the size of all its parts, so the range comes from the
 * module's text symbols (plus a page for the last function).
 */
static int fi_setup(void)
{
	static const char *const attrs[] = { "failslab", "fail_page_alloc" };
	unsigned long base = ~0UL, end = 0, size, a;
	char line[512], buf[32], type;
	FILE *f = fopen("/proc/kallsyms", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "\t[vmreset]") && sscanf(line, "%lx %c", &a, &type) == 2 &&
		    (type == 't' || type == 'T') && a) {
			base = a < base ? a : base;
			end = a > end ? a : end;
		}
	if (f)
		fclose(f);
	if (!end) {
		say("fault injection: no vmreset text symbols in /proc/kallsyms");
		return -1;
	}
	size = end + PG - base;
	for (unsigned int i = 0; i < 2; i++) {
		const char *a = attrs[i];

		if (fi_knob(a, "probability", "0") || fi_knob(a, "interval", "1") ||
		    fi_knob(a, "times", "-1") || fi_knob(a, "verbose", "0") ||
		    fi_knob(a, "task-filter", "Y") ||
		    fi_knob(a, "stacktrace-depth", "32"))
			return -1;
		snprintf(buf, sizeof(buf), "%lu", base);
		if (fi_knob(a, "require-start", buf))
			return -1;
		snprintf(buf, sizeof(buf), "%lu", base + size);
		if (fi_knob(a, "require-end", buf) ||
		    fi_knob(a, "ignore-gfp-wait", "N"))
			return -1;
	}
	if (fi_knob("fail_page_alloc", "ignore-gfp-highmem", "N") ||
	    fi_knob("fail_page_alloc", "min-order", "0"))
		return -1;
	/* 20%: most operations get through, the rest fail in varied places. */
	if (fi_knob("failslab", "probability", "20") ||
	    fi_knob("fail_page_alloc", "probability", "20"))
		return -1;
	say("fault injection: failslab and fail_page_alloc at 20%% in vmreset.ko [0x%lx, 0x%lx)",
	    base, base + size);
	return 0;
}

static void fi_stop_all(void)
{
	fi_knob("failslab", "probability", "0");
	fi_knob("fail_page_alloc", "probability", "0");
}

static void fi(bool on)
{
	if (!fi_on || !self->fault_inject)
		return;
	if (!fi_tid_path[0])
		snprintf(fi_tid_path, sizeof(fi_tid_path),
			 "/proc/self/task/%ld/make-it-fail", (long)gettid());
	if (write_str(fi_tid_path, on ? "1" : "0"))
		fail("cannot write %s: %s", fi_tid_path, strerror(errno));
}

/* ------------------------------------------------------------------------
 * Netlink, raw: one socket per thread, messages built by hand
 */
static int family;

struct nla { uint16_t type, len; const void *data; };

static int nl_open(void)
{
	struct timeval tv = { .tv_sec = 30 };
	int one = 1, s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);

	if (s < 0)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	return s;
}

/*
 * Sends @cmd and reads to the ack. Returns 0 or -errno; *@u32_out gets the
 * first VM_ID attribute of a reply. A request without an answer fails.
 */
static int nl_req(int sock, uint8_t cmd, bool dump, const struct nla *a, int n,
		  uint32_t *vm_id_out)
{
	static __thread uint8_t buf[4096], rbuf[65536];
	static __thread uint32_t seq;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	struct genlmsghdr *g = NLMSG_DATA(nlh);
	size_t len = NLMSG_HDRLEN + GENL_HDRLEN;
	int err = 1;

	memset(buf, 0, NLMSG_HDRLEN + GENL_HDRLEN);
	for (int i = 0; i < n; i++) {
		struct nlattr *na = (struct nlattr *)(buf + len);

		na->nla_type = a[i].type;
		na->nla_len = NLA_HDRLEN + a[i].len;
		memcpy(buf + len + NLA_HDRLEN, a[i].data, a[i].len);
		len += NLA_ALIGN(na->nla_len);
	}
	nlh->nlmsg_len = len;
	nlh->nlmsg_type = family;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (dump ? NLM_F_DUMP : 0);
	nlh->nlmsg_seq = ++seq;
	g->cmd = cmd;
	g->version = VMRESET_GENL_VERSION;
	if (sendto(sock, buf, len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	while (err == 1) {
		ssize_t got = recv(sock, rbuf, sizeof(rbuf), 0);
		struct nlmsghdr *r;
		int rem = got;

		if (got < 0) {
			if (errno == EINTR)
				continue;
			fail("netlink cmd %u: no answer: %s", cmd, strerror(errno));
			return -errno;
		}
		for (r = (struct nlmsghdr *)rbuf; NLMSG_OK(r, rem); r = NLMSG_NEXT(r, rem)) {
			if (r->nlmsg_seq != seq)
				continue;
			if (r->nlmsg_type == NLMSG_ERROR) {
				err = ((struct nlmsgerr *)NLMSG_DATA(r))->error;
			} else if (r->nlmsg_type == NLMSG_DONE) {
				err = 0;
			} else if (vm_id_out) {
				struct nlattr *at = (struct nlattr *)((char *)NLMSG_DATA(r) + GENL_HDRLEN);
				int alen = r->nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN;

				while (alen >= NLA_HDRLEN && at->nla_len >= NLA_HDRLEN &&
				       at->nla_len <= alen) {
					if ((at->nla_type & NLA_TYPE_MASK) == VMRESET_A_VM_ID &&
					    at->nla_len >= NLA_HDRLEN + 4) {
						memcpy(vm_id_out, (char *)at + NLA_HDRLEN, 4);
						break;
					}
					alen -= NLA_ALIGN(at->nla_len);
					at = (struct nlattr *)((char *)at + NLA_ALIGN(at->nla_len));
				}
			}
		}
	}
	return err;
}

#define NLA(t, v)	{ (t), sizeof(v), &(v) }

/* ------------------------------------------------------------------------
 * Files: slots with a lock, an fd and a mapping of MAXSZ
 */
struct slot {
	pthread_rwlock_t lock;		/* write: the size changes, or a model check */
	int fd;
	char *map;			/* MAXSZ, MAP_SHARED; only < size is touched */
	uint64_t id;			/* object ID */
	off_t size;			/* stable under the read lock */
	/* The last operations on it, printed when a model check fails. */
	char log[24][224];
	unsigned int nlog;
};

static struct slot slots[NSLOTS];
static char mnt[64];
static atomic_bool stop;
static bool workarounds = true;
static unsigned long model_checks, model_pages, fi_ops_failed, fi_partial_reverts;
/* REVERTs that failed with ENOMEM, by the ioctl and over netlink. */
static unsigned long fi_reverts_ioctl, fi_reverts_nl;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

static off_t fsize(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

static void slot_remap(struct slot *s)
{
	void *p = mmap(s->map, MAXSZ, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		       s->fd, 0);

	if (p == MAP_FAILED)
		fail("remap slot: %s", strerror(errno));
}

/* After anything that may have changed the size, under the write lock. */
static void slot_resized(struct slot *s)
{
	off_t old = s->size, now = fsize(s->fd);

	if (now < 0) {
		fail("fstat: %s", strerror(errno));
		return;
	}
	s->size = now;
	if (workarounds && now < old)
		slot_remap(s);
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Hold @s's log for the current operation (after taking its lock). */
static void touch(struct slot *s)
{
	if (!self->touched[0])
		self->touched[0] = s;
	else if (self->touched[0] != s)
		self->touched[1] = s;
}

static void slot_log(struct slot *s)
{
	pthread_mutex_lock(&log_lock);
	snprintf(s->log[s->nlog++ % 24], sizeof(s->log[0]), "t%d %ld %s: size %lld%s", self->idx,
		 now_s(), self->op, (long long)fsize(s->fd), self->trail);
	pthread_mutex_unlock(&log_lock);
}

static void slot_log_dump(struct slot *s)
{
	pthread_mutex_lock(&log_lock);
	say("  the slot's last operations, oldest first:");
	for (unsigned int i = s->nlog > 24 ? s->nlog - 24 : 0; i < s->nlog; i++)
		say("  %s", s->log[i % 24]);
	pthread_mutex_unlock(&log_lock);
}

/* The part of the file the slot's mapping covers. */
static off_t lim(const struct slot *s)
{
	return s->size < (off_t)MAXSZ ? s->size : (off_t)MAXSZ;
}

static struct slot *pick(void)
{
	return &slots[rn(NSLOTS)];
}

static void rdlock(struct slot *s) { pthread_rwlock_rdlock(&s->lock); }
static void wrlock(struct slot *s) { pthread_rwlock_wrlock(&s->lock); }
static void unlock(struct slot *s) { pthread_rwlock_unlock(&s->lock); }

/* Two slots, always in index order. */
static void lock2(struct slot *a, bool wa, struct slot *b, bool wb)
{
	struct slot *x = a < b ? a : b, *y = a < b ? b : a;
	bool wx = a < b ? wa : wb, wy = a < b ? wb : wa;

	if (a == b) {
		wa || wb ? wrlock(a) : rdlock(a);
		return;
	}
	wx ? wrlock(x) : rdlock(x);
	wy ? wrlock(y) : rdlock(y);
}

static void unlock2(struct slot *a, struct slot *b)
{
	unlock(a);
	if (a != b)
		unlock(b);
}

static int slot_open(struct slot *s, int i)
{
	char name[32];
	struct vmreset_stats st;

	snprintf(name, sizeof(name), "slot%d", i);
	s->fd = vmr_file(mnt, name, (1 + i * 7 % MAXPG) * PG);
	if (s->fd < 0)
		return -1;
	s->map = mmap(NULL, MAXSZ, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->map == MAP_FAILED)
		return -1;
	s->size = fsize(s->fd);
	if (vmr_stats(s->fd, &st))
		return -1;
	s->id = st.id;
	return 0;
}

/* ------------------------------------------------------------------------
 * The model check: deterministic outcomes under the write lock
 */
static bool in_list(const struct vmreset_range *r, int n, uint64_t off)
{
	for (int i = 0; i < n; i++)
		if (off >= r[i].offset && off - r[i].offset < r[i].length)
			return true;
	return false;
}

/*
 * A page DIRTY does not list holds its snapshot content; pages past the
 * snapshot's size that exist must be listed. Run with injection off.
 */
static bool check_invariant(struct slot *s, const uint8_t *snap, off_t snap_size,
			    const char *after)
{
	static __thread struct vmreset_range r[MAXPG + 1];
	static __thread uint8_t page[PG];
	struct vmreset_stats st;
	uint64_t listed = 0;
	off_t size = fsize(s->fd);
	int n = vmr_list(s->fd, VMRESET_IOC_DIRTY, r, MAXPG + 1, 1 + rn(8));
	bool ok = true;

	if (n < 0) {
		fail("DIRTY after %s: %s", after, strerror(errno));
		return false;
	}
	for (int i = 0; i < n; i++)
		listed += r[i].length / PG;
	if (vmr_stats(s->fd, &st) || st.dirty_pages != listed) {
		fail("after %s: STATS.dirty_pages %" PRIu64 ", DIRTY lists %" PRIu64 " pages",
		     after, (uint64_t)st.dirty_pages, listed);
		ok = false;
	}
	for (off_t off = 0; off < size && off < snap_size; off += PG) {
		off_t upto = size < snap_size ? size : snap_size;
		size_t want = upto - off < (off_t)PG ? (size_t)(upto - off) : PG;

		if (in_list(r, n, off))
			continue;
		if (pread(s->fd, page, want, off) != (ssize_t)want ||
		    memcmp(page, snap + off, want)) {
			fail("after %s: page %lld is not listed dirty but differs from the snapshot",
			     after, (long long)(off / PG));
			ok = false;
			break;
		}
	}
	return ok;
}


/* What a model check did, printed when it fails. */
struct mstep {
	const char *what;
	uint64_t off, len;
	off_t before, after;
	long ret;
};

/* Where and how the file differs from the model, and what led there. */
static void explain(const uint8_t *file, const uint8_t *model, const uint8_t *snap,
		    off_t msize, off_t snap_size, const struct mstep *h, int nh)
{
	off_t first = -1, last = -1;
	long zero = 0, assnap = 0, n = 0;

	for (off_t i = 0; i < msize; i++) {
		if (file[i] == model[i])
			continue;
		if (first < 0)
			first = i;
		last = i;
		n++;
		zero += !file[i];
		assnap += i < snap_size && file[i] == snap[i];
	}
	say("  %ld bytes differ in [%lld, %lld] (pages %lld-%lld); of them %ld zero in the file,"
	    " %ld as in the snapshot; size %lld, snapshot %lld", n, (long long)first,
	    (long long)last, (long long)(first / PG), (long long)(last / PG), zero, assnap,
	    (long long)msize, (long long)snap_size);
	for (int i = 0; i < nh; i++)
		say("  step %d: %s %" PRIu64 "+%" PRIu64 " -> %ld, size %lld -> %lld", i, h[i].what,
		    h[i].off, h[i].len, h[i].ret, (long long)h[i].before, (long long)h[i].after);
}

/* Does @fd hold what a REVERT gives: the snapshot, preserved pages as now? */
static bool is_reverted(int fd, uint8_t *buf, const uint8_t *snap, off_t snap_size,
			const uint8_t *model, off_t msize, uint64_t poff, uint64_t plen)
{
	if (fsize(fd) != snap_size || pread(fd, buf, snap_size, 0) != snap_size)
		return false;
	for (off_t off = 0; off < snap_size; off += PG) {
		size_t l = snap_size - off < (off_t)PG ? (size_t)(snap_size - off) : PG;
		bool kept = plen && (uint64_t)off >= poff && (uint64_t)off < poff + plen;

		if (kept && off + (off_t)PG > msize)
			continue;
		if (memcmp(buf + off, kept ? model + off : snap + off, l))
			return false;
	}
	return true;
}

static void model_check(struct slot *s)
{
	static __thread uint8_t snap[MAXSZ], model[MAXSZ], buf[MAXSZ];
	struct vmreset_preserve pr = { .op = VMRESET_PRESERVE_DEL };
	uint64_t poff = 0, plen = 0;
	off_t snap_size, msize;
	struct vmreset_revert rv = { 0 };
	int steps = 1 + rn(12), ret, mfd;
	bool reverted = false;
	struct mstep hist[12];
	char proc[64];

	wrlock(s);
	begin("model check");
	touch(s);
	/* Its own file offset: other threads lseek() the slot's fd. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", s->fd);
	mfd = open(proc, O_RDWR | O_CLOEXEC);
	if (mfd < 0) {
		fail("reopen %s: %s", proc, strerror(errno));
		goto out;
	}
	/*
	 * No preserved range unless this check adds one: the random ones may
	 * lie anywhere (a range past EOF keeps REVERT from shrinking the file,
	 * harden-findings.md #2).
	 */
	for (int n = 1; n > 0;) {
		static __thread struct vmreset_range pl[VMRESET_MAX_PRESERVED];

		n = vmr_list(s->fd, VMRESET_IOC_PRESERVE_LIST, pl, VMRESET_MAX_PRESERVED, 64);
		if (n < 0)
			fail("PRESERVE_LIST: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			pr.offset = pl[i].offset;
			pr.length = pl[i].length;
			if (ioctl(s->fd, VMRESET_IOC_PRESERVE, &pr)) {
				fail("PRESERVE_DEL %" PRIu64 "+%" PRIu64 ": %s", (uint64_t)pr.offset,
				     (uint64_t)pr.length, strerror(errno));
				n = 0;
			}
		}
	}
	if (fsize(s->fd) > (off_t)MAXSZ && ftruncate(s->fd, rn(MAXPG + 1) * PG))
		fail("ftruncate to fit the model: %s", strerror(errno));
	/*
	 * Past EOF the file holds nothing: the bytes past it in the last page
	 * (seen through the mapping) and, grown to MAXSZ, everything after
	 * it read as zero. What earlier operations left there would show up
	 * only later, as a pwrite or ftruncate that grows the file.
	 */
	snap_size = fsize(s->fd);
	if (snap_size < (off_t)MAXSZ) {
		static const uint8_t zeros[PG];
		size_t tail = (PG - snap_size % PG) % PG;

		if (tail && probe_cmp(s->map + snap_size, zeros, tail) == 1) {
			fail("before the model check: bytes past EOF (%lld) in the last page are not zero",
			     (long long)snap_size);
			slot_log_dump(s);
			goto out;
		}
		if (ftruncate(s->fd, MAXSZ) ||
		    pread(s->fd, buf, MAXSZ - snap_size, snap_size) != (ssize_t)(MAXSZ - snap_size)) {
			fail("grow to check past EOF: %s", strerror(errno));
			goto out;
		}
		for (off_t i = 0; i < (off_t)MAXSZ - snap_size; i++) {
			if (buf[i]) {
				fail("before the model check: byte %lld past EOF (%lld) is %#x, not zero",
				     (long long)(snap_size + i), (long long)snap_size, buf[i]);
				slot_log_dump(s);
				goto out;
			}
		}
		/* Without room for a copy of the last page it stays grown. */
		if (ftruncate(s->fd, snap_size) && errno != ENOSPC)
			fail("shrink back to %lld: %s", (long long)snap_size, strerror(errno));
	}
	if (vmr_snapshot(s->fd, NULL)) {
		fail("SNAPSHOT: %s", strerror(errno));
		goto out;
	}
	snap_size = fsize(s->fd);
	if (snap_size >= (off_t)PG && one_in(3)) {
		poff = rn(snap_size / PG) * PG;
		plen = (1 + rn((snap_size - poff) / PG)) * PG;
		if (poff + plen > (uint64_t)snap_size)
			plen = (snap_size - poff) & ~(PG - 1);
		if (plen && vmr_preserve(s->fd, VMRESET_PRESERVE_ADD, poff, plen))
			fail("PRESERVE_ADD: %s", strerror(errno));
	}
	if (pread(s->fd, snap, snap_size, 0) != snap_size) {
		fail("pread snapshot: %s", strerror(errno));
		goto out;
	}
	memcpy(model, snap, snap_size);
	msize = snap_size;

	for (int i = 0; i < steps; i++) {
		uint64_t off = rn(MAXSZ), len = 1 + rn(3 * PG);
		bool hits_p = plen && off < poff + plen && poff < off + len;
		const char *what;
		ssize_t n = 0;
		int err = 0;

		off_t before = msize;

		hist[i] = (struct mstep){ "skipped", off, len, msize, msize, 0 };
		if (off + len > MAXSZ)
			len = MAXSZ - off;
		for (uint64_t j = 0; j < len; j++)
			buf[j] = rnd();
		/*
		 * Memory pressure in the middle: the shrinker frees the kept
		 * copies of reverted pages (those of this file only if its
		 * lock is free), which must change nothing the model sees.
		 */
		if (one_in(24) && vmr_drop_caches())
			fail("drop_caches: %s", strerror(errno));
		fi(true);
		switch (rn(6)) {
		case 0:
			what = "pwrite";
			n = pwrite(s->fd, buf, len, off);
			err = errno;
			fi(false);
			if (n > 0) {
				if (off > (uint64_t)msize)
					memset(model + msize, 0, off - msize);
				memcpy(model + off, buf, n);
				if ((off_t)(off + n) > msize)
					msize = off + n;
			}
			break;
		case 1:
			what = "write through the mapping";
			if ((off_t)off >= msize) {
				fi(false);
				continue;
			}
			if ((off_t)(off + len) > msize)
				len = msize - off;
			n = len;
			if (probe_copy(s->map + off, buf, len)) {
				/* SIGBUS: no room (ENOSPC) for a page it wrote. */
				fi(false);
				if (pread(s->fd, model, msize, 0) != msize)
					fail("pread after %s: %s", what, strerror(errno));
				break;
			}
			fi(false);
			memcpy(model + off, buf, len);
			break;
		case 2: {
			off_t to = rn(MAXPG + 1) * PG - (one_in(2) ? rn(PG) : 0);

			what = "ftruncate";
			if (to < 0)
				to = 0;
			hits_p = plen && poff < (uint64_t)(to > msize ? to : msize) &&
				 poff + plen > (uint64_t)(to < msize ? to : msize);
			n = ftruncate(s->fd, to);
			err = errno;
			fi(false);
			if (!n) {
				if (to > msize)
					memset(model + msize, 0, to - msize);
				msize = to;
			}
			break;
		}
		case 3:
			what = "punch hole";
			off &= ~(PG - 1);
			len = (1 + rn(3)) * PG;
			if (off + len > MAXSZ)
				len = MAXSZ - off;
			hits_p = plen && off < poff + plen && poff < off + len;
			n = fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
			err = errno;
			fi(false);
			if (!n && (off_t)off < msize)
				memset(model + off, 0, ((off_t)(off + len) > msize ? msize - (off_t)off : (off_t)len));
			break;
		case 4:
			what = "fallocate";
			n = fallocate(s->fd, one_in(2) ? FALLOC_FL_KEEP_SIZE : 0, off, len);
			err = errno;
			fi(false);
			if (!n) {
				/* Allocation keeps the data; only the size may grow. */
				off_t ns = fsize(s->fd);

				if (ns > msize)
					memset(model + msize, 0, ns - msize);
				msize = ns;
			}
			break;
		default:
			what = "write(2) at the end";
			if (lseek(mfd, 0, SEEK_END) < 0 || msize + (off_t)len > (off_t)MAXSZ) {
				fi(false);
				continue;
			}
			n = write(mfd, buf, len);
			err = errno;
			fi(false);
			if (n > 0) {
				memcpy(model + msize, buf, n);
				msize += n;
			}
			break;
		}
		if (n < 0) {
			if (err == ENOMEM && fi_on) {
				/*
				 * All or nothing: a failed call changed nothing
				 * (a write that did part returns its count).
				 */
				pthread_mutex_lock(&stats_lock);
				fi_ops_failed++;
				pthread_mutex_unlock(&stats_lock);
			} else if (err == EBUSY && hits_p) {
				/* Truncate and punch over a preserved range. */
			} else if (err == ENOSPC) {
				msize = fsize(s->fd);
				if (pread(s->fd, model, msize, 0) != msize)
					fail("pread after %s: %s", what, strerror(errno));
			} else {
				fail("%s at %" PRIu64 "+%" PRIu64 ": %s", what, off, len,
				     strerror(err));
			}
		}
		hist[i] = (struct mstep){ what, off, len, before, msize, n };
		/* The file is what the model says, through pread and mapping. */
		if (fsize(s->fd) != msize) {
			fail("after %s: size %lld, model %lld", what,
			     (long long)fsize(s->fd), (long long)msize);
			slot_log_dump(s);
			goto out;
		}
		if (pread(s->fd, buf, msize, 0) != msize || memcmp(buf, model, msize)) {
			fail("after %s at %" PRIu64 "+%" PRIu64 ": content differs from the model",
			     what, off, len);
			explain(buf, model, snap, msize, snap_size, hist, i + 1);
			slot_log_dump(s);
			goto out;
		}
		if (!check_invariant(s, snap, snap_size, what))
			goto out;
	}

	/* Preserved pages keep what they hold now. */
	for (int tries = 0; !reverted; tries++) {
		bool by_ioctl = one_in(2);

		fi(tries == 0);
		if (by_ioctl) {
			ret = ioctl(s->fd, VMRESET_IOC_REVERT, &rv);
			ret = ret ? -errno : 0;
		} else {
			ret = nl_req(self->nl, VMRESET_CMD_OBJ_REVERT, false,
				     (struct nla[]){ NLA(VMRESET_A_OBJ_ID, s->id) }, 1, NULL);
		}
		fi(false);
		if (!ret) {
			reverted = true;
		} else if (ret == -ENOMEM && fi_on && tries == 0) {
			pthread_mutex_lock(&stats_lock);
			fi_ops_failed++;
			if (by_ioctl)
				fi_reverts_ioctl++;
			else
				fi_reverts_nl++;
			pthread_mutex_unlock(&stats_lock);
			/*
			 * All or nothing: still the pre-revert content. Both
			 * front ends allocate what they need, the netlink
			 * reply included (kmod/reply.h), before anything is
			 * reverted, so an ENOMEM means nothing was.
			 */
			if (fsize(s->fd) != msize ||
			    pread(s->fd, buf, msize, 0) != msize || memcmp(buf, model, msize)) {
				pthread_mutex_lock(&stats_lock);
				fi_partial_reverts++;
				pthread_mutex_unlock(&stats_lock);
				fail("REVERT (%s) failed with ENOMEM but changed the file (size %lld, before %lld%s)",
				     by_ioctl ? "ioctl" : "netlink", (long long)fsize(s->fd),
				     (long long)msize,
				     is_reverted(s->fd, buf, snap, snap_size, model, msize,
						 poff, plen) ? "; it was reverted" : "");
				goto out;
			}
			if (!check_invariant(s, snap, snap_size, by_ioctl ?
					     "REVERT (ioctl) failing with ENOMEM" :
					     "REVERT (netlink) failing with ENOMEM"))
				goto out;
		} else {
			fail("REVERT: %s", strerror(-ret));
			goto out;
		}
	}
	slot_resized(s);
	/*
	 * Expected: the snapshot, preserved pages with what they hold now.
	 * (A preserved page the mutations truncated away has no defined
	 * content: such truncates may fail with EBUSY or succeed.)
	 */
	for (uint64_t off = poff; off < poff + plen; off += PG)
		if ((off_t)(off + PG) <= msize)
			memcpy(snap + off, model + off, PG);
	if (fsize(s->fd) != snap_size) {
		fail("after REVERT: size %lld, snapshot %lld", (long long)fsize(s->fd),
		     (long long)snap_size);
		goto out;
	}
	if (pread(s->fd, buf, snap_size, 0) != snap_size) {
		fail("pread after REVERT: %s", strerror(errno));
		goto out;
	}
	for (off_t off = 0; off < snap_size; off += PG) {
		size_t l = snap_size - off < (off_t)PG ? (size_t)(snap_size - off) : PG;
		int differs;

		if (plen && (uint64_t)off >= poff && (uint64_t)off < poff + plen &&
		    (off_t)(off + PG) > msize)
			continue;
		differs = memcmp(buf + off, snap + off, l);

		/* Whole pages, through the mapping too. */
		if (!differs)
			differs = probe_cmp(s->map + off, snap + off, l);
		if (differs) {
			fail("after REVERT: page %lld differs from the snapshot%s",
			     (long long)(off / PG),
			     plen && (uint64_t)off >= poff && (uint64_t)off < poff + plen ?
			     " (preserved)" : "");
			slot_log_dump(s);
			goto out;
		}
	}
	{
		struct vmreset_stats st;

		if (vmr_stats(s->fd, &st) || st.dirty_pages || st.file_size != (uint64_t)snap_size)
			fail("after REVERT: STATS dirty_pages %" PRIu64 " file_size %" PRIu64,
			     (uint64_t)st.dirty_pages, (uint64_t)st.file_size);
	}
	pthread_mutex_lock(&stats_lock);
	model_checks++;
	model_pages += snap_size / PG;
	pthread_mutex_unlock(&stats_lock);
out:
	fi(false);
	if (mfd >= 0)
		close(mfd);
	end();
	unlock(s);
}

/* ------------------------------------------------------------------------
 * Random operations
 */
/*
 * Names for the unmodelled files. The slots' files ("slotN") are not among
 * them: a stray O_TRUNC would break the model.
 */
static const char *const names[] = { "a", "b", "c", "d/x", "d/y" };

static void name_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", mnt, names[rn(sizeof(names) / sizeof(names[0]))]);
}

#define NFDS 16
struct fdpool { int fd[NFDS]; };
static __thread struct fdpool pool;

/* One of this thread's unmodelled fds, else the fd of the slot it holds. */
static int any_fd(const struct slot *held)
{
	int f = pool.fd[rn(NFDS)];

	return f > 0 ? f : held->fd;
}

static void op_files(void)
{
	char a[128], b[128];
	int i = rn(NFDS), f;

	begin("files");
	name_path(a, sizeof(a));
	name_path(b, sizeof(b));
	switch (rn(7)) {
	case 0: case 1:
		f = CHK("open", open(a, (one_in(2) ? O_CREAT : 0) | O_RDWR | O_CLOEXEC |
					 (one_in(8) ? O_TRUNC : 0), 0600));
		if (f >= 0) {
			if (pool.fd[i] > 0)
				close(pool.fd[i]);
			pool.fd[i] = f;
		}
		break;
	case 2:
		f = CHK("O_TMPFILE", open(mnt, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
		if (f >= 0) {
			if (one_in(2))
				CHK("ftruncate tmpfile", ftruncate(f, rn(MAXPG) * PG));
			if (one_in(3)) {
				snprintf(b, sizeof(b), "/proc/self/fd/%d", f);
				if (linkat(AT_FDCWD, b, AT_FDCWD, a, AT_SYMLINK_FOLLOW) && errno != EEXIST)
					check_errno("linkat tmpfile", -1, errno);
			}
			if (pool.fd[i] > 0)
				close(pool.fd[i]);
			pool.fd[i] = f;
		}
		break;
	case 3:
		if (pool.fd[i] > 0) {
			close(pool.fd[i]);
			pool.fd[i] = 0;
		}
		break;
	case 4:
		CHK("unlink", unlink(a));
		break;
	case 5:
		CHK("rename", renameat2(AT_FDCWD, a, AT_FDCWD, b, one_in(3) ? RENAME_NOREPLACE : 0));
		break;
	default:
		snprintf(b, sizeof(b), "%s/d", mnt);
		CHK("mkdir", mkdir(b, 0700));
		break;
	}
	end();
}

/* Reads and writes through the slot's mapping, below its size. */
static void op_map_access(void)
{
	struct slot *s = pick();
	rdlock(s);
	begin("mapping access");
	touch(s);
	/*
	 * Past EOF a write must get SIGBUS. Only without the workaround: a
	 * page a REVERT left mapped past the new EOF livelocks the writer
	 * (issue 11, defect 3), which the watchdog then reports.
	 */
	if (!workarounds && lim(s) <= (off_t)(MAXSZ - PG) && one_in(4)) {
		uint64_t idx = (lim(s) + PG - 1) / PG;

		idx += rn(MAXPG - idx);
		if (probe_fill(s->map, idx, rnd()) == 0)
			fail("write past EOF (page %" PRIu64 ", size %lld) did not fault",
			     idx, (long long)s->size);
	}
	for (int i = 0, n = 1 + rn(16); i < n && lim(s) >= (off_t)PG; i++) {
		uint64_t idx = rn(lim(s) / PG);

		if (one_in(2))
			trail("fill", probe_fill(s->map, idx, rnd()) ? -(long)idx : (long)idx);
		else
			probe_peek(s->map + idx * PG + rn(PG / 8) * 8);
	}
	end();
	unlock(s);
}

/* A private mapping's life: mmap, mremap, mprotect, madvise, munmap. */
static void op_vma(void)
{
	struct slot *s = pick();
	size_t len, pages;
	char *p, *q;
	int fd;

	rdlock(s);
	begin("mmap and friends");
	touch(s);
	pages = lim(s) / PG;
	fd = one_in(8) ? any_fd(s) : s->fd;
	len = (one_in(8) ? 1 + rn(MAXPG + 4) : 1 + rn(pages ? pages : 1)) * PG;
	p = mmap(NULL, len, PROT_READ | (one_in(4) ? 0 : PROT_WRITE),
		 one_in(16) ? MAP_PRIVATE : MAP_SHARED, fd, one_in(8) ? rn(4) * PG : 0);
	if (p == MAP_FAILED) {
		check_errno("mmap", -1, errno);
		goto out;
	}
	for (int i = 0, n = rn(6); i < n; i++) {
		uint64_t off = rn(len / PG) * PG;
		bool inside = fd == s->fd && off < (uint64_t)lim(s);

		switch (rn(6)) {
		case 0:
			if (inside)
				trail("poke", probe_poke(p + off, rnd()) ? -(long)off : (long)off);
			break;
		case 1:
			if (inside)
				probe_peek(p + off);
			break;
		case 2:
			CHK("mprotect", mprotect(p + off, PG, one_in(2) ? PROT_READ : PROT_READ | PROT_WRITE));
			break;
		case 3: {
			static const int adv[] = { MADV_DONTNEED, MADV_WILLNEED, MADV_REMOVE,
				MADV_COLD, MADV_PAGEOUT, MADV_SEQUENTIAL, MADV_DONTFORK,
				MADV_POPULATE_READ, MADV_POPULATE_WRITE };
			int a = adv[rn(sizeof(adv) / sizeof(adv[0]))];

			/* POPULATE_WRITE past EOF would just be SIGBUS'd. */
			if (a == MADV_POPULATE_WRITE || a == MADV_POPULATE_READ) {
				if (!inside || off + PG > (uint64_t)lim(s))
					break;
			}
			CHK("madvise", madvise(p + off, PG, a));
			break;
		}
		case 4: {
			size_t nl = (1 + rn(pages ? pages : 1)) * PG;

			q = mremap(p, len, nl, one_in(2) ? MREMAP_MAYMOVE : 0);
			if (q != MAP_FAILED)
				p = q, len = nl;
			else
				check_errno("mremap", -1, errno);
			break;
		}
		default:
			CHK("msync", msync(p, len, one_in(2) ? MS_SYNC : MS_ASYNC));
			break;
		}
	}
	munmap(p, len);
out:
	end();
	unlock(s);
}

/* A child inherits the mappings, reads through them and asks for stats. */
static void op_fork(void)
{
	struct slot *s = pick();
	pid_t pid;

	rdlock(s);
	begin("fork");
	touch(s);
	pid = fork();
	if (pid == 0) {
		volatile uint64_t sum = 0;
		struct vmreset_stats st;

		for (off_t off = 0; off + (off_t)PG <= lim(s); off += PG)
			sum += *(volatile uint64_t *)(s->map + off);
		vmr_stats(s->fd, &st);
		_exit(sum == 0xdeadbeef);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	else
		check_errno("fork", -1, errno);
	end();
	unlock(s);
}

static void op_io(void)
{
	static __thread char buf[3 * PG];
	struct slot *s = pick(), *d = pick();
	int p[2], fd;
	off_t off;
	size_t len = 1 + rn(sizeof(buf));
	struct iovec iov[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };
	bool grow = one_in(4);

	lock2(s, grow, d, grow);
	begin("read/write");
	touch(s);
	touch(d);
	fd = one_in(8) ? any_fd(s) : s->fd;
	off = grow ? rn(MAXSZ) : (s->size ? rn(s->size) : 0);
	if (!grow && off + (off_t)len > s->size)
		len = s->size - off;
	for (size_t i = 0; i < len; i++)
		buf[i] = rnd();
	switch (rn(7)) {
	case 0: CHK("pread", pread(fd, buf, len, off)); break;
	case 1: CHK("pwrite", pwrite(fd, buf, len, off)); break;
	case 2: CHK("preadv", preadv(fd, iov, 2, off)); break;
	case 3: CHK("pwritev", pwritev(fd, iov, 2, off)); break;
	case 4:
		if (lseek(fd, off, SEEK_SET) >= 0)
			CHK("read", read(fd, buf, len));
		break;
	case 5:
		if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
			break;
		{
			loff_t in = off, out = d->size ? rn(d->size) : 0;
			ssize_t n = CHK("splice in", splice(fd, &in, p[1], NULL, len, SPLICE_F_NONBLOCK));

			if (n > 0 && (grow || out + n <= d->size))
				CHK("splice out", splice(p[0], NULL, d->fd, &out, n,
							 SPLICE_F_NONBLOCK | (one_in(2) ? SPLICE_F_MOVE : 0)));
		}
		close(p[0]);
		close(p[1]);
		break;
	default: {
		off_t in = off, out = d->size ? rn(d->size) : 0;

		if (grow || out + (off_t)len <= d->size) {
			if (lseek(d->fd, out, SEEK_SET) >= 0)
				CHK("sendfile", sendfile(d->fd, fd, &in, len));
		}
		break;
	}
	}
	if (grow) {
		slot_resized(s);
		if (d != s)
			slot_resized(d);
	}
	end();
	unlock2(s, d);
}

static void op_size(void)
{
	struct slot *s = pick();
	uint64_t off = rn(MAXSZ), len = 1 + rn(4 * PG);
	static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE,
		FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE,
		FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE };

	wrlock(s);
	begin("truncate/fallocate");
	touch(s);
	if (one_in(2))
		CHK("ftruncate", ftruncate(s->fd, one_in(8) ? (off_t)big(0) :
					    (off_t)rn(MAXSZ + 1)));
	else if (off + len <= MAXSZ || one_in(16))
		CHK("fallocate", fallocate(s->fd, modes[rn(6)], one_in(8) ? big(0) : off, len));
	slot_resized(s);
	end();
	unlock(s);
}

static void op_clone(void)
{
	struct slot *s = pick(), *d = pick();

	lock2(s, false, d, true);
	begin("clone");
	touch(s);
	touch(d);
	if (one_in(3)) {
		CHK("FICLONE", ioctl(d->fd, FICLONE, one_in(8) ? any_fd(s) : s->fd));
	} else {
		struct file_clone_range r = {
			.src_fd = s->fd,
			.src_offset = one_in(8) ? boundary(s->size) : rn(MAXPG) * PG,
			.src_length = one_in(8) ? boundary(s->size) : rn(MAXPG / 2) * PG,
			.dest_offset = one_in(8) ? big(d->size) : rn(MAXPG) * PG,
		};

		if (r.dest_offset + r.src_length <= MAXSZ || one_in(8))
			CHK("FICLONERANGE", ioctl(d->fd, FICLONERANGE, &r));
	}
	slot_resized(d);
	end();
	unlock2(s, d);
}

/* Every VMRESET ioctl, with random and boundary arguments. */
static void op_ioctl(void)
{
	static __thread struct vmreset_range r[64];
	static char *ro;
	struct slot *s = pick();
	union {
		struct vmreset_features f;
		struct vmreset_snapshot sn;
		struct vmreset_revert rv;
		struct vmreset_preserve pr;
		struct vmreset_range_list l;
		struct vmreset_stats st;
		struct vmreset_hot_config hc;
		uint8_t raw[256];
	} u;
	void *arg = &u;
	unsigned long cmd;
	int fd, which = rn(10);
	bool wr = which == 2;

	if (!ro)
		ro = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(&u, 0, sizeof(u));
	wr ? wrlock(s) : rdlock(s);
	begin("vmreset ioctl");
	touch(s);
	fd = one_in(10) ? any_fd(s) : s->fd;
	if (one_in(10))
		for (size_t i = 0; i < sizeof(u); i++)
			u.raw[i] = one_in(4) ? rnd() : 0;
	switch (which) {
	case 0:
		cmd = VMRESET_IOC_FEATURES;
		u.f.size = one_in(2) ? sizeof(u.f) : boundary(sizeof(u.f));
		break;
	case 1:
		cmd = VMRESET_IOC_SNAPSHOT;
		if (one_in(8))
			u.sn.flags = 1ULL << rn(64);
		break;
	case 2:
		cmd = VMRESET_IOC_REVERT;
		u.rv.flags = one_in(4) ? VMRESET_REVERT_F_DRY_RUN : one_in(8) ? rnd() : 0;
		break;
	case 3:
		cmd = VMRESET_IOC_PRESERVE;
		u.pr.op = one_in(8) ? rnd() : 1 + rn(2);
		u.pr.offset = one_in(4) ? boundary(s->size) : rn(MAXPG) * PG;
		u.pr.length = one_in(4) ? boundary(s->size) : (1 + rn(8)) * PG;
		if (one_in(16))
			u.pr.flags = rnd();
		break;
	case 4: case 5:
		cmd = which == 4 ? VMRESET_IOC_PRESERVE_LIST : VMRESET_IOC_DIRTY;
		u.l.nr = one_in(4) ? boundary(64) : rn(65);
		u.l.cursor = one_in(4) ? boundary(s->size) : rn(MAXPG) * PG;
		switch (rn(6)) {
		case 0: u.l.ranges = 0; break;
		case 1: u.l.ranges = (uintptr_t)ro; break;
		case 2: u.l.ranges = rnd(); break;
		default:
			u.l.ranges = (uintptr_t)r;
			if (u.l.nr > 64)
				u.l.nr = 64;
		}
		break;
	case 6:
		cmd = VMRESET_IOC_STATS;
		u.st.size = one_in(2) ? sizeof(u.st) : boundary(sizeof(u.st));
		break;
	case 7:
		/* Unknown numbers in our range, and the right ones misdeclared. */
		cmd = _IOC(rn(4), VMRESET_IOC_MAGIC, rn(16), rn(300));
		break;
	case 8:
		/*
		 * The bound on kept copies (which drops the oldest) and how
		 * REVERT keeps them (module-wide: every file's next REVERT).
		 */
		cmd = VMRESET_IOC_HOT_CONFIG;
		u.hc.flags = one_in(8) ? rnd() : VMRESET_HOT_CFG_KEPT;
		u.hc.kept_max = one_in(4) ? boundary(MAXPG) : rn(MAXPG);
		if (one_in(8))
			vmr_set_param("keep_copies", rn(3));
		break;
	default:
		cmd = VMRESET_IOC_STATS;
		arg = one_in(2) ? (void *)ro : (void *)(uintptr_t)rnd();
		break;
	}
	trail("which", which);
	CHK("vmreset ioctl", ioctl(fd, cmd, arg));
	if (wr)
		slot_resized(s);
	end();
	unlock(s);
}

static void op_netlink(void)
{
	struct slot *s = pick();
	uint64_t id = one_in(8) ? rnd() : s->id, off = rn(MAXPG) * PG, len = (1 + rn(4)) * PG;
	uint64_t flags = one_in(4) ? VMRESET_REVERT_F_DRY_RUN : 0;
	int cmd = rn(5), ret;
	bool wr = cmd == 2;

	wr ? wrlock(s) : rdlock(s);
	begin("netlink");
	touch(s);
	switch (cmd) {
	case 0:
		ret = nl_req(self->nl, VMRESET_CMD_OBJ_GET, one_in(2),
			     (struct nla[]){ NLA(VMRESET_A_OBJ_ID, id) }, one_in(4) ? 0 : 1, NULL);
		break;
	case 1:
		ret = nl_req(self->nl, VMRESET_CMD_OBJ_SNAPSHOT, false,
			     (struct nla[]){ NLA(VMRESET_A_OBJ_ID, id) }, 1, NULL);
		break;
	case 2:
		ret = nl_req(self->nl, VMRESET_CMD_OBJ_REVERT, false,
			     (struct nla[]){ NLA(VMRESET_A_OBJ_ID, id), NLA(VMRESET_A_FLAGS, flags) },
			     1 + rn(2), NULL);
		break;
	default:
		if (one_in(4))
			off = boundary(s->size), len = boundary(s->size);
		ret = nl_req(self->nl, cmd == 3 ? VMRESET_CMD_PRESERVE_ADD : VMRESET_CMD_PRESERVE_DEL,
			     false, (struct nla[]){ NLA(VMRESET_A_OBJ_ID, id),
				NLA(VMRESET_A_OFFSET, off), NLA(VMRESET_A_LENGTH, len) },
			     one_in(8) ? rn(3) : 3, NULL);
		break;
	}
	check_errno("netlink object command", ret, -ret);
	trail(cmd == 1 ? "OBJ_SNAPSHOT" : cmd == 2 ? "OBJ_REVERT" : "OBJ cmd", ret);
	if (wr)
		slot_resized(s);
	end();
	unlock(s);
}

/* ------------------------------------------------------------------------
 * The vCPU thread: a KVM guest whose RAM at SLOT_GPA is a slot's mapping
 */
static void vcpu_ops(struct kvm_vm **vmp, struct kvm_vcpu **vcpup, uint64_t *params,
		     int *cur, uint32_t *vm_id)
{
	struct kvm_vm *vm = *vmp;
	struct slot *s;
	int ret;

	if (!vm) {
		begin("vm create");
		vm = *vmp = __vm_create();
		end();
		if (!vm) {
			fail("vm_create: %s", kvm_last_error());
			atomic_store(&stop, true);
			return;
		}
		if (__vm_add_slot(vm, 2, PARAM_GPA, PARAM_SIZE, params, 0))
			fail("param slot: %s", kvm_last_error());
		*cur = -1;
		*vcpup = NULL;
		*vm_id = 0;
	}
	if (*cur < 0 || one_in(20)) {
		int i = rn(NSLOTS);

		wrlock(&slots[i]);
		begin("memslot");
		touch(&slots[i]);
		if (*cur >= 0)
			__vm_remove_slot(vm, 1);
		*cur = -1;
		if (!__vm_add_slot(vm, 1, SLOT_GPA, MAXSZ, slots[i].map, 0))
			*cur = i;
		else
			fail("memslot on slot %d: %s", i, kvm_last_error());
		end();
		unlock(&slots[i]);
		if (*cur < 0)
			return;
	}
	s = &slots[*cur];
	switch (rn(6)) {
	case 0: case 1: case 2: {
		uint64_t n = 0;

		rdlock(s);
		begin("guest writes");
		touch(s);
		for (uint64_t i = 0, k = 1 + rn(32); i < k && lim(s) >= (off_t)PG; i++)
			params[n++] = rn(lim(s) / PG);
		if (n) {
			if (!*vcpup)
				*vcpup = __vcpu_add(vm, 0, guest_write_list, 4, SLOT_GPA, PARAM_GPA, n, rnd());
			else if (__vcpu_set_entry(*vcpup, guest_write_list, 4, SLOT_GPA,
						  PARAM_GPA, n, rnd()))
				fail("vcpu_set_entry: %s", kvm_last_error());
			if (!*vcpup) {
				fail("vcpu_add: %s", kvm_last_error());
			} else {
				struct ucall uc;

				trail("guest pages", (long)n);
				ret = vcpu_run(*vcpup, &uc);
				if (ret != UCALL_DONE || uc.args[0] != n)
					fail("guest writing %" PRIu64 " pages of slot %d (size %lld): %s",
					     n, *cur, (long long)s->size, vcpu_exit_str(*vcpup));
			}
		}
		end();
		unlock(s);
		break;
	}
	case 3:
		begin("vm attach");
		if (*vm_id) {
			ret = nl_req(self->nl, VMRESET_CMD_VM_DETACH, false,
				     (struct nla[]){ NLA(VMRESET_A_VM_ID, *vm_id) }, 1, NULL);
			check_errno("VM_DETACH", ret, -ret);
			*vm_id = 0;
		} else {
			uint32_t vfd = vm->fd;

			ret = nl_req(self->nl, VMRESET_CMD_VM_ATTACH, false,
				     (struct nla[]){ NLA(VMRESET_A_VM_FD, vfd) }, 1, vm_id);
			check_errno("VM_ATTACH", ret, -ret);
			if (ret)
				*vm_id = 0;
		}
		end();
		break;
	case 4: {
		uint8_t cmds[] = { VMRESET_CMD_VM_GET, VMRESET_CMD_VM_SNAPSHOT, VMRESET_CMD_VM_REVERT,
				   VMRESET_CMD_VM_PRESERVE_ADD, VMRESET_CMD_VM_PRESERVE_DEL };
		uint8_t c = cmds[rn(5)];
		uint64_t gpa = one_in(4) ? boundary(SLOT_GPA) : SLOT_GPA + rn(MAXPG) * PG;
		uint64_t len = one_in(4) ? boundary(PG) : (1 + rn(4)) * PG, fl = 0;
		uint32_t id = one_in(8) ? rnd() : *vm_id;

		wrlock(s);
		begin("vm netlink");
		touch(s);
		if (c == VMRESET_CMD_VM_GET)
			ret = nl_req(self->nl, c, one_in(2),
				     (struct nla[]){ NLA(VMRESET_A_VM_ID, id) }, 1, NULL);
		else if (c == VMRESET_CMD_VM_SNAPSHOT)
			ret = nl_req(self->nl, c, false,
				     (struct nla[]){ NLA(VMRESET_A_VM_ID, id) }, 1, NULL);
		else if (c == VMRESET_CMD_VM_REVERT)
			ret = nl_req(self->nl, c, false,
				     (struct nla[]){ NLA(VMRESET_A_VM_ID, id), NLA(VMRESET_A_FLAGS, fl) },
				     1, NULL);
		else
			ret = nl_req(self->nl, c, false,
				     (struct nla[]){ NLA(VMRESET_A_VM_ID, id),
					NLA(VMRESET_A_OFFSET, gpa), NLA(VMRESET_A_LENGTH, len) }, 3, NULL);
		check_errno("VM command", ret, -ret);
		trail(c == VMRESET_CMD_VM_REVERT ? "VM_REVERT" : c == VMRESET_CMD_VM_SNAPSHOT ?
		      "VM_SNAPSHOT" : "VM cmd", ret);
		slot_resized(s);
		end();
		unlock(s);
		break;
	}
	default:
		/* An object revert with the guest's pages mapped in KVM. */
		wrlock(s);
		begin("revert under the guest");
		touch(s);
		if (one_in(2))
			CHK("SNAPSHOT", vmr_snapshot(s->fd, NULL));
		else
			CHK("REVERT", vmr_revert(s->fd, NULL, NULL));
		slot_resized(s);
		end();
		unlock(s);
		break;
	}
}

static bool use_kvm = true;
static int nthreads = 4;

static void *worker_main(void *arg)
{
	struct kvm_vm *vm = NULL;
	struct kvm_vcpu *vcpu = NULL;
	uint64_t *params = NULL;
	uint32_t vm_id = 0;
	int cur = -1;

	self = arg;
	atomic_store(&self->tid, gettid());
	self->nl = nl_open();
	if (self->nl < 0)
		fail("netlink socket: %s", strerror(errno));
	if (self->idx == nthreads) {
		params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (params == MAP_FAILED)
			fail("params: %s", strerror(errno));
	}
	while (!atomic_load(&stop)) {
		if (params) {
			vcpu_ops(&vm, &vcpu, params, &cur, &vm_id);
			continue;
		}
		switch (rn(20)) {
		case 0: case 1: op_files(); break;
		case 2: case 3: case 4: op_map_access(); break;
		case 5: case 6: op_vma(); break;
		case 7: op_fork(); break;
		case 8: case 9: case 10: op_io(); break;
		case 11: op_size(); break;
		case 12: op_clone(); break;
		case 13: case 14: case 15: op_ioctl(); break;
		case 16: case 17: op_netlink(); break;
		default:
			if (self->idx == 0 || one_in(4))
				model_check(pick());
			else
				op_map_access();
		}
	}
	/* Left attached on purpose: the umount that follows sees it. */
	if (params) {
		self->op = "vm kept for umount";
		atomic_store(&self->op_start, 0);
		/* The epoch's end frees the VM after umount; park it here. */
		struct kvm_vm **park = malloc(sizeof(*park));

		*park = vm;
		atomic_store(&self->done, true);
		return park;
	}
	for (int i = 0; i < NFDS; i++)
		if (pool.fd[i] > 0)
			close(pool.fd[i]);
	memset(&pool, 0, sizeof(pool));
	close(self->nl);
	atomic_store(&self->done, true);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Epochs: mount, run, umount -l with everything open, use it, close
 */
static struct worker workers[MAXTHREADS + 1];

/* What the kernel says a stuck thread is doing. */
static void dump_task(pid_t tid)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", tid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		say("  %s", strtok(line, "\n"));
	if (f)
		fclose(f);
}

/*
 * Until the deadline, then until every thread has stopped: an operation
 * running for STUCK_SECONDS fails the run.
 */
static bool watchdog(long deadline, bool use_vcpu)
{
	for (;;) {
		bool all_done = true;

		sleep(1);
		if (now_s() >= deadline)
			atomic_store(&stop, true);
		for (int i = 0; i <= nthreads; i++) {
			long st = atomic_load(&workers[i].op_start);

			if (i == nthreads && !use_vcpu)
				break;
			all_done &= atomic_load(&workers[i].done);
			if (st && now_s() - st > STUCK_SECONDS) {
				fail("thread %d stuck in \"%s\" for %ld s (livelock?); its kernel stack:",
				     i, workers[i].op, now_s() - st);
				dump_task(atomic_load(&workers[i].tid));
				return false;
			}
		}
		if (atomic_load(&stop) && all_done)
			return true;
	}
}

static int epoch(int n, uint64_t seed, int seconds, unsigned long *ops)
{
	struct kvm_vm **park = NULL;
	struct worker *main_self = self;
	int before = atomic_load(&failures);

	if (vmr_mount(mnt, "size=64m,mode=0700")) {
		fail("mount: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < NSLOTS; i++) {
		pthread_rwlock_init(&slots[i].lock, NULL);
		if (slot_open(&slots[i], i)) {
			fail("slot %d: %s", i, strerror(errno));
			return -1;
		}
	}
	atomic_store(&stop, false);
	for (int i = 0; i <= nthreads; i++) {
		struct worker *w = &workers[i];

		if (i == nthreads && !use_kvm)
			break;
		memset(w, 0, sizeof(*w));
		w->idx = i;
		w->rng = (seed ^ ((uint64_t)n << 32) ^ (0x9e3779b97f4a7c15ULL * (i + 1))) | 1;
		w->fault_inject = i == 0;
		pthread_create(&w->thread, NULL, worker_main, w);
	}
	if (!watchdog(now_s() + seconds, use_kvm)) {
		/* A stuck thread cannot be joined; report and leave. */
		fi_stop_all();
		printf("not ok %d epoch %d: a thread is stuck\n", n, n);
		fflush(stdout);
		_exit(1);
	}
	atomic_store(&stop, true);
	for (int i = 0; i <= nthreads; i++) {
		void *ret;

		if (i == nthreads && !use_kvm)
			break;
		pthread_join(workers[i].thread, &ret);
		*ops += workers[i].ops;
		if (ret)
			park = ret;
	}
	/* umount -l with every slot open and mapped and a VM on one of them. */
	self = main_self;
	umount2(mnt, MNT_DETACH);
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];
		struct vmreset_stats st;

		begin("after umount");
		CHK("SNAPSHOT after umount", vmr_snapshot(s->fd, NULL));
		if (s->size >= (off_t)PG)
			probe_fill(s->map, 0, 42);
		CHK("REVERT after umount", vmr_revert(s->fd, NULL, NULL));
		CHK("STATS after umount", vmr_stats(s->fd, &st));
		end();
	}
	{
		int sk = nl_open();

		nl_req(sk, VMRESET_CMD_OBJ_GET, true, NULL, 0, NULL);
		nl_req(sk, VMRESET_CMD_VM_GET, true, NULL, 0, NULL);
		close(sk);
	}
	for (int i = 0; i < NSLOTS; i++) {
		munmap(slots[i].map, MAXSZ);
		close(slots[i].fd);
		pthread_rwlock_destroy(&slots[i].lock);
	}
	if (park) {
		vm_free(*park);
		free(park);
	}
	rmdir(mnt);
	return atomic_load(&failures) == before ? 0 : -1;
}

static void usage(const char *argv0)
{
	printf("usage: %s [--seed N] [--time SECONDS] [--threads N] [--no-kvm]\n"
	       "          [--fault-inject] [--no-workarounds] [--big-files] [-v]\n"
	       "  --seed N          reproduce a run (each thread's sequence; default: random)\n"
	       "  --time SECONDS    how long to run, over 3 epochs (default 45)\n"
	       "  --threads N       worker threads besides the vCPU thread (default 4)\n"
	       "  --no-kvm          no vCPU thread\n"
	       "  --fault-inject    failslab/fail_page_alloc in vmreset.ko (needs debugfs)\n"
	       "  --no-workarounds  keep mappings after a REVERT shrinks a file (defect 3)\n"
	       "  --big-files       sparse files up to 2^47 bytes (default: 256 MiB)\n",
	       argv0);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "time", required_argument, NULL, 'T' },
		{ "threads", required_argument, NULL, 'j' },
		{ "no-kvm", no_argument, NULL, 'K' },
		{ "fault-inject", no_argument, NULL, 'F' },
		{ "no-workarounds", no_argument, NULL, 'W' },
		{ "big-files", no_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER };
	struct worker main_w = { .rng = 1 };
	uint64_t seed;
	int seconds = 45, opt, epochs = 3, ok = 0;
	unsigned long ops = 0;
	bool want_fi = false;
	struct nl_sock *sk;

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'T': seconds = atoi(optarg); break;
		case 'j': nthreads = atoi(optarg); break;
		case 'K': use_kvm = false; break;
		case 'F': want_fi = true; break;
		case 'W': workarounds = false; break;
		case 'B': big_mask = (1ULL << 47) - 1; break;
		case 'v': verbose = true; break;
		case 'h': usage(argv[0]); return 0;
		default: usage(argv[0]); return 2;
		}
	}
	if (seconds < epochs || nthreads < 1 || nthreads > MAXTHREADS) {
		fprintf(stderr, "%s: bad --time or --threads\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	self = &main_w;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	printf("TAP version 13\n1..%d\n", epochs + 1);
	say("vmr_fuzz --seed 0x%" PRIx64 " --time %d --threads %d%s%s%s%s", seed, seconds,
	    nthreads, use_kvm ? "" : " --no-kvm", want_fi ? " --fault-inject" : "",
	    workarounds ? "" : " --no-workarounds", big_mask >> 40 ? " --big-files" : "");

	sk = nl_socket_alloc();
	family = sk && !genl_connect(sk) ? genl_ctrl_resolve(sk, VMRESET_GENL_NAME) : -1;
	nl_socket_free(sk);
	if (family < 0) {
		printf("not ok 1 setup: no vmreset netlink family (module not loaded?)\n");
		return 1;
	}
	if (use_kvm && !kvm_available()) {
		printf("not ok 1 setup: %s\n", kvm_unavailable_reason());
		return 1;
	}
	if (want_fi) {
		if (fi_setup()) {
			printf("not ok 1 setup: fault injection unavailable\n");
			return 1;
		}
		fi_on = true;
	}
	for (int e = 1; e <= epochs; e++) {
		unsigned long before = ops;

		if (!epoch(e, seed, seconds / epochs, &ops)) {
			ok++;
			printf("ok %d epoch %d: %lu operations, umount -l with files open\n", e, e,
			       ops - before);
		} else {
			printf("not ok %d epoch %d: %lu operations\n", e, e, ops - before);
		}
	}
	if (fi_on)
		fi_stop_all();
	say("%lu operations in %d s (%.0f/s), %lu model checks over %lu pages, %d failures",
	    ops, seconds, (double)ops / seconds, model_checks, model_pages,
	    atomic_load(&failures));
	if (fi_on)
		say("fault injection: %lu operations failed with ENOMEM (REVERT: %lu by ioctl, %lu over netlink, each leaving the file as it was), %lu REVERTs failed part way",
		    fi_ops_failed, fi_reverts_ioctl, fi_reverts_nl, fi_partial_reverts);
	if (model_checks && !atomic_load(&failures))
		printf("ok %d model checks: %lu, seed 0x%" PRIx64 "\n", epochs + 1, model_checks, seed);
	else
		printf("not ok %d model checks: %lu, %d failures, seed 0x%" PRIx64 "\n", epochs + 1,
		       model_checks, atomic_load(&failures), seed);
	return atomic_load(&failures) || ok != epochs;
}
