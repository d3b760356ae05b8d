//! Slab caches: objects of one size carved from page blocks, with per-CPU magazines
//! in front — Linux's SLAB (seeds 001–003) without the seed's O(n) scans.
//!
//! This file owns the cache itself: its creation parameters, geometry, per-CPU and
//! per-node state, error type and introspection.
//!
//! NUMA: a cache keeps its slab lists and its depot per node (node 0's in the cache,
//! the others' carved with its arrays). A CPU's magazines and its node's depot hold only
//! that node's objects; a free of another node's object goes straight back to its slab
//! on its home node's lists (`cache`). The allocation and free paths are in
//! `cache`; a slab's bookkeeping, kept in its page descriptors, in `header`.
//!
//! Object life (SLAB semantics): a constructor runs once per object when its slab is
//! created, and the destructor once when the slab goes back to the page allocator. In
//! between, objects move user → per-CPU magazine → depot → slab free chain and back
//! without being re-constructed, so a user must free objects in their constructed state.
//!
//! The slab layer stands below kmalloc: what a cache needs from around it — page blocks
//! to grow from, fault injection, and a way to take back other caches' empty slabs when
//! pages run short — comes through `Backing`, which `Kmem` implements and a bare
//! [`PageAllocator`] implements too (no fault injection, no reclaim), so a cache can be
//! built and tested without a `Kmem`.
//!
//! # Locks
//!
//! Every lock is an `IrqMutex` or a per-CPU slot and is held with interrupts off, so an
//! interrupt handler that allocates never finds its own CPU inside one. Outermost first:
//!
//! 1. `Kmem::registry` — the list of user-created caches (`SlabCache::next`): guards
//!    membership, so a cache on it stays allocated while the lock is held. `cache_create`,
//!    destroy, `for_each_cache`, `shrink_all` and `reap` take it.
//! 2. A CPU's slot of a cache's `PerCpu` magazines — the CPU's `CpuMagazines`: its owner
//!    enters it without the lock on bare metal (`Arch::OWNED_IDS`); a remote drain
//!    (`shrink`, `reap`, reclaim) takes it by the handshake in `crate::percpu`.
//! 3. A node's depot (`SlabCache::depot(n)`) — the magazines of the node's CPUs that no
//!    CPU holds, full and empty. Held for O(1) exchanges, and by drains while they empty
//!    full magazines into the slabs (then with the same node's lock inside it). Paths
//!    that visit every node's depot hold one at a time, or all in index order (`fork`).
//! 4. A node's lists (`SlabCache::node(n)`): the full, partial and free slab lists, the
//!    counters, and every slab's chain and in-use count (in its page descriptors). A
//!    remote free takes its object's home node's lock, with at most the freeing CPU's
//!    slot held. Two node locks are held together only in index order (`set_debug`,
//!    which writes the geometry under all of them while the cache has no slab, and
//!    `fork`).
//! 5. The page allocator's locks (see `crate::mm`): a CPU's page lists, then a zone's free
//!    area. Taken while growing or shrinking under the node lock.
//!
//! No cache takes another cache's node lock while holding its own, with one exception:
//! reclaim. When the page allocator finds no block, `Kmem::alloc_pages` (through which
//! `Backing::slab_pages` grows every cache) walks every cache and takes back what it holds
//! free — each CPU's magazines, this CPU's and remote ones, the depot's full magazines,
//! the empty slabs — while its caller may hold a growing cache's node lock and its own CPU's slot
//! of that cache, or the registry lock (`cache_create`). The holder of any lock it meets
//! may in turn be waiting for one of those, so:
//!
//! **A path that may run with an allocator lock held never waits for a lock of the slab
//! layer.** Reclaim *tries* the registry and each node and depot lock
//! (`IrqMutex::try_lock`), takes a cache's node before its slots and its depot (against
//! the order above, which only trying makes safe), and takes each slot with `PerCpu::try_each`: the slot's lock is tried, and an
//! owner inside the slot lock-free gets a short spin to leave — it may be in a refill,
//! waiting for the node lock reclaim holds — after which the slot is left alone. A busy
//! lock or slot is skipped, so reclaim never waits and no cycle can close. Below the slab
//! layer it takes the page allocator's locks (per-CPU page lists, then a zone) as a slab
//! growing does; their holders never wait for a lock of the slab layer.
//!
//! `Kmem`'s fault-injection state (`fail_cache`) is a leaf lock taken alone.
//!
//! On the hosted platform, `fork()` takes them all: `hosted::Heap`'s `pthread_atfork`
//! handler holds, in this order, the fault-injection state, the registry, then cache by
//! cache every CPU's slot, every node's depot and every node's lists, then the page allocator's per-CPU lists and
//! zones (`Kmem::fork_hold`), and gives them back after the fork in the parent and the
//! child. Every other path takes locks in the order above or only tries them, so each
//! thread it waits for can finish; a constructor or destructor that allocated from
//! another cache would break the order (it runs under its cache's node lock) and must
//! not.

pub(crate) mod alien;
mod bulk;
mod cache;
pub(crate) mod debug;
pub(crate) mod header;
pub(crate) mod layout;
pub(crate) mod magazine;
mod memtag;

pub use debug::{DebugFlags, Track};
pub use memtag::ObjectSite;

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::memmap::PAGE_SIZE;
use crate::mm::numa::{MAX_NODES, NodeId};
use crate::mm::{PageAllocator, PageError, PhysAddr};
use crate::percpu::PerCpu;
use crate::sync::IrqMutex;
use alien::AlienBatch;
use debug::DebugLayout;
use header::{ChainKey, Shape, SlabList};
use layout::SlabLayout;
use magazine::{CpuMagazines, Depot, MAG_MAX};

