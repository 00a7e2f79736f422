//! End-to-end tests: real dispatcher, game and gate processes from `target/release` on
//! 127.0.0.1, one cluster at a time. Build them first (`cargo build --release`); the
//! README's test command does.

use std::net::SocketAddr;
use std::time::Duration;

use goworld_common::proto::{mt, ClientBound, ClientMsg};
use goworld_tests::{Cluster, Kind, RawClient};

const T: Duration = Duration::from_secs(10);

fn gate_addr(c: &Cluster, i: usize) -> SocketAddr {
    format!("127.0.0.1:{}", c.gate_ports[i]).parse().unwrap()
}

/// Reads frames until the boot entity's CREATE_ENTITY_ON_CLIENT arrives; returns its type.
fn expect_boot_entity(client: &mut RawClient) -> String {
    loop {
        let p = client
            .recv(T)
            .expect("a frame from the gate")
            .expect("gate kept the connection");
        if let Ok(ClientBound::Entity {
            msg:
                ClientMsg::CreateEntityOnClient {
                    is_player: true,
                    type_name,
                    ..
                },
            ..
        }) = ClientBound::decode(&p)
        {
            return type_name;
        }
    }
}

#[test]
fn deployment_1_1_1_comes_up_greets_a_client_and_stops_cleanly() {
    let mut c = Cluster::new("basic", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    c.wait_log(Kind::Game, 1, "deployment ready", 1, T).unwrap();

    let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
    assert_eq!(expect_boot_entity(&mut client), "Account");
    drop(client);

    // Hot swap signals belong to games: dispatchers and gates ignore them.
    for kind in [Kind::Dispatcher, Kind::Gate] {
        for sig in ["USR1", "USR2", "HUP"] {
            c.proc(kind, 1).signal(sig);
        }
    }
    c.wait_log(Kind::Gate, 1, "signal 1 ignored", 1, T).unwrap();
    c.wait_log(Kind::Dispatcher, 1, "signal 1 ignored", 1, T)
        .unwrap();
    let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
    assert_eq!(expect_boot_entity(&mut client), "Account");
    drop(client);

    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    let errors = c.error_lines();
    assert!(errors.is_empty(), "error lines in the logs: {errors:#?}");
}

#[test]
fn a_garbage_frame_closes_only_its_client() {
    let mut c = Cluster::new("garbage", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    let addr = gate_addr(&c, 0);
    let mut bad = RawClient::connect(addr).unwrap();
    let mut good = RawClient::connect(addr).unwrap();
    expect_boot_entity(&mut good);

    bad.send(&mt::HEARTBEAT_FROM_CLIENT.to_le_bytes()).unwrap();
    assert!(
        !bad.closed_within(Duration::from_millis(300)),
        "a heartbeat is fine"
    );
    // A frame whose type no client may send, with junk after it.
    bad.send(&[0xff, 0xee, 1, 2, 3, 4, 5]).unwrap();
    assert!(
        bad.closed_within(T),
        "the gate closes a client that sends garbage"
    );

    // An oversized frame header closes another client the same way.
    let mut huge = RawClient::connect(addr).unwrap();
    huge.send_raw(&(100u32 << 20).to_le_bytes()).unwrap();
    assert!(huge.closed_within(T));

    good.send(&mt::HEARTBEAT_FROM_CLIENT.to_le_bytes()).unwrap();
    assert!(
        !good.closed_within(Duration::from_millis(500)),
        "the other client stays connected"
    );
    c.wait_log(Kind::Gate, 1, "may not be sent by a client", 1, T)
        .unwrap();
    let errors = c.error_lines();
    assert!(
        errors.is_empty(),
        "bad client input is not a server error: {errors:#?}"
    );
}

#[test]
fn games_and_gate_reconnect_after_a_dispatcher_restart() {
    let mut c = Cluster::new("restart", 2, 2, 1, "");
    c.start_all(2, 2, 1).unwrap();
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "deployment ready", 1, T).unwrap();
    }
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "dispatcher1 acknowledged", 1, T)
            .unwrap();
    }
    c.proc(Kind::Dispatcher, 1).signal("KILL");
    c.proc(Kind::Dispatcher, 1).wait_exit(T).unwrap();
    c.start(Kind::Dispatcher, 1).unwrap();
    // Each game re-announces itself and is acknowledged again; the gate reconnects.
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "dispatcher1 acknowledged", 2, T)
            .unwrap();
    }
    c.wait_log(Kind::Gate, 1, "connected to dispatcher1", 2, T)
        .unwrap();
    c.wait_log(Kind::Dispatcher, 1, "deployment ready", 2, T)
        .unwrap();
    // And the restarted deployment still serves clients, whichever dispatcher they hash to.
    for _ in 0..4 {
        let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
        assert_eq!(expect_boot_entity(&mut client), "Account");
    }
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
}

#[test]
fn test_client_bots_all_get_their_boot_entity() {
    let mut c = Cluster::new("bots", 1, 1, 2, "");
    c.start_all(1, 1, 2).unwrap();
    let out = std::process::Command::new(goworld_tests::bin_dir().join("test_client"))
        .args([
            "-N",
            "300",
            "-duration",
            "2",
            "-strict",
            "-quiet",
            "-log",
            "warn",
            "-configfile",
        ])
        .arg(&c.config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "test_client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bots 300: 300 got their boot entity, 0 disconnects, 0 failures"),
        "{stdout}"
    );
    // The bots picked both gates.
    for gate in 1..=2 {
        assert!(
            c.log(Kind::Gate, gate).contains("left"),
            "gate{gate} served no bot"
        );
    }
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}
