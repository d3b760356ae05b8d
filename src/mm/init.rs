//! Building a [`PageAllocator`]: checking the topology, carving each node's metadata
//! (`meta`), laying out the descriptors, per-CPU page lists and zones there, and handing
//! every other usable frame to its node's zones as maximal aligned buddy blocks.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::frame::{Bank, FrameTable, PAGE_SHIFT};
use super::memmap::NormalizedMap;
use super::meta::{MetaLayout, MetaSizes};
use super::node::{MetaRef, Node, Nodes, NumaState};
use super::numa::{MAX_NODES, Topology};
use super::pcp::PcpZones;
use super::zone::{ZoneKind, ZoneLimits};
use super::{InitError, PageAllocator, PcpSlots, PhysAddr};
use crate::arch::Arch;
use crate::percpu::PerCpu;

impl<A: Arch> PageAllocator<A> {
    /// Builds the allocator over `map` for `nr_cpus` CPUs (1 to [`MAX_CPUS`](super::numa::MAX_CPUS)), all
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
    /// node's ([`NodeInfo::meta_home`](super::NodeInfo::meta_home)).
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
}

/// `[s, e)` minus `[cs, ce)`: up to two pieces.
pub(super) fn subtract(
    (s, e): (u64, u64),
    (cs, ce): (u64, u64),
) -> impl Iterator<Item = (u64, u64)> {
    let left = (s, e.min(cs));
    let right = (s.max(ce), e);
    [left, right].into_iter().filter(|(a, b)| a < b)
}
