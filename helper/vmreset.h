/* SPDX-License-Identifier: LGPL-2.1-or-later OR MIT */
/*
 * libvmreset: the C library for VMMs and tools that use vmreset.
 *
 * Functions return 0 (or a count) on success and a negative errno on
 * failure; they never print. Link with `pkg-config --libs vmreset`.
 */
#ifndef LIBVMRESET_H
#define LIBVMRESET_H

#include <stddef.h>
#include <stdint.h>
#include <linux/vmreset.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *vmreset_version(void);

/* Mount vmresetfs at @dir with @opts ("size=8G,mode=1777", or NULL). */
int vmreset_mount(const char *dir, const char *opts);

/*
 * Create (or open) a memory object at @path with @size bytes and return
 * its fd (O_RDWR | O_CLOEXEC). Fails with -ENOTTY if @path is not on
 * vmresetfs.
 */
int vmreset_create(const char *path, uint64_t size);

/* 0 if @fd is a vmresetfs file, else a negative errno (-ENOTTY). */
int vmreset_check_fd(int fd);

int vmreset_features(int fd, struct vmreset_features *f);
int vmreset_snapshot(int fd, uint64_t *dirty_pages);
/* @flags: VMRESET_REVERT_F_*; counts may be NULL. */
int vmreset_revert(int fd, uint64_t flags, uint64_t *reverted_pages,
		   uint64_t *preserved_pages);
int vmreset_preserve_add(int fd, uint64_t offset, uint64_t length);
int vmreset_preserve_del(int fd, uint64_t offset, uint64_t length);

/*
 * The whole preserved or dirty list in a malloc()ed array (free() it);
 * returns the number of ranges.
 */
long vmreset_preserve_list(int fd, struct vmreset_range **ranges);
long vmreset_dirty_list(int fd, struct vmreset_range **ranges);

int vmreset_stats(int fd, struct vmreset_stats *st);

/* Make @dst_fd a copy-on-write clone of all of @src_fd (FICLONE). */
int vmreset_clone(int dst_fd, int src_fd);

#ifdef __cplusplus
}
#endif
#endif /* LIBVMRESET_H */
