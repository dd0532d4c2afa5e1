// SPDX-License-Identifier: GPL-2.0
/*
 * KVM VMs attached over netlink: VM-level SNAPSHOT, REVERT and preserved
 * guest-physical ranges act on every vmresetfs file behind the VM's
 * memslots. The memslots are looked up at each operation, so the VM → files
 * map is always current; an attachment ends with VM_DETACH, when the
 * VMM's address space is torn down (an MMU notifier's ->release), and,
 * with VMRESET_VM_ATTACH_F_FD, when the file descriptor it is bound to is
 * closed. An attachment holds a counted reference to the VM
 * (kvm_get_kvm_safe()), so a VM closed by its VMM stays, with what it
 * references, until one of those: we never look at KVM's own count.
 */
#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/kref.h>
#include <linux/kvm_host.h>
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <net/genetlink.h>
#include "vmreset.h"
#include "reply.h"

/*
 * An attachment. @ref counts the registry's reference (dropped by whoever
 * unlinks the VM) and one per operation in flight; the last one lets go
 * of the VM and the mm. @lock serialises the VM-level operations, so that
 * one VM's SNAPSHOT, REVERT and PRESERVE do not interleave file by file,
 * while other VMs' operations and the rest of generic netlink go on.
 */
struct vmr_vm {
	struct kref ref;
	struct mutex lock;
	u32 id;
	pid_t pid;
	kuid_t uid;
	struct kvm *kvm;
	struct mm_struct *mm;
	struct mmu_notifier mn;
	struct work_struct gone_work;	/* the mm went: detach */
	bool detaching;			/* under vmr_vms_lock */
	struct list_head exit_link;	/* under vmr_vms_lock */
	atomic64_t snapshots, reverts, reverted_pages;
};

/*
 * A run of a vmresetfs file's pages behind (part of) a memslot. We hold the
 * file, not only its inode: the file keeps the mount and so the superblock
 * alive, and an unmount (umount -l) that runs meanwhile finishes when we
 * let go.
 */
struct vmr_slot {
	struct file *file;
	struct vmr_inode *vi;
	u64 gpa;
	pgoff_t start, nr;		/* file pages */
	bool first;			/* the file's first part: act on it here */
};

/* The parts behind a VM's memslots, in guest-physical order. */
struct vmr_parts {
	struct vmr_slot *s;
	int n, cap;
};

/*
 * Memslots may alias the same mappings, so parts are not bounded by the
 * VMM's VMAs; past this an operation is refused rather than allocating
 * without end.
 */
#define VMR_MAX_PARTS		(1 << 20)

static DEFINE_XARRAY_ALLOC1(vmr_vms);
static DEFINE_MUTEX(vmr_vms_lock);
/* Bumped under vmr_vms_lock when VMs come or go: dumps see NLM_F_DUMP_INTR. */
static unsigned int vmr_vms_gen = 1;
static struct workqueue_struct *vmr_wq;

/*
 * With vmr_vms_lock held: true if the caller now owns dropping the
 * registry's reference. The event goes out under the lock, as ATTACH_NTF
 * does, so that monitors hear of a VM's attach before its detach.
 */
static bool vmr_vm_unlink(struct vmr_vm *vm, bool notify)
{
	if (vm->detaching)
		return false;
	xa_erase(&vmr_vms, vm->id);
	WRITE_ONCE(vm->detaching, true);
	vmr_vms_gen++;
	if (notify)
		vmr_notify_vm(VMRESET_CMD_VM_DETACH_NTF, vm->id, vm->pid);
	return true;
}

/* The last reference: operations in flight are done. Not under vmr_vms_lock. */
static void vmr_vm_release(struct kref *ref)
{
	struct vmr_vm *vm = container_of(ref, struct vmr_vm, ref);

	/* Waits out a ->release in flight, which may have queued the work. */
	mmu_notifier_unregister(&vm->mn, vm->mm);
	if (current_work() == &vm->gone_work)
		cancel_work(&vm->gone_work);	/* not ourselves: a requeue */
	else
		cancel_work_sync(&vm->gone_work);
	kvm_put_kvm(vm->kvm);
	mutex_destroy(&vm->lock);
	kfree(vm);
}

static void vmr_vm_put(struct vmr_vm *vm)
{
	kref_put(&vm->ref, vmr_vm_release);
}

