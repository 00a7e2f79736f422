//! The gate's heartbeat check and flood limits, on a real gate: a silent client and a flooding
//! client are closed, well-behaved clients are not.

use std::time::{Duration, Instant};

use goworld_common::proto::mt;
use goworld_tests::{Cluster, Kind, RawClient};

use super::{gate_addr, T};

const HEARTBEAT: [u8; 2] = mt::HEARTBEAT_FROM_CLIENT.to_le_bytes();

/// Heartbeat check at 2 s, 50 messages and 64 KiB per second (the least that lets one largest
/// frame through; a bot's mail is 18 KB): a silent raw client goes within
/// the interval plus the check's second (and not before), a raw client sending heartbeats as
/// fast as it can goes at once, and a raw client heartbeating once a second and ten strict
/// `test_client` bots (heartbeats, position syncs, calls) stay for the whole run.
#[test]
fn the_gate_closes_silent_and_flooding_clients_and_keeps_well_behaved_ones() {
    let mut c = Cluster::new(
        "gate-limits",
        1,
        1,
        1,
        "[gate_common]\nheartbeat_check_interval=2\nclient_msg_rate_limit=50\n\
         client_byte_rate_limit=65540\n",
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
    let bots = c.spawn_bots(10, 7);

    // A raw client that heartbeats once a second, for as long as the bots run.
    let steady = std::thread::spawn(move || {
        let mut client = RawClient::connect(addr).unwrap();
        let end = Instant::now() + Duration::from_secs(7);
        while Instant::now() < end {
            client
                .send(&HEARTBEAT)
                .expect("the gate kept the heartbeating client");
            if client.closed_within(Duration::from_secs(1)) {
                panic!("the gate closed a client that heartbeats once a second");
            }
        }
    });

    // A flood of heartbeats, 1000 frames a write.
    let mut flood = RawClient::connect(addr).unwrap();
    let burst: Vec<u8> = (0..1000)
        .flat_map(|_| [2, 0, 0, 0, HEARTBEAT[0], HEARTBEAT[1]])
        .collect();
    flood
        .stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut writes = 0;
    loop {
        match flood.send_raw(&burst) {
            Ok(()) => writes += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the gate stopped reading the flood but did not close it")
            }
            Err(_) => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the gate let a client flood it for 5 s ({writes} writes of 1000 heartbeats)"
        );
    }
    c.wait_log(
        Kind::Gate,
        1,
        "over client_msg_rate_limit = 50 messages/s",
        1,
        T,
    )
    .unwrap();

    // A client that sends nothing: open for the interval, closed within a second after it
    // (the check runs at most once a second), plus a margin for a loaded machine.
    let mut silent = RawClient::connect(addr).unwrap();
    let connected = Instant::now();
    assert!(
        !silent.closed_within(Duration::from_millis(1800)),
        "closed before the heartbeat interval"
    );
    assert!(
        silent.closed_within(Duration::from_millis(2500)),
        "still open {:?} after connecting",
        connected.elapsed()
    );
    c.wait_log(Kind::Gate, 1, "closed: no message for ", 1, T)
        .unwrap();

    steady.join().expect("the heartbeating client stayed");
    let out = bots.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "test_client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bots 10, connected 10, boot entity 10, logged in 10"),
        "{stdout}"
    );
    assert!(stdout.contains(", failures 0, disconnects 0"), "{stdout}");
    // Exactly the silent client and the flooding one were closed by a limit.
    let log = c.log(Kind::Gate, 1);
    assert_eq!(
        log.matches("(heartbeat_check_interval = 2 s)").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("over client_msg_rate_limit").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("over client_byte_rate_limit").count(),
        0,
        "{log}"
    );
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}
