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
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <json-c/json.h>
#include <regex.h>
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

/* Every vCPU's state now equals the ready snapshot's (between requests). */
static int vcpus_equal_snapshot(struct vmm *v)
{
	struct vmm_state *now = calloc(1, sizeof(*now));
	static const uint32_t sample[] = {
		0xc0000080,	/* EFER */
		0xc0000081, 0xc0000082, 0xc0000084,	/* STAR, LSTAR, SFMASK */
		0xc0000100, 0xc0000102,	/* FS base, kernel GS base */
		0x174, 0x175, 0x176,	/* SYSENTER */
		0x277,			/* PAT */
		0x4b564d01,		/* kvmclock: system time */
	};
	int ret = -1;

	CHECK(now, "calloc");
	if (vmm_state_save(v, now)) {
		printf("# save: %s\n", vmm_error(v));
		goto out;
	}
	for (unsigned int c = 0; c < v->nr_vcpus; c++) {
		const struct vmm_vcpu_state *a = &v->snap->vcpu[c], *b = &now->vcpu[c];
		unsigned int cmp = 0;

#define VCHECK(cond, ...) do { if (!(cond)) { printf("# vCPU %u: %s: ", c, #cond); \
		printf(__VA_ARGS__); printf("\n"); failed_checks++; goto out; } } while (0)
		VCHECK(!memcmp(&a->regs, &b->regs, sizeof(a->regs)),
		       "regs: rip %llx vs %llx, rsp %llx vs %llx", (unsigned long long)a->regs.rip,
		       (unsigned long long)b->regs.rip, (unsigned long long)a->regs.rsp,
		       (unsigned long long)b->regs.rsp);
		VCHECK(a->sregs.cr0 == b->sregs.cr0 && a->sregs.cr3 == b->sregs.cr3 &&
		       a->sregs.cr4 == b->sregs.cr4 && a->sregs.efer == b->sregs.efer &&
		       a->sregs.apic_base == b->sregs.apic_base &&
		       !memcmp(&a->sregs.cs, &b->sregs.cs, sizeof(a->sregs.cs)) &&
		       !memcmp(&a->sregs.gdt, &b->sregs.gdt, sizeof(a->sregs.gdt)),
		       "sregs: cr3 %llx vs %llx", (unsigned long long)a->sregs.cr3,
		       (unsigned long long)b->sregs.cr3);
		VCHECK(!memcmp(&a->xcrs, &b->xcrs, sizeof(a->xcrs)), "xcrs");
		VCHECK(!memcmp(&a->dregs, &b->dregs, sizeof(a->dregs)), "debug registers");
		VCHECK(a->mp.mp_state == b->mp.mp_state, "mp_state %u vs %u", a->mp.mp_state,
		       b->mp.mp_state);
		for (size_t i = 0; i < sizeof(sample) / sizeof(sample[0]); i++) {
			uint64_t va, vb = 0;

			if (msr_of(a, sample[i], &va))
				continue;
			VCHECK(!msr_of(b, sample[i], &vb) &&
			       (va == vb || sysenter_truncated(sample[i], va, vb)),
			       "MSR %#x: %#llx vs %#llx",
			       sample[i], (unsigned long long)va, (unsigned long long)vb);
			cmp++;
		}
		VCHECK(cmp >= 8, "only %u of the sampled MSRs are saved", cmp);
		/* The whole saved list, except the clocks that must move on. */
		for (uint32_t i = 0; i < a->nr_msrs; i++) {
			uint64_t vb = 0;
			uint32_t idx = a->msrs[i].index;

			/* TSC, its deadline and adjust, Hyper-V's VP runtime and reference counter */
			if (idx == 0x10 || idx == 0x6e0 || idx == 0x3b || idx == 0x40000010 ||
			    idx == 0x40000020)
				continue;
			VCHECK(!msr_of(b, idx, &vb) &&
			       (vb == a->msrs[i].data || sysenter_truncated(idx, a->msrs[i].data, vb)),
			       "MSR %#x: %#llx vs %#llx",
			       idx, (unsigned long long)a->msrs[i].data, (unsigned long long)vb);
		}
#undef VCHECK
		printf("# vCPU %u: %u MSRs saved and restored, %u sampled by name\n", c, a->nr_msrs, cmp);
	}
	ret = 0;
out:
	free(now);
	return ret;
}

