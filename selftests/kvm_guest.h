/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvm_guest.h - a tiny x86-64 KVM library for the vmreset selftests
 *
 * Guest code is plain C in the test binary, as in the kernel's KVM selftests.
 * The binary is linked non-PIE, so its code and data sit at fixed addresses
 * from 0x400000 up. vm_create() copies each PT_LOAD segment of the running
 * program into guest memory at GPA == host virtual address and identity-maps
 * the low 64 GiB, so a function runs at the same address in the guest as on
 * the host, and vcpu_add() takes an ordinary function pointer.
 *
 * The vCPU starts in 64-bit long mode, ring 0, interrupts off, in the function
 * given with up to six integer arguments (SysV ABI). When the function
 * returns, a trampoline reports its return value as UCALL_DONE.
 *
 * Rules for guest code (functions marked GUEST_CODE and all they call):
 *  - No libc and no system calls: the guest has this binary's image, not its
 *    shared libraries. Compilers turn some loops into memset()/memcpy()
 *    calls, and big struct copies into memcpy(): the Makefile passes
 *    -fno-tree-loop-distribute-patterns, and guest code should avoid large
 *    struct assignment.
 *  - Pointers must point into the image (globals, string literals, functions)
 *    or at guest-physical memory the test mapped; host stacks and heap do not
 *    exist in the guest.
 *  - Globals are the guest's own copy, taken at vm_create(). The host sees the
 *    guest's copy through addr_gva2hva(), never through the variable itself.
 *  - No TLS, no stack protector, nothing beyond SSE (no XSAVE, so no AVX).
 *  - Prefer scalar memory accesses. Wherever KVM emulates an access (MMIO,
 *    and on hosts whose KVM uses shadow paging, tdp_mmu=N, even some plain
 *    RAM writes), its emulator rejects most SSE instructions and the run
 *    ends in KVM_INTERNAL_ERROR_EMULATION. gcc -O2 keeps our loops scalar;
 *    clang vectorized them and failed that way on such a host, while
 *    passing under nested paging.
 *  - Any exception is fatal: there is no IDT, the CPU triple-faults, and
 *    vcpu_run() reports the KVM_EXIT_SHUTDOWN as a guest crash. GPA 0 is left
 *    unmapped, so a NULL dereference is a crash too.
 *
 * Errors: a function named __foo() returns the raw result (NULL or -1 with
 * errno set, and a description in kvm_last_error()); foo() checks it and, on
 * failure, prints the description and exits with status 1, which the harness
 * reports as a failed test.
 */
#ifndef VMRESET_KVM_GUEST_H
#define VMRESET_KVM_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

/*
 * Guest-physical layout. Slot 0 belongs to this library: anonymous memory
 * from GPA 0, at least 16 MiB, rounded up to 2 MiB to hold the image.
 *
 *   0x000000  unmapped page, so NULL dereferences fault
 *   0x001000  GDT: null, code64 (0x08), data (0x10), 64-bit TSS (0x18)
 *   0x002000  TSS
 *   0x003000  PML4
 *   0x004000  PDPT: 64 entries, one per GiB
 *   0x005000  page table for the first 2 MiB (the only 4 KiB mappings)
 *   0x010000  64 page directories of 2 MiB pages, up to 0x050000
 *   0x200000  vCPU stacks, 64 KiB each, up to 0x400000
 *   0x400000  the test binary's image, at its link addresses
 *
 * Page tables map GPA 0 - 64 GiB 1:1, read-write and executable. Test memory
 * goes at VM_TEST_GPA (1 GiB) and above, through vm_add_slot(); an access to
 * a GPA without a slot exits to the host as MMIO, which vcpu_run() reports.
 */
#define VM_GDT_GPA		0x1000ULL
#define VM_TSS_GPA		0x2000ULL
#define VM_PML4_GPA		0x3000ULL
#define VM_PDPT_GPA		0x4000ULL
#define VM_PT0_GPA		0x5000ULL
#define VM_PD_GPA		0x10000ULL
#define VM_NR_PDS		64
#define VM_STACKS_GPA		0x200000ULL
#define VM_STACK_SIZE		0x10000ULL
#define VM_MAX_VCPUS		32
#define VM_IMAGE_GPA		0x400000ULL
#define VM_SLOT0_MIN_SIZE	(16ULL << 20)
#define VM_MAPPED_SIZE		((uint64_t)VM_NR_PDS << 30)
#define VM_TEST_GPA		0x40000000ULL

