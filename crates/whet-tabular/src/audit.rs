//! Input audit: columns with too many missing values, columns that leak the target, ID-like
//! columns, constant columns and high-cardinality text columns, each flag with its reason and the
//! measured value.
//!
//! Leakage is measured two ways:
//! - *strength*: for a binary or class target the univariate ROC AUC of each numeric column
//!   (`max(auc, 1 - auc)`, ties ranked by their average, Mann–Whitney U / (n₀n₁) — Hanley &
//!   McNeil 1982), for a threshold target also `|Pearson r|` with the thresholded source column,
//!   for regression `|Pearson r|`; flagged when `>= leakage`;
//! - *derivation*: the fraction of rows on which the target's source column equals another
//!   column, or the difference of two columns, exactly; clock columns written `HHMM` are compared
//!   in minutes modulo 24 h (so `arr_delay = arr_time - sched_arr_time` is found even across
//!   midnight). The minuend is flagged. Checked on the first 100,000 labelled rows.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use whet_core::Probability;

use crate::error::Result;
use crate::stage::{f64_column, is_numeric};
use crate::target::TargetKind;

/// Kinds of flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Missing rate above `max_missing`.
    Missing,
    /// Predicts or reproduces the target (almost) perfectly.
    Leakage,
    /// Unique per row, or a running number.
    IdLike,
    /// One distinct value (or none).
    Constant,
    /// A text column with more than `max_levels` distinct values.
    HighCardinality,
}

fn p(v: f64) -> Probability {
    Probability::new(v).expect("constant in range")
}
fn default_max_missing() -> Probability {
    p(0.4)
}
fn default_leakage() -> Probability {
    p(0.95)
}
fn default_id_unique() -> Probability {
    p(0.99)
}
fn default_max_levels() -> usize {
    50
}

/// `- audit: { max_missing: 0.4, leakage: 0.95, fail_on: [leakage] }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Flag columns missing more than this fraction. Default 0.4.
    #[serde(default = "default_max_missing")]
    pub max_missing: Probability,
    /// Flag a column whose AUC / |r| with the target, or whose share of rows reproducing the
    /// target, is at least this. Default 0.95.
    #[serde(default = "default_leakage")]
    pub leakage: Probability,
    /// Flag text/integer columns whose distinct share of non-missing values is at least this as
    /// ID-like. Default 0.99.
    #[serde(default = "default_id_unique")]
    pub id_unique: Probability,
    /// Flag text columns with more distinct values than this. Default 50.
    #[serde(default = "default_max_levels")]
    pub max_levels: usize,
    /// Flag kinds that stop the run. Default none.
    #[serde(default)]
    pub fail_on: Vec<FlagKind>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_missing: default_max_missing(),
            leakage: default_leakage(),
            id_unique: default_id_unique(),
            max_levels: default_max_levels(),
            fail_on: vec![],
        }
    }
}

/// One flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditFlag {
    /// The column.
    pub column: String,
    /// Kind.
    pub kind: FlagKind,
    /// Why, in words.
    pub reason: String,
    /// The measured value (rate, AUC, |r|, share, count).
    pub value: f64,
}

/// Per-column measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// The column.
    pub column: String,
    /// Its type.
    pub dtype: String,
    /// Share of missing values.
    pub missing_rate: f64,
    /// Distinct non-missing values.
    pub distinct: usize,
    /// Univariate association with the target (AUC or |r|), numeric columns only.
    pub association: Option<f64>,
}

/// The audit of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Rows audited.
    pub rows: usize,
    /// The target's source column, if any.
    pub target: Option<String>,
    /// Flags, by column order.
    pub flags: Vec<AuditFlag>,
    /// Measurements of every column.
    pub columns: Vec<ColumnStats>,
}

impl AuditReport {
    /// Flags whose kind is in `kinds`.
    pub fn failing<'a>(
        &'a self,
        kinds: &'a [FlagKind],
    ) -> impl Iterator<Item = &'a AuditFlag> + 'a {
        self.flags.iter().filter(move |f| kinds.contains(&f.kind))
    }

    /// The flags as a plain-text table (column, kind, value, reason).
    pub fn to_table(&self) -> String {
        let mut out = format!("{:<24} {:<16} {:>10}  reason\n", "column", "flag", "value");
        for f in &self.flags {
            let kind = serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<24} {:<16} {:>10.4}  {}\n",
                f.column, kind, f.value, f.reason
            ));
        }
        out
    }
}

