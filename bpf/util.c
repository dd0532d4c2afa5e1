// SPDX-License-Identifier: LGPL-2.1-or-later OR MIT
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include "vmreset_bpf.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON	38
#endif
#ifndef CAP_BPF
#define CAP_BPF		39
#endif

static int has_cap(const struct __user_cap_data_struct *d, int cap)
{
	return !!(d[cap / 32].effective & (1U << (cap % 32)));
}

/*
 * Decide up front, from the effective capabilities, so that an
 * unprivileged user gets one clear message instead of libbpf's verifier
 * or EPERM noise (tracing programs need CAP_PERFMON besides CAP_BPF).
 */
__attribute__((visibility("default"))) int vmreset_bpf_check_privilege(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { 0 };

	if (syscall(SYS_capget, &h, d))
		return -errno;
	if (has_cap(d, CAP_SYS_ADMIN) || (has_cap(d, CAP_BPF) && has_cap(d, CAP_PERFMON)))
		return 0;
	return -EPERM;
}
