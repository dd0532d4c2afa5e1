#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# store_rados.sh - vmreset-store's RADOS backend against a real one-node
# Ceph cluster (ceph-mon, ceph-mgr, ceph-osd on memstore) that this script
# starts with store/ceph-cluster.sh and stops at the end: round trip and
# errors, two "hosts" (processes with their own block caches) sharing one
# store with dedup, the cache verified on read, gc while the other host
# saves, a save that lost its lock refused, kill -9 at each stage of a
# save, and the cluster going away mid-save. Run by scripts/check.sh
# (HOST_TESTS); the cluster never runs inside the test VM.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tap.sh"
tool=${VMRESET_STORE:-$here/../store/vmreset-store}
cluster=$here/../store/ceph-cluster.sh
dir=$(mktemp -d /tmp/store_rados.XXXXXX)
ceph_dir=$dir/ceph
export CEPH_CONF=$ceph_dir/ceph.conf
# Short lock and timeouts so that kills, stops and gc need seconds, not minutes.
export VMRESET_STORE_RADOS_LOCK_SECS=3 VMRESET_STORE_RADOS_TIMEOUT=8
cleanup() {
	[ -n "${osd_stopped:-}" ] && kill -CONT "$osd_stopped" 2>/dev/null
	"$cluster" stop "$ceph_dir" >/dev/null 2>&1
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
echo "TAP version 13"
echo "1..19"

S=rados://vmrs/st
A=$dir/cacheA B=$dir/cacheB
st() { "$tool" "$@"; }			# host A
stA() { VMRESET_STORE_CACHE=$A "$tool" "$@"; }
stB() { VMRESET_STORE_CACHE=$B "$tool" "$@"; }

# Waits (at most 10 s) until process $1 has stopped itself (a STOP_AT hook).
stopped() {
	for _ in $(seq 100); do
		[ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = T ] && return
		sleep 0.1
	done
}

start_cluster() {
	local t0=$SECONDS
	OSD_BYTES=$((768 << 20)) "$cluster" start "$ceph_dir" >"$dir/cluster.log" 2>&1 ||
		{ cat "$dir/cluster.log"; return 1; }
	timeout 60 ceph --connect-timeout 30 osd pool create vmrs 8 >/dev/null 2>&1 || return 1
	echo "cluster up in $((SECONDS - t0)) s"
	[ $((SECONDS - t0)) -lt 120 ]
}
tap "a one-node Ceph cluster starts (mon, mgr, osd on memstore) in under 2 minutes" start_cluster

round_trip() {
	st keygen "$dir/k" &&
	contains "block size 4096" st init "$S" &&
	contains "already a store" st init "$S"; [ $? = 0 ] || return 1
	head -c $((6 << 20)) /dev/urandom >"$dir/a" &&
	truncate -s $((10 << 20)) "$dir/a" &&		# 4 MiB of zeros at the end
	printf 'tail' >>"$dir/a" &&
	stA save "$dir/a" "$S" --key "$dir/k" --name a >"$dir/out" &&
	grep -q " 1024 zero, 1537 new, " "$dir/out" || { cat "$dir/out"; return 1; }
	stA load "$S" a "$dir/a.out" --key "$dir/k" >/dev/null &&
	cmp "$dir/a" "$dir/a.out" &&
	stA verify "$S" --key "$dir/k" &&
	stA verify "$S" &&
	stA list -j "$S" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["store"] == "rados://vmrs/st" and [s["name"] for s in d["snapshots"]] == ["a"], d
assert d["blocks"] == 1537, d["blocks"]'
}
tap "init, save, load, verify, list -j round trip (random + zero blocks)" round_trip

errors() {
	local rc
	contains "bad RADOS store 'rados://'" st list rados://; [ $? = 0 ] || return 1
	contains "bad RADOS store 'rados://p/a/b'" st list rados://p/a/b || return 1
	contains "pool 'nopool': no such pool" st init rados://nopool || return 1
	contains "not a store" st list rados://vmrs/none || return 1
	# A monitor that is not there: an error within the timeout, not a hang.
	sed 's/^mon host = .*/mon host = v1:127.0.0.1:9/' "$CEPH_CONF" >"$dir/dead.conf"
	local t0=$SECONDS
	CEPH_CONF=$dir/dead.conf VMRESET_STORE_RADOS_TIMEOUT=5 st list "$S" >"$dir/out" 2>&1
	rc=$?
	cat "$dir/out"
	[ $rc = 1 ] && grep -q "cannot connect to the Ceph cluster: timed out" "$dir/out" &&
		[ $((SECONDS - t0)) -lt 30 ]
}
tap "bad URL, missing pool, not a store, unreachable cluster: clear errors, bounded time" errors

osd_ops() {
	ceph --admin-daemon "$ceph_dir/run/osd.0.asok" perf dump |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["osd"]["op"])'
}

