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
#include <sys/sysmacros.h>
#include <json-c/json.h>
#include "util.h"
#include "vmreset.h"

static bool json;
static bool write_failed;
static const char *prog = "vmresetctl";

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *args;
	const char *help;
};

#define usage_error(...)	vmr_err(prog, 2, __VA_ARGS__)

static int op_error(const char *what, const char *obj, int err)
{
	fprintf(stderr, "%s: %s '%s': %s\n", prog, what, obj, strerror(-err));
	return 1;
}

static void __attribute__((noreturn)) out_of_memory(void)
{
	fprintf(stderr, "%s: out of memory\n", prog);
	exit(1);
}

/*
 * JSON goes through json-c, so that any path (quotes, newlines, control
 * characters) comes out as a string a parser accepts.
 */
static struct json_object *jobj(void)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		out_of_memory();
	return o;
}

static struct json_object *jarr(void)
{
	struct json_object *a = json_object_new_array();

	if (!a)
		out_of_memory();
	return a;
}

static void ju64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static void jbool(struct json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}

static void jstr(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

/* Print @o as one line and free it. */
static void emit(struct json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE);

	if (!s)
		out_of_memory();
	puts(s);
	json_object_put(o);
}

/* A number where the user gave one, or a usage error naming it. */
static int parse_size_arg(const char *what, const char *s, uint64_t *v)
{
	int err = vmr_parse_size(s, v);

	if (err == -ERANGE)
		return usage_error("%s '%s' is too large", what, s);
	if (err)
		return usage_error("bad %s '%s' (a number of bytes, 0x for hex, suffixes k, M, G, T)",
				   what, s);
	return 0;
}

static int parse_u32_arg(const char *what, const char *s, uint32_t *v)
{
	if (vmr_parse_u32(s, v))
		return usage_error("bad %s '%s' (a number up to %u)", what, s, UINT32_MAX);
	return 0;
}

/*
 * The naming rule, the same for every command that takes an OBJECT:
 * "id:N" is the object with ID N (as `list` shows it); anything else is a
 * path. Returns 1 for an ID, 0 for a path, 2 (usage error) for a bad ID.
 */
static int object_id(const char *s, uint64_t *id)
{
	if (strncmp(s, "id:", 3))
		return 0;
	if (vmr_parse_u64(s + 3, id) || !*id)
		return usage_error("bad object ID '%s' (id:N with N from '%s list')", s, prog);
	return 1;
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

/* Undo the octal escapes (\040 for a space) of /proc/self/mountinfo. */
static void unescape(char *s)
{
	char *d = s;

	for (; *s; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d = *s;
		}
	}
	*d = 0;
}

/*
 * Open object @id through a mount of its filesystem that this process
 * sees: netlink knows its device and its path inside the filesystem.
 * Returns the fd, or -1 after printing why not.
 */
static int open_by_id(const char *name, uint64_t id, int flags)
{
	struct vmreset_stats st;
	struct vmreset_obj o;
	struct vmreset_nl *nl;
	char *line = NULL, path[8192];
	size_t cap = 0;
	int err, fd = -1;
	FILE *mi;

	nl = nl_open();
	if (!nl)
		return -1;
	err = vmreset_nl_get(nl, id, &o);
	if (err) {
		nl_error(nl, "cannot find", name, err);
		return -1;
	}
	vmreset_nl_close(nl);
	vmreset_obj_free(&o);
	if (!*o.path) {
		fprintf(stderr, "%s: '%s' has been unlinked; only snapshot, revert, preserve add|del and show take it by ID now\n",
			prog, name);
		return -1;
	}
	mi = fopen("/proc/self/mountinfo", "re");
	if (!mi) {
		op_error("cannot read", "/proc/self/mountinfo", -errno);
		return -1;
	}
	/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER */
	while (fd < 0 && getline(&line, &cap, mi) > 0) {
		char *f[5], *sep = strstr(line, " - "), *save = NULL, *t = line;
		unsigned int maj, min;
		size_t rl;
		int i;

		if (!sep || strncmp(sep + 3, "vmresetfs ", 10))
			continue;
		for (i = 0; i < 5 && (f[i] = strtok_r(t, " ", &save)); i++)
			t = NULL;
		if (i < 5 || sscanf(f[2], "%u:%u", &maj, &min) != 2 ||
		    makedev(maj, min) != makedev(major(o.dev), minor(o.dev)))
			continue;
		unescape(f[3]);
		unescape(f[4]);
		/* A bind mount of a subdirectory shows only what is under it. */
		rl = strcmp(f[3], "/") ? strlen(f[3]) : 0;
		if (strncmp(o.path, f[3], rl) || (o.path[rl] != '/' && o.path[rl]))
			continue;
		if (snprintf(path, sizeof(path), "%s%s", f[4], o.path + rl) >= (int)sizeof(path))
			continue;
		fd = open(path, flags | O_CLOEXEC);
		/* Another object may have taken the name since. */
		if (fd >= 0 && (vmreset_stats(fd, &st) || st.id != id)) {
			close(fd);
			fd = -1;
		}
	}
	free(line);
	fclose(mi);
	if (fd < 0)
		fprintf(stderr, "%s: '%s' (%s on device %u:%u) is on no vmresetfs mount this process sees\n",
			prog, name, o.path, major(o.dev), minor(o.dev));
	return fd;
}

