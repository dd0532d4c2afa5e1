/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRESET_QMP_H
#define VMRESET_QMP_H

#include <json-c/json.h>

#define QMP_MAX_EVENTS	64

struct qmp {
	int fd;
	size_t len;
	char buf[1 << 20];
	json_object *ev[QMP_MAX_EVENTS];	/* events seen while waiting */
	int nev;
	char err[512];				/* the last failure */
};

int qmp_connect(struct qmp *q, const char *path, int timeout_ms);
void qmp_close(struct qmp *q);
json_object *qmp_read(struct qmp *q, int timeout_ms);
/* The whole reply (put it), or NULL with q->err set (QMP's desc). */
json_object *qmp_cmd(struct qmp *q, const char *json, int timeout_ms);
/* 0 or -EIO; *ret (if given) gets a reference to "return". */
int qmp_simple(struct qmp *q, const char *json, json_object **ret, int timeout_ms);
json_object *qmp_wait_event(struct qmp *q, const char *name, const char *key,
			    const char *val, int timeout_ms);
void qmp_drop_events(struct qmp *q, const char *name);
int qmp_pump(struct qmp *q);
json_object *qmp_take_event(struct qmp *q, const char *name);
int qmp_job_wait(struct qmp *q, const char *id, int timeout_ms);

#endif
