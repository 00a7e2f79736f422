//! Multi-component tests on the in-memory simulation (`goworld_tests::sim`): real
//! dispatcher, game and gate state machines wired together with a fake clock. Fast and
//! deterministic; the e2e tests check the same things with real processes.

mod faults;
mod login;
mod services;
mod spaces;

use std::collections::BTreeSet;
use std::time::Duration;

use goworld_common::id::dispatcher_for_entity;
use goworld_common::proto::{mt, Msg};
use goworld_common::reactor::CloseReason;
use goworld_tests::sim::{ClientHandle, Sim, BOOT_ENTITY};

/// A deployment that has come up: every game reports the deployment ready.
fn ready(dispatchers: u16, games: u16, gates: u16) -> Sim {
    let mut sim = Sim::deployment(dispatchers, games, gates);
    sim.run_until_idle();
    assert_deployment_ready(&sim, dispatchers, games, gates);
    sim
}

fn assert_deployment_ready(sim: &Sim, dispatchers: u16, games: u16, gates: u16) {
    for g in 1..=games {
        assert!(sim.game(g).is_ready(), "game{g} acknowledged by all");
        assert!(
            sim.game(g).is_deployment_ready(),
            "game{g} deployment ready"
        );
        assert_eq!(
            sim.game(g).online_games().len(),
            usize::from(games),
            "game{g} sees every game online"
        );
    }
    for t in 1..=gates {
        assert!(sim.gate(t).is_ready(), "gate{t} ready");
    }
    for d in 1..=dispatchers {
        let disp = sim.dispatcher(d);
        assert!(disp.is_deployment_ready(), "dispatcher{d} deployment ready");
        assert_eq!(disp.connected_games(), (1..=games).collect::<Vec<_>>());
        assert_eq!(disp.connected_gates(), (1..=gates).collect::<Vec<_>>());
    }
}

/// Connects `n` clients to `gate`, lets everything settle, and checks each got its boot
/// entity; returns the handles and the dispatchers the boot entities hash to.
fn connect_and_greet(sim: &mut Sim, gate: u16, n: usize) -> (Vec<ClientHandle>, BTreeSet<u16>) {
    let clients: Vec<ClientHandle> = (0..n).map(|_| sim.connect_client(gate)).collect();
    sim.run_until_idle();
    let dispatchers = sim.deployment_size().0;
    let mut hit = BTreeSet::new();
    for &c in &clients {
        assert!(
            !sim.client_closed(c),
            "{} stays connected",
            sim.client_name(c)
        );
        let (eid, ty) = sim
            .client_player(c)
            .unwrap_or_else(|| panic!("{} got no boot entity", sim.client_name(c)));
        assert_eq!(ty, BOOT_ENTITY);
        hit.insert(dispatcher_for_entity(&eid, dispatchers));
    }
    (clients, hit)
}

fn total_entities(sim: &Sim, games: u16) -> usize {
    (1..=games).map(|g| sim.game(g).entity_count()).sum()
}

#[test]
fn three_dispatchers_two_games_one_gate_reach_deployment_ready() {
    let sim = ready(3, 2, 1);
    // Without latency everything happens at the start instant.
    assert_eq!(sim.elapsed(), Duration::ZERO);
}

#[test]
fn deployment_comes_up_with_uneven_latencies() {
    let mut sim = Sim::deployment(3, 2, 2);
    sim.set_default_latency(Duration::from_millis(1));
    for (i, d) in (1..=3).enumerate() {
        let disp = format!("dispatcher{d}");
        sim.set_latency("game1", &disp, Duration::from_millis(3 + i as u64 * 7));
        sim.set_latency("game2", &disp, Duration::from_millis(20 - i as u64 * 6));
        sim.set_latency("gate2", &disp, Duration::from_millis(11));
    }
    sim.run_until_idle();
    assert_deployment_ready(&sim, 3, 2, 2);
    assert!(sim.elapsed() >= Duration::from_millis(20));
    let (_, hit) = connect_and_greet(&mut sim, 2, 10);
    assert_eq!(hit.len(), 3);
}

