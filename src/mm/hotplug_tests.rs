//! Tests of regions added and removed at run time: every bad input refused with nothing
//! changed, zones and buddies across region ends, the out-of-memory hook, and a 4-thread
//! stress run that adds and removes regions while allocating and checks conservation.

use super::*;
use crate::hosted::{HostArch, Region};
use crate::kmalloc::Kmem;
use crate::mm::MAX_ORDER;
use crate::mm::zone::ZoneLimits;
use crate::test_frees::PagesAny;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

type Pages = PageAllocator<HostArch>;

const MIB: u64 = 1 << 20;

/// An allocator over the first `boot` MiB of a `total`-MiB region (the rest is left for
/// the test to add), with DMA up to 12 MiB and DMA32 up to 20 MiB into it.
fn split(total: u64, boot: u64, cpus: usize) -> (Region, Pages, ZoneLimits) {
    let r = Region::new((total * MIB) as usize).unwrap();
    let limits = ZoneLimits {
        dma_end: r.start() + 12 * MIB,
        dma32_end: r.start() + 20 * MIB,
    };
    let mut map = crate::mm::memmap::MemoryMap::new();
    map.add(crate::RegionKind::Usable, r.start(), boot * MIB)
        .unwrap();
    // SAFETY: the region is ours and outlives the allocator in every test.
    let p = unsafe { Pages::new(&map.normalize().unwrap(), limits, cpus, None).unwrap() };
    (r, p, limits)
}

fn range(r: &Region, from_mib: u64, to_mib: u64) -> PhysRange {
    PhysRange {
        start: r.start() + from_mib * MIB,
        end: r.start() + to_mib * MIB,
    }
}

fn add(p: &Pages, range: PhysRange) -> Result<(), HotplugError> {
    // SAFETY: every range the tests add lies in their own Region, outside the boot map
    // unless the call is meant to be refused, and is removed before the Region drops.
    unsafe { p.add_region(range) }
}

/// Figures that must not move when a call is refused.
fn snapshot(p: &Pages) -> (u64, u64, u32, u32) {
    p.drain_all_pcp();
    p.check();
    let i = p.info();
    (i.managed_pages(), i.free_pages(), i.frames, i.hot_regions)
}

#[test]
fn bad_ranges_are_refused_and_change_nothing() {
    let (r, p, _) = split(32, 8, 1);
    let ok = range(&r, 16, 24);
    add(&p, ok).unwrap();
    let before = snapshot(&p);
    let s = r.start();
    let cases = [
        (
            PhysRange {
                start: s + 9 * MIB,
                end: s + 9 * MIB,
            },
            HotplugError::ZeroLength { start: s + 9 * MIB },
        ),
        (
            PhysRange {
                start: s + 10 * MIB,
                end: s + 9 * MIB,
            },
            HotplugError::ZeroLength {
                start: s + 10 * MIB,
            },
        ),
    ];
    for (rg, want) in cases {
        assert_eq!(add(&p, rg), Err(want));
    }
    let odd = PhysRange {
        start: s + 9 * MIB + 512,
        end: s + 10 * MIB,
    };
    assert_eq!(add(&p, odd), Err(HotplugError::Unaligned { range: odd }));
    let odd_end = PhysRange {
        start: s + 9 * MIB,
        end: s + 10 * MIB - 8,
    };
    assert_eq!(
        add(&p, odd_end),
        Err(HotplugError::Unaligned { range: odd_end })
    );
    let boot = range(&r, 0, 8);
    let inside = range(&r, 2, 3);
    assert_eq!(
        add(&p, inside),
        Err(HotplugError::AlreadyManaged {
            range: inside,
            within: boot
        })
    );
    let across = range(&r, 7, 9);
    assert_eq!(
        add(&p, across),
        Err(HotplugError::Overlaps {
            range: across,
            with: boot
        })
    );
    assert_eq!(
        add(&p, ok),
        Err(HotplugError::AlreadyManaged {
            range: ok,
            within: ok
        })
    );
    let over_hot = range(&r, 23, 25);
    assert_eq!(
        add(&p, over_hot),
        Err(HotplugError::Overlaps {
            range: over_hot,
            with: ok
        })
    );
    let one_page = PhysRange {
        start: s + 9 * MIB,
        end: s + 9 * MIB + PAGE_SIZE,
    };
    assert_eq!(
        add(&p, one_page),
        Err(HotplugError::TooSmall { range: one_page })
    );
    let huge = PhysRange {
        start: 1 << 50,
        end: (1 << 50) + (256 << 30),
    };
    assert_eq!(add(&p, huge), Err(HotplugError::TooLarge { range: huge }));
    // Removals of what is not a region added at run time.
    for rg in [boot, range(&r, 16, 20), range(&r, 8, 16), range(&r, 16, 25)] {
        assert_eq!(
            p.remove_region(rg),
            Err(HotplugError::NotARegion { range: rg })
        );
    }
    assert_eq!(snapshot(&p), before);
    // Pages in use: counted exactly, nothing changes.
    let mut held = Vec::new();
    while let Ok(pa) = p.alloc_pages(0, Gfp::KERNEL) {
        held.push(pa);
    }
    let in_region = held
        .iter()
        .filter(|&&pa| pa >= ok.start && pa < ok.end)
        .count();
    let full = snapshot(&p);
    assert_eq!(
        p.remove_region(ok),
        Err(HotplugError::PagesInUse {
            range: ok,
            count: in_region as u64
        })
    );
    assert_eq!(snapshot(&p), full);
    for pa in held {
        p.free_pages_any(pa, 0).unwrap();
    }
    assert_eq!(snapshot(&p), before);
    p.remove_region(ok).unwrap();
    assert_eq!(
        p.remove_region(ok),
        Err(HotplugError::NotARegion { range: ok })
    );
    let (m, f, _, n) = snapshot(&p);
    assert_eq!(
        (m, f, n),
        (
            before.0 - (ok.size() / PAGE_SIZE - meta_frames(2048)),
            before.1 - (ok.size() / PAGE_SIZE - meta_frames(2048)),
            0
        )
    );
    // Every message names the range.
    assert!(
        HotplugError::PagesInUse {
            range: ok,
            count: 3
        }
        .to_string()
        .contains("3 pages still in use")
    );
}