two_hosts() {
	local n
	cp "$dir/a" "$dir/b"
	for i in 3 70 400 900 1400; do		# 5 changed pages
		dd if=/dev/urandom of="$dir/b" bs=4096 seek=$i count=1 conv=notrunc 2>/dev/null
	done
	# Host B sees A's snapshot and stores only what A did not.
	stB list "$S" | grep -q '^a ' || return 1
	stB save "$dir/b" "$S" --key "$dir/k" --name b >"$dir/out" || return 1
	cat "$dir/out"
	grep -q " 5 new, 1532 deduplicated" "$dir/out" || return 1
	n=$(stA list -j "$S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blocks"])')
	[ "$n" = 1542 ] || { echo "blocks $n, want 1542"; return 1; }
	# A loads B's snapshot; B loads it twice: the second time from its cache.
	local ops0 ops1
	stA load "$S" b "$dir/b.outA" --key "$dir/k" >/dev/null && cmp "$dir/b" "$dir/b.outA" &&
	stB load "$S" b "$dir/b.out1" --key "$dir/k" >"$dir/out1" || return 1
	ops0=$(osd_ops)
	stB load "$S" b "$dir/b.out2" --key "$dir/k" >"$dir/out2" &&
	cmp "$dir/b" "$dir/b.out2" || return 1
	ops1=$(osd_ops)
	cat "$dir/out1" "$dir/out2"
	# The cached blocks' index entries come from the cache too: the OSD sees
	# only the locks (33 objects, taken and released) and the manifest.
	echo "OSD ops during the cached load: $((ops1 - ops0))"
	[ $((ops1 - ops0)) -lt 120 ] || return 1
	# B fetched A's blocks once, when its save checked them for dedup.
	grep -q "host cache: 1532 hits, 5 fetched" "$dir/out1" &&
	grep -q "host cache: 1537 hits, 0 fetched" "$dir/out2"
}
tap "two hosts share the store: B dedups against A's blocks, its cache serves a 2nd load" two_hosts

cache_verified() {
	# Damage every cached copy of b's first block on host B: the load must
	# detect it (GCM), fetch RADOS's copy, and return the right content.
	local pack
	pack=$(rados -p vmrs -N st ls | grep '^pack\.' | head -n 1)
	rados -p vmrs -N st get "$pack" "$dir/pack" || return 1
	python3 - "$dir/pack" "$B" <<'PY' || return 1
import glob, sys
blk = open(sys.argv[1], "rb").read()[16:16 + 4112]
n = 0
for f in glob.glob(sys.argv[2] + "/*/cache.mdb"):
    d = bytearray(open(f, "rb").read())
    i = d.find(blk)
    while i >= 0:
        d[i + 100] ^= 0xff
        n += 1
        i = d.find(blk, i + 1)
    open(f, "wb").write(d)
assert n >= 1, "block not in the cache"
PY
	stB load "$S" b "$dir/b.out3" --key "$dir/k" >"$dir/out" 2>&1 || { cat "$dir/out"; return 1; }
	cat "$dir/out"
	cmp "$dir/b" "$dir/b.out3" && grep -q "1 fetched" "$dir/out"
}
tap "a damaged cache entry is detected on read and fetched again" cache_verified

