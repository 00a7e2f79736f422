//! Per-thing latency profile, like GoWorld's `profile.go`: completions are recorded with the
//! time from the request to the reply that completed them, and once per second the window is
//! printed as `> <Thing> *<count> AVG <avg> RANGE <min> ~ <max>` followed by a rule, then
//! started afresh. Totals since the start are kept for the final summary.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
struct Stat {
    count: u64,
    total: Duration,
    min: Duration,
    max: Duration,
}

/// The current one-second window and the totals.
#[derive(Debug, Default)]
pub struct Profile {
    window: BTreeMap<&'static str, Stat>,
    totals: BTreeMap<&'static str, u64>,
}

impl Profile {
    /// A profile whose totals list `things` from the start (with 0 until they complete).
    pub fn with_things(things: impl IntoIterator<Item = &'static str>) -> Profile {
        Profile {
            window: BTreeMap::new(),
            totals: things.into_iter().map(|t| (t, 0)).collect(),
        }
    }

    /// Records one completion of `thing` that took `d`.
    pub fn record(&mut self, thing: &'static str, d: Duration) {
        let s = self.window.entry(thing).or_insert(Stat {
            count: 0,
            total: Duration::ZERO,
            min: d,
            max: d,
        });
        s.count += 1;
        s.total += d;
        s.min = s.min.min(d);
        s.max = s.max.max(d);
        *self.totals.entry(thing).or_default() += 1;
    }

    /// The window's report (empty if nothing completed in it), and a fresh window.
    pub fn take_report(&mut self) -> String {
        let mut out = String::new();
        if self.window.is_empty() {
            return out;
        }
        for (thing, s) in std::mem::take(&mut self.window) {
            let avg = s.total / s.count.max(1) as u32;
            let _ = writeln!(
                out,
                "> {thing:<32} *{} AVG {} RANGE {} ~ {}",
                s.count,
                go_duration(avg),
                go_duration(s.min),
                go_duration(s.max)
            );
        }
        out.push_str(&"=".repeat(79));
        out.push('\n');
        out
    }

    /// Completions per thing since the start (every thing of [`Profile::with_things`], and any
    /// other recorded), `Thing *n` joined by commas, by name.
    pub fn totals(&self) -> String {
        let v: Vec<String> = self
            .totals
            .iter()
            .map(|(t, n)| format!("{t} *{n}"))
            .collect();
        v.join(", ")
    }
}

/// A duration the way Go's `time.Duration.String` prints one below a minute: `0s`, `850ns`,
/// `12.5µs`, `3.0452ms`, `1.5s` (trailing zeros of the fraction dropped).
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let (unit, div, digits) = match ns {
        0 => return "0s".into(),
        n if n < 1_000 => return format!("{n}ns"),
        n if n < 1_000_000 => ("µs", 1_000u128, 3),
        n if n < 1_000_000_000 => ("ms", 1_000_000, 6),
        _ => ("s", 1_000_000_000, 9),
    };
    let frac = format!("{:0digits$}", ns % div);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}{unit}", ns / div)
    } else {
        format!("{}.{frac}{unit}", ns / div)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(go_duration(Duration::from_nanos(12_500)), "12.5µs");
        assert_eq!(go_duration(Duration::from_nanos(3_045_200)), "3.0452ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn window_report_and_totals() {
        let mut p = Profile::default();
        assert_eq!(p.take_report(), "");
        p.record("DoTestListField", Duration::from_millis(2));
        p.record("DoTestListField", Duration::from_millis(4));
        p.record("DoTestComplexAttr", Duration::from_millis(10));
        let r = p.take_report();
        assert!(r.contains(&format!(
            "> {:<32} *2 AVG 3ms RANGE 2ms ~ 4ms\n",
            "DoTestListField"
        )));
        assert!(r.contains("*1 AVG 10ms RANGE 10ms ~ 10ms"));
        assert!(r.ends_with(&format!("{}\n", "=".repeat(79))));
        assert_eq!(p.take_report(), "");
        p.record("DoTestListField", Duration::from_millis(1));
        assert_eq!(p.totals(), "DoTestComplexAttr *1, DoTestListField *3");

        // Things that never completed are listed with 0; the window report leaves them out.
        let mut p = Profile::with_things(["DoTestAOI", "DoTestCallAll"]);
        assert_eq!(p.totals(), "DoTestAOI *0, DoTestCallAll *0");
        p.record("DoTestCallAll", Duration::from_millis(1));
        assert!(!p.take_report().contains("DoTestAOI"));
        assert_eq!(p.totals(), "DoTestAOI *0, DoTestCallAll *1");
    }
}
