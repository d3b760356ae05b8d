//! Interrupt context: every core takes timer interrupts ("ticks", `bsp::ticks`) while it
//! runs the stress workload, and every tick allocates and frees with `Gfp::ATOMIC` —
//! objects of several caches (one-page and multi-page slabs) and page blocks. The allocator keeps
//! interrupts off on its per-CPU and locked paths, so a tick that arrives there is taken
//! when the path ends, on top of whatever the interrupted code was doing between two
//! calls. A deadlock (the job times out), a corrupted or refused object, a stray
//! interrupt, an inconsistency `validate` finds, or a page not given back fails the test.

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::bsp::{Board, board, ticks};
use crate::unchecked::{KmemAny, PagesAny};
use kmem::Arch;
use kmem::Gfp;
use kmem::mm::PhysAddr;

use super::slab_tests::{conserving, ensure};
use super::{kmem, smp, workload};

type R = Result<(), &'static str>;

/// Time between ticks: short enough for hundreds of ticks per core during the stress
/// run under QEMU's emulation, long enough that the handler is not all a core does.
const PERIOD_US: u64 = 200;
/// Objects each core's ticks keep live; slot `s` always holds a `SIZES[s % 8]` object.
const HELD: usize = 16;
const SIZES: [usize; 8] = [16, 40, 96, 200, 700, 2048, 5000, 40_000];
/// Every this many ticks, a tick also takes a page block of this order (and gives back
/// the one it took last time).
const PAGE_EVERY: u64 = 4;
const PAGE_ORDER: u32 = 1;
/// How long every core stresses the allocator while the ticks run, at least, per 8
/// cores online (a core that gets its job late under emulation still overlaps the rest).
const SECONDS: u64 = 1;
/// Fewest ticks each core must take (5000 are due a second). [`SECONDS`] give every core
/// that many under emulation with a few vCPUs per host core; with many (64 vCPUs on two
/// host cores) QEMU runs some vCPUs seldom, and a vCPU takes a tick only when it runs, so
/// each core keeps on stressing until it has had its own share, up to [`MAX_SECONDS`].
const MIN_TICKS: u64 = 100;
/// When a core that has not had its ticks gives up: at 64 cores QEMU has left one core
/// with 12 ticks in 8 minutes.
const MAX_SECONDS: u64 = 600;

/// Cycle counts: the least every core stresses until, and when it gives up waiting for
/// its ticks.
static STRESS_END: AtomicU64 = AtomicU64::new(0);
static GIVE_UP: AtomicU64 = AtomicU64::new(0);

static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static OBJS: [[AtomicUsize; HELD]; MAX_CPUS] =
    [const { [const { AtomicUsize::new(0) }; HELD] }; MAX_CPUS];
/// The byte written at both ends of each held object.
static TAGS: [[AtomicU8; HELD]; MAX_CPUS] =
    [const { [const { AtomicU8::new(0) }; HELD] }; MAX_CPUS];
/// Each core's held page block (physical address + 1, 0 for none).
static PAGE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NO_MEMORY: AtomicU64 = AtomicU64::new(0);
static BROKEN: AtomicU64 = AtomicU64::new(0);

/// Checks and frees the object in `cpu`'s slot `slot`, if any.
fn release(cpu: usize, slot: usize) {
    let p = OBJS[cpu][slot].swap(0, Relaxed) as *mut u8;
    if p.is_null() {
        return;
    }
    let (size, tag) = (SIZES[slot % SIZES.len()], TAGS[cpu][slot].load(Relaxed));
    // SAFETY: the slot held a live object of `size` bytes, now taken out of it.
    let intact = unsafe { p.read_volatile() == tag && p.add(size - 1).read_volatile() == tag };
    if !intact || kmem().kfree_any(p).is_err() {
        BROKEN.fetch_add(1, Relaxed);
    }
}

fn release_page(cpu: usize) {
    let held = PAGE[cpu].swap(0, Relaxed);
    if held != 0
        && kmem()
            .pages()
            .free_pages_any((held - 1) as PhysAddr, PAGE_ORDER)
            .is_err()
    {
        BROKEN.fetch_add(1, Relaxed);
    }
}

