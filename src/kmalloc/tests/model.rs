//! The proptest model: random kmalloc, krealloc, kfree and user-cache operations over all
//! three zones, every block's bytes checked, and every page back at the end.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Kmalloc {
        size: usize,
        align_shift: u8,
        zone: u8,
    },
    Krealloc {
        pick: usize,
        size: usize,
    },
    Kfree {
        pick: usize,
    },
    CacheCreate {
        size: usize,
        align_shift: u8,
    },
    CacheAlloc {
        pick: usize,
    },
    CacheFree {
        pick: usize,
    },
    CacheShrink {
        pick: usize,
    },
    CacheDestroy {
        pick: usize,
    },
}

/// Largest request of the model: 2 MiB, or 8 KiB under Miri, which fills and checks
/// every byte of every block one interpreted instruction at a time.
const MODEL_MAX_SIZE: usize = if cfg!(miri) { 1 << 13 } else { 1 << 21 };
/// Where the model's medium requests end and its large ones begin.
const MODEL_MEDIUM: usize = if cfg!(miri) { 1 << 12 } else { 8192 };

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=256,
        3 => 257usize..=MODEL_MEDIUM,
        1 => MODEL_MEDIUM + 1..=MODEL_MAX_SIZE,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (size(), 0u8..13, 0u8..3)
            .prop_map(|(size, align_shift, zone)| Op::Kmalloc { size, align_shift, zone }),
        3 => (any::<usize>(), size()).prop_map(|(pick, size)| Op::Krealloc { pick, size }),
        7 => any::<usize>().prop_map(|pick| Op::Kfree { pick }),
        1 => (1usize..5000, 0u8..8).prop_map(|(size, align_shift)| Op::CacheCreate { size, align_shift }),
        6 => any::<usize>().prop_map(|pick| Op::CacheAlloc { pick }),
        5 => any::<usize>().prop_map(|pick| Op::CacheFree { pick }),
        1 => any::<usize>().prop_map(|pick| Op::CacheShrink { pick }),
        1 => any::<usize>().prop_map(|pick| Op::CacheDestroy { pick }),
    ]
}

// Miri runs the same model, smaller: it interprets every instruction (2 cases of 150
// operations over 48 MiB took 27 minutes).
const MODEL_CASES: u32 = if cfg!(miri) { 1 } else { 48 };
const MODEL_OPS: usize = if cfg!(miri) { 100 } else { 2_500 };
/// MiB of memory the model's allocator manages: all three zones (DMA to 8 MiB, DMA32 to
/// 24 MiB, Normal above).
const MODEL_MIB: usize = if cfg!(miri) { 32 } else { 48 };

/// A live block in the model: start, length, fill byte, alignment.
type Block = (usize, usize, u8, usize);

fn fill(b: &Block) {
    // SAFETY: the model only fills blocks it owns.
    unsafe { (b.0 as *mut u8).write_bytes(b.2, b.1) };
}

