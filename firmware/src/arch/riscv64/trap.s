// The S-mode trap entry (stvec, direct mode). Two kinds of trap are expected: the
// supervisor timer interrupt and the supervisor software interrupt (the wake-up IPI),
// taken only while sstatus.SIE is on, on a stack in use. Their entry saves every register
// Rust may clobber, calls the dispatcher in trap.rs, and returns to the interrupted code.
// A load or store page fault is first offered to the fault detectors (kmem's guard pool)
// through trap.rs, with every caller-saved register saved on this hart's exception stack,
// and when one handled it the faulting instruction runs again. Every other exception (the
// firmware takes none on purpose) reports and ends the machine
// through trap.rs, on this hart's exception stack: the stack it was on may be what failed
// (an overflow into its guard page), so nothing is stored on it first. A fault while
// doing so (a fault in the report) must not loop, so the entry counts nesting per hart in
// its CpuArea and the second nested exception ends the machine here, without a stack.

// LLVM assembles module-level assembly without the target's extensions: name them.
.option push
.option arch, +m, +d

.set FRAME, 40 * 8

// Saved: ra, t0-t6, a0-a7, sepc and sstatus (18 words), the caller-saved FP registers
// ft0-ft11 and fa0-fa7 and fcsr (21 words): 320 bytes with one word spare.
.macro SAVE_CALLER_SAVED
    sd      ra, 0(sp)
    sd      t0, 8(sp)
    sd      t1, 16(sp)
    sd      t2, 24(sp)
    sd      t3, 32(sp)
    sd      t4, 40(sp)
    sd      t5, 48(sp)
    sd      t6, 56(sp)
    sd      a0, 64(sp)
    sd      a1, 72(sp)
    sd      a2, 80(sp)
    sd      a3, 88(sp)
    sd      a4, 96(sp)
    sd      a5, 104(sp)
    sd      a6, 112(sp)
    sd      a7, 120(sp)
    csrr    t0, sepc
    sd      t0, 128(sp)
    csrr    t0, sstatus
    sd      t0, 136(sp)
    fsd     ft0, 144(sp)
    fsd     ft1, 152(sp)
    fsd     ft2, 160(sp)
    fsd     ft3, 168(sp)
    fsd     ft4, 176(sp)
    fsd     ft5, 184(sp)
    fsd     ft6, 192(sp)
    fsd     ft7, 200(sp)
    fsd     ft8, 208(sp)
    fsd     ft9, 216(sp)
    fsd     ft10, 224(sp)
    fsd     ft11, 232(sp)
    fsd     fa0, 240(sp)
    fsd     fa1, 248(sp)
    fsd     fa2, 256(sp)
    fsd     fa3, 264(sp)
    fsd     fa4, 272(sp)
    fsd     fa5, 280(sp)
    fsd     fa6, 288(sp)
    fsd     fa7, 296(sp)
    frcsr   t0
    sd      t0, 304(sp)
.endm

.macro RESTORE_CALLER_SAVED
    ld      t0, 304(sp)
    fscsr   t0
    fld     ft0, 144(sp)
    fld     ft1, 152(sp)
    fld     ft2, 160(sp)
    fld     ft3, 168(sp)
    fld     ft4, 176(sp)
    fld     ft5, 184(sp)
    fld     ft6, 192(sp)
    fld     ft7, 200(sp)
    fld     ft8, 208(sp)
    fld     ft9, 216(sp)
    fld     ft10, 224(sp)
    fld     ft11, 232(sp)
    fld     fa0, 240(sp)
    fld     fa1, 248(sp)
    fld     fa2, 256(sp)
    fld     fa3, 264(sp)
    fld     fa4, 272(sp)
    fld     fa5, 280(sp)
    fld     fa6, 288(sp)
    fld     fa7, 296(sp)
    ld      t0, 136(sp)
    csrw    sstatus, t0
    ld      t0, 128(sp)
    csrw    sepc, t0
    ld      ra, 0(sp)
    ld      t0, 8(sp)
    ld      t1, 16(sp)
    ld      t2, 24(sp)
    ld      t3, 32(sp)
    ld      t4, 40(sp)
    ld      t5, 48(sp)
    ld      t6, 56(sp)
    ld      a0, 64(sp)
    ld      a1, 72(sp)
    ld      a2, 80(sp)
    ld      a3, 88(sp)
    ld      a4, 96(sp)
    ld      a5, 104(sp)
    ld      a6, 112(sp)
    ld      a7, 120(sp)
.endm

.section .text
.balign 4
.global __trap_entry
__trap_entry:
    csrw    sscratch, t0
    csrr    t0, scause
    bgez    t0, __exception         // the top bit is clear: an exception
    csrr    t0, sscratch
    j       __interrupt

__exception:
    // t0 holds scause (the interrupted t0 is in sscratch); t1 goes to the scratch word.
    sd      t1, {scratch}(tp)
    li      t1, 13                  // load page fault
    beq     t0, t1, __page_fault
    li      t1, 15                  // store/AMO page fault
    beq     t0, t1, __page_fault
__fatal:
    lw      t0, {depth}(tp)
    addi    t0, t0, 1
    sw      t0, {depth}(tp)
    li      t1, 1
    bne     t0, t1, __exception_nested
    // sp = the top of this hart's exception stack; the handler gets the old one in a3.
    mv      a3, sp
    ld      sp, {exception_top}(tp)
    csrr    a0, scause
    csrr    a1, stval
    csrr    a2, sepc
    call    {handler}

// Depth 2 and deeper: the failing status through the exit device the board registered,
// then nothing is left.
__exception_nested:
    la      t1, {exit_device}
    ld      t1, 0(t1)
    beqz    t1, 2f
    li      t2, {exit_failure}
    sw      t2, 0(t1)
2:  csrw    sie, zero
3:  wfi
    j       3b

// A page fault: counted like any exception (a nested one ends the machine), then on the
// exception stack (the old sp in the second scratch word) with every caller-saved
// register saved, trap.rs's page_fault says whether a detector handled it. Handled: the
// registers and sp come back, the depth goes back, and sret retries the access. Not: the
// fatal report, as for any other exception.
__page_fault:
    lw      t0, {depth}(tp)
    addi    t0, t0, 1
    sw      t0, {depth}(tp)
    li      t1, 1
    bne     t0, t1, __exception_nested
    sd      sp, {scratch_sp}(tp)
    ld      sp, {exception_top}(tp)
    ld      t1, {scratch}(tp)
    csrr    t0, sscratch
    addi    sp, sp, -FRAME
    SAVE_CALLER_SAVED
    csrr    a0, scause
    csrr    a1, stval
    csrr    a2, sepc
    call    {page_fault}
    beqz    a0, 1f
    lw      t0, {depth}(tp)
    addi    t0, t0, -1
    sw      t0, {depth}(tp)
    RESTORE_CALLER_SAVED
    ld      sp, {scratch_sp}(tp)
    sret
1:  // Not handled: the fatal path, from the depth count on (the depth goes back first).
    lw      t0, {depth}(tp)
    addi    t0, t0, -1
    sw      t0, {depth}(tp)
    ld      sp, {scratch_sp}(tp)
    j       __fatal

// An interrupt in S-mode. The handler runs with SIE off (the trap cleared it), so entries
// never nest.
__interrupt:
    addi    sp, sp, -FRAME
    SAVE_CALLER_SAVED
    csrr    a0, scause
    call    {interrupt}
    RESTORE_CALLER_SAVED
    addi    sp, sp, FRAME
    sret

.option pop
