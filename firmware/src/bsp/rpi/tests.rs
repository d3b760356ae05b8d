//! The Pi's own self-tests, run after the common suite: the console's pins, the ACT LED
//! pin's read-back (Pi 4), the generic-timer delay, the mailbox's view of memory, and the
//! ATAG reader on lists built in RAM.

use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::Relaxed;

use embedded_hal::delay::DelayNs;

use super::uart::{KIND, UartKind};
use super::{UART_PINS, gpio, mailbox};
use crate::bsp::Test;
use crate::bsp::device_driver::bcm2835_gpio::Function;
use crate::bsp::device_driver::bcm2835_mailbox::tag;
use crate::bsp::device_driver::common::Deadline;
use crate::bsp::device_driver::generic_timer::Delay;

type R = Result<(), &'static str>;

pub const TESTS: &[Test] = &[
    ("rpi_console_pins", console_pins),
    #[cfg(feature = "rpi4")]
    ("rpi_act_led_read_back", act_led_read_back),
    ("rpi_timer_delay", timer_delay),
    ("rpi_mailbox_arm_memory", mailbox_arm_memory),
    ("rpi_atags_kept_whole_or_cut", atags_kept_whole_or_cut),
    (
        "device_tree_errors",
        crate::bsp::devicetree_tests::device_tree_errors,
    ),
];

fn ensure(ok: bool, why: &'static str) -> R {
    if ok { Ok(()) } else { Err(why) }
}

/// GPIO 14/15 carry the console's UART: the function select reads back what was set.
fn console_pins() -> R {
    let want = if KIND.load(Relaxed) == UartKind::MiniUart as usize {
        Function::Alt5
    } else {
        Function::Alt0
    };
    for pin in UART_PINS {
        ensure(
            gpio().function(pin) == want as u32,
            "a console pin is not in the UART's alternate function",
        )?;
    }
    Ok(())
}

/// The ACT LED pin, driven high then low, reads back each level; it is left off.
#[cfg(feature = "rpi4")]
fn act_led_read_back() -> R {
    use embedded_hal::digital::{InputPin, OutputPin};

    let mut led = super::led::act_led();
    for high in [true, false] {
        let _ = if high { led.set_high() } else { led.set_low() };
        ensure(
            led.is_high() == Ok(high),
            "the ACT LED pin does not read back its level",
        )?;
    }
    Ok(())
}

/// A 2 ms delay takes at least 2 ms and not much more.
fn timer_delay() -> R {
    let early = Deadline::after_us(2_000);
    let late = Deadline::after_us(50_000);
    Delay.delay_ms(2);
    ensure(early.passed(), "a 2 ms delay ended early")?;
    ensure(!late.passed(), "a 2 ms delay took over 50 ms")
}

/// The firmware's "ARM memory" starts at 0 and covers the image.
fn mailbox_arm_memory() -> R {
    let [base, size] = mailbox()
        .property::<2>(tag::ARM_MEMORY, &[])
        .map_err(|_| "the mailbox did not answer ARM_MEMORY")?;
    let image_end = crate::bsp::image().end;
    ensure(
        base == 0 && u64::from(size) >= image_end,
        "ARM memory does not cover the image",
    )
}

const ATAG_CORE: u32 = 0x5441_0001;
const ATAG_MEM: u32 = 0x5441_0002;
const ATAG_CMDLINE: u32 = 0x5441_0009;
const LIST_WORDS: usize = 1100;

/// RAM for ATAG lists built by the test.
#[repr(C, align(8))]
struct List(UnsafeCell<[u32; LIST_WORDS]>);

// SAFETY: only the boot core runs the self-tests, one at a time.
unsafe impl Sync for List {}

static LIST: List = List(UnsafeCell::new([0; LIST_WORDS]));

