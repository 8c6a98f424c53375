//! Missing values: drop rows, drop sparse columns (fitted), fill with train statistics (fitted,
//! optionally per group, with missing-indicator columns), forward/backward fill along an order.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Probability;

use crate::error::{Error, Result};
use crate::quantile::Quantiles;
use crate::stage::{
    Columns, FittedStage, FittedStep, Fitter, Stage, as_f64, f64_column, fill_f64, fit_room,
    fit_whole, is_numeric, not_found, put, select_columns,
};

/// Which rows `drop_rows` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DropHow {
    /// A row with any missing value in the columns.
    #[default]
    Any,
    /// A row whose values in the columns are all missing.
    All,
}

/// `- drop_rows: { how: any, columns: [dep_time] }`: drops rows with missing values (stateless).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropRowsConfig {
    /// `any` (default) or `all`.
    #[serde(default)]
    pub how: DropHow,
    /// Columns to look at. Default: all.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl DropRowsConfig {
    /// The rows to keep.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] for an unknown column.
    pub fn keep_mask(&self, df: &DataFrame) -> Result<BooleanChunked> {
        let cols = select_columns(df, &self.columns, "drop_rows", |_| true)?;
        let mut mask: Option<BooleanChunked> = None;
        for c in &cols {
            let m = df.column(c)?.is_null();
            mask = Some(match (mask, self.how) {
                (None, _) => m,
                (Some(p), DropHow::Any) => &p | &m,
                (Some(p), DropHow::All) => &p & &m,
            });
        }
        Ok(match mask {
            Some(m) => !&m,
            None => BooleanChunked::full("keep".into(), true, df.height()),
        })
    }
}

impl Stage for DropRowsConfig {
    fn name(&self) -> String {
        format!("drop_rows({:?})", self.how).to_lowercase()
    }
    fn fit(&self, _train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        Ok(Box::new(self.clone()))
    }
}

impl FittedStage for DropRowsConfig {
    fn transform(&self, df: DataFrame) -> Result<DataFrame> {
        let keep = self.keep_mask(&df)?;
        Ok(df.filter(&keep)?)
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::DropRows(self.clone())
    }
}

/// `- drop_columns: { max_missing: 0.5 }`: drops columns whose missing rate **on train** is above
/// `max_missing`; the same columns are dropped everywhere else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropColumnsConfig {
    /// Largest missing rate kept.
    pub max_missing: Probability,
    /// Columns considered. Default: all.
    #[serde(default)]
    pub columns: Vec<String>,
}

/// Columns dropped by [`DropColumnsConfig`], with their missing rate on train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedDropColumns {
    /// `(column, missing rate on train)`.
    pub dropped: Vec<(String, f64)>,
}

impl Stage for DropColumnsConfig {
    fn name(&self) -> String {
        format!("drop_columns(max_missing: {})", self.max_missing)
    }
    fn fit(&self, train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        let f = self
            .fitter(&train.clear(), fit_room())?
            .expect("drop_columns always has a fitter");
        fit_whole(f, train)
    }

    fn fitter(&self, empty: &DataFrame, _room: u64) -> Result<Option<Box<dyn Fitter>>> {
        let cols = select_columns(empty, &self.columns, "drop_columns", |_| true)?;
        Ok(Some(Box::new(DropColumnsFitter {
            max_missing: self.max_missing.get(),
            rows: 0,
            nulls: cols.into_iter().map(|c| (c, 0)).collect(),
        })))
    }
}

/// Counts rows and missing values batch by batch.
struct DropColumnsFitter {
    max_missing: f64,
    rows: usize,
    nulls: Vec<(String, usize)>,
}

impl Fitter for DropColumnsFitter {
    fn feed(&mut self, batch: &DataFrame) -> Result<()> {
        self.rows += batch.height();
        for (c, n) in &mut self.nulls {
            *n += batch.column(c).map_or(0, |col| col.null_count());
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn FittedStage>> {
        let n = self.rows.max(1) as f64;
        let dropped = self
            .nulls
            .into_iter()
            .filter_map(|(c, nulls)| {
                let rate = nulls as f64 / n;
                (rate > self.max_missing).then_some((c, rate))
            })
            .collect();
        Ok(Box::new(FittedDropColumns { dropped }))
    }
}

impl FittedStage for FittedDropColumns {
    fn transform(&self, mut df: DataFrame) -> Result<DataFrame> {
        for (c, _) in &self.dropped {
            if df.column(c).is_ok() {
                df = df.drop(c)?;
            }
        }
        Ok(df)
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::DropColumns(self.clone())
    }
}

/// How numeric columns are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumericFill {
    /// Train mean.
    Mean,
    /// Train median (default).
    #[default]
    Median,
    /// Most frequent train value (smallest on ties, as scikit-learn).
    Mode,
    /// The constant `value`.
    Constant,
    /// Leave numeric columns alone.
    None,
}

/// How text columns are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CategoricalFill {
    /// Most frequent train value (default; smallest on ties).
    #[default]
    Mode,
    /// The constant `text`.
    Constant,
    /// Leave text columns alone.
    None,
}

