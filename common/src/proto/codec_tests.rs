//! Tests of `codec.rs`: golden bytes from the GoWorld capture, round trips of the messages never
//! captured, decode errors, routing boundaries, and the doc/code golden-dump check.

use super::golden::{self, GOLDEN};
use super::*;
use crate::msgpack::{self, Value};
use crate::proto::{
    client_may_send, peek, peek_type, route, ClientBound, ClientMsg, FilterOp, Msg, Route,
    SyncRecord,
};

fn id(s: &str) -> EntityId {
    EntityId::parse(s).unwrap()
}

fn payload(name: &str) -> Vec<u8> {
    golden::payload(name).unwrap_or_else(|| panic!("no golden frame {name}"))
}

fn decode(name: &str) -> Msg {
    Msg::decode(&payload(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn client_bound(name: &str) -> ClientBound {
    ClientBound::decode(&payload(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn mp(b: &[u8]) -> Value {
    msgpack::decode_exact(b).unwrap()
}

fn args(a: &[Vec<u8>]) -> Vec<Value> {
    a.iter().map(|b| mp(b)).collect()
}

fn to_client(name: &str) -> (u16, EntityId, ClientMsg) {
    match decode(name) {
        Msg::ToClient {
            gate_id,
            client_id,
            msg,
        } => (gate_id, client_id, msg),
        m => panic!("{name}: {m:?}"),
    }
}

/// Golden frames a gate sends to a client that have no server-link form.
const CLIENT_ONLY: &[&str] = &["login_7_sync_on_client"];

#[test]
fn every_golden_frame_decodes_and_reencodes_exactly() {
    assert!(GOLDEN.len() >= 45);
    for (name, _) in GOLDEN {
        let p = payload(name);
        let frame = golden::frame(name).unwrap();
        assert_eq!(
            u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize,
            p.len(),
            "{name}: length prefix"
        );
        let t = peek_type(&p).unwrap();
        if CLIENT_ONLY.contains(name) {
            let m = client_bound(name);
            assert_eq!(m.msg_type(), t);
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(out, p, "{name}");
            assert!(
                Msg::decode(&p).is_err(),
                "{name} is not a server-link message"
            );
            continue;
        }
        let m = decode(name);
        assert_eq!(m.msg_type(), t, "{name}");
        assert_eq!(m.to_payload(), p, "{name} re-encodes");
        // What a gate passes through to a client decodes on the client side too.
        if matches!(t, 1002..=1009 | 1012 | 1501) {
            let c = client_bound(name);
            assert_eq!(c.msg_type(), t);
            let mut out = Vec::new();
            c.encode(&mut out);
            assert_eq!(out, p, "{name} (client-bound)");
        }
    }
}

#[test]
fn golden_set_game_id_and_gate_id() {
    for (name, gid, nil) in [
        ("set_game_id_game1", 1, "AAAAAAAAAAAAAAAx"),
        ("set_game_id_game2", 2, "AAAAAAAAAAAAAAAy"),
    ] {
        assert_eq!(
            decode(name),
            Msg::SetGameId {
                game_id: gid,
                is_reconnect: false,
                is_restore: false,
                is_ban_boot_entity: false,
                entities: vec![id(nil)],
                version: None,
            }
        );
    }
    assert_eq!(
        decode("set_gate_id"),
        Msg::SetGateId {
            gate_id: 1,
            version: None
        }
    );
}

#[test]
fn golden_entity_notifications() {
    let e = id("awVBMmhsgjH.AAAC");
    assert_eq!(
        decode("notify_create_entity"),
        Msg::NotifyCreateEntity { eid: e }
    );
    assert_eq!(
        decode("notify_destroy_entity"),
        Msg::NotifyDestroyEntity { eid: e }
    );
    assert_eq!(
        decode("kvreg_register"),
        Msg::KvregRegister {
            key: "Service/OnlineService#1".into(),
            val: "game1".into(),
            force: false,
        }
    );
}

#[test]
fn golden_call_entity_method() {
    let Msg::CallEntityMethod {
        eid,
        method,
        args: a,
    } = decode("call_entity_method")
    else {
        panic!()
    };
    assert_eq!(eid, id("awVBNWhsgjH2AAAM"));
    assert_eq!(method, "GetSpaceID");
    assert_eq!(args(&a), vec![Value::from("awVBX2hsgjH.AAAM")]);

    let Msg::CallEntityMethod {
        eid,
        method,
        args: a,
    } = decode("call_entity_method_2args")
    else {
        panic!()
    };
    assert_eq!(eid, id("awVB02hsgjNOAAAJ"));
    assert_eq!(method, "DoEnterSpace");
    assert_eq!(a[0], hexb("d3000000000000003f"));
    assert_eq!(
        args(&a),
        vec![Value::Int(63), Value::from("awVB02hsgjNPAAAR")]
    );
}

fn hexb(h: &str) -> Vec<u8> {
    golden::hex_decode(h).unwrap()
}

#[test]
fn golden_create_and_load_somewhere() {
    let Msg::CreateEntitySomewhere {
        game_id,
        eid,
        type_name,
        attrs,
    } = decode("create_entity_somewhere")
    else {
        panic!()
    };
    assert_eq!((game_id, eid), (0, id("awVBNWhsgjH2AAAO")));
    assert_eq!(type_name, "__space__");
    assert_eq!(mp(&attrs).map_get("_K"), Some(&Value::Int(91)));
    assert_eq!(
        decode("load_entity_somewhere"),
        Msg::LoadEntitySomewhere {
            game_id: 0,
            eid: id("awVBNWhsgjH2AAAM"),
            type_name: "Avatar".into(),
        }
    );
}

#[test]
fn golden_client_connect_disconnect_with_router_fields() {
    let c = id("awVBMmhsgjH.AAAB");
    let b = id("awVBMmhsgjH.AAAC");
    assert_eq!(
        decode("notify_client_connected_from_gate"),
        Msg::NotifyClientConnected {
            client_id: c,
            boot_eid: b,
            gate_id: None
        }
    );
    assert_eq!(
        decode("notify_client_connected_to_game"),
        Msg::NotifyClientConnected {
            client_id: c,
            boot_eid: b,
            gate_id: Some(1)
        }
    );
    assert_eq!(
        decode("notify_client_disconnected"),
        Msg::NotifyClientDisconnected {
            owner_eid: b,
            client_id: c
        }
    );
}

#[test]
fn golden_call_from_client_with_and_without_gate_clientid() {
    let a = vec![hexb("a57465737432"), hexb("a6313233343536")];
    let mut m = Msg::CallEntityMethodFromClient {
        eid: id("awVBNWhsgjH.AAAH"),
        method: "Login".into(),
        args: a,
        client_id: None,
    };
    assert_eq!(decode("call_entity_method_from_client"), m);
    if let Msg::CallEntityMethodFromClient { client_id, .. } = &mut m {
        *client_id = Some(id("awVBNWhsgjH.AAAE"));
    }
    assert_eq!(decode("call_entity_method_from_client_to_disp"), m);
    let Msg::CallEntityMethodFromClient { args: a, .. } = decode("login_2_login") else {
        panic!()
    };
    assert_eq!(args(&a), vec![Value::from("test3"), Value::from("123456")]);
}

#[test]
fn golden_position_sync() {
    let Msg::SyncPositionYawFromClient { records } = decode("sync_position_yaw_from_client") else {
        panic!()
    };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].eid, id("awVBNWhsgjH2AAAL"));
    assert_eq!(records[0].x.to_le_bytes(), [0xbd, 0xff, 0x16, 0xc3]);
    assert!((records[0].z - 397.990_4).abs() < 1e-3);
    assert!((records[0].yaw - 1.266_466).abs() < 1e-6);

    let Msg::SyncPositionYawFromClient { records } = decode("sync_position_yaw_from_gate") else {
        panic!()
    };
    let eids: Vec<_> = records.iter().map(|r| r.eid).collect();
    assert_eq!(
        eids,
        [
            id("awVBNWhsgjH2AAAN"),
            id("awVBNWhsgjH2AAAL"),
            id("awVBNWhsgjH2AAAM")
        ]
    );

    let Msg::SyncPositionYawOnClients { gate_id, records } =
        decode("sync_position_yaw_on_clients_game")
    else {
        panic!()
    };
    assert_eq!(gate_id, 1);
    assert_eq!(records.len(), 3);
    assert_eq!(records[1].0, id("awVBNWhsgjH.AAAE"));
    assert_eq!(
        records[1].1,
        SyncRecord {
            eid: id("awVBNWhsgjH2AAAL"),
            x: -151.0,
            y: 0.0,
            z: 398.0,
            yaw: 0.0
        }
    );

    assert_eq!(
        client_bound("login_7_sync_on_client"),
        ClientBound::Sync(vec![SyncRecord {
            eid: id("awVBNWhsgjH2AAAN"),
            x: -190.0,
            y: 0.0,
            z: -33.0,
            yaw: 0.0
        }])
    );
}

#[test]
fn golden_migration() {
    let (e, s) = (id("awVB02hsgjNPAAAD"), id("awVB02hsgjNPAAAF"));
    assert_eq!(
        decode("migrate_request"),
        Msg::MigrateRequest {
            eid: e,
            space_id: s,
            space_game_id: 1
        }
    );
    let Msg::RealMigrate {
        eid,
        target_game,
        data,
    } = decode("real_migrate")
    else {
        panic!()
    };
    assert_eq!((eid, target_game, data.len()), (e, 1, 262));
    let v = mp(&data);
    assert_eq!(v.map_get("T").and_then(Value::as_str), Some("Avatar"));
    assert_eq!(v.map_get("FP"), Some(&Value::Nil));
    let c = v.map_get("C").unwrap();
    assert_eq!(c.map_get("GateID"), Some(&Value::Int(1)));
    assert_eq!(
        v.map_get("Pos").unwrap().map_get("X"),
        Some(&Value::Float(173.0))
    );
    assert_eq!(
        decode("query_space_gameid_for_migrate"),
        Msg::QuerySpaceGameIdForMigrate {
            space_id: s,
            eid: e,
            game_id: None
        }
    );
    assert_eq!(
        decode("query_space_gameid_for_migrate_ack"),
        Msg::QuerySpaceGameIdForMigrate {
            space_id: s,
            eid: e,
            game_id: Some(1)
        }
    );
}

#[test]
fn golden_dispatcher_to_game() {
    let Msg::CallNilSpaces {
        except_game_id,
        method,
        args: a,
    } = decode("call_nil_spaces")
    else {
        panic!()
    };
    assert_eq!((except_game_id, method.as_str()), (2, "TestCallNilSpaces"));
    assert_eq!(
        args(&a),
        vec![
            Value::Int(1),
            Value::from("abc"),
            Value::Bool(true),
            Value::Float(2.3)
        ]
    );
    assert_eq!(
        decode("set_game_id_ack_1game"),
        Msg::SetGameIdAck {
            disp_id: 1,
            deployment_ready: false,
            games: vec![1],
            rejected: vec![],
            kvreg: vec![],
            declared_dead: false,
        }
    );
    assert_eq!(
        decode("set_game_id_ack_2games"),
        Msg::SetGameIdAck {
            disp_id: 1,
            deployment_ready: false,
            games: vec![1, 2],
            rejected: vec![],
            kvreg: vec![],
            declared_dead: false,
        }
    );
    assert_eq!(
        decode("notify_game_connected"),
        Msg::NotifyGameConnected { game_id: 2 }
    );
    assert_eq!(
        decode("notify_deployment_ready"),
        Msg::NotifyDeploymentReady
    );
    let Msg::GameLbcInfo { data } = decode("game_lbc_info") else {
        panic!()
    };
    assert_eq!(
        mp(&data).map_get("cp"),
        Some(&Value::Float(0.9769360487663536))
    );
    assert_eq!(decode("heartbeat_from_client"), Msg::HeartbeatFromClient);
}

#[test]
fn golden_create_and_destroy_on_client() {
    let (g, c, m) = to_client("create_entity_on_client_aoitester");
    assert_eq!((g, c), (1, id("awVBNWhsgjH.AAAD")));
    assert_eq!(
        m,
        ClientMsg::CreateEntityOnClient {
            is_player: false,
            eid: id("awVBPWhsgjH2AAA6"),
            type_name: "AOITester".into(),
            x: -190.0,
            y: 0.0,
            z: -33.0,
            yaw: 0.0,
            client_data: vec![0x80],
        }
    );
    let (_, _, m) = to_client("create_entity_on_client_space");
    let ClientMsg::CreateEntityOnClient {
        type_name,
        client_data,
        ..
    } = m
    else {
        panic!()
    };
    assert_eq!(type_name, "__space__");
    assert_eq!(mp(&client_data).map_get("_K"), Some(&Value::Int(100)));

    let (_, _, m) = to_client("login_5_create_avatar");
    let ClientMsg::CreateEntityOnClient {
        is_player,
        client_data,
        ..
    } = m
    else {
        panic!()
    };
    assert!(is_player);
    let d = mp(&client_data);
    assert_eq!(d.map_get("name").and_then(Value::as_str), Some("无名"));
    assert_eq!(d.map_get("level"), Some(&Value::Int(1)));
    assert_eq!(d.map_get("mails"), Some(&Value::Map(vec![])));
    assert_eq!(d.map_get("testListField"), Some(&Value::Array(vec![])));

    assert_eq!(
        to_client("destroy_entity_on_client").2,
        ClientMsg::DestroyEntityOnClient {
            type_name: "__space__".into(),
            eid: id("awVBNWhsgjH2AAAP")
        }
    );
}

#[test]
fn golden_attribute_updates() {
    let (_, _, m) = to_client("notify_map_attr_change_on_client");
    let ClientMsg::NotifyMapAttrChange {
        eid,
        path,
        key,
        val,
    } = m
    else {
        panic!()
    };
    assert_eq!(eid, id("awVBNWhsgjH2AAAN"));
    assert_eq!(
        mp(&path),
        Value::Array(vec![
            Value::Int(0),
            Value::Int(1),
            "key2".into(),
            "key1".into(),
            "complexAttr".into()
        ])
    );
    assert_eq!((key.as_str(), mp(&val)), ("finalkey", "iamhere".into()));

    let list_path = Value::Array(vec!["testListField".into()]);
    let (_, _, m) = to_client("notify_list_attr_change_on_client");
    let ClientMsg::NotifyListAttrChange {
        path, index, val, ..
    } = m
    else {
        panic!()
    };
    assert_eq!(
        (mp(&path), index, mp(&val)),
        (list_path.clone(), 0, Value::Int(1))
    );
    let (_, _, m) = to_client("notify_list_attr_pop_on_client");
    let ClientMsg::NotifyListAttrPop { eid, path } = m else {
        panic!()
    };
    assert_eq!(
        (eid, mp(&path)),
        (id("awVBNWhsgjH2AAAM"), list_path.clone())
    );
    let (_, _, m) = to_client("notify_list_attr_append_on_client");
    let ClientMsg::NotifyListAttrAppend { path, val, .. } = m else {
        panic!()
    };
    assert_eq!((mp(&path), mp(&val)), (list_path, Value::Int(64)));
    let (_, _, m) = to_client("notify_map_attr_clear_on_client");
    let ClientMsg::NotifyMapAttrClear { path, .. } = m else {
        panic!()
    };
    assert_eq!(mp(&path), Value::Array(vec!["complexAttr".into()]));
}

#[test]
fn golden_calls_on_client_and_filters() {
    let (_, _, m) = to_client("call_entity_method_on_client");
    let ClientMsg::CallEntityMethodOnClient {
        method, args: a, ..
    } = m
    else {
        panic!()
    };
    assert_eq!(method, "OnTestListField");
    assert_eq!(args(&a), vec![Value::Array(vec![Value::Int(64)])]);
    let (_, _, m) = to_client("call_entity_method_on_client_str");
    let ClientMsg::CallEntityMethodOnClient { method, .. } = m else {
        panic!()
    };
    assert_eq!(method, "TestCallAllPlzEcho");
    let (_, _, m) = to_client("login_3_on_login");
    assert_eq!(
        m,
        ClientMsg::CallEntityMethodOnClient {
            eid: id("awVBNWhsgjH.AAAG"),
            method: "OnLogin".into(),
            args: vec![vec![0xc3]]
        }
    );
    assert_eq!(
        to_client("set_clientproxy_filter_prop"),
        (
            1,
            id("awVBNWhsgjH.AAAE"),
            ClientMsg::SetClientProxyFilterProp {
                key: "spaceKind".into(),
                val: "91".into()
            }
        )
    );
    assert_eq!(
        to_client("clear_clientproxy_filter_props"),
        (
            1,
            id("awVBMmhsgjH.AAAB"),
            ClientMsg::ClearClientProxyFilterProps
        )
    );
    let ClientBound::Filtered {
        op,
        key,
        val,
        method,
        args: a,
    } = client_bound("call_filtered_clients")
    else {
        panic!()
    };
    assert_eq!((op, key.as_str(), val.as_str()), (FilterOp::Eq, "", ""));
    assert_eq!(method, "OnSay");
    let a = args(&a);
    assert_eq!(a[1], Value::from("无名"));
    assert_eq!(a[3], Value::from("this is a message in world channel"));
}

#[test]
fn golden_login_transcript_frames() {
    let (g, c, m) = to_client("login_1_create_account");
    assert_eq!((g, c), (1, id("awVBNWhsgjH.AAAD")));
    let ClientMsg::CreateEntityOnClient {
        is_player,
        eid,
        type_name,
        client_data,
        ..
    } = m
    else {
        panic!()
    };
    assert!(is_player);
    assert_eq!(
        (eid, type_name.as_str()),
        (id("awVBNWhsgjH.AAAG"), "Account")
    );
    assert_eq!(client_data, [0x80]);
    assert_eq!(
        to_client("login_4_destroy_account").2,
        ClientMsg::DestroyEntityOnClient {
            type_name: "Account".into(),
            eid: id("awVBNWhsgjH.AAAG")
        }
    );
    let (_, _, m) = to_client("login_6_create_space");
    assert!(matches!(
        m,
        ClientMsg::CreateEntityOnClient {
            is_player: false,
            ..
        }
    ));
    let Msg::SyncPositionYawFromClient { records } = decode("login_8_sync_from_client") else {
        panic!()
    };
    assert_eq!(records[0].eid, id("awVBNWhsgjH2AAAN"));
    // The client may send exactly these types, and the golden client frames are among them.
    for n in [
        "login_2_login",
        "login_8_sync_from_client",
        "heartbeat_from_client",
    ] {
        assert!(client_may_send(peek_type(&payload(n)).unwrap()));
    }
    assert_eq!(
        peek::client_header(&payload("login_1_create_account")),
        Some((1, id("awVBNWhsgjH.AAAD")))
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips of messages GoWorld's test_game never produced
// ---------------------------------------------------------------------------------------------

fn round_trip(m: Msg, expect_hex: &str) {
    let p = m.to_payload();
    assert_eq!(p, hexb(expect_hex), "{m:?}");
    assert_eq!(Msg::decode(&p).unwrap(), m);
}

#[test]
fn round_trip_uncaptured_messages() {
    let e = id("awVBNWhsgjH2AAAN");
    let c = id("awVBNWhsgjH.AAAD");
    let eh = "617756424e576873676a48324141414e";
    let ch = "617756424e576873676a482e41414144";
    round_trip(Msg::NotifyGateDisconnected { gate_id: 3 }, "0d000300");
    round_trip(Msg::NotifyGateConnected { gate_id: 3 }, "1a000300");
    round_trip(Msg::MigrateArrived { eid: e }, &format!("1b00{eh}"));
    round_trip(Msg::FreezeCancelled, "1c00");
    round_trip(Msg::StartFreezeGame, "0e00");
    round_trip(Msg::StartFreezeGameAck { disp_id: 2 }, "0f000200");
    round_trip(Msg::CancelMigrate { eid: e }, &format!("1300{eh}"));
    round_trip(Msg::NotifyGameDisconnected { game_id: 7 }, "17000700");
    round_trip(Msg::HeartbeatFromClient, "d107");
    round_trip(
        Msg::ToClient {
            gate_id: 1,
            client_id: c,
            msg: ClientMsg::NotifyMapAttrDel {
                eid: e,
                path: vec![0xc0],
                key: "k".into(),
            },
        },
        &format!("ed030100{ch}{eh}01000000c0010000006b"),
    );
    round_trip(
        Msg::ToClient {
            gate_id: 2,
            client_id: c,
            msg: ClientMsg::ClearClientProxyFilterProps,
        },
        &format!("f3030200{ch}"),
    );
    round_trip(
        Msg::SetGameId {
            game_id: 1,
            is_reconnect: true,
            is_restore: false,
            is_ban_boot_entity: true,
            entities: vec![],
            version: Some(1),
        },
        "01000100010001000000000100",
    );
}

#[test]
fn version_carrying_handshakes() {
    round_trip(
        Msg::SetGameId {
            game_id: 1,
            is_reconnect: false,
            is_restore: false,
            is_ban_boot_entity: false,
            entities: vec![id("AAAAAAAAAAAAAAAx")],
            version: Some(1),
        },
        "010001000000000100000041414141414141414141414141414178 0100",
    );
    round_trip(
        Msg::SetGateId {
            gate_id: 1,
            version: Some(1),
        },
        "020001000100",
    );
    // A GoWorld frame plus a version is the GoWorld frame with two more bytes.
    let mut p = payload("set_gate_id");
    p.extend_from_slice(&crate::INTERNAL_PROTOCOL_VERSION.to_le_bytes());
    assert!(matches!(
        Msg::decode(&p),
        Ok(Msg::SetGateId {
            version: Some(crate::INTERNAL_PROTOCOL_VERSION),
            ..
        })
    ));
}

#[test]
fn round_trip_client_bound_and_ack_with_content() {
    let c = ClientBound::Entity {
        gate_id: 1,
        client_id: id("awVBNWhsgjH.AAAD"),
        msg: ClientMsg::NotifyMapAttrDel {
            eid: id("awVBNWhsgjH2AAAN"),
            path: hexb("91a161"),
            key: "x".into(),
        },
    };
    let mut out = Vec::new();
    c.encode(&mut out);
    assert_eq!(ClientBound::decode(&out).unwrap(), c);
    let ack = |declared_dead| Msg::SetGameIdAck {
        disp_id: 2,
        deployment_ready: true,
        games: vec![1, 2, 3],
        rejected: vec![id("awVBNWhsgjH2AAAN")],
        kvreg: vec![
            ("Service/A#0".into(), "game1".into()),
            ("k".into(), "".into()),
        ],
        declared_dead,
    };
    let (ack, dead) = (ack(false), ack(true));
    assert_eq!(Msg::decode(&ack.to_payload()).unwrap(), ack);
    // goworld-rs's declared_dead is one trailing byte, only when true.
    let (p, q) = (ack.to_payload(), dead.to_payload());
    assert_eq!((q.len(), q[q.len() - 1]), (p.len() + 1, 1));
    assert_eq!(q[..p.len()], p[..]);
    assert_eq!(Msg::decode(&q).unwrap(), dead);
    let sync = ClientBound::Sync(vec![]);
    let mut out = Vec::new();
    sync.encode(&mut out);
    assert_eq!(out, [0xde, 0x05]);
    assert_eq!(ClientBound::decode(&out).unwrap(), sync);
}

#[test]
fn encode_appends_without_touching_existing_bytes() {
    let mut out = vec![9, 9];
    Msg::SetGateId {
        gate_id: 1,
        version: None,
    }
    .encode(&mut out);
    assert_eq!(out, [9, 9, 2, 0, 1, 0]);
}

// ---------------------------------------------------------------------------------------------
// Decode errors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_an_error() {
    for name in [
        "call_entity_method_2args",
        "kvreg_register",
        "create_entity_somewhere",
        "real_migrate",
        "call_nil_spaces",
        "set_game_id_ack_2games",
        "login_5_create_avatar",
        "notify_list_attr_change_on_client",
        "call_filtered_clients",
        "sync_position_yaw_on_clients_game",
        "notify_client_disconnected",
        "migrate_request",
    ] {
        let p = payload(name);
        for n in 0..p.len() {
            let r = Msg::decode(&p[..n]);
            // 1502 with fewer whole records is still a valid 1502.
            if name.starts_with("sync_") && n >= 4 && (n - 4) % 48 == 0 {
                continue;
            }
            let e = r.expect_err(&format!("{name} cut at {n}"));
            if n >= 2 {
                assert_eq!(e.msg_type(), peek_type(&p).unwrap());
            }
            assert!(!e.to_string().is_empty());
        }
    }
    // For client-bound decoding as well.
    let p = payload("login_7_sync_on_client");
    for n in 0..p.len() {
        assert!(
            ClientBound::decode(&p[..n]).is_err() || n == 2,
            "cut at {n}"
        );
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for (name, _) in GOLDEN {
        let mut p = payload(name);
        p.extend_from_slice(&[0, 0, 0]);
        let r = if CLIENT_ONLY.contains(name) {
            ClientBound::decode(&p).map(|_| ())
        } else {
            Msg::decode(&p).map(|_| ())
        };
        assert!(r.is_err(), "{name} with 3 extra bytes");
    }
    let mut p = payload("notify_client_connected_to_game");
    p.push(0);
    let e = Msg::decode(&p).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::Trailing { count: 1 });
    assert_eq!(e.offset(), 36);
    assert_eq!(
        e.to_string(),
        "MT_NOTIFY_CLIENT_CONNECTED(9): 1 trailing bytes at offset 36"
    );
}

#[test]
fn oversized_var_str_length_is_reported_with_type_field_and_offset() {
    let mut p = payload("call_entity_method");
    p[18..22].copy_from_slice(&4_000_000u32.to_le_bytes());
    let e = Msg::decode(&p).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::LengthPastEnd {
            field: "method",
            len: 4_000_000
        }
    );
    assert_eq!(
        e.to_string(),
        "MT_CALL_ENTITY_METHOD(6): method length 4000000 past the end at offset 18"
    );
    // u32::MAX lengths and counts fail without allocating.
    let mut p = payload("game_lbc_info");
    p[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Msg::decode(&p).is_err());
    let mut p = payload("set_game_id_game1");
    p[7..11].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = Msg::decode(&p).unwrap_err();
    assert!(matches!(
        e.kind(),
        DecodeErrorKind::CountPastEnd {
            count: u32::MAX,
            ..
        }
    ));
    let mut p = payload("call_nil_spaces");
    p[25..27].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(
        Msg::decode(&p).unwrap_err().kind(),
        DecodeErrorKind::CountPastEnd { .. }
    ));
}

#[test]
fn bad_utf8_in_strings_is_an_error() {
    let mut p = payload("call_entity_method");
    p[22] = 0xff;
    let e = Msg::decode(&p).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::BadUtf8 { field: "method" });
    assert_eq!(e.offset(), 22);
    let mut p = payload("kvreg_register");
    p[6] = 0xc3;
    assert!(Msg::decode(&p).is_err());
    let mut p = payload("call_filtered_clients");
    p[15] = 0xe6;
    assert!(ClientBound::decode(&p).is_err());
}

#[test]
fn unknown_types_and_wrong_direction_are_errors() {
    for t in [
        0u16, 29, 999, 1000, 1001, 1014, 1499, 1500, 1504, 1999, 2000, 2002, 65535,
    ] {
        let e = Msg::decode(&t.to_le_bytes()).unwrap_err();
        assert_eq!(e.kind(), &DecodeErrorKind::UnknownType, "type {t}");
        assert_eq!(e.msg_type(), t);
    }
    assert_eq!(
        Msg::decode(&[29, 0]).unwrap_err().to_string(),
        "unknown(29): unknown message type"
    );
    assert_eq!(
        Msg::decode(&[1]).unwrap_err().to_string(),
        "payload of 1 bytes has no message type"
    );
    assert!(Msg::decode(&[]).is_err());
    for name in [
        "set_clientproxy_filter_prop",
        "clear_clientproxy_filter_props",
        "call_entity_method_from_client",
        "heartbeat_from_client",
    ] {
        let e = ClientBound::decode(&payload(name)).unwrap_err();
        assert_eq!(e.kind(), &DecodeErrorKind::NotClientBound, "{name}");
    }
    assert_eq!(
        ClientBound::decode(&[0x39, 0x30]).unwrap_err().kind(),
        &DecodeErrorKind::UnknownType
    );
}

#[test]
fn bad_filter_op_and_record_lengths_are_errors() {
    let mut p = payload("call_filtered_clients");
    p[2] = 6;
    let e = Msg::decode(&p).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::BadFilterOp(6));
    assert!(ClientBound::decode(&p).is_err());
    for op in 0..=5u8 {
        assert_eq!(FilterOp::from_u8(op).map(|o| o as u8), Some(op));
    }
    // 12 needs at least one whole 32-byte record.
    assert!(Msg::decode(&[12, 0]).is_err());
    let p = payload("sync_position_yaw_from_client");
    let e = Msg::decode(&p[..33]).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::BadRecords {
            len: 31,
            record: 32
        }
    );
    // 1502 on a server link: gateid then 48-byte entries.
    let p = payload("sync_position_yaw_on_clients_game");
    assert!(Msg::decode(&p[..p.len() - 1]).is_err());
    assert!(
        ClientBound::decode(&p).is_err(),
        "client form has no gateid"
    );
    // Nonzero bools read as true.
    let mut p = payload("login_1_create_account");
    p[20] = 7;
    assert!(matches!(
        Msg::decode(&p),
        Ok(Msg::ToClient {
            msg: ClientMsg::CreateEntityOnClient {
                is_player: true,
                ..
            },
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Routing and names
// ---------------------------------------------------------------------------------------------

#[test]
fn route_boundaries() {
    let cases = [
        (0, Route::Unknown),
        (1, Route::Internal),
        (25, Route::Internal),
        (28, Route::Internal),
        (29, Route::Unknown),
        (999, Route::Unknown),
        (1000, Route::GateService),
        (1001, Route::ToClient),
        (1499, Route::ToClient),
        (1500, Route::GateService),
        (1501, Route::FilteredClients),
        (1502, Route::SyncOnClients),
        (1503, Route::GateService),
        (1999, Route::GateService),
        (2000, Route::Unknown),
        (2001, Route::Heartbeat),
        (65535, Route::Unknown),
    ];
    for (t, r) in cases {
        assert_eq!(route(t), r, "route({t})");
    }
}

#[test]
fn names_follow_goworld() {
    assert_eq!(msg_name(1), "MT_SET_GAME_ID");
    assert_eq!(msg_name(6), "MT_CALL_ENTITY_METHOD");
    assert_eq!(msg_name(1012), "MT_NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT");
    assert_eq!(msg_name(2001), "MT_HEARTBEAT_FROM_CLIENT");
    assert_eq!(msg_name(26), "MT_NOTIFY_GATE_CONNECTED");
    assert_eq!(msg_name(27), "MT_MIGRATE_ARRIVED");
    assert_eq!(msg_name(28), "MT_FREEZE_CANCELLED");
    assert_eq!(msg_name(29), "unknown");
    // Every type the decoder accepts has a name.
    for t in 0..=u16::MAX {
        let ok = Msg::decode(&t.to_le_bytes()).map_err(|e| e.kind().clone());
        if !matches!(ok, Err(DecodeErrorKind::UnknownType)) {
            assert_ne!(msg_name(t), "unknown", "type {t}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// docs/PROTOCOL.md and GOLDEN cannot drift
// ---------------------------------------------------------------------------------------------

const PROTOCOL_MD: &str = include_str!("../../../docs/PROTOCOL.md");

/// `(name, hex)` of every fenced block whose info string is `hex golden <name>`.
fn doc_golden_blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex golden ") else {
            continue;
        };
        let mut hex = String::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            hex.push_str(l.trim());
        }
        out.push((name.trim().to_owned(), hex));
    }
    out
}

#[test]
fn protocol_md_golden_dumps_match_golden_table() {
    let blocks = doc_golden_blocks(PROTOCOL_MD);
    assert!(blocks.len() >= 30, "only {} golden blocks", blocks.len());
    for (name, hex) in &blocks {
        let code = golden::hex(name).unwrap_or_else(|| panic!("doc block {name} not in GOLDEN"));
        assert_eq!(
            golden::hex_decode(hex),
            golden::hex_decode(code),
            "doc block {name} differs from GOLDEN"
        );
    }
    for (name, _) in GOLDEN {
        assert!(
            blocks.iter().any(|(n, _)| n == name),
            "GOLDEN {name} is not shown in docs/PROTOCOL.md"
        );
    }
}

#[test]
fn kick_client_round_trips_and_never_reaches_a_client() {
    let m = Msg::ToClient {
        gate_id: 3,
        client_id: EntityId::parse("awVBNWhsgjH.AAAD").unwrap(),
        msg: ClientMsg::KickClient {
            reason: "bye".into(),
        },
    };
    let p = m.to_payload();
    assert_eq!(&p[..2], &mt::KICK_CLIENT.to_le_bytes());
    assert_eq!(&p[20..], &[3, 0, 0, 0, b'b', b'y', b'e']);
    assert_eq!(Msg::decode(&p).unwrap(), m);
    assert_eq!(
        ClientBound::decode(&p).unwrap_err().kind(),
        &DecodeErrorKind::NotClientBound
    );
}

#[test]
fn client_owners_gone_round_trips_with_its_layout() {
    let a = EntityId::parse("aaaaaaaaaaaaaa01").unwrap();
    let b = EntityId::parse("bbbbbbbbbbbbbb01").unwrap();
    let m = Msg::ClientOwnersGone {
        game_id: 7,
        owners: vec![a, b],
    };
    let p = m.to_payload();
    let mut want = mt::CLIENT_OWNERS_GONE.to_le_bytes().to_vec();
    want.extend_from_slice(&7u16.to_le_bytes());
    want.extend_from_slice(&2u32.to_le_bytes());
    want.extend_from_slice(a.as_bytes());
    want.extend_from_slice(b.as_bytes());
    assert_eq!(p, want);
    assert_eq!(Msg::decode(&p).unwrap(), m);
    assert_eq!(route(mt::CLIENT_OWNERS_GONE), Route::GateService);
    // A count past the end is an error, not a huge allocation.
    let mut bad = p.clone();
    bad[4..8].copy_from_slice(&1_000_000u32.to_le_bytes());
    assert!(Msg::decode(&bad).is_err());
}

/// A 1502 a game builds record by record is the message the codec encodes.
#[test]
fn sync_on_clients_built_record_by_record_is_the_encoded_message() {
    let rec = |n: u8| {
        (
            EntityId([b'c' + n; 16]),
            SyncRecord {
                eid: EntityId([b'e' + n; 16]),
                x: 1.5 + f32::from(n),
                y: -2.0,
                z: 3.25,
                yaw: 0.5,
            },
        )
    };
    let records = vec![rec(0), rec(1), rec(2)];
    let mut built = vec![0xff; 3];
    super::start_sync_on_clients(&mut built, 7);
    for (c, r) in &records {
        super::push_sync_on_clients(&mut built, c, r);
    }
    let msg = Msg::SyncPositionYawOnClients {
        gate_id: 7,
        records,
    };
    assert_eq!(built, msg.to_payload());
    assert_eq!(Msg::decode(&built).unwrap(), msg);
}
