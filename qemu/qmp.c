// SPDX-License-Identifier: GPL-2.0
/*
 * A QMP client: one command at a time over QEMU's UNIX socket, events
 * remembered while waiting, jobs and migrations waited for. QMP ends every
 * message with "\r\n" and never puts a raw newline inside one, so a line
 * is a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "qmp.h"

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int qmp_connect(struct qmp *q, const char *path, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int64_t end = mono_ms() + timeout_ms;
	json_object *greet;

	memset(q, 0, sizeof(*q));
	q->fd = -1;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd < 0)
			return -errno;
		if (!connect(q->fd, (struct sockaddr *)&a, sizeof(a)))
			break;
		close(q->fd);
		q->fd = -1;
		if (mono_ms() > end)
			return -ETIMEDOUT;
		usleep(20000);
	}
	greet = qmp_read(q, timeout_ms);
	if (!greet || !json_object_object_get_ex(greet, "QMP", NULL)) {
		json_object_put(greet);
		return -EPROTO;
	}
	json_object_put(greet);
	return qmp_simple(q, "{\"execute\":\"qmp_capabilities\"}", NULL, timeout_ms);
}

void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	for (int i = 0; i < q->nev; i++)
		json_object_put(q->ev[i]);
	q->nev = 0;
}

/* The next message, or NULL (EOF, timeout: errno). */
json_object *qmp_read(struct qmp *q, int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;

	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);

		if (nl) {
			json_object *o;

			*nl = 0;
			o = json_tokener_parse(q->buf);
			q->len -= nl + 1 - q->buf;
			memmove(q->buf, nl + 1, q->len);
			if (o)
				return o;
			continue;
		}
		if (q->len == sizeof(q->buf) - 1) {
			errno = EMSGSIZE;
			return NULL;
		}
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		int64_t left = end - mono_ms();
		ssize_t n;

		if (left < 0 || poll(&p, 1, left) == 0) {
			errno = ETIMEDOUT;
			return NULL;
		}
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0)
				errno = ECONNRESET;
			return NULL;
		}
		q->len += n;
	}
}

static void keep_event(struct qmp *q, json_object *o)
{
	if (q->nev == QMP_MAX_EVENTS) {
		json_object_put(q->ev[0]);
		memmove(q->ev, q->ev + 1, --q->nev * sizeof(q->ev[0]));
	}
	q->ev[q->nev++] = o;
}

json_object *qmp_cmd(struct qmp *q, const char *json, int timeout_ms)
{
	size_t len = strlen(json), off = 0;

	q->err[0] = 0;
	while (off < len) {
		ssize_t n = write(q->fd, json + off, len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(q->err, sizeof(q->err), "write to QMP: %s", strerror(errno));
			return NULL;
		}
		off += n;
	}
	for (;;) {
		json_object *o = qmp_read(q, timeout_ms), *v;

		if (!o) {
			snprintf(q->err, sizeof(q->err), "QMP: %s", strerror(errno));
			return NULL;
		}
		if (json_object_object_get_ex(o, "event", NULL)) {
			keep_event(q, o);
			continue;
		}
		if (json_object_object_get_ex(o, "error", &v)) {
			json_object *d;

			snprintf(q->err, sizeof(q->err), "%s",
				 json_object_object_get_ex(v, "desc", &d) ?
				 json_object_get_string(d) : json_object_to_json_string(v));
			json_object_put(o);
			return NULL;
		}
		return o;
	}
}

int qmp_simple(struct qmp *q, const char *json, json_object **ret, int timeout_ms)
{
	json_object *o = qmp_cmd(q, json, timeout_ms), *r;

	if (!o)
		return -EIO;
	if (ret) {
		*ret = json_object_object_get_ex(o, "return", &r) ? json_object_get(r) : NULL;
	}
	json_object_put(o);
	return 0;
}

/*
 * Waits for event @name whose data has @key == @val (NULL: any), taking
 * remembered events first; returns it (put it) or NULL on timeout/EOF.
 */