fn default_text() -> String {
    "__missing__".into()
}

/// `- impute: { numeric: median, categorical: mode, indicator: true }`: fills missing values with
/// statistics of the training split (scikit-learn `SimpleImputer` semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImputeConfig {
    /// Strategy for numeric columns. Default `median`.
    #[serde(default)]
    pub numeric: NumericFill,
    /// Strategy for text columns. Default `mode`.
    #[serde(default)]
    pub categorical: CategoricalFill,
    /// Fill value for `numeric: constant`. Default 0.
    #[serde(default)]
    pub value: f64,
    /// Fill value for `categorical: constant`. Default `__missing__`.
    #[serde(default = "default_text")]
    pub text: String,
    /// Columns to fill. Default: every numeric and text column.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Fill per group of this column (the group's statistic; the overall one for groups unseen
    /// on train or empty). Default: no groups.
    #[serde(default)]
    pub by: Option<String>,
    /// Add a boolean `<column>__missing` for each column that had missing values on train.
    /// Default false.
    #[serde(default)]
    pub indicator: bool,
}

impl Default for ImputeConfig {
    fn default() -> Self {
        Self {
            numeric: NumericFill::Median,
            categorical: CategoricalFill::Mode,
            value: 0.0,
            text: default_text(),
            columns: vec![],
            by: None,
            indicator: false,
        }
    }
}

/// A fill value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillValue {
    /// For numeric columns.
    Number(f64),
    /// For text columns.
    Text(String),
}

/// What one column is filled with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnFill {
    /// The column.
    pub column: String,
    /// The overall fill value (train statistic).
    pub value: FillValue,
    /// Per-group values (keyed by the group value printed as text), when `by` is set.
    pub groups: BTreeMap<String, FillValue>,
}

/// Fitted [`ImputeConfig`]: per-column fill values learnt on train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedImpute {
    /// Fill values, in column order.
    pub fills: Vec<ColumnFill>,
    /// Group column, if any.
    pub by: Option<String>,
    /// Columns that get a `__missing` indicator.
    pub indicators: Vec<String>,
}

impl FittedImpute {
    /// The fill value of `column`, if it is filled.
    pub fn value(&self, column: &str) -> Option<&FillValue> {
        self.fills
            .iter()
            .find(|f| f.column == column)
            .map(|f| &f.value)
    }
}

/// The most frequent number of `counts` (value bits → count; -0.0 counted as 0.0), the smallest
/// on ties.
fn mode_of_bits(counts: HashMap<u64, usize>) -> Option<f64> {
    counts
        .into_iter()
        .map(|(b, n)| (n, f64::from_bits(b)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, v)| v)
}

/// Counts `v` into `counts` (-0.0 as 0.0); true when it is a new value.
fn count_number(counts: &mut HashMap<u64, usize>, v: f64) -> bool {
    let v = if v == 0.0 { 0.0 } else { v };
    let n = counts.entry(v.to_bits()).or_default();
    *n += 1;
    *n == 1
}

/// Counts `v` into `counts`; true when it is a new value.
fn count_text(counts: &mut HashMap<String, usize>, v: &str) -> bool {
    match counts.get_mut(v) {
        Some(n) => {
            *n += 1;
            false
        }
        None => {
            counts.insert(v.to_string(), 1);
            true
        }
    }
}

/// The most frequent value of `(value, count)` pairs, the smallest on ties.
fn mode_of<K: Ord>(counts: impl Iterator<Item = (K, usize)>) -> Option<K> {
    counts
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(v, _)| v)
}

/// The median of `ca` ([`crate::quantile`], as every median of whet).
fn median(ca: &Float64Chunked) -> Option<f64> {
    crate::quantile::quantiles(ca, &[0.5], fit_room())[0]
}

