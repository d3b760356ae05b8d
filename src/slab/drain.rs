//! Giving a [`SlabCache`]'s free objects and empty slabs back: draining CPUs' magazines
//! and alien batches and the depots into the slabs, and releasing empty slabs to the page
//! allocator — all of it (`shrink`), what went unused since the last pass (`reap`), or
//! what can be had without waiting when pages run short (`reclaim`) — and the cache's
//! pages and array block.
//!
//! Locks: `shrink` and `reap` take them in the `slab` module doc's order — a CPU's slot,
//! then a node's depot, then its lists. `reclaim` may run under another cache's node lock
//! or the registry: it takes a node's lists first and only tries every lock
//! (`IrqMutex::try_lock`, `PerCpu::try_each`), skipping what is busy. On the hosted
//! platform `fork_hold` holds them all, in order.

use super::magazine::{CpuMagazines, Depot};
use super::{Backing, Node, SlabCache};
use crate::arch::Arch;

impl<A: Arch> SlabCache<A> {
    /// Empties CPU `cpu`'s alien batches and magazines into the slabs.
    fn drain_cpu(&self, k: &impl Backing<A>, cpu: usize) -> usize {
        let mut m = self.cpu.cpu(cpu);
        let aliens = self.flush_aliens(k, &mut m);
        if m.cached() == 0 {
            return aliens;
        }
        let mut node = self.node(m.node()).lock();
        aliens + self.drain_magazines(k, &mut node, &mut m)
    }

    /// Empties `m`, a CPU's magazines its caller holds, into the slabs; returns how many
    /// objects they held.
    fn drain_magazines(&self, k: &impl Backing<A>, node: &mut Node, m: &mut CpuMagazines) -> usize {
        let n = m.cached();
        self.free_block(k, node, m.loaded());
        self.free_block(k, node, m.previous());
        m.clear();
        n
    }

    /// Empties up to `mags` of the depot's full magazines, oldest first, into the slabs;
    /// returns how many objects they held.
    fn drain_depot(
        &self,
        k: &impl Backing<A>,
        depot: &mut Depot,
        node: &mut Node,
        mags: usize,
    ) -> usize {
        let mut n = 0;
        for _ in 0..mags {
            match depot.empty_oldest(|objs| self.free_block(k, node, objs)) {
                0 => break,
                held => n += held,
            }
        }
        n
    }

    /// Gives every free slab back to the page allocator; returns the pages released.
    fn release_free_slabs(&self, k: &impl Backing<A>, node: &mut Node) -> usize {
        let t = k.pages().table();
        let mut pages = 0;
        while let Some(i) = node.free.first() {
            let s = self.slab_at(k, i);
            node.free.remove(t, s);
            node.free_objects -= s.num();
            self.destroy_slab(k, node, s);
            pages += 1 << self.geo().layout.order;
        }
        pages
    }

    /// What this cache gives back when pages run short, taking only what it can have
    /// without waiting (the caller may hold another cache's node lock, or the registry,
    /// and any lock's holder may be waiting for those): node by node, unless the node's
    /// lock is busy — its holder may be the caller, growing this cache — the magazines
    /// of the node's CPUs and every other CPU's alien batch for the node, of each CPU
    /// whose slot can be held at once, this CPU's and remote ones
    /// ([`PerCpu::try_each`]), the node's depot's full magazines unless its lock is
    /// busy, and then the node's empty slabs. Returns the objects drained plus the pages released: non-zero when anything came
    /// back.
    ///
    /// [`PerCpu::try_each`]: crate::percpu::PerCpu::try_each
    pub(crate) fn reclaim(&self, k: &impl Backing<A>) -> usize {
        let mut drained = 0;
        for n in 0..self.nodes() {
            let Some(mut node) = self.node(n).try_lock() else {
                continue;
            };
            // The node before the slots and the depot, against the lock order: those
            // are only tried. A node's CPUs' magazines hold only its objects; the other
            // CPUs hold its objects in their alien batches for it.
            self.cpu.try_each(|_, m| {
                if m.node() == n {
                    drained += self.drain_magazines(k, &mut node, m);
                } else {
                    drained += m.alien(n).objects().len();
                    self.free_alien_batch(k, &mut node, m.alien(n));
                }
            });
            if let Some(mut depot) = self.depot(n).try_lock() {
                drained += self.drain_depot(k, &mut depot, &mut node, usize::MAX);
            }
            drained += self.release_free_slabs(k, &mut node);
        }
        drained
    }

