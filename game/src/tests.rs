//! In-memory tests of the game's dispatcher handshakes and its boot entities.

use super::*;
use crate::api::{Act, Attr, Ctx, Entity, TypeDesc};
use goworld_common::proto::ClientMsg;
use goworld_common::testio::MemIo;

/// A boot entity like test_game's: it goes away with its client.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Account;

impl Entity for Account {
    fn describe(_desc: &mut TypeDesc<Self>) {}
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
}

fn conn(slot: u32) -> ConnId {
    ConnId { slot, gen: 1 }
}

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

/// Settings of game `id` with one dispatcher, boot entity type `boot`, and a wall clock at
/// 1 700 000 000 unix seconds at `t0`.
fn settings(id: u16, boot: &str, t0: Instant) -> Settings {
    Settings {
        game_id: id,
        desired_dispatchers: 1,
        ban_boot_entity: false,
        boot_entity: boot.into(),
        restore: false,
        clock: WallClock {
            at: t0,
            unix_secs: 1_700_000_000,
        },
    }
}

fn game(id: u16, dispatchers: u16) -> GameService {
    let s = Settings {
        game_id: id,
        desired_dispatchers: dispatchers,
        ban_boot_entity: false,
        boot_entity: "Account".into(),
        restore: false,
        clock: WallClock {
            at: Instant::now(),
            unix_secs: 1_700_000_000,
        },
    };
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    GameService::new(
        s,
        IdGen::new([1, 2, 3], id),
        types,
        Stores::NONE,
        Rng::new(1),
    )
}

/// Answers the game's storage and KVDB requests from `mem` at once, as many rounds as the
/// answers start (the simulated-time way of giving a unit test its stores: no threads).
pub(crate) fn answer_stores(
    g: &mut GameService,
    io: &mut MemIo,
    now: Instant,
    mem: &crate::store::mem::MemStores,
) {
    for _ in 0..100 {
        let reqs = g.take_store_requests();
        if reqs.is_empty() {
            return;
        }
        g.on_store_results(io, now, mem.answer_all(reqs));
    }
    panic!("store answers keep making requests");
}

fn ack(disp: u16, games: Vec<u16>, ready: bool) -> Vec<u8> {
    Msg::SetGameIdAck {
        disp_id: disp,
        deployment_ready: ready,
        games,
        rejected: vec![],
        kvreg: vec![("Service/X#0".into(), "game1".into())],
        declared_dead: false,
    }
    .to_payload()
}

#[test]
fn announces_its_nil_space_to_the_right_dispatcher_and_becomes_ready() {
    let mut io = MemIo::new();
    let mut g = game(1, 2);
    let now = Instant::now();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_open(&mut io, now, conn(2), Origin::Dialed { dial: 2 }, addr());
    let nil = nil_space_id(1);
    let owner = goworld_common::id::dispatcher_for_entity(&nil, 2);
    for (c, p) in io.take() {
        let Msg::SetGameId {
            game_id,
            entities,
            version,
            is_reconnect,
            ..
        } = Msg::decode(&p).unwrap()
        else {
            panic!()
        };
        assert_eq!(game_id, 1);
        assert!(!is_reconnect);
        assert_eq!(version, Some(INTERNAL_PROTOCOL_VERSION));
        let expect = if c.slot == u32::from(owner) {
            vec![nil]
        } else {
            vec![]
        };
        assert_eq!(entities, expect);
    }
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], false));
    assert!(!g.is_ready());
    g.on_frame(&mut io, now, conn(2), &ack(2, vec![1, 2], true));
    assert!(g.is_ready());
    assert!(g.is_deployment_ready());
    assert_eq!(
        g.take_events(),
        vec![GameEvent::Ready, GameEvent::DeploymentReady]
    );
    assert_eq!(
        g.online_games().iter().copied().collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(g.kvreg().count(), 1);
}

#[test]
fn online_games_are_deduplicated_across_dispatchers() {
    let mut io = MemIo::new();
    let mut g = game(1, 2);
    let now = Instant::now();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_open(&mut io, now, conn(2), Origin::Dialed { dial: 2 }, addr());
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], false));
    g.on_frame(&mut io, now, conn(2), &ack(2, vec![1], false));
    let up = Msg::NotifyGameConnected { game_id: 3 }.to_payload();
    g.on_frame(&mut io, now, conn(1), &up);
    g.on_frame(&mut io, now, conn(2), &up);
    assert!(g.online_games().contains(&3));
    // Game 3 stays online while any dispatcher still reports it.
    g.on_frame(
        &mut io,
        now,
        conn(1),
        &Msg::NotifyGameDisconnected { game_id: 3 }.to_payload(),
    );
    assert!(g.online_games().contains(&3));
    g.on_frame(
        &mut io,
        now,
        conn(2),
        &Msg::NotifyGameDisconnected { game_id: 3 }.to_payload(),
    );
    assert!(!g.online_games().contains(&3));
}

#[test]
fn a_reconnect_says_so_and_queued_output_waits_for_the_new_ack() {
    let mut io = MemIo::new();
    let mut g = game(1, 1);
    let now = Instant::now();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], false));
    g.on_close(&mut io, now, conn(1), &CloseReason::PeerClosed);
    io.take();
    g.kvreg_register(&mut io, "Service/Y#0", "game1", false);
    assert!(io.sent.is_empty(), "queued while the dispatcher is down");
    g.on_open(&mut io, now, conn(2), Origin::Dialed { dial: 1 }, addr());
    let sent = io.take();
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        Msg::decode(&sent[0].1).unwrap(),
        Msg::SetGameId {
            is_reconnect: true,
            ..
        }
    ));
    g.on_frame(&mut io, now, conn(2), &ack(1, vec![1], false));
    let sent = io.take();
    assert!(matches!(
        Msg::decode(&sent[0].1).unwrap(),
        Msg::KvregRegister { .. }
    ));
}

#[test]
fn a_connecting_client_gets_its_boot_entity() {
    let mut io = MemIo::new();
    let mut g = game(1, 1);
    let now = Instant::now();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], true));
    io.take();
    let cid = EntityId::parse("clientclientcl01").unwrap();
    let boot = EntityId::parse("bootbootbootbo01").unwrap();
    let p = Msg::NotifyClientConnected {
        client_id: cid,
        boot_eid: boot,
        gate_id: Some(4),
    }
    .to_payload();
    g.on_frame(&mut io, now, conn(1), &p);
    let msgs: Vec<Msg> = io
        .take()
        .into_iter()
        .map(|(_, p)| Msg::decode(&p).unwrap())
        .collect();
    assert_eq!(msgs[0], Msg::NotifyCreateEntity { eid: boot });
    assert_eq!(
        msgs[1],
        Msg::ToClient {
            gate_id: 4,
            client_id: cid,
            msg: ClientMsg::ClearClientProxyFilterProps
        }
    );
    match &msgs[2] {
        Msg::ToClient {
            gate_id: 4,
            client_id,
            msg:
                ClientMsg::CreateEntityOnClient {
                    is_player: true,
                    eid,
                    type_name,
                    client_data,
                    ..
                },
        } => {
            assert_eq!(
                (*client_id, *eid, type_name.as_str()),
                (cid, boot, "Account")
            );
            assert_eq!(client_data, &vec![0x80]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(g.entity_count(), 2);
    let bye = Msg::NotifyClientDisconnected {
        owner_eid: boot,
        client_id: cid,
    }
    .to_payload();
    g.on_frame(&mut io, now, conn(1), &bye);
    assert_eq!(g.entity_count(), 1);
}

/// Counts ticks in an attribute; stops its timer after three.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Ticker {
    timer: crate::api::TimerId,
}

impl Entity for Ticker {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::client("ticks"))
            .attr(Attr::<i64>::server("once"))
            .method("Tick", crate::api::Expose::Server, Ticker::tick)
            .method("Once", crate::api::Expose::Server, Ticker::once);
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        self.timer = ctx.add_timer(
            std::time::Duration::from_millis(100),
            "Tick",
            crate::args![5i64],
        );
        ctx.add_callback(std::time::Duration::from_millis(250), "Once", vec![]);
    }
}

impl Ticker {
    fn tick(&mut self, ctx: &mut Ctx, (step,): (i64,)) {
        let n = ctx.attrs.as_map().get_int("ticks") + step;
        ctx.attrs.root().set_int("ticks", n);
        if n >= 15 {
            ctx.cancel_timer(self.timer);
        }
    }
    fn once(&mut self, ctx: &mut Ctx, (): ()) {
        let n = ctx.attrs.as_map().get_int("once") + 1;
        ctx.attrs.root().set_int("once", n);
    }
}

#[test]
fn entity_timers_fire_by_name_repeat_and_cancel() {
    let mut io = MemIo::new();
    let t0 = Instant::now();
    let s = settings(1, "Ticker", t0);
    let mut types = Registry::new();
    types.register::<Ticker>("Ticker").unwrap();
    let mut g = GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    let cid = EntityId::parse("clientclientcl01").unwrap();
    let id = EntityId::parse("tickertickerti01").unwrap();
    let p = Msg::NotifyClientConnected {
        client_id: cid,
        boot_eid: id,
        gate_id: Some(1),
    }
    .to_payload();
    g.on_frame(&mut io, t0, conn(1), &p);
    let ticks = |g: &GameService| g.world().attrs(&id).unwrap().as_map().get_int("ticks");
    let once = |g: &GameService| g.world().attrs(&id).unwrap().as_map().get_int("once");
    assert_eq!(
        g.next_deadline(),
        Some(t0 + std::time::Duration::from_millis(100))
    );
    // Step through the deadlines the way the reactor does.
    let mut now = t0;
    for _ in 0..10 {
        now = g
            .next_deadline()
            .unwrap_or(now + std::time::Duration::from_millis(100));
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
    }
    assert_eq!(ticks(&g), 15, "three ticks of 5, then cancelled");
    assert_eq!(once(&g), 1, "a callback fires once");
    assert_eq!(g.next_deadline(), None, "no timer left");
    // The ticks reached the client as attribute changes (Client flag).
    let changes = io
        .take()
        .into_iter()
        .filter(|(_, p)| {
            matches!(
                Msg::decode(p),
                Ok(Msg::ToClient {
                    msg: ClientMsg::NotifyMapAttrChange { .. },
                    ..
                })
            )
        })
        .count();
    assert_eq!(changes, 3);
}

