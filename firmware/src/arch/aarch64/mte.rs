//! Arm MTE (FEAT_MTE2): the CPU side of memory tagging. When the CPU has it, every core
//! maps RAM as Tagged Normal memory, ignores the top byte of TTBR0 addresses (TBI0) and
//! leaves pointers with tag 0 unchecked (TCMA0), so the firmware's and the allocator's
//! own untagged accesses never fault; `irg` never picks tag 0 (GCR_EL1). The mode
//! (`kmem.mte=sync|async|off`, sync by default) sets how a mismatch is reported
//! (SCTLR_EL1.TCF) and whether the allocator tags what it hands out
//! ([`tagging_on`]); it can change at run time (the benchmark compares them), and
//! pointers handed out meanwhile stay valid.
//!
//! A synchronous mismatch is a data abort that `mte_fault` reports; an asynchronous one
//! only sets TFSR_EL1.TF0, which [`check_async`] looks at (IRQ entry, and the self-tests).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};

use aarch64_cpu::registers::{CNTVCT_EL0, Readable, SCTLR_EL1, Writeable};

use super::AArch64 as Cpu;
use crate::arch::cpu::MAX_CPUS;
use crate::println;
use kmem::Arch;

/// How tag mismatches are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No checks, and the allocator hands out untagged pointers.
    Off = 0,
    /// A mismatching access faults at once (precise address and instruction).
    Sync = 1,
    /// A mismatch is recorded and reported later, without an address.
    Async = 2,
}

impl Mode {
    /// The word `kmem.mte=` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Sync,
            2 => Mode::Async,
            _ => Mode::Off,
        }
    }
}

/// The bytes that share one tag.
pub const GRANULE: usize = 16;
/// Bits of a pointer's tag: 59..56 (the top byte's low half).
const TAG_SHIFT: u32 = 56;
const TAG_MASK: usize = 0xf << TAG_SHIFT;

/// SCTLR_EL1.ATA: tag accesses (`ldg`, `stg`) at EL1.
const SCTLR_ATA: u64 = 1 << 43;
/// SCTLR_EL1.TCF: tag check faults at EL1 (0 none, 1 sync, 2 async).
const SCTLR_TCF_SHIFT: u32 = 40;
/// SCTLR_EL1.ITFSB: exception entry synchronises asynchronous faults into TFSR_EL1.
const SCTLR_ITFSB: u64 = 1 << 37;
/// TCR_EL1.TCMA0: TTBR0 addresses with tag 0 are unchecked.
pub(super) const TCR_TCMA0: u64 = 1 << 57;
/// TFSR_EL1.TF0: an asynchronous mismatch at a TTBR0 address.
const TFSR_TF0: u64 = 1;
/// MAIR attribute of Tagged Normal memory (inner and outer write-back).
pub(super) const MAIR_TAGGED_NORMAL: u64 = 0xf0;

static MODE: AtomicU8 = AtomicU8::new(Mode::Off as u8);
/// Mismatches reported, synchronous and asynchronous, by the core that reported them.
static FAULTS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Cores whose checks a synchronous report turned off (see `mte_fault`), until [`rearm`].
static SUSPENDED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Whether the CPU has MTE with tag storage (ID_AA64PFR1_EL1.MTE ≥ 2).
pub fn present() -> bool {
    let pfr1: u64;
    // SAFETY: reading an ID register has no side effect and is allowed at EL1.
    unsafe {
        core::arch::asm!("mrs {0}, S3_0_C0_C4_1", out(reg) pfr1, options(nomem, nostack, preserves_flags))
    };
    (pfr1 >> 8) & 0xf >= 2
}

/// The mode in force.
pub fn mode() -> Mode {
    Mode::from_u8(MODE.load(Relaxed))
}

/// Whether the allocator tags what it hands out.
#[inline]
pub fn tagging_on() -> bool {
    MODE.load(Relaxed) != Mode::Off as u8
}

/// Mismatches reported so far, by every core.
pub fn faults() -> usize {
    FAULTS.iter().map(|f| f.load(Relaxed)).sum()
}

/// Mismatches this core reported so far.
pub fn faults_here() -> usize {
    FAULTS[Cpu::cpu_id()].load(Relaxed)
}

