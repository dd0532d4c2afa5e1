// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-vmm with a real Linux guest: one boot to the ready snapshot,
 * then many cases against the same VM, each request reset in place.
 *
 * Not harness.h: it forks every test, and a KVM VM only works in the
 * process that made it, while a nested boot costs 10+ s under TCG. This
 * program prints the same TAP; a failed case does not stop the others.
 *
 *   vmm_test [-t CASE]...   kernel and guest from $VMM_KERNEL/$VMM_INITRD,
 *                           else /vmm/vmlinuz and /vmm/guest.cpio.gz; the
 *                           disk from $VMM_DISK (empty: none), else
 *                           /vmm/disk.img (vmm/mkdisk.sh)
 *     -a ARGS    more guest kernel command line (nokaslr: stacks resolve)
 *     -v         the guest console on stderr
 *     -T MS      boot timeout per attempt (default 600000)
 *     -L M1:M2   with -t bisect: reset with each VMM_LOAD_* skip mask
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "vmm.h"
#include "vmreset.h"

static struct vmm *vm;
static char dir[64];
static int failed_checks;

#define CHECK(cond, ...)							\
	do {									\
		if (!(cond)) {							\
			printf("# %s:%d: check failed: %s: ", __func__, __LINE__, #cond); \
			printf(__VA_ARGS__);					\
			printf("\n");						\
			failed_checks++;					\
			return -1;						\
		}								\
	} while (0)

static int req_run(struct vmm_resp *r, unsigned int timeout_ms, const void *in,
		   size_t in_len, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	struct vmm_req q;

	va_start(ap, in_len);
	while (argc < 31 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	q = (struct vmm_req){ .argc = argc, .argv = argv, .in = in, .in_len = in_len,
			      .timeout_ms = timeout_ms };
	if (vmm_request(vm, &q, r)) {
		printf("# request %s: %s\n", argv[0], vmm_error(vm));
		return -1;
	}
	return 0;
}

/* Runs a shell command; returns its exit status, or -1 (and logs). */
static int sh(struct vmm_resp *r, const char *cmd)
{
	if (req_run(r, 60000, NULL, 0, "sh", "-c", cmd, NULL))
		return -1;
	if (r->outcome != VMM_OK) {
		printf("# '%s': %s: %s\n", cmd, r->outcome == VMM_TIMEOUT ? "timeout" :
		       r->outcome == VMM_CRASH ? "crash" : "error", r->why);
		return -1;
	}
	if (!WIFEXITED(r->wait_status))
		return -1;
	return WEXITSTATUS(r->wait_status);
}

static int sh_ok(const char *cmd, const char *want_out)
{
	struct vmm_resp r;
	int rc = sh(&r, cmd);

	if (rc != 0 || (want_out && (!r.out || strcmp(r.out, want_out)))) {
		printf("# '%s': exit %d, stdout '%s', stderr '%s' (want '%s')\n", cmd, rc,
		       r.out ? r.out : "", r.err ? r.err : "", want_out ? want_out : "");
		vmm_resp_free(&r);
		failed_checks++;
		return -1;
	}
	vmm_resp_free(&r);
	return 0;
}

static int t_echo(void)
{
	struct vmm_resp r;

	CHECK(!req_run(&r, 60000, NULL, 0, "echo", "hello", "world", NULL), "request");
	CHECK(r.outcome == VMM_OK, "outcome %d: %s", r.outcome, r.why);
	CHECK(WIFEXITED(r.wait_status) && WEXITSTATUS(r.wait_status) == 0, "status %#x", r.wait_status);
	CHECK(r.out && !strcmp(r.out, "hello world\n"), "stdout '%s'", r.out);
	CHECK(r.err_len == 0, "stderr '%s'", r.err);
	CHECK(vm->o.no_snapshot || r.reverted_pages > 0, "the reset reverted no page");
	printf("# echo: ran %llu us, reset %llu us, %llu pages reverted\n",
	       (unsigned long long)r.run_us, (unsigned long long)r.reset_us,
	       (unsigned long long)r.reverted_pages);
	vmm_resp_free(&r);
	return 0;
}

static int t_stdin_exit_status(void)
{
	size_t n = 200000;
	char *in = malloc(n);
	struct vmm_resp r;

	CHECK(in, "malloc");
	for (size_t i = 0; i < n; i++)
		in[i] = 'a' + (i * 7919) % 26;
	CHECK(!req_run(&r, 60000, in, n, "cat", NULL), "request");
	CHECK(r.outcome == VMM_OK && r.out_len == n && !memcmp(r.out, in, n),
	      "cat returned %zu bytes of %zu: outcome %d %s, status %#x, stderr '%s'",
	      r.out_len, n, r.outcome, r.why, r.wait_status, r.err ? r.err : "");
	vmm_resp_free(&r);
	free(in);
	CHECK(sh(&r, "echo oops >&2; exit 7") == 7, "exit status");
	CHECK(r.err && !strcmp(r.err, "oops\n"), "stderr '%s'", r.err);
	vmm_resp_free(&r);
	CHECK(!req_run(&r, 60000, NULL, 0, "/no/such/handler", NULL), "request");
	CHECK(r.outcome == VMM_OK && WIFEXITED(r.wait_status) &&
	      WEXITSTATUS(r.wait_status) == 127, "missing handler: status %#x", r.wait_status);
	CHECK(r.err && strstr(r.err, "/no/such/handler"), "stderr '%s'", r.err);
	vmm_resp_free(&r);
	return 0;
}

#ifndef VMM_TEST_NO_RESET
/* The in-place reset; -DVMM_TEST_NO_RESET builds the cases of a VM never reset instead. */
static int t_no_files_from_last_request(void)
{
	CHECK(!sh_ok("test ! -e /tmp/secret && echo s3cr3t > /tmp/secret && "
		     "mkdir -p /root/x && echo y > /root/x/y && cat /tmp/secret", "s3cr3t\n"),
	      "first request");
	CHECK(!sh_ok("test ! -e /tmp/secret && test ! -e /root/x && echo clean", "clean\n"),
	      "the second request saw the first's files");
	return 0;
}

static int t_no_processes_from_last_request(void)
{
	/* A daemon that would outlive its request. */
	CHECK(!sh_ok("setsid sleep 1000 </dev/null >/dev/null 2>&1 & sleep 0.1; "
		     "pidof sleep >/dev/null && echo started", "started\n"), "first request");
	CHECK(!sh_ok("pidof sleep || echo none", "none\n"),
	      "the second request saw the first's process");
	return 0;
}

/* The guest builds the secret, so it is nowhere in the request. */
#define SECRET_CMD "a=VMRS; b=ECRET; v=\"$a$b-$((6*7))\"; " \
	"for i in 1 2 3 4 5 6 7 8; do v=\"$v$v\"; done; echo -n \"$v\" > /tmp/m; " \
	"dd if=/dev/zero bs=1M count=4 2>/dev/null | tr '\\000' 'A' >/dev/null; echo ok"
static const char secret[] = "VMRSECRET-42VMRSECRET-42";

static int t_no_memory_from_last_request(void)
{
	struct vmm_req q;
	struct vmm_resp r;
	char *argv[] = { "sh", "-c", SECRET_CMD, NULL };
	bool found_before;

	CHECK(!memmem(vm->ram, vm->mem_size, secret, strlen(secret)),
	      "the secret is in RAM before the request");
	/* Run without the reset, to see the secret in RAM first. */
	vm->snapshotted = false;
	vm->o.no_snapshot = true;
	q = (struct vmm_req){ .argc = 3, .argv = argv, .timeout_ms = 60000 };
	int ret = vmm_request(vm, &q, &r);

	vm->snapshotted = true;
	vm->o.no_snapshot = false;
	vm->ready = true;
	CHECK(!ret && r.outcome == VMM_OK, "request: %s %s", vmm_error(vm), r.why);
	vmm_resp_free(&r);
	found_before = memmem(vm->ram, vm->mem_size, secret, strlen(secret)) != NULL;
	CHECK(found_before, "the guest's secret never reached RAM: the check below proves nothing");
	CHECK(!vmm_reset(vm, NULL), "reset: %s", vmm_error(vm));
	CHECK(!memmem(vm->ram, vm->mem_size, secret, strlen(secret)),
	      "the secret survived the reset");
	CHECK(!sh_ok("test ! -e /tmp/m && echo clean", "clean\n"), "request after");
	return 0;
}

/* The guest builds it, so it is on the disk only if the guest wrote it there. */
#define DISK_SECRET_CMD "a=VMRD; b=ISK; v=\"$a$b-$((6*7))\"; " \
	"for i in 1 2 3 4 5 6; do v=\"$v$v\"; done; echo -n \"$v\" > /disk/new && sync && " \
	"cat /disk/hello"
static const char disk_secret[] = "VMRDISK-42VMRDISK-42";
#define DISK_HELLO "hello from the disk\n"

/* Whether the disk file (what the guest's virtio-blk writes went to) holds @s. */
static int disk_has(const char *s, bool *has)
{
	size_t len = vm->disk_size;
	char *buf = malloc(len);
	ssize_t n;

	if (!buf)
		return -1;
	n = pread(vm->disk_fd, buf, len, 0);
	*has = n == (ssize_t)len && memmem(buf, len, s, strlen(s));
	free(buf);
	return n == (ssize_t)len ? 0 : -1;
}

static int t_disk_reverted(void)
{
	struct vmm_req q;
	struct vmm_resp r;
	char *argv[] = { "sh", "-c", DISK_SECRET_CMD, NULL };
	bool has;
	int ret;

	CHECK(vm->disk_fd >= 0, "the VM has no disk (%s)", vm->o.disk ? vm->o.disk : "none");
	CHECK(!disk_has(disk_secret, &has) && !has, "the secret is on the disk before the request");
	/* Without the reset, to see the write reach the disk file first. */
	vm->snapshotted = false;
	vm->o.no_snapshot = true;
	q = (struct vmm_req){ .argc = 3, .argv = argv, .timeout_ms = 60000 };
	ret = vmm_request(vm, &q, &r);
	vm->snapshotted = true;
	vm->o.no_snapshot = false;
	vm->ready = true;
	CHECK(!ret && r.outcome == VMM_OK && WIFEXITED(r.wait_status) &&
	      !WEXITSTATUS(r.wait_status) && r.out && !strcmp(r.out, DISK_HELLO),
	      "request: %s %s, status %#x, stdout '%s', stderr '%s'", vmm_error(vm), r.why,
	      r.wait_status, r.out ? r.out : "", r.err ? r.err : "");
	vmm_resp_free(&r);
	CHECK(!disk_has(disk_secret, &has) && has,
	      "the guest's write never reached the disk file: the checks below prove nothing");
	CHECK(!vmm_reset(vm, NULL), "reset: %s", vmm_error(vm));
	CHECK(!disk_has(disk_secret, &has) && !has, "the secret survived the reset on the disk");
	/* Dropping the page cache makes the guest read the disk itself. */
	CHECK(!sh_ok("echo 3 > /proc/sys/vm/drop_caches; test ! -e /disk/new && cat /disk/hello",
		     DISK_HELLO), "the request after the reset saw the file");
	/* The same through two ordinary requests, each reset after. */
	CHECK(!sh_ok("echo two > /disk/two && sync && echo 3 > /proc/sys/vm/drop_caches && "
		     "cat /disk/two", "two\n"), "writing a file on the disk");
	CHECK(!sh_ok("echo 3 > /proc/sys/vm/drop_caches; ls /disk | grep -vx lost+found",
		     "hello\n"), "the next request saw the last one's file");
	return 0;
}

static int msr_of(const struct vmm_vcpu_state *s, uint32_t idx, uint64_t *v)
{
	for (uint32_t i = 0; i < s->nr_msrs; i++)
		if (s->msrs[i].index == idx) {
			*v = s->msrs[i].data;
			return 0;
		}
	return -1;
}

/*
 * KVM on AMD keeps only the low 32 bits of SYSENTER_ESP/EIP written by the
 * host for a guest with AMD's CPUID (SYSENTER does not exist in AMD's long
 * mode, and Linux's 64-bit value is never used there).
 */
static bool sysenter_truncated(uint32_t idx, uint64_t snap, uint64_t now)
{
	return vm->amd && (idx == 0x175 || idx == 0x176) && now == (uint32_t)snap;
}

static int t_vcpu_state_equals_snapshot(void)
{
	struct vmm_state *now = calloc(1, sizeof(*now));
	const struct vmm_vcpu_state *a = &vm->snap->vcpu[0], *b;
	static const uint32_t sample[] = {
		0xc0000080,	/* EFER */
		0xc0000081, 0xc0000082, 0xc0000084,	/* STAR, LSTAR, SFMASK */
		0xc0000100, 0xc0000102,	/* FS base, kernel GS base */
		0x174, 0x175, 0x176,	/* SYSENTER */
		0x277,			/* PAT */
		0x4b564d01,		/* kvmclock: system time */
	};
	struct vmm_resp r;
	unsigned int cmp = 0;

	CHECK(now, "calloc");
	CHECK(sh(&r, "echo $$; cat /proc/cpuinfo >/dev/null") == 0, "request");
	vmm_resp_free(&r);
	CHECK(!vmm_state_save(vm, now), "save: %s", vmm_error(vm));
	b = &now->vcpu[0];
	CHECK(!memcmp(&a->regs, &b->regs, sizeof(a->regs)),
	      "regs: rip %llx vs %llx, rsp %llx vs %llx", (unsigned long long)a->regs.rip,
	      (unsigned long long)b->regs.rip, (unsigned long long)a->regs.rsp,
	      (unsigned long long)b->regs.rsp);
	CHECK(a->sregs.cr0 == b->sregs.cr0 && a->sregs.cr3 == b->sregs.cr3 &&
	      a->sregs.cr4 == b->sregs.cr4 && a->sregs.efer == b->sregs.efer &&
	      a->sregs.apic_base == b->sregs.apic_base &&
	      !memcmp(&a->sregs.cs, &b->sregs.cs, sizeof(a->sregs.cs)) &&
	      !memcmp(&a->sregs.gdt, &b->sregs.gdt, sizeof(a->sregs.gdt)),
	      "sregs: cr3 %llx vs %llx", (unsigned long long)a->sregs.cr3,
	      (unsigned long long)b->sregs.cr3);
	CHECK(!memcmp(&a->xcrs, &b->xcrs, sizeof(a->xcrs)), "xcrs");
	CHECK(!memcmp(&a->dregs, &b->dregs, sizeof(a->dregs)), "debug registers");
	CHECK(a->mp.mp_state == b->mp.mp_state, "mp_state %u vs %u", a->mp.mp_state, b->mp.mp_state);
	for (size_t i = 0; i < sizeof(sample) / sizeof(sample[0]); i++) {
		uint64_t va, vb = 0;

		if (msr_of(a, sample[i], &va))
			continue;
		CHECK(!msr_of(b, sample[i], &vb) && (va == vb || sysenter_truncated(sample[i], va, vb)),
		      "MSR %#x: %#llx vs %#llx",
		      sample[i], (unsigned long long)va, (unsigned long long)vb);
		cmp++;
	}
	CHECK(cmp >= 8, "only %u of the sampled MSRs are saved", cmp);
	/* The whole saved list, except the clocks that must move on. */
	for (uint32_t i = 0; i < a->nr_msrs; i++) {
		uint64_t vb = 0;
		uint32_t idx = a->msrs[i].index;

		/* TSC, its deadline and adjust, Hyper-V's reference counter */
		if (idx == 0x10 || idx == 0x6e0 || idx == 0x3b || idx == 0x40000020)
			continue;
		CHECK(!msr_of(b, idx, &vb) &&
		      (vb == a->msrs[i].data || sysenter_truncated(idx, a->msrs[i].data, vb)),
		      "MSR %#x: %#llx vs %#llx",
		      idx, (unsigned long long)a->msrs[i].data, (unsigned long long)vb);
	}
	printf("# %u MSRs saved and restored, %u sampled by name\n", a->nr_msrs, cmp);
	free(now);
	return 0;
}

static int t_clock_monotonic(void)
{
	int64_t last_mono = 0, last_real = 0;

	for (int i = 0; i < 5; i++) {
		struct vmm_resp r;

		CHECK(sh(&r, "true") == 0, "request %d", i);
		CHECK(r.guest_mono_ns > last_mono && r.guest_real_ns > last_real,
		      "request %d: guest clock went back: mono %lld after %lld, real %lld after %lld",
		      i, (long long)r.guest_mono_ns, (long long)last_mono,
		      (long long)r.guest_real_ns, (long long)last_real);
		last_mono = r.guest_mono_ns;
		last_real = r.guest_real_ns;
		vmm_resp_free(&r);
		usleep(20000);
	}
	return 0;
}

static int expect_bad_then_ok(const char *what, enum vmm_outcome want, unsigned int timeout_ms,
			      char *const argv[])
{
	struct vmm_req q;
	struct vmm_resp r;
	int argc = 0;

	while (argv[argc])
		argc++;
	q = (struct vmm_req){ .argc = argc, .argv = argv, .timeout_ms = timeout_ms };
	CHECK(!vmm_request(vm, &q, &r), "%s: %s", what, vmm_error(vm));
	CHECK(r.outcome == want, "%s: outcome %d (%s), want %d; stdout '%s'", what, r.outcome,
	      r.why, want, r.out ? r.out : "");
	printf("# %s: %s; reset %llu us, %llu pages\n", what, r.why,
	       (unsigned long long)r.reset_us, (unsigned long long)r.reverted_pages);
	vmm_resp_free(&r);
	CHECK(!sh_ok("echo alive", "alive\n"), "the request after '%s'", what);
	return 0;
}

static int t_guest_panic(void)
{
	char *argv[] = { "sh", "-c", "echo c > /proc/sysrq-trigger; sleep 100", NULL };

	return expect_bad_then_ok("kernel panic", VMM_CRASH, 120000, argv);
}

static int t_triple_fault(void)
{
	char *argv[] = { "vmreset-guest", "triple", NULL };

	return expect_bad_then_ok("triple fault", VMM_CRASH, 120000, argv);
}

static int t_kbd_reset(void)
{
	char *argv[] = { "vmreset-guest", "kbdreset", NULL };

	return expect_bad_then_ok("i8042 reset", VMM_CRASH, 120000, argv);
}

static int t_loop_forever(void)
{
	char *argv[] = { "sh", "-c", "while :; do :; done", NULL };

	return expect_bad_then_ok("endless loop", VMM_TIMEOUT, 3000, argv);
}

static int t_kernel_hang(void)
{
	/* A spinning kernel thread with interrupts off would need a module;
	 * a user spinner at the highest priority starves everything else. */
	char *argv[] = { "sh", "-c", "vmreset-guest rtspin", NULL };

	return expect_bad_then_ok("real-time spinner", VMM_TIMEOUT, 3000, argv);
}

static int t_scribble_all_ram(void)
{
	struct vmm_resp r;
	uint64_t pages;

	/* The guest fills its memory... */
	CHECK(!req_run(&r, 300000, NULL, 0, "vmreset-guest", "hog", NULL), "hog");
	printf("# hog: %s, %llu pages reverted\n", r.out ? r.out : r.why,
	       (unsigned long long)r.reverted_pages);
	CHECK(r.reverted_pages > (vm->mem_size >> 12) / 2,
	      "only %llu pages reverted after filling memory", (unsigned long long)r.reverted_pages);
	vmm_resp_free(&r);
	CHECK(!sh_ok("echo alive", "alive\n"), "after the hog");
	/* ...and every byte of RAM is overwritten, the way a broken kernel would. */
	memset(vm->ram, 0xcc, vm->mem_size);
	CHECK(!vmm_reset(vm, &pages), "reset: %s", vmm_error(vm));
	CHECK(pages >= (vm->mem_size >> 12) - 16, "%llu pages reverted of %llu",
	      (unsigned long long)pages, (unsigned long long)(vm->mem_size >> 12));
	CHECK(!sh_ok("echo alive", "alive\n"), "after overwriting all RAM");
	return 0;
}

#endif /* !VMM_TEST_NO_RESET */

#ifndef VMM_TEST_NO_RESET
static int meminfo(const char *key, long *kb)
{
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");

	*kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':')
			*kb = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return *kb < 0 ? -1 : 0;
}

static int t_thousand_requests(void)
{
	long free0, free1, slab0, slab1;
	struct vmreset_stats s0, s1;
	uint64_t t0, t1;

	for (int i = 0; i < 20; i++)
		CHECK(!sh_ok("echo $((1+1))", "2\n"), "warm-up %d", i);
	CHECK(!meminfo("MemFree", &free0) && !meminfo("Slab", &slab0), "meminfo");
	CHECK(!vmreset_stats(vm->ram_fd, &s0), "stats");
	t0 = vmm_now_us();
	for (int i = 0; i < 1000; i++)
		CHECK(!sh_ok("echo $((1+1))", "2\n"), "request %d", i);
	t1 = vmm_now_us();
	CHECK(!meminfo("MemFree", &free1) && !meminfo("Slab", &slab1), "meminfo");
	CHECK(!vmreset_stats(vm->ram_fd, &s1), "stats");
	printf("# 1000 requests in %.1f s (%.1f ms each); MemFree %ld -> %ld kB, Slab %ld -> %ld kB, "
	       "resident %llu -> %llu, undo %llu -> %llu pages\n", (t1 - t0) / 1e6,
	       (t1 - t0) / 1000.0 / 1000, free0, free1, slab0, slab1,
	       (unsigned long long)s0.resident_pages, (unsigned long long)s1.resident_pages,
	       (unsigned long long)s0.undo_pages, (unsigned long long)s1.undo_pages);
	CHECK(free1 > free0 - 8192, "MemFree fell by %ld kB", free0 - free1);
	CHECK(slab1 < slab0 + 4096, "Slab grew by %ld kB", slab1 - slab0);
	CHECK(s1.resident_pages <= s0.resident_pages + 64, "vmresetfs resident pages grew");
	CHECK(s1.undo_pages <= s0.undo_pages + 64, "vmresetfs undo pages grew");
	return 0;
}

static int t_preserved_counter(void)
{
	uint64_t *keep = (uint64_t *)(vm->ram + vm->keep_gpa), start = *keep;

	CHECK(vm->keep_gpa, "no preserved range");
	for (int i = 1; i <= 4; i++) {
		char want[32];

		snprintf(want, sizeof(want), "%llu\n", (unsigned long long)(start + i));
		/* The counter grows; the file next to it never survives. */
		CHECK(!sh_ok("test ! -e /tmp/count && vmreset-guest keep-inc > /tmp/count && cat /tmp/count",
			     want), "request %d", i);
		CHECK(*keep == start + i, "the host sees %llu in the preserved page after the reset, want %llu",
		      (unsigned long long)*keep, (unsigned long long)(start + i));
	}
	return 0;
}

/*
 * Save the ready snapshot to vmreset-store and start a VM from it in
 * another process (a child: its own KVM VM, RAM and disk files), which
 * serves requests without booting: restore elsewhere, as on another host.
 */
static struct vmm_opts opts;

static int restored_child(const struct vmm_store *s)
{
	char err[512];
	uint64_t t0 = vmm_now_us();
	struct vmm *v = vmm_create(&opts, err, sizeof(err));

	if (!v) {
		printf("# child: %s\n", err);
		return 10;
	}
	if (vmm_restore(v, s, "ready")) {
		printf("# child: restore: %s\n", vmm_error(v));
		return 11;
	}
	printf("# restored in %.1f ms (a boot took %.1f s)\n", (vmm_now_us() - t0) / 1000.0,
	       vm->boot_us / 1e6);
	vm = v;		/* the child's copy of the global: sh_ok() uses it */
	if (sh_ok("cat /disk/hello && test ! -e /tmp/r && echo restored > /tmp/r && cat /tmp/r",
		  DISK_HELLO "restored\n") ||
	    sh_ok("test ! -e /tmp/r && echo clean", "clean\n") ||
	    sh_ok("vmreset-guest keep-inc >/dev/null && echo ok", "ok\n"))
		return 12;
	vmm_destroy(v);
	return 0;
}

static int t_restore_in_new_process(void)
{
	const char *sdir = "/tmp/vmm-store", *key = "/tmp/vmm-store.key";
	struct vmm_store s = { .url = sdir, .key = key };
	int status;
	pid_t pid;

	CHECK(system("rm -rf /tmp/vmm-store /tmp/vmm-store.key && "
		     "vmreset-store init /tmp/vmm-store >/dev/null && "
		     "vmreset-store keygen /tmp/vmm-store.key >/dev/null") == 0,
	      "vmreset-store init/keygen failed");
	CHECK(!vmm_save(vm, &s, "ready"), "save: %s", vmm_error(vm));
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (!pid)
		_exit(restored_child(&s));
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the restored VM failed: status %#x",
	      status);
	/* This VM is untouched by the other. */
	CHECK(!sh_ok("test ! -e /tmp/r && cat /disk/hello", DISK_HELLO), "the original VM after");
	/* And the CLI's --restore, a program of its own. */
	char cmd[1024], out[256] = "";
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "vmreset-vmm -d %s -k %s -i %s %s%s --store %s --key %s "
		 "--restore ready run -- sh -c 'cat /disk/hello' 2>/tmp/vmm-restore.err",
		 dir, opts.kernel, opts.initrd, opts.disk ? "--disk " : "", opts.disk ? opts.disk : "",
		 sdir, key);
	p = popen(cmd, "r");
	CHECK(p, "popen");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	status = pclose(p);
	if (status)
		system("sed 's/^/# /' /tmp/vmm-restore.err");
	CHECK(status == 0 && !strcmp(out, DISK_HELLO), "vmreset-vmm --restore: status %#x, stdout '%s'",
	      status, out);
	system("rm -rf /tmp/vmm-store /tmp/vmm-store.key");
	return 0;
}

