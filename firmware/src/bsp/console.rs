//! The system console: `print!`/`println!` on the board's UART.
//!
//! Before the MMU is on, only the boot core runs and locks must not be used (exclusive
//! accesses need cacheable memory), so output goes straight to the UART; after
//! [`enable_locking`], each print holds a lock so that lines from different cores do not
//! interleave. The panic and exception paths use [`print_unlocked`]: a core that faults
//! while holding the lock must still be heard.
//!
//! The console degrades rather than hangs: the UART drivers give up on a transmitter that
//! takes no byte within their time limit, and the console then marks itself dead and drops
//! output without waiting (counting the bytes) until a glance at the UART finds it ready
//! again; the first output after that says how much was lost. The machine carries on —
//! `make selftest` reads the result from the exit status, not the console.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use embedded_io::{Write, WriteReady};

use super::{Board, ConsoleUart, board};

/// The board's console driver.
type Uart = <board as Board>::Uart;

/// The UART's base (MMIO address or I/O port). Plain loads and stores only: usable with
/// the MMU off.
static UART: AtomicUsize = AtomicUsize::new(board::FALLBACK_UART);
static LOCKING: AtomicBool = AtomicBool::new(false);
static LOCK: spin::Mutex<()> = spin::Mutex::new(());
static TX: TxState = TxState::new();

/// Whether a console's transmitter is dead, and how much output it dropped since. Plain
/// loads and stores only (usable with the MMU off); writers are serialised by the console
/// lock, except on the panic path, where a miscount is the worst outcome.
pub struct TxState {
    dead: AtomicBool,
    lost: AtomicUsize,
}

impl Default for TxState {
    fn default() -> Self {
        TxState::new()
    }
}

impl TxState {
    pub const fn new() -> TxState {
        TxState {
            dead: AtomicBool::new(false),
            lost: AtomicUsize::new(0),
        }
    }

    /// Whether the last transmit timed out (and the UART has not looked ready since).
    pub fn dead(&self) -> bool {
        self.dead.load(Relaxed)
    }

    /// Bytes dropped since the transmitter died.
    pub fn lost(&self) -> usize {
        self.lost.load(Relaxed)
    }

    fn drop_bytes(&self, n: usize) {
        self.dead.store(true, Relaxed);
        self.lost.store(self.lost().saturating_add(n), Relaxed);
    }
}

/// Sends console output to the board's UART at `base` (from `/chosen/stdout-path`, or
/// the platform's fixed port) and initialises it.
pub fn set_uart(base: usize) {
    UART.store(base, Relaxed);
    let mut uart = uart();
    uart.init();
}

/// Serialises output from now on. Call once the MMU is on.
pub fn enable_locking() {
    LOCKING.store(true, Relaxed);
}

fn uart() -> Uart {
    // SAFETY: UART holds the base of the board's UART from the boot information or the
    // board's fallback, mapped as device memory; concurrent writers are serialised by
    // LOCK once several cores run (the panic path accepts interleaving rather than
    // silence).
    unsafe { Uart::new(UART.load(Relaxed)) }
}

/// `core::fmt` onto a UART, with `\n` sent as `\r\n` for terminals, degrading as the
/// module says: a transmit that times out marks `tx` dead, and while it is dead, output
/// is counted and dropped unless the UART looks ready again.
pub struct Out<'a, U> {
    pub uart: U,
    pub tx: &'a TxState,
}

impl<U: Write + WriteReady> Out<'_, U> {
    /// Whether to send at all: yes unless the transmitter is dead and still not ready,
    /// in which case nothing is waited for. A transmitter back from the dead first gets
    /// a line saying what was lost.
    fn usable(&mut self) -> bool {
        if !self.tx.dead() {
            return true;
        }
        if !matches!(self.uart.write_ready(), Ok(true)) {
            return false;
        }
        let lost = self.tx.lost();
        self.tx.dead.store(false, Relaxed);
        self.tx.lost.store(0, Relaxed);
        let _ = fmt::Write::write_fmt(
            self,
            format_args!("\n[console: {lost} bytes of output lost while the UART took no bytes]\n"),
        );
        !self.tx.dead()
    }
}

impl<U: Write + WriteReady> fmt::Write for Out<'_, U> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !self.usable() {
            self.tx.drop_bytes(s.len());
            return Ok(());
        }
        for (i, line) in s.split('\n').enumerate() {
            let sent = (i == 0 || self.uart.write_all(b"\r\n").is_ok())
                && self.uart.write_all(line.as_bytes()).is_ok();
            if !sent {
                self.tx.drop_bytes(s.len());
                return Ok(());
            }
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _guard = LOCKING.load(Relaxed).then(|| LOCK.lock());
    print_unlocked(args);
}

/// Prints without the console lock: for panics and exceptions.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let mut out = Out {
        uart: uart(),
        tx: &TX,
    };
    let _ = fmt::Write::write_fmt(&mut out, args);
}

/// The next byte typed on the console; waits for it.
pub fn read_byte() -> u8 {
    let mut b = [0u8];
    let _ = embedded_io::Read::read(&mut uart(), &mut b);
    b[0]
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::bsp::console::_print(format_args!($($arg)*)));
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::bsp::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}
