// SPDX-License-Identifier: GPL-2.0
/*
 * KVM VMs over netlink: attach a VM, and VM-level SNAPSHOT, REVERT and
 * preserved guest-physical ranges act on the vmresetfs files behind its
 * two memslots; a VMM that dies is detached by itself. Also what the VM
 * operations must survive: memslots backed by several mappings, a long
 * revert next to other requests, and the mount going away under them.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/userfaultfd.h>
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

/* Every 16th page of the slot at @base, @n of them from page 0. */
static uint64_t slot_check(struct kvm_vcpu *vcpu, uint64_t base, uint64_t npages,
			   uint64_t seed)
{
	vcpu_set_entry(vcpu, guest_check, 3, base, npages, seed);
	return vcpu_run_to_done(vcpu);
}

/*
 * mprotect() splits A's mapping in two VMAs behind one memslot: the VM
 * operations cover both (issue 11, defect 5: only the first VMA was).
 */
TEST_F(vm, split_mapping_reverted_whole)
{
	uint64_t dirty, reverted, kept;
	struct find f = { 0 };
	uint32_t id;

	ASSERT_EQ(0, mprotect(self->a + NPAGES / 2 * PG, NPAGES / 2 * PG,
			      PROT_READ | PROT_WRITE | PROT_EXEC));
	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &id));
	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, id, &dirty));
	/* Pages 0, 16, ..., 1008: half of them in each VMA. */
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, NPAGES / 16, 0);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(NPAGES / 16, reverted);
	ASSERT_EQ(0, slot_check(self->vcpu, VM_TEST_GPA, NPAGES, 1));
	for (uint64_t i = 0; i < NPAGES; i++)
		ASSERT_TRUE(page_has(self->a, i, pat(1, i))) TH_LOG("page %lu", i);

	/* Guest-physical addresses in the second VMA: preserved ranges work. */
	ASSERT_EQ(0, vmreset_nl_vm_preserve(self->nl, id, 1,
					    VM_TEST_GPA + (NPAGES - 16) * PG, PG))
		TH_LOG("%s", vmreset_nl_errmsg(self->nl));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, NPAGES / 16, 0);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(NPAGES / 16 - 1, reverted);
	ASSERT_EQ(1, kept);
	ASSERT_TRUE(page_has(self->a, NPAGES - 16, 0xabc ^ (NPAGES - 16)));
	ASSERT_TRUE(page_has(self->a, NPAGES - 32, pat(1, NPAGES - 32)));

	/* One file, contiguous: still one slot in VM_GET. */
	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_TRUE(f.found);
	ASSERT_EQ(2, f.vm.nr_slots);
	for (size_t i = 0; i < 2; i++)
		ASSERT_EQ(NPAGES * PG, f.vm.slots[i].size);
	free(f.vm.slots);
}

/* Two files behind one memslot: both reverted, both listed. */
TEST_F(vm, two_files_behind_one_slot)
{
	uint64_t dirty, reverted, kept, half = NPAGES / 2;
	struct vmreset_stats sa, sc;
	struct find f = { 0 };
	uint8_t *c;
	uint32_t id;
	int fc;

	fc = vmr_file(self->dir, "c", half * PG);
	ASSERT_LE(0, fc);
	c = mmap(self->a + half * PG, half * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, fc, 0);
	ASSERT_EQ(self->a + half * PG, c);
	for (uint64_t i = 0; i < half; i++)
		fill_page(c, i, pat(3, i));
	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &id));
	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, id, &dirty));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, NPAGES / 16, 0);
	ASSERT_EQ(0, vmr_stats(fc, &sc));
	ASSERT_EQ(half / 16, sc.dirty_pages);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(NPAGES / 16, reverted);
	ASSERT_EQ(0, slot_check(self->vcpu, VM_TEST_GPA, half, 1));
	ASSERT_EQ(0, slot_check(self->vcpu, VM_TEST_GPA + half * PG, half, 3));

	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_TRUE(f.found);
	ASSERT_EQ(3, f.vm.nr_slots);
	ASSERT_EQ(0, vmr_stats(self->fa, &sa));
	ASSERT_EQ(VM_TEST_GPA, f.vm.slots[0].gpa);
	ASSERT_EQ(half * PG, f.vm.slots[0].size);
	ASSERT_EQ(sa.id, f.vm.slots[0].obj_id);
	ASSERT_EQ(VM_TEST_GPA + half * PG, f.vm.slots[1].gpa);
	ASSERT_EQ(half * PG, f.vm.slots[1].size);
	ASSERT_EQ(sc.id, f.vm.slots[1].obj_id);
	ASSERT_EQ(0, f.vm.slots[1].offset);
	free(f.vm.slots);
	close(fc);
}

