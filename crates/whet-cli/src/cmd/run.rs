//! `whet run`: one run end to end, printed.

use crate::progress::Bars;
use crate::{Cli, RunFailed};
use anyhow::Result;
use std::path::{Path, PathBuf};
use whet::{Cache, RunStatus};
use whet_core::Progress;

/// Default output folder: `runs/<name><suffix>`, without repeating a suffix the name already
/// ends with (`mnist-ablation` ablates into `runs/mnist-ablation`, not `…-ablation-ablation`).
pub fn default_out(name: &str, suffix: &str) -> PathBuf {
    let folder = if name.ends_with(suffix) {
        name.to_string()
    } else {
        format!("{name}{suffix}")
    };
    PathBuf::from("runs").join(folder)
}

fn pct(v: f64) -> String {
    whet::report::format_metric("accuracy", v)
}

use whet::report::format_metric as fmt_metric;

/// A k-fold run's metrics: each metric's mean over the folds with its corrected 95 % interval.
fn fold_rows(cv: &whet::CrossValidation, rows: &mut Vec<(String, String)>) {
    for (k, d) in &cv.summary {
        if k == "majority_baseline" {
            continue;
        }
        let Some(mean) = d.mean else { continue };
        let mut shown = fmt_metric(k, mean);
        if let Some(ci) = d.ci95 {
            shown.push_str(&format!(
                "  [{}, {}]",
                fmt_metric(k, ci.low),
                fmt_metric(k, ci.high)
            ));
        }
        if k == "accuracy"
            && let Some(b) = cv.summary.get("majority_baseline").and_then(|b| b.mean)
        {
            shown.push_str(&format!(" (majority-class baseline {})", pct(b)));
        }
        rows.push((format!("test {k}"), shown));
    }
}

/// `whet run`.
///
/// # Errors
/// Bad input (exit 2) or a failed run (exit 1, after writing what it has).
pub fn run(
    cli: &Cli,
    pipeline: &Path,
    out: Option<&Path>,
    seed: Option<u64>,
    use_cache: bool,
    mlflow: Option<&str>,
) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let target = whet::track::MlflowTarget::resolve(&run, mlflow)?;
    let seed = seed.unwrap_or(run.seed());
    let out = out.map_or_else(|| default_out(run.name(), ""), Path::to_path_buf);
    // Before the pretrain run: `execute` checks again, but pretraining is already work.
    run.check_output(&out)?;
    let cache = Cache::new(use_cache);
    run.ensure_pretrained(&cache, &Bars::for_cli(cli).with_prefix("pretrain"))?;
    let bars = Bars::for_cli(cli);
    let tracked = target.and_then(
        |t| match whet::track::MlflowRun::start_run(&t, &run, seed) {
            Ok(r) => Some(r),
            Err(e) => {
                bars.warn(&format!("{e}; the run goes on untracked"));
                None
            }
        },
    );
    let result = run.execute(&out, seed, &cache, &bars);
    let tracked = tracked.and_then(|r| {
        let url = r.url();
        match r.finish_run(&out, result.as_ref()) {
            Ok(()) => Some(url),
            Err(e) => {
                bars.warn(&format!(
                    "{e}; the run's outputs are in {} all the same",
                    out.display()
                ));
                None
            }
        }
    });
    let outcome = result?;
    let m = &outcome.metrics;
    if cli.json {
        crate::outln!("{}", serde_json::to_string_pretty(m)?)?;
    } else {
        crate::outln!("run `{}` (seed {seed}): {}", run.name(), m.status)?;
        // (label, value) rows, printed in one aligned column whatever the metric names' length.
        let epochs = match &m.cross_validation {
            Some(_) => format!("{} (the most of any fold)", m.epochs),
            None => m.epochs.to_string(),
        };
        let mut rows: Vec<(String, String)> = vec![
            ("epochs".into(), epochs),
            ("train time".into(), format!("{:.1} s", m.train_seconds)),
        ];
        let on = m.evaluated_on;
        let evaluated = m.evaluated();
        if let Some(cv) = &m.cross_validation {
            let repeats = if cv.repeats > 1 {
                format!(" repeated {} times", cv.repeats)
            } else {
                String::new()
            };
            crate::outln!(
                "  {}-fold cross-validation{repeats}: {} models, each tested on its fold; the mean \
                 over the folds and its 95 % interval (corrected for the folds' overlapping \
                 training rows)",
                cv.k,
                cv.folds.len()
            )?;
            fold_rows(cv, &mut rows);
            rows.push(("folds".into(), out.join("folds").display().to_string()));
        }
        for (k, v) in evaluated.iter().filter(|_| m.cross_validation.is_none()) {
            if k == "majority_baseline" {
                continue; // shown next to the accuracy
            }
            let mut shown = fmt_metric(k, *v);
            if k == "accuracy"
                && let Some(b) = evaluated.get("majority_baseline")
            {
                shown.push_str(&format!(" (majority-class baseline {})", pct(*b)));
            }
            rows.push((format!("{on} {k}"), shown));
        }
        // The validation split's metrics, when the run is judged on a test set (otherwise
        // they are the rows above).
        if on == whet::EvaluatedOn::Test
            && let Some(valid) = &m.validation
        {
            for (k, v) in valid {
                if k == "majority_baseline" {
                    continue;
                }
                rows.push((format!("validation {k}"), fmt_metric(k, *v)));
            }
        }
        let configured = run.file().train.epochs;
        let lowest = outcome
            .lowest_validation_loss_epoch()
            .filter(|_| m.cross_validation.is_none());
        match (m.best_epoch, lowest) {
            (Some(b), _) => rows.push((
                "best epoch".into(),
                format!("{b} (lowest validation loss; its weights are kept)"),
            )),
            (None, Some(b)) => rows.push((
                "best epoch".into(),
                format!("{b} (lowest validation loss; the last epoch's weights are kept)"),
            )),
            (None, None) => {}
        }
        if m.stopped_early && m.cross_validation.is_some() {
            rows.push((
                "early stopping".into(),
                "stopped some folds early (their metrics.json say when)".into(),
            ));
        } else if m.stopped_early {
            rows.push((
                "early stopping".into(),
                format!("stopped after epoch {} of {configured}", m.epochs),
            ));
        } else if run.file().train.early_stopping.is_some() && m.status == RunStatus::Ok {
            rows.push((
                "early stopping".into(),
                format!("not triggered (all {configured} epochs ran)"),
            ));
        }
        if let Some(t) = m.threshold {
            rows.push((
                "threshold".into(),
                format!("{t:.4} (positive-class probability)"),
            ));
        }
        rows.push(("written to".into(), out.display().to_string()));
        if let Some(url) = &tracked {
            rows.push(("mlflow run".into(), url.clone()));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (i, (k, v)) in rows.iter().enumerate() {
            // After epochs and train time, before the metrics it qualifies.
            if i == 2 && on == whet::EvaluatedOn::Validation && m.status == RunStatus::Ok {
                crate::outln!("  (no test set: the metrics are on the validation split)")?;
            }
            crate::outln!("  {k:<width$}  {v}")?;
        }
    }
    match m.status {
        RunStatus::Ok => Ok(()),
        _ => Err(RunFailed(format!(
            "the run {}: {}; its curves are in {}",
            m.status,
            m.message.as_deref().unwrap_or("no message"),
            out.display()
        ))
        .into()),
    }
}
