//! Magazines, bulk calls and reservations: conservation, all-or-nothing allocation, and
//! the fault catalogue's cases for them — a double free while the object sits in a
//! magazine or the depot, a bulk free with a foreign or repeated pointer in the middle,
//! an object taken from a reservation freed twice.

use super::*;

fn live(h: &Heap, size: usize) -> usize {
    h.kmem
        .kmalloc_cache_for(size, 8, Gfp::KERNEL)
        .unwrap()
        .info()
        .active_objs
}

#[test]
fn bulk_calls_conserve_objects_and_pages() {
    let h = heap(64, 2);
    let before = h.free_pages();
    // More than a CPU's two magazines and the depot hold: the rest comes off the slabs.
    let mut objs = vec![core::ptr::null_mut(); 5000];
    h.kmem.kmalloc_bulk(64, Gfp::KERNEL, &mut objs).unwrap();
    let mut sorted = objs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), objs.len(), "every object handed out once");
    assert!(objs.iter().all(|&p| h.contains(p as usize, 64)));
    assert_eq!(live(&h, 64), 5000);
    for &p in &objs {
        // SAFETY: each object is ours, 64 bytes.
        unsafe { p.write_bytes(0xA5, 64) };
    }
    h.kmem.kfree_bulk_any(&objs).unwrap();
    assert_eq!(live(&h, 64), 0);
    assert_eq!(h.kmem.validate(None), Some(0));
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

#[test]
fn bulk_allocation_is_all_or_nothing() {
    let h = heap(16, 1);
    let before = h.free_pages();
    // 16 MiB cannot hold 20 000 KiB-blocks.
    let mut objs = vec![core::ptr::null_mut(); 20_000];
    let e = h
        .kmem
        .kmalloc_bulk(1024, Gfp::KERNEL, &mut objs)
        .unwrap_err();
    assert!(matches!(e, SlabError::OutOfMemory { .. }), "{e}");
    assert_eq!(live(&h, 1024), 0, "every object taken went back");
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
    // And the allocator still serves a batch that fits.
    h.kmem
        .kmalloc_bulk(1024, Gfp::KERNEL, &mut objs[..100])
        .unwrap();
    h.kmem.kfree_bulk_any(&objs[..100]).unwrap();
}

#[test]
fn a_bulk_free_refuses_a_foreign_pointer_and_frees_the_rest() {
    capture_log();
    let h = heap(32, 2);
    let mut objs = [core::ptr::null_mut(); 6];
    h.kmem.kmalloc_bulk(96, Gfp::KERNEL, &mut objs).unwrap();
    let mut foreign = [0u64; 16];
    let batch = [
        objs[0],
        objs[1],
        foreign.as_mut_ptr().cast(),
        objs[2],
        objs[3],
        objs[2], // repeated: freed once, refused the second time
        objs[4],
        objs[5],
    ];
    let e = h.kmem.kfree_bulk_any(&batch).unwrap_err();
    assert!(
        matches!(e, SlabError::NotOwned { .. }),
        "the first refusal: {e}"
    );
    assert!(logged("kfree_bulk: free of"));
    assert!(logged("double free of object"));
    assert_eq!(live(&h, 96), 0, "every live object was freed");
    assert_eq!(h.kmem.validate(None), Some(0), "none twice");
    for p in objs {
        assert!(matches!(
            h.kmem.kfree_any(p),
            Err(SlabError::DoubleFree { .. })
        ));
    }
}

#[test]
fn a_cache_bulk_free_refuses_another_caches_objects() {
    capture_log();
    let h = heap(32, 2);
    let a = h
        .kmem
        .cache_create("bulk-a", 72, 8, SlabFlags::NONE, None, None)
        .unwrap();
    let b = h
        .kmem
        .cache_create("bulk-b", 72, 8, SlabFlags::NONE, None, None)
        .unwrap();
    let mut objs = [core::ptr::null_mut(); 4];
    a.alloc_bulk(Gfp::KERNEL, &mut objs[..3]).unwrap();
    b.alloc_bulk(Gfp::KERNEL, &mut objs[3..]).unwrap();
    objs.swap(1, 3);
    let e = a.free_bulk_any(&objs).unwrap_err();
    assert!(matches!(e, SlabError::WrongCache { .. }), "{e}");
    assert_eq!(a.cache().info().active_objs, 0);
    assert_eq!(
        b.cache().info().active_objs,
        1,
        "b's object stays allocated"
    );
    b.free_bulk_any(&objs[1..2]).unwrap();
    assert!(a.destroy().is_ok());
    assert!(b.destroy().is_ok());
}

