# sluice: `make run` and `make test` are the whole set-up on a fresh Debian/Ubuntu machine.

CARGO      ?= cargo
NPROC      := $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1)
FUZZ_SECS  ?= 60
# Debian packages the tests talk to (real peers, no mocks).
TEST_TOOLS := haproxy:haproxy tinyproxy:tinyproxy openssl:openssl curl:curl socat:socat nc:netcat-openbsd promtool:prometheus

.PHONY: all build release test soak lint fmt fuzz bench bench-upgrade run demo deps clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs what the integration tests need, with apt-get, only when it is missing.
deps:
	@missing=""; for t in $(TEST_TOOLS); do \
	  cmd=$${t%%:*}; pkg=$${t##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: deps lint
	$(CARGO) build --release
	SLUICE_BIN=$(CURDIR)/target/release/sluice $(CARGO) test --release -- --test-threads=2

# The long soak (tests/soak.rs, skipped by `make test`): SOAK_SESSIONS (default 1000000)
# sessions, SOAK_CONCURRENCY (default 64) at a time, every byte checked both ways.
soak: release
	SLUICE_BIN=$(CURDIR)/target/release/sluice $(CARGO) test --release --test soak -- --ignored --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --release -- -D warnings

fmt:
	$(CARGO) fmt --all

# Each fuzz target for FUZZ_SECS seconds (needs cargo-fuzz and the nightly toolchain).
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $$($(CARGO) +nightly fuzz list); do \
	  mkdir -p corpus/$$t && cp -n ../fixtures/*.bin corpus/$$t/ 2>/dev/null; \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECS) || exit 1; \
	done

bench: release
	bench/run

# The zero-downtime test under a heavier load, with the counts.
bench-upgrade: release
	bench/upgrade

# The supervisor and one worker per core on the defaults (ENVOY_* variables override them).
run: release
	target/release/sluice run

demo: deps release
	scripts/demo

clean:
	$(CARGO) clean
