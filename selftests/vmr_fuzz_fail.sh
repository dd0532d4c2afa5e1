#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The fuzzer with failslab and fail_page_alloc injecting failures into
# vmreset.ko's allocations (the debug kernel only: make check-debug). Every
# ENOMEM must leave the file consistent: pages DIRTY does not list hold the
# snapshot, and a REVERT once injection stops gives the snapshot back.
exec "$(dirname "$0")/vmr_fuzz" --fault-inject --time 60 "$@"
