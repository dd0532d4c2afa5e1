#!/bin/sh
# /init of the vmreset test VM (busybox sh). Loads KVM and vmreset the way
# a user would, runs the selftests (or the demo), reports on the second
# serial port, checks the kernel log, and powers off.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
[ -d /sys/kernel/debug ] && mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

out=/dev/ttyS1
mode=check
only=
targs=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vmrtest.mode=*) mode=${arg#vmrtest.mode=} ;;
	vmrtest.only=*) only=${arg#vmrtest.only=} ;;
	# Extra arguments for the test "only" names (commas for spaces).
	vmrtest.args=*) targs=$(echo "${arg#vmrtest.args=}" | tr , ' ') ;;
	esac
done

say() { echo "$*" > $out; }
say "vmreset-vm: kernel $(uname -r), $(nproc) cpus, mode $mode"

# The test VM exists to test with KVM and the module: without either the
# tests would only skip, so the host fails the run on any of these.
bad() { say "vmreset-setup-bad $*"; }
# KVM for whichever vendor the (virtual) CPU has.
if grep -qw svm /proc/cpuinfo; then
	modprobe kvm_amd || bad "modprobe kvm_amd failed"
elif grep -qw vmx /proc/cpuinfo; then
	modprobe kvm_intel || bad "modprobe kvm_intel failed"
else
	bad "CPU has neither svm nor vmx"
fi
[ -c /dev/kvm ] || bad "no /dev/kvm after loading KVM"
modprobe vmreset || bad "modprobe vmreset failed"
grep -qw vmresetfs /proc/filesystems || bad "no vmresetfs in /proc/filesystems"

if [ "$mode" = demo ]; then
	sh /selftests/demo.sh > $out 2>&1
elif [ "$mode" = bench ]; then
	# Progress on the console (the host follows it), results on ttyS1.
	cd /tmp
	/bench/vmreset_bench -o /tmp/bench.json $(cat /bench/args) > /dev/console 2>&1
	say "vmreset-bench-exit $?"
	if [ -s /tmp/bench.json ]; then
		say "vmreset-bench-json-begin"
		cat /tmp/bench.json > $out
		say "vmreset-bench-json-end"
	fi
	cd /
else
	limit=900
	case "$(uname -r)" in
	*-vmrdebug)
		# KASAN, lockdep and kmemleak under TCG: several times slower.
		export VMRESET_TEST_TIMEOUT=900
		limit=2700 ;;
	esac
	for t in $(cat /selftests/list); do
		name=${t%%/*}
		case "$only" in
		"" | "$name" | "$name"/*) ;;
		*) continue ;;
		esac
		args=
		case "$only" in "$name"/*) args="-t ${only#*/}" ;; esac
		[ -n "$only" ] && args="$args $targs"
		say "vmreset-test-begin $name"
		cd /tmp
		t0=$(date +%s)
		timeout -s KILL $limit /selftests/$name $args > $out 2>&1
		say "vmreset-test-end $name $?"
		# For choosing what fits CI's time (docs/testing.md).
		say "vmreset-test-time $name $(( $(date +%s) - t0 ))"
		cd /
	done
fi

# kmemleak (the debug kernel) scans on demand only: scan now, twice, as
# its documentation advises (an object must look unreferenced in both), and
# fail on anything it reports.
if [ -e /sys/kernel/debug/kmemleak ]; then
	echo scan > /sys/kernel/debug/kmemleak
	sleep 5
	echo scan > /sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak > /tmp/kmemleak
	if [ -s /tmp/kmemleak ]; then
		say "vmreset-kmsg-bad kmemleak: $(grep -c '^unreferenced object' /tmp/kmemleak) unreferenced objects"
		say "vmreset-kmemleak-begin"; cat /tmp/kmemleak > $out; say "vmreset-kmemleak-end"
	fi
fi

# Anything the kernel complained about fails the run.
dmesg > /tmp/kmsg
if grep -E -f /etc/kmsg-patterns /tmp/kmsg > /tmp/kmsg.bad; then
	while read -r l; do say "vmreset-kmsg-bad $l"; done < /tmp/kmsg.bad
	say "vmreset-kmsg-begin"; cat /tmp/kmsg > $out; say "vmreset-kmsg-end"
fi
say "vmreset-done"
sync
poweroff -f
