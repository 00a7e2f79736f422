//! Bot tests without sockets: GoWorld's captured login transcript (goworld-frames.md §4),
//! captured attribute frames (§3), frames built from the protocol for the rest, and a small
//! in-test server that answers the things.

use std::time::{Duration, Instant};

use goworld_common::frame::FrameDecoder;
use goworld_common::msgpack::Value;

use super::*;
use crate::wire::{mt, pack, unhex};

/// goworld-frames.md §4, every frame with its u32 length prefix. The bot is `test3`, its
/// client `awVBNWhsgjH.AAAD`, the Account `awVBNWhsgjH.AAAG`, the Avatar `awVBNWhsgjH2AAAN`.
const T1_CREATE_ACCOUNT: &str = "45000000ea030100617756424e576873676a482e4141414401617756424e576873676a482e41414147070000004163636f756e74000000000000000000000000000000000100000080";
const T2_LOGIN: &str = "320000000b00617756424e576873676a482e41414147050000004c6f67696e020006000000a5746573743307000000a6313233343536";
const T3_ON_LOGIN: &str = "36000000f1030100617756424e576873676a482e41414144617756424e576873676a482e41414147070000004f6e4c6f67696e010001000000c3";
const T4_DESTROY_ACCOUNT: &str = "2f000000eb030100617756424e576873676a482e41414144070000004163636f756e74617756424e576873676a482e41414147";
const T5_CREATE_AVATAR: &str = "90000000ea030100617756424e576873676a482e4141414401617756424e576873676a48324141414e06000000417661746172000000000000000000000000000000004d00000086a3657870d30000000000000000a470726f66d30000000000000001ad746573744c6973744669656c6490a46e616d65a6e697a0e5908da56d61696c7380a56c6576656cd30000000000000001";
const T6_CREATE_SPACE: &str = "53000000ea030100617756424e576873676a482e4141414400617756424e576873676a483241414151090000005f5f73706163655f5f000000000000000000000000000000000d00000081a25f4bd30000000000000062";
const T7_SYNC: &str =
    "22000000de05617756424e576873676a48324141414e00003ec300000000000004c200000000";

/// §3: 1004 `complexAttr.key1.key2[1][0].finalkey = "iamhere"` and 1012 clear of
/// `complexAttr`, both to the transcript's Avatar.
const C_FINALKEY: &str = "69000000ec030100617756424e576873676a482e41414144617756424e576873676a48324141414e2900000095d30000000000000000d30000000000000001a46b657932a46b657931ab636f6d706c6578417474720800000066696e616c6b657908000000a769616d68657265";
const C_CLEAR: &str = "35000000f4030100617756424e576873676a482e41414144617756424e576873676a48324141414e0d00000091ab636f6d706c657841747472";
/// §3: 1008 append 64 to `testListField` and 1009 `OnTestListField([64])`, captured for the
/// Avatar `...AAAL`; [`to_avatar`] readdresses them to the transcript's Avatar.
const L_APPEND_64: &str = "44000000f0030100617756424e576873676a482e41414145617756424e576873676a48324141414c0f00000091ad746573744c6973744669656c6409000000d30000000000000040";
const L_ON_LIST_64: &str = "47000000f1030100617756424e576873676a482e41414145617756424e576873676a48324141414c0f0000004f6e546573744c6973744669656c6401000a00000091d30000000000000040";

const CLIENT: &str = "awVBNWhsgjH.AAAD";
const ACCOUNT: &str = "awVBNWhsgjH.AAAG";
const AVATAR: &str = "awVBNWhsgjH2AAAN";

fn eid(s: &str) -> Eid {
    Eid::from_str_bytes(s).unwrap()
}

fn to_avatar(hex: &str) -> String {
    hex.replace("48324141414c", "48324141414e")
}

/// The payloads of a hex stream of frames, split by the framing decoder.
fn payloads(hex: &str) -> Vec<Vec<u8>> {
    let mut d = FrameDecoder::new(1 << 20);
    d.extend(&unhex(hex));
    let mut v = Vec::new();
    while let Some(p) = d.next_frame().unwrap() {
        v.push(p.to_vec());
    }
    assert_eq!(d.buffered(), 0, "a partial frame in the test data");
    v
}

fn payload(hex: &str) -> Vec<u8> {
    let mut v = payloads(hex);
    assert_eq!(v.len(), 1);
    v.remove(0)
}

/// A gate→client payload in the 1001..1499 range: type, gateid 1, the transcript's client.
fn srv(t: u16, body: &[u8]) -> Vec<u8> {
    let mut p = t.to_le_bytes().to_vec();
    p.extend_from_slice(&1u16.to_le_bytes());
    p.extend_from_slice(CLIENT.as_bytes());
    p.extend_from_slice(body);
    p
}

fn data(v: &Value) -> Vec<u8> {
    let mut m = Vec::new();
    pack(v, &mut m);
    let mut out = (m.len() as u32).to_le_bytes().to_vec();
    out.extend(m);
    out
}