fn group_keys(df: &DataFrame, by: &str) -> Result<StringChunked> {
    let Ok(c) = df.column(by) else {
        return Err(not_found(df, by, "impute `by`"));
    };
    let s = c.as_materialized_series().cast(&DataType::String)?;
    Ok(s.str()?.clone())
}

impl Stage for ImputeConfig {
    fn name(&self) -> String {
        format!(
            "impute(numeric: {:?}, categorical: {:?})",
            self.numeric, self.categorical
        )
        .to_lowercase()
    }

    fn fit(&self, train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        match self.fitter(&train.clear(), fit_room())? {
            Some(f) => fit_whole(f, train),
            None => Err(Error::Config(
                "impute: no fitter for this configuration (a bug in whet: impute fits every \
                 configuration batch by batch)"
                    .into(),
            )),
        }
    }

    fn fitter(&self, empty: &DataFrame, room: u64) -> Result<Option<Box<dyn Fitter>>> {
        let by = self.by.as_deref();
        let cols = select_columns(empty, &self.columns, "impute", |t| {
            is_numeric(t) || t == &DataType::String
        })?;
        let cols: Vec<String> = cols
            .into_iter()
            .filter(|c| Some(c.as_str()) != by)
            .collect();
        let texts = cols
            .iter()
            .map(|c| Ok(empty.column(c)?.dtype() == &DataType::String))
            .collect::<Result<Vec<bool>>>()?;
        // The overall medians share the room; with groups, half of it holds the counts and the
        // groups' values.
        let medians = texts.iter().filter(|t| !**t).count().max(1) as u64;
        let (quantile_room, held_room) = match by {
            Some(_) => (room / 2 / medians, room / 2),
            None => (room / medians, room),
        };
        let columns = cols
            .into_iter()
            .zip(texts)
            .map(|(c, text)| ImputeAcc {
                column: c,
                text,
                nulls: 0,
                mean: crate::kernel::MeanAcc::default(),
                median: (!text && self.numeric == NumericFill::Median)
                    .then(|| Quantiles::new(&[0.5], quantile_room)),
                numbers: HashMap::new(),
                counts: HashMap::new(),
                groups: HashMap::new(),
                held: 0,
            })
            .collect();
        Ok(Some(Box::new(ImputeFitter {
            cfg: self.clone(),
            columns,
            passes: 0,
            room: held_room,
        })))
    }
}

/// What [`ImputeFitter`] gathers for one column.
struct ImputeAcc {
    column: String,
    text: bool,
    /// Missing values (for the indicator).
    nulls: usize,
    /// Numeric `mean`.
    mean: crate::kernel::MeanAcc,
    /// Numeric `median`.
    median: Option<Quantiles>,
    /// Numeric `mode`: the count of every value.
    numbers: HashMap<u64, usize>,
    /// Text `mode`: the count of every value.
    counts: HashMap<String, usize>,
    /// With `by`: per group (its key as text), what the group's statistic needs.
    groups: HashMap<String, GroupAcc>,
    /// Estimated bytes of the counts and groups.
    held: u64,
}

/// What [`ImputeFitter`] gathers for one group of one column: of its rows where both the group
/// and the value are present.
struct GroupAcc {
    /// Such rows.
    rows: usize,
    /// Numeric `mean`: the values' sum, in row order.
    sum: f64,
    /// Numeric `median`: the values.
    values: Vec<f64>,
    /// Numeric `mode`: the count of every value.
    numbers: HashMap<u64, usize>,
    /// Text `mode`: the count of every value.
    counts: HashMap<String, usize>,
}

impl GroupAcc {
    fn new() -> Self {
        GroupAcc {
            rows: 0,
            // The sum of no numbers as Rust's `Sum` starts it.
            sum: std::iter::empty::<f64>().sum(),
            values: Vec::new(),
            numbers: HashMap::new(),
            counts: HashMap::new(),
        }
    }
}

/// Estimated bytes of one counted number, one counted text (besides its bytes), one group
/// (besides its key's bytes) and one group value.
const COUNTED: u64 = 32;
const GROUP: u64 = 160;
const VALUE: u64 = 8;

impl ImputeAcc {
    /// The group `key` of this column, counted in [`ImputeAcc::held`] when new.
    fn group(&mut self, key: &str) -> &mut GroupAcc {
        if !self.groups.contains_key(key) {
            self.held += GROUP + key.len() as u64;
            self.groups.insert(key.to_string(), GroupAcc::new());
        }
        self.groups.get_mut(key).expect("inserted")
    }

