//! [`KBox`]: a kmalloc'd value, owned — the safe handle beside the raw `kmalloc`/`kfree`
//! calls. It frees its block when dropped, so a double free or a free of a block someone
//! else owns cannot be written without `unsafe`.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use super::Kmem;
use crate::arch::Arch;
use crate::gfp::Gfp;
use crate::slab::SlabError;

/// A value in a block of a [`Kmem`]'s kmalloc caches (or its page allocator, past
/// 1 MiB), owned as a `Box` owns its value: derefs to it, drops it and frees the block
/// when dropped. `T` may be a slice (see [`KBox::zeroed_bytes`]).
///
/// # Examples
/// ```
/// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
/// # let kmem = heap.get().unwrap();
/// use kmem::{Gfp, KBox};
/// let mut v = KBox::new(kmem, [1u32, 2, 3], Gfp::KERNEL)?;
/// v[0] = 10;
/// assert_eq!(v.iter().sum::<u32>(), 15);
/// # Ok::<(), kmem::SlabError>(())
/// ```
pub struct KBox<'k, A: Arch, T: ?Sized> {
    ptr: NonNull<T>,
    kmem: &'k Kmem<A>,
    _owns: PhantomData<T>,
}

// SAFETY: a KBox owns its T as a Box does, and Kmem may be used from any thread.
unsafe impl<A: Arch, T: ?Sized + Send> Send for KBox<'_, A, T> {}
// SAFETY: shared access to the box is shared access to the T.
unsafe impl<A: Arch, T: ?Sized + Sync> Sync for KBox<'_, A, T> {}

impl<'k, A: Arch, T> KBox<'k, A, T> {
    /// Moves `value` into a block of `kmem` (`value` is dropped if none is found).
    ///
    /// # Examples
    /// See [`KBox`].
    #[track_caller]
    pub fn new(kmem: &'k Kmem<A>, value: T, gfp: Gfp) -> Result<Self, SlabError> {
        let ptr = if size_of::<T>() == 0 {
            NonNull::dangling()
        } else {
            kmem.kmalloc_aligned(size_of::<T>(), align_of::<T>(), gfp.without(Gfp::ZERO))?
                .cast::<T>()
        };
        // SAFETY: a fresh block of size_of::<T>() bytes at T's alignment (or a dangling,
        // aligned pointer for a zero-sized T), ours alone.
        unsafe { ptr.as_ptr().write(value) };
        Ok(KBox {
            ptr,
            kmem,
            _owns: PhantomData,
        })
    }
}

impl<'k, A: Arch> KBox<'k, A, [u8]> {
    /// A buffer of `len` zeroed bytes.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, KBox};
    /// let mut buf = KBox::zeroed_bytes(kmem, 3000, Gfp::KERNEL)?;
    /// buf[2999] = 1;
    /// assert_eq!(buf.len(), 3000);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    #[track_caller]
    pub fn zeroed_bytes(kmem: &'k Kmem<A>, len: usize, gfp: Gfp) -> Result<Self, SlabError> {
        let p = if len == 0 {
            NonNull::dangling()
        } else {
            kmem.kmalloc(len, gfp | Gfp::ZERO)?
        };
        Ok(KBox {
            ptr: NonNull::slice_from_raw_parts(p, len),
            kmem,
            _owns: PhantomData,
        })
    }
}

impl<'k, A: Arch, T: ?Sized> KBox<'k, A, T> {
    /// Gives up ownership without freeing: the block stays allocated until
    /// [`KBox::from_raw`] takes it back (or [`Kmem::kfree`] frees it, for a block that
    /// holds no value needing drop).
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// use kmem::{Gfp, KBox};
    /// let raw = KBox::new(kmem, 42u64, Gfp::KERNEL)?.into_raw();
    /// // SAFETY: raw came from into_raw of a KBox over this kmem.
    /// let back = unsafe { KBox::from_raw(kmem, raw) };
    /// assert_eq!(*back, 42);
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn into_raw(self) -> NonNull<T> {
        ManuallyDrop::new(self).ptr
    }

    /// Takes back a block given up with [`KBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a `KBox` over `kmem` and has not been taken back or
    /// freed since.
    ///
    /// # Examples
    /// See [`KBox::into_raw`].
    pub unsafe fn from_raw(kmem: &'k Kmem<A>, ptr: NonNull<T>) -> Self {
        KBox {
            ptr,
            kmem,
            _owns: PhantomData,
        }
    }
}

impl<A: Arch, T: ?Sized> Deref for KBox<'_, A, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the box owns a live, initialised T until it is dropped.
        unsafe { self.ptr.as_ref() }
    }
}

impl<A: Arch, T: ?Sized> DerefMut for KBox<'_, A, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for deref, and `&mut self` makes the access unique.
        unsafe { self.ptr.as_mut() }
    }
}

impl<A: Arch, T: ?Sized> Drop for KBox<'_, A, T> {
    fn drop(&mut self) {
        // SAFETY: the box owns an initialised T (for a zeroed byte buffer, initialised
        // bytes), dropped once here; its size is read before the drop.
        let bytes = unsafe {
            let bytes = size_of_val(self.ptr.as_ref());
            self.ptr.as_ptr().drop_in_place();
            bytes
        };
        if bytes > 0 {
            // SAFETY: a non-empty value's block came from this kmem's kmalloc family and
            // is freed once, here.
            let freed = unsafe { self.kmem.kfree(self.ptr.as_ptr().cast()) };
            debug_assert!(freed.is_ok(), "a KBox frees a live block of its kmem");
        }
    }
}
