//! End-to-end tests: real dispatcher, game and gate processes from `target/release` on
//! 127.0.0.1, one cluster at a time. Build them first (`cargo build --release`); the
//! README's test command does.

mod abuse;
mod gate_limits;
mod goworld_cli;
mod tutorial;

use std::net::SocketAddr;
use std::time::Duration;

use goworld_common::proto::{mt, ClientBound, ClientMsg};
use goworld_tests::{Cluster, Kind, RawClient};

const T: Duration = Duration::from_secs(10);

fn gate_addr(c: &Cluster, i: usize) -> SocketAddr {
    format!("127.0.0.1:{}", c.gate_ports[i]).parse().unwrap()
}

/// Reads frames until the boot entity's CREATE_ENTITY_ON_CLIENT arrives; returns its type.
fn expect_boot_entity(client: &mut RawClient) -> String {
    loop {
        let p = client
            .recv(T)
            .expect("a frame from the gate")
            .expect("gate kept the connection");
        if let Ok(ClientBound::Entity {
            msg:
                ClientMsg::CreateEntityOnClient {
                    is_player: true,
                    type_name,
                    ..
                },
            ..
        }) = ClientBound::decode(&p)
        {
            return type_name;
        }
    }
}

#[test]
fn deployment_1_1_1_comes_up_greets_a_client_and_stops_cleanly() {
    let mut c = Cluster::new("basic", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    c.wait_log(Kind::Game, 1, "deployment ready", 1, T).unwrap();

    let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
    assert_eq!(expect_boot_entity(&mut client), "Account");
    drop(client);

    // Hot swap signals belong to games: dispatchers and gates ignore them.
    for kind in [Kind::Dispatcher, Kind::Gate] {
        for sig in ["USR1", "USR2", "HUP"] {
            c.proc(kind, 1).signal(sig);
        }
    }
    c.wait_log(Kind::Gate, 1, "signal 1 ignored", 1, T).unwrap();
    c.wait_log(Kind::Dispatcher, 1, "signal 1 ignored", 1, T)
        .unwrap();
    let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
    assert_eq!(expect_boot_entity(&mut client), "Account");
    drop(client);

    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    let errors = c.error_lines();
    assert!(errors.is_empty(), "error lines in the logs: {errors:#?}");
}

#[test]
fn a_garbage_frame_closes_only_its_client() {
    let mut c = Cluster::new("garbage", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    let addr = gate_addr(&c, 0);
    let mut bad = RawClient::connect(addr).unwrap();
    let mut good = RawClient::connect(addr).unwrap();
    expect_boot_entity(&mut good);

    bad.send(&mt::HEARTBEAT_FROM_CLIENT.to_le_bytes()).unwrap();
    assert!(
        !bad.closed_within(Duration::from_millis(300)),
        "a heartbeat is fine"
    );
    // A frame whose type no client may send, with junk after it.
    bad.send(&[0xff, 0xee, 1, 2, 3, 4, 5]).unwrap();
    assert!(
        bad.closed_within(T),
        "the gate closes a client that sends garbage"
    );

    // An oversized frame header closes another client the same way.
    let mut huge = RawClient::connect(addr).unwrap();
    huge.send_raw(&(100u32 << 20).to_le_bytes()).unwrap();
    assert!(huge.closed_within(T));

    good.send(&mt::HEARTBEAT_FROM_CLIENT.to_le_bytes()).unwrap();
    assert!(
        !good.closed_within(Duration::from_millis(500)),
        "the other client stays connected"
    );
    c.wait_log(Kind::Gate, 1, "may not be sent by a client", 1, T)
        .unwrap();
    let errors = c.error_lines();
    assert!(
        errors.is_empty(),
        "bad client input is not a server error: {errors:#?}"
    );
}

#[test]
fn games_and_gate_reconnect_after_a_dispatcher_restart() {
    let mut c = Cluster::new("restart", 2, 2, 1, "");
    c.start_all(2, 2, 1).unwrap();
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "deployment ready", 1, T).unwrap();
    }
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "dispatcher1 acknowledged", 1, T)
            .unwrap();
    }
    // The gate's ready line means it sent SET_GATE_ID, not that dispatcher1 has read it.
    c.wait_log(Kind::Dispatcher, 1, "deployment ready", 1, T)
        .unwrap();
    c.proc(Kind::Dispatcher, 1).signal("KILL");
    c.proc(Kind::Dispatcher, 1).wait_exit(T).unwrap();
    c.start(Kind::Dispatcher, 1).unwrap();
    // Each game re-announces itself and is acknowledged again; the gate reconnects.
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "dispatcher1 acknowledged", 2, T)
            .unwrap();
    }
    c.wait_log(Kind::Gate, 1, "connected to dispatcher1", 2, T)
        .unwrap();
    c.wait_log(Kind::Dispatcher, 1, "deployment ready", 2, T)
        .unwrap();
    // And the restarted deployment still serves clients, whichever dispatcher they hash to.
    for _ in 0..4 {
        let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
        assert_eq!(expect_boot_entity(&mut client), "Account");
    }
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
}

#[test]
fn test_client_bots_log_in_and_do_their_things_in_strict_mode() {
    // 1 dispatcher, 2 games, 1 gate: spaces land on both games, so entering a space and
    // the random nil space migrate avatars between the games.
    bots_do_every_thing("bots", 1, 2, 1);
}

