# images: the initramfs, ISO and raw-EFI writers. Tests boot the images in
# QEMU (SeaBIOS and OVMF) and have outside validators read them back; the
# bootloaders come from the same Debian packages the builder pins.
DEB_PKGS += isolinux syslinux-common systemd-boot-efi ovmf qemu-system-x86 \
	xorriso dosfstools mtools gdisk cpio zstd gzip

BENCH_TARGETS += bench-images

# Our ISO and FAT writers next to xorriso and mkfs.vfat+mcopy on the same
# files, in one run (docs/benchmarks-images.md).
.PHONY: bench-images
bench-images:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./images/
