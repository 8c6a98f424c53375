//! How numbers are shown to people (report tables and chart axes).
//!
//! Accuracy-like metrics (a name containing `accuracy`) are fractions shown as percentages with
//! two decimals, and their differences in percentage points. Other metrics get four significant
//! digits, judged from the largest mean in the table, so a column uses one number of decimals.

use crate::stats::{Describe, Interval, VariantSummary};

/// The display format of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MetricFormat {
    /// Values are fractions shown as percentages.
    pub percent: bool,
    /// Decimals after the point (after scaling).
    pub decimals: usize,
}

impl MetricFormat {
    /// The format of `metric` given the summaries it appears in.
    pub fn for_metric(metric: &str, summaries: &[VariantSummary]) -> MetricFormat {
        if is_percent_metric(metric) {
            return MetricFormat {
                percent: true,
                decimals: 2,
            };
        }
        let magnitude = summaries
            .iter()
            .filter_map(|s| s.metrics.get(metric)?.value.mean)
            .filter(|m| m.is_finite())
            .map(f64::abs)
            .fold(0.0, f64::max);
        MetricFormat {
            percent: false,
            decimals: decimals_for(magnitude),
        }
    }

    /// Multiplier from stored values to shown values (100 for percentages).
    pub fn scale(&self) -> f64 {
        if self.percent { 100.0 } else { 1.0 }
    }

    /// Unit suffix of a value (` %` or nothing).
    pub fn unit(&self) -> &'static str {
        if self.percent { " %" } else { "" }
    }

    /// Unit suffix of a difference (` pp` for percentage points, or nothing).
    pub fn delta_unit(&self) -> &'static str {
        if self.percent { " pp" } else { "" }
    }

    /// A number without unit.
    pub fn num(&self, v: f64) -> String {
        format!("{:.*}", self.decimals, v * self.scale())
    }

    /// A signed number without unit.
    pub fn signed(&self, v: f64) -> String {
        format!("{:+.*}", self.decimals, v * self.scale())
    }

    /// `97.12 ± 0.31 %`, `97.12 %` with one value, `—` with none.
    pub fn mean_sd(&self, d: &Describe) -> String {
        match (d.mean, d.sd) {
            (Some(m), Some(sd)) => format!("{} ± {}{}", self.num(m), self.num(sd), self.unit()),
            (Some(m), None) => format!("{}{}", self.num(m), self.unit()),
            _ => "—".into(),
        }
    }

    /// `[96.80, 97.44] %`, or `—`.
    pub fn interval(&self, ci: Option<Interval>) -> String {
        ci.map_or_else(
            || "—".into(),
            |c| format!("[{}, {}]{}", self.num(c.low), self.num(c.high), self.unit()),
        )
    }

    /// `+0.45 pp`, or `—`.
    pub fn delta(&self, d: &Describe) -> String {
        d.mean.map_or_else(
            || "—".into(),
            |m| format!("{}{}", self.signed(m), self.delta_unit()),
        )
    }

    /// `[-0.12, +1.02] pp`, or `—`.
    pub fn delta_interval(&self, ci: Option<Interval>) -> String {
        ci.map_or_else(
            || "—".into(),
            |c| {
                format!(
                    "[{}, {}]{}",
                    self.signed(c.low),
                    self.signed(c.high),
                    self.delta_unit()
                )
            },
        )
    }
}

/// Whether a metric is a fraction best shown as a percentage (the accuracies and the
/// majority-class baseline, an accuracy).
pub fn is_percent_metric(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    m.contains("accuracy") || m == "majority_baseline"
}

/// One value of `metric` as the command line shows it: a percentage with two decimals for
/// accuracy-like metrics (`81.20 %`), four decimals otherwise (`0.4312`).
pub fn format_metric(metric: &str, v: f64) -> String {
    if is_percent_metric(metric) {
        format!("{:.2} %", v * 100.0)
    } else {
        format!("{v:.4}")
    }
}

/// Decimals that give four significant digits to the largest value `magnitude`.
fn decimals_for(magnitude: f64) -> usize {
    if magnitude <= 0.0 || !magnitude.is_finite() {
        return 4;
    }
    (3 - magnitude.log10().floor() as i64).clamp(0, 6) as usize
}

/// Seconds for people: `0.84 s`, `12.3 s`, `4 min 05 s`, or `—`.
pub(crate) fn seconds(s: Option<f64>) -> String {
    // A duration is never negative: a tiny negative (clock steps, `0 - ε` in a mean) would
    // print as `-0.00 s`.
    let s = s.map(|s| if s > 0.0 || s.is_nan() { s } else { 0.0 });
    match s {
        Some(s) if s.is_finite() && s < 10.0 => format!("{s:.2} s"),
        Some(s) if s.is_finite() && s < 120.0 => format!("{s:.1} s"),
        Some(s) if s.is_finite() => {
            let total = s.round() as u64;
            format!("{} min {:02} s", total / 60, total % 60)
        }
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::describe;

    #[test]
    fn percent_metrics_show_two_decimals() {
        let f = MetricFormat::for_metric("val_accuracy", &[]);
        let d = describe(&[0.97, 0.975, 0.98]);
        assert_eq!(f.mean_sd(&d), "97.50 ± 0.50 %");
        assert_eq!(f.delta(&describe(&[0.0045])), "+0.45 pp");
        assert_eq!(
            f.delta_interval(Some(Interval {
                low: -0.0012,
                high: 0.0102
            })),
            "[-0.12, +1.02] pp"
        );
    }

    #[test]
    fn other_metrics_get_four_significant_digits() {
        assert_eq!(decimals_for(0.01234), 5);
        assert_eq!(decimals_for(0.5), 4);
        assert_eq!(decimals_for(12.5), 2);
        assert_eq!(decimals_for(123_456.0), 0);
        assert_eq!(seconds(Some(3.456)), "3.46 s");
        assert_eq!(seconds(Some(245.0)), "4 min 05 s");
        assert_eq!(seconds(None), "—");
        assert_eq!(seconds(Some(-0.001)), "0.00 s");
        assert_eq!(seconds(Some(-0.0)), "0.00 s");
    }
}
