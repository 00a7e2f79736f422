//! The game's entity call path alone, in memory: one `Hub` entity calls `OnPublish(subject,
//! content)` on each of N subscriber entities (as test_game's PublishSubscribeService does for
//! every Avatar), and each subscriber calls `OnTestPublish(publisher, subject, content)` on its
//! own client (as test_game's Avatar does). That is the fan-out DoTestPublish causes: one call
//! per subscriber and one client message per subscriber, the game's largest cost with
//! thousands of bots.
//!
//! A `GameService` with one dispatcher link and a counting `Io` (no sockets, no allocation on
//! the output side) gets N `NOTIFY_CLIENT_CONNECTED` (each creates a subscriber with a client),
//! N `Subscribe` calls to the hub, then `-publishes` `Publish` calls; it reports the wall time
//! per delivered subscriber call (a local call, its argument decoding, the client call's
//! encoding and the frame to the dispatcher) and checks that every client message was sent.
//!
//! `cargo run --release -p goworld-tests --bin bench_calls -- [-n 5000] [-publishes 200] [-one-by-one]`
//! (`-one-by-one`: the hub calls each subscriber with `Ctx::call` instead of one
//! `Ctx::call_many`).

use std::net::SocketAddr;
use std::time::Instant;

use goworld_common::id::{EntityId, IdGen, WallClock};
use goworld_common::proto::Msg;
use goworld_common::reactor::{ConnId, Handler, Io, Origin};
use goworld_common::rng::Rng;
use goworld_game::args;
use goworld_game::prelude::*;
use goworld_game::{GameService, Settings};
use goworld_tests::procfs::flag;

/// Counts frames and bytes; keeps nothing.
#[derive(Default)]
struct CountIo {
    frames: u64,
    bytes: u64,
}

impl Io for CountIo {
    fn send(&mut self, _conn: ConnId, payload: &[u8]) {
        self.frames += 1;
        self.bytes += payload.len() as u64;
    }
    fn send2(&mut self, _conn: ConnId, head: &[u8], tail: &[u8]) {
        self.frames += 1;
        self.bytes += (head.len() + tail.len()) as u64;
    }
    fn close(&mut self, _conn: ConnId, _reason: &str) {}
    fn pending(&self, _conn: ConnId) -> usize {
        0
    }
}

/// The publisher: its subscribers in a plain list.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Hub {
    subs: Vec<EntityId>,
    /// `-one-by-one`: `Ctx::call` per subscriber instead of one `Ctx::call_many`.
    one_by_one: bool,
}

impl Entity for Hub {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("Subscribe", Expose::Server, Hub::subscribe)
            .method("Publish", Expose::Server, Hub::publish);
    }
}

impl Hub {
    fn subscribe(&mut self, _ctx: &mut Ctx, (eid, one_by_one): (EntityId, bool)) {
        self.subs.push(eid);
        self.one_by_one = one_by_one;
    }
    fn publish(&mut self, ctx: &mut Ctx, (subject, content): (String, String)) {
        if self.one_by_one {
            for &eid in &self.subs {
                ctx.call(eid, "OnPublish", args![subject, content]);
            }
        } else {
            ctx.call_many(self.subs.clone(), "OnPublish", args![subject, content]);
        }
    }
}

/// A subscriber with a client, like test_game's Avatar.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Sub;

impl Entity for Sub {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("OnPublish", Expose::Server, Sub::on_publish);
    }
}

impl Sub {
    fn on_publish(&mut self, ctx: &mut Ctx, (subject, content): (String, String)) {
        let publisher = content
            .get(..16)
            .and_then(EntityId::parse)
            .unwrap_or_default();
        ctx.call_client("OnTestPublish", args![publisher, subject, content]);
    }
}

fn main() {
    let n = flag("n", 5000) as usize;
    let publishes = flag("publishes", 200) as usize;
    let one_by_one = std::env::args().any(|a| a == "-one-by-one");
    let t0 = Instant::now();
    let mut types = Registry::new();
    types.register::<Hub>("Hub").unwrap();
    types.register::<Sub>("Sub").unwrap();
    types.on_game_ready(|ctx| {
        ctx.create_entity_locally("Hub");
    });
    let settings = Settings {
        game_id: 1,
        desired_dispatchers: 1,
        ban_boot_entity: false,
        boot_entity: "Sub".into(),
        restore: false,
        clock: WallClock {
            at: t0,
            unix_secs: 1_700_000_000,
        },
    };
    let mut g = GameService::new(
        settings,
        IdGen::new([1, 2, 3], 1),
        types,
        goworld_game::store::Stores::NONE,
        Rng::new(1),
    );
    let mut io = CountIo::default();
    let conn = ConnId { slot: 1, gen: 1 };
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    g.on_open(&mut io, t0, conn, Origin::Dialed { dial: 1 }, addr);
    let ack = Msg::SetGameIdAck {
        disp_id: 1,
        deployment_ready: true,
        games: vec![1],
        rejected: vec![],
        kvreg: vec![],
        declared_dead: false,
    };
    g.on_frame(&mut io, t0, conn, &ack.to_payload());
    g.on_frame(&mut io, t0, conn, &Msg::NotifyDeploymentReady.to_payload());
    let hub = *g
        .world()
        .ids()
        .find(|id| g.world().type_of(id) == Some("Hub"))
        .expect("the ready hook made the hub");

    let mut ids = IdGen::new([9, 9, 9], 2);
    for _ in 0..n {
        let client_id = ids.next(1_700_000_000);
        let boot = ids.next(1_700_000_000);
        let hello = Msg::NotifyClientConnected {
            client_id,
            boot_eid: boot,
            gate_id: Some(1),
        };
        g.on_frame(&mut io, t0, conn, &hello.to_payload());
        let sub = Msg::CallEntityMethod {
            eid: hub,
            method: "Subscribe".into(),
            args: args![boot, one_by_one],
        };
        g.on_frame(&mut io, t0, conn, &sub.to_payload());
    }
    let content = format!("{hub}: hello monster, this is a test publish message");
    let publish = Msg::CallEntityMethod {
        eid: hub,
        method: "Publish".into(),
        args: args!["monster", content],
    }
    .to_payload();

    let (frames0, bytes0) = (io.frames, io.bytes);
    let start = Instant::now();
    for _ in 0..publishes {
        g.on_frame(&mut io, t0, conn, &publish);
    }
    let secs = start.elapsed().as_secs_f64();
    let calls = (n * publishes) as f64;
    let frames = (io.frames - frames0).max(1);
    assert_eq!(
        (io.frames - frames0) as usize,
        n * publishes,
        "one client message per subscriber call"
    );
    println!(
        "bench_calls: {n} subscribers x {publishes} publishes: {:.0} ns per subscriber call ({:.2} M calls/s), {} bytes per client message",
        secs * 1e9 / calls,
        calls / secs / 1e6,
        (io.bytes - bytes0) / frames
    );
}
