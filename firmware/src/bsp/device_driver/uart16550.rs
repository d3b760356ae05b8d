//! The PC's 16550 UART (COM1 at I/O port 0x3F8) as the console: the `uart_16550` crate's
//! port-I/O driver behind [`ConsoleUart`].

use core::convert::Infallible;

use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config};

use crate::bsp::ConsoleUart;

/// A 16550 at a fixed I/O port.
pub struct Uart16550(uart_16550::Uart16550<PioBackend>);

impl ConsoleUart for Uart16550 {
    /// `base` is the I/O port its eight registers start at.
    unsafe fn new(base: usize) -> Uart16550 {
        let port = u16::try_from(base).unwrap_or(u16::MAX);
        // SAFETY: the caller's contract; a base past 0xfff8 (out of range) is refused.
        match unsafe { uart_16550::Uart16550::new_port(port) } {
            Ok(u) => Uart16550(u),
            Err(_) => panic!("no 16550 can sit at I/O port {port:#x}"),
        }
    }

    /// 115200 8N1 with FIFOs; when no UART answers, output goes nowhere.
    fn init(&mut self) {
        let _ = self.0.init(Config {
            baud_rate: BaudRate::Baud115200,
            ..Config::default()
        });
    }
}

impl embedded_io::ErrorType for Uart16550 {
    type Error = Infallible;
}

impl embedded_io::Write for Uart16550 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        self.0.flush()
    }
}

impl embedded_io::Read for Uart16550 {
    /// Waits for at least one byte, then takes what the FIFO holds, up to `buf.len()`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        self.0.read(buf)
    }
}
