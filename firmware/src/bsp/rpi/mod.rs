//! Raspberry Pi 3 (BCM2837, feature `rpi3`) and Pi 4 (BCM2711, feature `rpi4`), on the
//! board or under QEMU `raspi3b`/`raspi4b`: `kernel8.img` at 0x8_0000 entered at EL2,
//! secondary cores parked on a spin table, the console on the mini-UART or the PL011.
//!
//! The boot information comes from the device tree the firmware passes in `x0`; without
//! one, from the ATAGs at 0x100; without those, from the VideoCore mailbox. A device tree
//! that is there but unusable (truncated, malformed, nested too deep) is a boot error,
//! not a reason to boot from less. Whatever the
//! source, the VideoCore's share of RAM, page 0 (spin table, ATAGs) and the image stay out
//! of the memory map.

mod atags;
mod led;
mod tests;
mod ticks;
mod uart;

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use dtoolkit::fdt::Fdt;

use super::device_driver::bcm2835_gpio::{Function, Gpio, Model, Pull};
use super::device_driver::bcm2835_mailbox::{Mailbox, clock, tag};
use super::devicetree::{self as dt, DtError};
use super::{Board, BootInfo, BootSource, Cpus, Indicator, StartError, Test};
use crate::arch::aarch64::{psci, spin_table};
use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use kmem::mm::memmap::{MapError, MemoryMap, PhysRange, RegionKind};
use kmem::mm::zone::ZoneLimits;

use uart::UartKind;

/// What differs between the two boards.
struct Soc {
    name: &'static str,
    /// Where the peripherals' bus addresses 0x7e00_0000.. appear to the ARM.
    peripherals: usize,
    gpio: Model,
    gpio_compatible: &'static str,
    /// The VideoCore core clock with `enable_uart=1`, if the mailbox does not say.
    core_clock_hz: u32,
}

#[cfg(feature = "rpi3")]
const SOC: Soc = Soc {
    name: "Raspberry Pi 3 (BCM2837)",
    peripherals: 0x3f00_0000,
    gpio: Model::Bcm2835,
    gpio_compatible: "brcm,bcm2835-gpio",
    core_clock_hz: 250_000_000,
};

#[cfg(feature = "rpi4")]
const SOC: Soc = Soc {
    name: "Raspberry Pi 4 (BCM2711)",
    peripherals: 0xfe00_0000,
    gpio: Model::Bcm2711,
    gpio_compatible: "brcm,bcm2711-gpio",
    core_clock_hz: 500_000_000,
};

/// The Pi 3 or the Pi 4, as the cargo feature says.
pub struct RaspberryPi;

impl Board for RaspberryPi {
    const NAME: &'static str = SOC.name;
    /// What the firmware passes in `x0`, when it passes anything.
    const BOOT_DATA: &'static str = "dtb";
    type Uart = uart::Uart;
    const FALLBACK_UART: usize = PL011;

    /// The console UART the probe chose: the PL011 or the mini-UART.
    fn uart_name() -> &'static str {
        if uart::KIND.load(Relaxed) == UartKind::MiniUart as usize {
            "mini-UART"
        } else {
            "PL011"
        }
    }

    type ProbeError = ProbeError;

    /// `x0` is what the firmware passed: a DTB address, the ATAGs' address, or 0.
    fn probe(x0: usize, boot_hwid: u64) -> Result<BootInfo, ProbeError> {
        // Only addresses in low RAM are read: anything else is not a boot structure.
        let tree = (x0 != 0 && x0.is_multiple_of(8) && x0 < SOC.peripherals).then(|| {
            // SAFETY: an aligned RAM address below the peripherals; the blob, when there
            // is one, is reserved below and never written.
            unsafe { dt::open(x0) }
        });
        let fdt = match tree {
            Some(Ok(fdt)) => Some(fdt),
            // No device tree there: the ATAGs or the mailbox describe the machine.
            None | Some(Err(DtError::BadMagic { .. })) => None,
            // A device tree kmem cannot use: a boot error, not a boot from less.
            Some(Err(e)) => return Err(e.into()),
        };
        match fdt {
            Some(fdt) => from_device_tree(fdt, boot_hwid),
            None => without_device_tree(x0),
        }
    }

    /// By releasing the core from the spin table.
    fn start_cpu(cpus: &Cpus, logical: usize) -> Result<(), StartError> {
        let release = cpus.release[logical];
        if release == 0 {
            return Err(StartError::NoReleaseAddress);
        }
        // SAFETY: the release word is reserved in the memory map (page 0 or added by
        // probe), and the core with this hwid is parked on it; `logical` is the core's own
        // slot.
        unsafe { spin_table::release(release, cpus.hwids[logical], logical) }
            .map_err(|e| StartError::UnsupportedMpidr(e.0))
    }

    const TESTS: &'static [Test] = tests::TESTS;

    fn result_indicator(passed: bool) -> Option<Indicator> {
        led::result_indicator(passed)
    }

    fn ticks_start(period_us: u64) -> Result<(), &'static str> {
        ticks::start(period_us)
    }

    fn ticks_stop() {
        ticks::stop();
    }
}

