//! The log budget under abuse: a 1/1/1 cluster serves strict bots while raw TCP clients
//! misbehave in every way a client can, and the servers' logs grow by a few lines per
//! abusive connection, not by one per message (issue 12).

use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;
use goworld_common::msgpack::write_str;
use goworld_common::proto::{mt, Msg};
use goworld_common::rng::Rng;
use goworld_tests::{Cluster, Kind, RawClient};

use super::{boot_entity_id, gate_addr};

/// How long the abusive clients keep at it, in seconds (`GOWORLD_ABUSE_SECONDS` overrides,
/// to measure longer runs by hand).
const ABUSE_SECONDS: u64 = 10;
/// Bots beside them (`GOWORLD_ABUSE_BOTS` overrides).
const BOTS: u64 = 20;
/// Pause between two messages of one abusive client (about 500 a second each).
const PACE: Duration = Duration::from_millis(2);
/// Clients of the connection churn: each connects and closes within 0-10 ms.
const CHURN: usize = 400;
/// Log lines an abusive connection may cost: its first refusals in full, the refusal that
/// disconnects it, the summary when it goes, and the gate's line when it closes it.
const LINES_PER_CONNECTION: usize = 6;
/// Lines for everything else in the window (the bots, a dispatcher window summary).
const LINES_BASE: usize = 30;

/// What one abusive connection did and how it ended.
struct Outcome {
    kind: &'static str,
    sent: usize,
    closed: bool,
    /// True if the server was expected to close it (false: its messages are refused or
    /// dropped and it may stay).
    expect_closed: bool,
}

fn call(eid: EntityId, method: &str, args: Vec<Vec<u8>>) -> Vec<u8> {
    Msg::CallEntityMethodFromClient {
        eid,
        method: method.into(),
        args,
        client_id: None,
    }
    .to_payload()
}

fn str_arg(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    write_str(&mut v, s);
    v
}

fn sync(eid: EntityId) -> Vec<u8> {
    let mut p = mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes().to_vec();
    p.extend_from_slice(&eid.0);
    for f in [1.0f32, 0.0, 2.0, 0.5] {
        p.extend_from_slice(&f.to_le_bytes());
    }
    p
}

/// Sends `next(i)` (a frame payload, or raw bytes when `raw`) every [`PACE`] until the abuse
/// is over or the server closed the connection; then checks whether it was closed.
fn abuse(
    abuse: Duration,
    kind: &'static str,
    mut client: RawClient,
    raw: bool,
    expect_closed: bool,
    mut next: impl FnMut(usize) -> Vec<u8>,
) -> Outcome {
    let end = Instant::now() + abuse;
    let mut sent = 0;
    let mut closed = false;
    while Instant::now() < end {
        let bytes = next(sent);
        let r = if raw {
            client.send_raw(&bytes)
        } else {
            client.send(&bytes)
        };
        if r.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        std::thread::sleep(PACE);
    }
    let closed = closed || client.closed_within(Duration::from_secs(2));
    Outcome {
        kind,
        sent,
        closed,
        expect_closed,
    }
}

/// Connects and reads up to the boot entity: the client and its Account's ID.
fn logged_on(addr: SocketAddr) -> (RawClient, EntityId) {
    let mut c = RawClient::connect(addr).unwrap();
    let account = boot_entity_id(&mut c);
    (c, account)
}

