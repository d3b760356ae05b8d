//! kmem side by side with the allocators a firmware author would otherwise pick, in one
//! process run over equal arenas. `make bench` runs it; BENCHMARKS.md explains the method.
//!
//! Usage: `cargo bench --features hosted --bench alloc -- [--quick] [--json FILE]`.
//! `--quick` shrinks every workload (a smoke run for `make test`). `--kfence` gives every
//! kmem instance a guard pool (`kmem.kfence=`, sampled guard pages at the default
//! interval), for the detector's cost.
//!
//! Every peer that needs a lock sits behind `spin::Mutex`, the lock kmem itself uses.
//! Each workload runs in rounds — a warm-up round, then timed rounds in which every peer
//! runs it once, in turn — so that a slow spell of a shared machine falls on all peers
//! alike. Per peer it keeps the best and the median time, and the ratio to kmem as the
//! median over rounds of (peer's time / kmem's time in the same round). The run ends with
//! the targets and how each fared; nothing is asserted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use kmem::hosted::{GuardedPages, HostArch, Region};
use kmem::mm::zone::ZoneLimits;
use kmem::{Gfp, Kmem, PageAllocator};

/// Arena every peer gets for the speed workloads.
const ARENA: usize = 64 << 20;
/// Arena for the heap-efficiency workload.
const EFF_ARENA: usize = 16 << 20;
/// CPU slots of kmem's allocator (the machine's cores, plus room for the bench threads).
const CPUS: usize = 4;

// ------------------------------------------------------------------------------------
// The peers.

/// What the workloads need from an allocator.
trait Heap: Sync {
    /// # Safety
    /// As `GlobalAlloc::alloc`.
    unsafe fn alloc(&self, l: Layout) -> *mut u8;
    /// # Safety
    /// As `GlobalAlloc::dealloc`.
    unsafe fn dealloc(&self, p: *mut u8, l: Layout);
    /// # Safety
    /// As `GlobalAlloc::realloc`.
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract; both blocks are live for min(old, new) bytes.
        unsafe {
            let n = self.alloc(Layout::from_size_align_unchecked(new, l.align()));
            if !n.is_null() {
                std::ptr::copy_nonoverlapping(p, n, l.size().min(new));
                self.dealloc(p, l);
            }
            n
        }
    }
    /// Fills `out` with blocks of layout `l` and frees them all: the peer's bulk calls
    /// where it has them, else one call per block. Returns false when it ran out.
    ///
    /// # Safety
    /// `l` has a non-zero size.
    unsafe fn bulk(&self, l: Layout, out: &mut [*mut u8]) -> bool {
        for p in out.iter_mut() {
            // SAFETY: the caller's contract.
            *p = unsafe { self.alloc(l) };
        }
        let ok = out.iter().all(|p| !p.is_null());
        for &p in out.iter().filter(|p| !p.is_null()) {
            // SAFETY: allocated above with l.
            unsafe { self.dealloc(p, l) };
        }
        ok
    }
}

fn region_pages(bytes: usize) -> (Region, PageAllocator<HostArch>) {
    region_pages_cpus(bytes, CPUS)
}

fn region_pages_cpus(bytes: usize, cpus: usize) -> (Region, PageAllocator<HostArch>) {
    let region = Region::new(bytes).expect("region");
    // SAFETY: the region outlives the allocator (callers keep both, allocator dropped first).
    let pages = unsafe {
        PageAllocator::new(&region.normalized().unwrap(), ZoneLimits::FLAT, cpus, None)
            .expect("page allocator")
    };
    (region, pages)
}

/// `--kfence`: every kmem instance samples into a guard pool of its own.
static KFENCE: AtomicBool = AtomicBool::new(false);

/// Objects in a `--kfence` instance's pool: KFENCE's default.
const KFENCE_OBJECTS: usize = 255;

/// kmem's kmalloc over its own region (page descriptors and caches carved from it).
struct KmemHeap {
    kmem: Box<Kmem<HostArch>>,
    _region: Region,
}

impl KmemHeap {
    fn new(bytes: usize) -> Self {
        Self::with_cpus(bytes, CPUS)
    }

    fn with_cpus(bytes: usize, cpus: usize) -> Self {
        let (region, pages) = region_pages_cpus(bytes, cpus);
        let mut kmem = Kmem::new(pages).expect("kmem");
        if KFENCE.load(Ordering::Relaxed) {
            // Each instance's pool lives on after it (a leaked mapping of 2 MiB a row).
            let pool = GuardedPages::new(KFENCE_OBJECTS).expect("a guard pool");
            kmem = kmem
                .with_guard_pool(pool.memory())
                .expect("the pool's records");
        }
        KmemHeap {
            kmem: Box::new(kmem),
            _region: region,
        }
    }

    /// Over `nodes` fake NUMA nodes of `bytes / nodes` each, with the hosted platform's
    /// CPUs of each node (`kmem::hosted::node_cpus`).
    fn with_nodes(bytes: usize, nodes: usize) -> Self {
        let region = Region::new(bytes).expect("region");
        let t = kmem::hosted::split_into_nodes(&region, nodes).expect("topology");
        // SAFETY: the region outlives the allocator (field order).
        let pages = unsafe {
            PageAllocator::with_topology(&region.normalized().unwrap(), ZoneLimits::FLAT, &t, None)
                .expect("page allocator")
        };
        KmemHeap {
            kmem: Box::new(Kmem::new(pages).expect("kmem")),
            _region: region,
        }
    }
}

impl Heap for KmemHeap {
    // Through GlobalAlloc, as a program whose global allocator kmem is calls it (and as
    // mimalloc and the system allocator are called).
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is GlobalAlloc::alloc's.
        unsafe { GlobalAlloc::alloc(&*self.kmem, l) }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract is GlobalAlloc::dealloc's.
        unsafe { GlobalAlloc::dealloc(&*self.kmem, p, l) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // Through GlobalAlloc, which knows the old layout (as talc's realloc does).
        // SAFETY: the caller's contract is GlobalAlloc::realloc's.
        unsafe { GlobalAlloc::realloc(&*self.kmem, p, l, new) }
    }
    unsafe fn bulk(&self, l: Layout, out: &mut [*mut u8]) -> bool {
        if self.kmem.kmalloc_bulk(l.size(), Gfp::KERNEL, out).is_err() {
            return false;
        }
        // SAFETY: every block came from kmalloc_bulk above and is not used again.
        unsafe { self.kmem.kfree_bulk(out) }.is_ok()
    }
}

