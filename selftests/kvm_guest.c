// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_guest.c - a tiny x86-64 KVM library for the vmreset selftests
 *
 * See kvm_guest.h for the guest's view of the world.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm_guest.h"

#define X86_CR0_PE		(1ULL << 0)
#define X86_CR0_MP		(1ULL << 1)
#define X86_CR0_ET		(1ULL << 4)
#define X86_CR0_NE		(1ULL << 5)
#define X86_CR0_WP		(1ULL << 16)
#define X86_CR0_PG		(1ULL << 31)
#define X86_CR4_PAE		(1ULL << 5)
#define X86_CR4_OSFXSR		(1ULL << 9)
#define X86_CR4_OSXMMEXCPT	(1ULL << 10)
#define EFER_LME		(1ULL << 8)
#define EFER_LMA		(1ULL << 10)

#define PTE_P			(1ULL << 0)
#define PTE_RW			(1ULL << 1)
#define PTE_US			(1ULL << 2)
#define PTE_PS			(1ULL << 7)

#define SZ_2M			(2ULL << 20)
#define ALIGN_UP(x, a)		(((x) + (a) - 1) & ~((a) - 1))

#define GUEST_MAX_ARGS		6

/*
 * Where a guest function returns to: hands its return value (rax) to the host
 * as UCALL_DONE. Running the vCPU again reports the same value again rather
 * than wandering off.
 */
extern const char kvm_guest_exit_trampoline[];
#define __stringify_1(x)	#x
#define __stringify(x)		__stringify_1(x)
__asm__(".pushsection .text\n"
	".globl kvm_guest_exit_trampoline\n"
	".type kvm_guest_exit_trampoline, @function\n"
	"kvm_guest_exit_trampoline:\n"
	"	mov %rax, %rdi\n"
	"1:	mov $" __stringify(UCALL_DONE) ", %eax\n"
	"	mov $" __stringify(UCALL_PORT) ", %edx\n"
	"	outl %eax, %dx\n"
	"	jmp 1b\n"
	".size kvm_guest_exit_trampoline, . - kvm_guest_exit_trampoline\n"
	".popsection\n");

static __thread char kvm_err[256];

const char *kvm_last_error(void)
{
	return kvm_err[0] ? kvm_err : "no error";
}

/* Records a failure; appends strerror(errno) when @err is set. */
static void __attribute__((format(printf, 2, 3)))
kvm_set_err(int err, const char *fmt, ...)
{
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(kvm_err, sizeof(kvm_err), fmt, ap);
	va_end(ap);
	len = strlen(kvm_err);
	if (err && len < sizeof(kvm_err))
		snprintf(kvm_err + len, sizeof(kvm_err) - len, ": %s",
			 strerror(err));
	errno = err ? err : EINVAL;
}

