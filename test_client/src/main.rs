//! test_client: N bots in one process behaving like GoWorld's Go bots (reference §6).
//!
//! `test_client [-N 1000] [-S 1] [-server HOST] [-configfile goworld.ini] [-duration 0]
//! [-strict] [-faults] [-nosync] [-things all|goworld|DoX,DoY] [-quiet] [-log info]`
//!
//! Every bot dials a random gate of `1..=desired_gates` at that gate's own address from the
//! config (its `advertise_addr`, else its `listen_addr`, 0.0.0.0 meaning 127.0.0.1; `-server`
//! replaces the host of every gate; see [`gates`]), gets its boot entity, logs in as
//! `test<id>` and, once its Avatar has entered a space, does GoWorld's "things" one at a time
//! and syncs its position (see [`bot`]). All bots share ONE single-threaded mio reactor: the [`Fleet`]
//! handler only pumps payloads and ticks into the per-bot state machines and sends what they
//! return, so thousands of bots cost one core at most.
//!
//! Output: once per second the per-thing profile (`> DoTestListField *12 AVG 3.1ms RANGE …`),
//! unless `-quiet`; at the end one summary line:
//! `test_client: bots 300, connected 300, boot entity 300, logged in 300, things 120,
//! failures 0, disconnects 0`, then the completions of every thing (`test_client: things done:
//! DoEnterRandomNilSpace *3, DoEnterRandomSpace *41, ...`, zeros included). With `-strict` the
//! first failure (a thing timeout or mismatch, an unknown client method or entity, a bot
//! without an Avatar in a space 10 s after connecting, a bad message, a disconnect) is printed
//! and the run exits 1; otherwise failures are counted and reported.
//!
//! Like GoWorld, bots start processing server messages only once all N are connected (its
//! `waitAllConnected` barrier); a bot not connected 10 s after the start is a failure, and
//! the others then go ahead (GoWorld would wait for ever). Differences from GoWorld: `-ws` and `-kcp` are rejected (not
//! built); without `-server` each gate's own host is dialed (GoWorld: localhost with each
//! gate's port); logs go to stderr only (no `test_client.log`), and
//! there is no pprof server; a reconnect after a disconnect (the reactor redials) starts the
//! bot afresh; each bot heartbeats (2001) after a second in which it sent nothing else, which
//! GoWorld's TCP bots do not (a gate with `heartbeat_check_interval` counts any message).

mod attrs;
mod bot;
mod gates;
mod profile;
mod wire;

type HashMap<K, V> = goworld_common::id::FastMap<K, V>;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goworld_common::args::{parse_go_flags, usage};
use goworld_common::config::{split_host_port, Config};
use goworld_common::reactor::{
    CloseReason, ConnId, Handler, Io, LinkKind, LinkOpts, Origin, Reactor, ReactorConfig,
};
use goworld_common::transport::{stack::StackSpec, tls};
use goworld_common::{process, sig};

use bot::{Bot, Event};
use goworld_common::rng::Rng;
use profile::Profile;

/// How often the bots' timers are looked at (thing starts and timeouts, syncs).
const TICK: Duration = Duration::from_millis(10);
const HEARTBEAT: Duration = Duration::from_secs(1);
const REPORT: Duration = Duration::from_secs(1);
/// How long after the start every bot must have connected once.
const CONNECT_TIMEOUT: Duration = bot::AVATAR_TIMEOUT;
/// In `-faults` mode, failures this soon after a disconnect are tolerated (a dead game's
/// services are re-created elsewhere and its bots log in again meanwhile).
const FAULT_GRACE: Duration = Duration::from_secs(10);

/// Per-bot connection bookkeeping next to the bot's state machine.
struct Slot {
    bot: Bot,
    conn: Option<ConnId>,
    ever_connected: bool,
    /// When this bot last sent anything (a heartbeat is due only after a second of silence).
    last_sent: Option<Instant>,
}

