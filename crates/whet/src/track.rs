//! Experiment tracking: runs and ablations logged to an MLflow tracking server through its REST
//! API (`/api/2.0/mlflow/…`), with a small blocking HTTP client (ureq; plain HTTP, and https
//! when whet is built with the `https` feature).
//!
//! Where a run is tracked: the `--mlflow URI` flag, else `track.mlflow.uri` in the run file,
//! else the `MLFLOW_TRACKING_URI` environment variable when the run file has a `track.mlflow`
//! section ([`MlflowTarget::resolve`]).
//!
//! What is logged ([`MlflowRun`]): the resolved run file as params (dotted keys, values cut to
//! MLflow's 6000 characters, at most 100 params per `log-batch`), every epoch's curves as
//! metrics with `step` = the epoch number (1-based, as whet counts epochs), the final metrics
//! (the flat map of [`Metrics::flat`], the same numbers as `metrics.dvc.json`), and the run
//! folder's files as artifacts. An ablation is a parent run (the per-variant summary and the
//! report's files) with one nested run per cell, named `<variant>/seed-<n>` and tagged
//! `mlflow.parentRunId`. Runs end `FINISHED`, or `FAILED` with `whet.status` and
//! `whet.message` tags for a diverged or failed run.
//!
//! Tracking never loses a run: the run's outputs are written whatever the server does. The
//! run is created on the server before training starts ([`MlflowRun::start_run`]); if the
//! server cannot be reached or answers an error then, the caller warns and runs untracked; an
//! error while logging the results is a warning too. Every error names the tracking URI, the
//! request, and the server's HTTP status and answer.

use crate::ablation::{AblationReport, Plan};
use crate::error::{Error, Result};
use crate::execute::{Metrics, RunOutcome};
use crate::runfile::Run;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use whet_core::Issues;
use whet_report::{RunRecord, RunStatus};

/// The environment variable MLflow's own clients read the tracking URI from.
pub const TRACKING_URI_ENV: &str = "MLFLOW_TRACKING_URI";

/// MLflow's limit on a param value (characters); longer values are cut.
pub const MAX_PARAM_VALUE: usize = 6000;
/// MLflow's limit on a param or metric key (characters).
pub const MAX_KEY: usize = 250;
/// MLflow's limit on a tag value (characters).
const MAX_TAG_VALUE: usize = 8000;
/// `log-batch` limits: params and metrics per request.
const PARAMS_PER_BATCH: usize = 100;
const METRICS_PER_BATCH: usize = 1000;
/// A request that takes longer than this fails (the run is not held up by a hung server).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The `track` section of a run file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackConfig {
    /// Log the run to an MLflow tracking server.
    #[serde(default)]
    pub mlflow: Option<MlflowConfig>,
}

/// `track.mlflow`: where and under which names a run is logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// The tracking server, `http://host:port` (https needs whet built with the `https`
    /// feature). Default: the `--mlflow` flag, else the `MLFLOW_TRACKING_URI` environment
    /// variable; the flag overrides this key.
    #[serde(default)]
    pub uri: Option<String>,
    /// The experiment the runs go to (created when missing). Default: the run file's name.
    #[serde(default)]
    pub experiment: Option<String>,
    /// The run's name. Default: the run file's name (for an ablation, the parent run's name;
    /// its cells are named `<variant>/seed-<n>`).
    #[serde(default)]
    pub run_name: Option<String>,
}

/// Why a URI is not one whet can log to, or `None` for `http://` / `https://` with a host.
fn uri_problem(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    match rest {
        None => Some(format!(
            "`{uri}` is not an MLflow server address: expected `http://HOST:PORT` or `https://HOST` (whet logs through the REST API, not to `file:` stores or `databricks`)"
        )),
        Some(r) if r.is_empty() || r.starts_with('/') => {
            Some(format!("`{uri}` has no host: expected `http://HOST:PORT`"))
        }
        Some(_) => None,
    }
}

impl MlflowConfig {
    /// Checks the URI's scheme and that the names are not empty.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        if let Some(uri) = &self.uri
            && let Some(p) = uri_problem(uri)
        {
            issues.push("uri", p);
        }
        if self
            .experiment
            .as_ref()
            .is_some_and(|e| e.trim().is_empty())
        {
            issues.push(
                "experiment",
                "the experiment name is empty; leave the key out for the run file's name",
            );
        }
        if self.run_name.as_ref().is_some_and(|e| e.trim().is_empty()) {
            issues.push(
                "run_name",
                "the run name is empty; leave the key out for the run file's name",
            );
        }
        issues
    }
}

