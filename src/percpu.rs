//! Per-CPU data: one value per CPU in caller-provided memory, reached by its owner
//! without an atomic read-modify-write, and by anyone else under the slot's lock.
//!
//! The owning CPU reaches its slot in O(1) from [`Arch::cpu_id`]. Slots are cache-line
//! aligned so that CPUs never share a line. Every slot has a lock (an [`IrqMutex`], held
//! with interrupts off so that an interrupt handler on the same CPU can't see the slot
//! half-updated); who takes it depends on the platform:
//!
//! - **Owned ids** (`Arch::OWNED_IDS > 0`: every CPU on bare metal, threads with an
//!   exclusive id on the hosted platform): the owner disables interrupts and enters the
//!   slot of its id with plain stores — `busy = true`, [`Arch::owner_fence`], then a look
//!   at `mode`. Anyone else (a drain from another CPU: shrink, reap, destroy, figures; or
//!   a hosted thread whose id folds onto the slot) takes the lock, sets a bit in `mode`,
//!   runs [`Arch::remote_barrier`] and waits for `busy` to clear. With a full fence on
//!   each side (bare metal) this is Dekker's handshake; hosted owners issue only a
//!   compiler fence and the outsider's barrier is `membarrier(2)`, which fences every
//!   running thread — the expensive half on the rare side. Either way, either the
//!   owner's `busy = true` is visible to the outsider (who waits), or the owner's look at
//!   `mode` sees the bit (and the owner takes the lock instead).
//! - **No owned ids** (`OWNED_IDS == 0`): everyone takes the lock, always.
//!
//! `mode` has two bits. `REMOTE` is set for one drain and cleared after it, so drains
//! cost the owner nothing once they are over. `SHARED` is set when a thread that is not
//! the owner uses the slot as its own (more live threads than slots): from then on the
//! owner takes the lock too, and the sharing threads need no barrier — the slot behaves
//! exactly as the bare-metal one. The owner clears it again, under the lock, once it has
//! entered `SHARE_DECAY` times in a row with no sharer in between: threads come and
//! go, and one that briefly had no slot of its own (a new thread whose predecessor had
//! not yet given its id back) must not cost the owner its lock-free entry for good. A
//! sharer that comes after sets it again, with a barrier, as the first one did.
//!
//! Values are only touched through the guard these functions return, which proves one of
//! the two forms of exclusive access above.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use crate::arch::Arch;
use crate::sync::{IrqMutex, IrqMutexGuard};

/// `mode` bit: an outsider holds the slot for one drain.
const REMOTE: u8 = 1;
/// `mode` bit: non-owners use the slot as theirs; everyone takes the lock.
const SHARED: u8 = 2;
/// Owner entries in a row, with no sharer between them, after which the owner clears
/// `SHARED`: enough that a sharer's next barrier costs the owner little per entry.
const SHARE_DECAY: u32 = 4096;

#[repr(align(64))]
struct Slot<A: Arch, T> {
    /// Set by the owner, with plain stores, while it is inside the slot lock-free.
    busy: AtomicBool,
    /// `REMOTE | SHARED`; written only under `lock`.
    mode: AtomicU8,
    /// The owner's locked entries since a sharer's, while `SHARED` (only under `lock`).
    owner_streak: AtomicU32,
    lock: IrqMutex<A, ()>,
    value: UnsafeCell<T>,
}

/// One `T` per CPU. Values are never dropped: `T` holds plain data (counts, indices,
/// pointers into allocator-owned memory) whose owner tears it down explicitly.
///
/// `SPREAD` picks the layout: `false`, the slots side by side in one area
/// ([`PerCpu::init_at`]); `true`, each slot wherever its CPU wants it (its NUMA node's
/// memory) and found through a table of slot addresses ([`PerCpu::init_spread`]), which
/// costs a load on every entry. The choice is a type parameter so that the packed layout
/// pays nothing for the other.
pub struct PerCpu<A: Arch, T, const SPREAD: bool = false> {
    /// Packed: the first slot. Spread: the table of `n` slot addresses.
    base: *mut u8,
    n: u32,
    /// min(n, [`Arch::OWNED_IDS`]): CPU id `id` exclusively owns slot `id` iff
    /// `id < owned` (one compare on the fast paths instead of two).
    owned: u32,
    _slots: PhantomData<*mut Slot<A, T>>,
}

