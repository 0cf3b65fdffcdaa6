# Strait build and test entry points. `make test` is the one command that runs every test.
GO ?= go
BIN := bin

.PHONY: all build images test test-deps vet fmt-check bench clean

all: build

# strait-proxy is built without cgo: a static binary maps no libc and saves ~1.7 MiB of RSS per
# proxy (docs/performance.md); Go's own DNS resolver serves its DNS clusters.
build:
	$(GO) build -o $(BIN)/ $$($(GO) list ./cmd/... | grep -v '/cmd/strait-proxy$$')
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/strait-proxy

# images builds the straitd and proxy images (linux/amd64 and linux/arm64, FROM scratch) and
# pushes them as $(REGISTRY)/straitd:TAG and $(REGISTRY)/proxy:TAG, the names
# `strait install --registry $(REGISTRY)` uses. TAG defaults to the binaries' version;
# INSECURE=1 for a plain-HTTP registry; OCI_LAYOUT=DIR writes image layouts instead of pushing.
images:
	@if [ -z "$(REGISTRY)$(OCI_LAYOUT)" ]; then echo "usage: make images REGISTRY=registry.example.com/strait [TAG=...] [INSECURE=1] (or OCI_LAYOUT=DIR)"; exit 2; fi
	$(GO) run ./tools/images $(if $(REGISTRY),-registry $(REGISTRY)) $(if $(OCI_LAYOUT),-oci-layout $(OCI_LAYOUT)) \
		$(if $(TAG),-tag $(TAG)) $(if $(INSECURE),-insecure) $(if $(PLATFORMS),-platforms $(PLATFORMS))

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# test runs every test: formatting, vet, the dependency rule for strait-proxy (no Kubernetes,
# storage or control plane packages; no go-control-plane or cncf/xds: it decodes xDS into its
# trimmed types, proxy/xdspb; no grpc-go: its gRPC calls, ADS, the CSR and health probes, go
# through internal/grpclite; no cel-go: proxy/attributes evaluates CEL itself), and go test
# (which also runs each fuzz target over its committed seed corpus).
test: test-deps fmt-check vet
	@if $(GO) list -deps ./cmd/strait-proxy | grep -E '^(k8s.io/client-go|k8s.io/api/|k8s.io/apimachinery|go.etcd.io/bbolt|github.com/prometheus/client_golang|github.com/strait-mesh/strait/controlplane|github.com/envoyproxy/go-control-plane|github.com/cncf/xds|google.golang.org/grpc|github.com/google/cel-go|cel.dev/expr)'; then \
		echo "strait-proxy must not link the packages above"; exit 1; fi
	$(GO) test -count=1 -timeout 20m ./...

# test-deps installs the Debian packages the end-to-end tests use (root and apt-get), or says
# which are missing.
test-deps:
	@bash .ci/test-deps

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
