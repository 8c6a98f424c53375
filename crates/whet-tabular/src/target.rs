//! Targets: classification labels from a column, binary from a threshold on a column, or
//! regression on a column. Rows whose target is missing are dropped and counted.

use ndarray::Array2;
use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Issues;

use crate::error::{Error, Result};
use crate::stage::{f64_column, is_numeric, not_found};

/// `target: { column: arr_delay, threshold: 15 }` (binary: positive when the value is greater
/// than `threshold`), `{ column: species }` (classification) or `{ regression: price }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Column holding class labels, or the value thresholded for a binary target.
    #[serde(default)]
    pub column: Option<String>,
    /// With `column`: binary target `column > threshold`.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Column of a regression target (instead of `column`).
    #[serde(default)]
    pub regression: Option<String>,
    /// With `regression`: standardise the target on the training split (subtract its mean,
    /// divide by its standard deviation) for training, and turn the network's outputs back into
    /// the target's units for metrics and predictions. Default true; `false` trains on the raw
    /// values. A target that does not vary on the training split is an error when scaled.
    #[serde(default)]
    pub scale: Option<bool>,
    /// With `column` and no `threshold` (a classification target): the most distinct values
    /// the column may have. More is refused at `whet validate` and when the data are prepared,
    /// since a column with that many values is more likely a quantity (use `regression`) or an
    /// identifier than classes. Default 100.
    #[serde(default)]
    pub max_classes: Option<usize>,
    /// Set by the run, not the YAML ([`TargetConfig::with_two_labels`]): the model has one 0/1
    /// output, so a `column` without `threshold` must hold exactly two labels.
    #[serde(skip)]
    #[schemars(skip)]
    two_labels: bool,
}

/// The default of [`TargetConfig::max_classes`].
pub const DEFAULT_MAX_CLASSES: usize = 100;

/// The resolved kind of target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// `column > threshold`, one 0/1 output.
    Binary {
        /// Source column.
        column: String,
        /// Threshold.
        threshold: f64,
    },
    /// One-hot rows over the classes; with `binary`, exactly two classes as one 0/1 output
    /// (1 for the second class in the classes' order).
    Classification {
        /// Source column.
        column: String,
        /// Two labels as one 0/1 output (`model.task: binary` on a column without
        /// `threshold`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        binary: bool,
    },
    /// One real output.
    Regression {
        /// Source column.
        column: String,
    },
}

impl TargetKind {
    /// The column the target is read from.
    pub fn column(&self) -> &str {
        match self {
            TargetKind::Binary { column, .. }
            | TargetKind::Classification { column, .. }
            | TargetKind::Regression { column } => column,
        }
    }
}

impl TargetConfig {
    /// Cross-field checks: exactly one of `column` / `regression`; `threshold` only with
    /// `column`.
    pub fn validate(&self) -> Issues {
        let mut is = Issues::new();
        is.check(
            self.column.is_some() != self.regression.is_some(),
            "",
            || "give exactly one of `column` (classification, or binary with `threshold`) and `regression`".into(),
        );
        is.check(
            self.threshold.is_none() || self.column.is_some(),
            "threshold",
            || "`threshold` needs `column`".into(),
        );
        is.check(
            self.threshold.is_none_or(f64::is_finite),
            "threshold",
            || "must be a finite number".into(),
        );
        is.check(
            self.scale.is_none() || self.regression.is_some(),
            "scale",
            || "`scale` is for regression targets (`{ regression: c, scale: false }`); class labels are not scaled: remove it".into(),
        );
        is.check(
            self.max_classes.is_none() || (self.column.is_some() && self.threshold.is_none()),
            "max_classes",
            || "`max_classes` is for classification targets (`{ column: c, max_classes: n }`, without `threshold`): remove it".into(),
        );
        is.check(
            self.max_classes.is_none_or(|m| m >= 2),
            "max_classes",
            || "must be at least 2: a classifier needs two classes".into(),
        );
        is
    }

    /// Whether a regression target is standardised ([`TargetConfig::scale`], default true).
    pub fn scales(&self) -> bool {
        self.regression.is_some() && self.scale.unwrap_or(true)
    }

