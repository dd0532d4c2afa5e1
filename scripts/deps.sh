#!/usr/bin/env bash
# Install the Debian packages that building and testing vmreset need.
# Idempotent: packages already present are left alone, and apt is only asked
# for what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: must run as root (try: sudo $0)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive

base_pkgs=(
	build-essential make gcc pkg-config kmod cpio xz-utils zstd
	busybox-static qemu-system-x86
	linux-image-amd64 linux-headers-amd64
	libnl-3-dev libnl-genl-3-dev libnl-route-3-dev
	libbpf-dev bpftool clang llvm libelf-dev zlib1g-dev
	libssl-dev openssl libjson-c-dev jq liblmdb-dev
	python3 python3-yaml gnuplot-nox util-linux man-db
	# vmreset-store's RADOS backend, and the one-node cluster its tests start.
	librados-dev ceph-mon ceph-mgr ceph-osd ceph-common
	# store_host.sh opens a stored block with the documented key (AES-GCM).
	python3-cryptography
	# make check-debug builds Debian's 6.12 source (scripts/debug-kernel.sh).
	linux-source-6.12 flex bison bc
	# vmr_harden pins guest memory with io_uring fixed buffers.
	liburing-dev
	# vmm/mkdisk.sh: the vmm tests' ext4 disk image (mkfs.ext4 -d).
	e2fsprogs
	# scripts/qemu-build.sh: Debian's QEMU with the nested SVM fix.
	dpkg-dev patch meson ninja-build libglib2.0-dev libpixman-1-dev libfdt-dev
)

missing() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || echo "$p"
	done
}

updated=0
apt_update() {
	[ "$updated" = 1 ] && return
	apt-get update -qq
	updated=1
}

# The 6.12 LTS kernel for bookworm is named by its full version; pick the
# newest one the archive offers (or the newest installed one when offline).
pick_612() {
	apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' 2>/dev/null |
		awk '{print $1}' | sort -V | tail -n 1
}

apt_update
img612=$(pick_612)
if [ -z "$img612" ]; then
	echo "deps.sh: no linux-image-6.12.*+deb12-amd64 in the archive; is bookworm-security enabled?" >&2
	exit 1
fi
hdr612=${img612/linux-image-/linux-headers-}

todo=$(missing "${base_pkgs[@]}" "$img612" "$hdr612")
if [ -n "$todo" ]; then
	echo "deps.sh: installing:" $todo
	# Kernel packages would build an initramfs for the host on every install;
	# we never boot the host with them, and our test VM builds its own.
	apt-get install -y -qq --no-install-recommends $todo
else
	echo "deps.sh: all packages present"
fi
