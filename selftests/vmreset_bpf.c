// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset's eBPF tools against real KVM guests: vmreset-trace counts what
 * the guest did and nothing of other VMs, records the pages it touched,
 * a profile applied to a clone takes its faults away, and the
 * VMRESET_HC_PRESERVE hypercall keeps a range across REVERT.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <sys/wait.h>
#include <json-c/json.h>
#include "harness.h"
#include "vmr_guest.h"
#include "vmreset.h"
#include "../bpf/vmreset_bpf.h"

#define NPAGES		64UL
#define TEST_PORT	0x7f1
#define MMIO_GPA	0xc0000000ULL	/* no memslot: MMIO exits */
#define HC_TEST_NR	0x1234		/* unknown to KVM: -KVM_ENOSYS */

static inline uint64_t guest_hypercall(uint64_t nr, uint64_t a0, uint64_t a1,
				       uint64_t a2, uint64_t a3)
{
	uint64_t ret;

	__asm__ volatile("vmmcall"
			 : "=a"(ret)
			 : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(a3)
			 : "memory");
	return ret;
}

GUEST_CODE static uint64_t guest_ops(uint64_t n_pio, uint64_t n_mmio, uint64_t n_hc)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < n_pio; i++)
		__asm__ volatile("outb %%al, %%dx" : : "a"((uint8_t)i), "d"((uint16_t)TEST_PORT));
	for (uint64_t i = 0; i < n_mmio; i++)
		*(volatile uint32_t *)MMIO_GPA = (uint32_t)i;
	for (uint64_t i = 0; i < n_mmio; i++)
		sum += *(volatile uint32_t *)(MMIO_GPA + 0x10);
	for (uint64_t i = 0; i < n_hc; i++)
		sum += guest_hypercall(HC_TEST_NR, i, 0, 0, 0);
	return sum;
}

/* Reads the pages listed at @rlist, then writes those at @wlist. */
GUEST_CODE static uint64_t guest_touch(uint64_t base, uint64_t rlist, uint64_t nr,
				       uint64_t wlist, uint64_t nw)
{
	const volatile uint64_t *r = (const volatile uint64_t *)rlist;
	const volatile uint64_t *w = (const volatile uint64_t *)wlist;
	uint64_t sum = 0;

	for (uint64_t i = 0; i < nr; i++)
		sum += *(volatile uint64_t *)(base + r[i] * PG + 8);
	for (uint64_t i = 0; i < nw; i++)
		*(volatile uint64_t *)(base + w[i] * PG + 16) = sum + i;
	return sum;
}

/* Hypercalls from a list of {gpa, len, flags, reserved}, then page writes. */
GUEST_CODE static uint64_t guest_hc_list(uint64_t list, uint64_t n, uint64_t base,
					 uint64_t wlist, uint64_t nw)
{
	const volatile uint64_t *l = (const volatile uint64_t *)list;
	const volatile uint64_t *w = (const volatile uint64_t *)wlist;

	for (uint64_t i = 0; i < n; i++)
		guest_hypercall(VMRESET_HC_PRESERVE, l[4 * i], l[4 * i + 1],
				l[4 * i + 2], l[4 * i + 3]);
	for (uint64_t i = 0; i < nw; i++)
		*(volatile uint64_t *)(base + w[i] * PG) = 0xabc ^ w[i];
	return n;
}

/* Run to UCALL_DONE, letting the test port's and MMIO exits through. */
static uint64_t run_guest(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	for (;;) {
		int r = vcpu_run(vcpu, &uc);

		if (r == UCALL_DONE)
			return uc.args[0];
		if (r == UCALL_ERROR &&
		    (vcpu->run->exit_reason == KVM_EXIT_MMIO ||
		     (vcpu->run->exit_reason == KVM_EXIT_IO &&
		      vcpu->run->io.port == TEST_PORT)))
			continue;
		ASSERT_TRUE(0) TH_LOG("guest: %s", vcpu_exit_str(vcpu));
	}
}

/* ---- vmreset-trace as a child process ---- */

struct tracer {
	pid_t pid;
	char out[64], prof[64];
};

