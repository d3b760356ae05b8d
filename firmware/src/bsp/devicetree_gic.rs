//! A GICv3's registers from its device-tree node (the `arm,gic-v3` binding): `reg` lists
//! the distributor, then `#redistributor-regions` redistributor regions (one when the
//! property is absent), then blocks kmem does not use (GICC, GICH, GICV). QEMU virt lists
//! two regions past 123 cores. What does not add up — a count the `reg` list cannot
//! hold, a region too small for one core's frames, an entry that does not parse — is
//! noted for the boot report and left out, so that the cores the remaining regions serve
//! still get their ticks (the others' refuse to start, saying that no redistributor
//! has their affinity).

use dtoolkit::fdt::Fdt;
use dtoolkit::standard::NodeStandard;
use dtoolkit::{Node, Property};

use super::Notes;
use super::device_driver::gicv3::{FRAME, MAX_REDISTRIBUTOR_REGIONS};
use super::devicetree::Reg;

/// A GICv3 as its node gives it: the distributor, and the redistributor regions kept
/// (in `reg` order; `None` where one was left out or none is listed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Gicv3Regs {
    pub distributor: Reg,
    pub regions: [Option<Reg>; MAX_REDISTRIBUTOR_REGIONS],
}

/// The registers of the root's first child `compatible` with one of `compatibles`, read
/// as a GICv3; `None` when there is no such node or its `reg` gives no distributor. Each
/// region left out, and why, goes to `notes`.
pub fn gicv3(fdt: Fdt<'static>, compatibles: &[&str], notes: &mut Notes) -> Option<Gicv3Regs> {
    let node = fdt
        .root()
        .children()
        .find(|n| compatibles.iter().any(|c| n.is_compatible(c)))?;
    let name = node.name();
    let mut regs = node.reg().ok()??.map(|r| {
        Some(Reg {
            node: name,
            base: r.address::<u64>().ok()?,
            size: r.size::<u64>().unwrap_or(0),
        })
    });
    let distributor = regs.next()??;
    let declared = match node
        .property("#redistributor-regions")
        .map(|p| p.value_as::<u32>())
    {
        None => 1,
        Some(Ok(n)) if n > 0 => n as usize,
        Some(_) => {
            notes.push(format_args!(
                "GIC {name}: malformed #redistributor-regions; reading one region"
            ));
            1
        }
    };
    if declared > MAX_REDISTRIBUTOR_REGIONS {
        notes.push(format_args!(
            "GIC {name}: #redistributor-regions is {declared}, more than the \
             {MAX_REDISTRIBUTOR_REGIONS} kmem reads; reading the first \
             {MAX_REDISTRIBUTOR_REGIONS}"
        ));
    }
    let wanted = declared.min(MAX_REDISTRIBUTOR_REGIONS);
    let mut out = Gicv3Regs {
        distributor,
        regions: [None; MAX_REDISTRIBUTOR_REGIONS],
    };
    let mut listed = 0;
    for (i, reg) in regs.take(wanted).enumerate() {
        listed += 1;
        match reg {
            None => notes.push(format_args!(
                "GIC {name}: redistributor region {i} does not parse; left out"
            )),
            Some(r) if r.size < FRAME as u64 => notes.push(format_args!(
                "GIC {name}: redistributor region {i} at {:#x} is {:#x} bytes, less than \
                 one core's frames ({FRAME:#x}); left out",
                r.base, r.size
            )),
            Some(r) => out.regions[i] = Some(r),
        }
    }
    if listed < wanted {
        notes.push(format_args!(
            "GIC {name}: #redistributor-regions is {declared} but reg lists {listed} after \
             the distributor; reading those"
        ));
    }
    if out.regions.iter().all(Option::is_none) {
        notes.push(format_args!(
            "GIC {name}: no redistributor region is usable: no core gets ticks"
        ));
    }
    Some(out)
}
