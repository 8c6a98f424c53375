//! Ablations as an API: [`Ablation::plan`] expands a run's `ablation` section into cells
//! (variant × seed, each with a content hash of its resolved run file and input files),
//! [`Plan::run_cell`] runs one cell into its own folder, and [`Plan::collect`] builds the report
//! from the finished cells. `whet ablate` is [`Plan::run`]: every cell on the local rayon pool,
//! then collect.
//!
//! Cells go to `OUT/runs/<variant>/seed-<n>/`; each finishes by writing `record.json` atomically
//! with its hash, so a cell whose record exists with the same hash is skipped (an interrupted
//! ablation resumes; a changed run file or input reruns).

use crate::cache::{Cache, KeyBuilder, hash_file};
use crate::error::{Error, Result, ResultExt};
use crate::runfile::{Run, RunData};
use crate::variants;
pub use crate::variants::{AblationConfig, Paths, Seeds, VariantConfig};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use whet_core::{NoProgress, Progress};
use whet_report::{AblationInput, AblationSummary, RunRecord, RunStatus, VariantInfo};

/// Plans ablations.
pub struct Ablation;

/// What to plan: overrides of the run file's `ablation` section.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Seeds per variant instead of the run file's (1 to 100).
    pub seeds: Option<u64>,
    /// Only these variants (and the baseline).
    pub only: Vec<String>,
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
    /// The variants, baseline first.
    pub variants: Vec<PlannedVariant>,
    /// The seeds every variant runs with (so differences are paired).
    pub seeds: Vec<u64>,
    /// Every variant × seed.
    pub cells: Vec<Cell>,
    /// The metric verdicts are about.
    pub metric: String,
    /// Whether a higher `metric` is better.
    pub higher_is_better: bool,
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
    }
}

/// The files a run reads (IDX files, table files; every file under an image folder).
fn input_files(run: &Run) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match run.data() {
        RunData::Images { images, .. } => {
            for s in std::iter::once(&images.train).chain(images.test.as_ref()) {
                if let Some(idx) = &s.idx {
                    out.push(idx.images.clone());
                    out.push(idx.labels.clone());
                }
                if let Some(f) = &s.folder {
                    out.push(f.path.clone());
                }
            }
        }
        RunData::Tables(cfg) => out.extend(cfg.data.tables.values().map(|t| t.path.clone())),
    }
    if let Some(t) = &run.file().train.transfer {
        out.push(t.checkpoint.clone());
    }
    out
}

