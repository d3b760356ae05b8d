//! Tests of the page allocator on several nodes: node-local allocation from threads put
//! on fake nodes, frees from another node going home with per-node counts conserved,
//! `Gfp::THIS_NODE`, fallback in distance order, node boundaries that are not block
//! aligned, hot-added regions joining their node, and topologies refused at init.

use super::*;
use crate::hosted::{HostArch, Region, node_cpus, owned_slots, set_node};
use crate::mm::memmap::{self, MemoryMap, PAGE_SIZE, PhysRange};
use crate::mm::numa::TopologyError;
use crate::mm::zone::ZoneLimits;
use crate::mm::{BuddyInfo, InitError, MAX_ORDER};
use crate::test_frees::PagesAny;
use std::sync::mpsc;

type Pages = PageAllocator<HostArch>;

const MIB: u64 = 1 << 20;

/// An allocator over `mib.len()` nodes of `mib[k]` MiB each, laid out in order, with
/// the hosted platform's CPUs of each node (`node_cpus`) and the given distances.
fn numa(mib: &[u64], distances: &[(usize, usize, u8)]) -> (Region, Pages) {
    let total: u64 = mib.iter().sum();
    let r = Region::new((total * MIB) as usize).unwrap();
    let mut t = Topology::new();
    let mut start = r.start();
    for (node, &size) in mib.iter().enumerate() {
        let end = start + size * MIB;
        t.add_memory(node, PhysRange { start, end }).unwrap();
        for cpu in node_cpus(node) {
            t.add_cpu(cpu, node).unwrap();
        }
        start = end;
    }
    for &(a, b, d) in distances {
        t.set_distance(a, b, d).unwrap();
    }
    // SAFETY: the region is ours and outlives the allocator in every test.
    let p = unsafe {
        Pages::with_topology(&r.normalized().unwrap(), ZoneLimits::FLAT, &t, None).unwrap()
    };
    (r, p)
}

/// Every node's free pages, per-CPU lists drained.
fn free_by_node(p: &Pages) -> Vec<u64> {
    p.drain_all_pcp();
    p.check();
    p.info()
        .node_infos()
        .iter()
        .map(|n| n.free_pages())
        .collect()
}

/// Allocates order-`order` blocks on `node` only until it has none.
fn exhaust(p: &Pages, node: NodeId, order: u32) -> Vec<PhysAddr> {
    let mut held = Vec::new();
    while let Ok(pa) = p.alloc_pages_node(node, order, Gfp::KERNEL | Gfp::THIS_NODE) {
        held.push(pa);
    }
    held
}

fn free_all(p: &Pages, held: Vec<PhysAddr>, order: u32) {
    for pa in held {
        p.free_pages_any(pa, order).unwrap();
    }
}

#[test]
fn frames_know_their_node_and_counts_add_up() {
    let (r, p) = numa(&[8, 8], &[]);
    assert_eq!(p.nr_nodes(), 2);
    assert_eq!(p.node_of(r.start() + 9 * MIB), Some(1));
    assert_eq!(p.node_of(r.start() + 7 * MIB), Some(0));
    let info = p.info();
    let sum: u64 = info.node_infos().iter().map(|n| n.managed_pages()).sum();
    assert_eq!(sum, info.managed_pages());
    // Each node's metadata sits in its own memory: a node manages the rest of it.
    for n in info.node_infos() {
        assert_eq!(n.managed_pages() * PAGE_SIZE + n.meta.size(), 8 * MIB);
    }
    assert_eq!(
        BuddyInfo(&info).to_string().lines().count(),
        1 + 2 * NR_ZONES
    );
    assert_eq!(NumaStat(&info).to_string().lines().count(), 1 + 2);
}

