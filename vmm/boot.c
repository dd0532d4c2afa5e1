// SPDX-License-Identifier: GPL-2.0
/*
 * Direct kernel boot: the Linux x86 boot protocol's 64-bit entry for a
 * bzImage (Documentation/arch/x86/boot.rst), with an initramfs, a command
 * line, an e820 map and an MP table (the platform is an MP-spec PC: no
 * firmware, no ACPI, no PCI).
 *
 * Guest-physical layout below 1 MiB:
 *   0x0500 GDT     0x7000 zero page (boot_params)   0x9000 PML4
 *   0xa000 PDPT    0xb000-0xefff four page directories (4 GiB, 2 MiB pages)
 *   0x20000 command line    0x9fc00 MP table (the kernel scans there)
 * and from the top of RAM down: mailbox, preserved range, initramfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "vmm.h"

#define GDT_GPA		0x500
#define ZERO_PAGE_GPA	0x7000
#define PML4_GPA	0x9000
#define PDPT_GPA	0xa000
#define PD_GPA		0xb000
#define CMDLINE_GPA	0x20000
#define CMDLINE_MAX	2048
#define MPTABLE_GPA	0x9fc00
#define ACPI_GPA	0xe0000
#define BP_ACPI_RSDP	0x070
#define EBDA_START	0x9fc00
#define HIMEM_START	0x100000

#define BOOT_CS		0x10
#define BOOT_DS		0x18

/* boot_params / setup_header offsets */
#define BP_E820_ENTRIES	0x1e8
#define BP_SETUP_SECTS	0x1f1
#define BP_BOOT_FLAG	0x1fe
#define BP_HEADER	0x202
#define BP_VERSION	0x206
#define BP_LOADER	0x210
#define BP_LOADFLAGS	0x211
#define BP_RAMDISK	0x218
#define BP_RAMDISK_SIZE	0x21c
#define BP_HEAP_END	0x224
#define BP_CMDLINE	0x228
#define BP_INITRD_MAX	0x22c
#define BP_ALIGN	0x230
#define BP_XLOADFLAGS	0x236
#define BP_CMDLINE_SIZE	0x238
#define BP_PREF_ADDR	0x258
#define BP_INIT_SIZE	0x260
#define BP_E820_TABLE	0x2d0
#define E820_MAX	128

#define XLF_KERNEL_64	(1 << 0)
#define LOADED_HIGH	(1 << 0)
#define CAN_USE_HEAP	(1 << 7)

#define E820_RAM	1
#define E820_RESERVED	2

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t *read_file(struct vmm *vm, const char *what, const char *path,
			  size_t *len, int *err)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t off = 0;

	if (fd < 0) {
		*err = vmm_fail(vm, errno, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		*err = vmm_fail(vm, EINVAL, "%s %s: not a regular file", what, path);
		close(fd);
		return NULL;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	while (buf && off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, st.st_size - off);

		if (n <= 0) {
			*err = vmm_fail(vm, n ? errno : EIO, "%s %s: read failed",
				    what, path);
			free(buf);
			close(fd);
			return NULL;
		}
		off += n;
	}
	close(fd);
	if (!buf)
		*err = vmm_fail(vm, ENOMEM, "%s %s: out of memory", what, path);
	*len = st.st_size;
	return buf;
}

static void e820_add(uint8_t *zp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t n = zp[BP_E820_ENTRIES];
	uint8_t *e = zp + BP_E820_TABLE + n * 20;

	put64(e, addr);
	put64(e + 8, size);
	put32(e + 16, type);
	zp[BP_E820_ENTRIES] = n + 1;
}

static uint8_t mp_csum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

/*
 * MP spec 1.4 table: one processor entry per vCPU, an ISA bus, the
 * IOAPIC and ISA IRQ i -> IOAPIC pin i (KVM's default GSI routing), as
 * Firecracker writes it. Returns its size.
 */
