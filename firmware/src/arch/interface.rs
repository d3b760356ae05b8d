//! The firmware's porting contract for an ISA: what the boot sequence, the SMP mailboxes,
//! the self-tests and the monitor need from the CPU beyond what the allocator needs.
//!
//! Each ISA implements [`kmem::Arch`] (the library's trait) and [`Isa`] on the type it
//! exports as `Cpu`. The firmware reaches the CPU only through these two traits, so a new
//! ISA that leaves an item out fails to build at its `impl Isa`, naming the item.

use kmem::mm::memmap::PhysRange;

/// How the identity map has a range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mapping {
    /// All of it as normal cacheable memory: RAM.
    Normal,
    /// All of it as device memory (uncached): MMIO.
    Device,
}

/// The identity map has device memory below this (the low 4 GiB, where every board's
/// MMIO lies) and nothing above it but RAM.
const DEVICE_LIMIT: u64 = 4 << 30;

impl Mapping {
    /// How the identity map has the `block`-sized block at `addr`, given the `ram` lists:
    /// normal memory when a range in them overlaps it, else device memory below the low
    /// 4 GiB, else not at all (`None`). The one rule every ISA's `mmu::build` maps by.
    pub(super) fn of_block(ram: &[&[PhysRange]], addr: u64, block: u64) -> Option<Mapping> {
        let is_ram = ram
            .iter()
            .flat_map(|list| list.iter())
            .any(|r| r.start < addr + block && addr < r.end);
        if is_ram {
            Some(Mapping::Normal)
        } else if addr < DEVICE_LIMIT {
            Some(Mapping::Device)
        } else {
            None
        }
    }

    /// How an identity map of `block`-sized blocks up to `limit`, each mapped as
    /// [`Mapping::of_block`] says, with the guard pages left out, has all of `range`: one
    /// kind for every block it touches, else `None`. Each ISA's `Isa::mapping` is this
    /// with its own block size and limit.
    pub(super) fn of_blocks(
        ram: &[&[PhysRange]],
        range: PhysRange,
        block: u64,
        limit: u64,
    ) -> Option<Mapping> {
        if range.start >= range.end
            || range.end > limit
            || super::percpu::guard_pages().any(|g| g.start < range.end && range.start < g.end)
        {
            return None;
        }
        let mut kind = None;
        let mut at = range.start & !(block - 1);
        while at < range.end {
            let this = Mapping::of_block(ram, at, block)?;
            if kind.is_some_and(|k| k != this) {
                return None;
            }
            kind = Some(this);
            at += block;
        }
        kind
    }
}

/// The CPU as the firmware drives it: core count, time, the identity map, idling, and
/// ending the machine.
pub trait Isa: kmem::Arch {
    /// Most cores the firmware brings up (logical ids `0..MAX_CPUS`); the per-CPU statics
    /// are sized by it, and cores past it stay parked.
    const MAX_CPUS: usize;

    /// RAM at or above this physical address is beyond what [`Isa::mmu_build`] maps, so
    /// the board must leave it out of the memory map.
    const MAP_LIMIT: u64;

    /// Frequency of the counter [`kmem::Arch::cycles`] reads, for timeouts and deadlines.
    fn cycles_per_second() -> u64;

    /// The running core's hardware id in the form the boot information lists CPUs (MPIDR
    /// affinity, initial local APIC id), so that the board can put the boot core first.
    fn boot_hwid() -> u64;

    /// Fills the identity map: RAM (every range of the `ram` lists) cacheable, devices
    /// below 4 GiB uncached, nothing at or above [`Isa::MAP_LIMIT`], and nothing in the
    /// guard page below each core's stack (`percpu::guard_pages`).
    ///
    /// # Safety
    /// Boot core only, once, before any core runs [`Isa::mmu_enable`].
    unsafe fn mmu_build(ram: &[&[PhysRange]]);

    /// How [`Isa::mmu_build`], given `ram`, would map all of `range`: `None` when any of
    /// it would be unmapped (a guard page, beyond the device window or
    /// [`Isa::MAP_LIMIT`]) or the two kinds would mix. Boards vet the addresses the boot
    /// information gives with it (`bsp::vet`) before the map exists.
    fn mapping(ram: &[&[PhysRange]], range: PhysRange) -> Option<Mapping>;

    /// Switches the running core to the map [`Isa::mmu_build`] filled. Every core runs it
    /// before its first lock: exclusive accesses need cacheable memory on Arm.
    ///
    /// # Safety
    /// [`Isa::mmu_build`] has run, and the code and stack in use are RAM it mapped.
    unsafe fn mmu_enable();

    /// Reads the boot arguments' options for the CPU's memory tagging (`kmem.mte=` on
    /// aarch64) and sets it up. Boot core, after its MMU is on and before the allocator
    /// and the other cores start. Nothing by default: most CPUs have none.
    fn configure_memory_tagging(bootargs: &str) {
        let _ = bootargs;
    }

    /// Prints a line on the memory tagging's state and findings (`mte: sync (2 faults)`)
    /// for the boot report, `meminfo` and `slabinfo`. Nothing where the ISA has none.
    fn print_memory_tagging() {}

    /// Unmaps (`accessible` false) or maps again the page at `page` of the guard pool
    /// (`guard_pool`), and drops this core's translation of it; a page outside the pool
    /// is left alone. With interrupts off.
    fn set_pool_page(page: u64, accessible: bool);

    /// Sleeps until [`Isa::wake_waiters`] runs on another core (or returns early:
    /// callers re-check what they wait for). Idle cores sleep here between jobs, so that on
    /// a small host their vCPUs leave time to the busy ones.
    fn wait_for_event();

    /// Wakes every core sleeping in [`Isa::wait_for_event`].
    fn wake_waiters();

    /// Lets the running core take interrupts. The firmware runs with them off; the
    /// allocator turns them off itself around its per-CPU and locked paths.
    fn enable_interrupts();

    /// Stops the running core for good.
    fn halt() -> !;

    /// Ends the machine with `code`, 0 for success: under QEMU, the exit status `make
    /// selftest` checks.
    fn exit(code: u32) -> !;
}