impl TrackConfig {
    /// Checks `mlflow`.
    pub fn validate(&self) -> Issues {
        let mut issues = Issues::new();
        if let Some(m) = &self.mlflow {
            issues.nest("mlflow", m.validate());
        }
        issues
    }
}

/// Where one run (or ablation) is logged: resolved from the flag, the run file and the
/// environment by [`MlflowTarget::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowTarget {
    /// The server's base URI, without a trailing `/`.
    pub uri: String,
    /// The experiment's name.
    pub experiment: String,
    /// The run's name, when the run file gives one.
    pub run_name: Option<String>,
}

impl MlflowTarget {
    /// Whether and where `run` is tracked: the URI from `flag` (`--mlflow`), else
    /// `track.mlflow.uri`, else the `MLFLOW_TRACKING_URI` environment variable when the run file
    /// has a `track.mlflow` section. `None` when none gives one.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the flag's or the environment's URI is not `http(s)://HOST…`.
    pub fn resolve(run: &Run, flag: Option<&str>) -> Result<Option<MlflowTarget>> {
        let env = std::env::var(TRACKING_URI_ENV)
            .ok()
            .filter(|s| !s.is_empty());
        let config = run.file().track.as_ref().and_then(|t| t.mlflow.as_ref());
        Self::resolve_from(config, run.name(), flag, env).map_err(Error::Invalid)
    }

    fn resolve_from(
        config: Option<&MlflowConfig>,
        name: &str,
        flag: Option<&str>,
        env: Option<String>,
    ) -> std::result::Result<Option<MlflowTarget>, String> {
        let (uri, from) = match (flag, config) {
            (Some(f), _) => (f.to_string(), "--mlflow".to_string()),
            (None, Some(MlflowConfig { uri: Some(u), .. })) => {
                (u.clone(), "track.mlflow.uri".to_string())
            }
            (None, Some(_)) => match env {
                Some(e) => (e, TRACKING_URI_ENV.to_string()),
                None => {
                    return Err(format!(
                        "the run file has a `track.mlflow` section without `uri`, and neither `--mlflow URI` nor {TRACKING_URI_ENV} gives one"
                    ));
                }
            },
            (None, None) => return Ok(None),
        };
        let uri = uri.trim().trim_end_matches('/').to_string();
        if let Some(p) = uri_problem(&uri) {
            return Err(format!("{from}: {p}"));
        }
        Ok(Some(MlflowTarget {
            uri,
            experiment: config
                .and_then(|c| c.experiment.clone())
                .unwrap_or_else(|| name.to_string()),
            run_name: config.and_then(|c| c.run_name.clone()),
        }))
    }
}

/// A tracking request that failed: the server could not be reached, answered an HTTP error,
/// or answered something that is not MLflow's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// No answer (connection refused, timeout, DNS…).
    #[error("MLflow tracking at {uri}: cannot reach the server ({request}): {message}")]
    Unreachable {
        /// The tracking URI.
        uri: String,
        /// The request (`POST /api/2.0/mlflow/runs/create`).
        request: String,
        /// What the HTTP client said.
        message: String,
    },
    /// The server answered with an HTTP error status.
    #[error("MLflow tracking at {uri}: {request} answered HTTP {status}: {body}")]
    Status {
        /// The tracking URI.
        uri: String,
        /// The request.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The answer's body (cut to 500 characters).
        body: String,
    },
    /// An answer that is not what MLflow sends, or a request whet cannot make.
    #[error("MLflow tracking at {uri}: {request}: {message}")]
    Protocol {
        /// The tracking URI.
        uri: String,
        /// The request.
        request: String,
        /// What is wrong.
        message: String,
    },
    /// A run file to upload as an artifact could not be read.
    #[error("MLflow tracking: reading the artifact `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A blocking client of one MLflow server's REST API.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    uri: String,
    agent: ureq::Agent,
}

