//! The Pi's own self-tests, run after the common suite: the console's pins, the ACT LED
//! pin's read-back (Pi 4), the generic-timer delay, the mailbox's view of memory, the
//! ATAG reader on lists built in RAM, and the board's probe on trees that put its devices
//! and spin-table words where they must not be (`rpi_device_tree_addresses`).

use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::Relaxed;

use embedded_hal::delay::DelayNs;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::uart::{KIND, UartKind};
use super::{
    ProbeError, SOC, TreeDevices, UART_PINS, gpio, mailbox, release_words, tree_devices,
    tree_map,
};
use crate::arch::cpu::MAX_CPUS;
use crate::bsp::devicetree::{self as dt};
use crate::bsp::devicetree_tests::Builder;
use crate::bsp::vet::with_layout;
use crate::bsp::{Notes, Test};
use kmem::mm::memmap::MemoryMap;
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
    (
        "device_tree_nesting",
        crate::bsp::devicetree_tests::device_tree_nesting,
    ),
    ("vet_addresses", crate::bsp::vet_tests::vet_addresses),
    ("rpi_device_tree_addresses", device_tree_addresses),
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
/// A Pi-like tree, its addresses as the CPU sees them (no `/soc` translation): 960 MiB
/// of RAM at 0 (and `extra_ram` more, when given), four cores on the spin table at
/// `release` (none where 0; core 0 is the boot core), the console that `stdout-path`
/// names (`compatible`, base) and the mailbox and GPIO block at `mailbox` and `gpio`.
struct PiTree {
    extra_ram: Option<(u32, u32)>,
    console: (&'static str, u32),
    mailbox: u32,
    gpio: u32,
    release: [u64; 5],
}

impl PiTree {
    /// The board as it is.
    fn sane() -> PiTree {
        let p = SOC.peripherals as u32;
        PiTree {
            extra_ram: None,
            console: ("brcm,bcm2835-aux-uart", p + 0x21_5040),
            mailbox: p + 0xb880,
            gpio: p + 0x20_0000,
            release: [0xd8, 0xe0, 0xe8, 0xf0, 0],
        }
    }

    fn build(&self) -> Vec<u64> {
        let split = |v: u64| [(v >> 32) as u32, v as u32];
        let mut b = Builder::new();
        b.begin("")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .string("model", "kmem self-test: hostile Pi");
        b.begin("memory@0")
            .string("device_type", "memory")
            .cells("reg", &[0, 0x3c00_0000])
            .end();
        if let Some((base, size)) = self.extra_ram {
            b.begin(&format!("memory@{base:x}"))
                .string("device_type", "memory")
                .cells("reg", &[base, size])
                .end();
        }
        b.begin("cpus")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[0]);
        for (hwid, &release) in self.release.iter().enumerate() {
            b.begin(&format!("cpu@{hwid}"))
                .string("device_type", "cpu")
                .cells("reg", &[hwid as u32]);
            if release != 0 {
                b.cells("cpu-release-addr", &split(release));
            }
            b.end();
        }
        b.end();
        let serial = format!("serial@{:x}", self.console.1);
        b.begin(&serial)
            .string("compatible", self.console.0)
            .cells("reg", &[self.console.1, 0x40])
            .end();
        b.begin(&format!("mailbox@{:x}", self.mailbox))
            .string("compatible", "brcm,bcm2835-mbox")
            .cells("reg", &[self.mailbox, 0x40])
            .end();
        b.begin(&format!("gpio@{:x}", self.gpio))
            .string("compatible", SOC.gpio_compatible)
            .cells("reg", &[self.gpio, 0xb4])
            .end();
        b.begin("chosen")
            .string("stdout-path", &format!("/{serial}"))
            .end();
        b.end().finish()
    }
}

/// What the board's probe makes of `tree`: its devices and release words as vetted, and
/// the notes, or the error. Changes nothing (no console, no mailbox).
#[inline(never)]
fn vet_tree(tree: &PiTree) -> Result<(TreeDevices, [u64; MAX_CPUS], Vec<String>), ProbeError> {
    let words = tree.build();
    // SAFETY: the blob lives in `words` until this returns, and nothing parsed from it
    // outlives that.
    let fdt = unsafe { dt::open(words.as_ptr() as usize)? };
    let mut map = MemoryMap::new();
    tree_map(fdt, &mut map)?;
    let (image, dtb) = (crate::bsp::image(), dt::extent(fdt));
    let mut notes = Notes::new();
    let devices = with_layout(&map, image, dtb, |l| tree_devices(fdt, l, &mut notes))??;
    let mut cpus = dt::cpus(fdt, 0)?;
    with_layout(&map, image, dtb, |l| {
        release_words(&mut cpus, l, true, &mut notes);
    })?;
    let notes = notes.lines().map(String::from).collect();
    Ok((devices, cpus.release, notes))
}

