# Coalesce: make run (serve models/ on :8080, metrics on :9090), make test.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X github.com/coalesce-ml/coalesce/internal/app.commit=$(COMMIT)
BIN       := bin/coalesce

.PHONY: models run build test test-short test-deploy test-image image lint fuzz bench bench-go proto profiles clean

# models/wide-mlp's 84 MB of weights are generated, not committed: a
# seeded Go program writes the same bytes every time (no Python needed).
WIDE_MLP := models/wide-mlp/1/model.onnx
$(WIDE_MLP):
	$(GO) run ./models/wide-mlp/gen
models: $(WIDE_MLP)

build: $(WIDE_MLP)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/coalesce

run: build
	./$(BIN) serve --config configs/coalesce.yaml --models.default digits-mlp

# Every test, with the race detector, then the tests that skip under it
# (allocation and memory counts: the race detector drops sync.Pool items at
# random and inflates memory) without it, then a short run of every fuzz
# target, then the deploy module's tests (manifests, rules, dashboard).
NORACE_TESTS = ^(TestShadowRunAllocs|TestShadowCopyAllocs|TestRequestMetricsAllocs|TestIdleConnMemory)$$
test: $(WIDE_MLP)
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '$(NORACE_TESTS)' ./proxy/
	$(MAKE) fuzz FUZZTIME=5s
	$(MAKE) test-deploy

# deploy/ is a Go module of its own (k8s.io/api, kustomize), so that the
# server's go.mod stays lean. Its Prometheus tests need promtool and
# prometheus (Debian's prometheus package) and skip, saying so, without them.
test-deploy:
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

# The container image (Dockerfile), built with buildah, docker or podman,
# whichever is installed. With buildah no registry is needed:
# deploy/image/build.sh assembles the build stage's base from the local Go
# installation. GO_IMAGE=docker.io/library/golang:1.26 uses the official
# image instead.
IMAGE ?= localhost/coalesce:$(VERSION)
image: $(WIDE_MLP)
	GO=$(GO) sh deploy/image/build.sh $(IMAGE) $(VERSION) $(COMMIT)

# Builds the image and runs it chrooted as its non-root user
# (deploy/image_test.go): /predict, healthcheck, SIGTERM. Needs buildah and
# root; a minute or two on a fresh machine, so not part of make test.
test-image: $(WIDE_MLP)
	cd deploy && COALESCE_IMAGE_TEST=1 $(GO) test -count=1 -run '^TestImage$$' -v .

test-short: $(WIDE_MLP)
	$(GO) test -count=1 ./...

FUZZTIME ?= 30s
fuzz:
	GO=$(GO) sh .ci/fuzz.sh $(FUZZTIME)

# actionlint checks .github/workflows (syntax, expressions, and the shell
# of run: steps when shellcheck is installed).
ACTIONLINT ?= github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
lint:
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(ACTIONLINT)

# The standard load-test suite (bench/scenarios/standard.yaml): a few minutes;
# the report and charts go to bench/results/<timestamp>/.
BENCH_ARGS ?=
bench: $(WIDE_MLP)
	BENCH_COMMAND="make bench $(BENCH_ARGS)" $(GO) run ./bench suite $(BENCH_ARGS)

# Go micro-benchmarks of every package.
bench-go: $(WIDE_MLP)
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The Go code of the KServe V2 gRPC API (proto/grpc_predict_v2.proto),
# committed: regenerate after changing the proto or a pinned version. The
# plugins come from the Go module proxy at the versions below; protoc is
# Debian's protobuf-compiler (checked, since its output embeds its version).
PROTOC_VERSION        := 3.21.12
PROTOC_GEN_GO         := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC    := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
PROTO_BIN             := $(CURDIR)/bin/proto
proto:
	@protoc --version | grep -qx 'libprotoc $(PROTOC_VERSION)' || { echo "want protoc $(PROTOC_VERSION) (apt-get install protobuf-compiler), have: $$(protoc --version)"; exit 1; }
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(PROTO_BIN):$$PATH protoc -I proto \
		--go_out=proto/inferencepb --go_opt=paths=source_relative \
		--go-grpc_out=proto/inferencepb --go-grpc_opt=paths=source_relative \
		proto/grpc_predict_v2.proto

# Drift reference profiles of the shipped models (models/*/profile.json),
# from their golden rows; cmd/coalesce's tests check they are current.
PROFILED := cancer-xgb digits-cnn digits-cnnbn digits-mlp iris-logreg text-transformer wide-mlp wine-forest wine-linear
profiles: build
	for m in $(PROFILED); do ./$(BIN) profile --model $$m --data models/$$m/golden.json || exit 1; done

clean:
	rm -rf bin
