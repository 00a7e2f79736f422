//! Tests of `peek.rs`: every accessor reads back, from the real encoder's bytes and from every
//! golden frame, exactly the field the full decoder finds; short payloads read as `None`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::proto::{golden, ClientBound, ClientMsg, FilterOp, Msg};

fn id(s: &str) -> EntityId {
    EntityId::parse(s).unwrap()
}

// Distinct IDs and numbers, so a field read one offset off never reads the right value.
fn e1() -> EntityId {
    id("awVBNWhsgjH.AAAC")
}
fn e2() -> EntityId {
    id("bxWCOXitgkI2BBBD")
}
fn c1() -> ClientId {
    id("cyXDPYjuhlJ3CCCE")
}

fn rec(eid: EntityId, k: f32) -> SyncRecord {
    SyncRecord {
        eid,
        x: k + 0.25,
        y: -k,
        z: k * 3.5,
        yaw: k + 100.0,
    }
}

/// What one accessor read.
#[derive(Debug, Clone, PartialEq)]
enum Peeked {
    Id(Option<EntityId>),
    U16(Option<u16>),
    Bool(Option<bool>),
    Header(Option<(u16, ClientId)>),
    Records(Option<Vec<SyncRecord>>),
    ClientRecords(Option<Vec<(ClientId, SyncRecord)>>),
}

impl Peeked {
    fn is_none(&self) -> bool {
        match self {
            Peeked::Id(v) => v.is_none(),
            Peeked::U16(v) => v.is_none(),
            Peeked::Bool(v) => v.is_none(),
            Peeked::Header(v) => v.is_none(),
            Peeked::Records(v) => v.is_none(),
            Peeked::ClientRecords(v) => v.is_none(),
        }
    }

    /// What a cut payload read agrees with what the whole one read: the same field, or (for
    /// record lists) the records that fit.
    fn agrees_with(&self, whole: &Peeked) -> bool {
        match (self, whole) {
            (Peeked::Records(Some(cut)), Peeked::Records(Some(all))) => all.starts_with(cut),
            (Peeked::ClientRecords(Some(cut)), Peeked::ClientRecords(Some(all))) => {
                all.starts_with(cut)
            }
            _ => self == whole || self.is_none(),
        }
    }
}

type Peeks = BTreeMap<&'static str, Peeked>;

/// Every accessor that applies to the type of `p`, with what it reads from `p`.
fn peeks(p: &[u8]) -> Peeks {
    let mut m = Peeks::new();
    let Some(t) = peek_type(p) else {
        return m;
    };
    let mut put = |name, v| assert!(m.insert(name, v).is_none());
    match t {
        mt::NOTIFY_CREATE_ENTITY
        | mt::NOTIFY_DESTROY_ENTITY
        | mt::CALL_ENTITY_METHOD
        | mt::NOTIFY_CLIENT_DISCONNECTED
        | mt::CALL_ENTITY_METHOD_FROM_CLIENT
        | mt::CANCEL_MIGRATE
        | mt::MIGRATE_ARRIVED => put("entity_id", Peeked::Id(entity_id(p))),
        mt::MIGRATE_REQUEST => {
            put("entity_id", Peeked::Id(entity_id(p)));
            put(
                "migrate_request_space_game",
                Peeked::U16(migrate_request_space_game(p)),
            );
        }
        mt::REAL_MIGRATE => {
            put("entity_id", Peeked::Id(entity_id(p)));
            put(
                "real_migrate_target_game",
                Peeked::U16(real_migrate_target_game(p)),
            );
        }
        mt::QUERY_SPACE_GAMEID_FOR_MIGRATE => put("space_id", Peeked::Id(space_id(p))),
        mt::CREATE_ENTITY_SOMEWHERE | mt::LOAD_ENTITY_SOMEWHERE => {
            put("somewhere_game_id", Peeked::U16(somewhere_game_id(p)));
            put("somewhere_entity_id", Peeked::Id(somewhere_entity_id(p)));
        }
        mt::NOTIFY_CLIENT_CONNECTED => put("boot_entity_id", Peeked::Id(boot_entity_id(p))),
        mt::CALL_NIL_SPACES => put("except_game_id", Peeked::U16(except_game_id(p))),
        mt::SYNC_POSITION_YAW_FROM_CLIENT => {
            put(
                "sync_records",
                Peeked::Records(sync_records(p).map(|r| r.map(|r| r.decode()).collect())),
            );
            put(
                "client_sync_record",
                Peeked::Records(client_sync_record(p).map(|r| vec![r.decode()])),
            );
        }
        mt::SYNC_POSITION_YAW_ON_CLIENTS => {
            put("gate_id", Peeked::U16(gate_id(p)));
            put(
                "sync_on_clients_records",
                Peeked::ClientRecords(
                    sync_on_clients_records(p)
                        .map(|r| r.map(|r| (r.client_id(), r.record().decode())).collect()),
                ),
            );
        }
        _ if route(t) == Route::ToClient => {
            put("gate_id", Peeked::U16(gate_id(p)));
            put("client_header", Peeked::Header(client_header(p)));
            if t == mt::CREATE_ENTITY_ON_CLIENT {
                put("created_is_player", Peeked::Bool(created_is_player(p)));
                put("created_entity_id", Peeked::Id(created_entity_id(p)));
            }
        }
        _ => {}
    }
    m
}

