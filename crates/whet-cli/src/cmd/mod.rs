//! The commands. Each takes the parsed [`Cli`] and returns `anyhow::Result`; errors that mean
//! "the run failed" carry [`crate::RunFailed`] (exit 1), everything else is bad input (exit 2).

pub mod ablate;
pub mod audit;
pub mod docs;
pub mod export;
pub mod predict;
pub mod preview;
pub mod run;
pub mod validate;

use crate::{Cli, Command};
use anyhow::Result;
use std::path::Path;

/// Runs the command in `cli`.
///
/// # Errors
/// Whatever the command reports.
pub fn dispatch(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Run {
            pipeline,
            out,
            seed,
            no_cache,
            mlflow,
        } => run::run(
            cli,
            pipeline,
            out.as_deref(),
            *seed,
            !*no_cache,
            mlflow.as_deref(),
        ),
        Command::Ablate {
            pipeline,
            out,
            seeds,
            only,
            sweep,
            dry_run,
            plan,
            cell,
            collect,
            jobs,
            emit,
            k8s,
            launcher,
            slurm,
            no_wait,
            fresh,
            no_cache,
            mlflow,
        } => {
            let options = whet::PlanOptions {
                seeds: *seeds,
                only: only.clone(),
                sweeps: sweep
                    .iter()
                    .map(|s| whet::Sweep::parse(s))
                    .collect::<whet::Result<_>>()?,
            };
            if launcher.is_some() {
                return ablate::slurm(
                    cli,
                    pipeline,
                    out.as_deref(),
                    &options,
                    slurm,
                    !*no_wait,
                    *fresh,
                    !*no_cache,
                );
            }
            if pipeline.is_dir() {
                // The plan file holds how the plan was made; options that would change it are
                // refused rather than ignored.
                let given: Vec<&str> = [
                    ("--seeds", seeds.is_some()),
                    ("--only", !only.is_empty()),
                    ("--sweep", !sweep.is_empty()),
                    ("--set", !cli.set.is_empty()),
                    ("--plan", *plan),
                    ("--dry-run", *dry_run),
                    ("--emit", emit.is_some()),
                    ("--out", out.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, on)| on.then_some(name))
                .collect();
                if !given.is_empty() {
                    anyhow::bail!(
                        "{}: `{}` is an ablation's folder, whose plan.json fixes the run file and its options; to change them, plan again: `whet ablate PIPELINE [OPTIONS] --plan --out {}`",
                        given.join(", "),
                        pipeline.display(),
                        pipeline.display()
                    );
                }
                return ablate::plan_folder(
                    cli,
                    pipeline,
                    &ablate::FolderAction {
                        cell: *cell,
                        collect: *collect,
                        jobs: usize::from(*jobs),
                        fresh: *fresh,
                        use_cache: !*no_cache,
                    },
                );
            }
            if cell.is_some() || *collect {
                anyhow::bail!(
                    "--cell and --collect take an ablation's output folder (with plan.json), not `{}`; make one with `whet ablate {} --plan --out DIR`",
                    pipeline.display(),
                    pipeline.display()
                );
            }
            if *dry_run {
                ablate::dry_run(cli, pipeline, out.as_deref(), &options, *fresh)
            } else if *plan || emit.is_some() {
                ablate::plan_only(
                    cli,
                    pipeline,
                    out.as_deref(),
                    &options,
                    !*no_cache,
                    k8s,
                    emit.is_some(),
                )
            } else {
                ablate::ablate(
                    cli,
                    pipeline,
                    out.as_deref(),
                    &options,
                    &ablate::Local {
                        jobs: usize::from(*jobs),
                        fresh: *fresh,
                        use_cache: !*no_cache,
                    },
                    mlflow.as_deref(),
                )
            }
        }
        Command::Export {
            pipeline,
            out,
            format,
            shard_size,
            augmented_copies,
            keep,
        } => export::export(
            cli,
            pipeline,
            out,
            *format,
            shard_size.map(|s| s.bytes()),
            *augmented_copies,
            keep,
        ),
        Command::Apply {
            manifest,
            data,
            out,
            format,
            keep,
        } => export::apply(cli, manifest, data, out, *format, keep),
        Command::Predict {
            run,
            data,
            out,
            keep,
            tables,
            skip_bad,
        } => predict::predict(cli, run, data, out, keep, tables, skip_bad.as_ref()),
        Command::Evaluate {
            run,
            data,
            out,
            tables,
            labels,
        } => predict::evaluate(cli, run, data, out, tables, labels.as_deref()),
        Command::ExportModel {
            run_dir,
            format,
            layout,
            out,
        } => export::export_model(cli, run_dir, *format, *layout, out),
        Command::Preview {
            pipeline,
            out,
            samples,
            versions,
        } => preview::preview(cli, pipeline, out, *samples, *versions),
        Command::Audit { pipeline } => audit::audit(cli, pipeline),
        Command::Validate { pipelines } => validate::validate(cli, pipelines),
        Command::Schema { out, markdown } => validate::schema(out.as_deref(), *markdown),
        Command::Completions { shell } => docs::completions(*shell),
        Command::Man { out } => docs::man(out.as_deref()),
    }
}

/// Loads and validates a run file with the command line's `--set` overrides.
///
/// # Errors
/// Every problem in the file, located.
pub fn load(cli: &Cli, path: &Path) -> Result<whet::Run> {
    let overrides = cli
        .set
        .iter()
        .map(|s| whet::Override::parse(s))
        .collect::<whet::Result<Vec<_>>>()?;
    let run = whet::Run::load(path, &overrides)?;
    // The run file's `memory:` is the budget unless `--max-memory` gave one.
    if let (None, Some(b)) = (cli.max_memory, run.memory()) {
        whet_core::budget::set(b);
    }
    Ok(run)
}
