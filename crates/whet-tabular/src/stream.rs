//! Tables larger than the memory budget: the main table is read in batches by polars' streaming
//! engine, and every step runs batch by batch with the same code as in memory.
//!
//! [`must_stream`] decides: the main table streams when its size in memory (a Parquet file's
//! declared uncompressed size) is over the budget. A CSV main table is first converted to a
//! Parquet file ([`crate::load::csvchunks`]). [`prepare_streamed`] then makes passes over
//! the table, each one read by polars' streaming engine in chunks of rows (`scan_parquet` of a
//! slice, the leading `exclude` steps as its projection; a plan per chunk, so what the engine
//! reads ahead stays within the chunk; two plans at a time, on two reading threads taking the
//! chunks in turn) whose batches come back in row order:
//!
//! 1. for a classification target, one pass collects the classes;
//! 2. one pass per fitted step feeds the training rows only (the split is `method: hash`,
//!    decided row by row), with the steps before it applied, to the step's [`crate::Fitter`]:
//!    running means and variances over 64-row blocks aligned to the whole column, counts of
//!    values and of missing values, least and greatest values, in memory bounded by the columns
//!    and their distinct values; exact medians and quantiles ([`crate::quantile`]) within an
//!    eighth of the budget, which takes more passes (`fit steps[i].<step> (pass 2)`, …) when
//!    the values near the ones sought do not fit it; `impute`'s numeric modes (value counts)
//!    and per-group statistics (a sum, value counts or, for medians, the values of each group)
//!    within that eighth too, refused by name past it. A step without a fitter would collect
//!    the columns it reads, of every training row, within the budget, and call its own `fit`;
//! 3. one last pass applies every step and builds the feature matrices.
//!
//! Everything that changes a batch is the in-memory pipeline's own code (`join`, its right side
//! checked and indexed once for every batch; the pre-split steps; `extract_target`; `hash_assign`; every `FittedStage::transform`; `to_matrix`), and a
//! step with a fitter fits through it in memory too, so data that fit give bit-identical arrays
//! and manifests both ways. Steps that need every row at once are refused by
//! [`check_streamable`], naming the step, before anything is read.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use ndarray::Array2;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use whet_core::Progress;

use crate::error::{Error, Result};
use crate::export::{Manifest, SplitWriters};
use crate::join::JoinHow;
use crate::load::{TableFormat, TableSpec};
use crate::loaded::LoadedTables;
use crate::pipeline::{
    PrepareReport, Prepared, SplitArrays, SplitRows, StepConfig, TabularConfig, check_finite,
    feature_columns, fit_target_scale, fitted_stage, pre_step, step_err,
};
use crate::rowshards::{RowShardWriter, Rows};
use crate::split::{RowKeys, SplitIndices, SplitMethod, hash_assign};
use crate::stage::{FittedStage, FittedStep, is_numeric, select_columns};
use crate::target::{Target, TargetKind, extract_target};

/// Rows per batch the streaming engine hands over.
pub const BATCH_ROWS: usize = 65_536;

/// What a streamed preparation did (kept in the run's manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamReport {
    /// The main table's size in memory, as estimated before reading it (bytes).
    pub table_bytes: u64,
    /// The memory budget it was over (bytes).
    pub budget: u64,
    /// Passes over the main table.
    pub passes: usize,
    /// Batches of the last pass.
    pub batches: usize,
    /// Rows of the main table each plan of the streaming engine reads (see `Chunks`).
    #[serde(default)]
    pub chunk_rows: u64,
    /// Each pass and its seconds: `classes`, `fit steps[i].<step>`, then `features` (kept for
    /// training) or `write` (an export).
    #[serde(default)]
    pub pass_seconds: Vec<(String, f64)>,
    /// The Parquet shards the prepared rows of each split (train, validation, test) were
    /// written to, when they did not fit in half the budget (absent when they were kept in
    /// memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<[usize; 3]>,
}

impl StreamReport {
    /// Counts a pass named `what`, begun at `started`.
    fn timed(&mut self, what: &str, started: std::time::Instant) {
        self.passes += 1;
        self.pass_seconds
            .push((what.to_string(), started.elapsed().as_secs_f64()));
    }
}

/// The main table's size in memory, estimated without reading it: for a Parquet file (checked
/// as [`crate::load_table`] checks it) the larger of its declared uncompressed column bytes and
/// its rows times each column's width in memory (32 bytes for text); twice a CSV file's bytes
/// (the text and the frame); eight times a compressed CSV file's bytes.
///
/// # Errors
/// The table's path or format errors, [`Error::CorruptParquet`].
pub fn table_bytes(spec: &TableSpec) -> Result<u64> {
    let kind = whet_core::input::check_input(&spec.path)?;
    Ok(match spec.resolved_format()? {
        TableFormat::Parquet => {
            whet_core::input::InputError::no_pipe(
                &spec.path,
                kind,
                "Parquet files are read with seeks (footer first)",
            )?;
            let declared = crate::parquet_guard::check_parquet(&spec.path)?;
            // Encoded pages (dictionaries, run lengths) are much smaller than the columns in
            // memory: count the rows at each column's width too, and take the larger.
            let (rows, schema) = parquet_rows(spec)?;
            let width: u64 = schema
                .iter_values()
                .map(|f| value_bytes(&DataType::from_arrow_field(f)))
                .sum();
            declared.max(rows.saturating_mul(width))
        }
        format => {
            let len = std::fs::metadata(&spec.path)
                .map_err(|source| Error::Io {
                    path: spec.path.clone(),
                    source,
                })?
                .len();
            len.saturating_mul(if format == TableFormat::CsvGz { 8 } else { 2 })
        }
    })
}

/// The rows of a Parquet main table (at most its `limit`) and its schema, from its footer.
pub(crate) fn parquet_rows(spec: &TableSpec) -> Result<(u64, Arc<ArrowSchema>)> {
    let read_err = |source| Error::ReadTable {
        path: spec.path.clone(),
        source,
    };
    let file = std::fs::File::open(&spec.path).map_err(|source| Error::Io {
        path: spec.path.clone(),
        source,
    })?;
    let mut reader = ParquetReader::new(file);
    let rows = reader.num_rows().map_err(read_err)? as u64;
    let rows = spec.limit.map_or(rows, |l| rows.min(l as u64));
    Ok((rows, reader.schema().map_err(read_err)?))
}

/// The rows of each row group of the Parquet table `spec`, from its footer.
pub(crate) fn row_groups(spec: &TableSpec) -> Result<Vec<u64>> {
    let file = std::fs::File::open(&spec.path).map_err(|source| Error::Io {
        path: spec.path.clone(),
        source,
    })?;
    let mut reader = ParquetReader::new(file);
    let meta = reader.get_metadata().map_err(|source| Error::ReadTable {
        path: spec.path.clone(),
        source,
    })?;
    Ok(meta
        .row_groups
        .iter()
        .map(|g| g.num_rows() as u64)
        .collect())
}

/// How a pass reads the main table: one plan per chunk of rows, one after the other. polars'
/// streaming engine reads ahead of a slow consumer (it fetches up to sixteen row groups ahead),
/// so a plan over the whole table would hold a part of it that grows with the table; a plan
/// over a chunk holds at most the chunk.
///
/// Chunks follow the file's row groups: whole row groups, as many as an eighth of the budget
/// holds, or a row group larger than that cut in equal slices. A slice of a row group costs
/// nearly the decoding of the whole group, so chunks that cut row groups needlessly read the
/// table several times over.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunks {
    /// The first row and the rows of each chunk, in order, covering the table's rows.
    ranges: Vec<(u64, u64)>,
}

impl Chunks {
    /// The chunks of a table of `rows` rows (at most its `limit`) in row groups of `groups`
    /// rows, taking `bytes` in memory, under `budget`.
    pub(crate) fn new(groups: &[u64], rows: u64, bytes: u64, budget: u64) -> Self {
        let per_row = (bytes / rows.max(1)).max(1);
        let most = (budget / 8 / per_row).max(BATCH_ROWS as u64);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut start = 0;
        for &g in groups {
            let g = g.min(rows - start);
            if g == 0 {
                break;
            }
            if g > most {
                // Equal slices of the group, each within the chunk size.
                let parts = g.div_ceil(most);
                let len = g.div_ceil(parts);
                let mut s = start;
                while s < start + g {
                    let n = len.min(start + g - s);
                    ranges.push((s, n));
                    s += n;
                }
            } else {
                match ranges.last_mut() {
                    // Whole groups join the chunk before while it holds them.
                    Some((s, n)) if *s + *n == start && *n + g <= most => *n += g,
                    _ => ranges.push((start, g)),
                }
            }
            start += g;
        }
        if start < rows {
            // Rows the footer's groups do not account for (not in a valid file): one more
            // chunk, so that every row is read.
            ranges.push((start, rows - start));
        }
        Chunks { ranges }
    }

