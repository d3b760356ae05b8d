//! Self-tests of the slab layer and kmalloc on the real machine: per-CPU caches on every
//! core, frees across cores, bulk calls and reservations, DMA flags, large blocks, out of
//! memory, the error cases, cache life cycle, and `alloc` collections on the global
//! allocator.
//!
//! Each test checks conservation: after it frees what it took and every cache is shrunk,
//! the page allocator's free count is back where it started.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, MAX_CPUS};
use crate::unchecked::{CacheAny, KmemAny};
use kmem::Arch;
use kmem::Gfp;
use kmem::kmalloc::CLASS_SIZES;
use kmem::kmalloc::{CacheRef, Kmem, ZERO_SIZE_PTR};
use kmem::mm::zone::ZoneKind;
use kmem::slab::{SlabError, SlabFlags};

use super::{kmem, smp, workload};

type R = Result<(), &'static str>;

pub(super) fn ensure(ok: bool, reason: &'static str) -> R {
    if ok { Ok(()) } else { Err(reason) }
}

fn free_pages(k: &Kmem<Cpu>) -> u64 {
    k.shrink_all();
    k.pages().drain_all_pcp();
    k.pages().info().free_pages()
}

/// Runs `f`, then checks that every page it took came back once caches are shrunk.
pub(super) fn conserving(f: impl FnOnce(&'static Kmem<Cpu>) -> R) -> R {
    let k = kmem();
    let before = free_pages(k);
    f(k)?;
    ensure(
        free_pages(k) == before,
        "pages not conserved after the test",
    )
}

pub(super) fn km(size: usize, gfp: Gfp) -> Result<*mut u8, &'static str> {
    kmem()
        .kmalloc(size, gfp)
        .map(NonNull::as_ptr)
        .map_err(|_| "kmalloc failed")
}

pub(super) fn kf(p: *mut u8) -> R {
    kmem()
        .kfree_any(p)
        .map_err(|_| "kfree refused a live object")
}

pub fn every_class() -> R {
    conserving(|k| {
        for &size in &CLASS_SIZES {
            let size = size as usize;
            let p = km(size, Gfp::KERNEL)?;
            ensure((p as usize).is_multiple_of(8), "object not 8-aligned")?;
            // Under memory tagging kmalloc rounds requests to whole granules.
            let class = if Cpu::memory_tagging_on() {
                let rounded = size.next_multiple_of(Cpu::TAG_GRANULE);
                CLASS_SIZES
                    .iter()
                    .map(|&c| c as usize)
                    .find(|&c| c >= rounded)
            } else {
                Some(size)
            };
            ensure(k.ksize_any(p).ok() == class, "ksize is not the class size")?;
            // SAFETY: size bytes at p are ours.
            unsafe { p.write_bytes(0xA5, size) };
            kf(p)?;
        }
        Ok(())
    })
}

/// Objects each core allocated, for a neighbour to free.
const HANDOFF: usize = 64;
static HANDED: [[AtomicUsize; HANDOFF]; MAX_CPUS] =
    [const { [const { AtomicUsize::new(0) }; HANDOFF] }; MAX_CPUS];

fn alloc_for_neighbour(cpu: usize) -> R {
    for (i, slot) in HANDED[cpu].iter().enumerate() {
        let p = km(16 + 40 * i, Gfp::KERNEL)?;
        // SAFETY: at least 16 bytes are ours.
        unsafe { p.cast::<usize>().write(p as usize) };
        slot.store(p as usize, Relaxed);
    }
    Ok(())
}

/// Frees what the next online core (in id order, wrapping) allocated.
fn free_neighbours(cpu: usize) -> R {
    let from = smp::next_online(cpu);
    for slot in &HANDED[from] {
        let p = slot.swap(0, Relaxed) as *mut u8;
        // SAFETY: the neighbour stamped the object's first word.
        ensure(
            unsafe { p.cast::<usize>().read() } == p as usize,
            "object changed",
        )?;
        kf(p)?;
    }
    Ok(())
}

pub fn free_on_another_cpu() -> R {
    conserving(|_| {
        smp::run_on_all(alloc_for_neighbour)?;
        smp::run_on_all(free_neighbours)
    })
}

fn per_cpu_churn(cpu: usize) -> R {
    let mut held = [core::ptr::null_mut::<u8>(); 32];
    for round in 0..2000 {
        let slot = round % held.len();
        if !held[slot].is_null() {
            // SAFETY: stamped below when allocated.
            let ok = unsafe { held[slot].read() } == cpu as u8;
            ensure(ok, "another cpu wrote into an object")?;
            kf(held[slot])?;
        }
        held[slot] = km([32, 64, 192, 512][round % 4], Gfp::KERNEL)?;
        // SAFETY: at least one byte is ours.
        unsafe { held[slot].write(cpu as u8) };
    }
    held.into_iter().try_for_each(kf)
}

