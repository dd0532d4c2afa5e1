#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# store_host.sh - host-side checks of vmreset-store that need tools the
# test VM does not have: list -j with hostile names and paths must be JSON
# that Python's parser accepts, carrying the names back unchanged; the man
# page must render without warnings; block names and keys are recomputed
# in Python, 16 at a time and one by one, and the blocks sealed with VAES
# opened with Python's AES-GCM. Run by scripts/check.sh (HOST_TESTS).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tap.sh"
tool=${VMRESET_STORE:-$here/../store/vmreset-store}
dir=$(mktemp -d /tmp/store_host.XXXXXX)
loops=()
trap 'for l in "${loops[@]}"; do losetup -d "$l"; done; rm -rf "$dir"' EXIT
echo "TAP version 13"
echo "1..20"

store="$dir/st\"o\\re"$'\t\x01\x1f\n'
names=('quote"d' 'back\slash' 'both\"\\' 'sp ace é中' '{"a":[1]}' "new"$'\u2028'"line")

setup() {
	"$tool" init "$store" >/dev/null &&
	"$tool" keygen "$dir/k" &&
	head -c 12288 /dev/urandom > "$dir/a" &&
	for nm in "${names[@]}"; do
		"$tool" save "$dir/a" "$store" --key "$dir/k" --name "$nm" >/dev/null || return 1
	done
}
tap "store with hostile names and path" setup

tap "list -j parses with python3 -m json.tool" \
	sh -c '"$1" list -j "$2" | python3 -m json.tool >/dev/null' sh "$tool" "$store"

roundtrip() {
	"$tool" list -j "$store" > "$dir/list.json" || return 1
	python3 - "$dir/list.json" "$store" "${names[@]}" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
store, names = sys.argv[2], sorted(sys.argv[3:])
got = sorted(s["name"] for s in doc["snapshots"])
assert doc["store"] == store, (doc["store"], store)
assert got == names, (got, names)
assert doc["blocks"] == 3, doc["blocks"]
for s in doc["snapshots"]:
    assert s["size"] == 12288 and s["seq"] == 1 and s["base"] is None, s
PY
}
tap "names and path come back unchanged" roundtrip

# The naming of docs/store.md computed here, by Python, from the policy's
# secret: every block's ID in the manifest, and its key opening the pack.
# 37 blocks (one of them zero, the last one short): a save names them 16
# at a time (AVX-512, where the CPU has it), the tail one by one; the
# second store names every block one at a time. Each store is then loaded
# with the other AES-GCM (VAES where the CPU has it, OpenSSL's) and must
# give the object back.
names_kat() {
	local st="$dir/kat$1" env=$2 load_env=$3
	rm -rf "$st"
	"$tool" init "$st" --copies 1 >/dev/null &&
	{ head -c $((5 * 4096)) /dev/urandom; head -c 4096 /dev/zero;
	  head -c $((30 * 4096 + 1000)) /dev/urandom; } > "$dir/b" &&
	env $env "$tool" save "$dir/b" "$st" --key "$dir/k" --name one -t 1 >/dev/null || return 1
	python3 - "$st" "$dir/b" <<'PY'
import glob, hashlib, hmac, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
st, plain = sys.argv[1], open(sys.argv[2], "rb").read()
pol = dict(l.split(" ", 1) for l in open(st + "/policy").read().split("\n")[1:] if l)
salt = hmac.new(bytes.fromhex(pol["secret"]), b"salt 0", hashlib.sha256).digest()
blocks = [plain[o:o + 4096] for o in range(0, len(plain), 4096)]
assert len(blocks) == 37 and len(blocks[-1]) == 1000
blocks = [b for b in blocks if b.count(0) != len(b)]
assert len(blocks) == 36
names = []
for b in blocks:
    h = hashlib.sha256(b).digest()
    names.append((hashlib.sha256(b"vmreset-store K\0" + salt + h).digest(),
                  hashlib.sha256(b"vmreset-store id" + salt + h).digest()))
m = open(st + "/manifests/one", "rb").read()
assert m[:8] == b"VMRSMAN2", m[:8]
nl, bl = struct.unpack_from("<II", m, 8)
nrefs, = struct.unpack_from("<Q", m, 8 + 8 + 32 + 32 + 8)
off = 8 + 8 + 32 + 32 + 8 + 8 + nl + bl
refs = [m[off + 32 * i:off + 32 * i + 32] for i in range(nrefs)]
assert refs == sorted(bid for _, bid in names), "the manifest's block IDs differ"
packs = glob.glob(st + "/packs/*")
assert len(packs) == 1, packs
pk = open(packs[0], "rb").read()
assert pk[:8] == b"VMRSPAK1" and len(pk) == 16 + sum(len(b) + 16 for b in blocks), len(pk)
o = 16
for b, (key, _) in zip(blocks, names):
    assert AESGCM(key).decrypt(bytes(12), pk[o:o + len(b) + 16], None) == b
    o += len(b) + 16
PY
	[ $? = 0 ] && env $load_env "$tool" load "$st" one "$dir/b.out" --key "$dir/k" >/dev/null &&
	cmp "$dir/b" "$dir/b.out"
}
tap "block IDs and keys are the documented hashes (Python's, from the policy)" names_kat 1 A=1 VMRESET_STORE_NO_AVX512=1
tap "the same, each block named on its own (VMRESET_STORE_NO_AVX512)" \
	names_kat 2 VMRESET_STORE_NO_AVX512=1 A=1

