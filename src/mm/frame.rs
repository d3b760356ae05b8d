//! Page descriptors: one 24-byte [`PageFrame`] per usable 4 KiB frame, and the
//! [`FrameTable`] that finds a frame's descriptor from its physical address in O(banks).
//!
//! Descriptors live in memory carved from the memory map at init, one array per bank (a
//! usable range of the normalised map, split where the NUMA node changes), each carved
//! from its bank's node's memory as Linux's per-node `mem_map` (`super::meta`), so holes
//! between banks cost nothing. A descriptor's *index* is what lists link by: banks number
//! their descriptors one after the other, from 0 for the first bank's first frame; a
//! `u32` keeps the links small and reaches 16 TiB of RAM. Index and address convert
//! through the bank, the first bank first: on most boards it is the only one.
//!
//! Layout of [`PageFrame`] (24 bytes, 0.59 % of the memory it describes; Linux's
//! `struct page` is 64 bytes, 1.56 %):
//!
//! | field     | bytes | meaning |
//! |-----------|-------|---------|
//! | `flags`   | 4 | bits 0–3 state, 4–5 zone, 6–8 NUMA node, 9–12 order of the block this frame heads; bits 13–31 the owner's while the block is allocated |
//! | `next`    | 4 | free-list link while the frame heads a free block, [`NIL`] at the end; the owner's while allocated |
//! | `private` | 8 | while free: the `prev` link; while allocated: the owner's data |
//! | `owner`   | 8 | back-pointer of the block's owner (slab cache, kmalloc) for O(1) free |
//!
//! A frame is never on a free list and owned at once, so the links and the owner's data
//! share words: the slab layer keeps a whole slab's bookkeeping in its frames (see
//! `slab::header`). An owner gives its bits of `flags` back as 0 before it frees the
//! block: a free compares the whole word, so a block whose owner bits are set is refused.
//!
//! Invariant: every frame is in exactly one block. The first frame of a block (its head)
//! is [`FrameState::Free`], [`FrameState::Allocated`] or [`FrameState::PcpCached`] and
//! carries the block's order; every other frame is [`FrameState::Tail`]. Frames the
//! allocator never hands out (the descriptor area itself) are [`FrameState::Reserved`].
//! Fields are atomics only so that shared references can mutate them: every write
//! happens under the lock that owns the frame's current state (zone lock, per-CPU list,
//! or the owner's lock), so `Relaxed` suffices except where noted.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use super::hot::{HOT_BASE, HotTable};
use super::memmap::{PAGE_SIZE, PhysRange};
use super::numa::NodeId;
use super::zone::ZoneKind;

/// Page shift: frame number = physical address >> `PAGE_SHIFT`.
pub const PAGE_SHIFT: u32 = 12;

/// End-of-list marker in `next`/`prev`.
pub const NIL: u32 = u32::MAX;

/// Most banks a frame table holds: one per usable range of the normalised map, plus one
/// per node range start or end that splits a usable range.
pub const MAX_BANKS: usize = super::memmap::MAX_REGIONS + 2 * super::numa::MAX_NODE_RANGES;

/// Where a frame is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum FrameState {
    /// Inside a block but not its head.
    Tail = 0,
    /// Head of a free buddy block, on its zone's free list.
    Free = 1,
    /// Head of a block handed out by the page allocator.
    Allocated = 2,
    /// Head of a block held in a per-CPU page list: free for users, not in the buddy lists.
    PcpCached = 3,
    /// Never handed out (holds kmem's own metadata).
    Reserved = 4,
}

/// The bits of a descriptor's flags that hold its [`FrameState`].
const STATE_MASK: u32 = 0xF;

impl FrameState {
    #[inline]
    fn from_bits(b: u32) -> FrameState {
        match b & STATE_MASK {
            1 => FrameState::Free,
            2 => FrameState::Allocated,
            3 => FrameState::PcpCached,
            4 => FrameState::Reserved,
            _ => FrameState::Tail,
        }
    }
}

/// A page descriptor. See the module doc for the layout and its invariants.
#[repr(C)]
pub struct PageFrame {
    flags: AtomicU32,
    next: AtomicU32,
    /// `prev` link while free, owner's data while allocated (module doc).
    private: AtomicUsize,
    owner: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<PageFrame>() == 24);

