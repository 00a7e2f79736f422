//! In-memory tests of the dispatcher's routing, holds and handshakes (fake clock, [`MemIo`]).

use super::*;
use goworld_common::id::nil_space_id;
use goworld_common::peerlog::FULL_LINES;
use goworld_common::testio::MemIo;

const V: Option<u16> = Some(INTERNAL_PROTOCOL_VERSION);

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

fn conn(slot: u32) -> ConnId {
    ConnId { slot, gen: 1 }
}

fn eid(s: &str) -> EntityId {
    EntityId::parse(s).unwrap()
}

struct T {
    d: Dispatcher,
    io: MemIo,
    now: Instant,
}

impl T {
    fn new(games: u16, gates: u16) -> T {
        let s = Settings {
            disp_id: 1,
            desired_games: games,
            desired_gates: gates,
            entity_hold_limit: 3,
            game_hold_limit: 100,
            freeze_hold_timeout: Duration::from_secs(300),
        };
        T {
            d: Dispatcher::new(s),
            io: MemIo::new(),
            now: Instant::now(),
        }
    }

    fn open(&mut self, c: ConnId) {
        self.d.on_open(
            &mut self.io,
            self.now,
            c,
            Origin::Accepted { listener: 0 },
            addr(),
        );
    }

    fn send(&mut self, c: ConnId, m: Msg) {
        self.d.on_frame(&mut self.io, self.now, c, &m.to_payload());
    }

    fn raw(&mut self, c: ConnId, p: &[u8]) {
        self.d.on_frame(&mut self.io, self.now, c, p);
    }

    fn game(&mut self, c: ConnId, id: u16, entities: Vec<EntityId>) {
        self.open(c);
        self.send(
            c,
            Msg::SetGameId {
                game_id: id,
                is_reconnect: false,
                is_restore: false,
                is_ban_boot_entity: false,
                entities,
                version: V,
            },
        );
    }

    fn gate(&mut self, c: ConnId, id: u16) {
        self.open(c);
        self.send(
            c,
            Msg::SetGateId {
                gate_id: id,
                version: V,
            },
        );
    }

    fn tick(&mut self) {
        self.d
            .on_tick(&mut self.io, self.now, SystemTime::UNIX_EPOCH);
    }

    /// Messages sent to `c` since the last call, decoded.
    fn got(&mut self, c: ConnId) -> Vec<Msg> {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.io.take().into_iter().partition(|(to, _)| *to == c);
        self.io.sent = rest;
        mine.into_iter()
            .map(|(_, p)| Msg::decode(&p).expect("dispatcher output decodes"))
            .collect()
    }

    fn raw_got(&mut self, c: ConnId) -> Vec<Vec<u8>> {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.io.take().into_iter().partition(|(to, _)| *to == c);
        self.io.sent = rest;
        mine.into_iter().map(|(_, p)| p).collect()
    }
}

fn call(e: EntityId, method: &str) -> Msg {
    Msg::CallEntityMethod {
        eid: e,
        method: method.into(),
        args: vec![],
    }
}

#[test]
fn game_handshake_is_acknowledged_and_deployment_becomes_ready() {
    let mut t = T::new(1, 1);
    t.game(conn(1), 1, vec![nil_space_id(1)]);
    let ack = t.got(conn(1));
    assert_eq!(
        ack,
        vec![Msg::SetGameIdAck {
            disp_id: 1,
            deployment_ready: false,
            games: vec![1],
            rejected: vec![],
            kvreg: vec![],
            declared_dead: false,
        }]
    );
    assert_eq!(t.d.entity_game(&nil_space_id(1)), Some(1));
    assert!(!t.d.is_deployment_ready());
    t.gate(conn(2), 1);
    assert!(t.d.is_deployment_ready());
    assert_eq!(
        t.got(conn(1)),
        vec![
            Msg::NotifyGateConnected { gate_id: 1 },
            Msg::NotifyDeploymentReady
        ]
    );
    // A game that connects later learns readiness from its ack, and the first is told.
    t.game(conn(3), 2, vec![nil_space_id(2)]);
    assert!(
        matches!(&t.got(conn(3))[0], Msg::SetGameIdAck { deployment_ready: true, games, .. } if games == &vec![1, 2])
    );
    assert_eq!(
        t.got(conn(1)),
        vec![Msg::NotifyGameConnected { game_id: 2 }]
    );
}

#[test]
fn wrong_protocol_version_is_refused() {
    let mut t = T::new(1, 1);
    t.open(conn(1));
    t.send(
        conn(1),
        Msg::SetGateId {
            gate_id: 1,
            version: None,
        },
    );
    assert_eq!(t.io.closed.len(), 1);
    assert!(t.d.connected_gates().is_empty());
}

#[test]
fn client_connect_goes_to_a_boot_game_with_the_gate_id_appended() {
    let mut t = T::new(2, 1);
    t.gate(conn(9), 3);
    let cid = eid("clientclientcl01");
    let boot = eid("bootbootbootbo01");
    let notice = Msg::NotifyClientConnected {
        client_id: cid,
        boot_eid: boot,
        gate_id: None,
    };
    // No game yet: the notice waits.
    t.send(conn(9), notice.clone());
    assert!(t.io.sent.is_empty());
    t.game(conn(1), 1, vec![]);
    let got = t.got(conn(1));
    assert_eq!(
        got.last(),
        Some(&Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: boot,
            gate_id: Some(3)
        })
    );
    // Round-robin over boot games.
    t.game(conn(2), 2, vec![]);
    t.io.sent.clear();
    t.send(conn(9), notice.clone());
    t.send(conn(9), notice);
    assert_eq!(t.got(conn(1)).len() + t.got(conn(2)).len(), 2);
}

