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
    assert_eq!(p[..2], mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes());
    assert_eq!(&p[2..18], AVATAR.as_bytes());
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
    (method, args)
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

/// A bot `test3` that went through the captured login, in its space, at (-190, 0, -33).
fn logged_in(now: Instant, rng: &mut Rng) -> Bot {
    let mut bot = Bot::new(3, true);
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
    bot
}

#[test]
fn login_transcript_sends_gos_exact_login_and_logs_in() {
    let t0 = Instant::now();
    let mut rng = Rng::new(1);
    let mut bot = Bot::new(3, true);
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

    // The space (kind 98) and the Avatar's position.
    feed(
        &mut bot,
        t0,
        &mut rng,
        &[payload(T6_CREATE_SPACE), payload(T7_SYNC)],
    );
    assert_eq!(bot.space(), Some((eid("awVBNWhsgjH2AAAQ"), 98)));
    let pos = bot.player().unwrap().1.pos;
    assert_eq!((pos.x, pos.y, pos.z, pos.yaw), (-190.0, 0.0, -33.0, 0.0));

    // A late OnLogin for the destroyed Account is fine (GoWorld's exception).
    feed(&mut bot, t0, &mut rng, &[payload(T3_ON_LOGIN)]);
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
    let mut quiet = Bot::new(3, false);
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
    let mut bot = Bot::new(7, true);
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
    // Harmless: positions of unknown entities, a filtered call with a player, replies of
    // things not built yet.
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

/// A stand-in for test_game's Avatar: answers the things the way it does (list ops, then
/// the reply; the complex attr built step by step, then cleared; chat, mail and publish
/// replies).
struct FakeAvatar {
    list: Vec<i64>,
    n: i64,
}

impl FakeAvatar {
    fn answer(&mut self, req: &[u8]) -> Vec<Vec<u8>> {
        let method_len = u32::from_le_bytes(req[18..22].try_into().unwrap()) as usize;
        let method = std::str::from_utf8(&req[22..22 + method_len]).unwrap();
        let tl = [s("testListField")];
        match method {
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
            "Say" => {
                let (_, args) = request(req);
                vec![filtered(
                    "OnSay",
                    &[s(AVATAR), s("无名"), args[0].clone(), args[1].clone()],
                )]
            }
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
fn the_thing_loop_runs_one_thing_at_a_time_for_a_minute() {
    let t0 = Instant::now();
    let mut rng = Rng::new(6);
    let mut bot = logged_in(t0, &mut rng);
    let mut server = FakeAvatar {
        list: Vec::new(),
        n: 0,
    };
    let mut done = Vec::new();
    let mut requests = 0;
    let mut t = t0;
    // Replies arrive 20 ms after the request.
    let mut inflight: Option<(Instant, Vec<u8>)> = None;
    while t < t0 + Duration::from_secs(60) {
        t += Duration::from_millis(10);
        if let Some((due, req)) = inflight.take() {
            if t >= due {
                for f in server.answer(&req) {
                    assert!(bot.on_frame(t, &f, &mut rng).is_empty());
                }
            } else {
                inflight = Some((due, req));
            }
        }
        for p in bot.on_tick(t, &mut rng) {
            if p[..2] == mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes() {
                assert!(inflight.is_none(), "two things at once");
                requests += 1;
                inflight = Some((t + Duration::from_millis(20), p));
            }
        }
        for e in bot.take_events() {
            match e {
                Event::ThingDone { thing, latency } => {
                    assert!(latency >= Duration::from_millis(20));
                    assert!(latency <= Duration::from_millis(30));
                    done.push(thing);
                }
                Event::Failure(f) => panic!("{f}"),
            }
        }
    }
    // About one thing per 3 s on average.
    assert!((10..=35).contains(&done.len()), "{}", done.len());
    assert!(requests - done.len() <= 1);
    for (thing, _) in Thing::ALL {
        assert!(done.contains(&thing), "{thing:?} never done: {done:?}");
    }
    assert_eq!(bot.things_done(), done.len() as u64);
}
