//! The Pi's own self-tests, run after the common suite: the console's pins, the ACT LED
//! pin's read-back (Pi 4), the generic-timer delay, and the mailbox's view of memory.

use core::sync::atomic::Ordering::Relaxed;

use embedded_hal::delay::DelayNs;

use super::uart::{KIND, UartKind};
use super::{UART_PINS, gpio, mailbox};
use crate::bsp::Test;
use crate::bsp::device_driver::bcm2835_gpio::Function;
use crate::bsp::device_driver::bcm2835_mailbox::tag;
use crate::bsp::device_driver::generic_timer::{Deadline, Delay};

type R = Result<(), &'static str>;

pub const TESTS: &[Test] = &[
    ("rpi_console_pins", console_pins),
    #[cfg(feature = "rpi4")]
    ("rpi_act_led_read_back", act_led_read_back),
    ("rpi_timer_delay", timer_delay),
    ("rpi_mailbox_arm_memory", mailbox_arm_memory),
    (
        "device_tree_errors",
        crate::bsp::devicetree_tests::device_tree_errors,
    ),
    (
        "device_tree_nesting",
        crate::bsp::devicetree_tests::device_tree_nesting,
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
