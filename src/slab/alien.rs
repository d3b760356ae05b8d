//! Alien batches (Linux SLAB's alien caches): per CPU and per other NUMA node, a few
//! objects of that node freed on the CPU, on their way home. A batch goes back to its
//! node's slabs in one pass under that node's lock when it fills, and on every drain of
//! the CPU (shrink, reap, reclaim), so a remote free takes a remote lock once per
//! [`ALIEN_MAX`] objects, and the freeing CPU's node never hands those objects out.
//!
//! Objects in a batch are free-but-cached, as in a magazine: their state word is the
//! array word, and double-free checks and validation look in the batches too.

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
