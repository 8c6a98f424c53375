//! Experiment tracking against a real MLflow server, and the DVC-friendly metric files.
//!
//! The MLflow tests start `mlflow server` (the binary named by `WHET_TEST_MLFLOW`, which
//! `./test.sh` installs into `.venv-test/`) on a free port with a SQLite store and proxied
//! artifacts in a temporary folder, run `whet`, and read back through the REST API. Without
//! `WHET_TEST_MLFLOW` they are skipped with a printed reason, except under `CI=true`, where
//! they fail.

use crate::util::{tiny_mnist, whet};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `mlflow` executable, or `None` (skip) outside CI when it is not configured.
fn mlflow_bin() -> Option<PathBuf> {
    match std::env::var_os("WHET_TEST_MLFLOW") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        other => {
            let why = match other {
                Some(p) => format!("WHET_TEST_MLFLOW={} is not a file", p.to_string_lossy()),
                None => "WHET_TEST_MLFLOW is not set".to_string(),
            };
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}: under CI=true the MLflow tests must run; use ./test.sh");
            }
            eprintln!("skipped: {why} (run ./test.sh to install mlflow into .venv-test/)");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `mlflow server`, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    uri: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    /// Ends the server's whole process group (`mlflow server` starts uvicorn workers): TERM,
    /// then KILL after 10 s.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(mlflow: &Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("server.log");
        let child = Command::new(mlflow)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args(["--workers", "1"])
            // No background job consumers (MLflow 3's job runner): they would outlive the test.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            // Its own process group, so the Drop guard ends the workers too.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", mlflow.display()));
        let mut server = Server {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(mut r) = ureq::get(&format!("{}/health", server.uri)).call()
                && r.body_mut()
                    .read_to_string()
                    .is_ok_and(|b| b.trim() == "OK")
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("mlflow server exited ({status}):\n{}", server.stderr());
            }
            if start.elapsed() > Duration::from_secs(180) {
                panic!(
                    "mlflow server did not answer /health within 180 s:\n{}",
                    server.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Value {
        let url = format!("{}/api/2.0/{path}", self.uri);
        let mut r = ureq::get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.stderr()));
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let url = format!("{}/api/2.0/{path}", self.uri);
        let mut r = ureq::post(&url)
            .content_type("application/json")
            .send(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {url}: {e}\n{}", self.stderr()));
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    fn experiment_id(&self, name: &str) -> String {
        let v = self.get(&format!(
            "mlflow/experiments/get-by-name?experiment_name={name}"
        ));
        v["experiment"]["experiment_id"].as_str().unwrap().into()
    }

    fn runs(&self, experiment_id: &str) -> Vec<Value> {
        let v = self.post(
            "mlflow/runs/search",
            &json!({ "experiment_ids": [experiment_id], "max_results": 100 }),
        );
        v["runs"].as_array().cloned().unwrap_or_default()
    }

    fn artifacts(&self, run_id: &str) -> Vec<String> {
        let v = self.get(&format!("mlflow/artifacts/list?run_id={run_id}"));
        v["files"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `key` of a run's `data.params` / `data.tags` list, or of `data.metrics` (value).
fn entry<'a>(run: &'a Value, list: &str, key: &str) -> Option<&'a Value> {
    run["data"][list]
        .as_array()?
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| &e["value"])
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_tracked_run_logs_params_epochs_final_metrics_and_artifacts() {
    let Some(mlflow) = mlflow_bin() else { return };
    let server = Server::start(&mlflow);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "tiny.yaml", &tiny_mnist(""));
    let r = whet(
        dir.path(),
        &["run", &f, "--out", "out", "--mlflow", &server.uri],
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, server.stderr());
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    assert!(r.stdout.contains("mlflow run"), "{}", r.stdout);

    // The experiment is the run file's name when the run file does not name one.
    let exp = server.experiment_id("tiny");
    let runs = server.runs(&exp);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["info"]["status"], "FINISHED", "{run}");
    assert_eq!(run["info"]["run_name"], "tiny");
    let id = run["info"]["run_id"].as_str().unwrap();
    assert_eq!(entry(run, "params", "train.epochs").unwrap(), "3");
    assert_eq!(entry(run, "params", "seed").unwrap(), "3");
    let degrees = entry(run, "params", "augment.ops.0.rotate.degrees").unwrap();
    assert_eq!(degrees.as_str().unwrap().parse::<f64>().unwrap(), 10.0);
    assert_eq!(entry(run, "tags", "whet.status").unwrap(), "ok");

    // One point per epoch, step = the epoch number from 1.
    let h = server.get(&format!(
        "mlflow/metrics/get-history?run_id={id}&metric_key=train_loss"
    ));
    let mut steps: Vec<i64> = h["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap_or(0))
        .collect();
    steps.sort();
    assert_eq!(steps, [1, 2, 3], "{h}");
    let h = server.get(&format!(
        "mlflow/metrics/get-history?run_id={id}&metric_key=val_accuracy"
    ));
    assert_eq!(h["metrics"].as_array().unwrap().len(), 3, "{h}");

    // The final test metric is metrics.json's.
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/metrics.json")).unwrap(),
    )
    .unwrap();
    let logged = entry(run, "metrics", "test_accuracy")
        .and_then(Value::as_f64)
        .unwrap();
    assert_eq!(logged, metrics["test"]["accuracy"].as_f64().unwrap());

    let files = server.artifacts(id);
    for f in [
        "metrics.json",
        "metrics.dvc.json",
        "model.safetensors",
        "manifest.json",
        "learning-curves.png",
    ] {
        assert!(files.iter().any(|x| x == f), "no {f} in {files:?}");
    }
}

