//! In-memory tests of the gate: what clients may send, forwarding, filters, position sync.

use super::*;
use goworld_common::proto::ClientBound;
use goworld_common::proto::FilterOp;
use goworld_common::testio::MemIo;
use std::collections::BTreeMap;

fn conn(slot: u32) -> ConnId {
    ConnId { slot, gen: 1 }
}

fn addr() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

const DISP: ConnId = ConnId { slot: 100, gen: 1 };

struct T {
    g: GateService,
    io: MemIo,
    now: Instant,
}

impl T {
    fn new() -> T {
        T::with_limits(ClientLimits::default())
    }
    fn with_limits(limits: ClientLimits) -> T {
        let now = Instant::now();
        let s = Settings {
            gate_id: 1,
            desired_dispatchers: 1,
            position_sync_interval: Duration::from_millis(100),
            clock: WallClock {
                at: now,
                unix_secs: 1_700_000_000,
            },
            limits,
        };
        T {
            g: GateService::new(s, IdGen::new([7, 7, 7], 1)),
            io: MemIo::new(),
            now,
        }
    }
    fn dispatcher_up(&mut self) {
        self.g.on_open(
            &mut self.io,
            self.now,
            DISP,
            Origin::Dialed { dial: 1 },
            addr(),
        );
    }
    fn client(&mut self, c: ConnId) -> (ClientId, EntityId) {
        self.g.on_open(
            &mut self.io,
            self.now,
            c,
            Origin::Accepted {
                listener: CLIENT_LISTENER,
            },
            addr(),
        );
        let sent = self.io.take();
        let Msg::NotifyClientConnected {
            client_id,
            boot_eid,
            gate_id: None,
        } = Msg::decode(&sent.last().unwrap().1).unwrap()
        else {
            panic!("no connect notice")
        };
        (client_id, boot_eid)
    }
}

#[test]
fn handshake_then_client_connect_notice() {
    let mut t = T::new();
    t.g.on_open(
        &mut t.io,
        t.now,
        conn(1),
        Origin::Accepted {
            listener: CLIENT_LISTENER,
        },
        addr(),
    );
    assert!(t.io.sent.is_empty(), "notices wait until the gate is ready");
    t.dispatcher_up();
    let sent: Vec<Msg> =
        t.io.take()
            .into_iter()
            .map(|(_, p)| Msg::decode(&p).unwrap())
            .collect();
    assert_eq!(
        sent[0],
        Msg::SetGateId {
            gate_id: 1,
            version: Some(INTERNAL_PROTOCOL_VERSION)
        }
    );
    assert!(matches!(sent[1], Msg::NotifyClientConnected { .. }));
    assert_eq!(t.g.take_events(), vec![GateEvent::Ready]);
}

#[test]
fn client_calls_get_the_client_id_appended() {
    let mut t = T::new();
    t.dispatcher_up();
    t.io.take();
    let (cid, boot) = t.client(conn(1));
    let call = Msg::CallEntityMethodFromClient {
        eid: boot,
        method: "Login".into(),
        args: vec![vec![0xa1, b'x']],
        client_id: None,
    };
    t.g.on_frame(&mut t.io, t.now, conn(1), &call.to_payload());
    let sent = t.io.take();
    assert_eq!(sent[0].0, DISP);
    let Msg::CallEntityMethodFromClient { client_id, .. } = Msg::decode(&sent[0].1).unwrap() else {
        panic!()
    };
    assert_eq!(client_id, Some(cid));
}

#[test]
fn forbidden_or_malformed_client_input_closes_only_that_client() {
    for bad in [
        Msg::NotifyDeploymentReady.to_payload(), // a server message
        vec![0xd1],                              // shorter than a type
        vec![mt::CALL_ENTITY_METHOD_FROM_CLIENT as u8, 0, 1, 2, 3], // truncated call
        vec![mt::SYNC_POSITION_YAW_FROM_CLIENT as u8, 0, 1], // short position record
        {
            // A call carrying a forged client ID.
            let m = Msg::CallEntityMethodFromClient {
                eid: EntityId::NONE,
                method: "A".into(),
                args: vec![],
                client_id: Some(EntityId::NONE),
            };
            m.to_payload()
        },
    ] {
        let mut t = T::new();
        t.dispatcher_up();
        t.client(conn(1));
        t.client(conn(2));
        t.g.on_frame(&mut t.io, t.now, conn(1), &bad);
        assert_eq!(
            t.io.closed.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            vec![conn(1)],
            "input {bad:02x?}"
        );
        t.g.on_frame(
            &mut t.io,
            t.now,
            conn(2),
            &mt::HEARTBEAT_FROM_CLIENT.to_le_bytes(),
        );
        assert_eq!(t.io.closed.len(), 1);
    }
}