/// Average ranks (1-based) with ties sharing their mean rank.
fn auc(x: &[f64], y: &[bool]) -> Option<f64> {
    let n1 = y.iter().filter(|&&b| b).count();
    let n0 = y.len() - n1;
    if n1 == 0 || n0 == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * idx[i..=j].iter().filter(|&&k| y[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n1 * (n1 + 1)) as f64 / 2.0;
    let a = u / (n1 as f64 * n0 as f64);
    Some(a.max(1.0 - a))
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 3 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx * syy).sqrt()).abs())
}

/// A clock column: integers 0..=2400 whose last two digits are below 60.
fn is_clock(v: &[Option<f64>]) -> bool {
    let mut any = false;
    for x in v.iter().flatten() {
        any = true;
        if x.fract() != 0.0 || *x < 0.0 || *x > 2400.0 || x.rem_euclid(100.0) >= 60.0 {
            return false;
        }
    }
    any
}

fn minutes(x: f64) -> f64 {
    (x / 100.0).floor() * 60.0 + x.rem_euclid(100.0)
}

const DERIVE_ROWS: usize = 100_000;

/// Audits `df`. `target` is the target definition (its source column must be in `df`); without
/// it no leakage is measured.
///
/// # Errors
/// Only polars errors on casts.
pub fn audit_frame(
    df: &DataFrame,
    target: Option<&TargetKind>,
    cfg: &AuditConfig,
) -> Result<AuditReport> {
    let n = df.height();
    let mut flags = Vec::new();
    let mut stats = Vec::new();
    let tcol = target
        .map(|t| t.column().to_string())
        .filter(|c| df.column(c).is_ok());
    // Target values on labelled rows.
    let t_raw: Option<Float64Chunked> = match (&tcol, target) {
        (Some(c), Some(TargetKind::Binary { .. } | TargetKind::Regression { .. })) => {
            Some(f64_column(df, c, "audit")?)
        }
        _ => None,
    };
    let t_class: Option<StringChunked> = match (&tcol, target) {
        (Some(c), Some(TargetKind::Classification { .. })) => {
            let s = df
                .column(c)?
                .as_materialized_series()
                .cast(&DataType::String)?;
            Some(s.str()?.clone())
        }
        _ => None,
    };
    let mut numeric: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for col in df.columns() {
        let name = col.name().to_string();
        let s = col.as_materialized_series();
        let nn = n - s.null_count();
        let distinct = s.drop_nulls().n_unique()?;
        let missing_rate = if n == 0 {
            0.0
        } else {
            s.null_count() as f64 / n as f64
        };
        let is_target = Some(&name) == tcol.as_ref();
        let mut association = None;
        if !is_target && missing_rate > cfg.max_missing.get() {
            flags.push(AuditFlag {
                column: name.clone(),
                kind: FlagKind::Missing,
                reason: format!(
                    "{:.1} % missing (limit {:.1} %)",
                    missing_rate * 100.0,
                    cfg.max_missing.get() * 100.0
                ),
                value: missing_rate,
            });
        }
        if !is_target && distinct <= 1 {
            flags.push(AuditFlag {
                column: name.clone(),
                kind: FlagKind::Constant,
                reason: format!("{distinct} distinct value(s)"),
                value: distinct as f64,
            });
        }
        let idable = s.dtype() == &DataType::String || s.dtype().is_integer();
        let mut id_like = false;
        if !is_target && idable && nn >= 20 {
            let share = distinct as f64 / nn as f64;
            if share >= cfg.id_unique.get() {
                id_like = true;
                flags.push(AuditFlag {
                    column: name.clone(),
                    kind: FlagKind::IdLike,
                    reason: format!("{distinct} distinct values in {nn} rows"),
                    value: share,
                });
            } else if s.dtype().is_integer() && s.null_count() == 0 {
                let v = s.cast(&DataType::Int64)?;
                let v = v.i64()?;
                let step = v.get(1).zip(v.get(0)).map(|(b, a)| b - a).unwrap_or(0);
                let running = step != 0
                    && v.no_null_iter()
                        .zip(v.no_null_iter().skip(1))
                        .all(|(a, b)| b - a == step);
                if running {
                    id_like = true;
                    flags.push(AuditFlag {
                        column: name.clone(),
                        kind: FlagKind::IdLike,
                        reason: format!("a running number (step {step})"),
                        value: 1.0,
                    });
                }
            }
        }
        if !is_target && !id_like && s.dtype() == &DataType::String && distinct > cfg.max_levels {
            flags.push(AuditFlag {
                column: name.clone(),
                kind: FlagKind::HighCardinality,
                reason: format!("{distinct} distinct text values (limit {})", cfg.max_levels),
                value: distinct as f64,
            });
        }
        if !is_target && (is_numeric(s.dtype()) || s.dtype() == &DataType::Boolean) {
            let x = f64_column(df, &name, "audit")?;
            let xs: Vec<Option<f64>> = x.iter().collect();
            association = strength(&xs, t_raw.as_ref(), t_class.as_ref(), target);
            if let Some(a) = association
                && a >= cfg.leakage.get()
            {
                flags.push(AuditFlag {
                    column: name.clone(),
                    kind: FlagKind::Leakage,
                    reason: format!(
                        "alone predicts the target `{}` almost perfectly (AUC or |r| = {a:.4})",
                        tcol.as_deref().unwrap_or_default()
                    ),
                    value: a,
                });
            }
            if is_numeric(s.dtype()) {
                numeric.push((name.clone(), xs));
            }
        }
        stats.push(ColumnStats {
            column: name,
            dtype: s.dtype().to_string(),
            missing_rate,
            distinct,
            association,
        });
    }
    if let (Some(t), Some(tc)) = (&t_raw, &tcol) {
        derived(t, tc, &numeric, cfg.leakage.get(), &mut flags);
    }
    Ok(AuditReport {
        rows: n,
        target: tcol,
        flags,
        columns: stats,
    })
}