const ZONE_SHIFT: u32 = 4;
const NODE_SHIFT: u32 = 6;
const ORDER_SHIFT: u32 = 9;
const _: () = assert!(super::buddy::MAX_ORDER < 16 && super::numa::MAX_NODES <= 8);
/// The owner's bits of `flags`: 13–31.
const OWNER_SHIFT: u32 = 13;

const fn pack(state: FrameState, zone: ZoneKind, node: NodeId, order: u32) -> u32 {
    state as u32 | (zone as u32) << ZONE_SHIFT | (node as u32) << NODE_SHIFT | order << ORDER_SHIFT
}

/// The zone's and node's bits of a packed word, in place (neither changes after init, so
/// the hot paths carry these over rather than decode and re-encode them).
const ZONE_BITS: u32 = 3 << ZONE_SHIFT | 7 << NODE_SHIFT;

impl PageFrame {
    /// A fresh descriptor for a frame in `zone` of `node`.
    pub(crate) const fn new(state: FrameState, zone: ZoneKind, node: NodeId) -> PageFrame {
        PageFrame {
            flags: AtomicU32::new(pack(state, zone, node, 0)),
            next: AtomicU32::new(NIL),
            private: AtomicUsize::new(NIL as usize),
            owner: AtomicUsize::new(0),
        }
    }

    #[inline]
    pub fn state(&self) -> FrameState {
        FrameState::from_bits(self.flags.load(Relaxed))
    }

    #[inline]
    pub fn zone(&self) -> ZoneKind {
        ZoneKind::from_index(((self.flags.load(Relaxed) >> ZONE_SHIFT) & 3) as usize)
    }

    /// The NUMA node whose memory holds the frame.
    #[inline]
    pub fn node(&self) -> NodeId {
        ((self.flags.load(Relaxed) >> NODE_SHIFT) & 7) as NodeId
    }

    /// Node and zone index from one load: which free area the frame goes back to.
    #[inline(always)]
    pub(crate) fn place(&self) -> (NodeId, usize) {
        let f = self.flags.load(Relaxed);
        (
            ((f >> NODE_SHIFT) & 7) as NodeId,
            ((f >> ZONE_SHIFT) & 3) as usize,
        )
    }

    /// Order of the block this frame heads (meaningful for heads only).
    #[inline]
    pub fn order(&self) -> u32 {
        (self.flags.load(Relaxed) >> ORDER_SHIFT) & 0xF
    }

    #[inline]
    pub(crate) fn set(&self, state: FrameState, order: u32) {
        let zone = self.flags.load(Relaxed) & ZONE_BITS;
        self.flags
            .store(state as u32 | zone | order << ORDER_SHIFT, Relaxed);
    }

