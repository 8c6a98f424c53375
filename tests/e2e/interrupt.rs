//! Interrupted runs (issue 8): a `whet run`, `whet export` or `whet ablate` killed with SIGKILL
//! (no chance to clean up) at many points while it works.
//!
//! What a kill may leave: every result is written by `whet_core::fsx::atomic_write` (a temporary
//! sibling named `.NAME.XXXXXX.tmp`, synced, renamed over the result), so each visible file is
//! either the earlier version or a complete new one; at most hidden `.tmp` files remain
//! (`fsx::is_temp_name`, named `.NAME.PID.RAND.tmp`), which nothing reads; the next command that
//! writes into the folder (it takes the folder's lock) removes those of processes that no longer
//! run. An export stages everything in `OUT/.whet-stage-PID.tmp/` and renames the files into
//! place at the end; the next command removes the staging folders of processes that no longer
//! run. A killed command also leaves its lock file `.whet.lock` (the kernel has released the
//! lock itself); the next command takes it over and removes it when it ends.
//! The kill points are spread over the measured length of an uninterrupted run, so the checks
//! hold whatever the machine's speed; no assertion depends on where a kill lands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_whet"))
        .args(args)
        .arg("--quiet")
        .current_dir(dir)
        .env("WHET_CACHE_DIR", dir.join(".cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the whet binary starts")
}

