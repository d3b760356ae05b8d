//! Self-tests of what the boot made of its inputs: every CPU the boot information listed
//! is online or was reported with the reason it is not, and the online set is what the
//! jobs run on; boot arguments that are not UTF-8 or too long are repaired or cut as
//! `bsp::bootargs` says.

use crate::arch::cpu::MAX_CPUS;
use crate::bsp::bootargs::{replace_invalid, whole_words};

use super::{pages, smp};

type R = Result<(), &'static str>;

fn ensure(ok: bool, reason: &'static str) -> R {
    if ok { Ok(()) } else { Err(reason) }
}

/// Each listed CPU is either online or has a reason it is not (never both, never
/// neither); nothing past the list is online; the boot core is; every online id has a
/// per-CPU slot in the allocator; and [`smp::next_online`] rings through exactly the
/// online cores — what the tests that hand work to a neighbour rely on.
pub fn smp_cpus_accounted() -> R {
    let listed = smp::listed();
    let online = |c: usize| smp::online_ids().any(|o| o == c);
    for c in 0..MAX_CPUS {
        let (up, reported) = (online(c), smp::not_started(c).is_some());
        let ok = if c < listed {
            up != reported
        } else {
            !up && !reported
        };
        ensure(
            ok,
            "a listed cpu is both online and reported (or neither), or one past the list is online",
        )?;
    }
    ensure(online(0), "the boot cpu is not online")?;
    ensure(
        smp::online_ids().all(|c| c < listed && c < pages().nr_cpus()),
        "an online cpu has no place in the list or in the allocator",
    )?;
    let mut cpu = 0;
    for _ in 0..smp::online() {
        cpu = smp::next_online(cpu);
        ensure(online(cpu), "next_online gave a cpu that is not online")?;
    }
    ensure(
        cpu == 0,
        "next_online does not ring through the online cpus once",
    )
}

/// Bytes that are not UTF-8 — a stray byte, a truncated sequence in the middle and at the
/// end — become one `?` each and the rest of the line stays; a line cut at a limit keeps
/// whole words only.
pub fn bootargs_repaired_and_cut() -> R {
    let mut line = *b"selftest \xff kmem.debug=F \xe2\x82 x \xf0\x9f";
    let (count, first) = replace_invalid(&mut line);
    ensure(
        &line == b"selftest ? kmem.debug=F ?? x ??" && (count, first) == (5, 9),
        "bytes that are not UTF-8 were not each replaced by '?'",
    )?;
    let mut fine = *b"caf\xc3\xa9 ok";
    ensure(
        replace_invalid(&mut fine).0 == 0 && &fine == b"caf\xc3\xa9 ok",
        "valid UTF-8 was changed",
    )?;
    for (bytes, limit, kept) in [
        (&b"aa bb cc"[..], 5, 5),
        (b"aa bbcc", 5, 2),
        (b"aaaaaaa", 3, 3),
        (b"aa bb", 9, 5),
        (b"aa\tbb cc", 4, 2),
    ] {
        ensure(
            whole_words(bytes, limit) == kept,
            "a cut command line does not end at a whole word",
        )?;
    }
    Ok(())
}
