//! The self-test suite, run when the boot arguments contain the word `selftest`.
//!
//! Plain stable Rust: a table of named functions, each returning `Err(reason)` on
//! failure. Tests run one after another on the boot core, on the real allocator and
//! hardware; a test that needs every core hands work out through
//! [`super::smp::run_on_all`]. To add tests, add rows to [`TESTS`].

use crate::println;

use super::page_tests;

/// A self-test: its name and what it runs.
pub type Test = (&'static str, fn() -> Result<(), &'static str>);

/// Every self-test, in the order they run.
pub const TESTS: &[Test] = &[
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
];

/// Runs every test and prints one line each and a summary; true when all passed.
pub fn run() -> bool {
    println!("selftest: {} tests", TESTS.len());
    let mut failed = 0;
    for (name, test) in TESTS {
        match test() {
            Ok(()) => println!("test {name} ... ok"),
            Err(reason) => {
                println!("test {name} ... FAILED: {reason}");
                failed += 1;
            }
        }
    }
    println!("selftest: {} passed, {failed} failed", TESTS.len() - failed);
    failed == 0
}
