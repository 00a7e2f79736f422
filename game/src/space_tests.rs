//! In-memory tests of spaces on one game: creation and kinds, enter and leave in GoWorld's
//! order (client messages and callbacks), AOI by move and by direction, what clients see of
//! attributes and calls, `set_client` inside a space, position sync both ways, space
//! destruction, and the refusals (late `enable_aoi`, kind 0).
//!
//! Client messages are read back per client and written as short lines ("create R",
//! "create* A" for a player, "destroy B", "attr A.hp", "call A.Heard", "clear"), with entity
//! and client IDs replaced by the names the test gave them. Callbacks write to a per-thread
//! log in the same way.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::*;
use crate::api::{Act, Attr, Ctx, Entity, Expose, TypeDesc, Vec3};
use goworld_common::msgpack::Value;
use goworld_common::proto::{ClientMsg, SyncRecord};
use goworld_common::testio::MemIo;

// ---- the callback log and captured warnings -------------------------------------------------

thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(line: String) {
    LOG.with(|l| l.borrow_mut().push(line));
}

fn capture_warnings() {
    goworld_common::testlog::capture();
}

fn take_warnings() -> Vec<String> {
    goworld_common::testlog::take_at(log::Level::Warn)
}

// ---- entity types ---------------------------------------------------------------------------

/// The space type: AOI (distance 100) in odd kinds, none in even ones.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Room;

impl Entity for Room {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "Close",
            Expose::Server,
            |_: &mut Room, ctx: &mut Ctx, (): ()| ctx.destroy(),
        )
        .method(
            "LateAoi",
            Expose::Server,
            |_: &mut Room, ctx: &mut Ctx, (): ()| ctx.enable_aoi(100.0),
        )
        .method("Note", Expose::Server, note::<Room>)
        .method(
            "Count",
            Expose::Server,
            |_: &mut Room, ctx: &mut Ctx, (ty,): (String,)| {
                let mut all: Vec<String> =
                    ctx.space_entities().iter().map(|e| e.to_string()).collect();
                all.sort();
                log(format!(
                    "{}.count {ty}={} all={} {all:?}",
                    ctx.id(),
                    ctx.count_entities(&ty),
                    ctx.entity_count()
                ))
            },
        )
        .method(
            "Spawn",
            Expose::Server,
            |_: &mut Room, ctx: &mut Ctx, (ty, x, z): (String, f32, f32)| {
                let id = ctx.create_entity_in_space(&ty, Vec3::new(x, 0.0, z));
                log(format!("{}.spawned {id}", ctx.id()));
            },
        );
    }
    fn on_init(&mut self, ctx: &mut Ctx) {
        log(format!("{}.init", ctx.id()));
    }
    fn on_attrs_ready(&mut self, ctx: &mut Ctx) {
        log(format!("{}.attrs_ready", ctx.id()));
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        log(format!("{}.created", ctx.id()));
    }
    fn on_space_init(&mut self, ctx: &mut Ctx) {
        log(format!("{}.space_init", ctx.id()));
    }
    fn on_space_created(&mut self, ctx: &mut Ctx) {
        log(format!("{}.space_created kind={}", ctx.id(), ctx.kind()));
        if ctx.kind() % 2 == 1 {
            ctx.enable_aoi(100.0);
        }
    }
    fn on_space_destroy(&mut self, ctx: &mut Ctx) {
        log(format!("{}.space_destroy", ctx.id()));
    }
    fn on_entity_enter_space(&mut self, ctx: &mut Ctx, e: EntityId) {
        log(format!("{}.entity_enter {e}", ctx.id()));
    }
    fn on_entity_leave_space(&mut self, ctx: &mut Ctx, e: EntityId) {
        log(format!("{}.entity_leave {e}", ctx.id()));
    }
}

/// The boot entity: it hands its client to the entity a test names.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Boot;

impl Entity for Boot {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "GiveTo",
            Expose::Server,
            |_: &mut Boot, ctx: &mut Ctx, (to,): (EntityId,)| ctx.give_client_to(to),
        );
    }
}

/// The attributes and methods every moving type has.
fn mover_methods<T: Entity>(desc: &mut TypeDesc<T>) {
    desc.attr(Attr::<i64>::all_clients("hp"))
        .attr(Attr::<String>::client("secret"))
        .attr(Attr::<String>::server("note"))
        .method("Enter", Expose::Server, enter::<T>)
        .method("Move", Expose::Server, move_to::<T>)
        .method(
            "Yaw",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (y,): (f32,)| ctx.set_yaw(y),
        )
        .method(
            "Syncing",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (on,): (bool,)| ctx.set_client_syncing(on),
        )
        .method(
            "Shout",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (s,): (String,)| {
                ctx.call_all_clients("Heard", crate::args![s])
            },
        )
        .method(
            "SetHp",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (n,): (i64,)| ctx.attrs.root().set_int("hp", n),
        )
        .method(
            "SetSecret",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (s,): (String,)| ctx.attrs.root().set_str("secret", &s),
        )
        .method(
            "SetNote",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (s,): (String,)| ctx.attrs.root().set_str("note", &s),
        )
        .method(
            "GiveTo",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (to,): (EntityId,)| ctx.give_client_to(to),
        )
        .method(
            "MakeSpace",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (kind,): (i64,)| {
                ctx.create_space_locally(kind);
                log(format!("{}.made_space", ctx.id()));
            },
        )
        .method(
            "Face",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (o,): (EntityId,)| {
                assert!(ctx.face_to(o));
            },
        )
        .method("Who", Expose::Server, |_: &mut T, ctx: &mut Ctx, (): ()| {
            let ids = |v: Vec<EntityId>| {
                let mut v: Vec<String> = v.iter().map(|e| e.to_string()).collect();
                v.sort();
                v.join(",")
            };
            log(format!(
                "{}.who in=[{}] by=[{}]",
                ctx.id(),
                ids(ctx.interested_in()),
                ids(ctx.interested_by())
            ))
        })
        .method(
            "CloseThenEnter",
            Expose::Server,
            |_: &mut T, ctx: &mut Ctx, (space,): (EntityId,)| {
                ctx.call(space, "Close", vec![]);
                ctx.enter_space(space, Vec3::default());
            },
        );
}

fn enter<T>(_: &mut T, ctx: &mut Ctx, (space, x, z): (EntityId, f32, f32)) {
    ctx.enter_space(space, Vec3::new(x, 0.0, z));
}

fn move_to<T>(_: &mut T, ctx: &mut Ctx, (x, y, z): (f32, f32, f32)) {
    ctx.set_position(Vec3::new(x, y, z));
}

/// A moving type with its own AOI distance, logging its space callbacks.
macro_rules! mover {
    ($ty:ident, $dist:expr) => {
        #[derive(Default, serde::Serialize, serde::Deserialize)]
        struct $ty;

        impl Entity for $ty {
            fn describe(desc: &mut TypeDesc<Self>) {
                desc.use_aoi($dist);
                mover_methods(desc);
            }
            fn on_enter_space(&mut self, ctx: &mut Ctx) {
                log(format!("{}.enter_space {}", ctx.id(), ctx.space_id()));
            }
            fn on_leave_space(&mut self, ctx: &mut Ctx, space: EntityId) {
                log(format!("{}.leave_space {space}", ctx.id()));
            }
            fn on_destroy(&mut self, ctx: &mut Ctx) {
                log(format!("{}.destroy", ctx.id()));
            }
        }
    };
}

mover!(Far, 300.0);
mover!(Near, 50.0);
// 0: the space's distance (100 in the AOI rooms).
mover!(Mid, 0.0);

fn note<T>(_: &mut T, ctx: &mut Ctx, (s,): (String,)) {
    log(format!("{}.note {s}", ctx.id()));
}

/// An entity that goes to other games; leaving a space, it sends the space a note.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Traveller;

