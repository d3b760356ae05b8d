//! The made-up platform: "Toy", a uniprocessor board whose one RAM bank sits at physical
//! address [`RAM_PHYS`], and whose kernel reaches it through a window at another address
//! (here a `static` array of the kernel image, so that the example runs anywhere). Its
//! `kmem::Arch` implementation is all a port of kmem has to write.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use kmem::Arch;

/// Where the board's RAM bank starts in its physical address space.
pub const RAM_PHYS: u64 = 0x8000_0000;
/// Bytes of RAM the board has.
pub const RAM_BYTES: usize = 16 << 20;
/// Bytes at the start of RAM that the board's firmware keeps for itself (a made-up
/// table the kernel must not overwrite): reserved in the memory map.
pub const FIRMWARE_BYTES: u64 = 64 << 10;

/// The RAM bank, as the kernel sees it. 4 MiB-aligned, so that the largest buddy blocks
/// are aligned in virtual memory as they are in physical memory.
#[repr(C, align(4194304))]
struct Ram(UnsafeCell<[u8; RAM_BYTES]>);

// SAFETY: the kernel hands the whole bank to kmem, which synchronises every access to it.
unsafe impl Sync for Ram {}

static RAM: Ram = Ram(UnsafeCell::new([0; RAM_BYTES]));

/// The kernel's virtual address of physical address [`RAM_PHYS`].
fn ram_window() -> usize {
    RAM.0.get() as usize
}

/// The board's interrupt mask: true while interrupts are enabled.
static IRQS_ON: AtomicBool = AtomicBool::new(true);
/// The board's free-running timer.
static TIMER: AtomicU64 = AtomicU64::new(0);

/// The Toy board's CPU, as kmem sees it.
pub struct Toy;

impl Arch for Toy {
    /// Whether interrupts were enabled.
    type IrqState = bool;

    fn cpu_id() -> usize {
        0
    }

    fn irq_save() -> bool {
        IRQS_ON.swap(false, Relaxed)
    }

    fn irq_restore(on: bool) {
        IRQS_ON.store(on, Relaxed);
    }

    fn cycles() -> u64 {
        TIMER.fetch_add(1, Relaxed)
    }

    fn phys_to_virt(pa: u64) -> usize {
        (pa - RAM_PHYS) as usize + ram_window()
    }

    fn virt_to_phys(va: usize) -> u64 {
        (va.wrapping_sub(ram_window()) as u64).wrapping_add(RAM_PHYS)
    }
}

/// Whether interrupts are enabled now (the kernel checks kmem gives them back).
pub fn irqs_on() -> bool {
    IRQS_ON.load(Relaxed)
}
