//! The Arm PL011 UART (QEMU `virt`, the Raspberry Pi's first UART): polled transmit and
//! receive through the `embedded-io` traits.
//!
//! Every wait on the transmitter has a time limit ([`UART_TX_TIMEOUT_US`]): a UART that
//! stops taking bytes makes `write` and `flush` fail with [`TimedOut`] instead of hanging
//! (the console then stops waiting on it).
//!
//! The baud rate is programmed only when the caller knows the UART's reference clock (the
//! Pi's firmware reports it); otherwise the divisor the boot firmware left is kept. QEMU
//! ignores it either way.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

use super::common::{Deadline, Mmio, TimedOut, UART_TX_TIMEOUT_US, read_polled};
use crate::bsp::ConsoleUart;

register_bitfields! {u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Still transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Line control register.
    LCR_H [
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 0b11],
        /// FIFOs on.
        FEN OFFSET(4) NUMBITS(1) []
    ],
    /// Control register.
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    Registers {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x24 => ibrd: ReadWrite<u32>),
        (0x28 => fbrd: ReadWrite<u32>),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => @END),
    }
}

/// A PL011 at a fixed MMIO address.
pub struct Pl011(Mmio<Registers>);

impl Pl011 {
    /// # Safety
    /// `base` is the MMIO address of a PL011, as [`Mmio::new`] requires.
    pub const unsafe fn new(base: usize) -> Pl011 {
        // SAFETY: the caller's contract.
        Pl011(unsafe { Mmio::new(base) })
    }

    /// 8N1 with FIFOs, transmit and receive on; `baud` from a `clock_hz` reference clock
    /// when that is known (without it, `baud` is ignored).
    pub fn init_baud(&self, clock_hz: Option<u32>, baud: u32) {
        let r = &self.0;
        r.cr.set(0);
        // A UART that stays busy is set up all the same: the first write then times out.
        let _ = Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| !r.fr.is_set(FR::BUSY));
        if let Some(clock) = clock_hz {
            // Divisor in 1/64ths: clock / (16 * baud) * 64, rounded to nearest.
            let div = (u64::from(clock) * 8 / u64::from(baud)).div_ceil(2) as u32;
            r.ibrd.set(div >> 6);
            r.fbrd.set(div & 0x3f);
        }
        // The divisor takes effect with this write.
        r.lcr_h.write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        r.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Sends `b` once the transmit FIFO has room.
    fn put(&self, b: u8) -> Result<(), TimedOut> {
        let r = &self.0;
        Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| !r.fr.is_set(FR::TXFF))?;
        r.dr.set(u32::from(b));
        Ok(())
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&self) -> Option<u8> {
        let r = &self.0;
        (!r.fr.is_set(FR::RXFE)).then(|| r.dr.get() as u8)
    }
}

impl ConsoleUart for Pl011 {
    unsafe fn new(base: usize) -> Pl011 {
        // SAFETY: the caller's contract is `Pl011::new`'s.
        unsafe { Pl011::new(base) }
    }

    /// At the rate the boot firmware set.
    fn init(&mut self) {
        self.init_baud(None, 0);
    }
}

impl embedded_io::ErrorType for Pl011 {
    type Error = TimedOut;
}

impl embedded_io::Write for Pl011 {
    /// Sends bytes while the FIFO takes them: all of `buf`, or those sent before the
    /// transmitter stopped taking them (`TimedOut` if that was the first).
    fn write(&mut self, buf: &[u8]) -> Result<usize, TimedOut> {
        super::common::write_bytes(buf, |b| self.put(b))
    }

    fn flush(&mut self) -> Result<(), TimedOut> {
        let r = &self.0;
        Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| !r.fr.is_set(FR::BUSY))
    }
}

impl embedded_io::WriteReady for Pl011 {
    /// Whether the transmit FIFO has room now, without waiting.
    fn write_ready(&mut self) -> Result<bool, TimedOut> {
        Ok(!self.0.fr.is_set(FR::TXFF))
    }
}

impl embedded_io::Read for Pl011 {
    /// Waits for at least one byte, then takes what the FIFO holds, up to `buf.len()`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, TimedOut> {
        Ok(read_polled(buf, || self.try_read()))
    }
}
