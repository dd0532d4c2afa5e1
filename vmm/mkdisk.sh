#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vmm/mkdisk.sh OUT [SIZE]: an ext4 disk image for vmreset-vmm --disk,
# made by mke2fs from a directory (no root, no loop device). vmm_test boots
# with it: /hello holds "hello from the disk".
set -eu
out=$1 size=${2:-16M}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "hello from the disk" > "$tmp/hello"
rm -f "$out"
truncate -s "$size" "$out"
PATH=$PATH:/sbin:/usr/sbin mkfs.ext4 -q -F -L vmmdisk -E root_owner=0:0 -d "$tmp" "$out"
