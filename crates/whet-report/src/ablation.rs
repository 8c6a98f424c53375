//! The ablation report: [`write_ablation`] summarises the runs and writes `ablation.csv`,
//! `ablation.json`, `report.md` and the effect and learning-curve charts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chart::{self, CurvesChart, EffectChart, EffectRow, Panel, Series, chart_label};
use crate::error::{Error, Result};
use crate::files;
use crate::format::MetricFormat;
use crate::markdown::{self, ChartLink};
use crate::record::{AblationInput, EpochRow, RunRecord, RunStatus, VariantInfo};
use crate::stats::{Chosen, VariantSummary, choose, summarize, validation_warning};
use crate::table::ablation_csv;

/// What [`write_ablation`] computed and wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AblationSummary {
    /// Per variant, in declaration order (the baseline first); on the validation split when
    /// the report chooses on validation ([`AblationInput::chooses_on_validation`]).
    pub variants: Vec<VariantSummary>,
    /// The variant chosen on validation, with its test numbers, when the report chooses.
    pub chosen: Option<Chosen>,
    /// Warnings the report puts first (a validation split too small for the differences).
    pub warnings: Vec<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    overrides: &'a [String],
    primary_metric: &'a str,
    higher_is_better: bool,
    metrics: Vec<String>,
    variants: &'a [VariantInfo],
    summaries: &'a [VariantSummary],
    #[serde(skip_serializing_if = "Option::is_none")]
    chosen: Option<&'a Chosen>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
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
    let on_test = summarize(input)?;
    // Choosing among variants: every table and chart is on the validation split, and the test
    // set speaks only for the chosen variant.
    let (shown, variants, chosen) = if input.chooses_on_validation() {
        let v = input.on_validation();
        let summaries = summarize(&v)?;
        let chosen = choose(input, &summaries, &on_test);
        (std::borrow::Cow::Owned(v), summaries, chosen)
    } else {
        (std::borrow::Cow::Borrowed(input), on_test, None)
    };
    let warnings: Vec<String> = validation_warning(&shown, &variants).into_iter().collect();
    let mut files = Vec::new();

    let csv = out_dir.join(files::ABLATION_CSV);
    whet_core::fsx::atomic_write(&csv, ablation_csv(input).as_bytes())?;
    files.push(csv);

    let json_path = out_dir.join(files::ABLATION_JSON);
    let json = AblationJson {
        title: &input.title,
        pipeline: &input.pipeline,
        description: input.description.as_deref(),
        overrides: &input.overrides,
        primary_metric: &input.primary_metric,
        higher_is_better: input.higher_is_better,
        metrics: input.metric_names(),
        variants: &input.variants,
        summaries: &variants,
        chosen: chosen.as_ref(),
        warnings: &warnings,
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

    let dvc_path = out_dir.join(files::ABLATION_DVC_JSON);
    let dvc = serde_json::json!({ "variants": dvc_variants(&variants) });
    let mut bytes = serde_json::to_vec_pretty(&dvc).map_err(|source| Error::Json {
        file: dvc_path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    whet_core::fsx::atomic_write(&dvc_path, &bytes)?;
    files.push(dvc_path);

    let mut links = Vec::new();
    if let Some(chart) = effect_chart(&shown, &variants) {
        files.extend(chart::write_chart(&chart, out_dir, files::EFFECT_CHART)?);
        links.push(link(&chart.title, files::EFFECT_CHART));
    }
    if let Some(chart) = ablation_curves_chart(input) {
        files.extend(chart::write_chart(&chart, out_dir, files::CURVES_CHART)?);
        links.push(link(&chart.title, files::CURVES_CHART));
    }

    let report = out_dir.join(files::REPORT_MD);
    let text = markdown::render(&shown, &variants, &links, chosen.as_ref(), &warnings);
    whet_core::fsx::atomic_write(&report, text.as_bytes())?;
    files.push(report);
    Ok(AblationSummary {
        variants,
        chosen,
        warnings,
        files,
    })
}

/// Per variant, its numbers in a flat map of finite values: `<metric>_mean` for every metric
/// (over the variant's ok runs), `<metric>_delta` (the mean paired difference against the
/// baseline; not for the baseline itself), `ok_runs` and `runs`. `ablation.dvc.json` is
/// `{"variants": this}`, which `dvc metrics show` renders as one column per key.
pub fn dvc_variants(variants: &[VariantSummary]) -> BTreeMap<String, BTreeMap<String, f64>> {
    variants
        .iter()
        .map(|v| {
            let mut m = BTreeMap::new();
            for (name, s) in &v.metrics {
                if let Some(mean) = s.value.mean {
                    m.insert(format!("{name}_mean"), mean);
                }
                if let Some(d) = s.delta.as_ref().and_then(|d| d.mean) {
                    m.insert(format!("{name}_delta"), d);
                }
            }
            m.insert("ok_runs".into(), v.ok as f64);
            m.insert("runs".into(), v.runs as f64);
            m.retain(|_, x| x.is_finite());
            (v.name.clone(), m)
        })
        .collect()
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

/// Mean over the ok runs of one variant of `get(row)`, per epoch (over the runs that reached
/// that epoch and have a finite value), with the number of runs averaged: `(epoch, mean, n)`.
fn mean_curve(
    runs: &[&RunRecord],
    get: impl Fn(&EpochRow) -> Option<f64>,
) -> Vec<(usize, f64, usize)> {
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
        .map(|(e, (s, n))| (e, s / n as f64, n))
        .collect()
}

/// Where a mean curve's seed count changes (early stopping ends some seeds sooner): `n=k` at
/// each epoch whose count differs from the previous epoch's, and at the first epoch when it is
/// below `seeds` (the variant's ok runs).
fn seed_count_notes(curve: &[(usize, f64, usize)], seeds: usize) -> Vec<(usize, String)> {
    let mut out = vec![];
    let mut last = seeds;
    for &(e, _, n) in curve {
        if n != last {
            out.push((e, format!("n={n}")));
            last = n;
        }
    }
    out
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
                    let curve = mean_curve(&runs, get);
                    Series {
                        name: chart_label(&v.name),
                        colour: chart::series_colour(i),
                        width: if i == 0 { 3 } else { 2 },
                        points: curve.iter().map(|&(e, y, _)| (e, y * scale)).collect(),
                        notes: seed_count_notes(&curve, runs.len()),
                    }
                })
                .collect();
            Panel {
                title: format!("{name} (mean over ok seeds; n=k: k seeds from there on)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_counts_are_noted_where_they_drop() {
        let curve = [
            (1, 0.5, 3),
            (2, 0.4, 3),
            (3, 0.3, 2),
            (4, 0.3, 2),
            (5, 0.2, 1),
        ];
        assert_eq!(
            seed_count_notes(&curve, 3),
            [(3, "n=2".to_string()), (5, "n=1".to_string())]
        );
        // A seed with no value at the first epoch shows from the start.
        assert_eq!(
            seed_count_notes(&[(1, 0.5, 2)], 3),
            [(1, "n=2".to_string())]
        );
        assert!(seed_count_notes(&curve[..2], 3).is_empty());
    }
}
