// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-vmm bench: the same requests served three ways, side by side in
 * one run (docs/vmm.md, "Measurements"):
 *
 *   cold      a fresh VM booted for every request;
 *   restore   a new process per request that maps the saved memory image
 *             MAP_PRIVATE and loads the vCPU and device state, as
 *             Firecracker restores a snapshot;
 *   in place  one VM reset after every request (vmreset), with hot pages
 *             learned (the default) and without.
 *
 * Then the memory of VMs started from reflink clones of the ready
 * snapshot against VMs with copies of it. JSON through json-c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <json-c/json.h>
#include "vmm.h"
#include "vmreset.h"

struct handler {
	const char *name, *what;
	char *argv[4];
};

static struct handler handlers[] = {
	{ "echo", "echo hi", { "echo", "hi", NULL } },
	{ "tmpfs_8m", "write 8 MiB to tmpfs",
	  { "sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null && echo ok", NULL } },
	{ "fork_10", "fork 10 processes",
	  { "sh", "-c", "for i in 0 1 2 3 4 5 6 7 8 9; do /bin/true & done; wait; echo ok", NULL } },
	{ "disk_sync", "write 64 KiB to a file on the disk, sync",
	  { "sh", "-c", "dd if=/dev/zero of=/disk/f bs=64k count=1 2>/dev/null && sync && echo ok", NULL } },
};
#define NH (sizeof(handlers) / sizeof(handlers[0]))

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Percentile @p (0-100) of @n samples, nearest rank. */
static uint64_t pct(uint64_t *v, int n, int p)
{
	int i;

	if (n <= 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	i = (p * n + 99) / 100 - 1;
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static int argc_of(char *const *argv)
{
	int n = 0;

	while (argv[n])
		n++;
	return n;
}

/* A request that must succeed with "ok" or "hi" on stdout. */
static int req_ok(struct vmm *vm, const struct handler *h, struct vmm_resp *r, char *err, size_t len)
{
	struct vmm_req q = { .argc = argc_of(h->argv), .argv = h->argv, .timeout_ms = 120000 };

	if (vmm_request(vm, &q, r)) {
		snprintf(err, len, "%s: %s", h->name, vmm_error(vm));
		return -1;
	}
	if (r->outcome != VMM_OK || !WIFEXITED(r->wait_status) || WEXITSTATUS(r->wait_status) ||
	    !r->out || (strcmp(r->out, "ok\n") && strcmp(r->out, "hi\n"))) {
		snprintf(err, len, "%s: outcome %s (%s), status %#x, stdout '%s', stderr '%s'", h->name,
			 vmm_outcome_name(r->outcome), r->why, r->wait_status, r->out ? r->out : "",
			 r->err ? r->err : "");
		vmm_resp_free(r);
		return -1;
	}
	return 0;
}

static json_object *stats(uint64_t *lat, int n, uint64_t total_us)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "samples", json_object_new_int(n));
	json_object_object_add(o, "p50_us", json_object_new_int64(pct(lat, n, 50)));
	json_object_object_add(o, "p99_us", json_object_new_int64(pct(lat, n, 99)));
	json_object_object_add(o, "requests_per_s",
			       json_object_new_double(total_us ? n * 1e6 / total_us : 0));
	return o;
}

