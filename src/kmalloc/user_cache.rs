//! User-created caches: [`Kmem::cache_create`] and its raw handle [`CacheRef`], and the
//! typed cache [`Cache<T>`] whose objects come out as owned [`CacheBox`]es — a kernel
//! allocates and frees objects without writing `unsafe`, and the borrow checker makes a
//! double free, a free to the wrong cache and a destroy under live objects impossible to
//! write.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;

use super::Kmem;
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::slab::{CacheName, CacheSpec, ObjectFn, SlabCache, SlabError, SlabFlags, SlabInfo};

impl<A: Arch> Kmem<A> {
    /// Creates a slab cache of `size`-byte objects at `align` (a power of two up to
    /// 4 KiB), with an optional constructor, run once per object when its slab is made,
    /// and destructor, run when the slab goes back to the page allocator (SLAB's object
    /// life: objects are freed in their constructed state). A name already used (by any
    /// cache, kmalloc's included) is refused. The handle allocates raw memory; for objects
    /// of a Rust type, [`Cache`] gives owned handles instead.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let inodes = kmem.cache_create("inode", 600, 64, SlabFlags::NONE, None, None)?;
    /// let p = inodes.alloc(Gfp::KERNEL)?;
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// // SAFETY: p is a live object of this cache, not used after this.
    /// unsafe { inodes.free(p) }?;
    /// inodes.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<ObjectFn>,
        dtor: Option<ObjectFn>,
    ) -> Result<CacheRef<'_, A>, SlabError> {
        let spec = CacheSpec {
            name: CacheName::new(name)?,
            size,
            align,
            flags,
            ctor,
            dtor,
        };
        let mut head = self.registry.lock();
        if self.find_cache(&head, name).is_some() {
            return Err(SlabError::NameTaken { name: spec.name });
        }
        // SAFETY: no memory given: the cache takes a block of its own for its arrays.
        let cache = unsafe {
            SlabCache::new(
                self,
                &spec,
                &self.hardening(&spec.name),
                None,
                self.array_scale[flags.gfp().zone().index()],
            )?
        };
        let mem = match self.kmalloc_aligned(
            size_of::<SlabCache<A>>(),
            align_of::<SlabCache<A>>(),
            // The allocator's own: fault injection is for the caller's allocations.
            Gfp::KERNEL | Gfp::NOFAIL,
        ) {
            Ok(m) => m.cast::<SlabCache<A>>(),
            Err(e) => {
                cache.release_arrays(self);
                return Err(e);
            }
        };
        // SAFETY: mem is a fresh, suitably aligned block for one SlabCache.
        unsafe { mem.as_ptr().write(cache) };
        // SAFETY: just written; only this thread knows the cache yet.
        unsafe { mem.as_ref() }.next.store(*head, Relaxed);
        *head = mem.as_ptr();
        // SAFETY: the cache lives until `destroy`, which consumes the only CacheRef.
        let cache = unsafe { mem.as_ref() };
        Ok(CacheRef { kmem: self, cache })
    }
}

/// A user-created cache of raw objects, from [`Kmem::cache_create`]. Not `Clone`:
/// [`CacheRef::destroy`] consumes it, so no handle outlives the cache. Dropping it
/// without `destroy` leaves the cache registered (and its memory held).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, SlabFlags};
/// let c = kmem.cache_create("buffers", 256, 8, SlabFlags::NONE, None, None)?;
/// assert_eq!(c.name().as_str(), "buffers");
/// c.destroy().map_err(|(_, e)| e)?;
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct CacheRef<'k, A: Arch> {
    pub(super) kmem: &'k Kmem<A>,
    pub(super) cache: &'k SlabCache<A>,
}

impl<'k, A: Arch> CacheRef<'k, A> {
    /// Allocates one object (constructed, if the cache has a constructor).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let c = kmem.cache_create("zeroed", 40, 8, SlabFlags::NONE, None, None)?;
    /// let p = c.alloc(Gfp::KERNEL | Gfp::ZERO)?;
    /// // SAFETY: p is a live 40-byte object, zeroed as asked.
    /// assert_eq!(unsafe { p.as_ptr().add(39).read() }, 0);
    /// unsafe { c.free(p) }?; // SAFETY: p is not used again.
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[inline]
    #[track_caller]
    pub fn alloc(&self, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let c = self.cache;
        self.kmem
            .alloc_sampled_or(c, c.object_size(), c.align(), gfp)
    }

