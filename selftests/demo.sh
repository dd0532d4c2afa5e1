#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The demo, inside the test VM: what an operator and a VMM do with vmreset.
set -e
step() { echo; echo "### $*"; }
run() { echo "\$ $*"; "$@"; }

step "the module is loaded (modprobe vmreset) and registered vmresetfs"
run sh -c 'lsmod | grep -E "^(vmreset|kvm)"'
run modinfo -F description vmreset
run grep vmresetfs /proc/filesystems

step "mount vmresetfs and create 64 MiB of guest RAM"
run mkdir -p /run/vmreset
run vmresetctl mount /run/vmreset size=1G,mode=1777
run vmresetctl create /run/vmreset/vm0.ram 64M
run vmresetctl features /run/vmreset/vm0.ram

step "boot-time state, then SNAPSHOT"
run dd if=/dev/urandom of=/run/vmreset/vm0.ram bs=1M count=4 conv=notrunc
run vmresetctl snapshot /run/vmreset/vm0.ram
before=$(md5sum < /run/vmreset/vm0.ram)

step "a request dirties a few pages (here with dd; a guest works the same)"
run dd if=/dev/zero of=/run/vmreset/vm0.ram bs=4096 seek=100 count=3 conv=notrunc
run dd if=/dev/zero of=/run/vmreset/vm0.ram bs=4096 seek=9000 count=1 conv=notrunc
run vmresetctl dirty /run/vmreset/vm0.ram
run vmresetctl stats /run/vmreset/vm0.ram

step "REVERT touches only those pages"
run vmresetctl revert /run/vmreset/vm0.ram
after=$(md5sum < /run/vmreset/vm0.ram)
[ "$before" = "$after" ] && echo "content equals the snapshot: yes"

step "any process manages objects by ID over netlink"
run vmresetctl list
run vmresetctl show /run/vmreset/vm0.ram

step "a clone shares every page until written"
run vmresetctl clone /run/vmreset/vm0.ram /run/vmreset/vm1.ram
run vmresetctl -j stats /run/vmreset/vm1.ram

step "the same with a real KVM guest writing its RAM (selftest)"
run /selftests/vmresetfs_kvm -t guest_writes_reverted

step "what that request cost the guest: vmreset-trace (eBPF) around it"
vmreset-trace -o /tmp/trace.txt 2> /tmp/trace.err &
tracer=$!
until grep -q tracing /tmp/trace.err 2>/dev/null; do
	kill -0 $tracer 2>/dev/null || { cat /tmp/trace.err; exit 1; }
	sleep 0.2
done
echo "\$ vmreset-trace &    # every VM; Ctrl-C prints the summary"
echo "\$ /selftests/vmresetfs_kvm -t guest_writes_reverted > /dev/null"
/selftests/vmresetfs_kvm -t guest_writes_reverted > /dev/null
kill -INT $tracer
wait $tracer
cat /tmp/trace.txt

step "a real Linux guest: boot once to ready on vmresetfs, snapshot, serve (vmreset-vmm)"
vmm="vmreset-vmm -d /run/vmreset -k /vmm/vmlinuz -i /vmm/guest.cpio.gz -m 128M --disk /vmm/disk.img"
vmreset-store init /tmp/store > /dev/null && vmreset-store keygen /tmp/key > /dev/null
cat > /tmp/requests.jsonl <<'EOR'
{"id": "write", "argv": ["sh", "-c", "echo secret > /tmp/note; echo wrote /tmp/note"]}
{"id": "read", "argv": ["sh", "-c", "cat /tmp/note 2>/dev/null || echo no /tmp/note: the VM was reset"]}
{"id": "count", "argv": ["vmreset-guest", "keep-inc"]}
{"id": "count", "argv": ["vmreset-guest", "keep-inc"]}
{"id": "txn", "argv": ["sh", "-c", "n=$(vmreset-guest counter); echo attempt $n; [ $n -ge 2 ]"], "retry": 5}
EOR
echo "\$ cat requests.jsonl"
cat /tmp/requests.jsonl
echo "\$ $vmm --export /run/vmreset/ready --store /tmp/store --key /tmp/key --save ready serve < requests.jsonl"
echo "  (responses shortened with jq; a preserved counter grows, a transaction is retried from the snapshot)"
$vmm --export /run/vmreset/ready --store /tmp/store --key /tmp/key --save ready serve < /tmp/requests.jsonl |
	jq -M -c '{id, stdout, attempts, success, run_ms: (.run_us / 1000 | floor), reset_ms: (.reset_us / 100 | floor / 10), pages: .reverted_pages}'

step "the ready snapshot restored from vmreset-store in a new VM process: no boot"
run $vmm --store /tmp/store --key /tmp/key --restore ready run -- sh -c 'cat /disk/hello'

step "a VM started from reflink clones of the ready snapshot, traced (vmreset-trace)"
vmreset-trace -o /tmp/trace2.txt 2> /tmp/trace2.err &
tracer=$!
until grep -q tracing /tmp/trace2.err 2>/dev/null; do
	kill -0 $tracer 2>/dev/null || { cat /tmp/trace2.err; exit 1; }
	sleep 0.2
done
run $vmm --clone /run/vmreset/ready -v run -- echo hello from a clone
kill -INT $tracer
wait $tracer
cat /tmp/trace2.txt
