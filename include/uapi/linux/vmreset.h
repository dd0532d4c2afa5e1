/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * vmreset: page-level reset of KVM guest memory.
 *
 * The module registers a filesystem, "vmresetfs". Its regular files are
 * memory objects: a VMM maps one MAP_SHARED and hands the mapping to KVM as
 * a memslot (or uses it as a disk image, or as device state). The ioctls
 * below act on an open vmresetfs file and form the VMM's fast path.
 *
 * Model
 * -----
 * Every file has at most one snapshot, its revert point. After SNAPSHOT the
 * first write to each page - from a KVM guest, from the VMM through its
 * mapping, from write(2), fallocate(2), truncate(2) or anybody else - saves
 * the page's snapshot content ("undo") and marks the page dirty. REVERT
 * gives every dirty page its snapshot content back (a page that was a hole
 * becomes a hole again), restores the file size, and touches nothing else:
 * clean pages, their host PTEs and KVM's mappings of them stay in place.
 * Preserved ranges are left alone by REVERT: their current content becomes
 * their snapshot content.
 *
 * Offsets and lengths are in bytes and must be multiples of the page size
 * (4096 on x86-64) unless stated otherwise. Every structure has reserved
 * fields that must be zero and a flags field whose unknown bits are
 * rejected with EINVAL, so that the ABI can grow.
 *
 * Errors common to all ioctls:
 *   ENOTTY  the fd is not a vmresetfs regular file, or unknown ioctl
 *   EFAULT  the argument pointer (or a pointer inside it) is bad
 *   EINVAL  unknown flag, non-zero reserved field, bad size or range
 *   EBADF   the operation modifies the file and the fd is not open for
 *           writing (all but FEATURES, PRESERVE_LIST, DIRTY, STATS,
 *           HOT_LIST, and HOT_CONFIG without flags)
 *
 * VMRESET_IOC_FEATURES   struct vmreset_features (out)
 *   Reports the API version and the supported features and ioctls.
 *   Callers set @size to sizeof(struct vmreset_features) they know; the
 *   kernel fills at most that many bytes and sets @size to its own size.
 *
 * VMRESET_IOC_SNAPSHOT   struct vmreset_snapshot (in/out)
 *   Make the current content the revert point. No page is copied: the
 *   cost is proportional to the pages dirtied since the previous snapshot
 *   (for the first snapshot of a file, to its mapped pages).
 *   Out: @dirty_pages, how many dirty pages were folded into the snapshot.
 *
 * VMRESET_IOC_REVERT     struct vmreset_revert (in/out)
 *   Revert every dirty page outside the preserved ranges.
 *   Out: @reverted_pages, @preserved_pages (dirty pages kept because they
 *   lie in a preserved range). Errors: ENODATA if the file has no snapshot.
 *   With VMRESET_REVERT_F_DRY_RUN nothing changes and the counts tell what
 *   a revert would do.
 *
 * VMRESET_IOC_PRESERVE   struct vmreset_preserve (in)
 *   @op VMRESET_PRESERVE_ADD adds [@offset, @offset + @length) to the
 *   preserved set (overlapping and adjacent ranges merge);
 *   VMRESET_PRESERVE_DEL removes it (a range may be split in two).
 *   Errors: EINVAL (unaligned, zero length, overflow, unknown op),
 *   ENOSPC (more than VMRESET_MAX_PRESERVED ranges would result).
 *   Removing a range that is not preserved is not an error.
 *
 * VMRESET_IOC_PRESERVE_LIST  struct vmreset_range_list (in/out)
 * VMRESET_IOC_DIRTY          struct vmreset_range_list (in/out)
 *   List preserved ranges, or the ranges of pages dirtied since the
 *   snapshot, in ascending order starting at byte offset @cursor. At most
 *   @nr ranges are written to the array at @ranges; on return @nr holds
 *   the number written and @cursor the offset to pass next time, or
 *   VMRESET_CURSOR_END when the list is complete. Contiguous pages are
 *   reported as one range. DIRTY on a file without a snapshot returns an
 *   empty list. Errors: EINVAL (@cursor unaligned, @nr > VMRESET_MAX_LIST).
 *
 * VMRESET_IOC_STATS      struct vmreset_stats (out)
 *   Counters of the file; @size as for FEATURES (the kernel fills as much
 *   as both sides know; fields were only ever added at the end).
 *   @cached_pages counts kept copies: a page reverted recently keeps a copy
 *   of its snapshot content, so that its next first write needs neither an
 *   allocation nor a copy (@cached_hits). They are bounded (mount option
 *   keep_size=, per file VMRESET_HOT_CFG_KEPT), not counted in size=, and
 *   given back under memory pressure (@cached_reclaimed).
 *
 * Copy-on-write clones use the generic FICLONE and FICLONERANGE ioctls
 * (cp --reflink=always): the destination shares every page of the source
 * range until either side writes it. Both files must be on the same
 * vmresetfs mount (EXDEV), FICLONERANGE offsets and length page-aligned
 * (EINVAL), and a destination range that overlaps a preserved range fails
 * with EBUSY. Dedupe (FIDEDUPERANGE) is not supported (EOPNOTSUPP).
 *
 * Other interfaces and their errors:
 *   mmap    MAP_SHARED only; MAP_PRIVATE fails with EINVAL.
 *   truncate, fallocate(FALLOC_FL_PUNCH_HOLE) over a preserved range fail
 *           with EBUSY; they are tracked like writes otherwise, so REVERT
 *           brings truncated pages back.
 *   write, fallocate, page faults beyond the mount's size= limit: ENOSPC
 *           (SIGBUS for a fault through a mapping, EFAULT from KVM_RUN).
 */
