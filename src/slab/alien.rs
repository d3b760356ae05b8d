//! Alien batches (Linux SLAB's alien caches): per CPU and per other NUMA node, a few
//! objects of that node freed on the CPU, on their way home. A batch goes back to its
//! node's slabs in one pass under that node's lock when it fills, and on every drain of
//! the CPU (shrink, reap, reclaim), so a remote free takes a remote lock once per
//! [`ALIEN_MAX`] objects, and the freeing CPU's node never hands those objects out.
//!
//! Objects in a batch are free-but-cached, as in a magazine: their state word is the
//! array word, and double-free checks and validation look in the batches too.
//!
//! Locks: a batch is its CPU's, used under that CPU's slot; sending it home takes its
//! node's lists inside the slot (and never with another node's lists held).

use super::magazine::CpuMagazines;
use super::{Backing, Node, SlabCache};
use crate::arch::Arch;

/// Most objects an alien batch holds: Linux SLAB's alien limit.
pub const ALIEN_MAX: usize = 12;

/// One CPU's objects of one other node, freed and not yet home. Lives in its cache's
/// carved arrays and is used only through its CPU's slot.
#[repr(C)]
pub struct AlienBatch {
    len: usize,
    objs: [usize; ALIEN_MAX],
}

impl AlienBatch {
    /// An empty batch.
    pub const EMPTY: AlienBatch = AlienBatch {
        len: 0,
        objs: [0; ALIEN_MAX],
    };

    /// Adds `obj` unless the batch is full; returns whether it did.
    pub fn try_push(&mut self, obj: usize) -> bool {
        let Some(slot) = self.objs.get_mut(self.len) else {
            return false;
        };
        *slot = obj;
        self.len += 1;
        true
    }

    /// The objects held, oldest first.
    pub fn objects(&self) -> &[usize] {
        &self.objs[..self.len]
    }

    /// Empties the batch (the caller has put its objects elsewhere).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<A: Arch> SlabCache<A> {
    /// Puts `obj` (its word the array word), an object of node `home`'s slabs freed on
    /// the CPU whose magazines `m` are (of another node), in the CPU's alien batch for
    /// `home`; a full batch goes home first.
    pub(super) fn free_alien(
        &self,
        k: &impl Backing<A>,
        m: &mut CpuMagazines,
        home: usize,
        obj: usize,
    ) {
        if !m.alien(home).try_push(obj) {
            self.flush_alien(k, m, home);
            assert!(m.alien(home).try_push(obj), "a flushed batch is empty");
        }
    }

    /// Sends the CPU's alien batch for node `n` home, under that node's lock (the
    /// caller holds no node lock). Returns how many objects it held.
    fn flush_alien(&self, k: &impl Backing<A>, m: &mut CpuMagazines, n: usize) -> usize {
        let batch = m.alien(n);
        let held = batch.objects().len();
        if held > 0 {
            let mut node = self.node(n).lock();
            self.free_alien_batch(k, &mut node, batch);
        }
        held
    }

    /// Empties `batch`, of the node whose lists `node` are (locked), into its slabs.
    pub(super) fn free_alien_batch(
        &self,
        k: &impl Backing<A>,
        node: &mut Node,
        batch: &mut AlienBatch,
    ) {
        node.remote_frees += batch.objects().len();
        self.free_block(k, node, batch.objects());
        batch.clear();
    }

    /// Sends every alien batch of the CPU whose magazines `m` are home, one node's lock
    /// at a time (the caller holds none). Returns how many objects they held.
    pub(super) fn flush_aliens(&self, k: &impl Backing<A>, m: &mut CpuMagazines) -> usize {
        let (nodes, own) = (if self.nodes() > 1 { self.nodes() } else { 0 }, m.node());
        (0..nodes)
            .filter(|&n| n != own)
            .map(|n| self.flush_alien(k, m, n))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_up_to_its_limit_in_order() {
        let mut b = AlienBatch::EMPTY;
        for o in 1..=ALIEN_MAX {
            assert!(b.try_push(o * 8));
        }
        assert!(!b.try_push(0), "full");
        assert_eq!(b.objects().len(), ALIEN_MAX);
        assert_eq!(b.objects()[0], 8, "oldest first");
        b.clear();
        assert!(b.objects().is_empty());
    }
}
