//! The largest machine the library supports: [`MAX_CPUS`] per-CPU slots of page lists
//! and magazines, all in use at once, with nothing lost.

use super::*;
use crate::mm::numa::MAX_CPUS;

#[test]
fn max_cpus_slots_all_in_use_conserve_pages() {
    let h = heap(256, MAX_CPUS);
    assert_eq!(h.kmem.pages().nr_cpus(), MAX_CPUS);
    let before = h.free_pages();
    let all_in = std::sync::Barrier::new(MAX_CPUS);
    std::thread::scope(|s| {
        // As many live threads as slots: each that gets an exclusive id owns a slot, so
        // slots up to the last one fill with pages and objects at the same time.
        for t in 0..MAX_CPUS {
            let (k, all_in) = (&*h.kmem, &all_in);
            s.spawn(move || {
                let size = [16, 64, 256, 2048][t % 4];
                let held: Vec<usize> = (0..8)
                    .map(|_| k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize)
                    .collect();
                let page = k.alloc_pages(0, Gfp::KERNEL).unwrap();
                all_in.wait();
                for p in held {
                    k.kfree_any(p as *mut u8).unwrap();
                }
                k.pages().free_pages_any(page, 0).unwrap();
            });
        }
    });
    // More than half the threads held exclusive ids at once, so the upper half of the
    // slots still caches pages after the lower half is drained.
    let pages = h.kmem.pages();
    (0..MAX_CPUS / 2).for_each(|cpu| pages.drain_pcp(cpu));
    let upper: u64 = pages.info().zones.iter().map(|z| z.pcp_pages).sum();
    assert!(
        upper > 0,
        "no pages cached in slots {}..{MAX_CPUS}",
        MAX_CPUS / 2
    );
    h.kmem.shrink_all();
    assert_eq!(h.free_pages(), before);
}
