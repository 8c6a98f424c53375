//! The tabular pipeline: config types, [`prepare`] (load → pre-split steps → target → split →
//! fit on train → transform every split → arrays), [`audit`], and [`apply`] (replay a manifest
//! on new data).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, Axis};
use polars::prelude::*;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::{Issues, Progress};

use crate::audit::{AuditConfig, AuditReport, audit_frame};
use crate::encode::EncodeConfig;
use crate::error::{Error, Result};
use crate::export::Manifest;
use crate::join::{JoinConfig, JoinReport, join};
use crate::load::{LoadReport, TableSpec};
use crate::loaded::LoadedTables;
use crate::missing::{DropColumnsConfig, DropRowsConfig, FillConfig, ImputeConfig};
use crate::scale::{ClipConfig, NormalizeConfig};
use crate::split::{SplitConfig, split_indices};
use crate::stage::{Exclude, FittedStep, Stage, is_numeric, names};
use crate::target::{Target, TargetConfig, TargetKind, extract_target};

/// `data:` — the tables, which one is the main table, and the target.
///
/// ```yaml
/// tables:
///   flights: ../datasets/nycflights13/flights.csv.gz
///   weather: { path: ../datasets/nycflights13/weather.csv.gz, missing: [NA] }
/// main: flights
/// target: { column: arr_delay, threshold: 15 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TablesConfig {
    /// Tables by name: a path or a [`TableSpec`] map.
    pub tables: BTreeMap<String, TableSpec>,
    /// The table rows come from. Optional when there is one table.
    #[serde(default)]
    pub main: Option<String>,
    /// The target.
    pub target: TargetConfig,
    /// Shuffle the training rows a block of [`crate::SHARD_ROWS`] rows at a time, within
    /// windows of this many rows: the order of a table larger than the memory budget (its
    /// prepared rows are read back from disk). Set, a table in memory trains in the same order,
    /// so both give the same weights. Default: a full shuffle in memory, and windows of
    /// [`crate::DEFAULT_SHUFFLE_ROWS`] rows when the training rows are streamed from disk.
    #[serde(default)]
    pub shuffle_buffer: Option<usize>,
    /// Identifier columns of the main table (`id: [flight_id]`). They are never features (taken
    /// out before the first fitted step; the pre-split steps and the split still see them, so
    /// a join or a group split may use them), and `whet export`, `whet apply` and `whet
    /// predict` write their values as loaded next to every row. Default: none, and the rows
    /// are identified by `row`, their 0-based row number in the main table's file (the header
    /// not counted).
    #[serde(default)]
    pub id: Vec<String>,
}

impl TablesConfig {
    /// The main table's name.
    ///
    /// # Errors
    /// [`Error::Config`] when `main` is absent and there is not exactly one table, or
    /// [`Error::UnknownTable`] when `main` names no table.
    pub fn main_name(&self) -> Result<&str> {
        match &self.main {
            Some(m) if self.tables.contains_key(m) => Ok(m),
            Some(m) => Err(Error::UnknownTable {
                name: m.clone(),
                available: self.tables.keys().cloned().collect(),
            }),
            None if self.tables.len() == 1 => Ok(self.tables.keys().next().expect("one table")),
            None => Err(Error::Config(format!(
                "data.main: {} tables are declared; name the main one (one of {:?})",
                self.tables.len(),
                self.tables.keys().collect::<Vec<_>>()
            ))),
        }
    }

    /// Cross-field checks (paths relative to `data`).
    pub fn validate(&self) -> Issues {
        let mut is = Issues::new();
        is.check(!self.tables.is_empty(), "tables", || {
            "declare at least one table".into()
        });
        if let Err(e) = self.main_name() {
            is.push("main", e.to_string());
        }
        for (k, t) in &self.tables {
            if let Err(e) = t.resolved_format() {
                is.push(format!("tables.{k}"), e.to_string());
            }
            is.check(
                (1..=crate::MAX_INFER_ROWS).contains(&t.infer_rows),
                format!("tables.{k}.infer_rows"),
                || {
                    format!(
                        "expected 1 to {} rows, found {}",
                        crate::MAX_INFER_ROWS,
                        t.infer_rows
                    )
                },
            );
        }
        is.check(self.shuffle_buffer != Some(0), "shuffle_buffer", || {
            "expected at least 1 row (or leave it out for a full shuffle)".into()
        });
        is.nest("target", self.target.validate());
        let target = self
            .target
            .column
            .as_ref()
            .or(self.target.regression.as_ref());
        for (i, c) in self.id.iter().enumerate() {
            is.check(Some(c) != target, format!("id[{i}]"), || {
                format!("`{c}` is the target column; an identifier cannot be the target")
            });
            is.check(c != crate::rows::ROW_ID, format!("id[{i}]"), || {
                format!(
                    "`{}` names the default identifier (the row number); leave `id` out to use it, or name a column of the main table",
                    crate::rows::ROW_ID
                )
            });
            is.check(!self.id[..i].contains(c), format!("id[{i}]"), || {
                format!("`{c}` is listed twice")
            });
        }
        is
    }

    /// Resolves relative table paths against `base` (the YAML file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for t in self.tables.values_mut() {
            t.resolve_paths(base);
        }
    }
}

