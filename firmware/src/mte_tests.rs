//! Self-tests of MTE tagging (aarch64 with MTE, `-M virt,mte=on -cpu max`): on every
//! core, an access one byte past the end and one before the start of an object, a use
//! after free, a double free of a tagged pointer, and a neighbour of an object smaller
//! than a granule — each caught, its report's text checked, and the core's checks
//! rearmed; then one asynchronous mismatch. Where the CPU has no MTE, or `kmem.mte=off`,
//! they say they are skipped and pass; so do the synchronous ones with `kmem.mte=async`.
//!
//! Writes land where they change nothing: a red-zoned cache's red zone byte, or a freed
//! object's poison byte, written with the value it holds (read untagged first, which is
//! unchecked). The report lets the access complete (see `mte_fault`), so a write
//! anywhere else would damage a neighbour. Reads go to kmalloc's own caches.

use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::arch::aarch64::mte::{self, Mode};
use crate::arch::aarch64::mte_fault;
use crate::arch::cpu::Cpu;
use crate::kmem;
use crate::println;
use crate::slab_tests::{conserving, ensure, kf, km};
use crate::smp;
use crate::unchecked::KmemAny;
use kmem::{Arch, CacheRef, Gfp, SlabError, SlabFlags};

type R = Result<(), &'static str>;

/// Whether a test can run: on a CPU with MTE, in a mode that tags, and for a test of
/// synchronous reports (`sync`) in sync mode, which every core takes at boot. Says why
/// not when it cannot.
fn tagging(test: &str, sync: bool) -> bool {
    if !mte::present() {
        println!("  {test}: skipped: the CPU has no MTE");
        return false;
    }
    let mode = mte::mode();
    if mode == Mode::Off || (sync && mode != Mode::Sync) {
        println!("  {test}: skipped: kmem.mte={}", mode.name());
        return false;
    }
    true
}

/// Runs `access` (one checked access the test expects to mismatch), then checks that
/// this core reported it once with every piece of `expect` in the text, and rearms.
fn caught(access: impl FnOnce(), expect: &[&str], what: &'static str) -> R {
    let before = mte::faults_here();
    access();
    mte::rearm();
    ensure(mte::faults_here() == before + 1, what)?;
    mte_fault::with_last_report(|text| {
        let missing = expect.iter().find(|e| !text.contains(*e));
        if let Some(m) = missing {
            println!("  report on cpu {}: {text}\n  lacks: {m}", Cpu::cpu_id());
            return Err("the report does not say what happened");
        }
        Ok(())
    })
}

/// Whether the granules on both sides of `[p, p + len)` carry tags other than `p`'s:
/// the allocator sees to it inside a page, so an object at a page edge may lack it.
fn fenced(p: *mut u8, len: usize) -> bool {
    let tag = mte::pointer_tag(p as usize);
    let at = mte::untag(p as usize);
    tag != 0 && mte::memory_tag(at - mte::GRANULE) != tag && mte::memory_tag(at + len) != tag
}

/// Allocates with `alloc` until an object is [`fenced`] (`len` its tagged bytes), and
/// frees the others with `free`.
fn fenced_object(
    alloc: impl Fn() -> Result<*mut u8, &'static str>,
    free: impl Fn(*mut u8) -> R,
    len: usize,
) -> Result<*mut u8, &'static str> {
    let mut skipped = [core::ptr::null_mut(); 4];
    let mut found = None;
    for slot in skipped.iter_mut() {
        let p = alloc()?;
        if fenced(p, len) {
            found = Some(p);
            break;
        }
        *slot = p;
    }
    for &p in skipped.iter().filter(|p| !p.is_null()) {
        free(p)?;
    }
    found.ok_or("objects handed out untagged, or tagged like their neighbours")
}

/// A checked read of the byte at `at` (a tagged pointer).
fn read_at(at: *mut u8) -> impl FnOnce() {
    // The callers name a byte of RAM inside a live slab; a read changes nothing.
    move || {
        // SAFETY: as above.
        let _ = unsafe { at.read_volatile() };
    }
}