#ifndef _UAPI_LINUX_VMRESET_H
#define _UAPI_LINUX_VMRESET_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define VMRESET_FS_MAGIC		0x766d7273	/* "vmrs" */
#define VMRESET_API_VERSION		1

#define VMRESET_FEATURE_SNAPSHOT	(1ULL << 0)
#define VMRESET_FEATURE_PRESERVE	(1ULL << 1)
#define VMRESET_FEATURE_DIRTY		(1ULL << 2)
#define VMRESET_FEATURE_CLONE		(1ULL << 3)
#define VMRESET_FEATURE_STATS		(1ULL << 4)
#define VMRESET_FEATURE_HOT		(1ULL << 5)
#define VMRESET_FEATURE_ALL		((1ULL << 6) - 1)

#define VMRESET_MAX_PRESERVED		1024
#define VMRESET_MAX_LIST		65536
#define VMRESET_CURSOR_END		(~0ULL)

struct vmreset_features {
	__u32 size;
	__u32 api_version;
	__u64 features;
	__u32 page_size;
	__u32 max_preserved;
	__u32 max_list;
	__u32 __reserved0;
	__u64 __reserved[4];
};

struct vmreset_snapshot {
	__u64 flags;			/* none defined yet */
	__u64 dirty_pages;		/* out */
	__u64 __reserved[2];
};
#define VMRESET_SNAPSHOT_F_ALL		0ULL

struct vmreset_revert {
	__u64 flags;
	__u64 reverted_pages;		/* out */
	__u64 preserved_pages;		/* out */
	__u64 __reserved[2];
};
#define VMRESET_REVERT_F_DRY_RUN	(1ULL << 0)
#define VMRESET_REVERT_F_ALL		(VMRESET_REVERT_F_DRY_RUN)

enum vmreset_preserve_op {
	VMRESET_PRESERVE_ADD = 1,
	VMRESET_PRESERVE_DEL = 2,
};

struct vmreset_preserve {
	__u32 op;			/* enum vmreset_preserve_op */
	__u32 flags;			/* none defined yet */
	__u64 offset;
	__u64 length;
	__u64 __reserved[2];
};
#define VMRESET_PRESERVE_F_ALL		0U

