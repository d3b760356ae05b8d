//! The Pi's console driver, its `Board::Uart`: the PL011 or the mini-UART, whichever the
//! probe chose (the device tree's `stdout-path`, else the PL011), programmed for [`BAUD`]
//! from the clock the firmware reports.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use crate::bsp::ConsoleUart;
use crate::bsp::device_driver::common::TimedOut;
use crate::bsp::device_driver::mini_uart::MiniUart;
use crate::bsp::device_driver::pl011::Pl011;

/// The console's line rate when kmem programs it.
pub const BAUD: u32 = 115_200;

/// Which driver a UART needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UartKind {
    Pl011 = 0,
    MiniUart = 1,
}

/// The console's kind and reference clock (0: unknown), set by the probe before it
/// makes the UART the console. Plain loads and stores only: usable with the MMU off.
pub static KIND: AtomicUsize = AtomicUsize::new(UartKind::Pl011 as usize);
pub static CLOCK_HZ: AtomicU32 = AtomicU32::new(0);

/// The console's driver, chosen at run time by [`KIND`].
pub enum Uart {
    Pl011(Pl011),
    Mini(MiniUart),
}

impl ConsoleUart for Uart {
    /// `base` is a UART of the kind [`KIND`] names.
    unsafe fn new(base: usize) -> Uart {
        if KIND.load(Relaxed) == UartKind::MiniUart as usize {
            // SAFETY: the caller's contract, for a mini-UART.
            Uart::Mini(unsafe { MiniUart::new(base) })
        } else {
            // SAFETY: the caller's contract, for a PL011.
            Uart::Pl011(unsafe { Pl011::new(base) })
        }
    }

    /// 8N1 at [`BAUD`] from [`CLOCK_HZ`] when it is known, else at the firmware's rate.
    fn init(&mut self) {
        let clock_hz = Some(CLOCK_HZ.load(Relaxed)).filter(|&c| c != 0);
        match self {
            Uart::Pl011(d) => d.init_baud(clock_hz, BAUD),
            Uart::Mini(d) => d.init(clock_hz, BAUD),
        }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = TimedOut;
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, TimedOut> {
        match self {
            Uart::Pl011(d) => d.write(buf),
            Uart::Mini(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> Result<(), TimedOut> {
        match self {
            Uart::Pl011(d) => d.flush(),
            Uart::Mini(d) => d.flush(),
        }
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, TimedOut> {
        match self {
            Uart::Pl011(d) => d.write_ready(),
            Uart::Mini(d) => d.write_ready(),
        }
    }
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, TimedOut> {
        match self {
            Uart::Pl011(d) => d.read(buf),
            Uart::Mini(d) => d.read(buf),
        }
    }
}