bounded_cache() {
	local sz hits
	for i in 1 2; do
		stA load "$S" a "$dir/a.small" --key "$dir/k" --cache "$dir/small" \
			--cache-size 4m >"$dir/out" && cmp "$dir/a" "$dir/a.small" || return 1
		cat "$dir/out"
	done
	# 4 MiB of cache file hold at most 512 sealed 4 KiB blocks (two LMDB pages
	# each); LMDB's free pages add up to about the bound again.
	hits=$(sed -n 's/.*host cache: \([0-9]*\) hits.*/\1/p' "$dir/out")
	sz=$(du -sk "$dir/small" | cut -f1)
	echo "2nd load: $hits hits; cache file ${sz} KiB (--cache-size 4m, batches of 1m)"
	[ -n "$hits" ] && [ "$hits" -le 512 ] && [ "$sz" -lt $((3 * 4096)) ]
}
tap "the cache stays within --cache-size (LRU eviction)" bounded_cache

gc_while_saving() {
	local pid rc
	head -c $((24 << 20)) /dev/urandom >"$dir/big"
	stA delete "$S" b >/dev/null || return 1
	VMRESET_STORE_CACHE=$A "$tool" save "$dir/big" "$S" --key "$dir/k" --name big -t 2 \
		>"$dir/save.out" 2>&1 &
	pid=$!
	sleep 0.5
	stB gc "$S" >"$dir/gc.out" 2>&1 || { cat "$dir/gc.out"; return 1; }
	wait $pid
	rc=$?
	cat "$dir/save.out" "$dir/gc.out"
	[ $rc = 0 ] || return 1
	grep -q "removed 5 blocks" "$dir/gc.out" || return 1
	stB verify "$S" --key "$dir/k" >/dev/null &&
	stB load "$S" big "$dir/big.out" --key "$dir/k" >/dev/null && cmp "$dir/big" "$dir/big.out"
}
tap "gc on host B while host A saves: gc waits, both succeed, every snapshot verifies" gc_while_saving

gc_spilled() {
	head -c $((64 * 4096)) /dev/urandom >"$dir/tmp64"
	stA save "$dir/tmp64" "$S" --key "$dir/k" --name tmp64 >/dev/null &&
	stA delete "$S" tmp64 >/dev/null || return 1
	VMRESET_STORE_GC_MEM=2k VMRESET_STORE_GC_TMP=$dir stB gc "$S" >"$dir/gc.out" 2>&1 ||
		{ cat "$dir/gc.out"; return 1; }
	cat "$dir/gc.out"
	grep -q "block references over the memory bound" "$dir/gc.out" &&
	grep -q "removed 64 blocks" "$dir/gc.out" || return 1
	! ls -a "$dir" | grep -q gc-live || { echo "the live-block table was left"; return 1; }
	stB gc "$S" | grep -q "removed 0 blocks" &&
	stB verify "$S" --key "$dir/k" >/dev/null &&
	stB load "$S" big "$dir/big.out" --key "$dir/k" >/dev/null && cmp "$dir/big" "$dir/big.out"
}
tap "gc with its live set past VMRESET_STORE_GC_MEM (a table on disk) removes exactly the garbage" gc_spilled

lost_lock() {
	# A save stopped past its lock's duration: gc runs meanwhile and frees
	# its blocks; when it continues it must commit nothing.
	local pid status
	head -c $((2 << 20)) /dev/urandom >"$dir/c"
	VMRESET_STORE_STOP_AT=before-manifest VMRESET_STORE_CACHE=$A "$tool" save "$dir/c" "$S" \
		--key "$dir/k" --name c >"$dir/c.out" 2>&1 &
	pid=$!
	stopped $pid
	sleep 5				# > VMRESET_STORE_RADOS_LOCK_SECS
	stB gc "$S" >"$dir/gc.out" 2>&1 || { cat "$dir/gc.out"; return 1; }
	cat "$dir/gc.out"
	grep -q "removed 512 blocks" "$dir/gc.out" || return 1
	kill -CONT $pid
	wait $pid
	status=$?
	cat "$dir/c.out"
	[ $status = 1 ] && grep -q "lost the store lock" "$dir/c.out" &&
		grep -q "nothing saved" "$dir/c.out" || return 1
	! stB list "$S" | grep -q '^c ' && stB verify "$S" --key "$dir/k" >/dev/null
}
tap "a save that lost its lock (stopped, gc ran) commits nothing" lost_lock

