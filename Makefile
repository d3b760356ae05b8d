# kmem — the commands the README documents. `make test` is what CI runs.
SHELL := /bin/bash

CARGO ?= cargo

.PHONY: test host-test outside-kernel lint deps toolchain bench bench-smoke check miri asan fuzz firmware-bench

## test: every test — host tests, format, clippy for every target, and the QEMU self-tests.
test: deps host-test lint

## host-test: the allocator core's unit, model and stress tests on the host, and a
## seconds-long smoke run of the benchmark program.
host-test: toolchain
	$(CARGO) test --release --features hosted
	$(MAKE) bench-smoke outside-kernel

## outside-kernel: the example kernel that uses kmem as a library (examples/outside-kernel),
## run on the host; then linked for aarch64 and x86_64 bare metal, where it defines no
## global allocator (the link fails if kmem needs one).
outside-kernel: toolchain
	$(CARGO) run --release -p outside-kernel
	$(CARGO) build --release -p outside-kernel --target aarch64-unknown-none
	$(CARGO) build --release -p outside-kernel --target x86_64-unknown-none

## bench: kmem against its peers in one process; writes docs/bench.json and docs/bench.svg
## (BENCHMARKS.md explains the method). Not part of `make test`. With BOARD=... on the
## command line: the in-firmware benchmark on that board (kmem, talc, linked_list_allocator).
ifeq ($(origin BOARD),command line)
bench: firmware-bench
else
bench: toolchain
	$(CARGO) bench --features hosted --bench alloc -- --json docs/bench.json
	python3 scripts/bench_svg.py docs/bench.json docs/bench.svg
endif

## bench-smoke: every workload of the benchmark program, shrunk 50x (a few seconds).
bench-smoke: toolchain
	$(CARGO) bench --features hosted --bench alloc -- --quick >/dev/null

## lint: rustfmt, clippy on the host and every bare-metal target, and the library's
## dependency tree: no board, firmware or benchmark peer in it.
lint: toolchain
	$(CARGO) fmt --all --check
	$(CARGO) clippy --features hosted --all-targets -- -D warnings
	$(CARGO) clippy -p kmem --lib --target aarch64-unknown-none -- -D warnings
	$(CARGO) clippy -p kmem --lib --target x86_64-unknown-none -- -D warnings
	$(CARGO) clippy -p outside-kernel -- -D warnings
	$(CARGO) clippy -p outside-kernel --target aarch64-unknown-none -- -D warnings
	@deps=$$($(CARGO) tree -e normal -p kmem --target aarch64-unknown-none --prefix none); \
	if echo "$$deps" | grep -E '^(talc|linked_list_allocator|dtoolkit|embedded-hal|kmem-firmware) '; then \
		echo "the kmem library depends on the above: it must not"; exit 1; fi

## toolchain: the Rust toolchain, targets and components rust-toolchain.toml names.
toolchain:
	@rustup toolchain install >/dev/null

## deps: the toolchain, plus QEMU 10 and dtc from Debian packages when they are missing.
deps: toolchain
	@scripts/install-qemu.sh

# --- Firmware images and QEMU ----------------------------------------------------------
# BOARD picks the board (a cargo feature): virt, rpi3, rpi4 or x86_64. SMP and MEM size
# the QEMU virt and x86_64 machines; QEMU's raspi3b and raspi4b have 4 cores and fixed
# memory.
BOARD ?= virt
SMP ?= 4
MEM ?= 1G
SELFTEST_TIMEOUT ?= 120
# Extra kernel command-line words for `selftest` and `bench`, after the mode word, e.g.
# BOOTARGS="init_on_alloc=1 init_on_free=1" or BOOTARGS=kmem.debug=FZPU.
BOOTARGS ?=
# How a Pi gets its boot information under QEMU: `dtb` passes build/BOARD/BOARD.dtb (from
# boards/BOARD.dts; its console is serial1, the mini-UART, which is QEMU's second -serial),
# `atags` passes none (QEMU leaves ATAGs; the console is the PL011, QEMU's first -serial).
BOOT ?= dtb