#[test]
fn a_client_that_keeps_calling_what_it_may_not_is_disconnected() {
    let mut io = MemIo::new();
    let mut g = game(1, 1);
    let now = Instant::now();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], true));
    let cid = EntityId::parse("clientclientcl01").unwrap();
    let boot = EntityId::parse("bootbootbootbo01").unwrap();
    let p = Msg::NotifyClientConnected {
        client_id: cid,
        boot_eid: boot,
        gate_id: Some(4),
    }
    .to_payload();
    g.on_frame(&mut io, now, conn(1), &p);
    io.take();
    let bad = Msg::CallEntityMethodFromClient {
        eid: boot,
        method: "Destroy".into(),
        args: vec![],
        client_id: Some(cid),
    }
    .to_payload();
    let kicks = |io: &mut MemIo| {
        io.take()
            .into_iter()
            .filter(|(_, p)| {
                matches!(
                    Msg::decode(p),
                    Ok(Msg::ToClient {
                        gate_id: 4,
                        msg: ClientMsg::KickClient { .. },
                        ..
                    })
                )
            })
            .count()
    };
    for _ in 0..world::REFUSED_CALLS_LIMIT - 1 {
        g.on_frame(&mut io, now, conn(1), &bad);
    }
    assert_eq!(kicks(&mut io), 0, "a few refused calls are only logged");
    g.on_frame(&mut io, now, conn(1), &bad);
    assert_eq!(
        kicks(&mut io),
        1,
        "the gate is asked to close the client once"
    );
    g.on_frame(&mut io, now, conn(1), &bad);
    assert_eq!(kicks(&mut io), 0);
}

/// A type whose method panics halfway, after changing an attribute.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Fragile;

impl Entity for Fragile {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::client("n"))
            .method("Boom", crate::api::Expose::OwnClient, Fragile::boom)
            .method("Inc", crate::api::Expose::OwnClient, Fragile::inc);
    }
}

impl Fragile {
    fn boom(&mut self, ctx: &mut Ctx, (): ()) {
        ctx.attrs.root().set_int("n", 100);
        panic!("game code bug");
    }
    fn inc(&mut self, ctx: &mut Ctx, (): ()) {
        let n = ctx.attrs.as_map().get_int("n") + 1;
        ctx.attrs.root().set_int("n", n);
    }
}

#[test]
fn a_panic_in_game_code_is_caught_and_the_entity_keeps_running() {
    let mut io = MemIo::new();
    let t0 = Instant::now();
    let s = settings(1, "Fragile", t0);
    let mut types = Registry::new();
    types.register::<Fragile>("Fragile").unwrap();
    let mut g = GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    let cid = EntityId::parse("clientclientcl01").unwrap();
    let id = EntityId::parse("fragilefragile01").unwrap();
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: id,
            gate_id: Some(1),
        }
        .to_payload(),
    );
    let call = |m: &str| {
        Msg::CallEntityMethodFromClient {
            eid: id,
            method: m.into(),
            args: vec![],
            client_id: Some(cid),
        }
        .to_payload()
    };
    g.on_frame(&mut io, t0, conn(1), &call("Boom"));
    g.on_frame(&mut io, t0, conn(1), &call("Inc"));
    assert_eq!(
        g.world().attrs(&id).unwrap().as_map().get_int("n"),
        101,
        "the entity kept running"
    );
    assert!(g.world().exists(&id));
}

/// Keeps plain struct fields: one travels, one is skipped.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Keeper {
    count: u32,
    friend: EntityId,
    #[serde(skip)]
    scratch: u32,
}

impl Entity for Keeper {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::client("hits")).method(
            "Hit",
            crate::api::Expose::Server,
            Keeper::hit,
        );
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        self.count = 7;
        self.friend = EntityId::parse("friendfriendfri1").unwrap();
        self.scratch = 99;
        ctx.add_timer(std::time::Duration::from_secs(1), "Hit", vec![]);
    }
}

impl Keeper {
    fn hit(&mut self, ctx: &mut Ctx, (): ()) {
        self.count += 1;
        let n = ctx.attrs.as_map().get_int("hits") + 1;
        ctx.attrs.root().set_int("hits", n);
    }
}

#[test]
fn a_snapshot_carries_struct_fields_attributes_and_timers_to_another_game() {
    let t0 = Instant::now();
    let mk = |id: u16| {
        let s = settings(id, "Keeper", t0);
        let mut types = Registry::new();
        types.register::<Keeper>("Keeper").unwrap();
        GameService::new(
            s,
            IdGen::new([1, 2, 3], id),
            types,
            Stores::NONE,
            Rng::new(1),
        )
    };
    let (mut g1, mut g2) = (mk(1), mk(2));
    let mut io = MemIo::new();
    g1.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g1.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    g2.on_open(&mut io, t0, conn(2), Origin::Dialed { dial: 1 }, addr());
    g2.on_frame(&mut io, t0, conn(2), &ack(1, vec![1, 2], true));
    let id = EntityId::parse("keeperkeeperkee1").unwrap();
    let cid = EntityId::parse("clientclientcl01").unwrap();
    g1.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: id,
            gate_id: Some(1),
        }
        .to_payload(),
    );
    let t1 = t0 + std::time::Duration::from_secs(1);
    g1.on_tick(&mut io, t1, SystemTime::UNIX_EPOCH);
    let t = t1 + std::time::Duration::from_millis(400);
    let snap = g1.snapshot(t, &id).unwrap();
    assert_eq!(snap.timers.len(), 1);
    assert_eq!(
        snap.timers[0].remaining,
        std::time::Duration::from_millis(600)
    );
    assert_eq!(snap.client.map(|c| c.client_id), Some(cid));
    io.take();
    g2.restore(&mut io, t, snap).unwrap();
    assert!(
        matches!(Msg::decode(&io.take()[0].1), Ok(Msg::NotifyCreateEntity { eid }) if eid == id)
    );
    assert_eq!(g2.world().attrs(&id).unwrap().as_map().get_int("hits"), 1);
    assert_eq!(g2.world().client_of(&id).map(|c| c.client_id), Some(cid));
    // The timer fires on the new game at its remaining time, with the struct as it was.
    assert_eq!(
        g2.next_deadline(),
        Some(t + std::time::Duration::from_millis(600))
    );
    g2.on_tick(
        &mut io,
        t + std::time::Duration::from_millis(600),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(g2.world().attrs(&id).unwrap().as_map().get_int("hits"), 2);
    let snap2 = g2.snapshot(t, &id).unwrap();
    let back: Keeper = rmp_serde::from_slice(&snap2.state).unwrap();
    assert_eq!(
        (back.count, back.friend.to_text().as_str(), back.scratch),
        (9, "friendfriendfri1", 0)
    );
    // A type the binary lacks is an error naming it.
    let mut bad = snap2.clone();
    bad.type_name = "Ghost".into();
    bad.id = EntityId::parse("ghostghostghost1").unwrap();
    assert_eq!(
        g2.restore(&mut io, t, bad).unwrap_err(),
        crate::world::SnapshotError::UnknownType("Ghost".into())
    );
}

/// Adds to an attribute when called.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter;

impl Entity for Counter {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::server("n"))
            .method("Add", crate::api::Expose::Server, Counter::add);
    }
}

impl Counter {
    fn add(&mut self, ctx: &mut Ctx, (k,): (i64,)) {
        let n = ctx.attrs.as_map().get_int("n") + k;
        ctx.attrs.root().set_int("n", n);
    }
}

#[test]
fn the_game_ready_hook_global_timers_posts_and_nil_space_methods_run() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let t0 = Instant::now();
    let made: Rc<RefCell<Vec<EntityId>>> = Rc::default();
    let mut types = Registry::new();
    types.register::<Counter>("Counter").unwrap();
    let m = made.clone();
    types.on_game_ready(move |ctx| {
        let id = ctx.create_entity_locally("Counter");
        m.borrow_mut().push(id);
        ctx.add_timer(std::time::Duration::from_millis(200), move |c| {
            c.call(id, "Add", crate::args![1i64])
        });
        ctx.post(move |c| c.call(id, "Add", crate::args![100i64]));
        ctx.add_callback(std::time::Duration::from_millis(50), |_| {
            panic!("a bug in a global callback")
        });
    });
    types
        .nil_space_method(
            "AddAll",
            crate::api::nil_space_method(|ctx, (k,): (i64,)| {
                for id in ctx.entity_ids() {
                    ctx.call(id, "Add", crate::args![k]);
                }
            }),
        )
        .unwrap();
    types
        .nil_space_method(
            "Fan",
            crate::api::nil_space_method(|ctx, (): ()| {
                ctx.call_nil_spaces("AddAll", crate::args![1i64])
            }),
        )
        .unwrap();
    let s = settings(1, "Counter", t0);
    let mut g = GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    let mut io = MemIo::new();
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], false));
    assert!(
        made.borrow().is_empty(),
        "not before the deployment is ready"
    );
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyDeploymentReady.to_payload(),
    );
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyDeploymentReady.to_payload(),
    );
    assert_eq!(made.borrow().len(), 1, "the hook runs once");
    let id = made.borrow()[0];
    let n = |g: &GameService| g.world().attrs(&id).unwrap().as_map().get_int("n");
    assert_eq!(n(&g), 100, "posted work ran in the same iteration");
    let mut now = t0;
    for _ in 0..3 {
        now = g.next_deadline().unwrap();
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
    }
    assert_eq!(now, t0 + std::time::Duration::from_millis(400));
    assert_eq!(
        n(&g),
        102,
        "a repeating timer, and a panicking callback did not stop the game"
    );
    let call = Msg::CallNilSpaces {
        except_game_id: 2,
        method: "AddAll".into(),
        args: crate::args![1000i64],
    };
    g.on_frame(&mut io, now, conn(1), &call.to_payload());
    assert_eq!(n(&g), 1102);
    // CallNilSpaces from game code runs here too, and goes to the other games once.
    io.take();
    let fan = Msg::CallNilSpaces {
        except_game_id: 2,
        method: "Fan".into(),
        args: vec![],
    };
    g.on_frame(&mut io, now, conn(1), &fan.to_payload());
    assert_eq!(n(&g), 1103);
    let sent: Vec<Msg> = io
        .take()
        .into_iter()
        .map(|(_, p)| Msg::decode(&p).unwrap())
        .collect();
    assert!(sent.contains(&Msg::CallNilSpaces {
        except_game_id: 1,
        method: "AddAll".into(),
        args: crate::args![1i64]
    }));
}

