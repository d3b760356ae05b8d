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
## run on the host; then linked for aarch64, x86_64 and riscv64 bare metal, where it
## defines no global allocator (the link fails if kmem needs one).
outside-kernel: toolchain
	$(CARGO) run --release -p outside-kernel
	$(CARGO) build --release -p outside-kernel --target aarch64-unknown-none
	$(CARGO) build --release -p outside-kernel --target x86_64-unknown-none
	$(CARGO) build --release -p outside-kernel --target riscv64gc-unknown-none-elf

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
	$(CARGO) clippy -p kmem --lib --target riscv64gc-unknown-none-elf -- -D warnings
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
# BOARD picks the board (a cargo feature): virt, rpi3, rpi4, x86_64 or riscv64. SMP and
# MEM size the QEMU virt, x86_64 and riscv64 machines; QEMU's raspi3b and raspi4b have 4
# cores and fixed memory.
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

# riscv64 boots in S-mode from OpenSBI (QEMU's -bios default), which passes the hart id
# and the DTB. The firmware exits through the sifive,test0 finisher the DTB names, which
# passes the status through (SBI's system reset would always give 0).
TARGET_riscv64 := riscv64gc-unknown-none-elf
QEMU_riscv64 = qemu-system-riscv64 -M virt -bios default -smp $(SMP) -m $(MEM) -nographic -kernel $(IMAGE)
OK_STATUS_riscv64 := 0

# The boards make builds and boots, each with its TARGET_/QEMU_/OK_STATUS_ variables
# above: the same names as the firmware's list of boards (firmware/src/bsp/mod.rs), where
# each is a cargo feature (firmware/Cargo.toml).
BOARDS := virt $(PI_BOARDS) x86_64 riscv64
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

.PHONY: image run selftest qemu-test mte-test hostile-test monitor-test boot-test lint-firmware

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

## qemu-test: the self-tests with 4 cores: on virt, on x86_64 (q35) and on riscv64 with
## little and with much memory (5G puts RAM above the 4 GiB hole on x86_64; 2G fills
## riscv64's DMA32 zone), on virt once more with init_on_alloc and init_on_free, on virt
## with MTE (mte-test), and on each Pi with our device tree and with ATAGs; then numa-test
## (16 cores on two NUMA nodes), x2apic-test (an x86_64 core with APIC id 0x100, and 260),
## hostile-test and boot-test: boots with hostile input that must end one known way.
qemu-test: deps
	$(MAKE) selftest BOARD=virt SMP=4 MEM=128M
	$(MAKE) selftest BOARD=virt SMP=4 MEM=128M BOOTARGS="init_on_alloc=1 init_on_free=1"
	$(MAKE) mte-test
	$(MAKE) selftest BOARD=rpi3 BOOT=dtb
	$(MAKE) selftest BOARD=rpi4 BOOT=dtb
	$(MAKE) selftest BOARD=rpi4 BOOT=atags
	$(MAKE) selftest BOARD=x86_64 SMP=4 MEM=512M
	$(MAKE) selftest BOARD=riscv64 SMP=4 MEM=128M
	$(MAKE) selftest BOARD=riscv64 SMP=4 MEM=2G
	$(MAKE) numa-test
	$(MAKE) x2apic-test
	@# virt at 2G, rpi3 with ATAGs and x86_64 at 5G: in hostile-test, with hostile
	@# boot arguments.
	$(MAKE) hostile-test
	$(MAKE) boot-test

## mte-test: the self-tests on virt with MTE (QEMU's `-M virt,mte=on -cpu max`, 2 cores,
## 256M), where the MTE tests must run, not skip as on the cortex-a72 runs.
mte-test: deps
	$(MAKE) image BOARD=virt
	$(EXPECT_BOOT) -n virt-mte -t $(SELFTEST_TIMEOUT) \
		-e '^test mte_out_of_bounds_on_every_core \.\.\. ok$$' \
		-e '^selftest: [0-9]+ passed, 0 failed$$' -x 'skipped' \
		-- qemu-system-aarch64 -M virt,mte=on -cpu max -smp 2 -m 256M -nographic -semihosting \
		-kernel build/virt/kmem.elf -append selftest

