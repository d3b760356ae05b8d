//! The allocation path of a [`SlabCache`] (`____cache_alloc` and `cache_alloc_refill` in
//! seeds 001 and 003): the per-CPU fast path, and the refill of an empty magazine from
//! the previous one, the node's depot, or the node's slabs — a slab's run of objects at a
//! time, growing the node's lists when they hold none, and another node's objects when
//! this node has no pages left.
//!
//! Locks, outermost first (the `slab` module doc has the whole order): the allocating
//! CPU's slot (lock-free for its owner on bare metal), then its node's depot for one
//! magazine exchange, then its node's lists while objects come off the slabs — with the
//! page allocator's locks inside it while a slab grows. A refill from other nodes drops
//! the local node's lock first and takes theirs one at a time.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;

use super::debug::Damage;
use super::header::ListKind;
use super::magazine::CpuMagazines;
use super::{Backing, Node, SlabCache, SlabError};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::numa::MAX_NODES;

impl<A: Arch> SlabCache<A> {
    /// Allocates one object from this CPU's loaded magazine, or returns `None` when it is
    /// empty or the cache needs more than the plain path (debugging, hardening, fault
    /// injection, zeroing): then [`SlabCache::alloc`] does the whole job.
    #[inline(always)]
    pub(crate) fn alloc_fast(&self, k: &impl Backing<A>, gfp: Gfp) -> Option<NonNull<u8>> {
        // A tag means not slow (`set_debug` clears it for debug caches), so tagged caches
        // load one field here.
        let tag = self.tag();
        if (tag == 0 && self.slow()) || k.failslab_armed() || gfp.contains(Gfp::ZERO) {
            return None;
        }
        let obj = self.cpu.try_owned(CpuMagazines::pop).flatten()?;
        self.mark_active(obj, tag);
        // SAFETY: objects never sit at address 0 (see `alloc`).
        Some(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }

    /// Allocates one object.
    #[inline(never)]
    #[track_caller]
    pub(crate) fn alloc(&self, k: &impl Backing<A>, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        if k.failslab_armed() && k.failslab_fires(self.name, gfp) {
            return Err(SlabError::Injected { cache: self.name });
        }
        let obj = {
            let mut m = self.cpu.local();
            match m.pop() {
                Some(obj) => obj,
                None => self.refill(k, &mut m, gfp)?,
            }
        };
        self.mark_active(obj, self.tag());
        if self.slow() {
            self.on_alloc(obj);
        }
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: the object is ours now and `object_size` bytes long; its state
            // word, if inside, is the user's now.
            unsafe { core::ptr::write_bytes(obj as *mut u8, 0, self.object_size) };
        }
        // SAFETY: objects never sit at address 0 (it is never in a slab's pages past
        // s_mem, which follows the slab's base).
        Ok(unsafe { NonNull::new_unchecked(obj as *mut u8) })
    }

    /// Gives a CPU whose loaded magazine is empty an object: from the previous magazine
    /// (swapped in), a full magazine of its node's depot (traded for the previous, empty
    /// one), or else objects taken off its node's slabs into the loaded magazine
    /// (`refill_batch` of them) — from partial slabs, then free slabs, then new slabs
    /// of the node's pages. When the node has no pages left, one object of the nearest
    /// other node that has one is handed out directly (Linux SLAB's `fallback_alloc`):
    /// the magazines keep only the CPU's node's objects.
    #[cold]
    #[inline(never)]
    fn refill(
        &self,
        k: &impl Backing<A>,
        m: &mut CpuMagazines,
        gfp: Gfp,
    ) -> Result<usize, SlabError> {
        let local = m.node();
        if !(m.swap_for_alloc() || m.trade_empty(&mut self.depot(local).lock())) {
            let mut node = self.node(local).lock();
            let want = super::refill_batch(self.geo().layout.stride, m.room());
            let took = self.take_from_slabs(k, &mut node, local, want, gfp, |obj| {
                m.try_push(obj);
            });
            if let Err(e) = took {
                drop(node);
                return self.refill_elsewhere(k, local, gfp, e);
            }
        }
        k.refilled(m.loaded().len());
        Ok(m.pop().expect("refill leaves at least one object"))
    }

