//! Running an ablation's cells as one Slurm job array: [`Plan::slurm_script`] writes the batch
//! script (`sbatch --array` over the selected cells, each task `whet ablate OUT --cell
//! $SLURM_ARRAY_TASK_ID`), [`submit`] hands it to `sbatch`, and [`wait`] polls `squeue` until
//! the array has left the queue, then reads every task's end state with `scontrol` (there may be
//! no accounting database, so `sacct` is not used).

use crate::ablation::Plan;
use crate::cluster::shell_word;
use crate::error::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use whet_core::Progress;

/// Settings of the job array: the run file's `ablation.slurm`, then `--slurm KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition` (default: the cluster's default partition).
    #[serde(default)]
    pub partition: Option<String>,
    /// `--time` per cell, e.g. `01:00:00` (default: the partition's limit).
    #[serde(default)]
    pub time: Option<String>,
    /// `--cpus-per-task`, also the cell's `--threads`. Default 1.
    #[serde(default = "one")]
    pub cpus: usize,
    /// `--mem` per cell, e.g. `4G` (default: the cluster's default).
    #[serde(default)]
    pub mem: Option<String>,
    /// Cells running at once (`--array=…%K`); default: no limit.
    #[serde(default)]
    pub parallel: Option<usize>,
    /// `--account`.
    #[serde(default)]
    pub account: Option<String>,
}

fn one() -> usize {
    1
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            time: None,
            cpus: 1,
            mem: None,
            parallel: None,
            account: None,
        }
    }
}

impl SlurmOptions {
    /// Reads `KEY=VALUE` settings over the defaults (see [`SlurmOptions::apply`]).
    ///
    /// # Errors
    /// As [`SlurmOptions::apply`].
    pub fn parse(settings: &[String]) -> Result<SlurmOptions> {
        let mut o = SlurmOptions::default();
        o.apply(settings)?;
        Ok(o)
    }

    /// Applies `KEY=VALUE` settings (partition, time, cpus, mem, parallel, account), then checks
    /// every value (one word each; cpus and parallel from 1), so the run file's are checked too.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting and what is valid.
    pub fn apply(&mut self, settings: &[String]) -> Result<()> {
        let o = self;
        for s in settings {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "--slurm {s}: expected KEY=VALUE, e.g. partition=cpu or time=01:00:00"
                ))
            })?;
            let v = v.trim();
            let num = |what: &str| -> Result<usize> {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Invalid(format!("--slurm {s}: {what} is a whole number from 1"))
                })
            };
            match k.trim() {
                "partition" => o.partition = Some(v.to_string()),
                "time" => o.time = Some(v.to_string()),
                "mem" => o.mem = Some(v.to_string()),
                "account" => o.account = Some(v.to_string()),
                "cpus" => o.cpus = num("cpus")?,
                "parallel" => o.parallel = Some(num("parallel")?),
                other => {
                    return Err(Error::Invalid(format!(
                        "--slurm {s}: unknown setting `{other}` (have: partition, time, cpus, mem, parallel, account)"
                    )));
                }
            }
        }
        if o.cpus == 0 || o.parallel == Some(0) {
            return Err(Error::Invalid(
                "ablation.slurm: cpus and parallel are whole numbers from 1".into(),
            ));
        }
        // Values go into `#SBATCH` lines: one word each, no shell syntax.
        for (key, v) in [
            ("partition", &o.partition),
            ("time", &o.time),
            ("mem", &o.mem),
            ("account", &o.account),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.chars().any(|c| c.is_control() || c.is_whitespace()))
            {
                return Err(Error::Invalid(format!(
                    "ablation.slurm.{key}: `{v}` must be one word without spaces"
                )));
            }
        }
        Ok(())
    }
}

