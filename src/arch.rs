//! The porting layer: everything the allocator core needs from a CPU, as one trait.
//!
//! A new ISA implements [`Arch`]; the library (`mm`, `percpu`, the slab layer, kmalloc)
//! calls nothing else, so it contains no `cfg(target_arch)`, and every item here is one
//! the library calls. The firmware crate implements it for aarch64 and x86_64
//! (`firmware/src/arch/`), the hosted platform in `crate::hosted`.

/// What the allocator needs from the CPU it runs on. All functions are associated (no
/// `self`): there is one CPU architecture per build, and the fast paths must not pay for
/// dynamic dispatch.
///
/// # Examples
/// A port for a uniprocessor board whose kernel sees RAM at a fixed offset:
/// ```
/// use kmem::Arch;
///
/// const KERNEL_BASE: u64 = 0xffff_0000_0000_0000;
///
/// struct Board;
///
/// impl Arch for Board {
///     type IrqState = ();
///     fn cpu_id() -> usize { 0 }
///     fn irq_save() {}
///     fn irq_restore(_: ()) {}
///     fn cycles() -> u64 { 0 }
///     fn phys_to_virt(pa: u64) -> usize { (pa + KERNEL_BASE) as usize }
///     fn virt_to_phys(va: usize) -> u64 { va as u64 - KERNEL_BASE }
/// }
///
/// assert_eq!(Board::virt_to_phys(Board::phys_to_virt(0x4000_0000)), 0x4000_0000);
/// ```
pub trait Arch: 'static {
    /// Interrupt state saved by [`Arch::irq_save`] and given back to [`Arch::irq_restore`].
    ///
    /// # Examples
    /// Whether interrupts were on, so that saves nest:
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    /// use kmem::Arch;
    /// static IRQS_ON: AtomicBool = AtomicBool::new(true); // stands in for the CPU flag
    /// struct Board;
    /// impl Arch for Board {
    ///     type IrqState = bool;
    ///     fn irq_save() -> bool { IRQS_ON.swap(false, Relaxed) }
    ///     fn irq_restore(was_on: bool) { IRQS_ON.store(was_on, Relaxed) }
    ///     // ...
    /// #   fn cpu_id() -> usize { 0 }
    /// #   fn cycles() -> u64 { 0 }
    /// #   fn phys_to_virt(pa: u64) -> usize { pa as usize }
    /// #   fn virt_to_phys(va: usize) -> u64 { va as u64 }
    /// }
    /// let outer = Board::irq_save();
    /// let inner = Board::irq_save(); // nested: already off
    /// Board::irq_restore(inner);
    /// assert!(!IRQS_ON.load(Relaxed), "off until the outer restore");
    /// Board::irq_restore(outer);
    /// assert!(IRQS_ON.load(Relaxed));
    /// ```
    type IrqState: Copy;

    /// Logical id of the running CPU, dense from 0. Must stay the same while interrupts are
    /// disabled by [`Arch::irq_save`].
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch; // a thread is a CPU
    /// let me = HostArch::cpu_id();
    /// assert_eq!(HostArch::cpu_id(), me);
    /// let other = std::thread::spawn(HostArch::cpu_id).join().unwrap();
    /// assert_ne!(other, me);
    /// ```
    fn cpu_id() -> usize;
    /// [`Arch::cpu_id`] for the lock-free per-CPU fast paths, where it must not take a
    /// slow step: a platform whose id can need one (a hosted thread claims its id on its
    /// first call) returns a value at or above [`Arch::OWNED_IDS`] instead, and the caller
    /// goes its locked way, which calls `cpu_id`.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// // A new hosted thread has no id yet, and the fast call does not claim one.
    /// let fresh = std::thread::spawn(HostArch::cpu_id_fast).join().unwrap();
    /// assert!(fresh >= HostArch::OWNED_IDS);
    /// let id = HostArch::cpu_id();
    /// assert_eq!(HostArch::cpu_id_fast(), id);
    /// ```
    #[inline]
    fn cpu_id_fast() -> usize {
        Self::cpu_id()
    }
    /// Disables interrupts on this CPU and returns the previous state.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    ///
    /// /// Runs `f` on this CPU with interrupts off.
    /// fn with_irqs_off<A: Arch, R>(f: impl FnOnce() -> R) -> R {
    ///     let saved = A::irq_save();
    ///     let r = f();
    ///     A::irq_restore(saved);
    ///     r
    /// }
    ///
    /// assert_eq!(with_irqs_off::<HostArch, _>(HostArch::cpu_id), HostArch::cpu_id());
    /// ```
    fn irq_save() -> Self::IrqState;
    /// Restores the interrupt state returned by [`Arch::irq_save`].
    ///
    /// # Examples
    /// See [`Arch::irq_save`].
    fn irq_restore(state: Self::IrqState);

    /// CPU ids below this belong to one running context each, for as long as it runs,
    /// so per-CPU data may be entered by that owner without a lock (see `crate::percpu`):
    /// on bare metal, every CPU id (the owner runs with interrupts off); hosted, the
    /// threads that hold an exclusive id. 0 makes every per-CPU access take its slot's
    /// lock.
    ///
    /// # Examples
    /// A bare-metal port: each CPU owns its id while it runs with interrupts off.
    /// ```
    /// use kmem::Arch;
    /// struct Smp;
    /// impl Arch for Smp {
    ///     const OWNED_IDS: usize = usize::MAX;
    ///     // ...
    /// #   type IrqState = ();
    /// #   fn cpu_id() -> usize { 0 }
    /// #   fn irq_save() {}
    /// #   fn irq_restore(_: ()) {}
    /// #   fn cycles() -> u64 { 0 }
    /// #   fn phys_to_virt(pa: u64) -> usize { pa as usize }
    /// #   fn virt_to_phys(va: usize) -> u64 { va as u64 }
    /// }
    /// assert!(Smp::cpu_id() < Smp::OWNED_IDS);
    /// ```
    const OWNED_IDS: usize = 0;

    /// The owner's half of the handshake with a remote drain: orders the owner's "busy"
    /// store before its look at the slot's mode. A full fence by default.
    ///
    /// # Examples
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// static BUSY: AtomicBool = AtomicBool::new(false);
    /// static DRAINING: AtomicBool = AtomicBool::new(false);
    /// // The owner announces itself, fences, then looks for a remote drain.
    /// BUSY.store(true, Relaxed);
    /// HostArch::owner_fence();
    /// assert!(!DRAINING.load(Relaxed));
    /// BUSY.store(false, Relaxed);
    /// ```
    #[inline]
    fn owner_fence() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst)
    }

    /// The remote half: a full barrier that, together with [`Arch::owner_fence`], lets
    /// one side see the other's store (Dekker). A full fence by default; a platform whose
    /// owners issue only a compiler fence must fence every running CPU here.
    ///
    /// # Examples
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// static BUSY: AtomicBool = AtomicBool::new(false);
    /// static DRAINING: AtomicBool = AtomicBool::new(false);
    /// // The drain flags the slot, fences every CPU, then checks that the owner is out.
    /// DRAINING.store(true, Relaxed);
    /// HostArch::remote_barrier();
    /// assert!(!BUSY.load(Relaxed));
    /// ```
    #[inline]
    fn remote_barrier() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst)
    }

    /// One step of a spin-wait for a lock or flag another CPU holds; `spins` counts the
    /// steps this wait has taken before. Every spin-wait in the allocator calls it.
    ///
    /// On bare metal the holder runs with interrupts off and leaves within a short
    /// critical section, so the default only hints the CPU (`pause`, `yield`). Where the
    /// holder can be descheduled — a thread of a process, a guest's vCPU — spinning on
    /// would burn the very core the holder needs: such a platform gives the core away
    /// once a wait has gone on for long (the hosted platform yields its thread).
    ///
    /// # Examples
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering};
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// static READY: AtomicBool = AtomicBool::new(false);
    /// let setter = std::thread::spawn(|| READY.store(true, Ordering::Release));
    /// let mut spins = 0;
    /// while !READY.load(Ordering::Acquire) {
    ///     HostArch::relax(spins);
    ///     spins = spins.saturating_add(1);
    /// }
    /// setter.join().unwrap();
    /// ```
    #[inline]
    fn relax(spins: u32) {
        let _ = spins;
        core::hint::spin_loop()
    }

    /// A free-running cycle counter for benchmarks and owner tracking.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::HostArch;
    /// use kmem::{Arch, Gfp};
    /// let t0 = HostArch::cycles();
    /// let p = kmem.kmalloc(64, Gfp::KERNEL)?;
    /// let spent = HostArch::cycles().wrapping_sub(t0);
    /// assert!(spent < 1 << 40, "a kmalloc takes under 2^40 cycles");
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    fn cycles() -> u64;

    /// Hints that the cache line holding `addr` will be read soon (`prefetcht0`, `prfm
    /// pldl1keep`). Any address: a prefetch never faults. Does nothing by default.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// let objs = [10u64, 20, 30];
    /// let mut sum = 0;
    /// for (i, x) in objs.iter().enumerate() {
    ///     if let Some(next) = objs.get(i + 1) {
    ///         HostArch::prefetch(next as *const u64 as usize);
    ///     }
    ///     sum += x;
    /// }
    /// HostArch::prefetch(0); // harmless
    /// assert_eq!(sum, 60);
    /// ```
    #[inline]
    fn prefetch(_addr: usize) {}

    /// Whether this CPU architecture has memory tagging (Arm MTE) that the allocator
    /// should drive: a tag in each pointer's top bits, one in memory for every
    /// [`Arch::TAG_GRANULE`] bytes, and a fault when they differ. When false (the default)
    /// every tagging hook below is the identity or does nothing and the allocator's calls
    /// compile away; when true, the allocator still asks [`Arch::memory_tagging_on`]
    /// before it tags anything.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// assert!(!HostArch::MEMORY_TAGGING); // the host's pointers carry no tags
    /// ```
    const MEMORY_TAGGING: bool = false;

    /// Bytes that share one memory tag (16 on Arm MTE). An object is tagged only when its
    /// slot is made of whole granules, so that no two objects share one.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// assert!(HostArch::TAG_GRANULE.is_power_of_two());
    /// ```
    const TAG_GRANULE: usize = 16;

    /// Whether memory tagging is on now: the CPU has it and it was not turned off. The
    /// allocator tags objects it hands out only while this holds; pointers it handed out
    /// untagged stay valid (a pointer with tag 0 is never checked).
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// assert!(!HostArch::memory_tagging_on());
    /// ```
    #[inline]
    fn memory_tagging_on() -> bool {
        false
    }

    /// Gives the granules `[addr, addr + len)` (granule-aligned, `len` a multiple of the
    /// granule, `addr` untagged) one new tag, unlike that of the granules on either side
    /// where the port can see them, and returns `addr` carrying it: the pointer to hand
    /// out. The identity by default.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// let mut object = [0u8; 32];
    /// let addr = object.as_mut_ptr() as usize;
    /// assert_eq!(HostArch::untag(HostArch::tag_fresh(addr, 32)), addr);
    /// ```
    #[inline]
    fn tag_fresh(addr: usize, len: usize) -> usize {
        let _ = len;
        addr
    }

    /// Gives the granules `[addr, addr + len)` (as for [`Arch::tag_fresh`]) a new tag
    /// unlike their current one, so that pointers still carrying the old one fault: the
    /// allocator calls it when it takes an object back. Does nothing by default.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// let mut object = [0u8; 32];
    /// HostArch::tag_freed(object.as_mut_ptr() as usize, 32);
    /// ```
    #[inline]
    fn tag_freed(addr: usize, len: usize) {
        let _ = (addr, len);
    }

    /// `addr` without its tag: the address the allocator's descriptors know. Every
    /// pointer a caller gives back (to free, resize or size it) goes through this first.
    /// The identity by default.
    ///
    /// # Examples
    /// ```
    /// use kmem::Arch;
    /// use kmem::hosted::HostArch;
    /// assert_eq!(HostArch::untag(0x4000_1000), 0x4000_1000);
    /// ```
    #[inline]
    fn untag(addr: usize) -> usize {
        addr
    }

    /// Virtual address through which the kernel reaches physical address `pa`.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::HostArch;
    /// use kmem::{Arch, Gfp};
    /// let pa = kmem.alloc_pages(0, Gfp::KERNEL)?;
    /// let page = HostArch::phys_to_virt(pa) as *mut u8;
    /// // SAFETY: the page is ours and 4 KiB long.
    /// unsafe { page.write_bytes(0xAA, 4096) };
    /// unsafe { kmem.pages().free_pages(pa, 0) }?; // SAFETY: the page is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    fn phys_to_virt(pa: u64) -> usize;
    /// Physical address behind kernel virtual address `va` (inverse of `phys_to_virt`).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::hosted::HostArch;
    /// use kmem::{Arch, Gfp};
    /// // The bus address of a buffer, for a device's DMA descriptor.
    /// let buf = kmem.kmalloc(512, Gfp::KERNEL)?;
    /// let bus = HostArch::virt_to_phys(buf.as_ptr() as usize);
    /// assert_eq!(HostArch::phys_to_virt(bus), buf.as_ptr() as usize);
    /// unsafe { kmem.kfree(buf.as_ptr()) }?; // SAFETY: buf is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    fn virt_to_phys(va: usize) -> u64;
}
