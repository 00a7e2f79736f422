//! The `goworld` operations command's logic (reference §5.1, §5.4): which processes a
//! deployment has and in what order they start and stop, the PID files that track them and
//! how a PID file is checked against a live process's command line, the ready line, the
//! `/status` JSON and the status table. No sockets, files, clock or signals here: the binary
//! (`common/src/bin/goworld.rs`) reads `/proc`, spawns, signals and fetches, and hands what it
//! saw to these functions.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Deployment;

/// The kinds of server process, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Dispatcher,
    Game,
    Gate,
}

impl Kind {
    /// `dispatcher`, `game`, `gate`: the name in PID files, messages and the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dispatcher => "dispatcher",
            Kind::Game => "game",
            Kind::Gate => "gate",
        }
    }

    /// The word of its ready line (`GAME` in `... GAME STARTED ...`).
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Dispatcher => "DISPATCHER",
            Kind::Game => "GAME",
            Kind::Gate => "GATE",
        }
    }

    /// Its ID flag, without the dash: `dispid` or `gid`.
    pub fn id_flag(self) -> &'static str {
        match self {
            Kind::Dispatcher => "dispid",
            _ => "gid",
        }
    }

    /// Stop order: gates first, then games, then dispatchers.
    fn stop_rank(self) -> u8 {
        match self {
            Kind::Gate => 0,
            Kind::Game => 1,
            Kind::Dispatcher => 2,
        }
    }
}

/// One process of a deployment: `dispatcher1`, `game2`, `gate1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId {
    pub kind: Kind,
    pub id: u16,
}

impl ProcId {
    pub fn new(kind: Kind, id: u16) -> ProcId {
        ProcId { kind, id }
    }

    /// Reads `game2` (the stem of a PID file); `None` for anything else.
    pub fn parse(s: &str) -> Option<ProcId> {
        for kind in [Kind::Dispatcher, Kind::Game, Kind::Gate] {
            if let Some(n) = s.strip_prefix(kind.name()) {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                return match n.parse::<u16>() {
                    Ok(id) if id > 0 => Some(ProcId::new(kind, id)),
                    _ => None,
                };
            }
        }
        None
    }

    /// Its PID file's name in the run directory.
    pub fn pid_file(self) -> String {
        format!("{self}.pid")
    }

    /// The file its stdout and stderr go to in the run directory.
    pub fn out_file(self) -> String {
        format!("{self}.out")
    }

    /// Its flags, as `goworld start` gives them: `-gid 1 -configfile goworld.ini`
    /// and `-restore` for a game being restored.
    pub fn args(self, config_name: &str, restore: bool) -> Vec<String> {
        let mut a = vec![
            format!("-{}", self.kind.id_flag()),
            self.id.to_string(),
            "-configfile".to_string(),
            config_name.to_string(),
        ];
        if restore {
            a.push("-restore".to_string());
        }
        a
    }
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.name(), self.id)
    }
}

/// Every process of `d`, in start order: dispatchers 1..=N, games, gates.
pub fn start_order(d: &Deployment) -> Vec<ProcId> {
    let mut v = Vec::new();
    for (kind, n) in [
        (Kind::Dispatcher, d.desired_dispatchers),
        (Kind::Game, d.desired_games),
        (Kind::Gate, d.desired_gates),
    ] {
        v.extend((1..=n).map(|id| ProcId::new(kind, id)));
    }
    v
}

/// `procs` in stop order: gates, then games (which save), then dispatchers; by ID within a
/// kind. Duplicates are dropped.
pub fn stop_order(procs: &[ProcId]) -> Vec<ProcId> {
    let mut v = procs.to_vec();
    v.sort_by_key(|p| (p.kind.stop_rank(), p.id));
    v.dedup();
    v
}

/// `procs` in start order, duplicates dropped.
pub fn in_start_order(procs: &[ProcId]) -> Vec<ProcId> {
    let mut v = procs.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The process names of the PID files among `file_names` (`game3.pid` → game3), for
/// processes started by an earlier, larger deployment.
pub fn pid_files_in(file_names: &[String]) -> Vec<ProcId> {
    let mut v: Vec<ProcId> = file_names
        .iter()
        .filter_map(|n| n.strip_suffix(".pid"))
        .filter_map(ProcId::parse)
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// PID files.

/// What a PID file says: which process, started from which program, serving /status where.
#[derive(Debug, Clone, PartialEq)]
pub struct PidRecord {
    pub pid: u32,
    pub proc: ProcId,
    /// The program started (absolute path).
    pub program: PathBuf,
    /// Its /status address, from its ready line (`http=`); `None` if it serves none.
    pub http: Option<String>,
    /// When it was started, Unix seconds.
    pub started: u64,
    /// True if it was started with `-restore` (by a reload).
    pub restored: bool,
}

/// Why a PID file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFileError {
    /// A line that is not `key=value`.
    NotKeyValue { line: usize },
    /// A required key is missing (`pid`, `process`, `program`).
    Missing { key: &'static str },
    /// A value that does not parse.
    BadValue { key: String, value: String },
    /// The file is for another process than its name says.
    WrongProcess { expected: ProcId, found: ProcId },
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileError::NotKeyValue { line } => write!(f, "line {line} is not key=value"),
            PidFileError::Missing { key } => write!(f, "no {key}= line"),
            PidFileError::BadValue { key, value } => write!(f, "bad {key}= value '{value}'"),
            PidFileError::WrongProcess { expected, found } => {
                write!(f, "it is for {found}, not {expected}")
            }
        }
    }
}

