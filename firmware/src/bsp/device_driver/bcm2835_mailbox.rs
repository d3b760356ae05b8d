//! The VideoCore mailbox's property channel (BCM2835/2837/2711): requests to the Pi's
//! firmware — memory split, clock rates, the GPIO expander behind the Pi 3B's ACT LED.
//!
//! Each call builds its message on the caller's stack, so calls need no lock and work
//! with the MMU off; with it on, the message is cleaned from and invalidated in the data
//! cache around the call, because the VideoCore does not see this core's caches. Calls
//! from two cores at once would mix up replies: callers keep to one core at a time. A
//! firmware that never answers (QEMU ignores some tags) costs a timeout, not a hang.

use core::fmt;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use super::common::Deadline;
use super::common::Mmio;
use crate::arch::aarch64::cache;

register_bitfields! {u32,
    STATUS [
        FULL OFFSET(31) NUMBITS(1) [],
        EMPTY OFFSET(30) NUMBITS(1) []
    ]
}

register_structs! {
    /// Mailbox 0 (VideoCore to ARM) and mailbox 1 (ARM to VideoCore).
    Registers {
        (0x00 => read: ReadOnly<u32>),
        (0x04 => _reserved0),
        (0x18 => read_status: ReadOnly<u32, STATUS::Register>),
        (0x1c => _reserved1),
        (0x20 => write: WriteOnly<u32>),
        (0x24 => _reserved2),
        (0x38 => write_status: ReadOnly<u32, STATUS::Register>),
        (0x3c => @END),
    }
}

/// The property (ARM to VideoCore) channel.
const PROPERTY_CHANNEL: u32 = 8;
const REQUEST: u32 = 0;
const RESPONSE_OK: u32 = 0x8000_0000;
/// Set in a tag's length word when the firmware answered that tag.
const TAG_ANSWERED: u32 = 0x8000_0000;
/// The VideoCore reaches ARM RAM below 1 GiB through this alias (uncached on the Pi 3).
const BUS_ALIAS: usize = 0xC000_0000;
/// Most value words a tag here sends or receives.
const MAX_VALUES: usize = 4;
/// Real firmware answers within microseconds.
const TIMEOUT_US: u64 = 50_000;

/// Property tags kmem uses.
pub mod tag {
    /// Base and size of the ARM's share of RAM.
    pub const ARM_MEMORY: u32 = 0x0001_0005;
    /// Base and size of the VideoCore's share of RAM.
    pub const VC_MEMORY: u32 = 0x0001_0006;
    /// A clock's rate in Hz, by clock id.
    pub const GET_CLOCK_RATE: u32 = 0x0003_0002;
    /// Drives a firmware-owned GPIO (the expander's start at 128).
    pub const SET_GPIO_STATE: u32 = 0x0003_8041;
}

/// Clock ids for [`tag::GET_CLOCK_RATE`].
pub mod clock {
    /// The PL011's reference clock (`init_uart_clock`).
    pub const UART: u32 = 2;
    /// The VideoCore core clock, which the mini-UART divides.
    pub const CORE: u32 = 4;
}

/// Why a property call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxError {
    /// No reply in time (or only replies that were not ours).
    Timeout,
    /// The firmware replied but rejected the message.
    Rejected(u32),
    /// The firmware replied without answering the tag (it does not know it).
    TagUnanswered(u32),
    /// The message is not where the VideoCore can reach it.
    Unreachable,
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::Timeout => f.write_str("mailbox: no reply"),
            MailboxError::Rejected(c) => write!(f, "mailbox: request rejected ({c:#x})"),
            MailboxError::TagUnanswered(t) => write!(f, "mailbox: tag {t:#x} not answered"),
            MailboxError::Unreachable => f.write_str("mailbox: message above 1 GiB"),
        }
    }
}

/// Header (2 words), tag header (3), values, end tag, padded to a multiple of 16 bytes.
#[repr(C, align(16))]
struct Message([u32; 16]);

/// The mailbox at a fixed MMIO address.
#[derive(Clone, Copy)]
pub struct Mailbox(Mmio<Registers>);

impl Mailbox {
    /// # Safety
    /// `base` is the MMIO address of the VideoCore mailbox (0x..00_b880), as [`Mmio::new`]
    /// requires.
    pub const unsafe fn new(base: usize) -> Mailbox {
        // SAFETY: the caller's contract.
        Mailbox(unsafe { Mmio::new(base) })
    }

    /// Sends `tag` with `request` values and returns the first `N` values of the answer.
    pub fn property<const N: usize>(
        &self,
        tag: u32,
        request: &[u32],
    ) -> Result<[u32; N], MailboxError> {
        let values = request.len().max(N);
        assert!(values <= MAX_VALUES, "mailbox tag with too many values");
        let mut msg = Message([0; 16]);
        let m = &mut msg.0;
        m[0] = size_of::<Message>() as u32;
        m[1] = REQUEST;
        m[2] = tag;
        m[3] = (values * 4) as u32;
        m[4] = 0;
        m[5..5 + request.len()].copy_from_slice(request);
        // m[5 + values] stays 0: the end tag.
        let addr = m.as_ptr() as usize;
        if addr >= BUS_ALIAS {
            return Err(MailboxError::Unreachable);
        }
        cache::clean_invalidate(addr, size_of::<Message>());
        self.exchange((addr | BUS_ALIAS) as u32 | PROPERTY_CHANNEL)?;
        cache::clean_invalidate(addr, size_of::<Message>());
        // The VideoCore wrote the reply behind the compiler's back: read it afresh.
        let word = |i: usize| {
            // SAFETY: `i` indexes the message, which is ours and initialised.
            unsafe { core::ptr::read_volatile(m.as_ptr().add(i)) }
        };
        if word(1) != RESPONSE_OK {
            return Err(MailboxError::Rejected(word(1)));
        }
        if word(4) & TAG_ANSWERED == 0 {
            return Err(MailboxError::TagUnanswered(tag));
        }
        Ok(core::array::from_fn(|i| word(5 + i)))
    }

    /// Posts `request` and waits for the reply that echoes it. One deadline covers the
    /// whole exchange, every read of the status and of the reply included: a mailbox that
    /// reads "not empty" for ever with other values in it (a wrong address, RAM) times out
    /// just as a silent one does.
    fn exchange(&self, request: u32) -> Result<(), MailboxError> {
        let r = &self.0;
        let deadline = Deadline::after_us(TIMEOUT_US);
        deadline
            .wait(|| !r.write_status.is_set(STATUS::FULL))
            .map_err(|_| MailboxError::Timeout)?;
        r.write.set(request);
        // Replies to other channels are not ours to keep; none are expected.
        deadline
            .wait(|| !r.read_status.is_set(STATUS::EMPTY) && r.read.get() == request)
            .map_err(|_| MailboxError::Timeout)
    }
}
