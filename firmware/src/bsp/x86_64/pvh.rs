//! The PVH boot protocol's `hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`): the
//! structure QEMU's PVH loader passes in `%ebx`, with the command line, the RSDP and the
//! e820 memory map. Read in place (identity-mapped by the boot page tables), checked
//! before it is believed: every address in it must lie in the low 4 GiB those tables map
//! and outside kmem's own image ([`check`]), or it is an error that names it rather than
//! a page fault (or kmem's code read as a memory map).

use core::fmt;

use crate::bsp::Notes;
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
/// What the boot page tables map (boot.s): the loader's structures must lie below.
const BOOT_MAP_END: u64 = 4 << 30;
/// Bytes of an ACPI RSDP (version 2).
pub const RSDP_SIZE: u64 = 36;

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
    /// A structure the loader names lies where kmem cannot or must not read it.
    Unreadable {
        what: &'static str,
        addr: u64,
        why: &'static str,
    },
}

/// Checks that `[addr, addr + len)`, where the loader says `what` is, lies in the low
/// 4 GiB the boot page tables map and outside kmem's image (where the loader cannot have
/// put it: the image is loaded over whatever was there).
pub fn check(what: &'static str, addr: u64, len: u64) -> Result<(), PvhError> {
    let refuse = |why| Err(PvhError::Unreadable { what, addr, why });
    let Some(end) = addr.checked_add(len).filter(|&e| e <= BOOT_MAP_END) else {
        return refuse("beyond the low 4 GiB the boot page tables map");
    };
    let image = crate::bsp::image();
    if addr < image.end && image.start < end {
        return refuse("inside kmem's own image");
    }
    Ok(())
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
            PvhError::Unreadable { what, addr, why } => write!(f, "{what} at {addr:#x}: {why}"),
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
        check("hvm_start_info", addr as u64, size_of::<StartInfo>() as u64)?;
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
        let len = u64::from(n) * size_of::<E820Entry>() as u64;
        check("the e820 memory map", self.memmap_paddr, len)?;
        // SAFETY: the loader put `n` entries at memmap_paddr, identity-mapped below 4 GiB
        // by the boot tables (checked above), reserved from the memory map by the board.
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
    /// At most [`MAX_CMDLINE`] bytes are read, never past the boot map: a longer line is
    /// cut at the last word that fits, and the cut is noted for the boot report. A line
    /// outside the boot map or inside the image is an error.
    pub fn cmdline(&self, notes: &mut Notes) -> Result<&'static [u8], PvhError> {
        if self.cmdline_paddr == 0 {
            return Ok(&[]);
        }
        check("the command line", self.cmdline_paddr, 1)?;
        let max = self.cmdline_scan_limit();
        let p = self.cmdline_paddr as *const u8;
        // SAFETY: a NUL-terminated string the loader placed in memory the board keeps
        // reserved (cmdline_extent), identity-mapped (checked above); the scan stops at
        // `max`, inside the boot map and at most MAX_CMDLINE + 1 bytes, still inside the
        // loader's allocation when there is no NUL before it (it is longer).
        let (len, bytes) = unsafe {
            let len = (0..max).find(|&i| *p.add(i) == 0).unwrap_or(max);
            (len, core::slice::from_raw_parts(p, len))
        };
        check("the command line", self.cmdline_paddr, len as u64 + 1)?;
        if len <= MAX_CMDLINE {
            return Ok(bytes);
        }
        let kept = bootargs::whole_words(bytes, MAX_CMDLINE);
        Note::Cut {
            source: "the PVH command line",
            limit: MAX_CMDLINE,
            kept,
        }
        .add_to(notes);
        Ok(&bytes[..kept])
    }

    /// How far [`StartInfo::cmdline`] scans for the NUL: MAX_CMDLINE + 1 bytes, or up to
    /// the end of the boot map.
    fn cmdline_scan_limit(&self) -> usize {
        (BOOT_MAP_END - self.cmdline_paddr).min(MAX_CMDLINE as u64 + 1) as usize
    }

    /// Physical range of the command line, to reserve (`(0, 0)` without one, or when it
    /// lies where it cannot be read): what [`StartInfo::cmdline`] reads, NUL or cut
    /// included.
    pub fn cmdline_extent(&self) -> (u64, u64) {
        if self.cmdline_paddr == 0 || check("the command line", self.cmdline_paddr, 1).is_err()
        {
            return (0, 0);
        }
        let max = self.cmdline_scan_limit();
        let p = self.cmdline_paddr as *const u8;
        // SAFETY: as in cmdline.
        let len = unsafe { (0..max).find(|&i| *p.add(i) == 0) };
        (self.cmdline_paddr, len.map_or(max as u64, |l| l as u64 + 1))
    }
}

