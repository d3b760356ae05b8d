//! Device drivers that more than one board uses.

pub mod pl011;
