//! `goworld`: start, stop, kill, reload and status of the deployment a `goworld.ini`
//! describes (GoWorld's `cmd/goworld`, reference §5.1 and §5.4). Run `goworld -h`.
//!
//! The logic (order, PID files, ready lines, the status table) is in
//! [`goworld_common::ops`]; this file spawns, signals, reads `/proc` and the run directory,
//! and fetches `/status`.
//!
//! Every process runs in its own session, in the config file's directory, with its stdout
//! and stderr in `<run dir>/<name>.out` (begun afresh by `start`, appended to by `reload`);
//! its PID file `<run dir>/<name>.pid` is
//! checked against `/proc/<pid>/cmdline` (program and ID) and `/proc/<pid>/cwd` before it is
//! trusted, so a stale file is reported and never signalled. Commands that change the
//! deployment hold `<run dir>/goworld.lock` so that two of them never interleave.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Spawn, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use goworld_common::config::Config;
use goworld_common::ops::{
    self, Command, Kind, Liveness, Observed, Opts, PidRecord, ProcId, Ready, Row, Verdict, Watch,
};
use goworld_common::sig;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn setsid() -> i32;
    fn sysconf(name: i32) -> i64;
}

const SIGKILL: i32 = 9;
/// Linux's `_SC_CLK_TCK`.
const SC_CLK_TCK: i32 = 2;
/// How often waits look again.
const POLL: Duration = Duration::from_millis(50);
/// How long `kill` waits for each process to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Sends `signal` to one process, by PID (never 0 or a group).
fn send(pid: u32, signal: i32) -> std::io::Result<()> {
    let Ok(pid) = i32::try_from(pid) else {
        return Err(ErrorKind::InvalidInput.into());
    };
    if pid <= 0 {
        return Err(ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill(2) with a positive PID and a signal number has no memory effects.
    if unsafe { kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What `/proc/<pid>` shows, or `None` if there is no such process.
fn observe(pid: u32) -> Option<Observed> {
    let cmdline = match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c,
        Err(_) => return None,
    };
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.get(s.rfind(')')? + 2..)?.chars().next());
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    Some(Observed {
        cmdline,
        state,
        cwd,
    })
}

/// Seconds since process `pid` started, from `/proc`.
fn proc_uptime(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { sysconf(SC_CLK_TCK) };
    (hz > 0).then(|| (boot - start_ticks / hz as f64).max(0.0))
}

/// `GET /status` from `addr` with a plain HTTP/1.1 request.
fn fetch_status(addr: &str) -> Result<ops::ProcStatus, String> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(2))))
        .and_then(|_| s.write_all(ops::status_request(addr).as_bytes()))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let (code, body) = ops::parse_http_response(&raw)?;
    if code != 200 {
        return Err(format!("HTTP {code}"));
    }
    ops::parse_status(&body)
}

/// What a PID file says, checked.
enum PidState {
    /// No PID file.
    Absent,
    /// A PID file that cannot be read or parsed: why.
    Unreadable(String),
    /// It names a running process of this deployment.
    Running(PidRecord),
    /// It names a process that is gone or is something else now: why.
    Stale(PidRecord, String),
}

/// `<run dir>/goworld.lock`, held while a command changes the deployment.
struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

