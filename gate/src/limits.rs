//! Client heartbeats and flood limits: which clients must be closed for sending nothing for too
//! long, or too much too fast.
//!
//! [`Limiter`] keeps one [`Meter`] per client connection and decides; the gate logs, closes and
//! reports. Nothing here touches a socket or the clock: every method takes `now`.
//!
//! * **Heartbeat** (`heartbeat_check_interval`, off by default as in GoWorld, which reads it and
//!   never checks it). Every client frame, whatever its type, is a sign of life and only
//!   stores `now` in the client's meter. Each client also has one entry in a deadline-ordered
//!   set: the earliest time it could have been silent for the whole interval. When an entry
//!   comes due the client is closed if it really was silent that long, otherwise its entry
//!   moves to `last frame + interval`. So a client is looked at about once per interval, not
//!   once per frame or per loop iteration, and the set is looked at no more than once a second
//!   ([`CHECK_GAP`]), so a gate full of clients wakes up at most once a second for this, and an
//!   empty gate not at all.
//! * **Flood limits** (`client_msg_rate_limit` messages and `client_byte_rate_limit` bytes per
//!   second; 0 = no limit). Each is a token bucket holding one second's worth, refilled at the
//!   limit's rate and kept as one "theoretical arrival time" (the GCRA form: the bucket is full
//!   when that time is not after `now`). A frame costs 1 message and its payload length plus
//!   the 4-byte header in bytes; a frame that would overdraw a bucket closes the client before
//!   the frame is handled. The reason gives the rate measured since the bucket was last full.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use goworld_common::config::{
    GateConfig, DEFAULT_CLIENT_BYTE_RATE_LIMIT, DEFAULT_CLIENT_MSG_RATE_LIMIT,
};
use goworld_common::frame::LEN_PREFIX;
use goworld_common::id::FastMap;
use goworld_common::reactor::ConnId;

/// The heartbeat check runs at most this often (closes come at most this late).
pub const CHECK_GAP: Duration = Duration::from_secs(1);

/// How much a bucket holds: one second at its rate.
const BURST: Duration = Duration::from_secs(1);

/// Per-client limits of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// A client that sends nothing for this long is closed (`None`: never, GoWorld's default).
    pub heartbeat: Option<Duration>,
    /// Messages per second, with a burst of one second's worth (0: no limit).
    pub msgs_per_sec: u32,
    /// Bytes per second, payload plus the 4-byte header, with a burst of one second's worth
    /// (0: no limit).
    pub bytes_per_sec: u32,
}

impl ClientLimits {
    /// No heartbeat check and no flood limits.
    pub const OFF: ClientLimits = ClientLimits {
        heartbeat: None,
        msgs_per_sec: 0,
        bytes_per_sec: 0,
    };

    /// The limits a gate's configuration asks for.
    pub fn from_config(cfg: &GateConfig) -> ClientLimits {
        ClientLimits {
            heartbeat: (cfg.heartbeat_check_interval > 0)
                .then(|| Duration::from_secs(cfg.heartbeat_check_interval)),
            msgs_per_sec: cfg.client_msg_rate_limit,
            bytes_per_sec: cfg.client_byte_rate_limit,
        }
    }
}

impl std::fmt::Display for ClientLimits {
    /// `heartbeat_check_interval = 30 s, client_msg_rate_limit = 200/s, client_byte_rate_limit
    /// = off`, for the start-up line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.heartbeat {
            Some(i) => write!(f, "heartbeat_check_interval = {} s", i.as_secs())?,
            None => f.write_str("heartbeat_check_interval = off")?,
        }
        for (name, v) in [
            ("client_msg_rate_limit", self.msgs_per_sec),
            ("client_byte_rate_limit", self.bytes_per_sec),
        ] {
            match v {
                0 => write!(f, ", {name} = off")?,
                v => write!(f, ", {name} = {v}/s")?,
            }
        }
        Ok(())
    }
}

impl Default for ClientLimits {
    /// The configuration's defaults: heartbeat check off, 200 messages and 256 KiB per second.
    fn default() -> ClientLimits {
        ClientLimits {
            heartbeat: None,
            msgs_per_sec: DEFAULT_CLIENT_MSG_RATE_LIMIT,
            bytes_per_sec: DEFAULT_CLIENT_BYTE_RATE_LIMIT,
        }
    }
}

/// How many clients each limit closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClosedByLimits {
    /// Silent for `heartbeat_check_interval`.
    pub heartbeat: u64,
    /// Over `client_msg_rate_limit`.
    pub msg_rate: u64,
    /// Over `client_byte_rate_limit`.
    pub byte_rate: u64,
}