/* The harness counts exit status 1 from a test's child as a failure. */
static void __attribute__((noreturn, format(printf, 1, 2)))
kvm_fail(const char *fmt, ...)
{
	va_list ap;

	printf("# kvm_guest: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	_exit(1);
}

int kvm_open(void)
{
	return open("/dev/kvm", O_RDWR | O_CLOEXEC);
}

const char *kvm_unavailable_reason(void)
{
	static char why[128];
	int fd, ver;

	fd = kvm_open();
	if (fd < 0) {
		if (errno == ENOENT)
			return "no /dev/kvm";
		snprintf(why, sizeof(why), "/dev/kvm: %s", strerror(errno));
		return why;
	}
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (ver != KVM_API_VERSION) {
		snprintf(why, sizeof(why), "KVM API version %d, want %d", ver,
			 KVM_API_VERSION);
		return why;
	}
	return NULL;
}

bool kvm_available(void)
{
	return !kvm_unavailable_reason();
}

/* ------------------------------------------------------------------------
 * VM
 */

struct image_range {
	const ElfW(Phdr) *phdr;
	int phnum;
	ElfW(Addr) bias;
};

static int find_main_program(struct dl_phdr_info *info, size_t size,
			     void *data)
{
	struct image_range *r = data;

	(void)size;
	/* The main program comes first, and it is the one named "". */
	if (info->dlpi_name && info->dlpi_name[0])
		return 0;
	r->phdr = info->dlpi_phdr;
	r->phnum = info->dlpi_phnum;
	r->bias = info->dlpi_addr;
	return 1;
}

/* Copies the image into slot 0 at GPA == VA; sizes slot 0 to hold it. */
static int vm_load_image(struct kvm_vm *vm)
{
	struct image_range r = { 0 };
	uint64_t lo = UINT64_MAX, hi = 0;
	int i;

	dl_iterate_phdr(find_main_program, &r);
	if (!r.phdr) {
		kvm_set_err(0, "cannot find the program's ELF headers");
		return -1;
	}
	if (r.bias) {
		kvm_set_err(0, "test binary is position-independent; link it with -no-pie");
		return -1;
	}
	for (i = 0; i < r.phnum; i++) {
		if (r.phdr[i].p_type != PT_LOAD)
			continue;
		if (r.phdr[i].p_vaddr < lo)
			lo = r.phdr[i].p_vaddr;
		if (r.phdr[i].p_vaddr + r.phdr[i].p_memsz > hi)
			hi = r.phdr[i].p_vaddr + r.phdr[i].p_memsz;
	}
	if (lo < VM_IMAGE_GPA || hi > VM_MAPPED_SIZE) {
		kvm_set_err(0, "image at 0x%llx-0x%llx, outside 0x%llx-0x%llx",
			    (unsigned long long)lo, (unsigned long long)hi,
			    VM_IMAGE_GPA, (unsigned long long)VM_MAPPED_SIZE);
		return -1;
	}
	vm->image_start = lo;
	vm->image_end = hi;
	vm->mem_size = ALIGN_UP(hi, SZ_2M);
	if (vm->mem_size < VM_SLOT0_MIN_SIZE)
		vm->mem_size = VM_SLOT0_MIN_SIZE;

	vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		kvm_set_err(errno, "mmap %llu bytes for slot 0",
			    (unsigned long long)vm->mem_size);
		return -1;
	}
	/* The live memory, not the file: .data as it is now, .bss included. */
	for (i = 0; i < r.phnum; i++) {
		const ElfW(Phdr) *ph = &r.phdr[i];

		if (ph->p_type == PT_LOAD)
			memcpy((char *)vm->mem + ph->p_vaddr,
			       (const void *)ph->p_vaddr, ph->p_memsz);
	}
	return 0;
}