/// Counts one mismatch this core reported.
pub(super) fn count_fault() {
    FAULTS[Cpu::cpu_id()].fetch_add(1, Relaxed);
}

/// The state line of the boot report, `meminfo` and `slabinfo`: `mte: sync (2 faults)`,
/// with the cores whose checks a report suspended.
pub struct State;

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if !present() {
            return f.write_str("mte: absent");
        }
        write!(f, "mte: {} ({} faults", mode().name(), faults())?;
        match suspended() {
            0 => f.write_str(")"),
            n => write!(f, "; checks suspended on {n} cpus until rearmed)"),
        }
    }
}

/// Reads `kmem.mte=` from the boot arguments and sets the mode: sync by default where
/// the CPU has MTE; off, said once, where it has not; a bad value is reported and the
/// default kept. Boot core, before the other cores start (they take the mode then).
pub fn configure(bootargs: &str) {
    let asked = bootargs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kmem.mte="));
    let wanted = match asked {
        None | Some("sync") => Mode::Sync,
        Some("async") => Mode::Async,
        Some("off") => Mode::Off,
        Some(other) => {
            println!("kmem: bad option `kmem.mte={other}` (sync, async or off): sync");
            Mode::Sync
        }
    };
    if !present() {
        if asked.is_some() {
            println!("kmem: mte: absent (the CPU has no MTE2): off");
        }
        return;
    }
    set_mode(wanted);
}

/// Sets the mode for the allocator and for this core's checks; other cores take it when
/// they start. No effect where the CPU has no MTE.
pub fn set_mode(mode: Mode) {
    if !present() {
        return;
    }
    MODE.store(mode as u8, Relaxed);
    set_checks(mode);
}

