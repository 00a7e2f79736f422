//! Entity storage on the filesystem (reference §3.11), and the atomic-file helpers the
//! filesystem KVDB shares.
//!
//! # Layout and atomicity
//!
//! `[storage] type = filesystem`: one file per entity at `<directory>/<TypeName>/<EntityID>`,
//! holding exactly the bytes given to `save`. Several game processes on one host may share the
//! directory. A save writes a temporary file in the same directory (`.tmp-<pid>-<seq>`, never
//! 16 bytes long, so never mistaken for an entity), fsyncs it, renames it over the target and
//! fsyncs the directory: `rename` replaces the name atomically, so a concurrent reader in any
//! process sees either the old or the new contents, never a torn file, and a crash leaves at
//! worst a stray temporary file (ignored by `list`). `Saved` means durable: the type
//! directory's own name is fsynced into the storage directory by each worker before its
//! first save there, even when another worker or process created it. Saves are not grouped:
//! each pays its two fsyncs (batching renames under one directory fsync measured no better
//! on one worker here, see BENCHMARKS.md). Type names and IDs become path components,
//! so they are checked: no empty names, no `.` or `..`, no `/`, no NUL.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use goworld_common::id::{EntityId, ID_LEN};

use super::backend::StorageBackend;

// ---------------------------------------------------------------------------------------------
// Atomic files, shared with the KVDB.
// ---------------------------------------------------------------------------------------------

/// Temporary file names are unique per process (pid) and per write (a counter), and always
/// 36 bytes long with `-`, so they never look like an entity ID or a KVDB key file.
fn temp_name() -> OsString {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!(".tmp-{:010}-{seq:020}", std::process::id()))
}

/// True for names `temp_name` makes.
pub(crate) fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(b".tmp-")
}

