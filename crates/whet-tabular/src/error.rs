//! The error type of whet-tabular.

use std::path::PathBuf;

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, transforming, splitting or exporting tables.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file that is not a regular file, is over its size cap, or cannot be opened.
    #[error(transparent)]
    Input(#[from] whet_core::input::InputError),
    /// Reading a file failed.
    #[error("reading `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An atomic write failed.
    #[error(transparent)]
    Fs(#[from] whet_core::fsx::FsError),
    /// A Parquet file that is not an image shard as whet and Hugging Face `datasets` write
    /// them ([`crate::read_image_parquet`]).
    #[error("`{}`: {message}", path.display())]
    ImageShard {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the column and what it should hold.
        message: String,
    },
    /// A table without data rows (only a header, or nothing).
    #[error("`{}` holds no data rows (only a header, or nothing): add rows, or check that this is the right file", path.display())]
    EmptyTable {
        /// The file.
        path: PathBuf,
    },
    /// A file extension whose format is unknown.
    #[error("`{}`: unknown table format (expected .csv, .csv.gz or .parquet)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A malformed CSV row, located.
    #[error("`{}` line {line}, column `{column}` (field {field}): {message}", path.display())]
    MalformedRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// Column name (or `?` when the row has more fields than the header).
        column: String,
        /// 1-based field number.
        field: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// polars failed to read a table (and the row-level diagnosis found nothing more precise).
    #[error("reading `{}`: {source}", path.display())]
    ReadTable {
        /// The file.
        path: PathBuf,
        /// The polars error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A Parquet file whose footer or page headers declare sizes or counts that cannot be true
    /// (checked before polars reads it, because polars aborts the process on some of them).
    #[error(
        "`{}`: corrupt data in the Parquet {part} at byte {}: {message}",
        path.display(),
        crate::parquet_guard::thousands(*offset)
    )]
    CorruptParquet {
        /// The file.
        path: PathBuf,
        /// `file`, `footer`, or `column chunk C of row group G`.
        part: String,
        /// Byte offset of the offending value in the file.
        offset: u64,
        /// What is wrong, with the declared and the possible values.
        message: String,
    },
    /// A reader (polars' Parquet or CSV decoder) panicked on the file: it is damaged or not a
    /// valid file of its format. [`crate::load_table`] catches the panic and names the file.
    #[error(
        "reading `{}`: the {format}reader failed on corrupt data ({detail}); the file is damaged or not a valid {format}file",
        path.display()
    )]
    CorruptTable {
        /// The file.
        path: PathBuf,
        /// `Parquet ` or empty (for CSV), as the message says it.
        format: &'static str,
        /// The first line of the reader's panic message.
        detail: String,
    },
    /// A column that a config names is not in the table.
    #[error(
        "{context}: column `{column}` not found (have: {available:?}){}",
        delimiter_hint(available)
    )]
    ColumnNotFound {
        /// The column.
        column: String,
        /// Where it was needed.
        context: String,
        /// The columns present.
        available: Vec<String>,
    },
    /// A table name that is not declared under `data.tables`.
    #[error("table `{name}` is not declared (have: {available:?})")]
    UnknownTable {
        /// The name.
        name: String,
        /// Declared names.
        available: Vec<String>,
    },
    /// A join whose declared cardinality does not hold.
    #[error(
        "join with `{with}`: declared {declared} but {side} keys are not unique: {duplicates} duplicated rows (e.g. {example})"
    )]
    Cardinality {
        /// The right table.
        with: String,
        /// The declared cardinality.
        declared: String,
        /// `left` or `right`.
        side: &'static str,
        /// Number of rows whose key occurs more than once.
        duplicates: usize,
        /// One duplicated key, printed.
        example: String,
    },
    /// A join that would multiply rows.
    #[error(
        "join with `{with}` is many-to-many ({left_dups} left and {right_dups} right rows have duplicated keys) and would multiply rows; set `allow_many_to_many: true` if intended"
    )]
    ManyToMany {
        /// The right table.
        with: String,
        /// Left rows with duplicated keys.
        left_dups: usize,
        /// Right rows with duplicated keys.
        right_dups: usize,
    },
    /// Join keys of different types.
    #[error("join with `{with}`: key `{left}` is {left_type} but `{right}` is {right_type}")]
    KeyType {
        /// The right table.
        with: String,
        /// Left key.
        left: String,
        /// Its type.
        left_type: String,
        /// Right key.
        right: String,
        /// Its type.
        right_type: String,
    },
    /// A column has a type a stage cannot use.
    #[error("{context}: column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        /// The column.
        column: String,
        /// The stage or place.
        context: String,
        /// Its type.
        found: String,
        /// What would work.
        expected: String,
    },
    /// A column has no usable value in the training split, so nothing can be fitted.
    #[error("{stage}: column `{column}` has no non-missing value in the training split")]
    NothingToFit {
        /// The stage.
        stage: String,
        /// The column.
        column: String,
    },
    /// A feature is NaN or infinite, or still missing at the end.
    #[error(
        "feature `{column}` has {count} {what} values in the {split} split after stage `{stage}`"
    )]
    NonFinite {
        /// The column.
        column: String,
        /// The stage after which it was found.
        stage: String,
        /// `train`, `validation`, `test` or `apply`.
        split: String,
        /// How many values.
        count: usize,
        /// `non-finite` or `missing`.
        what: &'static str,
    },
    /// The target cannot be built.
    #[error("target: {0}")]
    Target(String),
    /// A split cannot be made as configured.
    #[error("split: {0}")]
    Split(String),
    /// The config is invalid (the issues, joined).
    #[error("invalid tabular config: {0}")]
    Config(String),
    /// A table larger than the memory budget meets something that needs every row at once.
    #[error("{key}: {reason}")]
    CannotStream {
        /// The run-file key path of what cannot stream (`split.method`, `steps[3].audit`).
        key: String,
        /// Why, and what would stream.
        reason: String,
    },
    /// The audit found flags listed in `fail_on`.
    #[error("audit stopped the run: {0}")]
    AuditFailed(String),
    /// A manifest could not be parsed or written.
    #[error("manifest `{}`: {source}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// New data does not match what the manifest was fitted on.
    #[error("apply: {0}")]
    Apply(String),
    /// A step failed; the step is named.
    #[error("step {index} `{name}`: {source}")]
    Step {
        /// 0-based index in `steps`.
        index: usize,
        /// Short name of the step.
        name: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
    /// Any other polars error.
    #[error(transparent)]
    Polars(#[from] polars::error::PolarsError),
    /// An estimate over the memory budget, found before allocating (see
    /// [`whet_core::budget`]).
    #[error(transparent)]
    Budget(#[from] whet_core::BudgetError),
}

/// When a table has one column whose name holds a likely delimiter (`;`, tab, `|`), the file was
/// most likely split with the wrong one: a hint naming the `delimiter` to set, else nothing.
pub(crate) fn delimiter_hint(available: &[String]) -> String {
    let [only] = available else {
        return String::new();
    };
    [(';', "\";\""), ('\t', "\"\\t\""), ('|', "\"|\"")]
        .iter()
        .find(|(c, _)| only.contains(*c))
        .map_or_else(String::new, |(_, yaml)| {
            format!(
                "; the table has one column whose name holds `{}`: the file is probably delimited by it, so set the table's `delimiter: {yaml}`",
                yaml.trim_matches('"')
            )
        })
}
