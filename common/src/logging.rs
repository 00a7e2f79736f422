//! Log set-up for the server processes, and io-error wording.
//!
//! Lines go to the configured log file and/or stderr. Expected events (a peer resetting, a
//! client leaving) log at info or warn without the words "error" or "panic"; io errors are
//! named by kind ("connection reset by peer") through [`io_kind`], never by their os text.
//!
//! Line format (GoWorld's zap console encoding: ISO 8601 time, lowercase level, source):
//!
//! ```text
//! 2026-11-26T12:00:00.123Z info game1 goworld_game::service: connected to dispatcher1
//! ```
//!
//! `RUST_LOG` is not read: the level comes from the config file or `-log`.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Why [`init`] could not install the logger.
#[derive(Debug)]
pub enum LogInitError {
    /// A level name that is not debug, info, warn(ing), error, panic or fatal.
    UnknownLevel { level: String },
    /// The log file could not be opened for appending.
    OpenFile { path: PathBuf, source: io::Error },
    /// [`init`] was already called in this process.
    AlreadyInitialised,
    /// Some other `log` logger is installed.
    OtherLogger,
}

impl Display for LogInitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogInitError::UnknownLevel { level } => write!(
                f,
                "unknown log level '{level}' (use debug, info, warn or error)"
            ),
            LogInitError::OpenFile { path, source } => write!(
                f,
                "cannot open log file {}: {}",
                path.display(),
                io_kind(source)
            ),
            LogInitError::AlreadyInitialised => {
                f.write_str("logging is already initialised in this process")
            }
            LogInitError::OtherLogger => {
                f.write_str("another logger is already installed in this process")
            }
        }
    }
}

impl std::error::Error for LogInitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogInitError::OpenFile { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Installs the process logger: `source` names the process in every line (`dispatcher1`,
/// `game2`, `gate1`); `level` is debug, info, warn (or warning) or error, any case, with
/// GoWorld's panic and fatal read as error; `file` is appended to (created if missing) and
/// flushed after every line; `stderr` also copies every line to stderr.
///
/// Errors ([`LogInitError`]): an unknown level, a log file that cannot be opened, or a second
/// call (or another logger) in the same process.
pub fn init(
    source: &str,
    level: &str,
    file: Option<&Path>,
    stderr: bool,
) -> Result<(), LogInitError> {
    let filter = parse_level(level)?;
    let file = match file {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogInitError::OpenFile {
                    path: path.to_path_buf(),
                    source,
                })?,
        ),
        None => None,
    };
    if INITIALISED.swap(true, Ordering::SeqCst) {
        return Err(LogInitError::AlreadyInitialised);
    }
    let source = source.to_string();
    env_logger::Builder::new()
        .filter_level(filter)
        .format(move |buf, record| {
            let ts = buf.timestamp_millis();
            write_record(buf, &ts, &source, record)
        })
        .target(env_logger::Target::Pipe(Box::new(Tee { file, stderr })))
        .try_init()
        .map_err(|_| LogInitError::OtherLogger)
}

/// The level filter for a config or `-log` level name.
fn parse_level(level: &str) -> Result<log::LevelFilter, LogInitError> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" | "warning" => log::LevelFilter::Warn,
        "error" | "panic" | "fatal" => log::LevelFilter::Error,
        _ => {
            return Err(LogInitError::UnknownLevel {
                level: level.to_string(),
            })
        }
    })
}

/// One line: `<time> <level> <source> <target>: <message>`.
fn write_record(
    w: &mut dyn Write,
    ts: &dyn Display,
    source: &str,
    record: &log::Record,
) -> io::Result<()> {
    let level = match record.level() {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    };
    writeln!(
        w,
        "{ts} {level} {source} {}: {}",
        record.target(),
        record.args()
    )
}

/// The log target: every record (one `write_all` + `flush` from env_logger) goes to the file
/// and/or stderr.
struct Tee {
    file: Option<File>,
    stderr: bool,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            // A full disk must not stop the process; the line still reaches stderr.
            let _ = f.write_all(buf);
        }
        if self.stderr {
            let _ = io::stderr().lock().write_all(buf);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
        if self.stderr {
            let _ = io::stderr().flush();
        }
        Ok(())
    }
}

/// A lowercase description of an io error's kind, without os error numbers or os text:
/// "connection reset by peer", "broken pipe", "connection refused", "timed out", … Kinds
/// without a fixed wording give their name in lowercase words ("would block").
pub fn io_kind(e: &io::Error) -> String {
    use io::ErrorKind::*;
    let fixed = match e.kind() {
        ConnectionReset => "connection reset by peer",
        BrokenPipe => "broken pipe",
        ConnectionRefused => "connection refused",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        AddrInUse => "address in use",
        AddrNotAvailable => "address not available",
        NotFound => "not found",
        PermissionDenied => "permission denied",
        UnexpectedEof => "unexpected end of file",
        NotConnected => "not connected",
        AlreadyExists => "already exists",
        WouldBlock => "would block",
        InvalidInput => "invalid input",
        InvalidData => "invalid data",
        WriteZero => "write zero",
        Interrupted => "interrupted",
        Unsupported => "unsupported",
        OutOfMemory => "out of memory",
        Other => "other",
        kind => return words(&format!("{kind:?}")),
    };
    fixed.to_string()
}

