# xspan: the two commands of the README are `make demo` and `make test`. Both run the
# set-up first (libtorch, the patched gotch in .build/, go.work); it is quick when done.
GO ?= go
export GOFLAGS := -buildvcs=false
# OpenBLAS falls back to its slowest kernels on CPUs that report a generic model name;
# name the core type from the CPU's flags unless the machine already sets one (the xspan
# binary does the same by itself; this covers the test binaries).
OPENBLAS_CORETYPE ?= $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | grep -qw avx512bw && grep -m1 '^flags' /proc/cpuinfo | grep -qw avx512vl && echo SkylakeX || (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | grep -qw avx2 && echo Haswell))
export OPENBLAS_CORETYPE
# OpenMP threads spin while they wait; under CPU contention that stalls batched products
# 10-20x. Sleep instead (the xspan binary sets the same by itself).
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

# The version make build links into xspan (xspan version, --version, checkpoint headers,
# exports): git describe in a clone, the VERSION file in a git archive (scripts/version.sh).
XSPAN_VERSION ?= $(shell ./scripts/version.sh)
XSPAN_LDFLAGS := -X xspan/internal/torchrt.buildVersion=$(XSPAN_VERSION)

.PHONY: setup build test demo demo-clean bench vet screenshot chromium

setup:
	@GOWORK=off $(GO) run ./internal/torchsetup

# build writes xspan and, beside it, the native-source bundle xspan-native/: gotch's patched
# C++ and ours, and build-native, a static copy of the set-up that builds libxspantorch.so
# into xspan-native/ against the machine's libtorch, with no Go (see README, GPU).
build: setup
	$(GO) build -ldflags '$(XSPAN_LDFLAGS)' -o xspan ./cmd/xspan
	@rm -rf xspan-native.tmp && mkdir -p xspan-native.tmp && cp -r .build/native/src xspan-native.tmp/src
	CGO_ENABLED=0 GOWORK=off $(GO) build -ldflags=-s -o xspan-native.tmp/build-native ./internal/torchsetup
	@rm -rf xspan-native && mv xspan-native.tmp xspan-native
	@echo "built ./xspan and ./xspan-native/ (on another machine: xspan-native/build-native, then ./xspan version)"

vet: setup
	$(GO) vet ./...

# chromium: the browser test of the page at / (generate/browser_test.go) drives Debian's
# chromium; install it when missing and root. Where it cannot be installed, the target
# still succeeds and the test skips, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "chromium could not be installed: the browser test will skip"

# test also runs the GPU proof script's CPU path (scripts/gpu-check.sh --device cpu --quick)
# on the binary that make build gives, before the Go tests.
test: build chromium
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.build/*'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	./scripts/gpu-check.sh --device cpu --quick --out out/gpu-check-quick
	$(GO) test -count=1 -timeout 40m ./...

demo: build
	./scripts/demo.sh

# screenshot: the README's docs/page.png (the page in headless chromium after a generation)
# and docs/spans.png (xspan spans), from the demo's run (trained first when missing).
screenshot: build
	./scripts/screenshot.sh

demo-clean:
	rm -rf out/demo

bench: build
	./xspan bench --quick