#[test]
fn calls_to_unknown_entities_wait_for_games_to_announce_them() {
    let mut t = T::new(2, 0);
    let e = eid("entityentityen01");
    t.game(conn(1), 1, vec![]);
    t.io.sent.clear();
    t.send(conn(1), call(e, "A"));
    assert!(t.io.sent.is_empty(), "held while game2 has not announced");
    t.game(conn(2), 2, vec![e]);
    let got = t.got(conn(2));
    assert!(matches!(&got[0], Msg::SetGameIdAck { .. }));
    assert_eq!(got[1], call(e, "A"));
    // Every game announced: an unknown entity's call waits a grace period for its
    // announcement, then is reported and not delivered.
    t.io.sent.clear();
    t.send(conn(1), call(eid("nobodynobodyno01"), "B"));
    assert!(t.io.sent.is_empty());
    t.now += UNKNOWN_ENTITY_GRACE + Duration::from_secs(1);
    t.tick();
    let late = eid("nobodynobodyno01");
    t.send(conn(2), Msg::NotifyCreateEntity { eid: late });
    assert!(
        t.io.sent.is_empty(),
        "reported and dropped after the grace period"
    );
}

/// A call can overtake its entity's NOTIFY_CREATE_ENTITY (the creating game announces it to
/// this dispatcher while the caller learnt of it through another one): it waits for it.
#[test]
fn a_call_that_overtakes_its_entitys_announcement_waits_for_it() {
    let mut t = T::new(2, 0);
    t.game(conn(1), 1, vec![]);
    t.game(conn(2), 2, vec![]);
    t.io.sent.clear();
    let e = eid("newbornnewborn01");
    t.send(conn(2), call(e, "first"));
    t.send(conn(2), call(e, "second"));
    assert!(t.io.sent.is_empty(), "held: not announced yet");
    t.now += UNKNOWN_ENTITY_GRACE / 2;
    t.tick();
    assert!(t.io.sent.is_empty());
    t.send(conn(1), Msg::NotifyCreateEntity { eid: e });
    assert_eq!(t.got(conn(1)), vec![call(e, "first"), call(e, "second")]);
    assert_eq!(t.d.entity_game(&e), Some(1));
}

#[test]
fn migration_holds_calls_and_flushes_them_to_the_target_in_order() {
    let mut t = T::new(2, 0);
    let e = eid("migrantmigrant01");
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![]);
    t.io.sent.clear();
    let req = Msg::MigrateRequest {
        eid: e,
        space_id: nil_space_id(2),
        space_game_id: 2,
    };
    t.send(conn(1), req.clone());
    assert_eq!(t.got(conn(1)), vec![req]);
    t.send(conn(2), call(e, "one"));
    t.send(conn(2), call(e, "two"));
    assert!(t.io.sent.is_empty());
    let mig = Msg::RealMigrate {
        eid: e,
        target_game: 2,
        data: vec![0x80],
    };
    t.send(conn(1), mig.clone());
    // The held calls wait until the new game has the entity (it might die first).
    assert_eq!(t.got(conn(2)), vec![mig]);
    assert_eq!(t.d.entity_game(&e), Some(1));
    assert_eq!(t.d.migrations_in_transit(), 1);
    t.send(conn(2), Msg::NotifyCreateEntity { eid: e });
    t.send(conn(2), Msg::MigrateArrived { eid: e });
    assert_eq!(t.got(conn(2)), vec![call(e, "one"), call(e, "two")]);
    assert_eq!(t.d.entity_game(&e), Some(2));
    assert_eq!(
        t.d.migrations_in_transit(),
        0,
        "the copy is dropped once taken"
    );
}

/// The new game dies after the REAL_MIGRATE was relayed to it but before it confirmed: the
/// entity goes back to the game it left, from the kept copy, and its held calls follow it
/// there once that game announces it again.
#[test]
fn an_entity_sent_to_a_game_that_dies_before_taking_it_goes_back() {
    let mut t = T::new(2, 1);
    let e = eid("migrantmigrant06");
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![]);
    t.gate(conn(3), 1);
    t.send(conn(1), migrate_request(e, 2));
    t.send(conn(1), call(e, "one"));
    let mig = Msg::RealMigrate {
        eid: e,
        target_game: 2,
        data: vec![0x80, 0x01],
    };
    t.send(conn(1), mig.clone());
    t.send(conn(1), call(e, "two"));
    t.io.sent.clear();
    t.d.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    let back = Msg::RealMigrate {
        eid: e,
        target_game: 1,
        data: vec![0x80, 0x01],
    };
    assert_eq!(
        t.got(conn(1)),
        vec![back, Msg::NotifyGameDisconnected { game_id: 2 }]
    );
    assert!(
        t.got(conn(3)).is_empty(),
        "its client is not told anything: it lives on"
    );
    t.send(conn(1), Msg::NotifyCreateEntity { eid: e });
    t.send(conn(1), Msg::MigrateArrived { eid: e });
    assert_eq!(t.got(conn(1)), vec![call(e, "one"), call(e, "two")]);
    assert_eq!(t.d.entity_game(&e), Some(1));
    assert_eq!(t.d.migrations_in_transit(), 0);
}

#[test]
fn hold_limit_is_reported_not_silent() {
    let mut t = T::new(1, 0);
    let e = eid("migrantmigrant02");
    t.game(conn(1), 1, vec![e]);
    t.send(
        conn(1),
        Msg::MigrateRequest {
            eid: e,
            space_id: nil_space_id(1),
            space_game_id: 1,
        },
    );
    t.io.sent.clear();
    for i in 0..5 {
        t.send(conn(1), call(e, &format!("m{i}")));
    }
    t.send(conn(1), Msg::CancelMigrate { eid: e });
    // Limit 3: three delivered in order, two counted and reported in the log.
    assert_eq!(
        t.got(conn(1)),
        vec![call(e, "m0"), call(e, "m1"), call(e, "m2")]
    );
    assert_eq!(t.d.over_hold_limit(), 2);
}

