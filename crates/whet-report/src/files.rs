//! File names written by [`write_ablation`](crate::write_ablation) and
//! [`write_run`](crate::write_run) (charts as `STEM.png` and `STEM.svg`).

/// One row per run.
pub const ABLATION_CSV: &str = "ablation.csv";
/// Runs and summaries.
pub const ABLATION_JSON: &str = "ablation.json";
/// Per-variant means and deltas in the flat shape `dvc metrics show` renders as a table
/// ([`dvc_variants`](crate::dvc_variants)).
pub const ABLATION_DVC_JSON: &str = "ablation.dvc.json";
/// The report.
pub const REPORT_MD: &str = "report.md";
/// Stem of the effect chart (Δ vs baseline with 95 % CI).
pub const EFFECT_CHART: &str = "effect";
/// Stem of the learning-curve charts (per variant in an ablation, per run in a run folder).
pub const CURVES_CHART: &str = "learning-curves";
/// Stem of a run's confusion-matrix chart.
pub const CONFUSION_CHART: &str = "confusion";
/// Stem of a binary run's ROC curve chart.
pub const ROC_CHART: &str = "roc";
/// Stem of a binary run's precision-recall curve chart.
pub const PR_CHART: &str = "precision-recall";
/// A run's per-epoch curves.
pub const CURVES_CSV: &str = "curves.csv";
/// Stem of a regression run's predicted-vs-actual scatter chart.
pub const PREDICTED_CHART: &str = "predicted-vs-actual";
/// Stem of a regression run's residual histogram.
pub const RESIDUALS_CHART: &str = "residuals";
