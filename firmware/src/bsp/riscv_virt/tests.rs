//! The self-test `device_tree_addresses` on riscv64: the board's probe (`describe`, which
//! reads a tree and changes nothing) on trees that put the console UART or the finisher
//! where they must not be — in RAM, in kmem's image, misaligned, beyond what the identity
//! map maps — or whose `syscon-poweroff` names a syscon that is no finisher. A refused
//! console must fall back to QEMU's ns16550a and a refused finisher to QEMU's, each with
//! a note in the boot report; RAM over the board's own UART must be a boot error. And the
//! tree QEMU writes must give what the board uses: console, finisher, timebase, Svpbmt.
//! The trees are built in memory.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{Board, Devices, FINISHER, RiscvVirt, describe};
use crate::bsp::BootInfo;
use crate::bsp::devicetree::{self as dt, DtError};
use crate::bsp::devicetree_tests::Builder;

type R = Result<(), &'static str>;

/// Splits a 64-bit value into the two cells of a 2-cell address or size.
fn two(v: u64) -> [u32; 2] {
    [(v >> 32) as u32, v as u32]
}

/// What a test tree varies.
struct Tree<'a> {
    /// The console `stdout-path` names.
    uart: u64,
    /// The syscon the `syscon-poweroff` names, and its `compatible` list.
    syscon: u64,
    syscon_compatible: &'a [u8],
    /// The boot hart's `riscv,isa-extensions`.
    extensions: &'a [u8],
    /// The one RAM bank.
    ram: (u64, u64),
}

const SANE: Tree<'static> = Tree {
    uart: 0x1000_0000,
    syscon: 0x10_0000,
    syscon_compatible: b"sifive,test1\0sifive,test0\0syscon\0",
    extensions: b"i\0m\0a\0f\0d\0c\0zicntr\0sstc\0",
    ram: (0x8000_0000, 0x800_0000),
};

/// A `virt`-like riscv64 tree: one hart with a 10 MHz timebase, RAM, and under `/soc` the
/// console and the syscon as `t` says, the syscon named by `/poweroff`.
fn tree(t: &Tree<'_>) -> Vec<u64> {
    let cells = |list: &[u64]| -> Vec<u32> { list.iter().flat_map(|&v| two(v)).collect() };
    let serial = format!("serial@{:x}", t.uart);
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .string("model", "kmem self-test: hostile riscv64 virt");
    b.begin("poweroff")
        .string("compatible", "syscon-poweroff")
        .cells("regmap", &[1])
        .cells("offset", &[0])
        .cells("value", &[0x5555])
        .end();
    b.begin(&format!("memory@{:x}", t.ram.0))
        .string("device_type", "memory")
        .cells("reg", &cells(&[t.ram.0, t.ram.1]))
        .end();
    b.begin("cpus")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[0])
        .cells("timebase-frequency", &[10_000_000]);
    b.begin("cpu@0")
        .string("device_type", "cpu")
        .cells("reg", &[0])
        .prop("riscv,isa-extensions", t.extensions)
        .end();
    b.end();
    b.begin("soc")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .string("compatible", "simple-bus")
        .prop("ranges", &[]);
    b.begin(&serial)
        .string("compatible", "ns16550a")
        .cells("reg", &cells(&[t.uart, 0x100]))
        .end();
    b.begin(&format!("test@{:x}", t.syscon))
        .prop("compatible", t.syscon_compatible)
        .cells("reg", &cells(&[t.syscon, 0x1000]))
        .cells("phandle", &[1])
        .end();
    b.end();
    let path = format!("/soc/{serial}");
    b.begin("chosen").string("stdout-path", &path).end();
    b.end().finish()
}

/// `describe` on the tree in `words`. Each check runs in a frame of its own (a described
/// machine is several KiB, and the boot stack holds 128).
#[inline(never)]
fn probe(words: &[u64], devices: &mut Devices) -> Result<BootInfo, DtError> {
    // SAFETY: the blob lives in `words` for as long as anything parsed from it is used:
    // the caller holds it until it has looked at the result.
    let fdt = unsafe { dt::open(words.as_ptr() as usize)? };
    describe(fdt, 0, devices)
}

