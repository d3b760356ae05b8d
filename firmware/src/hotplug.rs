//! Memory held back at boot and added while the firmware runs (issue 33).
//!
//! The boot core keeps the top of the largest usable range — a sixteenth of it, at most
//! 16 MiB, in whole 2 MiB blocks — out of the map it builds the page allocator from
//! ([`hold_back`]). The identity map covers it as RAM all the same, and nothing else
//! touches it: it is RAM the firmware owns, which is what `Kmem::add_region` asks for.
//! After boot the range is added ([`release`]); the self-test adds and removes it on a
//! running system, and the monitor's `hotplug` command adds and removes any part of it —
//! only of it, as only it is RAM known to be unused.

use kmem::mm::HotplugError;
use kmem::mm::memmap::{MapError, MemoryMap, NormalizedMap, PhysRange, RegionKind};

use super::kmem;
use crate::println;

/// The range held back at boot, if one was.
static HELD: spin::Once<Option<PhysRange>> = spin::Once::new();

/// Largest range held back.
const MAX_HELD: u64 = 16 << 20;
/// Granule of the range held back.
const BLOCK: u64 = 2 << 20;

/// `map` without the range held back (or `map` as it was, when no range is big enough
/// to hold back: then there is nothing to add later). Records the range for
/// [`held_back`].
pub fn hold_back(map: &NormalizedMap) -> Result<NormalizedMap, MapError> {
    let held = map.usable().iter().max_by_key(|r| r.size()).and_then(|r| {
        let size = (r.size() / 16).min(MAX_HELD) / BLOCK * BLOCK;
        let start = (r.end - size) / BLOCK * BLOCK;
        (size > 0 && start >= r.start).then_some(PhysRange { start, end: r.end })
    });
    HELD.call_once(|| held);
    without(map, held.as_slice())
}

/// `map` with `ranges` reserved.
pub fn without(map: &NormalizedMap, ranges: &[PhysRange]) -> Result<NormalizedMap, MapError> {
    let mut m = MemoryMap::new();
    for &r in map.usable() {
        m.add_range(RegionKind::Usable, r)?;
    }
    for &r in map.reserved().iter().chain(ranges) {
        m.add_range(RegionKind::Reserved, r)?;
    }
    m.normalize()
}

/// The range held back at boot.
pub fn held_back() -> Option<PhysRange> {
    HELD.get().copied().flatten()
}

/// Adds `range`, which must lie inside the range held back at boot.
pub fn add(range: PhysRange) -> Result<(), AddError> {
    let held = held_back().ok_or(AddError::NothingHeldBack)?;
    if range.start < held.start || range.end > held.end || range.start >= range.end {
        return Err(AddError::NotHeldBack(held));
    }
    // SAFETY: the range lies in the RAM held back at boot, which the identity map covers
    // as RAM and which nothing but the allocator (once added) uses; kmem refuses a part
    // already added (overlap), so no byte is given to it twice.
    unsafe { kmem().add_region(range) }.map_err(AddError::Refused)
}

/// Why [`add`] refused a range.
#[derive(Debug)]
pub enum AddError {
    /// The boot held nothing back.
    NothingHeldBack,
    /// The range is not inside the range held back (given).
    NotHeldBack(PhysRange),
    /// kmem refused it.
    Refused(HotplugError),
}

impl core::fmt::Display for AddError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddError::NothingHeldBack => f.write_str("no memory was held back at boot"),
            AddError::NotHeldBack(h) => {
                write!(f, "only memory held back at boot ({h}) can be added")
            }
            AddError::Refused(e) => write!(f, "{e}"),
        }
    }
}

/// After boot: the range held back joins the allocator.
pub fn release() {
    if let Some(h) = held_back() {
        match add(h) {
            Ok(()) => println!(
                "hotplug: added {h}, held back at boot ({} KiB)",
                h.size() / 1024
            ),
            Err(e) => println!("hotplug: {h} not added: {e}"),
        }
    }
}
