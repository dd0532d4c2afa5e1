/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio-blk over virtio-mmio (virtio 1.x, split ring, one queue), backed
 * by a vmresetfs file that is snapshotted and reverted with guest RAM.
 * The whole device is this struct: its snapshot is a copy.
 */
#ifndef VMM_VIRTIO_BLK_H
#define VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#define VBLK_MMIO_BASE	0xd0000000u
#define VBLK_IRQ	5
#define VBLK_QUEUE_MAX	256

struct vblk {
	uint64_t capacity;		/* 512-byte sectors */
	uint32_t dev_features_sel, drv_features_sel;
	uint64_t drv_features;
	uint32_t status, isr, queue_sel;
	uint32_t q_num;
	bool q_ready;
	uint64_t q_desc, q_avail, q_used;
	uint16_t last_avail;
	uint64_t reqs, bytes_read, bytes_written;
};

struct vmm;

void vblk_init(struct vblk *b, uint64_t bytes);
/* An MMIO access inside the device's page; returns true to raise its IRQ. */
bool vblk_mmio(struct vmm *vm, struct vblk *b, uint64_t off, bool write,
	       uint8_t *data, uint32_t len);

#endif
