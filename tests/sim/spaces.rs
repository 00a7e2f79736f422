//! Spaces across two games, in memory: an entity with a client entering a space on the other
//! game (GoWorld's three steps, what travels with it, what its client sees, the calls sent to
//! it meanwhile), an enter whose space is destroyed meanwhile, moving to another game by its
//! nil space, calls queued on the old game that follow the entity, and a returning user whose
//! boot entity goes to its avatar's game and hands it the client.
//!
//! Callbacks write `g<game> <entity>.<callback>` lines to a per-thread log (the sim runs every
//! node on the test's thread); entity IDs in the log and in client messages are replaced by
//! the names the test gave them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use goworld_common::id::{dispatcher_for_entity, nil_space_id, EntityId};
use goworld_common::msgpack::{self, Value};
use goworld_common::proto::{ClientBound, ClientMsg, Msg, SyncRecord};
use goworld_game::args;
use goworld_game::prelude::*;
use goworld_game::GameService;
use goworld_tests::sim::{ClientHandle, Sim, BOOT_ENTITY};

thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(ctx: &Ctx, what: String) {
    LOG.with(|l| {
        l.borrow_mut()
            .push(format!("g{} {}.{what}", ctx.game_id(), ctx.id()))
    });
}

fn take_log() -> Vec<String> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

// ---- entity types ---------------------------------------------------------------------------

/// The boot entity, and the one that travels. It records who called it on which game.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Account {
    label: String,
    /// `(n, game it ran on)` of each `Seq` from its client.
    from_client: Vec<(i64, u16)>,
    /// `(n, game it ran on)` of each `SSeq` from a server entity.
    from_server: Vec<(i64, u16)>,
    /// `(n, game it ran on)` of each `DSeq` from game code on the game it is moving to.
    from_dest: Vec<(i64, u16)>,
    /// `(why, game that queued it, game it ran on)` of each `Bye`.
    byes: Vec<(String, u16, u16)>,
    /// The avatar to hand the client to once in its space.
    avatar: Option<EntityId>,
    #[serde(skip)]
    scratch: u32,
}

impl Entity for Account {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(0.0)
            .attr(Attr::<i64>::all_clients("hp"))
            .attr(Attr::<String>::client("secret"))
            .attr(Attr::<String>::server("note"))
            .attr(Attr::<i64>::server("ticks"))
            .attr(Attr::<i64>::server("once"))
            .attr(Attr::<i64>::server("scratch"))
            .method("Enter", Expose::Server, enter::<Account>)
            .method("Prime", Expose::Server, Account::prime)
            .method(
                "ShowScratch",
                Expose::Server,
                |a: &mut Account, ctx: &mut Ctx, (): ()| {
                    ctx.attrs.root().set_int("scratch", i64::from(a.scratch))
                },
            )
            .method(
                "Tick",
                Expose::Server,
                |_: &mut Account, ctx: &mut Ctx, (): ()| bump(ctx, "ticks"),
            )
            .method(
                "Once",
                Expose::Server,
                |_: &mut Account, ctx: &mut Ctx, (): ()| bump(ctx, "once"),
            )
            .method(
                "Seq",
                Expose::OwnClient,
                |a: &mut Account, ctx: &mut Ctx, (n,): (i64,)| {
                    a.from_client.push((n, ctx.game_id()))
                },
            )
            .method(
                "SSeq",
                Expose::Server,
                |a: &mut Account, ctx: &mut Ctx, (n,): (i64,)| {
                    a.from_server.push((n, ctx.game_id()))
                },
            )
            .method(
                "DSeq",
                Expose::Server,
                |a: &mut Account, ctx: &mut Ctx, (n,): (i64,)| a.from_dest.push((n, ctx.game_id())),
            )
            .method(
                "Bye",
                Expose::Server,
                |a: &mut Account, ctx: &mut Ctx, (why, from): (String, u16)| {
                    a.byes.push((why, from, ctx.game_id()))
                },
            )
            .method(
                "Login",
                Expose::Server,
                |a: &mut Account, ctx: &mut Ctx, (avatar, space, x): (EntityId, EntityId, f32)| {
                    a.avatar = Some(avatar);
                    ctx.enter_space(space, Vec3::new(x, 0.0, 0.0));
                },
            );
    }
    fn on_attrs_ready(&mut self, ctx: &mut Ctx) {
        log(ctx, "attrs_ready".into());
    }
    fn on_migrate_out(&mut self, ctx: &mut Ctx) {
        log(ctx, "migrate_out".into());
        let (me, game) = (ctx.id(), ctx.game_id());
        ctx.call(me, "Bye", args!["out", game]);
    }
    fn on_migrate_in(&mut self, ctx: &mut Ctx) {
        log(ctx, "migrate_in".into());
    }
    fn on_enter_space(&mut self, ctx: &mut Ctx) {
        log(ctx, format!("enter_space {}", ctx.space_id()));
        if let Some(avatar) = self.avatar.take() {
            ctx.give_client_to(avatar);
        }
    }
    fn on_leave_space(&mut self, ctx: &mut Ctx, space: EntityId) {
        log(ctx, format!("leave_space {space}"));
    }
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
    fn on_destroy(&mut self, ctx: &mut Ctx) {
        log(ctx, "destroy".into());
    }
}

impl Account {
    /// Gives the entity everything that must travel: attributes of each kind, struct fields,
    /// a repeating timer and a callback, client syncing and a yaw.
    fn prime(&mut self, ctx: &mut Ctx, (): ()) {
        ctx.attrs.root().set_int("hp", 7);
        ctx.attrs.root().set_str("secret", "s");
        ctx.attrs.root().set_str("note", "n");
        self.label = "primed".into();
        self.scratch = 99;
        ctx.add_timer(Duration::from_secs(1), "Tick", vec![]);
        ctx.add_callback(Duration::from_millis(2500), "Once", vec![]);
        ctx.set_client_syncing(true);
        ctx.set_yaw(33.0);
    }
}

fn bump(ctx: &mut Ctx, key: &str) {
    let n = ctx.attrs.as_map().get_int(key) + 1;
    ctx.attrs.root().set_int(key, n);
}

fn enter<T>(_: &mut T, ctx: &mut Ctx, (space, x, z): (EntityId, f32, f32)) {
    ctx.enter_space(space, Vec3::new(x, 0.0, z));
}