kill9() {
	local before after pid
	before=$(stA list -j "$S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blocks"])')
	for stage in before-blocks mid-blocks after-blocks before-manifest; do
		head -c $((2 << 20)) /dev/urandom >"$dir/k9"
		VMRESET_STORE_STOP_AT=$stage VMRESET_STORE_CACHE=$A "$tool" save "$dir/k9" "$S" \
			--key "$dir/k" --name k9 >/dev/null 2>&1 &
		pid=$!
		stopped $pid
		kill -9 $pid
		wait $pid 2>/dev/null
		if stA list "$S" | grep -q '^k9 '; then echo "$stage: k9 listed"; return 1; fi
		stA verify "$S" --key "$dir/k" >/dev/null || { echo "$stage: verify"; return 1; }
	done
	# The killed saves' locks expire; gc then takes back what they stored.
	stB gc "$S" >"$dir/gc.out" || return 1
	cat "$dir/gc.out"
	after=$(stA list -j "$S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blocks"])')
	[ "$before" = "$after" ] || { echo "blocks $before before, $after after gc"; return 1; }
	[ "$(rados -p vmrs -N st ls | grep -c '^man\.')" = "$(stA list -j "$S" |
		python3 -c 'import json,sys; print(len(json.load(sys.stdin)["snapshots"]))')" ]
}
tap "kill -9 at each stage of a save: store consistent, gc takes the leftovers back" kill9

osd_away() {
	local pid status t0 osd
	osd=$(cat "$ceph_dir/run/osd.0.pid")
	head -c $((8 << 20)) /dev/urandom >"$dir/d"
	VMRESET_STORE_STOP_AT=mid-blocks VMRESET_STORE_CACHE=$A "$tool" save "$dir/d" "$S" \
		--key "$dir/k" --name d -t 1 >"$dir/d.out" 2>&1 &
	pid=$!
	stopped $pid
	kill -STOP "$osd"
	osd_stopped=$osd
	t0=$SECONDS
	kill -CONT $pid
	wait $pid
	status=$?
	kill -CONT "$osd"
	osd_stopped=
	cat "$dir/d.out"
	echo "failed after $((SECONDS - t0)) s"
	[ $status = 1 ] && grep -q "timed out (cluster unreachable?)" "$dir/d.out" &&
		grep -q "nothing saved" "$dir/d.out" && [ $((SECONDS - t0)) -lt 60 ] || return 1
	sleep 1
	! stA list "$S" | grep -q '^d ' && stA verify "$S" --key "$dir/k" >/dev/null &&
	stA load "$S" big "$dir/big.out2" --key "$dir/k" >/dev/null && cmp "$dir/big" "$dir/big.out2"
}
tap "the OSD going away mid-save: a clear error in bounded time, nothing half-written" osd_away

incremental() {
	cp "$dir/big" "$dir/big2"
	dd if=/dev/urandom of="$dir/big2" bs=4096 seek=77 count=3 conv=notrunc 2>/dev/null
	stB save "$dir/big2" "$S" --key "$dir/k" --name big2 --base big >"$dir/out" &&
	grep -q " 3 new, " "$dir/out" &&
	stA load "$S" big2 "$dir/big2.out" --key "$dir/k" >/dev/null &&
	cmp "$dir/big2" "$dir/big2.out" &&
	contains "'big' is the base of 'big2'" stA delete "$S" big; [ $? = 0 ]
}
tap "incremental manifests across hosts; a base with dependents cannot be deleted" incremental

concurrent_same() {
	# Two hosts store the same new 4 MiB at the same time: both succeed, the
	# index keeps one entry per block, gc removes packs no entry points into.
	local pa pb before after
	head -c $((4 << 20)) /dev/urandom >"$dir/same"
	VMRESET_STORE_CACHE=$A "$tool" save "$dir/same" "$S" --key "$dir/k" --name sameA \
		>"$dir/sa.out" 2>&1 &
	pa=$!
	VMRESET_STORE_CACHE=$B "$tool" save "$dir/same" "$S" --key "$dir/k" --name sameB \
		>"$dir/sb.out" 2>&1 &
	pb=$!
	wait $pa || { cat "$dir/sa.out"; return 1; }
	wait $pb || { cat "$dir/sb.out"; return 1; }
	cat "$dir/sa.out" "$dir/sb.out"
	before=$(rados -p vmrs -N st ls | grep -c '^pack\.')
	stA gc "$S" >"$dir/gc.out" || return 1
	cat "$dir/gc.out"
	after=$(rados -p vmrs -N st ls | grep -c '^pack\.')
	echo "packs: $before before gc, $after after"
	stA verify "$S" --key "$dir/k" >/dev/null &&
	stB load "$S" sameA "$dir/sa" --key "$dir/k" >/dev/null && cmp "$dir/same" "$dir/sa" &&
	stA load "$S" sameB "$dir/sb" --key "$dir/k" >/dev/null && cmp "$dir/same" "$dir/sb" &&
	[ "$(stA list -j "$S" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(1 for s in d["snapshots"] if s["name"] in ("sameA", "sameB")))')" = 2 ]
}
tap "two hosts save the same new data at once: both succeed, gc keeps both loadable" concurrent_same

