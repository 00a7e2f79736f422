//! Warnings, bounded in number, while a dial stays unconnected.
//!
//! The reactor redials a dispatcher for ever (50 ms doubling to 1 s) and logs only the first
//! failure of a streak, at info. A game or gate given an address it cannot reach (a
//! dispatcher's `advertise_addr` that names another host's loopback, a firewall) would sit
//! there with that one line and never become ready. [`DialWatch`] wraps the process's handler
//! and warns while one of its dials is not connected: [`FIRST_WARNING`] after it started (or
//! went down), then 10 s later, 20 s after that, and so on, doubling up to one line every
//! [`MAX_INTERVAL`] (16 lines in an hour), each saying for how long and how many warnings
//! came before; when it connects after a warning, one info line says so. A dial that connects
//! within [`FIRST_WARNING`] costs no line.
//!
//! Failed attempts never reach a handler ([`Handler::on_close`] is not called for them), so
//! the watch knows a dial only by its connections: down from the start until its first
//! [`Origin::Dialed`] open, and from each close until the next. It counts time, not attempts.
//! Pure logic: the time comes with each call, so tests drive it with a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::reactor::{CloseReason, ConnId, Handler, Io, Origin};

/// How long a dial may stay unconnected before the first warning.
pub const FIRST_WARNING: Duration = Duration::from_secs(5);
/// The longest interval between two warnings about one dial.
pub const MAX_INTERVAL: Duration = Duration::from_secs(300);

/// One dial's current outage, if any: when it began and when to warn next.
#[derive(Debug, Clone)]
pub struct Outage {
    /// Down since then; `None` while connected.
    since: Option<Instant>,
    /// The next warning is due then.
    next: Instant,
    /// The interval after the next warning.
    interval: Duration,
    /// Warnings about the current outage so far.
    warned: u32,
    /// Connected at least once (a later outage is a disconnect, not a start-up).
    was_up: bool,
}

/// A warning that is due, or the end of an outage that was warned about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// How long the dial has been (or was) unconnected.
    pub down_for: Duration,
    /// Warnings about this outage before this one.
    pub earlier_warnings: u32,
    /// The outage began at start-up (the dial never connected), not with a disconnect.
    pub since_start: bool,
}

impl Outage {
    /// A dial started at `now`, not connected yet.
    pub fn new(now: Instant) -> Outage {
        Outage {
            since: Some(now),
            next: now + FIRST_WARNING,
            interval: FIRST_WARNING,
            warned: 0,
            was_up: false,
        }
    }

    /// The dial connected. Returns the outage's length if it was warned about.
    pub fn up(&mut self, now: Instant) -> Option<Report> {
        let since = self.since.take()?;
        let warned = std::mem::take(&mut self.warned);
        let since_start = !self.was_up;
        self.was_up = true;
        (warned > 0).then(|| Report {
            down_for: now.saturating_duration_since(since),
            earlier_warnings: warned,
            since_start,
        })
    }

    /// The dial's connection closed (a no-op while already down).
    pub fn down(&mut self, now: Instant) {
        if self.since.is_none() {
            self.since = Some(now);
            self.next = now + FIRST_WARNING;
            self.interval = FIRST_WARNING;
            self.warned = 0;
        }
    }

    /// When the next warning is due, if the dial is down.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|_| self.next)
    }

    /// The warning due at `now`, if one is; schedules the following one.
    pub fn poll(&mut self, now: Instant) -> Option<Report> {
        let since = self.since?;
        if now < self.next {
            return None;
        }
        self.interval = (self.interval * 2).min(MAX_INTERVAL);
        self.next = now + self.interval;
        let earlier_warnings = self.warned;
        self.warned += 1;
        Some(Report {
            down_for: now.saturating_duration_since(since),
            earlier_warnings,
            since_start: !self.was_up,
        })
    }
}

struct Watched {
    tag: u32,
    /// What the log lines call the dial: `dispatcher1 at 10.0.0.1:13001`.
    label: String,
    outage: Outage,
}