/// What the accessors must read from a payload that decodes as `m`.
fn expected(m: &Msg) -> Peeks {
    let id = |e: &EntityId| Peeked::Id(Some(*e));
    let u = |g: &u16| Peeked::U16(Some(*g));
    let v: Vec<(&'static str, Peeked)> = match m {
        Msg::NotifyCreateEntity { eid }
        | Msg::NotifyDestroyEntity { eid }
        | Msg::CallEntityMethod { eid, .. }
        | Msg::NotifyClientDisconnected { owner_eid: eid, .. }
        | Msg::CallEntityMethodFromClient { eid, .. }
        | Msg::CancelMigrate { eid }
        | Msg::MigrateArrived { eid } => vec![("entity_id", id(eid))],
        Msg::MigrateRequest {
            eid, space_game_id, ..
        } => vec![
            ("entity_id", id(eid)),
            ("migrate_request_space_game", u(space_game_id)),
        ],
        Msg::RealMigrate {
            eid, target_game, ..
        } => vec![
            ("entity_id", id(eid)),
            ("real_migrate_target_game", u(target_game)),
        ],
        Msg::QuerySpaceGameIdForMigrate { space_id, .. } => vec![("space_id", id(space_id))],
        Msg::CreateEntitySomewhere { game_id, eid, .. }
        | Msg::LoadEntitySomewhere { game_id, eid, .. } => vec![
            ("somewhere_game_id", u(game_id)),
            ("somewhere_entity_id", id(eid)),
        ],
        Msg::NotifyClientConnected { boot_eid, .. } => vec![("boot_entity_id", id(boot_eid))],
        Msg::CallNilSpaces { except_game_id, .. } => {
            vec![("except_game_id", u(except_game_id))]
        }
        Msg::SyncPositionYawFromClient { records } => vec![
            ("sync_records", Peeked::Records(Some(records.clone()))),
            (
                "client_sync_record",
                Peeked::Records((records.len() == 1).then(|| records.clone())),
            ),
        ],
        Msg::SyncPositionYawOnClients { gate_id, records } => vec![
            ("gate_id", u(gate_id)),
            (
                "sync_on_clients_records",
                Peeked::ClientRecords(Some(records.clone())),
            ),
        ],
        Msg::ToClient {
            gate_id,
            client_id,
            msg,
        } => {
            let mut v = vec![
                ("gate_id", u(gate_id)),
                (
                    "client_header",
                    Peeked::Header(Some((*gate_id, *client_id))),
                ),
            ];
            if let ClientMsg::CreateEntityOnClient { is_player, eid, .. } = msg {
                v.push(("created_is_player", Peeked::Bool(Some(*is_player))));
                v.push(("created_entity_id", id(eid)));
            }
            v
        }
        _ => vec![],
    };
    v.into_iter().collect()
}

fn args() -> Vec<Vec<u8>> {
    vec![vec![0xa1, b'x'], vec![0xc3]]
}

fn to_client(msg: ClientMsg) -> Msg {
    Msg::ToClient {
        gate_id: 0x0203,
        client_id: c1(),
        msg,
    }
}

