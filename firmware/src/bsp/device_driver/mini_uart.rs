//! The BCM2835 auxiliary "mini-UART" (the Raspberry Pi 3's and 4's default console on
//! GPIO 14/15): polled transmit and receive through the `embedded-io` traits.
//!
//! Every wait on the transmitter has a time limit ([`UART_TX_TIMEOUT_US`]): a UART that
//! stops taking bytes makes `write` and `flush` fail with [`TimedOut`] instead of hanging.
//!
//! Its baud rate divides the VideoCore's core clock, so it is only reprogrammed when the
//! caller knows that clock; otherwise the firmware's setting (`enable_uart=1`) is kept.

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::ReadWrite;
use tock_registers::{register_bitfields, register_structs};

use super::common::{Deadline, Mmio, TimedOut, UART_TX_TIMEOUT_US, read_polled};

register_bitfields! {u32,
    /// AUX_ENABLES: which auxiliary peripherals are powered.
    ENABLES [
        MINI_UART OFFSET(0) NUMBITS(1) []
    ],
    /// Line status.
    LSR [
        /// The transmit FIFO can take a byte.
        TX_EMPTY OFFSET(5) NUMBITS(1) [],
        /// The transmitter is idle and its FIFO empty.
        TX_IDLE OFFSET(6) NUMBITS(1) [],
        DATA_READY OFFSET(0) NUMBITS(1) []
    ],
    /// Line control.
    LCR [
        DATA_SIZE OFFSET(0) NUMBITS(2) [EightBit = 0b11]
    ],
    /// Interrupt identify; written, it clears the FIFOs.
    IIR [
        CLEAR_RX OFFSET(1) NUMBITS(1) [],
        CLEAR_TX OFFSET(2) NUMBITS(1) []
    ],
    /// Extra control.
    CNTL [
        TX_ENABLE OFFSET(1) NUMBITS(1) [],
        RX_ENABLE OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    /// The mini-UART block, from AUX_MU_IO (the address the device tree gives).
    Registers {
        (0x00 => io: ReadWrite<u32>),
        (0x04 => ier: ReadWrite<u32>),
        (0x08 => iir: ReadWrite<u32, IIR::Register>),
        (0x0c => lcr: ReadWrite<u32, LCR::Register>),
        (0x10 => mcr: ReadWrite<u32>),
        (0x14 => lsr: ReadWrite<u32, LSR::Register>),
        (0x18 => _reserved0),
        (0x20 => cntl: ReadWrite<u32, CNTL::Register>),
        (0x24 => _reserved1),
        (0x28 => baud: ReadWrite<u32>),
        (0x2c => @END),
    }
}

/// AUX_ENABLES sits this far below AUX_MU_IO.
const ENABLES_OFFSET: usize = 0x3c;

/// A mini-UART at a fixed MMIO address.
pub struct MiniUart(Mmio<Registers>);

impl MiniUart {
    /// # Safety
    /// `base` is the MMIO address of a BCM2835 mini-UART (AUX_MU_IO), as [`Mmio::new`]
    /// requires.
    pub const unsafe fn new(base: usize) -> MiniUart {
        // SAFETY: the caller's contract.
        MiniUart(unsafe { Mmio::new(base) })
    }

    /// 8N1, no interrupts, FIFOs cleared, transmit and receive on; `baud` from the core
    /// clock `clock_hz` when that is known.
    pub fn init(&self, clock_hz: Option<u32>, baud: u32) {
        // SAFETY: AUX_ENABLES belongs to the same AUX block as the registers `new` was
        // given; only the mini-UART bit is changed.
        let enables = unsafe {
            Mmio::<ReadWrite<u32, ENABLES::Register>>::new(self.0.base() - ENABLES_OFFSET)
        };
        enables.modify(ENABLES::MINI_UART::SET);
        let r = &self.0;
        // Let what the firmware sent go out; a transmitter that never idles is set up all
        // the same, and the first write then times out.
        let _ = Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| r.lsr.is_set(LSR::TX_IDLE));
        r.cntl.set(0);
        r.ier.set(0);
        r.lcr.write(LCR::DATA_SIZE::EightBit);
        r.mcr.set(0);
        r.iir.write(IIR::CLEAR_RX::SET + IIR::CLEAR_TX::SET);
        if let Some(clock) = clock_hz {
            // baud = clock / (8 * (divisor + 1)), rounded to nearest.
            let div = (clock / 4 / baud).div_ceil(2);
            r.baud.set(div.saturating_sub(1));
        }
        r.cntl.write(CNTL::TX_ENABLE::SET + CNTL::RX_ENABLE::SET);
    }

    /// Sends `b` once the transmit FIFO has room.
    fn put(&self, b: u8) -> Result<(), TimedOut> {
        let r = &self.0;
        Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| r.lsr.is_set(LSR::TX_EMPTY))?;
        r.io.set(u32::from(b));
        Ok(())
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&self) -> Option<u8> {
        let r = &self.0;
        r.lsr.is_set(LSR::DATA_READY).then(|| r.io.get() as u8)
    }
}

impl embedded_io::ErrorType for MiniUart {
    type Error = TimedOut;
}

impl embedded_io::Write for MiniUart {
    /// Sends bytes while the FIFO takes them: all of `buf`, or those sent before the
    /// transmitter stopped taking them (`TimedOut` if that was the first).
    fn write(&mut self, buf: &[u8]) -> Result<usize, TimedOut> {
        super::common::write_bytes(buf, |b| self.put(b))
    }

    fn flush(&mut self) -> Result<(), TimedOut> {
        let r = &self.0;
        Deadline::after_us(UART_TX_TIMEOUT_US).wait(|| r.lsr.is_set(LSR::TX_IDLE))
    }
}

impl embedded_io::WriteReady for MiniUart {
    /// Whether the transmit FIFO has room now, without waiting.
    fn write_ready(&mut self) -> Result<bool, TimedOut> {
        Ok(self.0.lsr.is_set(LSR::TX_EMPTY))
    }
}

impl embedded_io::Read for MiniUart {
    /// Waits for at least one byte, then takes what the FIFO holds, up to `buf.len()`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, TimedOut> {
        Ok(read_polled(buf, || self.try_read()))
    }
}