// SAFETY: a slot's value is only reached through a `SlotGuard`, which holds either the
// slot's lock or its owner's exclusive lock-free entry (see the module doc).
unsafe impl<A: Arch, T: Send, const SPREAD: bool> Send for PerCpu<A, T, SPREAD> {}
// SAFETY: as for Send.
unsafe impl<A: Arch, T: Send, const SPREAD: bool> Sync for PerCpu<A, T, SPREAD> {}

/// A slot's value before its CPU has entered it.
fn new_slot<A: Arch, T>(value: T) -> Slot<A, T> {
    Slot {
        busy: AtomicBool::new(false),
        mode: AtomicU8::new(0),
        owner_streak: AtomicU32::new(0),
        lock: IrqMutex::new(()),
        value: UnsafeCell::new(value),
    }
}

fn check_cpus(n: usize) {
    assert!(
        n > 0 && n <= u32::MAX as usize,
        "PerCpu needs 1 to 2^32 - 1 CPUs"
    );
}

impl<A: Arch, T> PerCpu<A, T> {
    /// Bytes of memory [`PerCpu::init_at`] needs for `n` CPUs.
    pub const fn bytes_needed(n: usize) -> usize {
        n * size_of::<Slot<A, T>>()
    }

    /// Places `n` slots at `mem`, slot `i` holding `init(i)`.
    ///
    /// # Safety
    /// `mem` must be writable for [`PerCpu::bytes_needed`]`(n)` bytes, aligned to
    /// [`PerCpu::align`], and used by nothing else while the `PerCpu` lives.
    pub unsafe fn init_at(mem: *mut u8, n: usize, mut init: impl FnMut(usize) -> T) -> Self {
        check_cpus(n);
        let slots = mem.cast::<Slot<A, T>>();
        for i in 0..n {
            // SAFETY: i < n and the caller provided room for n aligned slots.
            unsafe { slots.add(i).write(new_slot(init(i))) };
        }
        PerCpu {
            base: mem,
            n: n as u32,
            owned: n.min(A::OWNED_IDS) as u32,
            _slots: PhantomData,
        }
    }
}

impl<A: Arch, T> PerCpu<A, T, true> {
    /// Bytes of one slot of the spread layout ([`PerCpu::init_spread`]).
    pub const fn slot_bytes() -> usize {
        size_of::<Slot<A, T>>()
    }

    /// Places `n` slots, slot `i` at `slot_at(i)` holding `init(i)`, and their addresses
    /// in the table at `table`.
    ///
    /// # Safety
    /// `table` must be writable for [`PerCpu::table_bytes`]`(n)` bytes, aligned for a
    /// pointer; each `slot_at(i)` writable for [`PerCpu::slot_bytes`], aligned to
    /// [`PerCpu::align`], disjoint from the others and from the table; all of it used by
    /// nothing else while the `PerCpu` lives.
    pub unsafe fn init_spread(
        table: *mut *mut u8,
        n: usize,
        slot_at: impl Fn(usize) -> *mut u8,
        mut init: impl FnMut(usize) -> T,
    ) -> Self {
        check_cpus(n);
        for i in 0..n {
            let slot = slot_at(i);
            // SAFETY: the caller's contract: room for one aligned slot at `slot`, and
            // for n pointers at `table`.
            unsafe {
                slot.cast::<Slot<A, T>>().write(new_slot(init(i)));
                table.add(i).write(slot);
            }
        }
        PerCpu {
            base: table.cast(),
            n: n as u32,
            owned: n.min(A::OWNED_IDS) as u32,
            _slots: PhantomData,
        }
    }

    /// Where CPU `i`'s value lives (for checking its placement).
    #[cfg(test)]
    pub fn value_addr(&self, i: usize) -> usize {
        self.slot(i).value.get() as usize
    }
}

impl<A: Arch, T, const SPREAD: bool> PerCpu<A, T, SPREAD> {
    /// Alignment a slot's memory must have.
    pub const fn align() -> usize {
        align_of::<Slot<A, T>>()
    }

