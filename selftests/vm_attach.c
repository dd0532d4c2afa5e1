// SPDX-License-Identifier: GPL-2.0
/*
 * KVM VMs over netlink: attach a VM, and VM-level SNAPSHOT, REVERT and
 * preserved guest-physical ranges act on the vmresetfs files behind its
 * two memslots; a VMM that dies is detached by itself.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include "harness.h"
#include "vmr_guest.h"
#include "vmreset.h"

#define NPAGES		1024UL
#define GPA_B		(VM_TEST_GPA + (256ULL << 20))

FIXTURE(vm) {
	char dir[64];
	int fa, fb;
	uint8_t *a, *b;
	uint64_t *params;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct vmreset_nl *nl;
};

FIXTURE_SETUP(vm)
{
	self->vm = NULL;
	self->nl = NULL;
	self->dir[0] = 0;
	TEST_REQUIRE_KVM();
	ASSERT_EQ(0, vmr_mount(self->dir, "size=64m"));
	self->fa = vmr_file(self->dir, "a", NPAGES * PG);
	self->fb = vmr_file(self->dir, "b", NPAGES * PG);
	ASSERT_LE(0, self->fa);
	ASSERT_LE(0, self->fb);
	self->a = vmr_map(self->fa, NPAGES * PG);
	self->b = vmr_map(self->fb, NPAGES * PG);
	ASSERT_NONNULL(self->a);
	ASSERT_NONNULL(self->b);
	for (uint64_t i = 0; i < NPAGES; i++) {
		fill_page(self->a, i, pat(1, i));
		fill_page(self->b, i, pat(2, i));
	}
	self->params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->params);
	self->vm = vm_create();
	vm_add_slot(self->vm, 1, VM_TEST_GPA, NPAGES * PG, self->a, 0);
	vm_add_slot(self->vm, 2, GPA_B, NPAGES * PG, self->b, 0);
	vm_add_slot(self->vm, 3, PARAM_GPA, PARAM_SIZE, self->params, 0);
	self->vcpu = vcpu_add(self->vm, 0, guest_read_all, 2, VM_TEST_GPA, NPAGES);
	vcpu_run_to_done(self->vcpu);
	self->nl = vmreset_nl_open(NULL);
	ASSERT_NONNULL(self->nl);
}

FIXTURE_TEARDOWN(vm)
{
	vmreset_nl_close(self->nl);
	vm_free(self->vm);
	if (self->dir[0])
		vmr_umount(self->dir);
}

/* The guest writes @n pages (every 16th) of the slot at @base. */
static void guest_writes(struct kvm_vcpu *vcpu, uint64_t *params, uint64_t base,
			 uint64_t n, uint64_t first)
{
	for (uint64_t i = 0; i < n; i++)
		params[i] = first + i * 16;
	vcpu_set_entry(vcpu, guest_write_list, 4, base, PARAM_GPA, n, 0xabc);
	vcpu_run_to_done(vcpu);
}

struct find {
	uint32_t id;
	struct vmreset_vm vm;
	int found;
};

static int find_vm(const struct vmreset_vm *vm, void *arg)
{
	struct find *f = arg;

	if (vm->id != f->id)
		return 0;
	f->found = 1;
	f->vm = *vm;
	f->vm.slots = malloc(vm->nr_slots * sizeof(*vm->slots));
	memcpy(f->vm.slots, vm->slots, vm->nr_slots * sizeof(*vm->slots));
	return 0;
}

