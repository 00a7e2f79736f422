//! Processes dying: what the rest of the deployment does about it.

use goworld_common::reactor::CloseReason;
use goworld_tests::sim::{ClientHandle, Sim};

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
