//! Self-tests of the waits on devices that never answer: each aarch64 driver is pointed at
//! a block of RAM posing as its registers — the "device" a wrong address in the boot
//! information gives — in the state that used to keep it polling for ever, and must give
//! up with an error within its time limit; and the console, on a UART that stops taking
//! bytes, must stop waiting for it and come back when it recovers.

use core::cell::Cell;
use core::fmt::Write as _;

use crate::arch::cpu::{Cpu, Isa};
use crate::bsp::console::{Out, TxState};
use crate::bsp::device_driver::common::{Deadline, TimedOut};
use kmem::Arch;

#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;

type R = Result<(), &'static str>;

fn ensure(ok: bool, reason: &'static str) -> R {
    if ok { Ok(()) } else { Err(reason) }
}

/// Runs `f` and returns its result and how long it took, in milliseconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = Cpu::cycles();
    let r = f();
    let ms = (Cpu::cycles() - start) * 1000 / Cpu::cycles_per_second().max(1);
    (r, ms)
}

/// Longest any one wait here may take: the limits are 20, 50 and 100 ms, and the rest is
/// room for a loaded host descheduling QEMU.
const BOUND_MS: u64 = 5_000;

/// A UART that can be stuck: then each write waits [`STUCK_US`] and times out, as a driver
/// does on a transmitter that takes no byte. What it sends lands in `sent`; `writes`
/// counts the calls that may wait.
struct FakeUart<'a> {
    stuck: &'a Cell<bool>,
    sent: &'a Cell<([u8; 128], usize)>,
    writes: &'a Cell<usize>,
}

const STUCK_US: u64 = 20_000;

impl embedded_io::ErrorType for FakeUart<'_> {
    type Error = TimedOut;
}

impl embedded_io::Write for FakeUart<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, TimedOut> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.writes.set(self.writes.get() + 1);
        Deadline::after_us(STUCK_US).wait(|| !self.stuck.get())?;
        let (mut bytes, mut n) = self.sent.get();
        let take = buf.len().min(bytes.len() - n);
        bytes[n..n + take].copy_from_slice(&buf[..take]);
        n += take;
        self.sent.set((bytes, n));
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), TimedOut> {
        Ok(())
    }
}

impl embedded_io::WriteReady for FakeUart<'_> {
    fn write_ready(&mut self) -> Result<bool, TimedOut> {
        Ok(!self.stuck.get())
    }
}

