//! The in-firmware benchmark (`bench` in the monitor, `make bench BOARD=…`): kmem against
//! linked_list_allocator and talc built into the same image, each over an equal arena
//! carved from the page allocator — kmem as a second, private `Kmem` over its arena —
//! on every core at once. The peers sit behind kmem's own lock type, `IrqMutex` (a spin
//! lock taken with interrupts off, as any allocator usable from interrupt context must).
//! Workloads: (a) hot alloc+free pairs, (b) a batch allocated then
//! freed LIFO, FIFO and in random order, (e) one core against all cores, and producer/
//! consumer pairs of cores, one allocating and handing each object through a ring to the
//! other, which frees it (remote frees). Figures are
//! counter ticks per operation (`cycles()`; the generic timer on aarch64, the TSC on
//! x86_64) and each peer's ratio to kmem. As in the host benchmark, every figure comes
//! from rounds — a warm-up round, then [`ROUNDS`] rounds in which each peer runs once, in
//! turn — and the ratio is the median over rounds of (peer / kmem in the same round), so
//! that a slow spell of the machine (a descheduled vCPU under emulation) falls on all peers
//! alike. Nothing here is asserted: machines are noisy.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::println;
use crate::unchecked::{KmemAny, PagesAny};
use kmem::Arch;
use kmem::Gfp;
use kmem::kmalloc::Kmem;
use kmem::mm::MAX_ORDER;
use kmem::mm::PageAllocator;
use kmem::mm::memmap::{MemoryMap, PAGE_SIZE, RegionKind};
use kmem::mm::zone::ZoneLimits;
use kmem::sync::IrqMutex;

use super::{kmem, pages, smp};

/// A peer under test; `Sync` because every core drives it at once.
trait Peer: Sync {
    fn alloc(&self, l: Layout) -> *mut u8;
    /// # Safety
    /// `p` came from `alloc(l)` of this peer and is freed once.
    unsafe fn free(&self, p: *mut u8, l: Layout);
}

impl Peer for Kmem<Cpu> {
    fn alloc(&self, l: Layout) -> *mut u8 {
        self.kmalloc_aligned(l.size(), l.align(), Gfp::KERNEL)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, _: Layout) {
        let _ = self.kfree_any(p);
    }
}

struct Talc(IrqMutex<Cpu, talc::base::Talc<talc::source::Manual, talc::DefaultBinning>>);

impl Peer for Talc {
    fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: a valid layout; talc hands out memory of its arena.
        unsafe { self.0.lock().allocate(l) }.map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.0.lock().deallocate(p, l) }
    }
}

struct LinkedList(IrqMutex<Cpu, linked_list_allocator::Heap>);

impl Peer for LinkedList {
    fn alloc(&self, l: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(l)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract; p is not null.
        unsafe { self.0.lock().deallocate(NonNull::new_unchecked(p), l) }
    }
}

/// The peer the jobs drive, as a raw fat pointer (set only while a run is going on).
static PEER: spin::Mutex<Option<PeerPtr>> = spin::Mutex::new(None);

#[derive(Clone, Copy)]
struct PeerPtr(*const dyn Peer);
// SAFETY: peers are Sync and outlive every job that reads the pointer.
unsafe impl Send for PeerPtr {}

/// What the jobs do: workload, object size, and whether only CPU 0 works.
static WORK: AtomicUsize = AtomicUsize::new(0);
static SIZE: AtomicUsize = AtomicUsize::new(64);
static SOLO: AtomicUsize = AtomicUsize::new(0);
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static OPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

const HOT: usize = 0;
const LIFO: usize = 1;
const FIFO: usize = 2;
const RANDOM: usize = 3;
const HANDOFF: usize = 4;

/// Timed rounds after the warm-up round.
const ROUNDS: usize = 5;

const HOT_PAIRS: u64 = 4_000;
/// Objects per batch, over all cores together.
const BATCH: usize = 10_000;
/// Objects each producer hands to its consumer.
const HANDOFFS: usize = 10_000;
/// Slots of a producer/consumer ring.
const RING: usize = 1024;

/// One producer/consumer pair's ring: the producer stores object `i` in slot `i % RING`
/// and then publishes `head = i + 1`; the consumer takes it and publishes `tail = i + 1`.
/// A null object (a failed allocation) ends the run.
struct Ring {
    head: AtomicUsize,
    tail: AtomicUsize,
    slots: [AtomicUsize; RING],
}

static RINGS: [Ring; MAX_CPUS / 2] = [const {
    Ring {
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
        slots: [const { AtomicUsize::new(0) }; RING],
    }
}; MAX_CPUS / 2];