/// A `%`-encoding of everything but unreserved characters (a query value or a path segment).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn now_ms() -> i64 {
    ms(SystemTime::now())
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One metric value at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The key (`train_loss`, `test_accuracy`…).
    pub key: String,
    /// The value (finite).
    pub value: f64,
    /// The step (the epoch for curves).
    pub step: i64,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// A run as the server created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The experiment's id.
    pub experiment_id: String,
    /// Where its artifacts go (`mlflow-artifacts:/…` when the server proxies them).
    pub artifact_uri: String,
}

impl MlflowClient {
    /// A client of the server at `uri` (`http://host:port`, no trailing `/`).
    pub fn new(uri: &str) -> MlflowClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        MlflowClient {
            uri: uri.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// The server's URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Sends a request to `path` (under the URI) and returns the answer's JSON (`null` for an
    /// empty answer).
    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value, TrackError> {
        let url = format!("{}{path}", self.uri);
        let request = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .content_type("application/octet-stream")
                .send(&b[..]),
            (_, b) => self
                .agent
                .post(&url)
                .content_type("application/json")
                .send(&b.unwrap_or_default()[..]),
        };
        let mut response = sent.map_err(|e| TrackError::Unreachable {
            uri: self.uri.clone(),
            request: request.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| TrackError::Protocol {
                uri: self.uri.clone(),
                request: request.clone(),
                message: format!("reading the answer: {e}"),
            })?;
        if !(200..300).contains(&status) {
            let body = cut(text.trim(), 500);
            return Err(TrackError::Status {
                uri: self.uri.clone(),
                request,
                status,
                body: if body.is_empty() {
                    "(empty answer)".into()
                } else {
                    body
                },
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| TrackError::Protocol {
            uri: self.uri.clone(),
            request,
            message: format!("the answer is not JSON ({e}): {}", cut(text.trim(), 200)),
        })
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, TrackError> {
        self.call(
            "POST",
            &format!("/api/2.0/mlflow/{endpoint}"),
            Some(body.to_string().into_bytes()),
        )
    }

    fn field(&self, v: &Value, pointer: &str, request: &str) -> Result<String, TrackError> {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| TrackError::Protocol {
                uri: self.uri.clone(),
                request: request.into(),
                message: format!(
                    "the answer has no `{pointer}`: {}",
                    cut(&v.to_string(), 200)
                ),
            })
    }

    /// The id of the experiment `name`, created when it does not exist.
    ///
    /// # Errors
    /// The server's error, or a deleted experiment of that name (restore it or pick another).
    pub fn experiment_id(&self, name: &str) -> Result<String, TrackError> {
        let get = || {
            self.call(
                "GET",
                &format!(
                    "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
                    encode(name)
                ),
                None,
            )
        };
        let request = "GET /api/2.0/mlflow/experiments/get-by-name";
        let found = match get() {
            Ok(v) => Some(v),
            Err(TrackError::Status { status: 404, .. }) => None,
            Err(e) => return Err(e),
        };
        let v = match found {
            Some(v) => v,
            None => match self.post("experiments/create", &json!({ "name": name })) {
                Ok(v) => return self.field(&v, "/experiment_id", "POST experiments/create"),
                // Created meanwhile by another process.
                Err(TrackError::Status { status: 400, .. }) => get()?,
                Err(e) => return Err(e),
            },
        };
        if v.pointer("/experiment/lifecycle_stage")
            .and_then(Value::as_str)
            == Some("deleted")
        {
            return Err(TrackError::Protocol {
                uri: self.uri.clone(),
                request: request.into(),
                message: format!(
                    "the experiment `{name}` is deleted: restore it (`mlflow experiments restore`) or set `track.mlflow.experiment` to another name"
                ),
            });
        }
        self.field(&v, "/experiment/experiment_id", request)
    }

    /// Creates a run in `experiment_id`, started at `start_ms`, with `tags`.
    ///
    /// # Errors
    /// The server's error.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, TrackError> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": cut(v, MAX_TAG_VALUE) }))
            .collect();
        let v = self.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_ms,
                "tags": tags,
            }),
        )?;
        let request = "POST /api/2.0/mlflow/runs/create";
        Ok(RunInfo {
            run_id: self.field(&v, "/run/info/run_id", request)?,
            experiment_id: self.field(&v, "/run/info/experiment_id", request)?,
            artifact_uri: self.field(&v, "/run/info/artifact_uri", request)?,
        })
    }

    /// Logs params, tags and metrics in as many `log-batch` requests as MLflow's limits need
    /// (100 params, 1000 metrics per request). Non-finite metric values are left out (JSON has
    /// none; a diverged run's `NaN` loss says the same as its `FAILED` status).
    ///
    /// # Errors
    /// The server's error.
    pub fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
        metrics: &[MetricPoint],
    ) -> Result<(), TrackError> {
        let metrics: Vec<Value> = metrics
            .iter()
            .filter(|m| m.value.is_finite())
            .map(|m| {
                json!({ "key": cut(&m.key, MAX_KEY), "value": m.value, "step": m.step, "timestamp": m.timestamp })
            })
            .collect();
        let params: Vec<Value> = params
            .iter()
            .map(|(k, v)| json!({ "key": cut(k, MAX_KEY), "value": cut(v, MAX_PARAM_VALUE) }))
            .collect();
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": cut(v, MAX_TAG_VALUE) }))
            .collect();
        if !tags.is_empty() {
            self.post("runs/log-batch", &json!({ "run_id": run_id, "tags": tags }))?;
        }
        for chunk in params.chunks(PARAMS_PER_BATCH) {
            self.post(
                "runs/log-batch",
                &json!({ "run_id": run_id, "params": chunk }),
            )?;
        }
        for chunk in metrics.chunks(METRICS_PER_BATCH) {
            self.post(
                "runs/log-batch",
                &json!({ "run_id": run_id, "metrics": chunk }),
            )?;
        }
        Ok(())
    }

    /// Ends a run with `status` (`FINISHED` or `FAILED`) at `end_ms`.
    ///
    /// # Errors
    /// The server's error.
    pub fn end_run(&self, run_id: &str, status: &str, end_ms: i64) -> Result<(), TrackError> {
        self.post(
            "runs/update",
            &json!({ "run_id": run_id, "status": status, "end_time": end_ms }),
        )
        .map(|_| ())
    }

    /// Uploads `bytes` as the artifact `name` (a `/`-separated relative path) of a run whose
    /// artifact URI is `artifact_uri`, through the server's artifact proxy.
    ///
    /// # Errors
    /// An artifact URI the server does not proxy (`mlflow server` started with
    /// `--default-artifact-root` pointing at a folder or a bucket, or `--no-serve-artifacts`),
    /// or the server's error.
    pub fn upload_artifact(
        &self,
        artifact_uri: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), TrackError> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(TrackError::Protocol {
                uri: self.uri.clone(),
                request: format!("uploading `{name}`"),
                message: format!(
                    "the run's artifact location `{artifact_uri}` is not served by the tracking server; start `mlflow server` with artifact proxying (the default, or `--artifacts-destination DIR`) to receive whet's artifacts"
                ),
            });
        };
        // `mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host:port/1/abc/artifacts`.
        let path = match rest.strip_prefix("//") {
            Some(hosted) => hosted.find('/').map_or("", |i| &hosted[i..]),
            None => rest,
        };
        let mut url = String::from("/api/2.0/mlflow-artifacts/artifacts");
        for seg in path.split('/').chain(name.split('/')) {
            if !seg.is_empty() {
                url.push('/');
                url.push_str(&encode(seg));
            }
        }
        self.call("PUT", &url, Some(bytes)).map(|_| ())
    }
}

