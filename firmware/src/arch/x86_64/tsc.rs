//! The time-stamp counter: [`read`] for `Arch::cycles`, and its frequency, measured once
//! against the PIT (channel 2, gated through port 0x61), which every PC and QEMU machine
//! has and which ticks at a fixed 1.193182 MHz.

use x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;
/// How long the measurement runs.
const CALIBRATE_MS: u64 = 20;
/// Polls of the PIT before giving up on it (far more than 20 ms of port reads).
const MAX_POLLS: u32 = 50_000_000;
/// Frequency assumed when the PIT never fires: delays and timeouts then are only rough.
const FALLBACK_HZ: u64 = 2_000_000_000;

static HZ: spin::Once<u64> = spin::Once::new();

/// The TSC.
#[inline]
pub fn read() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is clear, so it is allowed.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per second, measured on first use.
pub fn cycles_per_second() -> u64 {
    *HZ.call_once(|| calibrate().unwrap_or(FALLBACK_HZ))
}

/// Waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = read() + cycles_per_second() * us / 1_000_000;
    while read() < end {
        core::hint::spin_loop();
    }
}

/// Counts TSC ticks while PIT channel 2 counts down [`CALIBRATE_MS`] in mode 0 (its
/// output, bit 5 of port 0x61, rises at zero).
fn calibrate() -> Option<u64> {
    let latch = PIT_HZ * CALIBRATE_MS / 1000;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: the PIT and port 0x61 are the PC's; only channel 2 (the speaker's, which
    // nothing else uses) is programmed, with the speaker off.
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        command.write(0xb0); // channel 2, low then high byte, mode 0, binary
        channel2.write(latch as u8);
        channel2.write((latch >> 8) as u8);
    }
    let start = read();
    for _ in 0..MAX_POLLS {
        // SAFETY: as above; reading port 0x61 has no side effects.
        if unsafe { gate.read() } & 0x20 != 0 {
            return Some((read() - start) * 1000 / CALIBRATE_MS);
        }
    }
    None
}
