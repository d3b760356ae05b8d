//! Self-tests of memory added at run time, on every board: the range held back at boot
//! is added while every core is up, each core allocates pages and kmalloc objects from
//! it, removal is refused while they hold them and succeeds once they are freed, and bad
//! ranges are refused with nothing changed. ISA-neutral: cores are reached through
//! `smp::run_on_all`, memory through the `kmem` API.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, MAX_CPUS};
use crate::unchecked::{KmemAny, PagesAny};
use kmem::mm::memmap::PAGE_SIZE;
use kmem::mm::{HotplugError, MAX_ORDER};
use kmem::{Arch, Gfp, PhysAddr, PhysRange};

use super::{hotplug, kmem, pages, smp};

type R = Result<(), &'static str>;

fn ensure(ok: bool, reason: &'static str) -> R {
    if ok { Ok(()) } else { Err(reason) }
}

/// Pages each core takes from the new region.
const PER_CPU: usize = 16;

/// The region under test, for the jobs.
static RANGE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Each core's pages (a chain through their first words, 0 at the end) and its kmalloc
/// object in the region.
static HELD: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static OBJ: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Objects a core had to take before one came from the region (freed at the end).
static MISSES: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

fn in_range(pa: PhysAddr) -> bool {
    pa >= RANGE[0].load(Relaxed) && pa < RANGE[1].load(Relaxed)
}

fn word(pa: PhysAddr) -> *mut u64 {
    Cpu::phys_to_virt(pa) as *mut u64
}

/// Takes every free block (largest first), chained through their first words; returns
/// the chain's head.
fn take_everything() -> PhysAddr {
    let p = pages();
    let mut head = 0;
    for order in (0..=MAX_ORDER).rev() {
        while let Ok(pa) = p.alloc_pages(order, Gfp::KERNEL) {
            // SAFETY: the block is ours and mapped as RAM; the second word keeps its order.
            unsafe {
                word(pa).write_volatile(head);
                word(pa).add(1).write_volatile(u64::from(order));
            }
            head = pa;
        }
    }
    head
}

fn give_back(mut head: PhysAddr) -> R {
    while head != 0 {
        // SAFETY: a block of the chain `take_everything` built, still ours.
        let (next, order) = unsafe {
            (
                word(head).read_volatile(),
                word(head).add(1).read_volatile(),
            )
        };
        pages()
            .free_pages_any(head, order as u32)
            .map_err(|_| "a block taken could not be freed")?;
        head = next;
    }
    Ok(())
}

/// One core's part: pages and an object from the region, stamped with the core's id.
fn take_from_region(cpu: usize) -> R {
    let mut head = 0;
    for _ in 0..PER_CPU {
        let pa = pages()
            .alloc_pages(0, Gfp::KERNEL)
            .map_err(|_| "no page for a core after the region was added")?;
        ensure(in_range(pa), "a page came from outside the new region")?;
        // SAFETY: the page is ours and mapped as RAM.
        unsafe {
            word(pa).write_volatile(head);
            word(pa).add(1).write_volatile(cpu as u64);
        }
        head = pa;
    }
    HELD[cpu].store(head, Relaxed);
    // kmalloc: partial slabs in boot memory may serve first; keep taking until the
    // region serves (each miss is a distinct object, freed later).
    let mut misses = 0;
    let obj = loop {
        let p = kmem()
            .kmalloc(3000, Gfp::KERNEL)
            .map_err(|_| "kmalloc failed with the region added")?;
        let pa = Cpu::virt_to_phys(p.as_ptr() as usize);
        if in_range(pa) {
            break pa;
        }
        // SAFETY: the object is ours; it chains the misses.
        unsafe { word(pa).write_volatile(OBJ[cpu].load(Relaxed)) };
        OBJ[cpu].store(pa, Relaxed);
        misses += 1;
        if misses > 64 {
            return Err("kmalloc never served an object from the new region");
        }
    };
    MISSES[cpu].store(misses, Relaxed);
    // SAFETY: ours; the misses chain continues behind it.
    unsafe {
        word(obj).write_volatile(OBJ[cpu].load(Relaxed));
        word(obj).add(1).write_volatile(cpu as u64);
    }
    OBJ[cpu].store(obj, Relaxed);
    Ok(())
}

