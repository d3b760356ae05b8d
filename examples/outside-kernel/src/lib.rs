//! A kernel written outside kmem, using it as a library — what a kernel developer does to
//! adopt kmem, in one crate that depends on `kmem` alone (default features: no `std`, no
//! `alloc`, no global allocator):
//!
//! 1. implement [`kmem::Arch`] for the platform ([`platform::Toy`], a made-up board);
//! 2. describe RAM in a [`kmem::MemoryMap`] (usable bank, reserved firmware area);
//! 3. build a [`kmem::PageAllocator`] over it and a [`kmem::Kmem`] with a hardening seed;
//! 4. allocate: typed caches ([`kmem::Cache`]), kmalloc through owned [`kmem::KBox`]es and
//!    the raw calls, and page blocks.
//!
//! [`run`] does all of it and checks what it sees; `make test` runs it on the host, and
//! builds the same crate for `aarch64-unknown-none` to show it links without a global
//! allocator.
#![no_std]

pub mod platform;

use core::fmt;

use kmem::mm::InitError;
use kmem::mm::memmap::MapError;
use kmem::{
    Cache, Gfp, KBox, Kmem, MemoryMap, Options, PageAllocator, PageError, RegionKind, SlabError,
    SlabFlags, ZoneLimits,
};
use platform::{FIRMWARE_BYTES, RAM_BYTES, RAM_PHYS, Toy};

/// A process of the toy kernel, allocated from a typed cache.
#[derive(Default)]
pub struct Task {
    /// Process id.
    pub pid: u32,
    /// Scheduler ticks used.
    pub ticks: u64,
    /// The task's name, NUL-padded.
    pub name: [u8; 16],
}

/// What [`run`] saw.
pub struct Report {
    /// Bytes the page allocator manages.
    pub managed_bytes: u64,
    /// Tasks allocated from the typed cache at once.
    pub tasks: usize,
    /// Bytes kmalloc'd in the mixed round.
    pub kmalloc_bytes: usize,
    /// Free pages before the first allocation and after everything was freed.
    pub free_pages: (u64, u64),
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} MiB managed; {} tasks from a typed cache; {} bytes kmalloc'd; \
             free pages {} before, {} after",
            self.managed_bytes >> 20,
            self.tasks,
            self.kmalloc_bytes,
            self.free_pages.0,
            self.free_pages.1
        )
    }
}

