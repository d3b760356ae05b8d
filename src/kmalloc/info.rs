//! Introspection over a whole [`Kmem`]: `/proc/slabinfo`- and `/proc/meminfo`-style text
//! and the figures behind it.

use core::fmt;

use super::Kmem;
use crate::arch::Arch;
use crate::mm::PageInfo;
use crate::slab::SlabInfo;

/// Figures for the whole allocator.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// let info = kmem.meminfo();
/// print!("{info}"); // `/proc/meminfo`-style: the page table, then the slab line
/// assert!(info.array_pages > 0, "the kmalloc caches' arrays");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MemInfo {
    /// The page allocator's figures.
    pub pages: PageInfo,
    /// Pages in slabs of every cache.
    pub slab_pages: usize,
    /// Pages holding caches' arrays — per-CPU slots and magazines (for the kmalloc
    /// caches: with the caches themselves).
    pub array_pages: usize,
}

impl<A: Arch> Kmem<A> {
    /// Current figures.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let before = kmem.meminfo().slab_pages;
    /// let p = kmem.kmalloc(2000, kmem::Gfp::KERNEL)?;
    /// assert!(kmem.meminfo().slab_pages > before, "kmalloc-2048 grew a slab");
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn meminfo(&self) -> MemInfo {
        let (mut slab_pages, mut array_pages) = (0, self.kmalloc_pages);
        self.for_each_cache(|c| {
            let (s, a) = c.pages_held();
            slab_pages += s;
            array_pages += a;
        });
        MemInfo {
            pages: self.pages().info(),
            slab_pages,
            array_pages,
        }
    }

    /// Calls `f` with the figures of every cache.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let p = kmem.kmalloc(300, kmem::Gfp::KERNEL)?;
    /// let mut live = 0;
    /// kmem.slabinfo(|i| live += i.active_objs);
    /// assert_eq!(live, 1);
    /// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn slabinfo(&self, mut f: impl FnMut(&SlabInfo)) {
        self.for_each_cache(|c| f(&c.info()));
    }
}

impl fmt::Display for MemInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pages)?;
        let pcp: u64 = self.pages.zones.iter().map(|z| z.pcp_pages).sum();
        writeln!(
            f,
            "slab: {} pages ({} KiB) in slabs, {} pages of magazines; {} pages in per-CPU page lists",
            self.slab_pages,
            self.slab_pages * 4,
            self.array_pages,
            pcp
        )
    }
}

/// `/proc/slabinfo`-style text: every cache that holds slabs, plus all user caches when
/// `all` is set.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::kmalloc::SlabInfoTable;
/// let p = kmem.kmalloc(64, kmem::Gfp::KERNEL)?;
/// let text = SlabInfoTable { kmem, all: false }.to_string();
/// print!("{text}");
/// assert!(text.lines().any(|l| l.starts_with("kmalloc-64 ")));
/// unsafe { kmem.kfree(p.as_ptr()) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct SlabInfoTable<'a, A: Arch> {
    /// The allocator whose caches are listed.
    pub kmem: &'a Kmem<A>,
    /// List user caches that hold no slab too.
    pub all: bool,
}

impl<A: Arch> fmt::Display for SlabInfoTable<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", SlabInfo::HEADER)?;
        let mut r = Ok(());
        self.kmem.slabinfo(|i| {
            if r.is_ok() && (self.all || i.num_slabs > 0 || i.cpu_cached > 0) {
                r = writeln!(f, "{i}");
            }
        });
        r
    }
}
