//! test_client: bots that connect to the gates of a running server (reference §6).
//!
//! `test_client -N 100 [-duration 60] [-strict] [-server 127.0.0.1] [-configfile goworld.ini]`
//!
//! Each bot dials a random gate, waits for its boot entity (CREATE_ENTITY_ON_CLIENT with
//! isPlayer), then heartbeats once a second. This is the bot core the entity issues extend
//! with login and GoWorld's "things". All bots share one single-threaded mio reactor, so
//! thousands of bots cost one core at most. With `-strict`, a bot that is disconnected or gets
//! no boot entity within 5 s makes the run fail (exit 1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use goworld_common::args::{parse_go_flags, usage};
use goworld_common::config::Config;
use goworld_common::proto::{mt, ClientBound, ClientMsg};
use goworld_common::reactor::{
    CloseReason, ConnId, Handler, Io, LinkKind, LinkOpts, Origin, Reactor, ReactorConfig,
};
use goworld_common::{process, sig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(5);
const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Bot {
    conn: Option<ConnId>,
    connected_at: Option<Instant>,
    boot_entity: Option<String>,
    frames: u64,
}

struct Bots {
    bots: Vec<Bot>,
    by_conn: HashMap<ConnId, usize>,
    strict: bool,
    quiet: bool,
    end: Option<Instant>,
    duration: Option<Duration>,
    next_heartbeat: Option<Instant>,
    next_report: Option<Instant>,
    disconnects: u64,
    failures: Vec<String>,
    stop: bool,
}

impl Bots {
    fn fail(&mut self, what: String) {
        eprintln!("test_client: {what}");
        self.failures.push(what);
        if self.strict {
            self.stop = true;
        }
    }

    fn summary(&self) -> String {
        let booted = self.bots.iter().filter(|b| b.boot_entity.is_some()).count();
        format!(
            "bots {}: {} got their boot entity, {} disconnects, {} failures",
            self.bots.len(),
            booted,
            self.disconnects,
            self.failures.len()
        )
    }
}

impl Handler for Bots {
    fn on_open(
        &mut self,
        _io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        _peer: SocketAddr,
    ) {
        let Origin::Dialed { dial } = origin else {
            return;
        };
        let i = dial as usize;
        self.by_conn.insert(conn, i);
        let b = &mut self.bots[i];
        b.conn = Some(conn);
        b.connected_at = Some(now);
        b.boot_entity = None;
        if self.end.is_none() {
            self.end = self.duration.map(|d| now + d);
            self.next_heartbeat = Some(now + HEARTBEAT);
            self.next_report = Some(now + Duration::from_secs(1));
        }
    }

    fn on_frame(&mut self, io: &mut dyn Io, _now: Instant, conn: ConnId, payload: &[u8]) {
        let Some(&i) = self.by_conn.get(&conn) else {
            return;
        };
        self.bots[i].frames += 1;
        match ClientBound::decode(payload) {
            Ok(ClientBound::Entity {
                msg:
                    ClientMsg::CreateEntityOnClient {
                        is_player: true,
                        type_name,
                        ..
                    },
                ..
            }) => {
                self.bots[i].boot_entity = Some(type_name);
            }
            Ok(_) => {}
            Err(e) => {
                self.fail(format!("bot {i}: undecodable message from the gate: {e}"));
                io.close(conn, "undecodable message");
            }
        }
    }

    fn on_close(&mut self, _io: &mut dyn Io, _now: Instant, conn: ConnId, reason: &CloseReason) {
        let Some(i) = self.by_conn.remove(&conn) else {
            return;
        };
        self.bots[i].conn = None;
        if self.stop {
            return;
        }
        self.disconnects += 1;
        self.fail(format!("bot {i} disconnected: {reason}"));
    }

    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, _wall: SystemTime) {
        let late: Vec<usize> = self
            .bots
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.boot_entity.is_none()
                    && b.connected_at
                        .is_some_and(|t| now.duration_since(t) > BOOT_TIMEOUT)
            })
            .map(|(i, _)| i)
            .collect();
        for i in late {
            self.bots[i].connected_at = None;
            self.fail(format!("bot {i}: no boot entity within {BOOT_TIMEOUT:?}"));
        }
        if self.next_heartbeat.is_some_and(|t| now >= t) {
            self.next_heartbeat = Some(now + HEARTBEAT);
            for b in &self.bots {
                if let Some(c) = b.conn {
                    io.send(c, &mt::HEARTBEAT_FROM_CLIENT.to_le_bytes());
                }
            }
        }
        if self.next_report.is_some_and(|t| now >= t) {
            self.next_report = Some(now + Duration::from_secs(5));
            if !self.quiet {
                println!("{}", self.summary());
            }
        }
        if self.end.is_some_and(|t| now >= t) {
            self.stop = true;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.next_heartbeat, self.next_report, self.end]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_signal(&mut self, _io: &mut dyn Io, _now: Instant, signal: i32) {
        if matches!(signal, sig::SIGINT | sig::SIGTERM) {
            self.stop = true;
        }
    }

    fn should_stop(&self) -> bool {
        self.stop
    }
}