/// What a slab cache needs from the allocator it belongs to: the page allocator it grows
/// from and gives slabs back to, and that allocator's policies. `Kmem` implements it with
/// fault injection and with reclaim of every cache's empty slabs when pages run short;
/// [`PageAllocator`] implements it plainly, for a cache that lives on its own.
pub(crate) trait Backing<A: Arch> {
    /// The page allocator slabs come from and go back to.
    fn pages(&self) -> &PageAllocator<A>;

    /// A block of `2^order` pages for a new slab (or a new cache's arrays). Called with
    /// the growing cache's node lock held (or the registry, for a new cache): an
    /// implementation may take other locks only by trying them.
    fn slab_pages(&self, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        self.pages().alloc_pages(order, gfp)
    }

    /// [`Backing::slab_pages`] from NUMA node `node` (with `Gfp::THIS_NODE`, from it
    /// alone), for a slab of that node's lists.
    fn slab_pages_on(&self, node: NodeId, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        self.pages().alloc_pages_node(node, order, gfp)
    }

    /// Whether allocations must leave the fast path — fault injection is armed, or the
    /// next allocation is to be sampled: one load on the allocation fast path.
    #[inline(always)]
    fn failslab_armed(&self) -> bool {
        false
    }

    /// Counts `objects` a CPU's magazine was refilled with: allocations to come, for the
    /// sampling of guarded allocations, counted off the fast path.
    #[inline(always)]
    fn refilled(&self, _objects: usize) {}

    /// Counts an allocation from `cache` with `gfp` and says whether this one must fail.
    fn failslab_fires(&self, _cache: CacheName, _gfp: Gfp) -> bool {
        false
    }
}

impl<A: Arch> Backing<A> for PageAllocator<A> {
    #[inline(always)]
    fn pages(&self) -> &PageAllocator<A> {
        self
    }
}

/// A constructor or destructor: called with the object's address.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, SlabFlags};
/// use kmem::slab::ObjectFn;
/// const MAGIC: u64 = 0x5EED_CAFE;
/// fn init(obj: *mut u8) {
///     // SAFETY: kmem passes a fresh object of the cache below: 64 bytes, 8-aligned.
///     unsafe { obj.cast::<u64>().write(MAGIC) }
/// }
/// let ctor: ObjectFn = init;
/// let c = kmem.cache_create("sessions", 64, 8, SlabFlags::NONE, Some(ctor), None)?;
/// let s = c.alloc(Gfp::KERNEL)?;
/// assert_eq!(unsafe { s.cast::<u64>().read() }, MAGIC); // SAFETY: s is live.
/// unsafe { c.free(s) }?; // SAFETY: s is freed in its constructed state, not used again.
/// # c.destroy().map_err(|(_, e)| e)?;
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub type ObjectFn = fn(*mut u8);

/// Most bytes in a cache name.
///
/// # Examples
/// ```
/// use kmem::slab::{CacheName, NAME_MAX};
/// assert!(CacheName::new(&"x".repeat(NAME_MAX)).is_ok());
/// assert!(CacheName::new(&"x".repeat(NAME_MAX + 1)).is_err());
/// ```
pub const NAME_MAX: usize = 31;

/// A cache's name, stored inline.
///
/// # Examples
/// ```
/// use kmem::slab::CacheName;
/// let name = CacheName::new("dentry")?;
/// assert_eq!(format!("[{name:>8}]"), "[  dentry]"); // pads like a str
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; NAME_MAX],
    len: u8,
}