struct Ctx {
    opts: Opts,
    config: Config,
    /// The config file's directory: every process's working directory.
    dir: PathBuf,
    /// The config file's name, as given to the processes.
    config_name: String,
    run_dir: PathBuf,
    bin_dir: PathBuf,
    timeout: Duration,
    /// Processes this command started and has not reaped yet.
    children: HashMap<u32, Child>,
    /// How reaped children ended.
    exited: HashMap<u32, ExitStatus>,
    /// SIGINT or SIGTERM arrived.
    interrupted: Arc<AtomicBool>,
    /// SIGUSR1 arrived (foreground start: reload the games).
    reload_asked: Arc<AtomicBool>,
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let opts = match ops::parse_args(&argv) {
        Ok(o) => o,
        Err(e) => match e.strip_prefix("help:") {
            Some(usage) => {
                print!("{usage}");
                std::process::exit(0)
            }
            None => {
                eprintln!("goworld: {e}\n\n{}", ops::usage());
                std::process::exit(2)
            }
        },
    };
    let mut ctx = match Ctx::new(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("goworld: {e}");
            std::process::exit(2)
        }
    };
    let code = match ctx.opts.command {
        Command::Start => ctx.start(),
        Command::Stop => ctx.stop(false),
        Command::Kill => ctx.stop(true),
        Command::Reload => match ctx.reload() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("goworld: reload: {e}");
                1
            }
        },
        Command::Status => ctx.status(),
    };
    std::process::exit(code)
}

impl Ctx {
    fn new(opts: Opts) -> Result<Ctx, String> {
        let config = Config::load(&opts.configfile).map_err(|e| e.to_string())?;
        let dir = config.base_dir.clone();
        let config_name = opts
            .configfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{}: not a file", opts.configfile.display()))?;
        let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
        let run_dir = match &opts.rundir {
            Some(r) => cwd.join(r),
            None => dir.join(ops::RUN_DIR),
        };
        let bin_dir = match &opts.bindir {
            Some(b) => cwd.join(b),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find my own program: {e}"))?
                .parent()
                .ok_or("cannot find my own directory")?
                .to_path_buf(),
        };
        if opts.command != Command::Status {
            fs::create_dir_all(&run_dir)
                .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        }
        let timeout = Duration::from_secs(opts.timeout_secs);
        let ctx = Ctx {
            opts,
            config,
            dir,
            config_name,
            run_dir,
            bin_dir,
            timeout,
            children: HashMap::new(),
            exited: HashMap::new(),
            interrupted: Arc::new(AtomicBool::new(false)),
            reload_asked: Arc::new(AtomicBool::new(false)),
        };
        // start stops what it started on Ctrl-C; reload finishes the game it is swapping
        // first. stop, kill and status keep the default (Ctrl-C ends them at once).
        if matches!(ctx.opts.command, Command::Start | Command::Reload) {
            for s in [sig::SIGINT, sig::SIGTERM] {
                signal_hook::flag::register(s, ctx.interrupted.clone())
                    .map_err(|e| format!("cannot handle signal {s}: {e}"))?;
            }
        }
        if ctx.opts.command == Command::Start {
            signal_hook::flag::register(sig::SIGUSR1, ctx.reload_asked.clone())
                .map_err(|e| format!("cannot handle SIGUSR1: {e}"))?;
        }
        Ok(ctx)
    }

    fn pid_path(&self, p: ProcId) -> PathBuf {
        self.run_dir.join(p.pid_file())
    }

    fn out_path(&self, p: ProcId) -> PathBuf {
        self.run_dir.join(p.out_file())
    }