/// kmem as a program's `#[global_allocator]` is: `hosted::Heap`, with its default CPU
/// slots.
struct HostedHeap(kmem::hosted::Heap);

impl HostedHeap {
    fn new(bytes: usize) -> Self {
        let h = kmem::hosted::Heap::with_capacity(bytes);
        h.get().expect("hosted heap");
        HostedHeap(h)
    }
}

impl Heap for HostedHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is GlobalAlloc::alloc's.
        unsafe { GlobalAlloc::alloc(&self.0, l) }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract is GlobalAlloc::dealloc's.
        unsafe { GlobalAlloc::dealloc(&self.0, p, l) }
    }
}

/// A peer that owns a plain arena from the OS.
struct Arena {
    base: *mut u8,
    size: usize,
}

impl Arena {
    fn new(size: usize) -> Arena {
        let l = Layout::from_size_align(size, 4096).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { System.alloc(l) };
        assert!(!base.is_null());
        Arena { base, size }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { System.dealloc(self.base, Layout::from_size_align(self.size, 4096).unwrap()) }
    }
}

type TalcCore = talc::base::Talc<talc::source::Manual, talc::DefaultBinning>;

struct TalcHeap(spin::Mutex<TalcCore>, #[allow(dead_code)] Arena);
// SAFETY: the allocator is only reached through its lock.
unsafe impl Sync for TalcHeap {}
// SAFETY: as for Sync.
unsafe impl Send for TalcHeap {}

impl TalcHeap {
    fn new(size: usize) -> Self {
        let a = Arena::new(size);
        let mut t = TalcCore::new(talc::source::Manual);
        // SAFETY: the arena is ours and outlives the allocator.
        unsafe { t.claim(a.base, a.size).expect("claim") };
        TalcHeap(spin::Mutex::new(t), a)
    }
}

impl Heap for TalcHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.0.lock().allocate(l) }.map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.lock().deallocate(p, l) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // As talc's own TalcLock::realloc: in place if it can, else move under the lock.
        let mut t = self.0.lock();
        // SAFETY: the caller's contract.
        unsafe {
            if t.try_realloc_in_place(p, l, new) {
                return p;
            }
            match t.allocate(Layout::from_size_align_unchecked(new, l.align())) {
                Some(n) => {
                    std::ptr::copy_nonoverlapping(p, n.as_ptr(), l.size().min(new));
                    t.deallocate(p, l);
                    n.as_ptr()
                }
                None => std::ptr::null_mut(),
            }
        }
    }
}

struct LinkedListHeap(
    spin::Mutex<linked_list_allocator::Heap>,
    #[allow(dead_code)] Arena,
);
// SAFETY: the allocator is only reached through its lock.
unsafe impl Sync for LinkedListHeap {}

impl LinkedListHeap {
    fn new(size: usize) -> Self {
        let a = Arena::new(size);
        // SAFETY: the arena is ours and outlives the allocator.
        let h = unsafe { linked_list_allocator::Heap::new(a.base, a.size) };
        LinkedListHeap(spin::Mutex::new(h), a)
    }
}

impl Heap for LinkedListHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(l)
            .map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.lock().deallocate(NonNull::new_unchecked(p), l) }
    }
}

struct BuddyHeap(
    spin::Mutex<buddy_system_allocator::Heap<32>>,
    #[allow(dead_code)] Arena,
);

impl BuddyHeap {
    fn new(size: usize) -> Self {
        let a = Arena::new(size);
        let mut h = buddy_system_allocator::Heap::<32>::empty();
        // SAFETY: the arena is ours and outlives the allocator.
        unsafe { h.init(a.base as usize, a.size) };
        BuddyHeap(spin::Mutex::new(h), a)
    }
}
// SAFETY: the allocator is only reached through its lock.
unsafe impl Sync for BuddyHeap {}

impl Heap for BuddyHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(l)
            .map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.lock().dealloc(NonNull::new_unchecked(p), l) }
    }
}

type TlsfCore = rlsf::Tlsf<'static, u32, u32, 28, 32>;

struct RlsfHeap(spin::Mutex<TlsfCore>, #[allow(dead_code)] Arena);
// SAFETY: the allocator is only reached through its lock.
unsafe impl Sync for RlsfHeap {}

impl RlsfHeap {
    fn new(size: usize) -> Self {
        let a = Arena::new(size);
        let mut t = TlsfCore::new();
        // SAFETY: the arena is ours and outlives the allocator.
        unsafe {
            t.insert_free_block_ptr(
                NonNull::new(std::ptr::slice_from_raw_parts_mut(a.base, a.size)).unwrap(),
            )
        };
        RlsfHeap(spin::Mutex::new(t), a)
    }
}

impl Heap for RlsfHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate(l)
            .map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe {
            self.0
                .lock()
                .deallocate(NonNull::new_unchecked(p), l.align())
        }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded; same alignment.
        unsafe {
            self.0
                .lock()
                .reallocate(
                    NonNull::new_unchecked(p),
                    Layout::from_size_align_unchecked(new, l.align()),
                )
                .map_or(std::ptr::null_mut(), |p| p.as_ptr())
        }
    }
}

/// slabmalloc's ZoneAllocator with kmem's page allocator as its page provider: 4 KiB
/// pages for objects up to 256 B, 2 MiB pages (order 9) above.
struct SlabmallocHeap {
    zone: spin::Mutex<slabmalloc::ZoneAllocator<'static>>,
    pages: Box<PageAllocator<HostArch>>,
    _region: Region,
}
// SAFETY: the zone allocator is only reached through its lock; the page allocator is Sync.
unsafe impl Sync for SlabmallocHeap {}

impl SlabmallocHeap {
    fn new(size: usize) -> Self {
        let (region, pages) = region_pages(size);
        SlabmallocHeap {
            zone: spin::Mutex::new(slabmalloc::ZoneAllocator::new()),
            pages: Box::new(pages),
            _region: region,
        }
    }
}

