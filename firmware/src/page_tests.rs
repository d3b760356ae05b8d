//! Self-tests of the page allocator on the real machine: every order and zone, the
//! error cases, all cores at once, frees from another core, and running out of memory.
//!
//! Each test leaves the allocator as it found it and checks that: the free-page count
//! after draining the per-CPU lists must come back to where it started.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, MAX_CPUS};
use crate::unchecked::PagesAny;
use kmem::Arch;
use kmem::Gfp;
use kmem::mm::MAX_ORDER;
use kmem::mm::memmap::PAGE_SIZE;
use kmem::mm::zone::ZoneKind;
use kmem::mm::{PageAllocator, PageError, PhysAddr};

use super::{pages, smp};

type R = Result<(), &'static str>;

fn ensure(ok: bool, reason: &'static str) -> R {
    if ok { Ok(()) } else { Err(reason) }
}

/// Free pages with nothing parked in per-CPU lists.
fn free_pages(p: &PageAllocator<Cpu>) -> u64 {
    p.drain_all_pcp();
    p.info().free_pages()
}

/// Runs `f`, then checks that every page it took came back.
fn conserving(f: impl FnOnce(&PageAllocator<Cpu>) -> R) -> R {
    let p = pages();
    let before = free_pages(p);
    f(p)?;
    ensure(
        free_pages(p) == before,
        "free page count differs after the test",
    )
}

fn ptr(pa: PhysAddr) -> *mut u64 {
    Cpu::phys_to_virt(pa) as *mut u64
}

/// Writes `tag` to the first and last word of a block, to read back later.
fn stamp(pa: PhysAddr, order: u32, tag: u64) {
    let words = ((PAGE_SIZE as usize) << order) / 8;
    // SAFETY: the block is allocated to the caller and mapped as RAM.
    unsafe {
        ptr(pa).write_volatile(tag);
        ptr(pa).add(words - 1).write_volatile(tag);
    }
}

fn stamped(pa: PhysAddr, order: u32, tag: u64) -> bool {
    let words = ((PAGE_SIZE as usize) << order) / 8;
    // SAFETY: as in `stamp`.
    unsafe { ptr(pa).read_volatile() == tag && ptr(pa).add(words - 1).read_volatile() == tag }
}

pub fn every_order() -> R {
    conserving(|p| {
        for order in 0..=MAX_ORDER {
            let pa = p
                .alloc_pages(order, Gfp::KERNEL)
                .map_err(|_| "allocation failed")?;
            ensure(
                pa % (PAGE_SIZE << order) == 0,
                "block not aligned to its size",
            )?;
            stamp(pa, order, pa ^ 0x5a5a);
            ensure(
                stamped(pa, order, pa ^ 0x5a5a),
                "block memory did not hold a value",
            )?;
            p.free_pages_any(pa, order).map_err(|_| "free failed")?;
        }
        Ok(())
    })
}

pub fn order_10_blocks() -> R {
    const N: usize = 16;
    conserving(|p| {
        let mut blocks = [0u64; N];
        let mut n = 0;
        while n < N {
            match p.alloc_pages(MAX_ORDER, Gfp::KERNEL) {
                Ok(pa) => {
                    stamp(pa, MAX_ORDER, pa);
                    blocks[n] = pa;
                    n += 1;
                }
                Err(PageError::OutOfMemory { .. }) => break,
                Err(_) => return Err("order-10 allocation failed with a wrong error"),
            }
        }
        ensure(n >= 1, "not even one order-10 block")?;
        let size = PAGE_SIZE << MAX_ORDER;
        for (i, &a) in blocks[..n].iter().enumerate() {
            ensure(a % size == 0, "order-10 block not 4 MiB aligned")?;
            ensure(stamped(a, MAX_ORDER, a), "order-10 blocks overlap")?;
            ensure(
                blocks[..i].iter().all(|&b| a.abs_diff(b) >= size),
                "two order-10 blocks overlap",
            )?;
        }
        for &a in &blocks[..n] {
            p.free_pages_any(a, MAX_ORDER)
                .map_err(|_| "order-10 free failed")?;
        }
        Ok(())
    })
}