/* In place: @n requests of @h on @vm, each reset after; phases are means. */
static json_object *in_place(struct vmm *vm, const struct handler *h, int n, unsigned int hot,
			     char *err, size_t len)
{
	struct vmreset_hot_config c = {
		.flags = VMRESET_HOT_CFG_MODE,
		.mode = hot == VMM_HOT_OFF ? VMRESET_HOT_OFF : VMRESET_HOT_LEARN,
	};
	uint64_t *lat = calloc(n, sizeof(*lat)), run = 0, rv = 0, ld = 0, qu = 0, pages = 0, t0;
	json_object *o = NULL, *ph;
	struct vmm_resp r;
	int warm = 5;

	if (!lat || vmreset_hot_config(vm->ram_fd, &c)) {
		snprintf(err, len, "HOT_CONFIG mode %u: %s", c.mode, strerror(errno));
		free(lat);
		return NULL;
	}
	/* A few first, so that learning has seen the pages every request dirties. */
	for (int i = 0; i < warm; i++) {
		if (req_ok(vm, h, &r, err, len))
			goto out;
		vmm_resp_free(&r);
	}
	t0 = vmm_now_us();
	for (int i = 0; i < n; i++) {
		uint64_t s = vmm_now_us();

		if (req_ok(vm, h, &r, err, len))
			goto out;
		lat[i] = vmm_now_us() - s;
		run += r.run_us;
		rv += r.revert_us;
		ld += r.load_us;
		qu += r.quiesce_us;
		pages += r.reverted_pages;
		vmm_resp_free(&r);
	}
	o = stats(lat, n, vmm_now_us() - t0);
	ph = json_object_new_object();
	json_object_object_add(ph, "guest_run_us", json_object_new_double((double)run / n));
	json_object_object_add(ph, "quiesce_us", json_object_new_double((double)qu / n));
	json_object_object_add(ph, "revert_us", json_object_new_double((double)rv / n));
	json_object_object_add(ph, "state_load_us", json_object_new_double((double)ld / n));
	json_object_object_add(ph, "reverted_pages", json_object_new_double((double)pages / n));
	c.flags = 0;
	vmreset_hot_config(vm->ram_fd, &c);
	json_object_object_add(ph, "hot_pages", json_object_new_int64(c.hot_pages));
	json_object_object_add(o, "phases", ph);
out:
	c.flags = VMRESET_HOT_CFG_MODE;
	c.mode = VMRESET_HOT_LEARN;
	vmreset_hot_config(vm->ram_fd, &c);
	free(lat);
	return o;
}

/* Runs @fn in a child; it reports @n uint64_t through a pipe. */
static int in_child(int (*fn)(void *arg, uint64_t *out), void *arg, uint64_t *out, int n,
		    char *err, size_t len)
{
	int p[2], status;
	ssize_t got;
	pid_t pid;

	if (pipe(p))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		uint64_t v[8] = { 0 };
		int rc;

		close(p[0]);
		rc = fn(arg, v);
		if (!rc && write(p[1], v, n * sizeof(*v)) != (ssize_t)(n * sizeof(*v)))
			rc = 1;
		_exit(rc);
	}
	close(p[1]);
	got = read(p[0], out, n * sizeof(*out));
	close(p[0]);
	waitpid(pid, &status, 0);
	if (got != (ssize_t)(n * sizeof(*out)) || !WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(err, len, "child failed: status %#x", status);
		return -1;
	}
	return 0;
}

/*
 * @count requests (64 at most), each served by @fn in a new process that
 * reports its start (restore or boot), its guest run and its latency: the
 * latencies' statistics, with the p50 of the starts as @start_key.
 */
static json_object *in_new_processes(int (*fn)(void *arg, uint64_t *out), void *arg,
				     int count, const char *start_key, char *err, size_t len)
{
	uint64_t lat[64], st[64], run[64], v[3], total = 0;
	int n = count < 64 ? count : 64;
	json_object *w;

	for (int k = 0; k < n; k++) {
		if (in_child(fn, arg, v, 3, err, len))
			return NULL;
		st[k] = v[0];
		run[k] = v[1];
		lat[k] = v[2];
		total += v[2];
	}
	w = stats(lat, n, total);
	json_object_object_add(w, start_key, json_object_new_int64(pct(st, n, 50)));
	json_object_object_add(w, "guest_run_p50_us", json_object_new_int64(pct(run, n, 50)));
	return w;
}

struct child_arg {
	const struct vmm_opts *o;
	const struct handler *h;
	const struct vmm_state *st;
	const char *prefix;		/* the exported snapshot (its disk) */
};

static void child_err(const char *what, const char *msg)
{
	fprintf(stderr, "vmreset-vmm bench: %s: %s\n", what, msg);
}

/* Cold: a new VM, booted, one request. out: boot_us, run_us, total_us. */
static int cold_one(void *arg, uint64_t *out)
{
	struct child_arg *a = arg;
	struct vmm_opts o = *a->o;
	uint64_t t0 = vmm_now_us();
	char err[512];
	struct vmm_resp r;
	struct vmm *vm;

	o.no_snapshot = true;
	vm = vmm_create(&o, err, sizeof(err));
	if (!vm) {
		child_err("cold", err);
		return 1;
	}
	if (vmm_boot(vm, 600000)) {
		child_err("cold boot", vmm_error(vm));
		return 1;
	}
	out[0] = vm->boot_us;
	/* To ready, then the request (not the agent's way back to READY after it). */
	out[2] = vmm_now_us() - t0;
	if (req_ok(vm, a->h, &r, err, sizeof(err))) {
		child_err("cold", err);
		return 1;
	}
	out[1] = r.run_us;
	out[2] += r.run_us;
	vmm_resp_free(&r);
	vmm_destroy(vm);
	return 0;
}