pub fn per_cpu_caches_on_every_core() -> R {
    conserving(|k| {
        smp::run_on_all(per_cpu_churn)?;
        // Every core that ran left objects in its own array of kmalloc-64.
        let info = k
            .kmalloc_cache_for(64, 8, Gfp::KERNEL)
            .ok_or("no kmalloc-64")?
            .info();
        ensure(
            info.cpu_cached >= smp::online(),
            "CPU magazines were not used on every core",
        )
    })
}

/// Bulk calls and reservations on this core: batches of four sizes, stamped and checked,
/// with two objects taken from a reservation while interrupts are off.
fn bulk_on_this_cpu(cpu: usize) -> R {
    let k = kmem();
    let mut objs = [core::ptr::null_mut::<u8>(); 200];
    for round in 0..20 {
        let size = [16, 64, 200, 1000][round % 4];
        k.kmalloc_bulk(size, Gfp::KERNEL, &mut objs)
            .map_err(|_| "kmalloc_bulk failed")?;
        for &p in &objs {
            // SAFETY: at least one byte of each object is ours.
            unsafe { p.write(cpu as u8) };
        }
        let mut r = k
            .kmalloc_reserve::<8>(size, Gfp::KERNEL)
            .map_err(|_| "kmalloc_reserve failed")?;
        let irq = Cpu::irq_save();
        let taken = [r.take(), r.take()];
        Cpu::irq_restore(irq);
        drop(r);
        for &p in &objs {
            // SAFETY: stamped above.
            let ok = unsafe { p.read() } == cpu as u8;
            ensure(ok, "another cpu wrote into a bulk-allocated object")?;
        }
        k.kfree_bulk_any(&objs)
            .map_err(|_| "kfree_bulk refused a live object")?;
        for t in taken {
            kf(t.ok_or("a reservation of 8 ran dry after 2")?.as_ptr())?;
        }
    }
    Ok(())
}

pub fn bulk_and_reservations_on_every_core() -> R {
    conserving(|k| {
        smp::run_on_all(bulk_on_this_cpu)?;
        // A stack address in the middle of a bulk free: refused, and the rest freed once.
        let mut objs = [core::ptr::null_mut::<u8>(); 4];
        k.kmalloc_bulk(64, Gfp::KERNEL, &mut objs)
            .map_err(|_| "kmalloc_bulk failed")?;
        let mut foreign = 0u64;
        let [a, b, c, d] = objs;
        let batch = [a, b, (&raw mut foreign).cast(), c, d];
        ensure(
            k.kfree_bulk_any(&batch).is_err(),
            "a bulk free took a stack address",
        )?;
        ensure(
            objs.iter()
                .all(|&p| matches!(k.kfree_any(p), Err(SlabError::DoubleFree { .. }))),
            "a bulk free with a foreign pointer did not free the others",
        )?;
        ensure(
            k.validate(None) == Some(0),
            "validate found damage after the bulk frees",
        )
    })
}

pub fn dma_flags() -> R {
    conserving(|k| {
        let limits = k.pages().info();
        for (gfp, highest) in [(Gfp::DMA32, ZoneKind::Dma32), (Gfp::DMA, ZoneKind::Dma)] {
            let present = limits.zones[..=highest.index()]
                .iter()
                .any(|z| z.managed_pages > 0);
            match k.kmalloc(100, gfp) {
                Ok(p) => {
                    let pa = Cpu::virt_to_phys(p.as_ptr() as usize);
                    let zone = k.pages().zone_of(pa).ok_or("not a managed frame")?;
                    ensure(zone <= highest, "a DMA object came from a higher zone")?;
                    kf(p.as_ptr())?;
                }
                Err(_) => ensure(!present, "a DMA request failed with the zone present")?,
            }
        }
        Ok(())
    })
}

pub fn large_blocks() -> R {
    conserving(|k| {
        for size in [(1 << 20) + 1, 2 << 20, 4 << 20] {
            let p = km(size, Gfp::ZERO)?;
            // SAFETY: size bytes at p are ours.
            let zero = unsafe { core::slice::from_raw_parts(p, size) }
                .iter()
                .all(|&b| b == 0);
            ensure(zero, "a zeroed large block was not zero")?;
            ensure(
                k.ksize_any(p).is_ok_and(|s| s >= size),
                "ksize below the request",
            )?;
            kf(p)?;
        }
        ensure(
            matches!(
                k.kmalloc(8 << 20, Gfp::KERNEL),
                Err(SlabError::TooLarge { .. })
            ),
            "8 MiB was not refused as too large",
        )
    })
}

