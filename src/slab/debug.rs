//! Slab debugging, after Linux's `slab_debug=FZPU`: red zones (Z), poisoning (P), owner
//! tracking (U) and extra sanity checks (F), with SLUB-style reports.
//!
//! A debug cache lays each object out in a larger slot:
//!
//! ```text
//! | left red zone | object (size rounded to 8) | right red zone | track (U) |
//! ```
//!
//! The left red zone is as wide as the alignment (at least 8 bytes) so the object stays
//! aligned; `Slab::s_mem` points at object 0, not at slot 0, so the index arithmetic of
//! the normal paths is unchanged. The object's state word follows the slot. Red zones hold [`RED_INACTIVE`] while the object is
//! free and [`RED_ACTIVE`] while it is allocated; a free object holds [`POISON_FREE`]
//! bytes ending in [`POISON_END`]. A damaged byte is reported, repaired, and the
//! operation goes on: the allocator stays usable.
//!
//! Caches without debug flags never reach this file: the fast paths test one byte.

use core::fmt;
use core::panic::Location;

use super::CacheName;

/// Red zone bytes around an allocated object.
pub const RED_ACTIVE: u8 = 0xcc;
/// Red zone bytes around a free object.
pub const RED_INACTIVE: u8 = 0xbb;
/// Poison in a free object.
pub const POISON_FREE: u8 = 0x6b;
/// Last byte of a poisoned object.
pub const POISON_END: u8 = 0xa5;

/// Debug options of a cache (`F`, `Z`, `P`, `U` as in `slab_debug`).
///
/// # Examples
/// ```
/// use kmem::slab::DebugFlags;
/// let flags = DebugFlags::RED_ZONE.union(DebugFlags::POISON);
/// assert_eq!(flags.to_string(), "ZP");
/// assert_eq!(DebugFlags::parse("zp"), Some(flags));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct DebugFlags(u8);

impl DebugFlags {
    /// No debugging: the fast paths.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::DebugFlags;
    /// assert!(DebugFlags::NONE.is_empty());
    /// assert_eq!(DebugFlags::parse("-"), Some(DebugFlags::NONE));
    /// assert_eq!(DebugFlags::NONE.to_string(), "-");
    /// ```
    pub const NONE: DebugFlags = DebugFlags(0);
    /// F: check the free list and object state on every operation, and report frees of
    /// foreign, interior or free objects loudly.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::DebugFlags;
    /// assert_eq!(kmem.set_debug(Some("kmalloc-64"), DebugFlags::SANITY), Some((1, 0)));
    /// let p = kmem.kmalloc(64, kmem::Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// assert_eq!(kmem.validate(Some("kmalloc-64")), Some(0));
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const SANITY: DebugFlags = DebugFlags(1);
    /// Z: red zones on both sides of each object.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::DebugFlags;
    /// let before = kmem.kmalloc_cache_for(64, 8, kmem::Gfp::KERNEL).unwrap().stride();
    /// assert_eq!(kmem.set_debug(Some("kmalloc-64"), DebugFlags::RED_ZONE), Some((1, 0)));
    /// let cache = kmem.kmalloc_cache_for(64, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert!(cache.stride() > before, "each slot now holds two red zones too");
    /// ```
    pub const RED_ZONE: DebugFlags = DebugFlags(2);
    /// P: poison free objects, check the poison when they are allocated again.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, slab::DebugFlags};
    /// assert_eq!(kmem.set_debug(Some("kmalloc-128"), DebugFlags::POISON), Some((1, 0)));
    /// let p = kmem.kmalloc(128, Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// let q = kmem.kmalloc(128, Gfp::KERNEL)?; // its poison is checked here
    /// assert_eq!(kmem.kmalloc_cache_for(128, 8, Gfp::KERNEL).unwrap().reports(), 0);
    /// unsafe { kmem.kfree(q.as_ptr()) }?; // SAFETY: q is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const POISON: DebugFlags = DebugFlags(4);
    /// U: record the allocating and freeing CPU and caller of each object.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::DebugFlags;
    /// // `slab_debug=U`: owner tracking alone, for leak hunting.
    /// assert_eq!(DebugFlags::parse("U"), Some(DebugFlags::STORE_USER));
    /// ```
    pub const STORE_USER: DebugFlags = DebugFlags(8);
    /// Every check: `slab_debug=FZPU`.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::DebugFlags;
    /// assert_eq!(DebugFlags::parse("FZPU"), Some(DebugFlags::ALL));
    /// assert!(DebugFlags::ALL.contains(DebugFlags::POISON));
    /// ```
    pub const ALL: DebugFlags = DebugFlags(15);

