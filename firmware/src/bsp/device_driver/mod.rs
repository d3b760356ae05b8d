//! Device drivers that boards share, each built for the ISA its device sits beside; a
//! board uses the ones its machine has.

pub mod common;

#[cfg(target_arch = "aarch64")]
pub mod bcm2835_gpio;
#[cfg(target_arch = "aarch64")]
pub mod bcm2835_mailbox;
#[cfg(target_arch = "aarch64")]
pub mod bcm2836_local_intc;
#[cfg(target_arch = "aarch64")]
pub mod generic_timer;
#[cfg(target_arch = "aarch64")]
pub mod gicv2;
#[cfg(target_arch = "aarch64")]
pub mod gicv3;
#[cfg(target_arch = "aarch64")]
pub mod mini_uart;
#[cfg(target_arch = "aarch64")]
pub mod pl011;
#[cfg(any(target_arch = "x86_64", target_arch = "riscv64"))]
pub mod uart16550;