#[test]
fn a_tracked_ablation_is_a_parent_run_with_one_nested_run_per_cell() {
    let Some(mlflow) = mlflow_bin() else { return };
    let server = Server::start(&mlflow);
    let dir = tempfile::tempdir().unwrap();
    let extra = "ablation:\n  seeds: 1\n  variants:\n    - { name: fast, set: { train.optimizer.adam.lr: 0.01 } }\ntrack:\n  mlflow:\n    experiment: abl-exp\n    run_name: study\n";
    let f = write(dir.path(), "tiny.yaml", &tiny_mnist(extra));
    let r = whet(
        dir.path(),
        &["ablate", &f, "--out", "ab", "--mlflow", &server.uri],
    );
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, server.stderr());
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);

    let runs = server.runs(&server.experiment_id("abl-exp"));
    assert_eq!(runs.len(), 3, "a parent and two cells: {runs:?}");
    let parent = runs
        .iter()
        .find(|r| r["info"]["run_name"] == "study")
        .expect("the parent run");
    assert_eq!(parent["info"]["status"], "FINISHED");
    assert_eq!(entry(parent, "tags", "whet.kind").unwrap(), "ablation");
    let pid = parent["info"]["run_id"].as_str().unwrap();
    let mut names = vec![];
    for child in runs.iter().filter(|r| r["info"]["run_id"] != pid) {
        assert_eq!(
            entry(child, "tags", "mlflow.parentRunId").unwrap(),
            pid,
            "{child}"
        );
        assert_eq!(child["info"]["status"], "FINISHED");
        assert!(
            entry(child, "metrics", "test_accuracy").is_some(),
            "{child}"
        );
        names.push(child["info"]["run_name"].as_str().unwrap().to_string());
    }
    names.sort();
    assert_eq!(names, ["baseline/seed-3", "fast/seed-3"]);
    let lr = |name: &str| {
        let c = runs.iter().find(|r| r["info"]["run_name"] == name).unwrap();
        let v = entry(c, "params", "train.optimizer.adam.lr").unwrap();
        v.as_str().unwrap().parse::<f64>().unwrap()
    };
    assert_eq!(lr("fast/seed-3"), 0.01);
    assert_eq!(lr("baseline/seed-3"), 0.003);
    for m in [
        "baseline.accuracy_mean",
        "fast.accuracy_mean",
        "fast.accuracy_delta",
    ] {
        assert!(entry(parent, "metrics", m).is_some(), "no {m}: {parent}");
    }
    let files = server.artifacts(pid);
    for f in ["report.md", "ablation.json", "ablation.dvc.json"] {
        assert!(files.iter().any(|x| x == f), "no {f} in {files:?}");
    }
}