#[test]
fn bots_do_every_thing_on_three_dispatchers_three_games_three_gates() {
    // Every kind of traffic crosses dispatchers: an entity's calls, its client's messages and
    // the space queries each take the dispatcher their own ID hashes to.
    bots_do_every_thing("bots-333", 3, 3, 3);
}

/// GoWorld CI's configuration: 3/3/3 with TLS and snappy on every client connection. The
/// bots read both settings from the config, as GoWorld's do, and trust the gates' test
/// certificate; a client speaking plain frames to a TLS gate is closed alone.
#[test]
fn bots_do_every_thing_over_tls_and_snappy_on_three_gates() {
    let extra = tls_and_snappy();
    bots_do_every_thing_then("bots-tls-snappy", 3, 3, 3, &extra, &[], |c| {
        for gate in 1..=3 {
            assert!(
                c.log(Kind::Gate, gate)
                    .contains("client connections: tls+snappy"),
                "gate{gate} is not on TLS + snappy"
            );
        }
        // Plain frames where TLS is expected: that client is closed, with one line.
        let mut raw = RawClient::connect(gate_addr(c, 0)).unwrap();
        raw.send(&[1, 0, 0x80]).unwrap();
        assert!(raw.closed_within(Duration::from_secs(5)));
        c.wait_log(Kind::Gate, 1, "transport: tls", 1, Duration::from_secs(5))
            .unwrap();
    });
}

/// WebSocket bots (GoWorld's `-ws`) on 3/3/3, each to a gate's http_addr at /ws, over wss
/// (TLS) with snappy inside: every layer a WebSocket client can have. (Plain ws, and a bad
/// upgrade refused, are tested in the reactor's own tests.)
#[test]
fn bots_do_every_thing_over_websocket_on_three_gates() {
    let mut extra = tls_and_snappy();
    for gate in 1..=3 {
        extra.push_str(&format!(
            "[gate{gate}]\nhttp_addr=127.0.0.1:{}\n",
            goworld_tests::free_port()
        ));
    }
    bots_do_every_thing_then("bots-wss", 3, 3, 3, &extra, &["-ws"], |c| {
        for gate in 1..=3 {
            let log = c.log(Kind::Gate, gate);
            assert!(
                log.contains("websocket clients at wss://"),
                "gate{gate}: {log}"
            );
        }
        // Every bot came over the WebSocket endpoints.
        let upgrades: f64 = (1..=3)
            .map(|gate| {
                let addr = c.proc(Kind::Gate, gate).http_addr().expect("gate http");
                let body = https_get(addr, "/metrics");
                sample(
                    &scrape("metrics", &body),
                    "goworld_websocket_upgrades_total",
                )
            })
            .sum();
        assert_eq!(upgrades, 100.0);
    });
}

/// KCP bots (GoWorld's `-kcp`) on 3/3/3 with TLS and snappy on top, as GoWorld's CI runs
/// them: each to a gate's listen_addr over UDP, a heartbeat first.
#[test]
fn bots_do_every_thing_over_kcp_with_tls_and_snappy_on_three_gates() {
    let extra = tls_and_snappy();
    bots_do_every_thing_then("bots-kcp", 3, 3, 3, &extra, &["-kcp"], |c| {
        for gate in 1..=3 {
            let log = c.log(Kind::Gate, gate);
            assert!(
                log.contains("kcp clients at 127.0.0.1:"),
                "gate{gate}: {log}"
            );
        }
        // Every bot came over KCP: the gates' KCP endpoints hold all 100 sessions.
        let sessions: f64 = (1..=3)
            .map(|gate| {
                let addr = c.proc(Kind::Gate, gate).http_addr().expect("gate http");
                // With TLS on, the gate's whole HTTP endpoint is https.
                let body = https_get(addr, "/metrics");
                sample(&scrape("metrics", &body), "goworld_kcp_sessions")
            })
            .sum();
        assert_eq!(sessions, 100.0);
    });
}

/// `[gate_common]` lines turning TLS (with conf/'s test certificate) and snappy on.
fn tls_and_snappy() -> String {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    format!(
        "[gate_common]\nencrypt_connection=1\ncompress_connection=1\nrsa_key={}\nrsa_certificate={}\n",
        conf.join("rsa.key").display(),
        conf.join("rsa.crt").display()
    )
}

/// How long the bots of [`bots_do_every_thing`] run.
const BOT_SECS: u64 = 10;

/// Runs 100 strict bots for [`BOT_SECS`] against `d` dispatchers, `g` games and `t` gates: every bot
/// logs in, each of the eleven things is done, nothing fails or disconnects, every gate serves
/// bots, CallNilSpaces reaches every game, every server exits 0 with no error line.
fn bots_do_every_thing(name: &str, d: u16, g: u16, t: u16) {
    bots_do_every_thing_with(name, d, g, t, "");
}

