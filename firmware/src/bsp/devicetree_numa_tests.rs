//! The self-test `device_tree_numa`: `devicetree_numa::topology` and `numa::or_flat` on
//! trees built in memory — a good two-node tree, one without NUMA properties, and the bad
//! descriptions a boot must survive (a CPU on a node without memory, an asymmetric
//! distance map, one with a hole, a CPU without a node while others have one, a
//! malformed or out-of-range `distance-matrix`): each bad one must give the error that
//! names it, and `or_flat` the one-node topology with the note the boot report prints.

use alloc::string::String;
use alloc::vec::Vec;

use super::devicetree::{self as dt, DtError};
use super::devicetree_numa::topology;
use super::devicetree_tests::Builder;
use super::numa::{NumaError, or_flat};
use super::{Cpus, Notes};
use kmem::mm::memmap::PhysRange;
use kmem::mm::numa::{Topology, TopologyError};

type R = Result<(), &'static str>;

/// Two 64 MiB banks at 0x4000_0000 and 0x4400_0000 on `memory`'s nodes (`None`: no
/// `numa-node-id`), one CPU per entry of `cpus` (hardware id = index) on its node, and a
/// `distance-matrix` of `distances` cells when given.
fn tree(memory: [Option<u32>; 2], cpus: &[Option<u32>], distances: Option<&[u32]>) -> Vec<u64> {
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2]);
    for (i, node) in memory.iter().enumerate() {
        let base = 0x4000_0000 + i as u32 * 0x400_0000;
        b.begin(&alloc::format!("memory@{base:x}"))
            .string("device_type", "memory")
            .cells("reg", &[0, base, 0, 0x400_0000]);
        if let Some(n) = node {
            b.cells("numa-node-id", &[*n]);
        }
        b.end();
    }
    b.begin("cpus")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[0]);
    for (i, node) in cpus.iter().enumerate() {
        b.begin(&alloc::format!("cpu@{i:x}"))
            .string("device_type", "cpu")
            .cells("reg", &[i as u32]);
        if let Some(n) = node {
            b.cells("numa-node-id", &[*n]);
        }
        b.end();
    }
    b.end();
    if let Some(cells) = distances {
        b.begin("distance-map")
            .string("compatible", "numa-distance-map-v1")
            .cells("distance-matrix", cells)
            .end();
    }
    b.end().finish()
}

/// What the board would make of a tree.
struct Read {
    cpus: Cpus,
    /// The tables' topology.
    found: Result<Option<Topology>, NumaError>,
    /// What `or_flat` keeps, and the note it wrote.
    kept: Topology,
    note: String,
}

/// What the board would make of the tree in `words`.
#[inline(never)]
fn read(words: &[u64]) -> Result<Read, DtError> {
    // SAFETY: the blob lives in `words` for as long as anything parsed from it is used:
    // nothing returned borrows from it.
    let fdt = unsafe { dt::open(words.as_ptr() as usize)? };
    let cpus = dt::cpus(fdt, 0)?;
    let found = topology(fdt, &cpus);
    let mut notes = Notes::new();
    let kept = or_flat(found.clone(), &cpus, &mut notes);
    let note = notes.lines().collect::<Vec<_>>().join("\n");
    Ok(Read {
        cpus,
        found,
        kept,
        note,
    })
}

const SYMMETRIC: [u32; 12] = [0, 0, 10, 0, 1, 20, 1, 0, 20, 1, 1, 10];

fn ensure(ok: bool, why: &'static str) -> R {
    if ok { Ok(()) } else { Err(why) }
}

/// A bad tree: the tables' error must match `wanted`, and the kept topology be one node
/// with every CPU and a note `<error>; using one node`.
fn falls_back(words: &[u64], wanted: impl Fn(&NumaError) -> bool, why: &'static str) -> R {
    let Read {
        cpus,
        found,
        kept,
        note,
    } = read(words).map_err(|_| "a NUMA test tree did not parse")?;
    let err = match found {
        Err(e) => e,
        Ok(Some(t)) => match t.check() {
            Err(e) => NumaError::Topology(e),
            Ok(()) => return Err(why),
        },
        Ok(None) => return Err(why),
    };
    ensure(wanted(&err), why)?;
    ensure(
        kept.nodes() == 1 && kept.cpus() == cpus.len,
        "a bad NUMA description did not fall back to one node with every cpu",
    )?;
    ensure(
        note == alloc::format!("{err}; using one node"),
        "a bad NUMA description left no note saying why",
    )
}