swapped() {
	# Another snapshot's manifest object under this name is refused (name in the AAD).
	rados -p vmrs -N st getomapval head m:big "$dir/v" >/dev/null &&
	rados -p vmrs -N st setomapval head m:a --input-file "$dir/v" || return 1
	contains "manifest 'a': it is the manifest of 'big' (renamed or swapped)" \
		stA load "$S" a "$dir/a.sw" --key "$dir/k"
}
tap "a manifest swapped under another name is refused" swapped

shard_bound() {
	# A store of one index shard with a bound of 300 entries (Ceph's
	# large-omap threshold is 200,000): 256 new blocks fit, 256 more are
	# refused before anything is written (also when the shard has no
	# count yet, as in an older store), a save of known blocks still
	# works, and gc records the shard's exact count.
	local S1=rados://vmrs/shards cnt
	contains "1 index shards" st init "$S1" --index-shards 1 &&
	contains "a power of two, 1 to 4096" st init rados://vmrs/x --index-shards 3 &&
	contains "an option of init and reshard for rados:// stores" st init "$dir/dirstore" --index-shards 64 ||
		return 1
	head -c $((1 << 20)) /dev/urandom >"$dir/p1"
	head -c $((1 << 20)) /dev/urandom >"$dir/p2"
	export VMRESET_STORE_RADOS_SHARD_KEYS=300
	stA save "$dir/p1" "$S1" --key "$dir/k" --name p1 >/dev/null &&
	# As in a store made before the counts: none; the entries are counted.
	rados -p vmrs -N shards rmxattr index.00 vmrs.keys &&
	contains "index shard 'index.00' holds 256 block entries and this save adds 256: over the bound of 300 per shard" \
		stA save "$dir/p2" "$S1" --key "$dir/k" --name p2 &&
	! stA list "$S1" | grep -q '^p2 ' &&
	[ "$(rados -p vmrs -N shards listomapkeys index.00 | wc -l)" = 256 ] &&
	contains " 0 new, 256 deduplicated" stA save "$dir/p1" "$S1" --key "$dir/k" --name p1b &&
	stA gc "$S1" &&
	cnt=$(rados -p vmrs -N shards getxattr index.00 vmrs.keys) && echo "count $cnt" &&
	[ "$cnt" = 256 ] &&
	contains "256 blocks" stA list "$S1" &&
	stA load "$S1" p1 "$dir/p1.out" --key "$dir/k" >/dev/null && cmp "$dir/p1" "$dir/p1.out"
	local rc=$?
	unset VMRESET_STORE_RADOS_SHARD_KEYS
	return $rc
}
tap "an index shard past its bound: the save refused with the numbers, nothing written; gc counts exactly" shard_bound

