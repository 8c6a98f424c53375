//! The two traits every post-split step implements, and the serialisable form of fitted steps.
//!
//! A [`Stage`] is a configured step; [`Stage::fit`] sees only the training split and returns a
//! [`FittedStage`], whose [`FittedStage::transform`] is the only way to change a frame. So a stage
//! cannot learn from validation, test or new data by construction (linfa's Fit → Transformer
//! split, made object-safe).

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::encode::FittedEncode;
use crate::error::{Error, Result};
use crate::missing::{DropRowsConfig, FillConfig, FittedDropColumns, FittedImpute};
use crate::scale::{FittedClip, FittedNormalize};

/// A preprocessing step before fitting. `fit` only ever sees the training split.
pub trait Stage: Send + Sync + std::fmt::Debug {
    /// A short description used in logs and errors, e.g. `impute(numeric: median)`.
    fn name(&self) -> String;
    /// Learns the step's parameters from `train`.
    ///
    /// # Errors
    /// When a named column is missing or has an unusable type, or nothing can be fitted.
    fn fit(&self, train: &DataFrame) -> Result<Box<dyn FittedStage>>;
    /// A [`Fitter`] for training rows that arrive in batches with the columns of `empty`, when
    /// the step's statistics can be gathered batch by batch in bounded memory; `None` otherwise
    /// (a streamed table then collects the columns the step reads and calls [`Stage::fit`]).
    /// `room`: the bytes of values the fitter may hold at once (quantiles keep the values near
    /// the ones they look for; past the room they take more passes, see [`Fitter::again`]).
    /// A step with a fitter fits through it in memory too, so both ways give the same bits.
    ///
    /// # Errors
    /// As [`Stage::fit`], for the columns it names.
    fn fitter(&self, _empty: &DataFrame, _room: u64) -> Result<Option<Box<dyn Fitter>>> {
        Ok(None)
    }
}

/// Fits a step on training rows that arrive in batches ([`Stage::fitter`]).
pub trait Fitter: Send {
    /// Takes in one batch of training rows.
    ///
    /// # Errors
    /// When a column the step needs is missing or has an unusable type.
    fn feed(&mut self, batch: &DataFrame) -> Result<()>;
    /// Ends a pass over the training rows: `true` when the fitter needs every batch again, in
    /// the same order (exact quantiles of data larger than the room take a few passes).
    ///
    /// # Errors
    /// As [`Stage::fit`].
    fn again(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// The fitted step, once every batch was fed (and [`Fitter::again`] returned `false`).
    ///
    /// # Errors
    /// As [`Stage::fit`] (nothing to fit in a column, …).
    fn finish(self: Box<Self>) -> Result<Box<dyn FittedStage>>;
}

/// [`Stage::fit`] through `fitter`: the whole training frame as one batch, as many passes as
/// it asks for.
pub(crate) fn fit_whole(
    fitter: Box<dyn Fitter>,
    train: &DataFrame,
) -> Result<Box<dyn FittedStage>> {
    let mut f = fitter;
    loop {
        f.feed(train)?;
        if !f.again()? {
            return f.finish();
        }
    }
}

/// The room a fitter gets ([`Stage::fitter`]) under a memory budget of `budget` bytes: an
/// eighth of it.
pub(crate) fn room_of(budget: u64) -> u64 {
    budget / 8
}

/// The room a fitter gets in memory: [`room_of`] the current budget.
pub(crate) fn fit_room() -> u64 {
    room_of(whet_core::budget::current().bytes())
}

/// Applies what [`Stage::fit`] learned. Never learns from its input.
pub trait FittedStage: Send + Sync + std::fmt::Debug {
    /// Transforms a frame with the fitted parameters.
    ///
    /// # Errors
    /// When a column the step needs is missing or has another type than at fit time.
    fn transform(&self, df: DataFrame) -> Result<DataFrame>;
    /// The fitted parameters in their serialisable form (for the manifest).
    fn to_step(&self) -> FittedStep;
}

/// A fitted step as stored in the manifest; [`FittedStep::into_stage`] rebuilds it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FittedStep {
    /// Drop listed columns.
    Exclude(Vec<String>),
    /// Drop rows with missing values (stateless).
    DropRows(DropRowsConfig),
    /// Drop the columns found too sparse on train.
    DropColumns(FittedDropColumns),
    /// Fill missing values with train statistics.
    Impute(FittedImpute),
    /// Forward/backward fill (stateless).
    Fill(FillConfig),
    /// Scale with train statistics.
    Normalize(FittedNormalize),
    /// Clip at train quantiles.
    Clip(FittedClip),
    /// Encode with train levels.
    Encode(FittedEncode),
}

