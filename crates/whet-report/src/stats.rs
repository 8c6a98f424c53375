//! Statistics over seeds: mean, standard deviation, Student-t confidence intervals, and paired
//! differences against the baseline.
//!
//! The Student t distribution function is computed through the regularised incomplete beta
//! function, `P(T > t) = I_x(ν/2, 1/2) / 2` with `x = ν / (ν + t²)` (Abramowitz & Stegun,
//! *Handbook of Mathematical Functions*, 26.7.1 and 26.5.27), evaluated with the continued
//! fraction and the modified Lentz method (Press et al., *Numerical Recipes*, 3rd ed., §6.4).
//! `ln Γ` uses the Lanczos approximation (Lanczos 1964, g = 7, the 9 coefficients of Godfrey).
//! Quantiles are found by bisection on that function, so they are as precise as the CDF.
//!
//! Verdicts across the variants of one study are adjusted for multiplicity with Holm's step-down
//! method (Holm, "A simple sequentially rejective multiple test procedure", *Scandinavian Journal
//! of Statistics* 6, 1979): with `m` paired tests, the `i`-th smallest p-value is multiplied by
//! `m − i + 1`, and the adjusted values are made non-decreasing in that order. It controls the
//! chance of any false "helps"/"hurts" among the `m` at 5 %, whatever their dependence.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record::{AblationInput, RunRecord, RunStatus};

/// Natural log of the gamma function, for `x > 0`.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function `I_x(a, b)`, for `a, b > 0`, `x` in `[0, 1]` and
/// `y = 1 − x` computed by the caller: when `x` is close to 1, `1 − x` taken from it keeps few
/// correct digits (the t tail near `t = 0`).
fn inc_beta(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    let ln_x = if y < 0.5 { (-y).ln_1p() } else { x.ln() };
    let ln_y = if x < 0.5 { (-x).ln_1p() } else { y.ln() };
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * ln_x + b * ln_y;
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    // I_x(a, b) = 1 − I_{1−x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, y) / b
    }
}

/// Upper tail `P(T > t)` of Student's t with `df` degrees of freedom, for `t >= 0`.
fn t_upper_tail(t: f64, df: f64) -> f64 {
    // x = df / (df + t²) and 1 − x = t² / (df + t²), each computed directly: near t = 0 the
    // second taken from the first would lose the digits that make the tail differ from 1/2.
    let t2 = t * t;
    0.5 * inc_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))
}

/// Cumulative distribution function of Student's t with `df > 0` degrees of freedom.
///
/// # Panics
/// If `df` is not positive and finite (a programmer error).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    assert!(
        df > 0.0 && df.is_finite(),
        "t_cdf: df must be positive, got {df}"
    );
    if t.is_nan() {
        return f64::NAN;
    }
    let tail = t_upper_tail(t.abs(), df);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// Quantile (inverse CDF) of Student's t: the `t` with `P(T ≤ t) = p`.