    /// Slot `i`.
    ///
    /// # Safety
    /// `i` < `n`.
    #[inline(always)]
    unsafe fn slot_unchecked(&self, i: usize) -> &Slot<A, T> {
        if SPREAD {
            // SAFETY: i < n (the caller's contract), and init_spread wrote n addresses of
            // initialised slots that live as long as self.
            unsafe { &**self.base.cast::<*const Slot<A, T>>().add(i) }
        } else {
            // SAFETY: i < n, and init_at initialised n slots that live as long as self.
            unsafe { &*self.base.cast::<Slot<A, T>>().add(i) }
        }
    }

    /// Number of CPU slots.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    #[inline]
    fn slot(&self, i: usize) -> &Slot<A, T> {
        assert!(i < self.len(), "cpu {i} out of range");
        // SAFETY: i < n.
        unsafe { self.slot_unchecked(i) }
    }

    /// The running CPU's value, held exclusively, with interrupts off (lock-free for the
    /// slot's owner).
    #[inline]
    pub fn local(&self) -> SlotGuard<'_, A, T> {
        match self.enter() {
            Ok((slot, irq)) => SlotGuard {
                slot,
                how: How::Owner(irq),
            },
            Err(guard) => guard,
        }
    }

    /// Runs `f` on the running CPU's value if the running CPU owns its slot and no
    /// outsider is in it (the lock-free path of [`PerCpu::local`]); otherwise runs
    /// nothing and returns `None`, and the caller takes its slow path through
    /// [`PerCpu::local`]. `f` has one call site, so it inlines into the caller.
    #[inline(always)]
    pub fn try_owned<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        match self.enter_lock_free(A::cpu_id_fast) {
            Entry::Owner(slot, irq) => {
                // SAFETY: `enter_lock_free` set `busy` and saw no outsider: the value is ours
                // alone until `busy` clears (module doc).
                let r = f(unsafe { &mut *slot.value.get() });
                // Release: an outsider that sees `busy` clear sees our writes.
                slot.busy.store(false, Ordering::Release);
                A::irq_restore(irq);
                Some(r)
            }
            Entry::Blocked(slot, irq) => {
                Self::leave(slot, irq);
                None
            }
            Entry::NotOwner(_) => None,
        }
    }

    /// Enters the running CPU's slot: `Ok` for its owner, lock-free (`busy` set,
    /// interrupts off, with the state to restore), or a locked guard otherwise.
    #[inline(always)]
    fn enter(&self) -> Result<OwnerEntry<'_, A, T>, SlotGuard<'_, A, T>> {
        match self.enter_lock_free(A::cpu_id) {
            Entry::Owner(slot, irq) => Ok((slot, irq)),
            Entry::Blocked(slot, irq) => Err(Self::owner_locked(slot, irq)),
            Entry::NotOwner(id) => Err(self.outsider(self.slot(id % self.len()), SHARED)),
        }
    }

    /// The owner's lock-free entry, if the running CPU (by `cpu_id`, [`Arch::cpu_id`] or
    /// [`Arch::cpu_id_fast`]) owns its slot and no outsider is in it. On `NotOwner`
    /// interrupts are back as they were; on `Blocked` the caller must [`PerCpu::leave`]
    /// (or queue on the lock).
    #[inline(always)]
    fn enter_lock_free(&self, cpu_id: fn() -> usize) -> Entry<'_, A, T> {
        // Interrupts off first: the id must not change under us, and an interrupt
        // handler on this CPU must not enter the slot while we are in it.
        let irq = A::irq_save();
        let id = cpu_id();
        if id >= self.owned as usize {
            A::irq_restore(irq);
            return Entry::NotOwner(id);
        }
        // SAFETY: id < owned ≤ n.
        let slot = unsafe { self.slot_unchecked(id) };
        slot.busy.store(true, Ordering::Relaxed);
        // Paired with the outsider's barrier (module doc): the store above is ordered
        // before the load below on every path an outsider can observe.
        A::owner_fence();
        // Acquire: see what an outsider that held the slot before us wrote.
        if slot.mode.load(Ordering::Acquire) == 0 {
            Entry::Owner(slot, irq)
        } else {
            Entry::Blocked(slot, irq)
        }
    }

    /// Undoes a lock-free entry that found an outsider in.
    #[inline(always)]
    fn leave(slot: &Slot<A, T>, irq: A::IrqState) {
        slot.busy.store(false, Ordering::Release);
        A::irq_restore(irq);
    }

    /// The owner found an outsider in (or the slot shared): it queues on the lock too.
    #[cold]
    #[inline(never)]
    fn owner_locked(slot: &Slot<A, T>, irq: A::IrqState) -> SlotGuard<'_, A, T> {
        Self::leave(slot, irq);
        let guard = slot.lock.lock();
        let mode = slot.mode.load(Ordering::Relaxed);
        if mode & SHARED != 0 {
            let streak = slot.owner_streak.load(Ordering::Relaxed) + 1;
            if streak >= SHARE_DECAY {
                // No sharer for long: enter lock-free again from the next call. Release:
                // the owner's Acquire load of `mode` sees what sharers wrote.
                slot.mode.store(mode & !SHARED, Ordering::Release);
                slot.owner_streak.store(0, Ordering::Relaxed);
            } else {
                slot.owner_streak.store(streak, Ordering::Relaxed);
            }
        }
        SlotGuard {
            slot,
            how: How::Locked(guard, 0),
        }
    }

    /// CPU `i`'s value, held exclusively (for drains from another CPU).
    #[inline]
    pub fn cpu(&self, i: usize) -> SlotGuard<'_, A, T> {
        self.outsider(self.slot(i), REMOTE)
    }

    /// Runs `f` on every CPU's value that can be held without waiting, as [`PerCpu::cpu`]
    /// holds it, and skips the others: a slot whose lock is taken, or whose owner is
    /// inside it lock-free and does not leave within a short spin. For callers that
    /// hold other allocator locks (reclaim when pages run short), for which waiting on a
    /// slot could close a cycle: the slot's holder may be waiting for one of those locks.
    ///
    /// Slots are taken a batch at a time — locks tried, `REMOTE` set — so that one
    /// [`Arch::remote_barrier`] serves the batch (on the hosted platform the barrier is a
    /// system call); `f` runs on them in reverse order, and each is released right
    /// after, so that every lock gives back the interrupt state it found.
    pub fn try_each(&self, mut f: impl FnMut(usize, &mut T)) {
        const BATCH: usize = 16;
        for base in (0..self.len()).step_by(BATCH) {
            let end = (base + BATCH).min(self.len());
            let mut held: [Option<IrqMutexGuard<'_, A, ()>>; BATCH] = [const { None }; BATCH];
            let mut flagged = 0u32;
            for i in base..end {
                let slot = self.slot(i);
                let Some(guard) = slot.lock.try_lock() else {
                    continue;
                };
                let mode = slot.mode.load(Ordering::Relaxed);
                if A::OWNED_IDS != 0 && mode & SHARED == 0 {
                    slot.mode.store(mode | REMOTE, Ordering::Relaxed);
                    flagged |= 1 << (i - base);
                }
                held[i - base] = Some(guard);
            }
            if flagged != 0 {
                A::remote_barrier();
            }
            for i in (base..end).rev() {
                let Some(guard) = held[i - base].take() else {
                    continue;
                };
                let slot = self.slot(i);
                let bit = if flagged & 1 << (i - base) != 0 {
                    REMOTE
                } else {
                    0
                };
                if bit != 0 && !Self::owner_leaves(slot) {
                    // The owner stays inside, perhaps waiting for a lock our caller
                    // holds: leave it be. Release: the owner's Acquire load of `mode`.
                    let m = slot.mode.load(Ordering::Relaxed);
                    slot.mode.store(m & !REMOTE, Ordering::Release);
                    continue;
                }
                let mut g = SlotGuard {
                    slot,
                    how: How::Locked(guard, bit),
                };
                f(i, &mut g);
            }
        }
    }

    /// Whether the owner of `slot`, which an outsider has flagged, is out of it or
    /// leaves within a short spin (lock-free sections are a few dozen instructions,
    /// unless the owner waits for a lock).
    fn owner_leaves(slot: &Slot<A, T>) -> bool {
        for spins in 0..256 {
            // Acquire: see everything the owner wrote before it cleared `busy`.
            if !slot.busy.load(Ordering::Acquire) {
                return true;
            }
            A::relax(spins);
        }
        false
    }

    /// Waits until the owner of `slot`, which an outsider has flagged, is out of it. The
    /// owner may be descheduled inside (a hosted thread): [`Arch::relax`] lets it run.
    fn wait_owner_out(slot: &Slot<A, T>) {
        let mut spins = 0u32;
        // Acquire: see everything the owner wrote before it cleared `busy`.
        while slot.busy.load(Ordering::Acquire) {
            A::relax(spins);
            spins = spins.saturating_add(1);
        }
    }

    /// Enters `slot` through its lock; where owners enter lock-free, also sets `bit` in
    /// the slot's mode, fences and waits for the owner to leave.
    #[cold]
    #[inline(never)]
    fn outsider<'a>(&self, slot: &'a Slot<A, T>, bit: u8) -> SlotGuard<'a, A, T> {
        let guard = slot.lock.lock();
        if A::OWNED_IDS == 0 {
            return SlotGuard {
                slot,
                how: How::Locked(guard, 0),
            };
        }
        let mode = slot.mode.load(Ordering::Relaxed);
        if bit == SHARED {
            slot.owner_streak.store(0, Ordering::Relaxed);
        }
        if mode & SHARED != 0 {
            // The owner already takes the lock: we hold it, so we are alone.
            return SlotGuard {
                slot,
                how: How::Locked(guard, 0),
            };
        }
        slot.mode.store(mode | bit, Ordering::Relaxed);
        A::remote_barrier();
        Self::wait_owner_out(slot);
        SlotGuard {
            slot,
            how: How::Locked(guard, bit & REMOTE),
        }
    }
}