/// A handler with its dials watched: passes every call to `inner`, and logs while a dial
/// added with [`DialWatch::watch`] stays unconnected (see the module documentation).
pub struct DialWatch<H> {
    pub inner: H,
    /// The process, as log lines name it (`game1`).
    owner: String,
    /// What a warning suggests checking.
    hint: String,
    dials: Vec<Watched>,
    /// Open dialed connections and their dial tags.
    conns: Vec<(ConnId, u32)>,
}

impl<H> DialWatch<H> {
    /// Watches nothing yet; `owner` names the process in log lines, and `hint` ends each
    /// warning (what to check).
    pub fn new(inner: H, owner: &str, hint: &str) -> DialWatch<H> {
        DialWatch {
            inner,
            owner: owner.to_string(),
            hint: hint.to_string(),
            dials: Vec::new(),
            conns: Vec::new(),
        }
    }

    /// Watches the dial added to the reactor with `tag`, started at `now`; `label` names it
    /// in log lines (`dispatcher1 at 10.0.0.1:13001`).
    pub fn watch(&mut self, tag: u32, label: &str, now: Instant) {
        self.dials.push(Watched {
            tag,
            label: label.to_string(),
            outage: Outage::new(now),
        });
    }

    fn dial(&mut self, tag: u32) -> Option<&mut Watched> {
        self.dials.iter_mut().find(|d| d.tag == tag)
    }

    fn opened(&mut self, now: Instant, conn: ConnId, origin: Origin) {
        let Origin::Dialed { dial } = origin else {
            return;
        };
        let owner = self.owner.clone();
        let Some(d) = self.dial(dial) else { return };
        if let Some(r) = d.outage.up(now) {
            log::info!(
                "{owner}: {} connected; it was unreachable for {} s",
                d.label,
                r.down_for.as_secs()
            );
        }
        self.conns.push((conn, dial));
    }

    fn closed(&mut self, now: Instant, conn: ConnId) {
        let Some(i) = self.conns.iter().position(|(c, _)| *c == conn) else {
            return;
        };
        let (_, tag) = self.conns.swap_remove(i);
        if let Some(d) = self.dial(tag) {
            d.outage.down(now);
        }
    }

    fn poll(&mut self, now: Instant) {
        for d in &mut self.dials {
            if let Some(r) = d.outage.poll(now) {
                let when = if r.since_start {
                    "since start-up"
                } else {
                    "since it went down"
                };
                let earlier = match r.earlier_warnings {
                    0 => String::new(),
                    1 => " (1 earlier warning)".to_string(),
                    n => format!(" ({n} earlier warnings)"),
                };
                log::warn!(
                    "{}: {} not connected for {} s {when}{earlier}; still retrying. {}",
                    self.owner,
                    d.label,
                    r.down_for.as_secs(),
                    self.hint
                );
            }
        }
    }

    fn next_warning(&self) -> Option<Instant> {
        self.dials.iter().filter_map(|d| d.outage.due()).min()
    }
}

