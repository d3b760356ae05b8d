//! The BCM2835-family GPIO block (Pi 3's BCM2837, Pi 4's BCM2711): function select, pulls,
//! and pins as `embedded-hal` [`OutputPin`]/[`InputPin`]s.
//!
//! Function select and pull registers are read-modify-written without a lock: the boot
//! core configures pins before the other cores run, or a pin has a single owner.

use core::convert::Infallible;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::common::Mmio;
use super::generic_timer::Delay;

register_structs! {
    Registers {
        (0x00 => fsel: [ReadWrite<u32>; 6]),
        (0x18 => _reserved0),
        (0x1c => set: [WriteOnly<u32>; 2]),
        (0x24 => _reserved1),
        (0x28 => clr: [WriteOnly<u32>; 2]),
        (0x30 => _reserved2),
        (0x34 => lev: [ReadOnly<u32>; 2]),
        (0x3c => _reserved3),
        /// BCM2835/2837 pull control: the code, then a clock pulse per pin bank.
        (0x94 => pud: ReadWrite<u32>),
        (0x98 => pud_clk: [ReadWrite<u32>; 2]),
        (0xa0 => _reserved4),
        /// BCM2711 pull control: two bits per pin, 16 pins a register.
        (0xe4 => pup_pdn: [ReadWrite<u32>; 4]),
        (0xf4 => @END),
    }
}

/// Which chip's pull registers the block has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Model {
    /// BCM2835/2836/2837 (Pi 1–3): GPPUD and GPPUDCLK.
    Bcm2835,
    /// BCM2711 (Pi 4): GPIO_PUP_PDN_CNTRL.
    Bcm2711,
}

/// A pin's function (FSEL code).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Function {
    Input = 0b000,
    Output = 0b001,
    Alt0 = 0b100,
    Alt5 = 0b010,
}

/// A pin's pull resistor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pull {
    None,
    Up,
    Down,
}

/// The GPIO block at a fixed MMIO address.
#[derive(Clone, Copy)]
pub struct Gpio {
    regs: Mmio<Registers>,
    model: Model,
}

impl Gpio {
    /// # Safety
    /// `base` is the MMIO address of a GPIO block of `model`, as [`Mmio::new`] requires.
    pub const unsafe fn new(base: usize, model: Model) -> Gpio {
        Gpio {
            // SAFETY: the caller's contract.
            regs: unsafe { Mmio::new(base) },
            model,
        }
    }

    /// Sets pin `n`'s function.
    pub fn set_function(&self, n: u32, f: Function) {
        let (reg, shift) = (&self.regs.fsel[(n / 10) as usize], (n % 10) * 3);
        reg.set(reg.get() & !(0b111 << shift) | (f as u32) << shift);
    }

    /// Pin `n`'s FSEL code.
    pub fn function(&self, n: u32) -> u32 {
        self.regs.fsel[(n / 10) as usize].get() >> ((n % 10) * 3) & 0b111
    }

    /// Sets pin `n`'s pull resistor.
    pub fn set_pull(&self, n: u32, pull: Pull) {
        let r = &self.regs;
        match self.model {
            Model::Bcm2835 => {
                // The documented sequence: code, 150 cycles, clock the pin, 150 cycles.
                r.pud.set(match pull {
                    Pull::None => 0,
                    Pull::Down => 1,
                    Pull::Up => 2,
                });
                Delay.delay_us(1);
                r.pud_clk[(n / 32) as usize].set(1 << (n % 32));
                Delay.delay_us(1);
                r.pud.set(0);
                r.pud_clk[(n / 32) as usize].set(0);
            }
            Model::Bcm2711 => {
                let (reg, shift) = (&r.pup_pdn[(n / 16) as usize], (n % 16) * 2);
                let code = match pull {
                    Pull::None => 0,
                    Pull::Up => 1,
                    Pull::Down => 2,
                };
                reg.set(reg.get() & !(0b11 << shift) | code << shift);
            }
        }
    }

    /// Pin `n` as an output.
    pub fn output(self, n: u32) -> Pin {
        self.set_function(n, Function::Output);
        Pin { gpio: self, n }
    }
}

/// One GPIO pin.
pub struct Pin {
    gpio: Gpio,
    n: u32,
}

impl ErrorType for Pin {
    type Error = Infallible;
}

impl OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.gpio.regs.clr[(self.n / 32) as usize].set(1 << (self.n % 32));
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.gpio.regs.set[(self.n / 32) as usize].set(1 << (self.n % 32));
        Ok(())
    }
}

impl InputPin for Pin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.gpio.regs.lev[(self.n / 32) as usize].get() & 1 << (self.n % 32) != 0)
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        self.is_high().map(|h| !h)
    }
}
