//! The ACPI tables the firmware reads: the MADT's processor entries (which local APICs
//! exist, the boot core's first), the SRAT and SLIT (`srat`) and the OEM id for the banner. The `acpi` crate finds and
//! checksums the tables; they are read in place through the identity map.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiError, AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};

use crate::arch::cpu::MAX_CPUS;
use crate::bsp::Cpus;
use crate::bsp::numa::NumaError;
use kmem::mm::numa::Topology;

/// A MADT processor entry's flags: the core is present and enabled.
const MADT_ENABLED: u32 = 1;

/// Physical memory is identity-mapped: a mapping is the address itself.
#[derive(Clone, Copy)]
struct Identity;

impl AcpiHandler for Identity {
    /// Tables beyond the low 4 GiB the page tables map (firmware puts them below), or
    /// at 0, end the boot with a message that names them: this interface has no error.
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        if let Err(e) = super::pvh::check("an ACPI table", pa as u64, size as u64) {
            panic!("ACPI tables: {e}");
        }
        let va = NonNull::new(pa as *mut T).expect("the acpi crate maps no table at 0");
        // SAFETY: the identity map covers the low 4 GiB (checked above), where firmware
        // puts the tables.
        unsafe { PhysicalMapping::new(pa, va, size, size, Identity) }
    }

    fn unmap_physical_region<T>(_: &PhysicalMapping<Self, T>) {}
}

/// What the ACPI tables say about the machine.
pub struct Machine {
    pub cpus: Cpus,
    /// The SRAT's and SLIT's topology (`Ok(None)` without an SRAT).
    pub numa: Result<Option<Topology>, NumaError>,
    /// The MADT's OEM id (QEMU: "BOCHS").
    pub oem: &'static str,
}

/// Reads the tables from the RSDP at `rsdp`; `boot_hwid` (the boot core's local APIC id)
/// becomes logical core 0.
///
/// # Safety
/// `rsdp` is the RSDP the loader reported; the tables stay in place, unchanged, forever.
pub unsafe fn read(rsdp: u64, boot_hwid: u64) -> Result<Machine, AcpiError> {
    // SAFETY: the caller's contract.
    let tables = unsafe { AcpiTables::from_rsdp(Identity, rsdp as usize)? };
    let madt = tables.find_table::<Madt>()?;
    let mut cpus = Cpus {
        hwids: [0; MAX_CPUS],
        release: [0; MAX_CPUS],
        len: 1,
        in_tree: 0,
    };
    cpus.hwids[0] = boot_hwid;
    for entry in madt.get().entries() {
        // Type 0 for APIC ids up to 254, type 9 (x2APIC) for any id (QEMU: from 255).
        let (id, flags) = match entry {
            MadtEntry::LocalApic(e) => (u64::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => (u64::from(e.x2apic_id), e.flags),
            _ => continue,
        };
        // Flags bit 0: present and enabled. Without it, bit 1 ("online capable") says the
        // core can be hot-added later, which kmem does not do: it is not there to start.
        if flags & MADT_ENABLED == 0 {
            continue;
        }
        cpus.in_tree += 1;
        if id != boot_hwid && cpus.len < MAX_CPUS {
            cpus.hwids[cpus.len] = id;
            cpus.len += 1;
        }
    }
    cpus.in_tree = cpus.in_tree.max(1);
    // SAFETY: the header lives in firmware memory that stays mapped and unchanged.
    let header = unsafe { &*(madt.get().header() as *const acpi::sdt::SdtHeader) };
    let numa = super::srat::topology(&tables, &cpus);
    Ok(Machine {
        numa,
        cpus,
        oem: header.oem_id().trim_end(),
    })
}
