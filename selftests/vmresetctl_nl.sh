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
	$ctl monitor --count 3 > /tmp/events &
	mon=$!
	sleep 1
	$ctl snapshot $f >/dev/null && $ctl revert id:$id >/dev/null &&
		$ctl create $d/gone 4k && rm $d/gone
	wait $mon
	cat /tmp/events
	grep -q "^snapshot id:$id" /tmp/events && grep -q "^revert id:$id" /tmp/events &&
		grep -q "^removed id:" /tmp/events
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
echo "1..6"
tap "mount, create, ID from show" setup
tap "list and show by path and ID" list_show
tap "snapshot, preserve, revert by ID" by_id
tap "monitor sees snapshot, revert, removal" events
tap "errors carry the extack message" errors
tap "permissions: own objects only, root all" perms
umount $d
[ $fails = 0 ]
