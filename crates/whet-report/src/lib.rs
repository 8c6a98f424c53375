//! Statistics over seeds, ablation reports and charts for whet.
//!
//! The CLI runs the variants of an ablation over the same seeds and hands the results over as
//! [`RunRecord`]s inside an [`AblationInput`]. This crate:
//!
//! - [`summarize`]s them per variant and metric: mean, standard deviation and Student-t 95 %
//!   confidence interval over the ok runs, and the paired difference against the baseline over
//!   the seeds both have (paired t interval), with a plain-words [`Verdict`];
//! - [`write_ablation`] writes `ablation.csv`, `ablation.json`, `report.md` and the charts
//!   (effect of each variant, learning curves per variant) as PNG and SVG;
//! - [`write_run`] writes one run's `curves.csv`, learning-curve chart and, for classification,
//!   its [`Confusion`] matrix heat map.
//!
//! Every file is written atomically ([`whet_core::fsx`]). Charts carry their own font (DejaVu
//! Sans, embedded), so they look the same on any machine.
//!
//! ```
//! use std::collections::BTreeMap;
//! use whet_report::{summarize, AblationInput, RunRecord, RunStatus, VariantInfo, Verdict};
//!
//! let run = |variant: &str, seed, acc| RunRecord {
//!     variant: variant.into(),
//!     seed,
//!     status: RunStatus::Ok,
//!     metrics: BTreeMap::from([("accuracy".to_string(), acc)]),
//!     train_seconds: 1.0,
//!     curves: vec![],
//!     message: None,
//! };
//! let input = AblationInput {
//!     title: "demo".into(),
//!     pipeline: "demo.yaml".into(),
//!     variants: vec![
//!         VariantInfo { name: "baseline".into(), description: String::new() },
//!         VariantInfo { name: "no-noise".into(), description: "drop augment.ops.noise".into() },
//!     ],
//!     runs: vec![
//!         run("baseline", 1, 0.90), run("baseline", 2, 0.91), run("baseline", 3, 0.92),
//!         run("no-noise", 1, 0.85), run("no-noise", 2, 0.87), run("no-noise", 3, 0.86),
//!     ],
//!     primary_metric: "accuracy".into(),
//!     higher_is_better: true,
//!     notes: vec![],
//! };
//! let summary = summarize(&input)?;
//! assert_eq!(summary[1].verdict, Verdict::Hurts);
//! # Ok::<(), whet_report::Error>(())
//! ```

mod chart;
pub mod error;
mod format;
mod markdown;
pub mod record;
pub mod stats;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use chart::FONT_FAMILY;
pub use error::{Error, Result};
pub use format::is_percent_metric;
pub use record::{AblationInput, Confusion, EpochRow, RunRecord, RunStatus, VariantInfo};
pub use stats::{
    Describe, Interval, MetricSummary, VariantSummary, Verdict, describe, summarize, t_cdf,
    t_quantile,
};
pub use table::{ablation_csv, curves_csv};

use chart::{ConfusionChart, CurvesChart, EffectChart, EffectRow, Panel, Series};
use format::MetricFormat;
use markdown::ChartLink;

/// File names written by [`write_ablation`] (charts as `STEM.png` and `STEM.svg`).
pub mod files {
    /// One row per run.
    pub const ABLATION_CSV: &str = "ablation.csv";
    /// Runs and summaries.
    pub const ABLATION_JSON: &str = "ablation.json";
    /// The report.
    pub const REPORT_MD: &str = "report.md";
    /// Stem of the effect chart (Δ vs baseline with 95 % CI).
    pub const EFFECT_CHART: &str = "effect";
    /// Stem of the learning-curve charts (per variant in an ablation, per run in a run folder).
    pub const CURVES_CHART: &str = "learning-curves";
    /// Stem of a run's confusion-matrix chart.
    pub const CONFUSION_CHART: &str = "confusion";
    /// A run's per-epoch curves.
    pub const CURVES_CSV: &str = "curves.csv";
}

/// What [`write_ablation`] computed and wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AblationSummary {
    /// Per variant, in declaration order (the baseline first).
    pub variants: Vec<VariantSummary>,
    /// Every file written, in writing order.
    pub files: Vec<PathBuf>,
}

impl AblationSummary {
    /// The path of `report.md`.
    pub fn report(&self) -> Option<&Path> {
        self.files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == files::REPORT_MD))
            .map(PathBuf::as_path)
    }
}

/// The shape of `ablation.json`.
#[derive(Serialize)]
struct AblationJson<'a> {
    title: &'a str,
    pipeline: &'a str,
    primary_metric: &'a str,
    higher_is_better: bool,
    metrics: Vec<String>,
    variants: &'a [VariantInfo],
    summaries: &'a [VariantSummary],
    runs: Vec<&'a RunRecord>,
    notes: &'a [String],
}

