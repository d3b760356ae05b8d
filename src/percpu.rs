//! Per-CPU data: one value per CPU, each behind its own lock, in caller-provided memory.
//!
//! The owning CPU reaches its slot in O(1) from [`Arch::cpu_id`]; the lock is almost
//! always uncontended (only drains from other CPUs and hosted threads sharing a slot take
//! it) and is held with interrupts off, so an interrupt handler on the same CPU can't see
//! the slot half-updated. Slots are cache-line aligned so that CPUs never share a line.

use core::mem::{align_of, size_of};

use crate::arch::Arch;
use crate::sync::{IrqMutex, IrqMutexGuard};

#[repr(align(64))]
struct Slot<A: Arch, T>(IrqMutex<A, T>);

/// One `T` per CPU. Values are never dropped: `T` holds plain data (counts, indices,
/// pointers into allocator-owned memory) whose owner tears it down explicitly.
pub struct PerCpu<A: Arch, T> {
    slots: *mut Slot<A, T>,
    n: usize,
}

// SAFETY: every access to a slot's value goes through that slot's lock.
unsafe impl<A: Arch, T: Send> Send for PerCpu<A, T> {}
// SAFETY: as for Send; `&PerCpu` only yields values under their lock.
unsafe impl<A: Arch, T: Send> Sync for PerCpu<A, T> {}

impl<A: Arch, T> PerCpu<A, T> {
    /// Bytes of memory [`PerCpu::init_at`] needs for `n` CPUs.
    pub const fn bytes_needed(n: usize) -> usize {
        n * size_of::<Slot<A, T>>()
    }

    /// Alignment that memory must have.
    pub const fn align() -> usize {
        align_of::<Slot<A, T>>()
    }

    /// Places `n` slots at `mem`, slot `i` holding `init(i)`.
    ///
    /// # Safety
    /// `mem` must be writable for [`PerCpu::bytes_needed`]`(n)` bytes, aligned to
    /// [`PerCpu::align`], and used by nothing else while the `PerCpu` lives.
    pub unsafe fn init_at(mem: *mut u8, n: usize, mut init: impl FnMut(usize) -> T) -> Self {
        assert!(n > 0, "PerCpu needs at least one CPU");
        let slots = mem.cast::<Slot<A, T>>();
        for i in 0..n {
            // SAFETY: i < n and the caller provided room for n aligned slots.
            unsafe { slots.add(i).write(Slot(IrqMutex::new(init(i)))) };
        }
        PerCpu { slots, n }
    }

    /// Number of CPU slots.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Index of the running CPU's slot. CPU ids past the slot count share slots (hosted
    /// threads beyond the configured CPUs); the lock keeps that correct.
    #[inline]
    pub fn this_cpu(&self) -> usize {
        let cpu = A::cpu_id();
        if cpu < self.n { cpu } else { cpu % self.n }
    }

    /// The running CPU's value, locked with interrupts off.
    #[inline]
    pub fn local(&self) -> IrqMutexGuard<'_, A, T> {
        self.cpu(self.this_cpu())
    }

    /// CPU `i`'s value, locked with interrupts off (for drains from another CPU).
    #[inline]
    pub fn cpu(&self, i: usize) -> IrqMutexGuard<'_, A, T> {
        assert!(i < self.n, "cpu {i} out of range");
        // SAFETY: i < n, and init_at initialised n slots that live as long as self.
        unsafe { (*self.slots.add(i)).0.lock() }
    }

    /// Start of the memory the slots occupy (to give it back on teardown).
    pub fn memory(&self) -> *mut u8 {
        self.slots.cast()
    }
}