#define VM_CODE_SEL		0x08
#define VM_DATA_SEL		0x10
#define VM_TSS_SEL		0x18	/* 16 bytes */
#define VM_UCODE_SEL		0x28	/* DPL 3 */
#define VM_UDATA_SEL		0x30	/* DPL 3 */
#define VM_GDT_ENTRIES		7

/* For KVM_SET_TSS_ADDR: Intel needs it (real-mode emulation), AMD ignores it. */
#define VM_TSS_ADDR		0xfffbd000ULL

#define VM_MAX_SLOTS		32
#define VM_PAGE_SIZE		4096ULL

/* ------------------------------------------------------------------------
 * Guest -> host calls ("ucalls")
 *
 * outl to UCALL_PORT with eax = command and the arguments in rdi, rsi, rcx,
 * r8, r9 (not rdx: the port number lives there). The host reads them with
 * KVM_GET_REGS. No memory is involved, so ucalls work whatever the guest did
 * to its memory.
 */
#define UCALL_PORT		0x7f0
#define UCALL_MAX_ARGS		5

/* Macros, not an enum: the exit trampoline's assembly uses them too. */
#define UCALL_ERROR		(-1)	/* not a ucall: a crash, a stray exit... */
#define UCALL_NONE		0
#define UCALL_SYNC		1	/* args[0]: the value given to GUEST_SYNC() */
#define UCALL_DONE		2	/* args[0]: the guest function's result */
#define UCALL_ABORT		3	/* see GUEST_ASSERT() */

/* Arguments of UCALL_ABORT. */
#define UCALL_ABORT_LINE	0
#define UCALL_ABORT_FILE	1	/* address of __FILE__ in the image */
#define UCALL_ABORT_EXPR	2	/* address of the failed expression */
#define UCALL_ABORT_A		3
#define UCALL_ABORT_B		4

struct ucall {
	uint64_t cmd;
	uint64_t args[UCALL_MAX_ARGS];
};

/*
 * Marks a function that runs in the guest. It must exist out of line, and
 * with its own signature: the guest enters it by address, and the host may
 * call the very same code natively to compute the expected result.
 */
#ifdef __clang__
#define GUEST_CODE		__attribute__((noinline, used))
#else
#define GUEST_CODE		__attribute__((noipa, used))
#endif

static inline void guest_ucall(uint64_t cmd, uint64_t a0, uint64_t a1,
			       uint64_t a2, uint64_t a3, uint64_t a4)
{
	register uint64_t r8 __asm__("r8") = a3;
	register uint64_t r9 __asm__("r9") = a4;

	/* "memory": the guest's stores are done before the host looks. */
	__asm__ volatile("outl %%eax, %%dx"
			 : : "a"(cmd), "d"((uint16_t)UCALL_PORT), "D"(a0),
			     "S"(a1), "c"(a2), "r"(r8), "r"(r9)
			 : "memory");
}

/* The guest cannot go on after these: re-running it repeats the report. */
static inline void __attribute__((noreturn)) guest_done(uint64_t val)
{
	for (;;)
		guest_ucall(UCALL_DONE, val, 0, 0, 0, 0);
}

static inline void __attribute__((noreturn))
guest_abort(const char *file, uint64_t line, const char *expr, uint64_t a,
	    uint64_t b)
{
	for (;;)
		guest_ucall(UCALL_ABORT, line, (uint64_t)file, (uint64_t)expr,
			    a, b);
}

/* Pauses the guest and hands @val to the host; the next vcpu_run() resumes. */
#define GUEST_SYNC(val)		guest_ucall(UCALL_SYNC, (uint64_t)(val), 0, 0, 0, 0)
#define GUEST_DONE()		guest_done(0)