json_object *qmp_wait_event(struct qmp *q, const char *name, const char *key,
			    const char *val, int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;

	for (;;) {
		for (int i = 0; i < q->nev; i++) {
			json_object *e, *d, *v;

			if (!json_object_object_get_ex(q->ev[i], "event", &e) ||
			    strcmp(json_object_get_string(e), name))
				continue;
			if (key && (!json_object_object_get_ex(q->ev[i], "data", &d) ||
				    !json_object_object_get_ex(d, key, &v) ||
				    strcmp(json_object_get_string(v), val)))
				continue;
			e = q->ev[i];
			memmove(q->ev + i, q->ev + i + 1, (--q->nev - i) * sizeof(q->ev[0]));
			return e;
		}
		int64_t left = end - mono_ms();
		json_object *o;

		if (left < 0) {
			snprintf(q->err, sizeof(q->err), "no %s event in %d ms", name, timeout_ms);
			return NULL;
		}
		o = qmp_read(q, left);
		if (!o) {
			snprintf(q->err, sizeof(q->err), "waiting for %s: %s", name, strerror(errno));
			return NULL;
		}
		if (json_object_object_get_ex(o, "event", NULL))
			keep_event(q, o);
		else
			json_object_put(o);
	}
}

/*
 * Reads what QMP has sent without waiting, remembering its events; 0, or
 * -ECONNRESET once QEMU closed the socket (stop polling it then).
 */
int qmp_pump(struct qmp *q)
{
	for (;;) {
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		json_object *o;
		ssize_t n;

		if (poll(&p, 1, 0) <= 0)
			break;
		if (q->len == sizeof(q->buf) - 1)
			return -EMSGSIZE;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return errno == EINTR || errno == EAGAIN ? 0 : -errno;
		q->len += n;
		/* Whole lines only: a partial one waits for the rest. */
		while (memchr(q->buf, '\n', q->len)) {
			o = qmp_read(q, 0);
			if (!o)
				break;
			if (json_object_object_get_ex(o, "event", NULL))
				keep_event(q, o);
			else
				json_object_put(o);
		}
	}
	return 0;
}

/* Takes the first remembered event named @name (put it), or NULL. */
json_object *qmp_take_event(struct qmp *q, const char *name)
{
	for (int i = 0; i < q->nev; i++) {
		json_object *e, *ev = q->ev[i];

		if (json_object_object_get_ex(ev, "event", &e) &&
		    !strcmp(json_object_get_string(e), name)) {
			memmove(q->ev + i, q->ev + i + 1, (--q->nev - i) * sizeof(q->ev[0]));
			return ev;
		}
	}
	return NULL;
}

/* Forgets remembered events named @name (all with NULL). */
void qmp_drop_events(struct qmp *q, const char *name)
{
	for (int i = 0; i < q->nev; ) {
		json_object *e;

		if (!name || (json_object_object_get_ex(q->ev[i], "event", &e) &&
			      !strcmp(json_object_get_string(e), name))) {
			json_object_put(q->ev[i]);
			memmove(q->ev + i, q->ev + i + 1, (--q->nev - i) * sizeof(q->ev[0]));
		} else {
			i++;
		}
	}
}

/* Runs job @id to its end: 0, or -EIO with the job's error in q->err. */
int qmp_job_wait(struct qmp *q, const char *id, int timeout_ms)
{
	json_object *e = qmp_wait_event(q, "JOB_STATUS_CHANGE", "status", "concluded",
					timeout_ms), *jobs = NULL;
	char cmd[256];
	int ret = 0;

	if (!e)
		return -ETIMEDOUT;
	json_object_put(e);
	if (qmp_simple(q, "{\"execute\":\"query-jobs\"}", &jobs, timeout_ms))
		return -EIO;
	for (size_t i = 0; jobs && i < json_object_array_length(jobs); i++) {
		json_object *j = json_object_array_get_idx(jobs, i), *v;

		if (!json_object_object_get_ex(j, "id", &v) ||
		    strcmp(json_object_get_string(v), id))
			continue;
		if (json_object_object_get_ex(j, "error", &v)) {
			snprintf(q->err, sizeof(q->err), "job %s: %s", id, json_object_get_string(v));
			ret = -EIO;
		}
	}
	json_object_put(jobs);
	{
		json_object *c = json_object_new_object(), *args = json_object_new_object();

		json_object_object_add(args, "id", json_object_new_string(id));
		json_object_object_add(c, "execute", json_object_new_string("job-dismiss"));
		json_object_object_add(c, "arguments", args);
		snprintf(cmd, sizeof(cmd), "%s", json_object_to_json_string(c));
		json_object_put(c);
	}
	{
		char err[sizeof(q->err)];

		memcpy(err, q->err, sizeof(err));
		if (qmp_simple(q, cmd, NULL, timeout_ms) && !ret)
			ret = -EIO;
		else if (ret)
			memcpy(q->err, err, sizeof(err));
	}
	qmp_drop_events(q, "JOB_STATUS_CHANGE");
	return ret;
}
