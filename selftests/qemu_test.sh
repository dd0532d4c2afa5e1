#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Debian's unmodified QEMU (microvm, nested KVM) on vmresetfs, driven by
# vmreset-qemu: one boot to the ready snapshot, then requests, each reset
# by REVERT of RAM and disk plus QEMU's own load of the device state
# (docs/qemu.md), with hot pages learned (the default); guest crashes, a
# power-off, a timeout and its report; then the same VM reset by a new
# QEMU with -incoming. Also the preserve hypercall of the guest agent
# under vmreset-vmm (what store's bpf tests use).
#
#   qemu_test.sh [-t CASE]
. "$(dirname "$0")/tap.sh"

only=
[ "${1:-}" = -t ] && only=$2
K=/vmm/vmlinuz
I=/vmm/guest.cpio.gz
DISK=/vmm/disk.img
W=$(mktemp -d /tmp/qemutest.XXXXXX)
D=$W/vmr
mkdir -p "$D"

drv_pid=
cleanup() {
	[ -n "$drv_pid" ] && kill "$drv_pid" 2>/dev/null && wait "$drv_pid" 2>/dev/null
	exec 3>&- 2>/dev/null
	umount "$D" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
# A driver that died must fail a case, not kill the script on its FIFO.
trap '' PIPE

# A missing part is a failure here, not a skip: the test VM must have them.
for t in qemu-system-x86_64 vmreset-qemu vmreset-vmm vmreset-hc vmresetctl jq; do
	command -v "$t" > /dev/null || { echo "Bail out! $t missing in the test VM"; exit 1; }
done
for f in $K $I $DISK /usr/share/qemu/bios-microvm.bin; do
	[ -e "$f" ] || { echo "Bail out! $f missing in the test VM"; exit 1; }
done
mount -t vmresetfs -o size=2g none "$D" || { echo "Bail out! mount vmresetfs"; exit 1; }
vmreset-hc load > "$W/hc-load.log" 2>&1 ||
	{ cat "$W/hc-load.log"; echo "Bail out! vmreset-hc load"; exit 1; }

used_kb() { df -k "$D" | awk 'NR == 2 { print $3 }'; }
base_used=$(used_kb)

# ---- the driver, serving on a FIFO ----
nreq=0
start_driver() {	# start_driver ARGS...: boots; the "ready" line in $W/out
	rm -f "$W/in" "$W/out"
	mkfifo "$W/in"
	: > "$W/out"
	vmreset-qemu -d "$D" -k $K -i $I --console "$W/console.log" --boot-timeout 1200000 "$@" serve \
		< "$W/in" > "$W/out" 2> "$W/err" &
	drv_pid=$!
	exec 3> "$W/in"
	nreq=0
	await 1 1300
}
# await N SECS: until $W/out has N lines (or the driver died).
await() {
	_w=0
	while [ "$(wc -l < "$W/out")" -lt "$1" ]; do
		kill -0 "$drv_pid" 2>/dev/null || return 1
		_w=$((_w + 1))
		[ $_w -gt $(($2 * 10)) ] && return 1
		sleep 0.1
	done
}
# req JSON: one line in, the response in $R (the driver's last line).
# A request without its own timeout_ms gets 300 s: a guest that stops
# answering then comes back as outcome "timeout" with the driver's
# "stuck" report (vCPUs, rings), and the VM is reset for the next case,
# instead of every later case waiting on it until the suite is killed.
req() {
	case "$1" in
	*'"argv"'*)
		echo "$1" | jq -e 'has("timeout_ms")' > /dev/null ||
			set -- "$(echo "$1" | jq -c '. + {timeout_ms: 300000}')" ;;
	esac
	nreq=$((nreq + 1))
	echo "$1" >&3
	if ! await $((nreq + 1)) 600; then
		echo "no response to $1; driver stderr:"
		cat "$W/err"
		tail -20 "$W/console.log"
		R='{}'
		return 1
	fi
	R=$(tail -n 1 "$W/out")
	# The driver ends after a reset it could not do: say why.
	if echo "$R" | jq -e 'has("error")' > /dev/null; then
		echo "error: $R; driver stderr:"
		cat "$W/err"
		tail -20 "$W/console.log"
		return 1
	fi
}
# sh_req CMD [EXTRA_JSON]: runs sh -c CMD; $OUT its stdout.
sh_req() {
	req "$(jq -cn --arg c "$1" "{argv: [\"sh\", \"-c\", \$c]}${2:+ + $2}")" || return 1
	OUT=$(echo "$R" | jq -r .stdout)
	if [ "$(echo "$R" | jq -r .outcome)" != ok ]; then
		echo "request '$1': $R"
		return 1
	fi
}
# info: the driver's info line in $INFO (not in a subshell: req counts lines).
info() { req '{"op":"info"}' && INFO=$R; }
field() { echo "$INFO" | jq -r ".$1"; }
# The RAM or disk file of the driver, by its /proc path.
page() { dd if="$1" bs=4096 skip=$(($2 / 4096)) count=1 2>/dev/null | od -An -tx1 | md5sum; }

# in_ranges OFFSET RANGES: OFFSET lies in one of vmresetctl hot list's "OFFSET LENGTH" lines.
in_ranges() {
	echo "$2" | while read -r a n; do
		[ -n "$a" ] || continue
		[ $(($1)) -ge $((a)) ] && [ $(($1)) -lt $((a + n)) ] && echo yes && break
	done | grep -q yes
}

want() { case "$only" in "" | "$1") return 0 ;; esac; return 1; }