/// This core's SCTLR_EL1.TCF for `mode`.
fn set_checks(mode: Mode) {
    let tcf = match mode {
        Mode::Off => 0,
        Mode::Sync => 1,
        Mode::Async => 2,
    };
    let sctlr = SCTLR_EL1.get() & !(3 << SCTLR_TCF_SHIFT);
    SCTLR_EL1.set(sctlr | (tcf << SCTLR_TCF_SHIFT));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// This core's tagging registers: tag access at EL1, tag 0 never generated, a seed for
/// `irg`, and the checks of the mode in force. Every core, once its MMU is on.
pub(super) fn init_core() {
    if !present() {
        return;
    }
    let seed = (CNTVCT_EL0.get() ^ (Cpu::cpu_id() as u64 * 0x9e37)) & 0xffff | 1;
    // SAFETY: GCR_EL1 (exclude tag 0, random tags from RGSR) and RGSR_EL1 (seed) only
    // steer `irg`; the core has MTE (checked above).
    unsafe {
        core::arch::asm!(
            "msr S3_0_C1_C0_6, {gcr}",
            "msr S3_0_C1_C0_5, {rgsr}",
            gcr = in(reg) 1u64,
            rgsr = in(reg) seed << 8,
            options(nomem, nostack, preserves_flags)
        )
    };
    SCTLR_EL1.set(SCTLR_EL1.get() | SCTLR_ATA | SCTLR_ITFSB);
    set_checks(mode());
}

/// Turns this core's checks off after a synchronous report, so that the faulting access
/// completes when retried (as Linux's KASAN does after its report); [`rearm`] turns them
/// back on.
pub(super) fn suspend() {
    SUSPENDED[Cpu::cpu_id()].store(true, Relaxed);
    set_checks(Mode::Off);
}

/// Turns this core's checks back on after a report suspended them.
pub fn rearm() {
    if SUSPENDED[Cpu::cpu_id()].swap(false, Relaxed) {
        set_checks(mode());
    }
}

/// How many cores have their checks suspended by a report.
pub fn suspended() -> usize {
    SUSPENDED.iter().filter(|s| s.load(Relaxed)).count()
}

/// `addr` without its tag.
#[inline(always)]
pub fn untag(addr: usize) -> usize {
    addr & !TAG_MASK
}

/// The tag `addr` carries.
pub fn pointer_tag(addr: usize) -> u8 {
    ((addr & TAG_MASK) >> TAG_SHIFT) as u8
}

/// The tag of the granule holding `addr`.
pub fn memory_tag(addr: usize) -> u8 {
    let mut tagged = untag(addr);
    // SAFETY: `ldg` reads the tag of a granule of RAM the caller names (mapped, Tagged
    // Normal) and writes only the register.
    unsafe {
        core::arch::asm!(
            ".arch_extension memtag",
            "ldg {t}, [{a}]",
            t = inout(reg) tagged,
            a = in(reg) untag(addr),
            options(readonly, nostack, preserves_flags)
        )
    };
    pointer_tag(tagged)
}

/// `addr` with a random tag that is not in `exclude` (a bit per tag) nor 0.
fn random_tag(addr: usize, exclude: u64) -> usize {
    let tagged: usize;
    // SAFETY: `irg` only computes a register.
    unsafe {
        core::arch::asm!(
            ".arch_extension memtag",
            "irg {t}, {a}, {x}",
            t = out(reg) tagged,
            a = in(reg) addr,
            x = in(reg) exclude,
            options(nomem, nostack, preserves_flags)
        )
    };
    tagged
}

/// Sets the tag of the granules `[untag(tagged), + len)` to `tagged`'s.
///
/// # Safety
/// The granules are RAM the caller owns (an object or block it is handing out or taking
/// back); `tagged` is granule-aligned and `len` a multiple of [`GRANULE`].
unsafe fn store_tags(tagged: usize, len: usize) {
    let mut at = tagged;
    let end = tagged + len;
    // SAFETY: the caller's contract: the granules are ours; st2g/stg change tags only.
    unsafe {
        while end - at >= 2 * GRANULE {
            core::arch::asm!(
                ".arch_extension memtag",
                "st2g {t}, [{a}], #32",
                t = in(reg) tagged,
                a = inout(reg) at,
                options(nostack, preserves_flags)
            );
        }
        if at != end {
            core::arch::asm!(
                ".arch_extension memtag",
                "stg {t}, [{a}]",
                t = in(reg) tagged,
                a = in(reg) at,
                options(nostack, preserves_flags)
            );
        }
    }
}

/// Bit of `tag` in an `irg` exclusion mask.
fn bit(tag: u8) -> u64 {
    1 << tag
}

/// [`kmem::Arch::tag_fresh`]: a new tag for `[addr, addr + len)`, unlike the granule
/// before and the one after where they lie in the same page (so surely mapped), so that
/// an access one past either end of an object always mismatches.
pub fn tag_fresh(addr: usize, len: usize) -> usize {
    let mut exclude = 0;
    if !addr.is_multiple_of(4096) {
        exclude |= bit(memory_tag(addr - GRANULE));
    }
    if !(addr + len).is_multiple_of(4096) {
        exclude |= bit(memory_tag(addr + len));
    }
    let tagged = random_tag(addr, exclude);
    // SAFETY: the allocator hands out these granules: they are its to tag.
    unsafe { store_tags(tagged, len) };
    tagged
}

/// [`kmem::Arch::tag_freed`]: a tag unlike the current one, so stale pointers mismatch.
pub fn tag_freed(addr: usize, len: usize) {
    let tagged = random_tag(addr, bit(memory_tag(addr)));
    // SAFETY: the allocator is taking these granules back from their user.
    unsafe { store_tags(tagged, len) };
}

/// Reports an asynchronous mismatch recorded on this core since the last look, if any
/// (`place` says where the look is). Returns whether there was one.
pub fn check_async(place: &str) -> bool {
    if mode() != Mode::Async {
        return false;
    }
    let tfsr: u64;
    // SAFETY: the barriers make earlier checked accesses record their result in TFSR_EL1,
    // which is then read and cleared; nothing else uses it.
    unsafe {
        core::arch::asm!(
            "dsb nsh",
            "isb",
            "mrs {t}, S3_0_C5_C6_0",
            "msr S3_0_C5_C6_0, xzr",
            t = out(reg) tfsr,
            options(nostack, preserves_flags)
        )
    };
    if tfsr & TFSR_TF0 == 0 {
        return false;
    }
    count_fault();
    super::mte_fault::report_async(place);
    true
}