/*
 * Part of a memslot that is not vmresetfs (anonymous memory, a hole) would
 * escape every VM operation: they refuse, VM_GET shows the rest.
 */
TEST_F(vm, partly_vmresetfs_slot_refused)
{
	uint64_t dirty, reverted, kept;
	struct find f = { 0 };
	const char *msg = "a memslot is only partly vmresetfs memory";
	void *p;
	uint32_t id;

	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &id));
	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, id, &dirty));
	p = mmap(self->b + 8 * PG, 8 * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_EQ(self->b + 8 * PG, p);
	ASSERT_EQ(-EINVAL, vmreset_nl_vm_snapshot(self->nl, id, &dirty));
	ASSERT_EQ(0, strcmp(msg, vmreset_nl_errmsg(self->nl))) TH_LOG("%s", vmreset_nl_errmsg(self->nl));
	ASSERT_EQ(-EINVAL, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(0, strcmp(msg, vmreset_nl_errmsg(self->nl)));
	ASSERT_EQ(-EINVAL, vmreset_nl_vm_preserve(self->nl, id, 1, VM_TEST_GPA, PG));
	ASSERT_EQ(0, strcmp(msg, vmreset_nl_errmsg(self->nl)));
	/* A hole is no better. */
	ASSERT_EQ(0, munmap(p, 8 * PG));
	ASSERT_EQ(-EINVAL, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(0, strcmp(msg, vmreset_nl_errmsg(self->nl)));

	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_TRUE(f.found);
	ASSERT_EQ(3, f.vm.nr_slots);
	ASSERT_EQ(GPA_B, f.vm.slots[1].gpa);
	ASSERT_EQ(8 * PG, f.vm.slots[1].size);
	ASSERT_EQ(GPA_B + 16 * PG, f.vm.slots[2].gpa);
	ASSERT_EQ((NPAGES - 16) * PG, f.vm.slots[2].size);
	ASSERT_EQ(16 * PG, f.vm.slots[2].offset);
	free(f.vm.slots);

	/* Whole again: the operations work. */
	p = mmap(self->b + 8 * PG, 8 * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, self->fb, 8 * PG);
	ASSERT_EQ(self->b + 8 * PG, p);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
}

/* The state letter of thread @tid in /proc ('R', 'S', 'D', ...). */
static char task_state(pid_t tid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

struct blocked_write {
	int fd;
	void *buf;
	ssize_t ret;
};

static void *do_write(void *arg)
{
	struct blocked_write *w = arg;

	w->ret = pwrite(w->fd, w->buf, PG, 0);
	return NULL;
}

struct long_revert {
	uint32_t id;
	pid_t tid;
	int err;
	uint64_t reverted;
};

static void *do_revert(void *arg)
{
	struct long_revert *r = arg;
	struct vmreset_nl *nl = vmreset_nl_open(NULL);
	uint64_t kept;

	r->tid = gettid();
	r->err = nl ? vmreset_nl_vm_revert(nl, r->id, 0, &r->reverted, &kept) : -ENOMEM;
	vmreset_nl_close(nl);
	return NULL;
}

/* CTRL_CMD_GETFAMILY for @name on a fresh socket; 0 if answered within @ms. */
static int nlctrl_getfamily(const char *name, int ms)
{
	struct {
		struct nlmsghdr n;
		struct genlmsghdr g;
		char attrs[64];
	} req = { 0 };
	struct nlattr *a = (struct nlattr *)req.attrs;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char buf[8192];
	struct pollfd pfd;
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	ssize_t n;
	int fd, ret = -ETIMEDOUT;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	a->nla_type = CTRL_ATTR_FAMILY_NAME;
	a->nla_len = NLA_HDRLEN + strlen(name) + 1;
	strcpy((char *)a + NLA_HDRLEN, name);
	req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(a->nla_len);
	req.n.nlmsg_type = GENL_ID_CTRL;
	req.n.nlmsg_flags = NLM_F_REQUEST;
	req.n.nlmsg_seq = 1;
	req.g.cmd = CTRL_CMD_GETFAMILY;
	req.g.version = 2;
	if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&sa,
		   sizeof(sa)) < 0) {
		ret = -errno;
		goto out;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, ms) == 1) {
		n = recv(fd, buf, sizeof(buf), 0);
		ret = n >= (ssize_t)NLMSG_HDRLEN && h->nlmsg_type == GENL_ID_CTRL ? 0 : -EPROTO;
	}
out:
	close(fd);
	return ret;
}