/// The PL011, the console the firmware sets up when nothing says otherwise.
const PL011: usize = SOC.peripherals + 0x20_1000;
const GPIO_OFFSET: usize = 0x20_0000;
const MAILBOX_OFFSET: usize = 0xb880;
/// The firmware's spin table: core n waits on the word at 0xd8 + 8 n.
const SPIN_TABLE: u64 = 0xd8;
/// Page 0: the spin table, the firmware's stub and the ATAGs.
const PAGE_ZERO: PhysRange = PhysRange {
    start: 0,
    end: 0x1000,
};
/// The console's pins: TXD and RXD on GPIO 14 and 15.
const UART_PINS: [u32; 2] = [14, 15];
/// Their pulls, as Linux's device trees set them: RXD is held high (idle) when nothing
/// is wired to it, so a loose pin does not type noise into the monitor.
const UART_PULLS: [Pull; 2] = [Pull::None, Pull::Up];
/// Where QEMU leaves the ATAGs when `x0` does not point at them.
const ATAGS_DEFAULT: usize = 0x100;
/// Most `/memory` ranges taken from the mailbox or ATAGs.
const MAX_BANKS: usize = atags::MAX_BANKS;

/// MMIO bases found at probe (plain stores with the MMU off, read-only afterwards).
static GPIO_BASE: AtomicUsize = AtomicUsize::new(SOC.peripherals + GPIO_OFFSET);
static MAILBOX_BASE: AtomicUsize = AtomicUsize::new(SOC.peripherals + MAILBOX_OFFSET);

fn gpio() -> Gpio {
    // SAFETY: the base is the device tree's GPIO block or the SoC's, device memory in the
    // identity map (or the MMU is off).
    unsafe { Gpio::new(GPIO_BASE.load(Relaxed), SOC.gpio) }
}

fn mailbox() -> Mailbox {
    // SAFETY: as for gpio(), the mailbox block.
    unsafe { Mailbox::new(MAILBOX_BASE.load(Relaxed)) }
}

/// Why the board could not describe the machine.
#[derive(Debug)]
pub enum ProbeError {
    Dt(DtError),
    Map(MapError),
    /// No device tree, no ATAGs, and the mailbox did not answer either.
    NoBootInfo,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Dt(e) => e.fmt(f),
            ProbeError::Map(e) => write!(f, "memory map: {e}"),
            ProbeError::NoBootInfo => f.write_str(
                "no device tree in x0, no ATAGs at 0x100, and no answer from the mailbox",
            ),
        }
    }
}

impl From<DtError> for ProbeError {
    fn from(e: DtError) -> Self {
        ProbeError::Dt(e)
    }
}

impl From<MapError> for ProbeError {
    fn from(e: MapError) -> Self {
        ProbeError::Map(e)
    }
}

fn from_device_tree(fdt: Fdt<'static>, boot_hwid: u64) -> Result<BootInfo, ProbeError> {
    if let Some(base) = dt::device_base(fdt, "brcm,bcm2835-mbox") {
        MAILBOX_BASE.store(base, Relaxed);
    }
    if let Some(base) = dt::device_base(fdt, SOC.gpio_compatible) {
        GPIO_BASE.store(base, Relaxed);
    }
    let stdout = dt::stdout(fdt, &["arm,pl011", "brcm,bcm2835-aux-uart"]);
    let uart = match stdout {
        Some((0, base)) => setup_console(UartKind::Pl011, base),
        Some((_, base)) => setup_console(UartKind::MiniUart, base),
        None => setup_console(UartKind::Pl011, PL011),
    };
    let mut map = MemoryMap::new();
    let mem = dt::add_memory(fdt, &mut map, Cpu::MAP_LIMIT)?;
    let dtb = dt::extent(fdt);
    map.add_range(RegionKind::Reserved, dtb)?;
    let mut cpus = dt::cpus(fdt, boot_hwid)?;
    match dt::psci(fdt)? {
        // A plain store: fine with the MMU off.
        Some(c) => psci::set_conduit(c),
        None => default_release_addresses(&mut cpus),
    }
    for &a in cpus.release[..cpus.len].iter().filter(|&&a| a != 0) {
        map.add(RegionKind::Reserved, a, 8)?;
    }
    reserve_common(&mut map)?;
    let dma_limit = dt::dma_limit(fdt)?;
    Ok(BootInfo {
        model: dt::model(fdt),
        source: BootSource::BootData(dtb),
        map: map.normalize()?,
        unmapped_ram: mem.above_limit,
        zone_limits: super::zone_limits(ZoneLimits::RPI, dma_limit),
        dma_limit,
        cpu_start: spin_table_start(&cpus),
        cpus,
        uart,
        uart_from_dt: stdout.is_some(),
        bootargs: dt::chosen_str(fdt, "bootargs"),
        rng_seed: dt::rng_seed(fdt),
        image: super::image(),
        boot_data: dtb,
    })
}

