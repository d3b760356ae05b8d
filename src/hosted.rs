//! The hosted platform: the whole allocator inside an ordinary process.
//!
//! [`Region`] takes a block of memory from the OS and presents it as physical RAM (the
//! process's virtual addresses serve as physical ones, so `phys_to_virt` is the
//! identity). [`HostArch`] maps threads to CPU slots: each thread takes the lowest free id
//! on first use and gives it back at exit, so live threads own distinct slots and enter
//! them without a lock (see `crate::percpu`); ids past a slot count fold onto existing
//! slots, which then fall back to their locks. Host tests and benchmarks run on this, and
//! users can try kmem here before porting it. [`Heap`] makes all of it the process's
//! `#[global_allocator]`, `fork()`-safe as glibc's malloc is (`pthread_atfork`), growing
//! by chunks of address space as the program needs them and giving empty chunks back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;

use crate::arch::Arch;
use crate::mm::PageAllocator;
use crate::mm::buddy::MAX_ORDER;
use crate::mm::zone::ZoneLimits;

mod cpu_ids;
#[cfg(unix)]
mod fork;
mod grow;
mod guard_pool;
mod numa;
mod region;
pub use cpu_ids::owned_slots;
pub use grow::{DEFAULT_CHUNK, HeapStats};
pub use guard_pool::GuardedPages;
pub use numa::{NODE_CPUS, node_cpus, set_node, split_into_nodes};
pub use region::{REGION_ALIGN, Region};

use cpu_ids::{CPU, MAX_IDS, membarrier, thread_id};

/// [`Arch`] for a process: threads are CPUs, interrupts do not exist.
///
/// # Examples
/// ```
/// use kmem::Arch;
/// use kmem::hosted::{HostArch, Region};
/// let ram = Region::new(1 << 20).unwrap();
/// // The process's addresses stand in for physical ones.
/// assert_eq!(HostArch::phys_to_virt(ram.start()) as u64, ram.start());
/// HostArch::irq_restore(HostArch::irq_save()); // no interrupts to mask
/// ```
pub struct HostArch;

/// Steps of a spin-wait ([`Arch::relax`]) before a hosted thread yields: some
/// microseconds of `pause`, far more than a critical section of kmem's takes when its
/// holder keeps running.
const SPINS_BEFORE_YIELD: u32 = 64;

impl Arch for HostArch {
    type IrqState = ();
    const OWNED_IDS: usize = MAX_IDS;

    /// Owners pay only a compiler fence; `remote_barrier` fences them from outside.
    #[inline]
    fn owner_fence() {
        std::sync::atomic::compiler_fence(Ordering::SeqCst)
    }

    /// A full memory barrier on every thread of the process that is running now (see
    /// above); a no-op where no thread can own a slot.
    fn remote_barrier() {
        membarrier::barrier()
    }

    /// Spins for as long as a running holder needs to leave a critical section; past
    /// that, the holder is likely descheduled (more threads than cores), and the core
    /// is given to it — or to anyone else with work — instead.
    #[inline]
    fn relax(spins: u32) {
        if spins < SPINS_BEFORE_YIELD {
            core::hint::spin_loop()
        } else {
            std::thread::yield_now()
        }
    }

    #[inline]
    fn cpu_id() -> usize {
        thread_id()
    }

    /// The id without claiming one: a thread's first call gets `UNCLAIMED`, which owns
    /// no slot.
    #[inline]
    fn cpu_id_fast() -> usize {
        CPU.try_with(Cell::get).unwrap_or(MAX_IDS)
    }

    #[inline]
    fn irq_save() {}

    #[inline]
    fn irq_restore(_: ()) {}

    #[inline]
    fn prefetch(addr: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch hint reads nothing architecturally and never faults, whatever
        // the address; SSE is part of every x86_64 host target.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                addr as *const i8,
            )
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as on x86_64; an unmapped address makes it a no-op.
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
        };
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = addr;
    }

    fn cycles() -> u64 {
        // Miri does not model rdtsc: it gets the clock below.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        // SAFETY: rdtsc has no preconditions on x86_64.
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
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
}

