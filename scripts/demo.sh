#!/usr/bin/env bash
# Boot the test VM (newest supported kernel unless KVER is given), load
# vmreset the way a user would, and walk through the pipeline: a memory
# object as KVM guest RAM, snapshot, guest writes, revert, clone.
set -uo pipefail
. "$(dirname "$0")/vm.sh"
kver=${KVER:-6.12}

mkdir -p "$build"
make -s -C "$top" helper selftests > "$build/make-user.log" 2>&1 || {
	cat "$build/make-user.log"
	exit 1
}
make -s -C "$top/selftests" list > "$build/tests.list"
vm_prepare "$kver" || exit 1
echo "# booting the test VM with $KREL (takes a while under emulation)..."
vm_boot demo ""
sed -n '/^vmreset-vm:/,$p' "$RES" | grep -v '^vmreset-done$'
if ! grep -q '^vmreset-done$' "$RES" || grep -q '^vmreset-kmsg-bad' "$RES"; then
	echo "demo failed; console log: $LOG" >&2
	exit 1
fi
