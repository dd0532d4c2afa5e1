// SPDX-License-Identifier: GPL-2.0
/*
 * The VM: KVM setup, guest RAM on vmresetfs, vCPU threads, exits, and the
 * request cycle (run, read the response, reset). State save and load, in
 * the order that matters, are in state.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <regex.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include "vmm.h"
#include "vmreset.h"

#define KICK_SIG	SIGUSR1

enum ev { EV_NONE, EV_READY, EV_DONE, EV_FAIL, EV_CRASH, EV_ERROR, EV_KICK };

static __thread struct kvm_run *tls_run;

static void kick_handler(int sig)
{
	(void)sig;
	/* KVM_RUN checks this on entry: a kick never gets lost. */
	if (tls_run)
		tls_run->immediate_exit = 1;
}

uint64_t vmm_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int vmm_fail(struct vmm *vm, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vm->err, sizeof(vm->err), fmt, ap);
	va_end(ap);
	return -err;
}

const char *vmm_error(const struct vmm *vm)
{
	return vm->err;
}

const char *vmm_console_tail(struct vmm *vm, char *buf, size_t len)
{
	size_t n = sizeof(vm->console_tail), o = 0;

	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < n && o + 1 < len; i++) {
		char c = vm->console_tail[(vm->console_pos + i) % n];

		if (c)
			buf[o++] = c;
	}
	pthread_mutex_unlock(&vm->lock);
	buf[o] = 0;
	return buf;
}

static void console_tx(struct vmm *vm, uint8_t c)
{
	vm->console_tail[vm->console_pos++ % sizeof(vm->console_tail)] = c;
	if (vm->o.console_fd >= 0 && write(vm->o.console_fd, &c, 1) < 0)
		vm->o.console_fd = -1;
}

static void irq_pulse(struct vmm *vm, int irq)
{
	struct kvm_irq_level l = { .irq = irq, .level = 1 };

	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
	l.level = 0;
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

static void pio_byte(struct vmm *vm, uint16_t port, bool write, uint8_t *d)
{
	bool edge = false;

	if (uart_io(&vm->uart, port, write, d, vm, console_tx, &edge)) {
		if (edge)
			irq_pulse(vm, COM1_IRQ);
	} else if (i8042_io(&vm->i8042, port, write, d) ||
		   cmos_io(&vm->cmos, port, write, d)) {
		;
	} else if (!write) {
		*d = 0xff;	/* nothing there */
	}
}

/* A doorbell from vCPU 0 (the agent pins itself there). */
static enum ev doorbell(struct vmm *vm, uint32_t cmd)
{
	switch (cmd) {
	case VMR_DB_READY:
		return EV_READY;
	case VMR_DB_DONE:
		return EV_DONE;
	case VMR_DB_FAIL:
		return EV_FAIL;
	case VMR_DB_PRESERVE: {
		uint64_t gpa = vm->mbox->preserve_gpa, len = vm->mbox->preserve_len;
		int r;

		/* Only while booting: a request must not make itself permanent. */
		if (vm->ready)
			r = -EPERM;
		else if (!len || (gpa | len) & 4095 || gpa >= vm->mem_size ||
			 len > vm->mem_size - gpa)
			r = -EINVAL;
		else
			r = vm->o.no_snapshot ? 0 : vmreset_preserve_add(vm->ram_fd, gpa, len);
		vm->mbox->preserve_result = r;
		return EV_NONE;
	}
	default:
		return EV_NONE;
	}
}

static enum ev handle_exit(struct vmm_vcpu *v)
{
	struct vmm *vm = v->vm;
	struct kvm_run *run = v->run;
	enum ev ev = EV_NONE;

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		bool write = run->io.direction == KVM_EXIT_IO_OUT;
		uint16_t port = run->io.port;

		if (port == VMR_PORT_DOORBELL && run->io.size == 4 && write) {
			uint32_t cmd;

			memcpy(&cmd, data, 4);
			return v->id == 0 ? doorbell(vm, cmd) : EV_NONE;
		}
		if (port == VMR_PORT_COUNTER && run->io.size == 4 && !write) {
			pthread_mutex_lock(&vm->lock);
			memcpy(data, &vm->host_counter, 4);
			vm->host_counter++;
			pthread_mutex_unlock(&vm->lock);
			return EV_NONE;
		}
		pthread_mutex_lock(&vm->lock);
		for (uint32_t i = 0; i < run->io.count; i++)
			for (uint32_t b = 0; b < run->io.size; b++)
				pio_byte(vm, port + b, write,
					 data + i * run->io.size + b);
		if (vm->i8042.reset) {
			vm->i8042.reset = false;
			ev = EV_CRASH;
		}
		pthread_mutex_unlock(&vm->lock);
		return ev;
	}
	case KVM_EXIT_MMIO: {
		uint64_t a = run->mmio.phys_addr;

		if (vm->disk_fd >= 0 && a >= VBLK_MMIO_BASE && a < VBLK_MMIO_BASE + 0x1000 &&
		    run->mmio.len <= 8) {
			bool irq;

			pthread_mutex_lock(&vm->lock);
			irq = vblk_mmio(vm, &vm->blk, a - VBLK_MMIO_BASE, run->mmio.is_write,
					run->mmio.data, run->mmio.len);
			pthread_mutex_unlock(&vm->lock);
			if (irq)
				irq_pulse(vm, VBLK_IRQ);
		} else if (!run->mmio.is_write) {
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		}
		return EV_NONE;
	}
	case KVM_EXIT_SHUTDOWN:
		return EV_CRASH;
	case KVM_EXIT_SYSTEM_EVENT:
		return EV_CRASH;
	case KVM_EXIT_HLT:
		return EV_CRASH;
	default:
		return EV_ERROR;
	}
}