/*
 * Detach the VM, and drop the registry's reference if we were the ones
 * (true) and not a detach that ran first; monitors hear it go.
 */
static bool vmr_vm_detach_put(struct vmr_vm *vm)
{
	bool own;

	mutex_lock(&vmr_vms_lock);
	own = vmr_vm_unlink(vm, true);
	mutex_unlock(&vmr_vms_lock);
	if (own)
		vmr_vm_put(vm);
	return own;
}

/*
 * The detach of a VM whose mm went. Not done in ->release itself: the
 * last reference unregisters the notifier, which waits for ->release
 * (synchronize_srcu()) and would wait for itself.
 */
static void vmr_vm_gone(struct work_struct *work)
{
	vmr_vm_detach_put(container_of(work, struct vmr_vm, gone_work));
}

/* The VMM's address space is going away: so is its VM. */
static void vmr_mn_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct vmr_vm *vm = container_of(mn, struct vmr_vm, mn);

	if (!READ_ONCE(vm->detaching))
		queue_work(vmr_wq, &vm->gone_work);
}

static const struct mmu_notifier_ops vmr_mn_ops = {
	.release = vmr_mn_release,
};

/* The VMM closed the attachment's fd (or exited): it ends here. */
static int vmr_attach_release(struct inode *inode, struct file *file)
{
	struct vmr_vm *vm = file->private_data;

	vmr_vm_detach_put(vm);
	vmr_vm_put(vm);		/* the file's own reference */
	return 0;
}

static const struct file_operations vmr_attach_fops = {
	.owner		= THIS_MODULE,
	.release	= vmr_attach_release,
	.llseek		= noop_llseek,
};

static bool vmr_may_manage_vm(struct vmr_vm *vm)
{
	return uid_eq(current_fsuid(), vm->uid) || capable(CAP_SYS_ADMIN);
}

/* The VM named by VMRESET_A_VM_ID, checked; with vmr_vms_lock held. */
static struct vmr_vm *vmr_vm_lookup(struct genl_info *info)
{
	struct vmr_vm *vm;

	if (GENL_REQ_ATTR_CHECK(info, VMRESET_A_VM_ID))
		return ERR_PTR(-EINVAL);
	vm = xa_load(&vmr_vms, nla_get_u32(info->attrs[VMRESET_A_VM_ID]));
	if (!vm || vm->detaching) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
				    "no such VM");
		return ERR_PTR(-ENOENT);
	}
	if (!vmr_may_manage_vm(vm)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
				    "VM attached by another user");
		return ERR_PTR(-EPERM);
	}
	return vm;
}

/* The same with a reference, for vmr_vm_put(). */
static struct vmr_vm *vmr_vm_get(struct genl_info *info)
{
	struct vmr_vm *vm;

	mutex_lock(&vmr_vms_lock);
	vm = vmr_vm_lookup(info);
	if (!IS_ERR(vm))
		kref_get(&vm->ref);
	mutex_unlock(&vmr_vms_lock);
	return vm;
}

