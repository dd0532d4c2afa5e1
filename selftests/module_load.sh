#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The module loads, autoloads on mount, refuses to unload while in use,
# unloads without a trace, and describes itself in modinfo.
. "$(dirname "$0")/tap.sh"
loaded() { grep -q '^vmreset ' /proc/modules; }
not_loaded() { ! loaded; }
has_fs() { grep -qw vmresetfs /proc/filesystems; }
no_fs() { ! has_fs; }
modinfo_ok() {
	for f in license version description author; do
		v=$(modinfo -F $f vmreset) || return 1
		[ -n "$v" ] || { echo "modinfo: empty $f"; return 1; }
		echo "$f: $v"
	done
	modinfo vmreset | grep -q '^depends:' || { echo "no depends field"; return 1; }
	[ "$(modinfo -F depends vmreset)" = kvm ] || { echo "depends: $(modinfo -F depends vmreset)"; return 1; }
	[ "$(modinfo -F license vmreset)" = GPL ]
}
in_updates() { modinfo -n vmreset | grep -q "/lib/modules/$(uname -r)/updates/vmreset.ko"; }
mount_it() { mkdir -p /mnt/v && mount -t vmresetfs -o size=16m,mode=1777 none /mnt/v; }
file_io() {
	echo hello > /mnt/v/f || return 1
	[ "$(cat /mnt/v/f)" = hello ] || { echo "read back: $(cat /mnt/v/f)"; return 1; }
	grep ' /mnt/v ' /proc/mounts
	grep -q ' /mnt/v vmresetfs .*size=16384k' /proc/mounts
}
busy_refused() { ! rmmod vmreset 2>/dev/null && loaded; }
# Kernel complaints since this test started (patterns: scripts/kmsg-patterns).
kmsg_start=$(dmesg | wc -l)
kmsg_quiet() {
	! dmesg | tail -n +$((kmsg_start + 1)) | grep -E -f /etc/kmsg-patterns
}

echo "TAP version 13"
echo "1..11"
tap "loaded by modprobe at boot" loaded
tap "installed under updates/ with depmod" in_updates
tap "modinfo shows license, version, description, author, depends" modinfo_ok
tap "rmmod unloads it (kvm, a dependency, stays)" rmmod vmreset
tap "no trace left after unload" sh -c '! grep -q "^vmreset " /proc/modules && ! grep -qw vmresetfs /proc/filesystems'
tap "mount -t vmresetfs autoloads it" mount_it
tap "files work and options show in /proc/mounts" file_io
tap "unload refused while mounted" busy_refused
tap "umount then unload" sh -c 'umount /mnt/v && rmmod vmreset && ! grep -q "^vmreset " /proc/modules'
tap "modprobe loads it again" sh -c 'modprobe vmreset && grep -q "^vmreset " /proc/modules'
tap "kernel log quiet" kmsg_quiet
[ $fails = 0 ]
