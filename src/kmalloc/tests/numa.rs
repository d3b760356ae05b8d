//! kmalloc on fake NUMA nodes: slabs are counted on the node their pages lie on,
//! allocations land on the caller's node, and objects freed on another node than the
//! one that allocated them go back to their home node's slabs through alien batches
//! (never to the freeing CPU's magazines) and leave every node's page count as it was
//! once the caches shrink.

use super::*;
use crate::hosted::{Heap as NumaHeap, owned_slots, set_node};
use crate::slab::SlabInfo;

/// Each node's free pages, per-CPU lists drained.
fn free_by_node(k: &Kmem<HostArch>) -> Vec<u64> {
    k.pages().drain_all_pcp();
    k.pages()
        .info()
        .node_infos()
        .iter()
        .map(|n| n.free_pages())
        .collect()
}

fn slabs_64(k: &Kmem<HostArch>) -> SlabInfo {
    k.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().info()
}

#[test]
fn cross_node_kfrees_conserve_every_nodes_pages_and_slab_counts() {
    let heap = NumaHeap::with_nodes(2, 32 * MIB);
    let k = heap.get().unwrap();
    k.shrink_all();
    let before = free_by_node(k);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<usize>>();
    std::thread::scope(|s| {
        s.spawn(move || {
            set_node(1);
            for _ in 0..20 {
                let batch = (0..200)
                    .map(|_| k.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr() as usize)
                    .collect();
                tx.send(batch).unwrap();
            }
        });
        s.spawn(move || {
            set_node(0);
            while let Ok(batch) = rx.recv() {
                for p in batch {
                    k.kfree_any(p as *mut u8).unwrap();
                }
            }
        });
    });
    let info = slabs_64(k);
    assert_eq!(info.node_slabs.iter().sum::<usize>(), info.num_slabs);
    if owned_slots() {
        assert!(info.node_slabs[1] > 0, "node 1's CPU grew slabs on node 1");
        assert!(info.to_string().contains(" : nodes "), "{info}");
    }
    k.shrink_all();
    let after = slabs_64(k);
    assert_eq!(after.node_slabs.iter().sum::<usize>(), after.num_slabs);
    assert_eq!(free_by_node(k), before, "every node got its pages back");
}

/// The node of each object in `objs`.
fn nodes_of(k: &Kmem<HostArch>, objs: &[usize]) -> Vec<usize> {
    objs.iter()
        .map(|&p| k.pages().node_of(HostArch::virt_to_phys(p)).unwrap())
        .collect()
}

/// `n` objects of 64 bytes allocated on a thread of node `node`.
fn alloc_on(k: &Kmem<HostArch>, node: usize, n: usize) -> Vec<usize> {
    std::thread::scope(|s| {
        s.spawn(|| {
            set_node(node);
            (0..n)
                .map(|_| k.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr() as usize)
                .collect()
        })
        .join()
        .unwrap()
    })
}

/// Runs `f` on a thread of node `node`.
fn on_node<R: Send>(node: usize, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            set_node(node);
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn allocations_land_on_the_callers_node() {
    let heap = NumaHeap::with_nodes(2, 16 * MIB);
    let k = heap.get().unwrap();
    for node in [0, 1] {
        let objs = alloc_on(k, node, 300);
        if owned_slots() {
            assert!(nodes_of(k, &objs).iter().all(|&n| n == node), "node {node}");
            assert!(slabs_64(k).node_active[node] >= 300);
        }
        on_node(node, || {
            for &p in &objs {
                k.kfree_any(p as *mut u8).unwrap();
            }
        });
    }
    let info = slabs_64(k);
    assert_eq!(info.active_objs, 0);
    assert_eq!(info.node_active, [0; crate::mm::numa::MAX_NODES]);
}

#[test]
fn remote_frees_go_home_and_the_freeing_node_never_hands_them_out() {
    let heap = NumaHeap::with_nodes(2, 16 * MIB);
    let k = heap.get().unwrap();
    let remote = alloc_on(k, 1, 400);
    let before = slabs_64(k);
    // Half one by one, half in bulk (the bulk free's own path).
    let (one, bulk) = remote.split_at(200);
    let again = on_node(0, || {
        for &p in one {
            k.kfree_any(p as *mut u8).unwrap();
        }
        let bulk: Vec<_> = bulk.iter().map(|&p| p as *mut u8).collect();
        // SAFETY: the objects are live kmalloc objects, not used again.
        unsafe { k.kfree_bulk(&bulk) }.unwrap();
        alloc_keep(k, 800)
    });
    let after = slabs_64(k);
    // Without owned slots a thread's CPU, and so its node, is not guaranteed: only the
    // counts are checked then.
    if owned_slots() {
        assert_eq!(
            after.remote_frees - before.remote_frees + after.alien_cached,
            400,
            "every remote free went home or waits in an alien batch"
        );
        assert!(
            after.alien_cached < crate::slab::alien::ALIEN_MAX,
            "full batches went home"
        );
        assert!(
            again.iter().all(|p| !remote.contains(p)),
            "node 0 handed out a remote object"
        );
        assert!(nodes_of(k, &again).iter().all(|&n| n == 0));
        assert_eq!(after.node_active[1], 0, "every node-1 object is back home");
        assert_eq!(after.node_active[0], 800);
        let line = after.to_string();
        let tail = format!(" : alien {}", after.alien_cached);
        assert!(
            line.contains(" : nodes ") && line.ends_with(&tail),
            "{line}"
        );
    }
    assert_eq!(after.node_active.iter().sum::<usize>(), after.active_objs);
    assert_eq!(
        k.validate(Some("kmalloc-64")),
        Some(0),
        "alien batches check out"
    );
    on_node(0, || {
        for &p in &again {
            k.kfree_any(p as *mut u8).unwrap();
        }
    });
    k.reap();
    let drained = slabs_64(k);
    assert_eq!(
        drained.alien_cached, 0,
        "a reap pass sends alien batches home"
    );
    if owned_slots() {
        assert_eq!(drained.remote_frees - before.remote_frees, 400);
    }
    assert_eq!(drained.active_objs, 0);
}

/// `n` objects of 64 bytes allocated on the running thread.
fn alloc_keep(k: &Kmem<HostArch>, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| k.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr() as usize)
        .collect()
}

