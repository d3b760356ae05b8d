//! Where a [`SlabCache`]'s objects are and what state each is in: the slab and index of an
//! address, each object's state word, and whether an object is handed out.
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
//!
//! Locks: reading a state word takes none (the word is atomic, and the object's owner
//! or the lock-holding path is the only writer). `on_chain` takes the slab's node lock;
//! `in_arrays` holds every CPU's slot in index order, as drains take them, and then each
//! node's depot in turn; `for_each_live` holds each node's lists in turn.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::header::Slab;
use super::{Backing, SlabCache, SlabError};
use crate::arch::Arch;
use crate::mm::frame::{FrameState, FrameTable, PageFrame};
use crate::mm::memmap::PAGE_SIZE;

/// XORed into an array word to make the ACTIVE word of an untagged cache: array words
/// end in `000`, ACTIVE words in `010`, chain links in `001`.
const ACTIVE_MARK: usize = 0b010;

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
    pub(super) fn slab_at<'k>(&self, k: &'k impl Backing<A>, index: u32) -> Slab<'k> {
        let t = k.pages().table();
        let base = A::phys_to_virt(t.pfn_of(index) << crate::mm::frame::PAGE_SHIFT);
        // SAFETY: the node's lists hold only heads of this cache's live slabs.
        unsafe { Slab::at(t.frame(index), index, base, self.geo().shape()) }
    }

    /// The slab and index of the object at `obj`, whose page descriptor `frame` names
    /// this cache; an error when `obj` is not the start of an object.
    pub(super) fn locate<'k>(
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
    pub(super) fn locate_array_object<'k>(&self, k: &'k impl Backing<A>, obj: usize) -> Slab<'k> {
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
    pub(super) fn index_in(&self, slab: Slab<'_>, obj: usize) -> usize {
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
    pub(super) fn active_word(&self, obj: usize) -> usize {
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

    /// Whether object `i` of `slab` is handed out, for an untagged cache (debug checks).
    pub(crate) fn is_active(&self, slab: Slab<'_>, i: usize) -> bool {
        slab.word(i).load(Relaxed) == self.active_word(slab.object(i))
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
}
