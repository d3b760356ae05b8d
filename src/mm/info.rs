//! What the page allocator reports: [`PageInfo`] (the boot log's zone table and metadata
//! lines), a zone's [`ZoneInfo`] and the free blocks by order, [`BuddyInfo`]. The figures
//! are read without the zone locks, so each is exact but they may be from different
//! instants.

use core::fmt;

use super::buddy::NR_ORDERS;
use super::frame::PageFrame;
use super::memmap::{PAGE_SIZE, PhysRange};
use super::node::{NodeInfo, NodeMeta, NumaStat};
use super::numa::MAX_NODES;
use super::zone::{NR_ZONES, ZoneKind};
use super::{PageAllocator, hotplug};
use crate::arch::Arch;

/// Figures for one zone.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// for z in kmem.pages().info().zones {
///     println!("{}: {} of {} pages in use", z.kind, z.used_pages(), z.managed_pages);
///     assert!(z.free_pages + z.pcp_pages <= z.managed_pages);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneInfo {
    /// The zone these figures are for.
    pub kind: ZoneKind,
    /// Frames handed to this zone: at init and by regions added since, less removed
    /// ones (metadata excluded).
    pub managed_pages: u64,
    /// Frames on the buddy free lists.
    pub free_pages: u64,
    /// Free frames held in per-CPU lists.
    pub pcp_pages: u64,
    /// Free blocks of each order.
    pub free_blocks: [u32; NR_ORDERS],
}

impl ZoneInfo {
    /// Frames handed out to users.
    ///
    /// # Examples
    /// ```
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// use kmem::Gfp;
    /// use kmem::mm::zone::ZoneKind;
    /// let normal = |p: &PageAllocator<_>| p.info().zones[ZoneKind::Normal.index()];
    /// let before = normal(&pages).used_pages();
    /// let pa = pages.alloc_pages(2, Gfp::KERNEL)?;
    /// assert_eq!(normal(&pages).used_pages(), before + 4);
    /// unsafe { pages.free_pages(pa, 2) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn used_pages(&self) -> u64 {
        self.managed_pages - self.free_pages - self.pcp_pages
    }
}

/// Figures for the whole page allocator.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// let info = kmem.pages().info();
/// print!("{info}"); // the zone table and the metadata line of the boot log
/// assert_eq!(info.frame_bytes, 24);
/// assert!(info.free_pages() < info.managed_pages());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PageInfo {
    /// Each zone's figures over all nodes, by [`ZoneKind::index`]; empty zones included.
    pub zones: [ZoneInfo; NR_ZONES],
    /// Each node's figures; the first [`PageInfo::nr_nodes`] are the allocator's.
    pub nodes: [NodeInfo; MAX_NODES],
    /// Number of nodes.
    pub nr_nodes: usize,
    /// Number of page descriptors, those of regions added at run time included.
    pub frames: u32,
    /// Bytes of one descriptor.
    pub frame_bytes: usize,
    /// Node 0's metadata: on one node, all of it (descriptors, per-CPU lists and zones);
    /// on several, node 0's plus what the nodes share. [`NodeInfo::meta`] has each
    /// node's.
    pub meta: PhysRange,
    /// Bytes of every node's metadata (what the nodes' [`NodeInfo::meta`] add up to).
    pub meta_bytes: u64,
    /// Regions added at run time and online now.
    pub hot_regions: u32,
    /// Bytes of those regions, their descriptors included.
    pub hot_bytes: u64,
    /// Bytes of their descriptors (carved from each region's first frames).
    pub hot_meta_bytes: u64,
}

impl PageInfo {
    /// The figures of the allocator's nodes.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let info = kmem.pages().info();
    /// assert_eq!(info.node_infos().len(), 1);
    /// assert_eq!(info.node_infos()[0].managed_pages(), info.managed_pages());
    /// ```
    pub fn node_infos(&self) -> &[NodeInfo] {
        &self.nodes[..self.nr_nodes]
    }

    /// Free frames, including those in per-CPU lists.
    ///
    /// # Examples
    /// ```
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// use kmem::Gfp;
    /// let before = pages.info().free_pages();
    /// let pa = pages.alloc_pages(3, Gfp::KERNEL)?;
    /// assert_eq!(pages.info().free_pages(), before - 8);
    /// unsafe { pages.free_pages(pa, 3) }?; // SAFETY: pa is not used again.
    /// # Ok::<(), kmem::PageError>(())
    /// ```
    pub fn free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.free_pages + z.pcp_pages).sum()
    }

    /// Frames handed to the zones: every usable frame but the metadata's.
    ///
    /// # Examples
    /// ```
    /// use kmem::mm::memmap::PAGE_SIZE;
    /// # use kmem::hosted::{HostArch, Region};
    /// # use kmem::{PageAllocator, ZoneLimits};
    /// # let ram = Region::new(16 << 20).unwrap();
    /// # let map = ram.normalized().unwrap();
    /// # // SAFETY: the region is RAM nothing else uses while the allocator lives.
    /// # let pages = unsafe { PageAllocator::<HostArch>::new(&map, ZoneLimits::FLAT, 1, None) };
    /// # let pages = pages.unwrap();
    /// let info = pages.info();
    /// assert_eq!(info.managed_pages() * PAGE_SIZE + info.meta.size(), map.usable_bytes());
    /// ```
    pub fn managed_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.managed_pages).sum()
    }

    /// Metadata as parts per million of the memory it manages (descriptors for all
    /// usable frames plus per-CPU lists, against managed frames).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let ppm = kmem.pages().info().metadata_ppm();
    /// assert!(ppm < 10_000, "descriptors take under 1 % of memory: {ppm} ppm");
    /// ```
    pub fn metadata_ppm(&self) -> u64 {
        self.meta_bytes * 1_000_000 / (self.managed_pages() * PAGE_SIZE).max(1)
    }
}