    /// Atomically moves a head from `from` to `to` keeping its order, or returns the state
    /// actually found. Two CPUs freeing the same block race here; exactly one wins.
    #[inline]
    pub(crate) fn transition(
        &self,
        from: FrameState,
        order: u32,
        to: FrameState,
    ) -> Result<(), u32> {
        let zone = self.flags.load(Relaxed) & ZONE_BITS;
        self.flags
            .compare_exchange(
                from as u32 | zone | order << ORDER_SHIFT,
                to as u32 | zone | order << ORDER_SHIFT,
                core::sync::atomic::Ordering::AcqRel,
                Relaxed,
            )
            .map(|_| ())
    }

    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next.load(Relaxed)
    }
    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.private.load(Relaxed) as u32
    }
    #[inline]
    pub(crate) fn set_next(&self, i: u32) {
        self.next.store(i, Relaxed)
    }
    #[inline]
    pub(crate) fn set_prev(&self, i: u32) {
        self.private.store(i as usize, Relaxed)
    }

    /// Bits 13–31 of `flags`, the owner's while the block is allocated (0 otherwise).
    #[inline]
    pub fn owner_bits(&self) -> u32 {
        self.flags.load(Relaxed) >> OWNER_SHIFT
    }
    /// Whether the frame is a tail, and its owner's bits, from one load (the slab free
    /// path's).
    #[inline(always)]
    pub fn tail_and_owner_bits(&self) -> (bool, u32) {
        let f = self.flags.load(Relaxed);
        // The state bits only ever hold a FrameState: one test, not from_bits' match.
        (f & STATE_MASK == FrameState::Tail as u32, f >> OWNER_SHIFT)
    }
    /// Sets the owner's bits (`v` < 2^19). Only the owner of an allocated block writes
    /// its frames' flags, so a load and a store suffice.
    #[inline]
    pub fn set_owner_bits(&self, v: u32) {
        debug_assert!(v < 1 << (32 - OWNER_SHIFT));
        let low = self.flags.load(Relaxed) & ((1 << OWNER_SHIFT) - 1);
        self.flags.store(low | v << OWNER_SHIFT, Relaxed)
    }
    /// Owner back-pointer (0 when the block has no registered owner).
    #[inline]
    pub fn owner(&self) -> usize {
        self.owner.load(core::sync::atomic::Ordering::Acquire)
    }
    /// Registers the owner of an allocated block. Release: a CPU that later finds an
    /// object of this block and reads `owner` sees the owner's initialised state.
    #[inline]
    pub fn set_owner(&self, owner: usize) {
        self.owner
            .store(owner, core::sync::atomic::Ordering::Release)
    }
    #[inline]
    pub fn private(&self) -> usize {
        self.private.load(Relaxed)
    }
    #[inline]
    pub fn set_private(&self, v: usize) {
        self.private.store(v, Relaxed)
    }
}

/// One bank's run of descriptors. The table of banks lives in the metadata (node 0's),
/// so that a [`FrameTable`] stays small; the first bank's figures are also in the table
/// itself, for the fast paths.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bank {
    start_pfn: u64,
    end_pfn: u64,
    /// Index of the bank's first descriptor.
    first: u32,
    /// The bank's descriptor array.
    frames: *const PageFrame,
}

impl Bank {
    /// Descriptor `idx` of this bank.
    ///
    /// # Safety
    /// `idx` is one of this bank's indices.
    #[inline(always)]
    unsafe fn frame(&self, idx: u32) -> &PageFrame {
        // SAFETY: the caller's contract; `init` initialised the bank's array.
        unsafe { &*self.frames.add((idx - self.first) as usize) }
    }

    /// This bank's index of descriptor `f`, if `f` is in its array.
    #[inline(always)]
    fn index_of(&self, f: &PageFrame) -> Option<u32> {
        let off = (f as *const PageFrame as usize).wrapping_sub(self.frames as usize);
        let i = off / size_of::<PageFrame>();
        (i < (self.end_pfn - self.start_pfn) as usize).then(|| self.first + i as u32)
    }
}

/// Finds descriptors by physical address and by index: the boot map's banks, then the
/// regions added at run time (`super::hot`), whose indices start at [`HOT_BASE`].
pub struct FrameTable {
    /// The banks, in the metadata.
    banks: *const Bank,
    nbanks: usize,
    /// The first bank's descriptor array (its indices start at 0).
    first_frames: *const PageFrame,
    /// The first bank's first frame number.
    first_pfn: u64,
    len: u32,
    /// Frames in the first bank.
    first_len: u64,
    /// Regions added at run time.
    pub(crate) hot: HotTable,
}

// SAFETY: the table only hands out shared references to descriptors, whose fields are
// atomics; the descriptor memory lives as long as the allocator that owns the table.
unsafe impl Send for FrameTable {}
// SAFETY: as for Send.
unsafe impl Sync for FrameTable {}

impl FrameTable {
    /// Number of descriptors needed for `usable`, or `None` past the boot indices (below
    /// [`HOT_BASE`]: 8 TiB).
    pub fn frames_needed(usable: &[PhysRange]) -> Option<u32> {
        let n: u64 = usable.iter().map(|r| r.size() / PAGE_SIZE).sum();
        u32::try_from(n).ok().filter(|&n| n < HOT_BASE)
    }

