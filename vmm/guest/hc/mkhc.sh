#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build vmreset_guest.ko (the guest's preserve hypercall) for the kernel
# whose build directory is KDIR, and append it to the guest initramfs
# CPIO (a gzip'd cpio: the kernel reads concatenated archives) as
# /lib/modules/KREL/extra/vmreset_guest.ko.
#
#   mkhc.sh KDIR OBJDIR CPIO
set -euo pipefail
kdir=$1 obj=$2 cpio=$3
src=$(cd "$(dirname "$0")" && pwd)
krel=$(sed -n 's/.*UTS_RELEASE "\(.*\)"/\1/p' "$kdir/include/generated/utsrelease.h")
[ -n "$krel" ] || { echo "mkhc: no kernel release in $kdir" >&2; exit 1; }
mkdir -p "$obj"
ln -sf "$src/Kbuild" "$obj/Kbuild"
ln -sf "$src/vmreset_guest.c" "$obj/vmreset_guest.c"
log=$obj/make.log
if ! make -C "$kdir" M="$obj" W=1 modules > "$log" 2>&1 || grep -qi 'warning' "$log"; then
	cat "$log" >&2
	echo "mkhc: building vmreset_guest.ko for $krel failed or warned" >&2
	exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 644 "$obj/vmreset_guest.ko" "$root/lib/modules/$krel/extra/vmreset_guest.ko"
(cd "$root" && find . -mindepth 1 | cpio -o -H newc --quiet | gzip -1) >> "$cpio"
