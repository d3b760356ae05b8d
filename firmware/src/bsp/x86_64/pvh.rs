//! The PVH boot protocol's `hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`): the
//! structure QEMU's PVH loader passes in `%ebx`, with the command line, the RSDP and the
//! e820 memory map. Read in place (identity-mapped by the boot page tables), checked
//! before it is believed.

use core::fmt;

use crate::bsp::bootargs::{self, Note};

/// `hvm_start_info.magic`.
const MAGIC: u32 = 0x336e_c578;
/// Longest command line read: past it, the line is cut at a word boundary, with a note
/// (`bootargs::Note::Cut`).
const MAX_CMDLINE: usize = 4096;
/// Most e820 entries believed; more is a corrupt count.
pub const MAX_E820: usize = 128;
/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// `struct hvm_start_info` (version 1).
#[repr(C)]
pub struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_memmap_table_entry`: one e820 entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    reserved: u32,
}

/// Why the PVH start information cannot be used.
#[derive(Debug)]
pub enum PvhError {
    /// `%ebx` was 0: not started by a PVH loader.
    NoStartInfo,
    BadMagic {
        addr: usize,
        found: u32,
    },
    /// Version 0 has no memory map.
    NoMemoryMap {
        version: u32,
    },
    /// Zero entries, or a null table.
    EmptyMemoryMap,
    TooManyEntries {
        entries: u32,
    },
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PvhError::NoStartInfo => f.write_str(
                "no hvm_start_info (%ebx is 0): boot through PVH, `qemu-system-x86_64 -kernel`",
            ),
            PvhError::BadMagic { addr, found } => write!(
                f,
                "no hvm_start_info at {addr:#x}: found {found:#010x} where the magic \
                 {MAGIC:#010x} belongs"
            ),
            PvhError::NoMemoryMap { version } => write!(
                f,
                "hvm_start_info version {version} carries no e820 memory map"
            ),
            PvhError::EmptyMemoryMap => f.write_str("the e820 memory map is empty"),
            PvhError::TooManyEntries { entries } => write!(
                f,
                "the e820 memory map claims {entries} entries (at most {MAX_E820} believed)"
            ),
        }
    }
}

impl StartInfo {
    /// The structure at `addr`, once its magic and version are checked.
    ///
    /// # Safety
    /// `addr` is 0 or readable for a `StartInfo`, which stays unchanged forever.
    pub unsafe fn at(addr: usize) -> Result<&'static StartInfo, PvhError> {
        if addr == 0 {
            return Err(PvhError::NoStartInfo);
        }
        // SAFETY: the caller's contract; u32 alignment is all the read needs.
        let si = unsafe { &*(addr as *const StartInfo) };
        if si.magic != MAGIC {
            return Err(PvhError::BadMagic {
                addr,
                found: si.magic,
            });
        }
        if si.version < 1 {
            return Err(PvhError::NoMemoryMap {
                version: si.version,
            });
        }
        Ok(si)
    }

    /// The e820 entries.
    pub fn memmap(&self) -> Result<&'static [E820Entry], PvhError> {
        let n = self.memmap_entries;
        if n == 0 || self.memmap_paddr == 0 {
            return Err(PvhError::EmptyMemoryMap);
        }
        if n as usize > MAX_E820 {
            return Err(PvhError::TooManyEntries { entries: n });
        }
        // SAFETY: the loader put `n` entries at memmap_paddr (identity-mapped below 4 GiB
        // by the boot tables), reserved from the memory map by the board.
        Ok(unsafe {
            core::slice::from_raw_parts(self.memmap_paddr as *const E820Entry, n as usize)
        })
    }

    /// Physical range of the e820 table, to reserve.
    pub fn memmap_extent(&self) -> (u64, u64) {
        (
            self.memmap_paddr,
            u64::from(self.memmap_entries) * size_of::<E820Entry>() as u64,
        )
    }

    /// The command line's bytes (`-append`), without its NUL; none when there is none.
    /// At most [`MAX_CMDLINE`] bytes are read: a longer line is cut at the last word
    /// that fits, and the cut is noted for the boot report.
    pub fn cmdline(&self) -> &'static [u8] {
        if self.cmdline_paddr == 0 {
            return &[];
        }
        let p = self.cmdline_paddr as *const u8;
        // SAFETY: a NUL-terminated string the loader placed in memory the board keeps
        // reserved (cmdline_extent); the scan stops at MAX_CMDLINE + 1 bytes, still inside
        // the loader's allocation when there is no NUL before it (it is longer).
        let (len, bytes) = unsafe {
            let len = (0..=MAX_CMDLINE)
                .find(|&i| *p.add(i) == 0)
                .unwrap_or(MAX_CMDLINE + 1);
            (len, core::slice::from_raw_parts(p, len.min(MAX_CMDLINE + 1)))
        };
        if len <= MAX_CMDLINE {
            return bytes;
        }
        let kept = bootargs::whole_words(bytes, MAX_CMDLINE);
        bootargs::note(Note::Cut {
            source: "the PVH command line",
            limit: MAX_CMDLINE,
            kept,
        });
        &bytes[..kept]
    }

    /// Physical range of the command line, to reserve (`(0, 0)` without one): what
    /// [`StartInfo::cmdline`] reads, NUL or cut included.
    pub fn cmdline_extent(&self) -> (u64, u64) {
        if self.cmdline_paddr == 0 {
            return (0, 0);
        }
        let p = self.cmdline_paddr as *const u8;
        // SAFETY: as in cmdline.
        let len = unsafe { (0..=MAX_CMDLINE).find(|&i| *p.add(i) == 0) };
        (
            self.cmdline_paddr,
            len.map_or(MAX_CMDLINE as u64 + 1, |l| l as u64 + 1),
        )
    }
}
