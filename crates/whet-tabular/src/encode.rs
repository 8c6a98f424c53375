//! Encoding: one-hot with a cap on levels (rare and unseen levels pooled into `__other__`),
//! ordinal codes, booleans, and dates/times to parts (year, month, weekday, hour).

use std::collections::HashMap;

use polars::prelude::*;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stage::{
    Columns, FittedStage, FittedStep, Fitter, Stage, fit_room, fit_whole, not_found, select_columns,
};

/// The pooled level name.
pub const OTHER: &str = "__other__";

/// A part of a date or datetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatePart {
    /// Calendar year.
    Year,
    /// Month, 1-12.
    Month,
    /// ISO weekday, 1 (Monday) - 7.
    Weekday,
    /// Hour, 0-23 (0 for dates).
    Hour,
}

fn default_max_levels() -> usize {
    20
}
fn default_parts() -> Vec<DatePart> {
    vec![
        DatePart::Year,
        DatePart::Month,
        DatePart::Weekday,
        DatePart::Hour,
    ]
}

/// `- encode: { one_hot: [carrier, origin], max_levels: 20, ordinal: [...], boolean: [...],
/// dates: [...] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncodeConfig {
    /// Columns to one-hot encode (any type; values are compared as text). Each becomes boolean
    /// columns `<column>=<level>` plus `<column>=__other__`.
    #[serde(default)]
    pub one_hot: Vec<String>,
    /// Most frequent train levels kept per one-hot column; the rest, unseen levels and missing
    /// values go to `__other__`. Default 20.
    #[serde(default = "default_max_levels")]
    pub max_levels: usize,
    /// Columns replaced by the index of their value in the sorted train levels (unseen and
    /// missing: -1).
    #[serde(default)]
    pub ordinal: Vec<String>,
    /// Text columns with values true/false, yes/no, y/n, 1/0 (any case) made boolean.
    #[serde(default)]
    pub boolean: Vec<String>,
    /// Date or datetime columns replaced by `<column>_<part>` integer columns.
    #[serde(default)]
    pub dates: Vec<String>,
    /// Parts extracted from `dates`. Default `[year, month, weekday, hour]`.
    #[serde(default = "default_parts")]
    pub parts: Vec<DatePart>,
}

impl Default for EncodeConfig {
    fn default() -> Self {
        Self {
            one_hot: vec![],
            max_levels: default_max_levels(),
            ordinal: vec![],
            boolean: vec![],
            dates: vec![],
            parts: default_parts(),
        }
    }
}

/// Levels of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    /// The column.
    pub column: String,
    /// Kept levels, in output order.
    pub levels: Vec<String>,
}

/// Fitted [`EncodeConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedEncode {
    /// One-hot levels (most frequent first on train, ties by name).
    pub one_hot: Vec<Levels>,
    /// Ordinal levels (sorted).
    pub ordinal: Vec<Levels>,
    /// Boolean columns.
    pub boolean: Vec<String>,
    /// Date columns.
    pub dates: Vec<String>,
    /// Parts.
    pub parts: Vec<DatePart>,
}

fn as_text(df: &DataFrame, c: &str, context: &str) -> Result<StringChunked> {
    let Ok(col) = df.column(c) else {
        return Err(not_found(df, c, context));
    };
    let s = col.as_materialized_series().cast(&DataType::String)?;
    Ok(s.str()?.clone())
}

/// The column `c` of `cols` as text.
fn column_text(cols: &Columns, c: &str, context: &str) -> Result<StringChunked> {
    let Some(col) = cols.get(c) else {
        return Err(cols.not_found(c, context));
    };
    let s = col.as_materialized_series().cast(&DataType::String)?;
    Ok(s.str()?.clone())
}

/// Adds the count of every value of `ca` to `m`.
fn count_into(m: &mut HashMap<String, usize>, ca: &StringChunked) {
    for v in ca.iter().flatten() {
        match m.get_mut(v) {
            Some(n) => *n += 1,
            None => {
                m.insert(v.to_string(), 1);
            }
        }
    }
}

