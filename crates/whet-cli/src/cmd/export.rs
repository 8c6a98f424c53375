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

/// Runs `write` into a staging folder inside `out`, then moves what it wrote into `out`. A
/// failure while preparing or writing leaves `out` as it was; so does a destination that cannot
/// be replaced (a folder where a file goes, or the reverse), which is checked before anything
/// moves. Nothing is written outside `out`.
fn staged<T>(out: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    remove_dead_stages(out);
    let stage = out.join(format!(".whet-export-{}.tmp", std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("removing a stale staging folder `{}`", stage.display()))?;
    }
    std::fs::create_dir(&stage)
        .with_context(|| format!("creating the staging folder `{}`", stage.display()))?;
    let result = write(&stage).and_then(|v| commit(&stage, out).map(|()| v));
    if let Err(e) = std::fs::remove_dir_all(&stage)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!(
            "warning: could not remove the staging folder `{}`: {e}",
            stage.display()
        );
    }
    result
}

/// Removes the staging folders (`.whet-export-PID.tmp`) that killed exports left in `out`: those
/// whose process no longer runs. Liveness is read from `/proc`; where there is no `/proc`,
/// nothing is removed (the folders are hidden and nothing reads them). Failures are ignored: the
/// folders are only clutter.
fn remove_dead_stages(out: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(out) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".whet-export-"))
            .and_then(|n| n.strip_suffix(".tmp"))
            .filter(|p| p.parse::<u32>().is_ok())
        else {
            continue;
        };
        if !proc.join(pid).exists() && e.path().is_dir() {
            restore_replaced(&e.path(), out);
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The name an earlier export folder `name` takes inside the staging folder while it is being
/// replaced.
fn replaced_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut n = std::ffi::OsString::from(".replaced-");
    n.push(name);
    n
}

/// Puts back the earlier export folders that a killed export had moved aside (`.replaced-NAME`
/// in its staging folder) but not yet replaced: those whose `NAME` is missing from `out`.
fn restore_replaced(stage: &Path, out: &Path) {
    let Ok(rd) = std::fs::read_dir(stage) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(orig) = name.to_str().and_then(|n| n.strip_prefix(".replaced-")) else {
            continue;
        };
        let dest = out.join(orig);
        if std::fs::symlink_metadata(&dest).is_err() {
            let _ = std::fs::rename(e.path(), &dest);
        }
    }
}

/// Moves every entry of `stage` into `out`, replacing earlier exports of the same name.
///
/// A file is replaced by one rename. A folder cannot be renamed over a non-empty folder, so the
/// earlier one is first moved aside into the staging folder (`.replaced-NAME`) and deleted with
/// it at the end; if the process is killed between the two renames, the next export puts the
/// earlier folder back (see [`restore_replaced`]), so it is never lost.
fn commit(stage: &Path, out: &Path) -> Result<()> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(stage)
        .with_context(|| format!("listing the staging folder `{}`", stage.display()))?
    {
        let e = e.with_context(|| format!("listing the staging folder `{}`", stage.display()))?;
        entries.push(e.path());
    }
    entries.sort();
    for src in &entries {
        let dest = out.join(src.file_name().unwrap_or_default());
        if let Ok(meta) = std::fs::symlink_metadata(&dest)
            && meta.is_dir() != src.is_dir()
        {
            bail!(
                "cannot write `{}`: a {} of that name is in the way (nothing was changed in `{}`)",
                dest.display(),
                if meta.is_dir() { "folder" } else { "file" },
                out.display()
            );
        }
    }
    for src in &entries {
        let dest = out.join(src.file_name().unwrap_or_default());
        if src.is_dir() && dest.is_dir() {
            let aside = stage.join(replaced_name(src.file_name().unwrap_or_default()));
            std::fs::rename(&dest, &aside)
                .with_context(|| format!("moving the earlier export `{}` aside", dest.display()))?;
            if let Err(e) = std::fs::rename(src, &dest) {
                let _ = std::fs::rename(&aside, &dest);
                return Err(e).with_context(|| {
                    format!("moving the export into place at `{}`", dest.display())
                });
            }
            continue;
        }
        std::fs::rename(src, &dest)
            .with_context(|| format!("moving the export into place at `{}`", dest.display()))?;
    }
    Ok(())
}

/// `whet export`.
///
/// # Errors
/// Bad input or write errors. Everything is written to a staging folder inside `out` first and
/// moved into place at the end, so a failure leaves earlier exports in `out` untouched.
pub fn export(cli: &Cli, pipeline: &Path, out: &Path, format: Option<ExportFormat>) -> Result<()> {
    let loaded = super::load(cli, pipeline)?;
    check_out(out)?;
    let bars = Bars::new(cli.quiet);
    match loaded.run.kind() {
        DataKind::Tables => {
            let fmt = table_format(format)?;
            let cfg = crate::data::tabular_config(&loaded.run)?;
            let prepared = crate::data::catch_corrupt_tables(cfg.data.tables.values(), || {
                Ok(whet_tabular::prepare(&cfg, loaded.run.seed, &bars)?)
            })?;
            let report = staged(out, |stage| {
                Ok(whet_tabular::export(&prepared, stage, fmt)?)
            })?;
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
        DataKind::Images => {
            let (train, valid, test) = staged(out, |stage| {
                crate::images::export(&loaded.run, stage, format, &bars)
            })?;
            if !cli.json {
                println!(
                    "exported {train} train / {valid} validation / {test} test images to {}",
                    out.display()
                );
            }
        }
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
    // The new data file and the joined tables the manifest names.
    let mut specs = vec![whet_tabular::TableSpec::new(data)];
    specs.extend(m.data.tables.values().cloned());
    let applied =
        crate::data::catch_corrupt_tables(&specs, || Ok(whet_tabular::apply_file(&m, data)?))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_folder_keeps_only_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::create_dir_all(out.join("train")).unwrap();
        std::fs::write(out.join("train/old.csv"), "old").unwrap();
        staged(out, |stage| {
            std::fs::create_dir_all(stage.join("train"))?;
            std::fs::write(stage.join("train/new.csv"), "new")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("train/new.csv")).unwrap(),
            "new"
        );
        assert!(!out.join("train/old.csv").exists());
        let names: Vec<_> = std::fs::read_dir(out).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "staging leftovers: {names:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_folder_moved_aside_by_a_killed_export_is_put_back() {
        // What a kill between "move the earlier folder aside" and "rename the new one into
        // place" leaves: `train` missing, the earlier one inside a dead process's stage.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let dead = out.join(".whet-export-4294967295.tmp");
        std::fs::create_dir_all(dead.join(".replaced-train")).unwrap();
        std::fs::write(dead.join(".replaced-train/old.csv"), "old").unwrap();
        std::fs::create_dir_all(dead.join("test")).unwrap();
        remove_dead_stages(out);
        assert_eq!(
            std::fs::read_to_string(out.join("train/old.csv")).unwrap(),
            "old"
        );
        assert!(!dead.exists());
        assert!(
            !out.join("test").exists(),
            "unfinished new output is not promoted"
        );
    }
}
