//! `whet validate` and `whet schema`.

use crate::Cli;
use anyhow::Result;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Checks each run file; prints one line per file (or JSON) and fails if any is invalid.
///
/// # Errors
/// When at least one file has problems (after printing all of them).
pub fn validate(cli: &Cli, paths: &[PathBuf]) -> Result<()> {
    let mut bad = 0usize;
    let mut report = Vec::new();
    for p in paths {
        match super::load(cli, p) {
            Ok(run) => {
                let kind = if run.is_images() { "images" } else { "tables" };
                let variants = match &run.file().ablation {
                    Some(_) => whet::Ablation::plan(&run, &Default::default())
                        .map(|p| p.variants.len())
                        .unwrap_or(0),
                    None => 0,
                };
                if cli.json {
                    report.push(json!({"file": p, "ok": true, "data": kind, "variants": variants}));
                } else {
                    let v = if variants > 0 {
                        format!(", {variants} ablation variants")
                    } else {
                        String::new()
                    };
                    crate::outln!("ok: {} ({kind}{v})", p.display())?;
                }
            }
            Err(e) => {
                bad += 1;
                let config = match e.downcast_ref::<whet::Error>() {
                    Some(whet::Error::Config(ce)) => Some(ce),
                    _ => None,
                };
                let errors: Vec<_> = match config {
                    Some(ce) => ce
                        .0
                        .iter()
                        .map(|c| {
                            json!({"line": c.position.map(|p| p.0), "column": c.position.map(|p| p.1),
                                   "path": c.key_path, "message": c.message, "hint": c.hint})
                        })
                        .collect(),
                    None => vec![json!({"message": crate::render_error(&e)})],
                };
                if cli.json {
                    report.push(json!({"file": p, "ok": false, "errors": errors}));
                } else {
                    eprintln!("error: {}", crate::render_error(&e));
                }
            }
        }
    }
    if cli.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} run files are invalid", paths.len());
    }
    Ok(())
}

/// Prints (or writes) the JSON Schema of run files.
///
/// # Errors
/// The output file cannot be written.
pub fn schema(out: Option<&Path>, markdown: bool) -> Result<()> {
    let text = if markdown {
        whet::reference_markdown()
    } else {
        whet::schema_json()
    };
    match out {
        Some(p) => whet_core::fsx::atomic_write(p, text.as_bytes())?,
        None => crate::out!("{text}")?,
    }
    Ok(())
}