TARGET_virt := aarch64-unknown-none
QEMU_virt = qemu-system-aarch64 -M virt -cpu cortex-a72 -smp $(SMP) -m $(MEM) -nographic -semihosting -kernel $(IMAGE)
# Semihosting exit passes the status through.
OK_STATUS_virt := 0

TARGET_rpi3 := aarch64-unknown-none
TARGET_rpi4 := aarch64-unknown-none
PI_BOARDS := rpi3 rpi4
PI_SERIAL_dtb = -dtb $(OUT)/$(BOARD).dtb -serial null -serial mon:stdio
PI_SERIAL_atags = -serial mon:stdio
PI_QEMU = -display none -semihosting -kernel $(OUT)/kernel8.img $(PI_SERIAL_$(BOOT))
QEMU_rpi3 = qemu-system-aarch64 -M raspi3b $(PI_QEMU)
QEMU_rpi4 = qemu-system-aarch64 -M raspi4b $(PI_QEMU)
OK_STATUS_rpi3 := 0
OK_STATUS_rpi4 := 0

# x86_64 boots through PVH (QEMU reads the ELF note; no bootloader). isa-debug-exit ends
# QEMU with (v << 1) | 1, never 0: the firmware writes 0x10 for success, so QEMU's 33
# means success and anything else failure. -no-reboot: a triple fault ends QEMU (with
# status 0, a failure here) instead of rebooting into a loop.
TARGET_x86_64 := x86_64-unknown-none
QEMU_x86_64 = qemu-system-x86_64 -M q35 -cpu max -no-reboot -net none \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 -smp $(SMP) -m $(MEM) -nographic -kernel $(IMAGE)
OK_STATUS_x86_64 := 33

# The boards make builds and boots, each with its TARGET_/QEMU_/OK_STATUS_ variables
# above: the same names as the firmware's list of boards (firmware/src/bsp/mod.rs), where
# each is a cargo feature (firmware/Cargo.toml).
BOARDS := virt $(PI_BOARDS) x86_64
define newline


endef

