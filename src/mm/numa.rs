//! The machine's NUMA topology as firmware describes it: which CPUs and which memory
//! ranges belong to which node, and how far nodes are from each other.
//!
//! Firmware reports this in pieces (device-tree `numa-node-id` properties and a
//! `distance-map`, or ACPI SRAT and SLIT), so a [`Topology`] is filled one entry at a
//! time and then checked as a whole with [`Topology::check`]. Every piece of bad input is
//! a [`TopologyError`] naming what is wrong; the caller's fallback is
//! [`Topology::flat`] (one node with every CPU that fits and all memory). A machine whose
//! firmware says nothing about nodes is one node.
//!
//! Nothing here allocates: the tables are fixed-size, as they are built before any
//! allocator exists.

use core::fmt;

use super::PhysAddr;
use super::memmap::PhysRange;

/// The most nodes a [`Topology`] holds.
///
/// # Examples
/// ```
/// use kmem::mm::memmap::PhysRange;
/// use kmem::mm::numa::MAX_NODES;
/// use kmem::{Topology, TopologyError};
/// let mut t = Topology::new();
/// let r = PhysRange { start: 0, end: 0x1000 };
/// assert_eq!(t.add_memory(MAX_NODES, r), Err(TopologyError::TooManyNodes { node: MAX_NODES }));
/// ```
pub const MAX_NODES: usize = 8;

/// The most CPUs a [`Topology`] (and the allocator's per-CPU areas) support.
///
/// # Examples
/// ```
/// use kmem::mm::numa::MAX_CPUS;
/// use kmem::{Topology, TopologyError};
/// let mut t = Topology::new();
/// assert_eq!(t.add_cpu(MAX_CPUS, 0), Err(TopologyError::TooManyCpus { cpu: MAX_CPUS }));
/// ```
pub const MAX_CPUS: usize = 256;

/// The most memory ranges a [`Topology`] holds, over all nodes.
///
/// # Examples
/// ```
/// use kmem::mm::memmap::PhysRange;
/// use kmem::mm::numa::MAX_NODE_RANGES;
/// use kmem::{Topology, TopologyError};
/// let mut t = Topology::new();
/// for i in 0..MAX_NODE_RANGES as u64 {
///     t.add_memory(0, PhysRange { start: i << 20, end: (i << 20) + 0x1000 })?;
/// }
/// let more = PhysRange { start: 1 << 40, end: (1 << 40) + 0x1000 };
/// assert_eq!(t.add_memory(0, more), Err(TopologyError::TooManyRanges));
/// # Ok::<(), TopologyError>(())
/// ```
pub const MAX_NODE_RANGES: usize = 64;

/// A node's number, `0..Topology::nodes()`.
///
/// # Examples
/// ```
/// use kmem::{NodeId, Topology};
/// let node: NodeId = Topology::flat(4).node_of_cpu(3);
/// assert_eq!(node, 0);
/// ```
pub type NodeId = usize;

/// The distance from a node to itself (the ACPI SLIT convention).
///
/// # Examples
/// ```
/// use kmem::Topology;
/// use kmem::mm::numa::LOCAL_DISTANCE;
/// assert_eq!(Topology::flat(1).distance(0, 0), LOCAL_DISTANCE);
/// ```
pub const LOCAL_DISTANCE: u8 = 10;

/// The distance between two different nodes when firmware gives no distances.
///
/// # Examples
/// ```
/// use kmem::mm::memmap::PhysRange;
/// use kmem::mm::numa::REMOTE_DISTANCE;
/// use kmem::Topology;
/// let mut t = Topology::new();
/// t.add_memory(0, PhysRange { start: 0, end: 1 << 20 })?;
/// t.add_memory(1, PhysRange { start: 1 << 20, end: 2 << 20 })?;
/// t.add_cpu(0, 0)?;
/// t.check()?;
/// assert_eq!(t.distance(0, 1), REMOTE_DISTANCE);
/// # Ok::<(), kmem::TopologyError>(())
/// ```
pub const REMOTE_DISTANCE: u8 = 20;

