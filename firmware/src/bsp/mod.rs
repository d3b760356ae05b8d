//! Board support: what differs between boards that share an ISA.
//!
//! Each board module (`virt`, `rpi`, `x86_64`, `riscv_virt`) implements [`Board`] on a unit type, and
//! [`board`] names the one the cargo feature selects; the firmware reaches the board only
//! through that type and the trait ([`interface`] has the contract and its types). Drivers
//! that several boards share live in [`device_driver`], device-tree reading in
//! [`devicetree`], the checks every address the boot information gives passes before it
//! is used in [`vet`], the console front end in [`console`], timer interrupts in
//! [`ticks`] (through a GICv2 or GICv3 in `gic_ticks`), the NUMA topology in [`numa`]
//! (from the device tree in `devicetree_numa`).

pub mod bootargs;
pub mod console;
pub mod device_driver;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
pub mod devicetree;
#[cfg(feature = "virt")]
pub mod devicetree_gic;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
pub mod devicetree_numa;
// The boards that read NUMA from their tree (a Pi is one node).
#[cfg(any(feature = "virt", feature = "riscv64"))]
mod devicetree_numa_tests;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
pub mod devicetree_tests;
#[cfg(target_arch = "aarch64")]
pub mod gic_ticks;
mod interface;
pub mod numa;
pub mod ticks;
pub mod vet;
mod vet_tests;

pub use interface::{
    Board, BootInfo, BootSource, ConsoleUart, Cpus, Indicator, Notes, StartError, Test,
};

/// Declares each board's module and makes `board` the one the features select, for the
/// list below; stops the build unless exactly one board feature is set, for the target.
macro_rules! boards {
    ($($feature:literal on $isa:literal => $module:ident::$board:ident,)+) => {
        $(
            #[cfg(all(feature = $feature, target_arch = $isa))]
            mod $module;
            #[cfg(all(feature = $feature, target_arch = $isa))]
            pub use self::$module::$board as board;
        )+
        #[cfg(not(any($(all(feature = $feature, target_arch = $isa)),+)))]
        compile_error!(concat!(
            "no board feature for this target_arch; the boards:"
            $(, " ", $feature, " (", $isa, ")")+
        ));
        at_most_one_board!($(feature = $feature),+);
    };
}

/// A `compile_error!` for each board feature set together with a later one in the list.
macro_rules! at_most_one_board {
    ($first:meta $(, $rest:meta)*) => {
        #[cfg(all($first, any($($rest),*)))]
        compile_error!("more than one board feature is set: pick one");
        at_most_one_board!($($rest),*);
    };
    () => {};
}

// The one list of boards: the cargo feature that selects each (firmware/Cargo.toml), the
// `target_arch` it runs on, and its module and `Board` type. The Makefile's `BOARDS` says
// how to build and boot each.
boards! {
    "virt" on "aarch64" => virt::Virt,
    "rpi3" on "aarch64" => rpi::RaspberryPi,
    "rpi4" on "aarch64" => rpi::RaspberryPi,
    "x86_64" on "x86_64" => x86_64::Pc,
    "riscv64" on "riscv64" => riscv_virt::RiscvVirt,
}

use kmem::mm::memmap::PhysRange;
use kmem::mm::zone::ZoneLimits;

/// `base` with its DMA zone ending at `dma_limit` when a `dma-ranges` restricts DMA more.
pub fn zone_limits(base: ZoneLimits, dma_limit: Option<u64>) -> ZoneLimits {
    match dma_limit {
        Some(l) if l < base.dma32_end => ZoneLimits { dma_end: l, ..base },
        _ => base,
    }
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Where the firmware image sits, from the linker script: every board reserves it.
pub fn image() -> PhysRange {
    PhysRange {
        start: (&raw const __image_start) as u64,
        end: (&raw const __image_end) as u64,
    }
}
