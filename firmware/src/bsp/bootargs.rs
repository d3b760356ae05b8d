//! The boot arguments as the firmware uses them, made from the raw bytes the loader
//! passed (`/chosen/bootargs`, ATAG_CMDLINE, the PVH command line), and [`Note`], what the
//! boards had to change in the boot information to use it, which they add to their
//! `BootInfo::notes` for the boot report. Nothing is changed without a note: bytes that are not
//! UTF-8 are replaced by `?` (the rest of the line is kept, so that an option after a
//! stray byte still counts), a command line cut at a limit says where, an ATAG list that
//! runs on past what kmem reads says which tags were left.
//!
//! Used by the boards' `probe`, on the boot core with the MMU off (on aarch64): plain
//! loads and stores only, no locks.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::Notes;

/// Longest command line a copy holds (one is made only to replace bytes that are not
/// UTF-8); past it the line is cut, with a note.
pub const COPY_MAX: usize = 4096;

/// Something a board changed or left out of the boot information, to report.
#[derive(Clone, Copy, Debug)]
pub enum Note {
    /// `count` bytes of the boot arguments from `source` were not UTF-8 (the first at
    /// byte `first`) and were replaced by `?`.
    NotUtf8 {
        source: &'static str,
        count: usize,
        first: usize,
    },
    /// The boot arguments from `source` are longer than `limit` bytes: the first `kept`
    /// were used (whole words only).
    Cut {
        source: &'static str,
        limit: usize,
        kept: usize,
    },
    /// The boot arguments from `source` hold a NUL at byte `at` with `rest` more bytes
    /// after it, which were ignored.
    Nul {
        source: &'static str,
        at: usize,
        rest: usize,
    },
    /// The ATAG list has a tag at `at` of `words` words that is malformed or runs past
    /// `limit` (where kmem stops reading): it and the tags after it were ignored.
    AtagsCut {
        at: usize,
        words: usize,
        limit: usize,
    },
    /// The ATAG list has more ATAG_MEM banks than kmem keeps (`kept`): `ignored` left out.
    AtagsBanks { kept: usize, ignored: usize },
    /// The ATAG list has no ATAG_MEM: memory came from the mailbox.
    AtagsNoMemory,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Note::NotUtf8 {
                source,
                count,
                first,
            } => write!(
                f,
                "{source}: {count} byte(s) not UTF-8 (the first at byte {first}), each \
                 replaced by '?'; the rest of the line is kept"
            ),
            Note::Cut {
                source,
                limit,
                kept,
            } => write!(
                f,
                "{source} is longer than {limit} bytes: only the first {kept} (whole words) \
                 are used"
            ),
            Note::Nul { source, at, rest } => write!(
                f,
                "{source} ends at a NUL at byte {at}: the {rest} bytes after it are ignored"
            ),
            Note::AtagsCut { at, words, limit } => write!(
                f,
                "ATAG list: the tag at {at:#x} ({words} words) is malformed or runs past \
                 {limit:#x}; it and any tags after it are ignored"
            ),
            Note::AtagsBanks { kept, ignored } => write!(
                f,
                "ATAG list: {ignored} ATAG_MEM banks past the first {kept} are ignored"
            ),
            Note::AtagsNoMemory => {
                f.write_str("ATAG list: no ATAG_MEM; the memory size comes from the mailbox")
            }
        }
    }
}

/// Plain cells written by the boot core during `probe` only, read afterwards.
struct Boot<T>(UnsafeCell<T>);

// SAFETY: written only by the boot core while it is the only core running (probe), and
// only read once the other cores may run.
unsafe impl<T> Sync for Boot<T> {}

static COPY: Boot<[u8; COPY_MAX]> = Boot(UnsafeCell::new([0; COPY_MAX]));
static COPY_TAKEN: AtomicBool = AtomicBool::new(false);

impl Note {
    /// Adds this note to `notes`, as the boot report prints it.
    pub fn add_to(self, notes: &mut Notes) {
        notes.push(format_args!("note: {self}"));
    }
}

/// The boot arguments in `raw` (up to its first NUL), which came from `source`: in place
/// when they are UTF-8, else a copy with every byte that is not replaced by `?` (cut at
/// [`COPY_MAX`]), with a note in `notes` for what was changed. Boot core, during `probe`.
pub fn from_bytes(raw: &'static [u8], source: &'static str, notes: &mut Notes) -> &'static str {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let rest = raw.len().saturating_sub(len + 1);
    if raw[len.min(raw.len())..].iter().skip(1).any(|&b| b != 0) {
        Note::Nul {
            source,
            at: len,
            rest,
        }
        .add_to(notes);
    }
    let raw = &raw[..len];
    if let Ok(s) = core::str::from_utf8(raw) {
        return s;
    }
    let copy = if COPY_TAKEN.load(Relaxed) {
        None
    } else {
        COPY_TAKEN.store(true, Relaxed);
        // SAFETY: taken once (COPY_TAKEN), by the boot core, and never written again: the
        // &'static it becomes is the only reference.
        Some(unsafe { &mut *COPY.0.get() })
    };
    let Some(copy) = copy else {
        // A second line to repair (no board reads two): its UTF-8 prefix, noted as cut.
        let valid = core::str::from_utf8(raw).map_or_else(|e| e.valid_up_to(), str::len);
        Note::Cut {
            source,
            limit: valid,
            kept: valid,
        }
        .add_to(notes);
        return core::str::from_utf8(&raw[..valid]).unwrap_or("");
    };
    let n = if raw.len() > COPY_MAX {
        let kept = whole_words(raw, COPY_MAX);
        Note::Cut {
            source,
            limit: COPY_MAX,
            kept,
        }
        .add_to(notes);
        kept
    } else {
        raw.len()
    };
    let out = &mut copy[..n];
    out.copy_from_slice(&raw[..n]);
    let (count, first) = replace_invalid(out);
    if count > 0 {
        Note::NotUtf8 {
            source,
            count,
            first,
        }
        .add_to(notes);
    }
    core::str::from_utf8(out).unwrap_or("")
}

/// Replaces every byte of `bytes` that is not part of valid UTF-8 by `?`; returns how many
/// and where the first was.
pub fn replace_invalid(bytes: &mut [u8]) -> (usize, usize) {
    let (mut count, mut first, mut i) = (0, None, 0);
    while let Err(e) = core::str::from_utf8(&bytes[i..]) {
        let at = i + e.valid_up_to();
        let bad = e.error_len().unwrap_or(bytes.len() - at);
        bytes[at..at + bad].fill(b'?');
        count += bad;
        first.get_or_insert(at);
        i = at + bad;
    }
    (count, first.unwrap_or(0))
}

/// How many of the first `limit` bytes of `bytes` to keep so that no word is cut: up to
/// the last blank at or before `limit`, or `limit` when the first word alone is longer.
pub fn whole_words(bytes: &[u8], limit: usize) -> usize {
    if bytes.len() <= limit {
        return bytes.len();
    }
    if bytes[limit].is_ascii_whitespace() {
        return limit;
    }
    bytes[..limit]
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .unwrap_or(limit)
}

/// `/chosen/bootargs` of the device tree, through [`from_bytes`]; "" when there is none.
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
pub fn from_device_tree(fdt: dtoolkit::fdt::Fdt<'static>, notes: &mut Notes) -> &'static str {
    use dtoolkit::{Node, Property};
    let raw = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("bootargs"))
        .and_then(|p| p.value_as::<&'static [u8]>().ok())
        .unwrap_or(&[]);
    from_bytes(raw, "/chosen/bootargs", notes)
}
