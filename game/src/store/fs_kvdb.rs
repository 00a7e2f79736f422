//! The KVDB on the filesystem (reference §3.12): string keys and values in one directory,
//! safe to share between processes. Unlike GoWorld, a missing key is `None` rather than `""`,
//! and `get_or_put` is atomic across processes (GoWorld's is a get followed by a put).
//!
//! # Layout
//!
//! `[kvdb] type = filesystem`: one file per key in `directory`, named `k` followed by the
//! lowercase hex of the key's bytes, holding the value's bytes. Hex digits sort like the bytes
//! they encode (`0-9` before `a-f`, two digits per byte, and a prefix sorts first), so file
//! names sort in key byte order, any key byte (`/`, NUL, non-ASCII) is safe in a file name,
//! and the `k` keeps the empty key a valid name. A name may be at most 255 bytes, so keys are
//! limited to [`MAX_FS_KEY_LEN`] (127) bytes; a longer key is an error result naming it.
//!
//! # Atomicity (several processes may share the directory)
//!
//! * `put` writes the value to a temporary file in the directory (`.tmp-<pid>-<seq>`), fsyncs
//!   it, `rename`s it over the key's file and fsyncs the directory: readers anywhere see the
//!   old value or the new one, never a partial file.
//! * `get_or_put` writes and fsyncs the temporary file the same way, then `link`s it to the
//!   key's name. `link(2)` creates the name only if it does not exist, atomically, in one
//!   step: of any number of processes racing on the same missing key exactly one `link`
//!   succeeds (that one stored its value and returns `None`); every other gets `EEXIST`,
//!   removes its temporary file and returns the value now stored, which is complete because
//!   it was fsynced before it got its name. A plain `put` racing with it simply overwrites.
//!   (Check-then-write would let two processes both see "missing" and both "win".)
//!
//! # Ranges without listing the directory
//!
//! Each process keeps the keys it knows in an ordered set, built from one directory listing
//! when it opens the directory. A writer that creates a key appends the key's file name and a
//! newline to `.keys` in the directory (one `write` with `O_APPEND`, so lines from several
//! processes never interleave) *before* it creates the key's file; `get_range` first reads
//! the lines appended since its last look (usually none: one `read`) and then walks the set.
//! A line whose file does not exist (yet, or because its writer failed) is skipped when the
//! values are read, exactly as a listing would skip it. So a range costs the keys it returns,
//! not every key in the directory (a listing of 20 000 mails per `GetMails` was the KVDB's
//! largest cost with thousands of bots). The file grows by one line per key ever created
//! (about twice the key's length); it is only a hint for running processes: each process
//! rebuilds its set from the directory when it starts (so a key file put there by other means
//! than a KVDB is seen by ranges after a restart).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use log::warn;

use super::backend::KvdbBackend;
use super::fs_storage::{is_temp_name, sync_dir, write_atomic, write_temp};

/// Longest key the filesystem backend takes: `1 + 2 * len` must fit NAME_MAX (255).
pub const MAX_FS_KEY_LEN: usize = 127;

/// `[kvdb] type = filesystem`: one hex-named file per key (see the module docs). Safe to
/// share between processes.
pub struct FilesystemKvdb {
    dir: PathBuf,
    /// Every key known to exist (or being created), in byte order.
    keys: BTreeSet<String>,
    /// `.keys`, opened for reading and appending.
    journal: fs::File,
    /// How much of `.keys` has been read into `keys`.
    journal_read: u64,
    /// Bytes of `.keys` read but not yet a whole line (another writer's append in progress).
    partial: Vec<u8>,
}

/// The journal of created keys (see the module docs); not a key file (those start with `k`)
/// nor a temporary one.
const JOURNAL: &str = ".keys";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The file name of `key`: `k` + lowercase hex, or an error if it would pass NAME_MAX.
fn key_file_name(key: &str) -> Result<String, String> {
    if key.len() > MAX_FS_KEY_LEN {
        return Err(format!(
            "key of {} bytes is too long for the filesystem kvdb (at most {MAX_FS_KEY_LEN})",
            key.len()
        ));
    }
    let mut name = String::with_capacity(1 + 2 * key.len());
    name.push('k');
    for b in key.bytes() {
        name.push(HEX[usize::from(b >> 4)] as char);
        name.push(HEX[usize::from(b & 15)] as char);
    }
    Ok(name)
}

