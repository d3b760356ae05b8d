//! The firmware's heap and log: `alloc` collections on kmem, through the library's
//! `GlobalKmem`, and the allocator's error log lines on the console.

use kmem::GlobalKmem;

use crate::arch::cpu::Cpu;
use crate::println;

/// The firmware's allocator and `#[global_allocator]`: empty (every request fails with
/// null) until the boot core installs the `Kmem` it built.
#[global_allocator]
pub static HEAP: GlobalKmem<Cpu> = GlobalKmem::new();

/// Prints `log` records (kmem reports refused frees and leaks there) on the console.
struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        println!("kmem: {}: {}", r.level(), r.args());
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLog = ConsoleLog;

/// Routes the allocator's log to the console. Needs atomics: call with the MMU on.
pub fn install_logger() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}
