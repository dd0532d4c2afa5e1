/* SPDX-License-Identifier: GPL-2.0 */
/* What vmreset-trace and vmreset-hc share (not part of libvmreset-bpf). */
#ifndef VMRESET_BPF_TOOL_H
#define VMRESET_BPF_TOOL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <bpf/libbpf.h>

/* libbpf's debug chatter only when asked for: VMRESET_BPF_DEBUG=1. */
static inline int vmr_libbpf_print(enum libbpf_print_level level,
				   const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !getenv("VMRESET_BPF_DEBUG"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

#endif /* VMRESET_BPF_TOOL_H */