/// The space type: AOI at 100; an Account leaving it is sent a `Bye`.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Zone;

impl Entity for Zone {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "Close",
            Expose::Server,
            |_: &mut Zone, ctx: &mut Ctx, (): ()| ctx.destroy(),
        );
    }
    fn on_space_created(&mut self, ctx: &mut Ctx) {
        ctx.enable_aoi(100.0);
    }
    fn on_space_destroy(&mut self, ctx: &mut Ctx) {
        log(ctx, "space_destroy".into());
    }
    fn on_entity_enter_space(&mut self, ctx: &mut Ctx, e: EntityId) {
        log(ctx, format!("entity_enter {e}"));
    }
    fn on_entity_leave_space(&mut self, ctx: &mut Ctx, e: EntityId) {
        log(ctx, format!("entity_leave {e}"));
        if ctx.type_of(&e) == Some(BOOT_ENTITY) {
            let game = ctx.game_id();
            ctx.call(e, "Bye", args!["leave", game]);
        }
    }
}

/// Something to see in a space.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Npc;

impl Entity for Npc {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(0.0)
            .attr(Attr::<String>::all_clients("name"))
            .method("Enter", Expose::Server, enter::<Npc>);
    }
}

/// A returning user's avatar, waiting in its space.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Avatar;

impl Entity for Avatar {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(0.0)
            .attr(Attr::<i64>::client("hellos"))
            .method("Enter", Expose::Server, enter::<Avatar>)
            .method(
                "Hello",
                Expose::OwnClient,
                |_: &mut Avatar, ctx: &mut Ctx, (): ()| bump(ctx, "hellos"),
            );
    }
    fn on_client_connected(&mut self, ctx: &mut Ctx) {
        log(ctx, "client_connected".into());
    }
}

/// Calls `target.SSeq(0..count)`, one every 10 ms.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Pinger {
    target: EntityId,
    next: i64,
    count: i64,
    timer: u32,
}

impl Entity for Pinger {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "Storm",
            Expose::Server,
            |p: &mut Pinger, ctx: &mut Ctx, (target, count): (EntityId, i64)| {
                p.target = target;
                p.count = count;
                p.timer = ctx.add_timer(Duration::from_millis(10), "Ping", vec![]);
            },
        )
        .method(
            "Ping",
            Expose::Server,
            |p: &mut Pinger, ctx: &mut Ctx, (): ()| {
                ctx.call(p.target, "SSeq", args![p.next]);
                p.next += 1;
                if p.next == p.count {
                    ctx.cancel_timer(p.timer);
                }
            },
        );
    }
}

fn types() -> Registry {
    let mut r = Registry::new();
    r.register::<Account>(BOOT_ENTITY).unwrap();
    r.register::<Npc>("Npc").unwrap();
    r.register::<Avatar>("Avatar").unwrap();
    r.register::<Pinger>("Pinger").unwrap();
    r.register_space::<Zone>().unwrap();
    r
}

// ---- helpers --------------------------------------------------------------------------------

/// Two games, one gate, `dispatchers` dispatchers, every link `latency` long; up and ready.
fn up(dispatchers: u16, latency: Duration) -> Sim {
    let mut sim = Sim::deployment_with_types(dispatchers, 2, 1, types);
    sim.set_default_latency(latency);
    sim.run_until_idle();
    for g in 1..=2 {
        assert!(sim.game(g).is_deployment_ready(), "game{g} ready");
    }
    sim
}

/// Runs game-wide code on game `g` now.
fn on_game<R>(sim: &mut Sim, g: u16, f: impl FnOnce(&mut GameCtx) -> R) -> R {
    sim.with_node::<GameService, _>(&format!("game{g}"), |gs, io, now| {
        let mut out = None;
        gs.with_game_ctx(io, now, |c| out = Some(f(c)));
        out.expect("game code ran")
    })
}

/// Where entity `id` lives.
fn home(sim: &Sim, id: &EntityId) -> Option<u16> {
    (1..=2).find(|&g| sim.game(g).world().exists(id))
}

/// Connects a client and waits for its Account: `(client, account, its game)`.
fn connect(sim: &mut Sim) -> (ClientHandle, EntityId, u16) {
    let c = sim.connect_client(1);
    sim.run_until("boot entity", |s| s.client_player(c).is_some());
    let (a, ty) = sim.client_player(c).unwrap();
    assert_eq!(ty, BOOT_ENTITY);
    let g = home(sim, &a).expect("the Account is on a game");
    (c, a, g)
}

fn client_call(eid: EntityId, method: &str, args: Vec<Vec<u8>>) -> Vec<u8> {
    Msg::CallEntityMethodFromClient {
        eid,
        method: method.into(),
        args,
        client_id: None,
    }
    .to_payload()
}

/// The struct fields of Account `id` that tests read, from its serde state (named fields).
struct AccountState {
    label: String,
    from_client: Vec<(i64, u16)>,
    from_server: Vec<(i64, u16)>,
    from_dest: Vec<(i64, u16)>,
    byes: Vec<(String, u16, u16)>,
}

fn account(sim: &Sim, id: &EntityId) -> AccountState {
    let g = home(sim, id).expect("the Account lives");
    let snap = sim.game(g).snapshot(sim.now(), id).unwrap();
    let v = msgpack::decode_exact(&snap.state).unwrap();
    let field = |k: &str| {
        v.map_get(k)
            .unwrap_or_else(|| panic!("no field {k} in {v:?}"))
            .clone()
    };
    let rows = |k: &str| -> Vec<Vec<Value>> {
        field(k)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().to_vec())
            .collect()
    };
    let int = |x: &Value| x.as_i64().unwrap();
    AccountState {
        label: field("label").as_str().unwrap().to_string(),
        from_client: rows("from_client")
            .iter()
            .map(|r| (int(&r[0]), int(&r[1]) as u16))
            .collect(),
        from_server: rows("from_server")
            .iter()
            .map(|r| (int(&r[0]), int(&r[1]) as u16))
            .collect(),
        from_dest: rows("from_dest")
            .iter()
            .map(|r| (int(&r[0]), int(&r[1]) as u16))
            .collect(),
        byes: rows("byes")
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    int(&r[1]) as u16,
                    int(&r[2]) as u16,
                )
            })
            .collect(),
    }
}