/// One core's part: its pages and objects checked and freed.
fn free_own(cpu: usize) -> R {
    let mut pa = HELD[cpu].swap(0, Relaxed);
    while pa != 0 {
        // SAFETY: a page of this core's chain.
        let (next, tag) = unsafe { (word(pa).read_volatile(), word(pa).add(1).read_volatile()) };
        ensure(
            tag == cpu as u64,
            "a page of the region changed under its core",
        )?;
        pages()
            .free_pages_any(pa, 0)
            .map_err(|_| "a region page could not be freed")?;
        pa = next;
    }
    let mut obj = OBJ[cpu].swap(0, Relaxed);
    while obj != 0 {
        // SAFETY: an object of this core's chain.
        let next = unsafe { word(obj).read_volatile() };
        kmem()
            .kfree_any(Cpu::phys_to_virt(obj) as *mut u8)
            .map_err(|_| "an object could not be freed")?;
        obj = next;
    }
    Ok(())
}

/// Bad ranges are refused, each with its reason, and change nothing.
fn bad_ranges(range: PhysRange) -> R {
    let before = pages().info().managed_pages();
    let boot = pages().info().meta; // inside boot memory
    let odd = PhysRange {
        start: range.start + 8,
        end: range.end,
    };
    let empty = PhysRange {
        start: range.start,
        end: range.start,
    };
    // SAFETY: each range is refused before anything is written (checked below).
    let refusals = unsafe {
        [
            matches!(
                kmem().add_region(empty),
                Err(HotplugError::ZeroLength { .. })
            ),
            matches!(kmem().add_region(odd), Err(HotplugError::Unaligned { .. })),
            matches!(
                kmem().add_region(boot),
                Err(HotplugError::AlreadyManaged { .. })
            ),
            matches!(
                kmem().add_region(range),
                Err(HotplugError::AlreadyManaged { .. })
            ),
        ]
    };
    ensure(
        refusals.iter().all(|&r| r),
        "a bad range was not refused as it should be",
    )?;
    ensure(
        matches!(
            kmem().remove_region(boot),
            Err(HotplugError::NotARegion { .. })
        ),
        "boot memory was not refused for removal",
    )?;
    ensure(
        pages().info().managed_pages() == before,
        "a refused call changed the allocator",
    )
}

/// The held-back range added on a running system; every core allocates from it.
pub fn region_on_every_core() -> R {
    let range = hotplug::held_back().ok_or("no memory was held back at boot")?;
    ensure(
        pages().info().hot_regions == 0,
        "the held-back range is already added",
    )?;
    RANGE[0].store(range.start, Relaxed);
    RANGE[1].store(range.end, Relaxed);
    kmem().shrink_all();
    pages().drain_all_pcp();
    let before = pages().info();
    // Nothing else free: whatever the cores get now comes from the region.
    let taken = take_everything();
    hotplug::add(range).map_err(|_| "the held-back range was refused")?;
    let added = pages().info();
    let result = (|| {
        ensure(
            added.hot_regions == 1,
            "meminfo does not show the new region",
        )?;
        ensure(
            added.managed_pages() > before.managed_pages() + range.size() / PAGE_SIZE / 2,
            "the region's pages did not join the zones",
        )?;
        bad_ranges(range)?;
        smp::run_on_all(take_from_region)?;
        let r = kmem().remove_region(range);
        ensure(
            matches!(r, Err(HotplugError::PagesInUse { count, .. })
                if count >= (smp::online() * PER_CPU) as u64),
            "removal was not refused while cores held pages of the region",
        )?;
        ensure(
            pages().info().hot_regions == 1,
            "a refused removal changed the region",
        )
    })();
    smp::run_on_all(free_own)?;
    give_back(taken)?;
    result?;
    kmem()
        .remove_region(range)
        .map_err(|_| "the region could not be removed once its pages were free")?;
    pages().drain_all_pcp();
    let after = pages().info();
    ensure(after.hot_regions == 0, "the removed region is still listed")?;
    ensure(
        after.managed_pages() == before.managed_pages(),
        "managed pages differ after the region came and went",
    )?;
    // Leave it added, as after a normal boot.
    hotplug::add(range).map_err(|_| "the range could not be added again")
}