fn var_str(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn path(keys: &[Value]) -> Value {
    if keys.is_empty() {
        Value::Nil
    } else {
        Value::Array(keys.to_vec())
    }
}

fn map_change(e: &str, p: &[Value], key: &str, val: Value) -> Vec<u8> {
    let mut b = e.as_bytes().to_vec();
    b.extend(data(&path(p)));
    b.extend(var_str(key));
    b.extend(data(&val));
    srv(mt::NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT, &b)
}

fn list_append(e: &str, p: &[Value], val: Value) -> Vec<u8> {
    let mut b = e.as_bytes().to_vec();
    b.extend(data(&path(p)));
    b.extend(data(&val));
    srv(mt::NOTIFY_LIST_ATTR_APPEND_ON_CLIENT, &b)
}

fn list_pop(e: &str, p: &[Value]) -> Vec<u8> {
    let mut b = e.as_bytes().to_vec();
    b.extend(data(&path(p)));
    srv(mt::NOTIFY_LIST_ATTR_POP_ON_CLIENT, &b)
}

fn call(e: &str, method: &str, args: &[Value]) -> Vec<u8> {
    let mut b = e.as_bytes().to_vec();
    b.extend(var_str(method));
    b.extend((args.len() as u16).to_le_bytes());
    for a in args {
        b.extend(data(a));
    }
    srv(mt::CALL_ENTITY_METHOD_ON_CLIENT, &b)
}

/// 1501 CALL_FILTERED_CLIENTS as the gate sends it: op, key, value, method, args.
fn filtered(method: &str, args: &[Value]) -> Vec<u8> {
    let mut b = mt::CALL_FILTERED_CLIENTS.to_le_bytes().to_vec();
    b.push(0);
    b.extend(var_str(""));
    b.extend(var_str(""));
    b.extend(var_str(method));
    b.extend((args.len() as u16).to_le_bytes());
    for a in args {
        b.extend(data(a));
    }
    b
}

/// The method and arguments of a CALL_ENTITY_METHOD_FROM_CLIENT the bot sent to `AVATAR`.
fn request(p: &[u8]) -> (String, Vec<Value>) {
    let (target, method, args) = decode_call(p);
    assert_eq!(target, AVATAR);
    (method, args)
}

/// The target, method and arguments of a CALL_ENTITY_METHOD_FROM_CLIENT the bot sent.
fn decode_call(p: &[u8]) -> (String, String, Vec<Value>) {
    assert_eq!(p[..2], mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes());
    let target = std::str::from_utf8(&p[2..18]).unwrap().to_string();
    let n = u32::from_le_bytes(p[18..22].try_into().unwrap()) as usize;
    let method = std::str::from_utf8(&p[22..22 + n]).unwrap().to_string();
    let mut at = 22 + n;
    let argc = u16::from_le_bytes([p[at], p[at + 1]]) as usize;
    at += 2;
    let mut args = Vec::new();
    for _ in 0..argc {
        let len = u32::from_le_bytes(p[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        args.push(goworld_common::msgpack::decode_exact(&p[at..at + len]).unwrap());
        at += len;
    }
    assert_eq!(at, p.len());
    (target, method, args)
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn failures(bot: &mut Bot) -> Vec<String> {
    bot.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Failure(f) => Some(f),
            Event::ThingDone { .. } => None,
        })
        .collect()
}

/// Feeds payloads; asserts no failure (other events stay queued); returns everything sent.
fn feed(bot: &mut Bot, now: Instant, rng: &mut Rng, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for f in frames {
        sent.extend(bot.on_frame(now, f, rng));
    }
    let fails: Vec<_> = bot
        .events
        .iter()
        .filter(|e| matches!(e, Event::Failure(_)))
        .collect();
    assert!(fails.is_empty(), "{fails:?}");
    sent
}

/// A bot `test3` (of 1: space kinds 1 and 2) that went through the captured login, in its
/// space (kind 98), at (-190, 0, -33); its thing loop has started.
fn logged_in(now: Instant, rng: &mut Rng) -> Bot {
    let mut bot = Bot::new(3, 1, true);
    bot.connected(now);
    let stream = [
        T1_CREATE_ACCOUNT,
        T3_ON_LOGIN,
        T4_DESTROY_ACCOUNT,
        T5_CREATE_AVATAR,
        T6_CREATE_SPACE,
        T7_SYNC,
    ]
    .concat();
    let sent = feed(&mut bot, now, rng, &payloads(&stream));
    assert_eq!(sent, vec![payload(T2_LOGIN)]);
    assert!(bot.started());
    bot
}

#[test]
fn login_transcript_sends_gos_exact_login_and_logs_in() {
    let t0 = Instant::now();
    let mut rng = Rng::new(1);
    let mut bot = Bot::new(3, 1, true);
    bot.connected(t0);

    // The boot Account arrives: the bot answers with GoWorld's exact Login frame.
    let sent = feed(&mut bot, t0, &mut rng, &[payload(T1_CREATE_ACCOUNT)]);
    assert_eq!(sent, vec![payload(T2_LOGIN)]);
    assert_eq!(bot.boot_entity(), Some("Account"));
    assert!(!bot.logged_in());
    assert_eq!(bot.player().unwrap().0, &eid(ACCOUNT));

    // OnLogin(true) on the Account, the Account goes, the Avatar comes as the player.
    let sent = feed(
        &mut bot,
        t0,
        &mut rng,
        &[payload(T3_ON_LOGIN), payload(T4_DESTROY_ACCOUNT)],
    );
    assert!(sent.is_empty());
    assert!(bot.player().is_none());
    assert!(bot.entity(&eid(ACCOUNT)).is_none());
    feed(&mut bot, t0, &mut rng, &[payload(T5_CREATE_AVATAR)]);
    assert!(bot.logged_in());
    assert_eq!(bot.boot_entity(), Some("Account"));
    let (p, avatar) = bot.player().unwrap();
    assert_eq!(p, &eid(AVATAR));
    assert_eq!(avatar.type_name, "Avatar");
    assert_eq!(
        avatar.attrs.map_get("name").and_then(Value::as_str),
        Some("无名")
    );
    assert_eq!(avatar.attrs.map_get("level"), Some(&Value::Int(1)));
    assert_eq!(
        avatar.attrs.map_get("testListField"),
        Some(&Value::Array(vec![]))
    );
    // No thing before the first space (GoWorld's OnEnterSpace starts them): 9 s of ticks
    // send position syncs only.
    assert!(!bot.started());
    let mut t = t0;
    for _ in 0..900 {
        t += Duration::from_millis(10);
        let sent = bot.on_tick(t, &mut rng);
        assert!(sent.iter().all(|p| p[..2] != [11, 0]), "a call at {t:?}");
    }
    assert_eq!(bot.current_thing(), None);
    let before = bot.player().unwrap().1.pos;

    // The space (kind 98) and the Avatar's position; the space starts the thing loop.
    assert_ne!(before.x, 0.0, "the syncs moved the Avatar");
    feed(
        &mut bot,
        t,
        &mut rng,
        &[payload(T6_CREATE_SPACE), payload(T7_SYNC)],
    );
    assert_eq!(bot.space(), Some((eid("awVBNWhsgjH2AAAQ"), 98)));
    assert!(bot.started());
    assert_eq!(bot.current_thing(), None);
    // The server's position replaces the client's.
    let pos = bot.player().unwrap().1.pos;
    assert_eq!((pos.x, pos.y, pos.z, pos.yaw), (-190.0, 0.0, -33.0, 0.0));

    // A late OnLogin for the destroyed Account is fine (GoWorld's exception).
    feed(&mut bot, t, &mut rng, &[payload(T3_ON_LOGIN)]);

    // The first thing follows within 6 s of the space.
    let t6 = t;
    while bot.current_thing().is_none() {
        t += Duration::from_millis(10);
        assert!(t <= t6 + THING_DELAY_MAX, "no thing after the space");
        bot.on_tick(t, &mut rng);
    }
}

#[test]
fn position_sync_jitters_the_avatar_like_clientbot() {
    let t0 = Instant::now();
    let mut rng = Rng::new(2);
    let mut bot = logged_in(t0, &mut rng);
    let mut syncs = Vec::new();
    let mut t = t0;
    for _ in 0..200 {
        t += Duration::from_millis(10);
        for p in bot.on_tick(t, &mut rng) {
            if p[..2] == mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes() {
                syncs.push((t, p));
            }
        }
    }
    // 2 s: 20 sync slots, about half of them used.
    assert!((3..=18).contains(&syncs.len()), "{}", syncs.len());
    for w in syncs.windows(2) {
        assert!(w[1].0 - w[0].0 >= SYNC_INTERVAL);
    }
    let (mut x, mut z) = (-190.0f32, -33.0f32);
    for (_, p) in &syncs {
        assert_eq!(p.len(), 34);
        assert_eq!(&p[2..18], AVATAR.as_bytes());
        let f = |i: usize| f32::from_le_bytes(p[i..i + 4].try_into().unwrap());
        assert!((f(18) - x).abs() <= 0.0101, "x jitter");
        assert!(f(26) <= z && f(26) >= z - 0.0101, "z jitter");
        assert_eq!(f(22), 0.0);
        assert!((0.0..std::f32::consts::PI).contains(&f(30)));
        (x, z) = (f(18), f(26));
    }
    assert_eq!(bot.player().unwrap().1.pos.x, x);

    // -nosync: nothing.
    let mut quiet = Bot::new(3, 1, false);
    quiet.connected(t0);
    feed(
        &mut quiet,
        t0,
        &mut rng,
        &payloads(&[T1_CREATE_ACCOUNT, T5_CREATE_AVATAR].concat()),
    );
    for i in 1..100 {
        let sent = quiet.on_tick(t0 + Duration::from_millis(10 * i), &mut rng);
        assert!(sent
            .iter()
            .all(|p| p[..2] != mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes()));
    }
}

#[test]
fn complex_attr_thing_completes_on_the_captured_sequence() {
    let t0 = Instant::now();
    let mut rng = Rng::new(3);
    let mut bot = logged_in(t0, &mut rng);
    let req = bot
        .start_thing(t0, &mut rng, Thing::TestComplexAttr)
        .unwrap();
    let mut want = mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes().to_vec();
    want.extend_from_slice(AVATAR.as_bytes());
    want.extend(var_str("TestComplexAttr"));
    want.extend([0, 0]);
    assert_eq!(req, want);

    let ca = s("complexAttr");
    let p3 = [s("key2"), s("key1"), ca.clone()];
    let frames = vec![
        map_change(AVATAR, &[], "complexAttr", Value::Map(vec![])),
        map_change(
            AVATAR,
            std::slice::from_ref(&ca),
            "key1",
            Value::Map(vec![]),
        ),
        map_change(
            AVATAR,
            &[s("key1"), ca.clone()],
            "key2",
            Value::Array(vec![]),
        ),
        list_append(AVATAR, &p3, Value::Bool(true)),
        list_append(AVATAR, &p3, Value::Array(vec![])),
        list_append(
            AVATAR,
            &[Value::Int(1), s("key2"), s("key1"), ca.clone()],
            Value::Map(vec![]),
        ),
        payload(C_FINALKEY),
        call(AVATAR, "OnTestComplexAttrStep1", &[]),
    ];
    let t1 = t0 + Duration::from_millis(7);
    assert!(feed(&mut bot, t1, &mut rng, &frames).is_empty());
    assert_eq!(bot.current_thing(), Some(Thing::TestComplexAttr));
    let t2 = t0 + Duration::from_millis(9);
    bot.on_frame(t2, &payload(C_CLEAR), &mut rng);
    bot.on_frame(t2, &call(AVATAR, "OnTestComplexAttrClear", &[]), &mut rng);
    assert_eq!(
        bot.take_events(),
        vec![Event::ThingDone {
            thing: Thing::TestComplexAttr,
            latency: Duration::from_millis(9)
        }]
    );
    assert_eq!(bot.current_thing(), None);
    assert_eq!(bot.things_done(), 1);

    // Step 1 with the wrong final value, and a clear that did not clear: failures.
    bot.start_thing(t2, &mut rng, Thing::TestComplexAttr)
        .unwrap();
    let p5 = [
        Value::Int(0),
        Value::Int(1),
        s("key2"),
        s("key1"),
        ca.clone(),
    ];
    for f in &frames[..6] {
        bot.on_frame(t2, f, &mut rng);
    }
    bot.on_frame(
        t2,
        &map_change(AVATAR, &p5, "finalkey", s("nothere")),
        &mut rng,
    );
    bot.on_frame(t2, &call(AVATAR, "OnTestComplexAttrStep1", &[]), &mut rng);
    let f = failures(&mut bot);
    assert_eq!(f.len(), 1);
    assert!(f[0].contains("iamhere"), "{f:?}");
    bot.start_thing(t2, &mut rng, Thing::TestComplexAttr)
        .unwrap();
    bot.on_frame(t2, &call(AVATAR, "OnTestComplexAttrClear", &[]), &mut rng);
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("should be empty"), "{f:?}");
    assert_eq!(bot.current_thing(), None);
}

#[test]
fn list_field_thing_compares_the_mirrored_list() {
    let t0 = Instant::now();
    let mut rng = Rng::new(4);
    let mut bot = logged_in(t0, &mut rng);
    let req = bot.start_thing(t0, &mut rng, Thing::TestListField).unwrap();
    assert!(req.ends_with(&[var_str("TestListField"), vec![0, 0]].concat()));
    let t1 = t0 + Duration::from_millis(3);
    feed(
        &mut bot,
        t1,
        &mut rng,
        &[
            payload(&to_avatar(L_APPEND_64)),
            payload(&to_avatar(L_ON_LIST_64)),
        ],
    );
    assert_eq!(
        bot.take_events(),
        vec![Event::ThingDone {
            thing: Thing::TestListField,
            latency: Duration::from_millis(3)
        }]
    );
    assert_eq!(
        bot.player().unwrap().1.attrs.map_get("testListField"),
        Some(&Value::Array(vec![Value::Int(64)]))
    );

    // The server says [64, 65] but the client has [64]: a size mismatch ends the thing.
    bot.start_thing(t1, &mut rng, Thing::TestListField).unwrap();
    let two = Value::Array(vec![Value::Int(64), Value::Int(65)]);
    bot.on_frame(t1, &call(AVATAR, "OnTestListField", &[two]), &mut rng);
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("size"), "{f:?}");
    assert_eq!(bot.current_thing(), None);
    // Same size, other value.
    bot.start_thing(t1, &mut rng, Thing::TestListField).unwrap();
    let other = Value::Array(vec![Value::Int(63)]);
    bot.on_frame(t1, &call(AVATAR, "OnTestListField", &[other]), &mut rng);
    assert_eq!(failures(&mut bot).len(), 1);
    // Pop, then popping the empty list is an error.
    let tl = [s("testListField")];
    bot.on_frame(t1, &list_pop(AVATAR, &tl), &mut rng);
    assert!(failures(&mut bot).is_empty());
    bot.on_frame(t1, &list_pop(AVATAR, &tl), &mut rng);
    assert!(failures(&mut bot)[0].contains("empty"));
}