static const char *exit_name(struct kvm_run *run, char *buf, size_t len)
{
	switch (run->exit_reason) {
	case KVM_EXIT_SHUTDOWN:
		return "the guest shut down (triple fault or reboot=t)";
	case KVM_EXIT_SYSTEM_EVENT:
		return "the guest rebooted";
	case KVM_EXIT_IO:
		return "the guest pulsed the i8042 reset line";
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(buf, len, "KVM internal error %u", run->internal.suberror);
		return buf;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(buf, len, "VM entry failed, reason %#llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return buf;
	default:
		snprintf(buf, len, "unexpected exit %u", run->exit_reason);
		return buf;
	}
}

/* ---- vCPU threads (APs) ---- */

static void *ap_thread(void *arg)
{
	struct vmm_vcpu *v = arg;
	struct vmm *vm = v->vm;
	sigset_t set;

	tls_run = v->run;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIG);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		enum ev ev;
		char buf[128];

		pthread_mutex_lock(&vm->lock);
		while (vm->pause && !vm->stopping) {
			if (!v->paused) {
				v->paused = true;
				vm->nr_paused++;
				pthread_cond_broadcast(&vm->cond);
			}
			pthread_cond_wait(&vm->cond, &vm->lock);
		}
		if (v->paused) {
			v->paused = false;
			vm->nr_paused--;
		}
		if (vm->stopping) {
			pthread_mutex_unlock(&vm->lock);
			return NULL;
		}
		pthread_mutex_unlock(&vm->lock);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			v->run->immediate_exit = 0;
			if (errno == EINTR || errno == EAGAIN)
				continue;
			ev = EV_ERROR;
			snprintf(buf, sizeof(buf), "KVM_RUN on vCPU %u: %s", v->id,
				 strerror(errno));
		} else {
			char tmp[64];

			ev = handle_exit(v);
			if (ev == EV_CRASH || ev == EV_ERROR)
				snprintf(buf, sizeof(buf), "vCPU %u: %s", v->id,
					 exit_name(v->run, tmp, sizeof(tmp)));
		}
		if (ev == EV_CRASH || ev == EV_ERROR) {
			pthread_mutex_lock(&vm->lock);
			if (!vm->ap_event) {
				vm->ap_event = ev;
				snprintf(vm->ap_why, sizeof(vm->ap_why), "%s", buf);
			}
			/* Stop here until the BSP has handled it. */
			vm->pause = true;
			pthread_mutex_unlock(&vm->lock);
			vm->vcpu[0].run->immediate_exit = 1;
			pthread_kill(vm->vcpu[0].thread, KICK_SIG);
		}
	}
}

/* Stops every AP out of KVM_RUN. Called by vCPU 0's thread. */
static void pause_aps(struct vmm *vm)
{
	if (vm->nr_vcpus < 2)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->pause = true;
	while (vm->nr_paused < vm->nr_vcpus - 1) {
		for (unsigned int i = 1; i < vm->nr_vcpus; i++)
			if (!vm->vcpu[i].paused) {
				vm->vcpu[i].run->immediate_exit = 1;
				pthread_kill(vm->vcpu[i].thread, KICK_SIG);
			}
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	}
	pthread_mutex_unlock(&vm->lock);
}

static void resume_aps(struct vmm *vm)
{
	if (vm->nr_vcpus < 2)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->pause = false;
	vm->ap_event = 0;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/*
 * Completes an I/O or MMIO exit KVM still owes the vCPU: its state is
 * only whole (RIP past the OUT, RAX of an IN) after that (see docs/vmm.md).
 */
static int complete_io(struct vmm_vcpu *v)
{
	v->run->immediate_exit = 1;
	if (ioctl(v->fd, KVM_RUN, 0) == 0 || errno != EINTR) {
		v->run->immediate_exit = 0;
		return -EIO;
	}
	v->run->immediate_exit = 0;
	return 0;
}

int vmm_quiesce(struct vmm *vm)
{
	int ret = 0;

	pause_aps(vm);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		if (complete_io(&vm->vcpu[i]))
			ret = vmm_fail(vm, EIO, "vCPU %u: completing its last exit failed", i);
	return ret;
}

/*
 * Runs vCPU 0 (in this thread) and the APs until the agent rings READY
 * or DONE, the guest crashes, or @deadline_us passes.
 */
static enum ev run_until(struct vmm *vm, uint64_t deadline_us, char *why, size_t len)
{
	struct vmm_vcpu *v = &vm->vcpu[0];
	timer_t timer;
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = KICK_SIG };
	enum ev ev = EV_NONE;
	bool have_timer = false;

	why[0] = 0;
	tls_run = v->run;
	if (deadline_us) {
		uint64_t now = vmm_now_us(), d = deadline_us > now ? deadline_us - now : 1;
		struct itimerspec its = {
			.it_value = { d / 1000000, (d % 1000000) * 1000 },
			/* Re-kick: a signal may land while we are outside KVM_RUN. */
			.it_interval = { 0, 50000000 },
		};

		sev._sigev_un._tid = syscall(SYS_gettid);
		if (!timer_create(CLOCK_MONOTONIC, &sev, &timer)) {
			have_timer = true;
			timer_settime(timer, 0, &its, NULL);
		}
	}
	resume_aps(vm);
	while (ev == EV_NONE) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			v->run->immediate_exit = 0;
			if (errno != EINTR && errno != EAGAIN) {
				snprintf(why, len, "KVM_RUN: %s", strerror(errno));
				ev = EV_ERROR;
				break;
			}
			if (vm->ap_event) {
				ev = vm->ap_event;
				snprintf(why, len, "%s", vm->ap_why);
				break;
			}
			if (deadline_us && vmm_now_us() >= deadline_us) {
				ev = EV_KICK;
				break;
			}
			continue;
		}
		ev = handle_exit(v);
		if (ev == EV_CRASH || ev == EV_ERROR) {
			char tmp[64];

			snprintf(why, len, "%s", exit_name(v->run, tmp, sizeof(tmp)));
		}
	}
	if (have_timer)
		timer_delete(timer);
	pause_aps(vm);
	return ev;
}

