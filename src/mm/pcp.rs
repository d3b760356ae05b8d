//! Per-CPU lists of free order-0 frames, after Linux's `per_cpu_pages`.
//!
//! Single-frame traffic — the slab layer's bread and butter — is served from the running
//! CPU's list without touching the zone lock. An empty list refills [`PCP_BATCH`] frames
//! from the zone in one lock hold; a list that reaches [`PCP_HIGH`] gives its
//! [`PCP_BATCH`] coldest frames back. Frames on a list are in state `PcpCached`: free for
//! users, invisible to buddy merging.

use super::zone::NR_ZONES;

/// Frames a list holds before it gives a batch back to the zone.
pub const PCP_HIGH: usize = 62;
/// Frames moved between a list and its zone at a time.
pub const PCP_BATCH: usize = 16;

/// One CPU's free frames for one zone, as descriptor indices; the top of the stack is the
/// most recently freed (cache-hot) frame.
pub struct PcpList {
    count: u32,
    frames: [u32; PCP_HIGH],
}

impl PcpList {
    pub const fn new() -> PcpList {
        PcpList {
            count: 0,
            frames: [0; PCP_HIGH],
        }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.len() == PCP_HIGH
    }

    #[inline]
    pub fn pop(&mut self) -> Option<u32> {
        self.count = self.count.checked_sub(1)?;
        Some(self.frames[self.count as usize])
    }

    /// Pushes a frame; the caller makes room first when the list is full.
    #[inline]
    pub fn push(&mut self, idx: u32) {
        self.frames[self.count as usize] = idx;
        self.count += 1;
    }

    /// Removes up to `n` of the coldest (oldest) frames, passing each to `sink`.
    pub fn take_cold(&mut self, n: usize, mut sink: impl FnMut(u32)) {
        let n = n.min(self.len());
        for &idx in &self.frames[..n] {
            sink(idx);
        }
        let len = self.len();
        self.frames.copy_within(n..len, 0);
        self.count -= n as u32;
    }
}

impl Default for PcpList {
    fn default() -> Self {
        PcpList::new()
    }
}

/// A CPU's lists, one per zone, under one per-CPU lock.
pub type PcpLists = [PcpList; NR_ZONES];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_order_and_cold_batches() {
        let mut l = PcpList::new();
        assert_eq!(l.pop(), None);
        for i in 0..10 {
            l.push(i);
        }
        assert_eq!(l.pop(), Some(9));
        let mut cold = Vec::new();
        l.take_cold(4, |i| cold.push(i));
        assert_eq!(cold, [0, 1, 2, 3]);
        assert_eq!(l.len(), 5);
        assert_eq!(l.pop(), Some(8));
        l.take_cold(100, |_| {});
        assert!(l.is_empty());
    }
}
