//! One run's files: [`write_run`] writes `curves.csv`, the run's learning-curve chart and, for
//! classification, its confusion-matrix chart.

use std::path::{Path, PathBuf};

use crate::chart::{self, ConfusionChart, CurvesChart, Panel, Series, chart_label};
use crate::error::Result;
use crate::files;
use crate::record::{Confusion, EpochRow, RunRecord, RunStatus};
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
