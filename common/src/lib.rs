//! goworld-common: everything the dispatcher, gate, game and bots share.
//!
//! * [`id`]: entity and client IDs in GoWorld's 16-character format, and the hashes that pick
//!   a dispatcher for an entity, a gate or a service key.
//! * [`msgpack`]: the one msgpack value type and the encoder with GoWorld's client-facing rules.
//! * [`proto`]: every message type, its number and byte layout, and routing by type range.
//! * [`frame`]: length-prefixed framing and the incremental frame decoder.
//! * [`config`]: `goworld.ini` parsing into typed per-process configuration.
//! * [`displink`]: a game's or gate's links to every dispatcher, with queueing while one is down.
//! * [`dialwatch`]: bounded warnings while a dial (a dispatcher's address) stays unconnected.
//! * [`process`]: start-up shared by the binaries (flags, config, logging, ready line).
//! * [`args`]: Go-style command-line flags (`-gid 1`, `-configfile=x`).
//! * [`logging`]: log set-up (file and/or stderr) and io-error wording.
//! * [`peerlog`]: bounded logging of what a remote peer can repeat (first lines in full, the
//!   rest counted and summarised).
//! * [`rng`]: a seeded random source that component logic takes as an input.
//! * [`timers`]: a deadline-ordered timer queue that component logic owns.
//! * [`testio`]: an in-memory `Io` for component tests.
//! * [`testlog`]: log capture for component tests.
//! * [`http`]: the observability endpoint's requests, responses and bodies (Prometheus text,
//!   JSON), without sockets.
//! * [`ops`]: the `goworld` command's logic (process order, PID files, status table).
//! * [`transport`]: the client transports' layers (TLS, WebSocket, snappy framing, KCP), sans-IO.
//! * [`webroot`]: which file under the gate's `web_root` a request path names, and its content
//!   type, without IO (the reactor reads and serves it).
//! * [`reactor`]: the single-threaded mio event loop; the only code that owns sockets.
//!
//! **Architecture Invariant:** nothing here but [`reactor`] (and the thin `logging` set-up)
//! touches sockets, files or the clock. Protocol and component logic are pure state machines.

pub mod args;
pub mod config;
pub mod dialwatch;
pub mod displink;
pub mod frame;
pub mod http;
pub mod id;
pub mod logging;
pub mod msgpack;
pub mod ops;
pub mod peerlog;
pub mod process;
pub mod proto;
pub mod reactor;
pub mod rng;
pub mod testio;
pub mod testlog;
pub mod testserver;
pub mod timers;
pub mod transport;
pub mod webroot;

/// The internal protocol version carried by SET_GAME_ID and SET_GATE_ID. A dispatcher refuses
/// a game or gate that speaks another version, with a log line naming both.
pub const INTERNAL_PROTOCOL_VERSION: u16 = 5;

/// GoWorld's supervisor tags, printed verbatim once a process is ready.
pub fn ready_line(kind: &str) -> String {
    format!("<!--XSUPERVISOR:BEGIN--> {kind} STARTED <!--XSUPERVISOR:END-->")
}

/// Signal numbers (Linux) that component logic reacts to, so logic need not link libc.
pub mod sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGUSR1: i32 = 10;
    pub const SIGUSR2: i32 = 12;
    pub const SIGTERM: i32 = 15;
}
