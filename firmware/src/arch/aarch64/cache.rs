//! Data-cache maintenance by address, for memory that an observer outside this core's
//! caches reads or writes: a core whose MMU (and so its cache) is still off, or a DMA
//! master such as the Raspberry Pi's VideoCore.

use aarch64_cpu::asm::barrier;

/// Writes back and invalidates every data-cache line overlapping `[addr, addr + len)`,
/// to the point of coherency, and waits until that is done.
pub fn clean_invalidate(addr: usize, len: usize) {
    let ctr: usize;
    // SAFETY: reads CTR_EL0, which EL1 may always read and which has no side effects
    // (aarch64-cpu does not model it).
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    // DminLine, bits [19:16], is log2 of the smallest data-cache line in 4-byte words.
    let line = 4usize << ((ctr >> 16) & 0xf);
    let mut a = addr & !(line - 1);
    while a < addr + len {
        // SAFETY: maintenance by virtual address changes no data as the program sees it;
        // the identity map covers `addr` (a caller's object or a mapped RAM address).
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack)) };
        a += line;
    }
    barrier::dsb(barrier::SY);
}
