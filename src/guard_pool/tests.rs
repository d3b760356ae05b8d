//! Host tests of the guard pool: placement, sampling, frees, fault reports, and a model
//! check of random operations, on an `mmap`ed pool protected with `mprotect`.

use proptest::prelude::*;

use super::*;
use crate::hosted::{GuardedPages, HostArch, Region};
use crate::test_log::{capture, logged};
use crate::{Kmem, Options, ZoneLimits};

/// An allocator over 16 MiB with a pool of `objects`, sampling one in `interval`.
fn kmem(objects: usize, interval: u32) -> (Kmem<HostArch>, &'static GuardedPages) {
    let ram = Box::leak(Box::new(Region::new(16 << 20).unwrap()));
    let map = ram.normalized().unwrap();
    // SAFETY: the region is leaked: the allocator's alone for the process's life.
    let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 2, None) }.unwrap();
    let options = Options {
        kfence: interval,
        ..Options::default()
    };
    let pool = GuardedPages::new(objects).unwrap();
    let k = Kmem::with_options(pages, options)
        .unwrap()
        .with_guard_pool(pool.memory())
        .unwrap();
    (k, pool)
}

fn sampled(k: &Kmem<HostArch>, size: usize) -> usize {
    k.sample_next();
    k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize
}

fn report(k: &Kmem<HostArch>, addr: usize, access: Access) -> GuardFault {
    match k.guard_pool_fault(addr, access, 0x1234) {
        Some(FaultOutcome::Reported(r)) => r,
        other => panic!("no report for {addr:#x}: {other:?}"),
    }
}

#[test]
fn objects_sit_against_the_right_guard_and_the_left_in_turn() {
    let (k, pool) = kmem(7, 0);
    assert!(
        k.guard_pool_info().is_none(),
        "kfence=0 leaves the pool alone"
    );
    let (k, pool2) = kmem(7, 1 << 30);
    let _ = pool;
    let right = sampled(&k, 64);
    let left = sampled(&k, 60);
    assert!(pool2.contains(right) && pool2.contains(left));
    assert_eq!(
        (right + 64) % POOL_PAGE,
        0,
        "ends against the guard after it"
    );
    assert_eq!(left % POOL_PAGE, 0, "starts against the guard before it");
    assert_ne!(right / POOL_PAGE, left / POOL_PAGE);
    // An alignment the right end does not give is kept by placing lower.
    let aligned = {
        k.sample_next();
        k.kmalloc_aligned(100, 64, Gfp::KERNEL).unwrap().as_ptr() as usize
    };
    assert_eq!(aligned % 64, 0);
    assert!(POOL_PAGE - aligned % POOL_PAGE < 164);
    // SAFETY: all three are live sampled objects, not used after.
    unsafe {
        assert_eq!(
            k.ksize(left as *mut u8),
            Ok(60),
            "ksize is the size asked for"
        );
        for p in [right, left, aligned] {
            k.kfree(p as *mut u8).unwrap();
        }
    }
    let info = k.guard_pool_info().unwrap();
    assert_eq!((info.sampled, info.allocated, info.objects), (3, 0, 7));
    assert_eq!(
        info.to_string(),
        format!(
            "kfence: 1 in {}, pool 7 objects, 0 allocated, 0 faults",
            1u32 << 30
        )
    );
}

#[test]
fn about_one_allocation_in_the_interval_is_sampled() {
    let (k, pool) = kmem(255, 100);
    let mut held = Vec::new();
    for _ in 0..10_000 {
        held.push(k.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr());
    }
    let in_pool = held.iter().filter(|&&p| pool.contains(p as usize)).count();
    // Counted a magazine's worth at a time: within one magazine of 1 in 100.
    assert!((60..=120).contains(&in_pool), "{in_pool} sampled of 10000");
    assert_eq!(k.guard_pool_info().unwrap().sampled, in_pool);
    for p in held {
        // SAFETY: each is live and freed once.
        unsafe { k.kfree(p) }.unwrap();
    }
    assert_eq!(k.guard_pool_info().unwrap().allocated, 0);
}

