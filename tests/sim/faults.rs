//! Processes dying: what the rest of the deployment does about it.

use goworld_common::id::dispatcher_for_entity;
use goworld_common::proto::ClientBound;
use goworld_common::reactor::CloseReason;
use goworld_tests::sim::{ClientHandle, Sim};
use std::time::Duration;

/// The game the boot entity of client `c` lives on.
fn game_of_client(sim: &Sim, c: ClientHandle, games: u16) -> u16 {
    let (eid, _) = sim.client_player(c).expect("boot entity");
    (1..=games)
        .find(|&g| sim.game(g).world().exists(&eid))
        .expect("on some game")
}

/// A game dies (kill -9): every gate closes the clients whose player lived there, through each
/// dispatcher's share of that game's entities; the other clients stay and keep being served.
#[test]
fn a_dead_games_clients_are_closed_by_their_gates_and_the_others_stay() {
    let mut sim = Sim::deployment(3, 2, 2);
    sim.run_until_idle();
    let clients: Vec<(ClientHandle, u16)> = (0..12)
        .map(|i| sim.connect_client(1 + (i % 2) as u16))
        .map(|c| (c, 0))
        .collect();
    sim.run_until("boot entities", |s| {
        clients.iter().all(|(c, _)| s.client_player(*c).is_some())
    });
    let clients: Vec<(ClientHandle, u16)> = clients
        .into_iter()
        .map(|(c, _)| (c, game_of_client(&sim, c, 2)))
        .collect();
    assert!(clients.iter().any(|(_, g)| *g == 1) && clients.iter().any(|(_, g)| *g == 2));
    sim.kill("game1");
    sim.run_until("the dead game's clients are closed", |s| {
        clients
            .iter()
            .filter(|(_, g)| *g == 1)
            .all(|(c, _)| s.client_closed(*c))
    });
    sim.settle();
    for (c, g) in &clients {
        if *g == 1 {
            match sim.client_close_reason(*c) {
                Some(CloseReason::PeerClosed) => {}
                other => panic!("closed by its gate, got {other:?}"),
            }
        } else {
            assert!(!sim.client_closed(*c), "a client of game2 stays");
        }
    }
    // A new client is still served, by the surviving game.
    let late = sim.connect_client(2);
    sim.run_until("a new client gets its boot entity", |s| {
        s.client_player(late).is_some()
    });
    let (eid, _) = sim.client_player(late).unwrap();
    assert!(sim.game(2).world().exists(&eid));
}

/// A dispatcher dies (kill -9) and comes back: the gate closes the clients whose messages it
/// carried (what it held for them is lost, so their view of the world may be wrong), the
/// others stay and are still served, and their owners on the games learn they left.
#[test]
fn a_dead_dispatchers_clients_are_closed_and_the_others_stay() {
    let mut sim = Sim::deployment(3, 2, 1);
    sim.run_until_idle();
    let clients: Vec<ClientHandle> = (0..12).map(|_| sim.connect_client(1)).collect();
    sim.run_until("boot entities", |s| {
        clients.iter().all(|c| s.client_player(*c).is_some())
    });
    let via = |sim: &Sim, c: ClientHandle| match sim.client_messages(c).first() {
        Some(ClientBound::Entity { client_id, .. }) => dispatcher_for_entity(client_id, 3),
        other => panic!("no entity message yet: {other:?}"),
    };
    let carried: Vec<bool> = clients.iter().map(|c| via(&sim, *c) == 2).collect();
    assert!(carried.iter().any(|x| *x) && carried.iter().any(|x| !x));
    sim.kill("dispatcher2");
    sim.advance(Duration::from_millis(300));
    sim.restart_fresh("dispatcher2");
    sim.advance(Duration::from_secs(2));
    for (c, gone) in clients.iter().zip(&carried) {
        assert_eq!(sim.client_closed(*c), *gone, "{}", sim.client_name(*c));
        let (eid, _) = sim.client_player(*c).unwrap();
        let owner_has_client = (1..=2).any(|g| sim.game(g).world().client_of(&eid).is_some());
        assert_eq!(
            owner_has_client,
            !gone,
            "{}: its owner knows",
            sim.client_name(*c)
        );
    }
    // New clients are served, whichever dispatcher carries them.
    let late: Vec<ClientHandle> = (0..6).map(|_| sim.connect_client(1)).collect();
    sim.run_until("new clients get their boot entities", |s| {
        late.iter().all(|c| s.client_player(*c).is_some())
    });
    assert!(late.iter().any(|c| via(&sim, *c) == 2));
}