fn int_attr(sim: &Sim, id: &EntityId, key: &str) -> i64 {
    let g = home(sim, id).expect("the entity lives");
    sim.game(g).world().attrs(id).unwrap().as_map().get_int(key)
}

/// Replaces entity IDs by names.
struct Names(HashMap<EntityId, String>);

impl Names {
    fn new(pairs: &[(EntityId, &str)]) -> Names {
        Names(pairs.iter().map(|(id, n)| (*id, n.to_string())).collect())
    }

    fn apply(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (id, n) in &self.0 {
            out = out.replace(&id.to_string(), n);
        }
        out
    }

    fn log(&self) -> Vec<String> {
        take_log().iter().map(|s| self.apply(s)).collect()
    }

    /// The entity messages client `c` got from message `from` on, as short lines; syncs
    /// (1502) are left out.
    fn client_lines(&self, sim: &Sim, c: ClientHandle, from: usize) -> Vec<String> {
        sim.client_messages(c)[from..]
            .iter()
            .filter_map(|m| match m {
                ClientBound::Entity { msg, .. } => Some(self.apply(&match msg {
                    ClientMsg::CreateEntityOnClient { is_player, eid, .. } => {
                        format!("create{} {eid}", if *is_player { "*" } else { "" })
                    }
                    ClientMsg::DestroyEntityOnClient { eid, .. } => format!("destroy {eid}"),
                    other => format!("{other:?}"),
                })),
                ClientBound::Sync(_) => None,
                other => Some(format!("{other:?}")),
            })
            .collect()
    }
}

/// The position records client `c` got for entity `id` from message `from` on.
fn syncs_for(sim: &Sim, c: ClientHandle, from: usize, id: EntityId) -> Vec<SyncRecord> {
    sim.client_messages(c)[from..]
        .iter()
        .filter_map(|m| match m {
            ClientBound::Sync(recs) => Some(recs.clone()),
            _ => None,
        })
        .flatten()
        .filter(|r| r.eid == id)
        .collect()
}

/// The numbers `0..n` in order, each once, and the games they ran on: first `old`, then
/// `new`, both at least once.
fn assert_in_order_across(what: &str, got: &[(i64, u16)], n: i64, old: u16, new: u16) {
    let nums: Vec<i64> = got.iter().map(|x| x.0).collect();
    assert_eq!(
        nums,
        (0..n).collect::<Vec<_>>(),
        "{what}: each once, in order"
    );
    let switch = got.iter().position(|x| x.1 == new).unwrap_or(got.len());
    assert!(
        switch > 0 && switch < got.len() && got[switch..].iter().all(|x| x.1 == new),
        "{what}: first on game{old}, then on game{new}: {got:?}"
    );
    assert!(got[..switch].iter().all(|x| x.1 == old));
}

// ---- tests ----------------------------------------------------------------------------------

/// The entity with a client on game A enters a space on game B while its client and an
/// entity on game A call it.
fn enter_a_space_on_the_other_game(dispatchers: u16) {
    let mut sim = up(dispatchers, Duration::from_millis(2));
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    let npc = on_game(&mut sim, gb, |g| g.create_entity_locally("Npc"));
    on_game(&mut sim, gb, |g| {
        g.call(npc, "Enter", args![zone, 5.0f32, 5.0f32])
    });
    on_game(&mut sim, ga, |g| g.call(a, "Prime", vec![]));
    let primed = sim.now();
    sim.run_until_idle();
    sim.advance(primed + Duration::from_millis(1200) - sim.now());
    assert_eq!(int_attr(&sim, &a, "ticks"), 1);
    let names = Names::new(&[(a, "A"), (zone, "Z"), (npc, "N")]);
    take_log();
    let seen = sim.client_messages(c).len();

    // The storm: an entity on game A calls every 10 ms; the client, and game code on game B,
    // call every millisecond.
    let pinger = on_game(&mut sim, ga, |g| g.create_entity_locally("Pinger"));
    on_game(&mut sim, ga, |g| g.call(pinger, "Storm", args![a, 30i64]));
    sim.advance(Duration::from_millis(15));
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![zone, 10.0f32, 10.0f32])
    });
    for i in 0..40i64 {
        sim.client_send(c, &client_call(a, "Seq", args![i]));
        on_game(&mut sim, gb, |g| g.call(a, "DSeq", args![i]));
        sim.advance(Duration::from_millis(1));
    }
    sim.advance(Duration::from_millis(400));

    // It lives on game B now, for the games and for its dispatcher.
    assert_eq!(home(&sim, &a), Some(gb));
    let d = dispatcher_for_entity(&a, dispatchers);
    assert_eq!(sim.dispatcher(d).entity_game(&a), Some(gb));
    assert_eq!(sim.game(gb).world().space_of(&a), Some(zone));
    assert_eq!(
        names.log(),
        [
            format!("g{ga} A.migrate_out"),
            format!("g{gb} A.attrs_ready"),
            format!("g{gb} A.migrate_in"),
            format!("g{gb} Z.entity_enter A"),
            format!("g{gb} A.enter_space Z"),
        ],
        "OnMigrateOut on the old game; OnAttrsReady, OnMigrateIn, then the enter on the new"
    );

    // Attributes, the struct (its skipped field excepted) and the syncing flag travelled.
    for (k, v) in [("hp", "7"), ("secret", "s"), ("note", "n"), ("ticks", "1")] {
        let attrs = sim.game(gb).world().attrs(&a).unwrap().as_map();
        let got = match attrs.get(k) {
            Some(x) => x
                .as_str()
                .map(str::to_string)
                .or_else(|| x.as_int().map(|i| i.to_string())),
            None => None,
        };
        assert_eq!(got.as_deref(), Some(v), "attribute {k}");
    }
    let acc = account(&sim, &a);
    assert_eq!(acc.label, "primed");
    on_game(&mut sim, gb, |g| g.call(a, "ShowScratch", vec![]));
    assert_eq!(
        int_attr(&sim, &a, "scratch"),
        0,
        "a skipped field comes back as its default"
    );
    // Every call, once, in order: those that reached it before it left ran on game A, the
    // rest (held by its dispatcher, or sent after) on game B.
    assert_in_order_across("client calls", &acc.from_client, 40, ga, gb);
    assert_in_order_across("server calls", &acc.from_server, 30, ga, gb);
    // Game B's calls went through the dispatcher until it arrived; those made on game B
    // after it arrived do not overtake the ones still on their way.
    assert_in_order_across("calls from game B", &acc.from_dest, 40, ga, gb);
    assert_eq!(
        acc.byes,
        [("out".to_string(), ga, gb)],
        "the call its OnMigrateOut made to itself followed it"
    );
    let (pos, yaw) = sim.game(gb).world().position_of(&a).unwrap();
    assert_eq!((pos, yaw), (Vec3::new(10.0, 0.0, 10.0), 33.0));

    // The client stayed, and was shown the space, then its neighbour; its player stayed.
    assert!(!sim.client_closed(c));
    assert_eq!(names.client_lines(&sim, c, seen), ["create Z", "create N"]);
    let own = syncs_for(&sim, c, seen, a);
    assert!(
        own.iter()
            .any(|r| (r.x, r.y, r.z, r.yaw) == (10.0, 0.0, 10.0, 33.0)),
        "the client learnt its player's position in the new space: {own:?}"
    );

    // The timers kept their remaining time (give or take the trip): Tick at +2 s, Once at
    // +2.5 s from the Prime.
    sim.advance(primed + Duration::from_millis(1990) - sim.now());
    assert_eq!(int_attr(&sim, &a, "ticks"), 1);
    sim.advance(Duration::from_millis(30));
    assert_eq!(int_attr(&sim, &a, "ticks"), 2);
    assert_eq!(int_attr(&sim, &a, "once"), 0);
    sim.advance(primed + Duration::from_millis(2530) - sim.now());
    assert_eq!(int_attr(&sim, &a, "once"), 1);
    assert_eq!(home(&sim, &a), Some(gb));

    // Client syncing stayed on: the client moves it on game B.
    let sync = Msg::SyncPositionYawFromClient {
        records: vec![SyncRecord {
            eid: a,
            x: 12.0,
            y: 1.0,
            z: 14.0,
            yaw: 7.0,
        }],
    };
    sim.client_send(c, &sync.to_payload());
    sim.advance(Duration::from_millis(300));
    let (pos, yaw) = sim.game(gb).world().position_of(&a).unwrap();
    assert_eq!((pos, yaw), (Vec3::new(12.0, 1.0, 14.0), 7.0));
    assert_eq!(sim.game(gb).world().syncs_ignored(), 0);
}

