// SPDX-License-Identifier: GPL-2.0
/*
 * A quick measurement, side by side in one run: resetting D pages that a
 * guest dirtied, with vmresetfs REVERT and with what KVM fuzzers do today
 * (KVM_GET_DIRTY_LOG, then copy each dirty page back from a snapshot).
 * Every reset is checked to restore the snapshot exactly. Times are
 * logged, not asserted: under emulation only their ratios mean something.
 * The full benchmark is `make bench`.
 */
#define _GNU_SOURCE
#include <time.h>
#include "harness.h"
#include "vmr_guest.h"
#include "vmreset.h"	/* libvmreset, for the netlink REVERT */

#define NPAGES		16384UL		/* 64 MiB of guest RAM */

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

struct method {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	uint8_t *ram;
};

static void setup_vm(struct method *m, uint8_t *ram, uint64_t *params,
		     uint32_t flags)
{
	m->ram = ram;
	m->vm = vm_create();
	vm_add_slot(m->vm, 1, VM_TEST_GPA, NPAGES * PG, ram, flags);
	vm_add_slot(m->vm, 2, PARAM_GPA, PARAM_SIZE, params, 0);
	m->vcpu = vcpu_add(m->vm, 0, guest_read_all, 2, VM_TEST_GPA, NPAGES);
	vcpu_run_to_done(m->vcpu);
}

static void dirty(struct method *m, uint64_t d)
{
	vcpu_set_entry(m->vcpu, guest_write_list, 4, VM_TEST_GPA, PARAM_GPA, d,
		       0xfeed);
	vcpu_run_to_done(m->vcpu);
}

TEST_TIMEOUT(revert_vs_dirty_log, 900)
{
	/* The last case dirties 4096 contiguous pages: one run. */
	static const uint64_t ds[] = { 0, 1, 16, 256, 4096, 4096 };
	static unsigned long bitmap[NPAGES / 64];
	struct method vr, dl;
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
	double t_vr[41], t_dl[41], med_vr[6], med_dl[6];
	uint8_t *snap, *anon;
	uint64_t *params;
	char dir[64];
	int fd;

	TEST_REQUIRE_KVM();
	ASSERT_EQ(0, vmr_mount(dir, "size=256m"));
	fd = vmr_file(dir, "ram", NPAGES * PG);
	ASSERT_LE(0, fd);
	params = mmap(NULL, PARAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	anon = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	snap = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, params);
	ASSERT_NE(MAP_FAILED, anon);
	ASSERT_NE(MAP_FAILED, snap);

	setup_vm(&vr, vmr_map(fd, NPAGES * PG), params, 0);
	ASSERT_NONNULL(vr.ram);
	setup_vm(&dl, anon, params, KVM_MEM_LOG_DIRTY_PAGES);
	for (uint64_t i = 0; i < NPAGES; i++) {
		fill_page(vr.ram, i, pat(5, i));
		fill_page(anon, i, pat(5, i));
	}
	memcpy(snap, anon, NPAGES * PG);
	ASSERT_EQ(0, vmr_snapshot(fd, NULL));
	ASSERT_EQ(0, ioctl(dl.vm->fd, KVM_GET_DIRTY_LOG, &log));

	for (int k = 0; k < 6; k++) {
		uint64_t d = ds[k], stride = d && k < 5 ? NPAGES / d : 1;
		int iters = d >= 4096 ? 9 : d >= 256 ? 21 : 41;

		for (uint64_t i = 0; i < d; i++)
			params[i] = k < 5 ? (i * stride + (i * 7) % stride) % NPAGES : i;
		for (int it = 0; it < iters; it++) {
			uint64_t reverted, copied = 0;
			double t0;

			dirty(&vr, d);
			dirty(&dl, d);

			t0 = now_us();
			ASSERT_EQ(0, vmr_revert(fd, &reverted, NULL));
			t_vr[it] = now_us() - t0;

			t0 = now_us();
			ASSERT_EQ(0, ioctl(dl.vm->fd, KVM_GET_DIRTY_LOG, &log));
			for (uint64_t w = 0; w < NPAGES / 64; w++) {
				unsigned long bits = bitmap[w];

				while (bits) {
					uint64_t p = w * 64 + __builtin_ctzl(bits);

					memcpy(anon + p * PG, snap + p * PG, PG);
					bits &= bits - 1;
					copied++;
				}
			}
			t_dl[it] = now_us() - t0;

			/* A reset that is fast and wrong is worthless. */
			ASSERT_EQ(d, reverted);
			ASSERT_EQ(d, copied);
			for (uint64_t i = 0; i < d; i++) {
				ASSERT_TRUE(page_has(vr.ram, params[i], pat(5, params[i])));
				ASSERT_TRUE(page_has(anon, params[i], pat(5, params[i])));
			}
		}
		ASSERT_EQ(0, memcmp(vr.ram, snap, NPAGES * PG));
		ASSERT_EQ(0, memcmp(anon, snap, NPAGES * PG));
		med_vr[k] = median(t_vr, iters);
		med_dl[k] = median(t_dl, iters);
		TH_LOG("D=%5lu%s vmreset REVERT %9.1f us   KVM_GET_DIRTY_LOG+copy %9.1f us   ratio %.2f",
		       (unsigned long)d, k < 5 ? " scattered " : " contiguous", med_vr[k],
		       med_dl[k], med_dl[k] / med_vr[k]);
	}
	TH_LOG("REVERT: fixed %.1f us, %.2f us per dirty page; dirty log+copy: fixed %.1f us, %.2f us per page",
	       med_vr[0], (med_vr[4] - med_vr[1]) / 4095, med_dl[0],
	       (med_dl[4] - med_dl[1]) / 4095);

	/* The same REVERT through netlink, from the same process. */
	{
		struct vmreset_stats st;
		struct vmreset_nl *nl = vmreset_nl_open(NULL);
		static const uint64_t nds[] = { 0, 16, 256 };

		ASSERT_NONNULL(nl);
		ASSERT_EQ(0, vmr_stats(fd, &st));
		for (int k = 0; k < 3; k++) {
			uint64_t d = nds[k], reverted;

			for (uint64_t i = 0; i < d; i++)
				params[i] = i * (NPAGES / 256);
			for (int it = 0; it < 21; it++) {
				double t0;

				dirty(&vr, d);
				t0 = now_us();
				ASSERT_EQ(0, vmreset_nl_revert(nl, st.id, 0, &reverted, NULL));
				t_vr[it] = now_us() - t0;
				ASSERT_EQ(d, reverted);
				dirty(&vr, d);
				t0 = now_us();
				ASSERT_EQ(0, vmr_revert(fd, &reverted, NULL));
				t_dl[it] = now_us() - t0;
				ASSERT_EQ(d, reverted);
			}
			TH_LOG("D=%5lu scattered  netlink REVERT %9.1f us   ioctl REVERT %9.1f us",
			       (unsigned long)d, median(t_vr, 21), median(t_dl, 21));
		}
		ASSERT_EQ(0, memcmp(vr.ram, snap, NPAGES * PG));
		vmreset_nl_close(nl);
	}

	vm_free(vr.vm);
	vm_free(dl.vm);
	munmap(vr.ram, NPAGES * PG);
	close(fd);
	vmr_umount(dir);
}

TEST_HARNESS_MAIN