impl Entity for Traveller {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(0.0)
            .method("Enter", Expose::Server, enter::<Traveller>)
            .method("Note", Expose::Server, note::<Traveller>)
            .method(
                "Die",
                Expose::Server,
                |_: &mut Traveller, ctx: &mut Ctx, (): ()| ctx.destroy(),
            )
            .method(
                "Arm",
                Expose::Server,
                |_: &mut Traveller, ctx: &mut Ctx, (ms,): (i64,)| {
                    ctx.add_timer(
                        Duration::from_millis(ms as u64),
                        "Note",
                        crate::args!["tick"],
                    );
                    ctx.attrs.root().set_int("armed", ms);
                },
            );
    }
    fn on_attrs_ready(&mut self, ctx: &mut Ctx) {
        log(format!("{}.attrs_ready", ctx.id()));
    }
    fn on_restored(&mut self, ctx: &mut Ctx) {
        log(format!("{}.restored", ctx.id()));
    }
    fn on_enter_space(&mut self, ctx: &mut Ctx) {
        log(format!("{}.enter_space {}", ctx.id(), ctx.space_id()));
    }
    fn on_leave_space(&mut self, ctx: &mut Ctx, space: EntityId) {
        log(format!("{}.leave_space {space}", ctx.id()));
        ctx.call(space, "Note", crate::args!["left"]);
    }
    fn on_migrate_out(&mut self, ctx: &mut Ctx) {
        log(format!("{}.migrate_out", ctx.id()));
    }
    fn on_migrate_in(&mut self, ctx: &mut Ctx) {
        log(format!("{}.migrate_in", ctx.id()));
    }
    fn on_enter_space_failed(&mut self, ctx: &mut Ctx, space: EntityId) {
        log(format!("{}.enter_space_failed {space}", ctx.id()));
    }
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        log(format!("{}.client_disconnected", ctx.id()));
    }
}

/// An entity whose `on_freeze` panics.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Fragile;

impl Entity for Fragile {
    fn describe(_: &mut TypeDesc<Self>) {}
    fn on_freeze(&mut self, _: &mut Ctx) {
        panic!("Fragile cannot be frozen");
    }
}

// ---- the harness ----------------------------------------------------------------------------

const T0_UNIX: u32 = 1_700_000_000;

fn conn() -> ConnId {
    ConnId { slot: 1, gen: 1 }
}

/// One ready game (ID 1, one dispatcher) with the types above, its output, its clock and
/// the names of the entities and clients a test made.
struct G {
    g: GameService,
    io: MemIo,
    now: Instant,
    names: HashMap<EntityId, String>,
    clients: HashMap<String, GameClient>,
}

impl G {
    fn new() -> G {
        capture_warnings();
        let t0 = Instant::now();
        let mut types = Registry::new();
        types.register::<Boot>("Boot").unwrap();
        types.register::<Far>("Far").unwrap();
        types.register::<Near>("Near").unwrap();
        types.register::<Mid>("Mid").unwrap();
        types.register::<Traveller>("Traveller").unwrap();
        types.register::<Fragile>("Fragile").unwrap();
        types.register_space::<Room>().unwrap();
        let s = Settings {
            game_id: 1,
            desired_dispatchers: 1,
            ban_boot_entity: false,
            boot_entity: "Boot".into(),
            restore: false,
            clock: WallClock {
                at: t0,
                unix_secs: T0_UNIX,
            },
        };
        let mut g = GameService::new(
            s,
            IdGen::new([1, 2, 3], 1),
            types,
            Stores::NONE,
            Rng::new(1),
        );
        let mut io = MemIo::new();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        g.on_open(&mut io, t0, conn(), Origin::Dialed { dial: 1 }, addr);
        let ack = Msg::SetGameIdAck {
            disp_id: 1,
            deployment_ready: true,
            games: vec![1],
            rejected: vec![],
            kvreg: vec![],
            declared_dead: false,
        };
        g.on_frame(&mut io, t0, conn(), &ack.to_payload());
        io.take();
        let mut names = HashMap::new();
        names.insert(nil_space_id(1), "nil".to_string());
        let t = G {
            g,
            io,
            now: t0,
            names,
            clients: HashMap::new(),
        };
        t.log();
        take_warnings();
        t
    }

    fn frame(&mut self, m: Msg) {
        self.g
            .on_frame(&mut self.io, self.now, conn(), &m.to_payload());
    }

    fn call(&mut self, id: EntityId, method: &str, args: Vec<Vec<u8>>) {
        self.frame(Msg::CallEntityMethod {
            eid: id,
            method: method.into(),
            args,
        });
    }

    fn name(&mut self, id: EntityId, name: &str) -> EntityId {
        self.names.insert(id, name.to_string());
        id
    }

    /// Creates an entity of `ty` named `name` in the nil space.
    fn create(&mut self, ty: &str, name: &str) -> EntityId {
        let mut id = EntityId::NONE;
        let now = self.now;
        self.g
            .with_game_ctx(&mut self.io, now, |c| id = c.create_entity_locally(ty));
        self.name(id, name)
    }

    /// Creates a space of `kind` named `name` on this game.
    fn space(&mut self, kind: i64, name: &str) -> EntityId {
        let mut id = EntityId::NONE;
        let now = self.now;
        self.g
            .with_game_ctx(&mut self.io, now, |c| id = c.create_space_locally(kind));
        self.name(id, name)
    }

    /// Connects client `client` on `gate`: its boot entity is named `boot-<client>`.
    fn connect(&mut self, client: &str, gate: u16) -> EntityId {
        let cid = EntityId::parse(&format!("{client:->16}")).unwrap();
        let boot = EntityId::parse(&format!("{:->16}", format!("boot-{client}"))).unwrap();
        self.names.insert(cid, client.to_string());
        self.name(boot, &format!("boot-{client}"));
        self.clients.insert(
            client.to_string(),
            GameClient {
                client_id: cid,
                gate_id: gate,
            },
        );
        self.frame(Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: boot,
            gate_id: Some(gate),
        });
        boot
    }

    /// Creates an entity of `ty` named `name` that owns client `client` (on `gate`).
    fn with_client(&mut self, ty: &str, name: &str, client: &str, gate: u16) -> EntityId {
        let boot = self.connect(client, gate);
        let id = self.create(ty, name);
        self.call(boot, "GiveTo", crate::args![id]);
        assert_eq!(self.g.world().client_of(&id), Some(self.clients[client]));
        id
    }

    fn enter(&mut self, id: EntityId, space: EntityId, x: f32, z: f32) {
        self.call(id, "Enter", crate::args![space, x, z]);
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        self.g
            .on_tick(&mut self.io, self.now, std::time::SystemTime::UNIX_EPOCH);
    }

    fn named(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (id, n) in &self.names {
            out = out.replace(&id.to_string(), n);
        }
        out
    }

    /// The callbacks logged since the last look, with names.
    fn log(&self) -> Vec<String> {
        LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
            .iter()
            .map(|s| self.named(s))
            .collect()
    }

    /// Everything sent since the last look, decoded.
    fn sent(&mut self) -> Vec<Msg> {
        self.io
            .take()
            .into_iter()
            .map(|(_, p)| Msg::decode(&p).unwrap())
            .collect()
    }

    fn line(&self, m: &ClientMsg) -> String {
        let n = |id: &EntityId| self.named(&id.to_string());
        match m {
            ClientMsg::CreateEntityOnClient { is_player, eid, .. } => {
                format!("create{} {}", if *is_player { "*" } else { "" }, n(eid))
            }
            ClientMsg::DestroyEntityOnClient { eid, .. } => format!("destroy {}", n(eid)),
            ClientMsg::NotifyMapAttrChange { eid, key, .. } => format!("attr {}.{key}", n(eid)),
            ClientMsg::CallEntityMethodOnClient { eid, method, .. } => {
                format!("call {}.{method}", n(eid))
            }
            ClientMsg::ClearClientProxyFilterProps => "clear".into(),
            other => format!("{other:?}"),
        }
    }

    /// Client messages sent since the last look, per client, in order (other messages are
    /// dropped).
    fn client_lines(&mut self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in self.sent() {
            if let Msg::ToClient { client_id, msg, .. } = m {
                let line = self.line(&msg);
                out.entry(self.named(&client_id.to_string()))
                    .or_default()
                    .push(line);
            }
        }
        out
    }

    /// The full client messages sent since the last look, for one client.
    fn raw_to(&mut self, client: &str) -> Vec<ClientMsg> {
        let cid = self.clients[client].client_id;
        self.sent()
            .into_iter()
            .filter_map(|m| match m {
                Msg::ToClient { client_id, msg, .. } if client_id == cid => Some(msg),
                _ => None,
            })
            .collect()
    }

    /// The position syncs (1502) sent since the last look: per gate, `(client, entity, x, y,
    /// z, yaw)` in order, and the payload lengths.
    #[allow(clippy::type_complexity)]
    fn syncs(&mut self) -> Vec<(u16, Vec<(String, String, [f32; 4])>, usize)> {
        let sent = self.io.take();
        let mut out = Vec::new();
        for (_, p) in sent {
            if let Ok(Msg::SyncPositionYawOnClients { gate_id, records }) = Msg::decode(&p) {
                let recs = records
                    .iter()
                    .map(|(c, r)| {
                        (
                            self.named(&c.to_string()),
                            self.named(&r.eid.to_string()),
                            [r.x, r.y, r.z, r.yaw],
                        )
                    })
                    .collect();
                out.push((gate_id, recs, p.len()));
            }
        }
        out.sort_by_key(|s| s.0);
        out
    }

    fn pos(&self, id: EntityId) -> (f32, f32, f32, f32) {
        let (p, yaw) = self.g.world().position_of(&id).unwrap();
        (p.x, p.y, p.z, yaw)
    }

    /// Names of the entities `id` sees, sorted.
    fn sees(&self, id: EntityId) -> Vec<String> {
        let mut v: Vec<String> = self
            .g
            .world()
            .sees(&id)
            .iter()
            .map(|e| self.named(&e.to_string()))
            .collect();
        v.sort();
        v
    }
}

fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(c, lines)| (c.to_string(), lines.iter().map(|s| s.to_string()).collect()))
        .collect()
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn a_local_space_has_its_kind_runs_space_init_then_space_created_and_shows_its_kind() {
    let mut t = G::new();
    let r = t.space(1, "R");
    assert_eq!(
        t.log(),
        [
            "R.init",
            "R.space_init",
            "R.attrs_ready",
            "R.space_created kind=1"
        ],
        "OnSpaceInit right after OnInit; OnSpaceCreated instead of OnCreated"
    );
    assert_eq!(t.g.world().type_of(&r), Some(crate::api::SPACE_TYPE));
    assert_eq!(t.g.world().space_kind(&r), Some(1));
    let a =
        t.g.world()
            .attrs(&r)
            .unwrap()
            .as_map()
            .get_float(crate::api::SPACE_AOI.name());
    assert_eq!(a, 100.0, "AOI enabled in OnSpaceCreated is recorded");
    assert_eq!(t.sent(), vec![Msg::NotifyCreateEntity { eid: r }]);

    // A client that enters sees the space entity with its kind as its only client data.
    let a = t.with_client("Mid", "A", "c1", 1);
    t.sent();
    t.enter(a, r, 3.0, 4.0);
    let msgs = t.raw_to("c1");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let ClientMsg::CreateEntityOnClient {
        is_player,
        eid,
        type_name,
        client_data,
        ..
    } = &msgs[0]
    else {
        panic!("{msgs:?}")
    };
    assert_eq!(
        (*is_player, *eid, type_name.as_str()),
        (false, r, "__space__")
    );
    let data = goworld_common::msgpack::decode_exact(client_data).unwrap();
    assert_eq!(
        data,
        Value::Map(vec![(Value::Str("_K".into()), Value::Int(1))]),
        "clientData is {{_K: kind}}; _EnableAOI is server-only"
    );
    assert_eq!(
        t.pos(a),
        (3.0, 0.0, 4.0, 0.0),
        "the position is set on enter"
    );
    assert_eq!(t.g.world().space_of(&a), Some(r));
    assert_eq!(t.g.world().space_members(&r), vec![a]);
}

#[test]
fn entering_and_leaving_send_the_space_and_neighbours_in_goworlds_order() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let r2 = t.space(3, "R2");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 1);
    t.log();
    t.sent();

    t.enter(b, r, 0.0, 0.0);
    assert_eq!(t.client_lines(), map(&[("c2", &["create R"])]));
    assert_eq!(t.log(), ["R.entity_enter B", "B.enter_space R"]);

    // The newcomer's client gets the space before its neighbours; the neighbour's client
    // gets the newcomer at its position.
    t.enter(a, r, 10.0, 0.0);
    let msgs = t.sent();
    let to_c2: Vec<&ClientMsg> = msgs
        .iter()
        .filter_map(|m| match m {
            Msg::ToClient { client_id, msg, .. } if *client_id == t.clients["c2"].client_id => {
                Some(msg)
            }
            _ => None,
        })
        .collect();
    assert!(
        matches!(to_c2[..], [ClientMsg::CreateEntityOnClient { is_player: false, eid, x, z, .. }] if *eid == a && *x == 10.0 && *z == 0.0),
        "{to_c2:?}"
    );
    let lines: BTreeMap<String, Vec<String>> = {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in &msgs {
            if let Msg::ToClient { client_id, msg, .. } = m {
                out.entry(t.named(&client_id.to_string()))
                    .or_default()
                    .push(t.line(msg));
            }
        }
        out
    };
    assert_eq!(
        lines,
        map(&[("c1", &["create R", "create B"]), ("c2", &["create A"])])
    );
    assert_eq!(
        t.log(),
        ["R.entity_enter A", "A.enter_space R"],
        "OnEntityEnterSpace before OnEnterSpace"
    );
    assert_eq!(t.sees(a), ["B"]);
    assert_eq!(t.sees(b), ["A"]);

    // Leaving: the neighbours go before the space, then OnEntityLeaveSpace, OnLeaveSpace;
    // entering the nil space itself sends nothing.
    t.enter(a, nil_space_id(1), 0.0, 0.0);
    assert_eq!(
        t.client_lines(),
        map(&[("c1", &["destroy B", "destroy R"]), ("c2", &["destroy A"])])
    );
    assert_eq!(t.log(), ["R.entity_leave A", "A.leave_space R"]);
    assert_eq!(t.g.world().space_of(&a), Some(nil_space_id(1)));
    assert_eq!(t.g.world().space_members(&r), vec![b]);

    // Already in the nil space: nothing at all.
    t.enter(a, nil_space_id(1), 5.0, 5.0);
    assert_eq!(t.client_lines(), map(&[]));
    assert_eq!(t.log(), Vec::<String>::new());

    // From one space straight into another: leave the first, then enter the second.
    t.enter(b, r2, 0.0, 0.0);
    assert_eq!(
        t.client_lines(),
        map(&[("c2", &["destroy R", "create R2"])])
    );
    assert_eq!(
        t.log(),
        [
            "R.entity_leave B",
            "B.leave_space R",
            "R2.entity_enter B",
            "B.enter_space R2"
        ]
    );
}

#[test]
fn moving_in_and_out_of_range_creates_and_destroys_on_both_clients() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 1);
    t.enter(a, r, 0.0, 0.0);
    t.enter(b, r, 150.0, 0.0);
    t.sent();
    assert_eq!(t.sees(a), Vec::<String>::new());

    // The space's distance (100) is used by types without their own; the square is inclusive.
    t.call(a, "Move", crate::args![50.0f32, 0.0f32, 0.0f32]);
    assert_eq!(
        t.client_lines(),
        map(&[("c1", &["create B"]), ("c2", &["create A"])])
    );
    t.call(a, "Move", crate::args![60.0f32, 7.0f32, 0.0f32]);
    assert_eq!(
        t.client_lines(),
        map(&[]),
        "a move within range changes nothing"
    );
    t.call(a, "Move", crate::args![-100.0f32, 0.0f32, 0.0f32]);
    assert_eq!(
        t.client_lines(),
        map(&[("c1", &["destroy B"]), ("c2", &["destroy A"])])
    );
    // Back in on the Z axis: the create carries the new position.
    t.call(a, "Move", crate::args![150.0f32, 2.0f32, 99.0f32]);
    let to_c2 = t.raw_to("c2");
    assert!(
        matches!(&to_c2[..], [ClientMsg::CreateEntityOnClient { eid, x, y, z, .. }] if *eid == a && (*x, *y, *z) == (150.0, 2.0, 99.0)),
        "{to_c2:?}"
    );
    assert_eq!(t.sees(a), ["B"]);
    assert_eq!(t.sees(b), ["A"]);
}

