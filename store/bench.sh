#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench.sh - native numbers for docs/store.md: save/load throughput per
# thread count, and stored bytes against block size for (a) an incremental
# save after 1% of the pages changed and (b) ten clones that each changed
# 1%, each saved on the original.
#
#   store/bench.sh [DIR] [SIZE_MIB] [all|throughput|blocks] [RUNS]
#   (DIR on tmpfs measures CPU, not disk; throughput rows give the best
#   and the median of RUNS, default 5; BLOCKS="4k 16k" limits the block
#   sizes of both parts, THREADS="1 2" the thread counts;
#   VMRESET_STORE_B=OTHER_BINARY runs a second tool interleaved with the
#   first, run by run, so that the two see the same minute of this
#   machine, and prints the median ratio of their CPU times per pair)
set -euo pipefail
tool=${VMRESET_STORE:-$(dirname "$0")/vmreset-store}
cb=${VMRESET_STORE_CRYPTOBENCH:-$(dirname "$0")/cryptobench}
dir=${1:-/dev/shm/vmrs-bench}
mib=${2:-256}
what=${3:-all}
runs=${4:-5}
rm -rf "$dir"; mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
key=$dir/key
"$tool" keygen "$key"
obj=$dir/obj
head -c $((mib << 20)) /dev/urandom > "$obj"

# "WALL CPU": elapsed and user+system seconds of the command, to the
# microsecond (wait4's rusage; /usr/bin/time prints hundredths, a fifth
# of the spread between two runs of a 256 MiB save). On a shared machine
# the CPU time is what one uncontended core would need; wall time is what
# this run got.
secs() {
	python3 -c '
import os, sys, time
t = time.monotonic()
pid = os.fork()
if pid == 0:
	fd = os.open(os.devnull, os.O_WRONLY)
	os.dup2(fd, 1)
	os.execvp(sys.argv[1], sys.argv[1:])
_, st, ru = os.wait4(pid, 0)
w = time.monotonic() - t
if not os.WIFEXITED(st) or os.WEXITSTATUS(st):
	sys.exit("%s: failed (%d)" % (sys.argv[1], st))
print("%.4f %.4f" % (w, ru.ru_utime + ru.ru_stime))' "$@"
}
gbs() { awk -v m="$mib" -v s="$1" 'BEGIN { printf "%.3f", m / 1024 / s }'; }
# "best median" of a list of seconds.
best_med() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[1], a[int((NR + 1) / 2)]}'; }
# GB/s of "best median" seconds over SIZE / (seconds / $2).
rates() { local b m; read -r b m < <(best_med "${@:3}"); echo "$(gbs "$(echo "$b / $2" | bc -l)") $1 $(gbs "$(echo "$m / $2" | bc -l)")"; }

# "median (q1-q3)" of B/A over pairs: pair_ratio "A1 A2 ..." "B1 B2 ...".
pair_ratio() {
	# shellcheck disable=SC2086
	paste <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{print $2 / $1}' | sort -n |
		awk '{a[NR] = $1} END {printf "%.3f (%.3f-%.3f)", a[int((NR + 1) / 2)],
		     a[int(NR / 4) + 1], a[int((3 * NR + 3) / 4)]}'
}

if [ "$what" != blocks ]; then
echo "# throughput, $mib MiB of random data, store in $dir, $runs runs;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
# tmpfs's huge= decides what a new page of a pack or a target costs.
echo "# $dir is on: $(findmnt -no FSTYPE,OPTIONS -T "$dir" 2>/dev/null | tail -n 1)"
echo "# GB/s by wall time (this run), and cpu-bound: SIZE / (user+sys / threads), what THREADS uncontended cores would give if the work splits evenly"
# The ceilings, in the same run: OpenSSL on one core with buffers of one
# block (a save hashes and encrypts each new block, a load decrypts it),
# and writing the object to a new file in DIR (what a load's target and a
# save's packs cost the kernel; on a VM that returns free memory to its
# host, first touches of memory cost more than copies).
ossl() { openssl speed -seconds 1 -bytes "$2" -evp "$1" 2>/dev/null | tail -1 |
	awk '{v = $NF; sub(/k$/, "", v); printf "%.2f", v * 1000 / 1e9}'; }
