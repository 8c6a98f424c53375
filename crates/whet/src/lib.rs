//! **whet** as a library: one YAML run file (or the same thing built in code) from raw data to a
//! trained network, its metrics and a per-stage ablation report. The `whet` command-line tool is
//! a thin layer over this crate; everything it does, a Rust program can do with the same types.
//!
//! # The main types
//! - [`RunFile`]: the run file as written (serde, with every crate's config types).
//!   [`RunFile::from_path`] / [`RunFile::from_yaml`] parse it once, with located,
//!   did-you-mean errors, and validate it into a [`Run`]; [`RunFile::images`] /
//!   [`RunFile::tables`] and the `with_*` setters build one in code.
//! - [`Run`]: a validated run. [`Run::prepare`] gives the [`Prepared`] data (typed arrays, the
//!   fitted preprocessing, class names); [`Run::execute`] trains and evaluates and returns a
//!   [`RunOutcome`] with its [`Metrics`] and [`Manifest`]; [`Run::export`] writes the very data
//!   the run trains on.
//! - [`predict`] scores new data with a trained run's preprocessing and network;
//!   [`evaluate`] measures it on new labelled data as a run measures its test set.
//! - [`Ablation::plan`] expands the `ablation` section into a [`Plan`] of cells
//!   (variant × seed); [`Plan::run_cell`] runs one, [`Plan::collect`] writes the report.
//! - [`track`] logs runs and ablations to an MLflow tracking server ([`track::MlflowRun`]).
//!
//! # Quickstart
//! ```no_run
//! use whet::prelude::*;
//! # fn main() -> whet::Result<()> {
//! let run = RunFile::from_path("pipelines/mnist-augment-small.yaml")?;
//! let outcome = run.execute("runs/small", run.seed(), &Cache::new(true), &NoProgress)?;
//! println!("test accuracy {:.4}", outcome.metrics.test["accuracy"]);
//! # Ok(()) }
//! ```
//!
//! The crates underneath are re-exported: [`image`] (loading, augmentation, input noise),
//! [`tabular`] (tables on polars: joins, missing values, encoding, splits), [`train`] (the
//! network and its training), [`report`] (statistics over seeds, reports, charts) and [`core`]
//! (seeded random streams, atomic writes, progress).

// `ConfigError` carries the file, position, key path, message, hint and snippet. It is returned
// once per run file, never in a hot loop, so boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod ablation;
mod cache;
pub mod cluster;
mod compose;
mod datacheck;
mod error;
mod execute;
mod export;
mod inputs;
mod manifest;
mod model_export;
mod predict;
mod prepare;
mod reference;
mod runfile;
mod shards;
pub mod slurm;
pub mod track;
mod variants;
mod yaml;

pub use ablation::{
    Ablation, AblationConfig, AblationReport, Cell, CellResult, ListedVariant, Plan, PlanListing,
    PlanOptions, PlannedVariant, Rounds, SeedDecision, SeedReason, Seeds, VariantConfig,
};
pub use cache::{Cache, cache_root};
pub use cluster::{KubernetesOptions, PLAN_FILE, PlanFile, StoredPlan};
pub use error::{Error, FailureKind, Result, chain_text};
pub use execute::{
    ClassBreakdown, CrossValidation, EvaluatedOn, FoldMetrics, METRICS_DVC_JSON, Metrics,
    RunOutcome,
};
pub use export::{DEFAULT_SHARD_BYTES, ExportFormat, ExportOptions, ExportReport};
pub use inputs::{InputRole, RunInput};
pub use manifest::{ApplyReport, FileEntry, MANIFEST_FORMAT, Manifest, ManifestKind, apply};
pub use model_export::{
    ModelExportOptions, ModelExportReport, ModelFormat, export_model, parse_layout,
};
pub use predict::{
    BATCH_ROWS, BadRows, EvaluateOptions, EvaluateReport, LABEL_COLUMN, PredictOptions,
    PredictReport, SCORE_PREFIX, VALUE_COLUMN, evaluate, predict, skipped_path,
};
pub use prepare::{
    DataSummary, ImageRows, Prepared, PreparedData, PreparedImages, Preprocessing, Streamed,
    TrainImages, TrainingData, image_arrays,
};
pub use runfile::{
    DataConfig, Override, PretrainConfig, Run, RunData, RunFile, Sweep, reference_markdown,
    schema_json,
};
pub use shards::PolarsShards;
pub use whet_report::RunStatus;
/// The weight layout of an exported safetensors file ([`export_model`]).
pub use whet_train::checkpoint::WeightLayout;
pub use yaml::{ConfigError, ConfigErrors, MAX_RUN_FILE_BYTES};

pub use whet_core as core;
pub use whet_image as image;
pub use whet_report as report;
pub use whet_tabular as tabular;
pub use whet_train as train;

/// The types most programs use: `use whet::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Ablation, Cache, ExportFormat, ExportOptions, Metrics, Plan, PlanOptions, Run, RunFile,
        RunOutcome,
    };
    pub use whet_core::{NoProgress, Progress};
    pub use whet_image::geometric::{
        AffineConfig, ElasticConfig, RotateConfig, ScaleConfig, TranslateConfig,
    };
    pub use whet_image::noise::GaussianNoiseConfig;
    pub use whet_image::{AugmentConfig, ImageSourceConfig, ImagesConfig, NormalizeKind, OpConfig};
    pub use whet_tabular::{
        EncodeConfig, ImputeConfig, JoinConfig, NormMethod, NormalizeConfig, NumericFill,
        SplitConfig, StepConfig, TableSpec, TargetConfig,
    };
    pub use whet_train::{
        Activation, ConvConfig, DenseConfig, EarlyStoppingConfig, HiddenConfig, LayerConfig,
        ModelConfig, OptimizerConfig, Padding, PoolConfig, TrainConfig,
    };
}