pub fn zeroed() -> R {
    conserving(|p| {
        let pa = p
            .alloc_pages(3, Gfp::KERNEL)
            .map_err(|_| "allocation failed")?;
        stamp(pa, 3, u64::MAX);
        p.free_pages_any(pa, 3).map_err(|_| "free failed")?;
        let pa = p
            .alloc_pages(3, Gfp::ZERO)
            .map_err(|_| "zeroed allocation failed")?;
        let ok = stamped(pa, 3, 0);
        p.free_pages_any(pa, 3).map_err(|_| "free failed")?;
        ensure(ok, "Gfp::ZERO block not zeroed")
    })
}

pub fn every_zone() -> R {
    conserving(|p| {
        let info = p.info();
        for z in ZoneKind::ALL {
            let gfp = match z {
                ZoneKind::Dma => Gfp::DMA,
                ZoneKind::Dma32 => Gfp::DMA32,
                ZoneKind::Normal => Gfp::KERNEL,
            };
            let has_pages = info.zones[..=z.index()]
                .iter()
                .any(|zi| zi.managed_pages > 0);
            for order in [0, 4] {
                match p.alloc_pages(order, gfp) {
                    Ok(pa) => {
                        let got = p.zone_of(pa).ok_or("allocated frame has no descriptor")?;
                        ensure(
                            got <= z,
                            "allocation came from a zone above the one asked for",
                        )?;
                        p.free_pages_any(pa, order).map_err(|_| "free failed")?;
                    }
                    Err(PageError::OutOfMemory { .. }) if !has_pages => {}
                    Err(_) => return Err("allocation failed in a zone that has pages"),
                }
            }
        }
        Ok(())
    })
}

pub fn errors() -> R {
    conserving(|p| {
        let expect = |r: Result<(), PageError>, want: PageError, what| ensure(r == Err(want), what);
        ensure(
            p.alloc_pages(MAX_ORDER + 1, Gfp::KERNEL)
                == Err(PageError::OrderTooLarge { order: 11 }),
            "order 11 allocation not refused",
        )?;
        let a = p
            .alloc_pages(2, Gfp::KERNEL)
            .map_err(|_| "allocation failed")?;
        expect(
            p.free_pages_any(a, 11),
            PageError::OrderTooLarge { order: 11 },
            "order 11 free",
        )?;
        // The image is never managed, wherever RAM starts (0 on a Pi): a page of its code.
        let unmanaged = (errors as *const () as u64) & !(PAGE_SIZE - 1);
        expect(
            p.free_pages_any(unmanaged, 0),
            PageError::NotManaged { addr: unmanaged },
            "unmanaged free",
        )?;
        expect(
            p.free_pages_any(a + 8, 2),
            PageError::Misaligned { addr: a + 8 },
            "misaligned free",
        )?;
        let tail = a + PAGE_SIZE;
        expect(
            p.free_pages_any(tail, 0),
            PageError::NotBlockHead { addr: tail },
            "tail free",
        )?;
        let mismatch = PageError::OrderMismatch {
            addr: a,
            allocated: 2,
            freed: 1,
        };
        expect(p.free_pages_any(a, 1), mismatch, "order mismatch")?;
        p.free_pages_any(a, 2)
            .map_err(|_| "good free refused after errors")?;
        expect(
            p.free_pages_any(a, 2),
            PageError::DoubleFree { addr: a },
            "double free",
        )?;
        let b = p
            .alloc_pages(0, Gfp::KERNEL)
            .map_err(|_| "allocation failed")?;
        p.free_pages_any(b, 0).map_err(|_| "free failed")?;
        expect(
            p.free_pages_any(b, 0),
            PageError::DoubleFree { addr: b },
            "order-0 double free",
        )?;
        if p.info().zones[ZoneKind::Dma.index()].managed_pages == 0 {
            let oom = PageError::OutOfMemory {
                order: 0,
                zone: ZoneKind::Dma,
            };
            ensure(
                p.alloc_pages(0, Gfp::DMA) == Err(oom),
                "empty DMA zone did not report OOM",
            )?;
        }
        // The allocator must still work after every refusal.
        let c = p
            .alloc_pages(1, Gfp::KERNEL)
            .map_err(|_| "allocation after errors failed")?;
        p.free_pages_any(c, 1)
            .map_err(|_| "free after errors failed")
    })
}

