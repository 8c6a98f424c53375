//! `whet run`: one run end to end, and the executor `whet ablate` calls for each run.

use crate::cache::Cache;
use crate::config::RunFile;
use crate::data::{self, PreparedData};
use crate::progress::Bars;
use crate::{Cli, RunFailed};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use whet_core::Progress;
use whet_report::{Confusion, EpochRow, RunRecord, RunStatus};
use whet_train::{BatchSource, EpochRecord, Evaluation, Metrics, Observer};

/// Draws the epoch bar from the trainer's events.
struct EpochBars<'a> {
    bars: &'a dyn Progress,
    epochs_started: bool,
}

impl Observer for EpochBars<'_> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if !self.epochs_started {
            self.bars.begin("training", Some((epochs * batches) as u64));
            self.epochs_started = true;
        }
        self.bars.message(&format!("epoch {epoch}/{epochs}"));
    }
    fn batch_end(&mut self, _epoch: usize, _batch: usize, _loss: f64) {
        self.bars.advance(1);
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        let v = r
            .valid_loss
            .map(|v| format!(" val {v:.4}"))
            .unwrap_or_default();
        self.bars
            .message(&format!("epoch {} loss {:.4}{v}", r.epoch, r.train_loss));
    }
}

fn rows(curves: &[EpochRecord]) -> Vec<EpochRow> {
    curves
        .iter()
        .map(|c| EpochRow {
            epoch: c.epoch,
            train_loss: c.train_loss,
            train_accuracy: c.train_accuracy,
            val_loss: c.valid_loss,
            val_accuracy: c.valid_accuracy,
            seconds: c.seconds,
        })
        .collect()
}

/// Flat metric names of an evaluation: `accuracy`, `loss`, `balanced_accuracy`, `roc_auc`,
/// `mse`, `mae`, `r2`.
pub fn flat_metrics(e: &Evaluation) -> BTreeMap<String, f64> {
    e.flat()
}

/// The outcome of one run.
pub struct Outcome {
    /// What the report needs.
    pub record: RunRecord,
    /// Whether the data came from the cache.
    pub cache_hits: Vec<String>,
}

/// Runs `run` with `seed`, writing everything into `out`. Data errors are returned as errors;
/// a diverged run is an `Ok` outcome with status `diverged` (its curves are written).
///
/// # Errors
/// Bad data or config, or outputs that cannot be written.
pub fn execute(
    run: &RunFile,
    seed: u64,
    out: &Path,
    cache: &Cache,
    bars: &dyn Progress,
    variant: &str,
) -> Result<Outcome> {
    let started = Instant::now();
    bars.begin("preparing data", None);
    let PreparedData {
        mut train,
        mut valid,
        mut test,
        classes,
        manifest,
        summary,
        cache_hits,
    } = data::prepare(run, seed, cache, bars)?;
    bars.end();
    let input_dim = train.input_dim();
    let output_dim = train.target_dim();
    let mut model = whet_train::build_model(&run.model, &run.train, input_dim, output_dim, seed)
        .context("building the network")?;
    let mut obs = EpochBars {
        bars,
        epochs_started: false,
    };
    let fitted = whet_train::fit(
        &mut model,
        &run.train,
        seed,
        train.as_mut(),
        valid.as_mut().map(|v| v as &mut dyn BatchSource),
        &mut obs,
    );
    bars.end();
    let (status, curves, message, report) = match fitted {
        Ok(r) => (RunStatus::Ok, r.curves.clone(), None, Some(r)),
        Err(whet_train::Error::Diverged(d)) => {
            let msg = d.to_string();
            (RunStatus::Diverged, d.curves.clone(), Some(msg), None)
        }
        Err(e) => return Err(anyhow::Error::new(e).context("training")),
    };
    let mut metrics = BTreeMap::new();
    let mut confusion = None;
    let mut test_eval = Value::Null;
    let mut valid_eval = Value::Null;
    if status == RunStatus::Ok {
        let e = whet_train::evaluate(&model, &mut test).context("evaluating on the test set")?;
        metrics = flat_metrics(&e);
        if let Metrics::Classification(c) = &e.metrics {
            let labels = if classes.len() == c.confusion.len() {
                classes.clone()
            } else {
                (0..c.confusion.len()).map(|i| i.to_string()).collect()
            };
            confusion = Some(Confusion {
                labels,
                counts: c.confusion.clone(),
            });
        }
        test_eval = serde_json::to_value(&e)?;
        if let Some(v) = valid.as_mut() {
            valid_eval = serde_json::to_value(whet_train::evaluate(&model, v)?)?;
        }
        whet_train::checkpoint::save(&model, &out.join("model.safetensors"))
            .context("saving the model")?;
    }
    let train_seconds = report
        .as_ref()
        .map_or_else(|| curves.iter().map(|c| c.seconds).sum(), |r| r.seconds);
    let record = RunRecord {
        variant: variant.to_string(),
        seed,
        status,
        metrics: metrics.clone(),
        train_seconds,
        curves: rows(&curves),
        message: message.clone(),
    };
    whet_report::write_run(&record, confusion.as_ref(), out)
        .context("writing the run's curves and charts")?;
    let mut test_obj = serde_json::Map::new();
    for (k, v) in &metrics {
        test_obj.insert(k.clone(), json!(v));
    }
    let metrics_json = json!({
        "name": run.name,
        "variant": variant,
        "seed": seed,
        "status": status,
        "message": message,
        "test": test_obj,
        "test_detail": test_eval,
        "validation": valid_eval,
        "train_seconds": train_seconds,
        "total_seconds": started.elapsed().as_secs_f64(),
        "best_epoch": report.as_ref().and_then(|r| r.best_epoch),
        "stopped_early": report.as_ref().is_some_and(|r| r.stopped_early),
        "samples_per_second": report.as_ref().map(|r| r.samples_per_second),
        "parameters": model.parameter_count(),
        "cache_hits": cache_hits,
    });
    whet_core::fsx::atomic_write(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(&metrics_json)?.as_bytes(),
    )?;
    let manifest_json = json!({
        "format": "whet-run-manifest/1",
        "whet_version": env!("CARGO_PKG_VERSION"),
        "run": run,
        "seed": seed,
        "data": summary,
        "preprocessing": manifest,
        "architecture": model.architecture(),
    });
    whet_core::fsx::atomic_write(
        &out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest_json)?.as_bytes(),
    )?;
    Ok(Outcome { record, cache_hits })
}

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