t_boots_and_serves() {
	sh_req 'echo hello; cat /disk/hello' || return 1
	echo "stdout: $OUT"
	[ "$OUT" = "hello
hello from the disk" ] || return 1
	echo "$R" | jq -e '.exit == 0 and .reverted_pages > 0' > /dev/null
}

t_exit_status_and_stdin() {
	req '{"argv":["sh","-c","cat; echo err >&2; exit 3"],"stdin":"in put"}' || return 1
	echo "$R"
	echo "$R" | jq -e '.exit == 3 and .stdout == "in put" and .stderr == "err\n"' > /dev/null
}

# scan FILE RANGES PATTERN: how often PATTERN is in those ranges of FILE
# (vmresetctl dirty's lines). Only dirty pages can hold what a request
# wrote; busybox grep would read a page of zeros as one endless line.
scan() {
	echo "$2" | while read -r r _; do
		[ -n "$r" ] || continue
		a=$((${r%-*})) b=$((${r#*-}))
		dd if="$1" bs=4096 skip=$((a / 4096)) count=$(((b - a) / 4096)) 2>/dev/null
	done | tr -c 'A-Za-z0-9' '\n' | grep -c "$3"
}

# The guest builds the secret, so it is in RAM only if the guest put it there.
t_no_files_or_secret_from_last_request() {
	info || return 1
	ram=$(field ram) disk=$(field disk)
	sh_req 's=$(printf "QSECRET%s%s" $((6 * 7)) zz); echo $s > /tmp/secret;
		echo $s > /disk/secret; sync; echo written' '{reset: false}' || return 1
	rr=$(vmresetctl dirty "$ram") dr=$(vmresetctl dirty "$disk")
	n_ram=$(scan "$ram" "$rr" QSECRET42zz)
	n_disk=$(scan "$disk" "$dr" QSECRET42zz)
	echo "before the reset: the secret $n_ram times in RAM's $(echo "$rr" | wc -l) dirty runs," \
		"$n_disk times in the disk's $(echo "$dr" | wc -l)"
	[ "$n_ram" -gt 0 ] && [ "$n_disk" -gt 0 ] ||
		{ echo "the secret never reached the files: the checks below prove nothing"; return 1; }
	req '{"op":"reset"}' || return 1
	echo "reset: $R"
	echo "$R" | jq -e '.disk_reverted_pages > 0' > /dev/null || return 1
	n_ram=$(scan "$ram" "$rr" QSECRET42zz)
	n_disk=$(scan "$disk" "$dr" QSECRET42zz)
	if [ "$n_ram" != 0 ] || [ "$n_disk" != 0 ]; then
		echo "the secret survived the reset: $n_ram times in RAM, $n_disk on the disk"
		return 1
	fi
	# Loading the vCPUs' MSRs makes KVM write the wall clock (and the like)
	# into guest RAM at once: a few pages, with the time of now.
	after=$(vmresetctl dirty "$ram")
	echo "dirty right after the reset (KVM's writes at the MSR load): ${after:-none}"
	[ "$(echo "$after" | awk '{ n += substr($2, 2) } END { print n + 0 }')" -le 4 ] ||
		{ echo "more of RAM is dirty after the reset than KVM's clock pages"; return 1; }
	sh_req 'echo 3 > /proc/sys/vm/drop_caches; ls /tmp /disk;
		test ! -e /tmp/secret && test ! -e /disk/secret && echo clean' || return 1
	echo "$OUT"
	[ "$(echo "$OUT" | tail -n 1)" = clean ]
}

# A counter in the range the agent declared by hypercall grows; a file beside it does not survive.
t_preserved_range_survives() {
	for i in 1 2 3; do
		sh_req 'test ! -e /tmp/mark && touch /tmp/mark && vmreset-guest keep-inc' || return 1
		echo "request $i: counter $OUT"
		[ "$OUT" = "$i" ] || return 1
		echo "$R" | jq -e '.kept_pages > 0' > /dev/null || { echo "$R"; return 1; }
	done
}

# QEMU's own writes into guest RAM (the virtio-serial rings and buffers)
# and into the disk file are reverted: whole pages compared with the ready state.
t_device_writes_reverted() {
	info || return 1
	ram=$(field ram) disk=$(field disk)
	req '{"op":"qmp","execute":"x-query-virtio"}' || return 1
	path=$(echo "$R" | jq -r '.return[] | select(.name == "virtio-serial") | .path')
	# Queue 4 is the first port's receive queue (0, 1: port 0; 2, 3: control).
	req "$(jq -cn --arg p "$path" '{op: "qmp", execute: "x-query-virtio-queue-status", arguments: {path: $p, queue: 4}}')" || return 1
	echo "$R" | jq -c .return
	used=$(echo "$R" | jq -r '.return["vring-used"]')
	vdesc=$(echo "$R" | jq -r '.return["vring-desc"]')
	[ -n "$used" ] && [ "$used" != null ] && [ "$used" -gt 0 ] || return 1
	# Written by QEMU in every request: hot by now, so its reset is a copy
	# in place that only whole-page content can check.
	hot=$(vmresetctl hot list "$ram")
	echo "hot pages: $(echo "$hot" | wc -l) runs; used ring page $((used & ~4095))"
	in_ranges "$used" "$hot" || { echo "the used ring page is not hot:"; echo "$hot"; return 1; }
	u0=$(page "$ram" "$used") d0=$(page "$ram" "$vdesc")
	cp "$disk" "$W/disk.ready"
	sh_req 'echo data > /disk/file; sync; echo ok' '{reset: false}' || return 1
	u1=$(page "$ram" "$used")
	echo "used ring page: ready $u0, after the request $u1"
	[ "$u0" != "$u1" ] || { echo "QEMU did not write the used ring: nothing to check"; return 1; }
	cmp -s "$disk" "$W/disk.ready" && { echo "the disk file did not change"; return 1; }
	req '{"op":"reset"}' || return 1
	u2=$(page "$ram" "$used") d2=$(page "$ram" "$vdesc")
	echo "after the reset: used $u2, desc $d2 (ready $d0)"
	[ "$u2" = "$u0" ] && [ "$d2" = "$d0" ] && cmp "$disk" "$W/disk.ready"
}

t_many_requests() {
	for i in $(seq 1 20); do
		sh_req "echo r$i; ls /tmp | wc -l" || return 1
		[ "$OUT" = "r$i
0" ] || { echo "request $i: $OUT"; return 1; }
	done
	echo "$R"
	echo "$R" | jq -e '.hot_pages > 0' > /dev/null || { echo "no hot pages learned"; return 1; }
}

# wrecked_then_clean WHAT CMD OUTCOME REASON: CMD, after writing /tmp
# and the disk, ends the request with OUTCOME, its why naming REASON; the
# next request runs in the snapshot's VM, in the same QEMU.
wrecked_then_clean() {
	info || return 1
	pid0=$(field qemu_pid)
	req "$(jq -cn --arg c "touch /tmp/mark /disk/mark; sync; $2" \
		'{argv: ["sh", "-c", $c], timeout_ms: 200000}')" || return 1
	echo "$1: $(echo "$R" | jq -c '{outcome, why, reset_ms, reverted_pages, disk_reverted_pages}')"
	echo "$R" | jq -e --arg o "$3" --arg r "$4" '.outcome == $o and (.why | test($r))' \
		> /dev/null || return 1
	sh_req 'ls /tmp | wc -l; test ! -e /disk/mark && echo alive' || return 1
	[ "$OUT" = "0
alive" ] || { echo "after the $1: $OUT"; return 1; }
	info || return 1
	[ "$(field qemu_pid)" = "$pid0" ] || { echo "QEMU $pid0 was replaced"; return 1; }
}

# A request that panics the guest kernel or triple-faults it: outcome
# "crash" (QEMU's RESET event), and the next request runs in the snapshot's VM.
t_guest_crash_then_clean() {
	wrecked_then_clean panic 'echo c > /proc/sysrq-trigger; sleep 100' crash guest-reset &&
		wrecked_then_clean triple 'vmreset-guest triple' crash guest-reset
}

# A request that powers the guest off: outcome "poweroff" (QEMU, under
# -no-shutdown, stops with a SHUTDOWN event instead of exiting), and the
# VM is reset in place like after a crash.
t_guest_poweroff_then_clean() {
	wrecked_then_clean poweroff 'poweroff -f; sleep 100' poweroff guest-shutdown
}

# Bad words for --hot, --reset and serve's mode: refused, the word named
# (the driver serves on).
t_bad_words_refused() {
	for a in "--hot lukewarm:--hot: unknown mode 'lukewarm' (learn, off, mount)" \
		"--reset warm:--reset: unknown mode 'warm' (vmreset, incoming, loadvm, cold, none)"; do
		out=$(vmreset-qemu ${a%%:*} boot 2>&1)
		rc=$?
		echo "vmreset-qemu ${a%%:*}: exit $rc, $out"
		[ "$rc" != 0 ] && [ "$out" = "vmreset-qemu: ${a#*:}" ] || return 1
	done
	nreq=$((nreq + 1))
	echo '{"op":"mode","reset":"warm"}' >&3
	await $((nreq + 1)) 60 || { echo "no answer; driver stderr:"; cat "$W/err"; return 1; }
	R=$(tail -n 1 "$W/out")
	echo "mode warm: $R"
	echo "$R" | jq -e '.error == "unknown mode"' > /dev/null || return 1
	sh_req 'echo still' && [ "$OUT" = still ]
}

# incoming_resets: a request's reset starts a new QEMU (its VM attached)
# that loads the ready state with -incoming; the next two requests (each
# reset the same way) see a clean /tmp and disk.
incoming_resets() {
	info || return 1
	pid0=$(field qemu_pid)
	sh_req 'echo x > /tmp/inc; echo x > /disk/inc; sync; echo wrote' || return 1
	echo "$(echo "$R" | jq -c '{reset, reset_ms, phases, reverted_pages, disk_reverted_pages}')"
	echo "$R" | jq -e '.reset == "incoming" and .reverted_pages > 0 and .disk_reverted_pages > 0' \
		> /dev/null || return 1
	info || return 1
	pid1=$(field qemu_pid) vm=$(field vm_id)
	[ "$pid1" != "$pid0" ] || { echo "still QEMU $pid0"; return 1; }
	vmresetctl vm list | grep -q "^vm $vm:" || { echo "new QEMU's VM $vm not attached"; return 1; }
	for i in 1 2; do
		sh_req 'ls /tmp | wc -l; test ! -e /disk/inc && cat /disk/hello' || return 1
		[ "$OUT" = "0
hello from the disk" ] || { echo "request $i after an incoming reset: $OUT"; return 1; }
	done
}

# The same snapshot, reset by a new QEMU with -incoming (the state that
# --compare saved at the ready snapshot): two such resets, each exact.
t_incoming_reset() {
	req '{"op":"mode","reset":"incoming"}' || return 1
	echo "$R" | jq -e '.reset == "incoming"' > /dev/null || { echo "$R"; return 1; }
	incoming_resets
}

# --reset incoming by the option (named only: a boot of its own): the
# ready state is saved by migrate alone (no vmstate image, no --compare).
t_incoming_option() {
	start_driver --disk $DISK --reset incoming || { cat "$W/err"; return 1; }
	echo "$(head -n 1 "$W/out" | jq -c '{reset, boot_ms, ready_ms}')"
	incoming_resets
}

# A request that outlives its timeout_ms: outcome "timeout" with what the
# VM was doing at that moment (the guest sleeping: running, its vCPUs'
# RIP lines, the agent's virtio-serial rings), then a reset that leaves
# nothing of it (its file in /tmp is gone) and the next request served.
t_timeout_reported_then_clean() {
	req '{"argv":["sh","-c","touch /tmp/slow; sleep 1000"],"timeout_ms":20000}' || return 1
	echo "$R" | jq -c '{outcome, run_ms, stuck}'
	echo "$R" | jq -e '.outcome == "timeout" and .run_ms >= 20000 and
		.stuck.status.status == "running" and
		([.stuck.cpus[] | select(test("^RIP=[0-9a-f]{16} .*HLT="))] | length) >= 1 and
		([.stuck.virtio[] | select(.name == "virtio-serial") | .queues[]
		  | select(has("used-idx"))] | length) >= 4' > /dev/null || return 1
	sh_req 'test -e /tmp/slow && echo left || echo clean' || return 1
	echo "after: $OUT"
	[ "$OUT" = clean ]
}

# QEMU killed during a request: the driver says so and cleans up; the VM
# is detached and vmresetfs is as empty as before.
t_killed_mid_request() {
	info || return 1
	qpid=$(field qemu_pid) vm=$(field vm_id)
	vmresetctl vm list | grep -q "^vm $vm:" || { echo "VM $vm not attached"; vmresetctl vm list; return 1; }
	echo '{"argv":["sleep","100"]}' >&3
	sleep 3
	kill -9 "$qpid"
	wait "$drv_pid"
	rc=$?
	drv_pid=
	echo "driver exited with $rc: $(cat "$W/err")"
	[ "$rc" != 0 ] || return 1
	for i in $(seq 1 50); do
		vmresetctl vm list | grep -q "^vm $vm:" || break
		sleep 0.2
	done
	vmresetctl vm list | grep "^vm $vm:" && { echo "VM $vm still attached"; return 1; }
	echo "vmresetfs used: $(used_kb) KiB, before: $base_used KiB; files: $(ls -A "$D")"
	[ "$(used_kb)" = "$base_used" ] && [ -z "$(ls -A "$D")" ] && ! kill -0 "$qpid" 2>/dev/null
}

# --reset cold (named only: each of its resets is a boot): a request's
# file on the disk and in /tmp is gone after the next boot, and that boot
# started from the pristine disk (the ready one had no /disk/cold).
t_cold_reset() {
	start_driver --disk $DISK --reset cold || { cat "$W/err"; return 1; }
	sh_req 'echo x > /tmp/cold; echo x > /disk/cold; sync; cut -d" " -f1 /proc/uptime' || return 1
	up0=$OUT
	echo "$(echo "$R" | jq -c '{reset, reset_ms, reverted_pages, disk_reverted_pages}')"
	echo "$R" | jq -e '.reset == "cold" and .reset_ms > 0 and .disk_reverted_pages > 0' \
		> /dev/null || return 1
	sh_req 'ls /tmp | wc -l; test ! -e /disk/cold && cat /disk/hello; cut -d" " -f1 /proc/uptime' ||
		return 1
	echo "after the cold reset: $OUT (uptime at the first request $up0)"
	[ "$(echo "$OUT" | sed -n 1,2p)" = "0
hello from the disk" ]
}

# The agent's hc-preserve under vmreset-vmm: the hypercall reaches vmreset-hc.
t_hc_preserve_under_vmreset_vmm() {
	before=$(vmreset-hc -j status | jq '[.[].accepted] | add // 0')
	out=$(vmreset-vmm -d "$D" -k $K -i $I --keep 0 run -- vmreset-guest hc-preserve 0x1000000 0x1000 2>&1)
	echo "vmreset-guest hc-preserve: $out"
	after=$(vmreset-hc -j status | jq '[.[].accepted] | add // 0')
	echo "vmreset-hc requests before $before, after $after"
	vmreset-hc -j status
	# KVM answers -KVM_ENOSYS: the call went through to the host.
	[ "$(echo "$out" | tail -n 1)" = -1000 ] && [ "$after" -gt "$before" ]
}

cases="boots_and_serves exit_status_and_stdin no_files_or_secret_from_last_request
	preserved_range_survives device_writes_reverted many_requests guest_crash_then_clean
	guest_poweroff_then_clean bad_words_refused timeout_reported_then_clean incoming_reset
	killed_mid_request hc_preserve_under_vmreset_vmm"
# Named only (-t): a boot of their own each, too slow for every CI run.
named="cold_reset incoming_option"
[ -n "$only" ] && cases="$cases $named"
total=0
for c in $cases; do want "$c" && total=$((total + 1)); done
echo "1..$total"

need_qemu=0
for c in $cases; do
	case $c in hc_preserve_under_vmreset_vmm | cold_reset | incoming_option) continue ;; esac
	want "$c" && need_qemu=1
done
if [ "$need_qemu" = 1 ]; then
	t0=$(date +%s)
	# --compare: the ready state for incoming_reset too, from the same boot.
	if start_driver --disk $DISK --keep 64K --compare; then
		echo "# ready: $(head -n 1 "$W/out") ($(( $(date +%s) - t0 )) s)"
	else
		echo "# the driver did not get ready:"
		sed 's/^/# /' "$W/err"
		tail -30 "$W/console.log" | sed 's/^/# console: /'
	fi
fi
for c in $cases; do
	want "$c" || continue
	tap "$c" "t_$c"
done
exit $((fails > 0))