#[test]
fn interest_is_directional_and_decides_who_hears_calls_and_attributes() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let f = t.with_client("Far", "F", "cf", 1);
    let n = t.with_client("Near", "N", "cn", 2);
    t.enter(f, r, 0.0, 0.0);
    t.sent();
    // F (300) sees N (50) at 200; N does not see F.
    t.enter(n, r, 200.0, 0.0);
    assert_eq!(
        t.client_lines(),
        map(&[("cf", &["create N"]), ("cn", &["create R"])])
    );
    assert_eq!(t.sees(f), ["N"]);
    assert_eq!(t.sees(n), Vec::<String>::new());
    let mut seen_by_n: Vec<EntityId> = t.g.world().seen_by(&n);
    seen_by_n.sort();
    assert_eq!(seen_by_n, vec![f]);
    t.log();
    t.call(f, "Who", vec![]);
    t.call(n, "Who", vec![]);
    assert_eq!(t.log(), ["F.who in=[N] by=[]", "N.who in=[] by=[F]"]);

    // CallAllClients: the sender's own client and the clients of those who see it.
    t.call(n, "Shout", crate::args!["hi"]);
    assert_eq!(
        t.client_lines(),
        map(&[("cf", &["call N.Heard"]), ("cn", &["call N.Heard"])])
    );
    t.call(f, "Shout", crate::args!["hi"]);
    assert_eq!(t.client_lines(), map(&[("cf", &["call F.Heard"])]));

    // AllClients attributes go the same way; Client ones only to the own client; server
    // ones nowhere.
    t.call(n, "SetHp", crate::args![5i64]);
    assert_eq!(
        t.client_lines(),
        map(&[("cf", &["attr N.hp"]), ("cn", &["attr N.hp"])])
    );
    t.call(n, "SetSecret", crate::args!["s"]);
    assert_eq!(t.client_lines(), map(&[("cn", &["attr N.secret"])]));
    t.call(n, "SetNote", crate::args!["x"]);
    assert_eq!(t.client_lines(), map(&[]));
    t.call(f, "SetHp", crate::args![9i64]);
    assert_eq!(t.client_lines(), map(&[("cf", &["attr F.hp"])]));

    // What a watcher's client is shown of N: its AllClients attributes only.
    t.call(f, "Move", crate::args![1000.0f32, 0.0f32, 0.0f32]);
    t.sent();
    t.call(f, "Move", crate::args![0.0f32, 0.0f32, 0.0f32]);
    let to_f = t.raw_to("cf");
    let [ClientMsg::CreateEntityOnClient {
        eid, client_data, ..
    }] = &to_f[..]
    else {
        panic!("{to_f:?}")
    };
    assert_eq!(*eid, n);
    assert_eq!(
        goworld_common::msgpack::decode_exact(client_data).unwrap(),
        Value::Map(vec![(Value::Str("hp".into()), Value::Int(5))])
    );
}

#[test]
fn set_client_in_a_space_shows_the_player_the_space_and_what_it_sees() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let f = t.create("Far", "F");
    let n = t.create("Near", "N");
    t.enter(f, r, 0.0, 0.0);
    t.enter(n, r, 200.0, 0.0);
    let b1 = t.connect("c1", 1);
    let b2 = t.connect("c2", 1);
    t.sent();

    // F sees N, so its new client gets N after the player and the space.
    t.call(b1, "GiveTo", crate::args![f]);
    assert_eq!(
        t.client_lines(),
        map(&[(
            "c1",
            &[
                "clear",
                "destroy boot-c1",
                "clear",
                "create* F",
                "create R",
                "create N"
            ]
        )])
    );
    // N sees nothing (F is out of its range), so its new client gets no neighbour.
    t.call(b2, "GiveTo", crate::args![n]);
    assert_eq!(
        t.client_lines(),
        map(&[(
            "c2",
            &["clear", "destroy boot-c2", "clear", "create* N", "create R"]
        )])
    );
    // Giving the client away: the old client loses what it saw, the space, the player.
    t.call(f, "GiveTo", crate::args![b1]);
    assert_eq!(
        t.client_lines(),
        map(&[(
            "c1",
            &[
                "clear",
                "destroy N",
                "destroy R",
                "destroy F",
                "clear",
                "create* boot-c1"
            ]
        )])
    );
    t.call(n, "GiveTo", crate::args![b2]);
    assert_eq!(
        t.client_lines(),
        map(&[(
            "c2",
            &[
                "clear",
                "destroy R",
                "destroy N",
                "clear",
                "create* boot-c2"
            ]
        )])
    );
}

#[test]
fn positions_reach_own_and_watching_clients_once_per_interval_one_packet_per_gate() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 2);
    let c = t.with_client("Mid", "C", "c3", 1);
    t.enter(a, r, 0.0, 0.0);
    t.enter(b, r, 10.0, 0.0);
    t.enter(c, r, -10.0, 0.0);
    t.tick(Duration::from_millis(200));
    t.sent();

    let moved_at = t.now;
    t.call(a, "Move", crate::args![5.0f32, 1.0f32, 2.0f32]);
    t.call(a, "Yaw", crate::args![90.0f32]);
    assert_eq!(
        t.g.next_deadline(),
        Some(moved_at + Duration::from_millis(100)),
        "the sync is due one interval after the first change"
    );
    t.tick(Duration::from_millis(99));
    assert_eq!(t.syncs(), vec![], "nothing before the interval");
    t.tick(Duration::from_millis(1));
    let rec = [5.0, 1.0, 2.0, 90.0];
    assert_eq!(
        t.syncs(),
        vec![
            (
                1,
                vec![
                    ("c1".into(), "A".into(), rec),
                    ("c3".into(), "A".into(), rec)
                ],
                4 + 2 * 48
            ),
            (2, vec![("c2".into(), "A".into(), rec)], 4 + 48),
        ],
        "one 1502 per gate: the own client, then the watchers"
    );
    t.tick(Duration::from_millis(200));
    assert_eq!(t.syncs(), vec![], "sent once");

    // A yaw alone is synced the same way, with the position unchanged.
    t.call(b, "Yaw", crate::args![45.0f32]);
    t.tick(Duration::from_millis(100));
    let rec = [10.0, 0.0, 0.0, 45.0];
    let mut got = t.syncs();
    got[0].1.sort_by(|x, y| x.0.cmp(&y.0)); // two watchers on gate 1: either order
    assert_eq!(
        got,
        vec![
            (
                1,
                vec![
                    ("c1".into(), "B".into(), rec),
                    ("c3".into(), "B".into(), rec)
                ],
                4 + 2 * 48
            ),
            (2, vec![("c2".into(), "B".into(), rec)], 4 + 48),
        ]
    );
}