/// One step of `steps:`, written as a one-key map (`- impute: { numeric: median }`).
///
/// Steps before the first *fitted* step (`drop_columns`, `impute`, `normalize`, `clip`,
/// `encode`) run on the whole table before the split; `join` and `audit` must be among them.
/// From the first fitted step on, every step is fitted on the training split only and applied
/// unchanged to validation, test and new data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepConfig {
    /// Join another table.
    Join(JoinConfig),
    /// Drop columns (absent ones are ignored).
    Exclude(Vec<String>),
    /// Audit the table (and stop the run on `fail_on` flags).
    Audit(AuditConfig),
    /// Drop rows with missing values.
    DropRows(DropRowsConfig),
    /// Drop columns too sparse on train.
    DropColumns(DropColumnsConfig),
    /// Fill missing values with train statistics.
    Impute(ImputeConfig),
    /// Forward/backward fill along an order column.
    Fill(FillConfig),
    /// Scale numeric columns with train statistics.
    Normalize(NormalizeConfig),
    /// Clip numeric columns at train quantiles.
    Clip(ClipConfig),
    /// One-hot, ordinal, boolean and date encodings.
    Encode(EncodeConfig),
}

impl StepConfig {
    /// True for steps that learn parameters from train.
    pub fn is_fitted(&self) -> bool {
        matches!(
            self,
            StepConfig::DropColumns(_)
                | StepConfig::Impute(_)
                | StepConfig::Normalize(_)
                | StepConfig::Clip(_)
                | StepConfig::Encode(_)
        )
    }

    /// The YAML key of the step.
    pub fn key(&self) -> &'static str {
        match self {
            StepConfig::Join(_) => "join",
            StepConfig::Exclude(_) => "exclude",
            StepConfig::Audit(_) => "audit",
            StepConfig::DropRows(_) => "drop_rows",
            StepConfig::DropColumns(_) => "drop_columns",
            StepConfig::Impute(_) => "impute",
            StepConfig::Fill(_) => "fill",
            StepConfig::Normalize(_) => "normalize",
            StepConfig::Clip(_) => "clip",
            StepConfig::Encode(_) => "encode",
        }
    }

    /// The step as a [`Stage`] (`None` for `join` and `audit`, which are not per-split stages).
    pub fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(match self {
            StepConfig::Join(_) | StepConfig::Audit(_) => return None,
            StepConfig::Exclude(c) => Box::new(Exclude(c.clone())),
            StepConfig::DropRows(c) => Box::new(c.clone()),
            StepConfig::DropColumns(c) => Box::new(c.clone()),
            StepConfig::Impute(c) => Box::new(c.clone()),
            StepConfig::Fill(c) => Box::new(c.clone()),
            StepConfig::Normalize(c) => Box::new(c.clone()),
            StepConfig::Clip(c) => Box::new(c.clone()),
            StepConfig::Encode(c) => Box::new(c.clone()),
        })
    }
}

/// The whole tabular part of a run: `data` (tables + target), `steps`, `split`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TabularConfig {
    /// Tables, main table and target (YAML `data`).
    pub data: TablesConfig,
    /// Steps in order (YAML `steps`).
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// The split (YAML `split`).
    #[serde(default)]
    pub split: SplitConfig,
}

impl TabularConfig {
    /// The key of the last step before the split (`load` without one): the stage named when a
    /// feature is missing or not finite before any fitted step.
    pub(crate) fn stage_before_split(&self) -> String {
        match self.split_point() {
            0 => "load".into(),
            sp => self.steps[sp - 1].key().to_string(),
        }
    }

    /// Index of the first fitted step (= where the split happens).
    pub fn split_point(&self) -> usize {
        self.steps
            .iter()
            .position(StepConfig::is_fitted)
            .unwrap_or(self.steps.len())
    }

    /// The tables other than the main one (joined whole, so loaded in memory).
    pub fn tables_to_join(&self) -> Vec<String> {
        let main = self.data.main_name().unwrap_or_default();
        self.data
            .tables
            .keys()
            .filter(|k| k.as_str() != main)
            .cloned()
            .collect()
    }

    /// Cross-field checks (paths `data.…`, `steps[i].…`, `split.…`).
    pub fn validate(&self) -> Issues {
        let mut is = Issues::new();
        is.nest("data", self.data.validate());
        let sp = self.split_point();
        for (i, s) in self.steps.iter().enumerate() {
            let path = format!("steps[{i}].{}", s.key());
            match s {
                StepConfig::Join(j) => {
                    is.nest(&path, j.validate());
                    let others = || {
                        self.data
                            .tables
                            .keys()
                            .filter(|k| Some(k.as_str()) != self.data.main.as_deref())
                            .collect::<Vec<_>>()
                    };
                    if self.data.main.as_deref() == Some(j.with.as_str()) {
                        is.push(
                            format!("{path}.with"),
                            format!(
                                "joins the main table `{}` with itself; `with` names another table declared under `data.tables` (others declared: {:?}); to join a file with itself, declare it twice under two names",
                                j.with,
                                others()
                            ),
                        );
                    }
                    is.check(
                        self.data.tables.contains_key(&j.with),
                        format!("{path}.with"),
                        || {
                            format!(
                                "table `{}` is not declared under data.tables (have {:?})",
                                j.with,
                                self.data.tables.keys().collect::<Vec<_>>()
                            )
                        },
                    );
                }
                StepConfig::Normalize(n) => is.check(
                    n.columns.is_empty() || n.exclude.is_empty(),
                    format!("{path}.exclude"),
                    || "give `columns` or `exclude`, not both".into(),
                ),
                StepConfig::Clip(c) => is.check(c.lower < c.upper, format!("{path}.upper"), || {
                    format!("`lower` ({}) must be below `upper` ({})", c.lower, c.upper)
                }),
                StepConfig::Encode(e) => {
                    is.check(e.max_levels >= 1, format!("{path}.max_levels"), || {
                        "must be at least 1".into()
                    })
                }
                _ => {}
            }
            if let StepConfig::Exclude(cols) = s {
                for c in cols.iter().filter(|c| self.data.id.contains(c)) {
                    is.push(
                        path.clone(),
                        format!("`{c}` is an identifier (`data.id`): identifiers are never features, so there is no need to exclude it; remove it here (excluding it would lose the identifier)"),
                    );
                }
            }
            if i > sp && matches!(s, StepConfig::Join(_) | StepConfig::Audit(_)) {
                is.push(path, format!("`{}` must come before the first fitted step (steps[{sp}]), which is where the data are split", s.key()));
            }
        }
        is.nest("split", self.split.validate());
        let target = self
            .data
            .target
            .column
            .as_deref()
            .or(self.data.target.regression.as_deref());
        for (key, column, what) in [
            ("split.group", self.split.group.as_deref(), "group rows by"),
            ("split.order", self.split.order.as_deref(), "order rows by"),
        ] {
            if let (Some(c), Some(t)) = (column, target)
                && c == t
            {
                is.push(
                    key,
                    format!(
                        "`{c}` is the target column; the target is taken out of the table before the split, so the split cannot {what} it: choose another column"
                    ),
                );
            }
        }
        is
    }

