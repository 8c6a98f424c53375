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
    fit_whole, is_numeric, not_found, par_map_columns, put, select_columns,
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

fn mode_f64(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for v in values {
        // +0.0 and -0.0 count as one value.
        let v = if v == 0.0 { 0.0 } else { v };
        *counts.entry(v.to_bits()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(b, n)| (n, f64::from_bits(b)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, v)| v)
}

/// The most frequent value of `(value, count)` pairs, the smallest on ties.
fn mode_of<K: Ord>(counts: impl Iterator<Item = (K, usize)>) -> Option<K> {
    counts
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(v, _)| v)
}

fn mode_str<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    mode_of(counts.into_iter()).map(str::to_string)
}

/// The median of `ca` ([`crate::quantile`], as every median of whet).
fn median(ca: &Float64Chunked) -> Option<f64> {
    crate::quantile::quantiles(ca, &[0.5], fit_room())[0]
}

fn numeric_stat(ca: &Float64Chunked, how: NumericFill, constant: f64) -> Option<f64> {
    match how {
        NumericFill::Mean => crate::kernel::mean(ca),
        NumericFill::Median => median(ca),
        NumericFill::Mode => mode_f64(ca.iter().flatten()),
        NumericFill::Constant => Some(constant),
        NumericFill::None => None,
    }
}