/// What to do with a client's frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Pass,
    /// The client is being closed already: skip it.
    Closing,
    /// Close the client with this reason (it went over a limit; counted).
    Close(String),
}

/// One token bucket in GCRA form.
#[derive(Debug)]
struct Bucket {
    per_sec: u64,
    /// When the bucket will be full again; full now if this is not after `now`.
    full_at: Instant,
    /// Since when the bucket has not been full, and what was charged since.
    span_start: Instant,
    span_units: u64,
}

impl Bucket {
    fn new(per_sec: u32, now: Instant) -> Option<Bucket> {
        (per_sec > 0).then_some(Bucket {
            per_sec: u64::from(per_sec),
            full_at: now,
            span_start: now,
            span_units: 0,
        })
    }

    /// Takes `units` out; `Err((units, over))` with what was charged since the bucket was last
    /// full and over how long, if that overdraws it.
    fn charge(&mut self, now: Instant, units: u64) -> Result<(), (u64, Duration)> {
        if self.full_at <= now {
            self.full_at = now;
            self.span_start = now;
            self.span_units = 0;
        }
        let nanos = units.saturating_mul(1_000_000_000).div_ceil(self.per_sec);
        self.full_at += Duration::from_nanos(nanos);
        self.span_units += units;
        if self.full_at - now > BURST {
            return Err((self.span_units, now - self.span_start));
        }
        Ok(())
    }
}

/// `"401 messages in 1.250 s (320/s)"`, or `"201 messages in under 1 ms"`.
fn measured(units: u64, what: &str, over: Duration) -> String {
    if over < Duration::from_millis(1) {
        return format!("{units} {what} in under 1 ms");
    }
    let rate = units as f64 / over.as_secs_f64();
    format!(
        "{units} {what} in {:.3} s ({rate:.0}/s)",
        over.as_secs_f64()
    )
}

/// One client's state.
#[derive(Debug)]
struct Meter {
    last_seen: Instant,
    /// Its entry in [`Limiter::checks`], while the heartbeat check is on and it is not closing.
    check_at: Option<Instant>,
    msgs: Option<Bucket>,
    bytes: Option<Bucket>,
    closing: bool,
}

/// The heartbeat and flood limits of every client of one gate.
#[derive(Debug)]
pub struct Limiter {
    limits: ClientLimits,
    /// Looked up for every client frame: the fast hasher, as the gate's other client tables.
    meters: FastMap<ConnId, Meter>,
    /// `(when it could have been silent for the whole interval, client)`, one per client.
    checks: BTreeSet<(Instant, ConnId)>,
    last_check: Option<Instant>,
    closed: ClosedByLimits,
}

