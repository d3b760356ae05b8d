//! Thread ids for [`HostArch`](super::HostArch): which CPU slot a thread owns, the
//! process-wide barrier that lets an owner enter its slot without an atomic
//! read-modify-write (`membarrier`), and resetting both in a child after `fork`.
//!
//! A thread takes the lowest free id on its first call into kmem and gives it back when it
//! exits, so live threads never share an id and ids stay dense. A thread that finds every
//! id taken (more than `MAX_IDS` live threads), or that runs after its id was given back
//! (in late thread-local destructors), gets a *shared* id, at or above `MAX_IDS`: it is
//! no slot's owner, so it always takes a slot's lock (see `crate::percpu`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::numa::node_cpus;

/// Exclusive ids available (live threads beyond this many share slots).
pub(super) const MAX_IDS: usize = 256;
static IDS: [AtomicU64; MAX_IDS / 64] = [const { AtomicU64::new(0) }; MAX_IDS / 64];
/// Source of shared ids for threads without an exclusive one.
static NEXT_SHARED: AtomicUsize = AtomicUsize::new(MAX_IDS);

/// No id yet.
pub(super) const UNCLAIMED: usize = usize::MAX;

std::thread_local! {
    // No destructor, so reading it is a plain thread-local load.
    pub(super) static CPU: Cell<usize> = const { Cell::new(UNCLAIMED) };
    // Gives the exclusive id back when the thread exits.
    static RELEASE: IdRelease = const { IdRelease };
    // The fake node `set_node` put the thread on (`UNCLAIMED`: none), whose ids it claims.
    pub(super) static NODE: Cell<usize> = const { Cell::new(UNCLAIMED) };
}

struct IdRelease;

impl Drop for IdRelease {
    fn drop(&mut self) {
        let _ = CPU.try_with(|c| {
            let id = c.get();
            // From now on this thread is no slot's owner: later calls (from other
            // thread-local destructors) take the locked path under a shared id.
            c.set(NEXT_SHARED.fetch_add(1, Ordering::Relaxed).max(MAX_IDS));
            if id < MAX_IDS {
                release_id(id);
            }
        });
    }
}

/// Gives exclusive id `id` back. Release: a thread that takes the id next sees
/// everything this one did in the slots it owned.
pub(super) fn release_id(id: usize) {
    IDS[id / 64].fetch_and(!(1 << (id % 64)), Ordering::Release);
}

#[cold]
fn claim_id() -> usize {
    let mut id = None;
    let ids = match NODE.try_with(Cell::get) {
        Ok(node) if node != UNCLAIMED => node_cpus(node),
        _ => 0..MAX_IDS,
    };
    if barrier_available() && !ids.is_empty() {
        'words: for (w, word) in IDS.iter().enumerate() {
            // The bits of this word inside `ids`.
            let (lo, hi) = (ids.start.max(w * 64), ids.end.min(w * 64 + 64));
            if lo >= hi {
                continue;
            }
            let mask = (u64::MAX >> (64 - (hi - lo))) << (lo - w * 64);
            let mut v = word.load(Ordering::Relaxed);
            while v & mask != mask {
                let bit = (!v & mask).trailing_zeros() as usize;
                match word.compare_exchange_weak(
                    v,
                    v | 1 << bit,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        id = Some(w * 64 + bit);
                        break 'words;
                    }
                    Err(now) => v = now,
                }
            }
        }
    }
    let id = match id {
        // Registering the destructor may fail during thread teardown: then keep no
        // exclusive id (give it back at once) and share.
        Some(id) if RELEASE.try_with(|_| ()).is_ok() => id,
        Some(id) => {
            IDS[id / 64].fetch_and(!(1 << (id % 64)), Ordering::Release);
            NEXT_SHARED.fetch_add(1, Ordering::Relaxed).max(MAX_IDS)
        }
        None => NEXT_SHARED.fetch_add(1, Ordering::Relaxed).max(MAX_IDS),
    };
    let _ = CPU.try_with(|c| c.set(id));
    id
}

/// The calling thread's id: below `MAX_IDS` it is exclusive to this thread for as long
/// as the thread lives.
#[inline]
pub(super) fn thread_id() -> usize {
    match CPU.try_with(Cell::get) {
        Ok(UNCLAIMED) => claim_id(),
        Ok(id) => id,
        Err(_) => MAX_IDS,
    }
}