static int t_vcpu_state_equals_snapshot(void)
{
	struct vmm_resp r;

	CHECK(sh(&r, "echo $$; cat /proc/cpuinfo >/dev/null") == 0, "request");
	vmm_resp_free(&r);
	return vcpus_equal_snapshot(vm);
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
	uint64_t pages, free_pages;

	/* What the guest has free at the snapshot... */
	CHECK(sh(&r, "sed -n 's/^MemFree: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo") == 0 && r.out,
	      "MemFree");
	free_pages = strtoull(r.out, NULL, 10) / 4;
	vmm_resp_free(&r);
	CHECK(free_pages > 1024, "the guest has only %llu pages free", (unsigned long long)free_pages);
	/* ...the guest fills (until the OOM killer stops it)... */
	CHECK(!req_run(&r, 300000, NULL, 0, "vmreset-guest", "hog", NULL), "hog");
	printf("# hog: %s, %llu pages reverted, %llu were free\n", r.out ? r.out : r.why,
	       (unsigned long long)r.reverted_pages, (unsigned long long)free_pages);
	CHECK(r.reverted_pages > free_pages * 3 / 4,
	      "only %llu pages reverted after filling memory (%llu free)",
	      (unsigned long long)r.reverted_pages, (unsigned long long)free_pages);
	vmm_resp_free(&r);
	CHECK(!sh_ok("echo alive", "alive\n"), "after the hog");
	/* ...and every byte of RAM is overwritten, the way a broken kernel would. */
	uint8_t *before = malloc(vm->mem_size);
	struct vmreset_stats st;
	uint64_t differ = 0, first = 0;

	CHECK(before, "malloc");
	/* Between requests RAM is the snapshot. */
	memcpy(before, vm->ram, vm->mem_size);
	memset(vm->ram, 0xcc, vm->mem_size);
	if (vmm_reset(vm, &pages)) {
		free(before);
		CHECK(0, "reset: %s", vmm_error(vm));
	}
	vmreset_stats(vm->ram_fd, &st);
	for (uint64_t off = 0; off < vm->mem_size; off += 4096) {
		if (off >= vm->keep_gpa && off < vm->keep_gpa + vm->o.keep_size)
			continue;	/* preserved: the 0xcc stays */
		if (memcmp(before + off, vm->ram + off, 4096) && !differ++)
			first = off;
	}
	free(before);
	printf("# all RAM overwritten: %llu pages reverted of %llu (%llu hot), %llu differ from the "
	       "snapshot (the first at %#llx)\n", (unsigned long long)pages,
	       (unsigned long long)(vm->mem_size >> 12), (unsigned long long)st.hot_pages,
	       (unsigned long long)differ, (unsigned long long)first);
	/* KVM writes the wall clock page when the MSRs are loaded. */
	CHECK(differ <= 2, "%llu pages are not the snapshot's after the reset", (unsigned long long)differ);
	CHECK(pages >= (vm->mem_size >> 12) / 2, "%llu pages reverted of %llu",
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

/* Where a request's time goes, with and without hot pages (named only). */
static int phases_of(const char *what, unsigned int mode, int n, char *const argv[])
{
	struct vmreset_hot_config c = { .flags = VMRESET_HOT_CFG_MODE, .mode = mode };
	uint64_t run = 0, qu = 0, rv = 0, ld = 0, rs = 0, pages = 0;
	int argc = 0;

	while (argv[argc])
		argc++;
	CHECK(!vmreset_hot_config(vm->ram_fd, &c), "HOT_CONFIG mode %u", mode);
	for (int i = 0; i < n + 5; i++) {
		struct vmm_req q = { .argc = argc, .argv = argv, .timeout_ms = 60000 };
		struct vmm_resp r;

		CHECK(!vmm_request(vm, &q, &r) && r.outcome == VMM_OK, "%s request %d: %s %s",
		      what, i, vmm_error(vm), r.why);
		vmm_resp_free(&r);
		if (i < 5)
			continue;	/* learning */
		run += r.run_us;
		qu += r.quiesce_us;
		rv += r.revert_us;
		ld += r.load_us;
		rs += r.reset_us;
		pages += r.reverted_pages;
	}
	c.flags = 0;
	vmreset_hot_config(vm->ram_fd, &c);
	printf("# %s, hot %s: per request run %.1f ms, reset %.2f ms (quiesce %.2f, revert %.2f, "
	       "load %.2f), %.0f pages reverted, %llu hot\n", what,
	       mode == VMRESET_HOT_LEARN ? "learn" : "off", run / 1e3 / n, rs / 1e3 / n,
	       qu / 1e3 / n, rv / 1e3 / n, ld / 1e3 / n, (double)pages / n,
	       (unsigned long long)c.hot_pages);
	return 0;
}

static int t_phases(void)
{
	char *echo[] = { "echo", "hi", NULL };
	char *sh2[] = { "sh", "-c", "echo $((1+1))", NULL };
	int ret = 0;

	ret |= phases_of("echo", VMRESET_HOT_OFF, 20, echo);
	ret |= phases_of("echo", VMRESET_HOT_LEARN, 20, echo);
	ret |= phases_of("sh -c", VMRESET_HOT_OFF, 20, sh2);
	ret |= phases_of("sh -c", VMRESET_HOT_LEARN, 20, sh2);
	return ret;
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

static int split_lines(char *buf, char **l, int max);
static int resp_is(const char *line, const char *outcome, int exit_status, const char *out,
		   const char *why_has, int attempts, const char *id);

/*
 * Save the ready snapshot to vmreset-store and start a VM from it in
 * another process, `vmreset-vmm --restore ... serve`, which serves without
 * booting: restore elsewhere, as on another host. Its transaction options
 * (--timeout, --retry, --success-match) are the requests' defaults.
 */
/*
 * Guest-declared preserved ranges (docs/vmm.md): a request asks by
 * hypercall (vmreset-guest hc-preserve, VMRESET_HC_PRESERVE) to keep a
 * range, the eBPF service records it, and vmreset-vmm drains it before the
 * reset. The range is the mailbox's last page: a guest writes only
 * reserved ranges through /dev/mem, and that page is used only by a
 * stderr over 252 KiB; the keep range would prove nothing, being
 * preserved already.
 */
#define HC_PAGE_OFF	(VMR_MBOX_SIZE - 4096)

/*
 * One request: the hypercalls in @hc (or none), then the page's first 8
 * bytes, a counter, incremented. Through the agent's own mapping of
 * /dev/mem (VMRESET_KEEP names the page): read(2) and write(2) of /dev/mem
 * stop at the end of RAM, below the mailbox, and busybox devmem maps it
 * uncached, which PAT refuses next to the agent's write-back mapping.
 */
static int hc_request(struct vmm_resp *r, const char *hc)
{
	char cmd[1024];
	int rc;

	snprintf(cmd, sizeof(cmd), "%s%sVMRESET_KEEP=%#llx vmreset-guest keep-inc", hc ? hc : "",
		 hc ? " && " : "", (unsigned long long)(vm->mbox_gpa + HC_PAGE_OFF));
	rc = sh(r, cmd);
	if (rc)
		printf("# '%s': exit %d, stdout '%s', stderr '%s'\n", cmd, rc, r->out ? r->out : "",
		       r->err ? r->err : "");
	return rc;
}

/* The counter as the guest reads it, compared with @want. */
static int hc_page_is(uint64_t want, const char *what)
{
	struct vmm_resp r;
	char cmd[160];
	int rc;

	snprintf(cmd, sizeof(cmd), "VMRESET_KEEP=%#llx vmreset-guest keep-get",
		 (unsigned long long)(vm->mbox_gpa + HC_PAGE_OFF));
	rc = sh(&r, cmd);
	if (rc || !r.out || strtoull(r.out, NULL, 10) != want) {
		printf("# %s: exit %d, the guest reads '%s' (want %llu); stderr '%s'\n", what, rc,
		       r.out ? r.out : "", (unsigned long long)want, r.err ? r.err : "");
		vmm_resp_free(&r);
		return -1;
	}
	vmm_resp_free(&r);
	return 0;
}

/* This process's VMs in `vmreset-hc -j status`: the sum of counter @name. */
static long long hc_status(const char *name)
{
	FILE *p = popen("vmreset-hc -j status 2>&1", "r");
	char buf[65536];
	size_t n = p ? fread(buf, 1, sizeof(buf) - 1, p) : 0;
	json_object *a, *v;
	long long sum = 0;

	if (!p || pclose(p))
		return -1;
	buf[n] = 0;
	a = json_tokener_parse(buf);
	if (!a || !json_object_is_type(a, json_type_array)) {
		printf("# vmreset-hc -j status: '%s'\n", buf);
		json_object_put(a);
		return -1;
	}
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *o = json_object_array_get_idx(a, i);

		if (json_object_object_get_ex(o, "pid", &v) && json_object_get_int64(v) == getpid() &&
		    json_object_object_get_ex(o, name, &v))
			sum += json_object_get_int64(v);
	}
	json_object_put(a);
	return sum;
}

static int t_hc_preserve(void)
{
	const uint64_t a = vm->mbox_gpa + HC_PAGE_OFF;
	char hc[256], hc_del[256], bad[512];
	uint64_t snap;
	struct vmm_resp r;
	int ret = -1;

	memcpy(&snap, vm->ram + a, 8);	/* between requests: the snapshot's */
	snprintf(hc, sizeof(hc), "vmreset-guest hc-preserve %#llx 0x1000", (unsigned long long)a);
	snprintf(hc_del, sizeof(hc_del), "vmreset-guest hc-preserve -d %#llx 0x1000", (unsigned long long)a);
	/* A page outside RAM (the module refuses it), one not page-aligned (BPF does). */
	snprintf(bad, sizeof(bad), "vmreset-guest hc-preserve 0x100000000 0x1000 && "
		 "vmreset-guest hc-preserve %#llx 0x1000", (unsigned long long)a + 8);
	/* The service's state is ours for this case (the test VM runs one test at a time). */
	if (vmm_hc_loaded())
		CHECK(system("vmreset-hc unload") == 0, "vmreset-hc unload of a service left loaded");

	/* No service: the hypercall reaches KVM (-1000), nothing is kept, nothing fails. */
	CHECK(hc_request(&r, hc) == 0 && r.preserve_applied == 0 &&
	      r.preserve_refused == 0, "hc-preserve without the service: stderr '%s'", r.err ? r.err : "");
	vmm_resp_free(&r);
	CHECK(!hc_page_is(snap, "without the service"), "the page was kept without the service");

	if (system("vmreset-hc load >/tmp/hc-load.log 2>&1")) {
		if (system("sed 's/^/# /' /tmp/hc-load.log")) {}
		CHECK(0, "vmreset-hc load");
	}
	CHECK(vmm_hc_loaded(), "vmreset-hc load pinned nothing");
	/* Kept: written by the request that declared it, read by the next. */
	if (hc_request(&r, hc) || r.preserve_applied != 1 || r.preserve_refused) {
		printf("# hc-preserve: applied %llu, refused %llu, stderr '%s'\n",
		       (unsigned long long)r.preserve_applied, (unsigned long long)r.preserve_refused,
		       r.err ? r.err : "");
		vmm_resp_free(&r);
		goto out;
	}
	vmm_resp_free(&r);
	if (hc_page_is(snap + 1, "after the reset that followed hc-preserve"))
		goto out;
	/* Still kept through the next reset: a write without a hypercall stays too. */
	if (hc_request(&r, NULL) || (vmm_resp_free(&r), hc_page_is(snap + 2, "written again")))
		goto out;
	/*
	 * -d: no longer kept; this request's write is reverted with the rest,
	 * to what the page held at the last reset (a preserved page's content
	 * becomes its snapshot content at each REVERT: docs/design.md).
	 */
	if (hc_request(&r, hc_del) || r.preserve_applied != 1) {
		printf("# hc-preserve -d: applied %llu\n", (unsigned long long)r.preserve_applied);
		vmm_resp_free(&r);
		goto out;
	}
	vmm_resp_free(&r);
	if (hc_page_is(snap + 2, "after hc-preserve -d"))
		goto out;
	/* Refused ones are counted and change nothing: the page is reverted. */
	if (hc_request(&r, bad) || r.preserve_applied || r.preserve_refused != 1) {
		printf("# a range outside RAM and a misaligned one: applied %llu, refused %llu (want 0, 1)\n",
		       (unsigned long long)r.preserve_applied, (unsigned long long)r.preserve_refused);
		vmm_resp_free(&r);
		goto out;
	}
	vmm_resp_free(&r);
	if (hc_page_is(snap + 2, "after the refused requests"))
		goto out;
	if (hc_status("no_memory") != 1 || hc_status("bad_align") != 1 || hc_status("pending") != 0 ||
	    hc_status("applied") != 2) {
		printf("# vmreset-hc status for pid %d: no_memory %lld, bad_align %lld, pending %lld, "
		       "applied %lld (want 1, 1, 0, 2)\n", getpid(), hc_status("no_memory"),
		       hc_status("bad_align"), hc_status("pending"), hc_status("applied"));
		goto out;
	}
	printf("# kept across 2 resets, dropped by -d, 1 refused by the module and 1 by the service\n");
	ret = 0;
out:
	/* Whatever failed: no range of ours left, the service gone for the cases after. */
	if (ret) {
		sh(&r, hc_del);
		vmm_resp_free(&r);
	}
	if (system("vmreset-hc unload >/dev/null 2>&1"))
		printf("# vmreset-hc unload failed\n");
	CHECK(!ret, "see above");
	/* Without the service again: requests and resets as before. */
	CHECK(!sh_ok("echo after", "after\n"), "a request after vmreset-hc unload");
	return 0;
}

/*
 * One VM started from the exported or saved snapshot (@prefix, or @s's
 * "hc") with --hc-preserve @hc: two requests, each increments the
 * counter in the hypercall page and leaves a file behind. The file never
 * survives a reset; the counter does when @kept (the clone inherited the
 * source's range), else every request starts from @c, the exported value.
 * Then the whole page, seen from the host, is @page0 with the counter.
 */
static int from_snapshot(const char *what, const char *prefix, const struct vmm_store *s,
			 unsigned int hc, const uint8_t *page0, uint64_t c, bool kept)
{
	const uint64_t a = vm->mbox_gpa + HC_PAGE_OFF;
	struct vmm_opts o = opts;
	struct vmm *main_vm = vm, *v;
	struct vmreset_range *pr = NULL;
	uint8_t want_page[4096];
	char err[512], cmd[256], want[32];
	bool has = false;
	long npr;
	int ret = -1;

	o.hc = hc;
	v = vmm_create(&o, err, sizeof(err));
	CHECK(v, "%s: create: %s", what, err);
	if (prefix ? vmm_clone_from(v, prefix) : vmm_restore(v, s, "hc")) {
		printf("# %s: %s\n", what, vmm_error(v));
		vmm_destroy(v);
		CHECK(0, "%s: start", what);
	}
	/* Before its first request: the source's two ranges, or --keep's alone. */
	npr = vmreset_preserve_list(v->ram_fd, &pr);
	for (long i = 0; i < npr; i++)
		has |= pr[i].offset == a && pr[i].length == 4096;
	if (npr != (kept ? 2 : 1) || has != kept || pr[0].offset != v->keep_gpa ||
	    pr[0].length != opts.keep_size) {
		printf("# %s: %ld preserved ranges in its RAM file, the page %s among them (want "
		       "--keep's%s)\n", what, npr, has ? "is" : "is not", kept ? " and the page" : "");
		free(pr);
		goto out;
	}
	free(pr);
	vm = v;		/* sh_ok() runs on the global */
	snprintf(cmd, sizeof(cmd), "test ! -e /tmp/inh && touch /tmp/inh && VMRESET_KEEP=%#llx "
		 "vmreset-guest keep-inc", (unsigned long long)a);
	for (int i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), "%llu\n", (unsigned long long)(c + 1 + (kept ? i : 0)));
		if (sh_ok(cmd, want)) {
			printf("# %s: request %d\n", what, i + 1);
			goto out;
		}
	}
	memcpy(want_page, page0, sizeof(want_page));
	*(uint64_t *)want_page = kept ? c + 2 : c;
	if (memcmp(v->ram + a, want_page, sizeof(want_page))) {
		printf("# %s: the page after 2 resets is not the exported one with counter %llu "
		       "(it holds %llu)\n", what, (unsigned long long)*(uint64_t *)want_page,
		       (unsigned long long)*(uint64_t *)(v->ram + a));
		goto out;
	}
	printf("# %s: counter %llu after 2 requests (%s)\n", what,
	       (unsigned long long)*(uint64_t *)want_page, kept ? "inherited" : "not inherited");
	ret = 0;
out:
	vm = main_vm;
	vmm_destroy(v);
	CHECK(!ret, "%s: see above", what);
	return 0;
}