static int t_transaction_retried(void)
{
	/* Succeeds only once the host-side counter reached 3: the 4th attempt. */
	char *argv[] = { "sh", "-c", "n=$(vmreset-guest counter); echo \"attempt $n\"; "
			 "echo scratch > /tmp/t; [ \"$n\" -ge 3 ] && echo ok", NULL };
	struct vmm_req q = { .argc = 3, .argv = argv };
	struct vmm_txn t = { .retry = 5, .timeout_ms = 60000, .success_exit = 0 };
	struct vmm_resp r;
	unsigned int attempts;
	bool ok;

	vm->host_counter = 0;
	CHECK(!vmm_transact(vm, &t, &q, &r, &attempts, &ok), "%s", vmm_error(vm));
	CHECK(ok && attempts == 4, "ok %d after %u attempts, stdout '%s'", ok, attempts, r.out);
	CHECK(r.out && !strcmp(r.out, "attempt 3\nok\n"), "stdout '%s'", r.out);
	vmm_resp_free(&r);
	/* Too few retries: the transaction fails, and says how often it tried. */
	vm->host_counter = 0;
	t.retry = 1;
	CHECK(!vmm_transact(vm, &t, &q, &r, &attempts, &ok), "%s", vmm_error(vm));
	CHECK(!ok && attempts == 2, "ok %d after %u attempts", ok, attempts);
	vmm_resp_free(&r);
	CHECK(vm->host_counter == 2, "host counter %u", vm->host_counter);
	CHECK(!sh_ok("test ! -e /tmp/t && echo clean", "clean\n"), "scratch file survived");
	return 0;
}

