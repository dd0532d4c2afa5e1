#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The README's "A session", run as written: every command line of it, one
# TAP case each. selftests/Makefile builds readme_session from this file
# and the README's section at build time, so the README cannot drift.
#
# "$ " lines run as an unprivileged user, "# " lines as root. A command
# must exit 0, and where the README shows its output, the output must have
# the same shape (numbers aside: IDs, counts and pids differ from run to
# run). The README's IDs are mapped to this run's from its outputs (list,
# vm attach), its pid 4242 and fd 11 to a stand-in VMM (readme_vmm) with
# the memslots its `vm list` shows, and its "... a request runs ..." writes
# the pages its `dirty` shows.
. "$(dirname "$0")/tap.sh"
user=1000
w=/tmp/readme
rm -rf $w && mkdir -p $w/bin && chmod 755 $w $w/bin
# GNU cp, for --reflink=always.
ln -s /usr/bin/gnucp $w/bin/cp
export PATH=$w/bin:$PATH

# The session as the README has it (filled in by selftests/Makefile):
# indented lines without their indent, "--" for a line of prose.
session() {
	cat <<'README_SESSION_EOF'
@README_SESSION@
README_SESSION_EOF
}

# Numbers (and runs of blanks) do not count when outputs are compared.
shape() {
	sed -e 's/0x[0-9a-fA-F]*/N/g' -e 's/[0-9][0-9]*/N/g' \
	    -e 's/[[:space:]][[:space:]]*/ /g' -e 's/^ //' -e 's/ $//'
}

# Steps: $w/step.K holds the line, $w/out.K what the README shows after it.
k=0 inblock=0
session > $w/session
while IFS= read -r line; do
	case "$line" in
	"--") inblock=0 ;;
	"\$ "* | "# "* | "... "*)
		k=$((k + 1))
		printf '%s\n' "$line" > $w/step.$k
		: > $w/out.$k
		inblock=1 ;;
	*)
		[ $inblock = 1 ] && [ $k -gt 0 ] && printf '%s\n' "$line" >> $w/out.$k ;;
	esac
done < $w/session
steps=$k

# The README's object IDs and paths, from its list output (ID ... PATH),
# and its mount point, from its mount command.
mnt=$(sed -n 's/^# mount .* \(\/[^ ]*\)\( .*\)\{0,1\}$/\1/p' $w/session | head -n 1)
cat $w/out.* | awk '$1 ~ /^[0-9]+$/ && $NF ~ /^\// { print $1, $NF }' > $w/readme_ids

# map_ids LINE: the README's id:N and VM IDs as this run's.
map_ids() {
	l=$1
	while read -r from to; do
		l=$(printf '%s\n' "$l" | sed "s/id:$from\([^0-9]\|\$\)/id:$to\1/g")
	done < $w/idmap
	while read -r from to; do
		l=$(printf '%s\n' "$l" | sed -e "s/^\(vmresetctl vm [a-z -]*\) $from\( \|\$\)/\1 $to\2/")
	done < $w/vmmap
	printf '%s\n' "$l"
}
: > $w/idmap
: > $w/vmmap

# learn CMD OUTFILE: after list or vm attach, how the README's IDs map.
learn() {
	case "$1" in
	"vmresetctl list"*)
		while read -r rid rpath; do
			real=$(awk -v p="$rpath" '$NF == p { print $1 }' "$2" | head -n 1)
			[ -n "$real" ] || { echo "the README lists $rpath, this run does not"; return 1; }
			echo "$rid $real" >> $w/idmap
		done < $w/readme_ids ;;
	"vmresetctl vm attach"*)
		rid=$(sed -n 's/^vm \([0-9]*\) attached$/\1/p' $w/out.$st)
		real=$(sed -n 's/^vm \([0-9]*\) attached$/\1/p' "$2")
		[ -n "$rid" ] && [ -n "$real" ] && echo "$rid $real" >> $w/vmmap ;;
	esac
	return 0
}

# The VMM the README describes: its vm list's memslots, over the README's
# objects (found by their IDs in its list output), pid 4242 and fd 11 as
# the README writes them.
start_vmm() {
	slots=
	for spec in $(cat $w/out.* | sed -n 's/^ *gpa \(0x[0-9a-f]*\|[0-9]*\)-\(0x[0-9a-f]*\) -> object id:\([0-9]*\) at \(0x[0-9a-f]*\|[0-9]*\)$/\1:\2:\3:\4/p'); do
		set -- $(printf '%s\n' "$spec" | tr : ' ')
		start=$1 end=$2 rid=$3 off=$4
		rpath=$(awk -v i="$rid" '$1 == i { print $2 }' $w/readme_ids)
		[ -n "$rpath" ] || { echo "the README's vm list uses id:$rid, which its list does not show"; return 1; }
		slots="$slots $mnt$rpath:$start:$((end - start)):$off"
	done
	[ -n "$slots" ] || { echo "no memslots in the README's vm list output"; return 1; }
	[ "$(echo $slots | wc -w)" = "$(cat $w/out.* | grep -c '^ *gpa ')" ] ||
		{ echo "a memslot line of the README's vm list is not 'gpa A-B -> object id:N at OFF'"; return 1; }
	/selftests/readme_vmm $slots > $w/vmm.out 2>&1 &
	vmm=$!
	i=0
	until [ -s $w/vmm.out ]; do
		i=$((i + 1))
		[ $i -le 100 ] || { echo "readme_vmm did not start"; return 1; }
		sleep 0.1
	done
	read -r vmm_pid vmm_fd < $w/vmm.out
	[ "$vmm_pid" = $vmm ] || { cat $w/vmm.out; return 1; }
	echo "readme_vmm $slots: pid $vmm_pid, VM fd $vmm_fd"
}

