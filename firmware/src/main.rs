//! The kmem firmware binary: the entry points the ISA boot code calls (`kernel_init` on
//! the boot core, `kernel_secondary` on the others) and the panic handler, all handing
//! over to the `kmem_firmware` library. On the host it is a placeholder that says where
//! the firmware runs.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod entry {
    /// The boot core's first Rust function; `boot_arg` is what the loader passed (the DTB's
    /// or the ATAGs' address, or 0, in `x0` on aarch64, `hvm_start_info` in `%ebx` on
    /// x86_64, the DTB's address in `a1` on riscv64). Called from the arch boot code.
    #[unsafe(no_mangle)]
    extern "C" fn kernel_init(boot_arg: usize) -> ! {
        kmem_firmware::boot(boot_arg)
    }

    /// A secondary core's first Rust function, with its logical id.
    #[unsafe(no_mangle)]
    extern "C" fn kernel_secondary(id: usize) -> ! {
        kmem_firmware::secondary(id)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        kmem_firmware::panic(info)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "kmem: this firmware runs on bare metal. Boot it under QEMU with `make run` \
         (BOARD=virt); the allocator's host tests run with `make test`."
    );
}
