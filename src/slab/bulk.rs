//! Bulk allocation and free of a [`SlabCache`] (SLUB's `kmem_cache_alloc_bulk` and
//! `kmem_cache_free_bulk`): one entry into the CPU's magazines for a whole batch, whole
//! magazines from the depot, and the rest straight off the slabs in runs — not one trip
//! through the fast path per object.

use core::sync::atomic::Ordering::Relaxed;

use super::object::s_mem_of;
use super::{Backing, SlabCache, SlabError};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::frame::{PAGE_SHIFT, PageFrame};

impl<A: Arch> SlabCache<A> {
    /// Fills `out` with objects, all or nothing: on failure every object taken is given
    /// back and `out` holds nothing of ours.
    pub(crate) fn alloc_bulk(
        &self,
        k: &impl Backing<A>,
        gfp: Gfp,
        out: &mut [*mut u8],
    ) -> Result<(), SlabError> {
        if self.slow() || k.failslab_armed() {
            return self.alloc_each(k, gfp, out);
        }
        let tag = self.tag();
        let mut got = 0;
        let taken = {
            let mut m = self.cpu.local();
            loop {
                let run = m.take_newest(out.len() - got);
                for (o, &obj) in out[got..].iter_mut().zip(run.iter().rev()) {
                    self.mark_active(obj, tag);
                    *o = obj as *mut u8;
                }
                got += run.len();
                if got == out.len() {
                    break Ok(());
                }
                let local = m.node();
                if m.swap_for_alloc() || m.trade_empty(&mut self.depot(local).lock()) {
                    continue;
                }
                // What the magazines lack comes straight off the slabs, not through them:
                // the CPU's node's, else the nearest other node's.
                let want = out.len() - got;
                let mut put = |obj: usize| {
                    self.mark_active(obj, tag);
                    out[got] = obj as *mut u8;
                    got += 1;
                };
                let mut node = self.node(local).lock();
                let r = self.take_from_slabs(k, &mut node, local, want, gfp, &mut put);
                drop(node);
                let r = match r {
                    Err(e) if self.nodes() > 1 => {
                        self.take_elsewhere(k, local, want, gfp, put).map_err(|_| e)
                    }
                    r => r,
                };
                if let Err(e) = r {
                    break Err(e);
                }
            }
        };
        if let Err(e) = taken {
            for &obj in &out[..got] {
                let obj = obj as usize;
                self.state_word(obj, tag)
                    .store(self.array_word(obj), Relaxed);
                self.push_freed(k, None, obj);
            }
            return Err(e);
        }
        if gfp.contains(Gfp::ZERO) {
            for &obj in out.iter() {
                // SAFETY: the object is ours now and `object_size` bytes long.
                unsafe { core::ptr::write_bytes(obj, 0, self.object_size) };
            }
        }
        Ok(())
    }

    /// [`SlabCache::alloc_bulk`] for caches whose objects take the checked path.
    fn alloc_each(
        &self,
        k: &impl Backing<A>,
        gfp: Gfp,
        out: &mut [*mut u8],
    ) -> Result<(), SlabError> {
        for i in 0..out.len() {
            match self.alloc(k, gfp) {
                Ok(p) => out[i] = p.as_ptr(),
                Err(e) => {
                    for &obj in &out[..i] {
                        let frame = k
                            .pages()
                            .frame(A::virt_to_phys(obj as usize))
                            .expect("an object lies in a slab");
                        self.free(k, frame, obj as usize)
                            .expect("an object just allocated is live");
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Frees the leading objects of `objs` that are live objects of this cache on its
    /// fast path (as [`SlabCache::free_fast`] checks them), under one entry into this
    /// CPU's magazines, and stops at the first that is not (null, another cache's, not
    /// live, or a cache whose frees take the checked path): the caller frees that one
    /// the checked way. `frame_of` finds an address's page descriptor. Returns how many
    /// it freed.
    pub(crate) fn free_run<'k>(
        &self,
        k: &impl Backing<A>,
        objs: &[*mut u8],
        frame_of: impl Fn(usize) -> Option<&'k PageFrame>,
    ) -> usize {
        let me = self as *const Self as usize;
        let mut m = self.cpu.local();
        // Objects freed together mostly share pages: the last page's slab start and
        // descriptor are kept.
        let mut last: Option<(usize, usize, &PageFrame)> = None;
        for (n, &obj) in objs.iter().enumerate() {
            let obj = A::untag(obj as usize);
            let page = obj >> PAGE_SHIFT;
            let slab = match last {
                Some((p, s_mem, frame)) if p == page => Some((s_mem, frame)),
                _ => frame_of(obj)
                    .filter(|f| f.owner() == me)
                    .map(|f| (s_mem_of(f, obj), f)),
            };
            last = slab.map(|(s, frame)| (page, s, frame));
            let live = slab.and_then(|(s, _)| self.live_at(s, obj));
            let (Some(live), Some((_, frame))) = (live, slab) else {
                return n;
            };
            live.claim();
            self.retag_freed(obj);
            if self.nodes() > 1 {
                // Objects of another node go to their alien batch, never into this CPU's
                // magazines. A slab lies on one node: its page descriptor's node is the
                // object's home, with no lookup.
                let home = frame.node();
                if home != m.node() {
                    self.free_alien(k, &mut m, home, obj);
                    continue;
                }
            }
            if !m.try_push(obj) {
                self.make_room(k, &mut m);
                m.try_push(obj);
            }
        }
        objs.len()
    }
}