fn strength(
    xs: &[Option<f64>],
    t_raw: Option<&Float64Chunked>,
    t_class: Option<&StringChunked>,
    target: Option<&TargetKind>,
) -> Option<f64> {
    match target? {
        TargetKind::Binary { threshold, .. } => {
            let t = t_raw?;
            let (mut x, mut y, mut raw) = (Vec::new(), Vec::new(), Vec::new());
            for (a, b) in xs.iter().zip(t.iter()) {
                if let (Some(a), Some(b)) = (a, b) {
                    x.push(*a);
                    y.push(b > *threshold);
                    raw.push(b);
                }
            }
            let a = auc(&x, &y);
            let r = pearson(&x, &raw);
            match (a, r) {
                (Some(a), Some(r)) => Some(a.max(r)),
                (a, r) => a.or(r),
            }
        }
        TargetKind::Regression { .. } => {
            let t = t_raw?;
            let (mut x, mut raw) = (Vec::new(), Vec::new());
            for (a, b) in xs.iter().zip(t.iter()) {
                if let (Some(a), Some(b)) = (a, b) {
                    x.push(*a);
                    raw.push(b);
                }
            }
            pearson(&x, &raw)
        }
        TargetKind::Classification { .. } => {
            let t = t_class?;
            let classes: std::collections::BTreeSet<&str> = t.iter().flatten().collect();
            let mut best: Option<f64> = None;
            for c in classes {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                for (a, b) in xs.iter().zip(t.iter()) {
                    if let (Some(a), Some(b)) = (a, b) {
                        x.push(*a);
                        y.push(b == c);
                    }
                }
                if let Some(a) = auc(&x, &y) {
                    best = Some(best.map_or(a, |b| b.max(a)));
                }
            }
            best
        }
    }
}

