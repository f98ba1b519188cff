//! One error type for the whole crate: every failure names the file, the element and the problem.

use std::path::{Path, PathBuf};

/// `std::result::Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a normalization run can fail; the `Display` text is the message shown to the
/// user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something is wrong with the input: unreadable, not `AnnData`, malformed, or values
    /// atlasnorm refuses (NaN reaching log1p, ...).
    #[error("{}: {}{problem}", file.display(), element_prefix(element))]
    Input {
        /// The input file (or store directory / URL) that was read.
        file: PathBuf,
        /// The element concerned, as a store path (`X/data`, `obs`, ...); empty when the
        /// problem is the file itself (then the message names none).
        element: String,
        /// What is wrong, in plain words.
        problem: String,
    },
    /// Writing the output failed (the partial output has been removed).
    #[error("{}: {problem}", file.display())]
    Output {
        /// The final output path (not the temporary name it was written under).
        file: PathBuf,
        /// What failed, with OS causes reworded by [`plain_os_problem`].
        problem: String,
    },
    /// The options contradict each other or are out of range.
    #[error("{0}")]
    Options(
        /// What is wrong with the options.
        String,
    ),
    /// A bug in atlasnorm (a worker thread panicked, ...); please report it.
    #[error("internal error: {0}")]
    Internal(
        /// What went wrong.
        String,
    ),
}

impl Error {
    /// An [`Error::Input`] for `element` of `file` (`""`: the file as a whole; the paths
    /// are copied).
    pub fn input(file: &Path, element: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Input {
            file: file.to_path_buf(),
            element: element.into(),
            problem: problem.into(),
        }
    }

    /// An output-side failure. A problem caused by the operating system (it carries
    /// std's "(os error N)", as [`std::io::Error`] and the HDF5 error mapping write it) is
    /// reworded plainly, e.g. "no space left on device while writing X/data (chunk 3)":
    /// see [`plain_os_problem`].
    pub fn output(file: &Path, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        Error::Output {
            file: file.to_path_buf(),
            problem: plain_os_problem(&problem).unwrap_or(problem),
        }
    }
}

/// The operating system's message for `errno`, in lower case and without the number:
/// "no space left on device", "read-only file system", "permission denied", ...
pub fn os_message(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("os error {errno}"),
    }
}

/// The OS error in an [`std::io::Error`], worded as [`os_message`] does (other errors:
/// their text).
pub fn io_message(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => os_message(n),
        None => e.to_string(),
    }
}

/// `problem` reworded when the operating system caused it: the first "(os error N)" in it
/// gives the cause, which replaces everything from the first layer of wrapping on (zarrs'
/// "storage error: IO error: ...", the OS's own capitalized text); what the failed step was
/// doing leads in: an element path (a first segment without spaces) and a `cannot VERB ...`
/// segment become "CAUSE while `VERBing` ELEMENT (REST)". `None` when no OS error is named.
///
/// The messages reworded are atlasnorm's own ("X/data: cannot write chunk 3: ...",
/// "cannot copy obsm: ...", "cannot close the output: ..."), so a simple reading suffices.
pub fn plain_os_problem(problem: &str) -> Option<String> {
    let errno = os_errno_in(problem)?;
    let cause = os_message(errno);
    let mut element = None;
    let mut action = None;
    for (i, segment) in problem.split(": ").enumerate() {
        if segment.contains("(os error ") {
            break;
        }
        if let Some(rest) = segment.strip_prefix("cannot ") {
            action = Some(rest);
            break;
        }
        if i == 0 && !segment.is_empty() && !segment.contains(' ') {
            element = Some(segment);
        } else {
            // A wrapper ("storage error", "IO error", ...): the OS cause follows.
            break;
        }
    }
    let (verb, rest) = match action {
        Some(a) => a.split_once(' ').unwrap_or((a, "")),
        None => ("write", ""),
    };
    let doing = match gerund(verb) {
        Some(g) => g.to_string(),
        None => format!("trying to {verb}"),
    };
    Some(match (element, rest.is_empty()) {
        (Some(e), true) => format!("{cause} while {doing} {e}"),
        (Some(e), false) => format!("{cause} while {doing} {e} ({rest})"),
        (None, false) => format!("{cause} while {doing} {rest}"),
        (None, true) if action.is_some() => format!("{cause} while {doing}"),
        (None, true) => cause,
    })
}

/// The N of the first "(os error N)" in `text`.
fn os_errno_in(text: &str) -> Option<i32> {
    let at = text.find("(os error ")?;
    let digits: String = text[at + "(os error ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&n| n > 0)
}

fn gerund(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "write" => "writing",
        "create" => "creating",
        "copy" => "copying",
        "close" => "closing",
        "move" => "moving",
        "remove" => "removing",
        "open" => "opening",
        "flush" => "flushing",
        "list" => "listing",
        "read" => "reading",
        "store" => "storing",
        "clear" => "clearing",
        "rename" => "renaming",
        "lock" => "locking",
        _ => return None,
    })
}

/// `"ELEMENT: "`, or nothing for a problem of the whole file.
fn element_prefix(element: &str) -> String {
    if element.is_empty() {
        String::new()
    } else {
        format!("{element}: ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(problem: &str) -> String {
        match Error::output(Path::new("out.h5ad"), problem) {
            Error::Output { problem, .. } => problem,
            _ => unreachable!(),
        }
    }

    #[test]
    fn os_errors_are_worded_plainly_with_the_element_and_the_step() {
        let enospc = std::io::Error::from_raw_os_error(28).to_string();
        assert_eq!(os_message(28), "no space left on device");
        assert_eq!(os_message(30), "read-only file system");
        assert_eq!(
            plain(&format!("X/data: cannot write chunk 3: {enospc}")),
            "no space left on device while writing X/data (chunk 3)"
        );
        assert_eq!(
            plain(&format!(
                "X/data: cannot write chunk [0]: storage error: IO error: {enospc}"
            )),
            "no space left on device while writing X/data (chunk [0])"
        );
        assert_eq!(
            plain(&format!("cannot copy obsm: {enospc}")),
            "no space left on device while copying obsm"
        );
        assert_eq!(
            plain(&format!("cannot close the output: {enospc}")),
            "no space left on device while closing the output"
        );
        assert_eq!(
            plain(&format!("obs/size_factor: {enospc}")),
            "no space left on device while writing obs/size_factor"
        );
        assert_eq!(
            plain("cannot create the temporary directory /d/.o.zarr.tmp: Read-only file system (os error 30)"),
            "read-only file system while creating the temporary directory /d/.o.zarr.tmp"
        );
        assert_eq!(
            plain(&format!("storage error: {enospc}")),
            "no space left on device"
        );
        // Reworded once; without an OS error nothing changes.
        let once = plain(&format!("X/data: cannot write chunk 3: {enospc}"));
        assert_eq!(plain(&once), once);
        assert_eq!(plain("X/data: ends at 3"), "X/data: ends at 3");
    }
}
