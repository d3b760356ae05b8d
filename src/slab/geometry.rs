//! A cache's [`Geometry`]: where objects sit in a slab (their layout and debug slots),
//! where each object's state word lies, and which checked paths run, as the cache's size,
//! alignment and debug flags decide.
//!
//! Written when a cache is made and by `SlabCache::set_debug` alone, while the cache has no
//! slab and holds every node lock; read by every path through `SlabCache::geo`.

use super::debug::{DebugFlags, DebugLayout};
use super::header::Shape;
use super::layout::{self, SlabLayout};
use super::{CacheSpec, Hardening, SlabCache, SlabError, SlabFlags};
use crate::arch::Arch;
use crate::mm::memmap::PAGE_SIZE;

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
}
