//! Board support: what differs between boards that share an ISA.
//!
//! The board interface, which each board module (`virt`, `rpi`, `x86_64`, …) provides
//! and the firmware reaches as `bsp::board`:
//! - `NAME`; `Uart`, the console driver type (`unsafe fn new(base)`, `init()`, the
//!   `embedded-io` `Read` and `Write`), `uart_name()`, and `FALLBACK_UART`, the console to
//!   use before the boot information is read;
//! - `BOOT_DATA`, what the loader passes (`"dtb"`, `"hvm_start_info"`);
//! - `probe(boot_arg, boot_hwid) -> Result<BootInfo, impl Display>`: everything the
//!   firmware needs to know about the machine, read before the MMU is set up (on aarch64
//!   with it off: no locks, no atomics);
//! - `start_cpu(cpus, logical) -> Result<(), StartError>`: starts a secondary core at the
//!   arch entry point with its logical id;
//! - `TESTS`: the board's own self-tests, run after the common ones;
//! - `result_indicator(passed) -> Option<Indicator>`: how the board shows the self-test
//!   result without a console (an LED pattern), run on a core of its own for ever;
//! - `ticks_start(period_us)` and `ticks_stop()`: a periodic timer interrupt on the
//!   running core (see [`ticks`]).
//!
//! Drivers that several boards share live in [`device_driver`], device-tree reading in
//! [`devicetree`], the console front end in [`console`].

pub mod console;
pub mod device_driver;
#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod devicetree;
#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod devicetree_tests;
pub mod ticks;

#[cfg(feature = "virt")]
pub mod virt;
#[cfg(feature = "virt")]
pub use virt as board;

#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod rpi;
#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub use rpi as board;

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

use core::fmt;

use crate::arch::cpu::MAX_CPUS;
use kmem::mm::memmap::{NormalizedMap, PhysRange};
use kmem::mm::zone::ZoneLimits;

/// The CPUs the boot information lists, by hardware id (`MPIDR` affinity, local APIC
/// id), the boot core first, at most [`MAX_CPUS`].
pub struct Cpus {
    pub hwids: [u64; MAX_CPUS],
    /// Spin-table release address of each (`cpu-release-addr`), 0 when it has none.
    pub release: [u64; MAX_CPUS],
    /// How many of `hwids` are valid.
    pub len: usize,
    /// How many the boot information lists (may exceed [`MAX_CPUS`]).
    pub in_tree: usize,
}

/// A board's self-test: its name and what it runs.
pub type Test = (&'static str, fn() -> Result<(), &'static str>);

/// Work a board hands to a core of its own, which never returns (an LED pattern).
pub type Indicator = fn(cpu: usize) -> Result<(), &'static str>;

/// Where the board's description of the machine came from.
#[derive(Clone, Copy, Debug)]
pub enum BootSource {
    /// What the loader passes (`board::BOOT_DATA`: a device tree, `hvm_start_info`), at
    /// this extent.
    BootData(PhysRange),
    /// An ATAG list (the Pi's firmware, or QEMU without `-dtb`), at this address.
    Atags(u64),
    /// Neither: the Pi's VideoCore mailbox answered.
    Mailbox,
}

impl fmt::Display for BootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootSource::BootData(r) => write!(f, "{} {r}", board::BOOT_DATA),
            BootSource::Atags(a) => write!(f, "ATAGs at {a:#x} (no device tree)"),
            BootSource::Mailbox => f.write_str("VideoCore mailbox (no device tree, no ATAGs)"),
        }
    }
}

/// What the board found out about the machine at boot.
pub struct BootInfo {
    /// The device tree's `model`, or what the firmware tables or the board say the
    /// machine is.
    pub model: &'static str,
    pub source: BootSource,
    /// Usable RAM with the image, the boot information and every firmware reservation
    /// cut out.
    pub map: NormalizedMap,
    /// RAM the tables could not map, left out of `map`.
    pub unmapped_ram: u64,
    pub zone_limits: ZoneLimits,
    /// Highest address devices reach by DMA, when a `dma-ranges` restricts it.
    pub dma_limit: Option<u64>,
    pub cpus: Cpus,
    /// How secondary cores are started (`"PSCI"`, `"spin table"`, `"INIT-SIPI"`), when
    /// the machine has a way.
    pub cpu_start: Option<&'static str>,
    /// Base (MMIO address or I/O port) of the console UART, and whether
    /// `/chosen/stdout-path` named it.
    pub uart: usize,
    pub uart_from_dt: bool,
    pub bootargs: &'static str,
    /// Entropy for the allocator's hardening secrets: the device tree's `/chosen/rng-seed`,
    /// or what the board drew (RDRAND on a PC); empty when there is none.
    pub rng_seed: &'static [u8],
    /// Where the firmware image and the boot data (`board::BOOT_DATA`) sit (both reserved
    /// in `map`; the boot data range is empty without any).
    pub image: PhysRange,
    pub boot_data: PhysRange,
}

/// `base` with its DMA zone ending at `dma_limit` when a `dma-ranges` restricts DMA more.
pub fn zone_limits(base: ZoneLimits, dma_limit: Option<u64>) -> ZoneLimits {
    match dma_limit {
        Some(l) if l < base.dma32_end => ZoneLimits { dma_end: l, ..base },
        _ => base,
    }
}

/// Why a secondary core could not be started.
#[derive(Debug)]
pub enum StartError {
    /// PSCI CPU_ON failed with this code (-4 ALREADY_ON, -2 INVALID_PARAMETERS, …).
    Psci(i64),
    /// The core has no spin-table release address.
    NoReleaseAddress,
    /// The spin-table entry finds logical ids by Aff0 alone; this MPIDR is beyond it.
    UnsupportedMpidr(u64),
    /// The local APIC did not send the INIT or STARTUP IPI (this error code).
    Ipi(i64),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Psci(e) => write!(f, "PSCI error {e}"),
            StartError::NoReleaseAddress => f.write_str("no spin-table release address"),
            StartError::UnsupportedMpidr(m) => {
                write!(
                    f,
                    "mpidr {m:#x} is beyond the spin-table entry (Aff0 < 8 only)"
                )
            }
            StartError::Ipi(e) => write!(f, "INIT-SIPI error {e}"),
        }
    }
}
