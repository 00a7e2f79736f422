//! GoWorld's crontab (`engine/crontab`, reference §3.6) as pure logic.
//!
//! GoWorld's `goworld.RegisterCrontab(minute, hour, day, month, dayofweek, cb)` runs `cb` on
//! every minute whose local wall-clock time matches all five fields:
//!
//! * a non-negative field must match exactly;
//! * a negative field `-n` matches when `value % n == 0`, so `-1` matches anything
//!   (`day = -2` means even days, `month = -3` means March, June, September, December);
//! * `dayofweek` is `0` or `7` for Sunday, `1..=6` for Monday..Saturday, and `-1` for any.
//!   GoWorld accepts no other negative day-of-week (its `validateTime` rejects `< -1`), and so
//!   does [`CronSpec::new`];
//! * valid ranges: minute `-60..=59`, hour `-24..=23`, day `-31..=31` except `0`,
//!   month `-12..=12` except `0`, dayofweek `-1..=7`.
//!
//! The entries are checked once per minute, at second [`CRONTAB_TIME_OFFSET_SECS`] (GoWorld's
//! `_CRONTAB_TIME_OFFSET`). Unregistering is deferred: the entry is dropped at the start of the
//! next check, so an entry unregistered between checks never fires again, and one unregistered
//! by a callback during a check does not disturb the rest of that check.
//!
//! This module reads no clock and holds no global state. The caller (the game's timer queue)
//! asks [`next_check`] when to wake up, converts that instant with [`local_time`], and runs the
//! payloads that [`Crontab::due`] returns. Unlike GoWorld, whose entries live in a Go map and
//! therefore fire in random order, due entries are returned in registration order.

use std::collections::BTreeMap;

/// Seconds past each minute at which the crontab is checked (GoWorld's
/// `_CRONTAB_TIME_OFFSET = 2 * time.Second`).
pub const CRONTAB_TIME_OFFSET_SECS: i64 = 2;

/// The broken-down local time that crontab fields are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalTime {
    /// Minute of the hour, `0..=59`.
    pub minute: u8,
    /// Hour of the day, `0..=23`.
    pub hour: u8,
    /// Day of the month, `1..=31`.
    pub day: u8,
    /// Month of the year, `1..=12` (January is 1, as Go's `time.Month`).
    pub month: u8,
    /// Day of the week, `0..=6` with `0` = Sunday (as Go's `time.Weekday`).
    pub weekday: u8,
}

/// Converts a unix timestamp (seconds) to the process's **local** time, as GoWorld's
/// `time.Now()` fields are local.
///
/// It uses libc's `localtime_r`, so the zone comes from `TZ` / `/etc/localtime` like Go's
/// `time.Local`. This is not a clock read: the instant is the argument. UTC is deliberately
/// not used, since a crontab written as `hour = 4` means 04:00 on the server's wall clock.
///
/// Only if `localtime_r` cannot represent the instant (a year outside C's `int`, or a
/// `time_t` narrower than 64 bits) does it fall back to UTC.
pub fn local_time(unix_secs: i64) -> LocalTime {
    match local_tm(unix_secs) {
        Some(tm) => LocalTime {
            minute: tm.tm_min as u8,
            hour: tm.tm_hour as u8,
            day: tm.tm_mday as u8,
            month: (tm.tm_mon + 1) as u8,
            weekday: tm.tm_wday as u8,
        },
        None => utc_time(unix_secs),
    }
}