# monitor: it runs until stopped, so run it in the background, make an
# event (a revert of the README's first object) until it prints one.
run_monitor() {
	obj=$(awk 'NR == 1 { print $2 }' $w/idmap)
	[ -n "$obj" ] || { echo "monitor: no object ID known yet"; return 1; }
	# The monitor's own file: $w/got still holds the last step's output.
	: > $w/mon
	$run "exec $1" > $w/mon 2>&1 &
	mon=$!
	i=0
	until [ -s $w/mon ]; do
		i=$((i + 1))
		[ $i -le 50 ] || { kill $mon; echo "monitor printed nothing in 50 reverts"; return 1; }
		$run "vmresetctl revert id:$obj" > /dev/null
		sleep 0.2
	done
	kill $mon
	wait $mon 2>/dev/null
	head -n "$(wc -l < $w/out.$st)" $w/mon > $w/got
	cat $w/got
}

step() {
	line=$(cat $w/step.$st)
	case "$line" in
	"\$ "*) run="util-setpriv --reuid $user --regid $user --clear-groups sh -c" ;;
	"# "*) run="sh -c" ;;
	"... "*)
		case "$line" in
		*"VMM maps"*"boots the guest"*) return 0 ;;	# the check has no guest to boot
		*"a request runs"*)
			# What the README's next dirty output shows: its pages, written.
			obj=$(sed -n 's/^\$ vmresetctl snapshot \([^ ]*\).*/\1/p' $w/step.$((st - 1)))
			exp=$(cat $w/out.$((st + 1)))
			s=$(printf '%s\n' "$exp" | sed -n 's/^\(0x[0-9a-f]*\)-\(0x[0-9a-f]*\) .*/\1 \2/p' | head -n 1)
			[ -n "$obj" ] && [ -n "$s" ] || { echo "'$line' must follow a snapshot and precede a dirty list"; return 1; }
			set -- $s
			util-setpriv --reuid $user --regid $user --clear-groups \
				dd if=/dev/urandom of="$obj" bs=4096 seek=$(($1 / 4096)) \
				count=$((($2 - $1) / 4096)) conv=notrunc 2>/dev/null
			return ;;
		*) echo "the README has a step this check does not know: $line"; return 1 ;;
		esac ;;
	esac
	cmd=${line#??}
	# Drop the README's comments (two blanks, then #).
	cmd=$(printf '%s\n' "$cmd" | sed 's/[[:space:]][[:space:]]*#.*$//')
	case "$cmd" in
	*"vm attach 4242 11"*) start_vmm || return 1; cmd=$(printf '%s\n' "$cmd" | sed "s/ 4242 11/ $vmm_pid $vmm_fd/") ;;
	esac
	cmd=$(map_ids "$cmd")
	echo "\$ $cmd"
	case "$cmd" in
	"vmresetctl monitor") run_monitor "$cmd" || return 1 ;;
	*)
		$run "$cmd" > $w/got 2>&1
		rc=$?
		cat $w/got
		[ $rc = 0 ] || { echo "exit status $rc"; return 1; } ;;
	esac
	{ echo "\$ $cmd"; cat $w/got; } >> $w/log
	learn "$cmd" $w/got || return 1
	if [ -s $w/out.$st ] && [ "$(shape < $w/out.$st)" != "$(shape < $w/got)" ]; then
		echo "the README shows:"
		cat $w/out.$st
		return 1
	fi
	return 0
}

echo "TAP version 13"
[ $steps -gt 0 ] || { echo "1..1"; echo "not ok 1 the README has a session"; exit 1; }
echo "1..$steps"
st=1
while [ $st -le $steps ]; do
	tap "$(cat $w/step.$st)" step
	st=$((st + 1))
done
# What this run printed, for comparing with the README by eye.
sed 's/^/# /' $w/log 2>/dev/null
[ -n "${vmm:-}" ] && { kill $vmm 2>/dev/null; wait $vmm 2>/dev/null; }
[ -n "$mnt" ] && { rm -f "$mnt"/*; umount "$mnt"; }
[ $fails = 0 ]