/*
 * @to as an export made before PREFIX.state recorded preserved ranges:
 * reflink clones of RAM and disk, the state's struct without the record.
 */
static int old_export(const char *from, const char *to)
{
	int ret = 0;

	for (const char *e = "ram\0disk\0state\0"; *e && !ret; e += strlen(e) + 1) {
		char a[160], b[160];
		int src, dst;

		snprintf(a, sizeof(a), "%s.%s", from, e);
		snprintf(b, sizeof(b), "%s.%s", to, e);
		src = open(a, O_RDONLY | O_CLOEXEC);
		if (src < 0 && errno == ENOENT && *e == 'd')
			continue;	/* a VM without --disk exports none */
		dst = open(b, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (src < 0 || dst < 0) {
			ret = -1;
		} else if (*e == 's') {
			struct vmm_state *st = malloc(sizeof(*st));

			ret = st && read(src, st, sizeof(*st)) == (ssize_t)sizeof(*st) &&
			      write(dst, st, sizeof(*st)) == (ssize_t)sizeof(*st) ? 0 : -1;
			free(st);
		} else {
			ret = vmreset_clone(dst, src);
		}
		if (ret)
			printf("# %s -> %s: %s\n", a, b, strerror(errno));
		if (src >= 0)
			close(src);
		if (dst >= 0)
			close(dst);
	}
	return ret;
}

/*
 * A clone and a restore start with the ranges their source's guest
 * declared (docs/vmm.md, "Clones"), and keep what the guest wrote there
 * through their own resets; --hc-preserve off inherits none.
 */
static int t_hc_preserve_inherited(void)
{
	const uint64_t a = vm->mbox_gpa + HC_PAGE_OFF;
	struct vmm_store s = { .url = "/tmp/vmm-store-hc", .key = "/tmp/vmm-store-hc.key" };
	char hc[256], hc_del[256], prefix[128], old[128];
	static uint8_t page0[4096];
	struct vmm_resp r;
	bool exported = false;
	uint64_t c;
	int ret = -1;

	snprintf(hc, sizeof(hc), "vmreset-guest hc-preserve %#llx 0x1000", (unsigned long long)a);
	snprintf(hc_del, sizeof(hc_del), "vmreset-guest hc-preserve -d %#llx 0x1000",
		 (unsigned long long)a);
	snprintf(prefix, sizeof(prefix), "%s/hc", dir);
	snprintf(old, sizeof(old), "%s/hc-old", dir);
	if (vmm_hc_loaded())
		CHECK(system("vmreset-hc unload") == 0, "vmreset-hc unload of a service left loaded");
	if (system("vmreset-hc load >/tmp/hc-load.log 2>&1")) {
		if (system("sed 's/^/# /' /tmp/hc-load.log")) {}
		CHECK(0, "vmreset-hc load");
	}
	if (hc_request(&r, hc) || r.preserve_applied != 1) {
		printf("# hc-preserve: applied %llu\n", (unsigned long long)r.preserve_applied);
		vmm_resp_free(&r);
		goto out;
	}
	vmm_resp_free(&r);
	/* Between requests: the value the request wrote, kept by the reset after it. */
	memcpy(page0, vm->ram + a, sizeof(page0));
	memcpy(&c, page0, sizeof(c));
	if (vmm_export(vm, prefix)) {
		printf("# export: %s\n", vmm_error(vm));
		goto out;
	}
	exported = true;
	if (from_snapshot("clone", prefix, NULL, VMM_HC_AUTO, page0, c, true) ||
	    from_snapshot("clone with --hc-preserve off", prefix, NULL, VMM_HC_OFF, page0, c, false) ||
	    old_export(prefix, old) ||
	    from_snapshot("clone of an export without the ranges record", old, NULL, VMM_HC_AUTO,
			  page0, c, false))
		goto out;
	if (system("rm -rf /tmp/vmm-store-hc /tmp/vmm-store-hc.key && "
		   "vmreset-store init /tmp/vmm-store-hc >/dev/null && "
		   "vmreset-store keygen /tmp/vmm-store-hc.key >/dev/null")) {
		printf("# vmreset-store init/keygen failed\n");
		goto out;
	}
	if (vmm_save(vm, &s, "hc")) {
		printf("# save: %s\n", vmm_error(vm));
		goto out;
	}
	if (from_snapshot("restore", NULL, &s, VMM_HC_AUTO, page0, c, true) ||
	    from_snapshot("restore with --hc-preserve off", NULL, &s, VMM_HC_OFF, page0, c, false))
		goto out;
	/* The source is untouched by them all. */
	if (memcmp(vm->ram + a, page0, sizeof(page0))) {
		printf("# the source's page changed\n");
		goto out;
	}
	ret = 0;
out:
	/* Whatever failed: no range of ours left, the service gone for the cases after. */
	sh(&r, hc_del);
	vmm_resp_free(&r);
	if (system("vmreset-hc unload >/dev/null 2>&1"))
		printf("# vmreset-hc unload failed\n");
	if (exported)
		for (const char *e = "ram\0disk\0state\0"; *e; e += strlen(e) + 1) {
			char p[160];

			snprintf(p, sizeof(p), "%s.%s", prefix, e);
			unlink(p);
			snprintf(p, sizeof(p), "%s.%s", old, e);
			unlink(p);
		}
	if (system("rm -rf /tmp/vmm-store-hc /tmp/vmm-store-hc.key")) {}
	CHECK(!ret, "see above");
	return 0;
}

static int t_restore_in_new_process(void)
{
	const char *sdir = "/tmp/vmm-store", *key = "/tmp/vmm-store.key";
	struct vmm_store s = { .url = sdir, .key = key };
	static const char in[] =
		"{\"argv\": [\"sh\", \"-c\", \"cat /disk/hello && test ! -e /tmp/r && echo restored > /tmp/r && cat /tmp/r\"], \"id\": 1}\n"
		"{\"argv\": [\"sh\", \"-c\", \"test ! -e /tmp/r && echo clean\"], \"id\": 2}\n"
		"{\"argv\": [\"sh\", \"-c\", \"while :; do :; done\"], \"retry\": 0, \"id\": 3}\n"
		"{\"argv\": [\"vmreset-guest\", \"keep-inc\"], \"success_match\": \"^[0-9]+$\", \"id\": 4}\n";
	char cmd[1024], keep[32], *l[8], *buf = NULL;
	uint64_t t0;
	size_t len = 0;
	int status, n, bad = 0;
	FILE *p, *f;

	CHECK(system("rm -rf /tmp/vmm-store /tmp/vmm-store.key && "
		     "vmreset-store init /tmp/vmm-store >/dev/null && "
		     "vmreset-store keygen /tmp/vmm-store.key >/dev/null") == 0,
	      "vmreset-store init/keygen failed");
	CHECK(!vmm_save(vm, &s, "ready"), "save: %s", vmm_error(vm));
	f = fopen("/tmp/vmm-restore.in", "we");
	CHECK(f && fputs(in, f) >= 0 && !fclose(f), "writing the requests");
	snprintf(cmd, sizeof(cmd), "vmreset-vmm -d %s -k %s -i %s -m %lluM %s%s --store %s --key %s "
		 "--restore ready --timeout 10000 --retry 2 --success-match '^restored$' serve "
		 "</tmp/vmm-restore.in 2>/tmp/vmm-restore.err",
		 dir, opts.kernel, opts.initrd, (unsigned long long)(opts.mem_size >> 20),
		 opts.disk ? "--disk " : "", opts.disk ? opts.disk : "", sdir, key);
	t0 = vmm_now_us();
	p = popen(cmd, "r");
	CHECK(p, "popen");
	f = open_memstream(&buf, &len);
	for (;;) {
		char b[4096];
		size_t r = fread(b, 1, sizeof(b), p);

		if (!r)
			break;
		fwrite(b, 1, r, f);
	}
	fclose(f);
	status = pclose(p);
	printf("# restored and served 4 requests in %.1f s (a boot took %.1f s)\n",
	       (vmm_now_us() - t0) / 1e6, vm->boot_us / 1e6);
	if (status)
		system("sed 's/^/# /' /tmp/vmm-restore.err");
	n = split_lines(buf, l, 8);
	if (n != 4) {
		printf("# %d answers to 4 requests: '%s'\n", n, buf);
		bad = 1;
	} else {
		/* Matches ^restored$ on its second line. */
		bad |= resp_is(l[0], "ok", 0, DISK_HELLO "restored\n", NULL, 1, "1");
		/* Never matches it: tried 1 + --retry 2 times, each from the snapshot. */
		bad |= resp_is(l[1], "ok", 0, "clean\n", NULL, 3, "2");
		/* --timeout stops it. */
		bad |= resp_is(l[2], "timeout", 0, NULL, "timed out after 10000 ms", 1, "3");
		snprintf(keep, sizeof(keep), "%llu\n",
			 (unsigned long long)*(uint64_t *)(vm->ram + vm->keep_gpa) + 1);
		bad |= resp_is(l[3], "ok", 0, keep, NULL, 1, "4");
	}
	free(buf);
	CHECK(status == 0 && !bad, "vmreset-vmm --restore serve: status %#x", status);
	/* This VM is untouched by the other. */
	CHECK(!sh_ok("test ! -e /tmp/r && cat /disk/hello", DISK_HELLO), "the original VM after");
	system("rm -rf /tmp/vmm-store /tmp/vmm-store.key /tmp/vmm-restore.in");
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

/*
 * One serve response line against what it must say: @outcome, and for
 * "ok" the exit status and stdout (NULL: not checked); @why_has: a piece
 * of "why" (errors); @attempts (0: not checked); the "id" as JSON.
 */
static int resp_is(const char *line, const char *outcome, int exit_status, const char *out,
		   const char *why_has, int attempts, const char *id)
{
	json_object *o = line ? json_tokener_parse(line) : NULL, *v;
	const char *got;
	int ret = -1;

	if (!o || !json_object_is_type(o, json_type_object)) {
		printf("# not a JSON object: '%s'\n", line ? line : "(no line)");
		goto out;
	}
#define RCHECK(cond) do { if (!(cond)) { printf("# response '%s': %s\n", line, #cond); goto out; } } while (0)
	RCHECK(json_object_object_get_ex(o, "outcome", &v) && !strcmp(json_object_get_string(v), outcome));
	if (!strcmp(outcome, "ok")) {
		RCHECK(json_object_object_get_ex(o, "exit", &v) && json_object_get_int(v) == exit_status);
		RCHECK(json_object_object_get_ex(o, "stderr", &v));
		if (out)
			RCHECK(json_object_object_get_ex(o, "stdout", &v) &&
			       !strcmp(json_object_get_string(v), out));
	}
	if (strcmp(outcome, "error") || !why_has) {
		/* Served: with its timings and the reset's. */
		RCHECK(json_object_object_get_ex(o, "run_us", &v) && json_object_get_int64(v) > 0);
		RCHECK(json_object_object_get_ex(o, "reset_us", &v) && json_object_get_int64(v) > 0);
		RCHECK(json_object_object_get_ex(o, "revert_us", &v) && json_object_get_int64(v) > 0);
		RCHECK(json_object_object_get_ex(o, "load_us", &v) && json_object_get_int64(v) > 0);
		RCHECK(json_object_object_get_ex(o, "reverted_pages", &v) && json_object_get_int64(v) > 0);
	}
	if (why_has) {
		RCHECK(json_object_object_get_ex(o, "why", &v));
		got = json_object_get_string(v);
		RCHECK(strstr(got, why_has));
	}
	if (attempts)
		RCHECK(json_object_object_get_ex(o, "attempts", &v) && json_object_get_int(v) == attempts);
	if (id)
		RCHECK(json_object_object_get_ex(o, "id", &v) &&
		       !strcmp(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), id));
	else
		RCHECK(!json_object_object_get_ex(o, "id", &v));
#undef RCHECK
	ret = 0;
out:
	json_object_put(o);
	if (ret)
		failed_checks++;
	return ret;
}

/* The requests both serve cases send, and what each answer must be. */
static const char serve_in[] =
	"{\"argv\": [\"echo\", \"one\"], \"id\": 1}\n"
	"this is not JSON\n"
	"\n"
	"{\"argv\": \"echo\", \"id\": \"two\"}\n"
	"{\"argv\": [\"sh\", \"-c\", \"test ! -e /tmp/s && echo x > /tmp/s && echo fresh; exit 3\"], \"id\": [3]}\n"
	"{\"argv\": [\"sh\", \"-c\", \"test ! -e /tmp/s && echo x > /tmp/s && echo fresh; exit 3\"]}\n"
	"{\"argv\": [\"sh\", \"-c\", \"while :; do :; done\"], \"timeout_ms\": 2000, \"id\": 5}\n"
	"{\"argv\": [\"sh\", \"-c\", \"echo n=$(vmreset-guest counter)\"], \"retry\": 4, "
	"\"success_match\": \"^n=2$\", \"id\": 6}\n"
	"{\"argv\": [\"true\"], \"success_match\": \"(\", \"id\": 7}\n"
	"{\"argv\": [\"true\"], \"timeout_ms\": \"soon\", \"id\": 8}\n"
	"[1, 2]\n"
	"{\"argv\": [\"echo\", \"last\"], \"id\": {\"n\": 9}}\n";
#define SERVE_N 11

static int serve_answers_ok(char **l, int n)
{
	int bad = 0;

	if (n != SERVE_N) {
		printf("# %d responses to %d requests\n", n, SERVE_N);
		failed_checks++;
		return -1;
	}
	bad |= resp_is(l[0], "ok", 0, "one\n", NULL, 1, "1");
	bad |= resp_is(l[1], "error", 0, NULL, "not a JSON object", 0, NULL);
	bad |= resp_is(l[2], "error", 0, NULL, "\"argv\": need an array", 0, "\"two\"");
	/* Exit 3 fails the default success_exit 0; each one sees a fresh VM. */
	bad |= resp_is(l[3], "ok", 3, "fresh\n", NULL, 1, "[3]");
	bad |= resp_is(l[4], "ok", 3, "fresh\n", NULL, 1, NULL);
	bad |= resp_is(l[5], "timeout", 0, NULL, "timed out after 2000 ms", 1, "5");
	/* The host counter starts at 0: attempts print n=0, n=1, n=2. */
	bad |= resp_is(l[6], "ok", 0, "n=2\n", NULL, 3, "6");
	bad |= resp_is(l[7], "error", 0, NULL, "\"success_match\": not an extended regex: \"(\"", 0, "7");
	bad |= resp_is(l[8], "error", 0, NULL, "\"timeout_ms\": need an integer", 0, "8");
	bad |= resp_is(l[9], "error", 0, NULL, "not a JSON object: wrong type", 0, NULL);
	bad |= resp_is(l[10], "ok", 0, "last\n", NULL, 1, "{\"n\":9}");
	return bad ? -1 : 0;
}

/* Splits @buf into at most @max lines (in place). */
static int split_lines(char *buf, char **l, int max)
{
	int n = 0;

	for (char *p = buf, *nl; *p && n < max; p = nl + 1) {
		l[n++] = p;
		nl = strchr(p, '\n');
		if (!nl)
			break;
		*nl = 0;
	}
	return n;
}

static int t_serve_stream(void)
{
	struct vmm_txn deflt = { .success_exit = 0 };
	FILE *in = fmemopen((void *)serve_in, strlen(serve_in), "r"), *out;
	char *buf = NULL, *l[SERVE_N + 4];
	size_t len = 0;
	int ret;

	CHECK(in, "fmemopen");
	out = open_memstream(&buf, &len);
	CHECK(out, "open_memstream");
	vm->host_counter = 0;
	deflt.timeout_ms = 60000;
	ret = vmm_serve_stream(vm, &deflt, in, out);
	fclose(in);
	fclose(out);
	CHECK(!ret, "serve: %s", vmm_error(vm));
	ret = serve_answers_ok(l, split_lines(buf, l, SERVE_N + 4));
	free(buf);
	CHECK(!ret, "the answers");
	return 0;
}

/* The client of t_serve_socket: sends @req on a connection, reads the answers. */
static char *socket_client(const char *path, const char *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *buf = NULL;
	size_t len = 0;
	FILE *out;
	int fd = -1;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int i = 0; i < 600; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			break;
		close(fd);
		fd = -1;
		usleep(100000);
	}
	if (fd < 0)
		return NULL;
	for (size_t o = 0, n = strlen(req); o < n;) {
		ssize_t w = write(fd, req + o, n - o);

		if (w <= 0) {
			close(fd);
			return NULL;
		}
		o += w;
	}
	shutdown(fd, SHUT_WR);
	out = open_memstream(&buf, &len);
	for (;;) {
		char b[4096];
		ssize_t r = read(fd, b, sizeof(b));

		if (r <= 0)
			break;
		fwrite(b, 1, r, out);
	}
	fclose(out);
	close(fd);
	return buf;
}