#[test]
fn server_messages_reach_the_client_verbatim_and_player_creation_changes_the_owner() {
    let mut t = T::new();
    t.dispatcher_up();
    let (cid, _) = t.client(conn(1));
    let avatar = EntityId::parse("avataravataravat").unwrap();
    let create = Msg::ToClient {
        gate_id: 1,
        client_id: cid,
        msg: ClientMsg::CreateEntityOnClient {
            is_player: true,
            eid: avatar,
            type_name: "Avatar".into(),
            x: 1.0,
            y: 2.0,
            z: 3.0,
            yaw: 0.0,
            client_data: vec![0x80],
        },
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &create);
    assert_eq!(t.io.sent_to(conn(1)), vec![create.as_slice()]);
    t.io.take();
    t.g.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    let sent = t.io.take();
    assert_eq!(
        Msg::decode(&sent[0].1).unwrap(),
        Msg::NotifyClientDisconnected {
            owner_eid: avatar,
            client_id: cid
        }
    );
}

#[test]
fn filtered_calls_reach_matching_clients_once() {
    let mut t = T::new();
    t.dispatcher_up();
    let (c1, _) = t.client(conn(1));
    let (c2, _) = t.client(conn(2));
    for (cid, v) in [(c1, "10"), (c2, "20")] {
        let p = Msg::ToClient {
            gate_id: 1,
            client_id: cid,
            msg: ClientMsg::SetClientProxyFilterProp {
                key: "level".into(),
                val: v.into(),
            },
        }
        .to_payload();
        t.g.on_frame(&mut t.io, t.now, DISP, &p);
    }
    assert!(
        t.io.sent.is_empty(),
        "filter props are consumed by the gate"
    );
    let call = |op, key: &str| {
        Msg::CallFilteredClients {
            op,
            key: key.into(),
            val: "15".into(),
            method: "M".into(),
            args: vec![],
        }
        .to_payload()
    };
    t.g.on_frame(&mut t.io, t.now, DISP, &call(FilterOp::Gt, "level"));
    assert_eq!(
        t.io.take().iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![conn(2)]
    );
    t.g.on_frame(&mut t.io, t.now, DISP, &call(FilterOp::Lte, "level"));
    assert_eq!(
        t.io.take().iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![conn(1)]
    );
    let mut all: Vec<ConnId> = {
        t.g.on_frame(&mut t.io, t.now, DISP, &call(FilterOp::Eq, ""));
        t.io.take().iter().map(|(c, _)| *c).collect()
    };
    all.sort();
    assert_eq!(all, vec![conn(1), conn(2)]);
    // Clearing leaves no stale property behind.
    let clear = Msg::ToClient {
        gate_id: 1,
        client_id: c2,
        msg: ClientMsg::ClearClientProxyFilterProps,
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &clear);
    t.g.on_frame(&mut t.io, t.now, DISP, &call(FilterOp::Gt, "level"));
    assert!(t.io.take().is_empty());
}

#[test]
fn position_syncs_are_batched_and_regrouped() {
    let mut t = T::new();
    t.dispatcher_up();
    let (c1, e1) = t.client(conn(1));
    let (c2, _) = t.client(conn(2));
    let rec = |e, x| proto::SyncRecord {
        eid: e,
        x,
        y: 0.0,
        z: 0.0,
        yaw: 0.0,
    };
    let up = Msg::SyncPositionYawFromClient {
        records: vec![rec(e1, 1.0)],
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, conn(1), &up);
    t.g.on_frame(&mut t.io, t.now, conn(1), &up);
    assert!(t.io.sent.is_empty());
    assert_eq!(
        t.g.next_deadline(),
        Some(t.now + Duration::from_millis(100))
    );
    t.g.on_tick(
        &mut t.io,
        t.now + Duration::from_millis(100),
        SystemTime::UNIX_EPOCH,
    );
    let sent = t.io.take();
    assert_eq!(
        Msg::decode(&sent[0].1).unwrap(),
        Msg::SyncPositionYawFromClient {
            records: vec![rec(e1, 1.0), rec(e1, 1.0)]
        }
    );
    let other = EntityId::parse("otherotherother1").unwrap();
    let down = Msg::SyncPositionYawOnClients {
        gate_id: 1,
        records: vec![
            (c2, rec(other, 5.0)),
            (c1, rec(other, 6.0)),
            (c2, rec(other, 7.0)),
        ],
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &down);
    let mut sent = t.io.take();
    sent.sort_by_key(|(c, _)| *c);
    assert_eq!(
        ClientBound::decode(&sent[0].1).unwrap(),
        ClientBound::Sync(vec![rec(other, 6.0)])
    );
    assert_eq!(
        ClientBound::decode(&sent[1].1).unwrap(),
        ClientBound::Sync(vec![rec(other, 5.0), rec(other, 7.0)])
    );
}

fn sync_rec(e: EntityId, x: f32) -> proto::SyncRecord {
    proto::SyncRecord {
        eid: e,
        x,
        y: 2.0,
        z: 3.0,
        yaw: 0.5,
    }
}

fn sync_up(e: EntityId, x: f32) -> Vec<u8> {
    Msg::SyncPositionYawFromClient {
        records: vec![sync_rec(e, x)],
    }
    .to_payload()
}

