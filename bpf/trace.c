// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-trace: what a KVM guest costs, per VM - exits by reason with
 * exit -> entry latency, nested page faults, port I/O, MMIO, hypercalls;
 * and the working set it touches, as a profile file.
 *
 * Exit status: 0 success, 1 failure, 2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>
#include "vmreset_bpf.h"
#include "tool.h"
#include "util.h"
#include "trace.h"
#include "trace.skel.h"

static const char *prog = "vmreset-trace";
static volatile sig_atomic_t stop;

static struct {
	uint32_t pid;		/* 0: all VMs */
	uint32_t vm_id;
	double duration;	/* 0: until a signal */
	double interval;	/* top view */
	bool top, json, no_latency;
	const char *out, *profile;
	uint32_t ws_max;
} opt = { .interval = 1.0, .ws_max = 262144 };

static bool svm;		/* exit codes are SVM's, else VMX's */
static struct vmreset_profile profile;

#define fail(...)	vmr_err(prog, 1, __VA_ARGS__)


static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- exit reason names ---- */

static const char *svm_name(uint32_t c)
{
	static char buf[32];

	switch (c) {
	case 0x060: return "INTR";
	case 0x061: return "NMI";
	case 0x064: return "VINTR";
	case 0x06e: return "RDTSC";
	case 0x072: return "CPUID";
	case 0x077: return "PAUSE";
	case 0x078: return "HLT";
	case 0x079: return "INVLPG";
	case 0x07b: return "IOIO";
	case 0x07c: return "MSR";
	case 0x07f: return "SHUTDOWN";
	case 0x081: return "VMMCALL";
	case 0x08d: return "XSETBV";
	case 0x400: return "NPF";
	case 0x401: return "AVIC_INCOMPLETE_IPI";
	case 0x402: return "AVIC_UNACCELERATED_ACCESS";
	}
	if (c < 0x010)
		snprintf(buf, sizeof(buf), "READ_CR%u", c);
	else if (c < 0x020)
		snprintf(buf, sizeof(buf), "WRITE_CR%u", c - 0x10);
	else if (c >= 0x040 && c < 0x060)
		snprintf(buf, sizeof(buf), "EXCP_%u", c - 0x40);
	else
		snprintf(buf, sizeof(buf), "0x%x", c);
	return buf;
}

static const char *vmx_name(uint32_t c)
{
	static const char *const n[] = {
		[0] = "EXCEPTION_NMI", [1] = "EXTERNAL_INTERRUPT", [2] = "TRIPLE_FAULT",
		[7] = "INTERRUPT_WINDOW", [8] = "NMI_WINDOW", [10] = "CPUID", [12] = "HLT",
		[14] = "INVLPG", [16] = "RDTSC", [18] = "VMCALL", [28] = "CR_ACCESS",
		[29] = "DR_ACCESS", [30] = "IO_INSTRUCTION", [31] = "MSR_READ",
		[32] = "MSR_WRITE", [40] = "PAUSE_INSTRUCTION", [44] = "APIC_ACCESS",
		[45] = "EOI_INDUCED", [48] = "EPT_VIOLATION", [49] = "EPT_MISCONFIG",
		[52] = "PREEMPTION_TIMER", [55] = "XSETBV", [56] = "APIC_WRITE",
	};
	static char buf[16];

	if (c < sizeof(n) / sizeof(n[0]) && n[c])
		return n[c];
	snprintf(buf, sizeof(buf), "%u", c);
	return buf;
}

static const char *exit_name(uint32_t c)
{
	return svm ? svm_name(c) : vmx_name(c);
}

/* ---- reading the counts ---- */

struct rec {
	struct trace_key k;
	struct trace_val v;
};

