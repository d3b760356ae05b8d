//! Where the page allocator's boot metadata goes: each NUMA node's descriptors, its CPUs'
//! page lists and its zone state in that node's own memory (Linux's per-node `mem_map`,
//! per-CPU areas and `pg_data_t`).
//!
//! [`MetaLayout::plan`] splits the usable ranges into banks where the node changes (one
//! descriptor array per bank), sizes each node's *piece* of metadata, and carves it:
//!
//! - from the node's own banks — on the node of `place_after`, at the first 2 MiB
//!   boundary at or above it that fits (the seed's layout after the kernel image), else
//!   at the start of the node's largest bank that has room;
//! - failing that, from the nearest node that has room (`MetaPiece::home` says where it
//!   went): a node too small for its own metadata still boots;
//! - failing that for any node, every piece side by side in one area placed as the
//!   single-area layout of old placed it, so a map the old layout fitted still boots.
//!
//! A piece holds, in order: the descriptor arrays of the node's banks, the page-list
//! slots of the node's CPUs, the node's zones (`node::Node`); node 0's piece then holds
//! what all nodes share (`node::NumaState` and the table of page-list slot addresses).

use super::frame::{MAX_BANKS, PAGE_SHIFT, PageFrame};
use super::memmap::{PAGE_SIZE, PhysRange};
use super::numa::{MAX_NODES, NodeId, Topology};
use super::{InitError, PhysAddr, align_up};

/// Sizes and alignments of what a piece holds besides descriptors (the types are generic
/// over the architecture; this module is not).
#[derive(Clone, Copy)]
pub(crate) struct MetaSizes {
    /// One CPU's page-list slot.
    pub(crate) slot: (usize, usize),
    /// One node's zones.
    pub(crate) node: (usize, usize),
    /// The shared state.
    pub(crate) shared: (usize, usize),
    /// One entry of the descriptor table's bank table.
    pub(crate) bank: (usize, usize),
}

/// One node's metadata: where it went and where each part starts in it.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct MetaPiece {
    /// Physical address of the piece's first byte.
    pub(crate) start: PhysAddr,
    /// Bytes of the piece.
    pub(crate) bytes: u64,
    /// The node whose memory holds the piece (the node itself unless it had no room).
    pub(crate) home: NodeId,
    /// Offset of the node's CPUs' page-list slots.
    pub(crate) slots: u64,
    /// Offset of the node's zones.
    pub(crate) node: u64,
    /// Offset of the shared state (node 0's piece only).
    pub(crate) shared: u64,
    /// Offset of the table of slot addresses (node 0's piece only).
    pub(crate) table: u64,
    /// Offset of the descriptor table's bank table (node 0's piece only).
    pub(crate) banks: u64,
}

impl MetaPiece {
    /// The bytes the piece takes, as a range.
    pub(crate) fn range(&self) -> PhysRange {
        PhysRange {
            start: self.start,
            end: self.start + self.bytes,
        }
    }
}

/// The plan: banks, pieces, and the ranges carved for them.
pub(crate) struct MetaLayout {
    banks: [PhysRange; MAX_BANKS],
    nbanks: usize,
    bank_node: [u8; MAX_BANKS],
    /// Offset of each bank's descriptors in its node's piece.
    bank_offset: [u64; MAX_BANKS],
    pub(crate) pieces: [MetaPiece; MAX_NODES],
    /// Page-aligned ranges taken from usable memory: one per piece, or one for all.
    carved: [PhysRange; MAX_NODES],
    ncarved: usize,
    /// Each CPU's rank among its node's CPUs.
    cpu_rank: [u16; super::numa::MAX_CPUS],
    slot_bytes: u64,
}