pub fn device_tree_numa() -> R {
    let good = tree(
        [Some(0), Some(1)],
        &[Some(0), Some(0), Some(1), Some(1)],
        Some(&SYMMETRIC),
    );
    let Read {
        found, kept, note, ..
    } = read(&good).map_err(|_| "the two-node tree did not parse")?;
    ensure(
        matches!(found, Ok(Some(_))),
        "the two-node tree gave no topology",
    )?;
    ensure(note.is_empty(), "the two-node tree left a note")?;
    ensure(
        kept.nodes() == 2
            && kept.cpus() == 4
            && kept.node_of_cpu(1) == 0
            && kept.node_of_cpu(2) == 1,
        "the two-node tree put its cpus on the wrong nodes",
    )?;
    ensure(
        kept.distance(0, 1) == 20 && kept.distance(1, 1) == 10,
        "the two-node tree's distances were not kept",
    )?;
    let node1: Vec<PhysRange> = kept.memory(1).collect();
    ensure(
        node1
            == [PhysRange {
                start: 0x4400_0000,
                end: 0x4800_0000,
            }],
        "the two-node tree's node 1 memory is wrong",
    )?;

    let plain = tree([None, None], &[None, None], None);
    let Read {
        found, kept, note, ..
    } = read(&plain).map_err(|_| "the plain tree did not parse")?;
    ensure(
        matches!(found, Ok(None)) && kept.nodes() == 1 && kept.cpus() == 2 && note.is_empty(),
        "a tree without NUMA properties is not one node without a note",
    )?;

    falls_back(
        &tree([Some(0), Some(0)], &[Some(0), Some(1)], None),
        |e| {
            matches!(
                e,
                NumaError::Topology(TopologyError::CpuWithoutMemory { cpu: 1, node: 1 })
            )
        },
        "a cpu on a node without memory was not refused",
    )?;
    falls_back(
        &tree(
            [Some(0), Some(1)],
            &[Some(0), Some(1)],
            Some(&[0, 0, 10, 0, 1, 20, 1, 0, 30, 1, 1, 10]),
        ),
        |e| {
            matches!(
                e,
                NumaError::Topology(TopologyError::AsymmetricDistance {
                    from: 0,
                    to: 1,
                    there: 20,
                    back: 30
                })
            )
        },
        "an asymmetric distance map was not refused",
    )?;
    falls_back(
        &tree(
            [Some(0), Some(1)],
            &[Some(0), Some(1)],
            Some(&SYMMETRIC[..9]),
        ),
        |e| {
            matches!(
                e,
                NumaError::Topology(TopologyError::MissingDistance { from: 1, to: 1 })
            )
        },
        "a distance map with a hole was not refused",
    )?;
    falls_back(
        &tree([Some(0), Some(1)], &[Some(0), None], None),
        |e| matches!(e, NumaError::Unassigned("cpu@1")),
        "a cpu without a node beside cpus with one was not refused",
    )?;
    falls_back(
        &tree(
            [Some(0), Some(1)],
            &[Some(0), Some(1)],
            Some(&SYMMETRIC[..8]),
        ),
        |e| matches!(e, NumaError::Malformed(_)),
        "a distance-matrix that is not whole triples was not refused",
    )?;
    falls_back(
        &tree(
            [Some(0), Some(1)],
            &[Some(0), Some(1)],
            Some(&[0, 0, 10, 0, 1, 256, 1, 0, 256, 1, 1, 10]),
        ),
        |e| matches!(e, NumaError::Malformed(_)),
        "a distance past 255 was not refused",
    )
}
