//! The MMU: an identity map of the low physical address space in 2 MiB blocks (4 KiB
//! granule, 39-bit addresses, walks starting at level 1), with 4 KiB pages in the blocks
//! that hold the stacks' guard pages, which stay unmapped, and in the block of kmem's guard
//! pool (`arch::guard_pool`), whose pages the allocator unmaps and maps at run time.
//!
//! RAM is normal write-back cacheable inner-shareable memory; everything else in the low
//! 4 GiB is device nGnRE, and so are the whole GiBs above the RAM map that a board asked
//! for ([`map_high_device`]: QEMU virt's second GICv3 redistributor region, at 256 GiB);
//! nothing else is mapped, and neither is any core's guard page
//! (`percpu::guard_pages`), so that a stack overflow faults. Exclusive loads and stores (every lock
//! and atomic read-modify-write) need normal cacheable memory on real cores, so each core
//! turns the MMU on before it takes a lock. The tables are built once, by the boot core
//! before it turns its MMU on, and only the guard pool's page entries change afterwards
//! ([`set_pool_page`], one atomic store and a broadcast TLB invalidation each).

use core::cell::UnsafeCell;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, MAIR_EL1, ReadWriteable, Readable, SCTLR_EL1, TCR_EL1, TTBR0_EL1, Writeable,
};
use tock_registers::LocalRegisterCopy;
use tock_registers::register_bitfields;

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::mte;
use crate::arch::percpu::{self, GUARD_SIZE};
use crate::arch::{Mapping, guard_pool};
use kmem::mm::memmap::PhysRange;

/// Level-2 tables, one per GiB: the map reaches physical addresses below this many GiB.
const L2_TABLES: usize = 64;
/// RAM at or above this address cannot be mapped, so must not be handed to the allocator.
pub const MAP_LIMIT: u64 = (L2_TABLES as u64) << 30;
/// Size of one block mapping.
const BLOCK: u64 = 2 << 20;
/// Level-3 tables, for the blocks that hold the stacks' guard pages and the guard pool.
const L3_TABLES: usize = guard_pool::tables_needed(BLOCK as usize);
/// The top of what a level-1 table with `T0SZ` 25 translates: 39-bit addresses.
const VA_LIMIT: u64 = 1 << 39;
/// How many GiB above [`MAP_LIMIT`] may be mapped as device memory.
const HIGH_DEVICE_GIBS: usize = 4;

/// The GiBs above [`MAP_LIMIT`] mapped as device memory, as level-1 blocks; 0 for none.
/// Written by [`map_high_device`] before [`build`], with plain stores (the MMU is off).
static HIGH_DEVICE: [AtomicU64; HIGH_DEVICE_GIBS] = [const { AtomicU64::new(0) }; HIGH_DEVICE_GIBS];

/// The GiBs that `range` spans, when it lies between [`MAP_LIMIT`] and [`VA_LIMIT`],
/// where no RAM is mapped and [`map_high_device`] can map it.
pub fn high_device_gibs(range: PhysRange) -> Option<core::ops::Range<u64>> {
    (range.start >= MAP_LIMIT && range.end <= VA_LIMIT && range.start < range.end)
        .then(|| range.start >> 30..range.end.div_ceil(1 << 30))
}

/// Has [`build`] map the whole GiBs that hold `range` as device memory; false when it
/// cannot ([`high_device_gibs`] refuses the range, or [`HIGH_DEVICE_GIBS`] are taken).
/// Boot core, before [`build`].
pub fn map_high_device(range: PhysRange) -> bool {
    let Some(gibs) = high_device_gibs(range) else {
        return false;
    };
    let taken = |g| HIGH_DEVICE.iter().any(|h| h.load(Relaxed) == g);
    let free = HIGH_DEVICE.iter().filter(|h| h.load(Relaxed) == 0).count();
    if gibs.clone().filter(|&g| !taken(g)).count() > free {
        return false;
    }
    for g in gibs.filter(|&g| !taken(g)) {
        if let Some(slot) = HIGH_DEVICE.iter().find(|h| h.load(Relaxed) == 0) {
            slot.store(g, Relaxed);
        }
    }
    true
}
const _: () = assert!(GUARD_SIZE == 4096);