/* Starts vmreset-trace -j -o OUT ARGS... and waits until it traces. */
static void tracer_start(struct tracer *t,
			 const char *args)
{
	static int seq;
	char cmd[512], line[256];
	int p[2];
	FILE *f;

	snprintf(t->out, sizeof(t->out), "/tmp/trace-%d-%d.json", getpid(), seq);
	snprintf(t->prof, sizeof(t->prof), "/tmp/trace-%d-%d.prof", getpid(), seq++);
	snprintf(cmd, sizeof(cmd), "exec vmreset-trace -j -o %s %s", t->out, args);
	/* Callers write $PPID for the test process (the shell's parent). */
	ASSERT_EQ(0, pipe(p));
	t->pid = fork();
	ASSERT_LE(0, t->pid);
	if (!t->pid) {
		dup2(p[1], 2);
		close(p[0]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	f = fdopen(p[0], "r");
	ASSERT_NONNULL(f);
	ASSERT_NONNULL(fgets(line, sizeof(line), f)) TH_LOG("vmreset-trace %s died", args);
	ASSERT_NONNULL(strstr(line, "vmreset-trace: tracing")) TH_LOG("%s", line);
	fclose(f);
}

static struct json_object *tracer_stop(struct tracer *t)
{
	struct json_object *j;
	int status;

	ASSERT_EQ(0, kill(t->pid, SIGINT));
	ASSERT_EQ(t->pid, waitpid(t->pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("vmreset-trace exit status 0x%x", status);
	j = json_object_from_file(t->out);
	ASSERT_NONNULL(j) TH_LOG("%s: %s", t->out, json_util_get_last_err());
	unlink(t->out);
	return j;
}

static uint64_t jget(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static struct json_object *jarr(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* The traced VMs whose VMM is @pid; *n how many. */
static struct json_object *vm_of(struct json_object *root, pid_t pid, int *n)
{
	struct json_object *vms = jarr(root, "vms"), *found = NULL;

	*n = 0;
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i);

		if (jget(vm, "pid") == (uint64_t)pid) {
			found = vm;
			(*n)++;
		}
	}
	return found;
}

/* Sum of "count" over entries of @arr whose @key equals @val (and @key2 @s). */
static uint64_t count_of(struct json_object *vm, const char *arr, const char *key,
			 uint64_t val, const char *key2, const char *s)
{
	struct json_object *a = jarr(vm, arr), *v;
	uint64_t sum = 0;

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		struct json_object *e = json_object_array_get_idx(a, i);

		if (key && jget(e, key) != val)
			continue;
		if (key2 && (!json_object_object_get_ex(e, key2, &v) ||
			     strcmp(json_object_get_string(v), s)))
			continue;
		sum += jget(e, "count");
	}
	return sum;
}

/* Exits of the reason called @name. */
static uint64_t exits_named(struct json_object *vm, const char *name)
{
	struct json_object *a = jarr(vm, "exits"), *v;
	uint64_t sum = 0;

	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		struct json_object *e = json_object_array_get_idx(a, i);

		if (json_object_object_get_ex(e, "name", &v) &&
		    !strcmp(json_object_get_string(v), name))
			sum += jget(e, "count");
	}
	return sum;
}

/* Run a command; its stdout and stderr land in @out. Returns the status. */
static int run(char *out, size_t len, const char *fmt, ...)
{
	char cmd[1024];
	size_t n = 0, got;
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
	va_end(ap);
	strcat(cmd, " 2>&1");
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n + 1 < len && (got = fread(out + n, 1, len - 1 - n, p)) > 0)
		n += got;
	out[n] = 0;
	return pclose(p);
}

/* ---- the VM every test uses ---- */

FIXTURE(bpf) {
	char dir[64];
	int fd;
	uint8_t *mem;
	uint64_t *params;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct vmreset_nl *nl;
	bool hc_loaded;
};

FIXTURE_SETUP(bpf)
{
	self->vm = NULL;
	self->nl = NULL;
	self->dir[0] = 0;
	TEST_REQUIRE_KVM();
	/* CO-RE needs the kernel's BTF; the debug kernel is built without. */
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		SKIP(return, "kernel without BTF (CONFIG_DEBUG_INFO_BTF): no CO-RE");
	ASSERT_EQ(0, vmr_mount(self->dir, "size=256m"));
	self->fd = vmr_file(self->dir, "ram", NPAGES * PG);
	ASSERT_LE(0, self->fd);
	self->mem = vmr_map(self->fd, NPAGES * PG);
	ASSERT_NONNULL(self->mem);
	self->params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->params);
	self->vm = vm_create();
	vm_add_slot(self->vm, 1, VM_TEST_GPA, NPAGES * PG, self->mem, 0);
	vm_add_slot(self->vm, 2, PARAM_GPA, PARAM_SIZE, self->params, 0);
	self->vcpu = vcpu_add(self->vm, 0, guest_ops, 3, 0, 0, 0);
	self->nl = vmreset_nl_open(NULL);
	ASSERT_NONNULL(self->nl);
}

FIXTURE_TEARDOWN(bpf)
{
	char out[256];

	if (self->hc_loaded)
		run(out, sizeof(out), "vmreset-hc unload");
	vmreset_nl_close(self->nl);
	vm_free(self->vm);
	if (self->dir[0])
		vmr_umount(self->dir);
}

/* Exactly N port writes, N MMIO writes and reads, N hypercalls. */
TEST_F(bpf, trace_counts_match_the_guest)
{
	const uint64_t n = 37;
	struct json_object *root, *vm;
	struct tracer t;
	int nvm;

	tracer_start(&t, "-p $PPID");
	vcpu_set_entry(self->vcpu, guest_ops, 3, n, n, n);
	run_guest(self->vcpu);
	root = tracer_stop(&t);
	vm = vm_of(root, getpid(), &nvm);
	ASSERT_EQ(1, nvm) TH_LOG("%s", json_object_to_json_string(root));
	EXPECT_EQ(n, count_of(vm, "pio", "port", TEST_PORT, "dir", "out"));
	EXPECT_EQ(0, count_of(vm, "pio", "port", TEST_PORT, "dir", "in"));
	EXPECT_EQ(n, count_of(vm, "mmio", "gpa", MMIO_GPA, "op", "write"));
	EXPECT_EQ(n, count_of(vm, "mmio", "gpa", MMIO_GPA + 0x10, "op", "read"));
	EXPECT_EQ(n, count_of(vm, "hypercalls", "nr", HC_TEST_NR, NULL, NULL));
	/* One ucall (the return) on its port, nothing else. */
	EXPECT_EQ(1, count_of(vm, "pio", "port", UCALL_PORT, "dir", "out"));
	/* Each port write and hypercall is an exit of its own (AMD, Intel names). */
	EXPECT_EQ(n + 1, exits_named(vm, "IOIO") + exits_named(vm, "IO_INSTRUCTION"));
	EXPECT_EQ(n, exits_named(vm, "VMMCALL") + exits_named(vm, "VMCALL"));
	EXPECT_LE(2 * n + 1, jget(vm, "exits_total"));
	json_object_put(root);
}

