//! The kmem firmware: boots the kmem allocator on bare metal, prints the boot report, then
//! runs the self-test suite, the benchmark or the monitor. The binary (`main.rs`) holds
//! only the entry points the ISA boot code calls and the panic handler.
//!
//! Boot order matters: the boot information is read first (on aarch64 with the MMU off:
//! no locks or atomic read-modify-writes until then), the identity map is built from what
//! it says and turned on, and only then do locks, the page allocator and the other cores
//! come up. The ISA is reached only through `arch::cpu`, the board through `bsp::board`,
//! the allocator only through the `kmem` library's public API.
//!
//! Bare metal only: on the host this crate is empty.
#![cfg(target_os = "none")]
#![no_std]

extern crate alloc;

pub mod arch;
mod bench;
mod boot_test;
mod boot_tests;
pub mod bsp;
mod driver_tests;
pub mod fault;
mod heap;
mod hotplug;
mod hotplug_tests;
mod irq_tests;
mod kfence;
mod kfence_tests;
pub mod monitor;
#[cfg(target_arch = "aarch64")]
mod mte_tests;
mod numa_tests;
mod page_tests;
mod report;
pub mod selftest;
mod slab_tests;
pub mod smp;
mod unchecked;
mod workload;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::bsp::{Board, board, console};
use kmem::Arch;
use kmem::Kmem;
use kmem::PageAllocator;

/// `/chosen/rng-seed`, kept for hardening (freelist pointer encoding, randomisation).
static RNG_SEED: spin::Once<&'static [u8]> = spin::Once::new();

/// The allocator; the boot core creates it before any test or command runs.
pub fn kmem() -> &'static Kmem<Cpu> {
    heap::HEAP
        .get()
        .expect("allocator used before boot created it")
}

/// The page allocator under [`kmem`].
pub fn pages() -> &'static PageAllocator<Cpu> {
    kmem().pages()
}

/// The entropy the loader passed in `/chosen/rng-seed` (empty if none).
pub fn rng_seed() -> &'static [u8] {
    RNG_SEED.get().copied().unwrap_or(&[])
}

/// How many bytes of its stack the boot core used to read the boot information (with
/// the MMU off on aarch64, before the guard page below the stack works).
static BOOT_STACK_USED: AtomicUsize = AtomicUsize::new(0);

/// [`BOOT_STACK_USED`], for the self-test that keeps it in bounds.
pub fn boot_stack_used() -> usize {
    BOOT_STACK_USED.load(Relaxed)
}