int vmr_nl_vm_attach_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *fa = info->attrs[VMRESET_A_ATTACH_FLAGS];
	u32 flags = fa ? nla_get_u32(fa) : 0, id, pid;
	struct file *file, *afile = NULL;
	struct vmr_vm *vm, *other;
	struct sk_buff *msg;
	unsigned long idx;
	struct kvm *kvm;
	int err, afd = -1;
	void *hdr;

	if (GENL_REQ_ATTR_CHECK(info, VMRESET_A_VM_FD))
		return -EINVAL;
	if (flags & ~VMRESET_VM_ATTACH_F_ALL) {
		NL_SET_ERR_MSG_ATTR(info->extack, fa, "unknown flags");
		return -EINVAL;
	}
	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	err = -EBADF;
	file = fget(nla_get_u32(info->attrs[VMRESET_A_VM_FD]));
	if (!file) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_FD],
				    "not an open file descriptor");
		goto err_free_msg;
	}
	err = -EINVAL;
	if (!file_is_kvm(file)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_FD],
				    "not a KVM VM file descriptor");
		goto err_fput;
	}
	kvm = file->private_data;
	/*
	 * The fd goes to the caller, and the attachment's memslots are in
	 * the VM's address space: as for KVM's own ioctls, the VM belongs to
	 * the process that created it.
	 */
	err = -EPERM;
	if ((flags & VMRESET_VM_ATTACH_F_FD) && kvm->mm != current->mm) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_FD],
				    "only the VM's own process can bind an attachment to an fd");
		goto err_fput;
	}
	err = -ENOENT;
	if (!kvm_get_kvm_safe(kvm))
		goto err_fput;
	if (flags & VMRESET_VM_ATTACH_F_FD) {
		afd = get_unused_fd_flags(O_CLOEXEC);
		if (afd < 0) {
			err = afd;
			goto err_put_kvm;
		}
	}
	err = -ENOMEM;
	vm = kzalloc(sizeof(*vm), GFP_KERNEL);
	if (!vm)
		goto err_put_fd;
	vm->kvm = kvm;
	vm->mm = kvm->mm;
	/* The VMM that created the VM, whoever attaches it. */
	vm->pid = kvm->userspace_pid;
	vm->uid = current_fsuid();
	vm->mn.ops = &vmr_mn_ops;
	kref_init(&vm->ref);
	mutex_init(&vm->lock);
	INIT_WORK(&vm->gone_work, vmr_vm_gone);

	mutex_lock(&vmr_vms_lock);
	xa_for_each(&vmr_vms, idx, other) {
		if (other->kvm == kvm && !other->detaching) {
			NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_FD],
					    "VM already attached");
			err = -EEXIST;
			goto err_unlock;
		}
	}
	err = -ESRCH;
	if (!mmget_not_zero(vm->mm))
		goto err_unlock;
	err = mmu_notifier_register(&vm->mn, vm->mm);
	mmput(vm->mm);
	if (err)
		goto err_unlock;
	err = xa_alloc(&vmr_vms, &id, vm, xa_limit_31b, GFP_KERNEL);
	if (err) {
		vm->detaching = true;
		mutex_unlock(&vmr_vms_lock);
		mmu_notifier_unregister(&vm->mn, vm->mm);
		/* A ->release that ran before detaching was set queued the work. */
		cancel_work_sync(&vm->gone_work);
		mutex_destroy(&vm->lock);
		kfree(vm);
		goto err_put_fd;
	}
	vm->id = id;
	pid = vm->pid;
	vmr_vms_gen++;
	/* Under the lock: before any detach can announce the VM's end. */
	vmr_notify_vm(VMRESET_CMD_VM_ATTACH_NTF, id, pid);
	/* From here on it may be detached; ours keeps it until the reply is out. */
	kref_get(&vm->ref);
	mutex_unlock(&vmr_vms_lock);
	fput(file);

	if (afd >= 0) {
		/* The file's own reference; its ->release detaches. */
		kref_get(&vm->ref);
		afile = anon_inode_getfile("[vmreset-vm]", &vmr_attach_fops, vm,
					   O_RDWR | O_CLOEXEC);
		if (IS_ERR(afile)) {
			err = PTR_ERR(afile);
			vmr_vm_put(vm);
			goto err_abandon;
		}
	}
	err = -EMSGSIZE;
	hdr = genlmsg_put_reply(msg, info, &vmr_genl_family, 0, VMRESET_CMD_VM_ATTACH);
	if (!hdr || nla_put_u32(msg, VMRESET_A_VM_ID, id) ||
	    (afile && nla_put_u32(msg, VMRESET_A_ATTACH_FD, afd)))
		goto err_abandon;
	genlmsg_end(msg, hdr);
	if (afile)
		fd_install(afd, afile);
	vmr_vm_put(vm);
	return genlmsg_reply(msg, info);

err_abandon:
	/* Registered and announced: unlinked again, monitors hear it go. */
	vmr_vm_detach_put(vm);
	if (!IS_ERR_OR_NULL(afile))
		fput(afile);
	vmr_vm_put(vm);
	if (afd >= 0)
		put_unused_fd(afd);
	nlmsg_free(msg);
	return err;
err_unlock:
	mutex_unlock(&vmr_vms_lock);
	mutex_destroy(&vm->lock);
	kfree(vm);
err_put_fd:
	if (afd >= 0)
		put_unused_fd(afd);
err_put_kvm:
	kvm_put_kvm(kvm);
err_fput:
	fput(file);
err_free_msg:
	nlmsg_free(msg);
	return err;
}

/*
 * The VM named in @info with a reference and its lock held, waited for
 * killably (a long operation of the same VM may hold it).
 */