/// Two CPUs free more than their magazines hold: full magazines go to the depot, where a
/// second free of one of their objects is still refused.
#[test]
fn a_double_free_while_the_object_is_in_the_depot_is_refused() {
    capture_log();
    let h = heap(64, 2);
    let mut objs = vec![core::ptr::null_mut(); 1000];
    h.kmem.kmalloc_bulk(64, Gfp::KERNEL, &mut objs).unwrap();
    h.kmem.kfree_bulk_any(&objs).unwrap();
    let info = h.kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().info();
    assert!(info.depot_full > 0, "{info}");
    // The oldest frees went furthest: to the depot or the slabs.
    for &p in objs.iter().take(200) {
        assert!(matches!(
            h.kmem.kfree_any(p),
            Err(SlabError::DoubleFree { .. })
        ));
    }
    assert_eq!(h.kmem.validate(None), Some(0));
}

#[test]
fn a_reservation_cannot_fail_and_gives_back_what_is_not_taken() {
    capture_log();
    let h = heap(32, 2);
    let mut r = h.kmem.kmalloc_reserve::<8>(200, Gfp::KERNEL).unwrap();
    assert_eq!(live(&h, 200), 8);
    let p = r.take().unwrap();
    let q = r.take().unwrap();
    assert_ne!(p, q);
    assert_eq!(r.len(), 6);
    drop(r);
    assert_eq!(live(&h, 200), 2, "the six not taken went back");
    h.kmem.kfree_any(p.as_ptr()).unwrap();
    // An object taken from a reservation, freed twice: refused as any other.
    assert!(matches!(
        h.kmem.kfree_any(p.as_ptr()),
        Err(SlabError::DoubleFree { .. })
    ));
    h.kmem.kfree_any(q.as_ptr()).unwrap();
    assert_eq!(live(&h, 200), 0);
}

#[test]
fn reservations_and_bulk_calls_work_on_debug_caches() {
    capture_log();
    let h = heap(32, 2);
    let c = h
        .kmem
        .cache_create(
            "bulk-debug",
            100,
            8,
            SlabFlags::RED_ZONE | SlabFlags::POISON,
            None,
            None,
        )
        .unwrap();
    let mut objs = [core::ptr::null_mut(); 40];
    c.alloc_bulk(Gfp::KERNEL | Gfp::ZERO, &mut objs).unwrap();
    // SAFETY: each object is ours, 100 zeroed bytes.
    assert!(objs.iter().all(|&p| unsafe { p.add(99).read() } == 0));
    let mut r = c.reserve::<3>(Gfp::KERNEL).unwrap();
    let p = r.take().unwrap();
    drop(r);
    c.free_bulk_any(&objs).unwrap();
    c.free_any(p).unwrap();
    assert_eq!(c.cache().reports(), 0);
    assert!(c.destroy().is_ok());
}

/// Four threads mix bulk and single calls on shared caches while magazines move through
/// the depot; every object is handed out once at a time and all come back.
#[test]
fn threads_mixing_bulk_and_single_calls_lose_nothing() {
    let h = heap(64, 4);
    let before = h.free_pages();
    let k = &*h.kmem;
    std::thread::scope(|s| {
        for t in 0..4usize {
            s.spawn(move || {
                let mut objs = vec![core::ptr::null_mut(); 300];
                for round in 0..200 {
                    let size = [16, 64, 200][(t + round) % 3];
                    let n = 1 + (round * 37 + t) % 300;
                    k.kmalloc_bulk(size, Gfp::KERNEL, &mut objs[..n]).unwrap();
                    for &p in &objs[..n] {
                        // SAFETY: each object is ours, `size` bytes; the stamp finds
                        // an object handed to two owners.
                        unsafe { p.cast::<usize>().write(p as usize ^ t) };
                    }
                    let singles: Vec<_> = (0..n / 3)
                        .map(|_| k.kmalloc(size, Gfp::KERNEL).unwrap())
                        .collect();
                    for &p in &objs[..n] {
                        // SAFETY: as above.
                        assert_eq!(unsafe { p.cast::<usize>().read() }, p as usize ^ t);
                    }
                    let split = n / 2;
                    k.kfree_bulk_any(&objs[..split]).unwrap();
                    for p in singles {
                        k.kfree_any(p.as_ptr()).unwrap();
                    }
                    for &p in &objs[split..n] {
                        k.kfree_any(p).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(k.validate(None), Some(0));
    k.shrink_all();
    assert_eq!(h.free_pages(), before);
}
