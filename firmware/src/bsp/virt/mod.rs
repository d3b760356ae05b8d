//! QEMU `virt` (aarch64): the device tree at `x0` or 0x4000_0000, a PL011 console, RAM
//! from 0x4000_0000, PSCI for starting cores, no DMA restrictions below 4 GiB, and ticks
//! from each core's virtual timer through the GICv2 or GICv3 the device tree names.
//!
//! What the tree says is read by [`describe`], which changes nothing, and then applied by
//! `probe` (the console switched, the GIC and the PSCI conduit kept): the self-test
//! `device_tree_addresses` runs [`describe`] on hostile trees. Each device address is
//! vetted (`bsp::vet`) before it is kept: a console UART that fails falls back to QEMU's
//! PL011, and says so in the boot report; a GIC distributor or CPU interface that fails is
//! a boot error, a GICv3 redistributor region that fails is left out with a note (the
//! cores it serves get no ticks). Regions past 4 GiB (QEMU's second, with more than 123
//! cores) are mapped as device memory of their own.

mod gic_tests;
mod tests;

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use dtoolkit::fdt::Fdt;

use super::device_driver::gicv2::Gicv2;
use super::device_driver::gicv3::{Gicv3, MAX_REDISTRIBUTOR_REGIONS, RedistributorRegion};
use super::device_driver::pl011::Pl011;
use super::devicetree::{self as dt, DtError, Reg};
use super::devicetree_gic::gicv3;
use super::gic_ticks::Gic;
use super::vet::{Layout, Refusal, Refused};
use super::{Board, BootInfo, BootSource, Cpus, Notes, StartError, Test};
use crate::arch::aarch64::psci::Conduit;
use crate::arch::aarch64::{high_device_gibs, map_high_device, psci, secondary_entry};
use crate::arch::cpu::{Cpu, Isa};
use kmem::mm::memmap::{MemoryMap, PhysRange, RegionKind};
use kmem::mm::zone::ZoneLimits;

/// QEMU's `virt` machine with an aarch64 CPU.
pub struct Virt;

/// The GIC the device tree named: its distributor (0 when it names none), a GICv2's CPU
/// interface (0 for a GICv3), and a GICv3's redistributor regions (`(base, size)`, size 0
/// for none). Plain stores at probe (MMU off), read-only afterwards.
static GIC_DISTRIBUTOR: AtomicUsize = AtomicUsize::new(0);
static GIC_CPU_INTERFACE: AtomicUsize = AtomicUsize::new(0);
static GIC_REGIONS: [[AtomicUsize; 2]; MAX_REDISTRIBUTOR_REGIONS] =
    [const { [const { AtomicUsize::new(0) }; 2] }; MAX_REDISTRIBUTOR_REGIONS];

/// The GIC the device tree named, if any.
fn gic() -> Option<Gic> {
    let d = GIC_DISTRIBUTOR.load(Relaxed);
    let cpu_interface = GIC_CPU_INTERFACE.load(Relaxed);
    let regions = GIC_REGIONS.each_ref().map(|[b, s]| (b.load(Relaxed), s.load(Relaxed)));
    if d == 0 {
        return None;
    }
    // SAFETY: non-zero values are the device tree's GIC register blocks, which `describe`
    // vetted (every redistributor region whole, for a GICv3): device memory in the
    // identity map (those above its RAM by `map_high_device`), away from RAM.
    Some(unsafe {
        if cpu_interface != 0 {
            Gic::V2(Gicv2::new(d, cpu_interface))
        } else {
            Gic::V3(Gicv3::new(d, regions))
        }
    })
}

/// Keeps the vetted `gic` for [`gic`], and has the MMU map a GICv3's redistributor
/// regions that lie above its RAM map (QEMU's second region, at 256 GiB); a region it
/// cannot map is dropped, as no core may touch it. Boot core, MMU off, before the
/// identity map is built.
fn keep_gic(gic: GicRegs) {
    match gic {
        GicRegs::V2 {
            distributor,
            cpu_interface,
        } => {
            GIC_DISTRIBUTOR.store(distributor, Relaxed);
            GIC_CPU_INTERFACE.store(cpu_interface, Relaxed);
        }
        GicRegs::V3 {
            distributor,
            redistributors,
        } => {
            GIC_DISTRIBUTOR.store(distributor, Relaxed);
            for ((base, size), [b, s]) in redistributors.into_iter().zip(&GIC_REGIONS) {
                let reachable = PhysRange::from_base_size(base as u64, size as u64)
                    .is_ok_and(|r| high_device_gibs(r).is_none() || map_high_device(r));
                if size > 0 && reachable {
                    b.store(base, Relaxed);
                    s.store(size, Relaxed);
                }
            }
        }
    }
}