#[test]
fn an_entity_with_a_client_enters_a_space_on_the_other_game_one_dispatcher() {
    enter_a_space_on_the_other_game(1);
}

#[test]
fn an_entity_with_a_client_enters_a_space_on_the_other_game_three_dispatchers() {
    enter_a_space_on_the_other_game(3);
}

#[test]
fn an_enter_whose_space_is_destroyed_while_the_query_is_in_flight_is_cancelled() {
    let mut sim = up(3, Duration::from_millis(1));
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    sim.run_until_idle();
    let names = Names::new(&[(a, "A"), (zone, "Z")]);
    // The query crawls to the space's dispatcher; the destroy gets there first.
    let dz = dispatcher_for_entity(&zone, 3);
    sim.set_latency(
        &format!("game{ga}"),
        &format!("dispatcher{dz}"),
        Duration::from_millis(20),
    );
    take_log();
    let seen = sim.client_messages(c).len();
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![zone, 0.0f32, 0.0f32])
    });
    sim.advance(Duration::from_millis(1));
    on_game(&mut sim, gb, |g| g.call(zone, "Close", vec![]));
    sim.advance(Duration::from_millis(100));
    assert_eq!(names.log(), [format!("g{gb} Z.space_destroy")]);
    assert_eq!(home(&sim, &a), Some(ga), "it stays where it was");
    assert_eq!(sim.game(ga).world().space_of(&a), Some(nil_space_id(ga)));
    assert_eq!(names.client_lines(&sim, c, seen), Vec::<String>::new());
    sim.set_latency(
        &format!("game{ga}"),
        &format!("dispatcher{dz}"),
        Duration::from_millis(1),
    );

    // Its calls are not held: a client call arrives within a few milliseconds.
    sim.client_send(c, &client_call(a, "Seq", args![0i64]));
    sim.advance(Duration::from_millis(10));
    assert_eq!(account(&sim, &a).from_client, [(0, ga)]);

    // The request is gone: the next enter goes through.
    let zone2 = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![zone2, 0.0f32, 0.0f32])
    });
    sim.advance(Duration::from_millis(100));
    assert_eq!(home(&sim, &a), Some(gb));
    assert_eq!(sim.game(gb).world().space_of(&a), Some(zone2));
}

#[test]
fn an_entity_arriving_for_a_space_destroyed_meanwhile_stays_in_the_nil_space_there() {
    let mut sim = up(1, Duration::from_millis(2));
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    sim.run_until_idle();
    let names = Names::new(&[(a, "A"), (zone, "Z")]);
    take_log();
    let seen = sim.client_messages(c).len();
    sim.set_tracing(true);
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![zone, 0.0f32, 0.0f32])
    });
    // The space goes the moment the dispatcher holds the entity's calls.
    sim.run_until("migrate request at the dispatcher", |s| {
        s.trace().iter().any(|d| {
            d.to == "dispatcher1"
                && matches!(Msg::decode(&d.payload), Ok(Msg::MigrateRequest { .. }))
        })
    });
    on_game(&mut sim, gb, |g| g.call(zone, "Close", vec![]));
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        names.log(),
        [
            format!("g{gb} Z.space_destroy"),
            format!("g{ga} A.migrate_out"),
            format!("g{gb} A.attrs_ready"),
            format!("g{gb} A.migrate_in"),
        ]
    );
    assert_eq!(home(&sim, &a), Some(gb));
    assert_eq!(sim.game(gb).world().space_of(&a), Some(nil_space_id(gb)));
    assert_eq!(names.client_lines(&sim, c, seen), Vec::<String>::new());
    sim.client_send(c, &client_call(a, "Seq", args![0i64]));
    sim.advance(Duration::from_millis(20));
    assert_eq!(account(&sim, &a).from_client, [(0, gb)]);
}