tap "block naming, sealing and opening match OpenSSL EVP's for lengths 0 to 9000" \
	sh -c '"$1" --check' sh "${VMRESET_STORE_CRYPTOBENCH:-$here/../store/cryptobench}"
tap "the same without AVX-512 (VMRESET_STORE_NO_AVX512)" \
	env VMRESET_STORE_NO_AVX512=1 "${VMRESET_STORE_CRYPTOBENCH:-$here/../store/cryptobench}" --check

# A manifest whose header is damaged stops gc (its blocks would go) and is
# not deleted by default; delete --force removes it unread, and then gc
# runs and the other snapshot still loads.
forced_delete() {
	local st="$dir/force" out
	"$tool" init "$st" >/dev/null &&
	head -c 65536 /dev/urandom > "$dir/f1" && head -c 65536 /dev/urandom > "$dir/f2" &&
	"$tool" save "$dir/f1" "$st" --key "$dir/k" --name good >/dev/null &&
	"$tool" save "$dir/f2" "$st" --key "$dir/k" --name bad >/dev/null || return 1
	printf 'garbage' | dd of="$st/manifests/bad" bs=1 seek=8 conv=notrunc 2>/dev/null
	out=$("$tool" gc "$st" 2>&1) && { echo "gc ran over a damaged manifest: $out"; return 1; }
	echo "$out" | grep -q "manifest 'bad' cannot be read: stopped, nothing removed" ||
		{ echo "gc: $out"; return 1; }
	echo "$out" | grep -q "delete --force" || { echo "gc gives no way out: $out"; return 1; }
	out=$("$tool" delete "$st" bad 2>&1) && { echo "deleted without --force: $out"; return 1; }
	echo "$out" | grep -q "cannot be read (--force removes it unread)" ||
		{ echo "delete: $out"; return 1; }
	[ -e "$st/manifests/bad" ] || { echo "delete without --force removed it"; return 1; }
	out=$("$tool" delete "$st" nosuch --force 2>&1) && { echo "deleted a missing one: $out"; return 1; }
	"$tool" delete "$st" bad --force | grep -q "deleted 'bad' (unread: --force)" &&
	[ ! -e "$st/manifests/bad" ] &&
	"$tool" gc "$st" | grep -q "removed 16 blocks" &&
	"$tool" load "$st" good "$dir/f1.out" --key "$dir/k" >/dev/null &&
	cmp "$dir/f1" "$dir/f1.out" &&
	{ "$tool" list "$st" --force >/dev/null 2>&1; [ $? = 2 ]; }
}
tap "delete --force removes a damaged manifest that stops gc; without it nothing goes" \
	forced_delete

