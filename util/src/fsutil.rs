//! Atomic writes, content checksums and folder locks.
//!
//! Every finished artefact is written under a temporary name in its final folder, fsynced, then
//! renamed: a reader sees either the old file, no file, or the complete new one. Temporary names
//! are unique to their writer (process id and a per-process counter), so two writers never share
//! one, and they all end in `.tmp`: what a killed process leaves behind is recognisable debris
//! ([`is_temp_name`]) that never makes a folder look finished or foreign.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::Xxh3;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name for writing `path` (same folder, so the final rename is atomic), unique to
/// this process and call: `NAME.PID-N.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// True for the name of a temporary file or folder: unfinished by definition.
pub fn is_temp_name(name: &str) -> bool {
    name.ends_with(".tmp") || name.ends_with(".partial")
}

/// True for files midtrain keeps beside outputs that are not outputs (locks, temporaries).
pub fn is_bookkeeping_name(name: &str) -> bool {
    is_temp_name(name) || name.starts_with(LOCK_FILE)
}

/// True for what a killed run leaves and no finished output contains: a bookkeeping file, or a
/// folder holding nothing but such debris (e.g. `parts/` with only `run.json.PID-N.tmp`).
pub fn is_debris(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if is_bookkeeping_name(&name) {
        return true;
    }
    path.is_dir() && fs::read_dir(path).is_ok_and(|entries| entries.flatten().all(|e| is_debris(&e.path())))
}

/// True for a name [`temp_path`] made (`NAME.PID-N.tmp`) or a checkpoint being written
/// (`.step-N.partial`): only those are ever deleted, so a user's own `*.tmp` files beside an
/// output are left alone.
fn is_own_temp_name(name: &str) -> bool {
    if let Some(rest) = name.strip_suffix(".partial") {
        return rest.starts_with(".step-");
    }
    let Some(stem) = name.strip_suffix(".tmp") else { return false };
    let Some((_, tag)) = stem.rsplit_once('.') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    tag.split_once('-').is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Folder levels below an output that hold midtrain's files (OUTPUT/NAME/filtered/kept, ...).
const TEMP_SEARCH_DEPTH: usize = 4;

/// Remove the temporary files and folders a killed writer left in `dir` and the subfolders
/// midtrain writes (four levels deep). Call it only while holding the folder's exclusive
/// [`FolderLock`], so no live writer owns them.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    remove_stale_temps_below(dir, TEMP_SEARCH_DEPTH)
}

fn remove_stale_temps_below(dir: &Path, depth: usize) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = entry.file_type()?.is_dir();
        if is_own_temp_name(&name) {
            if is_dir {
                fs::remove_dir_all(&path)?
            } else {
                fs::remove_file(&path)?
            }
            removed += 1;
        } else if is_dir && depth > 0 {
            removed += remove_stale_temps_below(&path, depth - 1)?;
        }
    }
    Ok(removed)
}

/// The lock file's name inside a locked folder (task locks add `.task-ROLE`, e.g. `.task-3-of-8`).
pub const LOCK_FILE: &str = ".midtrain.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{dir}: another midtrain run is writing into this folder ({holder}); wait for it to finish or stop it, \
         or choose another output folder"
    )]
    Held { dir: PathBuf, holder: String },
}

/// An advisory lock on an output folder, held for the life of the value. The operating system
/// releases it when the process dies, however it dies, so a crash never blocks a folder.
///
/// A whole run takes the folder exclusively. The tasks of a split run (`--task i --tasks n`)
/// share the folder with each other but each task is exclusive, so two copies of one task, or a
/// whole run beside a split one, are refused.
#[derive(Debug)]
pub struct FolderLock {
    _files: Vec<File>,
}

impl FolderLock {
    /// Lock `dir` (created if missing) for this process alone.
    pub fn exclusive(dir: &Path) -> Result<Self, LockError> {
        let file = open_lock_file(dir, LOCK_FILE)?;
        match file.try_lock() {
            Ok(()) => {
                describe_holder(&file);
                Ok(Self { _files: vec![file] })
            }
            Err(fs::TryLockError::WouldBlock) => Err(held_exclusive(dir)),
            Err(fs::TryLockError::Error(source)) => Err(LockError::Io { path: dir.join(LOCK_FILE), source }),
        }
    }

    /// Lock `dir` for task `task` of `tasks`: shared with the other tasks, exclusive per task.
    pub fn task(dir: &Path, task: usize, tasks: usize) -> Result<Self, LockError> {
        Self::shared_as(dir, &format!("{task}-of-{tasks}"))
    }

