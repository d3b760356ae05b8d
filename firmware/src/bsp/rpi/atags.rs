//! ATAGs: the boot information a Pi's firmware (with `disable_device_tree`) or QEMU
//! without `-dtb` leaves at 0x100 instead of a device tree. kmem reads ATAG_MEM and
//! ATAG_CMDLINE; the list is validated as it is walked and never trusted past page 0.

const ATAG_NONE: u32 = 0;
const ATAG_CORE: u32 = 0x5441_0001;
const ATAG_MEM: u32 = 0x5441_0002;
const ATAG_CMDLINE: u32 = 0x5441_0009;
/// The list must end inside the first page (reserved, with the spin table).
const LIMIT: usize = 0x1000;

/// What the list says.
pub struct Atags {
    /// Start and size of each ATAG_MEM, at most [`MAX_BANKS`].
    pub mem: [(u64, u64); MAX_BANKS],
    pub banks: usize,
    pub cmdline: &'static str,
}

pub const MAX_BANKS: usize = 4;

/// Reads the ATAG list at `addr` (it must start with ATAG_CORE), or `None` when there is
/// none there.
///
/// # Safety
/// `[addr, 0x1000)` is readable RAM that nothing writes.
pub unsafe fn read(addr: usize) -> Option<Atags> {
    if addr == 0 || !addr.is_multiple_of(4) || addr >= LIMIT {
        return None;
    }
    let word = |a: usize| {
        // SAFETY: callers keep `a` 4-aligned and below LIMIT, readable by the contract.
        unsafe { (a as *const u32).read_volatile() }
    };
    if word(addr + 4) != ATAG_CORE {
        return None;
    }
    let mut out = Atags {
        mem: [(0, 0); MAX_BANKS],
        banks: 0,
        cmdline: "",
    };
    let mut a = addr;
    while a + 8 <= LIMIT {
        let (words, tag) = (word(a) as usize, word(a + 4));
        if tag == ATAG_NONE {
            return Some(out);
        }
        let end = a.checked_add(words.checked_mul(4)?)?;
        if words < 2 || end > LIMIT {
            return None;
        }
        match tag {
            ATAG_MEM if words >= 4 && out.banks < MAX_BANKS => {
                out.mem[out.banks] = (u64::from(word(a + 12)), u64::from(word(a + 8)));
                out.banks += 1;
            }
            ATAG_CMDLINE => {
                // SAFETY: the tag's body lies inside [addr, LIMIT), readable and unchanging.
                let body =
                    unsafe { core::slice::from_raw_parts((a + 8) as *const u8, end - a - 8) };
                let len = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                out.cmdline = core::str::from_utf8(&body[..len]).unwrap_or("");
            }
            _ => {}
        }
        a = end;
    }
    None
}
