# The exception entry stubs: one per vector 0-31, 16 bytes apart, each pushing a dummy
# error code where the CPU pushes none, then its vector. No exception is expected (the
# firmware runs with interrupts off and takes no traps), so the common entry reports and
# ends the machine through exception.rs — but for a page fault a fault detector handled
# (kmem's guard pool): its entry offers it to exception.rs first and, when handled,
# returns to the faulting instruction. The interrupts taken on purpose have stubs of
# their own at the end: the wake-up IPI that ends an idle core's `hlt`, and the local
# timer. A fault while reporting must not loop: the entry
# counts nesting per core in its CpuArea and the second nested exception ends QEMU here,
# through isa-debug-exit, without using the stack.

.macro VECTOR n
.balign 16
    .if \n == 8 || (\n >= 10 && \n <= 14) || \n == 17 || \n == 21 || \n == 29 || \n == 30
    .else
    push    $0
    .endif
    push    $\n
    .if \n == 14
    jmp     .Lpage_fault
    .else
    jmp     .Lexception_entry
    .endif
.endm

.section .text
.balign 16
.global __exception_stubs
__exception_stubs:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    VECTOR \n
.endr

# Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
.Lexception_entry:
    lock incl %gs:{depth}
    cmpl    $1, %gs:{depth}
    jne     .Lnested
.Lreport:
    mov     (%rsp), %rdi            # vector
    mov     8(%rsp), %rsi           # error code
    mov     16(%rsp), %rdx          # RIP
    mov     40(%rsp), %rcx          # RSP at the fault
    and     $-16, %rsp
    call    {handler}
# A page fault: the registers a Rust function may clobber saved (9 words: with the
# 7-word frame the stack is 16-byte aligned again), {page_fault} gets the error code and
# RIP and says whether a detector handled it. Handled: the depth goes back, the vector
# and error code come off, and iretq retries the access. Not: reported as any other.
.Lpage_fault:
    lock incl %gs:{depth}
    cmpl    $1, %gs:{depth}
    jne     .Lnested
    push    %rax
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    mov     80(%rsp), %rdi          # error code
    mov     88(%rsp), %rsi          # RIP
    cld
    call    {page_fault}
    test    %al, %al
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rax
    jz      .Lreport
    lock decl %gs:{depth}
    add     $16, %rsp
    iretq

.Lnested:
    mov     $1, %eax
    out     %eax, $0xf4             # isa-debug-exit: status 3
1:  cli
    hlt
    jmp     1b

# The wake-up IPI: acknowledge it at the local APIC ({eoi} holds the xAPIC's EOI
# register's address, or 0 in x2APIC mode: then its MSR 0x80b) and return to the `hlt`
# it interrupted.
.global __wake_stub
__wake_stub:
    push    %rax
    mov     {eoi}, %rax
    test    %rax, %rax
    jz      1f
    movl    $0, (%rax)
    pop     %rax
    iretq
1:  push    %rcx
    push    %rdx
    mov     $0x80b, %ecx
    xor     %edx, %edx
    wrmsr
    pop     %rdx
    pop     %rcx
    pop     %rax
    iretq

# The local timer: save the registers a Rust function may clobber (the kernel target has
# no SSE state and no red zone), call exception.rs with a 16-byte aligned stack, return.
# The CPU aligned RSP to 16 before its 5-word frame; 9 pushes make it aligned again.
.global __timer_stub
__timer_stub:
    push    %rax
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    cld
    call    {timer}
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rax
    iretq