fn noted(notes: &[String], what: &str, why: &str) -> bool {
    notes
        .iter()
        .any(|n| n.starts_with("refused: ") && n.contains(what) && n.contains(why))
}

#[inline(never)]
fn sane_tree() -> R {
    let tree = PiTree::sane();
    let (d, release, notes) = vet_tree(&tree).map_err(|_| "a sane tree was refused")?;
    ensure(
        d.console == (UartKind::MiniUart, tree.console.1 as usize)
            && d.console_from_dt
            && d.mailbox == tree.mailbox as usize
            && d.gpio == tree.gpio as usize,
        "a sane tree: devices not as given",
    )?;
    ensure(
        release[..4] == [0, 0xe0, 0xe8, 0xf0] && notes.is_empty(),
        "a sane tree: release words not as given, or notes",
    )
}

#[inline(never)]
fn hostile_tree() -> R {
    let image = crate::bsp::image();
    let tree = PiTree {
        extra_ram: None,
        // The mini-UART's registers in RAM, the GPIO block in kmem's image, the mailbox
        // in page 0 (reserved: the spin table); release words in the image, at 32 GiB
        // and misaligned, and a fifth core (past the firmware's four slots) whose word
        // is in the image too.
        console: ("brcm,bcm2835-aux-uart", 0x100_0040),
        mailbox: 0x80,
        gpio: image.start as u32 + 0x1000,
        release: [0xd8, image.start + 0x1000, 32 << 30, 0xf4, image.start + 0x2000],
    };
    let (d, release, notes) = vet_tree(&tree).map_err(|_| "a hostile tree was refused")?;
    ensure(
        d.console == (UartKind::Pl011, super::PL011) && !d.console_from_dt,
        "a console UART in RAM was kept",
    )?;
    ensure(
        noted(&notes, "console UART", "inside RAM kmem manages"),
        "a console UART in RAM: not noted",
    )?;
    ensure(
        d.gpio == SOC.peripherals + super::GPIO_OFFSET
            && noted(&notes, "GPIO block", "kmem's own image"),
        "a GPIO block in the image: kept or not noted",
    )?;
    ensure(
        d.mailbox == SOC.peripherals + super::MAILBOX_OFFSET
            && noted(&notes, "mailbox", "inside reserved memory"),
        "a mailbox in page 0: kept or not noted",
    )?;
    ensure(
        release[..5] == [0, 0xe0, 0xe8, 0xf0, 0],
        "release words: bad ones kept, or the firmware's slots not taken instead",
    )?;
    ensure(
        noted(&notes, "cpu-release-addr of cpu 1", "kmem's own image")
            && noted(&notes, "cpu-release-addr of cpu 2", "outside the RAM kmem maps")
            && noted(&notes, "cpu-release-addr of cpu 3", "8-byte aligned")
            && noted(&notes, "cpu-release-addr of cpu 4", "not started"),
        "refused release words: not noted",
    )
}

/// A tree that lists RAM over the SoC's own PL011 is refused.
#[inline(never)]
fn ram_over_the_pl011() -> R {
    let tree = PiTree {
        extra_ram: Some((super::PL011 as u32 & !0xf_ffff, 0x10_0000)),
        ..PiTree::sane()
    };
    match vet_tree(&tree) {
        Err(ProbeError::Refused(r)) if r.what == "PL011" => Ok(()),
        _ => Err("a tree with RAM over the SoC's PL011 was not refused"),
    }
}

/// The board's probe on trees that put the console, the mailbox, the GPIO block and the
/// spin-table words where they must not be: each refused for what it is, with a note,
/// and the SoC's own device (the firmware's slot) used instead; RAM over a device of the
/// SoC's is an error.
fn device_tree_addresses() -> R {
    sane_tree()?;
    hostile_tree()?;
    ram_over_the_pl011()
}
