#!/usr/bin/env bash
# Build (or find in the cache) the debug kernel the test VM boots for
# `make check-debug`: Debian's own 6.12 source (linux-source-6.12) with
# KASAN, KFENCE, lockdep, DEBUG_VM/LIST/OBJECTS, kmemleak and fault
# injection, from x86_64 tinyconfig plus scripts/debug-kernel/debug.config.
#
#   debug-kernel.sh            build if needed; print the cache directory
#   debug-kernel.sh --key      print the cache key only
#   debug-kernel.sh --dir      print the cache directory only (no build)
#
# The cache directory (VMRESET_CACHE, default /var/cache/vmreset) holds
#   debug-kernel/<key>/src      the unpacked source
#   debug-kernel/<key>/obj      the object tree: KDIR for the module
#   debug-kernel/<key>/root     modules_install's /lib/modules/<release>
#   debug-kernel/<key>/bzImage  the kernel QEMU boots
#   debug-kernel/<key>/release  its release string
# keyed by the source package's version and the hashes of the config
# fragment and of this script, so a second run on the same machine skips
# the build. Build logs go to debug-kernel/<key>/build.log.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
frag=$top/scripts/debug-kernel/debug.config
pkg=linux-source-6.12
cache=${VMRESET_CACHE:-/var/cache/vmreset}/debug-kernel

die() { echo "debug-kernel: $*" >&2; exit 1; }

ver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) ||
	die "$pkg is not installed; run: sudo scripts/deps.sh"
tarball=$(dpkg -L "$pkg" | grep -E '/linux-source-[0-9.]+\.tar\.xz$' | head -n 1)
[ -r "$tarball" ] || die "no source tarball in $pkg"
key=$ver-$(cat "$frag" "$0" | sha256sum | cut -c1-12)
key=${key//[^A-Za-z0-9._+-]/_}
dir=$cache/$key

case "${1:-}" in
--key) echo "$key"; exit 0 ;;
--dir) echo "$dir"; exit 0 ;;
"") ;;
*) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9

if [ -e "$dir/done" ]; then
	echo "debug-kernel: cached $(cat "$dir/release") in $dir" >&2
	echo "$dir"
	exit 0
fi

start=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir"
log=$dir/build.log
echo "debug-kernel: building $pkg $ver (log: $log)" >&2
run() { nice -n 15 "$@" >> "$log" 2>&1 || { tail -n 40 "$log" >&2; die "failed: $*"; }; }

run tar -xJf "$tarball" -C "$dir"
mv "$dir"/linux-source-* "$dir/src"
jobs=$(nproc)
kmake() { run make -C "$dir/src" O="$dir/obj" -j"$jobs" "$@"; }
kmake tinyconfig
# merge_config.sh is how the kernel merges fragments; it warns about
# values that did not stick, which we check below ourselves.
(cd "$dir/src" && run scripts/kconfig/merge_config.sh -m -O "$dir/obj" \
	"$dir/obj/.config" "$frag")
kmake olddefconfig

# A typo or a missing dependency silently drops an option: refuse that.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n) opt=${line%%=*}
		if grep -q "^$opt=" "$dir/obj/.config"; then
			echo "debug-kernel: $opt wanted off, is $(grep "^$opt=" "$dir/obj/.config")" >&2
			bad=1
		fi ;;
	CONFIG_*=*) grep -qxF "$line" "$dir/obj/.config" || {
			echo "debug-kernel: $line did not stick (got: $(grep "^${line%%=*}=" "$dir/obj/.config" || echo unset))" >&2
			bad=1
		} ;;
	esac
done < "$frag"
[ "$bad" = 0 ] || die "config fragment does not apply to $pkg $ver"

kmake bzImage modules
run make -C "$dir/src" O="$dir/obj" INSTALL_MOD_PATH="$dir/root" modules_install
cp "$dir/obj/arch/x86/boot/bzImage" "$dir/bzImage"
make -s -C "$dir/src" O="$dir/obj" kernelrelease > "$dir/release"
echo "$(( $(date +%s) - start ))" > "$dir/build-seconds"
touch "$dir/done"
echo "debug-kernel: built $(cat "$dir/release") in $(cat "$dir/build-seconds")s: $dir" >&2
# Older builds of other keys are dead weight (a few GiB each).
for d in "$cache"/*/; do
	[ "${d%/}" = "$dir" ] || rm -rf "${d%/}"
done
echo "$dir"