/// One tick on `cpu`, in interrupt context.
fn tick(cpu: usize) {
    let n = TICKS[cpu].fetch_add(1, Relaxed);
    let slot = n as usize % HELD;
    release(cpu, slot);
    let size = SIZES[slot % SIZES.len()];
    match kmem().kmalloc(size, Gfp::ATOMIC) {
        Ok(p) => {
            let (p, tag) = (p.as_ptr(), n as u8 | 1);
            // SAFETY: `size` bytes at p are ours.
            unsafe {
                p.write_volatile(tag);
                p.add(size - 1).write_volatile(tag);
            }
            TAGS[cpu][slot].store(tag, Relaxed);
            OBJS[cpu][slot].store(p as usize, Relaxed);
        }
        Err(_) => _ = NO_MEMORY.fetch_add(1, Relaxed),
    }
    if n.is_multiple_of(PAGE_EVERY) {
        release_page(cpu);
        match kmem().pages().alloc_pages(PAGE_ORDER, Gfp::ATOMIC) {
            Ok(pa) => PAGE[cpu].store(pa + 1, Relaxed),
            Err(_) => _ = NO_MEMORY.fetch_add(1, Relaxed),
        }
    }
}

/// Whether `cpu` has had its ticks.
fn ticked(cpu: usize) -> bool {
    TICKS[cpu].load(Relaxed) >= MIN_TICKS
}

/// A core's share: ticks on, interrupts on, the stress workload until [`STRESS_END`] and
/// until it has had its ticks (the boot core: until every core has had theirs, so that
/// the job's time limit starts only when all are done), then both off again — the ticks
/// first, so that one already pending is taken before interrupts go off.
fn stress_with_ticks(cpu: usize) -> R {
    board::ticks_start(PERIOD_US)?;
    Cpu::enable_interrupts();
    let r = workload::mixed_until(cpu, || {
        let now = Cpu::cycles();
        let enough = if cpu == 0 {
            smp::online_ids().all(ticked)
        } else {
            ticked(cpu)
        };
        now >= GIVE_UP.load(Relaxed) || (now >= STRESS_END.load(Relaxed) && enough)
    });
    board::ticks_stop();
    let _interrupts_were_on = Cpu::irq_save();
    r
}

pub fn alloc_in_interrupts_during_stress() -> R {
    conserving(|k| {
        ticks::set_callback(tick);
        let stray = ticks::stray();
        let start = Cpu::cycles();
        let hz = Cpu::cycles_per_second();
        let seconds = SECONDS * smp::online().div_ceil(8) as u64;
        STRESS_END.store(start + hz * seconds, Relaxed);
        GIVE_UP.store(start + hz * MAX_SECONDS, Relaxed);
        // The job ends itself (`stress_with_ticks`); the run's own deadline is left unset.
        workload::run(0, 0, stress_with_ticks)?;
        let took = (Cpu::cycles() - start) / hz.max(1);
        for cpu in 0..MAX_CPUS {
            (0..HELD).for_each(|slot| release(cpu, slot));
            release_page(cpu);
        }
        let counts = TICKS.each_ref().map(|t| t.swap(0, Relaxed));
        crate::print!("  ticks per cpu [");
        for (i, c) in smp::online_ids().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            crate::print!("{sep}{c}: {}", counts[c]);
        }
        crate::println!(
            "] in {took} s, atomic allocations refused for lack of memory: {}",
            NO_MEMORY.swap(0, Relaxed),
        );
        let short = smp::online_ids().filter(|&c| counts[c] < MIN_TICKS);
        short.clone().for_each(|c| {
            crate::println!("  cpu {c} took {} ticks, fewer than {MIN_TICKS}", counts[c])
        });
        ensure(
            BROKEN.swap(0, Relaxed) == 0,
            "a tick found an object changed or refused",
        )?;
        ensure(
            ticks::stray() == stray,
            "an interrupt that was not a tick arrived",
        )?;
        ensure(
            short.count() == 0,
            "a core took fewer than 100 ticks in 600 s of stress (named above)",
        )?;
        ensure(
            k.validate(None) == Some(0),
            "validate found inconsistencies",
        )
    })
}
