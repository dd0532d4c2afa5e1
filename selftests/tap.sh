# SPDX-License-Identifier: GPL-2.0
# TAP helpers for the shell selftests (sourced, not run).
n=0 fails=0

# tap DESCRIPTION COMMAND...: one test case; its output shows on failure.
tap() {
	desc=$1
	shift
	n=$((n + 1))
	# Not a fixed name: host-side suites run beside each other.
	tap_out=$(mktemp "${TMPDIR:-/tmp}/tap.XXXXXX") || return 1
	if "$@" > "$tap_out" 2>&1; then
		echo "ok $n $desc"
	else
		echo "not ok $n $desc"
		sed 's/^/# /' "$tap_out"
		fails=$((fails + 1))
	fi
	rm -f "$tap_out"
}

# contains TEXT COMMAND...: the command's output (and errors) contain TEXT.
contains() {
	text=$1
	shift
	out=$("$@" 2>&1)
	echo "$out"
	echo "$out" | grep -qF -- "$text"
}
