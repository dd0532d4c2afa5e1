// SPDX-License-Identifier: LGPL-2.1-or-later OR MIT
/*
 * The drain side of guest-declared preserved ranges: take the requests
 * the service recorded for a VM off its pinned map, oldest first, and
 * apply them over netlink. Taking (deleting) an entry before applying it
 * makes two drainers of one VM apply each request once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "vmreset_bpf.h"
#include "hc.h"
#include "vmfd.h"
#include "vmfd.skel.h"

#define EXPORT		__attribute__((visibility("default")))

struct find_pid {
	uint32_t id, pid;
	int found;
};

static int find_vm(const struct vmreset_vm *vm, void *arg)
{
	struct find_pid *f = arg;

	if (vm->id == f->id) {
		f->pid = vm->pid;
		f->found = 1;
	}
	return 0;
}

#define MAX_VMS_PER_VMM		64

static struct vmfd_bpf *vmfd_skel;
static int vmfd_err;
static pthread_once_t vmfd_once = PTHREAD_ONCE_INIT;

/* Loaded once per process: a drain comes with every revert. */
static void vmfd_load(void)
{
	vmfd_skel = vmfd_bpf__open_and_load();
	if (!vmfd_skel)
		vmfd_err = errno ? -errno : -EINVAL;
}

/* The KVM VMs process @pid holds (fd and struct kvm), at most @max. */
static int vm_files(uint32_t pid, struct vmfd_rec *out, int max)
{
	union bpf_iter_link_info linfo = { .task.tid = pid };
	LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo,
		    .link_info_len = sizeof(linfo));
	struct bpf_link *link;
	struct vmfd_rec rec;
	int fd, n = 0;
	ssize_t got;

	pthread_once(&vmfd_once, vmfd_load);
	if (!vmfd_skel)
		return vmfd_err;
	link = bpf_program__attach_iter(vmfd_skel->progs.kvm_vm_files, &opts);
	if (!link)
		return -errno;
	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0) {
		n = -errno;
		goto out;
	}
	while ((got = read(fd, &rec, sizeof(rec))) == sizeof(rec))
		if (n < max)
			out[n++] = rec;
	if (got < 0)
		n = -errno;
	close(fd);
out:
	bpf_link__destroy(link);
	return n;
}

struct taken {
	struct hc_key key;
	struct hc_req req;
};

static int cmp_taken(const void *a, const void *b)
{
	const struct taken *x = a, *y = b;

	if (x->key.kvm != y->key.kvm)
		return x->key.kvm < y->key.kvm ? -1 : 1;
	return x->key.seq < y->key.seq ? -1 : x->key.seq > y->key.seq;
}

static void account(int done_fd, uint64_t kvm, const struct hc_done *add)
{
	struct hc_done d = { 0 };

	bpf_map_lookup_elem(done_fd, &kvm, &d);
	d.drained += add->drained;
	d.applied += add->applied;
	d.no_memory += add->no_memory;
	d.no_space += add->no_space;
	d.failed += add->failed;
	bpf_map_update_elem(done_fd, &kvm, &d, BPF_ANY);
}

EXPORT int vmreset_hc_drain(struct vmreset_nl *nl, uint32_t vm_id, int vm_fd,
			    struct vmreset_hc_result *res)
{
	struct vmfd_rec vms[MAX_VMS_PER_VMM];
	struct find_pid f = { .id = vm_id };
	uint64_t kvm = 0;
	int nvms;
	struct taken *t = NULL, *nt;
	struct hc_key key, next;
	struct hc_req req;
	struct hc_done add;
	size_t n = 0, cap = 0, i, j;
	int pend_fd, done_fd, err;
	struct vmreset_hc_result dummy;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	err = vmreset_nl_vm_list(nl, find_vm, &f);
	if (err)
		return err;
	if (!f.found)
		return -ENOENT;
	pend_fd = bpf_obj_get(HC_PIN_DIR "/hc_pending");
	if (pend_fd < 0)
		return errno == EPERM || errno == EACCES ? -errno : -ENOENT;
	done_fd = bpf_obj_get(HC_PIN_DIR "/hc_done");
	if (done_fd < 0) {
		close(pend_fd);
		return -ENOENT;
	}
	/* Which of the VMM's VMs is this one: requests are keyed by VM. */
	nvms = vm_files(f.pid, vms, MAX_VMS_PER_VMM);
	if (nvms <= 0) {
		/* 0: the VMM is exiting, no VM left to apply anything to. */
		err = nvms;
		goto out;
	}
	for (int k = 0; k < nvms && vm_fd >= 0; k++)
		if (vms[k].fd == (uint32_t)vm_fd)
			kvm = vms[k].kvm;
	if (vm_fd < 0 && nvms == 1)
		kvm = vms[0].kvm;
	if (!kvm) {
		err = vm_fd < 0 ? -EBUSY : -EBADF;
		goto out;
	}
	for (err = bpf_map_get_next_key(pend_fd, NULL, &next); !err;
	     err = bpf_map_get_next_key(pend_fd, &key, &next)) {
		key = next;
		/* The pid too: a dead VM's struct kvm may have been reused. */
		if (key.kvm != kvm || bpf_map_lookup_elem(pend_fd, &key, &req) ||
		    req.pid != f.pid)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			nt = realloc(t, cap * sizeof(*t));
			if (!nt) {
				err = -ENOMEM;
				goto out;
			}
			t = nt;
		}
		t[n].key = key;
		t[n].req = req;
		n++;
	}
	err = 0;
	qsort(t, n, sizeof(*t), cmp_taken);
	for (i = 0; i < n; i = j) {
		memset(&add, 0, sizeof(add));
		for (j = i; j < n && t[j].key.kvm == t[i].key.kvm; j++) {
			int ret;

			if (bpf_map_delete_elem(pend_fd, &t[j].key))
				continue;	/* another drainer took it */
			add.drained++;
			ret = vmreset_nl_vm_preserve(nl, vm_id,
						     !(t[j].req.flags & VMRESET_HC_F_DEL),
						     t[j].req.gpa, t[j].req.len);
			if (!ret)
				add.applied++;
			else if (ret == -EINVAL)
				add.no_memory++;
			else if (ret == -ENOSPC)
				add.no_space++;
			else
				add.failed++;
		}
		account(done_fd, t[i].key.kvm, &add);
		res->applied += add.applied;
		res->no_memory += add.no_memory;
		res->no_space += add.no_space;
		res->failed += add.failed;
		err += add.drained;
	}
out:
	free(t);
	close(pend_fd);
	close(done_fd);
	return err;
}

EXPORT int vmreset_hc_vm_revert(struct vmreset_nl *nl, uint32_t vm_id, int vm_fd,
				uint64_t flags, uint64_t *reverted_pages,
				uint64_t *kept_pages, struct vmreset_hc_result *res)
{
	int err = vmreset_hc_drain(nl, vm_id, vm_fd, res);

	/* No service loaded: no guest request can be waiting. */
	if (err < 0 && err != -ENOENT)
		return err;
	if (err == -ENOENT && res)
		memset(res, 0, sizeof(*res));
	return vmreset_nl_vm_revert(nl, vm_id, flags, reverted_pages, kept_pages);
}