/* ---- creation ---- */

static int setup_cpuid(struct vmm *vm)
{
	int n = 256;

	for (;;) {
		vm->cpuid = calloc(1, sizeof(*vm->cpuid) + n * sizeof(vm->cpuid->entries[0]));
		if (!vm->cpuid)
			return -ENOMEM;
		vm->cpuid->nent = n;
		if (!ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid))
			return 0;
		free(vm->cpuid);
		vm->cpuid = NULL;
		if (errno != E2BIG || n > 4096)
			return vmm_fail(vm, errno, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		n *= 2;
	}
}

static int setup_vcpu_cpuid(struct vmm *vm, struct vmm_vcpu *v)
{
	struct kvm_cpuid2 *c = vm->cpuid;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0 && e->ebx == 0x68747541)	/* "Auth" */
			vm->amd = true;

		if (e->function == 1) {
			e->ebx = (e->ebx & 0x0000ffff) | (v->id << 24) |
				 (vm->nr_vcpus << 16);
			/*
			 * The hypervisor bit makes the guest look at KVM's leaves:
			 * kvmclock gives it the TSC frequency, so it calibrates
			 * nothing against the PIT, and with the TSC deadline
			 * timer (and ARAT, which KVM reports) Linux needs no PIT
			 * at all (apic_needs_pit()): see "The PIT" in docs/vmm.md.
			 */
			e->ecx |= 1u << 31;
			if (vm->tsc_deadline)
				e->ecx |= 1u << 24;
			if (vm->nr_vcpus > 1)
				e->edx |= 1 << 28;	/* HTT: several logical CPUs */
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = v->id;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c))
		return vmm_fail(vm, errno, "KVM_SET_CPUID2: %s", strerror(errno));
	return 0;
}

/* MSRs KVM can save, probed one by one; IA32_TSC first (see state.c). */
static int setup_msr_list(struct vmm *vm)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + 1024 * sizeof(uint32_t));
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } one;
	int ret = 0;

	if (!l)
		return -ENOMEM;
	l->nmsrs = 1024;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l)) {
		ret = vmm_fail(vm, errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto out;
	}
	vm->msr_index[0] = 0x10;	/* IA32_TSC */
	vm->nr_msrs = 1;
	for (uint32_t i = 0; i < l->nmsrs && vm->nr_msrs < VMM_MAX_MSRS; i++) {
		if (l->indices[i] == 0x10)
			continue;
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.e.index = l->indices[i];
		if (ioctl(vm->vcpu[0].fd, KVM_GET_MSRS, &one) == 1)
			vm->msr_index[vm->nr_msrs++] = l->indices[i];
	}
out:
	free(l);
	return ret;
}

static int setup_boot_vcpu(struct vmm *vm, struct vmm_vcpu *v)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	struct kvm_lapic_state lapic;
	struct { struct kvm_msrs h; struct kvm_msr_entry e[2]; } m = {
		.h.nmsrs = 2,
		.e = { { .index = 0x1a0, .data = 1 },		/* MISC_ENABLE: fast strings */
		       { .index = 0x2ff, .data = 0xc06 } },	/* MTRRdefType: on, WB */
	};

	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic))
		return vmm_fail(vm, errno, "KVM_GET_LAPIC: %s", strerror(errno));
	/* LINT0 ExtINT, LINT1 NMI: the virtual-wire setup firmware leaves. */
	uint32_t *lvt0 = (uint32_t *)(lapic.regs + 0x350), *lvt1 = (uint32_t *)(lapic.regs + 0x360);

	*lvt0 = (*lvt0 & ~0x700) | (7 << 8);
	*lvt1 = (*lvt1 & ~0x700) | (4 << 8);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic))
		return vmm_fail(vm, errno, "KVM_SET_LAPIC: %s", strerror(errno));
	if (ioctl(v->fd, KVM_SET_FPU, &fpu))
		return vmm_fail(vm, errno, "KVM_SET_FPU: %s", strerror(errno));
	ioctl(v->fd, KVM_SET_MSRS, &m);
	if (v->id != 0)
		return 0;	/* APs wait for INIT/SIPI from the BSP */
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs))
		return vmm_fail(vm, errno, "KVM_GET_SREGS: %s", strerror(errno));
	vmm_setup_boot_cpu(vm, &regs, &sregs);
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) || ioctl(v->fd, KVM_SET_REGS, &regs))
		return vmm_fail(vm, errno, "setting the boot vCPU's registers: %s",
			     strerror(errno));
	return 0;
}

