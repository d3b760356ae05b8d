//! One slab's bookkeeping, kept in its page descriptors as SLUB keeps it in `struct page`;
//! the free chain through the free objects' state words; and the intrusive lists that
//! chain slabs into a cache's full / partial / free lists. No byte of a slab is
//! management: its pages hold objects and colour space only.
//!
//! Where a slab's data lives (the page allocator leaves these words to the owner of an
//! allocated block, see `mm::frame`):
//!
//! | frames | word | holds |
//! |--------|------|-------|
//! | all | `owner` | the cache |
//! | all | owner bits | object 0's offset from the slab's base (a multiple of 8, < 2^19); in the head, bits 0–1 also the [`ListKind`] |
//! | head | `next` | next slab on the node's list (descriptor index, `NIL` at the end) |
//! | head | `private` | previous slab (bits 0–31), free-chain head (32–47), objects in use (48–63) |
//! | tails | `next`, `private` | the head's descriptor index, the slab's base address |
//!
//! Each object has a *state word*: its first word in tagged caches, a word past its slot in
//! the others (see `object`). While the object is free on its slab, the word holds a chain
//! link: the index of the next free object, encoded with the cache's [`ChainKey`] and the
//! object's own address, so that a stray write into a free object yields a word that is no
//! link of that object (but for a chance of 2^-48), which is reported instead of followed.
//! Chain links have their low three bits `001`; the other states' words (`object`) have
//! them `000` or `010`. All three are `address ^ secret` with at most the low
//! [`STATE_BITS`] changed, so one shift tells a word that may be a free state from one
//! that cannot be (see [`ChainKey::may_be_free`]).
//!
//! The chain and the counts change only under the cache's node lock.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::layout::CACHE_LINE;
use crate::mm::frame::{FrameTable, NIL, PageFrame};

/// End of a free chain.
pub const CHAIN_END: u16 = 0xFFFF;

/// Low bits of every chain link.
const LINK_MARK: usize = 0b001;

/// Which of the node's lists a slab is on. Never 0, so a slab's head always has owner
/// bits set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum ListKind {
    Full = 1,
    Partial = 2,
    Free = 3,
}

/// Bits of a state word that differ between an object's array word, its chain links and
/// its ACTIVE word: the successor (bits 3–18) and the mark (bits 0–2).
const STATE_BITS: u32 = 19;

/// A cache's secret, which every state word of its objects is encoded with (array word,
/// chain links, ACTIVE word: `object`), and whether new slabs chain their objects in a
/// shuffled order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainKey {
    secret: usize,
    shuffle: bool,
}

impl ChainKey {
    /// A key from `seed` (any entropy: rng-seed, RDRAND, the cycle counter).
    pub fn new(seed: u64, shuffle: bool) -> ChainKey {
        let mixed = (seed ^ (seed >> 29) ^ (seed >> 47)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ChainKey {
            // Low bits 0, so that the marks decide the low bits (objects are 8-aligned).
            // The top bit keeps every state word unequal to 0 (what allocation leaves in
            // a tagged object's word) and to any user-space or low kernel address.
            secret: (mixed as usize | 1 << (usize::BITS - 1)) & !7,
            shuffle,
        }
    }

    /// The secret itself: a tagged cache's tag (`SlabCache::tag`).
    #[inline(always)]
    pub fn secret(self) -> usize {
        self.secret
    }

    /// The word of free object `obj` while an array holds it.
    #[inline(always)]
    pub fn array_word(self, obj: usize) -> usize {
        obj ^ self.secret
    }

    /// The link word of free object `obj` whose successor is `next`: its array word with
    /// `next` and the mark mixed into the low 19 bits.
    #[inline]
    pub fn link(self, obj: usize, next: u16) -> usize {
        self.array_word(obj) ^ ((next as usize) << 3 | LINK_MARK)
    }

    /// The successor that link word `w` of object `obj` names, or `None` when `w` is no
    /// link of `obj` (it differs from one in a bit outside the successor's).
    #[inline(always)]
    pub fn successor(self, obj: usize, w: usize) -> Option<u16> {
        let d = w ^ self.array_word(obj);
        (d & !(0xFFFF << 3) == LINK_MARK).then_some((d >> 3) as u16)
    }

    /// Whether `w` may be one of `obj`'s free-state words (array word or chain link; the
    /// ACTIVE word passes too). False means it is neither: what the free fast path of a
    /// tagged cache needs to know, in one compare. True leaves the exact answer to
    /// [`ChainKey::successor`] and the array word.
    #[inline(always)]
    pub fn may_be_free(secret: usize, obj: usize, w: usize) -> bool {
        (w ^ obj ^ secret) >> STATE_BITS == 0
    }
}

/// Where a cache's objects and their state words sit in a slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Objects per slab.
    pub num: u32,
    pub stride: u32,
    /// Offset of the state word from the object's start.
    pub fp: u32,
}