    /// [`SlabCache::refill`] when node `local` could not grow (`e`): one object of the
    /// nearest other node that has one, handed out directly. On one node, `e`.
    #[cold]
    #[inline(never)]
    fn refill_elsewhere(
        &self,
        k: &impl Backing<A>,
        local: usize,
        gfp: Gfp,
        e: SlabError,
    ) -> Result<usize, SlabError> {
        if self.nodes() == 1 {
            return Err(e);
        }
        let mut got = None;
        self.take_elsewhere(k, local, 1, gfp, |obj| got = Some(obj))
            .map_err(|_| e)?;
        k.refilled(1);
        Ok(got.expect("take_elsewhere took one"))
    }

    /// Takes up to `want` objects, as [`SlabCache::take_from_slabs`] does, from the
    /// nodes other than `local`, nearest first, one node's lock at a time: for a CPU
    /// whose node has no pages left. Fails with the last node's error, or out of memory
    /// on one node.
    pub(super) fn take_elsewhere(
        &self,
        k: &impl Backing<A>,
        local: usize,
        want: usize,
        gfp: Gfp,
        mut put: impl FnMut(usize),
    ) -> Result<usize, SlabError> {
        let topology = k.pages().topology();
        let mut order: [usize; MAX_NODES] = core::array::from_fn(|n| n);
        let order = &mut order[..self.nodes()];
        order.sort_unstable_by_key(|&n| topology.distance(local, n));
        let mut last = SlabError::OutOfMemory { cache: self.name };
        for &n in order.iter().filter(|&&n| n != local) {
            let mut node = self.node(n).lock();
            match self.take_from_slabs(k, &mut node, n, want, gfp, &mut put) {
                Ok(got) => return Ok(got),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Takes up to `want` objects off node `n`'s slabs (`node`, locked) — partial slabs
    /// first, then free ones, then new ones of the node's pages — a slab's run at a
    /// time, giving each to `put` with its array word written. Returns how many; fails
    /// only when it took none.
    pub(super) fn take_from_slabs(
        &self,
        k: &impl Backing<A>,
        node: &mut Node,
        n: usize,
        want: usize,
        gfp: Gfp,
        mut put: impl FnMut(usize),
    ) -> Result<usize, SlabError> {
        let t = k.pages().table();
        let mut got = 0;
        while got < want {
            let slab = match node.partial.first().or(node.free.first()) {
                Some(i) => self.slab_at(k, i),
                None => match self.grow(k, node, n, gfp) {
                    Ok(s) => s,
                    Err(_) if got > 0 => break,
                    Err(e) => return Err(e),
                },
            };
            // One slab's run: its counts stay in the cursor until the list move.
            let mut run = slab.cursor();
            // The chain runs in the order frees left it, and each link's load waits for the
            // one before: in a slab gone cold (other work ran since its objects were
            // freed) a refill took 45–120 ns per object. With a quarter or more of the slab
            // on the chain, ask for all its lines at once first, so the misses overlap.
            if run.inuse() * 4 <= slab.num() * 3 {
                slab.word_lines(A::prefetch);
            }
            let (mut taken, mut lost) = (0, 0);
            while got < want {
                match run.take(self.key) {
                    Ok(Some(i)) => {
                        let obj = slab.object(i);
                        slab.word(i).store(self.array_word(obj), Relaxed);
                        put(obj);
                        taken += 1;
                        got += 1;
                    }
                    Ok(None) => break,
                    Err(n) => {
                        // The slab quarantined its remaining free objects.
                        lost = n;
                        break;
                    }
                }
            }
            let slab = run.finish();
            node.free_objects -= taken + lost;
            if lost > 0 {
                self.report(slab.s_mem, Damage::FreeList, 0, 0, 0, lost);
            }
            let to = if slab.has_free() {
                ListKind::Partial
            } else {
                ListKind::Full
            };
            node.move_to(t, slab, to);
        }
        Ok(got)
    }
}
