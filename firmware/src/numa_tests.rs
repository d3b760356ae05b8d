//! Self-tests of NUMA placement on the real machine: on every core, pages and kmalloc
//! objects land on the core's node; pages and objects of another node freed on a core
//! go back to their home node, and every node's free-page count and handed-out object
//! count comes back to where it started; every frame's page descriptor lies in its own
//! node's memory. On a one-node machine the same tests check the flat case: everything
//! is node 0 and no free is remote.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use kmem::mm::memmap::PAGE_SIZE;
use kmem::mm::numa::MAX_NODES;
use kmem::mm::{PageAllocator, PageError, PhysAddr};
use kmem::slab::SlabInfo;
use kmem::{Arch, Gfp, NodeId};

use crate::arch::cpu::{Cpu, MAX_CPUS};
use crate::unchecked::PagesAny;

use super::{kmem, pages, smp};

type R = Result<(), &'static str>;

fn ensure(ok: bool, reason: &'static str) -> R {
    if ok { Ok(()) } else { Err(reason) }
}

/// Each node's free pages, with nothing parked in per-CPU lists.
fn free_by_node(p: &PageAllocator<Cpu>) -> [u64; MAX_NODES] {
    p.drain_all_pcp();
    p.info().nodes.map(|n| n.free_pages())
}

/// Frees of each node's pages made by cores of other nodes, so far.
fn remote_frees(p: &PageAllocator<Cpu>) -> u64 {
    p.info().node_infos().iter().map(|n| n.remote_frees).sum()
}

/// Allocates a block of `order` (from `node` only, when given), checks where it landed,
/// and frees it.
fn lands_on(p: &PageAllocator<Cpu>, order: u32, node: NodeId, only: bool) -> R {
    let pa = if only {
        p.alloc_pages_node(node, order, Gfp::KERNEL | Gfp::THIS_NODE)
    } else {
        p.alloc_pages(order, Gfp::KERNEL)
    }
    .map_err(|_| "a page allocation failed")?;
    let home = p.node_of(pa);
    p.free_pages_any(pa, order).map_err(|_| "a free failed")?;
    ensure(
        home == Some(node),
        "a page did not land on the node asked for",
    )
}

fn local_on_this_core(_cpu: usize) -> R {
    let p = pages();
    let node = p.local_node();
    for order in [0, 1, 3, 9] {
        lands_on(p, order, node, false)?;
        lands_on(p, order, node, true)?;
    }
    Ok(())
}

/// On every core at once, plain and `THIS_NODE` allocations land on the core's node.
pub fn allocations_land_on_the_cores_node() -> R {
    let p = pages();
    ensure(
        p.topology().check().is_ok(),
        "the allocator's topology fails its check",
    )?;
    let before = free_by_node(p);
    smp::run_on_all(local_on_this_core)?;
    ensure(
        free_by_node(p) == before,
        "a node's free page count differs after the test",
    )?;
    let past = p.nr_nodes();
    ensure(
        p.alloc_pages_node(past, 0, Gfp::KERNEL) == Err(PageError::NoSuchNode { node: past }),
        "a node past the last one was not refused",
    )
}

/// Pages each core takes from another node and frees itself.
const HANDOFF: usize = 32;

fn free_the_next_nodes_pages(_cpu: usize) -> R {
    let p = pages();
    let node = (p.local_node() + 1) % p.nr_nodes();
    let mut held: [PhysAddr; HANDOFF] = [0; HANDOFF];
    for slot in &mut held {
        *slot = p
            .alloc_pages_node(node, 0, Gfp::KERNEL | Gfp::THIS_NODE)
            .map_err(|_| "a page of the next node could not be allocated")?;
        ensure(
            p.node_of(*slot) == Some(node),
            "a THIS_NODE page came from another node",
        )?;
    }
    for pa in held {
        p.free_pages_any(pa, 0)
            .map_err(|_| "a free of another node's page failed")?;
    }
    Ok(())
}

/// On every core at once, pages of the next node (the own one on a one-node machine)
/// are freed on this core: each goes home, and every node gets back what it gave. Then
/// the same for kmalloc objects (`cross_node_kfrees_go_home`).
pub fn cross_node_frees_go_home() -> R {
    cross_node_kfrees_go_home()?;
    let p = pages();
    let before = free_by_node(p);
    let remote_before = remote_frees(p);
    smp::run_on_all(free_the_next_nodes_pages)?;
    ensure(
        free_by_node(p) == before,
        "a node's free page count differs after cross-node frees",
    )?;
    let remote = remote_frees(p) - remote_before;
    if p.nr_nodes() == 1 {
        ensure(remote == 0, "a one-node machine counted remote frees")
    } else {
        ensure(
            remote >= (smp::online() * HANDOFF) as u64,
            "frees of another node's pages were not all sent home",
        )
    }
}

/// kmalloc objects each core allocates, and another core frees.
const OBJECTS: usize = 16;

/// Each core's objects, between the allocating and the freeing pass.
static HELD: [[AtomicUsize; OBJECTS]; MAX_CPUS] =
    [const { [const { AtomicUsize::new(0) }; OBJECTS] }; MAX_CPUS];

