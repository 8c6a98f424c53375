//! `whet ablate`: every variant × seed, resumable, then the report.
//!
//! Runs go to `OUT/runs/<variant>/seed-<n>/`; each finishes by writing `record.json` atomically,
//! together with a hash of the variant's run file. A later `whet ablate` on the same folder keeps
//! every finished run whose run file is unchanged and runs only the rest (`--fresh` reruns all).
//!
//! The two cores are used by running independent runs side by side (rayon); work inside a run
//! (online augmentation) shares the same pool, so nothing is oversubscribed.

use crate::Cli;
use crate::RunFailed;
use crate::cache::{Cache, KeyBuilder};
use crate::config::{self, DataKind, RunFile};
use crate::progress::Bars;
use crate::variants::{self, AblationConfig, Seeds, Variant};
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use whet_core::{NoProgress, Progress};
use whet_report::{AblationInput, RunRecord, RunStatus, VariantInfo};

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Hash of the variant's run file and seed: a changed file invalidates the stored run.
    key: String,
    record: RunRecord,
}

fn run_key(v: &Variant, seed: u64) -> Result<String> {
    Ok(KeyBuilder::new()
        .json("variant", &v.value)?
        .part("seed", &seed.to_string())
        .finish())
}

/// The default ablation when the run file has none: leave out each augmentation op (images)
/// or each preprocessing step after the joins (tables).
fn default_ablation(run: &RunFile) -> AblationConfig {
    let leave_one_out = match run.kind() {
        DataKind::Images if run.augment.is_some() => vec!["augment.ops".to_string()],
        DataKind::Tables if !run.steps.is_empty() => vec!["steps".to_string()],
        _ => vec![],
    };
    AblationConfig {
        seeds: Seeds::Count(3),
        metric: None,
        leave_one_out,
        variants: vec![],
    }
}

fn primary_metric(run: &RunFile, ab: &AblationConfig) -> (String, bool) {
    let m = ab.metric.clone().unwrap_or_else(|| match run.model.task {
        whet_train::Task::Regression => "mse".into(),
        _ => "accuracy".into(),
    });
    let higher = whet_train::higher_is_better(&m);
    (m, higher)
}

struct Job {
    variant: usize,
    seed: u64,
    dir: PathBuf,
}