    /// One batch's values of this column (`keys`: its groups, with `by`), in the first pass.
    fn gather(
        &mut self,
        cfg: &ImputeConfig,
        col: &Column,
        batch: &DataFrame,
        keys: Option<&StringChunked>,
    ) -> Result<()> {
        self.nulls += col.null_count();
        if self.text {
            if cfg.categorical == CategoricalFill::None {
                return Ok(());
            }
            let ca = col.str()?;
            let mode = cfg.categorical == CategoricalFill::Mode;
            if mode {
                for v in ca.iter().flatten() {
                    if count_text(&mut self.counts, v) {
                        self.held += COUNTED + v.len() as u64;
                    }
                }
            }
            if let Some(keys) = keys {
                for (g, v) in keys.iter().zip(ca.iter()) {
                    let (Some(g), Some(v)) = (g, v) else { continue };
                    let group = self.group(g);
                    group.rows += 1;
                    if mode && count_text(&mut group.counts, v) {
                        self.held += COUNTED + v.len() as u64;
                    }
                }
            }
            return Ok(());
        }
        // A median without groups is the quantile accumulator's alone.
        if cfg.numeric == NumericFill::None
            || (cfg.numeric == NumericFill::Median && keys.is_none())
        {
            return Ok(());
        }
        // Checked as a number column also for a constant.
        let ca = f64_column(batch, &self.column, "impute")?;
        match cfg.numeric {
            NumericFill::Mean => self.mean.feed(&ca),
            NumericFill::Mode => {
                for v in ca.iter().flatten() {
                    if count_number(&mut self.numbers, v) {
                        self.held += COUNTED;
                    }
                }
            }
            _ => {}
        }
        if let Some(keys) = keys {
            for (g, v) in keys.iter().zip(ca.iter()) {
                let (Some(g), Some(v)) = (g, v) else { continue };
                let how = cfg.numeric;
                let group = self.group(g);
                group.rows += 1;
                let grew = match how {
                    NumericFill::Mean => {
                        group.sum += v;
                        0
                    }
                    NumericFill::Median => {
                        group.values.push(v);
                        VALUE
                    }
                    NumericFill::Mode => u64::from(count_number(&mut group.numbers, v)) * COUNTED,
                    _ => 0,
                };
                self.held += grew;
            }
        }
        Ok(())
    }
}

/// Fits `impute` batch by batch: means, medians, modes and constants, overall and per group of
/// `by`. Medians may take more passes ([`crate::quantile`]); everything else is gathered in the
/// first: running means, value counts (modes), and per group the sum of its values (means),
/// their counts (modes) or the values themselves (medians), within the fitter's room.
struct ImputeFitter {
    cfg: ImputeConfig,
    columns: Vec<ImputeAcc>,
    /// Passes ended.
    passes: usize,
    /// Bytes the counts and groups of every column may hold.
    room: u64,
}

impl Fitter for ImputeFitter {
    fn feed(&mut self, batch: &DataFrame) -> Result<()> {
        let cfg = &self.cfg;
        let first = self.passes == 0;
        let keys = match (&cfg.by, first) {
            (Some(b), true) => Some(group_keys(batch, b)?),
            _ => None,
        };
        // Columns in parallel; the first error in column order is reported.
        let done: Vec<Result<()>> = self
            .columns
            .par_iter_mut()
            .map(|acc| {
                let Ok(col) = batch.column(&acc.column) else {
                    return Err(not_found(batch, &acc.column, "impute"));
                };
                if let Some(m) = &mut acc.median {
                    m.feed(&f64_column(batch, &acc.column, "impute")?);
                }
                if !first {
                    return Ok(());
                }
                acc.gather(cfg, col, batch, keys.as_ref())
            })
            .collect();
        done.into_iter().collect::<Result<()>>()?;
        let held = self
            .columns
            .iter()
            .fold(0u64, |a, c| a.saturating_add(c.held));
        if held > self.room {
            let show = whet_core::budget::show_bytes;
            let (key, what, share, instead) = match &cfg.by {
                Some(b) => (
                    "impute.by",
                    format!("its statistics per group of `{b}`"),
                    "half of an eighth",
                    "fill per group with `numeric: mean` (a sum per group), or without `by`",
                ),
                None => (
                    "impute.numeric",
                    "its value counts (a numeric `mode`)".to_string(),
                    "an eighth",
                    "fill with `mean` or `median`",
                ),
            };
            let budget = whet_core::budget::current();
            return Err(Error::CannotStream {
                key: key.into(),
                reason: format!(
                    "{what} need about {}, more than the {} they may hold ({share} of the \
                     memory budget of {}, {}): raise the budget with `--max-memory`, or \
                     {instead}",
                    show(held),
                    show(self.room),
                    show(budget.bytes()),
                    budget.source()
                ),
            });
        }
        Ok(())
    }