#endif /* !VMM_TEST_NO_RESET */

#ifdef VMM_TEST_NO_RESET
static int t_sequential_requests(void)
{
	/* Without a reset, requests share the VM: the second sees the first's file. */
	CHECK(!sh_ok("echo one > /tmp/seq && cat /tmp/seq", "one\n"), "first");
	CHECK(!sh_ok("cat /tmp/seq", "one\n"), "second");
	return 0;
}

static int t_preserve_request(void)
{
	struct vmreset_range *r = NULL;
	long n = vmreset_preserve_list(vm->ram_fd, &r);
	bool found = false;

	CHECK(n >= 0, "preserve list: %s", strerror((int)-n));
	for (long i = 0; i < n; i++)
		if (r[i].offset == vm->keep_gpa && r[i].length == vm->o.keep_size)
			found = true;
	free(r);
	CHECK(found, "the agent's PRESERVE doorbell did not reach the RAM file (%ld ranges)", n);
	/* A request cannot preserve anything once the VM is ready. */
	vm->mbox->preserve_gpa = 0x100000;
	vm->mbox->preserve_len = 4096;
	CHECK(!sh_ok("vmreset-guest keep-inc >/dev/null && vmreset-guest keep-get", "1\n"),
	      "the preserved page counts");
	CHECK(!sh_ok("vmreset-guest keep-inc", "2\n"), "again");
	CHECK(*(uint64_t *)(vm->ram + vm->keep_gpa) == 2, "the host sees %llu in the preserved page",
	      (unsigned long long)*(uint64_t *)(vm->ram + vm->keep_gpa));
	return 0;
}

