//! Migration speed between two game processes: `bench_migrate_game` entities bouncing
//! between game1 and game2 (each move GoWorld's three steps: MIGRATE_REQUEST, its ack,
//! REAL_MIGRATE through the dispatcher), on 1 dispatcher (or `-dispatchers 3`), 2 games and
//! 1 gate, real processes on 127.0.0.1.
//!
//! For each entity count in `-N` (default `1,100,1000`) a fresh deployment runs; after 3 s of
//! warm-up the games' cumulative counters are read twice, `-secs` apart (default 10), and the
//! line printed gives the migrations per second, the latency of one migration (from
//! `enter_space` on the old game to `on_migrate_in` on the new one; average and bucketed
//! percentiles) and each server's CPU over the window. With one entity, the rate is the
//! inverse of the round trip and the latency is that of an idle deployment.
//!
//! `cargo run --release -p goworld-tests --bin bench_migrate -- [-N 1,100,1000] [-secs 10] [-dispatchers 1]`
//! (build the release binaries first).

use std::thread;
use std::time::Duration;

use goworld_tests::procfs::{clk_tck, cpu_ticks, flag};
use goworld_tests::{Cluster, Kind};

use goworld_tests::MIGRATE_LATENCY_BUCKETS_US as BUCKETS_US;

/// One cumulative line of a game.
#[derive(Debug, Clone, Default)]
struct Counters {
    t_ms: u64,
    arrivals: u64,
    sum_us: u64,
    hist: Vec<u64>,
}

fn parse(line: &str) -> Option<Counters> {
    let rest = &line[line.find("bench_migrate: ")? + "bench_migrate: ".len()..];
    let mut c = Counters::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "t_ms" => c.t_ms = v.parse().ok()?,
            "arrivals" => c.arrivals = v.parse().ok()?,
            "sum_us" => c.sum_us = v.parse().ok()?,
            "hist" => {
                c.hist = v
                    .split(',')
                    .map(|x| x.parse().ok())
                    .collect::<Option<_>>()?
            }
            _ => {}
        }
    }
    (c.hist.len() == BUCKETS_US.len()).then_some(c)
}

/// The newest counters game `g` logged.
fn latest(c: &Cluster, g: u16) -> Option<Counters> {
    c.log(Kind::Game, g).lines().rev().find_map(parse)
}

/// The smallest bucket bound under which a fraction `q` of `hist` lies, in ms.
fn percentile(hist: &[u64], q: f64) -> String {
    let total: u64 = hist.iter().sum();
    let want = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want.max(1) {
            return match BUCKETS_US[i] {
                u64::MAX => "> 1000".into(),
                b => format!("<= {:.1}", b as f64 / 1000.0),
            };
        }
    }
    "-".into()
}

fn run(n: u64, secs: u64, dispatchers: u16) {
    let mut c = Cluster::new(&format!("migrate-{n}"), dispatchers, 2, 1, "");
    c.game_binary = "bench_migrate_game";
    c.env.push(("BENCH_MIGRATE_ENTITIES".into(), n.to_string()));
    c.start_all(dispatchers, 2, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    for g in 1..=2 {
        c.wait_log(Kind::Game, g, "bench_migrate: ", 1, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    thread::sleep(Duration::from_secs(3));
    let pids: Vec<(String, u32)> = c
        .procs
        .iter()
        .map(|p| (format!("{:?}{}", p.kind, p.id).to_lowercase(), p.child.id()))
        .collect();
    let ticks = |pids: &[(String, u32)]| -> Vec<u64> {
        pids.iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()).unwrap_or(0))
            .collect()
    };
    let (a0, t0) = ((latest(&c, 1), latest(&c, 2)), ticks(&pids));
    thread::sleep(Duration::from_secs(secs));
    let (a1, t1) = ((latest(&c, 1), latest(&c, 2)), ticks(&pids));
    let errors = c.error_lines();
    let codes = c.stop_all();

    let (Some(s1), Some(s2), Some(e1), Some(e2)) = (a0.0, a0.1, a1.0, a1.1) else {
        panic!("a game logged no counters");
    };
    let window_s =
        (e1.t_ms.saturating_sub(s1.t_ms) + e2.t_ms.saturating_sub(s2.t_ms)) as f64 / 2.0 / 1000.0;
    let arrivals = (e1.arrivals - s1.arrivals) + (e2.arrivals - s2.arrivals);
    let sum_us = (e1.sum_us - s1.sum_us) + (e2.sum_us - s2.sum_us);
    let hist: Vec<u64> = (0..BUCKETS_US.len())
        .map(|i| (e1.hist[i] - s1.hist[i]) + (e2.hist[i] - s2.hist[i]))
        .collect();
    let cpu: Vec<String> = pids
        .iter()
        .zip(t0.iter().zip(&t1))
        .map(|((name, _), (a, b))| {
            format!(
                "{name} {:.1} %",
                (b - a) as f64 / clk_tck() / secs as f64 * 100.0
            )
        })
        .collect();
    println!(
        "N={n} dispatchers={dispatchers}: {:.0} migrations/s over {window_s:.1} s; latency avg {:.2} ms, p50 {} ms, p99 {} ms, p99.9 {} ms; CPU {}",
        arrivals as f64 / window_s,
        sum_us as f64 / arrivals.max(1) as f64 / 1000.0,
        percentile(&hist, 0.50),
        percentile(&hist, 0.99),
        percentile(&hist, 0.999),
        cpu.join(", ")
    );
    if !errors.is_empty() {
        println!("error lines in the server logs:\n{}", errors.join("\n"));
        std::process::exit(1);
    }
    if codes.iter().any(|(_, _, code)| *code != Some(0)) {
        println!("a server did not exit 0 on SIGTERM: {codes:?}");
        std::process::exit(1);
    }
}

fn main() {
    let secs = flag("secs", 10);
    let dispatchers = flag("dispatchers", 1) as u16;
    let counts: Vec<u64> = std::env::args()
        .skip_while(|a| a.trim_start_matches('-') != "N")
        .nth(1)
        .unwrap_or_else(|| "1,100,1000".into())
        .split(',')
        .map(|v| v.parse().expect("-N takes numbers separated by commas"))
        .collect();
    for n in counts {
        run(n, secs, dispatchers);
    }
}