/// The ATAG path (QEMU without `-dtb`), or the mailbox when there are no ATAGs either.
fn without_device_tree(x0: usize) -> Result<BootInfo, ProbeError> {
    let uart = setup_console(UartKind::Pl011, PL011);
    // SAFETY: page 0 is RAM on every Pi, and nothing writes it once kmem runs.
    let list = [x0, ATAGS_DEFAULT]
        .into_iter()
        .find_map(|a| unsafe { atags::read(a) }.map(|t| (a, t)));
    let (source, banks, nbanks, bootargs) = match list {
        Some((a, t)) => (BootSource::Atags(a as u64), t.mem, t.banks, t.cmdline),
        None => {
            let [base, size] = mailbox()
                .property::<2>(tag::ARM_MEMORY, &[])
                .map_err(|_| ProbeError::NoBootInfo)?;
            let mut banks = [(0, 0); MAX_BANKS];
            banks[0] = (u64::from(base), u64::from(size));
            (BootSource::Mailbox, banks, 1, "")
        }
    };
    let mut map = MemoryMap::new();
    let mut unmapped_ram = 0;
    for &(start, size) in &banks[..nbanks] {
        let end = start.saturating_add(size);
        unmapped_ram += end.saturating_sub(start.max(Cpu::MAP_LIMIT));
        if start < Cpu::MAP_LIMIT && size > 0 {
            map.add(RegionKind::Usable, start, end.min(Cpu::MAP_LIMIT) - start)?;
        }
    }
    let mut cpus = Cpus {
        hwids: [0; MAX_CPUS],
        release: [0; MAX_CPUS],
        len: 4,
        in_tree: 4,
    };
    for (i, h) in cpus.hwids.iter_mut().take(4).enumerate() {
        *h = i as u64;
    }
    default_release_addresses(&mut cpus);
    reserve_common(&mut map)?;
    Ok(BootInfo {
        model: "no device tree",
        source,
        map: map.normalize()?,
        unmapped_ram,
        zone_limits: ZoneLimits::RPI,
        // What every Pi's DMA masters reach, as the device tree would say.
        dma_limit: Some(ZoneLimits::RPI.dma_end),
        cpu_start: spin_table_start(&cpus),
        cpus,
        uart,
        uart_from_dt: false,
        bootargs,
        rng_seed: &[],
        image: super::image(),
        boot_data: PhysRange { start: 0, end: 0 },
    })
}

/// Page 0, the image, and the VideoCore's RAM as the mailbox reports it (the boot
/// information leaves it out already; this holds even when that is wrong).
fn reserve_common(map: &mut MemoryMap) -> Result<(), MapError> {
    map.add_range(RegionKind::Reserved, PAGE_ZERO)?;
    map.add_range(RegionKind::Reserved, super::image())?;
    if let Ok([base, size]) = mailbox().property::<2>(tag::VC_MEMORY, &[])
        && size > 0
    {
        map.add(RegionKind::Reserved, u64::from(base), u64::from(size))?;
    }
    Ok(())
}

/// The firmware's spin-table slots for cores that have no `cpu-release-addr`.
fn default_release_addresses(cpus: &mut Cpus) {
    for (hwid, release) in cpus.hwids[..cpus.len].iter().zip(&mut cpus.release) {
        if *release == 0 && *hwid < 4 {
            *release = SPIN_TABLE + 8 * hwid;
        }
    }
}

/// How the secondary cores start: through their spin-table slots, when any has one.
fn spin_table_start(cpus: &Cpus) -> Option<&'static str> {
    let released = cpus.release[1..cpus.len].iter().any(|&a| a != 0);
    released.then_some("spin table")
}

/// Routes GPIO 14/15 to the UART at `base`, programs 115200 baud from its clock (as the
/// firmware reports it, else the `config.txt` value), and makes it the console. Returns
/// `base`.
fn setup_console(kind: UartKind, base: usize) -> usize {
    let (function, clock_id, default_clock) = match kind {
        UartKind::Pl011 => (Function::Alt0, clock::UART, 48_000_000),
        UartKind::MiniUart => (Function::Alt5, clock::CORE, SOC.core_clock_hz),
    };
    let g = gpio();
    for (pin, pull) in UART_PINS.into_iter().zip(UART_PULLS) {
        g.set_pull(pin, pull);
        g.set_function(pin, function);
    }
    let clock_hz = mailbox()
        .property::<2>(tag::GET_CLOCK_RATE, &[clock_id])
        .map_or(default_clock, |[_, hz]| hz);
    uart::KIND.store(kind as usize, Relaxed);
    uart::CLOCK_HZ.store(clock_hz, Relaxed);
    super::console::set_uart(base);
    base
}
