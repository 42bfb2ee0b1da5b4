# Coalesce: make run (serve models/ on :8080, metrics on :9090), make test.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN       := bin/coalesce

.PHONY: run build test test-short lint fuzz bench bench-go profiles clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/coalesce

run: build
	./$(BIN) serve --config configs/coalesce.yaml --models.default digits-mlp

# Every test, with the race detector, then a short run of every fuzz target.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz FUZZTIME=5s

test-short:
	$(GO) test -count=1 ./...

FUZZTIME ?= 30s
fuzz:
	GO=$(GO) sh .ci/fuzz.sh $(FUZZTIME)

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The standard load-test suite (bench/scenarios/standard.yaml): a few minutes;
# the report and charts go to bench/results/<timestamp>/.
BENCH_ARGS ?=
bench:
	BENCH_COMMAND="make bench $(BENCH_ARGS)" $(GO) run ./bench suite $(BENCH_ARGS)

# Go micro-benchmarks of every package.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Drift reference profiles of the shipped models (models/*/profile.json),
# from their golden rows; cmd/coalesce's tests check they are current.
PROFILED := cancer-xgb digits-cnnbn digits-mlp iris-logreg wine-forest wine-linear
profiles: build
	for m in $(PROFILED); do ./$(BIN) profile --model $$m --data models/$$m/golden.json || exit 1; done

clean:
	rm -rf bin