impl std::error::Error for PidFileError {}

impl PidRecord {
    /// The file's text: one `key=value` per line.
    pub fn to_text(&self) -> String {
        format!(
            "pid={}\nprocess={}\nprogram={}\nhttp={}\nstarted={}\nrestored={}\n",
            self.pid,
            self.proc,
            self.program.display(),
            self.http.as_deref().unwrap_or(""),
            self.started,
            u8::from(self.restored)
        )
    }

    /// Parses a PID file's text; `expected` is the process its name says it is for.
    pub fn parse(text: &str, expected: ProcId) -> Result<PidRecord, PidFileError> {
        let (mut pid, mut proc, mut program, mut http, mut started, mut restored) =
            (None, None, None, None, 0u64, false);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or(PidFileError::NotKeyValue { line: i + 1 })?;
            let bad = || PidFileError::BadValue {
                key: k.to_string(),
                value: v.to_string(),
            };
            match k {
                "pid" => pid = Some(v.parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
                "process" => proc = Some(ProcId::parse(v).ok_or_else(bad)?),
                "program" if !v.is_empty() => program = Some(PathBuf::from(v)),
                "program" => return Err(bad()),
                "http" => http = (!v.is_empty()).then(|| v.to_string()),
                "started" => started = v.parse().map_err(|_| bad())?,
                "restored" => restored = v == "1",
                _ => {} // newer keys: ignored
            }
        }
        let proc = proc.ok_or(PidFileError::Missing { key: "process" })?;
        if proc != expected {
            return Err(PidFileError::WrongProcess {
                expected,
                found: proc,
            });
        }
        Ok(PidRecord {
            pid: pid.ok_or(PidFileError::Missing { key: "pid" })?,
            proc,
            program: program.ok_or(PidFileError::Missing { key: "program" })?,
            http,
            started,
            restored,
        })
    }
}

/// What `/proc/<pid>` showed of the process a PID file names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// `/proc/<pid>/cmdline`: the arguments, NUL-separated (empty for a zombie).
    pub cmdline: Vec<u8>,
    /// The state letter of `/proc/<pid>/stat` (`Z` for a zombie), if read.
    pub state: Option<char>,
    /// `/proc/<pid>/cwd`, if readable.
    pub cwd: Option<PathBuf>,
}

/// Whether a PID file can be trusted.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// The process it names is running, with this program and ID, in this directory.
    Running,
    /// It cannot be trusted (the process is gone, or the PID now belongs to another process):
    /// the reason. A stale PID file's PID is never signalled.
    Stale(String),
}

/// The arguments of a NUL-separated command line.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The value of Go-style flag `-name` in `args` (`-name v`, `--name v`, `-name=v`); the
/// last one wins, as in Go.
pub fn flag_value(args: &[String], name: &str) -> Option<String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let body = a.strip_prefix("--").or_else(|| a.strip_prefix('-'));
        if let Some(body) = body {
            if body == name {
                found = args.get(i + 1).cloned();
                i += 2;
                continue;
            }
            if let Some(v) = body.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                found = Some(v.to_string());
            }
        }
        i += 1;
    }
    found
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks a PID file against what `/proc` showed of its PID (`None`: no such process).
/// `dir` is the working directory the process was started in (the config file's).
pub fn judge(rec: &PidRecord, seen: Option<&Observed>, dir: &Path) -> Liveness {
    let Some(seen) = seen else {
        return Liveness::Stale(format!("no process {}", rec.pid));
    };
    if seen.state == Some('Z') || seen.cmdline.is_empty() {
        return Liveness::Stale(format!("process {} has exited", rec.pid));
    }
    let args = split_cmdline(&seen.cmdline);
    let program = file_name(&rec.program);
    let found = args
        .first()
        .map(|a| file_name(Path::new(a)))
        .unwrap_or_default();
    if found != program {
        return Liveness::Stale(format!(
            "pid {} is now '{}', not {program}",
            rec.pid,
            args.join(" ")
        ));
    }
    let flag = rec.proc.kind.id_flag();
    let id = flag_value(&args[1..], flag);
    if id.as_deref().map(str::trim) != Some(rec.proc.id.to_string().as_str()) {
        return Liveness::Stale(format!(
            "pid {} is {program} with -{flag} {}, not {}",
            rec.pid,
            id.as_deref().unwrap_or("(none)"),
            rec.proc.id
        ));
    }
    if let Some(cwd) = &seen.cwd {
        if cwd != dir {
            return Liveness::Stale(format!(
                "pid {} is {program} -{flag} {} of another deployment (in {})",
                rec.pid,
                rec.proc.id,
                cwd.display()
            ));
        }
    }
    Liveness::Running
}

