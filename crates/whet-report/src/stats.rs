//! Statistics over seeds: mean, standard deviation, Student-t confidence intervals, and paired
//! differences against the baseline.
//!
//! The Student t distribution function is computed through the regularised incomplete beta
//! function, `P(T > t) = I_x(ν/2, 1/2) / 2` with `x = ν / (ν + t²)` (Abramowitz & Stegun,
//! *Handbook of Mathematical Functions*, 26.7.1 and 26.5.27), evaluated with the continued
//! fraction and the modified Lentz method (Press et al., *Numerical Recipes*, 3rd ed., §6.4).
//! `ln Γ` uses the Lanczos approximation (Lanczos 1964, g = 7, the 9 coefficients of Godfrey).
//! Quantiles are found by bisection on that function, so they are as precise as the CDF.

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

/// The regularised incomplete beta function `I_x(a, b)`, for `a, b > 0` and `x` in `[0, 1]`.
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    // I_x(a, b) = 1 − I_{1−x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Upper tail `P(T > t)` of Student's t with `df` degrees of freedom, for `t >= 0`.
fn t_upper_tail(t: f64, df: f64) -> f64 {
    0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t))
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
    /// 95 % confidence interval of the mean, `mean ± t(0.975, n − 1) · sd / √n`; `None` below
    /// two values.
    pub ci95: Option<Interval>,
}

/// Describes a sample. Non-finite values must have been removed by the caller.
pub fn describe(values: &[f64]) -> Describe {
    let n = values.len();
    if n == 0 {
        return Describe {
            n,
            mean: None,
            sd: None,
            ci95: None,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Describe {
            n,
            mean: Some(mean),
            sd: None,
            ci95: None,
        };
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Describe {
        n,
        mean: Some(mean),
        sd: Some(sd),
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
    /// The verdict on the primary metric.
    pub verdict: Verdict,
}

impl VariantSummary {
    /// The summary of the primary metric, if any run reported it.
    pub fn metric(&self, name: &str) -> Option<&MetricSummary> {
        self.metrics.get(name)
    }
}

fn finite_metric(run: &RunRecord, metric: &str) -> Option<f64> {
    run.metrics.get(metric).copied().filter(|v| v.is_finite())
}

/// Summarises an ablation per variant (in declaration order): for each metric the mean, sd and
/// 95 % CI over ok runs, and the paired difference against the baseline over the seeds where both
/// ran ok; the training time and the diverged/failed counts.
///
/// # Errors
/// The input is checked with [`AblationInput::validate`] first.
pub fn summarize(input: &AblationInput) -> Result<Vec<VariantSummary>> {
    input.validate()?;
    let metrics = input.metric_names();
    let baseline_name = &input.variants[0].name;
    let baseline: HashMap<u64, &RunRecord> = input
        .runs
        .iter()
        .filter(|r| &r.variant == baseline_name && r.status == RunStatus::Ok)
        .map(|r| (r.seed, r))
        .collect();
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
            let per_metric: BTreeMap<String, MetricSummary> = metrics
                .iter()
                .map(|m| {
                    let values: Vec<f64> = ok.iter().filter_map(|r| finite_metric(r, m)).collect();
                    let delta = (vi > 0).then(|| {
                        let diffs: Vec<f64> = ok
                            .iter()
                            .filter_map(|r| {
                                let b = baseline.get(&r.seed).and_then(|b| finite_metric(b, m))?;
                                Some(finite_metric(r, m)? - b)
                            })
                            .collect();
                        describe(&diffs)
                    });
                    (
                        m.clone(),
                        MetricSummary {
                            value: describe(&values),
                            delta,
                        },
                    )
                })
                .collect();
            let verdict = match per_metric
                .get(&input.primary_metric)
                .and_then(|m| m.delta.as_ref())
            {
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
                metrics: per_metric,
                verdict,
            }
        })
        .collect();
    Ok(summaries)
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
            train_seconds: 2.0,
            curves: vec![],
            message: None,
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
            notes: vec![],
        }
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
