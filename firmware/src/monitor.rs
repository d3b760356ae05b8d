//! The monitor: a command line on the console for looking at and poking the allocator.
//!
//! Bad input is refused with a message that says what was wrong, never cut, wrapped or
//! ignored: numbers are read as 64-bit and checked against what each argument allows
//! (`pages 11`: "invalid order 11 (0–10)"), cache names must name a cache, words a command
//! does not take are errors, and an over-long line or one with a non-ASCII byte is
//! refused whole.

use core::fmt;

use crate::arch::cpu::{Cpu, Isa};
use crate::bsp::console;
use crate::unchecked::{KmemAny, PagesAny};
use crate::{print, println};
use kmem::Gfp;
use kmem::mm::numa::MAX_NODES;
use kmem::mm::{BuddyInfo, MAX_ORDER, NumaStat};
use kmem::slab::{CacheName, DebugFlags, NAME_MAX};

use super::{kmem, pages, workload};

const HELP: &str = "\
commands:
  help                     this list
  meminfo                  zones, free and used pages, slab pages, descriptor overhead,
                           the sampled guard pages (kfence)
  buddyinfo                free blocks per order and zone (per node on several)
  numastat                 per node: managed and free pages, local and remote
                           allocations, remote frees, slab objects
  slabinfo [all]           caches in use (or all) in /proc/slabinfo form, and kfence's
                           line
  kmalloc <size> [flags]   allocate, print the address; flags: zero dma dma32 atomic
  kfree <addr>             free a kmalloc block (a bad address prints the error)
  stress [seconds]         mixed kmalloc/kfree on every cpu, cross-cpu frees (1-3600 s,
                           default 2)
  bench                    kmem against talc and linked_list_allocator on every cpu
  validate [cache]         walk every cache (or one): lists, arrays, red zones, poison
  debug <FZPU|-> [cache]   set the debug flags of every cache (or one) that holds no
                           objects once drained (F checks, Z red zones, P poison,
                           U owners; - none); caches holding objects are listed
  failslab <n> [cache]     make every nth slab allocation (of one cache) fail; 0 stops
                           (n up to 4294967295)
  options                  the allocator options in force (from the command line)
  reap                     drain idle magazines, release empty slabs
  shrink                   drain every array and release every empty slab
  pages <order>            allocate 2^order pages (order 0-10), print the address
  free <addr> <order>      free a block allocated with `pages`
  hotplug [add|remove <start> <end>]
                           list memory regions added at run time and the range held
                           back at boot; add a part of that range, or remove a region
  poweroff                 end the machine (QEMU exits with status 0)";

/// Longest command line accepted.
const LINE: usize = 128;

/// Longest `stress` run, in seconds.
const MAX_STRESS_SECONDS: u64 = 3600;

/// Reads commands forever (until `poweroff`). A line that is too long, or holds a byte
/// that is not printable ASCII, is refused whole with a message saying why: running the
/// part that fitted could run a different command than the one typed.
pub fn run() -> ! {
    println!("monitor: type `help` for commands");
    let mut buf = [0u8; LINE];
    loop {
        print!("kmem> ");
        match read_line(&mut buf) {
            Line::Ok(n) => {
                // Only printable ASCII is stored, so the line is valid UTF-8.
                let line = core::str::from_utf8(&buf[..n]).unwrap_or("");
                if let Err(e) = execute(line) {
                    println!("{e}");
                }
            }
            Line::TooLong(n) => {
                println!("line ignored: {n} characters long, at most {LINE} are accepted")
            }
            Line::BadByte(b) => {
                println!("line ignored: it holds the byte {b:#04x}, which is not printable ASCII")
            }
        }
    }
}

/// What [`read_line`] read.
enum Line {
    /// A line of this many bytes, in the buffer.
    Ok(usize),
    /// A line of this many characters, more than the buffer holds.
    TooLong(usize),
    /// A line holding this byte (the first such), neither printable ASCII nor an editing
    /// key.
    BadByte(u8),
}

