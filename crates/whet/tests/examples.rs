//! The examples in `examples/` (the image one is also the README's) run on the shipped data.

mod common;

use common::repo;
use std::path::Path;
use std::process::Command;

/// Runs the example binary `name` (built by `cargo test` beside the test binaries) in `dir`.
fn run_example(name: &str, dir: &Path) {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(name);
    let out = Command::new(&bin)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (`cargo test --workspace` builds the examples; a filtered run may not)",
                bin.display()
            )
        });
    assert!(
        out.status.success(),
        "{name}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The examples use paths relative to the repository root, as `cargo run --example` from there
/// does: they run in a folder with a link to `datasets/`.
#[test]
fn the_examples_run_on_the_shipped_data_and_the_readme_shows_the_image_one() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let file = std::fs::read_to_string(repo().join("crates/whet/examples/images.rs")).unwrap();
    // The README shows the file without its `//!` line (which the docs lint wants).
    let example: String = file
        .lines()
        .filter(|l| !l.starts_with("//!"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md must show crates/whet/examples/images.rs verbatim"
    );
    assert!(
        example.lines().count() <= 15,
        "the README example grew past 15 lines"
    );

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("datasets"), dir.path().join("datasets")).unwrap();
    run_example("images", dir.path());
    let m: whet::Metrics = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/mnist-rust/metrics.json")).unwrap(),
    )
    .unwrap();
    // 1,000 training images, 5 epochs of a 128-unit MLP with elastic distortion.
    assert!(m.test["accuracy"] > 0.8, "{:?}", m.test);
    assert_eq!(m.test_samples, 10_000);

    run_example("tables", dir.path());
    let out = dir.path().join("runs/flights-export");
    for f in [
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "manifest.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let manifest = whet::Manifest::load(&out.join("manifest.json")).unwrap();
    assert_eq!(manifest.kind, whet::ManifestKind::Export);
    let tables = manifest.tables().unwrap();
    assert!(
        tables.features.iter().any(|f| f.starts_with("carrier")),
        "{:?}",
        tables.features
    );
    assert!(
        tables.features.iter().any(|f| f.ends_with("_missing")),
        "{:?}",
        tables.features
    );
}