/// The notes of `info`, one string each.
fn notes(info: &BootInfo) -> Vec<String> {
    info.notes.lines().map(String::from).collect()
}

pub fn device_tree_addresses() -> R {
    sane_tree()?;
    svpbmt_listed()?;
    let image = crate::bsp::image();
    console_refused(0x8400_0000, "inside RAM", "a console UART in RAM")?;
    console_refused(image.start + 0x1000, "kmem's own image", "a console in the image")?;
    console_refused(
        0x10_0000_0000,
        "outside the device memory",
        "a console UART at 64 GiB",
    )?;
    console_refused(0x1000_0002, "aligned", "a misaligned console UART")?;
    finisher_refused(
        &Tree {
            syscon: 0x8400_0000,
            ..SANE
        },
        "refused: poweroff register at 0x84000000",
        "a finisher in RAM",
    )?;
    finisher_refused(
        &Tree {
            syscon_compatible: b"syscon\0",
            ..SANE
        },
        "is not a sifive,test0",
        "a syscon-poweroff whose regmap is no finisher",
    )?;
    ram_over_the_uart()
}

/// The tree as QEMU writes it: everything kept, nothing noted.
#[inline(never)]
fn sane_tree() -> R {
    let words = tree(&SANE);
    let mut devices = Devices::default();
    let info = probe(&words, &mut devices).map_err(|_| "a sane tree was refused")?;
    if !info.uart_from_dt
        || info.uart != 0x1000_0000
        || devices.console != Some(0x1000_0000)
        || devices.finisher != Some((FINISHER as usize, 0x5555))
        || devices.timebase != Some(10_000_000)
        || devices.svpbmt
        || !notes(&info).is_empty()
    {
        return Err("a sane tree: console, finisher, timebase, Svpbmt or notes not as given");
    }
    Ok(())
}

/// A hart that lists Svpbmt gets I/O-typed device mappings.
#[inline(never)]
fn svpbmt_listed() -> R {
    let words = tree(&Tree {
        extensions: b"i\0m\0a\0svpbmt\0",
        ..SANE
    });
    let mut devices = Devices::default();
    probe(&words, &mut devices).map_err(|_| "a tree listing Svpbmt was refused")?;
    if !devices.svpbmt {
        return Err("a hart listing Svpbmt: not seen");
    }
    Ok(())
}

/// The tree with its console at `uart` must boot on the board's ns16550a, with one note
/// that contains `why`.
#[inline(never)]
fn console_refused(uart: u64, why: &str, what: &'static str) -> R {
    let words = tree(&Tree { uart, ..SANE });
    let mut devices = Devices::default();
    let info = probe(&words, &mut devices).map_err(|_| what)?;
    let notes = notes(&info);
    let noted = notes.len() == 1
        && notes[0].contains("refused: console UART")
        && notes[0].contains(why)
        && notes[0].contains("the console stays on the ns16550a");
    if info.uart_from_dt
        || info.uart != RiscvVirt::FALLBACK_UART
        || devices.console.is_some()
        || !noted
    {
        return Err(what);
    }
    Ok(())
}

/// The tree `t` must boot with QEMU's finisher and one note that contains `why`.
#[inline(never)]
fn finisher_refused(t: &Tree<'_>, why: &str, what: &'static str) -> R {
    let words = tree(t);
    let mut devices = Devices::default();
    let info = probe(&words, &mut devices).map_err(|_| what)?;
    let notes = notes(&info);
    let noted = notes.len() == 1 && notes[0].contains(why);
    if devices.finisher.is_some() || !info.uart_from_dt || !noted {
        return Err(what);
    }
    Ok(())
}

/// A tree whose RAM covers the board's own ns16550a leaves nowhere safe to report to: an
/// error.
#[inline(never)]
fn ram_over_the_uart() -> R {
    let words = tree(&Tree {
        ram: (0x800_0000, 0x7800_0000),
        ..SANE
    });
    match probe(&words, &mut Devices::default()) {
        Err(DtError::Refused(r)) if r.addr == RiscvVirt::FALLBACK_UART as u64 => Ok(()),
        _ => Err("a tree with RAM over the board's ns16550a was not refused"),
    }
}
