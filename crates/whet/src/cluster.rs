//! Running an ablation's cells outside one process: the plan file `OUT/plan.json` that
//! `whet ablate OUT --cell I` and `whet ablate OUT --collect` read ([`Plan::save`],
//! [`StoredPlan`]), local worker processes (`--jobs N`, [`Plan::run_workers`]) and the
//! Kubernetes Indexed Job manifest ([`Plan::kubernetes_job`]).
//!
//! A plan file records how the plan was made (the run file's absolute path, the `--set`,
//! `--seeds`, `--only` and `--sweep` options) and what it was (every variant's resolved run file,
//! every cell's hash). [`StoredPlan::load`] makes the plan again the same way and compares the
//! hashes: a cell whose run file or input files changed since planning refuses to run, and
//! [`StoredPlan::collect`] reports the cells as planned.

use crate::ablation::{CellResult, Plan, PlanOptions};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::runfile::{Override, Run, Sweep};
use crate::{Ablation, AblationReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use whet_core::Progress;
use whet_report::RunStatus;

/// The plan file's name in an ablation's output folder.
pub const PLAN_FILE: &str = "plan.json";

/// The version of the plan file's format; a file of another version is refused.
pub const PLAN_FORMAT: u32 = 1;

/// Largest plan file read (10,000 variants with their resolved run files fit easily).
const MAX_PLAN_BYTES: u64 = 256 << 20;

/// `OUT/plan.json`: how an ablation was planned and its cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// The whet version that wrote it.
    pub whet_version: String,
    /// The run file (absolute path).
    pub pipeline: PathBuf,
    /// `--set` overrides, as given.
    pub sets: Vec<String>,
    /// `--seeds`, when given.
    pub seeds: Option<u64>,
    /// `--only` names.
    pub only: Vec<String>,
    /// `--sweep` options, as given.
    pub sweeps: Vec<String>,
    /// The metric verdicts are about.
    pub metric: String,
    /// Every variant, the baseline first.
    pub variants: Vec<PlanFileVariant>,
    /// Every cell (variant × seed).
    pub cells: Vec<PlanFileCell>,
    /// The commands that run one cell and collect the report.
    pub commands: PlanCommands,
}

/// A variant in a [`PlanFile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFileVariant {
    /// Its name.
    pub name: String,
    /// What it changes.
    pub description: String,
    /// Whether the ablation runs it (`--only` leaves the others out).
    pub selected: bool,
    /// Its resolved run file.
    pub run: serde_json::Value,
}

/// A cell in a [`PlanFile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFileCell {
    /// Its index (`--cell I`).
    pub index: usize,
    /// Its variant's name.
    pub variant: String,
    /// Its seed.
    pub seed: u64,
    /// SHA-256 of the variant's resolved run file, the seed and its input files' content.
    pub hash: String,
    /// Its folder, relative to the plan's folder.
    pub dir: String,
    /// Whether the ablation runs it.
    pub selected: bool,
}

/// The commands of a [`PlanFile`], with absolute paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanCommands {
    /// Runs cell `$I`.
    pub cell: String,
    /// Builds the report from the finished cells.
    pub collect: String,
}

/// `s` as one shell word: unchanged when it is made of safe characters, else single-quoted.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `path` made absolute against the current folder (not resolving links).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(Error::io("resolving", path))
}

impl Plan {
    /// The command that runs cell `index` of the plan in `out` (`$I` for a placeholder), with
    /// `out` made absolute so it runs from any folder.
    pub fn cell_command(out: &Path, index: &str) -> String {
        let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
        format!(
            "whet ablate {} --cell {index}",
            shell_word(&out.display().to_string())
        )
    }