TEST_F(vm, revert_across_two_memslots)
{
	struct vmreset_stats sa, sb;
	uint64_t dirty, reverted, kept;
	struct find f = { 0 };
	uint32_t id, again;

	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &id));
	ASSERT_EQ(-EEXIST, vmreset_nl_vm_attach(self->nl, self->vm->fd, &again));
	ASSERT_EQ(-EINVAL, vmreset_nl_vm_attach(self->nl, self->fa, &again));
	ASSERT_EQ(0, strcmp("not a KVM VM file descriptor", vmreset_nl_errmsg(self->nl)));

	/* The VM's vmresetfs memslots, with their objects. */
	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_TRUE(f.found);
	ASSERT_EQ((uint32_t)getpid(), f.vm.pid);
	ASSERT_EQ(2, f.vm.nr_slots);
	ASSERT_EQ(0, vmr_stats(self->fa, &sa));
	ASSERT_EQ(0, vmr_stats(self->fb, &sb));
	for (size_t i = 0; i < 2; i++) {
		struct vmreset_vm_slot *s = &f.vm.slots[i];

		ASSERT_EQ(NPAGES * PG, s->size);
		ASSERT_EQ(s->gpa == VM_TEST_GPA ? sa.id : sb.id, s->obj_id);
	}
	free(f.vm.slots);

	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, id, &dirty));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, 10, 0);
	guest_writes(self->vcpu, self->params, GPA_B, 5, 1);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, VMRESET_REVERT_F_DRY_RUN,
					  &reverted, &kept));
	ASSERT_EQ(15, reverted);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(15, reverted);
	ASSERT_EQ(0, kept);
	vcpu_set_entry(self->vcpu, guest_check, 3, VM_TEST_GPA, NPAGES, 1);
	ASSERT_EQ(0, vcpu_run_to_done(self->vcpu));
	vcpu_set_entry(self->vcpu, guest_check, 3, GPA_B, NPAGES, 2);
	ASSERT_EQ(0, vcpu_run_to_done(self->vcpu));

	/* Preserve one guest page of B by its guest-physical address. */
	ASSERT_EQ(0, vmreset_nl_vm_preserve(self->nl, id, 1, GPA_B + PG, PG));
	ASSERT_EQ(-EINVAL, vmreset_nl_vm_preserve(self->nl, id, 1, 0x1000, PG));
	ASSERT_EQ(0, strcmp("no vmresetfs memory at these guest addresses",
			    vmreset_nl_errmsg(self->nl)));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, 3, 1);
	guest_writes(self->vcpu, self->params, GPA_B, 3, 1);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(5, reverted);
	ASSERT_EQ(1, kept);
	ASSERT_TRUE(page_has(self->b, 1, 0xabc ^ 1));
	ASSERT_TRUE(page_has(self->b, 17, pat(2, 17)));
	ASSERT_TRUE(page_has(self->a, 1, pat(1, 1)));

	/* Memslot changes need no update: the next operation sees them. */
	vm_remove_slot(self->vm, 2);
	memset(&f, 0, sizeof(f));
	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_EQ(1, f.vm.nr_slots);
	ASSERT_EQ(VM_TEST_GPA, f.vm.slots[0].gpa);
	free(f.vm.slots);
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, 2, 0);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(2, reverted);
	ASSERT_EQ(0, kept);

	ASSERT_EQ(0, vmreset_nl_vm_detach(self->nl, id));
	ASSERT_EQ(-ENOENT, vmreset_nl_vm_detach(self->nl, id));
	ASSERT_EQ(-ENOENT, vmreset_nl_vm_revert(self->nl, id, 0, NULL, NULL));
}

