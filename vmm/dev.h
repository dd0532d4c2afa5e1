/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Legacy devices of vmreset-vmm: an 8250 UART on COM1, enough of an i8042
 * for Linux to find no keyboard quickly and to reboot through it, and a
 * CMOS clock. Each device is a plain struct: its snapshot is a copy.
 */
#ifndef VMM_DEV_H
#define VMM_DEV_H

#include <stdbool.h>
#include <stdint.h>

#define COM1_BASE	0x3f8
#define COM1_IRQ	4

struct uart {
	uint8_t ier, lcr, mcr, lsr_extra, scr, dll, dlm, fcr;
	bool thre_pending;	/* a "THR empty" interrupt is owed */
	bool irq;		/* the line's level as last raised */
};

struct i8042 {
	uint8_t ctr, outbuf, cmd;
	bool has_out, reset;	/* reset: the guest pulsed the reset line */
};

struct cmos {
	uint8_t index;
	uint8_t nvram[128];
};

struct vmm;

/* @out: a byte the guest transmitted. */
typedef void (*uart_tx_fn)(struct vmm *vm, uint8_t c);

/* Port I/O; return true if the port is this device's. */
bool uart_io(struct uart *u, uint16_t port, bool write, uint8_t *data,
	     struct vmm *vm, uart_tx_fn tx, bool *irq_edge);
void uart_init(struct uart *u);
bool i8042_io(struct i8042 *k, uint16_t port, bool write, uint8_t *data);
void i8042_init(struct i8042 *k);
bool cmos_io(struct cmos *c, uint16_t port, bool write, uint8_t *data);
void cmos_init(struct cmos *c);

#endif
