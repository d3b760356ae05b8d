//! The self-test `device_tree_errors`, for every device-tree board: the parser the boards
//! boot through (`devicetree::open`, `add_memory`, then the memory map's normalisation)
//! fed broken trees — bad magic, a truncated blob, an implausible size, no memory node,
//! a bank past the top of the address space — must return an error that names the fault,
//! and a tree with overlapping, unsorted banks and reservations inside them must give
//! exactly the merged, trimmed map. The trees are `boards/selftest/*.dts`, compiled by
//! build.rs; each is parsed from a copy in kmalloc'd memory that lives for the test.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::devicetree::{self as dt, DtError};
use kmem::mm::memmap::{MapError, MemoryMap, PhysRange};

type R = Result<(), &'static str>;

const OVERLAPPING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/overlapping.dtb"));
const NO_MEMORY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/no-memory.dtb"));
const OVERFLOWING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/overflowing.dtb"));

/// Where the parser may map RAM (far above every test bank that is not meant to fail).
const LIMIT: u64 = 1 << 40;

/// `blob`, edited by `edit`, in 8-byte aligned memory that outlives every use.
fn copy(blob: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u64> {
    let mut words = alloc::vec![0u64; blob.len().div_ceil(8)];
    // SAFETY: the words are at least blob.len() bytes, and u64 has no invalid byte patterns.
    let bytes = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), blob.len()) };
    bytes.copy_from_slice(blob);
    edit(bytes);
    words
}

/// Parses the tree in `words` the way a board's probe does, and normalises the map.
fn parse(words: &[u64]) -> Result<MemoryMap, DtError> {
    // SAFETY: the blob is readable and unchanged for as long as the Fdt is used: the
    // caller holds `words` until this returns, and nothing parsed outlives it.
    let fdt = unsafe { dt::open(words.as_ptr() as usize)? };
    let mut map = MemoryMap::new();
    dt::add_memory(fdt, &mut map, LIMIT)?;
    Ok(map)
}

/// The error for `words`, as the boot error line would print it.
fn error_of(words: &[u64]) -> Result<(DtError, String), &'static str> {
    match parse(words) {
        Ok(map) => match map.normalize() {
            Ok(_) => Err("a broken device tree was accepted"),
            Err(e) => Ok((DtError::Map(e), format!("{}", DtError::Map(e)))),
        },
        Err(e) => {
            let text = format!("{e}");
            Ok((e, text))
        }
    }
}

fn set_be32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub fn device_tree_errors() -> R {
    // Bad magic.
    let (e, text) = error_of(&copy(OVERLAPPING, |b| b[0] = 0))?;
    if !matches!(e, DtError::BadMagic { .. }) || !text.contains("no device tree") {
        return Err("bad magic: wrong error");
    }
    // Truncated: the header claims less than the structure block needs.
    let (e, _) = error_of(&copy(OVERLAPPING, |b| set_be32(b, 4, 64)))?;
    if !matches!(e, DtError::Invalid { .. }) {
        return Err("truncated blob: wrong error");
    }
    // An implausible size.
    let (e, _) = error_of(&copy(OVERLAPPING, |b| set_be32(b, 4, 8)))?;
    if !matches!(e, DtError::BadSize { .. }) {
        return Err("implausible size: wrong error");
    }
    // No memory node.
    let (e, text) = error_of(&copy(NO_MEMORY, |_| {}))?;
    if !matches!(e, DtError::NoMemory) || text.is_empty() {
        return Err("no memory node: wrong error");
    }
    // A bank past the top of the address space.
    let (e, _) = error_of(&copy(OVERFLOWING, |_| {}))?;
    if !matches!(e, DtError::Map(MapError::Overflow { .. })) {
        return Err("overflowing bank: wrong error");
    }
    // Overlapping, unsorted banks with reservations inside: one exact map.
    let words = copy(OVERLAPPING, |_| {});
    let map = parse(&words)
        .map_err(|_| "overlapping banks: refused")?
        .normalize()
        .map_err(|_| "overlapping banks: refused by the map")?;
    let r = |start, end| PhysRange { start, end };
    let want_usable = [
        r(0x4000_0000, 0x4010_0000),
        r(0x4010_1000, 0x4500_0000),
        r(0x4800_0000, 0x4880_0000),
        r(0x48a0_0000, 0x4900_0000),
    ];
    if map.usable() != want_usable {
        return Err("overlapping banks: not merged, sorted and cut as expected");
    }
    Ok(())
}