/// Flattens a run file's value tree into MLflow params: dotted keys (`train.epochs`,
/// `augment.ops.0.rotate.degrees`), scalars as text, empty lists and maps as `[]` / `{}`.
/// Characters MLflow does not allow in keys become `_`. The `track` section is left out (where
/// a run is logged is not one of its parameters).
pub fn flatten_params(value: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(&key(&metric_key(k)), v, out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, v) in a.iter().enumerate() {
                    walk(&key(&i.to_string()), v, out);
                }
            }
            Value::Object(_) => {
                out.insert(prefix.to_string(), "{}".into());
            }
            Value::Array(_) => {
                out.insert(prefix.to_string(), "[]".into());
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            Value::Null => {
                out.insert(prefix.to_string(), "null".into());
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(m) = value {
        for (k, v) in m {
            if k != "track" {
                walk(&metric_key(k), v, &mut out);
            }
        }
    }
    out.into_iter().collect()
}

/// `name` with every character MLflow does not allow in a key (letters, digits, `_ - . / :`
/// and space) replaced by `_`.
pub fn metric_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The per-epoch curves as metric points: `train_loss`, `train_accuracy`, `val_loss`,
/// `val_accuracy`, `epoch_seconds`, with step = the epoch number (from 1) and a timestamp of
/// the run's start plus the training time so far.
pub fn curve_points(record: &RunRecord, start_ms: i64) -> Vec<MetricPoint> {
    let mut points = Vec::new();
    let mut elapsed = 0.0;
    for row in &record.curves {
        if row.seconds.is_finite() {
            elapsed += row.seconds;
        }
        let timestamp = start_ms + (elapsed * 1000.0) as i64;
        let step = i64::try_from(row.epoch).unwrap_or(i64::MAX);
        for (key, value) in [
            ("train_loss", Some(row.train_loss)),
            ("train_accuracy", row.train_accuracy),
            ("val_loss", row.val_loss),
            ("val_accuracy", row.val_accuracy),
            ("epoch_seconds", Some(row.seconds)),
        ] {
            if let Some(value) = value {
                points.push(MetricPoint {
                    key: key.into(),
                    value,
                    step,
                    timestamp,
                });
            }
        }
    }
    points
}

fn final_points(flat: &BTreeMap<String, f64>, timestamp: i64) -> Vec<MetricPoint> {
    flat.iter()
        .map(|(k, v)| MetricPoint {
            key: metric_key(k),
            value: *v,
            step: 0,
            timestamp,
        })
        .collect()
}

/// A run's folder files to upload: the regular files at its top level, but not hidden ones
/// (locks, temporaries) or whet's output marker. Sorted by name.
fn artifact_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Ok => "FINISHED",
        _ => "FAILED",
    }
}