static void vm_build_tables(struct kvm_vm *vm)
{
	uint64_t *gdt = (uint64_t *)((char *)vm->mem + VM_GDT_GPA);
	uint64_t *pml4 = (uint64_t *)((char *)vm->mem + VM_PML4_GPA);
	uint64_t *pdpt = (uint64_t *)((char *)vm->mem + VM_PDPT_GPA);
	uint64_t *pt0 = (uint64_t *)((char *)vm->mem + VM_PT0_GPA);
	uint8_t *tss = (uint8_t *)vm->mem + VM_TSS_GPA;
	uint64_t i, j;

	/*
	 * The CPU only reads descriptors when a selector is loaded, which our
	 * guests never do; the entries match what KVM_SET_SREGS sets all the
	 * same, so that an iretq or a debugger sees a consistent GDT.
	 */
	gdt[0] = 0;
	gdt[VM_CODE_SEL / 8] = 0x00af9b000000ffffULL;	/* L, P, DPL 0, code */
	gdt[VM_DATA_SEL / 8] = 0x00cf93000000ffffULL;	/* D/B, P, data rw */
	gdt[VM_TSS_SEL / 8] = 0x67 |				/* limit */
			      (VM_TSS_GPA & 0xffffff) << 16 |
			      0xbULL << 40 |			/* busy TSS */
			      1ULL << 47 |			/* present */
			      ((VM_TSS_GPA >> 24) & 0xff) << 56;
	gdt[VM_TSS_SEL / 8 + 1] = VM_TSS_GPA >> 32;
	gdt[VM_UCODE_SEL / 8] = 0x00affb000000ffffULL;	/* L, P, DPL 3, code */
	gdt[VM_UDATA_SEL / 8] = 0x00cff3000000ffffULL;	/* D/B, P, DPL 3, data */
	/* I/O bitmap base past the limit: no bitmap. */
	tss[0x66] = 0x68;

	/*
	 * Everything is user-accessible too (CR4 has no SMEP/SMAP), so that a
	 * test can drop a guest function to CPL 3 with vcpu_enter_user().
	 */
	pml4[0] = VM_PDPT_GPA | PTE_P | PTE_RW | PTE_US;
	for (i = 0; i < VM_NR_PDS; i++) {
		uint64_t *pd = (uint64_t *)((char *)vm->mem + VM_PD_GPA +
					    i * VM_PAGE_SIZE);

		pdpt[i] = (VM_PD_GPA + i * VM_PAGE_SIZE) | PTE_P | PTE_RW | PTE_US;
		for (j = 0; j < 512; j++)
			pd[j] = (i << 30 | j << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS;
	}
	/* 4 KiB pages for the first 2 MiB, to leave page 0 out. */
	((uint64_t *)((char *)vm->mem + VM_PD_GPA))[0] =
		VM_PT0_GPA | PTE_P | PTE_RW | PTE_US;
	pt0[0] = 0;
	for (j = 1; j < 512; j++)
		pt0[j] = j << 12 | PTE_P | PTE_RW | PTE_US;
}

static struct kvm_cpuid2 *get_supported_cpuid(int kvm_fd)
{
	struct kvm_cpuid2 *cpuid = NULL;
	int nent = 64;

	for (;;) {
		free(cpuid);
		cpuid = calloc(1, sizeof(*cpuid) +
				  nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid) {
			kvm_set_err(ENOMEM, "KVM_GET_SUPPORTED_CPUID");
			return NULL;
		}
		cpuid->nent = nent;
		if (!ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid))
			return cpuid;
		if (errno != E2BIG || nent >= 4096) {
			kvm_set_err(errno, "KVM_GET_SUPPORTED_CPUID");
			free(cpuid);
			return NULL;
		}
		nent *= 2;
	}
}

struct kvm_vm *__vm_create(void)
{
	struct kvm_userspace_memory_region region;
	struct kvm_vm *vm;
	int ret, err;

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		kvm_set_err(ENOMEM, "vm_create");
		return NULL;
	}
	vm->fd = -1;
	vm->kvm_fd = kvm_open();
	if (vm->kvm_fd < 0) {
		kvm_set_err(errno, "open /dev/kvm");
		goto err_free;
	}
	ret = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ret != KVM_API_VERSION) {
		kvm_set_err(ret < 0 ? errno : 0, "KVM API version %d, want %d",
			    ret, KVM_API_VERSION);
		goto err_free;
	}
	do
		vm->fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (vm->fd < 0 && errno == EINTR);
	if (vm->fd < 0) {
		kvm_set_err(errno, "KVM_CREATE_VM");
		goto err_free;
	}
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)VM_TSS_ADDR)) {
		kvm_set_err(errno, "KVM_SET_TSS_ADDR");
		goto err_free;
	}
	ret = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret < (int)sizeof(struct kvm_run)) {
		kvm_set_err(ret < 0 ? errno : 0, "KVM_GET_VCPU_MMAP_SIZE = %d",
			    ret);
		goto err_free;
	}
	vm->run_size = ret;
	vm->cpuid = get_supported_cpuid(vm->kvm_fd);
	if (!vm->cpuid)
		goto err_free;
	if (vm_load_image(vm))
		goto err_free;
	vm_build_tables(vm);

	region = (struct kvm_userspace_memory_region) {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->mem_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region)) {
		kvm_set_err(errno, "KVM_SET_USER_MEMORY_REGION slot 0");
		goto err_free;
	}
	return vm;