#[test]
fn client_syncs_apply_only_with_client_syncing_on_and_are_not_echoed() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 1);
    t.enter(a, r, 0.0, 0.0);
    t.enter(b, r, 10.0, 0.0);
    t.tick(Duration::from_millis(200));
    t.sent();
    let sync = |eid, x, z, yaw| Msg::SyncPositionYawFromClient {
        records: vec![SyncRecord {
            eid,
            x,
            y: 0.5,
            z,
            yaw,
        }],
    };

    t.frame(sync(a, 20.0, 30.0, 45.0));
    assert_eq!(t.pos(a), (0.0, 0.0, 0.0, 0.0), "syncing is off by default");
    assert_eq!(t.g.world().syncs_ignored(), 1);
    t.tick(Duration::from_millis(200));
    assert_eq!(t.syncs(), vec![]);

    t.call(a, "Syncing", crate::args![true]);
    t.frame(sync(a, 20.0, 30.0, 45.0));
    assert_eq!(t.pos(a), (20.0, 0.5, 30.0, 45.0));
    assert_eq!(t.g.world().syncs_ignored(), 1);
    t.tick(Duration::from_millis(100));
    assert_eq!(
        t.syncs(),
        vec![(
            1,
            vec![("c2".into(), "A".into(), [20.0, 0.5, 30.0, 45.0])],
            4 + 48
        )],
        "the watchers get it; the client that sent it does not"
    );

    // A client sync moves the entity in AOI too.
    t.frame(sync(a, 500.0, 0.0, 0.0));
    assert_eq!(
        t.client_lines(),
        map(&[("c1", &["destroy B"]), ("c2", &["destroy A"])])
    );
    // B's syncing is off; an unknown entity is counted too.
    t.frame(sync(b, 1.0, 1.0, 1.0));
    t.frame(sync(
        EntityId::parse("nobodynobodynobo").unwrap(),
        1.0,
        1.0,
        1.0,
    ));
    assert_eq!(t.g.world().syncs_ignored(), 3);
    assert_eq!(t.pos(b), (10.0, 0.0, 0.0, 0.0));
}

#[test]
fn destroying_a_space_runs_on_space_destroy_first_then_destroys_what_is_in_it() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 1);
    t.enter(a, r, 0.0, 0.0);
    t.enter(b, r, 10.0, 0.0);
    t.log();
    t.sent();

    t.call(r, "Close", vec![]);
    let log = t.log();
    assert_eq!(log[0], "R.space_destroy", "{log:?}");
    for e in ["A", "B"] {
        let at = |s: String| {
            let hits: Vec<usize> = (0..log.len()).filter(|&i| log[i] == s).collect();
            assert_eq!(hits.len(), 1, "{s} once in {log:?}");
            hits[0]
        };
        let (l, ls, d) = (
            at(format!("R.entity_leave {e}")),
            at(format!("{e}.leave_space R")),
            at(format!("{e}.destroy")),
        );
        assert!(l < ls && ls < d, "{log:?}");
    }
    assert_eq!(log.len(), 7, "{log:?}");
    let sent = t.sent();
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut gone = Vec::new();
    for m in &sent {
        match m {
            Msg::ToClient { client_id, msg, .. } => lines
                .entry(t.named(&client_id.to_string()))
                .or_default()
                .push(t.line(msg)),
            Msg::NotifyDestroyEntity { eid } => gone.push(t.named(&eid.to_string())),
            _ => {}
        }
    }
    // Whichever goes first, each client sees its neighbour go, then the space, then itself.
    assert_eq!(
        lines,
        map(&[
            ("c1", &["destroy B", "destroy R", "clear", "destroy A"]),
            ("c2", &["destroy A", "destroy R", "clear", "destroy B"])
        ])
    );
    gone.sort();
    assert_eq!(gone, ["A", "B", "R"]);
    for id in [a, b, r] {
        assert!(!t.g.world().exists(&id));
    }
    assert_eq!(t.g.world().space_kind(&r), None);
}

#[test]
fn a_local_enter_into_a_space_destroyed_meanwhile_is_cancelled() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let r2 = t.space(1, "R2");
    let a = t.with_client("Mid", "A", "c1", 1);
    t.log();
    t.sent();
    // The close runs first (it was queued first), then the enter finds no space.
    t.call(a, "CloseThenEnter", crate::args![r]);
    assert_eq!(t.log(), ["R.space_destroy"]);
    assert_eq!(t.client_lines(), map(&[]));
    assert_eq!(t.g.world().space_of(&a), Some(nil_space_id(1)));
    assert!(take_warnings()
        .iter()
        .any(|w| w.contains("was destroyed; enter cancelled")));
    // The request is gone: the next enter works.
    t.enter(a, r2, 0.0, 0.0);
    assert_eq!(t.client_lines(), map(&[("c1", &["create R2"])]));
}

#[test]
fn enable_aoi_after_entities_entered_is_refused_with_a_warning() {
    let mut t = G::new();
    let r = t.space(2, "R");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 1);
    t.enter(a, r, 0.0, 0.0);
    take_warnings();
    t.call(r, "LateAoi", vec![]);
    let w = take_warnings();
    assert!(
        w.len() == 1 && w[0].contains("enable_aoi after 1 entities entered"),
        "{w:?}"
    );
    assert!(!t
        .g
        .world()
        .attrs(&r)
        .unwrap()
        .as_map()
        .has_key(crate::api::SPACE_AOI.name()));
    t.sent();
    t.enter(b, r, 10.0, 0.0);
    assert_eq!(
        t.client_lines(),
        map(&[("c2", &["create R"])]),
        "no AOI: no neighbours"
    );
    assert_eq!(t.sees(a), Vec::<String>::new());

    // Enabled once already: refused too, the distance stays.
    let r1 = t.space(1, "R1");
    t.call(r1, "LateAoi", vec![]);
    let w = take_warnings();
    assert!(w.len() == 1 && w[0].contains("already enabled"), "{w:?}");
}

#[test]
fn a_space_of_kind_zero_panics_in_game_code_and_creates_nothing() {
    let mut t = G::new();
    let a = t.create("Mid", "A");
    t.log();
    t.sent();
    let before = t.g.world().len();
    t.call(a, "MakeSpace", crate::args![0i64]);
    assert_eq!(
        t.log(),
        Vec::<String>::new(),
        "the method stopped at the panic"
    );
    assert_eq!(t.g.world().len(), before);
    assert_eq!(t.sent(), vec![], "nothing created, nothing announced");
    assert!(t.g.world().exists(&a));

    // The entity keeps running; a real kind works.
    t.call(a, "MakeSpace", crate::args![3i64]);
    let log = t.log();
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(log[0], "A.made_space");
    assert!(log[4].ends_with(".space_created kind=3"), "{log:?}");
    assert_eq!(t.g.world().len(), before + 1);
    assert!(matches!(t.sent()[..], [Msg::NotifyCreateEntity { .. }]));

    // Game-wide code cannot make one either: the same check (one path), the same caught panic.
    let mut id = EntityId::NONE;
    let now = t.now;
    t.g.with_game_ctx(&mut t.io, now, |c| id = c.create_space_locally(0));
    assert_eq!(t.g.world().len(), before + 1);
    assert!(!t.g.world().exists(&id));
    assert_eq!(t.sent(), vec![]);
    let w = take_warnings();
    assert!(
        w.iter().any(|w| w.contains("panicked in game-wide code")),
        "{w:?}"
    );
}