/* The recorded working set is exactly the pages the guest touched. */
TEST_F(bpf, working_set_is_the_touched_pages)
{
	static const uint64_t rd[] = { 0, 3, 4, 5, 9, 33, 63 };
	static const uint64_t wr[] = { 1, 2, 9, 20, 40 };	/* 9: read, then written */
	struct vmreset_profile p;
	uint8_t want[NPAGES] = { 0 };
	struct json_object *root;
	struct tracer t;
	char args[128];
	int line;

	for (size_t i = 0; i < sizeof(rd) / sizeof(rd[0]); i++) {
		self->params[i] = rd[i];
		want[rd[i]] |= VMRESET_PROF_READ;
	}
	for (size_t i = 0; i < sizeof(wr) / sizeof(wr[0]); i++) {
		self->params[64 + i] = wr[i];
		want[wr[i]] = VMRESET_PROF_WRITE;
	}
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	snprintf(args, sizeof(args), "-p $PPID -w /tmp/ws-%d.prof", getpid());
	tracer_start(&t, args);
	vcpu_set_entry(self->vcpu, guest_touch, 5, VM_TEST_GPA, PARAM_GPA,
		       sizeof(rd) / sizeof(rd[0]), PARAM_GPA + 64 * 8, sizeof(wr) / sizeof(wr[0]));
	run_guest(self->vcpu);
	root = tracer_stop(&t);
	snprintf(args, sizeof(args), "/tmp/ws-%d.prof", getpid());
	ASSERT_EQ(0, vmreset_profile_load(&p, args, &line)) TH_LOG("line %d", line);
	unlink(args);
	/* Faults by GPA region: each read page once, each written page once. */
	{
		struct json_object *npf = jarr(vm_of(root, getpid(), &line), "npf");
		struct json_object *reg = jarr(npf, "by_region");
		uint64_t r = 0, w = 0;

		for (size_t i = 0; reg && i < json_object_array_length(reg); i++) {
			struct json_object *o = json_object_array_get_idx(reg, i);

			if (jget(o, "gpa") == VM_TEST_GPA) {
				r = jget(o, "read");
				w = jget(o, "write");
			}
		}
		EXPECT_EQ(sizeof(rd) / sizeof(rd[0]), r);
		EXPECT_EQ(sizeof(wr) / sizeof(wr[0]), w);
	}
	/* The JSON summary lists the same runs. */
	ASSERT_NONNULL(jarr(root, "working_set"));
	EXPECT_EQ(p.nr, json_object_array_length(jarr(jarr(root, "working_set"), "runs")));
	EXPECT_EQ(p.written_pages, jget(jarr(root, "working_set"), "written_pages"));
	json_object_put(root);
	uint8_t got[NPAGES] = { 0 };

	for (size_t i = 0; i < p.nr; i++) {
		const struct vmreset_profile_run *r = &p.runs[i];

		for (uint64_t g = r->gpa; g < r->gpa + r->pages * PG; g += PG)
			if (g >= VM_TEST_GPA && g < VM_TEST_GPA + NPAGES * PG)
				got[(g - VM_TEST_GPA) / PG] = r->flags;
	}
	for (uint64_t i = 0; i < NPAGES; i++)
		EXPECT_EQ(want[i], got[i]) TH_LOG("page %llu", (unsigned long long)i);
	vmreset_profile_free(&p);
}

/* Two VMMs, two tracers: each sees its own VM's exact count, nothing else. */
TEST_F(bpf, two_tracers_see_their_own_vm)
{
	const uint64_t n[2] = { 11, 23 };
	int go[2][2], ready[2][2];
	struct tracer t[2];
	pid_t child[2];
	char args[64], c;

	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, pipe(go[i]));
		ASSERT_EQ(0, pipe(ready[i]));
		child[i] = fork();
		ASSERT_LE(0, child[i]);
		if (!child[i]) {
			struct kvm_vm *vm = vm_create();
			struct kvm_vcpu *vcpu = vcpu_add(vm, 0, guest_ops, 3, n[i], 0, 0);

			if (write(ready[i][1], "r", 1) != 1 || read(go[i][0], &c, 1) != 1)
				_exit(1);
			run_guest(vcpu);
			_exit(0);
		}
		ASSERT_EQ(1, read(ready[i][0], &c, 1));
	}
	for (int i = 0; i < 2; i++) {
		snprintf(args, sizeof(args), "-p %d", child[i]);
		tracer_start(&t[i], args);
	}
	for (int i = 0; i < 2; i++) {
		int status;

		ASSERT_EQ(1, write(go[i][1], "g", 1));
		ASSERT_EQ(child[i], waitpid(child[i], &status, 0));
		ASSERT_EQ(0, status);
	}
	for (int i = 0; i < 2; i++) {
		struct json_object *root = tracer_stop(&t[i]), *vm;
		int nvm;

		ASSERT_EQ(1, json_object_array_length(jarr(root, "vms")))
			TH_LOG("%s", json_object_to_json_string(root));
		vm = vm_of(root, child[i], &nvm);
		ASSERT_EQ(1, nvm);
		EXPECT_EQ(n[i], count_of(vm, "pio", "port", TEST_PORT, "dir", "out"));
		json_object_put(root);
	}
}