fn intact(b: &Block) -> bool {
    // SAFETY: as for fill.
    unsafe { std::slice::from_raw_parts(b.0 as *const u8, b.1) }
        .iter()
        .all(|&x| x == b.2)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: MODEL_CASES, ..ProptestConfig::default() })]

    /// Random kmalloc/krealloc/kfree and cache create/alloc/free/shrink/destroy against
    /// a model: blocks never overlap, are aligned and inside the region; fill patterns
    /// survive; krealloc keeps min(old, new) bytes; after freeing all and shrinking, the
    /// page allocator is back to its initial free count.
    /// MODEL_CASES × MODEL_OPS = 120 000 operations per run.
    #[test]
    fn kmalloc_and_cache_model(ops in proptest::collection::vec(op(), MODEL_OPS)) {
        let h = heap(MODEL_MIB, 2);
        let before = h.free_pages();
        // Every live block (for overlap checks), and the kmalloc ones among them.
        let mut live: BTreeMap<usize, Block> = BTreeMap::new();
        let mut km: BTreeMap<usize, Block> = BTreeMap::new();
        let mut caches: Vec<(CacheRef<'_, HostArch>, usize, Vec<Block>)> = Vec::new();
        let mut tag = 0u8;
        let mut names = 0;
        let check_new = |live: &BTreeMap<usize, Block>, b: &Block| -> Result<(), TestCaseError> {
            prop_assert!(b.1 == 0 || h.contains(b.0, b.1));
            prop_assert_eq!(b.0 % b.3, 0);
            if b.1 > 0 {
                if let Some((_, o)) = live.range(..=b.0).next_back() {
                    prop_assert!(o.0 + o.1 <= b.0 || o.1 == 0, "overlap");
                }
                if let Some((_, o)) = live.range(b.0..).find(|(_, o)| o.1 > 0) {
                    prop_assert!(b.0 + b.1 <= o.0, "overlap");
                }
            }
            Ok(())
        };
        for op in ops {
            tag = tag.wrapping_add(1);
            match op {
                Op::Kmalloc { size, align_shift, zone } => {
                    let align = 1usize << align_shift;
                    let gfp = [Gfp::DMA, Gfp::DMA32, Gfp::KERNEL][zone as usize];
                    let Ok(p) = h.kmem.kmalloc_aligned(size, align, gfp) else { continue };
                    if size == 0 {
                        prop_assert_eq!(p.as_ptr(), ZERO_SIZE_PTR);
                        continue;
                    }
                    prop_assert!(h.limits.zone_of(p.as_ptr() as u64) <= gfp.zone());
                    let b = (p.as_ptr() as usize, size, tag, align);
                    check_new(&live, &b)?;
                    fill(&b);
                    live.insert(b.0, b);
                    km.insert(b.0, b);
                }
                Op::Krealloc { pick, size } => {
                    if km.is_empty() { continue }
                    let old = *km.values().nth(pick % km.len()).unwrap();
                    prop_assert!(intact(&old));
                    let Ok(p) = h.kmem.krealloc_aligned_any(old.0 as *mut u8, size, old.3, Gfp::KERNEL)
                        else { continue };
                    live.remove(&old.0);
                    km.remove(&old.0);
                    if size == 0 { continue }
                    let keep = old.1.min(size);
                    // SAFETY: the new block is ours and at least `size` long.
                    let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), keep) };
                    prop_assert!(bytes.iter().all(|&x| x == old.2), "krealloc lost bytes");
                    let b = (p.as_ptr() as usize, size, tag, old.3);
                    check_new(&live, &b)?;
                    fill(&b);
                    live.insert(b.0, b);
                    km.insert(b.0, b);
                }
                Op::Kfree { pick } => {
                    if km.is_empty() { continue }
                    let b = *km.values().nth(pick % km.len()).unwrap();
                    prop_assert!(intact(&b), "pattern damaged at {:#x}", b.0);
                    h.kmem.kfree_any(b.0 as *mut u8).unwrap();
                    live.remove(&b.0);
                    km.remove(&b.0);
                }
                Op::CacheCreate { size, align_shift } => {
                    if caches.len() >= 6 { continue }
                    names += 1;
                    let align = 1usize << align_shift;
                    let c = h.kmem.cache_create(&format!("model-{names}"), size, align, SlabFlags::NONE, None, None)
                        .unwrap();
                    caches.push((c, size, Vec::new()));
                }
                Op::CacheAlloc { pick } => {
                    if caches.is_empty() { continue }
                    let i = pick % caches.len();
                    let (c, size, _) = &caches[i];
                    let Ok(p) = c.alloc(Gfp::KERNEL) else { continue };
                    let b = (p.as_ptr() as usize, *size, tag, c.cache().geo().layout.align);
                    check_new(&live, &b)?;
                    fill(&b);
                    live.insert(b.0, b);
                    caches[i].2.push(b);
                }
                Op::CacheFree { pick } => {
                    let Some((c, _, objs)) = caches.iter_mut().find(|c| !c.2.is_empty()) else { continue };
                    let b = objs.swap_remove(pick % objs.len());
                    prop_assert!(intact(&b));
                    c.free_any(NonNull::new(b.0 as *mut u8).unwrap()).unwrap();
                    live.remove(&b.0);
                }
                Op::CacheShrink { pick } => {
                    if caches.is_empty() { continue }
                    caches[pick % caches.len()].0.shrink();
                }
                Op::CacheDestroy { pick } => {
                    if caches.is_empty() { continue }
                    let (c, size, objs) = caches.swap_remove(pick % caches.len());
                    match c.destroy() {
                        Ok(()) => prop_assert!(objs.is_empty()),
                        Err((c, e)) => {
                            prop_assert_eq!(e, SlabError::Busy { cache: c.cache().name(), live: objs.len() });
                            caches.push((c, size, objs));
                        }
                    }
                }
            }
        }
        for (c, _, objs) in caches {
            for b in objs {
                prop_assert!(intact(&b));
                c.free_any(NonNull::new(b.0 as *mut u8).unwrap()).unwrap();
                live.remove(&b.0);
            }
            c.destroy().map_err(|(_, e)| e).unwrap();
        }
        for b in km.values() {
            prop_assert!(intact(b));
            h.kmem.kfree_any(b.0 as *mut u8).unwrap();
        }
        h.kmem.shrink_all();
        prop_assert_eq!(h.free_pages(), before);
    }
}
