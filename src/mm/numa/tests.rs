//! Unit tests of the topology table: each bad-input case the firmware can produce is
//! refused with the error naming it, and good tables answer the lookups.

use super::*;

fn range(start_mib: u64, end_mib: u64) -> PhysRange {
    PhysRange {
        start: start_mib << 20,
        end: end_mib << 20,
    }
}

/// `nodes` nodes of 1 MiB each, `per_node` CPUs each, numbered node by node.
fn grid(nodes: usize, per_node: usize) -> Topology {
    let mut t = Topology::new();
    for n in 0..nodes {
        t.add_memory(n, range(n as u64, n as u64 + 1)).unwrap();
        for c in 0..per_node {
            t.add_cpu(n * per_node + c, n).unwrap();
        }
    }
    t
}

#[test]
fn flat_is_one_node_with_everything() {
    let t = Topology::flat(3);
    assert_eq!(t.check(), Ok(()));
    assert_eq!((t.nodes(), t.cpus()), (1, 3));
    assert!((0..3).all(|c| t.node_of_cpu(c) == 0));
    assert_eq!(t.node_of(0), Some(0));
    assert_eq!(t.node_of(u64::MAX - 1), Some(0));
    assert_eq!(t.distance(0, 0), LOCAL_DISTANCE);
    assert_eq!(t.memory(0).count(), 1);
    assert_eq!(t.memory(1).count(), 0);
}

#[test]
fn flat_with_too_many_cpus_is_refused_by_check() {
    assert_eq!(Topology::flat(MAX_CPUS).check(), Ok(()));
    assert_eq!(
        Topology::flat(MAX_CPUS + 1).check(),
        Err(TopologyError::TooManyCpus { cpu: MAX_CPUS })
    );
    assert_eq!(Topology::flat(0).check(), Err(TopologyError::NoCpus));
}

#[test]
fn grid_answers_lookups() {
    let t = grid(4, 64);
    assert_eq!(t.check(), Ok(()));
    assert_eq!((t.nodes(), t.cpus()), (4, MAX_CPUS));
    assert_eq!(t.node_of_cpu(0), 0);
    assert_eq!(t.node_of_cpu(63), 0);
    assert_eq!(t.node_of_cpu(64), 1);
    assert_eq!(t.node_of_cpu(255), 3);
    assert_eq!(t.node_of((2 << 20) + 5), Some(2));
    assert_eq!(t.node_of(4 << 20), None);
    assert_eq!(t.distance(1, 1), LOCAL_DISTANCE);
    assert_eq!(t.distance(1, 3), REMOTE_DISTANCE);
}

#[test]
fn out_of_range_numbers_are_refused() {
    let mut t = Topology::new();
    assert_eq!(
        t.add_cpu(0, MAX_NODES),
        Err(TopologyError::TooManyNodes { node: MAX_NODES })
    );
    assert_eq!(
        t.add_cpu(MAX_CPUS, 0),
        Err(TopologyError::TooManyCpus { cpu: MAX_CPUS })
    );
    assert_eq!(
        t.set_distance(0, MAX_NODES, 20),
        Err(TopologyError::TooManyNodes { node: MAX_NODES })
    );
    assert_eq!((t.nodes(), t.cpus()), (0, 0), "nothing was recorded");
    let msg = TopologyError::TooManyCpus { cpu: 300 }.to_string();
    assert!(msg.contains("300") && msg.contains("255"), "{msg}");
}

#[test]
fn memory_on_two_nodes_is_refused() {
    let mut t = Topology::new();
    t.add_memory(0, range(0, 4)).unwrap();
    assert_eq!(
        t.add_memory(1, range(3, 5)),
        Err(TopologyError::OverlappingMemory {
            range: range(3, 5),
            node: 1,
            other: range(0, 4),
            other_node: 0,
        })
    );
    assert!(matches!(
        t.add_memory(0, range(1, 2)),
        Err(TopologyError::OverlappingMemory { .. })
    ));
    t.add_memory(1, range(4, 5)).unwrap(); // touching is fine
    assert_eq!(
        t.add_memory(1, PhysRange { start: 9, end: 9 }),
        Err(TopologyError::EmptyRange {
            range: PhysRange { start: 9, end: 9 }
        })
    );
}

