//! NUMA nodes in the page allocator: each node's zones and counters, the order in which
//! a request falls back from its preferred node to others (by distance), the per-node
//! figures, and the `numastat` view of them.
//!
//! A CPU's page lists hold frames of its own node only (`pcp::PcpZones::node`): a block
//! of another node, freed here, goes straight back to its home node's zone, so a drain
//! never moves memory between nodes.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::buddy::NR_ORDERS;
use super::memmap::PhysRange;
use super::numa::{MAX_NODES, NodeId, Topology};
use super::zone::{NR_ZONES, ZoneKind};
use super::{PageAllocator, PageError, PageInfo, PhysAddr, Zone, ZoneInfo};
use crate::arch::Arch;
use crate::gfp::Gfp;

/// What every node shares: the topology and each node's fallback order. It lives in node
/// 0's metadata (`super::meta`), so that the allocator itself stays small: kernels build
/// it on a boot stack and move it.
pub(crate) struct NumaState {
    pub(crate) topology: Topology,
    /// For each node, the nodes to take memory from, nearest first.
    pub(crate) fallback: [[u8; MAX_NODES]; MAX_NODES],
}

impl NumaState {
    /// The state for `topology`.
    pub(crate) fn new(topology: &Topology) -> NumaState {
        NumaState {
            topology: topology.clone(),
            fallback: fallback_orders(topology),
        }
    }
}

/// A `T` the allocator placed in memory it owns for its lifetime (its metadata).
pub(crate) struct MetaRef<T>(NonNull<T>);

// SAFETY: the value is reached only through shared references; what changes in it is
// atomics and locks, and the memory lives as long as the allocator.
unsafe impl<T: Sync> Send for MetaRef<T> {}
// SAFETY: as for Send.
unsafe impl<T: Sync> Sync for MetaRef<T> {}

impl<T> MetaRef<T> {
    /// Writes `value` at `at` and refers to it.
    ///
    /// # Safety
    /// `at` is aligned for `T`, writable for its size, and used by nothing else for as
    /// long as the returned reference (or a copy of it) lives.
    pub(crate) unsafe fn init_at(at: *mut T, value: T) -> MetaRef<T> {
        // SAFETY: the caller's contract.
        unsafe { at.write(value) };
        // SAFETY: as above: `at` is a valid, hence non-null, pointer.
        MetaRef(unsafe { NonNull::new_unchecked(at) })
    }
}

impl<T> Clone for MetaRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MetaRef<T> {}

impl<T> core::ops::Deref for MetaRef<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: `init_at` wrote the value, which lives as long as `self` (its contract)
        // and is only shared.
        unsafe { self.0.as_ref() }
    }
}

/// Each node's [`Node`], in that node's metadata: indexed by node number. Entries past
/// the allocator's nodes refer to node 0's, so that every index below [`MAX_NODES`] is
/// sound; nothing reaches them.
pub(crate) struct Nodes<A: Arch>(pub(crate) [MetaRef<Node<A>>; MAX_NODES]);

impl<A: Arch> core::ops::Index<NodeId> for Nodes<A> {
    type Output = Node<A>;
    #[inline(always)]
    fn index(&self, n: NodeId) -> &Node<A> {
        &self.0[n]
    }
}

impl<A: Arch> Nodes<A> {
    /// The first `n` nodes, in order.
    #[cfg(any(test, feature = "hosted"))]
    pub(crate) fn first(&self, n: usize) -> impl DoubleEndedIterator<Item = &Node<A>> {
        self.0[..n].iter().map(|r| &**r)
    }

    /// Node `n`'s address (where its metadata went).
    #[cfg(test)]
    pub(crate) fn addr(&self, n: NodeId) -> usize {
        self.0[n].0.as_ptr() as usize
    }
}

/// One node's zones and its counters.
pub(crate) struct Node<A: Arch> {
    pub(crate) zones: [Zone<A>; NR_ZONES],
    /// Blocks taken from this node's zones for a request that preferred this node.
    local_allocs: AtomicU64,
    /// Blocks taken from this node's zones for a request that preferred another node.
    remote_allocs: AtomicU64,
    /// Blocks of this node freed by a CPU of another node (sent straight home).
    remote_frees: AtomicU64,
}

impl<A: Arch> Node<A> {
    pub(crate) fn new() -> Node<A> {
        Node {
            zones: core::array::from_fn(|_| Zone::new()),
            local_allocs: AtomicU64::new(0),
            remote_allocs: AtomicU64::new(0),
            remote_frees: AtomicU64::new(0),
        }
    }

