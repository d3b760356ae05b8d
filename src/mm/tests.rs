//! Tests of the page allocator on the hosted platform: layout, zones, errors, a proptest
//! model, and a multi-thread conservation run.

use super::*;
use crate::hosted::{HostArch, Region};
use crate::test_frees::PagesAny;
use buddy::NR_ORDERS;
use init::subtract;
use memmap::{MemoryMap, RegionKind};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Pages = PageAllocator<HostArch>;

const MIB: u64 = 1 << 20;

/// A region of `mib` MiB with DMA in its first 4 MiB and DMA32 up to 12 MiB.
fn zoned(mib: u64) -> (Region, ZoneLimits) {
    let r = Region::new((mib * MIB) as usize).unwrap();
    let limits = ZoneLimits {
        dma_end: r.start() + 4 * MIB,
        dma32_end: r.start() + 12 * MIB,
    };
    (r, limits)
}

fn pages(r: &Region, limits: ZoneLimits, cpus: usize) -> Pages {
    // SAFETY: the region is ours and outlives the allocator in every test.
    unsafe { Pages::new(&r.normalized().unwrap(), limits, cpus, None).unwrap() }
}

/// The maximal aligned decomposition of `[s, e)` frames, as block counts per order.
fn maximal_blocks(s: u64, e: u64, counts: &mut [u32; NR_ORDERS]) {
    let mut pfn = s;
    while pfn < e {
        let mut o = if pfn == 0 {
            MAX_ORDER
        } else {
            pfn.trailing_zeros().min(MAX_ORDER)
        };
        while pfn + (1 << o) > e {
            o -= 1;
        }
        counts[o as usize] += 1;
        pfn += 1 << o;
    }
}

/// After everything is freed: counts back to the initial figure and each zone covered by
/// maximal blocks.
fn assert_pristine(p: &Pages, initial_free: u64, limits: ZoneLimits) {
    p.drain_all_pcp();
    p.check();
    let info = p.info();
    assert_eq!(info.free_pages(), initial_free);
    let meta = (info.meta.start >> PAGE_SHIFT, info.meta.end >> PAGE_SHIFT);
    for z in ZoneKind::ALL {
        let mut want = [0u32; NR_ORDERS];
        let (zs, ze) = limits.span(z);
        for (s, e, _) in p.table().bank_spans() {
            for (ps, pe) in subtract((s, e), meta) {
                let (is, ie) = (ps.max(zs >> PAGE_SHIFT), pe.min(ze >> PAGE_SHIFT));
                if is < ie {
                    maximal_blocks(is, ie, &mut want);
                }
            }
        }
        assert_eq!(info.zones[z.index()].free_blocks, want, "zone {z}");
    }
}

#[test]
fn descriptor_is_24_bytes() {
    assert_eq!(size_of::<PageFrame>(), 24);
}

#[test]
fn init_covers_usable_memory_and_reports_metadata() {
    let (r, limits) = zoned(64);
    let p = pages(&r, limits, 4);
    let info = p.info();
    assert_eq!(info.frames as u64, r.size() / PAGE_SIZE);
    let meta_pages = info.meta.size() / PAGE_SIZE;
    assert_eq!(info.managed_pages() + meta_pages, r.size() / PAGE_SIZE);
    assert_eq!(info.free_pages(), info.managed_pages());
    assert_eq!(
        info.zones[0].managed_pages,
        4 * MIB / PAGE_SIZE - meta_pages
    );
    assert_eq!(info.zones[1].managed_pages, 8 * MIB / PAGE_SIZE);
    assert_eq!(info.zones[2].managed_pages, 52 * MIB / PAGE_SIZE);
    // Descriptors plus per-CPU lists stay under 0.8 % of managed memory.
    assert!(info.metadata_ppm() < 8_000, "{}", info.metadata_ppm());
    assert_pristine(&p, info.free_pages(), limits);
}

#[test]
fn metadata_goes_after_the_hint_on_a_2mib_boundary() {
    let (r, limits) = zoned(32);
    let hint = r.start() + 12 * MIB + 5;
    // SAFETY: the region is ours and outlives the allocator.
    let p = unsafe { Pages::new(&r.normalized().unwrap(), limits, 2, Some(hint)).unwrap() };
    assert_eq!(p.info().meta.start, r.start() + 14 * MIB);
    assert_eq!(p.info().zones[0].managed_pages, 4 * MIB / PAGE_SIZE);
}