#[test]
fn a_server_that_is_down_leaves_the_run_whole_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{}", free_port());
    let f = write(dir.path(), "tiny.yaml", &tiny_mnist(""));
    let r = whet(dir.path(), &["run", &f, "--out", "out", "--mlflow", &uri]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "warning: MLflow tracking at {uri}: cannot reach the server"
        )) && r.stderr.contains("the run goes on untracked"),
        "{}",
        r.stderr
    );
    assert!(dir.path().join("out/model.safetensors").is_file());

    // metrics.dvc.json: flat, numeric only, the metrics.json numbers under set-prefixed keys.
    let dvc: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/metrics.dvc.json")).unwrap(),
    )
    .unwrap();
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/metrics.json")).unwrap(),
    )
    .unwrap();
    let obj = dvc.as_object().unwrap();
    assert!(obj.values().all(Value::is_number), "{dvc}");
    assert_eq!(dvc["test_accuracy"], metrics["test"]["accuracy"]);
    assert_eq!(dvc["validation_loss"], metrics["validation"]["loss"]);
    assert_eq!(dvc["epochs"], 3.0);
}

#[test]
fn ablation_dvc_json_is_a_table_of_variants_by_numeric_columns() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{}", free_port());
    let extra = format!(
        "ablation:\n  seeds: 1\n  variants:\n    - {{ name: fast, set: {{ train.optimizer.adam.lr: 0.01 }} }}\ntrack:\n  mlflow:\n    uri: {uri}\n"
    );
    let f = write(dir.path(), "tiny.yaml", &tiny_mnist(&extra));
    // Nobody listens there: the ablation runs untracked, with a warning.
    let r = whet(dir.path(), &["ablate", &f, "--out", "ab"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "MLflow tracking at {uri}: cannot reach the server"
        )),
        "{}",
        r.stderr
    );
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("ab/ablation.dvc.json")).unwrap(),
    )
    .unwrap();
    let variants = v["variants"].as_object().unwrap();
    assert_eq!(
        variants.keys().collect::<Vec<_>>(),
        ["baseline", "fast"],
        "{v}"
    );
    for (name, cols) in variants {
        let cols = cols.as_object().unwrap();
        assert!(cols.values().all(Value::is_number), "{name}: {v}");
        assert!(cols.contains_key("accuracy_mean"), "{name}: {v}");
        assert_eq!(cols.contains_key("accuracy_delta"), name == "fast", "{v}");
    }
    // The delta is the variant's mean minus the baseline's (one seed: exactly).
    let d = variants["fast"]["accuracy_delta"].as_f64().unwrap();
    let diff = variants["fast"]["accuracy_mean"].as_f64().unwrap()
        - variants["baseline"]["accuracy_mean"].as_f64().unwrap();
    assert!((d - diff).abs() < 1e-12, "{d} vs {diff}");
}

#[test]
fn a_bad_tracking_uri_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "tiny.yaml",
        &tiny_mnist("track:\n  mlflow:\n    uri: localhost:5000\n"),
    );
    let r = whet(dir.path(), &["run", &f]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("track.mlflow.uri") && r.stderr.contains("http://HOST:PORT"),
        "{}",
        r.stderr
    );
    let r = whet(
        dir.path(),
        &[
            "run",
            &write(dir.path(), "t2.yaml", &tiny_mnist("")),
            "--mlflow",
            "file:./mlruns",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--mlflow: `file:./mlruns` is not an MLflow server"),
        "{}",
        r.stderr
    );
}
