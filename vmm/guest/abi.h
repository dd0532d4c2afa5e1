/* SPDX-License-Identifier: LGPL-2.1-or-later OR MIT */
/*
 * The guest ABI of vmreset-vmm: how the guest agent and the VMM talk.
 *
 * Two channels, both chosen to cost as few VM exits as possible:
 *
 *  - Doorbells: a 32-bit OUT to VMR_PORT_DOORBELL with a VMR_DB_* command
 *    in EAX. One exit each; the agent makes them after iopl(3).
 *  - The mailbox: a VMR_MBOX_SIZE range of guest-physical memory that the
 *    VMM's e820 map marks reserved, so the guest kernel never uses it. The
 *    agent maps it from /dev/mem (reserved ranges above 1 MiB are not
 *    claimed, so CONFIG_IO_STRICT_DEVMEM allows it). The VMM sees the same
 *    bytes in its mapping of guest RAM: requests and responses cross it
 *    without an exit per byte.
 *
 * The VMM tells the guest where both live on the kernel command line:
 *
 *     vmreset.mbox=<gpa>        mailbox, VMR_MBOX_SIZE bytes
 *     vmreset.keep=<gpa>,<len>  a reserved range the agent may preserve
 *
 * Life of the agent:
 *
 *  1. It sets up the runtime, loads modules, mounts the disk, then
 *     declares preserved ranges: it writes gpa/len to preserve_gpa and
 *     preserve_len and rings VMR_DB_PRESERVE; the VMM answers in
 *     preserve_result (0 or -errno). The VMM accepts these only before
 *     the ready snapshot: a request cannot make itself permanent.
 *  2. It rings VMR_DB_READY. The VMM takes the ready snapshot at this
 *     exit (vCPUs, devices, memory, disk): every request starts from the
 *     instruction after this OUT, with a mailbox filled by the host.
 *  3. It runs the request (argv, stdin) as a child process, collects
 *     stdout, stderr and the wait status into the mailbox, and rings
 *     VMR_DB_DONE. The VMM reads the response and resets the VM to the
 *     snapshot, which takes the agent back to step 3 with a new request.
 *     (Without a reset, the OUT returns and the agent rings READY again.)
 *
 * Anything in the guest can read VMR_PORT_COUNTER with a 32-bit IN: it
 * returns a counter that lives in the VMM, outside the guest, and adds one
 * to it (a resource the host controls, for transactions that must retry).
 * `vmreset-guest counter` in the image does this.
 */
#ifndef VMRESET_VMM_ABI_H
#define VMRESET_VMM_ABI_H

#include <stdint.h>

#define VMR_PORT_DOORBELL	0x7e0	/* OUT, 32-bit: VMR_DB_* */
#define VMR_PORT_COUNTER	0x7e4	/* IN, 32-bit: host counter, post-increment */

#define VMR_DB_READY		1	/* runtime ready: snapshot here */
#define VMR_DB_DONE		2	/* response in the mailbox */
#define VMR_DB_PRESERVE		3	/* preserve_gpa/len: keep across resets */
#define VMR_DB_FAIL		4	/* agent setup failed; message in err */

#define VMR_MBOX_MAGIC		0x4d524d56	/* "VMRM" */
#define VMR_MBOX_VERSION	1
#define VMR_MBOX_SIZE		0x100000	/* 1 MiB */

/* Offsets of the areas inside the mailbox. */
#define VMR_MBOX_REQ_OFF	0x1000		/* argv strings, then stdin */
#define VMR_MBOX_REQ_SIZE	0x3f000
#define VMR_MBOX_OUT_OFF	0x40000		/* handler's stdout */
#define VMR_MBOX_OUT_SIZE	0x80000
#define VMR_MBOX_ERR_OFF	0xc0000		/* handler's stderr */
#define VMR_MBOX_ERR_SIZE	0x40000

/* resp_flags */
#define VMR_RESP_OUT_TRUNC	(1u << 0)	/* stdout exceeded its area */
#define VMR_RESP_ERR_TRUNC	(1u << 1)
#define VMR_RESP_EXEC_FAILED	(1u << 2)	/* the handler could not start */

/*
 * The first page of the mailbox. The host writes the request part, the
 * agent the response part. All little-endian, naturally aligned.
 */