/// Writes the ablation report into `out_dir` (created if missing): `ablation.csv`,
/// `ablation.json`, `report.md`, `effect.{png,svg}` (when there is a variant besides the
/// baseline) and `learning-curves.{png,svg}` (when runs have curves). Diverged and failed runs
/// are listed with their status and left out of every mean.
///
/// # Errors
/// Invalid input ([`AblationInput::validate`]), or a failure to draw or write a file.
pub fn write_ablation(input: &AblationInput, out_dir: &Path) -> Result<AblationSummary> {
    let variants = summarize(input)?;
    let mut files = Vec::new();

    let csv = out_dir.join(files::ABLATION_CSV);
    whet_core::fsx::atomic_write(&csv, ablation_csv(input).as_bytes())?;
    files.push(csv);

    let json_path = out_dir.join(files::ABLATION_JSON);
    let json = AblationJson {
        title: &input.title,
        pipeline: &input.pipeline,
        primary_metric: &input.primary_metric,
        higher_is_better: input.higher_is_better,
        metrics: input.metric_names(),
        variants: &input.variants,
        summaries: &variants,
        runs: input.sorted_runs(),
        notes: &input.notes,
    };
    let mut bytes = serde_json::to_vec_pretty(&json).map_err(|source| Error::Json {
        file: json_path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    whet_core::fsx::atomic_write(&json_path, &bytes)?;
    files.push(json_path);

    let mut links = Vec::new();
    if let Some(chart) = effect_chart(input, &variants) {
        files.extend(chart::write_chart(&chart, out_dir, files::EFFECT_CHART)?);
        links.push(link(&chart.title, files::EFFECT_CHART));
    }
    if let Some(chart) = ablation_curves_chart(input) {
        files.extend(chart::write_chart(&chart, out_dir, files::CURVES_CHART)?);
        links.push(link(&chart.title, files::CURVES_CHART));
    }

    let report = out_dir.join(files::REPORT_MD);
    let text = markdown::render(input, &variants, &links);
    whet_core::fsx::atomic_write(&report, text.as_bytes())?;
    files.push(report);
    Ok(AblationSummary { variants, files })
}

fn link(title: &str, stem: &str) -> ChartLink {
    ChartLink {
        title: title.to_string(),
        png: format!("{stem}.png"),
        svg: format!("{stem}.svg"),
    }
}

/// Bars of Δ vs baseline on the primary metric, best variant on top; `None` without variants.
fn effect_chart(input: &AblationInput, summaries: &[VariantSummary]) -> Option<EffectChart> {
    let primary = &input.primary_metric;
    let f = MetricFormat::for_metric(primary, summaries);
    let sign = if input.higher_is_better { 1.0 } else { -1.0 };
    let mut rows: Vec<(f64, EffectRow)> = summaries
        .iter()
        .skip(1)
        .map(|s| {
            let delta = s.metric(primary).and_then(|m| m.delta);
            let mean = delta.and_then(|d| d.mean).map(|m| m * f.scale());
            let ci = delta
                .and_then(|d| d.ci95)
                .map(|c| (c.low * f.scale(), c.high * f.scale()));
            let note = match (mean, s.verdict) {
                (None, _) => "no paired runs".to_string(),
                (_, v) => v.as_str().to_string(),
            };
            let row = EffectRow {
                label: format!("{} ({note})", chart_label(&s.name)),
                mean,
                ci,
                verdict: s.verdict,
                value_text: delta.map(|d| f.delta(&d)).unwrap_or_default(),
            };
            // Rows without data sort below everything.
            (mean.map_or(f64::NEG_INFINITY, |m| sign * m), row)
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let unit = if f.percent {
        " (percentage points)"
    } else {
        ""
    };
    Some(EffectChart {
        title: format!("Effect of each variant on {primary} vs baseline"),
        x_desc: format!(
            "Δ {primary}{unit}: mean of paired seeds, whiskers 95 % CI ({} is better)",
            if input.higher_is_better {
                "higher"
            } else {
                "lower"
            }
        ),
        rows: rows.into_iter().map(|(_, r)| r).collect(),
    })
}

fn chart_label(name: &str) -> String {
    let mut s: String = name.chars().take(40).collect();
    if name.chars().count() > 40 {
        s.push('…');
    }
    s
}

/// Mean over the ok runs of one variant of `get(row)`, per epoch (over the runs that reached
/// that epoch and have a finite value).
fn mean_curve(runs: &[&RunRecord], get: impl Fn(&EpochRow) -> Option<f64>) -> Vec<(usize, f64)> {
    let mut acc: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for r in runs {
        for row in &r.curves {
            if let Some(v) = get(row).filter(|v| v.is_finite()) {
                let e = acc.entry(row.epoch).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    acc.into_iter()
        .map(|(e, (s, n))| (e, s / n as f64))
        .collect()
}

type Getter = fn(&EpochRow) -> Option<f64>;

/// Learning curves per variant (mean over ok seeds): validation loss (or training loss when no
/// run has validation) and validation accuracy (or training accuracy) when any run has one.
fn ablation_curves_chart(input: &AblationInput) -> Option<CurvesChart> {
    let ok: Vec<&RunRecord> = input
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Ok)
        .collect();
    if ok.iter().all(|r| r.curves.is_empty()) {
        return None;
    }
    let has = |g: Getter| ok.iter().any(|r| r.curves.iter().any(|c| g(c).is_some()));
    let val_loss: Getter = |c| c.val_loss;
    let train_loss: Getter = |c| Some(c.train_loss);
    let val_acc: Getter = |c| c.val_accuracy;
    let train_acc: Getter = |c| c.train_accuracy;
    let mut specs: Vec<(&str, Getter, bool, bool)> = vec![if has(val_loss) {
        ("validation loss", val_loss, false, true)
    } else {
        ("training loss", train_loss, false, true)
    }];
    if has(val_acc) {
        specs.push(("validation accuracy", val_acc, true, false));
    } else if has(train_acc) {
        specs.push(("training accuracy", train_acc, true, false));
    }
    let panels = specs
        .into_iter()
        .map(|(name, get, percent, legend_top)| {
            let scale = if percent { 100.0 } else { 1.0 };
            let series = input
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let runs: Vec<&RunRecord> =
                        ok.iter().copied().filter(|r| r.variant == v.name).collect();
                    Series {
                        name: chart_label(&v.name),
                        colour: chart::series_colour(i),
                        width: if i == 0 { 3 } else { 2 },
                        points: mean_curve(&runs, get)
                            .into_iter()
                            .map(|(e, y)| (e, y * scale))
                            .collect(),
                    }
                })
                .collect();
            Panel {
                title: format!("{name} (mean over ok seeds)"),
                y_desc: if percent {
                    format!("{name} (%)")
                } else {
                    name.to_string()
                },
                series,
                legend_top,
            }
        })
        .collect();
    Some(CurvesChart {
        title: "Learning curves per variant".into(),
        panels,
    })
}

/// Writes one run's files into `out_dir` (created if missing): `curves.csv`,
/// `learning-curves.{png,svg}` (training and validation loss, and accuracy when recorded) and,
/// when `confusion` is given, `confusion.{png,svg}`. Returns the files written.
///
/// # Errors
/// A confusion matrix whose shape does not match its labels, or a failure to draw or write.
pub fn write_run(
    run: &RunRecord,
    confusion: Option<&Confusion>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    if let Some(c) = confusion {
        c.validate()?;
    }
    let mut written = Vec::new();
    let csv = out_dir.join(files::CURVES_CSV);
    whet_core::fsx::atomic_write(&csv, curves_csv(&run.curves).as_bytes())?;
    written.push(csv);
    written.extend(chart::write_chart(
        &run_curves_chart(run),
        out_dir,
        files::CURVES_CHART,
    )?);
    if let Some(c) = confusion {
        let acc = c
            .accuracy()
            .map(|a| format!(", accuracy {:.2} %", a * 100.0))
            .unwrap_or_default();
        let chart = ConfusionChart {
            title: format!(
                "Confusion matrix: {}, seed {}{acc}",
                chart_label(&run.variant),
                run.seed
            ),
            labels: c.labels.clone(),
            counts: c.counts.clone(),
        };
        written.extend(chart::write_chart(&chart, out_dir, files::CONFUSION_CHART)?);
    }
    Ok(written)
}

fn run_curves_chart(run: &RunRecord) -> CurvesChart {
    let line = |name: &str, colour, get: &dyn Fn(&EpochRow) -> Option<f64>, scale: f64| Series {
        name: name.into(),
        colour,
        width: 2,
        points: run
            .curves
            .iter()
            .filter_map(|c| Some((c.epoch, get(c)? * scale)))
            .collect(),
    };
    let train = chart::series_colour(1);
    let val = chart::series_colour(2);
    let mut loss = vec![line("training", train, &|c| Some(c.train_loss), 1.0)];
    if run.curves.iter().any(|c| c.val_loss.is_some()) {
        loss.push(line("validation", val, &|c| c.val_loss, 1.0));
    }
    let mut panels = vec![Panel {
        title: "loss".into(),
        y_desc: "loss".into(),
        series: loss,
        legend_top: true,
    }];
    let mut acc = Vec::new();
    if run.curves.iter().any(|c| c.train_accuracy.is_some()) {
        acc.push(line("training", train, &|c| c.train_accuracy, 100.0));
    }
    if run.curves.iter().any(|c| c.val_accuracy.is_some()) {
        acc.push(line("validation", val, &|c| c.val_accuracy, 100.0));
    }
    if !acc.is_empty() {
        panels.push(Panel {
            title: "accuracy".into(),
            y_desc: "accuracy (%)".into(),
            series: acc,
            legend_top: false,
        });
    }
    let status = match run.status {
        RunStatus::Ok => String::new(),
        other => format!(" ({other})"),
    };
    CurvesChart {
        title: format!(
            "Learning curves: {}, seed {}{status}",
            chart_label(&run.variant),
            run.seed
        ),
        panels,
    }
}
