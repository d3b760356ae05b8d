//! A mixed kmalloc/kfree workload on every core at once — the boot demonstration, the
//! monitor's `stress`, and the stress self-test. Cores hand objects to each other through
//! an exchange ring, so many frees happen on a different core from the allocation.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::println;
use crate::unchecked::KmemAny;
use kmem::Arch;
use kmem::Gfp;
use kmem::kmalloc::SlabInfoTable;

use super::{kmem, smp};

/// Request sizes: every kind of class, one-page and multi-page slabs, and a page-allocator
/// block.
const SIZES: [usize; 12] = [
    8,
    24,
    64,
    100,
    129,
    257,
    1000,
    3000,
    4096,
    9000,
    70_000,
    1 << 21,
];
const HELD: usize = 48;
const RING: usize = 256;

/// A live object: address, size, and the byte its first and last bytes hold.
#[derive(Clone, Copy)]
struct Obj(usize, usize, u8);

struct Exchange {
    objs: [Obj; RING],
    len: usize,
}

static EXCHANGE: spin::Mutex<Exchange> = spin::Mutex::new(Exchange {
    objs: [Obj(0, 0, 0); RING],
    len: 0,
});

/// Run until this cycle count, or for ROUNDS steps when 0.
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU64 = AtomicU64::new(0);
static OPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static REMOTE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// xorshift64: the next pseudo-random step.
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

fn alloc(rng: u64) -> Result<Obj, &'static str> {
    // The 2 MiB block is rare: it takes the page allocator's zone lock.
    let size = if rng & 0x3F00 == 0 {
        SIZES[11]
    } else {
        SIZES[(rng >> 16) as usize % 11]
    };
    let p = kmem()
        .kmalloc(size, Gfp::KERNEL)
        .map_err(|_| "kmalloc failed under stress")?
        .as_ptr();
    let tag = (rng >> 40) as u8;
    // SAFETY: size bytes at p are ours.
    unsafe {
        p.write_volatile(tag);
        p.add(size - 1).write_volatile(tag);
    }
    Ok(Obj(p as usize, size, tag))
}

fn free(o: Obj) -> Result<(), &'static str> {
    let p = o.0 as *mut u8;
    // SAFETY: the object is live and o.1 bytes long.
    let intact = unsafe { p.read_volatile() == o.2 && p.add(o.1 - 1).read_volatile() == o.2 };
    if !intact {
        return Err("an object changed while it was live");
    }
    kmem()
        .kfree_any(p)
        .map_err(|_| "kfree refused a live object")
}

fn done(step: u64) -> bool {
    match DEADLINE.load(Relaxed) {
        0 => step >= ROUNDS.load(Relaxed),
        end => Cpu::cycles() >= end,
    }
}

/// One core's share of the workload, until [`run`]'s deadline or step count.
pub fn mixed(cpu: usize) -> Result<(), &'static str> {
    mixed_while(cpu, |step| !done(step))
}

/// One core's share of the workload until `stop` says so (asked before every step), for
/// a job that ends it its own way rather than at [`run`]'s deadline.
pub fn mixed_until(cpu: usize, stop: impl Fn() -> bool) -> Result<(), &'static str> {
    mixed_while(cpu, |_| !stop())
}

/// The workload for as long as `go(steps done so far)` says.
fn mixed_while(cpu: usize, go: impl Fn(u64) -> bool) -> Result<(), &'static str> {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((cpu as u64 + 1) << 32) ^ Cpu::cycles();
    let mut held = [Obj(0, 0, 0); HELD];
    let (mut ops, mut remote) = (0u64, 0u64);
    let mut step = 0;
    while go(step) {
        step += 1;
        let r = next(&mut rng);
        let slot = (r as usize >> 8) % HELD;
        if held[slot].0 != 0 {
            let o = held[slot];
            held[slot].0 = 0;
            if r & 3 == 0 {
                // Hand it to whichever core takes it next; take one back if full.
                let back = {
                    let mut x = EXCHANGE.lock();
                    if x.len < RING {
                        let n = x.len;
                        x.objs[n] = o;
                        x.len += 1;
                        None
                    } else {
                        Some(o)
                    }
                };
                if let Some(o) = back {
                    free(o)?;
                }
            } else {
                free(o)?;
            }
        } else if r & 7 == 1 {
            let theirs = {
                let mut x = EXCHANGE.lock();
                x.len.checked_sub(1).map(|n| {
                    x.len = n;
                    x.objs[n]
                })
            };
            if let Some(o) = theirs {
                free(o)?;
                remote += 1;
            }
        } else {
            held[slot] = alloc(r)?;
        }
        ops += 1;
    }
    for o in held.into_iter().filter(|o| o.0 != 0) {
        free(o)?;
    }
    OPS[cpu].store(ops, Relaxed);
    REMOTE[cpu].store(remote, Relaxed);
    Ok(())
}

/// Runs `job` — [`mixed`], or something that calls it — on every core, for `seconds` (or
/// `rounds` steps per core when `seconds` is 0), empties the exchange ring, and returns
/// (operations, remote frees).
pub fn run(seconds: u64, rounds: u64, job: smp::Job) -> Result<(u64, u64), &'static str> {
    ROUNDS.store(rounds, Relaxed);
    let end = if seconds == 0 {
        0
    } else {
        Cpu::cycles() + Cpu::cycles_per_second() * seconds
    };
    DEADLINE.store(end, Relaxed);
    let r = smp::run_on_all(job);
    loop {
        let o = {
            let mut x = EXCHANGE.lock();
            x.len.checked_sub(1).map(|n| {
                x.len = n;
                x.objs[n]
            })
        };
        match o {
            Some(o) => free(o)?,
            None => break,
        }
    }
    r?;
    let sum = |a: &[AtomicU64]| a.iter().map(|c| c.swap(0, Relaxed)).sum();
    Ok((sum(&OPS), sum(&REMOTE)))
}

/// The boot demonstration: a short run on every core, then slabinfo and meminfo.
pub fn demo() {
    match run(0, 3000, mixed) {
        Ok((ops, remote)) => println!(
            "demo: {ops} kmalloc/kfree steps on {} cpus, {remote} objects freed by another cpu",
            smp::online()
        ),
        Err(e) => println!("demo: FAILED: {e}"),
    }
    kmem().reap();
    print_slabinfo(false);
    crate::print!("{}", kmem().meminfo());
}

/// `/proc/slabinfo`-style table (all caches, or those holding objects).
pub fn print_slabinfo(all: bool) {
    crate::print!("{}", SlabInfoTable { kmem: kmem(), all });
}
