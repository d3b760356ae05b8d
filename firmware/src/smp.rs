//! Secondary cores: bring-up, and the per-CPU mailboxes through which the boot core hands
//! them work.
//!
//! A job is a plain `fn(cpu) -> Result<(), &'static str>`; whatever it needs beyond its
//! CPU id it finds in statics (the page allocator, test state). [`run_on_all`] posts one
//! job to every online core, runs it on the boot core too, and waits for all of them, so
//! a test written as a job exercises the allocator from every CPU at once. Between jobs
//! the secondaries idle in `Isa::wait_for_event`; the boot core's `Isa::wake_waiters`
//! wakes them.

use core::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::bsp::{Board, BootInfo, board};
use crate::println;
use kmem::Arch;

/// Work for one core.
pub type Job = fn(cpu: usize) -> Result<(), &'static str>;

enum Slot {
    Idle,
    Posted(Job),
    Done(Result<(), &'static str>),
}

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static MAILBOX: [spin::Mutex<Slot>; MAX_CPUS] = [const { spin::Mutex::new(Slot::Idle) }; MAX_CPUS];

/// How long a core may take to come online, or to finish a job, before it is given up.
const ONLINE_TIMEOUT_MS: u64 = 2_000;
const JOB_TIMEOUT_MS: u64 = 100_000;

fn deadline(ms: u64) -> u64 {
    Cpu::cycles() + Cpu::cycles_per_second() * ms / 1000
}

/// Starts every CPU the board listed and waits until each is online (or gives up on it),
/// then prints how many are.
pub fn start_secondaries(info: &BootInfo) {
    ONLINE[0].store(true, Release);
    if let Some(how) = info.cpu_start {
        for (logical, &hwid) in info.cpus.hwids[..info.cpus.len].iter().enumerate().skip(1) {
            if let Err(e) = board::start_cpu(&info.cpus, logical) {
                println!("smp: cpu {logical} (hwid {hwid:#x}) refused to start: {e}");
                continue;
            }
            let end = deadline(ONLINE_TIMEOUT_MS);
            while !ONLINE[logical].load(Acquire) && Cpu::cycles() < end {
                core::hint::spin_loop();
            }
            if !ONLINE[logical].load(Acquire) {
                println!("smp: cpu {logical} (hwid {hwid:#x}) did not come online ({how})");
            }
        }
    } else if info.cpus.len > 1 {
        println!("smp: the boot information gives no way to start cores, staying on the boot cpu");
    }
    println!("smp: {} cpus online", online());
}

/// Number of cores online, the boot core included.
pub fn online() -> usize {
    ONLINE.iter().filter(|c| c.load(Acquire)).count()
}

/// How many online CPUs have an id below `cpu`: an online CPU's rank among them.
pub fn online_below(cpu: usize) -> usize {
    ONLINE[..cpu.min(MAX_CPUS)]
        .iter()
        .filter(|c| c.load(Acquire))
        .count()
}

/// A secondary core's life once its MMU is on: announce itself, then run jobs forever.
pub fn secondary_loop(id: usize) -> ! {
    ONLINE[id].store(true, Release);
    loop {
        let job = match *MAILBOX[id].lock() {
            Slot::Posted(job) => Some(job),
            _ => None,
        };
        match job {
            Some(job) => {
                let r = job(id);
                *MAILBOX[id].lock() = Slot::Done(r);
                Cpu::wake_waiters();
            }
            None => Cpu::wait_for_event(),
        }
    }
}

/// Hands `job` to the highest-numbered online secondary core and returns at once, for work
/// that outlives the boot core (a board's result indicator keeps going after the boot
/// core has ended the machine — on hardware, "ended" just parks it). False when only the
/// boot core is online.
pub fn detach(job: Job) -> bool {
    let Some(c) = (1..MAX_CPUS).rev().find(|&c| ONLINE[c].load(Acquire)) else {
        return false;
    };
    *MAILBOX[c].lock() = Slot::Posted(job);
    Cpu::wake_waiters();
    true
}

/// Runs `job` on every online core at once (the boot core included) and returns the
/// first failure.
pub fn run_on_all(job: Job) -> Result<(), &'static str> {
    let cpus = (1..MAX_CPUS).filter(|&c| ONLINE[c].load(Acquire));
    for c in cpus.clone() {
        *MAILBOX[c].lock() = Slot::Posted(job);
    }
    Cpu::wake_waiters();
    let mut result = job(0);
    let end = deadline(JOB_TIMEOUT_MS);
    for c in cpus {
        let r = loop {
            let mut slot = MAILBOX[c].lock();
            if let Slot::Done(r) = *slot {
                *slot = Slot::Idle;
                break r;
            }
            drop(slot);
            if Cpu::cycles() > end {
                return Err("a secondary cpu did not finish its job in time");
            }
            core::hint::spin_loop();
        };
        result = result.and(r);
    }
    result
}
