//! In-memory routing figure for the dispatcher: how many packets per second of one core the
//! `Dispatcher` state machine itself routes, with no sockets, no reactor and no allocation on
//! the output side.
//!
//! Two games (game 2 owns `-entities` entities) and one gate complete their handshakes through
//! `Handler::on_open` / `on_frame`, then `-n` pre-encoded packets are fed to `on_frame`:
//!
//! 1. CALL_ENTITY_METHOD from game 1 to game 2's entities, round-robin (about 60 bytes each);
//! 2. a mix: 50 % CALL_ENTITY_METHOD (game 1 → game 2), 25 % CALL_ENTITY_METHOD_FROM_CLIENT
//!    (gate → game 2, clientid appended by the gate) and 25 % 1009
//!    CALL_ENTITY_METHOD_ON_CLIENT (game 1 → gate).
//!
//! It also times `Handler::next_deadline`, which the reactor calls before every blocking poll,
//! with `-entities` and with 100 000 entities. Wall time and this thread's CPU time are both
//! reported: on a shared machine other processes stretch the first, not the second.
//!
//! Run: `cargo run --release -p goworld-dispatcher --example route_inmem [-n N] [-entities E]`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use goworld_common::id::{EntityId, IdGen};
use goworld_common::proto::{mt, peek_type, ClientMsg, Msg};
use goworld_common::reactor::{ConnId, Handler, Io, Origin};
use goworld_common::INTERNAL_PROTOCOL_VERSION;
use goworld_dispatcher::{Dispatcher, Settings};

const GAME1: ConnId = ConnId { slot: 0, gen: 1 };
const GAME2: ConnId = ConnId { slot: 1, gen: 2 };
const GATE1: ConnId = ConnId { slot: 2, gen: 3 };

/// An `Io` that only counts: the figure is the dispatcher's cost, not a buffer's. It reads
/// each payload's length and its middle and last bytes so the work cannot be optimised away,
/// and counts frames per connection slot so the run can check every packet went where it
/// should.
#[derive(Default)]
struct CountIo {
    frames: [u64; 4],
    bytes: u64,
    checksum: u64,
    closes: u64,
}

impl CountIo {
    fn total(&self) -> u64 {
        self.frames.iter().sum()
    }
}

impl Io for CountIo {
    fn send(&mut self, conn: ConnId, payload: &[u8]) {
        self.send2(conn, payload, &[]);
    }

    fn send2(&mut self, conn: ConnId, head: &[u8], tail: &[u8]) {
        self.frames[conn.slot as usize & 3] += 1;
        // 4 bytes of length prefix, as the reactor would frame it.
        self.bytes += (4 + head.len() + tail.len()) as u64;
        let mid = head.get(head.len() / 2).copied().unwrap_or(0);
        let last = tail.last().or(head.last()).copied().unwrap_or(0);
        self.checksum = self
            .checksum
            .wrapping_mul(31)
            .wrapping_add(u64::from(mid) << 8 | u64::from(last));
    }

    fn close(&mut self, _conn: ConnId, _reason: &str) {
        self.closes += 1;
    }

    fn pending(&self, _conn: ConnId) -> usize {
        0
    }
}

/// Flags: `-n N` packets per figure, `-entities E` entities on game 2.
fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a.trim_start_matches('-') == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("-{name} takes a number, got {v}"))
        })
        .unwrap_or(default)
}

/// Two small msgpack int64 arguments, as GoWorld encodes integers (0xd3 + 8 bytes).
fn args() -> Vec<Vec<u8>> {
    let int = |v: i64| {
        let mut b = vec![0xd3];
        b.extend_from_slice(&v.to_be_bytes());
        b
    };
    vec![int(1), int(2)]
}

/// A dispatcher with games 1 and 2 and gate 1 connected; game 2 owns `eids`.
fn setup(eids: &[EntityId]) -> (Dispatcher, CountIo, Instant) {
    let s = Settings {
        disp_id: 1,
        desired_games: 2,
        desired_gates: 1,
        // Nothing is held in this run; large limits make sure nothing could be refused.
        entity_hold_limit: 1 << 20,
        game_hold_limit: 1 << 20,
        freeze_hold_timeout: Duration::from_secs(300),
    };
    let mut d = Dispatcher::new(s);
    let mut io = CountIo::default();
    let now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for c in [GAME1, GAME2, GATE1] {
        d.on_open(&mut io, now, c, Origin::Accepted { listener: 0 }, peer);
    }
    let set_game = |game_id, entities: Vec<EntityId>| Msg::SetGameId {
        game_id,
        is_reconnect: false,
        is_restore: false,
        is_ban_boot_entity: false,
        entities,
        version: Some(INTERNAL_PROTOCOL_VERSION),
    };
    d.on_frame(&mut io, now, GAME1, &set_game(1, Vec::new()).to_payload());
    d.on_frame(
        &mut io,
        now,
        GAME2,
        &set_game(2, eids.to_vec()).to_payload(),
    );
    let gate = Msg::SetGateId {
        gate_id: 1,
        version: Some(INTERNAL_PROTOCOL_VERSION),
    };
    d.on_frame(&mut io, now, GATE1, &gate.to_payload());
    assert!(d.is_deployment_ready(), "handshakes did not complete");
    assert_eq!(io.closes, 0, "a handshake was refused");
    assert_eq!(d.entity_game(&eids[0]), Some(2));
    (d, CountIo::default(), now)
}

