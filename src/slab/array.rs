//! Object arrays: the per-CPU `array_cache` and the node's shared array (seeds 001, 003).
//!
//! A CPU allocates by popping its own array and frees by pushing onto it, with
//! interrupts off and no lock that another CPU normally takes. The most recently freed
//! object is reused first (it is still in this CPU's cache); when the array is full the
//! oldest `batchcount` objects move on, so the array keeps the hot end.
//!
//! An array's entries live in memory its cache carves beside the per-CPU slots, `limit`
//! words each (the kmalloc caches of a zone share pages: `kmalloc::zone_caches`), so a
//! cache of 30 KiB objects, whose arrays hold four, does not pay for 120.

/// Most entries a per-CPU array holds (Linux's limit for small objects).
pub const AC_MAX: usize = 120;

/// One CPU's array of free objects for one cache. Its CPU slot (`PerCpu`) is a cache
/// line aligned to a line, so that CPUs entering their slots of one cache do not share a
/// line, and holds the slot's entry flags beside the array: one line per fast path.
#[repr(C)]
pub struct ArrayCache {
    avail: u32,
    limit: u32,
    batchcount: u32,
    /// Set by allocation; cleared by a reap pass, which drains arrays it finds clear.
    touched: bool,
    /// `limit` words.
    entries: *mut usize,
}

// SAFETY: `entries` points into memory the owning cache holds for its whole life; the
// array is only used through its CPU slot (`PerCpu`).
unsafe impl Send for ArrayCache {}

impl ArrayCache {
    /// An empty array of up to `limit` objects.
    ///
    /// # Safety
    /// `entries` must be writable for `limit` words, 8-aligned, for the array's life, and
    /// used by nothing else.
    pub const unsafe fn new(limit: usize, batchcount: usize, entries: *mut usize) -> ArrayCache {
        assert!(limit <= AC_MAX, "an array holds at most AC_MAX entries");
        ArrayCache {
            avail: 0,
            limit: limit as u32,
            batchcount: batchcount as u32,
            touched: false,
            entries,
        }
    }

    /// Bytes for the entries of an array of `limit` objects, rounded to a cache line.
    pub const fn entry_bytes(limit: usize) -> usize {
        (limit * size_of::<usize>()).next_multiple_of(64)
    }

    #[inline]
    pub fn avail(&self) -> usize {
        self.avail as usize
    }
    #[inline]
    pub fn limit(&self) -> usize {
        self.limit as usize
    }
    #[inline]
    pub fn batchcount(&self) -> usize {
        self.batchcount as usize
    }
    #[inline]
    pub fn is_full(&self) -> bool {
        self.avail == self.limit
    }

    /// Returns whether the array was used since the last call, and clears the mark.
    pub fn take_touched(&mut self) -> bool {
        core::mem::replace(&mut self.touched, false)
    }

    #[inline]
    pub fn pop(&mut self) -> Option<usize> {
        self.avail = self.avail.checked_sub(1)?;
        self.touched = true;
        // SAFETY: avail never exceeds limit (the pushes check), so the decremented avail
        // indexes one of the `limit` entries, written by the push that counted it.
        Some(unsafe { self.entries.add(self.avail as usize).read() })
    }

    /// Pushes an object; the caller makes room first when the array is full.
    #[inline]
    pub fn push(&mut self, obj: usize) {
        assert!(self.avail < self.limit, "push onto a full array");
        // SAFETY: avail < limit, within the entries `new` was given.
        unsafe { self.entries.add(self.avail as usize).write(obj) };
        self.avail += 1;
    }

    /// Pushes an object unless the array is full; returns whether it did.
    #[inline]
    pub fn try_push(&mut self, obj: usize) -> bool {
        if self.avail >= self.limit {
            return false;
        }
        // SAFETY: avail < limit, within the entries `new` was given.
        unsafe { self.entries.add(self.avail as usize).write(obj) };
        self.avail += 1;
        true
    }

    /// The oldest `n` entries (at most `avail`).
    pub fn oldest(&self, n: usize) -> &[usize] {
        let n = n.min(self.avail());
        if n == 0 {
            return &[];
        }
        // SAFETY: the first avail entries are initialised (written by pushes).
        unsafe { core::slice::from_raw_parts(self.entries, n) }
    }

    /// Drops the oldest `n` entries (the caller has moved them elsewhere).
    pub fn remove_oldest(&mut self, n: usize) {
        let n = n.min(self.avail());
        let avail = self.avail();
        // SAFETY: both ranges lie within the first avail entries; `copy` allows overlap.
        unsafe { core::ptr::copy(self.entries.add(n), self.entries, avail - n) };
        self.avail -= n as u32;
    }
}

/// The node's shared array: a bounded stack of free objects in caller-provided memory,
/// used only under the node lock. It lets one CPU's frees feed another CPU's refills
/// without a trip through the slab lists.
pub struct SharedArray {
    entries: *mut usize,
    cap: usize,
    avail: usize,
    /// Set when a refill takes objects; cleared by a reap pass, which drains the array
    /// when it finds this clear (as `ArrayCache::touched`).
    touched: bool,
}