impl CacheName {
    /// The name `s`, or an error when it is empty or longer than [`NAME_MAX`] bytes.
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabError;
    /// use kmem::slab::CacheName;
    /// assert_eq!(CacheName::new("inode")?.as_str(), "inode");
    /// assert_eq!(CacheName::new(""), Err(SlabError::BadName));
    /// # Ok::<(), SlabError>(())
    /// ```
    pub fn new(s: &str) -> Result<CacheName, SlabError> {
        if s.is_empty() || s.len() > NAME_MAX {
            return Err(SlabError::BadName);
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(CacheName {
            bytes,
            len: s.len() as u8,
        })
    }

    /// A name built from `prefix` and a number (`kmalloc-96`), cut at [`NAME_MAX`]
    /// bytes.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::CacheName;
    /// assert_eq!(CacheName::numbered("kmalloc-", 96).as_str(), "kmalloc-96");
    /// ```
    pub fn numbered(prefix: &str, n: usize) -> CacheName {
        let mut buf = [0u8; NAME_MAX];
        let mut w = Cursor(&mut buf, 0);
        let _ = fmt::Write::write_fmt(&mut w, format_args!("{prefix}{n}"));
        let len = w.1;
        CacheName {
            bytes: buf,
            len: len as u8,
        }
    }

    /// The name as text.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let cache = kmem.kmalloc_cache_for(24, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(cache.name().as_str(), "kmalloc-24");
    /// ```
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

struct Cursor<'a>(&'a mut [u8; NAME_MAX], usize);

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(NAME_MAX - self.1);
        self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.1 += n;
        Ok(())
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Cache creation flags.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::SlabFlags;
/// let flags = SlabFlags::HWCACHE_ALIGN | SlabFlags::POISON;
/// let c = kmem.cache_create("skbuff", 200, 8, flags, None, None)?;
/// assert_eq!(c.cache().debug_flags().to_string(), "P");
/// # c.destroy().map_err(|(_, e)| e)?;
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SlabFlags(u32);

impl SlabFlags {
    /// No flag: slabs from the Normal zone (or below), objects aligned as asked, no
    /// debugging of the cache's own.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// assert_eq!(SlabFlags::default(), SlabFlags::NONE);
    /// assert_eq!(SlabFlags::NONE.gfp(), Gfp::KERNEL);
    /// ```
    pub const NONE: SlabFlags = SlabFlags(0);
    /// Align objects to the cache line.
    ///
    /// # Examples
    /// Per-CPU counters that must not share a line:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let c = kmem.cache_create("stats", 40, 8, SlabFlags::HWCACHE_ALIGN, None, None)?;
    /// assert_eq!(c.cache().stride(), 64);
    /// let p = c.alloc(Gfp::KERNEL)?;
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// unsafe { c.free(p) }?; // SAFETY: p is not used again.
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(1 << 0);
    /// Take slabs from the DMA zone.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// // Floppy or ISA sound buffers on x86: below 16 MiB.
    /// assert_eq!(SlabFlags::DMA.gfp(), Gfp::DMA);
    /// ```
    pub const DMA: SlabFlags = SlabFlags(1 << 1);
    /// Take slabs from DMA32 (or DMA).
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// use kmem::mm::zone::ZoneKind;
    /// // Descriptors for a device with 32-bit DMA addresses.
    /// assert_eq!(SlabFlags::DMA32.gfp().zone(), ZoneKind::Dma32);
    /// ```
    pub const DMA32: SlabFlags = SlabFlags(1 << 2);
    /// Sanity checks for this cache alone, as Linux's `SLAB_CONSISTENCY_CHECKS`
    /// ([`DebugFlags::SANITY`]).
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// use kmem::slab::DebugFlags;
    /// assert_eq!(SlabFlags::SANITY.debug(), DebugFlags::SANITY);
    /// ```
    pub const SANITY: SlabFlags = SlabFlags(1 << 3);
    /// Red zones for this cache alone, as `SLAB_RED_ZONE` ([`DebugFlags::RED_ZONE`]).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::SlabFlags;
    /// let c = kmem.cache_create("guarded", 100, 8, SlabFlags::RED_ZONE, None, None)?;
    /// assert!(c.cache().stride() > c.cache().usable_size(), "room for the red zones");
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const RED_ZONE: SlabFlags = SlabFlags(1 << 4);
    /// Poisoning for this cache alone, as `SLAB_POISON` ([`DebugFlags::POISON`]).
    ///
    /// # Examples
    /// See [`SlabFlags`].
    pub const POISON: SlabFlags = SlabFlags(1 << 5);
    /// Owner tracking for this cache alone, as `SLAB_STORE_USER`
    /// ([`DebugFlags::STORE_USER`]).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{SlabError, SlabFlags};
    /// let c = kmem.cache_create("tracked", 32, 8, SlabFlags::STORE_USER, None, None)?;
    /// let leak = c.alloc(kmem::Gfp::KERNEL)?;
    /// // The refusal logs the leaked object with the line that allocated it.
    /// let (c, e) = c.destroy().unwrap_err();
    /// assert!(matches!(e, SlabError::Busy { live: 1, .. }));
    /// # unsafe { c.free(leak) }?; // SAFETY: leak is live and not used again.
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), SlabError>(())
    /// ```
    pub const STORE_USER: SlabFlags = SlabFlags(1 << 6);

    /// Whether every flag of `o` is set.
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// let f = SlabFlags::HWCACHE_ALIGN | SlabFlags::DMA32;
    /// assert!(f.contains(SlabFlags::DMA32));
    /// assert!(!f.contains(SlabFlags::DMA));
    /// ```
    pub const fn contains(self, o: SlabFlags) -> bool {
        self.0 & o.0 == o.0
    }

    /// The allocation flags the cache's slabs are taken with (their zone).
    ///
    /// # Examples
    /// ```
    /// use kmem::{Gfp, SlabFlags};
    /// assert_eq!((SlabFlags::DMA32 | SlabFlags::POISON).gfp(), Gfp::DMA32);
    /// ```
    pub const fn gfp(self) -> Gfp {
        if self.contains(SlabFlags::DMA) {
            Gfp::DMA
        } else if self.contains(SlabFlags::DMA32) {
            Gfp::DMA32
        } else {
            Gfp::KERNEL
        }
    }

    /// The debug options these flags ask for.
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabFlags;
    /// use kmem::slab::DebugFlags;
    /// let f = SlabFlags::HWCACHE_ALIGN | SlabFlags::RED_ZONE | SlabFlags::POISON;
    /// assert_eq!(Some(f.debug()), DebugFlags::parse("ZP"));
    /// ```
    pub fn debug(self) -> DebugFlags {
        [
            (SlabFlags::SANITY, DebugFlags::SANITY),
            (SlabFlags::RED_ZONE, DebugFlags::RED_ZONE),
            (SlabFlags::POISON, DebugFlags::POISON),
            (SlabFlags::STORE_USER, DebugFlags::STORE_USER),
        ]
        .into_iter()
        .filter(|(s, _)| self.contains(*s))
        .fold(DebugFlags::NONE, |d, (_, f)| d.union(f))
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, o: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | o.0)
    }
}

/// What a cache is made of.
#[derive(Clone, Copy)]
pub(crate) struct CacheSpec {
    pub name: CacheName,
    pub size: usize,
    pub align: usize,
    pub flags: SlabFlags,
    pub ctor: Option<ObjectFn>,
    pub dtor: Option<ObjectFn>,
}

/// How a cache checks and hardens itself (from `kmalloc::Options`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hardening {
    pub debug: DebugFlags,
    pub init_on_alloc: bool,
    pub init_on_free: bool,
    pub random_freelist: bool,
    /// Entropy for the free-list key.
    pub seed: u64,
}

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