    /// Resolves relative table paths against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.data.resolve_paths(base);
    }

    pub(crate) fn checked(&self) -> Result<()> {
        let is = self.validate();
        if is.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(
                is.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ))
        }
    }
}

/// Features and targets of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitArrays {
    /// Features, row-major.
    ///
    /// # Shapes
    /// `rows × features`.
    pub x: Array2<f32>,
    /// Targets: one-hot rows (classification), one 0/1 column (binary) or one value column.
    ///
    /// # Shapes
    /// `rows × target_dim`.
    pub y: Array2<f32>,
}

/// Row counts per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SplitRows {
    /// Train rows.
    pub train: usize,
    /// Validation rows.
    pub validation: usize,
    /// Test rows.
    pub test: usize,
}

/// What one post-split step did to one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Index in `steps`.
    pub step: usize,
    /// Stage name.
    pub name: String,
    /// `train`, `validation` or `test`.
    pub split: String,
    /// Rows before / after.
    pub rows: (usize, usize),
    /// Columns removed.
    pub columns_removed: Vec<String>,
    /// Columns added.
    pub columns_added: Vec<String>,
    /// Missing values before / after (all columns): the difference is what was filled or
    /// dropped.
    pub missing: (usize, usize),
}

/// Everything [`prepare`] measured along the way.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PrepareReport {
    /// One per loaded table.
    pub loads: Vec<LoadReport>,
    /// One per join.
    pub joins: Vec<JoinReport>,
    /// One per audit step.
    pub audits: Vec<AuditReport>,
    /// Pre-split steps: `(step, rows before, rows after, missing before, missing after)`.
    pub pre_split: Vec<(String, usize, usize, usize, usize)>,
    /// Post-split steps, per split.
    pub steps: Vec<StepReport>,
    /// Rows dropped because the target was missing.
    pub target_missing_dropped: usize,
    /// Non-numeric columns left at the end and not used as features (keys, dates, text).
    pub unused_columns: Vec<String>,
    /// Row counts.
    pub rows: SplitRows,
    /// Wall-clock seconds per phase.
    pub seconds: Vec<(String, f64)>,
    /// How the main table was streamed, when it was larger than the memory budget (absent when
    /// it was read in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<crate::stream::StreamReport>,
}

/// The result of [`prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Train rows: arrays, or shards on disk when a streamed table's did not fit.
    pub train: crate::rowshards::Rows,
    /// Validation rows (none when `split.validation` is 0): arrays, or shards on disk as the
    /// training rows.
    pub validation: crate::rowshards::Rows,
    /// Test rows.
    pub test: crate::rowshards::Rows,
    /// Feature names, in column order of `x`.
    pub features: Vec<String>,
    /// Class names (binary: 2; regression: empty).
    pub classes: Vec<String>,
    /// Row positions of each split in the frame after the pre-split steps and the target
    /// (the row order [`apply`] reproduces on the same input).
    pub indices: crate::split::SplitIndices,
    /// The row of the main table's file (0-based, header not counted) each row of each split
    /// comes from: what `data.id` and `--keep` columns are taken from.
    pub source_rows: crate::split::SplitIndices,
    /// Reports.
    pub report: PrepareReport,
    /// The fitted manifest (replayable with [`apply`]).
    pub manifest: Manifest,
}

fn missing_total(df: &DataFrame) -> usize {
    df.columns().iter().map(|c| c.null_count()).sum()
}

/// Loads every declared table, through `loaded` (a table it keeps is not read again).
///
/// # Errors
/// See [`crate::load_table`]; [`Error::EmptyTable`] for a table without rows.
pub fn load_tables(
    cfg: &TablesConfig,
    loaded: &LoadedTables,
    progress: &dyn Progress,
) -> Result<(BTreeMap<String, DataFrame>, Vec<LoadReport>)> {
    let mut tables = BTreeMap::new();
    let mut reports = Vec::new();
    progress.begin("load tables", Some(cfg.tables.len() as u64));
    for (name, spec) in &cfg.tables {
        let (df, rep) = loaded.load(spec)?;
        progress.message(&format!("{name}: {} rows", df.height()));
        tables.insert(name.clone(), df);
        reports.push(rep);
        progress.advance(1);
    }
    progress.end();
    Ok((tables, reports))
}

/// Runs one pre-split step on the whole frame.
pub(crate) fn pre_step(
    step: &StepConfig,
    df: DataFrame,
    tables: &BTreeMap<String, DataFrame>,
    target: Option<&TargetKind>,
    report: &mut PrepareReport,
    run_audit: bool,
) -> Result<DataFrame> {
    match step {
        StepConfig::Join(j) => {
            let Some(right) = tables.get(&j.with) else {
                return Err(Error::UnknownTable {
                    name: j.with.clone(),
                    available: tables.keys().cloned().collect(),
                });
            };
            let (out, rep) = join(&df, right, j)?;
            report.joins.push(rep);
            Ok(out)
        }
        StepConfig::Audit(a) => {
            if run_audit {
                let rep = audit_frame(&crate::rows::without_source_rows(&df), target, a)?;
                let failing: Vec<String> = rep
                    .failing(&a.fail_on)
                    .map(|f| format!("`{}` {:?}: {}", f.column, f.kind, f.reason))
                    .collect();
                report.audits.push(rep);
                if !failing.is_empty() {
                    return Err(Error::AuditFailed(failing.join("; ")));
                }
            }
            Ok(df)
        }
        other => {
            let stage = other.stage().expect("not join or audit");
            Ok(stage.fit(&df)?.transform(df)?)
        }
    }
}