/// `localtime_r(unix_secs)`, or `None` if libc cannot represent it.
fn local_tm(unix_secs: i64) -> Option<libc::tm> {
    let t = libc::time_t::try_from(unix_secs).ok()?;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value (any pointer
    // fields, such as glibc's `tm_zone`, become null), and `localtime_r` only reads `t` and
    // writes `tm`, both valid for the duration of the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let res = unsafe { libc::localtime_r(&t, &mut tm) };
    if res.is_null() {
        None
    } else {
        Some(tm)
    }
}

/// Pure UTC conversion (Howard Hinnant's `civil_from_days`); the fallback of [`local_time`].
fn utc_time(unix_secs: i64) -> LocalTime {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    LocalTime {
        minute: (secs / 60 % 60) as u8,
        hour: (secs / 3600) as u8,
        day: day as u8,
        month: month as u8,
        weekday: weekday as u8,
    }
}

/// The unix second of the next crontab check strictly after `unix_secs`: the next time whose
/// seconds-past-the-minute equal [`CRONTAB_TIME_OFFSET_SECS`].
///
/// As GoWorld's `Initialize`: at `hh:mm:00` or `hh:mm:01` the next check is `hh:mm:02` of the
/// same minute; from `hh:mm:02` on it is `hh:(mm+1):02`. Pass the current time rounded down
/// to whole seconds; calling it again with the returned instant yields the check one minute
/// later, so the caller arms one timer per minute without drift. Minute boundaries are those
/// of unix time, which coincide with local ones in every zone whose UTC offset is a whole
/// number of minutes.
pub fn next_check(unix_secs: i64) -> i64 {
    let minute_start = unix_secs - unix_secs.rem_euclid(60);
    let this_minute = minute_start.saturating_add(CRONTAB_TIME_OFFSET_SECS);
    if this_minute > unix_secs {
        this_minute
    } else {
        this_minute.saturating_add(60)
    }
}

/// The time condition of one crontab entry: `minute`, `hour`, `day`, `month`, `dayofweek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CronSpec {
    minute: i32,
    hour: i32,
    day: i32,
    month: i32,
    dayofweek: i32,
}

/// A crontab field out of its range: `invalid minute = 60 (valid: ...)`, as GoWorld's panic
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    /// The field: minute, hour, day, month or dayofweek.
    pub field: &'static str,
    /// The value given.
    pub value: i32,
    /// What the field accepts.
    pub valid: &'static str,
}

impl std::fmt::Display for CronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let CronError {
            field,
            value,
            valid,
        } = self;
        write!(f, "invalid {field} = {value} (valid: {valid})")
    }
}

impl std::error::Error for CronError {}

impl CronSpec {
    /// Validates and builds a spec (the arguments of GoWorld's `RegisterCrontab`).
    ///
    /// Each field is an exact value, or `-n` for "every value divisible by `n`" (`-1` = any).
    /// Ranges: minute `-60..=59`, hour `-24..=23`, day `-31..=31` but not `0`, month
    /// `-12..=12` but not `0`, dayofweek `-1..=7` (`0` and `7` are Sunday, `-1` is any).
    /// The error names the first invalid field and its value, as GoWorld's panic
    /// `invalid minute = 60` does.
    pub fn new(
        minute: i32,
        hour: i32,
        day: i32,
        month: i32,
        dayofweek: i32,
    ) -> Result<CronSpec, CronError> {
        fn check(
            field: &'static str,
            value: i32,
            ok: bool,
            valid: &'static str,
        ) -> Result<(), CronError> {
            if ok {
                Ok(())
            } else {
                Err(CronError {
                    field,
                    value,
                    valid,
                })
            }
        }
        check(
            "minute",
            minute,
            (-60..=59).contains(&minute),
            "-60..=59; -n = every n minutes",
        )?;
        check(
            "hour",
            hour,
            (-24..=23).contains(&hour),
            "-24..=23; -n = every n hours",
        )?;
        check(
            "day",
            day,
            (-31..=31).contains(&day) && day != 0,
            "1..=31, or -31..=-1 = every n days",
        )?;
        check(
            "month",
            month,
            (-12..=12).contains(&month) && month != 0,
            "1..=12, or -12..=-1 = every n months",
        )?;
        check(
            "dayofweek",
            dayofweek,
            (-1..=7).contains(&dayofweek),
            "0 or 7 = Sunday, 1..=6 = Monday..Saturday, -1 = any",
        )?;
        Ok(CronSpec {
            minute,
            hour,
            day,
            month,
            dayofweek,
        })
    }

    /// The spec matching every minute: `(-1, -1, -1, -1, -1)`.
    pub fn every_minute() -> CronSpec {
        CronSpec {
            minute: -1,
            hour: -1,
            day: -1,
            month: -1,
            dayofweek: -1,
        }
    }

    /// The five fields, in `new`'s order: `(minute, hour, day, month, dayofweek)`.
    pub fn fields(&self) -> (i32, i32, i32, i32, i32) {
        (self.minute, self.hour, self.day, self.month, self.dayofweek)
    }