impl Limiter {
    /// A limiter with no clients.
    pub fn new(limits: ClientLimits) -> Limiter {
        Limiter {
            limits,
            meters: FastMap::default(),
            checks: BTreeSet::new(),
            last_check: None,
            closed: ClosedByLimits::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ClientLimits {
        self.limits
    }

    /// How many clients each limit closed so far.
    pub fn closed(&self) -> ClosedByLimits {
        self.closed
    }

    fn active(&self) -> bool {
        self.limits != ClientLimits::OFF
    }

    /// A client connected.
    pub fn opened(&mut self, conn: ConnId, now: Instant) {
        if !self.active() {
            return;
        }
        let check_at = self.limits.heartbeat.map(|i| now + i);
        if let Some(t) = check_at {
            self.checks.insert((t, conn));
        }
        self.meters.insert(
            conn,
            Meter {
                last_seen: now,
                check_at,
                msgs: Bucket::new(self.limits.msgs_per_sec, now),
                bytes: Bucket::new(self.limits.bytes_per_sec, now),
                closing: false,
            },
        );
    }

    /// A client sent a frame of `payload_len` bytes: a sign of life, charged to its buckets.
    pub fn frame(&mut self, conn: ConnId, now: Instant, payload_len: usize) -> Verdict {
        let Some(m) = self.meters.get_mut(&conn) else {
            return Verdict::Pass;
        };
        if m.closing {
            return Verdict::Closing;
        }
        m.last_seen = now;
        let breach = if let Some(Err((n, over))) = m.msgs.as_mut().map(|b| b.charge(now, 1)) {
            self.closed.msg_rate += 1;
            format!(
                "sent {}, over client_msg_rate_limit = {} messages/s (burst {})",
                measured(n, "messages", over),
                self.limits.msgs_per_sec,
                self.limits.msgs_per_sec
            )
        } else if let Some(Err((n, over))) =
            (m.bytes.as_mut()).map(|b| b.charge(now, (payload_len + LEN_PREFIX) as u64))
        {
            self.closed.byte_rate += 1;
            format!(
                "sent {}, over client_byte_rate_limit = {} bytes/s (burst {})",
                measured(n, "bytes", over),
                self.limits.bytes_per_sec,
                self.limits.bytes_per_sec
            )
        } else {
            return Verdict::Pass;
        };
        m.closing = true;
        if let Some(t) = m.check_at.take() {
            self.checks.remove(&(t, conn));
        }
        Verdict::Close(breach)
    }

    /// A client is gone.
    pub fn closed_conn(&mut self, conn: ConnId) {
        if let Some(m) = self.meters.remove(&conn) {
            if let Some(t) = m.check_at {
                self.checks.remove(&(t, conn));
            }
        }
    }

    /// When [`Limiter::silent`] has work: the first heartbeat entry's time, but no sooner than
    /// [`CHECK_GAP`] after the last check. `None` with no clients or the check off.
    pub fn next_deadline(&self) -> Option<Instant> {
        let &(first, _) = self.checks.first()?;
        Some(match self.last_check {
            Some(t) => first.max(t + CHECK_GAP),
            None => first,
        })
    }

    /// The clients silent for the whole heartbeat interval at `now`, with the reason to close
    /// each (they are counted and marked closing); the others' entries move on.
    pub fn silent(&mut self, now: Instant) -> Vec<(ConnId, String)> {
        let mut out = Vec::new();
        let Some(interval) = self.limits.heartbeat else {
            return out;
        };
        self.last_check = Some(now);
        while let Some(&(t, conn)) = self.checks.first() {
            if t > now {
                break;
            }
            self.checks.pop_first();
            let m = self
                .meters
                .get_mut(&conn)
                .expect("a check entry has a meter");
            let quiet = now - m.last_seen;
            if quiet >= interval {
                m.check_at = None;
                m.closing = true;
                self.closed.heartbeat += 1;
                out.push((
                    conn,
                    format!(
                        "no message for {:.1} s (heartbeat_check_interval = {} s)",
                        quiet.as_secs_f64(),
                        interval.as_secs()
                    ),
                ));
            } else {
                let next = m.last_seen + interval;
                m.check_at = Some(next);
                self.checks.insert((next, conn));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_from_the_config_and_shown_at_start_up() {
        let cfg = goworld_common::config::Config::parse(
            "[deployment]\ndesired_dispatchers=1\ndesired_games=1\ndesired_gates=2\n\
             [gate2]\nheartbeat_check_interval=30\nclient_msg_rate_limit=0\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        let l1 = ClientLimits::from_config(cfg.gate(1).unwrap());
        assert_eq!(l1, ClientLimits::default());
        assert_eq!(
            l1.to_string(),
            "heartbeat_check_interval = off, client_msg_rate_limit = 200/s, \
             client_byte_rate_limit = 262144/s"
        );
        let l2 = ClientLimits::from_config(cfg.gate(2).unwrap());
        assert_eq!(
            l2,
            ClientLimits {
                heartbeat: Some(Duration::from_secs(30)),
                msgs_per_sec: 0,
                bytes_per_sec: 262144,
            }
        );
        assert_eq!(
            l2.to_string(),
            "heartbeat_check_interval = 30 s, client_msg_rate_limit = off, \
             client_byte_rate_limit = 262144/s"
        );
    }

    #[test]
    fn a_bucket_lets_one_seconds_worth_through_at_once_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, t0).unwrap();
        for _ in 0..10 {
            b.charge(t0, 1).unwrap();
        }
        assert_eq!(b.charge(t0, 1), Err((11, Duration::ZERO)));
        // Refilled at 10/s: one unit per 100 ms.
        let mut b = Bucket::new(10, t0).unwrap();
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(100 * i);
            b.charge(now, 1).unwrap();
        }
        // After a pause it is full again and the span restarts.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            b.charge(later, 1).unwrap();
        }
        assert_eq!(b.charge(later, 1), Err((11, Duration::ZERO)));
    }

    #[test]
    fn the_measured_rate_is_over_the_time_since_the_bucket_was_full() {
        // 20/s against a limit of 10/s: the bucket (10) runs dry after about a second.
        let t0 = Instant::now();
        let mut b = Bucket::new(10, t0).unwrap();
        let mut i = 0u64;
        let (n, over) = loop {
            let now = t0 + Duration::from_millis(50 * i);
            if let Err(e) = b.charge(now, 1) {
                break e;
            }
            i += 1;
        };
        assert_eq!((n, over), (20, Duration::from_millis(950)));
        assert_eq!(
            measured(n, "messages", over),
            "20 messages in 0.950 s (21/s)"
        );
        assert_eq!(
            measured(5, "bytes", Duration::ZERO),
            "5 bytes in under 1 ms"
        );
    }
}
