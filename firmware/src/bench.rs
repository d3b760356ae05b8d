//! The in-firmware benchmark (`bench` in the monitor, `make bench BOARD=…`): kmem against
//! linked_list_allocator and talc built into the same image, each over an equal arena
//! carved from the page allocator — kmem as a second, private `Kmem` over its arena —
//! on every core at once. The peers sit behind kmem's own lock type, `IrqMutex` (a spin
//! lock taken with interrupts off, as any allocator usable from interrupt context must).
//! Workloads: (a) hot alloc+free pairs, (b) a batch allocated then
//! freed LIFO, FIFO and in random order, (c) batches of 64 through the bulk calls (kmem's
//! `kmalloc_bulk`/`kfree_bulk`; the peers, which have none, one call per object), (e) one
//! core against all cores, and producer/consumer pairs of cores, one allocating and
//! handing each object through a ring to the other, which frees it (remote frees); (f)
//! on aarch64 with MTE, kmem's hot pair with tagging off, async and sync, the mode
//! switched between runs, as ratios to off.
//!
//! Every run is timed on the wall: the working cores meet at a barrier, and the run lasts
//! from the first core's start to the last core's end (`cycles()`: the generic timer on
//! aarch64, the TSC on x86_64, both one clock for all cores). A figure is wall ticks per
//! operation per core, so a core that was descheduled or waited on a lock holder that
//! was counts against its peer. As in the host benchmark, every figure comes from rounds
//! — a warm-up round, then [`ROUNDS`] rounds in which each peer runs once, in turn — and
//! the table prints each peer's best and median figure and, per peer, the median of its
//! same-round ratios to kmem with their range: where best times and median ratio
//! disagree, the range shows that the rounds did (under emulation a vCPU descheduled
//! while it holds a spin lock stalls every core for a slice). Nothing here is asserted:
//! machines are noisy.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::bsp::device_driver::common::Deadline;
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
    /// Fills `out` with blocks of `l`, then frees them all: through bulk calls where the
    /// peer has them, else one call per block. False when an allocation failed.
    fn bulk(&self, l: Layout, out: &mut [*mut u8]) -> bool {
        for p in out.iter_mut() {
            *p = self.alloc(l);
        }
        let ok = out.iter().all(|p| !p.is_null());
        for &p in out.iter().filter(|p| !p.is_null()) {
            // SAFETY: allocated just above with l, freed once.
            unsafe { self.free(p, l) };
        }
        ok
    }
}

impl Peer for Kmem<Cpu> {
    fn alloc(&self, l: Layout) -> *mut u8 {
        self.kmalloc_aligned(l.size(), l.align(), Gfp::KERNEL)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, _: Layout) {
        let _ = self.kfree_any(p);
    }
    fn bulk(&self, l: Layout, out: &mut [*mut u8]) -> bool {
        if self.kmalloc_bulk(l.size(), Gfp::KERNEL, out).is_err() {
            return false;
        }
        // SAFETY: every block came from kmalloc_bulk just above and is freed once.
        unsafe { self.kfree_bulk(out) }.is_ok()
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
/// Each core's start and end of its timed part, and its operations.
static START: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static END: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static OPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Cores at the starting barrier of the current run.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);

const HOT: usize = 0;
const LIFO: usize = 1;
const FIFO: usize = 2;
const RANDOM: usize = 3;
const HANDOFF: usize = 4;
const BULK: usize = 5;
/// Objects per bulk call.
const BULK_BATCH: usize = 64;
/// How long the working cores wait for each other at the start of a run.
const BARRIER_TIMEOUT_US: u64 = 2_000_000;

/// Timed rounds after the warm-up round.
const ROUNDS: usize = 5;

const HOT_PAIRS: u64 = 40_000;
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

/// Waits until every working core of this run has arrived (one core when `solo`).
fn meet(solo: bool) -> Result<(), &'static str> {
    let n = if solo { 1 } else { smp::online() };
    ARRIVED.fetch_add(1, AcqRel);
    Deadline::after_us(BARRIER_TIMEOUT_US)
        .wait(|| ARRIVED.load(Acquire) >= n)
        .map_err(|_| "the cores did not meet at the start of a bench run")
}