    /// The plan file of this plan written into `out`.
    ///
    /// # Errors
    /// A path that cannot be made absolute, or a variant name that is not a folder name.
    pub fn plan_file(&self, out: &Path) -> Result<PlanFile> {
        let out = absolute(out)?;
        let base = &self.variants[0].run;
        let mut cells = Vec::with_capacity(self.cells.len());
        for c in &self.cells {
            let dir = self.cell_dir(&out, c.index)?;
            cells.push(PlanFileCell {
                index: c.index,
                variant: self.variants[c.variant].name.clone(),
                seed: c.seed,
                hash: c.hash.clone(),
                dir: dir.strip_prefix(&out).unwrap_or(&dir).display().to_string(),
                selected: self.selected.contains(&c.variant),
            });
        }
        Ok(PlanFile {
            format: PLAN_FORMAT,
            whet_version: env!("CARGO_PKG_VERSION").to_string(),
            pipeline: absolute(&self.pipeline)?,
            sets: base.overrides().iter().map(ToString::to_string).collect(),
            seeds: self.options.seeds,
            only: self.options.only.clone(),
            sweeps: self
                .options
                .sweeps
                .iter()
                .map(ToString::to_string)
                .collect(),
            metric: self.metric.clone(),
            variants: self
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| PlanFileVariant {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    selected: self.selected.contains(&i),
                    run: v.run.value.clone(),
                })
                .collect(),
            cells,
            commands: PlanCommands {
                cell: Plan::cell_command(&out, "$I"),
                collect: format!(
                    "whet ablate {} --collect",
                    shell_word(&out.display().to_string())
                ),
            },
        })
    }

    /// Writes `out/plan.json` (atomically) into `out`, which the caller has locked.
    pub(crate) fn save_locked(&self, out: &Path) -> Result<PathBuf> {
        let file = self.plan_file(out)?;
        let path = out.join(PLAN_FILE);
        let mut text = serde_json::to_vec_pretty(&file).map_err(|source| Error::Json {
            what: "plan file",
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        whet_core::fsx::atomic_write(&path, &text)?;
        Ok(path)
    }

    /// Locks `out`, checks it overlaps no input, and writes `out/plan.json`, from which
    /// `whet ablate OUT --cell I` runs a cell and `whet ablate OUT --collect` builds the report.
    ///
    /// # Errors
    /// As [`Plan::check_output`], [`Error::Lock`], or the file cannot be written.
    pub fn save(&self, out: &Path) -> Result<PathBuf> {
        self.check_output(out)?;
        let _lock = whet_core::lock::FolderLock::acquire(out)?;
        whet_core::outputs::mark(out)?;
        self.save_locked(out)
    }

    /// Runs the selected cells as worker processes, at most `jobs` at a time: `worker(i)` is
    /// the command that runs cell `i` (`whet ablate OUT --cell I --threads T`); its output goes
    /// to `out/logs/cell-I.log`. A cell whose record is kept (same hash, `fresh` false) is not
    /// started. Then [`Plan::collect`]s, with a note for every cell that left no record.
    /// Results equal [`Plan::run`]'s: every cell is computed alone from its seed.
    ///
    /// # Errors
    /// [`Error::Lock`] when another process writes into `out`, a worker that cannot be
    /// started, or the report.
    pub fn run_workers(
        &self,
        out: &Path,
        jobs: usize,
        fresh: bool,
        worker: &(dyn Fn(usize) -> std::process::Command + Sync),
        progress: &dyn Progress,
    ) -> Result<AblationReport> {
        self.check_output(out)?;
        let _lock = whet_core::lock::FolderLock::acquire(out)?;
        whet_core::outputs::mark(out)?;
        self.save_locked(out)?;
        let logs = out.join("logs");
        std::fs::create_dir_all(&logs).map_err(Error::io("creating", &logs))?;
        let mut kept = 0;
        let lost = std::sync::Mutex::new(Vec::<String>::new());
        let mut rounds = crate::ablation::Rounds::default();
        while let Some((round, todo)) = rounds.next(self, out, fresh) {
            progress.begin(
                &format!("{}, {jobs} workers", self.round_label(round, todo.len())),
                Some(todo.len() as u64),
            );
            let mut queue = Vec::new();
            for &i in &todo {
                match (!fresh).then(|| self.kept_record(i, out)).flatten() {
                    Some(record) => {
                        kept += 1;
                        progress.finished(&self.cell_line(&CellResult { record, kept: true }));
                        progress.advance(1);
                    }
                    None => queue.push(i),
                }
            }
            let next = AtomicUsize::new(0);
            let started: Result<()> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..jobs.max(1))
                    .map(|_| {
                        s.spawn(|| -> Result<()> {
                            loop {
                                let k = next.fetch_add(1, Ordering::Relaxed);
                                let Some(&i) = queue.get(k) else {
                                    return Ok(());
                                };
                                let log_path = logs.join(format!("cell-{i}.log"));
                                let log = std::fs::File::create(&log_path)
                                    .map_err(Error::io("creating", &log_path))?;
                                let err = log.try_clone().map_err(Error::io("opening", &log_path))?;
                                let mut cmd = worker(i);
                                cmd.stdin(std::process::Stdio::null())
                                    .stdout(log)
                                    .stderr(err);
                                let status = cmd.status().map_err(|e| {
                                    Error::Invalid(format!(
                                        "cannot start the worker for cell {i} ({cmd:?}): {e}"
                                    ))
                                })?;
                                match self.kept_record(i, out) {
                                    Some(record) => {
                                        progress.finished(
                                            &self.cell_line(&CellResult {
                                                record,
                                                kept: false,
                                            }),
                                        );
                                    }
                                    None => {
                                        let c = &self.cells[i];
                                        let msg = format!(
                                            "cell {i} (`{}` seed {}) left no result: its worker ended with {status}; see {}",
                                            self.variants[c.variant].name,
                                            c.seed,
                                            log_path.display()
                                        );
                                        progress.warn(&msg);
                                        lost.lock().expect("no panic holds it").push(msg);
                                    }
                                }
                                progress.advance(1);
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().expect("a worker thread does not panic"))
            });
            started?;
            progress.end();
        }
        let mut notes: Vec<String> = crate::ablation::reuse_note(kept, rounds.attempted().len())
            .into_iter()
            .collect();
        notes.extend(
            lost.into_inner()
                .expect("no panic holds it")
                .into_iter()
                .map(|m| format!("{m}; rerun it with `{}`.", Plan::cell_command(out, "I"))),
        );
        self.collect_locked(out, notes)
    }
}

/// A plan read back from `OUT/plan.json` and made again from its run file and options.
#[derive(Debug, Clone)]
pub struct StoredPlan {
    /// The plan as made now, with the hashes of the plan file (so the records of the planned
    /// cells are found).
    pub plan: Plan,
    /// The plan file.
    pub file: PlanFile,
    /// The run file as loaded now (with the plan's `--set`).
    pub run: Run,
    /// The folder it is in.
    pub out: PathBuf,
    /// Cells whose hash differs now (their run file or an input file changed since planning).
    pub changed: Vec<usize>,
}

impl StoredPlan {
    /// Reads `out/plan.json` and makes the plan again.
    ///
    /// # Errors
    /// No or a malformed plan file, another format, a run file that no longer loads or makes
    /// other variants than planned.
    pub fn load(out: &Path) -> Result<StoredPlan> {
        let path = out.join(PLAN_FILE);
        let len = std::fs::metadata(&path)
            .map_err(|_| {
                Error::Invalid(format!(
                    "`{}` has no {PLAN_FILE}: it is not an ablation's folder; make one with `whet ablate PIPELINE --plan --out {}`",
                    out.display(),
                    shell_word(&out.display().to_string())
                ))
            })?
            .len();
        if len > MAX_PLAN_BYTES {
            return Err(Error::Invalid(format!(
                "`{}` is {len} bytes, more than a plan file can be ({MAX_PLAN_BYTES})",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
        let file: PlanFile = serde_json::from_str(&text).map_err(|source| Error::Json {
            what: "plan file",
            path: path.clone(),
            source,
        })?;
        if file.format != PLAN_FORMAT {
            return Err(Error::Invalid(format!(
                "`{}` has format {} (written by whet {}); this whet reads format {PLAN_FORMAT}: plan again",
                path.display(),
                file.format,
                file.whet_version
            )));
        }
        let sets = file
            .sets
            .iter()
            .map(|s| Override::parse(s))
            .collect::<Result<Vec<_>>>()?;
        let run = Run::load(&file.pipeline, &sets)?;
        let options = PlanOptions {
            seeds: file.seeds,
            only: file.only.clone(),
            sweeps: file
                .sweeps
                .iter()
                .map(|s| Sweep::parse(s))
                .collect::<Result<Vec<_>>>()?,
        };
        let mut plan = Ablation::plan(&run, &options)?;
        let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        let planned: Vec<&str> = file.variants.iter().map(|v| v.name.as_str()).collect();
        if names != planned || plan.cells.len() != file.cells.len() {
            return Err(Error::Invalid(format!(
                "`{}` now makes the variants {} with {} cells, but the plan in `{}` has {} with {} cells: plan again with `whet ablate {} --plan --out {}`",
                file.pipeline.display(),
                names.join(", "),
                plan.cells.len(),
                path.display(),
                planned.join(", "),
                file.cells.len(),
                shell_word(&file.pipeline.display().to_string()),
                shell_word(&out.display().to_string())
            )));
        }
        let mut changed = Vec::new();
        for (c, f) in plan.cells.iter_mut().zip(&file.cells) {
            if c.hash != f.hash {
                changed.push(c.index);
                c.hash = f.hash.clone();
            }
        }
        Ok(StoredPlan {
            plan,
            file,
            run,
            out: out.to_path_buf(),
            changed,
        })
    }

    /// Runs cell `i` (see [`Plan::run_cell`]); a kept record is returned without running.
    /// `None` for a cell of a variant `--only` left out: there is nothing to do (a Kubernetes
    /// job starts a pod for every index).
    ///
    /// # Errors
    /// A cell out of range, a cell whose run file or inputs changed since planning, or as
    /// [`Plan::run_cell`].
    pub fn run_cell(
        &self,
        i: usize,
        cache: &Cache,
        fresh: bool,
        progress: &dyn Progress,
    ) -> Result<Option<CellResult>> {
        self.plan.cell_dir(&self.out, i)?;
        if !self.plan.selected.contains(&self.plan.cells[i].variant) {
            return Ok(None);
        }
        if self.changed.contains(&i) {
            let c = &self.plan.cells[i];
            return Err(Error::Invalid(format!(
                "cell {i} (`{}` seed {}): its run file or input files changed since the plan was made, so its result would not be the planned one; plan again with `whet ablate {} --plan --out {}` (finished cells whose inputs did not change are kept)",
                self.plan.variants[c.variant].name,
                c.seed,
                shell_word(&self.file.pipeline.display().to_string()),
                shell_word(&self.out.display().to_string())
            )));
        }
        self.plan
            .run_cell(i, &self.out, cache, fresh, progress)
            .map(Some)
    }

    /// Builds the report from the finished cells (see [`Plan::collect`]); cells without a
    /// result, or that failed, are named in the notes with the command that reruns them.
    ///
    /// # Errors
    /// As [`Plan::collect`].
    pub fn collect(&self) -> Result<AblationReport> {
        let mut notes = Vec::new();
        if !self.changed.is_empty() {
            notes.push(format!(
                "The run file or input files of {} of {} cells changed since the plan was made; this report is of the runs as planned.",
                self.changed.len(),
                self.plan.cells.len()
            ));
        }
        let mut report = self.plan.collect(&self.out, notes)?;
        report
            .missing
            .retain(|i| self.plan.selected.contains(&self.plan.cells[*i].variant));
        Ok(report)
    }

    /// Lines naming every selected cell of `report` without a result or that failed, each
    /// with the command that runs it again.
    pub fn rerun_lines(&self, report: &AblationReport) -> Vec<String> {
        let mut lines = Vec::new();
        for &i in &report.missing {
            let c = &self.plan.cells[i];
            lines.push(format!(
                "cell {i} (`{}` seed {}) has no result: {}",
                self.plan.variants[c.variant].name,
                c.seed,
                Plan::cell_command(&self.out, &i.to_string())
            ));
        }
        for r in report
            .input
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Failed)
        {
            if let Some(c) = self
                .plan
                .cells
                .iter()
                .find(|c| c.seed == r.seed && self.plan.variants[c.variant].name == r.variant)
            {
                lines.push(format!(
                    "cell {} (`{}` seed {}) failed: {}",
                    c.index,
                    r.variant,
                    r.seed,
                    Plan::cell_command(&self.out, &c.index.to_string())
                ));
            }
        }
        lines
    }
}

/// Options of the Kubernetes Indexed Job that runs an ablation's cells.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesOptions {
    /// The job's name (a DNS label: lower-case letters, digits, `-`; at most 63).
    pub name: String,
    /// The container image, with whet on its `PATH`.
    pub image: String,
    /// Pods running at once.
    pub parallelism: usize,
    /// The PersistentVolumeClaim that holds the output folder (and the data).
    pub claim: String,
    /// Where the claim is mounted in the pod: the output folder's path there must be the
    /// same as in the plan (plan inside the pod, or mount it at the same path).
    pub mount: String,
    /// CPUs per pod (also `--threads`).
    pub cpus: usize,
    /// Memory per pod (Kubernetes quantity, e.g. `4Gi`).
    pub memory: String,
    /// Retries per cell before the job fails (`backoffLimitPerIndex`).
    pub retries: usize,
}

impl KubernetesOptions {
    /// The defaults for the ablation `name` planned into `out`: job `whet-<name>` (as a DNS
    /// label), 4 pods at once of 1 CPU and `4Gi`, 2 retries per cell, the claim mounted at the
    /// parent of `out` (absolute); no image or claim yet ([`KubernetesOptions::apply`]).
    ///
    /// # Errors
    /// [`Error::Io`] when `out` cannot be made absolute.
    pub fn for_plan(name: &str, out: &Path) -> Result<Self> {
        let slug: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let mount = std::path::absolute(out)
            .map_err(Error::io("finding the absolute path of", out))?
            .parent()
            .map_or_else(|| "/".into(), |p| p.display().to_string());
        Ok(KubernetesOptions {
            name: format!("whet-{}", slug.trim_matches('-'))
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_string(),
            image: String::new(),
            parallelism: 4,
            claim: String::new(),
            mount,
            cpus: 1,
            memory: "4Gi".into(),
            retries: 2,
        })
    }

    /// Applies `KEY=VALUE` settings (image, claim, mount, parallelism, cpus, memory, name,
    /// retries), as [`crate::slurm::SlurmOptions::apply`] does for Slurm; [`KubernetesOptions::check`]
    /// checks the result.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting and what is valid.
    pub fn apply(&mut self, settings: &[String]) -> Result<()> {
        let o = self;
        for s in settings {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "--k8s {s}: expected KEY=VALUE, e.g. image=registry/whet:0.1"
                ))
            })?;
            let num = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| Error::Invalid(format!("--k8s {s}: `{v}` is not a whole number")))
            };
            match k.trim() {
                "image" => o.image = v.to_string(),
                "claim" => o.claim = v.to_string(),
                "mount" => o.mount = v.to_string(),
                "name" => o.name = v.to_string(),
                "memory" => o.memory = v.to_string(),
                "parallelism" => o.parallelism = num(v)?,
                "cpus" => o.cpus = num(v)?,
                "retries" => o.retries = num(v)?,
                other => {
                    return Err(Error::Invalid(format!(
                        "--k8s {s}: unknown key `{other}` (have: image, claim, mount, parallelism, cpus, memory, name, retries)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks the settings: a DNS-label job name, an image, a claim and a mount, parallelism
    /// and CPUs from 1.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting.
    pub fn check(&self) -> Result<()> {
        let o = self;
        let label_ok = !o.name.is_empty()
            && o.name.len() <= 63
            && o.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !o.name.starts_with('-')
            && !o.name.ends_with('-');
        if !label_ok {
            return Err(Error::Invalid(format!(
                "--k8s name={}: a Kubernetes job name is 1 to 63 lower-case letters, digits and `-`, starting and ending with a letter or digit",
                o.name
            )));
        }
        for (what, v) in [
            ("image", &o.image),
            ("claim", &o.claim),
            ("mount", &o.mount),
        ] {
            if v.trim().is_empty() {
                return Err(Error::Invalid(format!(
                    "--k8s {what}=…: required (image: a container image with whet; claim: the PersistentVolumeClaim holding the output folder; mount: where it is mounted)"
                )));
            }
        }
        if o.parallelism == 0 || o.cpus == 0 {
            return Err(Error::Invalid(
                "--k8s parallelism and cpus: at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `s` as a YAML scalar: a JSON string, which YAML reads as the same string.
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl Plan {
    /// A Kubernetes Indexed Job manifest that runs the selected cells of the plan in `out`:
    /// `completions` = the number of cells, each pod runs
    /// `whet ablate OUT --cell $JOB_COMPLETION_INDEX`; `kubectl apply -f` takes it. When
    /// `--only` left cells out, their pods find nothing to do and end at once. Collect
    /// afterwards with `whet ablate OUT --collect`.
    ///
    /// # Errors
    /// A job name that is not a DNS label, parallelism or CPUs of 0, an empty image or
    /// claim, or sequential seeding (its rounds need a driver between them).
    pub fn kubernetes_job(&self, out: &Path, o: &KubernetesOptions) -> Result<String> {
        o.check()?;
        if let Some(min) = self.min_seeds {
            return Err(Error::Invalid(format!(
                "--emit k8s: `ablation.seeds: {{ min: {min}, max: {} }}` decides between rounds which variants get more seeds, and an Indexed Job runs a fixed set of cells; \
                 give a fixed number of seeds (`--seeds N` or `ablation.seeds: N`), or run the rounds with `--launcher slurm` or `--jobs N`",
                self.seeds.len()
            )));
        }
        let out = absolute(out)?;
        let script = format!(
            "exec whet --threads {} ablate {} --cell \"$JOB_COMPLETION_INDEX\"",
            o.cpus,
            shell_word(&out.display().to_string())
        );
        Ok(format!(
            "# whet ablate: {cells} cells of `{name}` ({variants} variants x {seeds} seeds).\n\
             # kubectl apply -f THIS_FILE; when the job completes: whet ablate {out} --collect\n\
             apiVersion: batch/v1\n\
             kind: Job\n\
             metadata:\n\
             \x20 name: {job}\n\
             \x20 labels:\n\
             \x20   app.kubernetes.io/name: whet\n\
             spec:\n\
             \x20 completionMode: Indexed\n\
             \x20 completions: {cells}\n\
             \x20 parallelism: {parallelism}\n\
             \x20 backoffLimitPerIndex: {retries}\n\
             \x20 maxFailedIndexes: {cells}\n\
             \x20 template:\n\
             \x20   metadata:\n\
             \x20     labels:\n\
             \x20       app.kubernetes.io/name: whet\n\
             \x20   spec:\n\
             \x20     restartPolicy: Never\n\
             \x20     containers:\n\
             \x20       - name: cell\n\
             \x20         image: {image}\n\
             \x20         command: [\"sh\", \"-c\", {script}]\n\
             \x20         resources:\n\
             \x20           requests: {{ cpu: {cpus}, memory: {memory} }}\n\
             \x20           limits: {{ cpu: {cpus}, memory: {memory} }}\n\
             \x20         volumeMounts:\n\
             \x20           - name: work\n\
             \x20             mountPath: {mount}\n\
             \x20     volumes:\n\
             \x20       - name: work\n\
             \x20         persistentVolumeClaim:\n\
             \x20           claimName: {claim}\n",
            cells = self.cells.len(),
            name = self.name.replace('\n', " "),
            variants = self.variants.len(),
            seeds = self.seeds.len(),
            out = shell_word(&out.display().to_string()).replace('\n', " "),
            job = yaml_str(&o.name),
            parallelism = o.parallelism,
            retries = o.retries,
            image = yaml_str(&o.image),
            script = yaml_str(&script),
            cpus = o.cpus,
            memory = yaml_str(&o.memory),
            mount = yaml_str(&o.mount),
            claim = yaml_str(&o.claim),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/data/run-1/ab"), "/data/run-1/ab");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word(""), "''");
    }

    /// The defaults of a Kubernetes job, the settings applied over them, and each refusal.
    #[test]
    fn kubernetes_options_default_apply_and_refuse() {
        let mut o =
            KubernetesOptions::for_plan("MNIST Aug_v2!", Path::new("/data/runs/abl")).unwrap();
        assert_eq!(o.name, "whet-mnist-aug-v2");
        assert_eq!(o.mount, "/data/runs");
        assert_eq!((o.parallelism, o.cpus, o.retries), (4, 1, 2));
        assert_eq!(o.memory, "4Gi");
        assert!(o.check().is_err(), "no image or claim yet");
        o.apply(&[
            "image=reg/whet:0.1".into(),
            "claim=runs".into(),
            "cpus=2".into(),
        ])
        .unwrap();
        assert_eq!(
            (o.image.as_str(), o.claim.as_str(), o.cpus),
            ("reg/whet:0.1", "runs", 2)
        );
        o.check().unwrap();
        let long = "x".repeat(80);
        assert_eq!(
            KubernetesOptions::for_plan(&long, Path::new("o"))
                .unwrap()
                .name
                .len(),
            63
        );
        for (bad, says) in [
            ("image", "expected KEY=VALUE"),
            ("cpus=two", "`two` is not a whole number"),
            ("gpus=1", "unknown key `gpus`"),
        ] {
            let e = o.apply(&[bad.to_string()]).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
