//! The page allocator: memory map → zones → page descriptors → buddy + per-CPU lists.
//!
//! [`PageAllocator::new`] takes a normalised memory map, carves its own metadata (the
//! descriptor array, the per-CPU lists and the zones' NUMA state) out of usable memory — as
//! the DragonOS seed puts its structures after `memory_management_struct` — and hands
//! every other usable frame to its zone's buddy allocator as maximal aligned blocks.
//!
//! On a NUMA machine ([`PageAllocator::with_topology`], [`numa::Topology`]) every node has
//! its own zones; a request prefers the running CPU's node and falls back to the others
//! nearest first ([`Gfp::THIS_NODE`] forbids that), and a CPU's page lists hold only its
//! own node's frames, so a block freed on another node goes straight home (`node`). Each
//! node's metadata — its descriptors, its CPUs' page lists, its zones — lies in its own
//! memory (`meta`): `NodeInfo::meta` says where.
//!
//! Lock order: a CPU's page lists, then a zone's free area (zones of different nodes are
//! never held together but by the fork handlers, node by node). Both are taken with
//! interrupts off. Bad frees are checked against the descriptor before anything changes,
//! so an error leaves the allocator exactly as it was.

pub(crate) mod buddy;
pub(crate) mod frame;
pub(crate) mod hot;
pub mod hotplug;
pub mod memmap;
mod meta;
mod node;
pub mod numa;
pub(crate) mod pcp;
pub mod zone;

pub use buddy::MAX_ORDER;

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::percpu::PerCpu;
use crate::sync::IrqMutex;
use buddy::{FreeArea, NR_ORDERS};
use frame::{Bank, FrameState, FrameTable, PAGE_SHIFT, PageFrame};
use memmap::{NormalizedMap, PAGE_SIZE, PhysRange};
use meta::{MetaLayout, MetaSizes};
use node::{MetaRef, Node, Nodes, NumaState};
use numa::{MAX_NODES, NodeId, Topology, TopologyError};

pub use node::{NodeInfo, NodeMeta, NumaStat};
use pcp::{PCP_ORDERS, PcpLists, PcpZones, pcp_list};
use zone::{NR_ZONES, ZoneKind, ZoneLimits};

/// The per-CPU page lists: each CPU's slot in its node's metadata (`meta`).
type PcpSlots<A> = PerCpu<A, PcpZones, true>;

pub use hotplug::{HotplugError, OomHook, OomRequest};

/// A physical address.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::memmap::PAGE_SIZE;
/// use kmem::{Gfp, PhysAddr};
/// let pa: PhysAddr = kmem.alloc_pages(0, Gfp::KERNEL)?;
/// assert_eq!(pa % PAGE_SIZE, 0);
/// unsafe { kmem.pages().free_pages(pa, 0) }?; // SAFETY: pa is not used again.
/// # Ok::<(), kmem::PageError>(())
/// ```
pub type PhysAddr = u64;

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

struct Zone<A: Arch> {
    /// Frames handed to this zone: at init, plus regions added since, less those removed
    /// (changed under the hotplug lock; read without it).
    managed: AtomicU64,
    area: IrqMutex<A, FreeArea>,
}

impl<A: Arch> Zone<A> {
    fn new() -> Zone<A> {
        Zone {
            managed: AtomicU64::new(0),
            area: IrqMutex::new(FreeArea::new()),
        }
    }
}

/// Figures for one zone.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// for z in kmem.pages().info().zones {
///     println!("{}: {} of {} pages in use", z.kind, z.used_pages(), z.managed_pages);
///     assert!(z.free_pages + z.pcp_pages <= z.managed_pages);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneInfo {
    /// The zone these figures are for.
    pub kind: ZoneKind,
    /// Frames handed to this zone: at init and by regions added since, less removed
    /// ones (metadata excluded).
    pub managed_pages: u64,
    /// Frames on the buddy free lists.
    pub free_pages: u64,
    /// Free frames held in per-CPU lists.
    pub pcp_pages: u64,
    /// Free blocks of each order.
    pub free_blocks: [u32; NR_ORDERS],
}

impl ZoneInfo {
    /// Frames handed out to users.
    ///
    /// # Examples
    /// ```
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// use kmem::Gfp;
    /// use kmem::mm::zone::ZoneKind;
    /// let normal = |p: &PageAllocator<_>| p.info().zones[ZoneKind::Normal.index()];
    /// let before = normal(&pages).used_pages();
    /// let pa = pages.alloc_pages(2, Gfp::KERNEL)?;
    /// assert_eq!(normal(&pages).used_pages(), before + 4);
    /// unsafe { pages.free_pages(pa, 2) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn used_pages(&self) -> u64 {
        self.managed_pages - self.free_pages - self.pcp_pages
    }
}