/// Nanoseconds this thread has spent on a CPU (/proc/thread-self/schedstat, first field).
/// Reported beside wall time: on a shared machine other processes stretch the wall time of
/// the loop, not its CPU time.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Wall and CPU time of one timed loop.
struct Timer {
    wall: Instant,
    cpu_ns: u64,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu_ns: thread_cpu_ns(),
        }
    }

    /// (wall seconds, CPU seconds) since `start`.
    fn stop(&self) -> (f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = (thread_cpu_ns() - self.cpu_ns) as f64 / 1e9;
        (wall, cpu)
    }
}

/// Prints one figure line.
fn report(what: &str, n: u64, (wall, cpu): (f64, f64), io: &CountIo) {
    println!(
        "route_inmem: {what}: {n} msgs in {wall:.3} s wall = {:.2} M msgs/s, {:.1} ns/msg; on CPU {cpu:.3} s = {:.2} M msgs per CPU-second, {:.1} ns/msg; {:.0} MB/s out (checksum {:x})",
        n as f64 / wall / 1e6,
        wall * 1e9 / n as f64,
        n as f64 / cpu / 1e6,
        cpu * 1e9 / n as f64,
        io.bytes as f64 / wall / 1e6,
        io.checksum
    );
}

fn main() {
    let n = flag("n", 10_000_000);
    let n_entities = flag("entities", 1000) as usize;
    let mut gen = IdGen::new([1, 2, 3], 42);
    let eids: Vec<EntityId> = (0..n_entities).map(|_| gen.next(1_700_000_000)).collect();
    let client = gen.next(1_700_000_000);
    let method = "TestMethod".to_string();

    let calls: Vec<Vec<u8>> = eids
        .iter()
        .map(|&eid| {
            Msg::CallEntityMethod {
                eid,
                method: method.clone(),
                args: args(),
            }
            .to_payload()
        })
        .collect();
    let from_client: Vec<Vec<u8>> = eids
        .iter()
        .map(|&eid| {
            Msg::CallEntityMethodFromClient {
                eid,
                method: method.clone(),
                args: args(),
                client_id: Some(client),
            }
            .to_payload()
        })
        .collect();
    let on_client: Vec<Vec<u8>> = eids
        .iter()
        .map(|&eid| {
            Msg::ToClient {
                gate_id: 1,
                client_id: client,
                msg: ClientMsg::CallEntityMethodOnClient {
                    eid,
                    method: method.clone(),
                    args: args(),
                },
            }
            .to_payload()
        })
        .collect();
    assert_eq!(
        peek_type(&on_client[0]),
        Some(mt::CALL_ENTITY_METHOD_ON_CLIENT)
    );
    println!(
        "route_inmem: {n} msgs per figure, {n_entities} entities on game 2; payload bytes: call {}, from client {}, on client {}",
        calls[0].len(),
        from_client[0].len(),
        on_client[0].len()
    );

    // 1. CALL_ENTITY_METHOD only.
    let (mut d, mut io, now) = setup(&eids);
    let t = Timer::start();
    let mut k = 0;
    for _ in 0..n {
        d.on_frame(&mut io, now, GAME1, black_box(&calls[k]));
        k += 1;
        if k == calls.len() {
            k = 0;
        }
    }
    let elapsed = t.stop();
    assert_eq!(
        io.frames[GAME2.slot as usize], n,
        "every call reaches game 2"
    );
    assert_eq!(io.total(), n);
    report("CALL_ENTITY_METHOD game1->game2", n, elapsed, &io);

    // 2. The mix. Each group of four packets: two calls, one from a client, one to a client.
    let (mut d, mut io, now) = setup(&eids);
    let t = Timer::start();
    let mut k = 0;
    for i in 0..n {
        match i & 3 {
            0 | 1 => d.on_frame(&mut io, now, GAME1, black_box(&calls[k])),
            2 => d.on_frame(&mut io, now, GATE1, black_box(&from_client[k])),
            _ => d.on_frame(&mut io, now, GAME1, black_box(&on_client[k])),
        }
        k += 1;
        if k == calls.len() {
            k = 0;
        }
    }
    let elapsed = t.stop();
    assert_eq!(
        io.frames[GATE1.slot as usize],
        n / 4,
        "every 1009 reaches the gate"
    );
    assert_eq!(io.total(), n);
    report(
        "mix 50% call / 25% from-client / 25% on-client",
        n,
        elapsed,
        &io,
    );

    // 3. next_deadline: the reactor asks before each blocking poll, i.e. after every burst
    // of traffic on a process that is not saturated. It should not cost more with more
    // entities.
    for &size in &[n_entities, 100_000] {
        let eids: Vec<EntityId> = (0..size).map(|_| gen.next(1_700_000_000)).collect();
        let (d, _, _) = setup(&eids);
        // About 10^8 entity visits per size: long enough for the tick-granular CPU clock.
        let calls = (100_000_000 / size as u32).clamp(100, 100_000);
        let t = Timer::start();
        for _ in 0..calls {
            black_box(black_box(&d).next_deadline());
        }
        let (_, cpu) = t.stop();
        println!(
            "route_inmem: next_deadline() with {size} entities: {:.0} ns of CPU per call",
            cpu * 1e9 / f64::from(calls)
        );
    }
}
