# Device models (hv/uart, hv/acpi, hv/virtio): iasl disassembles the ACPI
# tables in hv/acpi's tests as an independent check of their layout.
DEB_PKGS += acpica-tools

# The virtio micro-guests share a minimal driver; mk/hv.mk's pattern rule
# builds them, this only adds the dependency.
test/guests/virtio_blk.elf test/guests/hostile.elf: test/guests/lib/virtio.inc

# The virtio-blk request path next to a bare pread of the same bytes.
BENCH_TARGETS += bench-devices
.PHONY: bench-devices
bench-devices:
	$(GO) test -run '^$$' -bench . -count 3 ./hv/virtio/

# virtio-net throughput and latency, hv next to QEMU's virtio-net (KVM in
# the lab where /dev/kvm is missing, and TCG here), on the xeno kernel.
BENCH_TARGETS += bench-net
.PHONY: bench-net
bench-net: bin/hv bin/xl kernel
	XENO_BIN=$(CURDIR)/bin $(GO) test -ldflags '$(LDFLAGS)' -run '^$$' -bench 'VirtioNetPeers' -benchtime 1x -timeout 30m ./test/hv/
