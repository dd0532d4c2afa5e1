// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-hc: the guest-declared preserved range service.
 *
 *   vmreset-hc load | unload | status [-j] | drain VM [FD] | revert VM [FD]
 *
 * Exit status: 0 success, 1 the operation failed, 2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>
#include "vmreset_bpf.h"
#include "tool.h"
#include "util.h"
#include "hc.h"
#include "hc.skel.h"

#define BPF_FS_MAGIC	0xcafe4a11

static const char *prog = "vmreset-hc";
static bool json;

#define fail(...)	vmr_err(prog, 1, __VA_ARGS__)


/* bpffs at /sys/fs/bpf, mounting it if nobody did (as bpftool does). */
static int ensure_bpffs(void)
{
	struct statfs st;

	if (!statfs("/sys/fs/bpf", &st) && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
		return -errno;
	return 0;
}

static const char *const pins[] = {
	"link_hypercall", "link_hypercall_done",
	"hc_pending", "hc_vms", "hc_done", "hc_stage",
};

static int cmd_unload(void)
{
	char path[256];
	int removed = 0;

	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		snprintf(path, sizeof(path), HC_PIN_DIR "/%s", pins[i]);
		if (!unlink(path))
			removed++;
		else if (errno != ENOENT)
			return fail("unpin %s: %s", path, strerror(errno));
	}
	rmdir(HC_PIN_DIR);
	if (!json)
		printf(removed ? "unloaded\n" : "not loaded\n");
	return 0;
}

static int pin_link(struct bpf_link *l, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), HC_PIN_DIR "/%s", name);
	return bpf_link__pin(l, path);
}

static int cmd_load(void)
{
	struct hc_bpf *skel;
	char path[256];
	int err;

	snprintf(path, sizeof(path), HC_PIN_DIR "/link_hypercall");
	if (!access(path, F_OK)) {
		printf("already loaded\n");
		return 0;
	}
	err = ensure_bpffs();
	if (err)
		return fail("cannot mount bpffs on /sys/fs/bpf: %s", strerror(-err));
	if (mkdir(HC_PIN_DIR, 0700) && errno != EEXIST)
		return fail("mkdir %s: %s", HC_PIN_DIR, strerror(errno));
	skel = hc_bpf__open();
	if (!skel)
		return fail("cannot open the BPF object: %s", strerror(errno));
	err = hc_bpf__load(skel);
	if (err) {
		err = fail("cannot load the BPF programs (is kvm loaded?): %s",
			   strerror(-err));
		goto out;
	}
	err = hc_bpf__attach(skel);
	if (err) {
		err = fail("cannot attach to KVM: %s", strerror(-err));
		goto out;
	}
#define PIN_MAP(m) bpf_map__pin(skel->maps.m, HC_PIN_DIR "/" #m)
	err = PIN_MAP(hc_pending) ?: PIN_MAP(hc_vms) ?: PIN_MAP(hc_done) ?: PIN_MAP(hc_stage) ?:
	      pin_link(skel->links.on_hypercall, "link_hypercall") ?:
	      pin_link(skel->links.on_hypercall_done, "link_hypercall_done");
	if (err) {
		fail("cannot pin under %s: %s", HC_PIN_DIR, strerror(-err));
		hc_bpf__destroy(skel);
		cmd_unload();
		return 1;
	}
	printf("loaded: hypercall 0x%llx recorded for every VM, pinned in %s\n",
	       (unsigned long long)VMRESET_HC_PRESERVE, HC_PIN_DIR);
out:
	hc_bpf__destroy(skel);
	return err ? 1 : 0;
}

static int open_pinned(const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), HC_PIN_DIR "/%s", name);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		if (errno == ENOENT)
			fail("the service is not loaded (run: %s load)", prog);
		else
			fail("%s: %s", path, strerror(errno));
	}
	return fd;
}

static int cmd_status(void)
{
	int vms_fd, done_fd;
	struct json_object *arr = json_object_new_array();
	uint64_t key, next;
	int err;

	vms_fd = open_pinned("hc_vms");
	if (vms_fd < 0)
		return 1;
	done_fd = open_pinned("hc_done");
	if (done_fd < 0)
		return 1;
	if (!json)
		printf("%-18s %7s %8s %8s %7s %9s %9s %9s %8s %10s %7s %9s %8s\n", "KVM",
		       "PID", "REQUESTS", "ACCEPTED", "PENDING", "BAD_ALIGN", "BAD_RANGE",
		       "BAD_FLAGS", "TOO_MANY", "NOT_KERNEL", "APPLIED", "NO_MEMORY",
		       "NO_SPACE");
	for (err = bpf_map_get_next_key(vms_fd, NULL, &next); !err;
	     err = bpf_map_get_next_key(vms_fd, &key, &next)) {
		struct hc_vm v;
		struct hc_done d = { 0 };

		key = next;
		if (bpf_map_lookup_elem(vms_fd, &key, &v))
			continue;
		bpf_map_lookup_elem(done_fd, &key, &d);
		if (json) {
			struct json_object *o = json_object_new_object();

#define J(name, val) json_object_object_add(o, name, json_object_new_uint64(val))
			J("kvm", key);
			J("pid", v.pid);
			J("requests", v.requests);
			J("accepted", v.accepted);
			J("pending", v.accepted - d.drained);
			J("bad_align", v.bad_align);
			J("bad_range", v.bad_range);
			J("bad_flags", v.bad_flags);
			J("too_many", v.too_many);
			J("not_kernel", v.not_kernel);
			J("applied", d.applied);
			J("no_memory", d.no_memory);
			J("no_space", d.no_space);
			J("failed", d.failed);
			json_object_array_add(arr, o);
		} else {
			unsigned long long c[] = {
				v.requests, v.accepted, v.accepted - d.drained, v.bad_align,
				v.bad_range, v.bad_flags, v.too_many, v.not_kernel,
				d.applied, d.no_memory, d.no_space,
			};
			static const int w[] = { 8, 8, 7, 9, 9, 9, 8, 10, 7, 9, 8 };

			printf("0x%016llx %7u", (unsigned long long)key, v.pid);
			for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
				printf(" %*llu", w[i], c[i]);
			putchar('\n');
		}
	}
	if (json)
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
	json_object_put(arr);
	return 0;
}