/// The fewest CPU slots a [`Heap`] gets unless told otherwise (see [`default_cpus`]).
///
/// # Examples
/// ```
/// use kmem::hosted::{DEFAULT_CPUS, Heap};
/// let heap = Heap::with_capacity(16 << 20);
/// assert_eq!(heap.get().unwrap().pages().nr_cpus(), DEFAULT_CPUS);
/// ```
pub const DEFAULT_CPUS: usize = 8;

/// CPUs this process may run on. Called while a heap starts, perhaps inside the
/// program's first allocation: it must not allocate, which `available_parallelism` does
/// on Linux (it reads the cgroup's quota from files).
fn cores() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain bits; an all-zero set is valid.
        let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: the set is ours and as large as the size passed; pid 0 is this thread.
        let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        // SAFETY: CPU_COUNT only reads the set.
        let n = unsafe { libc::CPU_COUNT(&set) };
        if r == 0 { n.max(1) as usize } else { 1 }
    }
    #[cfg(not(target_os = "linux"))]
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Live threads per core that a default [`Heap`] gives a slot of their own: a thread
/// without one shares a slot, and every thread of a shared slot takes its lock on every
/// call, which a descheduled holder stalls. Programs run several threads per core (pools
/// sized to the cores, plus threads of their own).
const THREADS_PER_CORE: usize = 32;

/// Heap bytes per default slot: a slot's per-CPU object arrays take some 14 KiB over
/// all the kmalloc caches, which this keeps near 0.2 % of the heap.
const BYTES_PER_SLOT: usize = 8 << 20;

/// CPU slots of a [`Heap`] of `capacity` bytes unless told otherwise: sized to the
/// machine's cores — a slot for each of 32 threads per core, so that the threads of an
/// oversubscribed program each own one — as far as the heap's size allows (one per
/// 8 MiB); at least [`DEFAULT_CPUS`], at most the exclusive thread ids there are.
///
/// # Examples
/// ```
/// use kmem::hosted::{DEFAULT_CPUS, Heap, default_cpus};
/// assert_eq!(default_cpus(16 << 20), DEFAULT_CPUS, "a small heap keeps the fewest");
/// let big = Heap::with_capacity(1 << 30);
/// assert_eq!(big.get().unwrap().pages().nr_cpus(), default_cpus(1 << 30));
/// assert!(default_cpus(1 << 30) <= (1 << 30) / (8 << 20), "one slot per 8 MiB at most");
/// ```
pub fn default_cpus(capacity: usize) -> usize {
    cores()
        .saturating_mul(THREADS_PER_CORE)
        .min(capacity / BYTES_PER_SLOT)
        .clamp(DEFAULT_CPUS, MAX_IDS)
}

/// kmem as a process's heap and global allocator.
///
/// The first chunk of memory is taken from the OS on first use; when the allocator runs
/// out, its out-of-memory hook maps another chunk of address space and adds it as a
/// region (up to the heap's limit, if it has one), with page descriptors for that chunk
/// only. Chunks that become wholly free go back to the OS: [`Heap::trim`] does it at
/// once, and every 2^16 frees (or 64 MiB freed) of a thread it is tried automatically
/// (module `grow`).
/// When the OS refuses memory, or the limit is reached, allocation returns null — the
/// program's own out-of-memory path — never an abort inside kmem. Blocks past
/// [`LARGEST_BLOCK`] go to the system allocator.
///
/// `fork()` is safe while other threads allocate (on Unix): the first heap to start
/// registers `pthread_atfork` handlers, as glibc's malloc does, which take every lock of
/// every live heap before the fork, in the allocator's lock order, and give them back
/// after it in the parent and in the child; the child's thread keeps its CPU slot and the
/// slots of the parent's other threads, which the child does not have, become free.
///
/// # Examples
/// ```standalone_crate
/// #[global_allocator]
/// static KMEM: kmem::hosted::Heap = kmem::hosted::Heap::with_capacity(64 << 20);
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect(); // from kmem
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
///     assert!(KMEM.get().is_some());
/// }
/// ```
pub struct Heap {
    /// Bytes of the first chunk.
    initial: usize,
    /// Least bytes of each further chunk.
    chunk: usize,
    /// Most bytes of all chunks together; `usize::MAX` for no limit.
    limit: usize,
    /// `None`: [`default_cpus`] of the limit, decided on first use.
    cpus: Option<usize>,
    /// Fake NUMA nodes the first chunk is split into ([`Heap::with_nodes`]); 1 for none.
    nodes: usize,
    state: spin::Once<Option<StatePtr>>,
}

