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
    local: &Local,
    mlflow: Option<&str>,
) -> Result<()> {
    let Local {
        jobs,
        fresh,
        use_cache,
    } = *local;
    let run = super::load(cli, pipeline)?;
    let target = whet::track::MlflowTarget::resolve(&run, mlflow)?;
    let out = ablation_out(&run, out);
    let plan = plan_pretrained(cli, &run, options, &out, use_cache)?;
    let cache = Cache::new(use_cache);
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
    let result = if jobs > 1 {
        let worker = worker_command(cli, &out, jobs, fresh, use_cache)?;
        plan.run_workers(&out, jobs, fresh, &worker, &bars)
    } else {
        plan.run(&out, &cache, fresh, &bars)
    };
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
    print_report(cli, &out, &report, tracked.as_deref(), &bars)
}

/// Prints an ablation's table (or `ablation.json` with --json) and its failed runs.
///
/// # Errors
/// Exit 1 when every run failed or diverged.
fn print_report(
    cli: &Cli,
    out: &Path,
    report: &whet::AblationReport,
    tracked: Option<&str>,
    bars: &Bars,
) -> Result<()> {
    if cli.json {
        crate::outln!("{}", std::fs::read_to_string(out.join("ablation.json"))?)?;
    } else {
        let s = &report.summary;
        if s.chosen.is_some() {
            crate::outln!("on the validation split:")?;
        }
        crate::out!("{}", summary_table(&report.input, &s.variants))?;
        if let Some(c) = &s.chosen {
            let m = &report.input.primary_metric;
            let ci = c
                .test
                .ci95
                .map(|ci| {
                    format!(
                        " [{}, {}]",
                        fmt_metric(m, Some(ci.low)),
                        fmt_metric(m, Some(ci.high))
                    )
                })
                .unwrap_or_default();
            crate::outln!(
                "chosen on validation: {}; its test {m}: {}{ci} ({} runs)",
                c.variant,
                fmt_metric(m, c.test.mean),
                c.test.n
            )?;
        }
        crate::outln!("report: {}", out.join("report.md").display())?;
        if let Some(url) = tracked {
            crate::outln!("mlflow run: {url}")?;
        }
    }
    for w in &report.summary.warnings {
        bars.warn(w);
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

/// The ablation's output folder: `out`, or `runs/NAME-ablation`.
fn ablation_out(run: &whet::Run, out: Option<&Path>) -> std::path::PathBuf {
    out.map_or_else(
        || super::run::default_out(run.name(), "-ablation"),
        Path::to_path_buf,
    )
}

/// The plan of `run`, made once the pretraining its variants need has run: cells hash the
/// checkpoints' content, so a plan made before would not match the one a cell worker makes
/// from plan.json. `out` is checked first (pretraining is already work).
fn plan_pretrained(
    cli: &Cli,
    run: &whet::Run,
    options: &PlanOptions,
    out: &Path,
    use_cache: bool,
) -> Result<whet::Plan> {
    let first = Ablation::plan(run, options)?;
    first.check_output(out)?;
    first.ensure_pretrained(
        &Cache::new(use_cache),
        &Bars::for_cli(cli).with_prefix("pretrain"),
    )?;
    Ok(Ablation::plan(run, options)?)
}

/// How `whet ablate` runs the cells on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    /// Worker processes (1: in this process, on the thread pool).
    pub jobs: usize,
    /// Ignore finished cells.
    pub fresh: bool,
    /// Use the stage cache.
    pub use_cache: bool,
}

/// What `whet ablate DIR` does with the plan in DIR.
#[derive(Debug, Clone, Copy)]
pub struct FolderAction {
    /// Run this cell (else from SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX, else every cell).
    pub cell: Option<usize>,
    /// Only build the report.
    pub collect: bool,
    /// Worker processes when every cell runs.
    pub jobs: usize,
    /// Ignore finished cells.
    pub fresh: bool,
    /// Use the stage cache.
    pub use_cache: bool,
}

/// The environment variables a cluster's array task gets its index from.
const INDEX_VARS: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// The worker command for `--jobs N`: this binary, `--threads` its share, `ablate OUT --cell I`.
fn worker_command(
    cli: &Cli,
    out: &Path,
    jobs: usize,
    fresh: bool,
    use_cache: bool,
) -> Result<impl Fn(usize) -> std::process::Command + Sync + use<>> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the whet binary to start workers: {e}"))?;
    let total = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = (total / jobs).max(1);
    let out = out.to_path_buf();
    Ok(move |i: usize| {
        let mut c = std::process::Command::new(&exe);
        c.arg("--quiet")
            .args(["--threads", &threads.to_string()])
            .arg("ablate")
            .arg(&out)
            .args(["--cell", &i.to_string()]);
        if fresh {
            c.arg("--fresh");
        }
        if !use_cache {
            c.arg("--no-cache");
        }
        // The worker must not take the index of an array task this process runs in.
        for v in INDEX_VARS {
            c.env_remove(v);
        }
        c
    })
}