#[test]
fn entering_another_games_nil_space_moves_the_entity_to_that_game() {
    let mut sim = up(3, Duration::ZERO);
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let names = Names::new(&[(a, "A")]);
    take_log();
    let seen = sim.client_messages(c).len();
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![nil_space_id(gb), 1.0f32, 2.0f32])
    });
    sim.run_until_idle();
    assert_eq!(home(&sim, &a), Some(gb));
    assert_eq!(sim.game(gb).world().space_of(&a), Some(nil_space_id(gb)));
    assert_eq!(
        names.log(),
        [
            format!("g{ga} A.migrate_out"),
            format!("g{gb} A.attrs_ready"),
            format!("g{gb} A.migrate_in"),
        ],
        "no enter callbacks for a nil space"
    );
    assert_eq!(
        sim.client_messages(c).len(),
        seen,
        "the client is told nothing"
    );
    sim.client_send(c, &client_call(a, "Seq", args![0i64]));
    sim.run_until_idle();
    assert_eq!(account(&sim, &a).from_client, [(0, gb)]);
    assert!(!sim.client_closed(c));
}

#[test]
fn calls_queued_on_the_old_game_follow_the_entity_through_its_dispatcher() {
    let mut sim = up(3, Duration::from_millis(1));
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let z1 = on_game(&mut sim, ga, |g| g.create_space_locally(1));
    let z2 = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![z1, 0.0f32, 0.0f32])
    });
    sim.run_until_idle();
    let names = Names::new(&[(a, "A"), (z1, "Z1"), (z2, "Z2")]);
    take_log();
    let seen = sim.client_messages(c).len();
    // Leaving Z1 makes Z1 call A, and A's OnMigrateOut calls A: both are queued on game A
    // while A is still there, and run after it left.
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![z2, 0.0f32, 0.0f32])
    });
    sim.advance(Duration::from_millis(100));
    assert_eq!(home(&sim, &a), Some(gb));
    assert_eq!(
        account(&sim, &a).byes,
        [("leave".to_string(), ga, gb), ("out".to_string(), ga, gb)],
        "each once, in the order queued, on the new game"
    );
    assert_eq!(
        names.log(),
        [
            format!("g{ga} Z1.entity_leave A"),
            format!("g{ga} A.leave_space Z1"),
            format!("g{ga} A.migrate_out"),
            format!("g{gb} A.attrs_ready"),
            format!("g{gb} A.migrate_in"),
            format!("g{gb} Z2.entity_enter A"),
            format!("g{gb} A.enter_space Z2"),
        ]
    );
    assert_eq!(
        names.client_lines(&sim, c, seen),
        ["destroy Z1", "create Z2"]
    );
}

#[test]
fn a_returning_user_is_moved_to_its_avatars_game_and_given_to_its_avatar() {
    let mut sim = up(3, Duration::from_millis(1));
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    // The avatar waits in a space on the other game, with something it sees.
    let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    let v = on_game(&mut sim, gb, |g| g.create_entity_locally("Avatar"));
    let npc = on_game(&mut sim, gb, |g| g.create_entity_locally("Npc"));
    on_game(&mut sim, gb, |g| {
        g.call(v, "Enter", args![zone, 0.0f32, 0.0f32]);
        g.call(npc, "Enter", args![zone, -80.0f32, 0.0f32]);
    });
    sim.run_until_idle();
    let names = Names::new(&[(a, "A"), (zone, "Z"), (v, "V"), (npc, "N")]);
    take_log();
    let seen = sim.client_messages(c).len();

    // The Account enters the avatar's space (at 50: it sees V, not N), and there gives V
    // its client, which destroys it.
    on_game(&mut sim, ga, |g| {
        g.call(a, "Login", args![v, zone, 50.0f32])
    });
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        names.client_lines(&sim, c, seen),
        [
            "create Z",
            "create V",
            "destroy V",
            "destroy Z",
            "destroy A",
            "create* V",
            "create Z",
            "create N"
        ]
    );
    assert_eq!(
        names.log(),
        [
            format!("g{ga} A.migrate_out"),
            format!("g{gb} A.attrs_ready"),
            format!("g{gb} A.migrate_in"),
            format!("g{gb} Z.entity_enter A"),
            format!("g{gb} A.enter_space Z"),
            format!("g{gb} Z.entity_leave A"),
            format!("g{gb} A.leave_space Z"),
            format!("g{gb} A.destroy"),
            format!("g{gb} V.client_connected"),
        ]
    );
    assert_eq!(home(&sim, &a), None);
    let d = dispatcher_for_entity(&a, 3);
    assert_eq!(sim.dispatcher(d).entity_game(&a), None);
    assert!(!sim.client_closed(c));
    assert!(sim.game(gb).world().client_of(&v).is_some());

    // The client now drives its avatar.
    sim.client_send(c, &client_call(v, "Hello", vec![]));
    sim.advance(Duration::from_millis(20));
    assert_eq!(int_attr(&sim, &v, "hellos"), 1);
}

#[test]
fn spaces_are_created_on_the_game_asked_for_or_on_any_game() {
    let mut sim = up(3, Duration::from_millis(1));
    let on_2 = on_game(&mut sim, 1, |g| g.create_space_on_game(2, 4));
    let anywhere = on_game(&mut sim, 2, |g| g.create_space_anywhere(6));
    sim.run_until_idle();
    assert_eq!(home(&sim, &on_2), Some(2));
    assert_eq!(sim.game(2).world().space_kind(&on_2), Some(4));
    let d = dispatcher_for_entity(&on_2, 3);
    assert_eq!(sim.dispatcher(d).entity_game(&on_2), Some(2));
    let g = home(&sim, &anywhere).expect("created somewhere");
    assert_eq!(sim.game(g).world().space_kind(&anywhere), Some(6));
    assert_eq!(sim.game(g).world().type_of(&anywhere), Some("__space__"));
    let d = dispatcher_for_entity(&anywhere, 3);
    assert_eq!(sim.dispatcher(d).entity_game(&anywhere), Some(g));
}