/// Figures for the whole page allocator.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// let info = kmem.pages().info();
/// print!("{info}"); // the zone table and the metadata line of the boot log
/// assert_eq!(info.frame_bytes, 24);
/// assert!(info.free_pages() < info.managed_pages());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PageInfo {
    /// Each zone's figures over all nodes, by [`ZoneKind::index`]; empty zones included.
    pub zones: [ZoneInfo; NR_ZONES],
    /// Each node's figures; the first [`PageInfo::nr_nodes`] are the allocator's.
    pub nodes: [NodeInfo; MAX_NODES],
    /// Number of nodes.
    pub nr_nodes: usize,
    /// Number of page descriptors, those of regions added at run time included.
    pub frames: u32,
    /// Bytes of one descriptor.
    pub frame_bytes: usize,
    /// Node 0's metadata: on one node, all of it (descriptors, per-CPU lists and zones);
    /// on several, node 0's plus what the nodes share. [`NodeInfo::meta`] has each
    /// node's.
    pub meta: PhysRange,
    /// Bytes of every node's metadata (what the nodes' [`NodeInfo::meta`] add up to).
    pub meta_bytes: u64,
    /// Regions added at run time and online now.
    pub hot_regions: u32,
    /// Bytes of those regions, their descriptors included.
    pub hot_bytes: u64,
    /// Bytes of their descriptors (carved from each region's first frames).
    pub hot_meta_bytes: u64,
}

impl PageInfo {
    /// The figures of the allocator's nodes.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let info = kmem.pages().info();
    /// assert_eq!(info.node_infos().len(), 1);
    /// assert_eq!(info.node_infos()[0].managed_pages(), info.managed_pages());
    /// ```
    pub fn node_infos(&self) -> &[NodeInfo] {
        &self.nodes[..self.nr_nodes]
    }

    /// Free frames, including those in per-CPU lists.
    ///
    /// # Examples
    /// ```
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// use kmem::Gfp;
    /// let before = pages.info().free_pages();
    /// let pa = pages.alloc_pages(3, Gfp::KERNEL)?;
    /// assert_eq!(pages.info().free_pages(), before - 8);
    /// unsafe { pages.free_pages(pa, 3) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.free_pages + z.pcp_pages).sum()
    }

    /// Frames handed to the zones: every usable frame but the metadata's.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::memmap::PAGE_SIZE;
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// let info = pages.info();
    /// assert_eq!(info.managed_pages() * PAGE_SIZE + info.meta.size(), map.usable_bytes());
    /// ```
    pub fn managed_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.managed_pages).sum()
    }

    /// Metadata as parts per million of the memory it manages (descriptors for all
    /// usable frames plus per-CPU lists, against managed frames).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let ppm = kmem.pages().info().metadata_ppm();
    /// assert!(ppm < 10_000, "descriptors take under 1 % of memory: {ppm} ppm");
    /// ```
    pub fn metadata_ppm(&self) -> u64 {
        self.meta_bytes * 1_000_000 / (self.managed_pages() * PAGE_SIZE).max(1)
    }
}

impl fmt::Display for PageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<7} {:>10} {:>10} {:>10} {:>10}",
            "zone", "managed", "free", "pcp", "used"
        )?;
        for z in &self.zones {
            writeln!(
                f,
                "{:<7} {:>10} {:>10} {:>10} {:>10}",
                z.kind.name(),
                z.managed_pages,
                z.free_pages,
                z.pcp_pages,
                z.used_pages()
            )?;
        }
        let ppm = self.metadata_ppm();
        write!(
            f,
            "page descriptors: {} x {} B; metadata {} KiB",
            self.frames,
            self.frame_bytes,
            self.meta_bytes / 1024,
        )?;
        if self.nr_nodes == 1 {
            write!(f, " at {}", self.meta)?;
        }
        writeln!(
            f,
            " = {}.{:04} % of managed memory",
            ppm / 10_000,
            ppm % 10_000
        )?;
        if self.nr_nodes > 1 {
            write!(f, "{}", NodeMeta(self))?;
        }
        if self.nr_nodes > 1 {
            write!(f, "{}", NumaStat(self))?;
        }
        if self.hot_regions > 0 {
            writeln!(
                f,
                "added at run time: {} regions, {} KiB, of which descriptors {} KiB",
                self.hot_regions,
                self.hot_bytes / 1024,
                self.hot_meta_bytes / 1024
            )?;
        }
        Ok(())
    }
}

/// `/proc/buddyinfo`-style view: free blocks per order and zone; on several nodes, per
/// node and zone (rows named `node:zone`).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::BuddyInfo;
/// use kmem::mm::zone::NR_ZONES;
/// let text = BuddyInfo(&kmem.pages().info()).to_string();
/// print!("{text}");
/// assert_eq!(text.lines().count(), 1 + NR_ZONES); // a header, then one row per zone
/// ```
pub struct BuddyInfo<'a>(
    /// The figures to show.
    pub &'a PageInfo,
);