# Two NUMA nodes of $(1) each, with cores $(2) and $(3), 20 apart: QEMU puts numa-node-id
# and a distance map in virt's device tree, an SRAT and a SLIT in x86_64's ACPI tables.
NUMA_2 = -object memory-backend-ram,id=m0,size=$(1) -object memory-backend-ram,id=m1,size=$(1) \
	-numa node,nodeid=0,cpus=$(2),memdev=m0 -numa node,nodeid=1,cpus=$(3),memdev=m1 \
	-numa dist,src=0,dst=1,val=20
VIRT_GICV3 = qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -nographic -semihosting \
	-kernel build/virt/kmem.elf
# How long a many-core self-test run may take: under TCG on a 2-core host, 16 cores take
# about a minute, 64 cores several.
NUMA_TIMEOUT ?= 300
NUMA_64_TIMEOUT ?= 1800

.PHONY: numa-test numa-64 smp-256

## numa-test: the self-tests with 16 cores on two NUMA nodes of 128 MiB (cores 0-7 and
## 8-15): on virt with a GICv3 (redistributors, the ICC_* interface) and on x86_64 (SRAT,
## SLIT, x2APIC where offered); each must bring all 16 up and report both nodes.
numa-test: deps
	$(MAKE) image BOARD=virt
	$(EXPECT_BOOT) -n virt-gicv3-16-numa -t $(NUMA_TIMEOUT) -e '^smp: 16 cpus online$$' \
		-e '^node 0: cpus 0-7, memory 0x40000000-0x47ffffff \(128 MiB\), distances 10 20$$' \
		-e '^node 1: cpus 8-15, memory 0x48000000-0x4fffffff \(128 MiB\), distances 20 10$$' \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(VIRT_GICV3) -smp 16 -m 256M $(call NUMA_2,128M,0-7,8-15) -append selftest
	$(MAKE) image BOARD=x86_64
	$(EXPECT_BOOT) -n x86_64-16-numa -s $(OK_STATUS_x86_64) -t $(NUMA_TIMEOUT) \
		-e '^smp: 16 cpus online$$' \
		-e '^node 0: cpus 0-7, memory 0x0-0x9ffff \(640 KiB\), 0x100000-0x7ffffff \(127 MiB\), distances 10 20$$' \
		-e '^node 1: cpus 8-15, memory 0x8000000-0xfffffff \(128 MiB\), distances 20 10$$' \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(X86_QEMU) -smp 16 -m 256M $(call NUMA_2,128M,0-7,8-15) -append selftest

## x2apic-test: the self-tests on x86_64 with a core whose local APIC id is past 255
## (0x100): two cores on socket 0 of two 256-core sockets and one added on socket 1, each
## socket a NUMA node. Only x2APIC reaches it; the MADT lists it in an x2APIC entry, the
## SRAT in an x2APIC affinity entry. It must come up, answer to that id, and be node 1's.
## Then 260 cores (APIC ids 0-259, from 255 in x2APIC entries), booted with
## kmem.test=boot: kmem must say it takes 256 of them, and bring those up.
.PHONY: x2apic-test
X2APIC_CPUS = -smp 2,sockets=2,cores=256,threads=1,maxcpus=512 \
	-device max-x86_64-cpu,socket-id=1,core-id=0,thread-id=0