    /// Counts a block taken from this node for a request that preferred `wanted`.
    pub(crate) fn count_alloc(&self, me: NodeId, wanted: NodeId) {
        let counter = if me == wanted {
            &self.local_allocs
        } else {
            &self.remote_allocs
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_remote_free(&self) {
        self.remote_frees.fetch_add(1, Relaxed);
    }
}

/// For each node, every node ordered by distance from it — itself first, ties by number
/// (Linux's node-ordered zonelist).
fn fallback_orders(t: &Topology) -> [[u8; MAX_NODES]; MAX_NODES] {
    core::array::from_fn(|from| {
        let mut order: [u8; MAX_NODES] = core::array::from_fn(|n| n as u8);
        let n = t.nodes().max(1);
        order[..n].sort_unstable_by_key(|&to| (t.distance(from, to as NodeId), to));
        order
    })
}

/// Figures for one node: its zones and how its memory was handed out.
///
/// Allocations are counted where a block leaves the node's zones — a single block, or
/// the block that set off a per-CPU list refill — so blocks a CPU's list serves without a
/// refill are not counted: the fast path stays free of shared writes.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
/// # let kmem = heap.get().unwrap();
/// let info = kmem.pages().info();
/// for (node, n) in info.node_infos().iter().enumerate() {
///     println!("node {node}: {} of {} pages free", n.free_pages(), n.managed_pages());
/// }
/// assert_eq!(info.node_infos().len(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's zones, by [`ZoneKind::index`].
    pub zones: [ZoneInfo; NR_ZONES],
    /// Blocks taken from this node for requests that preferred it.
    pub local_allocs: u64,
    /// Blocks taken from this node for requests that preferred another node (fallback,
    /// or [`PageAllocator::alloc_pages_node`] from a CPU elsewhere).
    pub remote_allocs: u64,
    /// Blocks of this node freed by CPUs of other nodes, which went straight home.
    pub remote_frees: u64,
    /// The node's metadata: its descriptors, its CPUs' page lists and its zones.
    pub meta: PhysRange,
    /// The node whose memory holds that metadata: this one, unless it had no room.
    pub meta_home: NodeId,
}

impl NodeInfo {
    /// A node with no memory.
    pub(crate) const EMPTY: NodeInfo = NodeInfo {
        zones: [
            ZoneInfo::empty(ZoneKind::Dma),
            ZoneInfo::empty(ZoneKind::Dma32),
            ZoneInfo::empty(ZoneKind::Normal),
        ],
        local_allocs: 0,
        remote_allocs: 0,
        remote_frees: 0,
        meta: PhysRange { start: 0, end: 0 },
        meta_home: 0,
    };

    /// Frames handed to the node's zones.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let info = kmem.pages().info();
    /// let sum: u64 = info.node_infos().iter().map(|n| n.managed_pages()).sum();
    /// assert_eq!(sum, info.managed_pages());
    /// ```
    pub fn managed_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.managed_pages).sum()
    }

    /// Free frames of the node, those in per-CPU lists included.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let n = kmem.pages().info().node_infos()[1];
    /// assert!(n.free_pages() <= n.managed_pages());
    /// ```
    pub fn free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.free_pages + z.pcp_pages).sum()
    }
}

impl ZoneInfo {
    const fn empty(kind: ZoneKind) -> ZoneInfo {
        ZoneInfo {
            kind,
            managed_pages: 0,
            free_pages: 0,
            pcp_pages: 0,
            free_blocks: [0; NR_ORDERS],
        }
    }

    /// These figures plus `other`'s (same zone, another node).
    pub(crate) fn plus(mut self, other: &ZoneInfo) -> ZoneInfo {
        self.managed_pages += other.managed_pages;
        self.free_pages += other.free_pages;
        self.pcp_pages += other.pcp_pages;
        for (a, b) in self.free_blocks.iter_mut().zip(other.free_blocks) {
            *a += b;
        }
        self
    }
}

/// The `numastat`-like view: per node, its pages and how its memory was handed out.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::NumaStat;
/// let text = NumaStat(&kmem.pages().info()).to_string();
/// print!("{text}");
/// assert_eq!(text.lines().count(), 1 + 2); // a header, then one row per node
/// ```
pub struct NumaStat<'a>(
    /// The figures to show.
    pub &'a PageInfo,
);

impl fmt::Display for NumaStat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<5} {:>10} {:>10} {:>12} {:>12} {:>12}",
            "node", "managed", "free", "local_alloc", "remote_alloc", "remote_free"
        )?;
        for (node, n) in self.0.node_infos().iter().enumerate() {
            writeln!(
                f,
                "{node:<5} {:>10} {:>10} {:>12} {:>12} {:>12}",
                n.managed_pages(),
                n.free_pages(),
                n.local_allocs,
                n.remote_allocs,
                n.remote_frees
            )?;
        }
        Ok(())
    }
}

/// Where each node's metadata is: one line per node, saying so when it had to go to
/// another node's memory (the boot log's metadata line on several nodes).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::NodeMeta;
/// let text = NodeMeta(&kmem.pages().info()).to_string();
/// print!("{text}");
/// assert_eq!(text.lines().count(), 2); // one row per node
/// assert!(text.starts_with("  node 0 metadata"));
/// ```
pub struct NodeMeta<'a>(
    /// The figures to show.
    pub &'a PageInfo,
);