/// The error for pre-split step `i` (`step`) that removed every one of `rows` rows.
pub(crate) fn emptied(i: usize, step: &StepConfig, rows: usize) -> Error {
    step_err(i, step)(Error::Config(format!(
        "no rows left: the step removed all {rows} rows (loosen it or fix the data)"
    )))
}

pub(crate) fn step_err(index: usize, step: &StepConfig) -> impl FnOnce(Error) -> Error + '_ {
    move |e| Error::Step {
        index,
        name: step.key().to_string(),
        source: Box::new(e),
    }
}

/// Counts NaN / infinite values in float columns.
pub(crate) fn check_finite(df: &DataFrame, stage: &str, split: &str) -> Result<()> {
    for c in df.columns() {
        let bad = match c.dtype() {
            DataType::Float64 => c
                .f64()?
                .downcast_iter()
                .map(|a| {
                    let valid = a.validity().filter(|m| m.unset_bits() > 0);
                    non_finite(a.values(), valid.map(|m| |i| m.get_bit(i)), f64::is_finite)
                })
                .sum(),
            DataType::Float32 => c
                .f32()?
                .downcast_iter()
                .map(|a| {
                    let valid = a.validity().filter(|m| m.unset_bits() > 0);
                    non_finite(a.values(), valid.map(|m| |i| m.get_bit(i)), f32::is_finite)
                })
                .sum(),
            _ => 0usize,
        };
        if bad > 0 {
            return Err(Error::NonFinite {
                column: c.name().to_string(),
                stage: stage.into(),
                split: split.into(),
                count: bad,
                what: "non-finite",
            });
        }
    }
    Ok(())
}

/// How many of `values` are present (`valid(i)`, when some are missing) and not finite. The
/// values are scanned as a slice; `valid` is asked only about a value that is not finite (a
/// missing value's slot may hold anything).
fn non_finite<T: Copy>(
    values: &[T],
    valid: Option<impl Fn(usize) -> bool>,
    finite: impl Fn(T) -> bool,
) -> usize {
    match valid {
        None => values.iter().filter(|&&v| !finite(v)).count(),
        Some(valid) => values
            .iter()
            .enumerate()
            .filter(|&(i, &v)| !finite(v) && valid(i))
            .count(),
    }
}

/// The columns usable as features: numeric and boolean ones, in frame order.
pub(crate) fn feature_columns(df: &DataFrame) -> (Vec<String>, Vec<String>) {
    let mut used = Vec::new();
    let mut unused = Vec::new();
    for c in df.columns() {
        if is_numeric(c.dtype()) || c.dtype() == &DataType::Boolean {
            used.push(c.name().to_string());
        } else {
            unused.push(c.name().to_string());
        }
    }
    (used, unused)
}

const BLOCK: usize = 2048;

/// The columns of `features` in `df` as `f32`, each in one piece: the values of
/// [`to_matrix`]'s matrix, column by column (what a table export writes).
///
/// # Errors
/// [`Error::ColumnNotFound`] for an absent feature, [`Error::NonFinite`] for a missing or
/// non-finite value (naming the column, the last stage and the split), [`Error::Budget`] when
/// the columns do not fit in the memory budget.
pub fn feature_columns_f32(
    df: &DataFrame,
    features: &[String],
    stage: &str,
    split: &str,
) -> Result<Vec<Float32Chunked>> {
    let n = df.height();
    whet_core::budget::check(
        format!(
            "the {split} feature columns ({n} rows x {} features as f32)",
            features.len()
        ),
        whet_core::budget::product(&[n as u64, features.len() as u64, 4]),
        "data.tables.*.limit, or the steps that add columns (encode.one_hot)",
    )?;
    f32_columns(df, features, stage, split)
}

/// [`feature_columns_f32`] without its budget check (the caller's covers the columns).
fn f32_columns(
    df: &DataFrame,
    features: &[String],
    stage: &str,
    split: &str,
) -> Result<Vec<Float32Chunked>> {
    // Column by column in parallel; the first error in the features' order is returned.
    let one = |f: &String| -> Result<Float32Chunked> {
        let Ok(c) = df.column(f) else {
            return Err(crate::stage::not_found(
                df,
                f,
                &format!("features ({split})"),
            ));
        };
        if c.null_count() > 0 {
            return Err(Error::NonFinite {
                column: f.clone(),
                stage: stage.into(),
                split: split.into(),
                count: c.null_count(),
                what: "missing",
            });
        }
        let s = present_f32(c)?;
        let bad = s
            .cont_slice()
            .expect("one chunk, no nulls")
            .iter()
            .filter(|v| !v.is_finite())
            .count();
        if bad > 0 {
            return Err(Error::NonFinite {
                column: f.clone(),
                stage: stage.into(),
                split: split.into(),
                count: bad,
                what: "non-finite",
            });
        }
        Ok(s)
    };
    let cols: Vec<Result<Float32Chunked>> = features.par_iter().map(one).collect();
    cols.into_iter().collect()
}

