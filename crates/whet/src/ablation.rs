//! Ablations as an API: [`Ablation::plan`] expands a run's `ablation` section into cells
//! (variant × seed, each with a content hash of its resolved run file and input files),
//! [`Plan::run_cell`] runs one cell into its own folder, and [`Plan::collect`] builds the report
//! from the finished cells. `whet ablate` is [`Plan::run`]: every cell on the local rayon pool,
//! then collect.
//!
//! Cells go to `OUT/runs/<variant>/seed-<n>/`; each finishes by writing `record.json` atomically
//! with its hash, so a cell whose record exists with the same hash is skipped (an interrupted
//! ablation resumes; a changed run file or input reruns). A failed cell's record says whether
//! the failure was deterministic (kept) or the environment's (an I/O error, a full disk: run
//! again on resume); see [`crate::FailureKind`].
//!
//! Locks: [`Plan::run`] locks `OUT` (a second `whet ablate` into it fails at once) and every
//! cell locks its own folder while it runs, so workers that share a plan can run its cells
//! concurrently without two of them writing one cell.

use crate::cache::{Cache, KeyBuilder, hash_file};
use crate::error::{Error, FailureKind, Result, ResultExt};
use crate::inputs::InputRole;
use crate::runfile::{Run, RunData, Sweep};
use crate::variants;
pub use crate::variants::{AblationConfig, Paths, Seeds, VariantConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use whet_core::{Progress, RunProgress};
use whet_report::{AblationInput, AblationSummary, RunRecord, RunStatus, VariantInfo};

/// Plans ablations.
pub struct Ablation;

/// What to plan: overrides of the run file's `ablation` section.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Seeds per variant instead of the run file's (1 to 100).
    pub seeds: Option<u64>,
    /// Run only these variants (and the baseline). The plan still holds every variant, so the
    /// report also shows the ones an earlier `whet ablate` into the same folder finished.
    pub only: Vec<String>,
    /// Instead of the run file's variants: one variant per combination of these key paths'
    /// values (`--sweep`).
    pub sweeps: Vec<Sweep>,
}

/// One variant of a plan.
#[derive(Debug, Clone)]
pub struct PlannedVariant {
    /// Its unique name (`baseline` first).
    pub name: String,
    /// What it changes, in words.
    pub description: String,
    /// Its run (the baseline's run file with the variant's edits).
    pub run: Run,
}

/// One cell of a plan: one variant trained with one seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Index in [`Plan::cells`].
    pub index: usize,
    /// Index in [`Plan::variants`].
    pub variant: usize,
    /// The seed.
    pub seed: u64,
    /// SHA-256 of the variant's resolved run file, the seed and the content of its input files.
    pub hash: String,
}

/// An expanded ablation: variants, seeds, cells, and the metric the report ranks by.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run file's name (the report's title).
    pub name: String,
    /// The run file, as the user named it.
    pub pipeline: PathBuf,
    /// The run file's `description`.
    pub description: Option<String>,
    /// The command-line changes the plan was made with (`--set k=v`, `--sweep k=a,b`), as the
    /// report lists them.
    pub overrides: Vec<String>,
    /// The variants, baseline first.
    pub variants: Vec<PlannedVariant>,
    /// The variants [`Plan::run`] runs (indices into `variants`, the baseline first): all of
    /// them, or the baseline and those `--only` named.
    pub selected: Vec<usize>,
    /// The options the plan was made with.
    pub options: PlanOptions,
    /// The seeds every variant runs with (so differences are paired); with sequential seeding,
    /// the most a variant can get, in the order they are added.
    pub seeds: Vec<u64>,
    /// Sequential seeding (`ablation.seeds: { min, max }`): every variant runs the first `min`
    /// seeds, the others only as [`Plan::seeding`] decides. `None`: every seed runs.
    pub min_seeds: Option<usize>,
    /// Every variant × seed (variant-major: cell `v · seeds.len() + k` is variant `v`, seed
    /// `seeds[k]`).
    pub cells: Vec<Cell>,
    /// The metric verdicts are about.
    pub metric: String,
    /// Whether a higher `metric` is better.
    pub higher_is_better: bool,
    /// Whether the variants are candidates to choose from (`--sweep`, or run-file variants
    /// that are all `grid`s): the report then ranks them on the validation split and quotes the
    /// test set for the chosen one only.
    pub chooses: bool,
}

/// A plan as `whet ablate --dry-run` shows it ([`Plan::listing`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanListing {
    /// The run file's name.
    pub name: String,
    /// The run file, as the user named it.
    pub pipeline: String,
    /// The command-line changes (`--set`, `--sweep`).
    pub overrides: Vec<String>,
    /// The metric verdicts are about.
    pub metric: String,
    /// Whether a higher `metric` is better.
    pub higher_is_better: bool,
    /// The seeds every variant runs with (with sequential seeding: the most a variant gets).
    pub seeds: Vec<u64>,
    /// Sequential seeding: the seeds every variant runs; the others depend on the results.
    pub min_seeds: Option<usize>,
    /// Runs the ablation has (selected variants × seeds; with sequential seeding, the first
    /// round: selected variants × `min_seeds`).
    pub runs: usize,
    /// The most runs it can have (selected variants × all seeds).
    pub max_runs: usize,
    /// Of those, how many the output folder already holds and would be reused.
    pub reused: usize,
    /// The output folder looked at for reusable runs.
    pub out: Option<String>,
    /// Every variant, the baseline first.
    pub variants: Vec<ListedVariant>,
}