///
/// Precise to about 1e-12 relative; `t_quantile(0.975, 10.0)` is 2.228 138 85….
///
/// # Panics
/// If `p` is not strictly between 0 and 1 or `df` is not positive and finite (programmer errors:
/// confidence levels are constants in this crate).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(
        p > 0.0 && p < 1.0,
        "t_quantile: p must be in (0, 1), got {p}"
    );
    assert!(
        df > 0.0 && df.is_finite(),
        "t_quantile: df must be positive, got {df}"
    );
    if p == 0.5 {
        return 0.0;
    }
    // Solve P(T > t) = tail for t > 0; the tail is decreasing in t.
    let tail = if p > 0.5 { 1.0 - p } else { p };
    let mut hi = 1.0;
    while t_upper_tail(hi, df) > tail {
        hi *= 2.0;
        if hi > 1e300 {
            break;
        }
    }
    let mut lo = 0.0;
    for _ in 0..2_000 {
        let mid = 0.5 * (lo + hi);
        if t_upper_tail(mid, df) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi {
            break;
        }
    }
    let t = 0.5 * (lo + hi);
    if p > 0.5 { t } else { -t }
}

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies in the interval (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Mean, sample standard deviation and 95 % confidence interval of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Describe {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean; `None` for an empty sample.
    pub mean: Option<f64>,
    /// Sample standard deviation (divisor `n − 1`); `None` below two values.
    pub sd: Option<f64>,
    /// Standard error of the mean: `sd / √n`, or for the folds of cross-validation
    /// ([`describe_folds`]) `sd · √(1/n + n₂/n₁)`; `None` below two values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se: Option<f64>,
    /// 95 % confidence interval of the mean, `mean ± t(0.975, n − 1) · se`; `None` below
    /// two values.
    pub ci95: Option<Interval>,
}

/// Describes a sample. Non-finite values must have been removed by the caller.
pub fn describe(values: &[f64]) -> Describe {
    describe_with(values, None)
}

/// Describes the per-fold results of cross-validation (`n` values from `k`-fold splits,
/// possibly repeated, or several seeds' k-fold runs), whose training sets overlap, so the values
/// are positively correlated and the plain `sd / √n` understates the uncertainty. The standard
/// error is Nadeau & Bengio's corrected one (2003, "Inference for the generalization error"):
/// `sd · √(1/n + n₂/n₁)`, with `n₂/n₁` = test rows over training rows (`test_train_ratio`), as
/// in Bouckaert & Frank's corrected repeated k-fold test (2004); the interval is
/// `mean ± t(0.975, n − 1) · se`.
pub fn describe_folds(values: &[f64], test_train_ratio: f64) -> Describe {
    describe_with(values, Some(test_train_ratio))
}

fn describe_with(values: &[f64], test_train_ratio: Option<f64>) -> Describe {
    let n = values.len();
    if n == 0 {
        return Describe {
            n,
            mean: None,
            sd: None,
            se: None,
            ci95: None,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Describe {
            n,
            mean: Some(mean),
            sd: None,
            se: None,
            ci95: None,
        };
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    let se = sd * (1.0 / n as f64 + test_train_ratio.unwrap_or(0.0).max(0.0)).sqrt();
    let half = t_quantile(0.975, (n - 1) as f64) * se;
    Describe {
        n,
        mean: Some(mean),
        sd: Some(sd),
        se: Some(se),
        ci95: Some(Interval {
            low: mean - half,
            high: mean + half,
        }),
    }
}

/// The plain-words reading of a variant's paired difference on the primary metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// This is the baseline.
    Baseline,
    /// The 95 % interval of the difference lies entirely on the better side of zero.
    Helps,
    /// The 95 % interval of the difference lies entirely on the worse side of zero.
    Hurts,
    /// The 95 % interval of the difference contains zero.
    NoClearEffect,
    /// Fewer than two seeds where both the variant and the baseline ran ok.
    TooFewRuns,
}

impl Verdict {
    /// The words used in `report.md`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Baseline => "baseline",
            Verdict::Helps => "helps",
            Verdict::Hurts => "hurts",
            Verdict::NoClearEffect => "no clear effect",
            Verdict::TooFewRuns => "too few paired runs",
        }
    }

    /// Reads a paired difference: `Helps`/`Hurts` when its 95 % interval excludes zero.
    pub fn from_delta(delta: &Describe, higher_is_better: bool) -> Verdict {
        match (delta.mean, delta.ci95) {
            (Some(mean), Some(ci)) if !ci.contains(0.0) => {
                if (mean > 0.0) == higher_is_better {
                    Verdict::Helps
                } else {
                    Verdict::Hurts
                }
            }
            (Some(_), Some(_)) => Verdict::NoClearEffect,
            _ => Verdict::TooFewRuns,
        }
    }
}

/// The level every verdict is judged at: 95 % intervals, two-sided tests at 5 %.
pub const ALPHA: f64 = 0.05;

/// Two-sided p-value of the paired t test of a difference against zero: `2 · P(T > |t|)` with
/// `t = mean / se` ([`Describe::se`]: `sd / √n`, corrected for cross-validation's folds) and
/// `n − 1` degrees of freedom. `None` below two pairs. When every
/// difference is equal (`sd = 0`), the test degenerates: 1 when they are all 0, else 0 (the
/// interval is the single point `mean`, which excludes zero).
pub fn paired_p(delta: &Describe) -> Option<f64> {
    let (mean, sd) = (delta.mean?, delta.sd?);
    if delta.n < 2 {
        return None;
    }
    if sd == 0.0 {
        return Some(if mean == 0.0 { 1.0 } else { 0.0 });
    }
    let se = delta.se.unwrap_or(sd / (delta.n as f64).sqrt());
    let t = mean / se;
    Some((2.0 * t_upper_tail(t.abs(), (delta.n - 1) as f64)).clamp(0.0, 1.0))
}

/// Holm–Bonferroni adjusted p-values, in the order given; `None` entries (tests that could not
/// be made) are not counted among the `m` tests and stay `None`.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<(usize, f64)> = p
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    // Ties keep their input order, so the result does not depend on the sort's stability.
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let m = order.len();
    let mut out = vec![None; p.len()];
    let mut running = 0.0f64;
    for (rank, (i, p)) in order.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        out[i] = Some(running);
    }
    out
}

/// A metric other than the primary one whose paired interval excludes zero while the primary
/// metric's verdict is *no clear effect*: a change the headline would hide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondaryEffect {
    /// The metric (`loss`, `balanced_accuracy`…).
    pub metric: String,
    /// Whether the change is for the better (by the metric's own direction).
    pub better: bool,
    /// The paired difference variant − baseline.
    pub delta: Describe,
}

/// The variant a report that chooses on validation picked, and what it scores on the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    /// The variant with the best mean validation value of the primary metric.
    pub variant: String,
    /// Its primary metric on the validation split, over its ok runs.
    pub validation: Describe,
    /// Its primary metric on the test set, over its ok runs: the number to quote.
    pub test: Describe,
}

/// Picks the variant with the best mean primary metric in `on_validation` (summaries of the
/// runs' validation metrics; ties go to the earlier variant) and describes its test numbers
/// from `on_test`.
pub fn choose(
    input: &AblationInput,
    on_validation: &[VariantSummary],
    on_test: &[VariantSummary],
) -> Option<Chosen> {
    let sign = if input.higher_is_better { 1.0 } else { -1.0 };
    let mut best: Option<(f64, &VariantSummary)> = None;
    for s in on_validation {
        let Some(mean) = s.metric(&input.primary_metric).and_then(|m| m.value.mean) else {
            continue;
        };
        if best.is_none_or(|(b, _)| sign * mean > sign * b) {
            best = Some((mean, s));
        }
    }
    let (_, v) = best?;
    let test = on_test
        .iter()
        .find(|t| t.name == v.name)?
        .metric(&input.primary_metric)?
        .value;
    Some(Chosen {
        variant: v.name.clone(),
        validation: v.metric(&input.primary_metric)?.value,
        test,
    })
}

