//! QEMU `virt` (riscv64), booted in S-mode by OpenSBI: the device tree at `a1`, the
//! ns16550a console `/chosen/stdout-path` names, RAM from 0x8000_0000 (OpenSBI's own
//! range listed in `/reserved-memory`), harts started through SBI HSM, the exit status
//! through the `sifive,test0` finisher the `syscon-poweroff` node names, zones DMA32
//! below 4 GiB and Normal above, and ticks from each hart's SBI timer.
//!
//! What the tree says is read by [`describe`], which changes nothing, and then applied by
//! `probe` (the console switched, the finisher, the timebase and Svpbmt handed to the
//! arch code), as on the aarch64 `virt`. Each device address is vetted (`bsp::vet`)
//! before it is kept: a console or finisher that fails falls back to QEMU's own, and says
//! so in the boot report.

mod isa;
mod tests;

use dtoolkit::fdt::Fdt;

use super::device_driver::uart16550::MmioUart;
use super::devicetree::{self as dt, DtError};
use super::vet::{Layout, Refused};
use super::{Board, BootInfo, BootSource, Cpus, Notes, StartError, Test};
use crate::arch::cpu::{Cpu, Isa};
use crate::arch::riscv64::{exit, mmu, set_timebase, start_hart, trap};
use kmem::mm::memmap::{MemoryMap, RegionKind};
use kmem::mm::zone::ZoneLimits;

/// QEMU's `virt` machine with riscv64 harts.
pub struct RiscvVirt;

/// QEMU's `sifive,test0` finisher and what powers off through it, used until the device
/// tree names one (and when it names none).
const FINISHER: u64 = 0x10_0000;
const FINISHER_PASS: u32 = 0x5555;
/// The 16550's eight byte-wide registers, and the finisher's one word.
const UART_SPAN: u64 = 8;
const FINISHER_SPAN: u64 = 4;

/// The devices [`describe`] found in the tree and vetted, which `probe` then uses.
#[derive(Default)]
pub struct Devices {
    /// The console UART `/chosen/stdout-path` names, when it passed.
    pub console: Option<usize>,
    /// The finisher register and the value that powers off, when the tree names one
    /// that passed.
    pub finisher: Option<(usize, u32)>,
    /// `/cpus/timebase-frequency`.
    pub timebase: Option<u64>,
    /// Whether the boot hart lists Svpbmt.
    pub svpbmt: bool,
}

impl Board for RiscvVirt {
    const NAME: &'static str = "QEMU virt (riscv64)";
    const BOOT_DATA: &'static str = "dtb";
    type Uart = MmioUart;
    /// QEMU's ns16550a, which OpenSBI has set up: the console until the device tree says
    /// otherwise (and when it says nothing).
    const FALLBACK_UART: usize = 0x1000_0000;

    fn uart_name() -> &'static str {
        "ns16550a"
    }

    type ProbeError = DtError;

    /// `a1` is the DTB's address.
    fn probe(a1: usize, boot_hwid: u64) -> Result<BootInfo, DtError> {
        // Until the tree names one, exit through QEMU's finisher: a boot error must still
        // end QEMU failing.
        exit::set_device(FINISHER as usize, FINISHER_PASS);
        if a1 == 0 {
            return Err(DtError::Missing);
        }
        // SAFETY: OpenSBI passes the address of the DTB QEMU put in RAM; the blob is
        // reserved below and never written.
        let fdt: Fdt<'static> = unsafe { dt::open(a1)? };
        let mut devices = Devices::default();
        let info = describe(fdt, boot_hwid, &mut devices);
        match &info {
            Ok(_) => {
                if let Some(base) = devices.console {
                    super::console::set_uart(base);
                }
                if let Some((register, pass)) = devices.finisher {
                    exit::set_device(register, pass);
                }
                if let Some(hz) = devices.timebase {
                    set_timebase(hz);
                }
                if devices.svpbmt {
                    mmu::use_svpbmt();
                }
            }
            // RAM over QEMU's finisher: writing it would write memory, so the failing
            // exit goes through SBI (status 0, after the error is printed).
            Err(DtError::Refused(r)) if r.addr == FINISHER => exit::set_device(0, 0),
            Err(_) => {}
        }
        info
    }

    /// Through SBI HSM `hart_start`.
    fn start_cpu(cpus: &Cpus, logical: usize) -> Result<(), StartError> {
        start_hart(cpus.hwids[logical], logical).map_err(StartError::Sbi)
    }

    /// The device-tree parser on broken trees, the address checks, and this board's
    /// probe on trees that put its devices where they must not be.
    const TESTS: &'static [Test] = &[
        (
            "device_tree_errors",
            super::devicetree_tests::device_tree_errors,
        ),
        (
            "device_tree_nesting",
            super::devicetree_tests::device_tree_nesting,
        ),
        (
            "device_tree_numa",
            super::devicetree_numa_tests::device_tree_numa,
        ),
        ("vet_addresses", super::vet_tests::vet_addresses),
        ("device_tree_addresses", tests::device_tree_addresses),
    ];

    /// Each hart's SBI timer.
    fn ticks_start(period_us: u64) -> Result<(), &'static str> {
        trap::set_timer_handler(super::ticks::fire);
        trap::timer_start(period_us);
        Ok(())
    }

    fn ticks_stop() {
        trap::timer_stop();
    }
}

