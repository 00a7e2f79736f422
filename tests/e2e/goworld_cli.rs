//! The `goworld` command end to end: `start -d`, `status`, bots, `reload` under bots, `stop`,
//! stale PID files, a process that fails to start, and the foreground mode. The deployments
//! come from [`Cluster::new`] (free loopback ports, `http_addr = 127.0.0.1:0`), but their
//! processes are started by `goworld`, never by the harness; a guard runs `goworld kill`
//! (which signals only the PIDs its PID files name, once checked) if a test fails midway.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use goworld_tests::{bin_dir, Cluster, Kind};

const T: Duration = Duration::from_secs(20);

/// Runs `goworld <args> -configfile <the cluster's>`.
fn goworld(c: &Cluster, args: &[&str]) -> Output {
    Command::new(bin_dir().join("goworld"))
        .args(args)
        .arg("-configfile")
        .arg(&c.config)
        .stdin(Stdio::null())
        .output()
        .expect("goworld runs (cargo build --release --workspace --bins first)")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `goworld kill` when dropped, so that a failed test leaves nothing running.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(bin_dir().join("goworld"))
            .args(["kill", "-configfile"])
            .arg(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn run_dir(c: &Cluster) -> PathBuf {
    c.dir.join(".goworld")
}

/// The PID in `<run dir>/<name>.pid`.
fn pid_of(c: &Cluster, name: &str) -> Option<u32> {
    std::fs::read_to_string(run_dir(c).join(format!("{name}.pid")))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("pid="))?
        .parse()
        .ok()
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.get(s.rfind(')')? + 2..)?.chars().next())
        .is_some_and(|state| state != 'Z')
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `*.pid` files and the lock left in the run directory.
fn leftovers(c: &Cluster) -> Vec<String> {
    std::fs::read_dir(run_dir(c))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".pid") || n == "goworld.lock")
                .collect()
        })
        .unwrap_or_default()
}