impl FittedStep {
    /// The runnable fitted stage.
    pub fn into_stage(self) -> Box<dyn FittedStage> {
        match self {
            FittedStep::Exclude(c) => Box::new(Exclude(c)),
            FittedStep::DropRows(c) => Box::new(c),
            FittedStep::DropColumns(c) => Box::new(c),
            FittedStep::Impute(c) => Box::new(c),
            FittedStep::Fill(c) => Box::new(c),
            FittedStep::Normalize(c) => Box::new(c),
            FittedStep::Clip(c) => Box::new(c),
            FittedStep::Encode(c) => Box::new(c),
        }
    }
}

/// Drops columns (stateless; absent columns are ignored so new data may lack them).
#[derive(Debug, Clone, PartialEq)]
pub struct Exclude(pub Vec<String>);

impl Stage for Exclude {
    fn name(&self) -> String {
        format!("exclude({})", self.0.join(", "))
    }
    fn fit(&self, _train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        Ok(Box::new(self.clone()))
    }
}

impl FittedStage for Exclude {
    fn transform(&self, mut df: DataFrame) -> Result<DataFrame> {
        for c in &self.0 {
            if df.column(c).is_ok() {
                df = df.drop(c)?;
            }
        }
        Ok(df)
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::Exclude(self.0.clone())
    }
}

/// True for integer and float columns (not booleans, strings or dates).
pub fn is_numeric(dtype: &DataType) -> bool {
    dtype.is_primitive_numeric()
}

/// Column names, as owned strings.
pub fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// `Error::ColumnNotFound` for `column` in `df`.
pub fn not_found(df: &DataFrame, column: &str, context: &str) -> Error {
    Error::ColumnNotFound {
        column: column.into(),
        context: context.into(),
        available: names(df),
    }
}

/// The columns a step works on: `listed` (checked to exist) or, when empty, every column for
/// which `keep` holds.
///
/// # Errors
/// [`Error::ColumnNotFound`] for a listed column that is not in `df`.
pub fn select_columns(
    df: &DataFrame,
    listed: &[String],
    context: &str,
    keep: impl Fn(&DataType) -> bool,
) -> Result<Vec<String>> {
    if listed.is_empty() {
        return Ok(df
            .columns()
            .iter()
            .filter(|c| keep(c.dtype()))
            .map(|c| c.name().to_string())
            .collect());
    }
    for c in listed {
        if df.column(c).is_err() {
            return Err(not_found(df, c, context));
        }
    }
    Ok(listed.to_vec())
}

/// The column as `f64` values (nulls kept).
///
/// # Errors
/// When the column is missing or cannot be cast to a number.
pub fn f64_column(df: &DataFrame, column: &str, context: &str) -> Result<Float64Chunked> {
    let Ok(c) = df.column(column) else {
        return Err(not_found(df, column, context));
    };
    as_f64(c.as_materialized_series(), column, context)
}

/// A numeric (or boolean) series as `f64` values (nulls kept).
///
/// # Errors
/// When it cannot be cast to a number.
pub fn as_f64(c: &Series, column: &str, context: &str) -> Result<Float64Chunked> {
    if !is_numeric(c.dtype()) && c.dtype() != &DataType::Boolean {
        return Err(Error::ColumnType {
            column: column.into(),
            context: context.into(),
            found: c.dtype().to_string(),
            expected: "a number".into(),
        });
    }
    let s = c.cast(&DataType::Float64)?;
    Ok(s.f64()?.clone())
}

/// Replaces (or adds) a column by name.
///
/// # Errors
/// When the length differs from the frame's height.
pub fn put(df: &mut DataFrame, s: Series) -> Result<()> {
    df.with_column(s.into_column())?;
    Ok(())
}

/// A frame taken apart for edits of many columns by name. polars' `DataFrame` drops its name
/// index after every edit and, past a few dozen columns, rebuilds it at the next lookup, so a
/// stage editing its columns one at a time cost columns² (normalising 20,000 columns took
/// minutes). Here the names are indexed once and an edit is a write into a vector: a stage over
/// n columns costs n. Columns keep their positions; new ones go at the end.
#[derive(Debug)]
pub(crate) struct Columns {
    height: usize,
    columns: Vec<Option<Column>>,
    index: std::collections::HashMap<PlSmallStr, usize>,
}

