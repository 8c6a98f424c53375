//! `whet run`: one run end to end, printed.

use crate::progress::Bars;
use crate::{Cli, RunFailed};
use anyhow::Result;
use std::path::{Path, PathBuf};
use whet::{Cache, RunStatus};

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
    format!("{:.2} %", v * 100.0)
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
) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let seed = seed.unwrap_or(run.seed());
    let out = out.map_or_else(|| default_out(run.name(), ""), Path::to_path_buf);
    // Before the pretrain run: `execute` checks again, but pretraining is already work.
    run.check_output(&out)?;
    let cache = Cache::new(use_cache);
    run.ensure_pretrained(&cache, &Bars::with_prefix(cli.quiet, "pretrain"))?;
    let bars = Bars::new(cli.quiet);
    let outcome = run.execute(&out, seed, &cache, &bars)?;
    let m = &outcome.metrics;
    if cli.json {
        crate::outln!("{}", serde_json::to_string_pretty(m)?)?;
    } else {
        crate::outln!("run `{}` (seed {seed}): {}", run.name(), m.status)?;
        // (label, value) rows, printed in one aligned column whatever the metric names' length.
        let mut rows: Vec<(String, String)> = vec![
            ("epochs".into(), m.epochs.to_string()),
            ("train time".into(), format!("{:.1} s", m.train_seconds)),
        ];
        let on = m.evaluated_on;
        let evaluated = m.evaluated();
        for (k, v) in &evaluated {
            if k == "majority_baseline" {
                continue; // shown next to the accuracy
            }
            let mut shown = if whet::report::is_percent_metric(k) {
                pct(*v)
            } else {
                format!("{v:.4}")
            };
            if k == "accuracy"
                && let Some(b) = evaluated.get("majority_baseline")
            {
                shown.push_str(&format!(" (majority-class baseline {})", pct(*b)));
            }
            rows.push((format!("{on} {k}"), shown));
        }
        if let Some(t) = m.threshold {
            rows.push((
                "threshold".into(),
                format!("{t:.4} (positive-class probability)"),
            ));
        }
        rows.push(("written to".into(), out.display().to_string()));
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