/// The same, with entity storage and the KVDB in a real Redis (GoWorld's layout): logins,
/// mail (the KVDB's GetOrPut and GetRange), saves and loads all go through it.
#[test]
fn bots_do_every_thing_with_storage_and_kvdb_in_redis() {
    let redis = goworld_common::testserver::RedisServer::start();
    let url = redis.url();
    bots_do_every_thing_with(
        "bots-redis",
        1,
        2,
        1,
        &format!("[storage]\ntype=redis\nurl={url}\n\n[kvdb]\ntype=redis\nurl={url}\ndb=1\n"),
    );
    // The Avatars are in Redis, in GoWorld's layout.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    use std::io::{Read, Write};
    conn.write_all(b"SCAN 0 MATCH Avatar$* COUNT 100000\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = conn.read(&mut buf).unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.contains("Avatar$"), "no Avatar in Redis: {reply}");
}

/// The same with entity storage and the KVDB in a MongoDB-wire server (GoWorld's document
/// layout).
#[test]
fn bots_do_every_thing_with_storage_and_kvdb_in_mongodb() {
    let mongo = goworld_common::testserver::MongoServer::start();
    bots_do_every_thing_with("bots-mongo", 1, 2, 1, &mongo_stores(&mongo.url()));
    // The Avatars are in MongoDB, in GoWorld's layout, and so are the mail keys.
    let client = mongodb::sync::Client::with_uri_str(mongo.url()).unwrap();
    let db = client.database("goworld");
    let avatars = db
        .collection::<mongodb::bson::Document>("Avatar")
        .find(mongodb::bson::doc! {})
        .run()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert!(avatars.len() >= 100, "{} Avatars in MongoDB", avatars.len());
    for a in &avatars {
        assert_eq!(a.get_str("_id").unwrap().len(), 16, "{a}");
        assert!(a.get_document("data").unwrap().contains_key("name"), "{a}");
    }
    let kv = db
        .collection::<mongodb::bson::Document>("__kv__")
        .count_documents(mongodb::bson::doc! {})
        .run()
        .unwrap();
    assert!(kv >= 100, "{kv} KVDB documents");
}

/// The same with the KVDB on a Redis Cluster (mail's GetOrPut and GetRange go across its
/// slots; entity storage stays on the filesystem, as GoWorld's cluster is KVDB-only).
#[test]
fn bots_do_every_thing_with_the_kvdb_on_a_redis_cluster() {
    let cluster = goworld_common::testserver::RedisCluster::start();
    let nodes: String = (cluster.start_nodes().iter().enumerate())
        .map(|(i, n)| format!("start_nodes_{}={n}\n", i + 1))
        .collect();
    bots_do_every_thing_with(
        "bots-cluster",
        1,
        2,
        1,
        &format!("[kvdb]\ntype=redis_cluster\n{nodes}"),
    );
}

/// `[storage]` and `[kvdb]` on the MongoDB at `url`.
fn mongo_stores(url: &str) -> String {
    format!(
        "[storage]\ntype=mongodb\nurl={url}\n\n[kvdb]\ntype=mongodb\nurl={url}\ncollection=__kv__\n"
    )
}

fn bots_do_every_thing_with(name: &str, d: u16, g: u16, t: u16, extra: &str) {
    bots_do_every_thing_then(name, d, g, t, extra, &[], |_| {});
}

/// [`bots_do_every_thing_with`], running `check` on the deployment after the bots, before it
/// stops.
fn bots_do_every_thing_then(
    name: &str,
    d: u16,
    g: u16,
    t: u16,
    extra: &str,
    bot_flags: &[&str],
    check: impl FnOnce(&mut Cluster),
) {
    let mut c = Cluster::new(name, d, g, t, extra);
    c.bot_flags = bot_flags.iter().map(|f| f.to_string()).collect();
    c.start_all(d, g, t).unwrap();
    // Bots start once every game has every service (each game then logs the nil-space call):
    // a call held for a shard not known yet on one game can be overtaken by a later call from
    // another game that knew it (Subscribe and then Publish across a migration), a start-up
    // window the services issue documents.
    for game in 1..=g {
        c.wait_log(
            Kind::Game,
            game,
            "CallNilSpaces works in game",
            1,
            Duration::from_secs(20),
        )
        .unwrap();
    }
    let out = c.spawn_bots(100, BOT_SECS).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "test_client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "test_client: bots 100, connected 100, boot entity 100, logged in 100, things "
        ),
        "{stdout}"
    );
    assert!(stdout.contains(", failures 0, disconnects 0"), "{stdout}");
    let things: u64 = stdout
        .split("logged in 100, things ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    // About a third of the bots do a thing each second (a 0-6 s pause between two).
    assert!(
        things >= 13 * BOT_SECS,
        "only {things} things done: {stdout}"
    );
    // Every one of the eleven things was done (GoWorld's eight and our three service ones).
    let done = stdout
        .split("test_client: things done: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("");
    for thing in [
        "DoEnterRandomSpace",
        "DoEnterRandomNilSpace",
        "DoTestAOI",
        "DoTestCallAll",
        "DoTestListField",
        "DoTestComplexAttr",
        "DoSayInWorldChannel",
        "DoSayInProfChannel",
        "DoSendMail",
        "DoGetMails",
        "DoTestPublish",
    ] {
        let n: u64 = done
            .split(&format!("{thing} *"))
            .nth(1)
            .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{thing} never done: {done}");
    }
    check(&mut c);
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    // Bots pick a random gate: each served some (a gate says how many when it stops).
    for gate in 1..=t {
        let log = c.log(Kind::Gate, gate);
        let served: u64 = log
            .split(" clients served since start")
            .next()
            .and_then(|head| head.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(served > 0, "gate{gate} served no bot: {log}");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

/// A raw client speaking GoWorld's login: `Login(user, "123456")` on its Account; returns
/// the frames until the Avatar arrives as the player, and the Avatar's ID. A new Avatar is
/// named 无名.
fn login(
    client: &mut RawClient,
    account: goworld_common::id::EntityId,
    user: &str,
) -> (Vec<ClientBound>, goworld_common::id::EntityId) {
    let (seen, eid, data) = login_with_data(client, account, user);
    assert_eq!(
        data.map_get("name"),
        Some(&goworld_common::msgpack::Value::Str("无名".into())),
        "client data {data:?}"
    );
    (seen, eid)
}

/// [`login`], also answering the Avatar's client data.
fn login_with_data(
    client: &mut RawClient,
    account: goworld_common::id::EntityId,
    user: &str,
) -> (
    Vec<ClientBound>,
    goworld_common::id::EntityId,
    goworld_common::msgpack::Value,
) {
    use goworld_common::msgpack::write_str;
    let mut u = Vec::new();
    write_str(&mut u, user);
    let mut p = Vec::new();
    write_str(&mut p, "123456");
    let call = goworld_common::proto::Msg::CallEntityMethodFromClient {
        eid: account,
        method: "Login".into(),
        args: vec![u, p],
        client_id: None,
    };
    client.send(&call.to_payload()).unwrap();
    let mut seen = Vec::new();
    loop {
        let f = client.recv(T).expect("a frame").expect("connection open");
        let m = ClientBound::decode(&f).expect("decodes");
        if let ClientBound::Entity {
            msg:
                ClientMsg::CreateEntityOnClient {
                    is_player: true,
                    type_name,
                    eid,
                    client_data,
                    ..
                },
            ..
        } = &m
        {
            if type_name == "Avatar" {
                let data = goworld_common::msgpack::decode_exact(client_data).unwrap();
                let eid = *eid;
                seen.push(m);
                return (seen, eid, data);
            }
        }
        seen.push(m);
    }
}

fn boot_entity_id(client: &mut RawClient) -> goworld_common::id::EntityId {
    loop {
        let p = client.recv(T).expect("a frame").expect("open");
        if let Ok(ClientBound::Entity {
            msg:
                ClientMsg::CreateEntityOnClient {
                    is_player: true,
                    eid,
                    ..
                },
            ..
        }) = ClientBound::decode(&p)
        {
            return eid;
        }
    }
}

#[test]
fn login_creates_an_avatar_and_a_returning_user_gets_the_same_one() {
    let mut c = Cluster::new("login", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
    let account = boot_entity_id(&mut client);
    let (seen, avatar) = login(&mut client, account, "alice");
    // OnLogin(true) comes first, then the Account leaves the client before the Avatar arrives.
    assert!(seen.iter().any(|m| matches!(m, ClientBound::Entity { msg: ClientMsg::CallEntityMethodOnClient { method, .. }, .. } if method == "OnLogin")));
    assert!(seen.iter().any(|m| matches!(m, ClientBound::Entity { msg: ClientMsg::DestroyEntityOnClient { type_name, .. }, .. } if type_name == "Account")));
    drop(client);
    // Log straight back in: the Avatar is being destroyed and saved right now. The load waits
    // for that last save (GoWorld loses this race and the login hangs).
    let mut again = RawClient::connect(gate_addr(&c, 0)).unwrap();
    let account = boot_entity_id(&mut again);
    let (_, avatar2) = login(&mut again, account, "alice");
    assert_eq!(
        avatar, avatar2,
        "a returning user gets the Avatar saved in storage"
    );
    drop(again);
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

/// A GoWorld user's database, written by hand in GoWorld's layout, is what test_game finds:
/// the user's KVDB entry names their Avatar, whose saved attributes reach the client.
fn test_game_loads_a_goworld_database(name: &str, extra: &str) {
    let mut c = Cluster::new(name, 1, 1, 1, extra);
    c.start_all(1, 1, 1).unwrap();
    let mut client = RawClient::connect(gate_addr(&c, 0)).unwrap();
    let account = boot_entity_id(&mut client);
    let (_, avatar, data) = login_with_data(&mut client, account, "ada");
    assert_eq!(avatar, goworld_avatar(), "the Avatar the KVDB names");
    use goworld_common::msgpack::Value;
    assert_eq!(
        data.map_get("name"),
        Some(&Value::Str("Ada".into())),
        "{data:?}"
    );
    assert_eq!(data.map_get("level"), Some(&Value::Int(7)), "{data:?}");
    assert_eq!(data.map_get("exp"), Some(&Value::Int(1234)), "{data:?}");
    let mails = data.map_get("mails").and_then(Value::as_map).unwrap();
    assert_eq!(mails.len(), 1, "{data:?}");
    drop(client);
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

/// The Avatar of the hand-written GoWorld database.
fn goworld_avatar() -> goworld_common::id::EntityId {
    goworld_common::id::EntityId::parse("WvLkQ5JtYq8cAAAB").unwrap()
}

#[test]
fn test_game_loads_a_database_in_goworlds_mongodb_layout() {
    use mongodb::bson::{doc, Document};
    let mongo = goworld_common::testserver::MongoServer::start();
    let client = mongodb::sync::Client::with_uri_str(mongo.url()).unwrap();
    let db = client.database("goworld");
    // As GoWorld's mgo writes them: Go ints as int32, the mails map as a document.
    db.collection::<Document>("Avatar")
        .insert_one(doc! {
            "_id": "WvLkQ5JtYq8cAAAB",
            "data": {
                "name": "Ada", "level": 7_i32, "exp": 1234_i32, "prof": 2_i32,
                "spaceKind": 3_i32, "lastMailID": 1_i32,
                "mails": { "1": { "from": "bob", "text": "hi" } },
            },
        })
        .run()
        .unwrap();
    db.collection::<Document>("__kv__")
        .insert_one(doc! { "_id": "ada", "_": "WvLkQ5JtYq8cAAAB" })
        .run()
        .unwrap();
    test_game_loads_a_goworld_database("goworld-mongo", &mongo_stores(&mongo.url()));
}

#[test]
fn test_game_loads_a_database_in_goworlds_redis_layout() {
    let redis = goworld_common::testserver::RedisServer::start();
    let url = redis.url();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // As GoWorld's Redis storage writes them: msgpack maps, integers in their shortest form.
    use goworld_common::msgpack::{write_map_len, write_str};
    let mut data = Vec::new();
    write_map_len(&mut data, 7);
    write_str(&mut data, "name");
    write_str(&mut data, "Ada");
    for (k, v) in [
        ("level", 7),
        ("exp", 1234),
        ("prof", 2),
        ("spaceKind", 3),
        ("lastMailID", 1),
    ] {
        write_str(&mut data, k);
        if v < 128 {
            data.push(v as u8); // positive fixint
        } else {
            data.push(0xcd); // uint16
            data.extend_from_slice(&(v as u16).to_be_bytes());
        }
    }
    write_str(&mut data, "mails");
    write_map_len(&mut data, 1);
    write_str(&mut data, "1");
    write_map_len(&mut data, 2);
    for (k, v) in [("from", "bob"), ("text", "hi")] {
        write_str(&mut data, k);
        write_str(&mut data, v);
    }
    redis::cmd("SET")
        .arg("Avatar$WvLkQ5JtYq8cAAAB")
        .arg(data)
        .query::<()>(&mut conn)
        .unwrap();
    let mut kv = redis::Client::open(format!("{url}/1"))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SET")
        .arg("_KV_ada")
        .arg("WvLkQ5JtYq8cAAAB")
        .query::<()>(&mut kv)
        .unwrap();
    test_game_loads_a_goworld_database(
        "goworld-redis",
        &format!("[storage]\ntype=redis\nurl={url}\n\n[kvdb]\ntype=redis\nurl={url}\ndb=1\n"),
    );
}

/// Hot swap under bots: 1 dispatcher, 2 games, 1 gate, 40 strict bots for 16 s; 5 s in,
/// game1 gets SIGUSR1, writes `game1_freezed.dat` and exits 0, and is started again with
/// `-restore`. The bots see no failure and no disconnect, the restored game renames the file
/// `.restored`, and no server log has an error line.
#[test]
fn a_game_frozen_and_restored_under_bots_loses_nothing() {
    frozen_and_restored_under_bots("hotswap", "");
}

/// The same with entity storage and the KVDB in a real Redis, under the bots' saves, loads
/// and mail: the freeze waits for Redis to answer what is in flight.
#[test]
fn a_game_frozen_and_restored_under_bots_with_redis_loses_nothing() {
    let redis = goworld_common::testserver::RedisServer::start();
    let url = redis.url();
    frozen_and_restored_under_bots(
        "hotswap-redis",
        &format!("[storage]\ntype=redis\nurl={url}\n\n[kvdb]\ntype=redis\nurl={url}\ndb=1\n"),
    );
}

/// The same with entity storage and the KVDB in a MongoDB-wire server.
#[test]
fn a_game_frozen_and_restored_under_bots_with_mongodb_loses_nothing() {
    let mongo = goworld_common::testserver::MongoServer::start();
    frozen_and_restored_under_bots("hotswap-mongo", &mongo_stores(&mongo.url()));
}

fn frozen_and_restored_under_bots(name: &str, extra: &str) {
    let mut c = Cluster::new(name, 1, 2, 1, extra);
    c.start_all(1, 2, 1).unwrap();
    for game in 1..=2 {
        c.wait_log(
            Kind::Game,
            game,
            "CallNilSpaces works in game",
            1,
            Duration::from_secs(20),
        )
        .unwrap();
    }
    let bots = c.spawn_bots(40, 16);
    std::thread::sleep(Duration::from_secs(5));
    let game1 = c.proc(Kind::Game, 1);
    game1.signal("USR1");
    assert_eq!(
        game1.wait_exit(Duration::from_secs(15)).unwrap(),
        Some(0),
        "the frozen game exits 0"
    );
    let file = c.dir.join("game1_freezed.dat");
    assert!(file.exists(), "the freeze file is written");
    c.start_with(Kind::Game, 1, &["-restore"]).unwrap();
    c.wait_log(Kind::Game, 1, "renamed", 1, Duration::from_secs(10))
        .unwrap();
    assert!(!file.exists());
    assert!(c.dir.join("game1_freezed.dat.restored").exists());
    let out = bots.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "test_client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(", failures 0, disconnects 0"), "{stdout}");
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

/// Players outlive their game process: after SIGTERM (which saves every persistent entity
/// before exit 0) and after kill -9 (everything saved before is intact), a returning user
/// gets the same Avatar back, loaded by a new game process.
#[test]
fn players_come_back_from_storage_after_sigterm_and_after_kill_9() {
    players_come_back("durable", "");
}

/// The same with entity storage in a real Redis.
#[test]
fn players_come_back_from_redis_after_sigterm_and_after_kill_9() {
    let redis = goworld_common::testserver::RedisServer::start();
    players_come_back(
        "durable-redis",
        &format!("[storage]\ntype=redis\nurl={}\n", redis.url()),
    );
}

/// The same with entity storage in a MongoDB-wire server.
#[test]
fn players_come_back_from_mongodb_after_sigterm_and_after_kill_9() {
    let mongo = goworld_common::testserver::MongoServer::start();
    players_come_back(
        "durable-mongo",
        &format!("[storage]\ntype=mongodb\nurl={}\n", mongo.url()),
    );
}

/// Entity storage goes down mid-run (Redis killed, then started again on its data): the
/// Avatars created meanwhile are held, not lost; once Redis is back they are written, the
/// stop writes everything, and a new game process loads every one of them.
#[test]
fn no_save_is_lost_while_redis_is_killed_and_restarted() {
    let mut redis = goworld_common::testserver::RedisServer::start_durable();
    let url = redis.url();
    no_save_is_lost_while_storage_is_down(
        "outage-redis",
        &format!("[storage]\ntype=redis\nurl={url}\n"),
        &mut |down| if down { redis.kill() } else { redis.restart() },
    );
}

/// The same with MongoDB stopped (SIGSTOP: connections open, nothing answers) and resumed.
#[test]
fn no_save_is_lost_while_mongodb_is_stopped_and_resumed() {
    let mongo = goworld_common::testserver::MongoServer::start();
    no_save_is_lost_while_storage_is_down(
        "outage-mongo",
        &format!("[storage]\ntype=mongodb\nurl={}\n", mongo.url()),
        &mut |down| if down { mongo.pause() } else { mongo.resume() },
    );
}

fn no_save_is_lost_while_storage_is_down(name: &str, storage: &str, outage: &mut dyn FnMut(bool)) {
    // The KVDB stays on the filesystem, so logins work while storage is down.
    let mut c = Cluster::new(
        name,
        1,
        1,
        1,
        &format!("[game1]\nsave_interval=1\n\n{storage}"),
    );
    c.start_all(1, 1, 1).unwrap();
    let login_as = |c: &Cluster, user: &str| {
        let mut client = RawClient::connect(gate_addr(c, 0)).unwrap();
        let account = boot_entity_id(&mut client);
        let (_, avatar) = login(&mut client, account, user);
        (client, avatar)
    };
    let (_before, before) = login_as(&c, "before");
    outage(true);
    // Created while storage is down: their first saves, and the periodic ones, fail.
    let (_d1, during1) = login_as(&c, "during1");
    let (_d2, during2) = login_as(&c, "during2");
    c.wait_log(
        Kind::Game,
        1,
        "storage is failing",
        1,
        Duration::from_secs(20),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    outage(false);
    c.wait_log(Kind::Game, 1, "storage is back", 1, Duration::from_secs(30))
        .unwrap();
    let p = c.proc(Kind::Game, 1);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(15)).unwrap(), Some(0));
    let log = c.log(Kind::Game, 1);
    assert!(log.contains("every save is written"), "{log}");
    assert!(!log.contains("saves not written"), "{log}");
    // A new process loads each of them from storage.
    c.start(Kind::Game, 1).unwrap();
    for (user, avatar) in [
        ("during1", during1),
        ("during2", during2),
        ("before", before),
    ] {
        let (_client, again) = login_as(&c, user);
        assert_eq!(again, avatar, "{user}'s Avatar was saved");
    }
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    // The outage's own report names the connection error; nothing else may.
    let errors: Vec<String> = (c.error_lines().into_iter())
        .filter(|l| !l.contains("storage is failing") && !l.contains("storage still failing"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn players_come_back(name: &str, extra: &str) {
    let mut c = Cluster::new(
        name,
        1,
        1,
        1,
        &format!("[game1]\nsave_interval=1\n\n{extra}"),
    );
    c.start_all(1, 1, 1).unwrap();
    let login_as = |c: &Cluster, user: &str| {
        let mut client = RawClient::connect(gate_addr(c, 0)).unwrap();
        let account = boot_entity_id(&mut client);
        let (_, avatar) = login(&mut client, account, user);
        (client, avatar)
    };

    // SIGTERM with the player still connected: its Avatar is saved on the way out.
    let (_alice, avatar) = login_as(&c, "alice");
    let p = c.proc(Kind::Game, 1);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(15)).unwrap(), Some(0));
    c.start(Kind::Game, 1).unwrap();
    let (_again, avatar2) = login_as(&c, "alice");
    assert_eq!(
        avatar, avatar2,
        "alice's Avatar was saved by the SIGTERM stop"
    );

    // kill -9 after a periodic save (every second here): the save is intact and loads.
    let (_bob, bob_avatar) = login_as(&c, "bob");
    std::thread::sleep(Duration::from_millis(2500));
    let p = c.proc(Kind::Game, 1);
    let _ = p.child.kill();
    let _ = p.child.wait();
    c.start(Kind::Game, 1).unwrap();
    let (_bob_again, bob_avatar2) = login_as(&c, "bob");
    assert_eq!(bob_avatar, bob_avatar2, "bob's Avatar survived the kill -9");
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

/// `-restore` without a usable freeze file is a clear error and exit 2, and a corrupt file is
/// kept for whoever investigates.
#[test]
fn restore_without_a_usable_freeze_file_fails_clearly_and_keeps_the_file() {
    let mut c = Cluster::new("restore-errors", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    let p = c.proc(Kind::Game, 1);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(15)).unwrap(), Some(0));

    assert!(c.start_with(Kind::Game, 1, &["-restore"]).is_err());
    let code = c
        .proc(Kind::Game, 1)
        .wait_exit(Duration::from_secs(5))
        .unwrap();
    assert_eq!(code, Some(2));
    assert!(
        c.log(Kind::Game, 1)
            .contains("-restore: cannot read game1_freezed.dat"),
        "{}",
        c.log(Kind::Game, 1)
    );

    let file = c.dir.join("game1_freezed.dat");
    std::fs::write(&file, b"\x93not a freeze file").unwrap();
    assert!(c.start_with(Kind::Game, 1, &["-restore"]).is_err());
    let code = c
        .proc(Kind::Game, 1)
        .wait_exit(Duration::from_secs(5))
        .unwrap();
    assert_eq!(code, Some(2));
    assert!(
        c.log(Kind::Game, 1).contains("not a freeze file"),
        "{}",
        c.log(Kind::Game, 1)
    );
    assert!(file.exists(), "the file is kept");
    for (kind, id, code) in c.stop_all() {
        if kind != Kind::Game {
            assert_eq!(code, Some(0), "{kind:?}{id} exit status");
        }
    }
}

/// GetOrPut racing from two processes on every KVDB engine (the filesystem, Redis, a Redis
/// Cluster, MongoDB), one going up the keys and one down, so they meet: for every key
/// exactly one of them stores its value and the other finds that value.
#[test]
fn get_or_put_races_from_two_processes_on_every_kvdb() {
    let dir = std::env::temp_dir().join(format!("goworld-rs-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let redis = goworld_common::testserver::RedisServer::start();
    let cluster = goworld_common::testserver::RedisCluster::start();
    let mongo = goworld_common::testserver::MongoServer::start();
    // Fewer keys where each GetOrPut is an fsync.
    let engines: Vec<(&str, usize, Vec<String>)> = vec![
        (
            "filesystem",
            300,
            vec!["-directory".into(), dir.display().to_string()],
        ),
        ("redis", 2000, vec!["-url".into(), redis.url()]),
        (
            "redis_cluster",
            2000,
            vec!["-nodes".into(), cluster.start_nodes().join(",")],
        ),
        (
            "mongodb",
            1000,
            vec![
                "-url".into(),
                mongo.url(),
                "-collection".into(),
                "race".into(),
            ],
        ),
    ];
    for (kind, keys, args) in engines {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 500;
        let run = |me: &str, down: bool| {
            std::process::Command::new(goworld_tests::bin_dir().join("kvdb_race"))
                .args(["-type", kind, "-me", me, "-keys", &keys.to_string()])
                .args(["-at", &at.to_string()])
                .args(&args)
                .args(down.then_some("-down"))
                .output()
                .expect("kvdb_race runs")
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| run("A", false));
            let b = s.spawn(|| run("B", true));
            (a.join().unwrap(), b.join().unwrap())
        });
        let lines = |o: &std::process::Output| -> Vec<String> {
            assert!(
                o.status.success(),
                "{kind}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        };
        let (la, lb) = (lines(&a), lines(&b));
        assert_eq!((la.len(), lb.len()), (keys, keys), "{kind}");
        let (mut a_won, mut b_won) = (0, 0);
        for i in 0..keys {
            match (la[i].as_str(), lb[i].as_str()) {
                (x, y) if x == format!("{i} stored") && y == format!("{i} found A") => a_won += 1,
                (x, y) if x == format!("{i} found B") && y == format!("{i} stored") => b_won += 1,
                other => panic!("{kind}: key {i}: {other:?}"),
            }
        }
        println!("{kind}: A stored {a_won}, B stored {b_won}");
        assert!(
            a_won > 0 && b_won > 0,
            "{kind}: the two ran at the same time"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP request to an observability endpoint; the status code and the body.
fn http_get(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// A body parsed by tests/scrape/scrape.py (`metrics`: prometheus_client's parser;
/// `status`: JSON): `name{labels} value` or `key value` lines.
/// GET `path` over TLS (trusting conf/rsa.crt); the body.
fn https_get(addr: SocketAddr, path: &str) -> String {
    use goworld_common::transport::{stack::StackSpec, tls};
    use std::io::{Read, Write};
    let cert =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/rsa.crt"))
            .unwrap();
    let spec = StackSpec {
        tls_client: Some((tls::client_config(&cert).unwrap(), "127.0.0.1".into())),
        ..StackSpec::default()
    };
    let mut stack = spec.build(1).unwrap().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut wire = Vec::new();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stack.write(request.as_bytes(), &mut wire).unwrap();
    s.write_all(&wire).unwrap();
    let mut plain = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        let mut answer = Vec::new();
        if stack.read(&buf[..n], &mut plain, &mut answer).is_err() {
            break; // the server's close_notify, or its end
        }
        if !answer.is_empty() {
            s.write_all(&answer).unwrap();
        }
    }
    let text = String::from_utf8_lossy(&plain).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

fn scrape(mode: &str, body: &str) -> Vec<String> {
    let file = std::env::temp_dir().join(format!(
        "goworld-rs-scrape-{}-{mode}.txt",
        std::process::id()
    ));
    std::fs::write(&file, body).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scrape/scrape.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(mode)
        .arg(&file)
        .output()
        .expect("python3 runs (the README's test command installs prometheus_client)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "the reference parser refused the {mode}: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The value of the sample that starts with `prefix` (`name{labels}`), or 0.
fn sample(lines: &[String], prefix: &str) -> f64 {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Every process serves /metrics (Prometheus text that the reference parser reads) and
/// /status (JSON) from its own loop; the counters move with the traffic of a bot run; a
/// request the endpoint does not serve gets its status, and a client that sends nothing
/// holds only its own connection.
#[test]
fn every_process_serves_metrics_and_status_that_move_with_the_traffic() {
    let mut c = Cluster::new("metrics", 1, 1, 1, "");
    c.start_all(1, 1, 1).unwrap();
    c.wait_log(
        Kind::Game,
        1,
        "CallNilSpaces works in game",
        1,
        Duration::from_secs(20),
    )
    .unwrap();
    let addr = |c: &mut Cluster, kind: Kind| {
        c.proc(kind, 1)
            .http_addr()
            .expect("http= in the ready line")
    };
    let (d, g, t) = (
        addr(&mut c, Kind::Dispatcher),
        addr(&mut c, Kind::Game),
        addr(&mut c, Kind::Gate),
    );
    // A silent client holds its own connection only.
    let _silent = std::net::TcpStream::connect(d).unwrap();
    let get =
        |a: SocketAddr, path: &str| http_get(a, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    let before: Vec<Vec<String>> = [d, g, t]
        .iter()
        .map(|a| {
            let (code, body) = get(*a, "/metrics");
            assert_eq!(code, 200);
            scrape("metrics", &body)
        })
        .collect();
    let bots = c.spawn_bots(20, 8);
    std::thread::sleep(Duration::from_secs(5));
    let during: Vec<Vec<String>> = [d, g, t]
        .iter()
        .map(|a| scrape("metrics", &get(*a, "/metrics").1))
        .collect();
    let status: Vec<Vec<String>> = [d, g, t]
        .iter()
        .map(|a| {
            let (code, body) = get(*a, "/status");
            assert_eq!(code, 200);
            scrape("status", &body)
        })
        .collect();
    let out = bots.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (i, name) in ["dispatcher", "game", "gate"].iter().enumerate() {
        assert!(
            sample(&during[i], "goworld_process_resident_memory_bytes{}") > 1e5,
            "{name}: RSS"
        );
        assert!(
            during[i]
                .iter()
                .any(|l| l.starts_with("goworld_process_cpu_seconds_total{}")),
            "{name}: CPU"
        );
        for counter in [
            "goworld_bytes_read_total{}",
            "goworld_bytes_written_total{}",
            "goworld_frame_handler_seconds_count{}",
            "goworld_tick_seconds_count{}",
        ] {
            assert!(
                sample(&during[i], counter) > sample(&before[i], counter),
                "{name}: {counter} did not move: {} -> {}",
                sample(&before[i], counter),
                sample(&during[i], counter)
            );
        }
        assert!(
            during[i]
                .iter()
                .any(|l| l.starts_with("goworld_messages_in_total{msgtype=")),
            "{name}: messages by type"
        );
        assert!(
            status[i].contains(&format!("kind \"{name}\"")),
            "{name}: {:?}",
            status[i]
        );
        assert!(
            status[i].contains(&"id 1".to_string()),
            "{name}: {:?}",
            status[i]
        );
        assert!(
            status[i].contains(&"state \"ready\"".to_string()),
            "{name}: {:?}",
            status[i]
        );
    }
    assert!(
        sample(&during[2], "goworld_clients{}") >= 20.0,
        "{:?}",
        during[2]
    );
    assert!(
        sample(&during[1], "goworld_entities{type=\"Avatar\"}") >= 1.0,
        "Avatars on the game: {:?}",
        during[1]
    );
    assert!(sample(&during[0], "goworld_entities{}") >= 20.0);
    // The bots send 12s but test_game's Avatars never turn client syncing on: counted.
    assert!(
        sample(&during[1], "goworld_client_syncs_ignored_total{}") > 0.0,
        "ignored client syncs: {:?}",
        during[1]
    );
    assert!(status[2]
        .iter()
        .any(|l| l.starts_with("clients ") && l != "clients 0"));
    // What it does not serve.
    assert_eq!(get(g, "/nope").0, 404);
    assert_eq!(http_get(g, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http_get(g, "garbage\r\n\r\n").0, 400);
    let (_, after) = get(d, "/metrics");
    let after = scrape("metrics", &after);
    assert!(sample(&after, "goworld_http_requests_total{outcome=\"served\"}") >= 3.0);
    for (kind, id, code) in c.stop_all() {
        assert_eq!(code, Some(0), "{kind:?}{id} exit status");
    }
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

/// A game cut off from every dispatcher for longer than `link_timeout_ms` (SIGSTOP, as a
/// network cut looks to its peers) is declared dead by each: its players' clients are closed
/// and the other bots carry on; resumed, it rejoins having dropped its stale entities, and
/// everything stops cleanly. The run is tests/src/bin/fault_bots.rs (`-kill silence`), with
/// fewer bots than scripts/fault.sh's.
#[test]
fn a_game_cut_off_past_the_link_timeout_is_declared_dead_and_the_rest_carry_on() {
    let _turn = goworld_tests::take_turn();
    let out = std::process::Command::new(goworld_tests::bin_dir().join("fault_bots"))
        .args(["-N", "100", "-secs", "26", "-at", "8", "-kill", "silence"])
        .output()
        .expect("fault_bots (cargo build --release --workspace --bins)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    assert!(
        out.status.success() && stdout.contains("fault_bots: passed"),
        "fault_bots -kill silence failed:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
