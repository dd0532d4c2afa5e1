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
 * Create a memory object at @path with @size bytes and return its fd
 * (O_RDWR | O_CLOEXEC). Fails with -EEXIST if @path exists (so that a
 * typo cannot shrink a VM's memory) and with -ENOTTY if @path is not on
 * vmresetfs (then nothing is left behind).
 */
int vmreset_create(const char *path, uint64_t size);

/* Also open an existing object and set its size (what is past it is lost). */
#define VMRESET_CREATE_F_EXISTING	(1U << 0)

/* vmreset_create() with VMRESET_CREATE_F_* @flags. */
int vmreset_create_flags(const char *path, uint64_t size, unsigned int flags);

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

/*
 * Hot pages (see the UAPI header): @op is VMRESET_HOT_ADD, _DEL or _SET.
 * vmreset_hot_list() lists the pages hot now, or with @explicit_set the
 * explicit set; the array is malloc()ed, free() it. vmreset_hot_config()
 * sets the fields named by c->flags (VMRESET_HOT_CFG_*) and reports all;
 * c->flags = 0 only reads.
 */
int vmreset_hot(int fd, uint32_t op, const struct vmreset_range *ranges,
		uint32_t nr);
int vmreset_hot_add(int fd, uint64_t offset, uint64_t length);
int vmreset_hot_del(int fd, uint64_t offset, uint64_t length);
int vmreset_hot_set(int fd, const struct vmreset_range *ranges, uint32_t nr);
long vmreset_hot_list(int fd, int explicit_set, struct vmreset_range **ranges);
int vmreset_hot_config(int fd, struct vmreset_hot_config *c);

/*
 * Netlink management (any process, by object ID). The caller needs write
 * permission on an object's file, or CAP_SYS_ADMIN. Failed requests leave
 * the kernel's message in vmreset_nl_errmsg().
 */
struct vmreset_nl;

struct vmreset_obj {
	uint64_t id;
	char path[4096];		/* inside its mount; "" once unlinked */
	uint32_t dev, uid;
	uint64_t size, snapshot_size;
	int has_snapshot;
	uint64_t resident_pages, shared_pages, undo_pages, dirty_pages;
	uint64_t cow_faults, faults, snapshots, reverts, reverted_pages;
	size_t nr_preserved;
	struct vmreset_range *preserved;	/* vmreset_obj_free() */
	uint64_t hot_pages, hot_promotions, hot_demotions, hot_copies;
	uint64_t cached_pages;
	uint32_t hot_mode;		/* enum vmreset_hot_mode */
};

struct vmreset_event {
	uint8_t cmd;			/* VMRESET_CMD_*_NTF */
	uint64_t id;			/* object events */
	uint32_t vm_id, pid;		/* VM events */
	uint64_t dirty_pages, reverted_pages, kept_pages;
};

/*
 * Return non-zero to stop the walk (that value is returned).
 *
 * vmreset_nl_list() and vmreset_nl_vm_list() call it once per object or
 * VM of one consistent listing: the records are read in full first and
 * handed over only if nothing came or went while the kernel sent them. A
 * listing that something interrupted is read again, up to 10 times; then
 * the list returns -EAGAIN (the registry keeps changing: try again) having
 * called @fn for nothing. Other errors: those of the request, and an error
 * the kernel ended the listing with (e.g. -EMSGSIZE for a VM too big for a
 * dump message), each with the kernel's message in vmreset_nl_errmsg().
 */
typedef int (*vmreset_obj_fn)(const struct vmreset_obj *obj, void *arg);
typedef int (*vmreset_event_fn)(const struct vmreset_event *ev, void *arg);

/* NULL with *err = -ENOENT when the module (family) is not loaded. */
struct vmreset_nl *vmreset_nl_open(int *err);
void vmreset_nl_close(struct vmreset_nl *nl);
const char *vmreset_nl_errmsg(const struct vmreset_nl *nl);

int vmreset_nl_get(struct vmreset_nl *nl, uint64_t id, struct vmreset_obj *obj);
void vmreset_obj_free(struct vmreset_obj *obj);
int vmreset_nl_list(struct vmreset_nl *nl, vmreset_obj_fn fn, void *arg);
int vmreset_nl_snapshot(struct vmreset_nl *nl, uint64_t id, uint64_t *dirty_pages);
int vmreset_nl_revert(struct vmreset_nl *nl, uint64_t id, uint64_t flags,
		      uint64_t *reverted_pages, uint64_t *kept_pages);
int vmreset_nl_preserve(struct vmreset_nl *nl, uint64_t id, int add,
			uint64_t offset, uint64_t length);
/* Hot sets by object ID; as the ioctls. */
int vmreset_nl_hot(struct vmreset_nl *nl, uint64_t id, uint32_t op,
		   const struct vmreset_range *ranges, uint32_t nr);
/* c->flags names what to set; all of *c is filled in from the reply. */
int vmreset_nl_hot_config(struct vmreset_nl *nl, uint64_t id,
			  struct vmreset_hot_config *c);
/* KVM VMs: attach the VM whose fd @vm_fd this process holds. */
struct vmreset_vm_slot {
	uint64_t gpa, size, obj_id, offset;
};

struct vmreset_vm {
	uint32_t id, pid, uid;
	uint64_t snapshots, reverts, reverted_pages;
	size_t nr_slots;
	struct vmreset_vm_slot *slots;	/* vmreset_vm_free() */
};

typedef int (*vmreset_vm_fn)(const struct vmreset_vm *vm, void *arg);

/*
 * Without an fd: the attachment holds a reference to the VM and ends only
 * on vmreset_nl_vm_detach() or when the VMM's address space goes (it
 * exits, or execs). A VM the VMM closed stays attached, and what KVM
 * holds for it stays allocated, until then. For a tool that attaches
 * another process's VM (vmresetctl vm attach); a VMM attaching its own VM
 * should bind it to an fd instead (recommended).
 */
int vmreset_nl_vm_attach(struct vmreset_nl *nl, int vm_fd, uint32_t *vm_id);
/*
 * The recommended way for the VM's own process (the VMM): bound to a new
 * fd of ours (VMRESET_VM_ATTACH_F_FD in @flags; *@attach_fd,
 * close-on-exec), the attachment lasts exactly until that is closed (or
 * the VMM exits); EPERM from any other process.
 */
int vmreset_nl_vm_attach_flags(struct vmreset_nl *nl, int vm_fd, uint32_t flags,
			       uint32_t *vm_id, int *attach_fd);
int vmreset_nl_vm_detach(struct vmreset_nl *nl, uint32_t vm_id);
int vmreset_nl_vm_list(struct vmreset_nl *nl, vmreset_vm_fn fn, void *arg);
void vmreset_vm_free(struct vmreset_vm *vm);
int vmreset_nl_vm_snapshot(struct vmreset_nl *nl, uint32_t vm_id,
			   uint64_t *dirty_pages);
int vmreset_nl_vm_revert(struct vmreset_nl *nl, uint32_t vm_id, uint64_t flags,
			 uint64_t *reverted_pages, uint64_t *kept_pages);
/* @gpa and @length: guest-physical, page-aligned. */
int vmreset_nl_vm_preserve(struct vmreset_nl *nl, uint32_t vm_id, int add,
			   uint64_t gpa, uint64_t length);

/* Blocks, calling @fn for every event, until @fn returns non-zero. */
int vmreset_nl_monitor(struct vmreset_nl *nl, vmreset_event_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* LIBVMRESET_H */