#[test]
fn cpu_on_memoryless_node_is_refused() {
    let mut t = grid(1, 2);
    t.add_cpu(2, 1).unwrap();
    assert_eq!(
        t.check(),
        Err(TopologyError::CpuWithoutMemory { cpu: 2, node: 1 })
    );
}

#[test]
fn node_numbers_and_cpu_numbers_are_dense() {
    let mut t = grid(1, 1);
    t.add_memory(2, range(8, 9)).unwrap();
    assert_eq!(t.check(), Err(TopologyError::NodeWithoutMemory { node: 1 }));
    let mut t = grid(1, 1);
    t.add_cpu(2, 0).unwrap();
    assert_eq!(t.check(), Err(TopologyError::CpuWithoutNode { cpu: 1 }));
    let mut t = Topology::new();
    t.add_cpu(0, 0).unwrap();
    assert_eq!(t.check(), Err(TopologyError::NoMemory));
}

#[test]
fn distances_default_only_when_none_given() {
    let mut t = grid(2, 1);
    assert_eq!(t.check(), Ok(()));
    assert_eq!(t.distance(0, 1), REMOTE_DISTANCE);
    t.set_distance(0, 0, 10).unwrap();
    t.set_distance(1, 1, 10).unwrap();
    t.set_distance(0, 1, 16).unwrap();
    assert_eq!(
        t.check(),
        Err(TopologyError::MissingDistance { from: 1, to: 0 })
    );
    t.set_distance(1, 0, 17).unwrap();
    assert_eq!(
        t.check(),
        Err(TopologyError::AsymmetricDistance {
            from: 0,
            to: 1,
            there: 16,
            back: 17
        })
    );
    t.set_distance(1, 0, 16).unwrap();
    assert_eq!(t.check(), Ok(()));
    assert_eq!(t.distance(1, 0), 16);
}

#[test]
fn distance_to_a_node_without_memory_or_cpus_is_refused() {
    let mut t = grid(1, 1);
    t.set_distance(0, 0, 10).unwrap();
    t.set_distance(0, 3, 20).unwrap();
    assert_eq!(
        t.check(),
        Err(TopologyError::DistanceToUnknownNode { node: 3 })
    );
}

#[test]
fn every_error_names_itself() {
    let r = range(0, 1);
    let cases = [
        (TopologyError::TooManyNodes { node: 9 }, "node 9"),
        (TopologyError::TooManyRanges, "64"),
        (TopologyError::EmptyRange { range: r }, "empty"),
        (
            TopologyError::OverlappingMemory {
                range: r,
                node: 1,
                other: r,
                other_node: 0,
            },
            "overlaps",
        ),
        (
            TopologyError::CpuOnTwoNodes {
                cpu: 4,
                first: 0,
                second: 1,
            },
            "cpu 4 is on node 0 and on node 1",
        ),
        (TopologyError::NoCpus, "no cpus"),
        (TopologyError::NoMemory, "no node has memory"),
        (
            TopologyError::CpuWithoutNode { cpu: 7 },
            "cpu 7 has no node",
        ),
        (TopologyError::NodeWithoutMemory { node: 2 }, "node 2"),
        (TopologyError::DistanceToUnknownNode { node: 5 }, "node 5"),
        (
            TopologyError::LocalDistance {
                node: 1,
                distance: 12,
            },
            "1 -> 1 is 12",
        ),
        (
            TopologyError::RemoteDistance {
                from: 0,
                to: 1,
                distance: 9,
            },
            "0 -> 1 is 9",
        ),
        (
            TopologyError::MissingDistance { from: 1, to: 0 },
            "no distance 1 -> 0",
        ),
    ];
    for (err, part) in cases {
        let msg = err.to_string();
        assert!(msg.starts_with("numa: ") && msg.contains(part), "{msg}");
    }
}
