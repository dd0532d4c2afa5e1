#!/usr/bin/env bash
# Shared by check.sh and demo.sh: build vmreset for one kernel and boot the
# test VM with it.
#
#   vm_prepare KVER      sets KREL, KO, INITRD (build/vm-KREL.cpio.gz), VMLINUZ
#                        (KVER "debug": the debug kernel, scripts/debug-kernel.sh)
#   vm_boot MODE ONLY    boots; console in $LOG, reports in $RES

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$top/build}

vm_prepare() {
	local kver=$1 kdir files
	# "debug" is Debian's 6.12 source built with the kernel's bug detectors
	# (scripts/debug-kernel.sh, cached): its own image, modules and KDIR.
	VM_MODROOT= VMLINUZ=
	if [ "$kver" = debug ]; then
		local dk
		dk=$("$top/scripts/debug-kernel.sh") || return 1
		kdir=$dk/obj VM_MODROOT=$dk/root VMLINUZ=$dk/bzImage
	else
		kdir=$("$top/scripts/kdir.sh" "$kver") || return 1
	fi
	KREL=$(sed -n 's/.*UTS_RELEASE "\(.*\)"/\1/p' "$kdir/include/generated/utsrelease.h")
	VMLINUZ=${VMLINUZ:-/boot/vmlinuz-$KREL}
	[ -e "$VMLINUZ" ] || {
		echo "no $VMLINUZ; run: sudo scripts/deps.sh" >&2
		return 1
	}
	# BUILD on the command line: a BUILD= given to make check is in
	# MAKEFLAGS and would beat check.sh's per-job one in the environment.
	make -s -C "$top" module KDIR="$kdir" BUILD="$build" >"$build/make-$KREL.log" 2>&1 || {
		cat "$build/make-$KREL.log" >&2
		return 1
	}
	if grep -q 'warning:' "$build/make-$KREL.log"; then
		grep -B2 -A4 'warning:' "$build/make-$KREL.log" >&2
		echo "module build for $KREL has warnings" >&2
		return 1
	fi
	KO=$build/kmod-$KREL/vmreset.ko
	INITRD=$build/vm-$KREL.cpio.gz
	files=("$build/tests.list:/selftests/list")
	local t
	for t in $(cat "$build/tests.list"); do
		files+=("$top/selftests/$t")
	done
	for t in "$top"/selftests/demo.sh "$top"/selftests/tap.sh; do
		[ -e "$t" ] && files+=("$t:/${t#"$top"/}")
	done
	# Callers add their own files (SRC:DST) in VM_FILES.
	files+=(${VM_FILES[@]+"${VM_FILES[@]}"})
	[ -e "$top/helper/vmresetctl" ] && files+=("$top/helper/vmresetctl:/usr/bin/vmresetctl")
	[ -e "$top/store/vmreset-store" ] && files+=("$top/store/vmreset-store:/usr/bin/vmreset-store")
	# vmreset-vmm: the VMM, its guest (this kernel, the agent's initramfs).
	# Not on the debug kernel: it has no virtio modules and no
	# /lib/modules on the host, and its list runs no vmm test.
	if [ -z "$VM_MODROOT" ] && [ -x "$top/vmm/vmreset-vmm" ] && [ -x "$top/vmm/guest/vmreset-agent" ]; then
		# virtio_console: the agent's port under QEMU (docs/qemu.md).
		VMM_GUEST_MODULES="virtio_mmio virtio_blk ext4 virtio_console" \
			"$top/vmm/mkguest.sh" "$KREL" "$top/vmm/guest/vmreset-agent" "$build/guest-$KREL.cpio.gz" || return 1
		# vmreset_guest.ko: the guest's preserve hypercall (vmm/guest/abi.h).
		"$top/vmm/guest/hc/mkhc.sh" "$kdir" "$build/guest-hc-$KREL" "$build/guest-$KREL.cpio.gz" || return 1
		"$top/vmm/mkdisk.sh" "$build/vmm-disk.img" || return 1
		files+=("$top/vmm/vmreset-vmm:/usr/bin/vmreset-vmm"
			"/boot/vmlinuz-$KREL:/vmm/vmlinuz"
			"$build/guest-$KREL.cpio.gz:/vmm/guest.cpio.gz"
			"$build/vmm-disk.img:/vmm/disk.img")
	fi
	# Debian's QEMU and the firmware its microvm boots, for the qemu tests
	# (docs/qemu.md); only then, as its libraries are 30 MB.
	if grep -q '^qemu_' "$build/tests.list"; then
		files+=("$(command -v qemu-system-x86_64):/usr/bin/qemu-system-x86_64")
		for t in bios-microvm.bin qboot.rom linuxboot_dma.bin linuxboot.bin pvh.bin kvmvapic.bin; do
			files+=("/usr/share/qemu/$t:/usr/share/qemu/$t")
		done
		[ -x "$top/qemu/vmreset-qemu" ] && files+=("$top/qemu/vmreset-qemu:/usr/bin/vmreset-qemu")
	fi
	# GNU cp, for cp --reflink=always (busybox cp has no --reflink).
	files+=("$(command -v cp):/usr/bin/gnucp")
	# The stand-in VMM of readme_session.
	[ -e "$top/selftests/readme_vmm" ] && files+=("$top/selftests/readme_vmm:/selftests/readme_vmm")
	# jq, so that tests check JSON with a parser.
	files+=("$(command -v jq):/usr/bin/jq")
	# util-linux setpriv, to run tests as an unprivileged user.
	files+=("$(command -v setpriv):/usr/bin/util-setpriv")
	MODROOT=$VM_MODROOT "$top/scripts/mkinitramfs.sh" "$KREL" "$KO" "$INITRD" "${files[@]}"
}

