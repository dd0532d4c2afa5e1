#!/usr/bin/env bash
# Run the selftests in the QEMU test VM, once per kernel.
#
#   check.sh [-n] [-t TEST[/CASE]] [KVER...]     (default kernels: 6.1 6.12)
#
# KVER "debug" is Debian's 6.12 built with KASAN, lockdep, kmemleak and
# fault injection (scripts/debug-kernel.sh; make check-debug): it runs
# selftests/Makefile's list-debug, or list-debug-$VM_DEBUG_SET (make
# check-debug-ci: VM_DEBUG_SET=ci). -n: no host tests.
#
# Prints every test case's TAP line prefixed with the kernel, then one line
# "N passed, N failed, N skipped" over all kernels. Exits non-zero if
# anything failed: a test case, a test program that crashed or hung, a
# kernel log with a WARNING/BUG/"Bad page"/lockdep/leak report, or a guest
# that never reported back.
set -uo pipefail
. "$(dirname "$0")/vm.sh"

only= host=1
while getopts nt:h opt; do
	case $opt in
	n) host=0 ;;
	t) only=$OPTARG ;;
	*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- 6.1 6.12

mkdir -p "$build"
if ! make -s -C "$top" helper selftests > "$build/make-user.log" 2>&1 ||
   ! make -s -C "$top/bench" O="$build/bench" >> "$build/make-user.log" 2>&1; then
	cat "$build/make-user.log"
	echo "0 passed, 1 failed"
	exit 1
fi
# Every test name, including those only the debug kernel runs and those
# that run only when named (ONLY=any lists them).
{ make -s -C "$top/selftests" list ONLY=any; make -s -C "$top/selftests" list-debug; } |
	sort -u > "$build/tests.list"
make -s -C "$top/selftests" host-list > "$build/host-tests.list"
if [ -n "$only" ] && grep -qx "${only%%/*}" "$build/host-tests.list"; then
	set --		# a host test: no VM
elif [ -n "$only" ] && ! grep -qx "${only%%/*}" "$build/tests.list"; then
	echo "check.sh: no test named '${only%%/*}'; tests: $(tr '\n' ' ' < "$build/tests.list")" >&2
	exit 2
fi

# bench_quick.sh runs the benchmark program's quick mode.
VM_FILES=("$build/bench/vmreset_bench:/bench/vmreset_bench")
pass=0 fail=0 skip=0

# In the test VM KVM and the module are there, so a skipped test case is a
# failure unless scripts/skip-allowlist names it with the reason it gives.
allowed_skip() {	# allowed_skip KREL TEST CASE REASON: prints the entry's why
	local k=$1 t=$2 c=$3 r=$4 tc kg rg
	while read -r tc kg rg; do
		case "$tc" in "" | "#"*) continue ;; esac
		# shellcheck disable=SC2053
		[[ "$t/$c" == $tc && "$k" == $kg && "$r" == $rg ]] || continue
		echo "$rg"
		return 0
	done < "$top/scripts/skip-allowlist"
	return 1
}

report() {	# report ok|fail|skip LINE
	case $1 in
	ok) pass=$((pass + 1)) ;;
	skip) skip=$((skip + 1)) ;;
	fail) fail=$((fail + 1)) ;;
	esac
	echo "$2"
}