#[test]
fn holes_between_banks_cost_no_descriptors() {
    let r = Region::new((64 * MIB) as usize).unwrap();
    let mut m = MemoryMap::new();
    m.add(RegionKind::Usable, r.start(), 8 * MIB).unwrap();
    m.add(RegionKind::Usable, r.start() + 40 * MIB, 8 * MIB)
        .unwrap();
    m.add(RegionKind::Reserved, r.start() + 41 * MIB, 4096)
        .unwrap();
    let n = m.normalize().unwrap();
    // SAFETY: the ranges lie inside our region.
    let p = unsafe { Pages::new(&n, ZoneLimits::FLAT, 1, None).unwrap() };
    let info = p.info();
    assert_eq!(info.frames as u64, 16 * MIB / PAGE_SIZE - 1);
    // Three banks (the reserved page splits the second range): the first two banks'
    // frames are found by their own lookups and the full one, the third's by the full
    // one alone.
    let (low, mid, high) = (
        r.start() + 4 * MIB,
        r.start() + 40 * MIB + 8192,
        r.start() + 44 * MIB,
    );
    let t = p.table();
    assert_eq!(
        t.frame_in_first_bank(low).map(|f| f.0),
        t.frame_of(low).map(|f| f.0)
    );
    assert_eq!(
        t.frame_in_second_bank(mid).map(|f| f.0),
        t.frame_of(mid).map(|f| f.0)
    );
    assert!(t.frame_in_first_bank(high).is_none() && t.frame_of(high).is_some());
    assert!(t.frame_in_first_bank(mid).is_none());
    for not_second in [low, r.start() + 20 * MIB, high] {
        assert!(t.frame_in_second_bank(not_second).is_none());
    }
    assert!(
        t.frame_of(r.start() + 20 * MIB).is_none(),
        "the hole has no descriptors"
    );
    // Nothing is ever handed out from the hole or the reserved page.
    let mut got = Vec::new();
    while let Ok(pa) = p.alloc_pages(0, Gfp::KERNEL) {
        assert!(n.usable().iter().any(|u| u.contains(pa)), "{pa:#x}");
        assert!(!info.meta.contains(pa));
        got.push(pa);
    }
    assert_eq!(got.len() as u64, info.managed_pages());
    for pa in got {
        p.free_pages_any(pa, 0).unwrap();
    }
    assert_pristine(&p, info.managed_pages(), ZoneLimits::FLAT);
}

#[test]
fn blocks_are_aligned_and_zeroed_on_request() {
    let (r, limits) = zoned(64);
    let p = pages(&r, limits, 1);
    for order in 0..=MAX_ORDER {
        let pa = p.alloc_pages(order, Gfp::ZERO).unwrap();
        assert_eq!(pa % (PAGE_SIZE << order), 0, "order {order}");
        // SAFETY: we own the block just allocated.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(pa as *mut u8, (PAGE_SIZE << order) as usize) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes.fill(0xAB);
        p.free_pages_any(pa, order).unwrap();
    }
    let pa = p.alloc_pages(3, Gfp::ZERO).unwrap();
    // SAFETY: as above.
    let bytes = unsafe { std::slice::from_raw_parts(pa as *const u8, 8 * 4096) };
    assert!(bytes.iter().all(|&b| b == 0), "ZERO after a dirty free");
    p.free_pages_any(pa, 3).unwrap();
}

