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
echo "1..4"

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

man_ok() {
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$here/../store/vmreset-store.1" 2>&1 >/dev/null)
	[ -z "$out" ] || { echo "$out"; return 1; }
	man -l "$here/../store/vmreset-store.1" 2>/dev/null | grep -q 'convergent'
}
tap "man vmreset-store renders without warnings" man_ok
[ "$fails" = 0 ]