/// One method per exposure level, each counting its calls in an attribute.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Exposed;

impl Entity for Exposed {
    fn describe(desc: &mut TypeDesc<Self>) {
        use crate::api::Expose;
        desc.attr(Attr::<i64>::server("server"))
            .attr(Attr::<i64>::server("own"))
            .attr(Attr::<i64>::server("all"))
            .method(
                "Server",
                Expose::Server,
                |_: &mut Exposed, c: &mut Ctx, (): ()| bump(c, "server"),
            )
            .method(
                "Own",
                Expose::OwnClient,
                |_: &mut Exposed, c: &mut Ctx, (): ()| bump(c, "own"),
            )
            .method(
                "All",
                Expose::AllClients,
                |_: &mut Exposed, c: &mut Ctx, (): ()| bump(c, "all"),
            );
    }
}

fn bump(ctx: &mut Ctx, key: &str) {
    let n = ctx.attrs.as_map().get_int(key) + 1;
    ctx.attrs.root().set_int(key, n);
}

#[test]
fn goworld_permission_rules_for_servers_own_clients_and_other_clients() {
    let t0 = Instant::now();
    let s = settings(1, "Exposed", t0);
    let mut types = Registry::new();
    types.register::<Exposed>("Exposed").unwrap();
    let mut g = GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    let mut io = MemIo::new();
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    let owner = EntityId::parse("ownerclientcli01").unwrap();
    let other = EntityId::parse("otherclientcli02").unwrap();
    let id = EntityId::parse("exposedexposed01").unwrap();
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientConnected {
            client_id: owner,
            boot_eid: id,
            gate_id: Some(1),
        }
        .to_payload(),
    );
    let from_client = |m: &str, c: EntityId| {
        Msg::CallEntityMethodFromClient {
            eid: id,
            method: m.into(),
            args: vec![],
            client_id: Some(c),
        }
        .to_payload()
    };
    let from_server = |m: &str| {
        Msg::CallEntityMethod {
            eid: id,
            method: m.into(),
            args: vec![],
        }
        .to_payload()
    };
    for m in ["Server", "Own", "All"] {
        g.on_frame(&mut io, t0, conn(1), &from_server(m));
        g.on_frame(&mut io, t0, conn(1), &from_client(m, owner));
        g.on_frame(&mut io, t0, conn(1), &from_client(m, other));
    }
    let got = |k: &str| g.world().attrs(&id).unwrap().as_map().get_int(k);
    assert_eq!(got("server"), 1, "server methods: servers only");
    assert_eq!(got("own"), 2, "_Client methods: servers and the own client");
    assert_eq!(got("all"), 3, "_AllClients methods: servers and any client");
}

/// Writes three KVDB keys, reads a range of them, and asks storage about itself.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Asker;

impl Entity for Asker {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<String>::server("range"))
            .attr(Attr::<String>::server("exists"));
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        for k in ["k1", "k2", "k3"] {
            ctx.kvdb_put::<Asker>(k, &format!("v{k}"), None);
        }
        ctx.kvdb_get_range::<Asker>("k1", "k3", |_, ctx, r| {
            let keys: Vec<String> = r
                .unwrap()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            ctx.attrs.root().set_str("range", &keys.join(","));
        });
        let me = ctx.id();
        ctx.storage_exists::<Asker>("Asker", me, |_, ctx, r| {
            ctx.attrs.root().set_str("exists", &format!("{r:?}"));
        });
    }
}

#[test]
fn kvdb_ranges_and_storage_existence_reach_the_entity() {
    let mem = crate::store::mem::MemStores::default();
    let t0 = Instant::now();
    let s = settings(1, "Asker", t0);
    let mut types = Registry::new();
    types.register::<Asker>("Asker").unwrap();
    let mut g = GameService::new(s, IdGen::new([1, 2, 3], 1), types, Stores::ALL, Rng::new(1));
    let mut io = MemIo::new();
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    let id = EntityId::parse("askeraskeraske01").unwrap();
    let cid = EntityId::parse("clientclientcl01").unwrap();
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: id,
            gate_id: Some(1),
        }
        .to_payload(),
    );
    let a = g.world().attrs(&id).unwrap().as_map();
    assert!(
        a.get_str("range").is_empty(),
        "nothing is answered before the store runs"
    );
    assert_eq!(
        g.store_requests_in_flight(),
        5,
        "three puts, a range, an exists"
    );
    answer_stores(&mut g, &mut io, t0, &mem);
    assert_eq!(g.store_requests_in_flight(), 0);
    let a = g.world().attrs(&id).unwrap().as_map();
    assert_eq!(a.get_str("range"), "k1=vk1,k2=vk2", "half-open and ordered");
    assert_eq!(
        a.get_str("exists"),
        "Ok(false)",
        "a non-persistent entity is never saved"
    );
    assert_eq!(mem.kvdb.value("k3").as_deref(), Some("vk3"));
}

#[test]
fn crontab_entries_run_once_a_minute_at_second_two() {
    use std::cell::Cell;
    use std::rc::Rc;
    let t0 = Instant::now();
    // 1_700_000_000 is 20 s past a minute: the first check is 42 s away.
    let s = settings(1, "Counter", t0);
    let mut types = Registry::new();
    types.register::<Counter>("Counter").unwrap();
    let mut g = GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    let mut io = MemIo::new();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    g.with_game_ctx(&mut io, t0, |ctx| {
        ctx.register_crontab(-1, -1, -1, -1, -1, move |_| r.set(r.get() + 1))
            .unwrap();
        assert!(ctx
            .register_crontab(60, -1, -1, -1, -1, |_| {})
            .unwrap_err()
            .to_string()
            .contains("minute"));
    });
    assert_eq!(
        g.next_deadline(),
        Some(t0 + std::time::Duration::from_secs(42))
    );
    g.on_tick(
        &mut io,
        t0 + std::time::Duration::from_secs(41),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(runs.get(), 0);
    g.on_tick(
        &mut io,
        t0 + std::time::Duration::from_secs(42),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(runs.get(), 1);
    assert_eq!(
        g.next_deadline(),
        Some(t0 + std::time::Duration::from_secs(102))
    );
    g.on_tick(
        &mut io,
        t0 + std::time::Duration::from_secs(102),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(runs.get(), 2);
}

#[test]
fn a_game_reports_its_load_every_second_once_ready() {
    let mut io = MemIo::new();
    let mut g = game(1, 2);
    g.enable_load_reports();
    g.set_cpu_percent(12.5);
    let t0 = Instant::now();
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_open(&mut io, t0, conn(2), Origin::Dialed { dial: 2 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], false));
    assert_eq!(
        g.next_deadline(),
        None,
        "not before every dispatcher acknowledged"
    );
    g.on_frame(&mut io, t0, conn(2), &ack(2, vec![1], false));
    io.take();
    for second in 0..2u64 {
        let now = g.next_deadline().unwrap();
        assert_eq!(now, t0 + std::time::Duration::from_secs(second));
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        let reports: Vec<(ConnId, Vec<u8>)> = io.take();
        assert_eq!(reports.len(), 2, "one to each dispatcher");
        for (_, p) in reports {
            let Msg::GameLbcInfo { data } = Msg::decode(&p).unwrap() else {
                panic!()
            };
            let v = goworld_common::msgpack::decode_exact(&data).unwrap();
            assert_eq!(v.map_get("cp").and_then(|c| c.as_f64()), Some(12.5));
        }
    }
}

/// A persistent entity for the load-after-destroy race.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Saved;

impl Entity for Saved {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.persistent(true)
            .attr(Attr::<i64>::server("n").persistent())
            .method(
                "Bye",
                crate::api::Expose::Server,
                |_: &mut Saved, ctx, ()| ctx.destroy(),
            );
    }
}

/// Loads an entity and calls it at once, as test_game's Account does with its Avatar.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Loader;

impl Entity for Loader {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "LoadIt",
            crate::api::Expose::Server,
            |_: &mut Loader, ctx, (id,): (EntityId,)| {
                ctx.load_entity_anywhere("Saved", id);
                ctx.call(id, "Ping", crate::args![]);
            },
        );
    }
}

/// The race a returning user hit: its Avatar is destroyed here and its last save is still
/// being written (so the dispatcher still knows it here) when this game asks to load it
/// again. The dispatcher sends the load back here and holds calls; telling it the entity is
/// gone once the save is written would end that hold early and the calls would arrive before
/// the entity. The game loads it again instead.
#[test]
fn a_load_asked_while_the_last_save_is_written_loads_it_again_instead_of_reporting_it_gone() {
    let mem = crate::store::mem::MemStores::default();
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    types.register::<Saved>("Saved").unwrap();
    types.register::<Loader>("Loader").unwrap();
    let now = Instant::now();
    let mut g = GameService::new(
        settings(1, "Account", now),
        IdGen::new([1, 2, 3], 1),
        types,
        Stores {
            storage: true,
            kvdb: false,
        },
        Rng::new(1),
    );
    let mut io = MemIo::new();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], true));
    let mut ids = (EntityId::default(), EntityId::default());
    g.with_game_ctx(&mut io, now, |ctx| {
        ids = (
            ctx.create_entity_locally("Saved"),
            ctx.create_entity_locally("Loader"),
        )
    });
    let (saved, loader) = ids;
    let call = |eid: EntityId, method: &str, args: Vec<Vec<u8>>| {
        Msg::CallEntityMethod {
            eid,
            method: method.into(),
            args,
        }
        .to_payload()
    };
    g.on_frame(&mut io, now, conn(1), &call(saved, "Bye", vec![]));
    assert!(!g.world().exists(&saved));
    // The last save is queued, not yet reported; the Loader asks for it meanwhile.
    g.on_frame(
        &mut io,
        now,
        conn(1),
        &call(loader, "LoadIt", crate::args![saved]),
    );
    let sent: Vec<Msg> = io
        .take()
        .into_iter()
        .map(|(_, p)| Msg::decode(&p).unwrap())
        .collect();
    assert!(sent.contains(&Msg::LoadEntitySomewhere {
        game_id: 0,
        eid: saved,
        type_name: "Saved".into()
    }));
    // Storage finishes: the save, then the reload.
    answer_stores(&mut g, &mut io, now, &mem);
    let after: Vec<Msg> = io
        .take()
        .into_iter()
        .map(|(_, p)| Msg::decode(&p).unwrap())
        .collect();
    assert!(g.world().exists(&saved), "loaded again after its last save");
    assert!(
        !after.contains(&Msg::NotifyDestroyEntity { eid: saved }),
        "the dispatcher was not told it is gone: {after:?}"
    );
    assert!(after.contains(&Msg::NotifyCreateEntity { eid: saved }));
}

