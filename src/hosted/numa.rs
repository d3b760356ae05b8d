//! NUMA on the hosted platform: a heap whose memory is split into fake nodes, and
//! threads put on those nodes, so that the per-node paths run in host tests, under Miri
//! and in the benchmarks.
//!
//! Node `k`'s CPUs are the thread ids [`node_cpus`]`(k)`, [`NODE_CPUS`] of them: a thread
//! that calls [`set_node`] claims its id there, and any other thread is on the node its
//! id falls in. The memory of a heap made by [`Heap::with_nodes`] is one region cut into
//! equal node ranges, node 0 first (which also holds the allocator's metadata).

use core::ops::Range;

use super::cpu_ids::{CPU, MAX_IDS, NODE, UNCLAIMED, release_id, thread_id};
use super::{Heap, Region};
use crate::PhysRange;
use crate::mm::numa::{MAX_CPUS, MAX_NODES, NodeId, Topology};

/// CPU ids (thread ids) per fake node.
///
/// # Examples
/// ```
/// use kmem::hosted::{NODE_CPUS, node_cpus};
/// assert_eq!(node_cpus(1), NODE_CPUS..2 * NODE_CPUS);
/// ```
pub const NODE_CPUS: usize = 8;

/// The CPU ids of fake node `node`.
///
/// # Examples
/// ```
/// use kmem::hosted::node_cpus;
/// assert_eq!(node_cpus(0), 0..8);
/// ```
pub fn node_cpus(node: NodeId) -> Range<usize> {
    let start = (node * NODE_CPUS).min(MAX_IDS);
    start..(start + NODE_CPUS).min(MAX_IDS)
}

/// Puts the calling thread on fake node `node`: it gives back its id, if it has one,
/// and takes a free one of [`node_cpus`]`(node)`, so that kmem sees it as a CPU of that
/// node. When all of them are taken, the thread shares slots as any thread beyond the
/// slot count does (and its node is then not guaranteed).
///
/// # Examples
/// ```
/// use kmem::Arch;
/// use kmem::hosted::{HostArch, node_cpus, owned_slots, set_node};
/// std::thread::spawn(|| {
///     set_node(2);
///     if owned_slots() {
///         assert!(node_cpus(2).contains(&HostArch::cpu_id()));
///     }
/// })
/// .join()
/// .unwrap();
/// ```
pub fn set_node(node: NodeId) {
    let _ = NODE.try_with(|n| n.set(node));
    let _ = CPU.try_with(|c| {
        let id = c.get();
        if id < MAX_IDS {
            release_id(id);
        }
        c.set(UNCLAIMED);
    });
    thread_id();
}

/// The topology of a heap over `region` split into `nodes` nodes (one node: all of it,
/// with `cpus` CPUs); `None` for more nodes than kmem or the thread ids support.
pub(super) fn topology(region: &Region, nodes: usize, cpus: usize) -> Option<Topology> {
    if nodes <= 1 {
        return Some(Topology::flat(cpus.clamp(1, MAX_CPUS)));
    }
    split_into_nodes(region, nodes)
}

/// `region` cut into `nodes` equal node ranges (the last takes what is left), node `k`
/// holding the CPUs [`node_cpus`]`(k)`: the topology of [`Heap::with_nodes`], for an
/// allocator built by hand. `None` for no nodes or more than kmem or the thread ids
/// support.
///
/// # Examples
/// ```
/// use kmem::hosted::{HostArch, Region, split_into_nodes};
/// use kmem::{PageAllocator, ZoneLimits};
/// let ram = Region::new(16 << 20).unwrap();
/// let topology = split_into_nodes(&ram, 2).unwrap();
/// assert_eq!(topology.node_of(ram.start() + (9 << 20)), Some(1));
/// let map = ram.normalized().unwrap();
/// // SAFETY: the region is RAM nothing else uses while the allocator lives.
/// let pages = unsafe {
///     PageAllocator::<HostArch>::with_topology(&map, ZoneLimits::FLAT, &topology, None)
/// };
/// assert_eq!(pages.unwrap().nr_nodes(), 2);
/// ```
pub fn split_into_nodes(region: &Region, nodes: usize) -> Option<Topology> {
    if nodes == 0 || nodes > MAX_NODES || nodes * NODE_CPUS > MAX_IDS {
        return None;
    }
    let mut t = Topology::new();
    let per_node = region.size() / nodes as u64;
    for node in 0..nodes {
        let start = region.start() + node as u64 * per_node;
        let end = if node + 1 == nodes {
            region.start() + region.size()
        } else {
            start + per_node
        };
        t.add_memory(node, PhysRange { start, end }).ok()?;
        for cpu in node_cpus(node) {
            t.add_cpu(cpu, node).ok()?;
        }
    }
    t.check().ok()?;
    Some(t)
}

impl Heap {
    /// A heap of `nodes` fake NUMA nodes with `bytes_per_node` of memory and
    /// [`NODE_CPUS`] CPU slots each (module doc). It does not grow. [`Heap::get`]
    /// returns `None` for more than [`MAX_NODES`] nodes.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::hosted::{Heap, set_node};
    /// let heap = Heap::with_nodes(2, 16 << 20);
    /// let kmem = heap.get().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         set_node(1);
    ///         let pa = kmem.alloc_pages(0, Gfp::KERNEL).unwrap();
    ///         assert_eq!(kmem.pages().node_of(pa), Some(1));
    ///         unsafe { kmem.pages().free_pages(pa, 0) }.unwrap(); // SAFETY: not used again.
    ///     });
    /// });
    /// ```
    pub const fn with_nodes(nodes: usize, bytes_per_node: usize) -> Heap {
        let bytes = nodes.saturating_mul(bytes_per_node);
        let mut heap = Heap::growable(bytes, Some(bytes), nodes.saturating_mul(NODE_CPUS));
        heap.nodes = nodes;
        heap
    }
}