/// Marks a CPU with no node in [`Topology`]'s table.
const NO_NODE: u8 = u8::MAX;

/// What is wrong with a topology. Each names the entry at fault.
///
/// # Examples
/// ```
/// use kmem::mm::memmap::PhysRange;
/// use kmem::{Topology, TopologyError};
/// let mut t = Topology::new();
/// t.add_memory(0, PhysRange { start: 0, end: 1 << 20 })?;
/// t.add_cpu(0, 1)?; // node 1 has no memory
/// let err = t.check().unwrap_err();
/// assert_eq!(err, TopologyError::CpuWithoutMemory { cpu: 0, node: 1 });
/// assert_eq!(err.to_string(), "numa: cpu 0 is on node 1, which has no memory");
/// # Ok::<(), TopologyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TopologyError {
    /// A node number at or above [`MAX_NODES`].
    TooManyNodes {
        /// The node named.
        node: NodeId,
    },
    /// A CPU number at or above [`MAX_CPUS`].
    TooManyCpus {
        /// The CPU named.
        cpu: usize,
    },
    /// More than [`MAX_NODE_RANGES`] memory ranges.
    TooManyRanges,
    /// A memory range with no bytes.
    EmptyRange {
        /// The range given.
        range: PhysRange,
    },
    /// A memory range overlaps one already given (on the same node or another).
    OverlappingMemory {
        /// The range given.
        range: PhysRange,
        /// Its node.
        node: NodeId,
        /// The range it overlaps.
        other: PhysRange,
        /// That range's node.
        other_node: NodeId,
    },
    /// A CPU given twice, on two different nodes.
    CpuOnTwoNodes {
        /// The CPU.
        cpu: usize,
        /// The node it was given first.
        first: NodeId,
        /// The node it was given second.
        second: NodeId,
    },
    /// No CPUs at all.
    NoCpus,
    /// No memory on any node.
    NoMemory,
    /// A CPU number below the highest one given has no node: logical CPU ids are dense.
    CpuWithoutNode {
        /// The CPU.
        cpu: usize,
    },
    /// A CPU is on a node with no memory.
    CpuWithoutMemory {
        /// The CPU.
        cpu: usize,
        /// Its node.
        node: NodeId,
    },
    /// A node below the highest one given has no memory: node numbers are dense.
    NodeWithoutMemory {
        /// The node.
        node: NodeId,
    },
    /// A distance names a node that has no memory and no CPUs.
    DistanceToUnknownNode {
        /// The node named.
        node: NodeId,
    },
    /// A node's distance to itself is not [`LOCAL_DISTANCE`].
    LocalDistance {
        /// The node.
        node: NodeId,
        /// The distance given.
        distance: u8,
    },
    /// A distance between two different nodes is not above [`LOCAL_DISTANCE`].
    RemoteDistance {
        /// From this node.
        from: NodeId,
        /// To this node.
        to: NodeId,
        /// The distance given.
        distance: u8,
    },
    /// The distance a → b differs from b → a.
    AsymmetricDistance {
        /// From this node.
        from: NodeId,
        /// To this node.
        to: NodeId,
        /// The distance from → to.
        there: u8,
        /// The distance to → from.
        back: u8,
    },
    /// Some distances were given but not this one.
    MissingDistance {
        /// From this node.
        from: NodeId,
        /// To this node.
        to: NodeId,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopologyError::TooManyNodes { node } => write!(
                f,
                "numa: node {node} is past the last supported node {}",
                MAX_NODES - 1
            ),
            TopologyError::TooManyCpus { cpu } => write!(
                f,
                "numa: cpu {cpu} is past the last supported cpu {}",
                MAX_CPUS - 1
            ),
            TopologyError::TooManyRanges => write!(
                f,
                "numa: more than {MAX_NODE_RANGES} memory ranges over all nodes"
            ),
            TopologyError::EmptyRange { range } => {
                write!(f, "numa: memory range {range} is empty")
            }
            TopologyError::OverlappingMemory {
                range,
                node,
                other,
                other_node,
            } => write!(
                f,
                "numa: memory {range} of node {node} overlaps {other} of node {other_node}"
            ),
            TopologyError::CpuOnTwoNodes { cpu, first, second } => {
                write!(f, "numa: cpu {cpu} is on node {first} and on node {second}")
            }
            TopologyError::NoCpus => f.write_str("numa: no cpus"),
            TopologyError::NoMemory => f.write_str("numa: no node has memory"),
            TopologyError::CpuWithoutNode { cpu } => {
                write!(f, "numa: cpu {cpu} has no node")
            }
            TopologyError::CpuWithoutMemory { cpu, node } => {
                write!(f, "numa: cpu {cpu} is on node {node}, which has no memory")
            }
            TopologyError::NodeWithoutMemory { node } => {
                write!(f, "numa: node {node} has no memory")
            }
            TopologyError::DistanceToUnknownNode { node } => write!(
                f,
                "numa: a distance names node {node}, which has no memory and no cpus"
            ),
            TopologyError::LocalDistance { node, distance } => write!(
                f,
                "numa: distance {node} -> {node} is {distance}, not {LOCAL_DISTANCE}"
            ),
            TopologyError::RemoteDistance { from, to, distance } => write!(
                f,
                "numa: distance {from} -> {to} is {distance}, not above {LOCAL_DISTANCE}"
            ),
            TopologyError::AsymmetricDistance {
                from,
                to,
                there,
                back,
            } => write!(
                f,
                "numa: distance {from} -> {to} is {there} but {to} -> {from} is {back}"
            ),
            TopologyError::MissingDistance { from, to } => {
                write!(f, "numa: no distance {from} -> {to} in the distance map")
            }
        }
    }
}