/// A client's messages from its player's old game and from its new one reach it in the order
/// the migration implies (the old space and neighbours destroyed before the new ones are
/// created), even when the old game's link to the client's dispatcher is slow: the migration
/// travels through the client's dispatcher, behind those messages. (Through the entity's own
/// dispatcher, with three dispatchers, the new game's creates overtook the old game's
/// destroys.)
#[test]
fn a_migrating_players_client_sees_the_old_space_go_before_the_new_one_comes() {
    let mut sim = up(3, Duration::from_millis(2));
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let cid = match sim.client_messages(c).first() {
        Some(ClientBound::Entity { client_id, .. }) => *client_id,
        other => panic!("no entity message yet: {other:?}"),
    };
    let dc = dispatcher_for_entity(&cid, 3);
    assert_ne!(
        dc,
        dispatcher_for_entity(&a, 3),
        "this test needs the client and its player on different dispatchers; pick other IDs"
    );
    let z1 = on_game(&mut sim, ga, |g| g.create_space_locally(1));
    let n1 = on_game(&mut sim, ga, |g| g.create_entity_locally("Npc"));
    let z2 = on_game(&mut sim, gb, |g| g.create_space_locally(2));
    let n2 = on_game(&mut sim, gb, |g| g.create_entity_locally("Npc"));
    on_game(&mut sim, ga, |g| {
        g.call(n1, "Enter", args![z1, 1.0f32, 1.0f32])
    });
    on_game(&mut sim, gb, |g| {
        g.call(n2, "Enter", args![z2, 1.0f32, 1.0f32])
    });
    sim.run_until_idle();
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![z1, 2.0f32, 2.0f32])
    });
    sim.run_until_idle();
    let names = Names::new(&[(a, "A"), (z1, "Z1"), (n1, "N1"), (z2, "Z2"), (n2, "N2")]);
    let seen = sim.client_messages(c).len();
    // The old game's messages to the client's dispatcher now take 80 ms; everything else 2.
    sim.set_latency(
        &format!("game{ga}"),
        &format!("dispatcher{dc}"),
        Duration::from_millis(80),
    );
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![z2, 3.0f32, 3.0f32])
    });
    sim.advance(Duration::from_millis(500));
    assert_eq!(home(&sim, &a), Some(gb));
    assert_eq!(
        names.client_lines(&sim, c, seen),
        ["destroy N1", "destroy Z1", "create Z2", "create N2"]
    );
}

/// Two players on different games enter a space on each other's game at the same moment,
/// with three dispatchers: both arrive, each exactly once, each client still connected and
/// shown its new space; their clients' calls meanwhile all arrive, once, in order.
#[test]
fn two_players_migrating_into_each_others_games_at_once_both_arrive() {
    let mut sim = up(3, Duration::from_millis(2));
    let (c1, a1, g1) = connect(&mut sim);
    // A second client whose Account lives on the other game.
    let (c2, a2) = loop {
        let (c, a, g) = connect(&mut sim);
        if g != g1 {
            break (c, a);
        }
    };
    let g2 = 3 - g1;
    let z1 = on_game(&mut sim, g1, |g| g.create_space_locally(1));
    let z2 = on_game(&mut sim, g2, |g| g.create_space_locally(2));
    sim.run_until_idle();
    let names = Names::new(&[(a1, "A1"), (a2, "A2"), (z1, "Z1"), (z2, "Z2")]);
    let (seen1, seen2) = (sim.client_messages(c1).len(), sim.client_messages(c2).len());
    // At once: A1 (on g1) enters Z2 (on g2), A2 (on g2) enters Z1 (on g1); their clients
    // keep calling them meanwhile.
    on_game(&mut sim, g1, |g| {
        g.call(a1, "Enter", args![z2, 1.0f32, 1.0f32])
    });
    on_game(&mut sim, g2, |g| {
        g.call(a2, "Enter", args![z1, 1.0f32, 1.0f32])
    });
    for i in 0..20i64 {
        sim.client_send(c1, &client_call(a1, "Seq", args![i]));
        sim.client_send(c2, &client_call(a2, "Seq", args![i]));
        sim.advance(Duration::from_millis(1));
    }
    sim.advance(Duration::from_millis(300));
    assert_eq!(home(&sim, &a1), Some(g2));
    assert_eq!(home(&sim, &a2), Some(g1));
    assert_eq!(sim.game(g2).world().space_of(&a1), Some(z2));
    assert_eq!(sim.game(g1).world().space_of(&a2), Some(z1));
    for (a, g) in [(a1, g2), (a2, g1)] {
        let d = dispatcher_for_entity(&a, 3);
        assert_eq!(sim.dispatcher(d).entity_game(&a), Some(g));
        let acc = account(&sim, &a);
        let seq: Vec<i64> = acc.from_client.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            seq,
            (0..20).collect::<Vec<_>>(),
            "every client call once, in order"
        );
    }
    assert!(!sim.client_closed(c1) && !sim.client_closed(c2));
    assert_eq!(names.client_lines(&sim, c1, seen1), ["create Z2"]);
    assert_eq!(names.client_lines(&sim, c2, seen2), ["create Z1"]);
}

/// The entity's dispatcher dies and comes back (empty) at each moment of a migration: the
/// entity ends up on exactly one game, known there by its dispatcher, its client connected.
#[test]
fn a_dispatcher_restarted_mid_migration_leaves_the_entity_in_exactly_one_place() {
    for kill_after_ms in [0u64, 2, 4, 6, 8, 10, 14, 20] {
        let mut sim = up(3, Duration::from_millis(2));
        let (c, a, ga) = connect(&mut sim);
        let gb = 3 - ga;
        let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
        sim.run_until_idle();
        let d = dispatcher_for_entity(&a, 3);
        on_game(&mut sim, ga, |g| {
            g.call(a, "Enter", args![zone, 1.0f32, 1.0f32])
        });
        sim.advance(Duration::from_millis(kill_after_ms));
        let name = format!("dispatcher{d}");
        sim.kill(&name);
        sim.advance(Duration::from_millis(50));
        sim.restart_fresh(&name);
        sim.advance(Duration::from_secs(3));
        let homes: Vec<u16> = (1..=2)
            .filter(|&g| sim.game(g).world().exists(&a))
            .collect();
        assert_eq!(
            homes.len(),
            1,
            "killed after {kill_after_ms} ms: lives on {homes:?}"
        );
        assert_eq!(
            sim.dispatcher(d).entity_game(&a),
            Some(homes[0]),
            "killed after {kill_after_ms} ms: its dispatcher knows where it is"
        );
        assert!(!sim.client_closed(c), "killed after {kill_after_ms} ms");
        // And it still answers its client.
        sim.client_send(c, &client_call(a, "Seq", args![99i64]));
        sim.advance(Duration::from_millis(100));
        let acc = account(&sim, &a);
        assert!(
            acc.from_client.iter().any(|(i, _)| *i == 99),
            "killed after {kill_after_ms} ms: a client call after the restart arrives"
        );
    }
}

