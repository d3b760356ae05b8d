//! Tests chosen on the kernel command line with `kmem.test=NAME`, which end the machine a
//! way `make boot-test` checks (its status and what it printed). Unlike the self-tests,
//! they may end it failing on purpose:
//!
//! - `stack-overflow`: the boot core recurses until its stack runs out. The guard page
//!   below every core's stack must turn that into a report, `stack overflow on cpu 0`,
//!   and a failing status — never a write over what lies below the stack.
//! - `stack-overflow-secondary`: the same on the highest-numbered secondary core online,
//!   while the boot core waits.
//! - `boot`: boot, allocate and free on every core, `validate` the allocator, and end with
//!   success when all is well: a quick look at a machine booted from hostile boot
//!   information (a console or a device refused must leave the allocator's memory alone).
//! - `ticks`: boot, and have every core take a timer interrupt through the board's
//!   interrupt controller, then end with success when each did: the quick look at a
//!   machine with many cores (`make smp-256`: on QEMU virt, cores past 123 find their
//!   GICv3 redistributors in a second region), where the self-tests would take hours.

use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::bsp::device_driver::common::Deadline;
use crate::bsp::{Board, board, ticks};
use crate::{println, smp};
use kmem::Arch;

/// Ticks each core must take in the `ticks` test, one due every [`TICK_PERIOD_US`]; and
/// how long a core may take to see them, time enough for a vCPU that QEMU runs seldom
/// (256 vCPUs on two host cores). One shows the core's interrupts arrive through its own
/// redistributor; the self-tests check the ticks' rate, on smaller machines.
const TICKS_WANTED: u64 = 1;
const TICK_PERIOD_US: u64 = 1_000;
const TICKS_TIMEOUT_US: u64 = 90_000_000;
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The test `bootargs` asks for with `kmem.test=`, if any.
pub fn requested(bootargs: &str) -> Option<&str> {
    bootargs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kmem.test="))
}

/// Runs test `name`, which ends the machine.
pub fn run(name: &str) -> ! {
    match name {
        "boot" => {
            let churned = smp::run_on_all(churn);
            let problems = crate::kmem().validate(None);
            let ok = churned.is_ok() && problems == Some(0);
            println!(
                "boot test: {} cpus online; kmalloc and kfree on each: {}; validate: {}",
                smp::online(),
                churned.err().unwrap_or("ok"),
                match problems {
                    Some(0) => "clean",
                    _ => "PROBLEMS",
                }
            );
            Cpu::exit(u32::from(!ok))
        }
        "ticks" => {
            ticks::set_callback(|cpu| _ = TICKS[cpu].fetch_add(1, Relaxed));
            let ticked = smp::run_on_all(take_ticks);
            let slowest = smp::online_ids().map(|c| TICKS[c].load(Relaxed)).min();
            let short = smp::online_ids().filter(|&c| TICKS[c].load(Relaxed) < TICKS_WANTED);
            short.for_each(|c| {
                println!("boot test: cpu {c} took {} tick(s)", TICKS[c].load(Relaxed))
            });
            println!(
                "boot test: {} cpus online; {TICKS_WANTED} tick(s) on each: {} (the fewest \
                 on a cpu: {})",
                smp::online(),
                ticked.err().unwrap_or("ok"),
                slowest.unwrap_or(0)
            );
            Cpu::exit(u32::from(ticked.is_err()))
        }
        "stack-overflow" => {
            println!("boot test: cpu 0 runs its stack out");
            overflow(0)
        }
        "stack-overflow-secondary" => {
            if !smp::detach(overflow_job) {
                println!("boot test {name}: no secondary cpu online");
                Cpu::exit(1);
            }
            // The secondary's report ends the machine; waiting longer means it was lost.
            let end = Cpu::cycles() + Cpu::cycles_per_second() * 10;
            while Cpu::cycles() < end {
                core::hint::spin_loop();
            }
            println!("boot test {name}: the secondary cpu's overflow went unreported");
            Cpu::exit(1)
        }
        _ => {
            println!(
                "boot test {name}: no such test (kmem.test=boot, ticks, stack-overflow, \
                 stack-overflow-secondary)"
            );
            Cpu::exit(1)
        }
    }
}

/// Vectors of every size from 8 bytes to 8 KiB, filled, checked and dropped.
fn churn(cpu: usize) -> Result<(), &'static str> {
    let mut held = Vec::new();
    for round in 0..4u8 {
        for shift in 3..14 {
            let byte = (cpu as u8) ^ round ^ shift as u8;
            held.push(alloc::vec![byte; 1 << shift]);
        }
    }
    for v in &held {
        if v.iter().any(|&b| b != v[0]) {
            return Err("an allocation changed under its owner");
        }
    }
    Ok(())
}

/// Starts this core's ticks, waits for [`TICKS_WANTED`] of them, and stops them.
fn take_ticks(cpu: usize) -> Result<(), &'static str> {
    board::ticks_start(TICK_PERIOD_US).inspect_err(|e| println!("boot test: cpu {cpu}: {e}"))?;
    Cpu::enable_interrupts();
    let seen = Deadline::after_us(TICKS_TIMEOUT_US)
        .wait(|| TICKS[cpu].load(Relaxed) >= TICKS_WANTED)
        .map_err(|_| "a cpu took too few ticks in time");
    board::ticks_stop();
    let _interrupts_were_on = Cpu::irq_save();
    seen
}

fn overflow_job(cpu: usize) -> Result<(), &'static str> {
    println!("boot test: cpu {cpu} runs its stack out");
    overflow(cpu)
}

/// Recurses with a 256-byte frame until the stack runs out; returns only if it never does.
fn overflow(cpu: usize) -> ! {
    let depth = recurse(0);
    println!("boot test: cpu {cpu} recursed {depth} levels and came back");
    Cpu::exit(1)
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 32];
    black_box(&mut frame);
    // Never true: it keeps the recursion from being unconditional to the compiler.
    if black_box(depth) == u64::MAX {
        return depth;
    }
    recurse(depth + 1).wrapping_add(frame[depth as usize % 32])
}