/// Reads the machine from `fdt` without changing anything: memory, reservations, harts,
/// the timebase, Svpbmt, DMA limits, `/chosen`, and the console UART and the finisher,
/// each vetted against the memory map and the identity map (`bsp::vet`) and left in
/// `devices`. A refused console or finisher is noted and replaced by QEMU's; a tree that
/// puts RAM over those is an error.
pub fn describe(
    fdt: Fdt<'static>,
    boot_hwid: u64,
    devices: &mut Devices,
) -> Result<BootInfo, DtError> {
    let mut map = MemoryMap::new();
    let mem = dt::add_memory(fdt, &mut map, Cpu::MAP_LIMIT)?;
    let (image, dtb) = (super::image(), dt::extent(fdt));
    map.add_range(RegionKind::Reserved, image)?;
    map.add_range(RegionKind::Reserved, dtb)?;
    let map = map.normalize()?;
    let mut notes = Notes::new();
    let layout = Layout {
        map: &map,
        image,
        boot_data: dtb,
    };
    vet_devices(fdt, &layout, devices, &mut notes)?;
    devices.timebase = isa::timebase(fdt)?;
    devices.svpbmt = isa::has_extension(fdt, boot_hwid, "svpbmt");
    let dma_limit = dt::dma_limit(fdt)?;
    let rng_seed = match dt::rng_seed(fdt) {
        [] if isa::has_extension(fdt, boot_hwid, "zkr") => isa::zkr_seed(),
        seed => seed,
    };
    let cpus = dt::cpus(fdt, boot_hwid)?;
    let topology =
        super::numa::or_flat(super::devicetree_numa::topology(fdt, &cpus), &cpus, &mut notes);
    Ok(BootInfo {
        model: dt::model(fdt),
        source: BootSource::BootData(dtb),
        map,
        unmapped_ram: mem.above_limit,
        zone_limits: super::zone_limits(ZoneLimits::DMA32_ONLY, dma_limit),
        dma_limit,
        cpus,
        topology,
        cpu_start: isa::hsm().then_some("SBI HSM"),
        uart: devices.console.unwrap_or(RiscvVirt::FALLBACK_UART),
        uart_from_dt: devices.console.is_some(),
        bootargs: super::bootargs::from_device_tree(fdt, &mut notes),
        rng_seed,
        image,
        boot_data: dtb,
        notes,
    })
}

/// Vets the board's own UART and finisher, and the console UART and finisher the tree
/// names (`bsp::vet`), into `devices` and `notes`.
fn vet_devices(
    fdt: Fdt<'static>,
    layout: &Layout<'_>,
    devices: &mut Devices,
    notes: &mut Notes,
) -> Result<(), DtError> {
    // The board's own devices: where the console and the exit go until the tree names
    // usable ones, and where every boot error goes.
    for (what, addr, span) in [
        ("QEMU virt's ns16550a", RiscvVirt::FALLBACK_UART as u64, UART_SPAN),
        ("QEMU virt's sifive,test0", FINISHER, FINISHER_SPAN),
    ] {
        layout.device(addr, span).map_err(|why| {
            DtError::Refused(Refused {
                what,
                source: "the board",
                addr,
                why,
            })
        })?;
    }
    let fallback = RiscvVirt::FALLBACK_UART;
    devices.console = dt::stdout(fdt, &["ns16550a", "ns16550"]).and_then(|(_, reg)| {
        match layout.device(reg.base, reg.size.max(UART_SPAN)) {
            Ok(_) => Some(reg.base as usize),
            Err(why) => {
                let refused = Refused {
                    what: "console UART",
                    source: reg.node,
                    addr: reg.base,
                    why,
                };
                notes.push(format_args!(
                    "refused: {refused}; the console stays on the ns16550a at {fallback:#x}"
                ));
                None
            }
        }
    });
    devices.finisher = finisher(fdt, layout, notes)?;
    Ok(())
}

/// The finisher register `syscon-poweroff` names and its power-off value, when its
/// syscon is a `sifive,test0` (whose failure code the exit writes) and it passes; else
/// noted, and `None`: QEMU's is used.
fn finisher(
    fdt: Fdt<'static>,
    layout: &Layout<'_>,
    notes: &mut Notes,
) -> Result<Option<(usize, u32)>, DtError> {
    let Some(off) = dt::syscon_poweroff(fdt)? else {
        notes.push(format_args!(
            "no syscon-poweroff in the device tree: exiting through the sifive,test0 at \
             {FINISHER:#x}"
        ));
        return Ok(None);
    };
    if dt::device(fdt, "sifive,test0").map(|r| r.base) != Some(off.syscon.base) {
        notes.push(format_args!(
            "the syscon-poweroff's regmap ({}) is not a sifive,test0: exiting through the \
             one at {FINISHER:#x}",
            off.syscon.node
        ));
        return Ok(None);
    }
    let register = off.syscon.base.checked_add(off.offset);
    match register.map(|r| (r, layout.device(r, FINISHER_SPAN))) {
        Some((r, Ok(_))) => Ok(Some((r as usize, off.value))),
        Some((r, Err(why))) => {
            let refused = Refused {
                what: "poweroff register",
                source: off.syscon.node,
                addr: r,
                why,
            };
            notes.push(format_args!(
                "refused: {refused}; exiting through the sifive,test0 at {FINISHER:#x}"
            ));
            Ok(None)
        }
        None => Err(DtError::BadProperty {
            node: "syscon-poweroff",
            prop: "offset",
        }),
    }
}