#[test]
fn a_double_or_interior_free_is_refused_and_reported() {
    capture();
    let (k, _pool) = kmem(3, 1 << 30);
    let p = sampled(&k, 64);
    // SAFETY: p is live; the refused frees change nothing; p is freed once.
    unsafe {
        assert!(matches!(
            k.kfree((p + 8) as *mut u8),
            Err(SlabError::Interior { offset: 8, .. })
        ));
        k.kfree(p as *mut u8).unwrap();
        assert!(matches!(
            k.kfree(p as *mut u8),
            Err(SlabError::DoubleFree { .. })
        ));
    }
    assert!(logged(&[
        "BUG: KFENCE: invalid free: Invalid free of",
        "size=64, cache=kmalloc-64",
        "freed by cpu"
    ]));
    assert_eq!(k.guard_pool_info().unwrap().bad_frees, 2);
}

#[test]
fn faults_are_classified_and_reported_in_kfence_words() {
    capture();
    let (k, pool) = kmem(3, 1 << 30);
    let right = sampled(&k, 64);
    let left = sampled(&k, 64);
    let r = report(&k, right + 64, Access::Write);
    assert_eq!(r.kind, GuardFaultKind::OutOfBoundsRight { distance: 1 });
    let text = r.to_string();
    assert!(
        text.starts_with("BUG: KFENCE: out-of-bounds write in pc 0x1234: Out-of-bounds write at"),
        "{text}"
    );
    assert!(text.contains("(1B right of kfence-#0 ["), "{text}");
    assert!(
        text.contains(", size=64, cache=kmalloc-64] allocated by cpu"),
        "{text}"
    );
    let r = report(&k, left - 1, Access::Read);
    assert_eq!(r.kind, GuardFaultKind::OutOfBoundsLeft { distance: 1 });
    assert!(r.to_string().contains("(1B left of kfence-#1"));
    // SAFETY: left is live and freed once; then only its (unmapped) page is reported on.
    unsafe { k.kfree(left as *mut u8) }.unwrap();
    let r = report(&k, left + 3, Access::Read);
    assert_eq!(r.kind, GuardFaultKind::UseAfterFree { offset: 3 });
    let text = r.to_string();
    assert!(
        text.contains("BUG: KFENCE: use-after-free read") && text.contains("freed by cpu"),
        "{text}"
    );
    // The fault mapped the page again: the access goes on (a protected page would kill
    // the test with SIGSEGV here).
    // SAFETY: the page is mapped read-write again and is the pool's.
    unsafe { ((left + 3) as *mut u8).write_volatile(1) };
    let wild = report(&k, pool.memory_base() + 5, Access::Write);
    assert_eq!(wild.kind, GuardFaultKind::Invalid);
    assert!(wild.object.is_none());
    assert!(logged(&[
        "BUG: KFENCE: invalid write in pc 0x1234: Invalid write at"
    ]));
    assert!(
        k.guard_pool_fault(right - POOL_PAGE * 64, Access::Read, 0)
            .is_none(),
        "outside the pool"
    );
    assert!(matches!(
        k.guard_pool_fault(right, Access::Read, 0),
        Some(FaultOutcome::Stale)
    ));
    assert_eq!(k.guard_pool_info().unwrap().faults, 4);
    // SAFETY: right is live and freed once.
    unsafe { k.kfree(right as *mut u8) }.unwrap();
}