/* The host sees UCALL_ABORT with this line, and fails the test with it. */
#define GUEST_ASSERT(cond)							\
	do {									\
		if (!(cond))							\
			guest_abort(__FILE__, __LINE__, #cond, 0, 0);		\
	} while (0)

#define GUEST_ASSERT_EQ(a, b)							\
	do {									\
		uint64_t __ga = (uint64_t)(a), __gb = (uint64_t)(b);		\
										\
		if (__ga != __gb)						\
			guest_abort(__FILE__, __LINE__, #a " == " #b, __ga,	\
				    __gb);					\
	} while (0)

/* ------------------------------------------------------------------------
 * Host side
 */

struct kvm_vm;

struct kvm_vcpu {
	struct kvm_vm *vm;
	uint32_t id;
	unsigned int index;	/* creation order; picks the stack */
	int fd;			/* vCPU fd, for raw ioctls */
	struct kvm_run *run;
	uint64_t stack_top;
	/* The last exit was port I/O or MMIO that KVM completes on entry. */
	bool completion_pending;
	char exit_str[256];
};

struct kvm_vm_slot {
	uint32_t slot;
	uint64_t gpa;
	uint64_t size;
	void *hva;
};

struct kvm_vm {
	int kvm_fd;		/* /dev/kvm */
	int fd;			/* VM fd, for raw ioctls */
	void *mem;		/* slot 0, GPA 0 */
	uint64_t mem_size;
	uint64_t image_start, image_end;
	struct kvm_cpuid2 *cpuid;
	size_t run_size;
	unsigned int nr_vcpus;
	struct kvm_vcpu *vcpus[VM_MAX_VCPUS];
	unsigned int nr_slots;
	struct kvm_vm_slot slots[VM_MAX_SLOTS];
};

/* The description of the last __foo() failure in this thread. */
const char *kvm_last_error(void);

/* /dev/kvm, O_RDWR | O_CLOEXEC; -1 with errno if absent. */
int kvm_open(void);
/* NULL when KVM is usable, else why not ("no /dev/kvm", ...). */
const char *kvm_unavailable_reason(void);
bool kvm_available(void);

/* For harness.h tests: skip the calling test when there is no usable KVM. */
#define TEST_REQUIRE_KVM()							\
	do {									\
		const char *__why = kvm_unavailable_reason();			\
										\
		if (__why)							\
			SKIP(return, "%s", __why);				\
	} while (0)

struct kvm_vm *__vm_create(void);
struct kvm_vm *vm_create(void);
/* Closes vCPU and VM fds and unmaps what the library mapped; NULL is fine. */
void vm_free(struct kvm_vm *vm);

/*
 * Maps @size bytes at @hva (any origin: anonymous, a file...) at @gpa.
 * Slot 0 is the library's. __vm_add_slot() returns the ioctl's result.
 */
int __vm_add_slot(struct kvm_vm *vm, uint32_t slot, uint64_t gpa,
		  uint64_t size, void *hva, uint32_t flags);
int vm_add_slot(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		void *hva, uint32_t flags);
int __vm_remove_slot(struct kvm_vm *vm, uint32_t slot);
void vm_remove_slot(struct kvm_vm *vm, uint32_t slot);

/* Host address of guest-physical @gpa, or NULL if no slot holds it. */
void *addr_gpa2hva(struct kvm_vm *vm, uint64_t gpa);
/* Guest virtual == guest physical; e.g. the guest's copy of a global. */
#define addr_gva2hva(vm, gva)	addr_gpa2hva(vm, (uint64_t)(uintptr_t)(gva))

/*
 * The string at image address @addr (a guest's __FILE__ or expression), or
 * NULL when @addr is not a NUL-terminated string inside the image: the guest
 * could pass anything.
 */
const char *vm_image_str(struct kvm_vm *vm, uint64_t addr);

/*
 * Creates vCPU @id to run @guest_fn(args...). Up to 6 arguments, each passed
 * as uint64_t (the macros below cast them, so plain ints are safe).
 */
struct kvm_vcpu *__vcpu_add(struct kvm_vm *vm, uint32_t id, void *guest_fn,
			    int nargs, ...);
struct kvm_vcpu *vcpu_add(struct kvm_vm *vm, uint32_t id, void *guest_fn,
			  int nargs, ...);

/*
 * Restarts @vcpu at @guest_fn(args...) on a fresh stack with fresh registers
 * and segment/control state, e.g. to run guest code again after resetting
 * memory. Safe right after any exit: an I/O or MMIO exit that KVM would
 * complete on the next entry is completed first, so it cannot move the new
 * RIP.
 */
int __vcpu_set_entry(struct kvm_vcpu *vcpu, void *guest_fn, int nargs, ...);
void vcpu_set_entry(struct kvm_vcpu *vcpu, void *guest_fn, int nargs, ...);
/*
 * After vcpu_set_entry(): run the guest function at CPL 3 (IOPL 3, so its
 * ucalls still work), to test what the host does with a guest's user mode.
 * Returns -1 with kvm_last_error() set on failure.
 */
int vcpu_enter_user(struct kvm_vcpu *vcpu);

/*
 * Runs until the guest's next ucall and returns its command, with @uc (may be
 * NULL) filled in. Anything else (HLT, shutdown, MMIO, failed entry, internal
 * error, KVM_RUN failing) returns UCALL_ERROR. vcpu_exit_str() describes the
 * last stop in words either way.
 */
int vcpu_run(struct kvm_vcpu *vcpu, struct ucall *uc);
const char *vcpu_exit_str(struct kvm_vcpu *vcpu);

/* Run and require UCALL_DONE (or UCALL_SYNC); returns args[0]. */
uint64_t vcpu_run_to_done(struct kvm_vcpu *vcpu);
uint64_t vcpu_run_to_sync(struct kvm_vcpu *vcpu);

/* ------------------------------------------------------------------------
 * Cast every variadic guest argument to uint64_t: on x86-64 an int passed
 * through "..." leaves the upper half of its register undefined.
 */
#define __KVM_NARGS(...)	__KVM_NARGS_(0, ##__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
#define __KVM_NARGS_(_0, _1, _2, _3, _4, _5, _6, n, ...)	n
#define __KVM_U64_0()
#define __KVM_U64_1(a)				, (uint64_t)(a)
#define __KVM_U64_2(a, b)			__KVM_U64_1(a) __KVM_U64_1(b)
#define __KVM_U64_3(a, b, c)			__KVM_U64_2(a, b) __KVM_U64_1(c)
#define __KVM_U64_4(a, b, c, d)			__KVM_U64_3(a, b, c) __KVM_U64_1(d)
#define __KVM_U64_5(a, b, c, d, e)		__KVM_U64_4(a, b, c, d) __KVM_U64_1(e)
#define __KVM_U64_6(a, b, c, d, e, f)		__KVM_U64_5(a, b, c, d, e) __KVM_U64_1(f)
#define __KVM_U64_N(n)				__KVM_U64_##n
#define __KVM_U64(n)				__KVM_U64_N(n)
#define __KVM_U64_ARGS(...)	__KVM_U64(__KVM_NARGS(__VA_ARGS__))(__VA_ARGS__)

#define __vcpu_add(vm, id, fn, nargs, ...)					\
	(__vcpu_add)(vm, id, (void *)(fn), nargs __KVM_U64_ARGS(__VA_ARGS__))
#define vcpu_add(vm, id, fn, nargs, ...)					\
	(vcpu_add)(vm, id, (void *)(fn), nargs __KVM_U64_ARGS(__VA_ARGS__))
#define __vcpu_set_entry(vcpu, fn, nargs, ...)					\
	(__vcpu_set_entry)(vcpu, (void *)(fn), nargs				\
			   __KVM_U64_ARGS(__VA_ARGS__))
#define vcpu_set_entry(vcpu, fn, nargs, ...)					\
	(vcpu_set_entry)(vcpu, (void *)(fn), nargs __KVM_U64_ARGS(__VA_ARGS__))

#endif /* VMRESET_KVM_GUEST_H */