    /// The most classes a classification target may have ([`TargetConfig::max_classes`]).
    pub fn max_classes(&self) -> usize {
        self.max_classes.unwrap_or(DEFAULT_MAX_CLASSES)
    }

    /// [`TargetConfig::check_values`] as an error ([`Error::Target`] naming
    /// `data.target.<key>`), for the rows a preparation reads.
    ///
    /// # Errors
    /// The issue found.
    pub fn check_rows(&self, values: &Series, rows: &str) -> Result<()> {
        match self.check_values(values, rows).iter().next() {
            Some(i) => Err(Error::Target(format!(
                "data.target.{}: {}",
                i.path, i.message
            ))),
            None => Ok(()),
        }
    }

    /// Checks the values of the target column (all of them, or the first rows at
    /// `whet validate`) against this config: a regression target must hold numbers; a
    /// classification target (`column` without `threshold`) must hold names or whole numbers,
    /// with at most [`TargetConfig::max_classes`] distinct values. `rows` says which rows
    /// `values` are, for the messages (`"the first 1000 rows"`). Issue paths are relative to
    /// `target` (`regression`, `column`); at most one issue is given.
    pub fn check_values(&self, values: &Series, rows: &str) -> Issues {
        let mut is = Issues::new();
        if let Some(col) = &self.regression {
            let dt = values.dtype();
            if !(is_numeric(dt) || dt == &DataType::Boolean) {
                let example = values
                    .drop_nulls()
                    .cast(&DataType::String)
                    .ok()
                    .and_then(|s| s.str().ok().and_then(|c| c.get(0).map(String::from)))
                    .map(|v| format!(" (e.g. `{v}`)"))
                    .unwrap_or_default();
                is.push(
                    "regression",
                    format!(
                        "column `{col}` holds {dt} values{example}, and a regression target must be numbers: \
                         if `{col}` names classes, write `target: {{ column: {col} }}` with `model.task: classification`; \
                         if it is numbers that a few cells stop from being read as such, list those cells' markers \
                         under the table's `missing`, or set the table's `types: {{ {col}: f64 }}`"
                    ),
                );
            }
            return is;
        }
        let (Some(col), None) = (&self.column, self.threshold) else {
            return is;
        };
        let v = values.drop_nulls();
        let fractional = match v.dtype() {
            DataType::Float32 | DataType::Float64 => {
                v.cast(&DataType::Float64).ok().and_then(|f| {
                    f.f64()
                        .ok()
                        .and_then(|c| c.into_no_null_iter().find(|x| x.fract() != 0.0))
                })
            }
            _ => None,
        };
        if let Some(x) = fractional {
            is.push(
                "column",
                format!(
                    "column `{col}` holds fractional numbers (e.g. {}), but `{{ column: {col} }}` makes one class per \
                     distinct value: for a quantity write `target: {{ regression: {col} }}` with `model.task: regression`, \
                     or `target: {{ column: {col}, threshold: t }}` for a binary target (`{col}` > t)",
                    whet_core::spec::fmt_number(x)
                ),
            );
            return is;
        }
        let max = self.max_classes();
        let distinct = v.n_unique().unwrap_or(0);
        if distinct > max {
            let key = if self.max_classes.is_some() {
                format!("`data.target.max_classes` (now {max})")
            } else {
                format!("`data.target.max_classes` (default {DEFAULT_MAX_CLASSES})")
            };
            is.push(
                "column",
                format!(
                    "column `{col}` has {distinct} distinct values in {rows}, more than {key} allows for a \
                     classification target (one output per class): for a quantity write `target: {{ regression: {col} }}` \
                     with `model.task: regression`, or `target: {{ column: {col}, threshold: t }}` for a binary \
                     target; if these really are {distinct} classes, raise `max_classes`"
                ),
            );
        }
        is
    }

