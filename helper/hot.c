// SPDX-License-Identifier: GPL-2.0
/*
 * vmresetctl hot: the hot set of a memory object (pages restored in place
 * at every revert, see vmresetctl(8) and the UAPI header).
 *
 *   hot add|del OBJECT OFFSET LENGTH
 *   hot set OBJECT [OFFSET:LENGTH...]   (or "-": ranges from stdin)
 *   hot list [--explicit] FILE              one "OFFSET LENGTH" a line
 *   hot config OBJECT [mode=off|explicit|learn] [max=PAGES] [learn=K/N] [kept=PAGES]
 *
 * "hot list A | vmresetctl hot set B -" applies one file's hot set to
 * another. Exit status as vmresetctl: 0 done, 1 failed, 2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "util.h"
#include "vmreset.h"

int cmd_hot(int argc, char **argv);

static const char hot_usage[] =
	"usage: vmresetctl hot add|del OBJECT OFFSET LENGTH\n"
	"       vmresetctl hot set OBJECT [OFFSET:LENGTH...|-]\n"
	"       vmresetctl hot list [--explicit] FILE\n"
	"       vmresetctl hot config OBJECT [mode=off|explicit|learn] [max=PAGES] [learn=K/N] [kept=PAGES]\n";

static int hot_usage_error(const char *what, const char *arg)
{
	if (what)
		fprintf(stderr, "vmresetctl: %s '%s'\n", what, arg);
	fputs(hot_usage, stderr);
	return 2;
}

static int hot_fail(const char *what, const char *obj, int err,
		    struct vmreset_nl *nl)
{
	const char *msg = nl ? vmreset_nl_errmsg(nl) : "";

	fprintf(stderr, "vmresetctl: %s '%s': %s%s%s%s\n", what, obj,
		strerror(-err), *msg ? " (" : "", msg, *msg ? ")" : "");
	if (err == -ENOSPC)
		fprintf(stderr, "vmresetctl: the hot set would exceed the file's bound (see 'hot config')\n");
	return 1;
}

/* A byte count, as every vmresetctl command takes one (util.h). */
static int hot_num(const char *s, uint64_t *out)
{
	return vmr_parse_size(s, out) ? -1 : 0;
}

/* "id:N" names an object by ID (netlink); anything else is a file. */
static bool hot_id(const char *s, uint64_t *id)
{
	if (strncmp(s, "id:", 3))
		return false;
	return !vmr_parse_u64(s + 3, id) && *id;
}

static int hot_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "vmresetctl: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	if (vmreset_check_fd(fd)) {
		fprintf(stderr, "vmresetctl: '%s' is not a vmresetfs file\n", path);
		close(fd);
		return -1;
	}
	return fd;
}

static struct vmreset_nl *hot_nl(void)
{
	int err = 0;
	struct vmreset_nl *nl = vmreset_nl_open(&err);

	if (!nl)
		fprintf(stderr, "vmresetctl: netlink: %s%s\n", strerror(-err),
			err == -ENOENT ? " (is the module loaded?)" : "");
	return nl;
}

/* Apply @op with @r to FILE or id:ID. */
static int hot_apply(const char *obj, uint32_t op, struct vmreset_range *r,
		     uint32_t nr)
{
	struct vmreset_nl *nl;
	uint64_t id;
	int fd, err;

	if (hot_id(obj, &id)) {
		nl = hot_nl();
		if (!nl)
			return 1;
		err = vmreset_nl_hot(nl, id, op, r, nr);
		if (err)
			err = hot_fail("hot set of", obj, err, nl);
		vmreset_nl_close(nl);
		return err;
	}
	fd = hot_open(obj, O_RDWR);
	if (fd < 0)
		return 1;
	err = vmreset_hot(fd, op, r, nr);
	close(fd);
	return err ? hot_fail("hot set of", obj, err, NULL) : 0;
}

/* Ranges as OFFSET:LENGTH arguments, or "-": "OFFSET LENGTH" lines on stdin. */
static int hot_read_ranges(int argc, char **argv, struct vmreset_range **out,
			   uint32_t *nr)
{
	struct vmreset_range *r = NULL, *n;
	size_t cap = 0, cnt = 0;
	char *line = NULL;
	size_t lsz = 0;
	bool from_stdin = argc == 1 && !strcmp(argv[0], "-");
	int i = 0, ret = 0;

	for (;;) {
		char buf[128], *sep;
		uint64_t off, len;

		if (from_stdin) {
			if (getline(&line, &lsz, stdin) < 0)
				break;
			line[strcspn(line, "\n")] = 0;
			if (!*line || *line == '#')
				continue;
			snprintf(buf, sizeof(buf), "%s", line);
			sep = strpbrk(buf, " \t:");
		} else {
			if (i == argc)
				break;
			snprintf(buf, sizeof(buf), "%s", argv[i++]);
			sep = strchr(buf, ':');
		}
		if (!sep) {
			ret = hot_usage_error("bad range (want OFFSET:LENGTH)", buf);
			goto out;
		}
		*sep++ = 0;
		sep += strspn(sep, " \t");
		if (hot_num(buf, &off) || hot_num(sep, &len)) {
			ret = hot_usage_error("bad range", buf);
			goto out;
		}
		if (cnt == cap) {
			cap = cap ? cap * 2 : 64;
			n = realloc(r, cap * sizeof(*r));
			if (!n) {
				ret = 1;
				goto out;
			}
			r = n;
		}
		r[cnt].offset = off;
		r[cnt].length = len;
		cnt++;
	}
	if (cnt > VMRESET_MAX_LIST) {
		fprintf(stderr, "vmresetctl: more than %d ranges\n", VMRESET_MAX_LIST);
		ret = 1;
	}
out:
	free(line);
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	*nr = (uint32_t)cnt;
	return 0;
}

