//! The hosted heap's growth and shrinking: chunks of address space added as regions when
//! the allocator runs out, and given back to the OS when they are wholly free.
//!
//! Growth is the page allocator's out-of-memory hook ([`crate::mm::hotplug`]): it maps a
//! chunk — the heap's chunk size, a quarter of what the heap holds once that is more (so
//! that a big heap needs few of the 32 region slots), and room for the block asked for —
//! and adds it; descriptors exist only for chunks added. It takes no lock of kmem's and
//! allocates nothing (the chunk list is a fixed array under a spin lock), as the hook's
//! contract asks. When the OS refuses the mapping, or the heap's limit is reached, the
//! hook says no and the allocation returns null.
//!
//! Shrinking: [`Heap::trim`] has the caches give back empty slabs and removes every chunk
//! with no page in use. Every 2^16 frees of a thread, or 64 MiB it frees, the heap tries
//! the same by itself,
//! keeping one emptied chunk as a spare — its pages given back to the OS with
//! `MADV_DONTNEED`, its address range kept — which the next growth takes before mapping a
//! new chunk: a live set that goes back and forth across a chunk boundary costs a region
//! added and removed per 2^16 frees (or 64 MiB freed) at most, and no `mmap`/`munmap`
//! pair.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::{Heap, HeapState, HostArch, REGION_ALIGN};
use crate::mm::hot::MAX_HOT;
use crate::mm::memmap::PhysRange;
use crate::mm::{OomHook, OomRequest, PageAllocator};

/// The first chunk of a [`Heap::with_capacity`] heap whose capacity is larger.
///
/// # Examples
/// ```
/// use kmem::hosted::{DEFAULT_CHUNK, Heap};
/// let heap = Heap::with_capacity(1 << 30); // 1 GiB at most, 32 MiB to start
/// let managed = heap.get().unwrap().pages().info().managed_pages() * 4096;
/// assert!(managed <= DEFAULT_CHUNK as u64);
/// ```
pub const DEFAULT_CHUNK: usize = 32 << 20;

/// Frees of one thread between two automatic trims…
const TRIM_EVERY: u32 = 1 << 16;
/// …or bytes freed by it, whichever comes first (a program that frees a few large blocks
/// gets its chunks back as one that frees many small ones does).
const TRIM_BYTES: usize = 64 << 20;

/// A chunk of address space mapped for the heap.
struct Chunk {
    base: usize,
    bytes: usize,
}

impl Chunk {
    fn range(&self) -> PhysRange {
        PhysRange {
            start: self.base as u64,
            end: (self.base + self.bytes) as u64,
        }
    }
}

struct Inner {
    /// Chunks added as regions.
    list: [Option<Chunk>; MAX_HOT],
    /// An emptied chunk kept mapped for the next growth.
    spare: Option<Chunk>,
    /// Bytes of all chunks added, the first one included.
    total: usize,
}

/// A heap's chunks (module doc).
pub(super) struct Chunks {
    min_chunk: usize,
    limit: usize,
    inner: spin::Mutex<Inner>,
    /// Chunks added now (read without the lock by the automatic trim).
    added: AtomicUsize,
    grown: AtomicU64,
    trimmed: AtomicU64,
    refused: AtomicU64,
}

/// What a [`Heap`] holds from the OS and how it got there.
///
/// # Examples
/// ```
/// use kmem::hosted::Heap;
/// let heap = Heap::with_capacity(16 << 20);
/// heap.get().unwrap();
/// let s = heap.stats();
/// assert_eq!((s.chunks, s.bytes), (0, 16 << 20)); // only the first chunk
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Chunks added after the first one, online now.
    pub chunks: usize,
    /// Bytes of all chunks online, the first one included.
    pub bytes: usize,
    /// The heap's limit, if it has one.
    pub limit: Option<usize>,
    /// Chunks added so far.
    pub grown: u64,
    /// Chunks given back so far.
    pub trimmed: u64,
    /// Times the heap could not grow (OS refused, or limit reached).
    pub refused: u64,
    /// Whether an emptied chunk is kept as a spare.
    pub spare: bool,
}