for bs in ${BLOCKS:-4k 16k}; do
	n=$(( ${bs%k} * 1024 ))
	sha=$(ossl sha256 $n) gcm=$(ossl aes-256-gcm $n)
	wr=()
	for _ in $(seq 1 "$runs"); do
		read -r w c < <(secs dd if="$obj" of="$dir/w" bs=1M status=none)
		rm -f "$dir/w"
		wr+=("$w")
	done
	echo "ceiling $bs: sha256 $sha GB/s, aes-256-gcm $gcm GB/s, both $(echo "scale=2; 1 / (1 / $sha + 1 / $gcm)" | bc) GB/s;" \
	     "a new file in $dir: $(gbs "$(printf '%s\n' "${wr[@]}" | sort -n | head -1)") GB/s (wall ${wr[*]})"
	# The design's own calls, a key per block (openssl speed uses one key).
	[ -x "$cb" ] && echo "ceiling $bs, this store's crypto on one core: $("$cb" "$n" "$mib")"
done
tools=("$tool")
[ -n "${VMRESET_STORE_B:-}" ] && tools+=("$VMRESET_STORE_B")
echo "# GB/s best / median of $runs runs; tools: ${tools[*]}"
for bs in ${BLOCKS:-4k 16k}; do
for t in ${THREADS:-1 2}; do
	declare -A sw=() sc=() lw=() lc=()
	for r in $(seq 1 "$runs"); do
		# Two tools swap places every run: neither always runs second.
		order=("${!tools[@]}")
		[ $((r % 2)) = 0 ] && [ ${#tools[@]} = 2 ] && order=(1 0)
		for x in "${order[@]}"; do
			tl=${tools[$x]}
			rm -rf "$dir/s" "$dir/out"; "$tl" init "$dir/s" --block-size "$bs" >/dev/null
			read -r w c < <(secs "$tl" save "$obj" "$dir/s" --key "$key" --name o -t $t)
			sw[$x]+=" $w" sc[$x]+=" $c"
			# A fresh target each time: renaming over the last run's
			# output would free its pages inside the timed load.
			read -r w c < <(secs "$tl" load "$dir/s" o "$dir/out" --key "$key" -t $t)
			lw[$x]+=" $w" lc[$x]+=" $c"
			cmp "$obj" "$dir/out"
		done
	done
	for x in "${!tools[@]}"; do
		# shellcheck disable=SC2086
		echo "block $bs threads $t${VMRESET_STORE_B:+ ${tools[$x]}} (load average $(cut -d' ' -f1 /proc/loadavg)):" \
		     "save wall $(rates / 1 ${sw[$x]}) GB/s, cpu-bound $(rates / "$t" ${sc[$x]}) GB/s" \
		     "(wall${sw[$x]}; cpu${sc[$x]});" \
		     "load wall $(rates / 1 ${lw[$x]}) GB/s, cpu-bound $(rates / "$t" ${lc[$x]}) GB/s" \
		     "(wall${lw[$x]}; cpu${lc[$x]})"
	done
	# On a shared host the spread between minutes is larger than most
	# changes: the ratio of the two tools' CPU within each pair of runs,
	# a few seconds apart, says more than their separate medians.
	if [ ${#tools[@]} = 2 ]; then
		echo "block $bs threads $t: CPU of ${tools[1]} / ${tools[0]}, median of $runs pairs" \
		     "(quartiles): save $(pair_ratio "${sc[0]}" "${sc[1]}"), load $(pair_ratio "${lc[0]}" "${lc[1]}")"
	fi
	unset sw sc lw lc
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