/// `HostUnreachable` → "host unreachable".
fn words(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars().filter(|c| c.is_ascii_alphabetic()) {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Logs every panic (message and location) through `log::error!` before Rust's default hook
/// prints it, so a crash is recorded in the log file. `source` names the process.
pub fn install_panic_hook(source: &str) {
    let source = source.to_string();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string panic payload)".to_string()
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown location".to_string());
        let thread = std::thread::current();
        log::error!(
            target: "panic",
            "{source} panicked in thread '{}' at {location}: {msg}",
            thread.name().unwrap_or("unnamed")
        );
        log::logger().flush();
        default_hook(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kind_names_the_kind_without_numbers() {
        let reset = io::Error::from_raw_os_error(104);
        assert_eq!(io_kind(&reset), "connection reset by peer");
        assert!(!io_kind(&reset).chars().any(|c| c.is_ascii_digit()));
        let cases = [
            (io::ErrorKind::BrokenPipe, "broken pipe"),
            (io::ErrorKind::ConnectionRefused, "connection refused"),
            (io::ErrorKind::ConnectionAborted, "connection aborted"),
            (io::ErrorKind::TimedOut, "timed out"),
            (io::ErrorKind::AddrInUse, "address in use"),
            (io::ErrorKind::NotFound, "not found"),
            (io::ErrorKind::PermissionDenied, "permission denied"),
            (io::ErrorKind::UnexpectedEof, "unexpected end of file"),
            (io::ErrorKind::WouldBlock, "would block"),
        ];
        for (kind, want) in cases {
            assert_eq!(io_kind(&io::Error::new(kind, "os text 42")), want);
        }
        for code in [1, 2, 13, 32, 98, 110, 111, 113, 5, 28] {
            let s = io_kind(&io::Error::from_raw_os_error(code));
            assert!(
                !s.is_empty() && !s.chars().any(|c| c.is_ascii_digit()),
                "{s}"
            );
            assert_eq!(s, s.to_lowercase());
        }
    }

    #[test]
    fn words_splits_camel_case() {
        assert_eq!(words("HostUnreachable"), "host unreachable");
        assert_eq!(words("Uncategorized"), "uncategorized");
    }

    #[test]
    fn levels() {
        for (name, want) in [
            ("debug", log::LevelFilter::Debug),
            ("INFO", log::LevelFilter::Info),
            ("warning", log::LevelFilter::Warn),
            ("panic", log::LevelFilter::Error),
            ("fatal", log::LevelFilter::Error),
        ] {
            assert_eq!(parse_level(name).unwrap(), want, "{name}");
        }
        let e = parse_level("verbose").unwrap_err();
        assert!(e.to_string().contains("'verbose'"), "{e}");
        // A bad level fails before anything is installed.
        assert!(matches!(
            init("x", "verbose", None, true),
            Err(LogInitError::UnknownLevel { level }) if level == "verbose"
        ));
    }

    #[test]
    fn an_unopenable_log_file_is_named_with_its_io_error() {
        let path = std::env::temp_dir().join("goworld-rs-no-such-dir/sub/game1.log");
        let e = init("game1", "info", Some(&path), false).unwrap_err();
        match &e {
            LogInitError::OpenFile { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            format!("cannot open log file {}: not found", path.display())
        );
        use std::error::Error as _;
        assert!(e.source().is_some());
    }

    #[test]
    fn record_format() {
        let mut out = Vec::new();
        write_record(
            &mut out,
            &"2026-11-26T12:00:00.123Z",
            "game1",
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("goworld_game::service")
                .args(format_args!("client {} left", 7))
                .build(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-26T12:00:00.123Z warn game1 goworld_game::service: client 7 left\n"
        );
    }

    #[test]
    fn init_writes_lines_to_the_file_and_only_once() {
        let dir = std::env::temp_dir().join(format!("goworld-rs-logging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gate7.log");
        let _ = std::fs::remove_file(&path);
        match init("gate7", "info", Some(&path), false) {
            Ok(()) => {}
            // Another test in this binary installed a logger first: nothing to check here.
            Err(LogInitError::OtherLogger) => return,
            Err(e) => panic!("{e}"),
        }
        install_panic_hook("gate7");
        log::info!(target: "logtest", "hello {}", 1);
        log::debug!(target: "logtest", "hidden at info");
        let _ = std::thread::Builder::new()
            .name("boom".into())
            .spawn(|| panic!("kaboom"))
            .unwrap()
            .join();
        let text = std::fs::read_to_string(&path).unwrap();
        // Other tests may panic meanwhile (they are logged too): pick this test's lines.
        let hello = text.lines().find(|l| l.contains(" logtest: ")).unwrap();
        let (ts, rest) = hello.split_once(' ').unwrap();
        assert_eq!(ts.len(), "2026-11-26T12:00:00.123Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
        assert_eq!(rest, "info gate7 logtest: hello 1");
        assert!(!text.contains("hidden at info"), "{text}");
        let boom = text.lines().find(|l| l.contains("thread 'boom'")).unwrap();
        assert!(boom.contains(" error gate7 panic: gate7 panicked in thread 'boom' at "));
        assert!(
            boom.contains("logging.rs:") && boom.ends_with(": kaboom"),
            "{boom}"
        );
        assert!(matches!(
            init("gate7", "info", None, false),
            Err(LogInitError::AlreadyInitialised)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