#[test]
fn entering_a_space_on_another_game_takes_three_steps_and_sends_a_snapshot() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let a = t.with_client("Traveller", "A", "c1", 1);
    let b = t.with_client("Mid", "B", "c2", 1);
    t.enter(a, r, 0.0, 0.0);
    t.enter(b, r, 10.0, 0.0);
    t.log();
    t.sent();
    let s = EntityId::parse("remotespaceremot").unwrap();
    t.name(s, "S");

    // 1: which game has the space (asked of the space's dispatcher).
    t.enter(a, s, 1.0, 2.0);
    assert_eq!(
        t.sent(),
        vec![Msg::QuerySpaceGameIdForMigrate {
            space_id: s,
            eid: a,
            game_id: None
        }]
    );
    // 2: hold my calls (asked of the entity's dispatcher).
    t.frame(Msg::QuerySpaceGameIdForMigrate {
        space_id: s,
        eid: a,
        game_id: Some(2),
    });
    assert_eq!(
        t.sent(),
        vec![Msg::MigrateRequest {
            eid: a,
            space_id: s,
            space_game_id: 2
        }]
    );
    assert_eq!(t.log(), Vec::<String>::new());
    assert_eq!(t.g.world().space_of(&a), Some(r), "still here until step 3");

    // 3: leave, OnMigrateOut, go. What the callbacks queued runs before the next message,
    // as GoWorld's post queue does after each packet.
    t.frame(Msg::MigrateRequest {
        eid: a,
        space_id: s,
        space_game_id: 2,
    });
    t.call(r, "Note", crate::args!["direct"]);
    assert_eq!(
        t.log(),
        [
            "R.entity_leave A",
            "A.leave_space R",
            "A.migrate_out",
            "R.note left",
            "R.note direct"
        ]
    );
    let mut sent = t.sent();
    let Some(Msg::RealMigrate {
        eid,
        target_game,
        data,
    }) = sent.pop()
    else {
        panic!("REAL_MIGRATE goes last: {sent:?}")
    };
    assert_eq!((eid, target_game), (a, 2));
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &sent {
        let Msg::ToClient { client_id, msg, .. } = m else {
            panic!("only the leave's client messages before it: {sent:?}")
        };
        lines
            .entry(t.named(&client_id.to_string()))
            .or_default()
            .push(t.line(msg));
    }
    assert_eq!(
        lines,
        map(&[("c1", &["destroy B", "destroy R"]), ("c2", &["destroy A"])])
    );
    let snap = world::decode_snapshot(a, &data).unwrap();
    assert_eq!(snap.type_name, "Traveller");
    assert_eq!(snap.space, s);
    assert_eq!(snap.pos, Vec3::new(1.0, 0.0, 2.0), "the target position");
    assert_eq!(snap.client, Some(t.clients["c1"]));
    assert!(!t.g.world().exists(&a));
    assert_eq!(t.g.world().space_members(&r), vec![b]);
}

#[test]
fn an_arriving_entity_enters_its_space_and_calls_made_here_wait_for_the_fence() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let b = t.with_client("Mid", "B", "c2", 1);
    t.enter(b, r, 10.0, 0.0);
    t.connect("c3", 1);
    t.log();
    t.sent();
    let x = EntityId::parse("travellertravel1").unwrap();
    t.name(x, "X");
    let snap = world::Snapshot {
        id: x,
        type_name: "Traveller".into(),
        attrs: crate::attr::Attrs::new().to_bytes(),
        state: rmp_serde::to_vec_named(&Traveller).unwrap(),
        client: Some(t.clients["c3"]),
        timers: vec![],
        space: r,
        pos: Vec3::new(5.0, 0.0, 0.0),
        yaw: 0.0,
        syncing_from_client: false,
        sync_flags: 0,
    };
    t.frame(Msg::RealMigrate {
        eid: x,
        target_game: 1,
        data: world::encode_snapshot(&snap),
    });
    assert_eq!(
        t.log(),
        [
            "X.attrs_ready",
            "X.migrate_in",
            "R.entity_enter X",
            "X.enter_space R"
        ],
        "OnAttrsReady, OnMigrateIn, then the enter; no OnCreated"
    );
    let mut sent = t.sent();
    // The entity's own dispatcher hears it is here first (a migration with a client comes
    // through the client's dispatcher), then the fence follows on the same link.
    assert_eq!(sent.remove(0), Msg::NotifyCreateEntity { eid: x });
    let fence = sent.remove(0);
    let Msg::CallEntityMethod { eid, method, args } = &fence else {
        panic!("{fence:?}")
    };
    assert_eq!((*eid, method.as_str()), (x, world::FENCE_METHOD));
    let (game, token) = <(u16, i64) as crate::args::FromArgs>::from_args(args).unwrap();
    assert_eq!(game, 1);
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &sent {
        if let Msg::ToClient { client_id, msg, .. } = m {
            lines
                .entry(t.named(&client_id.to_string()))
                .or_default()
                .push(t.line(msg));
        }
    }
    assert_eq!(
        lines,
        map(&[("c2", &["create X"]), ("c3", &["create R", "create B"])]),
        "its client, bound quietly, gets the space and what it sees"
    );

    // A call made here waits; calls through the dispatcher (possibly sent from here before X
    // arrived) run at once; a fence that is not the latest changes nothing.
    let now = t.now;
    t.g.with_game_ctx(&mut t.io, now, |c| {
        c.call(x, "Note", crate::args!["made here"])
    });
    assert_eq!(t.log(), Vec::<String>::new());
    t.call(x, "Note", crate::args!["via the dispatcher"]);
    assert_eq!(t.log(), ["X.note via the dispatcher"]);
    t.call(x, world::FENCE_METHOD, crate::args![1u16, token + 1]);
    t.call(x, world::FENCE_METHOD, crate::args![2u16, token]);
    assert_eq!(t.log(), Vec::<String>::new());
    t.frame(fence);
    assert_eq!(t.log(), ["X.note made here"]);
    t.g.with_game_ctx(&mut t.io, now, |c| c.call(x, "Note", crate::args!["after"]));
    assert_eq!(t.log(), ["X.note after"], "direct again");
    assert!(t
        .sent()
        .iter()
        .all(|m| !matches!(m, Msg::CallEntityMethod { .. })));

    // A fence that never comes back (a dispatcher lost it) holds calls for a while only.
    let y = EntityId::parse("travellertravel2").unwrap();
    t.name(y, "Y");
    let snap = world::Snapshot {
        id: y,
        client: None,
        space: nil_space_id(1),
        ..snap
    };
    t.frame(Msg::RealMigrate {
        eid: y,
        target_game: 1,
        data: world::encode_snapshot(&snap),
    });
    let arrived = t.now;
    t.log();
    take_warnings();
    t.g.with_game_ctx(&mut t.io, arrived, |c| {
        c.call(y, "Note", crate::args!["waited"])
    });
    t.tick(world::FENCE_TIMEOUT - Duration::from_millis(1));
    assert_eq!(t.log(), Vec::<String>::new());
    t.tick(Duration::from_millis(1));
    assert_eq!(t.log(), ["Y.note waited"]);
    assert!(take_warnings()
        .iter()
        .any(|w| w.contains("fence did not come back")));
}

#[test]
fn a_failed_query_cancels_quietly_and_a_destroy_releases_the_held_calls() {
    let mut t = G::new();
    let c = t.create("Traveller", "C");
    let s = EntityId::parse("remotespaceremot").unwrap();
    let query = |game| Msg::QuerySpaceGameIdForMigrate {
        space_id: s,
        eid: c,
        game_id: game,
    };
    t.sent();
    t.enter(c, s, 0.0, 0.0);
    assert_eq!(t.sent(), vec![query(None)]);
    // No game has the space: the enter is over, nothing was held, nothing to release; game
    // code hears that the enter failed.
    t.log();
    t.frame(query(Some(0)));
    assert_eq!(t.sent(), vec![]);
    assert_eq!(t.log(), [format!("C.enter_space_failed {s}")]);
    assert!(t.g.world().exists(&c));
    // So a new enter is accepted.
    t.enter(c, s, 0.0, 0.0);
    assert_eq!(t.sent(), vec![query(None)]);
    t.frame(query(Some(2)));
    assert_eq!(
        t.sent(),
        vec![Msg::MigrateRequest {
            eid: c,
            space_id: s,
            space_game_id: 2
        }]
    );
    // Destroyed while its dispatcher holds its calls: the hold is released first.
    t.call(c, "Die", vec![]);
    assert_eq!(
        t.sent(),
        vec![
            Msg::CancelMigrate { eid: c },
            Msg::NotifyDestroyEntity { eid: c }
        ]
    );
    t.frame(Msg::MigrateRequest {
        eid: c,
        space_id: s,
        space_game_id: 2,
    });
    assert_eq!(
        t.sent(),
        vec![],
        "a late echo for a gone entity does nothing"
    );
}

