//! Targets: classification labels from a column, binary from a threshold on a column, or
//! regression on a column. Rows whose target is missing are dropped and counted.

use ndarray::Array2;
use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Issues;

use crate::error::{Error, Result};
use crate::stage::{f64_column, not_found};

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
}

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
    /// One-hot rows over the classes.
    Classification {
        /// Source column.
        column: String,
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
            | TargetKind::Classification { column }
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
            (Some(c), None, None) => Ok(TargetKind::Classification { column: c.clone() }),
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

    /// The target matrix: one-hot rows for classification, one 0/1 column for binary, one value
    /// column for regression.
    ///
    /// # Shapes
    /// `rows × classes` for classification, `rows × 1` otherwise.
    pub fn matrix(&self) -> Array2<f32> {
        match self.kind {
            TargetKind::Classification { .. } => {
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
        return Err(Error::Target(format!(
            "column `{col}` is missing in all {} rows, so there is nothing to learn: check the \
             column name, and the table's `missing` markers (a marker that matches every value \
             empties the column)",
            df.height()
        )));
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
        TargetKind::Classification { .. } => {
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
        }
    }

    /// A binary target, `column > threshold` (`{ column: c, threshold: t }`).
    pub fn binary(column: impl Into<String>, threshold: f64) -> Self {
        TargetConfig {
            threshold: Some(threshold),
            ..Self::classes(column)
        }
    }

    /// A regression target (`{ regression: c }`).
    pub fn regression(column: impl Into<String>) -> Self {
        TargetConfig {
            column: None,
            threshold: None,
            regression: Some(column.into()),
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
        let kind = TargetKind::Classification { column: "c".into() };
        let (_, t, _) = extract_target(df, &kind, None).unwrap();
        assert_eq!(t.classes, ["a", "b"]);
        assert_eq!(t.matrix().row(1).to_vec(), [1.0, 0.0]);
        let e = extract_target(df!("c" => ["z"]).unwrap(), &kind, Some(&t.classes)).unwrap_err();
        assert!(e.to_string().contains("`z`"));
    }

    #[test]
    fn validate_rejects_both() {
        let cfg = TargetConfig {
            column: Some("a".into()),
            threshold: None,
            regression: Some("b".into()),
        };
        assert_eq!(cfg.validate().len(), 1);
    }
}
