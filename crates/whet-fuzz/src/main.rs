//! `whet-fuzz <target> --seconds N [--corpus DIR] [--seed S]`: fuzzes one of whet's input paths
//! (`yaml`, `idx`, `csv`, `image`) for N seconds, saving crashing inputs under
//! `crates/whet-fuzz/crashes/<target>/`. Exit code 0 without crashes, 1 with, 2 on usage errors.

use std::process::ExitCode;
use std::time::Duration;
use whet_fuzz::{FuzzOptions, Target, crash_dir, fuzz, quiet_panics};

const USAGE: &str = "usage: whet-fuzz <yaml|idx|csv|image> --seconds N [--corpus DIR] [--seed S]\n       whet-fuzz <target> --replay FILE";

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
    while let Some(a) = it.next() {
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
    quiet_panics();
    let opt = FuzzOptions {
        seed,
        duration: Duration::from_secs(seconds),
        max_execs: None,
        corpus,
        crash_dir: crash_dir(target),
        report_every: Some(Duration::from_secs(30)),
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