/// A service that is never created in the test below (its shard lives "elsewhere").
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Svc;

impl Entity for Svc {
    fn describe(_desc: &mut TypeDesc<Self>) {}
}

/// Calls a service, then enters a space on another game, in one handler.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Mover;

impl Entity for Mover {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "Go",
            crate::api::Expose::Server,
            |_: &mut Mover, ctx, (space,): (EntityId,)| {
                ctx.call_service_any("Svc", "Hit", crate::args![]);
                ctx.enter_space(space, crate::api::Vec3::default());
            },
        );
    }
}

/// Game 1 with Account, Mover and one-shard service Svc, its link to dispatcher 1 just
/// opened (the handshake not answered yet).
fn mover_game_dialing(now: Instant) -> (GameService, MemIo) {
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    types.register::<Mover>("Mover").unwrap();
    types.register_service::<Svc>("Svc", 1).unwrap();
    let mut g = GameService::new(
        settings(1, "Account", now),
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    let mut io = MemIo::new();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    (g, io)
}

/// An entity whose service call waits here for the service's shard leaves this game only
/// after that call went out: a call it makes from its next game cannot overtake it.
#[test]
fn an_entity_migrates_only_after_the_service_calls_held_here_went_out() {
    let now = Instant::now();
    let (mut g, mut io) = mover_game_dialing(now);
    let ack = Msg::SetGameIdAck {
        disp_id: 1,
        deployment_ready: false,
        games: vec![1, 2],
        rejected: vec![],
        kvreg: vec![],
        declared_dead: false,
    };
    g.on_frame(&mut io, now, conn(1), &ack.to_payload());
    let mut mover = EntityId::default();
    g.with_game_ctx(&mut io, now, |ctx| {
        mover = ctx.create_entity_locally("Mover")
    });
    io.take();
    let space = EntityId::parse("spaceonthegame02").unwrap();
    let frame = |g: &mut GameService, io: &mut MemIo, m: Msg| {
        g.on_frame(io, now, conn(1), &m.to_payload());
        io.take()
            .into_iter()
            .map(|(_, p)| Msg::decode(&p).unwrap())
            .collect::<Vec<Msg>>()
    };
    let go = Msg::CallEntityMethod {
        eid: mover,
        method: "Go".into(),
        args: crate::args![space],
    };
    assert_eq!(
        frame(&mut g, &mut io, go),
        vec![Msg::QuerySpaceGameIdForMigrate {
            space_id: space,
            eid: mover,
            game_id: None
        }],
        "the service call waits for its shard"
    );
    let ack1 = Msg::QuerySpaceGameIdForMigrate {
        space_id: space,
        eid: mover,
        game_id: Some(2),
    };
    let req = Msg::MigrateRequest {
        eid: mover,
        space_id: space,
        space_game_id: 2,
    };
    assert_eq!(frame(&mut g, &mut io, ack1), vec![req.clone()]);
    assert_eq!(
        frame(&mut g, &mut io, req),
        vec![],
        "it does not leave while its call waits here"
    );
    assert!(g.world().exists(&mover));
    let svc = EntityId::parse("servicesvcshard0").unwrap();
    let kv = |key: &str, val: &str| Msg::KvregRegister {
        key: key.into(),
        val: val.into(),
        force: false,
    };
    assert_eq!(frame(&mut g, &mut io, kv("Service/Svc#0", "game2")), vec![]);
    let out = frame(
        &mut g,
        &mut io,
        kv("Service/Svc#0/EntityID", &svc.to_text()),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0],
        Msg::CallEntityMethod {
            eid: svc,
            method: "Hit".into(),
            args: vec![]
        }
    );
    assert!(matches!(out[1], Msg::RealMigrate { eid, target_game: 2, .. } if eid == mover));
    assert!(!g.world().exists(&mover));
}

thread_local! {
    /// Nil-space calls counted by the test below (nil-space methods are plain functions).
    static NIL_CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Queues `n` local calls to itself in one method, each of which queues nothing.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Fanner;

impl Entity for Fanner {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::server("n"))
            .attr(Attr::<i64>::server("order"))
            .method("Fan", crate::api::Expose::Server, Fanner::fan)
            .method("Add", crate::api::Expose::Server, Fanner::add);
    }
}

impl Fanner {
    fn fan(&mut self, ctx: &mut Ctx, (n,): (i64,)) {
        let me = ctx.id();
        for i in 0..n {
            ctx.call(me, "Add", crate::args![i]);
        }
    }
    fn add(&mut self, ctx: &mut Ctx, (i,): (i64,)) {
        let n = ctx.attrs.as_map().get_int("n");
        // Calls run in the order they were queued: the i-th call sees i calls before it.
        if i == n {
            ctx.attrs.root().set_int("n", n + 1);
        } else {
            ctx.attrs.root().set_int("order", 1);
        }
    }
}

/// Regression: each queued local call used to run one stack frame deeper than the one before
/// it (`run_local_calls` → `call` → `run_call` → `run_local_calls`), so a game with thousands
/// of queued calls in one tick (5 000 logins) overflowed its stack and aborted. This test
/// runs on a thread with a small stack, where the old code overflowed at a few thousand.
#[test]
fn a_hundred_thousand_queued_local_calls_run_in_order_on_a_small_stack() {
    const CALLS: i64 = 100_000;
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let t0 = Instant::now();
            let mut types = Registry::new();
            types.register::<Fanner>("Fanner").unwrap();
            types
                .nil_space_method(
                    "Count",
                    crate::api::nil_space_method(|_ctx, (): ()| {
                        NIL_CALLS.with(|c| c.set(c.get() + 1))
                    }),
                )
                .unwrap();
            types.on_game_ready(move |ctx| {
                let id = ctx.create_entity_locally("Fanner");
                ctx.call(id, "Fan", crate::args![CALLS]);
                // Each queues posted work that runs a nil-space method, which runs global
                // code, which drains posted work again: the same shape of recursion.
                for _ in 0..20_000 {
                    ctx.call_nil_spaces("Count", vec![]);
                }
            });
            let mut g = GameService::new(
                settings(1, "Fanner", t0),
                IdGen::new([1, 2, 3], 1),
                types,
                Stores::NONE,
                Rng::new(1),
            );
            let mut io = MemIo::new();
            g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
            g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
            g.on_frame(
                &mut io,
                t0,
                conn(1),
                &Msg::NotifyDeploymentReady.to_payload(),
            );
            let w = g.world();
            let id = *w
                .ids()
                .find(|id| w.type_of(id) == Some("Fanner"))
                .expect("the hook created it");
            let attrs = w.attrs(&id).unwrap().as_map();
            (
                attrs.get_int("n"),
                attrs.get_int("order"),
                NIL_CALLS.with(|c| c.get()),
            )
        })
        .unwrap();
    let (n, out_of_order, posted) = handle.join().expect("no stack overflow");
    assert_eq!(n, CALLS, "every queued call ran");
    assert_eq!(out_of_order, 0, "in the order they were queued");
    assert_eq!(posted, 20_000, "every nil-space call ran");
}

