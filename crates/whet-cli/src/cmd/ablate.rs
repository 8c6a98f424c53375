//! `whet ablate`: plan every variant × seed, run the cells (resumable), write and print the
//! report. The work is [`whet::Plan::run`]; this module prints.

use crate::Cli;
use crate::RunFailed;
use crate::progress::Bars;
use anyhow::Result;
use std::path::Path;
use whet::report::AblationInput;
use whet::{Ablation, Cache, PlanOptions, RunStatus};
use whet_core::Progress;

/// `whet ablate`.
///
/// # Errors
/// Bad input (exit 2); exit 1 when every run failed.
pub fn ablate(
    cli: &Cli,
    pipeline: &Path,
    out: Option<&Path>,
    options: &PlanOptions,
    fresh: bool,
    use_cache: bool,
    mlflow: Option<&str>,
) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let target = whet::track::MlflowTarget::resolve(&run, mlflow)?;
    let plan = Ablation::plan(&run, options)?;
    let out = out.map_or_else(
        || super::run::default_out(run.name(), "-ablation"),
        Path::to_path_buf,
    );
    // Before the pretrain runs: `Plan::run` checks again, but pretraining is already work.
    plan.check_output(&out)?;
    let cache = Cache::new(use_cache);
    plan.ensure_pretrained(&cache, &Bars::for_cli(cli).with_prefix("pretrain"))?;
    let bars = Bars::for_cli(cli);
    let tracked = target.and_then(
        |t| match whet::track::MlflowRun::start_ablation(&t, &plan) {
            Ok(r) => Some(r),
            Err(e) => {
                bars.warn(&format!("{e}; the ablation goes on untracked"));
                None
            }
        },
    );
    let result = plan.run(&out, &cache, fresh, &bars);
    let tracked = tracked.and_then(|r| {
        let url = r.url();
        match r.finish_ablation(&plan, &out, result.as_ref()) {
            Ok(()) => Some(url),
            Err(e) => {
                bars.warn(&format!(
                    "{e}; the ablation's outputs are in {} all the same",
                    out.display()
                ));
                None
            }
        }
    });
    let report = result?;
    if cli.json {
        crate::outln!("{}", std::fs::read_to_string(out.join("ablation.json"))?)?;
    } else {
        crate::out!("{}", summary_table(&report.input, &report.summary.variants))?;
        crate::outln!("report: {}", out.join("report.md").display())?;
        if let Some(url) = &tracked {
            crate::outln!("mlflow run: {url}")?;
        }
    }
    let records = &report.input.runs;
    for f in records.iter().filter(|r| r.status == RunStatus::Failed) {
        bars.warn(&format!(
            "{} seed {} failed: {}",
            f.variant,
            f.seed,
            f.message.as_deref().unwrap_or("")
        ));
    }
    if records.iter().all(|r| r.status != RunStatus::Ok) {
        return Err(RunFailed(format!(
            "every run of the ablation failed or diverged; see {}",
            out.join("report.md").display()
        ))
        .into());
    }
    Ok(())
}

/// `whet ablate --dry-run`: the plan's variants, their changes and runs; nothing runs.
///
/// # Errors
/// Bad input (exit 2).
pub fn dry_run(
    cli: &Cli,
    pipeline: &Path,
    out: Option<&Path>,
    options: &PlanOptions,
    fresh: bool,
) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let plan = Ablation::plan(&run, options)?;
    let out = out.map_or_else(
        || super::run::default_out(run.name(), "-ablation"),
        Path::to_path_buf,
    );
    let listing = plan.listing(Some(&out), fresh);
    if cli.json {
        crate::outln!("{}", serde_json::to_string_pretty(&listing)?)?;
    } else {
        crate::out!("{}", listing_text(&listing))?;
    }
    Ok(())
}

