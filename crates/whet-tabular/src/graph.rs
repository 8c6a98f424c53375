//! The fitted numeric steps as element-wise operations on the feature columns, for a model
//! exported as a graph (ONNX): which parts of the fitted preprocessing the graph computes
//! ([`graph_plan`]) and the matrix it takes as input ([`graph_input`]).
//!
//! A feature column's numeric steps (numeric imputation without groups, clipping, scaling,
//! `log1p`) are per-value functions, so a graph can compute them. Everything else stays outside
//! the graph: text fills, grouped fills, missing-value indicators, encodings, forward/backward
//! fills. A feature's numeric steps are in the graph when they come after the last outside step
//! that reads or makes that column; the graph's input holds, per feature, the value the column has
//! just before its first in-graph step (missing values as NaN).

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Array2;
use polars::prelude::*;

use crate::error::Result;
use crate::export::Manifest;
use crate::missing::FillValue;
use crate::scale::NormMethod;
use crate::stage::FittedStep;

/// One fitted step (or the part of it that is in the graph) as an element-wise operation over
/// every feature column (vectors have one entry per feature, in feature order; columns the step
/// does not touch get the operation's neutral values).
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnOp {
    /// `x = if isnan(x) && mask[j] { values[j] } else { x }` (numeric imputation).
    Fill {
        /// Columns filled.
        mask: Vec<bool>,
        /// Fill values (0 where not filled).
        values: Vec<f64>,
    },
    /// `x = clamp(x, lo[j], hi[j])`, NaN kept (−∞ / +∞ where not clipped).
    Clip {
        /// Lower bounds.
        lo: Vec<f64>,
        /// Upper bounds.
        hi: Vec<f64>,
    },
    /// `x = (x − center[j]) · inv_scale[j]` (0 and 1 where not scaled), as whet computes it.
    Affine {
        /// Subtracted.
        center: Vec<f64>,
        /// `1 / scale`, computed as whet does.
        inv_scale: Vec<f64>,
    },
    /// `x = ln(1 + x)` on the masked columns.
    Log1p {
        /// Columns transformed.
        mask: Vec<bool>,
    },
}

/// One step of a [`GraphPlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct GraphStep {
    /// Index in the manifest's fitted steps.
    pub step: usize,
    /// What it is (`impute`, `clip`, `normalize(zscore)`…).
    pub name: String,
    /// The features it changes.
    pub columns: Vec<String>,
    /// The operation.
    pub op: ColumnOp,
}

/// Which fitted steps a graph computes and which stay outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphPlan {
    /// The graph input's columns: the manifest's features, in order.
    pub features: Vec<String>,
    /// The in-graph steps, in order.
    pub steps: Vec<GraphStep>,
    /// The fitted steps (or parts of them) computed before the graph input, in words, one per
    /// step (`fitted step 2 encode: one-hot carrier, origin`).
    pub outside: Vec<String>,
}

/// Position of an effect within the fitted steps: `2 i` reads done before step `i` changes its
/// columns (indicators read the missing values before the fill), `2 i + 1` the step's changes.
type Pos = usize;

struct Effects {
    /// Outside effects (reads, writes, creations) per feature: the largest position.
    cut: Vec<Option<Pos>>,
}

impl Effects {
    fn touch(&mut self, index: &BTreeMap<&str, usize>, column: &str, pos: Pos) {
        if let Some(&j) = index.get(column) {
            let c = &mut self.cut[j];
            *c = Some(c.map_or(pos, |p| p.max(pos)));
        }
    }
    fn touch_prefix(&mut self, features: &[String], prefix: &str, pos: Pos) {
        for (j, f) in features.iter().enumerate() {
            if f.starts_with(prefix) {
                let c = &mut self.cut[j];
                *c = Some(c.map_or(pos, |p| p.max(pos)));
            }
        }
    }
    fn touch_all(&mut self, pos: Pos) {
        for c in &mut self.cut {
            *c = Some(c.map_or(pos, |p| p.max(pos)));
        }
    }
    /// True when feature `j`'s numeric op of step `i` comes after every outside effect on it.
    fn in_graph(&self, j: usize, i: usize) -> bool {
        self.cut[j].is_none_or(|c| c < 2 * i + 1)
    }
}

/// True when the impute step fills through groups (every fill then reads the group column).
fn grouped(f: &crate::missing::FittedImpute) -> bool {
    f.by.is_some() && f.fills.iter().any(|c| !c.groups.is_empty())
}