    fn again(&mut self) -> Result<bool> {
        self.passes += 1;
        Ok(crate::quantile::again_all(
            self.columns.iter_mut().filter_map(|a| a.median.as_mut()),
        ))
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn FittedStage>> {
        let cfg = self.cfg;
        let mut fills = Vec::new();
        let mut indicators = Vec::new();
        for acc in self.columns {
            if cfg.indicator && acc.nulls > 0 {
                indicators.push(acc.column.clone());
            }
            let (value, groups) = if acc.text {
                let value = match cfg.categorical {
                    CategoricalFill::None => continue,
                    CategoricalFill::Mode => mode_of(acc.counts.into_iter()).map(FillValue::Text),
                    CategoricalFill::Constant => Some(FillValue::Text(cfg.text.clone())),
                };
                let groups: BTreeMap<String, FillValue> = acc
                    .groups
                    .into_iter()
                    .filter_map(|(k, g)| {
                        let v = match cfg.categorical {
                            CategoricalFill::Mode => mode_of(g.counts.into_iter())?,
                            _ => cfg.text.clone(),
                        };
                        Some((k, FillValue::Text(v)))
                    })
                    .collect();
                (value, groups)
            } else {
                let value = match cfg.numeric {
                    NumericFill::None => continue,
                    NumericFill::Mean => acc.mean.finish(),
                    NumericFill::Median => acc.median.and_then(|m| m.finish()[0]),
                    NumericFill::Mode => mode_of_bits(acc.numbers),
                    NumericFill::Constant => Some(cfg.value),
                };
                let groups: BTreeMap<String, FillValue> = acc
                    .groups
                    .into_iter()
                    .filter_map(|(k, g)| {
                        let v = match cfg.numeric {
                            NumericFill::Mean => g.sum / g.rows as f64,
                            NumericFill::Median => {
                                median(&Float64Chunked::from_vec(PlSmallStr::EMPTY, g.values))?
                            }
                            NumericFill::Mode => mode_of_bits(g.numbers)?,
                            _ => cfg.value,
                        };
                        Some((k, FillValue::Number(v)))
                    })
                    .collect();
                (value.map(FillValue::Number), groups)
            };
            let Some(value) = value else {
                return Err(Error::NothingToFit {
                    stage: cfg.name(),
                    column: acc.column,
                });
            };
            fills.push(ColumnFill {
                column: acc.column,
                value,
                groups,
            });
        }
        Ok(Box::new(FittedImpute {
            fills,
            by: cfg.by.clone(),
            indicators,
        }))
    }
}

impl FittedStage for FittedImpute {
    fn transform(&self, df: DataFrame) -> Result<DataFrame> {
        let keys = match &self.by {
            Some(b) if self.fills.iter().any(|f| !f.groups.is_empty()) => Some(group_keys(&df, b)?),
            _ => None,
        };
        let mut flags = Vec::with_capacity(self.indicators.len());
        for c in &self.indicators {
            let Ok(col) = df.column(c) else {
                return Err(not_found(&df, c, "impute (indicator)"));
            };
            flags.push(
                col.is_null()
                    .with_name(format!("{c}__missing").into())
                    .into_series(),
            );
        }
        for f in &self.fills {
            if df.column(&f.column).is_err() {
                return Err(not_found(&df, &f.column, "impute"));
            }
        }
        // Edits by name on the columns taken apart: linear in the number of columns.
        let mut cols = Columns::new(df);
        if keys.is_none() {
            // Numbers without groups: take the columns out (each then owned once and filled in
            // place), fill them in parallel, put them back at their positions.
            let mut taken = Vec::new();
            for f in &self.fills {
                let FillValue::Number(v) = f.value else {
                    continue;
                };
                let Some(col) = cols.get(&f.column) else {
                    return Err(cols.not_found(&f.column, "impute"));
                };
                if col.null_count() == 0 {
                    continue;
                }
                let dtype = col.dtype().clone();
                let (index, ca) = cols.take_f64(&f.column, "impute")?;
                taken.push((index, dtype, ca, v));
            }
            let filled: Vec<_> = taken
                .into_par_iter()
                .map(|(index, dtype, ca, v)| (index, dtype, fill_f64(ca, v), v))
                .collect();
            for (index, dtype, out, v) in filled {
                // Integer columns keep their type when the fill value is whole.
                if dtype.is_integer() && v.fract() == 0.0 {
                    let back = out.into_series().cast(&dtype)?;
                    cols.set(index, back.into_column());
                } else {
                    cols.set(index, out.into_column());
                }
            }
        }
        for f in &self.fills {
            if keys.is_none() && matches!(f.value, FillValue::Number(_)) {
                continue;
            }
            let Some(col) = cols.get(&f.column) else {
                return Err(cols.not_found(&f.column, "impute"));
            };
            if col.null_count() == 0 {
                continue;
            }
            let s = col.as_materialized_series().clone();
            let filled = match (&f.value, &keys) {
                (FillValue::Number(_), None) => {
                    unreachable!("numbers without groups are filled above")
                }
                (FillValue::Text(v), None) => {
                    let ca = s.str()?;
                    let other = StringChunked::full(s.name().clone(), v, s.len());
                    ca.zip_with(&ca.is_not_null(), &other)?.into_series()
                }
                (FillValue::Number(v), Some(k)) => {
                    let ca = as_f64(&s, &f.column, "impute")?;
                    let out: Float64Chunked = ca
                        .iter()
                        .zip(k.iter())
                        .map(|(x, g)| {
                            x.or_else(|| match g.and_then(|g| f.groups.get(g)) {
                                Some(FillValue::Number(n)) => Some(*n),
                                _ => Some(*v),
                            })
                        })
                        .collect();
                    out.with_name(s.name().clone()).into_series()
                }
                (FillValue::Text(v), Some(k)) => {
                    let ca = s.str()?;
                    let out: StringChunked = ca
                        .iter()
                        .zip(k.iter())
                        .map(|(x, g)| {
                            Some(match x {
                                Some(x) => x.to_string(),
                                None => match g.and_then(|g| f.groups.get(g)) {
                                    Some(FillValue::Text(t)) => t.clone(),
                                    _ => v.clone(),
                                },
                            })
                        })
                        .collect();
                    out.with_name(s.name().clone()).into_series()
                }
            };
            cols.put(filled.with_name(s.name().clone()).into_column())?;
        }
        for f in flags {
            cols.put(f.into_column())?;
        }
        cols.finish()
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::Impute(self.clone())
    }
}

/// Direction of [`FillConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FillMethod {
    /// Carry the last earlier value forward.
    Forward,
    /// Carry the next later value backward.
    Backward,
}