TEST_F(bpf, unprivileged_use_is_refused)
{
	char out[512];
	int st;

	st = run(out, sizeof(out), "util-setpriv --reuid=65534 --regid=65534 --clear-groups "
		 "vmreset-trace -d 1");
	ASSERT_EQ(1 << 8, st) TH_LOG("%s", out);
	ASSERT_NONNULL(strstr(out, "vmreset-trace: needs root, or CAP_BPF and CAP_PERFMON"))
		TH_LOG("%s", out);
	st = run(out, sizeof(out), "util-setpriv --reuid=65534 --regid=65534 --clear-groups "
		 "vmreset-hc status");
	ASSERT_EQ(1 << 8, st) TH_LOG("%s", out);
	ASSERT_NONNULL(strstr(out, "vmreset-hc: needs root")) TH_LOG("%s", out);
}

GUEST_CODE static uint64_t guest_pio_forever(void)
{
	for (;;)
		__asm__ volatile("outb %%al, %%dx" : : "a"(0), "d"((uint16_t)TEST_PORT));
	return 0;
}

/* By vmreset VM ID, and the live view: a busy VMM shows up with its exits. */
TEST_F(bpf, live_view_by_vm_id)
{
	char out[16384], want[64];
	int p[2], status;
	uint32_t id;
	pid_t pid;

	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct vmreset_nl *nl = vmreset_nl_open(NULL);
		struct kvm_vm *vm = vm_create();
		struct kvm_vcpu *vcpu;
		uint32_t cid;

		vm_add_slot(vm, 1, VM_TEST_GPA, NPAGES * PG, self->mem, 0);
		if (!nl || vmreset_nl_vm_attach(nl, vm->fd, &cid) ||
		    write(p[1], &cid, sizeof(cid)) != sizeof(cid))
			_exit(1);
		vcpu = vcpu_add(vm, 0, guest_pio_forever, 0);
		run_guest(vcpu);
		_exit(1);
	}
	ASSERT_EQ((ssize_t)sizeof(id), read(p[0], &id, sizeof(id)));
	ASSERT_EQ(0, run(out, sizeof(out), "vmreset-trace -v %u -t -i 0.5 -d 2", id))
		TH_LOG("%s", out);
	snprintf(want, sizeof(want), "VM of pid %d", pid);
	EXPECT_NONNULL(strstr(out, want)) TH_LOG("%s", out);
	EXPECT_NONNULL(strstr(out, " exits/s")) TH_LOG("%s", out);
	EXPECT_TRUE(strstr(out, "IOIO") || strstr(out, "IO_INSTRUCTION")) TH_LOG("%s", out);
	/* The one-shot summary names the vmreset VM. */
	snprintf(want, sizeof(want), "vmreset VM %u", id);
	EXPECT_NONNULL(strstr(out, want)) TH_LOG("%s", out);
	ASSERT_EQ(1 << 8, run(out, sizeof(out), "vmreset-trace -v 99999 -d 1"));
	EXPECT_NONNULL(strstr(out, "no vmreset VM 99999")) TH_LOG("%s", out);
	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
}

/* ---- guest-declared preserved ranges ---- */

static void hc_load(FIXTURE_DATA(bpf) *self)
{
	char out[512];

	ASSERT_EQ(0, run(out, sizeof(out), "vmreset-hc load")) TH_LOG("%s", out);
	self->hc_loaded = true;
}

/* The service's counters of the VMs of @pid, summed. */
/* The service loaded, the VM attached and snapshotted (pages pat(1, i) if @fill). */
static uint32_t hc_snapshot(FIXTURE_DATA(bpf) *self, bool fill)
{
	uint32_t id = 0;

	hc_load(self);
	for (uint64_t i = 0; fill && i < NPAGES; i++)
		fill_page(self->mem, i, pat(1, i));
	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &id));
	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, id, NULL));
	return id;
}

static uint64_t hc_stat(pid_t pid, const char *key)
{
	struct json_object *arr;
	char out[8192];
	uint64_t sum = 0;

	ASSERT_EQ(0, run(out, sizeof(out), "vmreset-hc -j status")) TH_LOG("%s", out);
	arr = json_tokener_parse(out);
	ASSERT_NONNULL(arr) TH_LOG("%s", out);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);

		if (jget(o, "pid") == (uint64_t)pid)
			sum += jget(o, key);
	}
	json_object_put(arr);
	return sum;
}

static void set_req(uint64_t *l, uint64_t gpa, uint64_t len, uint64_t flags, uint64_t rsv)
{
	l[0] = gpa;
	l[1] = len;
	l[2] = flags;
	l[3] = rsv;
}

