//! The AOI algorithm alone (`goworld_game::aoi`), on GoWorld's reference scene: N entities
//! placed uniformly at random in a 10 000 × 10 000 space, AOI distance (radius) 100 for all,
//! cell size 100; every tick each entity moves by a random step of at most 5 units in X and
//! in Z (uniform in [-5, 5], clamped inside the space).
//!
//! For each N it enters the entities, then ticks for a fixed wall time (at least three ticks)
//! and reports ticks, moves and interest events per second, the mean number of entities each
//! one sees, and the share of one core that moving all N entities at 10 Hz would take. No
//! messages are built: this is the algorithm's cost only. Events are directional: a pair
//! that starts seeing each other counts two.
//!
//! `cargo run --release -p goworld-tests --bin bench_aoi -- [-n 10000] [-secs 5] [-seed 1] [-cell 100]`
//! (without `-n`: 1 000, 10 000 and 50 000 in turn; `-cell` changes the cell size alone).

use std::time::{Duration, Instant};

use goworld_common::rng::Rng;
use goworld_game::aoi::{Aoi, AoiId};
use goworld_tests::procfs::flag;

/// Side of the square space.
const SPACE: f32 = 10_000.0;
/// AOI distance of every entity, and the cell size.
const RADIUS: f32 = 100.0;
/// Largest step per tick on each axis.
const STEP: f32 = 5.0;
/// Fewest ticks a measurement takes, however long they are.
const MIN_TICKS: u64 = 3;

/// One N's figures.
struct Figures {
    n: usize,
    enter_secs: f64,
    ticks: u64,
    secs: f64,
    events: u64,
    mean_neighbours: f64,
}

fn run(n: usize, secs: f64, seed: u64) -> Figures {
    let mut rng = Rng::new(seed);
    let mut aoi: Aoi<u32> = Aoi::new(flag("cell", RADIUS as u64) as f32);
    let mut out = Vec::new();
    let t0 = Instant::now();
    let ids: Vec<AoiId> = (0..n as u32)
        .map(|i| {
            let (x, z) = (rng.f32() * SPACE, rng.f32() * SPACE);
            let id = aoi.enter(i, x, z, RADIUS, &mut out);
            out.clear();
            id
        })
        .collect();
    let enter_secs = t0.elapsed().as_secs_f64();

    let window = Duration::from_secs_f64(secs);
    let (mut ticks, mut events) = (0u64, 0u64);
    let start = Instant::now();
    while ticks < MIN_TICKS || start.elapsed() < window {
        for &id in &ids {
            let (x, z) = aoi.position(id);
            let x = (x + (rng.f32() * 2.0 - 1.0) * STEP).clamp(0.0, SPACE);
            let z = (z + (rng.f32() * 2.0 - 1.0) * STEP).clamp(0.0, SPACE);
            aoi.move_to(id, x, z, &mut out);
            events += out.len() as u64;
            out.clear();
        }
        ticks += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let seen: usize = ids.iter().map(|&id| aoi.interested_in_len(id)).sum();
    Figures {
        n,
        enter_secs,
        ticks,
        secs,
        events,
        mean_neighbours: seen as f64 / n as f64,
    }
}

fn main() {
    let secs = flag("secs", 5) as f64;
    let seed = flag("seed", 1);
    let sizes: Vec<usize> = match flag("n", 0) {
        0 => vec![1_000, 10_000, 50_000],
        n => vec![n as usize],
    };
    println!(
        "AOI alone: {SPACE} x {SPACE} space, radius {RADIUS} for all, cell {RADIUS}, steps of at most {STEP} in X and Z; {secs} s per size"
    );
    println!();
    println!("| entities | ticks/s | moves/s | interest events/s | mean neighbours | one core's share for all moving at 10 Hz | enter all (once) | ticks measured |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let f = run(n, secs, seed);
        let tps = f.ticks as f64 / f.secs;
        println!(
            "| {} | {:.1} | {:.2} M | {:.0} k | {:.1} | {:.2} % | {:.0} ms | {} in {:.1} s |",
            f.n,
            tps,
            tps * f.n as f64 / 1e6,
            f.events as f64 / f.secs / 1e3,
            f.mean_neighbours,
            100.0 * 10.0 / tps,
            f.enter_secs * 1e3,
            f.ticks,
            f.secs
        );
    }
}