static int t_host_counter(void)
{
	vm->host_counter = 5;
	CHECK(!sh_ok("vmreset-guest counter; vmreset-guest counter", "5\n6\n"), "counter");
	CHECK(vm->host_counter == 7, "host counter %u", vm->host_counter);
	return 0;
}

static int t_timeout_reported(void)
{
	char *argv[] = { "sh", "-c", "while :; do :; done", NULL };
	struct vmm_req q = { .argc = 3, .argv = argv, .timeout_ms = 3000 };
	struct vmm_resp r;

	CHECK(!vmm_request(vm, &q, &r), "%s", vmm_error(vm));
	CHECK(r.outcome == VMM_TIMEOUT, "outcome %d: %s", r.outcome, r.why);
	CHECK(!vm->ready, "without a reset the VM must not serve after a timeout");
	CHECK(vmm_request(vm, &q, &r) == -EINVAL, "a request to a spent VM");
	printf("# %s\n", vmm_error(vm));
	return 0;
}

#endif

struct tcase {
	const char *name;
	int (*fn)(void);
	bool named_only;	/* runs only when -t names it */
};

#ifndef VMM_TEST_NO_RESET
static void dump_state(const char *what, const struct vmm_vcpu_state *a)
{
	uint64_t kgs = 0;

	for (uint32_t i = 0; i < a->nr_msrs; i++)
		if (a->msrs[i].index == 0xc0000102)
			kgs = a->msrs[i].data;
	printf("# %s: rip %llx cs %x/%d ss %x gs.base %llx fs.base %llx kgs %llx cr3 %llx rflags %llx "
	       "mp %u nmsrs %u irqinj %u/%u nmi %u/%u/%u shadow %u bitmap %llx\n", what,
	       (unsigned long long)a->regs.rip, a->sregs.cs.selector, a->sregs.cs.dpl, a->sregs.ss.selector,
	       (unsigned long long)a->sregs.gs.base, (unsigned long long)a->sregs.fs.base,
	       (unsigned long long)kgs, (unsigned long long)a->sregs.cr3,
	       (unsigned long long)a->regs.rflags, a->mp.mp_state, a->nr_msrs,
	       a->events.interrupt.injected, a->events.interrupt.nr, a->events.nmi.injected,
	       a->events.nmi.pending, a->events.nmi.masked, a->events.interrupt.shadow,
	       (unsigned long long)a->sregs.interrupt_bitmap[0]);
}