/// `- fill: { method: forward, order: time_hour, columns: [temp] }`: fills missing values from
/// neighbouring rows along `order`, within the frame it is applied to (stateless: a split never
/// sees another split's rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FillConfig {
    /// `forward` or `backward`.
    pub method: FillMethod,
    /// Column that orders the rows (ties keep their row order).
    pub order: String,
    /// Columns to fill. Default: all columns other than `order`.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl Stage for FillConfig {
    fn name(&self) -> String {
        format!("fill({:?} by {})", self.method, self.order).to_lowercase()
    }
    fn fit(&self, _train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        Ok(Box::new(self.clone()))
    }
}

impl FittedStage for FillConfig {
    fn transform(&self, mut df: DataFrame) -> Result<DataFrame> {
        let Ok(order_col) = df.column(&self.order) else {
            return Err(not_found(&df, &self.order, "fill `order`"));
        };
        let perm = order_col.as_materialized_series().arg_sort(
            SortOptions::default()
                .with_maintain_order(true)
                .with_nulls_last(true),
        );
        // Inverse permutation puts the filled values back in row order.
        let mut inv = vec![0 as IdxSize; perm.len()];
        for (pos, i) in perm.no_null_iter().enumerate() {
            inv[i as usize] = pos as IdxSize;
        }
        let inv = IdxCa::from_vec("inv".into(), inv);
        let cols = select_columns(&df, &self.columns, "fill", |_| true)?;
        let strategy = match self.method {
            FillMethod::Forward => FillNullStrategy::Forward(None),
            FillMethod::Backward => FillNullStrategy::Backward(None),
        };
        for c in cols.iter().filter(|c| **c != self.order) {
            let s = df.column(c)?.as_materialized_series().clone();
            if s.null_count() == 0 {
                continue;
            }
            let sorted = s.take(&perm)?;
            let filled = sorted.fill_null(strategy)?.take(&inv)?;
            put(&mut df, filled)?;
        }
        Ok(df)
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::Fill(self.clone())
    }
}

