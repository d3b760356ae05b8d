//! [`SlabError`]: why a slab or kmalloc operation was refused, with the text a report
//! logs.

use core::fmt;

use super::{CacheName, NAME_MAX};
use crate::mm::PageError;

/// Why a slab or kmalloc operation was refused. Nothing changes when one is returned.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{SlabError, SlabFlags};
/// let e = kmem.cache_create("kmalloc-64", 64, 8, SlabFlags::NONE, None, None).err();
/// assert!(matches!(e, Some(SlabError::NameTaken { .. })));
/// assert_eq!(e.unwrap().to_string(), "a cache named kmalloc-64 already exists");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlabError {
    /// The page allocator could not supply a slab.
    OutOfMemory {
        /// The cache that could not grow.
        cache: CacheName,
    },
    /// A request larger than any slab or page block.
    TooLarge {
        /// Bytes asked for.
        size: usize,
    },
    /// A size or count computation overflowed (`kcalloc`).
    Overflow,
    /// Alignment not a power of two, or above the page size for a cache.
    BadAlign {
        /// The alignment asked for.
        align: usize,
    },
    /// Cache name empty or too long.
    BadName,
    /// A cache of that name exists.
    NameTaken {
        /// The name asked for.
        name: CacheName,
    },
    /// The pointer is not in memory kmem manages.
    NotOwned {
        /// The address freed.
        addr: usize,
    },
    /// The pointer is in kmem's memory but not in a live slab or kmalloc block.
    NotAllocated {
        /// The address freed.
        addr: usize,
    },
    /// The pointer is inside object `object` of `cache`, `offset` bytes from its start.
    Interior {
        /// The address freed.
        addr: usize,
        /// The cache whose slab holds it.
        cache: CacheName,
        /// Address of the object it points into.
        object: usize,
        /// Bytes from the object's start to `addr`.
        offset: usize,
    },
    /// The pointer lies in a slab of `cache` but outside every object (management or
    /// colour space).
    NotAnObject {
        /// The address freed.
        addr: usize,
        /// The cache whose slab holds it.
        cache: CacheName,
    },
    /// The object is already free.
    DoubleFree {
        /// The address freed.
        addr: usize,
        /// The object's cache.
        cache: CacheName,
    },
    /// The object belongs to `found`, not to `expected`.
    WrongCache {
        /// The address freed.
        addr: usize,
        /// The cache it was freed to.
        expected: CacheName,
        /// The cache it belongs to (`kmalloc-large` for a page block of kmalloc).
        found: CacheName,
    },
    /// `destroy` of a cache that still has `live` objects (listed in the log).
    Busy {
        /// The cache being destroyed.
        cache: CacheName,
        /// Objects still allocated.
        live: usize,
    },
    /// An allocation failed on purpose (`kmem.failslab`).
    Injected {
        /// The cache whose allocation failed.
        cache: CacheName,
    },
    /// A page-level error underneath.
    Page(PageError),
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SlabError::OutOfMemory { cache } => write!(f, "{cache}: out of memory"),
            SlabError::TooLarge { size } => write!(f, "request of {size} bytes is too large"),
            SlabError::Overflow => f.write_str("size computation overflows"),
            SlabError::BadAlign { align } => write!(f, "bad alignment {align}"),
            SlabError::BadName => write!(f, "cache name empty or over {NAME_MAX} bytes"),
            SlabError::NameTaken { name } => write!(f, "a cache named {name} already exists"),
            SlabError::NotOwned { addr } => {
                write!(f, "free of {addr:#x}: not memory kmem manages")
            }
            SlabError::NotAllocated { addr } => {
                write!(
                    f,
                    "free of {addr:#x}: not an allocated kmalloc or slab object"
                )
            }
            SlabError::Interior {
                addr,
                cache,
                object,
                offset,
            } => write!(
                f,
                "{cache}: free of {addr:#x}: interior pointer, {offset} bytes into object {object:#x}"
            ),
            SlabError::NotAnObject { addr, cache } => {
                write!(
                    f,
                    "{cache}: free of {addr:#x}: not at any object in its slab"
                )
            }
            SlabError::DoubleFree { addr, cache } => {
                write!(f, "{cache}: double free of object {addr:#x}")
            }
            SlabError::WrongCache {
                addr,
                expected,
                found,
            } => write!(
                f,
                "free of {addr:#x} to cache {expected}, but it belongs to {found}"
            ),
            SlabError::Busy { cache, live } => {
                write!(f, "{cache}: cannot destroy, {live} objects still allocated")
            }
            SlabError::Injected { cache } => {
                write!(
                    f,
                    "{cache}: allocation failed by fault injection (failslab)"
                )
            }
            SlabError::Page(e) => write!(f, "{e}"),
        }
    }
}

impl From<PageError> for SlabError {
    fn from(e: PageError) -> SlabError {
        SlabError::Page(e)
    }
}