#[test]
fn clients_get_their_boot_entity_through_every_dispatcher() {
    let mut sim = ready(3, 2, 1);
    let (clients, hit) = connect_and_greet(&mut sim, 1, 10);
    assert_eq!(
        hit,
        BTreeSet::from([1, 2, 3]),
        "boot entities hash to every dispatcher"
    );
    assert_eq!(sim.gate(1).client_count(), 10);
    // Ten boot entities (plus the two nil spaces), spread over both games.
    assert_eq!(total_entities(&sim, 2), 12);
    assert!(sim.game(1).entity_count() > 1 && sim.game(2).entity_count() > 1);
    // Each client got exactly one player entity, and its owner is known to its dispatcher.
    for &c in &clients {
        let (eid, _) = sim.client_player(c).unwrap();
        let d = dispatcher_for_entity(&eid, 3);
        assert!(sim.dispatcher(d).entity_game(&eid).is_some());
        let creates = sim
            .client_frames(c)
            .iter()
            .filter(|p| p[..2] == mt::CREATE_ENTITY_ON_CLIENT.to_le_bytes())
            .count();
        assert_eq!(creates, 1);
    }
}

#[test]
fn games_rehandshake_after_a_dispatcher_restart_and_clients_are_still_served() {
    let mut sim = ready(3, 2, 1);
    connect_and_greet(&mut sim, 1, 4);
    sim.set_tracing(true);

    let killed_at = sim.now();
    sim.kill("dispatcher2");
    sim.advance(Duration::from_millis(300));
    for g in 1..=2 {
        assert!(!sim.game(g).is_ready(), "game{g} lost dispatcher2");
    }
    assert!(!sim.gate(1).is_ready());
    sim.restart_fresh("dispatcher2");
    // The next redial (backoff 50, 100, 200 ms → +350 ms) reaches the new dispatcher.
    sim.advance(Duration::from_secs(2));
    assert_deployment_ready(&sim, 3, 2, 1);

    let handshakes: Vec<(String, bool, Duration)> = sim
        .take_trace()
        .into_iter()
        .filter(|d| d.to == "dispatcher2")
        .filter_map(|d| match Msg::decode(&d.payload) {
            Ok(Msg::SetGameId { is_reconnect, .. }) => {
                Some((d.from, is_reconnect, d.at - killed_at))
            }
            _ => None,
        })
        .collect();
    let at = Duration::from_millis(350);
    assert_eq!(
        handshakes,
        vec![
            ("game1".to_string(), true, at),
            ("game2".to_string(), true, at)
        ],
        "each game announces itself again, as a reconnect, at the reactor's redial time"
    );

    let (_, hit) = connect_and_greet(&mut sim, 1, 10);
    assert!(
        hit.contains(&2),
        "clients owned through dispatcher2: {hit:?}"
    );
}

#[test]
fn a_forbidden_message_closes_only_its_client() {
    let mut sim = ready(3, 2, 1);
    let (clients, _) = connect_and_greet(&mut sim, 1, 2);
    let (bad, good) = (clients[0], clients[1]);

    sim.client_send(bad, &mt::HEARTBEAT_FROM_CLIENT.to_le_bytes());
    sim.run_until_idle();
    assert!(!sim.client_closed(bad), "a heartbeat is fine");

    // A server-to-server type no client may send.
    let mut p = mt::CALL_ENTITY_METHOD.to_le_bytes().to_vec();
    p.extend_from_slice(&[1, 2, 3, 4, 5]);
    sim.client_send(bad, &p);
    sim.run_until_idle();
    assert_eq!(
        sim.client_close_reason(bad),
        Some(CloseReason::PeerClosed),
        "the gate closed the client"
    );

    sim.client_send(good, &mt::HEARTBEAT_FROM_CLIENT.to_le_bytes());
    sim.advance(Duration::from_secs(1));
    assert!(!sim.client_closed(good), "the other client stays connected");
    assert_eq!(sim.gate(1).client_count(), 1);
    // The bad client's boot entity went with it; the good one's stays.
    assert_eq!(total_entities(&sim, 2), 2 + 1);
}