/// One NUMA node's slab lists: every slab on them has its pages on that node (a slab
/// grows on its node's pages with `Gfp::THIS_NODE`; see `cache`).
struct Node {
    full: SlabList,
    partial: SlabList,
    free: SlabList,
    /// Objects free on slab chains (not in any magazine).
    free_objects: usize,
    /// Above this many free objects, a slab that becomes empty goes back to the pages.
    free_limit: usize,
    colour_next: usize,
    /// Slabs on the lists.
    slabs: usize,
    /// Objects freed on CPUs of other nodes and returned here from alien batches.
    remote_frees: usize,
}

/// The per-node part of a cache past node 0 (whose part sits in the cache itself): its
/// slab lists and its depot, each behind its own lock.
struct NodeSlabs<A: Arch> {
    node: IrqMutex<A, Node>,
    depot: IrqMutex<A, Depot>,
}

/// A slab cache. Lives at a fixed address once used: page descriptors of its slabs
/// point back at it.
///
/// Hot fields first, on a cache line boundary: what the fast paths read — tag, slow
/// flag, the per-CPU slots, the chain key, then the geometry's
/// reciprocal, state-word offset, stride and count — lies in the first 96 bytes, so an
/// allocation touches one cache line of the cache and a free two, not the five or six
/// the compiler's field order spread them over.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// let cache = kmem.kmalloc_cache_for(100, 8, kmem::Gfp::KERNEL).unwrap();
/// assert_eq!(cache.name().as_str(), "kmalloc-112");
/// assert_eq!(cache.object_size(), 112);
/// ```
#[repr(C, align(64))]
pub struct SlabCache<A: Arch> {
    /// Non-zero: the cache keeps each object's state in the object's first word (see
    /// [`cache`](self::cache)), and then equals the key's secret. Zero for caches with a
    /// constructor or destructor (their objects' contents are the user's even while
    /// free) and for slow caches, so a non-zero tag also says "not slow": the fast paths
    /// of tagged caches read this field alone. An atomic (relaxed: a plain load) because
    /// the fast paths read it before any lock, and `set_debug` may write it.
    tag: AtomicUsize,
    /// Debugging or init-on-alloc/free is on: allocations and frees take the checked
    /// paths. Atomic as `tag`.
    slow: AtomicBool,
    /// NUMA nodes the cache keeps lists and depots for. Not read by the fast paths: on
    /// several nodes the CPUs' magazines refuse fast pushes (`CpuMagazines::fast_cap`).
    nodes: u8,
    /// Not hot: here it fills the padding after `slow`, which keeps the cache at six
    /// cache lines.
    gfp: Gfp,
    cpu: PerCpu<A, CpuMagazines>,
    /// The secret of every state word (`header`): the array word is `address ^ secret`.
    key: ChainKey,
    /// The slot layout and debug settings. Changed only by [`SlabCache::set_debug`],
    /// while the cache has no slab and holds its node lock (see there).
    geo: UnsafeCell<Geometry>,
    name: CacheName,
    object_size: usize,
    /// Object alignment, as the layout was built for (kept to rebuild it).
    align: usize,
    ctor: Option<ObjectFn>,
    dtor: Option<ObjectFn>,
    /// Node 0's slab lists.
    node0: IrqMutex<A, Node>,
    /// The magazines of node 0's CPUs that no CPU holds.
    depot0: IrqMutex<A, Depot>,
    /// The lists and depots of nodes 1.. (`nodes - 1` of them), carved with the arrays;
    /// dangling on one node.
    other_nodes: *const NodeSlabs<A>,
    /// The page block holding the per-CPU slots, the magazines, the depots' arrays and
    /// the other nodes' lists (the cache's arrays), when the cache has one of its own
    /// (else they are in memory its creator holds).
    arrays: Option<(PhysAddr, u32)>,
    /// Problems found and reported (red zones, poison, free-list links).
    reports: AtomicUsize,
    /// Next user-created cache in the registry, written under the registry lock. An
    /// atomic because other holders of `&SlabCache` may read the cache meanwhile: no
    /// `&mut` to a live cache may exist.
    pub(crate) next: core::sync::atomic::AtomicPtr<SlabCache<A>>,
}

// SAFETY: all mutable state is behind the per-CPU and node locks (the geometry: see
// `set_debug`); raw pointers point into memory the cache owns.
unsafe impl<A: Arch> Send for SlabCache<A> {}
// SAFETY: as for Send.
unsafe impl<A: Arch> Sync for SlabCache<A> {}

/// Objects a magazine holds: Linux's `enable_cpucache` batchcount (half its per-CPU
/// limit, so a CPU's two magazines hold what its array did), with 56 for small objects
/// where Linux has 60, so that a small cache's magazines are whole cache lines of entries
/// and its arrays fit two pages on four CPUs (with 60 they took four).
fn magazine_cap(size: usize) -> usize {
    match size {
        s if s > 128 * 1024 => 1,
        s if s > PAGE_SIZE as usize => 4,
        s if s > 1024 => 12,
        s if s > 256 => 27,
        _ => MAG_MAX,
    }
}

/// Objects a refill from the slabs puts in an empty magazine of `cap`: all of it, but for
/// objects over a page half, as Linux's batch of 2 where its limit is 8 (it takes 4): a
/// refill then takes two objects of up to 128 KiB off the slabs, not four, which keeps
/// heap efficiency on large requests (BENCHMARKS.md).
pub(crate) fn refill_batch(stride: usize, cap: usize) -> usize {
    if stride > PAGE_SIZE as usize {
        (cap / 2).max(1)
    } else {
        cap
    }
}

/// Magazines in a cache's depot: on one CPU none (the depot would only lengthen the
/// CPU's own cache), and none for objects over a page, whose slabs are worth more
/// back in the page allocator than parked.
fn depot_magazines(stride: usize, nr_cpus: usize) -> usize {
    if nr_cpus > 1 && stride <= PAGE_SIZE as usize {
        8
    } else {
        0
    }
}

