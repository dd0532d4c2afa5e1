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
# create never shrinks or rewrites an existing object by accident.
create_existing() {
	$ctl create $d/keep 1M &&
		printf 'data' | dd of=$d/keep bs=4096 seek=9 conv=notrunc 2>/dev/null &&
		exit_is 1 $ctl create $d/keep 4k &&
		contains "'$d/keep' exists; --force" $ctl create $d/keep 4k &&
		[ "$(stat -c %s $d/keep)" = 1048576 ] &&
		[ "$(dd if=$d/keep bs=4096 skip=9 count=1 2>/dev/null | tr -d '\0')" = data ] &&
		$ctl create --force $d/keep 40k && [ "$(stat -c %s $d/keep)" = 40960 ] &&
		[ "$(dd if=$d/keep bs=4096 skip=9 count=1 2>/dev/null | tr -d '\0')" = data ] &&
		$ctl create -f $d/keep 8k && [ "$(stat -c %s $d/keep)" = 8192 ] &&
		$ctl create -f $d/forced 4k && [ "$(stat -c %s $d/forced)" = 4096 ] &&
		# Off vmresetfs: refused, and nothing left behind.
		exit_is 1 $ctl create /tmp/not-vmr 4k && [ ! -e /tmp/not-vmr ]
}
# Names with a quote, a backslash, a newline, a tab, a control character
# and UTF-8 come out as JSON strings a parser (jq) reads back exactly.
json_names() {
	name=$(printf 'q"u\\o\nte\t\001\303\251')
	p="$d/$name"
	$ctl create "$p" 4k && exit_is 1 $ctl -j revert --dry-run "$p" &&
		$ctl -j snapshot "$p" | jq -e '.dirty_pages == 0' || return 1
	for c in "show" "stats" "features" "dirty" "preserve list"; do
		$ctl -j $c "$p" | jq -e . >/dev/null || { echo "-j $c: not JSON"; return 1; }
	done
	$ctl -j show "$p" | jq -e --arg p "/$name" '.path == $p' &&
		$ctl -j list | jq -e --arg p "/$name" 'map(select(.path == $p)) | length == 1' &&
		$ctl -j revert "$p" | jq -e '.reverted_pages == 0 and .dry_run == false' &&
		$ctl -j vm list | jq -e 'type == "array"' && rm "$p"
}
# Every number is parsed strictly: a typo is a usage error, never a value.
strict_numbers() {
	for bad in 3x 1kB ' 4k' '4k ' -4096 '' 0x 4k4 k 99999999999999999999 16777216T; do
		exit_is 2 $ctl preserve add $f "$bad" 4k >/dev/null 2>&1 ||
			{ echo "offset '$bad' was accepted"; return 1; }
		exit_is 2 $ctl create $d/n "$bad" >/dev/null 2>&1 ||
			{ echo "size '$bad' was accepted"; return 1; }
	done
	[ ! -e $d/n ] || { echo "a bad size created a file"; return 1; }
	for bad in 3x 0 -1 ' 3' 1.5; do
		exit_is 2 timeout 10 $ctl monitor --count "$bad" >/dev/null 2>&1 ||
			{ echo "monitor count '$bad' was accepted"; return 1; }
	done
	contains "bad count '3x'" $ctl monitor --count 3x &&
		exit_is 2 $ctl vm snapshot 1x && exit_is 2 $ctl vm attach 1 2x &&
		exit_is 2 $ctl vm snapshot 4294967296 &&
		exit_is 2 $ctl vm preserve add 1 1x 4k &&
		exit_is 2 $ctl snapshot id:1x && exit_is 2 $ctl snapshot id: &&
		exit_is 2 $ctl stats id:0 &&
		contains "size '16777216T' is too large" $ctl create $d/n 16777216T &&
		# The accepted forms: hex, suffixes in either case, iB.
		$ctl preserve add $f 0x2000 4KiB && $ctl preserve add $f 0X10000 0x1000 &&
		contains '[{"offset":8192,"length":4096},{"offset":65536,"length":4096}]' \
			$ctl -j preserve list $f &&
		$ctl preserve del $f 0 1m && $ctl create $d/sizes 1K &&
		[ "$(stat -c %s $d/sizes)" = 1024 ] && rm $d/sizes
}
# Output that does not get out is a failure (exit status 1), not success.
checked_writes() {
	for c in "list" "-j list" "stats $f" "-j stats $f" "-j dirty $f" "features $f" \
		 "show $f" "-j vm list" "--help" "--version" "help stats"; do
		exit_is 1 $ctl $c >/dev/full 2>/tmp/full.err ||
			{ echo "'vmresetctl $c > /dev/full' did not fail"; return 1; }
		grep -q "cannot write the output" /tmp/full.err ||
			{ echo "'vmresetctl $c > /dev/full' said:"; cat /tmp/full.err; return 1; }
	done
}
helps() {
	$ctl --help | grep -q snapshot && $ctl revert --help | grep -q dry-run &&
		$ctl help stats | grep -q stats && $ctl --version | grep -q '[0-9]\.'
}

echo "TAP version 13"
echo "1..11"
tap "mount and create" setup
tap "features" contains '"api_version":1' $ctl -j features $f
tap "snapshot, dirty, stats, revert" write_and_revert
tap "preserve add/list/del survive revert" preserve
tap "clone shares pages" clone
tap "errors quote the input, exit codes 1 and 2" errors
tap "help and version" helps
tap "create refuses an existing file unless --force" create_existing
tap "JSON of hostile names parses (jq)" json_names
tap "numbers are parsed strictly" strict_numbers
tap "a failed write to stdout is exit status 1" checked_writes
umount $d
[ $fails = 0 ]