/// A started heap: the allocator and its region, in a block of their own from the system
/// allocator, so that they stay where they are when the `Heap` moves — the fork handlers
/// reach every live heap by its address.
struct HeapState {
    kmem: crate::Kmem<HostArch>,
    /// Chunks added at run time, given back when empty: after `kmem`, so unmapped after
    /// it is gone.
    chunks: grow::Chunks,
    /// The allocator's first memory: after `kmem`, so dropped after it.
    _region: Region,
    /// The next live heap, for the fork handlers (written under `fork::LOCK`).
    #[cfg(unix)]
    next: core::sync::atomic::AtomicPtr<HeapState>,
    /// What the fork handlers hold from `prepare` to `parent`/`child` (touched only by
    /// the forking thread, under `fork::LOCK`).
    #[cfg(unix)]
    held: std::cell::UnsafeCell<Option<crate::kmalloc::ForkHeld<HostArch>>>,
}

/// A started heap's state, owned by its `Heap`.
struct StatePtr(core::ptr::NonNull<HeapState>);

// SAFETY: the state is the allocator (Sync) and its region, reached only through shared
// references but for the fields the fork handlers use under their lock; it is freed only
// by the `Heap`'s drop, after it has left the fork handlers' list.
unsafe impl Send for StatePtr {}
// SAFETY: as for Send.
unsafe impl Sync for StatePtr {}

impl Heap {
    /// A global allocator of at most `capacity` bytes with [`default_cpus`]`(capacity)`
    /// CPU slots: its first chunk is `capacity` or [`DEFAULT_CHUNK`], whichever is
    /// smaller, and it grows by chunks up to `capacity`.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::hosted::Heap;
    /// static HEAP: Heap = Heap::with_capacity(16 << 20);
    /// let kmem = HEAP.get().expect("16 MiB from the OS");
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub const fn with_capacity(capacity: usize) -> Heap {
        let mut heap = Heap::with_capacity_and_cpus(capacity, 0);
        heap.cpus = None;
        heap
    }

    /// A global allocator of at most `capacity` bytes with `cpus` CPU slots (threads
    /// beyond them share slots); chunks as in [`Heap::with_capacity`].
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Heap;
    /// let heap = Heap::with_capacity_and_cpus(16 << 20, 2);
    /// assert_eq!(heap.get().unwrap().pages().nr_cpus(), 2);
    /// ```
    pub const fn with_capacity_and_cpus(capacity: usize, cpus: usize) -> Heap {
        let initial = if capacity < DEFAULT_CHUNK {
            capacity
        } else {
            DEFAULT_CHUNK
        };
        Heap::growable(initial, Some(capacity), cpus)
    }

    /// A global allocator whose first chunk is `initial` bytes, that grows by chunks of
    /// at least `initial` bytes (a quarter of what it holds, once that is more, so that
    /// a large heap needs few regions) up to `limit` bytes in all, or without limit.
    ///
    /// # Examples
    /// ```
    /// use kmem::Gfp;
    /// use kmem::hosted::Heap;
    /// static HEAP: Heap = Heap::growable(4 << 20, Some(64 << 20), 2);
    /// let kmem = HEAP.get().unwrap();
    /// let blocks: Vec<_> = (0..8).map(|_| kmem.alloc_pages(10, Gfp::KERNEL)).collect();
    /// assert!(blocks.iter().all(|b| b.is_ok()), "8 x 4 MiB from a 4 MiB first chunk");
    /// assert!(HEAP.stats().chunks > 0);
    /// for b in blocks {
    ///     unsafe { kmem.pages().free_pages(b?, 10) }?; // SAFETY: not used again.
    /// }
    /// assert!(HEAP.trim() > 0, "empty chunks went back to the OS");
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub const fn growable(initial: usize, limit: Option<usize>, cpus: usize) -> Heap {
        Heap {
            initial,
            chunk: initial,
            limit: match limit {
                Some(l) => l,
                None => usize::MAX,
            },
            cpus: Some(cpus),
            nodes: 1,
            state: spin::Once::new(),
        }
    }