/// `whet ablate`.
///
/// # Errors
/// Bad input (exit 2); exit 1 when every run failed.
pub fn ablate(
    cli: &Cli,
    pipeline: &Path,
    out: Option<&Path>,
    seeds: Option<u64>,
    only: &[String],
    fresh: bool,
    use_cache: bool,
) -> Result<()> {
    let loaded = super::load(cli, pipeline)?;
    let run = &loaded.run;
    let mut ab = run
        .ablation
        .clone()
        .unwrap_or_else(|| default_ablation(run));
    if let Some(n) = seeds {
        if n == 0 || n > 100 {
            anyhow::bail!("--seeds {n}: expected 1 to 100");
        }
        ab.seeds = Seeds::Count(n);
    }
    let mut vs = variants::expand(&loaded.value, &ab).map_err(anyhow::Error::msg)?;
    if !only.is_empty() {
        for o in only {
            if !vs.iter().any(|v| &v.name == o) {
                let names: Vec<_> = vs.iter().map(|v| v.name.clone()).collect();
                anyhow::bail!("--only {o}: no such variant (have: {})", names.join(", "));
            }
        }
        vs.retain(|v| v.name == "baseline" || only.contains(&v.name));
    }
    let runs: Vec<RunFile> = vs
        .iter()
        .map(|v| config::load_variant(&v.value, &loaded))
        .collect::<Result<_, _>>()?;
    let seed_list = ab.seeds.resolve(run.seed);
    let out = out.map_or_else(
        || super::run::default_out(&run.name, "-ablation"),
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&out)
        .with_context(|| format!("creating the output folder `{}`", out.display()))?;
    let cache = Cache::new(use_cache);
    for r in &runs {
        super::run::ensure_pretrained(cli, r, &cache)?;
    }

    let mut jobs = Vec::new();
    for (vi, v) in vs.iter().enumerate() {
        for &s in &seed_list {
            jobs.push(Job {
                variant: vi,
                seed: s,
                dir: out.join("runs").join(&v.name).join(format!("seed-{s}")),
            });
        }
    }
    let bars = Bars::new(cli.quiet);
    bars.begin(
        &format!("{} variants × {} seeds", vs.len(), seed_list.len()),
        Some(jobs.len() as u64),
    );
    let resumed = AtomicUsize::new(0);
    let records: Vec<RunRecord> = jobs
        .par_iter()
        .map(|job| -> Result<RunRecord> {
            let v = &vs[job.variant];
            let key = run_key(v, job.seed)?;
            let record_path = job.dir.join("record.json");
            if !fresh
                && let Ok(text) = std::fs::read_to_string(&record_path)
                && let Ok(stored) = serde_json::from_str::<Stored>(&text)
                && stored.key == key
            {
                resumed.fetch_add(1, Ordering::Relaxed);
                bars.advance(1);
                return Ok(stored.record);
            }
            let record = match super::run::execute(
                &runs[job.variant],
                job.seed,
                &job.dir,
                &cache,
                &NoProgress,
                &v.name,
            ) {
                Ok(o) => o.record,
                Err(e) => RunRecord {
                    variant: v.name.clone(),
                    seed: job.seed,
                    status: RunStatus::Failed,
                    metrics: Default::default(),
                    train_seconds: 0.0,
                    curves: vec![],
                    message: Some(format!("{e:#}")),
                },
            };
            let stored = Stored { key, record };
            whet_core::fsx::atomic_write(
                &record_path,
                serde_json::to_string_pretty(&stored)?.as_bytes(),
            )?;
            bars.message(&format!(
                "{} seed {}: {}",
                v.name, job.seed, stored.record.status
            ));
            bars.advance(1);
            Ok(stored.record)
        })
        .collect::<Result<_>>()?;
    bars.end();

    let (metric, higher) = primary_metric(run, &ab);
    let resumed = resumed.load(Ordering::Relaxed);
    let mut notes = vec![format!(
        "Seeds: {:?} (the same for every variant, so differences are paired).",
        seed_list
    )];
    if resumed > 0 {
        notes.push(format!("{resumed} of {} runs were kept from an earlier, interrupted ablation (unchanged run file).", jobs.len()));
    }
    let input = AblationInput {
        title: run.name.clone(),
        pipeline: pipeline.display().to_string(),
        variants: vs
            .iter()
            .map(|v| VariantInfo {
                name: v.name.clone(),
                description: v.description.clone(),
            })
            .collect(),
        runs: records.clone(),
        primary_metric: metric,
        higher_is_better: higher,
        notes,
    };
    let summary =
        whet_report::write_ablation(&input, &out).context("writing the ablation report")?;
    if cli.json {
        println!("{}", std::fs::read_to_string(out.join("ablation.json"))?);
    } else {
        print!("{}", summary_table(&input, &summary.variants));
        println!("report: {}", out.join("report.md").display());
    }
    let failed = records
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .collect::<Vec<_>>();
    for f in &failed {
        eprintln!(
            "warning: {} seed {} failed: {}",
            f.variant,
            f.seed,
            f.message.as_deref().unwrap_or("")
        );
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

fn fmt_metric(metric: &str, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if whet_report::is_percent_metric(metric) => format!("{:.2} %", v * 100.0),
        Some(v) => format!("{v:.4}"),
    }
}

/// A plain-text table of the primary metric per variant, for the terminal.
pub fn summary_table(input: &AblationInput, variants: &[whet_report::VariantSummary]) -> String {
    let m = &input.primary_metric;
    let scale = if whet_report::is_percent_metric(m) {
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
    let mut out = format!(
        "{:<width$}  {:>5}  {:>18}  {:>28}  verdict\n",
        "variant",
        "ok",
        format!("{m} (mean ± sd)"),
        "Δ vs baseline [95 % CI]"
    );
    for v in variants {
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
            "{:<width$}  {:>2}/{:<2}  {:>18}  {:>28}  {verdict}\n",
            v.name, v.ok, v.runs, value, delta
        ));
    }
    out
}
