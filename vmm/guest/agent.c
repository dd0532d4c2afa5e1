// SPDX-License-Identifier: GPL-2.0
/*
 * The guest agent of vmreset-vmm: /init of the guest initramfs, and the
 * `vmreset-guest` tool for handlers (same binary, chosen by argv[0]).
 *
 * As /init it sets the runtime up, declares the preserved range, rings
 * the READY doorbell (where the VMM snapshots the VM), then runs one
 * request per doorbell round trip: see abi.h. Without a mailbox (another
 * VMM, QEMU) the same requests come framed over a virtio-serial port, and
 * the preserved range is declared by hypercall (abi.h, docs/qemu.md).
 * Static, no libraries: the image holds only this, busybox and the
 * kernel's modules.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include "abi.h"

#define MAX_ARGS	256

static volatile struct vmr_mbox *mbox;
static uint8_t *mbox_base;
static uint64_t mbox_gpa, keep_gpa, keep_len;
static char disk_dev[64];
/* The stream transport (abi.h): the virtio-serial port, or -1. */
static int port_fd = -1;
static int use_port;

static void doorbell(uint32_t cmd)
{
	/* "memory": the mailbox is written before the VMM looks at it. */
	__asm__ volatile("outl %0, %w1" : : "a"(cmd), "Nd"(VMR_PORT_DOORBELL)
			 : "memory");
}

static uint32_t host_counter(void)
{
	uint32_t v;

	__asm__ volatile("inl %w1, %0" : "=a"(v) : "Nd"(VMR_PORT_COUNTER)
			 : "memory");
	return v;
}

static void klog(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, buf, n > 0 ? (size_t)n : 0) < 0)
			n = 0;
		close(fd);
	}
}

/* Setup failed: tell the VMM why (err area) and stop. */
static void __attribute__((noreturn)) fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	klog("vmreset-agent: %s\n", buf);
	if (port_fd >= 0) {
		struct vmr_frame f = { .magic = VMR_FRAME_MAGIC, .type = VMR_FRAME_FAIL,
				       .len = n, .version = VMR_MBOX_VERSION };

		if (write(port_fd, &f, sizeof(f)) < 0 || write(port_fd, buf, n) < 0)
			klog("vmreset-agent: cannot report the failure: %s\n",
			     strerror(errno));
	} else if (mbox) {
		memcpy(mbox_base + VMR_MBOX_ERR_OFF, buf, n);
		mbox->err_len = n;
		doorbell(VMR_DB_FAIL);
	}
	for (;;)
		pause();
}

static uint64_t cmdline_u64(const char *cmdline, const char *key, uint64_t *second)
{
	const char *p = strstr(cmdline, key);
	char *end;
	uint64_t v;

	if (!p)
		return 0;
	v = strtoull(p + strlen(key), &end, 0);
	if (second && *end == ',')
		*second = strtoull(end + 1, NULL, 0);
	return v;
}

static void read_cmdline(void)
{
	char buf[4096] = "";
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	const char *d;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		fail("cannot read /proc/cmdline");
	buf[n] = 0;
	mbox_gpa = cmdline_u64(buf, "vmreset.mbox=", NULL);
	keep_gpa = cmdline_u64(buf, "vmreset.keep=", &keep_len);
	d = strstr(buf, "vmreset.disk=");
	if (d)
		sscanf(d + strlen("vmreset.disk="), "%63[^ \n]", disk_dev);
	/* The stream transport unless there is a mailbox, or when asked to. */
	use_port = !mbox_gpa || strstr(buf, "vmreset.transport=virtio");
}

static void *map_phys(uint64_t gpa, uint64_t len)
{
	int fd = open("/dev/mem", O_RDWR | O_CLOEXEC);
	void *p;

	if (fd < 0)
		return NULL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, gpa);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