/// The raw gate→dispatcher 12: the type, then the records back to back.
fn sync_batch(records: &[proto::SyncRecord]) -> Vec<u8> {
    let mut p = mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes().to_vec();
    for r in records {
        p.extend_from_slice(&sync_up(r.eid, r.x)[2..]);
    }
    p
}

/// A 1002 from the game for client `cid`.
fn create_on_client(t: &mut T, cid: ClientId, eid: EntityId, is_player: bool) {
    let p = Msg::ToClient {
        gate_id: 1,
        client_id: cid,
        msg: ClientMsg::CreateEntityOnClient {
            is_player,
            eid,
            type_name: "Avatar".into(),
            x: 0.0,
            y: 0.0,
            z: 0.0,
            yaw: 0.0,
            client_data: vec![0x80],
        },
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &p);
}

/// Ticks at `ms` after the start and returns what went to the dispatcher.
fn tick_at(t: &mut T, ms: u64) -> Vec<Vec<u8>> {
    t.g.on_tick(
        &mut t.io,
        t.now + Duration::from_millis(ms),
        SystemTime::UNIX_EPOCH,
    );
    let (disp, rest): (Vec<_>, Vec<_>) = t.io.take().into_iter().partition(|(c, _)| *c == DISP);
    t.io.sent = rest;
    disp.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn a_clients_sync_of_its_owner_is_forwarded_in_the_batch_at_the_interval() {
    let mut t = T::new();
    t.dispatcher_up();
    let (_, e1) = t.client(conn(1));
    let (_, e2) = t.client(conn(2));
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(e1, 1.0));
    t.g.on_frame(&mut t.io, t.now, conn(2), &sync_up(e2, 2.0));
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(e1, 3.0));
    assert!(tick_at(&mut t, 99).is_empty(), "held until the interval");
    assert_eq!(
        tick_at(&mut t, 100),
        vec![sync_batch(&[
            sync_rec(e1, 1.0),
            sync_rec(e2, 2.0),
            sync_rec(e1, 3.0)
        ])],
        "one packet for the dispatcher, records in arrival order"
    );
    assert!(tick_at(&mut t, 200).is_empty(), "nothing pending");
    assert_eq!(t.g.sync_dropped_not_owner(), 0);
}

#[test]
fn a_sync_for_an_entity_the_client_does_not_own_is_dropped_and_counted() {
    let mut t = T::new();
    t.dispatcher_up();
    let (_, e1) = t.client(conn(1));
    let (_, e2) = t.client(conn(2));
    let stranger = EntityId::parse("strangerstranger").unwrap();
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(e2, 9.0)); // another client's owner
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(e1, 1.0));
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(stranger, 9.0));
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(stranger, 9.5));
    assert_eq!(t.g.sync_dropped_not_owner(), 3);
    assert!(t.io.closed.is_empty(), "the client stays connected");
    assert_eq!(tick_at(&mut t, 100), vec![sync_batch(&[sync_rec(e1, 1.0)])]);
    // Only foreign syncs: nothing is pending, nothing is sent, no flush is scheduled.
    t.g.on_frame(&mut t.io, t.now, conn(2), &sync_up(e1, 9.0));
    assert_eq!(t.g.sync_dropped_not_owner(), 4);
    assert_eq!(t.g.next_deadline(), None);
    assert!(tick_at(&mut t, 300).is_empty());
}

#[test]
fn after_an_owner_change_the_new_player_is_synced_and_the_old_one_is_not() {
    let mut t = T::new();
    t.dispatcher_up();
    let (cid, boot) = t.client(conn(1));
    let avatar = EntityId::parse("avataravataravat").unwrap();
    let monster = EntityId::parse("monstermonsterm1").unwrap();
    // A non-player entity shown to the client does not become its owner.
    create_on_client(&mut t, cid, monster, false);
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(monster, 5.0));
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(boot, 1.0));
    assert_eq!(t.g.sync_dropped_not_owner(), 1);
    assert_eq!(
        tick_at(&mut t, 100),
        vec![sync_batch(&[sync_rec(boot, 1.0)])]
    );
    create_on_client(&mut t, cid, avatar, true);
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(boot, 6.0)); // raced the change
    t.g.on_frame(&mut t.io, t.now, conn(1), &sync_up(avatar, 7.0));
    assert_eq!(t.g.sync_dropped_not_owner(), 2);
    assert!(t.io.closed.is_empty());
    assert_eq!(
        tick_at(&mut t, 200),
        vec![sync_batch(&[sync_rec(avatar, 7.0)])]
    );
}

#[test]
fn a_game_can_have_a_client_closed() {
    let mut t = T::new();
    t.dispatcher_up();
    let (c1, _) = t.client(conn(1));
    t.client(conn(2));
    let kick = Msg::ToClient {
        gate_id: 1,
        client_id: c1,
        msg: ClientMsg::KickClient {
            reason: "20 calls it may not make".into(),
        },
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &kick);
    assert!(
        t.io.sent.is_empty(),
        "the kick is not forwarded to the client"
    );
    assert_eq!(
        t.io.closed.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![conn(1)]
    );
}