#[test]
fn a_full_hold_reports_what_it_refused_by_kind_in_one_line() {
    let mut h = Held::default();
    assert!(h.push(2, &call(eid("aaaaaaaaaaaaaa01"), "keep").to_payload()));
    assert!(h.push(2, &call(eid("aaaaaaaaaaaaaa01"), "keep").to_payload()));
    assert_eq!(h.over_limit_report(), None, "nothing refused yet");
    for i in 0..12 {
        let method = if i < 3 {
            "Seq".to_string()
        } else {
            format!("m{i}")
        };
        assert!(!h.push(2, &call(eid("aaaaaaaaaaaaaa01"), &method).to_payload()));
    }
    assert_eq!(h.total(), 14);
    assert_eq!(
        h.over_limit_report().unwrap(),
        "12 packets over the hold limit of 2 were not delivered (MT_CALL_ENTITY_METHOD Seq x3, \
         MT_CALL_ENTITY_METHOD m3 x1, MT_CALL_ENTITY_METHOD m4 x1, MT_CALL_ENTITY_METHOD m5 x1, \
         MT_CALL_ENTITY_METHOD m6 x1, MT_CALL_ENTITY_METHOD m7 x1, MT_CALL_ENTITY_METHOD m8 x1, \
         MT_CALL_ENTITY_METHOD m9 x1, others x2)"
    );
}

/// The game an entity was leaving dies before this dispatcher learns where it went (its
/// REAL_MIGRATE went through another dispatcher): the calls held for it wait, and reach it
/// on its new game once that game announces it.
#[test]
fn calls_held_for_an_entity_whose_old_game_died_reach_it_where_it_turns_up() {
    let mut t = T::new(2, 0);
    let e = eid("migrantmigrant04");
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![]);
    t.send(
        conn(1),
        Msg::MigrateRequest {
            eid: e,
            space_id: nil_space_id(2),
            space_game_id: 2,
        },
    );
    t.send(conn(2), call(e, "one"));
    t.d.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    t.send(conn(2), call(e, "two"));
    t.io.sent.clear();
    t.send(conn(2), Msg::NotifyCreateEntity { eid: e });
    assert_eq!(t.got(conn(2)), vec![call(e, "one"), call(e, "two")]);
    assert_eq!(t.d.entity_game(&e), Some(2));
}

#[test]
fn messages_for_clients_are_forwarded_verbatim_to_their_gate() {
    let mut t = T::new(1, 1);
    t.game(conn(1), 1, vec![]);
    t.gate(conn(2), 7);
    t.io.sent.clear();
    let m = Msg::ToClient {
        gate_id: 7,
        client_id: eid("clientclientcl02"),
        msg: ClientMsgForTest::call(),
    };
    let p = m.to_payload();
    t.raw(conn(1), &p);
    assert_eq!(t.raw_got(conn(2)), vec![p]);
}

struct ClientMsgForTest;
impl ClientMsgForTest {
    fn call() -> proto::ClientMsg {
        proto::ClientMsg::CallEntityMethodOnClient {
            eid: EntityId::parse("ownerownerowne01").unwrap(),
            method: "OnLogin".into(),
            args: vec![vec![0xc3]],
        }
    }
}

#[test]
fn position_syncs_are_regrouped_per_game() {
    let mut t = T::new(2, 1);
    let (a, b) = (eid("aaaaaaaaaaaaaa01"), eid("bbbbbbbbbbbbbb01"));
    t.game(conn(1), 1, vec![a]);
    t.game(conn(2), 2, vec![b]);
    t.gate(conn(3), 1);
    t.io.sent.clear();
    let rec = |e: EntityId, x: f32| proto::SyncRecord {
        eid: e,
        x,
        y: 0.0,
        z: 1.0,
        yaw: 2.0,
    };
    t.send(
        conn(3),
        Msg::SyncPositionYawFromClient {
            records: vec![rec(a, 1.0), rec(b, 2.0), rec(a, 3.0)],
        },
    );
    assert!(t.io.sent.is_empty(), "batched until the tick");
    t.tick();
    assert_eq!(
        t.got(conn(1)),
        vec![Msg::SyncPositionYawFromClient {
            records: vec![rec(a, 1.0), rec(a, 3.0)]
        }]
    );
    assert_eq!(
        t.got(conn(2)),
        vec![Msg::SyncPositionYawFromClient {
            records: vec![rec(b, 2.0)]
        }]
    );
}

#[test]
fn a_game_going_down_is_announced_and_its_entities_forgotten() {
    let mut t = T::new(2, 0);
    let e = eid("doomeddoomeddo01");
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![]);
    t.io.sent.clear();
    t.d.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    assert_eq!(
        t.got(conn(2)),
        vec![Msg::NotifyGameDisconnected { game_id: 1 }]
    );
    assert_eq!(t.d.entity_game(&e), None);
    assert_eq!(t.d.connected_games(), vec![2]);
}

#[test]
fn gates_hear_which_entities_lived_on_a_game_that_went_down() {
    let mut t = T::new(2, 2);
    let (a, b) = (eid("aaaaaaaaaaaaaa01"), eid("bbbbbbbbbbbbbb01"));
    t.game(conn(1), 1, vec![b, a]);
    t.game(conn(2), 2, vec![eid("survivorsurviv01")]);
    t.gate(conn(8), 1);
    t.gate(conn(9), 2);
    t.io.sent.clear();
    t.d.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    let gone = Msg::ClientOwnersGone {
        game_id: 1,
        owners: vec![a, b],
    };
    assert_eq!(t.got(conn(8)), vec![gone.clone()]);
    assert_eq!(t.got(conn(9)), vec![gone]);
}

