//! `fork()` while other threads allocate: `pthread_atfork` handlers that hold every lock
//! of every live heap across the fork (see [`Heap`](super::Heap)).

use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use super::HeapState;

/// Guards the list of live heaps; held from `prepare` to `parent`/`child`, so that no
/// heap starts or ends across a fork.
static LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// The live heaps, linked through `HeapState::next`.
static HEAPS: AtomicPtr<HeapState> = AtomicPtr::new(core::ptr::null_mut());
static ATFORK: spin::Once<()> = spin::Once::new();

/// Adds a started heap to the list, registering the handlers on first use.
pub(super) fn register(state: *mut HeapState) {
    ATFORK.call_once(|| {
        // Miri does not model fork.
        if !cfg!(miri) {
            // SAFETY: three functions of the C signature that pthread_atfork takes.
            // A failure (ENOMEM) leaves fork as unsafe as it was, and is not fatal.
            let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        }
    });
    let _list = LOCK.lock();
    // SAFETY: a live state, not yet on the list: nobody else reaches it.
    unsafe { (*state).next.store(HEAPS.load(Relaxed), Relaxed) };
    HEAPS.store(state, Relaxed);
}

/// Takes a heap that is being dropped off the list.
pub(super) fn unregister(state: *mut HeapState) {
    let _list = LOCK.lock();
    let mut link = &HEAPS;
    loop {
        let p = link.load(Relaxed);
        if p.is_null() {
            return;
        }
        // SAFETY: members of the list are live while the lock is held.
        let next = unsafe { &(*p).next };
        if p == state {
            link.store(next.load(Relaxed), Relaxed);
            return;
        }
        link = next;
    }
}

/// Calls `f` with every live heap; the caller holds `LOCK`.
fn each(mut f: impl FnMut(&HeapState)) {
    let mut p = HEAPS.load(Relaxed);
    while !p.is_null() {
        // SAFETY: members of the list are live while the lock is held.
        let s = unsafe { &*p };
        f(s);
        p = s.next.load(Relaxed);
    }
}

/// Before `fork`, in the forking thread: every heap's locks held.
unsafe extern "C" fn prepare() {
    core::mem::forget(LOCK.lock());
    each(|s| {
        let held = s.kmem.fork_hold();
        // SAFETY: only the forking thread, under LOCK, touches `held`.
        unsafe { *s.held.get() = Some(held) };
    });
}

/// After `fork`, in the parent: everything `prepare` took, given back.
unsafe extern "C" fn parent() {
    release();
}

/// After `fork`, in the child, whose only thread is a copy of the forking one: the
/// locks given back as in the parent (this thread holds them), then the CPU ids of
/// the threads the child does not have set free, and the barrier made ready again.
unsafe extern "C" fn child() {
    each(|s| {
        // SAFETY: this is the child, whose only thread is the forking one, which was
        // in `fork` and held none of these locks.
        unsafe {
            s.kmem.pages().after_fork_in_child();
            s.chunks.after_fork_in_child();
        }
    });
    release();
    super::cpu_ids::ids_after_fork();
}

fn release() {
    each(|s| {
        // SAFETY: only the forking thread (or its copy), under LOCK, touches `held`.
        if let Some(held) = unsafe { (*s.held.get()).take() } {
            // SAFETY: `prepare` took these locks with fork_hold in this thread (or
            // in the thread this child is a copy of), and they are held since.
            unsafe { s.kmem.fork_release(held) };
        }
    });
    // SAFETY: `prepare` took LOCK and forgot its guard.
    unsafe { LOCK.force_unlock() };
}