/// The key of a file name made by [`key_file_name`]; `None` for any other name.
fn key_of_file_name(name: &[u8]) -> Option<Vec<u8>> {
    let hex = name.strip_prefix(b"k")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    hex.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Reads a value file; `None` if it does not exist.
fn read_value(path: &Path) -> Result<Option<String>, String> {
    match fs::read(path) {
        Ok(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("{} holds a value that is not UTF-8", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

impl FilesystemKvdb {
    /// A KVDB in `dir`, which is created (with parents) if missing. Lists the directory once.
    pub fn new(dir: PathBuf) -> io::Result<FilesystemKvdb> {
        fs::create_dir_all(&dir)?;
        let journal = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join(JOURNAL))?;
        // Lines appended from here on are read later; keys created before are in the listing
        // (their line was appended before their file was made).
        let journal_read = journal.metadata()?.len();
        let mut keys = BTreeSet::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if let Some(key) = key_of_name(entry.file_name().as_encoded_bytes()) {
                keys.insert(key);
            }
        }
        Ok(FilesystemKvdb {
            dir,
            keys,
            journal,
            journal_read,
            partial: Vec::new(),
        })
    }

    /// Reads the keys other processes created since the last look.
    fn catch_up(&mut self) -> Result<(), String> {
        let mut fresh = Vec::new();
        self.journal
            .seek(io::SeekFrom::Start(self.journal_read))
            .and_then(|_| self.journal.read_to_end(&mut fresh))
            .map_err(|e| format!("reading {JOURNAL}: {e}"))?;
        if fresh.is_empty() {
            return Ok(());
        }
        self.journal_read += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let whole = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        for line in self.partial[..whole].split(|&b| b == b'\n') {
            if let Some(key) = key_of_name(line) {
                self.keys.insert(key);
            }
        }
        self.partial.drain(..whole);
        Ok(())
    }

    /// Records that `key` (file `name`) is about to be created, unless it is known already.
    fn note_key(&mut self, key: &str, name: &str) -> Result<(), String> {
        if !self.keys.contains(key) {
            // Perhaps another process created it: then it needs no second line.
            self.catch_up()?;
        }
        if self.keys.contains(key) {
            return Ok(());
        }
        let mut line = Vec::with_capacity(name.len() + 1);
        line.extend_from_slice(name.as_bytes());
        line.push(b'\n');
        // One write: with O_APPEND the line lands whole at the end, whoever else appends.
        self.journal
            .write_all(&line)
            .map_err(|e| format!("appending to {JOURNAL}: {e}"))?;
        self.keys.insert(key.to_string());
        Ok(())
    }
}

/// The key of a key file's name, if it is one and its key is UTF-8 (others are skipped, once
/// logged).
fn key_of_name(name: &[u8]) -> Option<String> {
    if is_temp_name(name) {
        return None;
    }
    let key = key_of_file_name(name)?;
    match String::from_utf8(key) {
        Ok(k) => Some(k),
        Err(_) => {
            warn!(
                "kvdb: skipping {:?}, whose key is not UTF-8",
                String::from_utf8_lossy(name)
            );
            None
        }
    }
}

impl KvdbBackend for FilesystemKvdb {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        read_value(&self.dir.join(key_file_name(key)?))
    }

    fn put(&mut self, key: &str, val: &str) -> Result<(), String> {
        let name = key_file_name(key)?;
        self.note_key(key, &name)?;
        write_atomic(&self.dir, OsStr::new(&name), val.as_bytes()).map_err(|e| e.to_string())
    }

    fn get_or_put(&mut self, key: &str, val: &str) -> Result<Option<String>, String> {
        let name = key_file_name(key)?;
        let target = self.dir.join(&name);
        // Fast path for the common "already set" case; the link below decides races.
        if let Some(v) = read_value(&target)? {
            return Ok(Some(v));
        }
        self.note_key(key, &name)?;
        let tmp = write_temp(&self.dir, val.as_bytes()).map_err(|e| e.to_string())?;
        let linked = fs::hard_link(&tmp, &target);
        // The temporary name is no longer needed either way (on success the value lives on
        // under the key's name).
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&self.dir).map_err(|e| e.to_string())?;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Another writer won; its file was complete before it got the name.
                match read_value(&target)? {
                    Some(v) => Ok(Some(v)),
                    None => Err(format!("{} vanished after a race", target.display())),
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn get_range(&mut self, begin: &str, end: &str) -> Result<Vec<(String, String)>, String> {
        if begin >= end {
            return Ok(Vec::new());
        }
        self.catch_up()?;
        let mut out = Vec::new();
        // `str` compares by bytes, which is the order the range is defined in.
        for key in self.keys.range::<str, _>((
            std::ops::Bound::Included(begin),
            std::ops::Bound::Excluded(end),
        )) {
            // A known key without a file is being created (or its writer failed): leave it
            // out, as a listing would.
            if let Some(v) = read_value(&self.dir.join(key_file_name(key)?))? {
                out.push((key.clone(), v));
            }
        }
        Ok(out)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::msg::next_larger_key;
    use crate::store::msg::{KvdbOutput, Store, StoreError};
    use crate::store::pool::{Completion, KvdbPool};
    use crate::store::testutil::{TempDir, T};
    use std::process::{Command, Stdio};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn all(k: &mut KvdbPool) -> Vec<Completion<KvdbOutput>> {
        k.drain(T).expect("drained");
        k.take_results()
    }

    fn val(s: &str) -> Result<KvdbOutput, StoreError> {
        Ok(KvdbOutput::Value(Some(s.to_string())))
    }

    const NONE: Result<KvdbOutput, StoreError> = Ok(KvdbOutput::Value(None));

    #[test]
    fn get_put_get_or_put() {
        let d = TempDir::new("kvdb-basic");
        let mut k = KvdbPool::filesystem(d.0.clone(), None).unwrap();
        k.get(1, "a");
        k.put(2, "a", "1");
        k.get(3, "a");
        k.get_or_put(4, "a", "2");
        k.get_or_put(5, "b", "3");
        k.get_or_put(6, "b", "4");
        k.put(7, "b", "5");
        k.get(8, "b");
        k.put(9, "", "empty key");
        k.get(10, "");
        k.put(11, "c", "");
        k.get(12, "c");
        let r = all(&mut k);
        assert_eq!(
            r,
            vec![
                (1, NONE),
                (2, Ok(KvdbOutput::Done)),
                (3, val("1")),
                (4, val("1")),
                (5, NONE),
                (6, val("3")),
                (7, Ok(KvdbOutput::Done)),
                (8, val("5")),
                (9, Ok(KvdbOutput::Done)),
                (10, val("empty key")),
                (11, Ok(KvdbOutput::Done)),
                (12, val("")),
            ]
        );
        // No temporary files are left behind.
        for e in fs::read_dir(&d.0).unwrap() {
            let n = e.unwrap().file_name();
            assert!(!is_temp_name(n.as_encoded_bytes()), "{n:?}");
        }
        k.shutdown(T).unwrap();
        // A restart finds everything.
        let mut k = KvdbPool::filesystem(d.0.clone(), None).unwrap();
        k.get(1, "a");
        k.get(2, "b");
        k.get(3, "");
        k.get_range(4, "", "\u{10ffff}");
        let r = all(&mut k);
        assert_eq!(r[0], (1, val("1")));
        assert_eq!(r[1], (2, val("5")));
        assert_eq!(r[2], (3, val("empty key")));
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            r[3],
            (
                4,
                Ok(KvdbOutput::Range(pairs(&[
                    ("", "empty key"),
                    ("a", "1"),
                    ("b", "5"),
                    ("c", "")
                ])))
            )
        );
    }

    #[test]
    fn encoding_preserves_byte_order() {
        let keys = [
            "", "\0", "a", "a\0", "a$", "a/b", "ab", "b", "\u{7f}", "é", "日本",
        ];
        let mut sorted = keys.to_vec();
        sorted.sort();
        assert_eq!(sorted, keys, "test keys are listed in byte order");
        let names: Vec<String> = keys.iter().map(|k| key_file_name(k).unwrap()).collect();
        let mut by_name = names.clone();
        by_name.sort();
        assert_eq!(by_name, names);
        for k in keys {
            let n = key_file_name(k).unwrap();
            assert_eq!(key_of_file_name(n.as_bytes()).unwrap(), k.as_bytes());
        }
        assert_eq!(key_of_file_name(b"kABCD"), None);
        assert_eq!(key_of_file_name(b"k0"), None);
        assert_eq!(next_larger_key("ab"), "ab\0");
    }

    #[test]
    fn a_range_sees_keys_another_process_created_after_it_opened() {
        let d = TempDir::new("kvdb-journal");
        // Two backends on one directory: two game processes sharing the KVDB.
        let mut a = FilesystemKvdb::new(d.0.clone()).unwrap();
        a.put("mail$1", "old").unwrap();
        let mut b = FilesystemKvdb::new(d.0.clone()).unwrap();
        a.put("mail$2", "x").unwrap();
        assert_eq!(a.get_or_put("mail$3", "y").unwrap(), None);
        a.put("mail$2", "x2").unwrap(); // not a new key: no second line
        let range = b.get_range("mail$", "mail%").unwrap();
        assert_eq!(
            range,
            vec![
                ("mail$1".to_string(), "old".to_string()),
                ("mail$2".to_string(), "x2".to_string()),
                ("mail$3".to_string(), "y".to_string()),
            ]
        );
        let journal = fs::read_to_string(d.0.join(JOURNAL)).unwrap();
        assert_eq!(
            journal.lines().count(),
            3,
            "one line per created key: {journal:?}"
        );
        // A line whose file is not there yet (its writer is between the two steps) is left
        // out, and half a line waits for the rest of it.
        let name = key_file_name("mail$4").unwrap();
        let mut j = fs::OpenOptions::new()
            .append(true)
            .open(d.0.join(JOURNAL))
            .unwrap();
        j.write_all(&name.as_bytes()[..5]).unwrap();
        assert_eq!(b.get_range("mail$", "mail%").unwrap().len(), 3);
        j.write_all(&name.as_bytes()[5..]).unwrap();
        j.write_all(b"\n").unwrap();
        assert_eq!(
            b.get_range("mail$", "mail%").unwrap().len(),
            3,
            "no file yet"
        );
        fs::write(d.0.join(&name), "z").unwrap();
        let range = b.get_range("mail$", "mail%").unwrap();
        assert_eq!(range.last(), Some(&("mail$4".to_string(), "z".to_string())));
        // A new process builds its set from the directory.
        let mut c = FilesystemKvdb::new(d.0.clone()).unwrap();
        assert_eq!(c.get_range("", "\u{10ffff}").unwrap().len(), 4);
    }

    #[test]
    fn get_range_order_and_half_open() {
        let d = TempDir::new("kvdb-range");
        let mut k = KvdbPool::filesystem(d.0.clone(), None).unwrap();
        // Submitted out of order on purpose.
        let keys = ["b", "a/b", "日本", "a", "é", "a$", "ab", "$x", "a\0", "/"];
        for (i, key) in keys.iter().enumerate() {
            k.put(i as u64, key, &format!("v-{key}"));
        }
        let cases: &[(&str, &str, &[&str])] = &[
            ("a", "b", &["a", "a\0", "a$", "a/b", "ab"]),
            ("a", "a", &[]),
            ("b", "a", &[]),
            ("a$", "ab", &["a$", "a/b"]),
            ("a", "a\0", &["a"]),
            ("a", &next_larger_key("a\0"), &["a", "a\0"]),
            ("", "a", &["$x", "/"]),
            ("b", "\u{10ffff}", &["b", "é", "日本"]),
            ("é", "日本", &["é"]),
            ("c", "d", &[]),
        ];
        for (i, (b, e, _)) in cases.iter().enumerate() {
            k.get_range(100 + i as u64, b, e);
        }
        let r = all(&mut k);
        for (i, (b, e, want)) in cases.iter().enumerate() {
            let want: Vec<(String, String)> = want
                .iter()
                .map(|k| (k.to_string(), format!("v-{k}")))
                .collect();
            assert_eq!(
                r[keys.len() + i],
                (100 + i as u64, Ok(KvdbOutput::Range(want))),
                "range [{b:?}, {e:?})"
            );
        }
    }

    #[test]
    fn too_long_key_is_an_error() {
        let d = TempDir::new("kvdb-long");
        let mut k = KvdbPool::filesystem(d.0.clone(), None).unwrap();
        let ok = "x".repeat(MAX_FS_KEY_LEN);
        let long = "x".repeat(MAX_FS_KEY_LEN + 1);
        k.put(1, &ok, "fits");
        k.get(2, &ok);
        k.put(3, &long, "v");
        k.get(4, &long);
        k.get_or_put(5, &long, "v");
        // A long range bound is fine: bounds are compared, never used as file names.
        k.get_range(6, &ok, &long);
        let r = all(&mut k);
        assert_eq!(r[0], (1, Ok(KvdbOutput::Done)));
        assert_eq!(r[1], (2, val("fits")));
        for (t, out) in &r[2..5] {
            let e = out.as_ref().unwrap_err();
            assert!(
                matches!(e, StoreError::Backend { store: Store::Kvdb, why, .. } if why.contains("too long")),
                "{t}: {e}"
            );
        }
        assert_eq!(
            r[5],
            (6, Ok(KvdbOutput::Range(vec![(ok, "fits".to_string())])))
        );
    }

    const RACE_DIR: &str = "GOWORLD_KVDB_RACE_DIR";
    const RACE_START: &str = "GOWORLD_KVDB_RACE_START_MS";
    const RACE_ID: &str = "GOWORLD_KVDB_RACE_ID";
    const RACE_KEYS: usize = 40;
    const RACE_CHILDREN: usize = 8;

    fn unix_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// The child side of `get_or_put_is_atomic_across_processes` (does nothing unless run by
    /// it): waits for the common start time, races get_or_put on every key, prints outcomes.
    #[test]
    #[ignore]
    fn race_child() {
        let (Ok(dir), Ok(start), Ok(id)) = (
            std::env::var(RACE_DIR),
            std::env::var(RACE_START),
            std::env::var(RACE_ID),
        ) else {
            return;
        };
        let start: u64 = start.parse().unwrap();
        let mut k = KvdbPool::filesystem(PathBuf::from(dir), None).unwrap();
        let now = unix_ms();
        if start > now {
            std::thread::sleep(Duration::from_millis(start - now));
        }
        for i in 0..RACE_KEYS {
            k.get_or_put(i as u64, &format!("race/{i}"), &format!("child{id}"));
        }
        k.drain(T).unwrap();
        for (t, r) in k.take_results() {
            match r {
                Ok(KvdbOutput::Value(None)) => println!("RACE {t} won"),
                Ok(KvdbOutput::Value(Some(v))) => println!("RACE {t} saw {v}"),
                other => println!("RACE {t} error {other:?}"),
            }
        }
    }

    #[test]
    fn get_or_put_is_atomic_across_processes() {
        let d = TempDir::new("kvdb-race");
        fs::create_dir_all(&d.0).unwrap();
        let exe = std::env::current_exe().unwrap();
        let start = unix_ms() + 700;
        let children: Vec<_> = (0..RACE_CHILDREN)
            .map(|id| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "store::fs_kvdb::tests::race_child",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(RACE_DIR, &d.0)
                    .env(RACE_START, start.to_string())
                    .env(RACE_ID, id.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // outcomes[key] = (winners, values seen by the losers)
        let mut winners: Vec<Vec<usize>> = vec![Vec::new(); RACE_KEYS];
        let mut seen: Vec<Vec<String>> = vec![Vec::new(); RACE_KEYS];
        for (id, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "child {id} failed");
            let text = String::from_utf8(out.stdout).unwrap();
            let mut lines = 0;
            // The harness's "test ... " prefix may share the first line.
            let outcomes = text
                .lines()
                .filter_map(|l| l.find("RACE ").map(|i| &l[i + 5..]));
            for line in outcomes {
                lines += 1;
                let mut parts = line.splitn(3, ' ');
                let key: usize = parts.next().unwrap().parse().unwrap();
                match (parts.next(), parts.next()) {
                    (Some("won"), None) => winners[key].push(id),
                    (Some("saw"), Some(v)) => seen[key].push(v.to_string()),
                    other => panic!("child {id}: {other:?}"),
                }
            }
            assert_eq!(lines, RACE_KEYS, "child {id} output:\n{text}");
        }
        let mut k = KvdbPool::filesystem(d.0.clone(), None).unwrap();
        for i in 0..RACE_KEYS {
            k.get(i as u64, &format!("race/{i}"));
        }
        let stored = all(&mut k);
        for i in 0..RACE_KEYS {
            assert_eq!(winners[i].len(), 1, "key {i}: winners {:?}", winners[i]);
            let w = format!("child{}", winners[i][0]);
            assert_eq!(seen[i].len(), RACE_CHILDREN - 1);
            assert!(seen[i].iter().all(|v| *v == w), "key {i}: {:?}", seen[i]);
            assert_eq!(stored[i], (i as u64, val(&w)));
        }
        for e in fs::read_dir(&d.0).unwrap() {
            let n = e.unwrap().file_name();
            assert!(!is_temp_name(n.as_encoded_bytes()), "{n:?}");
        }
    }
}
