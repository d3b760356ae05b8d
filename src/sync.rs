//! Locks that are safe against interrupts on the CPU that holds them.
//!
//! Every allocator lock may be taken from interrupt context (`Gfp::ATOMIC`), so it is
//! always taken with interrupts disabled: an interrupt handler on the same CPU can then
//! never spin on a lock its own CPU holds. [`IrqMutex`] pairs `spin::Mutex` with
//! [`Arch::irq_save`]/[`Arch::irq_restore`], and waits for it through [`Arch::relax`],
//! so that a platform whose lock holders can be descheduled does not spin against them.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::arch::Arch;

/// A spin lock taken with interrupts disabled.
///
/// # Examples
/// ```
/// use kmem::hosted::HostArch;
/// use kmem::sync::IrqMutex;
///
/// // Shared by thread code and the timer interrupt: interrupts stay off while held.
/// static TICKS: IrqMutex<HostArch, u64> = IrqMutex::new(0);
/// *TICKS.lock() += 1;
/// assert_eq!(*TICKS.lock(), 1);
/// ```
pub struct IrqMutex<A: Arch, T> {
    inner: spin::Mutex<T>,
    _arch: PhantomData<fn() -> A>,
}

impl<A: Arch, T> IrqMutex<A, T> {
    /// An unlocked mutex holding `value`; `const`, so it can initialise a `static`.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::HostArch;
    /// use kmem::sync::IrqMutex;
    /// let events = IrqMutex::<HostArch, Vec<&str>>::new(Vec::new());
    /// events.lock().push("boot");
    /// assert_eq!(events.lock().len(), 1);
    /// ```
    pub const fn new(value: T) -> Self {
        IrqMutex {
            inner: spin::Mutex::new(value),
            _arch: PhantomData,
        }
    }

    /// Disables interrupts, then spins until the lock is free.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::HostArch;
    /// use kmem::sync::IrqMutex;
    /// let slots = IrqMutex::<HostArch, _>::new([0u32; 4]);
    /// {
    ///     let mut s = slots.lock();
    ///     s[2] = 7;
    /// } // unlocked here, then interrupts restored
    /// assert_eq!(slots.lock()[2], 7);
    /// ```
    #[inline]
    pub fn lock(&self) -> IrqMutexGuard<'_, A, T> {
        let irq = A::irq_save();
        IrqMutexGuard {
            guard: ManuallyDrop::new(self.acquire()),
            irq,
        }
    }

    /// Takes the lock (interrupts are the caller's business): at once if it is free.
    #[inline]
    fn acquire(&self) -> spin::MutexGuard<'_, T> {
        match self.inner.try_lock() {
            Some(guard) => guard,
            None => self.wait(),
        }
    }

    /// The lock was taken: wait for it, reading until it looks free (so that waiters
    /// do not bounce its line with writes), then try again.
    #[cold]
    #[inline(never)]
    fn wait(&self) -> spin::MutexGuard<'_, T> {
        let mut spins = 0u32;
        loop {
            while self.inner.is_locked() {
                A::relax(spins);
                spins = spins.saturating_add(1);
            }
            if let Some(guard) = self.inner.try_lock() {
                return guard;
            }
        }
    }

    /// Disables interrupts and takes the lock if it is free; otherwise restores
    /// interrupts and returns `None`. For callers that already hold another allocator
    /// lock, where waiting could close a cycle.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::HostArch;
    /// use kmem::sync::IrqMutex;
    /// let m = IrqMutex::<HostArch, u32>::new(0);
    /// let held = m.lock();
    /// assert!(m.try_lock().is_none());
    /// drop(held);
    /// assert!(m.try_lock().is_some());
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, A, T>> {
        let irq = A::irq_save();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqMutexGuard {
                guard: ManuallyDrop::new(guard),
                irq,
            }),
            None => {
                A::irq_restore(irq);
                None
            }
        }
    }
}

/// Holding a lock across calls, without a guard: for the hosted platform's `fork`
/// handlers, which take every allocator lock in one call and give them back in another.
/// Only where there is no interrupt state to restore (`IrqState = ()`), which a guard
/// would otherwise carry.
#[cfg(any(test, feature = "hosted"))]
impl<A: Arch<IrqState = ()>, T> IrqMutex<A, T> {
    /// Spins until the lock is free and keeps it, with no guard; returns the value's
    /// address, the holder's to use until [`IrqMutex::release`].
    pub(crate) fn hold(&self) -> *mut T {
        spin::MutexGuard::leak(self.acquire())
    }

    /// Unlocks a lock taken with [`IrqMutex::hold`].
    ///
    /// # Safety
    /// The lock is held by a `hold` of this thread (or of the thread this process was
    /// forked from), and nothing reached its value through that hold since.
    pub(crate) unsafe fn release(&self) {
        // SAFETY: the caller's contract: the lock is held, by no guard.
        unsafe { self.inner.force_unlock() }
    }
}

/// Holds an [`IrqMutex`]; unlocks, then restores interrupts, when dropped.
///
/// # Examples
/// ```
/// use kmem::hosted::HostArch;
/// use kmem::sync::{IrqMutex, IrqMutexGuard};
/// let m = IrqMutex::<HostArch, u32>::new(1);
/// let mut g: IrqMutexGuard<'_, HostArch, u32> = m.lock();
/// *g *= 5;
/// drop(g);
/// assert_eq!(*m.lock(), 5);
/// ```
pub struct IrqMutexGuard<'a, A: Arch, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    irq: A::IrqState,
}

impl<A: Arch, T> Drop for IrqMutexGuard<'_, A, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `guard` is dropped exactly once, here, and never touched again.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        // Only now: interrupts must stay off until the lock is released.
        A::irq_restore(self.irq);
    }
}

impl<A: Arch, T> Deref for IrqMutexGuard<'_, A, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<A: Arch, T> DerefMut for IrqMutexGuard<'_, A, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