struct vmr_mbox {
	uint32_t magic;			/* host: VMR_MBOX_MAGIC */
	uint32_t version;		/* host: VMR_MBOX_VERSION */
	uint64_t seq;			/* host: request number */

	/* request (host -> guest) */
	uint32_t argc;			/* strings at REQ_OFF, NUL-terminated */
	uint32_t args_len;		/* bytes of those strings */
	uint32_t stdin_len;		/* bytes at REQ_OFF + args_len */
	uint32_t req_flags;		/* none defined: 0 */

	/* response (guest -> host) */
	uint64_t resp_seq;		/* = seq once the response is complete */
	int32_t wait_status;		/* waitpid() status of the handler */
	uint32_t resp_flags;		/* VMR_RESP_* */
	uint32_t out_len, err_len;
	int64_t guest_mono_ns;		/* guest CLOCK_MONOTONIC at start */
	int64_t guest_real_ns;		/* guest CLOCK_REALTIME at start */
	int64_t run_ns;			/* handler run time, guest clock */

	/* VMR_DB_PRESERVE (guest writes gpa/len, host writes result) */
	uint64_t preserve_gpa;
	uint64_t preserve_len;
	int32_t preserve_result;
	uint32_t pad;
};

/*
 * The stream transport, for VMMs that are not vmreset-vmm (QEMU): the
 * same request and response, framed on a virtio-serial port named
 * VMR_PORT_NAME (QEMU: -device virtserialport,name=org.vmreset.agent).
 * The agent uses it when the kernel command line has no vmreset.mbox=, or
 * has vmreset.transport=virtio. Every message is a struct vmr_frame
 * followed by len payload bytes, all little-endian:
 *
 *   guest -> host  VMR_FRAME_READY     the runtime is up: snapshot now. The
 *                                      agent then blocks reading the port,
 *                                      so a VM restored to this point waits
 *                                      for its next request.
 *   host -> guest  VMR_FRAME_REQUEST   struct vmr_frame_req, argc
 *                                      NUL-terminated strings (args_len
 *                                      bytes), then stdin_len bytes of stdin
 *   guest -> host  VMR_FRAME_RESPONSE  struct vmr_frame_resp, out_len bytes
 *                                      of stdout, then err_len of stderr;
 *                                      seq is the request's
 *   guest -> host  VMR_FRAME_FAIL      setup failed: the message (text)
 *
 * The limits are the mailbox's (VMR_MBOX_REQ_SIZE for args and stdin,
 * VMR_MBOX_OUT_SIZE and VMR_MBOX_ERR_SIZE for the outputs): both
 * transports run the same code.
 */
#define VMR_PORT_NAME		"org.vmreset.agent"
#define VMR_FRAME_MAGIC		0x46524d56	/* "VMRF" */
#define VMR_FRAME_READY		1
#define VMR_FRAME_REQUEST	2
#define VMR_FRAME_RESPONSE	3
#define VMR_FRAME_FAIL		4

struct vmr_frame {
	uint32_t magic;			/* VMR_FRAME_MAGIC */
	uint32_t type;			/* VMR_FRAME_* */
	uint64_t seq;			/* request number, echoed */
	uint32_t len;			/* payload bytes that follow */
	uint32_t version;		/* VMR_MBOX_VERSION */
};

struct vmr_frame_req {
	uint32_t argc, args_len, stdin_len, req_flags;
};

struct vmr_frame_resp {
	int32_t wait_status;
	uint32_t resp_flags;
	uint32_t out_len, err_len;
	int64_t guest_mono_ns, guest_real_ns, run_ns;
};

/*
 * Preserved ranges by hypercall (VMRESET_HC_PRESERVE, see
 * include/uapi/linux/vmreset.h), for any VMM: only CPL 0 may issue it, so
 * the image carries a tiny module, vmreset_guest.ko (hc/), that issues it
 * for what is written to VMR_HC_PARAM ("GPA LEN [FLAGS]");
 * `vmreset-guest hc-preserve [-d] GPA LEN` loads it and does that.
 */
#define VMR_HC_MODULE		"/lib/modules/%s/extra/vmreset_guest.ko"
#define VMR_HC_PARAM		"/sys/module/vmreset_guest/parameters/preserve"
#define VMR_HC_RESULT		"/sys/module/vmreset_guest/parameters/result"

#endif /* VMRESET_VMM_ABI_H */
