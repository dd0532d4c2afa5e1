// SPDX-License-Identifier: GPL-2.0
/*
 * Cloned VMs: the ready snapshot as three files on vmresetfs (PREFIX.ram,
 * PREFIX.disk, PREFIX.state), and VMs started from reflink clones of them.
 * A clone shares every page with its source until one of them writes it,
 * so N VMs started from one snapshot cost the pages their requests dirty,
 * not N copies of guest RAM (docs/vmm.md, "Clones").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include "vmm.h"
#include "vmreset.h"

static int path_of(struct vmm *vm, char *buf, size_t len, const char *prefix, const char *ext)
{
	if ((size_t)snprintf(buf, len, "%s.%s", prefix, ext) >= len)
		return vmm_fail(vm, ENAMETOOLONG, "snapshot prefix '%s' is too long", prefix);
	return 0;
}

/* A new file @path on vmresetfs sharing every page of @src. */
static int export_file(struct vmm *vm, const char *path, int src)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600), ret = 0;

	if (fd < 0)
		return vmm_fail(vm, errno, "%s: %s", path, strerror(errno));
	if (ioctl(fd, FICLONE, src))
		ret = vmm_fail(vm, errno, "%s: FICLONE: %s%s", path, strerror(errno),
			       errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL ?
			       " (the prefix must be on the vmresetfs mount of the VM's --dir)" : "");
	close(fd);
	if (ret)
		unlink(path);
	return ret;
}

int vmm_export(struct vmm *vm, const char *prefix)
{
	char ram[4096], disk[4096], state[4096], tmp[4200];
	int fd, ret;

	if (!vm->snapshotted || !vm->snap)
		return vmm_fail(vm, EINVAL, "no ready snapshot to export (boot first)");
	if ((ret = path_of(vm, ram, sizeof(ram), prefix, "ram")) ||
	    (ret = path_of(vm, disk, sizeof(disk), prefix, "disk")) ||
	    (ret = path_of(vm, state, sizeof(state), prefix, "state")))
		return ret;
	/* Between requests RAM and disk hold the ready snapshot: reset after each. */
	ret = export_file(vm, ram, vm->ram_fd);
	if (ret)
		return ret;
	if (vm->disk_fd >= 0) {
		ret = export_file(vm, disk, vm->disk_fd);
		if (ret) {
			unlink(ram);
			return ret;
		}
	}
	/* The state last, under its name only when whole: it marks a snapshot complete. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", state);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, vm->snap, sizeof(*vm->snap)) != (ssize_t)sizeof(*vm->snap) ||
	    fsync(fd) || rename(tmp, state))
		ret = vmm_fail(vm, errno ? errno : EIO, "%s: %s", state, strerror(errno ? errno : EIO));
	if (fd >= 0)
		close(fd);
	if (ret) {
		unlink(tmp);
		unlink(ram);
		if (vm->disk_fd >= 0)
			unlink(disk);
	}
	return ret;
}

/* Makes @dst (size @size) a clone of the file @path, which must be as big. */
static int clone_into(struct vmm *vm, int dst, uint64_t size, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return vmm_fail(vm, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st))
		ret = vmm_fail(vm, errno, "%s: %s", path, strerror(errno));
	else if ((uint64_t)st.st_size != size)
		ret = vmm_fail(vm, EINVAL, "%s: %llu bytes, this VM's is %llu (same --mem and --disk "
			       "as the VM it came from)", path, (unsigned long long)st.st_size,
			       (unsigned long long)size);
	else if (ioctl(dst, FICLONE, fd))
		ret = vmm_fail(vm, errno, "%s: FICLONE: %s%s", path, strerror(errno),
			       errno == EXDEV ? " (not on the vmresetfs mount of --dir)" : "");
	close(fd);
	return ret;
}

int vmm_clone_from(struct vmm *vm, const char *prefix)
{
	char ram[4096], disk[4096], state[4096];
	struct vmm_state *st;
	ssize_t n;
	int fd, ret;

	if (vm->booted || vm->snapshotted)
		return vmm_fail(vm, EBUSY, "the VM already ran: start a clone in a new one");
	if ((ret = path_of(vm, ram, sizeof(ram), prefix, "ram")) ||
	    (ret = path_of(vm, disk, sizeof(disk), prefix, "disk")) ||
	    (ret = path_of(vm, state, sizeof(state), prefix, "state")))
		return ret;
	st = malloc(sizeof(*st));
	if (!st)
		return vmm_fail(vm, ENOMEM, "out of memory");
	fd = open(state, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = vmm_fail(vm, errno, "%s: %s", state, strerror(errno));
		goto err;
	}
	n = read(fd, st, sizeof(*st));
	/* One byte more than the struct: a state of another build is refused whole. */
	if (n == (ssize_t)sizeof(*st)) {
		char extra;

		if (read(fd, &extra, 1) != 0)
			n = -1;
	}
	close(fd);
	if (n != (ssize_t)sizeof(*st) || st->magic != VMM_STATE_MAGIC || st->size != sizeof(*st)) {
		ret = vmm_fail(vm, EINVAL, "%s: not a VM state of this VMM build", state);
		goto err;
	}
	if (st->mbox_gpa != vm->mbox_gpa || st->keep_gpa != vm->keep_gpa ||
	    st->keep_size != vm->o.keep_size) {
		ret = vmm_fail(vm, EINVAL, "%s: a VM with another layout (same --mem and --keep as "
			       "the VM it came from)", state);
		goto err;
	}
	ret = clone_into(vm, vm->ram_fd, vm->mem_size, ram);
	if (!ret && vm->disk_fd >= 0)
		ret = clone_into(vm, vm->disk_fd, vm->disk_size, disk);
	/* Preserved ranges belong to a file, not to its content: the agent's again. */
	if (!ret && st->keep_size) {
		ret = vmreset_preserve_add(vm->ram_fd, st->keep_gpa, st->keep_size);
		if (ret)
			ret = vmm_fail(vm, -ret, "PRESERVE_ADD of the kept range: %s", strerror(-ret));
	}
	if (ret)
		goto err;
	return vmm_adopt_state(vm, st);
err:
	free(st);
	return ret;
}
