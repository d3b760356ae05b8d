# The real-mode trampoline an application processor starts in after INIT-SIPI-SIPI.
#
# Never run where it is linked: boot.rs copies it to {base} (below 1 MiB, page-aligned,
# so that the SIPI vector {base} >> 12 names it) and the AP starts at its first byte with
# CS = {base} >> 4, IP = 0. It loads the image's GDT and jumps, in 32-bit protected mode,
# to _ap_start32 in boot.s. Addresses inside it are computed for where it runs.

.section .text.ap_trampoline, "ax"
.code16
.global __ap_trampoline_start
__ap_trampoline_start:
    cli
    cld
    xor     %ax, %ax
    mov     %ax, %ds
    lgdtl   {base} + (.Ltramp_gdt_ptr - __ap_trampoline_start)
    mov     %cr0, %eax
    or      $1, %eax                # CR0.PE
    mov     %eax, %cr0
    ljmpl   $0x08, $_ap_start32

.balign 8
.Ltramp_gdt_ptr:
    .word .Lgdt_end - __boot_gdt - 1    # all of boot.s's GDT, the TSS descriptors too
    .long __boot_gdt
.global __ap_trampoline_end
__ap_trampoline_end:
.code64
