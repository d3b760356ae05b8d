//! Secondary cores: bring-up, and the per-CPU mailboxes through which the boot core hands
//! them work.
//!
//! A job is a plain `fn(cpu) -> Result<(), &'static str>`; whatever it needs beyond its
//! CPU id it finds in statics (the page allocator, test state). [`run_on_all`] posts one
//! job to every online core, runs it on the boot core too, and waits for all of them, so
//! a test written as a job exercises the allocator from every CPU at once. Between jobs
//! the secondaries idle in `Isa::wait_for_event`; the boot core's `Isa::wake_waiters`
//! wakes them.

use core::fmt;
use core::sync::atomic::{
    AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use crate::arch;
use crate::arch::cpu::{Cpu, Isa, MAX_CPUS};
use crate::bsp::device_driver::common::Deadline;
use crate::bsp::{Board, BootInfo, StartError, board};
use crate::{print, println};
use kmem::mm::memmap::{NormalizedMap, PhysRange};
use kmem::mm::numa::{MAX_NODES, NodeId, Topology};

/// Work for one core.
pub type Job = fn(cpu: usize) -> Result<(), &'static str>;

enum Slot {
    Idle,
    Posted(Job),
    Done(Result<(), &'static str>),
}

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static MAILBOX: [spin::Mutex<Slot>; MAX_CPUS] = [const { spin::Mutex::new(Slot::Idle) }; MAX_CPUS];

/// Why each CPU the boot information listed (by logical id) is not online; `None` for
/// those that are, and past the list. Written by the boot core while it starts the others.
static NOT_STARTED: spin::Mutex<([Option<NotStarted>; MAX_CPUS], usize)> =
    spin::Mutex::new(([None; MAX_CPUS], 0));

/// How long a core may take to come online (per 8 started at once), or to finish a job,
/// before it is given up.
const ONLINE_TIMEOUT_MS: u64 = 2_000;
const JOB_TIMEOUT_MS: u64 = 100_000;

/// Why a listed CPU did not start.
#[derive(Clone, Copy, Debug)]
pub enum NotStarted {
    /// The boot information gives no way to start cores (no `/psci`, no release
    /// addresses).
    NoWay,
    /// Its hardware id is that of an earlier CPU in the list (this logical id): starting
    /// it again would start nothing, or the same core twice.
    Duplicate(usize),
    /// The board could not start it.
    Refused(StartError),
    /// Started, but it did not come online within the time limit (this many ms), by this
    /// means.
    Silent(u64, &'static str),
    /// RAM below 4 GiB had no room left for its stacks.
    NoRoom,
}

impl fmt::Display for NotStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStarted::NoWay => f.write_str("the boot information gives no way to start cores"),
            NotStarted::Duplicate(of) => write!(f, "same hardware id as cpu {of}"),
            NotStarted::Refused(e) => write!(f, "refused to start: {e}"),
            NotStarted::Silent(ms, how) => write!(f, "did not come online in {ms} ms ({how})"),
            NotStarted::NoRoom => f.write_str("no room in RAM below 4 GiB for its stacks"),
        }
    }
}

/// Starts every CPU the board listed, then waits until each is online (or gives up on
/// it): all are started before any is waited for, so that bring-up takes about one
/// core's time, not one per core. Each one that is not online is reported with the
/// reason and left out of every job (its logical id stays unused: a core that comes up
/// late must not find its id taken); then the count, and the ids of those online when
/// some are missing.
pub fn start_secondaries(info: &BootInfo) {
    ONLINE[0].store(true, Release);
    let cpus = &info.cpus;
    let mut not_started = NOT_STARTED.lock();
    not_started.1 = cpus.len;
    let mut started = [false; MAX_CPUS];
    for (logical, &hwid) in cpus.hwids[..cpus.len].iter().enumerate().skip(1) {
        not_started.0[logical] =
            if let Some(of) = cpus.hwids[..logical].iter().position(|&h| h == hwid) {
                Some(NotStarted::Duplicate(of))
            } else if logical >= SLOTS.load(Acquire) {
                Some(NotStarted::NoRoom)
            } else if info.cpu_start.is_none() {
                Some(NotStarted::NoWay)
            } else {
                let r = board::start_cpu(cpus, logical);
                started[logical] = r.is_ok();
                r.err().map(NotStarted::Refused)
            };
    }
    // The time a core had when each was waited for in turn, for every 8 started: many
    // vCPUs on few host cores come up slowly under emulation.
    let groups = started.iter().filter(|&&s| s).count().div_ceil(8).max(1) as u64;
    let limit_ms = ONLINE_TIMEOUT_MS * groups;
    let deadline = Deadline::after_us(limit_ms * 1000);
    for logical in (1..cpus.len).filter(|&c| started[c]) {
        if deadline.wait(|| ONLINE[logical].load(Acquire)).is_err() {
            let how = info.cpu_start.unwrap_or("");
            not_started.0[logical] = Some(NotStarted::Silent(limit_ms, how));
        }
    }
    for (logical, why) in not_started.0[..cpus.len].iter().enumerate() {
        if let Some(why) = why {
            let hwid = cpus.hwids[logical];
            println!("smp: cpu {logical} (hwid {hwid:#x}) not started: {why}");
        }
    }
    drop(not_started);
    let n = online();
    if n == cpus.len {
        println!("smp: {n} cpus online");
    } else {
        print!("smp: {n} of {} cpus online:", cpus.len);
        online_ids().for_each(|c| print!(" {c}"));
        println!();
    }
}