/// Every kind of refused client call (unknown method, server-only method, another client's
/// method, arguments that do not fit) counts toward the limit, whatever the method name;
/// each client gets its first few logged in full and one summary when it goes, so a client
/// that varies its calls cannot flood the log. A server's failing call is a bug, logged once
/// per type and method.
#[test]
fn refused_calls_of_every_kind_count_toward_the_limit_and_cost_a_few_lines() {
    use goworld_common::peerlog::FULL_LINES;
    use goworld_common::testlog;
    testlog::capture();
    let t0 = Instant::now();
    let s = settings(1, "Exposed", t0);
    let mut types = Registry::new();
    types.register::<Exposed>("Exposed").unwrap();
    let mut g = GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types,
        Stores::NONE,
        Rng::new(1),
    );
    g.set_refused_calls_limit(10);
    let mut io = MemIo::new();
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    let owner = EntityId::parse("ownerclientcli01").unwrap();
    let other = EntityId::parse("otherclientcli02").unwrap();
    let id = EntityId::parse("exposedexposed01").unwrap();
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientConnected {
            client_id: owner,
            boot_eid: id,
            gate_id: Some(1),
        }
        .to_payload(),
    );
    io.take();
    testlog::take();
    let from_client = |m: &str, args: Vec<Vec<u8>>, c: EntityId| {
        Msg::CallEntityMethodFromClient {
            eid: id,
            method: m.into(),
            args,
            client_id: Some(c),
        }
        .to_payload()
    };
    let kicks = |io: &mut MemIo| {
        (io.take().into_iter())
            .filter(|(_, p)| {
                matches!(
                    Msg::decode(p),
                    Ok(Msg::ToClient {
                        msg: ClientMsg::KickClient { .. },
                        ..
                    })
                )
            })
            .count()
    };
    let bad = |i: usize| match i % 4 {
        0 => from_client(&format!("Made{i}Up"), vec![], owner),
        1 => from_client("Server", vec![], owner),
        2 => from_client("Own", vec![vec![0x01]], owner),
        _ => from_client("All", vec![vec![0x80], vec![0x02]], owner),
    };
    for i in 0..9 {
        g.on_frame(&mut io, t0, conn(1), &bad(i));
    }
    assert_eq!(
        kicks(&mut io),
        0,
        "under the limit: refused, not disconnected"
    );
    let lines = testlog::take_at(log::Level::Warn);
    assert_eq!(lines.len(), FULL_LINES as usize, "{lines:#?}");
    assert!(lines[0].contains("Made0Up") && lines[0].contains("no such method"));
    assert!(lines[1].contains("server-only"), "{lines:#?}");
    assert!(lines[2].contains("argument"), "{lines:#?}");
    g.on_frame(&mut io, t0, conn(1), &bad(9));
    assert_eq!(kicks(&mut io), 1, "the tenth refusal disconnects it");
    let lines = testlog::take_at(log::Level::Warn);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("disconnecting"), "{lines:#?}");
    // Calls still on the way are counted quietly; no second kick.
    for i in 10..40 {
        g.on_frame(&mut io, t0, conn(1), &bad(i));
    }
    assert_eq!(kicks(&mut io), 0);
    assert!(testlog::take_at(log::Level::Warn).is_empty());
    // Its calls that are allowed still run.
    g.on_frame(&mut io, t0, conn(1), &from_client("Own", vec![], owner));
    assert_eq!(g.world().attrs(&id).unwrap().as_map().get_int("own"), 1);
    // It goes: one line sums up what was not logged, and its record goes with it.
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientDisconnected {
            owner_eid: id,
            client_id: owner,
        }
        .to_payload(),
    );
    let lines = testlog::take_at(log::Level::Warn);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("37 more not logged") && lines[0].contains("bad arguments x"),
        "{lines:#?}"
    );

    // A client whose player is not here (it calls another client's method) cannot be
    // disconnected from here; its record is summed up and dropped by the periodic sweep.
    for _ in 0..25 {
        g.on_frame(&mut io, t0, conn(1), &from_client("Own", vec![], other));
    }
    let lines = testlog::take_at(log::Level::Warn);
    assert_eq!(lines.len(), FULL_LINES as usize + 1, "{lines:#?}");
    assert!(lines[3].contains("stays connected"), "{lines:#?}");
    let mut now = t0;
    while testlog::take_at(log::Level::Warn).is_empty() {
        now = g.next_deadline().expect("the sweep is armed");
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        assert!(now < t0 + Duration::from_secs(120), "no sweep");
    }
    assert!(now >= t0 + Duration::from_secs(60));
    assert_eq!(g.next_deadline(), None, "no record left, no sweep");

    // A server calling with bad arguments is a bug, not abuse: logged once per method.
    for _ in 0..5 {
        let p = Msg::CallEntityMethod {
            eid: id,
            method: "Own".into(),
            args: vec![vec![0x01]],
        };
        g.on_frame(&mut io, now, conn(1), &p.to_payload());
    }
    let lines = testlog::take_at(log::Level::Warn);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(g.world().server_call_problems_unlogged(), 4);
}

/// A dispatcher sending what a game cannot use (unknown types, malformed packets, packets
/// not for a game) costs a few lines per window, then one summary.
#[test]
fn packets_a_game_skips_cost_a_few_lines_per_dispatcher_and_window() {
    use goworld_common::testlog;
    testlog::capture();
    let mut io = MemIo::new();
    let mut g = game(1, 1);
    let now = Instant::now();
    g.on_open(&mut io, now, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, now, conn(1), &ack(1, vec![1], true));
    testlog::take();
    for i in 0..30u16 {
        let p: Vec<u8> = match i % 3 {
            0 => (4000 + i).to_le_bytes().to_vec(),
            1 => vec![6, 0, 1],
            _ => Msg::SetGateId {
                gate_id: 1,
                version: None,
            }
            .to_payload(),
        };
        g.on_frame(&mut io, now, conn(1), &p);
    }
    let lines = testlog::take_at(log::Level::Warn);
    assert_eq!(
        lines.len(),
        goworld_common::peerlog::FULL_LINES as usize,
        "{lines:#?}"
    );
    let due = g.next_deadline().expect("a summary is owed");
    g.on_tick(&mut io, due, SystemTime::UNIX_EPOCH);
    let lines = testlog::take_at(log::Level::Warn);
    assert!(
        lines.iter().any(|l| l.contains("27 more not logged")),
        "{lines:#?}"
    );
}

/// Calls `Add(i)` on each of its `targets` with one `call_many`.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Caster {
    targets: Vec<EntityId>,
}

impl Entity for Caster {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("Cast", crate::api::Expose::Server, Caster::cast)
            .method("Target", crate::api::Expose::Server, Caster::target);
    }
}

impl Caster {
    fn target(&mut self, _ctx: &mut Ctx, (id,): (EntityId,)) {
        self.targets.push(id);
    }
    fn cast(&mut self, ctx: &mut Ctx, (k,): (i64,)) {
        ctx.call_many(self.targets.clone(), "Add", crate::args![k]);
    }
}

#[test]
fn call_many_reaches_local_entities_in_order_and_remote_ones_through_their_dispatcher() {
    let t0 = Instant::now();
    let mut types = Registry::new();
    types.register::<Caster>("Caster").unwrap();
    types.register::<Counter>("Counter").unwrap();
    let (mut g, mut io) = ready_game(types, "Counter", Stores::NONE, t0);
    let (caster, a, b) = (
        EntityId::parse("castercastercas1").unwrap(),
        EntityId::parse("counterAcounter1").unwrap(),
        EntityId::parse("counterBcounter1").unwrap(),
    );
    let remote = EntityId::parse("elsewhereelsewh1").unwrap();
    for (id, ty) in [(caster, "Caster"), (a, "Counter"), (b, "Counter")] {
        let m = Msg::CreateEntitySomewhere {
            game_id: 1,
            eid: id,
            type_name: ty.into(),
            attrs: vec![0x80],
        };
        g.on_frame(&mut io, t0, conn(1), &m.to_payload());
    }
    for t in [a, remote, b, a] {
        let m = Msg::CallEntityMethod {
            eid: caster,
            method: "Target".into(),
            args: crate::args![t],
        };
        g.on_frame(&mut io, t0, conn(1), &m.to_payload());
    }
    io.take();
    let cast = Msg::CallEntityMethod {
        eid: caster,
        method: "Cast".into(),
        args: crate::args![5i64],
    };
    g.on_frame(&mut io, t0, conn(1), &cast.to_payload());
    let n = |g: &GameService, id| g.world().attrs(&id).unwrap().as_map().get_int("n");
    assert_eq!((n(&g, a), n(&g, b)), (10, 5), "a twice, b once");
    let sent: Vec<Msg> = io
        .take()
        .into_iter()
        .map(|(_, p)| Msg::decode(&p).unwrap())
        .collect();
    assert_eq!(
        sent,
        vec![Msg::CallEntityMethod {
            eid: remote,
            method: "Add".into(),
            args: crate::args![5i64],
        }],
        "the remote target's call goes to its dispatcher, with the same arguments"
    );
}

/// Game 1 with `types`, booting `boot`, connected to its one dispatcher, which has
/// acknowledged it and declared the deployment ready.
fn ready_game(types: Registry, boot: &str, stores: Stores, t0: Instant) -> (GameService, MemIo) {
    let mut g = GameService::new(
        settings(1, boot, t0),
        IdGen::new([1, 2, 3], 1),
        types,
        stores,
        Rng::new(1),
    );
    let mut io = MemIo::new();
    g.on_open(&mut io, t0, conn(1), Origin::Dialed { dial: 1 }, addr());
    g.on_frame(&mut io, t0, conn(1), &ack(1, vec![1], true));
    (g, io)
}

/// A ready game with one dispatcher whose only type is `T`, registered as `name` and used
/// as the boot entity, and a client (`clientclientcl01`) connected to boot entity `boot_id`.
fn game_with_a_client<T: Entity>(
    name: &str,
    boot_id: &str,
    t0: Instant,
) -> (GameService, MemIo, EntityId, EntityId) {
    let mut types = Registry::new();
    types.register::<T>(name).unwrap();
    let (mut g, mut io) = ready_game(types, name, Stores::NONE, t0);
    let cid = EntityId::parse("clientclientcl01").unwrap();
    let id = EntityId::parse(boot_id).unwrap();
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: id,
            gate_id: Some(1),
        }
        .to_payload(),
    );
    (g, io, cid, id)
}

/// A player that hands its client to another entity right after changing an attribute.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Handoff;

impl Entity for Handoff {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::client("level")).method(
            "Give",
            crate::api::Expose::OwnClient,
            Handoff::give,
        );
    }
}

impl Handoff {
    fn give(&mut self, ctx: &mut Ctx, (to,): (EntityId,)) {
        ctx.attrs.root().set_int("level", 7);
        ctx.give_client_to(to);
    }
}

/// Attribute changes made before `give_client_to` reach the client before the client leaves
/// the entity (the one path flushes them before every action; the old code queued the
/// give-away ahead of them, so the client got the change for an entity it no longer had).
#[test]
fn attribute_changes_made_before_give_client_to_reach_the_client_first() {
    let t0 = Instant::now();
    let (mut g, mut io, cid, id) = game_with_a_client::<Handoff>("Handoff", "handoffhandoff01", t0);
    let mut other = EntityId::NONE;
    g.with_game_ctx(&mut io, t0, |c| other = c.create_entity_locally("Handoff"));
    io.take();
    let give = Msg::CallEntityMethodFromClient {
        eid: id,
        method: "Give".into(),
        args: crate::args![other],
        client_id: Some(cid),
    };
    g.on_frame(&mut io, t0, conn(1), &give.to_payload());
    let to_client: Vec<ClientMsg> = (io.take().into_iter())
        .filter_map(|(_, p)| match Msg::decode(&p) {
            Ok(Msg::ToClient { client_id, msg, .. }) if client_id == cid => Some(msg),
            _ => None,
        })
        .collect();
    let set = to_client
        .iter()
        .position(|m| matches!(m, ClientMsg::NotifyMapAttrChange { eid, .. } if *eid == id));
    let gone = to_client
        .iter()
        .position(|m| matches!(m, ClientMsg::DestroyEntityOnClient { eid, .. } if *eid == id));
    let (Some(set), Some(gone)) = (set, gone) else {
        panic!("expected the change and the destroy: {to_client:?}");
    };
    assert!(set < gone, "change after the destroy: {to_client:?}");
    assert_eq!(g.world().client_of(&other).map(|c| c.client_id), Some(cid));
}

