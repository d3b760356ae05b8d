//! kmalloc on fake NUMA nodes: slabs are counted on the node their pages lie on, and
//! objects freed on another node than the one that allocated them leave every node's
//! page count as it was once the caches shrink.

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
