//! Self-tests of kmem's sampled guard pages (`kmem.kfence=`) on the real MMU, on every
//! core: an access one byte past a sampled object's end and one before its start (read
//! and write), reads and writes after its free, a double free, and a wild access into the
//! pool — each caught by the page fault, with the report's text checked, and the core
//! carrying on after it.
//!
//! The cores take turns (one lock around each core's run): neighbouring objects share a
//! guard page, and a fault leaves its page mapped until the object is freed, so two
//! cores' faults at once could open a guard the other one is testing.

use alloc::string::{String, ToString};
use core::ptr::NonNull;

use spin::Mutex;

use crate::arch::guard_pool::pool_range;
use crate::kfence::take_last_report;
use crate::slab_tests::ensure;
use crate::unchecked::KmemAny;
use crate::{kmem, smp};
use kmem::Gfp;
use kmem::guard_pool::{GuardFaultKind, POOL_PAGE};

type R = Result<(), &'static str>;

/// One core at a time (see the module doc).
static TURN: Mutex<()> = Mutex::new(());

/// Object size in the tests: a multiple of kmalloc's alignment, so that an object
/// against the right guard ends exactly at it.
const SIZE: usize = 64;

/// Whether `p` lies in the guard pool.
fn in_pool(p: usize) -> bool {
    let r = pool_range();
    (r.start..r.end).contains(&(p as u64))
}

/// A sampled object against the right guard (`right`) or the left one. Samples
/// alternate sides, so this takes up to a few; objects of the wrong side, or not sampled
/// (another core's allocation took the sample), are freed.
fn sampled(right: bool) -> Result<usize, &'static str> {
    let k = kmem();
    for _ in 0..8 {
        k.sample_next();
        let p = k
            .kmalloc(SIZE, Gfp::KERNEL)
            .map(NonNull::as_ptr)
            .map_err(|_| "kmalloc failed")?;
        let a = p as usize;
        let against_right = (a + SIZE).is_multiple_of(POOL_PAGE);
        if in_pool(a) && against_right == right && (right || a.is_multiple_of(POOL_PAGE)) {
            return Ok(a);
        }
        k.kfree_any(p)
            .map_err(|_| "kfree of a kmalloc'd object refused")?;
    }
    Err("no sampled object on the side asked for in 8 tries")
}

fn free(p: usize) -> R {
    kmem()
        .kfree_any(p as *mut u8)
        .map_err(|_| "kfree of a sampled object refused")
}

/// Reads (`write` false) or writes the byte at `addr`, which faults into the detector.
fn touch(addr: usize, write: bool) {
    let p = addr as *mut u8;
    if write {
        // SAFETY: a page of the guard pool, which holds nothing of anyone's: the fault
        // maps it and the write lands in the pool.
        unsafe { p.write_volatile(0x5a) };
    } else {
        // SAFETY: as above, a read.
        unsafe { p.read_volatile() };
    }
}

/// Touches `addr` and checks that a report of `kind` came back whose text holds every
/// one of `needles`.
fn caught(addr: usize, write: bool, kind: GuardFaultKind, needles: &[&str]) -> R {
    let _ = take_last_report();
    touch(addr, write);
    let r = take_last_report().ok_or("the access was not caught")?;
    ensure(r.kind == kind, "the fault was classified wrongly")?;
    ensure(r.addr == addr, "the report names another address")?;
    let text = r.to_string();
    if let Some(missing) = needles.iter().find(|n| !text.contains(**n)) {
        crate::println!("  report: {text}\n  missing: {missing}");
        return Err("the report's text is not as expected");
    }
    Ok(())
}

/// `size=64, cache=kmalloc-64] allocated by cpu N at` for this core (the cache may be a
/// lower zone's, `dma32-kmalloc-64`, on a board whose RAM is all below 4 GiB).
fn owner(cpu: usize) -> String {
    alloc::format!("kmalloc-{SIZE}] allocated by cpu {cpu} at ")
}

fn on_this_cpu(cpu: usize) -> R {
    let _turn = TURN.lock();
    let faults_before = kmem().guard_pool_info().ok_or("no guard pool")?.faults;
    for write in [false, true] {
        let access = if write { "write" } else { "read" };
        let p = sampled(true)?;
        let title = alloc::format!("BUG: KFENCE: out-of-bounds {access}");
        let right = GuardFaultKind::OutOfBoundsRight { distance: 1 };
        caught(
            p + SIZE,
            write,
            right,
            &[
                &title,
                "(1B right of kfence-#",
                "size=64, cache=",
                &owner(cpu),
            ],
        )?;
        free(p)?;
        let p = sampled(false)?;
        let left = GuardFaultKind::OutOfBoundsLeft { distance: 1 };
        caught(
            p - 1,
            write,
            left,
            &[&title, "(1B left of kfence-#", &owner(cpu)],
        )?;
        free(p)?;
        let p = sampled(true)?;
        free(p)?;
        let title = alloc::format!("BUG: KFENCE: use-after-free {access}");
        let freed = alloc::format!("freed by cpu {cpu} at ");
        let uaf = GuardFaultKind::UseAfterFree { offset: 8 };
        caught(
            p + 8,
            write,
            uaf,
            &[&title, "(offset 8 in kfence-#", &owner(cpu), &freed],
        )?;
        // A wild pointer: the pool's first page, which no object is beside. Freeing a
        // sampled object closes whatever an earlier wild access left open.
        free(sampled(false)?)?;
        let wild = pool_range().start as usize + 16;
        let title = alloc::format!("BUG: KFENCE: invalid {access}");
        caught(wild, write, GuardFaultKind::Invalid, &[&title, "Invalid "])?;
    }
    let p = sampled(true)?;
    free(p)?;
    match kmem().kfree_any(p as *mut u8) {
        Err(e) => ensure(
            e.to_string().contains("kmalloc-64: double free of object"),
            "a double free was refused with another error",
        )?,
        Ok(()) => return Err("a double free of a sampled object was accepted"),
    }
    let faults = kmem().guard_pool_info().ok_or("no guard pool")?.faults - faults_before;
    ensure(faults == 8, "the pool did not count 8 faults")
}

/// Every kind of access the guard pool catches, on every core; skipped (and said so)
/// under `kmem.kfence=0`, where there is no pool.
pub fn faults_on_every_core() -> R {
    if kmem().guard_pool_info().is_none() {
        crate::println!("  skipped: kmem.kfence=0");
        return Ok(());
    }
    smp::run_on_all(on_this_cpu)
}
