#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The netlink family through vmresetctl: list, show, snapshot/revert and
# preserve by ID, events, permissions, and extack messages in errors.
. "$(dirname "$0")/tap.sh"
ctl=vmresetctl
d=/tmp/nl
f=$d/mem
as_user() { util-setpriv --reuid 1000 --regid 1000 --clear-groups "$@"; }
id_of() { $ctl -j show "$1" | sed 's/^{"id":\([0-9]*\),.*/\1/'; }

# wait_for SECONDS FILE PATTERN: until a line of FILE matches, or fail saying so.
wait_for() {
	i=0
	while ! grep -q "$3" "$2"; do
		i=$((i + 1))
		[ $i -le $(($1 * 10)) ] || { echo "no line '$3' in $2 after $1 s"; return 1; }
		sleep 0.1
	done
}

# A monitor in the background, with its output in $2, that is known to be
# listening: snapshots of $1 go by until it has printed one.
start_monitor() {
	obj=$1 log=$2
	shift 2
	$ctl monitor "$@" > $log &
	mon=$!
	i=0
	until grep -q '^snapshot ' $log; do
		i=$((i + 1))
		kill -0 $mon 2>/dev/null || { echo "monitor exited early"; return 1; }
		[ $i -le 50 ] || { echo "monitor saw no snapshot of $obj in 50 tries"; kill $mon; return 1; }
		$ctl snapshot $obj >/dev/null
		sleep 0.2
	done
}

setup() {
	mkdir -p $d && $ctl mount $d size=64m,mode=1777 && $ctl create $f 1M &&
		id=$(id_of $f) && [ -n "$id" ] && echo "id $id"
}
list_show() {
	contains " /mem" $ctl list && contains "\"id\":$id,\"path\":\"/mem\"" $ctl -j list &&
		contains "object $id: /mem" $ctl show id:$id &&
		contains '"size":1048576' $ctl -j show $f
}
by_id() {
	$ctl snapshot id:$id &&
		printf 'x' | dd of=$f bs=4096 seek=7 conv=notrunc 2>/dev/null &&
		contains '"dirty_pages":1' $ctl -j show id:$id &&
		$ctl preserve add id:$id 0 4k &&
		contains '"preserved":[{"offset":0,"length":4096}]' $ctl -j show id:$id &&
		contains '"reverted_pages":1,"preserved_pages":0' $ctl -j revert id:$id &&
		[ -z "$(dd if=$f bs=4096 skip=7 count=1 2>/dev/null | tr -d '\0')" ]
}
events() {
	start_monitor $f /tmp/events || return 1
	$ctl revert id:$id >/dev/null && $ctl create $d/gone 4k && rm $d/gone
	wait_for 30 /tmp/events "^revert id:$id reverted_pages" &&
		wait_for 30 /tmp/events "^removed id:"
	r=$?
	kill $mon
	wait $mon
	cat /tmp/events
	return $r
}
# --count N: N events, then the monitor exits 0 by itself, however many
# more follow (bounded wait).
count() {
	start_monitor $f /tmp/events2 --count 3 || return 1
	i=0
	while kill -0 $mon 2>/dev/null; do
		i=$((i + 1))
		[ $i -le 150 ] || { echo "monitor --count 3 still running after 150 reverts"; kill $mon; return 1; }
		$ctl revert id:$id >/dev/null
		sleep 0.2
	done
	wait $mon || { echo "monitor --count 3 exited $?"; return 1; }
	$ctl revert id:$id >/dev/null
	cat /tmp/events2
	[ "$(wc -l < /tmp/events2)" -eq 3 ] && grep -q "^revert id:$id" /tmp/events2
}
# One naming rule: id:N works for every command that takes an object, and
# a bare number is a file name, never an ID.
naming() {
	printf 'n' | dd of=$f bs=4096 seek=5 conv=notrunc 2>/dev/null
	contains '0x5000-0x6000 (1 pages)' $ctl dirty id:$id &&
		contains '"dirty_pages":1' $ctl -j stats id:$id &&
		contains "\"id\":$id," $ctl -j stats id:$id &&
		contains '"api_version":1' $ctl -j features id:$id &&
		$ctl preserve add id:$id 12k 4k &&
		contains '{"offset":12288,"length":4096}]' $ctl -j preserve list id:$id &&
		$ctl preserve del id:$id 12k 4k &&
		$ctl clone id:$id $d/byid && contains '"shared_pages":' $ctl -j stats $d/byid &&
		contains "object $id: /mem" $ctl show id:$id || return 1
	# A bare number that is not a file: an error with a hint, not object $id.
	cd $d || return 1
	contains "cannot open '$id': No such file" $ctl revert $id &&
		contains "write id:$id" $ctl revert $id &&
		contains '"dirty_pages":1' $ctl -j stats id:$id || { cd /; return 1; }
	# A file named like a number is that file.
	$ctl create $d/$id 4k && contains "$id: snapshot taken" $ctl snapshot $id &&
		contains '"dirty_pages":1' $ctl -j stats id:$id &&
		contains "\"path\":\"/$id\"" $ctl -j show $id
	r=$?
	cd /
	rm -f $d/$id
	# An unlinked object by ID: netlink commands work, file commands say why.
	$ctl create $d/tmp 4k && tid=$(id_of $d/tmp) && exec 3<$d/tmp && rm $d/tmp &&
		$ctl snapshot id:$tid >/dev/null &&
		contains "has been unlinked" $ctl dirty id:$tid
	r2=$?
	exec 3<&-
	[ $r = 0 ] && [ $r2 = 0 ]
}
errors() {
	contains "no such object" $ctl revert id:999999 &&
		contains "page-aligned" $ctl preserve add id:$id 1 4k &&
		$ctl create $d/nosnap 4k &&
		contains "object has no snapshot" $ctl revert id:$(id_of $d/nosnap)
}
perms() {
	chmod 600 $f
	as_user $ctl create $d/user 8k || return 1
	uid_id=$(as_user $ctl -j show $d/user | sed 's/^{"id":\([0-9]*\),.*/\1/')
	# The user manages its own object, by ID too, and sees only it.
	as_user $ctl snapshot id:$uid_id || return 1
	as_user $ctl list | grep -q /user || return 1
	! as_user $ctl list | grep -q ' /mem$' || { echo "user lists root's object"; return 1; }
	# Not root's: EACCES with the kernel's reason.
	contains "Permission denied (no write permission on the object)" as_user $ctl revert id:$id || return 1
	# Root (CAP_SYS_ADMIN) manages everyone's.
	$ctl revert id:$uid_id >/dev/null
}

echo "TAP version 13"
echo "1..8"
tap "mount, create, ID from show" setup
tap "list and show by path and ID" list_show
tap "snapshot, preserve, revert by ID" by_id
tap "monitor sees snapshot, revert, removal" events
tap "monitor --count stops after N events" count
tap "id:N names an object for every command, a number a file" naming
tap "errors carry the extack message" errors
tap "permissions: own objects only, root all" perms
umount $d
[ $fails = 0 ]
