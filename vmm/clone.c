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

/*
 * After the struct in PREFIX.state: the ranges preserved on the RAM and
 * disk files at export (the guest's declared ones, the agent's --keep,
 * any a tool added). A preserved range belongs to a file, not to its
 * content, so FICLONE does not carry them; a state without this record
 * (exported before it existed) means none but --keep.
 */
#define VMM_RANGES_MAGIC 0x50524d56u	/* "VMRP" */
struct vmm_ranges_hdr {
	uint32_t magic, nram, ndisk, zero;
};

/* The record: header, RAM ranges, disk ranges (malloc()ed, *@len bytes). */
static int ranges_record(struct vmm *vm, void **out, size_t *len)
{
	struct vmreset_range *ram = NULL, *disk = NULL;
	struct vmm_ranges_hdr h = { .magic = VMM_RANGES_MAGIC };
	long nram, ndisk = 0;
	char *buf;

	nram = vmreset_preserve_list(vm->ram_fd, &ram);
	if (nram < 0)
		return vmm_fail(vm, (int)-nram, "the preserved ranges of guest RAM: %s",
				strerror((int)-nram));
	if (vm->disk_fd >= 0) {
		ndisk = vmreset_preserve_list(vm->disk_fd, &disk);
		if (ndisk < 0) {
			free(ram);
			return vmm_fail(vm, (int)-ndisk, "the preserved ranges of the disk: %s",
					strerror((int)-ndisk));
		}
	}
	h.nram = (uint32_t)nram;
	h.ndisk = (uint32_t)ndisk;
	*len = sizeof(h) + (size_t)(nram + ndisk) * sizeof(*ram);
	buf = malloc(*len);
	if (buf) {
		memcpy(buf, &h, sizeof(h));
		if (nram)
			memcpy(buf + sizeof(h), ram, nram * sizeof(*ram));
		if (ndisk)
			memcpy(buf + sizeof(h) + nram * sizeof(*ram), disk, ndisk * sizeof(*disk));
	}
	free(ram);
	free(disk);
	if (!buf)
		return vmm_fail(vm, ENOMEM, "out of memory");
	*out = buf;
	return 0;
}

static bool write_all(int fd, const void *buf, size_t len)
{
	return write(fd, buf, len) == (ssize_t)len;
}