    /// The kind.
    ///
    /// # Errors
    /// [`Error::Target`] when the config is invalid (see [`TargetConfig::validate`]).
    pub fn kind(&self) -> Result<TargetKind> {
        match (&self.column, self.threshold, &self.regression) {
            (Some(c), Some(t), None) => Ok(TargetKind::Binary {
                column: c.clone(),
                threshold: t,
            }),
            (Some(c), None, None) => Ok(TargetKind::Classification {
                column: c.clone(),
                binary: self.two_labels,
            }),
            (None, None, Some(c)) => Ok(TargetKind::Regression { column: c.clone() }),
            _ => Err(Error::Target(
                "give exactly one of `column` (with optional `threshold`) and `regression`".into(),
            )),
        }
    }
}

/// The target of some rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Kind.
    pub kind: TargetKind,
    /// Class names (binary: two, classification: sorted labels, regression: empty).
    pub classes: Vec<String>,
    /// Per row: class index (binary/classification) or value (regression).
    pub values: Vec<f32>,
}

impl Target {
    /// Class index per row (for stratification); `None` for regression.
    pub fn labels(&self) -> Option<Vec<u32>> {
        (!matches!(self.kind, TargetKind::Regression { .. }))
            .then(|| self.values.iter().map(|&v| v as u32).collect())
    }

    /// The rows `idx`, in that order.
    pub fn take(&self, idx: &[IdxSize]) -> Target {
        Target {
            kind: self.kind.clone(),
            classes: self.classes.clone(),
            values: idx.iter().map(|&i| self.values[i as usize]).collect(),
        }
    }

    /// The target matrix: one-hot rows for classification, one 0/1 column for binary (a
    /// threshold, or two labels), one value column for regression.
    ///
    /// # Shapes
    /// `rows × classes` for classification, `rows × 1` otherwise.
    pub fn matrix(&self) -> Array2<f32> {
        match self.kind {
            TargetKind::Classification { binary: false, .. } => {
                let k = self.classes.len();
                let mut y = Array2::zeros((self.values.len(), k));
                for (i, &v) in self.values.iter().enumerate() {
                    y[[i, v as usize]] = 1.0;
                }
                y
            }
            _ => Array2::from_shape_vec((self.values.len(), 1), self.values.clone())
                .expect("shape matches length"),
        }
    }
}

/// The error for a target column `col` missing in every one of `rows` rows.
pub(crate) fn all_missing(col: &str, rows: usize) -> Error {
    Error::Target(format!(
        "column `{col}` is missing in all {rows} rows, so there is nothing to learn: check the \
         column name, and the table's `missing` markers (a marker that matches every value \
         empties the column)"
    ))
}

/// Splits the target off `df`: rows with a missing target are dropped (their count is returned),
/// the target column is removed from the frame. `classes` fixes the class list (from a manifest);
/// otherwise it is taken from the data (sorted).
///
/// # Errors
/// [`Error::ColumnNotFound`] when the column is absent, [`Error::Target`] for a label not in
/// `classes` or a non-numeric column with a threshold or regression.
pub fn extract_target(
    df: DataFrame,
    kind: &TargetKind,
    classes: Option<&[String]>,
) -> Result<(DataFrame, Target, usize)> {
    let col = kind.column();
    let Ok(c) = df.column(col) else {
        return Err(not_found(&df, col, "target"));
    };
    if df.height() > 0 && c.null_count() == df.height() {
        return Err(all_missing(col, df.height()));
    }
    let keep = c.is_not_null();
    let dropped = df.height() - keep.sum().unwrap_or(0) as usize;
    let df = if dropped > 0 { df.filter(&keep)? } else { df };
    let (values, classes) = match kind {
        TargetKind::Binary { threshold, .. } => {
            let x = f64_column(&df, col, "target")?;
            let t = *threshold;
            let v = x
                .no_null_iter()
                .map(|v| if v > t { 1.0 } else { 0.0 })
                .collect();
            let t = whet_core::spec::fmt_number(t);
            (v, vec![format!("{col} <= {t}"), format!("{col} > {t}")])
        }
        TargetKind::Regression { .. } => {
            let x = f64_column(&df, col, "target")?;
            (x.no_null_iter().map(|v| v as f32).collect(), vec![])
        }
        TargetKind::Classification { binary, .. } => {
            let s = df
                .column(col)?
                .as_materialized_series()
                .cast(&DataType::String)?;
            let ca = s.str()?;
            let classes: Vec<String> = match classes {
                Some(c) => c.to_vec(),
                None => {
                    let mut u: Vec<String> = ca
                        .no_null_iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .map(String::from)
                        .collect();
                    u.dedup();
                    if *binary && u.len() != 2 {
                        let shown: Vec<&str> = u.iter().take(5).map(String::as_str).collect();
                        let more = if u.len() > 5 { ", …" } else { "" };
                        return Err(Error::Target(format!(
                            "data.target.column: `model.task: binary` without `threshold` needs a \
                             column of two values (0/1, or two labels), and `{col}` has {} ({}{more}): \
                             write `target: {{ column: {col}, threshold: t }}` for a binary target \
                             (`{col}` > t), or use `model.task: classification` for one class per value",
                            u.len(),
                            shown.join(", ")
                        )));
                    }
                    u
                }
            };
            let index: std::collections::HashMap<&str, usize> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            let mut v = Vec::with_capacity(ca.len());
            for x in ca.no_null_iter() {
                match index.get(x) {
                    Some(&i) => v.push(i as f32),
                    None => {
                        return Err(Error::Target(format!(
                            "label `{x}` in column `{col}` is not one of the fitted classes {classes:?}"
                        )));
                    }
                }
            }
            (v, classes)
        }
    };
    let df = df.drop(col)?;
    Ok((
        df,
        Target {
            kind: kind.clone(),
            classes,
            values,
        },
        dropped,
    ))
}