struct other_vm {
	struct vmreset_nl *nl;
	uint32_t id;
	int err, ctrl_err, family_err;
	uint64_t reverted;
};

/*
 * What must not wait for another VM's revert: the nlctrl family (a request
 * is handled in the sender's sendmsg(), so it blocks there, not in poll),
 * and the vmreset family for another VM.
 */
static void *bystander(void *arg)
{
	struct other_vm *o = arg;
	uint64_t dirty, kept;

	o->ctrl_err = nlctrl_getfamily("nlctrl", 10000);
	o->family_err = nlctrl_getfamily(VMRESET_GENL_NAME, 10000);
	o->err = vmreset_nl_vm_snapshot(o->nl, o->id, &dirty) ?:
		 vmreset_nl_vm_revert(o->nl, o->id, 0, &o->reverted, &kept);
	return NULL;
}

/*
 * A VM revert that cannot finish (it waits for a write(2) to A that waits
 * on a userfaultfd page) must not hold up the rest of generic netlink: the
 * nlctrl family and the vmreset family for another VM answer meanwhile
 * (issue 11, defect 4: genl_mutex and vmr_vms_lock were held throughout).
 */
TEST_F(vm, long_revert_blocks_nothing_else)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { 0 };
	struct uffdio_zeropage zp = { 0 };
	struct blocked_write w = { 0 };
	struct long_revert r = { 0 };
	struct other_vm o = { 0 };
	struct uffd_msg msg;
	struct pollfd pfd;
	struct timespec until;
	struct kvm_vm *vm2;
	pthread_t tw, tr, to;
	uint64_t dirty;
	uint8_t *c;
	int uffd, fc, i, joined = 0;
	char st = 0;

	/* A second VM with a file of its own. */
	fc = vmr_file(self->dir, "c", 64 * PG);
	ASSERT_LE(0, fc);
	c = vmr_map(fc, 64 * PG);
	ASSERT_NONNULL(c);
	vm2 = vm_create();
	vm_add_slot(vm2, 1, VM_TEST_GPA, 64 * PG, c, 0);
	o.nl = vmreset_nl_open(NULL);
	ASSERT_NONNULL(o.nl);
	ASSERT_EQ(0, vmreset_nl_vm_attach(o.nl, vm2->fd, &o.id));

	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &r.id));
	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, r.id, &dirty));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, 8, 1);

	/* A write(2) to A that holds A's inode lock until we let it go. */
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	w.buf = mmap(NULL, PG, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, w.buf);
	reg.range.start = (uintptr_t)w.buf;
	reg.range.len = PG;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));
	w.fd = self->fa;
	ASSERT_EQ(0, pthread_create(&tw, NULL, do_write, &w));
	pfd.fd = uffd;
	pfd.events = POLLIN;
	ASSERT_EQ(1, poll(&pfd, 1, 10000)) TH_LOG("the write never faulted");
	ASSERT_EQ((ssize_t)sizeof(msg), read(uffd, &msg, sizeof(msg)));
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);

	/* The VM revert waits for A's inode lock, in the kernel. */
	ASSERT_EQ(0, pthread_create(&tr, NULL, do_revert, &r));
	for (i = 0; i < 1000; i++) {
		if (r.tid && (st = task_state(r.tid)) == 'D')
			break;
		usleep(10000);
	}
	EXPECT_EQ('D', st) TH_LOG("the revert thread is in state '%c'", st);

	if (st == 'D') {
		ASSERT_EQ(0, pthread_create(&to, NULL, bystander, &o));
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 20;
		joined = !pthread_timedjoin_np(to, NULL, &until);
		EXPECT_TRUE(joined) TH_LOG("other netlink requests waited for this revert");
		/* Still waiting: it really was in the way all along. */
		EXPECT_EQ('D', task_state(r.tid));
	}

	/* Let the write go: then the revert, which undoes it too. */
	zp.range = reg.range;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_ZEROPAGE, &zp));
	ASSERT_EQ(0, pthread_join(tw, NULL));
	ASSERT_EQ((ssize_t)PG, w.ret);
	ASSERT_EQ(0, pthread_join(tr, NULL));
	ASSERT_EQ(0, r.err);
	ASSERT_EQ(9, r.reverted);
	ASSERT_TRUE(page_has(self->a, 0, pat(1, 0)));
	if (st == 'D') {
		if (!joined)
			pthread_join(to, NULL);
		ASSERT_EQ(0, o.ctrl_err);
		ASSERT_EQ(0, o.family_err);
		ASSERT_EQ(0, o.err);
	}
	vmreset_nl_close(o.nl);
	vm_free(vm2);
	close(uffd);
	close(fc);
}

