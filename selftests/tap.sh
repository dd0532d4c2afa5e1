# SPDX-License-Identifier: GPL-2.0
# TAP helpers for the shell selftests (sourced, not run).
n=0 fails=0

# tap DESCRIPTION COMMAND...: one test case; its output shows on failure.
tap() {
	desc=$1
	shift
	n=$((n + 1))
	if "$@" > /tmp/tap.out 2>&1; then
		echo "ok $n $desc"
	else
		echo "not ok $n $desc"
		sed 's/^/# /' /tmp/tap.out
		fails=$((fails + 1))
	fi
}

# contains TEXT COMMAND...: the command's output (and errors) contain TEXT.
contains() {
	text=$1
	shift
	out=$("$@" 2>&1)
	echo "$out"
	echo "$out" | grep -qF -- "$text"
}