impl MetaLayout {
    /// Plans the metadata of `usable` (sorted, disjoint, page-aligned) for `topology`
    /// (checked), the first piece after `place_after` as the module doc says.
    pub(crate) fn plan(
        usable: &[PhysRange],
        topology: &Topology,
        fallback: &[[u8; MAX_NODES]; MAX_NODES],
        sizes: MetaSizes,
        place_after: Option<PhysAddr>,
    ) -> Result<MetaLayout, InitError> {
        let mut l = MetaLayout {
            banks: [PhysRange { start: 0, end: 0 }; MAX_BANKS],
            nbanks: 0,
            bank_node: [0; MAX_BANKS],
            bank_offset: [0; MAX_BANKS],
            pieces: [MetaPiece::default(); MAX_NODES],
            carved: [PhysRange { start: 0, end: 0 }; MAX_NODES],
            ncarved: 0,
            cpu_rank: [0; super::numa::MAX_CPUS],
            slot_bytes: sizes.slot.0 as u64,
        };
        l.split_banks(usable, topology);
        let nodes = topology.nodes();
        let mut desc = [0u64; MAX_NODES];
        for b in 0..l.nbanks {
            let n = l.bank_node[b] as NodeId;
            l.bank_offset[b] = desc[n];
            desc[n] += l.banks[b].size() / PAGE_SIZE * size_of::<PageFrame>() as u64;
        }
        let mut cpus = [0u64; MAX_NODES];
        for cpu in 0..topology.cpus() {
            let n = topology.node_of_cpu(cpu);
            l.cpu_rank[cpu] = cpus[n] as u16;
            cpus[n] += 1;
        }
        // Pieces side by side (`place_together`) start 64-byte aligned.
        let aligns = [sizes.slot, sizes.node, sizes.shared, sizes.bank];
        assert!(aligns.iter().all(|s| s.1 <= 64));
        let at = |off: u64, (size, align): (usize, usize)| {
            let start = align_up(off, align as u64);
            (start, start + size as u64)
        };
        for n in 0..nodes {
            let p = &mut l.pieces[n];
            p.slots = align_up(desc[n], sizes.slot.1 as u64);
            (p.node, p.bytes) = at(p.slots + cpus[n] * l.slot_bytes, sizes.node);
        }
        let p = &mut l.pieces[0];
        let (shared, end) = at(p.bytes, sizes.shared);
        let (table, end) = at(
            end,
            (topology.cpus() * size_of::<usize>(), align_of::<usize>()),
        );
        let (banks, end) = at(end, (l.nbanks * sizes.bank.0, sizes.bank.1));
        (p.shared, p.table, p.banks, p.bytes) = (shared, table, banks, end);
        if !l.place_per_node(nodes, fallback, place_after) {
            l.place_together(usable, nodes, topology, place_after)?;
        }
        Ok(l)
    }

    /// The usable ranges cut where the node changes, each run a bank.
    fn split_banks(&mut self, usable: &[PhysRange], topology: &Topology) {
        for r in usable {
            let (mut s, e) = (r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT);
            while s < e {
                let (re, node) = topology.run_at(s, e);
                // Every run ends at a usable range's end or at a node range's start or
                // end: at most MAX_REGIONS + 2 * MAX_NODE_RANGES = MAX_BANKS of them.
                self.banks[self.nbanks] = PhysRange {
                    start: s << PAGE_SHIFT,
                    end: re << PAGE_SHIFT,
                };
                self.bank_node[self.nbanks] = node as u8;
                self.nbanks += 1;
                s = re;
            }
        }
    }

    /// Carves every node's piece on its own, each on the nearest node with room; false
    /// (and nothing carved) if some piece finds none.
    fn place_per_node(
        &mut self,
        nodes: usize,
        fallback: &[[u8; MAX_NODES]; MAX_NODES],
        place_after: Option<PhysAddr>,
    ) -> bool {
        for (n, order) in fallback.iter().enumerate().take(nodes) {
            let bytes = align_up(self.pieces[n].bytes, PAGE_SIZE);
            let found = order[..nodes].iter().find_map(|&home| {
                let home = home as NodeId;
                let banks = (0..self.nbanks)
                    .filter(|&b| self.bank_node[b] as NodeId == home)
                    .map(|b| self.banks[b]);
                self.find_room(banks, bytes, place_after)
                    .map(|start| (start, home))
            });
            let Some((start, home)) = found else {
                self.ncarved = 0;
                return false;
            };
            self.pieces[n].start = start;
            self.pieces[n].home = home;
            self.carved[self.ncarved] = PhysRange {
                start,
                end: start + bytes,
            };
            self.ncarved += 1;
        }
        // Each piece owns its whole carved range, so that the pieces add up to them.
        for (p, c) in self.pieces.iter_mut().zip(&self.carved[..nodes]) {
            p.bytes = c.size();
        }
        true
    }

