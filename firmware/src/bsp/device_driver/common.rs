//! What the MMIO drivers here share: [`Mmio`], a tock-registers register block at a fixed
//! address, and [`read_polled`], the `embedded-io` read of a polled UART.

use core::marker::PhantomData;
use core::ops::Deref;

/// A register block of type `T` (a `register_structs!` layout) at a fixed MMIO address,
/// reached through `Deref`. Copying one copies the address, not the device: holders
/// coordinate as [`Mmio::new`] requires.
pub struct Mmio<T> {
    base: usize,
    // `fn() -> T`: the wrapper holds an address, not a `T`, so it is `Send` and `Sync`
    // whatever the register types are; sharing the device is `new`'s contract.
    block: PhantomData<fn() -> T>,
}

impl<T> Mmio<T> {
    /// # Safety
    /// `base` is the MMIO address of a `T` block, mapped as device memory (or the MMU is
    /// off) for as long as this and its copies are used, and whoever holds one for it
    /// coordinates with other holders.
    pub const unsafe fn new(base: usize) -> Self {
        Mmio {
            base,
            block: PhantomData,
        }
    }

    /// The block's address.
    pub fn base(&self) -> usize {
        self.base
    }
}

impl<T> Clone for Mmio<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Mmio<T> {}

impl<T> Deref for Mmio<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `new`'s contract: a `T` block lives at `base` while this is used.
        unsafe { &*(self.base as *const T) }
    }
}

/// `embedded_io::Read::read` for a polled UART whose `try_read` returns a received byte
/// if one is waiting: waits for the first byte, then takes what the FIFO holds, up to
/// `buf.len()`. Returns how many bytes it read.
pub fn read_polled(buf: &mut [u8], mut try_read: impl FnMut() -> Option<u8>) -> usize {
    if buf.is_empty() {
        return 0;
    }
    buf[0] = loop {
        if let Some(b) = try_read() {
            break b;
        }
        core::hint::spin_loop();
    };
    let mut n = 1;
    while n < buf.len() {
        match try_read() {
            Some(b) => buf[n] = b,
            None => break,
        }
        n += 1;
    }
    n
}
