//! The self-test suite, run when the boot arguments contain the word `selftest`.
//!
//! Plain stable Rust: a table of named functions, each returning `Err(reason)` on
//! failure. Tests run one after another on the boot core, on the real allocator and
//! hardware; a test that needs every core hands work out through
//! [`super::smp::run_on_all`]. To add tests, add rows to [`TESTS`]; a board adds its own
//! in `board::TESTS`, which run after these.

use crate::bsp::{Board, Test, board};
use crate::println;

#[cfg(target_arch = "aarch64")]
use super::mte_tests;
use super::{
    boot_tests, driver_tests, hotplug_tests, irq_tests, kfence_tests, numa_tests, page_tests,
    slab_tests,
};

/// Every self-test, in the order they run.
pub const TESTS: &[Test] = &[
    ("smp_cpus_accounted", boot_tests::smp_cpus_accounted),
    (
        "bootargs_repaired_and_cut",
        boot_tests::bootargs_repaired_and_cut,
    ),
    ("pages_every_order", page_tests::every_order),
    ("pages_order_10_blocks", page_tests::order_10_blocks),
    ("pages_zeroed", page_tests::zeroed),
    ("pages_every_zone", page_tests::every_zone),
    ("pages_errors", page_tests::errors),
    (
        "pages_all_cpus_concurrently",
        page_tests::all_cpus_concurrently,
    ),
    ("pages_free_on_another_cpu", page_tests::free_on_another_cpu),
    ("pages_out_of_memory", page_tests::out_of_memory),
    (
        "numa_allocations_land_on_the_cores_node",
        numa_tests::allocations_land_on_the_cores_node,
    ),
    (
        "numa_cross_node_frees_go_home",
        numa_tests::cross_node_frees_go_home,
    ),
    (
        "numa_descriptors_lie_in_their_node",
        numa_tests::descriptors_lie_in_their_node,
    ),
    ("kmalloc_every_class", slab_tests::every_class),
    (
        "kmalloc_per_cpu_caches_on_every_core",
        slab_tests::per_cpu_caches_on_every_core,
    ),
    ("kfree_on_another_cpu", slab_tests::free_on_another_cpu),
    (
        "bulk_and_reservations_on_every_core",
        slab_tests::bulk_and_reservations_on_every_core,
    ),
    ("kmalloc_dma_flags", slab_tests::dma_flags),
    ("kmalloc_large_blocks", slab_tests::large_blocks),
    ("kfree_errors", slab_tests::kfree_errors),
    ("krealloc_keeps_bytes", slab_tests::krealloc_keeps_bytes),
    ("kmalloc_out_of_memory", slab_tests::out_of_memory),
    ("cache_life_cycle", slab_tests::cache_life_cycle),
    ("alloc_collections", slab_tests::alloc_collections),
    ("reap_and_shrink", slab_tests::reap_and_shrink),
    (
        "debug_faults_on_every_core",
        slab_tests::debug_faults_on_every_core,
    ),
    (
        "kfence_faults_on_every_core",
        kfence_tests::faults_on_every_core,
    ),
    ("stress_all_cpus", slab_tests::stress_all_cpus),
    (
        "alloc_in_interrupts_during_stress",
        irq_tests::alloc_in_interrupts_during_stress,
    ),
    #[cfg(target_arch = "aarch64")]
    (
        "mailbox_never_answering",
        driver_tests::mailbox_never_answering,
    ),
    #[cfg(target_arch = "aarch64")]
    ("uart_never_draining", driver_tests::uart_never_draining),
    (
        "console_degrades_on_a_stuck_uart",
        driver_tests::console_degrades_on_a_stuck_uart,
    ),
    (
        "hotplug_region_on_every_core",
        hotplug_tests::region_on_every_core,
    ),
    (
        "hotplug_while_every_core_allocates",
        hotplug_tests::add_remove_while_every_core_allocates,
    ),
    #[cfg(target_arch = "aarch64")]
    (
        "mte_out_of_bounds_on_every_core",
        mte_tests::out_of_bounds_on_every_core,
    ),
    #[cfg(target_arch = "aarch64")]
    (
        "mte_use_after_free_on_every_core",
        mte_tests::use_after_free_on_every_core,
    ),
    #[cfg(target_arch = "aarch64")]
    (
        "mte_small_object_on_every_core",
        mte_tests::small_object_on_every_core,
    ),
    #[cfg(target_arch = "aarch64")]
    ("mte_asynchronous", mte_tests::asynchronous),
    ("boot_stack_headroom", boot_stack_headroom),
];

/// The boot core read the boot information (with the MMU off on aarch64, where no guard
/// page works) in at most three quarters of its stack.
fn boot_stack_headroom() -> Result<(), &'static str> {
    let used = crate::boot_stack_used();
    if used == 0 || used > crate::arch::STACK_SIZE / 4 * 3 {
        println!(
            "  the boot information took {used} of the boot stack's {} bytes",
            crate::arch::STACK_SIZE
        );
        return Err("reading the boot information took more than 3/4 of the boot stack");
    }
    Ok(())
}

/// Runs every test and prints one line each and a summary; true when all passed.
pub fn run() -> bool {
    let total = TESTS.len() + board::TESTS.len();
    println!("selftest: {total} tests");
    let mut failed = 0;
    for (name, test) in TESTS.iter().chain(board::TESTS) {
        match test() {
            Ok(()) => println!("test {name} ... ok"),
            Err(reason) => {
                println!("test {name} ... FAILED: {reason}");
                failed += 1;
            }
        }
    }
    println!("selftest: {} passed, {failed} failed", total - failed);
    failed == 0
}