/// Where QEMU puts the DTB for an ELF kernel linked at or above 0x4010_0000 (`x0` is 0).
const DTB_DEFAULT: usize = 0x4000_0000;
/// The PL011's register block (the driver uses its first 0x34 bytes).
const PL011_SPAN: u64 = 0x1000;
/// A GICv2's distributor and CPU-interface blocks (the driver uses 0x420 and 0x14 bytes).
const GICD_SPAN: u64 = 0x1000;
const GICC_SPAN: u64 = 0x2000;
/// A GICv3's distributor (its regions are at least one core's frames: `devicetree_gic`).
const GICV3_GICD_SPAN: u64 = 0x1_0000;
/// The compatibles of the GICs this board drives.
const GICV2: [&str; 2] = ["arm,cortex-a15-gic", "arm,gic-400"];
const GICV3: [&str; 1] = ["arm,gic-v3"];

/// A GIC the tree names, as [`describe`] vetted it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GicRegs {
    /// A GICv2: its distributor and CPU interface.
    V2 { distributor: usize, cpu_interface: usize },
    /// A GICv3: its distributor and its redistributor regions (size 0 where none is kept).
    V3 {
        distributor: usize,
        redistributors: [RedistributorRegion; MAX_REDISTRIBUTOR_REGIONS],
    },
}

/// The devices [`describe`] found in the tree and vetted, which `probe` then uses.
#[derive(Default)]
pub struct Devices {
    /// The console UART `/chosen/stdout-path` names, when it passed.
    pub console: Option<usize>,
    /// The GIC, when the tree names one.
    pub gic: Option<GicRegs>,
    pub psci: Option<Conduit>,
}

impl Board for Virt {
    const NAME: &'static str = "QEMU virt (aarch64)";
    const BOOT_DATA: &'static str = "dtb";
    type Uart = Pl011;
    /// QEMU's PL011, used until the device tree says otherwise (and when it says nothing).
    const FALLBACK_UART: usize = 0x0900_0000;

    fn uart_name() -> &'static str {
        "PL011"
    }

    type ProbeError = DtError;

    /// `x0` is the DTB address, or 0.
    fn probe(x0: usize, boot_hwid: u64) -> Result<BootInfo, DtError> {
        let addr = if x0 != 0 { x0 } else { DTB_DEFAULT };
        // SAFETY: QEMU virt has RAM at both candidate addresses; the blob is reserved below
        // and never written.
        let fdt: Fdt<'static> = unsafe { dt::open(addr)? };
        let mut devices = Devices::default();
        // Returned as it is: a BootInfo is kilobytes, and this runs on the boot stack
        // with the MMU off, where no guard page would catch an overflow.
        let info = describe(fdt, boot_hwid, &mut devices);
        if info.is_ok() {
            if let Some(base) = devices.console {
                super::console::set_uart(base);
            }
            if let Some(gic) = devices.gic {
                keep_gic(gic);
            }
            if let Some(c) = devices.psci {
                // A plain store: fine with the MMU off.
                psci::set_conduit(c);
            }
        }
        info
    }

    /// Through PSCI.
    fn start_cpu(cpus: &Cpus, logical: usize) -> Result<(), StartError> {
        psci::cpu_on(cpus.hwids[logical], secondary_entry(), logical as u64)
            .map_err(StartError::Psci)
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
        ("device_tree_gicv3", gic_tests::device_tree_gicv3),
    ];

    fn ticks_start(period_us: u64) -> Result<(), &'static str> {
        super::gic_ticks::start(gic(), period_us)
    }

    fn ticks_stop() {
        super::gic_ticks::stop();
    }
}