/// The values by count, most frequent first, ties in text order.
fn by_count(m: HashMap<String, usize>) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

impl Stage for EncodeConfig {
    fn name(&self) -> String {
        "encode".into()
    }
    fn fit(&self, train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        let f = self
            .fitter(&train.clear(), fit_room())?
            .expect("encode always has a fitter");
        let fitted = fit_whole(f, train)?;
        if let FittedStep::Encode(e) = fitted.to_step() {
            // The one-hot columns of every row, as booleans and later as f32 features, counted
            // from the levels before any column is made. (A streamed table makes them a batch at
            // a time, and counts its matrices as it builds them.)
            let new_columns = e
                .one_hot
                .iter()
                .fold(0u64, |a, l| a.saturating_add(l.levels.len() as u64 + 1));
            whet_core::budget::check(
                format!(
                    "the one-hot columns ({new_columns} new columns of {} rows, as booleans and f32)",
                    train.height()
                ),
                whet_core::budget::product(&[new_columns, train.height() as u64, 1 + 4]),
                "encode.max_levels",
            )?;
        }
        Ok(fitted)
    }

    fn fitter(&self, empty: &DataFrame, _room: u64) -> Result<Option<Box<dyn Fitter>>> {
        select_columns(empty, &self.one_hot, "encode one_hot", |_| true)?;
        select_columns(empty, &self.ordinal, "encode ordinal", |_| true)?;
        select_columns(empty, &self.boolean, "encode boolean", |_| true)?;
        select_columns(empty, &self.dates, "encode dates", |_| true)?;
        Ok(Some(Box::new(EncodeFitter {
            cfg: self.clone(),
            one_hot: vec![HashMap::new(); self.one_hot.len()],
            ordinal: vec![HashMap::new(); self.ordinal.len()],
        })))
    }
}

/// Counts the values of the one-hot and ordinal columns batch by batch.
struct EncodeFitter {
    cfg: EncodeConfig,
    one_hot: Vec<HashMap<String, usize>>,
    ordinal: Vec<HashMap<String, usize>>,
}

impl Fitter for EncodeFitter {
    fn feed(&mut self, batch: &DataFrame) -> Result<()> {
        for (c, m) in self.cfg.one_hot.iter().zip(&mut self.one_hot) {
            count_into(m, &as_text(batch, c, "encode one_hot")?);
        }
        for (c, m) in self.cfg.ordinal.iter().zip(&mut self.ordinal) {
            count_into(m, &as_text(batch, c, "encode ordinal")?);
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn FittedStage>> {
        let cfg = self.cfg;
        let one_hot: Vec<Levels> = cfg
            .one_hot
            .iter()
            .zip(self.one_hot)
            .map(|(c, m)| Levels {
                column: c.clone(),
                levels: by_count(m)
                    .into_iter()
                    .take(cfg.max_levels)
                    .map(|(k, _)| k)
                    .collect(),
            })
            .collect();
        let ordinal = cfg
            .ordinal
            .iter()
            .zip(self.ordinal)
            .map(|(c, m)| {
                let mut levels: Vec<String> = m.into_keys().collect();
                levels.sort();
                Levels {
                    column: c.clone(),
                    levels,
                }
            })
            .collect();
        Ok(Box::new(FittedEncode {
            one_hot,
            ordinal,
            boolean: cfg.boolean.clone(),
            dates: cfg.dates.clone(),
            parts: cfg.parts.clone(),
        }))
    }
}

/// Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
/// Algorithms", `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn date_part(t: i64, per_day: i64, per_hour: i64, part: DatePart) -> i32 {
    let days = t.div_euclid(per_day);
    (match part {
        DatePart::Year => civil(days).0,
        DatePart::Month => civil(days).1,
        // 1970-01-01 was a Thursday (ISO 4).
        DatePart::Weekday => (days + 3).rem_euclid(7) + 1,
        DatePart::Hour if per_hour == 0 => 0,
        DatePart::Hour => t.rem_euclid(per_day) / per_hour,
    }) as i32
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "t" => Some(true),
        "false" | "no" | "n" | "0" | "f" => Some(false),
        _ => None,
    }
}