/// A copy of `value` in kmalloc'd memory below 4 GiB (`Gfp::DMA32`), inside the boot map
/// whatever `-m` is; freed by the caller with [`free_low`].
fn low<T>(value: T) -> Result<*mut T, &'static str> {
    let p = crate::kmem()
        .kmalloc(size_of::<T>(), kmem::Gfp::DMA32)
        .map_err(|_| "no memory below 4 GiB for the test")?
        .cast::<T>();
    // SAFETY: a fresh allocation of T's size, 8-aligned (kmalloc's least), which is all
    // these types need.
    unsafe { p.as_ptr().write(value) };
    Ok(p.as_ptr())
}

/// Frees what [`low`] allocated.
fn free_low<T>(p: *mut T) {
    // SAFETY: `p` came from `low`'s kmalloc and nothing uses it any more.
    let _ = unsafe { crate::kmem().kfree(p.cast()) };
}

/// The self-test `pvh_addresses`: start information whose e820 table, command line or
/// own address lies beyond the boot map or inside kmem's image must be refused with an
/// error that names it, never read; sane start information must be read as it is. The
/// structures are laid out in kmalloc'd memory below 4 GiB.
pub fn addresses_test() -> Result<(), &'static str> {
    let entry = low(E820Entry {
        addr: 0x10_0000,
        size: 0x100_0000,
        kind: E820_RAM,
        reserved: 0,
    })?;
    let cmdline = low(*b"selftest\0")?;
    let si = low(StartInfo {
        magic: MAGIC,
        version: 1,
        flags: 0,
        nr_modules: 0,
        modlist_paddr: 0,
        cmdline_paddr: cmdline as u64,
        rsdp_paddr: 0,
        memmap_paddr: entry as u64,
        memmap_entries: 1,
        reserved: 0,
    })?;
    let result = with(si);
    for p in [si.cast::<u8>(), entry.cast(), cmdline.cast()] {
        free_low(p);
    }
    result
}

/// [`addresses_test`] on the start information at `si`, which it edits.
fn with(si: *mut StartInfo) -> Result<(), &'static str> {
    let read = |memmap: Option<u64>, cmdline: Option<u64>| {
        // SAFETY: `si` is a StartInfo in kmalloc'd memory below 4 GiB, alive until the
        // caller frees it after the last read; nothing else uses it.
        let si = unsafe {
            if let Some(m) = memmap {
                (*si).memmap_paddr = m;
            }
            if let Some(c) = cmdline {
                (*si).cmdline_paddr = c;
            }
            StartInfo::at(si as usize)?
        };
        Ok::<_, PvhError>((si.memmap()?.len(), si.cmdline(&mut Notes::new())?.len()))
    };
    let refused = |r: Result<(usize, usize), PvhError>, what: &str| {
        matches!(r, Err(PvhError::Unreadable { what: w, .. }) if w == what)
    };
    if !matches!(read(None, None), Ok((1, 8))) {
        return Err("sane start information was not read as it is");
    }
    // SAFETY: as above, for the reads that restore the fields.
    let (memmap, cmdline) = unsafe { ((*si).memmap_paddr, (*si).cmdline_paddr) };
    let image = crate::bsp::image().start;
    for bad in [0x10_0000_0000, BOOT_MAP_END - 8, image] {
        if !refused(read(Some(bad), None), "the e820 memory map") {
            return Err("an e820 table beyond the boot map or in the image was not refused");
        }
    }
    for bad in [BOOT_MAP_END, image + 0x100] {
        if !refused(read(Some(memmap), Some(bad)), "the command line") {
            return Err("a command line beyond the boot map or in the image was not refused");
        }
    }
    if !matches!(read(Some(memmap), Some(cmdline)), Ok((1, 8))) {
        return Err("start information put back was not read as it is");
    }
    // SAFETY: refused before anything at the address is read.
    let r = unsafe { StartInfo::at((BOOT_MAP_END - 8) as usize) };
    if !matches!(r, Err(PvhError::Unreadable { .. })) {
        return Err("start information across the end of the boot map was not refused");
    }
    let beyond = [check("the RSDP", BOOT_MAP_END, RSDP_SIZE), check("x", u64::MAX, 2)];
    if beyond.iter().any(Result::is_ok) {
        return Err("an address beyond the boot map passed");
    }
    Ok(())
}
