//! kmem: a kernel memory allocator — zones, page descriptors, a buddy page allocator with
//! per-CPU page lists, slab caches with per-CPU object arrays, kmalloc, and a
//! `GlobalAlloc` — as a `no_std` library with no board, firmware or `alloc` in its
//! dependencies.
//!
//! A kernel implements [`Arch`] for its CPU (the one trait kmem calls), describes RAM in
//! a [`MemoryMap`], builds a [`PageAllocator`] over it and a [`Kmem`] on top, then
//! allocates objects from typed caches ([`Cache`], whose [`CacheBox`]es free on drop),
//! kmalloc'd values ([`KBox`]), the raw kmalloc family, or page blocks. `PORTING.md` walks
//! through it; `examples/outside-kernel` is a whole kernel doing it.
//!
//! ```
//! # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
//! # let kmem = heap.get().unwrap();
//! use kmem::{Cache, Gfp, KBox, SlabFlags};
//! #[derive(Default)]
//! struct Inode { ino: u64, size: u64 }
//! let inodes = Cache::<_, Inode>::new(kmem, "inode", SlabFlags::HWCACHE_ALIGN, Inode::default)?;
//! let mut i = inodes.alloc(Gfp::KERNEL)?;
//! i.ino = 2;
//! let name = KBox::zeroed_bytes(kmem, 255, Gfp::KERNEL)?;
//! assert_eq!(name.len(), 255);
//! # Ok::<(), kmem::SlabError>(())
//! ```
//!
//! Soundness: safe code cannot free, retype or reach memory it does not own. The calls
//! that free or resize memory named by an address (`kfree`, `krealloc`, `ksize`,
//! [`CacheRef::free`], [`PageAllocator::free_pages`]) are `unsafe fn`s with a `# Safety`
//! section; their checks still detect, report (through the `log` crate) and survive bad
//! frees, as a debugging aid.
//!
//! The layers, bottom up: [`mm::memmap`] (physical memory as firmware reports it,
//! normalised), [`mm::zone`] (DMA / DMA32 / Normal), the page descriptors (one 24-byte
//! descriptor per usable 4 KiB frame), the per-zone buddy allocator and per-CPU page lists
//! tied together by [`mm::PageAllocator`], [`slab`] (caches with per-CPU object arrays;
//! its module doc states the lock order), and [`kmalloc`] ([`Kmem`], the general caches
//! from 8 B to 1 MiB, the cache registry and handles). The library never looks at
//! `cfg(target_arch)`. With the `hosted` feature, the module `hosted` runs all of it inside
//! an ordinary process (threads as CPUs, memory from the OS), for tests, benchmarks and
//! trying kmem out.
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
pub use kmalloc::{Cache, CacheBox, CacheRef, GlobalKmem, KBox, Kmem, Options, Reservation};
pub use mm::memmap::{MapError, MemoryMap, NormalizedMap, PhysRange, RegionKind};
pub use mm::numa::{NodeId, Topology, TopologyError};
pub use mm::zone::ZoneLimits;
pub use mm::{HotplugError, InitError, PageAllocator, PageError, PhysAddr};
pub use slab::{SlabError, SlabFlags};