#[test]
fn a_client_disconnect_removes_its_boot_entity() {
    let mut sim = ready(3, 2, 1);
    let before = total_entities(&sim, 2);
    let (clients, _) = connect_and_greet(&mut sim, 1, 3);
    assert_eq!(total_entities(&sim, 2), before + 3);
    let eids: Vec<_> = clients
        .iter()
        .map(|&c| sim.client_player(c).unwrap().0)
        .collect();

    sim.client_close(clients[1]);
    sim.run_until_idle();
    assert_eq!(total_entities(&sim, 2), before + 2);
    assert_eq!(sim.gate(1).client_count(), 2);
    let d = dispatcher_for_entity(&eids[1], 3);
    assert_eq!(
        sim.dispatcher(d).entity_game(&eids[1]),
        None,
        "the dispatcher forgot the destroyed entity"
    );

    for &c in [clients[0], clients[2]].iter() {
        sim.client_close(c);
    }
    sim.run_until_idle();
    assert_eq!(total_entities(&sim, 2), before);
    assert_eq!(sim.gate(1).client_count(), 0);
}

#[test]
fn a_gate_crash_removes_its_clients_boot_entities() {
    let mut sim = ready(2, 2, 2);
    let before = total_entities(&sim, 2);
    connect_and_greet(&mut sim, 1, 5);
    let (others, _) = connect_and_greet(&mut sim, 2, 3);
    assert_eq!(total_entities(&sim, 2), before + 8);
    sim.kill("gate1");
    sim.run_until_idle();
    assert_eq!(total_entities(&sim, 2), before + 3);
    for &c in &others {
        assert!(!sim.client_closed(c));
    }
    // The gate comes back and serves again.
    sim.restart_fresh("gate1");
    sim.advance(Duration::from_millis(100));
    assert!(sim.gate(1).is_ready());
    connect_and_greet(&mut sim, 1, 4);
    assert_eq!(total_entities(&sim, 2), before + 7);
}

#[test]
fn a_cut_link_is_redialed_and_the_game_handshakes_again() {
    let mut sim = ready(2, 1, 1);
    sim.set_tracing(true);
    assert!(sim.close_link("game1", "dispatcher1"));
    sim.run_until_idle();
    assert!(!sim.game(1).is_ready());
    assert_eq!(sim.dispatcher(1).connected_games(), Vec::<u16>::new());
    sim.advance(Duration::from_millis(60));
    assert!(sim.game(1).is_ready());
    assert_eq!(sim.dispatcher(1).connected_games(), vec![1]);
    let reconnects = sim
        .take_trace()
        .iter()
        .filter(|d| {
            matches!(
                Msg::decode(&d.payload),
                Ok(Msg::SetGameId {
                    is_reconnect: true,
                    ..
                })
            )
        })
        .count();
    assert_eq!(reconnects, 1);
    connect_and_greet(&mut sim, 1, 4);
}

#[test]
fn clients_connecting_while_a_dispatcher_is_down_are_served_once_it_is_back() {
    let mut sim = ready(3, 2, 1);
    sim.kill("dispatcher3");
    sim.advance(Duration::from_millis(10));
    let clients: Vec<ClientHandle> = (0..10).map(|_| sim.connect_client(1)).collect();
    sim.advance(Duration::from_millis(500));
    let waiting = clients
        .iter()
        .filter(|&&c| sim.client_player(c).is_none())
        .count();
    assert!(waiting > 0, "some clients hash to the dead dispatcher");
    sim.restart_fresh("dispatcher3");
    sim.advance(Duration::from_secs(2));
    for &c in &clients {
        let (eid, ty) = sim
            .client_player(c)
            .unwrap_or_else(|| panic!("{} got no boot entity", sim.client_name(c)));
        assert_eq!(ty, BOOT_ENTITY);
        let d = dispatcher_for_entity(&eid, 3);
        assert!(sim.dispatcher(d).entity_game(&eid).is_some());
    }
}

