//! `whet predict` and `whet evaluate`: a trained run used on new data. The work is
//! [`whet::predict`] and [`whet::evaluate`].

use crate::Cli;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `whet predict`.
///
/// # Errors
/// Bad input, unscorable rows without `--skip-bad`, write errors.
pub fn predict(
    cli: &Cli,
    run: &Path,
    data: &[PathBuf],
    out: &Path,
    keep: &[String],
    tables: &[(String, PathBuf)],
    skip_bad: Option<&Option<PathBuf>>,
) -> Result<()> {
    let options = whet::PredictOptions {
        keep: keep.to_vec(),
        tables: tables.iter().cloned().collect::<BTreeMap<_, _>>(),
        bad_rows: match skip_bad {
            None => whet::BadRows::Fail,
            Some(file) => whet::BadRows::Skip(file.clone()),
        },
    };
    let bars = crate::progress::Bars::for_cli(cli);
    let r = whet::predict(run, data, out, &options, &bars)?;
    if cli.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "out": r.out,
                "rows_in": r.rows_in,
                "rows_written": r.rows_written,
                "skipped": r.skipped,
                "skipped_file": r.skipped_file,
                "removed_by_steps": r.removed_by_steps,
                "columns": r.columns,
                "streamed": r.streamed,
            }))?
        )?;
        return Ok(());
    }
    crate::outln!(
        "predicted {} of {} rows into {} (columns: {})",
        r.rows_written,
        r.rows_in,
        r.out.display(),
        r.columns.join(", ")
    )?;
    if let Some(f) = r.skipped_file.as_ref().filter(|_| r.skipped > 0) {
        crate::outln!(
            "  {} rows could not be scored: listed in {}",
            r.skipped,
            f.display()
        )?;
    }
    if r.removed_by_steps > 0 {
        crate::outln!(
            "  {} rows were removed by the run's own steps before the split (a join or drop_rows), as in training",
            r.removed_by_steps
        )?;
    }
    for f in &r.streamed {
        crate::outln!(
            "  {} was over the memory budget: read a chunk of rows at a time",
            f.display()
        )?;
    }
    Ok(())
}

/// `whet evaluate`.
///
/// # Errors
/// Bad input or write errors.
pub fn evaluate(
    cli: &Cli,
    run: &Path,
    data: &Path,
    out: &Path,
    tables: &[(String, PathBuf)],
    labels: Option<&Path>,
) -> Result<()> {
    let options = whet::EvaluateOptions {
        tables: tables.iter().cloned().collect::<BTreeMap<_, _>>(),
        labels: labels.map(Path::to_path_buf),
    };
    let r = whet::evaluate(run, data, out, &options)?;
    if cli.json {
        crate::outln!("{}", serde_json::to_string_pretty(&r.metrics)?)?;
        return Ok(());
    }
    crate::outln!(
        "evaluated {} on {} rows of {}:",
        run.display(),
        r.metrics.test_samples,
        data.display()
    )?;
    for (k, v) in &r.metrics.test {
        crate::outln!("  {k:<18} {v:.4}")?;
    }
    if r.target_missing_dropped > 0 {
        crate::outln!(
            "  {} rows dropped: their target is missing",
            r.target_missing_dropped
        )?;
    }
    for (class, n) in &r.left_out {
        crate::outln!("  {n} images left out: their class `{class}` is not one of the run's")?;
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
    Ok(())
}
