//! Magazines and the depot (Bonwick's magazine layer; Linux 7's sheaves and barn).
//!
//! A magazine is a stack of up to `cap` free objects in memory its cache carves. Each
//! CPU holds two, a *loaded* one and a *previous* one ([`CpuMagazines`]): allocation pops
//! the loaded magazine and free pushes onto it, with interrupts off and no lock another
//! CPU normally takes. When the loaded magazine runs empty (or full) and the previous one
//! is full (or empty), the two swap, still without a lock. Only when both are empty (or
//! both full) does the CPU go to its cache's [`Depot`], which holds the cache's other
//! magazines — full ones for allocation, empty ones for frees — and exchange one whole
//! magazine for another in O(1) under the depot lock. Only when the depot has none of
//! the kind needed do objects move one by one, between a magazine and the slabs.
//!
//! Magazines are conserved: a cache has `2 × cpus + depot` of them, made with the cache;
//! every exchange gives one for one, so each CPU always holds exactly two and the depot
//! the rest. A full magazine in the depot is always completely full, so an exchange knows
//! its count without reading it.

use super::alien::AlienBatch;

/// Most objects a magazine holds: about half of Linux SLAB's per-CPU limit for small
/// objects (a CPU holds two), and exactly seven cache lines, so that a small cache's
/// arrays — slots, two magazines per CPU and the depot's — fit the two pages its arrays
/// took before magazines (on four CPUs; 60 objects, a line more each, took four).
pub const MAG_MAX: usize = 56;

/// One CPU's two magazines of one cache. Its CPU slot (`PerCpu`) is a cache line aligned
/// to a line, which holds the slot's entry flags beside this: one line per fast path.
/// The loaded magazine's count and entries are here, not in the magazine, so the fast
/// paths read nothing else.
#[repr(C)]
pub struct CpuMagazines {
    /// Objects in the loaded magazine.
    avail: u32,
    /// Objects a magazine holds.
    cap: u32,
    /// Objects in the previous magazine.
    prev_avail: u32,
    /// The free fast path's limit ([`CpuMagazines::try_push_fast`]): `cap` on one
    /// node, where that push needs no node check; 0 on several, where the object's node
    /// is checked only after it refuses ([`CpuMagazines::try_push_home`]) — one node
    /// pays no check.
    fast_cap: u32,
    /// Set by allocation; cleared by a reap pass, which drains CPUs it finds clear.
    touched: bool,
    /// The CPU's NUMA node: the magazines hold only objects of that node's slabs.
    node: u8,
    /// The cache's NUMA nodes: `aliens` holds one batch per node (the own one unused).
    nodes: u8,
    /// The loaded magazine's `cap` entries.
    loaded: *mut usize,
    /// The previous magazine's `cap` entries.
    previous: *mut usize,
    /// On several nodes, `nodes` alien batches, by node (dangling on one node).
    aliens: *mut AlienBatch,
}

// SAFETY: the magazines point into memory the owning cache holds for its whole life; they
// are only used through the CPU's slot (`PerCpu`) or under the depot lock.
unsafe impl Send for CpuMagazines {}

impl CpuMagazines {
    /// Two empty magazines of up to `cap` objects, for a CPU of NUMA node `node` of
    /// `nodes`.
    ///
    /// # Safety
    /// `loaded` and `previous` must each be writable for `cap` words, 8-aligned, for the
    /// life of every `CpuMagazines` and [`Depot`] that will hold them, and used by
    /// nothing else; on several `nodes`, `aliens` must point to `nodes` initialised
    /// batches, used only through this value, for its life.
    pub const unsafe fn new(
        cap: usize,
        loaded: *mut usize,
        previous: *mut usize,
        node: usize,
        nodes: usize,
        aliens: *mut AlienBatch,
    ) -> Self {
        assert!(cap > 0 && cap <= MAG_MAX, "a magazine holds 1 to MAG_MAX");
        CpuMagazines {
            avail: 0,
            cap: cap as u32,
            prev_avail: 0,
            fast_cap: if nodes > 1 { 0 } else { cap as u32 },
            touched: false,
            node: node as u8,
            nodes: nodes as u8,
            aliens,
            loaded,
            previous,
        }
    }

    /// Bytes for one magazine of `cap` objects, rounded to a cache line.
    pub const fn magazine_bytes(cap: usize) -> usize {
        (cap * size_of::<usize>()).next_multiple_of(64)
    }

    /// Objects both magazines hold.
    #[inline]
    pub fn cached(&self) -> usize {
        (self.avail + self.prev_avail) as usize
    }

