// SPDX-License-Identifier: GPL-2.0
/*
 * The VMM of the README's session, for readme_session: a KVM VM whose
 * memslots are vmresetfs files, held until the process is killed.
 *
 *   readme_vmm FILE:GPA:SIZE:OFFSET...
 *
 * maps SIZE bytes of each FILE at OFFSET MAP_SHARED and gives them to KVM
 * at guest-physical GPA (numbers in C syntax), then prints "PID FD": its
 * pid and the fd of its KVM VM, what `vmresetctl vm attach` takes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

static int die(const char *what, const char *arg)
{
	fprintf(stderr, "readme_vmm: %s '%s': %s\n", what, arg, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long long gpa, size, off;
	int kvm, vm;

	if (argc < 2) {
		fprintf(stderr, "usage: readme_vmm FILE:GPA:SIZE:OFFSET...\n");
		return 2;
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return die("cannot open", "/dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return die("cannot create a VM on", "/dev/kvm");
	for (int i = 1; i < argc; i++) {
		struct kvm_userspace_memory_region r = { .slot = (uint32_t)i };
		unsigned long long v[3];
		char *spec = strdup(argv[i]), *c, *end;
		void *p;
		int fd;

		/* FILE may hold colons; the three numbers do not. */
		for (int k = 2; k >= 0; k--) {
			c = spec ? strrchr(spec, ':') : NULL;
			if (!c) {
				fprintf(stderr, "readme_vmm: bad slot '%s' (FILE:GPA:SIZE:OFFSET)\n",
					argv[i]);
				return 2;
			}
			errno = 0;
			v[k] = strtoull(c + 1, &end, 0);
			if (errno || end == c + 1 || *end) {
				fprintf(stderr, "readme_vmm: bad number in '%s'\n", argv[i]);
				return 2;
			}
			*c = 0;
		}
		gpa = v[0];
		size = v[1];
		off = v[2];
		fd = open(spec, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return die("cannot open", spec);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
		if (p == MAP_FAILED)
			return die("cannot map", spec);
		r.guest_phys_addr = gpa;
		r.memory_size = size;
		r.userspace_addr = (uintptr_t)p;
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
			return die("cannot add a memslot for", argv[i]);
		free(spec);
	}
	printf("%d %d\n", getpid(), vm);
	fflush(stdout);
	for (;;)
		pause();
}