/*
 * Restore, Firecracker-style: a new VM on the saved memory image mapped
 * MAP_PRIVATE, its disk a reflink clone of the saved one, the state
 * loaded, one request. out: start_us (to the state loaded), run_us, total_us.
 */
static int restore_one(void *arg, uint64_t *out)
{
	struct child_arg *a = arg;
	uint64_t t0 = vmm_now_us();
	char err[512];
	struct vmm_resp r;
	struct vmm_opts o = *a->o;
	char disk[4200];
	struct vmm *vm;

	/* The saved disk: on the same vmresetfs, setup_disk() clones it. */
	snprintf(disk, sizeof(disk), "%s.disk", a->prefix);
	if (o.disk)
		o.disk = disk;
	vm = vmm_create(&o, err, sizeof(err));
	if (!vm) {
		child_err("restore", err);
		return 1;
	}
	if (vmm_start_private(vm, a->st)) {
		child_err("restore", vmm_error(vm));
		return 1;
	}
	out[0] = vmm_now_us() - t0;
	if (req_ok(vm, a->h, &r, err, sizeof(err))) {
		child_err("restore", err);
		return 1;
	}
	out[1] = r.run_us;
	out[2] = out[0] + r.run_us;
	vmm_resp_free(&r);
	vmm_destroy(vm);
	return 0;
}

