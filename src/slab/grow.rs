//! Moving slabs between the page allocator and a node's lists: `grow` formats a new slab
//! (constructors, debug state, its page descriptors naming the cache), `free_block`
//! returns objects to their slabs and settles each slab on the list its count calls for,
//! and `destroy_slab` runs destructors and gives a slab's pages back.
//!
//! Every function here runs with the node's lists locked: the `&mut Node` it takes comes
//! only out of that node's lock. Growing and destroying take the page allocator's locks
//! inside it (and, through `Backing`, `Kmem`'s reclaim, which only tries locks).

use core::sync::atomic::Ordering::Relaxed;

use super::header::{ListKind, Slab, SlabCursor, SlabList};
use super::{Backing, Node, SlabCache, SlabError};
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::mm::frame::{FrameTable, NIL};
use crate::mm::memmap::PAGE_SIZE;

impl Node {
    fn list(&mut self, kind: ListKind) -> &mut SlabList {
        match kind {
            ListKind::Full => &mut self.full,
            ListKind::Partial => &mut self.partial,
            ListKind::Free => &mut self.free,
        }
    }

    pub(super) fn move_to(&mut self, t: &FrameTable, s: Slab<'_>, to: ListKind) {
        let from = s.list();
        if from != to {
            self.list(from).remove(t, s);
            self.list(to).push(t, s, to);
        }
    }
}