#[test]
fn zone_constraints_fall_back_downward_only() {
    let (r, limits) = zoned(32);
    let p = pages(&r, limits, 1);
    let initial = p.info().free_pages();
    // DMA-only allocations come from DMA until it is exhausted, then fail.
    let mut dma = Vec::new();
    loop {
        match p.alloc_pages(0, Gfp::DMA) {
            Ok(pa) => {
                assert_eq!(limits.zone_of(pa), ZoneKind::Dma);
                dma.push(pa);
            }
            Err(e) => {
                assert_eq!(
                    e,
                    PageError::OutOfMemory {
                        order: 0,
                        zone: ZoneKind::Dma
                    }
                );
                break;
            }
        }
    }
    // DMA32 still has room: a DMA32 request never climbs into Normal.
    let mut rest = Vec::new();
    while let Ok(pa) = p.alloc_pages(4, Gfp::DMA32) {
        assert_eq!(limits.zone_of(pa), ZoneKind::Dma32);
        rest.push((pa, 4));
    }
    // Normal requests take Normal first, then fall back (DMA32 order-0 leftovers are
    // fine), and the last ones fail cleanly.
    let mut saw_normal = false;
    while let Ok(pa) = p.alloc_pages(0, Gfp::KERNEL) {
        saw_normal |= limits.zone_of(pa) == ZoneKind::Normal;
        rest.push((pa, 0));
    }
    assert!(saw_normal);
    assert_eq!(p.info().free_pages(), 0);
    // Freeing one DMA frame makes a DMA request succeed again.
    p.free_pages_any(dma.pop().unwrap(), 0).unwrap();
    let pa = p.alloc_pages(0, Gfp::DMA).unwrap();
    dma.push(pa);
    for pa in dma {
        p.free_pages_any(pa, 0).unwrap();
    }
    for (pa, o) in rest {
        p.free_pages_any(pa, o).unwrap();
    }
    assert_pristine(&p, initial, limits);
}

#[test]
fn bad_frees_are_refused_and_change_nothing() {
    let (r, limits) = zoned(16);
    let p = pages(&r, limits, 2);
    let initial = p.info().free_pages();
    let a = p.alloc_pages(2, Gfp::KERNEL).unwrap();
    let b = p.alloc_pages(0, Gfp::KERNEL).unwrap();

    assert_eq!(
        p.free_pages_any(a + 4096, 2),
        Err(PageError::NotBlockHead { addr: a + 4096 })
    );
    assert_eq!(
        p.free_pages_any(a + 8, 2),
        Err(PageError::Misaligned { addr: a + 8 })
    );
    assert_eq!(
        p.free_pages_any(a, 1),
        Err(PageError::OrderMismatch {
            addr: a,
            allocated: 2,
            freed: 1
        })
    );
    assert_eq!(
        p.free_pages_any(a, 0),
        Err(PageError::OrderMismatch {
            addr: a,
            allocated: 2,
            freed: 0
        })
    );
    assert_eq!(
        p.free_pages_any(a, MAX_ORDER + 1),
        Err(PageError::OrderTooLarge {
            order: MAX_ORDER + 1
        })
    );
    let outside = r.start() + r.size() + 4096 * 16;
    assert_eq!(
        p.free_pages_any(outside, 0),
        Err(PageError::NotManaged { addr: outside })
    );
    let meta = p.info().meta.start;
    assert_eq!(
        p.free_pages_any(meta, 0),
        Err(PageError::NotManaged { addr: meta })
    );
    assert_eq!(
        p.alloc_pages(MAX_ORDER + 1, Gfp::KERNEL),
        Err(PageError::OrderTooLarge {
            order: MAX_ORDER + 1
        })
    );

    // A block the slab layer owns is refused.
    p.frame(a).unwrap().set_owner(0xdead0);
    assert_eq!(p.free_pages_any(a, 2), Err(PageError::Owned { addr: a }));
    p.frame(a).unwrap().set_owner(0);

    p.free_pages_any(a, 2).unwrap();
    assert_eq!(
        p.free_pages_any(a, 2),
        Err(PageError::DoubleFree { addr: a })
    );
    p.free_pages_any(b, 0).unwrap();
    assert_eq!(
        p.free_pages_any(b, 0),
        Err(PageError::DoubleFree { addr: b })
    );
    p.check();
    // Still works, and nothing leaked.
    let c = p.alloc_pages(5, Gfp::KERNEL).unwrap();
    p.free_pages_any(c, 5).unwrap();
    assert_pristine(&p, initial, limits);
}

