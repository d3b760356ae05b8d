# Boot entry for x86_64: from the PVH loader's jump (or the AP trampoline's) to Rust.
#
# _start32     the boot core, entered by QEMU's PVH loader in 32-bit protected mode with
#              paging off, no stack, and %ebx = the physical address of hvm_start_info;
# _ap_start32  an application processor, arriving from trampoline.s in 32-bit protected
#              mode on this file's GDT.
#
# Both switch to long mode on the boot page tables — the low 4 GiB identity-mapped in
# 2 MiB pages, enough for the image and the boot information; the firmware replaces them
# with the map of all RAM (mmu.rs) — take their stack and per-CPU area (GS base), and call
# Rust with their logical id and the boot argument.

.section .note.Xen, "a", @note
.balign 4
    .long 4                         # n_namesz: "Xen\0"
    .long 8                         # n_descsz
    .long 18                        # n_type: XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad _start32                  # QEMU reads a 64-bit entry from an ELF64's note
.balign 4

.set CODE32, 0x08
.set DATA, 0x10
.set CODE64, 0x18

.section .text._start32, "ax"
.code32
.global _start32
_start32:
    cli
    cld
    lgdt    __boot_gdt_ptr
    ljmp    $CODE32, $1f
1:  mov     $DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    # The BSS holds the boot page tables and the stacks: clear it first.
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    xor     %eax, %eax
    rep stosb
    # 2048 PD entries, 2 MiB each from 0: present, writable, large (0x83).
    mov     $__boot_pd, %edi
    mov     $0x83, %eax
    mov     $2048, %ecx
2:  mov     %eax, (%edi)
    add     $0x200000, %eax
    add     $8, %edi
    loop    2b
    # PDPT entries 0-3 point at the four PDs; PML4 entry 0 at the PDPT.
    mov     $__boot_pdpt, %edi
    mov     $(__boot_pd + 3), %eax
    mov     $4, %ecx
3:  mov     %eax, (%edi)
    add     $4096, %eax
    add     $8, %edi
    loop    3b
    movl    $(__boot_pdpt + 3), __boot_pml4
    xor     %esi, %esi              # logical id 0
    jmp     .Llong_mode

.global _ap_start32
_ap_start32:
    mov     $DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    # This core's APIC id: CPUID leaf 0xB's x2APIC id where the CPU has the leaf, else
    # leaf 1's initial APIC id (the ids the MADT lists).
    xor     %eax, %eax
    cpuid
    cmp     $0xb, %eax
    jb      1f
    mov     $0xb, %eax
    xor     %ecx, %ecx
    cpuid
    test    %ebx, %ebx
    jz      1f
    mov     %edx, %edi
    jmp     2f
1:  mov     $1, %eax
    cpuid
    shr     $24, %ebx
    mov     %ebx, %edi
    # The logical id is its index in the ids the boot core posted (every core started
    # at once finds its own); a core not posted parks.
2:  mov     $1, %esi
3:  cmp     ${max_cpus}, %esi
    jae     .Lpark32
    cmp     %edi, {ap_hwids}(,%esi,4)
    je      .Llong_mode
    inc     %esi
    jmp     3b

.Llong_mode:
    mov     %cr4, %eax
    or      $(1 << 5), %eax         # CR4.PAE
    mov     %eax, %cr4
    mov     $__boot_pml4, %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx       # IA32_EFER
    rdmsr
    or      $(1 << 8), %eax         # EFER.LME
    wrmsr
    mov     %cr0, %eax
    or      $0x80000001, %eax       # CR0.PG | CR0.PE
    mov     %eax, %cr0
    ljmp    $CODE64, $.Lentry64

.Lpark32:
    cli
    hlt
    jmp     .Lpark32

.code64
.Lentry64:
    mov     $DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    # IA32_GS_BASE = &cpu_areas[id]; rsp = the stack top it names (none: park)
    mov     %esi, %eax
    imul    ${area_size}, %rax
    add     ${cpu_areas}, %rax
    mov     {stack_top}(%rax), %rdx
    test    %rdx, %rdx
    jz      1f
    mov     %rdx, %rsp
    mov     %rax, %rdx
    shr     $32, %rdx
    mov     $0xc0000101, %ecx
    wrmsr
    mov     %esi, %edi              # logical id
    mov     %ebx, %esi              # hvm_start_info (meaningful on the boot core only)
    call    {rust_entry}
1:  cli
    hlt
    jmp     1b

# The GDT every core uses, in .data: the CPU sets accessed and busy bits in it.
.section .data
.balign 16
__boot_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        # 0x08: 32-bit code, flat
    .quad 0x00cf93000000ffff        # 0x10: data, flat
    .quad 0x00af9b000000ffff        # 0x18: 64-bit code
# 0x20 + 16 n: core n's TSS descriptor (for its exception stack), which exception.rs
# fills in before any core loads it.
.global __boot_gdt_tss
__boot_gdt_tss:
    .skip 16 * {max_cpus}
.Lgdt_end:
__boot_gdt_ptr:
    .word .Lgdt_end - __boot_gdt - 1
    .quad __boot_gdt

.section .bss
.balign 4096
__boot_pml4:
    .skip 4096
__boot_pdpt:
    .skip 4096
__boot_pd:
    .skip 4 * 4096