/// The warning for a validation split too small for the differences an ablation judges, or
/// `None`. Applies when the validation split decides something in the runs (early stopping,
/// a threshold, the choice among variants) and the primary metric is a fraction (accuracy
/// and the like). The rule: with `n` validation examples and the baseline's mean `p`, one
/// run's validation value has a standard error of about `√(p(1−p)/n)`; the differences the
/// report can tell apart are about `h`, the median half-width of the variants' paired 95 %
/// intervals. When the standard error is at least `h / 2`, the split decides on noise as large
/// as the differences judged. The advice is the `n` that brings it to `h / 4`:
/// `p(1−p)·(4/h)²`.
pub fn validation_warning(input: &AblationInput, summaries: &[VariantSummary]) -> Option<String> {
    let mut decides = input.validation_decides.clone();
    if input.chooses_on_validation() {
        decides.push("the choice among the variants".into());
    }
    if decides.is_empty() || !crate::format::is_percent_metric(&input.primary_metric) {
        return None;
    }
    let n = input
        .runs
        .iter()
        .filter_map(|r| r.validation_samples)
        .min()
        .filter(|&n| n > 0)?;
    let p = summaries
        .first()?
        .metric(&input.primary_metric)?
        .value
        .mean?
        .clamp(0.0, 1.0);
    let mut deltas: Vec<f64> = summaries
        .iter()
        .skip(1)
        .filter_map(|s| s.metric(&input.primary_metric)?.delta?.ci95)
        .map(|ci| (ci.high - ci.low) / 2.0)
        .filter(|d| d.is_finite() && *d > 0.0)
        .collect();
    if deltas.is_empty() {
        return None;
    }
    deltas.sort_by(f64::total_cmp);
    let mid = deltas.len() / 2;
    let median = if deltas.len() % 2 == 1 {
        deltas[mid]
    } else {
        0.5 * (deltas[mid - 1] + deltas[mid])
    };
    let se = (p * (1.0 - p) / n as f64).sqrt();
    if se < median / 2.0 {
        return None;
    }
    let need = (p * (1.0 - p) * (4.0 / median).powi(2)).ceil();
    let what = match decides.as_slice() {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => unreachable!("not empty"),
    };
    let also = if input
        .validation_decides
        .iter()
        .any(|d| d == "early stopping")
    {
        " Or let less rest on it: `train.early_stopping.min_epochs`, a larger `patience`, or no \
         early stopping."
    } else {
        ""
    };
    Some(format!(
        "The validation split ({n} examples) decides {what}, but it is small for the differences \
         judged here: one run's validation {m} has a standard error of about {:.2} points \
         (√(p(1−p)/n) at the baseline's {:.2} %), at least half the differences this report can \
         tell apart (±{:.2} points, the median half-width of the paired 95 % intervals). Runs \
         then stop, or are chosen, on noise as large as the differences judged (the rule: warn \
         when √(p(1−p)/n) ≥ h / 2 for that half-width h). With about {need} validation examples \
         the standard error would be h / 4.{also}",
        100.0 * se,
        100.0 * p,
        100.0 * median,
        m = input.primary_metric,
    ))
}

/// One metric of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// The metric over the variant's ok runs that report it (finite values only).
    pub value: Describe,
    /// The paired difference `variant − baseline` over the seeds where both ran ok and report
    /// the metric; its interval uses the paired t test. `None` for the baseline itself.
    pub delta: Option<Describe>,
}

/// Everything the report says about one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    /// The variant's name.
    pub name: String,
    /// What it changes.
    pub description: String,
    /// Number of runs (any status).
    pub runs: usize,
    /// Runs that finished ok.
    pub ok: usize,
    /// Runs that diverged.
    pub diverged: usize,
    /// Runs that failed.
    pub failed: usize,
    /// Mean training time of the ok runs, in seconds.
    pub mean_train_seconds: Option<f64>,
    /// Per metric, in the order of [`AblationInput::metric_names`] (primary first).
    pub metrics: BTreeMap<String, MetricSummary>,
    /// Two-sided p-value of the paired t test on the primary metric (`None` for the baseline
    /// and below two pairs).
    pub p_value: Option<f64>,
    /// `p_value` adjusted with Holm's method across the study's variants.
    pub p_holm: Option<f64>,
    /// The verdict on the primary metric from its own 95 % interval, before adjusting for the
    /// number of variants compared.
    pub unadjusted: Verdict,
    /// The verdict on the primary metric after Holm's adjustment (`helps`/`hurts` only when the
    /// adjusted p-value is below [`ALPHA`]); the report's headline and the effect chart use it.
    pub verdict: Verdict,
    /// Other metrics that changed clearly (95 % interval of the paired difference excludes 0)
    /// while the primary metric's verdict is *no clear effect*.
    pub secondary: Vec<SecondaryEffect>,
}

