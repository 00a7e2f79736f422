//! `goworld.ini`: GoWorld's configuration format (reference §5.2), parsed into typed,
//! per-process configuration.
//!
//! Per-ID sections (`[game2]`) start from their `_common` section and override it. Paths
//! resolve against the config file's directory. Booleans take Go's forms (`0/1/t/f/true/false`,
//! any case). An unknown section or key, a bad value, or a storage type not compiled in is
//! a [`ConfigError`] naming it. Parsing takes text and a base directory; only [`Config::load`]
//! reads a file.
//!
//! # The INI dialect (go-ini's defaults, as GoWorld reads it)
//!
//! * `[section]` headers; `key = value` or `key: value`; blank lines; whole-line comments
//!   starting with `;` or `#`.
//! * An unquoted value ends at the first `;` or `#` (go-ini's inline comments), then is
//!   trimmed. A value wrapped in matching `"…"`, `'…'` or `` `…` `` is taken verbatim from
//!   inside the quotes.
//! * Section and key names are matched in lowercase, as GoWorld lowercases them before
//!   matching (`[Game1] Boot_Entity` works there too).
//! * A repeated key or section: the last value wins.
//! * Numbers are plain decimal (Go's `0x`/octal forms are not accepted).
//!
//! # Where goworld-rs differs from GoWorld on purpose
//!
//! * `[storage] type` defaults to `filesystem` (`directory` = `entity_storage`); GoWorld's
//!   only storage is mongodb. `[kvdb] type` defaults to `filesystem` (`directory` = `kvdb`);
//!   GoWorld's "empty = disabled" is still accepted as `type =`. `redis` and `mongodb` are
//!   built for both, `redis_cluster` for the KVDB, with GoWorld's keys and layouts.
//! * `log_file` defaults per process (`dispatcher1.log`, `game1.log`, `gate1.log`) unless a
//!   `_common` or per-ID section sets it; `log_file =` (empty) means no log file.
//! * `log_level` defaults to `info` (GoWorld: `debug`, which floods the logs); an unknown
//!   level is an error (GoWorld silently uses debug). `warning` is read as `warn`, and
//!   `panic`/`fatal` as `error`.
//! * Bad values are errors (GoWorld's `MustInt`/`MustBool` silently fall back to the
//!   default), and the limits goworld-rs adds (`max_peer_frame`, `max_client_frame`,
//!   `client_output_limit`, the dispatcher hold limits) must be > 0. The client rate limits
//!   (`client_msg_rate_limit`, `client_byte_rate_limit`) take 0 for "no limit", and a byte
//!   rate limit must let one largest frame through.
//! * `heartbeat_check_interval` is enforced when > 0 (GoWorld reads it and never checks it),
//!   and may be at most a day ([`MAX_HEARTBEAT_CHECK_INTERVAL`]).
//! * Keys before the first section are an error (GoWorld ignores its `DEFAULT` section).
//! * A dispatcher's `advertise_addr` defaults to its `listen_addr` (GoWorld: 127.0.0.1:13000
//!   whatever `listen_addr` says). A dispatcher listening on every interface (`0.0.0.0`,
//!   `::`, no host) without an `advertise_addr` is refused ([`ConfigError::NoAdvertiseAddr`]):
//!   games and gates on other hosts could not tell which address to dial. An
//!   `advertise_addr` on every interface is refused too.
//! * Gates take an `advertise_addr` too (goworld-rs only): the address clients, and
//!   `test_client`, dial. It defaults to `listen_addr` when that names a host; a gate
//!   listening on every interface without one advertises nothing ([`GateConfig::advertise_addr`]
//!   is `None`), as in GoWorld, whose gates have no such key.
//! * Sections of dispatchers above `desired_dispatchers` are ignored as in GoWorld, but their
//!   keys are still checked.
//! * `http_addr` serves `/metrics` (Prometheus text) and `/status` (JSON) instead of
//!   GoWorld's pprof/expvar (and the gate's websocket); `:port` binds 127.0.0.1, empty
//!   turns it off.
//! * A gate's `web_root` (goworld-rs only) names a directory whose files it serves on its
//!   `http_addr` (the live world page); empty or absent, none.
//! * Accepted but unused: `gomaxprocs`, `[debug] debug`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[deployment]`: how many processes of each kind make up the server. All must be > 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `desired_dispatchers`: dispatcher IDs are `1..=desired_dispatchers`.
    pub desired_dispatchers: u16,
    /// `desired_games`: games `1..=desired_games` must connect before the deployment is ready.
    pub desired_games: u16,
    /// `desired_gates`: gates `1..=desired_gates` must connect before the deployment is ready.
    pub desired_gates: u16,
}

/// `[storage]` or `[kvdb]`. `kind` is `filesystem` by default (GoWorld: mongodb).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `type`: "filesystem" (default for storage), "" (kvdb disabled), "redis", "mongodb".
    pub kind: String,
    /// `directory` for filesystem, resolved against the config file's directory.
    pub directory: PathBuf,
    /// `url` (redis: `redis://host:port`; mongodb: `mongodb://host:port/...`).
    pub url: String,
    /// `db` (redis: a database index, default 0; otherwise storage default "goworld", kvdb
    /// default "").
    pub db: String,
    /// `collection` (`[kvdb]` only; mongodb).
    pub collection: String,
    /// `start_nodes_1`, `start_nodes_2`, ... (`[kvdb]` redis_cluster), in number order.
    pub start_nodes: Vec<String>,
}

/// Settings every process has (`log_*`, `http_addr`, `max_peer_frame`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCommon {
    /// `http_addr`: where `/metrics` and `/status` are served (GoWorld: pprof/expvar);
    /// empty: nowhere.
    pub http_addr: String,
    /// Resolved against the config file's directory. Defaults per process ID (`game1.log`).
    /// Empty: no log file.
    pub log_file: PathBuf,
    /// `log_stderr` (true): also log to stderr.
    pub log_stderr: bool,
    /// debug, info, warn, error (GoWorld's panic and fatal map to error).
    pub log_level: String,
    /// Largest payload accepted on a server link (32 MiB).
    pub max_peer_frame: u32,
}

/// `[dispatcherN]` after merging `[dispatcher_common]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherConfig {
    /// `listen_addr` (127.0.0.1:13000): where the dispatcher listens.
    pub listen_addr: String,
    /// `advertise_addr`: what games and gates dial. Defaults to `listen_addr`; a
    /// `listen_addr` on every interface needs it set ([`ConfigError::NoAdvertiseAddr`]).
    pub advertise_addr: String,
    /// Logging and shared limits.
    pub common: ProcessCommon,
    /// Calls held for one migrating or loading entity before the dispatcher reports them.
    pub entity_hold_limit: usize,
    /// Packets held for one frozen or disconnected game before the dispatcher reports them.
    pub game_hold_limit: usize,
    /// How long a frozen game's packets are held before it is declared dead (300 s).
    pub freeze_hold_timeout_s: u64,
    /// `link_timeout_ms` (5000; 0 = off): this dispatcher and each game and gate linked to
    /// it send heartbeats and declare the link dead after this long without a byte from
    /// the other side. Games and gates use the value of the dispatcher they dial.
    pub link_timeout_ms: u64,
}

/// `[gameN]` after merging `[game_common]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GameConfig {
    /// `boot_entity` (Boot): the entity type created for each new client.
    pub boot_entity: String,
    /// Seconds.
    pub save_interval: u64,
    /// Logging and shared limits.
    pub common: ProcessCommon,
    /// `gomaxprocs` (0): accepted, unused.
    pub gomaxprocs: u32,
    /// `position_sync_interval_ms` (100): server → client position sync period.
    pub position_sync_interval_ms: u64,
    /// `ban_boot_entity` (false): never place boot entities on this game.
    pub ban_boot_entity: bool,
    /// `refused_calls_limit` (20): refused calls (methods a client may not call, unknown
    /// methods, arguments that do not fit) after which a client is disconnected; 0: never.
    pub refused_calls_limit: u32,
}

/// `[gateN]` after merging `[gate_common]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    /// `listen_addr` (0.0.0.0:14000): the client TCP address.
    pub listen_addr: String,
    /// `advertise_addr` (goworld-rs only): the address clients (and `test_client`) dial.
    /// Defaults to `listen_addr` when that names a host; `None` when the gate listens on
    /// every interface and no `advertise_addr` is set (clients then find it by other means;
    /// `test_client` dials 127.0.0.1, or its `-server`).
    pub advertise_addr: Option<String>,
    /// Logging and shared limits.
    pub common: ProcessCommon,
    /// `gomaxprocs` (0): accepted, unused.
    pub gomaxprocs: u32,
    /// `compress_connection` (false): the snappy framing format over each client's whole
    /// byte stream (over TLS when that is on), on every transport.
    pub compress_connection: bool,
    /// `encrypt_connection` (false): TLS on client connections (TCP and KCP; WebSocket
    /// becomes `wss://`), with `rsa_certificate` and `rsa_key`.
    pub encrypt_connection: bool,
    /// `rsa_key` (rsa.key), resolved against the config file's directory: the PEM private
    /// key of the gate's certificate (PKCS#1, PKCS#8 or SEC1).
    pub rsa_key: PathBuf,
    /// `rsa_certificate` (rsa.crt), resolved against the config file's directory: the PEM
    /// certificate chain the gate presents.
    pub rsa_certificate: PathBuf,
    /// `web_root` (empty = off; goworld-rs only), resolved against the config file's
    /// directory: the directory whose files the gate serves on its `http_addr` (`GET /` is its
    /// `index.html`), the live world page.
    pub web_root: PathBuf,
    /// `heartbeat_check_interval` (0 s = off, as in GoWorld, which never enforces it): a
    /// client that sends nothing for this many seconds is closed.
    pub heartbeat_check_interval: u64,
    /// `position_sync_interval_ms` (100): client → server position batching period.
    pub position_sync_interval_ms: u64,
    /// Largest payload accepted from a client (65536).
    pub max_client_frame: u32,
    /// Pending output after which a client is disconnected (4 MiB).
    pub client_output_limit: usize,
    /// `client_flush_interval_ms` (50): the shortest time between two writes to one client;
    /// a client not written to for that long gets its output at once (goworld-rs only).
    pub client_flush_interval_ms: u64,
    /// `client_output_budget` (64 MiB): bytes queued for all clients together past which the
    /// gate stops reading until they drain (goworld-rs only).
    pub client_output_budget: usize,
    /// `client_write_budget` (20000): writes per second to all clients together past which
    /// the gate writes to each busy client less often (goworld-rs only; 0: no budget).
    pub client_write_budget: u64,
    /// `client_msg_rate_limit` (200): messages per second one client may send, with a burst
    /// of one second's worth; past it the client is closed. 0: no limit.
    pub client_msg_rate_limit: u32,
    /// `client_byte_rate_limit` (262144): bytes per second (payload plus the 4-byte header)
    /// one client may send, with a burst of one second's worth. 0: no limit.
    pub client_byte_rate_limit: u32,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[debug] debug` (false): accepted; GoWorld uses it for load-balancer heap checks.
    pub debug: bool,
    /// `[deployment]`.
    pub deployment: Deployment,
    /// `[storage]`: entity storage.
    pub storage: StoreConfig,
    /// `[kvdb]`: the key-value database.
    pub kvdb: StoreConfig,
    /// Dispatchers 1..=desired_dispatchers (sections above that are ignored, as in GoWorld).
    pub dispatchers: BTreeMap<u16, DispatcherConfig>,
    /// Games 1..=desired_games, plus any other `[gameN]` section present.
    pub games: BTreeMap<u16, GameConfig>,
    /// Gates 1..=desired_gates, plus any other `[gateN]` section present.
    pub gates: BTreeMap<u16, GateConfig>,
    /// The directory relative paths were resolved against.
    pub base_dir: PathBuf,
}

/// A configuration problem. Every variant names the file it is in (`goworld.ini` for
/// [`Config::parse`]); the rest name the section, key, value and line where there is one.
/// Displayed as one line starting with the file: `conf/goworld.ini: [gate1] unknown key
/// 'listen_adr' (line 6)`.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A line that is not INI (or a key before the first section).
    Syntax {
        file: PathBuf,
        line: usize,
        /// The line, trimmed.
        text: String,
        problem: SyntaxProblem,
    },
    /// A section that is none of GoWorld's.
    UnknownSection {
        file: PathBuf,
        section: String,
        line: usize,
    },
    /// `[dispatcherN]`, `[gameN]` or `[gateN]` with N outside 1..=65535.
    BadSectionId {
        file: PathBuf,
        section: String,
        line: usize,
    },
    /// A key the section does not have.
    UnknownKey {
        file: PathBuf,
        section: String,
        key: String,
        line: usize,
    },
    /// A key whose value cannot be used.
    BadValue {
        file: PathBuf,
        section: String,
        key: String,
        value: String,
        line: usize,
        why: BadValueReason,
    },
    /// A required key is absent (the `[deployment]` counts).
    Missing {
        file: PathBuf,
        section: String,
        key: String,
    },
    /// A key that must not be empty is (`boot_entity`, a filesystem store's `directory`).
    Empty {
        file: PathBuf,
        section: String,
        key: String,
    },
    /// A gate's `client_byte_rate_limit` would not let one largest client frame through.
    ByteRateBelowFrame {
        file: PathBuf,
        gate: u16,
        client_byte_rate_limit: u32,
        max_client_frame: u32,
    },
    /// A dispatcher listens on every interface (`0.0.0.0`, `::`, no host) and has no
    /// `advertise_addr`: games and gates could not tell which address to dial.
    NoAdvertiseAddr {
        file: PathBuf,
        /// `dispatcherN`.
        section: String,
        /// `advertise_addr`.
        key: String,
        /// The dispatcher's `listen_addr`.
        listen_addr: String,
    },
}

