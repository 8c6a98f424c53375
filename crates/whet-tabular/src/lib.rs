//! Tabular preprocessing for whet, on polars' eager API: loading CSV / CSV.gz / Parquet, joins,
//! missing values, normalisation, encoding, targets, leak-free splits, an input audit, and export
//! with a replayable manifest.
//!
//! The main entry points are [`prepare`] (config → arrays per split + reports + [`Manifest`]),
//! [`audit()`], [`export()`] and [`apply()`]. Every post-split step is a [`Stage`] whose
//! [`Stage::fit`] sees only the training split and returns a [`FittedStage`]; the fitted
//! parameters serialise into the manifest, so new data get exactly the same treatment.
//!
//! ```
//! use polars::prelude::*;
//! use whet_tabular::{ImputeConfig, NormalizeConfig, Stage};
//! # fn main() -> whet_tabular::Result<()> {
//! let train = df!("x" => [Some(1.0), None, Some(3.0)])?;
//! let test = df!("x" => [None, Some(100.0)])?;
//! let imputer = ImputeConfig::default().fit(&train)?; // median of train: 2
//! let scaler = NormalizeConfig { method: Default::default(), columns: vec![], exclude: vec![] }
//!     .fit(&imputer.transform(train)?)?;
//! let out = scaler.transform(imputer.transform(test)?)?;
//! // The test gap is filled with the train median, then scaled with train statistics (0 here).
//! assert_eq!(out.column("x")?.f64()?.get(0), Some(0.0));
//! # Ok(()) }
//! ```

mod audit;
mod encode;
mod error;
mod export;
mod graph;
mod images;
mod join;
mod kernel;
mod load;
mod loaded;
mod missing;
mod parquet_guard;
mod pipeline;
mod quantile;
mod replay;
mod rows;
mod rowshards;
mod scale;
mod schema;
mod split;
mod stage;
mod stream;
mod target;

pub use audit::{AuditConfig, AuditFlag, AuditReport, FlagKind, audit_frame};
pub use encode::{DatePart, EncodeConfig, FittedEncode};
pub use error::{Error, Result};
pub use export::{
    ExportFormat, ExportReport, FileEntry, MANIFEST_FORMAT, MAX_MANIFEST_BYTES, Manifest,
    SplitWriters, TableWriter, export, npy_bytes, npy_cannot_stream, read_npy, split_frame,
    split_ids, split_table, write_split, write_splits,
};
pub use graph::{ColumnOp, GraphPlan, GraphStep, graph_input, graph_input_file, graph_plan};
pub use images::{ImageRows, count_image_parquet, read_image_parquet, write_image_parquet};
pub use join::{Cardinality, JoinConfig, JoinHow, JoinReport, join};
pub use load::{
    ColumnType, Delimiter, LoadReport, MAX_INFER_ROWS, MAX_TABLE_BYTES, Quote, SCAN_BYTES,
    SCAN_ROWS, TableFormat, TableSpec, TextEncoding, load_table, scan_column, scan_head,
};
pub use loaded::LoadedTables;
pub use missing::{
    CategoricalFill, DropColumnsConfig, DropHow, DropRowsConfig, FillConfig, FillMethod, FillValue,
    FittedDropColumns, FittedImpute, ImputeConfig, NumericFill,
};
pub use parquet_guard::check_parquet;
pub use pipeline::{
    Applied, PrepareReport, Prepared, SplitArrays, SplitRows, StepConfig, StepReport, TablesConfig,
    TabularConfig, Transformed, apply, apply_file, audit, load_new_data, load_tables, prepare,
    to_matrix, transform,
};
pub use polars;
pub use replay::{NewBatch, NewData, NewDataReport};
pub use rows::{BadRow, ROW_ID, bad_rows, check_clashes, row_columns};
pub use rowshards::{
    DEFAULT_SHUFFLE_ROWS, RowShardWriter, RowShards, RowStream, Rows, SHARD_ROWS, memory_blocks,
};
pub use scale::{ClipConfig, FittedClip, FittedNormalize, NormMethod, NormalizeConfig};
pub use schema::check_columns;
pub use split::{
    Fold, RowKeys, SplitConfig, SplitIndices, SplitMethod, hash_assign, hash_split_of,
    split_indices,
};
pub use stage::{FittedStage, FittedStep, Fitter, Stage};
pub use stream::{
    BATCH_ROWS, Destination, StreamReport, check_streamable, must_stream, prepare_streamed,
    table_bytes,
};
pub use target::{DEFAULT_MAX_CLASSES, Target, TargetConfig, TargetKind, extract_target};