#[test]
fn node_local_allocations_land_on_the_callers_node() {
    if !owned_slots() {
        return; // without exclusive ids no thread is on a chosen node
    }
    let (_r, p) = numa(&[16, 16], &[]);
    let before = free_by_node(&p);
    std::thread::scope(|s| {
        for node in 0..2 {
            let p = &p;
            s.spawn(move || {
                set_node(node);
                assert_eq!(p.local_node(), node);
                for (order, n) in [(0, 40), (1, 8), (3, 4), (5, 4), (9, 2)] {
                    let held: Vec<_> = (0..n).map(|_| p.alloc_pages(order, Gfp::KERNEL)).collect();
                    for pa in held {
                        let pa = pa.unwrap();
                        assert_eq!(p.node_of(pa), Some(node), "order {order}");
                        p.free_pages_any(pa, order).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(free_by_node(&p), before);
    let info = p.info();
    assert!(info.node_infos().iter().all(|n| n.remote_allocs == 0));
    assert!(info.node_infos().iter().all(|n| n.local_allocs > 0));
}

#[test]
fn frees_from_another_node_go_home_and_counts_are_conserved() {
    let (_r, p) = numa(&[16, 16], &[]);
    let before = free_by_node(&p);
    let (tx, rx) = mpsc::channel::<Vec<(PhysAddr, u32)>>();
    std::thread::scope(|s| {
        let p = &p;
        s.spawn(move || {
            set_node(0);
            for round in 0..20u32 {
                let order = [0, 0, 1, 2, 3][round as usize % 5];
                let batch = (0..16)
                    .map(|_| (p.alloc_pages_node(0, order, Gfp::KERNEL).unwrap(), order))
                    .collect();
                tx.send(batch).unwrap();
            }
        });
        s.spawn(move || {
            set_node(1);
            while let Ok(batch) = rx.recv() {
                for (pa, order) in batch {
                    assert_eq!(p.node_of(pa), Some(0));
                    p.free_pages_any(pa, order).unwrap();
                }
            }
            if owned_slots() {
                // This CPU's lists are node 1's: nothing of node 0 went into them.
                assert_eq!(p.pcp.local().node, 1);
            }
        });
    });
    let info = p.info();
    if owned_slots() {
        assert_eq!(info.node_infos()[0].remote_frees, 20 * 16);
    }
    assert_eq!(free_by_node(&p), before, "every node got its frames back");
}

#[test]
fn this_node_refuses_fallback_and_plain_requests_fall_back() {
    let (_r, p) = numa(&[8, 8], &[]);
    let before = free_by_node(&p);
    let held = exhaust(&p, 1, 0);
    assert!(held.iter().all(|&pa| p.node_of(pa) == Some(1)));
    assert!(held.len() as u64 >= 8 * MIB / PAGE_SIZE - 64);
    assert!(matches!(
        p.alloc_pages_node(1, 0, Gfp::KERNEL | Gfp::THIS_NODE),
        Err(PageError::OutOfMemory { .. })
    ));
    let remote_before = p.info().node_infos()[0].remote_allocs;
    let fell_back = p.alloc_pages_node(1, 0, Gfp::KERNEL).unwrap();
    assert_eq!(p.node_of(fell_back), Some(0));
    assert_eq!(p.info().node_infos()[0].remote_allocs, remote_before + 1);
    p.free_pages_any(fell_back, 0).unwrap();
    free_all(&p, held, 0);
    assert_eq!(free_by_node(&p), before);
    assert_eq!(
        p.alloc_pages_node(2, 0, Gfp::KERNEL),
        Err(PageError::NoSuchNode { node: 2 })
    );
}

#[test]
fn fallback_takes_the_nearest_node_first() {
    // Node 0 is nearer to node 2 (15) than to node 1 (30).
    let d = [
        (0, 0, 10),
        (1, 1, 10),
        (2, 2, 10),
        (0, 1, 30),
        (1, 0, 30),
        (0, 2, 15),
        (2, 0, 15),
        (1, 2, 20),
        (2, 1, 20),
    ];
    let (_r, p) = numa(&[4, 4, 4], &d);
    let before = free_by_node(&p);
    let own = exhaust(&p, 0, 3);
    let mut next = Vec::new();
    while let Ok(pa) = p.alloc_pages_node(0, 3, Gfp::KERNEL) {
        next.push(pa);
    }
    let nodes: Vec<_> = next.iter().map(|&pa| p.node_of(pa).unwrap()).collect();
    let first_of_1 = nodes.iter().position(|&n| n == 1).unwrap();
    assert!(first_of_1 > 0, "node 2 serves before node 1");
    assert!(nodes[..first_of_1].iter().all(|&n| n == 2), "{nodes:?}");
    assert!(nodes[first_of_1..].iter().all(|&n| n == 1), "{nodes:?}");
    free_all(&p, own, 3);
    free_all(&p, next, 3);
    assert_eq!(free_by_node(&p), before);
}

#[test]
fn blocks_never_span_a_node_boundary_that_is_not_block_aligned() {
    let r = Region::new((16 * MIB) as usize).unwrap();
    let cut = r.start() + 5 * MIB + 3 * PAGE_SIZE;
    let mut t = Topology::new();
    t.add_memory(
        0,
        PhysRange {
            start: r.start(),
            end: cut,
        },
    )
    .unwrap();
    t.add_memory(
        1,
        PhysRange {
            start: cut,
            end: r.start() + 16 * MIB,
        },
    )
    .unwrap();
    t.add_cpu(0, 0).unwrap();
    t.add_cpu(1, 1).unwrap();
    // SAFETY: the region is ours and outlives the allocator.
    let p = unsafe {
        Pages::with_topology(&r.normalized().unwrap(), ZoneLimits::FLAT, &t, None).unwrap()
    };
    let before = free_by_node(&p);
    for order in [0, 4, MAX_ORDER] {
        for node in 0..2 {
            let held = exhaust(&p, node, order);
            for &pa in &held {
                let last = pa + (PAGE_SIZE << order) - 1;
                assert_eq!(p.node_of(pa), Some(node));
                assert_eq!(
                    t.node_of(last),
                    Some(node),
                    "order {order} block at {pa:#x}"
                );
            }
            free_all(&p, held, order);
        }
        assert_eq!(
            free_by_node(&p),
            before,
            "order {order}: all merged back per node"
        );
    }
}

#[test]
fn hot_added_memory_joins_the_node_that_holds_it() {
    let r = Region::new((24 * MIB) as usize).unwrap();
    let at = |mib: u64| r.start() + mib * MIB;
    let mut t = Topology::new();
    t.add_memory(
        0,
        PhysRange {
            start: at(0),
            end: at(8),
        },
    )
    .unwrap();
    t.add_memory(
        1,
        PhysRange {
            start: at(8),
            end: at(16),
        },
    )
    .unwrap();
    t.add_cpu(0, 0).unwrap();
    let mut map = MemoryMap::new();
    map.add(memmap::RegionKind::Usable, at(0), 12 * MIB)
        .unwrap();
    // SAFETY: the region is ours and outlives the allocator; the part past 12 MiB is
    // added below and taken back before the end.
    let p = unsafe {
        Pages::with_topology(&map.normalize().unwrap(), ZoneLimits::FLAT, &t, None).unwrap()
    };
    let in_node_1 = PhysRange {
        start: at(12),
        end: at(16),
    };
    let outside = PhysRange {
        start: at(16),
        end: at(24),
    };
    let managed = |p: &Pages, n: usize| p.info().node_infos()[n].managed_pages();
    let (m0, m1) = (managed(&p, 0), managed(&p, 1));
    for range in [in_node_1, outside] {
        // SAFETY: as above.
        unsafe { p.add_region(range) }.unwrap();
    }
    assert_eq!(p.node_of(in_node_1.start + 2 * MIB), Some(1));
    assert_eq!(
        p.node_of(outside.start + 2 * MIB),
        Some(0),
        "no node holds it: node 0"
    );
    assert!(managed(&p, 1) > m1 + 900 && managed(&p, 0) > m0 + 1900);
    for range in [in_node_1, outside] {
        p.remove_region(range).unwrap();
    }
    assert_eq!((managed(&p, 0), managed(&p, 1)), (m0, m1));
}

#[test]
fn bad_topologies_are_refused_at_init() {
    let r = Region::new((4 * MIB) as usize).unwrap();
    let map = r.normalized().unwrap();
    let mut t = Topology::new();
    t.add_memory(
        0,
        PhysRange {
            start: r.start(),
            end: r.start() + 4 * MIB,
        },
    )
    .unwrap();
    t.add_cpu(0, 0).unwrap();
    t.add_cpu(1, 1).unwrap();
    // SAFETY: the allocator is not built.
    let e = unsafe { Pages::with_topology(&map, ZoneLimits::FLAT, &t, None) }.err();
    assert_eq!(
        e,
        Some(InitError::Topology(TopologyError::CpuWithoutMemory {
            cpu: 1,
            node: 1
        }))
    );
    assert_eq!(
        e.unwrap().to_string(),
        "page allocator: numa: cpu 1 is on node 1, which has no memory"
    );
    // The fallback the brief asks of a kernel: one node with the CPUs that fit.
    // SAFETY: the region is ours and outlives the allocator.
    let p = unsafe { Pages::with_topology(&map, ZoneLimits::FLAT, &Topology::flat(2), None) };
    assert_eq!(p.unwrap().nr_nodes(), 1);
}