register_bitfields! {u64,
    /// A level-1 table descriptor or a level-2 block descriptor (the bits both use).
    DESCRIPTOR [
        UXN OFFSET(54) NUMBITS(1) [],
        PXN OFFSET(53) NUMBITS(1) [],
        /// Output address bits [47:12] (a table's address, or a block's base).
        ADDR OFFSET(12) NUMBITS(36) [],
        AF OFFSET(10) NUMBITS(1) [],
        SH OFFSET(8) NUMBITS(2) [InnerShareable = 0b11],
        /// Privileged read-write, no EL0 access.
        AP OFFSET(6) NUMBITS(2) [RwEl1 = 0b00],
        ATTR_INDX OFFSET(2) NUMBITS(3) [Normal = 0, Device = 1],
        /// At levels 1 and 2: a block or a table; at level 3, `Table` marks a page.
        TYPE OFFSET(1) NUMBITS(1) [Block = 0, Table = 1],
        VALID OFFSET(0) NUMBITS(1) []
    ]
}

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables {
    l1: Table,
    l2: [Table; L2_TABLES],
    l3: [Table; L3_TABLES],
}

struct TableCell(UnsafeCell<Tables>);

// SAFETY: written only by `build`, on the boot core before any other core runs; after
// that only the MMU reads it, but for the guard pool's page entries, which
// `set_pool_page` writes with single atomic stores.
unsafe impl Sync for TableCell {}

static TABLES: TableCell = TableCell(UnsafeCell::new(Tables {
    l1: Table([0; 512]),
    l2: [const { Table([0; 512]) }; L2_TABLES],
    l3: [const { Table([0; 512]) }; L3_TABLES],
}));

/// A level-2 block descriptor, or with `page` a level-3 page descriptor, for `addr`
/// mapped as `m`.
fn descriptor(addr: u64, m: Mapping, page: bool) -> u64 {
    let mut d = LocalRegisterCopy::<u64, DESCRIPTOR::Register>::new(0);
    d.write(
        DESCRIPTOR::VALID::SET
            + if page {
                DESCRIPTOR::TYPE::Table
            } else {
                DESCRIPTOR::TYPE::Block
            }
            + DESCRIPTOR::AF::SET
            + DESCRIPTOR::AP::RwEl1
            + DESCRIPTOR::UXN::SET
            + DESCRIPTOR::ADDR.val(addr >> 12),
    );
    if m == Mapping::Normal {
        d.modify(DESCRIPTOR::ATTR_INDX::Normal + DESCRIPTOR::SH::InnerShareable);
    } else {
        d.modify(DESCRIPTOR::ATTR_INDX::Device + DESCRIPTOR::PXN::SET);
    }
    d.get()
}

/// Fills the tables: the 2 MiB blocks that overlap a range in any of the `ram` lists are
/// normal memory, the rest of the low 4 GiB device memory, except every core's guard
/// page, which a level-3 table leaves unmapped. Ranges at or above [`MAP_LIMIT`] are
/// ignored.
///
/// # Safety
/// Boot core only, once, before any core turns its MMU on.
pub unsafe fn build(ram: &[&[PhysRange]]) {
    // SAFETY: the caller guarantees nothing else reads or writes the tables now.
    let t = unsafe { &mut *TABLES.0.get() };
    for (gib, l2) in t.l2.iter_mut().enumerate() {
        let mut used = false;
        for (i, e) in l2.0.iter_mut().enumerate() {
            let addr = ((gib as u64) << 30) + i as u64 * BLOCK;
            *e = Mapping::of_block(ram, addr, BLOCK).map_or(0, |m| descriptor(addr, m, false));
            used |= *e != 0;
        }
        if used {
            let mut d = LocalRegisterCopy::<u64, DESCRIPTOR::Register>::new(0);
            d.write(
                DESCRIPTOR::VALID::SET
                    + DESCRIPTOR::TYPE::Table
                    + DESCRIPTOR::ADDR.val(l2.0.as_ptr() as u64 >> 12),
            );
            t.l1.0[gib] = d.get();
        }
    }
    for gib in HIGH_DEVICE
        .iter()
        .map(|h| h.load(Relaxed))
        .filter(|&g| g != 0)
    {
        // A level-1 block descriptor has a level-2 block's layout, its address 1 GiB aligned.
        t.l1.0[gib as usize] = descriptor(gib << 30, Mapping::Device, false);
    }
    // The guard pages and the guard pool: their blocks become level-3 tables of pages
    // mapped as the block was, but for the stacks' guard pages themselves.
    for (n, block) in guard_pool::split_blocks::<L3_TABLES>(BLOCK)
        .into_iter()
        .enumerate()
    {
        let Some(block) = block else { break };
        let Some(m) = Mapping::of_block(ram, block, BLOCK) else {
            continue;
        };
        for (i, e) in t.l3[n].0.iter_mut().enumerate() {
            let page = block + i as u64 * 4096;
            *e = if percpu::is_guard(page) {
                0
            } else {
                descriptor(page, m, true)
            };
        }
        let mut d = LocalRegisterCopy::<u64, DESCRIPTOR::Register>::new(0);
        d.write(
            DESCRIPTOR::VALID::SET
                + DESCRIPTOR::TYPE::Table
                + DESCRIPTOR::ADDR.val(t.l3[n].0.as_ptr() as u64 >> 12),
        );
        t.l2[(block >> 30) as usize].0[((block >> 21) & 511) as usize] = d.get();
    }
    // The tables were written with the MMU off, straight to memory; make sure the writes
    // are complete before any walker looks.
    barrier::dsb(barrier::ISH);
}