err_free:
	err = errno;
	vm_free(vm);
	errno = err;
	return NULL;
}

struct kvm_vm *vm_create(void)
{
	struct kvm_vm *vm = __vm_create();

	if (!vm)
		kvm_fail("vm_create: %s", kvm_last_error());
	return vm;
}

void vm_free(struct kvm_vm *vm)
{
	unsigned int i;

	if (!vm)
		return;
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_vcpu *vcpu = vm->vcpus[i];

		munmap(vcpu->run, vm->run_size);
		close(vcpu->fd);
		free(vcpu);
	}
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	free(vm->cpuid);
	free(vm);
}

static struct kvm_vm_slot *vm_find_slot(struct kvm_vm *vm, uint32_t slot)
{
	unsigned int i;

	for (i = 0; i < vm->nr_slots; i++)
		if (vm->slots[i].slot == slot)
			return &vm->slots[i];
	return NULL;
}

int __vm_add_slot(struct kvm_vm *vm, uint32_t slot, uint64_t gpa,
		  uint64_t size, void *hva, uint32_t flags)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};
	struct kvm_vm_slot *s;
	int ret;

	ret = ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region);
	if (ret) {
		kvm_set_err(errno, "KVM_SET_USER_MEMORY_REGION slot %u gpa 0x%llx size 0x%llx",
			    slot, (unsigned long long)gpa,
			    (unsigned long long)size);
		return ret;
	}
	/* Bookkeeping for addr_gpa2hva() only; KVM has the real table. */
	s = vm_find_slot(vm, slot);
	if (!s && vm->nr_slots < VM_MAX_SLOTS)
		s = &vm->slots[vm->nr_slots++];
	if (s)
		*s = (struct kvm_vm_slot) { slot, gpa, size, hva };
	return 0;
}

int vm_add_slot(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		void *hva, uint32_t flags)
{
	if (!slot)
		kvm_fail("vm_add_slot: slot 0 belongs to the library");
	if (__vm_add_slot(vm, slot, gpa, size, hva, flags))
		kvm_fail("vm_add_slot: %s", kvm_last_error());
	return 0;
}

int __vm_remove_slot(struct kvm_vm *vm, uint32_t slot)
{
	struct kvm_userspace_memory_region region = { .slot = slot };
	struct kvm_vm_slot *s;

	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region)) {
		kvm_set_err(errno, "removing slot %u", slot);
		return -1;
	}
	s = vm_find_slot(vm, slot);
	if (s)
		*s = vm->slots[--vm->nr_slots];
	return 0;
}

void vm_remove_slot(struct kvm_vm *vm, uint32_t slot)
{
	if (__vm_remove_slot(vm, slot))
		kvm_fail("vm_remove_slot: %s", kvm_last_error());
}

void *addr_gpa2hva(struct kvm_vm *vm, uint64_t gpa)
{
	unsigned int i;

	if (gpa < vm->mem_size)
		return (char *)vm->mem + gpa;
	for (i = 0; i < vm->nr_slots; i++) {
		struct kvm_vm_slot *s = &vm->slots[i];

		if (gpa >= s->gpa && gpa - s->gpa < s->size)
			return (char *)s->hva + (gpa - s->gpa);
	}
	return NULL;
}

const char *vm_image_str(struct kvm_vm *vm, uint64_t addr)
{
	/* The host's own copy of the image: read-only data is the same. */
	if (addr < vm->image_start || addr >= vm->image_end)
		return NULL;
	if (!memchr((const void *)(uintptr_t)addr, '\0', vm->image_end - addr))
		return NULL;
	return (const char *)(uintptr_t)addr;
}

/* ------------------------------------------------------------------------
 * vCPU
 */

static void seg_code64(struct kvm_segment *s)
{
	*s = (struct kvm_segment) {
		.limit = 0xffffffff,
		.selector = VM_CODE_SEL,
		.type = 0xb,		/* execute/read, accessed */
		.present = 1,
		.s = 1,
		.l = 1,			/* with D/B clear, or VMRUN refuses */
		.g = 1,
	};
}

