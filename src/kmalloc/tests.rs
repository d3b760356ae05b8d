//! Tests of kmalloc and slab caches on the hosted platform: classes, flags, errors,
//! cache life cycle, per-CPU behaviour and a multi-thread run; reclaim, the proptest
//! model, bulk calls, CPUs and NUMA in `tests/`.

use core::ptr::NonNull;

use super::zones::ARRAY_SHARE;
use super::*;
use crate::gfp::Gfp;
use crate::hosted::{HostArch, Region};
use crate::mm::PageError;
use crate::mm::memmap::PAGE_SIZE;
use crate::mm::zone::ZoneLimits;
use crate::slab::SlabFlags;
use crate::slab::magazine::MAG_MAX;
use crate::test_frees::{CacheAny, KmemAny, PagesAny};
use std::sync::Mutex;

const MIB: usize = 1 << 20;

/// An allocator over its own region; `kmem` drops before `region`.
struct Heap {
    kmem: Box<Kmem<HostArch>>,
    region: Region,
    limits: ZoneLimits,
}

fn heap(mib: usize, cpus: usize) -> Heap {
    let region = Region::new(mib * MIB).unwrap();
    let limits = ZoneLimits {
        dma_end: region.start() + 8 * MIB as u64,
        dma32_end: region.start() + 24 * MIB as u64,
    };
    // SAFETY: the region outlives the allocator (field order in Heap).
    let pages =
        unsafe { PageAllocator::new(&region.normalized().unwrap(), limits, cpus, None).unwrap() };
    Heap {
        kmem: Box::new(Kmem::new(pages).unwrap()),
        region,
        limits,
    }
}

impl Heap {
    fn free_pages(&self) -> u64 {
        self.kmem.pages().drain_all_pcp();
        self.kmem.pages().info().free_pages()
    }

    fn contains(&self, p: usize, len: usize) -> bool {
        let s = self.region.start() as usize;
        p >= s && p + len <= s + self.region.size() as usize
    }
}

use crate::test_log::capture as capture_log;

fn logged(needle: &str) -> bool {
    crate::test_log::logged(&[needle])
}

#[test]
fn every_class_serves_aligned_usable_memory() {
    let h = heap(64, 2);
    let before = h.free_pages();
    let mut held = Vec::new();
    for &size in CLASS_SIZES
        .iter()
        .chain(&[1, 7, 9, 65, 100, 129, 257, 1000, 3000, 4097])
    {
        let size = size as usize;
        let p = h.kmem.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
        assert!(h.contains(p as usize, size));
        assert_eq!(p as usize % 8, 0);
        assert!(h.kmem.ksize_any(p).unwrap() >= size);
        // SAFETY: we own size bytes at p.
        unsafe { p.write_bytes(0x5A, size) };
        held.push(p);
    }
    for p in held {
        h.kmem.kfree_any(p).unwrap();
    }
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

#[test]
fn alignments_up_to_a_page_come_from_caches_and_beyond_from_pages() {
    let h = heap(64, 1);
    for align in [1, 2, 8, 16, 64, 256, 4096, 8192, 1 << 16] {
        for size in [1, 24, 100, 3000, 5000] {
            let p = h.kmem.kmalloc_aligned(size, align, Gfp::KERNEL).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0, "size {size} align {align}");
            h.kmem.kfree_any(p.as_ptr()).unwrap();
        }
    }
    assert_eq!(
        h.kmem.kmalloc_aligned(8, 3, Gfp::KERNEL),
        Err(SlabError::BadAlign { align: 3 })
    );
}