/// The console on a UART that gets stuck: the first print waits out one time limit and
/// marks the console dead; a hundred more do not wait on the UART at all (they only look
/// whether it is ready) and are counted as lost; once the UART takes bytes again, output
/// resumes with a line saying how much was lost.
pub fn console_degrades_on_a_stuck_uart() -> R {
    let (stuck, sent, writes) = (Cell::new(true), Cell::new(([0u8; 128], 0)), Cell::new(0));
    let tx = TxState::new();
    let mut out = Out {
        uart: FakeUart {
            stuck: &stuck,
            sent: &sent,
            writes: &writes,
        },
        tx: &tx,
    };
    let (_, first_ms) = timed(|| writeln!(out, "lost line"));
    ensure(
        tx.dead() && writes.get() == 1 && first_ms < BOUND_MS,
        "a transmit that timed out did not mark the console dead at once",
    )?;
    for _ in 0..100 {
        let _ = write!(out, "0123456789");
    }
    ensure(
        writes.get() == 1 && tx.lost() == 10 + 1000,
        "a dead console still waited on the UART, or did not count what it dropped",
    )?;
    stuck.set(false);
    let _ = writeln!(out, "back");
    let (bytes, n) = sent.get();
    let text = core::str::from_utf8(&bytes[..n]).unwrap_or("");
    ensure(
        !tx.dead() && text.contains("1010 bytes of output lost") && text.ends_with("back\r\n"),
        "the console did not come back, or did not say what was lost",
    )
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use core::cell::UnsafeCell;

    use embedded_io::Write;

    use super::{BOUND_MS, R, ensure, timed};
    use crate::bsp::device_driver::bcm2835_mailbox::{Mailbox, MailboxError, tag};
    use crate::bsp::device_driver::mini_uart::MiniUart;
    use crate::bsp::device_driver::pl011::Pl011;

    /// 64 words of RAM standing in for a device's registers.
    #[repr(C, align(64))]
    struct FakeRegisters(UnsafeCell<[u32; 64]>);

    // SAFETY: only the boot core runs the self-tests that use it, one at a time.
    unsafe impl Sync for FakeRegisters {}

    static FAKE: FakeRegisters = FakeRegisters(UnsafeCell::new([0; 64]));

    /// Fills the fake block with `words` (byte offset, value), zero elsewhere; returns
    /// its address.
    fn fake(words: &[(usize, u32)]) -> usize {
        let base = FAKE.0.get() as usize;
        for i in 0..64 {
            // SAFETY: inside FAKE, which only this core touches.
            unsafe { (base as *mut u32).add(i).write_volatile(0) };
        }
        for &(offset, value) in words {
            // SAFETY: as above; the offsets are register offsets inside the block.
            unsafe { ((base + offset) as *mut u32).write_volatile(value) };
        }
        base
    }

    /// Mailbox status bits.
    const FULL: u32 = 1 << 31;
    const EMPTY: u32 = 1 << 30;
    const READ_STATUS: usize = 0x18;
    const WRITE_STATUS: usize = 0x38;

    /// A mailbox whose status reads "not empty" for ever while its read register holds
    /// something that is not the reply (RAM, a wrong address), one that stays empty and
    /// one that stays full: each call fails with a timeout.
    pub fn mailbox_never_answering() -> R {
        for (regs, what) in [
            (
                &[(READ_STATUS, 0), (0, 0x1234_5678)][..],
                "a mailbox that reads \"not empty\" with other replies",
            ),
            (&[(READ_STATUS, EMPTY)][..], "a mailbox that stays empty"),
            (&[(WRITE_STATUS, FULL)][..], "a mailbox that stays full"),
        ] {
            let base = fake(regs);
            // SAFETY: FAKE is RAM this test owns, readable and writable like registers.
            let mailbox = unsafe { Mailbox::new(base) };
            let (r, ms) = timed(|| mailbox.property::<2>(tag::ARM_MEMORY, &[]));
            if r != Err(MailboxError::Timeout) || ms > BOUND_MS {
                crate::println!("  {what}: {r:?} after {ms} ms");
                return Err("a mailbox that never answers did not time out");
            }
        }
        Ok(())
    }

    /// PL011 flags: transmit FIFO full, busy. Mini-UART: line status 0 (never empty,
    /// never idle).
    const PL011_FR: usize = 0x18;
    const TXFF_BUSY: u32 = 1 << 5 | 1 << 3;
    /// The mini-UART's registers start past AUX_ENABLES (0x3c below them).
    const MINI_UART_OFFSET: usize = 0x40;

    /// A PL011 whose transmit FIFO stays full and a mini-UART whose transmitter never
    /// empties: initialising, writing and flushing each give up with `TimedOut`.
    pub fn uart_never_draining() -> R {
        let base = fake(&[(PL011_FR, TXFF_BUSY)]);
        // SAFETY: FAKE is RAM this test owns.
        let mut pl011 = unsafe { Pl011::new(base) };
        let (_, init_ms) = timed(|| pl011.init_baud(Some(48_000_000), 115_200));
        let (w, write_ms) = timed(|| pl011.write(b"x"));
        let (f, flush_ms) = timed(|| pl011.flush());
        ensure(
            w.is_err() && f.is_err() && init_ms.max(write_ms).max(flush_ms) <= BOUND_MS,
            "a PL011 whose FIFO stays full did not time out",
        )?;
        let base = fake(&[]) + MINI_UART_OFFSET;
        // SAFETY: as above; AUX_ENABLES falls inside FAKE too.
        let mut mini = unsafe { MiniUart::new(base) };
        let (_, init_ms) = timed(|| mini.init(Some(250_000_000), 115_200));
        let (w, write_ms) = timed(|| mini.write(b"x"));
        let (f, flush_ms) = timed(|| mini.flush());
        ensure(
            w.is_err() && f.is_err() && init_ms.max(write_ms).max(flush_ms) <= BOUND_MS,
            "a mini-UART whose transmitter never empties did not time out",
        )
    }
}