/// The column `c`, without missing values, as `f32` in one chunk: `f64` values converted slice
/// by slice (Rust's `as`, the rounding polars' cast makes), other types by polars' cast.
fn present_f32(c: &Column) -> Result<Float32Chunked> {
    if c.dtype() == &DataType::Float64 {
        let ca = c.f64()?;
        let mut out: Vec<f32> = Vec::with_capacity(ca.len());
        for a in ca.downcast_iter() {
            out.extend(a.values().iter().map(|&v| v as f32));
        }
        return Ok(Float32Chunked::from_vec(c.name().clone(), out));
    }
    let s = c
        .as_materialized_series()
        .cast(&DataType::Float32)?
        .rechunk();
    Ok(s.f32()?.clone())
}

/// Builds the row-major feature matrix of `features` from `df`.
///
/// # Errors
/// [`Error::ColumnNotFound`] for an absent feature, [`Error::NonFinite`] for a missing or
/// non-finite value (naming the column, the last stage and the split), [`Error::Budget`] when
/// the matrix does not fit in the memory budget.
///
/// # Shapes
/// `df.height() × features.len()`.
pub fn to_matrix(
    df: &DataFrame,
    features: &[String],
    stage: &str,
    split: &str,
) -> Result<Array2<f32>> {
    let n = df.height();
    // The f32 copy of every feature column and the matrix made from them.
    whet_core::budget::check(
        format!(
            "the {split} feature matrix ({n} rows x {} features as f32)",
            features.len()
        ),
        whet_core::budget::product(&[n as u64, features.len() as u64, 4, 2]),
        "data.tables.*.limit, or the steps that add columns (encode.one_hot)",
    )?;
    let cols = f32_columns(df, features, stage, split)?;
    let slices: Vec<&[f32]> = cols
        .iter()
        .map(|c| c.cont_slice().expect("rechunked, no nulls"))
        .collect();
    let d = features.len();
    let mut x = Array2::<f32>::zeros((n, d));
    // Row blocks keep the strided writes of one block in cache.
    for (b, mut block) in x.axis_chunks_iter_mut(Axis(0), BLOCK).enumerate() {
        let start = b * BLOCK;
        let rows = block.nrows();
        let out = block.as_slice_mut().expect("standard layout");
        for (j, s) in slices.iter().enumerate() {
            for (r, v) in s[start..start + rows].iter().enumerate() {
                out[r * d + j] = *v;
            }
        }
    }
    Ok(x)
}