/*
 * The same requests over the UNIX socket, from another process, and a
 * second connection after the first: the loop serves one after the other.
 * Defaults as --timeout and --success-match give them: a request that
 * sets neither is judged by them.
 */
static int t_serve_socket(void)
{
	const char *path = "/tmp/vmm-serve.sock";
	static const char second[] =
		"{\"argv\": [\"sh\", \"-c\", \"n=$(vmreset-guest counter); echo n=$n; [ $n -ge 1 ] && echo ok\"], \"id\": 1}\n"
		"{\"argv\": [\"sh\", \"-c\", \"while :; do :; done\"], \"retry\": 0, \"id\": 2}\n";
	regex_t re;
	struct vmm_txn deflt = { .success_exit = 0 };
	int pipefd[2], go[2], status, ret, n;
	char *buf = NULL, *l[SERVE_N + 4];
	size_t len = 0;
	FILE *f;
	pid_t pid;

	CHECK(!pipe(pipefd) && !pipe(go), "pipe");
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (!pid) {
		char *a, *b = NULL, c;

		close(go[1]);
		a = socket_client(path, serve_in);
		/*
		 * The second connection only once the first listener is gone:
		 * connecting earlier would queue on it and be reset with it.
		 */
		if (read(go[0], &c, 1) == 1)
			b = socket_client(path, second);
		close(pipefd[0]);
		f = fdopen(pipefd[1], "w");
		fprintf(f, "%s%c%s", a ? a : "", 0, b ? b : "");
		fclose(f);
		_exit(a && b ? 0 : 1);
	}
	close(pipefd[1]);
	close(go[0]);
	vm->host_counter = 0;
	deflt.timeout_ms = 60000;
	ret = vmm_serve_socket(vm, &deflt, path, 1, NULL);
	printf("# the first connection served: %s\n", ret ? vmm_error(vm) : "ok");
	if (!ret) {
		/* The second connection with defaults as the CLI's transaction options set them. */
		CHECK(!regcomp(&re, "^ok$", REG_EXTENDED | REG_NOSUB | REG_NEWLINE), "regcomp");
		deflt = (struct vmm_txn){ .retry = 3, .timeout_ms = 8000, .success_exit = 0, .match = &re };
		vm->host_counter = 0;
		if (write(go[1], "g", 1) != 1)
			ret = -EPIPE;
		if (!ret)
			ret = vmm_serve_socket(vm, &deflt, path, 1, NULL);
		regfree(&re);
	}
	close(go[1]);
	f = open_memstream(&buf, &len);
	for (;;) {
		char b[4096];
		ssize_t r = read(pipefd[0], b, sizeof(b));

		if (r <= 0)
			break;
		fwrite(b, 1, r, f);
	}
	fclose(f);
	close(pipefd[0]);
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(!ret, "serve: %s", vmm_error(vm));
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "the client failed: %#x", status);
	CHECK(access(path, F_OK) && errno == ENOENT, "the socket %s was left behind", path);
	/* The second connection's answers follow the NUL. */
	char *second_buf = len > strlen(buf) ? buf + strlen(buf) + 1 : NULL;

	n = split_lines(buf, l, SERVE_N + 4);
	ret = serve_answers_ok(l, n);
	if (!ret) {
		n = second_buf ? split_lines(second_buf, l, 4) : 0;
		if (n != 2) {
			printf("# %d answers on the second connection, want 2\n", n);
			ret = -1;
		} else {
			/* n=0 fails ^ok$, n=1 matches: 2 attempts under the default match. */
			ret |= resp_is(l[0], "ok", 0, "n=1\nok\n", NULL, 2, "1");
			/* The default timeout stops it; retry 0 asks for one attempt. */
			ret |= resp_is(l[1], "timeout", 0, NULL, "timed out after 8000 ms", 1, "2");
		}
	}
	free(buf);
	CHECK(!ret, "the answers");
	return 0;
}