static void seg_data(struct kvm_segment *s)
{
	*s = (struct kvm_segment) {
		.limit = 0xffffffff,
		.selector = VM_DATA_SEL,
		.type = 0x3,		/* read/write, accessed */
		.present = 1,
		.db = 1,
		.s = 1,
		.g = 1,
	};
}

static int vcpu_init_sregs(struct kvm_vcpu *vcpu)
{
	struct kvm_sregs sregs;

	/* Start from KVM's values: keeps apic_base and the rest coherent. */
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs)) {
		kvm_set_err(errno, "KVM_GET_SREGS");
		return -1;
	}
	seg_code64(&sregs.cs);
	seg_data(&sregs.ds);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	/* VMX wants a usable TR even when nothing will ever switch tasks. */
	sregs.tr = (struct kvm_segment) {
		.base = VM_TSS_GPA,
		.limit = 0x67,
		.selector = VM_TSS_SEL,
		.type = 0xb,		/* 64-bit TSS, busy */
		.present = 1,
	};
	sregs.ldt = (struct kvm_segment) { .unusable = 1 };
	sregs.gdt.base = VM_GDT_GPA;
	sregs.gdt.limit = VM_GDT_ENTRIES * 8 - 1;
	/* Empty IDT: any exception escalates to a triple fault. */
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE |
		    X86_CR0_WP | X86_CR0_PG;
	sregs.cr3 = VM_PML4_GPA;
	sregs.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs)) {
		kvm_set_err(errno, "KVM_SET_SREGS (long mode)");
		return -1;
	}
	return 0;
}

static int vcpu_set_entry_va(struct kvm_vcpu *vcpu, void *guest_fn,
			     int nargs, va_list ap)
{
	struct kvm_vm *vm = vcpu->vm;
	struct kvm_regs regs = { 0 };
	uint64_t args[GUEST_MAX_ARGS] = { 0 };
	int i;

	if (nargs < 0 || nargs > GUEST_MAX_ARGS) {
		kvm_set_err(0, "%d guest arguments, at most %d", nargs,
			    GUEST_MAX_ARGS);
		return -1;
	}
	if ((uintptr_t)guest_fn < vm->image_start ||
	    (uintptr_t)guest_fn >= vm->image_end) {
		kvm_set_err(0, "guest function %p is not in the image",
			    guest_fn);
		return -1;
	}
	for (i = 0; i < nargs; i++)
		args[i] = va_arg(ap, uint64_t);

	/*
	 * KVM finishes an I/O or MMIO exit on the next KVM_RUN, and for port
	 * I/O that means skipping the instruction: new registers set before
	 * that would see RIP moved. An immediate_exit run completes it and
	 * returns at once with EINTR.
	 */
	if (vcpu->completion_pending) {
		vcpu->run->immediate_exit = 1;
		i = ioctl(vcpu->fd, KVM_RUN, 0);
		vcpu->run->immediate_exit = 0;
		if (i && errno != EINTR) {
			kvm_set_err(errno, "KVM_RUN to complete a pending exit");
			return -1;
		}
		vcpu->completion_pending = false;
	}

	if (vcpu_init_sregs(vcpu))
		return -1;

	/* SysV: RSP + 8 is 16-byte aligned at function entry. */
	regs.rsp = vcpu->stack_top - 8;
	*(uint64_t *)addr_gpa2hva(vm, regs.rsp) =
		(uintptr_t)kvm_guest_exit_trampoline;
	regs.rip = (uintptr_t)guest_fn;
	regs.rflags = 0x2;
	regs.rdi = args[0];
	regs.rsi = args[1];
	regs.rdx = args[2];
	regs.rcx = args[3];
	regs.r8 = args[4];
	regs.r9 = args[5];
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs)) {
		kvm_set_err(errno, "KVM_SET_REGS");
		return -1;
	}
	vcpu->exit_str[0] = '\0';
	return 0;
}

