//! The MTE fault detector: turns a tag-check fault into a report in SLUB's words — the
//! cache, the object, where the access fell (past its end, before its start, in it after
//! its free), the tags, and the owner records when the cache tracks them — counts it,
//! and lets the access complete. Each core keeps its last report for the self-tests.
//!
//! Recovery, as Linux's KASAN does in its hardware-tag mode: the report turns this
//! core's checks off ([`mte::suspend`]), so the retried access completes unchecked, and
//! they stay off until [`mte::rearm`] (the self-tests rearm after each case; the monitor
//! shows suspended cores). The report runs with PSTATE.TCO set (exception entry sets it),
//! so its own accesses are never checked; a fault in it ends the machine (the vectors'
//! nesting count), never loops.

use core::fmt::{self, Write};

use super::AArch64 as Cpu;
use super::mte::{self, GRANULE};
use crate::arch::cpu::MAX_CPUS;
use crate::fault::{Access, Fault, FaultKind};
use crate::println;
use kmem::Arch;
use kmem::slab::ObjectSite;

/// Bytes kept of each core's last report.
const REPORT_BYTES: usize = 512;

/// A report's text, cut at [`REPORT_BYTES`].
struct ReportText {
    len: usize,
    bytes: [u8; REPORT_BYTES],
}

impl Write for ReportText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(REPORT_BYTES - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl ReportText {
    fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.bytes[..self.len]) {
            Ok(s) => s,
            // Cut inside a character: keep what is whole.
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

static LAST: [spin::Mutex<ReportText>; MAX_CPUS] = [const {
    spin::Mutex::new(ReportText {
        len: 0,
        bytes: [0; REPORT_BYTES],
    })
}; MAX_CPUS];

/// Calls `f` with this core's last report (empty if none).
pub fn with_last_report<R>(f: impl FnOnce(&str) -> R) -> R {
    f(LAST[Cpu::cpu_id()].lock().as_str())
}

/// The detector `fault::handle` asks: reports a synchronous tag-check fault and returns
/// true (the access may be retried); anything else is not its own.
pub fn handle(fault: &Fault) -> bool {
    if fault.kind != FaultKind::TagCheck || !mte::present() {
        return false;
    }
    mte::suspend();
    mte::count_fault();
    let mut text = LAST[Cpu::cpu_id()].lock();
    text.len = 0;
    // ReportText never fails a write.
    let _ = describe(&mut *text, fault);
    println!("{}", text.as_str());
    true
}

/// Reports an asynchronous mismatch found at `place`.
pub(super) fn report_async(place: &str) {
    let mut text = LAST[Cpu::cpu_id()].lock();
    text.len = 0;
    let _ = write!(
        text,
        "BUG: MTE tag mismatch (async) on cpu {}, found at {place}: no address (kmem.mte=sync gives one)",
        Cpu::cpu_id()
    );
    println!("{}", text.as_str());
}

/// The report of `fault`: the block the pointer meant and where the access fell.
fn describe(w: &mut impl Write, fault: &Fault) -> fmt::Result {
    let addr = mte::untag(fault.addr);
    let ptr_tag = mte::pointer_tag(fault.addr);
    let access = match fault.access {
        Access::Read => "read",
        Access::Write => "write",
    };
    let site = meant(addr, ptr_tag);
    match site {
        Some(s) => write!(w, "BUG {}: ", s.cache)?,
        None => w.write_str("BUG: ")?,
    }
    write!(
        w,
        "MTE tag mismatch: {access} at {addr:#x} (pointer tag {ptr_tag:#x}, memory tag {:#x}): ",
        mte::memory_tag(addr)
    )?;
    match site {
        None => w.write_str("outside any allocated block")?,
        Some(s) if !s.live => write!(
            w,
            "use-after-free, offset {} of freed object {:#x} size {}",
            addr.wrapping_sub(s.object) as isize,
            s.object,
            s.size
        )?,
        Some(s) if addr >= s.object + s.size => write!(
            w,
            "{} bytes past the end of object {:#x} size {}",
            addr - (s.object + s.size),
            s.object,
            s.size
        )?,
        Some(s) if addr < s.object => write!(
            w,
            "{} bytes before the start of object {:#x} size {}",
            s.object - addr,
            s.object,
            s.size
        )?,
        Some(s) => write!(
            w,
            "offset {} of object {:#x} size {}, whose tag the pointer's does not match",
            addr - s.object,
            s.object,
            s.size
        )?,
    }
    write!(w, "\n  pc {:#x} on cpu {}", fault.pc, Cpu::cpu_id())?;
    if let Some(owner) = site.and_then(|s| s.owner) {
        write!(w, "\n  {owner}")?;
    }
    Ok(())
}

/// The block a pointer tagged `ptr_tag` that reached `addr` was meant for: a live
/// object next to `addr` (a granule either way) that carries that tag — the access ran
/// off its end or start — else the object holding `addr` (freed: a use after free).
fn meant(addr: usize, ptr_tag: u8) -> Option<ObjectSite> {
    let kmem = crate::heap::HEAP.get()?;
    let here = kmem.object_at(addr);
    let tagged_like_pointer = |s: &ObjectSite| s.live && mte::memory_tag(s.object) == ptr_tag;
    [addr.wrapping_sub(GRANULE), addr + GRANULE]
        .into_iter()
        .filter_map(|a| kmem.object_at(a))
        .filter(|s| here.is_none_or(|h| h.object != s.object))
        .find(tagged_like_pointer)
        .or(here)
}