static struct vmr_vm *vmr_vm_get_locked(struct genl_info *info)
{
	struct vmr_vm *vm = vmr_vm_get(info);

	if (IS_ERR(vm))
		return vm;
	if (mutex_lock_killable(&vm->lock)) {
		NL_SET_ERR_MSG(info->extack,
			       "interrupted while waiting for an operation on the VM");
		vmr_vm_put(vm);
		return ERR_PTR(-EINTR);
	}
	return vm;
}

/*
 * The VM's operations in flight finish first, and it stays attached until
 * they have: after our answer none is left, and an attach of the same VM
 * (EEXIST until then) cannot interleave with one. Operations that were
 * waiting behind us find it detached.
 */
int vmr_nl_vm_detach_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vmr_vm *vm;
	bool own;

	vm = vmr_vm_get_locked(info);
	if (IS_ERR(vm))
		return PTR_ERR(vm);
	own = vmr_vm_detach_put(vm);	/* ours still holds it */
	mutex_unlock(&vm->lock);
	vmr_vm_put(vm);
	if (!own) {
		/* Its fd was closed or its VMM exited meanwhile. */
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
				    "no such VM");
		return -ENOENT;
	}
	return 0;
}

static void vmr_put_parts(struct vmr_parts *p)
{
	while (p->n--)
		fput(p->s[p->n].file);
	kvfree(p->s);
	p->s = NULL;
	p->n = p->cap = 0;
}

/*
 * Append a part, growing the array geometrically (it is filled under the
 * VMM's mmap_lock and kvm->srcu).
 */
static int vmr_add_part(struct vmr_parts *p, struct vm_area_struct *vma,
			u64 gpa, unsigned long lo, unsigned long hi)
{
	struct vmr_inode *vi = VMR_I(file_inode(vma->vm_file));
	pgoff_t start = vma->vm_pgoff + ((lo - vma->vm_start) >> PAGE_SHIFT);
	pgoff_t nr = (hi - lo) >> PAGE_SHIFT;
	struct vmr_slot *last = p->n ? &p->s[p->n - 1] : NULL, *ns;

	/* The next pages of the same file at the next addresses (a split VMA). */
	if (last && last->vi == vi &&
	    last->gpa + ((u64)last->nr << PAGE_SHIFT) == gpa &&
	    last->start + last->nr == start) {
		last->nr += nr;
		return 0;
	}
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 16;

		if (p->n >= VMR_MAX_PARTS)
			return -E2BIG;
		ns = kvmalloc_array(cap, sizeof(*ns), GFP_KERNEL);
		if (!ns)
			return -ENOMEM;
		if (p->n)
			memcpy(ns, p->s, p->n * sizeof(*ns));
		kvfree(p->s);
		p->s = ns;
		p->cap = cap;
	}
	/* The VMA holds the file while we hold mmap_lock. */
	p->s[p->n++] = (struct vmr_slot){
		.file = get_file(vma->vm_file),
		.vi = vi,
		.gpa = gpa,
		.start = start,
		.nr = nr,
	};
	return 0;
}

