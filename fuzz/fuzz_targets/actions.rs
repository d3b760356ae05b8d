//! Fuzz target: an action list (kmalloc, krealloc, kfree, bad frees, cache create /
//! alloc / free / destroy, shrink, debug flags switched at run time) driven against kmem
//! with a shadow model of every live block. Any overlap, lost byte, accepted bad free, refused good free or leaked page
//! after the list is undone is a crash.
#![no_main]

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kmem::hosted::{HostArch, Region};
use kmem::mm::zone::ZoneLimits;
use kmem::slab::DebugFlags;
use kmem::{Gfp, Kmem, PageAllocator, SlabFlags};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    Kmalloc {
        size: u16,
        big: bool,
        align_shift: u8,
        zero: bool,
    },
    Krealloc {
        pick: u16,
        size: u16,
    },
    Kfree {
        pick: u16,
    },
    FreeInterior {
        pick: u16,
        offset: u16,
    },
    FreeTwice {
        pick: u16,
    },
    FreeForeign {
        addr: u64,
    },
    CacheCreate {
        size: u16,
        align_shift: u8,
    },
    CacheAlloc {
        pick: u8,
    },
    CacheFree {
        pick: u16,
    },
    CacheDestroy {
        pick: u8,
    },
    Shrink,
    /// `Kmem::set_debug` on every cache, with these of F, Z, P, U (bits 0..3).
    SetDebug {
        flags: u8,
    },
}

struct Heap {
    kmem: Kmem<HostArch>,
    region: Region,
}

fn heap() -> &'static Heap {
    static HEAP: OnceLock<Heap> = OnceLock::new();
    HEAP.get_or_init(|| {
        let region = Region::new(32 << 20).unwrap();
        // SAFETY: the region lives in the same static as the allocator, forever.
        let pages = unsafe {
            PageAllocator::new(&region.normalized().unwrap(), ZoneLimits::FLAT, 2, None).unwrap()
        };
        Heap {
            kmem: Kmem::new(pages).unwrap(),
            region,
        }
    })
}

/// `Kmem::kfree` for any pointer: the fuzzer passes bad ones on purpose. Sound here
/// because every address it passes is an object of this heap, a bit off one, or an odd
/// address the allocator never hands out; the checks under test refuse all but live
/// objects, which only their owner (the model) frees.
fn kfree_any(k: &Kmem<HostArch>, p: *mut u8) -> Result<(), kmem::SlabError> {
    // SAFETY: see above.
    unsafe { k.kfree(p) }
}

/// `Kmem::krealloc` of a live block the model picked.
fn krealloc_any(
    k: &Kmem<HostArch>,
    p: *mut u8,
    size: usize,
    gfp: Gfp,
) -> Result<core::ptr::NonNull<u8>, kmem::SlabError> {
    // SAFETY: p is live (the model's) and only the result is used afterwards.
    unsafe { k.krealloc(p, size, gfp) }
}

/// `CacheRef::free` of an object the model holds for that cache.
fn free_any(c: &kmem::CacheRef<'_, HostArch>, p: NonNull<u8>) -> Result<(), kmem::SlabError> {
    // SAFETY: p is a live object of c, freed once (the model forgets it).
    unsafe { c.free(p) }
}

fn free_pages(k: &Kmem<HostArch>) -> u64 {
    k.shrink_all();
    k.pages().drain_all_pcp();
    k.pages().info().free_pages()
}

/// A live block: size and fill byte.
type Live = BTreeMap<usize, (usize, u8)>;

fn fill(p: usize, size: usize, tag: u8) {
    // SAFETY: the model only fills blocks it owns.
    unsafe { (p as *mut u8).write_bytes(tag, size) }
}

fn check(p: usize, size: usize, tag: u8) {
    // SAFETY: the block is live.
    let b = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
    assert!(b.iter().all(|&x| x == tag), "block {p:#x} damaged");
}

fn insert(live: &mut Live, h: &Heap, p: usize, size: usize, tag: u8) {
    let s = h.region.start() as usize;
    assert!(
        p >= s && p + size <= s + h.region.size() as usize,
        "outside RAM"
    );
    if let Some((&q, &(qs, _))) = live.range(..=p).next_back() {
        assert!(q + qs <= p, "overlap");
    }
    if let Some((&q, _)) = live.range(p..).next() {
        assert!(p + size <= q, "overlap");
    }
    fill(p, size, tag);
    live.insert(p, (size, tag));
}

fn pick(live: &Live, i: u16) -> Option<(usize, usize, u8)> {
    let n = live.len();
    (n > 0).then(|| {
        live.iter()
            .nth(i as usize % n)
            .map(|(&p, &(s, t))| (p, s, t))
            .unwrap()
    })
}

