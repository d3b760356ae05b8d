// The EL1 exception vector table. Two kinds of exception may return: an IRQ taken at
// EL1 with SP_EL1, which saves every register Rust may clobber and calls the dispatcher
// in exception.rs, then returns to the interrupted code; and a synchronous exception at
// EL1 with SP_EL1, which saves the whole register file on this core's exception stack
// (the stack it was on may be what failed: an overflow into its guard page) and asks
// exception.rs, which returns only when a fault detector handled the fault. Every other
// entry, and a synchronous one no detector handled, reports and ends the machine through
// exception.rs on the exception stack. A fault while doing so (a fault in a detector or
// in the report) must not loop, so both entries count nesting per core in its CpuArea and
// a nested exception ends the machine here, without using a stack.

// Every SIMD register to / from the 512 bytes at x0.
.macro SAVE_SIMD
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
.endm

.macro RESTORE_SIMD
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
.endm

.macro VECTOR kind
.balign 0x80
    mov     x0, #\kind
    b       __exception_entry
.endm

.macro SYNC_VECTOR
.balign 0x80
    b       __sync_entry
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
    SYNC_VECTOR     // current EL, SP_ELx: synchronous
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

// A synchronous exception at EL1 on SP_EL1, perhaps a fault the handler can recover
// from, so every register is kept: SP_EL0 and TPIDR_EL0 (unused at EL1h, where the
// firmware runs) hold x9 and x10 until the frame is on the exception stack. The frame:
// x0-x30, the interrupted sp, ELR_EL1, SPSR_EL1, ESR_EL1, FAR_EL1, FPCR, FPSR (38 words,
// 304 bytes), then every SIMD register: 816 bytes, exception.rs's ExceptionFrame. The
// handler may change ELR_EL1 and SPSR_EL1 in it; they are what eret returns to.
.set SYNC_GPRS, 38 * 8
.set SYNC_FRAME, SYNC_GPRS + 32 * 16
__sync_entry:
    msr     SP_EL0, x9
    msr     TPIDR_EL0, x10
    mrs     x9, TPIDR_EL1
    ldr     w10, [x9, #{depth}]
    add     w10, w10, #1
    str     w10, [x9, #{depth}]
    cmp     w10, #1
    b.ne    __exception_nested
    ldr     x10, [x9, #{exception_top}]
    sub     x10, x10, #SYNC_FRAME
    mov     x9, sp
    mov     sp, x10
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    str     x8, [sp, #64]
    str     x9, [sp, #248]
    mrs     x9, SP_EL0
    mrs     x10, TPIDR_EL0
    stp     x9, x10, [sp, #72]
    stp     x11, x12, [sp, #88]
    stp     x13, x14, [sp, #104]
    stp     x15, x16, [sp, #120]
    stp     x17, x18, [sp, #136]
    stp     x19, x20, [sp, #152]
    stp     x21, x22, [sp, #168]
    stp     x23, x24, [sp, #184]
    stp     x25, x26, [sp, #200]
    stp     x27, x28, [sp, #216]
    stp     x29, x30, [sp, #232]
    mrs     x0, ELR_EL1
    mrs     x1, SPSR_EL1
    stp     x0, x1, [sp, #256]
    mrs     x0, ESR_EL1
    mrs     x1, FAR_EL1
    stp     x0, x1, [sp, #272]
    mrs     x0, FPCR
    mrs     x1, FPSR
    stp     x0, x1, [sp, #288]
    add     x0, sp, #SYNC_GPRS
    SAVE_SIMD
    mov     x0, sp
    bl      {sync}
    // Handled: this exception is over, so the depth goes back before the return.
    mrs     x9, TPIDR_EL1
    ldr     w10, [x9, #{depth}]
    sub     w10, w10, #1
    str     w10, [x9, #{depth}]
    add     x0, sp, #SYNC_GPRS
    RESTORE_SIMD
    ldp     x0, x1, [sp, #288]
    msr     FPCR, x0
    msr     FPSR, x1
    ldp     x0, x1, [sp, #256]
    msr     ELR_EL1, x0
    msr     SPSR_EL1, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    // x30 waits in TPIDR_EL0 while it carries the interrupted sp.
    ldr     x30, [sp, #240]
    msr     TPIDR_EL0, x30
    ldr     x30, [sp, #248]
    mov     sp, x30
    mrs     x30, TPIDR_EL0
    eret

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
    SAVE_SIMD
    bl      {irq}
    add     x0, sp, #IRQ_GPRS
    RESTORE_SIMD
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