/// A run (or an ablation's parent run) created on the server and not yet ended.
#[derive(Debug)]
pub struct MlflowRun {
    client: MlflowClient,
    info: RunInfo,
    start_ms: i64,
    experiment: String,
}

impl MlflowRun {
    /// Creates the run of `run` (with `seed`) in `target`'s experiment and logs its params,
    /// before training starts.
    ///
    /// # Errors
    /// The server cannot be reached or answers an error; the caller warns and runs untracked.
    pub fn start_run(target: &MlflowTarget, run: &Run, seed: u64) -> Result<MlflowRun, TrackError> {
        let client = MlflowClient::new(&target.uri);
        let experiment_id = client.experiment_id(&target.experiment)?;
        let name = target.run_name.clone().unwrap_or_else(|| run.name().into());
        let start_ms = now_ms();
        let info = client.create_run(&experiment_id, &name, start_ms, &run_tags(run, seed))?;
        let r = MlflowRun {
            client,
            info,
            start_ms,
            experiment: target.experiment.clone(),
        };
        r.or_fail(|r| {
            r.client
                .log_batch(&r.info.run_id, &run_params(run, seed), &[], &[])
        })?;
        Ok(r)
    }

    /// Creates an ablation's parent run in `target`'s experiment and logs the baseline's
    /// params, before the cells run.
    ///
    /// # Errors
    /// The server cannot be reached or answers an error.
    pub fn start_ablation(target: &MlflowTarget, plan: &Plan) -> Result<MlflowRun, TrackError> {
        let client = MlflowClient::new(&target.uri);
        let experiment_id = client.experiment_id(&target.experiment)?;
        let name = target.run_name.clone().unwrap_or_else(|| plan.name.clone());
        let start_ms = now_ms();
        let mut tags = vec![
            ("whet.kind".to_string(), "ablation".to_string()),
            ("whet.pipeline".into(), plan.pipeline.display().to_string()),
            ("whet.metric".into(), plan.metric.clone()),
        ];
        let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        tags.push(("whet.variants".into(), names.join(", ")));
        let info = client.create_run(&experiment_id, &name, start_ms, &tags)?;
        let r = MlflowRun {
            client,
            info,
            start_ms,
            experiment: target.experiment.clone(),
        };
        let mut params = flatten_params(&plan.variants[0].run.value);
        params.retain(|(k, _)| k != "seed" && !k.starts_with("ablation."));
        let seeds: Vec<String> = plan.seeds.iter().map(u64::to_string).collect();
        params.push(("ablation.seeds".into(), seeds.join(", ")));
        params.push(("ablation.metric".into(), plan.metric.clone()));
        r.or_fail(|r| r.client.log_batch(&r.info.run_id, &params, &[], &[]))?;
        Ok(r)
    }

