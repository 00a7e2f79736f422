//! The game while its entity storage is down: 1 dispatcher, 1 game, 1 gate, `-N` strict bots
//! (their Avatars saved every second, `save_interval = 1`), and a probe client that calls
//! its Account every 20 ms and times the answer (a round trip through gate, dispatcher and
//! game that touches no store; the gate flushes to clients every 1 ms here, not 50). After `-down` seconds the storage server goes away for
//! `-for` seconds (Redis: SIGKILL, then started again on its append-only file; MongoDB: the
//! stand-in is SIGSTOPped, then SIGCONTed) and the round trips before, during and after are
//! compared: they must stay flat, as the game holds its saves and retries them without
//! waiting. The KVDB stays on the filesystem (logins and mail keep working).
//!
//! ```sh
//! cargo build --release --workspace --bins
//! ./target/release/bench_outage -store redis -N 300 -secs 35 -down 10 -for 10
//! ./target/release/bench_outage -store mongodb -N 300 -secs 35 -down 10 -for 10
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;
use goworld_common::msgpack::write_str;
use goworld_common::proto::{ClientBound, ClientMsg, Msg};
use goworld_common::testserver::{MongoServer, RedisServer};
use goworld_tests::procfs::flag;
use goworld_tests::{Cluster, Kind, RawClient};

/// The server entity storage runs on.
enum Server {
    Redis(RedisServer),
    Mongo(MongoServer),
}

impl Server {
    fn storage(&self) -> String {
        match self {
            Server::Redis(r) => format!("[storage]\ntype=redis\nurl={}\n", r.url()),
            Server::Mongo(m) => format!("[storage]\ntype=mongodb\nurl={}\n", m.url()),
        }
    }

    fn down(&mut self) {
        match self {
            Server::Redis(r) => r.kill(),
            Server::Mongo(m) => m.pause(),
        }
    }

    fn up(&mut self) {
        match self {
            Server::Redis(r) => r.restart(),
            Server::Mongo(m) => m.resume(),
        }
    }
}

fn store_flag() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a.trim_start_matches('-') == "store")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "redis".into())
}

/// Reads frames until the boot entity arrives; its ID.
fn boot_entity(c: &mut RawClient) -> EntityId {
    loop {
        let f = c
            .recv(Duration::from_secs(10))
            .expect("a frame")
            .expect("open");
        if let Ok(ClientBound::Entity {
            msg:
                ClientMsg::CreateEntityOnClient {
                    is_player: true,
                    eid,
                    ..
                },
            ..
        }) = ClientBound::decode(&f)
        {
            return eid;
        }
    }
}

/// Round trips of `Login(probe, wrong)` (answered `OnLogin(false)` at once) every 20 ms
/// until `end`: (seconds since `t0`, round trip).
fn probe(addr: SocketAddr, t0: Instant, end: Instant) -> Vec<(f64, Duration)> {
    let mut c = RawClient::connect(addr).expect("the probe connects");
    let account = boot_entity(&mut c);
    let (mut u, mut p) = (Vec::new(), Vec::new());
    write_str(&mut u, "probe");
    write_str(&mut p, "wrong");
    let call = Msg::CallEntityMethodFromClient {
        eid: account,
        method: "Login".into(),
        args: vec![u, p],
        client_id: None,
    }
    .to_payload();
    let mut out = Vec::new();
    while Instant::now() < end {
        let sent = Instant::now();
        c.send(&call).expect("the probe sends");
        loop {
            let f = c
                .recv(Duration::from_secs(30))
                .expect("a frame")
                .expect("the gate keeps the probe");
            if let Ok(ClientBound::Entity {
                msg: ClientMsg::CallEntityMethodOnClient { method, .. },
                ..
            }) = ClientBound::decode(&f)
            {
                if method == "OnLogin" {
                    break;
                }
            }
        }
        let rtt = sent.elapsed();
        out.push(((sent - t0).as_secs_f64(), rtt));
        std::thread::sleep(Duration::from_millis(20).saturating_sub(rtt));
    }
    out
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    if v.is_empty() {
        println!("{name:>8}: no samples");
        return;
    }
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "{name:>8}: {:>5} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        q(0.5),
        q(0.99),
        v[v.len() - 1].as_secs_f64() * 1000.0
    );
}

fn main() {
    let n = flag("N", 300);
    let secs = flag("secs", 35);
    let down_at = flag("down", 10);
    let down_for = flag("for", 10);
    assert!(
        down_at + down_for + 5 <= secs,
        "-secs must leave 5 s after the outage"
    );
    let store = store_flag();
    let mut server = match store.as_str() {
        "redis" => Server::Redis(RedisServer::start_durable()),
        "mongodb" => Server::Mongo(MongoServer::start()),
        other => panic!("-store redis|mongodb, not {other}"),
    };
    let mut c = Cluster::new(
        &format!("bench-outage-{store}"),
        1,
        1,
        1,
        // The gate writes to a client at once, so the round trip is not its 50 ms flush.
        &format!(
            "[game1]\nsave_interval=1\n\n[gate_common]\nclient_flush_interval_ms=1\n\n{}",
            server.storage()
        ),
    );
    c.start_all(1, 1, 1).unwrap_or_else(|e| panic!("{e}"));
    c.wait_log(
        Kind::Game,
        1,
        "CallNilSpaces works in game",
        1,
        Duration::from_secs(20),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", c.gate_ports[0]).parse().unwrap();
    let bots = c.spawn_bots(n, secs);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs - 2);
    let prober = std::thread::spawn(move || probe(addr, t0, end));
    std::thread::sleep(Duration::from_secs(down_at));
    server.down();
    println!("{store} down at {:.1} s", t0.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(down_for));
    server.up();
    println!("{store} up at {:.1} s", t0.elapsed().as_secs_f64());
    let samples = prober.join().expect("the probe");
    let out = bots.wait_with_output().expect("test_client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (a, b) = (down_at as f64, (down_at + down_for) as f64);
    let phase = |lo: f64, hi: f64| -> Vec<Duration> {
        (samples.iter())
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|(_, d)| *d)
            .collect()
    };
    println!("probe round trips (Account call through gate, dispatcher, game):");
    stats("before", phase(2.0, a));
    stats("down", phase(a, b));
    stats("after", phase(b, f64::MAX));
    let log = c.log(Kind::Game, 1);
    for l in log.lines().filter(|l| {
        l.contains("storage is failing")
            || l.contains("storage still failing")
            || l.contains("storage is back")
    }) {
        println!("game1: {}", l.split("persist: ").last().unwrap_or(l));
    }
    if let Some(line) = stdout.lines().find(|l| l.contains("logged in")) {
        println!("{line}");
    }
    let codes = c.stop_all();
    let log = c.log(Kind::Game, 1);
    println!(
        "game1 stop: {}",
        log.lines()
            .rev()
            .find(|l| l.contains("every save is written") || l.contains("stopping anyway"))
            .unwrap_or("(no stop line)")
    );
    for (kind, id, code) in codes {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
}