static int vmr_cmp_file(const void *a, const void *b)
{
	const struct vmr_slot *x = a, *y = b;

	if (x->vi != y->vi)
		return x->vi < y->vi ? -1 : 1;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int vmr_cmp_gpa(const void *a, const void *b)
{
	const struct vmr_slot *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/*
 * Mark each file's first part, so that an operation acts once per file:
 * sorted by file, then back into guest-physical order (parts never
 * overlap there, so both orders are total).
 */
static void vmr_mark_first(struct vmr_parts *p)
{
	int i;

	sort(p->s, p->n, sizeof(*p->s), vmr_cmp_file, NULL);
	for (i = 0; i < p->n; i++)
		p->s[i].first = !i || p->s[i].vi != p->s[i - 1].vi;
	sort(p->s, p->n, sizeof(*p->s), vmr_cmp_gpa, NULL);
}

/*
 * The vmresetfs memory behind the VM's memslots (address space 0), in
 * guest-physical order: one part per run of a file's pages, whatever the
 * VMAs a memslot spans. Only shared mappings count: in a private one guest
 * writes would go to anonymous copies no snapshot sees. A memslot without
 * vmresetfs memory is left out; one only partly backed by it (other
 * memory, holes) or by a private mapping of it fails with EINVAL if
 * @strict (an operation there would miss part of the VM) and contributes
 * its vmresetfs parts otherwise. Returns 0 or a negative errno, said in
 * @extack; vmr_put_parts() releases the parts.
 */
static int vmr_vm_parts(struct vmr_vm *vm, struct vmr_parts *p, bool strict,
			struct netlink_ext_ack *extack)
{
	struct kvm_memslot_iter iter;
	struct kvm_memslots *slots;
	int idx, err = 0;

	*p = (struct vmr_parts){};
	if (!mmget_not_zero(vm->mm))
		return -ESRCH;		/* the callers say what it means to them */
	if (mmap_read_lock_killable(vm->mm)) {
		mmput(vm->mm);
		NL_SET_ERR_MSG(extack, "interrupted while waiting for the VM's memory map");
		return -EINTR;
	}
	idx = srcu_read_lock(&vm->kvm->srcu);
	slots = __kvm_memslots(vm->kvm, 0);
	kvm_for_each_memslot_in_gfn_range(&iter, slots, 0, U64_MAX) {
		struct kvm_memory_slot *slot = iter.slot;
		unsigned long hva = slot->userspace_addr, next = hva;
		unsigned long end = hva + (slot->npages << PAGE_SHIFT);
		u64 gpa = (u64)slot->base_gfn << PAGE_SHIFT;
		VMA_ITERATOR(vmi, vm->mm, hva);
		struct vm_area_struct *vma;
		bool other = false, has_vmr = false, private = false;

		for_each_vma_range(vmi, vma, end) {
			unsigned long lo = max(hva, vma->vm_start);
			unsigned long hi = min(end, vma->vm_end);

			if (vma->vm_start > next)
				other = true;		/* a hole */
			next = vma->vm_end;
			if (!vma->vm_file || !vmr_is_vmr_file(vma->vm_file)) {
				other = true;
				continue;
			}
			/*
			 * vmr_mmap() refuses private mappings; should one
			 * ever get through, it is not ours to snapshot.
			 * VM_MAYSHARE: a shared mapping of a read-only fd
			 * has no VM_SHARED but is still shared.
			 */
			if (!(vma->vm_flags & VM_MAYSHARE)) {
				private = true;
				continue;
			}
			/*
			 * Per memslot: its first run may merge into the
			 * previous memslot's last part.
			 */
			has_vmr = true;
			err = vmr_add_part(p, vma, gpa + (lo - hva), lo, hi);
			if (err) {
				if (err == -E2BIG)
					NL_SET_ERR_MSG(extack,
						       "too many mappings behind the VM's memslots");
				goto out;
			}
		}
		if (next < end)
			other = true;
		if (!strict)
			continue;
		if (private) {
			NL_SET_ERR_MSG(extack,
				       "a memslot maps vmresetfs memory MAP_PRIVATE: guest writes would escape");
			err = -EINVAL;
			goto out;
		}
		if (other && has_vmr) {
			NL_SET_ERR_MSG(extack, "a memslot is only partly vmresetfs memory");
			err = -EINVAL;
			goto out;
		}
	}
out:
	srcu_read_unlock(&vm->kvm->srcu, idx);
	mmap_read_unlock(vm->mm);
	mmput(vm->mm);
	if (err)
		vmr_put_parts(p);
	else
		vmr_mark_first(p);
	return err;
}

/*
 * Resolve the VM and its files, checking the caller's rights on each, and
 * allocate the @cmd reply into @reply, if there is one, first of all.
 * Returns 0 with a reference on the VM and its lock held (vmr_vm_finish()
 * undoes both), or a negative errno (and no reply).
 */
static int vmr_vm_prepare(struct genl_info *info, struct vmr_vm **vmp,
			  struct vmr_parts *p, struct vmr_reply *reply, u8 cmd)
{
	struct vmr_vm *vm;
	int err, i;

	if (reply) {
		err = vmr_reply_new(reply, info, cmd);
		if (err)
			return err;
	}
	vm = vmr_vm_get_locked(info);
	if (IS_ERR(vm)) {
		if (reply)
			vmr_reply_free(reply);
		return PTR_ERR(vm);
	}
	/* A VM_DETACH we waited behind. */
	err = -ENOENT;
	if (READ_ONCE(vm->detaching)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
				    "no such VM");
		goto err;
	}
	err = vmr_vm_parts(vm, p, true, info->extack);
	if (err == -ESRCH)
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
				    "the VM's process is exiting");
	if (err)
		goto err;
	for (i = 0; i < p->n; i++) {
		if (!vmr_may_manage(p->s[i].vi)) {
			NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
					    "no write permission on a file of the VM");
			vmr_put_parts(p);
			err = -EACCES;
			goto err;
		}
	}
	*vmp = vm;
	return 0;