impl TargetConfig {
    /// Classes from the labels in `column` (`{ column: c }`).
    pub fn classes(column: impl Into<String>) -> Self {
        TargetConfig {
            column: Some(column.into()),
            threshold: None,
            regression: None,
            scale: None,
            max_classes: None,
            two_labels: false,
        }
    }

    /// A binary target, `column > threshold` (`{ column: c, threshold: t }`).
    pub fn binary(column: impl Into<String>, threshold: f64) -> Self {
        TargetConfig {
            threshold: Some(threshold),
            ..Self::classes(column)
        }
    }

    /// Sets [`TargetConfig::scale`] (regression targets).
    pub fn with_scale(mut self, scale: bool) -> Self {
        self.scale = Some(scale);
        self
    }

    /// For a model with one 0/1 output (`model.task: binary`): a `column` without `threshold`
    /// is then two labels, the second (in text order) the positive class, and any other number
    /// of labels is refused when the data are prepared. Without it such a column is one class
    /// per label.
    pub fn with_two_labels(mut self, yes: bool) -> Self {
        self.two_labels = yes;
        self
    }

    /// Sets [`TargetConfig::max_classes`] (classification targets).
    pub fn with_max_classes(mut self, max_classes: usize) -> Self {
        self.max_classes = Some(max_classes);
        self
    }