impl FittedStage for FittedEncode {
    fn transform(&self, df: DataFrame) -> Result<DataFrame> {
        // Edits by name on the columns taken apart: linear in the number of columns (a one-hot
        // of many levels adds as many).
        let mut cols = Columns::new(df);
        for lv in &self.one_hot {
            let ca = column_text(&cols, &lv.column, "encode one_hot")?;
            // Each row's level once (a hash lookup), then one boolean column per level from
            // the codes, levels in parallel: rows + rows x levels cheap comparisons, instead of
            // comparing every text with every level.
            let index: HashMap<&str, u32> = lv
                .levels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as u32))
                .collect();
            let other = lv.levels.len() as u32;
            let codes: Vec<u32> = ca
                .iter()
                .map(|v| v.and_then(|v| index.get(v).copied()).unwrap_or(other))
                .collect();
            let hot: Vec<Column> = (0..=other)
                .into_par_iter()
                .map(|l| {
                    let name = match lv.levels.get(l as usize) {
                        Some(level) => format!("{}={level}", lv.column),
                        None => format!("{}={OTHER}", lv.column),
                    };
                    BooleanChunked::from_iter_values(name.into(), codes.iter().map(|&c| c == l))
                        .into_column()
                })
                .collect();
            cols.remove(&lv.column);
            for c in hot {
                cols.put(c)?;
            }
        }
        for lv in &self.ordinal {
            let ca = column_text(&cols, &lv.column, "encode ordinal")?;
            let index: HashMap<&str, i32> = lv
                .levels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as i32))
                .collect();
            let codes: Int32Chunked = ca
                .iter()
                .map(|v| Some(v.and_then(|v| index.get(v).copied()).unwrap_or(-1)))
                .collect();
            cols.put(codes.with_name(lv.column.as_str().into()).into_column())?;
        }
        for c in &self.boolean {
            let Some(col) = cols.get(c) else {
                return Err(cols.not_found(c, "encode boolean"));
            };
            if col.dtype() == &DataType::Boolean {
                continue;
            }
            let ca = column_text(&cols, c, "encode boolean")?;
            let mut out = Vec::with_capacity(ca.len());
            for v in ca.iter() {
                match v {
                    None => out.push(None),
                    Some(v) => match parse_bool(v) {
                        Some(b) => out.push(Some(b)),
                        None => {
                            return Err(Error::ColumnType {
                                column: c.clone(),
                                context: "encode boolean".into(),
                                found: format!("value `{v}`"),
                                expected: "true/false, yes/no, y/n, t/f or 1/0".into(),
                            });
                        }
                    },
                }
            }
            let b: BooleanChunked = out.into_iter().collect();
            cols.put(b.with_name(c.as_str().into()).into_column())?;
        }
        for c in &self.dates {
            let Some(col) = cols.get(c) else {
                return Err(cols.not_found(c, "encode dates"));
            };
            let s = col.as_materialized_series().clone();
            if !matches!(s.dtype(), DataType::Date | DataType::Datetime(_, _)) {
                return Err(Error::ColumnType {
                    column: c.clone(),
                    context: "encode dates".into(),
                    found: s.dtype().to_string(),
                    expected: "a date or datetime (set `types: { col: datetime }` on the table)"
                        .into(),
                });
            }
            // Parts from the physical value (days or ticks since 1970-01-01, UTC/naive), because
            // polars' own accessors return Int8 columns, a type not compiled in here.
            let (per_day, per_hour): (i64, i64) = match s.dtype() {
                DataType::Date => (1, 0),
                DataType::Datetime(TimeUnit::Milliseconds, _) => (86_400_000, 3_600_000),
                DataType::Datetime(TimeUnit::Microseconds, _) => (86_400_000_000, 3_600_000_000),
                _ => (86_400_000_000_000, 3_600_000_000_000),
            };
            let phys = s.to_physical_repr().cast(&DataType::Int64)?;
            let ticks = phys.i64()?;
            for p in &self.parts {
                let part = *p;
                let v: Int32Chunked = ticks
                    .iter()
                    .map(|t| t.map(|t| date_part(t, per_day, per_hour, part)))
                    .collect();
                let suffix = match p {
                    DatePart::Year => "year",
                    DatePart::Month => "month",
                    DatePart::Weekday => "weekday",
                    DatePart::Hour => "hour",
                };
                cols.put(v.with_name(format!("{c}_{suffix}").into()).into_column())?;
            }
            cols.remove(c);
        }
        cols.finish()
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::Encode(self.clone())
    }
}