/// A cache keeps empty slabs while they hold up to 1/`EMPTY_SLAB_SHARE` of its zone.
const EMPTY_SLAB_SHARE: usize = 64;

/// How many free objects a node keeps on its slabs before a slab that becomes empty goes
/// back to the page allocator: Linux's `(1 + cpus) × batch + num`, or as many objects
/// as 1/[`EMPTY_SLAB_SHARE`] of the cache's zone holds, whichever is more.
///
/// With Linux's figure alone, freeing a burst of objects (the benchmark's 10 000 × 64 B)
/// sent all but a few of their slabs through the page allocator, and the next burst took
/// them back and formatted them again: BENCHMARKS.md has the figures. Kept slabs are not
/// lost to the rest of the system: an allocation the page allocator cannot serve first
/// takes back every cache's empty slabs (`Kmem::alloc_pages`).
fn free_limit<A: Arch>(
    pages: &PageAllocator<A>,
    gfp: Gfp,
    num: usize,
    stride: usize,
    nr_cpus: usize,
    batch: usize,
) -> usize {
    let zone_bytes =
        pages.info().zones[gfp.zone().index()].managed_pages as usize * PAGE_SIZE as usize;
    ((1 + nr_cpus) * batch + num).max(zone_bytes / EMPTY_SLAB_SHARE / stride)
}

/// The share of their full size ([`magazine_cap`]) a cache's magazines get, in 1/256ths.
///
/// Full arrays suit a zone of tens of MiB and more; in a small one (x86's 16 MiB DMA
/// zone, a firmware heap) the ~80 kmalloc caches' arrays would take over 1 % of the zone
/// and hold several % of it in cached free objects, so a zone's kmalloc caches share a
/// budget (`kmalloc::zone_caches`) and caches created later take their zone's scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArrayScale(u16);

impl ArrayScale {
    /// Magazines as [`magazine_cap`] sizes them.
    pub const FULL: ArrayScale = ArrayScale(256);

    /// The floor: an eighth (magazines of 7 objects of up to 256 bytes).
    /// Without it a zone of a few MiB (a 4 MiB heap, two CPUs: the per-CPU slots alone
    /// exceed its budget) got arrays of one object, and every allocation and free took the
    /// node lock: the firmware bench's batch rows ran at 2.5–3.5× the ticks of full arrays.
    /// At an eighth they run at 1.2–1.7× (a quarter: as full ones), and a 16 MiB zone
    /// with four CPUs keeps its own scale (42), which a quarter would override, raising
    /// its metadata from 1.28 to 1.55 % (BENCHMARKS.md, "Tried and not kept").
    pub const MIN: ArrayScale = ArrayScale(32);

    /// The largest scale at which `bytes(scale)` ≤ `budget`, or [`ArrayScale::MIN`] when
    /// none above it fits. `bytes` must not grow as the scale falls (array bytes do not).
    pub fn fitting(budget: usize, bytes: impl Fn(ArrayScale) -> usize) -> ArrayScale {
        let (mut lo, mut hi) = (Self::MIN.0, Self::FULL.0);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if bytes(ArrayScale(mid)) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        ArrayScale(lo)
    }

    /// `n` scaled, at least 1.
    fn of(self, n: usize) -> usize {
        (n * self.0 as usize / 256).max(1)
    }
}

/// A cache's arrays: the magazine size, the depot's magazines, and the bytes of the
/// per-CPU slots, every magazine and the depot's array of magazine pointers.
/// On several nodes, every node has a depot of `depot` magazines, nodes 1.. their
/// lists and depots (`NodeSlabs`) after the depots' arrays, and every CPU an alien
/// batch per node after those.
struct ArrayPlan {
    cap: usize,
    depot: usize,
    nodes: usize,
    bytes: usize,
}

impl ArrayPlan {
    fn new<A: Arch>(stride: usize, nr_cpus: usize, nodes: usize, scale: ArrayScale) -> ArrayPlan {
        let cap = scale.of(magazine_cap(stride));
        let depot = depot_magazines(stride, nr_cpus);
        let nodes = nodes.max(1);
        let bytes = PerCpu::<A, CpuMagazines>::bytes_needed(nr_cpus)
            + (2 * nr_cpus + nodes * depot) * CpuMagazines::magazine_bytes(cap)
            + (nodes * depot * size_of::<usize>()).next_multiple_of(64)
            + ((nodes - 1) * size_of::<NodeSlabs<A>>()).next_multiple_of(64)
            + Self::alien_bytes(nr_cpus, nodes);
        ArrayPlan {
            cap,
            depot,
            nodes,
            bytes,
        }
    }

    /// Bytes of the alien batches: none on one node.
    fn alien_bytes(nr_cpus: usize, nodes: usize) -> usize {
        if nodes > 1 {
            (nr_cpus * nodes * size_of::<AlienBatch>()).next_multiple_of(64)
        } else {
            0
        }
    }
}

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
    fn new(
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
    fn slow(&self) -> bool {
        !self.debug.flags.is_empty() || self.init_on_alloc || self.init_on_free
    }
}