// ---------------------------------------------------------------------------------------
// Ready lines.

/// A process's ready line and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub line: String,
    /// `http=<addr>`: where it serves /status.
    pub http: Option<String>,
}

/// The first ready line of `kind` in `out` (a process's stdout).
pub fn find_ready(out: &str, kind: Kind) -> Option<Ready> {
    let head = crate::ready_line(kind.tag());
    let line = out.lines().find(|l| l.starts_with(&head))?;
    let http = line[head.len()..]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .map(str::to_string);
    Some(Ready {
        line: line.to_string(),
        http,
    })
}

/// The last `n` lines of `text`, each indented by two spaces (for failure messages).
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| format!("  {l}\n")).collect()
}

// ---------------------------------------------------------------------------------------
// /status.

/// A JSON value (enough of JSON for the processes' `/status`).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Field `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(f) => f.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses one JSON value (surrounding whitespace allowed).
pub fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("unexpected character")
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') | Some(b'[') if self.depth >= 32 => self.err("nested too deeply"),
            Some(b'{') => {
                self.depth += 1;
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.ws();
                        if self.s.get(self.i) != Some(&b':') {
                            return self.err("expected ':'");
                        }
                        self.i += 1;
                        let v = self.value()?;
                        fields.push((k, v));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return self.err("expected ',' or '}'"),
                        }
                    }
                }
                self.depth -= 1;
                Ok(Json::Obj(fields))
            }
            Some(b'[') => {
                self.depth += 1;
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return self.err("expected ',' or ']'"),
                        }
                    }
                }
                self.depth -= 1;
                Ok(Json::Arr(items))
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Json::Num)
                    .map_or_else(|| self.err("bad value"), Ok)
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("expected a string");
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).or_else(|_| self.err("invalid UTF-8"));
                }
                Some(b'\\') => {
                    let esc = self.s.get(self.i + 1).copied();
                    self.i += 2;
                    let c = match esc {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                            self.i += 4;
                            hex.and_then(char::from_u32).unwrap_or('\u{fffd}')
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
                Some(&b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

/// What a process's `GET /status` says that the table shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcStatus {
    pub pid: Option<u32>,
    pub kind: Option<String>,
    pub id: Option<u16>,
    pub state: Option<String>,
    pub uptime_seconds: Option<f64>,
    /// Gates: connected clients.
    pub clients: Option<u64>,
    /// Games and dispatchers: entities.
    pub entities: Option<u64>,
}

/// Reads a `/status` body.
pub fn parse_status(body: &str) -> Result<ProcStatus, String> {
    let j = parse_json(body)?;
    if !matches!(j, Json::Obj(_)) {
        return Err("not a JSON object".into());
    }
    let num = |k: &str| j.get(k).and_then(Json::as_f64).filter(|n| *n >= 0.0);
    Ok(ProcStatus {
        pid: num("pid").map(|n| n as u32),
        kind: j.get("kind").and_then(Json::as_str).map(str::to_string),
        id: num("id").map(|n| n as u16),
        state: j.get("state").and_then(Json::as_str).map(str::to_string),
        uptime_seconds: num("uptime_seconds"),
        clients: num("clients").map(|n| n as u64),
        entities: num("entities").map(|n| n as u64),
    })
}

/// The request `goworld status` sends to `host` (`127.0.0.1:25001`).
pub fn status_request(host: &str) -> String {
    format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// Splits an HTTP/1.x response into its status code and body (read to the end of the
/// connection; `Content-Length` is honoured when present).
pub fn parse_http_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no end of headers in the response")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| {
            let mut w = l.split_whitespace();
            let v = w.next()?;
            if !v.starts_with("HTTP/") {
                return None;
            }
            w.next()?.parse::<u16>().ok()
        })
        .ok_or("not an HTTP response")?;
    let len = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse::<usize>().ok()
        } else {
            None
        }
    });
    let body = match len {
        Some(n) if n <= body.len() => &body[..n],
        _ => body,
    };
    Ok((status, body.to_string()))
}

// ---------------------------------------------------------------------------------------
// The status table.