/// A player whose code misspells an attribute through the untyped cursor.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Typo;

const VISITS: Attr<i64> = Attr::client("visits");

impl Entity for Typo {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(VISITS)
            .method("Bump", crate::api::Expose::OwnClient, Typo::bump);
    }
}

impl Typo {
    fn bump(&mut self, ctx: &mut Ctx, (): ()) {
        let n = ctx.get(VISITS) + 1;
        ctx.set(VISITS, n);
        ctx.call_client("Bumped", crate::args![n]);
        ctx.attrs.root().set_int("vists", n);
    }
}

/// A write to a root attribute the type never declared is an error, logged once per type and
/// name however often it happens (GoWorld, and this engine before typed attributes, made it
/// server-only in silence); the declared attribute reaches the client, typed, and the typo
/// reaches no client.
#[test]
fn an_undeclared_attribute_is_reported_once_and_the_declared_one_reaches_the_client() {
    use goworld_common::testlog;
    testlog::capture();
    let t0 = Instant::now();
    let (mut g, mut io, cid, id) = game_with_a_client::<Typo>("Typo", "typotypotypoty01", t0);
    io.take();
    testlog::take();
    let bump = Msg::CallEntityMethodFromClient {
        eid: id,
        method: "Bump".into(),
        args: vec![],
        client_id: Some(cid),
    };
    for _ in 0..3 {
        g.on_frame(&mut io, t0, conn(1), &bump.to_payload());
    }
    let keys: Vec<String> = (io.take().into_iter())
        .filter_map(|(_, p)| match Msg::decode(&p) {
            Ok(Msg::ToClient {
                msg: ClientMsg::NotifyMapAttrChange { key, .. },
                ..
            }) => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        ["visits", "visits", "visits"],
        "only the declared one is sent"
    );
    let lines: Vec<String> = (testlog::take().into_iter())
        .filter(|(_, l)| l.contains("never declares"))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line for the typo, however often: {lines:?}"
    );
    assert!(
        lines[0].contains("Typo") && lines[0].contains("\"vists\""),
        "{lines:?}"
    );
    assert_eq!(g.world().attrs(&id).unwrap().as_map().get_int("visits"), 3);
}

// ---- storage and the KVDB as messages: draining freeze and stop ---------------------------------

/// A persistent entity that reads `k` from the KVDB when created (its answer lands in `got`)
/// and counts its ticks; `Again` keeps asking the KVDB, each answer starting a new request.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Drainer;

impl Entity for Drainer {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.persistent(true)
            .attr(Attr::<i64>::server("n").persistent())
            .attr(Attr::<String>::server("got").persistent())
            .attr(Attr::<i64>::server("ticks"))
            .method(
                "SetN",
                crate::api::Expose::Server,
                |_: &mut Drainer, ctx, (n,): (i64,)| ctx.attrs.root().set_int("n", n),
            )
            .method(
                "Tick",
                crate::api::Expose::Server,
                |_: &mut Drainer, ctx, ()| {
                    let t = ctx.attrs.as_map().get_int("ticks");
                    ctx.attrs.root().set_int("ticks", t + 1);
                },
            )
            .method(
                "Again",
                crate::api::Expose::Server,
                |_: &mut Drainer, ctx, ()| ctx.kvdb_get::<Drainer>("k", Drainer::again),
            );
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        ctx.kvdb_get::<Drainer>("k", |_, ctx, r| {
            ctx.attrs
                .root()
                .set_str("got", &r.unwrap().unwrap_or_default())
        });
        ctx.add_timer(
            std::time::Duration::from_millis(100),
            "Tick",
            crate::args![],
        );
    }
}

impl Drainer {
    fn again(&mut self, ctx: &mut Ctx, _: crate::api::KvdbResult) {
        ctx.kvdb_get::<Drainer>("k", Drainer::again);
    }
}

/// A game with storage and KVDB, ready on its one dispatcher, with a Drainer created and
/// nothing answered yet; `mem` holds `k = hello`.
fn keeper_game(now: Instant) -> (GameService, MemIo, EntityId, crate::store::mem::MemStores) {
    use crate::store::KvdbBackend;
    let mem = crate::store::mem::MemStores::default();
    mem.kvdb.clone().put("k", "hello").unwrap();
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    types.register::<Drainer>("Drainer").unwrap();
    let (mut g, mut io) = ready_game(types, "Account", Stores::ALL, now);
    let mut id = EntityId::default();
    g.with_game_ctx(&mut io, now, |ctx| {
        id = ctx.create_entity_locally("Drainer")
    });
    io.take();
    (g, io, id, mem)
}

fn sent(io: &mut MemIo) -> Vec<Msg> {
    io.take()
        .into_iter()
        .map(|(_, p)| Msg::decode(&p).unwrap())
        .collect()
}

fn frozen(g: &mut GameService) -> Option<Vec<u8>> {
    g.take_events().into_iter().find_map(|e| match e {
        GameEvent::Frozen(b) => Some(b),
        _ => None,
    })
}

/// The freeze waits in a draining state for what is in flight (the Drainer's first save and
/// its KVDB read): the reactor keeps running, timers wait, and the state is written only
/// once the answers are in, so the file holds what the answers did.
#[test]
fn a_freeze_with_store_requests_in_flight_completes_only_after_their_answers() {
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_game(t0);
    // The owner of the stores has the requests; their answers are not back yet.
    let in_flight = g.take_store_requests();
    assert_eq!(in_flight.len(), 2, "the first save and the KVDB read");
    g.on_signal(&mut io, t0, goworld_common::sig::SIGUSR1);
    assert!(sent(&mut io).contains(&Msg::StartFreezeGame));
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::StartFreezeGameAck { disp_id: 1 }.to_payload(),
    );
    assert!(g.is_freezing());
    assert_eq!(
        frozen(&mut g),
        None,
        "not frozen with two requests in flight"
    );
    assert_eq!(g.store_requests_in_flight(), 2);
    // The reactor keeps running; the Drainer's timer (due at +100 ms) does not fire, and the
    // only deadline is the drain's.
    let later = t0 + std::time::Duration::from_secs(1);
    g.on_tick(&mut io, later, SystemTime::UNIX_EPOCH);
    assert_eq!(frozen(&mut g), None);
    assert_eq!(
        g.world().attrs(&keeper).unwrap().as_map().get_int("ticks"),
        0,
        "timers wait while draining"
    );
    assert_eq!(g.next_deadline(), Some(t0 + FREEZE_DRAIN_TIMEOUT));
    // The answers arrive: the callback runs, then the game freezes.
    g.on_store_results(&mut io, later, mem.answer_all(in_flight));
    let bytes = frozen(&mut g).expect("frozen once every answer is in");
    assert_eq!(g.store_requests_in_flight(), 0);
    assert!(
        mem.storage.saved("Drainer", &keeper).is_some(),
        "the first save was written"
    );
    assert!(!sent(&mut io).contains(&Msg::FreezeCancelled));
    g.freeze_written();
    assert!(g.should_stop());
    // The file holds the state the KVDB answer made.
    let (mut types, now) = (Registry::new(), Instant::now());
    types.register::<Account>("Account").unwrap();
    types.register::<Drainer>("Drainer").unwrap();
    let mut restored = GameService::new(
        Settings {
            restore: true,
            ..settings(1, "Account", now)
        },
        IdGen::new([1, 2, 3], 2),
        types,
        Stores::ALL,
        Rng::new(2),
    );
    let mut rio = MemIo::new();
    restored.thaw(&mut rio, now, &bytes).unwrap();
    let a = restored.world().attrs(&keeper).unwrap().as_map();
    assert_eq!(a.get_str("got"), "hello");
}

/// No answer within FREEZE_DRAIN_TIMEOUT: the freeze fails as before (the dispatchers are
/// told to deliver what they held), and the game runs on; the late answers still land.
#[test]
fn a_freeze_whose_store_answers_do_not_come_fails_after_the_drain_timeout() {
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_game(t0);
    let in_flight = g.take_store_requests();
    g.on_signal(&mut io, t0, goworld_common::sig::SIGUSR1);
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::StartFreezeGameAck { disp_id: 1 }.to_payload(),
    );
    io.take();
    let almost = t0 + FREEZE_DRAIN_TIMEOUT - std::time::Duration::from_millis(1);
    g.on_tick(&mut io, almost, SystemTime::UNIX_EPOCH);
    assert!(g.is_freezing());
    let end = t0 + FREEZE_DRAIN_TIMEOUT;
    g.on_tick(&mut io, end, SystemTime::UNIX_EPOCH);
    assert!(!g.is_freezing(), "the freeze failed");
    assert!(sent(&mut io).contains(&Msg::FreezeCancelled));
    assert_eq!(frozen(&mut g), None);
    // Running again: timers fire, and the answers are taken as usual.
    g.on_tick(&mut io, end, SystemTime::UNIX_EPOCH);
    assert!(g.world().attrs(&keeper).unwrap().as_map().get_int("ticks") > 0);
    g.on_store_results(&mut io, end, mem.answer_all(in_flight));
    assert_eq!(
        g.world().attrs(&keeper).unwrap().as_map().get_str("got"),
        "hello"
    );
    assert!(!g.should_stop());
}

/// Answers that keep starting new requests: the freeze gives up after MAX_DRAIN_ROUNDS
/// rounds, as the blocking drain gave up after as many passes.
#[test]
fn a_freeze_whose_answers_keep_asking_again_gives_up_after_the_rounds() {
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_game(t0);
    answer_stores(&mut g, &mut io, t0, &mem);
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::CallEntityMethod {
            eid: keeper,
            method: "Again".into(),
            args: vec![],
        }
        .to_payload(),
    );
    g.on_signal(&mut io, t0, goworld_common::sig::SIGUSR1);
    g.on_frame(
        &mut io,
        t0,
        conn(1),
        &Msg::StartFreezeGameAck { disp_id: 1 }.to_payload(),
    );
    io.take();
    let mut rounds = 0;
    while g.is_freezing() {
        rounds += 1;
        assert!(rounds <= 20, "the drain must give up");
        let reqs = g.take_store_requests();
        assert_eq!(reqs.len(), 1, "each answer asks again");
        g.on_store_results(&mut io, t0, mem.answer_all(reqs));
    }
    assert_eq!(rounds, crate::world::MAX_DRAIN_ROUNDS);
    assert_eq!(frozen(&mut g), None);
    assert!(sent(&mut io).contains(&Msg::FreezeCancelled));
}

