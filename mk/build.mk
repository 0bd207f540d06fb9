# The builder (xeno lock/build/verify) and xeno-init. The .debs a recipe
# needs are fetched with `apt-get download`, so none of them is installed;
# the host needs QEMU to boot the outputs, GNU cpio to read the initramfs
# back in tests, and diffoscope to explain a `xeno verify` mismatch.
DEB_PKGS += apt qemu-system-x86 cpio gzip diffoscope-minimal

# Cold (empty cache) and warm builds of recipes/minimal.toml, next to a
# plain `apt-get download` of the same packages (the network floor of a
# cold build). Results: docs/benchmarks-build.md.
BENCH_TARGETS += bench-build
.PHONY: bench-build
bench-build: bin/xeno
	XENO_BIN=$(CURDIR)/bin $(GO) test -run '^$$' -bench BenchmarkBuildMinimal -benchtime 1x -timeout 30m ./test/build/