#[test]
fn slots_run_out_with_an_error() {
    let (r, p, _) = split(8 + 2 * MAX_HOT as u64 + 2, 8, 1);
    for k in 0..MAX_HOT as u64 {
        add(&p, range(&r, 8 + 2 * k, 10 + 2 * k)).unwrap();
    }
    let last = range(&r, 8 + 2 * MAX_HOT as u64, 10 + 2 * MAX_HOT as u64);
    assert_eq!(
        add(&p, last),
        Err(HotplugError::NoFreeSlot { max: MAX_HOT })
    );
    p.remove_region(range(&r, 12, 14)).unwrap();
    add(&p, last).unwrap(); // the freed slot serves again
    p.check();
    p.for_each_region(|rg| p.remove_region(rg).unwrap());
    assert_eq!(p.info().hot_regions, 0);
}

#[test]
fn a_region_joins_its_zones_and_its_blocks_stay_inside_it() {
    // Boot memory [0, 8) MiB; the region [8, 32) crosses DMA (to 12) and DMA32 (to 20),
    // and lies right after the boot bank: no block may merge across the boundary.
    let (r, p, limits) = split(32, 8, 2);
    let initial = snapshot(&p);
    let rg = range(&r, 8, 32);
    add(&p, rg).unwrap();
    let meta = meta_frames(rg.size() / PAGE_SIZE);
    let info = p.info();
    assert_eq!(
        info.managed_pages(),
        initial.0 + rg.size() / PAGE_SIZE - meta
    );
    assert_eq!((info.hot_regions, info.hot_bytes), (1, 24 * MIB));
    assert!(info.to_string().contains("added at run time: 1 regions"));
    let zone_pages = |z: ZoneKind| p.info().zones[z.index()].managed_pages;
    assert_eq!(zone_pages(ZoneKind::Dma32), 8 * MIB / PAGE_SIZE);
    assert_eq!(zone_pages(ZoneKind::Normal), 12 * MIB / PAGE_SIZE);
    // Everything in every order, then back: the zones come back as maximal blocks.
    let mut held = Vec::new();
    for order in (0..=MAX_ORDER).rev() {
        for gfp in [Gfp::KERNEL, Gfp::DMA32, Gfp::DMA] {
            while let Ok(pa) = p.alloc_pages(order, gfp) {
                let z = p.zone_of(pa).unwrap();
                assert_eq!(z, limits.zone_of(pa), "{pa:#x}");
                assert_eq!(pa % (PAGE_SIZE << order), 0);
                held.push((pa, order));
            }
        }
    }
    assert!(held.iter().any(|&(pa, _)| pa >= rg.start));
    for (pa, o) in held {
        p.free_pages_any(pa, o).unwrap();
    }
    p.drain_all_pcp();
    p.check();
    let top = p.info().zones[ZoneKind::Normal.index()].free_blocks[MAX_ORDER as usize];
    assert_eq!(top, 3, "Normal [20, 32) MiB is three 4 MiB blocks");
    p.remove_region(rg).unwrap();
    assert_eq!(snapshot(&p), initial);
}