/// Line input with echo and backspace. A tab counts as a space; the characters past the
/// buffer are echoed and counted (backspace takes them back) but not kept.
fn read_line(buf: &mut [u8]) -> Line {
    let (mut typed, mut bad) = (0usize, None);
    loop {
        match console::read_byte() {
            b'\r' | b'\n' => {
                println!();
                return match bad {
                    Some(b) => Line::BadByte(b),
                    None if typed > buf.len() => Line::TooLong(typed),
                    None => Line::Ok(typed),
                };
            }
            0x08 | 0x7f => {
                if typed > 0 {
                    typed -= 1;
                    print!("\x08 \x08");
                }
            }
            b @ (b'\t' | 0x20..=0x7e) => {
                let b = if b == b'\t' { b' ' } else { b };
                if let Some(slot) = buf.get_mut(typed) {
                    *slot = b;
                }
                typed += 1;
                print!("{}", b as char);
            }
            b => {
                bad.get_or_insert(b);
            }
        }
    }
}

/// Why a command line cannot run.
#[derive(Debug)]
enum Refused<'a> {
    /// A word that is not a number in the forms accepted.
    NotANumber(&'a str),
    /// A number outside what the argument allows (name, value, lowest, highest).
    Range(&'static str, u64, u64, u64),
    /// An argument the command does not take.
    Extra(&'a str, &'static str),
    /// A required argument left out: the command's usage.
    Missing(&'static str),
    UnknownFlag(&'a str),
    BadDebugFlags(&'a str),
    NoCache(&'a str),
    BadCacheName(&'a str),
    UnknownCommand(&'a str),
}

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotANumber(w) => write!(
                f,
                "`{w}` is not a number (decimal, or hex after 0x) that fits in 64 bits"
            ),
            Refused::Range(what, v, lo, hi) => write!(f, "invalid {what} {v} ({lo}–{hi})"),
            Refused::Extra(w, usage) => write!(f, "unexpected `{w}`; usage: {usage}"),
            Refused::Missing(usage) => write!(f, "usage: {usage}"),
            Refused::UnknownFlag(w) => {
                write!(f, "unknown flag `{w}` (flags: zero dma dma32 atomic)")
            }
            Refused::BadDebugFlags(w) => write!(
                f,
                "`{w}` is not a set of debug flags (F Z P U, or - for none)"
            ),
            Refused::NoCache(name) => {
                write!(f, "no cache named `{name}` (`slabinfo all` lists them)")
            }
            Refused::BadCacheName(name) => {
                write!(f, "`{name}` cannot be a cache name (1 to {NAME_MAX} bytes)")
            }
            Refused::UnknownCommand(cmd) => write!(f, "unknown command `{cmd}`; `help` lists them"),
        }
    }
}

/// `word` as a number: decimal, or hexadecimal after `0x`, at most `u64::MAX`.
fn number(word: &str) -> Result<u64, Refused<'_>> {
    let n = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => word.parse(),
    };
    n.map_err(|_| Refused::NotANumber(word))
}

/// `word` as a number in `lo..=hi`, called `what` in the message when it is not.
fn in_range<'a>(word: &'a str, what: &'static str, lo: u64, hi: u64) -> Result<u64, Refused<'a>> {
    let n = number(word)?;
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(Refused::Range(what, n, lo, hi))
    }
}

/// A page-block order, 0..=MAX_ORDER.
fn order(word: &str) -> Result<u32, Refused<'_>> {
    in_range(word, "order", 0, u64::from(MAX_ORDER)).map(|o| o as u32)
}

/// The flags named in `words` (`zero dma dma32 atomic`), or the first unknown word.
fn flags<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Gfp, Refused<'a>> {
    words.try_fold(Gfp::KERNEL, |gfp, w| match w {
        "zero" => Ok(gfp | Gfp::ZERO),
        "dma" => Ok(gfp | Gfp::DMA),
        "dma32" => Ok(gfp | Gfp::DMA32),
        "atomic" => Ok(gfp | Gfp::ATOMIC),
        other => Err(Refused::UnknownFlag(other)),
    })
}