/// What is wrong with a line of INI ([`ConfigError::Syntax`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxProblem {
    /// `[name` without `]`.
    UnclosedHeader,
    /// `[]`.
    EmptySectionName,
    /// Neither `[section]` nor `key = value`.
    NotKeyValue,
    /// `= value`.
    NoKey,
    /// `key = value` before the first `[section]`.
    KeyBeforeSection { key: String },
}

/// Why a value was refused ([`ConfigError::BadValue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValueReason {
    /// Not one of Go's boolean forms.
    NotBoolean,
    /// Not a plain non-negative decimal integer.
    NotInteger,
    /// An integer too large for the setting.
    OutOfRange,
    /// 0 where the setting must be > 0.
    NotPositive,
    /// Not debug, info, warn(ing), error, panic or fatal.
    UnknownLogLevel,
    /// An interval above its limit (`heartbeat_check_interval`).
    IntervalTooLong { max_secs: u64 },
    /// A `[storage]`/`[kvdb]` `type` that GoWorld does not have either.
    UnknownStoreType,
    /// An `advertise_addr` on every interface (`0.0.0.0`, `::`, no host): nobody can dial it.
    EveryInterface,
}

impl ConfigError {
    /// The config file the problem is in.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Io { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::UnknownSection { file, .. }
            | ConfigError::BadSectionId { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::BadValue { file, .. }
            | ConfigError::Missing { file, .. }
            | ConfigError::Empty { file, .. }
            | ConfigError::ByteRateBelowFrame { file, .. }
            | ConfigError::NoAdvertiseAddr { file, .. } => file,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.file().display())?;
        match self {
            ConfigError::Io { source, .. } => write!(
                f,
                "cannot read config file: {}",
                crate::logging::io_kind(source)
            ),
            ConfigError::Syntax {
                line,
                text,
                problem,
                ..
            } => match problem {
                SyntaxProblem::UnclosedHeader => {
                    write!(f, "unclosed section header '{text}' (line {line})")
                }
                SyntaxProblem::EmptySectionName => write!(f, "empty section name (line {line})"),
                SyntaxProblem::NotKeyValue => write!(
                    f,
                    "line {line}: '{text}' is neither a [section] nor key = value"
                ),
                SyntaxProblem::NoKey => write!(f, "line {line}: '{text}' has no key"),
                SyntaxProblem::KeyBeforeSection { key } => {
                    write!(f, "key '{key}' before any [section] (line {line})")
                }
            },
            ConfigError::UnknownSection { section, line, .. } => write!(
                f,
                "unknown section [{section}] (line {line}); sections are debug, deployment, \
                 storage, kvdb, dispatcher_common, dispatcherN, game_common, gameN, \
                 gate_common, gateN"
            ),
            ConfigError::BadSectionId { section, line, .. } => write!(
                f,
                "[{section}] (line {line}): {} IDs are 1..=65535",
                section.trim_end_matches(|c: char| c.is_ascii_digit())
            ),
            ConfigError::UnknownKey {
                section, key, line, ..
            } => write!(f, "[{section}] unknown key '{key}' (line {line})"),
            ConfigError::BadValue {
                section,
                key,
                value,
                line,
                why,
                ..
            } => {
                write!(f, "[{section}] {key} = '{value}' (line {line}): ")?;
                match why {
                    BadValueReason::NotBoolean => f.write_str(
                        "not a boolean (use 1, t, T, TRUE, true, True, 0, f, F, FALSE, false \
                         or False)",
                    ),
                    BadValueReason::NotInteger => f.write_str("not a non-negative decimal integer"),
                    BadValueReason::OutOfRange => f.write_str("number out of range"),
                    BadValueReason::NotPositive => f.write_str("must be greater than 0"),
                    BadValueReason::UnknownLogLevel => {
                        f.write_str("unknown log level (use debug, info, warn or error)")
                    }
                    BadValueReason::IntervalTooLong { max_secs } => write!(
                        f,
                        "at most {max_secs} seconds{}; 0 turns the check off",
                        if *max_secs == 86_400 { " (a day)" } else { "" }
                    ),
                    BadValueReason::UnknownStoreType => write!(f, "unknown {section} type"),
                    BadValueReason::EveryInterface => f.write_str(
                        "an address on every interface cannot be dialed; give an address of \
                         this host that the others can reach",
                    ),
                }
            }
            ConfigError::Missing { section, key, .. } => {
                write!(f, "[{section}] {key} is missing (it must be > 0)")
            }
            ConfigError::Empty { section, key, .. } => write!(f, "[{section}] {key} is empty"),
            ConfigError::ByteRateBelowFrame {
                gate,
                client_byte_rate_limit,
                max_client_frame,
                ..
            } => write!(
                f,
                "[gate{gate}] client_byte_rate_limit = {client_byte_rate_limit} is below one \
                 largest client frame (max_client_frame = {max_client_frame} plus the 4-byte \
                 header): raise it to at least {}, or set 0 for no limit",
                u64::from(*max_client_frame) + 4
            ),
            ConfigError::NoAdvertiseAddr {
                section,
                key,
                listen_addr,
                ..
            } => {
                let port = split_host_port(listen_addr).map_or("<port>", |(_, p)| p);
                write!(
                    f,
                    "[{section}] {key} is missing: listen_addr = {listen_addr} listens on every \
                     interface, so games and gates cannot tell which address to dial; set \
                     {key} = <an address of this host they can reach>:{port} \
                     (127.0.0.1:{port} when every process runs on this host)"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Default `max_peer_frame`: the largest payload accepted on a server link (32 MiB).
pub const DEFAULT_MAX_PEER_FRAME: u32 = 32 * 1024 * 1024;
/// Default `max_client_frame`: the largest payload accepted from a client.
pub const DEFAULT_MAX_CLIENT_FRAME: u32 = 65536;
/// Default `client_write_budget` (writes per second).
pub const DEFAULT_CLIENT_WRITE_BUDGET: u64 = 20_000;
/// Default `client_output_budget` (64 MiB).
pub const DEFAULT_CLIENT_OUTPUT_BUDGET: usize = 64 << 20;
/// Default `client_flush_interval_ms`.
pub const DEFAULT_CLIENT_FLUSH_INTERVAL_MS: u64 = 50;
/// Default `client_output_limit`: pending bytes after which a client is disconnected (4 MiB).
pub const DEFAULT_CLIENT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;
/// Default `client_msg_rate_limit`: messages per second from one client (about 30 times what
/// a GoWorld bot sends).
pub const DEFAULT_CLIENT_MSG_RATE_LIMIT: u32 = 200;
/// Default `client_byte_rate_limit`: bytes per second from one client (256 KiB: four frames of
/// `max_client_frame`, about 100 times what a GoWorld bot sends).
pub const DEFAULT_CLIENT_BYTE_RATE_LIMIT: u32 = 256 * 1024;
/// Largest `heartbeat_check_interval` accepted, in seconds (a day).
pub const MAX_HEARTBEAT_CHECK_INTERVAL: u64 = 86_400;
/// Default `entity_hold_limit`.
pub const DEFAULT_ENTITY_HOLD_LIMIT: usize = 100_000;
/// Default `game_hold_limit`.
pub const DEFAULT_GAME_HOLD_LIMIT: usize = 1_000_000;
/// Default `freeze_hold_timeout_s`.
pub const DEFAULT_FREEZE_HOLD_TIMEOUT_S: u64 = 300;
/// Default `link_timeout_ms`.
pub const DEFAULT_LINK_TIMEOUT_MS: u64 = 5_000;
/// Largest `link_timeout_ms` accepted (a day).
pub const MAX_LINK_TIMEOUT_MS: u64 = 86_400_000;
/// Default `refused_calls_limit`.
pub const DEFAULT_REFUSED_CALLS_LIMIT: u32 = 20;
/// Default `log_level` (GoWorld: debug).
pub const DEFAULT_LOG_LEVEL: &str = "info";

impl DispatcherConfig {
    /// The heartbeat timeout of the links to this dispatcher (`link_timeout_ms`), for
    /// [`crate::reactor::LinkOpts::heartbeat`].
    pub fn link_heartbeat(&self) -> Option<std::time::Duration> {
        (self.link_timeout_ms > 0).then(|| std::time::Duration::from_millis(self.link_timeout_ms))
    }
}

impl Config {
    /// Reads and parses `path`. Relative paths in the file resolve against the file's
    /// directory (made absolute, canonicalized when possible). Errors start with the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = parent
            .canonicalize()
            .or_else(|_| std::env::current_dir().map(|d| d.join(parent)))
            .unwrap_or_else(|_| parent.to_path_buf());
        parse_config(&text, &base, path)
    }

    /// Parses the text of a `goworld.ini`; relative paths resolve against `base_dir`.
    /// Errors start with `goworld.ini: `.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        parse_config(text, base_dir, Path::new("goworld.ini"))
    }

    /// Dispatcher `id` (1..=desired_dispatchers).
    pub fn dispatcher(&self, id: u16) -> Option<&DispatcherConfig> {
        self.dispatchers.get(&id)
    }

    /// Game `id`: 1..=desired_games, or any other ID with a `[gameN]` section.
    pub fn game(&self, id: u16) -> Option<&GameConfig> {
        self.games.get(&id)
    }

    /// Gate `id`: 1..=desired_gates, or any other ID with a `[gateN]` section.
    pub fn gate(&self, id: u16) -> Option<&GateConfig> {
        self.gates.get(&id)
    }
}

// ---------------------------------------------------------------------------------------
// Addresses.

/// Splits `host:port` at its last `:` into the host (without the brackets of `[::1]:13000`)
/// and the port; `None` without a `:`. Nothing is looked up or checked.
pub fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = (host.strip_prefix('['))
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port))
}