#[test]
fn timeouts_and_the_other_failures() {
    let t0 = Instant::now();
    let mut rng = Rng::new(5);

    // No Avatar 10 s after connecting, once.
    let mut bot = Bot::new(7, 1, true);
    bot.connected(t0);
    feed(&mut bot, t0, &mut rng, &[payload(T1_CREATE_ACCOUNT)]);
    assert!(bot
        .on_tick(t0 + Duration::from_secs(9), &mut rng)
        .is_empty());
    assert!(failures(&mut bot).is_empty());
    bot.on_tick(t0 + AVATAR_TIMEOUT, &mut rng);
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("bot test7: boot entity Account but no Avatar"));
    bot.on_tick(t0 + Duration::from_secs(20), &mut rng);
    assert!(failures(&mut bot).is_empty());

    // A thing without a reply times out after 5 s; the next one follows within 6 s.
    let mut bot = logged_in(t0, &mut rng);
    bot.start_thing(t0, &mut rng, Thing::TestListField).unwrap();
    bot.on_tick(t0 + Duration::from_millis(4990), &mut rng);
    assert!(failures(&mut bot).is_empty());
    let t5 = t0 + Duration::from_secs(5);
    bot.on_tick(t5, &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("DoTestListField TIMEOUT"),
        "{f:?}"
    );
    assert_eq!(bot.current_thing(), None);
    let next = bot.next_deadline().unwrap();
    assert!(next <= t5 + SYNC_INTERVAL);
    let mut t = t5;
    while bot.current_thing().is_none() {
        t += Duration::from_millis(10);
        assert!(t <= t5 + THING_DELAY_MAX, "no next thing");
        bot.on_tick(t, &mut rng);
    }

    // Unknown method, unknown entity, wrong argument count, bad frames.
    let bad = [
        call(AVATAR, "NoSuchMethod", &[]),
        call(
            "awVBNWhsgjH2ZZZZ",
            "OnTestListField",
            &[Value::Array(vec![])],
        ),
        map_change("awVBNWhsgjH2ZZZZ", &[], "x", Value::Int(1)),
        call(AVATAR, "OnTestComplexAttrStep1", &[Value::Int(1)]),
        map_change(AVATAR, &[s("nope")], "x", Value::Int(1)),
        vec![0xf3, 0x03],
        srv(1010, b""),
    ];
    for (i, f) in bad.iter().enumerate() {
        bot.on_frame(t, f, &mut rng);
        assert_eq!(failures(&mut bot).len(), 1, "bad frame {i}");
    }
    // Harmless: positions of unknown entities, a filtered call with a player, the reply of a
    // thing not in progress.
    let mut sync = mt::SYNC_POSITION_YAW_ON_CLIENTS.to_le_bytes().to_vec();
    sync.extend_from_slice(b"awVBNWhsgjH2ZZZZ");
    sync.extend_from_slice(&[0; 16]);
    let mut filtered = mt::CALL_FILTERED_CLIENTS.to_le_bytes().to_vec();
    filtered.extend([0u8; 9]);
    filtered.extend(var_str("OnTestCallAll"));
    filtered.extend([0, 0]);
    feed(&mut bot, t, &mut rng, &[sync, filtered]);
    // TestCallAllPlzEcho is echoed on the entity that asked.
    let sent = feed(
        &mut bot,
        t,
        &mut rng,
        &[call(AVATAR, "TestCallAllPlzEcho", &[s(AVATAR)])],
    );
    let mut want = mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes().to_vec();
    want.extend_from_slice(AVATAR.as_bytes());
    want.extend(var_str("TestCallAllEcho"));
    want.extend([1, 0]);
    want.extend(data(&s(AVATAR)));
    assert_eq!(sent, vec![want]);
}

fn done(bot: &mut Bot) -> Vec<Thing> {
    bot.take_events()
        .into_iter()
        .map(|e| match e {
            Event::ThingDone { thing, .. } => thing,
            Event::Failure(f) => panic!("{f}"),
        })
        .collect()
}

/// Starts `thing`, feeds `replies`, and returns the request and the things completed.
fn run_thing(
    bot: &mut Bot,
    t: Instant,
    rng: &mut Rng,
    thing: Thing,
    replies: &[Vec<u8>],
) -> ((String, Vec<Value>), Vec<Thing>) {
    let req = request(&bot.start_thing(t, rng, thing).unwrap());
    assert_eq!(bot.current_thing(), Some(thing));
    assert!(feed(bot, t, rng, replies).is_empty());
    (req, done(bot))
}

#[test]
fn others_chat_is_read_in_place_and_a_malformed_line_is_still_reported() {
    let t0 = Instant::now();
    let mut rng = Rng::new(7);
    let mut bot = logged_in(t0, &mut rng);
    let other = "awVBNWhsgjH2AAAZ";
    let say = filtered(
        "OnSay",
        &[s(other), s("无名"), s("world"), s("this is a message")],
    );
    let peeked = wire::peek_call(&say).expect("a well-formed 1501");
    assert_eq!(
        (peeked.eid, peeked.method, peeked.nargs),
        (None, &b"OnSay"[..], 4)
    );
    let content = format!("{other}: hello npc, this is a test publish message");
    let publish = call(AVATAR, "OnTestPublish", &[s(other), s("npc"), s(&content)]);
    let peeked = wire::peek_call(&publish).expect("a well-formed 1009");
    assert_eq!(
        peeked.eid.map(|e| e.0.to_vec()),
        Some(AVATAR.as_bytes().to_vec())
    );
    assert_eq!(
        goworld_common::msgpack::str_exact(peeked.first_arg),
        Some(other.as_bytes())
    );
    // Others' lines change nothing and fail nothing.
    assert!(feed(&mut bot, t0, &mut rng, &[say.clone(), publish.clone()]).is_empty());
    assert!(failures(&mut bot).is_empty());
    // Cut short or with a byte too many, the shape check fails and the full decode reports it.
    for bad in [&say[..say.len() - 1], &publish[..publish.len() - 3]] {
        assert!(wire::peek_call(bad).is_none());
        bot.on_frame(t0, bad, &mut rng);
        let f = failures(&mut bot);
        assert!(f.len() == 1 && f[0].contains("bad message"), "{f:?}");
    }
    let mut longer = say.clone();
    longer.push(0);
    assert!(wire::peek_call(&longer).is_none());
    // An argument that is not msgpack, in another client's line: not read in place (its first
    // argument is no string), so it is decoded and reported.
    let mut broken = filtered("OnSay", &[]);
    broken.truncate(broken.len() - 2);
    broken.extend(4u16.to_le_bytes());
    for a in [&[0xc1u8][..], &[0xa1, b'x'], &[0xa1, b'y'], &[0xa1, b'z']] {
        broken.extend((a.len() as u32).to_le_bytes());
        broken.extend_from_slice(a);
    }
    bot.on_frame(t0, &broken, &mut rng);
    assert_eq!(failures(&mut bot).len(), 1);
}