impl EncodeConfig {
    /// One-hot encodes these columns (at most `max_levels` levels each, default 20).
    pub fn one_hot(columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EncodeConfig {
            one_hot: columns.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the most levels a one-hot column may have.
    pub fn with_max_levels(mut self, max_levels: usize) -> Self {
        self.max_levels = max_levels;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_keeps_train_levels_and_pools_the_rest() {
        let train = df!("c" => ["a", "a", "a", "b", "b", "c"]).unwrap();
        let cfg = EncodeConfig {
            one_hot: vec!["c".into()],
            max_levels: 2,
            ..Default::default()
        };
        let fitted = cfg.fit(&train).unwrap();
        // Test frame where `c` is the most frequent: train levels still decide.
        let test = df!("c" => [Some("c"), Some("c"), Some("z"), None, Some("b")]).unwrap();
        let out = fitted.transform(test).unwrap();
        assert_eq!(crate::stage::names(&out), ["c=a", "c=b", "c=__other__"]);
        let other: Vec<bool> = out
            .column("c=__other__")
            .unwrap()
            .bool()
            .unwrap()
            .no_null_iter()
            .collect();
        assert_eq!(other, [true, true, true, true, false]);
    }

    #[test]
    fn ordinal_boolean_dates() {
        let train = df!("o" => ["lo", "hi", "mid"], "b" => ["yes", "no", "YES"]).unwrap();
        let cfg = EncodeConfig {
            ordinal: vec!["o".into()],
            boolean: vec!["b".into()],
            ..Default::default()
        };
        let fitted = cfg.fit(&train).unwrap();
        let out = fitted
            .transform(df!("o" => ["mid", "new"], "b" => ["n", "y"]).unwrap())
            .unwrap();
        let o: Vec<i32> = out
            .column("o")
            .unwrap()
            .i32()
            .unwrap()
            .no_null_iter()
            .collect();
        assert_eq!(o, [2, -1]); // sorted train levels: hi, lo, mid
        let b: Vec<bool> = out
            .column("b")
            .unwrap()
            .bool()
            .unwrap()
            .no_null_iter()
            .collect();
        assert_eq!(b, [false, true]);
        let bad = fitted
            .transform(df!("o" => ["hi"], "b" => ["maybe"]).unwrap())
            .unwrap_err();
        assert!(bad.to_string().contains("`maybe`"), "{bad}");

        // 2013-01-01T10:00 (a Tuesday), microseconds since the epoch.
        let us = 1_357_034_400_000_000i64;
        let t = Int64Chunked::from_vec("t".into(), vec![us])
            .into_datetime(TimeUnit::Microseconds, None)
            .into_series();
        let df = DataFrame::new(1, vec![t.into_column()]).unwrap();
        let cfg = EncodeConfig {
            dates: vec!["t".into()],
            ..Default::default()
        };
        let out = cfg.fit(&df).unwrap().transform(df).unwrap();
        let row: Vec<i32> = out
            .columns()
            .iter()
            .map(|c| c.i32().unwrap().get(0).unwrap())
            .collect();
        assert_eq!(row, [2013, 1, 2, 10]);
        // Before the epoch and a leap day: 1960-02-29 23:00 was a Monday.
        let t = -310_438_800i64 * 1_000_000;
        let days = t.div_euclid(86_400_000_000);
        assert_eq!(civil(days), (1960, 2, 29));
        assert_eq!(
            date_part(t, 86_400_000_000, 3_600_000_000, DatePart::Weekday),
            1
        );
        assert_eq!(
            date_part(t, 86_400_000_000, 3_600_000_000, DatePart::Hour),
            23
        );
    }
}
