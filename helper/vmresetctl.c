// SPDX-License-Identifier: GPL-2.0
/*
 * vmresetctl: manage vmreset memory objects from the command line.
 *
 * Exit status: 0 success, 1 the operation failed, 2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "vmreset.h"

static bool json;
static const char *prog = "vmresetctl";

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *args;
	const char *help;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

static int op_error(const char *what, const char *obj, int err)
{
	fprintf(stderr, "%s: %s '%s': %s\n", prog, what, obj, strerror(-err));
	return 1;
}

/* "4096", "64k", "2M", "1G", "0x1000" -> bytes. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'B' || *end == 'b') && shift)
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int open_obj(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	int err;

	if (fd < 0)
		return op_error("cannot open", path, -errno);
	err = vmreset_check_fd(fd);
	if (err) {
		close(fd);
		fprintf(stderr, "%s: '%s' is not a vmresetfs file\n", prog, path);
		return -1;
	}
	return fd;
}

/* "id:N" or a bare number that is not an existing file name an object by ID. */
static bool parse_id(const char *s, uint64_t *id)
{
	char *end;

	if (!strncmp(s, "id:", 3))
		s += 3;
	else if (!access(s, F_OK))
		return false;
	errno = 0;
	*id = strtoull(s, &end, 10);
	return !errno && end != s && !*end && *id;
}

static struct vmreset_nl *nl_open(void)
{
	int err = 0;
	struct vmreset_nl *nl = vmreset_nl_open(&err);

	if (!nl && err == -ENOENT)
		fprintf(stderr, "%s: the vmreset netlink family is not there; is the module loaded (modprobe vmreset)?\n",
			prog);
	else if (!nl)
		fprintf(stderr, "%s: netlink: %s\n", prog, strerror(-err));
	return nl;
}

static int nl_error(struct vmreset_nl *nl, const char *what, const char *obj, int err)
{
	const char *msg = vmreset_nl_errmsg(nl);

	fprintf(stderr, "%s: %s '%s': %s%s%s%s\n", prog, what, obj, strerror(-err),
		*msg ? " (" : "", msg, *msg ? ")" : "");
	vmreset_nl_close(nl);
	return 1;
}

static int need_args(int argc, int want, const char *cmd, const char *args)
{
	if (argc == want)
		return 0;
	return usage_error("usage: %s %s %s", prog, cmd, args);
}

static int cmd_features(int argc, char **argv)
{
	struct vmreset_features f;
	int fd, err;

	if (need_args(argc, 2, "features", "FILE"))
		return 2;
	fd = open_obj(argv[1], O_RDONLY);
	if (fd < 0)
		return 1;
	err = vmreset_features(fd, &f);
	close(fd);
	if (err)
		return op_error("features of", argv[1], err);
	if (json)
		printf("{\"api_version\":%u,\"features\":%" PRIu64
		       ",\"page_size\":%u,\"max_preserved\":%u,\"max_list\":%u}\n",
		       f.api_version, (uint64_t)f.features, f.page_size,
		       f.max_preserved, f.max_list);
	else
		printf("api version %u, features %#" PRIx64 ", page size %u, "
		       "max preserved ranges %u\n", f.api_version,
		       (uint64_t)f.features, f.page_size, f.max_preserved);
	return 0;
}

static int cmd_snapshot(int argc, char **argv)
{
	uint64_t dirty, id;
	int fd, err;

	if (need_args(argc, 2, "snapshot", "FILE|id:ID"))
		return 2;
	if (parse_id(argv[1], &id)) {
		struct vmreset_nl *nl = nl_open();

		if (!nl)
			return 1;
		err = vmreset_nl_snapshot(nl, id, &dirty);
		if (err)
			return nl_error(nl, "snapshot of", argv[1], err);
		vmreset_nl_close(nl);
		goto out;
	}
	fd = open_obj(argv[1], O_RDWR);
	if (fd < 0)
		return 1;
	err = vmreset_snapshot(fd, &dirty);
	close(fd);
	if (err)
		return op_error("snapshot of", argv[1], err);
out:
	if (json)
		printf("{\"dirty_pages\":%" PRIu64 "}\n", dirty);
	else
		printf("%s: snapshot taken (%" PRIu64 " dirty pages folded in)\n",
		       argv[1], dirty);
	return 0;
}

