/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmreset-vmm: a small reference VMM that boots Linux on vmresetfs guest
 * RAM, snapshots it once ready, and resets it in place after every
 * request. docs/vmm.md explains the design; this header is the library
 * the CLI (main.c) and the selftests use.
 *
 * Functions return 0 or a negative errno, and leave a message naming the
 * bad input in vmm_error().
 */
#ifndef VMM_H
#define VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <linux/kvm.h>
#include "dev.h"
#include "virtio_blk.h"
#include "guest/abi.h"

#define VMM_MAX_CPUS		8
#define VMM_MAX_MSRS		256
#define VMM_XSAVE_MAX		16384
#define VMM_MAX_MEM		(3ULL << 30)	/* below the 32-bit MMIO hole */

struct vmm_opts {
	const char *kernel;		/* bzImage */
	const char *initrd;		/* the guest initramfs (agent as /init) */
	const char *cmdline;		/* appended to the built-in command line */
	uint64_t mem_size;		/* guest RAM, bytes */
	unsigned int cpus;
	const char *dir;		/* vmresetfs directory for RAM and disk */
	uint64_t keep_size;		/* preserved range for the guest, or 0 */
	int console_fd;			/* copy of the guest console, or -1 */
	bool no_snapshot;		/* cold mode: never snapshot or reset */
	const char *disk;		/* disk image (ext4) copied to vmresetfs, or NULL */
	bool pit;			/* an i8254 PIT (KVM_CREATE_PIT2); see docs/vmm.md */
	unsigned int hot;		/* VMM_HOT_*: hot pages of guest RAM */
	unsigned int hc;		/* VMM_HC_*: the guest's preserve hypercall */
	/*
	 * Guest RAM mapped MAP_PRIVATE from this saved memory image (any
	 * file system), as Firecracker restores: no kernel is loaded, no
	 * snapshot taken, nothing reset; vmm_start_private() loads the state.
	 */
	const char *ram_file;
};

/*
 * Hot pages (vmresetfs): a page that every request dirties is reverted by
 * copying its snapshot content back in place, not by unmapping it, so the
 * next request does not fault on it again (docs/vmm.md, "The reset").
 */
enum {
	VMM_HOT_LEARN,		/* learn them from the reverts (the default) */
	VMM_HOT_OFF,		/* none: every reverted page refaults */
	VMM_HOT_MOUNT,		/* whatever the mount's hot= says */
};

/*
 * Ranges the guest declares by hypercall (VMRESET_HC_PRESERVE, docs/bpf.md)
 * and the eBPF service (vmreset-hc load) records: the VM is attached over
 * netlink, and what is pending is applied before every reset.
 */
enum {
	VMM_HC_AUTO,		/* when the service is loaded (the default) */
	VMM_HC_OFF,		/* never: the guest's requests are ignored */
	VMM_HC_ON,		/* always: no service is an error */
};

struct vmreset_nl;

enum vmm_outcome {
	VMM_OK,			/* the handler ran; see wait_status */
	VMM_TIMEOUT,		/* killed after the request's timeout */
	VMM_CRASH,		/* the guest rebooted, panicked or triple-faulted */
	VMM_ERROR,		/* KVM or the agent failed */
};

struct vmm_req {
	int argc;
	char *const *argv;
	const void *in;
	size_t in_len;
	unsigned int timeout_ms;	/* 0: none */
};

struct vmm_resp {
	enum vmm_outcome outcome;
	int wait_status;
	uint32_t flags;			/* VMR_RESP_* */
	char *out, *err;		/* NUL-terminated, malloc()ed */
	size_t out_len, err_len;
	int64_t guest_mono_ns, guest_real_ns;
	uint64_t run_us;		/* host: request start to DONE */
	uint64_t reset_us;		/* host: the reset after it, in all: */
	uint64_t quiesce_us;		/*   stopping the vCPUs, completing exits */
	uint64_t revert_us;		/*   REVERT of RAM and disk */
	uint64_t load_us;		/*   loading vCPU, VM and device state */
	uint64_t reverted_pages;
	uint64_t preserve_applied;	/* guest preserve requests applied before it */
	uint64_t preserve_refused;	/*   and refused (no memory there, no room) */
	char why[256];			/* for VMM_CRASH/VMM_ERROR */
};

struct vmm_vcpu_state {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t xsave_size;
	uint8_t xsave[VMM_XSAVE_MAX];
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	struct kvm_lapic_state lapic;
	uint32_t nr_msrs;
	struct kvm_msr_entry msrs[VMM_MAX_MSRS];
	struct kvm_vcpu_events events;
};

#define VMM_STATE_MAGIC		0x54534d56	/* "VMST" */
#define VMM_STATE_VERSION	1

/* Everything but memory and disk: what the ready snapshot adds to them. */
struct vmm_state {
	uint32_t magic, version, size, nr_vcpus;
	uint64_t mem_size, keep_size, mbox_gpa, keep_gpa;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct kvm_irqchip chips[3];	/* PIC master, PIC slave, IOAPIC */
	struct uart uart;
	struct i8042 i8042;
	struct cmos cmos;
	struct vblk blk;
	uint64_t disk_size;
	struct vmm_vcpu_state vcpu[VMM_MAX_CPUS];
};