/// A live slab, seen through its head descriptor. Every method that changes the chain,
/// the counts or the links is called under the cache's node lock.
#[derive(Clone, Copy)]
pub struct Slab<'a> {
    head: &'a PageFrame,
    /// The head's descriptor index.
    pub index: u32,
    /// Virtual address of the slab's first page.
    pub base: usize,
    /// Address of object 0.
    pub s_mem: usize,
    shape: Shape,
}

impl PartialEq for Slab<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.index == o.index
    }
}

impl core::fmt::Debug for Slab<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "slab {:#x} (frame {})", self.base, self.index)
    }
}

impl<'a> Slab<'a> {
    /// The slab whose head descriptor is `head` (index `index`) at virtual address `base`.
    ///
    /// # Safety
    /// `head` must head a live slab of the cache whose objects have `shape`, or be about
    /// to (see [`Slab::format`]).
    #[inline]
    pub unsafe fn at(head: &'a PageFrame, index: u32, base: usize, shape: Shape) -> Slab<'a> {
        Slab {
            head,
            index,
            base,
            s_mem: base + (head.owner_bits() & !7) as usize,
            shape,
        }
    }

    /// Writes the bookkeeping of a fresh slab into its head and chains all its objects —
    /// in index order, or, when the key says so, in an order drawn from `seed`: a random
    /// start and a random step coprime with `num` (neither 1 nor `num - 1` where another
    /// exists), so that the next object is not predictable. Object 0 goes `offset` bytes past `base`. Tail frames are the
    /// caller's (`SlabCache::grow`).
    ///
    /// # Safety
    /// `head` must head the fresh block at `base`, large enough for `offset` plus `num`
    /// objects of `shape`, which nobody else can reach yet.
    pub unsafe fn format(
        head: &'a PageFrame,
        index: u32,
        base: usize,
        offset: usize,
        shape: Shape,
        key: ChainKey,
        seed: u64,
    ) -> Slab<'a> {
        debug_assert!(offset.is_multiple_of(8) && offset < 1 << 19);
        let num = shape.num as usize;
        let (start, step) = if key.shuffle && num > 1 {
            // Not 1 or num - 1, which chain the slab in address order (or its reverse)
            // and would be a shuffle only in name; small slabs with no other coprime step
            // keep 1.
            let step = (2..num - 1)
                .cycle()
                .skip((seed >> 16) as usize % num)
                .find(|&s| gcd(s, num) == 1)
                .unwrap_or(1);
            (seed as usize % num, step)
        } else {
            (0, 1)
        };
        head.set_owner_bits(offset as u32 | ListKind::Free as u32);
        head.set_next(NIL);
        // SAFETY: as the caller promised.
        let slab = unsafe { Slab::at(head, index, base, shape) };
        slab.set_meta(NIL, start as u16, 0);
        let mut i = start;
        for k in 0..num {
            // i and step are below num, so one subtraction wraps (no division per object).
            let mut n = i + step;
            if n >= num {
                n -= num;
            }
            let next = if k + 1 == num { CHAIN_END } else { n as u16 };
            slab.word(i).store(key.link(slab.object(i), next), Relaxed);
            i = n;
        }
        slab
    }

    /// Address of object `i`.
    #[inline]
    pub fn object(self, i: usize) -> usize {
        self.s_mem + i * self.shape.stride as usize
    }

    /// Whether `obj`, an object start of the slab's cache, is one of this slab's.
    #[inline]
    pub fn holds(self, obj: usize) -> bool {
        obj.wrapping_sub(self.s_mem) < self.num() * self.shape.stride as usize
    }