/// How many cores have a slot (stacks and guard page), the boot core included: set by
/// [`place_slots`], which may find room for fewer than the boot information lists.
static SLOTS: AtomicUsize = AtomicUsize::new(1);

/// Room for the slots is taken from RAM below this: x86_64's cores start on the boot
/// page tables, which map only the low 4 GiB.
const SLOTS_BELOW: u64 = 4 << 30;
/// Slots start on a block of the identity map, so that they take as few of the MMU's
/// page tables as can be.
const SLOTS_ALIGN: u64 = 2 << 20;

/// Where the secondary cores' slots are: one run per NUMA node when each node had room
/// for its own CPUs' slots below 4 GiB, else one run for all of them.
pub struct Slots {
    runs: [PhysRange; MAX_NODES],
    nodes: [NodeId; MAX_NODES],
    len: usize,
}

impl Slots {
    /// The runs of slots, which the caller maps and keeps from the allocator.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.runs[..self.len]
    }

    /// Each run with the node whose CPUs it holds the slots of; `None` for the one run
    /// of every CPU's slots that [`place_slots`] falls back to.
    pub fn per_node(&self) -> impl Iterator<Item = (Option<NodeId>, PhysRange)> + '_ {
        let local = self.len > 1 || self.nodes[0] != NodeId::MAX;
        (0..self.len).map(move |i| (local.then_some(self.nodes[i]), self.runs[i]))
    }
}

/// The largest room in the usable ranges of `map` that also lie in the ranges `within`
/// gives, below 4 GiB, starting on a [`SLOTS_ALIGN`] boundary where the range has room
/// past one.
fn largest_room<I: Iterator<Item = PhysRange>>(
    map: &NormalizedMap,
    within: impl Fn() -> I,
) -> PhysRange {
    map.usable()
        .iter()
        .flat_map(|r| {
            within().filter_map(move |w| {
                let (start, end) = (r.start.max(w.start), r.end.min(w.end).min(SLOTS_BELOW));
                let aligned = start.next_multiple_of(SLOTS_ALIGN);
                let start = if aligned < end { aligned } else { start };
                (start < end).then_some(PhysRange { start, end })
            })
        })
        .max_by_key(|r| r.size())
        .unwrap_or(PhysRange { start: 0, end: 0 })
}

/// Carves the secondary cores' slots (their stacks, exception stacks and guard pages:
/// `arch::SLOT_SIZE` each) for the `cpus` cores listed: each node's CPUs' from that
/// node's memory in `topology`, so that a core's stack is local to it, when every node
/// has room for its own below 4 GiB; else all of them out of the largest usable range of
/// `map` below 4 GiB, for as many as fit. Returns where they went, which the caller maps
/// and keeps from the allocator.
///
/// # Safety
/// Boot core, before the identity map is built and before any other core starts; the
/// usable ranges of `map` are RAM that nothing else uses.
pub unsafe fn place_slots(map: &NormalizedMap, cpus: usize, topology: &Topology) -> Slots {
    let mut slots = Slots {
        runs: [PhysRange { start: 0, end: 0 }; MAX_NODES],
        nodes: [NodeId::MAX; MAX_NODES],
        len: 0,
    };
    let node_cpus = |node| (1..cpus).filter(move |&c| topology.node_of_cpu(c) == node);
    for node in (0..topology.nodes().min(MAX_NODES)).filter(|&n| node_cpus(n).next().is_some()) {
        let room = largest_room(map, || topology.memory(node));
        let need = (node_cpus(node).count() * arch::SLOT_SIZE) as u64;
        if room.size() < need || slots.len == MAX_NODES {
            slots.len = 0;
            break;
        }
        slots.runs[slots.len] = PhysRange {
            start: room.start,
            end: room.start + need,
        };
        slots.nodes[slots.len] = node;
        slots.len += 1;
    }
    let placed: usize = (0..slots.len)
        .map(|i| node_cpus(slots.nodes[i]).count())
        .sum();
    if slots.len > 0 && placed == cpus.saturating_sub(1) {
        SLOTS.store(cpus, Relaxed);
        for (&run, &node) in slots.runs.iter().zip(&slots.nodes).take(slots.len) {
            // SAFETY: `run` is usable RAM of the map in this node's memory, disjoint from
            // every other node's run, which the caller hands to nothing else (the
            // caller's contract); boot core, before the map is built and others start.
            unsafe { arch::place_secondary_slots(run.start, node_cpus(node)) };
        }
        return slots;
    }
    let room = largest_room(map, || {
        core::iter::once(PhysRange {
            start: 0,
            end: u64::MAX,
        })
    });
    let fit = (1..=cpus)
        .rev()
        .find(|&n| arch::secondary_slots_size(n) <= room.size())
        .unwrap_or(1);
    // Plain stores: the MMU may be off.
    SLOTS.store(fit, Relaxed);
    let run = PhysRange {
        start: room.start,
        end: room.start + arch::secondary_slots_size(fit),
    };
    // SAFETY: `run` is usable RAM of the map, which the caller hands to nothing else
    // (the caller's contract); boot core, before the map is built and other cores start.
    unsafe { arch::place_secondary_slots(run.start, 1..fit) };
    Slots {
        runs: [run; MAX_NODES],
        nodes: [NodeId::MAX; MAX_NODES],
        len: usize::from(run.size() > 0),
    }
}