int (__vcpu_set_entry)(struct kvm_vcpu *vcpu, void *guest_fn, int nargs, ...)
{
	va_list ap;
	int ret;

	va_start(ap, nargs);
	ret = vcpu_set_entry_va(vcpu, guest_fn, nargs, ap);
	va_end(ap);
	return ret;
}

void (vcpu_set_entry)(struct kvm_vcpu *vcpu, void *guest_fn, int nargs, ...)
{
	va_list ap;
	int ret;

	va_start(ap, nargs);
	ret = vcpu_set_entry_va(vcpu, guest_fn, nargs, ap);
	va_end(ap);
	if (ret)
		kvm_fail("vcpu_set_entry: vcpu %u: %s", vcpu->id,
			 kvm_last_error());
}

int vcpu_enter_user(struct kvm_vcpu *vcpu)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_segment *segs[] = { &sregs.ds, &sregs.es, &sregs.fs,
				       &sregs.gs, &sregs.ss };

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs)) {
		kvm_set_err(errno, "KVM_GET_SREGS");
		return -1;
	}
	/* SVM takes the CPL from SS.DPL, VMX checks CS.DPL == SS.DPL == RPL. */
	sregs.cs.selector = VM_UCODE_SEL | 3;
	sregs.cs.dpl = 3;
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		segs[i]->selector = VM_UDATA_SEL | 3;
		segs[i]->dpl = 3;
	}
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs)) {
		kvm_set_err(errno, "KVM_SET_SREGS (CPL 3)");
		return -1;
	}
	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs)) {
		kvm_set_err(errno, "KVM_GET_REGS");
		return -1;
	}
	/* IOPL 3: the ucalls are port writes. */
	regs.rflags |= 3 << 12;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs)) {
		kvm_set_err(errno, "KVM_SET_REGS (IOPL 3)");
		return -1;
	}
	return 0;
}

static struct kvm_vcpu *vcpu_add_va(struct kvm_vm *vm, uint32_t id,
				    void *guest_fn, int nargs, va_list ap)
{
	struct kvm_vcpu *vcpu;
	int err;

	if (vm->nr_vcpus >= VM_MAX_VCPUS) {
		kvm_set_err(ENOSPC, "more than %d vCPUs", VM_MAX_VCPUS);
		return NULL;
	}
	vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu) {
		kvm_set_err(ENOMEM, "vcpu_add");
		return NULL;
	}
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->index = vm->nr_vcpus;
	vcpu->stack_top = VM_STACKS_GPA + (vcpu->index + 1) * VM_STACK_SIZE;
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		kvm_set_err(errno, "KVM_CREATE_VCPU %u", id);
		goto err_free;
	}
	vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		kvm_set_err(errno, "mmap kvm_run");
		goto err_close;
	}
	/* Before the sregs: KVM refuses EFER.LME unless CPUID says LM. */
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, vm->cpuid)) {
		kvm_set_err(errno, "KVM_SET_CPUID2");
		goto err_unmap;
	}
	if (vcpu_set_entry_va(vcpu, guest_fn, nargs, ap))
		goto err_unmap;
	vm->vcpus[vm->nr_vcpus++] = vcpu;
	return vcpu;

err_unmap:
	err = errno;
	munmap(vcpu->run, vm->run_size);
	errno = err;
err_close:
	err = errno;
	close(vcpu->fd);
	errno = err;
err_free:
	free(vcpu);
	return NULL;
}

struct kvm_vcpu *(__vcpu_add)(struct kvm_vm *vm, uint32_t id, void *guest_fn,
			      int nargs, ...)
{
	struct kvm_vcpu *vcpu;
	va_list ap;

	va_start(ap, nargs);
	vcpu = vcpu_add_va(vm, id, guest_fn, nargs, ap);
	va_end(ap);
	return vcpu;
}