impl Heap for SlabmallocHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        use slabmalloc::{AllocationError, Allocator};
        let mut z = self.zone.lock();
        loop {
            match z.allocate(l) {
                Ok(p) => return p.as_ptr(),
                Err(AllocationError::OutOfMemory) => {
                    let small = l.size() <= slabmalloc::ZoneAllocator::MAX_BASE_ALLOC_SIZE;
                    let Ok(pa) = self.pages.alloc_pages(if small { 0 } else { 9 }, Gfp::ZERO)
                    else {
                        return std::ptr::null_mut();
                    };
                    // SAFETY: a fresh, zeroed, suitably aligned block of the page size
                    // slabmalloc expects; it lives as long as the page allocator, which
                    // outlives the zone allocator in this struct.
                    unsafe {
                        if small {
                            z.refill(l, &mut *(pa as *mut slabmalloc::ObjectPage<'static>))
                                .unwrap()
                        } else {
                            z.refill_large(
                                l,
                                &mut *(pa as *mut slabmalloc::LargeObjectPage<'static>),
                            )
                            .unwrap()
                        }
                    }
                }
                Err(_) => return std::ptr::null_mut(),
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        use slabmalloc::Allocator;
        // SAFETY: p came from this allocator.
        let _ = self
            .zone
            .lock()
            .deallocate(unsafe { NonNull::new_unchecked(p) }, l);
    }
}

struct SystemHeap;
impl Heap for SystemHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(l) }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.realloc(p, l, new) }
    }
}

struct MiHeap;
impl Heap for MiHeap {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { mimalloc::MiMalloc.realloc(p, l, new) }
    }
}

// ------------------------------------------------------------------------------------
// Harness.

struct Cfg {
    quick: bool,
    reps: usize,
}

impl Cfg {
    fn n(&self, full: usize) -> usize {
        if self.quick { (full / 50).max(1) } else { full }
    }
}

/// One peer's figures in a row: best and median over the rounds, and (time rows) the
/// median over rounds of its time / kmem's time in the same round.
#[derive(Clone, Copy)]
struct Fig {
    best: f64,
    median: f64,
    ratio: Option<f64>,
}

impl Fig {
    /// A figure measured once (percentages).
    fn once(v: f64) -> Fig {
        Fig {
            best: v,
            median: v,
            ratio: None,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs `work(i)` (ns per operation of peer `i`) for every `i` with `on[i]`: one warm-up
/// round, then `cfg.reps` timed rounds, each starting one peer further along so that no
/// peer always runs first. Ratios are against peer 0 (kmem), when it runs.
fn measure_rounds(cfg: &Cfg, on: &[bool], mut work: impl FnMut(usize) -> f64) -> Vec<Option<Fig>> {
    let ids: Vec<usize> = (0..on.len()).filter(|&i| on[i]).collect();
    for &i in &ids {
        work(i);
    }
    let mut times = vec![Vec::new(); on.len()];
    for round in 0..cfg.reps {
        for k in 0..ids.len() {
            let i = ids[(round + k) % ids.len()];
            times[i].push(work(i));
        }
    }
    (0..on.len())
        .map(|i| {
            on[i].then(|| {
                let t = &times[i];
                Fig {
                    best: t.iter().cloned().fold(f64::INFINITY, f64::min),
                    median: median(t.clone()),
                    ratio: on[0]
                        .then(|| median(t.iter().zip(&times[0]).map(|(p, k)| p / k).collect())),
                }
            })
        })
        .collect()
}

fn ns_per(start: Instant, ops: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / ops as f64
}

/// xorshift64*: the same sequence for every peer.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

// ------------------------------------------------------------------------------------
// Workloads. Each returns ns per operation (as its row says).

fn hot_pair<H: Heap>(h: &H, size: usize, iters: usize) -> f64 {
    let l = layout(size);
    let t = Instant::now();
    for _ in 0..iters {
        // SAFETY: a valid layout; the block is freed with it.
        unsafe {
            let p = h.alloc(black_box(l));
            black_box(p);
            h.dealloc(p, l);
        }
    }
    ns_per(t, iters)
}

#[derive(Clone, Copy)]
enum Order {
    Lifo,
    Fifo,
    Random,
}

/// Allocates `n` 64-byte objects, then frees them in `order`; ns per object (alloc+free).
fn batch<H: Heap>(h: &H, n: usize, order: Order, ptrs: &mut Vec<*mut u8>) -> f64 {
    let l = layout(64);
    ptrs.clear();
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: valid layout.
        ptrs.push(unsafe { h.alloc(l) });
    }
    match order {
        Order::Lifo => {
            while let Some(p) = ptrs.pop() {
                // SAFETY: allocated above with l.
                unsafe { h.dealloc(p, l) };
            }
        }
        Order::Fifo | Order::Random => {
            for &p in ptrs.iter() {
                // SAFETY: allocated above with l.
                unsafe { h.dealloc(p, l) };
            }
        }
    }
    ns_per(t, n)
}

/// A random permutation of `n` allocations is precomputed by shuffling the pointers
/// before the timed free loop, so shuffling is not timed.
fn batch_random<H: Heap>(h: &H, n: usize, seed: u64) -> f64 {
    let l = layout(64);
    let mut ptrs = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: valid layout.
        ptrs.push(unsafe { h.alloc(l) });
    }
    let alloc_ns = t.elapsed().as_nanos() as f64;
    let mut rng = Rng(seed);
    for i in (1..ptrs.len()).rev() {
        ptrs.swap(i, rng.below(i + 1));
    }
    let t = Instant::now();
    for &p in &ptrs {
        // SAFETY: allocated above with l.
        unsafe { h.dealloc(p, l) };
    }
    (alloc_ns + t.elapsed().as_nanos() as f64) / n as f64
}

/// `rounds` times: `batch` blocks of `size` bytes allocated and freed together, through
/// the peer's bulk calls where it has them; ns per block (alloc + free).
fn bulk<H: Heap>(h: &H, size: usize, batch: usize, rounds: usize) -> f64 {
    let l = layout(size);
    let mut out = vec![std::ptr::null_mut(); batch];
    let t = Instant::now();
    for _ in 0..rounds {
        // SAFETY: a non-zero size.
        assert!(unsafe { h.bulk(l, black_box(&mut out)) }, "bulk run out");
    }
    ns_per(t, rounds * batch)
}

/// talc's "random actions": alloc / free / realloc at random, 300 to 1000 live blocks,
/// sizes uniform in 1..=max. ns per action.
fn random_actions<H: Heap>(h: &H, max: usize, actions: usize) -> f64 {
    let mut rng = Rng(0x5EED_0000 + max as u64);
    let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(1100);
    let t = Instant::now();
    for _ in 0..actions {
        let pick = if live.len() < 300 {
            0
        } else if live.len() >= 1000 {
            1
        } else {
            rng.below(3)
        };
        match pick {
            0 => {
                let l = layout(1 + rng.below(max));
                // SAFETY: valid layout.
                let p = unsafe { h.alloc(l) };
                if !p.is_null() {
                    live.push((p, l));
                }
            }
            1 => {
                let (p, l) = live.swap_remove(rng.below(live.len()));
                // SAFETY: live block with its layout.
                unsafe { h.dealloc(p, l) };
            }
            _ => {
                let i = rng.below(live.len());
                let (p, l) = live[i];
                let new = 1 + rng.below(max);
                // SAFETY: live block with its layout; valid new size.
                let n = unsafe { h.realloc(p, l, new) };
                if !n.is_null() {
                    live[i] = (n, layout(new));
                }
            }
        }
    }
    let ns = ns_per(t, actions);
    for (p, l) in live {
        // SAFETY: live block with its layout.
        unsafe { h.dealloc(p, l) };
    }
    ns
}

/// Fills a fresh heap with random sizes in 1..=max until the first failure; returns
/// live requested bytes / arena bytes.
fn efficiency<H: Heap>(h: &H, arena: usize, max: usize) -> f64 {
    let mut rng = Rng(0xEFF1 + max as u64);
    let mut live = Vec::new();
    let mut bytes = 0usize;
    loop {
        let l = layout(1 + rng.below(max));
        // SAFETY: valid layout.
        let p = unsafe { h.alloc(l) };
        if p.is_null() {
            break;
        }
        bytes += l.size();
        live.push((p, l));
    }
    for (p, l) in live {
        // SAFETY: live block with its layout.
        unsafe { h.dealloc(p, l) };
    }
    bytes as f64 / arena as f64
}

fn independent<H: Heap>(h: &H, threads: usize, rounds: usize) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut rng = Rng(0x7EAD + t as u64);
                let sizes: Vec<Layout> = (0..100).map(|_| layout(8 + rng.below(193))).collect();
                let mut ptrs = Vec::with_capacity(100);
                for _ in 0..rounds {
                    for &l in &sizes {
                        // SAFETY: valid layout.
                        ptrs.push(unsafe { h.alloc(l) });
                    }
                    for (&p, &l) in ptrs.iter().zip(&sizes) {
                        // SAFETY: allocated just above with l.
                        unsafe { h.dealloc(p, l) };
                    }
                    ptrs.clear();
                }
            });
        }
    });
}

