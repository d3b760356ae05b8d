//! What a fault in the guard pool was, and its report in KFENCE's words
//! (`mm/kfence/report.c`): an access to a guard page is out of bounds of the nearer
//! live object beside it, an access to a freed object's page a use after free, and any
//! other access to the pool (a guard page with no live object beside it) an invalid
//! access. The faulting page is mapped again, so that the access goes on and the system
//! with it, as KFENCE lets it; freeing the object unmaps it again (and the page of an
//! invalid access is unmapped by the pool's next allocation or free).

use core::fmt;
use core::sync::atomic::Ordering::Relaxed;

use super::{GuardPool, POOL_PAGE, SampledObject, SlotState};
use crate::arch::Arch;

/// Whether a faulting access read or wrote.
///
/// # Examples
/// ```
/// use kmem::guard_pool::Access;
/// assert_eq!(format!("{} {}", Access::Read, Access::Write), "read write");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// A load.
    Read,
    /// A store (or an atomic read-modify-write).
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// The kind of a guard-pool fault.
///
/// # Examples
/// See [`GuardFault`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuardFaultKind {
    /// `distance` bytes before the object's first byte.
    OutOfBoundsLeft {
        /// Bytes from the access to the object's start.
        distance: usize,
    },
    /// `distance` bytes past the object's last byte (1: the byte just past its end).
    OutOfBoundsRight {
        /// Bytes from the object's end to the access, counting the access.
        distance: usize,
    },
    /// At `offset` bytes from a freed object's start (negative: before it, on its page).
    UseAfterFree {
        /// Bytes from the object's start.
        offset: isize,
    },
    /// Into the pool with no live object near: a wild pointer.
    Invalid,
}

/// A fault the guard pool caught: the report, which `Display` writes in KFENCE's words.
///
/// # Examples
/// ```
/// use kmem::guard_pool::{Access, GuardFault, GuardFaultKind};
/// let f = GuardFault { kind: GuardFaultKind::Invalid, access: Access::Write, addr: 0x1000, pc: 0x8000, object: None };
/// assert_eq!(f.to_string(), "BUG: KFENCE: invalid write in pc 0x8000: Invalid write at 0x1000");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GuardFault {
    /// What the access did wrong.
    pub kind: GuardFaultKind,
    /// Read or write.
    pub access: Access,
    /// The address accessed.
    pub addr: usize,
    /// The faulting instruction.
    pub pc: usize,
    /// The object it concerns (none for an invalid access).
    pub object: Option<SampledObject>,
}

impl fmt::Display for GuardFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, addr) = (self.access, self.addr);
        let title = match self.kind {
            GuardFaultKind::OutOfBoundsLeft { .. } | GuardFaultKind::OutOfBoundsRight { .. } => {
                "out-of-bounds"
            }
            GuardFaultKind::UseAfterFree { .. } => "use-after-free",
            GuardFaultKind::Invalid => "invalid",
        };
        write!(f, "BUG: KFENCE: {title} {a} in pc {:#x}: ", self.pc)?;
        match self.kind {
            GuardFaultKind::OutOfBoundsLeft { distance } => {
                write!(f, "Out-of-bounds {a} at {addr:#x} ({distance}B left of ")?
            }
            GuardFaultKind::OutOfBoundsRight { distance } => {
                write!(f, "Out-of-bounds {a} at {addr:#x} ({distance}B right of ")?
            }
            GuardFaultKind::UseAfterFree { offset } => {
                write!(f, "Use-after-free {a} at {addr:#x} (offset {offset} in ")?
            }
            GuardFaultKind::Invalid => return write!(f, "Invalid {a} at {addr:#x}"),
        }
        match self.object {
            Some(o) => write!(f, "{o})"),
            None => f.write_str("?)"),
        }
    }
}

