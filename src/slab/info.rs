//! What a cache tells about itself: its public figures (name, sizes, debug flags,
//! reports) and [`SlabInfo`], one `/proc/slabinfo` line.
//!
//! `SlabCache::info` reads every CPU's magazines (without their locks: the counts may be
//! a moment old), then each node's depot and each node's lists under its lock, one lock at
//! a time, so its figures are a consistent sum only on a quiet cache.

use core::fmt;

use super::{CacheName, DebugFlags, SlabCache};
use crate::arch::Arch;
use crate::mm::numa::MAX_NODES;

impl<A: Arch> SlabCache<A> {
    /// Bytes a user may use in each object: the stride; or, up to its state word, the
    /// object part of a debug slot (past it lies the right red zone) or the slot.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(100, Gfp::KERNEL)?;
    /// let cache = kmem.kmalloc_cache_for(100, 8, Gfp::KERNEL).unwrap();
    /// // SAFETY: p is live.
    /// assert_eq!(unsafe { kmem.ksize(p.as_ptr()) }?, cache.usable_size());
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn usable_size(&self) -> usize {
        let g = self.geo();
        if !g.debug.flags.is_empty() {
            g.debug.object
        } else if g.fp != 0 {
            g.fp
        } else {
            g.layout.stride
        }
    }

    /// The cache's debug flags.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::DebugFlags;
    /// let all = DebugFlags::ALL;
    /// assert_eq!(kmem.set_debug(Some("kmalloc-256"), all), Some((1, 0)));
    /// let cache = kmem.kmalloc_cache_for(256, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(cache.debug_flags(), all);
    /// ```
    pub fn debug_flags(&self) -> DebugFlags {
        self.geo().debug.flags
    }

    /// Problems reported so far (red zones, poison, free-list links).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let flags = SlabFlags::RED_ZONE | SlabFlags::POISON;
    /// let c = kmem.cache_create("checked", 48, 8, flags, None, None)?;
    /// let p = c.alloc(Gfp::KERNEL)?;
    /// unsafe { c.free(p) }?; // SAFETY: p is not used again.
    /// assert_eq!(c.cache().reports(), 0, "no red zone or poison damaged");
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn reports(&self) -> usize {
        self.reports.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// The cache's name.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let c = kmem.cache_create("inode", 600, 8, kmem::SlabFlags::NONE, None, None)?;
    /// let mut first = None;
    /// kmem.for_each_cache(|cache| { first.get_or_insert(cache.name()); });
    /// assert_eq!(first.unwrap().as_str(), "inode"); // user caches come first
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn name(&self) -> CacheName {
        self.name
    }

    /// Object size the cache was created with (for a kmalloc cache, its class size);
    /// [`SlabCache::usable_size`] may be larger.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let c = kmem.cache_create("inode", 600, 8, kmem::SlabFlags::NONE, None, None)?;
    /// assert_eq!(c.cache().object_size(), 600);
    /// assert!(c.cache().usable_size() >= 600);
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn object_size(&self) -> usize {
        self.object_size
    }

    /// Distance between objects in a slab, in bytes: at least
    /// [`SlabCache::usable_size`], more with debug slots or a word after the object.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let cache = kmem.kmalloc_cache_for(8, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(cache.stride(), 8, "no bytes per object beside the object");
    /// ```
    pub fn stride(&self) -> usize {
        self.geo().layout.stride
    }

    /// Current figures, in the shape of a `/proc/slabinfo` line.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::Gfp;
    /// let p = kmem.kmalloc(1000, Gfp::KERNEL)?;
    /// let info = kmem.kmalloc_cache_for(1000, 8, Gfp::KERNEL).unwrap().info();
    /// assert_eq!(info.active_objs, 1);
    /// assert!(info.num_slabs >= 1);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn info(&self) -> SlabInfo {
        let mut cpu_cached = 0;
        let mut cap = 0;
        let mut node_cached = [0; MAX_NODES];
        let mut alien_cached = 0;
        for c in 0..self.cpu.len() {
            let m = self.cpu.cpu(c);
            cpu_cached += m.cached();
            node_cached[m.node()] += m.cached();
            for (n, b) in m.aliens() {
                node_cached[n] += b.objects().len();
                alien_cached += b.objects().len();
            }
            cap = m.cap();
        }
        let (mut depot_full, mut depot_empty) = (0, 0);
        for (n, cached) in node_cached.iter_mut().enumerate().take(self.nodes()) {
            let d = self.depot(n).lock();
            (depot_full, depot_empty) = (depot_full + d.full(), depot_empty + d.empty());
            *cached += d.full() * cap;
        }
        let num = self.geo().layout.num;
        let (mut slabs, mut active_slabs, mut free_objects, mut remote_frees) = (0, 0, 0, 0);
        let (mut node_slabs, mut node_active) = ([0; MAX_NODES], [0; MAX_NODES]);
        for n in 0..self.nodes() {
            let node = self.node(n).lock();
            slabs += node.slabs;
            active_slabs += node.full.len() + node.partial.len();
            free_objects += node.free_objects;
            remote_frees += node.remote_frees;
            node_slabs[n] = node.slabs;
            // Saturating: objects may move between a CPU's count and this node's meanwhile.
            node_active[n] = (node.slabs * num).saturating_sub(node.free_objects + node_cached[n]);
        }
        let total = slabs * num;
        SlabInfo {
            name: self.name,
            active_objs: total - free_objects - cpu_cached - alien_cached - depot_full * cap,
            num_objs: total,
            objsize: self.geo().layout.stride,
            objperslab: num,
            pagesperslab: 1 << self.geo().layout.order,
            limit: 2 * cap,
            magazine: cap,
            cpu_cached,
            alien_cached,
            depot_full,
            depot_empty,
            active_slabs,
            num_slabs: slabs,
            node_slabs,
            node_active,
            remote_frees,
            waste_permille: self.geo().layout.waste_permille(),
        }
    }
}

