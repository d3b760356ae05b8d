// Boot entry for riscv64 in S-mode, from OpenSBI's jump to the first Rust function.
//
// _start           the boot hart: a0 = its hart id, a1 = the DTB's address;
// _secondary_start a hart started by SBI HSM hart_start: a0 = its hart id, a1 = the
//                  opaque argument, its logical id.
//
// Both mask interrupts, take their stack and per-CPU area (tp), record their hart id,
// install the trap vector, enable the wake-up IPI in sie (it ends wfi; sstatus.SIE stays
// off) and turn the FPU on (Rust on riscv64gc uses the FP registers freely), then call
// Rust. The MMU is off: satp is 0 on entry from OpenSBI.

// LLVM assembles module-level assembly without the target's extensions: name them.
.option push
.option arch, +m

.section .text._start
.global _start
_start:
    csrw    sie, zero
    csrci   sstatus, 2              // SIE
    mv      s0, a0                  // hart id
    mv      s1, a1                  // DTB address
    // Clear the BSS (16-byte aligned by link-riscv64.ld) before any Rust static is read.
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    sd      zero, 8(t0)
    addi    t0, t0, 16
    j       1b
2:  li      a0, 0
    mv      a1, s0
    call    __cpu_setup
    mv      a0, s1
    call    {boot_main}
    j       .Lpark

.section .text
.global _secondary_start
.balign 4
_secondary_start:
    csrw    sie, zero
    csrci   sstatus, 2
    mv      s0, a0                  // hart id
    mv      s1, a1                  // logical id
    li      t0, {max_cpus}
    bgeu    s1, t0, .Lpark
    mv      a0, s1
    mv      a1, s0
    call    __cpu_setup
    mv      a0, s1
    call    {secondary_main}
.Lpark:
    csrw    sie, zero
1:  wfi
    j       1b

// a0 = logical id, a1 = hart id: tp at its CpuArea, sp at the stack top the area names
// (a hart without a slot parks), HARTS[id] = hart id, stvec at the trap entry,
// sie.SSIE, sstatus.FS = Initial. Clobbers t0-t2.
__cpu_setup:
    la      t0, {cpu_areas}
    li      t2, {area_size}
    mul     t1, a0, t2
    add     t0, t0, t1
    ld      t1, {stack_top}(t0)
    beqz    t1, .Lpark
    mv      sp, t1
    mv      tp, t0
    la      t0, {harts}
    slli    t1, a0, 3
    add     t0, t0, t1
    sd      a1, 0(t0)
    la      t0, __trap_entry
    csrw    stvec, t0
    li      t0, 2                   // SSIE
    csrs    sie, t0
    li      t0, (1 << 13)           // FS = Initial
    csrs    sstatus, t0
    ret

.option pop