/* Firecracker's restore: the saved image mapped MAP_PRIVATE, faulted in on use. */
static int setup_ram_private(struct vmm *vm)
{
	struct stat st;
	int fd = open(vm->o.ram_file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return vmm_fail(vm, errno, "memory image %s: %s", vm->o.ram_file, strerror(errno));
	vm->ram_fd = fd;
	if (fstat(fd, &st))
		return vmm_fail(vm, errno, "memory image %s: %s", vm->o.ram_file, strerror(errno));
	if ((uint64_t)st.st_size != vm->mem_size)
		return vmm_fail(vm, EINVAL, "memory image %s: %llu bytes, not the %llu of --mem",
				vm->o.ram_file, (unsigned long long)st.st_size,
				(unsigned long long)vm->mem_size);
	vm->ram = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		return vmm_fail(vm, errno, "mmap of %s: %s", vm->o.ram_file, strerror(errno));
	}
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem_size,
		.userspace_addr = (uintptr_t)vm->ram,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r))
		return vmm_fail(vm, errno, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	return 0;
}

static int setup_ram(struct vmm *vm)
{
	char path[4096];
	int fd;

	if (vm->o.ram_file)
		return setup_ram_private(vm);

	snprintf(path, sizeof(path), "%s/vmm-%d-%p.ram", vm->o.dir, getpid(), (void *)vm);
	fd = vmreset_create(path, vm->mem_size);
	if (fd < 0)
		unlink(path);	/* created elsewhere than on vmresetfs */
	if (fd < 0)
		return vmm_fail(vm, -fd, "guest RAM %s: %s%s", path, strerror(-fd),
			     fd == -ENOTTY ? " (not on vmresetfs; --dir)" : "");
	/* The VM holds it; the name only matters to someone who lists them. */
	unlink(path);
	vm->ram_fd = fd;
	vm->ram = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		return vmm_fail(vm, errno, "mmap of guest RAM: %s", strerror(errno));
	}
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem_size,
		.userspace_addr = (uintptr_t)vm->ram,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r))
		return vmm_fail(vm, errno, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	if (vm->o.hot != VMM_HOT_MOUNT) {
		struct vmreset_hot_config c = {
			.flags = VMRESET_HOT_CFG_MODE,
			.mode = vm->o.hot == VMM_HOT_LEARN ? VMRESET_HOT_LEARN : VMRESET_HOT_OFF,
		};
		int ret = vmreset_hot_config(fd, &c);

		if (ret)
			return vmm_fail(vm, -ret, "hot pages of guest RAM (HOT_CONFIG): %s%s",
					strerror(-ret), ret == -ENOTTY ? " (a vmreset module without hot pages)" : "");
	}
	return 0;
}

/* The disk: a vmresetfs file holding a copy of the image. */
static int setup_disk(struct vmm *vm)
{
	char path[4096], buf[1 << 16];
	struct stat st;
	int in, fd;
	off_t off = 0;

	in = open(vm->o.disk, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vmm_fail(vm, errno, "disk %s: %s", vm->o.disk, strerror(errno));
	if (fstat(in, &st) || !S_ISREG(st.st_mode) || st.st_size < 65536 || st.st_size % 512) {
		close(in);
		return vmm_fail(vm, EINVAL, "disk %s: not a regular file of 512-byte sectors", vm->o.disk);
	}
	snprintf(path, sizeof(path), "%s/vmm-%d-%p.disk", vm->o.dir, getpid(), (void *)vm);
	fd = vmreset_create(path, st.st_size);
	if (fd < 0) {
		unlink(path);
		close(in);
		return vmm_fail(vm, -fd, "disk file %s: %s", path, strerror(-fd));
	}
	unlink(path);
	/* An image on the same vmresetfs (an exported snapshot's) is cloned, not copied. */
	if (!ioctl(fd, FICLONE, in))
		off = st.st_size;
	for (; off < st.st_size;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n < 0 || (n > 0 && pwrite(fd, buf, n, off) != n)) {
			close(in);
			close(fd);
			return vmm_fail(vm, EIO, "copying disk %s: %s", vm->o.disk, strerror(errno));
		}
		if (n == 0)
			break;
		off += n;
	}
	close(in);
	vm->disk_fd = fd;
	vm->disk_size = st.st_size;
	vblk_init(&vm->blk, st.st_size);
	vm->mmio[0].base = VBLK_MMIO_BASE;
	vm->mmio[0].irq = VBLK_IRQ;
	vm->nr_mmio = 1;
	return 0;
}

