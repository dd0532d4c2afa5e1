// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk over virtio-mmio: see virtio_blk.h. Requests are served
 * synchronously on the notifying vCPU with pread/pwrite on the disk file
 * (a write(2) into vmresetfs is caught like any other, so REVERT undoes it).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "vmm.h"

#define VIRTIO_F_VERSION_1	32
#define VIRTIO_BLK_F_FLUSH	9
#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4
#define VIRTIO_BLK_T_GET_ID	8
#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2
#define VRING_DESC_F_NEXT	1
#define VRING_DESC_F_WRITE	2
#define DEVICE_FEATURES		((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_BLK_F_FLUSH))

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

void vblk_init(struct vblk *b, uint64_t bytes)
{
	memset(b, 0, sizeof(*b));
	b->capacity = bytes / 512;
}

/* Guest memory at @gpa, @len bytes, or NULL if any of it is outside RAM. */
static void *gpa(struct vmm *vm, uint64_t addr, uint64_t len)
{
	if (addr >= vm->mem_size || len > vm->mem_size - addr)
		return NULL;
	return vm->ram + addr;
}

static uint8_t do_req(struct vmm *vm, struct vblk *b, struct vring_desc *d,
		      unsigned int n, uint32_t *written)
{
	uint8_t hdr[16];
	uint32_t type;
	uint64_t sector, off;
	void *h = gpa(vm, d[0].addr, 16);

	if (!h || d[0].len < 16 || (d[0].flags & VRING_DESC_F_WRITE))
		return VIRTIO_BLK_S_IOERR;
	memcpy(hdr, h, 16);
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	off = sector * 512;
	b->reqs++;
	for (unsigned int i = 1; i + 1 < n; i++) {
		void *buf = gpa(vm, d[i].addr, d[i].len);
		ssize_t r;

		if (!buf)
			return VIRTIO_BLK_S_IOERR;
		switch (type) {
		case VIRTIO_BLK_T_IN:
			if (!(d[i].flags & VRING_DESC_F_WRITE) ||
			    off + d[i].len > b->capacity * 512)
				return VIRTIO_BLK_S_IOERR;
			r = pread(vm->disk_fd, buf, d[i].len, off);
			if (r != (ssize_t)d[i].len)
				return VIRTIO_BLK_S_IOERR;
			*written += d[i].len;
			b->bytes_read += d[i].len;
			break;
		case VIRTIO_BLK_T_OUT:
			if (off + d[i].len > b->capacity * 512)
				return VIRTIO_BLK_S_IOERR;
			r = pwrite(vm->disk_fd, buf, d[i].len, off);
			if (r != (ssize_t)d[i].len)
				return VIRTIO_BLK_S_IOERR;
			b->bytes_written += d[i].len;
			break;
		case VIRTIO_BLK_T_GET_ID: {
			static const char id[20] = "vmreset-disk";
			uint32_t l = d[i].len < sizeof(id) ? d[i].len : sizeof(id);

			memcpy(buf, id, l);
			*written += l;
			break;
		}
		case VIRTIO_BLK_T_FLUSH:
			break;
		default:
			return VIRTIO_BLK_S_UNSUPP;
		}
		off += d[i].len;
	}
	return type <= VIRTIO_BLK_T_OUT || type == VIRTIO_BLK_T_FLUSH ||
	       type == VIRTIO_BLK_T_GET_ID ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_UNSUPP;
}

static bool process_queue(struct vmm *vm, struct vblk *b)
{
	uint16_t *avail = gpa(vm, b->q_avail, 4 + 2 * b->q_num);
	uint8_t *used = gpa(vm, b->q_used, 4 + 8 * b->q_num);
	struct vring_desc *desc = gpa(vm, b->q_desc, 16 * b->q_num);
	bool any = false;

	if (!avail || !used || !desc || !b->q_ready)
		return false;
	while (b->last_avail != __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE)) {
		uint16_t head = avail[2 + b->last_avail % b->q_num], idx = head, uidx;
		struct vring_desc chain[VBLK_QUEUE_MAX];
		unsigned int n = 0;
		uint32_t written = 0, id;
		uint8_t st, *status;

		while (n < b->q_num && idx < b->q_num) {
			memcpy(&chain[n], &desc[idx], sizeof(chain[0]));
			n++;
			if (!(chain[n - 1].flags & VRING_DESC_F_NEXT))
				break;
			idx = chain[n - 1].next;
		}
		b->last_avail++;
		if (n < 2 || !(status = gpa(vm, chain[n - 1].addr, 1)))
			st = VIRTIO_BLK_S_IOERR;
		else
			st = do_req(vm, b, chain, n, &written);
		if (n >= 2 && status) {
			*status = st;
			written++;
		}
		memcpy(&uidx, used + 2, 2);
		id = head;
		memcpy(used + 4 + 8 * (uidx % b->q_num), &id, 4);
		memcpy(used + 8 + 8 * (uidx % b->q_num), &written, 4);
		__atomic_store_n((uint16_t *)(used + 2), (uint16_t)(uidx + 1), __ATOMIC_RELEASE);
		any = true;
	}
	if (any)
		b->isr |= 1;
	return any;
}

