//! The self-test `device_tree_addresses`: the board's probe (`describe`, which reads a
//! tree and changes nothing) on trees that put the console UART or the GIC where they
//! must not be — in RAM, in kmem's image, misaligned, beyond what the identity map maps.
//! A refused console must fall back to QEMU's PL011 with a note in the boot report; a
//! refused GIC must be a boot error that names it. The trees are built in memory (QEMU
//! replaces a `-dtb` tree's `/memory` and `/chosen` on `virt`; `make boot-test` boots
//! two such trees through QEMU as well).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{Board, Devices, Virt, describe};
use crate::bsp::BootInfo;
use crate::bsp::devicetree::{self as dt, DtError};
use crate::bsp::devicetree_tests::Builder;

type R = Result<(), &'static str>;

/// Splits a 64-bit value into the two cells of a 2-cell address or size.
pub(super) fn two(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

/// A `virt`-like tree: 128 MiB of RAM at 0x4000_0000, PSCI, the console UART that
/// `stdout-path` names at `uart`, and a GICv2 at `gicd` and `gicc` (`(base, size)` each).
fn virt_tree(uart: u64, gicd: (u64, u64), gicc: (u64, u64)) -> Vec<u64> {
    let cells = |list: &[u64]| -> Vec<u32> { list.iter().flat_map(|&v| two(v)).collect() };
    let serial = format!("serial@{uart:x}");
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .string("model", "kmem self-test: hostile virt");
    b.begin("memory@40000000")
        .string("device_type", "memory")
        .cells("reg", &cells(&[0x4000_0000, 0x800_0000]))
        .end();
    b.begin("psci").string("method", "hvc").end();
    b.begin(&serial)
        .string("compatible", "arm,pl011")
        .cells("reg", &cells(&[uart, 0x1000]))
        .end();
    b.begin("intc@8000000")
        .string("compatible", "arm,cortex-a15-gic")
        .cells("reg", &cells(&[gicd.0, gicd.1, gicc.0, gicc.1]))
        .end();
    let path = format!("/{serial}");
    b.begin("chosen").string("stdout-path", &path).end();
    b.end().finish()
}

const GICD: (u64, u64) = (0x0800_0000, 0x1_0000);
const GICC: (u64, u64) = (0x0801_0000, 0x1_0000);

/// `describe` on the tree in `words`. Each check runs in a frame of its own (a described
/// machine is several KiB, and the boot stack holds 64).
#[inline(never)]
pub(super) fn probe(words: &[u64], devices: &mut Devices) -> Result<BootInfo, DtError> {
    // SAFETY: the blob lives in `words` for as long as anything parsed from it is used:
    // the caller holds it until it has looked at the result.
    let fdt = unsafe { dt::open(words.as_ptr() as usize)? };
    describe(fdt, 0, devices)
}

/// The tree with its console at `uart` must boot on the board's PL011, with one note
/// that contains `why`.
#[inline(never)]
fn console_refused(uart: u64, why: &str, what: &'static str) -> R {
    let words = virt_tree(uart, GICD, GICC);
    let mut devices = Devices::default();
    let info = probe(&words, &mut devices).map_err(|_| what)?;
    let notes: Vec<String> = info.notes.lines().map(String::from).collect();
    let noted = notes.len() == 1
        && notes[0].contains("refused: console UART")
        && notes[0].contains(why)
        && notes[0].contains("the console stays on the PL011");
    if info.uart_from_dt || info.uart != Virt::FALLBACK_UART || devices.console.is_some() || !noted {
        return Err(what);
    }
    Ok(())
}

/// The tree with its GIC at `gicd`, `gicc` must be a boot error naming `which`.
#[inline(never)]
fn gic_refused(gicd: (u64, u64), gicc: (u64, u64), which: &str, what: &'static str) -> R {
    let words = virt_tree(0x0900_0000, gicd, gicc);
    match probe(&words, &mut Devices::default()) {
        Err(DtError::Refused(r)) if r.what == which && format!("{r}").contains(which) => Ok(()),
        _ => Err(what),
    }
}

pub fn device_tree_addresses() -> R {
    sane_tree()?;
    let image = crate::bsp::image();
    console_refused(0x4400_0000, "inside RAM", "a console UART in RAM")?;
    console_refused(image.start + 0x1000, "kmem's own image", "a console in the image")?;
    console_refused(
        0x10_0000_0000,
        "outside the device memory",
        "a console UART at 64 GiB",
    )?;
    console_refused(0x0900_0002, "aligned", "a misaligned console UART")?;
    gic_refused(
        (0x4400_0000, 0x1_0000),
        GICC,
        "GIC distributor",
        "a GIC distributor in RAM",
    )?;
    gic_refused(
        GICD,
        (0x10_0000_0000, 0x1_0000),
        "GIC CPU interface",
        "a GIC CPU interface at 64 GiB",
    )?;
    ram_over_the_pl011()
}

/// The tree as QEMU writes it: everything kept, nothing noted.
#[inline(never)]
fn sane_tree() -> R {
    let words = virt_tree(0x0900_0000, GICD, GICC);
    let mut devices = Devices::default();
    let info = probe(&words, &mut devices).map_err(|_| "a sane tree was refused")?;
    if !info.uart_from_dt
        || info.uart != 0x0900_0000
        || devices.console != Some(0x0900_0000)
        || devices.gic
            != Some(super::GicRegs::V2 {
                distributor: 0x0800_0000,
                cpu_interface: 0x0801_0000,
            })
        || info.notes.lines().count() != 0
    {
        return Err("a sane tree: console, GIC or notes not as given");
    }
    Ok(())
}

/// A tree whose RAM covers the board's own PL011 leaves nowhere safe to report to: an
/// error.
#[inline(never)]
fn ram_over_the_pl011() -> R {
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2]);
    b.begin("memory@0")
        .string("device_type", "memory")
        .cells("reg", &[0, 0, 0, 0x4800_0000])
        .end();
    let words = b.end().finish();
    match probe(&words, &mut Devices::default()) {
        Err(DtError::Refused(r)) if r.addr == Virt::FALLBACK_UART as u64 => Ok(()),
        _ => Err("a tree with RAM over the board's PL011 was not refused"),
    }
}
