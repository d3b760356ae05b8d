//! Tests of node-local metadata: on two and three nodes every descriptor, every CPU's
//! page lists and every node's zones lie in their node's memory; a node too small for
//! its metadata borrows the nearest node's; a map only the single-area layout fits
//! still boots.

use super::super::node::NumaState;
use super::*;
use crate::Gfp;
use crate::hosted::{HostArch, Region, node_cpus};
use crate::mm::zone::ZoneLimits;
use crate::mm::{PageAllocator, PageInfo};

type Pages = PageAllocator<HostArch>;

/// An allocator over nodes of `bytes[k]` bytes each, laid out in order, with the hosted
/// platform's CPUs of each node (`node_cpus`) and node `k`'s distance to `j` |k - j| * 10
/// + 10 (so the nearest node of the last is the one before it).
fn numa(bytes: &[u64]) -> (Region, Pages, Topology) {
    let total: u64 = bytes.iter().sum();
    let r = Region::new(total as usize).unwrap();
    let mut t = Topology::new();
    let mut start = r.start();
    for (node, &size) in bytes.iter().enumerate() {
        t.add_memory(
            node,
            PhysRange {
                start,
                end: start + size,
            },
        )
        .unwrap();
        for cpu in node_cpus(node) {
            t.add_cpu(cpu, node).unwrap();
        }
        start += size;
    }
    for a in 0..bytes.len() {
        for b in 0..bytes.len() {
            t.set_distance(a, b, (a.abs_diff(b) * 10 + 10) as u8)
                .unwrap();
        }
    }
    // SAFETY: the region is ours and outlives the allocator in every test.
    let p = unsafe {
        Pages::with_topology(&r.normalized().unwrap(), ZoneLimits::FLAT, &t, None).unwrap()
    };
    (r, p, t)
}

/// Checks that every frame's descriptor, every CPU's page lists and every node's zones
/// lie in the memory of the node `home` names for the node they belong to.
fn assert_placed(r: &Region, p: &Pages, t: &Topology, home: impl Fn(NodeId) -> NodeId) {
    let info = p.info();
    let node_of = |va: usize| t.node_of(va as PhysAddr);
    let mut pa = r.start();
    while pa < r.start() + r.size() {
        let node = p.node_of(pa).unwrap();
        assert_eq!(p.descriptor_node_of(pa), Some(home(node)), "frame {pa:#x}");
        pa += PAGE_SIZE;
    }
    for cpu in 0..p.nr_cpus() {
        let node = t.node_of_cpu(cpu);
        assert_eq!(
            node_of(p.pcp.value_addr(cpu)),
            Some(home(node)),
            "cpu {cpu}"
        );
    }
    for (n, ni) in info.node_infos().iter().enumerate() {
        assert_eq!(node_of(p.nodes.addr(n)), Some(home(n)), "node {n}'s zones");
        assert_eq!(ni.meta_home, home(n));
        assert_eq!(t.node_of(ni.meta.start), Some(home(n)));
        assert_eq!(t.node_of(ni.meta.end - 1), Some(home(n)));
    }
    let sum: u64 = info.node_infos().iter().map(|n| n.meta.size()).sum();
    assert_eq!(sum, info.meta_bytes);
    assert_eq!(
        info.managed_pages() * PAGE_SIZE + info.meta_bytes,
        r.size(),
        "every frame is managed or metadata"
    );
}

/// The boot log's lines about metadata: the total, then one per node.
fn meta_lines(info: &PageInfo) -> Vec<String> {
    let text = info.to_string();
    let lines: Vec<_> = text.lines().map(str::to_owned).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("page descriptors"))
        .unwrap();
    let per_node = if info.nr_nodes > 1 { info.nr_nodes } else { 0 };
    lines[at..at + 1 + per_node].to_vec()
}

#[test]
fn two_nodes_keep_their_metadata_at_home() {
    let (r, p, t) = numa(&[8 << 20, 8 << 20]);
    assert_placed(&r, &p, &t, |n| n);
    let lines = meta_lines(&p.info());
    assert!(lines[1].starts_with("  node 0 metadata"), "{lines:?}");
    assert!(lines[2].starts_with("  node 1 metadata"), "{lines:?}");
    assert!(!lines.concat().contains("no room"), "{lines:?}");
}

