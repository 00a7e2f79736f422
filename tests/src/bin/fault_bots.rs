//! Bots while servers die: `test_client -N <N> -strict -faults` against 3 dispatchers, 3 games
//! and 3 gates, and after `-at` seconds either game2 is killed with SIGKILL (`-kill game`), or
//! dispatcher2 is killed with SIGKILL and started again 2 s later (`-kill dispatcher`), or
//! game2 goes silent (`-kill silence`: SIGSTOP for 4 s with `link_timeout_ms` = 1500, as if
//! its network were cut, then SIGCONT).
//!
//! Passes when test_client exits 0 (nothing failed outside the 10 s after the fault), bots
//! did things after the fault, no server log has a panic, every server still running exits 0
//! on SIGTERM, and for a game kill or silence: the game's clients were disconnected (each
//! gate that had some logged that it closed them) and the others carried on. For silence,
//! also: every dispatcher declared game2 gone for its heartbeat timeout, and game2, back,
//! rejoined having dropped what it had (it logs that it was declared dead), and stops
//! cleanly at the end.
//!
//! `cargo run --release -p goworld-tests --bin fault_bots -- [-N 300] [-secs 40] [-at 15] [-kill game|dispatcher|silence]`
//! (build the release binaries first; `scripts/fault.sh` runs both kinds).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use goworld_tests::procfs::flag;
use goworld_tests::{bin_dir, Cluster, Kind};

/// `-kill silence`: the dispatchers' `link_timeout_ms`, and how long game2 is stopped.
const LINK_TIMEOUT: Duration = Duration::from_millis(1500);
const SILENCE: Duration = Duration::from_secs(4);

fn main() {
    let n = flag("N", 300);
    let secs = flag("secs", 40);
    let at = flag("at", 15);
    let kill = std::env::args()
        .skip_while(|a| a.trim_start_matches('-') != "kill")
        .nth(1)
        .unwrap_or_else(|| "game".into());
    assert!(
        kill == "game" || kill == "dispatcher" || kill == "silence",
        "-kill game|dispatcher|silence"
    );
    assert!(at + 10 < secs, "-secs must leave 10 s after -at");

    let extra = if kill == "silence" {
        format!(
            "[dispatcher_common]\nlink_timeout_ms={}\n",
            LINK_TIMEOUT.as_millis()
        )
    } else {
        String::new()
    };
    let mut c = Cluster::new(&format!("fault-{kill}"), 3, 3, 3, &extra);
    c.start_all(3, 3, 3).unwrap_or_else(|e| panic!("{e}"));
    for g in 1..=3 {
        c.wait_log(
            Kind::Game,
            g,
            "deployment ready",
            1,
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let args = [
        "-N".to_string(),
        n.to_string(),
        "-duration".into(),
        secs.to_string(),
        "-strict".into(),
        "-faults".into(),
        "-quiet".into(),
        "-configfile".into(),
        c.config.display().to_string(),
    ];
    println!(
        "fault_bots: 3/3/3, kill {kill} at {at} s; test_client {}",
        args.join(" ")
    );
    let mut client = Command::new(bin_dir().join("test_client"))
        .args(&args)
        .current_dir(&c.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("test_client (cargo build --release first)");
    let client_pid = client.id();
    let out = client.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let started = Instant::now();
    thread::sleep(Duration::from_secs(at));
    let mark = || {
        let _ = Command::new("kill")
            .args(["-USR1", &client_pid.to_string()])
            .status();
    };
    match kill.as_str() {
        "game" => {
            println!(
                "fault_bots: kill -9 game2 at {:.1} s",
                started.elapsed().as_secs_f64()
            );
            mark();
            let p = c.proc(Kind::Game, 2);
            p.signal("KILL");
            let _ = p.wait_exit(Duration::from_secs(5));
        }
        "silence" => {
            println!(
                "fault_bots: SIGSTOP game2 at {:.1} s for {SILENCE:?} (link timeout {LINK_TIMEOUT:?}), then SIGCONT",
                started.elapsed().as_secs_f64()
            );
            mark();
            let p = c.proc(Kind::Game, 2);
            p.signal("STOP");
            thread::sleep(SILENCE);
            mark();
            p.signal("CONT");
        }
        _ => {
            println!(
                "fault_bots: kill -9 dispatcher2 at {:.1} s, start it again 2 s later",
                started.elapsed().as_secs_f64()
            );
            mark();
            let p = c.proc(Kind::Dispatcher, 2);
            p.signal("KILL");
            let _ = p.wait_exit(Duration::from_secs(5));
            thread::sleep(Duration::from_secs(2));
            mark();
            c.start(Kind::Dispatcher, 2)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let status = client.wait().expect("test_client ran");
    let lines = reader.join().unwrap();
    for l in &lines {
        println!("fault_bots: client: {l}");
    }
    let mut ok = status.success();
    if !ok {
        println!("fault_bots: FAILED: test_client exit {:?}", status.code());
    }
    let summary = lines.iter().find(|l| l.contains("faults mode:"));
    let disconnects: u64 = summary
        .and_then(|l| l.split("faults mode: ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if kill == "silence" {
        for d in 1..=3 {
            let log = c.log(Kind::Dispatcher, d);
            if !log.contains("game2 disconnected") || !log.contains("heartbeat timeout") {
                println!(
                    "fault_bots: FAILED: dispatcher{d} did not declare game2 gone for its silence"
                );
                ok = false;
            }
        }
        let rejoined = c
            .log(Kind::Game, 2)
            .matches("declared this game dead")
            .count();
        println!("fault_bots: game2 heard it was declared dead from {rejoined} dispatchers");
        if rejoined == 0 {
            ok = false;
        }
    }
    if kill == "game" || kill == "silence" {
        if disconnects == 0 {
            println!("fault_bots: FAILED: no bot was disconnected by the game's death");
            ok = false;
        }
        let closing: usize = (1..=3)
            .map(|t| {
                c.log(Kind::Gate, t)
                    .matches("clients whose player lived on game")
                    .count()
            })
            .sum();
        println!("fault_bots: gates reported closing the dead game's clients {closing} times");
        if closing == 0 {
            ok = false;
        }
    }
    let mut panics = 0;
    for (kind, ids) in [
        (Kind::Dispatcher, 1..=3u16),
        (Kind::Game, 1..=3),
        (Kind::Gate, 1..=3),
    ] {
        for id in ids {
            panics += c.log(kind, id).matches("panicked").count();
        }
    }
    if panics > 0 {
        println!("fault_bots: FAILED: {panics} panics in the server logs");
        ok = false;
    }
    let codes = c.stop_all();
    for (kind, id, code) in &codes {
        let killed = kill == "game" && *kind == Kind::Game && *id == 2;
        if !killed && *code != Some(0) {
            println!("fault_bots: FAILED: {kind:?}{id} exit {code:?}");
            ok = false;
        }
    }
    println!(
        "fault_bots: {} ({disconnects} disconnects counted)",
        if ok { "passed" } else { "FAILED" }
    );
    if !ok {
        std::process::exit(1);
    }
}