/* A second VM with two vCPUs: requests on both, and a reset that restores each. */
static int t_two_vcpus(void)
{
	struct vmm_opts o = opts;
	struct vmm *main_vm = vm, *v = NULL;
	char err[512];
	int ret = -1;

	o.cpus = 2;
	o.disk = NULL;
	for (int attempt = 1; attempt <= 2; attempt++) {
		int r;

		v = vmm_create(&o, err, sizeof(err));
		CHECK(v, "create: %s", err);
		r = vmm_boot(v, 600000);
		if (!r)
			break;
		printf("# boot attempt %d: %s\n", attempt, vmm_error(v));
		vmm_destroy(v);
		v = NULL;
		CHECK(r == -EDEADLK, "boot");
	}
	CHECK(v, "boot");
	printf("# 2 vCPUs: ready in %.2f s\n", v->boot_us / 1e6);
	vm = v;		/* sh_ok() runs on the global */
	if (sh_ok("nproc; grep -c ^processor /proc/cpuinfo", "2\n2\n") ||
	    /* Field 39 of /proc/self/stat: the CPU it runs on. */
	    sh_ok("taskset 2 sh -c 'echo x > /tmp/cpu1; cut -d\" \" -f39 /proc/self/stat'", "1\n") ||
	    sh_ok("test ! -e /tmp/cpu1 && taskset 1 cut -d' ' -f39 /proc/self/stat", "0\n") ||
	    /* Both vCPUs busy in user space when the request ends. */
	    sh_ok("taskset 1 yes </dev/null >/dev/null 2>&1 & "
		  "taskset 2 sh -c 'i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; echo $i'", "300\n") ||
	    sh_ok("pidof yes || echo none", "none\n"))
		goto out;
	ret = vcpus_equal_snapshot(v);
out:
	vm = main_vm;
	vmm_destroy(v);
	return ret;
}