#define WLIST_OFF	4096	/* in params[], after the request list */

TEST_F(bpf, hypercall_range_kept_across_revert)
{
	struct vmreset_hc_result res;
	uint64_t reverted, kept;
	uint32_t id;

	id = hc_snapshot(self, true);

	/* Keep page 2; write pages 1, 2, 3. */
	set_req(self->params, VM_TEST_GPA + 2 * PG, PG, 0, 0);
	self->params[WLIST_OFF] = 1;
	self->params[WLIST_OFF + 1] = 2;
	self->params[WLIST_OFF + 2] = 3;
	vcpu_set_entry(self->vcpu, guest_hc_list, 5, PARAM_GPA, 1, VM_TEST_GPA,
		       PARAM_GPA + WLIST_OFF * 8, 3);
	ASSERT_EQ(1, run_guest(self->vcpu));
	/* The hypercall has returned: the next revert must honour it. */
	ASSERT_EQ(1, hc_stat(getpid(), "pending"));
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(1, res.applied);
	EXPECT_EQ(2, reverted);
	EXPECT_EQ(1, kept);
	EXPECT_TRUE(page_has(self->mem, 1, pat(1, 1)));
	EXPECT_TRUE(page_has(self->mem, 3, pat(1, 3)));
	EXPECT_EQ(0xabc ^ 2, *(uint64_t *)(self->mem + 2 * PG));

	/* Undeclare it: the next revert takes page 2 back to what it kept. */
	set_req(self->params, VM_TEST_GPA + 2 * PG, PG, VMRESET_HC_F_DEL, 0);
	self->params[WLIST_OFF] = 2;
	vcpu_set_entry(self->vcpu, guest_hc_list, 5, PARAM_GPA, 1, VM_TEST_GPA,
		       PARAM_GPA + WLIST_OFF * 8, 1);
	run_guest(self->vcpu);
	*(uint64_t *)(self->mem + 2 * PG) = 0x5555;
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(1, res.applied);
	EXPECT_EQ(1, reverted);
	EXPECT_EQ(0, kept);
	EXPECT_EQ(0xabc ^ 2, *(uint64_t *)(self->mem + 2 * PG));
	EXPECT_EQ(2, hc_stat(getpid(), "applied"));
	EXPECT_EQ(0, hc_stat(getpid(), "pending"));
}

TEST_F(bpf, hypercall_bad_arguments_counted)
{
	struct vmreset_hc_result res;
	uint64_t *l = self->params, reverted, kept;
	uint32_t id;
	int n = 0;

	id = hc_snapshot(self, false);
	set_req(l + 4 * n++, VM_TEST_GPA + 1, PG, 0, 0);		/* unaligned address */
	set_req(l + 4 * n++, VM_TEST_GPA, 100, 0, 0);			/* unaligned length */
	set_req(l + 4 * n++, VM_TEST_GPA, 0, 0, 0);			/* empty */
	set_req(l + 4 * n++, ~0xfffULL, 2 * PG, 0, 0);			/* wraps */
	set_req(l + 4 * n++, VM_TEST_GPA, PG, 1ULL << 5, 0);		/* unknown flag */
	set_req(l + 4 * n++, VM_TEST_GPA, PG, 0, 7);			/* reserved set */
	set_req(l + 4 * n++, 0x7f00000000ULL, PG, 0, 0);		/* beyond RAM */
	vcpu_set_entry(self->vcpu, guest_hc_list, 5, PARAM_GPA, n, VM_TEST_GPA, PARAM_GPA, 0);
	run_guest(self->vcpu);
	EXPECT_EQ(n, hc_stat(getpid(), "requests"));
	EXPECT_EQ(2, hc_stat(getpid(), "bad_align"));
	EXPECT_EQ(2, hc_stat(getpid(), "bad_range"));
	EXPECT_EQ(2, hc_stat(getpid(), "bad_flags"));
	EXPECT_EQ(1, hc_stat(getpid(), "accepted"));
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(0, res.applied);
	EXPECT_EQ(1, res.no_memory);
	EXPECT_EQ(1, hc_stat(getpid(), "no_memory"));

	/* Too many between two reverts: the first VMRESET_HC_MAX_PENDING count. */
	n = VMRESET_HC_MAX_PENDING + 6;
	for (int i = 0; i < n; i++)
		set_req(l + 4 * i, VM_TEST_GPA + (i % NPAGES) * PG, PG, 0, 0);
	vcpu_set_entry(self->vcpu, guest_hc_list, 5, PARAM_GPA, n, VM_TEST_GPA, PARAM_GPA, 0);
	run_guest(self->vcpu);
	EXPECT_EQ(6, hc_stat(getpid(), "too_many"));
	EXPECT_EQ(VMRESET_HC_MAX_PENDING, hc_stat(getpid(), "pending"));
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(VMRESET_HC_MAX_PENDING, res.applied);
	EXPECT_EQ(VMRESET_HC_MAX_PENDING, hc_stat(getpid(), "applied"));
}

/* The hypercall's result as the guest sees it. */
GUEST_CODE static uint64_t guest_hc_one(uint64_t gpa, uint64_t len, uint64_t base,
					uint64_t wpage)
{
	uint64_t ret = guest_hypercall(VMRESET_HC_PRESERVE, gpa, len, 0, 0);

	*(volatile uint64_t *)(base + wpage * PG) = 0xabc ^ wpage;
	return ret;
}

