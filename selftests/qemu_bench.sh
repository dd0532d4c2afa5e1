#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vmreset-qemu's reset, side by side with QEMU's own ways, on one QEMU and
# one boot (docs/qemu.md, "Measurements"): vmreset-qemu --compare saves
# the ready state every way, and each mode serves N requests per handler,
# each followed by its reset, after W warm-up requests (not counted: hot
# pages are learned over the first reverts, loadvm's first load copies
# RAM before writing). Modes: vmreset (hot pages learned, the default),
# vmreset_hotoff (none: every reverted page refaults), loadvm, incoming.
# A cold reset is a boot: its cost is the boot's own (boot_ms + ready_ms
# of the same run), not repeated.
#
#   qemu_bench.sh [-n N] [-w W] [-m MODES] [-H HANDLERS]    (lists: a+b, as the
#   test VM's command line splits arguments at spaces and commas)
#
# The numbers are "# bench ..." lines that docs/qemu.md quotes; a mode
# that fails is a failed test case.
. "$(dirname "$0")/tap.sh"

# incoming (a new QEMU per request) does not fit the test VM's 15 minutes
# per test after the other two under load: -m incoming on its own.
N=10 WARM=2 MODES="vmreset vmreset_hotoff loadvm" HANDLERS="echo tmpfs8m fork10 diskfile"
while getopts n:w:m:H: opt; do
	case $opt in
	n) N=$OPTARG ;;
	w) WARM=$OPTARG ;;
	m) MODES=$(echo "$OPTARG" | tr + ' ') ;;
	H) HANDLERS=$(echo "$OPTARG" | tr + ' ') ;;
	*) exit 2 ;;
	esac
done
K=/vmm/vmlinuz I=/vmm/guest.cpio.gz DISK=/vmm/disk.img
W=$(mktemp -d /tmp/qemubench.XXXXXX)
D=$W/vmr
mkdir -p "$D"
drv_pid=
cleanup() {
	[ -n "$drv_pid" ] && kill "$drv_pid" 2>/dev/null && wait "$drv_pid" 2>/dev/null
	umount "$D" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
for t in qemu-system-x86_64 vmreset-qemu jq; do
	command -v "$t" > /dev/null || { echo "Bail out! $t missing in the test VM"; exit 1; }
done
mount -t vmresetfs -o size=2g none "$D" || { echo "Bail out! mount vmresetfs"; exit 1; }

handler() {
	case $1 in
	echo) echo '{"argv":["echo","hi"]}' ;;
	tmpfs8m) echo '{"argv":["dd","if=/dev/zero","of=/tmp/f","bs=1M","count=8"]}' ;;
	fork10) echo '{"argv":["sh","-c","for i in 0 1 2 3 4 5 6 7 8 9; do /bin/true & done; wait"]}' ;;
	diskfile) echo '{"argv":["sh","-c","echo data > /disk/f; sync"]}' ;;
	esac
}

# p50 of a column of numbers (one a line).
p50() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'; }

lines=0
# send JSON: one line in, the driver's answer in $R.
send() {
	echo "$1" >&3
	lines=$((lines + 1))
	while [ "$(wc -l < "$W/out")" -lt $lines ]; do
		kill -0 "$drv_pid" 2>/dev/null || { cat "$W/err"; return 1; }
		sleep 0.05
	done
	R=$(tail -n 1 "$W/out")
}

bench_mode() {
	mode=$1 hot=learn
	[ "$mode" = vmreset_hotoff ] && mode=vmreset hot=off
	send "{\"op\":\"mode\",\"reset\":\"$mode\"}" || return 1
	echo "$R" | jq -e '.error | not' > /dev/null || { echo "$R"; return 1; }
	send "{\"op\":\"hot\",\"mode\":\"$hot\"}" || return 1
	echo "$R" | jq -e '.error | not' > /dev/null || { echo "$R"; return 1; }
	for h in $HANDLERS; do
		rm -f "$W/$h.json"
		k=0
		while [ $k -lt $((N + WARM)) ]; do
			send "$(handler "$h")" || return 1
			echo "$R" | jq -e '.outcome == "ok" and .exit == 0' > /dev/null ||
				{ echo "$1 $h: $R"; return 1; }
			[ $k -ge "$WARM" ] && echo "$R" >> "$W/$h.json"
			k=$((k + 1))
		done
		f=$W/$h.json
		echo "# bench $1 $h n=$N warm=$WARM" \
			"reset_p50_ms=$(jq .reset_ms "$f" | p50)" \
			"stop_p50_ms=$(jq .phases.stop_ms "$f" | p50)" \
			"revert_p50_ms=$(jq .phases.revert_ms "$f" | p50)" \
			"load_p50_ms=$(jq .phases.load_ms "$f" | p50)" \
			"run_p50_ms=$(jq .run_ms "$f" | p50)" \
			"pages_p50=$(jq .reverted_pages "$f" | p50)" \
			"disk_pages_p50=$(jq .disk_reverted_pages "$f" | p50)" \
			"hot_pages_p50=$(jq .hot_pages "$f" | p50)" \
			"guest_run_p50_ms=$(jq .guest_run_ms "$f" | p50)" \
			"req_per_s=$(jq '.run_ms + .reset_ms' "$f" | awk '{ t += $1 } END { printf "%.3f", NR / (t / 1000) }')" \
			>> "$W/report"
	done
}

set -- $MODES
echo "1..$(($# + 1))"
rm -f "$W/in" "$W/out"
mkfifo "$W/in"
: > "$W/out"
t0=$(date +%s)
vmreset-qemu -d "$D" -k $K -i $I --disk $DISK --compare --boot-timeout 1200000 serve \
	< "$W/in" > "$W/out" 2> "$W/err" &
drv_pid=$!
exec 3> "$W/in"
booted() {
	while [ "$(wc -l < "$W/out")" -lt 1 ]; do
		kill -0 "$drv_pid" 2>/dev/null || { cat "$W/err"; return 1; }
		sleep 0.2
	done
	lines=1
	echo "# bench ready: $(head -n 1 "$W/out" | jq -c '{boot_ms, ready_ms}') ($(( $(date +%s) - t0 )) s)" > "$W/report"
}
tap boot booted
cat "$W/report"
for m in $MODES; do
	: > "$W/report"
	tap "$m" bench_mode "$m"
	cat "$W/report"
done
exit $((fails > 0))