    /// Frees an object of this cache. An object of another cache, or anything that is not
    /// a live object of this one, is refused with the reason (logged) and nothing
    /// changes — a debugging aid, as for [`Kmem::kfree`].
    ///
    /// # Safety
    /// `obj` is an object this cache's [`CacheRef::alloc`] returned and that has not been
    /// freed since; nothing uses it after this call.
    ///
    /// # Examples
    /// See [`CacheRef::alloc`].
    #[inline]
    #[track_caller]
    pub unsafe fn free(&self, obj: NonNull<u8>) -> Result<(), SlabError> {
        self.kmem
            .free_checked(obj.as_ptr() as usize, Some(self.cache))
            .inspect_err(|e| log::error!("cache free: {e}"))
    }

    /// Drains the arrays and gives empty slabs back; returns pages released.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabFlags};
    /// let c = kmem.cache_create("scratch", 512, 8, SlabFlags::NONE, None, None)?;
    /// let p = c.alloc(Gfp::KERNEL)?;
    /// unsafe { c.free(p) }?; // SAFETY: p is live and not used again.
    /// assert!(c.shrink() > 0);
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn shrink(&self) -> usize {
        self.cache.shrink(self.kmem)
    }

    /// Destroys the cache. Refused while objects are live: the error counts them and
    /// the log lists each one's address (and owner, with owner tracking); the handle
    /// comes back with the error.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, SlabError, SlabFlags};
    /// let c = kmem.cache_create("leaky", 64, 8, SlabFlags::NONE, None, None)?;
    /// let p = c.alloc(Gfp::KERNEL)?;
    /// let (c, e) = c.destroy().unwrap_err();
    /// assert!(matches!(e, SlabError::Busy { live: 1, .. }));
    /// unsafe { c.free(p) }?; // SAFETY: p is live and not used again.
    /// c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), SlabError>(())
    /// ```
    pub fn destroy(self) -> Result<(), (Self, SlabError)> {
        self.cache.shrink(self.kmem);
        let mut live = 0;
        let name = self.cache.name();
        self.cache.for_each_live(self.kmem, |obj| {
            live += 1;
            match self.cache.owner_record(obj) {
                Some(t) => log::error!("{name}: object {obj:#x} still allocated at destroy, {t}"),
                None => log::error!("{name}: object {obj:#x} still allocated at destroy"),
            }
        });
        if live > 0 {
            let e = SlabError::Busy { cache: name, live };
            log::error!("{e}");
            return Err((self, e));
        }
        self.kmem.unregister(self.cache);
        Ok(())
    }

    /// The cache's name.
    ///
    /// # Examples
    /// See [`CacheRef`].
    pub fn name(&self) -> CacheName {
        self.cache.name()
    }

    /// The cache itself, for its geometry and figures.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::SlabFlags;
    /// let c = kmem.cache_create("sized", 100, 8, SlabFlags::NONE, None, None)?;
    /// assert_eq!(c.cache().object_size(), 100);
    /// # c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn cache(&self) -> &SlabCache<A> {
        self.cache
    }
}

/// A cache of `T` objects: each allocation is initialised with a value of `T` (from the
/// cache's initialiser or given), handed out as a [`CacheBox`] that derefs to it, and
/// dropped and freed when the box is. Object size and alignment come from `T`.
///
/// Boxes borrow the cache, so it cannot be destroyed or dropped while one lives; dropping
/// the cache destroys it. The debug flags of [`SlabFlags`] (red zones, poison, owner
/// tracking) apply as to any cache.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Cache, Gfp, SlabFlags};
///
/// #[derive(Default)]
/// struct Task { id: u64, ticks: u32 }
///
/// let tasks = Cache::<_, Task>::new(kmem, "task", SlabFlags::NONE, Task::default)?;
/// let mut t = tasks.alloc(Gfp::KERNEL)?;
/// t.id = 7;
/// let u = tasks.alloc_value(Task { id: 8, ticks: 1 }, Gfp::KERNEL)?;
/// assert_eq!(t.id + u.id, 15);
/// drop((t, u)); // both objects go back to the cache
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct Cache<'k, A: Arch, T> {
    raw: ManuallyDrop<CacheRef<'k, A>>,
    init: fn() -> T,
    _objects: PhantomData<T>,
}