    /// Whether every flag of `o` is set.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::DebugFlags;
    /// let f = DebugFlags::parse("FZ").unwrap();
    /// assert!(f.contains(DebugFlags::RED_ZONE));
    /// assert!(!f.contains(DebugFlags::POISON));
    /// ```
    pub const fn contains(self, o: DebugFlags) -> bool {
        self.0 & o.0 == o.0
    }

    /// Whether no flag is set.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let cache = kmem.kmalloc_cache_for(32, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert!(cache.debug_flags().is_empty(), "no kmem.debug= on the command line");
    /// ```
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags set in either `self` or `o`.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::DebugFlags;
    /// let f = DebugFlags::SANITY.union(DebugFlags::STORE_USER);
    /// assert_eq!(f.to_string(), "FU");
    /// ```
    pub const fn union(self, o: DebugFlags) -> DebugFlags {
        DebugFlags(self.0 | o.0)
    }

    /// Parses `slab_debug` letters (`FZPU`, any order; `-` for none).
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::DebugFlags;
    /// assert_eq!(DebugFlags::parse("PZ"), DebugFlags::parse("ZP"));
    /// assert_eq!(DebugFlags::parse("FQ"), None); // Q is no flag
    /// ```
    pub fn parse(s: &str) -> Option<DebugFlags> {
        s.chars().try_fold(DebugFlags::NONE, |f, c| match c {
            'F' | 'f' => Some(f.union(DebugFlags::SANITY)),
            'Z' | 'z' => Some(f.union(DebugFlags::RED_ZONE)),
            'P' | 'p' => Some(f.union(DebugFlags::POISON)),
            'U' | 'u' => Some(f.union(DebugFlags::STORE_USER)),
            '-' => Some(f),
            _ => None,
        })
    }
}

impl fmt::Debug for DebugFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (flag, c) in [
            (DebugFlags::SANITY, 'F'),
            (DebugFlags::RED_ZONE, 'Z'),
            (DebugFlags::POISON, 'P'),
            (DebugFlags::STORE_USER, 'U'),
        ] {
            if self.contains(flag) {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DebugFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Who allocated and freed an object last (U).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::slab::DebugFlags;
/// kmem.set_debug(Some("kmalloc-96"), DebugFlags::STORE_USER);
/// let p = kmem.kmalloc(96, kmem::Gfp::KERNEL)?;
/// let owner = kmem.object_at(p.as_ptr() as usize).unwrap().owner.unwrap();
/// assert!(owner.alloc_at.is_some() && owner.free_at.is_none());
/// assert!(owner.to_string().starts_with("allocated on cpu"));
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Track {
    /// Where the last allocation was asked for (`None`: never allocated).
    pub alloc_at: Option<&'static Location<'static>>,
    /// Where the last free was asked for (`None`: not freed since it was made).
    pub free_at: Option<&'static Location<'static>>,
    /// The CPU that allocated it last.
    pub alloc_cpu: u32,
    /// The CPU that freed it last.
    pub free_cpu: u32,
    /// [`crate::Arch::cycles`] at the last allocation.
    pub alloc_cycles: u64,
}

impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alloc_at {
            Some(at) => write!(
                f,
                "allocated on cpu {} by {at} at cycle {}",
                self.alloc_cpu, self.alloc_cycles
            )?,
            None => f.write_str("never allocated")?,
        }
        if let Some(at) = self.free_at {
            write!(f, "; last freed on cpu {} by {at}", self.free_cpu)?;
        }
        Ok(())
    }
}

/// Where the debug bytes of a slot sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugLayout {
    pub flags: DebugFlags,
    /// Left red zone (0 without Z).
    pub left: usize,
    /// Object bytes checked by poison and bounded by the right red zone.
    pub object: usize,
    /// Right red zone (0 without Z).
    pub right: usize,
    /// Track record bytes (0 without U).
    pub track: usize,
}

impl DebugLayout {
    pub fn new(flags: DebugFlags, size: usize, align: usize) -> DebugLayout {
        let z = flags.contains(DebugFlags::RED_ZONE);
        let object = size.max(1).next_multiple_of(8);
        DebugLayout {
            flags,
            left: if z { align.max(8) } else { 0 },
            object,
            right: if z { 8 } else { 0 },
            track: if flags.contains(DebugFlags::STORE_USER) {
                size_of::<Track>()
            } else {
                0
            },
        }
    }

    /// Bytes from the object's start to the end of its slot; the slot starts `left`
    /// bytes before the object.
    pub fn slot(&self) -> usize {
        self.left + self.object + self.right + self.track
    }
}

/// What a check found damaged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Damage {
    LeftRedzone,
    RightRedzone,
    /// Poison of a free object changed: written after free.
    Poison,
    /// A free-list link out of range.
    FreeList,
}

