//! The allocation and free paths of a [`SlabCache`]: the per-CPU fast paths, magazine
//! swaps and depot exchanges (`magazine`), refills from and drains to the slab lists
//! (`cache_alloc_refill` and `free_block` in seeds 001 and 003), growing from and
//! shrinking to the page allocator, draining and reaping.
//!
//! Per-object state. Every object is in one of three states: free on its slab's chain,
//! free in a magazine (a CPU's or a depot's) or an alien batch (`alien`), or handed
//! out; a free is refused unless the object is handed out, so double frees are caught
//! even while a magazine or a batch holds the object. The state is in the object's *state word* (see `header`): a chain link while
//! on the chain, `address ^ secret` (the *array word*) while in a magazine, and while
//! handed out:
//!
//! - **tagged caches** (no constructor or destructor, no debugging or init-on-alloc/free:
//!   all kmalloc caches by default): the word is the object's first word, which the user
//!   owns while the object is handed out; allocation writes 0 there. The fast paths touch
//!   only the object, which the user touches anyway, and no management line. A free that
//!   finds the array word looks for the object in every magazine (holding them all, so
//!   nothing moves meanwhile), and one that finds a chain link of the object walks its
//!   slab's chain, before calling it a double free: a user who stored either exact value
//!   gets no false report, just a slow free.
//! - **other caches**: the word lies past the object's slot, where the user never writes
//!   (constructed contents, red zones, poison and zeroing stay the user's and the debug
//!   code's), and says ACTIVE while handed out.
//!
//! What tagging gives up: a use-after-free write into the first word of a free object
//! either hides a later double free of it (in a magazine) or cuts its slab's chain (on the
//! chain: reported and quarantined when the chain reaches it), as SLUB's free pointer
//! does; the debug options, which turn tagging off, catch both.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::alien::AlienBatch;
use super::debug::{Damage, DebugFlags};
use super::header::{ChainKey, ListKind, Slab};
use super::magazine::CpuMagazines;
use super::{Backing, Depot, Geometry, Hardening, Node, SlabCache, SlabError};
use crate::arch::Arch;
use crate::gfp::Gfp;

use crate::mm::frame::{FrameState, FrameTable, NIL, PageFrame};
use crate::mm::memmap::PAGE_SIZE;
use crate::mm::numa::MAX_NODES;

/// XORed into an array word to make the ACTIVE word of an untagged cache: array words
/// end in `000`, ACTIVE words in `010`, chain links in `001`.
const ACTIVE_MARK: usize = 0b010;

impl Node {
    fn list(&mut self, kind: ListKind) -> &mut super::SlabList {
        match kind {
            ListKind::Full => &mut self.full,
            ListKind::Partial => &mut self.partial,
            ListKind::Free => &mut self.free,
        }
    }

    fn move_to(&mut self, t: &FrameTable, s: Slab<'_>, to: ListKind) {
        let from = s.list();
        if from != to {
            self.list(from).remove(t, s);
            self.list(to).push(t, s, to);
        }
    }
}