/*
 * Only the guest kernel may declare memory: a guest user process that could
 * would carry its data over into the next request. KVM refuses the hypercall
 * at CPL 3 (-KVM_EPERM to the guest) and the program must not record it.
 */
TEST_F(bpf, hypercall_from_user_mode_refused)
{
	struct vmreset_hc_result res;
	uint64_t reverted, kept;
	uint32_t id;

	id = hc_snapshot(self, true);

	vcpu_set_entry(self->vcpu, guest_hc_one, 4, VM_TEST_GPA + 2 * PG, PG,
		       VM_TEST_GPA, 2);
	ASSERT_EQ(0, vcpu_enter_user(self->vcpu)) TH_LOG("%s", kvm_last_error());
	EXPECT_EQ((uint64_t)-1 /* -KVM_EPERM */, run_guest(self->vcpu));
	EXPECT_EQ(1, hc_stat(getpid(), "requests"));
	EXPECT_EQ(1, hc_stat(getpid(), "not_kernel"));
	EXPECT_EQ(0, hc_stat(getpid(), "accepted"));
	EXPECT_EQ(0, hc_stat(getpid(), "pending"));
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(0, res.applied);
	EXPECT_EQ(1, reverted);
	EXPECT_EQ(0, kept);
	EXPECT_TRUE(page_has(self->mem, 2, pat(1, 2)));

	/*
	 * The same call from CPL 0 is taken: the refusal was the CPL's. KVM
	 * itself still answers -KVM_ENOSYS: the service lives outside it.
	 */
	vcpu_set_entry(self->vcpu, guest_hc_one, 4, VM_TEST_GPA + 2 * PG, PG,
		       VM_TEST_GPA, 2);
	EXPECT_EQ((uint64_t)-1000 /* -KVM_ENOSYS */, run_guest(self->vcpu));
	EXPECT_EQ(1, hc_stat(getpid(), "accepted"));
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(1, res.applied);
	EXPECT_EQ(1, kept);
	EXPECT_EQ(0xabc ^ 2, *(uint64_t *)(self->mem + 2 * PG));
}

/* A VM that is not attached (here: another VMM's) changes nothing. */
TEST_F(bpf, hypercall_from_unattached_vm_ignored)
{
	struct vmreset_hc_result res;
	uint64_t reverted, kept;
	int status;
	uint32_t id;
	pid_t pid;

	id = hc_snapshot(self, true);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* Same memory, own VM, never attached: asks to keep page 4. */
		struct kvm_vm *vm = vm_create();
		struct kvm_vcpu *vcpu;

		vm_add_slot(vm, 1, VM_TEST_GPA, NPAGES * PG, self->mem, 0);
		vm_add_slot(vm, 2, PARAM_GPA, PARAM_SIZE, self->params, 0);
		set_req(self->params, VM_TEST_GPA + 4 * PG, PG, 0, 0);
		vcpu = vcpu_add(vm, 0, guest_hc_list, 5, PARAM_GPA, 1, VM_TEST_GPA, PARAM_GPA, 0);
		run_guest(vcpu);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, status);
	EXPECT_EQ(1, hc_stat(pid, "accepted"));
	fill_page(self->mem, 4, 0x77);
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	EXPECT_EQ(0, res.applied);
	EXPECT_EQ(1, reverted);
	EXPECT_EQ(0, kept);
	EXPECT_TRUE(page_has(self->mem, 4, pat(1, 4)));
	EXPECT_EQ(1, hc_stat(pid, "pending"));
	EXPECT_EQ(0, hc_stat(pid, "applied"));
}

/* A second VM of the same VMM, not attached: its requests stay its own. */
TEST_F(bpf, hypercall_from_second_vm_of_the_vmm)
{
	struct vmreset_hc_result res;
	uint64_t reverted, kept;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm2;
	uint32_t id;

	id = hc_snapshot(self, true);
	vm2 = vm_create();
	vm_add_slot(vm2, 1, VM_TEST_GPA, NPAGES * PG, self->mem, 0);
	vm_add_slot(vm2, 2, PARAM_GPA, PARAM_SIZE, self->params, 0);
	set_req(self->params, VM_TEST_GPA + 4 * PG, PG, 0, 0);
	vcpu = vcpu_add(vm2, 0, guest_hc_list, 5, PARAM_GPA, 1, VM_TEST_GPA, PARAM_GPA, 0);
	run_guest(vcpu);
	EXPECT_EQ(1, hc_stat(getpid(), "accepted"));
	fill_page(self->mem, 4, 0x77);
	/* Two VMs in this VMM: which one VM id is must be said. */
	ASSERT_EQ(-EBUSY, vmreset_hc_vm_revert(self->nl, id, -1, 0, &reverted, &kept, &res));
	ASSERT_EQ(-EBADF, vmreset_hc_drain(self->nl, id, self->fd, &res));
	ASSERT_EQ(0, vmreset_hc_vm_revert(self->nl, id, self->vm->fd, 0, &reverted, &kept,
					  &res));
	EXPECT_EQ(0, res.applied);
	EXPECT_EQ(1, reverted);
	EXPECT_EQ(0, kept);
	EXPECT_TRUE(page_has(self->mem, 4, pat(1, 4)));
	EXPECT_EQ(1, hc_stat(getpid(), "pending"));
	vm_free(vm2);
}

