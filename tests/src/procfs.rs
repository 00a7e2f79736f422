//! What the benchmarks read from `/proc` and their command lines, in one place.

use std::process::Command;

/// `-name value` from the command line, or `default`.
pub fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a.trim_start_matches('-') == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("-{name} takes a number, got {v}"))
        })
        .unwrap_or(default)
}

/// Clock ticks per second for /proc times (`getconf CLK_TCK`, 100 on Linux in practice).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of process `pid` ("self" or a number), in clock ticks; `None` once the
/// process is gone.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' start at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::cpu_ticks("self").is_some());
        assert!(super::clk_tck() > 0.0);
        assert_eq!(super::flag("no-such-flag", 7), 7);
    }
}