    /// Builds the table over `banks` (sorted, disjoint, page-aligned, 1 to
    /// [`MAX_BANKS`] ranges), the table of banks at `bank_mem`, bank `i`'s descriptors at
    /// `frames_of(i)`, and initialises every descriptor as `Reserved` in its zone and node
    /// (`place_of`).
    ///
    /// # Safety
    /// `bank_mem` must point to writable memory for `banks.len()` [`Bank`]s, aligned for
    /// them; each `frames_of(i)` to writable memory for bank `i`'s descriptors (one per
    /// frame), aligned for `PageFrame`; all of it disjoint and used by nothing else for the
    /// table's lifetime. The banks hold under [`HOT_BASE`] frames.
    pub(crate) unsafe fn init(
        banks: &[PhysRange],
        bank_mem: *mut Bank,
        frames_of: impl Fn(usize) -> *mut PageFrame,
        place_of: impl Fn(u64) -> (ZoneKind, NodeId),
    ) -> FrameTable {
        assert!(!banks.is_empty() && banks.len() <= MAX_BANKS);
        let mut idx: u32 = 0;
        for (i, r) in banks.iter().enumerate() {
            let (s, e) = (r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT);
            let frames = frames_of(i);
            let bank = Bank {
                start_pfn: s,
                end_pfn: e,
                first: idx,
                frames,
            };
            // SAFETY: i < banks.len(), which the caller sized `bank_mem` for.
            unsafe { bank_mem.add(i).write(bank) };
            for (k, pfn) in (s..e).enumerate() {
                let (zone, node) = place_of(pfn << PAGE_SHIFT);
                // SAFETY: k < the bank's frames, which the caller sized its array for.
                unsafe {
                    frames
                        .add(k)
                        .write(PageFrame::new(FrameState::Reserved, zone, node))
                };
            }
            idx += (e - s) as u32;
        }
        let first = banks[0];
        FrameTable {
            banks: bank_mem,
            nbanks: banks.len(),
            first_frames: frames_of(0),
            first_pfn: first.start >> PAGE_SHIFT,
            len: idx,
            first_len: first.size() >> PAGE_SHIFT,
            hot: HotTable::new(),
        }
    }

    /// Number of boot descriptors (regions added later have their own).
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    #[inline]
    fn banks(&self) -> &[Bank] {
        // SAFETY: `init` wrote nbanks banks at `banks`, which live as long as the table.
        unsafe { core::slice::from_raw_parts(self.banks, self.nbanks) }
    }

    /// The run of descriptors that holds index `idx` — a boot bank or a region added
    /// later — as `(start_pfn, end_pfn, first_index)`: within it, indices run in step
    /// with frame numbers, and no block crosses its ends.
    #[inline]
    pub fn span_of(&self, idx: u32) -> (u64, u64, u32) {
        if idx >= HOT_BASE {
            return self.hot.span_of_index(idx);
        }
        let banks = self.banks();
        let b = banks[banks.partition_point(|b| b.first <= idx) - 1];
        (b.start_pfn, b.end_pfn, b.first)
    }

    /// Frame number of descriptor `idx` (< `len`).
    #[inline]
    pub fn pfn_of(&self, idx: u32) -> u64 {
        if u64::from(idx) < self.first_len {
            // The common case: the first bank, no search.
            return self.first_pfn + u64::from(idx);
        }
        if idx >= HOT_BASE {
            return self.hot.pfn_of(idx);
        }
        let banks = self.banks();
        let i = banks.partition_point(|b| b.first <= idx) - 1;
        banks[i].start_pfn + u64::from(idx - banks[i].first)
    }

    /// Descriptor `idx`: a boot one (< `len`) or one of a region added later.
    #[inline]
    pub fn frame(&self, idx: u32) -> &PageFrame {
        if u64::from(idx) < self.first_len {
            // SAFETY: idx is in the first bank, whose descriptors `init` initialised at
            // `first_frames`.
            return unsafe { &*self.first_frames.add(idx as usize) };
        }
        self.frame_past_first_bank(idx)
    }

    /// [`FrameTable::frame`] past the first bank, out of line.
    #[inline(never)]
    fn frame_past_first_bank(&self, idx: u32) -> &PageFrame {
        if idx < self.len {
            let banks = self.banks();
            let b = &banks[banks.partition_point(|b| b.first <= idx) - 1];
            // SAFETY: b is the last bank starting at or below idx < len: idx is its.
            return unsafe { b.frame(idx) };
        }
        assert!(idx >= HOT_BASE, "frame index {idx} out of range");
        self.hot.frame(idx)
    }