impl Columns {
    /// Takes `df` apart.
    pub(crate) fn new(df: DataFrame) -> Columns {
        let height = df.height();
        let columns: Vec<Option<Column>> = df.into_columns().into_iter().map(Some).collect();
        let index = columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.name().clone(), i)))
            .collect();
        Columns {
            height,
            columns,
            index,
        }
    }

    /// The column named `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&Column> {
        self.index.get(name).and_then(|&i| self.columns[i].as_ref())
    }

    /// [`Error::ColumnNotFound`] for `name`, listing the columns present.
    pub(crate) fn not_found(&self, name: &str, context: &str) -> Error {
        Error::ColumnNotFound {
            column: name.into(),
            context: context.into(),
            available: self
                .columns
                .iter()
                .flatten()
                .map(|c| c.name().to_string())
                .collect(),
        }
    }

    /// Takes the numeric (or boolean) column `name` out as `f64` values with its position; put
    /// it back with [`Columns::set`]. Once taken out, the column's buffers are usually owned by
    /// this value alone, so an in-place kernel writes no new memory (fresh pages cost about 5 µs
    /// per 4 KiB here, more than the arithmetic).
    ///
    /// # Errors
    /// When the column is missing or not a number.
    pub(crate) fn take_f64(
        &mut self,
        name: &str,
        context: &str,
    ) -> Result<(usize, Float64Chunked)> {
        let Some(i) = self
            .index
            .get(name)
            .copied()
            .filter(|&i| self.columns[i].is_some())
        else {
            return Err(self.not_found(name, context));
        };
        let dtype = self.columns[i]
            .as_ref()
            .map(|c| c.dtype().clone())
            .unwrap_or(DataType::Null);
        if !is_numeric(&dtype) && dtype != DataType::Boolean {
            return Err(Error::ColumnType {
                column: name.into(),
                context: context.into(),
                found: dtype.to_string(),
                expected: "a number".into(),
            });
        }
        let s = self.columns[i]
            .take()
            .map(Column::take_materialized_series)
            .expect("checked above");
        let s = if dtype == DataType::Float64 {
            s
        } else {
            s.cast(&DataType::Float64)?
        };
        let ca = s.f64()?.clone();
        drop(s);
        Ok((i, ca))
    }

    /// Puts `column` at position `i` (where [`Columns::take_f64`] found its column).
    pub(crate) fn set(&mut self, i: usize, column: Column) {
        self.index.insert(column.name().clone(), i);
        self.columns[i] = Some(column);
    }

    /// Replaces the column of the same name, or adds it at the end.
    ///
    /// # Errors
    /// When its length differs from the frame's height.
    pub(crate) fn put(&mut self, column: Column) -> Result<()> {
        if column.len() != self.height {
            return Err(Error::Polars(polars::error::PolarsError::ShapeMismatch(
                format!(
                    "column `{}` has {} rows, the table {}",
                    column.name(),
                    column.len(),
                    self.height
                )
                .into(),
            )));
        }
        match self.index.get(column.name()).copied() {
            Some(i) => self.columns[i] = Some(column),
            None => {
                self.index.insert(column.name().clone(), self.columns.len());
                self.columns.push(Some(column));
            }
        }
        Ok(())
    }

    /// Removes the column `name` (absent: nothing happens).
    pub(crate) fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.columns[i] = None;
        }
    }

    /// The frame back together.
    ///
    /// # Errors
    /// Not expected: the columns are those of a frame, edited with their height checked.
    pub(crate) fn finish(self) -> Result<DataFrame> {
        Ok(DataFrame::new(
            self.height,
            self.columns.into_iter().flatten().collect(),
        )?)
    }
}

/// Replaces missing values by `v`, in place when the buffers are not shared.
pub fn fill_f64(ca: Float64Chunked, v: f64) -> Float64Chunked {
    crate::kernel::fill_f64(ca, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_edits_keep_positions_and_add_at_the_end() {
        let df = df!("a" => [1i64, 2], "b" => ["x", "y"], "c" => [0.5, 1.5]).unwrap();
        let mut cols = Columns::new(df);
        let (i, mut a) = cols.take_f64("a", "t").unwrap();
        a.apply_mut(|v| v * 10.0);
        cols.set(i, a.into_column());
        assert!(matches!(
            cols.take_f64("b", "t"),
            Err(Error::ColumnType { .. })
        ));
        cols.put(Column::new("d".into(), [true, false])).unwrap();
        cols.put(Column::new("c".into(), [7.0, 8.0])).unwrap();
        cols.remove("b");
        assert!(cols.put(Column::new("e".into(), [1.0])).is_err());
        match cols.take_f64("zz", "t") {
            Err(Error::ColumnNotFound { available, .. }) => assert_eq!(available, ["a", "c", "d"]),
            other => panic!("{other:?}"),
        }
        let out = cols.finish().unwrap();
        let names: Vec<&str> = out.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        let a: Vec<Option<f64>> = out.column("a").unwrap().f64().unwrap().iter().collect();
        assert_eq!(a, [Some(10.0), Some(20.0)]);
        let c: Vec<Option<f64>> = out.column("c").unwrap().f64().unwrap().iter().collect();
        assert_eq!(c, [Some(7.0), Some(8.0)]);
    }
}