impl fmt::Display for BuddyInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = self.0.nr_nodes == 1;
        // Rows are named `zone`, or `node:zone` on several nodes.
        write!(f, "{:<w$}", "order", w = if one { 7 } else { 9 })?;
        for o in 0..NR_ORDERS {
            write!(f, " {o:>5}")?;
        }
        writeln!(f)?;
        for (node, n) in self.0.node_infos().iter().enumerate() {
            for z in &n.zones {
                if !one {
                    write!(f, "{node}:")?;
                }
                write!(f, "{:<7}", z.kind.name())?;
                for n in z.free_blocks {
                    write!(f, " {n:>5}")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// The page allocator. See the module doc.
///
/// # Examples
/// ```
/// use kmem::hosted::{HostArch, Region};
/// use kmem::{Gfp, PageAllocator, ZoneLimits};
/// let ram = Region::new(16 << 20).unwrap();
/// let map = ram.normalized().unwrap();
/// // SAFETY: the region is RAM nothing else uses while the allocator lives.
/// let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 2, None) }
///     .expect("room for the metadata");
/// let pa = pages.alloc_pages(0, Gfp::KERNEL)?;
/// unsafe { pages.free_pages(pa, 0) }?; // SAFETY: pa is not used again.
/// # Ok::<(), kmem::PageError>(())
/// ```
pub struct PageAllocator<A: Arch> {
    table: FrameTable,
    /// Each CPU's page lists, in its node's metadata.
    pcp: PcpSlots<A>,
    /// Topology and fallback orders, in node 0's metadata.
    numa: MetaRef<NumaState>,
    /// Each node's zones, in its own metadata.
    nodes: Nodes<A>,
    /// Each node's metadata and the node whose memory holds it.
    meta: [(PhysRange, NodeId); MAX_NODES],
    limits: ZoneLimits,
    /// Serialises adding and removing regions (taken before the page lists and zone
    /// locks, with interrupts off: `hotplug::IrqOff`). Plain spin locks, so that a child
    /// after `fork` can free them (`after_fork_in_child`).
    hotplug: spin::Mutex<()>,
    /// The out-of-memory hook (`hotplug`).
    oom: spin::Mutex<Option<OomHook<A>>>,
    /// `cpu_id + 1` of the CPU running the hook, 0 when none does.
    oom_busy: AtomicUsize,
    _arch: PhantomData<fn() -> A>,
}

/// Every lock of the page allocator held across calls, for the hosted platform's `fork`
/// handlers.
#[cfg(any(test, feature = "hosted"))]
impl<A: Arch<IrqState = ()>> PageAllocator<A> {
    /// Holds every CPU's page lists, then every zone's free area, in the lock order
    /// (module doc): until [`PageAllocator::fork_release`], no thread is inside.
    pub(crate) fn fork_hold(&self) {
        self.pcp.hold_all();
        for z in self.zones() {
            z.area.hold();
        }
    }

    /// In a child after `fork`, whose only thread is the forking one: the hotplug and
    /// hook locks, which `fork_hold` does not take (a thread adding a region holds them
    /// while it waits for a zone lock `fork_hold` holds), are freed if a thread the child
    /// does not have held them, and no CPU runs the hook. A region such a thread was
    /// adding is published without its frames in a zone: the child cannot allocate from
    /// it or remove it (its frames read as in use), and loses nothing else.
    ///
    /// # Safety
    /// The calling process is a child just forked, with one thread, which holds none of
    /// these locks itself.
    pub(crate) unsafe fn after_fork_in_child(&self) {
        // SAFETY: the caller's contract: any holder is a thread this process lacks.
        unsafe {
            if self.hotplug.is_locked() {
                self.hotplug.force_unlock();
            }
            if self.oom.is_locked() {
                self.oom.force_unlock();
            }
        }
        self.oom_busy.store(0, Relaxed);
    }

    /// Gives back what [`PageAllocator::fork_hold`] held.
    ///
    /// # Safety
    /// `fork_hold` of this thread (or of the thread this process was forked from) holds
    /// them.
    pub(crate) unsafe fn fork_release(&self) {
        // SAFETY: the caller's contract: fork_hold took all of them.
        unsafe {
            for z in self.zones().rev() {
                z.area.release();
            }
            self.pcp.release_all();
        }
    }
}

impl<A: Arch> PageAllocator<A> {
    /// Builds the allocator over `map` for `nr_cpus` CPUs (1 to [`numa::MAX_CPUS`]), all
    /// on one node: [`PageAllocator::with_topology`] with [`Topology::flat`]. The
    /// metadata goes at the first 2 MiB boundary at or above `place_after` that fits (the
    /// seed's layout after the kernel image), or else at the start of the largest usable
    /// range.
    ///
    /// # Safety
    /// Every usable range of `map` must be RAM that nothing else uses for the lifetime of
    /// the allocator, reachable at [`Arch::phys_to_virt`].
    ///
    /// # Examples
    /// The kernel image sits in the first 5 MiB of RAM:
    /// ```
    /// use kmem::hosted::{HostArch, Region};
    /// use kmem::{PageAllocator, RegionKind, ZoneLimits};
    /// let ram = Region::new(32 << 20).unwrap();
    /// let kernel_end = ram.start() + (5 << 20);
    /// let mut map = ram.memory_map();
    /// map.add(RegionKind::Reserved, ram.start(), 5 << 20)?;
    /// let map = map.normalize()?;
    /// let after = Some(kernel_end);
    /// // SAFETY: the usable ranges are RAM nothing else uses while the allocator lives.
    /// let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 4, after) }
    ///     .expect("room for the metadata");
    /// assert_eq!(pages.info().meta.start, ram.start() + (6 << 20)); // the next 2 MiB boundary
    /// # Ok::<(), kmem::mm::memmap::MapError>(())
    /// ```
    pub unsafe fn new(
        map: &NormalizedMap,
        limits: ZoneLimits,
        nr_cpus: usize,
        place_after: Option<PhysAddr>,
    ) -> Result<Self, InitError> {
        // SAFETY: the caller's contract is ours.
        unsafe { Self::with_topology(map, limits, &Topology::flat(nr_cpus), place_after) }
    }

    /// Builds the allocator over `map` for the CPUs and nodes of `topology`, which must
    /// pass [`Topology::check`]. Each node's metadata goes in its own memory — the
    /// node of `place_after` after it as by [`PageAllocator::new`], the others at the
    /// start of their largest range — or, where a node has no room, in the nearest
    /// node's ([`NodeInfo::meta_home`]).
    ///
    /// # Safety
    /// As [`PageAllocator::new`].
    ///
    /// # Examples
    /// Two nodes of 8 MiB with two CPUs each:
    /// ```
    /// use kmem::hosted::{HostArch, Region};
    /// use kmem::mm::InitError;
    /// use kmem::{PageAllocator, PhysRange, Topology, TopologyError, ZoneLimits};
    /// let ram = Region::new(16 << 20).unwrap();
    /// let map = ram.normalized().unwrap();
    /// let mut topology = Topology::new();
    /// for node in 0..2 {
    ///     let start = ram.start() + node as u64 * (8 << 20);
    ///     topology.add_memory(node, PhysRange { start, end: start + (8 << 20) })?;
    ///     topology.add_cpu(2 * node, node)?;
    ///     topology.add_cpu(2 * node + 1, node)?;
    /// }
    /// type Pages = PageAllocator<HostArch>;
    /// // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// let pages = unsafe { Pages::with_topology(&map, ZoneLimits::FLAT, &topology, None) }
    ///     .expect("a good topology");
    /// assert_eq!(pages.nr_cpus(), 4);
    ///
    /// topology.add_cpu(4, 2)?; // node 2 has no memory
    /// // SAFETY: as above; the allocator is not built.
    /// let bad = unsafe { Pages::with_topology(&map, ZoneLimits::FLAT, &topology, None) };
    /// let why = TopologyError::CpuWithoutMemory { cpu: 4, node: 2 };
    /// assert_eq!(bad.err(), Some(InitError::Topology(why)));
    /// # Ok::<(), TopologyError>(())
    /// ```
    #[inline(never)] // its planning state stays off the caller's frame (a boot stack)
    pub unsafe fn with_topology(
        map: &NormalizedMap,
        limits: ZoneLimits,
        topology: &Topology,
        place_after: Option<PhysAddr>,
    ) -> Result<Self, InitError> {
        let nr_cpus = topology.cpus();
        if nr_cpus == 0 {
            return Err(InitError::NoCpus);
        }
        topology.check().map_err(InitError::Topology)?;
        let usable = map.usable();
        FrameTable::frames_needed(usable).ok_or(InitError::TooManyFrames)?;
        let numa_state = NumaState::new(topology);
        let sizes = MetaSizes {
            slot: (PcpSlots::<A>::slot_bytes(), PcpSlots::<A>::align()),
            node: (size_of::<Node<A>>(), align_of::<Node<A>>()),
            shared: (size_of::<NumaState>(), align_of::<NumaState>()),
            bank: (size_of::<Bank>(), align_of::<Bank>()),
        };
        let layout = MetaLayout::plan(usable, topology, &numa_state.fallback, sizes, place_after)?;
        let at = |pa: PhysAddr| A::phys_to_virt(pa) as *mut u8;
        let node_of = |pa| topology.node_of(pa).unwrap_or(0);
        // SAFETY: the layout carved every piece from usable RAM the caller gave us
        // exclusively, disjoint from each other; each bank's array has room for its
        // frames, aligned (pieces start 64-byte aligned, arrays at multiples of 24), and
        // the bank table its own aligned room in node 0's piece.
        let (shared, slot_table, bank_table) = layout.shared();
        let table = unsafe {
            FrameTable::init(
                layout.banks(),
                at(bank_table).cast(),
                |b| at(layout.bank_frames(b)).cast(),
                |pa| (limits.zone_of(pa), node_of(pa)),
            )
        };
        // SAFETY: as above: the table and each CPU's slot have their own aligned room in
        // the pieces.
        let pcp = unsafe {
            PerCpu::init_spread(
                at(slot_table).cast(),
                nr_cpus,
                |cpu| at(layout.slot(cpu, topology.node_of_cpu(cpu))),
                |cpu| PcpZones::new(topology.node_of_cpu(cpu)),
            )
        };
        // SAFETY: as above; the shared state has its own aligned room in node 0's piece.
        let numa = unsafe { MetaRef::init_at(at(shared).cast(), numa_state) };
        let nr_nodes = topology.nodes();
        let mut placed = [None; MAX_NODES];
        for (n, slot) in placed.iter_mut().enumerate().take(nr_nodes) {
            // SAFETY: as above; each node's zones have their own aligned room in its piece.
            *slot = Some(unsafe { MetaRef::init_at(at(layout.node(n)).cast(), Node::new()) });
        }
        let nodes = Nodes(placed.map(|n| n.or(placed[0]).expect("a node")));
        for (s, e, first) in table.bank_spans() {
            let mut free = [(s, e); MAX_NODES + 1];
            let mut nfree = 1;
            // What is left of the bank once every carved range is taken out: each cut
            // splits at most one piece in two.
            for c in layout.carved() {
                let cut = (c.start >> PAGE_SHIFT, c.end >> PAGE_SHIFT);
                let mut out = [(0, 0); MAX_NODES + 1];
                let mut nout = 0;
                for piece in &free[..nfree] {
                    for left in subtract(*piece, cut) {
                        out[nout] = left;
                        nout += 1;
                    }
                }
                (free, nfree) = (out, nout);
            }
            for &(ps, pe) in &free[..nfree] {
                for z in ZoneKind::ALL {
                    let (zs, ze) = limits.span(z);
                    let (zs, ze) = (zs >> PAGE_SHIFT, ze >> PAGE_SHIFT);
                    let (mut is, ie) = (ps.max(zs), pe.min(ze));
                    // One node's run at a time: a buddy block never spans two nodes.
                    while is < ie {
                        let (re, node) = topology.run_at(is, ie);
                        let zone = &nodes[node].zones[z.index()];
                        zone.area.lock().add_range(
                            &table,
                            first + (is - s) as u32,
                            (re - is) as u32,
                        );
                        zone.managed.fetch_add(re - is, Relaxed);
                        is = re;
                    }
                }
            }
        }
        let meta = core::array::from_fn(|n| {
            let p = &layout.pieces[n];
            (p.range(), p.home)
        });
        Ok(PageAllocator {
            table,
            pcp,
            numa,
            nodes,
            meta,
            limits,
            hotplug: spin::Mutex::new(()),
            oom: spin::Mutex::new(None),
            oom_busy: AtomicUsize::new(0),
            _arch: PhantomData,
        })
    }

    /// Allocates a block of 2^`order` frames from the highest zone `gfp` allows, falling
    /// back to lower zones. Returns its physical address, aligned to the block size.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages(3, Gfp::KERNEL | Gfp::ZERO)?; // 32 KiB, zeroed
    /// assert_eq!(pa % (32 << 10), 0);
    /// unsafe { pages.free_pages(pa, 3) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    #[inline]
    pub fn alloc_pages(&self, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        // Fast path: a cached order, no zeroing, and a block on this CPU's list for the
        // first zone with memory that `gfp` allows. Everything else, including an empty
        // list, goes the whole way (which also falls back to lower zones).
        if let Some(l) = pcp_list(order)
            && !gfp.contains(Gfp::ZERO)
            && let Some(Some(idx)) = self.pcp.try_owned(|lists| {
                // The CPU's lists hold its own node's frames: the preferred node.
                let zones = &self.nodes[lists.node].zones;
                let z = (0..=gfp.zone().index())
                    .rev()
                    .find(|&z| zones[z].managed.load(Relaxed) != 0)?;
                lists[z].pop(l)
            })
        {
            return Ok(self.hand_out(idx, order));
        }
        self.alloc_pages_slow(order, gfp)
    }

    /// Marks block `idx`, just taken from a per-CPU list, allocated; its address.
    #[inline(always)]
    fn hand_out(&self, idx: u32, order: u32) -> PhysAddr {
        self.table.frame(idx).set(FrameState::Allocated, order);
        self.table.pfn_of(idx) << PAGE_SHIFT
    }

    /// [`PageAllocator::alloc_pages`] past its fast path.
    #[inline(never)]
    fn alloc_pages_slow(&self, order: u32, gfp: Gfp) -> Result<PhysAddr, PageError> {
        self.alloc_pages_on(order, gfp, self.local_node())
    }

    /// A block preferring `node` (only `node` with [`Gfp::THIS_NODE`]), the whole way.
    fn alloc_pages_on(&self, order: u32, gfp: Gfp, node: NodeId) -> Result<PhysAddr, PageError> {
        if order > MAX_ORDER {
            return Err(PageError::OrderTooLarge { order });
        }
        let idx = match self.try_alloc(order, gfp, node) {
            Some(idx) => idx,
            None => {
                // Free frames may sit in other CPUs' lists, and split pieces there keep
                // their buddies from merging: give them all back and try once more;
                // then ask the out-of-memory hook for more memory.
                self.drain_all_pcp();
                match self.try_alloc(order, gfp, node) {
                    Some(idx) => idx,
                    None => self.alloc_from_hook(order, gfp, node)?,
                }
            }
        };
        let pa = self.table.pfn_of(idx) << PAGE_SHIFT;
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: the block was just allocated to this caller and lies in usable RAM
            // mapped at phys_to_virt; nobody else can reach it yet.
            unsafe {
                core::ptr::write_bytes(
                    A::phys_to_virt(pa) as *mut u8,
                    0,
                    (PAGE_SIZE as usize) << order,
                )
            };
        }
        Ok(pa)
    }

    /// A block from `node` (the nearest nodes after it, unless [`Gfp::THIS_NODE`]),
    /// from the highest zone `gfp` allows down: node by node, each node's zones in turn.
    fn try_alloc(&self, order: u32, gfp: Gfp, node: NodeId) -> Option<u32> {
        let list = pcp_list(order);
        let tried = if gfp.contains(Gfp::THIS_NODE) {
            1
        } else {
            self.nr_nodes()
        };
        for &n in &self.numa.fallback[node][..tried] {
            let n = n as NodeId;
            // The zones of `gfp.zone().fallbacks()`, as a plain loop: this is the page
            // fast path.
            for z in (0..=gfp.zone().index()).rev() {
                let zone = &self.nodes[n].zones[z];
                if zone.managed.load(Relaxed) == 0 {
                    continue;
                }
                let got = match list {
                    Some(l) => self.pcp_alloc(n, z, l),
                    None => zone
                        .area
                        .lock()
                        .alloc(&self.table, order, FrameState::Allocated),
                };
                if got.is_some() {
                    self.nodes[n].count_alloc(n, node);
                    return got;
                }
            }
        }
        None
    }

    /// A block of zone `z` of `node`: from this CPU's list `l`, refilling it when empty,
    /// if the CPU is on `node`; else from the zone itself.
    fn pcp_alloc(&self, node: NodeId, z: usize, l: usize) -> Option<u32> {
        let order = PCP_ORDERS[l];
        let idx = {
            let mut lists = self.pcp.local();
            if lists.node != node {
                drop(lists);
                return self.nodes[node].zones[z].area.lock().alloc(
                    &self.table,
                    order,
                    FrameState::Allocated,
                );
            }
            let list = &mut lists[z];
            if list.is_empty(l) {
                let mut area = self.nodes[node].zones[z].area.lock();
                for _ in 0..PcpLists::batch(l) {
                    match area.alloc(&self.table, order, FrameState::PcpCached) {
                        Some(idx) => list.push(l, idx),
                        None => break,
                    }
                }
            }
            list.pop(l)?
        };
        self.table.frame(idx).set(FrameState::Allocated, order);
        Some(idx)
    }

    /// Frees the block of 2^`order` frames at `pa`. An address that is not the head of an
    /// allocated block of that order is refused with the reason, and nothing changes —
    /// a debugging aid: a stale address whose block was handed out again frees the new
    /// owner's block.
    ///
    /// # Safety
    /// `pa` is the head of a block of this order that [`PageAllocator::alloc_pages`]
    /// (or `Kmem::alloc_pages` over this allocator) returned and that has not been freed
    /// since; nothing uses the block after this call.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages(2, Gfp::KERNEL)?;
    /// // SAFETY: pa is the order-2 block just allocated, and nothing uses it.
    /// unsafe { pages.free_pages(pa, 2) }?;
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    #[inline]
    pub unsafe fn free_pages(&self, pa: PhysAddr, order: u32) -> Result<(), PageError> {
        // Fast path: the head of an allocated block of a cached order, pushed onto this
        // CPU's list. Anything else goes the whole way, which checks again and says what
        // is wrong.
        if let Some(l) = pcp_list(order)
            && pa.is_multiple_of(PAGE_SIZE)
            && let Some((idx, f)) = self.table.frame_of(pa)
            && f.owner() == 0
            && f.transition(FrameState::Allocated, order, FrameState::PcpCached)
                .is_ok()
        {
            // The state change claimed the block (see `free_pages_slow`).
            let (node, zone) = f.place();
            if self
                .pcp
                .try_owned(|lists| lists.node == node && lists[zone].try_push(l, idx))
                != Some(true)
            {
                self.pcp_push(node, zone, l, idx);
            }
            return Ok(());
        }
        self.free_pages_slow(pa, order)
    }

    /// Pushes block `idx` (already `PcpCached`) of `zone` of `node` onto this CPU's
    /// list `l`, giving the list's coldest batch back to the zone first when it is full;
    /// a block of another node than the CPU's goes straight back to its home zone.
    #[inline(never)]
    fn pcp_push(&self, node: NodeId, zone: usize, l: usize, idx: u32) {
        let mut lists = self.pcp.local();
        if lists.node != node {
            drop(lists);
            let home = &self.nodes[node];
            home.count_remote_free();
            home.zones[zone]
                .area
                .lock()
                .free(&self.table, idx, PCP_ORDERS[l]);
            return;
        }
        let list = &mut lists[zone];
        if list.is_full(l) {
            let mut area = self.nodes[node].zones[zone].area.lock();
            let order = PCP_ORDERS[l];
            list.take_cold(l, PcpLists::batch(l), |i| area.free(&self.table, i, order));
        }
        list.push(l, idx);
    }

    /// [`PageAllocator::free_pages`] past its fast path.
    #[inline(never)]
    fn free_pages_slow(&self, pa: PhysAddr, order: u32) -> Result<(), PageError> {
        if order > MAX_ORDER {
            return Err(PageError::OrderTooLarge { order });
        }
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(PageError::Misaligned { addr: pa });
        }
        let (idx, f) = self
            .table
            .frame_of(pa)
            .ok_or(PageError::NotManaged { addr: pa })?;
        if f.owner() != 0 {
            return Err(PageError::Owned { addr: pa });
        }
        let (node, zone) = f.place();
        if let Some(l) = pcp_list(order) {
            // The state change claims the block: of two CPUs freeing it at once, one wins
            // and the other sees PcpCached and reports a double free. It also checks the
            // order, which is part of the state word.
            f.transition(FrameState::Allocated, order, FrameState::PcpCached)
                .map_err(|_| free_error(f, pa, order))?;
            self.pcp_push(node, zone, l, idx);
        } else {
            let mut area = self.nodes[node].zones[zone].area.lock();
            if f.state() != FrameState::Allocated || f.order() != order {
                return Err(free_error(f, pa, order));
            }
            area.free(&self.table, idx, order);
        }
        Ok(())
    }

    /// Gives every block in CPU `cpu`'s lists back to the zones.
    ///
    /// # Examples
    /// ```
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// use kmem::Gfp;
    /// let pa = pages.alloc_pages(0, Gfp::KERNEL)?;
    /// unsafe { pages.free_pages(pa, 0) }?; // SAFETY: pa is not used again.
    /// assert!(pages.info().zones.iter().any(|z| z.pcp_pages > 0));
    /// pages.drain_pcp(0); // the only CPU
    /// assert!(pages.info().zones.iter().all(|z| z.pcp_pages == 0));
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn drain_pcp(&self, cpu: usize) {
        let mut lists = self.pcp.cpu(cpu);
        let zones = &self.nodes[lists.node].zones;
        for (z, zone_lists) in lists.iter_mut().enumerate() {
            for (l, &order) in PCP_ORDERS.iter().enumerate() {
                if zone_lists.is_empty(l) {
                    continue;
                }
                let mut area = zones[z].area.lock();
                zone_lists.take_cold(l, usize::MAX, |i| area.free(&self.table, i, order));
            }
        }
    }

    /// Gives every per-CPU frame back to the zones.
    ///
    /// # Examples
    /// Before reading the fragmentation, so that cached blocks merge with their buddies:
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::mm::BuddyInfo;
    /// kmem.pages().drain_all_pcp();
    /// let info = kmem.pages().info();
    /// assert!(info.zones.iter().all(|z| z.pcp_pages == 0));
    /// print!("{}", BuddyInfo(&info));
    /// ```
    pub fn drain_all_pcp(&self) {
        for cpu in 0..self.pcp.len() {
            self.drain_pcp(cpu);
        }
    }

    /// Descriptor of the frame holding physical address `pa`, if kmem manages it.
    #[inline(always)]
    pub(crate) fn frame(&self, pa: PhysAddr) -> Option<&PageFrame> {
        self.table.frame_of(pa).map(|(_, f)| f)
    }

    /// The zone of the frame holding physical address `pa`, if kmem manages it.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// use kmem::mm::zone::ZoneKind;
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages(0, Gfp::KERNEL)?;
    /// assert_eq!(pages.zone_of(pa), Some(ZoneKind::Normal));
    /// // SAFETY: pa is the block just allocated, and nothing uses it.
    /// unsafe { pages.free_pages(pa, 0) }?;
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn zone_of(&self, pa: PhysAddr) -> Option<ZoneKind> {
        self.frame(pa).map(PageFrame::zone)
    }

    /// Number of CPU slots the allocator was built for.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let pages = kmem.pages();
    /// assert_eq!(pages.nr_cpus(), kmem::hosted::DEFAULT_CPUS);
    /// let last = pages.nr_cpus() - 1;
    /// pages.drain_pcp(last); // it went offline: its cached pages go back
    /// ```
    pub fn nr_cpus(&self) -> usize {
        self.pcp.len()
    }

    /// Current figures.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let info = kmem.pages().info();
    /// let free_mib = info.free_pages() * kmem::mm::memmap::PAGE_SIZE >> 20;
    /// assert!(free_mib > 8, "most of the 16 MiB is free: {free_mib} MiB");
    /// ```
    pub fn info(&self) -> PageInfo {
        let (mut hot_regions, mut hot_frames, mut hot_meta) = (0u32, 0u64, 0u64);
        for s in self.table.hot.spans() {
            hot_regions += 1;
            hot_frames += s.len();
            hot_meta += hotplug::meta_frames(s.len());
        }
        let mut pcp_pages = [[0u64; NR_ZONES]; MAX_NODES];
        for cpu in 0..self.pcp.len() {
            let lists = self.pcp.cpu(cpu);
            for (z, l) in lists.iter().enumerate() {
                pcp_pages[lists.node][z] += l.frames_held();
            }
        }
        let nr_nodes = self.nr_nodes();
        let nodes: [NodeInfo; MAX_NODES] = core::array::from_fn(|n| {
            if n < nr_nodes {
                self.node_info(n, &pcp_pages[n])
            } else {
                NodeInfo::EMPTY
            }
        });
        PageInfo {
            zones: core::array::from_fn(|z| {
                let mut all = nodes[0].zones[z];
                for n in &nodes[1..nr_nodes] {
                    all = all.plus(&n.zones[z]);
                }
                all
            }),
            nodes,
            nr_nodes,
            frames: self.table.len() + hot_frames as u32,
            frame_bytes: size_of::<PageFrame>(),
            meta: self.meta[0].0,
            meta_bytes: self.meta[..nr_nodes].iter().map(|(r, _)| r.size()).sum(),
            hot_regions,
            hot_bytes: hot_frames * PAGE_SIZE,
            hot_meta_bytes: hot_meta * PAGE_SIZE,
        }
    }

    /// Checks every zone's free lists against the descriptors.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        for z in self.zones() {
            z.area.lock().check(&self.table);
        }
    }

    /// Every zone of every node, node by node: the zone locks' order.
    #[cfg(any(test, feature = "hosted"))]
    fn zones(&self) -> impl DoubleEndedIterator<Item = &Zone<A>> {
        self.nodes.first(self.nr_nodes()).flat_map(|n| &n.zones)
    }

    /// The descriptor table: descriptors by index and by address (the slab layer links
    /// slabs by descriptor index).
    #[inline(always)]
    pub(crate) fn table(&self) -> &FrameTable {
        &self.table
    }
}