impl Damage {
    pub fn title(self) -> &'static str {
        match self {
            Damage::LeftRedzone => "Left Redzone overwritten",
            Damage::RightRedzone => "Right Redzone overwritten",
            Damage::Poison => "Poison overwritten (write after free)",
            Damage::FreeList => "Freelist link corrupted",
        }
    }
}

/// A finding, as SLUB words it: `BUG kmalloc-64: Right Redzone overwritten`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Report {
    pub cache: CacheName,
    pub object: usize,
    pub damage: Damage,
    /// Offset of the first bad byte from the object's start (negative: left red zone).
    pub offset: isize,
    pub found: u8,
    pub expected: u8,
    /// How many bytes differ in the checked area.
    pub bad_bytes: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BUG {}: {}: object {:#x}, offset {}: found {:#04x}, expected {:#04x} ({} bytes bad)",
            self.cache,
            self.damage.title(),
            self.object,
            self.offset,
            self.found,
            self.expected,
            self.bad_bytes
        )
    }
}

/// Checks that `len` bytes at `at` all equal `want`; on a mismatch fills them with
/// `want` and returns (first bad offset from `at`, found byte, bad count).
///
/// # Safety
/// `[at, at + len)` must be memory of one of the cache's slots, owned by the caller.
pub unsafe fn check_fill(at: usize, len: usize, want: u8) -> Option<(usize, u8, usize)> {
    // SAFETY: the caller owns the range.
    let bytes = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) };
    let first = bytes.iter().position(|&b| b != want)?;
    let found = bytes[first];
    let bad = bytes.iter().filter(|&&b| b != want).count();
    bytes.fill(want);
    Some((first, found, bad))
}

/// Fills `len` bytes at `at` with `v`.
///
/// # Safety
/// As for [`check_fill`].
pub unsafe fn fill(at: usize, len: usize, v: u8) {
    // SAFETY: the caller owns the range.
    unsafe { core::ptr::write_bytes(at as *mut u8, v, len) }
}

// --- The checked paths of a cache ----------------------------------------------------

use core::sync::atomic::Ordering::Relaxed;

use super::SlabCache;
use super::header::Slab;
use crate::arch::Arch;

impl<A: Arch> SlabCache<A> {
    fn track(&self, obj: usize) -> *mut Track {
        (obj + self.geo().debug.object + self.geo().debug.right) as *mut Track
    }

    /// Puts a new slab's object into its free state: red zones inactive, poisoned
    /// (unless a constructor owns its contents), no owner.
    pub(crate) fn debug_init(&self, obj: usize) {
        let d = &self.geo().debug;
        // SAFETY: the slot [obj - left, obj + object + right + track) lies in the fresh
        // slab, which nobody else can reach yet.
        unsafe {
            if d.flags.contains(DebugFlags::RED_ZONE) {
                fill(obj - d.left, d.left, RED_INACTIVE);
                fill(obj + d.object, d.right, RED_INACTIVE);
            }
            if d.flags.contains(DebugFlags::POISON) && self.ctor.is_none() {
                poison(obj, d.object);
            }
            if d.flags.contains(DebugFlags::STORE_USER) {
                self.track(obj).write(Track {
                    alloc_at: None,
                    free_at: None,
                    alloc_cpu: 0,
                    free_cpu: 0,
                    alloc_cycles: 0,
                });
            }
        }
    }

    /// Checks and marks an object on its way to a user.
    #[track_caller]
    pub(crate) fn on_alloc(&self, obj: usize) {
        let d = self.geo().debug;
        if d.flags.contains(DebugFlags::POISON) && self.ctor.is_none() {
            // SAFETY: the object is ours (just taken from an array).
            let bad = unsafe { check_poison(obj, d.object) };
            if let Some((off, found, want, n)) = bad {
                self.report(obj, Damage::Poison, off as isize, found, want, n);
            }
        }
        self.check_red(obj, RED_INACTIVE, RED_ACTIVE);
        if d.flags.contains(DebugFlags::STORE_USER) {
            // SAFETY: the track record of our object.
            unsafe {
                let t = &mut *self.track(obj);
                t.alloc_at = Some(Location::caller());
                t.alloc_cpu = A::cpu_id() as u32;
                t.alloc_cycles = A::cycles();
            }
        }
        if self.geo().init_on_alloc {
            // SAFETY: the object is ours.
            unsafe { fill(obj, self.object_size, 0) };
        }
    }

