// SPDX-License-Identifier: GPL-2.0
/*
 * vmresetfs as KVM guest memory: guests write, the VMM reverts, and the
 * guest, the host mapping and the fault counters all agree on what
 * happened. Also: clones under a guest, vCPUs racing SNAPSHOT/REVERT, and
 * a VMM killed mid-run.
 */
#define _GNU_SOURCE
#include <linux/fs.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include "harness.h"
#include "kvm_guest.h"
#include "vmr_util.h"
#include "vmr_guest.h"


/* Write every page, round after round, pausing after each round if asked. */
GUEST_CODE static uint64_t guest_rounds(uint64_t base, uint64_t npages,
					uint64_t rounds, uint64_t sync)
{
	for (uint64_t r = 1; !rounds || r <= rounds; r++) {
		for (uint64_t i = 0; i < npages; i++)
			*(volatile uint64_t *)(base + i * PG + (r % 8) * 8) = r;
		if (sync)
			GUEST_SYNC(r);
	}
	return rounds;
}

FIXTURE(kvm) {
	char dir[64];
	int fd;
	uint8_t *map;
	uint64_t *params;
	size_t npages;
	struct kvm_vm *vm;
};

FIXTURE_SETUP(kvm)
{
	self->fd = -1;
	self->map = NULL;
	self->vm = NULL;
	self->params = NULL;
	TEST_REQUIRE_KVM();
	ASSERT_EQ(0, vmr_mount(self->dir, "size=512m"))
		TH_LOG("mount vmresetfs: %s", strerror(errno));
	self->npages = 4096;
	self->fd = vmr_file(self->dir, "ram", self->npages * PG);
	ASSERT_LE(0, self->fd);
	self->map = vmr_map(self->fd, self->npages * PG);
	ASSERT_NONNULL(self->map);
	self->params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->params);
	self->vm = vm_create();
	vm_add_slot(self->vm, 1, VM_TEST_GPA, self->npages * PG, self->map, 0);
	vm_add_slot(self->vm, 2, PARAM_GPA, PARAM_SIZE, self->params, 0);
}

FIXTURE_TEARDOWN(kvm)
{
	vm_free(self->vm);
	if (self->params && self->params != MAP_FAILED)
		munmap(self->params, PARAM_SIZE);
	if (self->map)
		munmap(self->map, self->npages * PG);
	if (self->fd >= 0)
		close(self->fd);
	if (self->dir[0])
		vmr_umount(self->dir);
}

TEST_F(kvm, guest_writes_reverted)
{
	struct kvm_vcpu *vcpu;
	struct vmreset_stats st;
	uint64_t n = 0, distinct = 0, reverted, faults0;
	static uint8_t picked[4096];

	for (uint64_t i = 0; i < self->npages; i++)
		fill_page(self->map, i, pat(7, i));
	vcpu = vcpu_add(self->vm, 0, guest_read_all, 2, VM_TEST_GPA, self->npages);
	vcpu_run_to_done(vcpu);
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));

	/* Map every page (read-only) into the guest before it writes. */
	vcpu_set_entry(vcpu, guest_read_all, 2, VM_TEST_GPA, self->npages);
	vcpu_run_to_done(vcpu);
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	faults0 = st.faults;

	srand(42);
	for (n = 0; n < 300; n++) {
		self->params[n] = rand() % self->npages;
		distinct += !picked[self->params[n]];
		picked[self->params[n]] = 1;
	}
	vcpu_set_entry(vcpu, guest_write_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0x1234);
	ASSERT_EQ(n, vcpu_run_to_done(vcpu));
	for (uint64_t i = 0; i < self->npages; i++)
		ASSERT_TRUE(page_has(self->map, i, picked[i] ? 0x1234 ^ i : pat(7, i)));
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(distinct, st.dirty_pages);
	ASSERT_EQ(distinct, st.cow_faults);
	ASSERT_EQ(faults0, st.faults);	/* write faults on mapped pages */

	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(distinct, reverted);
	vcpu_set_entry(vcpu, guest_check, 3, VM_TEST_GPA, self->npages, 7);
	ASSERT_EQ(0, vcpu_run_to_done(vcpu));
	for (uint64_t i = 0; i < self->npages; i++)
		ASSERT_TRUE(page_has(self->map, i, pat(7, i)));
	/* Only the reverted pages had to be faulted in again. */
	ASSERT_EQ(0, vmr_stats(self->fd, &st));
	ASSERT_EQ(faults0 + distinct, st.faults);
	TH_LOG("%lu pages written by the guest, %lu reverted, %lu refaults",
	       (unsigned long)n, (unsigned long)reverted,
	       (unsigned long)(st.faults - faults0));

	/* Again, from the same snapshot, with a different set. */
	for (n = 0; n < 64; n++)
		self->params[n] = n * 64;
	vcpu_set_entry(vcpu, guest_write_list, 4, VM_TEST_GPA, PARAM_GPA, n, 0x5678);
	vcpu_run_to_done(vcpu);
	ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
	ASSERT_EQ(64, reverted);
	vcpu_set_entry(vcpu, guest_check, 3, VM_TEST_GPA, self->npages, 7);
	ASSERT_EQ(0, vcpu_run_to_done(vcpu));
}