/// Which fitted steps of `manifest` a graph over its features can compute.
pub fn graph_plan(manifest: &Manifest) -> GraphPlan {
    let features = &manifest.features;
    let index: BTreeMap<&str, usize> = features
        .iter()
        .enumerate()
        .map(|(j, f)| (f.as_str(), j))
        .collect();
    let mut fx = Effects {
        cut: vec![None; features.len()],
    };
    for (i, step) in manifest.fitted.iter().enumerate() {
        let (read, write) = (2 * i, 2 * i + 1);
        match step {
            FittedStep::Exclude(cols) => cols.iter().for_each(|c| fx.touch(&index, c, write)),
            FittedStep::DropColumns(d) => d
                .dropped
                .iter()
                .for_each(|(c, _)| fx.touch(&index, c, write)),
            FittedStep::DropRows(_) | FittedStep::Fill(_) => fx.touch_all(write),
            FittedStep::Impute(f) => {
                for c in &f.indicators {
                    fx.touch(&index, c, read);
                    fx.touch(&index, &format!("{c}__missing"), write);
                }
                if grouped(f) {
                    if let Some(b) = &f.by {
                        fx.touch(&index, b, read);
                    }
                    f.fills
                        .iter()
                        .for_each(|c| fx.touch(&index, &c.column, write));
                } else {
                    for c in &f.fills {
                        if matches!(c.value, FillValue::Text(_)) {
                            fx.touch(&index, &c.column, write);
                        }
                    }
                }
            }
            FittedStep::Encode(e) => {
                for l in &e.one_hot {
                    fx.touch(&index, &l.column, write);
                    fx.touch_prefix(features, &format!("{}=", l.column), write);
                }
                for l in &e.ordinal {
                    fx.touch(&index, &l.column, write);
                }
                e.boolean.iter().for_each(|c| fx.touch(&index, c, write));
                for c in &e.dates {
                    fx.touch(&index, c, write);
                    fx.touch_prefix(features, &format!("{c}_"), write);
                }
            }
            FittedStep::Normalize(_) | FittedStep::Clip(_) => {}
        }
    }
    let d = features.len();
    let mut steps = Vec::new();
    let mut outside = Vec::new();
    for (i, step) in manifest.fitted.iter().enumerate() {
        let mut inside: Vec<String> = Vec::new();
        let mut out: Vec<String> = Vec::new();
        let place =
            |column: &str, inside: &mut Vec<String>, out: &mut Vec<String>| -> Option<usize> {
                match index.get(column) {
                    Some(&j) if fx.in_graph(j, i) => {
                        inside.push(column.to_string());
                        Some(j)
                    }
                    _ => {
                        out.push(column.to_string());
                        None
                    }
                }
            };
        let (name, op) = match step {
            FittedStep::Impute(f) if !grouped(f) => {
                let (mut mask, mut values) = (vec![false; d], vec![0.0; d]);
                for c in &f.fills {
                    if let FillValue::Number(v) = c.value {
                        if let Some(j) = place(&c.column, &mut inside, &mut out) {
                            mask[j] = true;
                            values[j] = v;
                        }
                    } else {
                        out.push(c.column.clone());
                    }
                }
                out.extend(f.indicators.iter().map(|c| format!("{c}__missing")));
                ("impute".to_string(), Some(ColumnOp::Fill { mask, values }))
            }
            FittedStep::Clip(c) => {
                let (mut lo, mut hi) = (vec![f64::NEG_INFINITY; d], vec![f64::INFINITY; d]);
                for (col, l, h) in &c.bounds {
                    if let Some(j) = place(col, &mut inside, &mut out) {
                        lo[j] = *l;
                        hi[j] = *h;
                    }
                }
                ("clip".to_string(), Some(ColumnOp::Clip { lo, hi }))
            }
            FittedStep::Normalize(n) => {
                let name = format!("normalize({:?})", n.method).to_lowercase();
                if n.method == NormMethod::Log1p {
                    let mut mask = vec![false; d];
                    for p in &n.columns {
                        if let Some(j) = place(&p.column, &mut inside, &mut out) {
                            mask[j] = true;
                        }
                    }
                    (name, Some(ColumnOp::Log1p { mask }))
                } else {
                    let (mut center, mut inv_scale) = (vec![0.0; d], vec![1.0; d]);
                    for p in &n.columns {
                        if let Some(j) = place(&p.column, &mut inside, &mut out) {
                            center[j] = p.center;
                            inv_scale[j] = 1.0 / p.scale;
                        }
                    }
                    (name, Some(ColumnOp::Affine { center, inv_scale }))
                }
            }
            other => (step_kind(other).to_string(), None),
        };
        if !inside.is_empty()
            && let Some(op) = op
        {
            steps.push(GraphStep {
                step: i,
                name: name.clone(),
                columns: inside,
                op,
            });
        }
        let whole = matches!(
            step,
            FittedStep::Encode(_)
                | FittedStep::Fill(_)
                | FittedStep::DropRows(_)
                | FittedStep::DropColumns(_)
                | FittedStep::Exclude(_)
        ) || matches!(step, FittedStep::Impute(f) if grouped(f));
        if whole {
            outside.push(format!("fitted step {i} {name}"));
        } else if !out.is_empty() {
            outside.push(format!("fitted step {i} {name}: {}", out.join(", ")));
        }
    }
    GraphPlan {
        features: features.clone(),
        steps,
        outside,
    }
}

