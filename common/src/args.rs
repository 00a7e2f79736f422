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
/// `allow_restore`. Free arguments are errors. `-h`/`-help` return the usage text as the
/// error. Error strings name the flag or argument.
pub fn parse_process_args(
    argv: &[String],
    id_flag: &str,
    allow_restore: bool,
) -> Result<ProcessArgs, String> {
    let opts = process_options(id_flag, allow_restore);
    let m = parse_go_flags(&opts, argv)?;
    if m.opt_present("h") {
        return Err(usage("<program>", &opts));
    }
    if let Some(free) = m.free.first() {
        return Err(format!(
            "unexpected argument '{free}' (flags are -{id_flag} N, -configfile PATH, -log LEVEL{}, -d)",
            if allow_restore { ", -restore" } else { "" }
        ));
    }
    let last = |name: &str| m.opt_strs(name).pop();
    let id = match last(id_flag) {
        None => return Err(format!("missing required flag -{id_flag} N")),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(0) => return Err(format!("-{id_flag} 0: IDs start at 1")),
            Ok(id) => id,
            Err(_) => {
                return Err(format!(
                    "invalid value \"{v}\" for flag -{id_flag}: expected a number 1..=65535"
                ))
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
                .ok_or_else(|| {
                    format!("invalid value \"{l}\" for flag -log: use debug, info, warn or error")
                })?
                .to_string(),
        ),
    };
    let restore = m.opt_present("restore");
    if restore && !allow_restore {
        return Err("flag -restore is only for games".to_string());
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
/// `long_only` set. Errors are worded like Go's ("flag provided but not defined: -x").
/// (`-name=false` drops that occurrence; it does not cancel an earlier `-name`.)
pub fn parse_go_flags(
    opts: &getopts::Options,
    argv: &[String],
) -> Result<getopts::Matches, String> {
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
                    return Err(format!("flag -{name} does not take a value"));
                };
                let value = args[pos].split_once('=').map_or("", |(_, v)| v).to_string();
                match value.as_str() {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => {
                        args[pos] = format!("-{name}");
                    }
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => {
                        args.remove(pos);
                    }
                    _ => {
                        return Err(format!(
                            "invalid boolean value \"{value}\" for -{name}: parse error"
                        ))
                    }
                }
            }
            Err(getopts::Fail::UnrecognizedOption(name)) => {
                return Err(format!("flag provided but not defined: -{name}"))
            }
            Err(getopts::Fail::ArgumentMissing(name)) => {
                return Err(format!("flag needs an argument: -{name}"))
            }
            Err(getopts::Fail::OptionDuplicated(name)) => {
                return Err(format!("flag -{name} given more than once"))
            }
            Err(getopts::Fail::OptionMissing(name)) => {
                return Err(format!("missing required flag -{name}"))
            }
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

    fn game(s: &str) -> Result<ProcessArgs, String> {
        parse_process_args(&argv(s), "gid", true)
    }

    fn gate(s: &str) -> Result<ProcessArgs, String> {
        parse_process_args(&argv(s), "gid", false)
    }

    fn err_contains(r: Result<ProcessArgs, String>, want: &str) {
        let e = r.unwrap_err();
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
        assert_eq!(e, "flag provided but not defined: -x");
        let e = parse_go_flags(&opts, &argv("-strict -strict")).unwrap_err();
        assert!(e.contains("-strict"), "{e}");
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