    /// Index of descriptor `f`, which must be one of this table's.
    #[inline]
    pub fn index_of_frame(&self, f: &PageFrame) -> u32 {
        let off = (f as *const PageFrame as usize).wrapping_sub(self.first_frames as usize);
        let idx = off / size_of::<PageFrame>();
        if (idx as u64) < self.first_len {
            return idx as u32;
        }
        self.index_of_frame_past_first_bank(f)
    }

    /// [`FrameTable::index_of_frame`] past the first bank, out of line: the other banks'
    /// arrays lie wherever their nodes' metadata went, so each is asked in turn.
    #[inline(never)]
    fn index_of_frame_past_first_bank(&self, f: &PageFrame) -> u32 {
        self.banks()[1..]
            .iter()
            .find_map(|b| b.index_of(f))
            .or_else(|| self.hot.index_of_frame(f))
            .expect("descriptor not in this table")
    }

    /// Descriptor of the frame holding physical address `pa`.
    #[inline(always)]
    pub fn frame_of(&self, pa: u64) -> Option<(u32, &PageFrame)> {
        match self.frame_in_first_bank(pa) {
            Some(found) => Some(found),
            None => self.frame_of_banked(pa >> PAGE_SHIFT),
        }
    }

    /// [`FrameTable::frame_of`] for the first bank only (`None` for a frame of another):
    /// one subtraction and one compare with no call, for the kfree fast path, which
    /// leaves every other frame to its slow path. The first bank is the only one on most
    /// boards, and it starts at descriptor 0.
    #[inline(always)]
    pub fn frame_in_first_bank(&self, pa: u64) -> Option<(u32, &PageFrame)> {
        let off = (pa >> PAGE_SHIFT).wrapping_sub(self.first_pfn);
        if off >= self.first_len {
            return None;
        }
        // SAFETY: off < first_len: a descriptor of the first bank, initialised by `init`.
        Some((off as u32, unsafe { &*self.first_frames.add(off as usize) }))
    }

    /// [`FrameTable::frame_in_first_bank`] for the second bank (`None` when there is none
    /// or `pa` is not in it): node 1's on a two-node virt, or the memory past a hole on
    /// one node. A few loads, a subtraction and a compare: [`FrameTable::frame_of`]'s
    /// second look, before the bank search.
    #[inline(always)]
    pub(crate) fn frame_in_second_bank(&self, pa: u64) -> Option<(u32, &PageFrame)> {
        let b = self.banks().get(1)?;
        let off = (pa >> PAGE_SHIFT).wrapping_sub(b.start_pfn);
        if off >= b.end_pfn - b.start_pfn {
            return None;
        }
        let idx = b.first + off as u32;
        // SAFETY: start_pfn <= pfn < end_pfn: idx is one of b's.
        Some((idx, unsafe { b.frame(idx) }))
    }

    /// [`FrameTable::frame_of`] past the first bank: the second bank (node 1's on a
    /// two-node machine), then a binary search, then the regions added at run time, out of line so that the first-bank case stays small enough to
    /// inline.
    #[inline(never)]
    fn frame_of_banked(&self, pfn: u64) -> Option<(u32, &PageFrame)> {
        if let Some(found) = self.frame_in_second_bank(pfn << PAGE_SHIFT) {
            return Some(found);
        }
        let banks = self.banks();
        if let Some(b) = banks.get(banks.partition_point(|b| b.end_pfn <= pfn))
            && pfn >= b.start_pfn
        {
            let idx = b.first + (pfn - b.start_pfn) as u32;
            // SAFETY: start_pfn <= pfn < end_pfn: idx is one of b's.
            return Some((idx, unsafe { b.frame(idx) }));
        }
        self.hot.frame_of_pfn(pfn)
    }

    /// The boot map's usable ranges the table covers, as `(start_pfn, end_pfn,
    /// first_index)`.
    pub fn bank_spans(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        self.banks()
            .iter()
            .map(|b| (b.start_pfn, b.end_pfn, b.first))
    }
}