/// Set by the boot core when it has added and removed the region enough times.
static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Removals that succeeded and that were refused (pages in use) during the run.
static REMOVED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// Times the boot core adds (and tries to remove) the region during the run.
const ROUNDS: usize = 40;

/// The boot core adds and removes the region over and over while every other core
/// allocates, stamps, checks and frees; secondaries stop when it is done.
fn add_remove_while_allocating(cpu: usize) -> R {
    let range = PhysRange {
        start: RANGE[0].load(Relaxed),
        end: RANGE[1].load(Relaxed),
    };
    if cpu == 0 {
        let mut r = Ok(());
        for _ in 0..ROUNDS {
            if pages().info().hot_regions == 0 && hotplug::add(range).is_err() {
                r = Err("the region could not be added while cores allocate");
                break;
            }
            for _ in 0..2000 {
                core::hint::spin_loop();
            }
            match kmem().remove_region(range) {
                Ok(()) => REMOVED.fetch_add(1, Relaxed),
                Err(HotplugError::PagesInUse { .. }) => REFUSED.fetch_add(1, Relaxed),
                Err(_) => {
                    r = Err("removal failed for another reason than pages in use");
                    break;
                }
            };
        }
        DONE.store(true, Relaxed);
        return r;
    }
    let mut held = [0 as PhysAddr; 8];
    let mut n = 0u64;
    while !DONE.load(Relaxed) {
        n += 1;
        let slot = (n % 8) as usize;
        if held[slot] != 0 {
            let pa = held[slot];
            // SAFETY: our page, stamped below.
            let tag = unsafe { word(pa).read_volatile() };
            ensure(
                tag == pa ^ cpu as u64,
                "a page changed while regions came and went",
            )?;
            pages()
                .free_pages_any(pa, 0)
                .map_err(|_| "a page could not be freed")?;
            held[slot] = 0;
        } else if let Ok(pa) = pages().alloc_pages(0, Gfp::KERNEL) {
            // SAFETY: the page is ours and mapped as RAM.
            unsafe { word(pa).write_volatile(pa ^ cpu as u64) };
            held[slot] = pa;
        }
        if let Ok(p) = kmem().kmalloc(200, Gfp::KERNEL) {
            // SAFETY: ours, 200 bytes.
            unsafe { (p.as_ptr() as *mut u64).write_volatile(n) };
            kmem()
                .kfree_any(p.as_ptr())
                .map_err(|_| "an object could not be freed")?;
        }
    }
    for pa in held.into_iter().filter(|&pa| pa != 0) {
        pages()
            .free_pages_any(pa, 0)
            .map_err(|_| "a page could not be freed")?;
    }
    Ok(())
}

/// The region added and removed by one core while every other core allocates: nothing
/// lost, every page intact, the region removable at the end.
pub fn add_remove_while_every_core_allocates() -> R {
    let range = hotplug::held_back().ok_or("no memory was held back at boot")?;
    RANGE[0].store(range.start, Relaxed);
    RANGE[1].store(range.end, Relaxed);
    // Start from the region removed (the previous test leaves it added).
    if pages().info().hot_regions > 0 {
        kmem()
            .remove_region(range)
            .map_err(|_| "the region could not be removed before the run")?;
    }
    kmem().shrink_all();
    pages().drain_all_pcp();
    let before = pages().info().free_pages();
    DONE.store(false, Relaxed);
    smp::run_on_all(add_remove_while_allocating)?;
    if pages().info().hot_regions > 0 {
        kmem()
            .remove_region(range)
            .map_err(|_| "the region could not be removed after the run")?;
    }
    kmem().shrink_all();
    pages().drain_all_pcp();
    ensure(
        pages().info().free_pages() == before,
        "free pages differ after the run",
    )?;
    crate::println!(
        "  {} removals done, {} refused for pages in use, on {} cpus",
        REMOVED.load(Relaxed),
        REFUSED.load(Relaxed),
        smp::online()
    );
    hotplug::add(range).map_err(|_| "the range could not be added again")
}