fn derived(
    t: &Float64Chunked,
    tcol: &str,
    numeric: &[(String, Vec<Option<f64>>)],
    threshold: f64,
    flags: &mut Vec<AuditFlag>,
) {
    let rows: Vec<usize> = t
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|_| i))
        .take(DERIVE_ROWS)
        .collect();
    if rows.is_empty() {
        return;
    }
    let tv: Vec<f64> = rows.iter().map(|&i| t.get(i).unwrap_or(f64::NAN)).collect();
    let cols: Vec<(&str, Vec<Option<f64>>, bool)> = numeric
        .iter()
        .map(|(n, v)| {
            let sub: Vec<Option<f64>> = rows.iter().map(|&i| v[i]).collect();
            let clock = is_clock(&sub);
            (n.as_str(), sub, clock)
        })
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs());
    for (ci, (cn, cv, cclock)) in cols.iter().enumerate() {
        // Copy of the target.
        let same = tv
            .iter()
            .zip(cv)
            .filter(|(t, c)| c.is_some_and(|c| close(**t, c)))
            .count();
        let mut best = (same as f64 / tv.len() as f64, format!("equals `{tcol}`"));
        for (di, (dn, dv, dclock)) in cols.iter().enumerate() {
            if di == ci {
                continue;
            }
            let clock = *cclock && *dclock;
            let hits = tv
                .iter()
                .zip(cv.iter().zip(dv))
                .filter(|(t, (c, d))| match (c, d) {
                    (Some(c), Some(d)) if clock => {
                        (**t - (minutes(*c) - minutes(*d))).rem_euclid(1440.0).abs() < 1e-6
                    }
                    (Some(c), Some(d)) => close(**t, c - d),
                    _ => false,
                })
                .count();
            let share = hits as f64 / tv.len() as f64;
            if share > best.0 {
                let how = if clock {
                    " (clock times in minutes, modulo 24 h)"
                } else {
                    ""
                };
                best = (share, format!("`{tcol}` = `{cn}` - `{dn}`{how}"));
            }
        }
        if best.0 >= threshold {
            flags.push(AuditFlag {
                column: cn.to_string(),
                kind: FlagKind::Leakage,
                reason: format!(
                    "derived from the target: {} on {:.1} % of rows",
                    best.1,
                    best.0 * 100.0
                ),
                value: best.0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_values() {
        assert_eq!(
            auc(&[1.0, 2.0, 3.0, 4.0], &[false, false, true, true]),
            Some(1.0)
        );
        // One swapped pair out of four: 3/4.
        assert_eq!(
            auc(&[1.0, 3.0, 2.0, 4.0], &[false, true, false, true]),
            Some(1.0)
        );
        assert_eq!(
            auc(&[1.0, 2.0, 3.0, 4.0], &[false, true, false, true]),
            Some(0.75)
        );
        // All tied: 0.5.
        assert_eq!(auc(&[1.0, 1.0], &[false, true]), Some(0.5));
    }

    #[test]
    fn flags_each_kind() {
        let n = 40;
        let df = df!(
            "id" => (0..n as i64).collect::<Vec<_>>(),
            "const" => vec![7i64; n],
            "sparse" => (0..n).map(|i| (i % 2 == 0).then_some(1.0)).collect::<Vec<_>>(),
            "copy" => (0..n).map(|i| i as f64 * 2.0).collect::<Vec<_>>(),
            "noise" => (0..n).map(|i| ((i * 7919) % 13) as f64).collect::<Vec<_>>(),
            "y" => (0..n).map(|i| i as f64 * 2.0).collect::<Vec<_>>(),
        )
        .unwrap();
        let kind = TargetKind::Binary {
            column: "y".into(),
            threshold: 30.0,
        };
        let r = audit_frame(&df, Some(&kind), &AuditConfig::default()).unwrap();
        let has = |c: &str, k: FlagKind| r.flags.iter().any(|f| f.column == c && f.kind == k);
        assert!(has("id", FlagKind::IdLike));
        assert!(has("const", FlagKind::Constant));
        assert!(has("sparse", FlagKind::Missing));
        assert!(has("copy", FlagKind::Leakage));
        assert!(!r.flags.iter().any(|f| f.column == "noise"));
        assert!(r.to_table().contains("copy"));
    }

    #[test]
    fn finds_clock_difference_modulo_midnight() {
        // t = arr - sched in minutes, with one flight crossing midnight (2350 -> 0010 = +20).
        let df = df!(
            "arr" => [1000i64, 1215, 10, 1400],
            "sched" => [950i64, 1200, 2350, 1430],
            "t" => [10.0, 15.0, 20.0, -30.0],
        )
        .unwrap();
        let kind = TargetKind::Regression { column: "t".into() };
        let r = audit_frame(&df, Some(&kind), &AuditConfig::default()).unwrap();
        let f = r
            .flags
            .iter()
            .find(|f| f.column == "arr" && f.kind == FlagKind::Leakage)
            .unwrap();
        assert_eq!(f.value, 1.0);
        assert!(f.reason.contains("`sched`"), "{}", f.reason);
        assert!(
            !r.flags
                .iter()
                .any(|f| f.column == "sched" && f.kind == FlagKind::Leakage)
        );
    }
}