impl<H: Handler> Handler for DialWatch<H> {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    ) {
        self.opened(now, conn, origin);
        self.inner.on_open(io, now, conn, origin, peer)
    }
    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        self.inner.on_frame(io, now, conn, payload)
    }
    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        self.closed(now, conn);
        self.inner.on_close(io, now, conn, reason)
    }
    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, wall: SystemTime) {
        self.inner.on_tick(io, now, wall);
        self.poll(now);
    }
    fn next_deadline(&self) -> Option<Instant> {
        match (self.inner.next_deadline(), self.next_warning()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn on_signal(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        self.inner.on_signal(io, now, signal)
    }
    fn on_wake(&mut self, io: &mut dyn Io, now: Instant) {
        self.inner.on_wake(io, now)
    }
    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
    fn metrics(&self, m: &mut crate::http::Metrics) {
        self.inner.metrics(m)
    }
    fn status(&self, s: &mut crate::http::Status) {
        self.inner.status(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testio::MemIo;
    use crate::testlog;

    /// A handler that does nothing and has no deadline of its own.
    struct Idle;

    impl Handler for Idle {
        fn on_open(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: Origin, _: SocketAddr) {}
        fn on_frame(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: &[u8]) {}
        fn on_close(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: &CloseReason) {}
        fn on_tick(&mut self, _: &mut dyn Io, _: Instant, _: SystemTime) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn on_signal(&mut self, _: &mut dyn Io, _: Instant, _: i32) {}
        fn should_stop(&self) -> bool {
            false
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn conn(slot: u32) -> ConnId {
        ConnId { slot, gen: 1 }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 13001))
    }

    /// Ticks `w` every `step` from `from` to `to` (inclusive), as the reactor would while a
    /// dial is retried.
    fn tick_until(
        w: &mut DialWatch<Idle>,
        io: &mut MemIo,
        from: Instant,
        to: Instant,
        step: Duration,
    ) {
        let mut t = from;
        while t <= to {
            w.on_tick(io, t, SystemTime::UNIX_EPOCH);
            t += step;
        }
    }

    #[test]
    fn outage_schedule_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let mut o = Outage::new(t0);
        assert_eq!(o.due(), Some(t0 + FIRST_WARNING));
        assert_eq!(o.poll(t0 + secs(4)), None);
        let mut fired = Vec::new();
        for s in 0..=2000 {
            if let Some(r) = o.poll(t0 + secs(s)) {
                assert!(r.since_start);
                assert_eq!(r.earlier_warnings as usize, fired.len());
                assert_eq!(r.down_for, secs(s));
                fired.push(s);
            }
        }
        // 5, then doubling gaps 10, 20, ... up to 300 s.
        assert_eq!(fired, [5, 15, 35, 75, 155, 315, 615, 915, 1215, 1515, 1815]);
        // Connected: the outage is reported once, and nothing is due any more.
        let r = o.up(t0 + secs(2001)).unwrap();
        assert_eq!(
            (r.down_for, r.earlier_warnings, r.since_start),
            (secs(2001), 11, true)
        );
        assert_eq!(o.due(), None);
        assert_eq!(o.poll(t0 + secs(9999)), None);
        // A disconnect starts a new outage with the first delay again.
        o.down(t0 + secs(3000));
        o.down(t0 + secs(3001)); // already down: no change
        assert_eq!(o.due(), Some(t0 + secs(3005)));
        let r = o.poll(t0 + secs(3005)).unwrap();
        assert_eq!(
            (r.down_for, r.earlier_warnings, r.since_start),
            (secs(5), 0, false)
        );
        // A short outage that was never warned about ends without a report.
        let mut o = Outage::new(t0);
        assert_eq!(o.up(t0 + secs(1)), None);
    }

    #[test]
    fn a_dial_that_never_connects_costs_a_bounded_number_of_lines() {
        testlog::capture();
        let t0 = Instant::now();
        let mut io = MemIo::new();
        let mut w = DialWatch::new(Idle, "game1", "Is it running, and can this host reach it?");
        w.watch(1, "dispatcher1 at 10.0.0.1:13001", t0);
        assert_eq!(w.next_deadline(), Some(t0 + FIRST_WARNING));
        // An hour of redials, ticked every 100 ms: 36000 ticks.
        tick_until(
            &mut w,
            &mut io,
            t0,
            t0 + secs(3600),
            Duration::from_millis(100),
        );
        let lines = testlog::take_at(log::Level::Warn);
        // 5, 15, 35, 75, 155, 315 s, then every 300 s up to an hour.
        assert_eq!(lines.len(), 16, "{lines:#?}");
        assert_eq!(
            lines[0],
            "game1: dispatcher1 at 10.0.0.1:13001 not connected for 5 s since start-up; still \
             retrying. Is it running, and can this host reach it?"
        );
        assert!(
            lines[1].starts_with(
                "game1: dispatcher1 at 10.0.0.1:13001 not connected for 15 s since start-up \
                 (1 earlier warning); still retrying."
            ),
            "{}",
            lines[1]
        );
        assert!(
            lines[15].contains(" for 3315 s since start-up (15 earlier warnings);"),
            "{}",
            lines[15]
        );
        // It connects: one info line, then nothing more.
        let t = t0 + secs(3601);
        w.on_open(&mut io, t, conn(1), Origin::Dialed { dial: 1 }, peer());
        assert_eq!(
            testlog::take(),
            vec![(
                log::Level::Info,
                "game1: dispatcher1 at 10.0.0.1:13001 connected; it was unreachable for 3601 s"
                    .to_string()
            )]
        );
        assert_eq!(w.next_deadline(), None);
        tick_until(&mut w, &mut io, t, t + secs(600), secs(1));
        assert!(testlog::take().is_empty());
    }

    #[test]
    fn connecting_soon_or_reconnecting_soon_is_silent() {
        testlog::capture();
        let t0 = Instant::now();
        let mut io = MemIo::new();
        let mut w = DialWatch::new(Idle, "gate1", "hint");
        w.watch(1, "dispatcher1 at a:1", t0);
        w.watch(2, "dispatcher2 at b:2", t0);
        // Dispatcher 1 is up within a second; dispatcher 2 only after 7 s.
        w.on_open(
            &mut io,
            t0 + secs(1),
            conn(1),
            Origin::Dialed { dial: 1 },
            peer(),
        );
        // An accepted connection or an unwatched dial changes nothing.
        w.on_open(
            &mut io,
            t0 + secs(1),
            conn(9),
            Origin::Accepted { listener: 0 },
            peer(),
        );
        w.on_open(
            &mut io,
            t0 + secs(1),
            conn(8),
            Origin::Dialed { dial: 7 },
            peer(),
        );
        tick_until(
            &mut w,
            &mut io,
            t0,
            t0 + secs(7),
            Duration::from_millis(500),
        );
        w.on_open(
            &mut io,
            t0 + secs(7),
            conn(2),
            Origin::Dialed { dial: 2 },
            peer(),
        );
        let lines = testlog::take();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0].0, log::Level::Warn);
        assert!(lines[0]
            .1
            .starts_with("gate1: dispatcher2 at b:2 not connected for 5 s since start-up;"));
        assert_eq!(
            lines[1],
            (
                log::Level::Info,
                "gate1: dispatcher2 at b:2 connected; it was unreachable for 7 s".to_string()
            )
        );
        // Dispatcher 1 restarts: down 3 s, no line; then down for good: warned as a disconnect.
        let t = t0 + secs(100);
        w.on_close(&mut io, t, conn(1), &CloseReason::PeerClosed);
        assert_eq!(w.next_deadline(), Some(t + FIRST_WARNING));
        tick_until(&mut w, &mut io, t, t + secs(3), secs(1));
        w.on_open(
            &mut io,
            t + secs(3),
            conn(3),
            Origin::Dialed { dial: 1 },
            peer(),
        );
        assert!(testlog::take().is_empty());
        let t = t0 + secs(200);
        w.on_close(&mut io, t, conn(3), &CloseReason::PeerClosed);
        // Closing an unknown connection changes nothing.
        w.on_close(&mut io, t, conn(42), &CloseReason::PeerClosed);
        tick_until(&mut w, &mut io, t, t + secs(20), secs(1));
        let lines = testlog::take_at(log::Level::Warn);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0]
            .starts_with("gate1: dispatcher1 at a:1 not connected for 5 s since it went down;"));
        assert!(lines[1].contains("for 15 s since it went down (1 earlier warning)"));
    }

    #[test]
    fn the_next_warning_is_a_deadline() {
        struct Busy(Instant);
        impl Handler for Busy {
            fn on_open(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: Origin, _: SocketAddr) {
            }
            fn on_frame(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: &[u8]) {}
            fn on_close(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: &CloseReason) {}
            fn on_tick(&mut self, _: &mut dyn Io, _: Instant, _: SystemTime) {}
            fn next_deadline(&self) -> Option<Instant> {
                Some(self.0)
            }
            fn on_signal(&mut self, _: &mut dyn Io, _: Instant, _: i32) {}
            fn should_stop(&self) -> bool {
                false
            }
        }
        let t0 = Instant::now();
        let mut w = DialWatch::new(Busy(t0 + secs(1)), "game1", "");
        assert_eq!(w.next_deadline(), Some(t0 + secs(1)));
        w.watch(1, "dispatcher1", t0);
        assert_eq!(w.next_deadline(), Some(t0 + secs(1)));
        w.inner.0 = t0 + secs(60);
        assert_eq!(w.next_deadline(), Some(t0 + FIRST_WARNING));
    }
}