/// Which CPUs and memory ranges belong to which node, and the distances between nodes.
///
/// Fill it with [`Topology::add_memory`], [`Topology::add_cpu`] and
/// [`Topology::set_distance`] (each checks its own entry), then [`Topology::check`] the
/// whole; or take [`Topology::flat`] for a machine without NUMA, or as the fallback when
/// `check` fails.
///
/// # Examples
/// Two nodes of 1 MiB, two CPUs each:
/// ```
/// use kmem::mm::memmap::PhysRange;
/// use kmem::Topology;
/// let mut t = Topology::new();
/// for node in 0..2u64 {
///     t.add_memory(node as usize, PhysRange { start: node << 20, end: (node + 1) << 20 })?;
///     for cpu in 0..2 {
///         t.add_cpu(node as usize * 2 + cpu, node as usize)?;
///     }
/// }
/// t.set_distance(0, 0, 10)?;
/// t.set_distance(1, 1, 10)?;
/// t.set_distance(0, 1, 21)?;
/// t.set_distance(1, 0, 21)?;
/// t.check()?;
/// assert_eq!((t.nodes(), t.cpus()), (2, 4));
/// assert_eq!(t.node_of_cpu(3), 1);
/// assert_eq!(t.node_of(0x18_0000), Some(1));
/// assert_eq!(t.distance(1, 0), 21);
/// # Ok::<(), kmem::TopologyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Topology {
    /// Node of each CPU, `NO_NODE` where none was given.
    cpu_node: [u8; MAX_CPUS],
    /// One more than the highest CPU given.
    cpus: usize,
    /// One more than the highest node given memory or a CPU.
    nodes: usize,
    /// Memory ranges with their nodes, the first `ranges` in use.
    memory: [(PhysRange, u8); MAX_NODE_RANGES],
    ranges: usize,
    /// `distance[from][to]`, 0 where none was given.
    distance: [[u8; MAX_NODES]; MAX_NODES],
    /// Whether any distance was given (then none may be missing).
    distances_given: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Topology {
    /// One node, 0, holding CPUs `0..cpus` and all memory; every distance is local.
    /// More than [`MAX_CPUS`] CPUs are kept as given, for [`Topology::check`] to refuse.
    ///
    /// # Examples
    /// ```
    /// use kmem::Topology;
    /// let t = Topology::flat(4);
    /// t.check()?;
    /// assert_eq!((t.nodes(), t.cpus()), (1, 4));
    /// assert_eq!(t.node_of(0x1234_5678), Some(0));
    /// # Ok::<(), kmem::TopologyError>(())
    /// ```
    pub fn flat(cpus: usize) -> Topology {
        let mut t = Topology::new();
        t.cpu_node = [0; MAX_CPUS];
        t.cpus = cpus;
        t.nodes = 1;
        t.memory[0] = (
            PhysRange {
                start: 0,
                end: u64::MAX,
            },
            0,
        );
        t.ranges = 1;
        t
    }

    /// No nodes, CPUs, memory or distances yet.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Topology, TopologyError};
    /// let t = Topology::new();
    /// assert_eq!((t.nodes(), t.cpus()), (0, 0));
    /// assert_eq!(t.check(), Err(TopologyError::NoCpus));
    /// ```
    pub fn new() -> Topology {
        Topology {
            cpu_node: [NO_NODE; MAX_CPUS],
            cpus: 0,
            nodes: 0,
            memory: [(PhysRange::default(), 0); MAX_NODE_RANGES],
            ranges: 0,
            distance: [[0; MAX_NODES]; MAX_NODES],
            distances_given: false,
        }
    }

    /// Puts memory `range` on `node`. Ranges may not overlap, on one node or two.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::memmap::PhysRange;
    /// use kmem::{Topology, TopologyError};
    /// let mut t = Topology::new();
    /// let low = PhysRange { start: 0, end: 2 << 20 };
    /// t.add_memory(0, low)?;
    /// let err = t.add_memory(1, PhysRange { start: 1 << 20, end: 3 << 20 }).unwrap_err();
    /// assert!(matches!(err, TopologyError::OverlappingMemory { other_node: 0, .. }));
    /// # Ok::<(), TopologyError>(())
    /// ```
    pub fn add_memory(&mut self, node: NodeId, range: PhysRange) -> Result<(), TopologyError> {
        if node >= MAX_NODES {
            return Err(TopologyError::TooManyNodes { node });
        }
        if range.start >= range.end {
            return Err(TopologyError::EmptyRange { range });
        }
        if let Some(&(other, other_node)) = self.ranges().find(|(r, _)| overlaps(r, &range)) {
            return Err(TopologyError::OverlappingMemory {
                range,
                node,
                other,
                other_node: other_node as NodeId,
            });
        }
        if self.ranges == MAX_NODE_RANGES {
            return Err(TopologyError::TooManyRanges);
        }
        self.memory[self.ranges] = (range, node as u8);
        self.ranges += 1;
        self.nodes = self.nodes.max(node + 1);
        Ok(())
    }

    /// Puts logical CPU `cpu` (the [`crate::Arch::cpu_id`] it runs as) on `node`.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Topology, TopologyError};
    /// let mut t = Topology::new();
    /// t.add_cpu(0, 1)?;
    /// t.add_cpu(0, 1)?; // the same again is harmless
    /// let err = t.add_cpu(0, 0).unwrap_err();
    /// assert_eq!(err, TopologyError::CpuOnTwoNodes { cpu: 0, first: 1, second: 0 });
    /// # Ok::<(), TopologyError>(())
    /// ```
    pub fn add_cpu(&mut self, cpu: usize, node: NodeId) -> Result<(), TopologyError> {
        if cpu >= MAX_CPUS {
            return Err(TopologyError::TooManyCpus { cpu });
        }
        if node >= MAX_NODES {
            return Err(TopologyError::TooManyNodes { node });
        }
        let first = self.cpu_node[cpu];
        if first != NO_NODE && first as NodeId != node {
            return Err(TopologyError::CpuOnTwoNodes {
                cpu,
                first: first as NodeId,
                second: node,
            });
        }
        self.cpu_node[cpu] = node as u8;
        self.cpus = self.cpus.max(cpu + 1);
        self.nodes = self.nodes.max(node + 1);
        Ok(())
    }

    /// Sets the distance from `from` to `to` (a SLIT entry or a device-tree
    /// `distance-map` triple). Once any distance is given, all must be.
    ///
    /// # Examples
    /// ```
    /// use kmem::{Topology, TopologyError};
    /// let mut t = Topology::new();
    /// t.set_distance(0, 1, 20)?;
    /// assert_eq!(
    ///     t.set_distance(0, 0, 20),
    ///     Err(TopologyError::LocalDistance { node: 0, distance: 20 })
    /// );
    /// assert_eq!(
    ///     t.set_distance(1, 0, 10),
    ///     Err(TopologyError::RemoteDistance { from: 1, to: 0, distance: 10 })
    /// );
    /// # Ok::<(), TopologyError>(())
    /// ```
    pub fn set_distance(
        &mut self,
        from: NodeId,
        to: NodeId,
        distance: u8,
    ) -> Result<(), TopologyError> {
        for node in [from, to] {
            if node >= MAX_NODES {
                return Err(TopologyError::TooManyNodes { node });
            }
        }
        if from == to && distance != LOCAL_DISTANCE {
            return Err(TopologyError::LocalDistance {
                node: from,
                distance,
            });
        }
        if from != to && distance <= LOCAL_DISTANCE {
            return Err(TopologyError::RemoteDistance { from, to, distance });
        }
        self.distance[from][to] = distance;
        self.distances_given = true;
        Ok(())
    }

    /// Checks the whole table: CPUs and memory exist; CPU and node numbers are dense;
    /// every node has memory; distances, if any were given, name known nodes, are all
    /// there and are symmetric.
    ///
    /// # Examples
    /// A distance map with one direction missing:
    /// ```
    /// use kmem::mm::memmap::PhysRange;
    /// use kmem::{Topology, TopologyError};
    /// let mut t = Topology::new();
    /// t.add_memory(0, PhysRange { start: 0, end: 1 << 20 })?;
    /// t.add_memory(1, PhysRange { start: 1 << 20, end: 2 << 20 })?;
    /// t.add_cpu(0, 0)?;
    /// t.set_distance(0, 1, 20)?;
    /// assert_eq!(t.check(), Err(TopologyError::MissingDistance { from: 0, to: 0 }));
    /// # Ok::<(), TopologyError>(())
    /// ```
    pub fn check(&self) -> Result<(), TopologyError> {
        if self.cpus == 0 {
            return Err(TopologyError::NoCpus);
        }
        if self.cpus > MAX_CPUS {
            return Err(TopologyError::TooManyCpus { cpu: self.cpus - 1 });
        }
        if self.ranges == 0 {
            return Err(TopologyError::NoMemory);
        }
        let mut has_memory = [false; MAX_NODES];
        for &(_, node) in self.ranges() {
            has_memory[node as usize] = true;
        }
        for (cpu, &node) in self.cpu_node[..self.cpus].iter().enumerate() {
            if node == NO_NODE {
                return Err(TopologyError::CpuWithoutNode { cpu });
            }
            if !has_memory[node as usize] {
                return Err(TopologyError::CpuWithoutMemory {
                    cpu,
                    node: node as NodeId,
                });
            }
        }
        if let Some(node) = (0..self.nodes).find(|&n| !has_memory[n]) {
            return Err(TopologyError::NodeWithoutMemory { node });
        }
        if !self.distances_given {
            return Ok(());
        }
        for from in 0..MAX_NODES {
            for to in 0..MAX_NODES {
                let d = self.distance[from][to];
                if from >= self.nodes || to >= self.nodes {
                    if d != 0 {
                        return Err(TopologyError::DistanceToUnknownNode { node: from.max(to) });
                    }
                    continue;
                }
                if d == 0 {
                    return Err(TopologyError::MissingDistance { from, to });
                }
                let back = self.distance[to][from];
                if back != 0 && back != d {
                    return Err(TopologyError::AsymmetricDistance {
                        from,
                        to,
                        there: d,
                        back,
                    });
                }
            }
        }
        Ok(())
    }

    /// Number of nodes: one more than the highest node given memory or a CPU.
    ///
    /// # Examples
    /// ```
    /// use kmem::Topology;
    /// assert_eq!(Topology::flat(2).nodes(), 1);
    /// ```
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Number of CPUs: one more than the highest CPU given.
    ///
    /// # Examples
    /// ```
    /// use kmem::Topology;
    /// let mut t = Topology::new();
    /// t.add_cpu(5, 0)?;
    /// assert_eq!(t.cpus(), 6);
    /// # Ok::<(), kmem::TopologyError>(())
    /// ```
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The node of CPU `cpu`; node 0 for a CPU the table does not know.
    ///
    /// # Examples
    /// ```
    /// use kmem::Topology;
    /// let mut t = Topology::new();
    /// t.add_cpu(1, 3)?;
    /// assert_eq!(t.node_of_cpu(1), 3);
    /// assert_eq!(t.node_of_cpu(1000), 0);
    /// # Ok::<(), kmem::TopologyError>(())
    /// ```
    #[inline]
    pub fn node_of_cpu(&self, cpu: usize) -> NodeId {
        match self.cpu_node.get(cpu) {
            Some(&n) if n != NO_NODE => n as NodeId,
            _ => 0,
        }
    }

    /// The node whose memory holds `pa`, if any.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::memmap::PhysRange;
    /// use kmem::Topology;
    /// let mut t = Topology::new();
    /// t.add_memory(1, PhysRange { start: 0x1000, end: 0x2000 })?;
    /// assert_eq!(t.node_of(0x1fff), Some(1));
    /// assert_eq!(t.node_of(0x2000), None);
    /// # Ok::<(), kmem::TopologyError>(())
    /// ```
    pub fn node_of(&self, pa: PhysAddr) -> Option<NodeId> {
        self.ranges()
            .find(|(r, _)| r.start <= pa && pa < r.end)
            .map(|&(_, n)| n as NodeId)
    }

    /// The distance from `from` to `to`: as given, or [`LOCAL_DISTANCE`] /
    /// [`REMOTE_DISTANCE`] when none was.
    ///
    /// # Examples
    /// ```
    /// use kmem::Topology;
    /// let mut t = Topology::new();
    /// assert_eq!(t.distance(0, 1), 20);
    /// t.set_distance(0, 1, 30)?;
    /// assert_eq!(t.distance(0, 1), 30);
    /// # Ok::<(), kmem::TopologyError>(())
    /// ```
    pub fn distance(&self, from: NodeId, to: NodeId) -> u8 {
        match self.distance.get(from).and_then(|row| row.get(to)) {
            Some(&d) if d != 0 => d,
            _ if from == to => LOCAL_DISTANCE,
            _ => REMOTE_DISTANCE,
        }
    }

    /// The memory ranges of `node`, in the order given.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::memmap::PhysRange;
    /// use kmem::Topology;
    /// let mut t = Topology::new();
    /// let (a, b) = (PhysRange { start: 0, end: 0x1000 }, PhysRange { start: 0x4000, end: 0x5000 });
    /// t.add_memory(0, a)?;
    /// t.add_memory(1, PhysRange { start: 0x2000, end: 0x3000 })?;
    /// t.add_memory(0, b)?;
    /// assert!(t.memory(0).eq([a, b]));
    /// # Ok::<(), kmem::TopologyError>(())
    /// ```
    pub fn memory(&self, node: NodeId) -> impl Iterator<Item = PhysRange> + '_ {
        self.ranges()
            .filter(move |&&(_, n)| n as NodeId == node)
            .map(|&(r, _)| r)
    }

    fn ranges(&self) -> core::slice::Iter<'_, (PhysRange, u8)> {
        self.memory[..self.ranges].iter()
    }
}

fn overlaps(a: &PhysRange, b: &PhysRange) -> bool {
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests;
