//! A harness for end-to-end tests and scripts: writes a `goworld.ini` with free loopback
//! ports, starts dispatchers, games and gates as real processes from `target/release`, waits
//! for their ready lines, and stops (or kills) only the processes it started, by PID.

pub mod procfs;
pub mod sim;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use goworld_common::frame::FrameDecoder;

/// Upper bounds of the migration latency buckets `bench_migrate_game` logs and
/// `bench_migrate` reads, in microseconds (the last one takes the rest).
pub const MIGRATE_LATENCY_BUCKETS_US: [u64; 26] = [
    100,
    200,
    300,
    400,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    4_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    50_000,
    75_000,
    100_000,
    150_000,
    200_000,
    300_000,
    500_000,
    1_000_000,
    u64::MAX,
];

/// Where the release binaries are.
pub fn bin_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("release")
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server log regex of the issues, without a regex crate: a line is an error line if it
/// contains "error", "panic" or "panicked" as a word (case-insensitive).
pub fn is_error_line(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    for w in ["error", "panic", "panicked"] {
        let mut start = 0;
        while let Some(i) = l[start..].find(w) {
            let at = start + i;
            let before = at.checked_sub(1).map(|j| l.as_bytes()[j]);
            let after = l.as_bytes().get(at + w.len()).copied();
            let letter = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase());
            if !letter(before) && !letter(after) {
                return true;
            }
            start = at + 1;
        }
    }
    false
}

/// Process kinds of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dispatcher,
    Game,
    Gate,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Dispatcher => "dispatcher",
            Kind::Game => "test_game",
            Kind::Gate => "gate",
        }
    }
    fn id_flag(self) -> &'static str {
        match self {
            Kind::Dispatcher => "-dispid",
            _ => "-gid",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Kind::Dispatcher => "DISPATCHER",
            Kind::Game => "GAME",
            Kind::Gate => "GATE",
        }
    }
}

/// One running server process.
pub struct Proc {
    pub kind: Kind,
    pub id: u16,
    pub child: Child,
    lines: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// Waits until a stdout line contains `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Ok(l);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "{:?}{} did not print {needle:?} within {timeout:?}; saw {:?}",
                        self.kind, self.id, self.seen
                    ))
                }
            }
        }
    }

    /// The address of its `/metrics` and `/status` endpoint, from its ready line (the
    /// harness configures `http_addr = 127.0.0.1:0`).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        let ready = goworld_common::ready_line(self.kind.tag());
        let line = self.seen.iter().find(|l| l.contains(&ready))?;
        line.split(' ')
            .find_map(|w| w.strip_prefix("http="))
            .and_then(|a| a.parse().ok())
    }

    /// Sends a signal to this process (only ours, by PID).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the process to exit; returns its status code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(st.code());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{:?}{} did not exit within {timeout:?}",
                    self.kind, self.id
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

static CLUSTER_SEQ: AtomicUsize = AtomicUsize::new(0);