/// `threads` threads each run batches of 100 allocations (sizes 8..=200) and free them;
/// ns per operation pair across all threads (wall time / total pairs, thread start included).
fn independent_timed<H: Heap>(h: &H, threads: usize, rounds: usize) -> f64 {
    let t = Instant::now();
    independent(h, threads, rounds);
    ns_per(t, threads * rounds * 100)
}

/// One thread allocates 64-byte objects and hands them to another through a ring; the
/// other frees them (remote frees). ns per object.
fn producer_consumer<H: Heap>(h: &H, n: usize) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| pair(s, h, n, layout(64), None));
    ns_per(t, n)
}

/// Producers on fake node 0 allocate objects of 64 B and 1 KiB that consumers on node 1
/// free (kmem's remote-node frees; the other peers have no nodes): `pairs` producer and
/// consumer pairs, `n` objects each. ns per object over all pairs.
fn numa_remote_free<H: Heap>(h: &H, pairs: usize, n: usize) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for p in 0..pairs {
            pair(s, h, n, layout([64, 1024][p % 2]), Some((0, 1)));
        }
    });
    ns_per(t, pairs * n)
}

/// Spawns a producer of `n` blocks of `l` and a consumer that frees them, through a
/// ring; with `nodes`, the producer runs on the first fake node, the consumer on the
/// second.
fn pair<'s, H: Heap>(
    s: &'s std::thread::Scope<'s, '_>,
    h: &'s H,
    n: usize,
    l: Layout,
    nodes: Option<(usize, usize)>,
) {
    const CAP: usize = 1024;
    let ring: std::sync::Arc<Vec<AtomicUsize>> =
        std::sync::Arc::new((0..CAP).map(|_| AtomicUsize::new(0)).collect());
    let ends = std::sync::Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    {
        let (ring, ends) = (ring.clone(), ends.clone());
        s.spawn(move || {
            let (head, tail) = (&ends.0, &ends.1);
            if let Some((node, _)) = nodes {
                kmem::hosted::set_node(node);
            }
            for i in 0..n {
                // SAFETY: valid layout.
                let p = unsafe { h.alloc(l) } as usize;
                while i - tail.load(Ordering::Acquire) >= CAP {
                    std::thread::yield_now();
                }
                ring[i % CAP].store(p, Ordering::Relaxed);
                head.store(i + 1, Ordering::Release);
            }
        });
    }
    s.spawn(move || {
        let (head, tail) = (&ends.0, &ends.1);
        if let Some((_, node)) = nodes {
            kmem::hosted::set_node(node);
        }
        for i in 0..n {
            while head.load(Ordering::Acquire) <= i {
                std::thread::yield_now();
            }
            let p = ring[i % CAP].load(Ordering::Relaxed);
            tail.store(i + 1, Ordering::Release);
            // SAFETY: allocated by the producer with l, handed over once.
            unsafe { h.dealloc(p as *mut u8, l) };
        }
    });
}

// ------------------------------------------------------------------------------------
// The run.

