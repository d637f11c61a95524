# xspan: the two commands of the README are `make demo` and `make test`. Both run the
# set-up first (libtorch, the patched gotch in .build/, go.work); it is quick when done.
GO ?= go
export GOFLAGS := -buildvcs=false

.PHONY: setup build test demo demo-clean bench vet

setup:
	@GOWORK=off $(GO) run ./internal/torchsetup

build: setup
	$(GO) build -o xspan ./cmd/xspan

vet: setup
	$(GO) vet ./...

test: setup
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.build/*'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

demo: build
	./scripts/demo.sh

demo-clean:
	rm -rf out/demo

bench: build
	./xspan bench --quick