impl VariantSummary {
    /// The summary of the primary metric, if any run reported it.
    pub fn metric(&self, name: &str) -> Option<&MetricSummary> {
        self.metrics.get(name)
    }
}

/// Where a unit of comparison comes from: the seed, and the fold of a k-fold run.
type UnitKey = (u64, Option<usize>);

/// The units one run contributes to a comparison, keyed by fold: the run itself (`None`), or
/// each fold of a k-fold run.
fn units(run: &RunRecord) -> Vec<(Option<usize>, &BTreeMap<String, f64>)> {
    match &run.cross_validation {
        Some(c) => c.folds.iter().map(|f| (Some(f.fold), &f.metrics)).collect(),
        None => vec![(None, &run.metrics)],
    }
}

fn finite(metrics: &BTreeMap<String, f64>, metric: &str) -> Option<f64> {
    metrics.get(metric).copied().filter(|v| v.is_finite())
}

/// Summarises an ablation per variant (in declaration order): for each metric the mean, sd and
/// 95 % CI over ok runs, and the paired difference against the baseline over the seeds where both
/// ran ok; the training time and the diverged/failed counts. Runs with k-fold cross-validation
/// count each fold: values and pairs are over (seed, fold), described by [`describe_folds`]
/// with the runs' mean test/train ratio.
///
/// # Errors
/// The input is checked with [`AblationInput::validate`] first.
pub fn summarize(input: &AblationInput) -> Result<Vec<VariantSummary>> {
    input.validate()?;
    let metrics = input.metric_names();
    let baseline_name = &input.variants[0].name;
    let baseline: HashMap<UnitKey, &BTreeMap<String, f64>> = input
        .runs
        .iter()
        .filter(|r| &r.variant == baseline_name && r.status == RunStatus::Ok)
        .flat_map(|r| units(r).into_iter().map(move |(f, m)| ((r.seed, f), m)))
        .collect();
    let ratio = input.cross_validation().map(|(_, r)| r);
    let describe_units = |values: &[f64]| describe_with(values, ratio);
    let sorted = input.sorted_runs();
    let summaries = input
        .variants
        .iter()
        .enumerate()
        .map(|(vi, v)| {
            let runs: Vec<&RunRecord> = sorted
                .iter()
                .copied()
                .filter(|r| r.variant == v.name)
                .collect();
            let ok: Vec<&RunRecord> = runs
                .iter()
                .copied()
                .filter(|r| r.status == RunStatus::Ok)
                .collect();
            let count = |s| runs.iter().filter(|r| r.status == s).count();
            let times: Vec<f64> = ok
                .iter()
                .map(|r| r.train_seconds)
                .filter(|t| t.is_finite())
                .collect();
            let ok_units: Vec<(UnitKey, &BTreeMap<String, f64>)> = ok
                .iter()
                .flat_map(|r| units(r).into_iter().map(move |(f, m)| ((r.seed, f), m)))
                .collect();
            let per_metric: BTreeMap<String, MetricSummary> = metrics
                .iter()
                .map(|m| {
                    let values: Vec<f64> =
                        ok_units.iter().filter_map(|(_, u)| finite(u, m)).collect();
                    let delta = (vi > 0).then(|| {
                        let diffs: Vec<f64> = ok_units
                            .iter()
                            .filter_map(|(key, u)| {
                                let b = baseline.get(key).and_then(|b| finite(b, m))?;
                                Some(finite(u, m)? - b)
                            })
                            .collect();
                        describe_units(&diffs)
                    });
                    (
                        m.clone(),
                        MetricSummary {
                            value: describe_units(&values),
                            delta,
                        },
                    )
                })
                .collect();
            let primary = per_metric
                .get(&input.primary_metric)
                .and_then(|m| m.delta.as_ref());
            let verdict = match primary {
                None => Verdict::Baseline,
                Some(d) => Verdict::from_delta(d, input.higher_is_better),
            };
            VariantSummary {
                name: v.name.clone(),
                description: v.description.clone(),
                runs: runs.len(),
                ok: ok.len(),
                diverged: count(RunStatus::Diverged),
                failed: count(RunStatus::Failed),
                mean_train_seconds: describe(&times).mean,
                p_value: primary.and_then(paired_p),
                p_holm: None,
                unadjusted: verdict,
                verdict,
                secondary: vec![],
                metrics: per_metric,
            }
        })
        .collect::<Vec<_>>();
    Ok(adjust(input, summaries))
}

