//! The hosted heap grows and shrinks with the program (issue 33): a live set four times
//! the first chunk, then freed, with the process's resident memory read from
//! `/proc/self/status` before, at the peak and after; a heap whose OS refuses memory
//! returns null instead of aborting.
#![cfg(feature = "hosted")]

use std::alloc::{GlobalAlloc, Layout};

use kmem::hosted::Heap;

const CHUNK: usize = 32 << 20;

#[global_allocator]
static KMEM: Heap = Heap::growable(CHUNK, None, 4);

/// The tests run one at a time: another test's blocks in a chunk would keep it online.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// VmRSS in KiB, if the OS reports it.
fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn live_set_of_four_chunks_grows_the_heap_and_rss_follows_it_down() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = rss_kib();
    let start = KMEM.stats();
    // 4 x 32 MiB in 1000-byte blocks, each written (so resident).
    let n = 4 * CHUNK / 1000;
    let mut live: Vec<Vec<u8>> = Vec::with_capacity(n);
    for i in 0..n {
        live.push(vec![i as u8; 1000]);
    }
    let peak = rss_kib();
    let grown = KMEM.stats();
    assert!(
        grown.bytes >= 4 * CHUNK,
        "the heap grew to hold the live set: {grown:?}"
    );
    assert!(grown.chunks >= 3, "{grown:?}");
    for (i, v) in live.iter().enumerate().step_by(997) {
        assert!(v.iter().all(|&b| b == i as u8));
    }
    while live.pop().is_some() {}
    drop(live);
    let freed = rss_kib();
    let auto = KMEM.stats();
    let released = KMEM.trim();
    let trimmed = rss_kib();
    let end = KMEM.stats();
    println!(
        "VmRSS KiB: before {before:?}, peak {peak:?} (heap {} MiB in {} chunks after the first), \
         after freeing {freed:?} (heap {} MiB, {} chunks trimmed automatically, spare {}), \
         after trim {trimmed:?} ({} MiB given back; heap {} MiB)",
        grown.bytes >> 20,
        grown.chunks,
        auto.bytes >> 20,
        auto.trimmed,
        auto.spare,
        released >> 20,
        end.bytes >> 20
    );
    assert_eq!(start.chunks, 0);
    assert!(
        auto.trimmed > 0,
        "frees gave chunks back by themselves: {auto:?}"
    );
    assert_eq!(end.chunks, 0, "{end:?}");
    if let (Some(peak), Some(trimmed)) = (peak, trimmed) {
        assert!(peak > 128 << 10, "the live set was resident: {peak} KiB");
        assert!(
            trimmed < peak / 2,
            "RSS fell with the heap: {peak} -> {trimmed} KiB"
        );
    }
}

#[test]
fn a_limit_or_a_refusing_os_is_null_not_an_abort() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The limit: 8 MiB in all.
    let heap = Heap::growable(4 << 20, Some(8 << 20), 1);
    let l = Layout::from_size_align(64 << 10, 8).unwrap();
    let mut got = Vec::new();
    loop {
        // SAFETY: a non-zero layout; blocks are freed below with it.
        let p = unsafe { heap.alloc(l) };
        if p.is_null() {
            break;
        }
        got.push(p);
    }
    assert!(got.len() >= 64 && got.len() < 128, "{} blocks", got.len());
    assert_eq!(heap.stats().bytes, 8 << 20);
    for p in got {
        // SAFETY: allocated above with `l`.
        unsafe { heap.dealloc(p, l) };
    }
    // The OS refuses: a child whose address space is capped maps nothing more.
    // SAFETY: fork in a test; the child only allocates and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let heap = Heap::growable(4 << 20, None, 1);
        heap.get().unwrap();
        let vm = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = vm
            .lines()
            .find(|l| l.starts_with("VmSize:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let cap = libc::rlimit {
            rlim_cur: (kib + (64 << 10)) << 10,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit reads the struct.
        unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) };
        let mut n = 0usize;
        loop {
            // SAFETY: as above; never freed, the child exits.
            if unsafe { heap.alloc(l) }.is_null() {
                break;
            }
            n += 1;
        }
        let refused = heap.stats().refused;
        // SAFETY: leave the child without running the parent's test harness.
        unsafe { libc::_exit(if refused > 0 && n > 64 { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "the child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0);
}

#[test]
fn fork_while_other_threads_grow_and_trim_the_heap() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Each round takes ~48 MiB (past the first chunk: the heap grows) and
                // frees it (trim gives chunks back).
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v: Vec<Vec<u8>> = (0..12)
                        .map(|i| vec![(i + t) as u8; (4 << 20) - 64])
                        .collect();
                    assert!(v.iter().enumerate().all(|(i, b)| b[100] == (i + t) as u8));
                    drop(v);
                    KMEM.trim();
                }
            })
        })
        .collect();
    for _ in 0..40 {
        // SAFETY: fork; the child allocates (growing its heap), checks and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 3 << 20]).collect();
            let ok = v.iter().enumerate().all(|(i, b)| b[4096] == i as u8);
            drop(v);
            KMEM.trim();
            // SAFETY: leave without the parent's harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        let start = std::time::Instant::now();
        loop {
            // SAFETY: polls the child just forked.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                // SAFETY: the child is ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("a child hung (a lock held across fork)");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let s = KMEM.stats();
    println!("after the forks: {s:?}");
    assert!(s.grown > 0 && s.trimmed > 0);
}
