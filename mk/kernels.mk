# The kernel store (kernels/, debs/). apt is the client that fetches the
# pinned linux-image packages; lz4 and zstd decompress the same payloads
# as an independent check of our Go decompression (and as the peer in
# bench-kernels); kmod's modinfo checks ModuleClosure's dependencies; QEMU
# boots the vmlinux we decompress through its PVH note.
DEB_PKGS += apt lz4 zstd xz-utils kmod qemu-system-x86

BENCH_TARGETS += bench-kernels
.PHONY: bench-kernels
bench-kernels:
	$(GO) test -run '^$$' -bench . -benchtime 5x -timeout 20m ./kernels/