struct vmreset_range {
	__u64 offset;
	__u64 length;
};

struct vmreset_range_list {
	__u64 ranges;			/* user pointer to struct vmreset_range[] */
	__u32 nr;			/* in: capacity; out: ranges written */
	__u32 flags;			/* none defined yet */
	__u64 cursor;			/* in: start offset; out: next offset */
	__u64 __reserved[2];
};
#define VMRESET_LIST_F_ALL		0U

struct vmreset_stats {
	__u32 size;
	__u32 flags;			/* VMRESET_STATS_F_* (out) */
	__u64 file_size;		/* bytes */
	__u64 snapshot_size;		/* file size at the snapshot */
	__u64 resident_pages;		/* pages holding current content */
	__u64 shared_pages;		/* of those, shared with a clone */
	__u64 undo_pages;		/* saved snapshot copies */
	__u64 dirty_pages;		/* pages written since the snapshot */
	__u64 preserved_ranges;
	__u64 cow_faults;		/* first writes since the snapshot (undo saved) */
	__u64 snapshots;
	__u64 reverts;
	__u64 reverted_pages;		/* summed over all reverts */
	__u64 faults;			/* pages mapped by the fault handler */
	__u64 id;			/* object ID, as in netlink */
	__u64 hot_pages;		/* hot pages (each with a kept copy) */
	__u64 hot_promotions;		/* pages made hot, summed */
	__u64 hot_demotions;		/* hot pages made ordinary, summed */
	__u64 hot_copies;		/* hot pages copied back by REVERT */
	__u64 cached_pages;		/* kept copies of reverted pages */
	__u64 cached_hits;		/* first writes that took a kept copy */
	/* 160 bytes up to here, the size before cached_reclaimed. */
	__u64 cached_reclaimed;		/* kept copies the shrinker freed */
};
#define VMRESET_STATS_F_SNAPSHOT	(1U << 0)	/* has a snapshot */

#define VMRESET_IOC_MAGIC		0xB9

#define VMRESET_IOC_FEATURES	_IOWR(VMRESET_IOC_MAGIC, 0x00, struct vmreset_features)
#define VMRESET_IOC_SNAPSHOT	_IOWR(VMRESET_IOC_MAGIC, 0x01, struct vmreset_snapshot)
#define VMRESET_IOC_REVERT	_IOWR(VMRESET_IOC_MAGIC, 0x02, struct vmreset_revert)
#define VMRESET_IOC_PRESERVE	_IOW(VMRESET_IOC_MAGIC, 0x03, struct vmreset_preserve)
#define VMRESET_IOC_PRESERVE_LIST _IOWR(VMRESET_IOC_MAGIC, 0x04, struct vmreset_range_list)
#define VMRESET_IOC_DIRTY	_IOWR(VMRESET_IOC_MAGIC, 0x05, struct vmreset_range_list)
#define VMRESET_IOC_STATS	_IOWR(VMRESET_IOC_MAGIC, 0x06, struct vmreset_stats)

