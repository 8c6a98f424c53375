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

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}

/// Refuses an output folder path that exists as something other than a folder (a regular
/// file, a device), before any work: otherwise the run would train and fail only when it
/// writes its first output.
///
/// # Errors
/// [`Error::Invalid`] naming the path.
pub fn check_out_folder(out: &std::path::Path) -> Result<()> {
    match std::fs::metadata(out) {
        Ok(m) if !m.is_dir() => Err(Error::Invalid(format!(
            "the output folder `{}` exists and is not a folder (a file of {} bytes): give a folder path for `--out` (it is created if missing)",
            out.display(),
            m.len()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::Invalid(format!(
            "the output folder `{}` cannot be made: a part of its path is a file, not a folder; give a folder path for `--out`",
            out.display()
        ))),
        _ => Ok(()),
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