#[test]
fn clients_connecting_before_the_deployment_is_up_are_served_once_it_is() {
    let mut sim = Sim::deployment(2, 1, 1);
    sim.kill("dispatcher2");
    sim.step();
    let clients: Vec<ClientHandle> = (0..6).map(|_| sim.connect_client(1)).collect();
    sim.advance(Duration::from_millis(200));
    assert!(clients.iter().all(|&c| sim.client_player(c).is_none()));
    sim.restart_fresh("dispatcher2");
    sim.advance(Duration::from_secs(2));
    assert_deployment_ready(&sim, 2, 1, 1);
    for &c in &clients {
        assert!(sim.client_player(c).is_some(), "{}", sim.client_name(c));
    }
}

/// Harness behaviour on a toy node: ordering, latency, close semantics, connection IDs.
mod harness {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant, SystemTime};

    use goworld_common::reactor::{CloseReason, ConnId, Handler, Io, Origin};
    use goworld_tests::sim::Sim;

    /// Records everything; on frame "close" it sends "bye" and closes the connection.
    #[derive(Default)]
    struct Toy {
        log: Vec<String>,
        conns: Vec<ConnId>,
    }

    impl Handler for Toy {
        fn on_open(&mut self, io: &mut dyn Io, _: Instant, c: ConnId, o: Origin, _: SocketAddr) {
            self.log.push(format!("open {o:?}"));
            self.conns.push(c);
            if matches!(o, Origin::Dialed { .. }) {
                io.send(c, b"hello");
                io.send(c, b"world");
            }
        }
        fn on_frame(&mut self, io: &mut dyn Io, _: Instant, c: ConnId, p: &[u8]) {
            self.log
                .push(format!("frame {}", String::from_utf8_lossy(p)));
            if p == b"close" {
                io.send(c, b"bye");
                io.close(c, "asked to");
                io.send(c, b"after close");
            }
        }
        fn on_close(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, r: &CloseReason) {
            self.log.push(format!("close {r:?}"));
        }
        fn on_tick(&mut self, _: &mut dyn Io, _: Instant, _: SystemTime) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn on_signal(&mut self, _: &mut dyn Io, _: Instant, _: i32) {}
        fn should_stop(&self) -> bool {
            false
        }
    }

    fn pair(latency: Duration) -> Sim {
        let mut sim = Sim::new();
        sim.add_node("a", Toy::default());
        sim.add_node("b", Toy::default());
        sim.set_latency("a", "b", latency);
        sim.dial("a", "b", 7, 3);
        sim
    }

    #[test]
    fn frames_arrive_in_order_after_the_latency_and_close_flushes_first() {
        let mut sim = pair(Duration::from_millis(10));
        sim.step();
        assert_eq!(sim.node::<Toy>("a").log, ["open Dialed { dial: 7 }"]);
        assert_eq!(sim.node::<Toy>("b").log, ["open Accepted { listener: 3 }"]);
        sim.advance(Duration::from_millis(9));
        assert_eq!(sim.node::<Toy>("b").log.len(), 1, "not before the latency");
        sim.advance(Duration::from_millis(1));
        assert_eq!(
            sim.node::<Toy>("b").log[1..],
            ["frame hello", "frame world"]
        );

        let c = sim.node::<Toy>("a").conns[0];
        sim.with_node::<Toy, _>("a", |_, io, _| io.send(c, b"close"));
        sim.run_until_idle();
        assert_eq!(sim.elapsed(), Duration::from_millis(30));
        assert_eq!(
            sim.node::<Toy>("b").log[3..],
            ["frame close", "close Local(\"asked to\")"]
        );
        assert_eq!(
            sim.node::<Toy>("a").log[1..],
            ["frame bye", "close PeerClosed"],
            "the frame sent before the close arrives, the one after it does not"
        );
    }

    #[test]
    fn the_dialer_redials_with_backoff_and_gets_new_connection_ids() {
        let mut sim = pair(Duration::ZERO);
        sim.run_until_idle();
        let first = sim.node::<Toy>("a").conns[0];
        sim.kill("b");
        sim.run_until_idle();
        assert_eq!(sim.node::<Toy>("a").log.last().unwrap(), "close PeerClosed");
        // Redials at +50 ms and +150 ms fail, +350 ms succeeds.
        sim.advance(Duration::from_millis(200));
        sim.restart("b", Toy::default());
        sim.advance(Duration::from_millis(149));
        assert_eq!(sim.node::<Toy>("a").conns.len(), 1);
        sim.advance(Duration::from_millis(1));
        let second = sim.node::<Toy>("a").conns[1];
        assert_eq!(second.slot, first.slot, "the slot is reused");
        assert_ne!(second.gen, first.gen, "with a new generation");
        assert_eq!(
            sim.node::<Toy>("b").log[1..],
            ["frame hello", "frame world"]
        );
    }

    #[test]
    fn a_cut_link_closes_both_sides_without_delivering_what_was_in_flight() {
        let mut sim = pair(Duration::from_millis(5));
        sim.step();
        assert!(sim.close_link("b", "a"));
        sim.run_until_idle();
        let reset = "close Io(\"connection reset by peer\")";
        assert_eq!(sim.node::<Toy>("b").log[1..], [reset]);
        assert_eq!(sim.node::<Toy>("a").log[1..], [reset]);
        assert!(!sim.close_link("a", "b"));
    }
}