#[test]
fn a_space_counts_its_entities_and_creates_entities_inside_itself() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let a = t.with_client("Mid", "A", "c1", 1);
    t.enter(a, r, 0.0, 0.0);
    t.log();
    t.sent();
    t.call(r, "Spawn", crate::args!["Near", 5.0f32, 5.0f32]);
    let log = t.log();
    let spawned =
        t.g.world()
            .space_members(&r)
            .into_iter()
            .find(|e| *e != a)
            .expect("the spawned entity is in the space");
    t.name(spawned, "S");
    assert_eq!(
        log.iter().map(|l| t.named(l)).collect::<Vec<_>>(),
        ["R.spawned S", "R.entity_enter S", "S.enter_space R"]
    );
    assert_eq!(t.pos(spawned), (5.0, 0.0, 5.0, 0.0));
    // A (100) sees it; it (50) sees A too, 5 away on both axes.
    assert_eq!(t.client_lines(), map(&[("c1", &["create S"])]));
    assert_eq!(t.sees(spawned), ["A"]);
    t.call(r, "Count", crate::args!["Mid"]);
    let mut all = [a.to_string(), spawned.to_string()];
    all.sort();
    let all = all.map(|s| t.named(&s));
    assert_eq!(t.log(), [format!("R.count Mid=1 all=2 {all:?}")]);
}

#[test]
fn face_to_turns_clockwise_from_plus_z_as_goworld_does() {
    let mut t = G::new();
    let a = t.create("Mid", "A");
    let o = t.create("Mid", "O");
    t.call(a, "Move", crate::args![1.0f32, 0.0f32, 1.0f32]);
    for ((x, z), yaw) in [
        ((1.0f32, 5.0f32), 0.0f32),
        ((5.0, 1.0), 90.0),
        ((1.0, -3.0), 180.0),
        ((-3.0, 1.0), 270.0),
        ((3.0, 3.0), 45.0),
    ] {
        t.call(o, "Move", crate::args![x, 9.0f32, z]);
        t.call(a, "Face", crate::args![o]);
        let got = t.pos(a).3;
        assert!(
            (got - yaw).abs() < 1e-3,
            "facing ({x}, {z}): yaw {got}, not {yaw}"
        );
    }
}

/// Bad input between games: a REAL_MIGRATE whose data is not a snapshot, and a fence with
/// arguments that are not `(game, token)`, each get one log line and change nothing else.
#[test]
fn unreadable_migration_data_and_malformed_fences_are_reported_and_ignored() {
    let mut t = G::new();
    let x = EntityId::parse("garbledgarbled01").unwrap();
    take_warnings();
    t.frame(Msg::RealMigrate {
        eid: x,
        target_game: 1,
        data: vec![0x93, 0x01],
    });
    assert!(!t.g.world().exists(&x), "nothing is built from garbage");
    // Only the receipt, so the dispatcher that relayed it drops its copy.
    assert_eq!(t.sent(), vec![Msg::MigrateArrived { eid: x }]);
    let w = take_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("unreadable"), "{w:?}");
    let c = t.create("Traveller", "C");
    t.sent();
    t.frame(Msg::CallEntityMethod {
        eid: c,
        method: world::FENCE_METHOD.into(),
        args: crate::args!["not a game id"],
    });
    assert_eq!(t.sent(), vec![]);
    let w = take_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("malformed fence"), "{w:?}");
    assert!(t.g.world().exists(&c));
}

/// An entity arriving with a client on a gate its dispatcher reported gone (the gate died
/// while it travelled) arrives without it: nothing is sent to the dead client, and its
/// client-disconnected callback runs after it entered its space. Once the gate is back, a
/// client there travels as usual.
#[test]
fn an_entity_whose_clients_gate_died_on_the_way_arrives_without_it() {
    let mut t = G::new();
    let r = t.space(1, "R");
    t.connect("c3", 2);
    t.log();
    t.sent();
    let arrive = |t: &mut G, id: &str, name: &str| {
        let x = EntityId::parse(id).unwrap();
        t.name(x, name);
        let snap = world::Snapshot {
            id: x,
            type_name: "Traveller".into(),
            attrs: crate::attr::Attrs::new().to_bytes(),
            state: rmp_serde::to_vec_named(&Traveller).unwrap(),
            client: Some(t.clients["c3"]),
            timers: vec![],
            space: r,
            pos: Vec3::new(5.0, 0.0, 0.0),
            yaw: 0.0,
            syncing_from_client: false,
            sync_flags: 0,
        };
        t.frame(Msg::RealMigrate {
            eid: x,
            target_game: 1,
            data: world::encode_snapshot(&snap),
        });
        x
    };
    t.frame(Msg::NotifyGateDisconnected { gate_id: 2 });
    let x = arrive(&mut t, "travellertravel1", "X");
    assert_eq!(
        t.log(),
        [
            "X.attrs_ready",
            "X.migrate_in",
            "R.entity_enter X",
            "X.enter_space R",
            "X.client_disconnected"
        ]
    );
    assert_eq!(t.g.world().client_of(&x), None);
    let to_clients: Vec<Msg> = t
        .sent()
        .into_iter()
        .filter(|m| matches!(m, Msg::ToClient { .. }))
        .collect();
    assert_eq!(to_clients, vec![], "nothing for the dead client");

    t.frame(Msg::NotifyGateConnected { gate_id: 2 });
    let y = arrive(&mut t, "travellertravel2", "Y");
    assert_eq!(
        t.log(),
        [
            "Y.attrs_ready",
            "Y.migrate_in",
            "R.entity_enter Y",
            "Y.enter_space R"
        ]
    );
    assert_eq!(t.g.world().client_of(&y), Some(t.clients["c3"]));
}

/// Everything an entity and a space are, for the hot swap tests: its snapshot (type,
/// attributes, struct, client, timers' remaining time, space, position, yaw, sync state)
/// and whom it sees and is seen by.
fn frozen_view(
    g: &GameService,
    now: Instant,
) -> BTreeMap<EntityId, (world::Snapshot, Vec<EntityId>, Vec<EntityId>)> {
    g.world()
        .ids()
        .map(|id| {
            let (mut sees, mut seen) = (g.world().sees(id), g.world().seen_by(id));
            sees.sort();
            seen.sort();
            (*id, (g.snapshot(now, id).unwrap(), sees, seen))
        })
        .collect()
}

/// A game frozen and thawed into a new process comes back whole: every entity with its
/// snapshot (attributes, struct, client, timers' remaining time, space, position, yaw),
/// spaces with their kind and AOI, and every AOI neighbourhood; no client message is sent
/// (the clients kept their view); each entity gets on_attrs_ready.
#[test]
fn a_frozen_game_comes_back_whole_in_a_new_process() {
    let mut t = G::new();
    let r = t.space(1, "R");
    t.call(r, "LateAoi", crate::args![]);
    let q = t.space(2, "Q");
    let a = t.with_client("Mid", "A", "c1", 1);
    let b = t.with_client("Near", "B", "c2", 2);
    let f = t.create("Far", "F");
    let x = t.create("Traveller", "X");
    t.enter(a, r, 1.0, 2.0);
    t.enter(b, r, 3.0, 4.0);
    t.enter(f, r, 500.0, 0.0);
    t.enter(x, q, 7.0, 7.0);
    t.call(x, "Arm", crate::args![250i64]);
    t.now += Duration::from_millis(30);
    t.log();
    t.sent();
    let before = frozen_view(&t.g, t.now);
    assert!(before[&a].1.contains(&b), "A sees B before the freeze");
    let bytes = t.g.freeze(&mut t.io, t.now).unwrap();

    let mut t2 = G::new();
    t2.now = t.now;
    let got = t2.g.thaw(&mut t2.io, t2.now, &bytes).unwrap();
    assert_eq!((got.spaces, got.entities, got.enters), (2, before.len(), 0));
    let after = frozen_view(&t2.g, t2.now);
    assert_eq!(after, before);
    assert_eq!(t2.g.world().space_kind(&r), Some(1));
    let mut members = t2.g.world().space_members(&r);
    members.sort();
    let mut want = vec![a, b, f];
    want.sort();
    assert_eq!(members, want);
    let sent = t2.sent();
    assert!(
        sent.iter().all(|m| !matches!(m, Msg::ToClient { .. })),
        "no client messages: {sent:?}"
    );
    let x_timers = &after[&x].0.timers;
    assert_eq!(x_timers.len(), 1);
    assert_eq!(
        x_timers[0].remaining,
        Duration::from_millis(220),
        "re-armed at its remaining time"
    );
    let names = |l: Vec<String>| -> Vec<String> {
        l.into_iter()
            .filter(|l| l.starts_with(&x.to_string()))
            .collect()
    };
    assert_eq!(
        names(t2.log()),
        [format!("{x}.attrs_ready"), format!("{x}.restored")],
        "OnAttrsReady then OnRestored; no OnCreated, no OnEnterSpace"
    );
    // The timer fires in the new process when it is due.
    t2.now += Duration::from_millis(220);
    t2.g.on_tick(&mut t2.io, t2.now, std::time::SystemTime::UNIX_EPOCH);
    assert!(
        t2.log().iter().any(|l| l.contains("note tick")),
        "the timer fired"
    );
}

