//! kmem: a kernel memory allocator.
//!
//! The layers, bottom up, each in its own module:
//! - [`mm::memmap`]: physical memory as firmware reports it, normalised;
//! - [`mm::zone`]: DMA / DMA32 / Normal zones with board-supplied limits;
//! - [`mm::frame`]: one 24-byte [`mm::frame::PageFrame`] descriptor per usable 4 KiB frame;
//! - [`mm::buddy`] and [`mm::pcp`]: the per-zone buddy allocator and per-CPU page lists,
//!   tied together by [`mm::PageAllocator`];
//! - [`slab`]: slab caches with per-CPU object arrays;
//! - [`kmalloc`]: [`Kmem`], the general caches (8 B – 1 MiB) and `kmalloc`/`kfree`.
//!
//! The core is generic over [`arch::Arch`], the one trait a port implements; it never
//! looks at `cfg(target_arch)`. With the `hosted` feature, [`hosted`] runs all of it inside
//! an ordinary process.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]

mod arch;
mod gfp;
pub mod kmalloc;
pub mod mm;
mod percpu;
pub mod slab;
pub mod sync;
#[cfg(test)]
mod test_frees;
#[cfg(test)]
mod test_log;

#[cfg(any(test, feature = "hosted"))]
pub mod hosted;

pub use arch::Arch;
pub use gfp::Gfp;
pub use kmalloc::{Cache, CacheBox, CacheRef, GlobalKmem, KBox, Kmem, Options};
pub use mm::memmap::{MemoryMap, NormalizedMap, PhysRange, RegionKind};
pub use mm::zone::ZoneLimits;
pub use mm::{PageAllocator, PageError, PhysAddr};
pub use slab::{SlabError, SlabFlags};