/// Blocks of every order the per-CPU lists cache: a block held on a list is refused on a
/// second free (at its order or another), and a list's blocks come back on drain.
#[test]
fn per_cpu_cached_blocks_of_every_order_refuse_double_frees() {
    let (r, limits) = zoned(32);
    let p = pages(&r, limits, 2);
    let initial = p.info().free_pages();
    for order in pcp::PCP_ORDERS {
        let a = p.alloc_pages(order, Gfp::KERNEL).unwrap();
        assert!(
            a.is_multiple_of(PAGE_SIZE << order),
            "order {order} aligned"
        );
        p.free_pages_any(a, order).unwrap();
        assert_eq!(
            p.free_pages_any(a, order),
            Err(PageError::DoubleFree { addr: a })
        );
        let other = if order == 0 { 1 } else { order - 1 };
        assert_eq!(
            p.free_pages_any(a, other),
            Err(PageError::DoubleFree { addr: a })
        );
        // The hot block comes straight back from this CPU's list.
        assert_eq!(p.alloc_pages(order, Gfp::KERNEL), Ok(a));
        p.free_pages_any(a, order).unwrap();
    }
    assert!(p.info().zones.iter().map(|z| z.pcp_pages).sum::<u64>() > 0);
    assert_pristine(&p, initial, limits);
}

#[test]
fn out_of_memory_is_an_error_and_everything_comes_back() {
    let (r, limits) = zoned(16);
    let p = pages(&r, limits, 3);
    let initial = p.info().free_pages();
    let mut held = Vec::new();
    for order in (0..=MAX_ORDER).rev() {
        while let Ok(pa) = p.alloc_pages(order, Gfp::KERNEL) {
            held.push((pa, order));
        }
        assert!(matches!(
            p.alloc_pages(order, Gfp::KERNEL),
            Err(PageError::OutOfMemory { .. })
        ));
    }
    assert_eq!(p.info().free_pages(), 0);
    for (pa, o) in held {
        p.free_pages_any(pa, o).unwrap();
    }
    assert_pristine(&p, initial, limits);
    // The whole zone is allocatable again: a maximal block comes out.
    let big = p.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap();
    p.free_pages_any(big, MAX_ORDER).unwrap();
}

#[test]
fn init_errors() {
    let r = Region::new((4 * MIB) as usize).unwrap();
    // SAFETY: the region is ours.
    unsafe {
        assert_eq!(
            Pages::new(&r.normalized().unwrap(), ZoneLimits::FLAT, 0, None).err(),
            Some(InitError::NoCpus)
        );
    }
    let mut m = MemoryMap::new();
    m.add(RegionKind::Usable, r.start(), 4096).unwrap();
    // One frame cannot hold its own descriptor plus the per-CPU lists of 64 CPUs.
    // SAFETY: the range lies inside our region.
    let e = unsafe { Pages::new(&m.normalize().unwrap(), ZoneLimits::FLAT, 64, None).err() };
    assert!(
        matches!(e, Some(InitError::NoRoomForMetadata { .. })),
        "{e:?}"
    );
}

#[test]
fn frees_from_other_threads_and_more_threads_than_cpus() {
    let (r, limits) = zoned(64);
    let p = pages(&r, limits, 2);
    let initial = p.info().free_pages();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(u64, u32)>>();
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        for t in 0..5u64 {
            let tx = tx.clone();
            let p = &p;
            s.spawn(move || {
                let mut rng = t * 7919 + 1;
                for _ in 0..200 {
                    let mut batch = Vec::new();
                    for _ in 0..20 {
                        rng = rng
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let order = [0, 0, 0, 1, 3][(rng >> 60) as usize % 5];
                        let gfp = [Gfp::KERNEL, Gfp::DMA32, Gfp::DMA][(rng >> 50) as usize % 3];
                        if let Ok(pa) = p.alloc_pages(order, gfp) {
                            // SAFETY: we own this block.
                            unsafe { (pa as *mut u64).write(pa ^ t) };
                            batch.push((pa, order));
                        }
                    }
                    tx.send(batch).unwrap();
                }
            });
        }
        drop(tx);
        // Two consumers free what the producers allocated.
        for _ in 0..2 {
            let (p, rx) = (&p, &rx);
            s.spawn(move || {
                loop {
                    let Ok(batch) = rx.lock().unwrap().recv() else {
                        break;
                    };
                    for (pa, o) in batch {
                        p.free_pages_any(pa, o).unwrap();
                    }
                }
            });
        }
    });
    assert_pristine(&p, initial, limits);
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Alloc { order: u32, zone: u8 },
    Free { pick: usize },
    BadFree { pick: usize, how: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (prop_oneof![6 => 0u32..=2, 3 => 3u32..=6, 1 => 7u32..=MAX_ORDER], 0u8..3)
            .prop_map(|(order, zone)| Op::Alloc { order, zone }),
        4 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(pick, how)| Op::BadFree { pick, how }),
    ]
}