    /// Lock `dir` for one piece of a split run named `role` (a stage, its domains and a task):
    /// shared with every other piece, exclusive per role, so that two copies of one piece are
    /// refused while the tasks of different stages run side by side.
    pub fn shared_as(dir: &Path, role: &str) -> Result<Self, LockError> {
        let shared = open_lock_file(dir, LOCK_FILE)?;
        match shared.try_lock_shared() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(held(dir, &[LOCK_FILE])),
            Err(fs::TryLockError::Error(source)) => return Err(LockError::Io { path: dir.join(LOCK_FILE), source }),
        }
        let role: String =
            role.chars().map(|c| if c.is_ascii_alphanumeric() || "-_+".contains(c) { c } else { '_' }).collect();
        let name = format!("{LOCK_FILE}.task-{role}");
        let own = open_lock_file(dir, &name)?;
        match own.try_lock() {
            Ok(()) => {
                describe_holder(&own);
                Ok(Self { _files: vec![shared, own] })
            }
            Err(fs::TryLockError::WouldBlock) => Err(held(dir, &[&name])),
            Err(fs::TryLockError::Error(source)) => Err(LockError::Io { path: dir.join(name), source }),
        }
    }

    /// Lock an output folder for a run: a whole run (`task` None) holds it alone and first clears
    /// the temporary files a killed run left; the tasks of a split run share it, each task once.
    pub fn for_run(dir: &Path, task: Option<usize>, tasks: usize) -> Result<Self, LockError> {
        let lock = Self::for_slice(dir, task, tasks)?;
        if task.is_none() {
            remove_stale_temps(dir).map_err(|source| LockError::Io { path: dir.to_path_buf(), source })?;
        }
        Ok(lock)
    }

    /// Wait for, then hold alone, the right to claim `dir`: the tasks of a split run start
    /// together and each checks the folder, then writes its identity; under this lock one does
    /// both before the next looks. Held for a moment, and released by the OS if its holder dies.
    pub fn claiming(dir: &Path) -> Result<Self, LockError> {
        let name = format!("{LOCK_FILE}.claim");
        let file = open_lock_file(dir, &name)?;
        file.lock().map_err(|source| LockError::Io { path: dir.join(name), source })?;
        Ok(Self { _files: vec![file] })
    }

    /// [`FolderLock::exclusive`] for a whole run, [`FolderLock::task`] for one task of a split run.
    pub fn for_slice(dir: &Path, task: Option<usize>, tasks: usize) -> Result<Self, LockError> {
        match task {
            Some(task) => Self::task(dir, task, tasks),
            None => Self::exclusive(dir),
        }
    }
}

fn open_lock_file(dir: &Path, name: &str) -> Result<File, LockError> {
    fs::create_dir_all(dir).map_err(|source| LockError::Io { path: dir.to_path_buf(), source })?;
    let path = dir.join(name);
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| LockError::Io { path, source })
}

/// Write who holds the lock into the lock file, for the error a second run prints.
fn describe_holder(mut file: &File) {
    let command: Vec<String> = std::env::args().collect();
    let text = format!("pid {}: {}\n", std::process::id(), command.join(" "));
    // Best effort: the lock holds whether or not the description lands.
    let _ = file.set_len(0).and_then(|()| file.write_all(text.as_bytes()));
}

fn held(dir: &Path, names: &[&str]) -> LockError {
    let holder = names
        .iter()
        .filter_map(|n| fs::read_to_string(dir.join(n)).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "the tasks of a split run".to_string());
    LockError::Held { dir: dir.to_path_buf(), holder }
}

/// The folder's lock is taken: by the tasks of a split run (whose task locks are held now) or
/// by a whole run (named in the main lock file).
fn held_exclusive(dir: &Path) -> LockError {
    let task_prefix = format!("{LOCK_FILE}.task-");
    let mut tasks: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&task_prefix))
        .filter(|e| {
            // A task lock that cannot be taken now belongs to a live task.
            File::open(e.path()).is_ok_and(|f| matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)))
        })
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|s| s.trim().to_string())
        .collect();
    tasks.sort();
    if tasks.is_empty() {
        return held(dir, &[LOCK_FILE]);
    }
    LockError::Held { dir: dir.to_path_buf(), holder: format!("split-run tasks: {}", tasks.join("; ")) }
}

/// fsync a folder so that a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir)?.sync_all()
}

/// Rename `from` onto `to` and make the rename durable.
pub fn durable_rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Write `bytes` to `path` atomically (temporary name, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    durable_rename(&tmp, path)
}