#[test]
fn say_things_complete_on_their_own_on_say() {
    let t0 = Instant::now();
    let mut rng = Rng::new(7);
    let mut bot = logged_in(t0, &mut rng);
    let other = "awVBNWhsgjH2AAAZ";
    for (thing, channel) in [
        (Thing::SayInWorldChannel, "world"),
        (Thing::SayInProfChannel, "prof"),
    ] {
        let say = |from: &str, ch: &str| {
            filtered(
                "OnSay",
                &[s(from), s("无名"), s(ch), s("this is a message")],
            )
        };
        // Others' messages, and its own on the other channel, do not complete it.
        let wrong = if channel == "world" { "prof" } else { "world" };
        let (req, d) = run_thing(
            &mut bot,
            t0,
            &mut rng,
            thing,
            &[say(other, channel), say(AVATAR, wrong)],
        );
        assert_eq!(
            req,
            (
                "Say".to_string(),
                vec![
                    s(channel),
                    s(&format!("this is a message in {channel} channel"))
                ]
            )
        );
        assert!(d.is_empty());
        feed(&mut bot, t0, &mut rng, &[say(AVATAR, channel)]);
        assert_eq!(done(&mut bot), vec![thing]);
        assert_eq!(bot.current_thing(), None);
    }
    // OnSay takes 4 arguments.
    bot.on_frame(t0, &filtered("OnSay", &[s(AVATAR), s("world")]), &mut rng);
    assert!(failures(&mut bot)[0].contains("OnSay takes 4 arguments"));

    // A world timeout fails; a prof timeout is tolerated (GoWorld).
    let t5 = t0 + Thing::SayInWorldChannel.timeout();
    bot.start_thing(t0, &mut rng, Thing::SayInWorldChannel)
        .unwrap();
    bot.on_tick(t5, &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("DoSayInWorldChannel TIMEOUT"),
        "{f:?}"
    );
    bot.start_thing(t5, &mut rng, Thing::SayInProfChannel)
        .unwrap();
    bot.on_tick(t5 + Thing::SayInProfChannel.timeout(), &mut rng);
    assert!(failures(&mut bot).is_empty());
    assert_eq!(bot.current_thing(), None);
    assert!(bot.next_deadline().is_some(), "the next thing is scheduled");
}

#[test]
fn mail_things_send_gos_mail_and_complete_on_the_replies() {
    let t0 = Instant::now();
    let mut rng = Rng::new(8);
    let mut bot = logged_in(t0, &mut rng);
    // The only Avatar the client knows is its own: the mail goes to itself.
    let ((method, args), d) = run_thing(
        &mut bot,
        t0,
        &mut rng,
        Thing::SendMail,
        &[call(AVATAR, "OnSendMail", &[Value::Bool(true)])],
    );
    assert_eq!(d, vec![Thing::SendMail]);
    assert_eq!(method, "SendMail");
    assert_eq!(args.len(), 2);
    assert_eq!(args[0], s(AVATAR));
    let mail = args[1].as_map().unwrap();
    assert_eq!(mail.len(), 1004);
    assert_eq!(args[1].map_get("b"), Some(&s("b")));
    assert_eq!(args[1].map_get("d"), Some(&Value::Float(1231.111)));
    for i in 1..=1000 {
        let v = args[1]
            .map_get(&format!("field{i}"))
            .and_then(Value::as_i64);
        assert!(v.is_some_and(|v| (0..100).contains(&v)), "field{i}: {v:?}");
    }
    // GoWorld completes on any answer (a refusal is only logged).
    let (_, d) = run_thing(
        &mut bot,
        t0,
        &mut rng,
        Thing::SendMail,
        &[call(AVATAR, "OnSendMail", &[Value::Bool(false)])],
    );
    assert_eq!(d, vec![Thing::SendMail]);

    let (req, d) = run_thing(
        &mut bot,
        t0,
        &mut rng,
        Thing::GetMails,
        &[call(AVATAR, "OnGetMails", &[Value::Bool(true)])],
    );
    assert_eq!(req, ("GetMails".to_string(), vec![]));
    assert_eq!(d, vec![Thing::GetMails]);
    // A reply of the other thing does not complete this one.
    let (_, d) = run_thing(
        &mut bot,
        t0,
        &mut rng,
        Thing::GetMails,
        &[call(AVATAR, "OnSendMail", &[Value::Bool(true)])],
    );
    assert!(d.is_empty());

    // Timeouts fail, wrong arities fail.
    bot.on_tick(t0 + Thing::GetMails.timeout(), &mut rng);
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("DoGetMails TIMEOUT"), "{f:?}");
    let t5 = t0 + Thing::GetMails.timeout();
    bot.start_thing(t5, &mut rng, Thing::SendMail).unwrap();
    bot.on_tick(t5 + Thing::SendMail.timeout(), &mut rng);
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("DoSendMail TIMEOUT"), "{f:?}");
    bot.on_frame(t5, &call(AVATAR, "OnGetMails", &[]), &mut rng);
    assert_eq!(failures(&mut bot).len(), 1);
}