#[test]
fn a_game_declared_dead_that_comes_back_has_its_entities_refused_once() {
    let mut t = T::new(2, 1);
    let (a, b) = (eid("aaaaaaaaaaaaaa01"), eid("bbbbbbbbbbbbbb01"));
    t.game(conn(1), 1, vec![a, b, nil_space_id(1)]);
    t.game(conn(2), 2, vec![]);
    t.gate(conn(8), 1);
    t.io.sent.clear();
    // Its link went silent: the reactor closes it, and the game is declared dead.
    let silent = CloseReason::Silent(std::time::Duration::from_secs(5));
    t.d.on_close(&mut t.io, t.now, conn(1), &silent);
    assert_eq!(
        t.got(conn(8)),
        vec![Msg::ClientOwnersGone {
            game_id: 1,
            owners: vec![nil_space_id(1), a, b],
        }]
    );
    // The same game process reconnects with the entities it still has.
    t.open(conn(3));
    t.send(
        conn(3),
        Msg::SetGameId {
            game_id: 1,
            is_reconnect: true,
            is_restore: false,
            is_ban_boot_entity: false,
            entities: vec![a, b, nil_space_id(1)],
            version: V,
        },
    );
    match &t.got(conn(3))[..] {
        [Msg::SetGameIdAck {
            rejected,
            declared_dead: true,
            ..
        }, ..] => assert_eq!(rejected, &vec![a, b]),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.d.entity_game(&a), None);
    // Its nil space is its own: kept.
    assert_eq!(t.d.entity_game(&nil_space_id(1)), Some(1));
    assert_eq!(t.d.connected_games(), vec![1, 2]);
    // Connected again, it is alive: a later reconnect (say, after a dispatcher link blip
    // that this dispatcher did not see as a death) is accepted as usual.
    t.send(conn(3), Msg::NotifyCreateEntity { eid: a });
    t.open(conn(4));
    t.send(
        conn(4),
        Msg::SetGameId {
            game_id: 1,
            is_reconnect: true,
            is_restore: false,
            is_ban_boot_entity: false,
            entities: vec![a],
            version: V,
        },
    );
    match &t.got(conn(4))[..] {
        [Msg::SetGameIdAck {
            rejected,
            declared_dead: false,
            ..
        }, ..] => assert!(rejected.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.d.entity_game(&a), Some(1));
}

#[test]
fn a_malformed_packet_closes_only_its_connection() {
    let mut t = T::new(2, 0);
    t.game(conn(1), 1, vec![]);
    t.game(conn(2), 2, vec![]);
    t.raw(conn(1), &[mt::NOTIFY_CREATE_ENTITY as u8, 0, 1, 2]);
    assert_eq!(t.io.closed.len(), 1);
    assert_eq!(t.io.closed[0].0, conn(1));
    // An unknown type is skipped, not fatal.
    t.raw(conn(2), &[0xff, 0x7f]);
    assert_eq!(t.io.closed.len(), 1);
}

#[test]
fn kvreg_first_registration_wins_unless_forced() {
    let mut t = T::new(2, 0);
    t.game(conn(1), 1, vec![]);
    t.game(conn(2), 2, vec![]);
    t.io.sent.clear();
    let reg = |v: &str, force| Msg::KvregRegister {
        key: "Service/S#0".into(),
        val: v.into(),
        force,
    };
    t.send(conn(1), reg("game1", false));
    t.send(conn(2), reg("game2", false));
    assert_eq!(
        t.d.kvreg().get("Service/S#0").map(String::as_str),
        Some("game1")
    );
    assert_eq!(t.got(conn(2)), vec![reg("game1", false)]);
    t.send(conn(2), reg("game2", true));
    assert_eq!(
        t.d.kvreg().get("Service/S#0").map(String::as_str),
        Some("game2")
    );
}

#[test]
fn a_frozen_game_gets_its_held_packets_after_it_comes_back() {
    let mut t = T::new(1, 0);
    let e = eid("frozenfrozenfr01");
    t.game(conn(1), 1, vec![e]);
    t.io.sent.clear();
    t.send(conn(1), Msg::StartFreezeGame);
    assert_eq!(t.got(conn(1)), vec![Msg::StartFreezeGameAck { disp_id: 1 }]);
    t.d.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    t.gate(conn(5), 1);
    t.send(
        conn(5),
        Msg::CallEntityMethodFromClient {
            eid: e,
            method: "X".into(),
            args: vec![],
            client_id: Some(eid("clientclientcl03")),
        },
    );
    assert!(t.io.sent.is_empty());
    t.game(conn(2), 1, vec![e]);
    let got = t.got(conn(2));
    assert!(matches!(got[0], Msg::SetGameIdAck { .. }));
    assert_eq!(got[1], Msg::NotifyGateConnected { gate_id: 1 });
    assert!(matches!(&got[2], Msg::CallEntityMethodFromClient { method, .. } if method == "X"));
}

#[test]
fn an_expired_hold_is_released_by_the_sweep_and_the_dispatcher_then_sleeps() {
    let mut t = T::new(1, 0);
    let e = eid("migrantmigrant03");
    t.game(conn(1), 1, vec![e]);
    t.tick();
    assert_eq!(t.d.next_deadline(), None, "nothing held: no wake-ups");
    t.send(
        conn(1),
        Msg::MigrateRequest {
            eid: e,
            space_id: nil_space_id(1),
            space_game_id: 1,
        },
    );
    t.send(conn(1), call(e, "late"));
    t.io.sent.clear();
    assert!(t.d.next_deadline().is_some(), "a hold needs the sweep");
    t.now += MIGRATE_HOLD + Duration::from_secs(1);
    t.tick();
    assert_eq!(t.got(conn(1)), vec![call(e, "late")]);
    t.now += SWEEP_INTERVAL;
    t.tick();
    assert_eq!(t.d.next_deadline(), None);
}

#[test]
fn a_load_of_a_known_entity_goes_to_its_game_and_holds_calls_until_it_answers() {
    let mut t = T::new(1, 0);
    let e = eid("avataravataravat");
    t.game(conn(1), 1, vec![e]);
    t.io.sent.clear();
    let load = Msg::LoadEntitySomewhere {
        game_id: 0,
        eid: e,
        type_name: "Avatar".into(),
    };
    t.send(conn(1), load.clone());
    assert_eq!(
        t.got(conn(1)),
        vec![load],
        "forwarded to the game that has (or is saving) it"
    );
    t.send(conn(1), call(e, "GetSpaceID"));
    assert!(t.io.sent.is_empty(), "held until the game answers");
    t.send(conn(1), Msg::NotifyCreateEntity { eid: e });
    assert_eq!(t.got(conn(1)), vec![call(e, "GetSpaceID")]);
}

#[test]
fn anywhere_placement_picks_the_least_loaded_live_game() {
    let mut t = T::new(2, 0);
    t.game(conn(1), 1, vec![]);
    t.game(conn(2), 2, vec![]);
    let lbc = |cp: f64| {
        let mut data = Vec::new();
        goworld_common::msgpack::write_map_len(&mut data, 1);
        goworld_common::msgpack::write_str(&mut data, "cp");
        goworld_common::msgpack::write_float(&mut data, cp);
        Msg::GameLbcInfo { data }
    };
    t.send(conn(1), lbc(50.0));
    t.send(conn(2), lbc(5.0));
    t.io.sent.clear();
    let create = |n: u8| Msg::CreateEntitySomewhere {
        game_id: 0,
        eid: EntityId([b'a' + n; 16]),
        type_name: "Monster".into(),
        attrs: vec![0xc0],
    };
    t.send(conn(1), create(0));
    assert_eq!(t.got(conn(2)).len(), 1, "the less loaded game");
    // A game that is gone is never chosen, however low its last report.
    t.d.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    t.io.sent.clear();
    t.send(conn(1), create(1));
    assert_eq!(t.got(conn(1)).len(), 1);
}

fn rec(e: EntityId, x: f32) -> proto::SyncRecord {
    proto::SyncRecord {
        eid: e,
        x,
        y: 0.0,
        z: 1.0,
        yaw: 2.0,
    }
}

fn syncs(records: Vec<proto::SyncRecord>) -> Msg {
    Msg::SyncPositionYawFromClient { records }
}

fn migrate_request(e: EntityId, to: u16) -> Msg {
    Msg::MigrateRequest {
        eid: e,
        space_id: nil_space_id(to),
        space_game_id: to,
    }
}

/// Two games, a gate on conn(3); `e` and `b` on game1; the output so far discarded.
fn two_games_and_a_gate(e: EntityId, b: EntityId) -> T {
    let mut t = T::new(2, 1);
    t.game(conn(1), 1, vec![e, b]);
    t.game(conn(2), 2, vec![]);
    t.gate(conn(3), 1);
    t.io.sent.clear();
    t
}

#[test]
fn syncs_during_a_migration_reach_the_new_game_newest_only_after_the_held_calls() {
    let (e, b) = (eid("migrantmigrant04"), eid("bystanderbystan1"));
    let mut t = two_games_and_a_gate(e, b);
    t.send(conn(1), migrate_request(e, 2));
    t.io.sent.clear();
    t.send(conn(2), call(e, "one"));
    // More syncs than the hold limit (3): they replace each other, they do not queue.
    t.send(conn(3), syncs(vec![rec(e, 1.0), rec(b, 10.0), rec(e, 2.0)]));
    t.send(conn(2), call(e, "two"));
    t.send(conn(3), syncs(vec![rec(e, 3.0), rec(e, 4.0)]));
    t.send(conn(3), syncs(vec![rec(e, 5.0)]));
    t.tick();
    // The bystander's sync is not held back; nothing of the migrant's goes anywhere.
    assert_eq!(
        t.raw_got(conn(1)),
        vec![syncs(vec![rec(b, 10.0)]).to_payload()]
    );
    assert!(t.io.sent.is_empty());
    let mig = Msg::RealMigrate {
        eid: e,
        target_game: 2,
        data: vec![0x80],
    };
    t.send(conn(1), mig.clone());
    t.tick();
    assert_eq!(t.raw_got(conn(2)), vec![mig.to_payload()]);
    t.send(conn(2), Msg::NotifyCreateEntity { eid: e });
    t.tick();
    assert_eq!(
        t.raw_got(conn(2)),
        vec![
            call(e, "one").to_payload(),
            call(e, "two").to_payload(),
            syncs(vec![rec(e, 5.0)]).to_payload(),
        ]
    );
    assert!(t.io.sent.is_empty(), "nothing for the old game");
    // The hold is over: the next sync goes straight into the new game's batch.
    t.send(conn(3), syncs(vec![rec(e, 6.0)]));
    t.tick();
    assert_eq!(t.got(conn(2)), vec![syncs(vec![rec(e, 6.0)])]);
    assert_eq!(t.d.sync_dropped_unknown_entity(), 0);
}

#[test]
fn every_way_a_hold_ends_delivers_the_newest_sync_after_the_held_calls() {
    let e = eid("holdenholdenhol1");
    let b = eid("bystanderbystan1");
    type End = fn(&mut T, EntityId);
    let ends: [(&str, End); 4] = [
        ("cancel", |t, e| {
            t.send(conn(1), Msg::CancelMigrate { eid: e })
        }),
        ("announce", |t, e| {
            t.send(conn(1), Msg::NotifyCreateEntity { eid: e })
        }),
        ("expiry", |t, _| {
            t.now += MIGRATE_HOLD + Duration::from_secs(1);
            t.tick();
        }),
        ("expiry seen by a sync", |t, e| {
            t.now += MIGRATE_HOLD + Duration::from_secs(1);
            t.send(conn(3), syncs(vec![rec(e, 8.0)]));
        }),
    ];
    for (how, end) in ends {
        let mut t = two_games_and_a_gate(e, b);
        t.send(conn(1), migrate_request(e, 2));
        t.send(conn(1), call(e, "held"));
        t.send(conn(3), syncs(vec![rec(e, 1.0), rec(e, 7.0)]));
        t.tick();
        t.io.sent.clear();
        end(&mut t, e);
        t.tick();
        let mut want = vec![
            call(e, "held").to_payload(),
            syncs(vec![rec(e, 7.0)]).to_payload(),
        ];
        if how == "expiry seen by a sync" {
            // The kept record, then the one that arrived after the hold, in one batch.
            want[1] = syncs(vec![rec(e, 7.0), rec(e, 8.0)]).to_payload();
        }
        assert_eq!(t.raw_got(conn(1)), want, "{how}");
        assert!(t.io.sent.is_empty(), "{how}");
    }
}

#[test]
fn a_sync_still_batched_when_the_hold_starts_goes_to_the_new_game() {
    let (e, b) = (eid("migrantmigrant05"), eid("bystanderbystan1"));
    let mut t = two_games_and_a_gate(e, b);
    // Arrives in the same tick as the migrate request: the old game would get it only after
    // the reply to its request, when the entity is already leaving.
    t.send(conn(3), syncs(vec![rec(e, 1.0), rec(b, 10.0), rec(e, 2.0)]));
    t.send(conn(1), migrate_request(e, 2));
    t.io.sent.clear();
    t.tick();
    assert_eq!(t.got(conn(1)), vec![syncs(vec![rec(b, 10.0)])]);
    let mig = Msg::RealMigrate {
        eid: e,
        target_game: 2,
        data: vec![0x80],
    };
    t.send(conn(1), mig.clone());
    t.tick();
    assert_eq!(t.got(conn(2)), vec![mig]);
    t.send(conn(2), Msg::NotifyCreateEntity { eid: e });
    t.tick();
    assert_eq!(t.got(conn(2)), vec![syncs(vec![rec(e, 2.0)])]);
    // When the migrant was the whole batch, the batch goes away with it.
    t.send(conn(3), syncs(vec![rec(e, 3.0)]));
    t.send(conn(2), migrate_request(e, 1));
    t.io.sent.clear();
    t.tick();
    assert!(t.io.sent.is_empty());
}

#[test]
fn unheld_syncs_are_regrouped_per_game_and_flushed_every_tick() {
    let (a, b) = (eid("aaaaaaaaaaaaaa02"), eid("bbbbbbbbbbbbbb02"));
    let mut t = T::new(2, 1);
    t.game(conn(1), 1, vec![a]);
    t.game(conn(2), 2, vec![b]);
    t.gate(conn(3), 1);
    t.io.sent.clear();
    t.send(conn(3), syncs(vec![rec(a, 1.0), rec(b, 2.0)]));
    t.send(conn(3), syncs(vec![rec(a, 3.0), rec(a, 4.0)]));
    t.tick();
    // Outside holds every record goes on, in order, duplicates included.
    assert_eq!(
        t.raw_got(conn(1)),
        vec![syncs(vec![rec(a, 1.0), rec(a, 3.0), rec(a, 4.0)]).to_payload()]
    );
    assert_eq!(
        t.raw_got(conn(2)),
        vec![syncs(vec![rec(b, 2.0)]).to_payload()]
    );
    t.tick();
    assert!(t.io.sent.is_empty(), "a flushed batch is not sent again");
    t.send(conn(3), syncs(vec![rec(b, 5.0)]));
    t.tick();
    assert_eq!(t.got(conn(2)), vec![syncs(vec![rec(b, 5.0)])]);
    assert!(t.io.sent.is_empty());
}

#[test]
fn syncs_for_unknown_entities_are_counted_not_delivered() {
    let (e, b) = (eid("doomeddoomeddo02"), eid("bystanderbystan1"));
    let mut t = two_games_and_a_gate(e, b);
    let nobody = eid("nobodynobodyno02");
    t.send(
        conn(3),
        syncs(vec![rec(nobody, 1.0), rec(b, 2.0), rec(nobody, 3.0)]),
    );
    t.tick();
    assert_eq!(t.got(conn(1)), vec![syncs(vec![rec(b, 2.0)])]);
    assert!(t.io.sent.is_empty());
    assert_eq!(t.d.sync_dropped_unknown_entity(), 2);
    // Destroyed while held: its calls are released to its game, its position is not.
    t.send(conn(1), migrate_request(e, 2));
    t.send(conn(2), call(e, "late"));
    t.send(conn(3), syncs(vec![rec(e, 4.0)]));
    t.io.sent.clear();
    t.send(conn(1), Msg::NotifyDestroyEntity { eid: e });
    t.tick();
    assert_eq!(t.got(conn(1)), vec![call(e, "late")]);
    t.send(conn(3), syncs(vec![rec(e, 5.0)]));
    t.tick();
    assert!(t.io.sent.is_empty());
    assert_eq!(t.d.sync_dropped_unknown_entity(), 3);
    // Held before any game announced it: its kept position has nowhere to go.
    let ghost = eid("ghostghostghost1");
    t.send(conn(1), migrate_request(ghost, 2));
    t.send(conn(3), syncs(vec![rec(ghost, 6.0)]));
    t.io.sent.clear();
    assert_eq!(
        t.d.sync_dropped_unknown_entity(),
        3,
        "kept, not yet dropped"
    );
    t.send(conn(1), Msg::CancelMigrate { eid: ghost });
    t.tick();
    assert!(t.io.sent.is_empty());
    assert_eq!(t.d.sync_dropped_unknown_entity(), 4);
}

/// An entity with a client migrates through its client's dispatcher: that dispatcher, which
/// does not route the entity, relays REAL_MIGRATE to the target game without taking the
/// entity into its table.
#[test]
fn real_migrate_for_an_entity_of_another_dispatcher_is_relayed() {
    let mut t = T::new(2, 0);
    t.game(conn(1), 1, vec![]);
    t.game(conn(2), 2, vec![]);
    t.io.sent.clear();
    let e = eid("elsewhereelsew01");
    let mig = Msg::RealMigrate {
        eid: e,
        target_game: 2,
        data: vec![0x80],
    };
    t.send(conn(1), mig.clone());
    assert_eq!(t.got(conn(2)), vec![mig]);
    assert_eq!(t.d.entity_game(&e), None, "not in this dispatcher's table");
}

/// A migration whose target game died after it was chosen goes back to the game it left,
/// with the calls held for it, instead of into the dead game's queue.
#[test]
fn real_migrate_to_a_game_that_went_down_goes_back_to_its_source() {
    let mut t = T::new(2, 0);
    let e = eid("bouncerbouncer01");
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![]);
    let req = Msg::MigrateRequest {
        eid: e,
        space_id: nil_space_id(2),
        space_game_id: 2,
    };
    t.send(conn(1), req);
    t.d.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    t.io.sent.clear();
    t.send(conn(1), call(e, "held"));
    assert!(t.io.sent.is_empty(), "held while it migrates");
    t.send(
        conn(1),
        Msg::RealMigrate {
            eid: e,
            target_game: 2,
            data: vec![0x80],
        },
    );
    assert_eq!(
        t.got(conn(1)),
        vec![Msg::RealMigrate {
            eid: e,
            target_game: 1,
            data: vec![0x80],
        }]
    );
    t.send(conn(1), Msg::NotifyCreateEntity { eid: e });
    assert_eq!(t.got(conn(1)), vec![call(e, "held")]);
    assert_eq!(t.d.entity_game(&e), Some(1));
}