static int cmd_revert(int argc, char **argv)
{
	uint64_t flags = 0, reverted, kept, id;
	int fd, err;

	if (argc == 3 && !strcmp(argv[1], "--dry-run")) {
		flags = VMRESET_REVERT_F_DRY_RUN;
		argv++;
		argc--;
	}
	if (need_args(argc, 2, "revert", "[--dry-run] FILE|id:ID"))
		return 2;
	if (parse_id(argv[1], &id)) {
		struct vmreset_nl *nl = nl_open();

		if (!nl)
			return 1;
		err = vmreset_nl_revert(nl, id, flags, &reverted, &kept);
		if (err)
			return nl_error(nl, "revert of", argv[1], err);
		vmreset_nl_close(nl);
	} else {
		fd = open_obj(argv[1], O_RDWR);
		if (fd < 0)
			return 1;
		err = vmreset_revert(fd, flags, &reverted, &kept);
		close(fd);
	}
	if (err == -ENODATA) {
		fprintf(stderr, "%s: '%s' has no snapshot to revert to\n", prog, argv[1]);
		return 1;
	}
	if (err)
		return op_error("revert of", argv[1], err);
	if (json)
		printf("{\"reverted_pages\":%" PRIu64 ",\"preserved_pages\":%" PRIu64
		       ",\"dry_run\":%s}\n", reverted, kept, flags ? "true" : "false");
	else
		printf("%s: %s%" PRIu64 " pages reverted, %" PRIu64
		       " preserved pages kept\n", argv[1],
		       flags ? "(dry run) " : "", reverted, kept);
	return 0;
}

static void print_json_ranges(const struct vmreset_range *r, long n)
{
	printf("[");
	for (long i = 0; i < n; i++)
		printf("%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64 "}",
		       i ? "," : "", (uint64_t)r[i].offset, (uint64_t)r[i].length);
	printf("]");
}

static void print_ranges(const struct vmreset_range *r, long n)
{
	if (json) {
		print_json_ranges(r, n);
		printf("\n");
		return;
	}
	for (long i = 0; i < n; i++)
		printf("%#" PRIx64 "-%#" PRIx64 " (%" PRIu64 " pages)\n",
		       (uint64_t)r[i].offset,
		       (uint64_t)(r[i].offset + r[i].length),
		       (uint64_t)r[i].length / 4096);
}

static int cmd_preserve(int argc, char **argv)
{
	struct vmreset_range *r;
	uint64_t off, len, id;
	long n;
	int fd, err;

	if (argc == 3 && !strcmp(argv[1], "list")) {
		fd = open_obj(argv[2], O_RDONLY);
		if (fd < 0)
			return 1;
		n = vmreset_preserve_list(fd, &r);
		close(fd);
		if (n < 0)
			return op_error("preserved ranges of", argv[2], (int)n);
		print_ranges(r, n);
		free(r);
		return 0;
	}
	if (argc != 5 || (strcmp(argv[1], "add") && strcmp(argv[1], "del")))
		return usage_error("usage: %s preserve add|del FILE OFFSET LENGTH | preserve list FILE",
				   prog);
	if (parse_size(argv[3], &off))
		return usage_error("bad offset '%s'", argv[3]);
	if (parse_size(argv[4], &len))
		return usage_error("bad length '%s'", argv[4]);
	if (parse_id(argv[2], &id)) {
		struct vmreset_nl *nl = nl_open();

		if (!nl)
			return 1;
		err = vmreset_nl_preserve(nl, id, argv[1][0] == 'a', off, len);
		if (err)
			return nl_error(nl, "preserve on", argv[2], err);
		vmreset_nl_close(nl);
		return 0;
	}
	fd = open_obj(argv[2], O_RDWR);
	if (fd < 0)
		return 1;
	err = argv[1][0] == 'a' ? vmreset_preserve_add(fd, off, len)
				: vmreset_preserve_del(fd, off, len);
	close(fd);
	if (err == -EINVAL) {
		fprintf(stderr, "%s: range '%s' + '%s' must be page-aligned and non-empty\n",
			prog, argv[3], argv[4]);
		return 1;
	}
	if (err == -ENOSPC) {
		fprintf(stderr, "%s: '%s' would have more than %d preserved ranges\n",
			prog, argv[2], VMRESET_MAX_PRESERVED);
		return 1;
	}
	return err ? op_error("preserve on", argv[2], err) : 0;
}

