//! Per-CPU lists of free blocks, after Linux's `per_cpu_pages`: one list per cached
//! order (0–3, the slab orders, and 9, the 2 MiB block — Linux caches the same orders —
//! plus the top order, [`MAX_ORDER`]: a top-order block never merges with anything, so
//! holding one on a CPU's list keeps no other block from coalescing).
//!
//! Small-block traffic — the slab layer's bread and butter — is served from the running
//! CPU's list without touching the zone lock. An empty list refills its batch of blocks
//! from the zone in one lock hold; a list that reaches its high mark gives its batch of
//! coldest blocks back. Block heads on a list are in state `PcpCached` with their order:
//! free for users, invisible to buddy merging.

use super::buddy::MAX_ORDER;
use super::numa::NodeId;
use super::zone::NR_ZONES;

/// Number of cached orders (lists per zone).
pub const NR_PCP_LISTS: usize = 6;

/// The order each list caches.
pub const PCP_ORDERS: [u32; NR_PCP_LISTS] = [0, 1, 2, 3, 9, MAX_ORDER];

/// Blocks each list holds before it gives a batch back to the zone: about 62 frames'
/// worth for the small orders, two 2 MiB blocks and one top-order block (enough for an
/// alloc/free pair not to reach the zone, few enough not to strand much memory).
const PCP_HIGH: [usize; NR_PCP_LISTS] = [62, 31, 15, 8, 2, 1];

/// Blocks moved between a list and its zone at a time.
const PCP_BATCH: [usize; NR_PCP_LISTS] = [16, 8, 4, 2, 1, 1];

/// Where each list's entries start in [`PcpLists::frames`].
const OFFSETS: [usize; NR_PCP_LISTS + 1] = {
    let mut o = [0; NR_PCP_LISTS + 1];
    let mut i = 0;
    while i < NR_PCP_LISTS {
        o[i + 1] = o[i] + PCP_HIGH[i];
        i += 1;
    }
    o
};

/// The list that caches `order`, if one does.
#[inline]
pub const fn pcp_list(order: u32) -> Option<usize> {
    match order {
        0..=3 => Some(order as usize),
        9 => Some(4),
        MAX_ORDER => Some(5),
        _ => None,
    }
}

/// One CPU's free blocks for one zone, list by list, as descriptor indices of block
/// heads; the top of each stack is the most recently freed (cache-hot) block.
pub struct PcpLists {
    count: [u8; NR_PCP_LISTS],
    frames: [u32; OFFSETS[NR_PCP_LISTS]],
}

impl PcpLists {
    pub const fn new() -> PcpLists {
        PcpLists {
            count: [0; NR_PCP_LISTS],
            frames: [0; OFFSETS[NR_PCP_LISTS]],
        }
    }

    /// Blocks on list `l`.
    pub fn len(&self, l: usize) -> usize {
        self.count[l] as usize
    }

    /// Frames held on all lists.
    pub fn frames_held(&self) -> u64 {
        (0..NR_PCP_LISTS)
            .map(|l| (self.len(l) as u64) << PCP_ORDERS[l])
            .sum()
    }

    pub fn is_empty(&self, l: usize) -> bool {
        self.count[l] == 0
    }

    pub fn is_full(&self, l: usize) -> bool {
        self.len(l) == PCP_HIGH[l]
    }

    /// How many blocks list `l` moves to or from its zone at a time.
    pub fn batch(l: usize) -> usize {
        PCP_BATCH[l]
    }

    #[inline]
    pub fn pop(&mut self, l: usize) -> Option<u32> {
        self.count[l] = self.count[l].checked_sub(1)?;
        let at = OFFSETS[l] + self.count[l] as usize;
        debug_assert!(at < OFFSETS[l + 1]);
        // SAFETY: count[l] ≤ PCP_HIGH[l] (pushes stop there), so the decremented count
        // indexes list l's part of `frames`, which ends at OFFSETS[l + 1] ≤ its length.
        Some(unsafe { *self.frames.get_unchecked(at) })
    }

    /// Pushes a block head; the caller makes room first when the list is full.
    #[inline]
    pub fn push(&mut self, l: usize, idx: u32) {
        assert!(self.try_push(l, idx), "pcp list {l} is full");
    }

    /// Pushes a block head unless the list is full; returns whether it did.
    #[inline]
    pub fn try_push(&mut self, l: usize, idx: u32) -> bool {
        let n = self.count[l] as usize;
        if n >= PCP_HIGH[l] {
            return false;
        }
        // SAFETY: n < PCP_HIGH[l], so OFFSETS[l] + n < OFFSETS[l + 1] ≤ frames' length.
        unsafe { *self.frames.get_unchecked_mut(OFFSETS[l] + n) = idx };
        self.count[l] += 1;
        true
    }

    /// Removes up to `n` of the coldest (oldest) blocks of list `l`, passing each to
    /// `sink`.
    pub fn take_cold(&mut self, l: usize, n: usize, mut sink: impl FnMut(u32)) {
        let len = self.len(l);
        let n = n.min(len);
        let list = &mut self.frames[OFFSETS[l]..OFFSETS[l] + len];
        for &idx in &list[..n] {
            sink(idx);
        }
        list.copy_within(n.., 0);
        self.count[l] -= n as u8;
    }
}

impl Default for PcpLists {
    fn default() -> Self {
        PcpLists::new()
    }
}

/// A CPU's lists, one set per zone of its node, under one per-CPU lock. Only frames of
/// `node` enter them, so a drain gives every block back to that node's zones.
pub struct PcpZones {
    /// The node whose frames the lists hold: the CPU's, from the topology.
    pub node: NodeId,
    lists: [PcpLists; NR_ZONES],
}

impl PcpZones {
    pub fn new(node: NodeId) -> PcpZones {
        PcpZones {
            node,
            lists: core::array::from_fn(|_| PcpLists::new()),
        }
    }
}

impl core::ops::Deref for PcpZones {
    type Target = [PcpLists; NR_ZONES];
    fn deref(&self) -> &Self::Target {
        &self.lists
    }
}

impl core::ops::DerefMut for PcpZones {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_order_and_cold_batches() {
        let mut l = PcpLists::new();
        assert_eq!(l.pop(0), None);
        for i in 0..10 {
            l.push(0, i);
        }
        l.push(1, 100);
        assert_eq!(l.pop(0), Some(9));
        let mut cold = Vec::new();
        l.take_cold(0, 4, |i| cold.push(i));
        assert_eq!(cold, [0, 1, 2, 3]);
        assert_eq!(l.len(0), 5);
        assert_eq!(l.pop(0), Some(8));
        l.take_cold(0, 100, |_| {});
        assert!(l.is_empty(0));
        assert_eq!(l.frames_held(), 2);
        assert_eq!(l.pop(1), Some(100));
    }

    #[test]
    fn lists_do_not_overlap() {
        let mut l = PcpLists::new();
        for list in 0..NR_PCP_LISTS {
            while !l.is_full(list) {
                l.push(list, list as u32);
            }
        }
        for list in 0..NR_PCP_LISTS {
            while let Some(i) = l.pop(list) {
                assert_eq!(i, list as u32);
            }
        }
        assert_eq!(pcp_list(9), Some(4));
        assert_eq!(pcp_list(4), None);
        assert!((0..NR_PCP_LISTS).all(|i| pcp_list(PCP_ORDERS[i]) == Some(i)));
    }
}
