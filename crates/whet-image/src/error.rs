//! The crate's error type.

use std::path::PathBuf;

/// Errors of loading, augmenting, previewing and exporting images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file that is not a regular file, is over its size cap, or cannot be opened.
    #[error(transparent)]
    Input(#[from] whet_core::input::InputError),
    /// A file could not be read.
    #[error("reading `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (a truncated or corrupt gzip stream shows up here).
        #[source]
        source: std::io::Error,
    },
    /// A file's content is not what its format requires.
    #[error("`{}`: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the offending values and what would be valid.
        message: String,
    },
    /// An image file could not be decoded.
    #[error("decoding image `{}`: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The images and the labels disagree.
    #[error("label count {labels} in `{}` does not match image count {images} in `{}`", labels_path.display(), images_path.display())]
    LabelCount {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of images declared.
        images: usize,
        /// Number of labels declared.
        labels: usize,
    },
    /// A configuration or argument is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Shapes of images, sets or buffers disagree.
    #[error("shape mismatch in {op}: {message}")]
    Shape {
        /// Where.
        op: &'static str,
        /// The shapes involved.
        message: String,
    },
    /// An atomic write failed.
    #[error(transparent)]
    Write(#[from] whet_core::fsx::FsError),
    /// Encoding an image for writing failed.
    #[error("encoding `{}`: {source}", path.display())]
    Encode {
        /// The destination.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A Parquet shard could not be read or written (the error of the caller's
    /// [`ParquetShards`](crate::ParquetShards)).
    #[error(transparent)]
    Parquet(Box<dyn std::error::Error + Send + Sync>),
    /// An estimate over the memory budget, found before allocating (see
    /// [`whet_core::budget`]).
    #[error(transparent)]
    Budget(#[from] whet_core::BudgetError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
