// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_smoke - proves the test library itself: guests run C code at the
 * image's addresses, pass arguments and results, reach memory of any slot,
 * and every way a guest can go wrong is reported rather than missed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "kvm_guest.h"

#define PAGE_WORDS	(VM_PAGE_SIZE / sizeof(uint64_t))

TEST(kvm_dev)
{
	int fd = kvm_open();

	if (fd < 0 && errno == ENOENT)
		SKIP(return, "no /dev/kvm");
	ASSERT_LE(0, fd) TH_LOG("open /dev/kvm: %s", strerror(errno));
	ASSERT_EQ(KVM_API_VERSION, ioctl(fd, KVM_GET_API_VERSION, 0));
	close(fd);
}

/*
 * Fibonacci mixed into an FNV-style hash, with every argument feeding in:
 * an argument in the wrong register or a miscompiled loop changes the result.
 */
static GUEST_CODE uint64_t guest_compute(uint64_t n, uint64_t a, uint64_t b,
					 uint64_t c, uint64_t d, uint64_t e)
{
	uint64_t x = a, y = b, h = 0xcbf29ce484222325ULL;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint64_t t = x + y;

		x = y;
		y = t;
		h = (h ^ t ^ (i * c)) * 0x100000001b3ULL;
		h = h << 13 | h >> 51;
	}
	return h ^ (d * 0x9e3779b97f4a7c15ULL) ^ (e << 7);
}

TEST(guest_computes_value)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t want;

	TEST_REQUIRE_KVM();
	/* The very same function, run natively, gives the expected value. */
	want = guest_compute(20000, 1, 2, 3, 4, 5);
	vm = vm_create();
	vcpu = vcpu_add(vm, 0, guest_compute, 6, 20000, 1, 2, 3, 4, 5);
	ASSERT_EQ(want, vcpu_run_to_done(vcpu));
	vm_free(vm);
}

#define FILL_PAGES	16

static inline uint64_t fill_pattern(uint64_t page, uint64_t word)
{
	return (page << 32 | word) ^ 0x5a5a5a5a00000000ULL;
}

/*
 * Fills every page but its last word, then pauses so the host can check the
 * page and leave a token in that last word; returns the sum of the tokens,
 * which proves the host's writes reach the guest too.
 */
static GUEST_CODE uint64_t guest_fill_pages(uint64_t gpa, uint64_t npages)
{
	uint64_t sum = 0, n, i;

	for (n = 0; n < npages; n++) {
		uint64_t *p = (uint64_t *)(gpa + n * VM_PAGE_SIZE);

		for (i = 0; i < PAGE_WORDS - 1; i++)
			p[i] = fill_pattern(n, i);
		GUEST_SYNC(n);
		sum += p[PAGE_WORDS - 1];
	}
	return sum;
}

TEST(guest_writes_memory)
{
	size_t size = FILL_PAGES * VM_PAGE_SIZE;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t *mem, n, i, want = 0;

	TEST_REQUIRE_KVM();
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	vm = vm_create();
	vm_add_slot(vm, 1, VM_TEST_GPA, size, mem, 0);
	vcpu = vcpu_add(vm, 0, guest_fill_pages, 2, VM_TEST_GPA, FILL_PAGES);

	for (n = 0; n < FILL_PAGES; n++) {
		uint64_t *page = mem + n * PAGE_WORDS;

		ASSERT_EQ(n, vcpu_run_to_sync(vcpu));
		for (i = 0; i < PAGE_WORDS - 1; i++)
			ASSERT_EQ(fill_pattern(n, i), page[i])
				TH_LOG("page %llu word %llu",
				       (unsigned long long)n,
				       (unsigned long long)i);
		/* The guest runs strictly in step with the host. */
		if (n + 1 < FILL_PAGES)
			ASSERT_EQ(0, page[PAGE_WORDS]);
		page[PAGE_WORDS - 1] = 1000 + n;
		want += 1000 + n;
	}
	ASSERT_EQ(want, vcpu_run_to_done(vcpu));
	vm_free(vm);
	munmap(mem, size);
}

#define VCPU_PAGES	4

static inline uint64_t vcpu_pattern(uint64_t seed, uint64_t i)
{
	return seed * 0x9e3779b97f4a7c15ULL + i * i;
}

/* Fills its own region, then sums it back and mixes in some computation. */
static GUEST_CODE uint64_t guest_region_work(uint64_t gpa, uint64_t nwords,
					     uint64_t seed)
{
	uint64_t *p = (uint64_t *)gpa;
	uint64_t i, sum = 0;

	for (i = 0; i < nwords; i++)
		p[i] = vcpu_pattern(seed, i);
	for (i = 0; i < nwords; i++)
		sum += p[i] ^ i;
	return sum ^ guest_compute(5000, seed, seed + 1, 7, 0, 0);
}

static uint64_t region_work_expected(uint64_t nwords, uint64_t seed)
{
	uint64_t i, sum = 0;

	for (i = 0; i < nwords; i++)
		sum += vcpu_pattern(seed, i) ^ i;
	return sum ^ guest_compute(5000, seed, seed + 1, 7, 0, 0);
}

struct vcpu_thread {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	uint64_t result;
};

static void *vcpu_thread_fn(void *arg)
{
	struct vcpu_thread *t = arg;

	t->result = vcpu_run_to_done(t->vcpu);
	return NULL;
}