struct kvm_vcpu *(vcpu_add)(struct kvm_vm *vm, uint32_t id, void *guest_fn,
			    int nargs, ...)
{
	struct kvm_vcpu *vcpu;
	va_list ap;

	va_start(ap, nargs);
	vcpu = vcpu_add_va(vm, id, guest_fn, nargs, ap);
	va_end(ap);
	if (!vcpu)
		kvm_fail("vcpu_add: vcpu %u: %s", id, kvm_last_error());
	return vcpu;
}

/* ------------------------------------------------------------------------
 * Running
 */

static const char *exit_reason_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "UNKNOWN",
		[KVM_EXIT_EXCEPTION] = "EXCEPTION",
		[KVM_EXIT_IO] = "IO",
		[KVM_EXIT_HYPERCALL] = "HYPERCALL",
		[KVM_EXIT_DEBUG] = "DEBUG",
		[KVM_EXIT_HLT] = "HLT",
		[KVM_EXIT_MMIO] = "MMIO",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "SHUTDOWN",
		[KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY",
		[KVM_EXIT_INTR] = "INTR",
		[KVM_EXIT_SET_TPR] = "SET_TPR",
		[KVM_EXIT_TPR_ACCESS] = "TPR_ACCESS",
		[KVM_EXIT_NMI] = "NMI",
		[KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
		[KVM_EXIT_SYSTEM_EVENT] = "SYSTEM_EVENT",
		[KVM_EXIT_IOAPIC_EOI] = "IOAPIC_EOI",
		[KVM_EXIT_HYPERV] = "HYPERV",
		[KVM_EXIT_X86_RDMSR] = "X86_RDMSR",
		[KVM_EXIT_X86_WRMSR] = "X86_WRMSR",
		[KVM_EXIT_DIRTY_RING_FULL] = "DIRTY_RING_FULL",
		[KVM_EXIT_X86_BUS_LOCK] = "X86_BUS_LOCK",
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "?";
}

/* RIP for messages; the stop may have left nothing better to say. */
static unsigned long long vcpu_rip(struct kvm_vcpu *vcpu)
{
	struct kvm_regs regs;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs))
		return ~0ULL;
	return regs.rip;
}

#define vcpu_err(vcpu, fmt, ...)						\
	snprintf((vcpu)->exit_str, sizeof((vcpu)->exit_str), "vcpu %u: " fmt,	\
		 (vcpu)->id, ##__VA_ARGS__)

static int vcpu_decode_ucall(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	const char *file, *expr;

	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 ||
	    run->io.count != 1) {
		vcpu_err(vcpu, "malformed ucall: %s size %u count %u",
			 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
			 run->io.size, run->io.count);
		return UCALL_ERROR;
	}
	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs)) {
		vcpu_err(vcpu, "KVM_GET_REGS: %s", strerror(errno));
		return UCALL_ERROR;
	}
	uc->cmd = (uint32_t)regs.rax;
	uc->args[0] = regs.rdi;
	uc->args[1] = regs.rsi;
	uc->args[2] = regs.rcx;
	uc->args[3] = regs.r8;
	uc->args[4] = regs.r9;

	switch (uc->cmd) {
	case UCALL_SYNC:
		vcpu_err(vcpu, "GUEST_SYNC(0x%llx)",
			 (unsigned long long)uc->args[0]);
		return UCALL_SYNC;
	case UCALL_DONE:
		vcpu_err(vcpu, "guest returned 0x%llx",
			 (unsigned long long)uc->args[0]);
		return UCALL_DONE;
	case UCALL_ABORT:
		file = vm_image_str(vcpu->vm, uc->args[UCALL_ABORT_FILE]);
		expr = vm_image_str(vcpu->vm, uc->args[UCALL_ABORT_EXPR]);
		vcpu_err(vcpu, "guest assertion failed at %s:%llu: %s (0x%llx, 0x%llx)",
			 file ? file : "?",
			 (unsigned long long)uc->args[UCALL_ABORT_LINE],
			 expr ? expr : "?",
			 (unsigned long long)uc->args[UCALL_ABORT_A],
			 (unsigned long long)uc->args[UCALL_ABORT_B]);
		return UCALL_ABORT;
	default:
		vcpu_err(vcpu, "unknown ucall %llu at rip 0x%llx",
			 (unsigned long long)uc->cmd, regs.rip);
		return UCALL_ERROR;
	}
}