int vmm_export(struct vmm *vm, const char *prefix)
{
	char ram[4096], disk[4096], state[4096], tmp[4200];
	size_t rlen = 0;
	void *rec = NULL;
	int fd, ret;

	if (!vm->snapshotted || !vm->snap)
		return vmm_fail(vm, EINVAL, "no ready snapshot to export (boot first)");
	if ((ret = path_of(vm, ram, sizeof(ram), prefix, "ram")) ||
	    (ret = path_of(vm, disk, sizeof(disk), prefix, "disk")) ||
	    (ret = path_of(vm, state, sizeof(state), prefix, "state")))
		return ret;
	/*
	 * Between requests RAM and disk hold the ready snapshot (reset after
	 * each) and nothing changes their preserved ranges (a drain comes
	 * only with a reset, in this thread).
	 */
	ret = ranges_record(vm, &rec, &rlen);
	if (ret)
		return ret;
	ret = export_file(vm, ram, vm->ram_fd);
	if (ret) {
		free(rec);
		return ret;
	}
	if (vm->disk_fd >= 0) {
		ret = export_file(vm, disk, vm->disk_fd);
		if (ret) {
			free(rec);
			unlink(ram);
			return ret;
		}
	}
	/* The state last, under its name only when whole: it marks a snapshot complete. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", state);
	errno = 0;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !write_all(fd, vm->snap, sizeof(*vm->snap)) || !write_all(fd, rec, rlen) ||
	    fsync(fd) || rename(tmp, state))
		ret = vmm_fail(vm, errno ? errno : EIO, "%s: %s", state, strerror(errno ? errno : EIO));
	free(rec);
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

/*
 * The ranges record after the struct, if any: *@r (malloc()ed, NULL for
 * none) holds h->nram RAM ranges, then h->ndisk disk ones. Anything else
 * after the struct is another build's state.
 */
static int read_record(int fd, struct vmm_ranges_hdr *h, struct vmreset_range **r)
{
	size_t len;
	ssize_t n;
	char extra;

	*r = NULL;
	n = read(fd, h, sizeof(*h));
	if (n == 0) {
		memset(h, 0, sizeof(*h));
		return 0;
	}
	if (n != (ssize_t)sizeof(*h) || h->magic != VMM_RANGES_MAGIC || h->zero ||
	    h->nram > VMRESET_MAX_PRESERVED || h->ndisk > VMRESET_MAX_PRESERVED)
		return -1;
	len = ((size_t)h->nram + h->ndisk) * sizeof(**r);
	*r = malloc(len + 1);
	if (!*r)
		return -1;
	if ((len && read(fd, *r, len) != (ssize_t)len) || read(fd, &extra, 1) != 0) {
		free(*r);
		*r = NULL;
		return -1;
	}
	return 0;
}

static int inherit(struct vmm *vm, int fd, const struct vmreset_range *r, uint32_t n,
		   const char *what)
{
	for (uint32_t i = 0; i < n; i++) {
		int ret = vmreset_preserve_add(fd, r[i].offset, r[i].length);

		if (ret)
			return vmm_fail(vm, -ret, "PRESERVE_ADD of the %s range [%#llx, +%#llx) the "
					"snapshot carries: %s", what, (unsigned long long)r[i].offset,
					(unsigned long long)r[i].length, strerror(-ret));
	}
	return 0;
}

static int drop_all(struct vmm *vm, int fd, const char *what)
{
	struct vmreset_range *r = NULL;
	long n = vmreset_preserve_list(fd, &r);
	int ret = 0;

	if (n < 0)
		return vmm_fail(vm, (int)-n, "the preserved ranges of %s: %s", what,
				strerror((int)-n));
	for (long i = 0; i < n && !ret; i++)
		if ((ret = vmreset_preserve_del(fd, r[i].offset, r[i].length)))
			ret = vmm_fail(vm, -ret, "PRESERVE_DEL on %s: %s", what, strerror(-ret));
	free(r);
	return ret;
}

int vmm_ranges_keep_only(struct vmm *vm)
{
	int ret = drop_all(vm, vm->ram_fd, "guest RAM");

	if (!ret && vm->disk_fd >= 0)
		ret = drop_all(vm, vm->disk_fd, "the disk");
	if (!ret && vm->keep_gpa && (ret = vmreset_preserve_add(vm->ram_fd, vm->keep_gpa,
								vm->o.keep_size)))
		ret = vmm_fail(vm, -ret, "PRESERVE_ADD of the kept range: %s", strerror(-ret));
	return ret;
}

int vmm_clone_from(struct vmm *vm, const char *prefix)
{
	char ram[4096], disk[4096], state[4096];
	struct vmreset_range *ranges = NULL;
	struct vmm_ranges_hdr h;
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
	/* More after the struct than the ranges record: another build's state, refused whole. */
	if (n == (ssize_t)sizeof(*st) && read_record(fd, &h, &ranges))
		n = -1;
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
	/*
	 * And the others the source had, before the first request; not with
	 * --hc-preserve off, which promises requests that nothing but --keep
	 * outlives a reset (docs/vmm.md, "Clones").
	 */
	if (!ret && ranges && vm->o.hc != VMM_HC_OFF) {
		ret = inherit(vm, vm->ram_fd, ranges, h.nram, "guest RAM");
		if (!ret && vm->disk_fd >= 0)
			ret = inherit(vm, vm->disk_fd, ranges + h.nram, h.ndisk, "disk");
	}
	if (ret)
		goto err;
	free(ranges);
	return vmm_adopt_state(vm, st);
err:
	free(ranges);
	free(st);
	return ret;
}