/// Unmaps (`accessible` false) or maps again the guard pool's page at `page` (see
/// `Isa::set_pool_page`). Unmapping invalidates the page's translation on every core
/// (`tlbi vaae1is`); a mapping needs none, as no core caches a translation fault.
pub fn set_pool_page(page: u64, accessible: bool) {
    let Some((n, i)) = guard_pool::pool_entry::<L3_TABLES>(page, BLOCK) else {
        return;
    };
    // SAFETY: only the address of the entry is taken.
    let entry = unsafe { &raw mut (*TABLES.0.get()).l3[n].0[i] };
    // SAFETY: a naturally aligned word of a static, which after `build` only this
    // function writes (atomically) and the walkers read.
    let entry = unsafe { AtomicU64::from_ptr(entry) };
    let d = if accessible {
        descriptor(page, Mapping::Normal, true)
    } else {
        0
    };
    entry.store(d, Relaxed);
    if accessible {
        // SAFETY: barriers only: the store reaches the walkers before what follows.
        unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
    } else {
        // SAFETY: barriers and a TLB invalidation by address, of every core's translation.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vaae1is, {va}",
                "dsb ish",
                "isb",
                va = in(reg) page >> 12,
                options(nostack)
            )
        };
    }
}

/// How [`build`], given `ram`, maps all of `range` (see `Isa::mapping`).
pub fn mapping(ram: &[&[PhysRange]], range: PhysRange) -> Option<Mapping> {
    let high = high_device_gibs(range)
        .is_some_and(|mut gibs| gibs.all(|g| HIGH_DEVICE.iter().any(|h| h.load(Relaxed) == g)));
    if high {
        return Some(Mapping::Device);
    }
    Mapping::of_blocks(ram, range, BLOCK, MAP_LIMIT)
}

/// Turns this core's MMU and caches on with the tables [`build`] filled.
///
/// # Safety
/// [`build`] has run. The code and stack in use are RAM, identity-mapped by the tables.
pub unsafe fn enable() {
    MAIR_EL1.write(
        MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck,
    );
    let tagged = mte::present();
    if tagged {
        // RAM as Tagged Normal (attribute 0 has the same caching, plus tags).
        MAIR_EL1.set(MAIR_EL1.get() & !0xff | mte::MAIR_TAGGED_NORMAL);
    }
    // SAFETY: only the address of the static is taken; the MMU reads the table.
    let l1 = unsafe { &raw const (*TABLES.0.get()).l1 } as u64;
    TTBR0_EL1.set_baddr(l1);
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
    TCR_EL1.write(
        TCR_EL1::TBI0::Used
            + TCR_EL1::IPS.val(pa_range)
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::SH0::Inner
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD0::EnableTTBR0Walks
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::T0SZ.val(25),
    );
    if tagged {
        // Tags ride in the top byte, which translation then ignores; tag 0 is unchecked.
        TCR_EL1.modify(TCR_EL1::TBI0::Ignored);
        TCR_EL1.set(TCR_EL1.get() | mte::TCR_TCMA0);
    }
    barrier::isb(barrier::SY);
    // SAFETY: drops stale translations from before this core's MMU was set up.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", options(nostack)) };
    barrier::isb(barrier::SY);
    SCTLR_EL1.modify(SCTLR_EL1::M::Enable + SCTLR_EL1::C::Cacheable + SCTLR_EL1::I::Cacheable);
    barrier::isb(barrier::SY);
}