/// Fills in Holm's adjusted p-values and verdicts, then the secondary effects of variants whose
/// adjusted verdict is *no clear effect*.
fn adjust(input: &AblationInput, mut summaries: Vec<VariantSummary>) -> Vec<VariantSummary> {
    let p: Vec<Option<f64>> = summaries.iter().map(|s| s.p_value).collect();
    for (s, adjusted) in summaries.iter_mut().zip(holm(&p)) {
        s.p_holm = adjusted;
        s.verdict = match (s.unadjusted, adjusted) {
            (Verdict::Baseline | Verdict::TooFewRuns, _) | (_, None) => s.unadjusted,
            (_, Some(q)) if q < ALPHA => {
                let mean = s
                    .metrics
                    .get(&input.primary_metric)
                    .and_then(|m| m.delta.and_then(|d| d.mean))
                    .unwrap_or(0.0);
                if (mean > 0.0) == input.higher_is_better {
                    Verdict::Helps
                } else {
                    Verdict::Hurts
                }
            }
            _ => Verdict::NoClearEffect,
        };
        if s.verdict != Verdict::NoClearEffect {
            continue;
        }
        s.secondary = s
            .metrics
            .iter()
            .filter(|(name, _)| **name != input.primary_metric)
            .filter_map(|(name, m)| {
                let d = m.delta?;
                let higher = !input.lower_is_better.contains(name);
                let v = Verdict::from_delta(&d, higher);
                matches!(v, Verdict::Helps | Verdict::Hurts).then(|| SecondaryEffect {
                    metric: name.clone(),
                    better: v == Verdict::Helps,
                    delta: d,
                })
            })
            .collect();
    }
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::VariantInfo;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantiles_match_tables() {
        // Two-sided 95 % critical values from standard t tables (e.g. NIST/SEMATECH e-Handbook,
        // table 1.3.6.7.2), given there to 3 decimals; more digits from R's qt().
        for (df, want) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (3.0, 3.182_446_305),
            (4.0, 2.776_445_105),
            (10.0, 2.228_138_852),
            (30.0, 2.042_272_456),
            (1000.0, 1.962_339_081),
        ] {
            let got = t_quantile(0.975, df);
            assert!(close(got, want, 1e-8), "df {df}: {got} vs {want}");
            assert!(close(t_quantile(0.025, df), -want, 1e-8));
        }
        // Far out, t tends to the normal quantile 1.959964.
        assert!(close(t_quantile(0.975, 1e7), 1.959_963_985, 1e-6));
        assert!(close(t_quantile(0.995, 5.0), 4.032_142_984, 1e-8));
        assert_eq!(t_quantile(0.5, 3.0), 0.0);
    }

    #[test]
    fn t_cdf_known_values() {
        // df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/π.
        for t in [-5.0f64, -1.0, 0.0, 0.3, 2.0, 40.0] {
            let want = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!(close(t_cdf(t, 1.0), want, 1e-13), "t {t}");
        }
        // df = 2: F(t) = 1/2 + t / (2 √(2 + t²)).
        for t in [-3.0f64, 0.5, 7.0] {
            let want = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!(close(t_cdf(t, 2.0), want, 1e-13), "t {t}");
        }
    }

    /// Near p = 1/2 the quantile is tiny and the tail differs from 1/2 in digits that
    /// `1 − df / (df + t²)` loses (an input proptest found).
    #[test]
    fn quantile_inverts_cdf_near_the_median() {
        for (p, df) in [
            (0.499_995_844_681_287_66, 182.413_884_546_558_9),
            (0.500_001, 3.0),
        ] {
            let t = t_quantile(p, df);
            assert!((t_cdf(t, df) - p).abs() < 1e-12, "p {p} df {df}: t {t}");
        }
    }

    proptest! {
        #[test]
        fn quantile_inverts_cdf(p in 0.001f64..0.999, df in 1.0f64..200.0) {
            let t = t_quantile(p, df);
            prop_assert!((t_cdf(t, df) - p).abs() < 1e-10);
        }
    }

    #[test]
    fn describe_hand_computed() {
        // 1, 2, 3, 4: mean 2.5; variance 5/3; sd 1.290994; se 0.645497; t(0.975, 3) 3.182446;
        // half-width 3.182446 · 0.645497 = 2.054260.
        let d = describe(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(d.n, 4);
        assert!(close(d.mean.unwrap(), 2.5, 1e-12));
        assert!(close(d.sd.unwrap(), 1.290_994_448_7, 1e-9));
        let ci = d.ci95.unwrap();
        assert!(close(ci.low, 0.445_739_743, 1e-6), "{ci:?}");
        assert!(close(ci.high, 4.554_260_257, 1e-6), "{ci:?}");
        let one = describe(&[3.0]);
        assert_eq!((one.mean, one.sd, one.ci95), (Some(3.0), None, None));
        assert_eq!(describe(&[]).mean, None);
    }

    fn run(variant: &str, seed: u64, status: RunStatus, acc: Option<f64>) -> RunRecord {
        RunRecord {
            variant: variant.into(),
            seed,
            status,
            metrics: acc
                .map(|a| ("accuracy".to_string(), a))
                .into_iter()
                .collect(),
            validation: Default::default(),
            validation_samples: None,
            train_seconds: 2.0,
            curves: vec![],
            message: None,
            cross_validation: None,
        }
    }

    fn input(runs: Vec<RunRecord>) -> AblationInput {
        let v = |n: &str| VariantInfo {
            name: n.into(),
            description: format!("change {n}"),
        };
        AblationInput {
            title: "t".into(),
            pipeline: "p.yaml".into(),
            description: None,
            overrides: vec![],
            variants: vec![v("baseline"), v("better"), v("broken")],
            runs,
            primary_metric: "accuracy".into(),
            higher_is_better: true,
            lower_is_better: vec!["loss".into()],
            notes: vec![],
            choose_on_validation: false,
            validation_decides: vec![],
        }
    }

    #[test]
    fn describe_folds_widens_the_standard_error_by_the_stated_correction() {
        // 0.8, 0.7, 0.9, 0.8: mean 0.8, sd √(0.02/3); with n₂/n₁ = 0.25 the standard error is
        // sd·√(1/4 + 0.25) = sd·√0.5 (the plain one is sd·√0.25), t(0.975, 3) = 3.182446.
        let v = [0.8, 0.7, 0.9, 0.8];
        let sd = (0.02f64 / 3.0).sqrt();
        let d = describe_folds(&v, 0.25);
        assert!(close(d.mean.unwrap(), 0.8, 1e-12));
        assert!(close(d.se.unwrap(), sd * 0.5f64.sqrt(), 1e-12));
        let ci = d.ci95.unwrap();
        assert!(
            close(ci.high - 0.8, 3.182_446_3 * sd * 0.5f64.sqrt(), 1e-6),
            "{ci:?}"
        );
        assert!(close(describe(&v).se.unwrap(), sd / 2.0, 1e-12));
        // The p-value reads the same standard error: t = 0.8 / se.
        let p = paired_p(&d).unwrap();
        let t = 0.8 / (sd * 0.5f64.sqrt());
        assert!(close(p, 2.0 * (1.0 - t_cdf(t, 3.0)), 1e-9), "{p}");
        assert!(p > paired_p(&describe(&v)).unwrap());
    }

    /// Folds of k-fold runs pair by (seed, fold): a fold whose baseline is missing is not
    /// paired, and the same fold of another seed is not its pair.
    #[test]
    fn folds_pair_by_seed_and_fold() {
        use crate::record::{FoldRecord, FoldRecords};
        let cv = |variant: &str, seed: u64, values: &[(usize, f64)]| {
            let mut r = run(variant, seed, RunStatus::Ok, Some(0.0));
            r.cross_validation = Some(FoldRecords {
                test_train_ratio: 0.25,
                folds: values
                    .iter()
                    .map(|&(fold, a)| FoldRecord {
                        fold,
                        metrics: [("accuracy".to_string(), a)].into(),
                        validation: Default::default(),
                    })
                    .collect(),
            });
            r
        };
        let s = summarize(&input(vec![
            cv("baseline", 1, &[(0, 0.70), (1, 0.80)]),
            cv("baseline", 2, &[(0, 0.60), (1, 0.90)]),
            cv("better", 1, &[(0, 0.75), (1, 0.83), (2, 0.99)]),
            cv("better", 2, &[(0, 0.64), (1, 0.92)]),
        ]))
        .unwrap();
        let b = &s[1].metrics["accuracy"];
        // Values: all 5 folds; pairs: 4 (fold 2 of seed 1 has no baseline).
        assert_eq!(b.value.n, 5);
        let d = b.delta.unwrap();
        assert_eq!(d.n, 4);
        let want = describe_folds(&[0.05, 0.03, 0.04, 0.02], 0.25);
        assert!(close(d.mean.unwrap(), 0.035, 1e-12));
        assert!(close(d.se.unwrap(), want.se.unwrap(), 1e-12));
    }

    #[test]
    fn paired_delta_hand_computed() {
        use RunStatus::*;
        let s = summarize(&input(vec![
            run("baseline", 1, Ok, Some(0.90)),
            run("baseline", 2, Ok, Some(0.92)),
            run("baseline", 3, Ok, Some(0.91)),
            // Seed 4 has no baseline run: it counts for the mean but not for the delta.
            run("better", 4, Ok, Some(0.50)),
            run("better", 1, Ok, Some(0.93)),
            run("better", 2, Ok, Some(0.94)),
            run("better", 3, Ok, Some(0.92)),
            run("broken", 1, Diverged, None),
            run("broken", 2, Diverged, Some(0.1)),
            run("broken", 3, Failed, None),
        ]))
        .unwrap();
        assert_eq!(s.len(), 3);
        let base = &s[0].metrics["accuracy"];
        assert!(close(base.value.mean.unwrap(), 0.91, 1e-12));
        assert!(close(base.value.sd.unwrap(), 0.01, 1e-12));
        assert!(base.delta.is_none());
        assert_eq!(s[0].verdict, Verdict::Baseline);

        let better = &s[1].metrics["accuracy"];
        assert_eq!(better.value.n, 4);
        assert!(close(
            better.value.mean.unwrap(),
            (0.5 + 0.93 + 0.94 + 0.92) / 4.0,
            1e-12
        ));
        // Differences 0.03, 0.02, 0.01: mean 0.02, sd 0.01,
        // half-width 4.302653 · 0.01 / √3 = 0.024841.
        let d = better.delta.unwrap();
        assert_eq!(d.n, 3);
        assert!(close(d.mean.unwrap(), 0.02, 1e-12));
        assert!(close(d.sd.unwrap(), 0.01, 1e-12));
        let ci = d.ci95.unwrap();
        assert!(close(ci.low, 0.02 - 0.024_841_377, 1e-8), "{ci:?}");
        assert!(close(ci.high, 0.02 + 0.024_841_377, 1e-8), "{ci:?}");
        assert_eq!(s[1].verdict, Verdict::NoClearEffect);
        assert_eq!(s[1].mean_train_seconds, Some(2.0));

        let broken = &s[2];
        assert_eq!(
            (broken.runs, broken.ok, broken.diverged, broken.failed),
            (3, 0, 2, 1)
        );
        assert_eq!(broken.metrics["accuracy"].value.n, 0);
        assert_eq!(broken.metrics["accuracy"].delta.unwrap().n, 0);
        assert_eq!(broken.verdict, Verdict::TooFewRuns);
        assert_eq!(broken.mean_train_seconds, None);
    }

    proptest! {
        /// Whatever mix of statuses and non-finite metrics comes in, every number the summaries
        /// give is finite, intervals contain their mean, and the counts add up.
        #[test]
        fn summaries_are_finite_and_consistent(
            runs in proptest::collection::vec(
                (0usize..3, 0u64..5, 0u8..3, proptest::option::of(-1.0f64..1.0), any::<bool>()),
                0..40,
            )
        ) {
            let mut seen = std::collections::HashSet::new();
            let runs: Vec<RunRecord> = runs
                .into_iter()
                .filter(|(v, seed, ..)| seen.insert((*v, *seed)))
                .map(|(v, seed, st, acc, nan)| {
                    let status = [RunStatus::Ok, RunStatus::Diverged, RunStatus::Failed][st as usize];
                    let acc = if nan { acc.map(|_| f64::NAN) } else { acc };
                    run(["baseline", "better", "broken"][v], seed, status, acc)
                })
                .collect();
            let n_runs = runs.len();
            let inp = input(runs);
            // With no ok run reporting accuracy the input is rightly refused; skip those.
            prop_assume!(inp.validate().is_ok());
            let s = summarize(&inp).unwrap();
            prop_assert_eq!(s.iter().map(|v| v.runs).sum::<usize>(), n_runs);
            for v in &s {
                prop_assert_eq!(v.ok + v.diverged + v.failed, v.runs);
                for m in v.metrics.values() {
                    for d in std::iter::once(&m.value).chain(m.delta.as_ref()) {
                        for x in [d.mean, d.sd].into_iter().flatten() {
                            prop_assert!(x.is_finite());
                        }
                        if let (Some(mean), Some(ci)) = (d.mean, d.ci95) {
                            prop_assert!(ci.low.is_finite() && ci.high.is_finite());
                            prop_assert!(ci.low <= mean + 1e-12 && mean <= ci.high + 1e-12);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn paired_p_hand_computed() {
        // Differences 0.03, 0.02, 0.01: t = 0.02 / (0.01 / √3) = 2√3 with 2 df, and for 2 df
        // P(|T| > t) = 1 − t / √(t² + 2).
        let t = 2.0 * 3f64.sqrt();
        let want = 1.0 - t / (t * t + 2.0).sqrt();
        let p = paired_p(&describe(&[0.03, 0.02, 0.01])).unwrap();
        assert!(close(p, want, 1e-12), "{p} vs {want}");
        assert!(close(p, 0.074_180, 1e-5));
        assert_eq!(paired_p(&describe(&[0.0, 0.0, 0.0])), Some(1.0));
        assert_eq!(paired_p(&describe(&[0.01, 0.01])), Some(0.0));
        assert_eq!(paired_p(&describe(&[0.01])), None);
    }

    #[test]
    fn holm_hand_computed() {
        // Sorted 0.01, 0.03, 0.04 → 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04).
        let q = holm(&[Some(0.01), Some(0.04), None, Some(0.03)]);
        let want = [Some(0.03), Some(0.06), None, Some(0.06)];
        for (a, b) in q.iter().zip(want) {
            match (a, b) {
                (Some(a), Some(b)) => assert!(close(*a, b, 1e-12), "{q:?}"),
                (a, b) => assert_eq!(*a, b),
            }
        }
        // Capped at 1.
        assert_eq!(holm(&[Some(0.6), Some(0.7)]), vec![Some(1.0), Some(1.0)]);
        assert!(holm(&[]).is_empty());
    }

    fn run_with_loss(variant: &str, seed: u64, acc: f64, loss: f64) -> RunRecord {
        let mut r = run(variant, seed, RunStatus::Ok, Some(acc));
        r.metrics.insert("loss".into(), loss);
        r
    }

    #[test]
    fn holm_decides_the_verdict_and_hidden_changes_are_flagged() {
        // Both variants gain 0.04, 0.02, 0.03 over the baseline: alone, p = 0.035 (helps);
        // with two comparisons Holm gives 0.070 (no clear effect). `better` also raises the
        // loss clearly, which the flags must name; `broken` leaves the loss alone.
        let mut runs = vec![];
        for (seed, base) in [(1, 0.90), (2, 0.91), (3, 0.92)] {
            let gain = [0.04, 0.02, 0.03][seed as usize - 1];
            runs.push(run_with_loss("baseline", seed, base, 0.30));
            runs.push(run_with_loss(
                "better",
                seed,
                base + gain,
                0.30 + [0.05, 0.06, 0.07][seed as usize - 1],
            ));
            runs.push(run_with_loss("broken", seed, base + gain, 0.30));
        }
        let s = summarize(&input(runs)).unwrap();
        for v in &s[1..] {
            let p = v.p_value.unwrap();
            assert!(close(p, 0.035_098, 1e-5), "{p}");
            assert!(close(v.p_holm.unwrap(), 2.0 * p, 1e-12));
            assert_eq!(v.unadjusted, Verdict::Helps);
            assert_eq!(v.verdict, Verdict::NoClearEffect);
        }
        assert_eq!(s[0].verdict, Verdict::Baseline);
        assert_eq!(s[0].p_holm, None);
        assert_eq!(s[1].secondary.len(), 1, "{:?}", s[1].secondary);
        assert_eq!(s[1].secondary[0].metric, "loss");
        assert!(!s[1].secondary[0].better, "a higher loss is worse");
        assert!(s[2].secondary.is_empty());

        // With one variant, Holm changes nothing.
        let one: Vec<RunRecord> = (1..=3)
            .flat_map(|seed| {
                let base = 0.90;
                let gain = [0.04, 0.02, 0.03][seed as usize - 1];
                [
                    run("baseline", seed, RunStatus::Ok, Some(base)),
                    run("better", seed, RunStatus::Ok, Some(base + gain)),
                ]
            })
            .collect();
        let mut inp = input(one);
        inp.variants.truncate(2);
        let s = summarize(&inp).unwrap();
        assert_eq!(s[1].verdict, Verdict::Helps);
        assert_eq!(s[1].p_holm, s[1].p_value);
    }

    #[test]
    fn a_small_validation_split_is_warned_about_by_the_stated_rule() {
        // Baseline 0.90 on every seed; `better` and `broken` differ from it by −0.01, +0.01,
        // 0 around their means: sd 0.01, so each paired interval has the half-width
        // t(0.975, 2) · 0.01 / √3 = 0.024841 (the median h).
        let make = |n: usize, decides: &[&str]| {
            let mut runs = vec![];
            for seed in 1..=3 {
                let wobble = [-0.01, 0.01, 0.0][seed as usize - 1];
                runs.push(run("baseline", seed, RunStatus::Ok, Some(0.90)));
                runs.push(run("better", seed, RunStatus::Ok, Some(0.92 + wobble)));
                runs.push(run("broken", seed, RunStatus::Ok, Some(0.87 + wobble)));
            }
            for r in &mut runs {
                r.validation_samples = Some(n);
            }
            let mut inp = input(runs);
            inp.validation_decides = decides.iter().map(|d| d.to_string()).collect();
            inp
        };
        // √(0.9 · 0.1 / 200) = 0.0212 ≥ 0.0248 / 2: warned, and the advice is
        // 0.09 · (4 / 0.024841)² = 2333.6 → 2334 examples.
        let inp = make(200, &["early stopping"]);
        let w = validation_warning(&inp, &summarize(&inp).unwrap()).unwrap();
        assert!(
            w.contains("(200 examples) decides early stopping")
                && w.contains("about 2.12 points")
                && w.contains("(±2.48 points")
                && w.contains("With about 2334 validation examples"),
            "{w}"
        );
        // √(0.09 / 2000) = 0.0067 < 0.0125: no warning.
        let inp = make(2000, &["early stopping"]);
        assert_eq!(validation_warning(&inp, &summarize(&inp).unwrap()), None);
        // Nothing decided on validation: no warning, however small the split.
        let inp = make(20, &[]);
        assert_eq!(validation_warning(&inp, &summarize(&inp).unwrap()), None);
    }

    #[test]
    fn choosing_takes_the_best_validation_mean_and_quotes_its_test_numbers() {
        let mut runs = vec![];
        for seed in 1..=3 {
            for (v, val, test) in [
                ("baseline", 0.90, 0.89),
                ("better", 0.93, 0.91),
                ("broken", 0.95, 0.80),
            ] {
                let mut r = run(v, seed, RunStatus::Ok, Some(test + seed as f64 * 0.001));
                r.validation = [("accuracy".to_string(), val + seed as f64 * 0.001)].into();
                runs.push(r);
            }
        }
        let mut inp = input(runs);
        assert!(!inp.chooses_on_validation(), "only when asked");
        inp.choose_on_validation = true;
        assert!(inp.chooses_on_validation());
        let on_val = summarize(&inp.on_validation()).unwrap();
        let on_test = summarize(&inp).unwrap();
        let c = choose(&inp, &on_val, &on_test).unwrap();
        assert_eq!(
            c.variant, "broken",
            "best on validation, whatever its test numbers"
        );
        assert!(close(c.validation.mean.unwrap(), 0.952, 1e-12));
        assert!(close(c.test.mean.unwrap(), 0.802, 1e-12));
        assert_eq!(c.test.n, 3);
        // Lower is better: the lowest validation mean wins.
        inp.higher_is_better = false;
        assert_eq!(choose(&inp, &on_val, &on_test).unwrap().variant, "baseline");
    }

    #[test]
    fn verdict_follows_direction() {
        let d = describe(&[0.03, 0.02, 0.025]);
        assert_eq!(Verdict::from_delta(&d, true), Verdict::Helps);
        assert_eq!(Verdict::from_delta(&d, false), Verdict::Hurts);
        let d = describe(&[-0.03, -0.02, -0.025]);
        assert_eq!(Verdict::from_delta(&d, true), Verdict::Hurts);
        assert_eq!(
            Verdict::from_delta(&describe(&[0.1]), true),
            Verdict::TooFewRuns
        );
    }
}