/// The player's gate dies at each moment of its migration: wherever the gate's death is
/// learnt first, the player arrives without a client (it is not bound to the dead gate) and
/// its client-disconnected callback runs (the Account destroys itself), so nothing is left
/// holding the dead client, on either game or in any dispatcher.
#[test]
fn a_migration_whose_clients_gate_died_meanwhile_arrives_without_a_client() {
    for dispatchers in [1u16, 3] {
        for kill_after_ms in 0u64..=12 {
            let mut sim = up(dispatchers, Duration::from_millis(2));
            let (_c, a, ga) = connect(&mut sim);
            let gb = 3 - ga;
            let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
            sim.run_until_idle();
            on_game(&mut sim, ga, |g| {
                g.call(a, "Enter", args![zone, 1.0f32, 1.0f32])
            });
            sim.advance(Duration::from_millis(kill_after_ms));
            sim.kill("gate1");
            sim.advance(Duration::from_secs(3));
            let at = format!("{dispatchers} dispatchers, gate killed after {kill_after_ms} ms");
            for g in 1..=2 {
                assert!(
                    !sim.game(g).world().exists(&a),
                    "{at}: the Account lives on game{g} with client {:?}",
                    sim.game(g).world().client_of(&a)
                );
                let bound: Vec<EntityId> = sim
                    .game(g)
                    .world()
                    .ids()
                    .filter(|id| sim.game(g).world().client_of(id).is_some())
                    .copied()
                    .collect();
                assert!(bound.is_empty(), "{at}: game{g} still binds {bound:?}");
            }
            let d = dispatcher_for_entity(&a, dispatchers);
            assert_eq!(sim.dispatcher(d).entity_game(&a), None, "{at}");
        }
    }
}

/// A small `entity_hold_limit` (5) with three dispatchers: a client's calls that arrive while
/// its player migrates beyond the limit are refused and counted by the dispatcher (which logs
/// them by method in one line when the hold ends); the calls held before the limit arrive
/// once, in order. Nothing is lost without being counted.
#[test]
fn calls_past_the_hold_limit_are_counted_and_the_rest_arrive_in_order() {
    let mut sim = Sim::deployment_with_types(3, 2, 1, types);
    sim.set_hold_limits(5, 1000);
    sim.set_default_latency(Duration::from_millis(2));
    sim.run_until_idle();
    let (c, a, ga) = connect(&mut sim);
    let gb = 3 - ga;
    let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
    sim.run_until_idle();
    let d = dispatcher_for_entity(&a, 3);
    // The new game's announcement to the entity's dispatcher takes a while, so the hold is long.
    sim.set_latency(
        &format!("game{gb}"),
        &format!("dispatcher{d}"),
        Duration::from_millis(50),
    );
    on_game(&mut sim, ga, |g| {
        g.call(a, "Enter", args![zone, 1.0f32, 1.0f32])
    });
    sim.run_until("the migration holds the player's calls", |s| {
        s.dispatcher(d).is_held(&a)
    });
    const SENT: i64 = 30;
    for i in 0..SENT {
        sim.client_send(c, &client_call(a, "Seq", args![i]));
    }
    sim.advance(Duration::from_secs(1));
    assert_eq!(home(&sim, &a), Some(gb));
    let got: Vec<i64> = account(&sim, &a)
        .from_client
        .iter()
        .map(|(i, _)| *i)
        .collect();
    let refused: u64 = (1..=3).map(|d| sim.dispatcher(d).over_hold_limit()).sum();
    assert!(refused > 0, "the limit was reached (got {got:?})");
    // The held queue also carries the player's own calls (its Bye from OnMigrateOut), so
    // fewer than five of these fit; those that did are the first ones, in order, once.
    assert!(!got.is_empty(), "the first calls were held and delivered");
    assert_eq!(got, (0..got.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        got.len() as u64 + refused,
        SENT as u64,
        "every call arrived or was counted"
    );
    assert!(!sim.client_closed(c));
}

/// The game a player is migrating to dies at each moment of the migration (three
/// dispatchers): the player lives on at most one game. If the target died before taking it,
/// it is back on its old game with every call its client made meanwhile, once, in order, and
/// its client still connected; if it died with the target, its client was closed.
#[test]
fn a_migration_whose_target_game_dies_is_rolled_back_or_its_client_closed() {
    let (mut back, mut lost) = (0, 0);
    for kill_after_ms in 0u64..=14 {
        let mut sim = up(3, Duration::from_millis(2));
        let (c, a, ga) = connect(&mut sim);
        let gb = 3 - ga;
        let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
        sim.run_until_idle();
        on_game(&mut sim, ga, |g| {
            g.call(a, "Enter", args![zone, 1.0f32, 1.0f32])
        });
        const SENT: i64 = 20;
        let mut i = 0;
        for ms in 0..25u64 {
            if ms == kill_after_ms {
                sim.kill(&format!("game{gb}"));
            }
            if i < SENT {
                sim.client_send(c, &client_call(a, "Seq", args![i]));
                i += 1;
            }
            sim.advance(Duration::from_millis(1));
        }
        sim.advance(Duration::from_secs(6));
        let at = format!("game{gb} killed after {kill_after_ms} ms");
        if sim.game(ga).world().exists(&a) {
            back += 1;
            let d = dispatcher_for_entity(&a, 3);
            assert_eq!(sim.dispatcher(d).entity_game(&a), Some(ga), "{at}");
            let seq: Vec<i64> = account(&sim, &a)
                .from_client
                .iter()
                .map(|(n, _)| *n)
                .collect();
            assert_eq!(
                seq,
                (0..SENT).collect::<Vec<_>>(),
                "{at}: every call once, in order"
            );
            assert!(!sim.client_closed(c), "{at}: its client stays");
            assert!(sim.game(ga).world().client_of(&a).is_some(), "{at}");
        } else {
            lost += 1;
            assert!(
                sim.client_closed(c),
                "{at}: it died with game{gb}, so its client is closed"
            );
        }
    }
    assert!(
        back > 0 && lost > 0,
        "both outcomes seen: {back} back, {lost} lost"
    );
}

// ---- hot swap -------------------------------------------------------------------------------

/// A player's game is hot-swapped while its client keeps calling it (three dispatchers):
/// every call arrives exactly once, in order, half of them after the restore; the client
/// never notices beyond the pause; the player keeps its attributes, struct, timers, space
/// and client; the restored game is the only one with it.
#[test]
fn a_hot_swapped_game_gets_every_call_made_during_the_swap_once_in_order() {
    let mut sim = up(3, Duration::from_millis(2));
    let (c, a, ga) = connect(&mut sim);
    let zone = on_game(&mut sim, ga, |g| g.create_space_locally(1));
    on_game(&mut sim, ga, |g| {
        g.call(a, "Prime", args![]);
        g.call(a, "Enter", args![zone, 4.0f32, 5.0f32])
    });
    sim.run_until_idle();
    let before = sim.game(ga).snapshot(sim.now(), &a).unwrap();
    const SENT: i64 = 40;
    for i in 0..SENT / 2 {
        sim.client_send(c, &client_call(a, "Seq", args![i]));
        sim.advance(Duration::from_millis(1));
    }
    let frozen = sim.freeze_game(ga, false);
    assert!(!sim.is_running(&format!("game{ga}")));
    for i in SENT / 2..SENT {
        sim.client_send(c, &client_call(a, "Seq", args![i]));
        sim.advance(Duration::from_millis(1));
    }
    sim.advance(Duration::from_millis(200));
    sim.restore_game(ga, &frozen);
    sim.advance(Duration::from_secs(1));
    let seq: Vec<i64> = account(&sim, &a)
        .from_client
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        seq,
        (0..SENT).collect::<Vec<_>>(),
        "every call once, in order"
    );
    assert!(!sim.client_closed(c));
    let after = sim.game(ga).snapshot(sim.now(), &a).unwrap();
    assert_eq!(
        (
            after.client,
            after.space,
            after.pos,
            after.yaw,
            after.syncing_from_client
        ),
        (
            before.client,
            before.space,
            before.pos,
            before.yaw,
            before.syncing_from_client
        )
    );
    assert_eq!(account(&sim, &a).label, "primed", "its struct came back");
    assert_eq!(
        after.timers.len(),
        before.timers.len(),
        "its timers came back"
    );
    assert_eq!(int_attr(&sim, &a, "hp"), 7);
    let d = dispatcher_for_entity(&a, 3);
    assert_eq!(sim.dispatcher(d).entity_game(&a), Some(ga));
    assert_eq!(home(&sim, &a), Some(ga));
    // Its repeating timer keeps ticking in the new process.
    let ticks = int_attr(&sim, &a, "ticks");
    sim.advance(Duration::from_secs(3));
    assert!(
        int_attr(&sim, &a, "ticks") >= ticks + 2,
        "the timer runs after the restore"
    );
}