bool vblk_mmio(struct vmm *vm, struct vblk *b, uint64_t off, bool write,
	       uint8_t *data, uint32_t len)
{
	uint32_t v = 0;

	if (off >= 0x100) {		/* config space: capacity, then zeros */
		uint8_t cfg[64] = { 0 };

		memcpy(cfg, &b->capacity, 8);
		if (!write && off - 0x100 + len <= sizeof(cfg))
			memcpy(data, cfg + off - 0x100, len);
		else if (!write)
			memset(data, 0, len);
		return false;
	}
	if (len != 4) {
		if (!write)
			memset(data, 0, len);
		return false;
	}
	if (write)
		memcpy(&v, data, 4);
	switch (off) {
	case 0x000: v = 0x74726976; break;		/* "virt" */
	case 0x004: v = 2; break;			/* virtio-mmio version 2 */
	case 0x008: v = 2; break;			/* block device */
	case 0x00c: v = 0x53524d56; break;		/* vendor "VMRS" */
	case 0x010:
		v = b->dev_features_sel == 0 ? (uint32_t)DEVICE_FEATURES :
		    b->dev_features_sel == 1 ? (uint32_t)(DEVICE_FEATURES >> 32) : 0;
		break;
	case 0x014: if (write) b->dev_features_sel = v; break;
	case 0x020:
		if (write && b->drv_features_sel < 2) {
			int sh = 32 * b->drv_features_sel;

			b->drv_features = (b->drv_features & ~(0xffffffffULL << sh)) |
					  ((uint64_t)v << sh);
		}
		break;
	case 0x024: if (write) b->drv_features_sel = v; break;
	case 0x030: if (write) b->queue_sel = v; break;
	case 0x034: v = b->queue_sel == 0 ? VBLK_QUEUE_MAX : 0; break;
	case 0x038:
		if (write && b->queue_sel == 0 && v && v <= VBLK_QUEUE_MAX && !(v & (v - 1)))
			b->q_num = v;
		break;
	case 0x044:
		if (write && b->queue_sel == 0)
			b->q_ready = v & 1;
		else
			v = b->queue_sel == 0 && b->q_ready;
		break;
	case 0x050:
		if (write && v == 0)
			return process_queue(vm, b);
		break;
	case 0x060: v = b->isr; break;
	case 0x064: if (write) b->isr &= ~v; break;
	case 0x070:
		if (write) {
			b->status = v;
			if (v == 0) {	/* device reset */
				uint64_t cap = b->capacity;

				vblk_init(b, cap * 512);
			}
		} else {
			v = b->status;
		}
		break;
	case 0x080: if (write) b->q_desc = (b->q_desc & ~0xffffffffULL) | v; break;
	case 0x084: if (write) b->q_desc = (b->q_desc & 0xffffffffULL) | ((uint64_t)v << 32); break;
	case 0x090: if (write) b->q_avail = (b->q_avail & ~0xffffffffULL) | v; break;
	case 0x094: if (write) b->q_avail = (b->q_avail & 0xffffffffULL) | ((uint64_t)v << 32); break;
	case 0x0a0: if (write) b->q_used = (b->q_used & ~0xffffffffULL) | v; break;
	case 0x0a4: if (write) b->q_used = (b->q_used & 0xffffffffULL) | ((uint64_t)v << 32); break;
	case 0x0fc: v = 0; break;			/* config generation */
	default: v = 0; break;
	}
	if (!write)
		memcpy(data, &v, 4);
	return false;
}
