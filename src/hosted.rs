//! The hosted platform: the whole allocator inside an ordinary process.
//!
//! [`Region`] takes a block of memory from the OS and presents it as physical RAM (the
//! process's virtual addresses serve as physical ones, so `phys_to_virt` is the
//! identity). [`HostArch`] maps threads to CPU slots: each thread gets the next ordinal on
//! first use, and the per-CPU code folds ordinals past the slot count onto existing
//! slots, whose locks keep sharing correct. Host tests and benchmarks run on this, and
//! users can try kmem here before porting it.

use std::alloc::{Layout, alloc, dealloc};
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use crate::arch::Arch;
use crate::mm::memmap::{MapError, MemoryMap, NormalizedMap, RegionKind};

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
    /// Takes `bytes` (rounded up to 4 KiB) from the OS; `None` when it refuses.
    pub fn new(bytes: usize) -> Option<Region> {
        let layout =
            Layout::from_size_align(bytes.max(4096).next_multiple_of(4096), REGION_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
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
        // SAFETY: base came from `alloc` with this layout and is freed once.
        unsafe { dealloc(self.base, self.layout) }
    }
}