#[test]
fn clients_whose_player_lived_on_a_dead_game_are_closed() {
    let mut t = T::new();
    t.dispatcher_up();
    let (c1, boot1) = t.client(conn(1));
    let (c2, _) = t.client(conn(2));
    let (_, boot3) = t.client(conn(3));
    // Client 2's player moved on to an Avatar that lives elsewhere.
    let avatar = EntityId::parse("avataravatarav02").unwrap();
    create_on_client(&mut t, c2, avatar, true);
    t.io.take();
    let _ = c1;
    let gone = Msg::ClientOwnersGone {
        game_id: 3,
        owners: vec![boot1, boot3],
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &gone);
    let mut closed: Vec<ConnId> = t.io.closed.iter().map(|(c, _)| *c).collect();
    closed.sort_by_key(|c| c.slot);
    assert_eq!(closed, vec![conn(1), conn(3)]);
    assert!(t.io.sent.is_empty(), "nothing is forwarded to clients");
}

fn set_prop(t: &mut T, cid: ClientId, key: &str, val: &str) {
    let p = Msg::ToClient {
        gate_id: 1,
        client_id: cid,
        msg: ClientMsg::SetClientProxyFilterProp {
            key: key.into(),
            val: val.into(),
        },
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &p);
}

fn clear_props(t: &mut T, cid: ClientId) {
    let p = Msg::ToClient {
        gate_id: 1,
        client_id: cid,
        msg: ClientMsg::ClearClientProxyFilterProps,
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &p);
}

/// Sends a 1501 and returns who got it (sorted), checking each got the payload verbatim once.
fn filtered_call(t: &mut T, op: FilterOp, key: &str, val: &str) -> Vec<ConnId> {
    let call = Msg::CallFilteredClients {
        op,
        key: key.into(),
        val: val.into(),
        method: "Notify".into(),
        args: vec![vec![0xa2, b'h', b'i']],
    }
    .to_payload();
    t.g.on_frame(&mut t.io, t.now, DISP, &call);
    let sent = t.io.take();
    assert!(sent.iter().all(|(_, p)| *p == call), "forwarded verbatim");
    let mut to: Vec<ConnId> = sent.into_iter().map(|(c, _)| c).collect();
    to.sort();
    let n = to.len();
    to.dedup();
    assert_eq!(n, to.len(), "{op:?} {key:?} {val:?} delivered twice");
    to
}

const ALL_OPS: [FilterOp; 6] = [
    FilterOp::Eq,
    FilterOp::Ne,
    FilterOp::Gt,
    FilterOp::Lt,
    FilterOp::Gte,
    FilterOp::Lte,
];

#[test]
fn filtered_calls_match_a_brute_force_reference_on_random_props() {
    use goworld_common::rng::Rng;
    const KEYS: [&str; 3] = ["", "level", "team"];
    const VALUES: [&str; 7] = ["", "1", "10", "9", "a", "ab", "b"];
    let mut rng = Rng::new(0x6001);
    let mut t = T::new();
    t.dispatcher_up();
    t.io.take();
    // The model: connection → (client ID, props); None once closed.
    let mut model: Vec<Option<(ClientId, BTreeMap<String, String>)>> = Vec::new();
    for step in 0..400 {
        let live: Vec<usize> = (0..model.len()).filter(|&i| model[i].is_some()).collect();
        match rng.below(16) {
            0..=1 => {
                let i = model.len();
                let (cid, _) = t.client(conn(i as u32 + 1));
                model.push(Some((cid, BTreeMap::new())));
            }
            2 if !live.is_empty() => {
                let i = live[rng.below(live.len() as u64) as usize];
                t.g.on_close(
                    &mut t.io,
                    t.now,
                    conn(i as u32 + 1),
                    &CloseReason::PeerClosed,
                );
                t.io.take();
                model[i] = None;
            }
            3 if !live.is_empty() => {
                let i = live[rng.below(live.len() as u64) as usize];
                let (cid, props) = model[i].as_mut().unwrap();
                clear_props(&mut t, *cid);
                props.clear();
            }
            _ if !live.is_empty() => {
                let i = live[rng.below(live.len() as u64) as usize];
                let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                let v = VALUES[rng.below(VALUES.len() as u64) as usize];
                let (cid, props) = model[i].as_mut().unwrap();
                set_prop(&mut t, *cid, k, v);
                props.insert(k.into(), v.into());
            }
            _ => {}
        }
        assert!(
            t.io.sent.is_empty(),
            "filter props are consumed by the gate"
        );
        let op = ALL_OPS[rng.below(6) as usize];
        let k = KEYS[rng.below(KEYS.len() as u64) as usize];
        let v = VALUES[rng.below(VALUES.len() as u64) as usize];
        let want: Vec<ConnId> = model
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let (_, props) = m.as_ref()?;
                let hit = k.is_empty() || props.get(k).is_some_and(|h| filter_matches(op, h, v));
                hit.then_some(conn(i as u32 + 1))
            })
            .collect();
        assert_eq!(filtered_call(&mut t, op, k, v), want, "step {step}");
    }
}