x2apic-test: deps
	$(MAKE) image BOARD=x86_64
	$(EXPECT_BOOT) -n x86_64-x2apic -s $(OK_STATUS_x86_64) -t $(SELFTEST_TIMEOUT) \
		-e '^smp: 3 cpus online$$' -e '^  local APIC ids \(x2APIC\): 0: 0x0 1: 0x1 2: 0x100$$' \
		-e '^node 1: cpus 2, memory 0x8000000-0xfffffff \(128 MiB\), distances 20 10$$' \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(X86_QEMU) $(X2APIC_CPUS) -m 256M $(call NUMA_2,128M,0-255,256-511) -append selftest
	$(EXPECT_BOOT) -n x86_64-260-cpus -s $(OK_STATUS_x86_64) -t $(SELFTEST_TIMEOUT) \
		-f "cpus: the tree lists 260, kmem brings up at most 256" -e '^smp: 256 cpus online$$' \
		-f "boot test: 256 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(X86_QEMU) -smp 260 -m 1G -append kmem.test=boot

## numa-64: the self-tests with 64 cores on virt (GICv3), two NUMA nodes of 256 MiB.
## Not in `make test`: it takes minutes under TCG.
numa-64: deps
	$(MAKE) image BOARD=virt
	$(EXPECT_BOOT) -n virt-gicv3-64-numa -t $(NUMA_64_TIMEOUT) -e '^smp: 64 cpus online$$' \
		-e '^node 0: cpus 0-31, memory 0x40000000-0x4fffffff \(256 MiB\), distances 10 20$$' \
		-e '^node 1: cpus 32-63, memory 0x50000000-0x5fffffff \(256 MiB\), distances 20 10$$' \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(VIRT_GICV3) -smp 64 -m 512M $(call NUMA_2,256M,0-31,32-63) -append selftest

## smp-256: 256 cores on virt (GICv3: past 123 cores QEMU puts the redistributors in a
## second region, at 256 GiB), two NUMA nodes of 512 MiB, booted with kmem.test=ticks:
## all 256 must come up, both nodes be reported, and every core take a timer interrupt
## through its own redistributor. Not in `make test`: it takes minutes under TCG (the
## self-tests would take hours).
SMP_256_TIMEOUT ?= 900
smp-256: deps
	$(MAKE) image BOARD=virt
	$(EXPECT_BOOT) -n virt-gicv3-256-numa -t $(SMP_256_TIMEOUT) -e '^smp: 256 cpus online$$' \
		-e '^node 0: cpus 0-127, memory 0x40000000-0x5fffffff \(512 MiB\), distances 10 20$$' \
		-e '^node 1: cpus 128-255, memory 0x60000000-0x7fffffff \(512 MiB\), distances 20 10$$' \
		-e '^boot test: 256 cpus online; 1 tick\(s\) on each: ok ' \
		-- $(VIRT_GICV3) -smp 256 -m 1G $(call NUMA_2,512M,0-127,128-255) -append kmem.test=ticks

