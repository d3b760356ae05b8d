//! What the device tree and the SBI firmware say about the harts themselves: the
//! frequency of their `time` CSR, the ISA extensions the boot hart lists (Svpbmt for the
//! identity map, Zkr for entropy), and whether SBI can start harts (HSM).

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::{Node, Property};

use crate::bsp::devicetree::DtError;

/// `/cpus/timebase-frequency` (one or two cells), if the tree gives it.
pub fn timebase(fdt: Fdt<'static>) -> Result<Option<u64>, DtError> {
    let Some(p) = fdt
        .find_node("/cpus")
        .and_then(|c| c.property("timebase-frequency"))
    else {
        return Ok(None);
    };
    p.value_as::<u32>()
        .map(u64::from)
        .or_else(|_| p.value_as::<u64>())
        .map(Some)
        .map_err(|_| DtError::BadProperty {
            node: "/cpus",
            prop: "timebase-frequency",
        })
}

/// The `/cpus` child whose `reg` is `hart`.
fn cpu_node(fdt: Fdt<'static>, hart: u64) -> Option<FdtNode<'static>> {
    fdt.find_node("/cpus")?.children().find(|c| {
        c.name_without_address() == "cpu"
            && c.reg()
                .ok()
                .flatten()
                .and_then(|mut r| r.next())
                .and_then(|r| r.address::<u64>().ok())
                == Some(hart)
    })
}

/// Whether hart `hart` lists the multi-letter extension `ext` (lower case): in
/// `riscv,isa-extensions`, else in the `_`-separated tail of `riscv,isa`.
pub fn has_extension(fdt: Fdt<'static>, hart: u64, ext: &str) -> bool {
    let Some(cpu) = cpu_node(fdt, hart) else {
        return false;
    };
    if let Some(list) = cpu.property("riscv,isa-extensions") {
        return list
            .value()
            .split(|&b| b == 0)
            .any(|name| name.eq_ignore_ascii_case(ext.as_bytes()));
    }
    cpu.property("riscv,isa")
        .and_then(|p| p.value_as::<&str>().ok())
        .is_some_and(|isa| isa.split('_').skip(1).any(|e| e.eq_ignore_ascii_case(ext)))
}

/// Whether the SBI firmware implements HSM, the way harts are started.
pub fn hsm() -> bool {
    sbi_rt::probe_extension(sbi_rt::Hsm).is_available()
}

/// 32 bytes from the Zkr `seed` CSR, the allocator's hardening entropy when the tree has
/// no `rng-seed`; empty when the CSR keeps giving none. Only called when the boot hart
/// lists Zkr, which lets S-mode read it.
pub fn zkr_seed() -> &'static [u8] {
    static SEED: spin::Once<Option<[u8; 32]>> = spin::Once::new();
    let seed = SEED.call_once(|| {
        let mut seed = [0u8; 32];
        for pair in seed.chunks_mut(2) {
            // The CSR's OPST field is ES16 (0b10) when its low 16 bits are entropy; it
            // may be busy (WAIT) for a while, so a bounded number of reads.
            let word = (0..10_000).find_map(|_| {
                let v: usize;
                // SAFETY: reading `seed` (CSR 0x015) with a write of x0, as Zkr requires;
                // the hart lists Zkr, so it exists and S-mode may read it.
                unsafe { core::arch::asm!("csrrw {}, 0x015, x0", out(reg) v, options(nomem, nostack)) };
                (v >> 30 == 0b10).then_some(v as u16)
            })?;
            pair.copy_from_slice(&word.to_le_bytes());
        }
        Some(seed)
    });
    seed.as_ref().map_or(&[], |s| &s[..])
}
