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
//!   its [`Confusion`] matrix heat map; [`write_regression`] a regression run's
//!   predicted-vs-actual scatter and residual histogram.
//!
//! The main types:
//!
//! - [`AblationInput`]: the report's input, the declared variants (the baseline first) and every
//!   [`RunRecord`] (one per variant and seed, with its [`RunStatus`], metrics and curves);
//! - [`VariantSummary`]: one variant's statistics per metric ([`MetricSummary`]) and its verdict;
//! - [`AblationSummary`]: what [`write_ablation`] computed and the files it wrote (their names
//!   are in [`files`]).
//!
//! Every file is written atomically ([`whet_core::fsx`]). Charts carry their own font (DejaVu
//! Sans, embedded), so they look the same on any machine.
//!
//! ```
//! use std::collections::BTreeMap;
//! use whet_report::{
//!     AblationInput, RunRecord, RunStatus, VariantInfo, Verdict, summarize, write_ablation,
//! };
//!
//! let run = |variant: &str, seed, acc| RunRecord {
//!     variant: variant.into(),
//!     seed,
//!     status: RunStatus::Ok,
//!     metrics: BTreeMap::from([("accuracy".to_string(), acc)]),
//!     validation: Default::default(),
//!     validation_samples: None,
//!     train_seconds: 1.0,
//!     curves: vec![],
//!     message: None,
//!     cross_validation: None,
//! };
//! let input = AblationInput {
//!     title: "demo".into(),
//!     pipeline: "demo.yaml".into(),
//!     description: None,
//!     overrides: vec![],
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
//!     lower_is_better: vec!["loss".into()],
//!     notes: vec![],
//!     choose_on_validation: false,
//!     validation_decides: vec![],
//! };
//! // The statistics alone...
//! let summary = summarize(&input)?;
//! assert_eq!(summary[1].verdict, Verdict::Hurts);
//!
//! // ...or the whole report, written into a folder.
//! let out = tempfile::tempdir()?;
//! let written = write_ablation(&input, out.path())?;
//! assert_eq!(written.variants, summary);
//! assert!(written.report().is_some_and(|md| md.exists()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The ablation report (`write_ablation`, `AblationSummary`).
mod ablation;
// Chart drawing (plotters), PNG and SVG, with the embedded font.
mod chart;
// `Error` and `Result`.
mod error;
pub mod files;
// How numbers are shown in tables and on chart axes.
mod format;
// `report.md`.
mod markdown;
// The input types: `AblationInput`, `RunRecord`, `Confusion`…
mod record;
// A regression run's charts (`write_regression`).
mod regression;
// One run's files (`write_run`).
mod run;
// Mean, sd, Student-t intervals, paired deltas, verdicts (`summarize`).
mod stats;
// `ablation.csv` and `curves.csv`.
mod table;

pub use crate::{
    ablation::{AblationSummary, dvc_variants, write_ablation},
    chart::FONT_FAMILY,
    error::{Error, Result},
    format::{format_metric, is_percent_metric},
    record::{
        AblationInput, BinaryCurves, Confusion, EpochRow, FoldRecord, FoldRecords,
        RESERVED_COLUMNS, RunRecord, RunStatus, VariantInfo,
    },
    regression::{MAX_SCATTER_POINTS, RegressionPoints, write_regression},
    run::{write_binary_curves, write_evaluation, write_run},
    stats::{
        ALPHA, Describe, Interval, MetricSummary, SecondaryEffect, VariantSummary, Verdict,
        describe, describe_folds, holm, paired_p, summarize, t_cdf, t_quantile,
    },
    table::{ablation_csv, curves_csv},
};
