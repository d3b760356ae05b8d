//! The monitor: a command line on the console for looking at and poking the allocator.

use crate::arch::cpu::{Cpu, Isa};
use crate::bsp::console;
use crate::unchecked::{KmemAny, PagesAny};
use crate::{print, println};
use kmem::Gfp;
use kmem::mm::BuddyInfo;
use kmem::slab::CacheName;
use kmem::slab::DebugFlags;

use super::{kmem, pages, workload};

const HELP: &str = "\
commands:
  help                     this list
  meminfo                  zones, free and used pages, slab pages, descriptor overhead
  buddyinfo                free blocks per order and zone
  slabinfo [all]           caches in use (or all) in /proc/slabinfo form
  kmalloc <size> [flags]   allocate, print the address; flags: zero dma dma32 atomic
  kfree <addr>             free a kmalloc block (a bad address prints the error)
  stress [seconds]         mixed kmalloc/kfree on every cpu, cross-cpu frees (default 2)
  bench                    kmem against talc and linked_list_allocator on every cpu
  validate [cache]         walk every cache (or one): lists, arrays, red zones, poison
  debug <FZPU|-> [cache]   set the debug flags of every cache (or one) that holds no
                           objects once drained (F checks, Z red zones, P poison,
                           U owners; - none); caches holding objects are listed
  failslab <n> [cache]     make every nth slab allocation (of one cache) fail; 0 stops
  options                  the allocator options in force (from the command line)
  reap                     drain idle per-CPU arrays, release empty slabs
  shrink                   drain every array and release every empty slab
  pages <order>            allocate 2^order pages, print the address
  free <addr> <order>      free a block allocated with `pages`
  poweroff                 end the machine (QEMU exits with status 0)";

/// Longest command line accepted.
const LINE: usize = 128;

/// Reads commands forever (until `poweroff`).
pub fn run() -> ! {
    println!("monitor: type `help` for commands");
    let mut buf = [0u8; LINE];
    loop {
        print!("kmem> ");
        let n = read_line(&mut buf);
        // Only ASCII is echoed into the buffer, so it is always valid UTF-8.
        let line = core::str::from_utf8(&buf[..n]).unwrap_or("");
        execute(line);
    }
}

/// Line input with echo and backspace; returns the length.
fn read_line(buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        match console::read_byte() {
            b'\r' | b'\n' => {
                println!();
                return n;
            }
            0x08 | 0x7f if n > 0 => {
                n -= 1;
                print!("\x08 \x08");
            }
            b @ 0x20..=0x7e if n < buf.len() => {
                buf[n] = b;
                n += 1;
                print!("{}", b as char);
            }
            _ => {}
        }
    }
}

fn parse(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The flags named in `words` (`zero dma dma32 atomic`), or the first unknown word.
fn flags<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Gfp, &'a str> {
    words.try_fold(Gfp::KERNEL, |gfp, w| match w {
        "zero" => Ok(gfp | Gfp::ZERO),
        "dma" => Ok(gfp | Gfp::DMA),
        "dma32" => Ok(gfp | Gfp::DMA32),
        "atomic" => Ok(gfp | Gfp::ATOMIC),
        other => Err(other),
    })
}

fn execute(line: &str) {
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else { return };
    let rest = words.clone();
    let args = (words.next().and_then(parse), words.next().and_then(parse));
    match (cmd, args) {
        ("help", _) => println!("{HELP}"),
        ("meminfo", _) => print!("{}", kmem().meminfo()),
        ("buddyinfo", _) => print!("{}", BuddyInfo(&pages().info())),
        ("slabinfo", _) => workload::print_slabinfo(rest.clone().any(|w| w == "all")),
        ("kmalloc", (Some(size), _)) => match flags(rest.skip(1)) {
            Ok(gfp) => match kmem().kmalloc(size as usize, gfp) {
                Ok(p) => println!("{:#x}", p.as_ptr() as usize),
                Err(e) => println!("error: {e}"),
            },
            Err(w) => println!("unknown flag `{w}` (flags: zero dma dma32 atomic)"),
        },
        ("kfree", (Some(addr), None)) => match kmem().kfree_any(addr as *mut u8) {
            Ok(()) => println!("freed"),
            Err(e) => println!("error: {e}"),
        },
        ("stress", (secs, None)) => {
            let secs = secs.unwrap_or(2).max(1);
            match workload::run(secs, 0, workload::mixed) {
                Ok((ops, remote)) => println!(
                    "stress: {ops} steps in {secs} s on {} cpus, {remote} cross-cpu frees",
                    super::smp::online()
                ),
                Err(e) => println!("stress: FAILED: {e}"),
            }
        }
        ("validate", _) => match kmem().validate(rest.clone().next()) {
            Some(0) => println!("validate: no problems"),
            Some(n) => println!("validate: {n} problems (reported above)"),
            None => println!("validate: no cache named that"),
        },
        ("failslab", (Some(n), _)) => {
            let cache = rest.clone().nth(1).map(CacheName::new);
            match cache.transpose() {
                Ok(c) => {
                    kmem().set_failslab(n as u32, c);
                    println!("failslab: every {n}th allocation fails (0: off)");
                }
                Err(e) => println!("error: {e}"),
            }
        }
        ("debug", _) => {
            let mut words = rest.clone();
            match words.next().map(DebugFlags::parse) {
                Some(Some(flags)) => match kmem().set_debug(words.next(), flags) {
                    Some((changed, 0)) => println!("debug: {flags} on {changed} caches"),
                    Some((changed, left)) => println!(
                        "debug: {flags} on {changed} caches; {left} hold objects and \
                         keep their flags (listed above; `shrink` or free them first)"
                    ),
                    None => println!("debug: no cache named that"),
                },
                _ => println!("usage: debug <FZPU|-> [cache]"),
            }
        }
        ("options", _) => println!("{:?}", kmem().options()),
        ("bench", _) => {
            if let Err(e) = super::bench::run() {
                println!("bench: FAILED: {e}");
            }
        }
        ("reap", _) => {
            let (objs, pages) = kmem().reap();
            println!("reap: {objs} objects drained, {pages} pages released");
        }
        ("shrink", _) => println!("shrink: {} pages released", kmem().shrink_all()),
        ("pages", (Some(order), None)) => match kmem().alloc_pages(order as u32, Gfp::KERNEL) {
            Ok(pa) => println!("{pa:#x}"),
            Err(e) => println!("error: {e}"),
        },
        ("free", (Some(addr), Some(order))) => match pages().free_pages_any(addr, order as u32) {
            Ok(()) => println!("freed"),
            Err(e) => println!("error: {e}"),
        },
        ("poweroff", _) => Cpu::exit(0),
        ("kmalloc" | "kfree" | "pages" | "free" | "stress" | "failslab", _) => {
            println!("usage: see `help`")
        }
        _ => println!("unknown command `{cmd}`; `help` lists them"),
    }
}