err:
	mutex_unlock(&vm->lock);
	vmr_vm_put(vm);
	if (reply)
		vmr_reply_free(reply);
	return err;
}

/* Undo vmr_vm_prepare(); an operation that failed (@err) drops its reply. */
static int vmr_vm_finish(struct vmr_vm *vm, struct vmr_parts *p,
			 struct vmr_reply *reply, int err)
{
	mutex_unlock(&vm->lock);
	vmr_put_parts(p);
	vmr_vm_put(vm);
	if (err && reply)
		vmr_reply_free(reply);
	return err;
}

int vmr_nl_vm_snapshot_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vmr_reply reply;
	struct vmr_parts p;
	struct vmr_vm *vm;
	u64 dirty = 0, d = 0;
	int err, i;
	u32 id;

	err = vmr_vm_prepare(info, &vm, &p, &reply, VMRESET_CMD_VM_SNAPSHOT);
	if (err)
		return err;
	for (i = 0; i < p.n && !err; i++) {
		if (!p.s[i].first)
			continue;
		err = vmr_op_snapshot(p.s[i].vi, &d);
		dirty += d;
	}
	if (err)
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
				    "interrupted part way: snapshot again");
	else
		atomic64_inc(&vm->snapshots);
	id = vm->id;
	if (vmr_vm_finish(vm, &p, &reply, err))
		return err;
	return vmr_reply_send(&reply, info, VMRESET_A_VM_ID, id,
			      VMRESET_A_DIRTY_PAGES, dirty, 0, 0);
}

int vmr_nl_vm_revert_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *fa = info->attrs[VMRESET_A_FLAGS];
	u64 flags = fa ? nla_get_u64(fa) : 0, reverted = 0, kept = 0, r, k;
	struct vmr_reply reply;
	struct vmr_parts p;
	struct vmr_vm *vm;
	int i, err;
	u32 id;

	if (flags & ~VMRESET_REVERT_F_ALL) {
		NL_SET_ERR_MSG_ATTR(info->extack, fa, "unknown flags");
		return -EINVAL;
	}
	err = vmr_vm_prepare(info, &vm, &p, &reply, VMRESET_CMD_VM_REVERT);
	if (err)
		return err;
	/* All or nothing: no file may lack a snapshot. */
	for (i = 0; i < p.n; i++)
		if (!READ_ONCE(p.s[i].vi->has_snap)) {
			NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
					    "a file of the VM has no snapshot");
			err = -ENODATA;
			goto out;
		}
	for (i = 0; i < p.n; i++) {
		if (!p.s[i].first)
			continue;
		err = vmr_op_revert(p.s[i].vi, flags, &r, &k);
		if (err) {
			/* A fatal signal or an allocation; earlier files are reverted. */
			if (err == -EINTR)
				NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
						    "interrupted part way: revert again");
			else
				NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_VM_ID],
						    "revert failed part way: revert again");
			break;
		}
		reverted += r;
		kept += k;
	}
	if (!err && !(flags & VMRESET_REVERT_F_DRY_RUN)) {
		atomic64_inc(&vm->reverts);
		atomic64_add(reverted, &vm->reverted_pages);
	}
out:
	id = vm->id;
	if (vmr_vm_finish(vm, &p, &reply, err))
		return err;
	return vmr_reply_send(&reply, info, VMRESET_A_VM_ID, id,
			      VMRESET_A_REVERTED_PAGES, reverted,
			      VMRESET_A_KEPT_PAGES, kept);
}

