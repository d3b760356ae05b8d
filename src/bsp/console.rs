//! The system console: `print!`/`println!` on the board's UART — a PL011 or a BCM2835
//! mini-UART, whichever the board found.
//!
//! Before the MMU is on, only the boot core runs and locks must not be used (exclusive
//! accesses need cacheable memory), so output goes straight to the UART; after
//! [`enable_locking`], each print holds a lock so that lines from different cores do not
//! interleave. The panic and exception paths use [`print_unlocked`]: a core that faults
//! while holding the lock must still be heard.

use core::convert::Infallible;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};

use embedded_io::Write as _;

use super::board::FALLBACK_UART;
use super::device_driver::mini_uart::MiniUart;
use super::device_driver::pl011::Pl011;

/// The console's line rate when kmem programs it.
pub const BAUD: u32 = 115_200;

/// Which driver a UART needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UartKind {
    Pl011 = 0,
    MiniUart = 1,
}

/// A console UART: its driver, MMIO base, and reference clock when known.
#[derive(Clone, Copy, Debug)]
pub struct Uart {
    pub kind: UartKind,
    pub base: usize,
    /// The clock the baud rate divides; `None` keeps the rate the boot firmware set.
    pub clock_hz: Option<u32>,
}

impl fmt::Display for Uart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            UartKind::Pl011 => "PL011",
            UartKind::MiniUart => "mini-UART",
        };
        write!(f, "{name} at {:#x}", self.base)?;
        match self.clock_hz {
            Some(c) => write!(f, ", {BAUD} baud from a {} kHz clock", c / 1000),
            None => Ok(()),
        }
    }
}

/// The UART's MMIO base and kind. Plain loads and stores only: usable with the MMU off.
static BASE: AtomicUsize = AtomicUsize::new(FALLBACK_UART.base);
static KIND: AtomicU8 = AtomicU8::new(FALLBACK_UART.kind as u8);
static LOCKING: AtomicBool = AtomicBool::new(false);
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Sends console output to `uart` (from `/chosen/stdout-path`, or the board's choice) and
/// initialises it.
pub fn set_uart(u: Uart) {
    BASE.store(u.base, Relaxed);
    KIND.store(u.kind as u8, Relaxed);
    match uart() {
        Driver::Pl011(d) => d.init(u.clock_hz, BAUD),
        Driver::Mini(d) => d.init(u.clock_hz, BAUD),
    }
}

/// Serialises output from now on. Call once the MMU is on.
pub fn enable_locking() {
    LOCKING.store(true, Relaxed);
}

/// The console's driver, chosen at run time.
enum Driver {
    Pl011(Pl011),
    Mini(MiniUart),
}

fn uart() -> Driver {
    let base = BASE.load(Relaxed);
    // BASE and KIND describe a UART from the device tree or the board, mapped as device
    // memory; concurrent writers are serialised by LOCK once several cores run (the panic
    // path accepts interleaving rather than silence).
    if KIND.load(Relaxed) == UartKind::MiniUart as u8 {
        // SAFETY: as above, a mini-UART.
        Driver::Mini(unsafe { MiniUart::new(base) })
    } else {
        // SAFETY: as above, a PL011.
        Driver::Pl011(unsafe { Pl011::new(base) })
    }
}

impl embedded_io::ErrorType for Driver {
    type Error = Infallible;
}

impl embedded_io::Write for Driver {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        match self {
            Driver::Pl011(d) => d.write(buf),
            Driver::Mini(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        match self {
            Driver::Pl011(d) => d.flush(),
            Driver::Mini(d) => d.flush(),
        }
    }
}

impl embedded_io::Read for Driver {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        match self {
            Driver::Pl011(d) => d.read(buf),
            Driver::Mini(d) => d.read(buf),
        }
    }
}

/// `core::fmt` onto the UART, with `\n` sent as `\r\n` for terminals.
struct Out(Driver);

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