/*
 * Generic netlink family "vmreset" (docs/netlink/vmreset.yaml is the spec;
 * the build checks that it, this header and the kernel's policies agree).
 *
 * Every vmresetfs regular file is an object with an ID unique for the
 * boot. Each request needs write permission on the object's file, or
 * CAP_SYS_ADMIN; a dump lists the objects the caller may manage. Errors
 * carry an extack message naming the bad attribute.
 *
 * VMRESET_CMD_OBJ_GET
 *   do:   OBJ_ID -> one object; dump: all objects (NLM_F_DUMP_INTR if the
 *   set of objects changed during the dump).
 *   Reply: OBJ_ID, PATH, DEV, UID, SIZE, SNAPSHOT (flag), SNAPSHOT_SIZE,
 *   RESIDENT_PAGES, SHARED_PAGES, UNDO_PAGES, DIRTY_PAGES, COW_FAULTS,
 *   FAULTS, SNAPSHOTS, REVERTS, REVERTED_PAGES, PRESERVED (nest of RANGE
 *   nests of RANGE_OFFSET, RANGE_LENGTH).
 * VMRESET_CMD_OBJ_SNAPSHOT   OBJ_ID -> OBJ_ID, DIRTY_PAGES
 * VMRESET_CMD_OBJ_REVERT     OBJ_ID, [FLAGS] -> OBJ_ID, REVERTED_PAGES,
 *                            KEPT_PAGES; ENODATA without a snapshot
 * VMRESET_CMD_PRESERVE_ADD   OBJ_ID, OFFSET, LENGTH (as the ioctl)
 * VMRESET_CMD_PRESERVE_DEL   OBJ_ID, OFFSET, LENGTH
 *
 * KVM VMs: a VMM (or anyone holding the VM fd) attaches its VM; the module
 * then finds the memslots backed by vmresetfs files whenever it acts, so
 * memslot changes need no update. An attachment holds a reference on the
 * VM and ends with VM_DETACH or when the VMM's address space goes away.
 * Only the attaching user (or CAP_SYS_ADMIN) manages a VM, and VM-level
 * operations also need write permission on each file. A memslot may span
 * several mappings (and files); one only partly backed by vmresetfs
 * (anonymous memory, another file system, a hole) makes VM_SNAPSHOT,
 * VM_REVERT and VM_PRESERVE_* fail with EINVAL.
 * VMRESET_CMD_VM_ATTACH      VM_FD, [ATTACH_FLAGS] -> VM_ID, [ATTACH_FD];
 *                            EINVAL if not a KVM VM fd, EEXIST if already
 *                            attached. With VMRESET_VM_ATTACH_F_FD the
 *                            attachment is bound to a new file descriptor
 *                            of the caller (close-on-exec, in ATTACH_FD):
 *                            it ends when that is closed, by VM_DETACH or
 *                            when the VMM's address space goes; only the
 *                            VM's own process may ask (EPERM). Without it
 *                            the attachment holds the VM until VM_DETACH
 *                            or until the VMM's address space goes, even
 *                            after the VMM closed the VM (whose memory is
 *                            then kept that long): F_FD is what a VMM
 *                            should use.
 * VMRESET_CMD_VM_DETACH      VM_ID
 * VMRESET_CMD_VM_GET         do: VM_ID; dump: all -> VM_ID, PID, UID,
 *                            SNAPSHOTS, REVERTS, REVERTED_PAGES, SLOTS (nest
 *                            of SLOT nests: SLOT_GPA, SLOT_SIZE, SLOT_OBJ_ID,
 *                            SLOT_OFFSET; one per run of a file's pages, in
 *                            guest-physical order)
 * VMRESET_CMD_VM_SNAPSHOT    VM_ID -> VM_ID, DIRTY_PAGES (all its files)
 * VMRESET_CMD_VM_REVERT      VM_ID, [FLAGS] -> VM_ID, REVERTED_PAGES,
 *                            KEPT_PAGES; ENODATA if a file has no snapshot
 * VMRESET_CMD_VM_PRESERVE_ADD, VMRESET_CMD_VM_PRESERVE_DEL
 *                            VM_ID, OFFSET, LENGTH as guest-physical
 *                            addresses; EINVAL if no vmresetfs memslot
 *                            overlaps
 *
 * Notifications on the multicast group "events" (one message each):
 * VMRESET_CMD_SNAPSHOT_NTF   OBJ_ID, DIRTY_PAGES
 * VMRESET_CMD_REVERT_NTF     OBJ_ID, REVERTED_PAGES, KEPT_PAGES
 * VMRESET_CMD_OBJ_DEL_NTF    OBJ_ID (the file is gone)
 * VMRESET_CMD_VM_ATTACH_NTF  VM_ID, PID
 * VMRESET_CMD_VM_DETACH_NTF  VM_ID, PID
 * Snapshots and reverts through the ioctls notify too.
 */
