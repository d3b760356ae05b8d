//! One slab's management data: the header and its `bufctl` free-index list, and the
//! intrusive lists that chain slabs into a cache's full / partial / free lists.
//!
//! `bufctl[i]` says where object `i` is:
//! - a value below [`MAX_OBJS`](super::layout::MAX_OBJS) or [`BUFCTL_END`]: free in the
//!   slab, and the value is the index of the next free object (the seeds' `bufctl` chain);
//! - [`BUFCTL_ACTIVE`]: handed out to a user;
//! - [`BUFCTL_CACHED`]: free, but held in a per-CPU or shared array.
//!
//! Chain links are stored encoded with the cache's [`ChainKey`] mixed with the entry's
//! index, and checked when popped: a stray write into the management area yields an
//! out-of-range link, which is reported instead of followed. Encoded links stay below
//! 0x8000 and an encoded end mark has its top bit set and low bits `11`, so neither can
//! pass for ACTIVE or CACHED.
//!
//! The chain and the header's counts change only under the cache's node lock. The
//! ACTIVE ↔ CACHED moves happen on the lock-free fast paths, one `u16` each, so the
//! entries are atomics; a free of an object that is not ACTIVE is a double free (or a
//! free of something never allocated) and is refused before anything changes. Tagged
//! caches never use ACTIVE: their entries say only chain or CACHED (out of the slab), and
//! the object's first word tells handed out from held in an array (see `cache`).

use core::ptr;
use core::sync::atomic::{AtomicU16, Ordering::Relaxed};

use super::layout::SLAB_HEADER;

pub const BUFCTL_END: u16 = 0xFFFF;
pub const BUFCTL_ACTIVE: u16 = 0xFFFE;
pub const BUFCTL_CACHED: u16 = 0xFFFD;

/// Which of the node's lists a slab is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum ListKind {
    Full,
    Partial,
    Free,
}

/// A slab's header; `num` bufctl entries follow it in memory.
#[repr(C)]
pub struct Slab {
    next: *mut Slab,
    prev: *mut Slab,
    /// Address of object 0.
    pub s_mem: usize,
    /// Virtual address of the slab's first page.
    pub base: usize,
    /// Objects not free in the chain (handed out or held in arrays).
    pub inuse: u32,
    /// Objects in the slab.
    pub num: u32,
    /// Head of the free chain.
    free: u16,
    pub list: ListKind,
    _pad: [u8; 5],
}

const _: () = assert!(core::mem::size_of::<Slab>() == SLAB_HEADER);

/// A cache's secret for encoding chain links, and whether new slabs chain their objects
/// in a shuffled order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainKey {
    secret: u16,
    shuffle: bool,
}

impl ChainKey {
    /// A key from `seed` (any entropy: rng-seed, RDRAND, the cycle counter).
    pub fn new(seed: u64, shuffle: bool) -> ChainKey {
        let mixed = seed ^ (seed >> 29) ^ (seed >> 47);
        ChainKey {
            secret: (mixed as u16) & 0x7FFC,
            shuffle,
        }
    }

    /// The mask for entry `i`: below 0x8000, a multiple of 4.
    #[inline]
    fn mask(self, i: usize) -> u16 {
        self.secret.wrapping_add((i as u16).wrapping_mul(0x9E34)) & 0x7FFC
    }

    #[inline]
    fn encode(self, i: usize, next: u16) -> u16 {
        next ^ self.mask(i)
    }
}

