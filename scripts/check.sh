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
# The kernels' test VMs and the host tests run side by side (VM_JOBS at a
# time, default one a CPU), each in build/<kernel>[.<shard>]/; the debug
# kernel's list is split over VM_DEBUG_SHARDS VMs (default 2 on a machine
# with 2 CPUs or more).
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
	*) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- 6.1 6.12

mkdir -p "$build"
if ! make -s -C "$top" helper selftests > "$build/make-user.log" 2>&1 ||
   ! make -s -C "$top/bench" O="$build/bench" >> "$build/make-user.log" 2>&1; then
	cat "$build/make-user.log"
	echo "0 passed, 1 failed, 0 skipped"
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

if [ $# -gt 0 ] && ! vm_qemu_ensure; then
	echo "not ok the test VM's QEMU (scripts/qemu-build.sh failed)"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
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

# The kernels' test VMs, and the host tests, run side by side as jobs,
# VM_JOBS at a time (default: one a CPU): a TCG VM runs all its vCPUs on one
# host thread, so one VM alone leaves the other CPUs idle. The debug
# kernel's list is split in VM_DEBUG_SHARDS (default: up to 2) VMs of
# about equal time (scripts/test-times). Each job has a build directory of
# its own, build/<kernel>[.<shard>]; its output is printed when it ends,
# whole, in the order of the jobs.
njobs=${VM_JOBS:-$(nproc)}
[ "$njobs" -ge 1 ] 2>/dev/null || njobs=1
job_list=()
for kver in "$@"; do
	n=1
	# One test named: one VM.
	if [[ $kver = debug ]] && [ -z "$only" ]; then
		n=${VM_DEBUG_SHARDS:-$(( njobs > 1 ? 2 : 1 ))}
	fi
	for ((s = 0; s < n; s++)); do
		job_list+=("$kver $s $n")
	done
done
host_job=0
if [ -n "$(cat "$build/host-tests.list")" ] &&
   { { [ "$host" = 1 ] && [ -z "$only" ]; } ||
     { [ -n "$only" ] && grep -qx "${only%%/*}" "$build/host-tests.list"; }; }; then
	host_job=1
	job_list+=("host 0 1")
fi

# Picks shard S of N from list IN (longest test first onto the least
# loaded shard, times from scripts/test-times, 60 s for a test it lacks),
# keeping IN's order within the shard.
shard() {	# shard IN S N
	awk -v s="$2" -v n="$3" '
		NR == FNR { if ($1 !~ /^#/ && NF >= 2) w[$1] = $2; next }
		{ t[++m] = $0; name = $0; sub("/.*", "", name)
		  wt[m] = (name in w) ? w[name] : 60; idx[m] = m }
		END {
			for (i = 1; i <= m; i++)
				for (j = i + 1; j <= m; j++)
					if (wt[idx[j]] > wt[idx[i]]) { x = idx[i]; idx[i] = idx[j]; idx[j] = x }
			for (k = 0; k < n; k++) load[k] = 0
			for (i = 1; i <= m; i++) {
				b = 0
				for (k = 1; k < n; k++) if (load[k] < load[b]) b = k
				sh[idx[i]] = b; load[b] += wt[idx[i]]
			}
			for (i = 1; i <= m; i++) if (sh[i] == s) print t[i]
		}' "$top/scripts/test-times" "$1"
}

vm_job() {	# vm_job KVER SHARD NSHARDS (in its own build directory)
	local kver=$1 s=$2 n=$3 list=list start before
	# The debug kernel runs more: the fault injection run of the fuzzer.
	[[ $kver = debug ]] && list=list-debug${VM_DEBUG_SET:+-$VM_DEBUG_SET}
	make -s -C "$top/selftests" $list ONLY="$only" > "$build/tests.all" || return 1
	if [ "$n" -gt 1 ]; then
		shard "$build/tests.all" "$s" "$n" > "$build/tests.list"
		# More shards than tests: nothing to boot for.
		[ -s "$build/tests.list" ] || { echo "# kernel $kver shard $((s + 1))/$n: no test"; return 0; }
		echo "# kernel $kver, shard $((s + 1)) of $n:" $(cat "$build/tests.list")
	else
		cp "$build/tests.all" "$build/tests.list"
		echo "# kernel $kver"
	fi
	[[ $kver = debug ]] && export VM_TIMEOUT=${VM_TIMEOUT:-5400}
	if ! vm_prepare "$kver"; then
		report fail "not ok [$kver] build module and test VM"
		return 0
	fi
	start=$(date +%s)
	vm_boot check "$only"
	echo "# [$KREL] test VM ran $(( $(date +%s) - start ))s (qemu exit $VM_RC)"
	before=$fail
	parse "$KREL" "$RES" "$LOG"
	[ "$fail" = "$before" ] || echo "# [$KREL] console log: $LOG, test output: $RES"
}

# Host tests (HOST_TESTS in selftests/Makefile): TAP lines, counted alike.
host_job() {
	local t cases bad rc line
	for t in $(cat "$top_build/host-tests.list"); do
		[ -z "$only" ] || [ "${only%%/*}" = "$t" ] || continue
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
}

top_build=$build
run_job() {	# run_job INDEX: in a subshell, output in its directory
	local kver s n dir
	read -r kver s n <<< "${job_list[$1]}"
	dir=$top_build/$kver
	[ "$n" -gt 1 ] && dir=$dir.$s
	mkdir -p "$dir"
	(
		build=$dir
		export BUILD=$dir
		pass=0 fail=0 skip=0
		if [ "$kver" = host ]; then
			host_job
		else
			vm_job "$kver" "$s" "$n" || report fail "not ok [$kver] test list"
		fi
		echo "$pass $fail $skip" > "$dir/counts"
	) > "$dir/check.out" 2>&1
}

label() {	# label "KVER S N"
	local k s n
	read -r k s n <<< "$1"
	if [ "$n" -gt 1 ]; then echo "$k $((s + 1))/$n"; else echo "$k"; fi
}

declare -A pid_of=()
t0=$(date +%s)
next=0 running=0
while [ "$next" -lt "${#job_list[@]}" ] || [ "$running" -gt 0 ]; do
	if [ "$next" -lt "${#job_list[@]}" ] && [ "$running" -lt "$njobs" ]; then
		read -r kver s n <<< "${job_list[$next]}"
		d=$top_build/$kver && [ "$n" -gt 1 ] && d=$d.$s
		rm -f "$d/counts"
		run_job "$next" &
		pid_of[$!]=$next
		echo "# job $(label "${job_list[$next]}"): started after $(( $(date +%s) - t0 ))s"
		next=$((next + 1)) running=$((running + 1))
		continue
	fi
	wait -n -p done_pid
	running=$((running - 1))
	echo "# job $(label "${job_list[${pid_of[$done_pid]}]}"): done after $(( $(date +%s) - t0 ))s"
done

for j in "${job_list[@]}"; do
	read -r kver s n <<< "$j"
	d=$top_build/$kver && [ "$n" -gt 1 ] && d=$d.$s
	cat "$d/check.out"
	if read -r p f k < "$d/counts" 2>/dev/null; then
		pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + k))
	else
		report fail "not ok [$kver] job ended without its counts (see $d/check.out)"
	fi
done

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