#[test]
fn filtered_calls_skip_closed_and_cleared_clients_and_never_repeat() {
    let mut t = T::new();
    t.dispatcher_up();
    let (c1, _) = t.client(conn(1));
    let (c2, _) = t.client(conn(2));
    let (c3, _) = t.client(conn(3));
    t.io.take();
    // Replacing a value many times leaves one entry per client and key.
    for v in ["1", "5", "3", "5"] {
        set_prop(&mut t, c1, "level", v);
    }
    set_prop(&mut t, c1, "team", "red");
    set_prop(&mut t, c2, "level", "5");
    set_prop(&mut t, c3, "level", "2");
    for op in ALL_OPS {
        filtered_call(&mut t, op, "level", "5"); // asserts no duplicates
    }
    assert_eq!(
        filtered_call(&mut t, FilterOp::Eq, "level", "5"),
        vec![conn(1), conn(2)]
    );
    assert!(filtered_call(&mut t, FilterOp::Eq, "level", "1").is_empty());
    // NE considers only clients that have the key, as GoWorld does.
    assert_eq!(
        filtered_call(&mut t, FilterOp::Ne, "team", "blue"),
        vec![conn(1)]
    );
    // Clearing c1 leaves nothing stale (GoWorld kept cp.filterProps around).
    clear_props(&mut t, c1);
    for op in ALL_OPS {
        for v in ["", "5", "zz"] {
            assert!(!filtered_call(&mut t, op, "level", v).contains(&conn(1)));
            assert!(!filtered_call(&mut t, op, "team", v).contains(&conn(1)));
        }
    }
    // A closed client is never reached again, not even by the empty key.
    t.g.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    t.io.take();
    for op in ALL_OPS {
        for v in ["", "5", "zz"] {
            assert!(!filtered_call(&mut t, op, "level", v).contains(&conn(2)));
        }
        assert_eq!(
            filtered_call(&mut t, op, "", "x"),
            vec![conn(1), conn(3)],
            "empty key: every client still here, with or without props"
        );
    }
    // A message for the departed client changes nothing.
    set_prop(&mut t, c2, "level", "5");
    assert!(filtered_call(&mut t, FilterOp::Eq, "level", "5").is_empty());
}

// ---------------------------------------------------------------------------------------
// Heartbeats and flood limits.

const HEARTBEAT: [u8; 2] = mt::HEARTBEAT_FROM_CLIENT.to_le_bytes();

fn limits(heartbeat_s: u64, msgs_per_sec: u32, bytes_per_sec: u32) -> ClientLimits {
    ClientLimits {
        heartbeat: (heartbeat_s > 0).then(|| Duration::from_secs(heartbeat_s)),
        msgs_per_sec,
        bytes_per_sec,
    }
}

/// A gate with `l`, its dispatcher up.
fn gate_with(l: ClientLimits) -> T {
    let mut t = T::with_limits(l);
    t.dispatcher_up();
    t.io.take();
    t
}