fn pct(v: Option<&f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2} %", v * 100.0))
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
    let loaded = super::load(cli, pipeline)?;
    let run = &loaded.run;
    let seed = seed.unwrap_or(run.seed);
    let out = out.map_or_else(|| default_out(&run.name, ""), Path::to_path_buf);
    let cache = Cache::new(use_cache);
    ensure_pretrained(cli, run, &cache)?;
    let bars = Bars::new(cli.quiet);
    let outcome = execute(run, seed, &out, &cache, &bars, "baseline")?;
    let r = &outcome.record;
    if cli.json {
        println!("{}", std::fs::read_to_string(out.join("metrics.json"))?);
    } else {
        println!("run `{}` (seed {seed}): {}", run.name, r.status);
        if let Some(last) = r.curves.last() {
            println!("  epochs            {}", last.epoch);
        }
        println!("  train time        {:.1} s", r.train_seconds);
        for (k, v) in &r.metrics {
            let shown = if whet_report::is_percent_metric(k) {
                pct(Some(v))
            } else {
                format!("{v:.4}")
            };
            println!("  test {k:<13} {shown}");
        }
        println!("  written to        {}", out.display());
    }
    match r.status {
        RunStatus::Ok => Ok(()),
        _ => Err(RunFailed(format!(
            "the run {}: {}; its curves are in {}",
            r.status,
            r.message.as_deref().unwrap_or("no message"),
            out.display()
        ))
        .into()),
    }
}

/// Runs `run.pretrain` first when its output is missing or stale (its run file changed).
///
/// # Errors
/// The pretrain run file is invalid, or its run failed.
pub fn ensure_pretrained(cli: &Cli, run: &RunFile, cache: &Cache) -> Result<()> {
    let Some(p) = &run.pretrain else {
        return Ok(());
    };
    let loaded = super::load(cli, &p.pipeline)
        .with_context(|| format!("loading the pretrain run file `{}`", p.pipeline.display()))?;
    let key = crate::cache::KeyBuilder::new()
        .json("pretrain", &loaded.value)?
        .finish();
    let stamp = p.out.join("pretrain.key");
    if std::fs::read_to_string(&stamp).is_ok_and(|k| k == key)
        && p.out.join("model.safetensors").is_file()
    {
        return Ok(());
    }
    let bars = Bars::with_prefix(cli.quiet, "pretrain");
    let outcome = execute(
        &loaded.run,
        loaded.run.seed,
        &p.out,
        cache,
        &bars,
        "pretrain",
    )?;
    if outcome.record.status != RunStatus::Ok {
        return Err(RunFailed(format!(
            "the pretrain run `{}` {}",
            p.pipeline.display(),
            outcome.record.status
        ))
        .into());
    }
    whet_core::fsx::atomic_write(&stamp, key.as_bytes())?;
    Ok(())
}
