//! Slab caches: objects of one size carved from page blocks, with per-CPU magazines
//! in front — Linux's SLAB (seeds 001–003) without the seed's O(n) scans.
//!
//! This file owns the cache itself — [`SlabCache`], its per-CPU and per-node state and
//! the lock order below — and `Backing`, what a cache needs from around it. Around it:
//! `name` ([`CacheName`]), `spec` ([`SlabFlags`] and what a cache is made of), `error`
//! ([`SlabError`]), `geometry` (where objects sit in a slab), `create` (array sizing and
//! `SlabCache::new`), and `info` (a cache's figures, [`SlabInfo`]).
//!
//! NUMA: a cache keeps its slab lists and its depot per node (node 0's in the cache,
//! the others' carved with its arrays). A CPU's magazines and its node's depot hold only
//! that node's objects; a free of another node's object goes into the freeing CPU's
//! alien batch for its home node, and from there back to its slabs (`free`, `alien`),
//! while a free of the CPU's own node's object stays on the free fast path: its page
//! descriptor's node is compared with the CPU's only after the one-node push refuses
//! (`CpuMagazines::try_push_home`), so one node pays no check. The paths: allocation
//! in `alloc`, free in `free`, bulk in `bulk`, growing and destroying slabs in `grow`,
//! draining, reaping and reclaim in `drain`, checks in `validate` and `debug`; an
//! object's state and where it lies in `object`; a slab's bookkeeping, kept in its page
//! descriptors, in `header`.
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
mod alloc;
mod bulk;
mod create;
pub(crate) mod debug;
mod drain;
mod error;
mod free;
mod geometry;
mod grow;
pub(crate) mod header;
mod info;
pub(crate) mod layout;
pub(crate) mod magazine;
mod memtag;
mod name;
mod object;
mod spec;
mod validate;

pub use debug::{DebugFlags, Track};
pub use error::SlabError;
pub use info::SlabInfo;
pub use memtag::ObjectSite;
pub use name::{CacheName, NAME_MAX};
pub use spec::{ObjectFn, SlabFlags};

pub(crate) use create::{ArrayScale, refill_batch};
pub(crate) use geometry::Geometry;
pub(crate) use spec::{CacheSpec, Hardening};

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::numa::NodeId;
use crate::mm::{PageAllocator, PageError, PhysAddr};
use crate::percpu::PerCpu;
use crate::sync::IrqMutex;
use header::{ChainKey, SlabList};
use magazine::{CpuMagazines, Depot};

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

/// One NUMA node's slab lists: every slab on them has its pages on that node (a slab
/// grows on its node's pages with `Gfp::THIS_NODE`; see `grow`).
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
    /// [`object`](self::object)), and then equals the key's secret. Zero for caches with a
    /// constructor or destructor (their objects' contents are the user's even while
    /// free) and for slow caches, so a non-zero tag also says "not slow": the fast paths
    /// of tagged caches read this field alone. An atomic (relaxed: a plain load) because
    /// the fast paths read it before any lock, and `set_debug` may write it.
    tag: AtomicUsize,
    /// Debugging or init-on-alloc/free is on: allocations and frees take the checked
    /// paths. Atomic as `tag`.
    slow: AtomicBool,
    /// NUMA nodes the cache keeps lists and depots for. Not read by the fast paths: on
    /// several nodes the CPUs' magazines refuse the unchecked fast push
    /// (`CpuMagazines::fast_cap`) and check the object's node themselves.
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

impl<A: Arch> SlabCache<A> {
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

    /// Whether the cache has a constructor or destructor.
    pub(crate) fn has_ctor(&self) -> bool {
        self.ctor.is_some() || self.dtor.is_some()
    }

    /// The objects' alignment.
    pub(crate) fn align(&self) -> usize {
        self.align
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

#[cfg(test)]
mod tests;