/// `whet ablate PIPELINE --plan` / `--emit k8s`: pretrain what the variants need, then write
/// OUT/plan.json (and OUT/k8s-job.yaml).
///
/// # Errors
/// Bad input (exit 2).
pub fn plan_only(
    cli: &Cli,
    pipeline: &Path,
    out: Option<&Path>,
    options: &PlanOptions,
    use_cache: bool,
    k8s: &[String],
    emit_k8s: bool,
) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let out = ablation_out(&run, out);
    let k8s_options = if emit_k8s {
        let mut o = whet::KubernetesOptions::for_plan(run.name(), &out)?;
        o.apply(k8s)?;
        // Refuse bad settings before any pretraining or file.
        o.check()?;
        Some(o)
    } else {
        None
    };
    let plan = plan_pretrained(cli, &run, options, &out, use_cache)?;
    let path = plan.save(&out)?;
    let selected = plan.selected_cells().len();
    if let Some(o) = &k8s_options {
        let manifest = plan.kubernetes_job(&out, o)?;
        let file = out.join("k8s-job.yaml");
        whet::core::fsx::atomic_write(&file, manifest.as_bytes())?;
        crate::outln!("{} cells; plan: {}", selected, path.display())?;
        crate::outln!("kubernetes job: {}", file.display())?;
        crate::outln!("run:     kubectl apply -f {}", file.display())?;
    } else {
        let file = whet::StoredPlan::load(&out)?.file;
        crate::outln!(
            "{} cells of {} ({} runs selected); plan: {}",
            plan.cells.len(),
            plan.name,
            selected,
            path.display()
        )?;
        crate::outln!(
            "run one: {}   (I = 0 to {})",
            file.commands.cell,
            plan.cells.len() - 1
        )?;
    }
    crate::outln!(
        "then:    whet ablate {} --collect",
        whet::cluster::shell_word(&out.display().to_string())
    )?;
    Ok(())
}

