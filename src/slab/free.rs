//! The free path of a [`SlabCache`]: the fast path's checks (a handed-out object start of
//! a fast cache), the push into this CPU's loaded magazine, and making room when it is
//! full — the previous magazine, an empty one of the depot, or a refill's worth of
//! objects back to their slabs. On several nodes, an object of the CPU's node still goes
//! in its magazine on the fast path (its page descriptor says its node); one of another
//! node goes to the CPU's alien batch for its node (`alien`). The checked free (`free`,
//! `free_live`) refuses anything that is not a live object start before changing
//! anything.
//!
//! Locks, outermost first: the freeing CPU's slot, then its node's depot for one
//! exchange, then its node's lists while objects go back to their slabs (`make_room`).

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::header::{ChainKey, Slab};
use super::magazine::CpuMagazines;
use super::object::s_mem_of;
use super::{Backing, SlabCache, SlabError};
use crate::arch::Arch;
use crate::mm::frame::PageFrame;

/// A handed-out object as [`SlabCache::live_fast`] found it: its state word and the
/// array word freeing it stores there.
pub(crate) struct LiveFast<'a> {
    word: &'a AtomicUsize,
    freed: usize,
}

impl LiveFast<'_> {
    /// Marks the object free (its state word the array word): it is the caller's to put
    /// in a magazine.
    #[inline(always)]
    pub(super) fn claim(self) {
        self.word.store(self.freed, Relaxed);
    }
}

impl<A: Arch> SlabCache<A> {
    /// The fast path of [`SlabCache::free`]: frees `obj` and returns true when it is a
    /// live object start of this cache; otherwise changes nothing and returns false (the
    /// caller then takes the slow path, which finds and reports what is wrong).
    #[inline(always)]
    pub(crate) fn free_fast(&self, k: &impl Backing<A>, frame: &PageFrame, obj: usize) -> bool {
        match self.live_fast(frame, obj) {
            Some(live) => {
                self.free_fast_live(k, frame, obj, live);
                true
            }
            None => false,
        }
    }