/// `host:port`, with brackets around an IPv6 host (`[::1]:13000`).
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// True for a host that means every interface of the machine: `0.0.0.0`, `::`, or none
/// (`:13000`). Such an address can be listened on, not dialed from another host.
pub fn is_every_interface(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_unspecified(),
        Err(_) => host.is_empty(),
    }
}

/// True when the `host:port` address `addr` is on every interface.
fn on_every_interface(addr: &str) -> bool {
    split_host_port(addr).is_some_and(|(host, _)| is_every_interface(host))
}

// ---------------------------------------------------------------------------------------
// The INI reader.

struct Entry {
    key: String,
    value: String,
    line: usize,
}

struct Section {
    name: String,
    line: usize,
    entries: Vec<Entry>,
}

/// Splits `text` into sections (repeated sections merged, in file order).
fn read_ini(text: &str, file: &Path) -> Result<Vec<Section>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<Section> = Vec::new();
    let mut current: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        let syntax = |problem| ConfigError::Syntax {
            file: file.to_path_buf(),
            line: line_no,
            text: line.to_string(),
            problem,
        };
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| syntax(SyntaxProblem::UnclosedHeader))?;
            let name = rest[..close].trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err(syntax(SyntaxProblem::EmptySectionName));
            }
            current = Some(match sections.iter().position(|s| s.name == name) {
                Some(p) => p,
                None => {
                    sections.push(Section {
                        name,
                        line: line_no,
                        entries: Vec::new(),
                    });
                    sections.len() - 1
                }
            });
            continue;
        }
        let Some(pos) = line.find(['=', ':']) else {
            return Err(syntax(SyntaxProblem::NotKeyValue));
        };
        let key = line[..pos].trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(syntax(SyntaxProblem::NoKey));
        }
        let Some(c) = current else {
            return Err(syntax(SyntaxProblem::KeyBeforeSection { key }));
        };
        sections[c].entries.push(Entry {
            key,
            value: read_value(&line[pos + 1..]),
            line: line_no,
        });
    }
    Ok(sections)
}

/// go-ini value rules: quoted values verbatim, otherwise cut at an inline `;`/`#`, trimmed.
fn read_value(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\'', '`'] {
        if let Some(rest) = s.strip_prefix(q) {
            if let Some(end) = rest.find(q) {
                return rest[..end].to_string();
            }
        }
    }
    let end = s.find([';', '#']).unwrap_or(s.len());
    s[..end].trim().to_string()
}

/// One key in one section, with the helpers that read its value.
struct Kv<'a> {
    file: &'a Path,
    sec: &'a str,
    e: &'a Entry,
}

impl Kv<'_> {
    fn key(&self) -> &str {
        &self.e.key
    }

    fn unknown(&self) -> ConfigError {
        ConfigError::UnknownKey {
            file: self.file.to_path_buf(),
            section: self.sec.to_string(),
            key: self.e.key.clone(),
            line: self.e.line,
        }
    }

    fn bad(&self, why: BadValueReason) -> ConfigError {
        ConfigError::BadValue {
            file: self.file.to_path_buf(),
            section: self.sec.to_string(),
            key: self.e.key.clone(),
            value: self.e.value.clone(),
            line: self.e.line,
            why,
        }
    }

    fn string(&self) -> String {
        self.e.value.clone()
    }

    /// Go's `strconv.ParseBool` forms.
    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.e.value.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(self.bad(BadValueReason::NotBoolean)),
        }
    }

    fn uint<T: std::str::FromStr>(&self) -> Result<T, ConfigError> {
        let v = self.e.value.as_str();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.bad(BadValueReason::NotInteger));
        }
        v.parse::<T>()
            .map_err(|_| self.bad(BadValueReason::OutOfRange))
    }

    fn positive<T: std::str::FromStr + PartialEq + From<u8>>(&self) -> Result<T, ConfigError> {
        let n: T = self.uint()?;
        if n == T::from(0) {
            return Err(self.bad(BadValueReason::NotPositive));
        }
        Ok(n)
    }

    /// An `advertise_addr`: empty means not set (derived from `listen_addr`); an address
    /// on every interface is refused, as nobody can dial it.
    fn advertise(&self) -> Result<Option<String>, ConfigError> {
        let v = self.string();
        if on_every_interface(&v) {
            return Err(self.bad(BadValueReason::EveryInterface));
        }
        Ok((!v.is_empty()).then_some(v))
    }

    fn level(&self) -> Result<String, ConfigError> {
        normalize_level(&self.e.value)
            .map(str::to_string)
            .ok_or_else(|| self.bad(BadValueReason::UnknownLogLevel))
    }
}

/// GoWorld's log level names (any case) → debug/info/warn/error.
pub(crate) fn normalize_level(s: &str) -> Option<&'static str> {
    match s.to_ascii_lowercase().as_str() {
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" | "panic" | "fatal" => Some("error"),
        _ => None,
    }
}