/*
 * Four VMs started from reflink clones of the ready snapshot, each in a
 * process of its own, serving at once: each sees the snapshot (the disk's
 * file, the preserved counter as it was), none sees another's files.
 */
#define NCLONES 4
#define CLONE_REQS 4

/* What a clone's exit status means (clone_child's return values). */
static const char *const clone_exit_why[] = {
	[10] = "vmm_create failed", [11] = "vmm_clone_from failed",
	[12] = "no go byte from the parent", [13] = "a request failed",
	[14] = "the preserved counter was wrong", [15] = "could not report its times",
};

static int clone_fail(struct vmm *v, int id, int rc, const char *what)
{
	char tail[1024];

	printf("# clone %d: %s\n", id, what);
	if (v)
		printf("# clone %d console: %s\n", id, vmm_console_tail(v, tail, sizeof(tail)));
	return rc;
}

static int clone_child(const char *prefix, int id, int ready, int go, int report, uint64_t keep0)
{
	char err[512], cmd[256], want[128];
	struct vmm *v = vmm_create(&opts, err, sizeof(err));
	uint64_t t0, t1, times[3];
	char c;

	if (!v)
		return clone_fail(NULL, id, 10, err);
	t0 = vmm_now_us();
	if (vmm_clone_from(v, prefix))
		return clone_fail(v, id, 11, vmm_error(v));
	t1 = vmm_now_us();
	printf("# clone %d: started in %.1f ms\n", id, (t1 - t0) / 1000.0);
	fflush(stdout);
	vm = v;		/* the child's copy of the global: sh_ok() uses it */
	if (write(ready, "r", 1) != 1 || read(go, &c, 1) != 1)
		return clone_fail(v, id, 12, "no go byte");
	times[0] = vmm_now_us();
	for (int i = 0; i < CLONE_REQS; i++) {
		uint64_t tr = vmm_now_us();

		snprintf(cmd, sizeof(cmd), "cat /disk/hello; ls /disk | grep -c '^c-' ; test ! -e /tmp/c && "
			 "echo %d-%d > /tmp/c && echo %d-%d > /disk/c-%d && sync && cat /tmp/c", id, i,
			 id, i, id);
		snprintf(want, sizeof(want), DISK_HELLO "0\n%d-%d\n", id, i);
		if (sh_ok(cmd, want)) {
			snprintf(err, sizeof(err), "request %d of %d failed after %.1f s (%.1f s after the go)",
				 i + 1, CLONE_REQS, (vmm_now_us() - tr) / 1e6, (vmm_now_us() - times[0]) / 1e6);
			return clone_fail(v, id, 13, err);
		}
	}
	snprintf(want, sizeof(want), "%llu\n", (unsigned long long)keep0 + 1);
	if (sh_ok("vmreset-guest keep-inc", want))
		return clone_fail(v, id, 14, "keep-inc: not the snapshot's counter plus one");
	times[1] = vmm_now_us();
	times[2] = id;
	if (write(report, times, sizeof(times)) != sizeof(times))
		return 15;
	vmm_destroy(v);
	return 0;
}

