//! Bounded logging of what a remote peer can repeat: a client's refused calls, a server
//! peer's bad packets, messages for entities that never turn up.
//!
//! A peer that keeps misbehaving must cost a bounded number of log lines, never one per
//! message. [`PeerLog`] lets the first [`FULL_LINES`] problems be logged in full and counts the
//! later ones by kind ([`KindCounts`]), for one summary line when the peer goes;
//! [`WindowLog`] does the same per window of time, for peers that stay (or problems that have
//! no peer to wait for). The caller logs: these types only decide, so a problem that is only
//! counted costs no formatting.
//!
//! Pure bookkeeping: time comes in as an argument.

use std::fmt;
use std::time::{Duration, Instant};

/// Problems a peer gets logged in full before the rest are only counted.
pub const FULL_LINES: u32 = 3;
/// Kinds a count names; the rest are counted together as "others".
pub const NAMED_KINDS: usize = 8;

/// Counts by kind: the first [`NAMED_KINDS`] kinds by name, the rest together, so a peer that
/// varies what it sends cannot grow the count. Displays as `kind x3, other kind x1, others x2`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KindCounts {
    total: u64,
    kinds: Vec<(String, u64)>,
}

impl KindCounts {
    /// Counts one of `kind`.
    pub fn add(&mut self, kind: &str) {
        self.total += 1;
        if let Some(k) = self.kinds.iter_mut().find(|(n, _)| n == kind) {
            k.1 += 1;
        } else if self.kinds.len() < NAMED_KINDS {
            self.kinds.push((kind.to_string(), 1));
        }
    }

    /// How many were counted, of every kind.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True if nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl fmt::Display for KindCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut named = 0;
        for (i, (kind, n)) in self.kinds.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{kind} x{n}")?;
            named += n;
        }
        if named < self.total {
            if named > 0 {
                f.write_str(", ")?;
            }
            write!(f, "others x{}", self.total - named)?;
        }
        Ok(())
    }
}

/// The log lines one peer's problems may cost: the first [`FULL_LINES`] in full, the rest
/// counted by kind and summarised once ([`PeerLog::take_summary`], when the peer goes).
#[derive(Debug, Default, Clone)]
pub struct PeerLog {
    logged: u32,
    quiet: KindCounts,
}

impl PeerLog {
    /// Notes one problem of `kind`: true if the caller is to log it in full, false if it was
    /// only counted.
    pub fn note(&mut self, kind: &str) -> bool {
        if self.logged < FULL_LINES {
            self.logged += 1;
            return true;
        }
        self.quiet.add(kind);
        false
    }

    /// Problems counted and not logged since the last summary.
    pub fn quiet(&self) -> u64 {
        self.quiet.total()
    }

    /// What was counted and not logged, as `12 more not logged (bad arguments x7, …)`, or
    /// `None`; the next problems are logged in full again.
    pub fn take_summary(&mut self) -> Option<String> {
        let quiet = std::mem::take(self).quiet;
        (!quiet.is_empty()).then(|| format!("{} more not logged ({quiet})", quiet.total()))
    }
}

/// A [`PeerLog`] per window of time: the first [`FULL_LINES`] problems of a window are logged
/// in full, the rest counted; once the window is over, [`WindowLog::roll`] hands out its
/// summary and the next problem opens a new window.
#[derive(Debug, Clone)]
pub struct WindowLog {
    log: PeerLog,
    len: Duration,
    /// When the current window opened (its first problem), if one is open.
    opened: Option<Instant>,
}

impl WindowLog {
    /// A log whose windows last `len`.
    pub fn new(len: Duration) -> WindowLog {
        WindowLog {
            log: PeerLog::default(),
            len,
            opened: None,
        }
    }

    /// Notes one problem of `kind` at `now`: true if the caller is to log it in full. Call
    /// [`WindowLog::roll`] first, so a window that is over is summarised before it.
    pub fn note(&mut self, now: Instant, kind: &str) -> bool {
        self.opened.get_or_insert(now);
        self.log.note(kind)
    }

    /// Ends the window if it is over at `now`: returns its summary if it counted anything.
    pub fn roll(&mut self, now: Instant) -> Option<String> {
        let over = self.opened.is_some_and(|t| now >= t + self.len);
        if !over {
            return None;
        }
        self.opened = None;
        self.log.take_summary()
    }

    /// Ends the window now (its peer is going): returns its summary if it counted anything.
    pub fn take_summary(&mut self) -> Option<String> {
        self.opened = None;
        self.log.take_summary()
    }

    /// When the open window ends, if it has counted anything (a summary is owed then).
    pub fn summary_due(&self) -> Option<Instant> {
        self.opened
            .filter(|_| self.log.quiet() > 0)
            .map(|t| t + self.len)
    }

    /// Problems counted and not logged in the open window.
    pub fn quiet(&self) -> u64 {
        self.log.quiet()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_counts_name_the_first_kinds_and_lump_the_rest() {
        let mut k = KindCounts::default();
        assert_eq!(k.to_string(), "");
        for i in 0..12 {
            k.add(if i < 3 { "same" } else { "x" });
        }
        assert_eq!(k.to_string(), "same x3, x x9");
        let mut k = KindCounts::default();
        for i in 0..(NAMED_KINDS + 3) {
            k.add(&format!("k{i}"));
        }
        assert_eq!(k.total(), NAMED_KINDS as u64 + 3);
        assert!(k.to_string().ends_with("k7 x1, others x3"), "{k}");
    }

    #[test]
    fn a_peer_log_logs_the_first_lines_then_counts_then_summarises_once() {
        let mut p = PeerLog::default();
        let full: Vec<bool> = (0..10)
            .map(|i| p.note(if i % 2 == 0 { "even" } else { "odd" }))
            .collect();
        assert_eq!(full.iter().filter(|f| **f).count(), FULL_LINES as usize);
        assert!(full[..FULL_LINES as usize].iter().all(|f| *f));
        assert_eq!(p.quiet(), 7);
        assert_eq!(
            p.take_summary().as_deref(),
            Some("7 more not logged (odd x4, even x3)")
        );
        assert_eq!(p.take_summary(), None, "summarised once");
        assert!(p.note("again"), "a new round is logged in full");
    }

    #[test]
    fn a_window_log_summarises_each_window_that_counted_something() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = WindowLog::new(Duration::from_secs(60));
        assert_eq!(w.roll(t0), None);
        let full = (0..5).filter(|_| w.note(t0, "k")).count();
        assert_eq!(full, FULL_LINES as usize);
        assert_eq!(w.summary_due(), Some(t0 + 60 * s));
        assert_eq!(w.roll(t0 + 59 * s), None, "not over yet");
        assert_eq!(
            w.roll(t0 + 60 * s).as_deref(),
            Some("2 more not logged (k x2)")
        );
        assert_eq!(w.summary_due(), None);
        // A quiet window owes nothing.
        assert!(w.note(t0 + 61 * s, "k"));
        assert_eq!(w.summary_due(), None);
        assert_eq!(w.roll(t0 + 200 * s), None);
    }
}