fn job(cpu: usize) -> Result<(), &'static str> {
    let solo = SOLO.load(Relaxed) != 0;
    if solo && cpu != 0 {
        return Ok(());
    }
    let p = PEER.lock().ok_or("no peer")?;
    // SAFETY: the bench sets PEER to a live peer for the whole run_on_all.
    let peer = unsafe { &*p.0 };
    let l = Layout::from_size_align(SIZE.load(Relaxed), 8).map_err(|_| "layout")?;
    let work = WORK.load(Relaxed);
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
    let mut bulk = [core::ptr::null_mut(); BULK_BATCH];
    meet(solo)?;
    START[cpu].store(Cpu::cycles(), Relaxed);
    let ops = if work == HANDOFF {
        handoff(peer, l, cpu)?
    } else if work == HOT {
        for _ in 0..HOT_PAIRS {
            let o = peer.alloc(l);
            if o.is_null() {
                return Err("allocation failed");
            }
            // SAFETY: just allocated with l.
            unsafe { peer.free(core::hint::black_box(o), l) };
        }
        2 * HOT_PAIRS
    } else if work == BULK {
        for _ in 0..n / BULK_BATCH {
            if !peer.bulk(l, core::hint::black_box(&mut bulk)) {
                return Err("allocation failed");
            }
        }
        2 * (n / BULK_BATCH * BULK_BATCH) as u64
    } else {
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
        2 * n as u64
    };
    END[cpu].store(Cpu::cycles(), Relaxed);
    OPS[cpu].store(ops, Relaxed);
    Ok(())
}

/// Runs one workload on `peer`; returns (wall ticks per operation per working core, and
/// operations per wall tick), the wall running from the first core's start to the last
/// core's end.
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
        START[c].store(u64::MAX, Relaxed);
        END[c].store(0, Relaxed);
        OPS[c].store(0, Relaxed);
    }
    ARRIVED.store(0, Relaxed);
    for r in &RINGS {
        r.head.store(0, Relaxed);
        r.tail.store(0, Relaxed);
    }
    let r = smp::run_on_all(job);
    *PEER.lock() = None;
    r?;
    let ops: u64 = OPS.iter().map(|o| o.load(Relaxed)).sum();
    let start = START.iter().map(|t| t.load(Relaxed)).min().unwrap_or(0);
    let end = END.iter().map(|t| t.load(Relaxed)).max().unwrap_or(0);
    let wall = end.saturating_sub(start).max(1) as f64;
    let cores = if solo { 1 } else { smp::online() } as f64;
    Ok((wall * cores / ops.max(1) as f64, ops as f64 / wall))
}

fn median(mut v: [f64; ROUNDS]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[ROUNDS / 2]
}

/// What the rounds of one row showed, per peer: the best and median figure, and the
/// median, lowest and highest of its same-round ratios to peer 0 (kmem).
struct Rounds {
    best: [f64; 3],
    median: [f64; 3],
    ratio: [f64; 3],
    ratio_min: [f64; 3],
    ratio_max: [f64; 3],
}

impl Rounds {
    fn print(&self, label: &str) {
        println!(
            "{label:<22} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}  {:>5.2}x ({:.2}-{:.2})  {:>5.2}x ({:.2}-{:.2})",
            self.best[0],
            self.median[0],
            self.best[1],
            self.median[1],
            self.best[2],
            self.median[2],
            self.ratio[1],
            self.ratio_min[1],
            self.ratio_max[1],
            self.ratio[2],
            self.ratio_min[2],
            self.ratio_max[2],
        );
    }
}

