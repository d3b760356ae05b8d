//! kmem's sampled guard pages (`kmem.kfence=`, Linux's KFENCE) in the firmware: the
//! detector [`crate::fault::handle`] asks about every recoverable fault, the last report
//! each core's faults produced, which the self-tests check, and the state line of the
//! boot report, `meminfo` and `slabinfo`.
//!
//! The allocator reports the bug itself (to the log, hence the console) and maps the
//! faulting page again, so the access resumes and the system carries on. The report is
//! formatted on the core's exception stack; a fault while doing it is a nested exception,
//! which every ISA's entry ends the machine on rather than recursing.

use spin::Mutex;

use crate::arch::cpu::{Cpu, MAX_CPUS};
use crate::fault::{Access, Fault, FaultKind};
use crate::{heap, println};
use kmem::Arch;
use kmem::guard_pool::{self, FaultOutcome, GuardFault};

/// The last report of each core's faults, until a test takes it.
static LAST: [Mutex<Option<GuardFault>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];

/// The detector: true when the fault hit kmem's guard pool (reported, or a stale
/// translation), and the access may be retried.
pub fn detect(fault: &Fault) -> bool {
    if fault.kind == FaultKind::TagCheck {
        return false;
    }
    let Some(kmem) = heap::HEAP.get() else {
        return false;
    };
    let access = match fault.access {
        Access::Read => guard_pool::Access::Read,
        Access::Write => guard_pool::Access::Write,
    };
    match kmem.guard_pool_fault(fault.addr, access, fault.pc) {
        None => false,
        Some(FaultOutcome::Stale) => true,
        Some(FaultOutcome::Reported(report)) => {
            *LAST[Cpu::cpu_id()].lock() = Some(report);
            true
        }
    }
}

/// Takes the last report of this core's faults.
pub fn take_last_report() -> Option<GuardFault> {
    LAST[Cpu::cpu_id()].lock().take()
}

/// Prints `kfence: 1 in N, pool K objects, A allocated, F faults` (or that it is off).
pub fn print_state() {
    match heap::HEAP.get().and_then(|k| k.guard_pool_info()) {
        Some(info) => println!("{info}"),
        None => println!("kfence: off"),
    }
}