    /// The run as the server created it.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    /// The run's page in the MLflow UI.
    pub fn url(&self) -> String {
        format!(
            "{}/#/experiments/{}/runs/{}",
            self.client.uri(),
            self.info.experiment_id,
            self.info.run_id
        )
    }

    /// The experiment's name.
    pub fn experiment(&self) -> &str {
        &self.experiment
    }

    /// Runs `f`; when it fails, ends the run `FAILED` (best effort) and returns the error.
    fn or_fail(&self, f: impl FnOnce(&Self) -> Result<(), TrackError>) -> Result<(), TrackError> {
        f(self).inspect_err(|e| {
            let tags = [("whet.tracking_error".to_string(), e.to_string())];
            let _ = self.client.log_batch(&self.info.run_id, &[], &tags, &[]);
            let _ = self.client.end_run(&self.info.run_id, "FAILED", now_ms());
        })
    }

    /// Logs a finished run's epochs, final metrics and the files in `out`, and ends the run:
    /// `FINISHED` when it ended ok, else `FAILED` with its status and message as tags.
    ///
    /// # Errors
    /// The server's error (the run is then ended `FAILED` if the server still answers).
    pub fn finish_run(
        self,
        out: &Path,
        result: std::result::Result<&RunOutcome, &Error>,
    ) -> Result<(), TrackError> {
        let id = self.info.run_id.clone();
        self.or_fail(|r| {
            let (status, tags, metrics) = match result {
                Ok(o) => {
                    let mut points = curve_points(&o.record(), r.start_ms);
                    points.extend(final_points(&o.metrics.flat(), now_ms()));
                    (
                        o.metrics.status,
                        status_tags(o.metrics.status, o.metrics.message.as_deref()),
                        points,
                    )
                }
                Err(e) => {
                    let msg = crate::error::chain_text(e);
                    (
                        RunStatus::Failed,
                        status_tags(RunStatus::Failed, Some(&msg)),
                        vec![],
                    )
                }
            };
            r.client.log_batch(&id, &[], &tags, &metrics)?;
            r.upload_dir(&r.info.artifact_uri, out)?;
            r.client.end_run(&id, status_name(status), now_ms())
        })
    }

    /// Logs an ablation: one nested run per cell with a record (its curves, final metrics,
    /// params and files), the per-variant summary as the parent's metrics
    /// (`<variant>.<metric>_mean`, `<variant>.<metric>_delta`), the report's files as the
    /// parent's artifacts, and ends the parent: `FINISHED` when some cell ran ok, else
    /// `FAILED`.
    ///
    /// # Errors
    /// The server's error (the parent is then ended `FAILED` if the server still answers).
    pub fn finish_ablation(
        self,
        plan: &Plan,
        out: &Path,
        report: std::result::Result<&AblationReport, &Error>,
    ) -> Result<(), TrackError> {
        let id = self.info.run_id.clone();
        self.or_fail(|r| {
            let report = match report {
                Ok(rep) => rep,
                Err(e) => {
                    let tags = status_tags(RunStatus::Failed, Some(&crate::error::chain_text(e)));
                    r.client.log_batch(&id, &[], &tags, &[])?;
                    return r.client.end_run(&id, "FAILED", now_ms());
                }
            };
            for rec in &report.input.runs {
                r.log_cell(plan, out, rec)?;
            }
            let flat = whet_report::dvc_variants(&report.summary.variants);
            let now = now_ms();
            let mut points = Vec::new();
            for (variant, metrics) in &flat {
                for (k, v) in metrics {
                    points.push(MetricPoint {
                        key: metric_key(&format!("{variant}.{k}")),
                        value: *v,
                        step: 0,
                        timestamp: now,
                    });
                }
            }
            r.client.log_batch(&id, &[], &[], &points)?;
            r.upload_dir(&r.info.artifact_uri, out)?;
            let any_ok = report.input.runs.iter().any(|x| x.status == RunStatus::Ok);
            r.client
                .end_run(&id, if any_ok { "FINISHED" } else { "FAILED" }, now_ms())
        })
    }