/// One cluster at a time per test process: the machine has two cores, and parallel clusters
/// would make timings (and the tests' timeouts) depend on each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits for this test process's turn to run servers (as [`Cluster::new`] does), for a test
/// whose deployment runs in a child process of its own; the turn ends when the guard drops.
pub fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A deployment on loopback: its config, directory and processes.
pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub dispatcher_ports: Vec<u16>,
    pub gate_ports: Vec<u16>,
    pub procs: Vec<Proc>,
    /// The game program (`test_game` unless a benchmark brings its own).
    pub game_binary: &'static str,
    /// Extra environment variables for every process started.
    pub env: Vec<(String, String)>,
    /// Extra flags for the bots of [`Cluster::spawn_bots`] (`-ws`).
    pub bot_flags: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Writes a config for `d` dispatchers, `g` games and `t` gates in a fresh directory.
    /// `extra` is appended to the file (more sections or keys).
    pub fn new(name: &str, d: u16, g: u16, t: u16, extra: &str) -> Cluster {
        // A test that failed while holding the lock poisons it; the next cluster still runs.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let seq = CLUSTER_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = bin_dir()
            .join("..")
            .join("e2e")
            .join(format!("{name}-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dispatcher_ports: Vec<u16> = (0..d).map(|_| free_port()).collect();
        let gate_ports: Vec<u16> = (0..t).map(|_| free_port()).collect();
        let mut ini = format!(
            "[deployment]\ndesired_dispatchers={d}\ndesired_games={g}\ndesired_gates={t}\n\n[dispatcher_common]\nlog_stderr=false\nlog_level=info\nhttp_addr=127.0.0.1:0\n\n[game_common]\nboot_entity=Account\nlog_stderr=false\nlog_level=info\nhttp_addr=127.0.0.1:0\n\n[gate_common]\nlog_stderr=false\nlog_level=info\nhttp_addr=127.0.0.1:0\n\n"
        );
        for (i, p) in dispatcher_ports.iter().enumerate() {
            ini.push_str(&format!(
                "[dispatcher{}]\nlisten_addr=127.0.0.1:{p}\nadvertise_addr=127.0.0.1:{p}\n\n",
                i + 1
            ));
        }
        for (i, p) in gate_ports.iter().enumerate() {
            ini.push_str(&format!("[gate{}]\nlisten_addr=127.0.0.1:{p}\n\n", i + 1));
        }
        ini.push_str(extra);
        let config = dir.join("goworld.ini");
        std::fs::write(&config, ini).unwrap();
        Cluster {
            dir,
            config,
            dispatcher_ports,
            gate_ports,
            procs: Vec::new(),
            game_binary: Kind::Game.binary(),
            env: Vec::new(),
            bot_flags: Vec::new(),
            _turn: turn,
        }
    }

    /// Starts one process and waits for its ready line.
    pub fn start(&mut self, kind: Kind, id: u16) -> Result<&mut Proc, String> {
        self.start_with(kind, id, &[])
    }

    /// [`Cluster::start`] with extra command-line arguments (`-restore`).
    pub fn start_with(&mut self, kind: Kind, id: u16, extra: &[&str]) -> Result<&mut Proc, String> {
        let program = match kind {
            Kind::Game => self.game_binary,
            _ => kind.binary(),
        };
        let bin = bin_dir().join(program);
        let mut child = Command::new(&bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg(kind.id_flag())
            .arg(id.to_string())
            .arg("-configfile")
            .arg(&self.config)
            .args(extra)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (build with cargo build --release first)",
                    bin.display()
                )
            })?;
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.procs.retain(|p| !(p.kind == kind && p.id == id));
        self.procs.push(Proc {
            kind,
            id,
            child,
            lines: rx,
            seen: Vec::new(),
        });
        let p = self.procs.last_mut().unwrap();
        p.wait_line(
            &goworld_common::ready_line(kind.tag()),
            Duration::from_secs(15),
        )?;
        Ok(p)
    }

    /// Starts every dispatcher, then games, then gates, as `goworld start` does.
    pub fn start_all(&mut self, d: u16, g: u16, t: u16) -> Result<(), String> {
        for i in 1..=d {
            self.start(Kind::Dispatcher, i)?;
        }
        for i in 1..=g {
            self.start(Kind::Game, i)?;
        }
        for i in 1..=t {
            self.start(Kind::Gate, i)?;
        }
        Ok(())
    }

    /// Starts `n` strict, quiet `test_client` bots against this cluster for `secs` seconds,
    /// their output piped (read it with `wait_with_output`).
    pub fn spawn_bots(&self, n: u64, secs: u64) -> std::process::Child {
        std::process::Command::new(bin_dir().join("test_client"))
            .args(["-N", &n.to_string(), "-duration", &secs.to_string()])
            .args(["-strict", "-quiet", "-log", "warn"])
            .args(&self.bot_flags)
            .arg("-configfile")
            .arg(&self.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("test_client starts")
    }

    /// The running process of that kind and ID.
    pub fn proc(&mut self, kind: Kind, id: u16) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.kind == kind && p.id == id)
            .expect("started")
    }

    /// The log file of a process (`dispatcher1.log`, `game1.log`, `gate1.log`).
    pub fn log_path(&self, kind: Kind, id: u16) -> PathBuf {
        let name = match kind {
            Kind::Dispatcher => "dispatcher",
            Kind::Game => "game",
            Kind::Gate => "gate",
        };
        self.dir.join(format!("{name}{id}.log"))
    }

    /// The log of a process as text ("" if missing).
    pub fn log(&self, kind: Kind, id: u16) -> String {
        std::fs::read_to_string(self.log_path(kind, id)).unwrap_or_default()
    }

    /// Waits until a process's log contains `needle` at least `count` times.
    pub fn wait_log(
        &self,
        kind: Kind,
        id: u16,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(kind, id);
            if log.matches(needle).count() >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{kind:?}{id} log has {needle:?} {} times, wanted {count}; log:\n{log}",
                    log.matches(needle).count()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every error line in every server log of this cluster's directory.
    pub fn error_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                for l in text.lines().filter(|l| is_error_line(l)) {
                    out.push(format!("{}: {l}", entry.path().display()));
                }
            }
        }
        out
    }

    /// Stops every process with SIGTERM (gates, games, dispatchers) and waits for each.
    /// Returns the exit codes in that order.
    pub fn stop_all(&mut self) -> Vec<(Kind, u16, Option<i32>)> {
        let mut codes = Vec::new();
        for kind in [Kind::Gate, Kind::Game, Kind::Dispatcher] {
            for p in self.procs.iter_mut().filter(|p| p.kind == kind) {
                p.signal("TERM");
                let code = p.wait_exit(Duration::from_secs(10)).unwrap_or_else(|_| {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    Some(-1)
                });
                codes.push((kind, p.id, code));
            }
        }
        self.procs.clear();
        codes
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A raw TCP client speaking GoWorld's framing, for tests and benchmarks.
pub struct RawClient {
    pub stream: TcpStream,
    decoder: FrameDecoder,
}

impl RawClient {
    /// Connects to a gate.
    pub fn connect(addr: SocketAddr) -> std::io::Result<RawClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            decoder: FrameDecoder::new(64 << 20),
        })
    }

    /// Sends one frame with `payload`.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(payload.len() + 4);
        goworld_common::frame::write_frame(&mut buf, payload);
        self.stream.write_all(&buf)
    }

    /// Sends raw bytes (no framing), to test bad input.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame's payload within `timeout`: Ok(Some), Ok(None) on EOF, Err on timeout.
    pub fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self
                .decoder
                .next_frame()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
            {
                return Ok(Some(p.to_vec()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.decoder.extend(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(std::io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True if the server closed the connection within `timeout` (frames before it skipped).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::is_error_line;

    #[test]
    fn error_line_regex() {
        assert!(is_error_line("2026 error game1: x"));
        assert!(is_error_line("thread panicked at"));
        assert!(is_error_line("Panic: boom"));
        assert!(is_error_line("x_error_y"));
        assert!(!is_error_line("no errors here"));
        assert!(!is_error_line("terrors"));
        assert!(!is_error_line("info connection reset by peer"));
    }
}