/* ---- working-set profiles ---- */

/* Pages of the test slot that took a nested page fault, from a profile. */
static uint64_t slot_pages(const char *path)
{
	struct vmreset_profile p;
	uint64_t n = 0;
	int line;

	ASSERT_EQ(0, vmreset_profile_load(&p, path, &line)) TH_LOG("%s line %d", path, line);
	for (size_t i = 0; i < p.nr; i++)
		for (uint64_t k = 0; k < p.runs[i].pages; k++) {
			uint64_t g = p.runs[i].gpa + k * PG;

			n += g >= VM_TEST_GPA && g < VM_TEST_GPA + NPAGES * PG;
		}
	vmreset_profile_free(&p);
	return n;
}

struct first_request {
	double us;
	uint64_t npf_pages, host_faults;
	struct vmreset_prefetch_stats st;
};

/*
 * A new VM on a clone of the fixture's file runs the request once, after
 * the profile at @prof was applied (or not, with NULL).
 */
static void clone_request(FIXTURE_DATA(bpf) *self, const char *name, const char *prof,
			  uint64_t nr, uint64_t nw, struct first_request *fr)
{
	struct vmreset_stats s0, s1;
	struct vmreset_profile p;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct tracer t;
	char args[128], ws[64];
	uint8_t *mem;
	double t0;
	int fd, line;

	memset(fr, 0, sizeof(*fr));
	fd = vmr_file(self->dir, name, NPAGES * PG);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, vmreset_clone(fd, self->fd));
	mem = vmr_map(fd, NPAGES * PG);
	ASSERT_NONNULL(mem);
	vm = vm_create();
	vm_add_slot(vm, 1, VM_TEST_GPA, NPAGES * PG, mem, 0);
	vm_add_slot(vm, 2, PARAM_GPA, PARAM_SIZE, self->params, 0);
	vcpu = vcpu_add(vm, 0, guest_touch, 5, VM_TEST_GPA, PARAM_GPA, nr,
			PARAM_GPA + 64 * 8, nw);
	if (prof) {
		ASSERT_EQ(0, vmreset_profile_load(&p, prof, &line));
		ASSERT_EQ(0, vmreset_profile_prefetch(&p, vcpu->fd, VM_TEST_GPA, NPAGES * PG,
						      mem, VMRESET_PREFETCH_WRITES, &fr->st));
		vmreset_profile_free(&p);
	}
	ASSERT_EQ(0, vmr_stats(fd, &s0));
	snprintf(ws, sizeof(ws), "/tmp/ws-%d-%s.prof", getpid(), name);
	snprintf(args, sizeof(args), "-p $PPID -w %s", ws);
	tracer_start(&t, args);
	t0 = now_us();
	run_guest(vcpu);
	fr->us = now_us() - t0;
	json_object_put(tracer_stop(&t));
	ASSERT_EQ(0, vmr_stats(fd, &s1));
	fr->host_faults = s1.faults - s0.faults;
	fr->npf_pages = slot_pages(ws);
	unlink(ws);
	vm_free(vm);
	munmap(mem, NPAGES * PG);
	close(fd);
}

/*
 * The request on the fixture's VM: the guest reads params[0, nr) and
 * writes params[64, 64 + nw); with @ws, vmreset-trace records its working
 * set into that profile.
 */
static void request(FIXTURE_DATA(bpf) *self, uint64_t nr, uint64_t nw, const char *ws)
{
	struct tracer t;
	char args[160];

	if (ws) {
		snprintf(args, sizeof(args), "-p $PPID -w %s", ws);
		tracer_start(&t, args);
	}
	vcpu_set_entry(self->vcpu, guest_touch, 5, VM_TEST_GPA, PARAM_GPA, nr,
		       PARAM_GPA + 64 * 8, nw);
	run_guest(self->vcpu);
	if (ws)
		json_object_put(tracer_stop(&t));
}

/* REAP's comparison: the first request of a clone with and without a profile. */
TEST_F(bpf, profile_applied_to_a_clone)
{
	uint64_t nr = 0, nw = 0, touched;
	struct first_request without, with;
	char prof[64];

	/* Reads of every other page, writes of every fifth. */
	for (uint64_t i = 0; i < NPAGES; i += 2)
		self->params[nr++] = i;
	for (uint64_t i = 1; i < NPAGES; i += 5)
		self->params[64 + nw++] = i;
	touched = nr;
	for (uint64_t i = 1; i < NPAGES; i += 5)
		touched += i % 2;
	for (uint64_t i = 0; i < NPAGES; i++)
		fill_page(self->mem, i, pat(3, i));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));

	/* Record: the request on the original VM. */
	snprintf(prof, sizeof(prof), "/tmp/prof-%d.prof", getpid());
	request(self, nr, nw, prof);
	ASSERT_EQ(touched, slot_pages(prof));

	clone_request(self, "without", NULL, nr, nw, &without);
	clone_request(self, "with", prof, nr, nw, &with);
	unlink(prof);
	printf("# first request of a clone, %llu pages touched: without profile "
	       "%.0f us, %llu pages faulted (KVM), %llu host faults; with profile "
	       "%.0f us, %llu pages faulted, %llu host faults (%llu pages prefetched "
	       "for KVM%s)\n", (unsigned long long)touched,
	       without.us, (unsigned long long)without.npf_pages,
	       (unsigned long long)without.host_faults, with.us,
	       (unsigned long long)with.npf_pages, (unsigned long long)with.host_faults,
	       (unsigned long long)with.st.kvm_pages,
	       with.st.kvm_err ? ": KVM_PRE_FAULT_MEMORY unsupported, Linux < 6.10" : "");
	EXPECT_EQ(touched, without.npf_pages);
	EXPECT_LE(touched, without.host_faults);
	EXPECT_EQ(touched, with.st.host_pages);
	EXPECT_EQ(0, with.host_faults);
	if (!with.st.kvm_err) {
		EXPECT_EQ(touched, with.st.kvm_pages);
		EXPECT_EQ(0, with.npf_pages);
	} else {
		/* 6.1: KVM still faults, but each fault finds the page mapped. */
		EXPECT_EQ(touched, with.npf_pages);
	}
}