    /// The state word of object `i` (< `num`).
    #[inline]
    pub fn word(self, i: usize) -> &'a AtomicUsize {
        debug_assert!(i < self.num());
        let at = self.object(i) + self.shape.fp as usize;
        // SAFETY: object i lies in this live slab and its state word within its stride
        // (fp + 8 ≤ stride), 8-aligned (s_mem, stride and fp are multiples of 8). The
        // word is the allocator's while the object is free; when the user's (its first
        // word, handed out), a racing access is the user's bug, which the atomic keeps
        // from being undefined behaviour on our side.
        unsafe { AtomicUsize::from_ptr(at as *mut usize) }
    }

    #[inline]
    pub fn num(self) -> usize {
        self.shape.num as usize
    }

    /// (prev, free, inuse), from the head's `private`.
    #[inline]
    fn meta(self) -> (u32, u16, u16) {
        let w = self.head.private() as u64;
        (w as u32, (w >> 32) as u16, (w >> 48) as u16)
    }

    #[inline]
    fn set_meta(self, prev: u32, free: u16, inuse: u16) {
        let w = u64::from(prev) | u64::from(free) << 32 | u64::from(inuse) << 48;
        self.head.set_private(w as usize)
    }

    #[inline]
    pub fn inuse(self) -> usize {
        self.meta().2 as usize
    }

    #[inline]
    pub fn has_free(self) -> bool {
        self.meta().1 != CHAIN_END
    }

    pub fn list(self) -> ListKind {
        match self.head.owner_bits() & 3 {
            1 => ListKind::Full,
            2 => ListKind::Partial,
            _ => ListKind::Free,
        }
    }

    fn set_list(self, kind: ListKind) {
        self.head
            .set_owner_bits(self.head.owner_bits() & !3 | kind as u32)
    }

    /// The objects on the free chain, in chain order, until `f` returns false; `None` if
    /// the chain holds a word that is no link or is longer than the slab (a loop).
    pub fn walk_chain(self, key: ChainKey, mut f: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut i = self.meta().1;
        let mut n = 0;
        while i != CHAIN_END {
            if i as usize >= self.num() || n > self.num() {
                return None;
            }
            n += 1;
            if !f(i as usize) {
                break;
            }
            i = key.successor(self.object(i as usize), self.word(i as usize).load(Relaxed))?;
        }
        Some(n)
    }

    /// Calls `f` with one address in each cache line that holds a state word, in address
    /// order: what a refill prefetches before it walks the chain (see `alloc`).
    pub fn word_lines(self, mut f: impl FnMut(usize)) {
        let first = self.word(0).as_ptr() as usize;
        let last = self.word(self.num() - 1).as_ptr() as usize;
        // A step of a line meets every line between once; a longer stride, every word.
        let step = (self.shape.stride as usize).max(CACHE_LINE);
        let mut at = first;
        while at <= last {
            f(at);
            at += step;
        }
        // The last word's line, when the steps ended in a line before it.
        if (at - step) / CACHE_LINE != last / CACHE_LINE {
            f(last);
        }
    }

    /// Length of the free chain (see [`Slab::walk_chain`]). For `validate`.
    pub fn chain_len(self, key: ChainKey) -> Option<usize> {
        self.walk_chain(key, |_| true)
    }

    /// Gives the head's words back to the page allocator's use.
    pub fn clear(self) {
        self.head.set_owner_bits(0);
        self.head.set_next(NIL);
        self.head.set_private(NIL as usize);
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A slab whose chain head and count sit in registers while a refill or flush takes or
/// puts a run of its objects under the node lock; they are written back once, when the
/// cursor is dropped (or [`SlabCursor::finish`]ed, before any list operation, which
/// reads and writes the same word).
pub struct SlabCursor<'a> {
    slab: Slab<'a>,
    prev: u32,
    free: u16,
    inuse: u16,
}

impl<'a> Slab<'a> {
    /// Opens the slab for a run of takes or puts.
    #[inline]
    pub fn cursor(self) -> SlabCursor<'a> {
        let (prev, free, inuse) = self.meta();
        SlabCursor {
            slab: self,
            prev,
            free,
            inuse,
        }
    }
}

