//! Concurrent use, cache integrity, resume, file modes and leftovers (issue 14, classes 3, 4, 11
//! and the cleanup items of class 10).
//!
//! No case races two commands blindly: a folder is held either by this test process itself
//! (`File::try_lock` on the folder's `.whet.lock`, with this process's pid written in it, as
//! whet does) or by a `whet` child that the test stops with SIGSTOP once it holds the lock and
//! resumes with SIGCONT after the second command has been turned away.

use crate::interrupt::{files, finish, run_file, spawn, table};
use crate::util::{tiny_mnist, whet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The name of a temporary file of a process that cannot be running (u32::MAX is above the
/// kernel's pid limit), as a killed whet leaves it.
const DEAD_TMP: &str = ".metrics.json.4294967295.Ab12Cd.tmp";
/// A staging folder of such a process.
const DEAD_STAGE: &str = ".whet-stage-4294967295.tmp";

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A `whet` child that holds a folder's lock; stopped (SIGSTOP) until [`Holder::resume`].
/// Dropping it (a failed assertion) resumes and kills it, so no stopped process is left.
struct Holder(Option<Child>);

impl Holder {
    /// Starts `whet ARGS` in `dir`, waits until it holds `folder`'s lock, and stops it.
    fn start(dir: &Path, args: &[&str], folder: &Path) -> Holder {
        let mut child = spawn(dir, args);
        let lock = folder.join(".whet.lock");
        let pid = child.id().to_string();
        let start = Instant::now();
        while std::fs::read_to_string(&lock)
            .ok()
            .as_deref()
            .map(str::trim)
            != Some(pid.as_str())
        {
            if let Ok(Some(status)) = child.try_wait() {
                let (_, err) = finish(child);
                panic!("whet {args:?} ended ({status}) before it held the lock: {err}");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no lock in 60 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        signal(child.id(), "STOP");
        Holder(Some(child))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Resumes the holder and waits for it: exit code and stderr.
    fn resume(mut self) -> (i32, String) {
        let child = self.0.take().expect("not resumed yet");
        signal(child.id(), "CONT");
        finish(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Holds `folder`'s lock from this test process, as another whet process would (its pid in the
/// file). Released when the returned file is dropped.
fn hold_lock(folder: &Path) -> File {
    std::fs::create_dir_all(folder).unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(folder.join(".whet.lock"))
        .unwrap();
    f.try_lock().expect("the folder is free");
    f.set_len(0).unwrap();
    writeln!(f, "{}", std::process::id()).unwrap();
    f
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Checks a command that found `folder` locked by `pid`: exit 2 at once, a message that names
/// the folder and the pid.
fn assert_turned_away(r: &crate::util::Run, folder: &str, pid: u32) {
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("pid {pid}")),
        "the message names the holder's pid {pid}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(folder),
        "the message names `{folder}`: {}",
        r.stderr
    );
}

#[test]
fn commands_into_a_locked_folder_fail_fast_naming_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(3, "")).unwrap();
    let r = whet(d, &["run", "run.yaml", "--out", "out", "--seed", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (earlier, _) = files(&d.join("out"));
    let me = std::process::id();
    let lock = hold_lock(&d.join("out"));
    for args in [
        &["run", "run.yaml", "--out", "out", "--seed", "1"][..],
        &["export", "run.yaml", "--out", "out", "--format", "csv"],
        &["ablate", "run.yaml", "--out", "out", "--seeds", "1"],
    ] {
        let r = whet(d, args);
        assert_turned_away(&r, "out", me);
        assert_eq!(
            files(&d.join("out")).0,
            earlier,
            "{args:?} changed the folder"
        );
    }
    // `apply` may not write into the folder that holds its manifest at all; a locked folder
    // elsewhere turns it away the same way.
    std::fs::copy(d.join("out/manifest.json"), d.join("manifest.json")).unwrap();
    let r = whet(d, &["apply", "manifest.json", "main.csv", "--out", "out"]);
    assert_turned_away(&r, "out", me);
    assert_eq!(files(&d.join("out")).0, earlier, "apply changed the folder");
    drop(lock);
    let r = whet(d, &["run", "run.yaml", "--out", "out", "--seed", "1"]);
    assert_eq!(r.code, 0, "once released: {}", r.stderr);
    assert!(
        !d.join("out/.whet.lock").exists(),
        "the lock file is removed"
    );
    assert_eq!(json(&d.join("out/metrics.json"))["seed"], 1);
}

#[test]
fn a_second_run_or_export_while_a_run_works_leaves_the_first_consistent() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(30, "")).unwrap();
    let r = whet(d, &["run", "run.yaml", "--out", "ref", "--seed", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = Holder::start(
        d,
        &["run", "run.yaml", "--out", "out", "--seed", "1"],
        &d.join("out"),
    );
    let pid = first.pid();
    let r = whet(d, &["run", "run.yaml", "--out", "out", "--seed", "2"]);
    assert_turned_away(&r, "out", pid);
    let r = whet(
        d,
        &["export", "run.yaml", "--out", "out", "--format", "csv"],
    );
    assert_turned_away(&r, "out", pid);
    let (code, err) = first.resume();
    assert_eq!(code, 0, "{err}");
    // The failure: metrics of one seed and the model of the other.
    let (reference, _) = files(&d.join("ref"));
    let (out, _) = files(&d.join("out"));
    assert_eq!(
        out.get(Path::new("model.safetensors")),
        reference.get(Path::new("model.safetensors"))
    );
    let (m, r) = (
        json(&d.join("out/metrics.json")),
        json(&d.join("ref/metrics.json")),
    );
    assert_eq!(m["seed"], 1);
    assert_eq!(m["test"], r["test"]);
    assert!(
        !d.join("out/train.csv").exists(),
        "the export wrote nothing"
    );
}

/// The `record` of every cell's `record.json` under an ablation folder, by relative path, without
/// the timings.
fn records(out: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let mut v: Vec<_> = files(out)
        .0
        .into_keys()
        .filter(|p| p.ends_with("record.json"))
        .map(|p| {
            let mut r = json(&out.join(&p))["record"].clone();
            r["train_seconds"] = serde_json::Value::Null;
            if let Some(curves) = r["curves"].as_array_mut() {
                for c in curves {
                    c["seconds"] = serde_json::Value::Null;
                }
            }
            (p, r)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn two_fresh_ablations_on_one_folder_do_not_mix() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    let ablation = "ablation:\n  seeds: 2\n  leave_one_out: [steps]\n";
    std::fs::write(d.join("run.yaml"), run_file(20, ablation)).unwrap();
    let r = whet(d, &["ablate", "run.yaml", "--out", "ref", "--fresh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = Holder::start(
        d,
        &["ablate", "run.yaml", "--out", "ab", "--fresh"],
        &d.join("ab"),
    );
    let pid = first.pid();
    let r = whet(
        d,
        &[
            "ablate", "run.yaml", "--out", "ab", "--fresh", "--seeds", "1",
        ],
    );
    assert_turned_away(&r, "ab", pid);
    let (code, err) = first.resume();
    assert_eq!(code, 0, "{err}");
    let (got, want) = (records(&d.join("ab")), records(&d.join("ref")));
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got, want, "the ablation's records differ from a lone one");
}

#[test]
fn a_cell_another_process_runs_is_left_out_then_resumed() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    let ablation = "ablation:\n  seeds: 1\n  leave_one_out: [steps]\n";
    std::fs::write(d.join("run.yaml"), run_file(5, ablation)).unwrap();
    let cell = d.join("ab/runs/baseline/seed-1");
    let lock = hold_lock(&cell);
    let r = whet(d, &["ablate", "run.yaml", "--out", "ab"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("pid {}", std::process::id())),
        "{}",
        r.stderr
    );
    assert!(
        !cell.join("record.json").exists(),
        "the held cell was written"
    );
    let report = std::fs::read_to_string(d.join("ab/report.md")).unwrap();
    assert!(report.contains("being run by another process"), "{report}");
    assert_eq!(records(&d.join("ab")).len(), 2);
    drop(lock);
    let r = whet(d, &["ablate", "run.yaml", "--out", "ab"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(records(&d.join("ab")).len(), 3);
    assert_eq!(json(&cell.join("record.json"))["record"]["status"], "ok");
}

#[test]
fn a_cell_that_failed_on_an_io_error_is_retried_on_resume_a_deterministic_failure_kept() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    // `bad-target` fails deterministically: its target column is text.
    let ablation = "ablation:\n  seeds: 1\n  leave_one_out: [steps]\n  variants:\n    - name: bad-target\n      set: { data.target.column: cat }\n";
    std::fs::write(d.join("run.yaml"), run_file(5, ablation)).unwrap();
    // A folder where the baseline's metrics.json goes: renaming the file into place fails (EISDIR),
    // an error of the environment, not of the run file.
    let cell = d.join("ab/runs/baseline/seed-1");
    std::fs::create_dir_all(cell.join("metrics.json")).unwrap();
    let r = whet(d, &["ablate", "run.yaml", "--out", "ab"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("baseline seed 1 failed"), "{}", r.stderr);
    let stored = json(&cell.join("record.json"));
    assert_eq!(stored["record"]["status"], "failed");
    assert_eq!(stored["failure"], "environment", "{stored}");
    let others: Vec<_> = files(&d.join("ab"))
        .0
        .into_iter()
        .filter(|(p, _)| p.ends_with("record.json") && !p.starts_with("runs/baseline"))
        .collect();
    assert_eq!(others.len(), 3);
    let bad = json(&d.join("ab/runs/bad-target/seed-1/record.json"));
    assert_eq!(bad["record"]["status"], "failed");
    assert_eq!(bad["failure"], "deterministic", "{bad}");
    std::fs::remove_dir(cell.join("metrics.json")).unwrap();
    let r = whet(d, &["ablate", "run.yaml", "--out", "ab"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("baseline seed 1 failed"), "{}", r.stderr);
    let stored = json(&cell.join("record.json"));
    assert_eq!(
        stored["record"]["status"], "ok",
        "the failed cell was not retried"
    );
    assert!(stored.get("failure").is_none(), "{stored}");
    assert_eq!(json(&cell.join("metrics.json"))["seed"], 1);
    let (after, _) = files(&d.join("ab"));
    for (p, bytes) in &others {
        // Including the deterministic failure: it would fail the same way.
        assert_eq!(after.get(p), Some(bytes), "`{}` was rerun", p.display());
    }
    let report = std::fs::read_to_string(d.join("ab/report.md")).unwrap();
    assert!(
        report.contains("3 of 4 runs were reused from an earlier ablation"),
        "{report}"
    );
}

#[test]
fn a_damaged_cache_entry_is_recomputed_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(5, "")).unwrap();
    let r = whet(d, &["run", "run.yaml", "--out", "ref"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let entries: Vec<_> = std::fs::read_dir(d.join(".cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    let good = std::fs::read(entry).unwrap();
    assert!(good.len() > 1000, "{} bytes", good.len());
    let want = json(&d.join("ref/metrics.json"))["test"].clone();
    let flipped = {
        let mut b = good.clone();
        let mid = b.len() / 2;
        for x in &mut b[mid..mid + 64] {
            *x ^= 0x5A;
        }
        b
    };
    let damages = [
        ("flipped", flipped),
        ("truncated", good[..good.len() * 2 / 3].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(entry, &bytes).unwrap();
        let out = format!("out-{what}");
        let r = whet(d, &["run", "run.yaml", "--out", &out]);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("warning")
                && r.stderr.contains(&name)
                && r.stderr.contains("damaged"),
            "{what}: no warning naming the entry: {}",
            r.stderr
        );
        let m = json(&d.join(&out).join("metrics.json"));
        assert_eq!(
            m["test"], want,
            "{what}: the damaged entry reached the results"
        );
        assert_eq!(m["cache_hits"], serde_json::json!([]), "{what}");
        // The entry was rewritten whole: the next run uses it, silently.
        let out = format!("out-{what}-hit");
        let r = whet(d, &["run", "run.yaml", "--out", &out]);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(!r.stderr.contains("warning"), "{what}: {}", r.stderr);
        let m = json(&d.join(&out).join("metrics.json"));
        assert_eq!(m["cache_hits"], serde_json::json!(["tables"]), "{what}");
        assert_eq!(m["test"], want, "{what}");
    }
}

#[cfg(unix)]
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            out.push((e.path(), meta.permissions().mode() & 0o777, meta.is_dir()));
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
#[cfg(unix)]
fn outputs_follow_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    let ablation = "ablation:\n  seeds: 1\n  leave_one_out: [steps]\n";
    std::fs::write(d.join("run.yaml"), run_file(2, ablation)).unwrap();
    std::fs::write(d.join("img.yaml"), tiny_mnist("")).unwrap();
    for (umask, file, folder) in [
        ("022", 0o644, 0o755),
        ("077", 0o600, 0o700),
        ("002", 0o664, 0o775),
    ] {
        let whet_with_umask = |args: &[&str]| {
            let r = Command::new("sh")
                .arg("-c")
                .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_whet"))
                .args(args)
                .arg("--quiet")
                .current_dir(d)
                .env("WHET_CACHE_DIR", d.join(format!("cache-{umask}")))
                .output()
                .unwrap();
            assert!(
                r.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
        };
        let outs = [
            format!("run-{umask}"),
            format!("csv-{umask}"),
            format!("ab-{umask}"),
            format!("png-{umask}"),
        ];
        whet_with_umask(&["run", "run.yaml", "--out", &outs[0]]);
        whet_with_umask(&["export", "run.yaml", "--out", &outs[1], "--format", "csv"]);
        whet_with_umask(&["ablate", "run.yaml", "--out", &outs[2]]);
        whet_with_umask(&["export", "img.yaml", "--out", &outs[3]]);
        for out in outs
            .iter()
            .map(|o| d.join(o))
            .chain([d.join(format!("cache-{umask}"))])
        {
            let found = modes(&out);
            assert!(found.len() >= 3, "{}: {found:?}", out.display());
            for (p, mode, is_dir) in found {
                let want = if is_dir { folder } else { file };
                assert_eq!(
                    mode,
                    want,
                    "umask {umask}: `{}` has mode {mode:o}, expected {want:o}",
                    p.display()
                );
            }
        }
    }
}

/// Plants what killed writers leave (a temporary file and a staging folder of a process that
/// no longer runs) and a temporary file of a running process (this test) in `dir`; returns the
/// latter's name.
fn plant_leftovers(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join(DEAD_STAGE)).unwrap();
    std::fs::write(dir.join(DEAD_STAGE).join("train.csv"), "half").unwrap();
    std::fs::write(dir.join(DEAD_TMP), "half").unwrap();
    let live = format!(".notes.txt.{}.Zz99Zz.tmp", std::process::id());
    std::fs::write(dir.join(&live), "being written").unwrap();
    live
}

/// Sends SIGINT to a `whet` child once it holds `folder`'s lock and lets it die.
fn interrupt(dir: &Path, args: &[&str], folder: &Path) {
    let h = Holder::start(dir, args, folder);
    signal(h.pid(), "INT");
    let (code, _) = h.resume();
    assert_ne!(code, 0, "whet {args:?} ended normally after SIGINT");
}

#[test]
#[cfg(target_os = "linux")]
fn after_sigint_the_next_command_leaves_no_temporary_files() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(200, "")).unwrap();
    let only_live = |out: &Path, live: &str| {
        let (_, temp) = files(out);
        assert_eq!(
            temp,
            vec![PathBuf::from(live)],
            "`{}`: leftovers of dead processes remain, or a live one's file was removed",
            out.display()
        );
    };
    // A run interrupted, then run again.
    let run = ["run", "run.yaml", "--out", "out"];
    interrupt(d, &run, &d.join("out"));
    let live = plant_leftovers(&d.join("out"));
    std::fs::create_dir_all(d.join(".cache")).unwrap();
    std::fs::write(
        d.join(".cache").join(".tables-x.bin.4294967295.Ab12Cd.tmp"),
        "half",
    )
    .unwrap();
    let r = whet(d, &run);
    assert_eq!(r.code, 0, "{}", r.stderr);
    only_live(&d.join("out"), &live);
    assert!(
        !d.join(".cache/.tables-x.bin.4294967295.Ab12Cd.tmp")
            .exists(),
        "the cache's dead temporary file remains"
    );
    // An export interrupted, then exported again: the same files as an uninterrupted export.
    let export = ["export", "run.yaml", "--out", "exp", "--format", "csv"];
    let r = whet(
        d,
        &["export", "run.yaml", "--out", "clean", "--format", "csv"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    interrupt(d, &export, &d.join("exp"));
    let live = plant_leftovers(&d.join("exp"));
    let r = whet(d, &export);
    assert_eq!(r.code, 0, "{}", r.stderr);
    only_live(&d.join("exp"), &live);
    assert_eq!(files(&d.join("exp")).0, files(&d.join("clean")).0);
}

#[test]
fn an_export_replaces_an_earlier_export_of_another_format_without_stale_files() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    table(d);
    std::fs::write(d.join("run.yaml"), run_file(1, "")).unwrap();
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<_> = files(dir)
            .0
            .into_keys()
            .map(|p| p.display().to_string())
            .collect();
        v.sort();
        v
    };
    let export = |fmt: &str| {
        let r = whet(d, &["export", "run.yaml", "--out", "exp", "--format", fmt]);
        assert_eq!(r.code, 0, "{fmt}: {}", r.stderr);
        r
    };
    export("csv");
    assert!(names(&d.join("exp")).contains(&"train.csv".to_string()));
    std::fs::write(d.join("exp/notes.txt"), "mine").unwrap();
    let r = export("parquet");
    let now = names(&d.join("exp"));
    assert!(
        !now.iter().any(|n| n.ends_with(".csv")),
        "stale CSV files: {now:?}"
    );
    assert!(now.contains(&"train.parquet".to_string()), "{now:?}");
    assert!(
        now.contains(&"notes.txt".to_string()),
        "a file whet did not write was removed"
    );
    assert!(
        r.stderr.contains("notes.txt") && r.stderr.contains("not written by"),
        "no warning about notes.txt: {}",
        r.stderr
    );
    // What the manifest lists is what the folder holds, besides manifest.json and notes.txt.
    let listed: Vec<String> = json(&d.join("exp/manifest.json"))["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<_> = now
        .iter()
        .filter(|n| *n != "manifest.json" && *n != "notes.txt" && *n != ".whet-output")
        .cloned()
        .collect();
    expected.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, expected);
    // An earlier file changed since it was exported is not whet's any more: kept, with a warning.
    std::fs::write(d.join("exp/train.parquet"), "edited by hand").unwrap();
    let r = export("npy");
    let now = names(&d.join("exp"));
    assert!(now.contains(&"train.parquet".to_string()), "{now:?}");
    assert!(
        !now.contains(&"test.parquet".to_string()),
        "an unchanged earlier file remains: {now:?}"
    );
    assert!(
        r.stderr.contains("train.parquet") && r.stderr.contains("changed since"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_image_export_replaces_png_folders_by_idx_files() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    std::fs::write(d.join("img.yaml"), tiny_mnist("")).unwrap();
    let r = whet(
        d,
        &["export", "img.yaml", "--out", "exp", "--format", "png"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(d.join("exp/train").is_dir());
    let r = whet(
        d,
        &["export", "img.yaml", "--out", "exp", "--format", "idx"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    for stale in ["train", "validation", "test"] {
        assert!(
            !d.join("exp").join(stale).exists(),
            "stale `{stale}/` folder"
        );
    }
    assert!(d.join("exp/train-images-idx3-ubyte.gz").is_file());
}