/// Every slot held across calls, for the hosted platform's `fork` handlers (see
/// `crate::hosted`): where there is no interrupt state to restore.
#[cfg(any(test, feature = "hosted"))]
impl<A: Arch<IrqState = ()>, T, const SPREAD: bool> PerCpu<A, T, SPREAD> {
    /// Holds every slot as [`PerCpu::cpu`] does — each lock taken in index order,
    /// `REMOTE` set — with one [`Arch::remote_barrier`] for all, then waits until no
    /// owner is inside. Until [`PerCpu::release_all`], no thread is in any slot.
    pub(crate) fn hold_all(&self) {
        for i in 0..self.len() {
            let slot = self.slot(i);
            slot.lock.hold();
            let mode = slot.mode.load(Ordering::Relaxed);
            if A::OWNED_IDS != 0 && mode & SHARED == 0 {
                slot.mode.store(mode | REMOTE, Ordering::Relaxed);
            }
        }
        if A::OWNED_IDS != 0 {
            A::remote_barrier();
        }
        for i in 0..self.len() {
            Self::wait_owner_out(self.slot(i));
        }
    }

    /// Gives back every slot [`PerCpu::hold_all`] held.
    ///
    /// # Safety
    /// The slots are held by a `hold_all` of this thread (or of the thread this process
    /// was forked from) and not released since.
    pub(crate) unsafe fn release_all(&self) {
        for i in 0..self.len() {
            let slot = self.slot(i);
            // Release: the owner's Acquire load of `mode` sees what was done meanwhile.
            let m = slot.mode.load(Ordering::Relaxed);
            slot.mode.store(m & !REMOTE, Ordering::Release);
            // SAFETY: the caller's contract: hold_all took this lock.
            unsafe { slot.lock.release() };
        }
    }
}

