//! Command-line flags in Go's spellings (`-gid 1`, `-configfile=x.ini`, `-restore`), parsed
//! with getopts in long-only mode, shared by every binary.
//!
//! Every spelling Go's `flag` package takes works: `-gid 1`, `-gid=1`, `--gid 1`,
//! `--gid=1`, `-restore`, `-restore=true`, `-restore=0`, `-N 500`, `-N=500`. A flag given
//! twice keeps its last value, as in Go. Single-letter flags (`-N`, `-d`) are declared as
//! getopts short names, longer ones (`-gid`, `-strict`) as long names.

use std::path::PathBuf;

/// The flags of a dispatcher, game or gate process (reference §1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessArgs {
    /// `-dispid N` or `-gid N`: this process's ID, 1..=65535.
    pub id: u16,
    /// `-configfile PATH` (default `goworld.ini`, relative to the working directory).
    pub configfile: PathBuf,
    /// `-log LEVEL`: overrides the config's `log_level`; normalized to debug, info, warn or
    /// error (warning → warn, panic/fatal → error).
    pub log_level: Option<String>,
    /// `-restore` (games only): restore from the freeze file instead of booting fresh.
    pub restore: bool,
    /// `-d`: daemon mode. Accepted; the binary reports that goworld-rs does not daemonize.
    pub daemon: bool,
}

/// Why command-line flags were refused. Displayed in Go's wording where Go has one
/// (`flag provided but not defined: -x`); the binaries print it and exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// A flag that is not declared.
    UnknownFlag { flag: String },
    /// A flag that takes a value, given none.
    MissingValue { flag: String },
    /// `-flag=value` on a flag that takes no value (and `value` is no Go boolean either).
    UnexpectedValue { flag: String },
    /// `-flag=value` on a boolean flag, with a value that is not a Go boolean.
    BadBool { flag: String, value: String },
    /// A flag declared to be given at most once, given again.
    Duplicated { flag: String },
    /// A flag declared as required, not given.
    MissingFlag { flag: String },
    /// A server process's ID flag (`-dispid`, `-gid`) not given.
    MissingId { flag: String },
    /// The ID flag given as 0 (IDs start at 1).
    ZeroId { flag: String },
    /// The ID flag given something that is not a number 1..=65535.
    BadId { flag: String, value: String },
    /// `-log` given a level that is not debug, info, warn(ing), error, panic or fatal.
    BadLogLevel { value: String },
    /// `-restore` given to a process that is not a game.
    RestoreNotAllowed,
    /// A free argument; server processes take none. `id_flag` and `allow_restore` say which
    /// flags the process does take, for the message.
    UnexpectedArgument {
        arg: String,
        id_flag: String,
        allow_restore: bool,
    },
    /// `-h` or `-help`: not an error as such; `usage` is the text to print.
    Help { usage: String },
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsError::UnknownFlag { flag } => {
                write!(f, "flag provided but not defined: -{flag}")
            }
            ArgsError::MissingValue { flag } => write!(f, "flag needs an argument: -{flag}"),
            ArgsError::UnexpectedValue { flag } => {
                write!(f, "flag -{flag} does not take a value")
            }
            ArgsError::BadBool { flag, value } => {
                write!(
                    f,
                    "invalid boolean value \"{value}\" for -{flag}: parse error"
                )
            }
            ArgsError::Duplicated { flag } => write!(f, "flag -{flag} given more than once"),
            ArgsError::MissingFlag { flag } => write!(f, "missing required flag -{flag}"),
            ArgsError::MissingId { flag } => write!(f, "missing required flag -{flag} N"),
            ArgsError::ZeroId { flag } => write!(f, "-{flag} 0: IDs start at 1"),
            ArgsError::BadId { flag, value } => write!(
                f,
                "invalid value \"{value}\" for flag -{flag}: expected a number 1..=65535"
            ),
            ArgsError::BadLogLevel { value } => write!(
                f,
                "invalid value \"{value}\" for flag -log: use debug, info, warn or error"
            ),
            ArgsError::RestoreNotAllowed => f.write_str("flag -restore is only for games"),
            ArgsError::UnexpectedArgument {
                arg,
                id_flag,
                allow_restore,
            } => write!(
                f,
                "unexpected argument '{arg}' (flags are -{id_flag} N, -configfile PATH, \
                 -log LEVEL{}, -d)",
                if *allow_restore { ", -restore" } else { "" }
            ),
            ArgsError::Help { usage } => f.write_str(usage),
        }
    }
}

