//! The firmware's porting contract for a board: [`Board`], which each board implements
//! on a unit type of its own (`bsp::board` names the selected one), its console driver's
//! [`ConsoleUart`], and the types they speak in.

use core::fmt;

use super::board;
use crate::arch::cpu::MAX_CPUS;
use kmem::mm::memmap::{NormalizedMap, PhysRange};
use kmem::mm::numa::Topology;
use kmem::mm::zone::ZoneLimits;

/// What differs between boards that share an ISA, as the firmware uses it. A board that
/// leaves a required item out fails to build at its `impl Board`, naming the item.
pub trait Board {
    /// What the banner calls the board.
    const NAME: &'static str;

    /// What the loader passes (`"dtb"`, `"hvm_start_info"`), as the report names it.
    const BOOT_DATA: &'static str;

    /// The console's driver. A board with several possible consoles (the Pi) picks the
    /// device at run time inside one driver type.
    type Uart: ConsoleUart;

    /// The console's base (MMIO address or I/O port) until the boot information names one,
    /// and when it names none.
    const FALLBACK_UART: usize;

    /// What the banner calls the console UART.
    fn uart_name() -> &'static str;

    /// Why [`Board::probe`] could not describe the machine.
    type ProbeError: fmt::Display;

    /// Everything the firmware needs to know about the machine, from `boot_arg` (what the
    /// loader passed in `x0`, `%ebx` or `a1`) and `boot_hwid` (`Isa::boot_hwid`). Runs on the
    /// boot core before the identity map exists: on aarch64 with the MMU off, so no locks
    /// and no atomic read-modify-writes. A console the boot information names goes to
    /// `console::set_uart` as soon as it is known.
    fn probe(boot_arg: usize, boot_hwid: u64) -> Result<BootInfo, Self::ProbeError>;

    /// Starts logical core `logical` of `cpus` at the ISA's secondary entry, which calls
    /// `kernel_secondary(logical)`, and returns without waiting for it to come online:
    /// the firmware starts every core before it waits for any.
    fn start_cpu(cpus: &Cpus, logical: usize) -> Result<(), StartError>;

    /// The board's own self-tests, run after the common ones.
    const TESTS: &'static [Test] = &[];

    /// How the board shows the self-test result without a console (an LED pattern), run
    /// on a core of its own for ever; `None` when it has no way (QEMU ends the machine).
    fn result_indicator(_passed: bool) -> Option<Indicator> {
        None
    }

    /// Starts a periodic timer interrupt on the running core whose handler calls
    /// `bsp::ticks::fire` once per tick, every `period_us` microseconds.
    fn ticks_start(period_us: u64) -> Result<(), &'static str>;

    /// Stops the running core's ticks.
    fn ticks_stop();
}

/// A console UART driver: the `embedded-io` `Read`, `Write` and `WriteReady`, on a device
/// at a base address. Every wait in `write` and `flush` has a time limit (see
/// `device_driver::common::Deadline`): a transmitter that stops draining is an error, on
/// which the console stops waiting for it, never a hang.
pub trait ConsoleUart: embedded_io::Read + embedded_io::Write + embedded_io::WriteReady {
    /// # Safety
    /// `base` is the MMIO address or I/O port of a UART this driver drives, mapped as
    /// device memory (or the MMU is off), and whoever holds a driver for it coordinates
    /// with other holders.
    unsafe fn new(base: usize) -> Self;

    /// Sets the line up: 8N1, transmit and receive on, at the rate the board wants or the
    /// one the boot firmware left.
    fn init(&mut self);
}

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
            BootSource::BootData(r) => write!(f, "{} {r}", <board as Board>::BOOT_DATA),
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
    /// Which node each CPU and each memory range is on (`bsp::numa`): one node when the
    /// boot information says nothing of nodes, or says something that does not hold.
    pub topology: Topology,
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
    /// Where the firmware image and the boot data (`board::BOOT_DATA`; on a Pi without a
    /// device tree, the ATAG list) sit (both reserved in `map`; the boot data range is
    /// empty without any).
    pub image: PhysRange,
    pub boot_data: PhysRange,
    /// What the boot information gave that kmem did not take as given, for the boot
    /// report: a device address `bsp::vet` refused and what is used instead, and what the
    /// board changed to use the rest (`bsp::bootargs::Note`).
    pub notes: Notes,
}

/// Bytes of text [`Notes`] keeps (a handful of lines: a `BootInfo` is moved around on
/// the boot stack, so it stays small); lines that do not fit are counted.
const NOTES_BYTES: usize = 1536;

/// Lines for the boot report, written while the board reads the boot information (with
/// the MMU off on aarch64: no allocator, no locks) and printed once the console is up.
pub struct Notes {
    text: [u8; NOTES_BYTES],
    len: usize,
    dropped: usize,
}

impl Notes {
    pub const fn new() -> Notes {
        Notes {
            text: [0; NOTES_BYTES],
            len: 0,
            dropped: 0,
        }
    }

    /// Adds a line, or counts it when it does not fit.
    pub fn push(&mut self, line: fmt::Arguments<'_>) {
        struct Append<'a> {
            text: &'a mut [u8; NOTES_BYTES],
            len: usize,
        }
        impl fmt::Write for Append<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let to = self
                    .text
                    .get_mut(self.len..self.len + s.len())
                    .ok_or(fmt::Error)?;
                to.copy_from_slice(s.as_bytes());
                self.len += s.len();
                Ok(())
            }
        }
        let mut append = Append {
            text: &mut self.text,
            len: self.len,
        };
        match fmt::Write::write_fmt(&mut append, format_args!("{line}\n")) {
            Ok(()) => self.len = append.len,
            Err(_) => self.dropped += 1,
        }
    }

    /// The lines kept, in the order they came.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        // Only whole `str`s were copied in, so the text is UTF-8.
        core::str::from_utf8(&self.text[..self.len])
            .unwrap_or("")
            .lines()
    }

    /// How many lines did not fit.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

impl Default for Notes {
    fn default() -> Notes {
        Notes::new()
    }
}

/// Why a secondary core could not be started.
#[derive(Clone, Copy, Debug)]
pub enum StartError {
    /// PSCI CPU_ON failed with this code (-4 ALREADY_ON, -2 INVALID_PARAMETERS, …).
    Psci(i64),
    /// The core has no spin-table release address.
    NoReleaseAddress,
    /// The spin-table entry finds logical ids by Aff0 alone; this MPIDR is beyond it.
    UnsupportedMpidr(u64),
    /// The local APIC did not send the INIT or STARTUP IPI (this error code).
    Ipi(i64),
    /// SBI HSM `hart_start` failed with this error (-3 INVALID_PARAM, -6
    /// ALREADY_AVAILABLE, …).
    Sbi(i64),
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
            StartError::Sbi(e) => write!(f, "SBI HSM hart_start error {e}"),
        }
    }
}
