#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench.sh - native numbers for docs/store.md: save/load throughput per
# thread count, and stored bytes against block size for (a) an incremental
# save after 1% of the pages changed and (b) ten clones that each changed
# 1%, each saved on the original.
#
#   store/bench.sh [DIR] [SIZE_MIB] [all|throughput|blocks] [RUNS]
#   (DIR on tmpfs measures CPU, not disk; throughput is the best of RUNS;
#   BLOCKS="4k 16k" limits the block-size sweep)
set -euo pipefail
tool=${VMRESET_STORE:-$(dirname "$0")/vmreset-store}
cb=${VMRESET_STORE_CRYPTOBENCH:-$(dirname "$0")/cryptobench}
dir=${1:-/dev/shm/vmrs-bench}
mib=${2:-256}
what=${3:-all}
runs=${4:-3}
rm -rf "$dir"; mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
key=$dir/key
"$tool" keygen "$key"
obj=$dir/obj
head -c $((mib << 20)) /dev/urandom > "$obj"

# "WALL CPU": elapsed and user+system seconds. On a shared machine the
# CPU time is what one uncontended core would need; wall time is what
# this run got.
secs() { /usr/bin/time -f '%e %U %S' "$@" 2>&1 >/dev/null | tail -1 | awk '{print $1, $2 + $3}'; }
gbs() { echo "scale=3; $mib / 1024 / $1" | bc; }

if [ "$what" != blocks ]; then
echo "# throughput, $mib MiB of random data, store in $dir, best of $runs;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
echo "# GB/s by wall time (this run), and cpu-bound: SIZE / (user+sys / threads), what THREADS uncontended cores would give if the work splits evenly"
# The ceilings, in the same run: OpenSSL on one core with buffers of one
# block (a save hashes and encrypts each new block, a load decrypts it),
# and writing the object to a new file in DIR (what a load's target and a
# save's packs cost the kernel; on a VM that returns free memory to its
# host, first touches of memory cost more than copies).
ossl() { openssl speed -seconds 1 -bytes "$2" -evp "$1" 2>/dev/null | tail -1 |
	awk '{v = $NF; sub(/k$/, "", v); printf "%.2f", v * 1000 / 1e9}'; }
for bs in 4k 16k; do
	n=$(( ${bs%k} * 1024 ))
	sha=$(ossl sha256 $n) gcm=$(ossl aes-256-gcm $n)
	wr=()
	for r in $(seq 1 "$runs"); do
		read -r w c < <(secs dd if="$obj" of="$dir/w" bs=1M)
		rm -f "$dir/w"
		wr+=("$w")
	done
	echo "ceiling $bs: sha256 $sha GB/s, aes-256-gcm $gcm GB/s, both $(echo "scale=2; 1 / (1 / $sha + 1 / $gcm)" | bc) GB/s;" \
	     "a new file in $dir: $(gbs "$(printf '%s\n' "${wr[@]}" | sort -n | head -1)") GB/s (wall ${wr[*]})"
	# The design's own calls, a key per block (openssl speed uses one key).
	[ -x "$cb" ] && echo "ceiling $bs, this store's crypto on one core: $("$cb" "$n" "$mib")"
done
for bs in 4k 16k; do
for t in 1 2; do
	sw=() sc=() lw=() lc=()
	for r in $(seq 1 "$runs"); do
		rm -rf "$dir/s"; "$tool" init "$dir/s" --block-size $bs >/dev/null
		read -r w c < <(secs "$tool" save "$obj" "$dir/s" --key "$key" --name o -t $t)
		sw+=("$w") sc+=("$c")
		read -r w c < <(secs "$tool" load "$dir/s" o "$dir/out" --key "$key" -t $t)
		lw+=("$w") lc+=("$c")
		cmp "$obj" "$dir/out"
	done
	min() { printf '%s\n' "$@" | sort -n | head -1; }
	a=$(min "${sw[@]}") b=$(min "${sc[@]}") c=$(min "${lw[@]}") d=$(min "${lc[@]}")
	echo "block $bs threads $t (load average $(cut -d' ' -f1 /proc/loadavg)): save wall $(gbs "$a") GB/s, cpu-bound $(gbs "$(echo "$b / $t" | bc -l)") GB/s" \
	     "(wall ${sw[*]}; cpu ${sc[*]});" \
	     "load wall $(gbs "$c") GB/s, cpu-bound $(gbs "$(echo "$d / $t" | bc -l)") GB/s" \
	     "(wall ${lw[*]}; cpu ${lc[*]})"
done
done
fi
[ "$what" = throughput ] && exit 0

# 1% of the 4 KiB pages of a clone, at random (scattered: the worst case
# for big blocks; guests' dirty pages cluster).
mutate() {
	python3 - "$1" "$2" <<'PY'
import os, random, sys
f, seed = sys.argv[1], int(sys.argv[2])
r = random.Random(seed)
n = os.path.getsize(f) // 4096
with open(f, 'r+b') as fh:
	for p in r.sample(range(n), n // 100):
		fh.seek(p * 4096); fh.write(os.urandom(4096))
PY
}

# Packs and manifests as files, the index as the B-tree pages in use (its
# file also holds free pages that later commits reuse).
used() {
	local ib
	ib=$("$tool" list -j "$dir/s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["index_bytes"])')
	du -sb --apparent-size "$dir/s/packs" "$dir/s/manifests" |
		awk -v ib="$ib" '{s+=$1} END {printf "%d\n", s + ib}'
}
echo "# block size trade-off, $mib MiB object; bytes = packs + manifests + index pages;"
echo "# (a) and (b) are saved with --base (incremental manifests)"
printf "%8s %14s %14s %14s %10s %10s\n" block first "(a)+1%" "(b)10x1%" "(a)/obj" "(b)/obj"
for bs in ${BLOCKS:-4k 8k 16k 64k 128k 256k 512k}; do
	rm -rf "$dir/s"; "$tool" init "$dir/s" --block-size $bs >/dev/null
	"$tool" save "$obj" "$dir/s" --key "$key" --name base >/dev/null
	u0=$(used)
	cp "$obj" "$dir/c"; mutate "$dir/c" 1
	"$tool" save "$dir/c" "$dir/s" --key "$key" --name a --base base >/dev/null
	ua=$(( $(used) - u0 ))
	for i in $(seq 1 10); do
		cp "$obj" "$dir/c"; mutate "$dir/c" $((100 + i))
		"$tool" save "$dir/c" "$dir/s" --key "$key" --name clone$i --base base >/dev/null
	done
	ub=$(( $(used) - u0 - ua ))
	printf "%8s %14d %14d %14d %9.2f%% %9.2f%%\n" $bs $u0 $ua $ub \
		"$(echo "100 * $ua / ($mib * 1048576)" | bc -l)" \
		"$(echo "100 * $ub / ($mib * 1048576)" | bc -l)"
done