/// Connection churn: 400 clients connect and close within 0-10 ms, before their boot entity
/// (or its creation on the client) can reach the gate. Each is announced gone exactly once,
/// every notice reaches its boot entity's game, and no notice waits at a dispatcher for an
/// entity that will never come. (The gate used to send a second notice when the boot
/// entity's creation reached it after the client had left, taking it for a new owner; when
/// that notice arrived after the entity was destroyed, the dispatcher waited 5 s for it and
/// then warned, for about one client in five.)
#[test]
fn a_churn_of_clients_that_leave_at_once_announces_each_gone_once_and_leaves_nothing_waiting() {
    for (d, g, seed) in [(1, 1, 7), (3, 2, 11)] {
        let mut sim = Sim::deployment(d, g, 1);
        sim.set_default_latency(Duration::from_millis(1));
        let mut rng = goworld_common::rng::Rng::new(seed);
        for game in 1..=g {
            for disp in 1..=d {
                let ms = 1 + rng.below(4);
                sim.set_latency(
                    &format!("game{game}"),
                    &format!("dispatcher{disp}"),
                    Duration::from_millis(ms),
                );
            }
        }
        sim.run_until_idle();
        assert_deployment_ready(&sim, d, g, 1);
        sim.set_tracing(true);
        let clients: Vec<(ClientHandle, u64)> = (0..400)
            .map(|_| (sim.connect_client(1), rng.below(11)))
            .collect();
        // The notices do not wait at the dispatchers either: a boot entity is routed to its
        // game from the connect notice on, so its disconnect notice goes straight after it.
        let waiting = |sim: &Sim| {
            (1..=d)
                .map(|x| sim.dispatcher(x).unknown_entities_waiting())
                .sum::<usize>()
        };
        for ms in 0..=20 {
            for (c, _) in clients.iter().filter(|(_, at)| *at == ms) {
                sim.client_close(*c);
            }
            sim.advance(Duration::from_millis(1));
            assert_eq!(waiting(&sim), 0, "{d} dispatchers, {g} games, +{ms} ms");
        }
        sim.advance(Duration::from_secs(6));
        let trace = sim.take_trace();
        let count = |t: u16, to_game: bool| {
            (trace.iter())
                .filter(|x| x.payload[..2] == t.to_le_bytes())
                .filter(|x| x.to.starts_with("game") == to_game)
                .count()
        };
        let what = format!("{d} dispatchers, {g} games");
        assert_eq!(count(mt::NOTIFY_CLIENT_CONNECTED, true), 400, "{what}");
        assert_eq!(
            count(mt::NOTIFY_CLIENT_DISCONNECTED, false),
            400,
            "{what}: the gate announces each client gone once"
        );
        assert_eq!(
            count(mt::NOTIFY_CLIENT_DISCONNECTED, true),
            400,
            "{what}: every notice reaches its boot entity's game"
        );
        assert_eq!(
            total_entities(&sim, g),
            usize::from(g),
            "{what}: only nil spaces are left"
        );
        for disp in 1..=d {
            assert_eq!(
                sim.dispatcher(disp).disconnects_for_gone_entities(),
                0,
                "{what}"
            );
        }
        assert_eq!(sim.gate(1).client_count(), 0);
    }
}