int vcpu_run(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	struct kvm_run *run = vcpu->run;
	struct ucall dummy;
	unsigned int i;
	size_t len;
	int ret;

	if (!uc)
		uc = &dummy;
	memset(uc, 0, sizeof(*uc));

	do
		ret = ioctl(vcpu->fd, KVM_RUN, 0);
	while (ret && (errno == EINTR || errno == EAGAIN));
	if (ret) {
		vcpu_err(vcpu, "KVM_RUN: %s", strerror(errno));
		return UCALL_ERROR;
	}
	vcpu->completion_pending = run->exit_reason == KVM_EXIT_IO ||
				   run->exit_reason == KVM_EXIT_MMIO;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		if (run->io.port == UCALL_PORT)
			return vcpu_decode_ucall(vcpu, uc);
		vcpu_err(vcpu, "unexpected port I/O: %s port 0x%x size %u at rip 0x%llx",
			 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
			 run->io.port, run->io.size, vcpu_rip(vcpu));
		break;
	case KVM_EXIT_HLT:
		vcpu_err(vcpu, "guest halted (KVM_EXIT_HLT) at rip 0x%llx",
			 vcpu_rip(vcpu));
		break;
	case KVM_EXIT_SHUTDOWN:
		/* On SVM, KVM has already reset the vCPU: RIP means little. */
		vcpu_err(vcpu, "guest crashed: triple fault (KVM_EXIT_SHUTDOWN), rip now 0x%llx",
			 vcpu_rip(vcpu));
		break;
	case KVM_EXIT_MMIO:
		vcpu_err(vcpu, "guest %s %u bytes at GPA 0x%llx, which no slot backs (KVM_EXIT_MMIO), rip 0x%llx",
			 run->mmio.is_write ? "wrote" : "read", run->mmio.len,
			 (unsigned long long)run->mmio.phys_addr,
			 vcpu_rip(vcpu));
		break;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_err(vcpu, "VM entry failed (KVM_EXIT_FAIL_ENTRY): hardware reason 0x%llx on cpu %u",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
			 run->fail_entry.cpu);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		len = vcpu_err(vcpu, "KVM internal error, suberror %u",
			       run->internal.suberror);
		for (i = 0; i < run->internal.ndata && i < 16 &&
			    len < sizeof(vcpu->exit_str); i++)
			len += snprintf(vcpu->exit_str + len,
					sizeof(vcpu->exit_str) - len,
					" 0x%llx",
					(unsigned long long)run->internal.data[i]);
		break;
	default:
		vcpu_err(vcpu, "unexpected exit %u (KVM_EXIT_%s) at rip 0x%llx",
			 run->exit_reason, exit_reason_name(run->exit_reason),
			 vcpu_rip(vcpu));
		break;
	}
	return UCALL_ERROR;
}

const char *vcpu_exit_str(struct kvm_vcpu *vcpu)
{
	return vcpu->exit_str[0] ? vcpu->exit_str : "vcpu has not run";
}

static uint64_t vcpu_run_to(struct kvm_vcpu *vcpu, int want)
{
	struct ucall uc;

	if (vcpu_run(vcpu, &uc) != want)
		kvm_fail("expected %s, got: %s",
			 want == UCALL_DONE ? "the guest to return" : "GUEST_SYNC",
			 vcpu_exit_str(vcpu));
	return uc.args[0];
}

uint64_t vcpu_run_to_done(struct kvm_vcpu *vcpu)
{
	return vcpu_run_to(vcpu, UCALL_DONE);
}

uint64_t vcpu_run_to_sync(struct kvm_vcpu *vcpu)
{
	return vcpu_run_to(vcpu, UCALL_SYNC);
}