/// One message (or more, where a field's presence changes the layout) of every kind.
fn samples() -> Vec<Msg> {
    let s = |x: &str| x.to_string();
    let mut v = vec![
        Msg::SetGameId {
            game_id: 7,
            is_reconnect: true,
            is_restore: false,
            is_ban_boot_entity: true,
            entities: vec![e1(), e2()],
            version: Some(5),
        },
        Msg::SetGateId {
            gate_id: 3,
            version: None,
        },
        Msg::NotifyCreateEntity { eid: e1() },
        Msg::NotifyDestroyEntity { eid: e2() },
        Msg::KvregRegister {
            key: s("k"),
            val: s("v"),
            force: true,
        },
        Msg::CallEntityMethod {
            eid: e1(),
            method: s("Hello"),
            args: args(),
        },
        Msg::CreateEntitySomewhere {
            game_id: 0x0102,
            eid: e2(),
            type_name: s("Monster"),
            attrs: vec![0x80],
        },
        Msg::LoadEntitySomewhere {
            game_id: 0,
            eid: e1(),
            type_name: s("Avatar"),
        },
        Msg::LoadEntitySomewhere {
            game_id: 0x0a0b,
            eid: e2(),
            type_name: s("Avatar"),
        },
        Msg::NotifyClientDisconnected {
            owner_eid: e2(),
            client_id: c1(),
        },
        Msg::SyncPositionYawFromClient {
            records: vec![rec(e1(), 1.0)],
        },
        Msg::SyncPositionYawFromClient {
            records: vec![rec(e1(), 1.0), rec(e2(), 2.0), rec(e1(), 3.0)],
        },
        Msg::NotifyGateDisconnected { gate_id: 4 },
        Msg::NotifyGateConnected { gate_id: 4 },
        Msg::MigrateArrived { eid: e1() },
        Msg::StartFreezeGame,
        Msg::FreezeCancelled,
        Msg::StartFreezeGameAck { disp_id: 2 },
        Msg::MigrateRequest {
            eid: e1(),
            space_id: e2(),
            space_game_id: 0x0304,
        },
        Msg::RealMigrate {
            eid: e2(),
            target_game: 0x0506,
            data: vec![0x81, 0xa1, b'a', 0x01],
        },
        Msg::CancelMigrate { eid: e2() },
        Msg::CallNilSpaces {
            except_game_id: 0x0708,
            method: s("OnGameReady"),
            args: args(),
        },
        Msg::SetGameIdAck {
            disp_id: 1,
            deployment_ready: true,
            games: vec![1, 2],
            rejected: vec![e1()],
            kvreg: vec![(s("a"), s("b"))],
            declared_dead: true,
        },
        Msg::NotifyGameConnected { game_id: 2 },
        Msg::NotifyGameDisconnected { game_id: 2 },
        Msg::NotifyDeploymentReady,
        Msg::GameLbcInfo { data: vec![0x80] },
        Msg::CallFilteredClients {
            op: FilterOp::Gte,
            key: s("lv"),
            val: s("3"),
            method: s("Say"),
            args: args(),
        },
        Msg::SyncPositionYawOnClients {
            gate_id: 0x0405,
            records: vec![],
        },
        Msg::SyncPositionYawOnClients {
            gate_id: 0x0405,
            records: vec![(c1(), rec(e1(), 4.0)), (e2(), rec(e2(), 5.0))],
        },
        Msg::HeartbeatFromClient,
        Msg::ClientOwnersGone {
            game_id: 3,
            owners: vec![e1(), e2()],
        },
    ];
    // The fields routers append, absent and present.
    for gate_id in [None, Some(0x0c0d)] {
        v.push(Msg::NotifyClientConnected {
            client_id: c1(),
            boot_eid: e2(),
            gate_id,
        });
    }
    for client_id in [None, Some(c1())] {
        v.push(Msg::CallEntityMethodFromClient {
            eid: e2(),
            method: s("Login"),
            args: args(),
            client_id,
        });
    }
    for game_id in [None, Some(0x0e0f)] {
        v.push(Msg::QuerySpaceGameIdForMigrate {
            space_id: e1(),
            eid: e2(),
            game_id,
        });
    }
    // Every body a game sends to a client.
    let path = vec![0x91, 0xa1, b'p'];
    for is_player in [false, true] {
        v.push(to_client(ClientMsg::CreateEntityOnClient {
            is_player,
            eid: e2(),
            type_name: s("Avatar"),
            x: 1.0,
            y: 2.0,
            z: 3.0,
            yaw: 4.0,
            client_data: vec![0x80],
        }));
    }
    v.extend(
        [
            ClientMsg::DestroyEntityOnClient {
                type_name: s("Avatar"),
                eid: e1(),
            },
            ClientMsg::NotifyMapAttrChange {
                eid: e1(),
                path: path.clone(),
                key: s("k"),
                val: vec![0x01],
            },
            ClientMsg::NotifyMapAttrDel {
                eid: e1(),
                path: path.clone(),
                key: s("k"),
            },
            ClientMsg::NotifyListAttrChange {
                eid: e1(),
                path: path.clone(),
                index: 2,
                val: vec![0x01],
            },
            ClientMsg::NotifyListAttrPop {
                eid: e1(),
                path: path.clone(),
            },
            ClientMsg::NotifyListAttrAppend {
                eid: e1(),
                path: path.clone(),
                val: vec![0x01],
            },
            ClientMsg::CallEntityMethodOnClient {
                eid: e1(),
                method: s("OnLogin"),
                args: args(),
            },
            ClientMsg::SetClientProxyFilterProp {
                key: s("k"),
                val: s("v"),
            },
            ClientMsg::ClearClientProxyFilterProps,
            ClientMsg::NotifyMapAttrClear { eid: e1(), path },
            ClientMsg::KickClient { reason: s("bye") },
        ]
        .into_iter()
        .map(to_client),
    );
    v
}

