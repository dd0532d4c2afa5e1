#!/bin/sh
# Print the kernel build directory to build against.
#   kdir.sh            the running kernel's, else the newest Debian headers
#   kdir.sh 6.12       the newest installed Debian 6.12 headers
#   kdir.sh 6.1.0-56-amd64   exactly that release
set -e
kver=$1
newest() {
	# Debian's flavour "amd64"; not cloud-amd64 or rt-amd64.
	ls -d /usr/src/linux-headers-$1 2>/dev/null |
		grep -E -- '-amd64$' | grep -vE -- '-(cloud|rt)-amd64$' |
		sort -V | tail -n 1
}
if [ -z "$kver" ]; then
	run=/lib/modules/$(uname -r)/build
	if [ -d "$run" ]; then echo "$run"; exit 0; fi
	d=$(newest '*')
elif [ -d "/usr/src/linux-headers-$kver" ]; then
	d=/usr/src/linux-headers-$kver
else
	d=$(newest "$kver.*")
fi
if [ -z "$d" ]; then
	echo "kdir.sh: no kernel headers found for '${kver:-$(uname -r)}'; install them with: sudo scripts/deps.sh" >&2
	exit 1
fi
echo "$d"
