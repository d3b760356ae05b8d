//! The porting layer: everything the allocator core needs from a CPU, as one trait.
//!
//! A new ISA implements [`Arch`]; the library (`mm`, `percpu`, the slab layer, kmalloc)
//! calls nothing else, so it contains no `cfg(target_arch)`, and every item here is one
//! the library calls. The firmware crate implements it for aarch64 and x86_64
//! (`firmware/src/arch/`), the hosted platform in `crate::hosted`.

/// What the allocator needs from the CPU it runs on. All functions are associated (no
/// `self`): there is one CPU architecture per build, and the fast paths must not pay for
/// dynamic dispatch.
pub trait Arch: 'static {
    /// Interrupt state saved by [`Arch::irq_save`] and given back to [`Arch::irq_restore`].
    type IrqState: Copy;

    /// Logical id of the running CPU, dense from 0. Must stay the same while interrupts are
    /// disabled by [`Arch::irq_save`].
    fn cpu_id() -> usize;
    /// [`Arch::cpu_id`] for the lock-free per-CPU fast paths, where it must not take a
    /// slow step: a platform whose id can need one (a hosted thread claims its id on its
    /// first call) returns a value at or above [`Arch::OWNED_IDS`] instead, and the caller
    /// goes its locked way, which calls `cpu_id`.
    #[inline]
    fn cpu_id_fast() -> usize {
        Self::cpu_id()
    }
    /// Disables interrupts on this CPU and returns the previous state.
    fn irq_save() -> Self::IrqState;
    /// Restores the interrupt state returned by [`Arch::irq_save`].
    fn irq_restore(state: Self::IrqState);

    /// CPU ids below this belong to one running context each, for as long as it runs,
    /// so per-CPU data may be entered by that owner without a lock (see `crate::percpu`):
    /// on bare metal, every CPU id (the owner runs with interrupts off); hosted, the
    /// threads that hold an exclusive id. 0 makes every per-CPU access take its slot's
    /// lock.
    const OWNED_IDS: usize = 0;

    /// The owner's half of the handshake with a remote drain: orders the owner's "busy"
    /// store before its look at the slot's mode. A full fence by default.
    #[inline]
    fn owner_fence() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst)
    }

    /// The remote half: a full barrier that, together with [`Arch::owner_fence`], lets
    /// one side see the other's store (Dekker). A full fence by default; a platform whose
    /// owners issue only a compiler fence must fence every running CPU here.
    #[inline]
    fn remote_barrier() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst)
    }

    /// A free-running cycle counter for benchmarks and owner tracking.
    fn cycles() -> u64;

    /// Hints that the cache line holding `addr` will be read soon (`prefetcht0`, `prfm
    /// pldl1keep`). Any address: a prefetch never faults. Does nothing by default.
    #[inline]
    fn prefetch(_addr: usize) {}

    /// Virtual address through which the kernel reaches physical address `pa`.
    fn phys_to_virt(pa: u64) -> usize;
    /// Physical address behind kernel virtual address `va` (inverse of `phys_to_virt`).
    fn virt_to_phys(va: usize) -> u64;
}
