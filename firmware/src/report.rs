//! The boot report: banner, machine summary (with the notes on what the board changed in
//! the boot information to use it), memory map, zones and page-descriptor overhead.

use crate::arch::cpu::{Cpu, Isa};
use crate::bsp::{Board, BootInfo, board};
use crate::println;
use kmem::mm::PageAllocator;
use kmem::mm::memmap::PAGE_SIZE;
use kmem::mm::zone::ZoneKind;

const MIB: u64 = 1 << 20;

/// What the machine is and what the loader said.
pub fn banner(info: &BootInfo) {
    println!(
        "kmem {} on {} ({})",
        env!("CARGO_PKG_VERSION"),
        board::NAME,
        info.model
    );
    println!(
        "console: {} at {:#x}{}",
        board::uart_name(),
        info.uart,
        if info.uart_from_dt {
            ""
        } else {
            " (the board's default: no usable /chosen/stdout-path)"
        }
    );
    // Escaped as Rust does: control characters from a corrupt line must not drive the
    // terminal.
    println!("bootargs: \"{}\"", info.bootargs.escape_debug());
    println!("boot info: {}  image: {}", info.source, info.image);
    for line in info.notes.lines() {
        println!("{line}");
    }
    if info.notes.dropped() > 0 {
        println!("({} more such lines not kept)", info.notes.dropped());
    }
    println!("rng-seed: {} bytes kept", info.rng_seed.len());
    if info.cpus.in_tree > info.cpus.len {
        println!(
            "cpus: the tree lists {}, kmem brings up at most {}",
            info.cpus.in_tree, info.cpus.len
        );
    }
    if info.unmapped_ram > 0 {
        println!(
            "memory: {} MiB above the mapped range left unused",
            info.unmapped_ram / MIB
        );
    }
    let z = info.zone_limits;
    println!(
        "dma: DMA zone below {:#x}, DMA32 below {:#x}",
        z.dma_end, z.dma32_end
    );
    if let Some(l) = info.dma_limit {
        println!("dma-ranges: devices reach below {l:#x}");
    }
}

/// The normalised map, zones, and the allocator's own figures.
pub fn memory(info: &BootInfo, pages: &PageAllocator<Cpu>) {
    println!("memory map ({} MiB usable):", info.map.usable_bytes() / MIB);
    crate::print!("{}", info.map);
    let page_info = pages.info();
    println!("zones:");
    for z in page_info.zones.iter().filter(|z| z.managed_pages > 0) {
        let (zs, ze) = info.zone_limits.span(z.kind);
        let in_zone = info
            .map
            .usable()
            .iter()
            .filter(|r| r.start < ze && r.end > zs);
        let lo = in_zone.clone().map(|r| r.start.max(zs)).min().unwrap_or(zs);
        let hi = in_zone.map(|r| r.end.min(ze)).max().unwrap_or(zs);
        println!(
            "  {:<6} [{lo:#012x}-{hi:#012x}) {:>6} MiB managed",
            z.kind.name(),
            z.managed_pages * PAGE_SIZE / MIB
        );
    }
    for k in ZoneKind::ALL {
        if page_info.zones[k.index()].managed_pages == 0 {
            println!("  {:<6} empty", k.name());
        }
    }
    crate::print!("{page_info}");
    Cpu::print_memory_tagging();
}