    /// The CPU's NUMA node, whose objects alone the magazines hold.
    #[inline]
    pub fn node(&self) -> usize {
        self.node as usize
    }

    /// The alien batch of node `n` (another node than the CPU's).
    pub fn alien(&mut self, n: usize) -> &mut AlienBatch {
        assert!(
            n < self.nodes as usize && n != self.node(),
            "no alien batch for node {n}"
        );
        // SAFETY: `new`'s contract: `nodes` batches, ours alone while `self` is borrowed.
        unsafe { &mut *self.aliens.add(n) }
    }

    /// Every other node's alien batch, with its node.
    pub fn aliens(&self) -> impl Iterator<Item = (usize, &AlienBatch)> {
        let nodes = if self.nodes > 1 {
            self.nodes as usize
        } else {
            0
        };
        (0..nodes).filter(|&n| n != self.node()).map(|n| {
            // SAFETY: as in `alien`; shared while `self` is.
            (n, unsafe { &*self.aliens.add(n) })
        })
    }

    /// Objects a magazine holds.
    #[inline]
    pub fn cap(&self) -> usize {
        self.cap as usize
    }

    /// Returns whether the CPU allocated since the last call, and clears the mark.
    pub fn take_touched(&mut self) -> bool {
        core::mem::replace(&mut self.touched, false)
    }

    /// Pops the loaded magazine.
    #[inline]
    pub fn pop(&mut self) -> Option<usize> {
        self.avail = self.avail.checked_sub(1)?;
        self.touched = true;
        // SAFETY: avail never exceeds cap (the pushes check), so the decremented avail
        // indexes one of the loaded magazine's entries, written by the push that counted it.
        Some(unsafe { self.loaded.add(self.avail as usize).read() })
    }

    /// Pops up to `n` objects from the loaded magazine at once: they are the returned
    /// slice's, newest last, until the next push.
    #[inline]
    pub fn take_newest(&mut self, n: usize) -> &[usize] {
        let n = n.min(self.avail as usize);
        self.avail -= n as u32;
        self.touched |= n > 0;
        // SAFETY: entries avail..avail + n were written by the pushes that counted them,
        // and nothing writes them while the returned borrow of `self` lives.
        unsafe { slice(self.loaded.add(self.avail as usize), n as u32) }
    }

    /// Pushes onto the loaded magazine unless it is full; returns whether it did.
    #[inline]
    pub fn try_push(&mut self, obj: usize) -> bool {
        if self.avail >= self.cap {
            return false;
        }
        // SAFETY: avail < cap, within the loaded magazine.
        unsafe { self.loaded.add(self.avail as usize).write(obj) };
        self.avail += 1;
        true
    }

    /// [`CpuMagazines::try_push`] for the free fast path: refuses every push on several
    /// nodes, where a free must first learn whether the object is the CPU's node's
    /// ([`CpuMagazines::try_push_home`]).
    #[inline]
    pub fn try_push_fast(&mut self, obj: usize) -> bool {
        if self.avail >= self.fast_cap {
            return false;
        }
        // SAFETY: avail < fast_cap ≤ cap, within the loaded magazine.
        unsafe { self.loaded.add(self.avail as usize).write(obj) };
        self.avail += 1;
        true
    }

    /// The free fast path's second try, after [`CpuMagazines::try_push_fast`] refused:
    /// on several nodes, pushes `obj` onto the loaded magazine when `home` — called only
    /// there — names the CPU's node and the magazine has room; returns whether it did.
    /// One node never calls `home` (its pushes were refused for a full magazine).
    #[inline(always)]
    pub fn try_push_home(&mut self, obj: usize, home: impl FnOnce() -> usize) -> bool {
        self.nodes > 1 && home() == self.node() && self.try_push(obj)
    }

    /// Swaps the loaded and previous magazines when that gives the loaded one an object
    /// to pop; returns whether it did.
    #[inline]
    pub fn swap_for_alloc(&mut self) -> bool {
        self.avail == 0 && self.prev_avail > 0 && {
            self.swap();
            true
        }
    }

    /// Swaps the loaded and previous magazines when that gives the loaded one room for a
    /// push; returns whether it did.
    #[inline]
    pub fn swap_for_free(&mut self) -> bool {
        self.avail == self.cap && self.prev_avail < self.cap && {
            self.swap();
            true
        }
    }

    fn swap(&mut self) {
        core::mem::swap(&mut self.loaded, &mut self.previous);
        core::mem::swap(&mut self.avail, &mut self.prev_avail);
    }