/// Starts every kind of abusive client, each on its own thread.
fn start_abusers(addr: SocketAddr, t: Duration) -> Vec<JoinHandle<Outcome>> {
    let mut threads = Vec::new();
    let mut spawn = |f: Box<dyn FnOnce() -> Outcome + Send>| threads.push(std::thread::spawn(f));

    // 1. Arguments of the wrong types: Login(map, int).
    spawn(Box::new(move || {
        let (c, me) = logged_on(addr);
        abuse(t, "wrong argument types", c, false, true, |_| {
            call(me, "Login", vec![vec![0x80], vec![0x01]])
        })
    }));
    // 2. The wrong number of arguments: Login(user, password, more).
    spawn(Box::new(move || {
        let (c, me) = logged_on(addr);
        abuse(t, "wrong argument count", c, false, true, |_| {
            let a = str_arg("mallory");
            call(me, "Login", vec![a.clone(), a.clone(), a])
        })
    }));
    // 3. A made-up method name per call.
    spawn(Box::new(move || {
        let (c, me) = logged_on(addr);
        abuse(t, "unknown methods", c, false, true, |i| {
            call(me, &format!("Hack{i}"), vec![])
        })
    }));
    // 4. A method only servers may call, again and again after the refusals.
    spawn(Box::new(move || {
        let (c, me) = logged_on(addr);
        abuse(t, "server-only method, repeated", c, false, true, |_| {
            call(me, "RetryLoginToAvatar", vec![str_arg("x")])
        })
    }));
    // 5. Another client's own-client method: Login on someone else's Account.
    spawn(Box::new(move || {
        let (_victim, theirs) = logged_on(addr);
        let (c, _) = logged_on(addr);
        let out = abuse(t, "another client's method", c, false, true, |_| {
            call(theirs, "Login", vec![str_arg("eve"), str_arg("123456")])
        });
        drop(_victim);
        out
    }));
    // 6. Calls to entities that do not exist (made-up IDs): dropped, the client may stay.
    spawn(Box::new(move || {
        let (c, _) = logged_on(addr);
        abuse(t, "non-existent entities", c, false, false, |i| {
            let id = EntityId::parse(&format!("nobody{i:010}")).unwrap();
            call(id, &format!("M{i}"), vec![])
        })
    }));
    // 7. Message types a client may not send.
    spawn(Box::new(move || {
        let (c, _) = logged_on(addr);
        abuse(t, "forbidden message type", c, false, true, |i| {
            let t = [1u16, 9, 1001, 1503][i % 4];
            let mut p = t.to_le_bytes().to_vec();
            p.extend_from_slice(&[0; 20]);
            p
        })
    }));
    // 8. A call cut short.
    spawn(Box::new(move || {
        let (c, me) = logged_on(addr);
        let whole = call(me, "Login", vec![str_arg("a"), str_arg("b")]);
        abuse(t, "truncated message", c, false, true, move |_| {
            whole[..whole.len() - 5].to_vec()
        })
    }));
    // 9. A frame longer than a client may send.
    spawn(Box::new(move || {
        let c = RawClient::connect(addr).unwrap();
        abuse(t, "oversized frame", c, true, true, |_| {
            let mut b = (100u32 << 20).to_le_bytes().to_vec();
            b.extend_from_slice(&[0xab; 64]);
            b
        })
    }));
    // 10. Position syncs for an entity it does not own: dropped, the client may stay.
    spawn(Box::new(move || {
        let (_victim, theirs) = logged_on(addr);
        let (c, _) = logged_on(addr);
        let out = abuse(
            t,
            "position sync of another's entity",
            c,
            false,
            false,
            |_| sync(theirs),
        );
        drop(_victim);
        out
    }));
    // 11. Garbage bytes, not frames.
    spawn(Box::new(move || {
        let c = RawClient::connect(addr).unwrap();
        let mut rng = Rng::new(12);
        abuse(t, "garbage bytes", c, true, true, move |_| {
            (0..64).map(|_| rng.below(256) as u8).collect()
        })
    }));
    // 12. A heartbeat with bytes after it.
    spawn(Box::new(move || {
        let (c, _) = logged_on(addr);
        abuse(t, "malformed heartbeat", c, false, true, |_| {
            let mut p = mt::HEARTBEAT_FROM_CLIENT.to_le_bytes().to_vec();
            p.extend_from_slice(b"xyz");
            p
        })
    }));
    // 13. A position sync of the wrong length.
    spawn(Box::new(move || {
        let (c, me) = logged_on(addr);
        abuse(t, "malformed position sync", c, false, true, move |_| {
            let mut p = sync(me);
            p.truncate(20);
            p
        })
    }));
    threads
}

