# xl, the toolstack. Its end-to-end tests (test/xl) run bin/xl and bin/hv
# on the micro-guests that mk/hv.mk builds; the benchmark times xl list
# with 50 live domains and xl create against the hv started directly.

# procps: ps(1) is the peer of the xl list benchmark.
DEB_PKGS += procps
TEST_PREREQS += guests

.PHONY: bench-xl
BENCH_TARGETS += bench-xl
bench-xl: guests bin/xl bin/hv
	XENO_BIN=$(CURDIR)/bin $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 20m ./test/xl/