    /// Chunks of `chunk` rows each (the last one shorter).
    #[cfg(test)]
    pub(crate) fn even(rows: u64, chunk: u64) -> Self {
        Chunks {
            ranges: (0..rows)
                .step_by(chunk as usize)
                .map(|start| (start, chunk.min(rows - start)))
                .collect(),
        }
    }

    /// The first row and the rows of each chunk.
    fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().copied()
    }

    /// The chunk that holds row `row`.
    fn holding(&self, row: u64) -> Option<(u64, u64)> {
        let i = self.ranges.partition_point(|&(s, _)| s <= row);
        let (s, n) = *self.ranges.get(i.checked_sub(1)?)?;
        (row < s + n).then_some((s, n))
    }

    /// Rows of the largest chunk.
    fn largest(&self) -> u64 {
        self.ranges.iter().map(|&(_, n)| n).max().unwrap_or(0)
    }
}

/// Bytes one value of `dtype` takes in a frame: the fixed widths, and 32 for text and
/// anything else (a string view and a short text).
fn value_bytes(dtype: &DataType) -> u64 {
    match dtype {
        DataType::Boolean | DataType::Int8 | DataType::UInt8 => 1,
        DataType::Int16 | DataType::UInt16 => 2,
        DataType::Int32 | DataType::UInt32 | DataType::Float32 | DataType::Date => 4,
        DataType::Int64
        | DataType::UInt64
        | DataType::Float64
        | DataType::Datetime(..)
        | DataType::Duration(_)
        | DataType::Time => 8,
        _ => 32,
    }
}

/// `Some(estimate)` when the main table of `cfg` is estimated ([`table_bytes`]) to need more
/// than `budget` bytes in memory, so the run streams; `None` when it is read in memory.
///
/// # Errors
/// Those of [`table_bytes`].
pub fn must_stream(cfg: &TabularConfig, budget: u64) -> Result<Option<u64>> {
    let spec = &cfg.data.tables[cfg.data.main_name()?];
    let bytes = table_bytes(spec)?;
    Ok((bytes > budget).then_some(bytes))
}

fn cannot(key: String, reason: String) -> Error {
    Error::CannotStream { key, reason }
}

/// The CSV main table `spec` converted to a Parquet file in the folder `<work>-csv` (removed
/// when the result is dropped), a part of a sixteenth of `budget` at a time
/// ([`crate::load::csvchunks`]).
///
/// # Errors
/// Those of [`crate::load_table`] for the file, write errors.
pub(crate) fn csv_to_parquet(
    spec: &TableSpec,
    work: &Path,
    budget: u64,
    progress: &dyn Progress,
) -> Result<crate::load::csvchunks::Converted> {
    let mut folder = work.as_os_str().to_owned();
    folder.push("-csv");
    crate::load::csvchunks::to_parquet(
        spec,
        Path::new(&folder),
        crate::load::csvchunks::part_bytes(budget),
        progress,
    )
}

/// How many of the leading pre-split steps run inside polars' lazy plan (the leading
/// `exclude`s: columns the scan need not read); the others run batch by batch.
fn lazy_prefix(cfg: &TabularConfig) -> usize {
    cfg.steps[..cfg.split_point()]
        .iter()
        .position(|s| !matches!(s, StepConfig::Exclude(_)))
        .unwrap_or(cfg.split_point())
}

/// Refuses, naming the key, what cannot run on a table read in batches: a split other than
/// `method: hash`, and steps that need every row at once
/// (`audit`, `fill`, joins other than `left`/`inner` or declared `one_to_one`).
///
/// # Errors
/// [`Error::CannotStream`].
pub fn check_streamable(cfg: &TabularConfig, bytes: u64, budget: u64) -> Result<()> {
    let over = format!(
        "the main table needs about {} in memory, more than the budget of {}",
        whet_core::budget::show_bytes(bytes),
        whet_core::budget::show_bytes(budget)
    );
    if cfg.split.method != SplitMethod::Hash {
        return Err(cannot(
            "split.method".into(),
            format!(
                "{over}; the `{}` split needs every row at once (a sort or a shuffle of all rows): \
                 use `split: {{ method: hash }}`, which decides each row's split from its `data.id` \
                 values or its row number, or raise the budget with `--max-memory`",
                cfg.split.method.key()
            ),
        ));
    }
    for (i, step) in cfg.steps.iter().enumerate() {
        let key = format!("steps[{i}].{}", step.key());
        let why = match step {
            StepConfig::Audit(_) => Some(
                "an audit looks at every row at once: run `whet audit` on a part of the table \
                 (the table's `limit`), or remove the step"
                    .to_string(),
            ),
            _ => batch_refusal(step),
        };
        if let Some(why) = why {
            return Err(cannot(key, format!("{over}; {why}")));
        }
    }
    Ok(())
}

/// Why `step` cannot run on a table read in batches (`None` when it can): a forward/backward
/// fill, a join other than `left`/`inner`, a join declared `one_to_one`. (An `audit`, which
/// looks at every row too, is refused by [`check_streamable`] for a run and skipped when a
/// manifest is replayed.)
pub(crate) fn batch_refusal(step: &StepConfig) -> Option<String> {
    match step {
        StepConfig::Fill(_) => Some(
            "a forward/backward fill follows an order over all rows: fill the table before \
             whet reads it, or use `impute`"
                .to_string(),
        ),
        StepConfig::Join(j) if !matches!(j.how, JoinHow::Left | JoinHow::Inner) => Some(
            format!(
                "a `{:?}` join needs every row of the main table at once: use `how: left` or `how: inner`",
                j.how
            )
            .to_lowercase(),
        ),
        StepConfig::Join(j) if j.cardinality == Some(crate::join::Cardinality::OneToOne) => Some(
            "`cardinality: one_to_one` is checked on every row of the main table at once: \
             declare `many_to_one`"
                .into(),
        ),
        _ => None,
    }
}

/// The columns a fitted step reads on the training rows, in frame order (`empty` has the
/// training frame's columns and no rows).
fn fit_columns(step: &StepConfig, empty: &DataFrame) -> Result<Vec<String>> {
    let mut cols = match step {
        StepConfig::DropColumns(c) => select_columns(empty, &c.columns, "drop_columns", |_| true)?,
        StepConfig::Impute(c) => {
            let mut v = select_columns(empty, &c.columns, "impute", |t| {
                is_numeric(t) || t == &DataType::String
            })?;
            v.extend(c.by.iter().cloned());
            v
        }
        StepConfig::Normalize(c) => select_columns(empty, &c.columns, "normalize", is_numeric)?,
        StepConfig::Clip(c) => select_columns(empty, &c.columns, "clip", is_numeric)?,
        StepConfig::Encode(c) => {
            let mut v = Vec::new();
            for list in [&c.one_hot, &c.ordinal, &c.boolean, &c.dates] {
                v.extend(select_columns(empty, list, "encode", |_| true)?);
            }
            v
        }
        // Unfitted steps read nothing to fit.
        _ => Vec::new(),
    };
    // Frame order, each once: the fit sees the columns as the whole frame has them.
    let order: BTreeMap<&str, usize> = empty
        .get_column_names()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    cols.sort_by_key(|c| order.get(c.as_str()).copied().unwrap_or(usize::MAX));
    cols.dedup();
    Ok(cols)
}

/// How a fitted step gathers its statistics from the training batches.
enum Gather {
    /// Batch by batch, in bounded memory ([`crate::Stage::fitter`]).
    Fit(Box<dyn crate::stage::Fitter>),
    /// The columns the step reads, of every training row, fitted on at the end.
    Collect {
        columns: Vec<String>,
        parts: Vec<DataFrame>,
        held: u64,
    },
}

/// One batch after the pre-split steps and the target, cut into the three splits.
struct Parts {
    /// Train, validation, test frames (identifiers dropped).
    frames: [DataFrame; 3],
    /// Their targets.
    targets: [Target; 3],
    /// Each row's row in the main table's file.
    source_rows: [Vec<IdxSize>; 3],
    /// Each row's position among the rows kept after the pre-split steps and the target.
    positions: [Vec<IdxSize>; 3],
}