#define VMRESET_GENL_NAME		"vmreset"
#define VMRESET_GENL_VERSION		1
#define VMRESET_MCGRP_EVENTS		"events"

enum vmreset_cmd {
	VMRESET_CMD_UNSPEC,
	VMRESET_CMD_OBJ_GET,
	VMRESET_CMD_OBJ_SNAPSHOT,
	VMRESET_CMD_OBJ_REVERT,
	VMRESET_CMD_PRESERVE_ADD,
	VMRESET_CMD_PRESERVE_DEL,
	VMRESET_CMD_SNAPSHOT_NTF,
	VMRESET_CMD_REVERT_NTF,
	VMRESET_CMD_OBJ_DEL_NTF,
	VMRESET_CMD_VM_ATTACH,
	VMRESET_CMD_VM_DETACH,
	VMRESET_CMD_VM_GET,
	VMRESET_CMD_VM_SNAPSHOT,
	VMRESET_CMD_VM_REVERT,
	VMRESET_CMD_VM_PRESERVE_ADD,
	VMRESET_CMD_VM_PRESERVE_DEL,
	VMRESET_CMD_VM_ATTACH_NTF,
	VMRESET_CMD_VM_DETACH_NTF,
	VMRESET_CMD_HOT_ADD,
	VMRESET_CMD_HOT_DEL,
	VMRESET_CMD_HOT_SET,
	VMRESET_CMD_HOT_CONFIG,

	__VMRESET_CMD_MAX,
	VMRESET_CMD_MAX = __VMRESET_CMD_MAX - 1
};

/* VMRESET_A_ATTACH_FLAGS of VMRESET_CMD_VM_ATTACH */
#define VMRESET_VM_ATTACH_F_FD		(1U << 0)	/* bound to an fd */
#define VMRESET_VM_ATTACH_F_ALL		VMRESET_VM_ATTACH_F_FD

enum vmreset_a {
	VMRESET_A_UNSPEC,
	VMRESET_A_PAD,
	VMRESET_A_OBJ_ID,		/* u64 */
	VMRESET_A_PATH,			/* string: path inside its mount */
	VMRESET_A_DEV,			/* u32: st_dev of the mount */
	VMRESET_A_UID,			/* u32: owner */
	VMRESET_A_SIZE,			/* u64 */
	VMRESET_A_SNAPSHOT,		/* flag: has a snapshot */
	VMRESET_A_SNAPSHOT_SIZE,	/* u64 */
	VMRESET_A_RESIDENT_PAGES,	/* u64 */
	VMRESET_A_SHARED_PAGES,		/* u64 */
	VMRESET_A_UNDO_PAGES,		/* u64 */
	VMRESET_A_DIRTY_PAGES,		/* u64 */
	VMRESET_A_COW_FAULTS,		/* u64 */
	VMRESET_A_FAULTS,		/* u64 */
	VMRESET_A_SNAPSHOTS,		/* u64 */
	VMRESET_A_REVERTS,		/* u64 */
	VMRESET_A_REVERTED_PAGES,	/* u64 */
	VMRESET_A_KEPT_PAGES,		/* u64 */
	VMRESET_A_FLAGS,		/* u64: VMRESET_REVERT_F_* */
	VMRESET_A_OFFSET,		/* u64 */
	VMRESET_A_LENGTH,		/* u64 */
	VMRESET_A_PRESERVED,		/* nest: VMRESET_A_RANGE... */
	VMRESET_A_VM_FD,		/* u32: the caller's KVM VM fd */
	VMRESET_A_VM_ID,		/* u32 */
	VMRESET_A_PID,			/* u32: the VMM that created the VM */
	VMRESET_A_SLOTS,		/* nest: VMRESET_A_SLOT... */
	VMRESET_A_HOT,			/* nest: VMRESET_A_RANGE... */
	VMRESET_A_HOT_PAGES,		/* u64 */
	VMRESET_A_HOT_PROMOTIONS,	/* u64 */
	VMRESET_A_HOT_DEMOTIONS,	/* u64 */
	VMRESET_A_HOT_COPIES,		/* u64 */
	VMRESET_A_CACHED_PAGES,		/* u64 */
	VMRESET_A_HOT_MODE,		/* u32: enum vmreset_hot_mode */
	VMRESET_A_HOT_MAX,		/* u64: per-file bound, pages */
	VMRESET_A_HOT_LEARN_K,		/* u32 */
	VMRESET_A_HOT_LEARN_N,		/* u32 */
	VMRESET_A_HOT_EXPLICIT_PAGES,	/* u64 */
	VMRESET_A_HOT_MOUNT_MAX,	/* u64: the mount's bound, pages */
	VMRESET_A_HOT_MOUNT_PAGES,	/* u64: hot pages on the mount */
	VMRESET_A_ATTACH_FLAGS,		/* u32: VMRESET_VM_ATTACH_F_* */
	VMRESET_A_ATTACH_FD,		/* u32: the attachment's fd */
	VMRESET_A_HOT_KEPT_MAX,		/* u64: per-file bound on kept copies */

