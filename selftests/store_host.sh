#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# store_host.sh - host-side checks of vmreset-store that need tools the
# test VM does not have: list -j with hostile names and paths must be JSON
# that Python's parser accepts, carrying the names back unchanged; the man
# page must render without warnings. Run by scripts/check.sh (HOST_TESTS).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tap.sh"
tool=${VMRESET_STORE:-$here/../store/vmreset-store}
dir=$(mktemp -d /tmp/store_host.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "TAP version 13"
echo "1..6"

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
# secret: the block's ID in the manifest, and its key opening the pack.
names_kat() {
	local st="$dir/kat"
	"$tool" init "$st" --copies 1 >/dev/null &&
	head -c 4096 /dev/urandom > "$dir/b" &&
	"$tool" save "$dir/b" "$st" --key "$dir/k" --name one >/dev/null || return 1
	python3 - "$st" "$dir/b" <<'PY'
import glob, hashlib, hmac, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
st, plain = sys.argv[1], open(sys.argv[2], "rb").read()
pol = dict(l.split(" ", 1) for l in open(st + "/policy").read().split("\n")[1:] if l)
salt = hmac.new(bytes.fromhex(pol["secret"]), b"salt 0", hashlib.sha256).digest()
h = hashlib.sha256(plain).digest()
key = hashlib.sha256(b"vmreset-store K\0" + salt + h).digest()
bid = hashlib.sha256(b"vmreset-store id" + salt + h).digest()
m = open(st + "/manifests/one", "rb").read()
assert m[:8] == b"VMRSMAN2", m[:8]
nl, bl = struct.unpack_from("<II", m, 8)
nrefs, = struct.unpack_from("<Q", m, 8 + 8 + 32 + 32 + 8)
assert nrefs == 1, nrefs
off = 8 + 8 + 32 + 32 + 8 + 8 + nl + bl
assert m[off:off + 32] == bid, (m[off:off + 32].hex(), bid.hex())
packs = glob.glob(st + "/packs/*")
assert len(packs) == 1, packs
pk = open(packs[0], "rb").read()
assert pk[:8] == b"VMRSPAK1" and len(pk) == 16 + 4096 + 16, len(pk)
assert AESGCM(key).decrypt(bytes(12), pk[16:], None) == plain
PY
}
tap "block ID and key are the documented hashes (Python's, from the policy)" names_kat

tap "block naming matches OpenSSL EVP's for lengths 0 to 9000" \
	sh -c '"$1" --check' sh "${VMRESET_STORE_CRYPTOBENCH:-$here/../store/cryptobench}"

man_ok() {
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$here/../store/vmreset-store.1" 2>&1 >/dev/null)
	[ -z "$out" ] || { echo "$out"; return 1; }
	man -l "$here/../store/vmreset-store.1" 2>/dev/null | grep -q 'convergent'
}
tap "man vmreset-store renders without warnings" man_ok
[ "$fails" = 0 ]