fn step_kind(step: &FittedStep) -> &'static str {
    match step {
        FittedStep::Exclude(_) => "exclude",
        FittedStep::DropRows(_) => "drop_rows",
        FittedStep::DropColumns(_) => "drop_columns",
        FittedStep::Impute(_) => "impute (grouped)",
        FittedStep::Fill(_) => "fill",
        FittedStep::Normalize(_) => "normalize",
        FittedStep::Clip(_) => "clip",
        FittedStep::Encode(_) => "encode",
    }
}

/// The manifest's fitted steps with the parts in `plan`'s graph taken out.
fn outside_steps(manifest: &Manifest, plan: &GraphPlan) -> Vec<FittedStep> {
    let mut fitted = manifest.fitted.clone();
    for s in &plan.steps {
        let drop = |c: &str| s.columns.iter().any(|x| x == c);
        match &mut fitted[s.step] {
            FittedStep::Impute(f) => f
                .fills
                .retain(|c| !(drop(&c.column) && matches!(c.value, FillValue::Number(_)))),
            FittedStep::Clip(c) => c.bounds.retain(|(col, _, _)| !drop(col)),
            FittedStep::Normalize(n) => n.columns.retain(|p| !drop(&p.column)),
            _ => unreachable!("only numeric steps are in a graph"),
        }
    }
    fitted
}

/// The input of the graph [`graph_plan`] describes for `data` (the main table's rows, as for
/// [`crate::apply`]): the pre-split steps, then the fitted steps without their in-graph parts;
/// one `f64` column per feature, missing values as NaN.
///
/// # Errors
/// As [`crate::apply`].
///
/// # Shapes
/// `rows × features`.
pub fn graph_input(
    manifest: &Manifest,
    data: DataFrame,
    tables: &BTreeMap<String, DataFrame>,
) -> Result<Array2<f64>> {
    let plan = graph_plan(manifest);
    let fitted = outside_steps(manifest, &plan);
    let df = crate::pipeline::transform_with(manifest, &fitted, data, tables)?.frame;
    let n = df.height();
    let d = manifest.features.len();
    whet_core::budget::check(
        format!("the graph input ({n} rows x {d} features as f64)"),
        whet_core::budget::product(&[n as u64, d as u64, 8, 2]),
        "data.tables.*.limit",
    )?;
    let mut x = Array2::<f64>::zeros((n, d));
    for (j, f) in manifest.features.iter().enumerate() {
        let col = df
            .column(f)
            .expect("transform checked the features")
            .as_materialized_series()
            .cast(&DataType::Float64)?;
        for (r, v) in col.f64()?.iter().enumerate() {
            x[[r, j]] = v.unwrap_or(f64::NAN);
        }
    }
    Ok(x)
}