static const char *const hot_modes[] = { "off", "explicit", "learn" };

static int hot_config(int argc, char **argv)
{
	struct vmreset_hot_config c = { 0 };
	struct vmreset_nl *nl = NULL;
	const char *obj = argv[0];
	uint64_t id, v;
	int fd = -1, err;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char kbuf[16], *slash;
		uint32_t k, n;

		if (!strncmp(a, "mode=", 5)) {
			unsigned int m;

			for (m = 0; m < 3 && strcmp(a + 5, hot_modes[m]); m++)
				;
			if (m == 3)
				return hot_usage_error("unknown hot mode", a + 5);
			c.flags |= VMRESET_HOT_CFG_MODE;
			c.mode = m;
		} else if (!strncmp(a, "max=", 4)) {
			if (vmr_parse_u64(a + 4, &v))
				return hot_usage_error("bad page count", a + 4);
			c.flags |= VMRESET_HOT_CFG_MAX;
			c.max_pages = v;
		} else if (!strncmp(a, "learn=", 6)) {
			snprintf(kbuf, sizeof(kbuf), "%s", a + 6);
			slash = strchr(kbuf, '/');
			if (!slash || strlen(a + 6) >= sizeof(kbuf))
				return hot_usage_error("bad learn=K/N", a + 6);
			*slash = 0;
			if (vmr_parse_u32(kbuf, &k) || vmr_parse_u32(slash + 1, &n))
				return hot_usage_error("bad learn=K/N", a + 6);
			c.flags |= VMRESET_HOT_CFG_LEARN;
			c.learn_k = k;
			c.learn_n = n;
		} else if (!strncmp(a, "kept=", 5)) {
			if (vmr_parse_u64(a + 5, &v))
				return hot_usage_error("bad page count", a + 5);
			c.flags |= VMRESET_HOT_CFG_KEPT;
			c.kept_max = v;
		} else {
			return hot_usage_error("unknown setting", a);
		}
	}
	if (hot_id(obj, &id)) {
		nl = hot_nl();
		if (!nl)
			return 1;
		err = vmreset_nl_hot_config(nl, id, &c);
	} else {
		fd = hot_open(obj, c.flags ? O_RDWR : O_RDONLY);
		if (fd < 0)
			return 1;
		err = vmreset_hot_config(fd, &c);
		close(fd);
	}
	if (err) {
		err = hot_fail("hot config of", obj, err, nl);
		vmreset_nl_close(nl);
		return err;
	}
	vmreset_nl_close(nl);
	printf("mode %s\nmax pages %" PRIu64 "\nlearn %u/%u\nexplicit pages %" PRIu64
	       "\nhot pages %" PRIu64 "\nmount: %" PRIu64 " of %" PRIu64 " hot pages\n"
	       "kept max %" PRIu64 "\nkept pages %" PRIu64 "\n",
	       c.mode < 3 ? hot_modes[c.mode] : "?", (uint64_t)c.max_pages,
	       c.learn_k, c.learn_n, (uint64_t)c.explicit_pages,
	       (uint64_t)c.hot_pages, (uint64_t)c.mount_hot_pages,
	       (uint64_t)c.mount_max_pages, (uint64_t)c.kept_max,
	       (uint64_t)c.kept_pages);
	return 0;
}

int cmd_hot(int argc, char **argv)
{
	struct vmreset_range *r = NULL, one;
	const char *sub = argc > 1 ? argv[1] : "";
	uint32_t nr;
	long n;
	int fd, ret;

	if (!strcmp(sub, "add") || !strcmp(sub, "del")) {
		if (argc != 5)
			return hot_usage_error(NULL, NULL);
		uint64_t off, len;

		if (hot_num(argv[3], &off))
			return hot_usage_error("bad offset", argv[3]);
		if (hot_num(argv[4], &len))
			return hot_usage_error("bad length", argv[4]);
		one.offset = off;
		one.length = len;
		return hot_apply(argv[2], sub[0] == 'a' ? VMRESET_HOT_ADD : VMRESET_HOT_DEL,
				 &one, 1);
	}
	if (!strcmp(sub, "set")) {
		if (argc < 3)
			return hot_usage_error(NULL, NULL);
		ret = hot_read_ranges(argc - 3, argv + 3, &r, &nr);
		if (ret)
			return ret;
		ret = hot_apply(argv[2], VMRESET_HOT_SET, r, nr);
		free(r);
		return ret;
	}
	if (!strcmp(sub, "list")) {
		bool explicit_set = argc == 4 && !strcmp(argv[2], "--explicit");

		if (argc != 3 && !explicit_set)
			return hot_usage_error(NULL, NULL);
		fd = hot_open(argv[argc - 1], O_RDONLY);
		if (fd < 0)
			return 1;
		n = vmreset_hot_list(fd, explicit_set, &r);
		close(fd);
		if (n < 0)
			return hot_fail("hot pages of", argv[argc - 1], (int)n, NULL);
		for (long i = 0; i < n; i++)
			printf("%#" PRIx64 " %#" PRIx64 "\n", (uint64_t)r[i].offset,
			       (uint64_t)r[i].length);
		free(r);
		return 0;
	}
	if (!strcmp(sub, "config")) {
		if (argc < 3)
			return hot_usage_error(NULL, NULL);
		return hot_config(argc - 2, argv + 2);
	}
	if (!strcmp(sub, "help") || !strcmp(sub, "--help")) {
		fputs(hot_usage, stdout);
		return 0;
	}
	return hot_usage_error(*sub ? "unknown hot command" : NULL, sub);
}