/// The figures of kmalloc-64, whose objects the slab tests move.
fn kmalloc_64() -> SlabInfo {
    kmem()
        .kmalloc_cache_for(64, 8, Gfp::KERNEL)
        .expect("kmalloc-64 exists")
        .info()
}

fn kmalloc_on_this_core(cpu: usize) -> R {
    let node = pages().local_node();
    for slot in &HELD[cpu] {
        let p = kmem()
            .kmalloc(64, Gfp::KERNEL)
            .map_err(|_| "a kmalloc failed")?;
        slot.store(p.as_ptr() as usize, Relaxed);
        ensure(
            pages().node_of(Cpu::virt_to_phys(p.as_ptr() as usize)) == Some(node),
            "a kmalloc object did not land on the core's node",
        )?;
    }
    Ok(())
}

/// The online cores ordered by node, then id: core `i` of this order frees the objects
/// of core `i + online / 2`, of another node whenever the nodes hold as many cores.
fn partner(cpu: usize) -> usize {
    let t = pages().topology();
    let mut order = [0; MAX_CPUS];
    let n = smp::online();
    for (slot, c) in order.iter_mut().zip(smp::online_ids()) {
        *slot = c;
    }
    order[..n].sort_unstable_by_key(|&c| (t.node_of_cpu(c), c));
    let i = order[..n].iter().position(|&c| c == cpu).unwrap_or(0);
    order[(i + n / 2) % n]
}

fn kfree_the_partners_objects(cpu: usize) -> R {
    for slot in &HELD[partner(cpu)] {
        let p = slot.swap(0, Relaxed) as *mut u8;
        // SAFETY: the partner's pass stored live kmalloc objects here, and the swap
        // leaves each to this core alone; none is used again.
        unsafe { kmem().kfree(p) }.map_err(|_| "a kfree of another core's object failed")?;
    }
    Ok(())
}

/// Each core frees another core's kmalloc objects (another node's, where the nodes
/// hold as many cores), allocated on every core at once: they land on their core's node,
/// go back to their home node's slabs (through alien batches, sent home by a reap pass),
/// and every node hands out as many as before.
fn cross_node_kfrees_go_home() -> R {
    let t = pages().topology();
    let before = kmalloc_64();
    smp::run_on_all(kmalloc_on_this_core)?;
    let during = kmalloc_64();
    ensure(
        during.active_objs >= before.active_objs + smp::online() * OBJECTS,
        "the objects allocated are not counted as handed out",
    )?;
    smp::run_on_all(kfree_the_partners_objects)?;
    // Remote frees wait in alien batches until those fill or a reap pass sends them home.
    kmem().reap();
    let after = kmalloc_64();
    ensure(
        after.node_active == before.node_active,
        "a node's handed-out object count differs after cross-node kfrees",
    )?;
    let crossing = smp::online_ids()
        .filter(|&c| t.node_of_cpu(c) != t.node_of_cpu(partner(c)))
        .count();
    let remote = after.remote_frees - before.remote_frees;
    if pages().nr_nodes() == 1 {
        ensure(remote == 0, "a one-node machine counted remote kfrees")
    } else {
        ensure(
            remote >= crossing * OBJECTS,
            "kfrees of another node's objects were not all sent home",
        )
    }
}

/// Every frame of every node has its descriptor in that node's memory (the node-local
/// `mem_map`), and every node's metadata stayed at home: each node of these boards has
/// room for its own.
pub fn descriptors_lie_in_their_node() -> R {
    let p = pages();
    let t = p.topology();
    let info = p.info();
    for (node, n) in info.node_infos().iter().enumerate() {
        ensure(
            n.meta_home == node,
            "a node's metadata went to another node's memory",
        )?;
        ensure(
            p.nr_nodes() == 1 || t.node_of(n.meta.start) == Some(node),
            "a node's metadata range is not in its memory",
        )?;
    }
    if p.nr_nodes() == 1 {
        // A one-node topology's memory is all of the address space: ask one frame.
        let pa = p
            .alloc_pages(0, Gfp::KERNEL)
            .map_err(|_| "a page allocation failed")?;
        let home = p.descriptor_node_of(pa);
        p.free_pages_any(pa, 0).map_err(|_| "a free failed")?;
        return ensure(home == Some(0), "a descriptor is not on node 0");
    }
    let mut checked = 0u64;
    for node in 0..p.nr_nodes() {
        for r in t.memory(node) {
            let mut pa = r.start.next_multiple_of(PAGE_SIZE);
            while pa < r.end {
                if p.node_of(pa).is_some() {
                    ensure(
                        p.descriptor_node_of(pa) == Some(node),
                        "a frame's descriptor is not in its node's memory",
                    )?;
                    checked += 1;
                }
                pa += PAGE_SIZE;
            }
        }
    }
    // Regions added at run time may lie outside the ranges; every boot frame is inside.
    ensure(
        checked >= u64::from(info.frames) - info.hot_bytes / PAGE_SIZE,
        "not every boot frame was checked",
    )
}