struct vmm_vcpu {
	struct vmm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool paused;
};

struct vmm {
	struct vmm_opts o;
	int kvm_fd, vm_fd, ram_fd;
	uint8_t *ram;
	uint64_t mem_size, mbox_gpa, keep_gpa;
	size_t run_size;
	unsigned int nr_vcpus;
	struct vmm_vcpu vcpu[VMM_MAX_CPUS];
	uint32_t msr_index[VMM_MAX_MSRS];
	unsigned int nr_msrs;		/* msr_index[0] is IA32_TSC */
	struct kvm_cpuid2 *cpuid;
	struct vmr_mbox *mbox;
	pthread_mutex_t lock;		/* devices, the pause handshake */
	pthread_cond_t cond;
	bool pause, stopping;
	unsigned int nr_paused;
	int ap_event;			/* set by an AP: crash/error */
	char ap_why[128];
	struct uart uart;
	struct i8042 i8042;
	struct cmos cmos;
	struct vblk blk;
	int disk_fd;			/* -1: no disk */
	uint64_t disk_size;
	unsigned int nr_mmio;
	struct { uint32_t base, irq; } mmio[1];
	uint32_t host_counter;
	bool ready, booted, snapshotted;
	struct vmm_state *snap;		/* the ready snapshot */
	uint64_t seq;
	uint64_t boot_us, snapshot_us;
	uint64_t quiesce_us, revert_us, load_us;	/* the last vmm_reset() */
	uint64_t boot_rip;
	char console_tail[4096];	/* last console bytes, for errors */
	size_t console_pos;
	char err[4096];
	bool tsc_deadline;		/* KVM_CAP_TSC_DEADLINE_TIMER */
	bool amd;			/* CPUID vendor AuthenticAMD (SVM) */
	unsigned int load_skip;		/* debugging: VMM_LOAD_* parts vmm_state_load skips */
	/* Guest-declared preserved ranges (hc.c). */
	struct vmreset_nl *nl;		/* NULL: not attached */
	uint32_t nl_vm_id;
	int attach_fd;			/* the attachment lives as long as this */
	int hc_attach_err;		/* why the attach failed (auto mode), or 0 */
	uint64_t hc_applied, hc_refused;	/* in all, since the VM was made */
	uint64_t hc_last_applied, hc_last_refused;	/* the last drain */
	uint64_t drain_us;		/* the last drain */
};

/* Parts of the state load, for bisecting it (struct vmm.load_skip). */
enum {
	VMM_LOAD_MP = 1, VMM_LOAD_REGS = 2, VMM_LOAD_SREGS = 4, VMM_LOAD_FLUSH = 8,
	VMM_LOAD_XSAVE = 16, VMM_LOAD_XCRS = 32, VMM_LOAD_DREGS = 64, VMM_LOAD_LAPIC = 128,
	VMM_LOAD_MSRS = 256, VMM_LOAD_EVENTS = 512, VMM_LOAD_PIT = 1024,
	VMM_LOAD_IRQCHIP = 2048, VMM_LOAD_CLOCKCTRL = 4096,
};

