#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make_targets.sh - host-side checks of the build system: `make help` and
# `make clean` must work, and say nothing on stderr, on a machine without
# kernel headers and without libnl or json-c (help must not look for a
# kernel; no Makefile may stop while it is read). Run by scripts/check.sh
# (HOST_TESTS).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tap.sh"
top=$here/..
echo "TAP version 13"
echo "1..2"

# quiet COMMAND...: exit status 0 and nothing on stderr.
quiet() {
	err=$("$@" 2>&1 >/dev/null)
	rc=$?
	[ "$rc" = 0 ] && [ -z "$err" ] && return 0
	echo "exit status $rc; stderr:"
	printf '%s\n' "$err"
	return 1
}

# No headers: a KVER nothing is installed for. No libraries: a pkg-config
# that finds no .pc file.
nothing=(env PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH=)
tap "make help without kernel headers or libraries" \
	quiet "${nothing[@]}" make -s -C "$top" help KVER=0.0-none
# A dry run: -n still reads every Makefile and runs the sub-makes (with
# -n); a real clean would remove what check.sh has just built.
tap "make clean without kernel headers or libraries" \
	quiet "${nothing[@]}" make -s -n -C "$top" clean KVER=0.0-none BUILD=/nonexistent
[ "$fails" = 0 ]