// SAFETY: a Cache hands out T values to whichever thread allocates and drops them on
// whichever thread frees, so T must be Send; the cache itself is Sync (its state is
// behind per-CPU slots and locks).
unsafe impl<A: Arch, T: Send> Send for Cache<'_, A, T> {}
// SAFETY: as for Send: sharing the cache lets other threads create and drop T values.
unsafe impl<A: Arch, T: Send> Sync for Cache<'_, A, T> {}

impl<'k, A: Arch, T> Cache<'k, A, T> {
    /// Creates a cache named `name` for `T` objects, made by `init` when
    /// [`Cache::alloc`] is used. `flags` may ask for a zone or debugging; a name already
    /// taken is refused.
    ///
    /// # Examples
    /// See [`Cache`].
    pub fn new(
        kmem: &'k Kmem<A>,
        name: &str,
        flags: SlabFlags,
        init: fn() -> T,
    ) -> Result<Self, SlabError> {
        let raw = kmem.cache_create(
            name,
            size_of::<T>().max(1),
            align_of::<T>(),
            flags,
            None,
            None,
        )?;
        Ok(Cache {
            raw: ManuallyDrop::new(raw),
            init,
            _objects: PhantomData,
        })
    }

    /// Allocates an object holding the initialiser's value.
    ///
    /// # Examples
    /// See [`Cache`].
    #[inline]
    #[track_caller]
    pub fn alloc(&self, gfp: Gfp) -> Result<CacheBox<'_, A, T>, SlabError> {
        self.alloc_value((self.init)(), gfp)
    }

    /// Allocates an object holding `value` (dropped if no memory is found).
    ///
    /// # Examples
    /// See [`Cache`].
    #[inline]
    #[track_caller]
    pub fn alloc_value(&self, value: T, gfp: Gfp) -> Result<CacheBox<'_, A, T>, SlabError> {
        let obj = self.raw.alloc(gfp.without(Gfp::ZERO))?.cast::<T>();
        // SAFETY: a fresh object of this cache: size_of::<T>() bytes (at least) at
        // T's alignment, handed to us alone.
        unsafe { obj.as_ptr().write(value) };
        Ok(CacheBox {
            obj,
            cache: &self.raw,
            _owns: PhantomData,
        })
    }

    /// The cache's figures, as `slabinfo` shows them.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Cache, Gfp, SlabFlags};
    /// let c = Cache::<_, [u64; 4]>::new(kmem, "quads", SlabFlags::NONE, || [0; 4])?;
    /// let q = c.alloc(Gfp::KERNEL)?;
    /// assert_eq!(c.info().active_objs, 1);
    /// # drop(q);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn info(&self) -> SlabInfo {
        self.raw.cache().info()
    }

    /// Drains the cache's arrays and gives its empty slabs back; returns pages released.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Cache, Gfp, SlabFlags};
    /// let c = Cache::<_, [u8; 300]>::new(kmem, "blocks", SlabFlags::NONE, || [0; 300])?;
    /// drop(c.alloc(Gfp::KERNEL)?);
    /// assert!(c.shrink() > 0);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn shrink(&self) -> usize {
        self.raw.shrink()
    }

    /// Destroys the cache, as dropping it does, but says why it could not: objects whose
    /// boxes were leaked with [`CacheBox::into_raw`] and not given back. The cache comes
    /// back with the error.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Cache, Gfp, SlabFlags};
    /// let c = Cache::<_, u32>::new(kmem, "counters", SlabFlags::NONE, || 0)?;
    /// let raw = c.alloc(Gfp::KERNEL)?.into_raw();
    /// let (c, e) = c.destroy().unwrap_err();
    /// // SAFETY: raw came from into_raw of a box of this cache.
    /// drop(unsafe { kmem::CacheBox::from_raw(&c, raw) });
    /// c.destroy().map_err(|(_, e)| e)?;
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn destroy(self) -> Result<(), (Self, SlabError)> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again once its handle is taken, except
        // to give it back whole on an error.
        let raw = unsafe { ManuallyDrop::take(&mut this.raw) };
        raw.destroy().map_err(|(raw, e)| {
            (
                Cache {
                    raw: ManuallyDrop::new(raw),
                    init: this.init,
                    _objects: PhantomData,
                },
                e,
            )
        })
    }
}