/// An entity's hold ends (it expires) while its game is frozen for a hot swap: its held calls
/// join the game's queue behind what was queued there already, in order, and reach the
/// restored game after its ack.
#[test]
fn a_hold_ending_while_its_game_is_frozen_joins_the_games_queue_in_order() {
    let mut t = T::new(2, 0);
    let (e, f) = (eid("migrantmigrant05"), eid("residentreside01"));
    t.game(conn(1), 1, vec![e, f]);
    t.game(conn(2), 2, vec![]);
    t.send(conn(1), migrate_request(e, 1));
    t.send(conn(2), call(e, "held1"));
    t.send(conn(1), Msg::StartFreezeGame);
    t.d.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    t.send(conn(2), call(f, "queued"));
    t.send(conn(2), call(e, "held2"));
    t.now += MIGRATE_HOLD + Duration::from_secs(1);
    t.tick();
    t.send(conn(2), call(e, "after"));
    t.io.sent.clear();
    t.game(conn(3), 1, vec![e, f]);
    let got = t.got(conn(3));
    assert!(matches!(got[0], Msg::SetGameIdAck { .. }));
    assert_eq!(
        got[1..],
        [
            call(f, "queued"),
            call(e, "held1"),
            call(e, "held2"),
            call(e, "after")
        ]
    );
}