#[test]
fn publish_thing_completes_on_its_own_publication() {
    let t0 = Instant::now();
    let mut rng = Rng::new(9);
    let mut bot = logged_in(t0, &mut rng);
    let publication = |publisher: &str| {
        let content = format!("{publisher}: hello boss_7, this is a test publish message");
        call(
            AVATAR,
            "OnTestPublish",
            &[s(publisher), s("boss_7"), s(&content)],
        )
    };
    let (req, d) = run_thing(
        &mut bot,
        t0,
        &mut rng,
        Thing::TestPublish,
        &[publication("awVBNWhsgjH2AAAZ")],
    );
    assert_eq!(req, ("TestPublish".to_string(), vec![]));
    assert!(d.is_empty(), "another Avatar's publication");
    feed(&mut bot, t0, &mut rng, &[publication(AVATAR)]);
    assert_eq!(done(&mut bot), vec![Thing::TestPublish]);
    // Others' publications while doing nothing are fine; a wrong arity is not.
    feed(&mut bot, t0, &mut rng, &[publication(AVATAR)]);
    assert!(done(&mut bot).is_empty());
    bot.on_frame(t0, &call(AVATAR, "OnTestPublish", &[s(AVATAR)]), &mut rng);
    assert!(failures(&mut bot)[0].contains("OnTestPublish takes 3 arguments"));
    bot.start_thing(t0, &mut rng, Thing::TestPublish).unwrap();
    bot.on_tick(t0 + Thing::TestPublish.timeout(), &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("DoTestPublish TIMEOUT"),
        "{f:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Spaces, neighbours and the four space things.
// ---------------------------------------------------------------------------------------------

/// goworld-frames.md §3: 1002 of the AOITester `awVBPWhsgjH2AAA6` at (-190, 0, -33) to the
/// transcript's client.
const A_CREATE_AOITESTER: &str =
    "47000000ea030100617756424e576873676a482e4141414400617756425057687\
3676a48324141413609000000414f4954657374657200003ec300000000000004c2000000000100000080";
const AOITESTER: &str = "awVBPWhsgjH2AAA6";
/// goworld-frames.md §3: 1009 `TestCallAllPlzEcho("awVBNWhsgjH2AAAM")` on the Avatar
/// `awVBNWhsgjH2AAAM`, as a neighbour's client gets it (to another client; the bot skips the
/// header).
const A_PLZ_ECHO: &str = "51000000f1030100617756424e576873676a482e41414146617756424e576873\
676a48324141414d120000005465737443616c6c416c6c506c7a4563686f0100\
11000000b0617756424e576873676a48324141414d";
const NEIGHBOUR: &str = "awVBNWhsgjH2AAAM";
const MONSTER: &str = "awVBNWhsgjH2AAAR";
const SPACE98: &str = "awVBNWhsgjH2AAAQ";

/// 1002 as the gate sends it.
fn create(e: &str, type_name: &str, is_player: bool, pos: [f32; 4], client_data: Value) -> Vec<u8> {
    let mut b = vec![u8::from(is_player)];
    b.extend_from_slice(e.as_bytes());
    b.extend(var_str(type_name));
    for f in pos {
        b.extend(f.to_le_bytes());
    }
    b.extend(data(&client_data));
    srv(mt::CREATE_ENTITY_ON_CLIENT, &b)
}

/// 1002 of a space of `kind`.
fn space(e: &str, kind: i64) -> Vec<u8> {
    let cd = Value::Map(vec![(s("_K"), Value::Int(kind))]);
    create(e, SPACE_TYPE, false, [0.0; 4], cd)
}

fn destroy(e: &str, type_name: &str) -> Vec<u8> {
    let mut b = var_str(type_name);
    b.extend_from_slice(e.as_bytes());
    srv(mt::DESTROY_ENTITY_ON_CLIENT, &b)
}

/// 1502 with one record per entity.
fn sync_on_clients(recs: &[(&str, [f32; 4])]) -> Vec<u8> {
    let mut p = mt::SYNC_POSITION_YAW_ON_CLIENTS.to_le_bytes().to_vec();
    for (e, pos) in recs {
        p.extend_from_slice(e.as_bytes());
        for f in pos {
            p.extend(f.to_le_bytes());
        }
    }
    p
}

/// A neighbour Avatar as another client's Avatar is seen: AllClients attributes only.
fn neighbour_avatar(e: &str, pos: [f32; 4]) -> Vec<u8> {
    let cd = Value::Map(vec![
        (s("name"), s("无名")),
        (s("level"), Value::Int(1)),
        (s("prof"), Value::Int(2)),
        (s("testListField"), Value::Array(vec![])),
    ]);
    create(e, "Avatar", false, pos, cd)
}

/// The exact 11 the bot must send: target, method, then each argument's msgpack bytes.
fn want_call(target: &str, method: &str, args: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![11, 0];
    p.extend_from_slice(target.as_bytes());
    p.extend(var_str(method));
    p.extend((args.len() as u16).to_le_bytes());
    for a in args {
        p.extend((a.len() as u32).to_le_bytes());
        p.extend_from_slice(a);
    }
    p
}

/// msgpack of a Go int: int64 `0xd3`.
fn go_int(i: i64) -> Vec<u8> {
    let mut v = vec![0xd3];
    v.extend(i.to_be_bytes());
    v
}

/// msgpack of an entity ID: a 16-byte fixstr.
fn go_eid(e: &str) -> Vec<u8> {
    let mut v = vec![0xb0];
    v.extend_from_slice(e.as_bytes());
    v
}

/// Ticks every 10 ms from `t` until the bot sends an 11; returns the time and the frame.
fn next_call(bot: &mut Bot, t: &mut Instant, rng: &mut Rng) -> Vec<u8> {
    let start = *t;
    loop {
        *t += Duration::from_millis(10);
        assert!(
            *t <= start + THING_DELAY_MAX + Duration::from_secs(6),
            "no call"
        );
        for p in bot.on_tick(*t, rng) {
            if p[..2] == [11, 0] {
                return p;
            }
        }
    }
}

#[test]
fn no_space_is_a_failure_and_the_first_space_starts_the_loop() {
    let t0 = Instant::now();
    let mut rng = Rng::new(11);
    let mut bot = Bot::new(3, 1, true);
    bot.connected(t0);
    let login = [
        T1_CREATE_ACCOUNT,
        T3_ON_LOGIN,
        T4_DESTROY_ACCOUNT,
        T5_CREATE_AVATAR,
    ]
    .concat();
    feed(&mut bot, t0, &mut rng, &payloads(&login));
    assert!(bot.logged_in() && !bot.started());
    let mut t = t0;
    while t < t0 + AVATAR_TIMEOUT {
        t += Duration::from_millis(10);
        let sent = bot.on_tick(t, &mut rng);
        assert!(sent.iter().all(|p| p[..2] != [11, 0]));
    }
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("bot test3: an Avatar but no space 10s after connecting"),
        "{f:?}"
    );
    // A space of another kind than 0 then starts it; the first thing is any thing.
    feed(&mut bot, t, &mut rng, &[space(SPACE98, 98)]);
    assert!(bot.started() && bot.current_thing().is_none());
    assert!(
        done(&mut bot).is_empty(),
        "the first space completes nothing"
    );
    next_call(&mut bot, &mut t, &mut rng);
    assert!(bot.current_thing().is_some());
    assert!(failures(&mut bot).is_empty());

    // A space entered by a non-Avatar player does not start the loop (an Account in a space).
    let mut acc = Bot::new(4, 1, true);
    acc.connected(t0);
    feed(
        &mut acc,
        t0,
        &mut rng,
        &[payload(T1_CREATE_ACCOUNT), space(SPACE98, 98)],
    );
    assert!(!acc.started());
}

#[test]
fn kind_0_or_no_space_forces_enter_random_space_with_another_kind() {
    let t0 = Instant::now();
    let mut rng = Rng::new(12);
    let mut bot = logged_in(t0, &mut rng);
    let mut t = t0;
    // Leave the space: from now on, every thing is DoEnterRandomSpace, with kind 1 or 2 (of
    // 1 bot), until a space of another kind than 0 is entered.
    feed(&mut bot, t, &mut rng, &[destroy(SPACE98, SPACE_TYPE)]);
    assert_eq!(bot.space(), None);
    let mut kinds = Vec::new();
    for i in 0..30 {
        let p = next_call(&mut bot, &mut t, &mut rng);
        assert_eq!(bot.current_thing(), Some(Thing::EnterRandomSpace));
        let k = (1..=2)
            .find(|&k| p == want_call(AVATAR, "EnterSpace", &[&go_int(k)]))
            .unwrap_or_else(|| panic!("not EnterSpace(1|2): {p:?}"));
        kinds.push(k);
        // Every second answer is the nil kind 0 (the loop stays forced), else no space.
        let e = format!("awVBNWhsgjH2S{i:03}");
        feed(&mut bot, t, &mut rng, &[space(&e, 0)]);
        assert_eq!(done(&mut bot), vec![Thing::EnterRandomSpace]);
        assert_eq!(bot.space(), Some((eid(&e), 0)));
        if i % 2 == 1 {
            feed(&mut bot, t, &mut rng, &[destroy(&e, SPACE_TYPE)]);
        }
    }
    assert!(kinds.contains(&1) && kinds.contains(&2), "{kinds:?}");

    // In kind 1 of 2 kinds, the other kind is always asked for, and the reverse.
    feed(&mut bot, t, &mut rng, &[space("awVBNWhsgjH2K001", 1)]);
    done(&mut bot);
    for _ in 0..20 {
        let req = bot
            .start_thing(t, &mut rng, Thing::EnterRandomSpace)
            .unwrap();
        assert_eq!(req, want_call(AVATAR, "EnterSpace", &[&go_int(2)]));
    }
    feed(&mut bot, t, &mut rng, &[space("awVBNWhsgjH2K002", 2)]);
    assert_eq!(done(&mut bot), vec![Thing::EnterRandomSpace]);
    let req = bot
        .start_thing(t, &mut rng, Thing::EnterRandomSpace)
        .unwrap();
    assert_eq!(req, want_call(AVATAR, "EnterSpace", &[&go_int(1)]));

    // 4000 bots: kinds 1..=10, never the current one (5), its successor twice as likely.
    let mut big = Bot::new(9, 4000, false);
    big.connected(t0);
    let frames = [
        payload(T1_CREATE_ACCOUNT),
        payload(T5_CREATE_AVATAR),
        space(SPACE98, 5),
    ];
    feed(&mut big, t0, &mut rng, &frames);
    let mut count = [0u32; 12];
    for _ in 0..2000 {
        let (m, args) = request(
            &big.start_thing(t0, &mut rng, Thing::EnterRandomSpace)
                .unwrap(),
        );
        assert_eq!(m, "EnterSpace");
        count[args[0].as_i64().unwrap() as usize] += 1;
    }
    assert_eq!((count[0], count[5], count[11]), (0, 0, 0), "{count:?}");
    for k in [1, 2, 3, 4, 7, 8, 9, 10] {
        assert!((120..=290).contains(&count[k]), "kind {k}: {count:?}");
    }
    assert!((300..=500).contains(&count[6]), "{count:?}");

    // In a space of another kind than 0, the things are picked among all eleven.
    let mut picked = std::collections::HashSet::new();
    for _ in 0..200 {
        next_call(&mut bot, &mut t, &mut rng);
        picked.insert(bot.current_thing().unwrap());
        // Let it time out (its failure is not the point here) unless it moves the bot.
        t += Thing::TestAOI.timeout();
        bot.on_tick(t, &mut rng);
        bot.take_events();
        if bot.space().is_none_or(|(_, k)| k == 0) {
            feed(&mut bot, t, &mut rng, &[space("awVBNWhsgjH2K002", 2)]);
        }
    }
    assert_eq!(picked.len(), Thing::ALL.len(), "{picked:?}");
}

#[test]
fn enter_random_space_completes_on_the_next_space_only() {
    let t0 = Instant::now();
    let mut rng = Rng::new(13);
    let mut bot = logged_in(t0, &mut rng);
    // Neighbours of the old space.
    let m = Value::Map(vec![(s("name"), s("monster"))]);
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[
            create(MONSTER, "Monster", false, [0.0; 4], m),
            neighbour_avatar(NEIGHBOUR, [1.0; 4]),
        ],
    );
    let req = bot
        .start_thing(t0, &mut rng, Thing::EnterRandomSpace)
        .unwrap();
    let (method, args) = request(&req);
    assert_eq!(method, "EnterSpace");
    let k = args[0].as_i64().unwrap();
    assert!(k == 1 || k == 2);
    assert_eq!(req, want_call(AVATAR, "EnterSpace", &[&go_int(k)]));

    // Leaving: the space and the neighbours go; nothing is done yet.
    let t1 = t0 + Duration::from_millis(40);
    let leave = [
        destroy(MONSTER, "Monster"),
        destroy(NEIGHBOUR, "Avatar"),
        destroy(SPACE98, SPACE_TYPE),
    ];
    assert!(feed(&mut bot, t1, &mut rng, &leave).is_empty());
    assert!(bot.take_events().is_empty());
    assert_eq!(bot.space(), None);
    assert!(bot.entity(&eid(MONSTER)).is_none() && bot.entity(&eid(NEIGHBOUR)).is_none());
    assert_eq!(bot.current_thing(), Some(Thing::EnterRandomSpace));

    // The new space completes it; the Avatar's new position follows.
    let t2 = t0 + Duration::from_millis(55);
    let new_space = "awVBNWhsgjH2AAAS";
    let arrive = [
        space(new_space, k),
        sync_on_clients(&[(AVATAR, [120.0, 0.0, -7.0, 0.5])]),
    ];
    feed(&mut bot, t2, &mut rng, &arrive);
    assert_eq!(
        bot.take_events(),
        vec![Event::ThingDone {
            thing: Thing::EnterRandomSpace,
            latency: Duration::from_millis(55)
        }]
    );
    assert_eq!(bot.space(), Some((eid(new_space), k)));
    let pos = bot.player().unwrap().1.pos;
    assert_eq!((pos.x, pos.z, pos.yaw), (120.0, -7.0, 0.5));

    // A space while another thing is in progress completes nothing.
    bot.start_thing(t2, &mut rng, Thing::TestListField).unwrap();
    feed(&mut bot, t2, &mut rng, &[space(SPACE98, 98)]);
    assert!(bot.take_events().is_empty());
    assert_eq!(bot.current_thing(), Some(Thing::TestListField));

    // A timeout fails.
    bot.on_tick(t2 + Duration::from_secs(5), &mut rng);
    bot.start_thing(t2, &mut rng, Thing::EnterRandomSpace)
        .unwrap();
    bot.on_tick(t2 + Duration::from_secs(10), &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 2 && f[1].contains("DoEnterRandomSpace TIMEOUT"),
        "{f:?}"
    );
}

