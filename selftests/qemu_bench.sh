#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vmreset-qemu's reset, side by side with QEMU's own ways, on the same
# QEMU and guest (docs/qemu.md, "Measurements"): per handler, N requests,
# each followed by its reset; the reset's phases and the request rate.
#
#   qemu_bench.sh [-n N] [-m MODES] [-H HANDLERS]    (lists: a+b, as the
#   test VM's command line splits arguments at spaces and commas)
# A mode that does not work is a failed test case; the numbers are TAP
# comments ("# bench MODE HANDLER ...") that docs/qemu.md quotes.
. "$(dirname "$0")/tap.sh"

N=10 MODES="vmreset incoming loadvm cold" HANDLERS="echo tmpfs8m fork10 diskfile"
while getopts n:m:H: opt; do
	case $opt in
	n) N=$OPTARG ;;
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

bench_mode() {
	mode=$1 n=$N
	hs=$HANDLERS
	# A cold reset is a boot (minutes when nested under TCG): one, echo only.
	[ "$mode" = cold ] && n=1 hs=echo
	[ "$mode" = loadvm ] && n=$(( N < 3 ? N : 3 ))
	rm -f "$W/in" "$W/out"
	mkfifo "$W/in"
	t0=$(date +%s)
	vmreset-qemu -d "$D" -k $K -i $I --disk $DISK --reset "$mode" serve \
		< "$W/in" > "$W/out" 2> "$W/err" &
	drv_pid=$!
	exec 3> "$W/in"
	while [ "$(wc -l < "$W/out")" -lt 1 ]; do
		kill -0 "$drv_pid" 2>/dev/null || { cat "$W/err"; return 1; }
		sleep 0.2
	done
	echo "# bench $mode ready: $(head -n 1 "$W/out" | jq -c '{boot_ms, ready_ms}') ($(( $(date +%s) - t0 )) s)"
	lines=1
	for h in $hs; do
		rm -f "$W/$h.json"
		start=$(date +%s%N)
		i=0
		while [ $i -lt "$n" ]; do
			handler "$h" >&3
			lines=$((lines + 1))
			while [ "$(wc -l < "$W/out")" -lt $lines ]; do
				kill -0 "$drv_pid" 2>/dev/null || { cat "$W/err"; return 1; }
				sleep 0.05
			done
			r=$(tail -n 1 "$W/out")
			echo "$r" | jq -e '.outcome == "ok" and .exit == 0' > /dev/null ||
				{ echo "$mode $h: $r"; return 1; }
			echo "$r" >> "$W/$h.json"
			i=$((i + 1))
		done
		end=$(date +%s%N)
		f=$W/$h.json
		echo "# bench $mode $h n=$n" \
			"reset_p50_ms=$(jq .reset_ms "$f" | p50)" \
			"stop_p50_ms=$(jq .phases.stop_ms "$f" | p50)" \
			"revert_p50_ms=$(jq .phases.revert_ms "$f" | p50)" \
			"load_p50_ms=$(jq .phases.load_ms "$f" | p50)" \
			"run_p50_ms=$(jq .run_ms "$f" | p50)" \
			"pages_p50=$(jq .reverted_pages "$f" | p50)" \
			"disk_pages_p50=$(jq .disk_reverted_pages "$f" | p50)" \
			"req_per_s=$(echo "$n $start $end" | awk '{ printf "%.3f", $1 / (($3 - $2) / 1e9) }')"
	done
	exec 3>&-
	wait "$drv_pid"
	drv_pid=
}

set -- $MODES
echo "1..$#"
for m in $MODES; do
	tap "$m" bench_mode "$m"
done
exit $((fails > 0))