/// What the pool made of a fault.
///
/// # Examples
/// ```
/// # let ram = kmem::hosted::Region::new(16 << 20).unwrap();
/// # let map = ram.normalized().unwrap();
/// # // SAFETY: the map's usable RAM is the allocator's alone, for as long as it lives.
/// # let pages = unsafe { kmem::PageAllocator::<kmem::hosted::HostArch>::new(&map, kmem::ZoneLimits::FLAT, 1, None) }.unwrap();
/// # let pool = kmem::hosted::GuardedPages::new(3).unwrap();
/// # let kmem = kmem::Kmem::new(pages)?.with_guard_pool(pool.memory())?;
/// use kmem::guard_pool::{Access, FaultOutcome, GuardFaultKind};
/// kmem.sample_next();
/// let p = kmem.kmalloc(64, kmem::Gfp::KERNEL)?.as_ptr() as usize;
/// // What a page-fault handler passes on for a write one byte past the end:
/// match kmem.guard_pool_fault(p + 64, Access::Write, 0) {
///     Some(FaultOutcome::Reported(r)) => {
///         assert_eq!(r.kind, GuardFaultKind::OutOfBoundsRight { distance: 1 })
///     }
///     other => panic!("{other:?}"),
/// }
/// unsafe { kmem.kfree(p as *mut u8) }?; // SAFETY: p is not used again.
/// # Ok::<(), kmem::SlabError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub enum FaultOutcome {
    /// A bug, reported (logged and counted); the page is accessible again, so the access
    /// may be retried.
    Reported(GuardFault),
    /// An access to a live object's page through a translation this CPU still held
    /// unmapped from before the object was allocated (another CPU mapped it): nothing
    /// wrong, retry.
    Stale,
}

/// KFENCE's "invalid free": a free of a pool address that is not a live sampled object.
pub(super) struct InvalidFree {
    pub(super) addr: usize,
    /// The object on the page `addr` points into, if it is an object page.
    pub(super) object: Option<SampledObject>,
}

impl fmt::Display for InvalidFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BUG: KFENCE: invalid free: Invalid free of {:#x}",
            self.addr
        )?;
        match self.object {
            Some(o) if o.state != SlotState::Unused => write!(f, " (in {o})"),
            _ => Ok(()),
        }
    }
}

impl<A: Arch> GuardPool<A> {
    /// Classifies a fault at `addr` (by the instruction at `pc`), reports it through the
    /// log, counts it and maps the page again; `None` when `addr` is not in the pool.
    pub(crate) fn fault(&self, addr: usize, access: Access, pc: usize) -> Option<FaultOutcome> {
        if !self.contains(addr) {
            return None;
        }
        let page_start = addr & !(POOL_PAGE - 1);
        let page = (page_start - self.memory.base) / POOL_PAGE;
        let s = self.slots.lock();
        let live = |index: Option<usize>| {
            index
                .filter(|&i| i < self.memory.objects)
                .map(|i| Self::record(&s, i))
                .filter(|r| r.state == SlotState::Allocated)
        };
        let (kind, object) = if page % 2 == 1 {
            // A guard page: out of bounds of the nearer live object beside it.
            let left = live((page / 2).checked_sub(1)).map(|o| {
                let d = addr + 1 - (o.addr + o.size);
                (GuardFaultKind::OutOfBoundsRight { distance: d }, o)
            });
            let right = live(Some(page.div_ceil(2) - 1)).map(|o| {
                (
                    GuardFaultKind::OutOfBoundsLeft {
                        distance: o.addr - addr,
                    },
                    o,
                )
            });
            let near = match (left, right) {
                (Some(l), Some(r)) => {
                    let dl = addr - (l.1.addr + l.1.size);
                    Some(if r.1.addr - addr < dl { r } else { l })
                }
                (one, None) | (None, one) => one,
            };
            match near {
                Some((kind, o)) => (kind, Some(o)),
                None => (GuardFaultKind::Invalid, None),
            }
        } else if page >= 2 {
            let r = Self::record(&s, page / 2 - 1);
            match r.state {
                SlotState::Freed => (
                    GuardFaultKind::UseAfterFree {
                        offset: addr.wrapping_sub(r.addr) as isize,
                    },
                    Some(r),
                ),
                SlotState::Allocated => {
                    drop(s);
                    self.set_accessible(page_start, true);
                    return Some(FaultOutcome::Stale);
                }
                SlotState::Unused => (GuardFaultKind::Invalid, None),
            }
        } else {
            (GuardFaultKind::Invalid, None)
        };
        drop(s);
        let report = GuardFault {
            kind,
            access,
            addr,
            pc,
            object,
        };
        if kind == GuardFaultKind::Invalid {
            self.wild_opened.store(page_start, Relaxed);
        }
        self.faults.fetch_add(1, Relaxed);
        log::error!("{report}");
        self.set_accessible(page_start, true);
        Some(FaultOutcome::Reported(report))
    }
}
