//! `fork()` from a process whose global allocator is kmem, while other threads allocate:
//! the child, whose only thread is a copy of the forking one, must find no allocator lock
//! held and no CPU slot occupied by a thread that does not exist in it, and its thread
//! must get a CPU slot.
//!
//! A test binary of its own: kmem is its global allocator.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmem::Arch;
use kmem::hosted::{HostArch, owned_slots};

const CPUS: usize = 4;

#[global_allocator]
static KMEM: kmem::hosted::Heap = kmem::hosted::Heap::with_capacity_and_cpus(64 << 20, CPUS);

const FORKS: usize = 200;
const THREADS: usize = 3;
/// A child that has not exited by then is taken to be deadlocked (a child takes a few
/// milliseconds).
const CHILD_TIMEOUT: Duration = Duration::from_secs(10);
/// The test stops forking after this many failed children, so that a broken allocator
/// fails it in a minute instead of hanging it for half an hour.
const MAX_FAILURES: usize = 3;

/// What a thread of the parent does until told to stop: objects of every kind of size
/// allocated, kept a while and freed (so slow paths, refills, flushes, slab growth and
/// large blocks run), and now and then a reap pass, which enters other CPUs' slots.
fn churn(stop: &AtomicBool, seed: u64, ops: &AtomicU64) {
    let mut rng = seed | 1;
    let mut held: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let size = [8, 24, 100, 300, 1000, 3000, 5000, 20_000, 70_000, 300_000][rng as usize % 10];
        held.push(vec![rng as u8; size]);
        if held.len() > 64 {
            held.drain(..32);
        }
        if rng.is_multiple_of(512) {
            KMEM.get().unwrap().reap();
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// The child's work: allocations of every kind of size through the global allocator, then
/// a shrink and two reap passes, which enter every CPU's slot of every cache and every
/// node: one left held by a parent thread would hang here; and a new thread, which must
/// get a CPU slot of its own.
fn child() -> bool {
    let mut v: Vec<Box<[u8]>> = Vec::new();
    for i in 0..2000usize {
        let size = [16, 64, 200, 700, 4096, 9000, 65_536, 500_000][i % 8];
        v.push(vec![i as u8; size].into_boxed_slice());
        if v.len() > 50 {
            v.swap_remove(i % 50);
        }
    }
    let s: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let ok = v.iter().all(|b| b.iter().all(|&x| x == b[0])) && s.len() == 1000;
    drop(v);
    let k = KMEM.get().unwrap();
    k.shrink_all();
    k.reap();
    k.reap();
    // The parent's threads held every CPU slot; here only this thread exists, so a new
    // thread gets a slot of its own (lock-free fast paths), not a shared one.
    let slot = std::thread::spawn(|| {
        drop(vec![0u8; 100]);
        HostArch::cpu_id()
    })
    .join()
    .unwrap_or(usize::MAX);
    let own_slot = !owned_slots() || slot < CPUS;
    ok && own_slot && k.validate(None) == Some(0)
}

#[test]
fn fork_from_a_multithreaded_process_200_times() {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (stop, ops) = (stop.clone(), ops.clone());
            std::thread::spawn(move || churn(&stop, 0x9E37_79B9_7F4A_7C15 ^ t << 32, &ops))
        })
        .collect();
    while ops.load(Ordering::Relaxed) < 1000 {
        std::thread::yield_now();
    }
    let mut failures = Vec::new();
    let mut forks = 0;
    while forks < FORKS && failures.len() < MAX_FAILURES {
        let n = forks;
        forks += 1;
        // SAFETY: the child runs only `child` and then `_exit`, never returning into the
        // test harness; it touches no lock of the parent's other threads but the
        // allocator's, which is what the test checks.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = std::panic::catch_unwind(child).unwrap_or(false);
            // SAFETY: ends the child at once, running no destructor or atexit handler.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork failed");
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: pid is our child; status is a valid place for its status.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                    failures.push(format!("fork {n}: child status {status:#x}"));
                }
                break;
            }
            assert_eq!(r, 0, "waitpid failed");
            if start.elapsed() > CHILD_TIMEOUT {
                // SAFETY: pid is our child, which has not been reaped.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                failures.push(format!(
                    "fork {n}: child hung (deadlocked) for {CHILD_TIMEOUT:?}"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {forks} children failed: {failures:#?}",
        failures.len()
    );
}
