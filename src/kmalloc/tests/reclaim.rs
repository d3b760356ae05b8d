//! Reclaim: caches give back what they hold free — magazines, depots, kept empty slabs —
//! when pages run short, whoever asks (a slab growing, `cache_create`, `alloc_pages`), and a
//! small zone's kmalloc arrays fit their share of it.

use super::*;

/// `cache_create` takes its arrays' block through the same reclaim as slabs: with every
/// free page taken and the memory it needs parked in a CPU's magazine, it still succeeds.
#[test]
fn cache_create_takes_back_objects_parked_in_arrays() {
    let h = heap(16, 1);
    let before = h.free_pages();
    // Two 1 MiB objects: one parked in the array of its class, one back on its slab.
    let p = h.kmem.kmalloc(1 << 20, Gfp::KERNEL).unwrap();
    h.kmem.kfree_any(p.as_ptr()).unwrap();
    let parked = |h: &Heap| {
        let c = h.kmem.kmalloc_cache_for(1 << 20, 8, Gfp::KERNEL).unwrap();
        c.info().cpu_cached
    };
    assert_eq!(parked(&h), 1);
    let mut taken = Vec::new();
    while let Ok(pa) = h.kmem.pages().alloc_pages(0, Gfp::KERNEL) {
        taken.push(pa);
    }
    let c = h
        .kmem
        .cache_create("late", 200, 8, SlabFlags::NONE, None, None)
        .expect("the parked object's slab makes room for the arrays");
    assert_eq!(parked(&h), 0);
    c.destroy().map_err(|(_, e)| e).unwrap();
    for pa in taken {
        h.kmem.pages().free_pages_any(pa, 0).unwrap();
    }
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

/// 10 000 objects of 64 B allocated and freed: their slabs (157 pages) stay with the
/// cache, within its keep of 1/64 of the 40 MiB Normal zone. Returns the pages free
/// before the burst and the pages the cache kept.
fn burst_of_64_byte_objects(h: &Heap) -> (u64, u64) {
    let before = h.free_pages();
    let objs: Vec<_> = (0..10_000)
        .map(|_| h.kmem.kmalloc(64, Gfp::KERNEL).unwrap())
        .collect();
    for p in objs {
        h.kmem.kfree_any(p.as_ptr()).unwrap();
    }
    let kept = before - h.free_pages();
    assert!(
        kept >= 140,
        "the emptied slabs stay formatted: {kept} pages"
    );
    (before, kept)
}

/// Pages of the 64 B cache's slabs that hold objects parked in its arrays (which reclaim
/// drains too, unless their locks are busy; these tests allow for them staying): LIFO
/// frees park runs of neighbours, so the objects' count in slabs of 64, plus one slab at
/// each end of the runs (the CPU's magazines and the depot's).
fn parked_64_byte_slabs(h: &Heap) -> u64 {
    let info = h.kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().info();
    ((info.cpu_cached + info.depot_full * info.magazine).div_ceil(64) + 4) as u64
}

#[test]
fn pages_run_short_take_back_the_empty_slabs_caches_keep() {
    let h = heap(64, 2);
    let (before, kept) = burst_of_64_byte_objects(&h);
    let mut got = Vec::new();
    while let Ok(pa) = h.kmem.alloc_pages(0, Gfp::KERNEL) {
        got.push(pa);
    }
    // Only slabs holding objects parked in the arrays stay behind.
    let missing = before - got.len() as u64;
    let parked = parked_64_byte_slabs(&h);
    assert!(
        missing <= parked,
        "{missing} of the {kept} kept pages not taken back ({parked} parked)"
    );
    for pa in got {
        h.kmem.pages().free_pages_any(pa, 0).unwrap();
    }
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

/// `Kmem::alloc_pages` reclaims only when the page allocator is out of memory; any other
/// refusal (an order past the largest) comes back as the page allocator gave it.
#[test]
fn alloc_pages_passes_errors_other_than_out_of_memory_through() {
    use crate::mm::MAX_ORDER;
    let h = heap(16, 1);
    assert_eq!(
        h.kmem.alloc_pages(MAX_ORDER + 1, Gfp::KERNEL),
        Err(PageError::OrderTooLarge {
            order: MAX_ORDER + 1
        })
    );
    let mut got = Vec::new();
    while let Ok(pa) = h.kmem.alloc_pages(MAX_ORDER, Gfp::KERNEL) {
        got.push(pa);
    }
    assert!(matches!(
        h.kmem.alloc_pages(MAX_ORDER, Gfp::KERNEL),
        Err(PageError::OutOfMemory { .. })
    ));
    for pa in got {
        h.kmem.pages().free_pages_any(pa, MAX_ORDER).unwrap();
    }
}

#[test]
fn a_growing_cache_takes_back_other_caches_empty_slabs() {
    let h = heap(64, 2);
    let (before, kept) = burst_of_64_byte_objects(&h);
    // The 1 KiB cache grows under its own node lock until nothing is left; the 64 B
    // cache's lock is free, so its empty slabs come back to it.
    let mut got = Vec::new();
    while let Ok(p) = h.kmem.kmalloc(1024, Gfp::KERNEL) {
        got.push(p);
    }
    // Besides the arrays' slabs: the last slab's rest and one refill in the 1 KiB array.
    let missing = before - (got.len() * 1024 / PAGE_SIZE as usize) as u64;
    let parked = parked_64_byte_slabs(&h);
    assert!(
        missing <= parked + 16,
        "{missing} of the {kept} kept pages not taken back ({parked} parked)"
    );
    for p in got {
        h.kmem.kfree_any(p.as_ptr()).unwrap();
    }
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

#[test]
fn a_small_zones_arrays_fit_its_share_down_to_the_floor_and_caches_made_later_share_its_scale() {
    // 2 CPUs: DMA 8 MiB, DMA32 16 MiB, Normal 104 MiB.
    let h = heap(128, 2);
    let limit = |size, gfp| h.kmem.kmalloc_cache_for(size, 8, gfp).unwrap().info().limit;
    assert_eq!(limit(64, Gfp::KERNEL), 2 * MAG_MAX);
    let dma32 = limit(64, Gfp::DMA32);
    assert!(
        (2 * (MAG_MAX / 8) + 1..2 * MAG_MAX).contains(&dma32),
        "{dma32}"
    );
    // The scaled part — each CPU's magazines and the depot's — within the 16 MiB
    // zone's 1/256 (slots and line rounding come on top).
    let entries: usize = CLASS_SIZES
        .iter()
        .map(|&s| {
            let i = h
                .kmem
                .kmalloc_cache_for(s as usize, 8, Gfp::DMA32)
                .unwrap()
                .info();
            2 * i.limit + (i.depot_full + i.depot_empty) * i.magazine
        })
        .sum();
    assert!(entries * 8 <= 16 * MIB / ARRAY_SHARE, "{entries} entries");
    // The 8 MiB zone's share would give less than an eighth: it gets the floor, arrays
    // that still batch, not arrays of one object.
    let dma = limit(64, Gfp::DMA);
    assert_eq!(dma, 2 * (MAG_MAX / 8));
    for (name, flags, want) in [
        ("dma-objects", SlabFlags::DMA, dma),
        ("dma32-objects", SlabFlags::DMA32, dma32),
    ] {
        let c = h.kmem.cache_create(name, 64, 8, flags, None, None).unwrap();
        assert_eq!(c.cache().info().limit, want, "{name}");
        assert!(c.destroy().is_ok());
    }
}
