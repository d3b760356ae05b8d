//! Reading the flattened device tree (DTB) that the loader passes: memory banks and
//! reservations, CPUs and their spin tables, the console and other devices (with bus
//! addresses translated through their parents' `ranges`), PSCI, `syscon-poweroff`, DMA
//! limits and `/chosen`. For every board that boots from a device tree, whatever its ISA:
//! nothing here names one (what differs, such as PSCI's conduits, the caller passes in).
//!
//! Runs on the boot core with the MMU off, so it uses no locks and no atomics; `dtoolkit`
//! validates the whole blob up front and returns errors instead of panicking, so a bad
//! DTB becomes a [`DtError`] that names the problem. Nothing here recurses: [`open`]
//! refuses a tree whose nodes nest deeper than [`MAX_DEPTH`], and the walks below keep
//! their way down in arrays of that length, so a hostile tree cannot run the boot stack
//! out (with the MMU off, nothing would stop it).

use core::fmt;

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::standard::NodeStandard;
use dtoolkit::{Node, Property};

use super::Cpus;
use super::vet::Refused;
use crate::arch::cpu::MAX_CPUS;
use kmem::mm::memmap::{MapError, MemoryMap, PhysRange, RegionKind};

const FDT_MAGIC: u32 = 0xd00d_feed;
/// Largest DTB believed; a bigger `totalsize` is a corrupt header.
const MAX_DTB: usize = 2 << 20;
/// Deepest nesting of nodes read, the root counting as 1 (Linux's `FDT_MAX_DEPTH`): real
/// trees nest a handful of levels, and every walk here is bounded by it.
pub const MAX_DEPTH: usize = 64;

/// Structure-block tokens (the devicetree specification, 5.4.1).
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;

/// What a node's `children()` returns: one level of a walk.
type Children = <FdtNode<'static> as Node>::Children<'static>;

/// Why the device tree could not be used.
#[derive(Debug)]
pub enum DtError {
    /// The loader passed no device-tree address (0).
    Missing,
    /// No FDT magic at the address: no device tree there.
    BadMagic { addr: usize, found: u32 },
    /// The header's size is implausible.
    BadSize { addr: usize, size: usize },
    /// The blob is truncated or malformed.
    Invalid {
        addr: usize,
        err: dtoolkit::error::FdtParseError,
    },
    /// Nodes nest `depth` levels deep, more than [`MAX_DEPTH`].
    TooDeep { addr: usize, depth: usize },
    /// A device the board cannot do without is where it must not be (`bsp::vet`).
    Refused(Refused),
    /// A property that must be well-formed is not.
    BadProperty {
        node: &'static str,
        prop: &'static str,
    },
    /// No `/memory` node gives a usable range.
    NoMemory,
    /// The memory map refused a range, or nothing usable is left once reservations are
    /// cut out.
    Map(MapError),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Missing => f.write_str("the loader passed no device tree (its address is 0)"),
            DtError::BadMagic { addr, found } => write!(
                f,
                "no device tree at {addr:#x}: found {found:#010x} where the magic \
                 {FDT_MAGIC:#010x} belongs"
            ),
            DtError::BadSize { addr, size } => write!(
                f,
                "device tree at {addr:#x}: header gives an implausible size of {size} bytes"
            ),
            DtError::Invalid { addr, err } => {
                write!(
                    f,
                    "device tree at {addr:#x} is truncated or malformed: {err}"
                )
            }
            DtError::TooDeep { addr, depth } => write!(
                f,
                "device tree at {addr:#x}: nodes nested {depth} levels deep, more than the \
                 {MAX_DEPTH} kmem reads"
            ),
            DtError::Refused(r) => write!(f, "device tree: {r}"),
            DtError::BadProperty { node, prop } => {
                write!(f, "device tree: malformed `{prop}` in {node}")
            }
            DtError::NoMemory => f.write_str("device tree: no /memory node with a usable range"),
            DtError::Map(e) => write!(f, "device tree: {e}"),
        }
    }
}

impl From<MapError> for DtError {
    fn from(e: MapError) -> Self {
        DtError::Map(e)
    }
}