/// Why listed CPU `cpu` is not online, if it was listed and is not.
pub fn not_started(cpu: usize) -> Option<NotStarted> {
    NOT_STARTED.lock().0.get(cpu).copied().flatten()
}

/// How many CPUs the boot information listed (and kmem tried to start), the boot core
/// included.
pub fn listed() -> usize {
    NOT_STARTED.lock().1
}

/// Number of cores online, the boot core included.
pub fn online() -> usize {
    ONLINE.iter().filter(|c| c.load(Acquire)).count()
}

/// The logical ids of the cores online, in order. They need not be dense: a listed CPU
/// that did not start leaves its id unused, so code that pairs or rings cores up walks
/// these (or [`next_online`]) rather than `0..online()`.
pub fn online_ids() -> impl Iterator<Item = usize> + Clone {
    (0..MAX_CPUS).filter(|&c| ONLINE[c].load(Acquire))
}

/// The online core after `cpu` in id order, wrapping around: `cpu` itself when it is the
/// only one.
pub fn next_online(cpu: usize) -> usize {
    let mut after = online_ids().skip_while(|&c| c <= cpu);
    after.next().or_else(|| online_ids().next()).unwrap_or(cpu)
}

/// How many online CPUs have an id below `cpu`: an online CPU's rank among them.
pub fn online_below(cpu: usize) -> usize {
    ONLINE[..cpu.min(MAX_CPUS)]
        .iter()
        .filter(|c| c.load(Acquire))
        .count()
}

/// A secondary core's life once its MMU is on: announce itself, then run jobs forever.
pub fn secondary_loop(id: usize) -> ! {
    ONLINE[id].store(true, Release);
    loop {
        let job = match *MAILBOX[id].lock() {
            Slot::Posted(job) => Some(job),
            _ => None,
        };
        match job {
            Some(job) => {
                let r = job(id);
                *MAILBOX[id].lock() = Slot::Done(r);
                Cpu::wake_waiters();
            }
            None => Cpu::wait_for_event(),
        }
    }
}

/// Hands `job` to the highest-numbered online secondary core and returns at once, for work
/// that outlives the boot core (a board's result indicator keeps going after the boot
/// core has ended the machine — on hardware, "ended" just parks it). False when only the
/// boot core is online.
pub fn detach(job: Job) -> bool {
    let Some(c) = (1..MAX_CPUS).rev().find(|&c| ONLINE[c].load(Acquire)) else {
        return false;
    };
    *MAILBOX[c].lock() = Slot::Posted(job);
    Cpu::wake_waiters();
    true
}

/// Runs `job` on every online core at once (the boot core included) and returns the
/// first failure.
pub fn run_on_all(job: Job) -> Result<(), &'static str> {
    let cpus = (1..MAX_CPUS).filter(|&c| ONLINE[c].load(Acquire));
    for c in cpus.clone() {
        *MAILBOX[c].lock() = Slot::Posted(job);
    }
    Cpu::wake_waiters();
    let mut result = job(0);
    let deadline = Deadline::after_us(JOB_TIMEOUT_MS * 1000);
    for c in cpus {
        let mut r = Ok(());
        deadline
            .wait(|| {
                let mut slot = MAILBOX[c].lock();
                let Slot::Done(done) = *slot else {
                    return false;
                };
                *slot = Slot::Idle;
                r = done;
                true
            })
            .map_err(|_| "a secondary cpu did not finish its job in time")?;
        result = result.and(r);
    }
    result
}
