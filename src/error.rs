//! One error type for the whole crate: every failure names the file, the element and the problem.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something is wrong with the input: unreadable, not AnnData, malformed, or values
    /// atlasnorm refuses (NaN reaching log1p, ...).
    #[error("{}: {element}: {problem}", file.display())]
    Input {
        file: PathBuf,
        element: String,
        problem: String,
    },
    /// Writing the output failed (the partial output has been removed).
    #[error("{}: {problem}", file.display())]
    Output { file: PathBuf, problem: String },
    /// The options contradict each other or are out of range.
    #[error("{0}")]
    Options(String),
    /// A bug in atlasnorm (a worker thread panicked, ...); please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn input(file: &Path, element: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Input {
            file: file.to_path_buf(),
            element: element.into(),
            problem: problem.into(),
        }
    }

    pub fn output(file: &Path, problem: impl Into<String>) -> Self {
        Error::Output {
            file: file.to_path_buf(),
            problem: problem.into(),
        }
    }
}