const char *vmm_error(const struct vmm *vm);
/* Sets vmm_error() from @fmt and returns -@err. */
int vmm_fail(struct vmm *vm, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Creates the VM, its RAM file and vCPUs, and loads the kernel. */
struct vmm *vmm_create(const struct vmm_opts *o, char *err, size_t errlen);
void vmm_destroy(struct vmm *vm);

/* RIP and kernel addresses on vCPU @id's stack, for a stuck guest. */
const char *vmm_guest_stack(struct vmm *vm, unsigned int id, bool raw, char *buf, size_t len);

/* Runs the guest until the agent is ready; snapshots unless no_snapshot. */
int vmm_boot(struct vmm *vm, unsigned int timeout_ms);

/*
 * Runs one request and, unless no_snapshot, resets the VM to the ready
 * snapshot afterwards whatever the outcome. Free @resp with vmm_resp_free().
 */
int vmm_request(struct vmm *vm, const struct vmm_req *req, struct vmm_resp *resp);
void vmm_resp_free(struct vmm_resp *resp);

/*
 * A transaction: a request that must meet success criteria, retried from
 * the snapshot up to @retry more times. @success_exit < 0: any exit
 * status; @match: a compiled regex stdout must match, or NULL.
 */
struct vmm_txn {
	unsigned int retry, timeout_ms;
	int success_exit;
	const void *match;		/* regex_t * */
};

/* @resp is the last attempt's; *@attempts how many ran, *@ok the verdict. */
int vmm_transact(struct vmm *vm, const struct vmm_txn *t, struct vmm_req *req,
		 struct vmm_resp *resp, unsigned int *attempts, bool *ok);
bool vmm_attempt_ok(const struct vmm_txn *t, const struct vmm_resp *r);

/*
 * The serve loop (serve.c, json-c): one JSON request object per line in,
 * one JSON response line out (docs/vmm.md, vmreset-vmm(1)); a bad line
 * is answered with an error naming what is wrong, and the loop goes on.
 * @deflt gives what a request leaves out. vmm_serve_line() returns the
 * response (malloc()ed, no newline). vmm_serve_stream() serves until EOF
 * (0) or until the VM cannot serve any more (negative errno).
 * vmm_serve_socket() listens on the UNIX socket @path, calls @listening
 * once it does, and serves each connection in turn, @max_conns of them
 * (0: until the VM cannot serve any more); it removes @path when done.
 */
char *vmm_serve_line(struct vmm *vm, const struct vmm_txn *deflt, const char *line);
int vmm_serve_stream(struct vmm *vm, const struct vmm_txn *deflt, FILE *in, FILE *out);
int vmm_serve_socket(struct vmm *vm, const struct vmm_txn *deflt, const char *path,
		     unsigned int max_conns, void (*listening)(const char *path));
/* A response as the one JSON line serve writes (malloc()ed). */
char *vmm_resp_json(const struct vmm_resp *r, unsigned int attempts, bool ok);
const char *vmm_outcome_name(enum vmm_outcome o);

/* Stops the vCPUs and completes their last exit (before state save/load). */
int vmm_quiesce(struct vmm *vm);

/*
 * Guest-declared preserved ranges (hc.c): vmm_hc_attach() attaches the VM
 * over netlink (from vmm_create, unless VMM_HC_OFF or no_snapshot);
 * vmm_hc_drain() applies the requests pending for it, when the service is
 * loaded (a stat when it is not), and fails only for a real reason.
 */
int vmm_hc_attach(struct vmm *vm);
int vmm_hc_drain(struct vmm *vm);
void vmm_hc_detach(struct vmm *vm);
bool vmm_hc_loaded(void);

/* Resets memory, vCPUs, VM and devices to the ready snapshot. */
int vmm_reset(struct vmm *vm, uint64_t *reverted_pages);

/* State of the whole VM now (vCPUs must be stopped: between requests). */
int vmm_state_save(struct vmm *vm, struct vmm_state *st);
/* @in_place: keep the TSC and kvmclock running (see docs/vmm.md). */
int vmm_state_load(struct vmm *vm, const struct vmm_state *st, bool in_place);

/*
 * The ready snapshot in vmreset-store (store.c): RAM as @name with the VM
 * state as its state blob, the disk as @name.disk. vmm_restore() fills a
 * VM just made by vmm_create() with the same options, instead of a boot.
 */
struct vmm_store {
	const char *url;		/* directory or rados://POOL[/NS] */
	const char *key;		/* the owner's key file */
	const char *tool;		/* vmreset-store, or NULL for the one in PATH */
};
int vmm_save(struct vmm *vm, const struct vmm_store *s, const char *name);
int vmm_restore(struct vmm *vm, const struct vmm_store *s, const char *name);

/*
 * The ready snapshot as files on vmresetfs (clone.c): PREFIX.ram and
 * PREFIX.disk, reflink clones (FICLONE) of guest RAM and disk that share
 * every page with them, and PREFIX.state, the VM state. vmm_clone_from()
 * starts a VM just made by vmm_create() with the same options from
 * clones of those files instead of a boot, in any process: `cp
 * --reflink` of the three files makes another snapshot to start from.
 */
int vmm_export(struct vmm *vm, const char *prefix);
int vmm_clone_from(struct vmm *vm, const char *prefix);
/*
 * Leaves guest RAM with the --keep range only and the disk with none:
 * for --hc-preserve off after a restore, whose store re-applied the
 * source's ranges.
 */
int vmm_ranges_keep_only(struct vmm *vm);

/*
 * Starts a VM made with o.ram_file from the VM state @st (copied): it
 * serves requests, each on guest RAM faulted in from the image, and is
 * never reset (o.no_snapshot).
 */
int vmm_start_private(struct vmm *vm, const struct vmm_state *st);

/* Loads @st (malloc()ed; the VM keeps it) into a new VM and takes its ready snapshot. */
int vmm_adopt_state(struct vmm *vm, struct vmm_state *st);

/*
 * vmreset-vmm bench (bench.c): boots a VM with @o and serves each handler
 * cold (a VM booted per request), restored Firecracker-style in a new
 * process (MAP_PRIVATE memory image), and in place (vmreset, hot pages
 * learned and off); then the memory of @clones VMs from clones against as
 * many from copies. Progress on @log; *@json the results (malloc()ed).
 */
struct vmm_bench_opts {
	int in_place, in_place_off, restore, cold, clones;
};
int vmm_bench(const struct vmm_opts *o, const struct vmm_bench_opts *b, FILE *log, char **json);

/* The console's last bytes (for messages). */
const char *vmm_console_tail(struct vmm *vm, char *buf, size_t len);

uint64_t vmm_now_us(void);

/* boot.c, acpi.c */
size_t vmm_write_acpi(struct vmm *vm, uint8_t *base, uint64_t gpa);
int vmm_load_kernel(struct vmm *vm);
void vmm_setup_boot_cpu(struct vmm *vm, struct kvm_regs *regs,
			struct kvm_sregs *sregs);

#endif