/// The boot core's path from `kernel_init` on. `x0` is the loader's boot argument.
pub fn boot(x0: usize) -> ! {
    // SAFETY: the boot core, on its own stack, before the MMU unmaps its guard page.
    unsafe { arch::paint_boot_stack() };
    let probed = board::probe(x0, Cpu::boot_hwid());
    // SAFETY: painted above; the guard page is still mapped (the MMU is off, or on the
    // loader's tables).
    match unsafe { arch::boot_stack_used() } {
        Some(used) => BOOT_STACK_USED.store(used, Relaxed),
        None => {
            println!(
                "kmem: cannot boot on {}: the boot stack overflowed into its guard page \
                 while reading the boot information",
                board::NAME
            );
            Cpu::exit(1);
        }
    }
    let info = match probed {
        Ok(info) => info,
        Err(e) => {
            println!("kmem: cannot boot on {}: {e}", board::NAME);
            Cpu::exit(1);
        }
    };
    // SAFETY: boot core, before the map is built and before other cores start; the map's
    // usable RAM is unused, and the range returned is kept from the allocator below.
    let slots = unsafe { smp::place_slots(&info.map, info.cpus.len, &info.topology) };
    // SAFETY: boot core, nothing else running; the image, the boot data and the stacks
    // are in RAM (the image, the boot data and the slots are listed; the boot core's
    // stack is in the image).
    unsafe {
        Cpu::mmu_build(&[
            info.map.usable(),
            &[info.image, info.boot_data],
            slots.ranges(),
        ]);
        Cpu::mmu_enable();
    }
    console::enable_locking();
    Cpu::configure_memory_tagging(info.bootargs);
    RNG_SEED.call_once(|| info.rng_seed);
    report::banner(&info);
    print!(
        "stacks: {} KiB each, the secondaries'",
        arch::SLOT_SIZE >> 10
    );
    for (node, run) in slots.per_node() {
        match node {
            Some(node) => print!(" on node {node} at {run}"),
            None => print!(" at {run}"),
        }
    }
    println!();
    // The allocator starts without the cores' slots, and without the memory held back
    // for adding at run time.
    let map = match hotplug::without(&info.map, slots.ranges()).and_then(|m| hotplug::hold_back(&m))
    {
        Ok(map) => map,
        Err(e) => fail(format_args!("holding memory back: {e}")),
    };
    // SAFETY: every usable range of the map is RAM that nothing else uses, identity-mapped
    // as normal memory by the tables just built.
    let pages = unsafe {
        PageAllocator::<Cpu>::with_topology(
            &map,
            info.zone_limits,
            &info.topology,
            Some(info.image.end),
        )
    };
    let kmem = match pages {
        Ok(p) => match Kmem::with_options(p, options(info.bootargs, info.rng_seed))
            .and_then(|k| k.with_guard_pool(arch::guard_pool::memory()))
        {
            Ok(k) => match heap::HEAP.init(k) {
                Ok(k) => k,
                Err(_) => fail(format_args!("the allocator was set up twice")),
            },
            Err(e) => fail(format_args!("{e}")),
        },
        Err(e) => fail(format_args!("{e}")),
    };
    heap::install_logger();
    smp::start_secondaries(&info);
    bsp::numa::report(&info.topology, &info.map);
    report::memory(&info, kmem.pages());
    kfence::print_state();
    if let Some(test) = boot_test::requested(info.bootargs) {
        boot_test::run(test);
    }
    if info.bootargs.split_whitespace().any(|w| w == "selftest") {
        let ok = selftest::run();
        if let Some(indicator) = board::result_indicator(ok) {
            smp::detach(indicator);
        }
        Cpu::exit(if ok { 0 } else { 1 });
    }
    if info.bootargs.split_whitespace().any(|w| w == "bench") {
        let r = bench::run();
        if let Err(e) = r {
            println!("bench: FAILED: {e}");
        }
        Cpu::exit(u32::from(r.is_err()));
    }
    hotplug::release();
    workload::demo();
    monitor::run()
}

/// Allocator options from the kernel command line (`kmem.debug=`, `kmem.failslab=`,
/// `init_on_alloc=`, …), keyed with the loader's `rng-seed` (else the cycle counter).
/// A malformed option is reported and ignored: bad input must not stop the boot.
fn options(bootargs: &str, rng_seed: &[u8]) -> kmem::kmalloc::Options {
    let seed = rng_seed
        .iter()
        .fold(Cpu::cycles(), |s, &b| s.rotate_left(8) ^ u64::from(b));
    let base = kmem::kmalloc::Options {
        seed,
        ..Default::default()
    };
    base.parse(bootargs, |e| println!("kmem: {e}: ignored"))
}

/// Reports why the allocator could not start, and ends the machine failing.
fn fail(why: core::fmt::Arguments<'_>) -> ! {
    println!("kmem: {why}");
    Cpu::exit(1)
}

/// A secondary core's path from `kernel_secondary` on.
pub fn secondary(id: usize) -> ! {
    // SAFETY: the boot core built the tables before starting this core; the code and
    // this core's stack are in the image, which the tables map as RAM.
    unsafe { Cpu::mmu_enable() };
    smp::secondary_loop(id)
}

static PANICKING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Prints the panic and ends the machine with a failing status. A panic while printing
/// one ends it at once.
pub fn panic(info: &PanicInfo<'_>) -> ! {
    let id = Cpu::cpu_id();
    // Per-core flag with plain loads and stores: no exclusives, so it also works before
    // the MMU is on.
    if PANICKING[id].load(Relaxed) {
        Cpu::exit(1);
    }
    PANICKING[id].store(true, Relaxed);
    console::print_unlocked(format_args!("\nkmem: panic on cpu {id}: {info}\n"));
    Cpu::exit(1)
}
