//! Board support: what differs between boards that share an ISA.
//!
//! The board interface, which each board module (`virt`, `x86_64`, later `rpi3`, `rpi4`,
//! …) provides and the firmware reaches as `bsp::board`:
//! - `NAME`; `Uart`, the console driver type (`unsafe fn new(base)`, `init()`, the
//!   `embedded-io` `Read` and `Write`), `UART_NAME`, and `FALLBACK_UART`, the console to
//!   use before the boot information is read;
//! - `BOOT_DATA`, what the loader passes (`"dtb"`, `"hvm_start_info"`);
//! - `probe(boot_arg, boot_hwid) -> Result<BootInfo, impl Display>`: everything the
//!   firmware needs to know about the machine, read before the MMU is set up (on aarch64
//!   with it off: no locks, no atomics);
//! - `start_cpu(hwid, logical) -> Result<(), i64>`: starts a secondary core at the arch
//!   entry point with its logical id.
//!
//! Drivers that several boards share live in [`device_driver`], device-tree reading in
//! [`devicetree`], the console front end in [`console`].

pub mod console;
pub mod device_driver;
#[cfg(feature = "virt")]
pub mod devicetree;

#[cfg(feature = "virt")]
pub mod virt;
#[cfg(feature = "virt")]
pub use virt as board;
#[cfg(feature = "x86_64")]
pub mod x86_64;
#[cfg(feature = "x86_64")]
pub use self::x86_64 as board;

#[cfg(any(
    all(
        feature = "virt",
        any(feature = "rpi3", feature = "rpi4", feature = "x86_64")
    ),
    all(feature = "rpi3", any(feature = "rpi4", feature = "x86_64")),
    all(feature = "rpi4", feature = "x86_64"),
))]
compile_error!("more than one board feature is set: pick exactly one of virt, rpi3, rpi4, x86_64");

use crate::arch::cpu::MAX_CPUS;
use crate::mm::memmap::{NormalizedMap, PhysRange};
use crate::mm::zone::ZoneLimits;

/// The CPUs the boot information lists, by hardware id (`MPIDR` affinity, local APIC
/// id), the boot core first, at most [`MAX_CPUS`].
pub struct Cpus {
    pub hwids: [u64; MAX_CPUS],
    /// How many of `hwids` are valid.
    pub len: usize,
    /// How many the boot information lists (may exceed [`MAX_CPUS`]).
    pub in_tree: usize,
}

/// What the board found out about the machine at boot.
pub struct BootInfo {
    /// The device tree's `model`, or what the firmware tables say the machine is.
    pub model: &'static str,
    /// Usable RAM with the image, the DTB and every firmware reservation cut out.
    pub map: NormalizedMap,
    /// RAM the tables could not map, left out of `map`.
    pub unmapped_ram: u64,
    pub zone_limits: ZoneLimits,
    /// Highest address devices reach by DMA, when a `dma-ranges` restricts it.
    pub dma_limit: Option<u64>,
    pub cpus: Cpus,
    /// How secondary cores are started (`"PSCI"`, `"INIT-SIPI"`), when the machine has
    /// a way.
    pub cpu_start: Option<&'static str>,
    /// MMIO base of the console UART, and whether `/chosen/stdout-path` named it.
    pub uart: usize,
    pub uart_from_dt: bool,
    pub bootargs: &'static str,
    pub rng_seed: &'static [u8],
    /// Where the firmware image and the boot data (`board::BOOT_DATA`) sit (both reserved
    /// in `map`).
    pub image: PhysRange,
    pub boot_data: PhysRange,
}