/// The reactor handler: all bots, the barrier, the profile and the counters.
struct Fleet {
    slots: Vec<Slot>,
    by_conn: HashMap<ConnId, usize>,
    rng: Rng,
    strict: bool,
    quiet: bool,
    duration: Option<Duration>,
    /// Set once every bot has connected; frames before that wait in `held`.
    released: bool,
    connected_once: usize,
    held: Vec<(usize, Vec<u8>)>,
    started: bool,
    connect_deadline: Option<Instant>,
    end: Option<Instant>,
    next_tick: Option<Instant>,
    next_heartbeat: Option<Instant>,
    next_report: Option<Instant>,
    profile: Profile,
    disconnects: u64,
    failures: u64,
    first_failure: Option<String>,
    /// `-faults`: servers are being killed on purpose. A disconnect is counted, not a
    /// failure, and so is a failure within [`FAULT_GRACE`] of the last disconnect.
    faults: bool,
    /// Over KCP: a heartbeat goes first on every new connection (a gate opens a KCP session
    /// only on its first data, as GoWorld's bots do it).
    heartbeat_first: bool,
    last_disconnect: Option<Instant>,
    /// The time of the event being handled.
    now: Option<Instant>,
    /// Failures forgiven in `-faults` mode.
    tolerated: u64,
    stop: bool,
}

impl Fleet {
    fn new(n: usize, first_id: u64, sync: bool, rng: Rng) -> Fleet {
        Fleet {
            slots: (0..n)
                .map(|i| Slot {
                    bot: Bot::new(first_id + i as u64, n, sync),
                    conn: None,
                    ever_connected: false,
                    last_sent: None,
                })
                .collect(),
            by_conn: HashMap::default(),
            rng,
            strict: false,
            quiet: false,
            duration: None,
            released: n == 0,
            connected_once: 0,
            held: Vec::new(),
            started: false,
            connect_deadline: None,
            end: None,
            next_tick: None,
            next_heartbeat: None,
            next_report: None,
            profile: Profile::with_things(bot::Thing::ALL.iter().map(|(t, _)| t.name())),
            disconnects: 0,
            failures: 0,
            first_failure: None,
            faults: false,
            heartbeat_first: false,
            last_disconnect: None,
            now: None,
            tolerated: 0,
            stop: false,
        }
    }

    fn fail(&mut self, what: String) {
        let after_fault = self.faults
            && matches!((self.last_disconnect, self.now), (Some(d), Some(n)) if n < d + FAULT_GRACE);
        if after_fault {
            eprintln!("test_client: tolerated (a server went down): {what}");
            self.tolerated += 1;
            return;
        }
        eprintln!("test_client: {what}");
        self.failures += 1;
        if self.strict && !self.stop {
            self.first_failure = Some(what);
            self.stop = true;
        }
    }

    /// Sends what bot `i` returned and collects its events.
    fn pump(&mut self, io: &mut dyn Io, i: usize, out: Vec<Vec<u8>>) {
        if let Some(c) = self.slots[i].conn {
            for p in &out {
                io.send(c, p);
            }
            if !out.is_empty() {
                self.slots[i].last_sent = self.now;
            }
        }
        for e in self.slots[i].bot.take_events() {
            match e {
                Event::Failure(f) => self.fail(f),
                Event::ThingDone { thing, latency } => self.profile.record(thing.name(), latency),
            }
        }
    }

    fn deliver(&mut self, io: &mut dyn Io, now: Instant, i: usize, payload: &[u8]) {
        let out = self.slots[i].bot.on_frame(now, payload, &mut self.rng);
        self.pump(io, i, out);
    }