    /// Checks and marks an object a user frees (already found live).
    #[track_caller]
    pub(crate) fn on_free(&self, obj: usize) {
        let d = self.geo().debug;
        self.check_red(obj, RED_ACTIVE, RED_INACTIVE);
        if d.flags.contains(DebugFlags::STORE_USER) {
            // SAFETY: the track record of an object being freed by its owner.
            unsafe {
                let t = &mut *self.track(obj);
                t.free_at = Some(Location::caller());
                t.free_cpu = A::cpu_id() as u32;
            }
        }
        if d.flags.contains(DebugFlags::POISON) && self.ctor.is_none() {
            // SAFETY: as above.
            unsafe { poison(obj, d.object) };
        } else if self.geo().init_on_free {
            // SAFETY: as above.
            unsafe { fill(obj, self.object_size, 0) };
        }
    }

    /// Checks both red zones hold `want`, reports and repairs them, then sets `next`.
    fn check_red(&self, obj: usize, want: u8, next: u8) {
        let d = self.geo().debug;
        if !d.flags.contains(DebugFlags::RED_ZONE) {
            return;
        }
        let (l, r) = (obj - d.left, obj + d.object);
        // SAFETY: red zones of an object the caller owns.
        unsafe {
            if let Some((off, found, n)) = check_fill(l, d.left, want) {
                let at = off as isize - d.left as isize;
                self.report(obj, Damage::LeftRedzone, at, found, want, n);
            }
            if let Some((off, found, n)) = check_fill(r, d.right, want) {
                let at = (d.object + off) as isize;
                self.report(obj, Damage::RightRedzone, at, found, want, n);
            }
            fill(l, d.left, next);
            fill(r, d.right, next);
        }
    }

    /// Logs a finding (with the owner record when tracked) and counts it.
    pub(crate) fn report(
        &self,
        object: usize,
        damage: Damage,
        offset: isize,
        found: u8,
        expected: u8,
        bad_bytes: usize,
    ) {
        let r = Report {
            cache: self.name,
            object,
            damage,
            offset,
            found,
            expected,
            bad_bytes,
        };
        log::error!("{r}");
        if self.geo().debug.flags.contains(DebugFlags::STORE_USER) && damage != Damage::FreeList {
            // SAFETY: the object's slot is in a live slab of this cache.
            log::error!("  {}", unsafe { *self.track(object) });
        }
        self.reports.fetch_add(1, Relaxed);
    }

    /// Who allocated `obj` (for leak reports), when the cache tracks owners.
    pub(crate) fn owner_record(&self, obj: usize) -> Option<Track> {
        self.geo()
            .debug
            .flags
            .contains(DebugFlags::STORE_USER)
            // SAFETY: obj is an object of a live slab of this cache.
            .then(|| unsafe { *self.track(obj) })
    }

    /// Checks one object of `slab` against its state: red zones match it, a free
    /// object's poison is intact. Returns the problems found (each reported).
    pub(crate) fn validate_object(&self, slab: Slab<'_>, i: usize) -> usize {
        let d = self.geo().debug;
        let obj = slab.object(i);
        let active = self.is_active(slab, i);
        let before = self.reports();
        if d.flags.contains(DebugFlags::RED_ZONE) {
            let want = if active { RED_ACTIVE } else { RED_INACTIVE };
            self.check_red(obj, want, want);
        }
        // Free objects — on the chain or CACHED in an array — are poisoned.
        if !active && d.flags.contains(DebugFlags::POISON) && self.ctor.is_none() {
            // SAFETY: a free object of a live slab; the node lock keeps it free.
            if let Some((off, found, want, n)) = unsafe { check_poison(obj, d.object) } {
                self.report(obj, Damage::Poison, off as isize, found, want, n);
            }
        }
        self.reports() - before
    }
}

/// Poisons an object: [`POISON_FREE`] bytes, the last one [`POISON_END`].
///
/// # Safety
/// As for [`fill`].
unsafe fn poison(obj: usize, len: usize) {
    // SAFETY: the caller owns the object.
    unsafe {
        fill(obj, len - 1, POISON_FREE);
        fill(obj + len - 1, 1, POISON_END);
    }
}

/// Checks an object's poison; on damage repairs it and returns (offset, found, expected,
/// bad bytes).
///
/// # Safety
/// As for [`fill`].
unsafe fn check_poison(obj: usize, len: usize) -> Option<(usize, u8, u8, usize)> {
    // SAFETY: the caller owns the object.
    unsafe {
        let body = check_fill(obj, len - 1, POISON_FREE).map(|(o, f, n)| (o, f, POISON_FREE, n));
        let end =
            check_fill(obj + len - 1, 1, POISON_END).map(|(_, f, n)| (len - 1, f, POISON_END, n));
        match (body, end) {
            (Some((o, f, w, n)), e) => Some((o, f, w, n + e.map_or(0, |e| e.3))),
            (None, e) => e,
        }
    }
}
