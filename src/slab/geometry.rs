//! A cache's [`Geometry`]: where objects sit in a slab (their layout and debug slots),
//! where each object's state word lies, and which checked paths run, as the cache's size,
//! alignment and debug flags decide.
//!
//! Written when a cache is made and by `SlabCache::set_debug` alone, while the cache has no
//! slab and holds every node lock; read by every path through `SlabCache::geo`.

use core::sync::atomic::Ordering::Relaxed;

use super::debug::{DebugFlags, DebugLayout};
use super::header::Shape;
use super::layout::{self, SlabLayout};
use super::{Backing, CacheSpec, Hardening, SlabCache, SlabError, SlabFlags};
use crate::arch::Arch;
use crate::mm::memmap::PAGE_SIZE;
use crate::mm::numa::MAX_NODES;

/// What a cache's debug flags decide: where objects sit in a slab and which checks run.
/// `repr(C)`, the fields the free fast path reads first (see [`SlabCache`]).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Geometry {
    /// ⌈2^32 / stride⌉: offset → index by multiply and shift (exact for slab offsets).
    pub(crate) recip: u64,
    /// Offset of each object's state word from its start: 0 (the first word) when the
    /// cache is tagged, else the end of the slot, where the object has a word of its own.
    pub(crate) fp: usize,
    pub(crate) layout: SlabLayout,
    pub(crate) debug: DebugLayout,
    pub(crate) init_on_alloc: bool,
    pub(crate) init_on_free: bool,
}

impl Geometry {
    /// The geometry of `size`-byte objects aligned to `align` with debug `flags`
    /// (`ctor`: the cache has a constructor or destructor).
    ///
    /// A cache with a constructor or destructor ignores `init_on_alloc` and
    /// `init_on_free`, as Linux's `slab_want_init_on_alloc`/`_free` do: its objects are
    /// constructed once, when their slab is made, and must reach users and the
    /// destructor in that state, which zeroing would destroy.
    pub(super) fn new(
        size: usize,
        align: usize,
        flags: DebugFlags,
        hard: &Hardening,
        ctor: bool,
    ) -> Option<Geometry> {
        let debug = DebugLayout::new(flags, size, align);
        let slot = if flags.is_empty() { size } else { debug.slot() };
        let (init_on_alloc, init_on_free) =
            (hard.init_on_alloc && !ctor, hard.init_on_free && !ctor);
        let slow = !flags.is_empty() || init_on_alloc || init_on_free;
        // The slot starts `debug.left` bytes before the object; the state word, if not
        // the object's first, follows the slot.
        let fp = if slow || ctor {
            (slot - debug.left).checked_next_multiple_of(8)?
        } else {
            0
        };
        let bytes = if fp == 0 {
            slot
        } else {
            (debug.left + fp).checked_add(8)?
        };
        let layout = SlabLayout::new(bytes, align)?;
        Some(Geometry {
            layout,
            fp,
            recip: (1u64 << 32).div_ceil(layout.stride as u64),
            debug,
            init_on_alloc,
            init_on_free,
        })
    }

    /// What a slab needs to know of its objects.
    #[inline(always)]
    pub(crate) fn shape(&self) -> Shape {
        Shape {
            num: self.layout.num as u32,
            stride: self.layout.stride as u32,
            fp: self.fp as u32,
        }
    }

    /// Whether allocations and frees must take the checked paths.
    pub(super) fn slow(&self) -> bool {
        !self.debug.flags.is_empty() || self.init_on_alloc || self.init_on_free
    }
}

impl<A: Arch> SlabCache<A> {
    /// The geometry and alignment of a cache as `spec` describes.
    pub(super) fn geometry(
        spec: &CacheSpec,
        hard: &Hardening,
    ) -> Result<(Geometry, usize), SlabError> {
        let mut align = spec.align.max(1);
        if !align.is_power_of_two() || align > PAGE_SIZE as usize {
            return Err(SlabError::BadAlign { align });
        }
        if spec.flags.contains(SlabFlags::HWCACHE_ALIGN) {
            align = align.max(layout::CACHE_LINE);
        }
        let flags = hard.debug.union(spec.flags.debug());
        let ctor = spec.ctor.is_some() || spec.dtor.is_some();
        let geo = Geometry::new(spec.size, align, flags, hard, ctor)
            .ok_or(SlabError::TooLarge { size: spec.size })?;
        Ok((geo, align))
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
}
