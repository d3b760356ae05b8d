//! Allocator options from the kernel command line (and the monitor), in the spirit of
//! Linux's `slab_debug=`, `failslab`, `init_on_alloc=` and
//! `slab_freelist_random`:
//!
//! | option | effect |
//! | --- | --- |
//! | `kmem.debug=FZPU[,cache]` | debug flags (see `slab::debug`) for every cache, or one |
//! | `kmem.failslab=N[,cache]` | every Nth slab allocation (of one cache) fails; never kmem's own or a `Gfp::NOFAIL` one, and those through `GlobalAlloc`/`Allocator` only when the cache is named (see `Kmem::set_failslab`) |
//! | `init_on_alloc=1` | zero every object when it is allocated (not in caches with a constructor or destructor) |
//! | `init_on_free=1` | zero every object when it is freed (not in caches with a constructor or destructor) |
//! | `kmem.random_freelist=1` | new slabs hand out objects in a random order |
//! | `kmem.kfence=N` | about one kmalloc in N comes from the guard pool, when the port gave one (`guard_pool`); 0 never; default [`DEFAULT_KFENCE_INTERVAL`] |
//!
//! `Kmem::set_debug` (the monitor's `debug`) changes debug flags later, on empty caches.
//!
//! Unknown words are left alone (they belong to someone else); a malformed kmem option
//! is an error that names it.

use core::fmt;

use crate::slab::CacheName;
use crate::slab::debug::DebugFlags;

/// Options that shape every cache; see the module doc.
///
/// # Examples
/// ```
/// use kmem::Options;
/// let hardened = Options {
///     init_on_free: true,
///     random_freelist: true,
///     seed: 0x5eed, // from the DTB's rng-seed
///     ..Options::default()
/// };
/// assert!(hardened.debug.is_empty() && hardened.failslab_every == 0);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Debug flags (`kmem.debug=`) for every cache, or for `debug_cache` alone.
    pub debug: DebugFlags,
    /// Only this cache gets `debug` (all caches when `None`).
    pub debug_cache: Option<CacheName>,
    /// Every this-many-th slab allocation fails (`kmem.failslab=`); 0 never. Spared:
    /// kmem's own allocations and those with `Gfp::NOFAIL`, and — unless
    /// `failslab_cache` names their cache — those through the Rust allocator interfaces
    /// (`GlobalAlloc`, `Allocator`), so that a kernel's collections keep working and
    /// its boot does not break (see `Kmem::set_failslab`).
    pub failslab_every: u32,
    /// Only this cache's allocations count and fail (all caches when `None`).
    pub failslab_cache: Option<CacheName>,
    /// Zero every object when it is allocated — except in caches with a constructor or
    /// destructor, whose objects must stay constructed (as Linux's
    /// `slab_want_init_on_alloc`).
    pub init_on_alloc: bool,
    /// Zero every object when it is freed — except in caches with a constructor or
    /// destructor, as for `init_on_alloc`.
    pub init_on_free: bool,
    /// New slabs hand out their objects in a random order.
    pub random_freelist: bool,
    /// Entropy for free-list encoding and shuffling (DTB rng-seed, RDRAND, a counter).
    pub seed: u64,
    /// Bytes a zone's kmalloc caches size their magazines for when the zone starts
    /// smaller: an allocator that will grow with `Kmem::add_region` (the hosted heap
    /// passes its limit) would otherwise keep the small magazines of its first region
    /// for good. Their arrays take up to 1/256 of the larger figure, counted at most at
    /// 32 times the zone's memory at start (so at most 1/8 of that). `None`: each
    /// zone's memory at start.
    pub sized_for: Option<usize>,
    /// About one kmalloc in this many is served from the guard pool (`kmem.kfence=`),
    /// if the allocator has one (`Kmem::with_guard_pool`); 0 never.
    pub kfence: u32,
}

/// The default of [`Options::kfence`]: sampled allocations cost a lock and two page
/// table updates each, so one in this many adds well under 1 % to a kmalloc's average
/// (see README), while a kernel's steady traffic still fills the pool within seconds.
///
/// # Examples
/// ```
/// use kmem::Options;
/// use kmem::kmalloc::DEFAULT_KFENCE_INTERVAL;
/// assert_eq!(Options::default().kfence, DEFAULT_KFENCE_INTERVAL);
/// ```
pub const DEFAULT_KFENCE_INTERVAL: u32 = 4096;

impl Default for Options {
    fn default() -> Options {
        Options {
            debug: DebugFlags::default(),
            debug_cache: None,
            failslab_every: 0,
            failslab_cache: None,
            init_on_alloc: false,
            init_on_free: false,
            random_freelist: false,
            seed: 0,
            sized_for: None,
            kfence: DEFAULT_KFENCE_INTERVAL,
        }
    }
}

/// A kmem option kmem could not read: the whole word, `key=value`.
///
/// # Examples
/// ```
/// use kmem::kmalloc::OptionError;
/// let mut refused = None;
/// kmem::Options::default().parse("quiet kmem.failslab=often", |e| refused = Some(e));
/// let e = refused.unwrap();
/// assert_eq!(e, OptionError("kmem.failslab=often"));
/// assert_eq!(e.to_string(), "bad allocator option `kmem.failslab=often`");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OptionError<'a>(pub &'a str);

impl fmt::Display for OptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad allocator option `{}`", self.0)
    }
}

/// `value[,cache]`.
fn with_cache(v: &str) -> (&str, Option<&str>) {
    match v.split_once(',') {
        Some((a, c)) => (a, Some(c)),
        None => (v, None),
    }
}

fn cache_name(c: Option<&str>) -> Result<Option<CacheName>, ()> {
    c.map(|c| CacheName::new(c).map_err(|_| ())).transpose()
}