    /// Starts the clocks (run duration, ticks, reports) at the first event.
    fn ensure_started(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.end = self.duration.map(|d| now + d);
            self.connect_deadline = Some(now + CONNECT_TIMEOUT);
            self.next_tick = Some(now + TICK);
            self.next_heartbeat = Some(now + HEARTBEAT);
            self.next_report = Some(now + REPORT);
        }
    }

    /// Ends the all-connected barrier: starts the connected bots and replays what they were
    /// sent so far.
    fn release(&mut self, io: &mut dyn Io, now: Instant) {
        self.released = true;
        for s in self.slots.iter_mut().filter(|s| s.conn.is_some()) {
            s.bot.connected(now);
        }
        for (i, p) in std::mem::take(&mut self.held) {
            if self.slots[i].conn.is_some() {
                self.deliver(io, now, i, &p);
            }
        }
    }

    fn summary(&self) -> String {
        let count = |f: &dyn Fn(&Slot) -> bool| self.slots.iter().filter(|s| f(s)).count();
        let things: u64 = self.slots.iter().map(|s| s.bot.things_done()).sum();
        format!(
            "test_client: bots {}, connected {}, boot entity {}, logged in {}, things {}, failures {}, disconnects {}",
            self.slots.len(),
            count(&|s| s.ever_connected),
            count(&|s| s.bot.boot_entity().is_some()),
            count(&|s| s.bot.logged_in()),
            things,
            self.failures,
            self.disconnects
        )
    }
}