/// Loads the tables, runs the steps, splits, fits every post-split stage on train only, and
/// returns the arrays, reports and the fitted manifest. `fold` says which fold of a
/// `split.method: kfold` split is the test set (each fold is prepared on its own, its stages
/// fitted on its own training rows); the other methods take `None`. The tables are loaded
/// through `loaded` ([`LoadedTables::none`] to read every file).
///
/// # Errors
/// Config issues ([`Error::Config`]), loading errors, a failing step (wrapped in
/// [`Error::Step`] with its index), an audit with `fail_on` flags ([`Error::AuditFailed`]),
/// split errors, non-finite or missing features ([`Error::NonFinite`]).
pub fn prepare(
    cfg: &TabularConfig,
    seed: u64,
    fold: Option<crate::split::Fold>,
    loaded: &LoadedTables,
    progress: &dyn Progress,
) -> Result<Prepared> {
    cfg.checked()?;
    let t0 = Instant::now();
    let mut report = PrepareReport::default();
    let (mut tables, loads) = load_tables(&cfg.data, loaded, progress)?;
    report.loads = loads;
    report
        .seconds
        .push(("load".into(), t0.elapsed().as_secs_f64()));
    let main = cfg.data.main_name()?.to_string();
    let df = tables.remove(&main).expect("main table loaded");
    let input_schema: Vec<(String, String)> = df
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().to_string()))
        .collect();
    let kind = cfg.data.target.kind()?;
    let sp = cfg.split_point();
    crate::rows::check_ids(&cfg.data, &df, &cfg.data.tables[&main].path)?;
    let df = crate::rows::with_source_rows(df)?;

    let t1 = Instant::now();
    let (df, target, dropped) = run_pre_split(
        df,
        &cfg.steps[..sp],
        &tables,
        &kind,
        &cfg.data.target,
        &mut report,
    )?;
    let (df, rows) = crate::rows::take_source_rows(df)?;
    report.target_missing_dropped = dropped;
    report
        .seconds
        .push(("pre-split steps".into(), t1.elapsed().as_secs_f64()));

    let t2 = Instant::now();
    let labels = target.labels();
    let keys = crate::split::RowKeys {
        ids: &cfg.data.id,
        rows: Some(&rows),
    };
    let idx = split_indices(&df, labels.as_deref(), &cfg.split, seed, fold, keys)?;
    let take = |v: &[IdxSize]| -> Result<DataFrame> {
        Ok(df.take(&IdxCa::from_vec("idx".into(), v.to_vec()))?)
    };
    let mut frames = [take(&idx.train)?, take(&idx.validation)?, take(&idx.test)?];
    // Identifiers are never features: out before the first fitted step.
    for f in &mut frames {
        *f = crate::rows::drop_ids(std::mem::take(f), &cfg.data.id)?;
    }
    let pick = |v: &[IdxSize]| -> Vec<IdxSize> { v.iter().map(|&i| rows[i as usize]).collect() };
    let source_rows = crate::split::SplitIndices {
        train: pick(&idx.train),
        validation: pick(&idx.validation),
        test: pick(&idx.test),
    };
    let targets = [
        target.take(&idx.train),
        target.take(&idx.validation),
        target.take(&idx.test),
    ];
    drop(df);
    report.rows = SplitRows {
        train: idx.train.len(),
        validation: idx.validation.len(),
        test: idx.test.len(),
    };
    report
        .seconds
        .push(("split".into(), t2.elapsed().as_secs_f64()));

    // The target's scale is a train-only statistic like the fitted steps'.
    let target_scale = fit_target_scale(cfg, &kind, &targets[0].values)?;

    let t3 = Instant::now();
    const SPLITS: [&str; 3] = ["train", "validation", "test"];
    let mut fitted_steps: Vec<FittedStep> = Vec::new();
    let mut last_stage = cfg.stage_before_split();
    for (i, step) in cfg.steps.iter().enumerate().skip(sp) {
        let stage = fitted_stage(i, step)?;
        progress.begin(&stage.name(), Some(3));
        let fitted = stage.fit(&frames[0]).map_err(step_err(i, step))?;
        for (k, split) in SPLITS.iter().enumerate() {
            let before = std::mem::take(&mut frames[k]);
            let (rows0, miss0, names0) = (before.height(), missing_total(&before), names(&before));
            let after = fitted.transform(before).map_err(step_err(i, step))?;
            if after.height() != rows0 {
                return Err(Error::Step {
                    index: i,
                    name: step.key().into(),
                    source: Box::new(Error::Config(format!(
                        "`{}` changed the number of rows after the split ({rows0} -> {}); targets would no longer line up: put row-dropping steps before the first fitted step",
                        stage.name(),
                        after.height()
                    ))),
                });
            }
            check_finite(&after, &stage.name(), split).map_err(step_err(i, step))?;
            let names1 = names(&after);
            // Sets, so the report is linear in the number of columns.
            let set0: std::collections::HashSet<&String> = names0.iter().collect();
            let set1: std::collections::HashSet<&String> = names1.iter().collect();
            report.steps.push(StepReport {
                step: i,
                name: stage.name(),
                split: split.to_string(),
                rows: (rows0, after.height()),
                columns_removed: names0
                    .iter()
                    .filter(|c| !set1.contains(c))
                    .cloned()
                    .collect(),
                columns_added: names1
                    .iter()
                    .filter(|c| !set0.contains(c))
                    .cloned()
                    .collect(),
                missing: (miss0, missing_total(&after)),
            });
            frames[k] = after;
            progress.advance(1);
        }
        progress.end();
        fitted_steps.push(fitted.to_step());
        last_stage = stage.name();
    }
    report
        .seconds
        .push(("fit + transform".into(), t3.elapsed().as_secs_f64()));

    let t4 = Instant::now();
    let (features, unused) = feature_columns(&frames[0]);
    report.unused_columns = unused;
    let mut arrays = Vec::with_capacity(3);
    for (k, split) in SPLITS.iter().enumerate() {
        let x = to_matrix(&frames[k], &features, &last_stage, split)?;
        arrays.push(SplitArrays {
            x,
            y: targets[k].matrix(),
        });
    }
    report
        .seconds
        .push(("arrays".into(), t4.elapsed().as_secs_f64()));
    let mut it = arrays.into_iter();
    let (train, validation, test) = (
        it.next().expect("3"),
        it.next().expect("3"),
        it.next().expect("3"),
    );
    let manifest = Manifest {
        format: crate::export::MANIFEST_FORMAT.into(),
        seed,
        data: cfg.data.clone(),
        pre_split: cfg.steps[..sp].to_vec(),
        split: cfg.split.clone(),
        fold,
        target: kind,
        classes: target.classes.clone(),
        target_scale,
        fitted: fitted_steps,
        features: features.clone(),
        unused_columns: report.unused_columns.clone(),
        input_schema,
        rows: report.rows,
        files: vec![],
    };
    Ok(Prepared {
        train: crate::rowshards::Rows::Memory(train),
        validation: crate::rowshards::Rows::Memory(validation),
        test: crate::rowshards::Rows::Memory(test),
        features,
        classes: target.classes,
        indices: idx,
        source_rows,
        report,
        manifest,
    })
}

/// The standardisation of a regression target fitted on the training split's `values` (when
/// `data.target.scale` asks for it), a train-only statistic like the fitted steps'.
pub(crate) fn fit_target_scale(
    cfg: &TabularConfig,
    kind: &TargetKind,
    values: &[f32],
) -> Result<Option<whet_core::TargetScale>> {
    if !cfg.data.target.scales() {
        return Ok(None);
    }
    whet_core::TargetScale::fit(values).map(Some).map_err(|e| {
        Error::Target(format!(
            "data.target.regression: column `{}` on the training split: {e}; check the \
             column and the split, or set `scale: false` to train on the raw values",
            kind.column()
        ))
    })
}

/// Step `i` after the split as a [`Stage`] (`join` and `audit` are refused there).
pub(crate) fn fitted_stage(i: usize, step: &StepConfig) -> Result<Box<dyn Stage>> {
    step.stage().ok_or_else(|| {
        Error::Config(format!(
            "steps[{i}]: `{}` must come before the first fitted step",
            step.key()
        ))
    })
}

/// The pre-split steps of a run being fitted (audits run), then the target: its values checked
/// against `target`, its classes taken from the data. (A manifest's steps are replayed on new
/// data by [`crate::replay::Replay`].)
fn run_pre_split(
    mut df: DataFrame,
    steps: &[StepConfig],
    tables: &BTreeMap<String, DataFrame>,
    kind: &TargetKind,
    target: &TargetConfig,
    report: &mut PrepareReport,
) -> Result<(DataFrame, Target, usize)> {
    for (i, step) in steps.iter().enumerate() {
        let (r0, m0) = (df.height(), missing_total(&df));
        df = pre_step(step, df, tables, Some(kind), report, true).map_err(step_err(i, step))?;
        if r0 > 0 && df.height() == 0 {
            return Err(emptied(i, step, r0));
        }
        report.pre_split.push((
            step.key().to_string(),
            r0,
            df.height(),
            m0,
            missing_total(&df),
        ));
    }
    if let Ok(c) = df.column(kind.column()) {
        // The check `whet validate` makes on the first rows, here on every row.
        let rows = format!("all {} rows", df.height());
        target.check_rows(c.as_materialized_series(), &rows)?;
    }
    let (df, t, dropped) = extract_target(df, kind, None)?;
    if !matches!(kind, TargetKind::Regression { .. }) {
        // Fitting: a classifier needs at least two classes present.
        let mut seen = std::collections::BTreeSet::new();
        for &v in &t.values {
            seen.insert(v.to_bits());
            if seen.len() > 1 {
                break;
            }
        }
        if seen.len() < 2 {
            let only = t
                .values
                .first()
                .and_then(|&v| t.classes.get(v as usize))
                .map_or_else(|| "none".to_string(), |c| format!("`{c}`"));
            return Err(Error::Target(format!(
                "column `{}` has a single class ({only}) in {} rows: a classifier needs at least two",
                kind.column(),
                t.values.len()
            )));
        }
    }
    Ok((df, t, dropped))
}