/// Every accessor with a name in [`peeks`].
const ALL_READERS: &[&str] = &[
    "entity_id",
    "space_id",
    "somewhere_game_id",
    "somewhere_entity_id",
    "boot_entity_id",
    "migrate_request_space_game",
    "real_migrate_target_game",
    "except_game_id",
    "gate_id",
    "client_header",
    "created_is_player",
    "created_entity_id",
    "sync_records",
    "client_sync_record",
    "sync_on_clients_records",
];

#[test]
fn every_accessor_reads_what_the_encoder_wrote() {
    let mut used = BTreeSet::new();
    let mut types = BTreeSet::new();
    for m in samples() {
        let p = m.to_payload();
        // The samples are what the decoder reads back, so `expected` sees the real fields.
        assert_eq!(Msg::decode(&p).as_ref(), Ok(&m), "{m:?}");
        let got = peeks(&p);
        assert_eq!(got, expected(&m), "{m:?}");
        used.extend(got.keys().copied());
        types.insert(m.msg_type());
    }
    assert_eq!(
        used,
        ALL_READERS.iter().copied().collect(),
        "untested accessors"
    );
    // Every message type has a sample: an accessor added for a new type is compared too.
    for t in (0..=u16::MAX)
        .filter(|&t| crate::proto::msg_name(t) != "unknown" && !matches!(route(t), Route::Unknown))
    {
        let is_range_marker = matches!(
            t,
            mt::GATE_SERVICE_START
                | mt::REDIRECT_TO_GATEPROXY_START
                | mt::REDIRECT_TO_GATEPROXY_STOP
                | mt::GATE_SERVICE_STOP
        );
        assert!(
            is_range_marker || types.contains(&t),
            "no sample of {}",
            crate::proto::msg_name(t)
        );
    }
}

#[test]
fn every_golden_frame_peeks_what_it_decodes_to() {
    let mut n = 0;
    for (name, _) in golden::GOLDEN {
        let p = golden::payload(name).unwrap();
        let Ok(m) = Msg::decode(&p) else {
            continue; // a client-only frame
        };
        assert_eq!(peeks(&p), expected(&m), "{name}");
        n += 1;
    }
    assert!(n >= 40, "{n} golden frames checked");
}