	__VMRESET_A_MAX,
	VMRESET_A_MAX = __VMRESET_A_MAX - 1
};

enum vmreset_a_range {
	VMRESET_A_RANGE_UNSPEC,
	VMRESET_A_RANGE,		/* nest: OFFSET, LENGTH */
	VMRESET_A_RANGE_OFFSET,		/* u64 */
	VMRESET_A_RANGE_LENGTH,		/* u64 */

	__VMRESET_A_RANGE_MAX,
	VMRESET_A_RANGE_MAX = __VMRESET_A_RANGE_MAX - 1
};

enum vmreset_a_slot {
	VMRESET_A_SLOT_UNSPEC,
	VMRESET_A_SLOT,			/* nest: the attributes below */
	VMRESET_A_SLOT_GPA,		/* u64 */
	VMRESET_A_SLOT_SIZE,		/* u64: bytes */
	VMRESET_A_SLOT_OBJ_ID,		/* u64 */
	VMRESET_A_SLOT_OFFSET,		/* u64: offset in the file */

	__VMRESET_A_SLOT_MAX,
	VMRESET_A_SLOT_MAX = __VMRESET_A_SLOT_MAX - 1
};

/*
 * Hot pages
 * ---------
 * A hot page stays mapped writable across SNAPSHOT and REVERT and keeps a
 * copy of its snapshot content; REVERT copies that back in place, so the
 * page is never unmapped and a guest touching it after a revert takes no
 * fault (no MMU-notifier round, KVM keeps its mapping). It costs one page
 * of memory per hot page, and REVERT compares (and, if it changed, copies)
 * every hot page whether or not it was written. Hot pages are exact for
 * every writer: their dirtiness is decided by content, not by faults.
 *
 * A file's hot set is the union of an explicit set (given below) and, in
 * VMRESET_HOT_LEARN mode, pages learned from the dirty history: a page
 * dirtied in at least @learn_k of the last @learn_n reverts is promoted; a
 * learned hot page unchanged at @learn_n reverts in a row is demoted.
 * Pages become hot only while the file has a snapshot, and only where the
 * snapshot has a page (not a hole) that no clone shares, outside preserved
 * ranges. Clones (either side), hole punching, truncation and PRESERVE ADD
 * demote the hot pages they touch first, so their semantics do not change.
 * The number of hot pages is bounded per file (@max_pages) and per mount
 * (mount option hot_size=, default a quarter of size=); past a bound pages
 * simply stay ordinary.
 *
 * DIRTY lists a hot page if its content differs from its snapshot copy (a
 * page compare) and STATS counts it in @dirty_pages then, REVERT counts it
 * in @reverted_pages if it had to copy it back, and SNAPSHOT in
 * @dirty_pages if it had to refresh the copy.
 *
 * VMRESET_IOC_HOT        struct vmreset_hot (in)
 *   @op VMRESET_HOT_ADD adds the @nr ranges at @ranges to the explicit set,
 *   VMRESET_HOT_DEL removes them (demoting those pages), VMRESET_HOT_SET
 *   replaces the explicit set by them (@nr may be 0). Ranges need not be
 *   sorted and may overlap. With a snapshot, the pages that can be hot are
 *   promoted at once; the others when they become eligible (at SNAPSHOT).
 *   Errors: EINVAL (bad op, range, @nr > VMRESET_MAX_LIST), ENOSPC (the
 *   explicit set would exceed the file's @max_pages; nothing changed),
 *   EFAULT.
 * VMRESET_IOC_HOT_LIST   struct vmreset_range_list (in/out)
 *   As DIRTY, listing the pages that are hot now; with
 *   VMRESET_LIST_F_EXPLICIT, the explicit set instead.
 * VMRESET_IOC_HOT_CONFIG struct vmreset_hot_config (in/out)
 *   Set the fields named by @flags (VMRESET_HOT_CFG_*), then report all.
 *   VMRESET_HOT_OFF demotes every hot page and keeps the explicit set for
 *   later. VMRESET_HOT_CFG_KEPT sets the file's bound on kept copies of
 *   reverted pages (see STATS; 0: none), dropping the oldest above it;
 *   @kept_max is read only with that flag, @kept_pages never. Errors:
 *   EINVAL (unknown mode, @max_pages or @kept_max above the mount's
 *   bound, learn_k not in 1..learn_n, learn_n not in 1..16), EBUSY
 *   (@max_pages below the explicit set).
 */