/// The status table's row for `name`, split into words.
fn row(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn bots_ok(out: &Output, n: u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "test_client failed:\n{}", text(out));
    assert!(
        stdout.contains(&format!(
            "bots {n}, connected {n}, boot entity {n}, logged in {n}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(", failures 0, disconnects 0"), "{stdout}");
}

#[test]
fn goworld_start_status_bots_reload_under_bots_and_stop() {
    let c = Cluster::new("cli", 1, 2, 1, "");
    let _guard = KillOnDrop(c.config.clone());
    let o = goworld(&c, &["start", "-d"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["dispatcher1", "game1", "game2", "gate1"] {
        assert!(out.contains(&format!("{name} is ready (pid ")), "{out}");
    }
    // In order: dispatchers, games, gates.
    let at = |s: &str| out.find(s).unwrap();
    assert!(at("dispatcher1 is ready") < at("game1 is ready"));
    assert!(at("game2 is ready") < at("gate1 is ready"));
    let pids: Vec<u32> = ["dispatcher1", "game1", "game2", "gate1"]
        .iter()
        .map(|n| pid_of(&c, n).expect("a PID file"))
        .collect();
    assert!(pids.iter().all(|p| alive(*p)));
    for game in 1..=2 {
        c.wait_log(Kind::Game, game, "CallNilSpaces works in game", 1, T)
            .unwrap();
    }

    let o = goworld(&c, &["status"]);
    assert!(o.status.success(), "{}", text(&o));
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        status.starts_with("PROCESS ") && status.contains(" PID ") && status.contains(" UPTIME "),
        "{status}"
    );
    for (name, pid) in ["dispatcher1", "game1", "game2", "gate1"].iter().zip(&pids) {
        let r = row(&status, name);
        assert_eq!(r[1], pid.to_string(), "{status}");
        assert_eq!(r[2], "ready", "{status}");
    }
    assert!(
        status.contains("1/1 dispatchers, 2/2 games (test_game), 1/1 gates running"),
        "{status}"
    );

    // A short strict bot run, as the issue spells it.
    let out = Command::new(bin_dir().join("test_client"))
        .args(["-N", "20", "-duration", "5", "-strict", "-configfile"])
        .arg(&c.config)
        .output()
        .unwrap();
    bots_ok(&out, 20);

    // Reload both games while bots play: they see only a pause. (New users, test101 on: a
    // returning user whose Avatar is on the other game makes test_game's Account write an
    // undeclared attribute, an error line that has nothing to do with goworld.)
    let bots = Command::new(bin_dir().join("test_client"))
        .args([
            "-N",
            "20",
            "-S",
            "101",
            "-duration",
            "14",
            "-strict",
            "-quiet",
        ])
        .args(["-log", "warn", "-configfile"])
        .arg(&c.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let o = goworld(&c, &["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("game1 reloaded") && out.contains("game2 reloaded"),
        "{out}"
    );
    bots_ok(&bots.wait_with_output().unwrap(), 20);
    let new_games = [pid_of(&c, "game1").unwrap(), pid_of(&c, "game2").unwrap()];
    assert!(new_games[0] != pids[1] && new_games[1] != pids[2]);
    assert!(!alive(pids[1]) && !alive(pids[2]), "the old games are gone");
    assert!(c.dir.join("game1_freezed.dat.restored").exists());
    let o = goworld(&c, &["status"]);
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    for (name, pid) in [
        ("dispatcher1", pids[0]),
        ("game1", new_games[0]),
        ("game2", new_games[1]),
        ("gate1", pids[3]),
    ] {
        let r = row(&status, name);
        assert_eq!(
            (r[1].as_str(), r[2].as_str()),
            (pid.to_string().as_str(), "ready"),
            "{status}"
        );
    }
    // The gate's clients: 0 or a few bots still leaving; a number either way.
    assert!(row(&status, "gate1")[4].parse::<u64>().is_ok(), "{status}");

    let o = goworld(&c, &["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s} in {out}"));
    assert!(at("gate1 (pid") < at("game1 (pid"));
    assert!(at("game2 (pid") < at("dispatcher1 (pid"));
    for pid in [pids[0], new_games[0], new_games[1], pids[3]] {
        wait_until("the processes to be gone", T, || !alive(pid));
    }
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    let o = goworld(&c, &["status"]);
    let status = String::from_utf8_lossy(&o.stdout);
    assert!(status.contains("0/1 dispatchers, 0/2 games"), "{status}");
    assert_eq!(o.status.code(), Some(3), "status exits 3 when not all run");
    assert_eq!(row(&status, "game1")[2], "stopped");
    assert!(c.error_lines().is_empty(), "{:#?}", c.error_lines());
}

#[test]
fn goworld_reports_a_failed_start_stale_pid_files_and_a_failed_reload() {
    // game1 serves no /status (http_addr empty): status still shows its PID.
    let c = Cluster::new("cli-stale", 1, 1, 1, "[game1]\nhttp_addr=\n");
    let _guard = KillOnDrop(c.config.clone());

    // The gate cannot listen: start names it, its exit status and its output, and stops the
    // dispatcher and game it had started.
    let taken = std::net::TcpListener::bind(("127.0.0.1", c.gate_ports[0])).unwrap();
    let o = goworld(&c, &["start", "-d"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("goworld: start failed: gate1 (pid "),
        "{}",
        text(&o)
    );
    assert!(
        err.contains("exited (exit status: 2) before it was ready"),
        "{err}"
    );
    assert!(
        err.contains("last lines of ") && err.contains("cannot listen"),
        "{err}"
    );
    assert!(err.contains("stopping the 2 processes started"), "{err}");
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    drop(taken);

    // A PID file naming a live process that is not the game: stale, never signalled.
    let mut stranger = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(
        run_dir(&c).join("game1.pid"),
        format!(
            "pid={}\nprocess=game1\nprogram=/x/test_game\n",
            stranger.id()
        ),
    )
    .unwrap();
    // And one for a process long gone, of a gate this deployment no longer has.
    std::fs::write(
        run_dir(&c).join("gate2.pid"),
        "pid=999999999\nprocess=gate2\nprogram=/x/gate\n",
    )
    .unwrap();
    let o = goworld(&c, &["status"]);
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    let r = row(&status, "game1");
    assert_eq!(
        r[1..3],
        [stranger.id().to_string(), "stale".into()],
        "{status}"
    );
    assert!(
        status.contains("is now 'sleep 60', not test_game"),
        "{status}"
    );
    assert_eq!(row(&status, "gate2")[2], "stale", "{status}");
    assert!(status.contains("0/1 dispatchers, 0/1 games"), "{status}");

    let o = goworld(&c, &["start", "-d"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("game1: stale PID file"), "{out}");
    assert!(out.contains("gate2: stale PID file"), "{out}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was not signalled"
    );
    let game = pid_of(&c, "game1").unwrap();
    assert!(game != stranger.id() && alive(game));
    let o = goworld(&c, &["status"]);
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    let r = row(&status, "game1");
    assert_eq!(r[1..3], [game.to_string(), "running".into()], "{status}");
    assert!(status.contains("no http_addr"), "{status}");
    assert_eq!(row(&status, "gate1")[2], "ready", "{status}");
    assert!(
        status.contains("1/1 dispatchers, 1/1 games (test_game), 1/1 gates running"),
        "{status}"
    );

    // GoWorld refuses to start what runs.
    let o = goworld(&c, &["start", "-d"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already running: dispatcher1 (pid "),
        "{}",
        text(&o)
    );
    assert!(alive(game));

    // A reload whose new game program cannot restore: the game froze, the new one exits;
    // reload says so, with its output, and the gate and dispatcher keep running.
    let broken = c.dir.join("broken-bin");
    std::fs::create_dir_all(&broken).unwrap();
    let script = broken.join("test_game");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"this build cannot restore\" >&2\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = goworld(&c, &["reload", "-bindir", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("goworld: reload: game1 did not come back: game1 (pid "),
        "{err}"
    );
    assert!(
        err.contains("-gid 1 -configfile goworld.ini -restore) exited (exit status: 3)"),
        "{err}"
    );
    assert!(err.contains("this build cannot restore"), "{err}");
    assert!(
        err.contains("The gates and dispatchers keep running"),
        "{err}"
    );
    assert!(!alive(game));
    assert!(
        c.dir.join("game1_freezed.dat").exists(),
        "the freeze file is kept"
    );
    assert_eq!(pid_of(&c, "game1"), None);
    let o = goworld(&c, &["status"]);
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(row(&status, "game1")[2], "stopped", "{status}");
    assert_eq!(o.status.code(), Some(3), "{status}");
    assert_eq!(row(&status, "gate1")[2], "ready", "{status}");
    assert!(
        status.contains("1/1 dispatchers, 0/1 games (test_game), 1/1 gates running"),
        "{status}"
    );
    // Once fixed, reload restores the game from the freeze file it left.
    let o = goworld(&c, &["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("game1 is not running; restoring it from /"),
        "{out}"
    );
    assert!(out.contains("game1 reloaded (pid - -> "), "{out}");
    let game = pid_of(&c, "game1").unwrap();
    assert!(alive(game));
    assert!(!c.dir.join("game1_freezed.dat").exists());
    // A game that died with no freeze file: reload refuses, as GoWorld, and touches nothing.
    signal(game, "KILL");
    wait_until("game1 to die", T, || !alive(game));
    let o = goworld(&c, &["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("game1: its PID file is stale ("), "{err}");
    assert!(
        err.contains("game1_freezed.dat to restore it from; reload needs all 1 games running"),
        "{err}"
    );

    // kill: kill -9 of every process; PID files cleaned.
    let pids: Vec<u32> = ["dispatcher1", "gate1"]
        .iter()
        .map(|n| pid_of(&c, n).unwrap())
        .collect();
    let o = goworld(&c, &["kill"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("game1: stale PID file (pid "), "{out}");
    assert!(out.contains("killed 2 processes"), "{out}");
    // goworld counts a process gone once its command line is (the kernel is tearing it
    // down); its /proc state turns Z a moment later.
    for pid in pids {
        wait_until(&format!("pid {pid} to end"), Duration::from_secs(2), || {
            !alive(pid)
        });
    }
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
    assert!(stranger.try_wait().unwrap().is_none());
    let _ = stranger.kill();
    let _ = stranger.wait();
}

/// Starts `goworld start` in the foreground, its output in `log`; waits until all are up.
fn foreground(c: &Cluster, log: &Path) -> std::process::Child {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(bin_dir().join("goworld"))
        .args(["start", "-configfile"])
        .arg(&c.config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    wait_until("goworld start to bring all up", T, || {
        std::fs::read_to_string(log).is_ok_and(|t| t.contains("Ctrl-C stops them all"))
    });
    child
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "goworld start did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn goworld_start_in_the_foreground_stops_all_on_sigint_and_when_one_dies() {
    let c = Cluster::new("cli-fg", 1, 1, 1, "");
    let _guard = KillOnDrop(c.config.clone());
    let log = c.dir.join("goworld-start.txt");

    // SIGINT (Ctrl-C): gates, games, dispatchers stop in order; the command exits 0.
    let mut gw = foreground(&c, &log);
    let pids: Vec<u32> = ["dispatcher1", "game1", "gate1"]
        .iter()
        .map(|n| pid_of(&c, n).unwrap())
        .collect();
    signal(gw.id(), "INT");
    let st = wait_exit(&mut gw);
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(st.success(), "{st}: {out}");
    for name in ["gate1", "game1", "dispatcher1"] {
        assert!(out.contains(&format!("{name} (pid ")), "{out}");
    }
    assert!(out.contains("stopped (exit status: 0)"), "{out}");
    for pid in pids {
        assert!(!alive(pid));
    }
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));

    // A process that dies: the command names it and stops the rest.
    let mut gw = foreground(&c, &log);
    let gate = pid_of(&c, "gate1").unwrap();
    let others = [
        pid_of(&c, "dispatcher1").unwrap(),
        pid_of(&c, "game1").unwrap(),
    ];
    signal(gate, "KILL");
    let st = wait_exit(&mut gw);
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(st.code(), Some(1), "{out}");
    assert!(out.contains("gate1 is gone: process "), "{out}");
    assert!(out.contains("SIGKILL"), "{out}");
    for pid in others {
        assert!(!alive(pid));
    }
    assert!(leftovers(&c).is_empty(), "{:?}", leftovers(&c));
}
