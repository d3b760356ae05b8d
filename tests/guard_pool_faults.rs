//! The guard pool's whole loop on the host, as a kernel's page-fault handler runs it: a
//! sampled object's guard page and freed page really are `PROT_NONE`, the touch raises
//! SIGSEGV, the handler hands the address to `Kmem::guard_pool_fault`, which reports and
//! maps the page again, and the access completes when the handler returns.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};

use kmem::guard_pool::{Access, FaultOutcome, GuardFaultKind};
use kmem::hosted::{GuardedPages, HostArch, Region};
use kmem::{Gfp, Kmem, Options, PageAllocator, ZoneLimits};

static KMEM: AtomicPtr<Kmem<HostArch>> = AtomicPtr::new(core::ptr::null_mut());
/// The last fault's kind, as a number (0: none, 1: right, 2: left, 3: after free, 4: wild).
static LAST: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SIGSEGV with SA_SIGINFO.
    let addr = unsafe { (*info).si_addr() } as usize;
    // SAFETY: set before any fault is provoked, never freed (leaked).
    let kmem = unsafe { &*KMEM.load(SeqCst) };
    match kmem.guard_pool_fault(addr, Access::Read, 0) {
        Some(FaultOutcome::Reported(r)) => LAST.store(
            match r.kind {
                GuardFaultKind::OutOfBoundsRight { .. } => 1,
                GuardFaultKind::OutOfBoundsLeft { .. } => 2,
                GuardFaultKind::UseAfterFree { .. } => 3,
                GuardFaultKind::Invalid => 4,
            },
            SeqCst,
        ),
        Some(FaultOutcome::Stale) => {}
        // Not the pool's: a real bug in this test; end it.
        None => std::process::abort(),
    }
}

#[test]
fn touches_of_guard_and_freed_pages_fault_are_reported_and_carry_on() {
    let ram = Box::leak(Box::new(Region::new(16 << 20).unwrap()));
    // SAFETY: the region is leaked: the allocator's alone for the process's life.
    let pages = unsafe {
        PageAllocator::<HostArch>::new(&ram.normalized().unwrap(), ZoneLimits::FLAT, 1, None)
    }
    .unwrap();
    let pool = GuardedPages::new(7).unwrap();
    let options = Options {
        kfence: 1 << 30,
        ..Options::default()
    };
    let kmem = Kmem::with_options(pages, options)
        .unwrap()
        .with_guard_pool(pool.memory())
        .unwrap();
    let kmem: &'static Kmem<HostArch> = Box::leak(Box::new(kmem));
    KMEM.store(kmem as *const _ as *mut _, SeqCst);
    // SAFETY: a plain SA_SIGINFO handler for SIGSEGV; this test binary installs no other.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_segv;
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut()),
            0
        );
    }
    kmem.sample_next();
    let p = kmem.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert!(pool.contains(p as usize));
    // SAFETY: one past the end of a sampled object: its guard page, which faults; the
    // handler maps it and the write lands in the pool.
    unsafe { p.add(64).write_volatile(1) };
    assert_eq!(LAST.swap(0, SeqCst), 1, "the overrun was caught");
    // SAFETY: p is live and freed once; the read after it hits its unmapped page.
    unsafe {
        kmem.kfree(p).unwrap();
        p.add(8).read_volatile();
    }
    assert_eq!(LAST.swap(0, SeqCst), 3, "the use after free was caught");
    assert_eq!(kmem.guard_pool_info().unwrap().faults, 2);
}