TEST(guest_two_vcpus)
{
	size_t size = VCPU_PAGES * VM_PAGE_SIZE;
	uint64_t nwords = size / sizeof(uint64_t);
	struct vcpu_thread t[2];
	struct kvm_vm *vm;
	uint64_t *mem[2];
	int i;

	TEST_REQUIRE_KVM();
	vm = vm_create();
	for (i = 0; i < 2; i++) {
		uint64_t gpa = VM_TEST_GPA + i * (1ULL << 20);

		mem[i] = mmap(NULL, size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, mem[i]);
		vm_add_slot(vm, 1 + i, gpa, size, mem[i], 0);
		t[i].vcpu = vcpu_add(vm, i, guest_region_work, 3, gpa, nwords,
				     100 + i);
	}
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i].thread, NULL, vcpu_thread_fn,
					    &t[i]));
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_join(t[i].thread, NULL));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(region_work_expected(nwords, 100 + i), t[i].result);
		ASSERT_EQ(vcpu_pattern(100 + i, nwords - 1),
			  mem[i][nwords - 1]);
	}
	vm_free(vm);
	munmap(mem[0], size);
	munmap(mem[1], size);
}

static GUEST_CODE void guest_ud2(void)
{
	__asm__ volatile("ud2");
}

TEST(guest_crash_reported)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	TEST_REQUIRE_KVM();
	vm = vm_create();
	vcpu = vcpu_add(vm, 0, guest_ud2, 0);
	ASSERT_EQ(UCALL_ERROR, vcpu_run(vcpu, &uc));
	ASSERT_EQ(KVM_EXIT_SHUTDOWN, vcpu->run->exit_reason)
		TH_LOG("%s", vcpu_exit_str(vcpu));
	TH_LOG("reported: %s", vcpu_exit_str(vcpu));
	vm_free(vm);
}

/* The host checks the line the guest reports against this one's. */
static const unsigned int guest_assert_line = __LINE__ + 4;
static GUEST_CODE uint64_t guest_asserts(uint64_t v)
{
	GUEST_ASSERT(v != 41);
	GUEST_ASSERT(v != 42);
	return v;
}

TEST(guest_assert_reported)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	TEST_REQUIRE_KVM();
	vm = vm_create();
	vcpu = vcpu_add(vm, 0, guest_asserts, 1, 42);
	ASSERT_EQ(UCALL_ABORT, vcpu_run(vcpu, &uc))
		TH_LOG("%s", vcpu_exit_str(vcpu));
	ASSERT_EQ(guest_assert_line, uc.args[UCALL_ABORT_LINE]);
	ASSERT_NONNULL(vm_image_str(vm, uc.args[UCALL_ABORT_FILE]));
	ASSERT_EQ(0, strcmp(__FILE__,
			    vm_image_str(vm, uc.args[UCALL_ABORT_FILE])));
	TH_LOG("reported: %s", vcpu_exit_str(vcpu));
	vm_free(vm);
}

/*
 * The fixture tests cover what later tests lean on: restarting a vCPU after
 * changing memory under it, and stray accesses being caught.
 */
FIXTURE(vm) {
	struct kvm_vm *vm;
};

FIXTURE_SETUP(vm)
{
	TEST_REQUIRE_KVM();
	self->vm = vm_create();
}

FIXTURE_TEARDOWN(vm)
{
	vm_free(self->vm);
}

static uint64_t guest_counter;

static GUEST_CODE uint64_t guest_count(uint64_t step)
{
	guest_counter += step;
	GUEST_SYNC(guest_counter);
	guest_counter += step;
	return guest_counter;
}

TEST_F(vm, reentry)
{
	uint64_t *counter = addr_gva2hva(self->vm, &guest_counter);
	struct kvm_vcpu *vcpu;

	vcpu = vcpu_add(self->vm, 0, guest_count, 1, 1);
	ASSERT_EQ(1, vcpu_run_to_sync(vcpu));
	/* Restart while the SYNC's port I/O is still pending completion. */
	vcpu_set_entry(vcpu, guest_compute, 6, 100, 1, 1, 0, 0, 0);
	ASSERT_EQ(guest_compute(100, 1, 1, 0, 0, 0), vcpu_run_to_done(vcpu));
	/* The guest's global is its own, and kept its value across the restart. */
	ASSERT_EQ(0, guest_counter);
	ASSERT_EQ(1, *counter);
	vcpu_set_entry(vcpu, guest_count, 1, 10);
	ASSERT_EQ(11, vcpu_run_to_sync(vcpu));
	/* Reset the guest's memory from the host, and run again. */
	*counter = 0;
	vcpu_set_entry(vcpu, guest_count, 1, 10);
	ASSERT_EQ(10, vcpu_run_to_sync(vcpu));
	ASSERT_EQ(20, vcpu_run_to_done(vcpu));
	ASSERT_EQ(20, *counter);
}

static GUEST_CODE uint64_t guest_read(uint64_t gpa)
{
	return *(volatile uint64_t *)gpa;
}

TEST_F(vm, unbacked_gpa_reported)
{
	struct kvm_vcpu *vcpu;

	vcpu = vcpu_add(self->vm, 0, guest_read, 1, VM_TEST_GPA + 0x100);
	ASSERT_EQ(UCALL_ERROR, vcpu_run(vcpu, NULL));
	ASSERT_EQ(KVM_EXIT_MMIO, vcpu->run->exit_reason)
		TH_LOG("%s", vcpu_exit_str(vcpu));
	ASSERT_EQ(VM_TEST_GPA + 0x100, vcpu->run->mmio.phys_addr);
	TH_LOG("reported: %s", vcpu_exit_str(vcpu));
}

TEST_F(vm, null_deref_reported)
{
	struct kvm_vcpu *vcpu;

	vcpu = vcpu_add(self->vm, 0, guest_read, 1, 8);
	ASSERT_EQ(UCALL_ERROR, vcpu_run(vcpu, NULL));
	ASSERT_EQ(KVM_EXIT_SHUTDOWN, vcpu->run->exit_reason)
		TH_LOG("%s", vcpu_exit_str(vcpu));
}

TEST_HARNESS_MAIN