/// One variant of a [`PlanListing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedVariant {
    /// Its name.
    pub name: String,
    /// What it changes.
    pub description: String,
    /// Whether this ablation runs it (`--only` leaves the others out).
    pub selected: bool,
    /// Its runs (one per seed; 0 when not selected).
    pub runs: usize,
    /// Of those, how many the output folder already holds.
    pub reused: usize,
}

/// The result of one cell.
#[derive(Debug, Clone)]
pub struct CellResult {
    /// The run's record (a failed run is a record with status `failed`).
    pub record: RunRecord,
    /// Whether it was kept from an earlier run with the same hash.
    pub kept: bool,
}

/// What [`Plan::collect`] wrote.
#[derive(Debug, Clone)]
pub struct AblationReport {
    /// Everything the report was made of.
    pub input: AblationInput,
    /// Per-variant statistics and the files written.
    pub summary: AblationSummary,
    /// Cells without a finished record: index and the command-line that reruns them.
    pub missing: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// The cell's hash: a changed run file or input invalidates the stored run.
    key: String,
    record: RunRecord,
    /// For a failed run, whether the failure is deterministic (kept) or the environment's
    /// (retried). Records written before this field existed have none and are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<FailureKind>,
}

impl Stored {
    /// Whether a resumed ablation keeps this record for a cell with hash `key`: same hash, and
    /// not a failure that trying again could fix.
    fn keeps(&self, key: &str) -> bool {
        self.key == key
            && (self.record.status != RunStatus::Failed
                || self.failure == Some(FailureKind::Deterministic))
    }
}

/// The default ablation when the run file has none: leave out each augmentation op (images)
/// or each preprocessing step (tables).
fn default_ablation(run: &Run) -> AblationConfig {
    let leave_one_out = match run.data() {
        RunData::Images {
            augment: Some(_), ..
        } => vec!["augment.ops".to_string()],
        RunData::Tables(cfg) if !cfg.steps.is_empty() => vec!["steps".to_string()],
        _ => vec![],
    };
    AblationConfig {
        seeds: Seeds::Count(3),
        metric: None,
        leave_one_out,
        variants: vec![],
        slurm: None,
    }
}

/// The files a run's results depend on (IDX files, table files, image folders, the transfer
/// checkpoint): [`Run::input_paths`] without the run files, whose content is in the cell hash
/// as the variant's value.
fn input_files(run: &Run) -> Vec<PathBuf> {
    run.input_paths()
        .into_iter()
        .filter(|i| i.role != InputRole::RunFile && i.key != "pretrain.out")
        .map(|i| i.path)
        .collect()
}

/// SHA-256 of a file's content, or of a folder's sorted `path size` listing (paths relative to
/// the folder).
fn content_hash(path: &Path, memo: &mut BTreeMap<PathBuf, String>) -> Result<String> {
    if let Some(h) = memo.get(path) {
        return Ok(h.clone());
    }
    let h = if path.is_dir() {
        let mut list = Vec::new();
        let mut stack = vec![path.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(Error::io("listing", &d))? {
                let e = e.map_err(Error::io("listing", &d))?;
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    let rel = p.strip_prefix(path).unwrap_or(&p);
                    list.push(format!("{} {len}", rel.display()));
                }
            }
        }
        list.sort();
        KeyBuilder::new().part("folder", &list.join("\n")).finish()
    } else if path.exists() {
        hash_file(path)?
    } else {
        // A checkpoint that a pretrain run has not written yet: planned by name.
        String::from("missing")
    };
    memo.insert(path.to_path_buf(), h.clone());
    Ok(h)
}

