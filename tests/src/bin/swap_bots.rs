//! Hot swap under load: `test_client -N <N> -strict` against 1 dispatcher, 2 games and 1
//! gate while each game in turn is swapped: the test_game binary is rebuilt with a new
//! build tag (`-rebuild`; the running process keeps its old code), the game gets SIGUSR1,
//! writes its state and exits 0, and the rebuilt binary is started with `-restore`.
//!
//! Passes when test_client exits 0 with no failure and no disconnect, every swapped game
//! exited 0 and came back (its freeze file renamed `.restored`, its new build tag in the log),
//! every server exits 0 on SIGTERM and no server log has an error line. Prints, per swap, the
//! freeze (signal to exit), the restore (start to ready line), and the pause the game's
//! packets saw: from the dispatcher holding them to the restored game taking them.
//!
//! `cargo run --release -p goworld-tests --bin swap_bots -- [-N 200] [-secs 50] [-first 15] [-gap 15] [-rebuild]`
//! (build the release binaries first; `scripts/swap.sh` runs it twice with `-rebuild`).

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use goworld_tests::procfs::flag;
use goworld_tests::{bin_dir, Cluster, Kind};

/// The time of a log line (`2026-11-26T18:51:00.643Z ...`) in ms since midnight.
fn log_ms(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// The time of the last line of `log` that contains `needle`.
fn last_line_ms(log: &str, needle: &str) -> Option<f64> {
    log.lines()
        .rev()
        .find(|l| l.contains(needle))
        .and_then(log_ms)
}

fn rebuild(tag: &str) -> Duration {
    let root = bin_dir().join("../..");
    let t = Instant::now();
    let st = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "goworld-test-game",
            "--bin",
            "test_game",
        ])
        .env("GOWORLD_BUILD_TAG", tag)
        .current_dir(root)
        .status()
        .expect("cargo runs");
    assert!(st.success(), "rebuilding test_game failed");
    t.elapsed()
}

fn main() {
    let n = flag("N", 200);
    let secs = flag("secs", 50);
    let first = flag("first", 15);
    let gap = flag("gap", 15);
    let rebuild_each = std::env::args().any(|a| a.trim_start_matches('-') == "rebuild");
    assert!(
        first + gap + 10 < secs,
        "-secs must leave 10 s after the second swap"
    );

    let mut c = Cluster::new("swap", 1, 2, 1, "");
    c.start_all(1, 2, 1).unwrap_or_else(|e| panic!("{e}"));
    for g in 1..=2 {
        c.wait_log(
            Kind::Game,
            g,
            "CallNilSpaces works in game",
            1,
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    println!(
        "swap_bots: 1/2/1, test_client -N {n} -duration {secs} -strict; game1 swapped at {first} s, game2 at {} s{}",
        first + gap,
        if rebuild_each { ", each from a rebuilt binary" } else { "" }
    );
    let client = Command::new(bin_dir().join("test_client"))
        .args(["-N", &n.to_string(), "-duration", &secs.to_string()])
        .args(["-strict", "-quiet", "-log", "warn", "-configfile"])
        .arg(&c.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("test_client starts");
    let start = Instant::now();
    let mut ok = true;
    for (g, at) in [(1u16, first), (2, first + gap)] {
        let tag = format!("swap-{}-game{g}", std::process::id());
        if rebuild_each {
            let took = rebuild(&tag);
            println!(
                "swap_bots: test_game rebuilt with tag {tag} in {:.1} s",
                took.as_secs_f64()
            );
        }
        let wait = Duration::from_secs(at).saturating_sub(start.elapsed());
        thread::sleep(wait);
        let signalled = Instant::now();
        let p = c.proc(Kind::Game, g);
        p.signal("USR1");
        let code = p.wait_exit(Duration::from_secs(20));
        let exited = signalled.elapsed();
        if code != Ok(Some(0)) {
            println!("swap_bots: FAILED: game{g} exit {code:?} after SIGUSR1");
            ok = false;
            break;
        }
        let started = Instant::now();
        if let Err(e) = c.start_with(Kind::Game, g, &["-restore"]) {
            println!("swap_bots: FAILED: game{g} -restore: {e}");
            ok = false;
            break;
        }
        let ready = started.elapsed();
        let dlog = c.log(Kind::Dispatcher, 1);
        let held = last_line_ms(&dlog, &format!("game{g} is freezing"));
        let back = last_line_ms(&dlog, &format!("game{g} connected on"));
        let glog = c.log(Kind::Game, g);
        let frozen = glog
            .lines()
            .rev()
            .find(|l| l.contains(": frozen: "))
            .map(|l| l.split(": frozen: ").nth(1).unwrap_or("").to_string())
            .unwrap_or_default();
        let restored = glog
            .lines()
            .rev()
            .find(|l| l.contains("restored from"))
            .map(|l| l.split("restored from ").nth(1).unwrap_or("").to_string())
            .unwrap_or_default();
        println!(
            "swap_bots: game{g}: frozen ({frozen}), exited {:.0} ms after SIGUSR1; restored ({restored}), ready {:.0} ms after start; packets held for {}",
            exited.as_secs_f64() * 1000.0,
            ready.as_secs_f64() * 1000.0,
            match (held, back) {
                (Some(a), Some(b)) => format!("{:.0} ms", b - a),
                _ => "? ms".into(),
            }
        );
        if rebuild_each
            && c.wait_log(
                Kind::Game,
                g,
                &format!("test_game build {tag} ready"),
                1,
                Duration::from_secs(10),
            )
            .is_err()
        {
            println!("swap_bots: FAILED: game{g} does not run the rebuilt binary (tag {tag})");
            ok = false;
        }
        if !c.dir.join(format!("game{g}_freezed.dat.restored")).exists() {
            println!("swap_bots: FAILED: game{g}_freezed.dat was not renamed .restored");
            ok = false;
        }
    }
    let out = client.wait_with_output().expect("test_client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines().filter(|l| l.starts_with("test_client: ")) {
        println!("swap_bots: client: {l}");
    }
    if !out.status.success() {
        println!(
            "swap_bots: FAILED: test_client exit {:?}",
            out.status.code()
        );
        ok = false;
    }
    if !stdout.contains(", failures 0, disconnects 0") {
        println!("swap_bots: FAILED: bots failed or were disconnected");
        ok = false;
    }
    let errors = c.error_lines();
    for (kind, id, code) in c.stop_all() {
        if code != Some(0) {
            println!("swap_bots: FAILED: {kind:?}{id} exit {code:?}");
            ok = false;
        }
    }
    if !errors.is_empty() {
        println!("swap_bots: FAILED: error lines:\n{}", errors.join("\n"));
        ok = false;
    }
    println!("swap_bots: {}", if ok { "passed" } else { "FAILED" });
    if !ok {
        std::process::exit(1);
    }
}