# Two packs drawing one ID (forced with VMRESET_STORE_PACK_ID): the second
# save fails and says so, the first pack stays, the first snapshot loads
# and no temporary is left. (Before, the rename replaced the older pack.)
pack_id_twice() {
	local st="$dir/pid" p out
	"$tool" init "$st" >/dev/null &&
	head -c 65536 /dev/urandom > "$dir/pa" && head -c 65536 /dev/urandom > "$dir/pb" &&
	"$tool" save "$dir/pa" "$st" --key "$dir/k" --name a >/dev/null || return 1
	p=$(ls "$st/packs")
	out=$(VMRESET_STORE_PACK_ID=$p "$tool" save "$dir/pb" "$st" --key "$dir/k" --name b 2>&1) &&
		{ echo "saved over pack $p: $out"; return 1; }
	echo "$out" | grep -q "pack $p already exists (a 64-bit ID drawn twice)" ||
		{ echo "$out"; return 1; }
	[ "$(ls -A "$st/packs")" = "$p" ] || { ls -A "$st/packs"; return 1; }
	! "$tool" list "$st" | grep -q '^b ' &&
	"$tool" load "$st" a "$dir/pa.out" --key "$dir/k" >/dev/null && cmp "$dir/pa" "$dir/pa.out" &&
	"$tool" verify "$st" --key "$dir/k" >/dev/null
}
tap "a pack ID drawn twice: the second save is refused, the first pack is kept" pack_id_twice

# A save whose input is cut short while it runs fails and says so; it must
# not store the part past the new end as zeros (SEEK_DATA finds no data
# there, as in a hole at the end). Stopped half way (STOP_AT=mid-blocks),
# 1,000 blocks, the file cut to 256, then let go. The input is mapped (the rest
# of the stopped chunk raises SIGBUS) or, with VMRESET_STORE_NO_MAP=1,
# read (the next chunk finds no data).
stopped() {
	for _ in $(seq 100); do
		[ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = T ] && return
		sleep 0.1
	done
	return 1
}

input_cut() {
	local st="$dir/cut" pid out rc
	rm -rf "$st"
	"$tool" init "$st" >/dev/null &&
	head -c $((1000 * 4096)) /dev/urandom > "$dir/big" || return 1
	env VMRESET_STORE_STOP_AT=mid-blocks ${1:-} "$tool" save "$dir/big" "$st" --key "$dir/k" \
		--name cut -t 1 > "$dir/cut.out" 2>&1 &
	pid=$!
	stopped $pid || { kill -9 $pid; echo "the save never stopped"; return 1; }
	truncate -s $((1 << 20)) "$dir/big"
	kill -CONT $pid
	wait $pid
	rc=$?
	out=$(cat "$dir/cut.out")
	[ $rc != 0 ] || { echo "a cut input saved: $out"; return 1; }
	echo "$out" | grep -q "file shrank during the save" || { echo "$out"; return 1; }
	# Mapped, the cut is met inside the stopped chunk: the SIGBUS path.
	[ -n "${1:-}" ] || echo "$out" | grep -q "a page cut off in the chunk at offset" || { echo "$out"; return 1; }
	! "$tool" list "$st" | grep -q '^cut ' || { echo "a manifest was written"; return 1; }
}
tap "an input cut during the save fails it, nothing stored as zeros" input_cut
tap "the same, the input read, not mapped (VMRESET_STORE_NO_MAP)" input_cut VMRESET_STORE_NO_MAP=1