impl<A: Arch> SlabCache<A> {
    /// Makes a new slab (on the free list of `node`, node `n`'s) from the page
    /// allocator: on several nodes, of node `n`'s pages alone (`Gfp::THIS_NODE`; the
    /// callers fall back to other nodes' lists, as Linux's `fallback_alloc`).
    // Inlined as it was before the node choice made it larger: out of line, the refill
    // loop around it took 1.6 % more instructions in the batch benchmark.
    #[inline(always)]
    pub(super) fn grow<'k>(
        &self,
        k: &'k impl Backing<A>,
        node: &mut Node,
        n: usize,
        gfp: Gfp,
    ) -> Result<Slab<'k>, SlabError> {
        let l = &self.geo().layout;
        let oom = SlabError::OutOfMemory { cache: self.name };
        let zone = self.gfp | (gfp.without(Gfp::ZERO).without(Gfp::DMA).without(Gfp::DMA32));
        let pa = self.slab_block(k, n, l.order, zone).map_err(|_| oom)?;
        let base = A::phys_to_virt(pa);
        // Colour: offsets 0, colour_off, ..., colours × colour_off, all within left_over.
        let colour = node.colour_next;
        node.colour_next = if colour >= l.colours { 0 } else { colour + 1 };
        // Object 0 sits past slot 0's left red zone (0 bytes without debugging).
        let offset = colour * l.colour_off + self.geo().debug.left;
        let t = k.pages().table();
        let (index, head) = t.frame_of(pa).expect("slab pages are managed frames");
        for p in 1..1u64 << l.order {
            let f = k
                .pages()
                .frame(pa + p * PAGE_SIZE)
                .expect("slab pages are managed frames");
            f.set_next(index);
            f.set_private(base);
            f.set_owner_bits(offset as u32);
        }
        // SAFETY: the block is fresh and ours, 2^order pages, which hold offset plus num
        // strides (colours fit in the left-over, SlabLayout).
        let slab = unsafe {
            Slab::format(
                head,
                index,
                base,
                offset,
                self.geo().shape(),
                self.key,
                base as u64 ^ A::cycles(),
            )
        };
        for i in 0..l.num {
            let obj = slab.object(i);
            if let Some(ctor) = self.ctor {
                ctor(obj as *mut u8);
            }
            if self.slow() {
                self.debug_init(obj);
            }
        }
        for p in 0..1u64 << l.order {
            let f = k.pages().frame(pa + p * PAGE_SIZE).expect("slab frame");
            f.set_owner(self as *const Self as usize);
        }
        debug_assert!(self.nodes() == 1 || head.node() == n);
        node.free_objects += l.num;
        node.slabs += 1;
        node.free.push(t, slab, ListKind::Free);
        Ok(slab)
    }

    /// A block for a new slab of node `n`: on several nodes, of that node's pages alone.
    #[inline]
    fn slab_block(
        &self,
        k: &impl Backing<A>,
        n: usize,
        order: u32,
        zone: Gfp,
    ) -> Result<crate::mm::PhysAddr, crate::mm::PageError> {
        if self.nodes() > 1 {
            k.slab_pages_on(n, order, zone | Gfp::THIS_NODE)
        } else {
            k.slab_pages(order, zone)
        }
    }

    /// Returns magazine objects to their slabs. A slab that becomes empty goes back to
    /// the page allocator when the node already holds more than `free_limit` free
    /// objects.
    pub(super) fn free_block(&self, k: &impl Backing<A>, node: &mut Node, objs: &[usize]) {
        // Objects freed together often share a slab: a run of them is put through one
        // cursor, and the slab found and settled once per run.
        let mut run: Option<SlabCursor<'_>> = None;
        for &obj in objs {
            let cur = match run.take() {
                Some(c) if c.slab().holds(obj) => run.insert(c),
                other => {
                    if let Some(c) = other {
                        self.settle(k, node, c.finish());
                    }
                    run.insert(self.locate_array_object(k, obj).cursor())
                }
            };
            let slab = cur.slab();
            let idx = self.index_in(slab, obj);
            debug_assert_eq!(slab.word(idx).load(Relaxed), self.array_word(obj));
            cur.put(idx, self.key);
            node.free_objects += 1;
        }
        if let Some(c) = run {
            self.settle(k, node, c.finish());
        }
    }

    /// Puts a slab that free_block returned objects to on the list its count calls for.
    /// Most runs leave a partial slab partial, which needs nothing more.
    #[inline(always)]
    fn settle(&self, k: &impl Backing<A>, node: &mut Node, slab: Slab<'_>) {
        if slab.inuse() != 0 && slab.list() == ListKind::Partial {
            return;
        }
        self.settle_move(k, node, slab)
    }

    /// [`SlabCache::settle`] for a slab that changes list. One that became empty goes
    /// back to the page allocator when the node already holds more than `free_limit`
    /// free objects.
    #[inline(never)]
    fn settle_move(&self, k: &impl Backing<A>, node: &mut Node, slab: Slab<'_>) {
        let t = k.pages().table();
        if slab.inuse() == 0 {
            if node.free_objects > node.free_limit {
                node.list(slab.list()).remove(t, slab);
                node.free_objects -= slab.num();
                self.destroy_slab(k, node, slab);
            } else {
                node.move_to(t, slab, ListKind::Free);
            }
        } else {
            node.move_to(t, slab, ListKind::Partial);
        }
    }

    /// Runs destructors and gives a slab, which is on no list, back to the pages.
    pub(super) fn destroy_slab(&self, k: &impl Backing<A>, node: &mut Node, slab: Slab<'_>) {
        let l = &self.geo().layout;
        if let Some(dtor) = self.dtor {
            for i in 0..l.num {
                dtor(slab.object(i) as *mut u8);
            }
        }
        let pa = A::virt_to_phys(slab.base);
        for p in 0..1u64 << l.order {
            let f = k.pages().frame(pa + p * PAGE_SIZE).expect("slab frame");
            f.set_owner(0);
            f.set_owner_bits(0);
            if p > 0 {
                f.set_next(NIL);
                f.set_private(NIL as usize);
            }
        }
        node.slabs -= 1;
        slab.clear();
        // SAFETY: grow took this block for the slab, which is on no list and holds no
        // object: nothing reaches it after this.
        unsafe { k.pages().free_pages(pa, l.order) }.expect("a slab is a live page block");
    }
}