#[test]
fn three_nodes_keep_their_metadata_at_home() {
    let (r, p, t) = numa(&[8 << 20, 4 << 20, 6 << 20]);
    assert_placed(&r, &p, &t, |n| n);
    // The pages still work on every node.
    for node in 0..3 {
        let pa = p
            .alloc_pages_node(node, 0, Gfp::KERNEL | Gfp::THIS_NODE)
            .unwrap();
        assert_eq!(p.descriptor_node_of(pa), Some(node));
        // SAFETY: pa is the block just allocated, not used again.
        unsafe { p.free_pages(pa, 0) }.unwrap();
    }
}

#[test]
fn a_node_too_small_for_its_metadata_borrows_the_nearest() {
    // Node 2 has one frame: its CPUs' page lists alone take more.
    let (r, p, t) = numa(&[8 << 20, 4 << 20, PAGE_SIZE]);
    assert_placed(&r, &p, &t, |n| if n == 2 { 1 } else { n });
    let info = p.info();
    assert_eq!(info.node_infos()[2].managed_pages(), 1);
    let lines = meta_lines(&info);
    assert!(
        lines[3].ends_with("(on node 1: no room on its own)"),
        "{lines:?}"
    );
}

#[test]
fn one_node_reports_as_before() {
    let (r, p, t) = numa(&[16 << 20]);
    assert_placed(&r, &p, &t, |n| n);
    let info = p.info();
    assert_eq!(info.meta, info.node_infos()[0].meta);
    let lines = meta_lines(&info);
    assert!(
        lines[0].contains(&format!(" at {} = ", info.meta)),
        "{lines:?}"
    );
}

#[test]
fn pieces_share_one_area_when_only_that_fits() {
    // Node 1's memory is all reserved, and node 0 has one usable frame: each piece
    // alone takes a frame, both together fit in one.
    let mut t = Topology::new();
    let page = |k: u64| k * PAGE_SIZE;
    t.add_memory(
        0,
        PhysRange {
            start: page(1),
            end: page(2),
        },
    )
    .unwrap();
    t.add_memory(
        1,
        PhysRange {
            start: page(2),
            end: page(3),
        },
    )
    .unwrap();
    t.add_cpu(0, 0).unwrap();
    t.add_cpu(1, 1).unwrap();
    let state = NumaState::new(&t);
    let sizes = MetaSizes {
        slot: (64, 64),
        node: (128, 64),
        shared: (256, 8),
        bank: (32, 8),
    };
    let usable = [PhysRange {
        start: page(1),
        end: page(2),
    }];
    let l = MetaLayout::plan(&usable, &t, &state.fallback, sizes, None).unwrap();
    assert_eq!(l.carved(), &usable);
    let (a, b) = (l.pieces[0].range(), l.pieces[1].range());
    assert!(
        a.start == page(1) && a.end == b.start && b.end == page(2),
        "{a} {b}"
    );
    assert_eq!((l.pieces[0].home, l.pieces[1].home), (0, 0));
    // Too little even for that: the error says how much was needed.
    let sizes = MetaSizes {
        node: (4096, 64),
        ..sizes
    };
    let e = MetaLayout::plan(&usable, &t, &state.fallback, sizes, None).err();
    assert!(matches!(e, Some(InitError::NoRoomForMetadata { bytes }) if bytes > PAGE_SIZE));
}

#[test]
fn banks_split_where_the_node_changes() {
    let (_r, p, _t) = numa(&[8 << 20, 8 << 20]);
    // One usable range, two nodes: two banks, each with its own descriptor array.
    assert_eq!(p.table().bank_spans().count(), 2);
    let (s0, e0, f0) = p.table().bank_spans().next().unwrap();
    let (s1, _, f1) = p.table().bank_spans().nth(1).unwrap();
    assert_eq!((e0, f0, f1), (s1, 0, (e0 - s0) as u32));
    // Indices still run across banks in step with frame numbers.
    for idx in [0, f1 - 1, f1, f1 + 5] {
        let f = p.table().frame(idx);
        assert_eq!(p.table().index_of_frame(f), idx);
        let pa = p.table().pfn_of(idx) << PAGE_SHIFT;
        assert_eq!(p.table().frame_of(pa).map(|(i, _)| i), Some(idx));
    }
}