impl<A: Arch, T> Drop for Cache<'_, A, T> {
    /// Destroys the cache. No box can be alive (they borrow the cache); objects leaked
    /// with [`CacheBox::into_raw`] keep it registered, with its memory, and are logged.
    fn drop(&mut self) {
        // SAFETY: the handle is taken once, here, and `self` is never used again.
        let raw = unsafe { ManuallyDrop::take(&mut self.raw) };
        // A refusal is logged by destroy and leaves the cache registered: it must outlive
        // its leaked objects, and dropping the handle does not destroy it.
        let _ = raw.destroy();
    }
}

/// An object of a [`Cache<T>`], owned: derefs to the `T`, and dropping it drops the `T`
/// and frees the object. It borrows its cache, so the cache outlives it.
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Cache, Gfp, SlabFlags};
/// let names = Cache::<_, [u8; 16]>::new(kmem, "names", SlabFlags::NONE, || [0; 16])?;
/// let mut n = names.alloc(Gfp::KERNEL)?;
/// n[..4].copy_from_slice(b"init");
/// assert_eq!(&n[..4], b"init");
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct CacheBox<'c, A: Arch, T> {
    obj: NonNull<T>,
    cache: &'c CacheRef<'c, A>,
    _owns: PhantomData<T>,
}

// SAFETY: the box owns its T as a Box does; freeing from another thread is allowed (the
// cache is Sync).
unsafe impl<A: Arch, T: Send> Send for CacheBox<'_, A, T> {}
// SAFETY: shared access to the box is shared access to the T.
unsafe impl<A: Arch, T: Sync> Sync for CacheBox<'_, A, T> {}

impl<'c, A: Arch, T> CacheBox<'c, A, T> {
    /// Gives up ownership without freeing: the object stays allocated (and its cache
    /// cannot be destroyed) until [`CacheBox::from_raw`] takes it back.
    ///
    /// # Examples
    /// See [`Cache::destroy`].
    pub fn into_raw(self) -> NonNull<T> {
        let this = ManuallyDrop::new(self);
        this.obj
    }

    /// Takes back an object given up with [`CacheBox::into_raw`].
    ///
    /// # Safety
    /// `obj` came from `into_raw` of a box of `cache` and has not been taken back since.
    ///
    /// # Examples
    /// See [`Cache::destroy`].
    pub unsafe fn from_raw(cache: &'c Cache<'_, A, T>, obj: NonNull<T>) -> Self {
        CacheBox {
            obj,
            cache: &cache.raw,
            _owns: PhantomData,
        }
    }
}

impl<A: Arch, T> Deref for CacheBox<'_, A, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the box owns a live, initialised T until it is dropped.
        unsafe { self.obj.as_ref() }
    }
}

impl<A: Arch, T> DerefMut for CacheBox<'_, A, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for deref, and `&mut self` makes the access unique.
        unsafe { self.obj.as_mut() }
    }
}

impl<A: Arch, T> Drop for CacheBox<'_, A, T> {
    fn drop(&mut self) {
        // SAFETY: the box owns an initialised T, dropped once here.
        unsafe { self.obj.as_ptr().drop_in_place() };
        // SAFETY: the object came from this cache's alloc and is freed once, here.
        let freed = unsafe { self.cache.free(self.obj.cast()) };
        debug_assert!(freed.is_ok(), "a CacheBox frees a live object of its cache");
    }
}