const PEERS: [&str; 8] = [
    "kmem",
    "talc",
    "linked_list",
    "buddy_system",
    "rlsf",
    "slabmalloc",
    "system",
    "mimalloc",
];

/// A fresh instance of peer `i` over an arena of `bytes`.
fn make_peer(i: usize, bytes: usize) -> Box<dyn HeapDyn> {
    match i {
        0 => Box::new(KmemHeap::new(bytes)),
        1 => Box::new(TalcHeap::new(bytes)),
        2 => Box::new(LinkedListHeap::new(bytes)),
        3 => Box::new(BuddyHeap::new(bytes)),
        4 => Box::new(RlsfHeap::new(bytes)),
        5 => Box::new(SlabmallocHeap::new(bytes)),
        6 => Box::new(SystemHeap),
        _ => Box::new(MiHeap),
    }
}

/// Object-safe front over the generic workloads, so each is monomorphised per peer.
trait HeapDyn: Sync {
    fn hot_pair(&self, size: usize, iters: usize) -> f64;
    fn batch(&self, n: usize, order: Order) -> f64;
    fn random_actions(&self, max: usize, actions: usize) -> f64;
    fn efficiency(&self, arena: usize, max: usize) -> f64;
    fn independent(&self, threads: usize, rounds: usize) -> f64;
    fn producer_consumer(&self, n: usize) -> f64;
    fn numa_remote_free(&self, pairs: usize, n: usize) -> f64;
    fn bulk(&self, size: usize, batch: usize, rounds: usize) -> f64;
}

impl<H: Heap> HeapDyn for H {
    fn hot_pair(&self, size: usize, iters: usize) -> f64 {
        hot_pair(self, size, iters)
    }
    fn batch(&self, n: usize, order: Order) -> f64 {
        match order {
            Order::Random => batch_random(self, n, 42),
            _ => batch(self, n, order, &mut Vec::with_capacity(n)),
        }
    }
    fn random_actions(&self, max: usize, actions: usize) -> f64 {
        random_actions(self, max, actions)
    }
    fn efficiency(&self, arena: usize, max: usize) -> f64 {
        efficiency(self, arena, max)
    }
    fn independent(&self, threads: usize, rounds: usize) -> f64 {
        independent_timed(self, threads, rounds)
    }
    fn producer_consumer(&self, n: usize) -> f64 {
        producer_consumer(self, n)
    }
    fn numa_remote_free(&self, pairs: usize, n: usize) -> f64 {
        numa_remote_free(self, pairs, n)
    }
    fn bulk(&self, size: usize, batch: usize, rounds: usize) -> f64 {
        bulk(self, size, batch, rounds)
    }
}

/// One result row: a workload, its unit, and per peer its figures or None.
struct Row {
    group: &'static str,
    name: String,
    unit: &'static str,
    vals: Vec<Option<Fig>>,
}

impl Row {
    /// Peer `i`'s time over kmem's (> 1: kmem is faster), if both ran.
    fn ratio(&self, i: usize) -> Option<f64> {
        self.vals[i].and_then(|f| f.ratio)
    }

    /// kmem's best figure.
    fn kmem(&self) -> Option<f64> {
        self.vals[0].map(|f| f.best)
    }
}

fn print_row(r: &Row) {
    let mut line = format!("{:<28}", r.name);
    for v in &r.vals {
        match v {
            Some(f) => line += &format!(" {:>12.2}", f.best),
            None => line += &format!(" {:>12}", "-"),
        }
    }
    println!("{line}");
    if r.vals.iter().any(|v| v.is_some_and(|f| f.ratio.is_some())) {
        let mut line = format!("{:<28}", "  ratio peer/kmem (median)");
        for v in &r.vals {
            match v.and_then(|f| f.ratio) {
                Some(x) => line += &format!(" {:>11.2}x", x),
                None => line += &format!(" {:>12}", "-"),
            }
        }
        println!("{line}");
    }
}

/// One of the targets, as this run measured it.
struct Target {
    target: &'static str,
    measured: String,
    /// The same figure for mimalloc, the fastest reference, where it has one.
    reference: Option<String>,
    met: bool,
}

const TALC: usize = 1;
const BUDDY: usize = 3;
const SYSTEM: usize = 6;
const MIMALLOC: usize = 7;
/// kmem's heap in the oversubscribed row: the README's global allocator.
const PROGRAM_HEAP: usize = 1 << 30;
/// Threads of the oversubscribed row: far more than this machine's cores, so that lock
/// holders are descheduled while others wait.
const OVERSUBSCRIBED: usize = 64;