#[test]
fn enter_random_nil_space_completes_on_its_reply_and_forces_an_enter() {
    let t0 = Instant::now();
    let mut rng = Rng::new(14);
    let mut bot = logged_in(t0, &mut rng);
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[neighbour_avatar(NEIGHBOUR, [0.0; 4])],
    );
    let req = bot
        .start_thing(t0, &mut rng, Thing::EnterRandomNilSpace)
        .unwrap();
    assert_eq!(req, want_call(AVATAR, "EnterRandomNilSpace", &[]));

    // The server moves the Avatar to a nil space: its space and neighbours go, then the reply.
    // The reply on another entity does not complete it.
    let t1 = t0 + Duration::from_millis(30);
    let frames = [
        destroy(NEIGHBOUR, "Avatar"),
        destroy(SPACE98, SPACE_TYPE),
        call(AVATAR, "OnEnterRandomNilSpace", &[]),
    ];
    let other = [
        neighbour_avatar(NEIGHBOUR, [0.0; 4]),
        call(NEIGHBOUR, "OnEnterRandomNilSpace", &[]),
    ];
    feed(&mut bot, t0, &mut rng, &other);
    assert!(bot.take_events().is_empty());
    assert!(feed(&mut bot, t1, &mut rng, &frames).is_empty());
    assert_eq!(
        bot.take_events(),
        vec![Event::ThingDone {
            thing: Thing::EnterRandomNilSpace,
            latency: Duration::from_millis(30)
        }]
    );
    assert_eq!(bot.space(), None);

    // The next thing is forced: EnterSpace(1 or 2).
    let mut t = t1;
    let p = next_call(&mut bot, &mut t, &mut rng);
    let (method, args) = request(&p);
    assert_eq!(method, "EnterSpace");
    assert!(matches!(args[0].as_i64(), Some(1 | 2)), "{args:?}");

    // A reply with arguments fails; a timeout fails.
    bot.on_frame(
        t,
        &call(AVATAR, "OnEnterRandomNilSpace", &[Value::Int(1)]),
        &mut rng,
    );
    assert!(failures(&mut bot)[0].contains("OnEnterRandomNilSpace takes 0 arguments"));
    bot.start_thing(t, &mut rng, Thing::EnterRandomNilSpace)
        .unwrap();
    bot.on_tick(t + Thing::EnterRandomNilSpace.timeout(), &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("DoEnterRandomNilSpace TIMEOUT"),
        "{f:?}"
    );
}

#[test]
fn test_aoi_needs_the_tester_on_the_client_when_its_reply_comes() {
    let t0 = Instant::now();
    let mut rng = Rng::new(15);
    let mut bot = logged_in(t0, &mut rng);
    let req = bot.start_thing(t0, &mut rng, Thing::TestAOI).unwrap();
    assert_eq!(req, want_call(AVATAR, "TestAOI", &[]));
    // The captured AOITester, the reply, the tester's destruction.
    let t1 = t0 + Duration::from_millis(12);
    let frames = [
        payload(A_CREATE_AOITESTER),
        call(AVATAR, "OnTestAOI", &[s(AOITESTER)]),
    ];
    assert!(feed(&mut bot, t1, &mut rng, &frames).is_empty());
    let tester = bot.entity(&eid(AOITESTER)).unwrap();
    assert_eq!(tester.type_name, "AOITester");
    assert_eq!((tester.pos.x, tester.pos.z), (-190.0, -33.0));
    assert_eq!(
        bot.take_events(),
        vec![Event::ThingDone {
            thing: Thing::TestAOI,
            latency: Duration::from_millis(12)
        }]
    );
    feed(&mut bot, t1, &mut rng, &[destroy(AOITESTER, "AOITester")]);
    assert!(bot.entity(&eid(AOITESTER)).is_none());
    assert_eq!(bot.things_done(), 1);

    // The reply before the tester (or without it): a failure that ends the thing, which
    // does not count as done and does not time out later.
    bot.start_thing(t1, &mut rng, Thing::TestAOI).unwrap();
    bot.on_frame(t1, &call(AVATAR, "OnTestAOI", &[s(AOITESTER)]), &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("can not find AOITester"),
        "{f:?}"
    );
    assert_eq!(bot.current_thing(), None);
    assert_eq!(bot.things_done(), 1);
    bot.on_tick(t1 + Duration::from_secs(5), &mut rng);
    assert!(failures(&mut bot).is_empty());
    // An argument that is not an entity ID fails the same way.
    bot.on_frame(t1, &call(AVATAR, "OnTestAOI", &[Value::Int(6)]), &mut rng);
    assert_eq!(failures(&mut bot).len(), 1);
    // A tester that is known but the reply on another entity: nothing is done.
    bot.start_thing(t1, &mut rng, Thing::TestAOI).unwrap();
    let frames = [
        payload(A_CREATE_AOITESTER),
        neighbour_avatar(NEIGHBOUR, [0.0; 4]),
        call(NEIGHBOUR, "OnTestAOI", &[s(AOITESTER)]),
    ];
    feed(&mut bot, t1, &mut rng, &frames);
    assert!(done(&mut bot).is_empty());
    assert_eq!(bot.current_thing(), Some(Thing::TestAOI));
    // And its timeout is a failure.
    bot.on_tick(t1 + Duration::from_secs(5), &mut rng);
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("DoTestAOI TIMEOUT"), "{f:?}");
}