    /// One cell of an ablation as a nested run.
    fn log_cell(&self, plan: &Plan, out: &Path, rec: &RunRecord) -> Result<(), TrackError> {
        let Some(cell) = plan
            .cells
            .iter()
            .find(|c| plan.variants[c.variant].name == rec.variant && c.seed == rec.seed)
        else {
            return Ok(());
        };
        let variant = &plan.variants[cell.variant];
        let dir = plan.cell_dir(out, cell.index).ok();
        let mut tags = run_tags(&variant.run, rec.seed);
        tags.push(("mlflow.parentRunId".into(), self.info.run_id.clone()));
        let name = format!("{}/seed-{}", rec.variant, rec.seed);
        let child =
            self.client
                .create_run(&self.info.experiment_id, &name, self.start_ms, &tags)?;
        let result = (|| {
            let mut points = curve_points(rec, self.start_ms);
            // The cell's metrics.json has every final number; a failed cell has none.
            let metrics: Option<Metrics> = dir
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join("metrics.json")).ok())
                .and_then(|t| serde_json::from_str(&t).ok());
            match metrics.filter(|_| rec.status != RunStatus::Failed) {
                Some(m) => points.extend(final_points(&m.flat(), now_ms())),
                None => points.extend(final_points(&rec.metrics, now_ms())),
            }
            let tags = status_tags(rec.status, rec.message.as_deref());
            self.client.log_batch(
                &child.run_id,
                &run_params(&variant.run, rec.seed),
                &tags,
                &points,
            )?;
            if let Some(d) = &dir {
                self.upload_dir(&child.artifact_uri, d)?;
            }
            self.client
                .end_run(&child.run_id, status_name(rec.status), now_ms())
        })();
        if result.is_err() {
            let _ = self.client.end_run(&child.run_id, "FAILED", now_ms());
        }
        result
    }

    fn upload_dir(&self, artifact_uri: &str, dir: &Path) -> Result<(), TrackError> {
        for f in artifact_files(dir) {
            let bytes = std::fs::read(&f).map_err(|source| TrackError::Read {
                path: f.clone(),
                source,
            })?;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.client.upload_artifact(artifact_uri, &name, bytes)?;
        }
        Ok(())
    }
}

/// A run's params: its resolved run file flattened, with `seed` the seed it ran with.
fn run_params(run: &Run, seed: u64) -> Vec<(String, String)> {
    let mut params = flatten_params(&run.value);
    params.retain(|(k, _)| k != "seed" && !k.starts_with("ablation."));
    params.push(("seed".into(), seed.to_string()));
    params
}

fn run_tags(run: &Run, seed: u64) -> Vec<(String, String)> {
    vec![
        ("whet.kind".to_string(), "run".to_string()),
        ("whet.pipeline".into(), run.path().display().to_string()),
        ("whet.variant".into(), run.variant().to_string()),
        ("whet.seed".into(), seed.to_string()),
    ]
}

