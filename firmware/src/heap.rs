//! The firmware's heap and log: `alloc` collections on kmem, and the allocator's error
//! log lines on the console.

use core::alloc::{GlobalAlloc, Layout};

use crate::println;

/// `#[global_allocator]` for the firmware: kmem once the boot core has built it, null
/// before that.
struct Heap;

#[global_allocator]
static HEAP: Heap = Heap;

// SAFETY: forwards to kmem's own GlobalAlloc, which upholds the contract; without an
// allocator yet, every request fails with null.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract passes straight through.
        super::KMEM
            .get()
            .map_or(core::ptr::null_mut(), |k| unsafe { k.alloc(l) })
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        super::KMEM
            .get()
            .map_or(core::ptr::null_mut(), |k| unsafe { k.alloc_zeroed(l) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, l: Layout) {
        if let Some(k) = super::KMEM.get() {
            // SAFETY: as for alloc.
            unsafe { k.dealloc(ptr, l) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for alloc.
        super::KMEM.get().map_or(core::ptr::null_mut(), |k| unsafe {
            k.realloc(ptr, l, new_size)
        })
    }
}

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
