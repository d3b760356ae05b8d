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
use super::bootargs::{self, Note};
use super::devicetree::{self as dt, DtError, Reg};
use super::vet::{Layout, Refused, with_layout};
use super::{Board, BootInfo, BootSource, Cpus, Indicator, Notes, StartError, Test};
use crate::arch::aarch64::{psci, spin_table};
use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use kmem::mm::memmap::{MapError, MemoryMap, PhysRange, RegionKind};
use kmem::mm::numa::Topology;
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
    // SAFETY: the base is the SoC's GPIO block or the device tree's, which the probe
    // vetted (`bsp::vet`): device memory in the identity map (or the MMU is off).
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
    /// A device the board relies on lies where the boot information puts RAM (or the
    /// like: `bsp::vet`).
    Refused(Refused),
    /// No device tree, no ATAGs, and the mailbox did not answer either.
    NoBootInfo,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Dt(e) => e.fmt(f),
            ProbeError::Map(e) => write!(f, "memory map: {e}"),
            ProbeError::Refused(r) => write!(f, "{r}"),
            ProbeError::NoBootInfo => f.write_str(
                "no device tree in x0, no memory in ATAGs at 0x100, and no answer from the \
                 mailbox",
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

/// The register blocks the drivers use, from each block's base (the PL011 and the GIC
/// as their TRMs give them, the others as far as the drivers reach).
const PL011_SPAN: u64 = 0x1000;
const GPIO_SPAN: u64 = 0xf4;
const MAILBOX_SPAN: u64 = 0x40;
/// The mini-UART's driver reaches from AUX_ENABLES, 0x3c below the address the device
/// tree gives (AUX_MU_IO), to AUX_MU_BAUD, 0x2c above it.
const MINI_UART_BELOW: u64 = 0x3c;
const MINI_UART_SPAN: u64 = MINI_UART_BELOW + 0x2c;

/// The devices the board drives from its fixed addresses (the SoC's, not the boot
/// information's), and their extents: the PL011, the default GPIO block and mailbox, and
/// the timer interrupts' controller.
const FIXED_DEVICES: &[(&str, usize, u64)] = &[
    ("PL011", PL011, PL011_SPAN),
    ("GPIO block", SOC.peripherals + GPIO_OFFSET, GPIO_SPAN),
    ("mailbox", SOC.peripherals + MAILBOX_OFFSET, MAILBOX_SPAN),
    #[cfg(feature = "rpi3")]
    ("local interrupt block", 0x4000_0000, 0x100),
    #[cfg(feature = "rpi4")]
    ("GIC-400 distributor", 0xff84_1000, 0x1000),
    #[cfg(feature = "rpi4")]
    ("GIC-400 CPU interface", 0xff84_2000, 0x2000),
];

/// Vets the devices at the SoC's fixed addresses: boot information that puts RAM (or
/// kmem's image, or itself) over one of them is refused.
fn vet_fixed_devices(layout: &Layout<'_>) -> Result<(), ProbeError> {
    for &(what, base, span) in FIXED_DEVICES {
        let addr = base as u64;
        layout.device(addr, span).map_err(|why| {
            ProbeError::Refused(Refused {
                what,
                source: SOC.name,
                addr,
                why,
            })
        })?;
    }
    Ok(())
}

/// Where the board's drivers go, from the device tree, every address vetted.
pub struct TreeDevices {
    pub mailbox: usize,
    pub gpio: usize,
    /// The console: its driver and base, and whether `/chosen/stdout-path` named it.
    pub console: (UartKind, usize),
    pub console_from_dt: bool,
}

/// The mailbox, GPIO block and console the device tree names, each vetted against
/// `layout` (`bsp::vet`); one that is refused is noted and replaced by the SoC's own
/// (the PL011 for the console). Also vets the SoC's fixed devices (an error when the tree
/// puts RAM over one). Changes nothing: the self-test `rpi_device_tree_addresses` runs it
/// on hostile trees.
pub fn tree_devices(
    fdt: Fdt<'static>,
    layout: &Layout<'_>,
    notes: &mut Notes,
) -> Result<TreeDevices, ProbeError> {
    vet_fixed_devices(layout)?;
    let mut vetted = |what: &'static str,
                      reg: Option<Reg>,
                      below: u64,
                      span: u64,
                      instead: fmt::Arguments<'_>| {
        let reg = reg?;
        let checked = reg
            .base
            .checked_sub(below)
            .ok_or(super::vet::Refusal::Overflow)
            .and_then(|start| layout.device(start, reg.size.max(span)));
        match checked {
            Ok(_) => Some(reg.base as usize),
            Err(why) => {
                let refused = Refused {
                    what,
                    source: reg.node,
                    addr: reg.base,
                    why,
                };
                notes.push(format_args!("refused: {refused}; {instead}"));
                None
            }
        }
    };
    let default_mailbox = SOC.peripherals + MAILBOX_OFFSET;
    let default_gpio = SOC.peripherals + GPIO_OFFSET;
    let mailbox = vetted(
        "mailbox",
        dt::device(fdt, "brcm,bcm2835-mbox"),
        0,
        MAILBOX_SPAN,
        format_args!("using the SoC's at {default_mailbox:#x}"),
    );
    let gpio = vetted(
        "GPIO block",
        dt::device(fdt, SOC.gpio_compatible),
        0,
        GPIO_SPAN,
        format_args!("using the SoC's at {default_gpio:#x}"),
    );
    let stdout = dt::stdout(fdt, &["arm,pl011", "brcm,bcm2835-aux-uart"]);
    let console = stdout.and_then(|(which, reg)| {
        let (kind, below, span) = match which {
            0 => (UartKind::Pl011, 0, PL011_SPAN),
            _ => (UartKind::MiniUart, MINI_UART_BELOW, MINI_UART_SPAN),
        };
        let instead = format_args!("the console stays on the PL011 at {PL011:#x}");
        vetted("console UART", Some(reg), below, span, instead).map(|base| (kind, base))
    });
    Ok(TreeDevices {
        mailbox: mailbox.unwrap_or(default_mailbox),
        gpio: gpio.unwrap_or(default_gpio),
        console: console.unwrap_or((UartKind::Pl011, PL011)),
        console_from_dt: console.is_some(),
    })
}