impl Ablation {
    /// Expands `run`'s `ablation` section (or the default: leave out each augmentation op or
    /// each step) into a plan.
    ///
    /// # Errors
    /// A variant that does not apply, an unknown `--only` name, a seed count out of range, or
    /// an input file that cannot be read.
    pub fn plan(run: &Run, options: &PlanOptions) -> Result<Plan> {
        let mut ab = run
            .file()
            .ablation
            .clone()
            .unwrap_or_else(|| default_ablation(run));
        if let Some(n) = options.seeds {
            if n == 0 || n > 100 {
                return Err(Error::Invalid(format!("--seeds {n}: expected 1 to 100")));
            }
            ab.seeds = Seeds::Count(n);
        }
        let mut vs = if options.sweeps.is_empty() {
            variants::expand(&run.value, &ab)
        } else {
            let sweeps: Vec<(String, Vec<serde_json::Value>)> = options
                .sweeps
                .iter()
                .map(|s| (s.key().to_string(), s.values().to_vec()))
                .collect();
            variants::sweep(&run.value, &sweeps)
        }
        .map_err(Error::Invalid)?;
        let mut overrides: Vec<String> = run
            .overrides()
            .iter()
            .map(|o| format!("--set {o}"))
            .collect();
        if !overrides.is_empty() {
            vs[0].description = format!("the run file with {}", overrides.join(", "));
        }
        overrides.extend(options.sweeps.iter().map(|s| format!("--sweep {s}")));
        for v in &vs {
            whet_core::names::check_component(&v.name)
                .map_err(|e| Error::Invalid(crate::runfile::variant_name_message(&e)))?;
        }
        for o in &options.only {
            if !vs.iter().any(|v| &v.name == o) {
                let names: Vec<_> = vs.iter().map(|v| v.name.clone()).collect();
                let hint = whet_core::spec::closest(o, names.iter().map(String::as_str))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                return Err(Error::Invalid(format!(
                    "--only {o}: no such variant (have: {}){hint}",
                    names.join(", ")
                )));
            }
        }
        let selected: Vec<usize> = (0..vs.len())
            .filter(|&i| i == 0 || options.only.is_empty() || options.only.contains(&vs[i].name))
            .collect();
        let sweeping = !options.sweeps.is_empty();
        let variants = vs
            .into_iter()
            .map(|v| {
                let run = run.variant_of(&v.name, &v.value).map_err(|e| {
                    if sweeping && v.name != "baseline" {
                        Error::Invalid(format!(
                            "--sweep variant `{}` ({}) is not a valid run file: {}",
                            v.name,
                            v.description,
                            crate::error::chain_text(&e)
                        ))
                    } else {
                        e
                    }
                })?;
                Ok(PlannedVariant {
                    run,
                    name: v.name,
                    description: v.description,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let seeds = ab.seeds.resolve(run.seed());
        let mut memo = BTreeMap::new();
        let mut cells = Vec::new();
        for (vi, v) in variants.iter().enumerate() {
            // Where a run is tracked, and its memory budget (a table streams to the same
            // numbers), do not change what it computes.
            let mut value = v.run.value.clone();
            if let Some(m) = value.as_object_mut() {
                m.remove("track");
                m.remove("memory");
            }
            let mut inputs = KeyBuilder::new().json("variant", &value);
            // By position and content, not by path: a plan made from `pipelines/x.yaml` and
            // the same plan made again by a cell worker from its absolute path give one hash.
            for (n, f) in input_files(&v.run).iter().enumerate() {
                inputs = inputs.part(&format!("input {n}"), &content_hash(f, &mut memo)?);
            }
            for &seed in &seeds {
                cells.push(Cell {
                    index: cells.len(),
                    variant: vi,
                    seed,
                    hash: inputs.clone().part("seed", &seed.to_string()).finish(),
                });
            }
        }
        let metric = ab
            .metric
            .clone()
            .unwrap_or_else(|| crate::execute::default_metric(run.file().model.task).into());
        let higher_is_better = whet_train::higher_is_better(&metric);
        Ok(Plan {
            name: run.name().to_string(),
            pipeline: run.path().to_path_buf(),
            description: run.file().description.clone(),
            overrides,
            variants,
            selected,
            options: options.clone(),
            min_seeds: ab.seeds.sequential_min(),
            chooses: !options.sweeps.is_empty()
                || (!ab.variants.is_empty()
                    && ab.leave_one_out.is_empty()
                    && ab.variants.iter().all(|v| !v.grid.is_empty())),
            seeds,
            cells,
            metric,
            higher_is_better,
        })
    }
}

/// Why a variant has the seeds it has under sequential seeding ([`Plan::seeding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedReason {
    /// The baseline runs every seed any variant needs.
    Baseline,
    /// Some of its runs (or the baseline's) have no result yet.
    Waiting,
    /// Its paired difference is clear after the Holm–Bonferroni adjustment over the study's
    /// variants (adjusted p < 0.05, as the report's headline judges it): no more seeds needed.
    Resolved,
    /// Its adjusted p-value is still 0.05 or more after the most seeds the plan allows.
    Maximum,
    /// Fewer than 2 seeds where it and the baseline both finished ok (diverged or failed runs):
    /// more seeds are not added, since they rarely mend that.
    TooFewPairs,
}

/// The rounds of cells a driver runs ([`Plan::run`], [`Plan::run_workers`], the Slurm
/// launcher): each [`Rounds::next`] is [`Plan::next_round`] given the cells the earlier rounds
/// took, so no cell is tried twice in one invocation and the loop ends.
#[derive(Debug, Default)]
pub struct Rounds {
    attempted: std::collections::BTreeSet<usize>,
    round: usize,
}

impl Rounds {
    /// The next round's number (from 1) and cells, or `None` when nothing is left to run.
    pub fn next(&mut self, plan: &Plan, out: &Path, fresh: bool) -> Option<(usize, Vec<usize>)> {
        let todo = plan.next_round(out, fresh, &self.attempted);
        if todo.is_empty() {
            return None;
        }
        self.attempted.extend(todo.iter().copied());
        self.round += 1;
        Some((self.round, todo))
    }

    /// The cells every round so far took.
    pub fn attempted(&self) -> &std::collections::BTreeSet<usize> {
        &self.attempted
    }
}

/// How many seeds a variant gets under sequential seeding, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedDecision {
    /// Index into [`Plan::variants`].
    pub variant: usize,
    /// It runs the first `seeds` of [`Plan::seeds`].
    pub seeds: usize,
    /// Why.
    pub reason: SeedReason,
}
impl Plan {
    /// The progress event of a finished cell: its status and the plan's metric.
    pub(crate) fn cell_line(&self, r: &CellResult) -> whet_core::RunLine {
        let rec = &r.record;
        whet_core::RunLine {
            name: self.name.clone(),
            variant: rec.variant.clone(),
            seed: rec.seed,
            fold: None,
            status: rec.status.to_string(),
            message: rec.message.clone(),
            kept: r.kept,
            epochs: rec.curves.len(),
            metric: rec
                .metrics
                .get(&self.metric)
                .filter(|v| v.is_finite())
                .map(|&value| whet_core::RunMetric {
                    set: None,
                    name: self.metric.clone(),
                    value,
                    percent: whet_report::is_percent_metric(&self.metric),
                }),
            seconds: rec.train_seconds,
        }
    }

    /// The folder of cell `i` under `out`: `runs/<variant>/seed-<n>`. The variant's name goes
    /// through [`whet_core::names::join`], so no name can lead outside `out`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a cell index out of range or a variant name that is not a folder
    /// name (the run file's validation refuses those first).
    pub fn cell_dir(&self, out: &Path, i: usize) -> Result<PathBuf> {
        let c = self.cells.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "cell {i}: the plan has {} cells (0 to {})",
                self.cells.len(),
                self.cells.len().saturating_sub(1)
            ))
        })?;
        let dir = whet_core::names::join(&out.join("runs"), &self.variants[c.variant].name)
            .map_err(|e| Error::Invalid(crate::runfile::variant_name_message(&e)))?;
        Ok(dir.join(format!("seed-{}", c.seed)))
    }

    /// Checks that `out` overlaps no input of any variant (see [`Run::check_output`]); [`Plan::run`]
    /// checks it before any cell runs.
    ///
    /// # Errors
    /// As [`Run::check_output`].
    pub fn check_output(&self, out: &Path) -> Result<()> {
        for v in &self.variants {
            v.run.check_output(out)?;
        }
        Ok(())
    }

    /// Runs the `pretrain` runs the variants need (each once, skipped when up to date).
    ///
    /// # Errors
    /// A pretrain run file that is invalid or whose run failed.
    pub fn ensure_pretrained(&self, cache: &Cache, progress: &dyn Progress) -> Result<()> {
        for v in &self.variants {
            v.run.ensure_pretrained(cache, progress)?;
        }
        Ok(())
    }

    /// The record of cell `i` under `out` that a resumed ablation keeps instead of running the
    /// cell again (see [`Plan::run_cell`]), if there is one.
    pub(crate) fn kept_record(&self, i: usize, out: &Path) -> Option<RunRecord> {
        let path = self.cell_dir(out, i).ok()?.join("record.json");
        let stored: Stored = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        stored.keeps(&self.cells[i].hash).then_some(stored.record)
    }

    /// Under sequential seeding, how many seeds each selected variant gets (the baseline
    /// first), given `record(i)`, the finished result of cell `i` if there is one. A variant
    /// runs the first `min` seeds; while every one of its seeds so far has a result (and the
    /// baseline's too) and the paired t test of its difference on the plan's metric, Holm-adjusted
    /// over the variants as the report's headline is, gives p ≥ 0.05, it gets the next seed, up
    /// to all of [`Plan::seeds`]. The baseline runs as
    /// many seeds as the variant that needs most. The decision depends only on the results, so
    /// it is the same however many processes ran the cells. `None` without sequential seeding.
    pub fn seeding(
        &self,
        record: &dyn Fn(usize) -> Option<RunRecord>,
    ) -> Option<Vec<SeedDecision>> {
        let min = self.min_seeds?;
        let s = self.seeds.len();
        let all: Vec<Option<RunRecord>> = (0..self.cells.len()).map(record).collect();
        let value = |v: usize, k: usize| -> Option<Option<f64>> {
            let r = all[v * s + k].as_ref()?;
            Some(
                r.metrics
                    .get(&self.metric)
                    .copied()
                    .filter(|x| r.status == RunStatus::Ok && x.is_finite()),
            )
        };
        // Each variant's paired differences over its first `k` seeds: `Err(reason)` while a
        // run has no result, or with fewer than 2 pairs that finished ok.
        let differences = |v: usize, k: usize| -> Result<whet_report::Describe, SeedReason> {
            let mut diffs = Vec::with_capacity(k);
            for j in 0..k {
                match (value(v, j), value(0, j)) {
                    (Some(a), Some(b)) => diffs.extend(a.zip(b).map(|(a, b)| a - b)),
                    _ => return Err(SeedReason::Waiting),
                }
            }
            let d = whet_report::describe(&diffs);
            match whet_report::Verdict::from_delta(&d, self.higher_is_better) {
                whet_report::Verdict::TooFewRuns => Err(SeedReason::TooFewPairs),
                _ => Ok(d),
            }
        };
        // Holm-adjusted over the variants, as the report's headline: a variant is resolved when
        // its adjusted p-value is below 5 %; every unresolved one gets one more seed a step,
        // until none can grow (adding seeds to one can resolve or unresolve another).
        let variants: Vec<usize> = self.selected.iter().skip(1).copied().collect();
        let mut k = vec![min.min(s); variants.len()];
        let mut out: Vec<SeedDecision> = loop {
            let stats: Vec<_> = variants
                .iter()
                .zip(&k)
                .map(|(&v, &k)| differences(v, k))
                .collect();
            let p: Vec<Option<f64>> = stats
                .iter()
                .map(|d| d.as_ref().ok().and_then(whet_report::paired_p))
                .collect();
            let adjusted = whet_report::holm(&p);
            let mut grew = false;
            let decisions = variants
                .iter()
                .zip(&mut k)
                .zip(stats.iter().zip(&adjusted))
                .map(|((&variant, k), (stat, adjusted))| {
                    let reason = match stat {
                        Err(reason) => *reason,
                        Ok(_) if adjusted.is_some_and(|p| p < whet_report::ALPHA) => {
                            SeedReason::Resolved
                        }
                        Ok(_) if *k < s => {
                            *k += 1;
                            grew = true;
                            SeedReason::Maximum
                        }
                        Ok(_) => SeedReason::Maximum,
                    };
                    SeedDecision {
                        variant,
                        seeds: *k,
                        reason,
                    }
                })
                .collect();
            if !grew {
                break decisions;
            }
        };
        let base = out.iter().map(|d| d.seeds).max().unwrap_or(min.min(s));
        out.insert(
            0,
            SeedDecision {
                variant: 0,
                seeds: base,
                reason: SeedReason::Baseline,
            },
        );
        Some(out)
    }

    /// The cells the ablation wants given the results so far (`record`, as for
    /// [`Plan::seeding`]): every cell of the selected variants, or under sequential seeding
    /// those of the seeds [`Plan::seeding`] gives them. In cell order.
    pub fn wanted_cells(&self, record: &dyn Fn(usize) -> Option<RunRecord>) -> Vec<usize> {
        match self.seeding(record) {
            None => self.selected_cells(),
            Some(decisions) => self.cells_of(&decisions),
        }
    }

    /// The cells of `decisions` (each variant's first `seeds` seeds), in cell order.
    fn cells_of(&self, decisions: &[SeedDecision]) -> Vec<usize> {
        let s = self.seeds.len();
        let mut cells: Vec<usize> = decisions
            .iter()
            .flat_map(|d| (0..d.seeds).map(move |k| d.variant * s + k))
            .collect();
        cells.sort_unstable();
        cells
    }

    /// The next round of cells to run into `out`: [`Plan::wanted_cells`] from the results in
    /// `out` (with `fresh`, only those of cells in `attempted`, the cells this invocation has
    /// already run), less `attempted`. Empty when the ablation is complete: a driver runs
    /// rounds until then. Without sequential seeding the first round is every selected cell.
    pub fn next_round(
        &self,
        out: &Path,
        fresh: bool,
        attempted: &std::collections::BTreeSet<usize>,
    ) -> Vec<usize> {
        self.wanted_cells(&|i| {
            if fresh && !attempted.contains(&i) {
                None
            } else {
                self.kept_record(i, out)
            }
        })
        .into_iter()
        .filter(|i| !attempted.contains(i))
        .collect()
    }

    /// The report's note on sequential seeding: the rule, each variant's seed count and why.
    fn seeding_note(&self, decisions: &[SeedDecision]) -> String {
        let min = self.min_seeds.unwrap_or(0);
        let max = self.seeds.len();
        let each: Vec<String> = decisions
            .iter()
            .filter(|d| d.reason != SeedReason::Baseline)
            .map(|d| {
                let why = match d.reason {
                    SeedReason::Resolved if d.seeds <= min => {
                        "clear after the Holm adjustment with the first seeds".to_string()
                    }
                    SeedReason::Resolved => {
                        format!("clear after the Holm adjustment with {}", d.seeds)
                    }
                    SeedReason::Maximum => "still no clear effect at the maximum".to_string(),
                    SeedReason::TooFewPairs => {
                        "fewer than 2 runs paired with the baseline finished ok, so none was added"
                            .to_string()
                    }
                    SeedReason::Waiting => "runs still without a result".to_string(),
                    SeedReason::Baseline => String::new(),
                };
                format!("`{}` {} ({why})", self.variants[d.variant].name, d.seeds)
            })
            .collect();
        format!(
            "Sequential seeding ({min} to {max} seeds, from {:?}): every variant ran {min} seeds; one \
             more was added at a time to each variant whose paired difference on {} was not yet \
             clear after the Holm adjustment over the variants (adjusted p ≥ 0.05, as the \
             headline judges), and the baseline ran every seed a variant needed. Seeds per variant: {}. \
             Stopping as soon as a difference is clear makes a false *helps* or *hurts* likelier \
             than the 5 % a fixed number of seeds gives: read verdicts that needed many seeds with \
             care.",
            self.seeds,
            self.metric,
            if each.is_empty() {
                "none besides the baseline".to_string()
            } else {
                each.join(", ")
            }
        )
    }

    /// The progress label of a round of `n` cells: the plan's size in the first, what the
    /// round adds in later ones (sequential seeding).
    pub fn round_label(&self, round: usize, n: usize) -> String {
        match (round, self.min_seeds) {
            (1, None) => format!(
                "{} variants × {} seeds",
                self.selected.len(),
                self.seeds.len()
            ),
            (1, Some(min)) => format!(
                "{} variants × {min} seeds (up to {} for unresolved variants)",
                self.selected.len(),
                self.seeds.len()
            ),
            _ => format!("round {round}: {n} more runs for variants without a clear effect yet"),
        }
    }

    /// The cells [`Plan::run`] runs: those of the [`Plan::selected`] variants.
    pub fn selected_cells(&self) -> Vec<usize> {
        self.cells
            .iter()
            .filter(|c| self.selected.contains(&c.variant))
            .map(|c| c.index)
            .collect()
    }

    /// What `whet ablate --dry-run` shows: every variant with its changes, how many runs it has
    /// and how many of them `out` already holds (a resumed ablation keeps those; none when
    /// `out` is `None` or `fresh`).
    pub fn listing(&self, out: Option<&Path>, fresh: bool) -> PlanListing {
        let mut variants: Vec<ListedVariant> = self
            .variants
            .iter()
            .enumerate()
            .map(|(vi, v)| ListedVariant {
                name: v.name.clone(),
                description: v.description.clone(),
                selected: self.selected.contains(&vi),
                runs: 0,
                reused: 0,
            })
            .collect();
        // One pass over the cells (a grid can have thousands of variants).
        let s = self.seeds.len();
        let first = self.min_seeds.unwrap_or(s);
        let mut max_runs = 0;
        for c in &self.cells {
            let v = &mut variants[c.variant];
            if v.selected {
                max_runs += 1;
            }
            if v.selected && c.index % s < first {
                v.runs += 1;
                if !fresh && out.is_some_and(|o| self.kept_record(c.index, o).is_some()) {
                    v.reused += 1;
                }
            }
        }
        PlanListing {
            name: self.name.clone(),
            pipeline: self.pipeline.display().to_string(),
            overrides: self.overrides.clone(),
            metric: self.metric.clone(),
            higher_is_better: self.higher_is_better,
            seeds: self.seeds.clone(),
            min_seeds: self.min_seeds,
            runs: variants.iter().map(|v| v.runs).sum(),
            max_runs,
            reused: variants.iter().map(|v| v.reused).sum(),
            out: out.map(|o| o.display().to_string()),
            variants,
        }
    }

    /// Runs cell `i` into its folder under `out`, unless its `record.json` holds the same hash
    /// and a result to keep (and `fresh` is false): a run that finished or diverged, or one that
    /// failed deterministically (bad data, invalid config); a failure of the environment (an I/O
    /// error, a full disk) runs again. A run that fails is a record with status `failed`, the
    /// error and its [`FailureKind`]. The cell's folder is locked while it runs. Its epoch lines
    /// and warnings go to `progress` labelled with the cell (`affine seed 2`, see
    /// [`RunProgress`]); its bar calls do not.
    ///
    /// # Errors
    /// The record cannot be written, or [`Error::Lock`] when another process is running the
    /// cell.
    pub fn run_cell(
        &self,
        i: usize,
        out: &Path,
        cache: &Cache,
        fresh: bool,
        progress: &dyn Progress,
    ) -> Result<CellResult> {
        let dir = self.cell_dir(out, i)?;
        let cell = &self.cells[i];
        let v = &self.variants[cell.variant];
        v.run.check_output(&dir)?;
        let _lock = whet_core::lock::FolderLock::acquire(&dir)?;
        let record_path = dir.join("record.json");
        if !fresh && let Some(record) = self.kept_record(i, out) {
            return Ok(CellResult { record, kept: true });
        }
        let labelled = RunProgress::new(progress, format!("{} seed {}", v.name, cell.seed));
        let (record, failure) = match v.run.execute_locked(&dir, cell.seed, cache, &labelled) {
            Ok(o) => (o.record(), None),
            Err(e) => (
                RunRecord {
                    variant: v.name.clone(),
                    seed: cell.seed,
                    status: RunStatus::Failed,
                    metrics: Default::default(),
                    validation: Default::default(),
                    validation_samples: None,
                    train_seconds: 0.0,
                    curves: vec![],
                    message: Some(crate::error::chain_text(&e)),
                    cross_validation: None,
                },
                Some(e.failure_kind()),
            ),
        };
        let stored = Stored {
            key: cell.hash.clone(),
            record,
            failure,
        };
        let text = serde_json::to_string_pretty(&stored).map_err(|source| Error::Json {
            what: "run record",
            path: record_path.clone(),
            source,
        })?;
        whet_core::fsx::atomic_write(&record_path, text.as_bytes())?;
        Ok(CellResult {
            record: stored.record,
            kept: false,
        })
    }

    /// Locks `out`, runs every cell of the [`Plan::selected`] variants, as many at once as
    /// rayon has threads (each on a thread and in a rayon pool of its own, with its share of
    /// the threads), then [`Plan::collect`]s. `progress` advances once per cell.
    ///
    /// The cells run seed by seed (every variant's first seed, then the second, …): the cells
    /// of one variant then rarely run at once, so a variant's later seeds find its prepared data
    /// in `cache` when they do not depend on the seed, and every cell finds the tables that the
    /// first ones loaded ([`Cache::tables`]). A cell never runs inside another: a thread of the
    /// rayon pool waiting for work (polars' reading) takes other jobs of the pool, so cells on
    /// the pool would all start, and load their data, before the first ends.
    ///
    /// A cell that another process is running (its folder is locked) is left out of this
    /// report, with a note, and runs on the next resume if it has not finished by then.
    ///
    /// # Errors
    /// [`Error::Lock`] when another process writes into `out`, a record that cannot be
    /// written, or the report. After an error no further cell starts.
    pub fn run(
        &self,
        out: &Path,
        cache: &Cache,
        fresh: bool,
        progress: &dyn Progress,
    ) -> Result<AblationReport> {
        self.check_output(out)?;
        let _lock = whet_core::lock::FolderLock::acquire(out)?;
        whet_core::outputs::mark(out)?;
        self.save_locked(out)?;
        let kept = AtomicUsize::new(0);
        let busy = AtomicUsize::new(0);
        let mut rounds = Rounds::default();
        while let Some((round, mut todo)) = rounds.next(self, out, fresh) {
            progress.begin(
                &self.round_label(round, todo.len()),
                Some(todo.len() as u64),
            );
            todo.sort_by_key(|&i| (self.cells[i].seed, self.cells[i].variant));
            let one = |&i: &usize| -> Result<()> {
                let r = match self.run_cell(i, out, cache, fresh, progress) {
                    Ok(r) => r,
                    Err(Error::Lock(whet_core::lock::LockError::Held { folder, pid })) => {
                        busy.fetch_add(1, Ordering::Relaxed);
                        progress.warn(&format!(
                            "`{}` is being run by another process{}; left out of this report",
                            folder.display(),
                            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ));
                        progress.advance(1);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                if r.kept {
                    kept.fetch_add(1, Ordering::Relaxed);
                } else {
                    progress.message(&format!(
                        "{} seed {}: {}",
                        r.record.variant, r.record.seed, r.record.status
                    ));
                }
                progress.finished(&self.cell_line(&r));
                progress.advance(1);
                Ok(())
            };
            each_on_threads(&todo, rayon::current_num_threads(), one)?;
            progress.end();
        }
        let kept = kept.load(Ordering::Relaxed);
        let mut notes = vec![];
        let attempted = rounds.attempted().len();
        notes.extend(reuse_note(kept, attempted));
        let busy = busy.load(Ordering::Relaxed);
        if busy > 0 {
            notes.push(format!(
                "{busy} of {attempted} runs were being run by another process and are left out; run the ablation again to include them."
            ));
        }
        self.collect_locked(out, notes)
    }

    /// Builds `report.md`, `ablation.csv`, `ablation.json` and the charts in `out` from the
    /// cells' records; `notes` are added to the report. Cells without a record (for the
    /// current hash) are left out and listed in [`AblationReport::missing`]; a variant with no
    /// record at all is left out of the report, which names it. So the report of a
    /// `whet ablate --only x` into a folder where other variants finished earlier shows them
    /// all.
    ///
    /// `out` is locked while the report is written (see [`Plan::run`]).
    ///
    /// # Errors
    /// No cell has finished, the report cannot be written, or [`Error::Lock`] when another
    /// process writes into `out`.
    pub fn collect(&self, out: &Path, notes: Vec<String>) -> Result<AblationReport> {
        let _lock = whet_core::lock::FolderLock::acquire(out)?;
        self.collect_locked(out, notes)
    }

    /// [`Plan::collect`] into `out`, which the caller has locked.
    pub(crate) fn collect_locked(&self, out: &Path, notes: Vec<String>) -> Result<AblationReport> {
        let mut found: Vec<Option<RunRecord>> = Vec::with_capacity(self.cells.len());
        for c in &self.cells {
            let path = self.cell_dir(out, c.index)?.join("record.json");
            found.push(
                std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Stored>(&t).ok())
                    .filter(|s| s.key == c.hash)
                    .map(|s| s.record),
            );
        }
        let seeding = self.seeding(&|i| found[i].clone());
        // Cells sequential seeding has not asked for are not missing.
        let wanted: std::collections::BTreeSet<usize> = match &seeding {
            Some(d) => self.cells_of(d).into_iter().collect(),
            None => (0..self.cells.len()).collect(),
        };
        let mut runs = Vec::new();
        let mut missing = Vec::new();
        for (i, r) in found.into_iter().enumerate() {
            match r {
                Some(r) => runs.push(r),
                None if wanted.contains(&i) => missing.push(i),
                None => {}
            }
        }
        let mut all_notes = vec![match &seeding {
            None => format!(
                "Seeds: {:?} (the same for every variant, so differences are paired).",
                self.seeds
            ),
            Some(d) => self.seeding_note(d),
        }];
        let no_test: Vec<&str> = self
            .variants
            .iter()
            .filter(|v| !v.run.has_test_set())
            .map(|v| v.name.as_str())
            .collect();
        if !no_test.is_empty() {
            all_notes.push(format!(
                "Metrics are measured on the validation split, not a test set, for {}: the run file has no test set (`data.images.test`, or `split.test` above 0).",
                if no_test.len() == self.variants.len() {
                    "every variant".to_string()
                } else {
                    no_test.join(", ")
                }
            ));
        }
        all_notes.extend(notes);
        // The baseline always stays: the report's first variant and what deltas are against.
        let (shown, absent): (Vec<(usize, &PlannedVariant)>, Vec<_>) = self
            .variants
            .iter()
            .enumerate()
            .partition(|(i, v)| *i == 0 || runs.iter().any(|r| r.variant == v.name));
        if !absent.is_empty() {
            let names: Vec<String> = absent
                .iter()
                .map(|(_, v)| format!("`{}`", v.name))
                .collect();
            all_notes.push(format!(
                "Not in this report: {} (no finished run with the current run file, seeds and inputs); `whet ablate` without `--only` runs them.",
                names.join(", ")
            ));
        }
        let runs_metric_names: std::collections::BTreeSet<String> = runs
            .iter()
            .flat_map(|r: &RunRecord| r.metrics.keys().cloned())
            .filter(|m| *m != self.metric)
            .collect();
        let input = AblationInput {
            title: self.name.clone(),
            pipeline: self.pipeline.display().to_string(),
            description: self.description.clone(),
            overrides: self.overrides.clone(),
            variants: shown
                .iter()
                .map(|(_, v)| VariantInfo {
                    name: v.name.clone(),
                    description: v.description.clone(),
                })
                .collect(),
            runs,
            primary_metric: self.metric.clone(),
            higher_is_better: self.higher_is_better,
            lower_is_better: runs_metric_names
                .into_iter()
                .filter(|m| !whet_train::higher_is_better(m))
                .collect(),
            notes: all_notes,
            choose_on_validation: self.chooses,
            validation_decides: {
                let base = self.variants[0].run.file();
                let mut d = vec![];
                if base.train.early_stopping.is_some() {
                    d.push("early stopping".to_string());
                }
                if matches!(
                    base.model.threshold,
                    Some(whet_train::ThresholdConfig::Auto)
                ) {
                    d.push("the binary threshold".to_string());
                }
                d
            },
        };
        let summary =
            whet_report::write_ablation(&input, out).context("writing the ablation report")?;
        Ok(AblationReport {
            input,
            summary,
            missing,
        })
    }
}