/// Runs `f(peer)` for the three peers in rounds, each round starting one peer further
/// along.
fn rounds(mut f: impl FnMut(usize) -> Result<f64, &'static str>) -> Result<Rounds, &'static str> {
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
    let col = |i: usize| t.map(|row| row[i]);
    let ratios = |i: usize| t.map(|row| row[i] / row[0]);
    let fold =
        |v: [f64; ROUNDS], init: f64, pick: fn(f64, f64) -> f64| v.into_iter().fold(init, pick);
    Ok(Rounds {
        best: core::array::from_fn(|i| fold(col(i), f64::INFINITY, f64::min)),
        median: core::array::from_fn(|i| median(col(i))),
        ratio: core::array::from_fn(|i| median(ratios(i))),
        ratio_min: core::array::from_fn(|i| fold(ratios(i), f64::INFINITY, f64::min)),
        ratio_max: core::array::from_fn(|i| fold(ratios(i), 0.0, f64::max)),
    })
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
        "bench: {} cpus, arenas of {} KiB each; wall ticks per operation per core at {} MHz, best and median of {ROUNDS} rounds (lower is better); ratios: median of same-round ratios (lowest-highest)",
        smp::online(),
        a.bytes() / 1024,
        Cpu::cycles_per_second() / 1_000_000
    );
    println!(
        "{:<22} {:>15} {:>15} {:>15}  {:>17}  {:>17}",
        "workload", "kmem best/med", "talc best/med", "llalloc", "talc/kmem", "ll/kmem"
    );
    let mut rows: Vec<(&str, usize, usize)> = [8, 64, 257, 1000, 4096]
        .into_iter()
        .map(|s| ("(a) hot pair", HOT, s))
        .collect();
    rows.extend([
        ("(b) batch LIFO 64 B", LIFO, 64),
        ("(b) batch FIFO 64 B", FIFO, 64),
        ("(b) batch random 64 B", RANDOM, 64),
        ("(c) bulk 64 x 64 B", BULK, 64),
    ]);
    for (name, work, size) in rows {
        let r = rounds(|i| Ok(measure(peers[i], work, size, false)?.0))?;
        let label = if work == HOT {
            alloc::format!("{name} {size} B")
        } else {
            alloc::string::String::from(name)
        };
        r.print(&label);
    }
    // (e): throughput of every core together against one core, per peer, as the median
    // of the rounds' own figures, with their range. Wall-timed, so it cannot exceed the
    // cores the host really gives the guest.
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
    let range = |i: usize| {
        let v = scale.map(|row| row[i]);
        let lo = v.into_iter().fold(f64::INFINITY, f64::min);
        let hi = v.into_iter().fold(0.0, f64::max);
        (median(v), lo, hi)
    };
    let [k, t, l] = [range(0), range(1), range(2)];
    println!(
        "(e) {} cpus / 1 cpu, hot 64 B throughput (median, lowest-highest): kmem {:.2}x ({:.2}-{:.2}), talc {:.2}x ({:.2}-{:.2}), llalloc {:.2}x ({:.2}-{:.2})",
        smp::online(),
        k.0,
        k.1,
        k.2,
        t.0,
        t.1,
        t.2,
        l.0,
        l.1,
        l.2
    );
    // (e), remote frees: wall ticks per object handed over (all pairs together).
    if smp::online() >= 2 {
        let r = rounds(|i| Ok(1.0 / measure(peers[i], HANDOFF, 64, false)?.1))?;
        r.print("(e) producer/consumer");
    }
    #[cfg(target_arch = "aarch64")]
    mte_modes(&kmem)?;
    // The peers drop before the arenas they live in (declared first, dropped last).
    Ok(())
}

/// (f): the cost of each MTE mode, on kmem's hot pair of 64 B on the boot core (whose
/// checks `set_mode` switches), with the mode in force put back after.
#[cfg(target_arch = "aarch64")]
fn mte_modes(kmem: &dyn Peer) -> Result<(), &'static str> {
    use crate::arch::aarch64::mte::{self, Mode};
    const MODES: [Mode; 3] = [Mode::Off, Mode::Async, Mode::Sync];
    if !mte::present() {
        return Ok(());
    }
    let was = mte::mode();
    let r = rounds(|i| {
        mte::set_mode(MODES[i]);
        Ok(measure(kmem, HOT, 64, true)?.0)
    });
    mte::set_mode(was);
    let r = r?;
    println!(
        "(f) mte, hot pair 64 B on 1 cpu, median ticks: off {:.1}, async {:.1}, sync {:.1}; async/off {:.2}x ({:.2}-{:.2}), sync/off {:.2}x ({:.2}-{:.2})",
        r.median[0],
        r.median[1],
        r.median[2],
        r.ratio[1],
        r.ratio_min[1],
        r.ratio_max[1],
        r.ratio[2],
        r.ratio_min[2],
        r.ratio_max[2],
    );
    Ok(())
}