/* An OBJECT (see object_id()) opened; -1 after printing why not, -2 on bad usage. */
static int open_obj(const char *name, int flags)
{
	uint64_t id;
	int fd, err, r = object_id(name, &id);

	if (r == 2)
		return -2;
	if (r)
		return open_by_id(name, id, flags);
	fd = open(name, flags | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		op_error("cannot open", name, err);
		if (err == -ENOENT && !vmr_parse_u64(name, &id))
			fprintf(stderr, "%s: (to name object %s by its ID, write id:%s)\n",
				prog, name, name);
		return -1;
	}
	err = vmreset_check_fd(fd);
	if (err) {
		close(fd);
		fprintf(stderr, "%s: '%s' is not a vmresetfs file\n", prog, name);
		return -1;
	}
	return fd;
}

/* Exit status for an open_obj() failure. */
static int open_failed(int fd)
{
	return fd == -2 ? 2 : 1;
}

static int need_args(int argc, int want, const char *cmd, const char *args)
{
	if (argc == want)
		return 0;
	return usage_error("usage: %s %s %s", prog, cmd, args);
}

/*
 * The one OBJECT argument of @cmd, opened read-only: an fd, or minus the
 * exit status (the error said).
 */
static int obj_arg(int argc, char **argv, const char *cmd)
{
	int fd;

	if (need_args(argc, 2, cmd, "OBJECT"))
		return -2;
	fd = open_obj(argv[1], O_RDONLY);
	return fd < 0 ? -open_failed(fd) : fd;
}

static int cmd_features(int argc, char **argv)
{
	struct vmreset_features f;
	int fd = obj_arg(argc, argv, "features"), err;

	if (fd < 0)
		return -fd;
	err = vmreset_features(fd, &f);
	close(fd);
	if (err)
		return op_error("features of", argv[1], err);
	if (json) {
		struct json_object *o = jobj();

		ju64(o, "api_version", f.api_version);
		ju64(o, "features", f.features);
		ju64(o, "page_size", f.page_size);
		ju64(o, "max_preserved", f.max_preserved);
		ju64(o, "max_list", f.max_list);
		emit(o);
	} else {
		printf("api version %u, features %#" PRIx64 ", page size %u, "
		       "max preserved ranges %u\n", f.api_version,
		       (uint64_t)f.features, f.page_size, f.max_preserved);
	}
	return 0;
}

/*
 * SNAPSHOT (@revert false) or REVERT of @name: by ID over netlink, else
 * through the file. 0 with the counts in *@a (and *@b), or the exit
 * status, the error said.
 */
static int snap_or_revert(const char *name, bool revert, uint64_t flags,
			  uint64_t *a, uint64_t *b)
{
	const char *what = revert ? "revert of" : "snapshot of";
	uint64_t id;
	int fd, err, r = object_id(name, &id);

	if (r == 2)
		return 2;
	if (r) {
		struct vmreset_nl *nl = nl_open();

		if (!nl)
			return 1;
		err = revert ? vmreset_nl_revert(nl, id, flags, a, b)
			     : vmreset_nl_snapshot(nl, id, a);
		if (err)
			return nl_error(nl, what, name, err);
		vmreset_nl_close(nl);
		return 0;
	}
	fd = open_obj(name, O_RDWR);
	if (fd < 0)
		return open_failed(fd);
	err = revert ? vmreset_revert(fd, flags, a, b) : vmreset_snapshot(fd, a);
	close(fd);
	if (err == -ENODATA) {
		fprintf(stderr, "%s: '%s' has no snapshot to revert to\n", prog, name);
		return 1;
	}
	return err ? op_error(what, name, err) : 0;
}