/// [`graph_input`] on a file, read as [`crate::apply_file`] reads it.
///
/// # Errors
/// Loading errors and those of [`graph_input`].
pub fn graph_input_file(manifest: &Manifest, data: &Path) -> Result<Array2<f64>> {
    let (df, tables) = crate::pipeline::load_new_data(manifest, data, &BTreeMap::new())?;
    graph_input(manifest, df, &tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::missing::{ColumnFill, FittedImpute};
    use crate::scale::{ColumnScale, FittedClip, FittedNormalize};

    fn fill(c: &str, v: f64) -> ColumnFill {
        ColumnFill {
            column: c.into(),
            value: FillValue::Number(v),
            groups: BTreeMap::new(),
        }
    }

    #[test]
    fn numeric_steps_after_the_last_outside_step_are_in_the_graph() {
        // impute(a, b; indicator on a) → encode(one-hot k) → clip(a) → normalize(a, b, k=x).
        let fitted = vec![
            FittedStep::Impute(FittedImpute {
                fills: vec![fill("a", 1.5), fill("b", 2.0)],
                by: None,
                indicators: vec!["a".into()],
            }),
            FittedStep::Encode(crate::encode::FittedEncode {
                one_hot: vec![crate::encode::Levels {
                    column: "k".into(),
                    levels: vec!["x".into()],
                }],
                ordinal: vec![],
                boolean: vec![],
                dates: vec![],
                parts: vec![],
            }),
            FittedStep::Clip(FittedClip {
                bounds: vec![("a".into(), -1.0, 1.0)],
            }),
            FittedStep::Normalize(FittedNormalize {
                method: NormMethod::Zscore,
                columns: ["a", "b", "k=x"]
                    .map(|c| ColumnScale {
                        column: c.into(),
                        center: 1.0,
                        scale: 4.0,
                    })
                    .to_vec(),
            }),
        ];
        let features: Vec<String> = ["a", "b", "a__missing", "k=x", "k=__other__"]
            .map(String::from)
            .to_vec();
        let manifest = test_manifest(fitted, features);
        let plan = graph_plan(&manifest);
        let names: Vec<(&str, Vec<&str>)> = plan
            .steps
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.columns.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("impute", vec!["a", "b"]),
                ("clip", vec!["a"]),
                ("normalize(zscore)", vec!["a", "b", "k=x"]),
            ]
        );
        assert_eq!(
            plan.steps[0].op,
            ColumnOp::Fill {
                mask: vec![true, true, false, false, false],
                values: vec![1.5, 2.0, 0.0, 0.0, 0.0]
            }
        );
        assert_eq!(
            plan.steps[2].op,
            ColumnOp::Affine {
                center: vec![1.0, 1.0, 0.0, 1.0, 0.0],
                inv_scale: vec![0.25, 0.25, 1.0, 0.25, 1.0]
            }
        );
        assert_eq!(
            plan.outside,
            ["fitted step 0 impute: a__missing", "fitted step 1 encode"]
        );
        // Without the in-graph parts, the steps keep only the outside work.
        let outside = outside_steps(&manifest, &plan);
        match &outside[0] {
            FittedStep::Impute(f) => {
                assert!(f.fills.is_empty());
                assert_eq!(f.indicators, ["a"]);
            }
            s => panic!("{s:?}"),
        }
        match &outside[3] {
            FittedStep::Normalize(n) => assert!(n.columns.is_empty()),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn a_numeric_step_before_an_outside_one_on_the_same_column_stays_outside() {
        // normalize(a) then an ordinal encoding of a: the scaling is not in the graph.
        let fitted = vec![
            FittedStep::Normalize(FittedNormalize {
                method: NormMethod::Zscore,
                columns: vec![ColumnScale {
                    column: "a".into(),
                    center: 0.0,
                    scale: 2.0,
                }],
            }),
            FittedStep::Encode(crate::encode::FittedEncode {
                one_hot: vec![],
                ordinal: vec![crate::encode::Levels {
                    column: "a".into(),
                    levels: vec![],
                }],
                boolean: vec![],
                dates: vec![],
                parts: vec![],
            }),
        ];
        let plan = graph_plan(&test_manifest(fitted, vec!["a".into()]));
        assert!(plan.steps.is_empty());
        assert_eq!(
            plan.outside,
            ["fitted step 0 normalize(zscore): a", "fitted step 1 encode"]
        );
    }

    fn test_manifest(fitted: Vec<FittedStep>, features: Vec<String>) -> Manifest {
        let json = r#"{"tables": {"t": "t.csv"}, "main": "t", "target": {"column": "y"}}"#;
        let data: crate::TablesConfig = serde_json::from_str(json).unwrap();
        Manifest {
            format: crate::MANIFEST_FORMAT.into(),
            seed: 1,
            data,
            pre_split: vec![],
            split: crate::SplitConfig::default(),
            fold: None,
            target: crate::TargetKind::Binary {
                column: "y".into(),
                threshold: 0.5,
            },
            classes: vec![],
            target_scale: None,
            fitted,
            features,
            unused_columns: vec![],
            input_schema: vec![],
            rows: Default::default(),
            files: vec![],
        }
    }
}
