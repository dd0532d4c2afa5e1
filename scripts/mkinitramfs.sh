#!/usr/bin/env bash
# Build the test VM's initramfs.
#
#   mkinitramfs.sh KREL VMRESET_KO OUT.cpio.gz [FILE...]
#
# It holds busybox, kmod (the real modprobe), the kernel's own KVM modules
# for KREL, vmreset.ko installed under /lib/modules/KREL/updates with a
# depmod-made modules.dep (so "modprobe vmreset" works as on a host), the
# init script, and each FILE (test programs, tools) under the same path
# relative to the source tree, with the shared libraries they need.
set -euo pipefail

krel=$1 ko=$2 out=$3
shift 3
top=$(cd "$(dirname "$0")/.." && pwd)
moddir=/lib/modules/$krel
# MODROOT: take the kernel's modules from MODROOT/lib/modules/KREL instead
# (a kernel built here, as scripts/debug-kernel.sh does).
modroot=${MODROOT:-}

[ -d "$modroot$moddir/kernel" ] || { echo "mkinitramfs: no modules for $krel in $moddir; run: sudo scripts/deps.sh" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "mkinitramfs: busybox missing; run: sudo scripts/deps.sh (busybox-static)" >&2; exit 1; }

root=$(mktemp -d)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,proc,sys,dev,tmp,run,mnt,root,selftests}
mkdir -p "$root/$moddir/updates"

# Copy a binary with the shared libraries it links to.
copy_bin() {
	local src=$1 dst=$2 lib
	install -D -m 755 "$src" "$root/$dst"
	ldd "$src" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
		[ -e "$root/$lib" ] || install -D -m 755 "$lib" "$root/$lib"
	done || true
}

cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
copy_bin "$(command -v kmod)" /bin/kmod
for a in modprobe lsmod rmmod insmod modinfo depmod; do
	rm -f "$root/bin/$a" "$root/sbin/$a"
	ln -s ../bin/kmod "$root/sbin/$a"
done

# KVM and its dependencies (AMD for TCG's EPYC, Intel for -cpu host).
# VM_NO_KVM=1 leaves them out: a test VM without KVM must fail make check.
kvm_mods="kvm_amd kvm_intel"
[ -z "${VM_NO_KVM:-}" ] || kvm_mods=
for m in $kvm_mods; do
	modprobe ${modroot:+-d "$modroot"} -S "$krel" --show-depends "$m" 2>/dev/null |
		grep -o "$modroot$moddir/[^ ]*\.ko[^ ]*" || true
done | sort -u | while read -r f; do
	install -D -m 644 "$f" "$root${f#"$modroot"}"
done
cp "$modroot$moddir"/modules.order "$modroot$moddir"/modules.builtin* "$root/$moddir/" 2>/dev/null || true
install -m 644 "$ko" "$root/$moddir/updates/vmreset.ko"
depmod -b "$root" "$krel"

# FILE may be SRC:DST to choose where it lands.
for f in "$@"; do
	case "$f" in
	*:*) rel=${f#*:}; f=${f%%:*} ;;
	*) rel=${f#"$top"/} ;;
	esac
	rel=${rel#/}
	if [ -x "$f" ] && [ "$(head -c 4 "$f" | tail -c 3)" = ELF ]; then
		copy_bin "$f" "/$rel"
	else
		install -D -m 755 "$f" "$root/$rel"
	fi
done

# The eBPF tools (bpf/), with libbpf and json-c.
for b in vmreset-trace vmreset-hc; do
	[ ! -x "$top/bpf/$b" ] || copy_bin "$top/bpf/$b" "/usr/bin/$b"
done

install -m 755 "$top/scripts/vm-init.sh" "$root/init"
install -m 644 "$top/scripts/kmsg-patterns" "$root/etc/kmsg-patterns"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
