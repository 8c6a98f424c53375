//! Inputs that aborted the fuzzer (kept by its supervisor in `crashes/<target>-abort/`): an abort
//! cannot be caught in-process, so each is replayed in a child process, which must exit normally.

use std::path::Path;
use std::process::Command;

#[test]
fn inputs_that_aborted_now_end_normally() {
    let crashes = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("crashes");
    let mut failing = Vec::new();
    for target in ["yaml", "idx", "csv", "image", "parquet"] {
        let Ok(rd) = std::fs::read_dir(crashes.join(format!("{target}-abort"))) else {
            continue;
        };
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let out = Command::new(env!("CARGO_BIN_EXE_whet-fuzz"))
                .args([target, "--replay"])
                .arg(&f)
                .output()
                .expect("the fuzzer runs");
            if !out.status.success() {
                failing.push(format!(
                    "{}: {} {}",
                    f.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .find(|l| l.contains("memory allocation") || l.contains("panicked"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    assert!(failing.is_empty(), "{}", failing.join("\n"));
}