/// `whet ablate DIR [--cell I | --collect]`: the plan in DIR.
///
/// # Errors
/// Bad input (exit 2); exit 1 when the cell failed, or every run failed.
pub fn plan_folder(cli: &Cli, dir: &Path, a: &FolderAction) -> Result<()> {
    let stored = whet::StoredPlan::load(dir)?;
    let bars = Bars::for_cli(cli);
    if a.collect {
        let report = stored.collect()?;
        for line in stored.rerun_lines(&report) {
            bars.warn(&line);
        }
        return print_report(cli, dir, &report, None, &bars);
    }
    let from_env = INDEX_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().map(|x| (*v, x.trim().to_string())));
    let cell = match (a.cell, from_env) {
        (Some(i), _) => Some(i),
        (None, Some((var, value))) => Some(value.parse::<usize>().map_err(|_| {
            anyhow::anyhow!("{var}={value}: not a cell index (a whole number from 0)")
        })?),
        (None, None) => None,
    };
    let Some(i) = cell else {
        // Every cell not finished yet, then the report: a resume of the planned ablation.
        let result = if a.jobs > 1 {
            let worker = worker_command(cli, dir, a.jobs, a.fresh, a.use_cache)?;
            stored
                .plan
                .run_workers(dir, a.jobs, a.fresh, &worker, &bars)
        } else {
            stored
                .plan
                .run(dir, &Cache::new(a.use_cache), a.fresh, &bars)
        };
        return print_report(cli, dir, &result?, None, &bars);
    };
    match stored.run_cell(i, &Cache::new(a.use_cache), a.fresh, &bars)? {
        None => {
            crate::outln!("cell {i}: its variant is not selected (--only); nothing to do")?;
        }
        Some(r) => {
            let rec = &r.record;
            let what = if r.kept {
                "kept from an earlier run"
            } else {
                "run"
            };
            crate::outln!(
                "cell {i} ({} seed {}): {} ({what})",
                rec.variant,
                rec.seed,
                rec.status
            )?;
            if rec.status == RunStatus::Failed {
                return Err(RunFailed(format!(
                    "cell {i} ({} seed {}) failed: {}",
                    rec.variant,
                    rec.seed,
                    rec.message.as_deref().unwrap_or("")
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// `whet ablate PIPELINE|DIR --launcher slurm`: plan (or read the plan in DIR), submit the
/// cells without a result as one job array, wait for it and collect (unless `wait` is false).
///
/// # Errors
/// Bad input or a Slurm command failing (exit 2); exit 1 when every run failed.
#[allow(clippy::too_many_arguments)]
pub fn slurm(
    cli: &Cli,
    pipeline: &Path,
    out: Option<&Path>,
    options: &PlanOptions,
    settings: &[String],
    wait: bool,
    fresh: bool,
    use_cache: bool,
) -> Result<()> {
    let (plan, run, out) = if pipeline.is_dir() {
        let stored = whet::StoredPlan::load(pipeline)?;
        if !stored.changed.is_empty() {
            anyhow::bail!(
                "the run file or input files of {} cells changed since the plan in `{}` was made; plan again with `whet ablate {} --plan --out {}`",
                stored.changed.len(),
                pipeline.display(),
                stored.file.pipeline.display(),
                pipeline.display()
            );
        }
        (stored.plan, stored.run, pipeline.to_path_buf())
    } else {
        let run = super::load(cli, pipeline)?;
        let out = ablation_out(&run, out);
        (
            plan_pretrained(cli, &run, options, &out, use_cache)?,
            run,
            out,
        )
    };
    // The run file's `ablation.slurm`, then the command line's settings.
    let mut o = run
        .file()
        .ablation
        .as_ref()
        .and_then(|a| a.slurm.clone())
        .unwrap_or_default();
    o.apply(settings)?;
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the whet binary for the job script: {e}"))?;
    let bars = Bars::for_cli(cli);
    let collect = whet::cluster::shell_word(&out.display().to_string());
    // Rounds: one without sequential seeding; with it, each round's results decide the next.
    let mut rounds = whet::Rounds::default();
    let mut submitted = false;
    let mut notes = Vec::new();
    while let Some(job) = plan.submit_slurm(&out, &exe, &o, fresh, &mut rounds)? {
        submitted = true;
        crate::outln!(
            "submitted Slurm job {}: {} cells ({})",
            job.job,
            job.cells.len(),
            job.script.display()
        )?;
        if !wait {
            crate::outln!("when it has finished: whet ablate {collect} --collect")?;
            if plan.min_seeds.is_some() {
                crate::outln!(
                    "sequential seeding: then `whet ablate {collect} --launcher slurm` submits the seeds its results call for"
                )?;
            }
            return Ok(());
        }
        bars.begin(
            &format!("Slurm job {}", job.job),
            Some(job.cells.len() as u64),
        );
        let states = whet::slurm::wait(
            &plan,
            &out,
            &job.job,
            &job.cells,
            std::time::Duration::from_millis(500),
            &bars,
        )?;
        bars.end();
        for t in states.iter().filter(|t| t.state != "COMPLETED") {
            let note = whet::slurm::task_note(&plan, &out, &job.job, t);
            bars.warn(&note);
            notes.push(note);
        }
    }
    if !submitted {
        crate::outln!("every cell already has a result; collecting")?;
        let report = plan.collect(&out, vec![])?;
        return print_report(cli, &out, &report, None, &bars);
    }
    let report = plan.collect(&out, notes)?;
    let stored = whet::StoredPlan::load(&out)?;
    for line in stored.rerun_lines(&report) {
        bars.warn(&line);
    }
    print_report(cli, &out, &report, None, &bars)
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
    let out = ablation_out(&run, out);
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
    let (seeds, runs) = match l.min_seeds {
        Some(min) => (
            format!("{min} to {} seeds", l.seeds.len()),
            format!(
                "{} runs, up to {} (sequential seeding: more seeds only for variants without a clear effect)",
                l.runs, l.max_runs
            ),
        ),
        None => (
            format!("{} seeds", l.seeds.len()),
            format!("{} runs", l.runs),
        ),
    };
    out.push_str(&format!(
        "{selected} variants × {seeds} = {runs}; metric: {} ({} is better)\n",
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
    v.map_or_else(|| "-".into(), |v| whet::report::format_metric(metric, v))
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
/// the baseline and the verdict (Holm-adjusted; the unadjusted one beside it when they differ).
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
            String::new()
        } else if v.unadjusted != v.verdict {
            format!(
                "{} (Holm; {} alone)",
                v.verdict.as_str(),
                v.unadjusted.as_str()
            )
        } else {
            v.verdict.as_str().to_string()
        };
        out.push_str(&format!(
            "{:<width$}  {runs:<sw$}  {:>18}  {:>28}  {verdict}\n",
            v.name, value, delta
        ));
    }
    out
}
