//! The device-tree self-tests, for every device-tree board. `device_tree_errors`: the
//! parser the boards boot through (`devicetree::open`, `add_memory`, then the memory
//! map's normalisation) fed broken trees — bad magic, a truncated blob, an implausible
//! size, no memory node, a bank past the top of the address space — must return an error
//! that names the fault, and a tree with overlapping, unsorted banks and reservations
//! inside them must give exactly the merged, trimmed map. `device_tree_nesting`: trees
//! nested thousands of levels deep are refused with an error that says so, and one at
//! the deepest level kmem reads is walked right. The broken trees are
//! `boards/selftest/*.dts`, compiled by build.rs; the deep ones are built in memory
//! ([`Builder`]); each is parsed from a copy in kmalloc'd memory that lives for the test.

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
pub fn copy(blob: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u64> {
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

/// A flattened device tree assembled in memory, for trees too large or too deep to keep
/// as source: `begin`, `prop` and `end` append to the structure block, `finish` lays the
/// blob out (header, an empty reservation block, structure, strings).
#[derive(Default)]
pub struct Builder {
    structure: Vec<u8>,
    strings: Vec<u8>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    fn word(&mut self, w: u32) {
        self.structure.extend_from_slice(&w.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    pub fn begin(&mut self, name: &str) -> &mut Builder {
        self.word(1);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self
    }

    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Builder {
        let mut key = Vec::from(name.as_bytes());
        key.push(0);
        let offset = match self.strings.windows(key.len()).position(|w| w == key) {
            Some(o) => o,
            None => {
                self.strings.extend_from_slice(&key);
                self.strings.len() - key.len()
            }
        };
        self.word(3);
        self.word(value.len() as u32);
        self.word(offset as u32);
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    pub fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Builder {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &bytes)
    }

    pub fn string(&mut self, name: &str, value: &str) -> &mut Builder {
        let mut bytes = Vec::from(value.as_bytes());
        bytes.push(0);
        self.prop(name, &bytes)
    }

    pub fn end(&mut self) -> &mut Builder {
        self.word(2);
        self
    }

    /// The blob, in 8-byte aligned words.
    pub fn finish(&mut self) -> Vec<u64> {
        self.word(9);
        let (header, reservations) = (40, 16);
        let structure = header + reservations;
        let strings = structure + self.structure.len();
        let total = strings + self.strings.len();
        let mut blob = Vec::with_capacity(total);
        for w in [
            0xd00d_feed,
            total as u32,
            structure as u32,
            strings as u32,
            header as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structure.len() as u32,
        ] {
            blob.extend_from_slice(&u32::to_be_bytes(w));
        }
        blob.resize(structure, 0);
        blob.extend_from_slice(&self.structure);
        blob.extend_from_slice(&self.strings);
        copy(&blob, |_| {})
    }
}

/// A tree whose `/soc` sits under `levels` nested nodes `n` (each an identity bus), with
/// a PL011 at bus address 0x7e20_1000 that `/soc` maps to 0x3f20_1000 and
/// `/chosen/stdout-path` names by its full path.
fn nested_tree(levels: usize) -> Vec<u64> {
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1]);
    b.begin("memory@40000000")
        .string("device_type", "memory")
        .cells("reg", &[0x4000_0000, 0x800_0000])
        .end();
    let mut path = String::from("/");
    for _ in 0..levels {
        path.push_str("n/");
    }
    path.push_str("soc/serial@7e201000");
    b.begin("chosen").string("stdout-path", &path).end();
    for _ in 0..levels {
        b.begin("n")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .prop("ranges", &[]);
    }
    b.begin("soc")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1])
        .cells("ranges", &[0x7e00_0000, 0x3f00_0000, 0x100_0000]);
    b.begin("serial@7e201000")
        .string("compatible", "arm,pl011")
        .cells("reg", &[0x7e20_1000, 0x200])
        .end();
    b.end();
    for _ in 0..levels {
        b.end();
    }
    b.end().finish()
}

/// Trees nested far deeper than any real one: [`dt::open`] must refuse them with an
/// error that says so, and accept and walk right (the console by `stdout-path`, a device
/// by `compatible`, each translated through every bus) a tree at the deepest it reads.
pub fn device_tree_nesting() -> R {
    let deepest = dt::MAX_DEPTH - 3; // the root, `/soc` and the UART around the `n`s
    for levels in [10_000, 1_000, deepest + 1] {
        let words = nested_tree(levels);
        let (e, text) = error_of(&words)?;
        if !matches!(e, DtError::TooDeep { depth, .. } if depth == levels + 3)
            || !text.contains("nested")
        {
            return Err("a tree nested too deep: wrong error");
        }
    }
    let words = nested_tree(deepest);
    // SAFETY: the blob lives in `words` for as long as the Fdt is used.
    let fdt = unsafe { dt::open(words.as_ptr() as usize) }
        .map_err(|_| "a tree at the deepest kmem reads was refused")?;
    let uart = dt::Reg {
        node: "serial@7e201000",
        base: 0x3f20_1000,
        size: 0x200,
    };
    if dt::stdout(fdt, &["arm,pl011"]) != Some((0, uart)) {
        return Err("stdout-path at the deepest level: not found or not translated");
    }
    if dt::device(fdt, "arm,pl011") != Some(uart) {
        return Err("a device at the deepest level: not found or not translated");
    }
    Ok(())
}
