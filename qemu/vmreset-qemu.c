// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-qemu: serve requests in an unmodified QEMU whose guest RAM and
 * disk are vmresetfs files, resetting the VM after each request with
 * O(dirty) memory work (docs/qemu.md).
 *
 * Boot once with the guest agent (vmm/guest/) as /init; at its READY
 * frame on the virtio-serial port: `stop`, save the device and vCPU state
 * (migration with x-ignore-shared: RAM is shared, not copied), SNAPSHOT
 * the RAM and disk files. After each request: `stop`, REVERT both files,
 * load the device state back (same QEMU: snapshot-load; or a new QEMU
 * with -incoming), and the VM waits for the next request where the
 * snapshot left it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <json-c/json.h>
#include "vmreset.h"
#include "vmreset_bpf.h"
#include "qmp.h"
#include "../vmm/guest/abi.h"

enum reset_mode {
	RESET_VMRESET,		/* REVERT + snapshot-load of the device state */
	RESET_INCOMING,		/* REVERT + a new QEMU with -incoming */
	RESET_LOADVM,		/* QEMU's savevm/loadvm of everything, RAM too */
	RESET_COLD,		/* a fresh boot per request */
	RESET_NONE,
};

static const char *mode_names[] = { "vmreset", "incoming", "loadvm", "cold", "none" };

/* Hot pages of the RAM file (docs/design.md): REVERT copies them back in place. */
enum hot_mode { HOT_LEARN, HOT_OFF, HOT_MOUNT };
static const char *hot_names[] = { "learn", "off", "mount" };

#define NWORDS(a)	(sizeof(a) / sizeof((a)[0]))

/* The index of @s among @n @names, or @n when it is none of them. */
static size_t word_index(const char *const *names, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n && strcmp(s, names[i]); i++)
		;
	return i;
}

struct opts {
	const char *qemu, *kernel, *initrd, *dir, *disk, *append, *console, *accel;
	uint64_t mem, keep;
	enum reset_mode mode;
	enum hot_mode hot;
	int boot_timeout_ms, json, verbose, compare;
};

static struct opts o = {
	.qemu = "qemu-system-x86_64", .accel = "kvm",
	.dir = "/run/vmreset", .mem = 256 << 20, .boot_timeout_ms = 600000,
};

static struct {
	char tmp[64];			/* private: sockets, saved state */
	char qmp_path[96], agent_path[96], state_path[96], vmstate_path[96];
	int ram_fd, disk_fd, listen_fd, agent_fd;
	uint64_t disk_size;
	pid_t qemu;
	struct qmp *q;
	struct vmreset_nl *nl;
	uint32_t vm_id;
	uint64_t seq;
	double boot_ms, ready_ms;
	int replaced;			/* --compare: the ready QEMU is gone */
	int watch_reset;		/* a request runs: a guest reset is its crash */
	int qmp_gone;			/* QEMU closed QMP: it is going, waitpid tells */
	int powered_off;		/* stopped by -no-shutdown: system_reset first */
	char crash[128];		/* why, when it crashed or powered off */
	char err[1024];
} g = { .ram_fd = -1, .disk_fd = -1, .listen_fd = -1, .agent_fd = -1 };

#define QMP_TIMEOUT	120000

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g.err, sizeof(g.err), fmt, ap);
	va_end(ap);
	return -1;
}

static void __attribute__((noreturn)) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmreset-qemu: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ---- QMP with json-c ---- */

static json_object *qmp_exec(const char *cmd, json_object *args, int *err)
{
	json_object *c = json_object_new_object(), *r, *ret = NULL;
	char *s;

	json_object_object_add(c, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(c, "arguments", args);
	if (asprintf(&s, "%s\r\n", json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN)) < 0)
		die("out of memory");
	json_object_put(c);
	r = qmp_cmd(g.q, s, QMP_TIMEOUT);
	free(s);
	*err = !r;
	if (!r) {
		fail("QMP %s: %s", cmd, g.q->err);
		return NULL;
	}
	if (json_object_object_get_ex(r, "return", &ret))
		json_object_get(ret);
	json_object_put(r);
	return ret;
}

static int qmp_do(const char *cmd, json_object *args)
{
	int err;

	json_object_put(qmp_exec(cmd, args, &err));
	return err ? -1 : 0;
}

static json_object *jargs(const char *k1, json_object *v1, const char *k2, json_object *v2,
			  const char *k3, json_object *v3)
{
	json_object *a = json_object_new_object();

	if (k1)
		json_object_object_add(a, k1, v1);
	if (k2)
		json_object_object_add(a, k2, v2);
	if (k3)
		json_object_object_add(a, k3, v3);
	return a;
}

static json_object *jstrs(const char *s)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_string(s));
	return a;
}

/* ---- the agent's port ---- */

static const char *event_data(json_object *ev, const char *key)
{
	json_object *d, *v;

	return json_object_object_get_ex(ev, "data", &d) &&
	       json_object_object_get_ex(d, key, &v) ? json_object_get_string(v) : NULL;
}

static int event_bool(json_object *ev, const char *key)
{
	const char *v = event_data(ev, key);

	return v && !strcmp(v, "true");
}

/* g.crash: @what and the event's reason; puts @ev. */
static void why_event(json_object *ev, const char *what)
{
	const char *r = event_data(ev, "reason");

	snprintf(g.crash, sizeof(g.crash), "%s (%s)", what, r ? r : "?");
	json_object_put(ev);
}

static int io_full(int fd, void *buf, size_t len, int writing, double deadline)
{
	size_t off = 0;

	while (off < len) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = writing ? POLLOUT : POLLIN },
			/* Also at boot: with -no-shutdown a power-off ends nothing. */
			{ .fd = g.q && !g.qmp_gone ? g.q->fd : -1, .events = POLLIN },
		};
		double left = deadline - now_ms();
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(p, 2, left > 1000 ? 1000 : (int)left + 1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && p[1].revents) {
			/*
			 * A guest that panics (panic=-1) or triple-faults resets
			 * the machine: QEMU says RESET and boots it again.
			 */
			json_object *ev;

			if (qmp_pump(g.q))
				g.qmp_gone = 1;
			ev = g.watch_reset ? qmp_take_event(g.q, "RESET") : NULL;
			if (ev) {
				why_event(ev, "the guest reset the machine");
				return -ECANCELED;
			}
			ev = qmp_take_event(g.q, "SHUTDOWN");
			if (ev && event_bool(ev, "guest")) {
				why_event(ev, "the guest powered off");
				g.powered_off = 1;
				return -ESHUTDOWN;
			}
			json_object_put(ev);	/* the host's: QEMU quits */
			if (!(p[0].revents))
				continue;
		}
		if (n <= 0) {
			if (g.qemu > 0 && waitpid(g.qemu, NULL, WNOHANG) == g.qemu) {
				g.qemu = 0;
				return -ECHILD;
			}
			continue;
		}
		n = writing ? write(fd, (char *)buf + off, len - off) :
			      read(fd, (char *)buf + off, len - off);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		off += n;
	}
	return 0;
}

