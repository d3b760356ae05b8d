//! The self-test `vet_addresses`, on every board: the checks every address from the boot
//! information passes (`bsp::vet`) against a memory map laid around the running image —
//! RAM, a reservation in it, boot data — and the ISA's real identity map (its device
//! window, its limit, the stacks' guard pages). Each kind of bad address must be refused
//! for the reason that names it, and good ones accepted.

use alloc::format;

use super::vet::{Layout, Refusal};
use kmem::mm::memmap::{MemoryMap, PhysRange, RegionKind};

type R = Result<(), &'static str>;

const MIB: u64 = 1 << 20;

fn expect(got: Result<PhysRange, Refusal>, want: Result<(), Refusal>, what: &'static str) -> R {
    match (got, want) {
        (Ok(_), Ok(())) => Ok(()),
        (Err(g), Err(w)) if g == w => Ok(()),
        _ => Err(what),
    }
}

pub fn vet_addresses() -> R {
    let image = super::image();
    // RAM: the 64 MiB from the 1 GiB boundary below the image (which it holds on every
    // board), less a page at the end, so that the last 2 MiB block holds RAM and a hole.
    let base = image.start & !((1 << 30) - 1);
    let ram = PhysRange {
        start: base,
        end: base + 64 * MIB - 4096,
    };
    if !(ram.start <= image.start && image.end <= ram.end) {
        return Err("the image does not fit the test's RAM");
    }
    // Boot data and a reservation in RAM, clear of the image.
    let at = |offset: u64| image.end.next_multiple_of(2 * MIB) + offset;
    let boot_data = PhysRange {
        start: at(2 * MIB),
        end: at(2 * MIB) + 0x1_0000,
    };
    let reserved = PhysRange {
        start: at(8 * MIB),
        end: at(9 * MIB),
    };
    let free = at(16 * MIB);
    let mut map = MemoryMap::new();
    let added = [
        map.add_range(RegionKind::Usable, ram),
        map.add_range(RegionKind::Reserved, image),
        map.add_range(RegionKind::Reserved, boot_data),
        map.add_range(RegionKind::Reserved, reserved),
    ];
    if added.iter().any(Result::is_err) {
        return Err("the test's memory map was refused");
    }
    let map = map
        .normalize()
        .map_err(|_| "the test's memory map was refused")?;
    let layout = Layout {
        map: &map,
        image,
        boot_data,
    };
    // Devices: below 4 GiB, away from RAM, is where the identity map has them.
    let device = 0xc000_0000;
    let d = |base, size| layout.device(base, size);
    expect(
        d(device, 0x1000),
        Ok(()),
        "a device where devices are: refused",
    )?;
    expect(
        d(device + 2, 0x1000),
        Err(Refusal::Misaligned(4)),
        "a misaligned device",
    )?;
    expect(
        d(u64::MAX - 0xff, 0x1000),
        Err(Refusal::Overflow),
        "a device past the top",
    )?;
    expect(
        d(image.start + 0x1000, 0x40),
        Err(Refusal::Image(image)),
        "a device in the image",
    )?;
    expect(
        d(boot_data.start, 0x40),
        Err(Refusal::BootData(boot_data)),
        "a device in the boot data",
    )?;
    let in_ram = d(free, 0x40);
    if !matches!(in_ram, Err(Refusal::Ram(r)) if r.contains(free)) {
        return Err("a device in RAM");
    }
    expect(
        d(reserved.start, 0x40),
        Err(Refusal::Reserved(reserved)),
        "a device in a reservation",
    )?;
    let straddling = d(ram.end - 0x100, 0x1000);
    if !matches!(straddling, Err(Refusal::Ram(_))) {
        return Err("a device that runs into RAM");
    }
    expect(
        d(ram.end, 0x100),
        Err(Refusal::NotDevice),
        "a device in the hole of a block the map has as RAM",
    )?;
    expect(
        d(0x1_0000_0000, 0x1000),
        Err(Refusal::NotDevice),
        "a device above 4 GiB",
    )?;
    expect(
        d(0x10_0000_0000, 0x1000),
        Err(Refusal::NotDevice),
        "a device at 64 GiB",
    )?;
    expect(
        d(device, 0x8000_0000),
        Err(Refusal::NotDevice),
        "a device that runs past 4 GiB",
    )?;
    // Release words: RAM the identity map has, outside the image and the boot data.
    let w = |addr| layout.ram_word(addr);
    expect(w(free), Ok(()), "a release word in RAM: refused")?;
    expect(
        w(reserved.start),
        Ok(()),
        "a release word in a reservation in RAM: refused",
    )?;
    expect(
        w(free + 4),
        Err(Refusal::Misaligned(8)),
        "a misaligned release word",
    )?;
    expect(
        w(image.start + 0x100),
        Err(Refusal::Image(image)),
        "a release word in the image",
    )?;
    expect(
        w(boot_data.start + 8),
        Err(Refusal::BootData(boot_data)),
        "a release word in the boot data",
    )?;
    expect(
        w(32 << 30),
        Err(Refusal::NotRam),
        "a release word at 32 GiB",
    )?;
    expect(
        w(device),
        Err(Refusal::NotRam),
        "a release word in a device",
    )?;
    // The report's wording names what was refused and why.
    let text = format!(
        "{}",
        super::vet::Refused {
            what: "console UART",
            source: "serial@1000",
            addr: free,
            why: Refusal::Ram(ram),
        }
    );
    if !text.contains("console UART at 0x") || !text.contains("inside RAM kmem manages") {
        return Err("a refusal's report does not say what and why");
    }
    Ok(())
}
