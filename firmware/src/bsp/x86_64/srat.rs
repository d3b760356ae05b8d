//! The ACPI SRAT (which proximity domain each local APIC and each memory range is in) and
//! SLIT (the distances between them), read into a [`Topology`]: the `acpi` crate finds
//! and checksums them but has no parser for either, so their entries are read here from
//! the bytes (ACPI 6.5, 5.2.16 and 5.2.17). Proximity domains are the node numbers.

use core::marker::PhantomData;

use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiHandler, AcpiTable, AcpiTables};

use crate::bsp::Cpus;
use crate::bsp::numa::{NumaError, logical_of};
use kmem::mm::memmap::PhysRange;
use kmem::mm::numa::{NodeId, Topology};

/// Which table a [`Table`] is.
trait Which {
    const SIGNATURE: Signature;
}

struct Srat;
struct Slit;

impl Which for Srat {
    const SIGNATURE: Signature = Signature::SRAT;
}

impl Which for Slit {
    const SIGNATURE: Signature = Signature::SLIT;
}

/// A table this module reads as bytes after its header.
#[repr(C, packed)]
struct Table<W: Which> {
    header: SdtHeader,
    which: PhantomData<W>,
}

// SAFETY: `Table` is exactly the header every ACPI table starts with.
unsafe impl<W: Which> AcpiTable for Table<W> {
    const SIGNATURE: Signature = W::SIGNATURE;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// Bytes of the SRAT before its first entry: the header, then 12 reserved bytes.
const SRAT_ENTRIES: usize = 48;
/// SRAT entry types: a local APIC's domain, a memory range's, an x2APIC's.
const LOCAL_APIC: u8 = 0;
const MEMORY: u8 = 1;
const LOCAL_X2APIC: u8 = 2;
/// Flags bit 0 of every entry: enabled (a disabled entry is ignored).
const ENABLED: u32 = 1;
/// Bytes of the SLIT before its matrix: the header, then the number of localities (u64).
const SLIT_MATRIX: usize = 44;

/// The table `W` in `tables` as bytes, header included; `None` when there is none.
fn bytes<H: AcpiHandler, W: Which>(tables: &AcpiTables<H>) -> Option<&'static [u8]> {
    let mapping = tables.find_table::<Table<W>>().ok()?;
    let len = mapping.get().header.length as usize;
    // SAFETY: the table is identity-mapped firmware memory that stays in place, unchanged
    // (the caller's contract in `acpi::read`); the crate checked its checksum over all
    // `length` bytes, so all of them are there.
    Some(unsafe { core::slice::from_raw_parts(mapping.virtual_start().as_ptr().cast(), len) })
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The machine's topology from its SRAT and SLIT: `Ok(None)` without an SRAT. Enabled
/// CPUs the SRAT leaves out are an error (they would have no node); CPUs past those kmem
/// brings up (`cpus`) are left out.
pub fn topology<H: AcpiHandler>(
    tables: &AcpiTables<H>,
    cpus: &Cpus,
) -> Result<Option<Topology>, NumaError> {
    let Some(srat) = bytes::<H, Srat>(tables) else {
        return Ok(None);
    };
    let bad = NumaError::Malformed("the SRAT");
    let mut t = Topology::new();
    let mut at = SRAT_ENTRIES;
    while at < srat.len() {
        let (kind, len) = (srat[at], *srat.get(at + 1).ok_or(bad)? as usize);
        let entry = srat.get(at..at + len).filter(|_| len >= 2).ok_or(bad)?;
        match kind {
            LOCAL_APIC => {
                let flags = u32_at(entry, 4).ok_or(bad)?;
                let high = entry.get(9..12).ok_or(bad)?;
                let domain = u32::from_le_bytes([entry[2], high[0], high[1], high[2]]);
                if flags & ENABLED != 0 {
                    add_cpu(&mut t, cpus, u64::from(entry[3]), domain)?;
                }
            }
            LOCAL_X2APIC => {
                let domain = u32_at(entry, 4).ok_or(bad)?;
                let id = u32_at(entry, 8).ok_or(bad)?;
                if u32_at(entry, 12).ok_or(bad)? & ENABLED != 0 {
                    add_cpu(&mut t, cpus, u64::from(id), domain)?;
                }
            }
            MEMORY => {
                let domain = u32_at(entry, 2).ok_or(bad)?;
                let (base, size) = (u64_at(entry, 8).ok_or(bad)?, u64_at(entry, 16).ok_or(bad)?);
                let end = base.checked_add(size).ok_or(bad)?;
                if u32_at(entry, 28).ok_or(bad)? & ENABLED != 0 && size > 0 {
                    t.add_memory(domain as NodeId, PhysRange { start: base, end })?;
                }
            }
            _ => {}
        }
        at += len;
    }
    if t.cpus() < cpus.len {
        return Err(NumaError::Unassigned("a CPU of the MADT (not in the SRAT)"));
    }
    if let Some(slit) = bytes::<H, Slit>(tables) {
        let n = u64_at(slit, 36).ok_or(NumaError::Malformed("the SLIT"))? as usize;
        let matrix = slit
            .get(SLIT_MATRIX..)
            .filter(|m| n.checked_mul(n).is_some_and(|nn| m.len() >= nn))
            .ok_or(NumaError::Malformed("the SLIT"))?;
        for from in 0..n {
            for to in 0..n {
                t.set_distance(from, to, matrix[from * n + to])?;
            }
        }
    }
    Ok(Some(t))
}

/// Puts the CPU with local APIC id `apic_id` on node `domain`, if kmem brings it up.
fn add_cpu(t: &mut Topology, cpus: &Cpus, apic_id: u64, domain: u32) -> Result<(), NumaError> {
    if let Some(logical) = logical_of(cpus, apic_id) {
        t.add_cpu(logical, domain as NodeId)?;
    }
    Ok(())
}
