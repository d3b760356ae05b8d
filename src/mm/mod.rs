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
mod error;
pub(crate) mod frame;
pub(crate) mod hot;
pub mod hotplug;
mod info;
mod init;
pub mod memmap;
mod meta;
mod node;
pub mod numa;
pub(crate) mod pcp;
pub mod zone;

pub use buddy::MAX_ORDER;

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::percpu::PerCpu;
use crate::sync::IrqMutex;
use buddy::FreeArea;
use frame::{FrameState, FrameTable, PAGE_SHIFT, PageFrame};
use memmap::{PAGE_SIZE, PhysRange};
use node::{MetaRef, Nodes, NumaState};
use numa::{MAX_NODES, NodeId};

pub use node::{NodeInfo, NodeMeta, NumaStat};
use pcp::{PCP_ORDERS, PcpLists, PcpZones, pcp_list};
use zone::{ZoneKind, ZoneLimits};

/// The per-CPU page lists: each CPU's slot in its node's metadata (`meta`).
type PcpSlots<A> = PerCpu<A, PcpZones, true>;

pub use error::{InitError, PageError};
pub use hotplug::{HotplugError, OomHook, OomRequest};
pub use info::{BuddyInfo, PageInfo, ZoneInfo};

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

#[cfg(test)]
mod tests;