/// A checked write, through the tagged pointer `at`, of the value its byte holds: the
/// write changes nothing even if it lands, as the report lets it, in another's memory.
fn rewrite_at(at: *mut u8) -> impl FnOnce() {
    let untagged = at.with_addr(mte::untag(at as usize));
    // SAFETY: the callers name a byte of a red zone or of a freed object's poison in a
    // live slab, which nothing else writes meanwhile; tag 0 reads are unchecked.
    let held = unsafe { untagged.read_volatile() };
    // SAFETY: as above; the value written is the one there.
    move || unsafe { at.write_volatile(held) }
}

/// The report's words for an access at `at` of `kind`.
fn access(kind: &str, at: usize) -> String {
    format!("MTE tag mismatch: {kind} at {:#x}", mte::untag(at))
}

pub fn out_of_bounds_on_every_core() -> R {
    if !tagging("out_of_bounds", true) {
        return Ok(());
    }
    conserving(|k| {
        let flags = SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER;
        let c = k
            .cache_create("mte-test", 64, 16, flags, None, None)
            .map_err(|_| "cache_create failed")?;
        CACHE.store(&c as *const CacheRef<'static, Cpu> as usize, Relaxed);
        let r = smp::run_on_all(out_of_bounds_here);
        CACHE.store(0, Relaxed);
        r?;
        ensure(
            k.validate(Some("mte-test")) == Some(0),
            "the red zones took damage",
        )?;
        c.destroy().map_err(|_| "destroy failed")
    })
}

/// The red-zoned cache of [`out_of_bounds_on_every_core`], while it runs.
static CACHE: AtomicUsize = AtomicUsize::new(0);

fn out_of_bounds_here(cpu: usize) -> R {
    let p = fenced_object(|| km(64, Gfp::KERNEL), kf, 64)?;
    let obj = format!("object {:#x} size 64", mte::untag(p as usize));
    caught(
        read_at(p.wrapping_add(64)),
        &[
            "kmalloc-64: MTE tag mismatch",
            &access("read", p as usize + 64),
            &format!("0 bytes past the end of {obj}"),
        ],
        "a read past the end was not caught",
    )?;
    caught(
        read_at(p.wrapping_sub(1)),
        &[
            "kmalloc-64: MTE tag mismatch",
            &access("read", p as usize - 1),
            &format!("1 bytes before the start of {obj}"),
        ],
        "a read before the start was not caught",
    )?;
    kf(p)?;

    let c = CACHE.load(Relaxed) as *const CacheRef<'static, Cpu>;
    // SAFETY: the test stores a live cache before run_on_all and destroys it only after
    // every job has finished.
    let c = unsafe { c.as_ref() }.ok_or("no test cache")?;
    let alloc = || {
        c.alloc(Gfp::KERNEL)
            .map(NonNull::as_ptr)
            .map_err(|_| "test cache alloc failed")
    };
    // SAFETY: each object is live and not used again.
    let free = |p: *mut u8| unsafe { c.free(NonNull::new(p).ok_or("null")?) }.map_err(|_| "free");
    let p = fenced_object(alloc, free, 64)?;
    let obj = format!("object {:#x} size 64", mte::untag(p as usize));
    let owner = format!("allocated on cpu {cpu} by ");
    caught(
        rewrite_at(p.wrapping_add(64)),
        &[
            "BUG mte-test: MTE tag mismatch",
            &access("write", p as usize + 64),
            &format!("0 bytes past the end of {obj}"),
            &owner,
        ],
        "a write past the end was not caught",
    )?;
    caught(
        rewrite_at(p.wrapping_sub(1)),
        &[
            "BUG mte-test: MTE tag mismatch",
            &access("write", p as usize - 1),
            &format!("1 bytes before the start of {obj}"),
            &owner,
        ],
        "a write before the start was not caught",
    )?;
    free(p)
}

pub fn use_after_free_on_every_core() -> R {
    if !tagging("use_after_free", true) {
        return Ok(());
    }
    conserving(|k| {
        let c = k
            .cache_create("mte-uaf", 64, 16, SlabFlags::POISON, None, None)
            .map_err(|_| "cache_create failed")?;
        CACHE.store(&c as *const CacheRef<'static, Cpu> as usize, Relaxed);
        let r = smp::run_on_all(use_after_free_here);
        CACHE.store(0, Relaxed);
        r?;
        ensure(
            k.validate(Some("mte-uaf")) == Some(0),
            "the poison took damage",
        )?;
        c.destroy().map_err(|_| "destroy failed")
    })
}

fn use_after_free_here(_cpu: usize) -> R {
    let p = km(64, Gfp::KERNEL)?;
    let at = mte::untag(p as usize);
    kf(p)?;
    caught(
        read_at(p.wrapping_add(8)),
        &[
            "kmalloc-64: MTE tag mismatch",
            &access("read", p as usize + 8),
            &format!("use-after-free, offset 8 of freed object {at:#x} size 64"),
        ],
        "a read after free was not caught",
    )?;
    ensure(
        matches!(kmem().kfree_any(p), Err(SlabError::DoubleFree { addr, .. }) if addr == at),
        "a double free of a tagged pointer was not refused by its untagged address",
    )?;

    let c = CACHE.load(Relaxed) as *const CacheRef<'static, Cpu>;
    // SAFETY: as in out_of_bounds_here.
    let c = unsafe { c.as_ref() }.ok_or("no test cache")?;
    let p = c.alloc(Gfp::KERNEL).map_err(|_| "alloc failed")?;
    let at = mte::untag(p.as_ptr() as usize);
    // SAFETY: p is live and not used again but for the access under test.
    unsafe { c.free(p) }.map_err(|_| "free refused")?;
    caught(
        rewrite_at(p.as_ptr().wrapping_add(1)),
        &[
            "BUG mte-uaf: MTE tag mismatch",
            &access("write", at + 1),
            &format!("use-after-free, offset 1 of freed object {at:#x} size 64"),
        ],
        "a write after free was not caught",
    )
}

pub fn small_object_on_every_core() -> R {
    if !tagging("small_object", true) {
        return Ok(());
    }
    conserving(|_| smp::run_on_all(small_object_here))
}

/// kmalloc(8) takes a whole granule under tagging, so its neighbour is a granule of its
/// own and a read one past the granule is caught.
fn small_object_here(_cpu: usize) -> R {
    let p = fenced_object(|| km(8, Gfp::KERNEL), kf, 16)?;
    ensure(
        kmem().ksize_any(p) == Ok(16),
        "a small object is not a granule",
    )?;
    let obj = format!("object {:#x} size 16", mte::untag(p as usize));
    caught(
        read_at(p.wrapping_add(16)),
        &[
            "kmalloc-16: MTE tag mismatch",
            &format!("0 bytes past the end of {obj}"),
        ],
        "a read past a small object was not caught",
    )?;
    kf(p)
}

/// One asynchronous mismatch on the boot core (the mode is the machine's, so not on
/// every core at once): recorded, then reported without an address.
pub fn asynchronous() -> R {
    if !tagging("asynchronous", false) {
        return Ok(());
    }
    let mode = mte::mode();
    mte::set_mode(Mode::Async);
    let r = (|| {
        let p = fenced_object(|| km(64, Gfp::KERNEL), kf, 64)?;
        let before = mte::faults_here();
        read_at(p.wrapping_add(64))();
        let found = mte::check_async("the self-test");
        kf(p)?;
        ensure(found, "an asynchronous mismatch was not recorded")?;
        ensure(
            mte::faults_here() == before + 1,
            "an asynchronous mismatch was not counted",
        )?;
        mte_fault::with_last_report(|t| {
            ensure(
                t.contains("MTE tag mismatch (async) on cpu 0, found at the self-test"),
                "the asynchronous report does not say what happened",
            )
        })
    })();
    mte::set_mode(mode);
    r
}