/// An entity migrates into a game that is frozen: the REAL_MIGRATE waits in the game's
/// queue, the entity's calls wait in its hold, and the restored game gets the migration, then
/// (once it announces the entity in its handshake) the calls, in order.
#[test]
fn a_migration_into_a_frozen_game_reaches_it_after_the_restore_then_its_calls() {
    let mut t = T::new(2, 0);
    let (e, f) = (eid("migrantmigrant07"), eid("residentreside02"));
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![f]);
    t.send(conn(1), migrate_request(e, 2));
    t.send(conn(1), call(e, "held1"));
    t.send(conn(2), Msg::StartFreezeGame);
    t.d.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    t.send(conn(1), call(f, "queued"));
    let mig = Msg::RealMigrate {
        eid: e,
        target_game: 2,
        data: vec![0x80],
    };
    t.send(conn(1), mig.clone());
    t.send(conn(1), call(e, "held2"));
    t.io.sent.clear();
    // The restored game took the migration before it froze its state, so it announces e.
    t.game(conn(3), 2, vec![e, f]);
    let got = t.got(conn(3));
    assert!(matches!(got[0], Msg::SetGameIdAck { .. }));
    assert_eq!(
        got[1..],
        [call(f, "queued"), mig, call(e, "held1"), call(e, "held2")]
    );
}