static int cmd_dirty(int argc, char **argv)
{
	struct vmreset_range *r;
	long n;
	int fd;

	if (need_args(argc, 2, "dirty", "FILE"))
		return 2;
	fd = open_obj(argv[1], O_RDONLY);
	if (fd < 0)
		return 1;
	n = vmreset_dirty_list(fd, &r);
	close(fd);
	if (n < 0)
		return op_error("dirty list of", argv[1], (int)n);
	print_ranges(r, n);
	free(r);
	return 0;
}

static int cmd_stats(int argc, char **argv)
{
	struct vmreset_stats s;
	int fd, err;

	if (need_args(argc, 2, "stats", "FILE"))
		return 2;
	fd = open_obj(argv[1], O_RDONLY);
	if (fd < 0)
		return 1;
	err = vmreset_stats(fd, &s);
	close(fd);
	if (err)
		return op_error("stats of", argv[1], err);
#define F(x) #x, (uint64_t)s.x
	if (json)
		printf("{\"snapshot\":%s,\"%s\":%" PRIu64 ",\"%s\":%" PRIu64
		       ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64
		       ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64
		       ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64
		       ",\"%s\":%" PRIu64 ",\"%s\":%" PRIu64 "}\n",
		       s.flags & VMRESET_STATS_F_SNAPSHOT ? "true" : "false",
		       F(file_size), F(snapshot_size), F(resident_pages),
		       F(shared_pages), F(undo_pages), F(dirty_pages),
		       F(preserved_ranges), F(cow_faults), F(faults),
		       F(snapshots), F(reverts), F(reverted_pages),
		       "bytes_in_memory", (uint64_t)(s.resident_pages + s.undo_pages) * 4096);
	else
		printf("%s:\n"
		       "  size %" PRIu64 " bytes, snapshot: %s\n"
		       "  pages: %" PRIu64 " resident (%" PRIu64 " shared), %" PRIu64
		       " undo, %" PRIu64 " dirty\n"
		       "  preserved ranges: %" PRIu64 "\n"
		       "  faults: %" PRIu64 ", copy-on-write: %" PRIu64 "\n"
		       "  snapshots: %" PRIu64 ", reverts: %" PRIu64
		       " (%" PRIu64 " pages)\n", argv[1],
		       (uint64_t)s.file_size,
		       s.flags & VMRESET_STATS_F_SNAPSHOT ? "yes" : "no",
		       (uint64_t)s.resident_pages, (uint64_t)s.shared_pages,
		       (uint64_t)s.undo_pages, (uint64_t)s.dirty_pages,
		       (uint64_t)s.preserved_ranges, (uint64_t)s.faults,
		       (uint64_t)s.cow_faults, (uint64_t)s.snapshots,
		       (uint64_t)s.reverts, (uint64_t)s.reverted_pages);
#undef F
	return 0;
}