# Under TCG the test VM needs scripts/qemu-build.sh's patched QEMU for
# nested guests (docs/testing.md, "The test VM's QEMU"): build it once
# (cached) unless the host has VT-x/AMD-V or VM_QEMU names a binary.
vm_qemu_ensure() {
	{ [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; } && return 0
	[ -n "${VM_QEMU:-}" ] && return 0
	"$top/scripts/qemu-build.sh" --cached > /dev/null 2>&1 && return 0
	echo "# building the test VM's QEMU once (scripts/qemu-build.sh, several minutes)..."
	"$top/scripts/qemu-build.sh" > /dev/null
}

vm_boot() {
	local mode=$1 only=$2 accel cpu
	# Some sandboxes offer a /dev/kvm without VT-x/AMD-V (software
	# backends like PVM) that cannot boot a stock kernel: ask the CPU too.
	if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		accel=kvm cpu=host
	else
		# One host thread for all vCPUs: with multi-threaded TCG a vCPU
		# can run a stale translation of code the kernel just patched
		# (static keys, as KVM flips them), hitting a stray int3 Oops.
		accel=tcg,thread=single cpu=EPYC
	fi
	accel=${VM_ACCEL:-$accel} cpu=${VM_CPU:-$cpu}
	# Under TCG, scripts/qemu-build.sh's patched QEMU when it is built
	# (nested SVM fixes the vmm tests need: docs/testing.md), else the
	# system's. VM_QEMU names another binary.
	local qemu=qemu-system-x86_64 q
	if [ -z "${VM_QEMU:-}" ] && [ "${accel%%,*}" = tcg ] &&
	   q=$("$top/scripts/qemu-build.sh" --cached 2>/dev/null); then
		qemu=$q
	fi
	qemu=${VM_QEMU:-$qemu}
	# A QEMU built elsewhere than its prefix looks for firmware relative to
	# its own directory (relocatable builds): name Debian's firmware.
	local fw=() d
	if [ "$qemu" != qemu-system-x86_64 ]; then
		for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
			[ -d "$d" ] && fw+=(-L "$d")
		done
	fi
	# no_timer_check: on a loaded host TCG is slow enough for the kernel's
	# IO-APIC timer check to fail and panic at boot ("IO-APIC + timer
	# doesn't work!").
	LOG=$build/console-$KREL.log
	RES=$build/results-$KREL.log
	rm -f "$LOG" "$RES"
	echo "# $qemu" > "$build/qemu-$KREL.log"
	timeout -s KILL "${VM_TIMEOUT:-2400}" "$qemu" ${fw[@]+"${fw[@]}"} \
		-machine q35 -accel "$accel" -cpu "$cpu" -smp 2 -m "${VM_MEM:-3G}" \
		-display none -monitor none -no-reboot \
		-serial "file:$LOG" -serial "file:$RES" \
		-kernel "$VMLINUZ" -initrd "$INITRD" \
		-append "console=ttyS0 loglevel=5 panic=-1 oops=panic no_timer_check vmrtest.mode=$mode vmrtest.only=$only vmrtest.args=${VM_TEST_ARGS:+${VM_TEST_ARGS// /,}}${VM_APPEND:+ $VM_APPEND}" \
		2>> "$build/qemu-$KREL.log"
	VM_RC=$?
	# TCG warns about CPUID bits it cannot emulate: harmless, kept aside.
	[ "$VM_RC" = 0 ] || cat "$build/qemu-$KREL.log" >&2
	# The serial line turns \n into \r\n.
	sed -i 's/\r$//' "$LOG" "$RES" 2>/dev/null
	return 0
}
