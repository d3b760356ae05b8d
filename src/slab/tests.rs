//! The fault catalogue on the host: each test provokes one fault, checks the report, then
//! shows the allocator still works — a further alloc/free sequence passes `validate`.

use core::ptr::NonNull;

use super::debug::{DebugFlags, POISON_END, POISON_FREE, RED_ACTIVE};
use crate::gfp::Gfp;
use crate::hosted::{HostArch, Region};
use crate::kmalloc::{Kmem, Options};
use crate::mm::PageAllocator;
use crate::mm::zone::ZoneLimits;
use crate::slab::{CacheName, SlabError, SlabFlags};
use crate::test_frees::{CacheAny, KmemAny};
use crate::test_log::{capture, logged};

/// An allocator with `options`; `kmem` drops before `region`.
struct Heap {
    kmem: Box<Kmem<HostArch>>,
    _region: Region,
}

fn heap(options: &str) -> Heap {
    capture();
    let region = Region::new(32 << 20).unwrap();
    // SAFETY: the region outlives the allocator (field order).
    let pages = unsafe {
        PageAllocator::new(&region.normalized().unwrap(), ZoneLimits::FLAT, 2, None).unwrap()
    };
    let opts = Options {
        seed: 0x1234_5678_9abc_def0,
        ..Options::default()
    }
    .parse(options, |e| panic!("{e}"));
    Heap {
        kmem: Box::new(Kmem::with_options(pages, opts).unwrap()),
        _region: region,
    }
}

impl Heap {
    fn free_pages(&self) -> u64 {
        self.kmem.shrink_all();
        self.kmem.pages().drain_all_pcp();
        self.kmem.pages().info().free_pages()
    }

    /// The allocator still works: a burst of mixed allocations, freed, and every cache
    /// validates clean.
    fn still_works(&self) {
        let v: Vec<_> = (1..300)
            .map(|i| self.kmem.kmalloc(i * 7, Gfp::KERNEL).unwrap())
            .collect();
        for p in v {
            self.kmem.kfree_any(p.as_ptr()).unwrap();
        }
        assert_eq!(self.kmem.validate(None), Some(0), "validate found problems");
    }
}

fn poke(p: *mut u8, off: isize, v: u8) {
    // SAFETY: tests poke only inside slabs they own (object, red zone or a freed object
    // whose memory stays in its slab).
    unsafe { p.offset(off).write_volatile(v) };
}

#[test]
fn write_past_the_end_is_caught_at_free() {
    let h = heap("kmem.debug=FZPU,kmalloc-64");
    let before = h.free_pages();
    let p = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    poke(p, 64, 0x41); // one byte past the end
    h.kmem.kfree_any(p).unwrap();
    assert!(logged(&[
        "BUG kmalloc-64: Right Redzone overwritten",
        &format!("{:#x}", p as usize),
        "offset 64",
        "found 0x41",
        "expected 0xcc"
    ]));
    assert!(
        logged(&["allocated on cpu", "src/slab/tests.rs"]),
        "owner report names the caller"
    );
    h.still_works();
    assert_eq!(h.free_pages(), before);
}

/// With U, the report of a write after free names where the object was freed: the user's
/// call, by `kfree` or by `krealloc` moving it, not a line inside kmem.
#[test]
fn damage_report_names_the_callers_free() {
    let h = heap("kmem.debug=PU,kmalloc-48");
    for by_krealloc in [false, true] {
        let p = h.kmem.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr();
        let (moved, line) = if by_krealloc {
            let m = h.kmem.krealloc_any(p, 5000, Gfp::KERNEL).unwrap();
            (Some(m), line!() - 1)
        } else {
            h.kmem.kfree_any(p).unwrap();
            (None, line!() - 1)
        };
        poke(p, 10, 0x77);
        // The CPU's magazine hands the same object back first, and checks its poison.
        let q = h.kmem.kmalloc(48, Gfp::KERNEL).unwrap().as_ptr();
        assert_eq!(p, q);
        let at = format!("by src/slab/tests.rs:{line}:");
        assert!(logged(&["BUG kmalloc-48: Poison overwritten", "offset 10"]));
        assert!(logged(&["last freed on cpu", &at]), "{at}");
        h.kmem.kfree_any(q).unwrap();
        if let Some(m) = moved {
            h.kmem.kfree_any(m.as_ptr()).unwrap();
        }
    }
    h.still_works();
}