static const char *io_err(int e)
{
	return e == -ECHILD ? "QEMU exited" : e == -ETIMEDOUT ? "timed out" :
	       e == -ESHUTDOWN ? g.crash : strerror(-e);
}

/* A frame's header and payload (malloc()ed, NUL-terminated) or -errno. */
static int read_frame(struct vmr_frame *f, char **payload, double deadline)
{
	int e = io_full(g.agent_fd, f, sizeof(*f), 0, deadline);

	*payload = NULL;
	if (e)
		return e;
	if (f->magic != VMR_FRAME_MAGIC || f->len > (4 << 20))
		return -EPROTO;
	*payload = malloc(f->len + 1);
	if (!*payload)
		return -ENOMEM;
	e = io_full(g.agent_fd, *payload, f->len, 0, deadline);
	(*payload)[f->len] = 0;
	return e;
}

/* What a request left unread on the port (a timeout): it must not be taken for the next. */
static void drain_port(void)
{
	char junk[65536];

	while (recv(g.agent_fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
}

/* ---- files ---- */

static int make_files(void)
{
	char path[4096];
	int src = -1;

	snprintf(path, sizeof(path), "%s/vmreset-qemu-%d.ram", o.dir, getpid());
	g.ram_fd = vmreset_create(path, o.mem);
	if (g.ram_fd < 0)
		return fail("%s: %s%s", path, strerror(-g.ram_fd),
			    g.ram_fd == -ENOTTY ? " (is --dir on vmresetfs?)" : "");
	/* Nothing is left behind however we end: QEMU opens /proc/self/fd/N. */
	unlink(path);
	if (o.hot != HOT_MOUNT) {
		struct vmreset_hot_config c = {
			.flags = VMRESET_HOT_CFG_MODE,
			.mode = o.hot == HOT_LEARN ? VMRESET_HOT_LEARN : VMRESET_HOT_OFF,
		};
		int e = vmreset_hot_config(g.ram_fd, &c);

		if (e)
			return fail("hot pages of guest RAM (HOT_CONFIG): %s%s", strerror(-e),
				    e == -ENOTTY ? " (a vmreset module without hot pages)" : "");
	}
	if (!o.disk)
		return 0;
	src = open(o.disk, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return fail("--disk %s: %s", o.disk, strerror(errno));
	g.disk_size = (lseek(src, 0, SEEK_END) + 4095) & ~4095ULL;
	lseek(src, 0, SEEK_SET);
	snprintf(path, sizeof(path), "%s/vmreset-qemu-%d.disk", o.dir, getpid());
	g.disk_fd = vmreset_create(path, g.disk_size);
	if (g.disk_fd < 0) {
		close(src);
		return fail("%s: %s", path, strerror(-g.disk_fd));
	}
	unlink(path);
	for (;;) {
		char buf[1 << 16];
		ssize_t n = read(src, buf, sizeof(buf));

		if (n < 0) {
			close(src);
			return fail("--disk %s: %s", o.disk, strerror(errno));
		}
		if (n == 0)
			break;
		if (write(g.disk_fd, buf, n) != n) {
			close(src);
			return fail("copying --disk to vmresetfs: %s", strerror(errno));
		}
	}
	close(src);
	return 0;
}

static int snapshot_files(void)
{
	int e = vmreset_snapshot(g.ram_fd, NULL);

	if (!e && g.disk_fd >= 0)
		e = vmreset_snapshot(g.disk_fd, NULL);
	return e ? fail("SNAPSHOT: %s", strerror(-e)) : 0;
}

static int revert_files(uint64_t *ram_pages, uint64_t *disk_pages, uint64_t *kept)
{
	int e = vmreset_revert(g.ram_fd, 0, ram_pages, kept);

	*disk_pages = 0;
	if (!e && g.disk_fd >= 0)
		e = vmreset_revert(g.disk_fd, 0, disk_pages, NULL);
	return e ? fail("REVERT: %s", strerror(-e)) : 0;
}

/* ---- QEMU ---- */

static void kill_qemu(void)
{
	if (g.q) {
		qmp_close(g.q);
		free(g.q);
		g.q = NULL;
	}
	if (g.agent_fd >= 0)
		close(g.agent_fd);
	g.agent_fd = -1;
	if (g.qemu > 0) {
		kill(g.qemu, SIGKILL);
		while (waitpid(g.qemu, NULL, 0) < 0 && errno == EINTR)
			;
	}
	g.qemu = 0;
}

static void cleanup(void)
{
	char p[192];

	kill_qemu();
	if (g.tmp[0]) {
		const char *names[] = { "qmp.sock", "agent.sock", "state.mig", "vmstate.qcow2" };

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", g.tmp, names[i]);
			unlink(p);
		}
		rmdir(g.tmp);
		g.tmp[0] = 0;
	}
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

#define MAX_ARGV 64

static int start_qemu(int incoming)
{
	char mem[64], machine[160], ramobj[256], kappend[2048], drive[256], agent_dev[256], qmp[192],
	     serial[4200], smem[32];
	const char *argv[MAX_ARGV];
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int argc = 0, n;
	double t0 = now_ms();

	snprintf(smem, sizeof(smem), "%" PRIu64 "M", o.mem >> 20);
	snprintf(mem, sizeof(mem), "%s", smem);
	snprintf(ramobj, sizeof(ramobj),
		 "memory-backend-file,id=ram,size=%s,mem-path=/proc/self/fd/%d,share=on",
		 smem, g.ram_fd);
	/*
	 * microvm describes its virtio-mmio devices in ACPI only (Debian's
	 * kernels have no virtio_mmio.device=), so ACPI stays on; no PIT, no
	 * RTC: kvmclock and the LAPIC timer do.
	 */
	n = snprintf(kappend, sizeof(kappend), "%s panic=-1 reboot=t",
		     o.console ? "console=ttyS0 loglevel=4" : "quiet loglevel=1");
	if (g.disk_fd >= 0)
		n += snprintf(kappend + n, sizeof(kappend) - n, " vmreset.disk=/dev/vda");
	if (o.keep) {
		uint64_t gpa = o.mem / 2;

		/* Reserved, so the guest kernel leaves it alone and /dev/mem maps it. */
		n += snprintf(kappend + n, sizeof(kappend) - n,
			      " memmap=%" PRIu64 "K$%#" PRIx64 " vmreset.keep=%#" PRIx64 ",%#" PRIx64,
			      o.keep >> 10, gpa, gpa, o.keep);
	}
	if (o.append)
		snprintf(kappend + n, sizeof(kappend) - n, " %s", o.append);
	snprintf(agent_dev, sizeof(agent_dev), "socket,id=agent,path=%s", g.agent_path);
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", g.qmp_path);
	snprintf(serial, sizeof(serial), "%s%s", o.console ? "file:" : "null",
		 o.console ? o.console : "");
	argv[argc++] = o.qemu;
	argv[argc++] = "-nodefaults";
	argv[argc++] = "-no-user-config";
	argv[argc++] = "-display";
	argv[argc++] = "none";
	/*
	 * No -no-reboot: a guest that panics or triple-faults resets the
	 * machine (a RESET event), and the driver resets it to the snapshot.
	 * -no-shutdown: a guest that powers off stops (a SHUTDOWN event)
	 * instead of ending QEMU, and is reset the same way.
	 */
	argv[argc++] = "-no-shutdown";
	argv[argc++] = "-machine";
	snprintf(machine, sizeof(machine),
		 "microvm,accel=%s,pit=off,rtc=off,isa-serial=on,memory-backend=ram", o.accel);
	argv[argc++] = machine;
	argv[argc++] = "-cpu";
	argv[argc++] = strcmp(o.accel, "kvm") ? "max" : "host";
	argv[argc++] = "-smp";
	argv[argc++] = "1";
	argv[argc++] = "-m";
	argv[argc++] = mem;
	argv[argc++] = "-object";
	argv[argc++] = ramobj;
	argv[argc++] = "-kernel";
	argv[argc++] = o.kernel;
	argv[argc++] = "-initrd";
	argv[argc++] = o.initrd;
	argv[argc++] = "-append";
	argv[argc++] = kappend;
	argv[argc++] = "-serial";
	argv[argc++] = serial;
	argv[argc++] = "-device";
	argv[argc++] = "virtio-serial-device";
	argv[argc++] = "-chardev";
	argv[argc++] = agent_dev;
	argv[argc++] = "-device";
	argv[argc++] = "virtserialport,chardev=agent,name=" VMR_PORT_NAME;
	if (g.disk_fd >= 0) {
		snprintf(drive, sizeof(drive),
			 "if=none,id=disk0,format=raw,file=/proc/self/fd/%d,cache=writeback",
			 g.disk_fd);
		argv[argc++] = "-drive";
		argv[argc++] = drive;
		argv[argc++] = "-device";
		argv[argc++] = "virtio-blk-device,drive=disk0";
	}
	argv[argc++] = "-qmp";
	argv[argc++] = qmp;
	if (incoming) {
		argv[argc++] = "-S";
		argv[argc++] = "-incoming";
		argv[argc++] = "defer";
	}
	argv[argc] = NULL;
	if (o.verbose) {
		fprintf(stderr, "vmreset-qemu:");
		for (int i = 0; i < argc; i++)
			fprintf(stderr, " %s", argv[i]);
		fputc('\n', stderr);
	}

	if (g.listen_fd < 0) {
		g.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", g.agent_path);
		if (g.listen_fd < 0 || bind(g.listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
		    listen(g.listen_fd, 1))
			return fail("agent socket %s: %s", g.agent_path, strerror(errno));
	}
	unlink(g.qmp_path);
	g.qemu = fork();
	if (g.qemu < 0)
		return fail("fork: %s", strerror(errno));
	if (g.qemu == 0) {
		/* QEMU opens the files as /proc/self/fd/N: they must survive exec. */
		fcntl(g.ram_fd, F_SETFD, 0);
		if (g.disk_fd >= 0)
			fcntl(g.disk_fd, F_SETFD, 0);
		if (!o.verbose) {
			int null = open("/dev/null", O_RDWR);

			dup2(null, 1);
		}
		execvp(argv[0], (char **)argv);
		fprintf(stderr, "vmreset-qemu: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	/* QEMU connects to the agent socket while it sets the chardev up. */
	for (;;) {
		struct pollfd p = { .fd = g.listen_fd, .events = POLLIN };

		if (poll(&p, 1, 200) > 0) {
			g.agent_fd = accept4(g.listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (g.agent_fd >= 0)
				break;
		}
		if (waitpid(g.qemu, NULL, WNOHANG) == g.qemu) {
			g.qemu = 0;
			return fail("QEMU exited at start (%s)", o.qemu);
		}
		if (now_ms() - t0 > 60000)
			return fail("QEMU did not connect to the agent socket in 60 s");
	}
	g.q = calloc(1, sizeof(*g.q));
	if (!g.q)
		return fail("out of memory");
	n = qmp_connect(g.q, g.qmp_path, 60000);
	if (n)
		return fail("QMP %s: %s %s", g.qmp_path, strerror(-n), g.q->err);
	g.qmp_gone = 0;
	g.powered_off = 0;
	/* RAM is a shared file: migration leaves it out, and events come. */
	{
		json_object *caps = json_object_new_array();
		json_object *c1 = jargs("capability", json_object_new_string("x-ignore-shared"),
					"state", json_object_new_boolean(o.mode != RESET_LOADVM),
					NULL, NULL);
		json_object *c2 = jargs("capability", json_object_new_string("events"),
					"state", json_object_new_boolean(1), NULL, NULL);

		json_object_array_add(caps, c1);
		json_object_array_add(caps, c2);
		if (qmp_do("migrate-set-capabilities", jargs("capabilities", caps, NULL, NULL,
							      NULL, NULL)))
			return -1;
	}
	return 0;
}

/* Boots to the agent's READY frame. */
static int boot(void)
{
	double t0 = now_ms();
	struct vmr_frame f;
	char *p;
	int e;

	if (start_qemu(0))
		return -1;
	e = read_frame(&f, &p, t0 + o.boot_timeout_ms);
	if (!e && f.type == VMR_FRAME_FAIL)
		e = fail("the guest agent failed: %s", p);
	else if (!e && f.type != VMR_FRAME_READY)
		e = fail("the guest agent sent frame type %u, not READY", f.type);
	else if (e)
		e = fail("waiting for the guest agent's READY: %s", io_err(e));
	free(p);
	g.boot_ms = now_ms() - t0;
	return e;
}

/*
 * snapshot-save or -load of tag "ready" on the vmstate image only: the
 * disk is raw (no snapshots) and vmreset's to reset.
 */
static const char *snap_tag = "ready";

static int set_ignore_shared(int on)
{
	json_object *caps = json_object_new_array();

	json_object_array_add(caps, jargs("capability", json_object_new_string("x-ignore-shared"),
					  "state", json_object_new_boolean(on), NULL, NULL));
	return qmp_do("migrate-set-capabilities", jargs("capabilities", caps, NULL, NULL,
							NULL, NULL));
}

static int snapshot_job(const char *cmd, const char *id)
{
	json_object *a = jargs("job-id", json_object_new_string(id),
			       "tag", json_object_new_string(snap_tag),
			       "vmstate", json_object_new_string("vmstate"));

	json_object_object_add(a, "devices", jstrs("vmstate"));
	if (qmp_do(cmd, a))
		return -1;
	if (qmp_job_wait(g.q, id, QMP_TIMEOUT))
		return fail("%s: %s", cmd, g.q->err);
	return 0;
}

/* migrate and migrate-incoming answer at once; the stream ends later. */
static int wait_migration(const char *what)
{
	json_object *ev = qmp_wait_event(g.q, "MIGRATION", "status", "completed", QMP_TIMEOUT);

	if (!ev)
		return fail("%s the device state: %s", what, g.q->err);
	json_object_put(ev);
	return 0;
}

/* The device and vCPU state migrated into g.state_path (RAM left out). */
static int migrate_to_file(void)
{
	char uri[256];

	snprintf(uri, sizeof(uri), "exec:cat > %s", g.state_path);
	qmp_drop_events(g.q, "MIGRATION");
	if (qmp_do("migrate", jargs("uri", json_object_new_string(uri), NULL, NULL,
				    NULL, NULL)))
		return -1;
	return wait_migration("saving");
}

/* The state file for RESET_INCOMING, or the vmstate qcow2 for snapshot-save. */
static int save_state(void)
{
	if (o.mode == RESET_INCOMING)
		return migrate_to_file();
	/* A qcow2 image only for the vmstate: snapshot-save needs one. */
	{
		int fd = open(g.vmstate_path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
		json_object *opts;

		if (fd < 0)
			return fail("%s: %s", g.vmstate_path, strerror(errno));
		close(fd);
		if (qmp_do("blockdev-add", jargs("driver", json_object_new_string("file"),
						 "node-name", json_object_new_string("vmstate-file"),
						 "filename", json_object_new_string(g.vmstate_path))))
			return -1;
		/* The vmstate lives past the (unused) virtual disk. */
		opts = jargs("driver", json_object_new_string("qcow2"),
			     "file", json_object_new_string("vmstate-file"),
			     "size", json_object_new_int64(1 << 20));
		if (qmp_do("blockdev-create", jargs("job-id", json_object_new_string("create"),
						    "options", opts, NULL, NULL)) ||
		    (qmp_job_wait(g.q, "create", QMP_TIMEOUT) && fail("%s", g.q->err)))
			return -1;
		if (qmp_do("blockdev-add", jargs("driver", json_object_new_string("qcow2"),
						 "node-name", json_object_new_string("vmstate"),
						 "file", json_object_new_string("vmstate-file"))))
			return -1;
	}
	if (snapshot_job("snapshot-save", "save"))
		return -1;
	if (!o.compare)
		return 0;
	/*
	 * --compare: the other ways' saved state too, of the same ready VM,
	 * so that one boot measures them all: all of RAM in tag "full" (for
	 * loadvm), then the migration file (incoming; last, as a finished
	 * migration leaves the block devices inactive until cont).
	 */
	snap_tag = "full";
	if (set_ignore_shared(0) || snapshot_job("snapshot-save", "save") ||
	    set_ignore_shared(1))
		return -1;
	snap_tag = "ready";
	return migrate_to_file();
}

/*
 * Finds QEMU's KVM VM fd, attaches it (pidfd_getfd) and, at the ready
 * snapshot (@drain), applies the guest's hypercalls.
 */
static int attach_vm(int drain)
{
	char dir[64], path[320], link[64];
	struct vmreset_hc_result res = { 0 };
	int pidfd, vmfd = -1, qfd = -1, e;
	struct dirent *d;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", g.qemu);
	dp = opendir(dir);
	if (!dp)
		return fail("%s: %s", dir, strerror(errno));
	while ((d = readdir(dp))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = 0;
			if (!strcmp(link, "anon_inode:kvm-vm")) {
				qfd = atoi(d->d_name);
				break;
			}
		}
	}
	closedir(dp);
	if (qfd < 0)
		return fail("QEMU (pid %d) holds no KVM VM fd", g.qemu);
	pidfd = syscall(SYS_pidfd_open, g.qemu, 0);
	if (pidfd >= 0)
		vmfd = syscall(SYS_pidfd_getfd, pidfd, qfd, 0);
	e = errno;
	if (pidfd >= 0)
		close(pidfd);
	if (vmfd < 0)
		return fail("pidfd_getfd of QEMU's VM fd %d: %s", qfd, strerror(e));
	if (!g.nl) {
		g.nl = vmreset_nl_open(&e);
		if (!g.nl) {
			close(vmfd);
			return fail("vmreset netlink: %s", strerror(-e));
		}
	}
	e = vmreset_nl_vm_attach(g.nl, vmfd, &g.vm_id);
	/* The attachment holds the VM itself and ends when QEMU's memory goes. */
	close(vmfd);
	if (e)
		return fail("VM attach: %s: %s", strerror(-e), vmreset_nl_errmsg(g.nl));
	if (!o.keep || !drain)
		return 0;
	e = vmreset_hc_drain(g.nl, g.vm_id, qfd, &res);
	if (e < 0)
		return fail("applying the guest's preserve hypercall: %s%s", strerror(-e),
			    e == -ENOENT ? " (run vmreset-hc load first)" : "");
	if (res.applied < 1)
		return fail("the guest's preserve hypercall was not applied (%d taken, "
			    "%" PRIu64 " without memory, %" PRIu64 " without space, %" PRIu64
			    " failed)", e, res.no_memory, res.no_space, res.failed);
	return 0;
}

/* At READY: stop, save device state, snapshot memory and disk. */
static int take_ready(void)
{
	double t0 = now_ms();

	if (qmp_do("stop", NULL))
		return -1;
	if (o.mode == RESET_COLD) {
		/* The files were snapshotted empty; nothing of the boot is kept. */
		if (attach_vm(1))
			return -1;
		g.ready_ms = now_ms() - t0;
		return 0;
	}
	if (attach_vm(1))
		return -1;
	if (save_state())
		return -1;
	if (snapshot_files())
		return -1;
	g.ready_ms = now_ms() - t0;
	return 0;
}

struct timing {
	double stop_ms, revert_ms, load_ms, total_ms;
	uint64_t ram_pages, disk_pages, kept_pages, hot_pages;
};

static int restore_incoming(void)
{
	char uri[256];

	kill_qemu();
	g.replaced = 1;
	if (start_qemu(1))
		return -1;
	snprintf(uri, sizeof(uri), "exec:cat %s", g.state_path);
	if (qmp_do("migrate-incoming", jargs("uri", json_object_new_string(uri), NULL, NULL,
					     NULL, NULL)))
		return -1;
	if (wait_migration("loading"))
		return -1;
	/* A new KVM VM: attached like the first (the preserved ranges are the files'). */
	return attach_vm(0);
}

/*
 * A guest that powered off left QEMU in its "shutdown" state, from which
 * cont is refused and stop does nothing; system_reset takes it to
 * "prelaunch", where the device-state load and cont work as after stop.
 * The reset is done before the REVERT, so whatever it writes is undone.
 */
static int leave_shutdown(void)
{
	json_object *ev;

	if (!g.powered_off)
		return 0;
	qmp_drop_events(g.q, "RESET");
	if (qmp_do("system_reset", NULL))
		return -1;
	/* Asynchronous: the load must come after it, not be undone by it. */
	ev = qmp_wait_event(g.q, "RESET", "reason", "host-qmp-system-reset", QMP_TIMEOUT);
	if (!ev)
		return fail("system_reset after the guest's power-off: %s", g.q->err);
	json_object_put(ev);
	g.powered_off = 0;
	return 0;
}

/* After a request: back to the ready snapshot (the VM stays stopped). */
static int reset(struct timing *t)
{
	double t0 = now_ms(), t1, t2;

	memset(t, 0, sizeof(*t));
	if (o.mode == RESET_NONE)
		return 0;
	if (o.mode != RESET_INCOMING && o.mode != RESET_COLD && leave_shutdown())
		return -1;
	if (o.mode != RESET_INCOMING && o.mode != RESET_COLD && qmp_do("stop", NULL))
		return -1;
	t1 = now_ms();
	/* A QEMU that is replaced goes before the REVERT: its vCPU still runs. */
	if (o.mode == RESET_COLD || o.mode == RESET_INCOMING) {
		kill_qemu();
		g.replaced = 1;
	}
	/* Memory first: the device state load reads the virtio rings. */
	if (o.mode == RESET_LOADVM) {
		if (g.disk_fd >= 0 && vmreset_revert(g.disk_fd, 0, &t->disk_pages, NULL))
			return fail("REVERT of the disk: %s", strerror(errno));
	} else if (revert_files(&t->ram_pages, &t->disk_pages, &t->kept_pages)) {
		return -1;
	}
	t2 = now_ms();
	switch (o.mode) {
	case RESET_VMRESET:
		if (snapshot_job("snapshot-load", "load"))
			return -1;
		break;
	case RESET_LOADVM:
		if (o.compare) {
			/* The tag that holds all of RAM; the stream needs the capability off. */
			snap_tag = "full";
			if (set_ignore_shared(0) || snapshot_job("snapshot-load", "load") ||
			    set_ignore_shared(1)) {
				snap_tag = "ready";
				return -1;
			}
			snap_tag = "ready";
		} else if (snapshot_job("snapshot-load", "load")) {
			return -1;
		}
		break;
	case RESET_INCOMING:
		if (restore_incoming())
			return -1;
		break;
	case RESET_COLD:
		if (boot() || take_ready())
			return -1;
		break;
	default:
		break;
	}
	drain_port();
	/* Any reset of the rebooting guest before the stop is not the next request's. */
	if (g.q)
		qmp_drop_events(g.q, "RESET");
	{
		struct vmreset_hot_config c = { 0 };

		if (!vmreset_hot_config(g.ram_fd, &c))
			t->hot_pages = c.hot_pages;
	}
	t->stop_ms = t1 - t0;
	t->revert_ms = t2 - t1;
	t->load_ms = now_ms() - t2;
	t->total_ms = now_ms() - t0;
	return 0;
}

struct response {
	int ok;			/* a response came */
	int timed_out;
	int crashed;		/* the guest reset the machine: g.crash says how */
	int powered_off;	/* the guest powered off: g.crash says how */
	struct vmr_frame_resp r;
	char *out, *err;	/* into payload */
	char *payload;
	double run_ms;
	json_object *stuck;	/* a timeout: what the VM was doing (stuck_state()) */
};

/* "CPU#n" and its instruction pointer line (RIP/EIP ... HLT=) of `info registers`. */
static json_object *cpu_lines(const char *info)
{
	json_object *a = json_object_new_array();

	for (const char *l = info; *l;) {
		size_t n = strcspn(l, "\r\n");

		if (n > 4 && (!strncmp(l, "CPU#", 4) || !strncmp(l, "RIP=", 4) ||
			      !strncmp(l, "EIP=", 4)))
			json_object_array_add(a, json_object_new_string_len(l, (int)n));
		l += n;
		l += strspn(l, "\r\n");
	}
	return a;
}

/*
 * A request that timed out: the run state, each vCPU's RIP and HLT, and
 * the first rings of every virtio device (whether the guest posted
 * buffers, whether QEMU used them and signalled). Taken before the reset
 * wipes it, so that a guest that stops answering says whether it is
 * spinning, halted waiting for an interrupt, or never saw the request.
 */
static json_object *stuck_state(void)
{
	json_object *j = json_object_new_object(), *r, *devs, *a;
	int err;

	r = qmp_exec("query-status", NULL, &err);
	json_object_object_add(j, "status", err ? json_object_new_string(g.err) : r);
	/* A QEMU that does not answer this answers nothing: one QMP_TIMEOUT, not ten. */
	if (err)
		return j;
	r = qmp_exec("human-monitor-command",
		     jargs("command-line", json_object_new_string("info registers -a"), NULL, NULL,
			   NULL, NULL), &err);
	json_object_object_add(j, "cpus", err ? json_object_new_string(g.err) :
			       cpu_lines(r ? json_object_get_string(r) : ""));
	json_object_put(r);
	devs = qmp_exec("x-query-virtio", NULL, &err);
	if (err) {
		json_object_object_add(j, "virtio", json_object_new_string(g.err));
		return j;
	}
	a = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		json_object *d = json_object_array_get_idx(devs, i), *path, *name, *o, *qs;

		if (!json_object_object_get_ex(d, "path", &path) ||
		    !json_object_object_get_ex(d, "name", &name))
			continue;
		o = json_object_new_object();
		qs = json_object_new_array();
		json_object_object_add(o, "name", json_object_get(name));
		/* virtio-serial: port 0's pair, the control pair, port 1's (the agent) */
		for (int q = 0; q < 6; q++) {
			json_object *st = qmp_exec("x-query-virtio-queue-status",
						   jargs("path", json_object_get(path), "queue",
							 json_object_new_int(q), NULL, NULL), &err);
			static const char *const keys[] = { "last-avail-idx", "shadow-avail-idx",
							    "used-idx", "signalled-used", "inuse" };
			json_object *e;

			if (err)
				break;
			e = json_object_new_object();
			json_object_object_add(e, "queue", json_object_new_int(q));
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				json_object *v;

				if (json_object_object_get_ex(st, keys[k], &v))
					json_object_object_add(e, keys[k], json_object_get(v));
			}
			json_object_array_add(qs, e);
			json_object_put(st);
		}
		json_object_object_add(o, "queues", qs);
		json_object_array_add(a, o);
	}
	json_object_put(devs);
	json_object_object_add(j, "virtio", a);
	return j;
}

static int request(char **argv, int argc, const char *in, size_t in_len, int timeout_ms,
		   struct response *res)
{
	struct vmr_frame f = { .magic = VMR_FRAME_MAGIC, .type = VMR_FRAME_REQUEST,
			       .version = VMR_MBOX_VERSION };
	struct vmr_frame_req q = { .argc = argc };
	size_t args_len = 0, off;
	char *buf;
	double t0, deadline;
	int e;

	memset(res, 0, sizeof(*res));
	for (int i = 0; i < argc; i++)
		args_len += strlen(argv[i]) + 1;
	if (args_len + in_len > VMR_MBOX_REQ_SIZE)
		return fail("request too big: %zu bytes of arguments and stdin (at most %u)",
			    args_len + in_len, VMR_MBOX_REQ_SIZE);
	q.args_len = args_len;
	q.stdin_len = in_len;
	f.seq = ++g.seq;
	f.len = sizeof(q) + args_len + in_len;
	buf = malloc(sizeof(f) + f.len);
	if (!buf)
		return fail("out of memory");
	memcpy(buf, &f, sizeof(f));
	memcpy(buf + sizeof(f), &q, sizeof(q));
	off = sizeof(f) + sizeof(q);
	for (int i = 0; i < argc; i++) {
		memcpy(buf + off, argv[i], strlen(argv[i]) + 1);
		off += strlen(argv[i]) + 1;
	}
	memcpy(buf + off, in, in_len);
	t0 = now_ms();
	deadline = t0 + (timeout_ms > 0 ? timeout_ms : 1e12);
	/* Written before cont: the socket holds it until the guest reads. */
	e = io_full(g.agent_fd, buf, sizeof(f) + f.len, 1, deadline);
	free(buf);
	if (e)
		return fail("sending the request: %s", io_err(e));
	qmp_drop_events(g.q, "RESET");
	if (qmp_do("cont", NULL))
		return -1;
	g.watch_reset = 1;
	for (;;) {
		struct vmr_frame rf;

		e = read_frame(&rf, &res->payload, deadline);
		if (e == -ETIMEDOUT) {
			res->timed_out = 1;
			res->stuck = stuck_state();
			break;
		}
		if (e == -ECANCELED) {
			res->crashed = 1;
			break;
		}
		if (e == -ESHUTDOWN) {
			res->powered_off = 1;
			break;
		}
		if (e) {
			g.watch_reset = 0;
			return fail("reading the response: %s", io_err(e));
		}
		if (rf.type == VMR_FRAME_RESPONSE && rf.seq == f.seq &&
		    rf.len >= sizeof(res->r)) {
			memcpy(&res->r, res->payload, sizeof(res->r));
			if (sizeof(res->r) + (uint64_t)res->r.out_len + res->r.err_len > rf.len)
				return fail("response of %u bytes shorter than its lengths", rf.len);
			res->out = res->payload + sizeof(res->r);
			res->err = res->out + res->r.out_len;
			res->ok = 1;
			break;
		}
		/* Anything else (a READY after a guest reboot...) is not the answer. */
		free(res->payload);
		res->payload = NULL;
	}
	g.watch_reset = 0;
	res->run_ms = now_ms() - t0;
	return 0;
}

/* ---- output ---- */

static json_object *jbytes(const char *p, size_t n)
{
	return json_object_new_string_len(p ? p : "", p ? n : 0);
}

static json_object *response_json(const struct response *r, const struct timing *t, uint64_t seq)
{
	json_object *j = json_object_new_object(), *ph = json_object_new_object();

	json_object_object_add(j, "seq", json_object_new_int64(seq));
	json_object_object_add(j, "outcome", json_object_new_string(r->ok ? "ok" :
				r->timed_out ? "timeout" : r->crashed ? "crash" :
				r->powered_off ? "poweroff" : "error"));
	if (r->crashed || r->powered_off)
		json_object_object_add(j, "why", json_object_new_string(g.crash));
	if (r->stuck)
		json_object_object_add(j, "stuck", json_object_get(r->stuck));
	if (r->ok) {
		int st = r->r.wait_status;

		json_object_object_add(j, "exit", json_object_new_int(WIFEXITED(st) ?
					WEXITSTATUS(st) : 128 + WTERMSIG(st)));
		json_object_object_add(j, "stdout", jbytes(r->out, r->r.out_len));
		json_object_object_add(j, "stderr", jbytes(r->err, r->r.err_len));
		json_object_object_add(j, "guest_run_ms", json_object_new_double(r->r.run_ns / 1e6));
		json_object_object_add(j, "guest_mono_ns", json_object_new_int64(r->r.guest_mono_ns));
		json_object_object_add(j, "guest_real_ns", json_object_new_int64(r->r.guest_real_ns));
	}
	json_object_object_add(j, "run_ms", json_object_new_double(r->run_ms));
	json_object_object_add(j, "reset", json_object_new_string(mode_names[o.mode]));
	json_object_object_add(j, "reset_ms", json_object_new_double(t->total_ms));
	json_object_object_add(ph, "stop_ms", json_object_new_double(t->stop_ms));
	json_object_object_add(ph, "revert_ms", json_object_new_double(t->revert_ms));
	json_object_object_add(ph, "load_ms", json_object_new_double(t->load_ms));
	json_object_object_add(j, "phases", ph);
	json_object_object_add(j, "reverted_pages", json_object_new_int64(t->ram_pages));
	json_object_object_add(j, "disk_reverted_pages", json_object_new_int64(t->disk_pages));
	json_object_object_add(j, "kept_pages", json_object_new_int64(t->kept_pages));
	json_object_object_add(j, "hot_pages", json_object_new_int64(t->hot_pages));
	return j;
}

static void print_json(json_object *j)
{
	printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
}

static json_object *info_json(void)
{
	json_object *j = json_object_new_object();
	char p[64];

	json_object_object_add(j, "qemu_pid", json_object_new_int(g.qemu));
	json_object_object_add(j, "vm_id", json_object_new_int64(g.vm_id));
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", getpid(), g.ram_fd);
	json_object_object_add(j, "ram", json_object_new_string(p));
	if (g.disk_fd >= 0) {
		snprintf(p, sizeof(p), "/proc/%d/fd/%d", getpid(), g.disk_fd);
		json_object_object_add(j, "disk", json_object_new_string(p));
	}
	json_object_object_add(j, "mem", json_object_new_int64(o.mem));
	if (o.keep) {
		json_object_object_add(j, "keep_gpa", json_object_new_int64(o.mem / 2));
		json_object_object_add(j, "keep_len", json_object_new_int64(o.keep));
	}
	json_object_object_add(j, "reset", json_object_new_string(mode_names[o.mode]));
	json_object_object_add(j, "hot", json_object_new_string(hot_names[o.hot]));
	json_object_object_add(j, "boot_ms", json_object_new_double(g.boot_ms));
	json_object_object_add(j, "ready_ms", json_object_new_double(g.ready_ms));
	return j;
}

/* ---- serve: one JSON object a line on stdin ---- */

static int serve_line(const char *line)
{
	json_object *j = json_tokener_parse(line), *v, *out;
	const char *op = "run";
	int ret = 0;

	if (!j || !json_object_is_type(j, json_type_object)) {
		json_object_put(j);
		out = json_object_new_object();
		json_object_object_add(out, "error", json_object_new_string("not a JSON object"));
		print_json(out);
		json_object_put(out);
		return 0;
	}
	if (json_object_object_get_ex(j, "op", &v))
		op = json_object_get_string(v);
	if (!strcmp(op, "info")) {
		out = info_json();
	} else if (!strcmp(op, "reset")) {
		struct timing t;
		struct response r = { 0 };

		if (reset(&t))
			ret = -1;
		out = response_json(&r, &t, g.seq);
		json_object_object_del(out, "outcome");
		if (ret)
			json_object_object_add(out, "error", json_object_new_string(g.err));
	} else if (!strcmp(op, "mode")) {
		/*
		 * --compare: reset with another way from now on. vmreset and loadvm
		 * need this QEMU (their snapshots are in its image); incoming and
		 * cold replace it, so they come last.
		 */
		const char *m = json_object_object_get_ex(j, "reset", &v) ? json_object_get_string(v) : "";
		size_t i = word_index(mode_names, NWORDS(mode_names), m);

		out = json_object_new_object();
		if (!o.compare || i == NWORDS(mode_names) ||
		    (g.replaced && (i == RESET_VMRESET || i == RESET_LOADVM))) {
			json_object_object_add(out, "error", json_object_new_string(
				!o.compare ? "mode needs --compare" :
				i == NWORDS(mode_names) ? "unknown mode" :
				"QEMU was replaced: its snapshots are gone"));
		} else {
			o.mode = i;
			json_object_object_add(out, "reset", json_object_new_string(mode_names[i]));
		}
	} else if (!strcmp(op, "hot")) {
		/* Hot pages learned or off from now on (a benchmark compares them). */
		const char *m = json_object_object_get_ex(j, "mode", &v) ? json_object_get_string(v) : "";
		struct vmreset_hot_config c = { .flags = VMRESET_HOT_CFG_MODE };
		int e;

		out = json_object_new_object();
		if (strcmp(m, "learn") && strcmp(m, "off")) {
			json_object_object_add(out, "error", json_object_new_string(
				"hot: \"mode\" is learn or off"));
		} else {
			c.mode = !strcmp(m, "learn") ? VMRESET_HOT_LEARN : VMRESET_HOT_OFF;
			e = vmreset_hot_config(g.ram_fd, &c);
			if (e) {
				json_object_object_add(out, "error", json_object_new_string(strerror(-e)));
			} else {
				o.hot = c.mode == VMRESET_HOT_LEARN ? HOT_LEARN : HOT_OFF;
				json_object_object_add(out, "hot", json_object_new_string(m));
				json_object_object_add(out, "hot_pages", json_object_new_int64(c.hot_pages));
			}
		}
	} else if (!strcmp(op, "qmp")) {
		json_object *cmd = NULL, *args = NULL, *rv;
		int err;

		json_object_object_get_ex(j, "execute", &cmd);
		if (json_object_object_get_ex(j, "arguments", &args))
			json_object_get(args);
		rv = qmp_exec(cmd ? json_object_get_string(cmd) : "", args, &err);
		out = json_object_new_object();
		if (err)
			json_object_object_add(out, "error", json_object_new_string(g.err));
		else
			json_object_object_add(out, "return", rv ? rv : json_object_new_object());
	} else if (!strcmp(op, "run")) {
		char *argv[256];
		int argc = 0, timeout = 0, do_reset = 1;
		const char *in = "";
		size_t in_len = 0;
		struct response r;
		struct timing t = { 0 };

		if (json_object_object_get_ex(j, "argv", &v) && json_object_is_type(v, json_type_array))
			for (size_t i = 0; i < json_object_array_length(v) && argc < 255; i++)
				argv[argc++] = (char *)json_object_get_string(
					json_object_array_get_idx(v, i));
		if (json_object_object_get_ex(j, "stdin", &v)) {
			in = json_object_get_string(v);
			in_len = json_object_get_string_len(v);
		}
		if (json_object_object_get_ex(j, "timeout_ms", &v))
			timeout = json_object_get_int(v);
		if (json_object_object_get_ex(j, "reset", &v))
			do_reset = json_object_get_boolean(v);
		if (!argc) {
			out = json_object_new_object();
			json_object_object_add(out, "error", json_object_new_string("no argv"));
		} else if (request(argv, argc, in, in_len, timeout, &r)) {
			out = json_object_new_object();
			json_object_object_add(out, "error", json_object_new_string(g.err));
			ret = -1;
		} else {
			if (do_reset || !r.ok) {
				if (reset(&t))
					ret = -1;
			} else if (qmp_do("stop", NULL)) {
				ret = -1;
			}
			out = response_json(&r, &t, g.seq);
			if (ret)
				json_object_object_add(out, "error", json_object_new_string(g.err));
			free(r.payload);
			json_object_put(r.stuck);
		}
	} else {
		out = json_object_new_object();
		json_object_object_add(out, "error", json_object_new_string("unknown op"));
	}
	print_json(out);
	json_object_put(out);
	json_object_put(j);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmreset-qemu [OPTIONS] COMMAND\n"
"\n"
"Boot an unmodified QEMU (microvm, KVM) with guest RAM and disk on\n"
"vmresetfs and the guest agent as /init, take the ready snapshot, and run\n"
"requests, resetting the VM after each (docs/qemu.md).\n"
"\n"
"Commands:\n"
"  boot                 boot to ready, snapshot, print the timings (JSON)\n"
"  run -- PROG [ARG...] one request; prints its stdout, exits with its status\n"
"  serve                JSON requests on stdin, one a line, responses on stdout:\n"
"                       {\"argv\": [...], \"stdin\": \"...\", \"timeout_ms\": N,\n"
"                        \"reset\": true}, {\"op\": \"reset\"}, {\"op\": \"info\"},\n"
"                       {\"op\": \"qmp\", \"execute\": CMD, \"arguments\": {...}},\n"
"                       {\"op\": \"hot\", \"mode\": \"learn\"|\"off\"}\n"
"                       outcome: ok, timeout, crash (the guest panicked or\n"
"                       triple-faulted; the VM is reset), poweroff (the guest\n"
"                       powered off; the VM is reset), error\n"
"\n"
"Options:\n"
"  -q, --qemu PATH      QEMU binary (default qemu-system-x86_64)\n"
"  -k, --kernel PATH    bzImage (default /boot/vmlinuz-$(uname -r))\n"
"  -i, --initrd PATH    the agent's initramfs (default what make install built\n"
"                       for the running kernel, as vmreset-vmm's:\n"
"                       /usr/local/lib/vmreset/guest-$(uname -r).cpio.gz;\n"
"                       for another: make -C vmm guest KREL=...)\n"
"  -m, --mem SIZE       guest RAM (default 256M; K, M, G)\n"
"  -d, --dir DIR        vmresetfs directory for RAM and disk (default /run/vmreset)\n"
"      --disk IMAGE     raw disk image, copied to vmresetfs, virtio-blk, on /disk\n"
"      --keep SIZE      a range at RAM/2 the agent preserves by hypercall\n"
"                       (needs `vmreset-hc load`; default 0: none)\n"
"      --reset MODE     vmreset (default): REVERT + snapshot-load of the device\n"
"                       state in the same QEMU; incoming: REVERT + a new QEMU\n"
"                       with -incoming; loadvm: QEMU's savevm/loadvm of all\n"
"                       state, RAM included (a baseline); cold: a new boot per\n"
"                       request (a baseline); none\n"
"      --hot MODE       hot pages of guest RAM: learn (default: pages that\n"
"                       every request dirties are copied back in place at\n"
"                       REVERT and stay mapped, so the next request does not\n"
"                       refault them), off, or mount (the mount's hot=); an\n"
"                       explicit set: vmresetctl hot add on info's \"ram\"\n"
"      --append ARGS    more guest kernel command line\n"
"      --console FILE   the guest's serial console to FILE\n"
"      --boot-timeout MS  (default 600000)\n"
"      --accel ACCEL    QEMU accelerator (default kvm; tcg only to debug the\n"
"                       driver: KVM is what the reset is for)\n"
"      --compare        (with --reset vmreset) also save the ready state the other\n"
"                       ways take, so that serve's {\"op\": \"mode\", \"reset\": M}\n"
"                       switches between them on one boot (a benchmark)\n"
"  -v, --verbose        QEMU's command line and stdout\n"
"  -h, --help           this text\n");
}

static uint64_t parse_size(const char *s, const char *what)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (end == s || *end || (v & 4095))
		die("%s: bad size '%s' (a multiple of 4K, with K, M or G)", what, s);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "qemu", 1, 0, 'q' }, { "kernel", 1, 0, 'k' }, { "initrd", 1, 0, 'i' },
		{ "mem", 1, 0, 'm' }, { "dir", 1, 0, 'd' }, { "disk", 1, 0, 'D' },
		{ "keep", 1, 0, 'K' }, { "reset", 1, 0, 'R' }, { "append", 1, 0, 'a' },
		{ "console", 1, 0, 'c' }, { "boot-timeout", 1, 0, 'T' },
		{ "accel", 1, 0, 'A' }, { "compare", 0, 0, 'C' }, { "hot", 1, 0, 'H' }, { "verbose", 0, 0, 'v' }, { "help", 0, 0, 'h' }, { 0 }
	};
	static char kernel[300], initrd[300];
	const char *cmd;
	struct utsname u;
	int c, ret = 0;

	while ((c = getopt_long(argc, argv, "+q:k:i:m:d:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'q': o.qemu = optarg; break;
		case 'k': o.kernel = optarg; break;
		case 'i': o.initrd = optarg; break;
		case 'm': o.mem = parse_size(optarg, "--mem"); break;
		case 'd': o.dir = optarg; break;
		case 'D': o.disk = optarg; break;
		case 'K': o.keep = parse_size(optarg, "--keep"); break;
		case 'a': o.append = optarg; break;
		case 'c': o.console = optarg; break;
		case 'T': o.boot_timeout_ms = atoi(optarg); break;
		case 'v': o.verbose = 1; break;
		case 'A': o.accel = optarg; break;
		case 'C': o.compare = 1; break;
		case 'H':
			o.hot = word_index(hot_names, NWORDS(hot_names), optarg);
			if (o.hot == NWORDS(hot_names))
				die("--hot: unknown mode '%s' (learn, off, mount)", optarg);
			break;
		case 'R':
			o.mode = word_index(mode_names, NWORDS(mode_names), optarg);
			if (o.mode == NWORDS(mode_names))
				die("--reset: unknown mode '%s' (vmreset, incoming, loadvm, cold, none)",
				    optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "boot") && strcmp(cmd, "run") && strcmp(cmd, "serve"))
		die("unknown command '%s' (boot, run, serve)", cmd);
	if (!strcmp(cmd, "run")) {
		if (optind < argc && !strcmp(argv[optind], "--"))
			optind++;
		if (optind >= argc)
			die("run: no program (run -- PROG [ARG...])");
	}
	if (!o.kernel) {
		uname(&u);
		snprintf(kernel, sizeof(kernel), "/boot/vmlinuz-%s", u.release);
		o.kernel = kernel;
	}
	if (access(o.kernel, R_OK))
		die("--kernel %s: %s", o.kernel, strerror(errno));
	if (!o.initrd) {
		uname(&u);
		snprintf(initrd, sizeof(initrd), "/usr/local/lib/vmreset/guest-%s.cpio.gz", u.release);
		if (access(initrd, R_OK))
			die("--initrd %s (the default): %s (make install builds it for the "
			    "running kernel)", initrd, strerror(errno));
		o.initrd = initrd;
	}
	if (access(o.initrd, R_OK))
		die("--initrd %s: %s", o.initrd, strerror(errno));
	if (o.keep && o.keep > o.mem / 4)
		die("--keep %" PRIu64 ": more than a quarter of --mem", o.keep);

	snprintf(g.tmp, sizeof(g.tmp), "/tmp/vmreset-qemu.XXXXXX");
	if (!mkdtemp(g.tmp))
		die("mkdtemp: %s", strerror(errno));
	snprintf(g.qmp_path, sizeof(g.qmp_path), "%s/qmp.sock", g.tmp);
	snprintf(g.agent_path, sizeof(g.agent_path), "%s/agent.sock", g.tmp);
	snprintf(g.state_path, sizeof(g.state_path), "%s/state.mig", g.tmp);
	snprintf(g.vmstate_path, sizeof(g.vmstate_path), "%s/vmstate.qcow2", g.tmp);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);

	if (make_files())
		goto err;
	/* A cold boot starts from empty RAM and the pristine disk every time. */
	if (o.mode == RESET_COLD && snapshot_files())
		goto err;
	if (boot() || take_ready())
		goto err;
	if (!strcmp(cmd, "boot")) {
		json_object *j = info_json();

		print_json(j);
		json_object_put(j);
	} else if (!strcmp(cmd, "run")) {
		struct response r;
		struct timing t;

		if (request(argv + optind, argc - optind, "", 0, 0, &r) || reset(&t))
			goto err;
		if (r.ok) {
			fwrite(r.out, 1, r.r.out_len, stdout);
			fwrite(r.err, 1, r.r.err_len, stderr);
			ret = WIFEXITED(r.r.wait_status) ? WEXITSTATUS(r.r.wait_status) :
			      128 + WTERMSIG(r.r.wait_status);
		} else {
			fprintf(stderr, "vmreset-qemu: %s\n", r.crashed || r.powered_off ? g.crash :
				r.timed_out ? "the request timed out" : "no response");
			if (r.stuck)
				fprintf(stderr, "vmreset-qemu: the VM at the timeout: %s\n",
					json_object_to_json_string_ext(r.stuck, JSON_C_TO_STRING_PLAIN));
			ret = 1;
		}
		free(r.payload);
		json_object_put(r.stuck);
	} else {
		char *line = NULL;
		size_t cap = 0;
		json_object *j = info_json();

		json_object_object_add(j, "ready", json_object_new_boolean(1));
		print_json(j);
		json_object_put(j);
		while (getline(&line, &cap, stdin) > 0) {
			if (serve_line(line)) {
				fprintf(stderr, "vmreset-qemu: %s\n", g.err);
				ret = 1;
				/* A VM that could not be reset must not serve again. */
				break;
			}
		}
		free(line);
	}
	cleanup();
	return ret;
err:
	fprintf(stderr, "vmreset-qemu: %s\n", g.err);
	cleanup();
	return 1;
}