## hostile-test: boots with hostile input — trees in boards/selftest/, boot arguments,
## monitor lines — and checks that each boot ends as it must (passing, or stopping with a
## clear error) with the messages it must give, never hanging (scripts/expect-boot.sh;
## logs in build/hostile/). Three are qemu-test's self-test runs at their sizes, with
## boot arguments that once lost the self-tests: a byte that is not UTF-8 (the arguments
## were dropped), a 3 809-character line on the ATAGs (the list was dropped), 4 099 bytes
## on x86_64 (cut at 4 096 without a word).
EXPECT_BOOT = scripts/expect-boot.sh
RPI3_QEMU = qemu-system-aarch64 -M raspi3b -display none -semihosting -kernel build/rpi3/kernel8.img
VIRT_QEMU = qemu-system-aarch64 -M virt -cpu cortex-a72 -nographic -semihosting -kernel build/virt/kmem.elf
X86_QEMU = qemu-system-x86_64 -M q35 -cpu max -no-reboot -net none \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 -nographic -kernel build/x86_64/kmem.elf
hostile-test: deps monitor-test
	$(MAKE) image BOARD=virt
	$(EXPECT_BOOT) -n virt-not-utf8 -t $(SELFTEST_TIMEOUT) \
		-e '^bootargs: "selftest \? after"$$' \
		-e "^note: /chosen/bootargs: 1 byte\(s\) not UTF-8 \(the first at byte 9\)" \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(VIRT_QEMU) -smp 4 -m 2G \
		-append "$$(printf 'selftest \377 after')"
	$(MAKE) image BOARD=rpi3
	@# QEMU's raspi3b puts its SMP boot stub at 0x300, inside a list this long: the line
	@# is kept up to the stub's first NUL, and what is cut or replaced is reported.
	$(EXPECT_BOOT) -n rpi3-atags-long -t $(SELFTEST_TIMEOUT) \
		-e '^boot info: ATAGs at 0x100 ' -e '^bootargs: "selftest \? 0{400}' \
		-e '^note: ATAG_CMDLINE ends at a NUL at byte [0-9]+: the [0-9]+ bytes after it' \
		-e "^note: ATAG_CMDLINE: [0-9]+ byte\(s\) not UTF-8 \(the first at byte 9\)" \
		-e '^selftest: [0-9]+ passed, 0 failed$$' -x 'mailbox \(no device tree' \
		-- $(RPI3_QEMU) -serial mon:stdio -append "$$(printf 'selftest \376 %03798d' 0)"
	dtc -q -I dts -O dtb -o build/rpi3/rpi3-cpus.dtb boards/selftest/rpi3-cpus.dts
	@# Listed CPUs that cannot start (Aff1, a release address nobody waits on, a
	@# duplicate MPIDR): each reported, and the self-tests pass on the two that run.
	$(EXPECT_BOOT) -n rpi3-cpus -t $(SELFTEST_TIMEOUT) \
		-e '^smp: cpu 1 \(hwid 0x101\) not started: refused to start: mpidr 0x101' \
		-e '^smp: cpu 2 \(hwid 0x2\) not started: did not come online in 2000 ms' \
		-e '^smp: cpu 4 \(hwid 0x3\) not started: same hardware id as cpu 3$$' \
		-e '^smp: 2 of 5 cpus online: 0 3$$' -e '^test smp_cpus_accounted \.\.\. ok' \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(RPI3_QEMU) -dtb build/rpi3/rpi3-cpus.dtb -serial null -serial mon:stdio -append selftest
	dtc -q -I dts -O dtb -o build/rpi3/rpi3-devices-on-ram.dtb boards/selftest/rpi3-devices-on-ram.dts
	@# The console and the mailbox on RAM, which once hung the boot: the waits end, the
	@# console goes quiet, and QEMU ends failing (1: the mailbox's tests fail; 0 only if
	@# the board refuses those addresses and uses its own devices) — never a timeout.
	$(EXPECT_BOOT) -n rpi3-devices-on-ram -t 60 -s 1,0 \
		-- $(RPI3_QEMU) -dtb build/rpi3/rpi3-devices-on-ram.dtb -serial mon:stdio -serial null -append selftest
	$(MAKE) image BOARD=x86_64
	@# QEMU itself overwrites hvm_start_info with a command line past about 4 100 bytes.
	$(EXPECT_BOOT) -n x86_64-cmdline -t $(SELFTEST_TIMEOUT) -s $(OK_STATUS_x86_64) \
		-e '^bootargs: "selftest \? 0+ keep"$$' \
		-e '^note: the PVH command line is longer than 4096 bytes: only the first 4091 ' \
		-e "^note: the PVH command line: 1 byte\(s\) not UTF-8 \(the first at byte 9\)" \
		-e '^selftest: [0-9]+ passed, 0 failed$$' \
		-- $(X86_QEMU) -smp 4 -m 5G \
		-append "$$(printf 'selftest \377 %04075d keep cutword' 0)"

