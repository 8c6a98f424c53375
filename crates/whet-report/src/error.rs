//! Errors of whet-report.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while summarising runs or writing a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A regression chart's predicted and actual columns differ in length, or are empty.
    #[error(
        "regression charts need one prediction per actual value, found {predicted} predictions for {actual} values"
    )]
    Points {
        /// Actual values.
        actual: usize,
        /// Predictions.
        predicted: usize,
    },
    /// An ablation without any variant.
    #[error("ablation has no variants: the first variant must be `baseline`")]
    NoVariants,
    /// The first variant must be the baseline, named `baseline`.
    #[error("the first variant must be named `baseline`, found `{found}`")]
    FirstVariantNotBaseline {
        /// The name of the first variant.
        found: String,
    },
    /// Two variants share a name.
    #[error("variant `{name}` is declared twice (variants {first} and {second})")]
    DuplicateVariant {
        /// The repeated name.
        name: String,
        /// Index of its first declaration.
        first: usize,
        /// Index of its second declaration.
        second: usize,
    },
    /// A run names a variant that is not declared.
    #[error(
        "run {index} (seed {seed}) belongs to unknown variant `{variant}` (declared: {known:?})"
    )]
    UnknownVariant {
        /// Index of the run in `runs`.
        index: usize,
        /// The variant it names.
        variant: String,
        /// Its seed.
        seed: u64,
        /// The declared variants.
        known: Vec<String>,
    },
    /// Two runs of one variant have the same seed, which would break the pairing of seeds.
    #[error("variant `{variant}` has two runs with seed {seed} (runs {first} and {second})")]
    DuplicateRun {
        /// The variant.
        variant: String,
        /// The repeated seed.
        seed: u64,
        /// Index of the first run.
        first: usize,
        /// Index of the second run.
        second: usize,
    },
    /// A metric name that is empty or collides with a fixed column of `ablation.csv`.
    #[error(
        "run {index} (variant `{variant}`, seed {seed}) has metric name `{name}`, which is not \
         allowed: metric names must be non-empty and differ from {reserved:?}"
    )]
    BadMetricName {
        /// Index of the run in `runs`.
        index: usize,
        /// The run's variant.
        variant: String,
        /// The run's seed.
        seed: u64,
        /// The offending name.
        name: String,
        /// The reserved column names.
        reserved: &'static [&'static str],
    },
    /// Some runs finished ok but none of them reported the primary metric.
    #[error(
        "primary metric `{metric}` is missing from every ok run (metrics reported: {available:?})"
    )]
    PrimaryMetricMissing {
        /// The primary metric asked for.
        metric: String,
        /// The metrics the ok runs do report.
        available: Vec<String>,
    },
    /// A confusion matrix whose shape does not match its labels.
    #[error(
        "confusion matrix with {labels} labels must have {labels} rows of {labels} counts, \
         found {rows} rows{}",
        bad_row.map(|(i, n)| format!(" (row {i} has {n} counts)")).unwrap_or_default()
    )]
    ConfusionShape {
        /// Number of labels.
        labels: usize,
        /// Number of rows given.
        rows: usize,
        /// The first row with the wrong length, and its length.
        bad_row: Option<(usize, usize)>,
    },
    /// The embedded chart font could not be parsed (a build problem, not a user one).
    #[error("the embedded font DejaVuSans.ttf could not be loaded by the chart renderer")]
    Font,
    /// Drawing a chart failed.
    #[error("drawing chart `{}`: {source}", file.display())]
    Chart {
        /// The chart file being drawn.
        file: PathBuf,
        /// What the renderer reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Encoding a PNG failed.
    #[error("encoding PNG `{}`: {source}", file.display())]
    Png {
        /// The PNG file.
        file: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// Serialising JSON failed.
    #[error("serialising `{}`: {source}", file.display())]
    Json {
        /// The JSON file.
        file: PathBuf,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file system error (with its path).
    #[error(transparent)]
    Fs(#[from] whet_core::fsx::FsError),
}
