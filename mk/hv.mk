# The hypervisor's micro-guests (test/guests) and benchmarks.
#
# Every test/guests/NAME.S becomes test/guests/NAME.bin: a bzImage-format
# micro-guest linked with the shared runtime test/guests/lib/head.S.
# Guests added by other areas need no rule of their own.

DEB_PKGS += gcc binutils libc6-dev qemu-system-x86
# mkfs.ext4 -d and debugfs make and read back the Linux guests' disks.
DEB_PKGS += e2fsprogs

GUEST_SRCS := $(wildcard test/guests/*.S)
GUEST_BINS := $(GUEST_SRCS:.S=.bin)
GUEST_LIB  := test/guests/lib/head.S test/guests/lib/xtf.h test/guests/lib/guest.ld
GUEST_CC   := gcc -nostdlib -static -no-pie -ffreestanding -Wl,--build-id=none \
	-Wl,--no-warn-rwx-segments -Wl,-T,test/guests/lib/guest.ld

TEST_PREREQS += guests

.PHONY: guests bench-hv
# Keep the ELF beside the .bin: objdump -d test/guests/NAME.elf explains a crash dump.
.SECONDARY: $(GUEST_SRCS:.S=.elf)
guests: $(GUEST_BINS)

test/guests/%.elf: test/guests/%.S $(GUEST_LIB)
	$(GUEST_CC) -Itest/guests -o $@ test/guests/lib/head.S $<

test/guests/%.bin: test/guests/%.elf
	objcopy -O binary $< $@

test/guests/hostile.elf test/guests/spray_port.elf: test/guests/lib/skip.inc

BENCH_TARGETS += bench-hv
# VMM overhead, RSS, save/restore and live migration next to QEMU microvm
# (seconds to minutes), then Linux early boot next to QEMU (minutes here:
# kernel mode is emulated).
bench-hv: guests bin/hv bin/xl bin/kvmlab test/guests/serial.pvh.elf test/guests/powerbutton.pvh.elf test/guests/counter.pvh.elf \
		test/guests/dirty_counter.pvh.elf
	XENO_BIN=$(CURDIR)/bin $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/hv/

# Boot the xeno guest kernel to init and power off 10 times (make test
# does it twice); in the nested lab where /dev/kvm is missing.
.PHONY: soak-hv
soak: soak-hv
soak-hv: bin/hv kernel
	XENO_SOAK=10 XENO_BIN=$(CURDIR)/bin $(GO) test -ldflags '$(LDFLAGS)' -count=1 -run '^TestLinuxSoak$$' -v -timeout 60m ./test/hv/

# The hostile micro-guests (MMIO spray, port spray, console flood) for a
# minute each instead of make test's 3 s: the hv's RSS and logs must stay
# bounded (docs/hv.md). A test flag, because kvmlab passes the test
# binary's flags, not the environment, into the lab.
.PHONY: soak-hostile
soak: soak-hostile
soak-hostile: bin/hv guests
	XENO_BIN=$(CURDIR)/bin $(GO) test -ldflags '$(LDFLAGS)' -count=1 -run '^TestHostileGuests$$' -v -timeout 30m ./test/hv/ -args -hostile=60s

# The same guest as a PVH ELF, for QEMU (the benchmark's peer).
test/guests/%.pvh.elf: test/guests/%.S $(GUEST_LIB) test/guests/lib/pvh.S test/guests/lib/pvh.ld
	gcc -nostdlib -static -no-pie -ffreestanding -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
		-Wl,-T,test/guests/lib/pvh.ld -Itest/guests -o $@ test/guests/lib/head.S test/guests/lib/pvh.S $<