int vmr_nl_vm_preserve_doit(struct sk_buff *skb, struct genl_info *info)
{
	bool add = info->genlhdr->cmd == VMRESET_CMD_VM_PRESERVE_ADD;
	u64 gpa, len, end, lo, hi;
	pgoff_t start, stop;
	struct vmr_parts p;
	struct vmr_vm *vm;
	int i, hit = 0, err;

	if (GENL_REQ_ATTR_CHECK(info, VMRESET_A_OFFSET) ||
	    GENL_REQ_ATTR_CHECK(info, VMRESET_A_LENGTH))
		return -EINVAL;
	gpa = nla_get_u64(info->attrs[VMRESET_A_OFFSET]);
	len = nla_get_u64(info->attrs[VMRESET_A_LENGTH]);
	if (vmr_byte_range(gpa, len, &start, &stop)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_OFFSET],
				    "range must be page-aligned, non-empty and not wrap");
		return -EINVAL;
	}
	end = gpa + len;
	err = vmr_vm_prepare(info, &vm, &p, NULL, 0);
	if (err)
		return err;
	for (i = 0; i < p.n && !err; i++) {
		u64 sgpa = p.s[i].gpa, send = sgpa + ((u64)p.s[i].nr << PAGE_SHIFT);

		lo = max(gpa, sgpa);
		hi = min(end, send);
		if (lo >= hi)
			continue;
		hit++;
		start = p.s[i].start + ((lo - sgpa) >> PAGE_SHIFT);
		stop = p.s[i].start + ((hi - sgpa) >> PAGE_SHIFT);
		err = vmr_op_preserve(p.s[i].vi, add, start, stop);
	}
	vmr_vm_finish(vm, &p, NULL, err);
	if (err == -ENOSPC)
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_OFFSET],
				    "too many preserved ranges in a file of the VM");
	else if (err == -EINTR)
		NL_SET_ERR_MSG(info->extack, "interrupted while waiting for a file of the VM");
	else if (!err && !hit) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[VMRESET_A_OFFSET],
				    "no vmresetfs memory at these guest addresses");
		err = -EINVAL;
	}
	return err;
}

/* What vmr_put_vm() needs for a VM of @n parts, beyond the genetlink header. */
static size_t vmr_vm_msg_size(int n)
{
	size_t part = nla_total_size(0) + 4 * nla_total_size_64bit(sizeof(u64));

	return 3 * nla_total_size(sizeof(u32)) +
	       3 * nla_total_size_64bit(sizeof(u64)) + nla_total_size(0) +
	       n * part;
}

static int vmr_put_vm(struct sk_buff *skb, struct vmr_vm *vm, struct vmr_parts *p)
{
	struct nlattr *nest, *one;
	int i;

	if (nla_put_u32(skb, VMRESET_A_VM_ID, vm->id) ||
	    nla_put_u32(skb, VMRESET_A_PID, vm->pid) ||
	    nla_put_u32(skb, VMRESET_A_UID, from_kuid_munged(&init_user_ns, vm->uid)) ||
	    nla_put_u64_64bit(skb, VMRESET_A_SNAPSHOTS,
			      atomic64_read(&vm->snapshots), VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_REVERTS,
			      atomic64_read(&vm->reverts), VMRESET_A_PAD) ||
	    nla_put_u64_64bit(skb, VMRESET_A_REVERTED_PAGES,
			      atomic64_read(&vm->reverted_pages), VMRESET_A_PAD))
		return -EMSGSIZE;
	if (!p)
		return 0;	/* the VMM is exiting: no memslots to show */
	nest = nla_nest_start(skb, VMRESET_A_SLOTS);
	if (!nest)
		return -EMSGSIZE;
	for (i = 0; i < p->n; i++) {
		struct vmr_slot *s = &p->s[i];

		one = nla_nest_start(skb, VMRESET_A_SLOT);
		if (!one ||
		    nla_put_u64_64bit(skb, VMRESET_A_SLOT_GPA, s->gpa, 0) ||
		    nla_put_u64_64bit(skb, VMRESET_A_SLOT_SIZE,
				      (u64)s->nr << PAGE_SHIFT, 0) ||
		    nla_put_u64_64bit(skb, VMRESET_A_SLOT_OBJ_ID, s->vi->id, 0) ||
		    nla_put_u64_64bit(skb, VMRESET_A_SLOT_OFFSET,
				      (u64)s->start << PAGE_SHIFT, 0))
			return -EMSGSIZE;
		nla_nest_end(skb, one);
	}
	nla_nest_end(skb, nest);
	return 0;
}

/* The parts of a VM to show; *@pp is NULL if its VMM is exiting. */
static int vmr_get_parts(struct vmr_vm *vm, struct vmr_parts *p,
			 struct vmr_parts **pp, struct netlink_ext_ack *extack)
{
	int err = vmr_vm_parts(vm, p, false, extack);