    /// The allocator, set up on first call; `None` if the OS refused the first chunk.
    ///
    /// # Examples
    /// ```
    /// use kmem::hosted::Heap;
    /// let heap = Heap::with_capacity(16 << 20);
    /// let first = heap.get().unwrap();
    /// assert!(core::ptr::eq(first, heap.get().unwrap()));
    /// // A huge capacity costs only its first chunk.
    /// assert!(Heap::with_capacity(1 << 62).get().is_some());
    /// assert!(Heap::growable(1 << 62, None, 1).get().is_none());
    /// ```
    pub fn get(&self) -> Option<&crate::Kmem<HostArch>> {
        self.state
            .call_once(|| {
                let region = Region::new(self.initial.min(self.limit))?;
                let map = region.normalized().ok()?;
                let cpus = self.cpus.unwrap_or_else(|| default_cpus(self.limit));
                let topology = numa::topology(&region, self.nodes, cpus)?;
                // SAFETY: the region is the allocator's for as long as both live (they
                // are stored side by side and dropped together, the allocator first).
                let pages = unsafe {
                    PageAllocator::with_topology(&map, ZoneLimits::FLAT, &topology, None).ok()?
                };
                // Magazines sized for the memory the heap may grow to, not its first chunk.
                let options = crate::Options {
                    sized_for: Some(self.limit),
                    ..crate::Options::default()
                };
                let kmem = crate::Kmem::with_options(pages, options).ok()?;
                let state = HeapState {
                    kmem,
                    chunks: grow::Chunks::new(self.chunk, self.limit, region.size() as usize),
                    _region: region,
                    #[cfg(unix)]
                    next: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
                    #[cfg(unix)]
                    held: std::cell::UnsafeCell::new(None),
                };
                // SAFETY: a non-zero layout; the block is checked for null and written
                // before use.
                let p = unsafe { System.alloc(Layout::new::<HeapState>()) }.cast::<HeapState>();
                let p = core::ptr::NonNull::new(p)?;
                // SAFETY: a fresh block of HeapState's layout.
                unsafe { p.as_ptr().write(state) };
                // SAFETY: the state stays at this address until the Heap drops it,
                // allocator and all.
                unsafe { grow::install(p.as_ptr()) };
                #[cfg(unix)]
                fork::register(p.as_ptr());
                Some(StatePtr(p))
            })
            .as_ref()
            // SAFETY: the state lives until the Heap is dropped, which `&self` outlasts.
            .map(|s| unsafe { &s.0.as_ref().kmem })
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        if let Some(Some(s)) = self.state.get() {
            let p = s.0.as_ptr();
            #[cfg(unix)]
            fork::unregister(p);
            // SAFETY: `get` wrote the state into this System block; it has left the fork
            // handlers' list, and `&mut self` says no reference into it remains.
            unsafe {
                core::ptr::drop_in_place(p);
                System.dealloc(p.cast(), Layout::new::<HeapState>());
            }
        }
    }
}

/// Largest block kmem serves: the largest buddy block (4 MiB), where Linux's kmalloc
/// tops out too. A hosted program's bigger requests go to the system allocator.
///
/// # Examples
/// ```
/// use std::alloc::{GlobalAlloc, Layout};
/// use kmem::hosted::{Heap, LARGEST_BLOCK};
/// let heap = Heap::with_capacity(16 << 20);
/// let big = Layout::from_size_align(2 * LARGEST_BLOCK, 8).unwrap();
/// // SAFETY: a non-zero layout; the block is freed with the same layout.
/// unsafe {
///     let p = heap.alloc(big); // from the system allocator
///     assert!(!p.is_null());
///     heap.dealloc(p, big);
/// }
/// ```
pub const LARGEST_BLOCK: usize = (crate::mm::memmap::PAGE_SIZE as usize) << MAX_ORDER;

fn to_system(l: &Layout) -> bool {
    l.size() > LARGEST_BLOCK || l.align() > LARGEST_BLOCK
}

// SAFETY: blocks come from kmem's own GlobalAlloc or — for layouts past LARGEST_BLOCK,
// decided by the layout alone on both sides — from and to the system allocator.
// Failure is null.
unsafe impl GlobalAlloc for Heap {
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
            grow::count_free(self, l.size());
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