#[test]
fn short_payloads_read_none_and_never_panic() {
    for m in samples() {
        let p = m.to_payload();
        let whole = peeks(&p);
        for cut in 0..p.len() {
            let short = &p[..cut];
            let got = peeks(short);
            if cut < TYPE_LEN {
                assert!(got.is_empty());
            }
            for (name, v) in &got {
                // A batch cut to one record is a client's sync: its first record.
                let of = match *name {
                    "client_sync_record" => "sync_records",
                    n => n,
                };
                assert!(
                    v.agrees_with(&whole[of]),
                    "{name} of {m:?} cut to {cut}: {v:?}"
                );
            }
            assert_eq!(body_len(short), cut.saturating_sub(TYPE_LEN));
        }
    }
    // A payload one byte short of each field reads `None`.
    let cut = |m: Msg, by: usize| {
        let mut p = m.to_payload();
        p.truncate(p.len() - by);
        p
    };
    let mr = Msg::MigrateRequest {
        eid: e1(),
        space_id: e2(),
        space_game_id: 9,
    };
    let mut p = cut(mr, 1);
    assert_eq!(migrate_request_space_game(&p), None);
    assert_eq!(entity_id(&p), Some(e1()));
    p.truncate(TYPE_LEN + ID_LEN - 1);
    assert_eq!(entity_id(&p), None);
    let rm = Msg::RealMigrate {
        eid: e1(),
        target_game: 9,
        data: vec![],
    };
    let mut p = rm.to_payload();
    p.truncate(TYPE_LEN + ID_LEN + 1);
    assert_eq!(real_migrate_target_game(&p), None);
    assert_eq!(set_real_migrate_target_game(&mut p, 3), None);
    assert_eq!(
        p,
        rm.to_payload()[..TYPE_LEN + ID_LEN + 1],
        "nothing written"
    );
    let p = cut(
        Msg::NotifyClientConnected {
            client_id: c1(),
            boot_eid: e2(),
            gate_id: None,
        },
        1,
    );
    assert_eq!(boot_entity_id(&p), None);
    let p = cut(
        Msg::SyncPositionYawFromClient {
            records: vec![rec(e1(), 1.0)],
        },
        1,
    );
    assert!(sync_records(&p).is_none());
    assert!(client_sync_record(&p).is_none());
    let p = cut(
        Msg::SyncPositionYawOnClients {
            gate_id: 1,
            records: vec![(c1(), rec(e1(), 1.0))],
        },
        1,
    );
    assert_eq!(gate_id(&p), Some(1));
    assert!(sync_on_clients_records(&p).is_none());
    // Empty and one-byte payloads.
    for p in [&[][..], &[3][..]] {
        assert_eq!(entity_id(p), None);
        assert_eq!(gate_id(p), None);
        assert_eq!(client_header(p), None);
        assert!(sync_records(p).is_none());
        assert!(sync_on_clients_records(p).is_none());
        assert_eq!(body_len(p), 0);
    }
    let mut empty: Vec<u8> = vec![];
    assert_eq!(retain_sync_records(&mut empty, |_| true), None);
    let mut bad = cut(
        Msg::SyncPositionYawFromClient {
            records: vec![rec(e1(), 1.0)],
        },
        3,
    );
    let before = bad.clone();
    assert_eq!(retain_sync_records(&mut bad, |_| false), None);
    assert_eq!(bad, before, "nothing changed");
}

#[test]
fn set_real_migrate_target_game_rewrites_only_that_field() {
    let m = |target_game| Msg::RealMigrate {
        eid: e1(),
        target_game,
        data: vec![0x81, 0xa1, b'a', 0x01],
    };
    let mut p = m(0x0102).to_payload();
    assert_eq!(set_real_migrate_target_game(&mut p, 0xa0b0), Some(()));
    assert_eq!(p, m(0xa0b0).to_payload());
    assert_eq!(real_migrate_target_game(&p), Some(0xa0b0));
}

#[test]
fn appended_fields_are_what_the_encoder_writes_last() {
    let connected = |gate_id| Msg::NotifyClientConnected {
        client_id: c1(),
        boot_eid: e2(),
        gate_id,
    };
    let from_gate = connected(None).to_payload();
    assert_eq!(from_gate.len(), NOTIFY_CLIENT_CONNECTED_FROM_GATE_LEN);
    assert_eq!(
        [&from_gate[..], &appended_gate_id(0x0c0d)[..]].concat(),
        connected(Some(0x0c0d)).to_payload()
    );

    let query = |game_id| Msg::QuerySpaceGameIdForMigrate {
        space_id: e1(),
        eid: e2(),
        game_id,
    };
    assert_eq!(
        [&query(None).to_payload()[..], &appended_game_id(0x0e0f)[..]].concat(),
        query(Some(0x0e0f)).to_payload()
    );

    let call = |client_id| Msg::CallEntityMethodFromClient {
        eid: e2(),
        method: "Login".into(),
        args: args(),
        client_id,
    };
    assert_eq!(
        [&call(None).to_payload()[..], &appended_client_id(&c1())[..]].concat(),
        call(Some(c1())).to_payload()
    );
}