pub(crate) fn finish(c: Child) -> (i32, String) {
    let out = c.wait_with_output().expect("whet ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn kill(mut c: Child) {
    let _ = c.kill(); // SIGKILL; an error means it had already exited
    let _ = c.wait();
}

/// A folder's files by relative path, with their bytes.
pub(crate) type Files = BTreeMap<PathBuf, Vec<u8>>;

/// Visible files under `dir` (relative path → bytes) and the hidden temporary ones (files and
/// staging folders); the lock file a killed command leaves is neither.
pub(crate) fn files(dir: &Path) -> (Files, Vec<PathBuf>) {
    let (mut visible, mut temp) = (BTreeMap::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if name == ".whet.lock" {
                continue;
            }
            if whet_core_is_temp(&name) {
                temp.push(rel);
            } else if p.is_dir() {
                stack.push(p);
            } else {
                visible.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    (visible, temp)
}

/// `whet_core::fsx::is_temp_name`, plus the export's staging folder (also dot-named, `.tmp`).
fn whet_core_is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Whether `bytes` is a complete file of its kind (for results that hold timings, so they
/// differ between two complete runs).
fn complete(path: &Path, bytes: &[u8], reference: &[u8]) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_slice::<serde_json::Value>(bytes).is_ok(),
        Some("csv") => {
            bytes.ends_with(b"\n")
                && bytes.iter().filter(|&&b| b == b'\n').count()
                    == reference.iter().filter(|&&b| b == b'\n').count()
        }
        _ => false,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// 800 rows of a two-feature table: a run trains for a few tenths of a second.
pub(crate) fn table(dir: &Path) {
    let mut s = String::from("x1,x2,cat,y\n");
    for i in 0..800 {
        s.push_str(&format!(
            "{},{},{},{}\n",
            i as f64 * 0.01,
            (i * 7 % 11) as f64,
            ["a", "b", "c"][i % 3],
            (i * 13 % 7 > 3) as u8
        ));
    }
    std::fs::write(dir.join("main.csv"), s).unwrap();
}

pub(crate) fn run_file(epochs: u32, ablation: &str) -> String {
    format!(
        r#"name: killed
seed: 1
data:
  tables: {{ main: main.csv }}
  target: {{ column: y, threshold: 0.5 }}
steps:
  - impute: {{ numeric: median }}
  - normalize: {{ method: zscore }}
split: {{ method: random, test: 0.2, validation: 0.2 }}
model:
  task: binary
  hidden:
    - {{ dense: 16, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.01 }} }}
  batch_size: 16
  epochs: {epochs}
{ablation}"#
    )
}

/// Checks one killed output folder against the earlier and a complete new version.
fn check_killed(out: &Path, earlier: &Files, new: &Files, what: &str) -> Vec<String> {
    let (now, _temp) = files(out);
    let mut bad = Vec::new();
    for (p, bytes) in &now {
        let ok = earlier.get(p) == Some(bytes)
            || new.get(p) == Some(bytes)
            || new.get(p).is_some_and(|r| complete(p, bytes, r));
        if !ok {
            bad.push(format!(
                "{what}: `{}` is neither the earlier file nor a complete new one ({} bytes)",
                p.display(),
                bytes.len()
            ));
        }
    }
    for p in earlier.keys() {
        if !now.contains_key(p) {
            bad.push(format!("{what}: the earlier `{}` is gone", p.display()));
        }
    }
    bad
}

/// The kill loop of the run and export tests: at `points` instants spread over `full` (the
/// time of an uninterrupted command), a fresh copy `out-K` of the `earlier` folder gets
/// `start(out)`, which is SIGKILLed at that instant; `check_killed` then compares what is left
/// with `(earlier, new)` files, and `after(K, out)` does the test's own checks. Returns the
/// problems found.
fn kill_at_points(
    d: &Path,
    points: usize,
    full: Duration,
    (earlier, new): (&Files, &Files),
    start: impl Fn(&Path) -> Child,
    mut after: impl FnMut(usize, &Path),
) -> Vec<String> {
    let mut bad = Vec::new();
    for k in 0..points {
        let out = d.join(format!("out-{k}"));
        copy_dir(&d.join("earlier"), &out);
        let child = start(&out);
        std::thread::sleep(full.mul_f64((k as f64 + 0.5) / points as f64));
        kill(child);
        bad.extend(check_killed(&out, earlier, new, &format!("kill point {k}")));
        after(k, &out);
    }
    bad
}

#[test]
fn killed_run_leaves_earlier_or_complete_results() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(40, "")).unwrap();
    // The earlier result (seed 2) and a complete run of what is killed (seed 1), timed.
    let (code, err) = finish(spawn(
        d,
        &["run", "run.yaml", "--out", "earlier", "--seed", "2"],
    ));
    assert_eq!(code, 0, "{err}");
    let t = Instant::now();
    let (code, err) = finish(spawn(
        d,
        &["run", "run.yaml", "--out", "new", "--seed", "1"],
    ));
    let full = t.elapsed();
    assert_eq!(code, 0, "{err}");
    let (earlier, _) = files(&d.join("earlier"));
    let (new, _) = files(&d.join("new"));
    assert!(earlier.contains_key(Path::new("metrics.json")));
    let (mut left_temp, mut mixed) = (0, 0);
    let points = 8;
    let run_to = |out: &Path| {
        spawn(
            d,
            &[
                "run",
                "run.yaml",
                "--out",
                out.to_str().unwrap(),
                "--seed",
                "1",
            ],
        )
    };
    let bad = kill_at_points(d, points, full, (&earlier, &new), run_to, |k, out| {
        let (now, temp) = files(out);
        left_temp += temp.len();
        mixed += usize::from(now.iter().any(|(p, b)| earlier.get(p) != Some(b)));
        // The next run ignores what the kill left and writes the same results.
        let (code, err) = finish(run_to(out));
        assert_eq!(code, 0, "rerun after kill point {k}: {err}");
        let (after, temp) = files(out);
        // The rerun removed the temporary files the killed run left (Linux: /proc).
        if Path::new("/proc/self").exists() {
            assert!(temp.is_empty(), "left after the rerun: {temp:?}");
        }
        assert!(
            !out.join(".whet.lock").exists(),
            "the rerun removes its lock file"
        );
        for p in ["model.safetensors", "learning-curves.svg", "confusion.svg"] {
            assert_eq!(
                after.get(Path::new(p)),
                new.get(Path::new(p)),
                "rerun after kill point {k}: `{p}` differs from an uninterrupted run"
            );
        }
    });
    eprintln!(
        "run killed at {points} points over {:.2} s: {mixed} left some new files, {left_temp} temporary files left",
        full.as_secs_f64()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn killed_export_leaves_earlier_or_complete_files() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(1, "")).unwrap();
    // The earlier export comes from a run file with another seed, so its files differ.
    std::fs::write(
        d.join("other.yaml"),
        run_file(1, "").replace("seed: 1", "seed: 9"),
    )
    .unwrap();
    let export =
        |yaml: &str, out: &str| spawn(d, &["export", yaml, "--out", out, "--format", "csv"]);
    let (code, err) = finish(export("other.yaml", "earlier"));
    assert_eq!(code, 0, "{err}");
    let t = Instant::now();
    let (code, err) = finish(export("run.yaml", "new"));
    let full = t.elapsed();
    assert_eq!(code, 0, "{err}");
    let (earlier, _) = files(&d.join("earlier"));
    let (new, _) = files(&d.join("new"));
    assert!(new.len() >= 3, "{new:?}");
    let mut left_stage = 0;
    let points = 8;
    let export_to = |out: &Path| export("run.yaml", out.to_str().unwrap());
    let bad = kill_at_points(d, points, full, (&earlier, &new), export_to, |k, out| {
        left_stage += usize::from(!files(out).1.is_empty());
        let (code, err) = finish(export_to(out));
        assert_eq!(code, 0, "export after kill point {k}: {err}");
        let (after, temp) = files(out);
        assert_eq!(after, new, "export after kill point {k}");
        // The next export removes the staging folder the killed one left (Linux: /proc).
        if Path::new("/proc/self").exists() {
            assert!(temp.is_empty(), "left after the next export: {temp:?}");
        }
    });
    eprintln!(
        "export killed at {points} points over {:.2} s: {left_stage} left a staging folder",
        full.as_secs_f64()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn killed_ablation_resumes_from_finished_runs() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    let ablation = "ablation:\n  seeds: 3\n  leave_one_out: [steps]\n";
    // 9 runs of about 0.1 s each (dev profile).
    std::fs::write(d.join("run.yaml"), run_file(150, ablation)).unwrap();
    let out = d.join("ab");
    let mut child = spawn(d, &["ablate", "run.yaml", "--out", "ab"]);
    // Kill as soon as the first run has finished (its record.json is written last).
    let records = |out: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        files(out)
            .0
            .into_iter()
            .filter(|(p, _)| p.ends_with("record.json"))
            .collect()
    };
    let start = Instant::now();
    while records(&out).is_empty() {
        if let Ok(Some(status)) = child.try_wait() {
            let (_, err) = finish(child);
            panic!("the ablation ended ({status}) before any run finished: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run finished in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(child);
    let finished = records(&out);
    assert!(
        !finished.is_empty() && finished.len() < 9,
        "killed after {} of 9 runs",
        finished.len()
    );
    let (_, temp) = files(&out);
    eprintln!(
        "ablation killed after {} of 9 runs ({} temporary files left)",
        finished.len(),
        temp.len()
    );
    let (code, err) = finish(spawn(d, &["ablate", "run.yaml", "--out", "ab"]));
    assert_eq!(code, 0, "{err}");
    if Path::new("/proc/self").exists() {
        let (_, temp) = files(&out);
        assert!(temp.is_empty(), "left after the resumed ablation: {temp:?}");
    }
    let after = records(&out);
    // 3 leave-one-out variants (baseline, -impute, -normalize) x 3 seeds.
    assert_eq!(after.len(), 9, "{:?}", after.keys());
    for (p, bytes) in &finished {
        assert_eq!(
            after.get(p),
            Some(bytes),
            "`{}` was rerun instead of reused",
            p.display()
        );
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("were reused from an earlier ablation"),
        "the report does not say runs were reused:\n{report}"
    );
}