/// The targets, from the rows this run produced (a target whose rows did not run is left
/// out). Each is reported with the figures behind it; none is asserted.
fn targets(rows: &[Row]) -> Vec<Target> {
    let group = |g: &'static str| rows.iter().filter(move |r| r.group == g);
    let short = |r: &Row| {
        r.name
            .trim_start_matches("hot pair ")
            .trim_start_matches("random actions ")
            .trim_start_matches("heap efficiency ")
            .trim_start_matches("kmem metadata, ")
            .trim_start_matches("page ")
            .trim_end_matches(" pair")
            .to_string()
    };
    let list = |v: &[(String, f64)], unit: &str| {
        v.iter()
            .map(|(n, x)| format!("{n} {x:.2}{unit}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    // Per-row ratios of `peer` (or, with `inverse`, kmem's time over the peer's).
    let per_row = |g: &'static str, peer: usize, inverse: bool| -> Vec<(String, f64)> {
        group(g)
            .filter_map(|r| {
                r.ratio(peer)
                    .map(|x| (short(r), if inverse { 1.0 / x } else { x }))
            })
            .collect()
    };
    let mi_over_talc = |g: &'static str| -> Vec<(String, f64)> {
        group(g)
            .filter_map(|r| Some((short(r), r.ratio(TALC)? / r.ratio(MIMALLOC)?)))
            .collect()
    };
    let hot_mi = per_row("hot", MIMALLOC, true);
    if !hot_mi.is_empty() {
        out.push(Target {
            target: "hot pair <= 1.0x mimalloc's time",
            measured: format!("kmem / mimalloc time: {}", list(&hot_mi, "x")),
            reference: None,
            met: hot_mi.iter().all(|(_, x)| *x <= 1.0),
        });
    }
    let bulk: Vec<(String, f64)> = group("bulk")
        .filter_map(|r| Some((r.name.trim_start_matches("bulk ").to_string(), r.kmem()?)))
        .collect();
    if !bulk.is_empty() {
        out.push(Target {
            target: "bulk 64 B <= 5 ns per object (alloc + free)",
            measured: format!("kmem ns per object: {}", list(&bulk, "")),
            reference: None,
            met: bulk.iter().all(|(_, x)| *x <= 5.0),
        });
    }
    // "kmem at least `min` times talc's speed" over the rows of `g`, with mimalloc's own
    // ratio to talc for reference.
    let vs_talc = |g: &'static str, target: &'static str, min: f64| {
        let r = per_row(g, TALC, false);
        let mi = mi_over_talc(g);
        (!r.is_empty()).then(|| Target {
            target,
            measured: format!("talc / kmem time: {}", list(&r, "x")),
            reference: (!mi.is_empty()).then(|| format!("talc / mimalloc: {}", list(&mi, "x"))),
            met: r.iter().all(|(_, x)| *x >= min),
        })
    };
    out.extend(vs_talc("hot", "hot pair >= 4x faster than talc", 4.0));
    let batch_talc = per_row("batch", TALC, false);
    let batch_mi = per_row("batch", MIMALLOC, true);
    if !batch_talc.is_empty() && !batch_mi.is_empty() {
        let short_batch = |v: Vec<(String, f64)>| -> Vec<(String, f64)> {
            v.into_iter()
                .map(|(n, x)| (n.trim_start_matches("batch 10k x 64 B ").to_string(), x))
                .collect()
        };
        let (t, m) = (short_batch(batch_talc), short_batch(batch_mi));
        out.push(Target {
            target: "batch 10k x 64 B >= 1.5x talc and <= 1.0x mimalloc's time",
            measured: format!(
                "talc / kmem time: {}; kmem / mimalloc time: {}",
                list(&t, "x"),
                list(&m, "x")
            ),
            reference: None,
            met: t.iter().all(|(_, x)| *x >= 1.5) && m.iter().all(|(_, x)| *x <= 1.0),
        });
    }
    out.extend(vs_talc(
        "random",
        "random actions >= 1.5x talc's throughput",
        1.5,
    ));
    let threads: Vec<&Row> = group("threads").collect();
    let scaling = |peer: usize| -> Option<f64> {
        let one = threads.iter().find(|r| r.name.starts_with("1 "))?.vals[peer]?;
        let two = threads.iter().find(|r| r.name.starts_with("2 "))?.vals[peer]?;
        Some(one.median / two.median)
    };
    if let Some(k) = scaling(0) {
        out.push(Target {
            target: "2 threads independent >= 1.9x one thread's throughput",
            measured: format!("kmem {k:.2}x (medians)"),
            reference: scaling(MIMALLOC).map(|m| format!("mimalloc {m:.2}x")),
            met: k >= 1.9,
        });
    }
    let pc = per_row("threads", TALC, false)
        .into_iter()
        .filter(|(n, _)| n == "producer/consumer")
        .collect::<Vec<_>>();
    if let Some((_, x)) = pc.first() {
        out.push(Target {
            target: "producer/consumer >= 3x talc",
            measured: format!("talc / kmem time: {x:.2}x"),
            reference: mi_over_talc("threads")
                .into_iter()
                .find(|(n, _)| n == "producer/consumer")
                .map(|(_, m)| format!("talc / mimalloc: {m:.2}x")),
            met: *x >= 3.0,
        });
    }
    if let Some((_, x)) = per_row("numa", TALC, false).first() {
        out.push(Target {
            target: "numa remote free (2 fake nodes) >= 3x talc, as producer/consumer",
            measured: format!("talc / kmem time: {x:.2}x"),
            reference: mi_over_talc("numa")
                .first()
                .map(|(_, m)| format!("talc / mimalloc: {m:.2}x")),
            met: *x >= 3.0,
        });
    }
    if let Some(r) = group("over").next() {
        let sys = r.ratio(SYSTEM).map(|x| 1.0 / x);
        let mi = r.ratio(MIMALLOC).map(|x| 1.0 / x);
        let figs: Vec<(String, f64)> = [("system", sys), ("mimalloc", mi)]
            .into_iter()
            .filter_map(|(n, x)| Some((n.to_string(), x?)))
            .collect();
        if !figs.is_empty() {
            out.push(Target {
                target: "oversubscribed 64 threads: kmem <= 1.2x system's and mimalloc's time",
                measured: format!("kmem / peer time: {}", list(&figs, "x")),
                reference: None,
                met: figs.iter().all(|(_, x)| *x <= 1.2),
            });
        }
    }
    // kmem's own figures in the "eff" rows whose name starts with `prefix`.
    let kmem_figs = |prefix: &'static str| -> Vec<(String, f64)> {
        group("eff")
            .filter(|r| r.name.starts_with(prefix))
            .filter_map(|r| Some((short(r), r.kmem()?)))
            .collect()
    };
    let eff = kmem_figs("heap");
    if !eff.is_empty() {
        out.push(Target {
            target: "heap efficiency >= 90 %",
            measured: list(&eff, " %"),
            reference: None,
            met: eff.iter().all(|(_, x)| *x >= 90.0),
        });
    }
    let page = per_row("page", BUDDY, false);
    if !page.is_empty() {
        out.push(Target {
            target: "page alloc/free >= 2x faster than buddy_system_allocator",
            measured: format!("buddy_system / kmem time: {}", list(&page, "x")),
            reference: None,
            met: page.iter().all(|(_, x)| *x >= 2.0),
        });
    }
    let meta = kmem_figs("kmem metadata");
    if !meta.is_empty() {
        out.push(Target {
            target: "page descriptors + slab metadata <= 0.8 % of managed memory",
            measured: list(&meta, " %"),
            reference: None,
            met: meta.iter().all(|(_, x)| *x <= 0.8),
        });
    }
    out
}

