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
        crate::outln!("  epochs            {}", m.epochs)?;
        crate::outln!("  train time        {:.1} s", m.train_seconds)?;
        if m.evaluated_on == whet::EvaluatedOn::Validation && m.status == RunStatus::Ok {
            crate::outln!("  (no test set: the metrics are on the validation split)")?;
        }
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
            crate::outln!("  {:<18} {shown}", format!("{on} {k}"))?;
        }
        if let Some(t) = m.threshold {
            crate::outln!("  threshold         {t:.4} (positive-class probability)")?;
        }
        crate::outln!("  written to        {}", out.display())?;
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
