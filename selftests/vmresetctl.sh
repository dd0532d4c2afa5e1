#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vmresetctl against the real module: every command, its output and JSON,
# its errors and exit codes.
. "$(dirname "$0")/tap.sh"
ctl=vmresetctl
d=/tmp/ctl
f=$d/mem

# exit_is CODE COMMAND...: the command fails with exactly CODE.
exit_is() {
	want=$1
	shift
	"$@"
	rc=$?
	[ $rc = "$want" ] || { echo "exit status $rc, wanted $want"; return 1; }
}

setup() {
	mkdir -p $d && $ctl mount $d size=64m,mode=1777 && $ctl create $f 1M &&
		[ "$(stat -c %s $f)" = 1048576 ]
}
write_and_revert() {
	$ctl snapshot $f || return 1
	printf 'abcd' | dd of=$f bs=4096 seek=3 conv=notrunc 2>/dev/null
	printf 'efgh' | dd of=$f bs=4096 seek=4 conv=notrunc 2>/dev/null
	contains '0x3000-0x5000 (2 pages)' $ctl dirty $f || return 1
	contains '"dirty_pages":2' $ctl -j stats $f || return 1
	contains '(dry run) 2 pages reverted' $ctl revert --dry-run $f || return 1
	contains '"reverted_pages":2,"preserved_pages":0' $ctl -j revert $f || return 1
	[ "$(dd if=$f bs=4096 skip=3 count=1 2>/dev/null | tr -d '\0')" = "" ]
}
preserve() {
	$ctl preserve add $f 8k 8k && $ctl preserve add $f 16k 4k &&
		contains '[{"offset":8192,"length":12288}]' $ctl -j preserve list $f &&
		printf 'keep' | dd of=$f bs=4096 seek=2 conv=notrunc 2>/dev/null &&
		contains '1 preserved pages kept' $ctl revert $f &&
		[ "$(dd if=$f bs=4096 skip=2 count=1 2>/dev/null | tr -d '\0')" = keep ] &&
		$ctl preserve del $f 0 1M && [ -z "$($ctl preserve list $f)" ]
}
clone() {
	$ctl clone $f $d/copy &&
		contains '"shared_pages":' $ctl -j stats $d/copy &&
		[ "$($ctl -j stats $d/copy | sed 's/.*"shared_pages":\([0-9]*\).*/\1/')" -gt 0 ]
}
errors() {
	exit_is 2 $ctl && exit_is 2 $ctl frobnicate &&
		exit_is 2 $ctl snapshot &&
		exit_is 2 $ctl preserve add $f 1x 4k &&
		contains "bad offset '1x'" $ctl preserve add $f 1x 4k &&
		exit_is 1 $ctl preserve add $f 1 4k &&
		contains 'must be page-aligned' $ctl preserve add $f 1 4k &&
		exit_is 1 $ctl stats /etc/kmsg-patterns &&
		contains "is not a vmresetfs file" $ctl stats /etc/kmsg-patterns &&
		exit_is 1 $ctl stats /nonexistent &&
		$ctl create $d/fresh 4k && exit_is 1 $ctl revert $d/fresh &&
		contains 'has no snapshot' $ctl revert $d/fresh &&
		exit_is 1 $ctl clone $f $d/copy
}
helps() {
	$ctl --help | grep -q snapshot && $ctl revert --help | grep -q dry-run &&
		$ctl help stats | grep -q stats && $ctl --version | grep -q '[0-9]\.'
}

echo "TAP version 13"
echo "1..7"
tap "mount and create" setup
tap "features" contains '"api_version":1' $ctl -j features $f
tap "snapshot, dirty, stats, revert" write_and_revert
tap "preserve add/list/del survive revert" preserve
tap "clone shares pages" clone
tap "errors quote the input, exit codes 1 and 2" errors
tap "help and version" helps
umount $d
[ $fails = 0 ]