#[test]
fn zero_size_large_and_too_large() {
    let h = heap(64, 1);
    let before = h.free_pages();
    let z = h.kmem.kmalloc(0, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(z, ZERO_SIZE_PTR);
    assert_eq!(h.kmem.ksize_any(z), Ok(0));
    h.kmem.kfree_any(z).unwrap();
    h.kmem.kfree_any(core::ptr::null_mut()).unwrap();

    let big = h.kmem.kmalloc(3 * MIB, Gfp::ZERO).unwrap().as_ptr();
    assert_eq!(h.kmem.ksize_any(big), Ok(4 * MIB));
    // SAFETY: the block is ours and 3 MiB long.
    assert!(
        unsafe { std::slice::from_raw_parts(big, 3 * MIB) }
            .iter()
            .all(|&b| b == 0)
    );
    h.kmem.kfree_any(big).unwrap();
    assert_eq!(
        h.kmem.kmalloc(64 * MIB, Gfp::KERNEL),
        Err(SlabError::TooLarge { size: 64 * MIB })
    );
    assert_eq!(
        h.kmem.kmalloc(usize::MAX, Gfp::KERNEL),
        Err(SlabError::TooLarge { size: usize::MAX })
    );
    assert_eq!(
        h.kmem.kcalloc(usize::MAX / 2, 3, Gfp::KERNEL),
        Err(SlabError::Overflow)
    );
    let c = h.kmem.kcalloc(10, 100, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: 1000 bytes are ours.
    assert!(
        unsafe { std::slice::from_raw_parts(c, 1000) }
            .iter()
            .all(|&b| b == 0)
    );
    h.kmem.kfree_any(c).unwrap();
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

#[test]
fn kzalloc_zeroes_reused_objects() {
    let h = heap(32, 1);
    let p = h.kmem.kmalloc(200, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: 200 bytes are ours.
    unsafe { p.write_bytes(0xFF, 200) };
    h.kmem.kfree_any(p).unwrap();
    let q = h.kmem.kzalloc(200, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(p, q, "the CPU's magazine hands back the hot object");
    // SAFETY: as above.
    assert!(
        unsafe { std::slice::from_raw_parts(q, 200) }
            .iter()
            .all(|&b| b == 0)
    );
    h.kmem.kfree_any(q).unwrap();
}

#[test]
fn bad_kfrees_are_refused_logged_and_harmless() {
    capture_log();
    let h = heap(32, 2);
    let before = h.free_pages();
    let p = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    let cache = h.kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().name();

    // Interior pointer.
    let inner = p.wrapping_add(8);
    assert_eq!(
        h.kmem.kfree_any(inner),
        Err(SlabError::Interior {
            addr: inner as usize,
            cache,
            object: p as usize,
            offset: 8
        })
    );
    assert!(logged(&format!("{:#x}", inner as usize)));
    assert!(logged("kmalloc-64"));
    // Foreign pointers: the stack, and the test process's own heap.
    let on_stack = 0u64;
    let addr = &on_stack as *const u64 as usize;
    assert_eq!(
        h.kmem.kfree_any(addr as *mut u8),
        Err(SlabError::NotOwned { addr })
    );
    let boxed = Box::new(7u64);
    let addr = &*boxed as *const u64 as usize;
    assert_eq!(
        h.kmem.kfree_any(addr as *mut u8),
        Err(SlabError::NotOwned { addr })
    );
    // A page handed out by the page allocator directly is not kmalloc's.
    let pa = h.kmem.pages().alloc_pages(0, Gfp::KERNEL).unwrap();
    assert_eq!(
        h.kmem.kfree_any(pa as *mut u8),
        Err(SlabError::NotAllocated { addr: pa as usize })
    );
    h.kmem.pages().free_pages_any(pa, 0).unwrap();
    // Double free while the object sits in this CPU's array.
    h.kmem.kfree_any(p).unwrap();
    assert_eq!(
        h.kmem.kfree_any(p),
        Err(SlabError::DoubleFree {
            addr: p as usize,
            cache
        })
    );
    // Double free after the object went back to its slab.
    h.kmem.shrink_all();
    let q = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    let neighbour = q.wrapping_add(64);
    let r = h.kmem.kfree_any(neighbour);
    assert!(
        matches!(r, Err(SlabError::DoubleFree { .. })),
        "a never-allocated object: {r:?}"
    );
    // Large block: interior and double free.
    let big = h.kmem.kmalloc(2 * MIB, Gfp::KERNEL).unwrap().as_ptr();
    assert!(h.kmem.kfree_any(big.wrapping_add(4096)).is_err());
    assert!(h.kmem.kfree_any(big.wrapping_add(1)).is_err());
    h.kmem.kfree_any(big).unwrap();
    assert!(h.kmem.kfree_any(big).is_err());
    // Everything still works and nothing leaked.
    h.kmem.kfree_any(q).unwrap();
    let v: Vec<_> = (0..1000)
        .map(|i| h.kmem.kmalloc(1 + i % 700, Gfp::KERNEL).unwrap())
        .collect();
    for p in v {
        h.kmem.kfree_any(p.as_ptr()).unwrap();
    }
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

#[test]
fn krealloc_keeps_bytes_and_stays_in_place_when_it_can() {
    let h = heap(32, 1);
    let p = h.kmem.kmalloc(100, Gfp::KERNEL).unwrap().as_ptr();
    for i in 0..100 {
        // SAFETY: 100 bytes are ours.
        unsafe { p.add(i).write(i as u8) };
    }
    let same = h.kmem.krealloc_any(p, 110, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(same, p, "100 and 110 share the 112-byte class");
    let grown = h.kmem.krealloc_any(p, 5000, Gfp::ZERO).unwrap().as_ptr();
    assert_ne!(grown, p);
    // SAFETY: the new block holds 5000 bytes.
    let bytes = unsafe { std::slice::from_raw_parts(grown, 5000) };
    assert!((0..100).all(|i| bytes[i] == i as u8));
    assert!(bytes[112..].iter().all(|&b| b == 0));
    assert!(h.kmem.kfree_any(p).is_err(), "the old block was freed");
    let shrunk = h
        .kmem
        .krealloc_any(grown, 10, Gfp::KERNEL)
        .unwrap()
        .as_ptr();
    assert_eq!(shrunk, grown, "shrinking stays in place");
    let z = h
        .kmem
        .krealloc_any(shrunk, 0, Gfp::KERNEL)
        .unwrap()
        .as_ptr();
    assert_eq!(z, ZERO_SIZE_PTR);
    let n = h
        .kmem
        .krealloc_any(core::ptr::null_mut(), 40, Gfp::KERNEL)
        .unwrap();
    h.kmem.kfree_any(n.as_ptr()).unwrap();
}

#[test]
fn krealloc_of_a_freed_block_is_refused_before_any_byte_moves() {
    capture_log();
    let h = heap(32, 1);
    let p = h.kmem.kmalloc(100, Gfp::KERNEL).unwrap().as_ptr();
    h.kmem.kfree_any(p).unwrap();
    let before = h.free_pages();
    for size in [50, 5000, 0] {
        assert!(
            matches!(
                h.kmem.krealloc_any(p, size, Gfp::KERNEL),
                Err(SlabError::DoubleFree { .. })
            ),
            "krealloc to {size}"
        );
    }
    // GlobalAlloc's realloc past the class takes the same checks; it can only say null.
    let l = core::alloc::Layout::from_size_align(100, 8).unwrap();
    // SAFETY: deliberately breaks realloc's contract (p is freed) to see it refused.
    let q = unsafe { core::alloc::GlobalAlloc::realloc(&*h.kmem, p, l, 5000) };
    assert!(q.is_null());
    assert!(logged("krealloc: ") && logged("double free of object"));
    assert_eq!(h.free_pages(), before, "nothing was allocated");
    let q = h.kmem.kmalloc(100, Gfp::KERNEL).unwrap();
    h.kmem.kfree_any(q.as_ptr()).unwrap();
}

#[test]
fn dma_flags_take_memory_from_their_zones() {
    let h = heap(64, 2);
    for (gfp, highest) in [
        (Gfp::DMA, ZoneKind::Dma),
        (Gfp::DMA32, ZoneKind::Dma32),
        (Gfp::KERNEL, ZoneKind::Normal),
    ] {
        let objs: Vec<_> = (0..200)
            .map(|i| h.kmem.kmalloc(16 + i * 40, gfp).unwrap().as_ptr())
            .collect();
        for &p in &objs {
            let z = h.limits.zone_of(p as u64);
            assert!(z <= highest, "{gfp:?} gave {z}");
        }
        if gfp == Gfp::DMA {
            assert!(
                objs.iter()
                    .all(|&p| h.limits.zone_of(p as u64) == ZoneKind::Dma)
            );
        }
        for p in objs {
            h.kmem.kfree_any(p).unwrap();
        }
    }
    let mut names = Vec::new();
    h.kmem.slabinfo(|i| names.push(i.name.as_str().to_string()));
    assert!(names.iter().any(|n| n == "dma-kmalloc-64"));
    assert!(names.iter().any(|n| n == "dma32-kmalloc-1360"));
}

static CTORS: AtomicUsize = AtomicUsize::new(0);
static DTORS: AtomicUsize = AtomicUsize::new(0);
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

fn ctor(p: *mut u8) {
    // SAFETY: the cache passes an object of at least 8 bytes.
    unsafe { p.cast::<u64>().write(0xC0FFEE) };
    CTORS.fetch_add(1, SeqCst);
}

fn dtor(p: *mut u8) {
    // SAFETY: as for ctor.
    assert_eq!(unsafe { p.cast::<u64>().read() }, 0xC0FFEE);
    DTORS.fetch_add(1, SeqCst);
}

#[test]
fn cache_life_cycle_constructors_and_leak_report() {
    capture_log();
    let h = heap(32, 2);
    let before = h.free_pages();
    let c = h
        .kmem
        .cache_create(
            "test-objects",
            120,
            8,
            SlabFlags::HWCACHE_ALIGN,
            Some(ctor),
            Some(dtor),
        )
        .unwrap();
    assert_eq!(c.cache().stride(), 128);
    assert!(matches!(
        h.kmem
            .cache_create("test-objects", 8, 8, SlabFlags::NONE, None, None),
        Err(SlabError::NameTaken { .. })
    ));
    assert!(matches!(
        h.kmem
            .cache_create("kmalloc-64", 8, 8, SlabFlags::NONE, None, None),
        Err(SlabError::NameTaken { .. })
    ));
    assert_eq!(
        h.kmem
            .cache_create("", 8, 8, SlabFlags::NONE, None, None)
            .err(),
        Some(SlabError::BadName)
    );
    assert!(matches!(
        h.kmem
            .cache_create("odd", 8, 24, SlabFlags::NONE, None, None),
        Err(SlabError::BadAlign { align: 24 })
    ));

    let per_slab = c.cache().geo().layout.num;
    let objs: Vec<_> = (0..per_slab * 3)
        .map(|_| c.alloc(Gfp::KERNEL).unwrap())
        .collect();
    let constructed = CTORS.load(SeqCst);
    assert!(
        constructed >= per_slab * 3,
        "constructors run when slabs are made"
    );
    for o in &objs {
        assert_eq!(o.as_ptr() as usize % 64, 0);
        // SAFETY: constructed objects hold the ctor's stamp.
        assert_eq!(unsafe { o.as_ptr().cast::<u64>().read() }, 0xC0FFEE);
    }
    // A kmalloc object freed to this cache is refused.
    let k = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap();
    assert!(matches!(c.free_any(k), Err(SlabError::WrongCache { .. })));
    h.kmem.kfree_any(k.as_ptr()).unwrap();

    // Destroy with live objects: refused, and each object is listed.
    let (c, e) = c.destroy().unwrap_err();
    assert_eq!(
        e,
        SlabError::Busy {
            cache: CacheName::new("test-objects").unwrap(),
            live: objs.len()
        }
    );
    assert!(logged(&format!(
        "{:#x} still allocated",
        objs[5].as_ptr() as usize
    )));
    for o in objs {
        c.free_any(o).unwrap();
    }
    let info = c.cache().info();
    assert_eq!(info.active_objs, 0);
    assert!(c.shrink() > 0);
    assert_eq!(c.cache().info().num_slabs, 0);
    assert!(
        DTORS.load(SeqCst) >= per_slab * 3,
        "destructors run when slabs go back"
    );
    c.destroy().map_err(|(_, e)| e).unwrap();
    // The name is free again, and nothing leaked.
    let again = h
        .kmem
        .cache_create("test-objects", 8, 8, SlabFlags::NONE, None, None)
        .unwrap();
    again.destroy().map_err(|(_, e)| e).unwrap();
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

#[test]
fn slabs_are_coloured_and_hold_no_management() {
    let h = heap(64, 1);
    // The bookkeeping is in the page descriptors: 64-byte objects fill their page.
    let small = h.kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap();
    assert_eq!(small.geo().layout.num * 64, 4096);
    // Objects of successive slabs start at different offsets within their pages.
    let c = h
        .kmem
        .cache_create("coloured", 1000, 8, SlabFlags::NONE, None, None)
        .unwrap();
    let l = c.cache().geo().layout;
    assert!(l.colours >= 1, "{l:?}");
    let objs: Vec<_> = (0..l.num * 3)
        .map(|_| c.alloc(Gfp::KERNEL).unwrap())
        .collect();
    let mut offsets: Vec<usize> = objs
        .iter()
        .map(|o| (o.as_ptr() as usize % l.slab_bytes()) % l.stride)
        .collect();
    offsets.sort();
    offsets.dedup();
    assert!(offsets.len() >= 2, "{offsets:?}");
    for o in objs {
        c.free_any(o).unwrap();
    }
    c.destroy().map_err(|(_, e)| e).unwrap();
}

#[test]
fn reap_drains_only_idle_arrays() {
    let h = heap(32, 1);
    let p = h.kmem.kmalloc(32, Gfp::KERNEL).unwrap();
    h.kmem.kfree_any(p.as_ptr()).unwrap();
    let cached = |h: &Heap| {
        h.kmem
            .kmalloc_cache_for(32, 8, Gfp::KERNEL)
            .unwrap()
            .info()
            .cpu_cached
    };
    assert!(cached(&h) > 0);
    // The array was touched by the allocation: the first pass only clears the mark.
    h.kmem.reap();
    assert!(cached(&h) > 0);
    let (drained, _) = h.kmem.reap();
    assert!(drained > 0);
    assert_eq!(cached(&h), 0);
}

/// Frees that overflow a CPU's two magazines put full magazines in the depot: a reap
/// pass drains those no CPU took since the last pass, and the idle magazines of other
/// threads' CPUs, so that two passes leave no object in any magazine.
#[test]
fn reap_drains_idle_shared_and_remote_arrays() {
    let h = heap(32, 2);
    let before = h.free_pages();
    let k = &*h.kmem;
    let burst = || {
        let objs: Vec<_> = (0..400)
            .map(|_| k.kmalloc(64, Gfp::KERNEL).unwrap())
            .collect();
        for p in objs {
            k.kfree_any(p.as_ptr()).unwrap();
        }
    };
    std::thread::scope(|s| {
        s.spawn(burst);
    });
    burst();
    let info = || k.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().info();
    assert!(
        info().depot_full > 0,
        "the bursts overflowed into the depot"
    );
    assert!(info().cpu_cached > 0);
    k.reap();
    let (drained, pages) = k.reap();
    let i = info();
    assert_eq!(
        (i.cpu_cached, i.depot_full),
        (0, 0),
        "magazines left after two passes ({drained} objects, {pages} pages)"
    );
    assert_eq!(h.free_pages(), before, "every slab went back");
}

#[test]
fn info_text_reads_like_proc() {
    let h = heap(32, 2);
    let p = h.kmem.kmalloc(96, Gfp::KERNEL).unwrap();
    let text = SlabInfoTable {
        kmem: &h.kmem,
        all: false,
    }
    .to_string();
    assert!(text.starts_with("# name"));
    assert!(text.contains("kmalloc-96"), "{text}");
    let mem = h.kmem.meminfo();
    assert!(mem.slab_pages >= 1);
    assert!(mem.to_string().contains("slab:"));
    h.kmem.kfree_any(p.as_ptr()).unwrap();
}

#[test]
fn threads_free_each_others_objects_and_pages_are_conserved() {
    let h = heap(96, 3);
    let before = h.free_pages();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(usize, usize, u8)>>();
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        // Six producers on three CPU slots; two consumers free what they made.
        for t in 0..6u64 {
            let tx = tx.clone();
            let k = &*h.kmem;
            s.spawn(move || {
                let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut mine = Vec::new();
                for round in 0..300 {
                    let mut batch = Vec::new();
                    for _ in 0..40 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let size = [8, 24, 64, 100, 129, 257, 1000, 3000, 5000, 70_000]
                            [(rng % 10) as usize];
                        let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
                        let tag = (rng >> 32) as u8;
                        // SAFETY: size bytes at p are ours.
                        unsafe { p.write_bytes(tag, size) };
                        if rng & 1 == 0 {
                            batch.push((p as usize, size, tag));
                        } else {
                            mine.push((p as usize, size, tag));
                        }
                    }
                    tx.send(batch).unwrap();
                    if round % 10 == 0 {
                        for (p, size, tag) in mine.drain(..) {
                            check_and_free(k, p, size, tag);
                        }
                    }
                }
                for (p, size, tag) in mine {
                    check_and_free(k, p, size, tag);
                }
            });
        }
        drop(tx);
        for _ in 0..2 {
            let (k, rx) = (&*h.kmem, &rx);
            s.spawn(move || {
                while let Ok(batch) = rx.lock().unwrap().recv() {
                    for (p, size, tag) in batch {
                        check_and_free(k, p, size, tag);
                    }
                }
            });
        }
    });
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}

fn check_and_free(k: &Kmem<HostArch>, p: usize, size: usize, tag: u8) {
    // SAFETY: the block is live and size bytes long.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
    assert!(bytes.iter().all(|&b| b == tag), "block {p:#x} damaged");
    k.kfree_any(p as *mut u8).unwrap();
}

/// Over several banks, `GlobalAlloc::dealloc` frees blocks of the first bank on its fast
/// path and those of the others on its slow path (the only one that searches the banks):
/// both free alike, and refuse what the other refuses.
#[test]
fn global_dealloc_over_several_banks() {
    use crate::mm::memmap::{MemoryMap, RegionKind};
    use core::alloc::{GlobalAlloc, Layout};
    capture_log();
    let region = Region::new(48 * MIB).unwrap();
    let mut m = MemoryMap::new();
    m.add(RegionKind::Usable, region.start(), 16 * MIB as u64)
        .unwrap();
    m.add(
        RegionKind::Usable,
        region.start() + 32 * MIB as u64,
        16 * MIB as u64,
    )
    .unwrap();
    // SAFETY: both banks lie inside the region, which outlives the allocator.
    let pages = unsafe {
        PageAllocator::<HostArch>::new(&m.normalize().unwrap(), ZoneLimits::FLAT, 2, None)
    }
    .unwrap();
    let k = Kmem::new(pages).unwrap();
    let l = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: valid layouts; each block is freed once with its layout, except the
    // deliberate double free, which kmem refuses before touching anything.
    unsafe {
        // 19 MB of blocks: more than one bank holds.
        let blocks: Vec<*mut u8> = (0..300_000).map(|_| k.alloc(l)).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        let in_high = |p: &&*mut u8| **p as u64 >= region.start() + 32 * MIB as u64;
        assert!(blocks.iter().any(|p| in_high(&p)) && !blocks.iter().all(|p| in_high(&p)));
        for &p in &blocks {
            k.dealloc(p, l);
        }
        k.dealloc(blocks[7], l);
        assert!(logged("double free"), "the refused free is logged");
        let p = k.alloc(l);
        assert!(!p.is_null(), "still usable after the refused free");
        k.dealloc(p, l);
    }
    assert_eq!(k.validate(None), Some(0));
}

mod bulk;
mod cpus;
mod model;
mod numa;
mod reclaim;
