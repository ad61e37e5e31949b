# sluice: `make run` and `make test` are the whole set-up on a fresh Debian/Ubuntu machine
# (Rust >= 1.85; `make test` and `make demo` install their peers with apt-get, as root).

CARGO      ?= cargo
NPROC      := $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1)
FUZZ_SECS  ?= 60
# Extra libFuzzer flags for `make fuzz`, e.g. FUZZ_ARGS=-max_len=16500.
FUZZ_ARGS  ?=
# Parses per batch for `make bench-parse` (5 batches per fixture, the median is reported).
PARSE_BENCH_ITERS ?= 20000
# Debian packages the tests talk to (real peers, no mocks), as COMMAND:PACKAGE.
TEST_TOOLS := haproxy:haproxy tinyproxy:tinyproxy openssl:openssl curl:curl socat:socat nc:netcat-openbsd promtool:prometheus prometheus:prometheus chromium:chromium tmux:tmux strace:strace
# What `make demo` runs besides sluice.
DEMO_TOOLS := haproxy:haproxy openssl:openssl curl:curl python3:python3

.PHONY: all build release test soak lint fmt fuzz bench bench-upgrade bench-parse bench-parse-instructions bench-log-instructions run demo deps clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs what the integration tests need, with apt-get, only when it is missing: says
# what and why first, waits for another apt/dpkg's lock, and stops with the command to run
# when not root (scripts/deps).
deps:
	@scripts/deps $(TEST_TOOLS)

test: deps lint
	$(CARGO) build --release
	SLUICE_BIN=$(CURDIR)/target/release/sluice $(CARGO) test --release -- --test-threads=2

# The long soak (tests/soak.rs, skipped by `make test`): SOAK_SESSIONS (default 1000000)
# sessions, SOAK_CONCURRENCY (default 64) at a time, every byte checked both ways.
soak: release
	SLUICE_BIN=$(CURDIR)/target/release/sluice $(CARGO) test --release --test soak -- --ignored --nocapture

# FreeBSD is type-checked on every run (kqueue, SO_REUSEPORT_LB and cpuset paths compile
# only there); the target's standard library is installed once, when missing.
FREEBSD_TARGET := x86_64-unknown-freebsd

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --release -- -D warnings
	rustup target list --installed | grep -q $(FREEBSD_TARGET) || rustup target add $(FREEBSD_TARGET)
	$(CARGO) clippy --target $(FREEBSD_TARGET) --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Each fuzz target for FUZZ_SECS seconds, one after the other, in one process (needs
# cargo-fuzz and the nightly toolchain). Corpora start from fixtures/ (fuzz/seed.sh) and
# grow in fuzz/corpus/<target>/; crashes land in fuzz/artifacts/<target>/. Neither is in git.
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	fuzz/seed.sh
	cd fuzz && for t in $$($(CARGO) +nightly fuzz list); do \
	  echo "== fuzz $$t for $(FUZZ_SECS) s"; \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECS) -print_final_stats=1 $(FUZZ_ARGS) || exit 1; \
	done

# PROXY header + ClientHello parse time per fixture (bench/parse.rs, bench/PARSE.md).
bench-parse:
	PARSE_BENCH_ITERS=$(PARSE_BENCH_ITERS) $(CARGO) bench --bench parse

# The same parses counted in instructions under callgrind (needs valgrind).
bench-parse-instructions:
	@scripts/deps valgrind:valgrind
	CARGO="$(CARGO)" bench/parse-instructions

# User-space instructions per log line (bench/log.rs) under callgrind, per logger mode.
bench-log-instructions:
	@scripts/deps valgrind:valgrind
	CARGO="$(CARGO)" bench/log-instructions

bench: deps release
	bench/run

# The zero-downtime test under a heavier load, with the counts.
bench-upgrade: release
	bench/upgrade

# The supervisor and one worker per core on the defaults (ENVOY_* variables override them).
# Sessions go to ENVOY_UPSTREAM (localhost:10000 unless set): start something there, or see
# `make demo` for a whole chain on loopback.
run: release
	@echo "sluice on $${ENVOY_IP:-127.0.0.1}:$${ENVOY_PORT:-8000} -> upstream $${ENVOY_UPSTREAM:-localhost:10000} (ENVOY_UPSTREAM; or try: make demo)"
	target/release/sluice run

demo: release
	@scripts/deps $(DEMO_TOOLS)
	scripts/demo

clean:
	$(CARGO) clean