static int t_reset_then_echo(void)
{
	struct vmm_state *now = calloc(1, sizeof(*now));

	dump_state("snapshot", &vm->snap->vcpu[0]);
	CHECK(!vmm_reset(vm, NULL), "reset: %s", vmm_error(vm));
	CHECK(!vmm_state_save(vm, now), "save");
	dump_state("after reset", &now->vcpu[0]);
	for (uint32_t i = 0; i < now->vcpu[0].nr_msrs; i++)
		if (now->vcpu[0].msrs[i].data != vm->snap->vcpu[0].msrs[i].data)
			printf("# msr %x: %llx -> %llx\n", now->vcpu[0].msrs[i].index,
			       (unsigned long long)vm->snap->vcpu[0].msrs[i].data,
			       (unsigned long long)now->vcpu[0].msrs[i].data);
	printf("# lapic %s, xsave %s, events %s\n",
	       memcmp(&now->vcpu[0].lapic, &vm->snap->vcpu[0].lapic, sizeof(now->vcpu[0].lapic)) ? "differs" : "same",
	       memcmp(now->vcpu[0].xsave, vm->snap->vcpu[0].xsave, now->vcpu[0].xsave_size) ? "differs" : "same",
	       memcmp(&now->vcpu[0].events, &vm->snap->vcpu[0].events, sizeof(now->vcpu[0].events)) ? "differs" : "same");
	CHECK(!sh_ok("echo 1", "1\n"), "echo after a bare reset");
	CHECK(!sh_ok("echo 2", "2\n"), "echo after a second reset");
	CHECK(!sh_ok("echo 3; ls /proc >/dev/null", "3\n"), "echo after a third reset");
	return 0;
}

