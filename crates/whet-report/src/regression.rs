//! A regression run's charts: predicted against actual values (with the y = x line) and the
//! histogram of residuals, both in the target's units.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::full_palette::GREY_200;

use crate::chart::{self, Chart, DrawResult, chart_label, font, tick_decimals};
use crate::error::{Error, Result};
use crate::files;
use crate::record::RunRecord;

/// The most points the scatter chart draws; larger sets are thinned to every k-th row (the same
/// rows every time).
pub const MAX_SCATTER_POINTS: usize = 5000;

const BINS: usize = 40;

/// Predicted and actual values of the set a regression run is evaluated on, row by row, in the
/// target's original units.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionPoints {
    /// The target's name (axis titles).
    pub target: String,
    /// The true values.
    pub actual: Vec<f64>,
    /// The network's predictions.
    pub predicted: Vec<f64>,
}

impl RegressionPoints {
    /// Every `k`-th point, with `k` the smallest step that leaves at most `max` points.
    fn thinned(&self, max: usize) -> Vec<(f64, f64)> {
        let step = self.actual.len().div_ceil(max.max(1)).max(1);
        self.actual
            .iter()
            .zip(&self.predicted)
            .step_by(step)
            .map(|(&a, &p)| (a, p))
            .filter(|(a, p)| a.is_finite() && p.is_finite())
            .collect()
    }
}

/// Writes `predicted-vs-actual.{png,svg}` (every point up to [`MAX_SCATTER_POINTS`], then every
/// k-th row; the y = x line) and `residuals.{png,svg}` (the histogram of predicted − actual)
/// into `out_dir`. Returns the files written.
///
/// # Errors
/// [`Error::Points`] when the two columns differ in length or are empty, or a failure to draw
/// or write.
pub fn write_regression(
    run: &RunRecord,
    points: &RegressionPoints,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    if points.actual.len() != points.predicted.len() || points.actual.is_empty() {
        return Err(Error::Points {
            actual: points.actual.len(),
            predicted: points.predicted.len(),
        });
    }
    let who = format!("{}, seed {}", chart_label(&run.variant), run.seed);
    let scatter = Scatter {
        title: format!("Predicted vs actual: {who}"),
        target: chart_label(&points.target),
        points: points.thinned(MAX_SCATTER_POINTS),
        of: points.actual.len(),
    };
    let residuals: Vec<f64> = points
        .predicted
        .iter()
        .zip(&points.actual)
        .map(|(p, a)| p - a)
        .filter(|r| r.is_finite())
        .collect();
    let histogram = Histogram::new(
        format!("Residuals: {who}"),
        chart_label(&points.target),
        &residuals,
    );
    let mut written = Vec::new();
    written.extend(chart::write_chart(
        &scatter,
        out_dir,
        files::PREDICTED_CHART,
    )?);
    written.extend(chart::write_chart(
        &histogram,
        out_dir,
        files::RESIDUALS_CHART,
    )?);
    Ok(written)
}

/// A range around `lo..hi` with 5 % margins (a unit range around a single value).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    (lo - 0.05 * span, hi + 0.05 * span)
}

struct Scatter {
    title: String,
    target: String,
    points: Vec<(f64, f64)>,
    of: usize,
}

