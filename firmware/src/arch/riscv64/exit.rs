//! Ending the machine: through the exit device the board found in the device tree — a
//! `sifive,test0` finisher, which `syscon-poweroff` names on QEMU `virt`: QEMU exits with
//! the status written — else through SBI system reset, after which QEMU exits with status
//! 0 whatever happened (so a failure is printed first).
//!
//! A write to the finisher only requests the exit: the hart runs on until QEMU's main
//! loop acts on it. It must not go on to the SBI reset then, whose own power-off request
//! (OpenSBI writes the finisher's pass code) can overtake a failing status; it waits, and
//! falls back to SBI only when no finisher ended the machine within a second.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::RiscV64;
use crate::arch::Isa;
use kmem::Arch;

/// The finisher's register, 0 for none; trap.s reads it too. Plain loads and stores:
/// usable with the MMU off.
pub(super) static DEVICE: AtomicUsize = AtomicUsize::new(0);
/// What a successful exit writes there (the `syscon-poweroff` node's `value`).
static PASS: AtomicU64 = AtomicU64::new(FINISHER_PASS as u64);

/// The `sifive,test0` finisher's codes: pass, and fail with the status in the upper half.
const FINISHER_PASS: u32 = 0x5555;
const FINISHER_FAIL: u32 = 0x3333;
/// What the nested-trap path writes: fail with status 1.
pub(super) const FAILURE: u32 = 1 << 16 | FINISHER_FAIL;

/// Makes `exit` write the finisher at `register`: `pass` for success, the finisher's
/// failure code with the status otherwise. The device must be mapped as I/O (or the MMU
/// off) whenever `exit` may run.
pub fn set_device(register: usize, pass: u32) {
    PASS.store(u64::from(pass), Relaxed);
    DEVICE.store(register, Relaxed);
}

/// Ends the machine with `code` (0: success).
pub fn exit(code: u32) -> ! {
    let register = DEVICE.load(Relaxed);
    if register != 0 {
        let value = if code == 0 {
            PASS.load(Relaxed) as u32
        } else {
            code.min(0xffff) << 16 | FINISHER_FAIL
        };
        // SAFETY: the board registered this finisher register from the device tree after
        // vetting it as I/O kmem maps; QEMU ends soon after.
        unsafe { (register as *mut u32).write_volatile(value) };
        let end = RiscV64::cycles().saturating_add(RiscV64::cycles_per_second());
        while RiscV64::cycles() < end {
            core::hint::spin_loop();
        }
    }
    if code == 0 {
        sbi_rt::system_reset(sbi_rt::Shutdown, sbi_rt::NoReason);
    } else {
        sbi_rt::system_reset(sbi_rt::Shutdown, sbi_rt::SystemFailure);
    }
    RiscV64::halt()
}
