//! The NUMA topology from the boot information: which node each CPU and each memory range
//! is on, and the distances between nodes — from the device tree (`numa-node-id` on the
//! `/memory` and `/cpus` nodes, `/distance-map`) on the Arm and RISC-V boards, from the
//! ACPI SRAT and SLIT on x86_64. A machine that says nothing about nodes is one node.
//!
//! A board collects what the tables say into a [`Topology`] and hands the result to
//! [`or_flat`], which checks it as a whole (`Topology::check`): a bad table — a node
//! without memory, a CPU on such a node, a distance map that is asymmetric or has holes —
//! is a note in the boot report, and the machine boots as one node with every CPU.

use core::fmt;

use super::{Cpus, Notes};
use kmem::mm::memmap::NormalizedMap;
use kmem::mm::numa::{Topology, TopologyError};

/// Why the tables' NUMA description was not used.
#[derive(Clone, Copy, Debug)]
pub enum NumaError {
    /// Some entries name a node and this one does not (a `/memory` or `/cpus` node, an
    /// enabled SRAT-less CPU).
    Unassigned(&'static str),
    /// A property or table entry is malformed.
    Malformed(&'static str),
    /// An entry is refused, or the whole does not hold together.
    Topology(TopologyError),
}

impl From<TopologyError> for NumaError {
    fn from(e: TopologyError) -> NumaError {
        NumaError::Topology(e)
    }
}

impl fmt::Display for NumaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumaError::Unassigned(what) => {
                write!(f, "numa: {what} has no node while others have one")
            }
            NumaError::Malformed(what) => write!(f, "numa: {what} is malformed"),
            NumaError::Topology(e) => write!(f, "{e}"),
        }
    }
}

/// The topology the tables described, when it passes `Topology::check`; else the note
/// `numa: <why>; using one node` and one node with `cpus`' CPUs. `Ok(None)` (the tables
/// say nothing of nodes) is one node without a note.
pub fn or_flat(
    found: Result<Option<Topology>, NumaError>,
    cpus: &Cpus,
    notes: &mut Notes,
) -> Topology {
    let checked = found.and_then(|t| match t {
        Some(t) => t.check().map(|()| Some(t)).map_err(NumaError::from),
        None => Ok(None),
    });
    match checked {
        Ok(Some(t)) => t,
        Ok(None) => Topology::flat(cpus.len),
        Err(e) => {
            notes.push(format_args!("{e}; using one node"));
            Topology::flat(cpus.len)
        }
    }
}

/// The logical id of the CPU with hardware id `hwid` in `cpus`, if it is one kmem brings
/// up (CPUs past `MAX_CPUS` are not).
pub fn logical_of(cpus: &Cpus, hwid: u64) -> Option<usize> {
    cpus.hwids[..cpus.len].iter().position(|&h| h == hwid)
}

/// Prints one line per node of `t`: its CPUs (as runs of ids) and its memory ranges as
/// the tables give them — for one node, the span of the RAM `map` lists (a flat
/// topology's range is every address) — `node 0: cpus 0-7, memory
/// 0x40000000-0x5fffffff (512 MiB)`.
pub fn report(t: &Topology, map: &NormalizedMap) {
    let ram = map.usable().iter().chain(map.reserved());
    let lo = ram.clone().map(|r| r.start).min().unwrap_or(0);
    let hi = ram.map(|r| r.end).max().unwrap_or(0);
    for node in 0..t.nodes() {
        crate::print!("node {node}: cpus");
        let mut first = true;
        let mut flush = |(a, b): (usize, usize)| {
            let sep = if first { " " } else { "," };
            first = false;
            if a == b {
                crate::print!("{sep}{a}");
            } else {
                crate::print!("{sep}{a}-{b}");
            }
        };
        let mut run: Option<(usize, usize)> = None;
        for c in (0..t.cpus()).filter(|&c| t.node_of_cpu(c) == node) {
            run = match run {
                Some((a, b)) if b + 1 == c => Some((a, c)),
                Some(r) => {
                    flush(r);
                    Some((c, c))
                }
                None => Some((c, c)),
            };
        }
        match run {
            Some(r) => flush(r),
            None => crate::print!(" none"),
        }
        crate::print!(", memory");
        let ranges = t.memory(node).filter_map(|r| {
            let (start, end) = if t.nodes() == 1 {
                (r.start.max(lo), r.end.min(hi))
            } else {
                (r.start, r.end)
            };
            (start < end).then_some((start, end))
        });
        for (i, (start, end)) in ranges.enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let size = end - start;
            crate::print!("{sep}{start:#x}-{:#x} ", end - 1);
            if size >= 1 << 20 {
                crate::print!("({} MiB)", size >> 20);
            } else {
                crate::print!("({} KiB)", size >> 10);
            }
        }
        if t.nodes() > 1 {
            crate::print!(", distances");
            (0..t.nodes()).for_each(|to| crate::print!(" {}", t.distance(node, to)));
        }
        crate::println!();
    }
}