static int cmd_clone(int argc, char **argv)
{
	int src, dst, err;

	if (need_args(argc, 3, "clone", "SRC DST"))
		return 2;
	src = open_obj(argv[1], O_RDONLY);
	if (src < 0)
		return 1;
	dst = open(argv[2], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (dst < 0) {
		close(src);
		return op_error("cannot create", argv[2], -errno);
	}
	err = vmreset_clone(dst, src);
	close(src);
	close(dst);
	if (err) {
		unlink(argv[2]);
		if (err == -EXDEV)
			fprintf(stderr, "%s: '%s' and '%s' are not on the same vmresetfs mount\n",
				prog, argv[1], argv[2]);
		else
			op_error("clone into", argv[2], err);
		return 1;
	}
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	uint64_t size;
	int fd;

	if (need_args(argc, 3, "create", "PATH SIZE"))
		return 2;
	if (parse_size(argv[2], &size))
		return usage_error("bad size '%s'", argv[2]);
	fd = vmreset_create(argv[1], size);
	if (fd == -ENOTTY) {
		fprintf(stderr, "%s: '%s' is not on a vmresetfs mount\n", prog, argv[1]);
		return 1;
	}
	if (fd < 0)
		return op_error("cannot create", argv[1], fd);
	close(fd);
	return 0;
}

static int cmd_mount(int argc, char **argv)
{
	int err;

	if (argc != 2 && argc != 3)
		return usage_error("usage: %s mount DIR [OPTIONS]", prog);
	err = vmreset_mount(argv[1], argc == 3 ? argv[2] : NULL);
	if (err == -ENODEV) {
		fprintf(stderr, "%s: vmresetfs is not available; is the module installed (modprobe vmreset)?\n",
			prog);
		return 1;
	}
	return err ? op_error("mount on", argv[1], err) : 0;
}

static void print_obj(const struct vmreset_obj *o, bool one)
{
	if (json) {
		printf("{\"id\":%" PRIu64 ",\"path\":\"%s\",\"dev\":%u,\"uid\":%u,"
		       "\"size\":%" PRIu64 ",\"snapshot\":%s,\"resident_pages\":%" PRIu64
		       ",\"shared_pages\":%" PRIu64 ",\"undo_pages\":%" PRIu64
		       ",\"dirty_pages\":%" PRIu64 ",\"faults\":%" PRIu64
		       ",\"cow_faults\":%" PRIu64 ",\"snapshots\":%" PRIu64
		       ",\"reverts\":%" PRIu64 ",\"reverted_pages\":%" PRIu64
		       ",\"preserved\":", o->id, o->path, o->dev, o->uid, o->size,
		       o->has_snapshot ? "true" : "false", o->resident_pages,
		       o->shared_pages, o->undo_pages, o->dirty_pages, o->faults,
		       o->cow_faults, o->snapshots, o->reverts, o->reverted_pages);
		print_json_ranges(o->preserved, (long)o->nr_preserved);
		printf("}");
		return;
	}
	if (!one) {
		printf("%-6" PRIu64 " %12" PRIu64 " %-4s %9" PRIu64 " %9" PRIu64 " %6u  %s\n",
		       o->id, o->size, o->has_snapshot ? "yes" : "no",
		       o->resident_pages, o->dirty_pages, o->uid,
		       *o->path ? o->path : "(unlinked)");
		return;
	}
	printf("object %" PRIu64 ": %s (dev %u:%u, uid %u)\n"
	       "  size %" PRIu64 " bytes, snapshot: %s\n"
	       "  pages: %" PRIu64 " resident (%" PRIu64 " shared), %" PRIu64 " undo, %" PRIu64
	       " dirty\n  faults: %" PRIu64 ", copy-on-write: %" PRIu64 "\n"
	       "  snapshots: %" PRIu64 ", reverts: %" PRIu64 " (%" PRIu64 " pages)\n"
	       "  preserved ranges: %zu\n", o->id, *o->path ? o->path : "(unlinked)",
	       o->dev >> 20, o->dev & 0xfffff, o->uid, o->size,
	       o->has_snapshot ? "yes" : "no", o->resident_pages, o->shared_pages,
	       o->undo_pages, o->dirty_pages, o->faults, o->cow_faults, o->snapshots,
	       o->reverts, o->reverted_pages, o->nr_preserved);
	print_ranges(o->preserved, (long)o->nr_preserved);
}

static int list_one(const struct vmreset_obj *o, void *arg)
{
	int *n = arg;

	if (json && (*n)++)
		printf(",");
	print_obj(o, false);
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	struct vmreset_nl *nl;
	int n = 0, err;

	(void)argv;
	if (need_args(argc, 1, "list", ""))
		return 2;
	nl = nl_open();
	if (!nl)
		return 1;
	if (json)
		printf("[");
	else
		printf("%-6s %12s %-4s %9s %9s %6s  %s\n", "ID", "SIZE", "SNAP",
		       "RESIDENT", "DIRTY", "UID", "PATH");
	err = vmreset_nl_list(nl, list_one, &n);
	if (json)
		printf("]\n");
	if (err)
		return nl_error(nl, "list of", "objects", err);
	vmreset_nl_close(nl);
	return 0;
}

static int cmd_show(int argc, char **argv)
{
	struct vmreset_obj o;
	struct vmreset_stats st;
	struct vmreset_nl *nl;
	uint64_t id;
	int err;

	if (need_args(argc, 2, "show", "FILE|id:ID"))
		return 2;
	if (!parse_id(argv[1], &id)) {
		int fd = open_obj(argv[1], O_RDONLY);

		if (fd < 0)
			return 1;
		err = vmreset_stats(fd, &st);
		close(fd);
		if (err)
			return op_error("stats of", argv[1], err);
		id = st.id;
	}
	nl = nl_open();
	if (!nl)
		return 1;
	err = vmreset_nl_get(nl, id, &o);
	if (err)
		return nl_error(nl, "show", argv[1], err);
	print_obj(&o, true);
	if (json)
		printf("\n");
	vmreset_obj_free(&o);
	vmreset_nl_close(nl);
	return 0;
}

static int print_event(const struct vmreset_event *ev, void *arg)
{
	static const char *const names[] = {
		[VMRESET_CMD_SNAPSHOT_NTF] = "snapshot",
		[VMRESET_CMD_REVERT_NTF] = "revert",
		[VMRESET_CMD_OBJ_DEL_NTF] = "removed",
		[VMRESET_CMD_VM_ATTACH_NTF] = "vm-attach",
		[VMRESET_CMD_VM_DETACH_NTF] = "vm-detach",
	};
	const char *name = ev->cmd < sizeof(names) / sizeof(names[0]) &&
			   names[ev->cmd] ? names[ev->cmd] : "unknown";
	long *left = arg;

	if (json)
		printf("{\"event\":\"%s\",\"id\":%" PRIu64 ",\"vm_id\":%u,\"pid\":%u,"
		       "\"dirty_pages\":%" PRIu64 ",\"reverted_pages\":%" PRIu64
		       ",\"kept_pages\":%" PRIu64 "}\n", name, ev->id, ev->vm_id, ev->pid,
		       ev->dirty_pages, ev->reverted_pages, ev->kept_pages);
	else if (ev->cmd == VMRESET_CMD_SNAPSHOT_NTF)
		printf("snapshot id:%" PRIu64 " dirty_pages %" PRIu64 "\n", ev->id, ev->dirty_pages);
	else if (ev->cmd == VMRESET_CMD_REVERT_NTF)
		printf("revert id:%" PRIu64 " reverted_pages %" PRIu64 " kept_pages %" PRIu64 "\n",
		       ev->id, ev->reverted_pages, ev->kept_pages);
	else if (ev->cmd == VMRESET_CMD_VM_ATTACH_NTF || ev->cmd == VMRESET_CMD_VM_DETACH_NTF)
		printf("%s vm:%u pid %u\n", name, ev->vm_id, ev->pid);
	else
		printf("%s id:%" PRIu64 "\n", name, ev->id);
	fflush(stdout);
	return *left > 0 && --*left == 0;
}

static int cmd_monitor(int argc, char **argv)
{
	struct vmreset_nl *nl;
	long count = 0;
	int err;

	if (argc == 3 && !strcmp(argv[1], "--count")) {
		count = atol(argv[2]);
		if (count <= 0)
			return usage_error("bad count '%s'", argv[2]);
	} else if (need_args(argc, 1, "monitor", "[--count N]")) {
		return 2;
	}
	nl = nl_open();
	if (!nl)
		return 1;
	err = vmreset_nl_monitor(nl, print_event, &count);
	if (err)
		return nl_error(nl, "monitor", "events", err);
	vmreset_nl_close(nl);
	return 0;
}

static int print_vm(const struct vmreset_vm *vm, void *arg)
{
	int *n = arg;

	if (json) {
		printf("%s{\"id\":%u,\"pid\":%u,\"uid\":%u,\"snapshots\":%" PRIu64
		       ",\"reverts\":%" PRIu64 ",\"reverted_pages\":%" PRIu64 ",\"slots\":[",
		       (*n)++ ? "," : "", vm->id, vm->pid, vm->uid, vm->snapshots,
		       vm->reverts, vm->reverted_pages);
		for (size_t i = 0; i < vm->nr_slots; i++)
			printf("%s{\"gpa\":%" PRIu64 ",\"size\":%" PRIu64 ",\"obj_id\":%" PRIu64
			       ",\"offset\":%" PRIu64 "}", i ? "," : "", vm->slots[i].gpa,
			       vm->slots[i].size, vm->slots[i].obj_id, vm->slots[i].offset);
		printf("]}");
		return 0;
	}
	printf("vm %u: pid %u, uid %u, %" PRIu64 " snapshots, %" PRIu64 " reverts (%" PRIu64
	       " pages)\n", vm->id, vm->pid, vm->uid, vm->snapshots, vm->reverts,
	       vm->reverted_pages);
	for (size_t i = 0; i < vm->nr_slots; i++)
		printf("  gpa %#" PRIx64 "-%#" PRIx64 " -> object id:%" PRIu64 " at %#" PRIx64 "\n",
		       vm->slots[i].gpa, vm->slots[i].gpa + vm->slots[i].size,
		       vm->slots[i].obj_id, vm->slots[i].offset);
	return 0;
}

static bool parse_u32(const char *s, uint32_t *v)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(s, &end, 10);
	if (errno || end == s || *end || x > UINT32_MAX)
		return false;
	*v = (uint32_t)x;
	return true;
}