    /// A regression target (`{ regression: c }`).
    pub fn regression(column: impl Into<String>) -> Self {
        TargetConfig {
            column: None,
            threshold: None,
            regression: Some(column.into()),
            scale: None,
            max_classes: None,
            two_labels: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_from_threshold_drops_missing() {
        let df =
            df!("d" => [Some(20.0), Some(15.0), None, Some(-3.0)], "x" => [1, 2, 3, 4]).unwrap();
        let cfg = TargetConfig {
            column: Some("d".into()),
            threshold: Some(15.0),
            regression: None,
            scale: None,
            max_classes: None,
            two_labels: false,
        };
        let (out, t, dropped) = extract_target(df, &cfg.kind().unwrap(), None).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(t.values, [1.0, 0.0, 0.0]);
        assert_eq!(crate::stage::names(&out), ["x"]);
        assert_eq!(t.matrix().shape(), [3, 1]);
    }

    #[test]
    fn classification_one_hot_and_unknown_label() {
        let df = df!("c" => ["b", "a", "b"]).unwrap();
        let kind = TargetKind::Classification {
            column: "c".into(),
            binary: false,
        };
        let (_, t, _) = extract_target(df, &kind, None).unwrap();
        assert_eq!(t.classes, ["a", "b"]);
        assert_eq!(t.matrix().row(1).to_vec(), [1.0, 0.0]);
        let e = extract_target(df!("c" => ["z"]).unwrap(), &kind, Some(&t.classes)).unwrap_err();
        assert!(e.to_string().contains("`z`"));
    }

    #[test]
    fn two_labels_are_one_output_and_three_are_refused() {
        let cfg = TargetConfig::classes("c").with_two_labels(true);
        let kind = cfg.kind().unwrap();
        assert_eq!(
            kind,
            TargetKind::Classification {
                column: "c".into(),
                binary: true
            }
        );
        let (_, t, _) =
            extract_target(df!("c" => ["yes", "no", "yes"]).unwrap(), &kind, None).unwrap();
        assert_eq!(t.classes, ["no", "yes"]);
        assert_eq!(t.matrix().shape(), [3, 1]);
        assert_eq!(t.matrix().column(0).to_vec(), [1.0, 0.0, 1.0]);
        // The manifest's form: old manifests (no `binary`) still read as one-hot classes.
        let json = serde_json::to_string(&kind).unwrap();
        assert!(json.contains("\"binary\":true"), "{json}");
        let old: TargetKind = serde_json::from_str(r#"{"classification":{"column":"c"}}"#).unwrap();
        assert!(matches!(
            old,
            TargetKind::Classification { binary: false, .. }
        ));
        let e = extract_target(df!("c" => ["a", "b", "c"]).unwrap(), &kind, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("has 3 (a, b, c)") && msg.contains("threshold: t"),
            "{msg}"
        );
    }

    #[test]
    fn validate_rejects_both() {
        let cfg = TargetConfig {
            column: Some("a".into()),
            threshold: None,
            regression: Some("b".into()),
            scale: None,
            max_classes: None,
            two_labels: false,
        };
        assert_eq!(cfg.validate().len(), 1);
        let scale_on_classes = TargetConfig::classes("a").with_scale(false).validate();
        assert_eq!(scale_on_classes.iter().next().unwrap().path, "scale");
        let max_on_regression = TargetConfig::regression("a").with_max_classes(5).validate();
        assert_eq!(max_on_regression.iter().next().unwrap().path, "max_classes");
        assert!(TargetConfig::regression("a").scales());
        assert!(!TargetConfig::regression("a").with_scale(false).scales());
        assert!(!TargetConfig::classes("a").scales());
    }

    #[test]
    fn check_values_text_regression_fractional_and_too_many_classes() {
        let text = Series::new("p".into(), ["1.5", "cheap"]);
        let is = TargetConfig::regression("p").check_values(&text, "all rows");
        let i = is.iter().next().unwrap();
        assert_eq!(i.path, "regression");
        assert!(i.message.contains("`target: { column: p }`"), "{i}");
        let nums = Series::new("p".into(), [1.5, 2.0]);
        assert!(
            TargetConfig::regression("p")
                .check_values(&nums, "all rows")
                .is_empty()
        );

        let frac = Series::new("c".into(), [Some(1.0), None, Some(2.25)]);
        let is = TargetConfig::classes("c").check_values(&frac, "all rows");
        let i = is.iter().next().unwrap();
        assert_eq!(i.path, "column");
        assert!(
            i.message.contains("e.g. 2.25") && i.message.contains("regression: c"),
            "{i}"
        );
        let whole = Series::new("c".into(), [1.0, 2.0, 1.0]);
        assert!(
            TargetConfig::classes("c")
                .check_values(&whole, "all rows")
                .is_empty()
        );
        // A binary target thresholds any number.
        assert!(
            TargetConfig::binary("c", 1.0)
                .check_values(&frac, "all rows")
                .is_empty()
        );

        let many = Series::new("c".into(), (0..101).collect::<Vec<i64>>());
        let is = TargetConfig::classes("c").check_values(&many, "all rows");
        let i = is.iter().next().unwrap();
        assert!(
            i.message.contains("101 distinct values") && i.message.contains("default 100"),
            "{i}"
        );
        let cfg = TargetConfig::classes("c").with_max_classes(101);
        assert!(cfg.check_values(&many, "all rows").is_empty());
        let is = TargetConfig::classes("c")
            .with_max_classes(50)
            .check_values(&many, "x");
        assert!(is.iter().next().unwrap().message.contains("(now 50)"));
    }
}
