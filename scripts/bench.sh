#!/usr/bin/env bash
# Run the benchmark in the QEMU test VM and write its report.
#
#   bench.sh [-k KVER] [-n] [-- BENCH-OPTIONS...]
#
#   -k KVER   kernel to run on (default 6.12: M4 needs 6.7 or later)
#   -n        leave docs/ alone; results stay in build/bench/
#   BENCH-OPTIONS go to vmreset_bench (see: bench/vmreset_bench --help)
#   BENCH_DEADLINE=SEC (environment): start no method after SEC seconds in
#             the VM (default 2400); VM_TIMEOUT defaults to 20 min more
#
# Writes build/bench/results.json and report.md, and the plots next to
# them; a full default run without -n puts the plots and results.json in
# docs/bench/ and the report into docs/benchmarks.md instead (runs with
# BENCH-OPTIONS never replace those).
set -euo pipefail
. "$(dirname "$0")/vm.sh"

kver=6.12 publish=1
while getopts k:nh opt; do
	case $opt in
	k) kver=$OPTARG ;;
	n) publish=0 ;;
	*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

out=$build/bench
mkdir -p "$out"
make -s -C "$top" helper selftests > "$build/make-user.log" 2>&1 &&
	make -s -C "$top/bench" O="$out" >> "$build/make-user.log" 2>&1 || {
	cat "$build/make-user.log"
	exit 1
}
make -s -C "$top/selftests" list > "$build/tests.list"
# Check the options here, where a typo costs a second, not a VM boot.
for a in "$@"; do
	case $a in -o* | --output*) echo "bench.sh: the VM chooses the output file; drop $a" >&2; exit 2 ;; esac
done
"$out/vmreset_bench" "$@" --help > /dev/null
[ $# = 0 ] || publish=0
# A run that outlives the VM's timeout reports nothing: past the deadline
# the benchmark starts no more methods, lists them as skipped and reports.
deadline=${BENCH_DEADLINE:-2400}
printf '%s ' "$@" --deadline "$deadline" > "$out/args"
VM_FILES=("$out/vmreset_bench:/bench/vmreset_bench" "$out/args:/bench/args")
vm_prepare "$kver"

# 4 GiB of guest RAM and its snapshot copy need about 9 GiB in the VM.
avail=$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo)
mem=$(( avail - 3 < 12 ? avail - 3 : 12 ))
[ "$mem" -ge 3 ] || mem=3
export VM_MEM=${VM_MEM:-${mem}G} VM_TIMEOUT=${VM_TIMEOUT:-$((deadline + 1200))}

# vm.sh passes test arguments on the kernel command line; a bench has none.
export VM_TEST_ARGS=${VM_TEST_ARGS:-}
echo "# benchmark on $KREL, VM memory $VM_MEM; progress:"
start=$(date +%s)
log=$build/console-$KREL.log
rm -f "$log"
# A subshell without errexit, so that a QEMU killed by the timeout still
# leaves its logs behind.
(set +e; vm_boot bench "") &
vm=$!
until [ -e "$log" ] || ! kill -0 "$vm" 2>/dev/null; do sleep 1; done
# -f, not -F: vm_boot rewrites the log when QEMU is done.
tail -n +1 -f --pid="$vm" "$log" 2>/dev/null | grep --line-buffered -E '^(bench|vmreset_bench|# kvm_guest):' || true
wait "$vm" || true
secs=$(( $(date +%s) - start ))
res=$build/results-$KREL.log

if [ ! -s "$res" ]; then
	echo "bench: the test VM reported nothing (timed out after ${VM_TIMEOUT}s?); see $log and $build/qemu-$KREL.log" >&2
	exit 1
fi
if grep -q '^vmreset-kmsg-bad' "$res"; then
	sed -n 's/^vmreset-kmsg-bad /kernel log: /p' "$res"
	echo "bench: the kernel complained during the run; console log: $log" >&2
	exit 1
fi
rc=$(sed -n 's/^vmreset-bench-exit //p' "$res")
if [ "$rc" != 0 ]; then
	echo "bench: vmreset_bench failed (exit ${rc:-none}); console log: $log" >&2
	exit 1
fi
sed -n '/^vmreset-bench-json-begin$/,/^vmreset-bench-json-end$/p' "$res" |
	sed '1d;$d' > "$out/raw.json"
[ -s "$out/raw.json" ] || { echo "bench: no results from the VM; console log: $log" >&2; exit 1; }

if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
accel=${VM_ACCEL:-$accel}
python3 - "$out/raw.json" "$out/results.json" "${accel%%,*}" "$secs" "$*" <<'EOF'
import json, sys, datetime, platform
raw, dst, accel, secs, args = sys.argv[1:]
r = json.load(open(raw))
host_cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                 if l.startswith("model name")), platform.processor())
r["env"].update(accel=accel, host_cpu=host_cpu, vm_wall_s=int(secs),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                command=("make bench" + (" BENCH_ARGS='" + args + "'" if args else "")))
json.dump(r, open(dst, "w"), indent=1)
EOF
if [ "$publish" = 0 ]; then
	"$top/bench/report.py" "$out/results.json" "$out" --md "$out/report.md"
	echo "# benchmark done in ${secs}s: $out/report.md"
	exit 0
fi
# The plots go straight to docs/bench/, linked from docs/benchmarks.md.
mkdir -p "$top/docs/bench"
rm -f "$top"/docs/bench/*.png
cp "$out/results.json" "$top/docs/bench/"
"$top/bench/report.py" "$out/results.json" "$top/docs/bench" \
	--md "$out/report.md" --img-prefix bench/
echo "# benchmark done in ${secs}s"
# docs/benchmarks.md: the prose stays, the generated part between the
# markers is replaced.
python3 - "$top/docs/benchmarks.md" "$out/report.md" <<'EOF'
import sys
doc, gen = sys.argv[1:]
text = open(doc).read()
begin, end = "<!-- bench-results-begin -->", "<!-- bench-results-end -->"
if begin not in text or end not in text:
    sys.exit(f"{doc}: markers {begin} / {end} are missing")
head, rest = text.split(begin, 1)
tail = rest.split(end, 1)[1]
open(doc, "w").write(head + begin + "\n" + open(gen).read().rstrip() + "\n" + end + tail)
EOF
echo "# published: docs/benchmarks.md, docs/bench/"