/// Opens and validates the DTB at `addr`: the header, the whole structure (`dtoolkit`),
/// and how deeply its nodes nest (at most [`MAX_DEPTH`]).
///
/// # Safety
/// `addr` is readable for 8 bytes and, when they hold an FDT header, for the size it
/// gives; nothing writes that memory afterwards (it is reserved in the memory map).
pub unsafe fn open(addr: usize) -> Result<Fdt<'static>, DtError> {
    let header = addr as *const u32;
    // SAFETY: the caller guarantees the first 8 bytes are readable; FDT headers are
    // 8-byte aligned big-endian words.
    let (magic, size) = unsafe {
        (
            u32::from_be(header.read_volatile()),
            u32::from_be(header.add(1).read_volatile()) as usize,
        )
    };
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic { addr, found: magic });
    }
    if !(40..=MAX_DTB).contains(&size) {
        return Err(DtError::BadSize { addr, size });
    }
    // SAFETY: the header says the blob is `size` bytes, which the caller guarantees are
    // readable and left alone.
    let blob = unsafe { core::slice::from_raw_parts(addr as *const u8, size) };
    let fdt = Fdt::new(blob).map_err(|err| DtError::Invalid { addr, err })?;
    match nesting(blob) {
        depth if depth > MAX_DEPTH => Err(DtError::TooDeep { addr, depth }),
        _ => Ok(fdt),
    }
}

/// How deeply the nodes of `blob` nest (the root alone is 1), from one pass over its
/// structure block with a counter: no recursion and no stack, whatever the input. The
/// blob has passed `Fdt::new`; should a read still fall outside it, the pass ends there.
fn nesting(blob: &[u8]) -> usize {
    let word = |at: usize| {
        let bytes = blob.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    };
    // The header's `off_dt_struct`.
    let Some(mut at) = word(8).map(|w| w as usize) else {
        return 0;
    };
    let (mut depth, mut deepest) = (0usize, 0usize);
    while let Some(token) = word(at) {
        at = match token {
            FDT_BEGIN_NODE => {
                depth += 1;
                deepest = deepest.max(depth);
                let name = at + 4;
                let Some(len) = blob
                    .get(name..)
                    .and_then(|b| b.iter().position(|&c| c == 0))
                else {
                    break;
                };
                (name + len + 1).next_multiple_of(4)
            }
            FDT_END_NODE => {
                depth = depth.saturating_sub(1);
                at + 4
            }
            // Length, name offset, then the value.
            FDT_PROP => match word(at + 4) {
                Some(len) => (at + 12 + len as usize).next_multiple_of(4),
                None => break,
            },
            FDT_NOP => at + 4,
            // FDT_END, or nothing a valid blob holds.
            _ => break,
        };
    }
    deepest
}

/// `(address, size)` of each `reg` entry of `node`.
pub(super) fn regs(
    node: FdtNode<'static>,
    name: &'static str,
) -> Result<impl Iterator<Item = Result<(u64, u64), DtError>>, DtError> {
    let bad = DtError::BadProperty {
        node: name,
        prop: "reg",
    };
    let regs = node.reg().map_err(|_| bad)?;
    Ok(regs
        .into_iter()
        .flatten()
        .map(move |r| match (r.address::<u64>(), r.size::<u64>()) {
            (Ok(a), Ok(s)) => Ok((a, s)),
            _ => Err(DtError::BadProperty {
                node: name,
                prop: "reg",
            }),
        }))
}

/// Whether `n` is a `/memory` node (by name, or by `device_type`).
pub(super) fn is_memory(n: &FdtNode<'static>) -> bool {
    n.name_without_address() == "memory"
        || n.property("device_type")
            .is_some_and(|p| p.value_as::<&str>() == Ok("memory"))
}

/// What [`add_memory`] found.
pub struct MemoryStats {
    /// Bytes of RAM the `/memory` nodes list.
    pub ram: u64,
    /// Bytes of it at or above the limit, left out of the map.
    pub above_limit: u64,
}