/// The producer/consumer job: online CPUs pair up in id order (ranks 0 and 1, 2 and 3, …;
/// an odd one out idles); returns the objects this CPU freed.
fn handoff(peer: &dyn Peer, l: Layout, cpu: usize) -> Result<u64, &'static str> {
    let rank = smp::online_below(cpu);
    if rank / 2 >= smp::online() / 2 {
        return Ok(0);
    }
    let ring = &RINGS[rank / 2];
    if rank.is_multiple_of(2) {
        for i in 0..HANDOFFS {
            let o = peer.alloc(l);
            while i - ring.tail.load(Acquire) >= RING {
                core::hint::spin_loop();
            }
            ring.slots[i % RING].store(o as usize, Relaxed);
            ring.head.store(i + 1, Release);
            if o.is_null() {
                return Err("allocation failed");
            }
        }
        return Ok(0);
    }
    for i in 0..HANDOFFS {
        while ring.head.load(Acquire) <= i {
            core::hint::spin_loop();
        }
        let o = ring.slots[i % RING].load(Relaxed);
        ring.tail.store(i + 1, Release);
        if o == 0 {
            return Err("allocation failed");
        }
        // SAFETY: the producer allocated it with l and handed it over once.
        unsafe { peer.free(o as *mut u8, l) };
    }
    Ok(HANDOFFS as u64)
}

fn job(cpu: usize) -> Result<(), &'static str> {
    if SOLO.load(Relaxed) != 0 && cpu != 0 {
        return Ok(());
    }
    let p = PEER.lock().ok_or("no peer")?;
    // SAFETY: the bench sets PEER to a live peer for the whole run_on_all.
    let peer = unsafe { &*p.0 };
    let l = Layout::from_size_align(SIZE.load(Relaxed), 8).map_err(|_| "layout")?;
    let work = WORK.load(Relaxed);
    let (ticks, ops) = if work == HANDOFF {
        let t = Cpu::cycles();
        let freed = handoff(peer, l, cpu)?;
        (Cpu::cycles() - t, freed)
    } else if work == HOT {
        let t = Cpu::cycles();
        for _ in 0..HOT_PAIRS {
            let o = peer.alloc(l);
            if o.is_null() {
                return Err("allocation failed");
            }
            // SAFETY: just allocated with l.
            unsafe { peer.free(core::hint::black_box(o), l) };
        }
        (Cpu::cycles() - t, 2 * HOT_PAIRS)
    } else {
        let n = BATCH / smp::online();
        let mut objs: Vec<usize> = Vec::with_capacity(n);
        let mut order: Vec<usize> = (0..n).collect();
        if work == RANDOM {
            let mut r = 0x2545_F491_4F6C_DD1Du64 ^ cpu as u64;
            for i in (1..n).rev() {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                order.swap(i, r as usize % (i + 1));
            }
        } else if work == LIFO {
            order.reverse();
        }
        let t = Cpu::cycles();
        for _ in 0..n {
            let o = peer.alloc(l);
            if o.is_null() {
                return Err("allocation failed");
            }
            objs.push(o as usize);
        }
        for &i in &order {
            // SAFETY: each object was allocated with l and is freed once.
            unsafe { peer.free(objs[i] as *mut u8, l) };
        }
        (Cpu::cycles() - t, 2 * n as u64)
    };
    TICKS[cpu].store(ticks, Relaxed);
    OPS[cpu].store(ops, Relaxed);
    Ok(())
}

/// Runs one workload on `peer`; returns (ticks per operation, operations per tick).
fn measure(
    peer: &dyn Peer,
    work: usize,
    size: usize,
    solo: bool,
) -> Result<(f64, f64), &'static str> {
    // SAFETY (of the lifetime change): the pointer is cleared below, before `peer` can go.
    let ptr: *const dyn Peer = unsafe { core::mem::transmute(peer) };
    *PEER.lock() = Some(PeerPtr(ptr));
    WORK.store(work, Relaxed);
    SIZE.store(size, Relaxed);
    SOLO.store(usize::from(solo), Relaxed);
    for c in 0..MAX_CPUS {
        TICKS[c].store(0, Relaxed);
        OPS[c].store(0, Relaxed);
    }
    for r in &RINGS {
        r.head.store(0, Relaxed);
        r.tail.store(0, Relaxed);
    }
    let r = smp::run_on_all(job);
    *PEER.lock() = None;
    r?;
    let ops: u64 = OPS.iter().map(|o| o.load(Relaxed)).sum();
    let ticks: u64 = TICKS.iter().map(|t| t.load(Relaxed)).sum();
    let wall = TICKS
        .iter()
        .map(|t| t.load(Relaxed))
        .max()
        .unwrap_or(1)
        .max(1);
    Ok((ticks as f64 / ops.max(1) as f64, ops as f64 / wall as f64))
}

fn median(mut v: [f64; ROUNDS]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[ROUNDS / 2]
}

/// Runs `f(peer)` for the three peers in rounds, each round starting one peer further
/// along; returns per peer the best figure and the median of its same-round ratios to
/// peer 0 (kmem).
fn rounds(
    mut f: impl FnMut(usize) -> Result<f64, &'static str>,
) -> Result<([f64; 3], [f64; 3]), &'static str> {
    for i in 0..3 {
        f(i)?;
    }
    // t[round][peer]
    let mut t = [[0f64; 3]; ROUNDS];
    for (r, row) in t.iter_mut().enumerate() {
        for k in 0..3 {
            let i = (r + k) % 3;
            row[i] = f(i)?;
        }
    }
    let best = core::array::from_fn(|i| t.iter().map(|row| row[i]).fold(f64::INFINITY, f64::min));
    let ratio = core::array::from_fn(|i| median(t.map(|row| row[i] / row[0])));
    Ok((best, ratio))
}

