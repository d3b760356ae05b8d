//! kmem as the `#[global_allocator]` of an ordinary multi-threaded Rust program: std
//! collections work on top of it, from more threads than it has CPU slots, with values
//! freed on other threads; a request it cannot serve is a clean failure.

use std::collections::BTreeMap;
use std::sync::mpsc;

#[global_allocator]
static KMEM: kmem::hosted::Heap = kmem::hosted::Heap::with_capacity_and_cpus(256 << 20, 4);

#[test]
fn std_collections_on_kmem_across_threads() {
    let (tx, rx) = mpsc::channel::<(u64, Box<[u64]>, String)>();
    let producers: Vec<_> = (0..8u64)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut map = BTreeMap::new();
                for i in 0..2_000u64 {
                    let n = (i * 7 + t) % 300 + 1;
                    let v: Vec<u64> = (0..n).map(|x| x ^ t).collect();
                    map.insert(i, format!("thread {t} item {i}"));
                    tx.send((t, v.into_boxed_slice(), map[&i].clone())).unwrap();
                    if i % 3 == 0 {
                        map.remove(&(i / 2));
                    }
                }
                map.len()
            })
        })
        .collect();
    drop(tx);
    let mut seen = 0;
    for (t, v, s) in rx {
        assert!(v.iter().enumerate().all(|(x, &y)| y == x as u64 ^ t));
        assert!(s.starts_with(&format!("thread {t} ")));
        seen += 1;
    }
    for p in producers {
        assert!(p.join().unwrap() > 0);
    }
    assert_eq!(seen, 16_000);

    let k = KMEM.get().expect("the region was taken from the OS");
    let mut caches = 0;
    k.slabinfo(|i| caches += usize::from(i.num_slabs > 0));
    assert!(caches > 3, "the program's objects live in kmem's caches");
}

#[test]
fn exhaustion_is_null_and_the_allocator_recovers() {
    use std::alloc::{GlobalAlloc, Layout};
    // A second, small instance, driven through the GlobalAlloc interface directly.
    let small = kmem::hosted::Heap::with_capacity_and_cpus(16 << 20, 2);
    let l = Layout::from_size_align(1 << 20, 8).unwrap();
    let mut held = Vec::new();
    loop {
        // SAFETY: a valid non-zero layout; null is checked.
        let p = unsafe { small.alloc(l) };
        if p.is_null() {
            break;
        }
        held.push(p);
    }
    assert!(!held.is_empty() && held.len() < 16, "{}", held.len());
    for p in held.drain(..) {
        // SAFETY: p came from small.alloc(l).
        unsafe { small.dealloc(p, l) };
    }
    // SAFETY: as above.
    let p = unsafe { small.alloc(l) };
    assert!(!p.is_null(), "whole region allocatable again");
    // SAFETY: as above.
    unsafe { small.dealloc(p, l) };
}

#[test]
fn blocks_past_the_largest_buddy_block_come_from_the_system() {
    let big = vec![7u8; kmem::hosted::LARGEST_BLOCK + 1];
    assert!(big.iter().all(|&b| b == 7));
    let mut v = vec![1u32; 1000];
    v.resize(3_000_000, 2); // crosses LARGEST_BLOCK through realloc
    assert_eq!(v[999], 1);
    assert_eq!(v[2_999_999], 2);
    v.truncate(10);
    v.shrink_to_fit(); // and back
    assert_eq!(v, [1; 10]);
}