/// Adds every `/memory` node's ranges (all `reg` entries) as usable, clipped below
/// `limit`, and every `/memreserve/` entry and `/reserved-memory` child as reserved.
pub fn add_memory(
    fdt: Fdt<'static>,
    map: &mut MemoryMap,
    limit: u64,
) -> Result<MemoryStats, DtError> {
    let mut stats = MemoryStats {
        ram: 0,
        above_limit: 0,
    };
    for node in fdt.root().children().filter(is_memory) {
        for reg in regs(node, "/memory")? {
            let (start, size) = reg?;
            let end = start
                .checked_add(size)
                .ok_or(MapError::Overflow { start, size })?;
            stats.ram += size;
            stats.above_limit += end.saturating_sub(start.max(limit));
            if start < limit && size > 0 {
                map.add(RegionKind::Usable, start, end.min(limit) - start)?;
            }
        }
    }
    if stats.ram == stats.above_limit {
        return Err(DtError::NoMemory);
    }
    for r in fdt.memory_reservations() {
        if r.size() > 0 {
            map.add(RegionKind::Reserved, r.address(), r.size())?;
        }
    }
    if let Some(reserved) = fdt.find_node("/reserved-memory") {
        // Children with only `size` are for the OS to place; there is none here to place them.
        for child in reserved.children() {
            for reg in regs(child, "/reserved-memory")? {
                let (start, size) = reg?;
                if size > 0 {
                    map.add(RegionKind::Reserved, start, size)?;
                }
            }
        }
    }
    Ok(stats)
}

/// Reads `/cpus` (at most [`MAX_CPUS`], with their spin-table release addresses), putting
/// `boot_hwid` first so that logical id 0 is the boot core.
pub fn cpus(fdt: Fdt<'static>, boot_hwid: u64) -> Result<Cpus, DtError> {
    let mut out = Cpus {
        hwids: [0; MAX_CPUS],
        release: [0; MAX_CPUS],
        len: 1,
        in_tree: 0,
    };
    out.hwids[0] = boot_hwid;
    let Some(node) = fdt.find_node("/cpus") else {
        return Ok(Cpus { in_tree: 1, ..out });
    };
    let bad = || DtError::BadProperty {
        node: "/cpus",
        prop: "reg",
    };
    for cpu in node
        .children()
        .filter(|c| c.name_without_address() == "cpu")
    {
        let id = cpu
            .reg()
            .map_err(|_| bad())?
            .and_then(|mut r| r.next())
            .ok_or_else(bad)?
            .address::<u64>()
            .map_err(|_| bad())?;
        let release = match cpu.property("cpu-release-addr") {
            None => 0,
            Some(p) => p.value_as::<u64>().map_err(|_| DtError::BadProperty {
                node: "/cpus",
                prop: "cpu-release-addr",
            })?,
        };
        out.in_tree += 1;
        if id == boot_hwid {
            out.release[0] = release;
        } else if out.len < MAX_CPUS {
            out.hwids[out.len] = id;
            out.release[out.len] = release;
            out.len += 1;
        }
    }
    out.in_tree = out.in_tree.max(1);
    Ok(out)
}

/// The PSCI conduit `/psci/method` names, as the `(method, conduit)` pair of `methods`
/// that has its name (the ISA's PSCI code lists them), if there is a PSCI node.
pub fn psci<C: Copy>(fdt: Fdt<'static>, methods: &[(&str, C)]) -> Result<Option<C>, DtError> {
    let Some(node) = fdt.find_node("/psci") else {
        return Ok(None);
    };
    let method = node.property("method").map(|p| p.value_as::<&str>());
    methods
        .iter()
        .find(|(name, _)| method == Some(Ok(*name)))
        .map(|&(_, conduit)| Some(conduit))
        .ok_or(DtError::BadProperty {
            node: "/psci",
            prop: "method",
        })
}

