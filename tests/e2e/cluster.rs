//! Ablations split into cells (issue 16): `whet ablate PIPELINE --plan`, `whet ablate OUT --cell I`
//! (or the index from SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX), `whet ablate OUT --collect`,
//! `--jobs N` worker processes, and the Kubernetes Indexed Job manifest. Whatever runs the
//! cells, the results are those of one local `whet ablate`.

use crate::interrupt::{files, finish, kill, spawn};
use crate::util::{ablation_results, repo, tiny_mnist, whet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two variants × two seeds = 4 cells.
fn run_file(d: &Path, epochs: u32) {
    let f = tiny_mnist(
        "ablation:\n  seeds: 2\n  variants:\n    - { name: no-rotate, drop: augment.ops.rotate }\n",
    )
    .replace("epochs: 3", &format!("epochs: {epochs}"));
    std::fs::write(d.join("run.yaml"), f).unwrap();
}

/// `whet ABLATE-ARGS` with an environment variable set.
fn whet_env(d: &Path, args: &[&str], var: &str, value: &str) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_whet"))
        .args(args)
        .arg("--quiet")
        .current_dir(d)
        .env("WHET_CACHE_DIR", d.join(".cache"))
        .env(var, value)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn cells_run_apart_and_with_workers_give_the_local_result() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    run_file(d, 3);
    let r = whet(d, &["ablate", "run.yaml", "--out", "local"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let local = ablation_results(&d.join("local"));
    assert_eq!(local.lines().count(), 5, "a header and 4 runs: {local}");

    let r = whet(d, &["ablate", "run.yaml", "--plan", "--out", "p"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = d.join("p");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["cells"].as_array().unwrap().len(), 4, "{plan}");
    assert_eq!(plan["variants"][1]["name"], "no-rotate");
    let abs = std::path::absolute(&p).unwrap().display().to_string();
    assert_eq!(
        plan["commands"]["cell"],
        format!("whet ablate {abs} --cell $I")
    );
    assert!(r.stdout.contains("--collect"), "{}", r.stdout);
    assert!(!p.join("runs").exists(), "--plan runs nothing");

    // Cells 0 and 1 by flag, 2 as a Slurm array task, 3 as a Kubernetes indexed pod.
    for i in ["0", "1"] {
        let r = whet(d, &["ablate", "p", "--cell", i]);
        assert_eq!(r.code, 0, "cell {i}: {}", r.stderr);
        assert!(r.stdout.contains(&format!("cell {i} (")), "{}", r.stdout);
    }
    let (code, out, err) = whet_env(d, &["ablate", "p"], "SLURM_ARRAY_TASK_ID", "2");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cell 2 (no-rotate seed 3): ok (run)"), "{out}");
    let (code, out, err) = whet_env(d, &["ablate", "p"], "JOB_COMPLETION_INDEX", "3");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cell 3 ("), "{out}");
    // A requeued cell is kept, not run again.
    let r = whet(d, &["ablate", "p", "--cell", "0"]);
    assert!(
        r.stdout.contains("(kept from an earlier run)"),
        "{}",
        r.stdout
    );
    let r = whet(d, &["ablate", "p", "--collect"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ablation_results(&p), local, "cells run one by one");

    // --jobs 2: two worker processes, the same numbers.
    let r = whet(d, &["ablate", "run.yaml", "--out", "j2", "--jobs", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ablation_results(&d.join("j2")), local, "--jobs 2");
    assert!(d.join("j2/logs/cell-3.log").exists());
    assert!(
        d.join("j2/plan.json").exists(),
        "every ablation has a plan file"
    );

    let r = whet(d, &["ablate", "p", "--cell", "4"]);
    assert!(
        r.code == 2 && r.stderr.contains("cell 4: the plan has 4 cells (0 to 3)"),
        "{}",
        r.stderr
    );
    let (code, _, err) = whet_env(d, &["ablate", "p"], "SLURM_ARRAY_TASK_ID", "x");
    assert!(code == 2 && err.contains("SLURM_ARRAY_TASK_ID=x"), "{err}");
}

/// Sequential seeding runs in rounds whatever runs the cells: `--jobs 2` gives the local
/// result; the dry run shows the range; a Kubernetes Job (a fixed set of cells) is refused.
#[test]
fn sequential_seeding_gives_the_same_rounds_with_workers() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let f = tiny_mnist(
        "ablation:\n  seeds: { min: 2, max: 3 }\n  variants:\n    - { name: no-rotate, drop: augment.ops.rotate }\n",
    )
    .replace("epochs: 3", "epochs: 2");
    std::fs::write(d.join("run.yaml"), f).unwrap();
    let r = whet(d, &["ablate", "run.yaml", "--out", "local", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("2 variants × 2 to 3 seeds = 4 runs, up to 6 (sequential seeding"),
        "{}",
        r.stdout
    );
    let r = whet(d, &["ablate", "run.yaml", "--out", "local"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let local = ablation_results(&d.join("local"));
    let report = std::fs::read_to_string(d.join("local/report.md")).unwrap();
    assert!(
        report.contains("Sequential seeding (2 to 3 seeds"),
        "{report}"
    );
    let r = whet(d, &["ablate", "run.yaml", "--out", "j2", "--jobs", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ablation_results(&d.join("j2")), local, "--jobs 2");

    let r = whet(
        d,
        &[
            "ablate",
            "run.yaml",
            "--out",
            "k",
            "--emit",
            "k8s",
            "--k8s",
            "image=whet:1",
            "--k8s",
            "claim=c",
        ],
    );
    assert!(
        r.code == 2
            && r.stderr.contains("ablation.seeds: { min: 2, max: 3 }")
            && r.stderr.contains("--launcher slurm"),
        "{}",
        r.stderr
    );
}

#[test]
fn workers_and_cells_plan_a_relative_run_file_alike() {
    // A run file named by a relative path whose data are relative to it (as in `pipelines/`):
    // the workers plan again from the plan file's absolute path, and must get the same hashes.
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    std::fs::create_dir(d.join("study")).unwrap();
    crate::interrupt::table(&d.join("study"));
    std::fs::write(
        d.join("study/run.yaml"),
        crate::interrupt::run_file(3, "ablation:\n  seeds: 2\n  leave_one_out: [steps]\n"),
    )
    .unwrap();
    let r = whet(d, &["ablate", "study/run.yaml", "--out", "j1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(
        d,
        &["ablate", "study/run.yaml", "--out", "j2", "--jobs", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("left no result"), "{}", r.stderr);
    assert_eq!(
        ablation_results(&d.join("j2")),
        ablation_results(&d.join("j1"))
    );
    // Planned here, a cell run from another folder.
    let r = whet(d, &["ablate", "study/run.yaml", "--plan", "--out", "p"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = whet(&d.join("study"), &["ablate", "../p", "--cell", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn workers_plan_a_transfer_ablation_after_its_pretraining() {
    // The cells hash the pretrained checkpoint: planned before it exists, the workers (who plan
    // again once it does) would refuse every cell.
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    std::fs::create_dir(d.join("pipelines")).unwrap();
    for f in ["mnist-transfer.yaml", "mnist-digits-0-4.yaml"] {
        std::fs::copy(
            repo().join("pipelines").join(f),
            d.join("pipelines").join(f),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(repo().join("datasets"), d.join("datasets")).unwrap();
    let r = whet(
        d,
        &[
            "ablate",
            "pipelines/mnist-transfer.yaml",
            "--set",
            "train.epochs=1",
            "--seeds",
            "1",
            "--jobs",
            "2",
            "--out",
            "ab",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        d.join("runs/mnist-digits-0-4/model.safetensors").exists(),
        "pretrained"
    );
    assert!(!r.stderr.contains("left no result"), "{}", r.stderr);
    let csv = std::fs::read_to_string(d.join("ab/ablation.csv")).unwrap();
    assert_eq!(csv.matches(",ok,").count(), 3, "{csv}");
}

#[test]
fn collect_names_missing_cells_and_a_changed_run_file_stops_cells() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    run_file(d, 2);
    assert_eq!(
        whet(d, &["ablate", "run.yaml", "--plan", "--out", "p"]).code,
        0
    );
    assert_eq!(whet(d, &["ablate", "p", "--cell", "0"]).code, 0);
    let r = whet(d, &["ablate", "p", "--collect"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let abs = std::path::absolute(d.join("p"))
        .unwrap()
        .display()
        .to_string();
    for i in 1..4 {
        let cmd = format!("has no result: whet ablate {abs} --cell {i}");
        assert!(r.stderr.contains(&cmd), "missing `{cmd}` in {}", r.stderr);
    }
    // `whet ablate OUT` resumes the plan: the three other cells run, the first is kept.
    let r = whet(d, &["ablate", "p"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = std::fs::read_to_string(d.join("p/report.md")).unwrap();
    assert!(report.contains("1 of 4 runs were reused"), "{report}");

    // The run file changes after planning: cells refuse, collect still reports the plan.
    run_file(d, 3);
    let r = whet(d, &["ablate", "p", "--cell", "1", "--fresh"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("changed since the plan was made") && r.stderr.contains("--plan --out"),
        "{}",
        r.stderr
    );
    let r = whet(d, &["ablate", "p", "--collect"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = std::fs::read_to_string(d.join("p/report.md")).unwrap();
    assert!(
        report.contains("changed since the plan was made; this report is of the runs as planned"),
        "{report}"
    );
    // Options that would change the plan are refused on a plan folder, not ignored.
    let r = whet(d, &["ablate", "p", "--seeds", "5"]);
    assert!(
        r.code == 2 && r.stderr.contains("--seeds: `p` is an ablation's folder"),
        "{}",
        r.stderr
    );
    // Not a plan folder.
    let r = whet(d, &["ablate", "run.yaml", "--collect"]);
    assert!(
        r.code == 2 && r.stderr.contains("--plan --out DIR"),
        "{}",
        r.stderr
    );
    std::fs::create_dir(d.join("empty")).unwrap();
    let r = whet(d, &["ablate", "empty", "--cell", "0"]);
    assert!(
        r.code == 2 && r.stderr.contains("has no plan.json"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_killed_cell_leaves_no_result_and_runs_again() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    run_file(d, 40);
    assert_eq!(
        whet(d, &["ablate", "run.yaml", "--plan", "--out", "p"]).code,
        0
    );
    let cell = d.join("p/runs/baseline/seed-3");
    let child = spawn(d, &["ablate", "p", "--cell", "0"]);
    // Kill once the cell is under way (its folder exists), before it can finish.
    let start = Instant::now();
    while !cell.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    kill(child);
    if let Some(rec) = files(&cell).0.get(Path::new("record.json")) {
        // The cell finished before the kill landed: a complete record.
        serde_json::from_slice::<serde_json::Value>(rec).expect("a complete record");
    }
    let (code, err) = finish(spawn(d, &["ablate", "p", "--cell", "0"]));
    assert_eq!(code, 0, "{err}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cell.join("record.json")).unwrap()).unwrap();
    assert_eq!(rec["record"]["status"], "ok", "{rec}");
    let (_, temp) = files(&cell);
    assert!(temp.is_empty(), "left after the rerun: {temp:?}");
}

#[test]
fn the_kubernetes_job_matches_its_golden_file() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    run_file(d, 2);
    let out = d.join("study/ab");
    let r = whet(
        d,
        &[
            "ablate",
            "run.yaml",
            "--out",
            out.to_str().unwrap(),
            "--emit",
            "k8s",
            "--k8s",
            "image=ghcr.io/example/whet:0.1",
            "--k8s",
            "claim=whet-work",
            "--k8s",
            "parallelism=2",
            "--k8s",
            "cpus=2",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(out.join("k8s-job.yaml")).unwrap();
    assert!(out.join("plan.json").exists());
    let abs = std::path::absolute(&out).unwrap();
    let generic = text
        .replace(&abs.display().to_string(), "/OUT")
        .replace(&abs.parent().unwrap().display().to_string(), "/MOUNT");
    let golden = repo().join("tests/e2e/data/k8s-job.yaml");
    if std::env::var_os("REGENERATE").is_some() {
        std::fs::write(&golden, &generic).unwrap();
    }
    assert_eq!(
        generic,
        std::fs::read_to_string(&golden).unwrap(),
        "regenerate with REGENERATE=1 if the change is meant"
    );
    // The fields Kubernetes requires of an Indexed Job, read as YAML.
    let v: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
    assert_eq!(v["apiVersion"], "batch/v1");
    assert_eq!(v["kind"], "Job");
    let spec = &v["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 4);
    assert_eq!(spec["parallelism"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/example/whet:0.1");
    let script = c["command"][2].as_str().unwrap();
    assert_eq!(
        script,
        format!(
            "exec whet --threads 2 ablate {} --cell \"$JOB_COMPLETION_INDEX\"",
            abs.display()
        )
    );
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        abs.parent().unwrap().display().to_string()
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "whet-work"
    );
    assert_eq!(c["resources"]["limits"]["cpu"], 2);

    for (bad, want) in [
        ("--k8s=image=", "image=…: required"),
        ("--k8s=name=Bad_Name", "a Kubernetes job name"),
        ("--k8s=colour=red", "unknown key `colour`"),
    ] {
        let r = whet(
            d,
            &[
                "ablate", "run.yaml", "--out", "k", "--emit", "k8s", "--k8s", "claim=c", "--k8s",
                "image=i", bad,
            ],
        );
        assert!(
            r.code == 2 && r.stderr.contains(want),
            "{bad}: {}",
            r.stderr
        );
    }
}