/* Modules named in /etc/vmreset/modules, dependencies first. */
static void load_modules(void)
{
	static int loaded;

	/* Only the stream transport needs the console driver. */
	const char *skip = use_port ? NULL : "/virtio_console.ko";

	char line[512];
	FILE *f = fopen("/etc/vmreset/modules", "re");

	if (!f || loaded++)
		goto out;
	while (fgets(line, sizeof(line), f)) {
		int fd;

		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		if (skip && strlen(line) > strlen(skip) &&
		    !strcmp(line + strlen(line) - strlen(skip), skip))
			continue;
		fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fail("module %s: %s", line, strerror(errno));
		/* ENODEV: e.g. crc32c-intel without SSE4.2; the generic one loads. */
		if (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST &&
		    errno != ENODEV)
			fail("loading %s: %s", line, strerror(errno));
		close(fd);
	}
out:
	if (f)
		fclose(f);
}

/*
 * VMRESET_HC_PRESERVE through vmreset_guest.ko (abi.h): 0 or -errno; the
 * hypercall's rax in *@rax (KVM's -KVM_ENOSYS when it went through).
 */
static int hc_preserve(uint64_t gpa, uint64_t len, uint64_t flags, long *rax)
{
	char buf[160];
	int fd, n;

	if (access(VMR_HC_PARAM, W_OK)) {
		struct utsname u;

		uname(&u);
		snprintf(buf, sizeof(buf), VMR_HC_MODULE, u.release);
		fd = open(buf, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		n = syscall(SYS_finit_module, fd, "", 0);
		close(fd);
		if (n && errno != EEXIST)
			return -errno;
	}
	fd = open(VMR_HC_PARAM, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%#llx %#llx %#llx", (unsigned long long)gpa,
		     (unsigned long long)len, (unsigned long long)flags);
	if (write(fd, buf, n) != n) {
		n = -errno;
		close(fd);
		return n;
	}
	close(fd);
	*rax = 0;
	fd = open(VMR_HC_RESULT, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = 0;
			*rax = strtol(buf, NULL, 0);
		}
		close(fd);
	}
	return 0;
}