/// A freeze file this binary cannot use is an error that names the problem, and nothing is
/// restored: a type the binary lacks, another game's file, another format, garbage.
#[test]
fn a_freeze_file_that_cannot_be_used_is_an_error_and_restores_nothing() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let x = t.create("Traveller", "X");
    t.enter(x, r, 1.0, 1.0);
    t.call(x, "Arm", crate::args![100i64]);
    let bytes = t.g.freeze(&mut t.io, t.now).unwrap();
    type Pairs = Vec<(Value, Value)>;
    let edit = |f: &dyn Fn(&mut Pairs)| {
        let mut v = goworld_common::msgpack::decode_exact(&bytes).unwrap();
        let Value::Map(m) = &mut v else { panic!() };
        f(m);
        v.to_bytes()
    };
    let set = |m: &mut Vec<(Value, Value)>, k: &str, val: Value| {
        for (key, v) in m.iter_mut() {
            if key.as_str() == Some(k) {
                *v = val.clone();
            }
        }
    };
    let renamed = String::from_utf8_lossy(&bytes)
        .contains("Traveller")
        .then(|| {
            let mut b = bytes.clone();
            let at = b.windows(9).position(|w| w == b"Traveller").unwrap();
            b[at..at + 9].copy_from_slice(b"Travelleq");
            b
        })
        .unwrap();
    let mut no_method = bytes.clone();
    let at = no_method.windows(4).position(|w| w == b"Note").unwrap();
    no_method[at..at + 4].copy_from_slice(b"Nope");
    use crate::world::ThawError;
    type Case<'a> = (&'a str, Vec<u8>, fn(&ThawError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "unknown type",
            renamed,
            |e| matches!(e, ThawError::UnknownType { type_name, .. } if type_name == "Travelleq"),
        ),
        (
            "unknown timer method",
            no_method,
            |e| matches!(e, ThawError::UnknownTimerMethod { method, .. } if method == "Nope"),
        ),
        (
            "other game",
            edit(&|m| set(m, "game", Value::Int(7))),
            |e| matches!(e, ThawError::OtherGame { file: 7, .. }),
        ),
        (
            "other format",
            edit(&|m| set(m, "format", Value::Int(99))),
            |e| matches!(e, ThawError::Format(Some(99))),
        ),
        ("garbage", vec![0xc1, 0x00], |e| {
            matches!(e, ThawError::NotAFreezeFile(_))
        }),
    ];
    for (what, b, expected) in cases {
        let mut t2 = G::new();
        let err = t2.g.thaw(&mut t2.io, t2.now, &b).unwrap_err();
        assert!(expected(&err), "{what}: {err}");
        assert_eq!(t2.g.world().len(), 0, "{what}: nothing restored");
    }
}

/// A struct written by an older binary, without a field the new one has: the field takes its
/// `Default` value and the others keep theirs (fields the new struct dropped are ignored).
#[test]
fn state_written_without_a_new_field_takes_its_default() {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Old {
        kept: i64,
        dropped: String,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(default)]
    struct New {
        kept: i64,
        added: String,
    }
    impl Default for New {
        fn default() -> New {
            New {
                kept: 0,
                added: "fresh".into(),
            }
        }
    }
    impl Entity for New {
        fn describe(_: &mut TypeDesc<Self>) {}
    }
    let mut types = Registry::new();
    types.register::<New>("Thing").unwrap();
    let old = rmp_serde::to_vec_named(&Old {
        kept: 42,
        dropped: "gone".into(),
    })
    .unwrap();
    let obj = types.get("Thing").unwrap().decode_state(&old).unwrap();
    let new = obj.downcast_ref::<New>().unwrap();
    assert_eq!((new.kept, new.added.as_str()), (42, "fresh"));
    // Garbage is still an error naming the type.
    let err = types
        .get("Thing")
        .unwrap()
        .decode_state(&[0x93, 1, 2, 3])
        .err()
        .unwrap();
    assert!(err.type_name == "Thing" && err.reading, "{err}");
    // A struct without fields (written as an empty array) that gains some, and back.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Bare;
    impl Entity for Bare {
        fn describe(_: &mut TypeDesc<Self>) {}
    }
    types.register::<Bare>("Bare").unwrap();
    let bare = rmp_serde::to_vec_named(&Bare).unwrap();
    let obj = types.get("Thing").unwrap().decode_state(&bare).unwrap();
    let new = obj.downcast_ref::<New>().unwrap();
    assert_eq!((new.kept, new.added.as_str()), (0, "fresh"));
    assert!(types.get("Bare").unwrap().decode_state(&old).is_ok());
    // A struct with fields but without #[serde(default)] is refused at registration.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Strict {
        kept: i64,
    }
    impl Entity for Strict {
        fn describe(_: &mut TypeDesc<Self>) {}
    }
    let refused = types.register::<Strict>("Strict").unwrap_err();
    assert!(
        refused.to_string().contains("#[serde(default)]"),
        "{refused}"
    );
}

/// A panic in `on_freeze` abandons the freeze: it is an error, nothing is cancelled or
/// written, and the game runs on (an enter in flight is not cancelled).
#[test]
fn a_panic_in_on_freeze_abandons_the_freeze() {
    let mut t = G::new();
    let r = t.space(1, "R");
    let f = t.create("Fragile", "F");
    let x = t.create("Traveller", "X");
    t.enter(x, r, 1.0, 1.0);
    t.sent();
    let err = t.g.freeze(&mut t.io, t.now).unwrap_err();
    assert_eq!(err, crate::world::FreezeError::OnFreezePanicked(1), "{err}");
    assert!(
        err.to_string().contains("on_freeze panicked 1 times"),
        "{err}"
    );
    assert!(t.g.world().exists(&f) && t.g.world().exists(&x));
    assert_eq!(t.g.world().space_of(&x), Some(r));
    assert!(
        t.sent()
            .iter()
            .all(|m| !matches!(m, Msg::CancelMigrate { .. })),
        "nothing cancelled"
    );
    take_warnings();
}

/// A snapshot that is not one is a typed error naming the field.
#[test]
fn a_malformed_snapshot_is_an_error_naming_its_field() {
    use crate::world::SnapshotError;
    use goworld_common::msgpack::Value;
    let id = EntityId::parse("snapsnapsnapsn01").unwrap();
    let snap = world::Snapshot {
        id,
        type_name: "T".into(),
        attrs: vec![0x80],
        state: vec![0x80],
        client: None,
        timers: vec![],
        space: id,
        pos: Vec3::new(1.0, 2.0, 3.0),
        yaw: 0.5,
        syncing_from_client: false,
        sync_flags: 0,
    };
    let good = world::encode_snapshot(&snap);
    assert_eq!(world::decode_snapshot(id, &good).unwrap(), snap);
    assert!(matches!(
        world::decode_snapshot(id, &[0xc1]),
        Err(SnapshotError::Msgpack(_))
    ));
    // The same map with a number where the type name belongs.
    let Value::Map(mut m) = goworld_common::msgpack::decode_exact(&good).unwrap() else {
        panic!("a snapshot is a map");
    };
    for (k, v) in &mut m {
        if k.as_str() == Some("T") {
            *v = Value::Int(7);
        }
    }
    assert_eq!(
        world::decode_snapshot(id, &Value::Map(m).to_bytes()).unwrap_err(),
        SnapshotError::Field {
            field: "T",
            want: "a string"
        }
    );
}
