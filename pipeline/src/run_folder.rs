//! Output folders of the stages: who may write into one, and how a rerun resumes it.
//!
//! A stage's folder holds an identity file (what produced it). A rerun with the same identity
//! resumes; another identity is refused unless `--force` removes the stage's outputs first; a
//! folder holding files the stage did not write is refused (debris of a killed run aside).
//! Work is split across machines by input file ([`TaskSlice`]), each part named [`part_name`].

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use util::fsutil::write_atomic;

use crate::file_error::FileError;

/// What produced a stage's output folder; a rerun must match it to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub stage: String,
    pub inputs: Vec<String>,
    pub settings: serde_json::Value,
}

impl RunIdentity {
    pub fn new(stage: &str, inputs: &[PathBuf], settings: serde_json::Value) -> Self {
        Self {
            stage: stage.to_string(),
            inputs: inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            settings,
        }
    }
}

/// A split stage's parts: all finished (and summarised), or the names of those still missing.
#[derive(Debug)]
pub enum Parts<T> {
    Complete(T),
    Missing(Vec<String>),
}

/// Do each of the `count` parts that `slice` owns and whose done-marker (`marker(i)`: the part's
/// result as JSON) is not there yet, then write its marker, so that a part is finished exactly
/// when its marker exists. A task touches only its own parts.
pub fn run_parts<T: Serialize + DeserializeOwned, E: From<FileError>>(
    count: usize,
    slice: TaskSlice,
    marker: impl Fn(usize) -> PathBuf,
    mut work: impl FnMut(usize) -> Result<T, E>,
) -> Result<(), E> {
    for i in (0..count).filter(|&i| slice.owns(i)) {
        let path = marker(i);
        if read_marker::<T>(&path).is_some() {
            continue;
        }
        let done = work(i)?;
        let bytes = serde_json::to_vec_pretty(&done).expect("serialisable");
        write_atomic(&path, &bytes).map_err(FileError::at(&path))?;
    }
    Ok(())
}

/// Every part's result once all `count` markers exist, else the parts missing (`name(i)`).
pub fn finished_parts<T: DeserializeOwned>(
    count: usize,
    marker: impl Fn(usize) -> PathBuf,
    name: impl Fn(usize) -> String,
) -> Parts<Vec<T>> {
    let mut done = Vec::with_capacity(count);
    let mut missing = Vec::new();
    for i in 0..count {
        match read_marker(&marker(i)) {
            Some(part) => done.push(part),
            None => missing.push(name(i)),
        }
    }
    if missing.is_empty() { Parts::Complete(done) } else { Parts::Missing(missing) }
}

fn read_marker<T: DeserializeOwned>(path: &Path) -> Option<T> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Cumulative progress, reported after each batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub documents: u64,
    pub bytes: u64,
    pub kept: u64,
}

/// Which input files a task owns when work is split across machines: file i belongs to task
/// i mod tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSlice {
    pub task: usize,
    pub tasks: usize,
}

impl TaskSlice {
    /// Everything, on this machine.
    pub const ALL: Self = Self { task: 0, tasks: 1 };

    pub fn owns(&self, file_index: usize) -> bool {
        file_index % self.tasks == self.task
    }
}

pub fn part_name(i: usize) -> String {
    format!("part-{i:05}")
}

#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] util::fsutil::LockError),
    #[error("{path}: unreadable identity file; use --force to start over")]
    Unreadable { path: PathBuf },
    #[error("{path}: holds {what} (other inputs or settings); choose another folder or pass --force")]
    AnotherRun { path: PathBuf, what: &'static str },
    #[error("{path}: is not empty ({entry}) and was not written by this stage; choose another folder or pass --force")]
    Foreign { path: PathBuf, entry: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunFolderError + '_ {
    move |source| RunFolderError::Io { path: path.to_path_buf(), source }
}

/// One kind of output folder.
pub struct Folder<'a> {
    pub dir: &'a Path,
    /// Where the identity lives, relative to `dir`.
    pub identity_file: &'a str,
    /// What the folder holds, for the refusal: "the output of a different run", "another dataset".
    pub what: &'static str,
    /// Entries this stage writes: `--force` removes them.
    pub is_output: &'a dyn Fn(&str) -> bool,
    /// Entries other stages may have put there (prepare's `filtered/` beside a dataset).
    pub allowed: &'a [&'a str],
}

impl Folder<'_> {
    /// A text stage's folder (filter, dedup): `run.json` and its stage outputs.
    pub fn stage(dir: &Path) -> Folder<'_> {
        Folder {
            dir,
            identity_file: "run.json",
            what: "the output of a different run",
            is_output: &|name| matches!(name, "kept" | "removed" | "stats" | "work" | "stats.json" | "run.json"),
            allowed: &[],
        }
    }

    /// Claim the folder for `identity`: create it, or check that it holds the same run (to
    /// resume). With `force`, the stage's outputs are removed first.
    pub fn claim(&self, identity: &impl Serialize, force: bool) -> Result<(), RunFolderError> {
        let _claiming = util::fsutil::FolderLock::claiming(self.dir)?;
        let identity_path = self.dir.join(self.identity_file);
        if force && self.dir.is_dir() {
            for entry in std::fs::read_dir(self.dir).map_err(io(self.dir))? {
                let path = entry.map_err(io(self.dir))?.path();
                if (self.is_output)(&path.file_name().unwrap_or_default().to_string_lossy()) {
                    let removed =
                        if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                    removed.map_err(io(&path))?;
                }
            }
        }
        let wanted = serde_json::to_value(identity).expect("serialisable");
        if identity_path.is_file() {
            let existing: serde_json::Value = std::fs::read(&identity_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| RunFolderError::Unreadable { path: identity_path.clone() })?;
            if existing != wanted {
                return Err(RunFolderError::AnotherRun { path: self.dir.to_path_buf(), what: self.what });
            }
            return Ok(());
        }
        if self.dir.is_dir() {
            for entry in std::fs::read_dir(self.dir).map_err(io(self.dir))? {
                let entry = entry.map_err(io(self.dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // What a killed run left half-written, and the folder's lock, are not another run's output.
                if !self.allowed.contains(&name.as_str()) && !util::fsutil::is_debris(&entry.path()) {
                    return Err(RunFolderError::Foreign { path: self.dir.to_path_buf(), entry: name });
                }
            }
        }
        if let Some(parent) = identity_path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let bytes = serde_json::to_vec_pretty(identity).expect("serialisable");
        write_atomic(&identity_path, &bytes).map_err(io(&identity_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_claiming_a_new_folder_at_the_same_moment_all_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let identity = RunIdentity::new("filter", &[PathBuf::from("in.parquet")], serde_json::json!({ "n": 1 }));
        for round in 0..40 {
            let dir = tmp.path().join(format!("r{round}"));
            let start = std::sync::Barrier::new(6);
            let results: Vec<Result<(), String>> = std::thread::scope(|s| {
                let claims: Vec<_> = (0..6)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            Folder::stage(&dir).claim(&identity, false).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                claims.into_iter().map(|c| c.join().unwrap()).collect()
            });
            assert!(results.iter().all(Result::is_ok), "round {round}: {results:?}");
        }
        let other = RunIdentity::new("filter", &[PathBuf::from("other.parquet")], serde_json::json!({ "n": 1 }));
        let refused = Folder::stage(&tmp.path().join("r0")).claim(&other, false).unwrap_err();
        assert!(matches!(refused, RunFolderError::AnotherRun { .. }), "{refused}");
    }
}