/* Finds the port named VMR_PORT_NAME (its driver probes asynchronously). */
static void setup_port(void)
{
	char path[128], name[64], dev[64] = "";

	mbox_base = mmap(NULL, VMR_MBOX_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mbox_base == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	mbox = (volatile struct vmr_mbox *)mbox_base;
	load_modules();
	/* 60 s: probing is slow when the guest is emulated. */
	for (int tries = 0; tries < 600 && !dev[0]; tries++) {
		for (int i = 0; i < 8 && !dev[0]; i++) {
			for (int j = 0; j < 32 && !dev[0]; j++) {
				FILE *f;

				snprintf(path, sizeof(path),
					 "/sys/class/virtio-ports/vport%dp%d/name", i, j);
				f = fopen(path, "re");
				if (!f)
					continue;
				if (fgets(name, sizeof(name), f) &&
				    !strncmp(name, VMR_PORT_NAME, strlen(VMR_PORT_NAME)) &&
				    (name[strlen(VMR_PORT_NAME)] == '\n' ||
				     !name[strlen(VMR_PORT_NAME)]))
					snprintf(dev, sizeof(dev), "/dev/vport%dp%d", i, j);
				fclose(f);
			}
		}
		if (!dev[0])
			usleep(100000);
	}
	if (!dev[0])
		fail("no virtio-serial port named %s (and no vmreset.mbox=)", VMR_PORT_NAME);
	/* devtmpfs makes the node once the port is registered. */
	for (int tries = 0; tries < 100 && port_fd < 0; tries++) {
		port_fd = open(dev, O_RDWR | O_CLOEXEC);
		if (port_fd < 0)
			usleep(100000);
	}
	if (port_fd < 0)
		fail("open %s: %s", dev, strerror(errno));
}

static void setup(void)
{
	cpu_set_t cpus;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
	mount("tmpfs", "/run", "tmpfs", 0, NULL);
	setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
	setenv("HOME", "/root", 1);
	read_cmdline();
	if (use_port) {
		setup_port();
		goto runtime;
	}
	mbox_base = map_phys(mbox_gpa, VMR_MBOX_SIZE);
	if (!mbox_base)
		fail("cannot map the mailbox at %#llx from /dev/mem: %s",
		     (unsigned long long)mbox_gpa, strerror(errno));
	mbox = (volatile struct vmr_mbox *)mbox_base;
	if (iopl(3))
		fail("iopl: %s", strerror(errno));
runtime:
	/* Doorbells from one vCPU: the VMM serves them on vCPU 0. */
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	if (disk_dev[0]) {
		/* Only the disk needs modules; loading them costs seconds when emulated. */
		load_modules();
		mkdir("/disk", 0755);
		if (mount(disk_dev, "/disk", "ext4", 0, NULL))
			fail("mount %s on /disk: %s", disk_dev, strerror(errno));
	}
	if (keep_gpa && keep_len && use_port) {
		long rax;
		int e = hc_preserve(keep_gpa, keep_len, 0, &rax);

		if (e)
			fail("preserve hypercall for %#llx+%#llx: %s",
			     (unsigned long long)keep_gpa,
			     (unsigned long long)keep_len, strerror(-e));
	} else if (keep_gpa && keep_len) {
		mbox->preserve_gpa = keep_gpa;
		mbox->preserve_len = keep_len;
		doorbell(VMR_DB_PRESERVE);
		if (mbox->preserve_result)
			fail("the VMM refused to preserve %#llx+%#llx: %d",
			     (unsigned long long)keep_gpa,
			     (unsigned long long)keep_len, mbox->preserve_result);
	}
	if (keep_gpa && keep_len) {
		char v[32];

		snprintf(v, sizeof(v), "%#llx", (unsigned long long)keep_gpa);
		setenv("VMRESET_KEEP", v, 1);
		snprintf(v, sizeof(v), "%llu", (unsigned long long)keep_len);
		setenv("VMRESET_KEEP_SIZE", v, 1);
	}
	/* The page cache reverts with memory, the disk with its file. */
	sync();
}

static int64_t now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Read what @fd has into @buf (up to @cap), draining the rest. */
static int drain(int fd, uint8_t *buf, uint32_t cap, uint32_t *len, int *trunc)
{
	char junk[4096];
	ssize_t n;

	if (*len < cap)
		n = read(fd, buf + *len, cap - *len);
	else
		n = read(fd, junk, sizeof(junk));
	if (n > 0) {
		if (*len < cap)
			*len += n;
		else
			*trunc = 1;
		return 1;
	}
	return n < 0 && errno == EINTR;
}

static void serve(void)
{
	uint8_t *req = mbox_base + VMR_MBOX_REQ_OFF;
	char *argv[MAX_ARGS + 1];
	uint32_t argc = mbox->argc, args_len = mbox->args_len;
	uint32_t in_len = mbox->stdin_len, in_off = 0, out_len = 0, err_len = 0;
	int in[2], out[2], err[2], status = 0, otrunc = 0, etrunc = 0;
	uint32_t flags = 0;
	int64_t t0;
	pid_t pid;
	char *p;

	if (argc == 0 || argc > MAX_ARGS || args_len > VMR_MBOX_REQ_SIZE ||
	    in_len > VMR_MBOX_REQ_SIZE - args_len || req[args_len - 1] != 0) {
		status = 126 << 8;
		flags |= VMR_RESP_EXEC_FAILED;
		goto out;
	}
	p = (char *)req;
	for (uint32_t i = 0; i < argc; i++) {
		if (p >= (char *)req + args_len) {
			status = 126 << 8;
			flags |= VMR_RESP_EXEC_FAILED;
			goto out;
		}
		argv[i] = p;
		p += strlen(p) + 1;
	}
	argv[argc] = NULL;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
		status = 126 << 8;
		flags |= VMR_RESP_EXEC_FAILED;
		goto out;
	}
	mbox->guest_mono_ns = now_ns(CLOCK_MONOTONIC);
	mbox->guest_real_ns = now_ns(CLOCK_REALTIME);
	t0 = now_ns(CLOCK_MONOTONIC);
	pid = fork();
	if (pid == 0) {
		cpu_set_t cpus;

		/* Handlers may use every vCPU; only the agent stays on 0. */
		CPU_ZERO(&cpus);
		for (int c = 0; c < CPU_SETSIZE; c++)
			CPU_SET(c, &cpus);
		sched_setaffinity(0, sizeof(cpus), &cpus);
		iopl(0);
		setsid();
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (chdir("/tmp"))
			_exit(126);
		execvp(argv[0], argv);
		dprintf(2, "vmreset-agent: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (pid < 0) {
		status = 126 << 8;
		flags |= VMR_RESP_EXEC_FAILED;
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Never block on the handler's stdin: a handler that writes its
	 * output before reading all its input (cat) would fill its stdout
	 * pipe while we wait to write, and neither would go on.
	 */
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	if (in_len == 0) {
		close(in[1]);
		in[1] = -1;
	}
	while (out[0] >= 0 || err[0] >= 0) {
		struct pollfd pfd[3] = {
			{ .fd = out[0], .events = POLLIN },
			{ .fd = err[0], .events = POLLIN },
			{ .fd = in[1], .events = POLLOUT },
		};

		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents && !drain(out[0], mbox_base + VMR_MBOX_OUT_OFF,
					     VMR_MBOX_OUT_SIZE, &out_len, &otrunc)) {
			close(out[0]);
			out[0] = -1;
		}
		if (pfd[1].revents && !drain(err[0], mbox_base + VMR_MBOX_ERR_OFF,
					     VMR_MBOX_ERR_SIZE, &err_len, &etrunc)) {
			close(err[0]);
			err[0] = -1;
		}
		if (pfd[2].revents) {
			ssize_t n = -1;

			if (pfd[2].revents & POLLOUT)
				n = write(in[1], req + args_len + in_off, in_len - in_off);
			if (n > 0)
				in_off += n;
			else if (n < 0 && (pfd[2].revents & POLLOUT) &&
				 (errno == EAGAIN || errno == EINTR))
				n = 0;	/* the pipe filled up again: wait for poll */
			else
				n = -1;
			if (n < 0 || in_off == in_len) {
				close(in[1]);
				in[1] = -1;
			}
		}
	}
	if (in[1] >= 0)
		close(in[1]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	mbox->run_ns = now_ns(CLOCK_MONOTONIC) - t0;
	if (otrunc)
		flags |= VMR_RESP_OUT_TRUNC;
	if (etrunc)
		flags |= VMR_RESP_ERR_TRUNC;
out:
	mbox->wait_status = status;
	mbox->resp_flags = flags;
	mbox->out_len = out_len;
	mbox->err_len = err_len;
	mbox->resp_seq = mbox->seq;
}

/* All of @len, or -1. Reads of 0 mean the host is not connected yet. */
static int port_read(void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(port_fd, (char *)buf + off, len - off);

		if (n > 0) {
			off += n;
		} else if (n == 0 || errno == EINTR || errno == EAGAIN) {
			if (n == 0)
				usleep(10000);
		} else {
			return -1;
		}
	}
	return 0;
}

static int port_write(const struct iovec *iov, int cnt)
{
	struct iovec v[4];

	memcpy(v, iov, cnt * sizeof(*v));
	while (cnt) {
		ssize_t n = writev(port_fd, v, cnt);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		while (cnt && (size_t)n >= v[0].iov_len) {
			n -= v[0].iov_len;
			memmove(v, v + 1, --cnt * sizeof(*v));
		}
		if (cnt) {
			v[0].iov_base = (char *)v[0].iov_base + n;
			v[0].iov_len -= n;
		}
	}
	return 0;
}

static void send_frame(uint32_t type, uint64_t seq, const void *a, size_t alen,
		       const void *b, size_t blen, const void *c, size_t clen)
{
	struct vmr_frame f = { .magic = VMR_FRAME_MAGIC, .type = type, .seq = seq,
			       .len = alen + blen + clen, .version = VMR_MBOX_VERSION };
	struct iovec v[4] = {
		{ &f, sizeof(f) }, { (void *)a, alen }, { (void *)b, blen }, { (void *)c, clen },
	};

	if (port_write(v, 4))
		klog("vmreset-agent: writing to the port: %s\n", strerror(errno));
}

/* The stream transport: READY, then one REQUEST -> RESPONSE at a time. */
static void __attribute__((noreturn)) port_loop(void)
{
	uint8_t *req = mbox_base + VMR_MBOX_REQ_OFF;
	char junk[4096];

	/* The ready snapshot is taken once the host has this. */
	send_frame(VMR_FRAME_READY, 0, NULL, 0, NULL, 0, NULL, 0);
	for (;;) {
		struct vmr_frame f;
		struct vmr_frame_req q;
		struct vmr_frame_resp r;

		if (port_read(&f, sizeof(f)))
			fail("reading the port: %s", strerror(errno));
		if (f.magic != VMR_FRAME_MAGIC)
			fail("bad frame magic %#x from the host", f.magic);
		memset((void *)mbox, 0, sizeof(*mbox));
		mbox->seq = f.seq;
		if (f.type != VMR_FRAME_REQUEST || f.len < sizeof(q) ||
		    f.len - sizeof(q) > VMR_MBOX_REQ_SIZE) {
			/* Not a request we can take: skip it, say so. */
			for (uint32_t left = f.len; left; ) {
				uint32_t n = left < sizeof(junk) ? left : sizeof(junk);

				if (port_read(junk, n))
					fail("reading the port: %s", strerror(errno));
				left -= n;
			}
			mbox->argc = 0;
		} else {
			if (port_read(&q, sizeof(q)) ||
			    port_read(req, f.len - sizeof(q)))
				fail("reading the port: %s", strerror(errno));
			mbox->argc = q.argc;
			mbox->args_len = q.args_len;
			mbox->stdin_len = q.stdin_len;
			/* serve() checks them against the area like the mailbox's. */
			if ((uint64_t)q.args_len + q.stdin_len != f.len - sizeof(q))
				mbox->argc = 0;
		}
		serve();
		r = (struct vmr_frame_resp){
			.wait_status = mbox->wait_status, .resp_flags = mbox->resp_flags,
			.out_len = mbox->out_len, .err_len = mbox->err_len,
			.guest_mono_ns = mbox->guest_mono_ns,
			.guest_real_ns = mbox->guest_real_ns, .run_ns = mbox->run_ns,
		};
		send_frame(VMR_FRAME_RESPONSE, f.seq, &r, sizeof(r),
			   mbox_base + VMR_MBOX_OUT_OFF, r.out_len,
			   mbox_base + VMR_MBOX_ERR_OFF, r.err_len);
	}
}

static void __attribute__((noreturn)) agent(void)
{
	setup();
	if (use_port)
		port_loop();
	for (;;) {
		/* The ready snapshot is taken at this exit. */
		doorbell(VMR_DB_READY);
		serve();
		doorbell(VMR_DB_DONE);
	}
}

/* ---- vmreset-guest: tools for handlers ---- */

static int keep_map(uint64_t **p)
{
	const char *g = getenv("VMRESET_KEEP");
	uint64_t gpa = g ? strtoull(g, NULL, 0) : 0;

	if (!gpa) {
		read_cmdline();
		gpa = keep_gpa;
	}
	if (!gpa) {
		fprintf(stderr, "vmreset-guest: no preserved range (vmreset.keep=)\n");
		return -1;
	}
	*p = map_phys(gpa, 4096);
	if (!*p) {
		fprintf(stderr, "vmreset-guest: map %#llx: %s\n",
			(unsigned long long)gpa, strerror(errno));
		return -1;
	}
	return 0;
}

/* Touch as much memory as the guest lets us, with a pattern. */
static int hog(void)
{
	size_t chunk = 4 << 20, total = 0;

	for (;;) {
		uint64_t *p = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

		if (p == MAP_FAILED)
			break;
		for (size_t i = 0; i < chunk / 8; i++)
			p[i] = 0xdeadbeef00000000ULL | i;
		total += chunk;
		if (total >= ((size_t)1 << 40))
			break;
	}
	printf("%zu\n", total);
	return 0;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: vmreset-guest COMMAND\n"
		"  counter      read (and bump) the VMM's host-side counter\n"
		"  keep-inc     add one to the counter in the preserved page, print it\n"
		"  keep-get     print the counter in the preserved page\n"
		"  triple       reboot the kernel (reboot=t: a triple fault)\n"
		"  kbdreset     pulse the reset line of the keyboard controller\n"
		"  hog          fill guest memory until allocation fails\n"
		"  rtspin       spin forever at SCHED_FIFO priority 99\n"
		"  hc-preserve [-d] GPA LEN\n"
		"               ask the host by hypercall (VMRESET_HC_PRESERVE) to keep\n"
		"               GPA+LEN across resets (-d: no longer); prints rax\n");
	return 2;
}

