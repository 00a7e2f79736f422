//! Log capture for component tests: the lines a test's code logs (info and above), kept per
//! thread, so a test can assert what it logged and how many lines. Each test runs on its own
//! thread, so tests running in parallel do not see each other's lines.
//!
//! Lines logged by threads a test starts (store workers, say) are not its own: the last
//! [`SHARED_KEEP`] lines of every thread are also kept together, for [`take_matching`].
//!
//! The first [`capture`] in a test binary installs the capturing logger for the whole
//! process; a binary that installed another logger cannot capture.

use std::cell::RefCell;

thread_local! {
    static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Lines kept from all threads together.
pub const SHARED_KEEP: usize = 10_000;

static SHARED: std::sync::Mutex<std::collections::VecDeque<(log::Level, String)>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = r.args().to_string();
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if shared.len() == SHARED_KEEP {
                shared.pop_front();
            }
            shared.push_back((r.level(), line.clone()));
            drop(shared);
            LINES.with(|l| l.borrow_mut().push((r.level(), line)));
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

/// Takes, from the lines of every thread, those at `level` or above that contain `needle`
/// (a name only this test uses: tests run in parallel).
pub fn take_matching(level: log::Level, needle: &str) -> Vec<String> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    shared.retain(|(l, s)| {
        if *l <= level && s.contains(needle) {
            out.push(s.clone());
            false
        } else {
            true
        }
    });
    out
}
