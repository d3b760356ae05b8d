//! The MMU: an Sv39 identity map of the low physical address space in 2 MiB megapages,
//! with 4 KiB pages in the megapages that hold the stacks' guard pages, which stay
//! unmapped, and in the megapage of kmem's guard pool (`arch::guard_pool`), whose pages
//! the allocator unmaps and maps at run time.
//!
//! RAM is mapped readable, writable and executable; everything else in the low 4 GiB is
//! mapped readable and writable as I/O; nothing else is mapped, and neither is any hart's
//! guard page (`percpu::guard_pages`), so that a stack overflow faults. Without Svpbmt a
//! page table cannot say what is memory and what is I/O: the platform's PMAs do (QEMU
//! `virt` has RAM and devices where its device tree says). With Svpbmt, which the board
//! reports from the device tree ([`use_svpbmt`]), the device megapages are marked I/O
//! too. The tables are built once, by the boot hart before it turns its MMU on, and only
//! the guard pool's page entries change afterwards ([`set_pool_page`]).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use riscv::register::satp;

use crate::arch::percpu::{self, GUARD_SIZE};
use crate::arch::{Mapping, guard_pool};
use kmem::mm::memmap::PhysRange;

/// Level-1 tables, one per GiB: the map reaches physical addresses below this many GiB
/// (Sv39 identity-maps up to 256 GiB: the virtual addresses must be below 2^38).
const L1_TABLES: usize = 64;
/// RAM at or above this address cannot be mapped, so must not be handed to the allocator.
pub const MAP_LIMIT: u64 = (L1_TABLES as u64) << 30;
/// Size of one megapage.
const BLOCK: u64 = 2 << 20;
/// Level-0 tables, for the megapages that hold the stacks' guard pages and the guard pool.
const L0_TABLES: usize = guard_pool::tables_needed(BLOCK as usize);
const _: () = assert!(GUARD_SIZE == 4096);

/// Page-table entry bits (the privileged specification, 4.3.1 and Svpbmt).
const V: u64 = 1 << 0;
const R: u64 = 1 << 1;
const W: u64 = 1 << 2;
const X: u64 = 1 << 3;
const G: u64 = 1 << 5;
/// Accessed and dirty set up front: a hart without hardware A/D updates would fault on
/// the first access otherwise.
const A: u64 = 1 << 6;
const D: u64 = 1 << 7;
/// Svpbmt's PBMT field: I/O (non-cacheable, strongly ordered).
const PBMT_IO: u64 = 2 << 61;

/// Whether the harts implement Svpbmt, from the device tree; plain loads and stores.
static SVPBMT: AtomicBool = AtomicBool::new(false);

/// Marks the device megapages I/O in the tables [`build`] fills: the device tree lists
/// Svpbmt for the harts. Before [`build`].
pub fn use_svpbmt() {
    SVPBMT.store(true, Relaxed);
}

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables {
    root: Table,
    l1: [Table; L1_TABLES],
    l0: [Table; L0_TABLES],
}

struct TableCell(UnsafeCell<Tables>);

// SAFETY: written only by `build`, on the boot hart before any other hart runs; after
// that only the MMU reads it, but for the guard pool's page entries, which
// `set_pool_page` writes with single atomic stores.
unsafe impl Sync for TableCell {}

static TABLES: TableCell = TableCell(UnsafeCell::new(Tables {
    root: Table([0; 512]),
    l1: [const { Table([0; 512]) }; L1_TABLES],
    l0: [const { Table([0; 512]) }; L0_TABLES],
}));

/// A leaf (megapage or page) for `addr` mapped as `m`: RAM, or I/O.
fn leaf(addr: u64, m: Mapping) -> u64 {
    let kind = if m == Mapping::Normal {
        R | W | X
    } else if SVPBMT.load(Relaxed) {
        R | W | PBMT_IO
    } else {
        R | W
    };
    (addr >> 12) << 10 | kind | V | G | A | D
}

/// A pointer to the next-level table at `table`.
fn branch(table: &Table) -> u64 {
    (table.0.as_ptr() as u64 >> 12) << 10 | V
}

