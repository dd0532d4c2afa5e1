// SPDX-License-Identifier: GPL-2.0
/*
 * Legacy devices: see dev.h. Under nested emulation every port access is
 * a VM exit costing hundreds of microseconds, so each device answers the
 * way that lets Linux probe it in the fewest accesses.
 */
#include <string.h>
#include <time.h>
#include "dev.h"

/* 8250 registers (offset from base) and bits. */
#define UART_IER_RDI	0x01
#define UART_IER_THRI	0x02
#define UART_IIR_NONE	0x01
#define UART_IIR_THRI	0x02
#define UART_IIR_FIFO	0xc0
#define UART_LCR_DLAB	0x80
#define UART_MCR_LOOP	0x10
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40

void uart_init(struct uart *u)
{
	memset(u, 0, sizeof(*u));
	u->dll = 12;	/* 9600 baud until the guest programs it */
}

static uint8_t uart_iir(struct uart *u)
{
	if ((u->ier & UART_IER_THRI) && u->thre_pending)
		return UART_IIR_THRI | UART_IIR_FIFO;
	return UART_IIR_NONE | UART_IIR_FIFO;
}

static uint8_t uart_msr(struct uart *u)
{
	uint8_t m = u->mcr;

	if (!(u->mcr & UART_MCR_LOOP))
		return 0xb0;	/* DCD, DSR, CTS: a cable that is always there */
	/* Loopback: OUT2->DCD, OUT1->RI, RTS->CTS, DTR->DSR (the 8250 probe). */
	return ((m & 0x08) << 4) | ((m & 0x04) << 4) | ((m & 0x02) << 3) |
	       ((m & 0x01) << 5);
}

bool uart_io(struct uart *u, uint16_t port, bool write, uint8_t *data,
	     struct vmm *vm, uart_tx_fn tx, bool *irq_edge)
{
	bool dlab = u->lcr & UART_LCR_DLAB, was = u->irq;

	if (port < COM1_BASE || port > COM1_BASE + 7)
		return false;
	switch (port - COM1_BASE) {
	case 0:
		if (write) {
			if (dlab) {
				u->dll = *data;
			} else {
				if (!(u->mcr & UART_MCR_LOOP))
					tx(vm, *data);
				u->thre_pending = true;
			}
		} else {
			*data = dlab ? u->dll : 0;
		}
		break;
	case 1:
		if (write) {
			if (dlab) {
				u->dlm = *data;
			} else {
				/* Enabling THRI with THR empty raises it at once. */
				if ((*data & UART_IER_THRI) && !(u->ier & UART_IER_THRI))
					u->thre_pending = true;
				u->ier = *data & 0x0f;
			}
		} else {
			*data = dlab ? u->dlm : u->ier;
		}
		break;
	case 2:
		if (write) {
			u->fcr = *data;
		} else {
			*data = uart_iir(u);
			/* Reading IIR acknowledges THRE. */
			if ((*data & 0x0f) == UART_IIR_THRI)
				u->thre_pending = false;
		}
		break;
	case 3:
		if (write)
			u->lcr = *data;
		else
			*data = u->lcr;
		break;
	case 4:
		if (write)
			u->mcr = *data & 0x1f;
		else
			*data = u->mcr;
		break;
	case 5:
		if (!write)
			*data = UART_LSR_THRE | UART_LSR_TEMT;
		break;
	case 6:
		if (!write)
			*data = uart_msr(u);
		break;
	case 7:
		if (write)
			u->scr = *data;
		else
			*data = u->scr;
		break;
	}
	u->irq = (uart_iir(u) & UART_IIR_NONE) == 0;
	*irq_edge = u->irq && !was;
	return true;
}

/* i8042: port 0x60 data, 0x64 status/command. */
#define I8042_STR_OBF	0x01
#define I8042_STR_SYS	0x04

void i8042_init(struct i8042 *k)
{
	memset(k, 0, sizeof(*k));
	k->ctr = 0x30;	/* both ports disabled, no interrupts */
}

static void i8042_push(struct i8042 *k, uint8_t v)
{
	k->outbuf = v;
	k->has_out = true;
}

bool i8042_io(struct i8042 *k, uint16_t port, bool write, uint8_t *data)
{
	if (port == 0x64 && !write) {
		*data = I8042_STR_SYS | (k->has_out ? I8042_STR_OBF : 0);
	} else if (port == 0x60 && !write) {
		*data = k->outbuf;
		k->has_out = false;
	} else if (port == 0x64) {
		k->cmd = 0;
		switch (*data) {
		case 0x20:
			i8042_push(k, k->ctr);
			break;
		case 0x60:
		case 0xd1:
			k->cmd = *data;	/* the next data byte is for us */
			break;
		case 0xaa:
			i8042_push(k, 0x55);	/* self-test passed */
			break;
		case 0xa9:
		case 0xab:
			i8042_push(k, 0x00);	/* port tests pass */
			break;
		case 0xfe:
			k->reset = true;
			break;
		default:
			break;
		}
	} else if (port == 0x60) {
		if (k->cmd == 0x60)
			k->ctr = *data;
		else if (k->cmd == 0xd1 && !(*data & 1))
			k->reset = true;	/* output port: reset line low */
		k->cmd = 0;
	} else {
		return false;
	}
	return true;
}

/* CMOS/RTC: the time in BCD, updates never in progress. */
static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

void cmos_init(struct cmos *c)
{
	memset(c, 0, sizeof(*c));
	c->nvram[0x0a] = 0x26;
	c->nvram[0x0b] = 0x02;	/* 24-hour, BCD */
	c->nvram[0x0d] = 0x80;	/* battery good */
}

bool cmos_io(struct cmos *c, uint16_t port, bool write, uint8_t *data)
{
	time_t t;
	struct tm tm;
	uint8_t i;

	if (port != 0x70 && port != 0x71)
		return false;
	if (port == 0x70) {
		if (write)
			c->index = *data & 0x7f;
		else
			*data = c->index;
		return true;
	}
	i = c->index;
	if (write) {
		if (i > 0x0d)
			c->nvram[i] = *data;
		else if (i == 0x0b)
			c->nvram[i] = (*data & ~0x04) | 0x02;
		return true;
	}
	t = time(NULL);
	gmtime_r(&t, &tm);
	switch (i) {
	case 0x00: *data = bcd(tm.tm_sec); break;
	case 0x02: *data = bcd(tm.tm_min); break;
	case 0x04: *data = bcd(tm.tm_hour); break;
	case 0x06: *data = bcd(tm.tm_wday + 1); break;
	case 0x07: *data = bcd(tm.tm_mday); break;
	case 0x08: *data = bcd(tm.tm_mon + 1); break;
	case 0x09: *data = bcd(tm.tm_year % 100); break;
	case 0x32: *data = bcd(19 + tm.tm_year / 100); break;
	default: *data = c->nvram[i]; break;
	}
	return true;
}
