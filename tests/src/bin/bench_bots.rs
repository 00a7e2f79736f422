//! The bots workload: `test_client -N <N> -strict -duration <secs>` against `-dispatchers`
//! dispatchers (1), `-games` games (`test_game`, 1) and `-gates` gates (1), as in GoWorld's reference figures.
//!
//! Reports, from test_client's per-second profile lines (`> Thing *count AVG a RANGE lo ~ hi`):
//! things per second, the average latency (weighted by count) and the maximum latency over the
//! run, per thing and overall; from its summary line: bots connected, logged in, things,
//! failures and disconnects. CPU (% of one core, utime + stime from /proc/<pid>/stat) of each
//! server process and of test_client is averaged over the window from 10 s after the client
//! starts to its end, as GoWorld's figures are; RSS (VmRSS, and the peak VmHWM) is read at the
//! end, just before test_client exits. The busy time of the whole machine over the same window
//! shows how much other processes took. After test_client exits, the run waits (up to 60 s)
//! until the servers are quiet (at most 2 × games + 3 wake-ups each in 2 s), because the bots' Avatars are
//! destroyed and saved when they disconnect. Then it stops the servers and writes test_client's output to
//! `test_client.out` in the cluster directory.
//!
//! Build the release binaries first, then:
//! `cargo run --release -p goworld-tests --bin bench_bots -- [-N 500] [-secs 60] [-games 1] [-dispatchers 1] [-gates 1] [-nostrict] [-goworld] [-ws | -kcp] [-ini 'extra config lines']`
//! (`-goworld`: only GoWorld's eight things, without our mail and publish ones; `-ws`,
//! `-kcp`: the bots' transport, the gate's TLS and snappy set with `-ini`).
//!
//! Exits 1 if test_client failed (non-zero exit, or failures or disconnects in its summary) or
//! a server log has an error line. test_client and the gate each hold one descriptor per bot:
//! the run stops early if `ulimit -n` is too low.

use goworld_tests::procfs::{clk_tck, cpu_ticks, flag};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant};

use goworld_tests::{bin_dir, Cluster, Kind};

/// GoWorld's figures start 10 s after the client starts (logins and the first things over).
const WARMUP: Duration = Duration::from_secs(10);
/// How often test_client's /proc entry is read while it runs: its last reading is at most this
/// old when it exits.
const POLL: Duration = Duration::from_millis(100);

/// True if `-name` is on the command line.
fn switch(name: &str) -> bool {
    std::env::args().any(|a| a.trim_start_matches('-') == name)
}

/// VmRSS and VmHWM of `pid`, in KiB (None once the process has exited).
fn rss_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Busy and total jiffies of the whole machine (the `cpu` line of /proc/stat).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Voluntary context switches of every thread of `pid` (0 once it is gone): a server that is
/// done (no saves left to write, nothing to send) stops switching.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|st| {
            st.lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// Waits until the servers are quiet: over two seconds, no server woke more than `2 × games
