//! The hosted platform: the whole allocator inside an ordinary process.
//!
//! [`Region`] takes a block of memory from the OS and presents it as physical RAM (the
//! process's virtual addresses serve as physical ones, so `phys_to_virt` is the
//! identity). [`HostArch`] maps threads to CPU slots: each thread gets the next ordinal on
//! first use, and the per-CPU code folds ordinals past the slot count onto existing
//! slots, whose locks keep sharing correct. Host tests and benchmarks run on this, and
//! users can try kmem here before porting it. [`Kmem`] makes all of it the process's
//! `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use crate::arch::Arch;
use crate::mm::PageAllocator;
use crate::mm::buddy::MAX_ORDER;
use crate::mm::memmap::{MapError, MemoryMap, NormalizedMap, RegionKind};
use crate::mm::zone::ZoneLimits;

/// [`Arch`] for a process: threads are CPUs, interrupts do not exist.
pub struct HostArch;

static NEXT_CPU: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    static CPU: usize = NEXT_CPU.fetch_add(1, Ordering::Relaxed);
}

impl Arch for HostArch {
    type IrqState = ();

    #[inline]
    fn cpu_id() -> usize {
        CPU.with(|c| *c)
    }

    #[inline]
    fn irq_save() {}

    #[inline]
    fn irq_restore(_: ()) {}

    fn barrier_full() {
        fence(Ordering::SeqCst)
    }

    fn barrier_read() {
        fence(Ordering::Acquire)
    }

    fn barrier_write() {
        fence(Ordering::Release)
    }

    fn cycles() -> u64 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: rdtsc has no preconditions on x86_64.
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            use std::time::Instant;
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }

    #[inline]
    fn phys_to_virt(pa: u64) -> usize {
        pa as usize
    }

    #[inline]
    fn virt_to_phys(va: usize) -> u64 {
        va as u64
    }

    fn halt() -> ! {
        loop {
            std::thread::park();
        }
    }

    fn exit(code: u32) -> ! {
        std::process::exit(code as i32)
    }
}

/// Memory taken from the OS to stand in for physical RAM. Aligned to 4 MiB (the largest
/// buddy block) so that block alignment inside it is real alignment.
pub struct Region {
    base: *mut u8,
    layout: Layout,
}

// SAFETY: the region is plain memory owned by this value; what lives in it is the
// allocator's business, and the allocator is Sync.
unsafe impl Send for Region {}
// SAFETY: as for Send.
unsafe impl Sync for Region {}

/// Alignment of a [`Region`].
pub const REGION_ALIGN: usize = 4 << 20;

impl Region {
    /// Takes `bytes` (rounded up to 4 KiB) from the OS — through the system allocator,
    /// never the global one, which may be kmem itself — or `None` when it refuses.
    pub fn new(bytes: usize) -> Option<Region> {
        let layout =
            Layout::from_size_align(bytes.max(4096).next_multiple_of(4096), REGION_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { System.alloc(layout) };
        (!base.is_null()).then_some(Region { base, layout })
    }

    /// Start of the region, as a "physical" address.
    pub fn start(&self) -> u64 {
        self.base as u64
    }

    pub fn size(&self) -> u64 {
        self.layout.size() as u64
    }

    /// A map with the whole region usable.
    pub fn memory_map(&self) -> MemoryMap {
        let mut m = MemoryMap::new();
        m.add(RegionKind::Usable, self.start(), self.size())
            .expect("a region is never empty and never wraps");
        m
    }

    /// The region's map in normal form.
    pub fn normalized(&self) -> Result<NormalizedMap, MapError> {
        self.memory_map().normalize()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base came from `System.alloc` with this layout and is freed once.
        unsafe { System.dealloc(self.base, self.layout) }
    }
}

/// CPU slots of a [`Kmem`] unless told otherwise.
pub const DEFAULT_CPUS: usize = 8;

/// kmem as a process's global allocator:
///
/// ```no_run
/// #[global_allocator]
/// static KMEM: kmem::hosted::Kmem = kmem::hosted::Kmem::with_capacity(1 << 30);
/// ```
///
/// The region is taken from the OS on first use. Allocation failure is a null pointer,
/// never a panic. Blocks past [`LARGEST_BLOCK`] go to the system allocator.
pub struct Kmem {
    capacity: usize,
    cpus: usize,
    state: spin::Once<Option<(Region, crate::Kmem<HostArch>)>>,
}

impl Kmem {
    /// A global allocator over `capacity` bytes with [`DEFAULT_CPUS`] CPU slots.
    pub const fn with_capacity(capacity: usize) -> Kmem {
        Kmem::with_capacity_and_cpus(capacity, DEFAULT_CPUS)
    }

