# The kernel store (kernels/, debs/). apt is the client that fetches the
# pinned linux-image packages; lz4 and zstd decompress the same payloads
# as an independent check of our Go decompression (and as the peer in
# bench-kernels); kmod's modinfo checks ModuleClosure's dependencies; QEMU
# boots the vmlinux we decompress through its PVH note.
DEB_PKGS += apt lz4 zstd xz-utils kmod qemu-system-x86
# The xeno guest kernel is built from Debian's linux-source with these
# (docs/kernels.md): Kbuild's own tools, objtool's libelf, patch(1) for
# kernels/patches, tar+xz to unpack the source.
DEB_PKGS += make gcc flex bison bc libelf-dev libssl-dev patch tar xz-utils
# sbsign signs a kernel as Debian's signed packages are, so the import's
# CRC check is tested on a real signature (openssl makes its key).
DEB_PKGS += sbsigntool openssl

# The xeno guest kernel of recipes/minimal.toml, built once per machine
# into the kernel store (keyed by its inputs; a rebuild is a cache hit).
TEST_PREREQS += kernel
.PHONY: kernel
kernel: bin/xeno
	bin/xeno kernel build recipes/minimal.toml

BENCH_TARGETS += bench-kernels
.PHONY: bench-kernels
bench-kernels:
	$(GO) test -run '^$$' -bench . -benchtime 5x -timeout 20m ./kernels/

# The xeno kernel's boot under hv next to QEMU TCG (same kernel,
# initramfs and command line), then to the user-space marker under hv,
# QEMU -accel kvm and xl create, with hv's and QEMU's RSS; in the nested
# lab where /dev/kvm is missing.
BENCH_TARGETS += bench-kernel-boot
.PHONY: bench-kernel-boot
bench-kernel-boot: bin/hv bin/xl kernel
	XENO_BIN=$(CURDIR)/bin $(GO) test -ldflags '$(LDFLAGS)' -run '^$$' -bench 'XenoKernelBoot|XenoLinuxPeers' -benchtime 3x -timeout 40m ./test/kernel/