/// Audits the main table after the steps that precede the first `audit` step (or all pre-split
/// steps when there is none), with that step's settings (defaults otherwise). For `whet audit`:
/// flags are reported, never turned into an error.
///
/// # Errors
/// Loading and step errors.
pub fn audit(cfg: &TabularConfig, progress: &dyn Progress) -> Result<AuditReport> {
    cfg.checked()?;
    let (mut tables, _) = load_tables(&cfg.data, &LoadedTables::none(), progress)?;
    let main = cfg.data.main_name()?.to_string();
    let mut df = tables.remove(&main).expect("main table loaded");
    let kind = cfg.data.target.kind()?;
    let sp = cfg.split_point();
    let mut settings = AuditConfig::default();
    let mut report = PrepareReport::default();
    for (i, step) in cfg.steps[..sp].iter().enumerate() {
        if let StepConfig::Audit(a) = step {
            settings = a.clone();
            break;
        }
        df = pre_step(step, df, &tables, Some(&kind), &mut report, false)
            .map_err(step_err(i, step))?;
    }
    progress.begin("audit", None);
    let r = audit_frame(&df, Some(&kind), &settings);
    progress.end();
    r
}

/// Arrays obtained by replaying a manifest on new data.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Features.
    ///
    /// # Shapes
    /// `rows × features`.
    pub x: Array2<f32>,
    /// Targets when the target column is in the new data.
    pub y: Option<Array2<f32>>,
    /// Feature names (the manifest's).
    pub features: Vec<String>,
    /// The transformed frame (features and any unused columns).
    pub frame: DataFrame,
    /// Rows dropped because the target was present but missing.
    pub target_missing_dropped: usize,
    /// The row of the input (0-based, header not counted) each row comes from.
    pub source_rows: Vec<IdxSize>,
}

/// New data after a manifest's steps, before the feature matrix is built: what [`apply`] and
/// `whet predict` share. Build the matrix with [`to_matrix`] (on a row slice of `frame`, to
/// work in batches).
#[derive(Debug, Clone)]
pub struct Transformed {
    /// The transformed frame (features and any unused columns; no identifier columns).
    pub frame: DataFrame,
    /// The target, when its column is in the new data.
    pub target: Option<Target>,
    /// The row of the input (0-based, header not counted) each row of `frame` comes from.
    pub source_rows: Vec<IdxSize>,
    /// Rows dropped because the target was present but missing.
    pub target_missing_dropped: usize,
    /// The name of the last step that ran (for messages).
    pub last_step: String,
}

/// Replays `manifest` on `data` (the main table's rows, as loaded) up to the feature matrix:
/// the pre-split steps (joins use `tables`; audits are skipped), the target when its column is
/// present (rows with a missing target are then dropped), the identifier columns taken out, and
/// every fitted step with its stored parameters.
///
/// # Errors
/// [`Error::UnknownTable`] when a join's table is not in `tables`, step errors.
pub fn transform(
    manifest: &Manifest,
    data: DataFrame,
    tables: &BTreeMap<String, DataFrame>,
) -> Result<Transformed> {
    transform_with(manifest, &manifest.fitted, data, tables)
}

/// [`transform`] with `fitted` in place of the manifest's fitted steps: [`crate::graph_input`]
/// passes them with the parts an exported ONNX graph computes taken out.
pub(crate) fn transform_with(
    manifest: &Manifest,
    fitted: &[FittedStep],
    data: DataFrame,
    tables: &BTreeMap<String, DataFrame>,
) -> Result<Transformed> {
    let mut replay = crate::replay::Replay::new(manifest, fitted, tables, false);
    let t = replay.batch(crate::rows::with_source_rows(data)?)?;
    replay.finish()?;
    // `finish` names why a batch has no rows left.
    t.ok_or_else(|| Error::Apply("no rows left after the run's steps".into()))
}

/// Replays `manifest` on `data` (the main table's rows): [`transform`], then the feature matrix
/// with the manifest's feature names.
///
/// # Errors
/// Those of [`transform`]; [`Error::NonFinite`] for a missing or non-finite feature value.
pub fn apply(
    manifest: &Manifest,
    data: DataFrame,
    tables: &BTreeMap<String, DataFrame>,
) -> Result<Applied> {
    let t = transform(manifest, data, tables)?;
    let x = to_matrix(&t.frame, &manifest.features, &t.last_step, "apply")?;
    Ok(Applied {
        x,
        y: t.target.map(|t| t.matrix()),
        features: manifest.features.clone(),
        frame: t.frame,
        target_missing_dropped: t.target_missing_dropped,
        source_rows: t.source_rows,
    })
}