# A load opens blocks in the packs mapped (VMRESET_STORE_NO_MAP=1 reads
# them): a pack cut shorter under it must not kill it with SIGBUS. Stopped
# once its first run is mapped (STOP_AT=load-mapped), the pack cut after
# block 255 of 1,024, then let go: the load fails naming blocks as
# truncated and leaves no target; with --partial it names all 768 and
# writes the 256 good ones.
pack_cut() {
	local st="$dir/pcut" p rc pid
	rm -rf "$st" "$dir/pc.out"*
	"$tool" init "$st" >/dev/null &&
	head -c $((4 << 20)) /dev/urandom > "$dir/pc" &&
	"$tool" save "$dir/pc" "$st" --key "$dir/k" --name a -t 1 >/dev/null || return 1
	p=$(ls "$st/packs")
	[ "$(echo "$p" | wc -l)" = 1 ] || { echo "packs: $p"; return 1; }
	VMRESET_STORE_STOP_AT=load-mapped "$tool" load "$st" a "$dir/pc.out" --key "$dir/k" \
		-t 1 ${1:-} > "$dir/pc.log" 2>&1 &
	pid=$!
	stopped $pid || { kill -9 $pid; echo "the load never stopped"; return 1; }
	truncate -s $((16 + 256 * 4112)) "$st/packs/$p"
	kill -CONT $pid
	wait $pid
	rc=$?
	[ $rc = 1 ] || { echo "exit $rc"; cat "$dir/pc.log"; return 1; }
	if grep -v "truncated in the store" "$dir/pc.log" | grep -q "block [0-9]"; then
		cat "$dir/pc.log"; return 1
	fi
	if [ -z "${1:-}" ]; then
		grep -q "block 256 (offset 1048576, .*truncated in the store" "$dir/pc.log" &&
		[ -z "$(ls "$dir" | grep pc.out)" ] || { cat "$dir/pc.log"; ls "$dir"; return 1; }
	else
		[ "$(grep -c "truncated in the store" "$dir/pc.log")" = 768 ] &&
		cmp -n $((1 << 20)) "$dir/pc" "$dir/pc.out" &&
		! cmp -s "$dir/pc" "$dir/pc.out" || { tail -3 "$dir/pc.log"; return 1; }
	fi
}
tap "a pack cut under a load: the blocks past the cut named truncated, no SIGBUS" pack_cut
tap "the same with --partial: 768 named, the 256 before the cut written" pack_cut --partial

# A tmpfs with huge pages says 2 MiB in st_blksize, and a load then writes
# 2 MiB chunks (a smaller write zeroes the rest of a fresh huge page
# first): zero blocks inside a chunk, a chunk that ends in them, and a
# tail shorter than a block must still come back exact. Its own mount
# namespace: nothing is left mounted if the test dies.
huge_target() {
	local hz="$dir/hz" un=(unshare -m)

	[ "$(id -u)" = 0 ] || un=(unshare -rm)
	mkdir -p "$hz"
	{ head -c $((1 << 20)) /dev/urandom; head -c $((5 << 19)) /dev/zero
	  head -c $(((3 << 19) + 123)) /dev/urandom; } > "$dir/hz.in"
	rm -rf "$dir/hzst"; "$tool" init "$dir/hzst" >/dev/null &&
	"$tool" save "$dir/hz.in" "$dir/hzst" --key "$dir/k" --name hz >/dev/null || return 1
	"${un[@]}" sh -c '
		mount -t tmpfs -o huge=within_size,size=64m tmpfs "$2" || exit 1
		truncate -s 4m "$2/probe"
		bs=$(stat -c %o "$2/probe")
		[ "$bs" = 2097152 ] || { echo "st_blksize $bs: this kernel gives tmpfs no huge pages"; exit 1; }
		"$1" load "$3/hzst" hz "$2/out" --key "$3/k" -t "$4" >/dev/null &&
		cmp "$3/hz.in" "$2/out"' sh "$tool" "$hz" "$dir" "$1"
}
tap "load into a huge-page tmpfs (2 MiB writes): zero blocks and the tail exact" huge_target 1
tap "the same with two threads" huge_target 2

