//! Hot swap cost at scale: a game with `-N` entities (default 10 000 and 100 000) is frozen
//! and thawed in memory, and the freeze file written the way the game binary writes it
//! (temporary file, fsync, rename). Prints the freeze time, the file size, the write time and
//! the restore time (thaw into a fresh game, as `-restore` does before connecting).
//!
//! The scene: one space per 1 000 entities, AOI distance 100 over 1 000 × 1 000, entities at
//! random positions, each with five attributes (two of them nested) and a repeating timer.
//!
//! `cargo run --release -p goworld-tests --bin bench_freeze -- [-N 10000,100000]`

use std::time::{Duration, Instant, SystemTime};

use goworld_common::id::{IdGen, WallClock};
use goworld_common::rng::Rng;
use goworld_common::testio::MemIo;
use goworld_game::args;
use goworld_game::attr::{ListAttr, MapAttr};
use goworld_game::prelude::*;
use goworld_game::{GameService, Settings};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Zone;

impl Entity for Zone {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "Populate",
            Expose::Server,
            |_: &mut Zone, ctx: &mut Ctx, (n, seed): (i64, i64)| {
                let mut rng = Rng::new(seed as u64);
                for _ in 0..n {
                    let x = rng.below(1000) as f32;
                    let z = rng.below(1000) as f32;
                    ctx.create_entity_in_space("Npc", Vec3::new(x, 0.0, z));
                }
            },
        );
    }
    fn on_space_created(&mut self, ctx: &mut Ctx) {
        ctx.enable_aoi(100.0);
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Npc {
    moves: u32,
}

impl Entity for Npc {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(0.0).method(
            "Tick",
            Expose::Server,
            |n: &mut Npc, _: &mut Ctx, (): ()| n.moves += 1,
        );
    }
    fn on_created(&mut self, ctx: &mut Ctx) {
        let mut root = ctx.attrs.root();
        root.set_str("name", "npc");
        root.set_int("hp", 100);
        root.set_int("level", 7);
        root.set("stats", MapAttr::new().with("str", 5i64).with("dex", 3i64));
        root.set("bag", ListAttr::new());
        ctx.add_timer(Duration::from_secs(5), "Tick", args![]);
    }
}

fn types() -> Registry {
    let mut t = Registry::new();
    t.register::<Npc>("Npc").unwrap();
    t.register::<Npc>("Account").unwrap();
    t.register_space::<Zone>().unwrap();
    t
}

fn game(now: Instant, restore: bool) -> GameService {
    let s = Settings {
        game_id: 1,
        desired_dispatchers: 1,
        ban_boot_entity: true,
        boot_entity: "Account".into(),
        restore,
        clock: WallClock {
            at: now,
            unix_secs: 1_700_000_000,
        },
    };
    GameService::new(
        s,
        IdGen::new([1, 2, 3], 1),
        types(),
        goworld_game::store::Stores::NONE,
        Rng::new(1),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip_while(|a| a.trim_start_matches('-') != "N")
        .nth(1)
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .map(|v| v.parse().expect("-N takes numbers separated by commas"))
        .collect();
    let _ = SystemTime::now();
    for n in counts {
        let now = Instant::now();
        let mut io = MemIo::new();
        let mut g = game(now, false);
        let spaces = n.div_ceil(1000);
        let mut ids = Vec::new();
        g.with_game_ctx(&mut io, now, |c| {
            for _ in 0..spaces {
                ids.push(c.create_space_locally(1));
            }
        });
        for (i, s) in ids.iter().enumerate() {
            let k = (n - i * 1000).min(1000) as i64;
            g.with_game_ctx(&mut io, now, |c| c.call(*s, "Populate", args![k, i as i64]));
        }
        let total = g.world().len();
        let t = Instant::now();
        let bytes = g.freeze(&mut io, now).expect("freeze");
        let freeze = t.elapsed();
        let path = std::env::temp_dir().join(format!("bench_freeze-{}.dat", std::process::id()));
        let t = Instant::now();
        {
            use std::io::Write;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).unwrap();
            f.write_all(&bytes).unwrap();
            f.sync_all().unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        let write = t.elapsed();
        let t = Instant::now();
        let read = std::fs::read(&path).unwrap();
        let mut g2 = game(now, true);
        let mut io2 = MemIo::new();
        let r = g2.thaw(&mut io2, now, &read).expect("thaw");
        let restore = t.elapsed();
        let _ = std::fs::remove_file(&path);
        assert_eq!(r.entities, total);
        println!(
            "bench_freeze: {total} entities ({} spaces): freeze {:.0} ms, file {:.1} MB, write+fsync {:.0} ms, read+restore {:.0} ms",
            r.spaces,
            ms(freeze),
            bytes.len() as f64 / 1e6,
            ms(write),
            ms(restore)
        );
    }
}