// Miri runs the same model, smaller: it interprets every instruction.
const MODEL_CASES: u32 = if cfg!(miri) { 2 } else { 64 };
const MODEL_OPS: usize = if cfg!(miri) { 150 } else { 2_000 };

proptest! {
    #![proptest_config(ProptestConfig { cases: MODEL_CASES, ..ProptestConfig::default() })]

    /// Random alloc/free against a model: blocks never overlap, stay in usable memory and
    /// their zone, are aligned; a pattern in each block survives until its free; bad frees
    /// are refused; after freeing all, the allocator is as it started.
    /// MODEL_CASES × MODEL_OPS = 128 000 operations per run.
    #[test]
    fn buddy_model(ops in proptest::collection::vec(op(), MODEL_OPS)) {
        let (r, limits) = zoned(24);
        let p = pages(&r, limits, 2);
        let initial = p.info().free_pages();
        let meta = p.info().meta;
        // Live blocks by start address: (order, pattern).
        let mut live: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
        let mut stamp = 0u64;
        for op in ops {
            match op {
                Op::Alloc { order, zone } => {
                    let gfp = [Gfp::DMA, Gfp::DMA32, Gfp::KERNEL][zone as usize];
                    let Ok(pa) = p.alloc_pages(order, gfp) else { continue };
                    let size = PAGE_SIZE << order;
                    prop_assert_eq!(pa % size, 0);
                    prop_assert!(pa >= r.start() && pa + size <= r.start() + r.size());
                    prop_assert!(pa + size <= meta.start || pa >= meta.end);
                    prop_assert!(limits.zone_of(pa) <= gfp.zone());
                    prop_assert_eq!(limits.zone_of(pa), limits.zone_of(pa + size - 1));
                    if let Some((&s, &(o, _))) = live.range(..=pa).next_back() {
                        prop_assert!(s + (PAGE_SIZE << o) <= pa, "overlap");
                    }
                    if let Some((&s, _)) = live.range(pa..).next() {
                        prop_assert!(pa + size <= s, "overlap");
                    }
                    stamp += 1;
                    fill(pa, size, stamp);
                    live.insert(pa, (order, stamp));
                }
                Op::Free { pick } => {
                    if live.is_empty() { continue }
                    let (&pa, &(order, s)) = live.iter().nth(pick % live.len()).unwrap();
                    prop_assert!(intact(pa, PAGE_SIZE << order, s), "pattern damaged at {:#x}", pa);
                    p.free_pages_any(pa, order).unwrap();
                    live.remove(&pa);
                }
                Op::BadFree { pick, how } => {
                    if live.is_empty() { continue }
                    let (&pa, &(order, _)) = live.iter().nth(pick % live.len()).unwrap();
                    let r = match how {
                        0 if order > 0 => p.free_pages_any(pa + PAGE_SIZE, order),
                        1 => p.free_pages_any(pa, (order + 1) % (MAX_ORDER + 1)),
                        _ => p.free_pages_any(pa + 16, order),
                    };
                    prop_assert!(r.is_err());
                }
            }
        }
        for (pa, (order, s)) in live {
            prop_assert!(intact(pa, PAGE_SIZE << order, s));
            p.free_pages_any(pa, order).unwrap();
        }
        assert_pristine(&p, initial, limits);
    }
}

fn fill(pa: u64, size: u64, stamp: u64) {
    // SAFETY: the block [pa, pa + size) was just allocated to the test.
    let words = unsafe { std::slice::from_raw_parts_mut(pa as *mut u64, (size / 8) as usize) };
    // First and last word of every page keeps the test fast on big blocks.
    for page in words.chunks_mut(512) {
        page[0] = stamp;
        page[511] = !stamp;
    }
}

fn intact(pa: u64, size: u64, stamp: u64) -> bool {
    // SAFETY: the block is live and owned by the test.
    let words = unsafe { std::slice::from_raw_parts(pa as *const u64, (size / 8) as usize) };
    words.chunks(512).all(|p| p[0] == stamp && p[511] == !stamp)
}