/// A string property of `/chosen`, or "".
pub fn chosen_str(fdt: Fdt<'static>, prop: &str) -> &'static str {
    fdt.find_node("/chosen")
        .and_then(|c| c.property(prop))
        .and_then(|p| p.value_as::<&'static str>().ok())
        .unwrap_or("")
}

/// The bytes of `/chosen/rng-seed`, or none.
pub fn rng_seed(fdt: Fdt<'static>) -> &'static [u8] {
    fdt.find_node("/chosen")
        .and_then(|c| c.property("rng-seed"))
        .map_or(&[], |p| p.value_as::<&'static [u8]>().unwrap_or(&[]))
}

/// The root's `model`, or "".
pub fn model(fdt: Fdt<'static>) -> &'static str {
    fdt.root()
        .property("model")
        .and_then(|p| p.value_as::<&'static str>().ok())
        .unwrap_or("")
}

/// A device's first `reg` entry as the CPU sees it, and the node it is from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reg {
    /// The node's name, for reports.
    pub node: &'static str,
    /// Its MMIO base, translated through every bus above it.
    pub base: u64,
    /// The size the entry gives (0 when the bus has no size cells).
    pub size: u64,
}

/// The console `/chosen/stdout-path` names (a path or an alias, options after `:`
/// ignored), when it is `compatible` with one of `compatibles`: which one, and its
/// registers.
pub fn stdout(fdt: Fdt<'static>, compatibles: &[&str]) -> Option<(usize, Reg)> {
    let path = chosen_str(fdt, "stdout-path").split(':').next()?;
    let path = if path.starts_with('/') {
        path
    } else {
        fdt.find_node("/aliases")?
            .property(path)?
            .value_as::<&'static str>()
            .ok()?
    };
    let (node, reg) = reg_at(fdt.root(), path.strip_prefix('/')?)?;
    let which = compatibles.iter().position(|c| node.is_compatible(c))?;
    Some((which, reg))
}

/// The registers of the first device `compatible` with `compatible`.
pub fn device(fdt: Fdt<'static>, compatible: &str) -> Option<Reg> {
    find_reg(fdt.root(), |n| n.is_compatible(compatible))
}

/// What a `syscon-poweroff` node says: write `value` to the register at `offset` in the
/// `syscon` block its `regmap` names to power the machine off.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Poweroff {
    pub syscon: Reg,
    pub offset: u64,
    pub value: u32,
}

/// The root's `syscon-poweroff` child, if it has one, with the syscon its `regmap`
/// phandle names (found by the same walk as [`device`]).
pub fn syscon_poweroff(fdt: Fdt<'static>) -> Result<Option<Poweroff>, DtError> {
    let Some(node) = fdt
        .root()
        .children()
        .find(|n| n.is_compatible("syscon-poweroff"))
    else {
        return Ok(None);
    };
    let bad = |prop| DtError::BadProperty {
        node: "syscon-poweroff",
        prop,
    };
    let cell = |prop: &'static str| {
        node.property(prop)
            .map(|p| p.value_as::<u32>())
            .transpose()
            .map_err(|_| bad(prop))
    };
    let phandle = cell("regmap")?.ok_or(bad("regmap"))?;
    let syscon = find_reg(fdt.root(), |n| {
        ["phandle", "linux,phandle"]
            .iter()
            .any(|p| n.property(p).map(|p| p.value_as::<u32>()) == Some(Ok(phandle)))
    })
    .ok_or(bad("regmap"))?;
    Ok(Some(Poweroff {
        syscon,
        offset: cell("offset")?.map_or(0, u64::from),
        value: cell("value")?.ok_or(bad("value"))?,
    }))
}

/// The first two `reg` entries of the root's child `compatible` with one of
/// `compatibles`: a GICv2's distributor and CPU interface (`arm,cortex-a15-gic`,
/// `arm,gic-400`). A GICv3 lists more (`devicetree_gic`).
pub fn gic(fdt: Fdt<'static>, compatibles: &[&str]) -> Option<(Reg, Reg)> {
    let node = fdt
        .root()
        .children()
        .find(|n| compatibles.iter().any(|c| n.is_compatible(c)))?;
    let mut regs = node.reg().ok()??;
    let mut next = || {
        let r = regs.next()?;
        Some(Reg {
            node: node.name(),
            base: r.address::<u64>().ok()?,
            size: r.size::<u64>().unwrap_or(0),
        })
    };
    Some((next()?, next()?))
}

/// The node at `path` (from the root, no leading `/`) and its first `reg` entry, the
/// address translated through every bus above it to the root's address space.
/// Iterative: the buses on the way down are kept in an array of [`MAX_DEPTH`].
fn reg_at(root: FdtNode<'static>, path: &str) -> Option<(FdtNode<'static>, Reg)> {
    let mut chain: [Option<FdtNode<'static>>; MAX_DEPTH] = [None; MAX_DEPTH];
    let mut len = 0;
    let mut node = root;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        node = node.child(name)?;
        *chain.get_mut(len)? = Some(node);
        len += 1;
    }
    let (_, buses) = chain[..len].split_last()?;
    let reg = first_reg(node)?;
    let base = buses
        .iter()
        .rev()
        .try_fold(reg.base, |a, bus| translate((*bus)?, a))?;
    Some((node, Reg { base, ..reg }))
}

/// Depth first from the root: the first `reg` entry of the first node `wanted` picks (not
/// looking inside it), its address translated to the root's address space. A match
/// without a `reg`, or that no bus above it translates, is passed over. Iterative: the
/// walk keeps each level's children in an array of [`MAX_DEPTH`] ([`open`] refused
/// deeper trees; anything deeper would not be searched).
fn find_reg(root: FdtNode<'static>, wanted: impl Fn(&FdtNode<'static>) -> bool) -> Option<Reg> {
    let mut levels: [Option<(FdtNode<'static>, Children)>; MAX_DEPTH] = [const { None }; MAX_DEPTH];
    levels[0] = Some((root, root.children()));
    let mut len = 1;
    while len > 0 {
        let Some((_, children)) = levels[len - 1].as_mut() else {
            break;
        };
        let Some(child) = children.next() else {
            levels[len - 1] = None;
            len -= 1;
            continue;
        };
        if wanted(&child) {
            // The buses between the root and the match, innermost first.
            let buses = levels[1..len].iter().rev().flatten();
            let found = first_reg(child).and_then(|reg| {
                let base = buses
                    .map(|l| l.0)
                    .try_fold(reg.base, |a, bus| translate(bus, a))?;
                Some(Reg { base, ..reg })
            });
            if found.is_some() {
                return found;
            }
        } else if len < MAX_DEPTH {
            levels[len] = Some((child, child.children()));
            len += 1;
        }
    }
    None
}

/// The first `reg` entry of `node`, in its parent's address space.
pub(super) fn first_reg(node: FdtNode<'static>) -> Option<Reg> {
    let r = node.reg().ok()??.next()?;
    Some(Reg {
        node: node.name(),
        base: r.address::<u64>().ok()?,
        size: r.size::<u64>().unwrap_or(0),
    })
}

/// `addr` in the child address space of `bus`, in `bus`'s parent's space, through its
/// `ranges` (the Pi's `/soc` maps bus addresses 0x7e.. to 0x3f.. or 0xfe..). An empty
/// `ranges` is the identity; no `ranges`, or no range covering `addr`, is untranslatable.
fn translate(bus: FdtNode<'static>, addr: u64) -> Option<u64> {
    let mut ranges = bus.ranges().ok()??.peekable();
    if ranges.peek().is_none() {
        return Some(addr);
    }
    ranges.find_map(|r| {
        let child = r.child_bus_address::<u64>().ok()?;
        let parent = r.parent_bus_address::<u64>().ok()?;
        let len = r.length::<u64>().ok()?;
        (child..child.checked_add(len)?)
            .contains(&addr)
            .then(|| parent + (addr - child))
    })
}

/// The highest CPU address devices can reach by DMA, from the most restrictive
/// `dma-ranges` on the root or its children; `None` when no bus restricts DMA.
pub fn dma_limit(fdt: Fdt<'static>) -> Result<Option<u64>, DtError> {
    let root = fdt.root();
    let mut limit: Option<u64> = None;
    for node in core::iter::once(root).chain(root.children()) {
        let bad = DtError::BadProperty {
            node: "a bus",
            prop: "dma-ranges",
        };
        let Some(ranges) = node.dma_ranges().map_err(|_| bad)? else {
            continue;
        };
        let mut reach: Option<u64> = None;
        for r in ranges {
            let (Ok(parent), Ok(len)) = (r.parent_bus_address::<u64>(), r.length::<u64>()) else {
                return Err(DtError::BadProperty {
                    node: "a bus",
                    prop: "dma-ranges",
                });
            };
            let end = parent.saturating_add(len);
            reach = Some(reach.map_or(end, |e| e.max(end)));
        }
        // An empty `dma-ranges` means 1:1 over everything: no restriction.
        if let Some(end) = reach {
            limit = Some(limit.map_or(end, |l| l.min(end)));
        }
    }
    Ok(limit)
}

/// The blob's own extent, to reserve it.
pub fn extent(fdt: Fdt<'static>) -> PhysRange {
    let data = fdt.data();
    let start = data.as_ptr() as u64;
    PhysRange {
        start,
        end: start + data.len() as u64,
    }
}
