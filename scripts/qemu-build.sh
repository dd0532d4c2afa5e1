#!/usr/bin/env bash
# Build (or find in the cache) the test VM's QEMU: Debian's own qemu source
# (the version of the installed qemu-system-x86, fetched with apt-get
# source) with the patches in scripts/qemu/, x86_64-softmmu only. The
# patches fix QEMU 7.2's nested SVM under TCG, which the vmm tests need
# (scripts/qemu/*.patch say what each fixes; docs/testing.md, "The test
# VM's QEMU"). scripts/vm.sh boots the test VM with this build when the
# cache has it, and with the system's qemu-system-x86_64 otherwise.
#
#   qemu-build.sh            build if needed; print the binary's path
#   qemu-build.sh --cached   print the binary's path if it is built (exit 1 if not)
#   qemu-build.sh --key      print the cache key only
#
# The cache (VMRESET_CACHE, default /var/cache/vmreset) holds
#   qemu/<key>/qemu-system-x86_64   the binary (Debian's firmware path)
#   qemu/<key>/build.log, build-seconds
# keyed by the source version and the hashes of the patches and of this
# script. Needs root for apt-get source's lists (a private deb-src list
# under the cache; the system's apt configuration is left alone) and the
# build dependencies scripts/deps.sh installs.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${VMRESET_CACHE:-/var/cache/vmreset}/qemu

die() { echo "qemu-build: $*" >&2; exit 1; }

ver=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null) ||
	die "qemu-system-x86 is not installed; run: sudo scripts/deps.sh"
key=$ver-$(cat "$top"/scripts/qemu/*.patch "$0" | sha256sum | cut -c1-12)
key=${key//[^A-Za-z0-9._+-]/_}
dir=$cache/$key

case "${1:-}" in
--key) echo "$key"; exit 0 ;;
--cached)
	[ -x "$dir/qemu-system-x86_64" ] && [ -e "$dir/done" ] || exit 1
	echo "$dir/qemu-system-x86_64"; exit 0 ;;
"") ;;
*) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9

if [ -e "$dir/done" ]; then
	echo "qemu-build: cached $ver in $dir" >&2
	echo "$dir/qemu-system-x86_64"
	exit 0
fi

start=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/dl"
log=$dir/build.log
echo "qemu-build: building qemu $ver, x86_64-softmmu (log: $log)" >&2
run() { nice -n 15 "$@" >> "$log" 2>&1 || { tail -n 40 "$log" >&2; die "failed: $*"; }; }

# Source packages come from the same archive as the binaries.
kr=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$dir/apt/sources.list" <<EOF
deb-src [signed-by=$kr] http://deb.debian.org/debian bookworm main
deb-src [signed-by=$kr] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=$kr] http://deb.debian.org/debian-security bookworm-security main
EOF
apt=(-o Dir::Etc::SourceList="$dir/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
	-o Dir::State::Lists="$dir/apt/lists" -o Dir::Cache="$dir/apt/cache")
run apt-get "${apt[@]}" update
(cd "$dir/dl" && run apt-get "${apt[@]}" source --download-only "qemu=$ver")
# dpkg-source applies Debian's own patches (the 7.2.x stable series).
run dpkg-source -x "$dir"/dl/qemu_*.dsc "$dir/src"
for p in "$top"/scripts/qemu/*.patch; do
	run patch -d "$dir/src" -p1 -i "$p"
done
mkdir -p "$dir/obj"
# Debian's prefix and firmware path: its firmware packages' ROMs, as the
# system's binary finds them.
(cd "$dir/obj" && run "$dir/src/configure" --target-list=x86_64-softmmu \
	--prefix=/usr --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu \
	--without-default-features --enable-tcg --enable-fdt=system \
	--disable-docs --disable-tools --disable-user --disable-werror --disable-debug-info)
run ninja -C "$dir/obj" -j"$(nproc)" qemu-system-x86_64
cp "$dir/obj/qemu-system-x86_64" "$dir/qemu-system-x86_64"
"$dir/qemu-system-x86_64" --version >> "$log"
# dpkg-source leaves a copy of the orig tarball beside src/.
rm -rf "$dir/src" "$dir/obj" "$dir/dl" "$dir/apt" "$dir"/*.orig.tar.*
echo "$(( $(date +%s) - start ))" > "$dir/build-seconds"
touch "$dir/done"
echo "qemu-build: built qemu $ver in $(cat "$dir/build-seconds")s: $dir" >&2
for d in "$cache"/*/; do
	[ "${d%/}" = "$dir" ] || rm -rf "${d%/}"
done
echo "$dir/qemu-system-x86_64"