## boot-test: boots that must end one known way, each checked by scripts/expect-boot.sh
## for its exit status and the lines it must print (logs in build/hostile/): hostile device trees
## (boards/selftest/boot-*.dts) through QEMU raspi3b, which passes a -dtb tree through but
## for /memory and /chosen/bootargs (both serial ports on the output), and through virt,
## which keeps stdout-path and the GIC (and with -numa replaces /memory by one node per
## NUMA node): bad NUMA descriptions (a CPU on a node without memory, an asymmetric or
## holed distance map) that must boot as one node saying why, and 260 CPUs, of which 256
## are taken; booted with kmem.test=boot (allocate on every
## core, validate, exit 0) where they must boot. Then a stack overflow on the boot core
## and on a secondary (kmem.test=stack-overflow[-secondary]) on virt and x86_64, which
## the guard page below each stack must turn into a report and a failing status (1 on
## virt; 3, QEMU's for the firmware's 1, on x86_64). On riscv64: a tree without /memory
## (an error, status 1), one with a hart that never starts (reported, the rest boot), and
## the two stack overflows (status 1).
BOOT_TEST = build/boot-test
PI_BOTH_SERIALS = -chardev stdio,id=con,mux=on,signal=off -serial chardev:con -serial chardev:con
RPI3_HOSTILE = qemu-system-aarch64 -M raspi3b -display none -semihosting \
	-kernel build/rpi3/kernel8.img $(PI_BOTH_SERIALS) -dtb $(BOOT_TEST)/$(1).dtb