    /// Both magazines empty: trades the previous one for a full magazine of `depot`,
    /// which becomes the loaded one (the empty loaded one becomes the previous). Returns
    /// false, changing nothing, when the depot has no full magazine.
    pub fn trade_empty(&mut self, depot: &mut Depot) -> bool {
        debug_assert_eq!(self.cached(), 0);
        let Some(full) = depot.take_full(self.previous) else {
            return false;
        };
        self.previous = core::mem::replace(&mut self.loaded, full);
        (self.avail, self.prev_avail) = (self.cap, 0);
        self.touched = true;
        true
    }

    /// Both magazines full: trades the previous one for an empty magazine of `depot`,
    /// which becomes the loaded one (the full loaded one, hotter, becomes the previous).
    /// Returns false, changing nothing, when the depot has no empty magazine.
    pub fn trade_full(&mut self, depot: &mut Depot) -> bool {
        debug_assert_eq!(self.cached(), 2 * self.cap());
        let Some(empty) = depot.take_empty(self.previous) else {
            return false;
        };
        self.previous = core::mem::replace(&mut self.loaded, empty);
        (self.avail, self.prev_avail) = (0, self.cap);
        true
    }

    /// The loaded magazine's objects, oldest first (for refills, which fill it).
    pub fn loaded(&self) -> &[usize] {
        // SAFETY: the first avail entries are initialised (written by pushes).
        unsafe { slice(self.loaded, self.avail) }
    }

    /// The previous magazine's objects, oldest first.
    pub fn previous(&self) -> &[usize] {
        // SAFETY: the first prev_avail entries are initialised.
        unsafe { slice(self.previous, self.prev_avail) }
    }

    /// Drops the previous magazine's oldest `n` objects (the caller has put them
    /// elsewhere); the others move down in one copy.
    pub fn remove_previous_oldest(&mut self, n: usize) {
        let n = n.min(self.prev_avail as usize);
        let left = self.prev_avail as usize - n;
        // SAFETY: both ranges lie within the previous magazine's first prev_avail entries;
        // `copy` allows them to overlap.
        unsafe { core::ptr::copy(self.previous.add(n), self.previous, left) };
        self.prev_avail = left as u32;
    }

    /// Empties both magazines (the caller has put their objects elsewhere).
    pub fn clear(&mut self) {
        (self.avail, self.prev_avail) = (0, 0);
    }

    /// Room left in the loaded magazine.
    #[inline]
    pub fn room(&self) -> usize {
        (self.cap - self.avail) as usize
    }
}

/// The first `n` entries of a magazine.
///
/// # Safety
/// The entries must be initialised and not written while the slice lives.
unsafe fn slice<'a>(at: *const usize, n: u32) -> &'a [usize] {
    if n == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(at, n as usize) }
}

/// A cache's magazines that no CPU holds: `full` full ones, then empty ones, in one
/// array of magazine pointers in memory the cache carves. Used only under the depot lock.
pub struct Depot {
    mags: *mut *mut usize,
    len: u32,
    full: u32,
    cap: u32,
    /// Fewest full magazines since the last reap pass: that many went unused for a whole
    /// interval (Bonwick's working set), and the next pass drains them.
    min_full: u32,
}

// SAFETY: the pointers point into memory the owning cache holds for its whole life; the
// depot is only used under its lock.
unsafe impl Send for Depot {}

impl Depot {
    /// A depot of the `len` empty magazines whose pointers `mags` holds, each of `cap`
    /// objects.
    ///
    /// # Safety
    /// `mags` must be writable for `len` pointers, each pointing to a magazine as
    /// [`CpuMagazines::new`] requires, for the depot's life (it may be dangling when
    /// `len` is 0).
    pub const unsafe fn new(mags: *mut *mut usize, len: usize, cap: usize) -> Depot {
        Depot {
            mags,
            len: len as u32,
            full: 0,
            cap: cap as u32,
            min_full: 0,
        }
    }

    /// Full magazines held.
    pub fn full(&self) -> usize {
        self.full as usize
    }

    /// Empty magazines held.
    pub fn empty(&self) -> usize {
        (self.len - self.full) as usize
    }

    fn at(&self, i: u32) -> *mut *mut usize {
        debug_assert!(i < self.len);
        // SAFETY: i < len, inside the pointers given to `new`.
        unsafe { self.mags.add(i as usize) }
    }