pub fn kfree_errors() -> R {
    conserving(|k| {
        let p = km(64, Gfp::KERNEL)?;
        ensure(
            matches!(
                k.kfree_any(p.wrapping_add(8)),
                Err(SlabError::Interior { offset: 8, .. })
            ),
            "interior pointer not refused",
        )?;
        let on_stack = 0u64;
        ensure(
            matches!(
                k.kfree_any(&on_stack as *const u64 as *mut u8),
                Err(SlabError::NotOwned { .. })
            ),
            "stack pointer not refused",
        )?;
        kf(p)?;
        ensure(
            matches!(k.kfree_any(p), Err(SlabError::DoubleFree { .. })),
            "double free (object in the CPU's magazine) not refused",
        )?;
        k.shrink_all();
        ensure(
            k.kfree_any(p).is_err(),
            "double free (object back in its slab) not refused",
        )?;
        let z = km(0, Gfp::KERNEL)?;
        ensure(
            z == ZERO_SIZE_PTR && k.kfree_any(z).is_ok(),
            "kmalloc(0) round trip",
        )?;
        ensure(
            matches!(
                k.kcalloc(usize::MAX, 2, Gfp::KERNEL),
                Err(SlabError::Overflow)
            ),
            "kcalloc overflow not refused",
        )?;
        // Still working.
        let q = km(64, Gfp::KERNEL)?;
        kf(q)
    })
}

pub fn krealloc_keeps_bytes() -> R {
    conserving(|k| {
        let p = km(100, Gfp::KERNEL)?;
        for i in 0..100 {
            // SAFETY: 100 bytes are ours.
            unsafe { p.add(i).write(i as u8) };
        }
        let q = k
            .krealloc_any(p, 20_000, Gfp::KERNEL)
            .map_err(|_| "krealloc failed")?
            .as_ptr();
        // SAFETY: the new block holds at least 100 bytes.
        let kept = (0..100).all(|i| unsafe { q.add(i).read() } == i as u8);
        ensure(kept, "krealloc lost bytes")?;
        kf(q)
    })
}

pub fn out_of_memory() -> R {
    conserving(|k| {
        // Chain 1 MiB objects through their first word until kmalloc fails.
        let mut head: *mut u8 = core::ptr::null_mut();
        let mut n = 0usize;
        while let Ok(p) = k.kmalloc(1 << 20, Gfp::KERNEL) {
            // SAFETY: the object is ours and at least a word long.
            unsafe { p.as_ptr().cast::<*mut u8>().write(head) };
            head = p.as_ptr();
            n += 1;
        }
        let failed_cleanly = matches!(
            k.kmalloc(1 << 20, Gfp::KERNEL),
            Err(SlabError::OutOfMemory { .. } | SlabError::Page(_))
        );
        while !head.is_null() {
            // SAFETY: written above.
            let next = unsafe { head.cast::<*mut u8>().read() };
            kf(head)?;
            head = next;
        }
        ensure(n > 0, "nothing was allocated")?;
        ensure(failed_cleanly, "exhaustion was not an out-of-memory error")
    })
}

static CONSTRUCTED: AtomicUsize = AtomicUsize::new(0);

fn ctor(p: *mut u8) {
    // SAFETY: objects of the test cache are 200 bytes.
    unsafe { p.cast::<u32>().write(0xC0DE) };
    CONSTRUCTED.fetch_add(1, Relaxed);
}

pub fn cache_life_cycle() -> R {
    conserving(|k| {
        let c = k
            .cache_create("selftest-cache", 200, 64, SlabFlags::NONE, Some(ctor), None)
            .map_err(|_| "cache_create failed")?;
        ensure(
            matches!(
                k.cache_create("selftest-cache", 8, 8, SlabFlags::NONE, None, None),
                Err(SlabError::NameTaken { .. })
            ),
            "duplicate name accepted",
        )?;
        let a = c.alloc(Gfp::KERNEL).map_err(|_| "cache alloc failed")?;
        ensure(
            (a.as_ptr() as usize).is_multiple_of(64),
            "object not aligned",
        )?;
        // SAFETY: constructed objects hold the stamp.
        ensure(
            unsafe { a.as_ptr().cast::<u32>().read() } == 0xC0DE,
            "ctor did not run",
        )?;
        ensure(CONSTRUCTED.load(Relaxed) > 0, "ctor count")?;
        let (c, e) = c
            .destroy()
            .err()
            .ok_or("destroy with a live object succeeded")?;
        ensure(matches!(e, SlabError::Busy { live: 1, .. }), "busy error")?;
        c.free_any(a).map_err(|_| "cache free failed")?;
        c.destroy().map_err(|_| "destroy of an empty cache failed")
    })
}

