#!/usr/bin/env bash
# Build the guest initramfs of vmreset-vmm for kernel KREL.
#
#   mkguest.sh KREL AGENT OUT.cpio.gz
#
# /init is the agent (also /bin/vmreset-guest), busybox supplies the
# handlers' tools, and /lib/modules/KREL holds the modules the agent loads
# at boot, listed dependencies first in /etc/vmreset/modules (decompressed
# here, so the guest needs no decompressor).
set -euo pipefail
krel=$1 agent=$2 out=$3
moddir=/lib/modules/$krel
[ -d "$moddir/kernel" ] || { echo "mkguest: no modules for $krel in $moddir; run: sudo scripts/deps.sh" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "mkguest: busybox missing; run: sudo scripts/deps.sh (busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/vmreset,proc,sys,dev,tmp,run,root,disk} "$root/$moddir"
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
install -m 755 "$agent" "$root/init"
ln -sf ../init "$root/bin/vmreset-guest"
: > "$root/etc/vmreset/modules"
# The disk: virtio-mmio and virtio-blk, and ext4 with what it needs.
# virtio_console: the agent's port under vmreset-qemu (built in on 6.12).
for m in ${VMM_GUEST_MODULES-virtio_mmio virtio_blk ext4 virtio_console}; do
	modprobe -S "$krel" --show-depends "$m" 2>/dev/null | sed -n 's/^insmod \([^ ]*\).*/\1/p'
done | awk '!seen[$0]++' | while read -r f; do
	dst=/lib/modules/$krel/$(basename "${f%.xz}")
	case "$f" in
	*.xz) xz -dc "$f" > "$root$dst" ;;
	*) install -D -m 644 "$f" "$root$dst" ;;
	esac
	echo "$dst" >> "$root/etc/vmreset/modules"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