struct vmm *vmm_create(const struct vmm_opts *o, char *err, size_t errlen)
{
	struct vmm *vm = calloc(1, sizeof(*vm));
	struct sigaction sa = { .sa_handler = kick_handler };
	struct kvm_pit_config pit = { .flags = 0 };
	sigset_t set;
	int ret = 0;

	if (!vm) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	vm->o = *o;
	if (o->ram_file)
		vm->o.no_snapshot = true;
	vm->kvm_fd = vm->vm_fd = vm->ram_fd = vm->disk_fd = vm->attach_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->mem_size = (o->mem_size + 0x1fffff) & ~0x1fffffULL;
	vm->nr_vcpus = o->cpus ? o->cpus : 1;
	if (vm->nr_vcpus > VMM_MAX_CPUS) {
		ret = vmm_fail(vm, EINVAL, "--cpus %u: at most %d", vm->nr_vcpus, VMM_MAX_CPUS);
		goto out;
	}
	if (vm->mem_size < (64ULL << 20) || vm->mem_size > VMM_MAX_MEM) {
		ret = vmm_fail(vm, EINVAL, "--mem %llu MiB: must be 64 MiB to 3 GiB",
			    (unsigned long long)(o->mem_size >> 20));
		goto out;
	}
	if (o->keep_size & 4095 || o->keep_size > vm->mem_size / 4) {
		ret = vmm_fail(vm, EINVAL, "--keep %llu: a multiple of 4 KiB, at most a quarter of RAM",
			    (unsigned long long)o->keep_size);
		goto out;
	}
	vm->mbox_gpa = vm->mem_size - VMR_MBOX_SIZE;
	vm->keep_gpa = o->keep_size ? vm->mbox_gpa - o->keep_size : 0;
	if (access(o->kernel, R_OK)) {
		ret = vmm_fail(vm, errno, "kernel %s: %s", o->kernel, strerror(errno));
		goto out;
	}
	if (o->initrd && access(o->initrd, R_OK)) {
		ret = vmm_fail(vm, errno, "initrd %s: %s", o->initrd, strerror(errno));
		goto out;
	}
	sigaction(KICK_SIG, &sa, NULL);
	/* Kicks go to vCPU threads only when they ask for them. */
	sigemptyset(&set);
	sigaddset(&set, KICK_SIG);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = vmm_fail(vm, errno, "/dev/kvm: %s", strerror(errno));
		goto out;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = vmm_fail(vm, errno, "KVM_CREATE_VM: %s", strerror(errno));
		goto out;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	/* KVM emulates it; KVM_GET_SUPPORTED_CPUID leaves the bit to us. */
	vm->tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) ||
	    (o->pit && ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit))) {
		ret = vmm_fail(vm, errno, "creating the irqchip and PIT: %s", strerror(errno));
		goto out;
	}
	ret = setup_ram(vm);
	if (ret)
		goto out;
	if (o->disk) {
		ret = setup_disk(vm);
		if (ret)
			goto out;
	}
	ret = setup_cpuid(vm);
	if (ret)
		goto out;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vmm_vcpu *v = &vm->vcpu[i];

		v->vm = vm;
		v->id = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			ret = vmm_fail(vm, errno, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
			goto out;
		}
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			ret = vmm_fail(vm, errno, "mmap of kvm_run: %s", strerror(errno));
			goto out;
		}
		ret = setup_vcpu_cpuid(vm, v);
		if (ret)
			goto out;
	}
	ret = setup_msr_list(vm);
	if (ret)
		goto out;
	/* A memory image holds a kernel that already runs, and its page tables. */
	ret = o->ram_file ? 0 : vmm_load_kernel(vm);
	if (ret)
		goto out;
	for (unsigned int i = 0; i < vm->nr_vcpus && !o->ram_file; i++) {
		ret = setup_boot_vcpu(vm, &vm->vcpu[i]);
		if (ret)
			goto out;
	}
	uart_init(&vm->uart);
	i8042_init(&vm->i8042);
	cmos_init(&vm->cmos);
	vm->mbox = (struct vmr_mbox *)(vm->ram + vm->mbox_gpa);
	/* Before the vCPUs run: a request made while booting is drained at the snapshot. */
	ret = vmm_hc_attach(vm);
	if (ret)
		goto out;
	vm->vcpu[0].thread = pthread_self();
	vm->pause = true;
	for (unsigned int i = 1; i < vm->nr_vcpus; i++) {
		if (pthread_create(&vm->vcpu[i].thread, NULL, ap_thread, &vm->vcpu[i])) {
			ret = vmm_fail(vm, EAGAIN, "cannot start vCPU thread %u", i);
			vm->nr_vcpus = i;
			goto out;
		}
	}
	return vm;
out:
	snprintf(err, errlen, "%s", vm->err);
	(void)ret;
	vmm_destroy(vm);
	return NULL;
}