impl<A: Arch> SlabCache<A> {
    /// The geometry and alignment of a cache as `spec` describes.
    fn geometry(spec: &CacheSpec, hard: &Hardening) -> Result<(Geometry, usize), SlabError> {
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

    /// Bytes of array memory (per-CPU slots, magazines, the depots' arrays, the lists of
    /// nodes past 0) a cache as `spec` describes needs on `nr_cpus` CPUs and `nodes`
    /// nodes: what [`SlabCache::new`] carves from the
    /// memory it is given, at `scale`. A multiple of 64.
    pub(crate) fn array_bytes(
        spec: &CacheSpec,
        hard: &Hardening,
        nr_cpus: usize,
        nodes: usize,
        scale: ArrayScale,
    ) -> Result<usize, SlabError> {
        let (geo, _) = Self::geometry(spec, hard)?;
        Ok(ArrayPlan::new::<A>(geo.layout.stride, nr_cpus, nodes, scale).bytes)
    }

    /// A cache as `spec` describes, with arrays at `scale` for the page allocator's CPUs
    /// in `arrays` ([`SlabCache::array_bytes`] bytes at that scale), or, when `None`, in
    /// a page block of its own from `k` (as slabs come: with `Kmem`'s reclaim when pages
    /// run short).
    ///
    /// # Safety
    /// `arrays`, when given, must be 64-aligned, writable for `array_bytes` bytes, used by
    /// nothing else, and outlive the cache.
    pub(crate) unsafe fn new(
        k: &impl Backing<A>,
        spec: &CacheSpec,
        hard: &Hardening,
        arrays: Option<*mut u8>,
        scale: ArrayScale,
    ) -> Result<Self, SlabError> {
        const {
            use core::mem::offset_of;
            assert!(
                offset_of!(Self, key) + size_of::<ChainKey>() <= 64,
                "allocation reads one line"
            );
            let num = offset_of!(Self, geo) + offset_of!(Geometry, layout);
            assert!(
                num + offset_of!(SlabLayout, num) + 8 <= 128,
                "a free reads two"
            );
            assert!(
                PerCpu::<A, CpuMagazines>::bytes_needed(1) <= 64,
                "a CPU's magazines and alien batches' pointer share its slot's line"
            );
        }
        let (geo, align) = Self::geometry(spec, hard)?;
        let layout = geo.layout;
        let gfp = spec.flags.gfp();
        let pages = k.pages();
        let nr_cpus = pages.nr_cpus();
        let plan = ArrayPlan::new::<A>(layout.stride, nr_cpus, pages.nr_nodes(), scale);
        let (mem, own) = match arrays {
            Some(mem) => (mem, None),
            None => {
                let order = crate::mm::buddy::order_for_bytes(plan.bytes);
                let pa = k
                    .slab_pages(order, Gfp::KERNEL)
                    .map_err(|_| SlabError::OutOfMemory { cache: spec.name })?;
                (A::phys_to_virt(pa) as *mut u8, Some((pa, order)))
            }
        };
        let cpu_bytes = PerCpu::<A, CpuMagazines>::bytes_needed(nr_cpus);
        let mag_bytes = CpuMagazines::magazine_bytes(plan.cap);
        let nr_mags = 2 * nr_cpus + plan.nodes * plan.depot;
        let ptr_bytes = (plan.nodes * plan.depot * size_of::<usize>()).next_multiple_of(64);
        let topology = pages.topology();
        let new_node = || Node {
            full: SlabList::new(),
            partial: SlabList::new(),
            free: SlabList::new(),
            free_objects: 0,
            free_limit: free_limit(pages, gfp, layout.num, layout.stride, nr_cpus, plan.cap),
            colour_next: 0,
            slabs: 0,
            remote_frees: 0,
        };
        // SAFETY: `mem` is 64-aligned (≥ the slot alignment) and holds plan.bytes: the
        // per-CPU slots, then the magazines, two per CPU and every node's depot's, then
        // the depots' arrays of pointers, then the lists and depots of nodes 1.., then
        // on several nodes every CPU's alien batches (each part a multiple of 64 bytes
        // in, aligned for its type), used by this cache alone (the caller's promise, or
        // a fresh block). Each magazine is `cap` words of its own, each CPU's batches its
        // own `nodes`.
        let (cpu, depots, other_nodes) = unsafe {
            let mag = |i: usize| mem.add(cpu_bytes + i * mag_bytes).cast::<usize>();
            let ptrs = mem
                .add(cpu_bytes + nr_mags * mag_bytes)
                .cast::<*mut usize>();
            for d in 0..plan.nodes * plan.depot {
                ptrs.add(d).write(mag(2 * nr_cpus + d));
            }
            let depot = |n: usize| Depot::new(ptrs.add(n * plan.depot), plan.depot, plan.cap);
            let others = mem
                .add(cpu_bytes + nr_mags * mag_bytes + ptr_bytes)
                .cast::<NodeSlabs<A>>();
            for n in 1..plan.nodes {
                others.add(n - 1).write(NodeSlabs {
                    node: IrqMutex::new(new_node()),
                    depot: IrqMutex::new(depot(n)),
                });
            }
            let aliens = others
                .cast::<u8>()
                .add(((plan.nodes - 1) * size_of::<NodeSlabs<A>>()).next_multiple_of(64))
                .cast::<AlienBatch>();
            let nr_aliens = if plan.nodes > 1 {
                nr_cpus * plan.nodes
            } else {
                0
            };
            for b in 0..nr_aliens {
                aliens.add(b).write(AlienBatch::EMPTY);
            }
            (
                PerCpu::init_at(mem, nr_cpus, |i| {
                    CpuMagazines::new(
                        plan.cap,
                        mag(2 * i),
                        mag(2 * i + 1),
                        topology.node_of_cpu(i),
                        plan.nodes,
                        aliens.add(if plan.nodes > 1 { i * plan.nodes } else { 0 }),
                    )
                }),
                depot(0),
                others.cast_const(),
            )
        };
        let key = ChainKey::new(hard.seed ^ mem as u64, hard.random_freelist);
        let cache = SlabCache {
            name: spec.name,
            object_size: spec.size,
            align,
            geo: UnsafeCell::new(geo),
            nodes: plan.nodes as u8,
            gfp,
            ctor: spec.ctor,
            dtor: spec.dtor,
            cpu,
            node0: IrqMutex::new(new_node()),
            depot0: IrqMutex::new(depots),
            other_nodes,
            arrays: own,
            key,
            slow: AtomicBool::new(geo.slow()),
            tag: AtomicUsize::new(if geo.fp == 0 { key.secret() } else { 0 }),
            reports: AtomicUsize::new(0),
            next: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        };
        Ok(cache)
    }

    /// The slot layout and debug settings.
    #[inline(always)]
    pub(crate) fn geo(&self) -> &Geometry {
        // SAFETY: `set_debug` writes the geometry only while the cache has no slab and
        // holds the node lock; every reader either holds that lock or holds an object
        // (which only a slab made under the lock can give), so no read overlaps a write.
        unsafe { &*self.geo.get() }
    }

    /// Whether allocations and frees take the checked paths.
    #[inline(always)]
    pub(crate) fn slow(&self) -> bool {
        self.slow.load(Relaxed)
    }

    /// The array tag, or 0 when the cache does not tag objects.
    #[inline(always)]
    pub(crate) fn tag(&self) -> usize {
        self.tag.load(Relaxed)
    }

    /// Bytes a user may use in each object: the stride; or, up to its state word, the
    /// object part of a debug slot (past it lies the right red zone) or the slot.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// let cache = kmem.kmalloc_cache_for(100, 8, Gfp::KERNEL).unwrap();
    /// // SAFETY: p is live.
    /// assert_eq!(unsafe { kmem.ksize(p.as_ptr()) }?, cache.usable_size());
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn usable_size(&self) -> usize {
        let g = self.geo();
        if !g.debug.flags.is_empty() {
            g.debug.object
        } else if g.fp != 0 {
            g.fp
        } else {
            g.layout.stride
        }
    }

    /// Whether the cache has a constructor or destructor.
    pub(crate) fn has_ctor(&self) -> bool {
        self.ctor.is_some() || self.dtor.is_some()
    }

    /// The cache's debug flags.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::DebugFlags;
    /// let all = DebugFlags::ALL;
    /// assert_eq!(kmem.set_debug(Some("kmalloc-256"), all), Some((1, 0)));
    /// let cache = kmem.kmalloc_cache_for(256, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(cache.debug_flags(), all);
    /// ```
    pub fn debug_flags(&self) -> DebugFlags {
        self.geo().debug.flags
    }

    /// Problems reported so far (red zones, poison, free-list links).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let flags = SlabFlags::RED_ZONE | SlabFlags::POISON;
    /// let c = kmem.cache_create("checked", 48, 8, flags, None, None)?;
    /// let p = c.alloc(Gfp::KERNEL)?;
    /// unsafe { c.free(p) }?; // SAFETY: p is not used again.
    /// assert_eq!(c.cache().reports(), 0, "no red zone or poison damaged");
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn reports(&self) -> usize {
        self.reports.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// The cache's name.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let c = kmem.cache_create("inode", 600, 8, kmem::SlabFlags::NONE, None, None)?;
    /// let mut first = None;
    /// kmem.for_each_cache(|cache| { first.get_or_insert(cache.name()); });
    /// assert_eq!(first.unwrap().as_str(), "inode"); // user caches come first
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn name(&self) -> CacheName {
        self.name
    }

    /// Object size the cache was created with (for a kmalloc cache, its class size);
    /// [`SlabCache::usable_size`] may be larger.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let c = kmem.cache_create("inode", 600, 8, kmem::SlabFlags::NONE, None, None)?;
    /// assert_eq!(c.cache().object_size(), 600);
    /// assert!(c.cache().usable_size() >= 600);
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn object_size(&self) -> usize {
        self.object_size
    }

    /// The objects' alignment.
    pub(crate) fn align(&self) -> usize {
        self.align
    }

    /// Distance between objects in a slab, in bytes: at least
    /// [`SlabCache::usable_size`], more with debug slots or a word after the object.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let cache = kmem.kmalloc_cache_for(8, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(cache.stride(), 8, "no bytes per object beside the object");
    /// ```
    pub fn stride(&self) -> usize {
        self.geo().layout.stride
    }

    /// Current figures, in the shape of a `/proc/slabinfo` line.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(1000, Gfp::KERNEL)?;
    /// let info = kmem.kmalloc_cache_for(1000, 8, Gfp::KERNEL).unwrap().info();
    /// assert_eq!(info.active_objs, 1);
    /// assert!(info.num_slabs >= 1);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn info(&self) -> SlabInfo {
        let mut cpu_cached = 0;
        let mut cap = 0;
        let mut node_cached = [0; MAX_NODES];
        let mut alien_cached = 0;
        for c in 0..self.cpu.len() {
            let m = self.cpu.cpu(c);
            cpu_cached += m.cached();
            node_cached[m.node()] += m.cached();
            for (n, b) in m.aliens() {
                node_cached[n] += b.objects().len();
                alien_cached += b.objects().len();
            }
            cap = m.cap();
        }
        let (mut depot_full, mut depot_empty) = (0, 0);
        for (n, cached) in node_cached.iter_mut().enumerate().take(self.nodes()) {
            let d = self.depot(n).lock();
            (depot_full, depot_empty) = (depot_full + d.full(), depot_empty + d.empty());
            *cached += d.full() * cap;
        }
        let num = self.geo().layout.num;
        let (mut slabs, mut active_slabs, mut free_objects, mut remote_frees) = (0, 0, 0, 0);
        let (mut node_slabs, mut node_active) = ([0; MAX_NODES], [0; MAX_NODES]);
        for n in 0..self.nodes() {
            let node = self.node(n).lock();
            slabs += node.slabs;
            active_slabs += node.full.len() + node.partial.len();
            free_objects += node.free_objects;
            remote_frees += node.remote_frees;
            node_slabs[n] = node.slabs;
            // Saturating: objects may move between a CPU's count and this node's meanwhile.
            node_active[n] = (node.slabs * num).saturating_sub(node.free_objects + node_cached[n]);
        }
        let total = slabs * num;
        SlabInfo {
            name: self.name,
            active_objs: total - free_objects - cpu_cached - alien_cached - depot_full * cap,
            num_objs: total,
            objsize: self.geo().layout.stride,
            objperslab: num,
            pagesperslab: 1 << self.geo().layout.order,
            limit: 2 * cap,
            magazine: cap,
            cpu_cached,
            alien_cached,
            depot_full,
            depot_empty,
            active_slabs,
            num_slabs: slabs,
            node_slabs,
            node_active,
            remote_frees,
            waste_permille: self.geo().layout.waste_permille(),
        }
    }

    /// NUMA nodes the cache keeps slab lists and depots for.
    #[inline(always)]
    pub(crate) fn nodes(&self) -> usize {
        self.nodes as usize
    }

    /// The lists and depot of node `n` (< [`SlabCache::nodes`]) past node 0.
    fn other_node(&self, n: usize) -> &NodeSlabs<A> {
        assert!(n > 0 && n < self.nodes(), "node {n} out of range");
        // SAFETY: `new` wrote nodes - 1 of them in the arrays, which live as long as the
        // cache.
        unsafe { &*self.other_nodes.add(n - 1) }
    }

    /// Node `n`'s slab lists.
    #[inline]
    fn node(&self, n: usize) -> &IrqMutex<A, Node> {
        if n == 0 {
            &self.node0
        } else {
            &self.other_node(n).node
        }
    }

    /// Node `n`'s depot: the magazines of its CPUs that no CPU holds.
    #[inline]
    fn depot(&self, n: usize) -> &IrqMutex<A, Depot> {
        if n == 0 {
            &self.depot0
        } else {
            &self.other_node(n).depot
        }
    }
}

/// One cache's figures.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::Gfp;
/// let p = kmem.kmalloc(64, Gfp::KERNEL)?;
/// let info = kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().info();
/// println!("{info}"); // one /proc/slabinfo line
/// assert_eq!(info.num_objs, info.num_slabs * info.objperslab);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SlabInfo {
    /// The cache's name.
    pub name: CacheName,
    /// Objects handed out to users.
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Bytes from one object to the next ([`SlabCache::stride`]).
    pub objsize: usize,
    /// Objects in one slab.
    pub objperslab: usize,
    /// Pages in one slab (a power of two).
    pub pagesperslab: usize,
    /// Most objects a CPU holds: its two magazines.
    pub limit: usize,
    /// Objects a magazine holds.
    pub magazine: usize,
    /// Free objects held in CPUs' magazines, all CPUs.
    pub cpu_cached: usize,
    /// Free objects of other nodes held in CPUs' alien batches, on their way home.
    pub alien_cached: usize,
    /// Full magazines in the depot.
    pub depot_full: usize,
    /// Empty magazines in the depot.
    pub depot_empty: usize,
    /// Slabs with at least one object handed out (full or partial).
    pub active_slabs: usize,
    /// All slabs: full, partial and empty ones kept.
    pub num_slabs: usize,
    /// Slabs on each NUMA node's lists, whose pages lie on that node (all on node 0 on
    /// one node).
    pub node_slabs: [usize; MAX_NODES],
    /// Objects of each node's slabs handed out to users (the node's share of
    /// `active_objs`: a CPU's magazines and its node's depot hold only that node's
    /// objects).
    pub node_active: [usize; MAX_NODES],
    /// Objects freed on a CPU of another node than their slab's that have gone back to
    /// their home node's slabs (through alien batches).
    pub remote_frees: usize,
    /// Tail waste per slab, ‰.
    pub waste_permille: usize,
}

