//! Start-up shared by the server binaries: flags, config, logging, addresses, the ready line.
//!
//! Binaries stay thin: parse flags, load config, bind, run. Anything that fails here prints
//! one clear line to stderr and exits non-zero.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::args::{parse_process_args, ProcessArgs};
use crate::config::{Config, ProcessCommon};

/// Prints `msg` to stderr (and the log, if set up) and exits with status 2.
pub fn fail(msg: &str) -> ! {
    log::error!("{msg}");
    eprintln!("{msg}");
    std::process::exit(2)
}

/// Parses this process's flags and loads its config file, or exits with a clear message.
pub fn boot(program: &str, id_flag: &str, allow_restore: bool) -> (ProcessArgs, Config) {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_process_args(&argv, id_flag, allow_restore)
        .unwrap_or_else(|e| fail(&format!("{program}: {e}")));
    if args.daemon {
        fail(&format!(
            "{program}: -d (daemon mode) is not supported; run under a supervisor instead"
        ));
    }
    let config =
        Config::load(&args.configfile).unwrap_or_else(|e| fail(&format!("{program}: {e}")));
    (args, config)
}

/// Sets up logging for a process from its config section, `-log` overriding the level.
pub fn init_logging(source: &str, common: &ProcessCommon, level_override: Option<&str>) {
    let level = level_override.unwrap_or(&common.log_level);
    crate::logging::init(source, level, Some(&common.log_file), common.log_stderr)
        .unwrap_or_else(|e| fail(&format!("{source}: cannot set up logging: {e}")));
    crate::logging::install_panic_hook(source);
}

/// Why [`resolve`] found no socket address.
#[derive(Debug)]
pub enum ResolveError {
    /// `addr` is not `host:port`, or the lookup failed.
    Lookup {
        addr: String,
        source: std::io::Error,
    },
    /// The lookup succeeded with no addresses.
    NoAddress { addr: String },
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Lookup { addr, source } => {
                write!(f, "address {addr}: {}", crate::logging::io_kind(source))
            }
            ResolveError::NoAddress { addr } => write!(f, "address {addr} resolves to nothing"),
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::Lookup { source, .. } => Some(source),
            ResolveError::NoAddress { .. } => None,
        }
    }
}

/// Resolves `host:port` to one socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, ResolveError> {
    addr.to_socket_addrs()
        .map_err(|source| ResolveError::Lookup {
            addr: addr.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| ResolveError::NoAddress {
            addr: addr.to_string(),
        })
}

/// Binds a listener on `addr`, or exits naming the address.
pub fn bind(what: &str, addr: &str) -> TcpListener {
    let sa = resolve(addr).unwrap_or_else(|e| fail(&format!("{what}: {e}")));
    TcpListener::bind(sa).unwrap_or_else(|e| {
        fail(&format!(
            "{what}: cannot listen on {addr}: {}",
            crate::logging::io_kind(&e)
        ))
    })
}

/// Serves `/metrics` and `/status` on `http_addr` from `reactor` (see
/// [`crate::reactor::Reactor::add_http`]); a host left out (`:25000`) is 127.0.0.1. Empty:
/// no endpoint. If it cannot listen, one warning says so and the process runs without it
/// (observability never stops a server). The address bound, for the ready line.
pub fn serve_http(
    reactor: &mut crate::reactor::Reactor,
    what: &str,
    http_addr: &str,
) -> Option<SocketAddr> {
    if http_addr.is_empty() {
        return None;
    }
    let addr = if http_addr.starts_with(':') {
        format!("127.0.0.1{http_addr}")
    } else {
        http_addr.to_string()
    };
    let bound = resolve(&addr)
        .map_err(|e| e.to_string())
        .and_then(|sa| TcpListener::bind(sa).map_err(|e| crate::logging::io_kind(&e)))
        .and_then(|l| reactor.add_http(l).map_err(|e| e.to_string()));
    match bound {
        Ok(a) => Some(a),
        Err(why) => {
            log::warn!(
                "{what}: http_addr {addr}: cannot listen ({why}); /metrics and /status are off"
            );
            None
        }
    }
}

/// Prints GoWorld's supervisor line for `kind` followed by `name=address` pairs (the bound
/// addresses, and the advertised ones that others dial), on stdout and in the log, so scripts
/// and tests can wait for it (and learn ports bound as port 0).
pub fn print_ready(kind: &str, addrs: &[(&str, &dyn std::fmt::Display)]) {
    let mut line = crate::ready_line(kind);
    for (name, a) in addrs {
        line.push_str(&format!(" {name}={a}"));
    }
    log::info!("{line}");
    println!("{line}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat; 0
/// where there is no /proc).
pub fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ")", field 3 of the line is index 0, so utime (14) is 11 and stime (15) is 12.
    field(11) + field(12)
}

/// Clock ticks per second (sysconf(_SC_CLK_TCK), 100 on Linux).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds this process used (user + system).
pub fn cpu_seconds() -> f64 {
    cpu_ticks() as f64 / clock_ticks()
}

/// Resident memory of this process in bytes (/proc/self/statm; 0 where there is none).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = (statm.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * if page > 0 { page as u64 } else { 4096 }
}

/// Unix seconds of `wall`, for ID generation (0 before 1970).
pub fn unix_secs(wall: std::time::SystemTime) -> u32 {
    wall.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_names_the_address() {
        assert_eq!(
            resolve("127.0.0.1:13000").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 13000))
        );
        // No port: refused before any lookup.
        let e = resolve("localhost").unwrap_err();
        match &e {
            ResolveError::Lookup { addr, source } => {
                assert_eq!(addr, "localhost");
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "address localhost: invalid input");
        use std::error::Error as _;
        assert!(e.source().is_some());
        let e = ResolveError::NoAddress { addr: "x:1".into() };
        assert_eq!(e.to_string(), "address x:1 resolves to nothing");
    }
}