/// What turns a batch of the lazy plan into [`Parts`].
struct Pipe<'a> {
    cfg: &'a TabularConfig,
    seed: u64,
    kind: TargetKind,
    classes: Option<Vec<String>>,
    tables: &'a BTreeMap<String, DataFrame>,
    /// The `join` steps' right sides, checked and indexed at the first batch, and their reports
    /// since the last [`Pipe::restart`].
    joins: crate::join::Joins<'a>,
    /// Rows kept so far (after the pre-split steps and the target), for positions.
    kept: usize,
    /// Rows dropped for a missing target.
    dropped: usize,
}

impl<'a> Pipe<'a> {
    /// A pipe for the batches of `cfg`'s main table (`tables`: the tables it joins), the
    /// classes not known yet.
    fn new(
        cfg: &'a TabularConfig,
        seed: u64,
        kind: TargetKind,
        tables: &'a BTreeMap<String, DataFrame>,
    ) -> Self {
        Pipe {
            cfg,
            seed,
            kind,
            classes: None,
            tables,
            joins: crate::join::Joins::new(true),
            kept: 0,
            dropped: 0,
        }
    }

    /// A new pass: the counts and reports start again.
    fn restart(&mut self) {
        self.kept = 0;
        self.dropped = 0;
        self.joins.restart();
    }

    /// The pre-split steps after the lazy prefix, on one batch: joins through the right side
    /// prepared at the first batch (`join`'s code, its checks made once), the other steps as in
    /// memory.
    fn pre(&mut self, mut df: DataFrame) -> Result<DataFrame> {
        let (from, to) = (lazy_prefix(self.cfg), self.cfg.split_point());
        let (cfg, tables) = (self.cfg, self.tables);
        let mut scratch = PrepareReport::default();
        for (i, step) in cfg.steps[..to].iter().enumerate().skip(from) {
            df = match step {
                StepConfig::Join(j) => self.joins.join(i, j, df, tables),
                _ => pre_step(step, df, tables, Some(&self.kind), &mut scratch, false),
            }
            .map_err(step_err(i, step))?;
        }
        Ok(df)
    }

    /// One batch through the pre-split steps and the target, cut into the splits; with
    /// `train_only`, the validation and test parts are left empty (a fit reads the training
    /// rows only).
    fn split(&mut self, df: DataFrame, train_only: bool) -> Result<Option<Parts>> {
        let df = self.pre(df)?;
        let col = self.kind.column();
        let Ok(c) = df.column(col) else {
            return Err(crate::stage::not_found(&df, col, "target"));
        };
        if let TargetKind::Binary { .. } | TargetKind::Regression { .. } = self.kind {
            // The check `prepare` makes on every row, batch by batch.
            let rows = format!("the rows of a batch of {}", df.height());
            self.cfg
                .data
                .target
                .check_rows(c.as_materialized_series(), &rows)?;
        }
        if df.height() == 0 || c.null_count() == df.height() {
            self.dropped += df.height();
            return Ok(None);
        }
        let (df, target, dropped) = extract_target(df, &self.kind, self.classes.as_deref())?;
        self.dropped += dropped;
        let (df, rows) = crate::rows::take_source_rows(df)?;
        let keys = RowKeys {
            ids: &self.cfg.data.id,
            rows: Some(&rows),
        };
        let to = hash_assign(&df, keys, &self.cfg.split, self.seed)?;
        let mut idx: [Vec<IdxSize>; 3] = Default::default();
        for (i, &s) in to.iter().enumerate() {
            idx[s as usize].push(i as IdxSize);
        }
        let base = self.kept as IdxSize;
        self.kept += df.height();
        if train_only {
            idx[1].clear();
            idx[2].clear();
        }
        // Each split's rows by a mask, in order: a filter copies runs of rows (and their
        // missing-value bits) where a gather of these ascending rows goes value by value.
        let df = crate::rows::drop_ids(df, &self.cfg.data.id)?;
        let take = |k: usize| -> Result<DataFrame> {
            if idx[k].is_empty() {
                return Ok(df.clear());
            }
            if idx[k].len() == to.len() {
                return Ok(df.clone());
            }
            let mask: BooleanChunked = to.iter().map(|&s| Some(s as usize == k)).collect();
            Ok(df.filter(&mask)?)
        };
        Ok(Some(Parts {
            frames: [take(0)?, take(1)?, take(2)?],
            targets: [
                target.take(&idx[0]),
                target.take(&idx[1]),
                target.take(&idx[2]),
            ],
            source_rows: idx
                .clone()
                .map(|v| v.iter().map(|&i| rows[i as usize]).collect()),
            positions: idx.map(|v| v.iter().map(|&i| base + i).collect()),
        }))
    }
}

/// The scan of the Parquet table `spec`, and its path.
pub(crate) fn scan(spec: &TableSpec) -> Result<(LazyFrame, std::path::PathBuf)> {
    let err = |source| Error::ReadTable {
        path: spec.path.clone(),
        source,
    };
    let path = PlRefPath::try_from_path(&spec.path).map_err(err)?;
    let lf = LazyFrame::scan_parquet(path, ScanArgsParquet::default()).map_err(err)?;
    Ok((lf, spec.path.clone()))
}

/// The columns `cols` of `len` rows of the table `spec` from row `start`, as read.
fn raw_chunk(spec: &TableSpec, (start, len): (u64, u64), cols: &[String]) -> Result<DataFrame> {
    let (lf, path) = scan(spec)?;
    lf.slice(start as i64, len as IdxSize)
        .select(cols.iter().map(|c| col(c.as_str())).collect::<Vec<_>>())
        .collect()
        .map_err(|source| Error::ReadTable { path, source })
}

/// The lazy plan of `len` rows of the table `spec` from row `start`: the scan (with the hidden
/// source-row column, counted from the table's first row), then the `exclude` steps of
/// `lazy` (the leading `exclude` steps of a run, [`lazy_prefix`]).
fn plan(spec: &TableSpec, lazy: &[StepConfig], (start, len): (u64, u64)) -> Result<LazyFrame> {
    let (mut lf, path) = scan(spec)?;
    let schema = lf.collect_schema().map_err(|source| Error::ReadTable {
        path: path.clone(),
        source,
    })?;
    if schema.contains(crate::rows::SOURCE_ROW) {
        return Err(Error::Config(format!(
            "the main table has a column named `{}`, which whet uses internally; rename it",
            crate::rows::SOURCE_ROW
        )));
    }
    let mut lf = lf.slice(start as i64, len as IdxSize).with_row_index(
        crate::rows::SOURCE_ROW,
        Some(IdxSize::try_from(start).map_err(|_| {
            Error::Config(format!(
                "the main table has more than {} rows, more than whet counts",
                IdxSize::MAX
            ))
        })?),
    );
    for step in lazy {
        if let StepConfig::Exclude(cols) = step {
            let schema = lf.collect_schema()?;
            let keep: Vec<Expr> = schema
                .iter_names()
                .filter(|n| !cols.iter().any(|c| c == n.as_str()))
                .map(|n| col(n.clone()))
                .collect();
            lf = lf.select(keep);
        }
    }
    Ok(lf)
}