/// Why [`run`] failed.
#[derive(Debug)]
pub enum Error {
    /// The memory map was refused.
    Map(MapError),
    /// The page allocator could not start.
    Init(InitError),
    /// An allocation failed.
    Slab(SlabError),
    /// A page allocation failed.
    Page(PageError),
    /// The allocator answered, but not as it should have.
    Check(&'static str),
}

impl From<MapError> for Error {
    fn from(e: MapError) -> Self {
        Error::Map(e)
    }
}
impl From<InitError> for Error {
    fn from(e: InitError) -> Self {
        Error::Init(e)
    }
}
impl From<SlabError> for Error {
    fn from(e: SlabError) -> Self {
        Error::Slab(e)
    }
}
impl From<PageError> for Error {
    fn from(e: PageError) -> Self {
        Error::Page(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Map(e) => write!(f, "memory map: {e}"),
            Error::Init(e) => write!(f, "page allocator: {e}"),
            Error::Slab(e) => write!(f, "allocation: {e}"),
            Error::Page(e) => write!(f, "pages: {e}"),
            Error::Check(what) => write!(f, "check failed: {what}"),
        }
    }
}

fn check(ok: bool, what: &'static str) -> Result<(), Error> {
    if ok { Ok(()) } else { Err(Error::Check(what)) }
}

/// Boots the allocator on the Toy board and exercises it. Call once: the allocator takes
/// the board's RAM for itself.
pub fn run() -> Result<Report, Error> {
    static STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    check(
        !STARTED.swap(true, core::sync::atomic::Ordering::Relaxed),
        "run called twice: RAM is in use",
    )?;
    let mut map = MemoryMap::new();
    map.add(RegionKind::Usable, RAM_PHYS, RAM_BYTES as u64)?;
    map.add(RegionKind::Reserved, RAM_PHYS, FIRMWARE_BYTES)?;
    let map = map.normalize()?;
    // SAFETY: the usable part of the map is the Toy board's RAM bank (`platform::RAM`),
    // reachable at `Toy::phys_to_virt`, which nothing but kmem uses from here on (the
    // flag above keeps a second run away). One CPU; the metadata goes where it fits.
    let pages = unsafe { PageAllocator::<Toy>::new(&map, ZoneLimits::FLAT, 1, None) }?;
    let options = Options {
        // A real board reads entropy from its firmware or an RNG; the Toy has a timer.
        seed: 0x5eed_0f70_u64 ^ <Toy as kmem::Arch>::cycles(),
        ..Options::default()
    };
    let kmem = Kmem::with_options(pages, options)?;
    let managed_bytes = kmem.meminfo().pages.managed_pages() * 4096;
    let before = free_pages(&kmem);

    let tasks = typed_cache(&kmem)?;
    let kmalloc_bytes = kmalloc_round(&kmem)?;
    page_blocks(&kmem)?;
    check(platform::irqs_on(), "interrupts left disabled")?;
    check(kmem.validate(None) == Some(0), "validate found problems")?;

    let after = free_pages(&kmem);
    check(after == before, "pages leaked")?;
    Ok(Report {
        managed_bytes,
        tasks,
        kmalloc_bytes,
        free_pages: (before, after),
    })
}

/// Free pages once every cache has given back what it can.
fn free_pages(kmem: &Kmem<Toy>) -> u64 {
    kmem.shrink_all();
    kmem.pages().drain_all_pcp();
    kmem.pages().info().free_pages()
}

/// A typed cache: objects of `Task`, owned handles, no `unsafe`.
fn typed_cache(kmem: &Kmem<Toy>) -> Result<usize, Error> {
    const N: usize = 300;
    let tasks = Cache::<Toy, Task>::new(kmem, "task", SlabFlags::NONE, Task::default)?;
    let mut live: [Option<kmem::CacheBox<'_, Toy, Task>>; N] = [const { None }; N];
    for (pid, slot) in live.iter_mut().enumerate() {
        let mut t = tasks.alloc(Gfp::KERNEL)?;
        t.pid = pid as u32;
        t.name[..4].copy_from_slice(b"init");
        *slot = Some(t);
    }
    check(
        tasks.info().active_objs == N,
        "cache does not count its tasks",
    )?;
    let sum: u64 = live.iter().flatten().map(|t| u64::from(t.pid)).sum();
    check(sum == (N * (N - 1) / 2) as u64, "a task lost its pid")?;
    live.iter_mut().step_by(2).for_each(|t| *t = None);
    check(tasks.info().active_objs == N / 2, "half freed")?;
    drop(live);
    // Every box is gone: the cache can go (dropping it would destroy it too).
    tasks.destroy().map_err(|(_, e)| e)?;
    Ok(N)
}

/// kmalloc through owned boxes, and once through the raw calls.
fn kmalloc_round(kmem: &Kmem<Toy>) -> Result<usize, Error> {
    let mut bytes = 0;
    for size in [8, 100, 1000, 4096, 70_000] {
        let mut buf = KBox::zeroed_bytes(kmem, size, Gfp::KERNEL)?;
        check(buf.iter().all(|&b| b == 0), "kzalloc'd bytes not zero")?;
        buf[size - 1] = 0xA5;
        bytes += size;
    }
    let table = KBox::new(kmem, [0u64; 64], Gfp::KERNEL)?;
    check(table.len() == 64, "boxed table")?;
    bytes += size_of_val(&*table);

    let raw = kmem.kmalloc(200, Gfp::KERNEL)?;
    // SAFETY: `raw` is a live 200-byte block, written within bounds.
    unsafe { raw.as_ptr().write_bytes(1, 200) };
    // SAFETY: `raw` came from kmalloc above and is not used after this.
    unsafe { kmem.kfree(raw.as_ptr()) }?;
    bytes += 200;
    Ok(bytes)
}

/// Page blocks straight from the page allocator.
fn page_blocks(kmem: &Kmem<Toy>) -> Result<(), Error> {
    let pa = kmem.alloc_pages(3, Gfp::KERNEL)?;
    check(pa % (4096 << 3) == 0, "an order-3 block is 32 KiB-aligned")?;
    check(
        pa >= RAM_PHYS + FIRMWARE_BYTES,
        "a block in the reserved firmware area",
    )?;
    // SAFETY: `pa` is the order-3 block just allocated, and nothing uses it.
    unsafe { kmem.pages().free_pages(pa, 3) }?;
    Ok(())
}
