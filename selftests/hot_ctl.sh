#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vmresetctl hot: add, del, set (arguments and stdin), list, config, by
# path (ioctls) and by ID (netlink), and errors with the kernel's reason.
. "$(dirname "$0")/tap.sh"
ctl=vmresetctl
d=/tmp/hotctl
f=$d/a
g=$d/b
id_of() { $ctl -j show "$1" | sed 's/^{"id":\([0-9]*\),.*/\1/'; }
# Every byte of page $2 of file $1 is $3 (two hex digits).
page_is() {
	[ "$(dd if=$1 bs=4096 skip=$2 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n' |
		tr -d "$3" | wc -c)" = 0 ]
}
fill() { head -c 4096 /dev/zero | tr '\0' "\\$3" | dd of=$1 bs=4096 seek=$2 conv=notrunc 2>/dev/null; }

setup() {
	mkdir -p $d && $ctl mount $d size=64m && $ctl create $f 1M && $ctl create $g 1M &&
		id=$(id_of $f) && [ -n "$id" ] && gid=$(id_of $g) && [ -n "$gid" ] &&
		dd if=/dev/zero of=$f bs=4096 count=32 conv=notrunc 2>/dev/null
}
by_path() {
	$ctl hot add $f 0 16k && $ctl hot add $f 64k 4k && $ctl snapshot $f >/dev/null &&
		[ "$($ctl hot list $f)" = "$(printf '0 0x4000\n0x10000 0x1000')" ] &&
		[ "$($ctl hot list --explicit $f)" = "$(printf '0 0x4000\n0x10000 0x1000')" ] &&
		contains "hot pages 5" $ctl hot config $f &&
		fill $f 1 101 && fill $f 16 102 && fill $f 30 103 &&
		$ctl revert $f >/dev/null && page_is $f 1 0 && page_is $f 16 0 && page_is $f 30 0 &&
		$ctl hot del $f 0 8k && [ "$($ctl hot list $f)" = "$(printf '0x2000 0x2000\n0x10000 0x1000')" ]
}
set_and_copy() {
	# Apply a's set to b by ID, through stdin (b has holes there: wanted only).
	$ctl snapshot $g >/dev/null &&
		$ctl hot list $f | $ctl hot set id:$gid - &&
		[ "$($ctl hot list --explicit $g)" = "$($ctl hot list $f)" ] &&
		[ -z "$($ctl hot list $g)" ] &&
		$ctl hot set id:$gid 0:4k 8k:8k &&
		[ "$($ctl hot list --explicit $g)" = "$(printf '0 0x1000\n0x2000 0x2000')" ] &&
		$ctl hot set $g && [ -z "$($ctl hot list --explicit $g)" ]
}
config() {
	contains "mode learn" $ctl hot config id:$id mode=learn learn=3/5 &&
		contains "learn 3/5" $ctl hot config $f &&
		contains "max pages 100" $ctl hot config $f max=100 &&
		contains "mode off" $ctl hot config $f mode=off && contains "hot pages 0" $ctl hot config $f &&
		contains "hot pages 3" $ctl hot config id:$id mode=explicit
}
# The kept-copy bound, by ID (netlink) and by path (ioctl): set, reported
# both ways, and the copies a revert keeps stay within it.
kept() {
	$ctl hot config id:$id mode=off >/dev/null && $ctl snapshot $f >/dev/null &&
		contains "kept max 2" $ctl hot config id:$id kept=2 &&
		contains "kept max 2" $ctl hot config $f &&
		fill $f 20 104 && fill $f 21 105 && fill $f 22 106 &&
		$ctl revert $f >/dev/null && page_is $f 20 0 && page_is $f 21 0 && page_is $f 22 0 &&
		contains "kept pages 2" $ctl hot config id:$id &&
		contains "kept pages 0" $ctl hot config $f kept=0 &&
		contains "kept max 0" $ctl hot config id:$id &&
		contains "kept max 16" $ctl hot config id:$id kept=16 &&
		contains "kept max 16" $ctl hot config $f
}
errors() {
	contains "bound below the explicit hot set" $ctl hot config id:$id max=1 &&
		contains "need 1 <= hot-learn-k" $ctl hot config id:$id learn=4/2 &&
		contains "page-aligned" $ctl hot add id:$id 1 4k &&
		contains "exceed" $ctl hot add id:$id 0 1M &&
		contains "no such object" $ctl hot set id:999999 &&
		contains "Invalid argument" $ctl hot add $f 0 0 &&
		contains "unknown hot mode" $ctl hot config $f mode=warm &&
		contains "kept-copy bound above the mount's keep_size" $ctl hot config id:$id kept=99999999 &&
		contains "bad page count" $ctl hot config $f kept=lots &&
		contains "usage" $ctl hot frob
}

echo "TAP version 13"
echo "1..6"
tap "mount, create" setup
tap "add, del, list, revert by path" by_path
tap "set by ID from arguments and stdin" set_and_copy
tap "config: mode, bound, learning" config
tap "config: the kept-copy bound, by ID and by path" kept
tap "errors carry the kernel's reason" errors
umount $d
[ $fails = 0 ]
