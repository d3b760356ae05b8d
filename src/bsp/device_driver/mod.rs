//! Device drivers that more than one board uses.

pub mod mini_uart;
pub mod pl011;

#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod bcm2835_gpio;
#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod bcm2835_mailbox;
#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod generic_timer;