/// `0-3,5,7-9`: indices as Slurm's array ranges.
pub fn array_ranges(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The folder of the Slurm files in `out`: the batch script and `logs/JOB_TASK.log`.
pub fn slurm_dir(out: &Path) -> PathBuf {
    out.join("slurm")
}

impl Plan {
    /// The batch script of a job array over `cells` of the plan in `out` (absolute), run with
    /// the whet binary `whet`: `sbatch SCRIPT` submits it again by hand.
    pub fn slurm_script(
        &self,
        out: &Path,
        whet: &Path,
        cells: &[usize],
        o: &SlurmOptions,
    ) -> String {
        let mut s = String::from("#!/bin/sh\n");
        let name: String = format!("whet-{}", self.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        s.push_str(&format!("#SBATCH --job-name={name}\n"));
        let mut array = array_ranges(cells);
        if let Some(k) = o.parallel {
            array.push_str(&format!("%{k}"));
        }
        s.push_str(&format!("#SBATCH --array={array}\n"));
        s.push_str(&format!("#SBATCH --cpus-per-task={}\n", o.cpus));
        // Values go into `#SBATCH` lines: one word each, no shell syntax.
        for (key, v) in [
            ("partition", &o.partition),
            ("time", &o.time),
            ("mem", &o.mem),
            ("account", &o.account),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("#SBATCH --{key}={v}\n"));
            }
        }
        s.push_str(&format!(
            "#SBATCH --output={}\n",
            slurm_dir(out).join("logs").join("%A_%a.log").display()
        ));
        s.push_str(&format!(
            "# {} cells of {} ({} variants x {} seeds); collect: whet ablate {} --collect\n",
            cells.len(),
            self.name.replace('\n', " "),
            self.variants.len(),
            self.seeds.len(),
            shell_word(&out.display().to_string())
        ));
        s.push_str(&format!(
            "exec {} --threads {} ablate {} --cell \"$SLURM_ARRAY_TASK_ID\"\n",
            shell_word(&whet.display().to_string()),
            o.cpus,
            shell_word(&out.display().to_string())
        ));
        s
    }
}

/// A job array [`Plan::submit_slurm`] submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The Slurm job id.
    pub job: String,
    /// The batch script (`sbatch` it again to rerun the same cells).
    pub script: PathBuf,
    /// The cells it runs.
    pub cells: Vec<usize>,
}

impl Plan {
    /// Saves the plan into `out`, writes `out/slurm/array-N.sh` for the next of `rounds`
    /// ([`Plan::next_round`]: the selected cells that have no kept result, all of them when
    /// `fresh`; under sequential seeding the seeds the results so far call for) and submits
    /// it. `None` when no cell is left to run: a driver submits rounds until then.
    ///
    /// # Errors
    /// As [`Plan::save`], a file that cannot be written, or `sbatch` failing.
    pub fn submit_slurm(
        &self,
        out: &Path,
        whet: &Path,
        o: &SlurmOptions,
        fresh: bool,
        rounds: &mut crate::ablation::Rounds,
    ) -> Result<Option<Submitted>> {
        self.save(out)?;
        let out = std::path::absolute(out).map_err(Error::io("resolving", out))?;
        // A round whose cells all have results (kept from an earlier invocation) submits
        // nothing; the next round may still have work.
        let cells = loop {
            let Some((_, todo)) = rounds.next(self, &out, fresh) else {
                return Ok(None);
            };
            let cells: Vec<usize> = todo
                .into_iter()
                .filter(|&i| fresh || self.kept_record(i, &out).is_none())
                .collect();
            if !cells.is_empty() {
                break cells;
            }
        };
        let dir = slurm_dir(&out);
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(Error::io("creating", &logs))?;
        let mut script = self.slurm_script(&out, whet, &cells, o);
        if fresh {
            script = script.replace(
                "--cell \"$SLURM_ARRAY_TASK_ID\"",
                "--cell \"$SLURM_ARRAY_TASK_ID\" --fresh",
            );
        }
        let n = (1..)
            .find(|n| !dir.join(format!("array-{n}.sh")).exists())
            .expect("a free name");
        let path = dir.join(format!("array-{n}.sh"));
        whet_core::fsx::atomic_write(&path, script.as_bytes())?;
        let job = submit(&path)?;
        Ok(Some(Submitted {
            job,
            script: path,
            cells,
        }))
    }
}

/// The note for a task that did not complete: its state, log and the command that reruns it.
pub fn task_note(plan: &Plan, out: &Path, job: &str, t: &TaskState) -> String {
    let what = plan
        .cells
        .get(t.cell)
        .map(|c| format!(" (`{}` seed {})", plan.variants[c.variant].name, c.seed))
        .unwrap_or_default();
    format!(
        "cell {}{what}: Slurm task {job}_{} ended {} (exit code {}); log: {}; rerun: {}",
        t.cell,
        t.cell,
        t.state,
        t.exit_code,
        slurm_dir(out)
            .join("logs")
            .join(format!("{job}_{}.log", t.cell))
            .display(),
        Plan::cell_command(out, &t.cell.to_string())
    )
}

