//! Why the page allocator refused: [`PageError`] for an allocation or free, [`InitError`]
//! for building it. Each names what happened in words a boot log can print.

use core::fmt;

use super::numa::{NodeId, TopologyError};
use super::zone::ZoneKind;
use super::{MAX_ORDER, PhysAddr};
#[cfg(doc)]
use super::{PageAllocator, numa::Topology};

/// Why a page allocation or free was refused. Nothing changes when one is returned.
///
/// # Examples
/// Running out of memory is a value, not a panic:
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::{MAX_ORDER, PageError};
/// use kmem::Gfp;
/// let mut blocks = Vec::new();
/// let err = loop {
///     match kmem.alloc_pages(MAX_ORDER, Gfp::KERNEL) {
///         Ok(pa) => blocks.push(pa),
///         Err(e) => break e,
///     }
/// };
/// assert!(matches!(err, PageError::OutOfMemory { order: MAX_ORDER, .. }));
/// for pa in blocks {
///     unsafe { kmem.pages().free_pages(pa, MAX_ORDER) }?; // SAFETY: not used again.
/// }
/// # Ok::<(), PageError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageError {
    /// No free block of `order` in `zone` or any zone below it.
    OutOfMemory {
        /// The order asked for.
        order: u32,
        /// The highest zone the request accepted.
        zone: ZoneKind,
    },
    /// `order` is above [`MAX_ORDER`].
    OrderTooLarge {
        /// The order asked for.
        order: u32,
    },
    /// The address is not inside a frame kmem hands out.
    NotManaged {
        /// The address freed.
        addr: PhysAddr,
    },
    /// The address is not at the start of a frame.
    Misaligned {
        /// The address freed.
        addr: PhysAddr,
    },
    /// The frame lies inside a block but does not start it.
    NotBlockHead {
        /// The address freed.
        addr: PhysAddr,
    },
    /// The block is already free.
    DoubleFree {
        /// The address freed.
        addr: PhysAddr,
    },
    /// The block belongs to a slab cache or kmalloc: it must be freed through them.
    Owned {
        /// The address freed.
        addr: PhysAddr,
    },
    /// [`PageAllocator::alloc_pages_node`] named a node the allocator does not have.
    NoSuchNode {
        /// The node asked for.
        node: NodeId,
    },
    /// The block was allocated with a different order.
    OrderMismatch {
        /// The address freed.
        addr: PhysAddr,
        /// The order the block was allocated with.
        allocated: u32,
        /// The order the free gave.
        freed: u32,
    },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PageError::OutOfMemory { order, zone } => {
                write!(
                    f,
                    "out of memory: no free order-{order} block in zone {zone} or below"
                )
            }
            PageError::NoSuchNode { node } => write!(f, "node {node} does not exist"),
            PageError::OrderTooLarge { order } => {
                write!(f, "order {order} is above the maximum order {MAX_ORDER}")
            }
            PageError::NotManaged { addr } => {
                write!(f, "free of {addr:#x}: not a frame kmem hands out")
            }
            PageError::Misaligned { addr } => {
                write!(f, "free of {addr:#x}: not at the start of a frame")
            }
            PageError::NotBlockHead { addr } => write!(
                f,
                "free of {addr:#x}: inside a block but not its first frame"
            ),
            PageError::Owned { addr } => write!(
                f,
                "free of {addr:#x}: the block belongs to a slab cache or kmalloc; free it there"
            ),
            PageError::DoubleFree { addr } => {
                write!(f, "double free of {addr:#x}: the block is already free")
            }
            PageError::OrderMismatch {
                addr,
                allocated,
                freed,
            } => write!(
                f,
                "free of {addr:#x} with order {freed}, but it was allocated with order {allocated}"
            ),
        }
    }
}

/// Why [`PageAllocator::new`] failed.
///
/// # Examples
/// ```
/// use kmem::hosted::{HostArch, Region};
/// use kmem::mm::InitError;
/// use kmem::{PageAllocator, ZoneLimits};
/// let ram = Region::new(1 << 20).unwrap();
/// let map = ram.normalized().unwrap();
/// // SAFETY: the region is RAM nothing else uses while the allocator lives.
/// let r = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 0, None) };
/// assert_eq!(r.err(), Some(InitError::NoCpus));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InitError {
    /// More frames than 32-bit descriptor indices reach (16 TiB).
    TooManyFrames,
    /// No usable range can hold the metadata.
    NoRoomForMetadata {
        /// Bytes the descriptors and per-CPU lists need, page-aligned.
        bytes: u64,
    },
    /// Zero CPUs.
    NoCpus,
    /// The topology given to [`PageAllocator::with_topology`] failed
    /// [`Topology::check`].
    Topology(TopologyError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InitError::TooManyFrames => f.write_str("page allocator: more than 2^32 frames"),
            InitError::NoRoomForMetadata { bytes } => write!(
                f,
                "page allocator: no usable range holds the {bytes} bytes of page descriptors"
            ),
            InitError::NoCpus => f.write_str("page allocator: zero CPUs"),
            InitError::Topology(e) => write!(f, "page allocator: {e}"),
        }
    }
}