static size_t write_mptable(struct vmm *vm, uint8_t *base)
{
	uint8_t *fp = base, *hdr = base + 16, *p = hdr + 44;
	uint8_t ioapic_id = vm->nr_vcpus;
	uint16_t entries = 0;

	memset(base, 0, 1024);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++, p += 20, entries++) {
		p[0] = 0;			/* processor */
		p[1] = i;			/* local APIC id */
		p[2] = 0x14;			/* APIC version */
		p[3] = 0x01 | (i == 0 ? 0x02 : 0);	/* enabled, BSP */
		put32(p + 4, 0x600);		/* family 6 */
		put32(p + 8, 0x201);		/* FPU, APIC */
	}
	p[0] = 1;				/* bus */
	memcpy(p + 2, "ISA   ", 6);
	p += 8, entries++;
	p[0] = 2;				/* IOAPIC */
	p[1] = ioapic_id;
	p[2] = 0x11;
	p[3] = 1;
	put32(p + 4, 0xfec00000);
	p += 8, entries++;
	for (int irq = 0; irq < 24; irq++, p += 8, entries++) {
		p[0] = 3;			/* I/O interrupt */
		p[1] = 0;			/* INT */
		p[4] = 0;			/* ISA bus */
		p[5] = irq;
		p[6] = ioapic_id;
		p[7] = irq;
	}
	p[0] = 4, p[1] = 3, p[6] = 0, p[7] = 0;		/* LINT0: ExtINT */
	p += 8, entries++;
	p[0] = 4, p[1] = 1, p[6] = 0xff, p[7] = 1;	/* LINT1: NMI */
	p += 8, entries++;

	memcpy(hdr, "PCMP", 4);
	put16(hdr + 4, p - hdr);
	hdr[6] = 4;
	memcpy(hdr + 8, "VMRESET ", 8);
	memcpy(hdr + 16, "vmreset-vmm ", 12);
	put16(hdr + 34, entries);
	put32(hdr + 36, 0xfee00000);
	hdr[7] = mp_csum(hdr, p - hdr);

	memcpy(fp, "_MP_", 4);
	put32(fp + 4, MPTABLE_GPA + 16);
	fp[8] = 1;
	fp[9] = 4;
	fp[10] = mp_csum(fp, 16);
	return p - base;
}

static void write_page_tables(struct vmm *vm)
{
	uint8_t *ram = vm->ram;

	memset(ram + PML4_GPA, 0, 0x6000);
	put64(ram + PML4_GPA, PDPT_GPA | 0x3);
	for (int g = 0; g < 4; g++) {
		put64(ram + PDPT_GPA + g * 8, (PD_GPA + g * 0x1000) | 0x3);
		for (int i = 0; i < 512; i++)
			put64(ram + PD_GPA + g * 0x1000 + i * 8,
			      ((uint64_t)g << 30 | (uint64_t)i << 21) | 0x83);
	}
	/* null, null, code64 (BOOT_CS), data (BOOT_DS) */
	put64(ram + GDT_GPA, 0);
	put64(ram + GDT_GPA + 8, 0);
	put64(ram + GDT_GPA + BOOT_CS, 0x00af9b000000ffffULL);
	put64(ram + GDT_GPA + BOOT_DS, 0x00cf93000000ffffULL);
}