/// The name of an existing cache.
fn cache(name: &str) -> Result<CacheName, Refused<'_>> {
    let c = CacheName::new(name).map_err(|_| Refused::BadCacheName(name))?;
    let mut found = false;
    kmem().for_each_cache(|k| found |= k.name() == c);
    if found {
        Ok(c)
    } else {
        Err(Refused::NoCache(name))
    }
}

/// The words of a command line after the command, taken one by one against its usage.
struct Args<'a> {
    words: core::str::SplitWhitespace<'a>,
    usage: &'static str,
}

impl<'a> Args<'a> {
    fn required(&mut self) -> Result<&'a str, Refused<'a>> {
        self.words.next().ok_or(Refused::Missing(self.usage))
    }

    fn optional(&mut self) -> Option<&'a str> {
        self.words.next()
    }

    /// Ends the arguments: a word left over is an error, not something to ignore.
    fn end(&mut self) -> Result<(), Refused<'a>> {
        match self.words.next() {
            Some(w) => Err(Refused::Extra(w, self.usage)),
            None => Ok(()),
        }
    }
}

/// The usage line of each command that takes arguments (as `help` shows it).
fn usage(cmd: &str) -> &'static str {
    match cmd {
        "slabinfo" => "slabinfo [all]",
        "kmalloc" => "kmalloc <size> [zero|dma|dma32|atomic]...",
        "kfree" => "kfree <addr>",
        "stress" => "stress [seconds]",
        "validate" => "validate [cache]",
        "debug" => "debug <FZPU|-> [cache]",
        "failslab" => "failslab <n> [cache]",
        "pages" => "pages <order>",
        "free" => "free <addr> <order>",
        "hotplug" => "hotplug [add|remove <start> <end>]",
        "help" => "help",
        "meminfo" => "meminfo",
        "buddyinfo" => "buddyinfo",
        "numastat" => "numastat",
        "bench" => "bench",
        "options" => "options",
        "reap" => "reap",
        "shrink" => "shrink",
        "poweroff" => "poweroff",
        _ => "",
    }
}