/// An arena of 2^MAX_ORDER pages from the page allocator (given back on drop).
struct Arena(u64);

impl Arena {
    fn new() -> Result<Arena, &'static str> {
        kmem()
            .alloc_pages(MAX_ORDER, Gfp::KERNEL)
            .map(Arena)
            .map_err(|_| "no memory for an arena")
    }
    fn bytes(&self) -> usize {
        (PAGE_SIZE as usize) << MAX_ORDER
    }
    fn base(&self) -> *mut u8 {
        Cpu::phys_to_virt(self.0) as *mut u8
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let _ = pages().free_pages_any(self.0, MAX_ORDER);
    }
}

/// Runs every workload on every peer and prints the table.
pub fn run() -> Result<(), &'static str> {
    let (a, b, c) = (Arena::new()?, Arena::new()?, Arena::new()?);
    let mut map = MemoryMap::new();
    map.add(RegionKind::Usable, a.0, a.bytes() as u64)
        .map_err(|_| "arena map")?;
    // SAFETY: the arena is ours until `a` drops, after the allocator built on it.
    let kpages = unsafe {
        PageAllocator::<Cpu>::new(
            &map.normalize().map_err(|_| "arena map")?,
            ZoneLimits::FLAT,
            pages().nr_cpus(),
            None,
        )
    }
    .map_err(|_| "arena too small for kmem's metadata")?;
    let kmem = Kmem::new(kpages).map_err(|_| "arena too small for kmem's caches")?;
    let mut t = talc::base::Talc::new(talc::source::Manual);
    // SAFETY: arena b is ours while `t` lives (it is dropped before b).
    unsafe { t.claim(b.base(), b.bytes()) }.ok_or("talc claim")?;
    let talc = Talc(IrqMutex::new(t));
    // SAFETY: arena c is ours while the heap lives (it is dropped before c).
    let ll = LinkedList(IrqMutex::new(unsafe {
        linked_list_allocator::Heap::new(c.base(), c.bytes())
    }));
    let peers: [&dyn Peer; 3] = [&kmem, &talc, &ll];
    println!(
        "bench: {} cpus, arenas of {} KiB each; ticks per operation at {} MHz, best of {ROUNDS} rounds (lower is better); ratios: median of same-round ratios",
        smp::online(),
        a.bytes() / 1024,
        Cpu::cycles_per_second() / 1_000_000
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "workload", "kmem", "talc", "llalloc", "talc/kmem", "ll/kmem"
    );
    let mut rows: Vec<(&str, usize, usize)> = [8, 64, 257, 1000, 4096]
        .into_iter()
        .map(|s| ("(a) hot pair", HOT, s))
        .collect();
    rows.extend([
        ("(b) batch LIFO 64 B", LIFO, 64),
        ("(b) batch FIFO 64 B", FIFO, 64),
        ("(b) batch random 64 B", RANDOM, 64),
    ]);
    for (name, work, size) in rows {
        let (t, ratio) = rounds(|i| Ok(measure(peers[i], work, size, false)?.0))?;
        let label = if work == HOT {
            alloc::format!("{name} {size} B")
        } else {
            alloc::string::String::from(name)
        };
        println!(
            "{label:<22} {:>8.1} {:>8.1} {:>8.1} {:>9.2}x {:>9.2}x",
            t[0], t[1], t[2], ratio[1], ratio[2]
        );
    }
    // (e): throughput of every core together against one core, per peer, as the median
    // of the rounds' own figures.
    // scale[round][peer]
    let mut scale = [[0f64; 3]; ROUNDS];
    for (r, row) in scale.iter_mut().enumerate() {
        for k in 0..3 {
            let i = (r + k) % 3;
            let one = measure(peers[i], HOT, 64, true)?.1;
            let all = measure(peers[i], HOT, 64, false)?.1;
            row[i] = all / one;
        }
    }
    let scale: [f64; 3] = core::array::from_fn(|i| median(scale.map(|row| row[i])));
    println!(
        "(e) {} cpus / 1 cpu, hot 64 B throughput: kmem {:.2}x, talc {:.2}x, llalloc {:.2}x",
        smp::online(),
        scale[0],
        scale[1],
        scale[2]
    );
    // (e), remote frees: wall ticks per object handed over (all pairs together).
    if smp::online() >= 2 {
        let (t, ratio) = rounds(|i| Ok(1.0 / measure(peers[i], HANDOFF, 64, false)?.1))?;
        println!(
            "{:<22} {:>8.1} {:>8.1} {:>8.1} {:>9.2}x {:>9.2}x",
            "(e) producer/consumer", t[0], t[1], t[2], ratio[1], ratio[2]
        );
    }
    // The peers drop before the arenas they live in (declared first, dropped last).
    Ok(())
}