    /// A global allocator over `capacity` bytes with `cpus` CPU slots (threads beyond
    /// them share slots).
    pub const fn with_capacity_and_cpus(capacity: usize, cpus: usize) -> Kmem {
        Kmem {
            capacity,
            cpus,
            state: spin::Once::new(),
        }
    }

    /// The allocator, set up on first call; `None` if the OS refused the region.
    pub fn get(&self) -> Option<&crate::Kmem<HostArch>> {
        self.state
            .call_once(|| {
                let region = Region::new(self.capacity)?;
                let map = region.normalized().ok()?;
                // SAFETY: the region is ours for the process's life (it is stored beside
                // the allocator in this static and never dropped while in use).
                let pages = unsafe {
                    PageAllocator::new(&map, ZoneLimits::FLAT, self.cpus.max(1), None).ok()?
                };
                let kmem = crate::Kmem::new(pages).ok()?;
                Some((region, kmem))
            })
            .as_ref()
            .map(|(_, k)| k)
    }
}

/// Largest block kmem serves: the largest buddy block (4 MiB), where Linux's kmalloc
/// tops out too. A hosted program's bigger requests go to the system allocator.
pub const LARGEST_BLOCK: usize = (crate::mm::memmap::PAGE_SIZE as usize) << MAX_ORDER;

fn to_system(l: &Layout) -> bool {
    l.size() > LARGEST_BLOCK || l.align() > LARGEST_BLOCK
}

// SAFETY: blocks come from kmem's own GlobalAlloc or — for layouts past LARGEST_BLOCK,
// decided by the layout alone on both sides — from and to the system allocator.
// Failure is null.
unsafe impl GlobalAlloc for Kmem {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if to_system(&l) {
            // SAFETY: forwarded with the caller's valid layout.
            return unsafe { System.alloc(l) };
        }
        // SAFETY: the caller's contract passes straight through.
        self.get()
            .map_or(core::ptr::null_mut(), |k| unsafe { k.alloc(l) })
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if to_system(&l) {
            // SAFETY: forwarded with the caller's valid layout.
            return unsafe { System.alloc_zeroed(l) };
        }
        // SAFETY: the caller's contract passes straight through.
        self.get()
            .map_or(core::ptr::null_mut(), |k| unsafe { k.alloc_zeroed(l) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, l: Layout) {
        if to_system(&l) {
            // SAFETY: a layout this large was allocated by System (see alloc).
            return unsafe { System.dealloc(ptr, l) };
        }
        if let Some(k) = self.get() {
            // SAFETY: the caller's contract passes straight through.
            unsafe { k.dealloc(ptr, l) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size with l.align() is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        match (to_system(&l), to_system(&new)) {
            // SAFETY: the caller's contract passes straight through.
            (false, false) => self.get().map_or(core::ptr::null_mut(), |k| unsafe {
                k.realloc(ptr, l, new_size)
            }),
            // SAFETY: both layouts belong to System.
            (true, true) => unsafe { System.realloc(ptr, l, new_size) },
            // Crossing LARGEST_BLOCK: move between the two allocators.
            _ => {
                // SAFETY: `new` is valid; ptr is live for l.size() bytes, the new block
                // for new_size; they are distinct; ptr is freed with its own layout.
                unsafe {
                    let p = self.alloc(new);
                    if !p.is_null() {
                        core::ptr::copy_nonoverlapping(ptr, p, l.size().min(new_size));
                        self.dealloc(ptr, l);
                    }
                    p
                }
            }
        }
    }
}
