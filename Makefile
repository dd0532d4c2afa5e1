# SPDX-License-Identifier: GPL-2.0
#
# vmreset top-level Makefile.
#
#   make                 module (against KDIR), library and tool, selftests
#   make KVER=6.12       build against the installed Debian 6.12 headers
#   make check           run all selftests in a QEMU test VM, per kernel
#                        (KVERS="6.1 6.12" by default; T=<test> runs one,
#                        TARGS="..." gives it arguments, e.g. --seed N)
#   make check-debug     the suite on a debug build of Debian's 6.12 (KASAN,
#                        lockdep, kmemleak, fault injection; built and cached
#                        by scripts/debug-kernel.sh) and the fuzzer with faults
#                        (check-debug-ci: the part of it .ci/run runs)
#   make demo            boot the test VM and show the pipeline
#   make bench           benchmark vmreset against the baselines in the test
#                        VM (KVER=6.12 by default), write docs/benchmarks.md
#                        (BENCH_ARGS=--quick: a fast run; BENCH_FLAGS=-n: no docs)
#   make install         module to /lib/modules/<kver>/updates, tools to PREFIX,
#                        the guest image for <kver> to PREFIX/lib/vmreset
#   make uninstall       undo install
#   make dkms-install    register the sources with DKMS
#   make deps            install the Debian packages (needs root)

VERSION := 0.1.0
KVER ?=
# Looked up once, and only by targets that need a kernel: help and clean
# work (quietly) on a machine without headers.
ifeq ($(origin KDIR),undefined)
KDIR = $(eval KDIR := $$(shell scripts/kdir.sh $$(KVER)))$(KDIR)
endif
KREL = $(eval KREL := $$(shell sed -n "s/.*UTS_RELEASE \"\(.*\)\"/\1/p" \
	$$(KDIR)/include/generated/utsrelease.h 2>/dev/null))$(KREL)
BUILD ?= $(CURDIR)/build
MODDIR = $(BUILD)/kmod-$(KREL)
PREFIX ?= /usr/local
DESTDIR ?=
KVERS ?= 6.1 6.12
T ?=
TARGS ?=

KMOD_SRCS := $(wildcard kmod/*.c kmod/*.h)

.PHONY: all module helper bpf vmm qemu selftests bench check check-debug check-debug-ci demo install uninstall \
	dkms-install dkms-uninstall deps clean help

all: module helper bpf vmm qemu selftests

help:
	@sed -n '3,21p' Makefile | sed 's/^# \{0,1\}//'

# Each kernel gets its own object tree of symlinks to the sources, so that
# builds for 6.1 and 6.12 can live side by side.
module:
	@test -n "$(KREL)" || { echo "no kernel headers in '$(KDIR)'; run: sudo scripts/deps.sh" >&2; exit 1; }
	@mkdir -p $(MODDIR)/kmod $(MODDIR)/include/uapi/linux
	@ln -sf $(CURDIR)/Kbuild $(MODDIR)/Kbuild
	@for f in $(KMOD_SRCS); do ln -sf $(CURDIR)/$$f $(MODDIR)/$$f; done
	@ln -sf $(CURDIR)/include/uapi/linux/vmreset.h $(MODDIR)/include/uapi/linux/vmreset.h
	@scripts/check-spec.py
	$(MAKE) -C $(KDIR) M=$(MODDIR) W=1 modules
	@echo "built $(MODDIR)/vmreset.ko for $(KREL)"

helper:
	$(MAKE) -C helper
	$(if $(wildcard store/Makefile),$(MAKE) -C store)

# eBPF tools (bpf/): CO-RE, so one build serves every supported kernel.
bpf: helper
	$(MAKE) -C bpf

vmm: helper bpf
	$(MAKE) -C vmm

# vmreset-qemu: unmodified QEMU reset with vmreset (docs/qemu.md).
qemu: helper bpf
	$(MAKE) -C qemu

selftests: helper bpf vmm qemu
	$(MAKE) -C selftests

check:
	VM_TEST_ARGS="$(TARGS)" scripts/check.sh $(if $(T),-t "$(T)") $(KVERS)

check-debug:
	VM_TEST_ARGS="$(TARGS)" scripts/check.sh -n $(if $(T),-t "$(T)") debug

check-debug-ci:
	VM_DEBUG_SET=ci VM_TEST_ARGS="$(TARGS)" scripts/check.sh -n $(if $(T),-t "$(T)") debug

demo:
	scripts/demo.sh

BENCH_KVER ?= $(if $(KVER),$(KVER),6.12)
bench:
	scripts/bench.sh -k $(BENCH_KVER) $(BENCH_FLAGS) -- $(BENCH_ARGS)

install: module helper bpf qemu
	install -D -m 644 $(MODDIR)/vmreset.ko $(DESTDIR)/lib/modules/$(KREL)/updates/vmreset.ko
	install -D -m 644 include/uapi/linux/vmreset.h $(DESTDIR)$(PREFIX)/include/linux/vmreset.h
	$(MAKE) -C helper install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(MAKE) -C bpf install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(if $(wildcard store/Makefile),$(MAKE) -C store install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR))
	$(MAKE) -C vmm install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(MAKE) -C vmm install-guest KREL=$(KREL) KDIR=$(KDIR) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(MAKE) -C qemu install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(if $(DESTDIR),,depmod -a $(KREL))

uninstall:
	rm -f $(DESTDIR)/lib/modules/$(KREL)/updates/vmreset.ko
	rm -f $(DESTDIR)$(PREFIX)/include/linux/vmreset.h
	$(MAKE) -C helper uninstall PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(MAKE) -C bpf uninstall PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(if $(wildcard store/Makefile),$(MAKE) -C store uninstall PREFIX=$(PREFIX) DESTDIR=$(DESTDIR))
	$(MAKE) -C vmm uninstall PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(MAKE) -C qemu uninstall PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
	$(if $(DESTDIR),,depmod -a $(KREL))

DKMS_SRC := /usr/src/vmreset-$(VERSION)
dkms-install:
	mkdir -p $(DKMS_SRC)
	cp -r Kbuild dkms.conf kmod include $(DKMS_SRC)/
	dkms add -m vmreset -v $(VERSION)
	dkms build -m vmreset -v $(VERSION)
	dkms install -m vmreset -v $(VERSION)

dkms-uninstall:
	dkms remove -m vmreset -v $(VERSION) --all
	rm -rf $(DKMS_SRC)

deps:
	scripts/deps.sh

clean:
	rm -rf $(BUILD)
	$(MAKE) -C helper clean
	$(if $(wildcard store/Makefile),$(MAKE) -C store clean)
	$(MAKE) -C selftests clean
	$(MAKE) -C bpf clean
	$(MAKE) -C bench clean
	$(MAKE) -C vmm clean
	$(MAKE) -C qemu clean