void vmm_destroy(struct vmm *vm)
{
	if (!vm)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->stopping = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned int i = 1; i < vm->nr_vcpus; i++) {
		if (!vm->vcpu[i].thread)
			continue;
		if (vm->vcpu[i].run)
			vm->vcpu[i].run->immediate_exit = 1;
		pthread_kill(vm->vcpu[i].thread, KICK_SIG);
		pthread_join(vm->vcpu[i].thread, NULL);
	}
	for (unsigned int i = 0; i < VMM_MAX_CPUS; i++) {
		if (vm->vcpu[i].run)
			munmap(vm->vcpu[i].run, vm->run_size);
		if (vm->vcpu[i].fd > 0)
			close(vm->vcpu[i].fd);
	}
	vmm_hc_detach(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->ram)
		munmap(vm->ram, vm->mem_size);
	if (vm->ram_fd >= 0)
		close(vm->ram_fd);
	if (vm->disk_fd >= 0)
		close(vm->disk_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->cpuid);
	free(vm->snap);
	free(vm);
}

/* ---- looking at a stuck guest ---- */

/* Guest-virtual to guest-physical through the 4-level tables at @cr3. */
static bool gva_to_gpa(struct vmm *vm, uint64_t cr3, uint64_t va, uint64_t *gpa)
{
	uint64_t table = cr3 & 0x000ffffffffff000ULL;

	for (int level = 3; level >= 0; level--) {
		uint64_t e, idx = (va >> (12 + 9 * level)) & 511;

		if (table + idx * 8 + 8 > vm->mem_size)
			return false;
		memcpy(&e, vm->ram + table + idx * 8, 8);
		if (!(e & 1))
			return false;
		table = e & 0x000ffffffffff000ULL;
		if (level && level < 3 && (e & 0x80)) {	/* 1 GiB or 2 MiB page */
			uint64_t sz = 1ULL << (12 + 9 * level);

			*gpa = (table & ~(sz - 1)) | (va & (sz - 1));
			return *gpa < vm->mem_size;
		}
	}
	*gpa = table | (va & 4095);
	return *gpa < vm->mem_size;
}

/*
 * RIP and the kernel text addresses found on vCPU @id's stack, innermost
 * first: a backtrace to resolve against the guest kernel's kallsyms (boot
 * it with nokaslr). @raw: every word instead. Call with the vCPU out of
 * KVM_RUN.
 */
const char *vmm_guest_stack(struct vmm *vm, unsigned int id, bool raw, char *buf, size_t len)
{
	struct kvm_regs r;
	struct kvm_sregs sr;
	size_t o = 0;
	int found = 0;

	buf[0] = 0;
	if (id >= vm->nr_vcpus || ioctl(vm->vcpu[id].fd, KVM_GET_REGS, &r) ||
	    ioctl(vm->vcpu[id].fd, KVM_GET_SREGS, &sr))
		return buf;
	o += snprintf(buf + o, len - o, "rip %#llx rsp %#llx rflags %#llx cs %#x stack:",
		      (unsigned long long)r.rip, (unsigned long long)r.rsp,
		      (unsigned long long)r.rflags, sr.cs.selector);
	for (uint64_t va = r.rsp & ~7ULL; va < (r.rsp & ~7ULL) + 16384 && found < 40 &&
	     o + 24 < len; va += 8) {
		uint64_t gpa, v;

		if (!gva_to_gpa(vm, sr.cr3, va, &gpa))
			break;
		memcpy(&v, vm->ram + gpa, 8);
		if (raw) {
			o += snprintf(buf + o, len - o, "%s%llx", (va - r.rsp) % 64 ? " " : "\n#  ",
				      (unsigned long long)v);
		} else if (v >= 0xffffffff80000000ULL && v < 0xffffffffc0000000ULL) {
			o += snprintf(buf + o, len - o, " %#llx", (unsigned long long)v);
			found++;
		}
	}
	return buf;
}

/* ---- boot, snapshot, requests ---- */

