//! The outside kernel as a program. On the host it runs [`outside_kernel::run`] and exits
//! with its result (`make test` runs it). For `aarch64-unknown-none` it is a `no_std`,
//! `no_main` image with no `#[global_allocator]`: `make test` links it, which shows kmem
//! needs no global allocator of its user.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    match outside_kernel::run() {
        Ok(report) => println!("outside-kernel: ok: {report}"),
        Err(e) => {
            eprintln!("outside-kernel: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// The image's entry point (a real kernel would set up a stack first).
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    let _ = outside_kernel::run();
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