/* A copy of another process's fd (needs ptrace rights over it). */
static int grab_fd(uint32_t pid, uint32_t fd)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0), ret;

	if (pidfd < 0)
		return -errno;
	ret = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (ret < 0)
		ret = -errno;
	close(pidfd);
	return ret;
}

static int cmd_vm(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	uint64_t a = 0, b = 0, flags = 0, gpa, len;
	struct vmreset_nl *nl;
	uint32_t id, pid, fd;
	int err = 0, n = 0, vfd;

	if (!strcmp(sub, "list") && argc == 2) {
		nl = nl_open();
		if (!nl)
			return 1;
		if (json)
			printf("[");
		err = vmreset_nl_vm_list(nl, print_vm, &n);
		if (json)
			printf("]\n");
		if (err)
			return nl_error(nl, "list of", "VMs", err);
		vmreset_nl_close(nl);
		return 0;
	}
	if (!strcmp(sub, "attach") && argc == 4) {
		if (!parse_u32(argv[2], &pid) || !parse_u32(argv[3], &fd))
			return usage_error("bad PID '%s' or FD '%s'", argv[2], argv[3]);
		vfd = grab_fd(pid, fd);
		if (vfd < 0)
			return op_error("cannot get fd of", argv[2], vfd);
		nl = nl_open();
		if (!nl)
			return 1;
		err = vmreset_nl_vm_attach(nl, vfd, &id);
		close(vfd);
		if (err)
			return nl_error(nl, "attach of VM fd", argv[3], err);
		vmreset_nl_close(nl);
		printf(json ? "{\"id\":%u}\n" : "vm %u attached\n", id);
		return 0;
	}
	if (!strcmp(sub, "revert") && argc == 4 && !strcmp(argv[2], "--dry-run")) {
		flags = VMRESET_REVERT_F_DRY_RUN;
		argv++;
		argc--;
	}
	if ((!strcmp(sub, "detach") || !strcmp(sub, "snapshot") ||
	     !strcmp(sub, "revert")) && argc == 3) {
		if (!parse_u32(argv[2], &id))
			return usage_error("bad VM id '%s'", argv[2]);
		nl = nl_open();
		if (!nl)
			return 1;
		if (sub[0] == 'd')
			err = vmreset_nl_vm_detach(nl, id);
		else if (sub[0] == 's')
			err = vmreset_nl_vm_snapshot(nl, id, &a);
		else
			err = vmreset_nl_vm_revert(nl, id, flags, &a, &b);
		if (err)
			return nl_error(nl, sub, argv[2], err);
		vmreset_nl_close(nl);
		if (sub[0] == 's' && json)
			printf("{\"dirty_pages\":%" PRIu64 "}\n", a);
		else if (sub[0] == 's')
			printf("vm %s: snapshot taken (%" PRIu64 " dirty pages folded in)\n",
			       argv[2], a);
		else if (sub[0] == 'r' && json)
			printf("{\"reverted_pages\":%" PRIu64 ",\"preserved_pages\":%" PRIu64 "}\n", a, b);
		else if (sub[0] == 'r')
			printf("vm %s: %" PRIu64 " pages reverted, %" PRIu64 " preserved pages kept\n",
			       argv[2], a, b);
		return 0;
	}
	if (!strcmp(sub, "preserve") && argc == 6 &&
	    (!strcmp(argv[2], "add") || !strcmp(argv[2], "del"))) {
		if (!parse_u32(argv[3], &id))
			return usage_error("bad VM id '%s'", argv[3]);
		if (parse_size(argv[4], &gpa) || parse_size(argv[5], &len))
			return usage_error("bad guest range '%s' + '%s'", argv[4], argv[5]);
		nl = nl_open();
		if (!nl)
			return 1;
		err = vmreset_nl_vm_preserve(nl, id, argv[2][0] == 'a', gpa, len);
		if (err)
			return nl_error(nl, "preserve on VM", argv[3], err);
		vmreset_nl_close(nl);
		return 0;
	}
	return usage_error("usage: %s vm list | attach PID FD | detach ID | snapshot ID | "
			   "revert [--dry-run] ID | preserve add|del ID GPA LEN", prog);
}