static int cmd_snapshot(int argc, char **argv)
{
	uint64_t dirty;
	int ret;

	if (need_args(argc, 2, "snapshot", "OBJECT"))
		return 2;
	ret = snap_or_revert(argv[1], false, 0, &dirty, NULL);
	if (ret)
		return ret;
	if (json) {
		struct json_object *o = jobj();

		ju64(o, "dirty_pages", dirty);
		emit(o);
	} else {
		printf("%s: snapshot taken (%" PRIu64 " dirty pages folded in)\n",
		       argv[1], dirty);
	}
	return 0;
}

static void print_revert(const char *what, uint64_t reverted, uint64_t kept, bool dry)
{
	if (json) {
		struct json_object *o = jobj();

		ju64(o, "reverted_pages", reverted);
		ju64(o, "preserved_pages", kept);
		jbool(o, "dry_run", dry);
		emit(o);
	} else {
		printf("%s: %s%" PRIu64 " pages reverted, %" PRIu64
		       " preserved pages kept\n", what,
		       dry ? "(dry run) " : "", reverted, kept);
	}
}

static int cmd_revert(int argc, char **argv)
{
	uint64_t flags = 0, reverted, kept;
	int ret;

	if (argc == 3 && !strcmp(argv[1], "--dry-run")) {
		flags = VMRESET_REVERT_F_DRY_RUN;
		argv++;
		argc--;
	}
	if (need_args(argc, 2, "revert", "[--dry-run] OBJECT"))
		return 2;
	ret = snap_or_revert(argv[1], true, flags, &reverted, &kept);
	if (ret)
		return ret;
	print_revert(argv[1], reverted, kept, flags);
	return 0;
}

static struct json_object *json_ranges(const struct vmreset_range *r, size_t n)
{
	struct json_object *a = jarr();

	for (size_t i = 0; i < n; i++) {
		struct json_object *o = jobj();

		ju64(o, "offset", r[i].offset);
		ju64(o, "length", r[i].length);
		json_object_array_add(a, o);
	}
	return a;
}