/// Advances the clock to `to` as the reactor would: a tick at every deadline the gate asks
/// for on the way, then one at `to`. Returns how many deadline ticks there were.
fn run_to(t: &mut T, to: Instant) -> usize {
    let mut woken = 0;
    while let Some(d) = t.g.next_deadline().filter(|d| *d <= to) {
        assert!(d >= t.now, "a deadline in the past");
        t.now = d;
        t.g.on_tick(&mut t.io, d, SystemTime::UNIX_EPOCH);
        woken += 1;
    }
    t.now = to;
    t.g.on_tick(&mut t.io, to, SystemTime::UNIX_EPOCH);
    woken
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn closed(t: &T) -> Vec<ConnId> {
    t.io.closed.iter().map(|(c, _)| *c).collect()
}

/// A client call to `eid` whose payload is exactly `len` bytes (one bin16 argument).
fn call_of_len(eid: EntityId, len: usize) -> Vec<u8> {
    let call = |arg: Vec<u8>| {
        Msg::CallEntityMethodFromClient {
            eid,
            method: "M".into(),
            args: vec![arg],
            client_id: None,
        }
        .to_payload()
    };
    let pad = len - call(vec![0xc5, 0, 0]).len();
    let mut arg = vec![0xc5];
    arg.extend_from_slice(&(pad as u16).to_be_bytes());
    arg.resize(3 + pad, 0);
    let p = call(arg);
    assert_eq!(p.len(), len);
    p
}

#[test]
fn a_silent_client_is_closed_after_the_heartbeat_interval_and_not_before() {
    let mut t = gate_with(limits(30, 0, 0));
    let start = t.now;
    let (cid, boot) = t.client(conn(1));
    run_to(&mut t, start + secs(29.9));
    assert!(t.io.closed.is_empty(), "not before 30 s of silence");
    // Closed at the first check at or after 30 s, at most CHECK_GAP late.
    run_to(&mut t, start + secs(30.0) + limits::CHECK_GAP);
    assert_eq!(closed(&t), vec![conn(1)]);
    let reason = t.io.closed[0].1.clone();
    assert!(
        reason.starts_with("no message for 30.")
            && reason.contains("heartbeat_check_interval = 30 s"),
        "{reason}"
    );
    assert_eq!(t.g.closed_by_limits().heartbeat, 1);
    // The reactor reports the close; the owner hears of it and the gate goes idle.
    t.g.on_close(
        &mut t.io,
        t.now,
        conn(1),
        &CloseReason::Local(reason.clone()),
    );
    let sent = t.io.take();
    assert_eq!(
        Msg::decode(&sent[0].1).unwrap(),
        Msg::NotifyClientDisconnected {
            owner_eid: boot,
            client_id: cid
        }
    );
    assert_eq!(
        t.g.next_deadline(),
        None,
        "no clients: nothing to wake up for"
    );
    assert_eq!(
        t.g.closed_by_limits(),
        ClosedByLimits {
            heartbeat: 1,
            ..Default::default()
        }
    );
}

#[test]
fn clients_that_keep_sending_any_frame_type_stay() {
    let mut t = gate_with(limits(2, 200, 256 * 1024));
    let start = t.now;
    let (_, e1) = t.client(conn(1)); // heartbeats every 1.9 s
    let (_, e2) = t.client(conn(2)); // position syncs of its owner every 100 ms
    let (_, e3) = t.client(conn(3)); // calls every 1.5 s
    t.client(conn(4)); // position syncs of another entity (dropped) every 1.9 s
    t.client(conn(5)); // silent: closed, so the check is really on
    for step in 1..=600u32 {
        let at = start + Duration::from_millis(100) * step;
        run_to(&mut t, at);
        if step % 19 == 0 {
            t.g.on_frame(&mut t.io, at, conn(1), &HEARTBEAT);
            t.g.on_frame(&mut t.io, at, conn(4), &sync_up(e1, 1.0));
        }
        t.g.on_frame(&mut t.io, at, conn(2), &sync_up(e2, 1.0));
        if step % 15 == 0 {
            let call = call_of_len(e3, 40);
            t.g.on_frame(&mut t.io, at, conn(3), &call);
        }
    }
    assert_eq!(closed(&t), vec![conn(5)], "{:?}", t.io.closed);
    assert_eq!(t.g.closed_by_limits().heartbeat, 1);
}

#[test]
fn the_heartbeat_check_wakes_the_gate_at_most_once_a_second() {
    // 50 clients, each heartbeating once a second at its own phase (20 ms apart): each one's
    // check comes due at another time, but they are looked at together.
    let mut t = gate_with(limits(2, 200, 256 * 1024));
    let start = t.now;
    for i in 0..50u32 {
        t.now = start + Duration::from_millis(20) * i;
        t.client(conn(i + 1));
    }
    let mut woken = 0;
    for step in 50..3050u32 {
        let at = start + Duration::from_millis(20) * step;
        woken += run_to(&mut t, at);
        t.g.on_frame(&mut t.io, at, conn(step % 50 + 1), &HEARTBEAT);
    }
    assert!(t.io.closed.is_empty(), "{:?}", t.io.closed);
    assert!((50..=61).contains(&woken), "woken {woken} times in 60 s");
}

#[test]
fn the_heartbeat_check_is_off_with_0() {
    let mut t = gate_with(limits(0, 200, 256 * 1024));
    let start = t.now;
    t.client(conn(1));
    assert_eq!(t.g.next_deadline(), None, "nothing to wake up for");
    run_to(&mut t, start + Duration::from_secs(3600));
    assert!(t.io.closed.is_empty());
    assert_eq!(t.g.closed_by_limits(), ClosedByLimits::default());
}

#[test]
fn an_idle_gate_with_the_heartbeat_check_on_does_not_wake_up() {
    let mut t = gate_with(limits(5, 200, 256 * 1024));
    assert_eq!(t.g.next_deadline(), None);
    t.client(conn(1));
    assert_eq!(t.g.next_deadline(), Some(t.now + Duration::from_secs(5)));
    t.g.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    assert_eq!(t.g.next_deadline(), None);
}

#[test]
fn a_client_past_the_message_rate_is_closed_and_one_under_it_is_not() {
    let mut t = gate_with(limits(0, 200, 0));
    let start = t.now;
    t.client(conn(1)); // 190 messages/s for 10 s, after a burst of 200 at once
    t.client(conn(2)); // 250 messages/s
    for _ in 0..200 {
        t.g.on_frame(&mut t.io, start, conn(1), &HEARTBEAT);
    }
    let mut closed_at = None;
    for i in 1..=2500u32 {
        let at = start + Duration::from_micros(4000) * i;
        if closed_at.is_none() && !t.io.closed.is_empty() {
            closed_at = Some(at - start);
        }
        t.g.on_frame(&mut t.io, at, conn(2), &HEARTBEAT);
    }
    for i in 1..=1900u32 {
        let at = start + Duration::from_secs(1) + Duration::from_micros(5264) * i;
        t.g.on_frame(&mut t.io, at, conn(1), &HEARTBEAT);
    }
    assert_eq!(closed(&t), vec![conn(2)], "{:?}", t.io.closed);
    // The bucket holds 200 and drains at 50/s net: empty after about 4 s. The rate is
    // measured from the first message (at 4 ms) to the one that overdrew it.
    let closed_at = closed_at.unwrap();
    assert!(
        closed_at > secs(3.9) && closed_at < secs(4.1),
        "{closed_at:?}"
    );
    assert_eq!(
        t.io.closed[0].1,
        "sent 997 messages in 3.984 s (250/s), over client_msg_rate_limit = 200 messages/s (burst 200)"
    );
    assert_eq!(
        t.g.closed_by_limits(),
        ClosedByLimits {
            msg_rate: 1,
            ..Default::default()
        }
    );
}

#[test]
fn a_burst_past_one_seconds_worth_closes_before_the_frame_is_forwarded() {
    let mut t = gate_with(limits(0, 10, 0));
    let (_, boot) = t.client(conn(1));
    let call = call_of_len(boot, 40);
    for _ in 0..10 {
        t.g.on_frame(&mut t.io, t.now, conn(1), &call);
    }
    assert_eq!(t.io.take().len(), 10, "ten calls forwarded");
    t.g.on_frame(&mut t.io, t.now, conn(1), &call);
    assert!(t.io.sent.is_empty(), "the eleventh is not");
    assert_eq!(
        t.io.closed,
        vec![(
            conn(1),
            "sent 11 messages in under 1 ms, over client_msg_rate_limit = 10 messages/s (burst 10)"
                .to_string()
        )]
    );
    // What the client sent before the reactor closed it is skipped, and counted once.
    t.g.on_frame(&mut t.io, t.now, conn(1), &call);
    assert!(t.io.sent.is_empty());
    assert_eq!(t.io.closed.len(), 1);
    assert_eq!(t.g.closed_by_limits().msg_rate, 1);
}

#[test]
fn a_client_past_the_byte_rate_is_closed_and_one_under_it_is_not() {
    let mut t = gate_with(limits(0, 200, 10_000));
    let start = t.now;
    let (_, e1) = t.client(conn(1));
    let (_, e2) = t.client(conn(2));
    // 996-byte payloads: 1000 bytes a frame with the header.
    let (c1, c2) = (call_of_len(e1, 996), call_of_len(e2, 996));
    for i in 0..200u32 {
        // 9 frames a second: 9 000 bytes/s.
        t.g.on_frame(
            &mut t.io,
            start + Duration::from_millis(111) * i,
            conn(1),
            &c1,
        );
    }
    for i in 0..200u32 {
        // 12 frames a second: 12 000 bytes/s, 2 000 bytes/s more than the bucket refills.
        t.g.on_frame(
            &mut t.io,
            start + Duration::from_micros(83_333) * i,
            conn(2),
            &c2,
        );
    }
    assert_eq!(closed(&t), vec![conn(2)], "{:?}", t.io.closed);
    let reason = &t.io.closed[0].1;
    assert!(
        reason.contains("bytes in ")
            && reason.contains("over client_byte_rate_limit = 10000 bytes/s (burst 10000)"),
        "{reason}"
    );
    assert_eq!(
        t.g.closed_by_limits(),
        ClosedByLimits {
            byte_rate: 1,
            ..Default::default()
        }
    );
}

#[test]
fn flood_limits_are_off_with_0() {
    let mut t = gate_with(limits(0, 0, 0));
    t.client(conn(1));
    for _ in 0..100_000 {
        t.g.on_frame(&mut t.io, t.now, conn(1), &HEARTBEAT);
    }
    assert!(t.io.closed.is_empty());
    assert_eq!(t.g.closed_by_limits(), ClosedByLimits::default());
}
// ---- departures and bounded logging ---------------------------------------------------------

/// Disconnect notices the gate sent to the dispatcher, as (owner, client).
fn disconnect_notices(t: &mut T) -> Vec<(EntityId, ClientId)> {
    let sent = std::mem::take(&mut t.io.sent);
    sent.into_iter()
        .filter(|(c, _)| *c == DISP)
        .filter_map(|(_, p)| match Msg::decode(&p) {
            Ok(Msg::NotifyClientDisconnected {
                owner_eid,
                client_id,
            }) => Some((owner_eid, client_id)),
            _ => None,
        })
        .collect()
}

/// A client that connects and leaves at once: its boot entity is told when it leaves, and
/// its creation, which reaches the gate after that, is not taken for a new owner to tell
/// again (the second notice used to wait 5 s at the dispatcher for an entity already
/// destroyed, and then be reported). A player that does change after the client left is told.
#[test]
fn a_client_that_leaves_before_its_boot_entity_arrives_is_announced_gone_once() {
    goworld_common::testlog::capture();
    let mut t = T::new();
    t.dispatcher_up();
    goworld_common::testlog::take();
    let (cid, boot) = t.client(conn(1));
    t.g.on_close(&mut t.io, t.now, conn(1), &CloseReason::PeerClosed);
    assert_eq!(disconnect_notices(&mut t), vec![(boot, cid)]);
    create_on_client(&mut t, cid, boot, true);
    assert_eq!(disconnect_notices(&mut t), vec![], "told once");
    assert!(t.g.departed_unbound.is_empty(), "forgotten once it arrived");
    // The boot entity gave the client to an Avatar before it heard: the Avatar is told.
    let avatar = EntityId::parse("avataravatarav02").unwrap();
    create_on_client(&mut t, cid, avatar, true);
    assert_eq!(disconnect_notices(&mut t), vec![(avatar, cid)]);

    // A client whose player had arrived is not remembered when it leaves.
    let (cid2, boot2) = t.client(conn(2));
    create_on_client(&mut t, cid2, boot2, true);
    t.io.take();
    t.g.on_close(&mut t.io, t.now, conn(2), &CloseReason::PeerClosed);
    assert_eq!(disconnect_notices(&mut t), vec![(boot2, cid2)]);
    assert!(t.g.departed_unbound.is_empty());
    // Clients leaving is ordinary: nothing at info or above.
    let lines = goworld_common::testlog::take();
    assert!(lines.is_empty(), "{lines:?}");
}

/// A churn of clients that leave before their boot entity arrives cannot grow the gate:
/// the record of them is bounded.
#[test]
fn clients_leaving_before_their_boot_entity_are_remembered_in_bounded_space() {
    let mut t = T::new();
    t.dispatcher_up();
    for i in 0..(DEPARTED_UNBOUND_MAX + 10) as u32 {
        // Slots from 1000: slot 100 is the dispatcher's.
        t.client(conn(i + 1000));
        t.g.on_close(&mut t.io, t.now, conn(i + 1000), &CloseReason::PeerClosed);
    }
    assert!(t.g.departed_unbound.len() <= DEPARTED_UNBOUND_MAX);
    assert_eq!(t.g.client_count(), 0);
}

/// A dispatcher sending what a gate cannot use costs a few lines per window, then a summary.
#[test]
fn bad_packets_from_a_dispatcher_cost_a_few_lines_per_window() {
    goworld_common::testlog::capture();
    let mut t = T::new();
    t.dispatcher_up();
    goworld_common::testlog::take();
    for i in 0..40u16 {
        t.g.on_frame(&mut t.io, t.now, DISP, &(3000 + i).to_le_bytes());
    }
    let w = goworld_common::testlog::take_at(log::Level::Warn);
    assert_eq!(
        w.len(),
        goworld_common::peerlog::FULL_LINES as usize,
        "{w:#?}"
    );
    let due = t.g.next_deadline().expect("a summary is owed");
    t.g.on_tick(&mut t.io, due, SystemTime::UNIX_EPOCH);
    let w = goworld_common::testlog::take_at(log::Level::Warn);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("37 more not logged"), "{w:#?}");
    assert_eq!(t.g.next_deadline(), None);
}