/*
 * Wait until every clone has started: under load one clone can start,
 * serve and finish before the last has mapped its snapshot, and "served
 * at the same time" would then measure the start-up, not the clones. A
 * clone that dies before it is ready sends no byte: stop waiting then,
 * and after 300 s (a clone starts in 0.3-3.3 s under CI's load).
 */
static int wait_clones_ready(int fd, const pid_t *pids)
{
	uint64_t t0 = vmm_now_us();
	int n = 0;

	while (n < NCLONES) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char c;

		if (poll(&p, 1, 1000) > 0) {
			if (read(fd, &c, 1) != 1)
				return n;
			n++;
			continue;
		}
		for (int i = 0; i < NCLONES; i++) {
			siginfo_t si = { 0 };

			if (!waitid(P_PID, pids[i], &si, WEXITED | WNOHANG | WNOWAIT) && si.si_pid) {
				printf("# clone %d exited before it was ready (%d of %d were)\n", i, n,
				       NCLONES);
				return n;
			}
		}
		if (vmm_now_us() - t0 > 300000000) {
			printf("# only %d of %d clones started within 300 s\n", n, NCLONES);
			return n;
		}
	}
	return n;
}

static int t_four_clones(void)
{
	char prefix[128];
	uint64_t keep0 = *(uint64_t *)(vm->ram + vm->keep_gpa), last_start = 0, first_end = UINT64_MAX;
	int go[2], rep[2], ready[2], status, bad = 0, nready;
	pid_t pids[NCLONES];
	uint64_t t_go;
	bool gone = true;

	snprintf(prefix, sizeof(prefix), "%s/ready", dir);
	CHECK(!vmm_export(vm, prefix), "export: %s", vmm_error(vm));
	CHECK(vmm_export(vm, prefix) == -EEXIST && strstr(vmm_error(vm), prefix),
	      "a second export over the first: %s", vmm_error(vm));
	CHECK(!pipe(go) && !pipe(rep) && !pipe(ready), "pipe");
	fflush(stdout);
	for (int i = 0; i < NCLONES; i++) {
		pids[i] = fork();
		CHECK(pids[i] >= 0, "fork");
		if (!pids[i]) {
			close(go[1]);
			close(rep[0]);
			close(ready[0]);
			_exit(clone_child(prefix, i, ready[1], go[0], rep[1], keep0));
		}
	}
	close(go[0]);
	close(rep[1]);
	close(ready[1]);
	/* All at once: each waits for its byte after starting. */
	nready = wait_clones_ready(ready[0], pids);
	close(ready[0]);
	/* With every clone gone a write would raise SIGPIPE and end the whole program. */
	signal(SIGPIPE, SIG_IGN);
	if (write(go[1], "gggg", NCLONES) != NCLONES)
		printf("# the go bytes: %s\n", strerror(errno));
	close(go[1]);
	t_go = vmm_now_us();
	for (int i = 0; i < NCLONES; i++) {
		uint64_t t[3];

		if (read(rep[0], t, sizeof(t)) != sizeof(t))
			break;
		printf("# clone %d served from +%.1f ms to +%.1f ms after the go\n", (int)t[2],
		       ((int64_t)t[0] - (int64_t)t_go) / 1000.0, ((int64_t)t[1] - (int64_t)t_go) / 1000.0);
		last_start = t[0] > last_start ? t[0] : last_start;
		first_end = t[1] < first_end ? t[1] : first_end;
	}
	close(rep[0]);
	for (int i = 0; i < NCLONES; i++) {
		CHECK(waitpid(pids[i], &status, 0) == pids[i], "waitpid");
		if (WIFSIGNALED(status)) {
			printf("# clone %d killed by signal %d (%s)\n", i, WTERMSIG(status),
			       strsignal(WTERMSIG(status)));
			bad++;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			int e = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

			printf("# clone %d failed: exit %d (%s)\n", i, e,
			       e >= 10 && e <= 15 ? clone_exit_why[e] : "?");
			bad++;
		}
	}
	/* The clones have theirs: the source's pages need not stay shared, whatever failed. */
	for (const char *e = "ram\0disk\0state\0"; *e; e += strlen(e) + 1) {
		char p[160];

		snprintf(p, sizeof(p), "%s.%s", prefix, e);
		if (unlink(p)) {
			printf("# %s: %s\n", p, strerror(errno));
			gone = false;
		}
	}
	CHECK(!bad, "%d of %d clones failed", bad, NCLONES);
	CHECK(gone, "the exported snapshot's files were not all there");
	CHECK(nready == NCLONES, "%d of %d clones said they were ready", nready, NCLONES);
	CHECK(last_start < first_end, "the clones did not serve at the same time (the last started "
	      "%.1f ms after the first ended)", (last_start - first_end) / 1000.0);
	printf("# %d clones served %d requests each, all at once for %.1f ms\n", NCLONES,
	       CLONE_REQS + 1, (first_end - last_start) / 1000.0);
	/* The source is the snapshot still: no clone's writes reached it. */
	CHECK(!sh_ok("ls /disk | grep -vx lost+found; cat /disk/hello", "hello\n" DISK_HELLO),
	      "the exporting VM after its clones");
	CHECK(*(uint64_t *)(vm->ram + vm->keep_gpa) == keep0, "a clone's counter reached its source");
	return 0;
}

