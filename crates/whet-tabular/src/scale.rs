//! Normalisation with train statistics: z-score, min-max, robust (median and IQR), log1p; and
//! clipping at train quantiles.

use polars::prelude::*;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Probability;

use crate::error::{Error, Result};
use crate::quantile::Quantiles;
use crate::stage::{
    Columns, FittedStage, FittedStep, Fitter, Stage, f64_column, fit_room, fit_whole, is_numeric,
    select_columns,
};

/// The scaling method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NormMethod {
    /// `(x - mean) / std` (population std, as scikit-learn's `StandardScaler`; a zero std
    /// becomes 1).
    #[default]
    Zscore,
    /// `(x - min) / (max - min)` (a zero range becomes 1).
    Minmax,
    /// `(x - median) / (q75 - q25)` (scikit-learn `RobustScaler`; a zero IQR becomes 1).
    Robust,
    /// `ln(1 + x)`; nothing is fitted. Values `<= -1` give a non-finite error downstream.
    Log1p,
}

/// `- normalize: { method: zscore, columns: [...] }`: scales numeric columns with train
/// statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Method. Default `zscore`.
    #[serde(default)]
    pub method: NormMethod,
    /// Columns. Default: every numeric column (booleans such as one-hot and missing indicators
    /// are not numeric and are left alone).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Columns left out of the default selection.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Per-column affine parameters: `x' = (x - center) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScale {
    /// The column.
    pub column: String,
    /// Subtracted.
    pub center: f64,
    /// Divided by (never 0).
    pub scale: f64,
}

/// Fitted [`NormalizeConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedNormalize {
    /// Method.
    pub method: NormMethod,
    /// Per-column parameters (for `log1p`: the columns, center 0, scale 1).
    pub columns: Vec<ColumnScale>,
}

impl FittedNormalize {
    /// The parameters of `column`.
    pub fn get(&self, column: &str) -> Option<&ColumnScale> {
        self.columns.iter().find(|c| c.column == column)
    }
}

fn nonzero(s: f64) -> f64 {
    if s == 0.0 || !s.is_finite() { 1.0 } else { s }
}

impl Stage for NormalizeConfig {
    fn name(&self) -> String {
        format!("normalize({:?})", self.method).to_lowercase()
    }
    fn fit(&self, train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        let f = self
            .fitter(&train.clear(), fit_room())?
            .expect("normalize always has a fitter");
        fit_whole(f, train)
    }

    fn fitter(&self, empty: &DataFrame, room: u64) -> Result<Option<Box<dyn Fitter>>> {
        let cols = self.columns_of(empty)?;
        // Robust: the median and quartiles, the columns sharing the room.
        let room = room / cols.len().max(1) as u64;
        let columns = cols
            .into_iter()
            .map(|c| {
                let quartiles = (self.method == NormMethod::Robust)
                    .then(|| Quantiles::new(&[0.5, 0.25, 0.75], room));
                let acc = ScaleAcc {
                    quartiles,
                    ..ScaleAcc::default()
                };
                (c, acc)
            })
            .collect();
        Ok(Some(Box::new(NormalizeFitter {
            cfg: self.clone(),
            columns,
        })))
    }
}

impl NormalizeConfig {
    /// The numeric columns listed (default: all), less `exclude`.
    fn columns_of(&self, df: &DataFrame) -> Result<Vec<String>> {
        let cols = select_columns(df, &self.columns, "normalize", is_numeric)?;
        Ok(cols
            .into_iter()
            .filter(|c| !self.exclude.contains(c))
            .collect())
    }

    fn nothing(&self, column: &str) -> Error {
        Error::NothingToFit {
            stage: self.name(),
            column: column.to_string(),
        }
    }
}

/// What [`NormalizeFitter`] gathers for one column: its moments, least and greatest values,
/// or its median and quartiles.
#[derive(Debug, Default)]
struct ScaleAcc {
    moments: crate::kernel::MomentsAcc,
    min: Option<f64>,
    max: Option<f64>,
    quartiles: Option<Quantiles>,
}

/// Fits every method batch by batch (`robust` may take more passes).
struct NormalizeFitter {
    cfg: NormalizeConfig,
    columns: Vec<(String, ScaleAcc)>,
}

