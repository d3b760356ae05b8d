//! False out-of-memory: objects freed into per-CPU arrays are free memory, and an
//! allocation that finds no pages must take them back — from every CPU's arrays, not only
//! its own — before it fails.
//!
//! A test binary of its own, so that its threads get the CPU slots they expect: hosted
//! thread ids are process-wide, and the library's other tests run threads of their own.

use std::sync::{Barrier, Mutex};

use kmem::hosted::{HostArch, Region};
use kmem::kmalloc::CLASS_SIZES;
use kmem::mm::MAX_ORDER;
use kmem::{Arch, Gfp, Kmem, PageAllocator, ZoneLimits};

const CPUS: usize = 4;

/// Bytes of free objects in every cache's CPU and depot magazines.
fn parked(kmem: &Kmem<HostArch>) -> usize {
    let mut bytes = 0;
    kmem.slabinfo(|i| bytes += (i.cpu_cached + i.depot_full * i.magazine) * i.objsize);
    bytes
}

/// One object of every kmalloc class (8 B to 1 MiB), each freed before the next: each
/// class's array keeps what its refill took, about 7 MiB per CPU, most of it in the
/// arrays of classes over 128 KiB, which hold one object each.
fn every_class_once(kmem: &Kmem<HostArch>, who: &str) {
    for &size in &CLASS_SIZES {
        let p = kmem
            .kmalloc(size as usize, Gfp::KERNEL)
            .unwrap_or_else(|e| panic!("{who}: kmalloc({size}): {e}"));
        // SAFETY: p came from kmalloc and is not used again.
        unsafe { kmem.kfree(p.as_ptr()) }.unwrap();
    }
}

/// Four CPUs of a 32 MiB heap (as the firmware's x86_64 self-test at `-m 32M`) each
/// allocate and free one object of every class, in turn: the four together would park
/// more than the heap holds in their arrays, so the later passes need the earlier ones'
/// parked objects back. Then, with a fifth of the heap parked in those CPUs' arrays and
/// their threads alive, a fifth thread takes 4 MiB page blocks until none is left: the
/// parked objects, all in other CPUs' arrays, come back, so it gets nearly all of the
/// heap.
#[test]
fn objects_parked_in_every_cpus_arrays_come_back_when_pages_run_short() {
    let ram = Region::new(32 << 20).unwrap();
    // SAFETY: the region is RAM nothing else uses, and outlives the allocator (dropped
    // after it, at the end of this function).
    let pages = unsafe {
        PageAllocator::<HostArch>::new(&ram.normalized().unwrap(), ZoneLimits::FLAT, CPUS, None)
    }
    .unwrap();
    let kmem = Kmem::new(pages).unwrap();
    kmem.pages().drain_all_pcp();
    let free = kmem.pages().info().free_pages();

    let turn = Mutex::new(0);
    let parked_all = Barrier::new(CPUS + 1);
    let done = Barrier::new(CPUS + 1);
    let ids = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for cpu in 0..CPUS {
            let (kmem, turn, parked_all, done, ids) = (&kmem, &turn, &parked_all, &done, &ids);
            s.spawn(move || {
                // A failure moves the turn on, and the failing thread still reaches the
                // barriers, so that no thread waits for ever; the test then fails.
                let result = loop {
                    let mut t = turn.lock().unwrap();
                    if *t == cpu {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            every_class_once(kmem, &format!("thread {cpu}"))
                        }));
                        ids.lock().unwrap().push(HostArch::cpu_id());
                        *t += 1;
                        break r;
                    }
                    drop(t);
                    std::thread::yield_now();
                };
                // Stay alive, keeping this CPU slot and its arrays, until the end.
                parked_all.wait();
                done.wait();
                if let Err(e) = result {
                    std::panic::resume_unwind(e);
                }
            });
        }
        parked_all.wait();
        let before = parked(&kmem);
        let mut blocks = Vec::new();
        while let Ok(pa) = kmem.alloc_pages(MAX_ORDER, Gfp::KERNEL) {
            blocks.push(pa);
        }
        let after = parked(&kmem);
        for &pa in &blocks {
            // SAFETY: each block came from alloc_pages above and is not used again.
            unsafe { kmem.pages().free_pages(pa, MAX_ORDER) }.unwrap();
        }
        // Checked once the threads are released, so that a failure cannot hang them.
        done.wait();
        let mut ids = ids.lock().unwrap().clone();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            CPUS,
            "each thread had a CPU slot of its own: {ids:?}"
        );
        // All in the four threads' arrays: this thread allocated none of it.
        assert!(
            before as u64 > free * 4096 / 5,
            "{before} bytes parked in arrays"
        );
        let got = (blocks.len() as u64) << MAX_ORDER;
        // Slabs that still hold objects of the other classes' arrays, and
        // fragmentation, keep some 4 MiB blocks from forming: at most two of them.
        assert!(
            got + (2 << MAX_ORDER) >= free,
            "{got} of {free} pages came back as 4 MiB blocks; {after} bytes still parked"
        );
    });
    kmem.shrink_all();
    kmem.pages().drain_all_pcp();
    assert_eq!(kmem.pages().info().free_pages(), free, "pages conserved");
}