    /// Trades `empty` for a full magazine, if the depot has one.
    pub fn take_full(&mut self, empty: *mut usize) -> Option<*mut usize> {
        let i = self.full.checked_sub(1)?;
        self.full = i;
        self.min_full = self.min_full.min(i);
        // SAFETY: slot i is inside the array; it held a full magazine and now holds the
        // empty one, which becomes the first of the empty ones.
        Some(unsafe { self.at(i).replace(empty) })
    }

    /// Trades `full` (completely full) for an empty magazine, if the depot has one.
    pub fn take_empty(&mut self, full: *mut usize) -> Option<*mut usize> {
        if self.full == self.len {
            return None;
        }
        let i = self.full;
        self.full += 1;
        // SAFETY: slot i is inside the array; it held the first empty magazine and now
        // holds the full one, which becomes the last of the full ones.
        Some(unsafe { self.at(i).replace(full) })
    }

    /// The objects of every full magazine, for a look (double-free checks, validation).
    pub fn full_objects(&self) -> impl Iterator<Item = &[usize]> {
        // SAFETY: a full magazine's cap entries are initialised, and nothing writes them
        // while the depot is borrowed.
        (0..self.full).map(|i| unsafe { slice(*self.at(i), self.cap) })
    }

    /// Empties the oldest full magazine through `f`, which puts its objects elsewhere;
    /// returns how many it held (0 when the depot has no full magazine).
    pub fn empty_oldest(&mut self, f: impl FnOnce(&[usize])) -> usize {
        if self.full == 0 {
            return 0;
        }
        // SAFETY: slot 0 is inside the array and holds a full magazine, whose cap
        // entries are initialised; they are not written while `f` reads them.
        let oldest = unsafe { *self.at(0) };
        f(unsafe { slice(oldest, self.cap) });
        self.full -= 1;
        // The others keep their order (oldest first) and the emptied one becomes the
        // first empty magazine: a shift of at most a depot's few pointers.
        // SAFETY: slots 1..=full (after the decrement) and 0..full are inside the array.
        unsafe {
            if self.full > 0 {
                core::ptr::copy(self.at(1), self.at(0), self.full as usize);
            }
            self.at(self.full).write(oldest);
        }
        self.min_full = self.min_full.min(self.full);
        self.cap as usize
    }