/// The memory map a device tree gives, with the tree itself, page 0 and the image
/// reserved: what the tree's devices are vetted against.
pub fn tree_map(fdt: Fdt<'static>, map: &mut MemoryMap) -> Result<dt::MemoryStats, ProbeError> {
    let mem = dt::add_memory(fdt, map, Cpu::MAP_LIMIT)?;
    map.add_range(RegionKind::Reserved, dt::extent(fdt))?;
    reserve_own(map)?;
    Ok(mem)
}

/// The device-tree path. Not inlined into `probe` (nor is the ATAG path): each holds a
/// memory map and a `BootInfo`, kilobytes apiece on the boot stack.
#[inline(never)]
fn from_device_tree(fdt: Fdt<'static>, boot_hwid: u64) -> Result<BootInfo, ProbeError> {
    let (image, dtb) = (super::image(), dt::extent(fdt));
    let mut map = MemoryMap::new();
    let mut notes = Notes::new();
    let devices = tree_map(fdt, &mut map).and_then(|mem| {
        let devices = with_layout(&map, image, dtb, |l| tree_devices(fdt, l, &mut notes))??;
        Ok((mem, devices))
    });
    let (mem, devices) = match devices {
        Ok(d) => d,
        Err(e) => {
            // Without the tree's memory, or with a device of the SoC's under it, the
            // tree's console cannot be trusted: report on the SoC's PL011 (pins routed
            // to it, so that a board shows it too).
            setup_console(UartKind::Pl011, PL011);
            return Err(e);
        }
    };
    MAILBOX_BASE.store(devices.mailbox, Relaxed);
    GPIO_BASE.store(devices.gpio, Relaxed);
    let uart = setup_console(devices.console.0, devices.console.1);
    reserve_vc_memory(&mut map)?;
    let mut cpus = dt::cpus(fdt, boot_hwid)?;
    let psci = dt::psci(fdt, &psci::METHODS)?;
    if let Some(c) = psci {
        // A plain store: fine with the MMU off.
        psci::set_conduit(c);
    }
    with_layout(&map, image, dtb, |l| {
        release_words(&mut cpus, l, psci.is_none(), &mut notes);
    })?;
    for &a in cpus.release[1..cpus.len].iter().filter(|&&a| a != 0) {
        map.add(RegionKind::Reserved, a, 8)?;
    }
    let dma_limit = dt::dma_limit(fdt)?;
    Ok(BootInfo {
        model: dt::model(fdt),
        source: BootSource::BootData(dtb),
        map: map.normalize()?,
        unmapped_ram: mem.above_limit,
        zone_limits: super::zone_limits(ZoneLimits::RPI, dma_limit),
        dma_limit,
        cpu_start: spin_table_start(&cpus),
        // A Pi is one node.
        topology: Topology::flat(cpus.len),
        cpus,
        uart,
        uart_from_dt: devices.console_from_dt,
        bootargs: bootargs::from_device_tree(fdt, &mut notes),
        rng_seed: dt::rng_seed(fdt),
        image,
        boot_data: dtb,
        notes,
    })
}

