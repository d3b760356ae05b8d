//! The page tables: an identity map of physical memory in 2 MiB pages (PML4 → PDPT →
//! PD), replacing the boot tables' first 4 GiB, with 4 KiB pages (a page table) in the
//! 2 MiB pages that hold the stacks' guard pages, which stay unmapped, and in the 2 MiB
//! page of kmem's guard pool (`arch::guard_pool`), whose pages the allocator unmaps and
//! maps at run time.
//!
//! RAM — every 2 MiB page that overlaps a listed range, below or above the 4 GiB hole —
//! is write-back cacheable; everything else below 4 GiB (the LAPIC at 0xFEE0_0000, the
//! IOAPIC at 0xFEC0_0000, PCI windows, firmware) is uncached (PCD|PWT); nothing else is
//! mapped, and neither is any core's guard page (`percpu::guard_pages`), so that a stack
//! overflow faults. The tables are built once, by the boot core, and only the guard
//! pool's page entries change afterwards ([`set_pool_page`]).

use core::cell::UnsafeCell;

use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use x86_64::VirtAddr;
use x86_64::instructions::tlb;

use crate::arch::percpu::{self, GUARD_SIZE};
use crate::arch::{Mapping, guard_pool};
use kmem::mm::memmap::PhysRange;

/// Page directories, one per GiB: the map reaches physical addresses below this many GiB.
const PDS: usize = 64;
/// RAM at or above this address cannot be mapped, so must not be handed to the allocator.
pub const MAP_LIMIT: u64 = (PDS as u64) << 30;
/// Size of one page mapping.
const PAGE_2M: u64 = 2 << 20;
/// Page tables, for the 2 MiB pages that hold the stacks' guard pages and the guard pool.
const PTS: usize = guard_pool::tables_needed(PAGE_2M as usize);
const _: () = assert!(GUARD_SIZE == 4096);

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables {
    pml4: Table,
    pdpt: Table,
    pd: [Table; PDS],
    pt: [Table; PTS],
}

struct TableCell(UnsafeCell<Tables>);

// SAFETY: written only by `build`, on the boot core before any other core runs; after
// that only the MMU reads it, but for the guard pool's page entries, which
// `set_pool_page` writes with single atomic stores.
unsafe impl Sync for TableCell {}

static TABLES: TableCell = TableCell(UnsafeCell::new(Tables {
    pml4: Table([0; 512]),
    pdpt: Table([0; 512]),
    pd: [const { Table([0; 512]) }; PDS],
    pt: [const { Table([0; 512]) }; PTS],
}));

/// The flags (without `HUGE`) of a page mapped as `m`: cacheable RAM, or uncached I/O.
fn flags(m: Mapping) -> u64 {
    match m {
        Mapping::Normal => PRESENT | WRITABLE,
        Mapping::Device => PRESENT | WRITABLE | CACHE_DISABLE | WRITE_THROUGH,
    }
}

/// Fills the tables: the 2 MiB pages that overlap a range in any of the `ram` lists are
/// cacheable, the rest of the low 4 GiB uncached, except every core's guard page, which a
/// page table leaves unmapped. Ranges at or above [`MAP_LIMIT`] are ignored.
///
/// # Safety
/// Boot core, once, before any core loads the tables with [`enable`].
pub unsafe fn build(ram: &[&[PhysRange]]) {
    // SAFETY: the caller guarantees nothing else reads or writes the tables now.
    let t = unsafe { &mut *TABLES.0.get() };
    for (gib, pd) in t.pd.iter_mut().enumerate() {
        for (i, e) in pd.0.iter_mut().enumerate() {
            let addr = ((gib as u64) << 30) + i as u64 * PAGE_2M;
            *e = Mapping::of_block(ram, addr, PAGE_2M).map_or(0, |m| addr | flags(m) | HUGE);
        }
        if pd.0.iter().any(|&e| e != 0) {
            t.pdpt.0[gib] = pd.0.as_ptr() as u64 | PRESENT | WRITABLE;
        }
    }
    t.pml4.0[0] = t.pdpt.0.as_ptr() as u64 | PRESENT | WRITABLE;
    // The guard pages and the guard pool: their 2 MiB pages become page tables of 4 KiB
    // pages mapped as the 2 MiB page was, but for the stacks' guard pages themselves.
    for (n, page) in guard_pool::split_blocks::<PTS>(PAGE_2M)
        .into_iter()
        .enumerate()
    {
        let Some(page) = page else { break };
        let Some(m) = Mapping::of_block(ram, page, PAGE_2M) else {
            continue;
        };
        for (i, e) in t.pt[n].0.iter_mut().enumerate() {
            let small = page + i as u64 * 4096;
            *e = if percpu::is_guard(small) {
                0
            } else {
                small | flags(m)
            };
        }
        t.pd[(page >> 30) as usize].0[((page >> 21) & 511) as usize] =
            t.pt[n].0.as_ptr() as u64 | PRESENT | WRITABLE;
    }
}

/// Unmaps (`accessible` false) or maps again the guard pool's page at `page` (see
/// `Isa::set_pool_page`). Unmapping drops this core's translation (`invlpg`); other
/// cores are not shot down — KFENCE's choice on x86 too: a stale translation there only
/// misses a report, and the pool is never anything but the pool. Mapping needs no flush:
/// x86 caches no translation of a not-present page.
pub fn set_pool_page(page: u64, accessible: bool) {
    let Some((n, i)) = guard_pool::pool_entry::<PTS>(page, PAGE_2M) else {
        return;
    };
    // SAFETY: only the address of the entry is taken.
    let entry = unsafe { &raw mut (*TABLES.0.get()).pt[n].0[i] };
    // SAFETY: a naturally aligned word of a static, which after `build` only this
    // function writes (atomically) and the walkers read.
    let entry = unsafe { AtomicU64::from_ptr(entry) };
    entry.store(
        if accessible {
            page | flags(Mapping::Normal)
        } else {
            0
        },
        Relaxed,
    );
    if !accessible {
        tlb::flush(VirtAddr::new(page));
    }
}

/// How [`build`], given `ram`, maps all of `range` (see `Isa::mapping`).
pub fn mapping(ram: &[&[PhysRange]], range: PhysRange) -> Option<Mapping> {
    Mapping::of_blocks(ram, range, PAGE_2M, MAP_LIMIT)
}

/// Switches this core to the tables [`build`] filled (loading CR3 also drops every stale
/// translation).
///
/// # Safety
/// [`build`] has run. The code and stack in use are RAM, identity-mapped by the tables.
pub unsafe fn enable() {
    // SAFETY: only the address of the static is taken; the MMU reads the table.
    let pml4 = unsafe { &raw const (*TABLES.0.get()).pml4 } as u64;
    let frame = PhysFrame::containing_address(PhysAddr::new(pml4));
    // SAFETY: the caller guarantees the new tables map everything in use the same way.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}