#[test]
fn the_hook_is_asked_before_failing_and_not_again_from_inside() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static NESTED: AtomicBool = AtomicBool::new(false);
    fn hook(p: &Pages, req: OomRequest, ctx: usize) -> bool {
        CALLS.fetch_add(1, SeqCst);
        // A nested out-of-memory fails at once instead of calling the hook again.
        NESTED.store(p.alloc_pages(MAX_ORDER, Gfp::KERNEL).is_err(), SeqCst);
        assert_eq!(req.order, MAX_ORDER);
        // SAFETY: ctx is the address of the test's Region, alive while the hook runs.
        let r = unsafe { &*(ctx as *const Region) };
        add(p, range(r, 8, 16)).is_ok()
    }
    let (r, p, _) = split(16, 8, 1);
    let mut held = Vec::new();
    while let Ok(pa) = p.alloc_pages(MAX_ORDER, Gfp::KERNEL) {
        held.push(pa);
    }
    assert_eq!(CALLS.load(SeqCst), 0, "no hook yet");
    p.set_oom_hook(Some(OomHook {
        f: hook,
        ctx: &r as *const Region as usize,
    }));
    while let Ok(pa) = p.alloc_pages(MAX_ORDER, Gfp::KERNEL) {
        held.push(pa);
    }
    // Once to add the region, once more when it is used up (and the add is refused).
    assert_eq!(CALLS.load(SeqCst), 2);
    assert!(NESTED.load(SeqCst));
    assert!(held.iter().any(|&pa| pa >= range(&r, 8, 16).start));
    for pa in held {
        p.free_pages_any(pa, MAX_ORDER).unwrap();
    }
    assert!(p.set_oom_hook(None).is_some());
    p.remove_region(range(&r, 8, 16)).unwrap();
}

#[test]
fn boot_memory_serves_first_so_regions_stay_removable() {
    let (r, p, _) = split(16, 8, 1);
    let rg = range(&r, 8, 16);
    add(&p, rg).unwrap();
    let mut held = Vec::new();
    // The boot memory is all DMA (see `split`): allocations of that zone may use both.
    for order in [0, 0, 3, 9, 0, 2, 1] {
        let pa = p.alloc_pages(order, Gfp::DMA).unwrap();
        assert!(
            pa < rg.start,
            "order {order} from the region while boot memory is free: {pa:#x} {rg}"
        );
        held.push((pa, order));
    }
    p.remove_region(rg).unwrap();
    for (pa, o) in held {
        p.free_pages_any(pa, o).unwrap();
    }
    p.check();
}

/// Deterministic pseudo-random numbers for the stress threads.
fn next(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 33
}