# QEMU_virt and QEMU_x86_64 with 2 cores, 128 MiB and their board's image, whatever BOARD is.
VIRT_SMALL = $(subst -kernel $(IMAGE),-kernel build/virt/kmem.elf,$(subst -smp $(SMP) -m $(MEM),-smp 2 -m 128M,$(QEMU_virt)))
X86_SMALL = $(subst -kernel $(IMAGE),-kernel build/x86_64/kmem.elf,$(subst -smp $(SMP) -m $(MEM),-smp 2 -m 128M,$(QEMU_x86_64)))
# QEMU_riscv64 with $(1) harts, 128 MiB and its board's image, whatever BOARD is.
RISCV_SMALL = $(subst -kernel $(IMAGE),-kernel build/riscv64/kmem.elf,$(subst -smp $(SMP) -m $(MEM),-smp $(1) -m 128M,$(QEMU_riscv64)))
boot-test: deps
	$(MAKE) image BOARD=rpi3
	$(MAKE) image BOARD=virt
	$(MAKE) image BOARD=x86_64
	$(MAKE) image BOARD=riscv64
	@mkdir -p $(BOOT_TEST)
	@for t in boards/selftest/boot-*.dts; do \
		n=$$(basename $$t .dts); dtc -q -I dts -O dtb -o $(BOOT_TEST)/$${n#boot-}.dtb $$t || exit 1; done
	@$(EXPECT_BOOT) -n rpi3-deep -s 1 -t 30 \
		-f "nodes nested 303 levels deep, more than the 64 kmem reads" \
		-- $(call RPI3_HOSTILE,rpi3-deep)
	@$(EXPECT_BOOT) -n rpi3-devices -s 0 -t 30 \
		-f "refused: mailbox at 0x90000 (mailbox@90000): inside kmem's own image" \
		-f "refused: GPIO block at 0x2000000 (gpio@2000000): inside RAM kmem manages" \
		-f "refused: console UART at 0x1000040 (serial@1000040): inside RAM kmem manages" \
		-f "refused: cpu-release-addr of cpu 1 (hwid 0x1) at 0x80100: inside kmem's own image" \
		-f "refused: cpu-release-addr of cpu 2 (hwid 0x2) at 0x800000000: outside the RAM" \
		-f "refused: cpu-release-addr of cpu 3 (hwid 0x3) at 0xf4: not 8-byte aligned" \
		-f "smp: 4 cpus online" \
		-f "boot test: 4 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(call RPI3_HOSTILE,rpi3-devices) -append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-uart-in-ram -s 0 -t 30 \
		-f "refused: console UART at 0x44000000 (pl011@9000000): inside RAM kmem manages" \
		-f "boot test: 2 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(VIRT_SMALL) -dtb $(BOOT_TEST)/virt-uart-in-ram.dtb -append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-gic-in-ram -s 1 -t 30 \
		-f "GIC distributor at 0x44000000 (intc@8000000): inside RAM kmem manages" \
		-- $(VIRT_SMALL) -dtb $(BOOT_TEST)/virt-gic-in-ram.dtb -append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-numa-no-memory -s 0 -t 30 \
		-f "numa: cpu 1 is on node 1, which has no memory; using one node" \
		-f "node 0: cpus 0-1, memory 0x" \
		-f "boot test: 2 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(VIRT_SMALL) -object memory-backend-ram,id=m0,size=128M \
		-numa node,nodeid=0,cpus=0-1,memdev=m0 -dtb $(BOOT_TEST)/virt-numa-no-memory.dtb \
		-append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-numa-asymmetric -s 0 -t 30 \
		-f "numa: distance 0 -> 1 is 20 but 1 -> 0 is 30; using one node" \
		-f "node 0: cpus 0-1, memory 0x" \
		-f "boot test: 2 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(VIRT_SMALL) $(call NUMA_2,64M,0,1) -dtb $(BOOT_TEST)/virt-numa-asymmetric.dtb \
		-append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-numa-missing-distance -s 0 -t 30 \
		-f "numa: no distance 1 -> 0 in the distance map; using one node" \
		-f "node 0: cpus 0-1, memory 0x" \
		-f "boot test: 2 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(VIRT_SMALL) $(call NUMA_2,64M,0,1) \
		-dtb $(BOOT_TEST)/virt-numa-missing-distance.dtb -append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-many-cpus -s 0 -t 60 \
		-f "cpus: the tree lists 260, kmem brings up at most 256" \
		-f "smp: cpu 255 (hwid 0xff) not started: refused to start: PSCI error -2" \
		-f "smp: 2 of 256 cpus online: 0 1" \
		-f "boot test: 2 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(VIRT_SMALL) -dtb $(BOOT_TEST)/virt-many-cpus.dtb -append kmem.test=boot
	@$(EXPECT_BOOT) -n virt-stack-overflow -s 1 -t 30 \
		-f "stack overflow on cpu 0: an access at" \
		-- $(VIRT_SMALL) -append kmem.test=stack-overflow
	@$(EXPECT_BOOT) -n virt-stack-overflow-secondary -s 1 -t 30 \
		-f "stack overflow on cpu 1: an access at" \
		-- $(VIRT_SMALL) -append kmem.test=stack-overflow-secondary
	@$(EXPECT_BOOT) -n x86_64-stack-overflow -s 3 -t 30 \
		-f "stack overflow on cpu 0: an access at" \
		-- $(X86_SMALL) -append kmem.test=stack-overflow
	@$(EXPECT_BOOT) -n x86_64-stack-overflow-secondary -s 3 -t 30 \
		-f "stack overflow on cpu 1: an access at" \
		-- $(X86_SMALL) -append kmem.test=stack-overflow-secondary
	@$(EXPECT_BOOT) -n riscv64-no-memory -s 1 -t 30 \
		-f "kmem: cannot boot on QEMU virt (riscv64): device tree: no /memory node" \
		-- $(call RISCV_SMALL,4) -dtb $(BOOT_TEST)/riscv64-no-memory.dtb -append kmem.test=boot
	@$(EXPECT_BOOT) -n riscv64-cpus -s 0 -t 30 \
		-f "smp: cpu 4 (hwid 0x7) not started: did not come online in 2000 ms (SBI HSM)" \
		-f "smp: 4 of 5 cpus online: 0 1 2 3" \
		-f "boot test: 4 cpus online; kmalloc and kfree on each: ok; validate: clean" \
		-- $(call RISCV_SMALL,4) -dtb $(BOOT_TEST)/riscv64-cpus.dtb -append kmem.test=boot
	@$(EXPECT_BOOT) -n riscv64-stack-overflow -s 1 -t 30 \
		-f "stack overflow on cpu 0: an access at" \
		-- $(call RISCV_SMALL,2) -append kmem.test=stack-overflow
	@$(EXPECT_BOOT) -n riscv64-stack-overflow-secondary -s 1 -t 30 \
		-f "stack overflow on cpu 1: an access at" \
		-- $(call RISCV_SMALL,2) -append kmem.test=stack-overflow-secondary


## lint-firmware: clippy for the firmware of every board on its bare-metal target.
lint-firmware: toolchain
	$(foreach b,$(BOARDS),$(CARGO) clippy --target $(TARGET_$(b)) -p kmem-firmware --features $(b) -- -D warnings$(newline))

test: qemu-test
lint: lint-firmware

# --- Deeper checks: not in `make test` (they take minutes) ------------------------------
FUZZ_SECONDS ?= 60
# The core's tests that Miri runs: the unsafe code of every layer, at sizes an
# interpreter finishes in minutes (the models shrink themselves under cfg(miri)); about
# 23 minutes in all on a 2-core machine.
MIRI_TESTS ?= mm::memmap mm::pcp slab::magazine slab::layout percpu buddy_model \
	bad_frees_are_refused kmalloc_and_cache_model bad_kfrees write_past_the_end \
	write_after_free double_free_while corrupted_free_list object_tags_catch \
	debug_flags_change kmalloc::tests::bulk::a_ kmalloc::tests::bulk::reservations \
	mm::hotplug::tests::bad_ranges mm::hotplug::tests::a_region_joins \
	mm::hotplug::tests::the_hook_is_asked mm::hotplug::tests::boot_memory_serves_first \
	mm::numa mm::meta mm::node::tests::this_node mm::node::tests::fallback \
	mm::node::tests::frames_know mm::node::tests::bad_top mm::node::tests::frees_from \
	kmalloc::tests::numa::a_double_free kmalloc::tests::numa::allocations_land \
	kmalloc::tests::numa::remote_frees_go_home kmalloc::tests::numa::a_local_free

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


## monitor-test: the monitor on QEMU virt fed boards/selftest/monitor-lines.txt through
## the console (out-of-range numbers, a cache that does not exist, words a command does not
## take, an over-long line, a non-ASCII byte, a range to add that was not held back, a
## range to remove that is not a region): each refused with the message that says
## why, nothing allocated or changed by them, and `poweroff` still ends QEMU with status 0.
## The file starts with an empty line: QEMU may hand the first byte to the PL011 before
## the firmware sets it up, which empties its FIFO.
monitor-test: deps
	$(MAKE) image BOARD=virt
	$(EXPECT_BOOT) -n monitor -t 60 -i boards/selftest/monitor-lines.txt \
		-e '^kmem> pages 11$$' -e '^invalid order 11 \(0.+10\)$$' \
		-e '^invalid order 4294967296 ' -e '^invalid interval 4294967297 ' \
		-e '^no cache named `nosuchcache`' \
		-e '^`18446744073709551616` is not a number' -e '^invalid seconds 0 ' \
		-e '^invalid seconds 99999999999 ' -e '^unexpected `bogus`; usage: slabinfo' \
		-e '^unexpected `extra`; usage: meminfo' -e '^unknown command `xyzzy`' \
		-e '^line ignored: 203 characters long, at most 128' \
		-e '^line ignored: it holds the byte 0x1b' \
		-e 'failslab_every: 0, failslab_cache: None' -e '^kmem> kmalloc 64$$' \
		-e '^held back at boot: ' -e '^hotplug: add .*: refused: ' \
		-e '^hotplug: remove .*: refused: ' \
		-e '^kfence: 1 in 4096, pool 63 objects, [0-9]+ allocated, 0 faults$$' \
		-x '^error:' -x '^failslab: every' -x '^stress:' \
		-- $(VIRT_QEMU) -smp 2 -m 128M