#[test]
fn krealloc_moves_a_sampled_object_out_when_it_grows() {
    let (k, pool) = kmem(3, 1 << 30);
    let p = sampled(&k, 40);
    // SAFETY: p is live; only q is used after.
    let q = unsafe {
        (p as *mut u8).write_bytes(7, 40);
        let same = k.krealloc(p as *mut u8, 30, Gfp::KERNEL).unwrap();
        assert_eq!(same.as_ptr() as usize, p, "shrinking stays in place");
        k.krealloc(p as *mut u8, 48, Gfp::KERNEL).unwrap()
    };
    assert!(!pool.contains(q.as_ptr() as usize));
    // SAFETY: q holds the 40 bytes kept; it is freed once.
    unsafe {
        assert!(
            core::slice::from_raw_parts(q.as_ptr(), 40)
                .iter()
                .all(|&b| b == 7)
        );
        k.kfree(q.as_ptr()).unwrap();
    }
    assert_eq!(k.guard_pool_info().unwrap().allocated, 0);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize),
    DoubleFree(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..=POOL_PAGE).prop_map(Op::Alloc),
        (0usize..16).prop_map(Op::Free),
        (0usize..16).prop_map(Op::DoubleFree),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Against a model (the live sampled objects): every forced sample fits its page and
    /// overlaps nothing live until the pool is full, frees of live objects succeed, frees
    /// of freed ones are refused, and the counts agree.
    #[test]
    fn the_pool_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let (k, pool) = kmem(5, 1 << 30);
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut freed: Vec<usize> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(size) => {
                    let p = sampled(&k, size);
                    if live.len() < 5 {
                        prop_assert!(pool.contains(p));
                        prop_assert!(p % POOL_PAGE + size <= POOL_PAGE);
                        prop_assert!(live.iter().all(|&(q, _)| q / POOL_PAGE != p / POOL_PAGE));
                        freed.retain(|&f| f / POOL_PAGE != p / POOL_PAGE);
                        // SAFETY: p is live and `size` bytes long.
                        unsafe { (p as *mut u8).write_bytes(0xa5, size) };
                        live.push((p, size));
                    } else {
                        prop_assert!(!pool.contains(p), "a full pool leaves it to the slabs");
                        // SAFETY: p is live and freed once.
                        unsafe { k.kfree(p as *mut u8) }.unwrap();
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let (p, size) = live.swap_remove(i % live.len());
                    // SAFETY: p is live.
                    prop_assert_eq!(unsafe { k.ksize(p as *mut u8) }, Ok(size));
                    // SAFETY: p is live and freed once.
                    let r = unsafe { k.kfree(p as *mut u8) };
                    prop_assert!(r.is_ok());
                    freed.push(p);
                }
                Op::DoubleFree(i) if !freed.is_empty() => {
                    let p = freed[i % freed.len()];
                    // SAFETY: refused: p is not live, nothing changes.
                    let r = unsafe { k.kfree(p as *mut u8) };
                    prop_assert!(matches!(r, Err(SlabError::DoubleFree { .. })), "{:?}", r);
                }
                _ => {}
            }
            prop_assert_eq!(k.guard_pool_info().unwrap().allocated, live.len());
        }
        for (p, _) in live {
            // SAFETY: p is live and freed once.
            unsafe { k.kfree(p as *mut u8) }.unwrap();
        }
    }
}

#[test]
fn a_user_caches_objects_are_sampled_and_freed_only_through_it() {
    let (k, pool) = kmem(3, 1 << 30);
    let c = k
        .cache_create("sampled-cache", 40, 16, crate::SlabFlags::NONE, None, None)
        .unwrap();
    k.sample_next();
    let p = c.alloc(Gfp::KERNEL | Gfp::ZERO).unwrap();
    let a = p.as_ptr() as usize;
    assert!(pool.contains(a) && a.is_multiple_of(16));
    assert_eq!(
        k.guard_pool_object(0).unwrap().cache.as_str(),
        "sampled-cache"
    );
    // SAFETY: p is a live zeroed object of 40 bytes; the refused free changes nothing.
    unsafe {
        assert!(
            core::slice::from_raw_parts(p.as_ptr(), 40)
                .iter()
                .all(|&b| b == 0)
        );
        let other = k
            .cache_create("other-cache", 40, 16, crate::SlabFlags::NONE, None, None)
            .unwrap();
        assert!(matches!(other.free(p), Err(SlabError::WrongCache { .. })));
        other.destroy().map_err(|(_, e)| e).unwrap();
        c.free(p).unwrap();
    }
    // A constructor runs when a slab is made: such caches are not sampled.
    fn ctor(_: *mut u8) {}
    let with_ctor = k
        .cache_create(
            "ctor-cache",
            40,
            8,
            crate::SlabFlags::NONE,
            Some(ctor),
            None,
        )
        .unwrap();
    k.sample_next();
    let q = with_ctor.alloc(Gfp::KERNEL).unwrap();
    assert!(!pool.contains(q.as_ptr() as usize));
    // SAFETY: q is live and freed once.
    unsafe { with_ctor.free(q) }.unwrap();
    with_ctor.destroy().map_err(|(_, e)| e).unwrap();
    // A debug cache's own checks watch its objects: not sampled either.
    let debug = k
        .cache_create("debug-cache", 40, 8, crate::SlabFlags::RED_ZONE, None, None)
        .unwrap();
    k.sample_next();
    let d = debug.alloc(Gfp::KERNEL).unwrap();
    assert!(!pool.contains(d.as_ptr() as usize));
    // SAFETY: d is live and freed once.
    unsafe { debug.free(d) }.unwrap();
    debug.destroy().map_err(|(_, e)| e).unwrap();
    c.destroy().map_err(|(_, e)| e).unwrap();
}