/// Reads the machine from `fdt` without changing anything: memory, reservations, CPUs,
/// PSCI, DMA limits, `/chosen`, and the console UART and GIC, each vetted against the
/// memory map and the identity map (`bsp::vet`) and left in `devices`. A refused console
/// is noted and replaced by QEMU's PL011; a refused GIC, or a tree that puts RAM over that
/// PL011, is an error.
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
    devices.psci = dt::psci(fdt, &psci::METHODS)?;
    let dma_limit = dt::dma_limit(fdt)?;
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
        cpu_start: devices.psci.map(|_| "PSCI"),
        uart: devices.console.unwrap_or(Virt::FALLBACK_UART),
        uart_from_dt: devices.console.is_some(),
        bootargs: super::bootargs::from_device_tree(fdt, &mut notes),
        rng_seed: dt::rng_seed(fdt),
        image,
        boot_data: dtb,
        notes,
    })
}

/// Vets the console UART and the GIC the tree names (`bsp::vet`), and the board's own
/// PL011, into `devices` and `notes`.
fn vet_devices(
    fdt: Fdt<'static>,
    layout: &Layout<'_>,
    devices: &mut Devices,
    notes: &mut Notes,
) -> Result<(), DtError> {
    // The board's own PL011: the console until the tree names a usable one, and where
    // every boot error goes.
    let fallback = Virt::FALLBACK_UART as u64;
    layout.device(fallback, PL011_SPAN).map_err(|why| {
        DtError::Refused(Refused {
            what: "QEMU virt's PL011",
            source: "the board",
            addr: fallback,
            why,
        })
    })?;
    devices.console = dt::stdout(fdt, &["arm,pl011"]).and_then(|(_, reg)| {
        match layout.device(reg.base, reg.size.max(PL011_SPAN)) {
            Ok(_) => Some(reg.base as usize),
            Err(why) => {
                let refused = Refused {
                    what: "console UART",
                    source: reg.node,
                    addr: reg.base,
                    why,
                };
                notes.push(format_args!(
                    "refused: {refused}; the console stays on the PL011 at {fallback:#x}"
                ));
                None
            }
        }
    });
    if let Some(v3) = gicv3(fdt, &GICV3, notes) {
        vet_gic(layout, v3.distributor, GICV3_GICD_SPAN, "GIC distributor", false)
            .map_err(DtError::Refused)?;
        // A region refused is left out like one the tree gets wrong (`devicetree_gic`):
        // the cores it serves get no ticks, the rest boot.
        let usable = v3.regions.iter().flatten().filter(|r| {
            vet_gic(layout, **r, r.size, "GIC redistributors", true)
                .inspect_err(|refused| notes.push(format_args!("refused: {refused}; left out")))
                .is_ok()
        });
        let mut redistributors = [(0, 0); MAX_REDISTRIBUTOR_REGIONS];
        for (r, kept) in usable.zip(&mut redistributors) {
            *kept = (r.base as usize, r.size as usize);
        }
        devices.gic = Some(GicRegs::V3 {
            distributor: v3.distributor.base as usize,
            redistributors,
        });
    } else if let Some((d, cpu_interface)) = dt::gic(fdt, &GICV2) {
        vet_gic(layout, d, GICD_SPAN, "GIC distributor", false).map_err(DtError::Refused)?;
        vet_gic(layout, cpu_interface, GICC_SPAN, "GIC CPU interface", false)
            .map_err(DtError::Refused)?;
        devices.gic = Some(GicRegs::V2 {
            distributor: d.base as usize,
            cpu_interface: cpu_interface.base as usize,
        });
    }
    Ok(())
}

/// Vets the GIC block at `reg`, taking at least `span` bytes, as `what`. With `high`, for a redistributor region, a block past the RAM the
/// identity map covers, which the MMU can map as device memory on its own
/// (`high_device_gibs`: QEMU's second region, at 256 GiB), passes too: `keep_gic`
/// has it mapped. The other blocks are QEMU's below 4 GiB, and nothing past it is
/// believed for them.
fn vet_gic(
    layout: &Layout<'_>,
    reg: Reg,
    span: u64,
    what: &'static str,
    high: bool,
) -> Result<(), Refused> {
    let size = reg.size.max(span);
    match layout.device(reg.base, size) {
        Err(Refusal::NotDevice)
            if high
                && PhysRange::from_base_size(reg.base, size)
                    .is_ok_and(|r| high_device_gibs(r).is_some()) =>
        {
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(why) => Err(Refused {
            what,
            source: reg.node,
            addr: reg.base,
            why,
        }),
    }
}
