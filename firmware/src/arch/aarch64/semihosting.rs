//! Arm semihosting, as QEMU implements it with `-semihosting`: only SYS_EXIT_EXTENDED,
//! which ends QEMU with a chosen exit status — what `make selftest` needs.

/// `ADP_Stopped_ApplicationExit`: the reason code that makes the subcode the exit status.
const APPLICATION_EXIT: u64 = 0x20026;
/// SYS_EXIT_EXTENDED.
const SYS_EXIT_EXTENDED: u32 = 0x18;

/// Parameter block for exit(1), read by the vector code when it must exit without a stack.
pub(super) static EXIT_FAILURE: [u64; 2] = [APPLICATION_EXIT, 1];

core::arch::global_asm!(
    ".section .text",
    ".global __semihosting_call",
    "__semihosting_call:",
    ".global __semihosting_hlt",
    "__semihosting_hlt:",
    "    hlt #0xf000",
    "    ret",
);

unsafe extern "C" {
    /// Performs semihosting operation `op` with parameter block `param`.
    fn __semihosting_call(op: u32, param: *const u64) -> u64;
    static __semihosting_hlt: u8;
}

/// Address of the `hlt` that traps when QEMU has no semihosting, so that the exception
/// handler recognises it.
pub(super) fn hlt_address() -> u64 {
    (&raw const __semihosting_hlt) as u64
}

/// Asks QEMU to exit with `code`. Returns only when semihosting is not enabled (the
/// `hlt` then faults, and the exception handler turns that into PSCI SYSTEM_OFF — so in
/// practice it does not return either).
pub fn exit(code: u32) {
    let block = [APPLICATION_EXIT, u64::from(code)];
    // SAFETY: SYS_EXIT_EXTENDED reads the two-word block, which lives across the call;
    // it has no other effect on this program's memory.
    unsafe { __semihosting_call(SYS_EXIT_EXTENDED, block.as_ptr()) };
}