#endif

static const char *bisect_masks;

/*
 * Names the kernel addresses in @msg (a stuck guest's RIP and stack) from
 * this kernel's /proc/kallsyms: the guest runs the same kernel, booted
 * with nokaslr, so only this kernel's KASLR offset differs.
 */
static void symbolize(const char *msg)
{
	FILE *f = fopen("/proc/kallsyms", "re");
	unsigned long long text = 0, a, *addr = NULL;
	char t, name[256], **names = NULL;
	size_t n = 0, cap = 0;
	const char *p;

	if (!f)
		return;
	while (fscanf(f, "%llx %c %255s%*[^\n]", &a, &t, name) == 3) {
		if (t != 't' && t != 'T')
			continue;
		if (!strcmp(name, "_text"))
			text = a;
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			addr = realloc(addr, cap * sizeof(*addr));
			names = realloc(names, cap * sizeof(*names));
			if (!addr || !names)
				return;
		}
		addr[n] = a;
		names[n++] = strdup(name);
	}
	fclose(f);
	if (!text)
		return;
	for (p = msg; (p = strstr(p, "0xffffffff8")); p++) {
		unsigned long long v = strtoull(p, NULL, 16) - 0xffffffff81000000ULL + text;
		size_t best = n;

		for (size_t i = 0; i < n; i++)
			if (addr[i] <= v && (best == n || addr[i] > addr[best]))
				best = i;
		if (best < n)
			printf("#   %.18s %s+%#llx\n", p, names[best], v - addr[best]);
	}
}

