// Boot entry for aarch64: from the loader's jump to the first Rust function.
//
// _start           the boot core (QEMU -kernel, or every core on spin-table boards);
// _secondary_start a core started by PSCI CPU_ON with its logical id as context (x0).
//
// Both drop to EL1 when entered at EL2, turn on FP/SIMD (Rust on aarch64-unknown-none
// uses the FP registers freely), take their stack and per-CPU area, install the
// exception vectors, then call Rust. Nothing here touches memory through the MMU.

.section .text._start
.global _start
_start:
    // Only the core with affinity 0 boots; others (spin-table boards start all cores
    // here) park until the boot core starts them through their own mechanism.
    mrs     x1, MPIDR_EL1
    and     x1, x1, #0xff
    cbnz    x1, .Lpark
    mov     x19, x0                 // DTB address from the loader; 0 under QEMU -kernel ELF
    bl      __el1_setup
    // Clear the BSS (16-byte aligned by link.ld) before any Rust static is read.
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:  mov     x0, #0
    bl      __cpu_setup
    mov     x0, x19
    bl      {boot_main}
    b       .Lpark

.section .text
.global _secondary_start
_secondary_start:
    mov     x19, x0                 // logical id, from the PSCI context argument
    cmp     x19, #{max_cpus}
    b.hs    .Lpark
    bl      __el1_setup
    mov     x0, x19
    bl      __cpu_setup
    mov     x0, x19
    bl      {secondary_main}
.Lpark:
    wfe
    b       .Lpark

// Leaves the core at EL1h with DAIF masked, MMU off and FP/SIMD usable. Clobbers x0, x1.
__el1_setup:
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    3f
    // EL2: EL1 is AArch64 and owns the machine; EL1 may read the counters and timers;
    // the virtual counter equals the physical one; FP is not trapped to EL2.
    mov     x0, #(1 << 31)          // HCR_EL2.RW
    mrs     x1, S3_0_C0_C4_1        // ID_AA64PFR1_EL1
    ubfx    x1, x1, #8, #4          // .MTE
    cmp     x1, #2
    b.lo    1f
    orr     x0, x0, #(1 << 56)      // HCR_EL2.ATA: EL1 may use memory tags
1:  msr     HCR_EL2, x0
    mov     x0, #3                  // CNTHCTL_EL2.EL1PCTEN | EL1PCEN
    msr     CNTHCTL_EL2, x0
    msr     CNTVOFF_EL2, xzr
    mov     x0, #0x33ff             // CPTR_EL2: RES1 bits only, TFP clear
    msr     CPTR_EL2, x0
    mov     x0, #0x3c5              // SPSR_EL2: EL1h, D, A, I, F masked
    msr     SPSR_EL2, x0
    adr     x0, 3f
    msr     ELR_EL2, x0
    eret
3:  // EL1: a known SCTLR (MMU and caches off, little-endian, RES1 bits set) and FP on.
    ldr     x0, =0x30d00800
    msr     SCTLR_EL1, x0
    mov     x0, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD traps at EL1/EL0
    msr     CPACR_EL1, x0
    isb
    ret

// x0 = logical id: TPIDR_EL1 at its CpuArea, sp at the stack top the area names (a
// core without a slot parks), VBAR_EL1 at the vectors. Clobbers x1-x3.
__cpu_setup:
    adrp    x1, {cpu_areas}
    add     x1, x1, :lo12:{cpu_areas}
    mov     x3, #{area_size}
    madd    x1, x0, x3, x1
    ldr     x2, [x1, #{stack_top}]
    cbz     x2, .Lpark
    mov     sp, x2
    msr     TPIDR_EL1, x1
    adrp    x1, __exception_vectors
    add     x1, x1, :lo12:__exception_vectors
    msr     VBAR_EL1, x1
    isb
    ret