#[test]
fn sync_heads_and_records_rebuild_the_encoders_bytes() {
    let records = vec![rec(e1(), 1.0), rec(e2(), 2.0), rec(e1(), 3.0)];
    let batch = Msg::SyncPositionYawFromClient {
        records: records.clone(),
    }
    .to_payload();
    // A batch is the head and the records' bytes, as a gate or a dispatcher builds it.
    let mut rebuilt = SYNC_FROM_CLIENT_HEAD.to_vec();
    for r in sync_records(&batch).unwrap() {
        rebuilt.extend_from_slice(r.as_bytes());
    }
    assert_eq!(rebuilt, batch);
    assert_eq!(sync_records(&batch).unwrap().len(), 3);
    let last_e1 = sync_records(&batch)
        .unwrap()
        .rfind(|r| r.entity_id() == e1())
        .unwrap();
    assert_eq!(last_e1.decode(), records[2]);

    // One client's record, as a client sends it.
    let one = Msg::SyncPositionYawFromClient {
        records: vec![records[1]],
    }
    .to_payload();
    assert_eq!(one.len(), SYNC_FROM_ONE_CLIENT_LEN);
    let r = client_sync_record(&one).unwrap();
    assert_eq!(r.entity_id(), e2());
    assert_eq!(
        [&SYNC_FROM_CLIENT_HEAD[..], &r.as_bytes()[..]].concat(),
        one
    );
    assert!(client_sync_record(&batch).is_none());

    // The game form of 1502, regrouped into what a client receives.
    let on_clients = Msg::SyncPositionYawOnClients {
        gate_id: 1,
        records: vec![(c1(), records[0]), (e2(), records[1]), (c1(), records[2])],
    }
    .to_payload();
    let mut to_c1 = SYNC_TO_CLIENT_HEAD.to_vec();
    for r in sync_on_clients_records(&on_clients).unwrap() {
        if r.client_id() == c1() {
            to_c1.extend_from_slice(r.record().as_bytes());
        }
    }
    let mut want = Vec::new();
    ClientBound::Sync(vec![records[0], records[2]]).encode(&mut want);
    assert_eq!(to_c1, want);
}

#[test]
fn retain_sync_records_keeps_the_others_in_order() {
    let records = vec![
        rec(e1(), 1.0),
        rec(e2(), 2.0),
        rec(e1(), 3.0),
        rec(e2(), 4.0),
    ];
    let batch = |records: Vec<SyncRecord>| Msg::SyncPositionYawFromClient { records }.to_payload();
    let mut b = batch(records.clone());
    assert_eq!(
        retain_sync_records(&mut b, |r| r.entity_id() != e1()),
        Some(2)
    );
    assert_eq!(b, batch(vec![records[1], records[3]]));
    assert_eq!(retain_sync_records(&mut b, |_| true), Some(2));
    assert_eq!(b, batch(vec![records[1], records[3]]));
    assert_eq!(retain_sync_records(&mut b, |_| false), Some(0));
    assert_eq!(b, SYNC_FROM_CLIENT_HEAD);
    assert_eq!(sync_records(&b).unwrap().len(), 0, "an empty batch");
}

#[test]
fn created_is_player_is_true_only_for_the_byte_one() {
    let m = |is_player| {
        to_client(ClientMsg::CreateEntityOnClient {
            is_player,
            eid: e2(),
            type_name: "Avatar".into(),
            x: 0.0,
            y: 0.0,
            z: 0.0,
            yaw: 0.0,
            client_data: vec![0x80],
        })
        .to_payload()
    };
    assert_eq!(created_is_player(&m(true)), Some(true));
    assert_eq!(created_is_player(&m(false)), Some(false));
    // Find the byte by difference, and set it to another non-zero value.
    let (a, b) = (m(false), m(true));
    let at = (0..a.len()).find(|&i| a[i] != b[i]).unwrap();
    let mut two = b.clone();
    two[at] = 2;
    assert_eq!(created_is_player(&two), Some(false));
    assert_eq!(created_entity_id(&two), Some(e2()));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "proto::peek::gate_id used on message type")]
fn debug_builds_catch_an_accessor_used_on_another_type() {
    gate_id(&Msg::NotifyCreateEntity { eid: e1() }.to_payload());
}