fn status_tags(status: RunStatus, message: Option<&str>) -> Vec<(String, String)> {
    let mut tags = vec![("whet.status".to_string(), status.as_str().to_string())];
    if status != RunStatus::Ok
        && let Some(m) = message
    {
        tags.push(("whet.message".into(), m.to_string()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_dotted_keys_of_the_run_file_without_the_track_section() {
        let v = json!({
            "name": "tiny",
            "seed": 3,
            "augment": { "ops": [ { "rotate": { "degrees": 12.0, "p": 0.7 } } ] },
            "steps": [],
            "data": { "tables": { "a=b": "x.csv" } },
            "track": { "mlflow": { "uri": "http://h:1" } },
            "pretrain": null
        });
        let p: BTreeMap<String, String> = flatten_params(&v).into_iter().collect();
        assert_eq!(p["name"], "tiny");
        assert_eq!(p["seed"], "3");
        assert_eq!(p["augment.ops.0.rotate.degrees"], "12.0");
        assert_eq!(p["augment.ops.0.rotate.p"], "0.7");
        assert_eq!(p["steps"], "[]");
        assert_eq!(p["pretrain"], "null");
        // `=` is not allowed in an MLflow key.
        assert_eq!(p["data.tables.a_b"], "x.csv");
        assert!(!p.keys().any(|k| k.starts_with("track")), "{p:?}");
    }

    #[test]
    fn the_uri_comes_from_the_flag_then_the_file_then_the_environment() {
        let file = MlflowConfig {
            uri: Some("http://file:1/".into()),
            experiment: Some("exp".into()),
            run_name: None,
        };
        let no_uri = MlflowConfig {
            uri: None,
            ..file.clone()
        };
        let env = || Some("http://env:3".to_string());
        let t = MlflowTarget::resolve_from(Some(&file), "n", Some("http://flag:2"), env())
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("http://flag:2", "exp")
        );
        let t = MlflowTarget::resolve_from(Some(&file), "n", None, env())
            .unwrap()
            .unwrap();
        assert_eq!(t.uri, "http://file:1");
        let t = MlflowTarget::resolve_from(Some(&no_uri), "n", None, env())
            .unwrap()
            .unwrap();
        assert_eq!(t.uri, "http://env:3");
        // Without a section the environment alone does not turn tracking on; the flag does.
        assert_eq!(
            MlflowTarget::resolve_from(None, "n", None, env()).unwrap(),
            None
        );
        let t = MlflowTarget::resolve_from(None, "n", Some("http://f:1"), None)
            .unwrap()
            .unwrap();
        assert_eq!((t.experiment.as_str(), t.run_name), ("n", None));
        let e = MlflowTarget::resolve_from(Some(&no_uri), "n", None, None).unwrap_err();
        assert!(e.contains(TRACKING_URI_ENV), "{e}");
        let e = MlflowTarget::resolve_from(None, "n", Some("file:./mlruns"), None).unwrap_err();
        assert!(
            e.starts_with("--mlflow: `file:./mlruns` is not an MLflow server"),
            "{e}"
        );
    }

    #[test]
    fn the_section_checks_the_uri_and_names() {
        let c = TrackConfig {
            mlflow: Some(MlflowConfig {
                uri: Some("localhost:5000".into()),
                experiment: Some(" ".into()),
                run_name: Some(String::new()),
            }),
        };
        let paths: Vec<String> = c.validate().iter().map(|i| i.path.clone()).collect();
        assert_eq!(
            paths,
            ["mlflow.uri", "mlflow.experiment", "mlflow.run_name"]
        );
        assert!(uri_problem("https://mlflow.example.org").is_none());
        assert!(uri_problem("http:///x").is_some());
    }

    #[test]
    fn curves_become_one_point_per_epoch_and_metric() {
        let rec = RunRecord {
            variant: "baseline".into(),
            seed: 1,
            status: RunStatus::Ok,
            metrics: Default::default(),
            validation: Default::default(),
            validation_samples: None,
            train_seconds: 2.0,
            curves: (1..=3)
                .map(|e| whet_report::EpochRow {
                    epoch: e,
                    train_loss: 1.0 / e as f64,
                    train_accuracy: Some(0.5),
                    val_loss: None,
                    val_accuracy: None,
                    seconds: 0.5,
                })
                .collect(),
            message: None,
            cross_validation: None,
        };
        let p = curve_points(&rec, 1000);
        let loss: Vec<(i64, i64)> = p
            .iter()
            .filter(|m| m.key == "train_loss")
            .map(|m| (m.step, m.timestamp))
            .collect();
        assert_eq!(loss, [(1, 1500), (2, 2000), (3, 2500)]);
        assert!(!p.iter().any(|m| m.key == "val_loss"));
        assert_eq!(p.len(), 9);
    }

    #[test]
    fn an_unreachable_server_is_an_error_naming_the_uri() {
        // A port nobody listens on: bind one, then drop the listener.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let uri = format!("http://127.0.0.1:{port}");
        let e = MlflowClient::new(&uri).experiment_id("x").unwrap_err();
        assert!(matches!(e, TrackError::Unreachable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&uri) && text.contains("experiments/get-by-name"),
            "{text}"
        );
    }

    #[test]
    fn artifact_uris_outside_the_proxy_are_refused_with_a_hint() {
        let c = MlflowClient::new("http://127.0.0.1:9");
        let e = c
            .upload_artifact("/srv/mlruns/1/abc/artifacts", "report.md", vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("artifact proxying"), "{e}");
    }
}