/*
 * An attachment bound to an fd (VMRESET_VM_ATTACH_F_FD) lives exactly as
 * long as that fd: nothing polls the VM, and it ends the moment the fd is
 * closed (issue 11, defect 9).
 */
TEST_F(vm, fd_bound_attachment)
{
	const char *eperm = "only the VM's own process can bind an attachment to an fd";
	uint64_t dirty, reverted, kept;
	struct find f = { 0 };
	int afd, status;
	uint32_t id, again;
	pid_t pid;

	ASSERT_EQ(-EINVAL, vmreset_nl_vm_attach_flags(self->nl, self->vm->fd, 2, &id, &afd));
	ASSERT_EQ(0, strcmp("unknown flags", vmreset_nl_errmsg(self->nl)));
	ASSERT_EQ(-1, afd);
	/* A child holding the VM fd is not the VM's process. */
	pid = fork();
	if (!pid) {
		struct vmreset_nl *nl = vmreset_nl_open(NULL);
		int fd;

		_exit(nl && vmreset_nl_vm_attach_flags(nl, self->vm->fd,
						       VMRESET_VM_ATTACH_F_FD,
						       &again, &fd) == -EPERM &&
		      !strcmp(eperm, vmreset_nl_errmsg(nl)) ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, status);

	ASSERT_EQ(0, vmreset_nl_vm_attach_flags(self->nl, self->vm->fd,
						VMRESET_VM_ATTACH_F_FD, &id, &afd));
	ASSERT_LE(0, afd);
	ASSERT_EQ(FD_CLOEXEC, fcntl(afd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(-EEXIST, vmreset_nl_vm_attach(self->nl, self->vm->fd, &again));
	ASSERT_EQ(0, vmreset_nl_vm_snapshot(self->nl, id, &dirty));
	guest_writes(self->vcpu, self->params, VM_TEST_GPA, 10, 0);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
	ASSERT_EQ(10, reverted);

	/* The VMM closes its VM first: the attachment holds on, unpolled. */
	vm_free(self->vm);
	self->vm = NULL;
	usleep(2500000);
	f.id = id;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_TRUE(f.found) TH_LOG("VM %u detached without its fd closed", id);
	free(f.vm.slots);
	ASSERT_EQ(0, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));

	/* Closing the fd ends it there and then. */
	ASSERT_EQ(0, close(afd));
	f.found = 0;
	ASSERT_EQ(0, vmreset_nl_vm_list(self->nl, find_vm, &f));
	ASSERT_FALSE(f.found);
	ASSERT_EQ(-ENOENT, vmreset_nl_vm_revert(self->nl, id, 0, &reverted, &kept));
}

/* The module's reference count: every vmresetfs superblock holds one. */
static long module_refcnt(void)
{
	FILE *f = fopen("/sys/module/vmreset/refcnt", "r");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

struct racer {
	uint32_t id;
	volatile int stop;
	volatile unsigned long gate, reverts_started;
	unsigned long ops, reverted;
};

static int count_vm(const struct vmreset_vm *vm, void *arg)
{
	(void)vm;
	(void)arg;
	return 0;
}

static void *vm_ops_loop(void *arg)
{
	struct racer *r = arg;
	struct vmreset_nl *nl = vmreset_nl_open(NULL);
	unsigned long last = 0;
	uint64_t n, kept;

	while (nl && !r->stop) {
		/* Once per round, when every page is dirty: a long revert. */
		if (r->gate == last) {
			usleep(20);
			continue;
		}
		last = r->gate;
		__atomic_add_fetch(&r->reverts_started, 1, __ATOMIC_SEQ_CST);
		if (!vmreset_nl_vm_revert(nl, r->id, 0, &n, &kept))
			r->reverted += n;
		vmreset_nl_vm_snapshot(nl, r->id, &n);
		vmreset_nl_vm_list(nl, count_vm, NULL);
		r->ops += 3;
	}
	vmreset_nl_close(nl);
	return NULL;
}

/*
 * VM operations in flight while the VMM unmaps the VM's memory and the
 * mount goes away (umount -l): the files they work on keep the mount
 * alive until they are done (issue 11, defect 2: only the inodes were
 * pinned, so the superblock died under them, "VFS: Busy inodes after
 * unmount", then a use-after-free). Afterwards every superblock is gone.
 */
TEST_F_TIMEOUT(vm, vm_ops_race_umount, 300)
{
	struct racer r = { 0 };
	uint64_t *params = self->params;
	long base;
	pthread_t th;
	int iter;

	ASSERT_EQ(0, vmreset_nl_vm_attach(self->nl, self->vm->fd, &r.id));
	/* Only the memslot this test moves from mount to mount. */
	vm_remove_slot(self->vm, 1);
	vm_remove_slot(self->vm, 2);
	vmr_umount(self->dir);
	self->dir[0] = 0;
	base = module_refcnt();
	ASSERT_LE(0, base);
	ASSERT_EQ(0, pthread_create(&th, NULL, vm_ops_loop, &r));
	for (iter = 0; iter < 40; iter++) {
		size_t size = 4 * NPAGES * PG;
		unsigned long seen;
		char dir[64];
		uint8_t *m;
		int fd;

		ASSERT_EQ(0, vmr_mount(dir, "size=64m"));
		fd = vmr_file(dir, "ram", size);
		ASSERT_LE(0, fd);
		m = vmr_map(fd, size);
		ASSERT_NONNULL(m);
		memset(m, 1, size);
		ASSERT_EQ(0, vmr_snapshot(fd, NULL));
		for (uint64_t i = 0; i < 64; i++)
			params[i] = i * 16;
		vcpu_set_entry(self->vcpu, guest_write_list, 4, VM_TEST_GPA,
			       PARAM_GPA, 64, iter);
		vm_add_slot(self->vm, 1, VM_TEST_GPA, size, m, 0);
		vcpu_run_to_done(self->vcpu);
		/* Every page dirty: the next VM revert takes a while. */
		memset(m, 2, size);
		seen = r.reverts_started;
		__atomic_add_fetch(&r.gate, 1, __ATOMIC_SEQ_CST);
		while (r.reverts_started == seen)
			usleep(50);
		/* Most often past its memslot walk, well before its end. */
		usleep(200 + rand() % 2000);
		ASSERT_EQ(0, munmap(m, size));
		close(fd);
		vmr_umount(dir);
		vm_remove_slot(self->vm, 1);
	}
	r.stop = 1;
	ASSERT_EQ(0, pthread_join(th, NULL));
	TH_LOG("%lu VM operations, %lu pages reverted", r.ops, r.reverted);
	ASSERT_LT(0, r.reverted);
	/* The last operation's file references go at its return to user space. */
	for (iter = 0; iter < 100 && module_refcnt() != base; iter++)
		usleep(50000);
	ASSERT_EQ(base, module_refcnt());
}

TEST_HARNESS_MAIN