gc_rewrite() {
	# x: 8 MiB in packs of 4 MiB; y shares x's first 1 MiB. With x deleted,
	# x's first pack is a quarter live: gc copies that quarter into a new
	# pack and removes the old one, whose 3 MiB a pack-per-object gc kept.
	local S2=rados://vmrs/rw before after
	st init "$S2" >/dev/null &&
	head -c $((8 << 20)) /dev/urandom >"$dir/x" &&
	{ head -c $((1 << 20)) "$dir/x"; head -c $((7 << 20)) /dev/urandom; } >"$dir/y" &&
	stA save "$dir/x" "$S2" --key "$dir/k" --name x -t 1 >/dev/null &&
	stA save "$dir/y" "$S2" --key "$dir/k" --name y -t 1 >/dev/null &&
	stA delete "$S2" x >/dev/null || return 1
	stA gc "$S2" >"$dir/gc.out" || return 1
	cat "$dir/gc.out"
	grep -q "rewrote 1 packs" "$dir/gc.out" || return 1
	# What is left is y's blocks: 2048 of them, sealed (4112 bytes each) + pack headers.
	after=$(rados -p vmrs -N rw ls | grep '^pack\.' | while read -r o; do
		rados -p vmrs -N rw stat "$o" | awk '{print $NF}'; done | awk '{s += $1} END {print s}')
	echo "pack bytes after gc: $after"
	[ "$after" -lt $((2048 * 4112 + 8 * 16)) ] &&
	stB load "$S2" y "$dir/y.out" --key "$dir/k" --cache-size 0 >/dev/null && cmp "$dir/y" "$dir/y.out" &&
	stA verify "$S2" --key "$dir/k" >/dev/null &&
	contains "rewrote 0 packs" stA gc "$S2"
}
tap "gc rewrites a pack under half live: space follows live blocks; the snapshot loads and verifies" gc_rewrite
# The index of one shard checked against its count: prints the keys.
shard_keys() {
	local c k
	c=$(rados -p vmrs -N "$1" getxattr "$2" vmrs.keys) &&
	k=$(rados -p vmrs -N "$1" listomapkeys "$2" | wc -l) || return 1
	[ "$c" = "$k" ] || { echo "$2: count $c, $k keys" >&2; return 1; }
	echo "$k"
}

# Every shard of generation $2 in namespace $1: their keys summed (the
# counts checked), and no index object of another generation.
index_is() {
	local ns=$1 gen=$2 n=$3 want=$4 sum=0 k objs
	if [ "$gen" = 0 ]; then
		objs=$(rados -p vmrs -N "$ns" ls | grep -E '^index\.[0-9]+$')
	else
		objs=$(rados -p vmrs -N "$ns" ls | grep -E "^index\.$gen\.[0-9]+$")
	fi
	[ "$(echo "$objs" | grep -c .)" = "$n" ] || { echo "want $n shards of gen $gen: $objs"; return 1; }
	[ "$(rados -p vmrs -N "$ns" ls | grep -c '^index\.')" = "$n" ] ||
		{ echo "index objects of other generations:"; rados -p vmrs -N "$ns" ls | grep '^index\.'; return 1; }
	for o in $objs; do
		k=$(shard_keys "$ns" "$o") || return 1
		sum=$((sum + k))
	done
	[ "$sum" = "$want" ] || { echo "$sum entries in gen $gen, want $want"; return 1; }
	rados -p vmrs -N "$ns" get head - | grep -qx "index_shards $n"
}