static int tool(int argc, char **argv)
{
	uint64_t *keep;

	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "counter") || !strcmp(argv[1], "kbdreset")) {
		if (iopl(3)) {
			perror("vmreset-guest: iopl");
			return 1;
		}
		if (argv[1][0] == 'c') {
			printf("%u\n", host_counter());
			return 0;
		}
		outb(0xfe, 0x64);
		return 1;
	}
	if (!strcmp(argv[1], "keep-inc") || !strcmp(argv[1], "keep-get")) {
		if (keep_map(&keep))
			return 1;
		if (argv[1][5] == 'i')
			__atomic_add_fetch(keep, 1, __ATOMIC_SEQ_CST);
		printf("%llu\n", (unsigned long long)*keep);
		return 0;
	}
	if (!strcmp(argv[1], "triple")) {
		sync();
		reboot(RB_AUTOBOOT);
		perror("vmreset-guest: reboot");
		return 1;
	}
	if (!strcmp(argv[1], "hog"))
		return hog();
	if (!strcmp(argv[1], "hc-preserve")) {
		int del = argc > 2 && !strcmp(argv[2], "-d"), e;
		uint64_t gpa, len;
		char *end1, *end2;
		long rax;

		if (argc != 4 + del)
			return usage();
		gpa = strtoull(argv[2 + del], &end1, 0);
		len = strtoull(argv[3 + del], &end2, 0);
		if (*end1 || *end2 || end1 == argv[2 + del] || end2 == argv[3 + del]) {
			fprintf(stderr, "vmreset-guest: hc-preserve: bad number in '%s %s'\n",
				argv[2 + del], argv[3 + del]);
			return 2;
		}
		e = hc_preserve(gpa, len, del, &rax);
		if (e) {
			fprintf(stderr, "vmreset-guest: hc-preserve %#llx %#llx: %s\n",
				(unsigned long long)gpa, (unsigned long long)len, strerror(-e));
			return 1;
		}
		printf("%ld\n", rax);
		return 0;
	}
	if (!strcmp(argv[1], "rtspin")) {
		struct sched_param sp = { .sched_priority = 99 };

		if (sched_setscheduler(0, SCHED_FIFO, &sp)) {
			perror("vmreset-guest: sched_setscheduler");
			return 1;
		}
		for (;;)
			__asm__ volatile("" ::: "memory");
	}
	return usage();
}

int main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/');

	name = name ? name + 1 : argv[0];
	if (getpid() == 1 || !strcmp(name, "init"))
		agent();
	return tool(argc, argv);
}
