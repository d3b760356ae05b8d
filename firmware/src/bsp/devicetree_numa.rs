//! The NUMA description of a device tree (Linux's `numa.txt` binding): `numa-node-id` on
//! each `/memory` node and each `/cpus/cpu` node, and `/distance-map`'s
//! `distance-matrix` of `<from to distance>` triples. Collected into a
//! [`kmem::Topology`] entry by entry; `bsp::numa::or_flat` checks the whole.

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::standard::NodeStandard;
use dtoolkit::{Node, Property};

use super::Cpus;
use super::devicetree::{first_reg, is_memory, regs};
use super::numa::{NumaError, logical_of};
use kmem::mm::memmap::PhysRange;
use kmem::mm::numa::{NodeId, Topology};

/// `numa-node-id` of `node`, if it has one.
fn node_id(node: &FdtNode<'static>) -> Result<Option<NodeId>, NumaError> {
    node.property("numa-node-id")
        .map(|p| p.value_as::<u32>().map(|id| id as NodeId))
        .transpose()
        .map_err(|_| NumaError::Malformed("numa-node-id"))
}

/// The tree's topology: `Ok(None)` when it has no `numa-node-id` and no distance map;
/// an error when only some `/memory` or CPU nodes name a node, or an entry is refused.
/// CPUs past those kmem brings up (`cpus`) are left out.
pub fn topology(fdt: Fdt<'static>, cpus: &Cpus) -> Result<Option<Topology>, NumaError> {
    let mut t = Topology::new();
    let mut named = false;
    let mut unnamed = None;
    for node in fdt.root().children().filter(is_memory) {
        let Some(id) = node_id(&node)? else {
            unnamed = unnamed.or(Some(node.name()));
            continue;
        };
        named = true;
        for reg in regs(node, "/memory").map_err(|_| NumaError::Malformed("/memory reg"))? {
            let (start, size) = reg.map_err(|_| NumaError::Malformed("/memory reg"))?;
            let end = start
                .checked_add(size)
                .ok_or(NumaError::Malformed("/memory reg"))?;
            if size > 0 {
                t.add_memory(id, PhysRange { start, end })?;
            }
        }
    }
    let cpu_nodes = fdt
        .find_node("/cpus")
        .into_iter()
        .flat_map(|c| c.children());
    for cpu in cpu_nodes.filter(|c| c.name_without_address() == "cpu") {
        let hwid = first_reg(cpu)
            .ok_or(NumaError::Malformed("/cpus reg"))?
            .base;
        let Some(id) = node_id(&cpu)? else {
            unnamed = unnamed.or(Some(cpu.name()));
            continue;
        };
        named = true;
        if let Some(logical) = logical_of(cpus, hwid) {
            t.add_cpu(logical, id)?;
        }
    }
    let map = fdt
        .root()
        .children()
        .find(|n| n.is_compatible("numa-distance-map-v1"));
    if let Some(map) = map {
        named = true;
        let matrix = map
            .property("distance-matrix")
            .ok_or(NumaError::Malformed("/distance-map (no distance-matrix)"))?;
        let matrix = matrix.value();
        if matrix.len() % 12 != 0 {
            return Err(NumaError::Malformed("/distance-map distance-matrix"));
        }
        for triple in matrix.chunks_exact(12) {
            let cell = |i: usize| {
                u32::from_be_bytes([triple[i], triple[i + 1], triple[i + 2], triple[i + 3]])
            };
            let distance = u8::try_from(cell(8))
                .map_err(|_| NumaError::Malformed("/distance-map distance (over 255)"))?;
            t.set_distance(cell(0) as NodeId, cell(4) as NodeId, distance)?;
        }
    }
    match (named, unnamed) {
        (false, _) => Ok(None),
        (true, Some(what)) => Err(NumaError::Unassigned(what)),
        (true, None) => Ok(Some(t)),
    }
}