    /// Whether the local time `t` satisfies every field (GoWorld's `entry.match`).
    ///
    /// `t.weekday` is taken modulo 7, so a hand-made `LocalTime` with weekday 7 is Sunday too.
    pub fn matches(&self, t: &LocalTime) -> bool {
        fn field(spec: i32, value: u8) -> bool {
            let value = i32::from(value);
            if spec >= 0 {
                spec == value
            } else {
                value % -spec == 0
            }
        }
        if !(field(self.minute, t.minute)
            && field(self.hour, t.hour)
            && field(self.day, t.day)
            && field(self.month, t.month))
        {
            return false;
        }
        // A negative dayofweek (only -1 passes validation) matches any day.
        self.dayofweek < 0 || self.dayofweek % 7 == i32::from(t.weekday % 7)
    }
}

/// The handle of a registered entry (GoWorld's `crontab.Handle`); ids count up from 1 and are
/// never reused within one [`Crontab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CronId(pub u64);

/// A set of crontab entries, each a [`CronSpec`] with a payload `T` (typically the callback or
/// what identifies it).
#[derive(Debug)]
pub struct Crontab<T> {
    entries: BTreeMap<CronId, (CronSpec, T)>,
    cancelled: Vec<CronId>,
    next_id: u64,
}

impl<T> Default for Crontab<T> {
    fn default() -> Self {
        Crontab::new()
    }
}

impl<T> Crontab<T> {
    /// An empty crontab.
    pub fn new() -> Crontab<T> {
        Crontab {
            entries: BTreeMap::new(),
            cancelled: Vec::new(),
            next_id: 1,
        }
    }

    /// Adds an entry; it takes part in every check from the next one on.
    pub fn register(&mut self, spec: CronSpec, payload: T) -> CronId {
        let id = CronId(self.next_id);
        self.next_id += 1;
        self.entries.insert(id, (spec, payload));
        id
    }

    /// Schedules the removal of `id` (GoWorld's `Handle.Unregister`). The entry stays (so
    /// [`Crontab::get`] and [`Crontab::len`] still see it) until the start of the next check,
    /// where it is dropped before matching, so it never fires again.
    ///
    /// Returns whether `id` was registered and not already scheduled for removal.
    pub fn unregister(&mut self, id: CronId) -> bool {
        if self.entries.contains_key(&id) && !self.cancelled.contains(&id) {
            self.cancelled.push(id);
            true
        } else {
            false
        }
    }

    /// Drops the entries whose removal was scheduled by [`Crontab::unregister`].
    fn purge_cancelled(&mut self) {
        for id in self.cancelled.drain(..) {
            self.entries.remove(&id);
        }
    }

    /// Performs one check at local time `t`: drops the entries unregistered since the last
    /// check, then returns the ids and payloads of the entries matching `t`, in registration
    /// order. The caller runs them (each panic-less, as GoWorld's `RunPanicless`).
    pub fn due(&mut self, t: &LocalTime) -> Vec<(CronId, &T)> {
        self.purge_cancelled();
        self.entries
            .iter()
            .filter(|(_, (spec, _))| spec.matches(t))
            .map(|(id, (_, payload))| (*id, payload))
            .collect()
    }

    /// As [`Crontab::due`], but returns only the ids, leaving `self` free to borrow mutably
    /// while they run (the payloads are at [`Crontab::get`]).
    pub fn due_ids(&mut self, t: &LocalTime) -> Vec<CronId> {
        self.due(t).into_iter().map(|(id, _)| id).collect()
    }

    /// The payload of `id`, if it is still held (including when its removal is pending).
    pub fn get(&self, id: CronId) -> Option<&T> {
        self.entries.get(&id).map(|(_, payload)| payload)
    }

    /// The spec of `id`, if it is still held (including when its removal is pending).
    pub fn spec(&self, id: CronId) -> Option<&CronSpec> {
        self.entries.get(&id).map(|(spec, _)| spec)
    }

    /// The number of entries held, including those whose removal is pending.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `LocalTime` from (minute, hour, day, month, weekday).
    fn lt(minute: u8, hour: u8, day: u8, month: u8, weekday: u8) -> LocalTime {
        LocalTime {
            minute,
            hour,
            day,
            month,
            weekday,
        }
    }

    fn spec(m: i32, h: i32, d: i32, mo: i32, w: i32) -> CronSpec {
        CronSpec::new(m, h, d, mo, w).unwrap()
    }