/// SIGTERM: every entity is destroyed and its last save made; the game keeps running until
/// storage has answered them (frames meanwhile are not handled, timers wait), then stops.
/// The dispatcher hears that the entity is gone only once its last save is written.
#[test]
fn sigterm_stops_the_game_once_its_last_saves_are_answered() {
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_game(t0);
    answer_stores(&mut g, &mut io, t0, &mem);
    let call = |method: &str, args: Vec<Vec<u8>>| {
        Msg::CallEntityMethod {
            eid: keeper,
            method: method.into(),
            args,
        }
        .to_payload()
    };
    g.on_frame(&mut io, t0, conn(1), &call("SetN", crate::args![7i64]));
    io.take();
    g.on_signal(&mut io, t0, goworld_common::sig::SIGTERM);
    assert!(g.is_stopping());
    assert!(!g.world().exists(&keeper));
    assert!(!g.should_stop(), "its last save is in flight");
    let last = g.take_store_requests();
    assert_eq!(last.len(), 1);
    assert!(
        !sent(&mut io).contains(&Msg::NotifyDestroyEntity { eid: keeper }),
        "not gone before its last save is written"
    );
    // What arrives now is not handled; the clock moves, nothing fires.
    g.on_frame(&mut io, t0, conn(1), &call("SetN", crate::args![8i64]));
    let later = t0 + std::time::Duration::from_secs(1);
    g.on_tick(&mut io, later, SystemTime::UNIX_EPOCH);
    assert!(!g.should_stop());
    assert!(g.take_store_requests().is_empty());
    assert_eq!(g.next_deadline(), Some(t0 + STOP_DRAIN_TIMEOUT));
    g.on_store_results(&mut io, later, mem.answer_all(last));
    assert!(g.should_stop(), "stops once every save is answered");
    assert!(sent(&mut io).contains(&Msg::NotifyDestroyEntity { eid: keeper }));
    let saved = mem.storage.saved("Drainer", &keeper).unwrap();
    let a = crate::attr::Attrs::from_bytes(&saved).unwrap();
    assert_eq!(
        a.as_map().get_int("n"),
        7,
        "the last save holds the last state"
    );
    assert_eq!(a.as_map().get_str("got"), "hello");
}

/// SIGTERM with a save that is never answered: the game stops after STOP_DRAIN_TIMEOUT, as
/// the blocking drain gave up after as long. Without stores it stops at once.
#[test]
fn sigterm_stops_after_the_timeout_when_saves_are_not_answered() {
    let t0 = Instant::now();
    let (mut g, mut io, _, mem) = keeper_game(t0);
    answer_stores(&mut g, &mut io, t0, &mem);
    g.on_signal(&mut io, t0, goworld_common::sig::SIGTERM);
    assert_eq!(g.take_store_requests().len(), 1);
    let almost = t0 + STOP_DRAIN_TIMEOUT - std::time::Duration::from_millis(1);
    g.on_tick(&mut io, almost, SystemTime::UNIX_EPOCH);
    assert!(!g.should_stop());
    g.on_tick(&mut io, t0 + STOP_DRAIN_TIMEOUT, SystemTime::UNIX_EPOCH);
    assert!(g.should_stop());

    let mut plain = game(1, 1);
    plain.on_signal(&mut io, t0, goworld_common::sig::SIGTERM);
    assert!(plain.should_stop(), "nothing to wait for");
}

/// `keeper_game` with persistent entities saved every `interval` (the Drainer is created
/// after it is set), its first requests answered.
fn keeper_saving_every(
    now: Instant,
    interval: std::time::Duration,
) -> (GameService, MemIo, EntityId, crate::store::mem::MemStores) {
    use crate::store::KvdbBackend;
    let mem = crate::store::mem::MemStores::default();
    mem.kvdb.clone().put("k", "hello").unwrap();
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    types.register::<Drainer>("Drainer").unwrap();
    let (mut g, mut io) = ready_game(types, "Account", Stores::ALL, now);
    g.set_save_interval(interval);
    let mut id = EntityId::default();
    g.with_game_ctx(&mut io, now, |ctx| {
        id = ctx.create_entity_locally("Drainer")
    });
    answer_stores(&mut g, &mut io, now, &mem);
    io.take();
    (g, io, id, mem)
}

fn set_n(g: &mut GameService, io: &mut MemIo, now: Instant, id: EntityId, n: i64) {
    let p = Msg::CallEntityMethod {
        eid: id,
        method: "SetN".into(),
        args: crate::args![n],
    }
    .to_payload();
    g.on_frame(io, now, conn(1), &p);
}

/// The `n` that storage holds for `id`.
fn saved_n(mem: &crate::store::mem::MemStores, id: &EntityId) -> Option<i64> {
    let bytes = mem.storage.saved("Drainer", id)?;
    Some(
        crate::attr::Attrs::from_bytes(&bytes)
            .unwrap()
            .as_map()
            .get_int("n"),
    )
}

/// Storage down: the game keeps ticking, saves are held (the newest per entity), one is
/// retried at a time with a growing backoff, the failure is logged when it starts and then
/// once per REPORT_EVERY (with the entity and the reason), and when storage is back the
/// newest state is written.
#[test]
fn saves_are_held_while_storage_is_down_and_the_newest_is_written_when_it_is_back() {
    use crate::world::{REPORT_EVERY, RETRY_MAX};
    use goworld_common::testlog;
    use std::time::Duration;
    testlog::capture();
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_saving_every(t0, Duration::from_secs(1));
    assert_eq!(saved_n(&mem, &keeper), Some(0), "saved on creation");
    mem.set_down(true);
    let mut now = t0;
    let mut attempts = 0;
    let mut n = 0;
    // 60 s down, the entity changing and its periodic save due every second.
    while now < t0 + Duration::from_secs(60) {
        n += 1;
        set_n(&mut g, &mut io, now, keeper, n);
        let next = g.next_deadline().expect("a timer or a retry is due");
        assert!(next > now, "nothing spins");
        now = next.min(now + Duration::from_secs(1));
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        let reqs = g.take_store_requests();
        assert!(reqs.len() <= 1, "one save at a time while down: {reqs:?}");
        attempts += reqs.len();
        g.on_store_results(&mut io, now, mem.answer_all(reqs));
        assert!(g.world().exists(&keeper));
        assert!(g.world().held_saves() <= 1, "coalesced per entity");
    }
    // Retries back off to RETRY_MAX: far fewer attempts than ticks.
    assert!(
        attempts <= 60 / RETRY_MAX.as_secs() as usize + 8,
        "{attempts} attempts in 60 s"
    );
    assert!(attempts >= 60 / RETRY_MAX.as_secs() as usize, "{attempts}");
    let warns = testlog::take_at(log::Level::Warn);
    let ours: Vec<&String> = warns.iter().filter(|l| l.contains("storage")).collect();
    let bound = 1 + (60 / REPORT_EVERY.as_secs()) as usize;
    assert!(
        !ours.is_empty() && ours.len() <= bound,
        "{} lines (at most {bound}): {ours:#?}",
        ours.len()
    );
    for l in &ours {
        assert!(
            l.contains(&format!("Drainer<{keeper}>")) && l.contains("connection refused"),
            "names the entity and the reason: {l}"
        );
    }
    assert_eq!(
        saved_n(&mem, &keeper),
        Some(0),
        "nothing written while down"
    );
    // Back: the next retry writes the newest state.
    mem.set_down(false);
    let until = now + RETRY_MAX + Duration::from_secs(1);
    while now < until {
        now = g.next_deadline().unwrap().min(until);
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        answer_stores(&mut g, &mut io, now, &mem);
    }
    assert_eq!(
        saved_n(&mem, &keeper),
        Some(n),
        "the newest state is written"
    );
    assert_eq!(g.world().held_saves(), 0);
    assert!(testlog::take_at(log::Level::Info)
        .iter()
        .any(|l| l.contains("storage is back")));
}

/// SIGTERM while storage is down: the last save is held and retried while the stop waits;
/// storage comes back within the deadline, the save is written, the dispatcher hears the
/// entity is gone, and the game stops.
#[test]
fn a_stop_waits_for_held_saves_and_writes_them_when_storage_comes_back() {
    use std::time::Duration;
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_saving_every(t0, Duration::from_secs(300));
    set_n(&mut g, &mut io, t0, keeper, 5);
    mem.set_down(true);
    g.on_signal(&mut io, t0, goworld_common::sig::SIGTERM);
    let reqs = g.take_store_requests();
    g.on_store_results(&mut io, t0, mem.answer_all(reqs));
    assert!(!g.should_stop());
    assert_eq!(g.store_requests_in_flight(), 1, "the held last save counts");
    let mut now;
    for _ in 0..5 {
        now = g.next_deadline().unwrap();
        assert!(
            now < t0 + STOP_DRAIN_TIMEOUT,
            "a retry comes before the deadline"
        );
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        let reqs = g.take_store_requests();
        assert_eq!(reqs.len(), 1, "retried while stopping");
        g.on_store_results(&mut io, now, mem.answer_all(reqs));
    }
    assert!(!sent(&mut io).contains(&Msg::NotifyDestroyEntity { eid: keeper }));
    mem.set_down(false);
    now = g.next_deadline().unwrap();
    g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
    answer_stores(&mut g, &mut io, now, &mem);
    assert!(g.should_stop(), "stops once the held save is written");
    assert_eq!(saved_n(&mem, &keeper), Some(5));
    assert!(sent(&mut io).contains(&Msg::NotifyDestroyEntity { eid: keeper }));
}