impl fmt::Display for NodeMeta<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (node, n) in self.0.node_infos().iter().enumerate() {
            write!(
                f,
                "  node {node} metadata {} KiB at {}",
                n.meta.size() / 1024,
                n.meta
            )?;
            if n.meta_home != node {
                write!(f, " (on node {}: no room on its own)", n.meta_home)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl<A: Arch> PageAllocator<A> {
    /// Allocates a block of 2^`order` frames preferring `node`'s memory; with
    /// [`Gfp::THIS_NODE`], only `node`'s. Otherwise as [`PageAllocator::alloc_pages`],
    /// which prefers the running CPU's node.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, PageError};
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages_node(1, 0, Gfp::KERNEL | Gfp::THIS_NODE)?;
    /// assert_eq!(pages.node_of(pa), Some(1));
    /// unsafe { pages.free_pages(pa, 0) }?; // SAFETY: pa is not used again.
    /// let past = pages.alloc_pages_node(5, 0, Gfp::KERNEL);
    /// assert_eq!(past, Err(PageError::NoSuchNode { node: 5 }));
    /// # Ok::<(), PageError>(())
    /// ```
    pub fn alloc_pages_node(
        &self,
        node: NodeId,
        order: u32,
        gfp: Gfp,
    ) -> Result<PhysAddr, PageError> {
        if node >= self.nr_nodes() {
            return Err(PageError::NoSuchNode { node });
        }
        self.alloc_pages_on(order, gfp, node)
    }

    /// The node whose memory holds `pa`, if kmem manages it.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages(0, Gfp::KERNEL)?;
    /// assert_eq!(pages.node_of(pa), Some(0)); // one node
    /// assert_eq!(pages.node_of(1), None);
    /// unsafe { pages.free_pages(pa, 0) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn node_of(&self, pa: PhysAddr) -> Option<NodeId> {
        self.frame(pa).map(|f| f.node())
    }

    /// The node whose memory holds the descriptor of the frame at `pa`, if kmem
    /// manages it: the frame's own node, unless that node had no room for its metadata
    /// ([`NodeInfo::meta_home`]).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let pages = kmem.pages();
    /// let pa = pages.alloc_pages_node(1, 0, Gfp::KERNEL | Gfp::THIS_NODE)?;
    /// assert_eq!(pages.descriptor_node_of(pa), Some(1));
    /// assert_eq!(pages.descriptor_node_of(1), None);
    /// unsafe { pages.free_pages(pa, 0) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn descriptor_node_of(&self, pa: PhysAddr) -> Option<NodeId> {
        let f = self.frame(pa)?;
        let at = A::virt_to_phys(f as *const _ as usize);
        Some(self.numa.topology.node_of(at).unwrap_or(0))
    }

    /// Number of nodes.
    ///
    /// # Examples
    /// ```
    /// let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// assert_eq!(heap.get().unwrap().pages().nr_nodes(), 2);
    /// ```
    pub fn nr_nodes(&self) -> usize {
        self.numa.topology.nodes()
    }

    /// The topology the allocator was built with.
    ///
    /// # Examples
    /// ```
    /// let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// let t = heap.get().unwrap().pages().topology();
    /// assert_eq!(t.distance(0, 1), kmem::mm::numa::REMOTE_DISTANCE);
    /// ```
    pub fn topology(&self) -> &Topology {
        &self.numa.topology
    }

    /// The running CPU's node.
    ///
    /// # Examples
    /// ```
    /// let heap = kmem::hosted::Heap::with_nodes(2, 16 << 20);
    /// let pages = heap.get().unwrap().pages();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         kmem::hosted::set_node(1);
    ///         if kmem::hosted::owned_slots() {
    ///             assert_eq!(pages.local_node(), 1);
    ///         }
    ///     });
    /// });
    /// ```
    pub fn local_node(&self) -> NodeId {
        self.numa.topology.node_of_cpu(A::cpu_id())
    }

    /// Node `node`'s figures, per-CPU pages `pcp` (by zone) given.
    pub(crate) fn node_info(&self, node: NodeId, pcp: &[u64; NR_ZONES]) -> NodeInfo {
        let n = &self.nodes[node];
        NodeInfo {
            zones: core::array::from_fn(|z| {
                let area = n.zones[z].area.lock();
                ZoneInfo {
                    kind: ZoneKind::from_index(z),
                    managed_pages: n.zones[z].managed.load(Relaxed),
                    free_pages: area.free_pages(),
                    pcp_pages: pcp[z],
                    free_blocks: area.blocks(),
                }
            }),
            local_allocs: n.local_allocs.load(Relaxed),
            remote_allocs: n.remote_allocs.load(Relaxed),
            remote_frees: n.remote_frees.load(Relaxed),
            meta: self.meta[node].0,
            meta_home: self.meta[node].1,
        }
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