/// The dry run's text: one line per variant (name, runs, changes), then the totals.
pub fn listing_text(l: &whet::PlanListing) -> String {
    let width = l
        .variants
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!("{} ({})\n", l.name, l.pipeline);
    for o in &l.overrides {
        out.push_str(&format!("  {o}\n"));
    }
    out.push_str(&format!("{:<width$}  {:>4}  changes\n", "variant", "runs"));
    for v in &l.variants {
        let runs = if v.selected {
            v.runs.to_string()
        } else {
            "-".into()
        };
        let mut change = v.description.clone();
        if !v.selected {
            change.push_str(" (not selected by --only)");
        } else if v.reused > 0 {
            change.push_str(&format!(" ({} already done)", v.reused));
        }
        out.push_str(&format!("{:<width$}  {runs:>4}  {change}\n", v.name));
    }
    let selected = l.variants.iter().filter(|v| v.selected).count();
    out.push_str(&format!(
        "{selected} variants × {} seeds = {} runs; metric: {} ({} is better)\n",
        l.seeds.len(),
        l.runs,
        l.metric,
        if l.higher_is_better {
            "higher"
        } else {
            "lower"
        }
    ));
    if l.reused > 0 {
        out.push_str(&format!(
            "{} of them are already in {} and would be reused ({} to run)\n",
            l.reused,
            l.out.as_deref().unwrap_or("the output folder"),
            l.runs - l.reused
        ));
    }
    out
}

fn fmt_metric(metric: &str, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if whet::report::is_percent_metric(metric) => format!("{:.2} %", v * 100.0),
        Some(v) => format!("{v:.4}"),
    }
}

/// How a variant's runs ended: `3/3 ok`, `2/3 ok, 1 diverged`, `0/3 ok, 2 diverged, 1 failed`.
fn status(v: &whet::report::VariantSummary) -> String {
    let mut s = format!("{}/{} ok", v.ok, v.runs);
    if v.diverged > 0 {
        s.push_str(&format!(", {} diverged", v.diverged));
    }
    if v.failed > 0 {
        s.push_str(&format!(", {} failed", v.failed));
    }
    s
}

/// A plain-text table of the primary metric per variant, for the terminal: how each variant's
/// runs ended (ok / diverged / failed), the metric's mean ± sd, the paired difference against
/// the baseline and the verdict.
pub fn summary_table(input: &AblationInput, variants: &[whet::report::VariantSummary]) -> String {
    let m = &input.primary_metric;
    let scale = if whet::report::is_percent_metric(m) {
        100.0
    } else {
        1.0
    };
    let unit = if scale == 100.0 { " pts" } else { "" };
    let width = variants
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let statuses: Vec<String> = variants.iter().map(status).collect();
    let sw = statuses.iter().map(String::len).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<sw$}  {:>18}  {:>28}  verdict\n",
        "variant",
        "runs",
        format!("{m} (mean ± sd)"),
        "Δ vs baseline [95 % CI]"
    );
    for (v, runs) in variants.iter().zip(&statuses) {
        let ms = v.metric(m);
        let mean = ms.and_then(|s| s.value.mean);
        let sd = ms.and_then(|s| s.value.sd);
        let value = match (mean, sd) {
            (Some(_), Some(sd)) if scale == 100.0 => {
                format!("{} ± {:.2}", fmt_metric(m, mean), sd * scale)
            }
            (Some(_), Some(sd)) => format!("{} ± {sd:.4}", fmt_metric(m, mean)),
            _ => fmt_metric(m, mean),
        };
        let delta = match ms.and_then(|s| s.delta.as_ref()) {
            Some(d) => match (d.mean, d.ci95.as_ref()) {
                (Some(dm), Some(ci)) => format!(
                    "{:+.2}{unit} [{:+.2}, {:+.2}]",
                    dm * scale,
                    ci.low * scale,
                    ci.high * scale
                ),
                (Some(dm), None) => format!("{:+.2}{unit}", dm * scale),
                _ => "-".into(),
            },
            None => "-".into(),
        };
        let verdict = if v.name == "baseline" {
            ""
        } else {
            v.verdict.as_str()
        };
        out.push_str(&format!(
            "{:<width$}  {runs:<sw$}  {:>18}  {:>28}  {verdict}\n",
            v.name, value, delta
        ));
    }
    out
}