/// Alloc/free churn of mixed orders on one core, checking its blocks stay its own.
fn churn(cpu: usize) -> R {
    const ROUNDS: usize = 200;
    const HELD: usize = 8;
    let p = pages();
    let mut held = [(0u64, 0u32); HELD];
    for round in 0..ROUNDS {
        let slot = round % HELD;
        let (old, old_order) = held[slot];
        if old != 0 {
            ensure(
                stamped(old, old_order, old ^ cpu as u64),
                "another cpu wrote into a block",
            )?;
            p.free_pages_any(old, old_order)
                .map_err(|_| "concurrent free failed")?;
        }
        let order = [0, 0, 0, 1, 0, 2, 0, 3][round % 8];
        let pa = p
            .alloc_pages(order, Gfp::KERNEL)
            .map_err(|_| "concurrent allocation failed")?;
        stamp(pa, order, pa ^ cpu as u64);
        held[slot] = (pa, order);
    }
    for (pa, order) in held {
        p.free_pages_any(pa, order)
            .map_err(|_| "concurrent free failed")?;
    }
    Ok(())
}

/// On every online core at once (which cores those are, and why any listed one is not,
/// `smp_cpus_accounted` checks).
pub fn all_cpus_concurrently() -> R {
    conserving(|_| smp::run_on_all(churn))
}

/// Pages each core allocated in the first round, for its neighbour to free in the second.
const HANDOFF: usize = 32;
static HANDED: [[AtomicU64; HANDOFF]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; HANDOFF] }; MAX_CPUS];

fn alloc_for_neighbour(cpu: usize) -> R {
    for slot in &HANDED[cpu] {
        let pa = pages()
            .alloc_pages(0, Gfp::KERNEL)
            .map_err(|_| "allocation failed")?;
        stamp(pa, 0, pa);
        slot.store(pa, Relaxed);
    }
    Ok(())
}

/// Frees what the next online core (in id order, wrapping) allocated: online ids need not
/// be dense, as a listed CPU that did not start leaves a gap.
fn free_neighbours(cpu: usize) -> R {
    let from = smp::next_online(cpu);
    for slot in &HANDED[from] {
        let pa = slot.swap(0, Relaxed);
        ensure(stamped(pa, 0, pa), "a handed-over page changed")?;
        pages()
            .free_pages_any(pa, 0)
            .map_err(|_| "free of a page from another cpu failed")?;
    }
    Ok(())
}

pub fn free_on_another_cpu() -> R {
    conserving(|_| {
        smp::run_on_all(alloc_for_neighbour)?;
        smp::run_on_all(free_neighbours)
    })
}

pub fn out_of_memory() -> R {
    conserving(|p| {
        // Every allocated block links to the previous one through its first two words,
        // so taking all of memory needs no other storage.
        let mut head: (u64, u32) = (0, 0);
        let mut blocks = 0u64;
        for order in (0..=MAX_ORDER).rev() {
            while let Ok(pa) = p.alloc_pages(order, Gfp::KERNEL) {
                // SAFETY: the block is ours and mapped as RAM; two words fit in any block.
                unsafe {
                    ptr(pa).write(head.0);
                    ptr(pa).add(1).write(u64::from(head.1));
                }
                head = (pa, order);
                blocks += 1;
            }
        }
        let full = p.alloc_pages(0, Gfp::KERNEL);
        let empty = free_pages(p) == 0;
        while head.0 != 0 {
            let (pa, order) = head;
            // SAFETY: written above, before the block was linked.
            head = unsafe { (ptr(pa).read(), ptr(pa).add(1).read() as u32) };
            p.free_pages_any(pa, order)
                .map_err(|_| "free after out of memory failed")?;
        }
        ensure(blocks > 0, "nothing could be allocated")?;
        ensure(
            matches!(full, Err(PageError::OutOfMemory { order: 0, .. })),
            "a full allocator did not report out of memory",
        )?;
        ensure(
            empty,
            "free pages left after allocating until out of memory",
        )?;
        let pa = p
            .alloc_pages(MAX_ORDER, Gfp::KERNEL)
            .map_err(|_| "order-10 allocation failed after refill")?;
        p.free_pages_any(pa, MAX_ORDER).map_err(|_| "free failed")
    })
}