    /// Every piece side by side in one area, placed as one: the old layout.
    fn place_together(
        &mut self,
        usable: &[PhysRange],
        nodes: usize,
        topology: &Topology,
        place_after: Option<PhysAddr>,
    ) -> Result<(), InitError> {
        let mut offsets = [0u64; MAX_NODES];
        let mut total = 0;
        for (off, p) in offsets.iter_mut().zip(&self.pieces[..nodes]) {
            *off = total;
            total = align_up(total + p.bytes, 64);
        }
        let bytes = align_up(total, PAGE_SIZE);
        let area = place_metadata(usable, bytes, place_after)
            .ok_or(InitError::NoRoomForMetadata { bytes })?;
        let home = topology.node_of(area.start).unwrap_or(0);
        // Each piece reaches the next one's start, the last the area's end, so that the
        // pieces add up to the area.
        for n in 0..nodes {
            let end = if n + 1 < nodes { offsets[n + 1] } else { bytes };
            let p = &mut self.pieces[n];
            (p.start, p.bytes, p.home) = (area.start + offsets[n], end - offsets[n], home);
        }
        self.carved[0] = area;
        self.ncarved = 1;
        Ok(())
    }

    /// Where in `banks` `bytes` fit, clear of what is carved already: after `place_after`
    /// on a 2 MiB boundary if anywhere, else at the start of the largest bank with room
    /// (or right after a piece already in it).
    fn find_room(
        &self,
        banks: impl Iterator<Item = PhysRange> + Clone,
        bytes: u64,
        place_after: Option<PhysAddr>,
    ) -> Option<PhysAddr> {
        let fits = |start: u64, r: &PhysRange| {
            let end = start.checked_add(bytes)?;
            let clear = self
                .carved()
                .iter()
                .all(|c| end <= c.start || c.end <= start);
            (start >= r.start && end <= r.end && clear).then_some(start)
        };
        // Candidate starts in `r`: its start (or `after`), and the end of each piece in it.
        let starts = |r: PhysRange, after: u64, align: u64| {
            let ends = self
                .carved()
                .iter()
                .map(|c| c.end)
                .filter(move |&e| e > r.start && e < r.end);
            core::iter::once(r.start)
                .chain(ends)
                .map(move |s| align_up(s.max(after), align))
        };
        if let Some(after) = place_after {
            let found = banks
                .clone()
                .find_map(|r| starts(r, after, 2 << 20).find_map(|s| fits(s, &r)));
            if found.is_some() {
                return found;
            }
        }
        // The largest bank with room; of equals, the last (as the old layout chose).
        banks
            .filter_map(|r| {
                starts(r, 0, PAGE_SIZE)
                    .find_map(|s| fits(s, &r))
                    .map(|s| (r.size(), s))
            })
            .max_by_key(|&(size, _)| size)
            .map(|(_, s)| s)
    }

    /// The banks the descriptor table covers.
    pub(crate) fn banks(&self) -> &[PhysRange] {
        &self.banks[..self.nbanks]
    }

    /// Where bank `b`'s descriptors go (a physical address).
    pub(crate) fn bank_frames(&self, b: usize) -> PhysAddr {
        self.pieces[self.bank_node[b] as NodeId].start + self.bank_offset[b]
    }

    /// Where CPU `cpu`'s page-list slot goes, on the node `node` the CPU is on.
    pub(crate) fn slot(&self, cpu: usize, node: NodeId) -> PhysAddr {
        let p = &self.pieces[node];
        p.start + p.slots + u64::from(self.cpu_rank[cpu]) * self.slot_bytes
    }

    /// Where node `n`'s zones go.
    pub(crate) fn node(&self, n: NodeId) -> PhysAddr {
        self.pieces[n].start + self.pieces[n].node
    }

    /// Where the shared state, the slot table and the bank table go.
    pub(crate) fn shared(&self) -> (PhysAddr, PhysAddr, PhysAddr) {
        let p = &self.pieces[0];
        (p.start + p.shared, p.start + p.table, p.start + p.banks)
    }

    /// The ranges taken from usable memory, page-aligned.
    pub(crate) fn carved(&self) -> &[PhysRange] {
        &self.carved[..self.ncarved]
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;

/// Where the metadata goes: see [`PageAllocator::new`].
pub(super) fn place_metadata(
    usable: &[PhysRange],
    bytes: u64,
    after: Option<PhysAddr>,
) -> Option<PhysRange> {
    let fits = |start: u64, r: &PhysRange| {
        start
            .checked_add(bytes)
            .filter(|&end| start >= r.start && end <= r.end)
            .map(|end| PhysRange { start, end })
    };
    if let Some(after) = after {
        let block = 2 << 20;
        let found = usable
            .iter()
            .find_map(|r| fits(align_up(r.start.max(after), block), r));
        if found.is_some() {
            return found;
        }
    }
    let largest = usable.iter().max_by_key(|r| r.size())?;
    fits(largest.start, largest)
}