impl Chunks {
    pub(super) fn new(min_chunk: usize, limit: usize, first: usize) -> Chunks {
        Chunks {
            min_chunk: min_chunk.max(REGION_ALIGN),
            limit,
            inner: spin::Mutex::new(Inner {
                list: [const { None }; MAX_HOT],
                spare: None,
                total: first,
            }),
            added: AtomicUsize::new(0),
            grown: AtomicU64::new(0),
            trimmed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The out-of-memory hook's work: a chunk added, or false.
    fn grow(&self, pages: &PageAllocator<HostArch>, req: OomRequest) -> bool {
        let mut inner = self.inner.lock();
        let block = req.bytes() as usize;
        let mut size = self
            .min_chunk
            .max(inner.total / 4)
            .next_multiple_of(REGION_ALIGN);
        while !holds(size, block) {
            size += REGION_ALIGN;
        }
        let room = self.limit.saturating_sub(inner.total) / REGION_ALIGN * REGION_ALIGN;
        if size > room && holds(room, block) {
            size = room;
        }
        let Some(k) = inner.list.iter().position(Option::is_none) else {
            self.refused.fetch_add(1, Relaxed);
            return false;
        };
        let chunk = match inner.spare.take() {
            Some(c) if holds(c.bytes, block) && inner.total + c.bytes <= self.limit => Some(c),
            other => {
                if let Some(c) = other {
                    os::unmap(c);
                }
                (size <= room).then(|| os::map(size)).flatten()
            }
        };
        let Some(chunk) = chunk else {
            self.refused.fetch_add(1, Relaxed);
            return false;
        };
        // SAFETY: the chunk is mapped for this heap alone and stays mapped until it has
        // been removed again (trim) or the heap is gone (Drop, after the allocator).
        match unsafe { pages.add_region(chunk.range()) } {
            Ok(()) => {
                inner.total += chunk.bytes;
                inner.list[k] = Some(chunk);
                self.added.fetch_add(1, Relaxed);
                self.grown.fetch_add(1, Relaxed);
                true
            }
            // Not logged: a logger may allocate, and the hook must not (module doc).
            Err(_) => {
                os::unmap(chunk);
                self.refused.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Removes every chunk with no page in use; returns the bytes given back. With
    /// `keep_spare`, the first chunk removed becomes the spare if there is none.
    fn trim(
        &self,
        kmem: &crate::Kmem<HostArch>,
        mut inner: spin::MutexGuard<'_, Inner>,
        keep_spare: bool,
    ) -> usize {
        let mut released = 0;
        for k in (0..MAX_HOT).rev() {
            let Some(range) = inner.list[k].as_ref().map(Chunk::range) else {
                continue;
            };
            if kmem.pages().remove_region(range).is_err() {
                continue;
            }
            let chunk = inner.list[k].take().expect("checked above");
            inner.total -= chunk.bytes;
            released += chunk.bytes;
            self.added.fetch_sub(1, Relaxed);
            self.trimmed.fetch_add(1, Relaxed);
            if keep_spare && inner.spare.is_none() {
                os::release(&chunk);
                inner.spare = Some(chunk);
            } else {
                os::unmap(chunk);
            }
        }
        released
    }
}

impl Chunks {
    /// In a child after `fork`: the chunk list's lock freed if a thread the child does
    /// not have held it (it is not held across the fork: a thread growing the heap holds
    /// it while waiting for a zone lock the fork handlers hold). A chunk such a thread had
    /// mapped but not recorded stays mapped in the child, unused.
    ///
    /// # Safety
    /// The calling process is a child just forked, with one thread, which does not hold
    /// the lock itself.
    pub(super) unsafe fn after_fork_in_child(&self) {
        if self.inner.is_locked() {
            // SAFETY: the caller's contract: the holder is a thread this process lacks.
            unsafe { self.inner.force_unlock() };
        }
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        for c in inner.list.iter_mut().chain([&mut inner.spare]) {
            if let Some(c) = c.take() {
                os::unmap(c);
            }
        }
    }
}

/// Whether a chunk of `size` bytes (aligned to [`REGION_ALIGN`]) holds an aligned block
/// of `block` bytes after the descriptors carved from its start.
fn holds(size: usize, block: usize) -> bool {
    let meta = crate::mm::hotplug::meta_frames(size as u64 / 4096) as usize * 4096;
    block + meta.next_multiple_of(block) <= size
}

/// Registers the growth hook of the heap state at `state`.
///
/// # Safety
/// `state` is a live `HeapState` that stays at this address for as long as its
/// allocator lives (the allocator is part of it).
pub(super) unsafe fn install(state: *const HeapState) {
    // SAFETY: the caller's contract.
    let s = unsafe { &*state };
    s.kmem.pages().set_oom_hook(Some(OomHook {
        f: hook,
        ctx: state as usize,
    }));
}

fn hook(pages: &PageAllocator<HostArch>, req: OomRequest, ctx: usize) -> bool {
    // SAFETY: `install` registered the address of the HeapState that holds this very
    // allocator, so it is live while the allocator calls its hook.
    let state = unsafe { &*(ctx as *const HeapState) };
    state.chunks.grow(pages, req)
}

std::thread_local! {
    // No destructors: a plain thread-local counter, one access per free.
    static FREES: Cell<(u32, usize)> = const { Cell::new((0, 0)) };
}

/// Counts a free of `bytes` by this thread; every [`TRIM_EVERY`] frees or [`TRIM_BYTES`]
/// bytes, tries to give chunks back.
#[inline]
pub(super) fn count_free(heap: &Heap, bytes: usize) {
    let due = FREES
        .try_with(|c| {
            let (frees, freed) = c.get();
            let (frees, freed) = (frees.wrapping_add(1), freed + bytes);
            let due = frees.is_multiple_of(TRIM_EVERY) || freed >= TRIM_BYTES;
            c.set((frees, if freed >= TRIM_BYTES { 0 } else { freed }));
            due
        })
        .unwrap_or(false);
    if due {
        auto_trim(heap);
    }
}

#[cold]
#[inline(never)]
fn auto_trim(heap: &Heap) {
    let Some(s) = heap.state() else { return };
    if s.chunks.added.load(Relaxed) == 0 {
        return;
    }
    // Another thread growing or trimming: skip this time.
    let Some(inner) = s.chunks.inner.try_lock() else {
        return;
    };
    drop(inner);
    s.kmem.shrink_all();
    if let Some(inner) = s.chunks.inner.try_lock() {
        s.chunks.trim(&s.kmem, inner, true);
    }
}

impl Heap {
    fn state(&self) -> Option<&HeapState> {
        self.get()?;
        let s = self.state.get()?.as_ref()?;
        // SAFETY: the state lives until the Heap is dropped, which `&self` outlasts.
        Some(unsafe { s.0.as_ref() })
    }

    /// Gives every chunk added at run time that has no page in use back to the OS, after
    /// the caches have given back their empty slabs and parked objects; returns the
    /// bytes given back. The first chunk stays.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::hosted::Heap;
    /// let heap = Heap::growable(8 << 20, None, 1);
    /// let kmem = heap.get().unwrap();
    /// let objs: Vec<_> = (0..8192).map(|_| kmem.kmalloc(4096, Gfp::KERNEL)).collect();
    /// assert!(heap.stats().bytes >= 32 << 20, "grew to hold 32 MiB");
    /// for p in objs {
    ///     unsafe { kmem.kfree(p?.as_ptr()) }?; // SAFETY: not used again.
    /// }
    /// assert!(heap.trim() >= 16 << 20);
    /// assert_eq!(heap.stats().bytes, 8 << 20);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn trim(&self) -> usize {
        let Some(s) = self.state() else { return 0 };
        s.kmem.shrink_all();
        let inner = s.chunks.inner.lock();
        let mut released = s.chunks.trim(&s.kmem, inner, false);
        let mut inner = s.chunks.inner.lock();
        if let Some(c) = inner.spare.take() {
            released += c.bytes;
            os::unmap(c);
        }
        released
    }

    /// How much the heap holds from the OS, and how it grew and shrank.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Heap;
    /// let heap = Heap::growable(4 << 20, Some(8 << 20), 1);
    /// let kmem = heap.get().unwrap();
    /// let mut n = 0;
    /// while kmem.kmalloc(1 << 20, kmem::Gfp::KERNEL).is_ok() {
    ///     n += 1;
    /// }
    /// let s = heap.stats();
    /// assert_eq!((s.bytes, s.limit), (8 << 20, Some(8 << 20)));
    /// assert!(s.refused > 0 && n >= 4);
    /// ```
    pub fn stats(&self) -> HeapStats {
        let Some(s) = self.state() else {
            return HeapStats::default();
        };
        let c = &s.chunks;
        let inner = c.inner.lock();
        HeapStats {
            chunks: c.added.load(Relaxed),
            bytes: inner.total,
            limit: (c.limit != usize::MAX).then_some(c.limit),
            grown: c.grown.load(Relaxed),
            trimmed: c.trimmed.load(Relaxed),
            refused: c.refused.load(Relaxed),
            spare: inner.spare.is_some(),
        }
    }
}

/// Address space from the OS.
#[cfg(unix)]
mod os {
    use super::{Chunk, REGION_ALIGN};

    /// `bytes` (a multiple of [`REGION_ALIGN`]) of fresh memory aligned to it, or `None`.
    pub(super) fn map(bytes: usize) -> Option<Chunk> {
        let len = bytes.checked_add(REGION_ALIGN)?;
        // SAFETY: an anonymous private mapping at an address the OS picks touches no
        // memory of ours.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let start = p as usize;
        let base = start.next_multiple_of(REGION_ALIGN);
        let (head, tail) = (base - start, start + len - (base + bytes));
        // SAFETY: both pieces lie in the mapping just made, outside the chunk kept.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((base + bytes) as *mut libc::c_void, tail);
            }
        }
        Some(Chunk { base, bytes })
    }

    /// The chunk's pages given back, its address range kept.
    pub(super) fn release(c: &Chunk) {
        // SAFETY: the chunk is mapped and no longer part of the allocator: its contents
        // are nobody's.
        unsafe { libc::madvise(c.base as *mut libc::c_void, c.bytes, libc::MADV_DONTNEED) };
    }

    pub(super) fn unmap(c: Chunk) {
        // SAFETY: the chunk was mapped by `map` and is no longer part of the allocator.
        unsafe { libc::munmap(c.base as *mut libc::c_void, c.bytes) };
    }
}

/// Memory from the system allocator where there is no `mmap`.
#[cfg(not(unix))]
mod os {
    use super::{Chunk, REGION_ALIGN};
    use std::alloc::{GlobalAlloc, Layout, System};

    pub(super) fn map(bytes: usize) -> Option<Chunk> {
        let l = Layout::from_size_align(bytes, REGION_ALIGN).ok()?;
        // SAFETY: a non-zero layout.
        let p = unsafe { System.alloc(l) };
        (!p.is_null()).then(|| Chunk {
            base: p as usize,
            bytes,
        })
    }

    pub(super) fn release(_: &Chunk) {}

    pub(super) fn unmap(c: Chunk) {
        let l = Layout::from_size_align(c.bytes, REGION_ALIGN).expect("as mapped");
        // SAFETY: `map` took the chunk from System with this layout.
        unsafe { System.dealloc(c.base as *mut u8, l) };
    }
}