/* -L M1:M2:...: reset with each skip mask in turn, then one echo each. */
static int t_bisect(void)
{
	char *list = strdup(bisect_masks ? bisect_masks : "0"), *save = NULL;

	for (char *m = strtok_r(list, ":", &save); m; m = strtok_r(NULL, ":", &save)) {
		struct vmm_resp r;
		struct vmm_req q;
		char *argv[] = { "echo", "bisect", NULL };
		char tail[1024];
		int ret;

		vm->load_skip = strtoul(m, NULL, 0);
		ret = vmm_reset(vm, NULL);
		q = (struct vmm_req){ .argc = 2, .argv = argv, .timeout_ms = 20000 };
		/* vmm_request resets after; the mask holds for that one too. */
		if (!ret)
			ret = vmm_request(vm, &q, &r);
		printf("# bisect skip %#x: ret %d outcome %d why '%s' out '%s'\n", vm->load_skip, ret,
		       ret ? -1 : (int)r.outcome, ret ? vmm_error(vm) : r.why, (!ret && r.out) ? r.out : "");
		if (ret || r.outcome != VMM_OK)
			printf("# console: %s\n", vmm_console_tail(vm, tail, sizeof(tail)));
		if (!ret)
			vmm_resp_free(&r);
		vm->ready = true;
	}
	vm->load_skip = 0;
	free(list);
	return 0;
}