/// A flood of clients refused by their transport (a TLS gate reached in plain text, broken
/// WebSocket handshakes) costs a few lines per window, then one summary with the count.
#[test]
fn clients_closed_by_their_transport_cost_a_few_lines_per_window() {
    use goworld_common::reactor::CloseReason;
    goworld_common::testlog::capture();
    let mut t = T::new();
    t.dispatcher_up();
    goworld_common::testlog::take();
    for i in 0..50u32 {
        let c = conn(200 + i);
        t.client(c);
        let why = CloseReason::Transport(format!("tls: received corrupt message #{i}"));
        t.g.on_close(&mut t.io, t.now, c, &why);
    }
    assert_eq!(t.g.client_count(), 0);
    let w = goworld_common::testlog::take_at(log::Level::Warn);
    assert_eq!(
        w.len(),
        goworld_common::peerlog::FULL_LINES as usize,
        "{w:#?}"
    );
    assert!(
        w[0].contains("closed: transport: tls: received corrupt message #0"),
        "{w:#?}"
    );
    let due = t.g.next_deadline().expect("a summary is owed");
    t.g.on_tick(&mut t.io, due, SystemTime::UNIX_EPOCH);
    let w = goworld_common::testlog::take_at(log::Level::Warn);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("transport x47"), "{w:#?}");
}

#[test]
fn the_gate_reads_dispatchers_unless_its_clients_are_backed_up_and_clients_never_while_anything_is()
{
    use crate::{pause_rule, CLIENT_LINKS, DISPATCHER_LINKS};
    use goworld_common::reactor::CLIENT_OUTPUT_GROUP;
    for congested in [DISPATCHER_LINKS, CLIENT_LINKS, 0] {
        for itself in [false, true] {
            assert!(!pause_rule(DISPATCHER_LINKS, itself, congested));
            assert!(pause_rule(CLIENT_LINKS, itself, congested));
        }
    }
    assert!(pause_rule(DISPATCHER_LINKS, false, CLIENT_OUTPUT_GROUP));
    assert!(pause_rule(CLIENT_LINKS, false, CLIENT_OUTPUT_GROUP));
}