/// The ATAG path (QEMU without `-dtb`), or the mailbox when there are no ATAGs either
/// (or they give no memory).
#[inline(never)]
fn without_device_tree(x0: usize) -> Result<BootInfo, ProbeError> {
    let mut notes = Notes::new();
    let uart = setup_console(UartKind::Pl011, PL011);
    // The list starts in page 0 and is read up to the image: RAM on every Pi that
    // nothing writes once kmem runs.
    let limit = super::image().start as usize;
    let list = [x0, ATAGS_DEFAULT]
        .into_iter()
        .filter(|&a| a < PAGE_ZERO.end as usize)
        // SAFETY: [a, limit) is RAM below the image, unchanged from here on (the list's
        // extent is reserved below).
        .find_map(|a| unsafe { atags::read(a, limit) }.map(|t| (a, t)));
    let (source, mut banks, mut nbanks, bootargs) = match &list {
        Some((a, t)) => {
            if let Some((at, words)) = t.cut {
                Note::AtagsCut { at, words, limit }.add_to(&mut notes);
            }
            if t.extra_banks > 0 {
                Note::AtagsBanks {
                    kept: MAX_BANKS,
                    ignored: t.extra_banks,
                }
                .add_to(&mut notes);
            }
            let bootargs = bootargs::from_bytes(t.cmdline, "ATAG_CMDLINE", &mut notes);
            (BootSource::Atags(*a as u64), t.mem, t.banks, bootargs)
        }
        None => (BootSource::Mailbox, [(0, 0); MAX_BANKS], 0, ""),
    };
    if nbanks == 0 {
        if list.is_some() {
            Note::AtagsNoMemory.add_to(&mut notes);
        }
        let [base, size] = mailbox()
            .property::<2>(tag::ARM_MEMORY, &[])
            .map_err(|_| ProbeError::NoBootInfo)?;
        (banks[0], nbanks) = ((u64::from(base), u64::from(size)), 1);
    }
    let mut map = MemoryMap::new();
    let mut unmapped_ram = 0;
    for &(start, size) in &banks[..nbanks] {
        let end = start.saturating_add(size);
        unmapped_ram += end.saturating_sub(start.max(Cpu::MAP_LIMIT));
        if start < Cpu::MAP_LIMIT && size > 0 {
            map.add(RegionKind::Usable, start, end.min(Cpu::MAP_LIMIT) - start)?;
        }
    }
    let image = super::image();
    // The list, the command line in it included: kept out of the map, and mapped.
    let boot_data = match &list {
        Some((a, t)) if t.end > *a => PhysRange {
            start: *a as u64,
            end: t.end as u64,
        },
        _ => PhysRange { start: 0, end: 0 },
    };
    reserve_own(&mut map)?;
    if boot_data.end > boot_data.start {
        map.add_range(RegionKind::Reserved, boot_data)?;
    }
    with_layout(&map, image, boot_data, vet_fixed_devices)??;
    reserve_vc_memory(&mut map)?;
    let mut cpus = Cpus {
        hwids: [0; MAX_CPUS],
        release: [0; MAX_CPUS],
        len: 4,
        in_tree: 4,
    };
    for (i, h) in cpus.hwids.iter_mut().take(4).enumerate() {
        *h = i as u64;
    }
    with_layout(&map, image, boot_data, |l| {
        release_words(&mut cpus, l, true, &mut notes);
    })?;
    for &a in cpus.release[1..cpus.len].iter().filter(|&&a| a != 0) {
        map.add(RegionKind::Reserved, a, 8)?;
    }
    Ok(BootInfo {
        model: "no device tree",
        source,
        map: map.normalize()?,
        unmapped_ram,
        zone_limits: ZoneLimits::RPI,
        // What every Pi's DMA masters reach, as the device tree would say.
        dma_limit: Some(ZoneLimits::RPI.dma_end),
        cpu_start: spin_table_start(&cpus),
        // A Pi is one node.
        topology: Topology::flat(cpus.len),
        cpus,
        uart,
        uart_from_dt: false,
        bootargs,
        rng_seed: &[],
        image,
        boot_data,
        notes,
    })
}