TARGET = $(TARGET_$(BOARD))
OUT = build/$(BOARD)
IMAGE = $(OUT)/kmem.elf
# llvm-objcopy from the toolchain's llvm-tools component, else the machine's.
OBJCOPY ?= $(firstword $(wildcard $(shell rustc --print sysroot 2>/dev/null)/lib/rustlib/*/bin/llvm-objcopy) llvm-objcopy)
QEMU = $(QEMU_$(BOARD))
# Runs QEMU with the given arguments and exits 0 when QEMU's status is the board's
# success status, else with QEMU's status (124 is `timeout`'s).
QEMU_STATUS = s=0; $(1) || s=$$?; \
	if [ $$s -eq $(OK_STATUS_$(BOARD)) ]; then exit 0; fi; \
	echo "qemu exited with status $$s (success is $(OK_STATUS_$(BOARD)))"; \
	exit $$(( s == 0 ? 1 : s ))

.PHONY: image run selftest qemu-test lint-firmware

## image: the release firmware for BOARD at build/BOARD/kmem.elf; for a Pi also the SD card's
## kernel8.img and config.txt, and BOARD.dtb for QEMU, in build/BOARD/.
image: toolchain
	@[ -n "$(filter $(BOARD),$(BOARDS))" ] || { echo "unknown BOARD '$(BOARD)' (boards: $(BOARDS))"; exit 2; }
	@[ -n "$(filter $(BOARD),$(PI_BOARDS))" ] || [ "$(BOOT)" = dtb ] || { echo "BOOT applies to $(PI_BOARDS) only"; exit 2; }
	$(CARGO) build --release --target $(TARGET) -p kmem-firmware --features $(BOARD) --bin kmem
	@mkdir -p $(OUT)
	cp target/$(TARGET)/release/kmem $(IMAGE)
ifneq ($(filter $(BOARD),$(PI_BOARDS)),)
	$(OBJCOPY) -O binary $(IMAGE) $(OUT)/kernel8.img
	cp boards/config.txt $(OUT)/config.txt
	dtc -q -I dts -O dtb -o $(OUT)/$(BOARD).dtb boards/$(BOARD).dts
endif

## run: boots the firmware under QEMU with the monitor on the terminal (Ctrl-A X quits).
run: image
	@$(call QEMU_STATUS,$(QEMU))

## selftest: boots with `selftest` (and BOOTARGS) in the boot arguments; the exit status
## is the suite's.
selftest: image
	@$(call QEMU_STATUS,timeout $(SELFTEST_TIMEOUT) $(QEMU) -append "selftest $(BOOTARGS)" </dev/null)

## firmware-bench: boots BOARD with `bench` (and BOOTARGS) on the command line (see
## `make bench`).
firmware-bench: image
	@$(call QEMU_STATUS,timeout $(SELFTEST_TIMEOUT) $(QEMU) -append "bench $(BOOTARGS)" </dev/null)

## qemu-test: the self-tests with 4 cores: on virt and on x86_64 (q35) with little and with
## much memory (5G puts RAM above the 4 GiB hole on x86_64), on virt once more with
## init_on_alloc and init_on_free, and on each Pi with our device tree and with ATAGs.
qemu-test: deps
	$(MAKE) selftest BOARD=virt SMP=4 MEM=128M
	$(MAKE) selftest BOARD=virt SMP=4 MEM=128M BOOTARGS="init_on_alloc=1 init_on_free=1"
	$(MAKE) selftest BOARD=virt SMP=4 MEM=2G
	$(MAKE) selftest BOARD=rpi3 BOOT=dtb
	$(MAKE) selftest BOARD=rpi3 BOOT=atags
	$(MAKE) selftest BOARD=rpi4 BOOT=dtb
	$(MAKE) selftest BOARD=rpi4 BOOT=atags
	$(MAKE) selftest BOARD=x86_64 SMP=4 MEM=512M
	$(MAKE) selftest BOARD=x86_64 SMP=4 MEM=5G

## lint-firmware: clippy for the firmware of every board on its bare-metal target.
lint-firmware: toolchain
	$(foreach b,$(BOARDS),$(CARGO) clippy --target $(TARGET_$(b)) -p kmem-firmware --features $(b) -- -D warnings$(newline))

test: qemu-test
lint: lint-firmware

# --- Deeper checks: not in `make test` (they take minutes) ------------------------------
FUZZ_SECONDS ?= 60
# The core's tests that Miri runs: the unsafe code of every layer, at sizes an
# interpreter finishes in minutes (the models shrink themselves under cfg(miri)); about
# 20 minutes in all on a 2-core machine.
MIRI_TESTS ?= mm::memmap mm::pcp slab::array slab::layout percpu buddy_model \
	bad_frees_are_refused kmalloc_and_cache_model bad_kfrees write_past_the_end \
	write_after_free double_free_while corrupted_free_list object_tags_catch \
	debug_flags_change

## check: Miri on the core's tests, AddressSanitizer on the host tests, and the fuzzer.
check: miri asan fuzz

## miri: the core's tests under Miri (installs the nightly component).
miri:
	rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null
	MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-permissive-provenance" \
		cargo +nightly miri test --features hosted --lib -- $(MIRI_TESTS)

## asan: every host test with AddressSanitizer.
asan: toolchain
	RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=address $(CARGO) test --release \
		--target x86_64-unknown-linux-gnu --features hosted --target-dir target/asan

## fuzz: the action-list fuzzer with a shadow model, for FUZZ_SECONDS (installs cargo-fuzz).
fuzz:
	rustup toolchain install nightly --profile minimal >/dev/null
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz run actions -- -max_total_time=$(FUZZ_SECONDS)

