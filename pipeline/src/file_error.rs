//! A failure at one file, with its cause kept: the operating system's, or the parquet, arrow or
//! JSON layer's (a corrupt or truncated file). Every stage's error wraps this.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: FileFault,
}

#[derive(Debug, thiserror::Error)]
pub enum FileFault {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl<W> From<std::io::IntoInnerError<W>> for FileFault {
    fn from(e: std::io::IntoInnerError<W>) -> Self {
        Self::Io(e.into_error())
    }
}

impl FileError {
    /// `map_err(FileError::at(path))`: the failure `e` at `path`.
    pub fn at<E: Into<FileFault>>(path: &Path) -> impl FnOnce(E) -> FileError + '_ {
        move |e| FileError { path: path.to_path_buf(), source: e.into() }
    }
}
