//! `whet export`, `whet apply` and `whet export-model`: the processed data sets with the run's
//! manifest, the replay of a manifest on new data, and a run's network as a file. The work is
//! [`whet::Run::export`], [`whet::apply`] and [`whet::export_model`].

use crate::Cli;
use crate::progress::Bars;
use anyhow::Result;
use std::path::Path;
use whet::{Cache, ExportOptions};

/// `whet export`.
///
/// # Errors
/// Bad input or write errors; a failure leaves earlier exports in `out` untouched.
pub fn export(
    cli: &Cli,
    pipeline: &Path,
    out: &Path,
    format: Option<whet::ExportFormat>,
    shard_bytes: Option<u64>,
    augmented_copies: Option<usize>,
    keep: &[String],
) -> Result<()> {
    let run = super::load(cli, pipeline)?;
    let bars = Bars::for_cli(cli);
    let options = ExportOptions {
        format,
        augmented_copies,
        keep: keep.to_vec(),
        shard_bytes,
    };
    let report = run.export(out, &options, &Cache::new(true), &bars)?;
    if cli.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "files": report.files,
                "manifest": out.join("manifest.json"),
            }))?
        )?;
        return Ok(());
    }
    let [train, valid, test] = report.rows;
    if report.images {
        crate::outln!(
            "exported {train} train / {valid} validation / {test} test images to {}",
            out.display()
        )?;
    } else {
        crate::outln!(
            "exported {train} train / {valid} validation / {test} test rows × {} features to {}",
            report.features,
            out.display()
        )?;
    }
    for f in &report.files {
        crate::outln!("  {}", f.name)?;
    }
    crate::outln!("  manifest.json")?;
    Ok(())
}

/// `whet apply`.
///
/// # Errors
/// Unreadable manifest or data, or data that does not fit the manifest.
pub fn apply(
    cli: &Cli,
    manifest: &Path,
    data: &Path,
    out: &Path,
    format: whet::ExportFormat,
    keep: &[String],
) -> Result<()> {
    let bars = Bars::for_cli(cli);
    let r = whet::apply(manifest, data, out, format.table_format()?, keep, &bars)?;
    if cli.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"files": r.files, "rows": r.rows, "streamed": r.streamed})
            )?
        )?;
    } else {
        crate::outln!(
            "applied {} to {}: {} rows × {} features",
            manifest.display(),
            data.display(),
            r.rows,
            r.features.len()
        )?;
        if r.target_missing_dropped > 0 {
            crate::outln!(
                "  {} rows dropped: their target is missing",
                r.target_missing_dropped
            )?;
        }
        if r.streamed {
            crate::outln!(
                "  {} was over the memory budget: read a chunk of rows at a time",
                data.display()
            )?;
        }
        for f in &r.files {
            crate::outln!("  {}", f.display())?;
        }
    }
    Ok(())
}

/// `whet export-model`.
///
/// # Errors
/// A folder that is not a finished run, an `out` among its files, `--layout` with ONNX, or a
/// write error.
pub fn export_model(
    cli: &Cli,
    run_dir: &Path,
    format: whet::ModelFormat,
    layout: Option<whet::WeightLayout>,
    out: &Path,
) -> Result<()> {
    let options = whet::ModelExportOptions { format, layout };
    let r = whet::export_model(run_dir, out, &options)?;
    if cli.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "out": r.out,
                "input": r.input,
                "outputs": r.outputs,
                "in_graph": r.in_graph,
                "outside": r.outside,
            }))?
        )?;
        return Ok(());
    }
    crate::outln!("wrote {}", r.out.display())?;
    match r.format {
        whet::ModelFormat::Safetensors => crate::outln!("  tensors: {}", r.input)?,
        whet::ModelFormat::Onnx => {
            crate::outln!("  input:  {}", r.input)?;
            for o in &r.outputs {
                crate::outln!("  output: {o}")?;
            }
            for s in &r.in_graph {
                crate::outln!("  in the graph: {s}")?;
            }
            for s in &r.outside {
                crate::outln!("  not in the graph (run it before): {s}")?;
            }
        }
    }
    Ok(())
}