fn execute(line: &str) -> Result<(), Refused<'_>> {
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Ok(());
    };
    let mut a = Args {
        words,
        usage: usage(cmd),
    };
    match cmd {
        "help" => {
            a.end()?;
            println!("{HELP}");
        }
        "meminfo" => {
            a.end()?;
            print!("{}", kmem().meminfo());
            Cpu::print_memory_tagging();
            crate::kfence::print_state();
        }
        "buddyinfo" => {
            a.end()?;
            print!("{}", BuddyInfo(&pages().info()));
        }
        "numastat" => {
            a.end()?;
            print_numastat();
        }
        "slabinfo" => {
            let all = match a.optional() {
                None => false,
                Some("all") => true,
                Some(w) => return Err(Refused::Extra(w, a.usage)),
            };
            a.end()?;
            workload::print_slabinfo(all);
            Cpu::print_memory_tagging();
            crate::kfence::print_state();
        }
        "kmalloc" => {
            let size = number(a.required()?)?;
            let gfp = flags(a.words)?;
            match kmem().kmalloc(size as usize, gfp) {
                Ok(p) => println!("{:#x}", p.as_ptr() as usize),
                Err(e) => println!("error: {e}"),
            }
        }
        "kfree" => {
            let addr = number(a.required()?)?;
            a.end()?;
            match kmem().kfree_any(addr as *mut u8) {
                Ok(()) => println!("freed"),
                Err(e) => println!("error: {e}"),
            }
        }
        "stress" => {
            let secs = match a.optional() {
                Some(w) => in_range(w, "seconds", 1, MAX_STRESS_SECONDS)?,
                None => 2,
            };
            a.end()?;
            match workload::run(secs, 0, workload::mixed) {
                Ok((ops, remote)) => println!(
                    "stress: {ops} steps in {secs} s on {} cpus, {remote} cross-cpu frees",
                    super::smp::online()
                ),
                Err(e) => println!("stress: FAILED: {e}"),
            }
        }
        "validate" => {
            let name = a.optional();
            a.end()?;
            match kmem().validate(name) {
                Some(0) => println!("validate: no problems"),
                Some(n) => println!("validate: {n} problems (reported above)"),
                None => return Err(Refused::NoCache(name.unwrap_or_default())),
            }
        }
        "failslab" => {
            let n = in_range(a.required()?, "interval", 0, u64::from(u32::MAX))? as u32;
            let name = a.optional().map(cache).transpose()?;
            a.end()?;
            kmem().set_failslab(n, name);
            match (n, name) {
                (0, _) => println!("failslab: off"),
                (n, None) => println!("failslab: every {n}th slab allocation fails"),
                (n, Some(c)) => println!(
                    "failslab: every {n}th slab allocation of {} fails",
                    c.as_str()
                ),
            }
        }
        "debug" => {
            let word = a.required()?;
            let flags = DebugFlags::parse(word).ok_or(Refused::BadDebugFlags(word))?;
            let name = a.optional();
            a.end()?;
            match kmem().set_debug(name, flags) {
                Some((changed, 0)) => println!("debug: {flags} on {changed} caches"),
                Some((changed, left)) => println!(
                    "debug: {flags} on {changed} caches; {left} hold objects and \
                     keep their flags (listed above; `shrink` or free them first)"
                ),
                None => return Err(Refused::NoCache(name.unwrap_or_default())),
            }
        }
        "options" => {
            a.end()?;
            println!("{:?}", kmem().options());
        }
        "bench" => {
            a.end()?;
            if let Err(e) = super::bench::run() {
                println!("bench: FAILED: {e}");
            }
        }
        "reap" => {
            a.end()?;
            let (objs, pages) = kmem().reap();
            println!("reap: {objs} objects drained, {pages} pages released");
        }
        "shrink" => {
            a.end()?;
            println!("shrink: {} pages released", kmem().shrink_all());
        }
        "pages" => {
            let order = order(a.required()?)?;
            a.end()?;
            match kmem().alloc_pages(order, Gfp::KERNEL) {
                Ok(pa) => println!("{pa:#x}"),
                Err(e) => println!("error: {e}"),
            }
        }
        "free" => {
            let addr = number(a.required()?)?;
            let order = order(a.required()?)?;
            a.end()?;
            match pages().free_pages_any(addr, order) {
                Ok(()) => println!("freed"),
                Err(e) => println!("error: {e}"),
            }
        }
        "hotplug" => match a.optional() {
            None => {
                match super::hotplug::held_back() {
                    Some(h) => println!("held back at boot: {h}"),
                    None => println!("held back at boot: nothing"),
                }
                let mut n = 0;
                pages().for_each_region(|r| {
                    n += 1;
                    println!("region {r} {} KiB", r.size() / 1024);
                });
                println!("{n} regions added at run time");
            }
            Some(verb @ ("add" | "remove")) => {
                let start = number(a.required()?)?;
                let end = number(a.required()?)?;
                a.end()?;
                let range = kmem::PhysRange { start, end };
                let r = if verb == "add" {
                    super::hotplug::add(range).map_err(|e| alloc::format!("{e}"))
                } else {
                    kmem()
                        .remove_region(range)
                        .map_err(|e| alloc::format!("{e}"))
                };
                match r {
                    Ok(()) => println!("hotplug: {verb} {range}: done"),
                    Err(e) => println!("hotplug: {verb} {range}: refused: {e}"),
                }
            }
            Some(w) => return Err(Refused::Extra(w, a.usage)),
        },
        "poweroff" => {
            a.end()?;
            Cpu::exit(0)
        }
        _ => return Err(Refused::UnknownCommand(cmd)),
    }
    Ok(())
}

/// `numastat`: the page allocator's per-node table, then the slab objects on each node
/// (objects of the slabs whose pages lie there, free or in use).
fn print_numastat() {
    let info = pages().info();
    print!("{}", NumaStat(&info));
    let mut objects = [0usize; MAX_NODES];
    kmem().slabinfo(|i| {
        for (o, slabs) in objects.iter_mut().zip(i.node_slabs) {
            *o += slabs * i.objperslab;
        }
    });
    print!("slab objects:");
    for o in &objects[..info.nr_nodes] {
        print!(" {o}");
    }
    println!();
}
