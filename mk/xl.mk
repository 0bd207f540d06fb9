# xl, the toolstack. Its end-to-end tests (test/xl) run bin/xl and bin/hv
# on the micro-guests that mk/hv.mk builds; the benchmark times xl list
# with 50 live domains and xl create against the hv started directly.

TEST_PREREQS += guests

.PHONY: bench-xl
BENCH_TARGETS += bench-xl
bench-xl: guests bin/xl bin/hv
	XENO_BIN=$(CURDIR)/bin $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 20m ./test/xl/
