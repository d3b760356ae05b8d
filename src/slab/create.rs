//! Making a cache: how large its magazines and depots are ([`magazine_cap`],
//! [`ArrayScale`]), how many free objects a node keeps on its slabs ([`free_limit`]), and
//! `SlabCache::new`, which carves the per-CPU slots, magazines, depots, other nodes' lists
//! and alien batches from one piece of array memory.
//!
//! Nothing here takes a lock: a cache under construction is reachable by no one else.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize};

use super::alien::AlienBatch;
use super::header::{ChainKey, SlabList};
use super::layout::SlabLayout;
use super::magazine::{CpuMagazines, Depot, MAG_MAX};
use super::{Backing, CacheSpec, Geometry, Hardening, Node, NodeSlabs, SlabCache, SlabError};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::PageAllocator;
use crate::mm::memmap::PAGE_SIZE;
use crate::percpu::PerCpu;
use crate::sync::IrqMutex;

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

impl<A: Arch> SlabCache<A> {
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
}