    /// A path as the user would type it from here (relative when under the current dir).
    fn show(&self, path: &Path) -> String {
        std::env::current_dir()
            .ok()
            .and_then(|c| path.strip_prefix(c).ok().map(Path::to_path_buf))
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p
                }
            })
            .unwrap_or_else(|| path.to_path_buf())
            .display()
            .to_string()
    }

    /// Its log file from the config, if it has one.
    fn log_file(&self, p: ProcId) -> Option<PathBuf> {
        let f = match p.kind {
            Kind::Dispatcher => &self.config.dispatcher(p.id)?.common.log_file,
            Kind::Game => &self.config.game(p.id)?.common.log_file,
            Kind::Gate => &self.config.gate(p.id)?.common.log_file,
        };
        (!f.as_os_str().is_empty()).then(|| f.clone())
    }

    /// The deployment's processes, plus any other this run directory has a PID file for.
    fn known(&self) -> Vec<ProcId> {
        let mut v = ops::start_order(&self.config.deployment);
        if let Ok(rd) = fs::read_dir(&self.run_dir) {
            let names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.extend(ops::pid_files_in(&names));
        }
        ops::in_start_order(&v)
    }

    /// Reaps the children that have ended.
    fn reap(&mut self) {
        let mut done = Vec::new();
        for (pid, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                done.push((*pid, st));
            }
        }
        for (pid, st) in done {
            self.children.remove(&pid);
            self.exited.insert(pid, st);
        }
    }

    fn read_pid(&mut self, p: ProcId) -> PidState {
        let text = match fs::read_to_string(self.pid_path(p)) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return PidState::Absent,
            Err(e) => return PidState::Unreadable(e.to_string()),
        };
        let rec = match PidRecord::parse(&text, p) {
            Ok(r) => r,
            Err(e) => return PidState::Unreadable(e.to_string()),
        };
        self.reap();
        match ops::judge(&rec, observe(rec.pid).as_ref(), &self.dir) {
            Liveness::Running => PidState::Running(rec),
            Liveness::Stale(why) => {
                let why = match self.exited.get(&rec.pid) {
                    Some(st) => format!("process {} ended ({st})", rec.pid),
                    None => why,
                };
                PidState::Stale(rec, why)
            }
        }
    }

    fn write_pid(&self, rec: &PidRecord) -> Result<(), String> {
        let path = self.pid_path(rec.proc);
        let tmp = path.with_extension("pid.tmp");
        fs::write(&tmp, rec.to_text())
            .and_then(|_| fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn remove_pid(&self, p: ProcId) {
        let _ = fs::remove_file(self.pid_path(p));
    }

    /// Whether `pid` is a live goworld command (another one than this).
    fn is_goworld(pid: u32) -> bool {
        let me = std::env::current_exe()
            .ok()
            .and_then(|e| e.file_name().map(|n| n.to_owned()));
        let Some(seen) = observe(pid) else {
            return false;
        };
        if seen.state == Some('Z') {
            return false;
        }
        let args = ops::split_cmdline(&seen.cmdline);
        let name = args
            .first()
            .and_then(|a| Path::new(a).file_name().map(|n| n.to_owned()));
        name.is_some() && name == me
    }

    /// The PID of another live goworld command holding the lock, if any.
    fn lock_holder(&self) -> Option<(u32, String)> {
        let text = fs::read_to_string(self.run_dir.join("goworld.lock")).ok()?;
        let mut pid = None;
        let mut op = String::new();
        for l in text.lines() {
            match l.split_once('=') {
                Some(("pid", v)) => pid = v.parse::<u32>().ok(),
                Some(("op", v)) => op = v.to_string(),
                _ => {}
            }
        }
        let pid = pid?;
        (pid != std::process::id() && Ctx::is_goworld(pid)).then_some((pid, op))
    }

    /// Takes the deployment's lock for `op`, or says who holds it.
    fn lock(&self, op: &str) -> Result<Lock, String> {
        let path = self.run_dir.join("goworld.lock");
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = write!(f, "pid={}\nop={op}\n", std::process::id());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if let Some((pid, other)) = self.lock_holder() {
                        return Err(format!(
                            "another goworld {other} (pid {pid}) is working on this deployment \
                             ({} is held)",
                            self.show(&path)
                        ));
                    }
                    // Left by a goworld that is gone.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!("cannot take {}", path.display()))
    }

    /// The program for `kind` in the bin directory, which must exist.
    fn program(&self, kind: Kind, game: &str) -> Result<PathBuf, String> {
        let name = match kind {
            Kind::Dispatcher => "dispatcher",
            Kind::Game => game,
            Kind::Gate => "gate",
        };
        let path = self.bin_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "no program {} (build with `cargo build --release --workspace --bins`, or give \
                 -bindir{})",
                path.display(),
                if kind == Kind::Game { " or -game" } else { "" }
            ))
        }
    }

    /// The stdout file's text after `offset`.
    fn out_since(&self, p: ProcId, offset: u64) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.out_path(p)) {
            use std::io::Seek;
            if f.seek(std::io::SeekFrom::Start(offset)).is_ok() {
                let _ = f.read_to_string(&mut s);
            }
        }
        s
    }

    /// What to show when `p` failed: the tail of its stdout (since `offset`), else of its log.
    fn failure_detail(&self, p: ProcId, offset: u64) -> String {
        let out = self.out_since(p, offset);
        let mut msg = String::new();
        if !out.trim().is_empty() {
            msg.push_str(&format!(
                "last lines of {}:\n{}",
                self.show(&self.out_path(p)),
                ops::tail_lines(&out, 15)
            ));
        } else {
            msg.push_str(&format!("{} is empty\n", self.show(&self.out_path(p))));
        }
        if let Some(log) = self.log_file(p) {
            if out.trim().is_empty() {
                if let Ok(text) = fs::read_to_string(&log) {
                    msg.push_str(&format!(
                        "last lines of {}:\n{}",
                        self.show(&log),
                        ops::tail_lines(&text, 15)
                    ));
                }
            } else {
                msg.push_str(&format!("its log: {}\n", self.show(&log)));
            }
        }
        msg
    }

    /// Starts `p` from `program` and waits for its ready line. On failure the process is
    /// gone and so is its PID file; the error says why, with the tail of its output.
    fn start_one(&mut self, p: ProcId, program: &Path, restore: bool) -> Result<PidRecord, String> {
        // A fresh start begins a fresh file; a restore (reload) appends to it.
        let out_path = self.out_path(p);
        if !restore {
            let _ = fs::remove_file(&out_path);
        }
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(|e| format!("{p}: cannot open {}: {e}", out_path.display()))?;
        let offset = out.metadata().map(|m| m.len()).unwrap_or(0);
        let err = out
            .try_clone()
            .map_err(|e| format!("{p}: cannot open {}: {e}", out_path.display()))?;
        let mut cmd = Spawn::new(program);
        cmd.args(p.args(&self.config_name, restore))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{p}: cannot start {}: {e}", program.display()))?;
        let pid = child.id();
        self.children.insert(pid, child);
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut rec = PidRecord {
            pid,
            proc: p,
            program: program.to_path_buf(),
            http: None,
            started,
            restored: restore,
        };
        if let Err(e) = self.write_pid(&rec) {
            self.end(pid);
            return Err(format!("{p}: {e}"));
        }
        match self.wait_ready(p, pid, offset) {
            Ok(ready) => {
                rec.http = ready.http.clone();
                self.write_pid(&rec)?;
                let after = ready
                    .line
                    .split("<!--XSUPERVISOR:END-->")
                    .nth(1)
                    .unwrap_or("")
                    .trim();
                println!("goworld: {p} is ready (pid {pid}) {after}");
                Ok(rec)
            }
            Err(why) => {
                self.end(pid);
                self.remove_pid(p);
                Err(format!(
                    "{p} (pid {pid}, {} {}) {why}\n{}",
                    program.display(),
                    p.args(&self.config_name, restore).join(" "),
                    self.failure_detail(p, offset)
                ))
            }
        }
    }

    /// Waits for `p`'s ready line in its stdout after `offset`.
    fn wait_ready(&mut self, p: ProcId, pid: u32, offset: u64) -> Result<Ready, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(r) = ops::find_ready(&self.out_since(p, offset), p.kind) {
                return Ok(r);
            }
            self.reap();
            if let Some(st) = self.exited.get(&pid) {
                return Err(format!("exited ({st}) before it was ready"));
            }
            if self.interrupted.load(Ordering::SeqCst) {
                return Err("was not ready yet when goworld was interrupted".into());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "printed no ready line within {} s (-timeout)",
                    self.timeout.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Ends a child that failed to start: SIGTERM, then SIGKILL after 5 s.
    fn end(&mut self, pid: u32) {
        let _ = send(pid, sig::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.reap();
            if !self.children.contains_key(&pid) {
                return;
            }
            if Instant::now() >= deadline {
                let _ = send(pid, SIGKILL);
                if let Some(mut c) = self.children.remove(&pid) {
                    if let Ok(st) = c.wait() {
                        self.exited.insert(pid, st);
                    }
                }
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the process `rec` names is gone; how it ended (its exit status when this
    /// command started it), or `None` if it is still there after `timeout`.
    fn wait_gone(&mut self, rec: &PidRecord, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            if let Some(st) = self.exited.get(&rec.pid) {
                return Some(st.to_string());
            }
            if !self.children.contains_key(&rec.pid)
                && ops::judge(rec, observe(rec.pid).as_ref(), &self.dir) != Liveness::Running
            {
                return Some("exited".into());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    // -----------------------------------------------------------------------------------
    // start

    fn start(&mut self) -> i32 {
        let lock = match self.lock("start") {
            Ok(l) => l,
            Err(e) => {
                eprintln!("goworld: start: {e}");
                return 1;
            }
        };
        let game = self
            .opts
            .game
            .clone()
            .unwrap_or_else(|| ops::DEFAULT_GAME.to_string());
        // Refuse if anything of this deployment runs; forget stale PID files.
        let mut running = Vec::new();
        for p in self.known() {
            match self.read_pid(p) {
                PidState::Absent => {}
                PidState::Running(rec) => running.push(format!("{p} (pid {})", rec.pid)),
                PidState::Stale(_, why) => {
                    println!(
                        "goworld: {p}: stale PID file {} ({why}); removed",
                        self.show(&self.pid_path(p))
                    );
                    self.remove_pid(p);
                }
                PidState::Unreadable(why) => {
                    println!(
                        "goworld: {p}: unusable PID file {} ({why}); removed",
                        self.show(&self.pid_path(p))
                    );
                    self.remove_pid(p);
                }
            }
        }
        if !running.is_empty() {
            eprintln!(
                "goworld: start: already running: {}; `goworld stop` (or status) first",
                running.join(", ")
            );
            return 1;
        }
        let mut programs = HashMap::new();
        for kind in [Kind::Dispatcher, Kind::Game, Kind::Gate] {
            match self.program(kind, &game) {
                Ok(path) => {
                    programs.insert(kind, path);
                }
                Err(e) => {
                    eprintln!("goworld: start: {e}");
                    return 1;
                }
            }
        }
        let order = ops::start_order(&self.config.deployment);
        println!(
            "goworld: starting {} processes in {} (output in {})",
            order.len(),
            self.show(&self.dir),
            self.show(&self.run_dir)
        );
        let mut started: Vec<ProcId> = Vec::new();
        for p in order {
            if self.interrupted.load(Ordering::SeqCst) {
                eprintln!("goworld: start: interrupted");
                self.stop_procs(&started, false);
                return 130;
            }
            let program = programs[&p.kind].clone();
            match self.start_one(p, &program, false) {
                Ok(_) => started.push(p),
                Err(e) => {
                    eprint!("goworld: start failed: {e}");
                    if !started.is_empty() {
                        eprintln!("goworld: stopping the {} processes started", started.len());
                        self.stop_procs(&started, false);
                    }
                    return 1;
                }
            }
        }
        let d = &self.config.deployment;
        println!(
            "goworld: {} dispatchers, {} games ({game}), {} gates running",
            d.desired_dispatchers, d.desired_games, d.desired_gates
        );
        drop(lock);
        if self.opts.daemon {
            println!(
                "goworld: running in the background; `goworld status` and `goworld stop` with \
                 -configfile {} manage them",
                self.show(&self.opts.configfile)
            );
            return 0;
        }
        self.watch()
    }

    /// Foreground: watches the deployment until Ctrl-C (stop all), a process ending (stop
    /// the rest), or another goworld stopping them all.
    fn watch(&mut self) -> i32 {
        println!("goworld: Ctrl-C stops them all; SIGUSR1 to this command reloads the games");
        loop {
            std::thread::sleep(Duration::from_millis(200));
            self.reap();
            if self.interrupted.load(Ordering::SeqCst) {
                println!("goworld: stopping...");
                return self.stop_when_free();
            }
            if self.reload_asked.swap(false, Ordering::SeqCst) {
                // A game that did not come back is seen below, and the rest are stopped;
                // a reload refused or a freeze that failed leaves everything running.
                if let Err(e) = self.reload() {
                    eprintln!("goworld: reload: {e}");
                }
                continue;
            }
            if self.lock_holder().is_some() {
                continue;
            }
            let procs = ops::start_order(&self.config.deployment);
            let mut seen = Vec::new();
            for p in procs {
                let w = match self.read_pid(p) {
                    PidState::Absent => Watch::NoPidFile,
                    PidState::Running(_) => Watch::Running,
                    PidState::Stale(_, why) | PidState::Unreadable(why) => Watch::Exited(why),
                };
                seen.push((p, w));
            }
            match ops::verdict(&seen) {
                Verdict::KeepWatching => {}
                Verdict::AllStopped => {
                    println!("goworld: every process has been stopped; exiting");
                    return 0;
                }
                Verdict::Failed(failed) => {
                    // A goworld stop, kill or reload that started meanwhile explains it.
                    if self.lock_holder().is_some() {
                        continue;
                    }
                    for (p, why) in &failed {
                        eprint!(
                            "goworld: {p} is gone: {why}\n{}",
                            self.failure_detail(*p, 0)
                        );
                    }
                    eprintln!("goworld: stopping the rest");
                    self.stop_when_free();
                    return 1;
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // stop and kill

    fn stop(&mut self, hard: bool) -> i32 {
        let what = if hard { "kill" } else { "stop" };
        let _lock = match self.lock(what) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("goworld: {what}: {e}");
                return 1;
            }
        };
        let procs = self.known();
        self.stop_procs(&procs, hard)
    }

    /// The foreground command's stop: waits (up to -timeout) for another goworld command
    /// working on the deployment (a reload from another terminal) to finish first.
    fn stop_when_free(&mut self) -> i32 {
        let deadline = Instant::now() + self.timeout;
        let _lock = loop {
            match self.lock("stop") {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("goworld: stop: {e}");
                    return 1;
                }
                Err(_) => std::thread::sleep(POLL),
            }
        };
        let procs = self.known();
        self.stop_procs(&procs, false)
    }

    /// Stops `procs` (gates, games, dispatchers), each waited for before the next.
    fn stop_procs(&mut self, procs: &[ProcId], hard: bool) -> i32 {
        let mut stopped = 0;
        for p in ops::stop_order(procs) {
            let rec = match self.read_pid(p) {
                PidState::Absent => continue,
                PidState::Running(rec) => rec,
                PidState::Stale(rec, why) => {
                    println!(
                        "goworld: {p}: stale PID file (pid {}: {why}); not signalled, removed",
                        rec.pid
                    );
                    self.remove_pid(p);
                    continue;
                }
                PidState::Unreadable(why) => {
                    println!(
                        "goworld: {p}: unusable PID file {} ({why}); removed",
                        self.show(&self.pid_path(p))
                    );
                    self.remove_pid(p);
                    continue;
                }
            };
            let (signal, name, wait) = if hard {
                (SIGKILL, "SIGKILL", KILL_WAIT)
            } else {
                (sig::SIGTERM, "SIGTERM", self.timeout)
            };
            if let Err(e) = send(rec.pid, signal) {
                if e.kind() != ErrorKind::NotFound && e.raw_os_error() != Some(3) {
                    eprintln!("goworld: {p} (pid {}): cannot send {name}: {e}", rec.pid);
                    return 1;
                }
            }
            match self.wait_gone(&rec, wait) {
                Some(how) => {
                    self.remove_pid(p);
                    stopped += 1;
                    println!("goworld: {p} (pid {}) stopped ({how})", rec.pid);
                }
                None => {
                    eprintln!(
                        "goworld: {p} (pid {}) still runs {} s after {name}; {}",
                        rec.pid,
                        wait.as_secs(),
                        if hard {
                            "it cannot be killed"
                        } else {
                            "`goworld kill` ends it (a game may still be saving: see its log)"
                        }
                    );
                    return 1;
                }
            }
        }
        println!(
            "goworld: {} {stopped} processes",
            if hard { "killed" } else { "stopped" }
        );
        0
    }

    // -----------------------------------------------------------------------------------
    // reload

    /// Hot-swaps every game in turn: SIGUSR1, wait for it to write its freeze file and exit,
    /// start the program now on disk with `-restore`, wait for its ready line. A game that
    /// is not running but has a freeze file (a reload that did not finish) is restored from
    /// it; any other game not running refuses the reload before anything is done.
    fn reload(&mut self) -> Result<(), String> {
        let _lock = self.lock("reload")?;
        let n = self.config.deployment.desired_games;
        // Each game: its running process, or None to restore it from its freeze file.
        let mut plan: Vec<(ProcId, Option<PidRecord>)> = Vec::new();
        for id in 1..=n {
            let p = ProcId::new(Kind::Game, id);
            let why = match self.read_pid(p) {
                PidState::Running(rec) => {
                    plan.push((p, Some(rec)));
                    continue;
                }
                PidState::Absent => "it is not running".to_string(),
                PidState::Stale(_, why) | PidState::Unreadable(why) => {
                    format!("its PID file is stale ({why})")
                }
            };
            if self.freeze_file(p).is_file() {
                plan.push((p, None));
            } else {
                return Err(format!(
                    "{p}: {why}, and there is no {} to restore it from; reload needs all {n} \
                     games running (as GoWorld)",
                    self.show(&self.freeze_file(p))
                ));
            }
        }
        let running_name = plan
            .iter()
            .find_map(|(_, r)| r.as_ref())
            .and_then(|r| r.program.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        for (p, rec) in plan {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(format!(
                    "interrupted before {p}; the games before it are reloaded"
                ));
            }
            let name = self
                .opts
                .game
                .clone()
                .or_else(|| {
                    rec.as_ref()
                        .and_then(|r| r.program.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .or_else(|| running_name.clone())
                .unwrap_or_else(|| ops::DEFAULT_GAME.to_string());
            let program = self.program(Kind::Game, &name)?;
            let freeze = self.freeze_file(p);
            let old = match rec {
                Some(rec) => {
                    self.freeze(&rec)?;
                    rec.pid.to_string()
                }
                None => {
                    println!(
                        "goworld: {p} is not running; restoring it from {}",
                        self.show(&freeze)
                    );
                    "-".to_string()
                }
            };
            let new = self.start_one(p, &program, true).map_err(|e| {
                format!(
                    "{p} did not come back: {e}The gates and dispatchers keep running and hold \
                     its clients' packets for freeze_hold_timeout_s; {} is kept: fix the cause \
                     and run `goworld reload` again (it restores {p} from it), or `goworld stop`",
                    self.show(&freeze),
                )
            })?;
            println!("goworld: {p} reloaded (pid {old} -> {})", new.pid);
        }
        println!("goworld: reloaded {n} games");
        Ok(())
    }

    fn freeze_file(&self, p: ProcId) -> PathBuf {
        self.dir.join(format!("game{}_freezed.dat", p.id))
    }

    /// SIGUSR1 to a running game; waits for it to write its freeze file and exit.
    fn freeze(&mut self, rec: &PidRecord) -> Result<(), String> {
        let p = rec.proc;
        let freeze = self.freeze_file(p);
        // A freeze file next to a running game is left over (a restore retires its file):
        // moved aside, so that only the one this freeze writes can be restored.
        if freeze.exists() {
            let mut old = freeze.clone().into_os_string();
            old.push(".old");
            fs::rename(&freeze, &old)
                .map_err(|e| format!("cannot move {} aside: {e}", freeze.display()))?;
            println!(
                "goworld: {} was left over from an earlier freeze; moved to {}",
                self.show(&freeze),
                self.show(Path::new(&old))
            );
        }
        println!("goworld: reloading {p} (pid {}): freezing", rec.pid);
        send(rec.pid, sig::SIGUSR1)
            .map_err(|e| format!("{p} (pid {}): cannot send SIGUSR1: {e}", rec.pid))?;
        let Some(how) = self.wait_gone(rec, self.timeout) else {
            return Err(format!(
                "{p} (pid {}) did not exit within {} s of SIGUSR1; it keeps running (a failed \
                 freeze leaves the game running). See {}",
                rec.pid,
                self.timeout.as_secs(),
                self.log_file(p)
                    .map_or_else(|| "its output".to_string(), |l| self.show(&l))
            ));
        };
        self.remove_pid(p);
        let clean = how == "exited" || how == "exit status: 0";
        if !clean || !freeze.is_file() {
            return Err(format!(
                "{p} (pid {}) ended ({how}) without writing {}; it is not restarted. The gates \
                 and dispatchers keep running.\n{}",
                rec.pid,
                self.show(&freeze),
                self.failure_detail(p, 0)
            ));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // status

    fn status(&mut self) -> i32 {
        let mut rows = Vec::new();
        let mut game = self.opts.game.clone();
        for p in self.known() {
            let row = Row {
                proc: p,
                pid: None,
                state: "stopped".into(),
                uptime_seconds: None,
                clients: None,
                entities: None,
                note: String::new(),
            };
            let row = match self.read_pid(p) {
                PidState::Absent => row,
                PidState::Unreadable(why) => Row {
                    state: "stale".into(),
                    note: format!("PID file: {why}"),
                    ..row
                },
                PidState::Stale(rec, why) => Row {
                    pid: Some(rec.pid),
                    state: "stale".into(),
                    note: why,
                    ..row
                },
                PidState::Running(rec) => {
                    if p.kind == Kind::Game && game.is_none() {
                        game = rec
                            .program
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned());
                    }
                    let base = Row {
                        pid: Some(rec.pid),
                        state: "running".into(),
                        uptime_seconds: proc_uptime(rec.pid),
                        ..row
                    };
                    match rec.http.as_deref().map(fetch_status) {
                        None => Row {
                            note: "no http_addr".into(),
                            ..base
                        },
                        Some(Err(e)) => Row {
                            note: format!("/status on {}: {e}", rec.http.unwrap_or_default()),
                            ..base
                        },
                        Some(Ok(st)) => Row {
                            state: st.state.unwrap_or(base.state),
                            uptime_seconds: st.uptime_seconds.or(base.uptime_seconds),
                            clients: st.clients,
                            entities: st.entities,
                            note: match st.pid {
                                Some(pid) if pid != rec.pid => {
                                    format!(
                                        "{} answers for pid {pid}",
                                        rec.http.unwrap_or_default()
                                    )
                                }
                                _ => String::new(),
                            },
                            ..base
                        },
                    }
                }
            };
            rows.push(row);
        }
        print!("{}", ops::format_table(&rows));
        println!(
            "{}",
            ops::summary(
                &rows,
                &self.config.deployment,
                game.as_deref().unwrap_or(ops::DEFAULT_GAME)
            )
        );
        // As an init script's status (LSB): 0 when all of it runs, 3 when some does not.
        if rows.iter().all(|r| r.running()) {
            0
        } else {
            3
        }
    }
}