static int cmp_rec(const void *a, const void *b)
{
	const struct trace_key *x = &((const struct rec *)a)->k;
	const struct trace_key *y = &((const struct rec *)b)->k;

	if (x->kvm != y->kvm)
		return x->kvm < y->kvm ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static long collect(int fd, struct rec **out)
{
	struct trace_key key, next;
	struct rec *r = NULL, *n;
	long nr = 0, cap = 0;
	int err;

	for (err = bpf_map_get_next_key(fd, NULL, &next); !err;
	     err = bpf_map_get_next_key(fd, &key, &next)) {
		key = next;
		if (nr == cap) {
			cap = cap ? cap * 2 : 256;
			n = realloc(r, cap * sizeof(*r));
			if (!n) {
				free(r);
				return -ENOMEM;
			}
			r = n;
		}
		if (bpf_map_lookup_elem(fd, &key, &r[nr].v))
			continue;
		r[nr++].k = key;
	}
	qsort(r, nr, sizeof(*r), cmp_rec);
	*out = r;
	return nr;
}

/* Exits timed: those followed by an entry of their vCPU. */
static uint64_t timed(const struct trace_val *v)
{
	uint64_t n = 0;

	for (int i = 0; i < TRACE_HIST_SLOTS; i++)
		n += v->hist[i];
	return n;
}

/* Upper bound of the bucket holding the @pct percentile. */
static uint64_t pctl(const struct trace_val *v, double pct)
{
	uint64_t total = 0, acc = 0;
	int i;

	for (i = 0; i < TRACE_HIST_SLOTS; i++)
		total += v->hist[i];
	if (!total)
		return 0;
	for (i = 0; i < TRACE_HIST_SLOTS; i++) {
		acc += v->hist[i];
		if (acc * 100.0 >= pct * total)
			return 2ULL << i;
	}
	return 2ULL << (TRACE_HIST_SLOTS - 1);
}

/* ---- vmreset VM IDs of a VMM (best effort: the module may be absent) ---- */

struct ids {
	uint32_t pid;
	struct json_object *arr;
	char text[128];
};

static int add_id(const struct vmreset_vm *vm, void *arg)
{
	struct ids *ids = arg;
	size_t len = strlen(ids->text);

	if (vm->pid != ids->pid)
		return 0;
	if (ids->arr)
		json_object_array_add(ids->arr, json_object_new_int64(vm->id));
	snprintf(ids->text + len, sizeof(ids->text) - len, "%s%u", len ? "," : "", vm->id);
	return 0;
}

static struct vmreset_nl *nl;

static void vm_ids(uint32_t pid, struct ids *ids)
{
	ids->pid = pid;
	ids->text[0] = 0;
	if (nl)
		vmreset_nl_vm_list(nl, add_id, ids);
}

/* ---- output ---- */

static const char *const kind_key[] = {
	[TK_PIO_IN] = "in", [TK_PIO_OUT] = "out",
	[TK_MMIO_READ] = "read", [TK_MMIO_WRITE] = "write",
};

static struct json_object *ju(uint64_t v)
{
	return json_object_new_uint64(v);
}

/*
 * Faults by GPA region: the records are sorted by kind, then id, so the
 * read regions come first, then the written ones, each ascending.
 */
struct region {
	uint64_t gpa, read, write;
};

static long regions(const struct rec *r, long n, struct region **out)
{
	struct region *g = NULL, *ng;
	long nr = 0, i, k;

	for (i = 0; i < n; i++) {
		bool w = r[i].k.kind == TK_NPF_REGION_WRITE;
		uint64_t gpa = (uint64_t)r[i].k.id << TRACE_REGION_SHIFT;

		if (r[i].k.kind != TK_NPF_REGION_READ && !w)
			continue;
		for (k = 0; k < nr && g[k].gpa != gpa; k++)
			;
		if (k == nr) {
			ng = realloc(g, (nr + 1) * sizeof(*g));
			if (!ng)
				break;
			g = ng;
			g[nr++] = (struct region){ gpa, 0, 0 };
		}
		*(w ? &g[k].write : &g[k].read) += r[i].v.count;
	}
	*out = g;
	return nr;
}

static int cmp_region(const void *a, const void *b)
{
	uint64_t x = ((const struct region *)a)->gpa, y = ((const struct region *)b)->gpa;

	return x < y ? -1 : x > y;
}

static struct json_object *regions_json(const struct rec *r, long n)
{
	struct json_object *arr = json_object_new_array();
	struct region *g;
	long nr = regions(r, n, &g);

	qsort(g, nr, sizeof(*g), cmp_region);
	for (long i = 0; i < nr; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "gpa", ju(g[i].gpa));
		json_object_object_add(o, "size", ju(1ULL << TRACE_REGION_SHIFT));
		json_object_object_add(o, "read", ju(g[i].read));
		json_object_object_add(o, "write", ju(g[i].write));
		json_object_array_add(arr, o);
	}
	free(g);
	return arr;
}

