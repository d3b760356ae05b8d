//! The self-test `device_tree_gicv3`: the board's probe (`describe`) on trees whose GICv3
//! node lists its redistributor regions in every way the binding allows and some it does
//! not. QEMU's two regions (the second at 256 GiB, past the RAM map) must both be kept;
//! a `#redistributor-regions` the `reg` list cannot hold, zero or too many regions, and a
//! region smaller than one core's frames must boot with what is usable and a note that
//! says what was left out, and so must a region in RAM or past what the MMU can map.

use alloc::string::String;
use alloc::vec::Vec;

use super::tests::{probe, two};
use super::{Devices, GicRegs};
use crate::bsp::devicetree_tests::Builder;

type R = Result<(), &'static str>;

const DISTRIBUTOR: (u64, u64) = (0x0800_0000, 0x1_0000);
/// QEMU virt's two regions: 123 cores' frames below 4 GiB, 512 more at 256 GiB.
const LOW: (u64, u64) = (0x080a_0000, 0xf6_0000);
const HIGH: (u64, u64) = (0x40_0000_0000, 0x400_0000);

/// A `virt`-like tree with a GICv3 whose `reg` lists `regs` (`(base, size)` each, the
/// distributor first), with `#redistributor-regions` when `count` is given.
fn gicv3_tree(count: Option<u32>, regs: &[(u64, u64)]) -> Vec<u64> {
    let reg: Vec<u32> = regs.iter().flat_map(|&(b, s)| two(b).into_iter().chain(two(s))).collect();
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .string("model", "kmem self-test: virt with a GICv3");
    b.begin("memory@40000000")
        .string("device_type", "memory")
        .cells("reg", &[0, 0x4000_0000, 0, 0x800_0000])
        .end();
    b.begin("psci").string("method", "hvc").end();
    b.begin("intc@8000000")
        .string("compatible", "arm,gic-v3")
        .cells("reg", &reg);
    if let Some(n) = count {
        b.cells("#redistributor-regions", &[n]);
    }
    b.end();
    b.end().finish()
}

/// The tree must boot with the GICv3 at [`DISTRIBUTOR`] and exactly the regions `kept`,
/// and its notes must be as many as `notes`, each containing the text given.
#[inline(never)]
fn kept(count: Option<u32>, regs: &[(u64, u64)], kept: &[(u64, u64)], notes: &[&str], what: &'static str) -> R {
    let words = gicv3_tree(count, regs);
    let mut devices = Devices::default();
    let info = probe(&words, &mut devices).map_err(|_| what)?;
    let mut redistributors = [(0, 0); super::MAX_REDISTRIBUTOR_REGIONS];
    for (&(b, s), r) in kept.iter().zip(&mut redistributors) {
        *r = (b as usize, s as usize);
    }
    let want = GicRegs::V3 {
        distributor: DISTRIBUTOR.0 as usize,
        redistributors,
    };
    let lines: Vec<String> = info.notes.lines().map(String::from).collect();
    let noted = lines.len() == notes.len()
        && notes.iter().all(|n| lines.iter().any(|l| l.contains(n)));
    if devices.gic != Some(want) || !noted {
        return Err(what);
    }
    Ok(())
}

pub fn device_tree_gicv3() -> R {
    kept(Some(2), &[DISTRIBUTOR, LOW, HIGH], &[LOW, HIGH], &[], "QEMU's two regions not both kept")?;
    // Without the property, one region; GICC, GICH and GICV may follow it.
    kept(None, &[DISTRIBUTOR, LOW, (0x0801_0000, 0x1_0000)], &[LOW], &[], "one region by default")?;
    kept(
        Some(3),
        &[DISTRIBUTOR, LOW, HIGH],
        &[LOW, HIGH],
        &["#redistributor-regions is 3 but reg lists 2"],
        "more regions declared than listed",
    )?;
    kept(
        Some(2),
        &[DISTRIBUTOR, LOW, (HIGH.0, 0x1000)],
        &[LOW],
        &["redistributor region 1 at 0x4000000000 is 0x1000 bytes, less than one core's frames"],
        "a region smaller than one core's frames",
    )?;
    kept(
        Some(0),
        &[DISTRIBUTOR, LOW, HIGH],
        &[LOW],
        &["malformed #redistributor-regions"],
        "#redistributor-regions of 0",
    )?;
    kept(
        Some(1000),
        &[DISTRIBUTOR, LOW, HIGH],
        &[LOW, HIGH],
        &["#redistributor-regions is 1000, more than the 4 kmem reads", "is 1000 but reg lists 2"],
        "more regions declared than kmem reads",
    )?;
    kept(
        Some(1),
        &[DISTRIBUTOR, (LOW.0, 0x100)],
        &[],
        &["less than one core's frames", "no redistributor region is usable"],
        "no usable region",
    )?;
    kept(
        Some(2),
        &[DISTRIBUTOR, (0x4400_0000, 0x2_0000), HIGH],
        &[HIGH],
        &["refused: GIC redistributors at 0x44000000 (intc@8000000): inside RAM kmem manages"],
        "a redistributor region in RAM",
    )?;
    kept(
        Some(2),
        &[DISTRIBUTOR, LOW, (1 << 40, 0x400_0000)],
        &[LOW],
        &["refused: GIC redistributors at 0x10000000000 (intc@8000000): outside the device memory"],
        "a redistributor region past what the MMU maps",
    )
}