impl fmt::Display for PageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<7} {:>10} {:>10} {:>10} {:>10}",
            "zone", "managed", "free", "pcp", "used"
        )?;
        for z in &self.zones {
            writeln!(
                f,
                "{:<7} {:>10} {:>10} {:>10} {:>10}",
                z.kind.name(),
                z.managed_pages,
                z.free_pages,
                z.pcp_pages,
                z.used_pages()
            )?;
        }
        let ppm = self.metadata_ppm();
        write!(
            f,
            "page descriptors: {} x {} B; metadata {} KiB",
            self.frames,
            self.frame_bytes,
            self.meta_bytes / 1024,
        )?;
        if self.nr_nodes == 1 {
            write!(f, " at {}", self.meta)?;
        }
        writeln!(
            f,
            " = {}.{:04} % of managed memory",
            ppm / 10_000,
            ppm % 10_000
        )?;
        if self.nr_nodes > 1 {
            write!(f, "{}", NodeMeta(self))?;
        }
        if self.nr_nodes > 1 {
            write!(f, "{}", NumaStat(self))?;
        }
        if self.hot_regions > 0 {
            writeln!(
                f,
                "added at run time: {} regions, {} KiB, of which descriptors {} KiB",
                self.hot_regions,
                self.hot_bytes / 1024,
                self.hot_meta_bytes / 1024
            )?;
        }
        Ok(())
    }
}

/// `/proc/buddyinfo`-style view: free blocks per order and zone; on several nodes, per
/// node and zone (rows named `node:zone`).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::mm::BuddyInfo;
/// use kmem::mm::zone::NR_ZONES;
/// let text = BuddyInfo(&kmem.pages().info()).to_string();
/// print!("{text}");
/// assert_eq!(text.lines().count(), 1 + NR_ZONES); // a header, then one row per zone
/// ```
pub struct BuddyInfo<'a>(
    /// The figures to show.
    pub &'a PageInfo,
);

impl fmt::Display for BuddyInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = self.0.nr_nodes == 1;
        // Rows are named `zone`, or `node:zone` on several nodes.
        write!(f, "{:<w$}", "order", w = if one { 7 } else { 9 })?;
        for o in 0..NR_ORDERS {
            write!(f, " {o:>5}")?;
        }
        writeln!(f)?;
        for (node, n) in self.0.node_infos().iter().enumerate() {
            for z in &n.zones {
                if !one {
                    write!(f, "{node}:")?;
                }
                write!(f, "{:<7}", z.kind.name())?;
                for n in z.free_blocks {
                    write!(f, " {n:>5}")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl<A: Arch> PageAllocator<A> {
    /// Current figures.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let info = kmem.pages().info();
    /// let free_mib = info.free_pages() * kmem::mm::memmap::PAGE_SIZE >> 20;
    /// assert!(free_mib > 8, "most of the 16 MiB is free: {free_mib} MiB");
    /// ```
    pub fn info(&self) -> PageInfo {
        let (mut hot_regions, mut hot_frames, mut hot_meta) = (0u32, 0u64, 0u64);
        for s in self.table.hot.spans() {
            hot_regions += 1;
            hot_frames += s.len();
            hot_meta += hotplug::meta_frames(s.len());
        }
        let mut pcp_pages = [[0u64; NR_ZONES]; MAX_NODES];
        for cpu in 0..self.pcp.len() {
            let lists = self.pcp.cpu(cpu);
            for (z, l) in lists.iter().enumerate() {
                pcp_pages[lists.node][z] += l.frames_held();
            }
        }
        let nr_nodes = self.nr_nodes();
        let nodes: [NodeInfo; MAX_NODES] = core::array::from_fn(|n| {
            if n < nr_nodes {
                self.node_info(n, &pcp_pages[n])
            } else {
                NodeInfo::EMPTY
            }
        });
        PageInfo {
            zones: core::array::from_fn(|z| {
                let mut all = nodes[0].zones[z];
                for n in &nodes[1..nr_nodes] {
                    all = all.plus(&n.zones[z]);
                }
                all
            }),
            nodes,
            nr_nodes,
            frames: self.table.len() + hot_frames as u32,
            frame_bytes: size_of::<PageFrame>(),
            meta: self.meta[0].0,
            meta_bytes: self.meta[..nr_nodes].iter().map(|(r, _)| r.size()).sum(),
            hot_regions,
            hot_bytes: hot_frames * PAGE_SIZE,
            hot_meta_bytes: hot_meta * PAGE_SIZE,
        }
    }
}
