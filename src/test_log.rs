//! Test support: captures `log` records so tests can check what kmem reported.

use std::sync::Mutex;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        LOG.lock().unwrap().push(r.args().to_string());
    }
    fn flush(&self) {}
}

/// Starts capturing (idempotent).
pub fn capture() {
    let _ = log::set_logger(&Capture);
    log::set_max_level(log::LevelFilter::Warn);
}

/// Whether any captured line contains every one of `needles`.
pub fn logged(needles: &[&str]) -> bool {
    LOG.lock()
        .unwrap()
        .iter()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}
