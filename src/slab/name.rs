//! Cache names: [`CacheName`], a name of at most [`NAME_MAX`] bytes stored inline, so a
//! cache and every report that names it need no allocation.

use core::fmt;

use super::SlabError;

/// Most bytes in a cache name.
///
/// # Examples
/// ```
/// use kmem::slab::{CacheName, NAME_MAX};
/// assert!(CacheName::new(&"x".repeat(NAME_MAX)).is_ok());
/// assert!(CacheName::new(&"x".repeat(NAME_MAX + 1)).is_err());
/// ```
pub const NAME_MAX: usize = 31;

/// A cache's name, stored inline.
///
/// # Examples
/// ```
/// use kmem::slab::CacheName;
/// let name = CacheName::new("dentry")?;
/// assert_eq!(format!("[{name:>8}]"), "[  dentry]"); // pads like a str
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; NAME_MAX],
    len: u8,
}

impl CacheName {
    /// The name `s`, or an error when it is empty or longer than [`NAME_MAX`] bytes.
    ///
    /// # Examples
    /// ```
    /// use kmem::SlabError;
    /// use kmem::slab::CacheName;
    /// assert_eq!(CacheName::new("inode")?.as_str(), "inode");
    /// assert_eq!(CacheName::new(""), Err(SlabError::BadName));
    /// # Ok::<(), SlabError>(())
    /// ```
    pub fn new(s: &str) -> Result<CacheName, SlabError> {
        if s.is_empty() || s.len() > NAME_MAX {
            return Err(SlabError::BadName);
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(CacheName {
            bytes,
            len: s.len() as u8,
        })
    }

    /// A name built from `prefix` and a number (`kmalloc-96`), cut at [`NAME_MAX`]
    /// bytes.
    ///
    /// # Examples
    /// ```
    /// use kmem::slab::CacheName;
    /// assert_eq!(CacheName::numbered("kmalloc-", 96).as_str(), "kmalloc-96");
    /// ```
    pub fn numbered(prefix: &str, n: usize) -> CacheName {
        let mut buf = [0u8; NAME_MAX];
        let mut w = Cursor(&mut buf, 0);
        let _ = fmt::Write::write_fmt(&mut w, format_args!("{prefix}{n}"));
        let len = w.1;
        CacheName {
            bytes: buf,
            len: len as u8,
        }
    }

    /// The name as text.
    ///
    /// # Examples
    /// ```
    /// # let heap = kmem::hosted::Heap::with_capacity(16 << 20);
    /// # let kmem = heap.get().unwrap();
    /// let cache = kmem.kmalloc_cache_for(24, 8, kmem::Gfp::KERNEL).unwrap();
    /// assert_eq!(cache.name().as_str(), "kmalloc-24");
    /// ```
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

struct Cursor<'a>(&'a mut [u8; NAME_MAX], usize);

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(NAME_MAX - self.1);
        self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.1 += n;
        Ok(())
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
