//! Atomic writes and content checksums.
//!
//! Every finished artefact is written under a temporary name in its final folder, fsynced, then
//! renamed: a reader sees either the old file, no file, or the complete new one.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

/// The temporary name used while `path` is being written (same folder, so rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
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
        assert!(!temp_path(&path).exists());
        assert_eq!(file_checksum(&path).unwrap(), bytes_checksum(b"hello"));
        assert_ne!(bytes_checksum(b"hello"), bytes_checksum(b"hellp"));
        assert_eq!(bytes_checksum(b"").len(), 32);
    }
}
