//! One run's files: [`write_run`] writes `curves.csv`, the run's learning-curve chart and, for
//! classification, its confusion-matrix chart.

use std::path::{Path, PathBuf};

use crate::chart::{self, ConfusionChart, CurvesChart, Panel, RateChart, Series, chart_label};
use crate::error::Result;
use crate::files;
use crate::record::{BinaryCurves, Confusion, EpochRow, RunRecord, RunStatus};
use crate::table::curves_csv;

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
    written.extend(write_evaluation(run, confusion, out_dir)?);
    Ok(written)
}

/// Writes the charts of a run's evaluation into `out_dir`: for classification,
/// `confusion.{png,svg}` from `confusion`. [`write_run`] calls it, and `whet evaluate` calls it
/// alone for the same model measured on new data. Returns the files written.
///
/// # Errors
/// A confusion matrix whose shape does not match its labels, or a failure to draw or write.
pub fn write_evaluation(
    run: &RunRecord,
    confusion: Option<&Confusion>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if let Some(c) = confusion {
        c.validate()?;
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

/// Writes a binary run's `roc.{png,svg}` (with the diagonal of a guess) and
/// `precision-recall.{png,svg}` (with the positive rate of a guess), each marking the point of
/// the threshold the labels use. Returns the files written.
///
/// # Errors
/// A failure to draw or write.
pub fn write_binary_curves(
    run: &RunRecord,
    curves: &BinaryCurves,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let who = format!("{}, seed {}", chart_label(&run.variant), run.seed);
    let t = format!(
        "threshold {}",
        whet_core::spec::fmt_number(curves.threshold)
    );
    let auc = curves
        .roc_auc
        .map(|a| format!(", AUC {a:.3}"))
        .unwrap_or_default();
    let roc = RateChart {
        title: format!("ROC ({} set): {who}{auc}", curves.set),
        x_desc: "false positive rate".into(),
        y_desc: "true positive rate".into(),
        points: curves.roc.clone(),
        reference: ((0.0, 0.0), (1.0, 1.0)),
        reference_name: "guess".into(),
        marked: Some(curves.roc_point),
        marked_name: t.clone(),
    };
    let pr = RateChart {
        title: format!("Precision-recall ({} set): {who}", curves.set),
        x_desc: "recall".into(),
        y_desc: "precision".into(),
        points: curves.pr.clone(),
        reference: ((0.0, curves.positive_rate), (1.0, curves.positive_rate)),
        reference_name: format!("guess ({:.1} % positive)", curves.positive_rate * 100.0),
        marked: curves.pr_point,
        marked_name: t,
    };
    let mut written = Vec::new();
    written.extend(chart::write_chart(&roc, out_dir, files::ROC_CHART)?);
    written.extend(chart::write_chart(&pr, out_dir, files::PR_CHART)?);
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
        notes: vec![],
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
