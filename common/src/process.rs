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