fn flag(v: &str) -> Result<bool, ()> {
    match v {
        "1" | "on" | "y" => Ok(true),
        "0" | "off" | "n" => Ok(false),
        _ => Err(()),
    }
}

impl Options {
    /// Reads every option in `cmdline` (space-separated words) on top of `self`. A
    /// malformed option is handed to `refused` and changes nothing; the well-formed ones
    /// around it still apply, so one bad word never drops the rest.
    ///
    /// # Examples
    /// ```
    /// use kmem::Options;
    /// use kmem::slab::DebugFlags;
    /// let bootargs = "console=ttyAMA0 kmem.debug=FZ,kmalloc-64 init_on_alloc=maybe init_on_free=1";
    /// let mut refused = Vec::new();
    /// let o = Options::default().parse(bootargs, |e| refused.push(e.0));
    /// assert_eq!(refused, ["init_on_alloc=maybe"]);
    /// assert_eq!(o.debug, DebugFlags::parse("FZ").unwrap());
    /// assert_eq!(o.debug_cache.unwrap().as_str(), "kmalloc-64");
    /// assert!(o.init_on_free && !o.init_on_alloc);
    /// ```
    pub fn parse<'a>(
        mut self,
        cmdline: &'a str,
        mut refused: impl FnMut(OptionError<'a>),
    ) -> Options {
        for word in cmdline.split_whitespace() {
            if let Err(e) = self.apply(word) {
                refused(e);
            }
        }
        self
    }

    /// Applies one word of a command line, if it is an allocator option: all of it, or,
    /// when malformed, none of it.
    fn apply<'a>(&mut self, word: &'a str) -> Result<(), OptionError<'a>> {
        let Some((key, v)) = word.split_once('=') else {
            return Ok(());
        };
        let bad = || OptionError(word);
        let mut o = *self;
        match key {
            "kmem.debug" | "slab_debug" => {
                let (flags, c) = with_cache(v);
                o.debug = DebugFlags::parse(flags).ok_or_else(bad)?;
                o.debug_cache = cache_name(c).map_err(|_| bad())?;
            }
            "kmem.failslab" => {
                let (n, c) = with_cache(v);
                o.failslab_every = n.parse().map_err(|_| bad())?;
                o.failslab_cache = cache_name(c).map_err(|_| bad())?;
            }
            "init_on_alloc" => o.init_on_alloc = flag(v).map_err(|_| bad())?,
            "init_on_free" => o.init_on_free = flag(v).map_err(|_| bad())?,
            "kmem.random_freelist" => o.random_freelist = flag(v).map_err(|_| bad())?,
            "kmem.kfence" => o.kfence = v.parse().map_err(|_| bad())?,
            _ => {}
        }
        *self = o;
        Ok(())
    }

    /// The debug flags for the cache named `name`.
    ///
    /// # Examples
    /// ```
    /// use kmem::Options;
    /// use kmem::slab::{CacheName, DebugFlags};
    /// let o = Options::default().parse("slab_debug=P,dentry", |e| panic!("{e}"));
    /// assert_eq!(o.debug_for(&CacheName::new("dentry")?), DebugFlags::POISON);
    /// assert!(o.debug_for(&CacheName::new("inode")?).is_empty());
    /// # Ok::<(), kmem::SlabError>(())
    /// ```
    pub fn debug_for(&self, name: &CacheName) -> DebugFlags {
        match self.debug_cache {
            Some(c) if c != *name => DebugFlags::NONE,
            _ => self.debug,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_linux_style_options() {
        let o = Options::default().parse(
            "console=x kmem.debug=ZP,kmalloc-64 kmem.failslab=5 init_on_free=1 selftest",
            |e| panic!("{e}"),
        );
        assert_eq!(o.debug, DebugFlags::RED_ZONE.union(DebugFlags::POISON));
        let k64 = CacheName::new("kmalloc-64").unwrap();
        assert_eq!(o.debug_for(&k64), o.debug);
        assert!(
            o.debug_for(&CacheName::new("kmalloc-8").unwrap())
                .is_empty()
        );
        assert_eq!(o.failslab_every, 5);
        assert!(o.init_on_free && !o.init_on_alloc);
        assert_eq!(o.kfence, DEFAULT_KFENCE_INTERVAL);
    }

    #[test]
    fn reads_the_sampling_interval() {
        let o = Options::default().parse("kmem.kfence=100", |e| panic!("{e}"));
        assert_eq!(o.kfence, 100);
        let off = Options::default().parse("kmem.kfence=0", |e| panic!("{e}"));
        assert_eq!(off.kfence, 0);
        let mut refused = Vec::new();
        let o = Options::default().parse("kmem.kfence=-1 kmem.kfence=often", |e| refused.push(e));
        assert_eq!(
            refused,
            [
                OptionError("kmem.kfence=-1"),
                OptionError("kmem.kfence=often")
            ]
        );
        assert_eq!(o.kfence, DEFAULT_KFENCE_INTERVAL);
    }

    /// A malformed option is refused alone: it changes nothing (not even the half of it
    /// that reads), and every well-formed option around it still applies.
    #[test]
    fn a_malformed_option_is_refused_and_the_others_still_apply() {
        let mut refused = Vec::new();
        let o = Options::default().parse(
            "kmem.debug=FQ init_on_alloc=1 kmem.failslab=x,kmalloc-64 kmem.failslab=3",
            |e| refused.push(e),
        );
        assert_eq!(
            refused,
            [
                OptionError("kmem.debug=FQ"),
                OptionError("kmem.failslab=x,kmalloc-64")
            ]
        );
        assert!(o.init_on_alloc && o.debug.is_empty());
        assert_eq!((o.failslab_every, o.failslab_cache), (3, None));
    }
}