static struct json_object *vm_json(const struct rec *r, long n, double secs)
{
	struct json_object *o = json_object_new_object(), *exits = json_object_new_array();
	struct json_object *pio = json_object_new_array(), *mmio = json_object_new_array();
	struct json_object *hc = json_object_new_array(), *npf = json_object_new_object();
	uint64_t total = 0, rd = 0, wr = 0;
	char hex[32];
	struct ids ids = { .arr = json_object_new_array() };

	snprintf(hex, sizeof(hex), "0x%" PRIx64, (uint64_t)r[0].k.kvm);
	json_object_object_add(o, "kvm", json_object_new_string(hex));
	json_object_object_add(o, "pid", ju(r[0].k.pid));
	vm_ids(r[0].k.pid, &ids);
	json_object_object_add(o, "vm_ids", ids.arr);
	for (long i = 0; i < n; i++) {
		const struct trace_val *v = &r[i].v;
		struct json_object *e = json_object_new_object();

		switch (r[i].k.kind) {
		case TK_EXIT: {
			struct json_object *h = json_object_new_array();

			json_object_object_add(e, "code", ju(r[i].k.id));
			json_object_object_add(e, "name", json_object_new_string(exit_name(r[i].k.id)));
			json_object_object_add(e, "count", ju(v->count));
			json_object_object_add(e, "avg_ns", ju(timed(v) ? v->sum_ns / timed(v) : 0));
			json_object_object_add(e, "p50_ns", ju(pctl(v, 50)));
			json_object_object_add(e, "p99_ns", ju(pctl(v, 99)));
			for (int s = 0; s < TRACE_HIST_SLOTS; s++)
				json_object_array_add(h, ju(v->hist[s]));
			json_object_object_add(e, "hist_log2_ns", h);
			json_object_array_add(exits, e);
			total += v->count;
			continue;
		}
		case TK_NPF_READ:
			rd += v->count;
			break;
		case TK_NPF_WRITE:
			wr += v->count;
			break;
		case TK_PIO_IN:
		case TK_PIO_OUT:
			json_object_object_add(e, "port", ju(r[i].k.id));
			json_object_object_add(e, "dir", json_object_new_string(kind_key[r[i].k.kind]));
			json_object_object_add(e, "count", ju(v->count));
			json_object_array_add(pio, e);
			continue;
		case TK_MMIO_READ:
		case TK_MMIO_WRITE:
			json_object_object_add(e, "gpa", ju(r[i].k.id));
			json_object_object_add(e, "op", json_object_new_string(kind_key[r[i].k.kind]));
			json_object_object_add(e, "count", ju(v->count));
			json_object_array_add(mmio, e);
			continue;
		case TK_HYPERCALL:
			json_object_object_add(e, "nr", ju(r[i].k.id));
			json_object_object_add(e, "count", ju(v->count));
			json_object_array_add(hc, e);
			continue;
		}
		json_object_put(e);
	}
	json_object_object_add(o, "exits_total", ju(total));
	json_object_object_add(o, "exits_per_s", json_object_new_double(secs > 0 ? total / secs : 0));
	json_object_object_add(o, "exits", exits);
	json_object_object_add(npf, "read", ju(rd));
	json_object_object_add(npf, "write", ju(wr));
	json_object_object_add(npf, "by_region", regions_json(r, n));
	json_object_object_add(o, "npf", npf);
	json_object_object_add(o, "pio", pio);
	json_object_object_add(o, "mmio", mmio);
	json_object_object_add(o, "hypercalls", hc);
	return o;
}

