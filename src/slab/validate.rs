//! `SlabCache::validate`: a walk over a cache — CPUs' magazines and alien batches, the
//! depots, every slab's free chain, count, list and node, and every object's red zones
//! and poison — that logs each inconsistency it finds.
//!
//! Locks: each CPU's slot is read as `info` reads it; each node's depot, then each node's
//! lists, is held in turn, one lock at a time.

use core::sync::atomic::Ordering::Relaxed;

use super::debug::Damage;
use super::header::ListKind;
use super::{Backing, SlabCache};
use crate::arch::Arch;

impl<A: Arch> SlabCache<A> {
    /// Walks the cache — CPUs' magazines, the depot's, every slab's free chain and
    /// every object's red zones and poison — reporting each inconsistency to the log.
    /// Returns how many it found.
    pub(crate) fn validate(&self, k: &impl Backing<A>) -> usize {
        let mut problems = 0;
        for cpu in 0..self.cpu.len() {
            let m = self.cpu.cpu(cpu);
            for &obj in m.loaded().iter().chain(m.previous()) {
                problems += self.validate_cached(k, obj, m.node(), "a CPU's magazine");
            }
            for (n, b) in m.aliens() {
                for &obj in b.objects() {
                    problems += self.validate_cached(k, obj, n, "an alien batch");
                }
            }
        }
        for n in 0..self.nodes() {
            let depot = self.depot(n).lock();
            for &obj in depot.full_objects().flatten() {
                problems += self.validate_cached(k, obj, n, "a depot");
            }
        }
        for n in 0..self.nodes() {
            problems += self.validate_node(k, n);
        }
        problems
    }

    /// [`SlabCache::validate`] for node `n`'s lists: every slab's chain, count, list and
    /// node, and every object.
    fn validate_node(&self, k: &impl Backing<A>, n: usize) -> usize {
        let t = k.pages().table();
        let node = self.node(n).lock();
        let mut problems = 0;
        let mut chained = 0;
        for (list, kind) in [
            (&node.full, ListKind::Full),
            (&node.partial, ListKind::Partial),
            (&node.free, ListKind::Free),
        ] {
            list.for_each(t, |i| {
                let s = self.slab_at(k, i);
                let (num, inuse) = (s.num(), s.inuse());
                if self.home_of(k, s.base) != n {
                    log::error!(
                        "validate {}: slab {:#x} of node {} is on node {n}'s lists",
                        self.name,
                        s.base,
                        self.home_of(k, s.base)
                    );
                    problems += 1;
                }
                match s.chain_len(self.key) {
                    None => {
                        self.report(s.s_mem, Damage::FreeList, 0, 0, 0, 0);
                        problems += 1;
                    }
                    Some(n) if n != num - inuse => {
                        log::error!(
                            "validate {}: slab {:#x}: {n} objects on its free chain, but {} free by its count",
                            self.name,
                            s.base,
                            num - inuse
                        );
                        problems += 1;
                    }
                    Some(n) => chained += n,
                }
                let fits = match kind {
                    ListKind::Full => inuse == num,
                    ListKind::Partial => inuse > 0 && inuse < num,
                    ListKind::Free => inuse == 0,
                };
                if !fits || s.list() != kind {
                    log::error!(
                        "validate {}: slab {:#x} with {inuse}/{num} in use is on the {kind:?} list",
                        self.name,
                        s.base
                    );
                    problems += 1;
                }
                for i in 0..num {
                    problems += self.validate_object(s, i);
                }
            });
        }
        if chained != node.free_objects {
            log::error!(
                "validate {}: {chained} objects on node {n}'s free chains, but it counts {}",
                self.name,
                node.free_objects
            );
            problems += 1;
        }
        problems
    }

    /// Checks an object found in an array: an object start of this cache holding the
    /// array word, of node `n`'s slabs.
    fn validate_cached(&self, k: &impl Backing<A>, obj: usize, n: usize, place: &str) -> usize {
        let frame = k.pages().frame(A::virt_to_phys(obj));
        let ok = frame.is_some_and(|f| {
            f.owner() == self as *const Self as usize
                && (self.nodes() == 1 || f.node() == n)
                && self
                    .locate(k, f, obj)
                    .is_ok_and(|(s, i)| s.word(i).load(Relaxed) == self.array_word(obj))
        });
        if !ok {
            log::error!(
                "validate {}: {place} holds {obj:#x}, which is not a free object of this cache",
                self.name
            );
        }
        usize::from(!ok)
    }
}
