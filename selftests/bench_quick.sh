#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The benchmark's quick run: every reset method, each reset checked against
# the snapshot by the benchmark itself (it fails on any difference), and the
# results it reports for VMM-side writes and instance memory.
. "$(dirname "$0")/tap.sh"
# busybox has no JSON parser: the greps below follow the key order and
# spacing of the fprintf() formats in bench/vmreset_bench.c.
bench=/bench/vmreset_bench
json=/tmp/bench-quick.json

[ -x $bench ] || { echo "1..0 # SKIP no $bench in this VM"; exit 4; }
echo "1..6"

tap "quick run completes, every reset verified" $bench --quick -o $json
row() {	# row METHOD: the method has results for D=1, 16 and 256
	for d in 1 16 256; do
		grep -q "\"d\": $d, \"layout\": \"scattered\", \"read_pages\": 0, \"method\": \"$1\"" $json ||
			{ echo "no $1 row for D=$d"; return 1; }
	done
}
all_rows() {
	for m in M1 M2 M3 vmreset vmreset-nl; do row $m || return 1; done
	# M4 needs Linux 6.7; older kernels must say so.
	row M4 || grep -q '"what": "M4", "why": ".*6.7' $json
}
tap "all methods measured (or skipped with a reason)" all_rows
caught() {	# caught METHOD true|false
	grep -q "\"method\": \"$1\", \"differing_pages\": [0-9]*, \"caught\": $2" $json ||
		{ grep vmm_pages $json; return 1; }
}
tap "vmreset undoes VMM-side writes" caught vmreset true
tap "VM-level netlink REVERT undoes VMM-side writes" caught vmreset-nl true
# The check can tell a miss: the dirty log never sees the VMM's writes.
tap "the KVM dirty log misses VMM-side writes" caught M3 false
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
[ $fails = 0 ]