#[test]
fn test_call_all_echoes_every_plz_echo_on_its_entity_and_completes_on_its_reply() {
    let t0 = Instant::now();
    let mut rng = Rng::new(16);
    let mut bot = logged_in(t0, &mut rng);
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[neighbour_avatar(NEIGHBOUR, [0.0; 4])],
    );
    let req = bot.start_thing(t0, &mut rng, Thing::TestCallAll).unwrap();
    assert_eq!(req, want_call(AVATAR, "TestCallAll", &[]));

    // Its own Avatar's CallAllClients: the echo goes to the Avatar with its ID.
    let t1 = t0 + Duration::from_millis(10);
    let sent = feed(
        &mut bot,
        t1,
        &mut rng,
        &[call(AVATAR, "TestCallAllPlzEcho", &[s(AVATAR)])],
    );
    let echo_own = want_call(AVATAR, "TestCallAllEcho", &[&go_eid(AVATAR)]);
    assert_eq!(sent, vec![echo_own]);
    assert!(bot.take_events().is_empty());
    assert_eq!(bot.current_thing(), Some(Thing::TestCallAll));

    // A neighbour's CallAllClients (captured): the echo goes to the neighbour, so its
    // server-side count is the one decremented.
    let sent = feed(&mut bot, t1, &mut rng, &[payload(A_PLZ_ECHO)]);
    assert_eq!(
        sent,
        vec![want_call(
            NEIGHBOUR,
            "TestCallAllEcho",
            &[&go_eid(NEIGHBOUR)]
        )]
    );
    // GoWorld echoes on the entity the call came to, with the argument as it came.
    let sent = feed(
        &mut bot,
        t1,
        &mut rng,
        &[call(NEIGHBOUR, "TestCallAllPlzEcho", &[s(AVATAR)])],
    );
    assert_eq!(
        sent,
        vec![want_call(NEIGHBOUR, "TestCallAllEcho", &[&go_eid(AVATAR)])]
    );

    // OnTestCallAll on the neighbour completes nothing; on the Avatar it completes the thing.
    feed(
        &mut bot,
        t1,
        &mut rng,
        &[call(NEIGHBOUR, "OnTestCallAll", &[])],
    );
    assert!(bot.take_events().is_empty());
    let t2 = t0 + Duration::from_millis(25);
    feed(
        &mut bot,
        t2,
        &mut rng,
        &[call(AVATAR, "OnTestCallAll", &[])],
    );
    assert_eq!(
        bot.take_events(),
        vec![Event::ThingDone {
            thing: Thing::TestCallAll,
            latency: Duration::from_millis(25)
        }]
    );

    // A PlzEcho on an entity the client does not know: a failure, no echo.
    feed(&mut bot, t2, &mut rng, &[destroy(NEIGHBOUR, "Avatar")]);
    let sent = bot.on_frame(t2, &payload(A_PLZ_ECHO), &mut rng);
    assert!(sent.is_empty());
    let f = failures(&mut bot);
    assert!(f.len() == 1 && f[0].contains("is not found while calling method TestCallAllPlzEcho"));
    // Wrong arities fail and send nothing; a timeout fails.
    assert!(bot
        .on_frame(t2, &call(AVATAR, "TestCallAllPlzEcho", &[]), &mut rng)
        .is_empty());
    bot.on_frame(t2, &call(AVATAR, "OnTestCallAll", &[s(AVATAR)]), &mut rng);
    assert_eq!(failures(&mut bot).len(), 2);
    bot.start_thing(t2, &mut rng, Thing::TestCallAll).unwrap();
    bot.on_tick(t2 + Thing::TestCallAll.timeout(), &mut rng);
    let f = failures(&mut bot);
    assert!(
        f.len() == 1 && f[0].contains("DoTestCallAll TIMEOUT"),
        "{f:?}"
    );
}

#[test]
fn neighbours_come_go_move_and_take_attribute_updates_and_calls() {
    let t0 = Instant::now();
    let mut rng = Rng::new(17);
    let mut bot = logged_in(t0, &mut rng);
    let m = Value::Map(vec![(s("name"), s("monster"))]);
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[
            create(MONSTER, "Monster", false, [3.0, 0.0, 4.0, 1.0], m),
            neighbour_avatar(NEIGHBOUR, [-150.0, 0.0, -20.0, 0.0]),
        ],
    );
    let mon = bot.entity(&eid(MONSTER)).unwrap();
    assert_eq!(mon.type_name, "Monster");
    assert_eq!((mon.pos.x, mon.pos.z, mon.pos.yaw), (3.0, 4.0, 1.0));
    assert_eq!(mon.attrs.map_get("name"), Some(&s("monster")));
    let nb = bot.entity(&eid(NEIGHBOUR)).unwrap();
    assert_eq!((nb.type_name.as_str(), nb.pos.x), ("Avatar", -150.0));
    // Still one player.
    assert_eq!(bot.player().unwrap().0, &eid(AVATAR));

    // 1502: known entities move (yaw included), unknown ones are ignored.
    let recs = [
        (NEIGHBOUR, [-149.5, 0.0, -21.0, 2.0]),
        ("awVBNWhsgjH2ZZZZ", [1.0, 1.0, 1.0, 1.0]),
        (AVATAR, [-189.0, 0.0, -32.0, 0.25]),
    ];
    feed(&mut bot, t0, &mut rng, &[sync_on_clients(&recs)]);
    let nb = bot.entity(&eid(NEIGHBOUR)).unwrap().pos;
    assert_eq!((nb.x, nb.y, nb.z, nb.yaw), (-149.5, 0.0, -21.0, 2.0));
    assert!(bot.entity(&eid("awVBNWhsgjH2ZZZZ")).is_none());
    let me = bot.player().unwrap().1.pos;
    assert_eq!((me.x, me.z, me.yaw), (-189.0, -32.0, 0.25));

    // The neighbour's AllClients attributes (1004, 1008) and a chat call on it.
    let tl = [s("testListField")];
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[
            map_change(NEIGHBOUR, &[], "level", Value::Int(2)),
            list_append(NEIGHBOUR, &tl, Value::Int(7)),
            call(
                NEIGHBOUR,
                "OnTestListField",
                &[Value::Array(vec![Value::Int(7)])],
            ),
        ],
    );
    let nb = bot.entity(&eid(NEIGHBOUR)).unwrap();
    assert_eq!(nb.attrs.map_get("level"), Some(&Value::Int(2)));
    assert_eq!(
        nb.attrs.map_get("testListField"),
        Some(&Value::Array(vec![Value::Int(7)]))
    );
    assert!(
        done(&mut bot).is_empty(),
        "a neighbour's list is not the bot's thing"
    );
    // Its SendMail receiver may now be the neighbour.
    let mut receivers = std::collections::HashSet::new();
    for _ in 0..40 {
        let (_, args) = request(&bot.start_thing(t0, &mut rng, Thing::SendMail).unwrap());
        receivers.insert(args[0].as_str().unwrap().to_string());
    }
    assert_eq!(receivers.len(), 2, "{receivers:?}");
    assert!(receivers.contains(NEIGHBOUR));

    // A second create of a known entity keeps the one the client has (GoWorld).
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[neighbour_avatar(NEIGHBOUR, [0.0; 4])],
    );
    assert_eq!(bot.entity(&eid(NEIGHBOUR)).unwrap().pos.x, -149.5);

    // 1003 removes them; then their updates and calls are failures, their syncs ignored.
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[destroy(MONSTER, "Monster"), destroy(NEIGHBOUR, "Avatar")],
    );
    assert!(bot.entity(&eid(MONSTER)).is_none() && bot.entity(&eid(NEIGHBOUR)).is_none());
    assert!(bot.player().is_some() && bot.space().is_some());
    feed(&mut bot, t0, &mut rng, &[sync_on_clients(&recs[..1])]);
    for f in [
        map_change(NEIGHBOUR, &[], "level", Value::Int(3)),
        list_pop(NEIGHBOUR, &tl),
        call(NEIGHBOUR, "TestCallAllPlzEcho", &[s(NEIGHBOUR)]),
        call(MONSTER, "OnTestAOI", &[s(MONSTER)]),
    ] {
        assert!(bot.on_frame(t0, &f, &mut rng).is_empty());
        let fails = failures(&mut bot);
        assert!(
            fails.len() == 1 && fails[0].contains("not found"),
            "{fails:?}"
        );
    }
    // A destroy of an unknown entity or space is only logged (GoWorld).
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[
            destroy(MONSTER, "Monster"),
            destroy("awVBNWhsgjH2ZZZZ", SPACE_TYPE),
        ],
    );
    assert_eq!(bot.space(), Some((eid(SPACE98), 98)));
}

/// A stand-in for test_game's Avatar (with its space, one neighbour Avatar and a Monster):
/// answers the things the way it does (list ops, then the reply; the complex attr built step
/// by step, then cleared; chat, mail and publish replies; spaces, the nil space, the AOI
/// tester and the call-all echoes).
struct FakeServer {
    list: Vec<i64>,
    n: i64,
    kind_max: i64,
    space: Option<(String, i64)>,
    /// Whether the Monster and the neighbour are in the space (not in the first one).
    neighbours: bool,
    spaces: u32,
    /// Echoes still expected for the bot's own TestCallAll.
    call_all_left: u32,
    neighbour_echoes: u32,
    nil_spaces: u32,
}

impl FakeServer {
    fn leave_space(&mut self, out: &mut Vec<Vec<u8>>) {
        if let Some((e, _)) = self.space.take() {
            if std::mem::take(&mut self.neighbours) {
                out.push(destroy(MONSTER, "Monster"));
                out.push(destroy(NEIGHBOUR, "Avatar"));
            }
            out.push(destroy(&e, SPACE_TYPE));
        }
    }