/// A game whose freeze failed says so: the dispatcher delivers what it held for it, in
/// order, and then sends straight to it again.
#[test]
fn a_cancelled_freeze_delivers_what_was_held_and_stops_holding() {
    let mut t = T::new(2, 0);
    let (e, f) = (eid("frozenfrozenfr02"), eid("otherotherothe01"));
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![f]);
    t.io.sent.clear();
    t.send(conn(1), Msg::StartFreezeGame);
    assert_eq!(t.got(conn(1)), vec![Msg::StartFreezeGameAck { disp_id: 1 }]);
    t.send(conn(2), call(e, "one"));
    t.send(conn(2), call(e, "two"));
    assert!(t.got(conn(1)).is_empty(), "held while the game freezes");
    t.send(conn(1), Msg::FreezeCancelled);
    assert_eq!(t.got(conn(1)), vec![call(e, "one"), call(e, "two")]);
    t.send(conn(2), call(e, "three"));
    assert_eq!(t.got(conn(1)), vec![call(e, "three")]);
}

/// A frozen game that does not come back within `freeze_hold_timeout` is declared dead (one
/// line counts what was held): its entities leave the routing table and the other games are
/// told; it is not left holding packets forever.
#[test]
fn a_frozen_game_that_never_comes_back_is_declared_dead_after_the_timeout() {
    let mut t = T::new(2, 0);
    let (e, f) = (eid("frozenfrozenfr03"), eid("otherotherothe02"));
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![f]);
    t.send(conn(1), Msg::StartFreezeGame);
    t.d.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    t.send(conn(2), call(e, "held"));
    t.io.sent.clear();
    t.now += Duration::from_secs(299);
    t.tick();
    assert_eq!(
        t.d.entity_game(&e),
        Some(1),
        "still waiting for the restore"
    );
    assert!(t.got(conn(2)).is_empty());
    t.now += Duration::from_secs(2);
    t.tick();
    assert_eq!(t.d.entity_game(&e), None, "its entities are forgotten");
    assert_eq!(
        t.got(conn(2)),
        vec![Msg::NotifyGameDisconnected { game_id: 1 }]
    );
}