    /// Drains every CPU's magazines and every node's depot, and releases every empty
    /// slab. Returns the pages given back.
    pub(crate) fn shrink(&self, k: &impl Backing<A>) -> usize {
        for cpu in 0..self.cpu.len() {
            self.drain_cpu(k, cpu);
        }
        let mut pages = 0;
        for n in 0..self.nodes() {
            let mut depot = self.depot(n).lock();
            let mut node = self.node(n).lock();
            self.drain_depot(k, &mut depot, &mut node, usize::MAX);
            pages += self.release_free_slabs(k, &mut node);
        }
        pages
    }

    /// One reap pass: sends every CPU's alien batches home, drains the magazines of CPUs
    /// that did not allocate since the last pass and clears the marks of the others, drains the depot's full magazines that
    /// no CPU took since the last pass (Bonwick's working set), and releases empty
    /// slabs. Returns (objects drained, pages released).
    pub(crate) fn reap(&self, k: &impl Backing<A>) -> (usize, usize) {
        let mut drained = 0;
        for cpu in 0..self.cpu.len() {
            let mut m = self.cpu.cpu(cpu);
            // Alien batches go home on every pass, as Linux's `reap_alien`.
            drained += self.flush_aliens(k, &mut m);
            if !m.take_touched() && m.cached() > 0 {
                let mut node = self.node(m.node()).lock();
                drained += self.drain_magazines(k, &mut node, &mut m);
            }
        }
        let mut pages = 0;
        for n in 0..self.nodes() {
            let mut depot = self.depot(n).lock();
            let mut node = self.node(n).lock();
            let idle = depot.take_idle();
            drained += self.drain_depot(k, &mut depot, &mut node, idle);
            drop(depot);
            pages += self.release_free_slabs(k, &mut node);
        }
        (drained, pages)
    }

    /// Pages held by this cache: its slabs, plus the block holding its arrays if it has
    /// one of its own.
    pub(crate) fn pages_held(&self) -> (usize, usize) {
        let slabs: usize = (0..self.nodes()).map(|n| self.node(n).lock().slabs).sum();
        let arrays = self.arrays.map_or(0, |(_, order)| 1 << order);
        (slabs << self.geo().layout.order, arrays)
    }

    /// Gives the array block back, if the cache has one of its own; the cache must be
    /// empty and never used again.
    pub(crate) fn release_arrays(&self, k: &impl Backing<A>) {
        if let Some((pa, order)) = self.arrays {
            // SAFETY: the cache took this block for its arrays when it was made, and the
            // caller's contract says the cache is never used again.
            unsafe { k.pages().free_pages(pa, order) }.expect("the array block is live");
        }
    }
}

/// Every lock of a cache held across calls, for the hosted platform's `fork` handlers.
#[cfg(any(test, feature = "hosted"))]
impl<A: Arch<IrqState = ()>> SlabCache<A> {
    /// Holds every CPU's slot, then every node's depot, then every node's lists, in the
    /// lock order (`slab` module doc):
    /// until [`SlabCache::fork_release`], no thread is in this cache's slow or fast paths
    /// and its state is whole.
    pub(crate) fn fork_hold(&self) {
        self.cpu.hold_all();
        for n in 0..self.nodes() {
            self.depot(n).hold();
        }
        for n in 0..self.nodes() {
            self.node(n).hold();
        }
    }

    /// Gives back what [`SlabCache::fork_hold`] held.
    ///
    /// # Safety
    /// `fork_hold` of this thread (or of the thread this process was forked from) holds
    /// them.
    pub(crate) unsafe fn fork_release(&self) {
        // SAFETY: the caller's contract: fork_hold took them all.
        unsafe {
            for n in (0..self.nodes()).rev() {
                self.node(n).release();
            }
            for n in (0..self.nodes()).rev() {
                self.depot(n).release();
            }
            self.cpu.release_all();
        }
    }
}