/// Page 0 (the spin table, the firmware's stub, the ATAGs) and the image.
fn reserve_own(map: &mut MemoryMap) -> Result<(), MapError> {
    map.add_range(RegionKind::Reserved, PAGE_ZERO)?;
    map.add_range(RegionKind::Reserved, super::image())
}

/// The VideoCore's RAM as the mailbox reports it (the boot information leaves it out
/// already; this holds even when that is wrong).
fn reserve_vc_memory(map: &mut MemoryMap) -> Result<(), MapError> {
    if let Ok([base, size]) = mailbox().property::<2>(tag::VC_MEMORY, &[])
        && size > 0
    {
        map.add(RegionKind::Reserved, u64::from(base), u64::from(size))?;
    }
    Ok(())
}

/// Settles each secondary core's spin-table release word: the tree's `cpu-release-addr`,
/// else (with `firmware_slots`, when there is no PSCI) the firmware's slot 0xd8 + 8 n
/// for cores 0-3 — the first of them that `layout` accepts as a RAM word outside kmem's
/// image and the boot information (`bsp::vet`). Each refused is noted; a core left with
/// none (release 0) is not started. The boot core's entry is cleared: nothing writes it.
pub fn release_words(
    cpus: &mut Cpus,
    layout: &Layout<'_>,
    firmware_slots: bool,
    notes: &mut Notes,
) {
    cpus.release[0] = 0;
    for logical in 1..cpus.len {
        let hwid = cpus.hwids[logical];
        let from_tree = core::mem::take(&mut cpus.release[logical]);
        let candidates = [
            (from_tree != 0).then_some((from_tree, "cpu-release-addr")),
            (firmware_slots && hwid < 4).then_some((SPIN_TABLE + 8 * hwid, "spin-table slot")),
        ];
        let mut refused = None;
        for (addr, what) in candidates.into_iter().flatten() {
            match layout.ram_word(addr) {
                Ok(_) => {
                    cpus.release[logical] = addr;
                    break;
                }
                // Only the first refusal is reported: the next candidate is the fallback.
                Err(why) => {
                    refused = refused.or(Some((addr, what, why)));
                }
            }
        }
        if let Some((addr, what, why)) = refused {
            let released = cpus.release[logical];
            match released {
                0 => notes.push(format_args!(
                    "refused: {what} of cpu {logical} (hwid {hwid:#x}) at {addr:#x}: {why}; \
                     that cpu is not started"
                )),
                _ => notes.push(format_args!(
                    "refused: {what} of cpu {logical} (hwid {hwid:#x}) at {addr:#x}: {why}; \
                     released through the firmware's spin-table slot at {released:#x}"
                )),
            }
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
