// SPDX-License-Identifier: LGPL-2.1-or-later OR MIT
/*
 * libvmreset: the ioctl fast path and file helpers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/fs.h>
#include "vmreset.h"

#define VMR_EXPORT __attribute__((visibility("default")))

static int neg_errno(int ret)
{
	return ret < 0 ? -errno : ret;
}

VMR_EXPORT const char *vmreset_version(void)
{
	return VMRESET_LIB_VERSION;
}

VMR_EXPORT int vmreset_mount(const char *dir, const char *opts)
{
	return neg_errno(mount("vmresetfs", dir, "vmresetfs", 0, opts));
}

VMR_EXPORT int vmreset_check_fd(int fd)
{
	struct statfs s;

	if (fstatfs(fd, &s))
		return -errno;
	return s.f_type == VMRESET_FS_MAGIC ? 0 : -ENOTTY;
}

VMR_EXPORT int vmreset_create_flags(const char *path, uint64_t size, unsigned int flags)
{
	bool existing = flags & VMRESET_CREATE_F_EXISTING;
	int fd, err;

	if (flags & ~VMRESET_CREATE_F_EXISTING)
		return -EINVAL;
	if (size > INT64_MAX)
		return -EFBIG;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (existing ? 0 : O_EXCL), 0600);
	if (fd < 0 && errno == EEXIST)
		return -EEXIST;
	if (fd < 0)
		return -errno;
	err = vmreset_check_fd(fd);
	if (!err && ftruncate(fd, (off_t)size))
		err = -errno;
	if (err) {
		close(fd);
		/* Not ours to remove if it was there before. */
		if (!existing)
			unlink(path);
		return err;
	}
	return fd;
}

VMR_EXPORT int vmreset_create(const char *path, uint64_t size)
{
	return vmreset_create_flags(path, size, 0);
}

VMR_EXPORT int vmreset_features(int fd, struct vmreset_features *f)
{
	memset(f, 0, sizeof(*f));
	f->size = sizeof(*f);
	return neg_errno(ioctl(fd, VMRESET_IOC_FEATURES, f));
}

VMR_EXPORT int vmreset_snapshot(int fd, uint64_t *dirty_pages)
{
	struct vmreset_snapshot s = { 0 };

	if (ioctl(fd, VMRESET_IOC_SNAPSHOT, &s))
		return -errno;
	if (dirty_pages)
		*dirty_pages = s.dirty_pages;
	return 0;
}

VMR_EXPORT int vmreset_revert(int fd, uint64_t flags, uint64_t *reverted_pages,
			      uint64_t *preserved_pages)
{
	struct vmreset_revert r = { .flags = flags };

	if (ioctl(fd, VMRESET_IOC_REVERT, &r))
		return -errno;
	if (reverted_pages)
		*reverted_pages = r.reverted_pages;
	if (preserved_pages)
		*preserved_pages = r.preserved_pages;
	return 0;
}

static int preserve(int fd, uint32_t op, uint64_t offset, uint64_t length)
{
	struct vmreset_preserve p = {
		.op = op, .offset = offset, .length = length,
	};

	return neg_errno(ioctl(fd, VMRESET_IOC_PRESERVE, &p));
}

VMR_EXPORT int vmreset_preserve_add(int fd, uint64_t offset, uint64_t length)
{
	return preserve(fd, VMRESET_PRESERVE_ADD, offset, length);
}

VMR_EXPORT int vmreset_preserve_del(int fd, uint64_t offset, uint64_t length)
{
	return preserve(fd, VMRESET_PRESERVE_DEL, offset, length);
}

static long list_flags(int fd, unsigned long cmd, uint32_t flags,
		       struct vmreset_range **out)
{
	struct vmreset_range_list l = { .flags = flags };
	struct vmreset_range *r = NULL, *nr;
	size_t n = 0, cap = 0;

	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			nr = realloc(r, cap * sizeof(*r));
			if (!nr) {
				free(r);
				return -ENOMEM;
			}
			r = nr;
		}
		l.ranges = (uintptr_t)(r + n);
		l.nr = (uint32_t)(cap - n < VMRESET_MAX_LIST ? cap - n : VMRESET_MAX_LIST);
		if (ioctl(fd, cmd, &l)) {
			int err = -errno;

			free(r);
			return err;
		}
		n += l.nr;
	} while (l.cursor != VMRESET_CURSOR_END);
	*out = r;
	return (long)n;
}

static long list(int fd, unsigned long cmd, struct vmreset_range **out)
{
	return list_flags(fd, cmd, 0, out);
}

VMR_EXPORT long vmreset_preserve_list(int fd, struct vmreset_range **ranges)
{
	return list(fd, VMRESET_IOC_PRESERVE_LIST, ranges);
}

VMR_EXPORT long vmreset_dirty_list(int fd, struct vmreset_range **ranges)
{
	return list(fd, VMRESET_IOC_DIRTY, ranges);
}

VMR_EXPORT int vmreset_stats(int fd, struct vmreset_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return neg_errno(ioctl(fd, VMRESET_IOC_STATS, st));
}

VMR_EXPORT int vmreset_clone(int dst_fd, int src_fd)
{
	return neg_errno(ioctl(dst_fd, FICLONE, src_fd));
}

VMR_EXPORT int vmreset_hot(int fd, uint32_t op, const struct vmreset_range *ranges,
			   uint32_t nr)
{
	struct vmreset_hot h = {
		.op = op, .nr = nr, .ranges = (uintptr_t)ranges,
	};

	return neg_errno(ioctl(fd, VMRESET_IOC_HOT, &h));
}

VMR_EXPORT int vmreset_hot_add(int fd, uint64_t offset, uint64_t length)
{
	struct vmreset_range r = { offset, length };

	return vmreset_hot(fd, VMRESET_HOT_ADD, &r, 1);
}

VMR_EXPORT int vmreset_hot_del(int fd, uint64_t offset, uint64_t length)
{
	struct vmreset_range r = { offset, length };

	return vmreset_hot(fd, VMRESET_HOT_DEL, &r, 1);
}

VMR_EXPORT int vmreset_hot_set(int fd, const struct vmreset_range *ranges,
			       uint32_t nr)
{
	return vmreset_hot(fd, VMRESET_HOT_SET, ranges, nr);
}

VMR_EXPORT long vmreset_hot_list(int fd, int explicit_set,
				 struct vmreset_range **ranges)
{
	return list_flags(fd, VMRESET_IOC_HOT_LIST,
			  explicit_set ? VMRESET_LIST_F_EXPLICIT : 0, ranges);
}

VMR_EXPORT int vmreset_hot_config(int fd, struct vmreset_hot_config *c)
{
	return neg_errno(ioctl(fd, VMRESET_IOC_HOT_CONFIG, c));
}
