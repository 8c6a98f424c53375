//! The command line as a practitioner meets it: progress in a log (stderr piped, as here),
//! `--log-format jsonl`, the run summary, the ablation table's run statuses, shell
//! completions, the man page and `--version`.

use crate::util::{tiny_mnist, whet};
use std::path::Path;
use std::process::Command;

/// `whet ARGS` in `dir` without `--quiet` (the shared helper hides progress), stderr piped.
fn whet_logged(dir: &Path, args: &[&str]) -> crate::util::Run {
    let o = Command::new(env!("CARGO_BIN_EXE_whet"))
        .args(args)
        .current_dir(dir)
        .env("WHET_CACHE_DIR", dir.join(".cache"))
        .output()
        .expect("the whet binary runs");
    crate::util::Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn tiny(dir: &Path, extra: &str) -> String {
    let f = dir.join("tiny.yaml");
    std::fs::write(&f, tiny_mnist(extra)).unwrap();
    f.display().to_string()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_piped_run_logs_one_plain_line_per_epoch_with_its_losses() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny(dir.path(), "");
    let r = whet_logged(dir.path(), &["run", &f, "--out", "out"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let epochs: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .collect();
    assert_eq!(epochs.len(), 3, "one line per epoch:\n{}", r.stderr);
    let curves = std::fs::read_to_string(dir.path().join("out/curves.csv")).unwrap();
    for (i, (line, row)) in epochs.iter().zip(curves.lines().skip(1)).enumerate() {
        assert!(
            line.starts_with(&format!("epoch {}/3  loss ", i + 1)),
            "{line}"
        );
        // The logged training loss is the one in curves.csv, to 4 decimals.
        let loss: f64 = row.split(',').nth(1).unwrap().parse().unwrap();
        assert!(
            line.contains(&format!("loss {loss:.4} ")),
            "{line} vs {row}"
        );
        assert!(line.contains("  val "), "validation loss missing: {line}");
        assert!(line.chars().count() <= 80, "{line}");
    }
    // The finished run is a line too; no bar or spinner drawing reaches a log.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("run tiny seed 3: ok")),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains("\u{1b}["),
        "{:?}",
        r.stderr
    );
}

#[test]
fn quiet_hides_the_epoch_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny(dir.path(), "");
    let r = whet(dir.path(), &["run", &f, "--out", "out"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("epoch 1/3"), "{}", r.stderr);
}

#[test]
fn jsonl_log_has_one_json_object_per_epoch_and_one_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny(dir.path(), "");
    let r = whet_logged(
        dir.path(),
        &["run", &f, "--out", "out", "--log-format", "jsonl"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let epochs: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "epoch").collect();
    assert_eq!(epochs.len(), 3, "{}", r.stderr);
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], i + 1);
        assert_eq!(e["epochs"], 3);
        assert!(e["train_loss"].as_f64().is_some_and(f64::is_finite), "{e}");
        assert!(e["valid_loss"].as_f64().is_some(), "{e}");
    }
    let runs: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "run").collect();
    assert_eq!(runs.len(), 1, "{}", r.stderr);
    let m = read_json(&dir.path().join("out/metrics.json"));
    assert_eq!(runs[0]["status"], "ok");
    assert_eq!(runs[0]["metric"]["value"], m["test"]["accuracy"]);
}

#[test]
fn the_summary_shows_validation_metrics_the_best_epoch_and_early_stopping() {
    let dir = tempfile::tempdir().unwrap();
    // No epoch after the first can improve by more than 1000: early stopping (patience 1)
    // ends the run after epoch 2 and keeps epoch 1.
    let f = tiny(
        dir.path(),
        "  early_stopping: { patience: 1, min_delta: 1000 }\n",
    );
    let r = whet(dir.path(), &["run", &f, "--out", "out"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let m = read_json(&dir.path().join("out/metrics.json"));
    assert_eq!(m["best_epoch"], 1, "{m}");
    assert_eq!(m["stopped_early"], true, "{m}");
    let row = |label: &str| -> String {
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` row:\n{}", r.stdout))
            .to_string()
    };
    let acc = m["validation"]["accuracy"].as_f64().unwrap();
    assert!(
        row("validation accuracy").ends_with(&format!("{:.2} %", acc * 100.0)),
        "{}",
        r.stdout
    );
    assert!(
        row("validation loss")
            .contains(&format!("{:.4}", m["validation"]["loss"].as_f64().unwrap()))
    );
    assert!(row("best epoch").contains(" 1 ("), "{}", r.stdout);
    assert!(
        row("early stopping").ends_with("stopped after epoch 2 of 3"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_ablate_table_says_which_runs_diverged() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "ablation:\n  seeds: 1\n  variants:\n    - { name: \"lr={lr}\", grid: { train.optimizer.adam.lr: [1000.0] } }\n";
    let f = tiny(dir.path(), extra);
    let r = whet_logged(dir.path(), &["ablate", &f, "--out", "ab"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let row = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` row:\n{}", r.stdout))
    };
    assert!(
        row("lr=1000").contains("0/1 ok, 1 diverged"),
        "{}",
        r.stdout
    );
    assert!(row("baseline").contains("1/1 ok"), "{}", r.stdout);
    assert!(!row("baseline").contains("diverged"), "{}", r.stdout);
    // The log has one line per finished cell, the diverged one saying so.
    let cells: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("run tiny"))
        .collect();
    assert_eq!(cells.len(), 2, "{}", r.stderr);
    assert!(
        cells
            .iter()
            .any(|l| l.starts_with("run tiny [lr=1000") && l.contains(": diverged")),
        "{}",
        r.stderr
    );
    // And every epoch of every cell, labelled with the cell (they run in parallel).
    let epochs: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(": epoch "))
        .collect();
    for e in 1..=3 {
        let want = format!("baseline seed 3: epoch {e}/3  loss ");
        assert!(
            epochs.iter().any(|l| l.starts_with(&want)),
            "no `{want}` line:\n{}",
            r.stderr
        );
    }
    assert_eq!(
        epochs.len(),
        3,
        "the diverged cell finished no epoch:\n{}",
        r.stderr
    );
}

#[test]
fn completions_are_scripts_for_the_whet_commands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = whet(dir.path(), &["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for word in ["whet", "ablate", "validate", "completions", "log-format"] {
            assert!(r.stdout.contains(word), "{shell} lacks `{word}`");
        }
    }
    let bash = whet(dir.path(), &["completions", "bash"]).stdout;
    assert!(bash.contains("complete -F _whet"), "{bash}");
    let r = whet(dir.path(), &["completions", "tcsh"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn man_prints_roff_or_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let r = whet(dir.path(), &["man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(".TH whet 1"), "{}", r.stdout);
    assert!(r.stdout.contains("ablate"), "{}", r.stdout);
    let r = whet(dir.path(), &["man", "--out", "man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let page = std::fs::read_to_string(dir.path().join("man/whet-run.1")).unwrap();
    assert!(page.contains(".TH whet-run 1"), "{page}");
    assert!(page.contains("no\\-cache"), "{page}");
    assert!(dir.path().join("man/whet.1").is_file());
    assert!(dir.path().join("man/whet-ablate.1").is_file());
}

#[test]
fn every_command_prints_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let want = format!("whet {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["run", "--version"], &["ablate", "-V"]] {
        let r = whet(dir.path(), args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, want, "{args:?}");
    }
}
