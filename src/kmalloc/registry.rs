//! Every cache at once: the registry of user-created caches (a list linked through
//! `SlabCache::next`) and the kmalloc caches, walked by `for_each_cache` to shrink, reap,
//! validate or change debug flags; and, on the hosted platform, every lock held across
//! `fork`.
//!
//! Locks: `Kmem::registry` guards the list's membership and is the outermost lock (the
//! `slab` module doc has the order): a cache on the list stays allocated while it is
//! held, and every walk holds it, taking each cache's own locks inside.

use core::sync::atomic::Ordering::Relaxed;

use super::Kmem;
use crate::arch::Arch;
use crate::mm::zone::ZoneKind;
use crate::slab::debug::DebugFlags;
use crate::slab::{SlabCache, SlabError};

impl<A: Arch> Kmem<A> {
    /// Walks every cache (or the one named) and reports each inconsistency to the log;
    /// returns how many were found, or `None` if no cache has that name.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(40, kmem::Gfp::KERNEL)?;
    /// assert_eq!(kmem.validate(None), Some(0));
    /// assert_eq!(kmem.validate(Some("no-such-cache")), None);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn validate(&self, name: Option<&str>) -> Option<usize> {
        let mut problems = 0;
        let mut seen = false;
        self.for_each_cache(|c| {
            if name.is_none_or(|n| c.name().as_str() == n) {
                seen = true;
                problems += c.validate(self);
            }
        });
        seen.then_some(problems)
    }

    /// Gives every cache (or the one named) debug `flags` in place of its own, as
    /// `kmem.debug=` would have at boot — for the caches that hold no objects once
    /// drained (see `SlabCache::set_debug`); each cache still holding objects is logged
    /// and left as it was. Returns (caches changed, caches left), or `None` if no cache
    /// has that name.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, slab::DebugFlags};
    /// let busy = kmem.kmalloc(96, Gfp::KERNEL)?;
    /// let zp = DebugFlags::parse("ZP").unwrap();
    /// assert_eq!(kmem.set_debug(Some("kmalloc-96"), zp), Some((0, 1)), "an object is live");
    /// unsafe { kmem.kfree(busy.as_ptr()) }?; // SAFETY: busy is not used again.
    /// assert_eq!(kmem.set_debug(Some("kmalloc-96"), zp), Some((1, 0)));
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn set_debug(&self, name: Option<&str>, flags: DebugFlags) -> Option<(usize, usize)> {
        let (mut changed, mut left) = (0, 0);
        let mut seen = false;
        self.for_each_cache(|c| {
            if name.is_none_or(|n| c.name().as_str() == n) {
                seen = true;
                match c.set_debug(self, flags) {
                    Ok(()) => changed += 1,
                    Err(SlabError::Busy { live, .. }) => {
                        log::warn!(
                            "{}: {live} objects still allocated: debug flags stay {}",
                            c.name(),
                            c.debug_flags()
                        );
                        left += 1;
                    }
                    Err(e) => {
                        log::warn!("{e}: debug flags stay {}", c.debug_flags());
                        left += 1;
                    }
                }
            }
        });
        seen.then_some((changed, left))
    }

    pub(super) fn find_cache(&self, head: &*mut SlabCache<A>, name: &str) -> Option<&SlabCache<A>> {
        let mut found = None;
        self.for_each_cache_in(*head, |c| {
            if c.name().as_str() == name {
                found = Some(c as *const SlabCache<A>);
            }
        });
        // SAFETY: the pointer came from a live cache just visited.
        found.map(|c| unsafe { &*c })
    }

    /// Visits user caches (newest first), then kmalloc caches zone by zone from DMA up,
    /// largest class first.
    pub(super) fn for_each_cache_in(
        &self,
        head: *mut SlabCache<A>,
        mut f: impl FnMut(&SlabCache<A>),
    ) {
        let mut c = head;
        while !c.is_null() {
            // SAFETY: registry members are live until removed under the registry lock,
            // which the caller holds or has just read `head` under.
            let cache = unsafe { &*c };
            f(cache);
            c = cache.next.load(Relaxed);
        }
        for z in ZoneKind::ALL {
            self.zone(z).into_iter().flatten().rev().for_each(&mut f);
        }
    }

    /// Calls `f` with every cache: user-created ones, then kmalloc's.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let mut debugged = Vec::new();
    /// kmem.for_each_cache(|c| {
    ///     if !c.debug_flags().is_empty() {
    ///         debugged.push(c.name());
    ///     }
    /// });
    /// assert!(debugged.is_empty(), "no kmem.debug= given");
    /// ```
    pub fn for_each_cache(&self, f: impl FnMut(&SlabCache<A>)) {
        let head = self.registry.lock();
        self.for_each_cache_in(*head, f);
    }

    /// Drains every cache's arrays and gives empty slabs back; returns pages released.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(4000, kmem::Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// assert!(kmem.shrink_all() > 0, "the kmalloc-4096 slab went back");
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn shrink_all(&self) -> usize {
        let mut pages = 0;
        self.for_each_cache(|c| pages += c.shrink(self));
        pages
    }

    /// One reap pass over every cache: the arrays — each CPU's and the shared one — that
    /// no allocation took objects from since the last pass are drained, the others'
    /// marks cleared, and empty slabs released. Returns (objects drained, pages
    /// released).
    ///
    /// # Examples
    /// As a periodic timer would call it:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(200, kmem::Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// kmem.reap(); // the array was just used: kept
    /// let (objects, _pages) = kmem.reap(); // idle since: drained
    /// assert!(objects > 0);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn reap(&self) -> (usize, usize) {
        let mut total = (0, 0);
        self.for_each_cache(|c| {
            let (o, p) = c.reap(self);
            total = (total.0 + o, total.1 + p);
        });
        total
    }

    /// Removes `cache` from the registry and frees it; it must be empty.
    pub(super) fn unregister(&self, cache: &SlabCache<A>) {
        let mut head = self.registry.lock();
        let target = cache as *const SlabCache<A> as *mut SlabCache<A>;
        let after = cache.next.load(Relaxed);
        if *head == target {
            *head = after;
        } else {
            let mut c = *head;
            loop {
                assert!(!c.is_null(), "a CacheRef's cache is registered");
                // SAFETY: registry members are live while the registry lock is held.
                let member = unsafe { &*c };
                let next = member.next.load(Relaxed);
                if next == target {
                    member.next.store(after, Relaxed);
                    break;
                }
                c = next;
            }
        }
        drop(head);
        cache.release_arrays(self);
        // SAFETY: cache_create kmalloc'd the cache struct; it is off the registry, and the
        // caller's handle, the only other way to it, is being consumed.
        unsafe { self.kfree(target.cast()) }.expect("the cache struct is a live kmalloc block");
    }
}