impl SlabInfo {
    /// The `/proc/slabinfo` header line.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::SlabInfo;
    /// println!("{}", SlabInfo::HEADER);
    /// kmem.slabinfo(|i| println!("{i}"));
    /// assert!(SlabInfo::HEADER.starts_with("# name"));
    /// ```
    pub const HEADER: &'static str = "# name               <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <magazine> : cpu <cached> : depot <full> <empty> : slabdata <active_slabs> <num_slabs> : waste";
}

impl fmt::Display for SlabInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<20} {:>8} {:>8} {:>7} {:>5} {:>3} : tunables {:>3} {:>3} : cpu {:>5} : depot {:>3} {:>3} : slabdata {:>6} {:>6} : {:>2}.{}%",
            self.name,
            self.active_objs,
            self.num_objs,
            self.objsize,
            self.objperslab,
            self.pagesperslab,
            self.limit,
            self.magazine,
            self.cpu_cached,
            self.depot_full,
            self.depot_empty,
            self.active_slabs,
            self.num_slabs,
            self.waste_permille / 10,
            self.waste_permille % 10,
        )?;
        // Per-node slab and handed-out counts and the objects on their way home, once a
        // slab lies past node 0.
        if let Some(last) = self
            .node_slabs
            .iter()
            .rposition(|&n| n > 0)
            .filter(|&l| l > 0)
        {
            f.write_str(" : nodes")?;
            for (slabs, active) in self.node_slabs[..=last].iter().zip(&self.node_active) {
                write!(f, " {slabs}/{active}")?;
            }
            write!(f, " : alien {}", self.alien_cached)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
