//! QEMU `virt` (aarch64): the device tree at `x0` or 0x4000_0000, a PL011 console, RAM
//! from 0x4000_0000, PSCI for starting cores, no DMA restrictions below 4 GiB, and ticks
//! from each core's virtual timer through the GICv2 the device tree names.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use dtoolkit::fdt::Fdt;

use super::device_driver::gicv2::Gicv2;
use super::device_driver::pl011::Pl011;
use super::devicetree::{self as dt, DtError};
use super::{Board, BootInfo, BootSource, Cpus, StartError, Test};
use crate::arch::aarch64::{psci, secondary_entry};
use crate::arch::cpu::{Cpu, Isa};
use kmem::mm::memmap::{MemoryMap, RegionKind};
use kmem::mm::zone::ZoneLimits;

/// QEMU's `virt` machine with an aarch64 CPU.
pub struct Virt;

/// The GIC's distributor and CPU interface from the device tree; 0 when it names none.
/// Plain stores at probe (MMU off), read-only afterwards.
static GIC_DISTRIBUTOR: AtomicUsize = AtomicUsize::new(0);
static GIC_CPU_INTERFACE: AtomicUsize = AtomicUsize::new(0);

/// The GICv2 the device tree named, if any.
fn gic() -> Option<Gicv2> {
    let (d, c) = (
        GIC_DISTRIBUTOR.load(Relaxed),
        GIC_CPU_INTERFACE.load(Relaxed),
    );
    // SAFETY: non-zero values are the device tree's GICv2 register blocks, below 4 GiB
    // and so mapped as device memory.
    (d != 0 && c != 0).then(|| unsafe { Gicv2::new(d, c) })
}

/// Where QEMU puts the DTB for an ELF kernel linked at or above 0x4010_0000 (`x0` is 0).
const DTB_DEFAULT: usize = 0x4000_0000;

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
        let uart = dt::stdout(fdt, &["arm,pl011"]).map(|(_, base)| base);
        if let Some(base) = uart {
            super::console::set_uart(base);
        }
        let mut map = MemoryMap::new();
        let mem = dt::add_memory(fdt, &mut map, Cpu::MAP_LIMIT)?;
        let (image, dtb) = (super::image(), dt::extent(fdt));
        map.add_range(RegionKind::Reserved, image)?;
        map.add_range(RegionKind::Reserved, dtb)?;
        let psci = dt::psci(fdt)?;
        if let Some(c) = psci {
            // A plain store: fine with the MMU off.
            psci::set_conduit(c);
        }
        let dma_limit = dt::dma_limit(fdt)?;
        // Only below 4 GiB, where the identity map has device memory.
        if let Some((d, c)) = dt::gicv2(fdt).filter(|&(d, c)| d.max(c) < 1 << 32) {
            GIC_DISTRIBUTOR.store(d, Relaxed);
            GIC_CPU_INTERFACE.store(c, Relaxed);
        }
        Ok(BootInfo {
            model: dt::model(fdt),
            source: BootSource::BootData(dtb),
            map: map.normalize()?,
            unmapped_ram: mem.above_limit,
            zone_limits: super::zone_limits(ZoneLimits::DMA32_ONLY, dma_limit),
            dma_limit,
            cpus: dt::cpus(fdt, boot_hwid)?,
            cpu_start: psci.map(|_| "PSCI"),
            uart: uart.unwrap_or(Self::FALLBACK_UART),
            uart_from_dt: uart.is_some(),
            bootargs: dt::chosen_str(fdt, "bootargs"),
            rng_seed: dt::rng_seed(fdt),
            image,
            boot_data: dtb,
        })
    }

    /// Through PSCI.
    fn start_cpu(cpus: &Cpus, logical: usize) -> Result<(), StartError> {
        psci::cpu_on(cpus.hwids[logical], secondary_entry(), logical as u64)
            .map_err(StartError::Psci)
    }

    /// The device-tree parser on broken trees.
    const TESTS: &'static [Test] = &[
        (
            "device_tree_errors",
            super::devicetree_tests::device_tree_errors,
        ),
        (
            "device_tree_nesting",
            super::devicetree_tests::device_tree_nesting,
        ),
    ];

    fn ticks_start(period_us: u64) -> Result<(), &'static str> {
        super::ticks::gic::start(gic(), period_us)
    }

    fn ticks_stop() {
        super::ticks::gic::stop();
    }
}