fn numeric_stat_vec(v: Vec<f64>, how: NumericFill, constant: f64) -> Option<f64> {
    match how {
        NumericFill::Mean => (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64),
        NumericFill::Median => median(&Float64Chunked::from_vec(PlSmallStr::EMPTY, v)),
        NumericFill::Mode => mode_f64(v.into_iter()),
        NumericFill::Constant => Some(constant),
        NumericFill::None => None,
    }
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
        if let Some(f) = self.fitter(&train.clear(), fit_room())? {
            return fit_whole(f, train);
        }
        let name = self.name();
        let by = self.by.as_deref();
        let cols = select_columns(train, &self.columns, "impute", |t| {
            is_numeric(t) || t == &DataType::String
        })?;
        let keys = by.map(|b| group_keys(train, b)).transpose()?;
        // The overall statistic of every numeric column, columns in parallel.
        let numeric: Vec<&String> = if self.numeric == NumericFill::None {
            vec![]
        } else {
            cols.iter()
                .filter(|c| {
                    Some(c.as_str()) != by
                        && train
                            .column(c)
                            .is_ok_and(|col| col.dtype() != &DataType::String)
                })
                .collect()
        };
        let computed: Vec<Result<Option<f64>>> = par_map_columns(&numeric, |c| {
            let ca = f64_column(train, c, "impute")?;
            Ok(numeric_stat(&ca, self.numeric, self.value))
        });
        let mut stats: HashMap<&str, Option<f64>> = HashMap::with_capacity(computed.len());
        for (c, st) in numeric.iter().zip(computed) {
            stats.insert(c.as_str(), st?);
        }
        let mut fills = Vec::new();
        let mut indicators = Vec::new();
        for c in cols.iter().filter(|c| Some(c.as_str()) != by) {
            let col = train.column(c)?;
            let is_text = col.dtype() == &DataType::String;
            if self.indicator && col.null_count() > 0 {
                indicators.push(c.clone());
            }
            let (value, groups) = if is_text {
                if self.categorical == CategoricalFill::None {
                    continue;
                }
                let ca = col.str()?;
                let v = match self.categorical {
                    CategoricalFill::Mode => mode_str(ca.iter().flatten()),
                    _ => Some(self.text.clone()),
                };
                let Some(v) = v else {
                    return Err(Error::NothingToFit {
                        stage: name,
                        column: c.clone(),
                    });
                };
                let mut groups = BTreeMap::new();
                if let Some(k) = &keys {
                    let mut per: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                    for (g, x) in k.iter().zip(ca.iter()) {
                        if let (Some(g), Some(x)) = (g, x) {
                            per.entry(g).or_default().push(x);
                        }
                    }
                    for (g, xs) in per {
                        let m = match self.categorical {
                            CategoricalFill::Mode => mode_str(xs.into_iter()),
                            _ => Some(self.text.clone()),
                        };
                        if let Some(m) = m {
                            groups.insert(g.to_string(), FillValue::Text(m));
                        }
                    }
                }
                (FillValue::Text(v), groups)
            } else {
                if self.numeric == NumericFill::None {
                    continue;
                }
                let Some(v) = stats.get(c.as_str()).copied().flatten() else {
                    return Err(Error::NothingToFit {
                        stage: name,
                        column: c.clone(),
                    });
                };
                let mut groups = BTreeMap::new();
                if let Some(k) = &keys {
                    let ca = f64_column(train, c, "impute")?;
                    let mut per: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
                    for (g, x) in k.iter().zip(ca.iter()) {
                        if let (Some(g), Some(x)) = (g, x) {
                            per.entry(g).or_default().push(x);
                        }
                    }
                    for (g, xs) in per {
                        if let Some(m) = numeric_stat_vec(xs, self.numeric, self.value) {
                            groups.insert(g.to_string(), FillValue::Number(m));
                        }
                    }
                }
                (FillValue::Number(v), groups)
            };
            fills.push(ColumnFill {
                column: c.clone(),
                value,
                groups,
            });
        }
        Ok(Box::new(FittedImpute {
            fills,
            by: self.by.clone(),
            indicators,
        }))
    }

    fn fitter(&self, empty: &DataFrame, room: u64) -> Result<Option<Box<dyn Fitter>>> {
        // Numeric modes need the count of every value, groups a statistic per group.
        if self.by.is_some() || self.numeric == NumericFill::Mode {
            return Ok(None);
        }
        let cols = select_columns(empty, &self.columns, "impute", |t| {
            is_numeric(t) || t == &DataType::String
        })?;
        let texts = cols
            .iter()
            .map(|c| Ok(empty.column(c)?.dtype() == &DataType::String))
            .collect::<Result<Vec<bool>>>()?;
        // The medians share the room.
        let medians = texts.iter().filter(|t| !**t).count().max(1) as u64;
        let columns = cols
            .into_iter()
            .zip(texts)
            .map(|(c, text)| ImputeAcc {
                column: c,
                text,
                nulls: 0,
                mean: crate::kernel::MeanAcc::default(),
                median: (!text && self.numeric == NumericFill::Median)
                    .then(|| Quantiles::new(&[0.5], room / medians)),
                counts: HashMap::new(),
            })
            .collect();
        Ok(Some(Box::new(ImputeFitter {
            cfg: self.clone(),
            columns,
            passes: 0,
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
    /// Text `mode`: the count of every value.
    counts: HashMap<String, usize>,
}

/// Fits `impute` batch by batch when its statistics are a mean, a median, a constant or a
/// text mode (medians may take more passes, the other statistics are gathered in the first).
struct ImputeFitter {
    cfg: ImputeConfig,
    columns: Vec<ImputeAcc>,
    /// Passes ended.
    passes: usize,
}

impl Fitter for ImputeFitter {
    fn feed(&mut self, batch: &DataFrame) -> Result<()> {
        let cfg = &self.cfg;
        let first = self.passes == 0;
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
                acc.nulls += col.null_count();
                if acc.text && cfg.categorical == CategoricalFill::Mode {
                    for v in col.str()?.iter().flatten() {
                        match acc.counts.get_mut(v) {
                            Some(n) => *n += 1,
                            None => {
                                acc.counts.insert(v.to_string(), 1);
                            }
                        }
                    }
                } else if !acc.text && cfg.numeric == NumericFill::Mean {
                    acc.mean.feed(&f64_column(batch, &acc.column, "impute")?);
                } else if !acc.text && cfg.numeric == NumericFill::Constant {
                    // Checked as the whole-frame fit checks it.
                    f64_column(batch, &acc.column, "impute")?;
                }
                Ok(())
            })
            .collect();
        done.into_iter().collect()
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
            let value = if acc.text {
                match cfg.categorical {
                    CategoricalFill::None => continue,
                    CategoricalFill::Mode => mode_of(acc.counts.into_iter()).map(FillValue::Text),
                    CategoricalFill::Constant => Some(FillValue::Text(cfg.text.clone())),
                }
            } else {
                match cfg.numeric {
                    NumericFill::None => continue,
                    NumericFill::Mean => acc.mean.finish().map(FillValue::Number),
                    NumericFill::Median => acc
                        .median
                        .and_then(|m| m.finish()[0])
                        .map(FillValue::Number),
                    _ => Some(FillValue::Number(cfg.value)),
                }
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
                groups: BTreeMap::new(),
            });
        }
        Ok(Box::new(FittedImpute {
            fills,
            by: None,
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