/// A freeze whose file cannot be written: the game keeps running and the calls its
/// dispatchers held meanwhile are delivered once, in order.
#[test]
fn a_failed_freeze_resumes_and_delivers_every_held_call() {
    let mut sim = up(3, Duration::from_millis(2));
    let (c, a, ga) = connect(&mut sim);
    for i in 0..10i64 {
        sim.client_send(c, &client_call(a, "Seq", args![i]));
        sim.advance(Duration::from_millis(1));
    }
    let _ = sim.freeze_game(ga, true);
    for i in 10..20i64 {
        sim.client_send(c, &client_call(a, "Seq", args![i]));
        sim.advance(Duration::from_millis(1));
    }
    sim.advance(Duration::from_millis(500));
    assert!(sim.is_running(&format!("game{ga}")));
    assert!(!sim.game(ga).is_freezing());
    let seq: Vec<i64> = account(&sim, &a)
        .from_client
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(seq, (0..20).collect::<Vec<_>>());
    assert!(!sim.client_closed(c));
}

/// The player's game is hot-swapped at each moment of the player's migration to the other
/// game: it ends up on exactly one game, known there by its dispatcher, its client still
/// connected and served.
#[test]
fn an_entity_migrating_at_freeze_time_ends_up_in_exactly_one_place() {
    for freeze_after_ms in [0u64, 1, 2, 3, 4, 5, 6, 8, 10, 14] {
        let mut sim = up(3, Duration::from_millis(2));
        let (c, a, ga) = connect(&mut sim);
        let gb = 3 - ga;
        let zone = on_game(&mut sim, gb, |g| g.create_space_locally(1));
        sim.run_until_idle();
        on_game(&mut sim, ga, |g| {
            g.call(a, "Enter", args![zone, 1.0f32, 1.0f32])
        });
        sim.advance(Duration::from_millis(freeze_after_ms));
        let frozen = sim.freeze_game(ga, false);
        sim.advance(Duration::from_millis(100));
        sim.restore_game(ga, &frozen);
        sim.advance(Duration::from_secs(2));
        let at = format!("frozen after {freeze_after_ms} ms");
        let homes: Vec<u16> = (1..=2)
            .filter(|&g| sim.game(g).world().exists(&a))
            .collect();
        assert_eq!(homes.len(), 1, "{at}: lives on {homes:?}");
        let d = dispatcher_for_entity(&a, 3);
        assert_eq!(sim.dispatcher(d).entity_game(&a), Some(homes[0]), "{at}");
        assert!(!sim.client_closed(c), "{at}");
        sim.client_send(c, &client_call(a, "Seq", args![99i64]));
        sim.advance(Duration::from_millis(100));
        assert!(
            account(&sim, &a).from_client.iter().any(|(i, _)| *i == 99),
            "{at}: a client call after the swap arrives"
        );
        // The enter was asked again after the restore, or had completed: it is in the zone.
        assert_eq!(sim.game(gb).world().space_of(&a), Some(zone), "{at}");
    }
}