impl Chart for Scatter {
    fn size(&self) -> (u32, u32) {
        (640, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (lo, hi) = self
            .points
            .iter()
            .flat_map(|&(a, p)| [a, p])
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        let (lo, hi) = if lo.is_finite() {
            padded(lo, hi)
        } else {
            (0.0, 1.0)
        };
        let caption = if self.points.len() < self.of {
            format!(
                "{} ({} of {} rows shown)",
                self.title,
                self.points.len(),
                self.of
            )
        } else {
            self.title.clone()
        };
        let mut c = ChartBuilder::on(root)
            .caption(caption, font(18.0))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(lo..hi, lo..hi)?;
        let decimals = tick_decimals(hi - lo);
        let fmt = |v: &f64| format!("{:.*}", decimals, v);
        c.configure_mesh()
            .x_desc(format!("actual {}", self.target))
            .y_desc(format!("predicted {}", self.target))
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(GREY_200)
            .draw()?;
        let colour = chart::series_colour(1);
        c.draw_series(
            self.points
                .iter()
                .map(|&p| Circle::new(p, 2, colour.mix(0.45).filled())),
        )?;
        c.draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.stroke_width(1)))?
            .label("y = x")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], BLACK.stroke_width(2)));
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(font(13.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

struct Histogram {
    title: String,
    target: String,
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl Histogram {
    fn new(title: String, target: String, values: &[f64]) -> Self {
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let width = if hi > lo {
            (hi - lo) / BINS as f64
        } else {
            1.0
        };
        let mut counts = vec![0u64; BINS];
        for &v in values {
            let b = (((v - lo) / width) as usize).min(BINS - 1);
            counts[b] += 1;
        }
        Histogram {
            title,
            target,
            lo,
            width,
            counts,
        }
    }
}

impl Chart for Histogram {
    fn size(&self) -> (u32, u32) {
        (640, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let hi = self.lo + self.width * BINS as f64;
        let top = self.counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.05;
        let mut c = ChartBuilder::on(root)
            .caption(&self.title, font(18.0))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(self.lo..hi, 0.0..top)?;
        let decimals = tick_decimals(hi - self.lo);
        let fmt_x = |v: &f64| format!("{:.*}", decimals, v);
        let fmt_y = |v: &f64| format!("{v:.0}");
        c.configure_mesh()
            .x_desc(format!("residual (predicted - actual {})", self.target))
            .y_desc("rows")
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(GREY_200)
            .draw()?;
        let colour = chart::series_colour(1);
        c.draw_series(self.counts.iter().enumerate().map(|(i, &n)| {
            let x0 = self.lo + self.width * i as f64;
            Rectangle::new([(x0, 0.0), (x0 + self.width, n as f64)], colour.filled())
        }))?;
        c.draw_series(LineSeries::new(
            [(0.0, 0.0), (0.0, top)],
            BLACK.stroke_width(1),
        ))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus;

    fn record() -> RunRecord {
        RunRecord {
            variant: "baseline".into(),
            seed: 1,
            status: RunStatus::Ok,
            metrics: Default::default(),
            validation: Default::default(),
            validation_samples: None,
            train_seconds: 0.0,
            curves: vec![],
            message: None,
            cross_validation: None,
        }
    }

    #[test]
    fn thinning_is_every_kth_row() {
        let n = 12_001;
        let p = RegressionPoints {
            target: "y".into(),
            actual: (0..n).map(f64::from).collect(),
            predicted: (0..n).map(f64::from).collect(),
        };
        let t = p.thinned(MAX_SCATTER_POINTS);
        // step ceil(12001 / 5000) = 3: rows 0, 3, 6, …
        assert_eq!(t.len(), 4001);
        assert_eq!((t[0], t[1]), ((0.0, 0.0), (3.0, 3.0)));
        assert_eq!(p.thinned(MAX_SCATTER_POINTS), t);
    }

    #[test]
    fn histogram_counts_every_residual() {
        let h = Histogram::new("t".into(), "y".into(), &[-1.0, 0.0, 0.0, 1.0]);
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        assert_eq!(
            (h.counts[0], h.counts[BINS - 1], h.counts[BINS / 2]),
            (1, 1, 2)
        );
    }

    #[test]
    fn writes_both_charts_and_refuses_mismatched_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = RegressionPoints {
            target: "price".into(),
            actual: vec![1.0, 2.0, 3.0],
            predicted: vec![1.5, 1.5, 3.5],
        };
        let files = write_regression(&record(), &p, dir.path()).unwrap();
        assert_eq!(files.len(), 4);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 0, "{}", f.display());
        }
        let svg = std::fs::read_to_string(dir.path().join("predicted-vs-actual.svg")).unwrap();
        assert!(svg.contains("y = x") && svg.contains("actual price"));
        let bad = RegressionPoints {
            predicted: vec![1.0],
            ..p
        };
        assert!(matches!(
            write_regression(&record(), &bad, dir.path()),
            Err(Error::Points { .. })
        ));
    }
}