int vmm_boot(struct vmm *vm, unsigned int timeout_ms)
{
	uint64_t t0 = vmm_now_us(), t1;
	char why[256], tail[1024];
	enum ev ev;
	int ret;

	uint64_t end = t0 + (uint64_t)timeout_ms * 1000, last_rip = 0;
	unsigned int stuck = 0;

	/*
	 * In slices, looking at vCPU 0 in between: a kernel that spins with
	 * interrupts off in one place for a minute is deadlocked (docs/vmm.md,
	 * Status: under nested emulation it takes interrupts with IF=0), and
	 * waiting for the whole timeout would only delay the report.
	 */
	for (;;) {
		uint64_t now = vmm_now_us();
		struct kvm_regs r;
		struct kvm_sregs sr;

		ev = run_until(vm, now + 5000000 < end ? now + 5000000 : end, why, sizeof(why));
		if (ev != EV_KICK || vmm_now_us() >= end)
			break;
		if (ioctl(vm->vcpu[0].fd, KVM_GET_REGS, &r) || ioctl(vm->vcpu[0].fd, KVM_GET_SREGS, &sr))
			continue;
		if (!(r.rflags & 0x200) && (sr.cs.selector & 3) == 0 &&
		    r.rip >= 0xffffffff80000000ULL && r.rip - last_rip + 0x200 < 0x400)
			stuck++;
		else
			stuck = 0;
		last_rip = r.rip;
		if (stuck >= 12)
			break;
	}
	t1 = vmm_now_us();
	if (ev == EV_KICK && stuck >= 12) {
		char stack[1024];

		vmm_console_tail(vm, tail, sizeof(tail));
		return vmm_fail(vm, EDEADLK, "the guest kernel spins with interrupts off at %#llx "
			     "for a minute: deadlocked (%s); console: %s", (unsigned long long)last_rip,
			     vmm_guest_stack(vm, 0, false, stack, sizeof(stack)), tail);
	}
	vm->boot_us = t1 - t0;
	vmm_console_tail(vm, tail, sizeof(tail));
	switch (ev) {
	case EV_READY:
		break;
	case EV_FAIL:
		return vmm_fail(vm, EIO, "the guest agent failed: %.*s",
			     (int)(vm->mbox->err_len < 300 ? vm->mbox->err_len : 300),
			     (char *)vm->ram + vm->mbox_gpa + VMR_MBOX_ERR_OFF);
	case EV_KICK: {
		struct kvm_regs r = { 0 };
		struct kvm_sregs sr = { 0 };

		vmm_quiesce(vm);
		ioctl(vm->vcpu[0].fd, KVM_GET_REGS, &r);
		ioctl(vm->vcpu[0].fd, KVM_GET_SREGS, &sr);
		char stack[1024];

		return vmm_fail(vm, ETIMEDOUT, "the guest was not ready after %u ms (vCPU 0 at %#llx, "
			     "cs %#x, rflags %#llx, cr3 %#llx; %s); console: %s", timeout_ms,
			     (unsigned long long)r.rip, sr.cs.selector,
			     (unsigned long long)r.rflags, (unsigned long long)sr.cr3,
			     vmm_guest_stack(vm, 0, false, stack, sizeof(stack)), tail);
	}
	default:
		return vmm_fail(vm, EIO, "booting: %s; console: %s", why, tail);
	}
	vm->ready = true;
	vm->booted = true;
	if (vm->o.no_snapshot)
		return 0;
	ret = vmm_quiesce(vm);
	if (ret)
		return ret;
	/* What the guest declared while booting is kept from the ready snapshot on. */
	ret = vmm_hc_drain(vm);
	if (ret)
		return ret;
	vm->snap = calloc(1, sizeof(*vm->snap));
	if (!vm->snap)
		return vmm_fail(vm, ENOMEM, "out of memory");
	ret = vmm_state_save(vm, vm->snap);
	if (ret)
		return ret;
	ret = vmreset_snapshot(vm->ram_fd, NULL);
	if (ret)
		return vmm_fail(vm, -ret, "SNAPSHOT of guest RAM: %s", strerror(-ret));
	if (vm->disk_fd >= 0) {
		ret = vmreset_snapshot(vm->disk_fd, NULL);
		if (ret)
			return vmm_fail(vm, -ret, "SNAPSHOT of the disk: %s", strerror(-ret));
	}
	vm->snapshotted = true;
	vm->snapshot_us = vmm_now_us() - t1;
	return 0;
}

int vmm_start_private(struct vmm *vm, const struct vmm_state *st)
{
	int ret;

	if (!vm->o.ram_file || vm->booted)
		return vmm_fail(vm, EINVAL, "a private start needs a new VM made with a memory image");
	ret = vmm_state_load(vm, st, false);
	if (ret)
		return ret;
	vm->ready = vm->booted = true;
	return 0;
}

int vmm_reset(struct vmm *vm, uint64_t *reverted)
{
	uint64_t t0 = vmm_now_us(), t1, t2;
	int ret;

	vm->quiesce_us = vm->revert_us = vm->load_us = 0;
	if (!vm->snapshotted)
		return vmm_fail(vm, EINVAL, "no ready snapshot to reset to");
	ret = vmm_quiesce(vm);
	t1 = vmm_now_us();
	vm->quiesce_us = t1 - t0;
	if (ret)
		return ret;
	/* The vCPUs are stopped: no hypercall can come between the drain and the REVERT. */
	ret = vmm_hc_drain(vm);
	if (ret)
		return ret;
	ret = vmreset_revert(vm->ram_fd, 0, reverted, NULL);
	if (ret)
		return vmm_fail(vm, -ret, "REVERT of guest RAM: %s", strerror(-ret));
	if (vm->disk_fd >= 0) {
		ret = vmreset_revert(vm->disk_fd, 0, NULL, NULL);
		if (ret)
			return vmm_fail(vm, -ret, "REVERT of the disk: %s", strerror(-ret));
	}
	t2 = vmm_now_us();
	vm->revert_us = t2 - t1;
	ret = vmm_state_load(vm, vm->snap, true);
	vm->load_us = vmm_now_us() - t2;
	return ret;
}

static char *copy_out(const uint8_t *src, uint32_t len, uint32_t cap, size_t *olen)
{
	char *p;

	if (len > cap)
		len = cap;
	p = malloc(len + 1);
	if (p) {
		memcpy(p, src, len);
		p[len] = 0;
	}
	*olen = p ? len : 0;
	return p;
}

