//! The guard pool's memory (kmem's sampled guard pages, `kmem.kfence=`): a fixed block of
//! the image, 4 KiB-mapped inside the identity map by every ISA's MMU, whose pages the
//! allocator unmaps and maps again through [`PoolPages`] and the ISA's
//! [`Isa::set_pool_page`](super::Isa::set_pool_page).
//!
//! The block lies in one of the MMU's large mappings (it is no larger than one and
//! aligned to its size), so each ISA splits one more of them into 4 KiB pages, together
//! with the blocks of the stacks' guard pages ([`split_blocks`]).

use core::cell::UnsafeCell;

use super::cpu::Cpu;
use super::{Isa, percpu};
use kmem::guard_pool::{GuardPoolMemory, PageProtect};
use kmem::mm::memmap::PhysRange;

/// Objects in the pool: half a MiB of pages with their guards.
pub const POOL_OBJECTS: usize = 63;
const POOL_BYTES: usize = GuardPoolMemory::bytes(POOL_OBJECTS);
const _: () = assert!(POOL_BYTES == 512 << 10);

/// The pool, aligned to its size so that it never straddles a 2 MiB mapping.
#[repr(C, align(524288))]
struct Pool(UnsafeCell<[u8; POOL_BYTES]>);

// SAFETY: Rust never touches the pool as a value: kmem hands its pages out, one object
// to one owner, and maps and unmaps them.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([0; POOL_BYTES]));

/// The pool's physical (= virtual) range.
pub fn pool_range() -> PhysRange {
    let start = POOL.0.get() as u64;
    PhysRange {
        start,
        end: start + POOL_BYTES as u64,
    }
}

/// How many tables of 4 KiB pages an MMU needs for [`split_blocks`] with `block`-sized
/// large mappings: the stacks' guard blocks at most, and the pool's.
pub(super) const fn tables_needed(block: usize) -> usize {
    percpu::guard_blocks_max(block) + 1
}

/// The distinct `block`-aligned blocks the MMU maps with 4 KiB pages: those of the
/// stacks' guard pages and the pool's, for a builder with `N` page tables.
pub(super) fn split_blocks<const N: usize>(block: u64) -> [Option<u64>; N] {
    let mut blocks = percpu::guard_blocks::<N>(block);
    let pool = Some(pool_range().start & !(block - 1));
    if !blocks.contains(&pool) {
        *blocks
            .iter_mut()
            .find(|b| b.is_none())
            .expect("a page table for the guard pool's block") = pool;
    }
    blocks
}

/// Where pool page `page`'s entry lies in an MMU's `N` tables of 4 KiB pages for
/// `block`-sized large mappings: the table [`split_blocks`] gave its block, and the
/// entry's index in it. `None` for a page outside the pool.
pub(super) fn pool_entry<const N: usize>(page: u64, block: u64) -> Option<(usize, usize)> {
    let r = pool_range();
    if !(r.start <= page && page < r.end) {
        return None;
    }
    let table = split_blocks::<N>(block)
        .iter()
        .position(|&b| b == Some(page & !(block - 1)))?;
    Some((table, ((page >> 12) & 511) as usize))
}

/// The pool pages' protection, through the ISA's page tables.
pub struct PoolPages;

// SAFETY: `Isa::set_pool_page` clears or restores the page's entry and invalidates this
// core's translation of it (aarch64 every core's): a later access from this core faults
// into the ISA's page-fault entry, which offers it to `crate::fault::handle` and resumes
// when the allocator handled it. Another core's stale translation only misses a report:
// the pool is never anything but the pool.
unsafe impl PageProtect for PoolPages {
    fn set_accessible(&self, page: usize, accessible: bool) {
        Cpu::set_pool_page(page as u64, accessible);
    }
}

/// The pool, for `Kmem::with_guard_pool`.
pub fn memory() -> GuardPoolMemory {
    // SAFETY: the pool is a 4 KiB-aligned static of the image (not in the allocator's
    // map), used by nothing else, mapped with 4 KiB pages by every ISA's MMU (its block
    // is among `split_blocks`), and PoolPages protects exactly the pages it is given.
    unsafe { GuardPoolMemory::new(POOL.0.get().cast(), POOL_OBJECTS, &PoolPages) }
}