static int cmd_help(int argc, char **argv);

static const struct cmd cmds[] = {
	{ "mount", cmd_mount, "DIR [OPTIONS]", "mount vmresetfs (options: size=, nr_inodes=, mode=, uid=, gid=)" },
	{ "create", cmd_create, "PATH SIZE", "create a memory object of SIZE bytes (k/M/G suffixes)" },
	{ "snapshot", cmd_snapshot, "FILE|id:ID", "make the current content the revert point" },
	{ "revert", cmd_revert, "[--dry-run] FILE|id:ID", "give every page written since the snapshot its content back" },
	{ "preserve", cmd_preserve, "add|del FILE|id:ID OFF LEN | list FILE", "ranges that revert leaves alone" },
	{ "dirty", cmd_dirty, "FILE", "ranges written since the snapshot" },
	{ "stats", cmd_stats, "FILE", "pages, faults, snapshots and reverts of a file" },
	{ "clone", cmd_clone, "SRC DST", "create DST as a copy-on-write clone of SRC" },
	{ "list", cmd_list, "", "all objects you may manage (netlink)" },
	{ "show", cmd_show, "FILE|id:ID", "one object in detail (netlink)" },
	{ "vm", cmd_vm, "list|attach PID FD|detach|snapshot|revert|preserve ...", "KVM VMs: attach by another process's fd, act on all their memory" },
	{ "monitor", cmd_monitor, "[--count N]", "print snapshot, revert and removal events" },
	{ "features", cmd_features, "FILE", "API version and features of the kernel module" },
	{ "help", cmd_help, "[COMMAND]", "show this help" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: %s [-j|--json] COMMAND [ARGS]\n\nCommands:\n", prog);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-9s %-38s %s\n", cmds[i].name, cmds[i].args, cmds[i].help);
	fprintf(f, "\n%s COMMAND --help shows one command. Exit status: 0 ok, "
		"1 operation failed, 2 usage error.\n", prog);
}

static int cmd_help(int argc, char **argv)
{
	(void)argv;
	if (argc > 2)
		return usage_error("usage: %s help [COMMAND]", prog);
	if (argc == 2) {
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (!strcmp(cmds[i].name, argv[1])) {
				printf("Usage: %s %s %s\n  %s\n", prog, cmds[i].name,
				       cmds[i].args, cmds[i].help);
				return 0;
			}
		return usage_error("unknown command '%s'", argv[1]);
	}
	usage(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
			printf("%s %s\n", prog, vmreset_version());
			return 0;
		} else {
			usage(stderr);
			return usage_error("unknown option '%s'", argv[i]);
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
		if (strcmp(cmds[c].name, argv[i]))
			continue;
		if (argc > i + 1 && (!strcmp(argv[i + 1], "--help") ||
				     !strcmp(argv[i + 1], "-h"))) {
			printf("Usage: %s %s %s\n  %s\n", prog, cmds[c].name,
			       cmds[c].args, cmds[c].help);
			return 0;
		}
		return cmds[c].fn(argc - i, argv + i);
	}
	return usage_error("unknown command '%s' (try: %s help)", argv[i], prog);
}
