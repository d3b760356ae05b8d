//! Recoverable faults: what an ISA's exception entry knows about a faulting data access
//! ([`Fault`]), and the one place that asks the firmware's fault detectors whether the
//! fault is theirs ([`handle`]). A detector that recognises a fault reports it and makes
//! the access safe to retry; any other fault stays fatal, and the ISA reports it as an
//! unexpected exception. Board- and ISA-independent: each ISA decodes its syndrome into
//! a [`Fault`].

/// A data access that faulted.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The address accessed, as the access gave it (with its tag bits where the ISA keeps
    /// them).
    pub addr: usize,
    /// Whether the access read or wrote.
    pub access: Access,
    /// The address of the faulting instruction.
    pub pc: usize,
    /// Why the access faulted.
    pub kind: FaultKind,
}

/// The direction of a faulting access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why an access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No translation for the address (an unmapped or guard page).
    NotMapped,
    /// The translation forbids the access.
    Permission,
    /// The pointer's tag differs from the memory's (a memory-tagging check, synchronous).
    TagCheck,
}

/// The detectors, asked in this order; each returns true when the fault was its own, it
/// reported it, and the faulting access may now be retried.
const DETECTORS: &[fn(&Fault) -> bool] = &[
    #[cfg(target_arch = "aarch64")]
    crate::arch::aarch64::mte_fault::handle,
    crate::kfence::detect,
];

/// Asks every detector about `fault`: true when one reported it and made the access safe
/// to retry, false when it is no detector's (the caller then reports it as fatal).
pub fn handle(fault: &Fault) -> bool {
    DETECTORS.iter().any(|detector| detector(fault))
}
