# xeno: `make run` is the demo, `make test` runs everything.
# Every target installs what it needs and is idempotent on a fresh Debian
# machine. Areas add their own packages, prerequisites and benchmarks in
# mk/*.mk, so that this file stays short.

GO        ?= go
RELEASE   ?= 1.2.0
BUILD_ID  ?= $(shell sh scripts/buildid.sh $(RELEASE))
CHANGESET ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
ABI       := github.com/xeno-hv/xeno/hv/abi
LDFLAGS   := -buildid= -X $(ABI).release=$(RELEASE) -X $(ABI).buildID=$(BUILD_ID) -X $(ABI).changeset=$(CHANGESET)
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'
TOOLS     := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.7.0
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages that tests and the demo need; mk/*.mk add to these.
DEB_PKGS  := ca-certificates git
# Targets that must be made before `go test ./...`.
TEST_PREREQS :=
# Benchmark targets run by `make bench`.
BENCH_TARGETS :=

CMDS := xeno xl hv xeno-init kvmlab

.PHONY: all build deps tools lint unit test run bench soak clean
all: build

include $(sort $(wildcard mk/*.mk))

build: $(addprefix bin/,$(CMDS))

# Go's own cache makes these cheap to rerun; FORCE keeps stamps honest.
bin/%: FORCE
	@mkdir -p bin
	$(GOBUILD) -o $@ ./cmd/$*
.PHONY: FORCE
FORCE:

deps:
	@missing=""; for p in $(sort $(DEB_PKGS)); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then \
		echo "deps: no apt package lists yet (apt-get download needs them)"; \
		$(SUDO) apt-get update -qq; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tools: $(TOOLS)/staticcheck
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: tools
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

unit:
	$(GO) test -count=1 -short ./...

# The whole suite: lint, then every Go test, unit and end-to-end. The
# end-to-end tests find the binaries and guests in bin/ and test/guests/.
# Tests are stamped like the binaries, so that abi.Current() in a test is
# the build that bin/hv and bin/xl report.
test: deps build lint $(TEST_PREREQS)
	XENO_REQUIRE_TOOLS=1 XENO_BIN=$(CURDIR)/bin $(GO) test -ldflags '$(LDFLAGS)' -count=1 -timeout 70m ./...

bench: deps build $(TEST_PREREQS) $(BENCH_TARGETS)

clean:
	rm -rf bin

run: deps build $(TEST_PREREQS)
	XENO_BIN=$(CURDIR)/bin sh scripts/demo.sh
