//! `whet validate` and `whet schema`.

use crate::Cli;
use crate::config::{self, DataKind};
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
            Ok(l) => {
                let kind = match l.run.kind() {
                    DataKind::Images => "images",
                    DataKind::Tables => "tables",
                };
                let variants = match &l.run.ablation {
                    Some(a) => crate::variants::expand(&l.value, a)
                        .map(|v| v.len())
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
                    println!("ok: {} ({kind}{v})", p.display());
                }
            }
            Err(e) => {
                bad += 1;
                let errors: Vec<_> = match e.downcast_ref::<crate::yaml::ConfigErrors>() {
                    Some(ce) => ce
                        .0
                        .iter()
                        .map(|c| {
                            json!({"line": c.position.map(|p| p.0), "column": c.position.map(|p| p.1),
                                   "path": c.key_path, "message": c.message, "hint": c.hint})
                        })
                        .collect(),
                    None => vec![json!({"message": format!("{e:#}")})],
                };
                if cli.json {
                    report.push(json!({"file": p, "ok": false, "errors": errors}));
                } else {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
        crate::reference::markdown(&config::schema())
    } else {
        serde_json::to_string_pretty(&config::schema())? + "\n"
    };
    match out {
        Some(p) => whet_core::fsx::atomic_write(p, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(())
}