/// The error for a free of `f` at `pa` with `order`, from what its descriptor says.
fn free_error(f: &PageFrame, pa: PhysAddr, order: u32) -> PageError {
    match f.state() {
        FrameState::Free | FrameState::PcpCached => PageError::DoubleFree { addr: pa },
        FrameState::Tail => PageError::NotBlockHead { addr: pa },
        FrameState::Reserved => PageError::NotManaged { addr: pa },
        FrameState::Allocated => PageError::OrderMismatch {
            addr: pa,
            allocated: f.order(),
            freed: order,
        },
    }
}

const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

/// Where the metadata goes: see [`PageAllocator::new`].
fn place_metadata(usable: &[PhysRange], bytes: u64, after: Option<PhysAddr>) -> Option<PhysRange> {
    let fits = |start: u64, r: &PhysRange| {
        start
            .checked_add(bytes)
            .filter(|&end| start >= r.start && end <= r.end)
            .map(|end| PhysRange { start, end })
    };
    if let Some(after) = after {
        let block = 2 << 20;
        let found = usable
            .iter()
            .find_map(|r| fits(align_up(r.start.max(after), block), r));
        if found.is_some() {
            return found;
        }
    }
    let largest = usable.iter().max_by_key(|r| r.size())?;
    fits(largest.start, largest)
}

/// `[s, e)` minus `[cs, ce)`: up to two pieces.
fn subtract((s, e): (u64, u64), (cs, ce): (u64, u64)) -> impl Iterator<Item = (u64, u64)> {
    let left = (s, e.min(cs));
    let right = (s.max(ce), e);
    [left, right].into_iter().filter(|(a, b)| a < b)
}

#[cfg(test)]
mod tests;