/* Written pages as the hot set: after a REVERT they take no fault. */
TEST_F(bpf, profile_hot_set_survives_revert)
{
	uint64_t nr = 0, nw = 0;
	struct vmreset_profile p;
	struct vmreset_stats st;
	uint64_t before, after;
	char prof[64], ws[64];
	long hot;
	int line;

	for (uint64_t i = 0; i < NPAGES; i += 4)
		self->params[nr++] = i;
	for (uint64_t i = 2; i < NPAGES; i += 4)
		self->params[64 + nw++] = i;
	for (uint64_t i = 0; i < NPAGES; i++)
		fill_page(self->mem, i, pat(5, i));
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	snprintf(prof, sizeof(prof), "/tmp/hot-%d.prof", getpid());
	snprintf(ws, sizeof(ws), "/tmp/hot-%d.ws", getpid());

	/* The request, recorded; then again after a revert without a hot set. */
	request(self, nr, nw, prof);
	ASSERT_EQ(nr + nw, slot_pages(prof));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	request(self, nr, nw, ws);
	before = slot_pages(ws);

	/* The profile's written pages become hot. */
	ASSERT_EQ(0, vmreset_profile_load(&p, prof, &line));
	hot = vmreset_profile_hot(&p, self->fd, VM_TEST_GPA, NPAGES * PG, 0);
	vmreset_profile_free(&p);
	ASSERT_EQ((long)nw, hot);
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	EXPECT_EQ(nw, st.hot_pages);
	/* Once more: the revert gave the hot pages back in place. */
	request(self, nr, nw, NULL);
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	request(self, nr, nw, ws);
	after = slot_pages(ws);
	unlink(prof);
	unlink(ws);
	printf("# request after a revert: %llu pages faulted without the hot set, "
	       "%llu with the profile's %llu written pages hot\n",
	       (unsigned long long)before, (unsigned long long)after,
	       (unsigned long long)nw);
	EXPECT_EQ(nw, before);
	EXPECT_EQ(0, after);
}

/*
 * Exits per second of a guest with and without a tracer on all VMs: exits
 * KVM handles itself (hypercalls) and exits to the VMM (port writes).
 */
TEST_F(bpf, tracer_overhead)
{
	static const char *const how[] = { NULL, "-L", "" };
	const uint64_t n = 2000;
	struct json_object *root, *vm;
	struct tracer t;
	double t0;
	int nvm;

	for (int kind = 0; kind < 2; kind++) {
		double best[3] = { 1e30, 1e30, 1e30 };
		uint64_t pio = kind ? n : 0, hc = kind ? 0 : n;

		vcpu_set_entry(self->vcpu, guest_ops, 3, pio, 0, hc);
		run_guest(self->vcpu);
		/* Interleaved, best of three: the machine is shared. */
		for (int round = 0; round < 3; round++) {
			for (int k = 0; k < 3; k++) {
				if (how[k])
					tracer_start(&t, how[k]);
				vcpu_set_entry(self->vcpu, guest_ops, 3, pio, 0, hc);
				t0 = now_us();
				run_guest(self->vcpu);
				best[k] = fmin(best[k], now_us() - t0);
				if (!how[k])
					continue;
				root = tracer_stop(&t);
				vm = vm_of(root, getpid(), &nvm);
				ASSERT_EQ(1, nvm);
				ASSERT_EQ(n, kind ? count_of(vm, "pio", "port", TEST_PORT, "dir", "out")
						  : count_of(vm, "hypercalls", "nr", HC_TEST_NR, NULL, NULL));
				json_object_put(root);
			}
		}
		printf("# %llu %s: %.0f exits/s untraced, %.0f traced without latencies "
		       "(-L, %+.1f%%), %.0f traced with latencies (%+.1f%%)\n",
		       (unsigned long long)n,
		       kind ? "exits to the VMM (port writes)" : "in-kernel exits (hypercalls)",
		       n / best[0] * 1e6, n / best[1] * 1e6, (best[0] / best[1] - 1) * 100,
		       n / best[2] * 1e6, (best[0] / best[2] - 1) * 100);
	}
}

TEST_HARNESS_MAIN
