//! The game program of `bench_migrate`: entities that move between game1 and game2 as fast
//! as they can, each move a full migration (entering the other game's nil space: GoWorld's
//! three steps through the dispatchers).
//!
//! On game ready, game1 creates `BENCH_MIGRATE_ENTITIES` (environment, default 1) `Bouncer`s.
//! A bouncer notes the wall-clock time and enters the other game's nil space; when it arrives
//! (`on_migrate_in`) the game records how long the move took and sends it back at once.
//! Every 500 ms each game logs one cumulative line for `bench_migrate` to read:
//! `bench_migrate: t_ms=<unix ms> arrivals=<n> sum_us=<total> hist=<counts per bucket>`
//! with the buckets' upper bounds in [`BUCKETS_US`].

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use goworld_common::id::nil_space_id;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

use goworld_tests::MIGRATE_LATENCY_BUCKETS_US as BUCKETS_US;

#[derive(Default)]
struct Stats {
    arrivals: u64,
    sum_us: u64,
    hist: [u64; BUCKETS_US.len()],
}

thread_local! {
    static STATS: RefCell<Stats> = RefCell::new(Stats::default());
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn record(us: u64) {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        s.arrivals += 1;
        s.sum_us += us;
        let i = BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(0);
        s.hist[i] += 1;
    });
}

/// Moves to the other game's nil space, over and over.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Bouncer {
    /// When it left its last game (unix microseconds); travels with it.
    left_us: u64,
}

impl Bouncer {
    fn go(&mut self, ctx: &mut Ctx) {
        self.left_us = now_us();
        let other = if ctx.game_id() == 1 { 2 } else { 1 };
        ctx.enter_space(nil_space_id(other), Vec3::new(0.0, 0.0, 0.0));
    }
}

impl Entity for Bouncer {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "Go",
            Expose::Server,
            |b: &mut Bouncer, ctx: &mut Ctx, (): ()| b.go(ctx),
        );
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        self.go(ctx);
    }
    fn on_migrate_in(&mut self, ctx: &mut Ctx) {
        record(now_us().saturating_sub(self.left_us));
        self.go(ctx);
    }
}

/// The boot entity clients would get (the benchmark connects none).
#[derive(Default, Serialize, Deserialize)]
struct Account;

impl Entity for Account {
    fn describe(_: &mut TypeDesc<Self>) {}
}

fn main() {
    let n: usize = std::env::var("BENCH_MIGRATE_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut types = Registry::new();
    let registered = types
        .register::<Account>("Account")
        .and_then(|()| types.register::<Bouncer>("Bouncer"));
    if let Err(e) = registered {
        goworld_common::process::fail(&format!("bench_migrate_game: {e}"));
    }
    types.on_game_ready(move |ctx| {
        if ctx.game_id() == 1 {
            for _ in 0..n {
                ctx.create_entity_locally("Bouncer");
            }
        }
        ctx.add_timer(Duration::from_millis(500), |_| {
            STATS.with(|s| {
                let s = s.borrow();
                let hist: Vec<String> = s.hist.iter().map(u64::to_string).collect();
                log::info!(
                    "bench_migrate: t_ms={} arrivals={} sum_us={} hist={}",
                    now_us() / 1000,
                    s.arrivals,
                    s.sum_us,
                    hist.join(",")
                );
            })
        });
    });
    goworld_game::run::main("bench_migrate_game", types);
}