/// Every lock of the allocator held across calls, for the hosted platform's `fork`
/// handlers (`hosted::Heap` registers them): a child process, whose only thread is a copy
/// of the forking one, must find no lock held and no CPU slot occupied by a thread it
/// does not have.
#[cfg(any(test, feature = "hosted"))]
impl<A: Arch<IrqState = ()>> Kmem<A> {
    /// Takes every lock in the documented order (`slab` module doc): the fault-injection
    /// state (a leaf), the registry, then cache by cache — user caches, then kmalloc's —
    /// every CPU's slot and the node, then the page allocator's per-CPU lists and zones.
    /// A thread inside one of them finishes first: every path takes them in that order,
    /// so each holder can proceed (reclaim only tries, and skips what this holds).
    pub(crate) fn fork_hold(&self) -> ForkHeld<A> {
        self.fail_cache.hold();
        // SAFETY: the registry is held from here on, so its head stays as read.
        let head = unsafe { *self.registry.hold() };
        self.for_each_cache_in(head, |c| c.fork_hold());
        self.pages.fork_hold();
        ForkHeld(head)
    }

    /// Gives back everything [`Kmem::fork_hold`] took; in a child, after `fork`, this is
    /// the whole of what it needs to run.
    ///
    /// # Safety
    /// `held` is what `fork_hold` of this thread (or of the thread this process was
    /// forked from) returned, and its locks are held since.
    pub(crate) unsafe fn fork_release(&self, held: ForkHeld<A>) {
        // SAFETY: the caller's contract: fork_hold took every lock released here, and
        // the registry it walked (held all along) is the same.
        unsafe {
            self.pages.fork_release();
            self.for_each_cache_in(held.0, |c| c.fork_release());
            self.registry.release();
            self.fail_cache.release();
        }
    }
}

/// What [`Kmem::fork_hold`] holds: the registry's head as it walked it.
#[cfg(any(test, feature = "hosted"))]
pub(crate) struct ForkHeld<A: Arch>(*mut SlabCache<A>);