    /// Full magazines that went unused since the last call; starts the next interval.
    pub fn take_idle(&mut self) -> usize {
        let idle = self.min_full;
        self.min_full = self.full - idle;
        idle as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU's magazines of `N` objects each on `a` and `b`, on node 0 of one node.
    ///
    /// # Safety
    /// `a` and `b` outlive the magazines, and nothing else uses them meanwhile.
    unsafe fn on_one_node<const N: usize>(a: &mut [usize; N], b: &mut [usize; N]) -> CpuMagazines {
        // SAFETY: the caller's contract.
        unsafe {
            CpuMagazines::new(
                N,
                a.as_mut_ptr(),
                b.as_mut_ptr(),
                0,
                1,
                core::ptr::null_mut(),
            )
        }
    }

    #[test]
    fn swaps_keep_the_hot_magazine_loaded() {
        let (mut a, mut b) = ([0usize; 2], [0usize; 2]);
        // SAFETY: both outlive the magazines and nothing else uses them.
        let mut m = unsafe { on_one_node(&mut a, &mut b) };
        assert!(m.try_push(1) && m.try_push(2) && !m.try_push(3));
        assert!(m.swap_for_free());
        assert!(m.try_push(3));
        assert_eq!((m.loaded(), m.previous()), (&[3][..], &[1, 2][..]));
        assert_eq!(m.pop(), Some(3));
        assert!(m.take_touched() && !m.take_touched());
        assert_eq!(m.pop(), None);
        assert!(m.swap_for_alloc());
        assert_eq!(m.pop(), Some(2));
        assert_eq!(m.cached(), 1);
    }

    #[test]
    fn a_free_on_several_nodes_is_pushed_only_when_its_node_is_the_cpus() {
        let (mut a, mut b) = ([0usize; 2], [0usize; 2]);
        let mut aliens = [AlienBatch::EMPTY, AlienBatch::EMPTY];
        // SAFETY: every buffer outlives the magazines and nothing else uses them.
        let mut m = unsafe {
            CpuMagazines::new(2, a.as_mut_ptr(), b.as_mut_ptr(), 1, 2, aliens.as_mut_ptr())
        };
        assert!(
            !m.try_push_fast(1),
            "several nodes refuse the unchecked push"
        );
        assert!(!m.try_push_home(1, || 0), "another node's object");
        assert!(m.try_push_home(2, || 1) && m.try_push_home(3, || 1));
        assert!(!m.try_push_home(4, || 1), "a full magazine");
        assert_eq!(m.loaded(), &[2, 3]);
        let (mut c, mut d) = ([0usize; 1], [0usize; 1]);
        // SAFETY: both outlive the magazines and nothing else uses them.
        let mut one = unsafe { on_one_node(&mut c, &mut d) };
        assert!(one.try_push_fast(5));
        assert!(
            !one.try_push_home(6, || unreachable!("one node asks no node")),
            "one node's refusal is a full magazine"
        );
    }

    #[test]
    fn depot_trades_one_for_one() {
        let mut mem = [[0usize; 2]; 4];
        let [p0, p1, p2, p3] = mem.each_mut().map(|m| m.as_mut_ptr());
        let mut ptrs = [p2, p3];
        // SAFETY: every buffer outlives its users and nothing else uses them.
        let (mut m, mut d) = unsafe {
            (
                CpuMagazines::new(2, p0, p1, 0, 1, core::ptr::null_mut()),
                Depot::new(ptrs.as_mut_ptr(), 2, 2),
            )
        };
        assert_eq!((d.full(), d.empty()), (0, 2));
        assert!(!m.trade_empty(&mut d), "no full magazine yet");
        for o in 1..=4 {
            if !m.try_push(o) {
                assert!(m.swap_for_free());
                assert!(m.try_push(o));
            }
        }
        assert!(m.trade_full(&mut d));
        assert_eq!((d.full(), d.empty()), (1, 1));
        assert_eq!(d.full_objects().collect::<Vec<_>>(), [&[1, 2]]);
        assert_eq!((m.loaded(), m.previous()), (&[][..], &[3, 4][..]));
        assert_eq!(d.take_idle(), 0, "a full magazine arrived in the interval");
        assert_eq!(d.take_idle(), 1, "and stayed unused for a whole one");
        m.clear();
        assert!(m.trade_empty(&mut d));
        assert_eq!(m.loaded(), &[1, 2], "the depot's full magazine is loaded");
        assert_eq!((d.full(), d.empty()), (0, 2));
        assert_eq!(d.empty_oldest(|_| unreachable!()), 0);
    }

    #[test]
    fn the_depot_empties_its_oldest_full_magazine_first() {
        let mut mem = [[0usize; 1]; 3];
        let [p0, p1, p2] = mem.each_mut().map(|m| m.as_mut_ptr());
        // SAFETY: every buffer outlives its users and nothing else uses them.
        unsafe { (p0.write(10), p1.write(11), p2.write(12)) };
        let mut ptrs = [p0, p1, p2];
        // SAFETY: as above; magazines of one object, each written just now.
        let mut d = unsafe { Depot::new(ptrs.as_mut_ptr(), 3, 1) };
        d.full = 3;
        let mut seen = Vec::new();
        while d.empty_oldest(|o| seen.extend_from_slice(o)) > 0 {}
        assert_eq!(seen, [10, 11, 12]);
        assert_eq!((d.full(), d.empty()), (0, 3));
    }

    #[test]
    fn a_run_pops_the_newest_objects_at_once() {
        let (mut a, mut b) = ([0usize; 4], [0usize; 4]);
        // SAFETY: both outlive the magazines and nothing else uses them.
        let mut m = unsafe { on_one_node(&mut a, &mut b) };
        for o in 1..=3 {
            assert!(m.try_push(o));
        }
        assert_eq!(m.take_newest(2), &[2, 3]);
        assert!(m.take_touched());
        assert_eq!(m.take_newest(5), &[1], "no more than the magazine holds");
        assert!(m.take_touched());
        assert!(m.take_newest(1).is_empty());
        assert!(!m.take_touched(), "an empty run is no allocation");
    }

    #[test]
    fn the_previous_magazine_gives_up_its_oldest_objects() {
        let (mut a, mut b) = ([0usize; 4], [0usize; 4]);
        // SAFETY: both outlive the magazines and nothing else uses them.
        let mut m = unsafe { on_one_node(&mut a, &mut b) };
        for o in 1..=4 {
            assert!(m.try_push(o));
        }
        assert!(m.try_push(5) || m.swap_for_free());
        m.remove_previous_oldest(2);
        assert_eq!(m.previous(), &[3, 4], "the newest stay, in order");
        m.remove_previous_oldest(9);
        assert!(m.previous().is_empty());
    }
}