#define VMRESET_LIST_F_EXPLICIT		(1U << 0)	/* HOT_LIST only */

enum vmreset_hot_op {
	VMRESET_HOT_ADD = 1,
	VMRESET_HOT_DEL = 2,
	VMRESET_HOT_SET = 3,
};

struct vmreset_hot {
	__u32 op;			/* enum vmreset_hot_op */
	__u32 nr;			/* ranges at @ranges */
	__u64 ranges;			/* user pointer to struct vmreset_range[] */
	__u64 flags;			/* none defined yet */
	__u64 __reserved[2];
};
#define VMRESET_HOT_F_ALL		0ULL

enum vmreset_hot_mode {
	VMRESET_HOT_OFF = 0,		/* no hot pages */
	VMRESET_HOT_EXPLICIT = 1,	/* the explicit set only */
	VMRESET_HOT_LEARN = 2,		/* explicit set and learned pages */
};

struct vmreset_hot_config {
	__u32 flags;			/* in: VMRESET_HOT_CFG_* to set */
	__u32 mode;			/* enum vmreset_hot_mode */
	__u64 max_pages;		/* per-file bound */
	__u32 learn_k;			/* promote: dirty in k ... */
	__u32 learn_n;			/* ... of the last n reverts */
	__u64 explicit_pages;		/* out: pages in the explicit set */
	__u64 hot_pages;		/* out: pages hot now */
	__u64 mount_max_pages;		/* out: the mount's bound */
	__u64 mount_hot_pages;		/* out: hot pages on the mount */
	__u64 kept_max;			/* per-file bound on kept copies */
	__u64 kept_pages;		/* out: kept copies of the file */
};
#define VMRESET_HOT_CFG_MODE		(1U << 0)
#define VMRESET_HOT_CFG_MAX		(1U << 1)
#define VMRESET_HOT_CFG_LEARN		(1U << 2)	/* learn_k and learn_n */
#define VMRESET_HOT_CFG_KEPT		(1U << 3)	/* kept_max */
#define VMRESET_HOT_CFG_ALL		((1U << 4) - 1)
#define VMRESET_HOT_MAX_LEARN_N		16