int vmm_load_kernel(struct vmm *vm)
{
	size_t klen, ilen = 0, setup_len, hdr_len, cmdlen;
	uint8_t *k, *initrd = NULL, *zp = vm->ram + ZERO_PAGE_GPA;
	uint64_t load, init_size, initrd_gpa = 0, top, res_start;
	char cmdline[CMDLINE_MAX];
	int err = 0, n;

	k = read_file(vm, "kernel", vm->o.kernel, &klen, &err);
	if (!k)
		return err;
	if (klen < 0x1000 || get32(k + BP_HEADER) != 0x53726448 ||
	    get16(k + BP_BOOT_FLAG) != 0xaa55) {
		err = vmm_fail(vm, ENOEXEC, "kernel %s: not a bzImage (no \"HdrS\" boot header)",
			   vm->o.kernel);
		goto out;
	}
	if (get16(k + BP_VERSION) < 0x020c || !(get16(k + BP_XLOADFLAGS) & XLF_KERNEL_64)) {
		err = vmm_fail(vm, ENOEXEC, "kernel %s: boot protocol %#x without a 64-bit entry point",
			   vm->o.kernel, get16(k + BP_VERSION));
		goto out;
	}
	setup_len = ((k[BP_SETUP_SECTS] ? k[BP_SETUP_SECTS] : 4) + 1) * 512;
	load = get64(k + BP_PREF_ADDR);
	init_size = get32(k + BP_INIT_SIZE);
	if (load < HIMEM_START)
		load = 0x1000000;

	/* From the top down: mailbox, preserved range, then the initramfs. */
	res_start = vm->keep_gpa ? vm->keep_gpa : vm->mbox_gpa;
	top = res_start;
	if (vm->o.initrd) {
		initrd = read_file(vm, "initrd", vm->o.initrd, &ilen, &err);
		if (!initrd)
			goto out;
		initrd_gpa = (top - ilen) & ~0xfffULL;
		if (ilen > top || initrd_gpa > get32(k + BP_INITRD_MAX))
			initrd_gpa = 0;
	}
	if (load + init_size > (initrd ? initrd_gpa : top) || (initrd && !initrd_gpa)) {
		err = vmm_fail(vm, EFBIG,
			   "kernel %s needs %llu MiB from %#llx%s%s (%zu KiB): too big for %llu MiB of RAM (--mem)",
			   vm->o.kernel, (unsigned long long)(init_size >> 20),
			   (unsigned long long)load, initrd ? " plus initrd " : "",
			   initrd ? vm->o.initrd : "", ilen >> 10,
			   (unsigned long long)(vm->mem_size >> 20));
		goto out;
	}
	memcpy(vm->ram + load, k + setup_len, klen - setup_len);
	if (initrd)
		memcpy(vm->ram + initrd_gpa, initrd, ilen);

	memset(zp, 0, 4096);
	hdr_len = 0x202 + k[0x201] - BP_SETUP_SECTS;
	memcpy(zp + BP_SETUP_SECTS, k + BP_SETUP_SECTS, hdr_len);
	zp[BP_LOADER] = 0xff;
	zp[BP_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	put16(zp + BP_HEAP_END, 0xfe00);
	put32(zp + BP_CMDLINE, CMDLINE_GPA);
	put32(zp + BP_RAMDISK, initrd_gpa);
	put32(zp + BP_RAMDISK_SIZE, ilen);

	/* ACPI only to describe virtio-mmio devices (see acpi.c). */
	n = snprintf(cmdline, sizeof(cmdline),
		     "console=ttyS0 reboot=t panic=-1 %s pci=off "
		     "8250.nr_uarts=1 i8042.nokbd i8042.noaux i8042.nopnp "
		     "no_timer_check no-kvmapf random.trust_cpu=on mitigations=off quiet "
		     "vmreset.mbox=%#llx", vm->nr_mmio ? "" : "acpi=off",
		     (unsigned long long)vm->mbox_gpa);
	if (vm->disk_fd >= 0)
		n += snprintf(cmdline + n, sizeof(cmdline) - n, " vmreset.disk=/dev/vda");
	if (vm->keep_gpa)
		n += snprintf(cmdline + n, sizeof(cmdline) - n, " vmreset.keep=%#llx,%#llx",
			      (unsigned long long)vm->keep_gpa,
			      (unsigned long long)vm->o.keep_size);
	if (vm->o.cmdline && *vm->o.cmdline)
		n += snprintf(cmdline + n, sizeof(cmdline) - n, " %s", vm->o.cmdline);
	cmdlen = strlen(cmdline);
	if ((size_t)n >= sizeof(cmdline) ||
	    (get32(k + BP_CMDLINE_SIZE) && cmdlen > get32(k + BP_CMDLINE_SIZE))) {
		err = vmm_fail(vm, E2BIG, "kernel command line too long (%d bytes): %s",
			   n, vm->o.cmdline ? vm->o.cmdline : "");
		goto out;
	}
	memcpy(vm->ram + CMDLINE_GPA, cmdline, cmdlen + 1);

	e820_add(zp, 0, EBDA_START, E820_RAM);
	e820_add(zp, EBDA_START, 0x100000 - EBDA_START, E820_RESERVED);
	e820_add(zp, HIMEM_START, res_start - HIMEM_START, E820_RAM);
	e820_add(zp, res_start, vm->mem_size - res_start, E820_RESERVED);

	write_mptable(vm, vm->ram + MPTABLE_GPA);
	if (vm->nr_mmio) {
		vmm_write_acpi(vm, vm->ram + ACPI_GPA, ACPI_GPA);
		put64(zp + BP_ACPI_RSDP, ACPI_GPA);
	}
	write_page_tables(vm);
	vm->boot_rip = load + 0x200;
out:
	free(k);
	free(initrd);
	return err;
}

void vmm_setup_boot_cpu(struct vmm *vm, struct kvm_regs *regs,
			struct kvm_sregs *sregs)
{
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = BOOT_CS, .type = 0xb,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = BOOT_DS, .type = 0x3,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};

	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2;
	regs->rip = vm->boot_rip;
	regs->rsi = ZERO_PAGE_GPA;
	regs->rsp = ZERO_PAGE_GPA;	/* the kernel sets its own at once */

	sregs->cs = code;
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->gdt.base = GDT_GPA;
	sregs->gdt.limit = 4 * 8 - 1;
	sregs->idt.base = 0;
	sregs->idt.limit = 0xffff;
	sregs->cr0 = 0x80000011;	/* PG | ET | PE */
	sregs->cr3 = PML4_GPA;
	sregs->cr4 = 0x20;		/* PAE */
	sregs->efer = 0x500;		/* LMA | LME */
}