/*
 * vmreset-vmm bench in the test VM (named only: make check T=vmm_test/bench):
 * the table on stdout as comments, the JSON as "#J " lines for docs/bench/.
 */
/* The bench's progress and table as TAP comments, line by line as they come. */
static ssize_t comment_write(void *c, const char *buf, size_t n)
{
	static bool bol = true;

	(void)c;
	for (size_t i = 0; i < n; i++) {
		if (bol)
			fputs("# ", stdout);
		putchar(buf[i]);
		bol = buf[i] == '\n';
	}
	fflush(stdout);
	return n;
}

static int t_bench(void)
{
	/* Within the test VM's 15 minutes a program, under load. */
	struct vmm_bench_opts b = { .in_place = 20, .in_place_off = 6, .restore = 2, .cold = 1,
				    .clones = 16 };
	char bdir[] = "/tmp/vmmbenchXXXXXX", *json = NULL;
	cookie_io_functions_t io = { .write = comment_write };
	struct vmm_opts o = opts;
	FILE *f;
	int ret;

	/* Room for 16 copies of guest RAM: size= bounds, it does not allocate. */
	CHECK(mkdtemp(bdir) && !mount("none", bdir, "vmresetfs", 0, "size=8g"), "mount %s", bdir);
	o.dir = bdir;
	f = fopencookie(NULL, "w", io);
	CHECK(f, "fopencookie");
	setvbuf(f, NULL, _IOLBF, 0);
	ret = vmm_bench(&o, &b, f, &json);
	fclose(f);
	for (char *l = json, *nl; l && *l; l = nl + 1) {
		nl = strchrnul(l, '\n');
		printf("#J %.*s\n", (int)(nl - l), l);
		if (!*nl)
			break;
	}
	free(json);
	umount2(bdir, MNT_DETACH);
	rmdir(bdir);
	CHECK(!ret, "the bench failed");
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
	{ "phases", t_phases, true },
	{ "bench", t_bench, true },
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
	{ "hc_preserve", t_hc_preserve, false },
	{ "hc_preserve_inherited", t_hc_preserve_inherited, false },
	{ "restore_in_new_process", t_restore_in_new_process, false },
	{ "transaction_retried", t_transaction_retried, false },
	{ "serve_stream", t_serve_stream, false },
	{ "serve_socket", t_serve_socket, false },
	{ "two_vcpus", t_two_vcpus, false },
	{ "four_clones", t_four_clones, false },
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
		/* Enough for the agent; the hog, save and restore cost its size. */
		.mem_size = 128ULL << 20, .cpus = 1, .keep_size = 64 << 10,
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
	/* The bench boots its own VMs: the test VM's 15 minutes are its. */
	if (nonly == 1 && !strcmp(only[0], "bench")) {
		printf("ok 1 boot_to_ready # none: the bench boots its own VMs\n");
		return t_bench() ? (printf("not ok 2 bench\n"), 1) : (printf("ok 2 bench\n"), 0);
	}
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
