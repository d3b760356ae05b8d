// The EL1 exception vector table. No exception is expected: every entry reports and
// ends the machine through exception.rs. A fault while doing so (a bad stack, a fault in
// the report) must not loop, so the entry counts nesting per core in its CpuArea and the
// second nested exception ends the machine here, without using the stack.

.macro VECTOR kind
.balign 0x80
    mov     x0, #\kind
    b       __exception_entry
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
    VECTOR 5        //                     IRQ
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