    fn answer(&mut self, req: &[u8]) -> Vec<Vec<u8>> {
        let (target, method, args) = decode_call(req);
        let tl = [s("testListField")];
        if method == "TestCallAllEcho" {
            assert_eq!(args, vec![s(&target)], "echo on the caller with its ID");
            if target == NEIGHBOUR {
                self.neighbour_echoes += 1;
                return vec![];
            }
            assert_eq!(target, AVATAR);
            self.call_all_left -= 1;
            return if self.call_all_left == 0 {
                vec![call(AVATAR, "OnTestCallAll", &[])]
            } else {
                vec![]
            };
        }
        assert_eq!(target, AVATAR);
        let in_space = self.space.as_ref().is_some_and(|(_, k)| *k != 0);
        if method != "EnterSpace" {
            assert!(in_space, "{method} outside a space");
        }
        match method.as_str() {
            "EnterSpace" => {
                let k = args[0].as_i64().unwrap();
                assert!((1..=self.kind_max).contains(&k));
                assert_ne!(Some(k), self.space.as_ref().map(|(_, k)| *k));
                let mut out = Vec::new();
                self.leave_space(&mut out);
                self.spaces += 1;
                let e = format!("awVBNWhsgjH2S{:03}", self.spaces);
                out.push(space(&e, k));
                let m = Value::Map(vec![(s("name"), s("monster"))]);
                out.push(create(MONSTER, "Monster", false, [0.0; 4], m));
                out.push(neighbour_avatar(NEIGHBOUR, [10.0, 0.0, 10.0, 0.0]));
                out.push(sync_on_clients(&[(AVATAR, [12.0, 0.0, 9.0, 0.0])]));
                self.space = Some((e, k));
                self.neighbours = true;
                out
            }
            "EnterRandomNilSpace" => {
                let mut out = Vec::new();
                self.leave_space(&mut out);
                self.nil_spaces += 1;
                out.push(call(AVATAR, "OnEnterRandomNilSpace", &[]));
                out
            }
            "TestAOI" => {
                let p = [12.0, 0.0, 9.0, 0.0];
                vec![
                    create(AOITESTER, "AOITester", false, p, Value::Map(vec![])),
                    call(AVATAR, "OnTestAOI", &[s(AOITESTER)]),
                    destroy(AOITESTER, "AOITester"),
                ]
            }
            "TestCallAll" => {
                // 1 + the neighbour Avatar, whose client echoes at once. The neighbour calls
                // all its clients now and then too.
                self.call_all_left = 1;
                let mut out = vec![call(AVATAR, "TestCallAllPlzEcho", &[s(AVATAR)])];
                if self.neighbours {
                    out.push(call(NEIGHBOUR, "TestCallAllPlzEcho", &[s(NEIGHBOUR)]));
                }
                out
            }
            "TestListField" => {
                self.n += 1;
                let mut out = Vec::new();
                if self.n % 3 == 0 && !self.list.is_empty() {
                    self.list.pop();
                    out.push(list_pop(AVATAR, &tl));
                } else {
                    self.list.push(self.n);
                    out.push(list_append(AVATAR, &tl, Value::Int(self.n)));
                }
                let l = Value::Array(self.list.iter().map(|&i| Value::Int(i)).collect());
                out.push(call(AVATAR, "OnTestListField", &[l]));
                out
            }
            "TestComplexAttr" => {
                let ca = s("complexAttr");
                let p3 = [s("key2"), s("key1"), ca.clone()];
                vec![
                    map_change(AVATAR, &[], "complexAttr", Value::Map(vec![])),
                    map_change(
                        AVATAR,
                        std::slice::from_ref(&ca),
                        "key1",
                        Value::Map(vec![]),
                    ),
                    map_change(
                        AVATAR,
                        &[s("key1"), ca.clone()],
                        "key2",
                        Value::Array(vec![]),
                    ),
                    list_append(AVATAR, &p3, Value::Bool(true)),
                    list_append(AVATAR, &p3, Value::Array(vec![])),
                    list_append(
                        AVATAR,
                        &[Value::Int(1), s("key2"), s("key1"), ca],
                        Value::Map(vec![]),
                    ),
                    payload(C_FINALKEY),
                    call(AVATAR, "OnTestComplexAttrStep1", &[]),
                    payload(C_CLEAR),
                    call(AVATAR, "OnTestComplexAttrClear", &[]),
                ]
            }
            "Say" => vec![filtered(
                "OnSay",
                &[s(AVATAR), s("无名"), args[0].clone(), args[1].clone()],
            )],
            "SendMail" => vec![call(AVATAR, "OnSendMail", &[Value::Bool(true)])],
            "GetMails" => vec![call(AVATAR, "OnGetMails", &[Value::Bool(true)])],
            "TestPublish" => {
                let content = format!("{AVATAR}: hello npc, this is a test publish message");
                vec![call(
                    AVATAR,
                    "OnTestPublish",
                    &[s(AVATAR), s("npc"), s(&content)],
                )]
            }
            other => panic!("unexpected call {other}"),
        }
    }
}

#[test]
fn the_thing_loop_runs_every_thing_one_at_a_time_for_five_minutes() {
    let t0 = Instant::now();
    let mut rng = Rng::new(6);
    let mut bot = logged_in(t0, &mut rng);
    let mut server = FakeServer {
        list: Vec::new(),
        n: 0,
        kind_max: 2,
        space: Some((SPACE98.to_string(), 98)),
        neighbours: false,
        spaces: 0,
        call_all_left: 0,
        neighbour_echoes: 0,
        nil_spaces: 0,
    };
    let mut done = Vec::new();
    let mut requests = 0;
    let mut doing = false;
    let mut t = t0;
    // Every 11 arrives 20 ms after it is sent, and the server answers at once.
    let mut inflight: Vec<(Instant, Vec<u8>)> = Vec::new();
    while t < t0 + Duration::from_secs(300) {
        t += Duration::from_millis(10);
        let due: Vec<_> = inflight.iter().filter(|(d, _)| *d <= t).cloned().collect();
        inflight.retain(|(d, _)| *d > t);
        for (_, req) in due {
            for f in server.answer(&req) {
                for p in bot.on_frame(t, &f, &mut rng) {
                    // Echoes only.
                    assert_eq!(decode_call(&p).1, "TestCallAllEcho");
                    inflight.push((t + Duration::from_millis(20), p));
                }
            }
        }
        for p in bot.on_tick(t, &mut rng) {
            if p[..2] == mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes() {
                assert!(!doing, "two things at once");
                doing = true;
                requests += 1;
                inflight.push((t + Duration::from_millis(20), p));
            } else {
                assert_eq!(p[..2], mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes());
            }
        }
        for e in bot.take_events() {
            match e {
                Event::ThingDone { thing, latency } => {
                    assert!(latency >= Duration::from_millis(20));
                    // TestCallAll: request, echo, reply.
                    assert!(
                        latency <= Duration::from_millis(50),
                        "{thing:?} {latency:?}"
                    );
                    doing = false;
                    done.push(thing);
                }
                Event::Failure(f) => panic!("{f}"),
            }
        }
    }
    // About one thing per 3 s on average.
    assert!((70..=130).contains(&done.len()), "{}", done.len());
    assert!(requests - done.len() <= 1);
    for (thing, _) in Thing::ALL {
        assert!(done.contains(&thing), "{thing:?} never done: {done:?}");
    }
    // Every nil space was followed by a (forced) enter.
    for w in done.windows(2) {
        if w[0] == Thing::EnterRandomNilSpace {
            assert_eq!(w[1], Thing::EnterRandomSpace);
        }
    }
    assert!(server.nil_spaces > 0 && server.neighbour_echoes > 0);
    assert_eq!(bot.things_done(), done.len() as u64);
}

#[test]
fn things_flag_selects_what_bots_pick() {
    use crate::bot::Thing;
    let go = Thing::mask_from("goworld").unwrap();
    assert_eq!(go.count_ones(), 8);
    let all = Thing::mask_from("all").unwrap();
    assert_eq!(all.count_ones(), Thing::ALL.len() as u32);
    assert_eq!(
        Thing::mask_from("DoTestAOI,DoTestCallAll")
            .unwrap()
            .count_ones(),
        2
    );
    assert_eq!(
        Thing::mask_from("DoTestAOI,DoNothing"),
        Err(ThingsError::Unknown {
            name: "DoNothing".into()
        })
    );
    assert_eq!(Thing::mask_from(" , "), Err(ThingsError::Empty));
    assert_eq!(
        Thing::mask_from("DoNothing").unwrap_err().to_string(),
        "unknown thing DoNothing"
    );
    assert!(Thing::mask_from("").is_err());
    // GoWorld's mix excludes exactly the mail and publish things.
    for (t, _) in Thing::ALL {
        let in_go = Thing::mask_from(t.name()).unwrap() & go != 0;
        let service = matches!(t, Thing::SendMail | Thing::GetMails | Thing::TestPublish);
        assert_eq!(in_go, !service, "{}", t.name());
    }
}