// --- The process-wide barrier ----------------------------------------------------------
//
// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` runs a full memory barrier on every CPU
// that is running a thread of this process. A slot's owner announces itself with a
// plain store and a compiler fence; a thread that wants the slot from outside sets a flag
// and then calls this barrier, which makes the pair behave as if both sides had issued a
// full fence (the asymmetric Dekker handshake of Linux's membarrier(2), folly's
// `asymmetricHeavyBarrier`). Where the call is unavailable, no thread gets an exclusive
// id, so no slot is ever entered without its lock and no barrier is needed.

// Miri does not model membarrier: under it, every slot takes its lock.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(miri)
))]
pub(super) mod membarrier {
    use std::sync::atomic::{AtomicU8, Ordering};

    #[cfg(target_arch = "x86_64")]
    const SYS_MEMBARRIER: i64 = 324;
    #[cfg(target_arch = "aarch64")]
    const SYS_MEMBARRIER: i64 = 283;
    const CMD_PRIVATE_EXPEDITED: i64 = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: i64 = 1 << 4;

    unsafe extern "C" {
        fn syscall(num: i64, ...) -> i64;
    }

    /// 0 unknown, 1 available, 2 unavailable.
    static STATE: AtomicU8 = AtomicU8::new(0);

    pub fn available() -> bool {
        match STATE.load(Ordering::Acquire) {
            1 => true,
            2 => false,
            _ => {
                // SAFETY: membarrier takes two integer arguments and touches no memory
                // of ours; registering twice is harmless.
                let ok = unsafe {
                    syscall(SYS_MEMBARRIER, CMD_REGISTER_PRIVATE_EXPEDITED, 0i64) == 0
                        && syscall(SYS_MEMBARRIER, CMD_PRIVATE_EXPEDITED, 0i64) == 0
                };
                STATE.store(if ok { 1 } else { 2 }, Ordering::Release);
                ok
            }
        }
    }

    pub fn barrier() {
        if available() {
            // SAFETY: as in `available`; the process is registered.
            let r = unsafe { syscall(SYS_MEMBARRIER, CMD_PRIVATE_EXPEDITED, 0i64) };
            assert_eq!(r, 0, "membarrier failed after registration");
        }
    }

    /// In a child after `fork`: registers the child's process (registering again is
    /// harmless where the kernel kept the parent's registration); returns whether the
    /// barrier is available to it.
    pub fn register_after_fork() -> bool {
        if STATE.load(Ordering::Acquire) != 1 {
            return false;
        }
        // SAFETY: as in `available`.
        let ok = unsafe { syscall(SYS_MEMBARRIER, CMD_REGISTER_PRIVATE_EXPEDITED, 0i64) == 0 };
        if !ok {
            STATE.store(2, Ordering::Release);
        }
        ok
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(miri)
)))]
pub(super) mod membarrier {
    pub fn available() -> bool {
        false
    }
    pub fn barrier() {}
    pub fn register_after_fork() -> bool {
        false
    }
}

fn barrier_available() -> bool {
    membarrier::available()
}

/// Whether threads own their CPU slots (lock-free per-CPU fast paths) in this process.
///
/// # Examples
/// ```
/// use kmem::Arch;
/// use kmem::hosted::{HostArch, owned_slots};
/// if owned_slots() {
///     // This thread's id is its own until it exits.
///     assert!(HostArch::cpu_id() < HostArch::OWNED_IDS);
/// }
/// ```
pub fn owned_slots() -> bool {
    barrier_available()
}

/// In a child after `fork`: only the forking thread exists, so every exclusive id but
/// its own is free again (the slots of the parent's other threads, which `prepare` left
/// empty of owners, can be claimed by the child's new threads); and the process-wide
/// barrier is registered for the child's own process, or, where that fails, no thread
/// keeps an exclusive id.
#[cfg(unix)]
pub(super) fn ids_after_fork() {
    let own = CPU.try_with(Cell::get).unwrap_or(UNCLAIMED);
    for word in &IDS {
        word.store(0, Ordering::Relaxed);
    }
    if membarrier::register_after_fork() {
        if own < MAX_IDS {
            IDS[own / 64].fetch_or(1 << (own % 64), Ordering::Relaxed);
        }
    } else if own < MAX_IDS {
        let _ = CPU.try_with(|c| c.set(NEXT_SHARED.fetch_add(1, Ordering::Relaxed).max(MAX_IDS)));
    }
}