	*pp = err ? NULL : p;
	return err == -ESRCH ? 0 : err;
}

int vmr_nl_vm_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct vmr_parts parts, *p;
	struct sk_buff *msg;
	struct vmr_vm *vm;
	void *hdr;
	int err;

	/* Without vm->lock: a long REVERT of the VM does not hold up GET. */
	vm = vmr_vm_get(info);
	if (IS_ERR(vm))
		return PTR_ERR(vm);
	err = vmr_get_parts(vm, &parts, &p, info->extack);
	if (err)
		goto out;
	err = -ENOMEM;
	msg = genlmsg_new(vmr_vm_msg_size(p ? p->n : 0), GFP_KERNEL);
	if (!msg)
		goto out_parts;
	err = -EMSGSIZE;
	hdr = genlmsg_put_reply(msg, info, &vmr_genl_family, 0, VMRESET_CMD_VM_GET);
	if (!hdr || vmr_put_vm(msg, vm, p)) {
		nlmsg_free(msg);
		goto out_parts;
	}
	genlmsg_end(msg, hdr);
	err = genlmsg_reply(msg, info);
out_parts:
	if (p)
		vmr_put_parts(p);
out:
	vmr_vm_put(vm);
	return err;
}

/*
 * Dump messages as large as a reader's 32 KiB buffer takes, from the
 * first round on (which would otherwise get a page): a VM of up to some
 * 600 parts then fits in one.
 */
int vmr_nl_vm_get_start(struct netlink_callback *cb)
{
	cb->min_dump_alloc = SKB_WITH_OVERHEAD(32768);
	return 0;
}

int vmr_nl_vm_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	unsigned long id = cb->args[0];
	struct vmr_parts parts, *p;
	struct vmr_vm *vm;
	void *hdr;
	int err = 0;

	for (;; id++) {
		/* Each VM with a reference, so the lock is not held across a VMM's mmap_lock. */
		mutex_lock(&vmr_vms_lock);
		cb->seq = vmr_vms_gen;
		while ((vm = xa_find(&vmr_vms, &id, ULONG_MAX, XA_PRESENT)) &&
		       (vm->detaching || !vmr_may_manage_vm(vm)))
			id++;
		if (vm)
			kref_get(&vm->ref);
		mutex_unlock(&vmr_vms_lock);
		if (!vm)
			break;
		err = vmr_get_parts(vm, &parts, &p, cb->extack);
		if (err) {
			vmr_vm_put(vm);
			break;
		}
		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid,
				  cb->nlh->nlmsg_seq, &vmr_genl_family,
				  NLM_F_MULTI, VMRESET_CMD_VM_GET);
		if (hdr)
			genl_dump_check_consistent(cb, hdr);
		err = hdr ? vmr_put_vm(skb, vm, p) : -EMSGSIZE;
		if (p)
			vmr_put_parts(p);
		vmr_vm_put(vm);
		if (err) {
			if (hdr)
				genlmsg_cancel(skb, hdr);
			break;
		}
		genlmsg_end(skb, hdr);
	}
	cb->args[0] = id;
	/* A full skb ends this round; the dump goes on in the next. */
	if (err == -EMSGSIZE && skb->len)
		return skb->len;
	if (err == -EMSGSIZE)
		NL_SET_ERR_MSG(cb->extack,
			       "a VM has too many memory parts for a dump message: get it by its ID");
	return err ?: skb->len;
}

int __init vmr_vm_init(void)
{
	vmr_wq = alloc_workqueue("vmreset", 0, 0);
	return vmr_wq ? 0 : -ENOMEM;
}

/* Module unload (no netlink requests any more): let go of every VM. */
void vmr_vm_exit(void)
{
	struct vmr_vm *vm;
	unsigned long id;
	LIST_HEAD(gone);

	mutex_lock(&vmr_vms_lock);
	xa_for_each(&vmr_vms, id, vm)
		if (vmr_vm_unlink(vm, false))	/* the family is gone */
			list_add(&vm->exit_link, &gone);
	mutex_unlock(&vmr_vms_lock);
	while (!list_empty(&gone)) {
		vm = list_first_entry(&gone, struct vmr_vm, exit_link);
		list_del(&vm->exit_link);
		vmr_vm_put(vm);
	}
	/* Works that are tearing down a VM of their own finish here. */
	destroy_workqueue(vmr_wq);
}