/// Runs a Slurm client command; its stdout, or an error with its stderr.
fn slurm(cmd: &str, args: &[&str]) -> std::result::Result<String, String> {
    let o = Command::new(cmd).args(args).output().map_err(|e| {
        format!("cannot run `{cmd}` ({e}): is Slurm installed and on PATH (and SLURM_CONF set when needed)?")
    })?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Submits `script` with `sbatch --parsable`; the job id.
///
/// # Errors
/// `sbatch` is missing or refuses the job (its message is in the error).
pub fn submit(script: &Path) -> Result<String> {
    let out =
        slurm("sbatch", &["--parsable", &script.display().to_string()]).map_err(Error::Invalid)?;
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "sbatch printed `{}`, not a job id",
            out.trim()
        )));
    }
    Ok(id)
}

/// How one array task ended, from `scontrol -o show job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The cell index (`ArrayTaskId`).
    pub cell: usize,
    /// `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`…
    pub state: String,
    /// `ExitCode=status:signal`.
    pub exit_code: String,
}

/// Parses `scontrol -o show job ID` (one line per task, `Key=Value` words); records whose
/// `ArrayTaskId` is a range (tasks that never started) are skipped.
pub fn parse_scontrol(text: &str) -> Vec<TaskState> {
    let mut out = Vec::new();
    for line in text.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        };
        let Some(cell) = field("ArrayTaskId").and_then(|t| t.parse::<usize>().ok()) else {
            continue;
        };
        out.push(TaskState {
            cell,
            state: field("JobState").unwrap_or("UNKNOWN").to_string(),
            exit_code: field("ExitCode").unwrap_or("?").to_string(),
        });
    }
    out
}

/// Waits until job `id` has left the queue (polling `squeue` every `poll`), advancing
/// `progress` as cells of `plan` in `out` finish; then the end state of every task `scontrol`
/// still knows.
///
/// # Errors
/// `squeue` cannot be run.
pub fn wait(
    plan: &Plan,
    out: &Path,
    id: &str,
    cells: &[usize],
    poll: Duration,
    progress: &dyn Progress,
) -> Result<Vec<TaskState>> {
    // Only the cells not seen finished are read again on each poll.
    let mut pending = cells.to_vec();
    loop {
        let queue = slurm("squeue", &["-h", "-j", id, "-o", "%i %T"]);
        let before = pending.len();
        pending.retain(|&i| plan.kept_record(i, out).is_none());
        if pending.len() < before {
            progress.advance((before - pending.len()) as u64);
        }
        match queue {
            Ok(text) if text.trim().is_empty() => break,
            Ok(_) => {}
            // A job no longer known (purged after MinJobAge) has left the queue.
            Err(e) if e.contains("Invalid job id") => break,
            Err(e) => return Err(Error::Invalid(e)),
        }
        std::thread::sleep(poll);
    }
    Ok(slurm("scontrol", &["-o", "show", "job", id])
        .map(|t| parse_scontrol(&t))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges_join_runs() {
        assert_eq!(array_ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_ranges(&[0, 2, 3, 4, 7]), "0,2-4,7");
        assert_eq!(array_ranges(&[5]), "5");
        assert_eq!(array_ranges(&[]), "");
    }

    #[test]
    fn scontrol_lines_give_each_task_state() {
        let text = "JobId=8 ArrayJobId=5 ArrayTaskId=2 JobName=x JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:01\n\
                    JobId=7 ArrayJobId=5 ArrayTaskId=1 JobState=COMPLETED Reason=None ExitCode=0:0\n\
                    JobId=5 ArrayJobId=5 ArrayTaskId=3-4%2 JobState=PENDING ExitCode=0:0\n";
        assert_eq!(
            parse_scontrol(text),
            vec![
                TaskState {
                    cell: 2,
                    state: "FAILED".into(),
                    exit_code: "3:0".into()
                },
                TaskState {
                    cell: 1,
                    state: "COMPLETED".into(),
                    exit_code: "0:0".into()
                }
            ]
        );
    }

    #[test]
    fn settings_are_checked() {
        let o =
            SlurmOptions::parse(&["partition=cpu".into(), "cpus=2".into(), "parallel=3".into()])
                .unwrap();
        assert_eq!(o.partition.as_deref(), Some("cpu"));
        assert_eq!((o.cpus, o.parallel), (2, Some(3)));
        for (bad, want) in [
            ("gpus=1", "unknown setting `gpus`"),
            ("cpus=0", "whole number from 1"),
            ("time=1 hour", "one word"),
            ("partition", "KEY=VALUE"),
        ] {
            let e = SlurmOptions::parse(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