reshard() {
	# 2 shards -> 8: every entry moves to where the new placement looks
	# for it, counts exact, old shards gone, policy version 3; loads go
	# through the new index (no cache) and saves dedup against it.
	local R=rados://vmrs/rs
	st init "$R" --index-shards 2 >/dev/null &&
	head -c $((3 << 20)) /dev/urandom >"$dir/r1" && head -c $((2 << 20)) /dev/urandom >"$dir/r2" &&
	stA save "$dir/r1" "$R" --key "$dir/k" --name r1 >/dev/null &&
	stA save "$dir/r2" "$R" --key "$dir/k" --name r2 >/dev/null &&
	index_is rs 0 2 1280 || return 1
	contains "2 index shards (generation 0) -> 8 (generation 1), 1280 entries moved" \
		stA reshard "$R" --index-shards 8 &&
	index_is rs 1 8 1280 &&
	rados -p vmrs -N rs get head - | grep -qx "vmreset-store 3" &&
	rados -p vmrs -N rs get head - | grep -qx "index_gen 1" &&
	stB load "$R" r1 "$dir/r1.out" --key "$dir/k" --cache-size 0 >/dev/null &&
	cmp "$dir/r1" "$dir/r1.out" &&
	contains " 0 new, 512 deduplicated" stB save "$dir/r2" "$R" --key "$dir/k" --name r2b --cache-size 0 &&
	stA verify "$R" --key "$dir/k" >/dev/null &&
	contains "1280 blocks" stA list "$R" &&
	contains "already 8 index shards, nothing to do" stA reshard "$R" --index-shards 8 &&
	contains "needs --index-shards N" st reshard "$R" &&
	contains "a power of two, 1 to 4096" st reshard "$R" --index-shards 6 &&
	contains "an option of init and reshard for rados:// stores" st reshard "$dir/dirstore" --index-shards 2 &&
	# Too many entries for the new shards: refused before anything is written.
	contains "1280 block entries do not fit 2 shards of at most 300" \
		env VMRESET_STORE_RADOS_SHARD_KEYS=300 "$tool" reshard "$R" --index-shards 2 &&
	index_is rs 1 8 1280 || return 1
	# A load started while the reshard holds the store waits, then reads
	# the new policy under its lock: it must find every block.
	VMRESET_STORE_STOP_AT=reshard-copied:4 VMRESET_STORE_CACHE=$A "$tool" reshard "$R" \
		--index-shards 4 >"$dir/rs.out" 2>&1 &
	local pid=$!
	sleep 1.5
	stB load "$R" r1 "$dir/r1.out2" --key "$dir/k" --cache-size 0 >"$dir/rs.load" 2>&1 ||
		{ cat "$dir/rs.load"; return 1; }
	wait $pid || { cat "$dir/rs.out"; return 1; }
	grep -q "waiting for the store lock" "$dir/rs.load" || { echo "the load did not wait"; cat "$dir/rs.load"; return 1; }
	cmp "$dir/r1" "$dir/r1.out2" && index_is rs 2 4 1280
}
tap "reshard 2 -> 8 -> 4 index shards: entries moved and counted, old shards gone, a waiting load reads the new policy" reshard

reshard_killed() {
	# kill -9 after the copy (before the switch): the store is unchanged
	# and gc removes the partial copy; after the switch: the new index
	# serves, gc removes the old shards. The store verifies each time.
	local R=rados://vmrs/rs pid
	for stage in reshard-copied reshard-switched; do
		VMRESET_STORE_STOP_AT=$stage VMRESET_STORE_CACHE=$A "$tool" reshard "$R" \
			--index-shards 16 >/dev/null 2>&1 &
		pid=$!
		stopped $pid
		kill -9 $pid
		wait $pid 2>/dev/null
		stB verify "$R" --key "$dir/k" --cache-size 0 >/dev/null || { echo "$stage: verify"; return 1; }
		stA gc "$R" >"$dir/gc.out" || { cat "$dir/gc.out"; return 1; }
		cat "$dir/gc.out"
		if [ $stage = reshard-copied ]; then
			index_is rs 2 4 1280 || return 1
		else
			index_is rs 3 16 1280 || return 1
		fi
	done
	stB load "$R" r2 "$dir/r2.out" --key "$dir/k" --cache-size 0 >/dev/null && cmp "$dir/r2" "$dir/r2.out"
}
tap "reshard killed before and after its switch: the store verifies, gc removes what it left" reshard_killed
pack_id_twice() {
	# As store_host.sh's, on RADOS: the pack object is created, never replaced.
	local R=rados://vmrs/pid p out
	st init "$R" >/dev/null &&
	head -c $((1 << 20)) /dev/urandom >"$dir/pa" && head -c $((1 << 20)) /dev/urandom >"$dir/pb" &&
	stA save "$dir/pa" "$R" --key "$dir/k" --name a >/dev/null || return 1
	p=$(rados -p vmrs -N pid ls | grep '^pack\.' | cut -c6-)
	out=$(VMRESET_STORE_PACK_ID=$p VMRESET_STORE_CACHE=$A "$tool" save "$dir/pb" "$R" --key "$dir/k" --name b 2>&1) &&
		{ echo "saved over pack $p: $out"; return 1; }
	echo "$out" | grep -q "pack $p already exists (a 64-bit ID drawn twice)" || { echo "$out"; return 1; }
	! stA list "$R" | grep -q '^b ' &&
	stB load "$R" a "$dir/pa.out" --key "$dir/k" --cache-size 0 >/dev/null && cmp "$dir/pa" "$dir/pa.out"
}
tap "a pack ID drawn twice: the second save is refused, the first pack object is kept" pack_id_twice
[ "$fails" = 0 ]
