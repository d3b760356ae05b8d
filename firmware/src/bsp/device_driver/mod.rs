//! Device drivers that more than one board uses.

#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod common;

#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod pl011;
#[cfg(feature = "x86_64")]
pub mod uart16550;

#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod bcm2835_gpio;
#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod bcm2835_mailbox;
#[cfg(feature = "rpi3")]
pub mod bcm2836_local_intc;
#[cfg(any(feature = "virt", feature = "rpi3", feature = "rpi4"))]
pub mod generic_timer;
#[cfg(any(feature = "virt", feature = "rpi4"))]
pub mod gicv2;
#[cfg(any(feature = "rpi3", feature = "rpi4"))]
pub mod mini_uart;
