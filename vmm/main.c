// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-vmm: boot Linux once to a ready state on vmresetfs, snapshot it,
 * and serve every request in a VM reset in place. See vmreset-vmm.1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <json-c/json.h>
#include "vmm.h"

static struct vmm_opts opts = {
	.mem_size = 256ULL << 20,
	.cpus = 1,
	.dir = "/run/vmreset",
	.keep_size = 64 << 10,
	.console_fd = -1,
};
static unsigned int boot_timeout_ms = 600000;
static bool json, verbose;
/* --store/--key with --save (after the boot) or --restore (instead of it). */
static struct vmm_store store;
static const char *save_name, *restore_name;
/* --export (after the boot) and --clone (instead of it): files on vmresetfs. */
static const char *export_prefix, *clone_prefix;
static char kernel_buf[PATH_MAX], initrd_buf[PATH_MAX];

/* Transaction defaults: how a request is judged and how often it is retried. */
static regex_t match_re;

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmreset-vmm [OPTIONS] COMMAND [ARGS]\n"
"\n"
"Boot a Linux guest once to a ready state on vmresetfs and run requests in\n"
"it, each in the VM reset in place to the ready snapshot afterwards (see\n"
"docs/vmm.md).\n"
"\n"
"Commands:\n"
"  boot                 boot to ready, print the timings\n"
"  run [TXN] -- PROG [ARG...]\n"
"                       boot, run one request, print its output; exit\n"
"                       with the handler's exit status\n"
"  serve [TXN] [--socket PATH]\n"
"                       boot, then serve JSON requests, one per line, from\n"
"                       stdin (or each connection to the UNIX socket)\n"
"  bench [-o FILE] [--samples N] [--restores N] [--colds N] [--clones N]\n"
"                       the same requests served cold (a boot each), restored\n"
"                       in a new process (MAP_PRIVATE image) and reset in place;\n"
"                       then the memory of N VMs from clones against copies\n"
"\n"
"Options:\n"
"  -k, --kernel PATH    bzImage (default /boot/vmlinuz-$(uname -r))\n"
"  -i, --initrd PATH    guest initramfs with the agent (make -C vmm guest)\n"
"  -m, --mem SIZE       guest RAM (default 256M; K, M, G suffixes)\n"
"  -c, --cpus N         vCPUs (default 1, at most %d)\n"
"  -d, --dir DIR        vmresetfs directory for guest RAM (default /run/vmreset)\n"
"      --disk IMAGE     raw disk image (mkfs.ext4 -d), copied to vmresetfs, on /disk\n"
"      --pit            give the guest an i8254 PIT (default none: kvmclock and the\n"
"                       TSC deadline timer; see docs/vmm.md, \"The PIT\")\n"
"      --hot MODE       hot pages of guest RAM: learn (default: pages every request\n"
"                       dirties are copied back in place, not refaulted), off, mount\n"
"      --keep SIZE      guest range the agent preserves across resets (default 64K, 0: none)\n"
"      --hc-preserve MODE  ranges the guest declares by hypercall (VMRESET_HC_PRESERVE,\n"
"                       recorded by vmreset-hc load) are kept across resets: auto (default:\n"
"                       when the service is loaded), on (the service is required), off\n"
"                       (ignored; requests cannot keep anything, and a --clone or\n"
"                       --restore inherits only --keep, not its source's ranges)\n"
"      --append ARGS    more kernel command line\n"
"      --console        copy the guest console to stderr\n"
"      --boot-timeout MS  give up booting after MS (default 600000)\n"
"      --store STORE    a vmreset-store store (directory or rados://POOL[/NS]) ...\n"
"      --key KEYFILE    ... and the owner key for it (vmreset-store keygen)\n"
"      --save NAME      once ready, save the ready snapshot there as NAME\n"
"                       (RAM and VM state; the disk as NAME.disk)\n"
"      --restore NAME   start from the saved snapshot NAME instead of booting\n"
"                       (same --mem, --cpus, --keep and --disk as the save)\n"
"      --export PREFIX  once ready, write the ready snapshot as reflink clones on\n"
"                       vmresetfs: PREFIX.ram, PREFIX.disk, PREFIX.state\n"
"      --clone PREFIX   start from clones of those files instead of booting (same\n"
"                       --mem, --cpus, --keep and --disk; cp --reflink makes more)\n"
"  -j, --json           JSON output\n"
"  -v, --verbose        timings of each request on stderr\n"
"  -h, --help           this text\n"
"\n"
"Transactions (TXN, for run and serve; JSON requests may override them):\n"
"      --timeout MS       stop a request after MS (default none; the VM is reset after it)\n"
"      --retry N          retry a failed attempt up to N times\n"
"      --success-exit N   an attempt succeeds only with exit status N (default 0)\n"
"      --success-match RE ... and only if its stdout matches the extended regex RE\n"
"                         (^ and $ match at each line, as in grep)\n"
"\n"
"JSON requests: {\"argv\": [\"sh\", \"-c\", \"echo hi\"], \"stdin\": \"...\",\n"
"  \"timeout_ms\": 1000, \"retry\": 2, \"success_exit\": 0, \"success_match\": \"RE\",\n"
"  \"id\": ANY}; each response is one line with \"outcome\", \"exit\", \"stdout\",\n"
"  \"stderr\", \"attempts\" and timings.\n", VMM_MAX_CPUS);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_uint(const char *opt, const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > UINT_MAX || *s == '-') {
		fprintf(stderr, "vmreset-vmm: %s '%s': not a number\n", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

/* The words an option takes, in the order its error lists them; NULL-ended. */
struct word {
	const char *name;
	unsigned int val;
};

static const struct word hot_words[] = {
	{ "learn", VMM_HOT_LEARN }, { "off", VMM_HOT_OFF }, { "mount", VMM_HOT_MOUNT }, { NULL, 0 }
};

static const struct word hc_words[] = {
	{ "auto", VMM_HC_AUTO }, { "on", VMM_HC_ON }, { "off", VMM_HC_OFF }, { NULL, 0 }
};

static int parse_word(const char *opt, const char *s, const struct word *w, unsigned int *out)
{
	const struct word *i;

	for (i = w; i->name; i++) {
		if (!strcmp(s, i->name)) {
			*out = i->val;
			return 0;
		}
	}
	fprintf(stderr, "vmreset-vmm: %s '%s': ", opt, s);
	for (i = w; i->name; i++)
		fprintf(stderr, "%s%s", i->name, !i[1].name ? "\n" : !i[2].name ? " or " : ", ");
	return -1;
}

static int transact(struct vmm *vm, const struct vmm_txn *t, struct vmm_req *req,
		    struct vmm_resp *resp, unsigned int *attempts, bool *ok)
{
	int ret = vmm_transact(vm, t, req, resp, attempts, ok);

	if (!ret && verbose && *attempts > 1)
		fprintf(stderr, "vmreset-vmm: %u attempts, the last %s\n", *attempts,
			*ok ? "succeeded" : "failed too");
	return ret;
}

static struct vmm *boot_vm(void)
{
	char err[512];
	struct vmm *vm;
	uint64_t t0 = vmm_now_us();

	if (verbose || !json)
		fprintf(stderr, "vmreset-vmm: booting %s (%llu MiB, %u vCPU%s)...\n",
			opts.kernel, (unsigned long long)(opts.mem_size >> 20),
			opts.cpus, opts.cpus > 1 ? "s" : "");
	vm = vmm_create(&opts, err, sizeof(err));
	if (!vm) {
		fprintf(stderr, "vmreset-vmm: %s\n", err);
		return NULL;
	}
	if (clone_prefix ? vmm_clone_from(vm, clone_prefix) :
	    restore_name ? vmm_restore(vm, &store, restore_name) : vmm_boot(vm, boot_timeout_ms)) {
		fprintf(stderr, "vmreset-vmm: %s\n", vmm_error(vm));
		vmm_destroy(vm);
		return NULL;
	}
	if (verbose || !json) {
		if (clone_prefix)
			fprintf(stderr, "vmreset-vmm: started from clones of %s.* in %.1f ms\n",
				clone_prefix, (vmm_now_us() - t0) / 1000.0);
		else if (restore_name)
			fprintf(stderr, "vmreset-vmm: restored '%s' from %s in %.1f ms\n", restore_name,
				store.url, (vmm_now_us() - t0) / 1000.0);
		else
			fprintf(stderr, "vmreset-vmm: ready in %.1f ms (guest boot %.1f ms, snapshot %.1f ms)\n",
				(vmm_now_us() - t0) / 1000.0, vm->boot_us / 1000.0,
				vm->snapshot_us / 1000.0);
	}
	if (export_prefix) {
		t0 = vmm_now_us();
		if (vmm_export(vm, export_prefix)) {
			fprintf(stderr, "vmreset-vmm: %s\n", vmm_error(vm));
			vmm_destroy(vm);
			return NULL;
		}
		if (verbose || !json)
			fprintf(stderr, "vmreset-vmm: exported the ready snapshot to %s.{ram,%sstate} in %.1f ms\n",
				export_prefix, vm->disk_fd >= 0 ? "disk," : "", (vmm_now_us() - t0) / 1000.0);
	}
	if (save_name) {
		t0 = vmm_now_us();
		if (vmm_save(vm, &store, save_name)) {
			fprintf(stderr, "vmreset-vmm: %s\n", vmm_error(vm));
			vmm_destroy(vm);
			return NULL;
		}
		if (verbose || !json)
			fprintf(stderr, "vmreset-vmm: saved '%s' to %s in %.1f ms\n", save_name,
				store.url, (vmm_now_us() - t0) / 1000.0);
	}
	return vm;
}

static int cmd_boot(void)
{
	struct vmm *vm = boot_vm();

	if (!vm)
		return 1;
	if (json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "boot_us", json_object_new_int64(vm->boot_us));
		json_object_object_add(o, "snapshot_us", json_object_new_int64(vm->snapshot_us));
		json_object_object_add(o, "mem_bytes", json_object_new_int64(vm->mem_size));
		json_object_object_add(o, "cpus", json_object_new_int(vm->nr_vcpus));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	vmm_destroy(vm);
	return 0;
}

static int cmd_run(const struct vmm_txn *t, int argc, char **argv)
{
	struct vmm_req req = { .argc = argc, .argv = argv };
	struct vmm_resp resp;
	unsigned int attempts;
	bool ok;
	struct vmm *vm;
	int rc;

	if (argc < 1) {
		fprintf(stderr, "vmreset-vmm: run: give the handler to run after --\n");
		return 2;
	}
	vm = boot_vm();
	if (!vm)
		return 1;
	if (transact(vm, t, &req, &resp, &attempts, &ok)) {
		fprintf(stderr, "vmreset-vmm: %s\n", vmm_error(vm));
		vmm_destroy(vm);
		return 1;
	}
	if (json) {
		char *line = vmm_resp_json(&resp, attempts, ok);

		printf("%s\n", line ? line : "{\"outcome\": \"error\", \"why\": \"out of memory\"}");
		free(line);
	} else {
		if (resp.out_len)
			fwrite(resp.out, 1, resp.out_len, stdout);
		if (resp.err_len)
			fwrite(resp.err, 1, resp.err_len, stderr);
		if (resp.outcome != VMM_OK)
			fprintf(stderr, "vmreset-vmm: request failed: %s: %s\n",
				vmm_outcome_name(resp.outcome), resp.why);
		if (verbose || attempts > 1)
			fprintf(stderr, "vmreset-vmm: %u attempt%s, last ran %.1f ms, reset %.1f ms (%llu pages)\n",
				attempts, attempts > 1 ? "s" : "", resp.run_us / 1000.0,
				resp.reset_us / 1000.0, (unsigned long long)resp.reverted_pages);
		if (resp.preserve_applied || resp.preserve_refused)
			fprintf(stderr, "vmreset-vmm: the guest's preserve requests: %llu applied, %llu refused\n",
				(unsigned long long)resp.preserve_applied,
				(unsigned long long)resp.preserve_refused);
	}
	rc = resp.outcome != VMM_OK ? 1 :
	     WIFEXITED(resp.wait_status) ? WEXITSTATUS(resp.wait_status) : 128 + WTERMSIG(resp.wait_status);
	if (!ok && rc == 0)
		rc = 1;
	vmm_resp_free(&resp);
	vmm_destroy(vm);
	return rc;
}

static void listening(const char *path)
{
	fprintf(stderr, "vmreset-vmm: serving on %s\n", path);
}

static int cmd_serve(const struct vmm_txn *t, const char *sock)
{
	struct vmm *vm = boot_vm();
	int ret;

	if (!vm)
		return 1;
	ret = sock ? vmm_serve_socket(vm, t, sock, 0, listening) : vmm_serve_stream(vm, t, stdin, stdout);
	if (ret)
		fprintf(stderr, "vmreset-vmm: %s\n", vmm_error(vm));
	vmm_destroy(vm);
	return ret ? 1 : 0;
}

static int cmd_bench(const struct vmm_bench_opts *b, const char *out)
{
	char *json = NULL;
	FILE *f;
	int ret;

	ret = vmm_bench(&opts, b, stderr, &json);
	if (ret || !json)
		return 1;
	f = out ? fopen(out, "we") : stdout;
	if (!f) {
		fprintf(stderr, "vmreset-vmm: bench: %s: %s\n", out, strerror(errno));
		free(json);
		return 1;
	}
	fprintf(f, "%s\n", json);
	free(json);
	if (out && fclose(f)) {
		fprintf(stderr, "vmreset-vmm: bench: %s: %s\n", out, strerror(errno));
		return 1;
	}
	return 0;
}

enum {
	OPT_KEEP = 256, OPT_APPEND, OPT_CONSOLE, OPT_BOOT_TIMEOUT, OPT_TIMEOUT,
	OPT_RETRY, OPT_SUCCESS_EXIT, OPT_SUCCESS_MATCH, OPT_SOCKET, OPT_DISK, OPT_PIT,
	OPT_STORE, OPT_KEY, OPT_SAVE, OPT_RESTORE, OPT_HOT, OPT_EXPORT, OPT_CLONE,
	OPT_SAMPLES, OPT_RESTORES, OPT_COLDS, OPT_CLONES, OPT_HC_PRESERVE,
};

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "dir", required_argument, NULL, 'd' },
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "pit", no_argument, NULL, OPT_PIT },
		{ "hot", required_argument, NULL, OPT_HOT },
		{ "hc-preserve", required_argument, NULL, OPT_HC_PRESERVE },
		{ "append", required_argument, NULL, OPT_APPEND },
		{ "console", no_argument, NULL, OPT_CONSOLE },
		{ "boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "retry", required_argument, NULL, OPT_RETRY },
		{ "success-exit", required_argument, NULL, OPT_SUCCESS_EXIT },
		{ "success-match", required_argument, NULL, OPT_SUCCESS_MATCH },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "store", required_argument, NULL, OPT_STORE },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "save", required_argument, NULL, OPT_SAVE },
		{ "restore", required_argument, NULL, OPT_RESTORE },
		{ "export", required_argument, NULL, OPT_EXPORT },
		{ "samples", required_argument, NULL, OPT_SAMPLES },
		{ "restores", required_argument, NULL, OPT_RESTORES },
		{ "colds", required_argument, NULL, OPT_COLDS },
		{ "clones", required_argument, NULL, OPT_CLONES },
		{ "output", required_argument, NULL, 'o' },
		{ "clone", required_argument, NULL, OPT_CLONE },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm_txn t = { .success_exit = 0 };
	struct vmm_bench_opts bo = { .in_place = 50, .in_place_off = 20, .restore = 5, .cold = 1,
				     .clones = 16 };
	const char *bench_out = NULL;
	unsigned int nb;
	const char *sock = NULL, *cmd;
	struct utsname u;
	unsigned int se;
	int c, rc;

	/* GNU getopt permutes: options go anywhere before "--". */
	while ((c = getopt_long(argc, argv, "k:i:m:c:d:o:jvh", lopts, NULL)) != -1) {
		switch (c) {
		case 'k': opts.kernel = optarg; break;
		case 'i': opts.initrd = optarg; break;
		case 'm':
			if (parse_size(optarg, &opts.mem_size)) {
				fprintf(stderr, "vmreset-vmm: --mem '%s': not a size\n", optarg);
				return 2;
			}
			break;
		case 'c':
			if (parse_uint("--cpus", optarg, &opts.cpus))
				return 2;
			break;
		case 'd': opts.dir = optarg; break;
		case OPT_KEEP:
			if (parse_size(optarg, &opts.keep_size)) {
				fprintf(stderr, "vmreset-vmm: --keep '%s': not a size\n", optarg);
				return 2;
			}
			break;
		case OPT_APPEND: opts.cmdline = optarg; break;
		case OPT_DISK: opts.disk = optarg; break;
		case OPT_PIT: opts.pit = true; break;
		case OPT_HOT:
			if (parse_word("--hot", optarg, hot_words, &opts.hot))
				return 2;
			break;
		case OPT_HC_PRESERVE:
			if (parse_word("--hc-preserve", optarg, hc_words, &opts.hc))
				return 2;
			break;
		case OPT_CONSOLE: opts.console_fd = 2; break;
		case OPT_BOOT_TIMEOUT:
			if (parse_uint("--boot-timeout", optarg, &boot_timeout_ms))
				return 2;
			break;
		case OPT_TIMEOUT:
			if (parse_uint("--timeout", optarg, &t.timeout_ms))
				return 2;
			break;
		case OPT_RETRY:
			if (parse_uint("--retry", optarg, &t.retry))
				return 2;
			break;
		case OPT_SUCCESS_EXIT:
			if (parse_uint("--success-exit", optarg, &se) || se > 255) {
				fprintf(stderr, "vmreset-vmm: --success-exit '%s': an exit status 0-255\n", optarg);
				return 2;
			}
			t.success_exit = se;
			break;
		case OPT_SUCCESS_MATCH:
			if (t.match)
				regfree(&match_re);
			if (regcomp(&match_re, optarg, REG_EXTENDED | REG_NOSUB | REG_NEWLINE)) {
				fprintf(stderr, "vmreset-vmm: --success-match '%s': not an extended regex\n", optarg);
				return 2;
			}
			t.match = &match_re;
			break;
		case OPT_SOCKET: sock = optarg; break;
		case OPT_STORE: store.url = optarg; break;
		case OPT_KEY: store.key = optarg; break;
		case OPT_SAVE: save_name = optarg; break;
		case OPT_RESTORE: restore_name = optarg; break;
		case OPT_EXPORT: export_prefix = optarg; break;
		case OPT_CLONE: clone_prefix = optarg; break;
		case 'o': bench_out = optarg; break;
		case OPT_SAMPLES: case OPT_RESTORES: case OPT_COLDS: case OPT_CLONES:
			if (parse_uint(c == OPT_SAMPLES ? "--samples" : c == OPT_RESTORES ? "--restores" :
				       c == OPT_COLDS ? "--colds" : "--clones", optarg, &nb))
				return 2;
			if (nb > (c == OPT_SAMPLES ? 10000U : 64U)) {
				fprintf(stderr, "vmreset-vmm: --%s '%s': at most %u\n",
					c == OPT_SAMPLES ? "samples" : c == OPT_RESTORES ? "restores" :
					c == OPT_COLDS ? "colds" : "clones", optarg,
					c == OPT_SAMPLES ? 10000U : 64U);
				return 2;
			}
			if (c == OPT_SAMPLES) {
				bo.in_place = nb ? nb : 1;
				bo.in_place_off = (nb + 1) / 2 ? (nb + 1) / 2 : 1;
			} else if (c == OPT_RESTORES) {
				bo.restore = nb ? nb : 1;
			} else if (c == OPT_COLDS) {
				bo.cold = nb ? nb : 1;
			} else {
				bo.clones = nb;
			}
			break;
		case 'j': json = true; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "boot") && strcmp(cmd, "run") && strcmp(cmd, "serve") && strcmp(cmd, "bench")) {
		fprintf(stderr, "vmreset-vmm: unknown command '%s' (boot, run, serve, bench; --help)\n", cmd);
		return 2;
	}
	if ((save_name || restore_name) && (!store.url || !store.key)) {
		fprintf(stderr, "vmreset-vmm: --%s needs --store and --key\n",
			save_name ? "save" : "restore");
		return 2;
	}
	if (clone_prefix && restore_name) {
		fprintf(stderr, "vmreset-vmm: --clone and --restore: start from one of them\n");
		return 2;
	}
	if (!save_name && !restore_name && (store.url || store.key)) {
		fprintf(stderr, "vmreset-vmm: --%s without --save or --restore\n",
			store.url ? "store" : "key");
		return 2;
	}
	if (strcmp(cmd, "run") && optind < argc) {
		fprintf(stderr, "vmreset-vmm: %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return 2;
	}
	if (!opts.kernel) {
		uname(&u);
		snprintf(kernel_buf, sizeof(kernel_buf), "/boot/vmlinuz-%s", u.release);
		opts.kernel = kernel_buf;
	}
	if (!opts.initrd) {
		uname(&u);
		snprintf(initrd_buf, sizeof(initrd_buf), "%s/lib/vmreset/guest-%s.cpio.gz",
			 "/usr/local", u.release);
		opts.initrd = initrd_buf;
	}
	if (!strcmp(cmd, "boot")) {
		rc = cmd_boot();
	} else if (!strcmp(cmd, "bench")) {
		if (save_name || restore_name || export_prefix || clone_prefix) {
			fprintf(stderr, "vmreset-vmm: bench boots its own VMs: no --save, --restore, "
				"--export or --clone\n");
			return 2;
		}
		rc = cmd_bench(&bo, bench_out);
	} else if (!strcmp(cmd, "run")) {
		rc = cmd_run(&t, argc - optind, argv + optind);
	} else {
		rc = cmd_serve(&t, sock);
	}
	return rc;
}
