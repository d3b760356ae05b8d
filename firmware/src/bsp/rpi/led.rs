//! The ACT LED as an `embedded-hal` [`OutputPin`] — GPIO 42 on the Pi 4, the firmware's
//! GPIO expander (pin 130, through the mailbox) on the Pi 3B — and the pattern it blinks
//! to show the self-test result on a board without a serial cable:
//! - passed: slow and even, 1 s on, 1 s off;
//! - failed: three quick flashes (0.2 s on, 0.2 s off), then 1.4 s dark.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

use crate::bsp::Indicator;
use crate::bsp::device_driver::generic_timer::Delay;

#[cfg(feature = "rpi4")]
pub use self::gpio_led::act_led;

#[cfg(feature = "rpi3")]
pub use self::expander_led::act_led;

#[cfg(feature = "rpi4")]
mod gpio_led {
    use crate::bsp::device_driver::bcm2835_gpio::Pin;

    /// The Pi 4's ACT LED pin, active high.
    pub const ACT_LED: u32 = 42;

    /// The ACT LED, its pin made an output.
    pub fn act_led() -> Pin {
        super::super::gpio().output(ACT_LED)
    }
}

#[cfg(feature = "rpi3")]
mod expander_led {
    use embedded_hal::digital::{Error, ErrorKind, ErrorType, OutputPin};

    use crate::bsp::device_driver::bcm2835_mailbox::{MailboxError, tag};

    /// The Pi 3B's ACT LED on the firmware's GPIO expander.
    const ACT_LED: u32 = 130;

    /// A pin of the GPIO expander only the VideoCore firmware can reach.
    pub struct ExpanderPin(u32);

    /// The ACT LED.
    pub fn act_led() -> ExpanderPin {
        ExpanderPin(ACT_LED)
    }

    impl Error for MailboxError {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    impl ErrorType for ExpanderPin {
        type Error = MailboxError;
    }

    impl ExpanderPin {
        fn set(&mut self, on: bool) -> Result<(), MailboxError> {
            super::super::mailbox()
                .property::<2>(tag::SET_GPIO_STATE, &[self.0, u32::from(on)])
                .map(|_| ())
        }
    }

    impl OutputPin for ExpanderPin {
        fn set_low(&mut self) -> Result<(), MailboxError> {
            self.set(false)
        }

        fn set_high(&mut self) -> Result<(), MailboxError> {
            self.set(true)
        }
    }
}

/// On and off times, in ms, of one period of the pattern.
const PASSED: &[u32] = &[1000, 1000];
const FAILED: &[u32] = &[200, 200, 200, 200, 200, 1400];

/// The pattern for the self-test result, to run on a core of its own.
pub fn result_indicator(passed: bool) -> Option<Indicator> {
    Some(if passed { blink_passed } else { blink_failed })
}

fn blink_passed(_cpu: usize) -> Result<(), &'static str> {
    blink(PASSED)
}

fn blink_failed(_cpu: usize) -> Result<(), &'static str> {
    blink(FAILED)
}

fn blink(pattern: &[u32]) -> ! {
    let mut led = act_led();
    loop {
        for (i, &ms) in pattern.iter().enumerate() {
            // A firmware that ignores the LED (QEMU) leaves it dark; the timing still holds.
            let _ = if i % 2 == 0 {
                led.set_high()
            } else {
                led.set_low()
            };
            Delay.delay_ms(ms);
        }
    }
}