// ---- bounded logging -----------------------------------------------------------------------

fn warnings() -> Vec<String> {
    goworld_common::testlog::take_at(log::Level::Warn)
}

/// The dispatcher routes a boot entity to the game it sent the client-connected notice to,
/// before the game announces it: a client that leaves at once has its disconnect notice
/// follow the connect notice on the same link, with no wait and no report.
#[test]
fn a_boot_entity_is_routed_to_its_game_from_the_client_connected_notice_on() {
    let mut t = T::new(1, 1);
    t.game(conn(1), 1, vec![]);
    t.gate(conn(9), 1);
    t.io.sent.clear();
    let cid = eid("clientclientcl01");
    let boot = eid("bootbootbootbo01");
    t.send(
        conn(9),
        Msg::NotifyClientConnected {
            client_id: cid,
            boot_eid: boot,
            gate_id: None,
        },
    );
    assert_eq!(t.d.entity_game(&boot), Some(1));
    let gone = Msg::NotifyClientDisconnected {
        owner_eid: boot,
        client_id: cid,
    };
    t.send(conn(9), gone.clone());
    let got = t.got(conn(1));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], gone, "after the connect notice, without waiting");
    // The game creates, announces and destroys it; the table follows.
    t.send(conn(1), Msg::NotifyCreateEntity { eid: boot });
    t.send(conn(1), Msg::NotifyDestroyEntity { eid: boot });
    assert_eq!(t.d.entity_game(&boot), None);
}

/// A client that leaves while its player entity changes gets a disconnect notice for its old
/// owner and one for the new (the gate cannot know which holds it): the one whose entity was
/// destroyed before it arrived waits for it in vain. That is expected, so it is counted and
/// logged at debug, not warned about.
#[test]
fn a_disconnect_notice_for_an_entity_already_destroyed_is_counted_not_warned() {
    goworld_common::testlog::capture();
    let mut t = T::new(1, 1);
    t.game(conn(1), 1, vec![]);
    t.gate(conn(9), 1);
    t.io.sent.clear();
    t.send(
        conn(9),
        Msg::NotifyClientDisconnected {
            owner_eid: eid("accountaccount01"),
            client_id: eid("clientclientcl01"),
        },
    );
    t.now += UNKNOWN_ENTITY_GRACE + SWEEP_INTERVAL;
    t.tick();
    assert!(t.io.sent.is_empty());
    assert_eq!(t.d.disconnects_for_gone_entities(), 1);
    assert_eq!(warnings(), Vec::<String>::new());
}

/// Clients calling made-up entity IDs (through their gate) cost a few lines per window, not
/// one each: the first few in full, then one summary with the count when the window ends.
#[test]
fn calls_to_entities_that_never_turn_up_cost_a_few_lines_per_window() {
    goworld_common::testlog::capture();
    let mut t = T::new(1, 1);
    t.game(conn(1), 1, vec![]);
    t.gate(conn(9), 1);
    t.io.sent.clear();
    for i in 0..100 {
        let call = Msg::CallEntityMethodFromClient {
            eid: eid(&format!("madeupmadeup{i:04}")),
            method: format!("M{i}"),
            args: vec![],
            client_id: Some(eid("clientclientcl01")),
        };
        t.send(conn(9), call);
    }
    t.now += UNKNOWN_ENTITY_GRACE + SWEEP_INTERVAL;
    t.tick();
    let w = warnings();
    assert_eq!(w.len(), FULL_LINES as usize, "{w:#?}");
    assert!(w[0].contains("is unknown"), "{w:#?}");
    assert!(t.d.next_deadline().is_some(), "a summary is owed");
    while t.d.next_deadline().is_some() {
        t.now += SWEEP_INTERVAL;
        t.tick();
    }
    let w = warnings();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("97 more not logged"), "{w:#?}");
}

/// A game that keeps sending packets the dispatcher refuses (without closing it) costs a few
/// lines, and one summary when it goes.
#[test]
fn a_game_that_keeps_sending_refused_packets_costs_a_few_lines() {
    goworld_common::testlog::capture();
    let mut t = T::new(2, 0);
    let e = eid("entityentityen01");
    t.game(conn(1), 1, vec![e]);
    t.game(conn(2), 2, vec![]);
    warnings();
    for i in 0..50u16 {
        if i % 2 == 0 {
            t.send(
                conn(2),
                Msg::LoadEntitySomewhere {
                    game_id: 2,
                    eid: e,
                    type_name: "Avatar".into(),
                },
            );
        } else {
            t.raw(conn(2), &(4000 + i).to_le_bytes());
        }
    }
    assert_eq!(warnings().len(), FULL_LINES as usize);
    t.d.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    let w = warnings();
    assert!(w.iter().any(|l| l.contains("47 more not logged")), "{w:#?}");
}

#[test]
fn a_backed_up_link_is_read_only_while_everything_backed_up_is_of_its_kind() {
    use crate::{pause_rule, GAME_LINKS, GATE_LINKS};
    // A backed-up game is read while only games are backed up; not while a gate is.
    assert!(!pause_rule(GAME_LINKS, true, GAME_LINKS));
    assert!(pause_rule(GAME_LINKS, true, GATE_LINKS));
    assert!(!pause_rule(GATE_LINKS, true, GATE_LINKS));
    assert!(pause_rule(GATE_LINKS, true, GAME_LINKS));
    // Links that are not backed up wait, whatever is.
    for kind in [GAME_LINKS, GATE_LINKS, 0] {
        for congested in [GAME_LINKS, GATE_LINKS, 0] {
            assert!(pause_rule(kind, false, congested));
        }
    }
}
