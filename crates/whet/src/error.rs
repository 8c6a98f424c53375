//! The error type of the `whet` crate: every library's error, plus the run workflow's own.

use crate::yaml::ConfigErrors;
use std::path::PathBuf;

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when loading, running, ablating, exporting or applying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file that is not a regular file, is over its size cap, or cannot be opened.
    #[error(transparent)]
    Input(#[from] whet_core::input::InputError),
    /// Problems in a run file, each located (file, line, column, key path).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// Image loading, augmentation or export.
    #[error(transparent)]
    Image(#[from] whet_image::Error),
    /// Table loading, preprocessing, export or apply.
    #[error(transparent)]
    Tabular(#[from] whet_tabular::Error),
    /// Building, training or evaluating the network.
    #[error(transparent)]
    Train(#[from] whet_train::Error),
    /// Writing reports and charts.
    #[error(transparent)]
    Report(#[from] whet_report::Error),
    /// An atomic write failed.
    #[error(transparent)]
    Fs(#[from] whet_core::fsx::FsError),
    /// The output folder is locked by another process (or cannot be locked).
    #[error(transparent)]
    Lock(#[from] whet_core::lock::LockError),
    /// An output that would overwrite or lie among the inputs, or a folder output that is a file.
    /// (Boxed: it holds four paths, and `Error` travels in every `Result`.)
    #[error(transparent)]
    Output(Box<whet_core::outputs::OutputError>),
    /// An estimate over the memory budget, found before allocating (see
    /// [`whet_core::budget`]).
    #[error(transparent)]
    Budget(#[from] whet_core::BudgetError),
    /// Reading or writing a file or folder failed.
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `creating the output folder`…).
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file whose content is not what whet wrote.
    #[error("`{}` is not a valid {what}: {source}", path.display())]
    Json {
        /// What the file should be (`whet manifest`, `run record`…).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The data do not allow a run (an empty split, an augmentation that changes the image
    /// size…); the message says what to change.
    #[error("{0}")]
    Data(String),
    /// A request that does not fit the run (an option for the other kind of data, a variant
    /// that does not exist…); the message says what is valid.
    #[error("{0}")]
    Invalid(String),
    /// The run itself failed (every run of an ablation failed, the pretrain run diverged…): the
    /// input was fine, the training was not. The CLI exits with 1 for this, 2 for the rest.
    #[error("{0}")]
    Failed(String),
    /// Something failed while working on `context` (a run of an ablation, the pretrain run…).
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

impl From<whet_core::outputs::OutputError> for Error {
    fn from(e: whet_core::outputs::OutputError) -> Error {
        Error::Output(Box::new(e))
    }
}

impl Error {
    /// Wraps `self` with what was being done.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// Whether this is, or wraps, [`Error::Failed`].
    pub fn is_failed_run(&self) -> bool {
        match self {
            Error::Failed(_) => true,
            Error::Context { source, .. } => source.is_failed_run(),
            _ => false,
        }
    }

    /// Whether trying again could succeed ([`FailureKind::Environment`]: an I/O error such as a
    /// full disk or a folder in the way, a lock held by another process) or the same input would
    /// fail the same way ([`FailureKind::Deterministic`]: invalid config, bad data, a failed
    /// run). Decided by the error's type: the variant, and the [`std::io::Error`] kinds in its
    /// causes (data that cannot be decoded is deterministic even when it surfaces as an I/O
    /// error of kind `InvalidData` or `UnexpectedEof`).
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Error::Context { source, .. } => source.failure_kind(),
            // The budget is the machine's (or `--max-memory`), not part of the cell's hash: a
            // cell refused for memory runs again on a larger machine or with a larger budget.
            Error::Lock(_) | Error::Budget(_) => FailureKind::Environment,
            Error::Config(_) | Error::Invalid(_) | Error::Data(_) | Error::Failed(_) => {
                FailureKind::Deterministic
            }
            _ => {
                let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
                while let Some(e) = cur {
                    if let Some(io) = e.downcast_ref::<std::io::Error>() {
                        return io_failure_kind(io);
                    }
                    cur = e.source();
                }
                FailureKind::Deterministic
            }
        }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}

/// Whether a failure can go away when tried again (see [`Error::failure_kind`]); an ablation
/// cell keeps a deterministic failure and retries an environmental one on resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The environment failed (I/O error, full disk, lock held, killed): try again.
    Environment,
    /// The input fails this way every time (invalid config, bad data, a failed run).
    Deterministic,
}

/// The kind of failure an I/O error is: undecodable data is deterministic, the rest is the
/// environment's.
fn io_failure_kind(e: &std::io::Error) -> FailureKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::InvalidData | K::InvalidInput | K::UnexpectedEof => FailureKind::Deterministic,
        _ => FailureKind::Environment,
    }
}

/// Adds context to a result's error.
pub(crate) trait ResultExt<T> {
    /// Wraps the error with what was being done.
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
}

/// An error and its causes on one line, `outer: cause: cause`, leaving out a cause whose text
/// the line already holds (library errors often show their source in their own message as well
/// as returning it from `source()`).
pub fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cur = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn io_error(kind: io::ErrorKind) -> Error {
        Error::Io {
            what: "writing",
            path: "x".into(),
            source: io::Error::new(kind, "test"),
        }
    }

    #[test]
    fn failure_kinds_follow_the_error_type() {
        use FailureKind::{Deterministic, Environment};
        let fs = Error::Fs(whet_core::fsx::FsError {
            action: "writing",
            path: "out/metrics.json".into(),
            source: io::Error::new(io::ErrorKind::StorageFull, "No space left on device"),
        });
        assert_eq!(fs.failure_kind(), Environment);
        assert_eq!(
            io_error(io::ErrorKind::IsADirectory).failure_kind(),
            Environment
        );
        assert_eq!(
            io_error(io::ErrorKind::InvalidData).failure_kind(),
            Deterministic
        );
        // Wrapped in a library error and in context.
        let img = Error::Image(whet_image::Error::Read {
            path: "a.idx".into(),
            source: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        })
        .context("run baseline seed 1");
        assert_eq!(img.failure_kind(), Environment);
        let tab = Error::Tabular(whet_tabular::Error::Target("one class".into()));
        assert_eq!(tab.failure_kind(), Deterministic);
        let lock = Error::Lock(whet_core::lock::LockError::Held {
            folder: "out".into(),
            pid: Some(7),
        });
        assert_eq!(lock.context("cell").failure_kind(), Environment);
        for e in [
            Error::Invalid("x".into()),
            Error::Data("x".into()),
            Error::Failed("x".into()),
            Error::Train(whet_train::Error::Config("x".into())),
        ] {
            assert_eq!(e.failure_kind(), Deterministic, "{e}");
        }
    }
}
