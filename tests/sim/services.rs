//! Services across 3 dispatchers and 2 games, in memory: every shard is claimed and created
//! exactly once, calls by shard key reach the right entity, calls made before the shards
//! are known are held and delivered, a dead game's shards are re-created on the live one,
//! and a dispatcher restart destroys no live service entity.

use std::time::Duration;

use goworld_common::id::{shard_by_key, EntityId};
use goworld_game::args;
use goworld_game::prelude::*;
use goworld_game::GameService;
use goworld_tests::sim::{default_types, Sim};

/// A service that counts the calls it gets.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tally;

impl Entity for Tally {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::server("n"))
            .attr(Attr::<String>::client("last"))
            .method("Add", Expose::Server, Tally::add);
    }
}

impl Tally {
    fn add(&mut self, ctx: &mut Ctx, (k, from): (i64, String)) {
        let n = ctx.attrs.as_map().get_int("n") + k;
        ctx.attrs.root().set_int("n", n);
        ctx.attrs.root().set_str("last", &from);
    }
}

const SHARDS: u32 = 3;

fn types() -> Registry {
    let mut r = default_types();
    r.register_service::<Tally>("Tally", SHARDS).unwrap();
    r
}

/// Where each shard's entity lives: (shard, game, entity), from every game's view.
fn shard_map(sim: &Sim, games: &[u16]) -> Vec<(u32, u16, EntityId)> {
    let mut out = Vec::new();
    for i in 0..SHARDS {
        let views: Vec<Option<EntityId>> = games
            .iter()
            .map(|&g| sim.game(g).world().service_entity("Tally", i))
            .collect();
        let id = views[0].unwrap_or_else(|| panic!("shard {i} unknown on game{}", games[0]));
        assert!(
            views.iter().all(|v| *v == Some(id)),
            "games disagree on shard {i}: {views:?}"
        );
        let homes: Vec<u16> = games
            .iter()
            .copied()
            .filter(|&g| sim.game(g).world().exists(&id))
            .collect();
        assert_eq!(homes.len(), 1, "shard {i} entity {id} lives on {homes:?}");
        out.push((i, homes[0], id));
    }
    // No stray service entities anywhere.
    for &g in games {
        let w = sim.game(g).world();
        let tallies = w.ids().filter(|id| w.type_of(id) == Some("Tally")).count();
        let owned = out.iter().filter(|(_, home, _)| *home == g).count();
        assert_eq!(
            tallies, owned,
            "game{g} has {tallies} Tally entities, owns {owned} shards"
        );
    }
    out
}

fn tally(sim: &Sim, game: u16, id: EntityId) -> i64 {
    sim.game(game)
        .world()
        .attrs(&id)
        .map_or(-1, |a| a.as_map().get_int("n"))
}