static int parse_vm(const char *s, uint32_t *id)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v == 0 || v > UINT32_MAX)
		return -1;
	*id = v;
	return 0;
}

static int cmd_drain(const char *arg, const char *fdarg, bool revert, uint64_t flags)
{
	int vm_fd = -1;
	struct vmreset_hc_result r;
	uint64_t reverted = 0, kept = 0;
	struct vmreset_nl *nl;
	uint32_t id, fd;
	int err, n = 0;

	if (parse_vm(arg, &id)) {
		fprintf(stderr, "%s: bad VM ID '%s'\n", prog, arg);
		return 2;
	}
	if (fdarg && (parse_vm(fdarg, &fd) || fd > INT32_MAX)) {
		fprintf(stderr, "%s: bad VM fd '%s'\n", prog, fdarg);
		return 2;
	}
	if (fdarg)
		vm_fd = fd;
	nl = vmreset_nl_open(&err);
	if (!nl)
		return fail("vmreset netlink: %s (is the module loaded?)", strerror(-err));
	if (revert)
		err = vmreset_hc_vm_revert(nl, id, vm_fd, flags, &reverted, &kept, &r);
	else
		err = n = vmreset_hc_drain(nl, id, vm_fd, &r);
	if (err == -EBUSY)
		fail("VM %u: its VMM holds several KVM VMs; name this one's fd there", id);
	else if (err == -EBADF)
		fail("VM %u: fd %d is not a KVM VM of its VMM", id, vm_fd);
	else if (err == -ENOENT && !revert)
		fail("VM %u: no such VM, or the service is not loaded", id);
	if (err < 0) {
		if (err != -ENOENT && err != -EBUSY && err != -EBADF)
			fail("VM %u: %s%s%s%s", id, strerror(-err),
			     *vmreset_nl_errmsg(nl) ? " (" : "", vmreset_nl_errmsg(nl),
			     *vmreset_nl_errmsg(nl) ? ")" : "");
		vmreset_nl_close(nl);
		return 1;
	}
	vmreset_nl_close(nl);
	if (json) {
		struct json_object *o = json_object_new_object();

		J("applied", r.applied);
		J("no_memory", r.no_memory);
		J("no_space", r.no_space);
		J("failed", r.failed);
		if (revert) {
			J("reverted_pages", reverted);
			J("preserved_pages", kept);
		}
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		printf("vm %u: %" PRIu64 " guest ranges applied, %" PRIu64 " refused\n", id,
		       r.applied, r.no_memory + r.no_space + r.failed);
		if (revert)
			printf("vm %u: %" PRIu64 " pages reverted, %" PRIu64
			       " preserved pages kept\n", id, reverted, kept);
	}
	(void)n;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-j] COMMAND\n"
		"  load          load the hypercall service and pin it in " HC_PIN_DIR "\n"
		"  unload        remove it\n"
		"  status        requests and errors per VM\n"
		"  drain VM [FD] apply the guest's pending ranges to vmreset VM ID VM\n"
		"                (FD: the VM's fd in its VMM, if that holds several VMs)\n"
		"  revert VM [FD] drain, then revert the VM (-n: dry run)\n"
		"Guests issue hypercall 0x%llx (see include/uapi/linux/vmreset.h).\n",
		prog, (unsigned long long)VMRESET_HC_PRESERVE);
}

int main(int argc, char **argv)
{
	uint64_t flags = 0;
	int opt, err;

	while ((opt = getopt(argc, argv, "+jnh")) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'n': flags |= VMRESET_REVERT_F_DRY_RUN; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	err = vmreset_bpf_check_privilege();
	if (err)
		return fail("%s", err == -EPERM ? VMRESET_BPF_PRIV_MSG : strerror(-err));
	libbpf_set_print(vmr_libbpf_print);
	const char *cmd = argv[optind];
	int nargs = argc - optind - 1;

	if (!strcmp(cmd, "load") && !nargs)
		return cmd_load();
	if (!strcmp(cmd, "unload") && !nargs)
		return cmd_unload();
	if (!strcmp(cmd, "status") && !nargs)
		return cmd_status();
	if (!strcmp(cmd, "drain") && (nargs == 1 || nargs == 2))
		return cmd_drain(argv[optind + 1], nargs == 2 ? argv[optind + 2] : NULL,
				 false, 0);
	if (!strcmp(cmd, "revert") && (nargs == 1 || nargs == 2))
		return cmd_drain(argv[optind + 1], nargs == 2 ? argv[optind + 2] : NULL,
				 true, flags);
	fprintf(stderr, "%s: unknown command or wrong arguments: '%s'\n", prog, cmd);
	usage(stderr);
	return 2;
}
