// The EL1 exception vector table. One kind of exception is expected: an IRQ taken at
// EL1 with SP_EL1, which saves every register Rust may clobber and calls the dispatcher
// in exception.rs, then returns to the interrupted code. Every other entry reports and
// ends the machine through exception.rs, on this core's exception stack: the stack it
// was on may be what failed (an overflow into its guard page). A fault while doing so (a
// fault in the report) must not loop, so the entry counts nesting per core in its
// CpuArea and the second nested exception ends the machine here, without using a stack.

.macro VECTOR kind
.balign 0x80
    mov     x0, #\kind
    b       __exception_entry
.endm

.macro IRQ_VECTOR
.balign 0x80
    b       __irq_entry
.endm

.section .text
.balign 0x800
.global __exception_vectors
__exception_vectors:
    VECTOR 0        // current EL, SP_EL0: synchronous
    VECTOR 1        //                     IRQ
    VECTOR 2        //                     FIQ
    VECTOR 3        //                     SError
    VECTOR 4        // current EL, SP_ELx: synchronous
    IRQ_VECTOR      //                     IRQ
    VECTOR 6        //                     FIQ
    VECTOR 7        //                     SError
    VECTOR 8        // lower EL, AArch64
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12       // lower EL, AArch32
    VECTOR 13
    VECTOR 14
    VECTOR 15

__exception_entry:
    mrs     x9, TPIDR_EL1
    ldr     w10, [x9, #{depth}]
    add     w10, w10, #1
    str     w10, [x9, #{depth}]
    cmp     w10, #1
    b.ne    __exception_nested
    // sp = the top of this core's exception stack; the handler gets the old one in x4.
    mov     x4, sp
    ldr     x13, [x9, #{exception_top}]
    mov     sp, x13
    mrs     x1, ESR_EL1
    mrs     x2, FAR_EL1
    mrs     x3, ELR_EL1
    bl      {handler}
    b       __exception_nested

// Depth 2: semihosting exit(1). Depth 3 (semihosting is absent, so the hlt faulted):
// PSCI SYSTEM_OFF through the conduit the firmware found. Deeper: nothing is left.
__exception_nested:
    cmp     w10, #2
    b.ne    4f
    mov     w0, #0x18
    adrp    x1, {exit_block}
    add     x1, x1, :lo12:{exit_block}
    hlt     #0xf000
4:  cmp     w10, #3
    b.ne    6f
    ldr     w0, =0x84000008
    adrp    x1, {conduit}
    ldrb    w1, [x1, :lo12:{conduit}]
    cbnz    w1, 5f
    hvc     #0
    b       6f
5:  smc     #0
6:  wfe
    b       6b

// An IRQ at EL1 on SP_EL1. The handler runs with IRQs masked (the exception masked them),
// so entries never nest. Saved: the caller-saved general registers x0-x18, x29 (frame
// chain) and x30, ELR_EL1, SPSR_EL1, FPCR and FPSR (26 words with one spare, 208 bytes),
// then every SIMD register (Rust uses them for copies and fills): 720 bytes in all.
.set IRQ_GPRS, 26 * 8
.set IRQ_FRAME, IRQ_GPRS + 32 * 16
__irq_entry:
    sub     sp, sp, #IRQ_FRAME
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    mrs     x0, ELR_EL1
    stp     x30, x0, [sp, #160]
    mrs     x0, SPSR_EL1
    mrs     x1, FPCR
    stp     x0, x1, [sp, #176]
    mrs     x0, FPSR
    str     x0, [sp, #192]
    add     x0, sp, #IRQ_GPRS
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    bl      {irq}
    add     x0, sp, #IRQ_GPRS
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    ldr     x0, [sp, #192]
    msr     FPSR, x0
    ldp     x0, x1, [sp, #176]
    msr     SPSR_EL1, x0
    msr     FPCR, x1
    ldp     x30, x0, [sp, #160]
    msr     ELR_EL1, x0
    ldp     x18, x29, [sp, #144]
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    add     sp, sp, #IRQ_FRAME
    eret