#[test]
fn services_are_claimed_called_rehomed_and_survive_a_dispatcher_restart() {
    let mut sim = Sim::deployment_with_types(3, 2, 1, types);
    sim.run_until_idle();
    // A call made before any shard is known is held, not dropped.
    sim.with_node::<GameService, _>("game2", |g, io, now| {
        g.with_game_ctx(io, now, |ctx| {
            ctx.call_service_shard_key("Tally", "early", "Add", args![1000i64, "early"])
        })
    });
    assert_eq!(sim.game(2).world().held_service_calls(), 1);
    sim.advance(Duration::from_secs(3));
    let map = shard_map(&sim, &[1, 2]);
    assert_eq!(sim.game(2).world().held_service_calls(), 0);
    let early = map[shard_by_key("early", SHARDS) as usize];
    assert_eq!(
        tally(&sim, early.1, early.2),
        1000,
        "the held call was delivered"
    );

    // Calls by shard key from either game reach the shard GoWorld's hash names.
    for (i, key) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        let from = if i % 2 == 0 { "game1" } else { "game2" };
        sim.with_node::<GameService, _>(from, |g, io, now| {
            g.with_game_ctx(io, now, |ctx| {
                ctx.call_service_shard_key("Tally", key, "Add", args![1i64, *key])
            })
        });
    }
    sim.advance(Duration::from_millis(100));
    let total: i64 = map.iter().map(|(_, g, id)| tally(&sim, *g, *id)).sum();
    assert_eq!(total, 1004);
    for key in ["alice", "bob", "carol", "dave"] {
        let (_, g, id) = map[shard_by_key(key, SHARDS) as usize];
        let last: Vec<String> = (0..1)
            .map(|_| {
                sim.game(g)
                    .world()
                    .attrs(&id)
                    .unwrap()
                    .as_map()
                    .get_str("last")
                    .to_string()
            })
            .collect();
        let _ = last; // the last writer of a shard shared by two keys may be either
        assert!(tally(&sim, g, id) >= 1, "{key}'s shard got nothing");
    }

    // A dispatcher restart destroys no live service entity.
    sim.kill("dispatcher2");
    sim.advance(Duration::from_millis(200));
    sim.restart_fresh("dispatcher2");
    sim.advance(Duration::from_secs(3));
    let after_restart = shard_map(&sim, &[1, 2]);
    assert_eq!(
        after_restart, map,
        "every shard kept its entity and its game"
    );

    // A game that dies: its shards are claimed and re-created on the live game. Calls made
    // meanwhile wait for the new shard entities (never going to the dead ones, whose IDs
    // stay in the registry until the new owner registers its own) and all arrive.
    let on_game1 = map.iter().filter(|(_, g, _)| *g == 1).count();
    let before_on_game2: i64 = map
        .iter()
        .filter(|(_, g, _)| *g == 2)
        .map(|(_, g, id)| tally(&sim, *g, *id))
        .sum();
    sim.kill("game1");
    // Calls game2 made before it heard of the death went to the dead entities (lost with the
    // process, or reported by their dispatcher); from the news on, none may be lost.
    sim.run_until("game2 hears game1 is down", |s| {
        !s.game(2).online_games().contains(&1)
    });
    let mut sent = 0i64;
    for round in 0..300 {
        for key in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            sim.with_node::<GameService, _>("game2", |g, io, now| {
                g.with_game_ctx(io, now, |ctx| {
                    ctx.call_service_shard_key("Tally", key, "Add", args![1i64, round.to_string()])
                })
            });
            sent += 1;
        }
        sim.advance(Duration::from_millis(10));
    }
    sim.advance(Duration::from_secs(10));
    let rehomed = shard_map(&sim, &[2]);
    let after: i64 = rehomed.iter().map(|(_, g, id)| tally(&sim, *g, *id)).sum();
    assert_eq!(
        after - before_on_game2,
        sent,
        "every call made while the dead game's shards moved arrived once"
    );
    assert!(rehomed.iter().all(|(_, g, _)| *g == 2));
    let moved = rehomed.iter().zip(&map).filter(|(a, b)| a.2 != b.2).count();
    assert_eq!(
        moved, on_game1,
        "exactly the dead game's shards were re-created"
    );
}

/// A boot entity whose client can set its own filter properties.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tagged;

impl Entity for Tagged {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("SetProp", Expose::OwnClient, Tagged::set_prop);
    }
}

impl Tagged {
    fn set_prop(&mut self, ctx: &mut Ctx, (key, val): (String, String)) {
        ctx.set_client_filter_prop(&key, &val);
    }
}

fn tagged_types() -> Registry {
    let mut r = Registry::new();
    r.register::<Tagged>("Account").unwrap();
    r
}

