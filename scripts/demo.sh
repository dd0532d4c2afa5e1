#!/usr/bin/env bash
# Boot the test VM (newest supported kernel unless KVER is given), load
# vmreset the way a user would, and walk through the pipeline: a memory
# object as KVM guest RAM, snapshot, guest writes, revert, clone; then a
# real Linux guest under vmreset-vmm: boot to ready, requests each reset
# after, a preserved counter, a retried transaction, the ready snapshot
# saved to vmreset-store and restored in a new VM process, a clone, the
# timings (selftests/demo.sh is what runs in the VM).
set -uo pipefail
. "$(dirname "$0")/vm.sh"
kver=${KVER:-6.12}

mkdir -p "$build"
make -s -C "$top" helper selftests > "$build/make-user.log" 2>&1 || {
	cat "$build/make-user.log"
	exit 1
}
make -s -C "$top/selftests" list > "$build/tests.list"
# The nested Linux guest of vmreset-vmm needs the test VM's patched QEMU
# under TCG (docs/testing.md, "The test VM's QEMU"): built once, cached.
if ! { [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; } && [ -z "${VM_QEMU:-}" ] &&
   ! "$top/scripts/qemu-build.sh" --cached > /dev/null 2>&1; then
	echo "# building the test VM's QEMU once (scripts/qemu-build.sh, several minutes)..."
	"$top/scripts/qemu-build.sh" > /dev/null ||
		echo "# the QEMU build failed: the system's QEMU may hang the nested guest (docs/vmm.md)" >&2
fi
vm_prepare "$kver" || exit 1
echo "# booting the test VM with $KREL (takes a while under emulation)..."
vm_boot demo ""
sed -n '/^vmreset-vm:/,$p' "$RES" | grep -v '^vmreset-done$'
if ! grep -q '^vmreset-done$' "$RES" || grep -q '^vmreset-kmsg-bad' "$RES"; then
	echo "demo failed; console log: $LOG" >&2
	exit 1
fi