static void print_ranges(const struct vmreset_range *r, size_t n)
{
	if (json) {
		emit(json_ranges(r, n));
		return;
	}
	for (size_t i = 0; i < n; i++)
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
	int fd, err, idr;

	if (argc == 3 && !strcmp(argv[1], "list")) {
		fd = open_obj(argv[2], O_RDONLY);
		if (fd < 0)
			return open_failed(fd);
		n = vmreset_preserve_list(fd, &r);
		close(fd);
		if (n < 0)
			return op_error("preserved ranges of", argv[2], (int)n);
		print_ranges(r, (size_t)n);
		free(r);
		return 0;
	}
	if (argc != 5 || (strcmp(argv[1], "add") && strcmp(argv[1], "del")))
		return usage_error("usage: %s preserve add|del OBJECT OFFSET LENGTH | preserve list OBJECT",
				   prog);
	if (parse_size_arg("offset", argv[3], &off) || parse_size_arg("length", argv[4], &len))
		return 2;
	idr = object_id(argv[2], &id);
	if (idr == 2)
		return 2;
	if (idr) {
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
		return open_failed(fd);
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
	int fd = obj_arg(argc, argv, "dirty");
	struct vmreset_range *r;
	long n;

	if (fd < 0)
		return -fd;
	n = vmreset_dirty_list(fd, &r);
	close(fd);
	if (n < 0)
		return op_error("dirty list of", argv[1], (int)n);
	print_ranges(r, (size_t)n);
	free(r);
	return 0;
}

static int cmd_stats(int argc, char **argv)
{
	int fd = obj_arg(argc, argv, "stats"), err;
	struct vmreset_stats s;

	if (fd < 0)
		return -fd;
	err = vmreset_stats(fd, &s);
	close(fd);
	if (err)
		return op_error("stats of", argv[1], err);
	if (json) {
		struct json_object *o = jobj();

#define F(x) ju64(o, #x, s.x)
		jbool(o, "snapshot", s.flags & VMRESET_STATS_F_SNAPSHOT);
		F(id);
		F(file_size);
		F(snapshot_size);
		F(resident_pages);
		F(shared_pages);
		F(undo_pages);
		F(dirty_pages);
		F(preserved_ranges);
		F(cow_faults);
		F(faults);
		F(snapshots);
		F(reverts);
		F(reverted_pages);
		F(hot_pages);
		F(hot_promotions);
		F(hot_demotions);
		F(hot_copies);
		F(cached_pages);
		F(cached_hits);
		F(cached_reclaimed);
#undef F
		/* Kept copies are memory too, though size= does not count them. */
		ju64(o, "bytes_in_memory",
		     (uint64_t)(s.resident_pages + s.undo_pages + s.cached_pages) * 4096);
		emit(o);
	} else {
		printf("%s:\n"
		       "  size %" PRIu64 " bytes, snapshot: %s\n"
		       "  pages: %" PRIu64 " resident (%" PRIu64 " shared), %" PRIu64
		       " undo, %" PRIu64 " dirty\n"
		       "  preserved ranges: %" PRIu64 "\n"
		       "  faults: %" PRIu64 ", copy-on-write: %" PRIu64 "\n"
		       "  snapshots: %" PRIu64 ", reverts: %" PRIu64
		       " (%" PRIu64 " pages)\n"
		       "  hot pages: %" PRIu64 " (%" PRIu64 " promoted, %" PRIu64
		       " demoted, %" PRIu64 " copied back)\n"
		       "  kept copies: %" PRIu64 " (%" PRIu64 " first writes took one, %"
		       PRIu64 " reclaimed)\n", argv[1],
		       (uint64_t)s.file_size,
		       s.flags & VMRESET_STATS_F_SNAPSHOT ? "yes" : "no",
		       (uint64_t)s.resident_pages, (uint64_t)s.shared_pages,
		       (uint64_t)s.undo_pages, (uint64_t)s.dirty_pages,
		       (uint64_t)s.preserved_ranges, (uint64_t)s.faults,
		       (uint64_t)s.cow_faults, (uint64_t)s.snapshots,
		       (uint64_t)s.reverts, (uint64_t)s.reverted_pages,
		       (uint64_t)s.hot_pages, (uint64_t)s.hot_promotions,
		       (uint64_t)s.hot_demotions, (uint64_t)s.hot_copies,
		       (uint64_t)s.cached_pages, (uint64_t)s.cached_hits,
		       (uint64_t)s.cached_reclaimed);
	}
	return 0;
}

static int cmd_clone(int argc, char **argv)
{
	int src, dst, err;

	if (need_args(argc, 3, "clone", "OBJECT DST"))
		return 2;
	src = open_obj(argv[1], O_RDONLY);
	if (src < 0)
		return open_failed(src);
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
	unsigned int flags = 0;
	uint64_t size;
	int fd;

	if (argc == 4 && (!strcmp(argv[1], "-f") || !strcmp(argv[1], "--force"))) {
		flags = VMRESET_CREATE_F_EXISTING;
		argv++;
		argc--;
	}
	if (need_args(argc, 3, "create", "[-f|--force] PATH SIZE"))
		return 2;
	if (parse_size_arg("size", argv[2], &size))
		return 2;
	fd = vmreset_create_flags(argv[1], size, flags);
	if (fd == -ENOTTY) {
		fprintf(stderr, "%s: '%s' is not on a vmresetfs mount\n", prog, argv[1]);
		return 1;
	}
	if (fd == -EEXIST) {
		fprintf(stderr, "%s: '%s' exists; --force resizes it to %s (and loses what is past that)\n",
			prog, argv[1], argv[2]);
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

static struct json_object *json_obj(const struct vmreset_obj *o)
{
	struct json_object *j = jobj();

	ju64(j, "id", o->id);
	jstr(j, "path", o->path);
	ju64(j, "dev", o->dev);
	ju64(j, "uid", o->uid);
	ju64(j, "size", o->size);
	jbool(j, "snapshot", o->has_snapshot);
	ju64(j, "resident_pages", o->resident_pages);
	ju64(j, "shared_pages", o->shared_pages);
	ju64(j, "undo_pages", o->undo_pages);
	ju64(j, "dirty_pages", o->dirty_pages);
	ju64(j, "faults", o->faults);
	ju64(j, "cow_faults", o->cow_faults);
	ju64(j, "snapshots", o->snapshots);
	ju64(j, "reverts", o->reverts);
	ju64(j, "reverted_pages", o->reverted_pages);
	ju64(j, "hot_pages", o->hot_pages);
	ju64(j, "hot_promotions", o->hot_promotions);
	ju64(j, "hot_demotions", o->hot_demotions);
	ju64(j, "hot_copies", o->hot_copies);
	ju64(j, "cached_pages", o->cached_pages);
	json_object_object_add(j, "preserved", json_ranges(o->preserved, o->nr_preserved));
	return j;
}

static void print_obj_line(const struct vmreset_obj *o)
{
	printf("%-6" PRIu64 " %12" PRIu64 " %-4s %9" PRIu64 " %9" PRIu64 " %6u  %s\n",
	       o->id, o->size, o->has_snapshot ? "yes" : "no",
	       o->resident_pages, o->dirty_pages, o->uid,
	       *o->path ? o->path : "(unlinked)");
}

static int list_one(const struct vmreset_obj *o, void *arg)
{
	struct json_object *all = arg;

	if (all)
		json_object_array_add(all, json_obj(o));
	else
		print_obj_line(o);
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	struct json_object *all = NULL;
	struct vmreset_nl *nl;
	int err;

	(void)argv;
	if (need_args(argc, 1, "list", ""))
		return 2;
	nl = nl_open();
	if (!nl)
		return 1;
	if (json)
		all = jarr();
	else
		printf("%-6s %12s %-4s %9s %9s %6s  %s\n", "ID", "SIZE", "SNAP",
		       "RESIDENT", "DIRTY", "UID", "PATH");
	err = vmreset_nl_list(nl, list_one, all);
	if (err) {
		json_object_put(all);
		return nl_error(nl, "list of", "objects", err);
	}
	if (all)
		emit(all);
	vmreset_nl_close(nl);
	return 0;
}

static int cmd_show(int argc, char **argv)
{
	struct vmreset_obj o;
	struct vmreset_stats st;
	struct vmreset_nl *nl;
	uint64_t id;
	int err, r;

	if (need_args(argc, 2, "show", "OBJECT"))
		return 2;
	r = object_id(argv[1], &id);
	if (r == 2)
		return 2;
	if (!r) {
		int fd = open_obj(argv[1], O_RDONLY);

		if (fd < 0)
			return open_failed(fd);
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
	if (json) {
		emit(json_obj(&o));
	} else {
		printf("object %" PRIu64 ": %s (dev %u:%u, uid %u)\n"
		       "  size %" PRIu64 " bytes, snapshot: %s\n"
		       "  pages: %" PRIu64 " resident (%" PRIu64 " shared), %" PRIu64 " undo, %" PRIu64
		       " dirty\n  faults: %" PRIu64 ", copy-on-write: %" PRIu64 "\n"
		       "  snapshots: %" PRIu64 ", reverts: %" PRIu64 " (%" PRIu64 " pages)\n"
		       "  preserved ranges: %zu\n", o.id, *o.path ? o.path : "(unlinked)",
		       major(o.dev), minor(o.dev), o.uid, o.size,
		       o.has_snapshot ? "yes" : "no", o.resident_pages, o.shared_pages,
		       o.undo_pages, o.dirty_pages, o.faults, o.cow_faults, o.snapshots,
		       o.reverts, o.reverted_pages, o.nr_preserved);
		print_ranges(o.preserved, o.nr_preserved);
	}
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
	uint64_t *left = arg;

	if (json) {
		struct json_object *o = jobj();

		jstr(o, "event", name);
		ju64(o, "id", ev->id);
		ju64(o, "vm_id", ev->vm_id);
		ju64(o, "pid", ev->pid);
		ju64(o, "dirty_pages", ev->dirty_pages);
		ju64(o, "reverted_pages", ev->reverted_pages);
		ju64(o, "kept_pages", ev->kept_pages);
		emit(o);
	} else if (ev->cmd == VMRESET_CMD_SNAPSHOT_NTF) {
		printf("snapshot id:%" PRIu64 " dirty_pages %" PRIu64 "\n", ev->id, ev->dirty_pages);
	} else if (ev->cmd == VMRESET_CMD_REVERT_NTF) {
		printf("revert id:%" PRIu64 " reverted_pages %" PRIu64 " kept_pages %" PRIu64 "\n",
		       ev->id, ev->reverted_pages, ev->kept_pages);
	} else if (ev->cmd == VMRESET_CMD_VM_ATTACH_NTF || ev->cmd == VMRESET_CMD_VM_DETACH_NTF) {
		printf("%s vm:%u pid %u\n", name, ev->vm_id, ev->pid);
	} else {
		printf("%s id:%" PRIu64 "\n", name, ev->id);
	}
	/* Whoever reads us should see each event as it happens, or we stop. */
	if (fflush(stdout) || ferror(stdout)) {
		write_failed = true;
		return -EIO;
	}
	return *left > 0 && --*left == 0;
}

static int cmd_monitor(int argc, char **argv)
{
	struct vmreset_nl *nl;
	uint64_t count = 0;
	int err;

	if (argc == 3 && !strcmp(argv[1], "--count")) {
		if (vmr_parse_u64(argv[2], &count) || !count)
			return usage_error("bad count '%s' (a number of events, 1 or more)", argv[2]);
	} else if (need_args(argc, 1, "monitor", "[--count N]")) {
		return 2;
	}
	nl = nl_open();
	if (!nl)
		return 1;
	err = vmreset_nl_monitor(nl, print_event, &count);
	if (err && write_failed) {
		vmreset_nl_close(nl);
		return 1;	/* main() says why */
	}
	if (err)
		return nl_error(nl, "monitor", "events", err);
	vmreset_nl_close(nl);
	return 0;
}

static struct json_object *json_vm(const struct vmreset_vm *vm)
{
	struct json_object *j = jobj(), *slots = jarr();

	ju64(j, "id", vm->id);
	ju64(j, "pid", vm->pid);
	ju64(j, "uid", vm->uid);
	ju64(j, "snapshots", vm->snapshots);
	ju64(j, "reverts", vm->reverts);
	ju64(j, "reverted_pages", vm->reverted_pages);
	for (size_t i = 0; i < vm->nr_slots; i++) {
		struct json_object *s = jobj();

		ju64(s, "gpa", vm->slots[i].gpa);
		ju64(s, "size", vm->slots[i].size);
		ju64(s, "obj_id", vm->slots[i].obj_id);
		ju64(s, "offset", vm->slots[i].offset);
		json_object_array_add(slots, s);
	}
	json_object_object_add(j, "slots", slots);
	return j;
}

static int print_vm(const struct vmreset_vm *vm, void *arg)
{
	struct json_object *all = arg;

	if (all) {
		json_object_array_add(all, json_vm(vm));
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
	struct json_object *all = NULL;
	struct vmreset_nl *nl;
	uint32_t id, pid, fd;
	int err = 0, vfd;

	if (!strcmp(sub, "list") && argc == 2) {
		nl = nl_open();
		if (!nl)
			return 1;
		if (json)
			all = jarr();
		err = vmreset_nl_vm_list(nl, print_vm, all);
		if (err) {
			json_object_put(all);
			return nl_error(nl, "list of", "VMs", err);
		}
		if (all)
			emit(all);
		vmreset_nl_close(nl);
		return 0;
	}
	if (!strcmp(sub, "attach") && argc == 4) {
		if (parse_u32_arg("PID", argv[2], &pid) || parse_u32_arg("FD", argv[3], &fd))
			return 2;
		vfd = grab_fd(pid, fd);
		if (vfd < 0)
			return op_error("cannot get fd of", argv[2], vfd);
		nl = nl_open();
		if (!nl) {
			close(vfd);
			return 1;
		}
		err = vmreset_nl_vm_attach(nl, vfd, &id);
		close(vfd);
		if (err)
			return nl_error(nl, "attach of VM fd", argv[3], err);
		vmreset_nl_close(nl);
		if (json) {
			struct json_object *o = jobj();

			ju64(o, "id", id);
			emit(o);
		} else {
			printf("vm %u attached\n", id);
		}
		return 0;
	}
	if (!strcmp(sub, "revert") && argc == 4 && !strcmp(argv[2], "--dry-run")) {
		flags = VMRESET_REVERT_F_DRY_RUN;
		argv++;
		argc--;
	}
	if ((!strcmp(sub, "detach") || !strcmp(sub, "snapshot") ||
	     !strcmp(sub, "revert")) && argc == 3) {
		if (parse_u32_arg("VM ID", argv[2], &id))
			return 2;
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
		if (sub[0] == 's' && json) {
			struct json_object *o = jobj();

			ju64(o, "dirty_pages", a);
			emit(o);
		} else if (sub[0] == 's') {
			printf("vm %s: snapshot taken (%" PRIu64 " dirty pages folded in)\n",
			       argv[2], a);
		} else if (sub[0] == 'r') {
			char what[32];

			snprintf(what, sizeof(what), "vm %u", id);
			print_revert(what, a, b, flags);
		}
		return 0;
	}
	if (!strcmp(sub, "preserve") && argc == 6 &&
	    (!strcmp(argv[2], "add") || !strcmp(argv[2], "del"))) {
		if (parse_u32_arg("VM ID", argv[3], &id) ||
		    parse_size_arg("guest-physical address", argv[4], &gpa) ||
		    parse_size_arg("length", argv[5], &len))
			return 2;
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

int cmd_hot(int argc, char **argv);	/* hot.c */

static const struct cmd cmds[] = {
	{ "mount", cmd_mount, "DIR [OPTIONS]", "mount vmresetfs (options: size=, nr_inodes=, mode=, uid=, gid=)" },
	{ "create", cmd_create, "[-f|--force] PATH SIZE", "create a memory object of SIZE bytes (refuses an existing PATH unless -f)" },
	{ "snapshot", cmd_snapshot, "OBJECT", "make the current content the revert point" },
	{ "revert", cmd_revert, "[--dry-run] OBJECT", "give every page written since the snapshot its content back" },
	{ "preserve", cmd_preserve, "add|del OBJECT OFF LEN | list OBJECT", "ranges that revert leaves alone" },
	{ "hot", cmd_hot, "add|del|set|list|config ...", "pages restored in place at every revert (hot help)" },
	{ "dirty", cmd_dirty, "OBJECT", "ranges written since the snapshot" },
	{ "stats", cmd_stats, "OBJECT", "pages, faults, snapshots and reverts of an object" },
	{ "clone", cmd_clone, "OBJECT DST", "create the file DST as a copy-on-write clone of OBJECT" },
	{ "list", cmd_list, "", "all objects you may manage (netlink)" },
	{ "show", cmd_show, "OBJECT", "one object in detail (netlink)" },
	{ "vm", cmd_vm, "list|attach PID FD|detach|snapshot|revert|preserve ...", "KVM VMs: attach by another process's fd, act on all their memory" },
	{ "monitor", cmd_monitor, "[--count N]", "print snapshot, revert and removal events" },
	{ "features", cmd_features, "OBJECT", "API version and features of the kernel module" },
	{ "help", cmd_help, "[COMMAND]", "show this help" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: %s [-j|--json] COMMAND [ARGS]\n\nCommands:\n", prog);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-9s %-38s %s\n", cmds[i].name, cmds[i].args, cmds[i].help);
	fprintf(f, "\nAn OBJECT is a path of a file on vmresetfs, or id:N for the object with\n"
		"ID N (see list). Sizes and offsets: bytes, 0x for hex, suffixes k, M, G, T.\n"
		"%s COMMAND --help shows one command. Exit status: 0 ok, "
		"1 operation failed, 2 usage error.\n", prog);
}

static int cmd_help(int argc, char **argv)
{
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

static int run(int argc, char **argv)
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

int main(int argc, char **argv)
{
	int ret = run(argc, argv);
	/*
	 * What we printed is the result: if it did not all get out (a full
	 * disk, a closed pipe), the command failed.
	 */
	bool failed = ferror(stdout);

	errno = 0;
	if (fclose(stdout) || failed || write_failed) {
		fprintf(stderr, "%s: cannot write the output: %s\n", prog,
			errno ? strerror(errno) : "write error");
		return 1;
	}
	return ret;
}
