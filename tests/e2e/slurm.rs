//! `whet ablate --launcher slurm` against a real single-node Slurm (issue 16). The cluster is
//! started by `tests/slurm/cluster.sh` (named by `WHET_TEST_SLURM`, which `./test.sh` sets after
//! installing slurm-wlm and munge) in a temporary folder and stopped when the test ends. Without
//! it the test is skipped with a printed reason, except under `CI=true`, where it fails.

use crate::util::{ablation_results, tiny_mnist, whet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running cluster, stopped when dropped (also when the test panics).
struct Cluster {
    script: PathBuf,
    dir: tempfile::TempDir,
    conf: String,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let script = match std::env::var_os("WHET_TEST_SLURM") {
            Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
            other => {
                let why = match other {
                    Some(p) => format!("WHET_TEST_SLURM={} is not a file", p.to_string_lossy()),
                    None => "WHET_TEST_SLURM is not set".to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{why}: under CI=true the Slurm test must run; use ./test.sh");
                }
                eprintln!("skipped: {why} (./test.sh installs Slurm and sets it, as root)");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new(&script)
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "cluster.sh start failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let conf = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("export SLURM_CONF="))
            .next_back()
            .expect("cluster.sh prints SLURM_CONF")
            .trim_matches(['"', '\''])
            .to_string();
        Some(Cluster { script, dir, conf })
    }

    /// A Slurm client command (or whet) talking to this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// `whet ARGS --quiet` in `d` against this cluster: (exit code, stdout, stderr).
    fn whet(&self, d: &Path, args: &[&str]) -> (i32, String, String) {
        let o = self
            .cmd(env!("CARGO_BIN_EXE_whet"))
            .args(args)
            .arg("--quiet")
            .current_dir(d)
            .env("WHET_CACHE_DIR", d.join(".cache"))
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Waits until job `id` has left the queue.
    fn wait(&self, id: &str) {
        let start = Instant::now();
        loop {
            let o = self
                .cmd("squeue")
                .args(["-h", "-j", id, "-o", "%i %T"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "job {id} still queued"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn an_ablation_runs_as_a_slurm_array_and_a_cancelled_cell_reruns() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    // 3 variants x 2 seeds = 6 cells.
    let file = tiny_mnist(
        "ablation:\n  seeds: 2\n  slurm: { time: \"00:10:00\", cpus: 2 }\n  variants:\n    - { name: no-rotate, drop: augment.ops.rotate }\n    - { name: no-noise, drop: augment.ops.gaussian_noise }\n",
    )
    .replace("epochs: 3", "epochs: 30");
    std::fs::write(d.join("run.yaml"), file).unwrap();
    let r = whet(d, &["ablate", "run.yaml", "--out", "local"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let local = ablation_results(&d.join("local"));

    let (code, out, err) = cluster.whet(
        d,
        &[
            "ablate",
            "run.yaml",
            "--out",
            "s",
            "--launcher",
            "slurm",
            "--slurm",
            "cpus=1",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("submitted Slurm job") && out.contains("6 cells"),
        "{out}"
    );
    assert_eq!(
        ablation_results(&d.join("s")),
        local,
        "the Slurm array gives the local result"
    );
    let script = std::fs::read_to_string(d.join("s/slurm/array-1.sh")).unwrap();
    // The run file's `ablation.slurm` with the command line's settings over it.
    for line in [
        "#SBATCH --array=0-5\n",
        "#SBATCH --time=00:10:00\n",
        "#SBATCH --cpus-per-task=1\n",
        "--threads 1 ablate",
    ] {
        assert!(script.contains(line), "{line} not in {script}");
    }

    // Submitted without waiting; one cell is cancelled while it runs.
    let (code, out, err) = cluster.whet(
        d,
        &[
            "ablate",
            "run.yaml",
            "--out",
            "k",
            "--launcher",
            "slurm",
            "--no-wait",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let job = out
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .expect("the job id is printed")
        .trim_end_matches(':')
        .to_string();
    assert!(out.contains("--collect"), "{out}");
    let cell0 = d.join("k/runs/baseline/seed-3");
    let start = Instant::now();
    while !cell0.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "cell 0 never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = cluster
        .cmd("scancel")
        .arg(format!("{job}_0"))
        .status()
        .unwrap();
    assert!(st.success());
    cluster.wait(&job);
    let cancelled = !cell0.join("record.json").exists();
    let (code, _, err) = cluster.whet(d, &["ablate", "k", "--collect"]);
    assert_eq!(code, 0, "{err}");
    if cancelled {
        assert!(
            err.contains("cell 0 (`baseline` seed 3) has no result: whet ablate"),
            "{err}"
        );
    } else {
        eprintln!("cell 0 finished before scancel reached it");
    }
    // A second submission from the folder runs only what is missing.
    let (code, out, err) = cluster.whet(d, &["ablate", "k", "--launcher", "slurm"]);
    assert_eq!(code, 0, "{out}\n{err}");
    if cancelled {
        assert!(out.contains("1 cells"), "{out}");
    }
    assert_eq!(
        ablation_results(&d.join("k")),
        local,
        "after the resubmission"
    );

    // Sequential seeding: one job array per round, the same seeds and numbers as locally.
    let seq = d.join("seq");
    std::fs::create_dir(&seq).unwrap();
    let file = tiny_mnist(
        "ablation:\n  seeds: { min: 2, max: 4 }\n  variants:\n    - { name: no-rotate, drop: augment.ops.rotate }\n",
    );
    std::fs::write(seq.join("run.yaml"), file).unwrap();
    let r = whet(&seq, &["ablate", "run.yaml", "--out", "local"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let local = ablation_results(&seq.join("local"));
    let (code, out, err) = cluster.whet(
        &seq,
        &["ablate", "run.yaml", "--out", "s", "--launcher", "slurm"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        ablation_results(&seq.join("s")),
        local,
        "sequential rounds on Slurm"
    );
    // The first round is 2 seeds × 2 variants; every later round adds one seed (the variant's
    // and the baseline's), so the rounds are the baseline's seeds beyond 2, plus one.
    let baseline_seeds = local.lines().filter(|l| l.starts_with("baseline")).count();
    let arrays = (1..)
        .take_while(|n| seq.join(format!("s/slurm/array-{n}.sh")).exists())
        .count();
    assert!(baseline_seeds > 2, "a second round ran: {local}");
    assert_eq!(arrays, baseline_seeds - 1, "{out}\n{local}");
    let first = std::fs::read_to_string(seq.join("s/slurm/array-1.sh")).unwrap();
    assert!(first.contains("#SBATCH --array=0-1,4-5"), "{first}");
}