/// Runs the [`plan`] of each of `chunks` of the table `spec` (`lazy`: the steps inside the plan)
/// on the streaming engine and hands the batches, in row order, to `each`; returns how many
/// there were. Two reading threads take the chunks in turn (even, odd), each a plan at a time,
/// so that the next chunk's plan is already reading while the last row groups of one are
/// decoded; each holds at most half a chunk of batches ahead of `each` (so the batches waiting
/// stay within a chunk, and the plans within two). An error from `each` stops them.
pub(crate) fn for_each_batch(
    spec: &TableSpec,
    lazy: &[StepConfig],
    chunks: &Chunks,
    mut each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<usize> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let ahead = (chunks.largest().div_ceil(BATCH_ROWS as u64) as usize)
        .div_ceil(2)
        .max(1);
    let ranges: Vec<(u64, u64)> = chunks.ranges().collect();
    let path = &spec.path;
    let read_err = |source| Error::ReadTable {
        path: path.clone(),
        source,
    };
    // `None` ends a chunk.
    let (tx0, rx0) = std::sync::mpsc::sync_channel::<Option<DataFrame>>(ahead);
    let (tx1, rx1) = std::sync::mpsc::sync_channel::<Option<DataFrame>>(ahead);
    let stopped = Arc::new(AtomicBool::new(false));
    let ranges = &ranges;
    std::thread::scope(|s| {
        // The receivers live in the scope: should `each` panic, they are dropped while
        // unwinding, so a reading thread blocked on a full channel stops before the scope
        // waits for it.
        let rxs = [rx0, rx1];
        let spawn = |reader: usize, tx: std::sync::mpsc::SyncSender<Option<DataFrame>>| {
            let stopped = stopped.clone();
            s.spawn(move || -> Result<()> {
                for &range in ranges.iter().skip(reader).step_by(2) {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let (tx_batch, stop) = (tx.clone(), stopped.clone());
                    // `true` stops the plan: the receiver is gone after an error.
                    let callback = PlanCallback::new(move |df: DataFrame| {
                        let gone = tx_batch.send(Some(df)).is_err();
                        if gone {
                            stop.store(true, Ordering::Relaxed);
                        }
                        Ok(gone)
                    });
                    let lf = plan(spec, lazy, range)?.sink_batches(
                        callback,
                        true,
                        NonZeroUsize::new(BATCH_ROWS),
                    )?;
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        lf.collect_with_engine(Engine::Streaming).map(|_| ())
                    }));
                    match ran {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(read_err(e)),
                        Err(p) => {
                            return Err(Error::CorruptTable {
                                path: path.clone(),
                                format: "Parquet ",
                                detail: p
                                    .downcast_ref::<&str>()
                                    .map(|s| s.to_string())
                                    .or_else(|| p.downcast_ref::<String>().cloned())
                                    .unwrap_or_else(|| {
                                        "a panic in polars' streaming engine".into()
                                    }),
                            });
                        }
                    }
                    if tx.send(None).is_err() {
                        stopped.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                Ok(())
            })
        };
        let engines = [spawn(0, tx0), spawn(1, tx1)];
        let mut batches = 0;
        let mut failed = None;
        // Each chunk's batches from the thread that reads it; a thread that stops early (an
        // error) closes its channel.
        'chunks: for c in 0..ranges.len() {
            loop {
                match rxs[c % 2].recv() {
                    Ok(Some(df)) => {
                        batches += 1;
                        if let Err(e) = each(df) {
                            failed = Some(e);
                            break 'chunks;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => break 'chunks,
                }
            }
        }
        stopped.store(true, Ordering::Relaxed);
        drop(rxs);
        let ran = engines.map(|e| e.join());
        if let Some(e) = failed {
            return Err(e);
        }
        for r in ran {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::CorruptTable {
                        path: path.clone(),
                        format: "Parquet ",
                        detail: "a panic while reading".into(),
                    });
                }
            }
        }
        Ok(batches)
    })
}

/// Where the last pass of [`prepare_streamed`] puts the prepared rows.
pub enum Destination<'a> {
    /// Kept for training: in memory, or, once the matrices pass half the budget, every split's
    /// rows in Parquet shards ([`Rows::Shards`]) in the folders `<work>-train`, `-validation`
    /// and `-test` (`work`: [`prepare_streamed`]'s), each removed with its shards.
    Train,
    /// Written, every split, into an export's files (Parquet or CSV) batch by batch, with the
    /// identifier and `keep` columns; the returned [`Prepared`] then holds no rows (its arrays
    /// and row numbers are empty; its report counts the rows).
    Export(&'a mut SplitWriters),
}

