//! `whet-fuzz <target> --seconds N [--corpus DIR] [--seed S]`: fuzzes one of whet's input paths
//! (`yaml`, `idx`, `csv`, `image`, `parquet`) for N seconds, saving crashing inputs under
//! `crates/whet-fuzz/crashes/<target>/`. Exit code 0 without crashes, 1 with, 2 on usage errors.
//!
//! The session runs in a child process (`--child`) under a supervisor: a panic is caught in the
//! child, but an abort (a failed allocation of an absurd size, a panic that cannot unwind) kills
//! it. The supervisor then keeps the input that was running (`last-input` in the child's scratch
//! folder) as `crashes/<target>-abort/abort-<sha256 prefix>` and starts a new child with the next
//! seed for the time left.

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use whet_fuzz::{FuzzOptions, LAST_INPUT, Target, crash_dir, fuzz, quiet_panics};

const USAGE: &str = "usage: whet-fuzz <yaml|idx|csv|image|parquet> --seconds N [--corpus DIR] [--seed S]\n       whet-fuzz <target> --replay FILE";

/// Runs the session in child processes, restarting after an abort (see the file header).
fn supervise(target: Target, seconds: u64, mut seed: u64, corpus: Option<&str>) -> ExitCode {
    let start = Instant::now();
    let (mut execs, mut children, mut crashes) = (0u64, 0u32, false);
    let mut aborts: Vec<PathBuf> = Vec::new();
    loop {
        let left = seconds.saturating_sub(start.elapsed().as_secs());
        if left == 0 {
            break;
        }
        children += 1;
        let mut cmd = Command::new(std::env::current_exe().expect("the fuzzer's own path"));
        cmd.args([target.name(), "--seconds", &left.to_string(), "--seed"])
            .arg(seed.to_string())
            .arg("--child")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = corpus {
            cmd.args(["--corpus", c]);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("whet-fuzz: starting a child: {e}");
                return ExitCode::from(2);
            }
        };
        // The child's progress lines: echoed, and read for its scratch folder and executions.
        let (mut scratch, mut child_execs) = (None, 0u64);
        for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if let Some(rest) = line.split(" are written under ").nth(1) {
                scratch = rest.split(" (").next().map(PathBuf::from);
            }
            if let Some(n) = line
                .split(" execs (")
                .next()
                .and_then(|h| h.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
            {
                child_execs = n;
            }
        }
        let mut summary = String::new();
        let _ = child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut summary);
        let status = child.wait().expect("waiting for the child");
        if let Some(code) = status.code().filter(|c| *c == 0 || *c == 1) {
            print!("{summary}");
            execs += summary
                .split(" executions")
                .next()
                .and_then(|h| h.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(child_execs);
            crashes |= code == 1;
            break;
        }
        // An abort: keep the input that was running, go on with the next seed.
        execs += child_execs;
        let kept = scratch
            .as_ref()
            .and_then(|d| std::fs::read(d.join(LAST_INPUT)).ok());
        if let Some(d) = &scratch {
            // The dead child could not remove its scratch folder.
            let _ = std::fs::remove_dir_all(d);
        }
        match kept {
            Some(data) => {
                let hash = Sha256::digest(&data);
                let name: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
                let dir = crash_dir(target).with_file_name(format!("{}-abort", target.name()));
                let path = dir.join(format!("abort-{name}"));
                if let Err(e) =
                    std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &data))
                {
                    eprintln!("whet-fuzz: keeping the abort input: {e}");
                    return ExitCode::from(2);
                }
                eprintln!(
                    "{}: the child died ({status}); its input is kept as {}",
                    target.name(),
                    path.display()
                );
                aborts.push(path);
            }
            None => {
                eprintln!(
                    "{}: the child died ({status}) and left no input",
                    target.name()
                );
                return ExitCode::from(2);
            }
        }
        seed += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: supervised session: {children} children, about {execs} executions in {secs:.0} s, {} aborts kept{}",
        target.name(),
        aborts.len(),
        if crashes {
            ", panics saved (see above)"
        } else {
            ""
        }
    );
    if crashes || !aborts.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(target) = args.first().and_then(|a| Target::from_name(a)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut seconds = 60u64;
    let mut corpus = None;
    let mut seed = 1u64;
    if args.get(1).map(String::as_str) == Some("--replay") {
        // One input, panics not caught (for a backtrace): `whet-fuzz csv --replay FILE`.
        let Some(file) = args.get(2) else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("whet-fuzz: reading `{file}`: {e}");
                return ExitCode::from(2);
            }
        };
        let scratch = whet_fuzz::Scratch::new().expect("a scratch folder");
        println!("{:?}", whet_fuzz::execute(target, &data, &scratch));
        return ExitCode::SUCCESS;
    }
    let mut it = args[1..].iter();
    let mut child = false;
    while let Some(a) = it.next() {
        if a == "--child" {
            child = true;
            continue;
        }
        let v = it.next();
        let parsed = match (a.as_str(), v) {
            ("--seconds", Some(v)) => v.parse().map(|n| seconds = n).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|n| seed = n).is_ok(),
            ("--corpus", Some(v)) => {
                corpus = Some(v.into());
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("bad argument `{a}`\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if !child {
        return supervise(
            target,
            seconds,
            seed,
            corpus.as_ref().and_then(|c: &PathBuf| c.to_str()),
        );
    }
    quiet_panics();
    let opt = FuzzOptions {
        seed,
        duration: Duration::from_secs(seconds),
        max_execs: None,
        corpus,
        crash_dir: crash_dir(target),
        report_every: Some(Duration::from_secs(10)),
        keep_last_input: true,
    };
    match fuzz(target, &opt) {
        Ok(s) => {
            let secs = s.elapsed.as_secs_f64();
            println!(
                "{}: {} executions in {:.0} s ({:.0}/s), corpus {}, distinct outcomes {}, crashes {} ({} distinct inputs saved)",
                target.name(),
                s.execs,
                secs,
                s.execs as f64 / secs,
                s.corpus,
                s.outcomes,
                s.crashes,
                s.saved.len()
            );
            if s.crashes > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("whet-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}
