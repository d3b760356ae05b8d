# kmem — the commands the README documents. `make test` is what CI runs.
SHELL := /bin/bash

CARGO ?= cargo

.PHONY: test host-test lint deps toolchain

## test: every test — host tests, format, clippy for every target, and the QEMU self-tests.
test: deps host-test lint

## host-test: the allocator core's unit, model and stress tests on the host.
host-test: toolchain
	$(CARGO) test --release --features hosted

## lint: rustfmt, and clippy on the host and every bare-metal target.
lint: toolchain
	$(CARGO) fmt --check
	$(CARGO) clippy --features hosted --all-targets -- -D warnings
	$(CARGO) clippy --lib --target aarch64-unknown-none -- -D warnings
	$(CARGO) clippy --lib --target x86_64-unknown-none -- -D warnings

## toolchain: the Rust toolchain, targets and components rust-toolchain.toml names.
toolchain:
	@rustup toolchain install >/dev/null

## deps: the toolchain, plus QEMU 10 and dtc from Debian packages when they are missing.
deps: toolchain
	@scripts/install-qemu.sh