#define VMRESET_IOC_HOT		_IOW(VMRESET_IOC_MAGIC, 0x07, struct vmreset_hot)
#define VMRESET_IOC_HOT_LIST	_IOWR(VMRESET_IOC_MAGIC, 0x08, struct vmreset_range_list)
#define VMRESET_IOC_HOT_CONFIG	_IOWR(VMRESET_IOC_MAGIC, 0x09, struct vmreset_hot_config)

/*
 * Netlink for hot pages (same semantics and errors as the ioctls):
 * VMRESET_CMD_HOT_ADD        OBJ_ID, OFFSET, LENGTH
 * VMRESET_CMD_HOT_DEL        OBJ_ID, OFFSET, LENGTH
 * VMRESET_CMD_HOT_SET        OBJ_ID, [HOT (nest of RANGE nests)]: replace
 *                            the explicit set (no HOT: empty it)
 * VMRESET_CMD_HOT_CONFIG     OBJ_ID, [HOT_MODE], [HOT_MAX], [HOT_LEARN_K,
 *                            HOT_LEARN_N], [HOT_KEPT_MAX] -> OBJ_ID,
 *                            HOT_MODE, HOT_MAX, HOT_LEARN_K, HOT_LEARN_N,
 *                            HOT_EXPLICIT_PAGES, HOT_PAGES, HOT_MOUNT_MAX,
 *                            HOT_MOUNT_PAGES, HOT_KEPT_MAX, CACHED_PAGES
 *                            (HOT_KEPT_MAX is the ioctl's kept_max,
 *                            CACHED_PAGES its kept_pages)
 * OBJ_GET replies also carry HOT_PAGES, HOT_PROMOTIONS, HOT_DEMOTIONS,
 * HOT_COPIES, CACHED_PAGES and HOT_MODE.
 */

/*
 * Guest-declared preserved ranges (hypercall)
 * -------------------------------------------
 * A guest of any VMM asks that a guest-physical range be kept across
 * REVERT, or no longer kept, with one hypercall (VMMCALL on AMD, VMCALL on
 * Intel; KVM rewrites the other one), issued at CPL 0:
 *
 *   rax = VMRESET_HC_PRESERVE
 *   rbx = guest-physical address, page-aligned
 *   rcx = length in bytes, page-aligned, non-zero, not wrapping
 *   rdx = flags: VMRESET_HC_F_DEL to stop preserving; unknown bits refused
 *   rsi = 0 (reserved)
 *
 * KVM does not know the number and returns -KVM_ENOSYS (-1000) in rax:
 * the guest must not read success from rax. The request is recorded by
 * the eBPF service (vmreset-hc load, bpf/hc.bpf.c) before the hypercall
 * returns, and applied to the VM by the VMM's revert path
 * (vmreset_hc_vm_revert(), vmreset-hc revert) before it reverts: a REVERT
 * issued after the hypercall returned honours it. Requests of a VM that
 * is not attached to vmreset are never applied. At most
 * VMRESET_HC_MAX_PENDING requests per VM wait between two reverts; more,
 * bad arguments, CPL > 0, and ranges without vmresetfs memory behind them
 * are dropped and counted (vmreset-hc status), never reported by the
 * kernel. The VM-level limits of VMRESET_CMD_VM_PRESERVE_ADD apply
 * (VMRESET_MAX_PRESERVED ranges per file).
 */
#define VMRESET_HC_PRESERVE		0x766d7201ULL	/* "vmr", 1 */
#define VMRESET_HC_F_DEL		(1ULL << 0)
#define VMRESET_HC_F_ALL		(VMRESET_HC_F_DEL)
#define VMRESET_HC_MAX_PENDING		64

#endif /* _UAPI_LINUX_VMRESET_H */