static void vm_text(FILE *f, const struct rec *r, long n, double secs)
{
	uint64_t total = 0, rd = 0, wr = 0;
	struct ids ids = { 0 };
	long i;

	for (i = 0; i < n; i++) {
		if (r[i].k.kind == TK_EXIT)
			total += r[i].v.count;
		else if (r[i].k.kind == TK_NPF_READ)
			rd += r[i].v.count;
		else if (r[i].k.kind == TK_NPF_WRITE)
			wr += r[i].v.count;
	}
	vm_ids(r[0].k.pid, &ids);
	fprintf(f, "VM of pid %u (kvm 0x%" PRIx64 ")%s%s: %" PRIu64 " exits, %.0f/s\n",
		r[0].k.pid, (uint64_t)r[0].k.kvm, ids.text[0] ? ", vmreset VM " : "",
		ids.text, total, secs > 0 ? total / secs : 0.0);
	fprintf(f, "  %-26s %10s %10s %10s %10s\n", "exit reason", "count", "avg us",
		"p50 us <=", "p99 us <=");
	for (i = 0; i < n; i++) {
		const struct trace_val *v = &r[i].v;

		if (r[i].k.kind != TK_EXIT)
			continue;
		fprintf(f, "  %-26s %10" PRIu64 " %10.1f %10.1f %10.1f\n", exit_name(r[i].k.id),
			(uint64_t)v->count, timed(v) ? v->sum_ns / 1e3 / timed(v) : 0.0,
			pctl(v, 50) / 1e3, pctl(v, 99) / 1e3);
	}
	fprintf(f, "  nested page faults: %" PRIu64 " read, %" PRIu64 " write\n", rd, wr);
	{
		struct region *g;
		long nr = regions(r, n, &g);

		qsort(g, nr, sizeof(*g), cmp_region);
		for (i = 0; i < nr && i < 16; i++)
			fprintf(f, "    at gpa 0x%-12" PRIx64 " (2 MiB) %8" PRIu64 " read %8" PRIu64
				" write\n", g[i].gpa, g[i].read, g[i].write);
		if (nr > 16)
			fprintf(f, "    ... %ld more regions (-j lists them all)\n", nr - 16);
		free(g);
	}
	for (i = 0; i < n; i++) {
		const struct rec *x = &r[i];

		if (x->k.kind == TK_PIO_IN || x->k.kind == TK_PIO_OUT)
			fprintf(f, "  port I/O  %-5s port 0x%-8" PRIx64 " %10" PRIu64 "\n",
				kind_key[x->k.kind], (uint64_t)x->k.id, (uint64_t)x->v.count);
		else if (x->k.kind == TK_MMIO_READ || x->k.kind == TK_MMIO_WRITE)
			fprintf(f, "  MMIO      %-5s gpa 0x%-10" PRIx64 " %10" PRIu64 "\n",
				kind_key[x->k.kind], (uint64_t)x->k.id, (uint64_t)x->v.count);
		else if (x->k.kind == TK_HYPERCALL)
			fprintf(f, "  hypercall nr 0x%-13" PRIx64 " %10" PRIu64 "\n",
				(uint64_t)x->k.id, (uint64_t)x->v.count);
	}
}

