//! Board support: what differs between boards that share an ISA.
//!
//! Each board module (`virt`, `rpi`, `x86_64`) implements [`Board`] on a unit type, and
//! [`board`] names the one the cargo feature selects; the firmware reaches the board only
//! through that type and the trait ([`interface`] has the contract and its types). Drivers
//! that several boards share live in [`device_driver`], device-tree reading in
//! [`devicetree`], the console front end in [`console`], timer interrupts in [`ticks`].

pub mod console;
pub mod device_driver;
#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod devicetree;
#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod devicetree_tests;
mod interface;
pub mod ticks;

pub use interface::{Board, BootInfo, BootSource, ConsoleUart, Cpus, Indicator, StartError, Test};

#[cfg(feature = "virt")]
mod virt;
#[cfg(feature = "virt")]
pub use virt::Virt as board;

#[cfg(any(feature = "rpi3", feature = "rpi4"))]
mod rpi;
#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub use rpi::RaspberryPi as board;

#[cfg(feature = "x86_64")]
mod x86_64;
#[cfg(feature = "x86_64")]
pub use self::x86_64::Pc as board;

#[cfg(any(
    all(
        feature = "virt",
        any(feature = "rpi3", feature = "rpi4", feature = "x86_64")
    ),
    all(feature = "rpi3", any(feature = "rpi4", feature = "x86_64")),
    all(feature = "rpi4", feature = "x86_64"),
))]
compile_error!("more than one board feature is set: pick exactly one of virt, rpi3, rpi4, x86_64");

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