    #[test]
    fn crontab_matching_table() {
        // 2023-11-14 (Tuesday) 22:13.
        let t = lt(13, 22, 14, 11, 2);
        type Fields = (i32, i32, i32, i32, i32);
        let cases: &[(Fields, bool)] = &[
            ((-1, -1, -1, -1, -1), true),
            // exact values
            ((13, 22, 14, 11, 2), true),
            ((12, -1, -1, -1, -1), false),
            ((-1, 21, -1, -1, -1), false),
            ((-1, -1, 15, -1, -1), false),
            ((-1, -1, -1, 10, -1), false),
            ((-1, -1, -1, -1, 3), false),
            ((0, -1, -1, -1, -1), false),
            // -n: value % n == 0
            ((-13, -1, -1, -1, -1), true),
            ((-2, -1, -1, -1, -1), false),
            ((-60, -1, -1, -1, -1), false),
            ((-1, -11, -1, -1, -1), true),
            ((-1, -2, -1, -1, -1), true),
            ((-1, -3, -1, -1, -1), false),
            ((-1, -24, -1, -1, -1), false),
            ((-1, -1, -7, -1, -1), true),
            ((-1, -1, -2, -1, -1), true),
            ((-1, -1, -3, -1, -1), false),
            ((-1, -1, -1, -11, -1), true),
            ((-1, -1, -1, -2, -1), false),
            // Tuesday is only 2; Sunday is 0 and 7
            ((-1, -1, -1, -1, 0), false),
            ((-1, -1, -1, -1, 7), false),
            ((13, 22, -1, -1, 1), false),
        ];
        for &((m, h, d, mo, w), want) in cases {
            assert_eq!(
                spec(m, h, d, mo, w).matches(&t),
                want,
                "spec ({m}, {h}, {d}, {mo}, {w}) at {t:?}"
            );
        }
    }

    #[test]
    fn crontab_minute_and_hour_zero_forms() {
        // -60 and -24 only match 0, like 0 itself.
        for m in 0..60u8 {
            let t = lt(m, 0, 1, 1, 0);
            assert_eq!(spec(-60, -1, -1, -1, -1).matches(&t), m == 0);
            assert_eq!(spec(0, -1, -1, -1, -1).matches(&t), m == 0);
            assert_eq!(spec(-15, -1, -1, -1, -1).matches(&t), m % 15 == 0);
        }
        for h in 0..24u8 {
            let t = lt(0, h, 1, 1, 0);
            assert_eq!(spec(-1, -24, -1, -1, -1).matches(&t), h == 0);
            assert_eq!(spec(-1, -6, -1, -1, -1).matches(&t), h % 6 == 0);
        }
        // Quarterly months: 3, 6, 9, 12.
        let quarterly: Vec<u8> = (1..=12u8)
            .filter(|&mo| spec(0, 0, 1, -3, -1).matches(&lt(0, 0, 1, mo, 0)))
            .collect();
        assert_eq!(quarterly, vec![3, 6, 9, 12]);
        // -31 only matches day 31; -1 matches every day.
        for d in 1..=31u8 {
            assert_eq!(
                spec(-1, -1, -31, -1, -1).matches(&lt(0, 0, d, 1, 0)),
                d == 31
            );
            assert!(spec(-1, -1, -1, -1, -1).matches(&lt(0, 0, d, 1, 0)));
        }
    }

    #[test]
    fn crontab_dayofweek_sunday_is_0_and_7() {
        for wd in 0..7u8 {
            let t = lt(0, 0, 1, 1, wd);
            assert_eq!(
                spec(-1, -1, -1, -1, 0).matches(&t),
                wd == 0,
                "dow 0, wd {wd}"
            );
            assert_eq!(
                spec(-1, -1, -1, -1, 7).matches(&t),
                wd == 0,
                "dow 7, wd {wd}"
            );
            assert!(spec(-1, -1, -1, -1, -1).matches(&t), "dow -1, wd {wd}");
            for dow in 1..=6 {
                assert_eq!(
                    spec(-1, -1, -1, -1, dow).matches(&t),
                    i32::from(wd) == dow,
                    "dow {dow}, wd {wd}"
                );
            }
        }
        // A hand-made weekday 7 is Sunday.
        assert!(spec(-1, -1, -1, -1, 0).matches(&lt(0, 0, 1, 1, 7)));
    }