/// + 3` times (each game reports its load to every dispatcher once a second, so while idle a
/// game wakes at 1 Hz and a dispatcher at 1 Hz per game); up to `max`. Returns when the quiet window began, or None if still busy at `max`.
fn wait_quiet(pids: &[u32], games: u64, max: Duration) -> Option<Duration> {
    const WINDOW: usize = 20; // samples, 100 ms apart
    let t0 = Instant::now();
    let mut history: std::collections::VecDeque<Vec<u64>> = std::collections::VecDeque::new();
    while t0.elapsed() < max {
        history.push_back(pids.iter().map(|p| wakeups(*p)).collect());
        if history.len() > WINDOW + 1 {
            history.pop_front();
        }
        if history.len() == WINDOW + 1 {
            let (old, new) = (&history[0], &history[WINDOW]);
            if old
                .iter()
                .zip(new)
                .all(|(a, b)| b.saturating_sub(*a) <= 2 * games + 3)
            {
                let began = t0
                    .elapsed()
                    .saturating_sub(Duration::from_millis(100 * WINDOW as u64));
                return Some(began);
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The soft limit on open files of this process (inherited by the servers it starts).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A duration as Go prints it (`850ns`, `12.5µs`, `3.0452ms`, `1.5s`, `0s`), in seconds.
fn parse_go_duration(s: &str) -> Option<f64> {
    for (unit, scale) in [
        ("ns", 1e-9),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ] {
        if let Some(num) = s.strip_suffix(unit) {
            return num.parse::<f64>().ok().map(|v| v * scale);
        }
    }
    None
}

/// Totals of one thing over the run, from the per-second profile lines.
#[derive(Default, Clone, Copy)]
struct ThingStat {
    count: u64,
    /// Sum of latencies, in seconds.
    total: f64,
    max: f64,
}

/// Adds one profile line (`> DoTestListField   *12 AVG 3.1ms RANGE 1ms ~ 5ms`) to `stats`.
fn add_profile_line(stats: &mut BTreeMap<String, ThingStat>, line: &str) -> bool {
    let Some(rest) = line.strip_prefix("> ") else {
        return false;
    };
    let w: Vec<&str> = rest.split_whitespace().collect();
    // name *count AVG avg RANGE min ~ max
    if w.len() != 8 || w[2] != "AVG" || w[4] != "RANGE" || w[6] != "~" {
        return false;
    }
    let (Some(count), Some(avg), Some(max)) = (
        w[1].strip_prefix('*').and_then(|c| c.parse::<u64>().ok()),
        parse_go_duration(w[3]),
        parse_go_duration(w[7]),
    ) else {
        return false;
    };
    let s = stats.entry(w[0].to_string()).or_default();
    s.count += count;
    s.total += avg * count as f64;
    s.max = s.max.max(max);
    true
}

/// One reading of /proc while test_client runs.
#[derive(Clone)]
struct Reading {
    at: Instant,
    /// utime + stime of each server, in clock ticks.
    servers: Vec<u64>,
    /// utime + stime of test_client.
    client: u64,
    /// VmRSS and VmHWM of test_client, in KiB.
    client_rss: (u64, u64),
    /// Busy and total jiffies of the machine.
    machine: (u64, u64),
}

/// The number after `key` in test_client's summary line (`..., things 120, failures 0, ...`).
fn summary_field(summary: &str, key: &str) -> Option<u64> {
    summary
        .split(", ")
        .find_map(|part| part.trim_start_matches("test_client: ").strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    let n = flag("N", 500);
    let secs = flag("secs", 60);
    let games = flag("games", 1) as u16;
    let dispatchers = flag("dispatchers", 1) as u16;
    let gates = flag("gates", 1) as u16;
    assert!(
        dispatchers >= 1 && gates >= 1,
        "-dispatchers and -gates must be at least 1"
    );
    let strict = !switch("nostrict");
    assert!(games >= 1, "-games must be at least 1");
    assert!(
        secs > WARMUP.as_secs(),
        "-secs must be more than the {} s warm-up",
        WARMUP.as_secs()
    );
    let tck = clk_tck();
    if let Some(limit) = open_files_limit() {
        // test_client and the gate each hold one descriptor per bot; 100 spare.
        if n + 100 > limit {
            eprintln!(
                "bench_bots: -N {n} needs more open files than `ulimit -n` {limit}; raise it (ulimit -n $(ulimit -Hn)) or use fewer bots"
            );
            std::process::exit(2);
        }
    }

    // `-ini '[gate_common]\nclient_flush_interval_ms=100'`: extra config lines (`\n` for new lines).
    let extra = std::env::args()
        .skip_while(|a| a.trim_start_matches('-') != "ini")
        .nth(1)
        .unwrap_or_default()
        .replace("\\n", "\n");
    let mut cluster = Cluster::new("bench-bots", dispatchers, games, gates, &extra);
    cluster
        .start_all(dispatchers, games, gates)
        .unwrap_or_else(|e| panic!("{e}"));
    for g in 1..=games {
        cluster
            .wait_log(
                Kind::Game,
                g,
                "deployment ready",
                1,
                Duration::from_secs(15),
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Servers in report order: dispatcher, games, gate.
    let name = |kind: &str, i: u16, n: u16| {
        if n == 1 {
            kind.to_string()
        } else {
            format!("{kind}{i}")
        }
    };
    let mut servers: Vec<(String, u32)> = Vec::new();
    for d in 1..=dispatchers {
        servers.push((
            name("dispatcher", d, dispatchers),
            cluster.proc(Kind::Dispatcher, d).child.id(),
        ));
    }
    for g in 1..=games {
        servers.push((format!("game{g}"), cluster.proc(Kind::Game, g).child.id()));
    }
    for t in 1..=gates {
        servers.push((
            name("gate", t, gates),
            cluster.proc(Kind::Gate, t).child.id(),
        ));
    }
    thread::sleep(Duration::from_secs(1));

    let mut args = vec![
        "-N".to_string(),
        n.to_string(),
        "-duration".to_string(),
        secs.to_string(),
        "-configfile".to_string(),
        cluster.config.display().to_string(),
    ];
    if strict {
        args.push("-strict".to_string());
    }
    // `-goworld`: GoWorld's eight things only, the workload of its reference figures.
    if switch("goworld") {
        args.push("-things".to_string());
        args.push("goworld".to_string());
    }
    // `-ws`, `-kcp`: the bots' transport (with the gate's TLS and snappy from `-ini`).
    for t in ["ws", "kcp"] {
        if switch(t) {
            args.push(format!("-{t}"));
        }
    }
    println!(
        "bench_bots: {dispatchers} dispatcher(s), {games} game(s), {gates} gate(s); test_client {}",
        args.join(" ")
    );
    let started = Instant::now();
    let mut client = Command::new(bin_dir().join("test_client"))
        .args(&args)
        .current_dir(&cluster.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start test_client: {e} (cargo build --release first)"));
    let client_pid = client.id();
    let out = client.stdout.take().unwrap();
    let (tx, rx) = channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Poll test_client until it exits: the window's start at WARMUP, and the last reading of
    // every process while test_client was still alive.
    let deadline = started + Duration::from_secs(secs) + Duration::from_secs(60);
    let mut window_start: Option<Reading> = None;
    let mut last: Option<Reading> = None;
    let mut server_rss: Vec<(u64, u64)> = vec![(0, 0); servers.len()];
    let mut lines = Vec::new();
    // When the first profile report arrived: the bots had logged in and done things.
    let mut first_report: Option<Duration> = None;
    let status = loop {
        while let Ok(l) = rx.try_recv() {
            if first_report.is_none() && l.starts_with("> ") {
                first_report = Some(started.elapsed());
            }
            lines.push(l);
        }
        if let Some(st) = client.try_wait().expect("wait for test_client") {
            break Some(st);
        }
        if Instant::now() > deadline {
            eprintln!("bench_bots: test_client did not exit within {secs} s + 60 s; killing it");
            let _ = client.kill();
            let _ = client.wait();
            break None;
        }
        let now = Instant::now();
        let server_ticks: Vec<u64> = servers
            .iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()).unwrap_or(0))
            .collect();
        // Both readings of test_client must succeed: it may exit between them.
        if let (Some(ct), Some(crss)) = (cpu_ticks(&client_pid.to_string()), rss_kb(client_pid)) {
            let reading = Reading {
                at: now,
                servers: server_ticks,
                client: ct,
                client_rss: crss,
                machine: machine_ticks(),
            };
            if window_start.is_none() && now.duration_since(started) >= WARMUP {
                window_start = Some(reading.clone());
            }
            if window_start.is_some() {
                last = Some(reading);
                for (i, (_, pid)) in servers.iter().enumerate() {
                    server_rss[i] = rss_kb(*pid).unwrap_or((0, 0));
                }
            }
        }
        thread::sleep(POLL);
    };
    let _ = reader.join();
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }

    // The bots' Avatars are destroyed (and saved) when they disconnect: let the game write
    // those saves before it is stopped, and report how long that took.
    let server_pids: Vec<u32> = servers.iter().map(|(_, pid)| *pid).collect();
    let quiet = wait_quiet(&server_pids, u64::from(games), Duration::from_secs(60));
    let codes = cluster.stop_all();
    let _ = std::fs::write(cluster.dir.join("test_client.out"), lines.join("\n") + "\n");
    let errors = cluster.error_lines();

    // The profile and the summary.
    let mut stats: BTreeMap<String, ThingStat> = BTreeMap::new();
    let mut profile_lines = 0;
    // Things completed in each one-second profile window.
    let mut per_second: Vec<u64> = vec![0];
    for l in &lines {
        if add_profile_line(&mut stats, l) {
            profile_lines += 1;
            let count = l
                .split_whitespace()
                .nth(2)
                .and_then(|c| c[1..].parse().ok());
            *per_second.last_mut().unwrap() += count.unwrap_or(0);
        } else if l.starts_with("=====") {
            per_second.push(0);
        }
    }
    if per_second.last() == Some(&0) {
        per_second.pop();
    }
    let summary = lines
        .iter()
        .find(|l| l.starts_with("test_client: bots "))
        .cloned()
        .unwrap_or_default();
    for l in lines.iter().filter(|l| l.starts_with("test_client:")) {
        println!("bench_bots: client: {l}");
    }
    let things = summary_field(&summary, "things ");
    let failures = summary_field(&summary, "failures ");
    let disconnects = summary_field(&summary, "disconnects ");

    println!(
        "bench_bots: N {n}, {secs} s, {games} game(s), strict {strict}; CLK_TCK {tck}; {} cores; {profile_lines} profile lines",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let all = stats.values().fold(ThingStat::default(), |a, s| ThingStat {
        count: a.count + s.count,
        total: a.total + s.total,
        max: a.max.max(s.max),
    });
    println!("bench_bots: | thing | count | per second | avg latency | max latency |");
    println!("bench_bots: | --- | --- | --- | --- | --- |");
    for (name, s) in stats
        .iter()
        .chain(std::iter::once((&"all".to_string(), &all)))
    {
        println!(
            "bench_bots: | {name} | {} | {:.1} | {:.2} ms | {:.1} ms |",
            s.count,
            s.count as f64 / secs as f64,
            1e3 * s.total / s.count.max(1) as f64,
            1e3 * s.max
        );
    }
    if let Some(d) = first_report {
        println!(
            "bench_bots: first profile report {:.1} s after test_client started",
            d.as_secs_f64()
        );
    }
    println!(
        "bench_bots: things per one-second window, from the first report: {}",
        per_second
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(t) = things {
        if t != all.count {
            println!(
                "bench_bots: note: the summary counts {t} things, the profile lines {}",
                all.count
            );
        }
    }

    match (&window_start, &last) {
        (Some(r0), Some(r1)) => {
            let wall = r1.at.duration_since(r0.at).as_secs_f64();
            let pct = |a: u64, b: u64| 100.0 * b.saturating_sub(a) as f64 / tck / wall;
            println!(
                "bench_bots: CPU % of one core over {wall:.1} s from {} s after the client started; RSS (peak) at its end",
                WARMUP.as_secs()
            );
            println!("bench_bots: | process | CPU | RSS | peak RSS |");
            println!("bench_bots: | --- | --- | --- | --- |");
            let mut ours = 0.0;
            let mut rss_sum = 0;
            for (i, (name, _)) in servers.iter().enumerate() {
                let c = pct(r0.servers[i], r1.servers[i]);
                ours += c;
                rss_sum += server_rss[i].0;
                println!(
                    "bench_bots: | {name} | {c:.1} % | {:.1} MB | {:.1} MB |",
                    server_rss[i].0 as f64 / 1024.0,
                    server_rss[i].1 as f64 / 1024.0
                );
            }
            println!(
                "bench_bots: | all servers | {ours:.1} % | {:.1} MB | |",
                rss_sum as f64 / 1024.0
            );
            let cc = pct(r0.client, r1.client);
            ours += cc;
            println!(
                "bench_bots: | test_client | {cc:.1} % | {:.1} MB | {:.1} MB |",
                r1.client_rss.0 as f64 / 1024.0,
                r1.client_rss.1 as f64 / 1024.0
            );
            // /proc/stat counts in USER_HZ for all cores together.
            let busy = 100.0 * r1.machine.0.saturating_sub(r0.machine.0) as f64 / tck / wall;
            println!(
                "bench_bots: machine busy {busy:.1} % of one core; other processes {:.1} %",
                (busy - ours).max(0.0)
            );
        }
        _ => println!(
            "bench_bots: test_client ended before the {} s warm-up was over: no CPU figures",
            WARMUP.as_secs()
        ),
    }

    match quiet {
        Some(d) => println!(
            "bench_bots: servers quiet {:.1} s after test_client exited (the Avatars' last saves)",
            d.as_secs_f64()
        ),
        None => println!("bench_bots: servers still busy 60 s after test_client exited"),
    }
    println!(
        "bench_bots: client output in {}",
        cluster.dir.join("test_client.out").display()
    );
    let code = status.and_then(|s| s.code());
    println!(
        "bench_bots: test_client exit {code:?}; server exit codes {:?}; {} error lines in the logs",
        codes.iter().map(|c| c.2).collect::<Vec<_>>(),
        errors.len()
    );
    for e in errors.iter().take(20) {
        println!("bench_bots: log: {e}");
    }
    let client_ok = code == Some(0)
        && failures == Some(0)
        && disconnects == Some(0)
        && things.is_some_and(|t| t > 0);
    if !client_ok {
        println!("bench_bots: FAILED: test_client did not pass");
        std::process::exit(1);
    }
    if !errors.is_empty() {
        println!("bench_bots: FAILED: error lines in the server logs");
        std::process::exit(1);
    }
}
