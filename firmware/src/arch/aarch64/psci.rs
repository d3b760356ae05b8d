//! PSCI (Arm Power State Coordination Interface): starting cores and powering off,
//! through `hvc` or `smc` as the device tree's `/psci` node says.

use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::AArch64;
use crate::arch::Isa;

const CPU_ON: u64 = 0xC400_0003;
const SYSTEM_OFF: u64 = 0x8400_0008;

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Conduit {
    Hvc = 0,
    Smc = 1,
}

/// The conduits by the name a device tree's `/psci/method` gives them
/// (`bsp::devicetree::psci`).
pub const METHODS: [(&str, Conduit); 2] = [("hvc", Conduit::Hvc), ("smc", Conduit::Smc)];

/// The conduit in use; the vector code reads it too (0 = hvc, 1 = smc). Plain loads and
/// stores only, so it is usable with the MMU off.
pub(super) static CONDUIT: AtomicU8 = AtomicU8::new(Conduit::Hvc as u8);

/// Uses `c` for every later call. Until then, `hvc` (QEMU `virt` without EL2).
pub fn set_conduit(c: Conduit) {
    CONDUIT.store(c as u8, Relaxed);
}

fn call(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    if CONDUIT.load(Relaxed) == Conduit::Smc as u8 {
        // SAFETY: an SMCCC call; the firmware may clobber what the C ABI lets it.
        unsafe {
            core::arch::asm!("smc #0", inlateout("x0") function => ret,
                in("x1") a1, in("x2") a2, in("x3") a3, clobber_abi("C"))
        };
    } else {
        // SAFETY: as above, through the hypervisor conduit.
        unsafe {
            core::arch::asm!("hvc #0", inlateout("x0") function => ret,
                in("x1") a1, in("x2") a2, in("x3") a3, clobber_abi("C"))
        };
    }
    ret
}

/// Starts the core with affinity `mpidr` at physical address `entry`, with `context` in
/// its `x0`. The error is PSCI's return code (-4 ALREADY_ON, -2 INVALID_PARAMETERS, …).
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match call(CPU_ON, mpidr, entry, context) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Powers the machine off (QEMU exits with status 0).
pub fn system_off() -> ! {
    call(SYSTEM_OFF, 0, 0, 0);
    // SYSTEM_OFF does not return; if the firmware refused, there is nothing left to do.
    AArch64::halt()
}