/* Run a shell command; its output (stdout and stderr) lands in @out. */
static int run(char *out, size_t len, const char *fmt, ...)
{
	char cmd[512];
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

/* The same through vmresetctl, which borrows our VM fd with pidfd_getfd(). */
TEST_F(vm, vmresetctl_vm_commands)
{
	char out[4096], want[64];
	uint32_t id;

	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl -j vm attach %d %d",
			 getpid(), self->vm->fd)) TH_LOG("%s", out);
	ASSERT_EQ(1, sscanf(out, "{\"id\":%u}", &id)) TH_LOG("%s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl vm list"));
	snprintf(want, sizeof(want), "vm %u: pid %d", id, getpid());
	ASSERT_NONNULL(strstr(out, want)) TH_LOG("%s", out);
	ASSERT_NONNULL(strstr(out, "gpa 0x40000000-0x40400000 -> object")) TH_LOG("%s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl vm snapshot %u", id));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, 4, 0);
	guest_writes(self->vcpu, self->params, GPA_B, 2, 0);
	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl vm preserve add %u %llu 4k",
			 id, (unsigned long long)GPA_B));
	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl -j vm revert %u", id));
	ASSERT_NONNULL(strstr(out, "{\"reverted_pages\":5,\"preserved_pages\":1,\"dry_run\":false}"))
		TH_LOG("%s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl -j vm revert --dry-run %u", id));
	ASSERT_NONNULL(strstr(out, "{\"reverted_pages\":0,\"preserved_pages\":0,\"dry_run\":true}"))
		TH_LOG("%s", out);
	ASSERT_EQ(1 << 8, run(out, sizeof(out), "vmresetctl vm revert 9999"));
	ASSERT_NONNULL(strstr(out, "(no such VM)")) TH_LOG("%s", out);
	ASSERT_EQ(2 << 8, run(out, sizeof(out), "vmresetctl vm attach x 1"));
	ASSERT_EQ(0, run(out, sizeof(out), "vmresetctl vm detach %u", id));
}

struct watch {
	uint32_t id;
	int seen;
};

static int on_event(const struct vmreset_event *ev, void *arg)
{
	struct watch *w = arg;

	if (ev->cmd == VMRESET_CMD_VM_DETACH_NTF && ev->vm_id == w->id)
		w->seen = 1;
	return w->seen;
}

static void *monitor(void *arg)
{
	struct vmreset_nl *nl = vmreset_nl_open(NULL);

	if (nl) {
		vmreset_nl_monitor(nl, on_event, arg);
		vmreset_nl_close(nl);
	}
	return NULL;
}

/* A VMM killed with SIGKILL: its attachment goes, and monitors hear it. */
TEST_F(vm, killed_vmm_is_detached)
{
	struct watch w = { 0 };
	struct find f = { 0 };
	struct timespec until;
	int pipefd[2], status;
	pthread_t th;
	uint32_t id;
	pid_t pid;

	ASSERT_EQ(0, pipe(pipefd));
	pid = fork();
	if (!pid) {
		struct vmreset_nl *nl = vmreset_nl_open(NULL);
		struct kvm_vm *vm = vm_create();
		struct kvm_vcpu *vcpu;
		uint32_t cid;

		vm_add_slot(vm, 1, VM_TEST_GPA, NPAGES * PG, self->a, 0);
		if (!nl || vmreset_nl_vm_attach(nl, vm->fd, &cid))
			_exit(1);
		if (write(pipefd[1], &cid, sizeof(cid)) != sizeof(cid))
			_exit(1);
		vcpu = vcpu_add(vm, 0, guest_read_all, 2, VM_TEST_GPA, NPAGES);
		for (;;)
			vcpu_run_to_done(vcpu);
	}
	ASSERT_EQ((ssize_t)sizeof(id), read(pipefd[0], &id, sizeof(id)));
	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_TRUE(f.found);
	ASSERT_EQ((uint32_t)pid, f.vm.pid);
	free(f.vm.slots);

	w.id = id;
	ASSERT_EQ(0, pthread_create(&th, NULL, monitor, &w));
	usleep(200000);		/* let the monitor subscribe */
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	ASSERT_EQ(0, pthread_timedjoin_np(th, NULL, &until))
		TH_LOG("no VM_DETACH event for VM %u", id);
	ASSERT_TRUE(w.seen);
	f.found = 0;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_FALSE(f.found);
}

/* A VM closed by its VMM (which lives on) is not kept alive by us. */
TEST_F(vm, closed_vm_is_detached)
{
	struct find f = { 0 };
	uint32_t id;
	int tries;

	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &id));
	vm_free(self->vm);
	self->vm = NULL;
	f.id = id;
	for (tries = 0; tries < 50; tries++) {
		f.found = 0;
		ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
		if (!f.found)
			break;
		free(f.vm.slots);
		usleep(100000);
	}
	ASSERT_FALSE(f.found) TH_LOG("VM %u still attached after 5 s", id);
}

TEST_HARNESS_MAIN
