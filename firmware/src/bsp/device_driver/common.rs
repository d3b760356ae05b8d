//! What the drivers here share: [`Mmio`], a tock-registers register block at a fixed
//! address; [`Deadline`], the time limit every poll of hardware goes through; and
//! [`read_polled`], the `embedded-io` read of a polled UART.

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;

use crate::arch::cpu::{Cpu, Isa};
use kmem::Arch;

/// A register block of type `T` (a `register_structs!` layout) at a fixed MMIO address,
/// reached through `Deref`. Copying one copies the address, not the device: holders
/// coordinate as [`Mmio::new`] requires.
pub struct Mmio<T> {
    base: usize,
    // `fn() -> T`: the wrapper holds an address, not a `T`, so it is `Send` and `Sync`
    // whatever the register types are; sharing the device is `new`'s contract.
    block: PhantomData<fn() -> T>,
}

impl<T> Mmio<T> {
    /// # Safety
    /// `base` is the MMIO address of a `T` block, mapped as device memory (or the MMU is
    /// off) for as long as this and its copies are used, and whoever holds one for it
    /// coordinates with other holders.
    pub const unsafe fn new(base: usize) -> Self {
        Mmio {
            base,
            block: PhantomData,
        }
    }

    /// The block's address.
    pub fn base(&self) -> usize {
        self.base
    }
}

impl<T> Clone for Mmio<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Mmio<T> {}

impl<T> Deref for Mmio<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `new`'s contract: a `T` block lives at `base` while this is used.
        unsafe { &*(self.base as *const T) }
    }
}

/// `embedded_io::Write::write` for a UART whose `put` sends one byte or times out: sends
/// `buf` byte by byte and returns how many went out, or `TimedOut` if not even the first
/// did (`write` may not return `Ok(0)` for a non-empty buffer).
pub fn write_bytes(
    buf: &[u8],
    mut put: impl FnMut(u8) -> Result<(), TimedOut>,
) -> Result<usize, TimedOut> {
    for (i, &b) in buf.iter().enumerate() {
        if let Err(e) = put(b) {
            return if i == 0 { Err(e) } else { Ok(i) };
        }
    }
    Ok(buf.len())
}

/// `embedded_io::Read::read` for a polled UART whose `try_read` returns a received byte
/// if one is waiting: waits for the first byte, then takes what the FIFO holds, up to
/// `buf.len()`. Returns how many bytes it read. The wait for the first byte has no limit:
/// it waits for someone to type, not for the device.
pub fn read_polled(buf: &mut [u8], mut try_read: impl FnMut() -> Option<u8>) -> usize {
    if buf.is_empty() {
        return 0;
    }
    buf[0] = loop {
        if let Some(b) = try_read() {
            break b;
        }
        core::hint::spin_loop();
    };
    let mut n = 1;
    while n < buf.len() {
        match try_read() {
            Some(b) => buf[n] = b,
            None => break,
        }
        n += 1;
    }
    n
}

/// How long a UART may take to accept a byte or drain its FIFO: at 9600 baud a full
/// 32-byte FIFO drains in 33 ms, so a wait past this means the transmitter is stuck (or
/// the address is not a UART), not slow.
pub const UART_TX_TIMEOUT_US: u64 = 100_000;

/// Polls in a row that may read the same counter value before the counter counts as
/// stopped. A counter ticks at least every few hundred nanoseconds and a poll of a device
/// takes tens: a million polls without a tick means it does not run, and a wait then
/// ends after that many polls instead of never.
const STALLED_POLLS: u32 = 1_000_000;

/// A wait on hardware that ran out of time: the device never reached the state waited
/// for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the device did not respond in time")
    }
}

impl core::error::Error for TimedOut {}

impl embedded_io::Error for TimedOut {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::TimedOut
    }
}

/// A point in time on the CPU's counter (`Arch::cycles`, `Isa::cycles_per_second` ticks a
/// second), and the one way the drivers wait on hardware: [`Deadline::wait`]. Every loop
/// over a device register goes through it, so a device that never answers — absent, wedged,
/// or an address that is RAM rather than a device — costs a timeout, never a hang. Plain
/// register reads only: usable with the MMU off, on any core.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: u64,
}

impl Deadline {
    /// `us` microseconds from now. A counter frequency of 0 (firmware that left it unset)
    /// counts as one tick a second: waits grow long rather than vanish.
    pub fn after_us(us: u64) -> Deadline {
        Deadline::after_ns(us.saturating_mul(1000))
    }

    /// `ns` nanoseconds from now.
    pub fn after_ns(ns: u64) -> Deadline {
        let hz = Cpu::cycles_per_second().max(1);
        let ticks = u128::from(hz) * u128::from(ns);
        let ticks = u64::try_from(ticks.div_ceil(1_000_000_000)).unwrap_or(u64::MAX);
        Deadline {
            end: Cpu::cycles().saturating_add(ticks),
        }
    }

    /// Whether the time is up.
    pub fn passed(self) -> bool {
        Cpu::cycles() >= self.end
    }

    /// Polls `ready` until it returns true (`Ok`) or the time is up (`Err(TimedOut)`);
    /// `ready` runs at least once, and once more when the time is up. A counter that stops
    /// for [`STALLED_POLLS`] polls in a row ends the wait too.
    pub fn wait(self, mut ready: impl FnMut() -> bool) -> Result<(), TimedOut> {
        let mut last = Cpu::cycles();
        let mut stalled = 0;
        loop {
            if ready() {
                return Ok(());
            }
            let now = Cpu::cycles();
            if now >= self.end {
                // Once more: a vCPU that the host did not run for a while may find the time
                // up without having looked since the device answered.
                return if ready() { Ok(()) } else { Err(TimedOut) };
            }
            if now == last {
                stalled += 1;
                if stalled >= STALLED_POLLS {
                    return Err(TimedOut);
                }
            } else {
                (last, stalled) = (now, 0);
            }
            core::hint::spin_loop();
        }
    }
}