impl Handler for Fleet {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        _peer: SocketAddr,
    ) {
        let Origin::Dialed { dial } = origin else {
            return;
        };
        if self.heartbeat_first {
            io.send(conn, &wire::heartbeat());
        }
        let i = dial as usize;
        self.by_conn.insert(conn, i);
        let s = &mut self.slots[i];
        s.conn = Some(conn);
        if !s.ever_connected {
            s.ever_connected = true;
            self.connected_once += 1;
        }
        self.ensure_started(now);
        if self.released {
            self.slots[i].bot.connected(now);
        } else if self.connected_once == self.slots.len() {
            log::info!("all {} bots connected", self.slots.len());
            self.release(io, now);
        }
    }

    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        self.now = Some(now);
        let Some(&i) = self.by_conn.get(&conn) else {
            return;
        };
        if self.released {
            self.deliver(io, now, i, payload);
        } else {
            self.held.push((i, payload.to_vec()));
        }
    }

    fn on_close(&mut self, _io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        self.now = Some(now);
        let Some(i) = self.by_conn.remove(&conn) else {
            return;
        };
        let s = &mut self.slots[i];
        s.conn = None;
        s.bot.disconnected();
        self.held.retain(|(j, _)| *j != i);
        if self.stop {
            return;
        }
        self.disconnects += 1;
        let id = self.slots[i].bot.id;
        if self.faults {
            // Expected: count it, forgive what follows for a while; the reactor redials and
            // the bot starts afresh.
            self.last_disconnect = Some(now);
            log::info!("bot test{id} disconnected: {reason}");
            return;
        }
        self.fail(format!("bot test{id} disconnected: {reason}"));
    }

    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, _wall: SystemTime) {
        self.now = Some(now);
        self.ensure_started(now);
        if self.connect_deadline.is_some_and(|t| now >= t) {
            self.connect_deadline = None;
            let late: Vec<u64> = (self.slots.iter())
                .filter(|s| !s.ever_connected)
                .map(|s| s.bot.id)
                .collect();
            for id in &late {
                self.fail(format!(
                    "bot test{id}: not connected {CONNECT_TIMEOUT:?} after the start"
                ));
            }
            if !self.released {
                // GoWorld would wait for ever; the connected bots go ahead instead.
                self.release(io, now);
            }
        }
        if self.next_tick.is_some_and(|t| now >= t) {
            self.next_tick = Some(now + TICK);
            if self.released {
                for i in 0..self.slots.len() {
                    if self.slots[i].conn.is_some()
                        && self.slots[i].bot.next_deadline().is_some_and(|t| now >= t)
                    {
                        let out = self.slots[i].bot.on_tick(now, &mut self.rng);
                        self.pump(io, i, out);
                    }
                }
            }
        }
        if self.next_heartbeat.is_some_and(|t| now >= t) {
            self.next_heartbeat = Some(now + HEARTBEAT);
            let hb = wire::heartbeat();
            for s in &mut self.slots {
                if let Some(c) = s.conn {
                    if s.last_sent.is_none_or(|t| now >= t + HEARTBEAT) {
                        io.send(c, &hb);
                        s.last_sent = Some(now);
                    }
                }
            }
        }
        if self.next_report.is_some_and(|t| now >= t) {
            self.next_report = Some(now + REPORT);
            let report = self.profile.take_report();
            if !self.quiet && !report.is_empty() {
                print!("{report}");
            }
        }
        if self.end.is_some_and(|t| now >= t) {
            self.stop = true;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.next_tick,
            self.connect_deadline,
            self.next_heartbeat,
            self.next_report,
            self.end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_signal(&mut self, _io: &mut dyn Io, now: Instant, signal: i32) {
        match signal {
            sig::SIGINT | sig::SIGTERM => self.stop = true,
            // `-faults`: a fault script marks the moment it broke a server that bots may not
            // see as a disconnect (a dispatcher): failures are forgiven for a while from now.
            sig::SIGUSR1 if self.faults => {
                log::info!("fault marked by SIGUSR1");
                self.last_disconnect = Some(now);
            }
            _ => {}
        }
    }

    fn should_stop(&self) -> bool {
        self.stop
    }
}

fn main() {
    let mut opts = getopts::Options::new();
    opts.optopt("N", "", "number of bots (default 1000)", "N");
    opts.optopt(
        "S",
        "",
        "first bot id; usernames are test<id> (default 1)",
        "ID",
    );
    opts.optopt(
        "",
        "server",
        "host of every gate, with each gate's port (default: each gate's own address from the config)",
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
    opts.optflag(
        "",
        "strict",
        "the first failure (thing timeout, mismatch, unknown method or entity, no Avatar in a space) exits 1",
    );
    opts.optflag("", "nosync", "disable the random position syncs");
    opts.optflag(
        "",
        "faults",
        "servers are killed during the run: count disconnects, and tolerate failures for 10 s after one (or after a SIGUSR1)",
    );
    opts.optopt(
        "",
        "things",
        "the things to do: all (default), goworld (GoWorld's eight), or names joined by commas",
        "LIST",
    );
    opts.optflag("", "quiet", "no per-second profile; only the final summary");
    opts.optopt("", "log", "log level (default info)", "LEVEL");
    opts.optflag(
        "",
        "ws",
        "WebSocket clients, to each gate's http_addr at /ws",
    );
    opts.optflag(
        "",
        "kcp",
        "KCP clients, to each gate's listen_addr over UDP",
    );
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let m = parse_go_flags(&opts, &argv).unwrap_or_else(|e| {
        process::fail(&format!(
            "test_client: {e}\n{}",
            usage("test_client", &opts)
        ))
    });
    if m.opt_present("ws") && m.opt_present("kcp") {
        process::fail("test_client: can not use both websocket and KCP");
    }
    let websocket = m.opt_present("ws");
    let kcp = m.opt_present("kcp");
    let num = |name: &str, default: u64| -> u64 {
        m.opt_str(name).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                process::fail(&format!("test_client: -{name} {v}: not a number"))
            })
        })
    };
    let n = num("N", 1000) as usize;
    let first_id = num("S", 1);
    let duration = num("duration", 0);
    if u32::try_from(n).is_err() {
        process::fail("test_client: -N is too large");
    }
    let configfile = m
        .opt_str("configfile")
        .unwrap_or_else(|| "goworld.ini".into());
    let level = m.opt_str("log").unwrap_or_else(|| "info".into());
    goworld_common::logging::init("test_client", &level, None, true)
        .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")));
    let config = Config::load(configfile.as_ref())
        .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")));
    let gate_addrs = if websocket {
        gates::ws_addrs(&config, m.opt_str("server").as_deref())
    } else {
        gates::gate_addrs(&config, m.opt_str("server").as_deref())
    }
    .unwrap_or_else(|e| process::fail(&format!("test_client: {configfile}: {e}")));
    let gates: Vec<SocketAddr> = (gate_addrs.iter())
        .map(|a| {
            process::resolve(a).unwrap_or_else(|e| process::fail(&format!("test_client: {e}")))
        })
        .collect();
    // Each gate's layers, as its section says (compress_connection, encrypt_connection).
    let layers: Vec<StackSpec> = (gate_addrs.iter().enumerate())
        .map(|(i, a)| gate_layers(&config, i as u16 + 1, a, websocket))
        .collect();
    if gates.is_empty() {
        process::fail("test_client: the config has no gates");
    }
    let listed: Vec<String> = (gates.iter().enumerate())
        .map(|(i, a)| {
            let over = if kcp { "kcp+" } else { "" };
            format!("gate{} {a} ({over}{})", i + 1, layers[i].describe())
        })
        .collect();
    log::info!("dialing {}", listed.join(", "));
    let mut reactor = Reactor::new(ReactorConfig {
        signals: true,
        ..ReactorConfig::default()
    })
    .unwrap_or_else(|e| process::fail(&format!("test_client: {e}")));
    let opts = LinkOpts {
        kind: LinkKind::Server,
        max_frame: 64 << 20,
        group: 0,
        heartbeat: None,
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
    for i in 0..n {
        let g = rng.below(gates.len() as u64) as usize;
        if kcp {
            reactor.add_kcp_dial(gates[g], i as u32, opts, layers[g].clone());
        } else {
            reactor.add_dial_with(gates[g], i as u32, opts, layers[g].clone());
        }
    }
    let things = bot::Thing::mask_from(&m.opt_str("things").unwrap_or_else(|| "all".into()))
        .unwrap_or_else(|e| process::fail(&format!("test_client: -things: {e}")));
    let mut fleet = Fleet::new(n, first_id, !m.opt_present("nosync"), rng);
    for slot in &mut fleet.slots {
        slot.bot.set_things(things);
    }
    fleet.strict = m.opt_present("strict");
    fleet.faults = m.opt_present("faults");
    fleet.quiet = m.opt_present("quiet");
    fleet.heartbeat_first = kcp;
    fleet.duration = (duration > 0).then(|| Duration::from_secs(duration));
    if let Err(e) = reactor.run(&mut fleet) {
        process::fail(&format!("test_client: reactor stopped: {e}"));
    }
    if !fleet.quiet {
        print!("{}", fleet.profile.take_report());
    }
    println!("{}", fleet.summary());
    println!("test_client: things done: {}", fleet.profile.totals());
    if fleet.faults {
        println!(
            "test_client: faults mode: {} disconnects counted, {} failures within {} s of one tolerated",
            fleet.disconnects,
            fleet.tolerated,
            FAULT_GRACE.as_secs()
        );
    }
    if let Some(f) = &fleet.first_failure {
        println!("test_client: FAILED (strict): {f}");
        std::process::exit(1);
    }
}

