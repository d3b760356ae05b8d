//! Device drivers that more than one board uses.

#[cfg(feature = "virt")]
pub mod pl011;
#[cfg(feature = "x86_64")]
pub mod uart16550;