/// [`crate::prepare`] for a main table larger than the memory budget (see the module
/// documentation): the same [`Prepared`], with what the streaming did in its report's
/// `streamed`, its rows where `to` says.
///
/// `work` names the files written on the way (not yet existing; its folder is made when
/// needed): a CSV main table converted to Parquet in `<work>-csv` (removed before returning),
/// and the training rows of [`Destination::Train`] that do not fit in memory. The tables the
/// main table joins are loaded whole through `loaded`, as [`crate::prepare`] loads its tables.
///
/// # Errors
/// [`Error::CannotStream`] for what cannot stream, and every error of [`crate::prepare`].
#[allow(clippy::too_many_arguments)]
pub fn prepare_streamed(
    cfg: &TabularConfig,
    seed: u64,
    table_bytes: u64,
    budget: u64,
    mut to: Destination<'_>,
    work: &Path,
    loaded: &LoadedTables,
    progress: &dyn Progress,
) -> Result<Prepared> {
    cfg.checked()?;
    check_streamable(cfg, table_bytes, budget)?;
    let t0 = std::time::Instant::now();
    let main = cfg.data.main_name()?.to_string();
    let mut report = PrepareReport::default();
    let mut stream = StreamReport {
        table_bytes,
        budget,
        ..StreamReport::default()
    };
    // A CSV main table is read once, into a Parquet file that the passes read.
    let csv = match cfg.data.tables[&main].resolved_format()? {
        TableFormat::Parquet => None,
        _ => {
            let started = std::time::Instant::now();
            let converted = csv_to_parquet(&cfg.data.tables[&main], work, budget, progress)?;
            stream.timed("csv to parquet", started);
            report.loads.push(converted.report.clone());
            Some(converted)
        }
    };
    let main_spec = csv.as_ref().map_or(&cfg.data.tables[&main], |c| &c.spec);
    // The chunks follow the Parquet file, its size in memory as it is.
    let table_bytes = match &csv {
        Some(c) => self::table_bytes(&c.spec)?,
        None => table_bytes,
    };
    // The leading `exclude` steps run inside the scan's plan.
    let lazy = &cfg.steps[..lazy_prefix(cfg)];
    // The other tables are joined whole: they are loaded in memory (and checked) as usual,
    // through `loaded` (a table read by an earlier preparation of this process is not read
    // again).
    let mut tables = BTreeMap::new();
    progress.begin("load tables", Some(cfg.tables_to_join().len() as u64));
    for name in cfg.tables_to_join() {
        let (df, rep) = loaded.load(&cfg.data.tables[&name])?;
        tables.insert(name, df);
        report.loads.push(rep);
        progress.advance(1);
    }
    progress.end();
    let input_schema: Vec<(String, String)> = {
        scan(main_spec)?
            .0
            .collect_schema()?
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    };
    let kind = cfg.data.target.kind()?;
    let sp = cfg.split_point();
    let mut pipe = Pipe::new(cfg, seed, kind.clone(), &tables);
    // Starts a pass: its progress line, and its clock.
    let pass = |what: &str| {
        progress.begin(what, None);
        std::time::Instant::now()
    };
    let chunks = Chunks::new(
        &row_groups(main_spec)?,
        parquet_rows(main_spec)?.0,
        table_bytes,
        budget,
    );
    stream.chunk_rows = chunks.largest();
    let chunks = &chunks;

    // 1. The classes of a classification target: the distinct labels, checked as in memory.
    if let TargetKind::Classification { .. } = kind {
        let started = pass("stream: classes");
        let mut labels = std::collections::BTreeSet::new();
        for_each_batch(main_spec, lazy, chunks, |df| {
            let df = pipe.pre(df)?;
            let c = df
                .column(kind.column())
                .map_err(|_| crate::stage::not_found(&df, kind.column(), "target"))?;
            let s = c.as_materialized_series().cast(&DataType::String)?;
            labels.extend(s.str()?.iter().flatten().map(String::from));
            let most = cfg.data.target.max_classes();
            if labels.len() > most {
                return Err(Error::Target(format!(
                    "data.target.column: `{}` has more than {most} distinct values, more than \
                     `max_classes` allows (is it an identifier, or a number to predict with \
                     `{{ regression: {} }}`?)",
                    kind.column(),
                    kind.column()
                )));
            }
            progress.advance(df.height() as u64);
            Ok(())
        })?;
        progress.end();
        stream.timed("classes", started);
        // The labels as a column: `extract_target` picks and checks the classes as in memory.
        let labels: Vec<String> = labels.into_iter().collect();
        let probe = DataFrame::new(
            labels.len(),
            vec![Column::new(kind.column().into(), labels)],
        )?;
        let (_, t, _) = extract_target(probe, &kind, None)?;
        pipe.classes = Some(t.classes);
    }

    // 2. Each fitted step, on the training rows, with the steps before it applied.
    let mut fitted: Vec<Box<dyn FittedStage>> = Vec::new();
    let mut fitted_steps: Vec<FittedStep> = Vec::new();
    let mut last_stage = cfg.stage_before_split();
    for (i, step) in cfg.steps.iter().enumerate().skip(sp) {
        let stage = fitted_stage(i, step)?;
        let mut gather: Option<Gather> = None;
        // Passes until the step's fitter has what it needs (exact quantiles over the room take
        // a few).
        for round in 1.. {
            let what = match round {
                1 => format!("fit {}", stage.name()),
                r => format!("fit {} (pass {r})", stage.name()),
            };
            let started = pass(&format!("stream: {what}"));
            pipe.restart();
            for_each_batch(main_spec, lazy, chunks, |df| {
                let rows = df.height() as u64;
                let Some(p) = pipe.split(df, true)? else {
                    return Ok(());
                };
                let [mut train, ..] = p.frames;
                for (f, (j, earlier)) in fitted.iter().zip(cfg.steps.iter().enumerate().skip(sp)) {
                    train = f.transform(train).map_err(step_err(j, earlier))?;
                }
                let g = match &mut gather {
                    Some(g) => g,
                    None => {
                        let empty = train.clear();
                        gather.insert(
                            match stage
                                .fitter(&empty, crate::stage::room_of(budget))
                                .map_err(step_err(i, step))?
                            {
                                Some(f) => Gather::Fit(f),
                                None => Gather::Collect {
                                    columns: fit_columns(step, &empty)
                                        .map_err(step_err(i, step))?,
                                    parts: Vec::new(),
                                    held: 0,
                                },
                            },
                        )
                    }
                };
                match g {
                    Gather::Fit(f) => f.feed(&train).map_err(step_err(i, step))?,
                    Gather::Collect {
                        columns,
                        parts,
                        held,
                    } => {
                        let part = train.select(columns.iter().map(String::as_str))?;
                        *held = held.saturating_add(part.estimated_size() as u64);
                        // The parts, and the frame in one piece made from them.
                        whet_core::budget::check(
                            format!(
                                "fitting steps[{i}].{} on the training rows, which needs columns \
                                 {} of every training row at once",
                                step.key(),
                                columns.join(", ")
                            ),
                            held.saturating_mul(2),
                            format!("steps[{i}].{}", step.key()),
                        )?;
                        parts.push(part);
                    }
                }
                progress.advance(rows);
                Ok(())
            })?;
            progress.end();
            let key = match round {
                1 => format!("fit steps[{i}].{}", step.key()),
                r => format!("fit steps[{i}].{} (pass {r})", step.key()),
            };
            stream.timed(&key, started);
            let again = match &mut gather {
                Some(Gather::Fit(f)) => f.again().map_err(step_err(i, step))?,
                _ => false,
            };
            if !again {
                break;
            }
        }
        let no_rows =
            || Error::Split("no training rows: every row went to validation or test".into());
        let f = match gather.ok_or_else(no_rows)? {
            Gather::Fit(f) => f.finish().map_err(step_err(i, step))?,
            Gather::Collect { parts, .. } => {
                // One chunk, as the in-memory training frame: the fit sees the same blocks.
                let mut it = parts.into_iter();
                let mut train = it.next().ok_or_else(no_rows)?;
                for p in it {
                    train.vstack_mut_owned(p)?;
                }
                train.rechunk_mut();
                stage.fit(&train).map_err(step_err(i, step))?
            }
        };
        fitted_steps.push(f.to_step());
        fitted.push(f);
        last_stage = stage.name();
    }

    // 3. Every step on every row, into the matrices.
    let started = pass("stream: features");
    let mut features: Option<(Vec<String>, Vec<String>)> = None;
    let mut xs: [Vec<f32>; 3] = Default::default();
    let budget_check = |ys: &[Vec<f32>; 3]| {
        whet_core::budget::check(
            "the targets of the streamed table",
            (ys.iter().map(Vec::len).sum::<usize>() as u64).saturating_mul(4),
            "split, or a smaller table (the table's `limit`)",
        )
    };
    let mut ys: [Vec<f32>; 3] = Default::default();
    // Rows of each split, the first target row and whether another differs from it (a
    // classifier needs two classes): counted as the rows pass, so that an export holds no
    // targets (only the training ones, when a regression target is scaled on them).
    let mut counts = [0usize; 3];
    let mut first_target: Option<Vec<f32>> = None;
    let mut varied = false;
    let exporting = matches!(to, Destination::Export(_));
    let keep_targets = |k: usize| !exporting || (k == 0 && cfg.data.target.scales());
    // Past half the budget every split's rows continue on disk.
    let mut writers: [Option<RowShardWriter>; 3] = Default::default();
    let mut idx = SplitIndices::default();
    let mut source_rows = SplitIndices::default();
    let mut classes = Vec::new();
    let mut target_dim = 1;
    pipe.restart();
    const SPLITS: [&str; 3] = ["train", "validation", "test"];
    // An export's identifier and `keep` columns, of the chunk being read.
    let mut raw: Option<(IdxSize, DataFrame)> = None;
    let batches = for_each_batch(main_spec, lazy, chunks, |df| {
        let rows = df.height() as u64;
        // The batch's first row of the main table (its chunk's rows hold its identifiers).
        let first = df
            .column(crate::rows::SOURCE_ROW)?
            .idx()?
            .get(0)
            .unwrap_or_default();
        let Some(p) = pipe.split(df, false)? else {
            return Ok(());
        };
        let Parts {
            frames,
            targets,
            source_rows: src,
            positions,
        } = p;
        for (k, (mut frame, target)) in frames.into_iter().zip(targets).enumerate() {
            for (f, (i, step)) in fitted.iter().zip(cfg.steps.iter().enumerate().skip(sp)) {
                frame = f.transform(frame).map_err(step_err(i, step))?;
                check_finite(&frame, step.key(), SPLITS[k]).map_err(step_err(i, step))?;
            }
            let (names, _) = features.get_or_insert_with(|| feature_columns(&frame));
            let y = target.matrix();
            target_dim = y.ncols();
            classes.clone_from(&target.classes);
            counts[k] += y.nrows();
            if !varied {
                for row in y.rows() {
                    match &first_target {
                        None => first_target = Some(row.to_vec()),
                        Some(f) if !f.iter().eq(row.iter()) => {
                            varied = true;
                            break;
                        }
                        Some(_) => {}
                    }
                }
            }
            // The targets stay in memory (the trainer's, the target's scale) even when the
            // rows go to disk; an export keeps only those the target's scale is fitted on.
            if keep_targets(k) {
                ys[k].extend(y.iter());
            }
            if let Destination::Export(w) = &mut to {
                let (ids, keep) = (&cfg.data.id, w.keep());
                let range = chunks.holding(u64::from(first)).ok_or_else(|| {
                    Error::Config(format!("row {first} of the main table is in no chunk read"))
                })?;
                let start = range.0 as IdxSize;
                if raw.as_ref().is_none_or(|(s, _)| *s != start) {
                    let cols: Vec<String> = ids
                        .iter()
                        .chain(keep.iter().filter(|c| !ids.contains(c)))
                        .cloned()
                        .collect();
                    let df = if cols.is_empty() {
                        DataFrame::empty()
                    } else {
                        raw_chunk(main_spec, range, &cols)?
                    };
                    raw = Some((start, df));
                }
                let Some((start, chunk)) = &raw else {
                    continue;
                };
                let ids = crate::rows::row_columns_from(
                    chunk,
                    *start,
                    &src[k],
                    ids,
                    keep,
                    &cfg.data.tables[&main].path,
                )?;
                // The export writes columns: no matrix.
                let x =
                    crate::pipeline::feature_columns_f32(&frame, names, &last_stage, SPLITS[k])?;
                w.push(k, x, &y, names, &ids)?;
                budget_check(&ys)?;
                continue;
            }
            let x = crate::pipeline::to_matrix(&frame, names, &last_stage, SPLITS[k])?;
            if let Some(w) = &mut writers[k] {
                w.push(&x, &y)?;
                continue;
            }
            xs[k].extend(x.iter());
            let held = |xs: &[Vec<f32>; 3]| {
                (xs.iter().chain(&ys).map(Vec::len).sum::<usize>() as u64).saturating_mul(4)
            };
            if let (None, Destination::Train) = (&writers[0], &to)
                && held(&xs) > budget / 2
            {
                // Every split continues on disk, from its first row (each split's `xs` and
                // `ys` hold the same rows here), in folders `<work>-<split>`.
                let d = x.ncols();
                for (j, w) in writers.iter_mut().enumerate() {
                    let mut dir = work.as_os_str().to_owned();
                    dir.push(format!("-{}", SPLITS[j]));
                    let mut shards = RowShardWriter::new(Path::new(&dir), d, target_dim)?;
                    let n = xs[j].len() / d.max(1);
                    let x0 = Array2::from_shape_vec((n, d), std::mem::take(&mut xs[j]))
                        .map_err(|e| Error::Config(e.to_string()))?;
                    let y0 = Array2::from_shape_vec((n, target_dim), ys[j].clone())
                        .map_err(|e| Error::Config(e.to_string()))?;
                    shards.push(&x0, &y0)?;
                    *w = Some(shards);
                }
            }
            // The targets and row numbers stay in memory.
            whet_core::budget::check(
                "the validation and test matrices and the targets of the streamed table",
                held(&xs),
                "split.validation and split.test, or the steps that add columns (encode.one_hot)",
            )?;
        }
        if matches!(to, Destination::Export(_)) {
            // The rows are in the files.
            progress.advance(rows);
            return Ok(());
        }
        for (k, to) in [
            &mut source_rows.train,
            &mut source_rows.validation,
            &mut source_rows.test,
        ]
        .into_iter()
        .enumerate()
        {
            to.extend_from_slice(&src[k]);
        }
        for (k, to) in [&mut idx.train, &mut idx.validation, &mut idx.test]
            .into_iter()
            .enumerate()
        {
            to.extend_from_slice(&positions[k]);
        }
        progress.advance(rows);
        Ok(())
    })?;
    progress.end();
    stream.timed(
        if matches!(to, Destination::Export(_)) {
            "write"
        } else {
            "features"
        },
        started,
    );
    stream.batches = batches;
    if pipe.kept == 0 {
        return Err(Error::Target(format!(
            "column `{}` is missing in every row, so there is nothing to learn: check the \
             column name, and the table's `missing` markers",
            kind.column()
        )));
    }
    let (features, unused) = features.unwrap_or_default();
    let d = features.len();
    let [w0, w1, w2] = writers;
    let shards = [w0, w1, w2].map(|w| w.map(RowShardWriter::finish));
    let [s0, s1, s2] = shards;
    let shards = [s0.transpose()?, s1.transpose()?, s2.transpose()?];
    stream.shards = shards[0].is_some().then(|| {
        shards
            .each_ref()
            .map(|s| s.as_ref().map_or(0, |s| s.files().len()))
    });
    let arrays: Vec<SplitArrays> = xs
        .into_iter()
        .zip(ys)
        .map(|(x, y)| {
            let n = y.len() / target_dim.max(1);
            // A split's features are empty here when they went to disk.
            let n = if x.is_empty() { 0 } else { n };
            Ok(SplitArrays {
                x: Array2::from_shape_vec((n, d), x).map_err(|e| Error::Config(e.to_string()))?,
                y: Array2::from_shape_vec((y.len() / target_dim.max(1), target_dim), y)
                    .map_err(|e| Error::Config(e.to_string()))?,
            })
        })
        .collect::<Result<_>>()?;
    if counts[0] == 0 {
        return Err(Error::Split(
            "no training rows: every row went to validation or test (lower split.test and split.validation)".into(),
        ));
    }
    report.rows = SplitRows {
        train: counts[0],
        validation: counts[1],
        test: counts[2],
    };
    report.target_missing_dropped = pipe.dropped;
    report.joins = pipe.joins.take_reports();
    report.unused_columns = unused;
    report
        .seconds
        .push(("stream".into(), t0.elapsed().as_secs_f64()));
    let target_scale = fit_target_scale(cfg, &kind, arrays[0].y.as_slice().unwrap_or(&[]))?;
    if !matches!(kind, TargetKind::Regression { .. }) {
        // A row unlike the first, found as the rows passed.
        if !varied {
            return Err(Error::Target(format!(
                "column `{}` has a single class in {} rows: a classifier needs at least two",
                kind.column(),
                pipe.kept
            )));
        }
    }
    // An export's rows are in its files: the targets kept for the checks above go.
    let arrays = match to {
        Destination::Export(_) => (0..3)
            .map(|_| SplitArrays {
                x: Array2::zeros((0, d)),
                y: Array2::zeros((0, target_dim)),
            })
            .collect(),
        Destination::Train => arrays,
    };
    let mut rows = arrays
        .into_iter()
        .zip(shards)
        .map(|(a, shards)| match shards {
            Some(shards) => Rows::Shards { shards, y: a.y },
            None => Rows::Memory(a),
        });
    let (train, validation, test) = (
        rows.next().expect("3"),
        rows.next().expect("3"),
        rows.next().expect("3"),
    );
    let manifest = Manifest {
        format: crate::export::MANIFEST_FORMAT.into(),
        seed,
        data: cfg.data.clone(),
        pre_split: cfg.steps[..sp].to_vec(),
        split: cfg.split.clone(),
        fold: None,
        target: kind,
        classes: classes.clone(),
        target_scale,
        fitted: fitted_steps,
        features: features.clone(),
        unused_columns: report.unused_columns.clone(),
        input_schema,
        rows: report.rows,
        files: vec![],
    };
    report.streamed = Some(stream);
    Ok(Prepared {
        train,
        validation,
        test,
        features,
        classes,
        indices: idx,
        source_rows,
        report,
        manifest,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::join::JoinConfig;
    use std::path::PathBuf;

    /// The batches of the plan of `spec` over its `rows` rows, end to end.
    fn batches(spec: &TableSpec, lazy: &[StepConfig], rows: u64) -> DataFrame {
        let mut all: Option<DataFrame> = None;
        for_each_batch(spec, lazy, &Chunks::even(rows, rows), |df| {
            match &mut all {
                Some(a) => {
                    a.vstack_mut_owned(df)?;
                }
                None => all = Some(df),
            }
            Ok(())
        })
        .unwrap();
        all.unwrap()
    }

    /// `a` and `b` hold the same columns, types, missing values and values.
    fn same_frame(a: &DataFrame, b: &DataFrame) {
        assert_eq!(a.get_column_names(), b.get_column_names());
        for (a, b) in a.columns().iter().zip(b.columns()) {
            assert_eq!(a.dtype(), b.dtype(), "{}", a.name());
            assert_eq!(a.null_count(), b.null_count(), "{}", a.name());
            assert!(
                a.as_materialized_series()
                    .equals_missing(b.as_materialized_series()),
                "{}",
                a.name()
            );
        }
    }

    /// The shipped flights written as Parquet into `dir`, and a run over it with `steps` (JSON
    /// steps, comma-separated), its weather and planes from the shipped data, a binary target
    /// and a hash split: the table, its path and the run's config.
    pub(crate) fn flights_run(dir: &Path, steps: &str) -> (DataFrame, PathBuf, TabularConfig) {
        let mut flights = shipped("flights.csv.gz");
        let path = dir.join("flights.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut flights)
            .unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/nycflights13");
        let json = format!(
            r#"{{ "data": {{ "tables": {{ "flights": {{ "path": {p:?} }}, "weather": {{ "path": {w:?} }}, "planes": {{ "path": {pl:?} }} }},
                 "main": "flights", "target": {{ "column": "arr_delay", "threshold": 15 }} }},
               "steps": [ {steps} ],
               "split": {{ "method": "hash" }} }}"#,
            p = path.display().to_string(),
            w = data.join("weather.csv.gz").display().to_string(),
            pl = data.join("planes.csv.gz").display().to_string(),
        );
        (flights, path, serde_json::from_str(&json).unwrap())
    }

    /// `cfg` streamed under `budget` with seed `seed`, its rows kept (`work`: the work folder),
    /// its joined tables loaded through `loaded`.
    fn stream_train(
        cfg: &TabularConfig,
        seed: u64,
        budget: u64,
        work: &Path,
        loaded: &LoadedTables,
    ) -> Result<crate::pipeline::Prepared> {
        let spec = &cfg.data.tables[cfg.data.main_name().unwrap()];
        prepare_streamed(
            cfg,
            seed,
            table_bytes(spec).unwrap(),
            budget,
            Destination::Train,
            work,
            loaded,
            &whet_core::progress::NoProgress,
        )
    }

    /// `cfg` prepared in memory and streamed under `budget` (its rows kept, `work` the
    /// streamed run's work folder), seed 5.
    fn both_ways(
        cfg: &TabularConfig,
        budget: u64,
        work: &Path,
    ) -> (crate::pipeline::Prepared, crate::pipeline::Prepared) {
        let whole = crate::pipeline::prepare(
            cfg,
            5,
            None,
            &crate::LoadedTables::none(),
            &whet_core::progress::NoProgress,
        )
        .unwrap();
        let streamed = stream_train(cfg, 5, budget, work, &LoadedTables::none()).unwrap();
        (whole, streamed)
    }

    fn shipped(name: &str) -> DataFrame {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/nycflights13")
            .join(name);
        crate::load::load_table(&TableSpec::new(path)).unwrap().0
    }

    /// Medians, quartiles and clip bounds fitted over more training values than a tiny budget
    /// lets a fit hold take more passes, and give the bits of the in-memory fit (which holds
    /// every value at once).
    #[test]
    fn quantiles_over_the_budget_take_more_passes_to_the_same_bits() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, cfg) = flights_run(
            dir.path(),
            r#"{ "impute": { "numeric": "median", "categorical": "mode", "indicator": true } },
                 { "clip": { "lower": 0.05, "upper": 0.95, "columns": ["dep_delay", "distance"] } },
                 { "normalize": { "method": "robust" } }"#,
        );
        let (whole, streamed) = both_ways(&cfg, 4_000_000, &dir.path().join("rows"));
        assert_eq!(whole.manifest.fitted, streamed.manifest.fitted);
        let report = streamed.report.streamed.as_ref().unwrap();
        let passes: Vec<&str> = report
            .pass_seconds
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        for step in ["steps[0].impute", "steps[1].clip", "steps[2].normalize"] {
            assert!(
                passes.contains(&format!("fit {step} (pass 2)").as_str()),
                "{step}: {passes:?}"
            );
        }
    }

    /// A join made batch by batch through one [`crate::join::RightSide`] gives the frame
    /// A streamed export counts each split's rows and finds a second class as the rows pass
    /// (it keeps no targets): the in-memory preparation's counts, and the single-class refusal
    /// for a threshold no row reaches.
    #[test]
    fn a_streamed_export_counts_rows_and_classes_as_they_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, cfg) = flights_run(
            dir.path(),
            r#"{ "impute": { "numeric": "mean", "categorical": "mode" } }"#,
        );
        let whole = crate::pipeline::prepare(
            &cfg,
            5,
            None,
            &crate::LoadedTables::none(),
            &whet_core::progress::NoProgress,
        )
        .unwrap();
        let export = |cfg: &TabularConfig, name: &str| {
            let out = dir.path().join(name);
            std::fs::create_dir(&out).unwrap();
            let mut w = SplitWriters::new(&out, crate::ExportFormat::Parquet, &[]).unwrap();
            let spec = &cfg.data.tables["flights"];
            prepare_streamed(
                cfg,
                5,
                table_bytes(spec).unwrap(),
                200_000_000,
                Destination::Export(&mut w),
                &dir.path().join("work"),
                &LoadedTables::none(),
                &whet_core::progress::NoProgress,
            )
        };
        let streamed = export(&cfg, "out").unwrap();
        assert_eq!(streamed.report.rows, whole.report.rows);
        assert_eq!(streamed.train.len(), 0, "an export holds no rows");
        let mut v = serde_json::to_value(&cfg).unwrap();
        v["data"]["target"]["threshold"] = serde_json::json!(1e9);
        let one_class: TabularConfig = serde_json::from_value(v).unwrap();
        let err = export(&one_class, "one").unwrap_err().to_string();
        assert!(err.contains("single class"), "{err}");
    }

    /// A consumer that panics at the first batch ends the reading (the reading thread, blocked
    /// on a full channel, sees the receiver gone) and the panic comes back: no hang.
    #[test]
    fn a_panicking_consumer_stops_the_reading() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, cfg) = flights_run(dir.path(), "");
        let spec = cfg.data.tables["flights"].clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Plans of one batch each: the channel holds two, the reader blocks on the third.
            let chunks = Chunks::even(336_776, BATCH_ROWS as u64);
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for_each_batch(&spec, &[], &chunks, |_| panic!("consumer"))
            }));
            done.send(ran.is_err()).unwrap();
        });
        let panicked = finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("for_each_batch returned after the consumer panicked");
        assert!(panicked);
    }

    /// Chunks follow the row groups: whole groups as long as an eighth of the budget holds
    /// them, a larger group cut in equal slices, the `limit` cutting the last; every row in one
    /// chunk, in order.
    #[test]
    fn chunks_follow_the_row_groups() {
        const M: u64 = 1_000_000;
        // 10 groups of a million rows, 100 bytes a row (100 MB a group).
        let groups = [M; 10];
        let (rows, bytes) = (10 * M, 1_000 * M);
        let whole = |c: &Chunks| c.ranges().collect::<Vec<_>>();
        // An eighth of 2 GB is 2.5 groups: two groups a chunk.
        let c = Chunks::new(&groups, rows, bytes, 2_000 * M);
        assert_eq!(
            whole(&c),
            (0..5).map(|i| (2 * i * M, 2 * M)).collect::<Vec<_>>()
        );
        // An eighth of 800 MB is one group.
        let c = Chunks::new(&groups, rows, bytes, 800 * M);
        assert_eq!(whole(&c), (0..10).map(|i| (i * M, M)).collect::<Vec<_>>());
        // An eighth of 300 MB is 375,000 rows: each group in three slices.
        let c = Chunks::new(&groups, rows, bytes, 300 * M);
        assert_eq!(c.ranges.len(), 30);
        assert_eq!(
            &whole(&c)[..3],
            [(0, 333_334), (333_334, 333_334), (666_668, 333_332)]
        );
        assert_eq!(c.largest(), 333_334);
        // A limit of 2.5 million rows: the third group cut short.
        let c = Chunks::new(&groups, 2_500_000, bytes / 4, 800 * M);
        assert_eq!(whole(&c), [(0, M), (M, M), (2 * M, 500_000)]);
        // A tiny budget: slices of one batch at least.
        let c = Chunks::new(&groups, rows, bytes, 1);
        assert_eq!(c.ranges.len(), 160);
        assert_eq!(c.largest(), 62_500);
        // Uneven groups: every row once, in order, and `holding` finds each chunk.
        let groups = [300_000, 5, 2_000_000, 70_000, 70_000, 70_000, 1];
        let rows = groups.iter().sum::<u64>();
        for budget in [1, 100 * M, 800 * M, 10_000 * M] {
            let c = Chunks::new(&groups, rows, rows * 100, budget);
            let mut next = 0;
            for (s, n) in c.ranges() {
                assert_eq!(s, next, "{budget}: {:?}", c.ranges);
                assert!(n > 0);
                assert_eq!(c.holding(s), Some((s, n)));
                assert_eq!(c.holding(s + n - 1), Some((s, n)));
                next = s + n;
            }
            assert_eq!(next, rows);
            assert_eq!(c.holding(rows), None);
        }
    }

    /// `join` gives in memory, and the same report summed (rows, columns, values to the bit), on
    /// the shipped flights and weather (two keys: polars' join) and planes (one text key).
    #[test]
    fn the_batched_join_is_the_in_memory_join() {
        let flights = shipped("flights.csv.gz");
        for (table, json) in [
            (
                "weather",
                r#"{ "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" }"#,
            ),
            (
                "planes",
                r#"{ "with": "planes", "on": ["tailnum"], "how": "inner", "suffix": "_plane" }"#,
            ),
        ] {
            let right = shipped(&format!("{table}.csv.gz"));
            let cfg: JoinConfig = serde_json::from_str(json).unwrap();
            let (memory, whole) = crate::join::join(&flights, &right, &cfg).unwrap();
            let side = crate::join::RightSide::new(&flights.clear(), &right, &cfg).unwrap();
            let mut parts: Option<(DataFrame, crate::join::JoinReport)> = None;
            for start in (0..flights.height()).step_by(BATCH_ROWS) {
                let (df, rep) = side.join(&flights.slice(start as i64, BATCH_ROWS)).unwrap();
                match &mut parts {
                    Some((all, r)) => {
                        all.vstack_mut_owned(df).unwrap();
                        r.add(&rep);
                    }
                    None => parts = Some((df, rep)),
                }
            }
            let (batched, summed) = parts.unwrap();
            same_frame(&memory, &batched);
            assert_eq!(whole, summed, "{table}");
        }
    }

    /// `impute` per group and with a numeric mode fits batch by batch (value counts and
    /// per-group sums, not every training row's columns): under a budget where the training
    /// rows of one of its columns do not fit, the streamed preparation is the in-memory one to
    /// the bit.
    #[test]
    fn impute_by_group_and_modes_stream_in_little_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, cfg) = flights_run(
            dir.path(),
            r#"
                 { "join": { "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" } },
                 { "exclude": ["time_hour", "tailnum", "dest", "arr_time", "dep_time"] },
                 { "impute": { "numeric": "mean", "by": "carrier", "categorical": "mode", "indicator": true } },
                 { "impute": { "numeric": "mode", "by": "origin", "columns": ["wind_gust", "pressure"] } },
                 { "impute": { "numeric": "mode" } }"#,
        );
        let budget = 4_000_000;
        let (whole, streamed) = both_ways(&cfg, budget, &dir.path().join("rows"));
        // One training column alone (8 bytes a row) is more than an eighth of the budget.
        assert!(8 * whole.train.len() as u64 > budget / 8);
        assert_eq!(whole.manifest.fitted, streamed.manifest.fitted);
        // With room for the rows in memory, the same arrays.
        let (whole, streamed) = both_ways(&cfg, 200_000_000, &dir.path().join("rows2"));
        assert_eq!(whole.manifest.fitted, streamed.manifest.fitted);
        assert_eq!(whole.train, streamed.train);
        assert_eq!(whole.validation, streamed.validation);
        assert_eq!(whole.test, streamed.test);
        let fills = |i: usize| match &whole.manifest.fitted[i] {
            crate::stage::FittedStep::Impute(f) => f.fills.clone(),
            other => panic!("{other:?}"),
        };
        // Means for every carrier of each numeric column; the origins' modes.
        assert!(fills(0).iter().any(|f| f.groups.len() == 16));
        assert!(fills(1).iter().all(|f| f.groups.len() == 3));
        // Exact medians per group hold the groups' values: past the room, refused by name.
        let mut v = serde_json::to_value(&cfg).unwrap();
        v["steps"][3] = serde_json::json!({ "impute": { "numeric": "median", "by": "origin" } });
        let medians: TabularConfig = serde_json::from_value(v).unwrap();
        let medians_dir = dir.path().join("medians");
        let e = stream_train(&medians, 5, budget, &medians_dir, &LoadedTables::none())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("step 3 `impute`: impute.by: "), "{e}");
        assert!(e.contains("per group of `origin`"), "{e}");
    }

    /// Streamed preparations of one process read the tables they join once, through the
    /// [`LoadedTables`] they share, and prepare what a preparation that reads every table
    /// prepares.
    #[test]
    fn streamed_preparations_read_the_joined_tables_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, cfg) = flights_run(
            dir.path(),
            r#"
                 { "join": { "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" } },
                 { "join": { "with": "planes", "on": ["tailnum"], "how": "left", "suffix": "_plane", "cardinality": "many_to_one" } },
                 { "impute": { "numeric": "mean", "categorical": "mode" } }"#,
        );
        let prepare = |loaded: &LoadedTables, seed: u64, work: &str| {
            stream_train(&cfg, seed, 200_000_000, &dir.path().join(work), loaded).unwrap()
        };
        let loaded = LoadedTables::new();
        let first = prepare(&loaded, 5, "a");
        let second = prepare(&loaded, 6, "b");
        // Weather and planes, read by the first preparation only.
        assert_eq!(loaded.reads(), 2);
        assert_eq!(loaded.len(), 2);
        let fresh = prepare(&LoadedTables::none(), 6, "c");
        assert_eq!(second.manifest.fitted, fresh.manifest.fitted);
        assert_eq!(second.train, fresh.train);
        assert_eq!(second.validation, fresh.validation);
        assert_eq!(second.test, fresh.test);
        assert_eq!(second.report.loads, fresh.report.loads);
        assert_eq!(first.report.loads, fresh.report.loads);
        assert_ne!(first.train, second.train, "seeds 5 and 6 split apart");
    }

    /// The shipped flights joined with the weather and the planes, with the fitted steps that
    /// gather statistics batch by batch and one that collects its columns (`clip`'s
    /// quantiles): the streamed preparation gives the in-memory one's fitted steps and arrays
    /// to the bit, and its lazy plan the in-memory pre-split frame.
    #[test]
    fn the_streamed_preparation_is_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path, cfg) = flights_run(
            dir.path(),
            r#"
                 { "join": { "with": "weather", "on": ["origin", "time_hour"], "how": "left", "cardinality": "many_to_one" } },
                 { "join": { "with": "planes", "on": ["tailnum"], "how": "left", "suffix": "_plane", "cardinality": "many_to_one" } },
                 { "exclude": ["arr_time", "dep_time"] },
                 { "drop_columns": { "max_missing": 0.5 } },
                 { "impute": { "numeric": "mean", "categorical": "mode", "indicator": true } },
                 { "encode": { "one_hot": ["carrier", "origin"], "max_levels": 8 } },
                 { "clip": { "lower": 0.01, "upper": 0.99, "columns": ["distance", "temp"] } },
                 { "normalize": { "method": "zscore" } }"#,
        );
        let tables: BTreeMap<String, DataFrame> = ["weather", "planes"]
            .into_iter()
            .map(|n| (n.to_string(), shipped(&format!("{n}.csv.gz"))))
            .collect();
        let mut memory = crate::rows::with_source_rows(
            ParquetReader::new(std::fs::File::open(&path).unwrap())
                .finish()
                .unwrap(),
        )
        .unwrap();
        // The whole preparation both ways: the same fitted steps and arrays.
        // A budget that reads the table's one row group in four plans (of two batches), and
        // keeps the rows in memory.
        let (whole, streamed) = both_ways(&cfg, 200_000_000, &dir.path().join("rows"));
        let report = streamed.report.streamed.as_ref().unwrap();
        assert_eq!(report.chunk_rows, 84_194);
        assert_eq!(report.batches, 8);
        assert_eq!(whole.manifest.fitted, streamed.manifest.fitted);
        assert_eq!(whole.train, streamed.train);
        assert_eq!(whole.validation, streamed.validation);
        assert_eq!(whole.test, streamed.test);
        assert_eq!(whole.source_rows, streamed.source_rows);

        // The shipped CSV file as the main table: converted to Parquet in parts of 12.5 MB of
        // text (three parts), then the same passes, to the same steps and arrays as the CSV
        // file read in memory; the converted file is gone afterwards.
        let mut v = serde_json::to_value(&cfg).unwrap();
        let csv = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/nycflights13/flights.csv.gz");
        v["data"]["tables"]["flights"]["path"] = serde_json::json!(csv);
        let csv_cfg: TabularConfig = serde_json::from_value(v).unwrap();
        let (whole, streamed) = both_ways(&csv_cfg, 200_000_000, &dir.path().join("csv-run"));
        let report = streamed.report.streamed.as_ref().unwrap();
        assert_eq!(report.pass_seconds[0].0, "csv to parquet");
        assert_eq!(whole.manifest.fitted, streamed.manifest.fitted);
        assert_eq!(whole.manifest.input_schema, streamed.manifest.input_schema);
        assert_eq!(whole.train, streamed.train);
        assert_eq!(whole.validation, streamed.validation);
        assert_eq!(whole.test, streamed.test);
        assert_eq!(whole.source_rows, streamed.source_rows);
        assert_eq!(whole.report.loads[0], streamed.report.loads[0]);
        assert!(!dir.path().join("csv-run-csv").exists());
        let mut report = PrepareReport::default();
        for step in &cfg.steps[..3] {
            memory = pre_step(step, memory, &tables, None, &mut report, false).unwrap();
        }
        // The plan over the whole table, and plans over chunks of one and two batches (the
        // last one shorter), their batches through the pre-split steps: the in-memory frame's
        // rows, source rows and joined values.
        let mut pipe = Pipe::new(&cfg, 5, cfg.data.target.kind().unwrap(), &tables);
        let spec = &cfg.data.tables["flights"];
        let rows = memory.height() as u64;
        let lazy = &cfg.steps[..lazy_prefix(&cfg)];
        let whole = batches(spec, lazy, rows);
        same_frame(&memory, &pipe.pre(whole).unwrap());
        for chunk in [BATCH_ROWS as u64, 2 * BATCH_ROWS as u64] {
            let mut all: Option<DataFrame> = None;
            let n = for_each_batch(spec, lazy, &Chunks::even(rows, chunk), |df| {
                assert!(df.height() <= BATCH_ROWS);
                let df = pipe.pre(df)?;
                match &mut all {
                    Some(a) => a.vstack_mut_owned(df).map(|_| ())?,
                    None => all = Some(df),
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(n, rows.div_ceil(BATCH_ROWS as u64) as usize);
            same_frame(&memory, &all.unwrap());
        }
    }
}