/// Connection churn: [`CHURN`] clients in bursts of 40, each closed 0-10 ms after it
/// connects. Returns how many connected.
fn churn(addr: SocketAddr) -> usize {
    let mut rng = Rng::new(99);
    let mut made = 0;
    for _ in 0..CHURN / 40 {
        let mut open: Vec<(TcpStream, Instant)> = Vec::new();
        for _ in 0..40 {
            if let Ok(s) = TcpStream::connect(addr) {
                let at = Instant::now() + Duration::from_millis(rng.below(11));
                open.push((s, at));
                made += 1;
            }
        }
        while !open.is_empty() {
            let now = Instant::now();
            open.retain(|(_, at)| *at > now);
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    made
}

const PROCS: [(Kind, u16); 3] = [(Kind::Dispatcher, 1), (Kind::Game, 1), (Kind::Gate, 1)];

/// How many lines each server's log has.
fn log_lengths(c: &Cluster) -> Vec<usize> {
    PROCS
        .iter()
        .map(|(k, id)| c.log(*k, *id).lines().count())
        .collect()
}

/// The lines each server logged after it had `before` lines, named by server.
fn lines_since(c: &Cluster, before: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    for ((k, id), n) in PROCS.iter().zip(before) {
        for l in c.log(*k, *id).lines().skip(*n) {
            out.push(format!("{k:?}{id}: {l}"));
        }
    }
    out
}

/// The lines added, most frequent shapes first (digits and IDs blurred), for the failure
/// message.
fn shapes(lines: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for l in lines {
        // Drop the timestamp, then blur what varies.
        let body = l.split_once(' ').map_or(l.as_str(), |(_, b)| b);
        let body = body.split_once(' ').map_or(body, |(_, b)| b);
        let shape: String = body
            .split(' ')
            .map(|w| {
                if w.len() >= 12 || w.chars().any(|c| c.is_ascii_digit()) {
                    "#"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        *counts.entry(shape).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    v.iter()
        .take(25)
        .map(|(s, n)| format!("{n:6} x {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// 20 strict bots do their things while 13 kinds of abusive clients (bad arguments, made-up
/// and forbidden methods, another client's method, made-up entity IDs, forbidden message
/// types, truncated and oversized frames, garbage, position syncs of another's entity) keep
/// at it for 10 s and 400 clients connect and leave at once. The bots pass; every abusive
/// connection that should be closed is; and the servers' logs grow by a few lines per
/// abusive connection, however many messages they sent.
#[test]
fn abusive_clients_beside_bots_cost_a_bounded_number_of_log_lines() {
    // The gate's flood limits would close most abusers within a second or two (that is
    // tested in gate_limits.rs); off here, so every kind of bad input keeps coming for the
    // whole run and only the log-line bookkeeping bounds what it costs.
    let mut c = Cluster::new(
        "abuse",
        1,
        1,
        1,
        "[gate_common]\nclient_msg_rate_limit=0\nclient_byte_rate_limit=0\n",
    );
    c.start_all(1, 1, 1).unwrap();
    c.wait_log(
        Kind::Game,
        1,
        "CallNilSpaces works in game",
        1,
        Duration::from_secs(20),
    )
    .unwrap();
    let addr = gate_addr(&c, 0);
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = setting("GOWORLD_ABUSE_SECONDS", ABUSE_SECONDS);
    let bots_n = setting("GOWORLD_ABUSE_BOTS", BOTS);
    let before = log_lengths(&c);

    let bots = c.spawn_bots(bots_n, seconds + 2);
    let abusers = start_abusers(addr, Duration::from_secs(seconds));
    let churned = churn(addr);
    let outcomes: Vec<Outcome> = abusers.into_iter().map(|t| t.join().unwrap()).collect();
    let out = bots.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "test_client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "bots {bots_n}, connected {bots_n}, boot entity {bots_n}, logged in {bots_n}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(", failures 0, disconnects 0"), "{stdout}");

    // Calls to made-up entities are dropped at the dispatcher after its 5 s grace.
    std::thread::sleep(Duration::from_secs(6));
    let added = lines_since(&c, &before);
    let messages: usize = outcomes.iter().map(|o| o.sent).sum();
    // Kinds 5 and 10 each hold a victim connection too.
    let connections = outcomes.len() + 2;
    let budget = LINES_BASE + LINES_PER_CONNECTION * connections;
    eprintln!(
        "abuse: {messages} messages on {connections} connections, {churned} churned \
         connections: {} log lines added (budget {budget})\n{}",
        added.len(),
        shapes(&added)
    );
    for o in &outcomes {
        assert_eq!(
            o.closed, o.expect_closed,
            "{}: closed {} after {} messages, expected closed {}",
            o.kind, o.closed, o.sent, o.expect_closed
        );
    }
    assert!(messages > 10 * connections, "the abusers sent too little");
    assert!(
        added.len() <= budget,
        "{} log lines for {messages} abusive messages on {connections} connections and \
         {churned} churned ones (budget {budget}):\n{}",
        added.len(),
        shapes(&added)
    );
    // The refusals were logged, each kind at least once.
    let text = added.join("\n");
    for needle in [
        "may not call",
        "is a map",
        "arguments, the method takes",
        "is unknown",
    ] {
        assert!(text.contains(needle), "no line with {needle:?}:\n{text}");
    }

    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}
