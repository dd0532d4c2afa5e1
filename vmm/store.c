// SPDX-License-Identifier: GPL-2.0
/*
 * The ready snapshot in vmreset-store and back (docs/vmm.md, "Save and
 * restore"): guest RAM is the snapshot NAME, with the VM state (struct
 * vmm_state) as its opaque state blob, and the disk, if any, NAME.disk.
 * vmreset-store runs as a program: the store's format, keys and locking
 * are its own. Both files are unlinked on vmresetfs, so it reaches them
 * through /proc/PID/fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "vmm.h"
#include "vmreset.h"

/* Runs vmreset-store with @argv (argv[0] is replaced by the tool). */
static int run_store(struct vmm *vm, const struct vmm_store *s, char **argv)
{
	char msg[512] = "";
	size_t got = 0;
	int p[2], status;
	ssize_t n;
	pid_t pid;

	argv[0] = (char *)(s->tool ? s->tool : "vmreset-store");
	if (pipe2(p, O_CLOEXEC))
		return vmm_fail(vm, errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return vmm_fail(vm, errno, "fork: %s", strerror(errno));
	}
	if (!pid) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(p[1], 2);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], msg + got, sizeof(msg) - 1 - got)) > 0)
		got += n;
	close(p[0]);
	msg[got] = 0;
	msg[strcspn(msg, "\n")] = 0;
	if (waitpid(pid, &status, 0) < 0)
		return vmm_fail(vm, errno, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return vmm_fail(vm, EIO, "%s %s %s: %s", argv[0], argv[1], argv[2],
				msg[0] ? msg : "failed");
	return 0;
}

static void fd_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/%d/fd/%d", (int)getpid(), fd);
}

int vmm_save(struct vmm *vm, const struct vmm_store *s, const char *name)
{
	char ram[64], disk[64], state[] = "/tmp/vmm-state.XXXXXX", dname[256];
	int fd, ret;

	if (!vm->snapshotted || !vm->snap)
		return vmm_fail(vm, EINVAL, "no ready snapshot to save (boot first)");
	if (strlen(name) + 6 > sizeof(dname))
		return vmm_fail(vm, ENAMETOOLONG, "snapshot name '%s' is too long", name);
	/* Between requests RAM and disk hold the ready snapshot: reset after each. */
	fd = mkstemp(state);
	if (fd < 0)
		return vmm_fail(vm, errno, "%s: %s", state, strerror(errno));
	ret = write(fd, vm->snap, sizeof(*vm->snap)) == (ssize_t)sizeof(*vm->snap) && !fsync(fd)
		? 0 : vmm_fail(vm, EIO, "writing the VM state to %s: %s", state, strerror(errno));
	close(fd);
	fd_path(ram, sizeof(ram), vm->ram_fd);
	if (!ret) {
		char *argv[] = { NULL, "save", ram, (char *)s->url, "--key", (char *)s->key,
				 "--name", (char *)name, "--state", state, NULL };

		ret = run_store(vm, s, argv);
	}
	unlink(state);
	if (ret || vm->disk_fd < 0)
		return ret;
	fd_path(disk, sizeof(disk), vm->disk_fd);
	snprintf(dname, sizeof(dname), "%s.disk", name);
	char *argv[] = { NULL, "save", disk, (char *)s->url, "--key", (char *)s->key,
			 "--name", dname, NULL };

	return run_store(vm, s, argv);
}

int vmm_restore(struct vmm *vm, const struct vmm_store *s, const char *name)
{
	char ram[64], disk[64], state[] = "/tmp/vmm-state.XXXXXX", dname[256];
	struct vmm_state *st;
	ssize_t n;
	int fd, ret;

	if (vm->booted || vm->snapshotted)
		return vmm_fail(vm, EBUSY, "the VM already ran: restore into a new one");
	if (strlen(name) + 6 > sizeof(dname))
		return vmm_fail(vm, ENAMETOOLONG, "snapshot name '%s' is too long", name);
	fd = mkstemp(state);
	if (fd < 0)
		return vmm_fail(vm, errno, "%s: %s", state, strerror(errno));
	close(fd);
	fd_path(ram, sizeof(ram), vm->ram_fd);
	char *argv[] = { NULL, "load", (char *)s->url, (char *)name, ram, "--key", (char *)s->key,
			 "--state-out", state, NULL };

	ret = run_store(vm, s, argv);
	if (!ret && vm->disk_fd >= 0) {
		fd_path(disk, sizeof(disk), vm->disk_fd);
		snprintf(dname, sizeof(dname), "%s.disk", name);
		char *dargv[] = { NULL, "load", (char *)s->url, dname, disk, "--key",
				  (char *)s->key, NULL };

		ret = run_store(vm, s, dargv);
	}
	/*
	 * The store re-applied the ranges preserved on the files at save (the
	 * guest's declared ones with --keep); --hc-preserve off promises
	 * requests that only --keep outlives a reset (docs/vmm.md).
	 */
	if (!ret && vm->o.hc == VMM_HC_OFF)
		ret = vmm_ranges_keep_only(vm);
	st = ret ? NULL : malloc(sizeof(*st));
	if (!ret && !st)
		ret = vmm_fail(vm, ENOMEM, "out of memory");
	if (!ret) {
		fd = open(state, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, st, sizeof(*st)) : -1;
		if (fd >= 0)
			close(fd);
		if (n != (ssize_t)sizeof(*st))
			ret = vmm_fail(vm, EINVAL, "snapshot '%s': its VM state is %zd bytes, "
				       "this VMM's %zu", name, n, sizeof(*st));
	}
	unlink(state);
	if (ret) {
		free(st);
		return ret;
	}
	return vmm_adopt_state(vm, st);
}

int vmm_adopt_state(struct vmm *vm, struct vmm_state *st)
{
	int ret;

	/* A state made elsewhere: the TSC and kvmclock come from it too. */
	ret = vmm_state_load(vm, st, false);
	if (!ret && (ret = vmreset_snapshot(vm->ram_fd, NULL)))
		ret = vmm_fail(vm, -ret, "SNAPSHOT of guest RAM: %s", strerror(-ret));
	if (!ret && vm->disk_fd >= 0 && (ret = vmreset_snapshot(vm->disk_fd, NULL)))
		ret = vmm_fail(vm, -ret, "SNAPSHOT of the disk: %s", strerror(-ret));
	if (ret) {
		free(st);
		return ret;
	}
	free(vm->snap);
	vm->snap = st;
	vm->snapshotted = vm->ready = vm->booted = true;
	return 0;
}