    /// The checks of [`SlabCache::free_fast`]: whether `obj`, whose page descriptor
    /// `frame` names this cache, is a handed-out object start of a cache the fast paths
    /// serve. `None` for anything else, which the slow paths then find and report.
    #[inline(always)]
    pub(crate) fn live_fast(&self, frame: &PageFrame, obj: usize) -> Option<LiveFast<'_>> {
        self.live_at(s_mem_of(frame, obj), obj)
    }

    /// [`SlabCache::live_fast`] given the address of object 0 of `obj`'s slab
    /// ([`s_mem_of`] its page descriptor), which runs of objects of one page share.
    #[inline(always)]
    pub(super) fn live_at(&self, s_mem: usize, obj: usize) -> Option<LiveFast<'_>> {
        let tag = self.tag();
        let geo = self.geo();
        let off = obj.wrapping_sub(s_mem);
        // Wrapping: below s_mem, `off` is huge and no index times the stride matches it.
        let idx = ((off as u64).wrapping_mul(geo.recip) >> 32) as usize;
        if idx >= geo.layout.num || idx * geo.layout.stride != off {
            return None;
        }
        let word = self.state_word(obj, tag);
        let w = word.load(Relaxed);
        let freed = if tag != 0 {
            // Handed out: neither in an array nor on the chain (the tag is the key's
            // secret).
            if ChainKey::may_be_free(tag, obj, w) {
                return None;
            }
            obj ^ tag
        } else {
            // As in `alloc_fast`: a tag means not slow; untagged caches may be.
            if self.slow() || w != self.active_word(obj) {
                return None;
            }
            self.array_word(obj)
        };
        Some(LiveFast { word, freed })
    }

    /// Frees `obj`, whose page descriptor is `frame`, which [`SlabCache::live_fast`]
    /// found handed out (and which nobody else can have freed since: it is the caller's
    /// to give up).
    #[inline(always)]
    pub(crate) fn free_fast_live(
        &self,
        k: &impl Backing<A>,
        frame: &PageFrame,
        obj: usize,
        live: LiveFast<'_>,
    ) {
        live.claim();
        self.push_freed(k, Some(frame), obj);
    }

    /// Puts a freed object (its word already the array word) in this CPU's loaded
    /// magazine. On several nodes, a caller that has the object's page descriptor
    /// passes it as `frame`: its node bits say, without a lookup, whether the object is
    /// the CPU's node's, which then goes in the magazine under the same entry (a
    /// node-local free costs a few instructions more than one node's); without it, or
    /// for another node's object, the free takes `push_making_room`.
    #[inline(always)]
    pub(super) fn push_freed(&self, k: &impl Backing<A>, frame: Option<&PageFrame>, obj: usize) {
        self.retag_freed(obj);
        let pushed = self.cpu.try_owned(|m| {
            m.try_push_fast(obj) || frame.is_some_and(|f| m.try_push_home(obj, || f.node()))
        });
        if pushed != Some(true) {
            self.push_making_room(k, obj);
        }
    }

    /// [`SlabCache::push_freed`] when the loaded magazine was full or not entered
    /// lock-free, and on several nodes when the object's node was not known or not the
    /// CPU's: there an object of the CPU's node goes in its magazine, and one of another
    /// node in the CPU's alien batch for that node (`alien`), never into its magazines,
    /// so this node never hands it out.
    #[cold]
    #[inline(never)]
    fn push_making_room(&self, k: &impl Backing<A>, obj: usize) {
        let mut m = self.cpu.local();
        if self.nodes() > 1 {
            let home = self.home_of(k, obj);
            if home != m.node() {
                return self.free_alien(k, &mut m, home, obj);
            }
        }
        if !m.try_push(obj) {
            self.make_room(k, &mut m);
            assert!(m.try_push(obj), "make_room leaves room");
        }
    }

    /// Gives a CPU whose loaded magazine is full room for frees: swaps in the previous
    /// magazine if it has room, else trades the previous (full) one for an empty one of
    /// the depot, else returns the previous one's oldest objects to their slabs — a
    /// refill's worth (`refill_batch`: all of it but for objects over a page) — and
    /// swaps.
    pub(super) fn make_room(&self, k: &impl Backing<A>, m: &mut CpuMagazines) {
        if m.swap_for_free() || m.trade_full(&mut self.depot(m.node()).lock()) {
            return;
        }
        let n = super::refill_batch(self.geo().layout.stride, m.cap());
        let mut node = self.node(m.node()).lock();
        self.free_block(k, &mut node, &m.previous()[..n]);
        m.remove_previous_oldest(n);
        let swapped = m.swap_for_free();
        debug_assert!(swapped);
    }

    /// Frees `obj`, whose page descriptor `frame` names this cache. Refuses interior
    /// pointers, pointers outside objects and objects that are not allocated, before
    /// changing anything.
    #[inline]
    #[track_caller]
    pub(crate) fn free(
        &self,
        k: &impl Backing<A>,
        frame: &PageFrame,
        obj: usize,
    ) -> Result<(), SlabError> {
        // Sequential double frees are always caught here. Two CPUs freeing the same
        // object in the same instant may both pass; closing that would cost an atomic
        // read-modify-write on every free.
        let (slab, idx) = self.live_object(k, frame, obj)?;
        self.free_live(k, slab, idx, obj);
        Ok(())
    }

    /// Frees `obj`, object `idx` of `slab`, which [`SlabCache::live_object`] found live
    /// (and which nobody else can have freed since: it is the caller's to give up).
    #[inline]
    #[track_caller]
    pub(crate) fn free_live(&self, k: &impl Backing<A>, slab: Slab<'_>, idx: usize, obj: usize) {
        if self.slow() {
            self.on_free(obj);
        }
        slab.word(idx).store(self.array_word(obj), Relaxed);
        self.push_freed(k, None, obj);
    }
}
