//! ATAGs: the boot information a Pi's firmware (with `disable_device_tree`) or QEMU
//! without `-dtb` leaves at 0x100 instead of a device tree. kmem reads ATAG_MEM and
//! ATAG_CMDLINE; the list is validated as it is walked and never read past a limit (the
//! image's start), and a tag that is malformed or runs past it ends the walk without
//! losing what came before: the tags read so far are kept and the cut is reported. A
//! long command line (QEMU's runs past page 0 from 3 800 characters on) is taken whole.

const ATAG_NONE: u32 = 0;
const ATAG_CORE: u32 = 0x5441_0001;
const ATAG_MEM: u32 = 0x5441_0002;
const ATAG_CMDLINE: u32 = 0x5441_0009;

/// What the list says.
pub struct Atags {
    /// Start and size of each ATAG_MEM, at most [`MAX_BANKS`].
    pub mem: [(u64, u64); MAX_BANKS],
    pub banks: usize,
    /// ATAG_MEM tags past the first [`MAX_BANKS`], left out.
    pub extra_banks: usize,
    /// ATAG_CMDLINE's bytes, up to the end of its tag (NUL padding included); empty
    /// without one.
    pub cmdline: &'static [u8],
    /// Where the part of the list that was read ends: `[addr, end)` holds everything
    /// referred to here, to keep out of the memory map.
    pub end: usize,
    /// The tag (address, size in words) that was malformed or ran past the limit, when
    /// the walk stopped at one instead of at ATAG_NONE.
    pub cut: Option<(usize, usize)>,
}

pub const MAX_BANKS: usize = 4;

/// Reads the ATAG list at `addr` (it must start with ATAG_CORE), or `None` when there is
/// none there. Nothing at or past `limit` is read.
///
/// # Safety
/// `[addr, limit)` is readable RAM that nothing writes for as long as the result is used.
pub unsafe fn read(addr: usize, limit: usize) -> Option<Atags> {
    if addr == 0 || !addr.is_multiple_of(4) || addr.checked_add(8)? > limit {
        return None;
    }
    let word = |a: usize| {
        // SAFETY: callers keep `a` 4-aligned and `a + 4 <= limit`, readable by the contract.
        unsafe { (a as *const u32).read_volatile() }
    };
    if word(addr + 4) != ATAG_CORE {
        return None;
    }
    let mut out = Atags {
        mem: [(0, 0); MAX_BANKS],
        banks: 0,
        extra_banks: 0,
        cmdline: &[],
        end: addr,
        cut: None,
    };
    let mut a = addr;
    loop {
        if a + 8 > limit {
            out.cut = Some((a, 0));
            break;
        }
        let (words, tag) = (word(a) as usize, word(a + 4));
        if tag == ATAG_NONE {
            a += 8;
            break;
        }
        let end = words.checked_mul(4).and_then(|b| a.checked_add(b));
        let Some(end) = end.filter(|&e| words >= 2 && e <= limit) else {
            out.cut = Some((a, words));
            break;
        };
        match tag {
            ATAG_MEM if words >= 4 && out.banks < MAX_BANKS => {
                out.mem[out.banks] = (u64::from(word(a + 12)), u64::from(word(a + 8)));
                out.banks += 1;
            }
            ATAG_MEM => out.extra_banks += 1,
            ATAG_CMDLINE => {
                // SAFETY: the tag's body lies inside [addr, limit), readable and unchanging.
                out.cmdline =
                    unsafe { core::slice::from_raw_parts((a + 8) as *const u8, end - a - 8) };
            }
            _ => {}
        }
        a = end;
    }
    out.end = a;
    Some(out)
}