/// Loads new data for `manifest`: the main table from `data` with the manifest's load options
/// for the main table (the format from `data`'s extension; every row, whatever the run's
/// `limit`), and every table a join of the
/// manifest uses, from `tables` when it names it (`--table NAME=PATH`), else from the path the
/// run used.
///
/// # Errors
/// Loading errors; [`Error::UnknownTable`] for a joined table the manifest does not declare;
/// [`Error::Apply`] for a name in `tables` that no join of the manifest uses.
pub fn load_new_data(
    manifest: &Manifest,
    data: &Path,
    tables: &BTreeMap<String, std::path::PathBuf>,
) -> Result<(DataFrame, BTreeMap<String, DataFrame>)> {
    let (df, _) = crate::load::load_rows(&new_data_spec(manifest, data)?)?;
    Ok((df, load_joined(manifest, tables)?))
}

/// How new data for `manifest` at `data` are read: the manifest's load options for the main
/// table, the format from `data`'s extension, every row (whatever the run's `limit`).
///
/// # Errors
/// A manifest without a main table.
pub(crate) fn new_data_spec(manifest: &Manifest, data: &Path) -> Result<TableSpec> {
    let main = manifest.data.main_name()?.to_string();
    let mut spec = manifest.data.tables[&main].clone();
    spec.path = data.to_path_buf();
    spec.format = None;
    // The run's row limit was about its training data: new data are read whole.
    spec.limit = None;
    Ok(spec)
}

/// The tables the joins of `manifest` use, loaded: from `tables` when it names them (`--table
/// NAME=PATH`), else from the paths the run used.
///
/// # Errors
/// Loading errors; [`Error::UnknownTable`] for a joined table the manifest does not declare;
/// [`Error::Apply`] for a name in `tables` that no join of the manifest uses.
pub(crate) fn load_joined(
    manifest: &Manifest,
    tables: &BTreeMap<String, std::path::PathBuf>,
) -> Result<BTreeMap<String, DataFrame>> {
    let joined: Vec<&str> = manifest
        .pre_split
        .iter()
        .filter_map(|s| match s {
            StepConfig::Join(j) => Some(j.with.as_str()),
            _ => None,
        })
        .collect();
    for name in tables.keys() {
        if !joined.contains(&name.as_str()) {
            return Err(Error::Apply(format!(
                "--table {name}=…: the run joins no table named `{name}` (it joins {joined:?})"
            )));
        }
    }
    let mut out = BTreeMap::new();
    for name in joined {
        if out.contains_key(name) {
            continue;
        }
        let Some(spec) = manifest.data.tables.get(name) else {
            return Err(Error::UnknownTable {
                name: name.to_string(),
                available: manifest.data.tables.keys().cloned().collect(),
            });
        };
        let mut spec = spec.clone();
        if let Some(p) = tables.get(name) {
            spec.path = p.clone();
            spec.format = None;
        }
        out.insert(name.to_string(), crate::load::load_rows(&spec)?.0);
    }
    Ok(out)
}

/// [`apply`] on a file: the tables are read with [`load_new_data`] (joined tables from the
/// manifest's paths).
///
/// # Errors
/// Loading errors and those of [`apply`].
pub fn apply_file(manifest: &Manifest, data: &Path) -> Result<Applied> {
    let (df, tables) = load_new_data(manifest, data, &BTreeMap::new())?;
    apply(manifest, df, &tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Non-finite values are counted among the present ones only, in every chunk.
    #[test]
    fn check_finite_counts_present_non_finite_values() {
        let mut a = Float64Chunked::new(
            "a".into(),
            &[Some(1.0), Some(f64::NAN), None, Some(f64::NEG_INFINITY)],
        );
        a.append(&Float64Chunked::new("a".into(), &[Some(f64::INFINITY)]))
            .unwrap();
        let b = Float32Chunked::new("b".into(), &[Some(1.0f32), None, Some(f32::NAN)]);
        let whole = |ca: Column| DataFrame::new(ca.len(), vec![ca]).unwrap();
        let e = check_finite(&whole(a.into_column()), "zscore", "train").unwrap_err();
        assert!(matches!(e, Error::NonFinite { count: 3, .. }), "{e:?}");
        let e = check_finite(&whole(b.into_column()), "zscore", "test").unwrap_err();
        assert!(matches!(e, Error::NonFinite { count: 1, .. }), "{e:?}");
        let fine = Float64Chunked::new("c".into(), &[Some(1.0), None, Some(-2.5)]);
        check_finite(&whole(fine.into_column()), "zscore", "train").unwrap();
    }

    /// The `f32` features are polars' cast of the values, bit for bit, and values that do not
    /// fit an `f32` are refused as non-finite.
    #[test]
    fn f32_features_are_polars_cast() {
        let values = [
            0.0,
            -0.0,
            1.0 / 3.0,
            -2.718_281_7,
            1e-40,
            1e-50,
            3.4028234663852886e38,
            123_456_789.123_456_78,
        ];
        let mut two = Float64Chunked::from_slice("x".into(), &values[..3]);
        two.append(&Float64Chunked::from_slice("x".into(), &values[3..]))
            .unwrap();
        let df = DataFrame::new(values.len(), vec![two.into_column()]).unwrap();
        let got = f32_columns(&df, &["x".into()], "impute", "train").unwrap();
        let want = df.column("x").unwrap().cast(&DataType::Float32).unwrap();
        let want: Vec<u32> = want
            .f32()
            .unwrap()
            .into_no_null_iter()
            .map(f32::to_bits)
            .collect();
        let got: Vec<u32> = got[0].into_no_null_iter().map(f32::to_bits).collect();
        assert_eq!(got, want);
        assert_eq!(got[1], (-0.0f32).to_bits());
        let big = DataFrame::new(2, vec![Column::new("y".into(), &[1.0, 1e39])]).unwrap();
        let e = f32_columns(&big, &["y".into()], "impute", "test").unwrap_err();
        assert!(matches!(e, Error::NonFinite { count: 1, .. }), "{e:?}");
    }
}