impl std::error::Error for ArgsError {}

/// The options of a server process: `-<id_flag>`, `-configfile`, `-log`, `-d`, `-h`, and
/// `-restore` when `allow_restore` (it is always declared, so that a process that does not
/// take it can say so). For [`usage`].
pub fn process_options(id_flag: &str, allow_restore: bool) -> getopts::Options {
    let mut opts = getopts::Options::new();
    opts.long_only(true);
    let id_desc = match id_flag {
        "dispid" => "set dispatcher ID (1..desired_dispatchers)",
        _ => "set the process ID (1..65535)",
    };
    opts.optmulti("", id_flag, id_desc, "N");
    opts.optmulti(
        "",
        "configfile",
        "set config file path (default goworld.ini)",
        "PATH",
    );
    opts.optmulti(
        "",
        "log",
        "set log level, will override log level in config",
        "LEVEL",
    );
    let restore_desc = if allow_restore {
        "restore from freezed state"
    } else {
        "(games only)"
    };
    opts.optflagmulti("", "restore", restore_desc);
    opts.optflagmulti("d", "", "run in daemon mode (not supported by goworld-rs)");
    opts.optflagmulti("h", "help", "print this help");
    opts
}

/// Parses a server process's flags (`argv` without the program name). `id_flag` is
/// `"dispid"` or `"gid"`; it is required and must be 1..=65535. `-restore` is an error unless
/// `allow_restore`. Free arguments are errors. `-h`/`-help` return [`ArgsError::Help`] with
/// the usage text. Errors name the flag or argument.
pub fn parse_process_args(
    argv: &[String],
    id_flag: &str,
    allow_restore: bool,
) -> Result<ProcessArgs, ArgsError> {
    let opts = process_options(id_flag, allow_restore);
    let m = parse_go_flags(&opts, argv)?;
    if m.opt_present("h") {
        return Err(ArgsError::Help {
            usage: usage("<program>", &opts),
        });
    }
    if let Some(free) = m.free.first() {
        return Err(ArgsError::UnexpectedArgument {
            arg: free.clone(),
            id_flag: id_flag.to_string(),
            allow_restore,
        });
    }
    let last = |name: &str| m.opt_strs(name).pop();
    let flag = || id_flag.to_string();
    let id = match last(id_flag) {
        None => return Err(ArgsError::MissingId { flag: flag() }),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(0) => return Err(ArgsError::ZeroId { flag: flag() }),
            Ok(id) => id,
            Err(_) => {
                return Err(ArgsError::BadId {
                    flag: flag(),
                    value: v,
                })
            }
        },
    };
    let configfile = match last("configfile") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("goworld.ini"),
    };
    let log_level = match last("log") {
        None => None,
        Some(l) if l.is_empty() => None,
        Some(l) => Some(
            crate::config::normalize_level(&l)
                .ok_or_else(|| ArgsError::BadLogLevel { value: l.clone() })?
                .to_string(),
        ),
    };
    let restore = m.opt_present("restore");
    if restore && !allow_restore {
        return Err(ArgsError::RestoreNotAllowed);
    }
    Ok(ProcessArgs {
        id,
        configfile,
        log_level,
        restore,
        daemon: m.opt_present("d"),
    })
}

/// Parses `argv` (without the program name) against `opts` the way Go's `flag` package
/// would: long-only mode (`-name`, `--name`, `-name=value`, `-name value`), and boolean
/// flags also as `-name=true` / `-name=0` (any Go boolean form). `opts` need not have
/// `long_only` set. Errors display like Go's ("flag provided but not defined: -x").
/// (`-name=false` drops that occurrence; it does not cancel an earlier `-name`.)
pub fn parse_go_flags(
    opts: &getopts::Options,
    argv: &[String],
) -> Result<getopts::Matches, ArgsError> {
    let mut opts = opts.clone();
    opts.long_only(true);
    let mut args: Vec<String> = argv.to_vec();
    loop {
        match opts.parse(&args) {
            Ok(m) => return Ok(m),
            Err(getopts::Fail::UnexpectedArgument(name)) => {
                // `-flag=value` on a boolean flag: rewrite as Go would read it, then retry.
                let pos = args
                    .iter()
                    .take_while(|a| a.as_str() != "--")
                    .position(|a| flag_name(a) == Some(name.as_str()) && a.contains('='));
                let Some(pos) = pos else {
                    return Err(ArgsError::UnexpectedValue { flag: name });
                };
                let value = args[pos].split_once('=').map_or("", |(_, v)| v).to_string();
                match value.as_str() {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => {
                        args[pos] = format!("-{name}");
                    }
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => {
                        args.remove(pos);
                    }
                    _ => return Err(ArgsError::BadBool { flag: name, value }),
                }
            }
            Err(getopts::Fail::UnrecognizedOption(flag)) => {
                return Err(ArgsError::UnknownFlag { flag })
            }
            Err(getopts::Fail::ArgumentMissing(flag)) => {
                return Err(ArgsError::MissingValue { flag })
            }
            Err(getopts::Fail::OptionDuplicated(flag)) => {
                return Err(ArgsError::Duplicated { flag })
            }
            Err(getopts::Fail::OptionMissing(flag)) => return Err(ArgsError::MissingFlag { flag }),
        }
    }
}