/// Runs `f` on every item of `items`, in order, `threads` at once at most (at least one), each
/// on a thread of its own that takes the next item when it finishes one. With more than one
/// at once, each runs in a rayon pool of its own with its share of the threads (one each when
/// there are as many items as threads): its parallel work never waits behind another item's,
/// and a thread waiting inside it never takes up another item. With one at once, the items
/// run on the calling thread (and the global pool). Results do not depend on the threads.
///
/// After an error no item starts; the first error (in the order the items were taken) is
/// returned. A panic in `f` is resumed on the calling thread.
fn each_on_threads<T: Sync>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let workers = threads.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().try_for_each(f);
    }
    let per = (threads / workers).max(1);
    let next = AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None::<(usize, Error)>);
    let work = || loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= items.len() {
            return;
        }
        if let Err(e) = f(&items[k]) {
            let mut first = failed.lock().unwrap_or_else(|p| p.into_inner());
            if first.as_ref().is_none_or(|(at, _)| k < *at) {
                *first = Some((k, e));
            }
            // No item after this one starts.
            next.store(items.len(), Ordering::Relaxed);
            return;
        }
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(per)
                        .thread_name(move |i| format!("whet-cell{w}-{i}"))
                        .build();
                    match pool {
                        Ok(pool) => pool.install(work),
                        // Without threads of its own, on the global pool.
                        Err(_) => work(),
                    }
                })
            })
            .collect();
        for w in workers {
            if let Err(p) = w.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// The report's note on runs reused from an earlier ablation (same run file, seed and inputs).
/// It does not say "interrupted": runs are also reused when the earlier ablation finished (a
/// rerun, or one with variants added).
pub(crate) fn reuse_note(kept: usize, total: usize) -> Option<String> {
    match kept {
        0 => None,
        k if k == total => Some(format!(
            "All {total} runs were reused from an earlier ablation with the same run file, seeds and inputs; none was run again."
        )),
        k => Some(format!(
            "{k} of {total} runs were reused from an earlier ablation with the same run file, seeds and inputs; the other {} were run now.",
            total - k
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(status: RunStatus, failure: Option<FailureKind>) -> Stored {
        Stored {
            key: "k".into(),
            record: RunRecord {
                variant: "baseline".into(),
                seed: 1,
                status,
                metrics: Default::default(),
                validation: Default::default(),
                validation_samples: None,
                train_seconds: 0.0,
                curves: vec![],
                message: None,
                cross_validation: None,
            },
            failure,
        }
    }

    /// Every item once, each in a pool of its own (one thread each here), never one inside
    /// another: on the shared pool a thread waiting inside an item took other items.
    #[test]
    fn items_run_once_each_never_one_inside_another() {
        use std::cell::Cell;
        use std::sync::Mutex;
        std::thread_local!(static INSIDE: Cell<bool> = const { Cell::new(false) });
        let items: Vec<usize> = (0..12).collect();
        let seen = Mutex::new(Vec::new());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            each_on_threads(&items, rayon::current_num_threads(), |&i| {
                assert!(!INSIDE.with(|c| c.replace(true)), "item {i} inside another");
                assert_eq!(rayon::current_num_threads(), 1);
                // Work on the pool that waits: what let a thread take other items.
                let pause = || std::thread::sleep(std::time::Duration::from_millis(3));
                rayon::join(pause, pause);
                seen.lock().unwrap().push(i);
                INSIDE.with(|c| c.set(false));
                Ok(())
            })
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, items);
    }

    #[test]
    fn after_an_error_no_item_starts_and_the_first_error_is_returned() {
        let started = AtomicUsize::new(0);
        let items: Vec<usize> = (0..50).collect();
        for threads in [1, 2, 3] {
            started.store(0, Ordering::Relaxed);
            let e = each_on_threads(&items, threads, |&i| {
                started.fetch_add(1, Ordering::Relaxed);
                if i >= 4 {
                    return Err(Error::Invalid(format!("item {i}")));
                }
                Ok(())
            })
            .unwrap_err();
            assert_eq!(e.to_string(), Error::Invalid("item 4".into()).to_string());
            // Items 0..=4, and at most one more per other thread already taken.
            let n = started.load(Ordering::Relaxed);
            assert!(
                (5..5 + threads).contains(&n),
                "{threads} threads: {n} started"
            );
        }
        assert!(each_on_threads(&[] as &[usize], 2, |_| Ok(())).is_ok());
    }

    #[test]
    fn reuse_note_does_not_claim_an_interruption() {
        assert_eq!(reuse_note(0, 4), None);
        let all = reuse_note(4, 4).unwrap();
        assert!(
            all.starts_with("All 4 runs were reused") && !all.contains("interrupt"),
            "{all}"
        );
        let some = reuse_note(3, 4).unwrap();
        assert!(
            some.contains("3 of 4") && some.contains("the other 1 were run now"),
            "{some}"
        );
        assert!(!some.contains("interrupt"), "{some}");
    }

    #[test]
    fn resume_keeps_results_and_deterministic_failures_only() {
        use FailureKind::{Deterministic, Environment};
        assert!(stored(RunStatus::Ok, None).keeps("k"));
        assert!(stored(RunStatus::Diverged, None).keeps("k"));
        assert!(stored(RunStatus::Failed, Some(Deterministic)).keeps("k"));
        assert!(!stored(RunStatus::Failed, Some(Environment)).keeps("k"));
        // A failed record written before failures had a kind is retried.
        assert!(!stored(RunStatus::Failed, None).keeps("k"));
        // Another hash: the run file or an input changed.
        assert!(!stored(RunStatus::Ok, None).keeps("other"));
        let text = serde_json::to_string(&stored(RunStatus::Failed, Some(Environment))).unwrap();
        assert!(text.contains("\"failure\":\"environment\""), "{text}");
        let old = r#"{"key":"k","record":{"variant":"baseline","seed":1,"status":"failed","metrics":{},"train_seconds":0.0,"curves":[],"message":"x"}}"#;
        let parsed: Stored = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.failure, None);
    }
}
