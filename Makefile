# caddy-jwt-grant: `make run` serves Caddyfile.example, `make test` runs
# every test. Both work on a fresh machine: what they need is installed here.

GO        ?= go
REDIS     ?= redis-server
DEMO_KEY  := demo/issuer

FUZZTIME  ?= 30s

.PHONY: build run test bench bench-scale fuzz vet deps clean

## build: ./caddy, the custom build described by xcaddy.json
build:
	$(GO) run ./internal/cmd/xbuild

## run: build, make the demo issuer key on first run, serve Caddyfile.example
run: build
	@test -f $(DEMO_KEY).key || ./caddy jwt-grant keygen --out $(DEMO_KEY)
	./caddy run --config Caddyfile.example --adapter caddyfile

## deps: what the tests need besides Go: a redis-server binary
deps:
	@command -v $(REDIS) >/dev/null 2>&1 || { \
		echo "installing redis-server (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}
	@command -v $(REDIS) >/dev/null 2>&1 || { echo "redis-server is required for the tests" >&2; exit 1; }

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | tee /dev/stderr)"

## test: vet, then every test with the race detector (real redis-server
## processes are started by the tests on free ports)
test: deps vet
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: one load-generator run against ./caddy (respond, the token
## exchange, jwt_grant_auth; memory and Redis; three rounds, each on a
## fresh Caddy, the table showing each row's median round and the
## exchanges against their floor) with a CPU profile of the RS256
## exchange on Redis, then the Go micro-benchmarks of the hot path;
## the results go into BENCHMARKS.md. BENCH_FLAGS adds loadgen flags, e.g.
## BENCH_FLAGS='-clients 32 -duration 10s -rounds 5 -note "idle machine"'.
BENCH_PKGS := ./grant/ ./grant/keys/ ./grant/clientauth/ ./grant/memstore/ ./grant/redisstore/
bench: deps build
	$(GO) run ./internal/cmd/loadgen -caddy ./caddy -out BENCHMARKS.md -profile bench-exchange.pprof $(BENCH_FLAGS)
	$(GO) tool pprof -top -nodecount 30 bench-exchange.pprof > bench-profile.txt
	$(GO) run ./internal/cmd/loadgen -record profile -out BENCHMARKS.md < bench-profile.txt
	$(GO) test -run '^$$' -bench . -benchmem -count 1 $(BENCH_PKGS) > bench-micro.txt
	$(GO) run ./internal/cmd/loadgen -record micro -out BENCHMARKS.md < bench-micro.txt

## bench-scale: how cost grows (issue 9): the exchange with 1, 100 and
## 1,000 trusted issuers and 10 and 10,000 clients, config load time,
## jwt_grant_auth with 10 and 1,000,000 live tokens on each store and
## Caddy's resident memory as the memory store fills, RESP2 against RESP3;
## then the memory store's bytes per live token over 1,000,000 grants.
## About 15 minutes on 2 cores; results into BENCHMARKS.md. SCALE_FLAGS
## adds loadgen flags, e.g. SCALE_FLAGS='-live 200000 -fill-timeout 3m'.
bench-scale: deps build
	$(GO) run ./internal/cmd/loadgen -scale -caddy ./caddy -out BENCHMARKS.md $(SCALE_FLAGS)
	$(GO) test -run '^$$' -bench LiveTokenBytes -benchtime 1000000x -count 1 ./grant/memstore/ > bench-live.txt
	grep -v "^cpu:" bench-live.txt | $(GO) run ./internal/cmd/loadgen -record livebytes -out BENCHMARKS.md

## fuzz: each fuzz target for FUZZTIME (default 30s), one after the other;
## `make test` already runs their seed corpora (testdata/fuzz); -timeout 0
## because go test's default 10m timeout would also end a long fuzz run
FUZZ_TARGETS := FuzzAssertion:./grant FuzzTokenEndpoint:./grant FuzzBearer:./grant \
	FuzzJWKS:./grant/keys FuzzCaddyfile:./caddymodule
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) -timeout 0 "$${t#*:}"; \
	done

clean:
	rm -f caddy bench-exchange.pprof bench-profile.txt bench-micro.txt bench-live.txt