int vmm_request(struct vmm *vm, const struct vmm_req *req, struct vmm_resp *resp)
{
	uint8_t *area = vm->ram + vm->mbox_gpa;
	struct vmr_mbox *mb = vm->mbox;
	size_t args_len = 0;
	uint64_t t0, t1;
	enum ev ev;
	int ret = 0;

	memset(resp, 0, sizeof(*resp));
	if (!vm->ready)
		return vmm_fail(vm, EINVAL, "the VM is not ready (boot it first)");
	if (req->argc < 1)
		return vmm_fail(vm, EINVAL, "empty request: give a program to run");
	for (int i = 0; i < req->argc; i++)
		args_len += strlen(req->argv[i]) + 1;
	if (req->argc > 256 || args_len + req->in_len > VMR_MBOX_REQ_SIZE)
		return vmm_fail(vm, E2BIG, "request too big: %d arguments, %zu bytes (at most %d)",
			     req->argc, args_len + req->in_len, VMR_MBOX_REQ_SIZE);
	/* These are VMM writes into guest RAM: the reset takes them back too. */
	args_len = 0;
	for (int i = 0; i < req->argc; i++) {
		size_t l = strlen(req->argv[i]) + 1;

		memcpy(area + VMR_MBOX_REQ_OFF + args_len, req->argv[i], l);
		args_len += l;
	}
	if (req->in_len)
		memcpy(area + VMR_MBOX_REQ_OFF + args_len, req->in, req->in_len);
	mb->magic = VMR_MBOX_MAGIC;
	mb->version = VMR_MBOX_VERSION;
	mb->seq = ++vm->seq;
	mb->argc = req->argc;
	mb->args_len = args_len;
	mb->stdin_len = req->in_len;
	mb->req_flags = 0;
	mb->resp_seq = 0;

	t0 = vmm_now_us();
	ev = run_until(vm, req->timeout_ms ? t0 + req->timeout_ms * 1000ULL : 0,
		       resp->why, sizeof(resp->why));
	t1 = vmm_now_us();
	resp->run_us = t1 - t0;
	switch (ev) {
	case EV_DONE:
		if (mb->resp_seq != vm->seq) {
			resp->outcome = VMM_ERROR;
			snprintf(resp->why, sizeof(resp->why),
				 "the agent answered request %llu, not %llu",
				 (unsigned long long)mb->resp_seq,
				 (unsigned long long)vm->seq);
			break;
		}
		resp->outcome = VMM_OK;
		resp->wait_status = mb->wait_status;
		resp->flags = mb->resp_flags;
		resp->guest_mono_ns = mb->guest_mono_ns;
		resp->guest_real_ns = mb->guest_real_ns;
		resp->out = copy_out(area + VMR_MBOX_OUT_OFF, mb->out_len,
				     VMR_MBOX_OUT_SIZE, &resp->out_len);
		resp->err = copy_out(area + VMR_MBOX_ERR_OFF, mb->err_len,
				     VMR_MBOX_ERR_SIZE, &resp->err_len);
		break;
	case EV_KICK:
		resp->outcome = VMM_TIMEOUT;
		snprintf(resp->why, sizeof(resp->why), "timed out after %u ms",
			 req->timeout_ms);
		break;
	case EV_CRASH:
		resp->outcome = VMM_CRASH;
		break;
	case EV_READY:
		/* Only without resets: the agent went round its loop. */
		resp->outcome = VMM_ERROR;
		snprintf(resp->why, sizeof(resp->why), "the agent restarted");
		break;
	default:
		resp->outcome = VMM_ERROR;
		if (!resp->why[0])
			snprintf(resp->why, sizeof(resp->why), "agent failure");
		break;
	}
	if (vm->o.no_snapshot) {
		/* Cold mode: nobody resets; the VM is spent unless it went on. */
		if (ev == EV_DONE) {
			ev = run_until(vm, vmm_now_us() + 60000000, resp->why, sizeof(resp->why));
			if (ev != EV_READY)
				vm->ready = false;
		} else {
			vm->ready = false;
		}
		return 0;
	}
	ret = vmm_reset(vm, &resp->reverted_pages);
	resp->reset_us = vmm_now_us() - t1;
	resp->preserve_applied = vm->hc_last_applied;
	resp->preserve_refused = vm->hc_last_refused;
	resp->quiesce_us = vm->quiesce_us;
	resp->revert_us = vm->revert_us;
	resp->load_us = vm->load_us;
	if (ret)
		vm->ready = false;
	return ret;
}

void vmm_resp_free(struct vmm_resp *resp)
{
	free(resp->out);
	free(resp->err);
	resp->out = resp->err = NULL;
}

bool vmm_attempt_ok(const struct vmm_txn *t, const struct vmm_resp *r)
{
	if (r->outcome != VMM_OK)
		return false;
	if (t->success_exit >= 0 &&
	    (!WIFEXITED(r->wait_status) || WEXITSTATUS(r->wait_status) != t->success_exit))
		return false;
	if (t->match && regexec(t->match, r->out ? r->out : "", 0, NULL, 0))
		return false;
	return true;
}

int vmm_transact(struct vmm *vm, const struct vmm_txn *t, struct vmm_req *req,
		 struct vmm_resp *resp, unsigned int *attempts, bool *ok)
{
	int ret;

	req->timeout_ms = t->timeout_ms;
	for (*attempts = 1;; (*attempts)++) {
		/* Each attempt starts from the snapshot: vmm_request resets after. */
		ret = vmm_request(vm, req, resp);
		if (ret)
			return ret;
		*ok = vmm_attempt_ok(t, resp);
		if (*ok || *attempts > t->retry)
			return 0;
		vmm_resp_free(resp);
	}
}