impl ImputeConfig {
    /// Sets how numeric gaps are filled.
    pub fn with_numeric(mut self, fill: NumericFill) -> Self {
        self.numeric = fill;
        self
    }

    /// Sets how categorical gaps are filled.
    pub fn with_categorical(mut self, fill: CategoricalFill) -> Self {
        self.categorical = fill;
        self
    }

    /// Adds a `<column>_missing` 0/1 indicator for every column that had gaps in training.
    pub fn with_indicator(mut self, indicator: bool) -> Self {
        self.indicator = indicator;
        self
    }

    /// Restricts the step to these columns.
    pub fn with_columns(mut self, columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train() -> DataFrame {
        df!(
            "x" => [Some(1.0), Some(2.0), None, Some(3.0), Some(100.0)],
            "n" => [Some(1i64), Some(1), Some(2), None, Some(5)],
            "s" => [Some("a"), None, Some("b"), Some("b"), Some("a")],
            "g" => ["p", "p", "q", "q", "q"],
        )
        .unwrap()
    }

    fn test_frame() -> DataFrame {
        // Other statistics entirely: a fit on this frame would give other values.
        df!(
            "x" => [None, Some(1000.0), Some(1000.0)],
            "n" => [None, Some(9i64), Some(9)],
            "s" => [None, Some("z"), Some("z")],
            "g" => ["p", "q", "r"],
        )
        .unwrap()
    }

    #[test]
    fn impute_uses_train_statistics_on_test() {
        for (how, want_x) in [
            (NumericFill::Mean, 26.5),
            (NumericFill::Median, 2.5),
            (NumericFill::Mode, 1.0),
            (NumericFill::Constant, -7.0),
        ] {
            let cfg = ImputeConfig {
                numeric: how,
                value: -7.0,
                indicator: true,
                ..Default::default()
            };
            let fitted = cfg.fit(&train()).unwrap();
            let out = fitted.transform(test_frame()).unwrap();
            let x = out.column("x").unwrap().f64().unwrap().get(0).unwrap();
            assert_eq!(x, want_x, "{how:?}");
            // Train mode of `s`: a and b tie (2 each), the smallest wins as in scikit-learn.
            assert_eq!(out.column("s").unwrap().str().unwrap().get(0), Some("a"));
            assert!(
                out.column("x__missing")
                    .unwrap()
                    .bool()
                    .unwrap()
                    .get(0)
                    .unwrap()
            );
        }
    }

    #[test]
    fn impute_per_group_falls_back_to_overall() {
        let cfg = ImputeConfig {
            numeric: NumericFill::Mean,
            by: Some("g".into()),
            ..Default::default()
        };
        let fitted = cfg.fit(&train()).unwrap();
        let t = df!("x" => [None::<f64>, None, None], "n" => [1i64, 1, 1], "s" => ["a", "a", "a"], "g" => ["p", "q", "r"]).unwrap();
        let out = fitted.transform(t).unwrap();
        let x: Vec<f64> = out
            .column("x")
            .unwrap()
            .f64()
            .unwrap()
            .no_null_iter()
            .collect();
        assert_eq!(x, [1.5, 51.5, 26.5]);
    }

    /// Per-group statistics and numeric modes are gathered batch by batch: the same fitted
    /// values fed in two batches as in one, each group's statistic of its own present values
    /// (modes the smallest on ties), the group column itself never filled.
    #[test]
    fn impute_per_group_and_modes_fit_batch_by_batch() {
        let df = train();
        for (how, x_groups, n_groups) in [
            (NumericFill::Mean, [1.5, 51.5], [1.0, 3.5]),
            (NumericFill::Median, [1.5, 51.5], [1.0, 3.5]),
            (NumericFill::Mode, [1.0, 3.0], [1.0, 2.0]),
            (NumericFill::Constant, [-7.0, -7.0], [-7.0, -7.0]),
        ] {
            for by in [None, Some("g")] {
                let cfg = ImputeConfig {
                    numeric: how,
                    value: -7.0,
                    by: by.map(String::from),
                    indicator: true,
                    ..Default::default()
                };
                let whole = cfg.fit(&df).unwrap().to_step();
                let mut f = cfg.fitter(&df.clear(), 1 << 20).unwrap().unwrap();
                loop {
                    f.feed(&df.slice(0, 2)).unwrap();
                    f.feed(&df.slice(2, 3)).unwrap();
                    if !f.again().unwrap() {
                        break;
                    }
                }
                let batched = f.finish().unwrap().to_step();
                assert_eq!(whole, batched, "{how:?} by {by:?}");
                let FittedStep::Impute(fitted) = whole else {
                    panic!("an impute")
                };
                assert_eq!(fitted.indicators, ["x", "n", "s"]);
                let groups = |c: &str| -> Vec<FillValue> {
                    let f = fitted.fills.iter().find(|f| f.column == c).unwrap();
                    f.groups.values().cloned().collect()
                };
                match by {
                    None => assert!(groups("x").is_empty()),
                    Some(_) => {
                        assert!(fitted.fills.iter().all(|f| f.column != "g"));
                        assert_eq!(groups("x"), x_groups.map(FillValue::Number));
                        assert_eq!(groups("n"), n_groups.map(FillValue::Number));
                        // q: b twice, a once; p: a only.
                        assert_eq!(
                            groups("s"),
                            [FillValue::Text("a".into()), FillValue::Text("b".into())]
                        );
                    }
                }
            }
        }
        // -0.0 and 0.0 are one value for a mode.
        let z = df!("x" => [-0.0, 0.0, 5.0, 5.0, 0.0]).unwrap();
        let cfg = ImputeConfig {
            numeric: NumericFill::Mode,
            ..Default::default()
        };
        let fitted = cfg.fit(&z).unwrap().to_step();
        let FittedStep::Impute(fitted) = fitted else {
            panic!("an impute")
        };
        assert_eq!(fitted.fills[0].value, FillValue::Number(0.0));
    }

    /// Value counts and groups past the fitter's room are refused, naming what holds them and the
    /// key that changes it.
    #[test]
    fn impute_groups_past_the_room_are_refused() {
        let df = train();
        let cfg = ImputeConfig {
            numeric: NumericFill::Median,
            by: Some("g".into()),
            ..Default::default()
        };
        let mut f = cfg.fitter(&df.clear(), 400).unwrap().unwrap();
        let e = f.feed(&df).unwrap_err().to_string();
        assert!(e.contains("per group of `g`"), "{e}");
        assert!(e.starts_with("impute.by"), "{e}");
        let cfg = ImputeConfig {
            numeric: NumericFill::Mode,
            ..Default::default()
        };
        let mut f = cfg.fitter(&df.clear(), 64).unwrap().unwrap();
        let e = f.feed(&df).unwrap_err().to_string();
        assert!(e.contains("numeric `mode`"), "{e}");
    }

    #[test]
    fn drop_columns_decided_on_train() {
        let cfg = DropColumnsConfig {
            max_missing: Probability::new(0.1).unwrap(),
            columns: vec![],
        };
        let fitted = cfg.fit(&train()).unwrap();
        // Test has no missing in `g` and many in `x`: the train decision (x, n, s) still holds.
        let out = fitted.transform(test_frame()).unwrap();
        assert_eq!(crate::stage::names(&out), ["g"]);
    }

    #[test]
    fn drop_rows_any_all_subset() {
        let df = train();
        let any = DropRowsConfig {
            how: DropHow::Any,
            columns: vec![],
        }
        .fit(&df)
        .unwrap();
        assert_eq!(any.transform(df.clone()).unwrap().height(), 2);
        let sub = DropRowsConfig {
            how: DropHow::Any,
            columns: vec!["x".into()],
        }
        .fit(&df)
        .unwrap();
        assert_eq!(sub.transform(df.clone()).unwrap().height(), 4);
        let all = DropRowsConfig {
            how: DropHow::All,
            columns: vec!["x".into(), "n".into()],
        }
        .fit(&df)
        .unwrap();
        assert_eq!(all.transform(df).unwrap().height(), 5);
    }

    #[test]
    fn forward_and_backward_fill_follow_order() {
        let df = df!("t" => [3i64, 1, 2, 4], "v" => [None, Some(1.0), None, None]).unwrap();
        let f = FillConfig {
            method: FillMethod::Forward,
            order: "t".into(),
            columns: vec![],
        };
        let out = f.fit(&df).unwrap().transform(df.clone()).unwrap();
        let v: Vec<Option<f64>> = out.column("v").unwrap().f64().unwrap().iter().collect();
        assert_eq!(v, [Some(1.0), Some(1.0), Some(1.0), Some(1.0)]);
        let b = FillConfig {
            method: FillMethod::Backward,
            order: "t".into(),
            columns: vec![],
        };
        let out = b.fit(&df).unwrap().transform(df).unwrap();
        let v: Vec<Option<f64>> = out.column("v").unwrap().f64().unwrap().iter().collect();
        assert_eq!(v, [None, Some(1.0), None, None]);
    }
}