/// One cache's figures.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::Gfp;
/// let p = kmem.kmalloc(64, Gfp::KERNEL)?;
/// let info = kmem.kmalloc_cache_for(64, 8, Gfp::KERNEL).unwrap().info();
/// println!("{info}"); // one /proc/slabinfo line
/// assert_eq!(info.num_objs, info.num_slabs * info.objperslab);
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SlabInfo {
    /// The cache's name.
    pub name: CacheName,
    /// Objects handed out to users.
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Bytes from one object to the next ([`SlabCache::stride`]).
    pub objsize: usize,
    /// Objects in one slab.
    pub objperslab: usize,
    /// Pages in one slab (a power of two).
    pub pagesperslab: usize,
    /// Most objects a CPU holds: its two magazines.
    pub limit: usize,
    /// Objects a magazine holds.
    pub magazine: usize,
    /// Free objects held in CPUs' magazines, all CPUs.
    pub cpu_cached: usize,
    /// Free objects of other nodes held in CPUs' alien batches, on their way home.
    pub alien_cached: usize,
    /// Full magazines in the depot.
    pub depot_full: usize,
    /// Empty magazines in the depot.
    pub depot_empty: usize,
    /// Slabs with at least one object handed out (full or partial).
    pub active_slabs: usize,
    /// All slabs: full, partial and empty ones kept.
    pub num_slabs: usize,
    /// Slabs on each NUMA node's lists, whose pages lie on that node (all on node 0 on
    /// one node).
    pub node_slabs: [usize; MAX_NODES],
    /// Objects of each node's slabs handed out to users (the node's share of
    /// `active_objs`: a CPU's magazines and its node's depot hold only that node's
    /// objects).
    pub node_active: [usize; MAX_NODES],
    /// Objects freed on a CPU of another node than their slab's that have gone back to
    /// their home node's slabs (through alien batches).
    pub remote_frees: usize,
    /// Tail waste per slab, ‰.
    pub waste_permille: usize,
}

impl SlabInfo {
    /// The `/proc/slabinfo` header line.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::slab::SlabInfo;
    /// println!("{}", SlabInfo::HEADER);
    /// kmem.slabinfo(|i| println!("{i}"));
    /// assert!(SlabInfo::HEADER.starts_with("# name"));
    /// ```
    pub const HEADER: &'static str = "# name               <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <magazine> : cpu <cached> : depot <full> <empty> : slabdata <active_slabs> <num_slabs> : waste";
}

impl fmt::Display for SlabInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<20} {:>8} {:>8} {:>7} {:>5} {:>3} : tunables {:>3} {:>3} : cpu {:>5} : depot {:>3} {:>3} : slabdata {:>6} {:>6} : {:>2}.{}%",
            self.name,
            self.active_objs,
            self.num_objs,
            self.objsize,
            self.objperslab,
            self.pagesperslab,
            self.limit,
            self.magazine,
            self.cpu_cached,
            self.depot_full,
            self.depot_empty,
            self.active_slabs,
            self.num_slabs,
            self.waste_permille / 10,
            self.waste_permille % 10,
        )?;
        // Per-node slab and handed-out counts and the objects on their way home, once a
        // slab lies past node 0.
        if let Some(last) = self
            .node_slabs
            .iter()
            .rposition(|&n| n > 0)
            .filter(|&l| l > 0)
        {
            f.write_str(" : nodes")?;
            for (slabs, active) in self.node_slabs[..=last].iter().zip(&self.node_active) {
                write!(f, " {slabs}/{active}")?;
            }
            write!(f, " : alien {}", self.alien_cached)?;
        }
        Ok(())
    }
}