/// The flag name in `-name`, `--name` or `-name=value`.
fn flag_name(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    Some(body.split_once('=').map_or(body, |(n, _)| n))
}

/// Go-style usage text: `Usage of <program>:` and one line per flag, spelled `-name`.
pub fn usage(program: &str, opts: &getopts::Options) -> String {
    let mut opts = opts.clone();
    opts.long_only(true);
    opts.usage(&format!("Usage of {program}:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn game(s: &str) -> Result<ProcessArgs, ArgsError> {
        parse_process_args(&argv(s), "gid", true)
    }

    fn gate(s: &str) -> Result<ProcessArgs, ArgsError> {
        parse_process_args(&argv(s), "gid", false)
    }

    fn err_contains(r: Result<ProcessArgs, ArgsError>, want: &str) {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} does not contain {want:?}");
    }

    #[test]
    fn id_spellings() {
        for s in ["-gid 3", "-gid=3", "--gid 3", "--gid=3", "-gid 1 -gid 3"] {
            assert_eq!(game(s).unwrap().id, 3, "{s}");
        }
        let d = parse_process_args(&argv("-dispid 2"), "dispid", false).unwrap();
        assert_eq!(
            d,
            ProcessArgs {
                id: 2,
                configfile: PathBuf::from("goworld.ini"),
                log_level: None,
                restore: false,
                daemon: false,
            }
        );
    }

    #[test]
    fn every_flag() {
        let a = game("-gid 1 -configfile conf/x.ini -log warning -restore -d").unwrap();
        assert_eq!(
            a,
            ProcessArgs {
                id: 1,
                configfile: PathBuf::from("conf/x.ini"),
                log_level: Some("warn".into()),
                restore: true,
                daemon: true,
            }
        );
        let a = game("-configfile=/etc/gw.ini -gid=9 -log=DEBUG --restore").unwrap();
        assert_eq!(a.configfile, PathBuf::from("/etc/gw.ini"));
        assert_eq!(a.log_level.as_deref(), Some("debug"));
        assert!(a.restore && !a.daemon);
        assert_eq!(
            game("-gid 1 -log fatal").unwrap().log_level.as_deref(),
            Some("error")
        );
        assert_eq!(
            game("-gid 1 -configfile=").unwrap().configfile,
            PathBuf::from("goworld.ini")
        );
    }

    #[test]
    fn go_boolean_values() {
        assert!(game("-gid 1 -restore=true").unwrap().restore);
        assert!(game("-gid 1 -restore=1").unwrap().restore);
        assert!(!game("-gid 1 -restore=false").unwrap().restore);
        assert!(game("-gid 1 -d=T").unwrap().daemon);
        assert!(!game("-gid 1 -d=0").unwrap().daemon);
        err_contains(
            game("-gid 1 -restore=yes"),
            "invalid boolean value \"yes\" for -restore",
        );
    }

    #[test]
    fn errors_name_the_flag() {
        err_contains(game(""), "missing required flag -gid");
        err_contains(game("-configfile x.ini"), "-gid");
        err_contains(game("-gid 0"), "-gid 0");
        err_contains(game("-gid abc"), "invalid value \"abc\" for flag -gid");
        err_contains(game("-gid 70000"), "-gid");
        err_contains(game("-gid"), "flag needs an argument: -gid");
        err_contains(game("-gid 1 extra"), "unexpected argument 'extra'");
        err_contains(game("-gid 1 -sid 2"), "flag provided but not defined: -sid");
        err_contains(
            game("-gid 1 -log verbose"),
            "invalid value \"verbose\" for flag -log",
        );
        err_contains(gate("-gid 1 -restore"), "-restore");
        err_contains(
            parse_process_args(&argv("-log info"), "dispid", false),
            "missing required flag -dispid",
        );
        err_contains(game("-h"), "Usage of");
    }

    #[test]
    fn generic_flags_for_a_bot() {
        let mut opts = getopts::Options::new();
        opts.optopt("N", "", "number of clients", "N");
        opts.optflag("", "strict", "strict mode");
        opts.optopt("", "duration", "seconds", "S");
        opts.optopt("", "configfile", "config", "PATH");
        for s in [
            "-N 500 -strict -duration 60",
            "-N=500 -strict=true -duration=60",
            "--N 500 --strict --duration 60",
        ] {
            let m = parse_go_flags(&opts, &argv(s)).unwrap();
            assert_eq!(m.opt_str("N").as_deref(), Some("500"), "{s}");
            assert!(m.opt_present("strict"), "{s}");
            assert_eq!(m.opt_str("duration").as_deref(), Some("60"), "{s}");
        }
        let m = parse_go_flags(&opts, &argv("-strict=false -N 2")).unwrap();
        assert!(!m.opt_present("strict"));
        let m = parse_go_flags(&opts, &argv("-configfile=a=b.ini")).unwrap();
        assert_eq!(m.opt_str("configfile").as_deref(), Some("a=b.ini"));
        let e = parse_go_flags(&opts, &argv("-x=v")).unwrap_err();
        assert_eq!(e, ArgsError::UnknownFlag { flag: "x".into() });
        assert_eq!(e.to_string(), "flag provided but not defined: -x");
        let e = parse_go_flags(&opts, &argv("-strict -strict")).unwrap_err();
        assert_eq!(
            e,
            ArgsError::Duplicated {
                flag: "strict".into()
            }
        );
        assert!(e.to_string().contains("-strict"), "{e}");
    }

    #[test]
    fn errors_are_typed() {
        let flag = |f: &str| f.to_string();
        assert_eq!(game(""), Err(ArgsError::MissingId { flag: flag("gid") }));
        assert_eq!(game("-gid 0"), Err(ArgsError::ZeroId { flag: flag("gid") }));
        assert_eq!(
            game("-gid 70000"),
            Err(ArgsError::BadId {
                flag: flag("gid"),
                value: "70000".into()
            })
        );
        assert_eq!(
            game("-gid"),
            Err(ArgsError::MissingValue { flag: flag("gid") })
        );
        assert_eq!(
            game("-gid 1 -sid 2"),
            Err(ArgsError::UnknownFlag { flag: flag("sid") })
        );
        assert_eq!(
            game("-gid 1 -log verbose"),
            Err(ArgsError::BadLogLevel {
                value: "verbose".into()
            })
        );
        assert_eq!(
            game("-gid 1 -restore=yes"),
            Err(ArgsError::BadBool {
                flag: flag("restore"),
                value: "yes".into()
            })
        );
        assert_eq!(gate("-gid 1 -restore"), Err(ArgsError::RestoreNotAllowed));
        assert_eq!(
            gate("-gid 1 extra"),
            Err(ArgsError::UnexpectedArgument {
                arg: "extra".into(),
                id_flag: flag("gid"),
                allow_restore: false,
            })
        );
        assert!(
            matches!(game("-help"), Err(ArgsError::Help { usage }) if usage.contains("-gid N"))
        );
        // parse_go_flags alone: a boolean flag given a value that is no Go boolean, a
        // required flag left out, a single-value flag given twice.
        let mut opts = getopts::Options::new();
        opts.optflag("", "quiet", "");
        opts.reqopt("", "name", "", "NAME");
        assert_eq!(
            parse_go_flags(&opts, &argv("-name a -quiet=loud")).unwrap_err(),
            ArgsError::BadBool {
                flag: flag("quiet"),
                value: "loud".into()
            }
        );
        assert_eq!(
            parse_go_flags(&opts, &argv("-quiet")).unwrap_err(),
            ArgsError::MissingFlag { flag: flag("name") }
        );
        assert_eq!(
            parse_go_flags(&opts, &argv("-name a -name b")).unwrap_err(),
            ArgsError::Duplicated { flag: flag("name") }
        );
    }

    #[test]
    fn usage_uses_single_dashes() {
        let u = usage("gate", &process_options("gid", false));
        assert!(u.starts_with("Usage of gate:"), "{u}");
        assert!(
            u.contains("-gid N") && u.contains("-configfile PATH"),
            "{u}"
        );
        assert!(!u.contains("--gid"), "{u}");
    }
}
