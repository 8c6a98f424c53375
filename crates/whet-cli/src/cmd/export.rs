//! `whet export` and `whet apply`: the processed data sets with a manifest of the fitted
//! parameters, and the replay of that manifest on new data.

use crate::config::DataKind;
use crate::progress::Bars;
use crate::{Cli, ExportFormat};
use anyhow::{Context, Result, bail};
use std::path::Path;

fn table_format(f: Option<ExportFormat>) -> Result<whet_tabular::ExportFormat> {
    Ok(match f {
        None | Some(ExportFormat::Parquet) => whet_tabular::ExportFormat::Parquet,
        Some(ExportFormat::Csv) => whet_tabular::ExportFormat::Csv,
        Some(ExportFormat::Npy) => whet_tabular::ExportFormat::Npy,
        Some(other) => bail!("--format {other:?}: tables export as parquet, csv or npy"),
    })
}

/// Refuses to write into a folder that is a file, or into the data folder itself.
fn check_out(out: &Path) -> Result<()> {
    if out.is_file() {
        bail!("--out `{}` is a file; give a folder", out.display());
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating the output folder `{}`", out.display()))?;
    Ok(())
}

/// `whet export`.
///
/// # Errors
/// Bad input or write errors (earlier exports in `out` are replaced file by file, atomically).
pub fn export(cli: &Cli, pipeline: &Path, out: &Path, format: Option<ExportFormat>) -> Result<()> {
    let loaded = super::load(cli, pipeline)?;
    check_out(out)?;
    let bars = Bars::new(cli.quiet);
    match loaded.run.kind() {
        DataKind::Tables => {
            let fmt = table_format(format)?;
            let cfg = crate::data::tabular_config(&loaded.run)?;
            let prepared = whet_tabular::prepare(&cfg, loaded.run.seed, &bars)?;
            let report = whet_tabular::export(&prepared, out, fmt)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"files": report.files, "manifest": report.manifest})
                    )?
                );
            } else {
                println!(
                    "exported {} train / {} validation / {} test rows × {} features to {}",
                    prepared.train.x.nrows(),
                    prepared.validation.x.nrows(),
                    prepared.test.x.nrows(),
                    prepared.features.len(),
                    out.display()
                );
                for f in &report.files {
                    println!("  {}", f.name);
                }
                println!("  manifest.json");
            }
        }
        DataKind::Images => crate::images::export(cli, &loaded.run, out, format, &bars)?,
    }
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
    format: ExportFormat,
) -> Result<()> {
    let m = whet_tabular::Manifest::load(manifest)?;
    check_out(out)?;
    let applied = whet_tabular::apply_file(&m, data)?;
    let fmt = table_format(Some(format))?;
    let files = whet_tabular::write_split(
        out,
        "applied",
        &applied.x,
        applied.y.as_ref(),
        &applied.features,
        fmt,
    )?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"files": files, "rows": applied.x.nrows()})
            )?
        );
    } else {
        println!(
            "applied {} to {}: {} rows × {} features",
            manifest.display(),
            data.display(),
            applied.x.nrows(),
            applied.features.len()
        );
        if applied.target_missing_dropped > 0 {
            println!(
                "  {} rows dropped: their target is missing",
                applied.target_missing_dropped
            );
        }
        for f in files {
            println!("  {}", out.join(f.name).display());
        }
    }
    Ok(())
}
