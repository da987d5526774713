# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go

.PHONY: run test race e2e bench bench-macro load fuzz vet lint build docker

run: ## Run the bridge on its embedded NATS default (secret for local tries only).
	MISTBRIDGE_WEBHOOK_SECRET=$${MISTBRIDGE_WEBHOOK_SECRET:-change-me} $(GO) run ./cmd/mistbridge

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mistbridge ./cmd/mistbridge
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mistsend ./cmd/mistsend

test: ## Everything but real brokers: needs only Go.
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'Allocs' ./bridge/... ./sinks/...   # allocation budgets: -race makes sync.Pool drop items

e2e: ## Real Apache Kafka (KRaft, from Maven Central jars) and nats-server processes.
	bash test/e2e/run.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./codec/ ./bridge/... ./sinks/...

bench-macro: ## Ceiling vs the bridge on embedded JetStream, on kfake (3 ack modes), on E2E_KAFKA/E2E_NATS when set; docs/performance.md.
	$(GO) run ./test/macro

load: ## Load figures: bridge vs a read-and-200 handler, embedded NATS and kfake, plus 10x overload.
	$(GO) run ./test/macro -targets ceiling,nats,kafka -overload 10

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzSplit -fuzztime 30s ./codec/