TEST_F(kvm, guest_writes_to_clone_stay_private)
{
	struct kvm_vcpu *vcpu;
	struct vmreset_stats st;
	uint8_t *cmap;
	int cfd;

	for (uint64_t i = 0; i < self->npages; i++)
		fill_page(self->map, i, pat(3, i));
	cfd = vmr_file(self->dir, "clone", 0);
	ASSERT_LE(0, cfd);
	ASSERT_EQ(0, ioctl(cfd, FICLONE, self->fd));
	cmap = vmr_map(cfd, self->npages * PG);
	ASSERT_NONNULL(cmap);

	/* The guest runs on the clone; the source must not change. */
	vm_remove_slot(self->vm, 1);
	vm_add_slot(self->vm, 1, VM_TEST_GPA, self->npages * PG, cmap, 0);
	for (uint64_t n = 0; n < 128; n++)
		self->params[n] = n * 32;
	vcpu = vcpu_add(self->vm, 0, guest_write_list, 4, VM_TEST_GPA, PARAM_GPA, 128, 0x99);
	ASSERT_EQ(128, vcpu_run_to_done(vcpu));
	for (uint64_t i = 0; i < self->npages; i++) {
		ASSERT_TRUE(page_has(self->map, i, pat(3, i)));
		ASSERT_TRUE(page_has(cmap, i, i % 32 ? pat(3, i) : 0x99 ^ i));
	}
	ASSERT_EQ(0, vmr_stats(cfd, &st));
	ASSERT_EQ(self->npages - 128, st.shared_pages);
	ASSERT_EQ(128, st.cow_faults);

	/* And the other way: the VMM writes the source, the guest reads the clone. */
	fill_page(self->map, 1, 0xdead);
	vcpu_set_entry(vcpu, guest_read_all, 2, VM_TEST_GPA, self->npages);
	vcpu_run_to_done(vcpu);
	ASSERT_TRUE(page_has(cmap, 1, pat(3, 1)));
	munmap(cmap, self->npages * PG);
	close(cfd);
}

struct runner {
	struct kvm_vcpu *vcpu;
	sem_t go, paused;
	int stop;
	int failed;
	uint64_t last;
};

static void *vcpu_thread(void *arg)
{
	struct runner *r = arg;
	struct ucall uc;

	for (;;) {
		sem_wait(&r->go);
		if (r->stop)
			return NULL;
		if (vcpu_run(r->vcpu, &uc) != UCALL_SYNC) {
			fprintf(stderr, "# vcpu: %s\n", vcpu_exit_str(r->vcpu));
			r->failed = 1;
		}
		r->last = uc.args[0];
		sem_post(&r->paused);
	}
}