    #[test]
    fn crontab_validation() {
        // Boundaries that are valid.
        for (m, h, d, mo, w) in [
            (-60, -24, -31, -12, -1),
            (59, 23, 31, 12, 7),
            (0, 0, 1, 1, 0),
            (-1, -1, -1, -1, -1),
        ] {
            assert!(
                CronSpec::new(m, h, d, mo, w).is_ok(),
                "({m},{h},{d},{mo},{w})"
            );
        }
        let err = |m, h, d, mo, w| CronSpec::new(m, h, d, mo, w).unwrap_err().to_string();
        let cases = [
            (err(60, -1, -1, -1, -1), "invalid minute = 60"),
            (err(-61, -1, -1, -1, -1), "invalid minute = -61"),
            (err(-1, 24, -1, -1, -1), "invalid hour = 24"),
            (err(-1, -25, -1, -1, -1), "invalid hour = -25"),
            (err(-1, -1, 0, -1, -1), "invalid day = 0"),
            (err(-1, -1, 32, -1, -1), "invalid day = 32"),
            (err(-1, -1, -32, -1, -1), "invalid day = -32"),
            (err(-1, -1, -1, 0, -1), "invalid month = 0"),
            (err(-1, -1, -1, 13, -1), "invalid month = 13"),
            (err(-1, -1, -1, -13, -1), "invalid month = -13"),
            (err(-1, -1, -1, -1, 8), "invalid dayofweek = 8"),
            (err(-1, -1, -1, -1, -2), "invalid dayofweek = -2"),
            // The first invalid field is reported.
            (err(99, 99, 0, 0, 9), "invalid minute = 99"),
        ];
        for (got, want) in cases {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        assert_eq!(CronSpec::every_minute(), spec(-1, -1, -1, -1, -1));
        assert_eq!(spec(1, 2, 3, 4, 5).fields(), (1, 2, 3, 4, 5));
    }

    #[test]
    fn crontab_register_and_due() {
        let mut tab = Crontab::new();
        let a = tab.register(CronSpec::every_minute(), "a");
        let b = tab.register(spec(0, -1, -1, -1, -1), "b");
        let c = tab.register(spec(-5, -1, -1, -1, -1), "c");
        assert_eq!((a, b, c), (CronId(1), CronId(2), CronId(3)));
        assert_eq!(tab.len(), 3);
        assert_eq!(
            tab.due(&lt(0, 1, 1, 1, 0)),
            vec![(a, &"a"), (b, &"b"), (c, &"c")]
        );
        assert_eq!(tab.due(&lt(5, 1, 1, 1, 0)), vec![(a, &"a"), (c, &"c")]);
        assert_eq!(tab.due_ids(&lt(7, 1, 1, 1, 0)), vec![a]);
        assert_eq!(tab.get(b), Some(&"b"));
        assert_eq!(tab.spec(b), Some(&spec(0, -1, -1, -1, -1)));
    }

    #[test]
    fn crontab_unregister_is_deferred_to_the_next_check() {
        let mut tab = Crontab::new();
        let keep = tab.register(CronSpec::every_minute(), 1);
        let gone = tab.register(CronSpec::every_minute(), 2);
        let t = lt(0, 0, 1, 1, 0);

        // As GoWorld's TestUnregister: an entry unregisters itself while the check runs.
        let due = tab.due_ids(&t);
        assert_eq!(due, vec![keep, gone]);
        for id in due {
            if tab.get(id) == Some(&2) {
                assert!(tab.unregister(id));
            }
        }
        // Still held until the next check; a second unregister is a no-op.
        assert_eq!(tab.len(), 2);
        assert_eq!(tab.get(gone), Some(&2));
        assert!(!tab.unregister(gone));

        // The next check drops it before matching.
        assert_eq!(tab.due_ids(&t), vec![keep]);
        assert_eq!(tab.len(), 1);
        assert_eq!(tab.get(gone), None);
        assert!(!tab.unregister(gone));

        // Unregistered between checks, even one that would not match now: dropped at the
        // next check all the same.
        let later = tab.register(spec(30, -1, -1, -1, -1), 3);
        assert!(tab.unregister(later));
        assert!(tab.unregister(keep));
        assert!(tab.due_ids(&lt(30, 0, 1, 1, 0)).is_empty());
        assert!(tab.is_empty());

        // Unknown ids; ids are never reused.
        assert!(!tab.unregister(CronId(99)));
        assert_eq!(tab.register(CronSpec::every_minute(), 4), CronId(4));
    }

    #[test]
    fn crontab_next_check_boundaries() {
        // 1_700_000_000 is 22:13:20 UTC; its minute started at 1_699_999_980.
        let m = 1_699_999_980;
        assert_eq!(next_check(m), m + 2);
        assert_eq!(next_check(m + 1), m + 2);
        assert_eq!(next_check(m + 2), m + 62);
        assert_eq!(next_check(m + 3), m + 62);
        assert_eq!(next_check(m + 59), m + 62);
        assert_eq!(next_check(m + 60), m + 62);
        // Re-arming from the returned instant gives one check per minute.
        let mut at = next_check(m + 30);
        for i in 0..5 {
            assert_eq!(at, m + 62 + 60 * i);
            assert_eq!(at.rem_euclid(60), CRONTAB_TIME_OFFSET_SECS);
            at = next_check(at);
        }
        // Around and before the epoch.
        assert_eq!(next_check(0), 2);
        assert_eq!(next_check(2), 62);
        assert_eq!(next_check(-1), 2);
        assert_eq!(next_check(-58), 2);
        assert_eq!(next_check(-59), -58);
        assert_eq!(next_check(-60), -58);
        assert_eq!(next_check(-61), -58);
        assert_eq!(next_check(-119), -118);
        assert_eq!(next_check(-120), -118);
        // No overflow panic at the end of time.
        assert!(next_check(i64::MAX - 1) >= i64::MAX - 60);
    }

    #[test]
    fn crontab_utc_fallback_table() {
        let cases = [
            (0, lt(0, 0, 1, 1, 4)),
            (1_700_000_000, lt(13, 22, 14, 11, 2)),
            (951_782_400, lt(0, 0, 29, 2, 2)),
            (1_735_689_599, lt(59, 23, 31, 12, 2)),
            (-1, lt(59, 23, 31, 12, 3)),
        ];
        for (secs, want) in cases {
            assert_eq!(utc_time(secs), want, "unix {secs}");
        }
    }

    /// Whatever the zone of the test process: `local_time(t)` is the UTC date of `t` shifted
    /// by libc's own UTC offset for `t`.
    #[test]
    fn crontab_local_time_agrees_with_offset() {
        let mut t = 946_684_800; // 2000-01-01T00:00:00Z
        while t < 1_900_000_000 {
            let tm = local_tm(t).expect("localtime_r");
            // `c_long` is `i64` here but not on every target.
            #[allow(clippy::useless_conversion)]
            let offset = i64::from(tm.tm_gmtoff);
            assert_eq!(local_time(t), utc_time(t + offset), "unix {t}");
            t += 86_400 * 13 + 3_607;
        }
    }

    /// Exact values in known zones, in child processes started with `TZ` set, so that this
    /// process's environment (shared by all test threads) is never modified.
    #[test]
    fn crontab_local_time_in_fixed_zones() {
        let exe = std::env::current_exe().expect("current_exe");
        for tz in ["UTC0", "XST-8"] {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "crontab::tests::crontab_local_time_child",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("TZ", tz)
                .env("GOWORLD_CRONTAB_CHILD", "1")
                .output()
                .expect("spawn test child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "child with TZ={tz} failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Run by `crontab_local_time_in_fixed_zones` in a child process with `TZ` set.
    #[test]
    #[ignore = "run by crontab_local_time_in_fixed_zones with TZ set"]
    fn crontab_local_time_child() {
        if std::env::var_os("GOWORLD_CRONTAB_CHILD").is_none() {
            return;
        }
        let cases: &[(i64, LocalTime)] = match std::env::var("TZ").as_deref() {
            Ok("UTC0") => &[
                (0, lt(0, 0, 1, 1, 4)),
                (1_700_000_000, lt(13, 22, 14, 11, 2)),
                (951_782_400, lt(0, 0, 29, 2, 2)),
                (1_735_689_599, lt(59, 23, 31, 12, 2)),
                (-1, lt(59, 23, 31, 12, 3)),
            ],
            // POSIX zone UTC+8 without DST (needs no tzdata).
            Ok("XST-8") => &[
                (0, lt(0, 8, 1, 1, 4)),
                (1_700_000_000, lt(13, 6, 15, 11, 3)),
                (951_782_400, lt(0, 8, 29, 2, 2)),
                (1_735_689_599, lt(59, 7, 1, 1, 3)),
                (-1, lt(59, 7, 1, 1, 4)),
            ],
            other => panic!("unexpected TZ {other:?}"),
        };
        for &(secs, want) in cases {
            assert_eq!(local_time(secs), want, "unix {secs}");
        }
        // The first check after the epoch falls on Thursday 1970-01-01, minute 0, in both zones.
        assert!(spec(0, -1, 1, 1, 4).matches(&local_time(next_check(-1))));
    }
}