#[test]
fn filtered_calls_reach_each_matching_client_once_with_three_dispatchers() {
    use goworld_common::msgpack::write_str;
    use goworld_common::proto::{ClientBound, FilterOp, Msg};
    let mut sim = Sim::deployment_with_types(3, 2, 2, tagged_types);
    sim.run_until_idle();
    let mut clients = Vec::new();
    for i in 0..8u32 {
        let h = sim.connect_client(1 + (i % 2) as u16);
        sim.run_until_idle();
        let (eid, _) = sim.client_player(h).expect("boot entity");
        let (mut k, mut v) = (Vec::new(), Vec::new());
        write_str(&mut k, "level");
        write_str(&mut v, &format!("{}", 10 + i));
        let call = Msg::CallEntityMethodFromClient {
            eid,
            method: "SetProp".into(),
            args: vec![k, v],
            client_id: None,
        };
        sim.client_send(h, &call.to_payload());
        clients.push((h, 10 + i));
    }
    sim.run_until_idle();
    let count_calls = |sim: &Sim, h| {
        sim.client_messages(h)
            .iter()
            .filter(|m| matches!(m, ClientBound::Filtered { method, .. } if method == "OnLevel"))
            .count()
    };
    // "level" >= "14" bytewise: 14..17 (4 clients), once each, over 2 gates and 3 dispatchers.
    sim.with_node::<GameService, _>("game2", |g, io, now| {
        g.with_game_ctx(io, now, |ctx| {
            ctx.call_filtered_clients("level", FilterOp::Gte, "14", "OnLevel", vec![])
        })
    });
    sim.run_until_idle();
    for (h, level) in &clients {
        let want = usize::from(*level >= 14);
        assert_eq!(count_calls(&sim, *h), want, "client with level {level}");
    }
    // The empty key reaches every client once.
    sim.with_node::<GameService, _>("game1", |g, io, now| {
        g.with_game_ctx(io, now, |ctx| {
            ctx.call_filtered_clients("", FilterOp::Eq, "", "OnLevel", vec![])
        })
    });
    sim.run_until_idle();
    for (h, level) in &clients {
        assert_eq!(
            count_calls(&sim, *h),
            usize::from(*level >= 14) + 1,
            "client with level {level}"
        );
    }
}

/// A game holding service shards is hot-swapped while both games keep calling the shards:
/// the shards come back as the same entities with their state, no game re-creates or
/// re-claims them, and every call made during the swap is counted once.
#[test]
fn service_shards_survive_a_hot_swap_with_their_state_and_calls() {
    let mut sim = Sim::deployment_with_types(3, 2, 1, types);
    sim.run_until_idle();
    sim.advance(Duration::from_secs(3));
    let map = shard_map(&sim, &[1, 2]);
    let g = map[0].1;
    let call_all = |sim: &mut Sim, from: &str, k: i64| {
        sim.with_node::<GameService, _>(from, |g, io, now| {
            g.with_game_ctx(io, now, |ctx| {
                for key in ["alice", "bob", "carol", "dave", "eve", "frank"] {
                    ctx.call_service_shard_key("Tally", key, "Add", args![k, key])
                }
            })
        });
    };
    call_all(&mut sim, "game1", 1);
    call_all(&mut sim, "game2", 1);
    sim.advance(Duration::from_millis(50));
    let frozen = sim.freeze_game(g, false);
    let other = format!("game{}", 3 - g);
    call_all(&mut sim, &other, 10);
    sim.advance(Duration::from_millis(300));
    sim.restore_game(g, &frozen);
    sim.advance(Duration::from_secs(3));
    call_all(&mut sim, "game1", 100);
    call_all(&mut sim, "game2", 100);
    sim.advance(Duration::from_millis(300));
    let after = shard_map(&sim, &[1, 2]);
    assert_eq!(after, map, "the same shard entities, where they were");
    let total: i64 = after.iter().map(|(_, g, id)| tally(&sim, *g, *id)).sum();
    assert_eq!(
        total,
        6 * (1 + 1 + 10 + 100 + 100),
        "every call counted once"
    );
}

/// A freeze while service calls wait for their shards is refused (they are not in the freeze
/// file, so they would be lost): the game keeps running and the calls are delivered.
#[test]
fn a_freeze_with_service_calls_waiting_for_their_shards_is_refused() {
    let mut sim = Sim::deployment_with_types(3, 2, 1, types);
    sim.run_until_idle();
    sim.with_node::<GameService, _>("game2", |g, io, now| {
        g.with_game_ctx(io, now, |ctx| {
            ctx.call_service_shard_key("Tally", "early", "Add", args![7i64, "early"])
        })
    });
    assert_eq!(sim.game(2).world().held_service_calls(), 1);
    sim.signal("game2", goworld_common::sig::SIGUSR1);
    sim.advance(Duration::from_millis(50));
    assert!(!sim.game(2).is_freezing(), "refused, still running");
    assert!(sim.is_running("game2"));
    sim.advance(Duration::from_secs(3));
    let map = shard_map(&sim, &[1, 2]);
    let early = map[shard_by_key("early", SHARDS) as usize];
    assert_eq!(
        tally(&sim, early.1, early.2),
        7,
        "the held call was delivered"
    );
}
