//! x86_64 under QEMU (`q35` or `pc`), booted through PVH: `hvm_start_info` at `%ebx` with
//! the e820 map and the command line, the CPUs from the ACPI MADT, the NUMA nodes from
//! the SRAT and SLIT, the console on COM1,
//! zones DMA / DMA32 / Normal as on every PC, INIT-SIPI-SIPI for starting cores, and
//! each core's local APIC timer for ticks.

mod acpi;
mod apic_tests;
mod pvh;
mod srat;

use core::fmt;

use super::device_driver::uart16550::PortUart;
use super::{Board, BootInfo, BootSource, Cpus, Notes, StartError, Test};
use ::x86_64::instructions::random::RdRand;

use crate::arch::cpu::{Cpu, Isa};
use crate::arch::x86_64::{TRAMPOLINE, apic, exception};
use kmem::mm::memmap::{MapError, MemoryMap, PhysRange, RegionKind};
use kmem::mm::zone::ZoneLimits;
use pvh::{E820_RAM, PvhError, StartInfo};

/// A PC under QEMU (`q35` or `pc`), booted through PVH.
pub struct Pc;

impl Board for Pc {
    const NAME: &'static str = "QEMU x86_64 (PVH)";
    /// Xen's PVH start information.
    const BOOT_DATA: &'static str = "hvm_start_info";
    type Uart = PortUart;
    /// COM1, the PC's first serial port: the console from the first line on.
    const FALLBACK_UART: usize = 0x3f8;

    fn uart_name() -> &'static str {
        "16550 I/O port"
    }

    type ProbeError = BootError;

    /// `start_info` is the loader's `%ebx`.
    fn probe(start_info: usize, boot_hwid: u64) -> Result<BootInfo, BootError> {
        super::console::set_uart(Self::FALLBACK_UART);
        // SAFETY: the PVH loader passed this address; the structure sits in the first MiB,
        // which is reserved below and identity-mapped by the boot tables.
        let si = unsafe { StartInfo::at(start_info)? };
        let mut map = MemoryMap::new();
        let mut unmapped_ram = 0;
        let mut ram = 0;
        for e in si.memmap()?.iter().filter(|e| e.kind == E820_RAM) {
            let r = PhysRange::from_base_size(e.addr, e.size)?;
            ram += 1;
            unmapped_ram += r.end.saturating_sub(r.start.max(Cpu::MAP_LIMIT));
            if r.start < Cpu::MAP_LIMIT {
                map.add_range(
                    RegionKind::Usable,
                    PhysRange::from_bounds(r.start, r.end.min(Cpu::MAP_LIMIT))?,
                )?;
            }
        }
        if ram == 0 {
            return Err(BootError::NoRam);
        }
        let image = super::image();
        let boot_data =
            PhysRange::from_base_size(start_info as u64, size_of::<StartInfo>() as u64)?;
        map.add_range(RegionKind::Reserved, LOW_MEMORY)?;
        map.add_range(RegionKind::Reserved, image)?;
        map.add_range(RegionKind::Reserved, boot_data)?;
        for (start, size) in [si.memmap_extent(), si.cmdline_extent()] {
            if size > 0 {
                map.add(RegionKind::Reserved, start, size)?;
            }
        }
        let mut notes = Notes::new();
        let bootargs =
            super::bootargs::from_bytes(si.cmdline(&mut notes)?, "the PVH command line", &mut notes);
        pvh::check("the ACPI RSDP", si.rsdp_paddr, pvh::RSDP_SIZE)?;
        // SAFETY: the loader found the RSDP, in the boot map (checked above); the tables
        // sit in reserved firmware memory, and the handler refuses any beyond the map.
        let machine = unsafe { acpi::read(si.rsdp_paddr, boot_hwid) }.map_err(BootError::Acpi)?;
        let topology = super::numa::or_flat(machine.numa, &machine.cpus, &mut notes);
        Ok(BootInfo {
            model: machine.oem,
            source: BootSource::BootData(boot_data),
            map: map.normalize()?,
            unmapped_ram,
            zone_limits: ZoneLimits::X86,
            dma_limit: None,
            cpus: machine.cpus,
            topology,
            cpu_start: Some("INIT-SIPI"),
            uart: Self::FALLBACK_UART,
            // COM1 is where PCs put the console: nothing to fall back from.
            uart_from_dt: true,
            bootargs,
            rng_seed: rdrand_seed(),
            image,
            boot_data,
            notes,
        })
    }

    /// With INIT-SIPI-SIPI, the INITs to every listed core at the first call.
    fn start_cpu(cpus: &Cpus, logical: usize) -> Result<(), StartError> {
        // SAFETY: the firmware calls this on the boot core after turning on the page tables
        // (the LAPIC is mapped uncached), with the same list each time, and starts no core
        // in any other way; the trampoline's page is in LOW_MEMORY, reserved.
        unsafe { apic::start_ap(&cpus.hwids[..cpus.len], logical) }.map_err(StartError::Ipi)
    }

    /// The checks every address from the boot information passes, and the PVH start
    /// information's.
    const TESTS: &'static [Test] = &[
        ("vet_addresses", super::vet_tests::vet_addresses),
        ("pvh_addresses", pvh::addresses_test),
        ("apic_ids_are_the_madts", apic_tests::apic_ids_are_the_madts),
    ];

    /// Each core's local APIC timer.
    fn ticks_start(period_us: u64) -> Result<(), &'static str> {
        exception::set_timer_handler(super::ticks::fire);
        exception::timer_start(period_us);
        Ok(())
    }

    fn ticks_stop() {
        exception::timer_stop();
    }
}

/// The real-mode area: BIOS data, the EBDA, option ROMs, the boot information and the AP
/// trampoline all live here; none of it is handed out.
const LOW_MEMORY: PhysRange = PhysRange {
    start: 0,
    end: 1 << 20,
};

// The AP trampoline must sit in the reserved low memory.
const _: () = assert!((TRAMPOLINE as u64) < LOW_MEMORY.end);

/// Why the machine cannot be booted.
#[derive(Debug)]
pub enum BootError {
    Pvh(PvhError),
    /// The e820 map lists no RAM at all.
    NoRam,
    /// The memory map refused an e820 entry, or nothing usable is left.
    Map(MapError),
    /// The ACPI tables (RSDP, XSDT/RSDT, MADT) are missing or corrupt.
    Acpi(::acpi::AcpiError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Pvh(e) => write!(f, "{e}"),
            BootError::NoRam => f.write_str("the e820 memory map lists no RAM (type 1)"),
            BootError::Map(e) => write!(f, "e820 memory map: {e}"),
            BootError::Acpi(e) => write!(f, "ACPI tables: {e:?}"),
        }
    }
}

impl From<PvhError> for BootError {
    fn from(e: PvhError) -> Self {
        BootError::Pvh(e)
    }
}

impl From<MapError> for BootError {
    fn from(e: MapError) -> Self {
        BootError::Map(e)
    }
}

/// 32 bytes from RDRAND, the allocator's hardening entropy on a PC (there is no
/// `rng-seed` to pass it); empty when the CPU lacks RDRAND or it keeps failing, and the
/// firmware then keys the secrets with the cycle counter alone.
fn rdrand_seed() -> &'static [u8] {
    static SEED: spin::Once<Option<[u8; 32]>> = spin::Once::new();
    let seed = SEED.call_once(|| {
        let rng = RdRand::new()?;
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            // Intel's guidance: retry a failed draw up to 10 times.
            let word = (0..10).find_map(|_| rng.get_u64())?;
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Some(seed)
    });
    seed.as_ref().map_or(&[], |s| &s[..])
}