/// SHA-256 of a file's content, or of a folder's sorted `path size` listing.
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
                    list.push(format!("{} {len}", p.display()));
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
        let mut vs = variants::expand(&run.value, &ab).map_err(Error::Invalid)?;
        for o in &options.only {
            if !vs.iter().any(|v| &v.name == o) {
                let names: Vec<_> = vs.iter().map(|v| v.name.clone()).collect();
                return Err(Error::Invalid(format!(
                    "--only {o}: no such variant (have: {})",
                    names.join(", ")
                )));
            }
        }
        if !options.only.is_empty() {
            vs.retain(|v| v.name == "baseline" || options.only.contains(&v.name));
        }
        let variants = vs
            .into_iter()
            .map(|v| {
                Ok(PlannedVariant {
                    run: run.variant_of(&v.name, &v.value)?,
                    name: v.name,
                    description: v.description,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let seeds = ab.seeds.resolve(run.seed());
        let mut memo = BTreeMap::new();
        let mut cells = Vec::new();
        for (vi, v) in variants.iter().enumerate() {
            let mut inputs = KeyBuilder::new().json("variant", &v.run.value);
            for f in input_files(&v.run) {
                inputs = inputs.part(&f.display().to_string(), &content_hash(&f, &mut memo)?);
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
            .unwrap_or_else(|| match run.file().model.task {
                whet_train::Task::Regression => "mse".into(),
                _ => "accuracy".into(),
            });
        let higher_is_better = whet_train::higher_is_better(&metric);
        Ok(Plan {
            name: run.name().to_string(),
            pipeline: run.path().to_path_buf(),
            variants,
            seeds,
            cells,
            metric,
            higher_is_better,
        })
    }
}

impl Plan {
    /// The folder of cell `i` under `out`: `runs/<variant>/seed-<n>`.
    pub fn cell_dir(&self, out: &Path, i: usize) -> PathBuf {
        let c = &self.cells[i];
        out.join("runs")
            .join(&self.variants[c.variant].name)
            .join(format!("seed-{}", c.seed))
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

    /// Runs cell `i` into its folder under `out`, unless its `record.json` holds the same hash
    /// (and `fresh` is false). A run that fails is a record with status `failed` and the error.
    ///
    /// # Errors
    /// Only when the record cannot be written.
    pub fn run_cell(&self, i: usize, out: &Path, cache: &Cache, fresh: bool) -> Result<CellResult> {
        let cell = self.cells.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "cell {i}: the plan has {} cells (0 to {})",
                self.cells.len(),
                self.cells.len().saturating_sub(1)
            ))
        })?;
        let v = &self.variants[cell.variant];
        let dir = self.cell_dir(out, i);
        let record_path = dir.join("record.json");
        if !fresh
            && let Ok(text) = std::fs::read_to_string(&record_path)
            && let Ok(stored) = serde_json::from_str::<Stored>(&text)
            && stored.key == cell.hash
        {
            return Ok(CellResult {
                record: stored.record,
                kept: true,
            });
        }
        let record = match v.run.execute(&dir, cell.seed, cache, &NoProgress) {
            Ok(o) => o.record(),
            Err(e) => RunRecord {
                variant: v.name.clone(),
                seed: cell.seed,
                status: RunStatus::Failed,
                metrics: Default::default(),
                train_seconds: 0.0,
                curves: vec![],
                message: Some(crate::error::chain_text(&e)),
            },
        };
        let stored = Stored {
            key: cell.hash.clone(),
            record,
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

    /// Runs every cell on the rayon pool (work inside a run shares the pool, so nothing is
    /// oversubscribed), then [`Plan::collect`]s. `progress` advances once per cell.
    ///
    /// # Errors
    /// A record that cannot be written, or the report.
    pub fn run(
        &self,
        out: &Path,
        cache: &Cache,
        fresh: bool,
        progress: &dyn Progress,
    ) -> Result<AblationReport> {
        crate::error::check_out_folder(out)?;
        std::fs::create_dir_all(out).map_err(Error::io("creating the output folder", out))?;
        progress.begin(
            &format!(
                "{} variants × {} seeds",
                self.variants.len(),
                self.seeds.len()
            ),
            Some(self.cells.len() as u64),
        );
        let kept = AtomicUsize::new(0);
        (0..self.cells.len())
            .into_par_iter()
            .map(|i| -> Result<()> {
                let r = self.run_cell(i, out, cache, fresh)?;
                if r.kept {
                    kept.fetch_add(1, Ordering::Relaxed);
                } else {
                    progress.message(&format!(
                        "{} seed {}: {}",
                        r.record.variant, r.record.seed, r.record.status
                    ));
                }
                progress.advance(1);
                Ok(())
            })
            .collect::<Result<()>>()?;
        progress.end();
        let kept = kept.load(Ordering::Relaxed);
        let mut notes = vec![];
        if kept > 0 {
            notes.push(format!(
                "{kept} of {} runs were kept from an earlier, interrupted ablation (unchanged run file).",
                self.cells.len()
            ));
        }
        self.collect(out, notes)
    }

    /// Builds `report.md`, `ablation.csv`, `ablation.json` and the charts in `out` from the
    /// cells' records; `notes` are added to the report. Cells without a record are left out
    /// and listed in [`AblationReport::missing`].
    ///
    /// # Errors
    /// No cell has finished, or the report cannot be written.
    pub fn collect(&self, out: &Path, notes: Vec<String>) -> Result<AblationReport> {
        let mut runs = Vec::new();
        let mut missing = Vec::new();
        for c in &self.cells {
            let path = self.cell_dir(out, c.index).join("record.json");
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Stored>(&t).ok())
                .filter(|s| s.key == c.hash)
            {
                Some(s) => runs.push(s.record),
                None => missing.push(c.index),
            }
        }
        let mut all_notes = vec![format!(
            "Seeds: {:?} (the same for every variant, so differences are paired).",
            self.seeds
        )];
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
        let input = AblationInput {
            title: self.name.clone(),
            pipeline: self.pipeline.display().to_string(),
            variants: self
                .variants
                .iter()
                .map(|v| VariantInfo {
                    name: v.name.clone(),
                    description: v.description.clone(),
                })
                .collect(),
            runs,
            primary_metric: self.metric.clone(),
            higher_is_better: self.higher_is_better,
            notes: all_notes,
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