fn print_targets(ts: &[Target]) {
    println!("\ntargets (reported, never asserted):");
    for t in ts {
        println!(
            "  [{}] {}",
            if t.met { " met " } else { "missed" },
            t.target
        );
        println!("           {}", t.measured);
        if let Some(r) = &t.reference {
            println!("           for reference, {r}");
        }
    }
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Page allocator: alloc+free pairs of `order` on kmem's PageAllocator and on
/// buddy_system_allocator's FrameAllocator (behind spin::Mutex), same arena.
fn page_rows(cfg: &Cfg) -> Vec<Row> {
    let mut rows = Vec::new();
    let (region, pages) = region_pages(ARENA);
    let mut fa = buddy_system_allocator::FrameAllocator::<33>::new();
    let info = pages.info();
    // Give the frame allocator the same frames kmem manages (the region minus kmem's
    // metadata), as frame numbers.
    let start = (info.meta.end >> 12) as usize;
    let end = ((region.start() + region.size()) >> 12) as usize;
    fa.add_frame(start, end);
    let fa = spin::Mutex::new(fa);
    for order in [0u32, 3, 9, 10] {
        let iters = cfg.n(match order {
            0 | 3 => 500_000,
            _ => 200_000,
        });
        let on: Vec<bool> = (0..PEERS.len()).map(|i| i == 0 || i == 3).collect();
        let vals = measure_rounds(cfg, &on, |i| {
            let t = Instant::now();
            if i == 0 {
                for _ in 0..iters {
                    let pa = pages.alloc_pages(black_box(order), Gfp::KERNEL).unwrap();
                    // SAFETY: pa is the block just allocated, at this order.
                    unsafe { pages.free_pages(black_box(pa), order) }.unwrap();
                }
            } else {
                for _ in 0..iters {
                    let f = fa.lock().alloc(black_box(1 << order)).unwrap();
                    fa.lock().dealloc(black_box(f), 1 << order);
                }
            }
            ns_per(t, iters)
        });
        rows.push(Row {
            group: "page",
            name: format!("page order {order} pair"),
            unit: "ns",
            vals,
        });
    }
    // The allocator has no Drop; the region goes last.
    let _ = pages;
    drop(region);
    rows
}

/// Page descriptors (with the slabs' bookkeeping in them) and the per-CPU and shared
/// object arrays, as a fraction of managed memory, after filling an `arena`-byte kmem
/// with 1–200-byte requests until the first failure (the 200-byte efficiency fill). A
/// slab's pages hold only objects and colour space, so there is no other management.
fn metadata_fraction(arena: usize) -> f64 {
    let h = KmemHeap::new(arena);
    let mut rng = Rng(7);
    let mut live = Vec::new();
    loop {
        let s = 1 + rng.below(200);
        match h.kmem.kmalloc(s, Gfp::KERNEL) {
            Ok(p) => live.push(p),
            Err(_) => break,
        }
    }
    let info = h.kmem.meminfo();
    let managed = info.pages.managed_pages() as f64 * 4096.0;
    let arrays = info.array_pages as f64 * 4096.0;
    let desc = info.pages.meta.size() as f64;
    for p in live {
        // SAFETY: every pointer in `live` is a block of this kmem, freed once.
        let _ = unsafe { h.kmem.kfree(p.as_ptr()) };
    }
    println!(
        "metadata after 200-B fill: descriptors and page lists {:.3} %, caches and their arrays {:.3} % of {:.0} MiB managed",
        desc / managed * 100.0,
        arrays / managed * 100.0,
        managed / (1 << 20) as f64
    );
    (desc + arrays) / managed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    KFENCE.store(args.iter().any(|a| a == "--kfence"), Ordering::Relaxed);
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    // `--only hot,batch,bulk,random,eff,threads,numa,over,page` runs those groups.
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let cfg = Cfg {
        quick,
        reps: if quick { 2 } else { 5 },
    };
    let want = |g: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == g));
    let mut header = format!("{:<28}", "workload (ns/op; best)");
    for p in PEERS {
        header += &format!(" {:>12}", p);
    }
    println!(
        "kmem per-CPU slots owned lock-free by threads: {}",
        kmem::hosted::owned_slots()
    );
    println!("{header}");
    let mut rows: Vec<Row> = Vec::new();
    let emit = |r: Row, rows: &mut Vec<Row>| {
        print_row(&r);
        rows.push(r);
    };
    // `--peers kmem,talc` runs only those (for profiling under callgrind).
    let peers: Option<String> = args
        .iter()
        .position(|a| a == "--peers")
        .and_then(|i| args.get(i + 1).cloned());
    let on = |i: usize| {
        peers
            .as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == PEERS[i]))
    };
    let on_all: Vec<bool> = (0..PEERS.len()).map(on).collect();
    // Fresh instances of every peer for one row, all alive while its rounds run.
    let all_peers = |work: &mut dyn FnMut(&dyn HeapDyn) -> f64| {
        let heaps: Vec<Option<Box<dyn HeapDyn>>> = (0..PEERS.len())
            .map(|i| on(i).then(|| make_peer(i, ARENA)))
            .collect();
        measure_rounds(&cfg, &on_all, |i| work(&**heaps[i].as_ref().unwrap()))
    };

    if want("hot") {
        for size in [8, 24, 64, 100, 129, 257, 1000, 3000, 4096] {
            let iters = cfg.n(500_000);
            let vals = all_peers(&mut |h| h.hot_pair(size, iters));
            let r = Row {
                group: "hot",
                name: format!("hot pair {size} B"),
                unit: "ns",
                vals,
            };
            emit(r, &mut rows);
        }
    }
    if want("batch") {
        for (name, order) in [
            ("LIFO", Order::Lifo),
            ("FIFO", Order::Fifo),
            ("random", Order::Random),
        ] {
            let n = if quick { 1000 } else { 10_000 };
            let vals = all_peers(&mut |h| h.batch(n, order));
            emit(
                Row {
                    group: "batch",
                    name: format!("batch 10k x 64 B {name}"),
                    unit: "ns",
                    vals,
                },
                &mut rows,
            );
        }
    }
    if want("bulk") {
        for batch in [16, 64, 256] {
            let rounds = cfg.n(2_000_000 / batch);
            let vals = all_peers(&mut |h| h.bulk(64, batch, rounds));
            emit(
                Row {
                    group: "bulk",
                    name: format!("bulk {batch} x 64 B"),
                    unit: "ns",
                    vals,
                },
                &mut rows,
            );
        }
    }
    if want("random") {
        for max in [200, 30_000] {
            let actions = cfg.n(if max == 200 { 300_000 } else { 100_000 });
            let vals = all_peers(&mut |h| h.random_actions(max, actions));
            emit(
                Row {
                    group: "random",
                    name: format!("random actions <= {max} B"),
                    unit: "ns",
                    vals,
                },
                &mut rows,
            );
        }
    }
    if want("eff") {
        for max in [200, 30_000] {
            let vals = (0..PEERS.len())
                .map(|i| {
                    (i < 6 && on(i)).then(|| {
                        Fig::once(make_peer(i, EFF_ARENA).efficiency(EFF_ARENA, max) * 100.0)
                    })
                })
                .collect();
            emit(
                Row {
                    group: "eff",
                    name: format!("heap efficiency <= {max} B"),
                    unit: "%",
                    vals,
                },
                &mut rows,
            );
        }
        // The per-cache arrays are a fixed cost, large against 16 MiB: the same figure
        // on a 16× larger arena shows the part that grows with memory.
        for arena in [EFF_ARENA, 16 * EFF_ARENA] {
            let m = metadata_fraction(arena) * 100.0;
            let mut vals = vec![None; PEERS.len()];
            vals[0] = Some(Fig::once(m));
            emit(
                Row {
                    group: "eff",
                    name: format!("kmem metadata, {} MiB", arena >> 20),
                    unit: "%",
                    vals,
                },
                &mut rows,
            );
        }
    }
    if want("threads") {
        let rounds = cfg.n(5_000);
        for threads in [1, 2] {
            let vals = all_peers(&mut |h| h.independent(threads, rounds));
            emit(
                Row {
                    group: "threads",
                    name: format!("{threads} thread(s) independent"),
                    unit: "ns",
                    vals,
                },
                &mut rows,
            );
        }
        let n = cfg.n(300_000);
        let vals = all_peers(&mut |h| h.producer_consumer(n));
        emit(
            Row {
                group: "threads",
                name: "producer/consumer".into(),
                unit: "ns",
                vals,
            },
            &mut rows,
        );
    }
    if want("numa") {
        // kmem over two fake nodes; every other peer as in the other rows.
        let n = cfg.n(200_000);
        let heaps: Vec<Option<Box<dyn HeapDyn>>> = (0..PEERS.len())
            .map(|i| {
                on(i).then(|| -> Box<dyn HeapDyn> {
                    if i == 0 {
                        Box::new(KmemHeap::with_nodes(ARENA, 2))
                    } else {
                        make_peer(i, ARENA)
                    }
                })
            })
            .collect();
        let vals = measure_rounds(&cfg, &on_all, |i| {
            heaps[i].as_ref().unwrap().numa_remote_free(2, n)
        });
        emit(
            Row {
                group: "numa",
                name: "numa remote free 2 pairs".into(),
                unit: "ns",
                vals,
            },
            &mut rows,
        );
    }
    if want("over") {
        // Only the peers built for threads: the others sit behind one spin lock, whose
        // descheduled holder would make them crawl for minutes here.
        let on_over: Vec<bool> = (0..PEERS.len())
            .map(|i| on(i) && [0, SYSTEM, MIMALLOC].contains(&i))
            .collect();
        // kmem as a program's global allocator, the README's `hosted::Heap`, with the
        // CPU slots it sizes to this machine.
        let heaps: Vec<Option<Box<dyn HeapDyn>>> = (0..PEERS.len())
            .map(|i| {
                on_over[i].then(|| match i {
                    0 => Box::new(HostedHeap::new(PROGRAM_HEAP)) as _,
                    _ => make_peer(i, ARENA),
                })
            })
            .collect();
        if on_over[0] {
            println!(
                "(oversubscribed: kmem is hosted::Heap::with_capacity({} MiB), {} CPU slots)",
                PROGRAM_HEAP >> 20,
                kmem::hosted::default_cpus(PROGRAM_HEAP)
            );
        }
        let rounds = cfg.n(5_000);
        let vals = measure_rounds(&cfg, &on_over, |i| {
            heaps[i]
                .as_ref()
                .unwrap()
                .independent(OVERSUBSCRIBED, rounds)
        });
        emit(
            Row {
                group: "over",
                name: format!("oversubscribed {OVERSUBSCRIBED} threads"),
                unit: "ns",
                vals,
            },
            &mut rows,
        );
    }
    if want("page") {
        for r in page_rows(&cfg) {
            emit(r, &mut rows);
        }
    }
    let ts = targets(&rows);
    print_targets(&ts);
    if let Some(path) = json {
        let mut out = String::from("{\n  \"peers\": [");
        out += &PEERS
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        out += "],\n  \"rows\": [\n";
        let rs: Vec<String> = rows
            .iter()
            .map(|r| {
                let vals: Vec<String> = r
                    .vals
                    .iter()
                    .map(|v| match v {
                        Some(f) => match f.ratio {
                            Some(x) => format!("[{:.4}, {:.4}, {x:.4}]", f.best, f.median),
                            None => format!("[{:.4}, {:.4}]", f.best, f.median),
                        },
                        None => "null".into(),
                    })
                    .collect();
                format!(
                    "    {{\"group\": \"{}\", \"name\": \"{}\", \"unit\": \"{}\", \"vals\": [{}]}}",
                    r.group,
                    r.name,
                    r.unit,
                    vals.join(", ")
                )
            })
            .collect();
        out += &rs.join(",\n");
        out += "\n  ],\n  \"targets\": [\n";
        let tj: Vec<String> = ts
            .iter()
            .map(|t| {
                format!(
                    "    {{\"target\": {}, \"measured\": {}, \"reference\": {}, \"met\": {}}}",
                    json_str(t.target),
                    json_str(&t.measured),
                    t.reference.as_deref().map_or("null".into(), json_str),
                    t.met
                )
            })
            .collect();
        out += &tj.join(",\n");
        out += "\n  ]\n}\n";
        std::fs::write(&path, out).expect("write json");
        eprintln!("wrote {path}");
    }
}
