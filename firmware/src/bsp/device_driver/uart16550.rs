//! A 16550 UART as the console: the `uart_16550` crate's driver behind [`ConsoleUart`],
//! on port I/O (the PC's COM1 at 0x3F8: [`PortUart`]) or on MMIO with byte-wide
//! registers (QEMU riscv64 `virt`'s ns16550a: [`MmioUart`]). The crate's own `write` and
//! `flush` wait for the transmitter without a limit; these go through [`Deadline`]
//! instead, so a transmitter that stops draining makes them fail with [`TimedOut`].

use uart_16550::backend::Backend;
use uart_16550::spec::registers::LSR;
use uart_16550::{BaudRate, Config};

use super::common::{Deadline, TimedOut, UART_TX_TIMEOUT_US};
use crate::bsp::ConsoleUart;

/// A 16550 reached through backend `B`.
pub struct Uart16550<B: Backend>(uart_16550::Uart16550<B>);

/// A 16550 at an I/O port.
#[cfg(target_arch = "x86_64")]
pub type PortUart = Uart16550<uart_16550::backend::PioBackend>;

/// A 16550 at an MMIO address, one byte per register.
#[cfg(target_arch = "riscv64")]
pub type MmioUart = Uart16550<uart_16550::backend::MmioBackend>;

#[cfg(target_arch = "x86_64")]
impl ConsoleUart for PortUart {
    /// `base` is the I/O port its eight registers start at.
    unsafe fn new(base: usize) -> PortUart {
        let port = u16::try_from(base).unwrap_or(u16::MAX);
        // SAFETY: the caller's contract; a base past 0xfff8 (out of range) is refused.
        match unsafe { uart_16550::Uart16550::new_port(port) } {
            Ok(u) => Uart16550(u),
            Err(_) => panic!("no 16550 can sit at I/O port {port:#x}"),
        }
    }

    fn init(&mut self) {
        self.init_line();
    }
}

#[cfg(target_arch = "riscv64")]
impl ConsoleUart for MmioUart {
    /// `base` is the MMIO address of its eight byte-wide registers.
    unsafe fn new(base: usize) -> MmioUart {
        let at = core::num::NonZeroUsize::new(base);
        // SAFETY: the caller's contract; address 0, or one whose registers would run past
        // the top of the address space, is refused.
        match at.map(|at| unsafe { uart_16550::Uart16550::new_mmio_from_address(at, 1) }) {
            Some(Ok(u)) => Uart16550(u),
            _ => panic!("no 16550 can sit at {base:#x}"),
        }
    }

    fn init(&mut self) {
        self.init_line();
    }
}

impl<B: Backend> Uart16550<B> {
    /// 115200 8N1 with FIFOs; when no UART answers, output goes nowhere. The crate's
    /// `init` waits without a limit for the transmitter to drain, so that wait is done
    /// here first, with one: a transmitter that never drains is left as it is (the first
    /// write then times out, and the console degrades).
    fn init_line(&mut self) {
        let drained = Deadline::after_us(UART_TX_TIMEOUT_US)
            .wait(|| self.0.lsr().contains(LSR::TRANSMITTER_EMPTY));
        if drained.is_ok() {
            let _ = self.0.init(Config {
                baud_rate: BaudRate::Baud115200,
                ..Config::default()
            });
        }
    }
}

impl<B: Backend> embedded_io::ErrorType for Uart16550<B> {
    type Error = TimedOut;
}

impl<B: Backend> embedded_io::Write for Uart16550<B> {
    /// Waits (up to the limit) until the FIFO takes some of `buf`; returns how much.
    fn write(&mut self, buf: &[u8]) -> Result<usize, TimedOut> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut sent = 0;
        Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| {
            sent = self.0.send_bytes(buf);
            sent > 0
        })?;
        Ok(sent)
    }

    fn flush(&mut self) -> Result<(), TimedOut> {
        Deadline::after_us(UART_TX_TIMEOUT_US)
            .wait(|| self.0.lsr().contains(LSR::TRANSMITTER_EMPTY))
    }
}

impl<B: Backend> embedded_io::WriteReady for Uart16550<B> {
    /// Whether the transmitter takes a byte now, without waiting.
    fn write_ready(&mut self) -> Result<bool, TimedOut> {
        Ok(self.0.ready_to_send().is_ok())
    }
}

impl<B: Backend> embedded_io::Read for Uart16550<B> {
    /// Waits for at least one byte, then takes what the FIFO holds, up to `buf.len()`.
    /// The wait has no limit: it waits for someone to type, not for the device.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, TimedOut> {
        let Ok(n) = embedded_io::Read::read(&mut self.0, buf);
        Ok(n)
    }
}