fuzz_target!(|actions: Vec<Action>| {
    let h = heap();
    let k = &h.kmem;
    let before = free_pages(k);
    let mut km = Live::new();
    let mut all = Live::new();
    let mut caches = Vec::new();
    let mut tag = 0u8;
    for (n, a) in actions.into_iter().take(400).enumerate() {
        tag = tag.wrapping_add(1).max(1);
        match a {
            Action::Kmalloc {
                size,
                big,
                align_shift,
                zero,
            } => {
                let size = size as usize * if big { 64 } else { 1 } + 1;
                let align = 1 << (align_shift % 13);
                let gfp = if zero { Gfp::ZERO } else { Gfp::KERNEL };
                if let Ok(p) = k.kmalloc_aligned(size, align, gfp) {
                    let p = p.as_ptr() as usize;
                    assert_eq!(p % align, 0);
                    if zero {
                        check(p, size, 0);
                    }
                    insert(&mut all, h, p, size, tag);
                    km.insert(p, (size, tag));
                }
            }
            Action::Krealloc { pick: i, size } => {
                let Some((p, s, t)) = pick(&km, i) else {
                    continue;
                };
                let size = size as usize + 1;
                if let Ok(q) = krealloc_any(k, p as *mut u8, size, Gfp::KERNEL) {
                    all.remove(&p);
                    km.remove(&p);
                    let q = q.as_ptr() as usize;
                    check(q, s.min(size), t);
                    insert(&mut all, h, q, size, tag);
                    km.insert(q, (size, tag));
                }
            }
            Action::Kfree { pick: i } => {
                let Some((p, s, t)) = pick(&km, i) else {
                    continue;
                };
                check(p, s, t);
                kfree_any(k, p as *mut u8).unwrap();
                all.remove(&p);
                km.remove(&p);
            }
            Action::FreeInterior { pick: i, offset } => {
                let Some((p, s, _)) = pick(&all, i) else {
                    continue;
                };
                let off = 1 + offset as usize % s.max(1);
                if off < s {
                    assert!(
                        kfree_any(k, (p + off) as *mut u8).is_err(),
                        "interior free accepted"
                    );
                }
            }
            Action::FreeTwice { pick: i } => {
                let Some((p, s, t)) = pick(&km, i) else {
                    continue;
                };
                check(p, s, t);
                kfree_any(k, p as *mut u8).unwrap();
                all.remove(&p);
                km.remove(&p);
                assert!(kfree_any(k, p as *mut u8).is_err(), "double free accepted");
            }
            Action::FreeForeign { addr } => {
                let addr = addr as usize | 1; // never an object start: objects are 8-aligned
                if addr != 1 {
                    assert!(kfree_any(k, addr as *mut u8).is_err(), "foreign free accepted");
                }
            }
            Action::CacheCreate { size, align_shift } => {
                if caches.len() < 4 {
                    let name = format!("fuzz-{n}");
                    let align = 1 << (align_shift % 8);
                    if let Ok(c) =
                        k.cache_create(&name, size as usize + 1, align, SlabFlags::NONE, None, None)
                    {
                        caches.push((c, size as usize + 1, Vec::new()));
                    }
                }
            }
            Action::CacheAlloc { pick: i } => {
                if caches.is_empty() {
                    continue;
                }
                let n = caches.len();
                let (c, size, objs) = &mut caches[i as usize % n];
                if let Ok(p) = c.alloc(Gfp::KERNEL) {
                    let p = p.as_ptr() as usize;
                    insert(&mut all, h, p, *size, tag);
                    objs.push(p);
                }
            }
            Action::CacheFree { pick: i } => {
                let Some((c, _, objs)) = caches.iter_mut().find(|c| !c.2.is_empty()) else {
                    continue;
                };
                let p = objs.swap_remove(i as usize % objs.len());
                let (s, t) = all.remove(&p).unwrap();
                check(p, s, t);
                free_any(&c, NonNull::new(p as *mut u8).unwrap()).unwrap();
            }
            Action::CacheDestroy { pick: i } => {
                if caches.is_empty() {
                    continue;
                }
                let (c, size, objs) = caches.swap_remove(i as usize % caches.len());
                match c.destroy() {
                    Ok(()) => assert!(objs.is_empty(), "destroy with live objects accepted"),
                    Err((c, _)) => {
                        assert!(!objs.is_empty(), "destroy of an empty cache refused");
                        caches.push((c, size, objs));
                    }
                }
            }
            Action::Shrink => {
                k.shrink_all();
            }
            Action::SetDebug { flags } => {
                let letters: String = "FZPU"
                    .chars()
                    .enumerate()
                    .filter(|&(i, _)| flags & 1 << i != 0)
                    .map(|(_, c)| c)
                    .collect();
                let flags = DebugFlags::parse(&letters).unwrap();
                assert!(k.set_debug(None, flags).is_some(), "no cache at all");
            }
        }
    }
    for (c, _, objs) in caches {
        for p in objs {
            let (s, t) = all.remove(&p).unwrap();
            check(p, s, t);
            free_any(&c, NonNull::new(p as *mut u8).unwrap()).unwrap();
        }
        c.destroy().map_err(|(_, e)| e).unwrap();
    }
    for (&p, &(s, t)) in &km {
        check(p, s, t);
        kfree_any(k, p as *mut u8).unwrap();
    }
    assert_eq!(free_pages(k), before, "pages leaked");
});