/* Writes the RAM of @vm (the ready snapshot, between requests) to @path, holes kept. */
static int write_image(struct vmm *vm, const char *path, char *err, size_t len)
{
	static const uint8_t zero[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || ftruncate(fd, vm->mem_size)) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (uint64_t off = 0; off < vm->mem_size; off += sizeof(zero)) {
		if (!memcmp(vm->ram + off, zero, sizeof(zero)))
			continue;
		if (pwrite(fd, vm->ram + off, sizeof(zero), off) != (ssize_t)sizeof(zero)) {
			snprintf(err, len, "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

static long mem_available_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "MemAvailable:", 13))
			kb = strtol(line + 13, NULL, 10);
	fclose(f);
	return kb;
}

/*
 * One of N concurrent VMs: from clones of the snapshot (@copy false) or
 * from copies of its files (@copy true); serves one request, says so on
 * @ready, then waits to be killed.
 */
static void resident_vm(const struct vmm_opts *o, const char *prefix, bool copy, int ready)
{
	char err[512], path[4200];
	struct vmm *vm = vmm_create(o, err, sizeof(err));
	struct vmm_resp r;
	char ok = 1;

	if (!vm)
		goto fail;
	if (!copy) {
		if (vmm_clone_from(vm, prefix))
			goto fail;
	} else {
		/* A copy of every page of the image, as a VM with its own memory file has. */
		struct vmm_state *st = malloc(sizeof(*st));
		int fd;
		ssize_t n;

		snprintf(path, sizeof(path), "%s.state", prefix);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 && st ? read(fd, st, sizeof(*st)) : -1;
		if (fd >= 0)
			close(fd);
		if (n != (ssize_t)sizeof(*st))
			goto fail;
		snprintf(path, sizeof(path), "%s.ram", prefix);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			goto fail;
		for (uint64_t off = 0; off < vm->mem_size; off += 65536) {
			uint8_t buf[65536];
			static const uint8_t zero[65536];

			if (pread(fd, buf, sizeof(buf), off) != (ssize_t)sizeof(buf))
				goto fail;
			if (memcmp(buf, zero, sizeof(buf)))
				memcpy(vm->ram + off, buf, sizeof(buf));
			else
				fallocate(vm->ram_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
					  sizeof(buf));
		}
		close(fd);
		if (st->keep_size && vmreset_preserve_add(vm->ram_fd, st->keep_gpa, st->keep_size))
			goto fail;
		/* The disk as the snapshot has it (the guest mounted it), copied. */
		snprintf(path, sizeof(path), "%s.disk", prefix);
		fd = vm->disk_fd >= 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		for (uint64_t off = 0; fd >= 0 && off < vm->disk_size; off += 65536) {
			uint8_t buf[65536];
			ssize_t n = pread(fd, buf, sizeof(buf), off);

			if (n <= 0 || pwrite(vm->disk_fd, buf, n, off) != n)
				goto fail;
		}
		if (fd >= 0)
			close(fd);
		if (vmm_adopt_state(vm, st))
			goto fail;
	}
	if (req_ok(vm, &handlers[0], &r, err, sizeof(err)))
		goto fail;
	vmm_resp_free(&r);
	if (write(ready, &ok, 1) != 1)
		_exit(1);
	pause();
	_exit(0);
fail:
	child_err(copy ? "copy" : "clone", vm ? vmm_error(vm) : err);
	ok = 0;
	if (write(ready, &ok, 1) != 1)
		_exit(1);
	_exit(1);
}

/* MemAvailable taken by @n VMs; *@started: how many came up. */
static long resident_n(const struct vmm_opts *o, const char *prefix, bool copy, int n,
		       int *started)
{
	long before = mem_available_kb(), after;
	pid_t pids[64];
	int p[2], k;

	*started = 0;
	if (n > 64 || pipe(p))
		return -1;
	for (k = 0; k < n; k++) {
		char ok = 0;

		/* Stop short of the OOM killer: say how many fitted. */
		if (mem_available_kb() < 384 * 1024)
			break;
		fflush(NULL);
		pids[k] = fork();
		if (pids[k] < 0)
			break;
		if (!pids[k]) {
			close(p[0]);
			resident_vm(o, prefix, copy, p[1]);
		}
		if (read(p[0], &ok, 1) != 1 || !ok) {
			k++;
			break;
		}
		(*started)++;
	}
	sleep(1);
	after = mem_available_kb();
	for (int i = 0; i < k; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	close(p[0]);
	close(p[1]);
	return before - after;
}

static double num(json_object *o, const char *path)
{
	char buf[256], *save = NULL;
	json_object *v = o;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
		if (!json_object_object_get_ex(v, k, &v))
			v = NULL;
	return v ? json_object_get_double(v) : 0;
}

/* The table of docs/vmm.md, "Measurements". */
static void summary(json_object *root, FILE *log)
{
	json_object *rows;

	fprintf(log, "\n| handler | cold p50 | restore p50 (start + run) | in place p50 (hot off) | "
		"in place p99 | in place req/s | cold / in place | restore / in place |\n"
		"|---|---|---|---|---|---|---|---|\n");
	if (!json_object_object_get_ex(root, "handlers", &rows))
		return;
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		double c = num(r, "ways.cold.p50_us"), f = num(r, "ways.restore.p50_us"),
		       p = num(r, "ways.in_place.p50_us");

		char cold[32] = "-", ratio[32] = "-";

		if (c) {
			snprintf(cold, sizeof(cold), "%.0f ms", c / 1e3);
			snprintf(ratio, sizeof(ratio), "%.0fx", p ? c / p : 0);
		}
		fprintf(log, "| %s | %s | %.0f ms (%.0f + %.0f) | %.1f ms (%.1f) | %.1f ms | %.1f | "
			"%s | %.1fx |\n", json_object_get_string(json_object_object_get(r, "handler")),
			cold, f / 1e3, num(r, "ways.restore.start_p50_us") / 1e3,
			num(r, "ways.restore.guest_run_p50_us") / 1e3, p / 1e3,
			num(r, "ways.in_place_hot_off.p50_us") / 1e3, num(r, "ways.in_place.p99_us") / 1e3,
			num(r, "ways.in_place.requests_per_s"), ratio, p ? f / p : 0);
	}
	fprintf(log, "\n| handler | guest run | quiesce | REVERT | state load | pages reverted | hot pages |\n"
		"|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);

		for (int off = 0; off < 2; off++) {
			json_object *ph = NULL;

			json_object_object_get_ex(json_object_object_get(r, "ways"),
						  off ? "in_place_hot_off" : "in_place", &ph);
			fprintf(log, "| %s%s | %.1f ms | %.2f ms | %.2f ms | %.2f ms | %.0f | %.0f |\n",
				json_object_get_string(json_object_object_get(r, "handler")),
				off ? " (hot off)" : "", num(ph, "phases.guest_run_us") / 1e3,
				num(ph, "phases.quiesce_us") / 1e3, num(ph, "phases.revert_us") / 1e3,
				num(ph, "phases.state_load_us") / 1e3, num(ph, "phases.reverted_pages"),
				num(ph, "phases.hot_pages"));
		}
	}
	if (json_object_object_get_ex(root, "memory", NULL))
		fprintf(log, "\nmemory: %.0f VMs from clones %.0f MiB (%.1f each), %.0f from copies "
			"%.0f MiB (%.1f each)\n", num(root, "memory.clones_started"),
			num(root, "memory.clones_kb") / 1024,
			num(root, "memory.clones_kb") / 1024 / (num(root, "memory.clones_started") ?: 1),
			num(root, "memory.copies_started"), num(root, "memory.copies_kb") / 1024,
			num(root, "memory.copies_kb") / 1024 / (num(root, "memory.copies_started") ?: 1));
}

int vmm_bench(const struct vmm_opts *o, const struct vmm_bench_opts *b, FILE *log, char **json)
{
	json_object *root = json_object_new_object(), *rows = json_object_new_array(), *x;
	char err[1024] = "", prefix[4096] = "", image[] = "/tmp/vmm-bench-mem.XXXXXX";
	struct vmm *vm;
	uint64_t t0 = vmm_now_us();
	json_object *ways_of[NH];
	int ret = -1, fd;

	*json = NULL;
	fprintf(log, "# booting the in-place VM...\n");
	vm = vmm_create(o, err, sizeof(err));
	if (!vm || vmm_boot(vm, 600000)) {
		fprintf(log, "vmreset-vmm bench: boot: %s\n", vm ? vmm_error(vm) : err);
		goto out;
	}
	fprintf(log, "# ready in %.2f s (guest boot %.2f s, snapshot %.1f ms)\n",
		(vmm_now_us() - t0) / 1e6, vm->boot_us / 1e6, vm->snapshot_us / 1e3);
	x = json_object_new_object();
	json_object_object_add(x, "ready_us", json_object_new_int64(vmm_now_us() - t0));
	json_object_object_add(x, "guest_boot_us", json_object_new_int64(vm->boot_us));
	json_object_object_add(x, "snapshot_us", json_object_new_int64(vm->snapshot_us));
	json_object_object_add(root, "boot", x);
	json_object_object_add(root, "mem_bytes", json_object_new_int64(vm->mem_size));
	json_object_object_add(root, "cpus", json_object_new_int(vm->nr_vcpus));
	for (size_t i = 0; i < NH; i++) {
		const struct handler *h = &handlers[i];
		json_object *row = json_object_new_object(), *ways = json_object_new_object(), *w;

		json_object_object_add(row, "handler", json_object_new_string(h->name));
		json_object_object_add(row, "what", json_object_new_string(h->what));
		json_object_array_add(rows, row);
		json_object_object_add(row, "ways", ways);
		fprintf(log, "# %s: in place, hot pages learned (%d)...\n", h->name, b->in_place);
		w = in_place(vm, h, b->in_place, VMM_HOT_LEARN, err, sizeof(err));
		if (!w)
			goto fail_in_place;
		json_object_object_add(ways, "in_place", w);
		fprintf(log, "#   in place: p50 %.1f ms, p99 %.1f ms, %.1f req/s; guest run %.1f ms, REVERT %.2f ms, "
			"load %.2f ms, %.0f pages (%.0f hot)\n", num(w, "p50_us") / 1e3, num(w, "p99_us") / 1e3,
			num(w, "requests_per_s"), num(w, "phases.guest_run_us") / 1e3,
			num(w, "phases.revert_us") / 1e3, num(w, "phases.state_load_us") / 1e3,
			num(w, "phases.reverted_pages"), num(w, "phases.hot_pages"));
		fprintf(log, "# %s: in place, hot pages off (%d)...\n", h->name, b->in_place_off);
		w = in_place(vm, h, b->in_place_off, VMM_HOT_OFF, err, sizeof(err));
		if (!w)
			goto fail_in_place;
		json_object_object_add(ways, "in_place_hot_off", w);
		fprintf(log, "#   in place, hot off: p50 %.1f ms; guest run %.1f ms, REVERT %.2f ms, %.0f pages\n",
			num(w, "p50_us") / 1e3, num(w, "phases.guest_run_us") / 1e3,
			num(w, "phases.revert_us") / 1e3, num(w, "phases.reverted_pages"));
		ways_of[i] = ways;
		continue;
fail_in_place:
		fprintf(log, "vmreset-vmm bench: %s: %s\n", h->name, err);
		goto out;
	}
	/*
	 * Only now the saved snapshot the other ways start from (an exported
	 * clone for the disk, an image file for the memory): while its pages
	 * are shared with a clone, every first write of the in-place VM is a
	 * copy-on-write and none can be hot (docs/vmm.md, "Measurements").
	 */
	snprintf(prefix, sizeof(prefix), "%s/vmm-bench-%d", o->dir, (int)getpid());
	if (vmm_export(vm, prefix)) {
		fprintf(log, "vmreset-vmm bench: %s\n", vmm_error(vm));
		goto out;
	}
	fd = mkstemp(image);
	if (fd < 0 || (close(fd), write_image(vm, image, err, sizeof(err)))) {
		fprintf(log, "vmreset-vmm bench: memory image: %s\n", err[0] ? err : strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < NH; i++) {
		const struct handler *h = &handlers[i];
		json_object *ways = ways_of[i], *w;
		struct vmm_opts po = *o;
		struct child_arg a = { .o = o, .h = h, .st = vm->snap, .prefix = prefix };

		fprintf(log, "# %s: restore in a new process (%d)...\n", h->name, b->restore);
		po.ram_file = image;
		a.o = &po;
		w = in_new_processes(restore_one, &a, b->restore, "start_p50_us", err, sizeof(err));
		if (!w)
			goto fail;
		json_object_object_add(ways, "restore", w);
		fprintf(log, "#   restore: p50 %.1f ms (start %.1f, run %.1f)\n", num(w, "p50_us") / 1e3,
			num(w, "start_p50_us") / 1e3, num(w, "guest_run_p50_us") / 1e3);
		/* A boot is most of a cold request: two handlers show it (the test VM's time). */
		if (h != &handlers[0] && h != &handlers[NH - 1])
			continue;
		fprintf(log, "# %s: cold boot (%d)...\n", h->name, b->cold);
		a.o = o;
		w = in_new_processes(cold_one, &a, b->cold, "boot_p50_us", err, sizeof(err));
		if (!w)
			goto fail;
		json_object_object_add(ways, "cold", w);
		fprintf(log, "#   cold: p50 %.1f ms (boot %.1f, run %.1f)\n", num(w, "p50_us") / 1e3,
			num(w, "boot_p50_us") / 1e3, num(w, "guest_run_p50_us") / 1e3);
		continue;
fail:
		fprintf(log, "vmreset-vmm bench: %s: %s\n", h->name, err);
		goto out;
	}
	json_object_object_add(root, "handlers", rows);
	rows = NULL;
	if (b->clones) {
		long kc, kp;
		int sc, sp;

		fprintf(log, "# %d VMs from clones, then %d from copies...\n", b->clones, b->clones);
		kc = resident_n(o, prefix, false, b->clones, &sc);
		fprintf(log, "#   %d clones: %ld KiB\n", sc, kc);
		kp = resident_n(o, prefix, true, b->clones, &sp);
		fprintf(log, "#   %d copies: %ld KiB\n", sp, kp);
		x = json_object_new_object();
		json_object_object_add(x, "asked", json_object_new_int(b->clones));
		json_object_object_add(x, "clones_started", json_object_new_int(sc));
		json_object_object_add(x, "clones_kb", json_object_new_int64(kc));
		json_object_object_add(x, "copies_started", json_object_new_int(sp));
		json_object_object_add(x, "copies_kb", json_object_new_int64(kp));
		json_object_object_add(root, "memory", x);
	}
	summary(root, log);
	*json = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	ret = *json ? 0 : -1;
out:
	if (rows)
		json_object_put(rows);
	json_object_put(root);
	unlink(image);
	for (const char *e = "ram\0disk\0state\0"; prefix[0] && *e; e += strlen(e) + 1) {
		char p[4200];

		snprintf(p, sizeof(p), "%s.%s", prefix, e);
		unlink(p);
	}
	vmm_destroy(vm);
	return ret;
}