parse() {	# parse KREL RESULTS-FILE CONSOLE-LOG
	local k=$1 res=$2 con=$3 line cur= cases=0 bad=0 done=0 kmsg_bad=0 rc progs=0
	local -a buf=()
	while IFS= read -r line; do
		case "$line" in
		"vmreset-test-begin "*)
			progs=$((progs + 1))
			cur=${line#vmreset-test-begin } cases=0 bad=0 buf=() ;;
		"vmreset-test-end "*)
			rc=${line##* }
			if [ "$rc" = 137 ]; then
				report fail "not ok [$k] $cur: timed out"
				bad=1
			elif [ "$cases" = 0 ] || { [ "$rc" != 0 ] && [ "$rc" != 4 ] && [ "$bad" = 0 ]; }; then
				report fail "not ok [$k] $cur: exited with status $rc"
				bad=1
			fi
			[ "$bad" = 0 ] || printf '    %s\n' "${buf[@]}"
			cur= ;;
		"vmreset-test-time "*)
			line=${line#vmreset-test-time }
			echo "# [$k] ${line% *} took ${line##* }s" ;;
		"vmreset-kmsg-bad "*)
			kmsg_bad=1
			echo "# [$k] kernel log: ${line#vmreset-kmsg-bad }" ;;
		"vmreset-setup-bad "*)
			report fail "not ok [$k] test VM setup: ${line#vmreset-setup-bad }" ;;
		"vmreset-done")
			done=1 ;;
		"ok "* | "not ok "*)
			[ -n "$cur" ] || continue
			cases=$((cases + 1))
			local name=${line#not } && name=${name#ok } && name=${name#* }
			case "$line" in
			"not ok "*) bad=1; report fail "not ok [$k] $cur: $name" ;;
			*"# SKIP"* | *"# skip"*)
				local reason=${line#*# [Ss][Kk][Ii][Pp]}
				reason=${reason# }
				name=${name%%" # "[Ss][Kk][Ii][Pp]*}
				if allowed_skip "$k" "$cur" "$name" "$reason" > /dev/null; then
					report skip "ok [$k] $cur: $name # SKIP $reason (allowed by scripts/skip-allowlist)"
				else
					bad=1
					report fail "not ok [$k] $cur: $name: skipped, which the test VM does not allow: $reason"
				fi ;;
			*) report ok "ok [$k] $cur: $name" ;;
			esac ;;
		*)
			[ -n "$cur" ] && buf+=("$line") ;;
		esac
	done < "$res"
	if [ -n "$cur" ]; then
		report fail "not ok [$k] $cur: did not finish (guest crashed or hung)"
		printf '    %s\n' "${buf[@]}"
	fi
	if grep -qE -f "$top/scripts/kmsg-patterns" "$con"; then
		kmsg_bad=1
		grep -E -A20 -f "$top/scripts/kmsg-patterns" "$con" | head -60 | sed 's/^/    /'
	fi
	if [ "$kmsg_bad" = 0 ]; then
		report ok "ok [$k] kernel log clean"
	else
		report fail "not ok [$k] kernel log clean"
	fi
	# A guest that ran nothing must not pass.
	[ "$progs" -gt 0 ] || report fail "not ok [$k] no test ran"
	if [ "$done" = 1 ]; then
		report ok "ok [$k] guest reported back"
	else
		report fail "not ok [$k] guest reported back"
	fi
}

for kver in "$@"; do
	echo "# kernel $kver"
	# The debug kernel runs more: the fault injection run of the fuzzer.
	list=list
	[[ $kver = debug ]] && list=list-debug${VM_DEBUG_SET:+-$VM_DEBUG_SET}
	make -s -C "$top/selftests" $list ONLY="$only" > "$build/tests.list" || exit 1
	[[ $kver = debug ]] && export VM_TIMEOUT=${VM_TIMEOUT:-5400}
	if ! vm_prepare "$kver"; then
		report fail "not ok [$kver] build module and test VM"
		continue
	fi
	start=$(date +%s)
	vm_boot check "$only"
	echo "# [$KREL] test VM ran $(( $(date +%s) - start ))s (qemu exit $VM_RC)"
	before=$fail
	parse "$KREL" "$RES" "$LOG"
	[ "$fail" = "$before" ] || echo "# [$KREL] console log: $LOG, test output: $RES"
done

# Host tests (HOST_TESTS in selftests/Makefile): TAP lines, counted alike.
for t in $(cat "$build/host-tests.list"); do
	[ -z "$only" ] || [ "${only%%/*}" = "$t" ] || continue
	[ "$host" = 1 ] || [ -n "$only" ] || continue
	echo "# host: $t"
	cases=0 bad=0 rc=0
	while IFS= read -r line; do
		case "$line" in
		"vmreset-host-exit "*) rc=${line#vmreset-host-exit } ;;
		"not ok "*) cases=$((cases + 1)) bad=1; report fail "not ok [host] $t: ${line#not ok [0-9]* }" ;;
		"ok "*"# SKIP"*) cases=$((cases + 1)); report skip "ok [host] $t: ${line#ok [0-9]* }" ;;
		"ok "*) cases=$((cases + 1)); report ok "ok [host] $t: ${line#ok [0-9]* }" ;;
		"#"*) echo "    $line" ;;
		esac
	done < <("$top/selftests/$t" 2>&1; echo "vmreset-host-exit $?")
	if [ "$cases" = 0 ] || { [ "$rc" != 0 ] && [ "$bad" = 0 ]; }; then
		report fail "not ok [host] $t: exited with status $rc"
	fi
done

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