impl SharedArray {
    /// # Safety
    /// `entries` must be writable for `cap` words for the array's lifetime (it may be
    /// dangling when `cap` is 0).
    pub const unsafe fn new(entries: *mut usize, cap: usize) -> SharedArray {
        SharedArray {
            entries,
            cap,
            avail: 0,
            touched: false,
        }
    }

    /// Returns whether a refill took objects since the last call, and clears the mark.
    pub fn take_touched(&mut self) -> bool {
        core::mem::replace(&mut self.touched, false)
    }

    pub fn avail(&self) -> usize {
        self.avail
    }

    /// The objects held, oldest first.
    pub fn entries(&self) -> &[usize] {
        if self.avail == 0 {
            return &[];
        }
        // SAFETY: entries below avail were written by push_from and are initialised.
        unsafe { core::slice::from_raw_parts(self.entries, self.avail) }
    }

    /// Moves as many of `objs` as fit; returns how many.
    pub fn push_from(&mut self, objs: &[usize]) -> usize {
        let n = objs.len().min(self.cap - self.avail);
        for (i, &o) in objs[..n].iter().enumerate() {
            // SAFETY: avail + i < cap, inside the memory given to `new`.
            unsafe { self.entries.add(self.avail + i).write(o) };
        }
        self.avail += n;
        n
    }

    pub fn pop(&mut self) -> Option<usize> {
        self.avail = self.avail.checked_sub(1)?;
        // SAFETY: avail < cap, and entries below the old avail were written by push_from.
        Some(unsafe { self.entries.add(self.avail).read() })
    }

    /// Moves the newest entries onto `ac` until it holds `want` (at most its limit) or
    /// this array is empty, in one copy: the newest stay on top, next to be reused.
    pub fn pop_into(&mut self, ac: &mut ArrayCache, want: usize) {
        let n = want
            .min(ac.limit())
            .saturating_sub(ac.avail())
            .min(self.avail);
        if n == 0 {
            return;
        }
        self.touched = true;
        self.avail -= n;
        // SAFETY: the source is n initialised entries below the old avail (< cap); the
        // target is ac's entries avail..avail + n, within its limit; the two arrays'
        // memory is disjoint (each cache carves its own).
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.entries.add(self.avail),
                ac.entries.add(ac.avail()),
                n,
            )
        };
        ac.avail += n as u32;
    }
}

// SAFETY: the entries are plain addresses, and the array is only used under the node lock.
unsafe impl Send for SharedArray {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_keeps_the_hot_end() {
        let mut mem = [0usize; 4];
        // SAFETY: mem outlives the array and nothing else uses it.
        let mut a = unsafe { ArrayCache::new(4, 2, mem.as_mut_ptr()) };
        for o in 1..=4 {
            a.push(o);
        }
        assert!(a.is_full());
        assert_eq!(a.oldest(2), &[1, 2]);
        a.remove_oldest(2);
        assert_eq!(a.pop(), Some(4));
        assert!(a.take_touched());
        assert!(!a.take_touched());
        assert_eq!(a.pop(), Some(3));
        assert_eq!(a.pop(), None);
    }

    #[test]
    fn shared_array_is_bounded() {
        let mut mem = [0usize; 3];
        // SAFETY: mem outlives the array.
        let mut s = unsafe { SharedArray::new(mem.as_mut_ptr(), 3) };
        assert_eq!(s.push_from(&[1, 2]), 2);
        assert_eq!(s.push_from(&[3, 4]), 1);
        assert_eq!(s.pop(), Some(3));
        assert_eq!(s.avail(), 2);
    }

    #[test]
    fn shared_array_refills_keeping_the_newest_on_top() {
        let mut shared = [0usize; 8];
        let mut own = [0usize; 4];
        // SAFETY: both outlive their arrays and nothing else uses them.
        let (mut s, mut a) = unsafe {
            (
                SharedArray::new(shared.as_mut_ptr(), 8),
                ArrayCache::new(4, 2, own.as_mut_ptr()),
            )
        };
        assert_eq!(s.push_from(&[1, 2, 3, 4, 5, 6]), 6);
        a.push(9);
        assert!(!s.take_touched());
        s.pop_into(&mut a, 3);
        assert!(s.take_touched(), "a refill marks the array used");
        assert!(!s.take_touched());
        assert_eq!((a.avail(), s.avail()), (3, 4));
        assert_eq!(a.pop(), Some(6));
        assert_eq!(a.pop(), Some(5));
        assert_eq!(a.pop(), Some(9));
        // Never past the limit, never more than the shared array holds.
        s.pop_into(&mut a, 10);
        assert_eq!((a.avail(), s.avail()), (4, 0));
        s.pop_into(&mut a, 4);
        assert_eq!(a.oldest(4), &[1, 2, 3, 4]);
    }
}
