#!/usr/bin/env bash
# Write vmlinux.h from the BTF of a Debian kernel image (the oldest one we
# support, 6.1: CO-RE relocates to newer kernels at load time, not back).
#
#   gen-vmlinux-h.sh OUT.h [KREL]
#
# The development machine's own kernel is not Debian's, so /sys/kernel/btf
# is the wrong source: we decompress /boot/vmlinuz-KREL (xz on 6.1, zstd on
# 6.12) and let bpftool dump the BTF of the ELF inside.
set -euo pipefail
out=$1
krel=${2:-$(cd /boot && ls vmlinuz-6.1.* 2>/dev/null | sed 's/^vmlinuz-//' | sort -V | tail -n 1)}
img=/boot/vmlinuz-$krel
[ -n "$krel" ] && [ -r "$img" ] || {
	echo "gen-vmlinux-h.sh: no Debian 6.1 kernel image in /boot; run: sudo scripts/deps.sh" >&2
	exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$img" "$tmp/vmlinux" <<'PY'
import lzma, subprocess, sys
data = open(sys.argv[1], 'rb').read()
for magic, kind in ((b'\xfd7zXZ\x00', 'xz'), (b'\x28\xb5\x2f\xfd', 'zstd')):
    off = data.find(magic)
    if off < 0:
        continue
    if kind == 'xz':
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[off:])
    else:
        out = subprocess.run(['zstd', '-dcq'], input=data[off:],
                             capture_output=True).stdout
    if out[:4] == b'\x7fELF':
        open(sys.argv[2], 'wb').write(out)
        sys.exit(0)
sys.exit('gen-vmlinux-h.sh: no xz or zstd kernel found in ' + sys.argv[1])
PY
bpftool btf dump file "$tmp/vmlinux" format c > "$tmp/vmlinux.h"
mv "$tmp/vmlinux.h" "$out"
