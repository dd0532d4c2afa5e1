#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vmreset-vmm's command line: bad input is refused with a message that
# names it, and nothing is left behind (no file on vmresetfs, no VM).
. "$(dirname "$0")/tap.sh"

K=/vmm/vmlinuz
I=/vmm/guest.cpio.gz
D=$(mktemp -d /tmp/vmmcli.XXXXXX)
mount -t vmresetfs -o size=1g none "$D" || { echo "Bail out! mount vmresetfs"; exit 1; }
trap 'umount "$D"; rmdir "$D"' EXIT

# fails_with WANT_RC PATTERN CMD...: exits WANT_RC, stderr matches, and
# nothing is left on vmresetfs.
fails_with() {
	want=$1 pat=$2
	shift 2
	err=$("$@" 2>&1 >/dev/null)
	rc=$?
	echo "rc $rc (want $want), stderr: $err"
	[ "$rc" = "$want" ] && echo "$err" | grep -qE -- "$pat" && [ -z "$(ls -A "$D")" ]
}
expect_fail() {
	name=$1
	shift
	tap "$name" fails_with "$@"
}

echo "1..20"
vmm="vmreset-vmm -d $D -k $K -i $I"
expect_fail missing_kernel 1 "kernel /no/such/vmlinuz: No such file" \
	vmreset-vmm -d "$D" -k /no/such/vmlinuz -i "$I" boot
expect_fail missing_initrd 1 "initrd /no/such.cpio: No such file" \
	vmreset-vmm -d "$D" -k "$K" -i /no/such.cpio boot
expect_fail not_a_bzimage 1 "kernel $I: not a bzImage" \
	vmreset-vmm -d "$D" -k "$I" -i "$I" boot
expect_fail kernel_too_big_for_ram 1 "kernel $K needs .* too big for 64 MiB of RAM" \
	$vmm -m 64M boot
expect_fail bad_mem 2 "--mem '12x': not a size" $vmm -m 12x boot
expect_fail mem_out_of_range 1 "--mem 8192 MiB: must be 64 MiB to 3 GiB" $vmm -m 8G boot
expect_fail bad_cpus 2 "--cpus 'two': not a number" $vmm -c two boot
expect_fail bad_hot 2 "--hot 'lukewarm': learn, off or mount" $vmm --hot lukewarm boot
expect_fail bad_hc_preserve 2 "--hc-preserve 'maybe': auto, on or off" $vmm --hc-preserve maybe boot
# on: the service is required (vmreset-hc load); one a test before left loaded goes.
[ -e /sys/fs/bpf/vmreset/hc_pending ] && vmreset-hc unload
expect_fail hc_preserve_on_without_service 1 "--hc-preserve on: the hypercall service is not loaded" \
	$vmm --hc-preserve on boot
expect_fail bad_success_match 2 "--success-match '\(': not an extended regex" $vmm --success-match '(' run -- true
expect_fail unknown_command 2 "unknown command 'frobnicate'" $vmm frobnicate
expect_fail not_vmresetfs 1 "not on vmresetfs" vmreset-vmm -d /tmp -k "$K" -i "$I" boot
expect_fail save_needs_store 2 "--save needs --store and --key" $vmm --save ready boot
expect_fail restore_needs_key 2 "--restore needs --store and --key" $vmm --store /tmp/s --restore ready boot
expect_fail restore_missing 1 "vmreset-store load" $vmm --store /no/such/store --key /no/such.key --restore ready boot
expect_fail clone_missing 1 "$D/none.state: No such file" $vmm --clone "$D/none" boot
expect_fail clone_and_restore 2 "--clone and --restore" $vmm --clone "$D/x" --store /tmp/s --key /tmp/k --restore r boot
ls /tmp/vmm-* 2>/dev/null && echo "not ok # a file was left in /tmp"
tap help contains "--success-match RE" vmreset-vmm --help
tap help_hc_preserve contains "--hc-preserve MODE" vmreset-vmm --help
[ "$fails" = 0 ]