#[test]
fn write_before_the_start_is_caught_at_free() {
    let h = heap("kmem.debug=Z,kmalloc-32");
    let p = h.kmem.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr();
    poke(p, -3, 0x00);
    h.kmem.kfree_any(p).unwrap();
    assert!(logged(&[
        "BUG kmalloc-32: Left Redzone overwritten",
        "offset -3",
        "expected 0xcc"
    ]));
    h.still_works();
}

#[test]
fn validate_finds_an_overwrite_in_a_live_object() {
    let h = heap("kmem.debug=Z,kmalloc-128");
    let p = h.kmem.kmalloc(128, Gfp::KERNEL).unwrap().as_ptr();
    poke(p, 130, 0x55);
    assert_eq!(h.kmem.validate(Some("kmalloc-128")), Some(1));
    assert!(logged(&[
        "BUG kmalloc-128: Right Redzone overwritten",
        "offset 130"
    ]));
    // validate repaired the red zone: the free is clean.
    h.kmem.kfree_any(p).unwrap();
    h.still_works();
    assert_eq!(h.kmem.validate(Some("no-such-cache")), None);
}

#[test]
fn write_after_free_is_caught_at_the_next_allocation() {
    let h = heap("kmem.debug=P,kmalloc-96");
    let p = h.kmem.kmalloc(96, Gfp::KERNEL).unwrap().as_ptr();
    h.kmem.kfree_any(p).unwrap();
    // SAFETY (of the test): the object is free but its memory stays in the slab.
    assert_eq!(unsafe { p.read() }, POISON_FREE);
    assert_eq!(unsafe { p.add(95).read() }, POISON_END);
    poke(p, 10, 0x77);
    // The CPU's magazine hands the same object back first.
    let q = h.kmem.kmalloc(96, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(p, q);
    assert!(logged(&[
        "BUG kmalloc-96: Poison overwritten",
        "offset 10",
        "found 0x77",
        "expected 0x6b"
    ]));
    h.kmem.kfree_any(q).unwrap();
    h.still_works();
}

#[test]
fn double_free_while_in_a_per_cpu_array_and_in_a_slab() {
    let h = heap("");
    let p = h.kmem.kmalloc(200, Gfp::KERNEL).unwrap().as_ptr();
    // A neighbour in the same slab (one page) keeps it alive once the magazines are
    // drained.
    let mut others = Vec::new();
    let keep = loop {
        let q = h.kmem.kmalloc(200, Gfp::KERNEL).unwrap();
        if q.as_ptr() as usize >> 12 == p as usize >> 12 {
            break q;
        }
        others.push(q);
    };
    for q in others {
        h.kmem.kfree_any(q.as_ptr()).unwrap();
    }
    h.kmem.kfree_any(p).unwrap();
    assert!(matches!(
        h.kmem.kfree_any(p),
        Err(SlabError::DoubleFree { .. })
    ));
    assert!(logged(&[
        "double free of object",
        &format!("{:#x}", p as usize)
    ]));
    h.kmem.shrink_all();
    let r = h.kmem.kfree_any(p);
    assert!(matches!(r, Err(SlabError::DoubleFree { .. })), "{r:?}");
    h.kmem.kfree_any(keep.as_ptr()).unwrap();
    h.still_works();
}

/// Tagged caches keep an object's state in its first word: a double free is still caught
/// when another CPU's array holds the object, and a user who stores the exact value of
/// the array word or of a chain link in a live object gets no false report.
#[test]
fn object_tags_catch_double_frees_on_any_cpu_and_never_misreport() {
    let h = heap("");
    let cache = h.kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap();
    assert_ne!(cache.tag(), 0, "kmalloc caches are tagged");
    // Freed by another thread (another CPU slot), then again here.
    let p = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr() as usize;
    std::thread::scope(|s| {
        s.spawn(|| h.kmem.kfree_any(p as *mut u8).unwrap());
    });
    assert!(matches!(
        h.kmem.kfree_any(p as *mut u8),
        Err(SlabError::DoubleFree { .. })
    ));
    // A live object that holds its own tag: ksize and kfree accept it.
    let q = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: q is a live 64-byte block.
    unsafe { q.cast::<usize>().write(q as usize ^ cache.tag()) };
    assert_eq!(h.kmem.ksize_any(q), Ok(64));
    h.kmem.kfree_any(q).unwrap();
    assert!(matches!(
        h.kmem.kfree_any(q),
        Err(SlabError::DoubleFree { .. })
    ));
    // One that holds a chain link of itself, as a free object on its slab's chain does:
    // accepted too (the free walks the chain and does not find it there) ...
    let r = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    let keep = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap();
    let link = cache.key.link(r as usize, 3);
    // SAFETY: r is a live 64-byte block.
    unsafe { r.cast::<usize>().write(link) };
    assert_eq!(h.kmem.ksize_any(r), Ok(64));
    h.kmem.kfree_any(r).unwrap();
    // ... and once it is back on the chain for real, a second free is refused.
    h.kmem.shrink_all();
    assert!(matches!(
        h.kmem.kfree_any(r),
        Err(SlabError::DoubleFree { .. })
    ));
    h.kmem.kfree_any(keep.as_ptr()).unwrap();
    h.still_works();
}

#[test]
fn interior_foreign_and_never_allocated_pointers() {
    let h = heap("kmem.debug=F");
    let p = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert!(matches!(
        h.kmem.kfree_any(p.wrapping_add(1)),
        Err(SlabError::Interior { offset: 1, .. })
    ));
    let stack = 5u32;
    let s = &stack as *const u32 as *mut u8;
    assert!(matches!(
        h.kmem.kfree_any(s),
        Err(SlabError::NotOwned { .. })
    ));
    let never = p.wrapping_add(h.kmem.ksize_any(p).unwrap()); // the next object of the slab
    assert!(h.kmem.kfree_any(never).is_err());
    h.kmem.kfree_any(p).unwrap();
    h.still_works();
}

#[test]
fn free_to_the_wrong_cache() {
    let h = heap("");
    let a = h
        .kmem
        .cache_create("wrong-a", 64, 8, SlabFlags::NONE, None, None)
        .unwrap();
    let b = h
        .kmem
        .cache_create("wrong-b", 64, 8, SlabFlags::NONE, None, None)
        .unwrap();
    let o = a.alloc(Gfp::KERNEL).unwrap();
    assert!(matches!(b.free_any(o), Err(SlabError::WrongCache { .. })));
    assert!(logged(&["to cache wrong-b, but it belongs to wrong-a"]));
    a.free_any(o).unwrap();
    a.destroy().map_err(|(_, e)| e).unwrap();
    b.destroy().map_err(|(_, e)| e).unwrap();
    h.still_works();
}

#[test]
fn corrupted_free_list_link_is_caught_and_quarantined() {
    let h = heap("");
    let before = h.free_pages();
    let c = h
        .kmem
        .cache_create("chain", 40, 8, SlabFlags::NONE, None, None)
        .unwrap();
    // Take one object so a slab exists, then corrupt the link of a free object in it:
    // a neighbour in the same page whose state word (its first word: the cache is
    // tagged) is a chain link.
    let o = c.alloc(Gfp::KERNEL).unwrap().as_ptr() as usize;
    let (stride, num) = (c.cache().stride(), c.cache().geo().layout.num);
    let page = o & !4095;
    let victim = (0..num)
        .flat_map(|k| [o + k * stride, o.wrapping_sub(k * stride)])
        .filter(|&a| a >= page && a + stride <= page + 4096)
        // SAFETY (of the test): an object start in the slab's page, 8-aligned.
        .find(|&a| {
            c.cache()
                .key
                .successor(a, unsafe { *(a as *const usize) })
                .is_some()
        })
        .expect("a free object on the chain");
    // SAFETY (of the test): as above; the object is free, its word the allocator's.
    unsafe { *(victim as *mut usize) = 0x7ABC };
    let o = NonNull::new(o as *mut u8).unwrap();
    // Allocate until the chain reaches the bad link.
    let objs: Vec<_> = (0..2 * num)
        .map(|_| c.alloc(Gfp::KERNEL).unwrap())
        .collect();
    assert!(logged(&["BUG chain: Freelist link corrupted"]));
    assert!(c.cache().reports() >= 1);
    for x in objs.into_iter().chain([o]) {
        c.free_any(x).unwrap();
    }
    assert_eq!(h.kmem.validate(Some("chain")), Some(0));
    // The quarantined slab stays with the cache: destroy reports it as busy, nothing is
    // corrupted, and the rest of the allocator works.
    let _ = c.shrink();
    h.still_works();
    let _ = before;
}

#[test]
fn out_of_memory_is_an_error_and_everything_comes_back() {
    let h = heap("");
    let before = h.free_pages();
    let mut v = Vec::new();
    while let Ok(p) = h.kmem.kmalloc(100_000, Gfp::KERNEL) {
        v.push(p);
    }
    assert!(matches!(
        h.kmem.kmalloc(100_000, Gfp::KERNEL),
        Err(SlabError::OutOfMemory { .. })
    ));
    for p in v {
        h.kmem.kfree_any(p.as_ptr()).unwrap();
    }
    assert_eq!(h.free_pages(), before);
    h.still_works();
}

#[test]
fn sizes_and_alignments_at_the_edges() {
    let h = heap("");
    assert_eq!(
        h.kmem.kmalloc(0, Gfp::KERNEL).unwrap().as_ptr(),
        crate::kmalloc::ZERO_SIZE_PTR
    );
    assert!(matches!(
        h.kmem.kmalloc(usize::MAX, Gfp::KERNEL),
        Err(SlabError::TooLarge { .. })
    ));
    assert_eq!(
        h.kmem.kcalloc(1 << 40, 1 << 40, Gfp::KERNEL),
        Err(SlabError::Overflow)
    );
    let p = h.kmem.kmalloc_aligned(64, 1 << 14, Gfp::KERNEL).unwrap();
    assert!(
        (p.as_ptr() as usize).is_multiple_of(1 << 14),
        "align above a page: page block"
    );
    h.kmem.kfree_any(p.as_ptr()).unwrap();
    assert!(matches!(
        h.kmem
            .cache_create("big-align", 64, 8192, SlabFlags::NONE, None, None),
        Err(SlabError::BadAlign { align: 8192 })
    ));
    assert!(matches!(
        h.kmem.kmalloc_aligned(8, 48, Gfp::KERNEL),
        Err(SlabError::BadAlign { .. })
    ));
    h.still_works();
}

#[test]
fn destroying_a_cache_with_live_objects_lists_them_and_their_owner() {
    let h = heap("kmem.debug=U,leaky");
    let c = h
        .kmem
        .cache_create("leaky", 24, 8, SlabFlags::NONE, None, None)
        .unwrap();
    let o = c.alloc(Gfp::KERNEL).unwrap();
    let (c, e) = c.destroy().unwrap_err();
    assert_eq!(
        e,
        SlabError::Busy {
            cache: CacheName::new("leaky").unwrap(),
            live: 1
        }
    );
    assert!(logged(&[
        &format!(
            "leaky: object {:#x} still allocated at destroy",
            o.as_ptr() as usize
        ),
        "allocated on cpu",
        "src/slab/tests.rs"
    ]));
    c.free_any(o).unwrap();
    c.destroy().map_err(|(_, e)| e).unwrap();
    h.still_works();
}

#[test]
fn failslab_fails_every_nth_allocation_of_one_cache() {
    let h = heap("kmem.failslab=3,kmalloc-16");
    let mut failed = 0;
    let mut held = Vec::new();
    for _ in 0..9 {
        match h.kmem.kmalloc(16, Gfp::KERNEL) {
            Ok(p) => held.push(p),
            Err(SlabError::Injected { .. }) => failed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(failed, 3);
    // Other caches are untouched.
    let other: Vec<_> = (0..9)
        .map(|_| h.kmem.kmalloc(64, Gfp::KERNEL).unwrap())
        .collect();
    h.kmem.set_failslab(0, None);
    for p in held.into_iter().chain(other) {
        h.kmem.kfree_any(p.as_ptr()).unwrap();
    }
    h.still_works();
}

/// `kmem.failslab=1` fails every allocation a caller can handle, and nothing else: not
/// kmem's own (a cache's structure in `cache_create`), not a `Gfp::NOFAIL` one, and not
/// those of a kernel's collections through `GlobalAlloc` (`GlobalKmem`, the firmware's
/// heap) or `Allocator`, which abort on a null — unless the filter names their cache.
#[test]
fn failslab_spares_the_allocators_own_and_the_rust_allocator_interfaces() {
    use crate::kmalloc::GlobalKmem;
    use core::alloc::{GlobalAlloc, Layout};
    let h = heap("kmem.failslab=1");
    assert!(matches!(
        h.kmem.kmalloc(64, Gfp::KERNEL),
        Err(SlabError::Injected { .. })
    ));
    let c = h
        .kmem
        .cache_create("under-injection", 40, 8, SlabFlags::NONE, None, None)
        .expect("cache_create's own allocation is spared");
    assert!(matches!(
        c.alloc(Gfp::KERNEL),
        Err(SlabError::Injected { .. })
    ));
    let spared = h.kmem.kmalloc(64, Gfp::KERNEL | Gfp::NOFAIL).unwrap();
    // A kernel's heap: collections on `GlobalAlloc` and on `Allocator`.
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: valid layouts; each block is freed with the layout it has.
    unsafe {
        let k: &Kmem<HostArch> = &h.kmem;
        let p = k.alloc(l);
        assert!(!p.is_null(), "GlobalAlloc::alloc failed by injection");
        let p = k.realloc(p, l, 3000);
        assert!(!p.is_null(), "GlobalAlloc::realloc failed by injection");
        let z = k.alloc_zeroed(l);
        assert!(
            !z.is_null(),
            "GlobalAlloc::alloc_zeroed failed by injection"
        );
        k.dealloc(p, Layout::from_size_align(3000, 8).unwrap());
        k.dealloc(z, l);
    }
    let mut v = allocator_api2::vec::Vec::new_in(&*h.kmem);
    v.extend(0..1000u32);
    drop(v);
    // The firmware's form: a GlobalKmem over an allocator built with the option.
    let region = Region::new(16 << 20).unwrap();
    // SAFETY: the region outlives the allocator (dropped after `global`).
    let pages = unsafe {
        PageAllocator::new(&region.normalized().unwrap(), ZoneLimits::FLAT, 2, None).unwrap()
    };
    let options = Options::default().parse("kmem.failslab=1", |e| panic!("{e}"));
    let global = GlobalKmem::<HostArch>::new();
    assert!(
        global
            .init(Kmem::with_options(pages, options).unwrap())
            .is_ok()
    );
    // SAFETY: as above.
    unsafe {
        let p = global.alloc(l);
        assert!(!p.is_null(), "GlobalKmem failed by injection");
        global.dealloc(p, l);
    }
    // A filter that names a cache makes its Rust-interface users fail too.
    h.kmem
        .set_failslab(1, Some(CacheName::new("kmalloc-112").unwrap()));
    // SAFETY: as above.
    unsafe {
        let k: &Kmem<HostArch> = &h.kmem;
        assert!(k.alloc(l).is_null(), "the named cache fails everyone");
        let p = k.alloc(Layout::from_size_align(200, 8).unwrap());
        assert!(!p.is_null(), "another cache does not");
        k.dealloc(p, Layout::from_size_align(200, 8).unwrap());
    }
    h.kmem.set_failslab(0, None);
    h.kmem.kfree_any(spared.as_ptr()).unwrap();
    c.destroy().map_err(|(_, e)| e).unwrap();
    h.still_works();
}

#[test]
fn init_on_alloc_and_init_on_free() {
    let h = heap("init_on_alloc=1 init_on_free=1");
    let p = h.kmem.kmalloc(300, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: 300 bytes are ours.
    assert!(
        unsafe { std::slice::from_raw_parts(p, 300) }
            .iter()
            .all(|&b| b == 0)
    );
    // SAFETY: as above.
    unsafe { p.write_bytes(0xEE, 300) };
    h.kmem.kfree_any(p).unwrap();
    // SAFETY (of the test): the freed object's memory stays in its slab.
    assert!(
        unsafe { std::slice::from_raw_parts(p, 300) }
            .iter()
            .all(|&b| b == 0)
    );
    h.still_works();
}

const STAMP: u64 = 0x5EED_C0DE_D00D_F00D;

fn stamp(p: *mut u8) {
    // SAFETY: the cache below passes objects of 96 bytes, 8-aligned.
    unsafe { p.cast::<u64>().add(11).write(STAMP) };
}

fn stamped(p: *mut u8) -> bool {
    // SAFETY: as for `stamp`; the last word of the object.
    unsafe { p.cast::<u64>().add(11).read() == STAMP }
}

fn check_stamp(p: *mut u8) {
    assert!(stamped(p), "the destructor found an object unconstructed");
}

/// Zeroing would leave a constructor's objects unconstructed (a constructor runs once,
/// when the slab is made, not at each allocation) and hand a destructor zeroes: caches
/// with either ignore `init_on_alloc` and `init_on_free`, as Linux's
/// `slab_want_init_on_alloc` does, while the other caches still zero.
#[test]
fn init_on_alloc_and_init_on_free_leave_constructed_objects_alone() {
    let h = heap("init_on_alloc=1 init_on_free=1");
    let ctor = h
        .kmem
        .cache_create("stamped", 96, 8, SlabFlags::NONE, Some(stamp), None)
        .unwrap();
    let dtor = h
        .kmem
        .cache_create(
            "checked",
            96,
            8,
            SlabFlags::NONE,
            Some(stamp),
            Some(check_stamp),
        )
        .unwrap();
    for c in [&ctor, &dtor] {
        let p = c.alloc(Gfp::KERNEL).unwrap();
        assert!(stamped(p.as_ptr()), "allocated unconstructed");
        c.free_any(p).unwrap();
        let q = c.alloc(Gfp::KERNEL).unwrap();
        assert_eq!(q, p, "the CPU's magazine hands the object back");
        assert!(stamped(q.as_ptr()), "freed into an unconstructed state");
        c.free_any(q).unwrap();
        assert!(c.shrink() > 0, "the destructor ran on the slab's objects");
    }
    // The other caches still zero.
    let p = h.kmem.kmalloc(96, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: 96 bytes are ours.
    assert!(
        unsafe { std::slice::from_raw_parts(p, 96) }
            .iter()
            .all(|&b| b == 0)
    );
    h.kmem.kfree_any(p).unwrap();
    for c in [ctor, dtor] {
        c.destroy().map_err(|(_, e)| e).unwrap();
    }
    h.still_works();
}

#[test]
fn random_freelist_and_full_debug_still_pass_the_model_checks() {
    let h = heap("kmem.random_freelist=1 kmem.debug=FZPU");
    assert_eq!(h.kmem.options().debug, DebugFlags::ALL);
    let c = h.kmem.kmalloc_cache_for(32, 8, Gfp::KERNEL).unwrap();
    let stride = c.geo().layout.stride;
    let objs: Vec<NonNull<u8>> = (0..100)
        .map(|_| h.kmem.kmalloc(32, Gfp::KERNEL).unwrap())
        .collect();
    // Shuffled: consecutive allocations are not all one stride apart.
    let sequential = objs
        .windows(2)
        .filter(|w| w[1].as_ptr() as usize == w[0].as_ptr() as usize + stride)
        .count();
    assert!(sequential < 90, "{sequential} of 99 steps were sequential");
    for o in &objs {
        // SAFETY (of the test): red zone right after each live object.
        assert_eq!(unsafe { o.as_ptr().add(32).read() }, RED_ACTIVE);
        poke(o.as_ptr(), 0, 1);
    }
    assert_eq!(h.kmem.validate(None), Some(0));
    for o in objs {
        h.kmem.kfree_any(o.as_ptr()).unwrap();
    }
    h.still_works();
}

#[test]
fn debug_flags_change_at_run_time_on_empty_caches_only() {
    let h = heap("");
    let before = h.free_pages();
    let zp = DebugFlags::RED_ZONE.union(DebugFlags::POISON);
    // A cache holding an object keeps its flags, and says why.
    let p = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(h.kmem.set_debug(Some("kmalloc-64"), zp), Some((0, 1)));
    assert!(logged(&[
        "kmalloc-64: 1 objects still allocated: debug flags stay -"
    ]));
    h.kmem.kfree_any(p).unwrap();
    // Empty (once drained): the flags change, and the new layout is in force.
    assert_eq!(h.kmem.set_debug(Some("kmalloc-64"), zp), Some((1, 0)));
    let p = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    poke(p, 64, 0x41);
    h.kmem.kfree_any(p).unwrap();
    assert!(logged(&[
        "BUG kmalloc-64: Right Redzone overwritten",
        "found 0x41"
    ]));
    let q = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    h.kmem.kfree_any(q).unwrap();
    poke(q, 3, 0x77);
    let r = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(q, r);
    assert!(logged(&[
        "BUG kmalloc-64: Poison overwritten",
        "found 0x77"
    ]));
    h.kmem.kfree_any(r).unwrap();
    // And off again: the fast paths, double frees still caught in the array.
    assert_eq!(
        h.kmem.set_debug(Some("kmalloc-64"), DebugFlags::NONE),
        Some((1, 0))
    );
    let s = h.kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    h.kmem.kfree_any(s).unwrap();
    assert!(matches!(
        h.kmem.kfree_any(s),
        Err(SlabError::DoubleFree { .. })
    ));
    assert_eq!(h.kmem.set_debug(Some("no-such-cache"), zp), None);
    // A few slabs first, so that the colour cycle has moved on: with red zones and owner
    // records kmalloc-448 has 1 colour instead of 7, and its next slab must start at
    // one it has, not run past its end.
    let burst = |n| -> Vec<_> {
        (0..n)
            .map(|_| h.kmem.kmalloc(448, Gfp::KERNEL).unwrap())
            .collect()
    };
    burst(40)
        .into_iter()
        .for_each(|p| h.kmem.kfree_any(p.as_ptr()).unwrap());
    let zpu = zp.union(DebugFlags::STORE_USER);
    assert_eq!(h.kmem.set_debug(Some("kmalloc-448"), zpu), Some((1, 0)));
    let objs = burst(100);
    assert_eq!(h.kmem.validate(Some("kmalloc-448")), Some(0));
    objs.into_iter()
        .for_each(|p| h.kmem.kfree_any(p.as_ptr()).unwrap());
    // Every cache at once: all are empty here but the ones the burst below refills.
    let (changed, left) = h.kmem.set_debug(None, DebugFlags::SANITY).unwrap();
    assert!(changed > 0 && left == 0);
    h.still_works();
    assert_eq!(h.kmem.set_debug(None, DebugFlags::NONE).unwrap().1, 0);
    h.still_works();
    assert_eq!(h.free_pages(), before);
}

/// A cache over a bare page allocator — no `Kmem`: the slab layer needs only what
/// `Backing` gives. It allocates across many slabs, refuses a double free and a foreign
/// pointer, validates clean, and gives every page back when shrunk and released.
#[test]
fn a_cache_runs_on_a_bare_page_allocator() {
    use crate::arch::Arch;
    use crate::slab::{ArrayScale, CacheSpec, Hardening, SlabCache};
    capture();
    let region = Region::new(8 << 20).unwrap();
    // SAFETY: the region outlives the allocator and the cache (declared first).
    let pages = unsafe {
        PageAllocator::<HostArch>::new(&region.normalized().unwrap(), ZoneLimits::FLAT, 2, None)
    }
    .unwrap();
    pages.drain_all_pcp();
    let before = pages.info().free_pages();
    let spec = CacheSpec {
        name: CacheName::new("standalone").unwrap(),
        size: 96,
        align: 8,
        flags: SlabFlags::NONE,
        ctor: None,
        dtor: None,
    };
    let hard = Hardening {
        debug: DebugFlags::NONE,
        init_on_alloc: false,
        init_on_free: false,
        random_freelist: true,
        seed: 0x0123_4567_89ab_cdef,
    };
    // Boxed: slab descriptors name the cache by address, so it must not move.
    // SAFETY: no array memory given; the cache takes a block of its own.
    let cache =
        Box::new(unsafe { SlabCache::new(&pages, &spec, &hard, None, ArrayScale::FULL) }.unwrap());
    let frame = |p: usize| pages.frame(HostArch::virt_to_phys(p)).unwrap();
    let objs: Vec<usize> = (0..2000)
        .map(|_| cache.alloc(&pages, Gfp::KERNEL).unwrap().as_ptr() as usize)
        .collect();
    assert_eq!(cache.info().active_objs, 2000);
    assert!(cache.info().num_slabs > 40, "objects from many slabs");
    for &p in &objs[..1000] {
        cache.free(&pages, frame(p), p).unwrap();
    }
    assert!(matches!(
        cache.free(&pages, frame(objs[0]), objs[0]),
        Err(SlabError::DoubleFree { .. })
    ));
    assert!(
        cache
            .free(&pages, frame(objs[1000] + 8), objs[1000] + 8)
            .is_err()
    );
    assert_eq!(cache.validate(&pages), 0);
    for &p in &objs[1000..] {
        cache.free(&pages, frame(p), p).unwrap();
    }
    cache.shrink(&pages);
    cache.release_arrays(&pages);
    pages.drain_all_pcp();
    assert_eq!(pages.info().free_pages(), before, "every page came back");
}