fn main() {
    let mut opts = getopts::Options::new();
    opts.optopt("N", "", "number of bots (default 1000)", "N");
    opts.optopt("S", "", "first bot id (default 1)", "ID");
    opts.optopt(
        "",
        "server",
        "host of the gates (default 127.0.0.1)",
        "HOST",
    );
    opts.optopt(
        "",
        "configfile",
        "goworld.ini with the gate addresses (default goworld.ini)",
        "PATH",
    );
    opts.optopt(
        "",
        "duration",
        "seconds to run; 0 runs until Ctrl-C (default 0)",
        "SECS",
    );
    opts.optflag("", "strict", "any bot failure fails the run (exit 1)");
    opts.optflag("", "quiet", "print only the final summary");
    opts.optopt("", "log", "log level (default info)", "LEVEL");
    for unsupported in ["ws", "kcp"] {
        opts.optflag("", unsupported, "not supported yet");
    }
    opts.optflag(
        "",
        "nosync",
        "no position syncs (the bot core sends none yet)",
    );
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let m = parse_go_flags(&opts, &argv).unwrap_or_else(|e| {
        process::fail(&format!(
            "test_client: {e}\n{}",
            usage("test_client", &opts)
        ))
    });
    for unsupported in ["ws", "kcp"] {
        if m.opt_present(unsupported) {
            process::fail(&format!("test_client: -{unsupported} is not supported yet (goworld-rs gates speak TCP only)"));
        }
    }
    let num = |name: &str, default: u64| -> u64 {
        m.opt_str(name).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                process::fail(&format!("test_client: -{name} {v}: not a number"))
            })
        })
    };
    let n = num("N", 1000) as usize;
    let duration = num("duration", 0);
    let host = m.opt_str("server").unwrap_or_else(|| "127.0.0.1".into());
    let configfile = m
        .opt_str("configfile")
        .unwrap_or_else(|| "goworld.ini".into());
    let level = m.opt_str("log").unwrap_or_else(|| "info".into());
    goworld_common::logging::init("test_client", &level, None, true)
        .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")));
    let config = Config::load(configfile.as_ref())
        .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")));
    let gates: Vec<SocketAddr> = config
        .gates
        .values()
        .map(|g| {
            let port = g.listen_addr.rsplit(':').next().unwrap_or("14000");
            process::resolve(&format!("{host}:{port}"))
                .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")))
        })
        .collect();
    if gates.is_empty() {
        process::fail("test_client: the config has no gates");
    }
    let mut reactor = Reactor::new(ReactorConfig {
        signals: true,
        ..ReactorConfig::default()
    })
    .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")));
    let opts = LinkOpts {
        kind: LinkKind::Server,
        max_frame: 64 << 20,
    };
    // A cheap xorshift picks each bot's gate; no randomness crate needed for that.
    let mut seed = u64::from(std::process::id()) | 1;
    for i in 0..n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        reactor.add_dial(gates[(seed % gates.len() as u64) as usize], i as u32, opts);
    }
    let mut bots = Bots {
        bots: (0..n).map(|_| Bot::default()).collect(),
        by_conn: HashMap::new(),
        strict: m.opt_present("strict"),
        quiet: m.opt_present("quiet"),
        end: None,
        duration: (duration > 0).then(|| Duration::from_secs(duration)),
        next_heartbeat: None,
        next_report: None,
        disconnects: 0,
        failures: Vec::new(),
        stop: false,
    };
    if let Err(e) = reactor.run(&mut bots) {
        process::fail(&format!("test_client: reactor stopped: {e}"));
    }
    println!("{}", bots.summary());
    let frames: u64 = bots.bots.iter().map(|b| b.frames).sum();
    log::info!("{frames} frames received in all");
    if bots.strict && !bots.failures.is_empty() {
        std::process::exit(1);
    }
}