static int report(int fd, uint64_t dropped, double secs)
{
	struct json_object *root = NULL, *vms = NULL;
	struct rec *r;
	long n = collect(fd, &r), i, j;
	FILE *f = stdout;

	if (n < 0)
		return fail("reading the counts: %s", strerror((int)-n));
	if (opt.out && !(f = fopen(opt.out, "we"))) {
		free(r);
		return fail("%s: %s", opt.out, strerror(errno));
	}
	if (opt.json) {
		root = json_object_new_object();
		vms = json_object_new_array();
		json_object_object_add(root, "duration_s", json_object_new_double(secs));
		json_object_object_add(root, "dropped", ju(dropped));
	} else {
		fprintf(f, "%.1f s, %" PRIu64 " events dropped\n", secs, dropped);
	}
	for (i = 0; i < n; i = j) {
		for (j = i; j < n && r[j].k.kvm == r[i].k.kvm; j++)
			;
		if (opt.json)
			json_object_array_add(vms, vm_json(r + i, j - i, secs));
		else
			vm_text(f, r + i, j - i, secs);
	}
	if (!n && !opt.json)
		fprintf(f, "no VM ran\n");
	if (opt.profile) {
		if (opt.json) {
			struct json_object *ws = json_object_new_object();

			json_object_object_add(ws, "read_pages", ju(profile.read_pages));
			json_object_object_add(ws, "written_pages", ju(profile.written_pages));
			struct json_object *runs = json_object_new_array();

			for (size_t k = 0; k < profile.nr; k++) {
				struct json_object *r = json_object_new_object();

				json_object_object_add(r, "gpa", ju(profile.runs[k].gpa));
				json_object_object_add(r, "pages", ju(profile.runs[k].pages));
				json_object_object_add(r, "written", json_object_new_boolean(
					profile.runs[k].flags & VMRESET_PROF_WRITE));
				json_object_array_add(runs, r);
			}
			json_object_object_add(ws, "runs", runs);
			json_object_object_add(root, "working_set", ws);
		} else {
			fprintf(f, "working set: %" PRIu64 " pages read, %" PRIu64
				" written, in %zu runs -> %s\n", profile.read_pages,
				profile.written_pages, profile.nr, opt.profile);
		}
	}
	if (opt.json) {
		json_object_object_add(root, "vms", vms);
		fprintf(f, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
		json_object_put(root);
	}
	free(r);
	if (f != stdout && fclose(f))
		return fail("%s: %s", opt.out, strerror(errno));
	return 0;
}

/* ---- the live view ---- */

static struct rec *prev;
static long nprev;

static const struct trace_val *prev_of(const struct trace_key *k)
{
	long lo = 0, hi = nprev;

	while (lo < hi) {
		long mid = (lo + hi) / 2;
		int c = cmp_rec(k, &prev[mid].k);

		if (!c)
			return &prev[mid].v;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static void top(int fd, double dt)
{
	struct rec *r;
	long n = collect(fd, &r), i, j;

	if (n < 0)
		return;
	if (isatty(STDOUT_FILENO))
		printf("\033[H\033[J");
	printf("%s - every %.1f s, Ctrl-C to stop\n", prog, opt.interval);
	for (i = 0; i < n; i = j) {
		uint64_t total = 0, npf = 0;

		for (j = i; j < n && r[j].k.kvm == r[i].k.kvm; j++) {
			const struct trace_val *p = prev_of(&r[j].k);
			uint64_t d = r[j].v.count - (p ? p->count : 0);

			if (r[j].k.kind == TK_EXIT)
				total += d;
			else if (r[j].k.kind == TK_NPF_READ || r[j].k.kind == TK_NPF_WRITE)
				npf += d;
		}
		printf("\nVM of pid %u (kvm 0x%" PRIx64 "): %.0f exits/s, %.0f faults/s\n",
		       r[i].k.pid, (uint64_t)r[i].k.kvm, total / dt, npf / dt);
		printf("  %-26s %10s %10s\n", "exit reason", "per s", "avg us");
		for (long k = i; k < j; k++) {
			const struct trace_val *p = prev_of(&r[k].k);
			uint64_t d = r[k].v.count - (p ? p->count : 0);
			uint64_t ns = r[k].v.sum_ns - (p ? p->sum_ns : 0);
			uint64_t nt = timed(&r[k].v) - (p ? timed(p) : 0);

			if (r[k].k.kind != TK_EXIT || !d)
				continue;
			printf("  %-26s %10.0f %10.1f\n", exit_name(r[k].k.id), d / dt,
			       nt ? ns / 1e3 / nt : 0.0);
		}
	}
	fflush(stdout);
	free(prev);
	prev = r;
	nprev = n;
}

/* ---- working set ---- */

static int on_ws(void *ctx, void *data, size_t len)
{
	const struct ws_event *e = data;

	(void)ctx;
	if (len < sizeof(*e))
		return 0;
	return vmreset_profile_add(&profile, e->gfn << 12,
				   (e->flags & WS_WRITE ? VMRESET_PROF_WRITE : 0) |
				   (e->flags & WS_READ ? VMRESET_PROF_READ : 0));
}

/*
 * Does kvm_page_fault pass the vCPU? Its prototype is the typedef
 * btf_trace_kvm_page_fault in the kvm module's BTF: a pointer to a
 * function of (void *, struct kvm_vcpu *, u64, u64) on Debian's kernels,
 * of (void *, unsigned long, unsigned int) before the vCPU was added.
 */
static bool npf_has_vcpu(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf(), *kvm = NULL;
	const struct btf_type *t;
	bool ret = true;
	int id;

	if (!vmlinux)
		return ret;
	kvm = btf__load_module_btf("kvm", vmlinux);
	if (!kvm)
		goto out;
	id = btf__find_by_name_kind(kvm, "btf_trace_kvm_page_fault", BTF_KIND_TYPEDEF);
	if (id < 0)
		goto out;
	t = btf__type_by_id(kvm, id);
	t = t ? btf__type_by_id(kvm, t->type) : NULL;		/* the pointer */
	t = t && btf_is_ptr(t) ? btf__type_by_id(kvm, t->type) : NULL;
	if (t && btf_is_func_proto(t))
		ret = btf_vlen(t) == 4;
out:
	btf__free(kvm);
	btf__free(vmlinux);
	return ret;
}

/* ---- main ---- */

struct pid_of {
	uint32_t id, pid;
};

static int find_vm(const struct vmreset_vm *vm, void *arg)
{
	struct pid_of *p = arg;

	if (vm->id == p->id)
		p->pid = vm->pid;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-p PID | -v VM] [-d SECS] [-t [-i SECS]] [-j] [-L] [-o FILE] [-w PROFILE]\n"
		"Trace KVM guests per VM until Ctrl-C (or -d), then print a summary.\n"
		"  -p PID       only the VMs of the VMM with this pid\n"
		"  -v VM        only vmreset VM ID VM (its VMM's VMs)\n"
		"  -d SECS      stop after SECS seconds\n"
		"  -t           live top-like view, every -i SECS (default 1)\n"
		"  -j           summary as JSON\n"
		"  -L           count exits without timing them (cheaper)\n"
		"  -o FILE      write the summary to FILE\n"
		"  -w PROFILE   record the working set (needs -p or -v) into PROFILE\n"
		"  -W PAGES     working-set capacity (default 262144 pages)\n"
		"Needs root, or CAP_BPF and CAP_PERFMON.\n", prog);
}

static int parse_num(const char *s, double *d)
{
	char *end;

	errno = 0;
	*d = strtod(s, &end);
	return errno || end == s || *end || *d < 0;
}

int main(int argc, char **argv)
{
	struct ring_buffer *rb = NULL;
	struct trace_bpf *skel = NULL;
	double t0, next_top, d;
	int c, err;

	while ((c = getopt(argc, argv, "p:v:d:ti:jLo:w:W:h")) != -1) {
		switch (c) {
		case 'p':
		case 'v':
		case 'W':
			if (parse_num(optarg, &d) || d != (uint32_t)d || !d) {
				fprintf(stderr, "%s: bad -%c '%s'\n", prog, c, optarg);
				return 2;
			}
			if (c == 'p')
				opt.pid = d;
			else if (c == 'v')
				opt.vm_id = d;
			else
				opt.ws_max = d;
			break;
		case 'd':
		case 'i':
			if (parse_num(optarg, &d) || (c == 'i' && d < 0.05)) {
				fprintf(stderr, "%s: bad -%c '%s'\n", prog, c, optarg);
				return 2;
			}
			*(c == 'd' ? &opt.duration : &opt.interval) = d;
			break;
		case 't': opt.top = true; break;
		case 'j': opt.json = true; break;
		case 'L': opt.no_latency = true; break;
		case 'o': opt.out = optarg; break;
		case 'w': opt.profile = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
		return 2;
	}
	if (opt.pid && opt.vm_id) {
		fprintf(stderr, "%s: -p and -v are exclusive\n", prog);
		return 2;
	}
	err = vmreset_bpf_check_privilege();
	if (err)
		return fail("%s", err == -EPERM ? VMRESET_BPF_PRIV_MSG : strerror(-err));
	nl = vmreset_nl_open(&err);
	if (opt.vm_id) {
		struct pid_of p = { opt.vm_id, 0 };

		if (!nl)
			return fail("-v needs the vmreset module: %s", strerror(-err));
		err = vmreset_nl_vm_list(nl, find_vm, &p);
		if (err || !p.pid)
			return fail("no vmreset VM %u", opt.vm_id);
		opt.pid = p.pid;
	}
	if (opt.profile && !opt.pid) {
		fprintf(stderr, "%s: -w records one VMM's working set: give -p or -v\n", prog);
		return 2;
	}
	svm = !access("/sys/module/kvm_amd", F_OK);
	libbpf_set_print(vmr_libbpf_print);
	vmreset_profile_init(&profile);

	skel = trace_bpf__open();
	if (!skel)
		return fail("cannot open the BPF object: %s", strerror(errno));
	skel->rodata->targ_pid = opt.pid;
	skel->rodata->record_ws = !!opt.profile;
	skel->rodata->measure_latency = !opt.no_latency;
	skel->rodata->npf_has_vcpu = npf_has_vcpu();
	if (opt.profile)
		bpf_map__set_max_entries(skel->maps.ws, opt.ws_max);
	err = trace_bpf__load(skel);
	if (err) {
		err = fail("cannot load the BPF programs (is kvm loaded?): %s", strerror(-err));
		goto out;
	}
	err = trace_bpf__attach(skel);
	if (err) {
		err = fail("cannot attach to KVM's tracepoints: %s", strerror(-err));
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_ws, NULL, NULL);
	if (!rb) {
		err = fail("ring buffer: %s", strerror(errno));
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (opt.pid)
		fprintf(stderr, "%s: tracing the VMs of pid %u\n", prog, opt.pid);
	else
		fprintf(stderr, "%s: tracing all VMs\n", prog);
	t0 = now();
	next_top = t0 + opt.interval;
	while (!stop) {
		double t = now();

		if (opt.duration && t - t0 >= opt.duration)
			break;
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR) {
			err = fail("ring buffer: %s", strerror(-err));
			goto out;
		}
		if (opt.top && now() >= next_top) {
			top(bpf_map__fd(skel->maps.counts), now() - next_top + opt.interval);
			next_top = now() + opt.interval;
		}
	}
	/* Detach first: the counts stop moving while we read them. */
	trace_bpf__detach(skel);
	ring_buffer__consume(rb);
	err = 0;
	if (opt.profile) {
		err = vmreset_profile_finish(&profile);
		if (!err)
			err = vmreset_profile_save(&profile, opt.profile);
		if (err) {
			err = fail("%s: %s", opt.profile, strerror(-err));
			goto out;
		}
	}
	err = report(bpf_map__fd(skel->maps.counts), skel->bss->dropped, now() - t0);
out:
	ring_buffer__free(rb);
	trace_bpf__destroy(skel);
	vmreset_profile_free(&profile);
	free(prev);
	if (nl)
		vmreset_nl_close(nl);
	return err ? 1 : 0;
}