static const struct tcase cases[] = {
	{ "bisect", t_bisect, true },
#ifndef VMM_TEST_NO_RESET
	{ "reset_then_echo", t_reset_then_echo, false },
	{ "echo", t_echo, false },
	{ "stdin_exit_status", t_stdin_exit_status, false },
	{ "no_files_from_last_request", t_no_files_from_last_request, false },
	{ "no_processes_from_last_request", t_no_processes_from_last_request, false },
	{ "no_memory_from_last_request", t_no_memory_from_last_request, false },
	{ "disk_reverted", t_disk_reverted, false },
	{ "vcpu_state_equals_snapshot", t_vcpu_state_equals_snapshot, false },
	{ "clock_monotonic", t_clock_monotonic, false },
	{ "guest_panic", t_guest_panic, false },
	{ "triple_fault", t_triple_fault, false },
	{ "kbd_reset", t_kbd_reset, false },
	{ "loop_forever", t_loop_forever, false },
	{ "rt_spinner", t_kernel_hang, false },
	{ "scribble_all_ram", t_scribble_all_ram, false },
	{ "preserved_counter", t_preserved_counter, false },
	{ "restore_in_new_process", t_restore_in_new_process, false },
	{ "transaction_retried", t_transaction_retried, false },
	{ "thousand_requests", t_thousand_requests, false },
#else
	{ "echo", t_echo, false },
	{ "stdin_exit_status", t_stdin_exit_status, false },
	{ "sequential_requests", t_sequential_requests, false },
	{ "preserve_request", t_preserve_request, false },
	{ "host_counter", t_host_counter, false },
	{ "timeout_reported", t_timeout_reported, false },	/* last: it spends the VM */
#endif
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

int main(int argc, char **argv)
{
	const char *only[32];
	int nonly = 0, n = 0, fails = 0, c;
	struct vmm_opts o = {
		.kernel = getenv("VMM_KERNEL") ? getenv("VMM_KERNEL") : "/vmm/vmlinuz",
		.initrd = getenv("VMM_INITRD") ? getenv("VMM_INITRD") : "/vmm/guest.cpio.gz",
		.mem_size = 256ULL << 20, .cpus = 1, .keep_size = 64 << 10,
		.console_fd = getenv("VMM_CONSOLE") ? 2 : -1,
		.cmdline = getenv("VMM_APPEND"),
		/* The disk scripts/vm.sh puts there (vmm/mkdisk.sh); VMM_DISK= for none. */
		.disk = getenv("VMM_DISK") ? (*getenv("VMM_DISK") ? getenv("VMM_DISK") : NULL) :
			"/vmm/disk.img",
#ifdef VMM_TEST_NO_RESET
		.no_snapshot = true,
#endif
	};
	char err[512], tail[2048];
	int boot_timeout = 600000;
	uint64_t t0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "t:la:vL:T:")) != -1) {
		if (c == 'a') {
			o.cmdline = optarg;
		} else if (c == 'v') {
			o.console_fd = 2;
		} else if (c == 'T') {
			boot_timeout = atoi(optarg);
		} else if (c == 'L') {
			/* Bisecting the state load needs the snapshot. */
			bisect_masks = optarg;
			o.no_snapshot = false;
		} else if (c == 't' && nonly < 32) {
			only[nonly++] = optarg;
		} else if (c == 'l') {
			for (size_t i = 0; i < NCASES; i++)
				printf("%s\n", cases[i].name);
			return 0;
		} else {
			fprintf(stderr, "usage: %s [-t CASE]... [-l] [-a ARGS] [-v] [-T MS] [-L MASK:...]\n", argv[0]);
			return 2;
		}
	}
	printf("TAP version 13\n");
	for (size_t i = 0; i < NCASES; i++)
		for (int j = 0; j <= nonly; j++)
			if ((!nonly && !cases[i].named_only) ||
			    (j < nonly && !strcmp(only[j], cases[i].name))) {
				n++;
				break;
			}
	printf("1..%d\n", n + 1);
	strcpy(dir, "/tmp/vmmXXXXXX");
	if (!mkdtemp(dir) || mount("none", dir, "vmresetfs", 0, "size=2g")) {
		printf("not ok 1 boot_to_ready # mount vmresetfs on %s: %s\n", dir, strerror(errno));
		return 1;
	}
	o.dir = dir;
#ifndef VMM_TEST_NO_RESET
	opts = o;
#endif
	t0 = vmm_now_us();
	/*
	 * Under nested emulation the guest kernel sometimes takes an interrupt
	 * with interrupts off and deadlocks in its own handler (docs/vmm.md,
	 * "Boot hangs"): the VMM reports that as EDEADLK, and we boot again.
	 */
	for (int attempt = 1;; attempt++) {
		int ret = -EINVAL;

		vm = vmm_create(&o, err, sizeof(err));
		if (vm)
			ret = vmm_boot(vm, boot_timeout);
		if (!ret)
			break;
		printf("# boot attempt %d: %s\n", attempt, vm ? vmm_error(vm) : err);
		if (vm)
			symbolize(vmm_error(vm));
		if (ret != -EDEADLK || attempt == 3) {
			printf("not ok 1 boot_to_ready\n");
			return 1;
		}
		vmm_destroy(vm);
	}
	printf("# ready in %.2f s (guest boot %.2f s, snapshot %.1f ms)\n",
	       (vmm_now_us() - t0) / 1e6, vm->boot_us / 1e6, vm->snapshot_us / 1000.0);
	printf("# console: %s\n", vmm_console_tail(vm, tail, sizeof(tail)));
	printf("ok 1 boot_to_ready\n");
	n = 1;
	for (size_t i = 0; i < NCASES; i++) {
		bool run = !nonly && !cases[i].named_only;
		int before = failed_checks, rc;
		uint64_t t = vmm_now_us();

		for (int j = 0; j < nonly; j++)
			run |= !strcmp(only[j], cases[i].name);
		if (!run)
			continue;
		n++;
		if (!vm->ready) {
			printf("not ok %d %s # the VM is gone\n", n, cases[i].name);
			fails++;
			continue;
		}
		rc = cases[i].fn();
		if (rc || failed_checks != before) {
			printf("# console: %s\n", vmm_console_tail(vm, tail, sizeof(tail)));
			printf("not ok %d %s\n", n, cases[i].name);
			fails++;
		} else {
			printf("ok %d %s # %.1f s\n", n, cases[i].name, (vmm_now_us() - t) / 1e6);
		}
	}
	vmm_destroy(vm);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return fails ? 1 : 0;
}