impl Fitter for NormalizeFitter {
    fn feed(&mut self, batch: &DataFrame) -> Result<()> {
        let method = self.cfg.method;
        // Columns in parallel; the first error in column order is reported.
        let done: Vec<Result<()>> = self
            .columns
            .par_iter_mut()
            .map(|(c, acc)| {
                let ca = f64_column(batch, c, "normalize")?;
                match method {
                    NormMethod::Zscore => acc.moments.feed(&ca),
                    NormMethod::Minmax => {
                        let pick =
                            |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
                                (Some(a), Some(b)) => Some(f(a, b)),
                                (a, b) => a.or(b),
                            };
                        acc.min = pick(acc.min, ca.min(), f64::min);
                        acc.max = pick(acc.max, ca.max(), f64::max);
                    }
                    NormMethod::Robust => {
                        if let Some(q) = &mut acc.quartiles {
                            q.feed(&ca);
                        }
                    }
                    NormMethod::Log1p => {}
                }
                Ok(())
            })
            .collect();
        done.into_iter().collect()
    }

    fn again(&mut self) -> Result<bool> {
        Ok(crate::quantile::again_all(
            self.columns
                .iter_mut()
                .filter_map(|(_, a)| a.quartiles.as_mut()),
        ))
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn FittedStage>> {
        let cfg = &self.cfg;
        let columns = self
            .columns
            .into_iter()
            .map(|(c, acc)| {
                let none = || cfg.nothing(&c);
                let (center, scale) = match cfg.method {
                    NormMethod::Zscore => {
                        let m = acc.moments.finish();
                        (m.mean().ok_or_else(none)?, nonzero(m.std().unwrap_or(0.0)))
                    }
                    NormMethod::Minmax => {
                        let lo = acc.min.ok_or_else(none)?;
                        let hi = acc.max.ok_or_else(none)?;
                        (lo, nonzero(hi - lo))
                    }
                    NormMethod::Robust => {
                        let q = acc.quartiles.map(Quantiles::finish).unwrap_or_default();
                        match q[..] {
                            [Some(med), Some(q1), Some(q3)] => (med, nonzero(q3 - q1)),
                            _ => return Err(none()),
                        }
                    }
                    NormMethod::Log1p => (0.0, 1.0),
                };
                Ok(ColumnScale {
                    column: c,
                    center,
                    scale,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Box::new(FittedNormalize {
            method: cfg.method,
            columns,
        }))
    }
}

impl FittedStage for FittedNormalize {
    fn transform(&self, df: DataFrame) -> Result<DataFrame> {
        // Take the columns out (so each is owned once and scaled in place), scale them in
        // parallel, and put them back at their positions.
        let mut cols = Columns::new(df);
        let mut taken = Vec::with_capacity(self.columns.len());
        for p in &self.columns {
            let (index, ca) = cols.take_f64(&p.column, "normalize")?;
            taken.push((index, ca, p));
        }
        let log = self.method == NormMethod::Log1p;
        let scaled: Vec<(usize, Float64Chunked)> = taken
            .into_par_iter()
            .map(|(index, mut ca, p)| {
                if log {
                    ca.apply_mut(f64::ln_1p);
                } else {
                    let (c, inv) = (p.center, 1.0 / p.scale);
                    ca.apply_mut(|x| (x - c) * inv);
                }
                (index, ca)
            })
            .collect();
        for (index, ca) in scaled {
            cols.set(index, ca.into_column());
        }
        cols.finish()
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::Normalize(self.clone())
    }
}

fn default_lower() -> Probability {
    Probability::new(0.01).expect("constant in range")
}
fn default_upper() -> Probability {
    Probability::new(0.99).expect("constant in range")
}

/// `- clip: { lower: 0.01, upper: 0.99 }`: clips numeric columns at train quantiles (e.g. the
/// impossible `wind_speed` of 1048 mph in the weather table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Lower quantile. Default 0.01.
    #[serde(default = "default_lower")]
    pub lower: Probability,
    /// Upper quantile. Default 0.99.
    #[serde(default = "default_upper")]
    pub upper: Probability,
    /// Columns. Default: every numeric column.
    #[serde(default)]
    pub columns: Vec<String>,
}

/// Fitted [`ClipConfig`]: `(column, low, high)` bounds from train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedClip {
    /// Bounds per column.
    pub bounds: Vec<(String, f64, f64)>,
}

impl Stage for ClipConfig {
    fn name(&self) -> String {
        format!("clip({}, {})", self.lower, self.upper)
    }
    fn fit(&self, train: &DataFrame) -> Result<Box<dyn FittedStage>> {
        let f = self
            .fitter(&train.clear(), fit_room())?
            .expect("clip always has a fitter");
        fit_whole(f, train)
    }

    fn fitter(&self, empty: &DataFrame, room: u64) -> Result<Option<Box<dyn Fitter>>> {
        let cols = select_columns(empty, &self.columns, "clip", is_numeric)?;
        let room = room / cols.len().max(1) as u64;
        let qs = [self.lower.get(), self.upper.get()];
        Ok(Some(Box::new(ClipFitter {
            cfg: self.clone(),
            columns: cols
                .into_iter()
                .map(|c| (c, Quantiles::new(&qs, room)))
                .collect(),
        })))
    }
}

/// Fits `clip`'s bounds batch by batch (exact quantiles, in one pass or a few).
struct ClipFitter {
    cfg: ClipConfig,
    columns: Vec<(String, Quantiles)>,
}

impl Fitter for ClipFitter {
    fn feed(&mut self, batch: &DataFrame) -> Result<()> {
        // Columns in parallel; the first error in column order is reported.
        let done: Vec<Result<()>> = self
            .columns
            .par_iter_mut()
            .map(|(c, q)| {
                q.feed(&f64_column(batch, c, "clip")?);
                Ok(())
            })
            .collect();
        done.into_iter().collect()
    }

    fn again(&mut self) -> Result<bool> {
        Ok(crate::quantile::again_all(
            self.columns.iter_mut().map(|(_, q)| q),
        ))
    }

    fn finish(self: Box<Self>) -> Result<Box<dyn FittedStage>> {
        let name = self.cfg.name();
        let bounds = self
            .columns
            .into_iter()
            .map(|(c, q)| match q.finish()[..] {
                [Some(lo), Some(hi)] => Ok((c, lo, hi)),
                _ => Err(Error::NothingToFit {
                    stage: name.clone(),
                    column: c,
                }),
            })
            .collect::<Result<_>>()?;
        Ok(Box::new(FittedClip { bounds }))
    }
}

impl FittedStage for FittedClip {
    fn transform(&self, df: DataFrame) -> Result<DataFrame> {
        let mut cols = Columns::new(df);
        for (c, lo, hi) in &self.bounds {
            let (index, mut ca) = cols.take_f64(c, "clip")?;
            let (lo, hi) = (*lo, *hi);
            ca.apply_mut(|x| x.clamp(lo, hi));
            cols.set(index, ca.into_column());
        }
        cols.finish()
    }
    fn to_step(&self) -> FittedStep {
        FittedStep::Clip(self.clone())
    }
}

impl Default for NormalizeConfig {
    /// z-score on every numeric feature (what `normalize: {}` gives).
    fn default() -> Self {
        NormalizeConfig::new(NormMethod::default())
    }
}

impl NormalizeConfig {
    /// Normalises every numeric feature with `method`.
    pub fn new(method: NormMethod) -> Self {
        NormalizeConfig {
            method,
            columns: vec![],
            exclude: vec![],
        }
    }

    /// Leaves these columns as they are.
    pub fn with_exclude(mut self, columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.exclude = columns.into_iter().map(Into::into).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train() -> DataFrame {
        df!("x" => [1.0, 2.0, 3.0, 4.0, 10.0], "k" => [5i64, 5, 5, 5, 5]).unwrap()
    }
    fn test_frame() -> DataFrame {
        df!("x" => [100.0, 200.0], "k" => [1i64, 9]).unwrap()
    }
    fn col(df: &DataFrame, c: &str) -> Vec<f64> {
        df.column(c)
            .unwrap()
            .f64()
            .unwrap()
            .no_null_iter()
            .collect()
    }

    #[test]
    fn every_method_uses_train_statistics() {
        // train x: mean 4, population std sqrt(10); min 1, max 10; median 3, IQR 4 - 2 = 2.
        let cases = [
            (NormMethod::Zscore, (100.0 - 4.0) / 10f64.sqrt()),
            (NormMethod::Minmax, (100.0 - 1.0) / 9.0),
            (NormMethod::Robust, (100.0 - 3.0) / 2.0),
            (NormMethod::Log1p, 101f64.ln()),
        ];
        for (method, want) in cases {
            let cfg = NormalizeConfig {
                method,
                columns: vec![],
                exclude: vec![],
            };
            let out = cfg.fit(&train()).unwrap().transform(test_frame()).unwrap();
            let got = col(&out, "x")[0];
            assert!((got - want).abs() < 1e-12, "{method:?}: {got} vs {want}");
            // Constant train column: scale 1, so test values are shifted only.
            if method == NormMethod::Zscore {
                assert_eq!(col(&out, "k"), [-4.0, 4.0]);
            }
        }
    }

    #[test]
    fn clip_uses_train_quantiles() {
        let cfg = ClipConfig {
            lower: Probability::new(0.0).unwrap(),
            upper: Probability::new(0.75).unwrap(),
            columns: vec!["x".into()],
        };
        let out = cfg.fit(&train()).unwrap().transform(test_frame()).unwrap();
        assert_eq!(col(&out, "x"), [4.0, 4.0]);
    }

    proptest::proptest! {
        #[test]
        fn zscore_gives_mean_zero_std_one(v in proptest::collection::vec(-1e3f64..1e3, 3..50)) {
            let df = df!("x" => v.clone()).unwrap();
            proptest::prop_assume!(df.column("x").unwrap().f64().unwrap().std(0).unwrap() > 1e-6);
            let cfg = NormalizeConfig { method: NormMethod::Zscore, columns: vec![], exclude: vec![] };
            let out = cfg.fit(&df).unwrap().transform(df).unwrap();
            let ca = out.column("x").unwrap().f64().unwrap().clone();
            proptest::prop_assert!(ca.mean().unwrap().abs() < 1e-9);
            proptest::prop_assert!((ca.std(0).unwrap() - 1.0).abs() < 1e-9);
        }
    }
}