# A target filesystem that fills up under a load: the failed write named,
# whether its chunk was written at once or after the thread's next one
# (VMRESET_STORE_WRITE_LATE), the old target kept, no temporary file left.
full_target() {
	local fz="$dir/fz" un=(unshare -m)

	[ "$(id -u)" = 0 ] || un=(unshare -rm)
	mkdir -p "$fz"
	head -c $((4 << 20)) /dev/urandom > "$dir/fz.in"
	rm -rf "$dir/fzst"; "$tool" init "$dir/fzst" >/dev/null &&
	"$tool" save "$dir/fz.in" "$dir/fzst" --key "$dir/k" --name fz >/dev/null || return 1
	"${un[@]}" sh -c '
		mount -t tmpfs -o size=2m tmpfs "$2" || exit 1
		echo old > "$2/out"
		for late in "" VMRESET_STORE_WRITE_LATE=1; do
			for t in 1 2; do
				env $late "$1" load "$3/fzst" fz "$2/out" --key "$3/k" -t $t > "$3/fz.log" 2>&1
				rc=$?
				grep -q "write at offset [0-9]*: No space left on device" "$3/fz.log" &&
					[ $rc = 1 ] || { echo "$late -t $t: exit $rc"; cat "$3/fz.log"; exit 1; }
				[ "$(cat "$2/out")" = old ] || { echo "$late -t $t: target changed"; exit 1; }
				[ "$(ls "$2")" = out ] || { echo "$late -t $t: left behind:"; ls "$2"; exit 1; }
			done
		done' sh "$tool" "$fz" "$dir"
}
tap "load into a filesystem that fills up: ENOSPC named, target kept, nothing left" full_target

# A block device target is written in place: one smaller than the
# snapshot must be refused before a byte is written (it used to take the
# first part and fail at its end), one as large or larger loaded; a FIFO
# is no target (opening it for writing would wait for a reader).
# attach FILE: a loop device on it, in $loop_dev; detached at exit.
attach() {
	loop_dev=$(losetup -f --show "$1") || return 1
	loops+=("$loop_dev")
}

small_device() {
	[ "$(id -u)" = 0 ] || { echo "needs root for a loop device"; return 1; }
	head -c $((2 << 20)) /dev/urandom > "$dir/dev.in"
	head -c $((1 << 20)) /dev/urandom > "$dir/dev.img"
	cp "$dir/dev.img" "$dir/dev.orig"
	rm -rf "$dir/devst"
	"$tool" init "$dir/devst" >/dev/null &&
	"$tool" save "$dir/dev.in" "$dir/devst" --key "$dir/k" --name d >/dev/null &&
	attach "$dir/dev.img" || return 1
	out=$("$tool" load "$dir/devst" d "$loop_dev" --key "$dir/k" 2>&1)
	rc=$?
	[ $rc = 1 ] && echo "$out" | grep -q "the device holds 1048576 bytes, snapshot 'd' 2097152; nothing written" ||
		{ echo "exit $rc: $out"; return 1; }
	"$tool" load "$dir/devst" d "$loop_dev" --key "$dir/k" --partial >/dev/null 2>&1 &&
		{ echo "--partial loaded into the small device"; return 1; }
	# Through the loop device's page cache: compare what the device holds.
	cmp "$loop_dev" "$dir/dev.orig" || { echo "the device was written"; return 1; }
}
tap "load into a block device smaller than the snapshot: refused, nothing written" small_device

big_device() {
	head -c $((3 << 20)) /dev/urandom > "$dir/dev.img2" &&
	attach "$dir/dev.img2" || return 1
	"$tool" load "$dir/devst" d "$loop_dev" --key "$dir/k" >/dev/null || return 1
	cmp -n $((2 << 20)) "$dir/dev.in" "$loop_dev"
}
tap "load into a larger block device: the snapshot's bytes at its start" big_device

fifo_target() {
	mkfifo "$dir/fifo" &&
	timeout 10 "$tool" load "$dir/devst" d "$dir/fifo" --key "$dir/k" > "$dir/fifo.out" 2>&1
	rc=$?
	[ $rc = 1 ] && grep -q "not a regular file or a block device" "$dir/fifo.out" &&
		[ -p "$dir/fifo" ] || { echo "exit $rc: $(cat "$dir/fifo.out")"; return 1; }
}
tap "load into a FIFO: refused at once, the FIFO left alone" fifo_target

man_ok() {
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$here/../store/vmreset-store.1" 2>&1 >/dev/null)
	[ -z "$out" ] || { echo "$out"; return 1; }
	man -l "$here/../store/vmreset-store.1" 2>/dev/null | grep -q 'convergent'
}
tap "man vmreset-store renders without warnings" man_ok
[ "$fails" = 0 ]