/// Writes a list into LIST: ATAG_CORE, then `tags` (tag, body words), then ATAG_NONE.
/// Returns the list's address and where each of `tags` starts.
fn build_atags(tags: &[(u32, &[u32])]) -> (usize, [usize; 8]) {
    // SAFETY: LIST is this test's, and nothing else holds a reference into it.
    let list = unsafe { &mut *LIST.0.get() };
    list.fill(0);
    let base = list.as_ptr() as usize;
    list[..5].copy_from_slice(&[5, ATAG_CORE, 0, 4096, 0]);
    let (mut i, mut starts) = (5, [0; 8]);
    for (n, &(tag, body)) in tags.iter().enumerate() {
        starts[n] = base + 4 * i;
        list[i] = (body.len() + 2) as u32;
        list[i + 1] = tag;
        list[i + 2..i + 2 + body.len()].copy_from_slice(body);
        i += 2 + body.len();
    }
    (base, starts)
}

/// Overwrites word `i` of LIST.
fn poke(i: usize, value: u32) {
    assert!(i < LIST_WORDS);
    // SAFETY: inside LIST, which only this test touches, through no other reference.
    unsafe { LIST.0.get().cast::<u32>().add(i).write(value) };
}

/// A 3 809-character ATAG_CMDLINE (which ran past page 0 and made the whole list be
/// dropped) is taken whole; a tag running past the limit, or malformed, ends the walk but
/// keeps the tags before it; ATAG_MEM banks past the fourth are counted, not lost
/// silently; no ATAG_CORE is no list.
fn atags_kept_whole_or_cut() -> R {
    use super::atags::{self, MAX_BANKS};

    const LEN: usize = 3809;
    let mut text = [b'x'; LEN];
    text[..9].copy_from_slice(b"selftest ");
    let mut cmdline = [0u32; LEN / 4 + 1];
    for (i, &b) in text.iter().enumerate() {
        cmdline[i / 4] |= u32::from(b) << (8 * (i % 4));
    }
    let mem = [0x3c00_0000, 0];
    let (base, starts) = build_atags(&[(ATAG_MEM, &mem), (ATAG_CMDLINE, &cmdline)]);
    let end = base + 4 * LIST_WORDS;
    // SAFETY: [base, end) is LIST, readable and unchanged while the result is used.
    let t = unsafe { atags::read(base, end) }.ok_or("a valid ATAG list was not read")?;
    ensure(
        t.banks == 1 && t.mem[0] == (0, 0x3c00_0000) && t.cut.is_none(),
        "a list with a long command line lost its memory or was cut",
    )?;
    ensure(
        t.cmdline.len() >= LEN && t.cmdline[..LEN] == text && t.cmdline[LEN] == 0,
        "a 3809-character command line was not taken whole",
    )?;
    ensure(
        t.end == starts[1] + 4 * (cmdline.len() + 2) + 8,
        "the list's end (to reserve) is not past ATAG_NONE",
    )?;
    // The limit falls inside the command line: the memory before it is kept.
    // SAFETY: as above, a shorter range of it.
    let t = unsafe { atags::read(base, starts[1] + 400) }.ok_or("a cut list was dropped")?;
    ensure(
        t.banks == 1 && t.cmdline.is_empty() && t.cut == Some((starts[1], cmdline.len() + 2)),
        "a tag running past the limit did not end the walk, keeping what came before",
    )?;
    // A malformed tag (fewer than 2 words) after the memory.
    let (base, starts) = build_atags(&[(ATAG_MEM, &mem), (ATAG_CMDLINE, &[])]);
    poke((starts[1] - base) / 4, 1);
    // SAFETY: as above.
    let t = unsafe { atags::read(base, end) }.ok_or("a list with a bad tag was dropped")?;
    ensure(
        t.banks == 1 && t.cut == Some((starts[1], 1)),
        "a malformed tag did not end the walk, keeping what came before",
    )?;
    let banks = [(ATAG_MEM, &mem[..]); MAX_BANKS + 2];
    let (base, _) = build_atags(&banks);
    // SAFETY: as above.
    let t = unsafe { atags::read(base, end) }.ok_or("a list with six banks was dropped")?;
    ensure(
        t.banks == MAX_BANKS && t.extra_banks == 2,
        "ATAG_MEM banks past the fourth were not counted",
    )?;
    poke(1, 0);
    ensure(
        // SAFETY: as above.
        unsafe { atags::read(base, end) }.is_none(),
        "a list without ATAG_CORE was read",
    )
}