#[test]
fn a_local_free_lands_in_the_cpus_magazine_and_a_remote_one_in_its_alien_batch() {
    let heap = NumaHeap::with_nodes(2, 16 * MIB);
    let k = heap.get().unwrap();
    let remote = alloc_on(k, 1, 1)[0];
    on_node(0, || {
        let local = alloc_keep(k, 1)[0];
        let before = slabs_64(k);
        // SAFETY: `local` is a live kmalloc object, not used again.
        unsafe { k.kfree(local as *mut u8) }.unwrap();
        let after_local = slabs_64(k);
        // SAFETY: `remote` is a live kmalloc object, not used again.
        unsafe { k.kfree(remote as *mut u8) }.unwrap();
        let after_remote = slabs_64(k);
        if owned_slots() {
            assert_eq!(nodes_of(k, &[local, remote]), [0, 1]);
            assert_eq!(
                (after_local.cpu_cached, after_local.alien_cached),
                (before.cpu_cached + 1, before.alien_cached),
                "the node-local free went to the CPU's magazine"
            );
            assert_eq!(
                (after_remote.cpu_cached, after_remote.alien_cached),
                (after_local.cpu_cached, after_local.alien_cached + 1),
                "the remote free went to the alien batch"
            );
            assert_eq!(after_remote.remote_frees, before.remote_frees);
        }
        assert_eq!(after_local.active_objs + 1, before.active_objs);
        assert_eq!(after_remote.active_objs, 0);
        assert_eq!(
            after_remote.node_active.iter().sum::<usize>(),
            after_remote.active_objs
        );
    });
    assert_eq!(k.validate(Some("kmalloc-64")), Some(0));
    k.reap();
    let drained = slabs_64(k);
    assert_eq!((drained.alien_cached, drained.active_objs), (0, 0));
}

#[test]
fn a_double_free_of_an_object_freed_remotely_is_refused() {
    let heap = NumaHeap::with_nodes(2, 16 * MIB);
    let k = heap.get().unwrap();
    let objs = alloc_on(k, 1, 2);
    on_node(0, || {
        // SAFETY: objs[0] is live, and freed once: the second call must be refused.
        unsafe {
            k.kfree(objs[0] as *mut u8).unwrap();
            if owned_slots() {
                assert_eq!(slabs_64(k).alien_cached, 1, "in node 0's alien batch");
            }
            assert!(matches!(
                k.kfree(objs[0] as *mut u8),
                Err(SlabError::DoubleFree { .. })
            ));
        }
    });
    on_node(1, || {
        // SAFETY: objs[0] is already free: refused; objs[1] is live.
        unsafe {
            assert!(matches!(
                k.kfree(objs[0] as *mut u8),
                Err(SlabError::DoubleFree { .. })
            ));
            k.kfree(objs[1] as *mut u8).unwrap();
        }
    });
    assert_eq!(slabs_64(k).active_objs, 0);
}

#[test]
fn threads_on_both_nodes_trade_objects_and_every_count_is_conserved() {
    let heap = NumaHeap::with_nodes(2, 32 * MIB);
    let k = heap.get().unwrap();
    k.shrink_all();
    let pages_before = free_by_node(k);
    let rounds = if cfg!(miri) { 3 } else { 200 };
    // Four threads, two per node; each sends its batches to the next, on the other node.
    let chans: Vec<_> = (0..4)
        .map(|_| std::sync::mpsc::channel::<Vec<usize>>())
        .collect();
    let (txs, rxs): (Vec<_>, Vec<_>) = chans.into_iter().unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(t + 1) % 4].clone();
            s.spawn(move || {
                set_node(t % 2);
                for r in 0..rounds {
                    let size = [24, 64, 200, 1000][(t + r) % 4];
                    let batch = (0..32)
                        .map(|_| k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize)
                        .collect();
                    tx.send(batch).unwrap();
                    for p in rx.recv().unwrap() {
                        k.kfree_any(p as *mut u8).unwrap();
                    }
                }
            });
        }
        drop(txs);
    });
    assert_eq!(k.validate(None), Some(0));
    k.slabinfo(|i| {
        assert_eq!(i.active_objs, 0, "{i}");
        assert_eq!(i.node_active.iter().sum::<usize>(), 0, "{i}");
        assert_eq!(i.node_slabs.iter().sum::<usize>(), i.num_slabs, "{i}");
    });
    k.shrink_all();
    assert_eq!(
        free_by_node(k),
        pages_before,
        "every node got its pages back"
    );
}
