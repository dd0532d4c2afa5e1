#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# rados-bench.sh [MIB] - vmreset-store's throughput to a one-node Ceph
# cluster (store/ceph-cluster.sh, memstore OSD) on this machine: save and
# load of MIB MiB of random data (default 256) with 1 and 2 threads, load
# with the host cache off (every block from RADOS) and warm. Each save goes
# to a fresh namespace (no dedup). Prints wall-clock GB/s and the CPU time
# the tool used; the OSD's own CPU time is on the same two cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mib=${1:-256}
tool=$here/vmreset-store
dir=$(mktemp -d /tmp/rados-bench.XXXXXX)
trap '"$here/ceph-cluster.sh" stop "$dir/ceph" >/dev/null 2>&1; rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM
export CEPH_CONF=$dir/ceph/ceph.conf VMRESET_STORE_CACHE=$dir/cache
OSD_BYTES=$(( (4 * mib + 512) << 20 )) "$here/ceph-cluster.sh" start "$dir/ceph" >/dev/null 2>&1
ceph --connect-timeout 30 osd pool create vmrs 8 >/dev/null 2>&1
head -c $((mib << 20)) /dev/urandom >"$dir/obj"
"$tool" keygen "$dir/k"

osd_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$dir/ceph/run/osd.0.pid")/stat"; }

run() {	# LABEL COMMAND...: wall-clock rate, the tool's and the OSD's CPU time
	local label=$1 t0 t1 u sy o0 o1
	shift
	o0=$(osd_ticks)
	t0=$(date +%s.%N)
	/usr/bin/time -f '%U %S' -o "$dir/time" "$@" >/dev/null 2>"$dir/err" ||
		{ cat "$dir/err"; return 1; }
	t1=$(date +%s.%N)
	o1=$(osd_ticks)
	read -r u sy <"$dir/time"
	python3 -c 'import os, sys; l, t0, t1, mib, u, s, o = sys.argv[1:]; w = float(t1) - float(t0)
c = float(u) + float(s); oc = int(o) / os.sysconf("SC_CLK_TCK"); gb = int(mib) * 1048576 / 1e9
print(f"{l:<36} {w:6.2f} s {gb / w:6.3f} GB/s  cpu: tool {c:5.2f} s, osd {oc:5.2f} s -> {gb / (c + oc):5.3f} GB/s per busy core")' \
		"$label" "$t0" "$t1" "$mib" "$u" "$sy" "$((o1 - o0))"
}

echo "# $mib MiB random, one-node cluster (memstore), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
for t in 1 2; do
	"$tool" init "rados://vmrs/t$t" >/dev/null
	run "save -t $t" "$tool" save "$dir/obj" "rados://vmrs/t$t" --key "$dir/k" --name o -t "$t"
done
for t in 1 2; do
	run "load -t $t, no cache" env VMRESET_STORE_CACHE_SIZE=0 "$tool" load rados://vmrs/t1 o \
		"$dir/out" --key "$dir/k" -t "$t"
	cmp "$dir/obj" "$dir/out"
done
rm -rf "$dir/cache"
run "load -t 2, cold cache (fills it)" "$tool" load rados://vmrs/t1 o "$dir/out" --key "$dir/k" -t 2
for t in 1 2; do
	run "load -t $t, warm cache" "$tool" load rados://vmrs/t1 o "$dir/out" --key "$dir/k" -t "$t"
	cmp "$dir/obj" "$dir/out"
done
# A store sized for 100 M blocks: 512 index shards (one lock each per command).
"$tool" init rados://vmrs/s512 --index-shards 512 >/dev/null
run "save -t 2, 512 index shards" "$tool" save "$dir/obj" rados://vmrs/s512 --key "$dir/k" --name o -t 2
run "load -t 2, 512 index shards, no cache" env VMRESET_STORE_CACHE_SIZE=0 "$tool" load rados://vmrs/s512 o \
	"$dir/out" --key "$dir/k" -t 2
cmp "$dir/obj" "$dir/out"
"$tool" init "$dir/local" >/dev/null
run "save -t 2, local store (reference)" "$tool" save "$dir/obj" "$dir/local" --key "$dir/k" --name o -t 2
run "load -t 2, local store (reference)" "$tool" load "$dir/local" o "$dir/out" --key "$dir/k" -t 2
