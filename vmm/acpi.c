// SPDX-License-Identifier: GPL-2.0
/*
 * ACPI tables, only for what the MP table cannot describe: virtio-mmio
 * devices. Debian's kernels are built without
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and without device tree on x86, so a
 * virtio-mmio device must come from the DSDT (_HID "LNRO0005", as QEMU's
 * microvm and Firecracker describe theirs). Hardware-reduced ACPI: no PM
 * timer, no SCI, no i8042 (so Linux does not probe one), no CMOS RTC.
 *
 * Tables at ACPI_GPA (in the reserved low range): RSDP, XSDT, FADT, MADT,
 * DSDT. The kernel finds the RSDP through boot_params.acpi_rsdp_addr.
 */
#include <string.h>
#include "vmm.h"

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint8_t csum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "VMRSET", 6);
	memcpy(t + 16, "VMRESET ", 8);
	put32(t + 24, 1);
	memcpy(t + 28, "VMRS", 4);
	put32(t + 32, 1);
	t[9] = csum(t, len);
}

/* AML PkgLength: one byte below 64, else two (the length counts itself). */
static size_t pkglen(uint8_t *p, size_t body)
{
	if (body + 1 < 64) {
		p[0] = body + 1;
		return 1;
	}
	body += 2;
	p[0] = 0x40 | (body & 0xf);
	p[1] = body >> 4;
	return 2;
}

/* Device (Vnnn) { _HID "LNRO0005", _UID n, _CRS { Memory32Fixed, Interrupt } } */
static size_t aml_virtio_mmio(uint8_t *out, int n, uint32_t base, uint32_t irq)
{
	uint8_t body[128], crs[32];
	size_t b = 0, c = 0, l;

	/* _CRS resource template */
	crs[c++] = 0x86, crs[c++] = 0x09, crs[c++] = 0x00, crs[c++] = 0x01;	/* Memory32Fixed RW */
	put32(crs + c, base), c += 4;
	put32(crs + c, 0x1000), c += 4;
	crs[c++] = 0x89, crs[c++] = 0x06, crs[c++] = 0x00;	/* Extended Interrupt */
	crs[c++] = 0x03;	/* consumer, edge, active high, exclusive */
	crs[c++] = 0x01;
	put32(crs + c, irq), c += 4;
	crs[c++] = 0x79, crs[c++] = 0x00;		/* end tag */

	memcpy(body + b, "V00", 3);
	body[b + 3] = '0' + n;
	b += 4;
	body[b++] = 0x08;				/* Name (_HID, "LNRO0005") */
	memcpy(body + b, "_HID", 4), b += 4;
	body[b++] = 0x0d;
	memcpy(body + b, "LNRO0005", 9), b += 9;
	body[b++] = 0x08;				/* Name (_UID, n) */
	memcpy(body + b, "_UID", 4), b += 4;
	body[b++] = 0x0a, body[b++] = n;
	body[b++] = 0x08;				/* Name (_CRS, Buffer) */
	memcpy(body + b, "_CRS", 4), b += 4;
	body[b++] = 0x11;
	{
		uint8_t inner[48];
		size_t i = 0, pl;

		inner[i++] = 0x0a, inner[i++] = c;	/* BufferSize */
		memcpy(inner + i, crs, c), i += c;
		pl = pkglen(body + b, i);
		b += pl;
		memcpy(body + b, inner, i), b += i;
	}
	out[0] = 0x5b, out[1] = 0x82;			/* DeviceOp */
	l = pkglen(out + 2, b);
	memcpy(out + 2 + l, body, b);
	return 2 + l + b;
}

size_t vmm_write_acpi(struct vmm *vm, uint8_t *base, uint64_t gpa)
{
	uint8_t *rsdp = base, *xsdt = base + 64, *fadt = base + 128;
	uint8_t *madt = base + 512, *dsdt = base + 1024, *p;
	uint8_t devs[256];
	size_t nd = 0, scope, mlen;

	memset(base, 0, 2048);
	/* DSDT: Scope (\_SB) { devices } */
	for (unsigned int i = 0; i < vm->nr_mmio; i++)
		nd += aml_virtio_mmio(devs + nd, i, vm->mmio[i].base, vm->mmio[i].irq);
	p = dsdt + 36;
	*p++ = 0x10;					/* ScopeOp */
	scope = pkglen(p, 5 + nd);
	p += scope;
	memcpy(p, "\\_SB_", 5);
	p += 5;
	memcpy(p, devs, nd);
	p += nd;
	header(dsdt, "DSDT", p - dsdt, 2);

	/* MADT: local APIC per vCPU, the IOAPIC. */
	p = madt + 44;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++, p += 8) {
		p[0] = 0, p[1] = 8, p[2] = i, p[3] = i;
		put32(p + 4, 1);			/* enabled */
	}
	p[0] = 1, p[1] = 12, p[2] = vm->nr_vcpus;
	put32(p + 4, 0xfec00000);
	put32(p + 8, 0);
	p += 12;
	mlen = p - madt;
	put32(madt + 36, 0xfee00000);
	put32(madt + 40, 0);
	header(madt, "APIC", mlen, 4);

	/* FADT, revision 6, hardware-reduced. */
	put32(fadt + 40, gpa + 1024);
	put16(fadt + 109, (1 << 2) | (1 << 3) | (1 << 5));	/* no VGA, no MSI, no CMOS RTC */
	put32(fadt + 112, 1 << 20);			/* HW_REDUCED_ACPI */
	fadt[131] = 3;
	put64(fadt + 140, gpa + 1024);
	memcpy(fadt + 268, "VMRESET\0", 8);
	header(fadt, "FACP", 276, 6);

	put64(xsdt + 36, gpa + 128);
	put64(xsdt + 44, gpa + 512);
	header(xsdt, "XSDT", 52, 1);

	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, "VMRSET", 6);
	rsdp[15] = 2;
	put32(rsdp + 20, 36);
	put64(rsdp + 24, gpa + 64);
	rsdp[8] = csum(rsdp, 20);
	rsdp[32] = csum(rsdp, 36);
	return 2048;
}