static void *vcpu_to_done(void *arg)
{
	struct runner *r = arg;
	struct ucall uc;

	if (vcpu_run(r->vcpu, &uc) != UCALL_DONE) {
		fprintf(stderr, "# vcpu: %s\n", vcpu_exit_str(r->vcpu));
		r->failed = 1;
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST_F_TIMEOUT(kvm, vcpus_race_snapshot_revert, 600)
{
	const uint64_t half = 256;
	static uint8_t saved[512 * PG], now[512 * PG];
	struct runner r[2];
	pthread_t th[2];
	uint64_t cycles = 0;

	/* Phase 1: two vCPUs write flat out while the VMM loops SNAPSHOT/REVERT. */
	for (int v = 0; v < 2; v++) {
		memset(&r[v], 0, sizeof(r[v]));
		r[v].vcpu = vcpu_add(self->vm, v, guest_rounds, 4,
				     VM_TEST_GPA + v * half * PG, half, 3, 0);
		ASSERT_EQ(0, pthread_create(&th[v], NULL, vcpu_to_done, &r[v]));
	}
	while (!__atomic_load_n(&r[0].stop, __ATOMIC_ACQUIRE) ||
	       !__atomic_load_n(&r[1].stop, __ATOMIC_ACQUIRE)) {
		ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
		ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
		cycles++;
	}
	for (int v = 0; v < 2; v++) {
		pthread_join(th[v], NULL);
		ASSERT_EQ(0, r[v].failed);
	}
	TH_LOG("%lu SNAPSHOT/REVERT cycles raced the guests", (unsigned long)cycles);

	/* Phase 2: at every point where both vCPUs are paused, exact content. */
	for (int v = 0; v < 2; v++) {
		r[v].stop = 0;
		vcpu_set_entry(r[v].vcpu, guest_rounds, 4,
			       VM_TEST_GPA + v * half * PG, half, 0, 1);
		ASSERT_EQ(0, sem_init(&r[v].go, 0, 0));
		ASSERT_EQ(0, sem_init(&r[v].paused, 0, 0));
		ASSERT_EQ(0, pthread_create(&th[v], NULL, vcpu_thread, &r[v]));
	}
	for (int round = 0; round < 10; round++) {
		uint64_t reverted;

		for (int v = 0; v < 2; v++)
			sem_post(&r[v].go);
		for (int v = 0; v < 2; v++)
			sem_wait(&r[v].paused);
		ASSERT_EQ(0, r[0].failed | r[1].failed);
		ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
		ASSERT_EQ((ssize_t)sizeof(saved), pread(self->fd, saved, sizeof(saved), 0));

		/* Let both run a round (while the VMM reverts another). */
		for (int v = 0; v < 2; v++)
			sem_post(&r[v].go);
		for (int v = 0; v < 2; v++)
			sem_wait(&r[v].paused);
		ASSERT_EQ(0, vmr_revert(self->fd, &reverted, NULL));
		ASSERT_EQ(2 * half, reverted);
		ASSERT_EQ((ssize_t)sizeof(now), pread(self->fd, now, sizeof(now), 0));
		ASSERT_EQ(0, memcmp(saved, now, sizeof(now)));
		ASSERT_EQ(0, memcmp(saved, self->map, sizeof(saved)));
	}
	for (int v = 0; v < 2; v++) {
		r[v].stop = 1;
		sem_post(&r[v].go);
		pthread_join(th[v], NULL);
	}
}

/* A VMM killed with SIGKILL mid-run leaves nothing behind. */
TEST_F(kvm, vmm_killed_midrun)
{
	struct statfs s;
	char path[256];
	int status;
	pid_t pid;

	vm_free(self->vm);
	self->vm = NULL;
	ASSERT_EQ(0, vmr_snapshot(self->fd, NULL));
	pid = fork();
	if (!pid) {
		struct kvm_vm *vm = vm_create();
		struct kvm_vcpu *vcpu;

		vm_add_slot(vm, 1, VM_TEST_GPA, self->npages * PG, self->map, 0);
		vcpu = vcpu_add(vm, 0, guest_rounds, 4, VM_TEST_GPA, self->npages, 0, 0);
		vcpu_run(vcpu, NULL);
		_exit(1);
	}
	/* Revert under the running guest a few times, then kill it. */
	for (int i = 0; i < 20; i++) {
		usleep(20000);
		ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	}
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status));

	/* Unlink while still mapped here, then let go: every page returns. */
	snprintf(path, sizeof(path), "%s/ram", self->dir);
	ASSERT_EQ(0, unlink(path));
	ASSERT_EQ(0, vmr_revert(self->fd, NULL, NULL));
	munmap(self->map, self->npages * PG);
	self->map = NULL;
	close(self->fd);
	self->fd = -1;
	ASSERT_EQ(0, statfs(self->dir, &s));
	ASSERT_EQ(s.f_blocks, s.f_bfree);
	ASSERT_EQ(0, umount(self->dir));
	rmdir(self->dir);
	self->dir[0] = 0;
}

TEST_HARNESS_MAIN