/// One line of `goworld status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub proc: ProcId,
    pub pid: Option<u32>,
    /// ready, waiting, freezing, stopping (from /status), running (no /status), stale,
    /// stopped.
    pub state: String,
    pub uptime_seconds: Option<f64>,
    pub clients: Option<u64>,
    pub entities: Option<u64>,
    /// Why it is stale, or why /status could not be read.
    pub note: String,
}

impl Row {
    /// Whether the process is running (whatever /status says).
    pub fn running(&self) -> bool {
        !matches!(self.state.as_str(), "stale" | "stopped")
    }
}

/// `42s`, `5m03s`, `2h05m`, `3d04h`.
pub fn format_uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The table of `goworld status`, one row per process, columns aligned.
pub fn format_table(rows: &[Row]) -> String {
    let dash = || "-".to_string();
    let mut cells: Vec<[String; 7]> = vec![[
        "PROCESS".into(),
        "PID".into(),
        "STATE".into(),
        "UPTIME".into(),
        "CLIENTS".into(),
        "ENTITIES".into(),
        String::new(),
    ]];
    for r in rows {
        cells.push([
            r.proc.to_string(),
            r.pid.map_or_else(dash, |p| p.to_string()),
            r.state.clone(),
            r.uptime_seconds.map_or_else(dash, format_uptime),
            r.clients.map_or_else(dash, |n| n.to_string()),
            r.entities.map_or_else(dash, |n| n.to_string()),
            r.note.clone(),
        ]);
    }
    let mut width = [0usize; 6];
    for c in &cells {
        for (w, cell) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for c in &cells {
        let mut line = String::new();
        for (i, cell) in c.iter().enumerate() {
            if i < 6 {
                let pad = width[i] - cell.chars().count();
                // Text left-aligned, numbers right-aligned.
                if (1..=1).contains(&i) || (3..=5).contains(&i) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
                line.push_str("  ");
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// GoWorld's summary line: `1/1 dispatchers, 2/2 games (test_game), 1/1 gates running`.
pub fn summary(rows: &[Row], d: &Deployment, game: &str) -> String {
    let count = |k: Kind| {
        rows.iter()
            .filter(|r| r.proc.kind == k && r.running())
            .count()
    };
    format!(
        "{}/{} dispatchers, {}/{} games ({game}), {}/{} gates running",
        count(Kind::Dispatcher),
        d.desired_dispatchers,
        count(Kind::Game),
        d.desired_games,
        count(Kind::Gate),
        d.desired_gates
    )
}

// ---------------------------------------------------------------------------------------
// Watching a foreground deployment.

/// What `goworld start` (foreground) sees of one process when it looks.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// Its PID file names a running process.
    Running,
    /// Its PID file is there but the process is gone: how it ended (exit status or reason).
    Exited(String),
    /// No PID file (`goworld stop` or `kill` removed it).
    NoPidFile,
}

/// What the foreground command does after looking at every process.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Everything runs: keep watching.
    KeepWatching,
    /// Every PID file is gone (another `goworld stop`/`kill` ended them): exit 0.
    AllStopped,
    /// These processes ended on their own (or lost their PID file while others run): stop
    /// the rest and exit non-zero.
    Failed(Vec<(ProcId, String)>),
}

/// Decides what the foreground command does (run while no other `goworld` command holds
/// the deployment's lock).
pub fn verdict(seen: &[(ProcId, Watch)]) -> Verdict {
    if seen.iter().all(|(_, w)| *w == Watch::NoPidFile) {
        return Verdict::AllStopped;
    }
    let failed: Vec<(ProcId, String)> = seen
        .iter()
        .filter_map(|(p, w)| match w {
            Watch::Running => None,
            Watch::Exited(why) => Some((*p, why.clone())),
            Watch::NoPidFile => Some((*p, "its PID file was removed".to_string())),
        })
        .collect();
    if failed.is_empty() {
        Verdict::KeepWatching
    } else {
        Verdict::Failed(failed)
    }
}

// ---------------------------------------------------------------------------------------
// The command line.

/// The five commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Kill,
    Reload,
    Status,
}

/// `goworld <command> [flags]`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub command: Command,
    /// `-configfile` (default `goworld.ini`).
    pub configfile: PathBuf,
    /// `-game NAME` (or GoWorld's server ID as an argument, `examples/test_game`: its last
    /// component): the game program. `None`: test_game for start, the one running for reload.
    pub game: Option<String>,
    /// `-d`: start in the background and exit once all are ready.
    pub daemon: bool,
    /// `-bindir`: where the programs are (default: the goworld binary's directory).
    pub bindir: Option<PathBuf>,
    /// `-rundir`: where PID files and stdout files go (default: `.goworld` next to the
    /// config file).
    pub rundir: Option<PathBuf>,
    /// `-timeout`: seconds to wait for a ready line or an exit (default 60).
    pub timeout_secs: u64,
}

/// The default game program.
pub const DEFAULT_GAME: &str = "test_game";
/// The default `-timeout`, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// The run directory's name next to the config file.
pub const RUN_DIR: &str = ".goworld";

/// The usage text.
pub fn usage() -> String {
    "usage: goworld <command> [flags] [GAME]

commands:
  start    start the dispatchers, then the games, then the gates of goworld.ini's
           [deployment], each once the one before is ready; stays in the foreground and
           stops them all on Ctrl-C (SIGINT/SIGTERM); SIGUSR1 reloads the games
  stop     stop the gates, then the games (they save), then the dispatchers (SIGTERM)
  kill     kill -9 every process of the deployment
  reload   hot-swap every game in turn to the game program now on disk (SIGUSR1, wait
           for it to write its state and exit, start it with -restore)
  status   list each process with its PID, state, uptime, clients and entities; exits 0
           when every process of the deployment runs, 3 when one or more do not

flags:
  -configfile PATH  the deployment's goworld.ini (default ./goworld.ini); processes run
                    in its directory
  -game NAME        the game program (default test_game; GAME as an argument is the same,
                    a path's last component, as GoWorld's server ID)
  -d                start: start in the background, exit once all are ready
  -bindir DIR       where dispatcher, gate and the game are (default: goworld's own directory)
  -rundir DIR       PID files and stdout/stderr files (default .goworld next to the config)
  -timeout SECS     how long to wait for a ready line or an exit (default 60)
"
    .to_string()
}

/// Parses `argv` (without the program name). `Err` holds the message to print (the usage
/// text for `help`/`-h`, prefixed `help:`).
pub fn parse_args(argv: &[String]) -> Result<Opts, String> {
    let mut opts = getopts::Options::new();
    opts.optmulti("", "configfile", "", "PATH");
    opts.optmulti("", "game", "", "NAME");
    opts.optflagmulti("d", "", "");
    opts.optmulti("", "bindir", "", "DIR");
    opts.optmulti("", "rundir", "", "DIR");
    opts.optmulti("", "timeout", "", "SECS");
    opts.optflagmulti("h", "help", "");
    let m = crate::args::parse_go_flags(&opts, argv).map_err(|e| e.to_string())?;
    if m.opt_present("h") || m.free.first().is_some_and(|c| c == "help") {
        return Err(format!("help:{}", usage()));
    }
    let command = match m.free.first().map(String::as_str) {
        None => return Err("no command given (start, stop, kill, reload or status)".into()),
        Some("start") => Command::Start,
        Some("stop") => Command::Stop,
        Some("kill") => Command::Kill,
        Some("reload") => Command::Reload,
        Some("status") => Command::Status,
        Some(other) => {
            return Err(format!(
                "unknown command '{other}' (start, stop, kill, reload or status)"
            ))
        }
    };
    if m.free.len() > 2 {
        return Err(format!("unexpected argument '{}'", m.free[2]));
    }
    let last = |name: &str| m.opt_strs(name).pop().filter(|v| !v.is_empty());
    let mut game = last("game");
    if let Some(sid) = m.free.get(1) {
        let name = file_name(Path::new(sid.trim_end_matches('/')));
        if name.is_empty() {
            return Err(format!("bad game '{sid}'"));
        }
        if game.as_ref().is_some_and(|g| *g != name) {
            return Err(format!(
                "-game {} and argument '{sid}' disagree",
                game.unwrap()
            ));
        }
        game = Some(name);
    }
    if let Some(g) = &game {
        if g.contains('/') {
            return Err(format!(
                "-game {g}: give the program's name; -bindir says where it is"
            ));
        }
    }
    let timeout_secs = match last("timeout") {
        None => DEFAULT_TIMEOUT_SECS,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| format!("-timeout {t}: expected a number of seconds > 0"))?,
    };
    let daemon = m.opt_present("d");
    if daemon && command != Command::Start {
        return Err("-d is for start only".into());
    }
    Ok(Opts {
        command,
        configfile: last("configfile").map_or_else(|| PathBuf::from("goworld.ini"), PathBuf::from),
        game,
        daemon,
        bindir: last("bindir").map(PathBuf::from),
        rundir: last("rundir").map(PathBuf::from),
        timeout_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(d: u16, g: u16, t: u16) -> Deployment {
        Deployment {
            desired_dispatchers: d,
            desired_games: g,
            desired_gates: t,
        }
    }

    fn p(s: &str) -> ProcId {
        ProcId::parse(s).unwrap()
    }

    fn names(v: &[ProcId]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn start_and_stop_order() {
        let all = start_order(&dep(2, 2, 1));
        assert_eq!(
            names(&all),
            ["dispatcher1", "dispatcher2", "game1", "game2", "gate1"]
        );
        assert_eq!(
            names(&stop_order(&all)),
            ["gate1", "game1", "game2", "dispatcher1", "dispatcher2"]
        );
        let mut shuffled = vec![p("game2"), p("dispatcher1"), p("gate3"), p("game2")];
        assert_eq!(
            names(&in_start_order(&shuffled)),
            ["dispatcher1", "game2", "gate3"]
        );
        shuffled.push(p("gate1"));
        assert_eq!(
            names(&stop_order(&shuffled)),
            ["gate1", "gate3", "game2", "dispatcher1"]
        );
    }

    #[test]
    fn proc_names_and_args() {
        assert_eq!(ProcId::parse("game12"), Some(ProcId::new(Kind::Game, 12)));
        for bad in [
            "game",
            "game0",
            "gamex",
            "game-1",
            "games1",
            "gate70000",
            "foo1",
            "",
        ] {
            assert_eq!(ProcId::parse(bad), None, "{bad}");
        }
        let d = p("dispatcher1");
        assert_eq!(d.pid_file(), "dispatcher1.pid");
        assert_eq!(d.out_file(), "dispatcher1.out");
        assert_eq!(
            d.args("goworld.ini", false),
            ["-dispid", "1", "-configfile", "goworld.ini"]
        );
        assert_eq!(
            p("game2").args("x.ini", true),
            ["-gid", "2", "-configfile", "x.ini", "-restore"]
        );
        let files: Vec<String> = [
            "game3.pid",
            "gate1.pid",
            "game1.out",
            "goworld.lock",
            "x.pid",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(names(&pid_files_in(&files)), ["game3", "gate1"]);
    }

    fn rec() -> PidRecord {
        PidRecord {
            pid: 4242,
            proc: p("game1"),
            program: PathBuf::from("/repo/target/release/test_game"),
            http: Some("127.0.0.1:25001".into()),
            started: 1_700_000_000,
            restored: false,
        }
    }

    #[test]
    fn pid_file_round_trip_and_errors() {
        let r = rec();
        let text = r.to_text();
        assert_eq!(
            text,
            "pid=4242\nprocess=game1\nprogram=/repo/target/release/test_game\n\
             http=127.0.0.1:25001\nstarted=1700000000\nrestored=0\n"
        );
        assert_eq!(PidRecord::parse(&text, p("game1")).unwrap(), r);
        let no_http = PidRecord {
            http: None,
            restored: true,
            ..rec()
        };
        assert_eq!(
            PidRecord::parse(&no_http.to_text(), p("game1")).unwrap(),
            no_http
        );
        // Unknown keys and blank lines are fine.
        let extra = format!("\n{text}future=1\n");
        assert_eq!(PidRecord::parse(&extra, p("game1")).unwrap(), r);
        let err = |t: &str| PidRecord::parse(t, p("game1")).unwrap_err().to_string();
        assert_eq!(
            err("pid=1\nprocess=game2\nprogram=/x"),
            "it is for game2, not game1"
        );
        assert_eq!(err("pid=1\nprogram=/x"), "no process= line");
        assert_eq!(err("process=game1\nprogram=/x"), "no pid= line");
        assert_eq!(err("pid=1\nprocess=game1"), "no program= line");
        assert_eq!(
            err("pid=0\nprocess=game1\nprogram=/x"),
            "bad pid= value '0'"
        );
        assert_eq!(err("pid=x\n"), "bad pid= value 'x'");
        assert_eq!(err("garbage"), "line 1 is not key=value");
        assert_eq!(err(""), "no process= line");
    }

    fn seen(cmd: &[&str], cwd: Option<&str>) -> Observed {
        Observed {
            cmdline: cmd.iter().flat_map(|a| a.bytes().chain([0])).collect(),
            state: Some('S'),
            cwd: cwd.map(PathBuf::from),
        }
    }

    #[test]
    fn a_pid_file_is_trusted_only_for_its_program_and_id() {
        let r = rec();
        let dir = Path::new("/srv/run");
        let ok = |cmd: &[&str]| judge(&r, Some(&seen(cmd, Some("/srv/run"))), dir);
        let good = [
            "/repo/target/release/test_game",
            "-gid",
            "1",
            "-configfile",
            "goworld.ini",
        ];
        assert_eq!(ok(&good), Liveness::Running);
        // Go's other spellings; the program by another path (a relative one).
        assert_eq!(ok(&["./test_game", "-gid=1"]), Liveness::Running);
        assert_eq!(
            ok(&["test_game", "--gid", "1", "-restore"]),
            Liveness::Running
        );
        let stale = |l: Liveness| match l {
            Liveness::Stale(why) => why,
            Liveness::Running => panic!("trusted"),
        };
        assert_eq!(
            stale(ok(&["/bin/bash", "-c", "x"])),
            "pid 4242 is now '/bin/bash -c x', not test_game"
        );
        assert_eq!(
            stale(ok(&["/repo/target/release/test_game", "-gid", "2"])),
            "pid 4242 is test_game with -gid 2, not 1"
        );
        assert_eq!(
            stale(ok(&["/repo/target/release/test_game"])),
            "pid 4242 is test_game with -gid (none), not 1"
        );
        // A dispatcher's ID flag is -dispid.
        let d = PidRecord {
            proc: p("dispatcher1"),
            program: PathBuf::from("/b/dispatcher"),
            ..rec()
        };
        let dseen = seen(&["/b/dispatcher", "-dispid", "1"], None);
        assert_eq!(judge(&d, Some(&dseen), dir), Liveness::Running);
        let dseen = seen(&["/b/dispatcher", "-gid", "1"], None);
        assert!(matches!(judge(&d, Some(&dseen), dir), Liveness::Stale(_)));
        // Same program and ID, another deployment's directory.
        assert_eq!(
            stale(judge(&r, Some(&seen(&good, Some("/elsewhere"))), dir)),
            "pid 4242 is test_game -gid 1 of another deployment (in /elsewhere)"
        );
        // Gone, or a zombie.
        assert_eq!(stale(judge(&r, None, dir)), "no process 4242");
        let zombie = Observed {
            cmdline: Vec::new(),
            state: Some('Z'),
            cwd: None,
        };
        assert_eq!(
            stale(judge(&r, Some(&zombie), dir)),
            "process 4242 has exited"
        );
    }

    #[test]
    fn flags_the_go_way() {
        let a: Vec<String> = ["-gid", "1", "-gid=3", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag_value(&a, "gid").as_deref(), Some("3"));
        assert_eq!(flag_value(&a, "dispid"), None);
        let a: Vec<String> = ["-gidx", "1", "-gid"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag_value(&a, "gid"), None);
        assert_eq!(split_cmdline(b"a\0b c\0\0"), ["a", "b c"]);
    }

    #[test]
    fn ready_lines() {
        let out = "some log line\n<!--XSUPERVISOR:BEGIN--> GAME STARTED <!--XSUPERVISOR:END--> \
                   dispatcher1=127.0.0.1:13001 http=127.0.0.1:40001\nmore\n";
        let r = find_ready(out, Kind::Game).unwrap();
        assert!(r.line.ends_with("http=127.0.0.1:40001"));
        assert_eq!(r.http.as_deref(), Some("127.0.0.1:40001"));
        assert_eq!(find_ready(out, Kind::Gate), None);
        let no_http = format!("{} listen=127.0.0.1:14001\n", crate::ready_line("GATE"));
        assert_eq!(find_ready(&no_http, Kind::Gate).unwrap().http, None);
        // Only at the start of a line.
        let quoted = format!("log: {}\n", crate::ready_line("GATE"));
        assert_eq!(find_ready(&quoted, Kind::Gate), None);
        assert_eq!(tail_lines("a\nb\nc\n", 2), "  b\n  c\n");
        assert_eq!(tail_lines("", 2), "");
    }

    #[test]
    fn status_json_and_http() {
        let body = r#"{"pid":123,"uptime_seconds":12.5,"connections":3,"kind":"game","id":1,"state":"ready","entities":42,"entities_by_type":{"Avatar":20,"Account":"x"},"store_requests_in_flight":0}"#;
        let s = parse_status(body).unwrap();
        assert_eq!(
            s,
            ProcStatus {
                pid: Some(123),
                kind: Some("game".into()),
                id: Some(1),
                state: Some("ready".into()),
                uptime_seconds: Some(12.5),
                clients: None,
                entities: Some(42),
            }
        );
        let gate = parse_status(r#" {"kind":"gate","clients":20,"state":"waiting"} "#).unwrap();
        assert_eq!(gate.clients, Some(20));
        assert_eq!(gate.state.as_deref(), Some("waiting"));
        assert!(parse_status("[1,2]").is_err());
        assert!(parse_status("{\"a\":").is_err());
        assert!(parse_status("{} x").is_err());
        let j =
            parse_json(r#"{"s":"a\"b\\c\u00e9\n","a":[true,false,null,-1.5e2],"o":{}}"#).unwrap();
        assert_eq!(j.get("s").and_then(Json::as_str), Some("a\"b\\cé\n"));
        assert_eq!(
            j.get("a"),
            Some(&Json::Arr(vec![
                Json::Bool(true),
                Json::Bool(false),
                Json::Null,
                Json::Num(-150.0)
            ]))
        );
        let deep = "[".repeat(100);
        assert!(parse_json(&deep).is_err());

        assert_eq!(
            status_request("127.0.0.1:1"),
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
        );
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{}\nextra";
        assert_eq!(
            parse_http_response(resp).unwrap(),
            (200, "{}\n".to_string())
        );
        let resp = b"HTTP/1.1 404 Not Found\r\n\r\nnope";
        assert_eq!(
            parse_http_response(resp).unwrap(),
            (404, "nope".to_string())
        );
        assert!(parse_http_response(b"garbage").is_err());
        assert!(parse_http_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    fn row(proc: &str, state: &str) -> Row {
        Row {
            proc: p(proc),
            pid: Some(100),
            state: state.into(),
            uptime_seconds: Some(65.0),
            clients: None,
            entities: Some(7),
            note: String::new(),
        }
    }

    #[test]
    fn status_table_and_summary() {
        assert_eq!(format_uptime(0.4), "0s");
        assert_eq!(format_uptime(59.9), "59s");
        assert_eq!(format_uptime(183.0), "3m03s");
        assert_eq!(format_uptime(7500.0), "2h05m");
        assert_eq!(format_uptime(3.0 * 86_400.0 + 4.0 * 3600.0), "3d04h");
        let rows = vec![
            row("dispatcher1", "ready"),
            Row {
                clients: Some(20),
                entities: None,
                pid: Some(31337),
                ..row("gate1", "ready")
            },
            Row {
                pid: Some(5),
                uptime_seconds: None,
                entities: None,
                note: "no process 5".into(),
                ..row("game1", "stale")
            },
            Row {
                pid: None,
                uptime_seconds: None,
                entities: None,
                ..row("game2", "stopped")
            },
        ];
        assert_eq!(
            format_table(&rows),
            "\
PROCESS        PID  STATE    UPTIME  CLIENTS  ENTITIES
dispatcher1    100  ready     1m05s        -         7
gate1        31337  ready     1m05s       20         -
game1            5  stale         -        -         -  no process 5
game2            -  stopped       -        -         -
"
        );
        assert_eq!(
            summary(&rows, &dep(1, 2, 1), "test_game"),
            "1/1 dispatchers, 0/2 games (test_game), 1/1 gates running"
        );
    }

    #[test]
    fn the_foreground_watch() {
        let (d, g) = (p("dispatcher1"), p("game1"));
        assert_eq!(
            verdict(&[(d, Watch::Running), (g, Watch::Running)]),
            Verdict::KeepWatching
        );
        assert_eq!(
            verdict(&[(d, Watch::NoPidFile), (g, Watch::NoPidFile)]),
            Verdict::AllStopped
        );
        assert_eq!(
            verdict(&[
                (d, Watch::Running),
                (g, Watch::Exited("exit status: 3".into()))
            ]),
            Verdict::Failed(vec![(g, "exit status: 3".into())])
        );
        assert_eq!(
            verdict(&[(d, Watch::NoPidFile), (g, Watch::Running)]),
            Verdict::Failed(vec![(d, "its PID file was removed".into())])
        );
    }

    fn args(s: &str) -> Result<Opts, String> {
        parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn command_line() {
        let o = args("start").unwrap();
        assert_eq!(
            o,
            Opts {
                command: Command::Start,
                configfile: PathBuf::from("goworld.ini"),
                game: None,
                daemon: false,
                bindir: None,
                rundir: None,
                timeout_secs: DEFAULT_TIMEOUT_SECS,
            }
        );
        let o = args("start -d -configfile run/goworld.ini -game my_game -timeout=5").unwrap();
        assert!(o.daemon);
        assert_eq!(o.configfile, PathBuf::from("run/goworld.ini"));
        assert_eq!(o.game.as_deref(), Some("my_game"));
        assert_eq!(o.timeout_secs, 5);
        // Flags before the command; GoWorld's server ID as an argument.
        let o = args("-configfile x.ini reload examples/test_game/").unwrap();
        assert_eq!(o.command, Command::Reload);
        assert_eq!(o.game.as_deref(), Some("test_game"));
        let o = args("status -bindir /b -rundir /r").unwrap();
        assert_eq!(o.bindir, Some(PathBuf::from("/b")));
        assert_eq!(o.rundir, Some(PathBuf::from("/r")));
        for (bad, want) in [
            ("", "no command given"),
            ("begin", "unknown command 'begin'"),
            ("stop -d", "-d is for start only"),
            ("start -timeout 0", "-timeout 0: expected"),
            ("start -nope", "flag provided but not defined: -nope"),
            ("start a b", "unexpected argument 'b'"),
            ("start -game a x/b", "disagree"),
            ("start -game a/b", "give the program's name"),
        ] {
            let e = args(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(args("-h").unwrap_err().starts_with("help:usage: goworld"));
        assert!(args("help").unwrap_err().starts_with("help:"));
    }
}
