//! The system console: `print!`/`println!` on the board's UART.
//!
//! Before the MMU is on, only the boot core runs and locks must not be used (exclusive
//! accesses need cacheable memory), so output goes straight to the UART; after
//! [`enable_locking`], each print holds a lock so that lines from different cores do not
//! interleave. The panic and exception paths use [`print_unlocked`]: a core that faults
//! while holding the lock must still be heard.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use embedded_io::Write as _;

use super::{Board, ConsoleUart, board};

/// The board's console driver.
type Uart = <board as Board>::Uart;

/// The UART's base (MMIO address or I/O port). Plain loads and stores only: usable with
/// the MMU off.
static UART: AtomicUsize = AtomicUsize::new(board::FALLBACK_UART);
static LOCKING: AtomicBool = AtomicBool::new(false);
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

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

/// `core::fmt` onto the UART, with `\n` sent as `\r\n` for terminals.
struct Out(Uart);

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                let _ = self.0.write_all(b"\r\n");
            }
            let _ = self.0.write_all(line.as_bytes());
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
    let _ = fmt::Write::write_fmt(&mut Out(uart()), args);
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