/// The folder relative paths in the config file `path` are resolved against: its own folder,
/// absolute and with symbolic links resolved, so that `c.toml`, `./c.toml`, `/abs/c.toml` and
/// `../x/c.toml` name the same run.
pub fn config_folder(path: &Path) -> io::Result<PathBuf> {
    let absolute = fs::canonicalize(path)?;
    Ok(absolute.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// `path` resolved against `base` when relative, without `.` components (`./a/./b` is `a/b`).
pub fn resolve_against(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_relative() { base.join(path) } else { path.to_path_buf() };
    joined.components().collect()
}

/// Name of the checksum algorithm, recorded next to every checksum.
pub const CHECKSUM_ALGORITHM: &str = "xxh3-128";

/// xxh3-128 of a file's bytes as 32 lowercase hex digits, streamed in 1 MiB reads.
pub fn file_checksum(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

/// xxh3-128 of bytes in memory, same format as [`file_checksum`].
pub fn bytes_checksum(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temporary_and_checksums_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(fs::read_dir(dir.path()).unwrap().count() == 1, "no temporary is left");
        assert_ne!(temp_path(&path), temp_path(&path), "every writer gets its own temporary name");
        assert!(is_temp_name(&temp_path(&path).file_name().unwrap().to_string_lossy()));
        assert_eq!(file_checksum(&path).unwrap(), bytes_checksum(b"hello"));
        assert_ne!(bytes_checksum(b"hello"), bytes_checksum(b"hellp"));
        assert_eq!(bytes_checksum(b"").len(), 32);
    }

    #[test]
    fn a_held_folder_is_refused_with_its_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FolderLock::exclusive(dir.path()).unwrap();
        let err = FolderLock::exclusive(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(FolderLock::task(dir.path(), 0, 2).is_err(), "a task cannot join a whole run");
        drop(lock);
        let a = FolderLock::task(dir.path(), 0, 2).unwrap();
        let _b = FolderLock::task(dir.path(), 1, 2).unwrap();
        assert!(FolderLock::task(dir.path(), 0, 2).is_err(), "one task runs once");
        let err = FolderLock::exclusive(dir.path()).unwrap_err().to_string();
        assert!(err.contains("split-run tasks") && err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(a);
        assert!(FolderLock::task(dir.path(), 0, 2).is_ok());
        // Task 0 of two stages at once (a domain tokenizes while others deduplicate).
        let _sig = FolderLock::shared_as(dir.path(), "dedupsignatures--0-of-2").unwrap();
        let _tok = FolderLock::shared_as(dir.path(), "tokenize-code-0-of-2").unwrap();
        assert!(FolderLock::shared_as(dir.path(), "tokenize-code-0-of-2").is_err(), "but each piece once");
        // One claim at a time: the second waits for the first to be dropped.
        let claim = FolderLock::claiming(dir.path()).unwrap();
        let released = std::sync::atomic::AtomicBool::new(false);
        let waited = std::thread::scope(|s| {
            let second = s.spawn(|| {
                let _second = FolderLock::claiming(dir.path()).unwrap();
                released.load(std::sync::atomic::Ordering::SeqCst)
            });
            for _ in 0..1_000_000 {
                std::hint::spin_loop(); // give the second claim time to start waiting
            }
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(claim);
            second.join().unwrap()
        });
        assert!(waited, "the second claim got the lock before the first was released");
    }

    #[test]
    fn stale_temporaries_are_recognised_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("run.json.tmp"), b"x").unwrap();
        fs::write(temp_path(&dir.path().join("stats.json")), b"x").unwrap();
        fs::create_dir(dir.path().join(".step-00000002.partial")).unwrap();
        fs::write(dir.path().join("keep.json"), b"x").unwrap();
        fs::create_dir(dir.path().join("parts")).unwrap();
        fs::write(dir.path().join("parts/part-00000.json.9-1.tmp"), b"x").unwrap();
        fs::write(dir.path().join("notes.tmp"), b"a user's file").unwrap();
        // Ours are removed; run.json.tmp (an older version's name) and the user's are only ignored.
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 3);
        assert_eq!(fs::read_dir(dir.path().join("parts")).unwrap().count(), 0);
        fs::remove_dir(dir.path().join("parts")).unwrap();
        let mut left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["keep.json", "notes.tmp", "run.json.tmp"].map(std::ffi::OsString::from));
        assert!(is_debris(&dir.path().join("run.json.tmp")), "but it never blocks a claim");
        fs::remove_file(dir.path().join("run.json.tmp")).unwrap();
        fs::remove_file(dir.path().join("notes.tmp")).unwrap();
        fs::create_dir_all(dir.path().join("parts/inner")).unwrap();
        fs::write(dir.path().join("parts/inner/x.1-2.tmp"), b"x").unwrap();
        assert!(is_debris(&dir.path().join("parts")), "a folder of nothing but temporaries");
        fs::write(dir.path().join("parts/part-00000.json"), b"{}").unwrap();
        assert!(!is_debris(&dir.path().join("parts")));
        assert!(!is_debris(&dir.path().join("keep.json")));
    }
}