/// SIGTERM while storage stays down: the game stops at the deadline and says which saves it
/// could not write and why.
#[test]
fn a_stop_that_cannot_write_its_saves_names_them() {
    use goworld_common::testlog;
    testlog::capture();
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_saving_every(t0, std::time::Duration::from_secs(300));
    mem.set_down(true);
    g.on_signal(&mut io, t0, goworld_common::sig::SIGTERM);
    let reqs = g.take_store_requests();
    g.on_store_results(&mut io, t0, mem.answer_all(reqs));
    let mut now = t0;
    while !g.should_stop() {
        now = g.next_deadline().unwrap();
        assert!(now <= t0 + STOP_DRAIN_TIMEOUT);
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        let reqs = g.take_store_requests();
        g.on_store_results(&mut io, now, mem.answer_all(reqs));
    }
    assert_eq!(now, t0 + STOP_DRAIN_TIMEOUT);
    let warns = testlog::take_at(log::Level::Warn);
    assert!(
        warns.iter().any(|l| l.contains("1 saves not written")
            && l.contains(&format!("Drainer<{keeper}>"))
            && l.contains("connection refused")),
        "{warns:#?}"
    );
}

/// A freeze while storage is down does not wait for it: the held saves go into the freeze
/// file, and the restored game writes them.
#[test]
fn a_freeze_carries_held_saves_to_the_restored_game() {
    use std::time::Duration;
    let t0 = Instant::now();
    let (mut g, mut io, keeper, mem) = keeper_saving_every(t0, Duration::from_secs(1));
    mem.set_down(true);
    set_n(&mut g, &mut io, t0, keeper, 9);
    let t1 = t0 + Duration::from_secs(1);
    g.on_tick(&mut io, t1, SystemTime::UNIX_EPOCH);
    let reqs = g.take_store_requests();
    assert_eq!(reqs.len(), 1, "the periodic save");
    g.on_store_results(&mut io, t1, mem.answer_all(reqs));
    assert_eq!(g.world().held_saves(), 1);
    g.on_signal(&mut io, t1, goworld_common::sig::SIGUSR1);
    g.on_frame(
        &mut io,
        t1,
        conn(1),
        &Msg::StartFreezeGameAck { disp_id: 1 }.to_payload(),
    );
    let bytes = frozen(&mut g).expect("frozen without waiting for storage");
    g.freeze_written();
    // The new process, storage back.
    mem.set_down(false);
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    types.register::<Drainer>("Drainer").unwrap();
    let now = Instant::now();
    let mut restored = GameService::new(
        Settings {
            restore: true,
            ..settings(1, "Account", now)
        },
        IdGen::new([1, 2, 3], 2),
        types,
        Stores::ALL,
        Rng::new(2),
    );
    let mut rio = MemIo::new();
    restored.thaw(&mut rio, now, &bytes).unwrap();
    assert_eq!(saved_n(&mem, &keeper), Some(0));
    answer_stores(&mut restored, &mut rio, now, &mem);
    assert_eq!(
        saved_n(&mem, &keeper),
        Some(9),
        "written by the restored game"
    );
}

/// A dispatcher that declared this game dead (their link went silent) refuses the entities
/// the game announces when it reconnects: the game drops them (no OnDestroy, no save, no
/// destroy notice: the players may be back on another game) and does not take back
/// the registry keys it held there, which live games may own by now. After a plain
/// dispatcher restart it does take them back (force), as before.
#[test]
fn declared_dead_by_its_dispatcher_the_game_drops_its_entities_and_keys_there() {
    for declared_dead in [false, true] {
        let now = Instant::now();
        let (mut g, mut io) = mover_game_dialing(now);
        let ack = |rejected: Vec<EntityId>, kvreg: &[(&str, &str)], declared_dead| {
            Msg::SetGameIdAck {
                disp_id: 1,
                deployment_ready: false,
                games: vec![1, 2],
                rejected,
                kvreg: (kvreg.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                declared_dead,
            }
            .to_payload()
        };
        g.on_frame(
            &mut io,
            now,
            conn(1),
            &ack(vec![], &[("Service/Svc#0", "game1")], false),
        );
        let mut movers = Vec::new();
        g.with_game_ctx(&mut io, now, |ctx| {
            movers.push(ctx.create_entity_locally("Mover"));
            movers.push(ctx.create_entity_locally("Mover"));
        });
        io.take();

        let silent = CloseReason::Silent(std::time::Duration::from_secs(5));
        g.on_close(&mut io, now, conn(1), &silent);
        g.on_open(&mut io, now, conn(2), Origin::Dialed { dial: 1 }, addr());
        let hello: Vec<Msg> = (io.take().into_iter())
            .map(|(_, p)| Msg::decode(&p).unwrap())
            .collect();
        match &hello[..] {
            [Msg::SetGameId {
                is_reconnect: true,
                entities,
                ..
            }] => {
                for m in &movers {
                    assert!(entities.contains(m), "{m} announced");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        let (rejected, kvreg): (Vec<EntityId>, &[(&str, &str)]) = if declared_dead {
            (movers.clone(), &[("Service/Svc#0", "game2")])
        } else {
            (vec![], &[])
        };
        g.on_frame(&mut io, now, conn(2), &ack(rejected, kvreg, declared_dead));
        let out: Vec<Msg> = (io.take().into_iter())
            .map(|(_, p)| Msg::decode(&p).unwrap())
            .collect();
        let forced = out.iter().any(
            |m| matches!(m, Msg::KvregRegister { key, force: true, .. } if key == "Service/Svc#0"),
        );
        for m in &movers {
            assert_eq!(
                g.world().exists(m),
                !declared_dead,
                "declared_dead={declared_dead}"
            );
        }
        assert_eq!(
            forced, !declared_dead,
            "declared_dead={declared_dead}: {out:?}"
        );
    }
}

/// A persistent entity that enters the space it is told to.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Rover;

impl Entity for Rover {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.persistent(true)
            .attr(Attr::<i64>::server("n").persistent())
            .method(
                "Go",
                crate::api::Expose::Server,
                |_: &mut Rover, ctx, (space,): (EntityId,)| {
                    ctx.enter_space(space, crate::api::Vec3::default())
                },
            );
    }
}

/// The storage saves of `id` among `reqs`.
fn saves_of(reqs: &[crate::store::StoreRequest], id: &EntityId) -> usize {
    use crate::store::{StorageOp, StoreOp};
    (reqs.iter())
        .filter(|r| matches!(&r.op, StoreOp::Storage(StorageOp::Save { eid, .. }) if eid == id))
        .count()
}

/// An entity that migrates away and comes back (a player walking between spaces on two
/// games) keeps one periodic save, not one more per round trip: the save timer goes with it.
/// (The soak found the timer queue, the saves and the tick time of both games growing with
/// every migration until a hot swap rebuilt them.)
#[test]
fn an_entity_that_migrates_away_and_back_keeps_one_periodic_save() {
    use std::time::Duration;
    let t0 = Instant::now();
    let mem = crate::store::mem::MemStores::default();
    let mut types = Registry::new();
    types.register::<Account>("Account").unwrap();
    types.register::<Rover>("Rover").unwrap();
    let (mut g, mut io) = ready_game(types, "Account", Stores::ALL, t0);
    let interval = Duration::from_secs(1);
    g.set_save_interval(interval);
    let mut id = EntityId::default();
    g.with_game_ctx(&mut io, t0, |ctx| id = ctx.create_entity_locally("Rover"));
    answer_stores(&mut g, &mut io, t0, &mem);
    let timers = g.world().timers_pending();
    let far = EntityId::parse("farspacefarspac1").unwrap();
    let mut now = t0;
    for trip in 0..5 {
        now += Duration::from_millis(10);
        let go = Msg::CallEntityMethod {
            eid: id,
            method: "Go".into(),
            args: crate::args![far],
        };
        g.on_frame(&mut io, now, conn(1), &go.to_payload());
        let found = Msg::QuerySpaceGameIdForMigrate {
            space_id: far,
            eid: id,
            game_id: Some(2),
        };
        g.on_frame(&mut io, now, conn(1), &found.to_payload());
        let acked = Msg::MigrateRequest {
            eid: id,
            space_id: far,
            space_game_id: 2,
        };
        io.take();
        g.on_frame(&mut io, now, conn(1), &acked.to_payload());
        let data = (io.take().into_iter())
            .find_map(|(_, p)| match Msg::decode(&p) {
                Ok(Msg::RealMigrate { data, .. }) => Some(data),
                _ => None,
            })
            .unwrap_or_else(|| panic!("trip {trip}: the entity leaves"));
        assert!(!g.world().exists(&id));
        assert!(
            g.world().timers_pending() < timers,
            "trip {trip}: its save timer went with it"
        );
        // Back from the other game (whose space it left).
        let back = Msg::RealMigrate {
            eid: id,
            target_game: 1,
            data,
        };
        g.on_frame(&mut io, now, conn(1), &back.to_payload());
        assert!(g.world().exists(&id), "trip {trip}: back");
        // Its fence comes back through the dispatcher (and its timeout goes).
        let fence = (io.take().into_iter())
            .map(|(_, p)| Msg::decode(&p).unwrap())
            .find(|m| matches!(m, Msg::CallEntityMethod { method, .. } if method == crate::world::FENCE_METHOD))
            .unwrap_or_else(|| panic!("trip {trip}: a fence is sent"));
        g.on_frame(&mut io, now, conn(1), &fence.to_payload());
        assert_eq!(g.world().timers_pending(), timers, "trip {trip}");
        answer_stores(&mut g, &mut io, now, &mem);
    }
    // Ten intervals: about one save per interval (the first comes after half to one).
    let mut saves = 0;
    let until = now + 10 * interval;
    while now < until {
        now = g.next_deadline().unwrap().min(until);
        g.on_tick(&mut io, now, SystemTime::UNIX_EPOCH);
        let reqs = g.take_store_requests();
        saves += saves_of(&reqs, &id);
        g.on_store_results(&mut io, now, mem.answer_all(reqs));
    }
    assert!((9..=11).contains(&saves), "{saves} saves in 10 intervals");
    assert_eq!(g.world().timers_pending(), timers);
}