/// The transport layers for dialing gate `id` at `addr` (`host:port`): snappy when its
/// `compress_connection` is on, TLS when its `encrypt_connection` is, trusting its
/// `rsa_certificate` and checking the host of `addr` against it (GoWorld's bots skip the
/// check), and a WebSocket (to `ws://addr/ws`, or `wss://`) with `websocket`.
fn gate_layers(config: &Config, id: u16, addr: &str, websocket: bool) -> StackSpec {
    let Some(g) = config.gate(id) else {
        return StackSpec::default();
    };
    let tls_client = g.encrypt_connection.then(|| {
        let pem = std::fs::read(&g.rsa_certificate).unwrap_or_else(|e| {
            process::fail(&format!(
                "test_client: gate{id} has encrypt_connection=1: cannot read its certificate {}: {}",
                g.rsa_certificate.display(),
                goworld_common::logging::io_kind(&e)
            ))
        });
        let cfg = tls::client_config(&pem).unwrap_or_else(|e| {
            process::fail(&format!(
                "test_client: gate{id}: {}: {e}",
                g.rsa_certificate.display()
            ))
        });
        let host = split_host_port(addr).map_or(addr, |(h, _)| h);
        (cfg, host.to_string())
    });
    let scheme = if g.encrypt_connection {
        "https"
    } else {
        "http"
    };
    StackSpec {
        tls_client,
        ws_client: websocket.then(|| (addr.to_string(), Some(format!("{scheme}://{addr}/")))),
        snappy: g.compress_connection,
        ..StackSpec::default()
    }
}
