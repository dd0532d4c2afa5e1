#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The benchmark's quick run: every reset method on every workload, each
# reset checked against the snapshot by the benchmark itself (it fails on
# any difference), and the results it reports for VMM-side writes and
# instance memory.
. "$(dirname "$0")/tap.sh"
# busybox has no JSON parser: vmreset_bench writes one entry a line, and
# the greps below follow the key order of its json-c objects.
bench=/bench/vmreset_bench
json=/tmp/bench-quick.json

[ -x $bench ] || { echo "1..0 # SKIP no $bench in this VM"; exit 4; }
echo "1..14"

tap "quick run completes, every reset verified" $bench --quick -o $json
row() {	# row METHOD WORKLOAD VCPUS: results for D=1, 16 and 256
	for d in 1 16 256; do
		grep -q "\"d\": $d, \"workload\": \"$2\", \"vcpus\": $3, \"read_pages\": 0, \"method\": \"$1\"" $json ||
			{ echo "no $1 row for $2, $3 vCPUs, D=$d"; return 1; }
	done
}
# Linux 6.7 or later: the kernel has what M4 needs, so M4 must be there.
m4_kernel() {
	v=$(uname -r) maj=${v%%.*} min=${v#*.}
	min=${min%%[!0-9]*}
	[ "$maj" -gt 6 ] || { [ "$maj" -eq 6 ] && [ "$min" -ge 7 ]; }
}
all_rows() {
	for m in M1 M2 M2-dirty M3 M3-ring vmreset; do
		for w in steady drift random; do
			for v in 1 2; do row $m $w $v || return 1; done
		done
	done
	row vmreset-nl steady 1 || return 1
	if m4_kernel; then
		for w in steady drift random; do
			for v in 1 2; do row M4 $w $v || return 1; done
		done
	else
		# Older kernels must say why M4 is missing.
		grep -q '"what": "M4", "why": ".*6.7' $json ||
			{ echo "no M4 rows and no reason on $(uname -r)"; return 1; }
	fi
}
tap "all methods measured on all workloads (M4 on Linux 6.7+)" all_rows
hot_rows() {
	for m in vmreset-hot vmreset-learn; do
		for w in steady drift random; do
			for v in 1 2; do row $m $w $v || return 1; done
		done
	done
}
# The benchmark verifies every reset (and all of RAM at the end), so the
# rows exist only if every hot-set reset restored the snapshot exactly.
tap "hot-set rows (given and learned) measured and verified on all workloads" hot_rows
in_place() {	# METHOD: steady runs restored all D pages in place, no faults
	for v in 1 2; do
		for d in 16 256; do
			l=$(grep "\"d\": $d, \"workload\": \"steady\", \"vcpus\": $v, \"read_pages\": 0, \"method\": \"$1\"" $json)
			echo "$l" | grep -q "\"reset_pages\": $d, .*\"faults\": { \"median\": 0.00, .*\"hot_copies\": { \"median\": $d.00," ||
				{ echo "$1, $v vCPUs, D=$d: not all pages restored in place without faults:"; echo "$l"; return 1; }
		done
	done
}
tap "hot set given: steady pages restored in place, no fault on the next run" in_place vmreset-hot
tap "hot set learned: the same after the warm-up runs" in_place vmreset-learn
copy_recorded() {
	c=$(sed -n 's/.*"chosen": "\([^"]*\)".*/\1/p' $json)
	echo "copy routine: $c"
	[ -n "$c" ] && grep -q "\"name\": \"$c\"" $json &&
		grep -q "\"method\": \"M3\", .*\"copy\": \"$c\"" $json &&
		grep -q '"cpu_flags": \[ "' $json
}
tap "the chosen copy routine and the CPU flags are recorded" copy_recorded
caught() {	# caught METHOD true|false
	grep -q "\"method\": \"$1\", \"label\": \"[^\"]*\", \"differing_pages\": [0-9]*, \"caught\": $2" $json ||
		{ grep vmm_pages $json; return 1; }
}
tap "vmreset undoes VMM-side writes" caught vmreset true
tap "VM-level netlink REVERT undoes VMM-side writes" caught vmreset-nl true
tap "vmreset undoes VMM-side writes into hot pages" caught vmreset-hot true
# The check can tell a miss: the dirty log never sees the VMM's writes.
tap "the KVM dirty log misses VMM-side writes" caught M3 false
tap "so does the KVM dirty ring" caught M3-ring false
mem() {	# mem METHOD: MiB used by the instances, as an integer
	sed -n "s/.*\"method\": \"$1\", \"mem_mib\": \([0-9]*\).*/\1/p" $json
}
# 4 instances of a 16 MiB snapshot, 40 pages (160 KiB) dirtied in each.
clones_small() {
	c=$(mem M1) v=$(mem vmreset)
	echo "copies: ${c} MiB, vmreset clones: ${v} MiB"
	# Copies: the snapshot and 4 copies. Clones: the snapshot and their
	# dirty pages, rounded down.
	[ -n "$c" ] && [ -n "$v" ] && [ "$c" -ge 79 ] && [ "$v" -ge 16 ] && [ "$v" -le 17 ]
}
tap "4 clones take the snapshot and their dirty pages, 4 copies 5 times it" clones_small
# The kept-copy A/B rows (keep_copies=0 and 2), which only -m asks for: a
# second quick run of them beside the default mode, each reset verified.
json=/tmp/bench-quick-keep.json
tap "quick run of the kept-copy modes completes, every reset verified" \
	$bench --quick -m vmreset,vmreset-nokeep,vmreset-swap -o $json
keep_rows() {
	for m in vmreset vmreset-nokeep vmreset-swap; do
		for w in steady drift random; do
			for v in 1 2; do row $m $w $v || return 1; done
		done
	done
	# The module is left in its default mode, copies kept in place.
	[ "$(cat /sys/module/vmreset/parameters/keep_copies)" = 1 ]
}
tap "nokeep and swap rows measured on all workloads, keep_copies back to 1" keep_rows
[ $fails = 0 ]
