//! The self-test `apic_ids_are_the_madts`: every online core's local APIC answers to the
//! id the MADT gave its logical id (the boot core's, to the one it found at boot), read
//! on that core from its APIC (the x2APIC's 32-bit id register, past 255 where the
//! machine has such ids) rather than from CPUID, which the trampoline matched. It prints
//! the ids, so that a boot can be checked for a core past 255 (`make x2apic-test`).

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::arch::x86_64::{apic, posted_apic_id};
use crate::{print, println, smp};

type R = Result<(), &'static str>;

/// The id each core's APIC reported, by logical id.
static REPORTED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

fn report_apic_id(cpu: usize) -> R {
    REPORTED[cpu].store(apic::id(), Relaxed);
    Ok(())
}

pub fn apic_ids_are_the_madts() -> R {
    REPORTED.iter().for_each(|r| r.store(u32::MAX, Relaxed));
    smp::run_on_all(report_apic_id)?;
    let mode = if apic::x2apic() { "x2APIC" } else { "xAPIC" };
    print!("  local APIC ids ({mode}):");
    smp::online_ids().for_each(|c| print!(" {c}: {:#x}", REPORTED[c].load(Relaxed)));
    println!();
    for cpu in smp::online_ids() {
        let listed = match cpu {
            0 => Some(Cpu::boot_hwid()),
            _ => posted_apic_id(cpu).map(u64::from),
        };
        if listed != Some(u64::from(REPORTED[cpu].load(Relaxed))) {
            return Err("a core's local APIC id is not the one it was started under");
        }
    }
    Ok(())
}