/// The owner's lock-free hold on its slot: the slot and the interrupt state to restore.
type OwnerEntry<'a, A, T> = (&'a Slot<A, T>, <A as Arch>::IrqState);

/// How a lock-free entry went.
enum Entry<'a, A: Arch, T> {
    /// In, lock-free.
    Owner(&'a Slot<A, T>, A::IrqState),
    /// The slot is the running CPU's, but an outsider is in or the slot is shared.
    Blocked(&'a Slot<A, T>, A::IrqState),
    /// The running CPU (this id) does not own a slot.
    NotOwner(usize),
}

enum How<'a, A: Arch> {
    /// The slot's owner, in lock-free (`busy` set), with the interrupt state to restore.
    Owner(A::IrqState),
    /// Under the slot's lock; the `mode` bits to clear on the way out.
    Locked(IrqMutexGuard<'a, A, ()>, u8),
}

/// Exclusive access to one CPU's value; released when dropped.
pub struct SlotGuard<'a, A: Arch, T> {
    slot: &'a Slot<A, T>,
    how: How<'a, A>,
}

impl<A: Arch, T> Drop for SlotGuard<'_, A, T> {
    #[inline]
    fn drop(&mut self) {
        match &self.how {
            How::Owner(irq) => {
                // Release: an outsider that sees `busy` clear sees our writes to the value.
                self.slot.busy.store(false, Ordering::Release);
                A::irq_restore(*irq);
            }
            How::Locked(_, clear) => {
                if *clear != 0 {
                    // Release: the owner's Acquire load of `mode` sees our writes.
                    let m = self.slot.mode.load(Ordering::Relaxed);
                    self.slot.mode.store(m & !clear, Ordering::Release);
                }
                // The lock guard is dropped after this, with the struct's fields.
            }
        }
    }
}