impl<'a> SlabCursor<'a> {
    #[inline]
    pub fn slab(&self) -> Slab<'a> {
        self.slab
    }

    /// Takes the first free object off the chain: `Ok(Some(index))`, `Ok(None)` when the
    /// chain is empty, or `Err(lost)` when the object's state word is no link of it
    /// (damaged while free). Then the slab keeps the objects it has handed out and stops
    /// handing out more: its chain is cut and the `lost` objects still on it count as in
    /// use, so nothing follows the bad link. The caller gives a taken object its next
    /// state.
    #[inline]
    pub fn take(&mut self, key: ChainKey) -> Result<Option<usize>, usize> {
        if self.free == CHAIN_END {
            return Ok(None);
        }
        let i = self.free as usize;
        let s = self.slab;
        match key.successor(s.object(i), s.word(i).load(Relaxed)) {
            Some(n) if n == CHAIN_END || (n as usize) < s.num() => {
                self.free = n;
                self.inuse += 1;
                Ok(Some(i))
            }
            _ => {
                let lost = s.num() - self.inuse as usize;
                self.free = CHAIN_END;
                self.inuse = s.shape.num as u16;
                Err(lost)
            }
        }
    }

    /// Puts object `i`, which the caller found out of the slab and free, back on the chain.
    #[inline]
    pub fn put(&mut self, i: usize, key: ChainKey) {
        let s = self.slab;
        s.word(i).store(key.link(s.object(i), self.free), Relaxed);
        self.free = i as u16;
        self.inuse -= 1;
    }

    /// Objects handed out or in arrays, counting this run.
    #[inline]
    pub fn inuse(&self) -> usize {
        self.inuse as usize
    }

    /// Writes the chain head and count back and returns the slab.
    #[inline]
    pub fn finish(self) -> Slab<'a> {
        self.slab
    }
}

impl Drop for SlabCursor<'_> {
    #[inline]
    fn drop(&mut self) {
        self.slab.set_meta(self.prev, self.free, self.inuse);
    }
}

/// An intrusive, `NIL`-terminated doubly-linked list of slabs, linked through their head
/// descriptors by index.
pub struct SlabList {
    head: u32,
    len: usize,
}

impl SlabList {
    pub const fn new() -> SlabList {
        SlabList { head: NIL, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The head descriptor index of the first slab.
    pub fn first(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Adds a slab that is on no list.
    pub fn push(&mut self, t: &FrameTable, s: Slab<'_>, kind: ListKind) {
        let (_, free, inuse) = s.meta();
        s.set_meta(NIL, free, inuse);
        s.head.set_next(self.head);
        s.set_list(kind);
        if self.head != NIL {
            set_prev(t.frame(self.head), s.index);
        }
        self.head = s.index;
        self.len += 1;
    }

    /// Removes `s`, which must be on this list.
    pub fn remove(&mut self, t: &FrameTable, s: Slab<'_>) {
        let (prev, next) = (s.meta().0, s.head.next());
        if prev == NIL {
            self.head = next;
        } else {
            t.frame(prev).set_next(next);
        }
        if next != NIL {
            set_prev(t.frame(next), prev);
        }
        self.len -= 1;
    }

    /// Calls `f` with the head index of every slab; `f` must not change the list.
    pub fn for_each(&self, t: &FrameTable, mut f: impl FnMut(u32)) {
        let mut i = self.head;
        while i != NIL {
            f(i);
            i = t.frame(i).next();
        }
    }
}

/// Sets the `prev` link in head descriptor `f`, keeping its chain head and count.
fn set_prev(f: &PageFrame, prev: u32) {
    let w = f.private() as u64;
    f.set_private((w & !0xFFFF_FFFF | u64::from(prev)) as usize)
}

impl Default for SlabList {
    fn default() -> Self {
        SlabList::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::frame::FrameState;
    use crate::mm::zone::ZoneKind;

    /// `word_lines` names every line that holds a state word, each once, and nothing
    /// outside the words' span: small strides (several words a line), a stride of one
    /// line, and large ones whose word sits at the end of the object.
    #[test]
    fn word_lines_meet_every_state_words_line_once() {
        let mem = vec![0u64; 4096];
        let base = (mem.as_ptr() as usize).next_multiple_of(CACHE_LINE * 8);
        let head = PageFrame::new(FrameState::Allocated, ZoneKind::Normal, 0);
        for (num, stride, fp) in [
            (170, 24, 0),
            (100, 40, 32),
            (64, 64, 0),
            (7, 576, 568),
            (1, 4096, 0),
        ] {
            let shape = Shape { num, stride, fp };
            // SAFETY: only addresses are computed; nothing is read or written through them.
            let slab = unsafe { Slab::at(&head, 0, base, shape) };
            let mut seen = Vec::new();
            slab.word_lines(|a| seen.push(a / CACHE_LINE));
            let mut lines: Vec<usize> = (0..slab.num())
                .map(|i| slab.word(i).as_ptr() as usize / CACHE_LINE)
                .collect();
            lines.dedup();
            assert_eq!(seen, lines, "{num} x {stride} (word at {fp})");
        }
    }
}