/// Fills the tables: the 2 MiB megapages that overlap a range in any of the `ram` lists
/// are RAM, the rest of the low 4 GiB I/O, except every hart's guard page, which a
/// level-0 table leaves unmapped. Ranges at or above [`MAP_LIMIT`] are ignored.
///
/// # Safety
/// Boot hart only, once, before any hart turns its MMU on.
pub unsafe fn build(ram: &[&[PhysRange]]) {
    // SAFETY: the caller guarantees nothing else reads or writes the tables now.
    let t = unsafe { &mut *TABLES.0.get() };
    for (gib, l1) in t.l1.iter_mut().enumerate() {
        let mut used = false;
        for (i, e) in l1.0.iter_mut().enumerate() {
            let addr = ((gib as u64) << 30) + i as u64 * BLOCK;
            *e = Mapping::of_block(ram, addr, BLOCK).map_or(0, |m| leaf(addr, m));
            used |= *e != 0;
        }
        if used {
            t.root.0[gib] = branch(l1);
        }
    }
    // The guard pages and the guard pool: their megapages become level-0 tables of pages
    // mapped as the megapage was, but for the stacks' guard pages themselves.
    for (n, block) in guard_pool::split_blocks::<L0_TABLES>(BLOCK)
        .into_iter()
        .enumerate()
    {
        let Some(block) = block else { break };
        let Some(m) = Mapping::of_block(ram, block, BLOCK) else {
            continue;
        };
        for (i, e) in t.l0[n].0.iter_mut().enumerate() {
            let page = block + i as u64 * 4096;
            *e = if percpu::is_guard(page) {
                0
            } else {
                leaf(page, m)
            };
        }
        t.l1[(block >> 30) as usize].0[((block >> 21) & 511) as usize] = branch(&t.l0[n]);
    }
    // The walker reads the tables through the memory system: order the writes first.
    // SAFETY: a fence, no memory is touched.
    unsafe { core::arch::asm!("fence rw, rw", options(nostack)) };
}

/// Unmaps (`accessible` false) or maps again the guard pool's page at `page` (see
/// `Isa::set_pool_page`), and fences this hart's translation of it (`sfence.vma`, which
/// a hart needs either way: it may cache an invalid entry). Other harts are not fenced:
/// a stale valid translation there only misses a report, and a stale invalid one faults
/// once more, which the allocator answers as stale (`FaultOutcome::Stale`), mapping the
/// page again on that hart.
pub fn set_pool_page(page: u64, accessible: bool) {
    let Some((n, i)) = guard_pool::pool_entry::<L0_TABLES>(page, BLOCK) else {
        return;
    };
    // SAFETY: only the address of the entry is taken.
    let entry = unsafe { &raw mut (*TABLES.0.get()).l0[n].0[i] };
    // SAFETY: a naturally aligned word of a static, which after `build` only this
    // function writes (atomically) and the walkers read.
    let entry = unsafe { AtomicU64::from_ptr(entry) };
    entry.store(
        if accessible {
            leaf(page, Mapping::Normal)
        } else {
            0
        },
        Relaxed,
    );
    // SAFETY: a fence ordering the store before the walker's next look (fence rw, rw
    // first, as the specification asks for a changed entry).
    unsafe { core::arch::asm!("fence rw, rw", options(nostack)) };
    riscv::asm::sfence_vma(0, page as usize);
}

/// How [`build`], given `ram`, maps all of `range` (see `Isa::mapping`).
pub fn mapping(ram: &[&[PhysRange]], range: PhysRange) -> Option<Mapping> {
    Mapping::of_blocks(ram, range, BLOCK, MAP_LIMIT)
}

/// Turns this hart's MMU on with the tables [`build`] filled.
///
/// # Safety
/// [`build`] has run. The code and stack in use are RAM, identity-mapped by the tables.
pub unsafe fn enable() {
    // SAFETY: only the address of the static is taken; the MMU reads the table.
    let root = unsafe { &raw const (*TABLES.0.get()).root } as usize;
    // SAFETY: the caller's contract: everything in use stays where it is under the
    // identity map. The fences drop translations cached from before (there are none with
    // satp at Bare, but a loader may have left some).
    unsafe {
        riscv::asm::sfence_vma_all();
        satp::set(satp::Mode::Sv39, 0, root >> 12);
        riscv::asm::sfence_vma_all();
    }
}