#[test]
fn four_threads_add_and_remove_regions_while_allocating() {
    let (r, p, _) = split(72, 8, 4);
    let kmem = Kmem::new(p).unwrap();
    kmem.pages().drain_all_pcp();
    let initial = kmem.pages().info();
    let regions: Vec<_> = (0..4).map(|k| range(&r, 8 + 16 * k, 24 + 16 * k)).collect();
    let stop = AtomicBool::new(false);
    let (adds, removes, refused) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    std::thread::scope(|s| {
        // Three threads allocate — kmalloc objects and page blocks — stamp, check, free.
        for t in 0..3u64 {
            let (kmem, stop) = (&kmem, &stop);
            s.spawn(move || {
                let mut rng = t + 1;
                let mut live: Vec<(usize, usize, u64)> = Vec::new();
                let mut rounds = 0;
                while !stop.load(SeqCst) || rounds < 2000 {
                    rounds += 1;
                    let n = next(&mut rng);
                    if live.len() < 400 && !n.is_multiple_of(3) {
                        let size = [16, 200, 1000, 4096, 20_000, 100_000][(n % 6) as usize];
                        if let Ok(ptr) = kmem.kmalloc(size, Gfp::KERNEL) {
                            let stamp = n ^ t << 60;
                            // SAFETY: the block is ours and at least 16 bytes.
                            unsafe { (ptr.as_ptr() as *mut [u64; 2]).write([stamp, size as u64]) };
                            live.push((ptr.as_ptr() as usize, size, stamp));
                        }
                    } else if !live.is_empty() {
                        let (ptr, size, stamp) = live.swap_remove((n as usize) % live.len());
                        // SAFETY: a live block of ours, stamped above.
                        let got = unsafe { (ptr as *const [u64; 2]).read() };
                        assert_eq!(got, [stamp, size as u64], "block at {ptr:#x} changed");
                        // SAFETY: a live block of ours, not used again.
                        unsafe { kmem.kfree(ptr as *mut u8) }.unwrap();
                    }
                    if rounds > 100_000 {
                        break;
                    }
                }
                for (ptr, _, _) in live {
                    // SAFETY: as above.
                    unsafe { kmem.kfree(ptr as *mut u8) }.unwrap();
                }
            });
        }
        // One thread adds and removes the regions.
        let (kmem, regions, stop, adds, removes, refused) =
            (&kmem, &regions, &stop, &adds, &removes, &refused);
        s.spawn(move || {
            let mut rng = 99;
            let mut online = [false; 4];
            for _ in 0..200 {
                let k = (next(&mut rng) % 4) as usize;
                if online[k] {
                    match kmem.remove_region(regions[k]) {
                        Ok(()) => {
                            online[k] = false;
                            removes.fetch_add(1, SeqCst);
                        }
                        Err(HotplugError::PagesInUse { count, .. }) => {
                            assert!(count > 0);
                            refused.fetch_add(1, SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    // SAFETY: the regions lie in the test's Region past the boot map.
                    unsafe { kmem.add_region(regions[k]) }.unwrap();
                    online[k] = true;
                    adds.fetch_add(1, SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            stop.store(true, SeqCst);
        });
    });
    println!(
        "adds {} removes {} refused {}",
        adds.load(SeqCst),
        removes.load(SeqCst),
        refused.load(SeqCst)
    );
    assert!(
        removes.load(SeqCst) > 10,
        "some removals found their region free"
    );
    assert_eq!(kmem.validate(None), Some(0));
    kmem.shrink_all();
    let mut left = Vec::new();
    kmem.pages().for_each_region(|rg| left.push(rg));
    for rg in left {
        kmem.remove_region(rg).unwrap();
    }
    kmem.pages().drain_all_pcp();
    kmem.pages().check();
    let end = kmem.pages().info();
    assert_eq!(end.hot_regions, 0);
    assert_eq!(end.managed_pages(), initial.managed_pages());
    // Conservation: every page is back but those the caches keep (slabs of the kmalloc
    // caches' arrays), which shrink_all left as they were before the run.
    assert_eq!(end.free_pages(), initial.free_pages());
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Add(usize),
    Remove(usize),
    Alloc(u32),
    Free(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        1 => (0..3usize).prop_map(Op::Add),
        1 => (0..3usize).prop_map(Op::Remove),
        4 => (0..=4u32).prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Against a model of which regions are online and which blocks are live: an add
    /// succeeds exactly when its region is offline, a removal exactly when it is online
    /// and holds no live block (else the count is the live frames in it), every block
    /// lies in boot memory or an online region, and everything comes back at the end.
    #[test]
    fn hotplug_model(ops in proptest::collection::vec(op(), 1..120)) {
        let (r, p, _) = split(20, 2, 2);
        let initial = snapshot(&p);
        let regions: Vec<_> = (0..3).map(|k| range(&r, 2 + 6 * k, 8 + 6 * k)).collect();
        let mut online = [false; 3];
        let mut live: Vec<(u64, u32)> = Vec::new();
        let region_of = |pa: u64| regions.iter().position(|g| pa >= g.start && pa < g.end);
        for op in ops {
            match op {
                Op::Add(k) => {
                    let got = add(&p, regions[k]);
                    proptest::prop_assert_eq!(got.is_ok(), !online[k], "{:?}", got);
                    online[k] = true;
                }
                Op::Remove(k) => {
                    let in_use: u64 = live
                        .iter()
                        .filter(|&&(pa, _)| region_of(pa) == Some(k))
                        .map(|&(_, o)| 1u64 << o)
                        .sum();
                    let want = if !online[k] {
                        Err(HotplugError::NotARegion { range: regions[k] })
                    } else if in_use > 0 {
                        Err(HotplugError::PagesInUse { range: regions[k], count: in_use })
                    } else {
                        Ok(())
                    };
                    proptest::prop_assert_eq!(p.remove_region(regions[k]), want);
                    if want.is_ok() {
                        online[k] = false;
                    }
                }
                Op::Alloc(order) => {
                    if let Ok(pa) = p.alloc_pages(order, Gfp::KERNEL) {
                        if let Some(k) = region_of(pa) {
                            proptest::prop_assert!(online[k], "{:#x} from an offline region", pa);
                        }
                        live.push((pa, order));
                    }
                }
                Op::Free(pick) => {
                    if !live.is_empty() {
                        let (pa, o) = live.swap_remove(pick % live.len());
                        proptest::prop_assert_eq!(p.free_pages_any(pa, o), Ok(()));
                    }
                }
            }
        }
        p.check();
        for (pa, o) in live {
            p.free_pages_any(pa, o).unwrap();
        }
        for k in 0..3 {
            if online[k] {
                p.remove_region(regions[k]).unwrap();
            }
        }
        proptest::prop_assert_eq!(snapshot(&p), initial);
    }
}
