#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# ceph-cluster.sh start|stop|status DIR: a throw-away one-node Ceph cluster
# for the RADOS backend's tests and benchmark (docs/store.md, "RADOS").
#
# One ceph-mon, one ceph-mgr and one ceph-osd on memstore (objects in the
# OSD's memory, bounded by memstore_device_bytes), all on 127.0.0.1, every
# file under DIR; no systemd, nothing in /etc or /var/lib/ceph. Auth is
# cephx with an admin keyring written to DIR, so clients find cluster and
# key "the usual way" through DIR/ceph.conf (CEPH_CONF=DIR/ceph.conf).
# Memory: the monitor's cache target and the OSD's are set small; the OSD
# holds its objects in RAM (at most OSD_BYTES, default 1 GiB).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ] || [ "$cmd" = --help ] || [ "$cmd" = -h ]; then
	echo "usage: $0 start|stop|status DIR   (OSD_BYTES=bytes, default 1073741824)" >&2
	[ "$cmd" = --help ] || [ "$cmd" = -h ] && exit 0
	exit 2
fi
conf=$dir/ceph.conf

stop() {
	local f pid
	for f in "$dir"/run/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		kill "$pid" 2>/dev/null || true
	done
	for _ in $(seq 50); do
		local alive=0
		for f in "$dir"/run/*.pid; do
			[ -e "$f" ] || continue
			kill -0 "$(cat "$f")" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.2
	done
	for f in "$dir"/run/*.pid; do
		[ -e "$f" ] || continue
		kill -9 "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
}

case "$cmd" in
stop)
	[ -d "$dir" ] && stop
	exit 0
	;;
status)
	exec ceph -c "$conf" --connect-timeout 10 -s
	;;
start) ;;
*)
	echo "$0: unknown command '$cmd' (start, stop, status)" >&2
	exit 2
	;;
esac

for t in ceph-mon ceph-mgr ceph-osd ceph ceph-authtool monmaptool; do
	command -v "$t" >/dev/null || {
		echo "$0: '$t' not found (scripts/deps.sh installs ceph-mon, ceph-mgr, ceph-osd, ceph-common)" >&2
		exit 1
	}
done
[ -e "$conf" ] && stop
rm -rf "$dir"
mkdir -p "$dir"/{run,log,mon,mgr/ceph-x,osd/ceph-0}
fsid=$(cat /proc/sys/kernel/random/uuid)
# A free port for the monitor (other clusters on this machine keep theirs).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
mon initial members = a
ms bind msgr2 = false
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/\$name.keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$cluster-\$id
mgr data = $dir/mgr/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon memory target = 268435456
mon osd full ratio = 0.97
mon osd nearfull ratio = 0.95
osd objectstore = memstore
memstore device bytes = ${OSD_BYTES:-1073741824}
osd memory target = 268435456
osd op num shards = 1
osd op num threads per shard = 2
mgr initial modules =
debug ms = 0
CONF

ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$dir/client.admin.keyring" --gen-key -n client.admin \
	--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/client.admin.keyring" >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
cp "$dir/mon.keyring" "$dir/mon.a.keyring"	# keyring = DIR/$name.keyring
ceph-mon -c "$conf" -i a
c() { timeout 60 ceph -c "$conf" --connect-timeout 30 "$@"; }
c auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
	-o "$dir/mgr.x.keyring" >/dev/null
ceph-mgr -c "$conf" -i x
uuid=$(cat /proc/sys/kernel/random/uuid)
ceph-authtool --create-keyring "$dir/osd.0.keyring" --gen-key -n osd.0 >/dev/null
key=$(ceph-authtool -p -n osd.0 "$dir/osd.0.keyring")
echo "{\"cephx_secret\": \"$key\"}" >"$dir/osd.json"
id=$(c osd new "$uuid" -i "$dir/osd.json")
[ "$id" = 0 ] || { echo "$0: osd new gave id '$id'" >&2; exit 1; }
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >/dev/null 2>&1 || {
	echo "$0: ceph-osd --mkfs failed (log: $dir/log/osd.0.log)" >&2; exit 1; }
ceph-osd -c "$conf" -i 0
for _ in $(seq 120); do
	c osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break
	sleep 0.5
done
c osd stat -f json | grep -q '"num_up_osds":1' || {
	echo "$0: the OSD did not come up (log: $dir/log/osd.0.log)" >&2; exit 1; }
echo "$dir/ceph.conf"
