#!/usr/bin/env bash
# Host-side checks of the build system, run by check.sh before the test VM
# (or alone: check.sh -t make_targets). One TAP line each, "[host]".
#
# `make help` and `make clean` must work, and say nothing on stderr, on a
# machine without kernel headers and without libnl or json-c: help must not
# look for a kernel, and no Makefile may fail while it is being read.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
fails=0

# quiet DESCRIPTION COMMAND...: exit status 0 and nothing on stderr.
quiet() {
	local desc=$1 err rc
	shift
	err=$("$@" 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" = 0 ] && [ -z "$err" ]; then
		echo "ok [host] $desc"
	else
		echo "not ok [host] $desc"
		echo "    exit status $rc; stderr:"
		printf '%s\n' "$err" | sed 's/^/    /'
		fails=$((fails + 1))
	fi
}

# No headers: a KVER nothing is installed for. No libraries: pkg-config
# that finds no .pc file.
nothing=(env PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH=)
quiet "make help without kernel headers or libraries" \
	"${nothing[@]}" make -s -C "$top" help KVER=0.0-none
# A dry run (-n still reads every Makefile, and runs the sub-makes with -n):
# the real clean would remove what check.sh just built.
quiet "make clean without kernel headers or libraries" \
	"${nothing[@]}" make -s -n -C "$top" clean KVER=0.0-none BUILD=/nonexistent
[ "$fails" = 0 ]