/// Flushes a directory's entries (a created, renamed or linked name) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to a new temporary file in `dir` and fsyncs it; returns its path. The caller
/// renames or links it into place (and removes it on failure).
pub(crate) fn write_temp(dir: &Path, data: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(temp_name());
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(data)?;
        f.sync_all()
    };
    match write() {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Replaces `dir/name` with `data` atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &OsStr, data: &[u8]) -> io::Result<()> {
    let tmp = write_temp(dir, data)?;
    if let Err(e) = fs::rename(&tmp, dir.join(name)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// (see the module docs). Safe to share between processes.
pub struct FilesystemStorage {
    dir: PathBuf,
    /// Type directories known to exist, so saves skip the check.
    known_dirs: HashSet<String>,
}

/// Checks a name used as one path component.
fn check_component(what: &str, name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("invalid {what}: empty"));
    }
    if name == b"." || name == b".." {
        return Err(format!(
            "invalid {what} '{}'",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!(
            "invalid {what} {:?}: contains '/' or NUL",
            String::from_utf8_lossy(name)
        ));
    }
    if name.len() > 255 {
        return Err(format!("invalid {what}: {} bytes is too long", name.len()));
    }
    Ok(())
}

impl FilesystemStorage {
    /// Storage rooted at `dir`, which is created (with parents) if missing.
    pub fn new(dir: PathBuf) -> io::Result<FilesystemStorage> {
        fs::create_dir_all(&dir)?;
        Ok(FilesystemStorage {
            dir,
            known_dirs: HashSet::new(),
        })
    }

    fn type_dir(&self, type_name: &str) -> Result<PathBuf, String> {
        check_component("type name", type_name.as_bytes())?;
        Ok(self.dir.join(type_name))
    }

    fn entity_path(&self, type_name: &str, eid: &EntityId) -> Result<PathBuf, String> {
        let dir = self.type_dir(type_name)?;
        check_component("entity ID", eid.as_bytes())?;
        Ok(dir.join(OsStr::from_bytes(eid.as_bytes())))
    }

    /// Creates the type directory on first use and makes its name durable.
    fn ensure_type_dir(&mut self, type_name: &str) -> io::Result<PathBuf> {
        let dir = self.dir.join(type_name);
        if !self.known_dirs.contains(type_name) {
            match fs::create_dir(&dir) {
                // Made earlier, or just now by another worker or process, which may not have
                // made its name durable yet: a save reported durable must not sit in a
                // directory a crash could lose, so sync the parent either way (once per type
                // per worker).
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            sync_dir(&self.dir)?;
            self.known_dirs.insert(type_name.to_string());
        }
        Ok(dir)
    }
}

impl StorageBackend for FilesystemStorage {
    fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String> {
        self.entity_path(type_name, eid)?;
        let name = OsStr::from_bytes(eid.as_bytes());
        let dir = self.ensure_type_dir(type_name).map_err(|e| e.to_string())?;
        match write_atomic(&dir, name, data) {
            // The directory was removed behind our back (an operator cleaning up): make it
            // again rather than failing every later save of the type.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.known_dirs.remove(type_name);
                let dir = self.ensure_type_dir(type_name).map_err(|e| e.to_string())?;
                write_atomic(&dir, name, data).map_err(|e| e.to_string())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }

    fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String> {
        match fs::read(self.entity_path(type_name, eid)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String> {
        match fs::metadata(self.entity_path(type_name, eid)?) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String> {
        let dir = self.type_dir(type_name)?;
        let entries = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().into_vec();
            // Entity files are exactly ID_LEN bytes; temporary files are longer.
            if name.len() != ID_LEN || is_temp_name(&name) {
                continue;
            }
            if let Some(eid) = EntityId::from_slice(&name) {
                ids.push(eid);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::msg::{StorageOutput, Store, StoreError};
    use crate::store::pool::{Completion, StoragePool, DEFAULT_QUEUE_CAPACITY, DEFAULT_WORKERS};
    use crate::store::testutil::{eid, TempDir, T};
    use std::time::{Duration, Instant};

    /// Drains and returns every result.
    fn all(s: &mut StoragePool) -> Vec<Completion<StorageOutput>> {
        s.drain(T).expect("drained");
        s.take_results()
    }

    #[test]
    fn round_trip() {
        let d = TempDir::new("store-rt");
        let mut s = StoragePool::filesystem(d.0.clone(), None).unwrap();
        let a = eid("AAAAAAAAAAAAAAAA");
        let b = eid("BBBBBBBBBBBBBBB.");
        s.save(1, "Avatar", a, b"alpha".to_vec());
        s.save(2, "Avatar", b, Vec::new());
        s.load(3, "Avatar", a);
        s.load(4, "Avatar", b);
        s.exists(5, "Avatar", a);
        s.list(6, "Avatar");
        s.load(7, "Avatar", eid("CCCCCCCCCCCCCCCC"));
        s.exists(8, "Avatar", eid("CCCCCCCCCCCCCCCC"));
        s.load(9, "Monster", a);
        s.list(10, "Monster");
        let r = all(&mut s);
        assert_eq!(
            r,
            vec![
                (1, Ok(StorageOutput::Saved)),
                (2, Ok(StorageOutput::Saved)),
                (3, Ok(StorageOutput::Loaded(Some(b"alpha".to_vec())))),
                (4, Ok(StorageOutput::Loaded(Some(Vec::new())))),
                (5, Ok(StorageOutput::Exists(true))),
                (6, Ok(StorageOutput::List(vec![a, b]))),
                (7, Ok(StorageOutput::Loaded(None))),
                (8, Ok(StorageOutput::Exists(false))),
                (9, Ok(StorageOutput::Loaded(None))),
                (10, Ok(StorageOutput::List(vec![]))),
            ]
        );
        assert_eq!(s.pending(), 0);
        // Atomic writes leave no temporary files behind.
        let names: Vec<_> = fs::read_dir(d.0.join("Avatar"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !is_temp_name(n.as_bytes())));
        s.shutdown(T).unwrap();
    }

    #[test]
    fn restart_finds_everything() {
        let d = TempDir::new("store-restart");
        let ids: Vec<EntityId> = (0..20).map(|i| eid(&format!("Entity{i:010}"))).collect();
        {
            let mut s = StoragePool::filesystem(d.0.clone(), None).unwrap();
            for (i, e) in ids.iter().enumerate() {
                s.save(i as u64, "Player", *e, format!("data{i}").into_bytes());
            }
            // Overwrite one: the later save wins.
            s.save(99, "Player", ids[3], b"newer".to_vec());
            s.shutdown(T).unwrap();
            assert!(s.take_results().iter().all(|(_, r)| r.is_ok()));
        }
        let mut s = StoragePool::filesystem(d.0.clone(), None).unwrap();
        s.list(0, "Player");
        for (i, e) in ids.iter().enumerate() {
            s.load(i as u64 + 1, "Player", *e);
        }
        let r = all(&mut s);
        assert_eq!(r[0], (0, Ok(StorageOutput::List(ids.clone()))));
        for (i, (tok, out)) in r[1..].iter().enumerate() {
            assert_eq!(*tok, i as u64 + 1);
            let want = if i == 3 {
                b"newer".to_vec()
            } else {
                format!("data{i}").into_bytes()
            };
            assert_eq!(*out, Ok(StorageOutput::Loaded(Some(want))));
        }
    }

    #[test]
    fn submit_order_and_save_then_load() {
        let d = TempDir::new("store-order");
        // A tiny channel forces spilling, which must keep the order too.
        let fs_b = FilesystemStorage::new(d.0.clone()).unwrap();
        let mut s = StoragePool::with_backend(fs_b, None, 2).unwrap();
        let e = eid("OrderedEntity123");
        let mut want = Vec::new();
        for i in 0..200u64 {
            let data = format!("v{i}").into_bytes();
            s.save(2 * i, "Thing", e, data.clone());
            s.load(2 * i + 1, "Thing", e);
            want.push((2 * i, Ok(StorageOutput::Saved)));
            want.push((2 * i + 1, Ok(StorageOutput::Loaded(Some(data)))));
        }
        assert!(s.spilled() > 0, "the small channel should have spilled");
        let mut got = Vec::new();
        while got.len() < want.len() {
            let r = s.wait_results(T);
            assert!(!r.is_empty(), "timed out");
            got.extend(r);
        }
        assert_eq!(got, want);
        assert_eq!(s.pending(), 0);
        assert_eq!(s.spill_len(), 0);
    }

    #[test]
    fn type_dir_removed_behind_our_back_is_recreated() {
        let d = TempDir::new("store-rmdir");
        let mut s = StoragePool::filesystem(d.0.clone(), None).unwrap();
        let e = eid("AAAAAAAAAAAAAAAA");
        s.save(1, "Avatar", e, vec![1]);
        s.drain(T).unwrap();
        fs::remove_dir_all(d.0.join("Avatar")).unwrap();
        s.save(2, "Avatar", e, vec![2]);
        s.load(3, "Avatar", e);
        let r = all(&mut s);
        assert_eq!(r[1], (2, Ok(StorageOutput::Saved)));
        assert_eq!(r[2], (3, Ok(StorageOutput::Loaded(Some(vec![2])))));
    }

    #[test]
    fn invalid_names_are_errors() {
        let d = TempDir::new("store-invalid");
        let mut s = StoragePool::filesystem(d.0.clone(), None).unwrap();
        let ok = eid("AAAAAAAAAAAAAAAA");
        s.save(1, "", ok, vec![1]);
        s.save(2, "..", ok, vec![1]);
        s.save(3, "a/b", ok, vec![1]);
        s.save(4, "a\0b", ok, vec![1]);
        s.save(5, "Avatar", eid("AAAAAAA/AAAAAAAA"), vec![1]);
        s.save(6, "Avatar", EntityId::NONE, vec![1]);
        s.list(7, "..");
        let r = all(&mut s);
        assert_eq!(r.len(), 7);
        for (t, out) in &r {
            let e = out.as_ref().expect_err("must fail");
            assert!(
                matches!(e, StoreError::Backend { store: Store::Storage, why, .. } if why.contains("invalid")),
                "{t}: {e}"
            );
        }
        assert!(r[0]
            .1
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("storage save /"));
        // Nothing escaped the directory.
        assert!(!d.0.parent().unwrap().join("AAAAAAAAAAAAAAAA").exists());
    }

    /// Saves per second through `StoragePool::filesystem`: 2000 distinct Avatars of 300 bytes,
    /// submitted at once, timed until every result is back. Run with
    /// `cargo test --release -p goworld-game bench_storage -- --ignored --nocapture`;
    /// `STORAGE_BENCH_WORKERS=1` measures a single worker.
    #[test]
    #[ignore]
    fn bench_storage_saves() {
        const N: u64 = 2000;
        let workers = std::env::var("STORAGE_BENCH_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_WORKERS);
        let d = TempDir::new("store-bench");
        let dir = d.0.clone();
        let mut s = StoragePool::with_backend_pool(
            || FilesystemStorage::new(dir.clone()),
            None,
            DEFAULT_QUEUE_CAPACITY,
            workers,
        )
        .unwrap();
        let data = vec![0x5a_u8; 300];
        let start = Instant::now();
        for i in 0..N {
            s.save(i, "Avatar", eid(&format!("Bench{i:011}")), data.clone());
        }
        let mut done = 0u64;
        while done < N {
            let r = s.wait_results(Duration::from_secs(120));
            assert!(!r.is_empty(), "timed out");
            assert!(r.iter().all(|(_, o)| *o == Ok(StorageOutput::Saved)));
            done += r.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "storage bench: {workers} workers, {N} saves of 300 B in {secs:.2} s = {:.0} saves/s",
            N as f64 / secs
        );
        s.shutdown(T).unwrap();
    }
}