impl<A: Arch, T> Deref for SlotGuard<'_, A, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access to the value (module doc).
        unsafe { &*self.slot.value.get() }
    }
}

impl<A: Arch, T> DerefMut for SlotGuard<'_, A, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for Deref; `&mut self` makes this the only reference.
        unsafe { &mut *self.slot.value.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosted::HostArch;

    /// How the draining thread takes the slots.
    #[derive(Clone, Copy)]
    enum Drain {
        /// Each slot with `cpu`, waiting for it.
        Each,
        /// Those it can have at once, with `try_each`.
        Try,
    }

    /// Owners bump their own counters with `bump` while another thread drains every slot
    /// over and over; not one increment may be lost.
    fn drains_never_race_owners(bump: fn(&PerCpu<HostArch, u64>)) {
        drains_never_race(bump, Drain::Each);
    }

    fn drains_never_race(bump: fn(&PerCpu<HostArch, u64>), how: Drain) {
        const N: usize = 4;
        // Miri interprets every step of three spinning threads: far fewer rounds there.
        const ROUNDS: u64 = if cfg!(miri) { 300 } else { 200_000 };
        let mut mem = vec![0u8; PerCpu::<HostArch, u64>::bytes_needed(N) + 64];
        let at = mem.as_mut_ptr().wrapping_add(mem.as_ptr().align_offset(64));
        // SAFETY: the buffer is large enough, aligned above, and outlives `pc`.
        let pc = unsafe { PerCpu::<HostArch, u64>::init_at(at, N, |_| 0) };
        let drained = std::sync::atomic::AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..ROUNDS {
                            bump(&pc);
                        }
                    })
                })
                .collect();
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match how {
                        Drain::Each => {
                            for i in 0..N {
                                let mut v = pc.cpu(i);
                                drained.fetch_add(core::mem::take(&mut *v), Ordering::Relaxed);
                            }
                        }
                        Drain::Try => pc.try_each(|_, v| {
                            drained.fetch_add(core::mem::take(v), Ordering::Relaxed);
                        }),
                    }
                }
            });
            for w in workers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        let left: u64 = (0..N).map(|i| *pc.cpu(i)).sum();
        assert_eq!(drained.into_inner() + left, 3 * ROUNDS);
    }

    #[test]
    fn drains_never_race_lock_free_owners() {
        drains_never_race_owners(|pc| *pc.local() += 1);
    }

    /// The fast paths' form: `try_owned`, and `local` when it declines (a drain in, or
    /// the thread's first call, before it has claimed an id).
    #[test]
    fn drains_never_race_try_owned() {
        drains_never_race_owners(|pc| {
            if pc.try_owned(|v| *v += 1).is_none() {
                *pc.local() += 1;
            }
        });
    }

    /// Reclaim's form: `try_each`, which skips slots it cannot have at once and backs
    /// out of those whose owner stays inside.
    #[test]
    fn try_each_never_races_owners() {
        drains_never_race(
            |pc| {
                if pc.try_owned(|v| *v += 1).is_none() {
                    *pc.local() += 1;
                }
            },
            Drain::Try,
        );
    }

    /// More threads than slots: sharers and owners on the same slots, owners clearing
    /// `SHARED` whenever sharers pause, sharers setting it again; not one increment may
    /// be lost.
    #[test]
    fn sharers_never_race_owners() {
        const N: usize = 2;
        const THREADS: u64 = 6;
        const ROUNDS: u64 = if cfg!(miri) { 300 } else { 100_000 };
        let mut mem = vec![0u8; PerCpu::<HostArch, u64>::bytes_needed(N) + 64];
        let at = mem.as_mut_ptr().wrapping_add(mem.as_ptr().align_offset(64));
        // SAFETY: the buffer is large enough, aligned above, and outlives `pc`.
        let pc = unsafe { PerCpu::<HostArch, u64>::init_at(at, N, |_| 0) };
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let pc = &pc;
                s.spawn(move || {
                    for i in 0..ROUNDS {
                        if pc.try_owned(|v| *v += 1).is_none() {
                            *pc.local() += 1;
                        }
                        // Some threads pause now and then, so that owners see runs
                        // with no sharer and give up SHARED, which sharers set again.
                        if t % 2 == 1 && i % 10_000 == 0 {
                            std::thread::yield_now();
                        }
                    }
                });
            }
        });
        let total: u64 = (0..N).map(|i| *pc.cpu(i)).sum();
        assert_eq!(total, THREADS * ROUNDS);
    }

    /// A slot shared once gives its owner back the lock-free entry after `SHARE_DECAY`
    /// locked entries with no sharer; a sharer's next entry takes it away again.
    #[test]
    fn shared_decays_back_to_lock_free() {
        if !crate::hosted::owned_slots() {
            return; // every entry takes the lock here
        }
        let me = HostArch::cpu_id();
        if me >= HostArch::OWNED_IDS {
            return; // more live threads than ids: this one owns no slot
        }
        let n = me + 1;
        let mut mem = vec![0u8; PerCpu::<HostArch, u64>::bytes_needed(n) + 64];
        let at = mem.as_mut_ptr().wrapping_add(mem.as_ptr().align_offset(64));
        // SAFETY: the buffer is large enough, aligned above, and outlives `pc`.
        let pc = unsafe { PerCpu::<HostArch, u64>::init_at(at, n, |_| 0) };
        let share = || *pc.outsider(pc.slot(me), SHARED) += 1;
        assert!(pc.try_owned(|v| *v += 1).is_some(), "owned, never shared");
        share();
        assert!(
            pc.try_owned(|v| *v += 1).is_none(),
            "shared: the owner locks"
        );
        for _ in 0..SHARE_DECAY {
            *pc.local() += 1;
        }
        assert!(
            pc.try_owned(|v| *v += 1).is_some(),
            "decayed: lock-free again"
        );
        share();
        assert!(pc.try_owned(|v| *v += 1).is_none(), "shared again");
        assert_eq!(*pc.cpu(me), 4 + u64::from(SHARE_DECAY));
    }

    /// `try_each` skips a slot whose lock is held, and visits every other one.
    #[test]
    fn try_each_skips_a_held_slot() {
        const N: usize = 20; // more than one batch
        let mut mem = vec![0u8; PerCpu::<HostArch, u64>::bytes_needed(N) + 64];
        let at = mem.as_mut_ptr().wrapping_add(mem.as_ptr().align_offset(64));
        // SAFETY: the buffer is large enough, aligned above, and outlives `pc`.
        let pc = unsafe { PerCpu::<HostArch, u64>::init_at(at, N, |i| i as u64) };
        let held = pc.cpu(17);
        let mut seen = Vec::new();
        pc.try_each(|i, v| {
            assert_eq!(*v, i as u64);
            seen.push(i);
        });
        drop(held);
        seen.sort();
        assert_eq!(seen, (0..N).filter(|&i| i != 17).collect::<Vec<_>>());
    }
}