pub fn alloc_collections() -> R {
    conserving(|_| {
        let mut map = BTreeMap::new();
        for i in 0..500u32 {
            map.insert(i, alloc::format!("value {i}"));
        }
        let v: Vec<u64> = (0..10_000).collect();
        let b = Box::new([7u8; 5000]);
        let mut s = String::new();
        for (k, val) in map.iter().take(3) {
            s.push_str(val);
            s.push_str(if *k < 2 { "," } else { "" });
        }
        ensure(s == "value 0,value 1,value 2", "String on kmem")?;
        ensure(v.iter().sum::<u64>() == 49_995_000, "Vec on kmem")?;
        ensure(b.iter().all(|&x| x == 7), "Box on kmem")
    })
}

pub fn reap_and_shrink() -> R {
    conserving(|k| {
        // Two: the guard pool may take one as its sample (kmem.kfence=), which leaves
        // the magazine alone; it takes at most one, so the other passes through it.
        let (p, q) = (km(48, Gfp::KERNEL)?, km(48, Gfp::KERNEL)?);
        kf(p)?;
        kf(q)?;
        k.reap(); // the array was just used: only clears its mark
        let (drained, _) = k.reap();
        ensure(drained > 0, "reap did not drain an idle array")
    })
}

/// The handle of the debug cache (red zones, poison, owner tracking) every core uses, by
/// address.
static DEBUG_CACHE: AtomicUsize = AtomicUsize::new(0);

/// On this core, with the object in this core's magazine where the fault involves
/// one: a write past the end (red zone, reported at free), a write after free (poison,
/// reported when the same object comes back from the array), and a double free of an
/// object the array holds (refused).
fn faults_on_this_cpu(cpu: usize) -> R {
    let c = DEBUG_CACHE.load(Relaxed) as *const CacheRef<'static, Cpu>;
    // SAFETY: the test stores a live cache before run_on_all and destroys it only after
    // every job has finished.
    let c = unsafe { c.as_ref() }.ok_or("no debug cache")?;
    let alloc = || {
        c.alloc(Gfp::KERNEL)
            .map(NonNull::as_ptr)
            .map_err(|_| "debug cache alloc failed")
    };
    let p = alloc()?;
    // SAFETY: one byte past a 40-byte object lies in its right red zone, inside the slab.
    unsafe { p.add(40).write_volatile(cpu as u8) };
    kf(p).map_err(|_| "free of an overflowed object was refused")?;
    let q = alloc()?;
    kf(q)?;
    // SAFETY: q is free but its slab is live (the array holds it): the write lands in
    // poison, which is what the test provokes.
    unsafe { q.add(8).write_volatile(0x5a) };
    let again = alloc()?;
    ensure(
        again == q,
        "the CPU's magazine did not hand back its last free",
    )?;
    ensure(
        matches!(kmem().kfree_any(again), Ok(())),
        "free after a poison report refused",
    )?;
    ensure(
        matches!(kmem().kfree_any(again), Err(SlabError::DoubleFree { .. })),
        "double free of an object in this core's array not refused",
    )
}

pub fn debug_faults_on_every_core() -> R {
    conserving(|k| {
        let flags = SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER;
        let c = k
            .cache_create("selftest-debug", 40, 8, flags, None, None)
            .map_err(|_| "cache_create failed")?;
        DEBUG_CACHE.store(&c as *const CacheRef<'static, Cpu> as usize, Relaxed);
        let before = c.cache().reports();
        let r = smp::run_on_all(faults_on_this_cpu);
        DEBUG_CACHE.store(0, Relaxed);
        r?;
        let found = c.cache().reports() - before;
        ensure(
            found == 2 * smp::online(),
            "not every overflow and write after free was reported",
        )?;
        ensure(
            k.validate(Some("selftest-debug")) == Some(0),
            "validate after repair",
        )?;
        c.destroy().map_err(|_| "destroy failed")
    })
}

pub fn stress_all_cpus() -> R {
    conserving(|_| {
        let (ops, remote) = workload::run(0, 4000, workload::mixed)?;
        ensure(ops > 0, "no work done")?;
        ensure(
            remote > 0 || smp::online() == 1,
            "no object was freed by another cpu",
        )
    })
}