impl Slab {
    /// Writes a header with all `num` objects on the free chain at `mgmt` — in index
    /// order, or, when the key says so, in an order drawn from `seed`: a random start and
    /// a random step coprime with `num`, so that the next object is not predictable.
    ///
    /// # Safety
    /// `mgmt` must be writable for `mgmt_bytes(num)` bytes, 8-aligned, and unused; the
    /// result must only be used under the owning cache's node lock (see [`SlabPtr`]).
    pub unsafe fn init(
        mgmt: *mut Slab,
        base: usize,
        s_mem: usize,
        num: usize,
        key: ChainKey,
        seed: u64,
    ) -> SlabPtr {
        let (start, step) = if key.shuffle && num > 1 {
            let step = (1..num)
                .cycle()
                .skip((seed >> 16) as usize % num)
                .find(|&s| gcd(s, num) == 1)
                .unwrap_or(1);
            (seed as usize % num, step)
        } else {
            (0, 1)
        };
        // SAFETY: the caller gave us room for the header and num entries.
        unsafe {
            mgmt.write(Slab {
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                s_mem,
                base,
                inuse: 0,
                num: num as u32,
                free: start as u16,
                list: ListKind::Free,
                _pad: [0; 5],
            });
            let bufctl = mgmt.add(1).cast::<AtomicU16>();
            let mut i = start;
            for k in 0..num {
                let next = if k + 1 == num {
                    BUFCTL_END
                } else {
                    ((i + step) % num) as u16
                };
                bufctl.add(i).write(AtomicU16::new(key.encode(i, next)));
                i = (i + step) % num;
            }
        }
        SlabPtr(mgmt)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A live slab. Raw rather than `&mut Slab` because the bufctl entries past the header
/// are shared with lock-free fast paths on other CPUs; every method that changes the
/// header or the chain is called under the cache's node lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SlabPtr(*mut Slab);

impl SlabPtr {
    /// # Safety
    /// `p` must come from [`Slab::init`] and the slab must still be live.
    #[inline]
    pub unsafe fn from_raw(p: *mut Slab) -> SlabPtr {
        SlabPtr(p)
    }

    #[inline]
    pub fn as_raw(self) -> *mut Slab {
        self.0
    }

    /// Entry `i` (< `num`).
    #[inline]
    pub fn bufctl(self, i: usize) -> &'static AtomicU16 {
        debug_assert!(i < self.num());
        // SAFETY: `init` wrote `num` entries right after the header, in the same
        // allocation, and the slab is live (type invariant); i < num. The 'static is a
        // white lie bounded by the slab's life, which callers never outlive.
        unsafe { &*self.0.add(1).cast::<AtomicU16>().add(i) }
    }

    #[inline]
    pub fn num(self) -> usize {
        // SAFETY: live slab (type invariant); `num` never changes after init.
        unsafe { (*self.0).num as usize }
    }

    #[inline]
    pub fn s_mem(self) -> usize {
        // SAFETY: as for `num`.
        unsafe { (*self.0).s_mem }
    }

    #[inline]
    pub fn base(self) -> usize {
        // SAFETY: as for `num`.
        unsafe { (*self.0).base }
    }

    #[inline]
    pub fn inuse(self) -> usize {
        // SAFETY: live slab; read under the node lock.
        unsafe { (*self.0).inuse as usize }
    }

    #[inline]
    pub fn list(self) -> ListKind {
        // SAFETY: as for `inuse`.
        unsafe { (*self.0).list }
    }

    #[inline]
    pub fn has_free(self) -> bool {
        // SAFETY: as for `inuse`.
        unsafe { (*self.0).free != BUFCTL_END }
    }

    /// Takes the first free object off the chain and marks it CACHED; returns its index,
    /// or `None` when the link it found is out of range (corrupted management data). Then
    /// the slab keeps the objects it has handed out and stops handing out more: its chain
    /// is cut and the rest of its objects count as in use, so nothing follows the bad link.
    pub fn take(self, key: ChainKey) -> Option<usize> {
        // SAFETY: live slab, node lock held by the caller; has_free() was checked.
        unsafe {
            let i = (*self.0).free as usize;
            let e = self.bufctl(i);
            let next = key.encode(i, e.load(Relaxed));
            if next != BUFCTL_END && next as usize >= self.num() {
                (*self.0).free = BUFCTL_END;
                (*self.0).inuse = (*self.0).num;
                return None;
            }
            (*self.0).free = next;
            e.store(BUFCTL_CACHED, Relaxed);
            (*self.0).inuse += 1;
            Some(i)
        }
    }

    /// Puts object `i`, which the caller found CACHED, back on the chain.
    pub fn put(self, i: usize, key: ChainKey) {
        // SAFETY: live slab, node lock held by the caller.
        unsafe {
            self.bufctl(i).store(key.encode(i, (*self.0).free), Relaxed);
            (*self.0).free = i as u16;
            (*self.0).inuse -= 1;
        }
    }

    /// Length of the free chain, or `None` if it holds an out-of-range link or is longer
    /// than the slab (a loop). For `validate`.
    pub fn chain_len(self, key: ChainKey) -> Option<usize> {
        // SAFETY: live slab, node lock held by the caller.
        let mut i = unsafe { (*self.0).free };
        let mut n = 0;
        while i != BUFCTL_END {
            if i as usize >= self.num() || n > self.num() {
                return None;
            }
            n += 1;
            i = key.encode(i as usize, self.bufctl(i as usize).load(Relaxed));
        }
        Some(n)
    }
}

/// An intrusive, null-terminated doubly-linked list of slabs.
pub struct SlabList {
    head: *mut Slab,
    len: usize,
}

impl SlabList {
    pub const fn new() -> SlabList {
        SlabList {
            head: ptr::null_mut(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first(&self) -> Option<SlabPtr> {
        (!self.head.is_null()).then_some(SlabPtr(self.head))
    }

    /// Adds a slab that is on no list.
    pub fn push(&mut self, s: SlabPtr, kind: ListKind) {
        let s = s.0;
        // SAFETY: s is live (SlabPtr invariant); the head, if any, is a live member.
        unsafe {
            (*s).prev = ptr::null_mut();
            (*s).next = self.head;
            (*s).list = kind;
            if !self.head.is_null() {
                (*self.head).prev = s;
            }
        }
        self.head = s;
        self.len += 1;
    }

    /// Removes `s`, which must be on this list.
    pub fn remove(&mut self, s: SlabPtr) {
        let s = s.0;
        // SAFETY: s and its neighbours are live members of this list.
        unsafe {
            let (prev, next) = ((*s).prev, (*s).next);
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
        self.len -= 1;
    }

    /// Calls `f` on every slab; `f` must not change the list.
    pub fn for_each(&self, mut f: impl FnMut(SlabPtr)) {
        let mut s = self.head;
        while !s.is_null() {
            f(SlabPtr(s));
            // SAFETY: members are live while on the list.
            s = unsafe { (*s).next };
        }
    }
}

impl Default for SlabList {
    fn default() -> Self {
        SlabList::new()
    }
}
