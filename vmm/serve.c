// SPDX-License-Identifier: GPL-2.0
/*
 * The serve loop: JSON requests, one object per line, from a stream or
 * from each connection to a UNIX socket, each answered with one JSON line
 * (json-c). In the library, not in the CLI, so that the selftests drive
 * the very code `vmreset-vmm serve` runs, against a VM they booted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <json-c/json.h>
#include "vmm.h"

const char *vmm_outcome_name(enum vmm_outcome o)
{
	static const char *const n[] = { "ok", "timeout", "crash", "error" };

	return (unsigned int)o < 4 ? n[o] : "error";
}

static json_object *resp_obj(const struct vmm_resp *r, unsigned int attempts, bool ok)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "outcome", json_object_new_string(vmm_outcome_name(r->outcome)));
	json_object_object_add(o, "success", json_object_new_boolean(ok));
	json_object_object_add(o, "attempts", json_object_new_int(attempts));
	if (r->outcome == VMM_OK) {
		if (WIFEXITED(r->wait_status))
			json_object_object_add(o, "exit", json_object_new_int(WEXITSTATUS(r->wait_status)));
		else if (WIFSIGNALED(r->wait_status))
			json_object_object_add(o, "signal", json_object_new_int(WTERMSIG(r->wait_status)));
		json_object_object_add(o, "stdout", json_object_new_string_len(r->out ? r->out : "", r->out_len));
		json_object_object_add(o, "stderr", json_object_new_string_len(r->err ? r->err : "", r->err_len));
		if (r->flags & (VMR_RESP_OUT_TRUNC | VMR_RESP_ERR_TRUNC))
			json_object_object_add(o, "truncated", json_object_new_boolean(1));
	} else {
		json_object_object_add(o, "why", json_object_new_string(r->why));
	}
	json_object_object_add(o, "run_us", json_object_new_int64(r->run_us));
	json_object_object_add(o, "reset_us", json_object_new_int64(r->reset_us));
	json_object_object_add(o, "revert_us", json_object_new_int64(r->revert_us));
	json_object_object_add(o, "load_us", json_object_new_int64(r->load_us));
	json_object_object_add(o, "reverted_pages", json_object_new_int64(r->reverted_pages));
	/* The guest's preserve hypercalls, when it made any (docs/vmm.md). */
	if (r->preserve_applied || r->preserve_refused) {
		json_object_object_add(o, "preserve_applied", json_object_new_int64(r->preserve_applied));
		json_object_object_add(o, "preserve_refused", json_object_new_int64(r->preserve_refused));
	}
	return o;
}

static char *to_line(json_object *o)
{
	char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));

	json_object_put(o);
	return s;
}

char *vmm_resp_json(const struct vmm_resp *r, unsigned int attempts, bool ok)
{
	return to_line(resp_obj(r, attempts, ok));
}

/* An integer member in [lo, hi], or an error naming it. */
static int get_int(json_object *o, const char *key, int lo, int hi, int *out, char *err, size_t len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < lo ||
	    json_object_get_int64(v) > hi) {
		snprintf(err, len, "\"%s\": need an integer from %d to %d, not %s", key, lo, hi,
			 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
		return -1;
	}
	*out = json_object_get_int(v);
	return 0;
}