fn resolve(base: &Path, s: &str) -> PathBuf {
    if s.is_empty() {
        return PathBuf::new();
    }
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

// ---------------------------------------------------------------------------------------
// Section builders: defaults, then `_common`, then the per-ID section.

#[derive(Clone)]
struct CommonB {
    http_addr: String,
    log_file: Option<String>,
    log_stderr: bool,
    log_level: String,
    max_peer_frame: u32,
}

impl CommonB {
    fn new(http_addr: &str) -> CommonB {
        CommonB {
            http_addr: http_addr.to_string(),
            log_file: None,
            log_stderr: true,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            max_peer_frame: DEFAULT_MAX_PEER_FRAME,
        }
    }

    /// Applies a key every process has; `Ok(false)` if `kv` is not one of them.
    fn apply(&mut self, kv: &Kv) -> Result<bool, ConfigError> {
        match kv.key() {
            "http_addr" => self.http_addr = kv.string(),
            "log_file" => self.log_file = Some(kv.string()),
            "log_stderr" => self.log_stderr = kv.boolean()?,
            "log_level" => self.log_level = kv.level()?,
            "max_peer_frame" => self.max_peer_frame = kv.positive()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn build(&self, kind: &str, id: u16, base: &Path) -> ProcessCommon {
        let log_file = match &self.log_file {
            None => base.join(format!("{kind}{id}.log")),
            Some(s) => resolve(base, s),
        };
        ProcessCommon {
            http_addr: self.http_addr.clone(),
            log_file,
            log_stderr: self.log_stderr,
            log_level: self.log_level.clone(),
            max_peer_frame: self.max_peer_frame,
        }
    }
}

#[derive(Clone)]
struct DispatcherB {
    listen_addr: String,
    /// Set explicitly (here or in `[dispatcher_common]`); otherwise derived at build.
    advertise_addr: Option<String>,
    common: CommonB,
    entity_hold_limit: usize,
    game_hold_limit: usize,
    freeze_hold_timeout_s: u64,
    link_timeout_ms: u64,
}

impl DispatcherB {
    fn new() -> DispatcherB {
        DispatcherB {
            listen_addr: "127.0.0.1:13000".into(),
            advertise_addr: None,
            common: CommonB::new("127.0.0.1:23000"),
            entity_hold_limit: DEFAULT_ENTITY_HOLD_LIMIT,
            game_hold_limit: DEFAULT_GAME_HOLD_LIMIT,
            freeze_hold_timeout_s: DEFAULT_FREEZE_HOLD_TIMEOUT_S,
            link_timeout_ms: DEFAULT_LINK_TIMEOUT_MS,
        }
    }

    fn apply(&mut self, kv: &Kv) -> Result<(), ConfigError> {
        match kv.key() {
            "listen_addr" => self.listen_addr = kv.string(),
            "advertise_addr" => self.advertise_addr = kv.advertise()?,
            "entity_hold_limit" => self.entity_hold_limit = kv.positive()?,
            "game_hold_limit" => self.game_hold_limit = kv.positive()?,
            "freeze_hold_timeout_s" => self.freeze_hold_timeout_s = kv.positive()?,
            "link_timeout_ms" => {
                self.link_timeout_ms = kv.uint()?;
                if self.link_timeout_ms > MAX_LINK_TIMEOUT_MS {
                    return Err(kv.bad(BadValueReason::OutOfRange));
                }
            }
            _ => {
                if !self.common.apply(kv)? {
                    return Err(kv.unknown());
                }
            }
        }
        Ok(())
    }

    fn build(&self, id: u16, base: &Path, file: &Path) -> Result<DispatcherConfig, ConfigError> {
        // Games and gates dial what the dispatcher advertises: its listen_addr unless told
        // otherwise, which an address on every interface cannot be.
        let advertise_addr = match &self.advertise_addr {
            Some(a) => a.clone(),
            None if on_every_interface(&self.listen_addr) => {
                return Err(ConfigError::NoAdvertiseAddr {
                    file: file.to_path_buf(),
                    section: format!("dispatcher{id}"),
                    key: "advertise_addr".into(),
                    listen_addr: self.listen_addr.clone(),
                })
            }
            None => self.listen_addr.clone(),
        };
        Ok(DispatcherConfig {
            listen_addr: self.listen_addr.clone(),
            advertise_addr,
            common: self.common.build("dispatcher", id, base),
            entity_hold_limit: self.entity_hold_limit,
            game_hold_limit: self.game_hold_limit,
            freeze_hold_timeout_s: self.freeze_hold_timeout_s,
            link_timeout_ms: self.link_timeout_ms,
        })
    }
}

#[derive(Clone)]
struct GameB {
    boot_entity: String,
    save_interval: u64,
    common: CommonB,
    gomaxprocs: u32,
    position_sync_interval_ms: u64,
    ban_boot_entity: bool,
    refused_calls_limit: u32,
}

impl GameB {
    fn new() -> GameB {
        GameB {
            boot_entity: "Boot".into(),
            save_interval: 300,
            common: CommonB::new("127.0.0.1:25000"),
            gomaxprocs: 0,
            position_sync_interval_ms: 100,
            ban_boot_entity: false,
            refused_calls_limit: DEFAULT_REFUSED_CALLS_LIMIT,
        }
    }

    fn apply(&mut self, kv: &Kv) -> Result<(), ConfigError> {
        match kv.key() {
            "boot_entity" => self.boot_entity = kv.string(),
            "save_interval" => self.save_interval = kv.uint()?,
            "gomaxprocs" => self.gomaxprocs = kv.uint()?,
            "position_sync_interval_ms" => self.position_sync_interval_ms = kv.uint()?,
            "ban_boot_entity" => self.ban_boot_entity = kv.boolean()?,
            "refused_calls_limit" => self.refused_calls_limit = kv.uint()?,
            _ => {
                if !self.common.apply(kv)? {
                    return Err(kv.unknown());
                }
            }
        }
        Ok(())
    }

    fn build(&self, id: u16, base: &Path, file: &Path) -> Result<GameConfig, ConfigError> {
        if self.boot_entity.is_empty() {
            return Err(ConfigError::Empty {
                file: file.to_path_buf(),
                section: format!("game{id}"),
                key: "boot_entity".into(),
            });
        }
        Ok(GameConfig {
            boot_entity: self.boot_entity.clone(),
            save_interval: self.save_interval,
            common: self.common.build("game", id, base),
            gomaxprocs: self.gomaxprocs,
            position_sync_interval_ms: self.position_sync_interval_ms,
            ban_boot_entity: self.ban_boot_entity,
            refused_calls_limit: self.refused_calls_limit,
        })
    }
}

#[derive(Clone)]
struct GateB {
    listen_addr: String,
    advertise_addr: Option<String>,
    common: CommonB,
    gomaxprocs: u32,
    compress_connection: bool,
    encrypt_connection: bool,
    rsa_key: String,
    rsa_certificate: String,
    web_root: String,
    heartbeat_check_interval: u64,
    position_sync_interval_ms: u64,
    max_client_frame: u32,
    client_output_limit: usize,
    client_flush_interval_ms: u64,
    client_output_budget: usize,
    client_write_budget: u64,
    client_msg_rate_limit: u32,
    client_byte_rate_limit: u32,
}

impl GateB {
    fn new() -> GateB {
        GateB {
            listen_addr: "0.0.0.0:14000".into(),
            advertise_addr: None,
            common: CommonB::new("127.0.0.1:24000"),
            gomaxprocs: 0,
            compress_connection: false,
            encrypt_connection: false,
            rsa_key: "rsa.key".into(),
            rsa_certificate: "rsa.crt".into(),
            web_root: String::new(),
            heartbeat_check_interval: 0,
            position_sync_interval_ms: 100,
            max_client_frame: DEFAULT_MAX_CLIENT_FRAME,
            client_output_limit: DEFAULT_CLIENT_OUTPUT_LIMIT,
            client_flush_interval_ms: DEFAULT_CLIENT_FLUSH_INTERVAL_MS,
            client_output_budget: DEFAULT_CLIENT_OUTPUT_BUDGET,
            client_write_budget: DEFAULT_CLIENT_WRITE_BUDGET,
            client_msg_rate_limit: DEFAULT_CLIENT_MSG_RATE_LIMIT,
            client_byte_rate_limit: DEFAULT_CLIENT_BYTE_RATE_LIMIT,
        }
    }

    fn apply(&mut self, kv: &Kv) -> Result<(), ConfigError> {
        match kv.key() {
            "listen_addr" => self.listen_addr = kv.string(),
            "advertise_addr" => self.advertise_addr = kv.advertise()?,
            "gomaxprocs" => self.gomaxprocs = kv.uint()?,
            "compress_connection" => self.compress_connection = kv.boolean()?,
            "encrypt_connection" => self.encrypt_connection = kv.boolean()?,
            "rsa_key" => self.rsa_key = kv.string(),
            "rsa_certificate" => self.rsa_certificate = kv.string(),
            "web_root" => self.web_root = kv.string(),
            "heartbeat_check_interval" => {
                self.heartbeat_check_interval = kv.uint()?;
                if self.heartbeat_check_interval > MAX_HEARTBEAT_CHECK_INTERVAL {
                    return Err(kv.bad(BadValueReason::IntervalTooLong {
                        max_secs: MAX_HEARTBEAT_CHECK_INTERVAL,
                    }));
                }
            }
            "position_sync_interval_ms" => self.position_sync_interval_ms = kv.uint()?,
            "max_client_frame" => self.max_client_frame = kv.positive()?,
            "client_output_limit" => self.client_output_limit = kv.positive()?,
            "client_flush_interval_ms" => self.client_flush_interval_ms = kv.uint()?,
            "client_output_budget" => self.client_output_budget = kv.positive()?,
            "client_write_budget" => self.client_write_budget = kv.uint()?,
            "client_msg_rate_limit" => self.client_msg_rate_limit = kv.uint()?,
            "client_byte_rate_limit" => self.client_byte_rate_limit = kv.uint()?,
            _ => {
                if !self.common.apply(kv)? {
                    return Err(kv.unknown());
                }
            }
        }
        Ok(())
    }

    fn build(&self, id: u16, base: &Path, file: &Path) -> Result<GateConfig, ConfigError> {
        // A frame is charged whole: a byte budget below one largest frame would close every
        // client that sends one.
        let largest = u64::from(self.max_client_frame) + 4;
        if self.client_byte_rate_limit != 0 && u64::from(self.client_byte_rate_limit) < largest {
            return Err(ConfigError::ByteRateBelowFrame {
                file: file.to_path_buf(),
                gate: id,
                client_byte_rate_limit: self.client_byte_rate_limit,
                max_client_frame: self.max_client_frame,
            });
        }
        let advertise_addr = (self.advertise_addr.clone())
            .or_else(|| (!on_every_interface(&self.listen_addr)).then(|| self.listen_addr.clone()));
        Ok(GateConfig {
            listen_addr: self.listen_addr.clone(),
            advertise_addr,
            common: self.common.build("gate", id, base),
            gomaxprocs: self.gomaxprocs,
            compress_connection: self.compress_connection,
            encrypt_connection: self.encrypt_connection,
            rsa_key: resolve(base, &self.rsa_key),
            rsa_certificate: resolve(base, &self.rsa_certificate),
            web_root: resolve(base, &self.web_root),
            heartbeat_check_interval: self.heartbeat_check_interval,
            position_sync_interval_ms: self.position_sync_interval_ms,
            max_client_frame: self.max_client_frame,
            client_output_limit: self.client_output_limit,
            client_flush_interval_ms: self.client_flush_interval_ms,
            client_output_budget: self.client_output_budget,
            client_write_budget: self.client_write_budget,
            client_msg_rate_limit: self.client_msg_rate_limit,
            client_byte_rate_limit: self.client_byte_rate_limit,
        })
    }
}

/// `[storage]` (kvdb = false) or `[kvdb]` (kvdb = true).
fn read_store(
    sec: Option<&Section>,
    kvdb: bool,
    base: &Path,
    file: &Path,
) -> Result<StoreConfig, ConfigError> {
    let name = if kvdb { "kvdb" } else { "storage" };
    let mut kind = ("filesystem".to_string(), 0usize);
    let mut directory = if kvdb { "kvdb" } else { "entity_storage" }.to_string();
    let mut url = String::new();
    let mut db = None;
    let mut collection = String::new();
    let mut start_nodes: Vec<(u32, String)> = Vec::new();
    for e in sec.map_or(&[][..], |s| &s.entries) {
        let kv = Kv { file, sec: name, e };
        match kv.key() {
            "type" => kind = (kv.string(), e.line),
            "directory" => directory = kv.string(),
            "url" => url = kv.string(),
            "db" => db = Some((kv.string(), e.line)),
            "collection" if kvdb => collection = kv.string(),
            k if k.starts_with("start_nodes_") => {
                let n = k["start_nodes_".len()..].parse::<u32>().unwrap_or(u32::MAX);
                start_nodes.push((n, kv.string()));
            }
            _ => return Err(kv.unknown()),
        }
    }
    let (kind, line) = kind;
    match kind.as_str() {
        "filesystem" => {
            if directory.is_empty() {
                return Err(ConfigError::Empty {
                    file: file.to_path_buf(),
                    section: name.into(),
                    key: "directory".into(),
                });
            }
        }
        "" if kvdb => {}
        "redis" => {
            if url.is_empty() {
                return Err(ConfigError::Empty {
                    file: file.to_path_buf(),
                    section: name.into(),
                    key: "url".into(),
                });
            }
            // GoWorld's Redis `db` is a database index.
            if let Some((d, line)) = &db {
                if !d.is_empty() && d.parse::<u32>().is_err() {
                    return Err(ConfigError::BadValue {
                        file: file.to_path_buf(),
                        section: name.into(),
                        key: "db".into(),
                        value: d.clone(),
                        line: *line,
                        why: BadValueReason::NotInteger,
                    });
                }
            }
        }
        "redis_cluster" if kvdb => {
            if start_nodes.is_empty() {
                return Err(ConfigError::Empty {
                    file: file.to_path_buf(),
                    section: name.into(),
                    key: "start_nodes_1".into(),
                });
            }
        }
        "mongodb" => {
            if url.is_empty() {
                return Err(ConfigError::Empty {
                    file: file.to_path_buf(),
                    section: name.into(),
                    key: "url".into(),
                });
            }
            // GoWorld's MongoDB KVDB requires its collection.
            if kvdb && collection.is_empty() {
                return Err(ConfigError::Empty {
                    file: file.to_path_buf(),
                    section: name.into(),
                    key: "collection".into(),
                });
            }
        }
        _ => {
            return Err(ConfigError::BadValue {
                file: file.to_path_buf(),
                section: name.into(),
                key: "type".into(),
                value: kind,
                line,
                why: BadValueReason::UnknownStoreType,
            })
        }
    }
    let db = match db {
        Some((d, _)) => d,
        None if kind == "redis" => "0".to_string(),
        None if kvdb => String::new(),
        None => "goworld".to_string(),
    };
    start_nodes.sort_by_key(|(n, _)| *n);
    Ok(StoreConfig {
        kind,
        directory: resolve(base, &directory),
        url,
        db,
        collection,
        start_nodes: start_nodes.into_iter().map(|(_, a)| a).collect(),
    })
}

enum SectionKind {
    Debug,
    Deployment,
    Storage,
    Kvdb,
    DispatcherCommon,
    Dispatcher(u16),
    GameCommon,
    Game(u16),
    GateCommon,
    Gate(u16),
}

fn classify(sec: &Section, file: &Path) -> Result<SectionKind, ConfigError> {
    let name = sec.name.as_str();
    Ok(match name {
        "debug" => SectionKind::Debug,
        "deployment" => SectionKind::Deployment,
        "storage" => SectionKind::Storage,
        "kvdb" => SectionKind::Kvdb,
        "dispatcher_common" => SectionKind::DispatcherCommon,
        "game_common" => SectionKind::GameCommon,
        "gate_common" => SectionKind::GateCommon,
        _ => {
            for (prefix, make) in [
                (
                    "dispatcher",
                    SectionKind::Dispatcher as fn(u16) -> SectionKind,
                ),
                ("game", SectionKind::Game),
                ("gate", SectionKind::Gate),
            ] {
                if let Some(digits) = name.strip_prefix(prefix) {
                    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                        return match digits.parse::<u16>() {
                            Ok(id) if id > 0 => Ok(make(id)),
                            _ => Err(ConfigError::BadSectionId {
                                file: file.to_path_buf(),
                                section: name.into(),
                                line: sec.line,
                            }),
                        };
                    }
                }
            }
            return Err(ConfigError::UnknownSection {
                file: file.to_path_buf(),
                section: name.into(),
                line: sec.line,
            });
        }
    })
}

/// Parses `text`; relative paths resolve against `base`, errors name `file`.
fn parse_config(text: &str, base: &Path, file: &Path) -> Result<Config, ConfigError> {
    let sections = read_ini(text, file)?;
    let mut kinds = Vec::with_capacity(sections.len());
    for sec in &sections {
        kinds.push(classify(sec, file)?);
    }
    let find = |want: fn(&SectionKind) -> bool| {
        sections
            .iter()
            .zip(&kinds)
            .find(|(_, k)| want(k))
            .map(|(s, _)| s)
    };

    // [debug]
    let mut debug = false;
    if let Some(sec) = find(|k| matches!(k, SectionKind::Debug)) {
        for e in &sec.entries {
            let kv = Kv {
                file,
                sec: "debug",
                e,
            };
            match kv.key() {
                "debug" => debug = kv.boolean()?,
                _ => return Err(kv.unknown()),
            }
        }
    }

    // [deployment]
    let mut desired: [Option<u16>; 3] = [None; 3];
    const DESIRED: [&str; 3] = ["desired_dispatchers", "desired_games", "desired_gates"];
    if let Some(sec) = find(|k| matches!(k, SectionKind::Deployment)) {
        for e in &sec.entries {
            let kv = Kv {
                file,
                sec: "deployment",
                e,
            };
            match DESIRED.iter().position(|d| *d == kv.key()) {
                Some(i) => desired[i] = Some(kv.positive()?),
                None => return Err(kv.unknown()),
            }
        }
    }
    let mut counts = [0u16; 3];
    for i in 0..3 {
        counts[i] = desired[i].ok_or_else(|| ConfigError::Missing {
            file: file.to_path_buf(),
            section: "deployment".into(),
            key: DESIRED[i].into(),
        })?;
    }
    let deployment = Deployment {
        desired_dispatchers: counts[0],
        desired_games: counts[1],
        desired_gates: counts[2],
    };

    let storage = read_store(
        find(|k| matches!(k, SectionKind::Storage)),
        false,
        base,
        file,
    )?;
    let kvdb = read_store(find(|k| matches!(k, SectionKind::Kvdb)), true, base, file)?;

    // _common sections first, as GoWorld reads them.
    let mut disp_common = DispatcherB::new();
    let mut game_common = GameB::new();
    let mut gate_common = GateB::new();
    for (sec, kind) in sections.iter().zip(&kinds) {
        for e in &sec.entries {
            let kv = Kv {
                file,
                sec: &sec.name,
                e,
            };
            match kind {
                SectionKind::DispatcherCommon => disp_common.apply(&kv)?,
                SectionKind::GameCommon => game_common.apply(&kv)?,
                SectionKind::GateCommon => gate_common.apply(&kv)?,
                _ => {}
            }
        }
    }

    // Per-ID sections.
    let mut disp_b: BTreeMap<u16, DispatcherB> = BTreeMap::new();
    let mut game_b: BTreeMap<u16, GameB> = BTreeMap::new();
    let mut gate_b: BTreeMap<u16, GateB> = BTreeMap::new();
    for (sec, kind) in sections.iter().zip(&kinds) {
        match *kind {
            SectionKind::Dispatcher(id) => {
                let mut b = disp_common.clone();
                for e in &sec.entries {
                    b.apply(&Kv {
                        file,
                        sec: &sec.name,
                        e,
                    })?;
                }
                // Above desired_dispatchers: checked, then ignored (as GoWorld).
                if id <= deployment.desired_dispatchers {
                    disp_b.insert(id, b);
                }
            }
            SectionKind::Game(id) => {
                let mut b = game_common.clone();
                for e in &sec.entries {
                    b.apply(&Kv {
                        file,
                        sec: &sec.name,
                        e,
                    })?;
                }
                game_b.insert(id, b);
            }
            SectionKind::Gate(id) => {
                let mut b = gate_common.clone();
                for e in &sec.entries {
                    b.apply(&Kv {
                        file,
                        sec: &sec.name,
                        e,
                    })?;
                }
                gate_b.insert(id, b);
            }
            _ => {}
        }
    }
    for id in 1..=deployment.desired_dispatchers {
        disp_b.entry(id).or_insert_with(|| disp_common.clone());
    }
    for id in 1..=deployment.desired_games {
        game_b.entry(id).or_insert_with(|| game_common.clone());
    }
    for id in 1..=deployment.desired_gates {
        gate_b.entry(id).or_insert_with(|| gate_common.clone());
    }

    let mut dispatchers = BTreeMap::new();
    for (&id, b) in &disp_b {
        dispatchers.insert(id, b.build(id, base, file)?);
    }
    let mut games = BTreeMap::new();
    for (&id, b) in &game_b {
        games.insert(id, b.build(id, base, file)?);
    }
    let mut gates = BTreeMap::new();
    for (&id, b) in &gate_b {
        gates.insert(id, b.build(id, base, file)?);
    }

    Ok(Config {
        debug,
        deployment,
        storage,
        kvdb,
        dispatchers,
        games,
        gates,
        base_dir: base.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/srv/gw";
    const MINIMAL: &str = "[deployment]\ndesired_dispatchers=1\ndesired_games=1\ndesired_gates=1\n";

    fn base(p: &str) -> PathBuf {
        Path::new(BASE).join(p)
    }

    fn common(kind: &str, id: u16, http: &str) -> ProcessCommon {
        ProcessCommon {
            http_addr: http.into(),
            log_file: base(&format!("{kind}{id}.log")),
            log_stderr: true,
            log_level: "info".into(),
            max_peer_frame: 33554432,
        }
    }

    fn dispatcher(id: u16) -> DispatcherConfig {
        DispatcherConfig {
            listen_addr: "127.0.0.1:13000".into(),
            advertise_addr: "127.0.0.1:13000".into(),
            common: common("dispatcher", id, "127.0.0.1:23000"),
            entity_hold_limit: 100000,
            game_hold_limit: 1000000,
            freeze_hold_timeout_s: 300,
            link_timeout_ms: 5000,
        }
    }

    fn game(id: u16) -> GameConfig {
        GameConfig {
            boot_entity: "Boot".into(),
            save_interval: 300,
            common: common("game", id, "127.0.0.1:25000"),
            gomaxprocs: 0,
            position_sync_interval_ms: 100,
            ban_boot_entity: false,
            refused_calls_limit: 20,
        }
    }

    fn gate(id: u16) -> GateConfig {
        GateConfig {
            listen_addr: "0.0.0.0:14000".into(),
            advertise_addr: None,
            common: common("gate", id, "127.0.0.1:24000"),
            gomaxprocs: 0,
            compress_connection: false,
            encrypt_connection: false,
            rsa_key: base("rsa.key"),
            rsa_certificate: base("rsa.crt"),
            web_root: PathBuf::new(),
            heartbeat_check_interval: 0,
            position_sync_interval_ms: 100,
            max_client_frame: 65536,
            client_output_limit: 4194304,
            client_flush_interval_ms: 50,
            client_output_budget: 64 << 20,
            client_write_budget: 20000,
            client_msg_rate_limit: 200,
            client_byte_rate_limit: 262144,
        }
    }

    /// Every default, for a 1/1/1 deployment.
    fn defaults() -> Config {
        Config {
            debug: false,
            deployment: Deployment {
                desired_dispatchers: 1,
                desired_games: 1,
                desired_gates: 1,
            },
            storage: StoreConfig {
                kind: "filesystem".into(),
                directory: base("entity_storage"),
                url: String::new(),
                db: "goworld".into(),
                collection: String::new(),
                start_nodes: Vec::new(),
            },
            kvdb: StoreConfig {
                kind: "filesystem".into(),
                directory: base("kvdb"),
                url: String::new(),
                db: String::new(),
                collection: String::new(),
                start_nodes: Vec::new(),
            },
            dispatchers: [(1, dispatcher(1))].into(),
            games: [(1, game(1))].into(),
            gates: [(1, gate(1))].into(),
            base_dir: PathBuf::from(BASE),
        }
    }

    /// Parses `ini` (base dir /srv/gw) and expects [`defaults`] as changed by `edit`.
    fn check(ini: &str, edit: impl FnOnce(&mut Config)) {
        let mut want = defaults();
        edit(&mut want);
        match Config::parse(ini, Path::new(BASE)) {
            Ok(got) => assert_eq!(got, want, "\n--- ini ---\n{ini}"),
            Err(e) => panic!("{e}\n--- ini ---\n{ini}"),
        }
    }

    /// Parses `ini` and expects an error containing every one of `parts`.
    fn check_err(ini: &str, parts: &[&str]) {
        let e = Config::parse(ini, Path::new(BASE))
            .expect_err(ini)
            .to_string();
        for p in parts {
            assert!(e.contains(p), "error {e:?} lacks {p:?}\n--- ini ---\n{ini}");
        }
    }

    #[test]
    fn sample_parses_with_its_values() {
        let sample = include_str!("../../conf/goworld.ini.sample");
        check(sample, |c| {
            let d = c.dispatchers.get_mut(&1).unwrap();
            d.listen_addr = "127.0.0.1:13001".into();
            d.advertise_addr = "127.0.0.1:13001".into();
            d.common.http_addr = "127.0.0.1:23001".into();
            let g = c.games.get_mut(&1).unwrap();
            g.boot_entity = "Account".into();
            g.save_interval = 600;
            g.common.http_addr = "127.0.0.1:25001".into();
            let g = c.gates.get_mut(&1).unwrap();
            g.listen_addr = "127.0.0.1:14001".into();
            g.advertise_addr = Some("127.0.0.1:14001".into());
            g.common.http_addr = "127.0.0.1:24001".into();
            g.web_root = base("../web");
        });
        // Every key the parser knows appears in the sample (active or commented out).
        for key in [
            "debug",
            "desired_dispatchers",
            "desired_games",
            "desired_gates",
            "type",
            "directory",
            "url",
            "db",
            "collection",
            "start_nodes_1",
            "listen_addr",
            "advertise_addr",
            "http_addr",
            "log_file",
            "log_stderr",
            "log_level",
            "max_peer_frame",
            "entity_hold_limit",
            "game_hold_limit",
            "freeze_hold_timeout_s",
            "link_timeout_ms",
            "boot_entity",
            "save_interval",
            "gomaxprocs",
            "position_sync_interval_ms",
            "ban_boot_entity",
            "refused_calls_limit",
            "compress_connection",
            "encrypt_connection",
            "rsa_key",
            "rsa_certificate",
            "web_root",
            "heartbeat_check_interval",
            "max_client_frame",
            "client_output_limit",
            "client_msg_rate_limit",
            "client_byte_rate_limit",
        ] {
            assert!(
                sample.contains(&format!("\n{key} =")) || sample.contains(&format!(";{key} =")),
                "{key}"
            );
        }
        for sec in ["[dispatcher2]", "[game2]", "[gate2]"] {
            assert!(sample.contains(&format!(";{sec}")), "{sec}");
        }
    }

    #[test]
    fn every_default() {
        check(MINIMAL, |_| {});
        // Empty known sections change nothing.
        let empty = format!(
            "{MINIMAL}[debug]\n[storage]\n[kvdb]\n[dispatcher_common]\n[game_common]\n\
             [gate_common]\n[dispatcher1]\n[game1]\n[gate1]\n"
        );
        check(&empty, |_| {});
        let c = Config::parse(MINIMAL, Path::new(BASE)).unwrap();
        assert_eq!(c.dispatcher(1), Some(&dispatcher(1)));
        assert_eq!(c.game(1), Some(&game(1)));
        assert_eq!(c.gate(1), Some(&gate(1)));
        assert_eq!(c.dispatcher(2), None);
        assert_eq!(c.game(2), None);
        assert_eq!(c.gate(0), None);
    }

    #[test]
    fn per_id_sections_merge_over_common() {
        let ini = "[deployment]\ndesired_dispatchers=2\ndesired_games=2\ndesired_gates=2\n\
            [dispatcher_common]\nlisten_addr=0.0.0.0:13000\nadvertise_addr=10.0.0.1:13000\n\
            log_level=warn\n\
            [dispatcher2]\nlisten_addr=0.0.0.0:13002\nadvertise_addr=10.0.0.1:13002\n\
            log_level=debug\nentity_hold_limit=5\n\
            [dispatcher3]\nlisten_addr=ignored\n\
            [game_common]\nboot_entity=Account\nlog_file=logs/games.log\n\
            [game2]\nboot_entity=Avatar\nban_boot_entity=1\n\
            [game5]\nsave_interval=0\nrefused_calls_limit=0\n\
            [gate_common]\nmax_client_frame=1000\n\
            [gate1]\nlisten_addr=127.0.0.1:14001\nlog_file=\nclient_output_limit=77\n";
        check(ini, |c| {
            c.deployment = Deployment {
                desired_dispatchers: 2,
                desired_games: 2,
                desired_gates: 2,
            };
            let mut d1 = dispatcher(1);
            d1.listen_addr = "0.0.0.0:13000".into();
            d1.advertise_addr = "10.0.0.1:13000".into();
            d1.common.log_level = "warn".into();
            let mut d2 = dispatcher(2);
            d2.listen_addr = "0.0.0.0:13002".into();
            d2.advertise_addr = "10.0.0.1:13002".into();
            d2.common.log_level = "debug".into();
            d2.entity_hold_limit = 5;
            c.dispatchers = [(1, d1), (2, d2)].into();
            let mut g = [game(1), game(2), game(5)];
            for g in &mut g {
                g.boot_entity = "Account".into();
                g.common.log_file = base("logs/games.log");
            }
            g[1].boot_entity = "Avatar".into();
            g[1].ban_boot_entity = true;
            g[2].save_interval = 0;
            g[2].refused_calls_limit = 0;
            let [g1, g2, g5] = g;
            c.games = [(1, g1), (2, g2), (5, g5)].into();
            let mut t1 = gate(1);
            t1.max_client_frame = 1000;
            t1.listen_addr = "127.0.0.1:14001".into();
            t1.advertise_addr = Some("127.0.0.1:14001".into());
            t1.common.log_file = PathBuf::new();
            t1.client_output_limit = 77;
            let mut t2 = gate(2);
            t2.max_client_frame = 1000;
            c.gates = [(1, t1), (2, t2)].into();
        });
    }

    #[test]
    fn go_booleans() {
        for (v, want) in [
            ("1", true),
            ("t", true),
            ("T", true),
            ("TRUE", true),
            ("true", true),
            ("True", true),
            ("0", false),
            ("f", false),
            ("F", false),
            ("FALSE", false),
            ("false", false),
            ("False", false),
        ] {
            let ini = format!("{MINIMAL}[debug]\ndebug={v}\n[game_common]\nlog_stderr={v}\n");
            check(&ini, |c| {
                c.debug = want;
                c.games.get_mut(&1).unwrap().common.log_stderr = want;
            });
        }
        for v in ["yes", "on", "tRUE", "2", ""] {
            let ini = format!("{MINIMAL}[gate1]\nlog_stderr={v}\n");
            check_err(
                &ini,
                &["[gate1] log_stderr = '", &format!("'{v}'"), "not a boolean"],
            );
        }
    }

    #[test]
    fn unknown_sections_and_keys() {
        let e = Config::parse(
            &format!("{MINIMAL}[gate1]\nlisten_adr=x\n"),
            Path::new(BASE),
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "goworld.ini: [gate1] unknown key 'listen_adr' (line 6)"
        );
        check_err(
            &format!("{MINIMAL}[gateway]\n"),
            &["unknown section [gateway]"],
        );
        check_err(
            &format!("{MINIMAL}[dispatcher]\n"),
            &["unknown section [dispatcher]"],
        );
        check_err(
            &format!("{MINIMAL}[server1]\n"),
            &["unknown section [server1]"],
        );
        check_err(&format!("{MINIMAL}[game0]\n"), &["[game0]", "1..=65535"]);
        check_err(&format!("{MINIMAL}[gate70000]\n"), &["[gate70000]"]);
        check_err(
            &format!("{MINIMAL}[deployment]\ndesired_servers=1\n"),
            &["[deployment] unknown key 'desired_servers'"],
        );
        check_err(
            &format!("{MINIMAL}[debug]\nverbose=1\n"),
            &["[debug] unknown key 'verbose'"],
        );
        check_err(
            &format!("{MINIMAL}[storage]\ncollection=x\n"),
            &["[storage] unknown key 'collection'"],
        );
        // A game key in a gate section, a gate key in a dispatcher section.
        check_err(
            &format!("{MINIMAL}[gate_common]\nboot_entity=A\n"),
            &["[gate_common] unknown key 'boot_entity'"],
        );
        check_err(
            &format!("{MINIMAL}[dispatcher_common]\nmax_client_frame=1\n"),
            &["[dispatcher_common] unknown key 'max_client_frame'"],
        );
        // Keys of ignored dispatcher sections are still checked.
        check_err(
            &format!("{MINIMAL}[dispatcher9]\nlisten=x\n"),
            &["[dispatcher9] unknown key 'listen'"],
        );
        check_err(
            &format!("debug=1\n{MINIMAL}"),
            &["'debug' before any [section]"],
        );
        check_err(&format!("{MINIMAL}[game1\n"), &["unclosed section"]);
        check_err(
            &format!("{MINIMAL}[game1]\njust_a_word\n"),
            &["just_a_word"],
        );
    }

    #[test]
    fn bad_values() {
        check_err(
            &format!("{MINIMAL}[game1]\nsave_interval=10m\n"),
            &["[game1] save_interval = '10m' (line 6)", "integer"],
        );
        check_err(&format!("{MINIMAL}[game1]\nsave_interval=-1\n"), &["'-1'"]);
        check_err(
            &format!("{MINIMAL}[gate1]\nmax_client_frame=99999999999\n"),
            &["[gate1] max_client_frame = '99999999999'", "out of range"],
        );
        check_err(
            &format!("{MINIMAL}[gate_common]\nclient_output_limit=4M\n"),
            &["client_output_limit = '4M'"],
        );
        check_err(
            &format!("{MINIMAL}[dispatcher1]\nmax_peer_frame=0\n"),
            &["[dispatcher1] max_peer_frame = '0'", "greater than 0"],
        );
        check_err(
            &format!("{MINIMAL}[dispatcher1]\nlog_level=verbose\n"),
            &["[dispatcher1] log_level = 'verbose'", "unknown log level"],
        );
        check_err(
            &format!("{MINIMAL}[game1]\nboot_entity=\n"),
            &["[game1] boot_entity is empty"],
        );
        // GoWorld level names are normalized.
        let ini = format!("{MINIMAL}[game1]\nlog_level=FATAL\n[gate1]\nlog_level=Warning\n");
        check(&ini, |c| {
            c.games.get_mut(&1).unwrap().common.log_level = "error".into();
            c.gates.get_mut(&1).unwrap().common.log_level = "warn".into();
        });
    }

    #[test]
    fn desired_counts_must_be_positive() {
        for key in ["desired_dispatchers", "desired_games", "desired_gates"] {
            let ini = MINIMAL.replace(&format!("{key}=1"), &format!("{key}=0"));
            check_err(
                &ini,
                &[&format!("[deployment] {key} = '0'"), "greater than 0"],
            );
            let ini = MINIMAL.replace(&format!("{key}=1"), &format!("{key}=x"));
            check_err(&ini, &[&format!("[deployment] {key} = 'x'")]);
            let ini = MINIMAL.replace(&format!("{key}=1\n"), "");
            check_err(&ini, &[&format!("[deployment] {key} is missing")]);
        }
        check_err("", &["desired_dispatchers is missing"]);
    }

    #[test]
    fn compress_and_encrypt_turn_on_per_gate_with_the_certificate_beside_the_config() {
        let ini = format!(
            "{MINIMAL}[deployment]\ndesired_gates=2\n[gate_common]\nencrypt_connection=1\n\
             compress_connection=t\nrsa_key=keys/gate.key\n[gate2]\nencrypt_connection=FALSE\n"
        );
        let c = Config::parse(&ini, Path::new(BASE)).unwrap();
        let g1 = &c.gates[&1];
        assert!(g1.encrypt_connection && g1.compress_connection);
        assert_eq!(g1.rsa_key, Path::new(BASE).join("keys/gate.key"));
        assert_eq!(g1.rsa_certificate, Path::new(BASE).join("rsa.crt"));
        let g2 = &c.gates[&2];
        assert!(!g2.encrypt_connection && g2.compress_connection);
        let plain = Config::parse(MINIMAL, Path::new(BASE)).unwrap();
        assert!(!plain.gates[&1].encrypt_connection && !plain.gates[&1].compress_connection);
    }

    #[test]
    fn gate_heartbeat_and_rate_limits() {
        // Set in [gate_common], overridden per gate; 0 turns a limit (or the check) off.
        let ini = "[deployment]\ndesired_dispatchers=1\ndesired_games=1\ndesired_gates=2\n\
            [gate_common]\nheartbeat_check_interval=30\nclient_msg_rate_limit=50\n\
            client_byte_rate_limit=100000\n\
            [gate2]\nheartbeat_check_interval=0\nclient_msg_rate_limit=0\nclient_byte_rate_limit=0\n";
        check(ini, |c| {
            let mut t1 = gate(1);
            t1.heartbeat_check_interval = 30;
            t1.client_msg_rate_limit = 50;
            t1.client_byte_rate_limit = 100000;
            let mut t2 = gate(2);
            t2.client_msg_rate_limit = 0;
            t2.client_byte_rate_limit = 0;
            c.deployment.desired_gates = 2;
            c.gates = [(1, t1), (2, t2)].into();
        });
        // A day at most.
        check(
            &format!("{MINIMAL}[gate1]\nheartbeat_check_interval=86400\n"),
            |c| c.gates.get_mut(&1).unwrap().heartbeat_check_interval = 86400,
        );
        check_err(
            &format!("{MINIMAL}[gate1]\nheartbeat_check_interval=86401\n"),
            &[
                "[gate1] heartbeat_check_interval = '86401'",
                "at most 86400 seconds",
            ],
        );
        check_err(
            &format!("{MINIMAL}[gate_common]\nclient_msg_rate_limit=-1\n"),
            &["[gate_common] client_msg_rate_limit = '-1'"],
        );
        // One largest frame (payload plus header) must fit in the byte budget.
        check(
            &format!("{MINIMAL}[gate1]\nmax_client_frame=1000\nclient_byte_rate_limit=1004\n"),
            |c| {
                let g = c.gates.get_mut(&1).unwrap();
                g.max_client_frame = 1000;
                g.client_byte_rate_limit = 1004;
            },
        );
        check_err(
            &format!("{MINIMAL}[gate_common]\nclient_byte_rate_limit=65539\n"),
            &[
                "[gate1] client_byte_rate_limit = 65539 is below one largest client frame",
                "at least 65540",
            ],
        );
    }

    #[test]
    fn storage_types() {
        // MongoDB: a URL; the KVDB also a collection; `db` defaults to GoWorld's `goworld`.
        for sec in ["storage", "kvdb"] {
            check_err(
                &format!("{MINIMAL}[{sec}]\ntype=mongodb\n"),
                &[&format!("[{sec}] url is empty")],
            );
        }
        check_err(
            &format!("{MINIMAL}[kvdb]\ntype=mongodb\nurl=mongodb://h\n"),
            &["[kvdb] collection is empty"],
        );
        let c = Config::parse(&format!(
            "{MINIMAL}[storage]\ntype=mongodb\nurl=mongodb://h\n[kvdb]\ntype=mongodb\nurl=mongodb://h\ndb=kv\ncollection=__kv__\n"
        ), Path::new(BASE))
        .unwrap();
        assert_eq!(
            (c.storage.kind.as_str(), c.storage.db.as_str()),
            ("mongodb", "goworld")
        );
        assert_eq!(
            (
                c.kvdb.kind.as_str(),
                c.kvdb.db.as_str(),
                c.kvdb.collection.as_str()
            ),
            ("mongodb", "kv", "__kv__")
        );
        check_err(
            &format!("{MINIMAL}[storage]\ntype=\n"),
            &["[storage] type = ''", "unknown storage type"],
        );
        check_err(
            &format!("{MINIMAL}[storage]\ntype=redis_cluster\n"),
            &["unknown storage type"],
        );
        check_err(
            &format!("{MINIMAL}[kvdb]\ntype=sqlite\n"),
            &["unknown kvdb type"],
        );
        check_err(
            &format!("{MINIMAL}[storage]\ndirectory=\n"),
            &["[storage] directory is empty"],
        );
        // Redis: a URL, and `db` a database index (0 if not given).
        for sec in ["storage", "kvdb"] {
            check_err(
                &format!("{MINIMAL}[{sec}]\ntype=redis\n"),
                &[&format!("[{sec}] url is empty")],
            );
            check_err(
                &format!("{MINIMAL}[{sec}]\ntype=redis\nurl=redis://h:1\ndb=goworld\n"),
                &[&format!("[{sec}]"), "db", "goworld"],
            );
        }
        check(
            &format!("{MINIMAL}[storage]\ntype=redis\nurl=redis://127.0.0.1:6379\n"),
            |c| {
                c.storage.kind = "redis".into();
                c.storage.url = "redis://127.0.0.1:6379".into();
                c.storage.db = "0".into();
            },
        );
        check(
            &format!("{MINIMAL}[kvdb]\ntype=redis\nurl=redis://127.0.0.1:6379\ndb=3\n"),
            |c| {
                c.kvdb.kind = "redis".into();
                c.kvdb.url = "redis://127.0.0.1:6379".into();
                c.kvdb.db = "3".into();
            },
        );
        // Redis Cluster: its start nodes, in number order.
        check(
            &format!("{MINIMAL}[kvdb]\ntype=redis_cluster\nstart_nodes_2=b:2\nstart_nodes_1=a:1\n"),
            |c| {
                c.kvdb.kind = "redis_cluster".into();
                c.kvdb.start_nodes = vec!["a:1".into(), "b:2".into()];
            },
        );
        // An empty kvdb type disables the kvdb, as in GoWorld.
        check(
            &format!("{MINIMAL}[kvdb]\ntype=\nstart_nodes_1=a:1\n"),
            |c| {
                c.kvdb.kind = String::new();
                c.kvdb.start_nodes = vec!["a:1".into()];
            },
        );
        check(
            &format!(
                "{MINIMAL}[storage]\ndirectory=/var/gw/entities\nurl=u\ndb=d\nstart_nodes_1=x\n"
            ),
            |c| {
                c.storage.directory = PathBuf::from("/var/gw/entities");
                c.storage.url = "u".into();
                c.storage.db = "d".into();
                c.storage.start_nodes = vec!["x".into()];
            },
        );
    }

    #[test]
    fn paths_resolve_against_the_base_dir() {
        let ini = format!(
            "{MINIMAL}[kvdb]\ndirectory=data/kv\n[dispatcher1]\nlog_file=/var/log/d.log\n\
             [game1]\nlog_file=logs/g.log\n[gate1]\nrsa_key=tls/k.pem\nrsa_certificate=/etc/c.pem\n\
             web_root=../web\n"
        );
        check(&ini, |c| {
            c.kvdb.directory = base("data/kv");
            c.dispatchers.get_mut(&1).unwrap().common.log_file = "/var/log/d.log".into();
            c.games.get_mut(&1).unwrap().common.log_file = base("logs/g.log");
            let g = c.gates.get_mut(&1).unwrap();
            g.rsa_key = base("tls/k.pem");
            g.rsa_certificate = "/etc/c.pem".into();
            g.web_root = base("../web");
        });

        // load(): the base dir is the file's (absolute) directory; errors name the file.
        let dir = std::env::temp_dir().join(format!("goworld-rs-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        let path = dir.join("conf").join("goworld.ini");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        let real = dir.join("conf").canonicalize().unwrap();
        assert_eq!(c.base_dir, real);
        assert_eq!(c.game(1).unwrap().common.log_file, real.join("game1.log"));
        assert_eq!(c.storage.directory, real.join("entity_storage"));
        std::fs::write(&path, format!("{MINIMAL}[gate1]\nlisten_adr=x\n")).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: [gate1] unknown key", path.display())),
            "{e}"
        );
        let missing = dir.join("nope.ini");
        let e = Config::load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.ini") && e.ends_with("not found"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn parse_err(ini: &str) -> ConfigError {
        Config::parse(ini, Path::new(BASE)).expect_err(ini)
    }

    #[test]
    fn errors_are_typed() {
        let f = Path::new("goworld.ini");
        // A missing [deployment] count.
        let ini = MINIMAL.replace("desired_games=1\n", "");
        match parse_err(&ini) {
            ConfigError::Missing { file, section, key } => {
                assert_eq!(
                    (file.as_path(), &*section, &*key),
                    (f, "deployment", "desired_games")
                )
            }
            e => panic!("{e:?}"),
        }
        // Bad values, with their section, key, value, line and reason.
        for (extra, key, value, why) in [
            (
                "[game1]\nsave_interval=10m\n",
                "save_interval",
                "10m",
                BadValueReason::NotInteger,
            ),
            (
                "[game1]\nsave_interval=-1\n",
                "save_interval",
                "-1",
                BadValueReason::NotInteger,
            ),
            (
                "[game1]\ngomaxprocs=99999999999\n",
                "gomaxprocs",
                "99999999999",
                BadValueReason::OutOfRange,
            ),
            (
                "[game1]\nmax_peer_frame=0\n",
                "max_peer_frame",
                "0",
                BadValueReason::NotPositive,
            ),
            (
                "[game1]\nlog_stderr=yes\n",
                "log_stderr",
                "yes",
                BadValueReason::NotBoolean,
            ),
            (
                "[game1]\nlog_level=loud\n",
                "log_level",
                "loud",
                BadValueReason::UnknownLogLevel,
            ),
        ] {
            match parse_err(&format!("{MINIMAL}{extra}")) {
                ConfigError::BadValue {
                    file,
                    section,
                    key: k,
                    value: v,
                    line,
                    why: w,
                } => {
                    assert_eq!(file, f);
                    assert_eq!(
                        (&*section, &*k, &*v, line),
                        ("game1", key, value, 6),
                        "{extra}"
                    );
                    assert_eq!(w, why, "{extra}");
                }
                e => panic!("{extra}: {e:?}"),
            }
        }
        assert!(matches!(
            parse_err(&format!(
                "{MINIMAL}[gate1]\nheartbeat_check_interval=86401\n"
            )),
            ConfigError::BadValue {
                why: BadValueReason::IntervalTooLong {
                    max_secs: MAX_HEARTBEAT_CHECK_INTERVAL
                },
                ..
            }
        ));
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[kvdb]\ntype=sqlite\n")),
            ConfigError::BadValue { ref section, ref key, ref value, why: BadValueReason::UnknownStoreType, .. }
                if section == "kvdb" && key == "type" && value == "sqlite"
        ));
        // Unknown keys and sections, bad section IDs.
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[gate1]\nlisten_adr=x\n")),
            ConfigError::UnknownKey { ref section, ref key, line: 6, .. }
                if section == "gate1" && key == "listen_adr"
        ));
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[gateway]\n")),
            ConfigError::UnknownSection { ref section, line: 5, .. } if section == "gateway"
        ));
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[game0]\n")),
            ConfigError::BadSectionId { ref section, line: 5, .. } if section == "game0"
        ));
        // Syntax.
        for (ini, want) in [
            (format!("{MINIMAL}[game1\n"), SyntaxProblem::UnclosedHeader),
            (format!("{MINIMAL}[ ]\n"), SyntaxProblem::EmptySectionName),
            (
                format!("{MINIMAL}[game1]\njust_a_word\n"),
                SyntaxProblem::NotKeyValue,
            ),
            (format!("{MINIMAL}[game1]\n= 3\n"), SyntaxProblem::NoKey),
            (
                format!("Debug=1\n{MINIMAL}"),
                SyntaxProblem::KeyBeforeSection {
                    key: "debug".into(),
                },
            ),
        ] {
            match parse_err(&ini) {
                ConfigError::Syntax { problem, .. } => assert_eq!(problem, want, "{ini}"),
                e => panic!("{ini}: {e:?}"),
            }
        }
        // Empty required values.
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[game_common]\nboot_entity=\n")),
            ConfigError::Empty { ref section, ref key, .. } if section == "game1" && key == "boot_entity"
        ));
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[storage]\ndirectory=\n")),
            ConfigError::Empty { ref section, ref key, .. } if section == "storage" && key == "directory"
        ));
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[kvdb]\ntype=redis_cluster\n")),
            ConfigError::Empty { ref section, ref key, .. }
                if section == "kvdb" && key == "start_nodes_1"
        ));
        assert!(matches!(
            parse_err(&format!("{MINIMAL}[kvdb]\ntype=mongodb\nurl=x\n")),
            ConfigError::Empty { ref section, ref key, .. }
                if section == "kvdb" && key == "collection"
        ));
        assert!(matches!(
            parse_err(&format!(
                "{MINIMAL}[gate1]\nmax_client_frame=100\nclient_byte_rate_limit=103\n"
            )),
            ConfigError::ByteRateBelowFrame {
                gate: 1,
                client_byte_rate_limit: 103,
                max_client_frame: 100,
                ..
            }
        ));
        // Only an unreadable file has a source: the io error.
        use std::error::Error as _;
        assert!(parse_err("").source().is_none());
        let missing = std::env::temp_dir().join("goworld-rs-no-such-dir/goworld.ini");
        match Config::load(&missing) {
            Err(e @ ConfigError::Io { .. }) => {
                assert_eq!(e.file(), missing);
                let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
                assert_eq!(
                    io.map(std::io::Error::kind),
                    Some(std::io::ErrorKind::NotFound)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ini_syntax() {
        let ini = "\u{feff}; comment\n# comment\n  [Deployment]  ; trailing\n\
            Desired_Dispatchers : 1\ndesired_games=1 ; inline\ndesired_gates = 1#x\n\
            [game1]\nboot_entity = \"Acc;ount\" ; quoted\nhttp_addr='a b'\nlog_level=`debug`\n\
            save_interval=1\nsave_interval=2\n[gate1]\nlisten_addr=a\n[game1]\ngomaxprocs=4\n";
        check(ini, |c| {
            let g = c.games.get_mut(&1).unwrap();
            g.boot_entity = "Acc;ount".into();
            g.common.http_addr = "a b".into();
            g.common.log_level = "debug".into();
            g.save_interval = 2;
            g.gomaxprocs = 4;
            let g = c.gates.get_mut(&1).unwrap();
            g.listen_addr = "a".into();
            g.advertise_addr = Some("a".into());
        });
    }

    #[test]
    fn address_helpers() {
        assert_eq!(
            split_host_port("10.0.0.1:13001"),
            Some(("10.0.0.1", "13001"))
        );
        assert_eq!(split_host_port("[::1]:13001"), Some(("::1", "13001")));
        assert_eq!(split_host_port("[::]:13001"), Some(("::", "13001")));
        assert_eq!(split_host_port(":13001"), Some(("", "13001")));
        assert_eq!(split_host_port("db.lan:1"), Some(("db.lan", "1")));
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(join_host_port("10.0.0.1", "1"), "10.0.0.1:1");
        assert_eq!(join_host_port("::1", "1"), "[::1]:1");
        for every in ["0.0.0.0", "::", "0:0:0:0:0:0:0:0", ""] {
            assert!(is_every_interface(every), "{every:?}");
        }
        for host in ["127.0.0.1", "10.0.0.1", "::1", "localhost", "game-b"] {
            assert!(!is_every_interface(host), "{host:?}");
        }
    }

    #[test]
    fn dispatcher_advertise_addr_is_derived_from_listen_addr() {
        // A listen_addr that names a host is what games and gates dial (GoWorld would
        // advertise 127.0.0.1:13000 whatever it says).
        for listen in ["10.0.0.1:13001", "[::1]:13001", "dispatcher-a:13001"] {
            check(
                &format!("{MINIMAL}[dispatcher1]\nlisten_addr={listen}\n"),
                |c| {
                    let d = c.dispatchers.get_mut(&1).unwrap();
                    d.listen_addr = listen.into();
                    d.advertise_addr = listen.into();
                },
            );
        }
        // From [dispatcher_common] to every dispatcher; an empty advertise_addr is not set.
        let ini = "[deployment]\ndesired_dispatchers=2\ndesired_games=1\ndesired_gates=1\n\
            [dispatcher_common]\nlisten_addr=10.0.0.1:13000\nadvertise_addr=\n\
            [dispatcher2]\nlisten_addr=10.0.0.1:13002\n";
        check(ini, |c| {
            c.deployment.desired_dispatchers = 2;
            let mut d1 = dispatcher(1);
            d1.listen_addr = "10.0.0.1:13000".into();
            d1.advertise_addr = "10.0.0.1:13000".into();
            let mut d2 = dispatcher(2);
            d2.listen_addr = "10.0.0.1:13002".into();
            d2.advertise_addr = "10.0.0.1:13002".into();
            c.dispatchers = [(1, d1), (2, d2)].into();
        });
        // Every interface with an advertise_addr: that is dialed.
        check(
            &format!("{MINIMAL}[dispatcher1]\nlisten_addr=0.0.0.0:13001\nadvertise_addr=10.0.0.1:13001\n"),
            |c| {
                let d = c.dispatchers.get_mut(&1).unwrap();
                d.listen_addr = "0.0.0.0:13001".into();
                d.advertise_addr = "10.0.0.1:13001".into();
            },
        );
        // A dispatcher above desired_dispatchers is ignored, so it need not advertise.
        check(
            &format!("{MINIMAL}[dispatcher2]\nlisten_addr=0.0.0.0:13002\n"),
            |_| {},
        );
    }

    #[test]
    fn dispatcher_on_every_interface_needs_advertise_addr() {
        for listen in ["0.0.0.0:13001", "[::]:13001", ":13001"] {
            let ini = format!("{MINIMAL}[dispatcher1]\nlisten_addr={listen}\n");
            match parse_err(&ini) {
                ConfigError::NoAdvertiseAddr {
                    file,
                    section,
                    key,
                    listen_addr,
                } => {
                    assert_eq!(file, Path::new("goworld.ini"));
                    assert_eq!(
                        (&*section, &*key, &*listen_addr),
                        ("dispatcher1", "advertise_addr", listen)
                    );
                }
                e => panic!("{listen}: {e:?}"),
            }
        }
        assert_eq!(
            parse_err(&format!(
                "{MINIMAL}[dispatcher1]\nlisten_addr=0.0.0.0:13001\n"
            ))
            .to_string(),
            "goworld.ini: [dispatcher1] advertise_addr is missing: listen_addr = 0.0.0.0:13001 \
             listens on every interface, so games and gates cannot tell which address to dial; \
             set advertise_addr = <an address of this host they can reach>:13001 \
             (127.0.0.1:13001 when every process runs on this host)"
        );
        // Set in [dispatcher_common]: the first dispatcher is named.
        let ini = "[deployment]\ndesired_dispatchers=2\ndesired_games=1\ndesired_gates=1\n\
            [dispatcher_common]\nlisten_addr=0.0.0.0:13000\n";
        check_err(ini, &["[dispatcher1] advertise_addr is missing"]);
        // An advertise_addr on every interface cannot be dialed either, in any section.
        for sec in ["dispatcher_common", "dispatcher1", "gate_common", "gate1"] {
            let ini = format!("{MINIMAL}[{sec}]\nadvertise_addr=0.0.0.0:13001\n");
            match parse_err(&ini) {
                ConfigError::BadValue {
                    section,
                    key,
                    value,
                    line: 6,
                    why: BadValueReason::EveryInterface,
                    ..
                } => assert_eq!(
                    (&*section, &*key, &*value),
                    (sec, "advertise_addr", "0.0.0.0:13001")
                ),
                e => panic!("{sec}: {e:?}"),
            }
            check_err(
                &ini,
                &[
                    &format!("[{sec}] advertise_addr = '0.0.0.0:13001' (line 6)"),
                    "cannot be dialed",
                ],
            );
        }
    }

    #[test]
    fn readme_two_host_example_parses() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## Several hosts").expect("the section")..];
        let start = section.find("```ini\n").expect("an ini block") + "```ini\n".len();
        let ini = &section[start..start + section[start..].find("```").unwrap()];
        let c = Config::parse(ini, Path::new(BASE)).unwrap();
        assert_eq!(c.dispatcher(1).unwrap().advertise_addr, "10.0.0.1:13001");
        assert_eq!(
            c.gate(1).unwrap().advertise_addr.as_deref(),
            Some("10.0.0.2:14001")
        );
        assert_eq!(c.storage.kind, "redis");
        // The other address style of each (the commented-out lines) says the same.
        let other = ini
            .replace(";listen_addr", "listen_addr")
            .replace(";advertise_addr", "advertise_addr");
        let c = Config::parse(&other, Path::new(BASE)).unwrap();
        let d = c.dispatcher(1).unwrap();
        assert_eq!(
            (d.listen_addr.as_str(), d.advertise_addr.as_str()),
            ("0.0.0.0:13001", "10.0.0.1:13001")
        );
        let g = c.gate(1).unwrap();
        assert_eq!(
            (g.listen_addr.as_str(), g.advertise_addr.as_deref()),
            ("10.0.0.2:14001", Some("10.0.0.2:14001"))
        );
    }

    #[test]
    fn gate_advertise_addr() {
        // Listening on every interface (the default) advertises nothing.
        let c = Config::parse(MINIMAL, Path::new(BASE)).unwrap();
        assert_eq!(c.gate(1).unwrap().advertise_addr, None);
        // A listen_addr that names a host is advertised; an advertise_addr wins.
        let ini = "[deployment]\ndesired_dispatchers=1\ndesired_games=1\ndesired_gates=3\n\
            [gate1]\nlisten_addr=10.0.0.2:14001\n\
            [gate2]\nlisten_addr=0.0.0.0:14002\nadvertise_addr=10.0.0.2:14002\n\
            [gate3]\nlisten_addr=[::]:14003\n";
        let c = Config::parse(ini, Path::new(BASE)).unwrap();
        let adv = |id| c.gate(id).unwrap().advertise_addr.as_deref();
        assert_eq!(adv(1), Some("10.0.0.2:14001"));
        assert_eq!(adv(2), Some("10.0.0.2:14002"));
        assert_eq!(adv(3), None);
    }
}