/// Address of object 0 of the slab holding `obj`, whose page descriptor `frame` names a
/// slab cache as owner: the slab's base (`obj`'s own page in the head, stored in a tail)
/// plus the offset in the owner bits.
#[inline(always)]
pub(super) fn s_mem_of(frame: &PageFrame, obj: usize) -> usize {
    let (tail, bits) = frame.tail_and_owner_bits();
    let base = if tail {
        frame.private()
    } else {
        obj & !(PAGE_SIZE as usize - 1)
    };
    base + (bits & !7) as usize
}

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
    /// The slab holding `obj`, whose page descriptor `frame` (index `index`) names this
    /// cache.
    #[inline(always)]
    pub(super) fn slab_of<'k>(
        &self,
        t: &'k FrameTable,
        index: u32,
        frame: &'k PageFrame,
        obj: usize,
    ) -> Slab<'k> {
        let (head, index, base) = if frame.state() == FrameState::Tail {
            (t.frame(frame.next()), frame.next(), frame.private())
        } else {
            (frame, index, obj & !(PAGE_SIZE as usize - 1))
        };
        // SAFETY: the descriptor's owner is this cache, so it is a frame of one of its
        // live slabs, whose tails name the head and the base (set by grow).
        unsafe { Slab::at(head, index, base, self.geo().shape()) }
    }

    /// The slab whose head is descriptor `index`, from one of this cache's lists.
    fn slab_at<'k>(&self, k: &'k impl Backing<A>, index: u32) -> Slab<'k> {
        let t = k.pages().table();
        let base = A::phys_to_virt(t.pfn_of(index) << crate::mm::frame::PAGE_SHIFT);
        // SAFETY: the node's lists hold only heads of this cache's live slabs.
        unsafe { Slab::at(t.frame(index), index, base, self.geo().shape()) }
    }

    /// The slab and index of the object at `obj`, whose page descriptor `frame` names
    /// this cache; an error when `obj` is not the start of an object.
    fn locate<'k>(
        &self,
        k: &'k impl Backing<A>,
        frame: &'k PageFrame,
        obj: usize,
    ) -> Result<(Slab<'k>, usize), SlabError> {
        let t = k.pages().table();
        let slab = self.slab_of(t, t.index_of_frame(frame), frame, obj);
        let not_object = SlabError::NotAnObject {
            addr: obj,
            cache: self.name,
        };
        if obj < slab.s_mem {
            return Err(not_object);
        }
        let off = obj - slab.s_mem;
        let mut idx = ((off as u64 * self.geo().recip) >> 32) as usize;
        // The reciprocal is exact at object starts; past one it may round up by one.
        if idx * self.geo().layout.stride > off {
            idx -= 1;
        }
        if idx >= slab.num() {
            return Err(not_object);
        }
        let start = idx * self.geo().layout.stride;
        if start != off {
            return Err(SlabError::Interior {
                addr: obj,
                cache: self.name,
                object: slab.s_mem + start,
                offset: off - start,
            });
        }
        Ok((slab, idx))
    }

    /// The slab of an object known to be one of this cache's object starts (it came from
    /// a magazine): no checks, as magazines only ever hold object starts.
    #[inline(always)]
    fn locate_array_object<'k>(&self, k: &'k impl Backing<A>, obj: usize) -> Slab<'k> {
        let t = k.pages().table();
        let (index, frame) = t
            .frame_of(A::virt_to_phys(obj))
            .expect("an object in a magazine lies in a slab");
        let slab = self.slab_of(t, index, frame, obj);
        debug_assert_eq!(
            self.locate(k, frame, obj).ok(),
            Some((slab, self.index_in(slab, obj)))
        );
        slab
    }

    /// Index of object start `obj` in `slab`, which holds it.
    #[inline]
    fn index_in(&self, slab: Slab<'_>, obj: usize) -> usize {
        // The reciprocal is exact at object starts.
        (((obj - slab.s_mem) as u64 * self.geo().recip) >> 32) as usize
    }

    /// The word of a free object in a magazine.
    #[inline(always)]
    pub(super) fn array_word(&self, obj: usize) -> usize {
        self.key.array_word(obj)
    }

    /// The word of a handed-out object of an untagged cache.
    #[inline(always)]
    fn active_word(&self, obj: usize) -> usize {
        self.key.array_word(obj) ^ ACTIVE_MARK
    }

    /// The state word of object `obj` (`tag`: the cache's; non-zero means the word is
    /// the object's first).
    #[inline(always)]
    pub(super) fn state_word(&self, obj: usize, tag: usize) -> &AtomicUsize {
        let at = if tag != 0 { obj } else { obj + self.geo().fp };
        debug_assert!(at.is_multiple_of(8));
        // SAFETY: `obj` is an object start of one of this cache's live slabs, and its
        // state word lies within its stride, 8-aligned (Geometry). The word is the
        // allocator's while the object is free and the freeing caller's to give up when
        // it frees; other accesses are the user's bug, which the atomic keeps from being
        // undefined behaviour on our side.
        unsafe { AtomicUsize::from_ptr(at as *mut usize) }
    }

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

    /// Records that `obj`, just taken from an array, is handed out (`tag`: the cache's).
    #[inline(always)]
    pub(super) fn mark_active(&self, obj: usize, tag: usize) {
        let w = if tag != 0 { 0 } else { self.active_word(obj) };
        self.state_word(obj, tag).store(w, Relaxed);
    }

    /// The NUMA node whose lists hold the slab of `obj`, an address in one of this
    /// cache's slabs: its pages' node (a slab lies on one node).
    #[inline]
    pub(super) fn home_of(&self, k: &impl Backing<A>, obj: usize) -> usize {
        k.pages().node_of(A::virt_to_phys(obj)).unwrap_or(0)
    }

    /// Whether `obj`, whose state word holds a chain link of it, is on its slab's chain
    /// (rather than handed out holding that value). Takes the slab's node lock.
    fn on_chain(&self, k: &impl Backing<A>, slab: Slab<'_>, idx: usize) -> bool {
        let _node = self.node(self.home_of(k, slab.base)).lock();
        let mut found = false;
        slab.walk_chain(self.key, |i| {
            found = i == idx;
            !found
        });
        found
    }

    /// Whether `obj` is in the magazines of CPUs `cpu..` or a depot. Holds every CPU's
    /// magazines (in index order, as drains take them) and then each node's depot in
    /// turn while it looks, so no object moves between magazines meanwhile. Recursion:
    /// one frame per CPU.
    fn in_arrays(&self, obj: usize, cpu: usize) -> bool {
        if cpu == self.cpu.len() {
            return (0..self.nodes()).any(|n| {
                self.depot(n)
                    .lock()
                    .full_objects()
                    .any(|m| m.contains(&obj))
            });
        }
        let m = self.cpu.cpu(cpu);
        m.loaded().contains(&obj)
            || m.previous().contains(&obj)
            || m.aliens().any(|(_, b)| b.objects().contains(&obj))
            || self.in_arrays(obj, cpu + 1)
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

    /// The slab and index of `obj` if it is an object handed out and not yet freed;
    /// otherwise why not. `frame` is `obj`'s page descriptor and names this cache.
    #[inline]
    pub(crate) fn live_object<'k>(
        &self,
        k: &'k impl Backing<A>,
        frame: &'k PageFrame,
        obj: usize,
    ) -> Result<(Slab<'k>, usize), SlabError> {
        let (slab, idx) = self.locate(k, frame, obj)?;
        let w = self.state_word(obj, self.tag()).load(Relaxed);
        let live = if self.tag() != 0 {
            if w == self.array_word(obj) {
                !self.in_arrays(obj, 0)
            } else if self.key.successor(obj, w).is_some() {
                !self.on_chain(k, slab, idx)
            } else {
                true
            }
        } else {
            w == self.active_word(obj)
        };
        if !live {
            return Err(SlabError::DoubleFree {
                addr: obj,
                cache: self.name,
            });
        }
        Ok((slab, idx))
    }

    /// The fast path of [`SlabCache::free`]: frees `obj` and returns true when it is a
    /// live object start of this cache; otherwise changes nothing and returns false (the
    /// caller then takes the slow path, which finds and reports what is wrong).
    #[inline(always)]
    pub(crate) fn free_fast(&self, k: &impl Backing<A>, frame: &PageFrame, obj: usize) -> bool {
        match self.live_fast(frame, obj) {
            Some(live) => {
                self.free_fast_live(k, obj, live);
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

    /// Frees `obj`, which [`SlabCache::live_fast`] found handed out (and which nobody
    /// else can have freed since: it is the caller's to give up).
    #[inline(always)]
    pub(crate) fn free_fast_live(&self, k: &impl Backing<A>, obj: usize, live: LiveFast<'_>) {
        live.claim();
        self.push_freed(k, obj);
    }

    /// Puts a freed object (its word already the array word) in this CPU's loaded
    /// magazine.
    #[inline(always)]
    pub(super) fn push_freed(&self, k: &impl Backing<A>, obj: usize) {
        self.retag_freed(obj);
        if self.cpu.try_owned(|m| m.try_push_fast(obj)) != Some(true) {
            self.push_making_room(k, obj);
        }
    }

    /// Puts `obj` (its word the array word), an object of node `home`'s slabs freed on
    /// the CPU whose magazines `m` are (of another node), in the CPU's alien batch for
    /// `home`; a full batch goes home first.
    pub(super) fn free_alien(
        &self,
        k: &impl Backing<A>,
        m: &mut CpuMagazines,
        home: usize,
        obj: usize,
    ) {
        if !m.alien(home).try_push(obj) {
            self.flush_alien(k, m, home);
            assert!(m.alien(home).try_push(obj), "a flushed batch is empty");
        }
    }

    /// Sends the CPU's alien batch for node `n` home, under that node's lock (the
    /// caller holds no node lock). Returns how many objects it held.
    fn flush_alien(&self, k: &impl Backing<A>, m: &mut CpuMagazines, n: usize) -> usize {
        let batch = m.alien(n);
        let held = batch.objects().len();
        if held > 0 {
            let mut node = self.node(n).lock();
            self.free_alien_batch(k, &mut node, batch);
        }
        held
    }

    /// Empties `batch`, of the node whose lists `node` are (locked), into its slabs.
    fn free_alien_batch(&self, k: &impl Backing<A>, node: &mut Node, batch: &mut AlienBatch) {
        node.remote_frees += batch.objects().len();
        self.free_block(k, node, batch.objects());
        batch.clear();
    }

    /// Sends every alien batch of the CPU whose magazines `m` are home, one node's lock
    /// at a time (the caller holds none). Returns how many objects they held.
    fn flush_aliens(&self, k: &impl Backing<A>, m: &mut CpuMagazines) -> usize {
        let (nodes, own) = (if self.nodes() > 1 { self.nodes() } else { 0 }, m.node());
        (0..nodes)
            .filter(|&n| n != own)
            .map(|n| self.flush_alien(k, m, n))
            .sum()
    }

    /// [`SlabCache::push_freed`] when the loaded magazine was full or not entered
    /// lock-free, and every free on several nodes: there an object of the CPU's node
    /// goes in its magazine, and one of another node in the CPU's alien batch for that
    /// node (`alien`), never into its magazines, so this node never hands it out.
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
        self.push_freed(k, obj);
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

    /// Makes a new slab (on the free list of `node`, node `n`'s) from the page
    /// allocator: on several nodes, of node `n`'s pages alone (`Gfp::THIS_NODE`; the
    /// callers fall back to other nodes' lists, as Linux's `fallback_alloc`).
    // Inlined as it was before the node choice made it larger: out of line, the refill
    // loop around it took 1.6 % more instructions in the batch benchmark.
    #[inline(always)]
    fn grow<'k>(
        &self,
        k: &'k impl Backing<A>,
        node: &mut Node,
        n: usize,
        gfp: Gfp,
    ) -> Result<Slab<'k>, SlabError> {
        let l = &self.geo().layout;
        let oom = SlabError::OutOfMemory { cache: self.name };
        let zone = self.gfp | (gfp.without(Gfp::ZERO).without(Gfp::DMA).without(Gfp::DMA32));
        let pa = self.slab_block(k, n, l.order, zone).map_err(|_| oom)?;
        let base = A::phys_to_virt(pa);
        // Colour: offsets 0, colour_off, ..., colours × colour_off, all within left_over.
        let colour = node.colour_next;
        node.colour_next = if colour >= l.colours { 0 } else { colour + 1 };
        // Object 0 sits past slot 0's left red zone (0 bytes without debugging).
        let offset = colour * l.colour_off + self.geo().debug.left;
        let t = k.pages().table();
        let (index, head) = t.frame_of(pa).expect("slab pages are managed frames");
        for p in 1..1u64 << l.order {
            let f = k
                .pages()
                .frame(pa + p * PAGE_SIZE)
                .expect("slab pages are managed frames");
            f.set_next(index);
            f.set_private(base);
            f.set_owner_bits(offset as u32);
        }
        // SAFETY: the block is fresh and ours, 2^order pages, which hold offset plus num
        // strides (colours fit in the left-over, SlabLayout).
        let slab = unsafe {
            Slab::format(
                head,
                index,
                base,
                offset,
                self.geo().shape(),
                self.key,
                base as u64 ^ A::cycles(),
            )
        };
        for i in 0..l.num {
            let obj = slab.object(i);
            if let Some(ctor) = self.ctor {
                ctor(obj as *mut u8);
            }
            if self.slow() {
                self.debug_init(obj);
            }
        }
        for p in 0..1u64 << l.order {
            let f = k.pages().frame(pa + p * PAGE_SIZE).expect("slab frame");
            f.set_owner(self as *const Self as usize);
        }
        debug_assert!(self.nodes() == 1 || head.node() == n);
        node.free_objects += l.num;
        node.slabs += 1;
        node.free.push(t, slab, ListKind::Free);
        Ok(slab)
    }

    /// A block for a new slab of node `n`: on several nodes, of that node's pages alone.
    #[inline]
    fn slab_block(
        &self,
        k: &impl Backing<A>,
        n: usize,
        order: u32,
        zone: Gfp,
    ) -> Result<crate::mm::PhysAddr, crate::mm::PageError> {
        if self.nodes() > 1 {
            k.slab_pages_on(n, order, zone | Gfp::THIS_NODE)
        } else {
            k.slab_pages(order, zone)
        }
    }

    /// Returns magazine objects to their slabs. A slab that becomes empty goes back to
    /// the page allocator when the node already holds more than `free_limit` free
    /// objects.
    pub(super) fn free_block(&self, k: &impl Backing<A>, node: &mut Node, objs: &[usize]) {
        // Objects freed together often share a slab: a run of them is put through one
        // cursor, and the slab found and settled once per run.
        let mut run: Option<super::header::SlabCursor<'_>> = None;
        for &obj in objs {
            let cur = match run.take() {
                Some(c) if c.slab().holds(obj) => run.insert(c),
                other => {
                    if let Some(c) = other {
                        self.settle(k, node, c.finish());
                    }
                    run.insert(self.locate_array_object(k, obj).cursor())
                }
            };
            let slab = cur.slab();
            let idx = self.index_in(slab, obj);
            debug_assert_eq!(slab.word(idx).load(Relaxed), self.array_word(obj));
            cur.put(idx, self.key);
            node.free_objects += 1;
        }
        if let Some(c) = run {
            self.settle(k, node, c.finish());
        }
    }

    /// Puts a slab that free_block returned objects to on the list its count calls for.
    /// Most runs leave a partial slab partial, which needs nothing more.
    #[inline(always)]
    fn settle(&self, k: &impl Backing<A>, node: &mut Node, slab: Slab<'_>) {
        if slab.inuse() != 0 && slab.list() == ListKind::Partial {
            return;
        }
        self.settle_move(k, node, slab)
    }

    /// [`SlabCache::settle`] for a slab that changes list. One that became empty goes
    /// back to the page allocator when the node already holds more than `free_limit`
    /// free objects.
    #[inline(never)]
    fn settle_move(&self, k: &impl Backing<A>, node: &mut Node, slab: Slab<'_>) {
        let t = k.pages().table();
        if slab.inuse() == 0 {
            if node.free_objects > node.free_limit {
                node.list(slab.list()).remove(t, slab);
                node.free_objects -= slab.num();
                self.destroy_slab(k, node, slab);
            } else {
                node.move_to(t, slab, ListKind::Free);
            }
        } else {
            node.move_to(t, slab, ListKind::Partial);
        }
    }

    /// Runs destructors and gives a slab, which is on no list, back to the pages.
    fn destroy_slab(&self, k: &impl Backing<A>, node: &mut Node, slab: Slab<'_>) {
        let l = &self.geo().layout;
        if let Some(dtor) = self.dtor {
            for i in 0..l.num {
                dtor(slab.object(i) as *mut u8);
            }
        }
        let pa = A::virt_to_phys(slab.base);
        for p in 0..1u64 << l.order {
            let f = k.pages().frame(pa + p * PAGE_SIZE).expect("slab frame");
            f.set_owner(0);
            f.set_owner_bits(0);
            if p > 0 {
                f.set_next(NIL);
                f.set_private(NIL as usize);
            }
        }
        node.slabs -= 1;
        slab.clear();
        // SAFETY: grow took this block for the slab, which is on no list and holds no
        // object: nothing reaches it after this.
        unsafe { k.pages().free_pages(pa, l.order) }.expect("a slab is a live page block");
    }

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

    /// Replaces the cache's debug flags (F, Z, P, U; init-on-alloc/free stay as they
    /// are), as if the cache had been created with them. Only an empty cache changes:
    /// its arrays are drained and its free slabs released first, and a cache that still
    /// holds objects is refused with `Busy` and keeps its flags (Linux allows the same
    /// changes only on caches without objects).
    ///
    /// Sound while other CPUs run: the geometry is written under the node lock while no
    /// slab exists. Objects come only from slabs and slabs are made only under that lock,
    /// so no CPU holds an object laid out the old way, and the next CPU to allocate finds
    /// its array empty, takes the lock and sees the new geometry. Before any lock the fast
    /// paths read only `slow` and `tag`, which are atomics.
    pub(crate) fn set_debug(
        &self,
        k: &impl Backing<A>,
        flags: DebugFlags,
    ) -> Result<(), SlabError> {
        self.shrink(k);
        let t = k.pages().table();
        // Every node's lock, in index order: each reader of the geometry holds one.
        let mut nodes: [Option<_>; MAX_NODES] =
            core::array::from_fn(|n| (n < self.nodes()).then(|| self.node(n).lock()));
        let mut live = 0;
        let mut any_free = false;
        for node in nodes.iter().flatten() {
            for list in [&node.full, &node.partial] {
                list.for_each(t, |i| live += self.slab_at(k, i).inuse());
            }
            any_free |= !node.free.is_empty();
        }
        if live > 0 || any_free {
            return Err(SlabError::Busy {
                cache: self.name,
                live,
            });
        }
        let old = *self.geo();
        let hard = Hardening {
            debug: flags,
            init_on_alloc: old.init_on_alloc,
            init_on_free: old.init_on_free,
            random_freelist: false,
            seed: 0,
        };
        let new = Geometry::new(self.object_size, self.align, flags, &hard, self.has_ctor())
            .ok_or(SlabError::TooLarge {
                size: self.object_size,
            })?;
        for node in nodes.iter_mut().flatten() {
            node.free_limit = node.free_limit - old.layout.num + new.layout.num;
            // The new layout may have fewer colours than the cycle has reached.
            node.colour_next = 0;
        }
        // SAFETY: every node lock is held and the cache has no slab: no reader exists
        // (see `geo`).
        unsafe { *self.geo.get() = new };
        self.slow.store(new.slow(), Relaxed);
        let tag = if new.fp == 0 { self.key.secret() } else { 0 };
        self.tag.store(tag, Relaxed);
        Ok(())
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

    /// Calls `f` with every object handed out and not yet freed. For a tagged cache, an
    /// object counts as free when its word is the array word or a chain link of it: call
    /// this after a shrink (as `destroy` does), when the arrays are empty, for an exact
    /// answer but for a user's live object holding one of those values.
    pub(crate) fn for_each_live(&self, k: &impl Backing<A>, mut f: impl FnMut(usize)) {
        let t = k.pages().table();
        let tag = self.tag();
        for n in 0..self.nodes() {
            let node = self.node(n).lock();
            for list in [&node.full, &node.partial] {
                list.for_each(t, |i| {
                    let s = self.slab_at(k, i);
                    for i in 0..s.num() {
                        let obj = s.object(i);
                        let w = s.word(i).load(Relaxed);
                        let live = if tag != 0 {
                            w != self.array_word(obj) && self.key.successor(obj, w).is_none()
                        } else {
                            w == self.active_word(obj)
                        };
                        if live {
                            f(obj);
                        }
                    }
                });
            }
        }
    }

    /// Walks the cache — CPUs' magazines, the depot's, every slab's free chain and
    /// every object's red zones and poison — reporting each inconsistency to the log.
    /// Returns how many it found.
    pub(crate) fn validate(&self, k: &impl Backing<A>) -> usize {
        let mut problems = 0;
        for cpu in 0..self.cpu.len() {
            let m = self.cpu.cpu(cpu);
            for &obj in m.loaded().iter().chain(m.previous()) {
                problems += self.validate_cached(k, obj, m.node(), "a CPU's magazine");
            }
            for (n, b) in m.aliens() {
                for &obj in b.objects() {
                    problems += self.validate_cached(k, obj, n, "an alien batch");
                }
            }
        }
        for n in 0..self.nodes() {
            let depot = self.depot(n).lock();
            for &obj in depot.full_objects().flatten() {
                problems += self.validate_cached(k, obj, n, "a depot");
            }
        }
        for n in 0..self.nodes() {
            problems += self.validate_node(k, n);
        }
        problems
    }

    /// [`SlabCache::validate`] for node `n`'s lists: every slab's chain, count, list and
    /// node, and every object.
    fn validate_node(&self, k: &impl Backing<A>, n: usize) -> usize {
        let t = k.pages().table();
        let node = self.node(n).lock();
        let mut problems = 0;
        let mut chained = 0;
        for (list, kind) in [
            (&node.full, ListKind::Full),
            (&node.partial, ListKind::Partial),
            (&node.free, ListKind::Free),
        ] {
            list.for_each(t, |i| {
                let s = self.slab_at(k, i);
                let (num, inuse) = (s.num(), s.inuse());
                if self.home_of(k, s.base) != n {
                    log::error!(
                        "validate {}: slab {:#x} of node {} is on node {n}'s lists",
                        self.name,
                        s.base,
                        self.home_of(k, s.base)
                    );
                    problems += 1;
                }
                match s.chain_len(self.key) {
                    None => {
                        self.report(s.s_mem, Damage::FreeList, 0, 0, 0, 0);
                        problems += 1;
                    }
                    Some(n) if n != num - inuse => {
                        log::error!(
                            "validate {}: slab {:#x}: {n} objects on its free chain, but {} free by its count",
                            self.name,
                            s.base,
                            num - inuse
                        );
                        problems += 1;
                    }
                    Some(n) => chained += n,
                }
                let fits = match kind {
                    ListKind::Full => inuse == num,
                    ListKind::Partial => inuse > 0 && inuse < num,
                    ListKind::Free => inuse == 0,
                };
                if !fits || s.list() != kind {
                    log::error!(
                        "validate {}: slab {:#x} with {inuse}/{num} in use is on the {kind:?} list",
                        self.name,
                        s.base
                    );
                    problems += 1;
                }
                for i in 0..num {
                    problems += self.validate_object(s, i);
                }
            });
        }
        if chained != node.free_objects {
            log::error!(
                "validate {}: {chained} objects on node {n}'s free chains, but it counts {}",
                self.name,
                node.free_objects
            );
            problems += 1;
        }
        problems
    }

    /// Checks an object found in an array: an object start of this cache holding the
    /// array word, of node `n`'s slabs.
    fn validate_cached(&self, k: &impl Backing<A>, obj: usize, n: usize, place: &str) -> usize {
        let frame = k.pages().frame(A::virt_to_phys(obj));
        let ok = frame.is_some_and(|f| {
            f.owner() == self as *const Self as usize
                && (self.nodes() == 1 || f.node() == n)
                && self
                    .locate(k, f, obj)
                    .is_ok_and(|(s, i)| s.word(i).load(Relaxed) == self.array_word(obj))
        });
        if !ok {
            log::error!(
                "validate {}: {place} holds {obj:#x}, which is not a free object of this cache",
                self.name
            );
        }
        usize::from(!ok)
    }

    /// Whether object `i` of `slab` is handed out, for an untagged cache (debug checks).
    pub(crate) fn is_active(&self, slab: Slab<'_>, i: usize) -> bool {
        slab.word(i).load(Relaxed) == self.active_word(slab.object(i))
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