char *vmm_serve_line(struct vmm *vm, const struct vmm_txn *deflt, const char *line)
{
	json_object *o = NULL, *v, *r;
	struct json_tokener *tok = json_tokener_new();
	enum json_tokener_error jerr;
	struct vmm_txn t = *deflt;
	char *argv[257], errbuf[512] = "";
	struct vmm_req req = { 0 };
	struct vmm_resp resp;
	unsigned int attempts = 0;
	bool ok = false, own_match = false;
	regex_t match;
	int n = 0, i;

	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, line, strlen(line));
	jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success || !json_object_is_type(o, json_type_object)) {
		snprintf(errbuf, sizeof(errbuf), "request is not a JSON object: %s",
			 jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "wrong type");
		goto reply;
	}
	if (!json_object_object_get_ex(o, "argv", &v) || !json_object_is_type(v, json_type_array) ||
	    json_object_array_length(v) < 1 || json_object_array_length(v) > 256) {
		snprintf(errbuf, sizeof(errbuf), "\"argv\": need an array of 1 to 256 strings");
		goto reply;
	}
	for (n = 0; n < (int)json_object_array_length(v); n++) {
		json_object *a = json_object_array_get_idx(v, n);

		if (!json_object_is_type(a, json_type_string)) {
			snprintf(errbuf, sizeof(errbuf), "\"argv\"[%d]: not a string", n);
			goto reply;
		}
		argv[n] = (char *)json_object_get_string(a);
	}
	argv[n] = NULL;
	req.argc = n;
	req.argv = argv;
	if (json_object_object_get_ex(o, "stdin", &v)) {
		if (!json_object_is_type(v, json_type_string)) {
			snprintf(errbuf, sizeof(errbuf), "\"stdin\": not a string");
			goto reply;
		}
		req.in = json_object_get_string(v);
		req.in_len = json_object_get_string_len(v);
	}
	i = t.timeout_ms;
	if (get_int(o, "timeout_ms", 0, 86400000, &i, errbuf, sizeof(errbuf)))
		goto reply;
	t.timeout_ms = i;
	i = t.retry;
	if (get_int(o, "retry", 0, 1000, &i, errbuf, sizeof(errbuf)))
		goto reply;
	t.retry = i;
	if (get_int(o, "success_exit", -1, 255, &t.success_exit, errbuf, sizeof(errbuf)))
		goto reply;
	if (json_object_object_get_ex(o, "success_match", &v)) {
		if (!json_object_is_type(v, json_type_string) ||
		    regcomp(&match, json_object_get_string(v), REG_EXTENDED | REG_NOSUB | REG_NEWLINE)) {
			snprintf(errbuf, sizeof(errbuf), "\"success_match\": not an extended regex: %s",
				 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
			goto reply;
		}
		own_match = true;
		t.match = &match;
	}
	if (vmm_transact(vm, &t, &req, &resp, &attempts, &ok))
		snprintf(errbuf, sizeof(errbuf), "%s", vmm_error(vm));
reply:
	if (errbuf[0]) {
		r = json_object_new_object();
		json_object_object_add(r, "outcome", json_object_new_string("error"));
		json_object_object_add(r, "success", json_object_new_boolean(0));
		json_object_object_add(r, "why", json_object_new_string(errbuf));
	} else {
		r = resp_obj(&resp, attempts, ok);
		vmm_resp_free(&resp);
	}
	if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "id", &v))
		json_object_object_add(r, "id", json_object_get(v));
	if (own_match)
		regfree(&match);
	json_object_put(o);
	return to_line(r);
}

int vmm_serve_stream(struct vmm *vm, const struct vmm_txn *deflt, FILE *in, FILE *out)
{
	char *line = NULL, *resp;
	size_t cap = 0;
	ssize_t n;
	int ret = 0;

	while ((n = getline(&line, &cap, in)) > 0) {
		if (n == 1 && line[0] == '\n')
			continue;
		resp = vmm_serve_line(vm, deflt, line);
		if (!resp) {
			ret = vmm_fail(vm, ENOMEM, "out of memory");
			break;
		}
		fprintf(out, "%s\n", resp);
		fflush(out);
		free(resp);
		if (!vm->ready) {
			ret = vmm_fail(vm, EIO, "the VM cannot serve any more: %s", vm->err);
			break;
		}
	}
	free(line);
	return ret;
}

int vmm_serve_socket(struct vmm *vm, const struct vmm_txn *deflt, const char *path,
		     unsigned int max_conns, void (*listening)(const char *path))
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	unsigned int conns = 0;
	int lfd, ret = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return vmm_fail(vm, ENAMETOOLONG, "socket %s: path too long (at most %zu bytes)",
				path, sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return vmm_fail(vm, errno, "socket %s: %s", path, strerror(errno));
	unlink(path);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 16)) {
		ret = vmm_fail(vm, errno, "socket %s: %s", path, strerror(errno));
		close(lfd);
		return ret;
	}
	if (listening)
		listening(path);
	/* A client that goes away must not kill the VMM. */
	signal(SIGPIPE, SIG_IGN);
	while (vm->ready && (!max_conns || conns < max_conns)) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), d;
		FILE *in = NULL, *out = NULL;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			ret = vmm_fail(vm, errno, "socket %s: accept: %s", path, strerror(errno));
			break;
		}
		conns++;
		d = dup(c);
		in = fdopen(c, "r");
		out = d >= 0 ? fdopen(d, "w") : NULL;
		if (in && out)
			ret = vmm_serve_stream(vm, deflt, in, out);
		if (in)
			fclose(in);
		else
			close(c);
		if (out)
			fclose(out);
		else if (d >= 0)
			close(d);
		if (ret)
			break;
	}
	close(lfd);
	unlink(path);
	return ret;
}
