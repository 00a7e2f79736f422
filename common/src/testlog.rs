//! Log capture for component tests: the lines a test's code logs (info and above), kept per
//! thread, so a test can assert what it logged and how many lines. Each test runs on its own
//! thread, so tests running in parallel do not see each other's lines.
//!
//! The first [`capture`] in a test binary installs the capturing logger for the whole
//! process; a binary that installed another logger cannot capture.

use std::cell::RefCell;

thread_local! {
    static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            LINES.with(|l| l.borrow_mut().push((r.level(), r.args().to_string())));
        }
    }
    fn flush(&self) {}
}

/// Starts capturing (once per process; later calls do nothing) and forgets what this thread
/// captured so far.
pub fn capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
    take();
}

/// Takes the lines this thread logged since the last take, with their levels.
pub fn take() -> Vec<(log::Level, String)> {
    LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Takes the lines this thread logged at `level` or above (warn: warn and error).
pub fn take_at(level: log::Level) -> Vec<String> {
    take()
        .into_iter()
        .filter(|(l, _)| *l <= level)
        .map(|(_, s)| s)
        .collect()
}
