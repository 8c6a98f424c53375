//! Integration tests: whole reports written to a temporary folder and read back.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use whet_report::{
    AblationInput, Confusion, EpochRow, Error, RunRecord, RunStatus, VariantInfo, Verdict, files,
    write_ablation, write_run,
};

fn curves(seed: u64, shift: f64, epochs: usize) -> Vec<EpochRow> {
    (1..=epochs)
        .map(|e| {
            let t = e as f64;
            EpochRow {
                epoch: e,
                train_loss: 2.0 / t + shift + seed as f64 * 0.01,
                train_accuracy: Some((0.6 + 0.3 * (1.0 - 1.0 / t) - shift).min(1.0)),
                val_loss: Some(2.2 / t + shift),
                val_accuracy: Some((0.55 + 0.3 * (1.0 - 1.0 / t) - shift).min(1.0)),
                seconds: 0.5,
            }
        })
        .collect()
}

fn run(variant: &str, seed: u64, status: RunStatus, acc: Option<f64>) -> RunRecord {
    let mut metrics = BTreeMap::new();
    if let Some(a) = acc {
        metrics.insert("accuracy".to_string(), a);
        metrics.insert("loss".to_string(), 1.0 - a);
    }
    RunRecord {
        variant: variant.into(),
        seed,
        status,
        metrics,
        validation: Default::default(),
        validation_samples: None,
        train_seconds: 3.0 + seed as f64,
        curves: if status == RunStatus::Ok {
            curves(seed, 1.0 - acc.unwrap_or(0.0) - 0.1, 6)
        } else {
            curves(seed, 0.0, 2)
        },
        message: None,
        cross_validation: None,
    }
}

fn input() -> AblationInput {
    use RunStatus::*;
    let v = |n: &str, d: &str| VariantInfo {
        name: n.into(),
        description: d.into(),
    };
    let mut runs = Vec::new();
    for (seed, base) in [(1, 0.900), (2, 0.910), (3, 0.905)] {
        runs.push(run("baseline", seed, Ok, Some(base)));
        // Consistently worse by about 3 points: "hurts".
        runs.push(run(
            "no-elastic",
            seed,
            Ok,
            Some(base - 0.03 - seed as f64 * 0.002),
        ));
        // Consistently better by about 1 point: "helps".
        runs.push(run(
            "wider",
            seed,
            Ok,
            Some(base + 0.01 + seed as f64 * 0.001),
        ));
        // Up and down: "no clear effect".
        let wobble = [0.02, -0.025, 0.004][seed as usize - 1];
        runs.push(run("more-noise", seed, Ok, Some(base + wobble)));
    }
    for seed in 1..=3 {
        let mut r = run("lr=10", seed, Diverged, None);
        r.curves[1].train_loss = f64::INFINITY;
        r.message = Some("loss became inf at epoch 2, batch 7 (lr \"10\")".into());
        runs.push(r);
    }
    AblationInput {
        title: "MNIST ablation".into(),
        pipeline: "pipelines/mnist-ablation.yaml".into(),
        description: None,
        overrides: vec![],
        variants: vec![
            v("baseline", ""),
            v("no-elastic", "drop augment.ops.elastic"),
            v("wider", "set model.hidden.0.dense = 512"),
            v("more-noise", "set augment.ops.gaussian_noise.std = 0.2"),
            v("lr=10", "set train.optimizer.adam.lr = 10"),
        ],
        runs,
        primary_metric: "accuracy".into(),
        higher_is_better: true,
        lower_is_better: vec!["loss".into()],
        notes: vec!["training set: 2,000 images".into()],
        choose_on_validation: false,
        validation_decides: vec![],
    }
}

/// Splits RFC 4180 CSV text into records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "CSV must end with a newline"
    );
    rows
}

fn assert_no_temp_files(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.') && !name.contains(".tmp"),
            "left behind: {name}"
        );
    }
}

/// Decodes a PNG, checks its size and that it has real content (not a blank canvas).
fn assert_real_png(path: &Path, min_w: u32, min_h: u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let img = img.to_rgb8();
    assert!(
        img.width() >= min_w && img.height() >= min_h,
        "{}: {:?}",
        path.display(),
        img.dimensions()
    );
    let total = img.pixels().len();
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        ink * 100 > total,
        "{}: only {ink} of {total} pixels drawn",
        path.display()
    );
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 8,
        "{}: {} colours",
        path.display(),
        colours.len()
    );
}

#[test]
fn ablation_report_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let input = input();
    let summary = write_ablation(&input, &out).unwrap();

    let verdicts: Vec<Verdict> = summary.variants.iter().map(|v| v.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Baseline,
            Verdict::Hurts,
            Verdict::Helps,
            Verdict::NoClearEffect,
            Verdict::TooFewRuns
        ]
    );
    let lr = &summary.variants[4];
    assert_eq!((lr.ok, lr.diverged, lr.failed), (0, 3, 0));
    for f in &summary.files {
        assert!(f.exists(), "{}", f.display());
    }
    assert_no_temp_files(&out);

    // CSV: the required columns, one row per run, statuses, empty cells for missing metrics.
    let rows = parse_csv(&fs::read_to_string(out.join(files::ABLATION_CSV)).unwrap());
    assert_eq!(
        rows[0],
        [
            "variant",
            "seed",
            "status",
            "accuracy",
            "loss",
            "train_seconds",
            "message"
        ]
    );
    assert_eq!(rows.len(), input.runs.len() + 1);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    assert_eq!(rows[1][..3], ["baseline", "1", "ok"]);
    assert_eq!(rows[1][3].parse::<f64>().unwrap(), 0.9);
    let diverged: Vec<_> = rows.iter().filter(|r| r[2] == "diverged").collect();
    assert_eq!(diverged.len(), 3);
    assert!(diverged.iter().all(|r| r[0] == "lr=10" && r[3].is_empty()));
    assert_eq!(
        diverged[0][6],
        "loss became inf at epoch 2, batch 7 (lr \"10\")"
    );

    // JSON: runs and summaries, machine-readable.
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join(files::ABLATION_JSON)).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), input.runs.len());
    assert_eq!(json["summaries"].as_array().unwrap().len(), 5);
    assert_eq!(json["summaries"][1]["verdict"], "hurts");
    assert_eq!(json["summaries"][1]["unadjusted"], "hurts");
    assert!(json["summaries"][1]["p_holm"].as_f64().unwrap() < 0.05);
    assert!(json["summaries"][0]["p_holm"].is_null());
    assert_eq!(json["runs"][12]["status"], "diverged");
    let back: Vec<RunRecord> = serde_json::from_value(json["runs"].clone()).unwrap();
    assert_eq!(back.len(), input.runs.len());

    // report.md: verdicts, counts, no NaN, and every link points at a file on disk.
    let md = fs::read_to_string(out.join(files::REPORT_MD)).unwrap();
    for needle in [
        "# MNIST ablation",
        "pipelines/mnist-ablation.yaml",
        "**helps**",
        "**hurts**",
        "no clear effect",
        "too few paired runs",
        "drop augment.ops.elastic",
        "90.50 ± 0.50 %",
        "**diverged**",
        "training set: 2,000 images",
        "| p (Holm) | verdict | unadjusted |",
        "Holm's step-down adjustment",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    assert!(!md.to_lowercase().contains("nan"), "{md}");
    assert!(!md.contains("inf |"), "{md}");
    let mut links = 0;
    for (i, _) in md.match_indices("](") {
        let rest = &md[i + 2..];
        let target = &rest[..rest.find(')').unwrap()];
        assert!(out.join(target).is_file(), "broken link {target}");
        links += 1;
    }
    assert_eq!(links, 4, "two charts, PNG and SVG each");
    assert!(md.contains("![Effect of each variant on accuracy vs baseline](effect.png)"));

    // Charts: real PNGs, SVGs with their titles and the embedded font's family.
    assert_real_png(&out.join("effect.png"), 900, 300);
    assert_real_png(&out.join("learning-curves.png"), 1000, 400);
    let svg = fs::read_to_string(out.join("effect.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Effect of each variant on accuracy"));
    assert!(svg.contains("font-family=\"DejaVu Sans, sans-serif\""));
    assert!(
        !svg.contains("font-family=\"sans-serif\""),
        "every text uses the named family"
    );
    assert!(svg.contains("no-elastic (hurts)") && svg.contains("lr=10 (no paired runs)"));
    let svg = fs::read_to_string(out.join("learning-curves.svg")).unwrap();
    assert!(svg.contains("Learning curves per variant") && svg.contains("validation accuracy"));

    // Writing again replaces the files in place and still leaves no temporary files.
    write_ablation(&input, &out).unwrap();
    assert_no_temp_files(&out);
}

#[test]
fn a_clear_change_in_another_metric_is_flagged() {
    // `more-noise` wobbles on accuracy (no clear effect) while its loss rises by 0.05 ± 0.01
    // on every seed: the report must say so under "Worth a look".
    let mut input = input();
    for r in input.runs.iter_mut().filter(|r| r.variant == "more-noise") {
        let bump = [0.05, 0.06, 0.04][r.seed as usize - 1];
        let base = 1.0 - [0.900, 0.910, 0.905][r.seed as usize - 1];
        r.metrics.insert("loss".into(), base + bump);
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = write_ablation(&input, dir.path()).unwrap();
    let noisy = &summary.variants[3];
    assert_eq!(noisy.verdict, Verdict::NoClearEffect);
    assert_eq!(noisy.secondary.len(), 1);
    assert_eq!(noisy.secondary[0].metric, "loss");
    assert!(!noisy.secondary[0].better);
    // Variants with a clear primary verdict are not flagged, whatever their loss does.
    assert!(summary.variants[1].secondary.is_empty());
    let md = fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
    assert!(
        md.contains("## Worth a look")
            && md
                .contains("- `more-noise`: no clear effect on accuracy, but loss is clearly worse"),
        "{md}"
    );
    // Without the loss change there is nothing to flag and no section.
    let dir = tempfile::tempdir().unwrap();
    write_ablation(&self::input(), dir.path()).unwrap();
    let md = fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
    assert!(!md.contains("Worth a look"), "{md}");
}

#[test]
fn all_runs_failed_still_gives_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = input();
    for r in &mut input.runs {
        r.status = RunStatus::Failed;
        r.metrics.clear();
        r.curves.clear();
    }
    let summary = write_ablation(&input, dir.path()).unwrap();
    assert!(summary.variants.iter().all(|v| v.ok == 0 && v.failed == 3));
    let md = fs::read_to_string(dir.path().join(files::REPORT_MD)).unwrap();
    assert!(!md.to_lowercase().contains("nan"), "{md}");
    assert!(md.contains("15 runs: 0 ok, 0 diverged, 15 failed"), "{md}");
    // Without curves there is no learning-curve chart, and the report does not link one.
    assert!(!dir.path().join("learning-curves.png").exists());
    assert!(!md.contains("learning-curves.png"));
    assert_real_png(&dir.path().join("effect.png"), 900, 300);
    assert_no_temp_files(dir.path());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = input();
    input.runs[0].variant = "typo".into();
    let e = write_ablation(&input, dir.path()).unwrap_err();
    assert!(matches!(e, Error::UnknownVariant { .. }));
    assert!(e.to_string().contains("`typo`"), "{e}");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn run_folder_with_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let r = run("baseline", 7, RunStatus::Ok, Some(0.9));
    let labels: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let counts: Vec<Vec<u64>> = (0..10)
        .map(|t| {
            (0..10)
                .map(|p| if t == p { 90 } else { ((t + p) % 3) as u64 })
                .collect()
        })
        .collect();
    let confusion = Confusion { labels, counts };
    let written = write_run(&r, Some(&confusion), dir.path()).unwrap();
    assert_eq!(written.len(), 5);
    assert_no_temp_files(dir.path());

    let csv = parse_csv(&fs::read_to_string(dir.path().join(files::CURVES_CSV)).unwrap());
    assert_eq!(
        csv[0],
        [
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds"
        ]
    );
    assert_eq!(csv.len(), 7);

    assert_real_png(&dir.path().join("learning-curves.png"), 1000, 400);
    assert_real_png(&dir.path().join("confusion.png"), 500, 500);
    let svg = fs::read_to_string(dir.path().join("confusion.svg")).unwrap();
    assert!(svg.contains("Confusion matrix: baseline, seed 7"), "title");
    assert!(
        svg.contains(">90<") || svg.contains("90\n"),
        "counts are written"
    );
    assert!(svg.contains("predicted class") && svg.contains("true class"));
    let svg = fs::read_to_string(dir.path().join("learning-curves.svg")).unwrap();
    assert!(svg.contains("Learning curves: baseline, seed 7"));

    let bad = Confusion {
        labels: vec!["a".into(), "b".into()],
        counts: vec![vec![1, 2]],
    };
    let e = write_run(&r, Some(&bad), &dir.path().join("bad")).unwrap_err();
    assert!(matches!(e, Error::ConfusionShape { .. }), "{e}");
    assert!(!dir.path().join("bad").exists());
}

#[test]
fn diverged_run_without_epochs_or_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = run("lr=10", 1, RunStatus::Diverged, None);
    r.curves.clear();
    write_run(&r, None, dir.path()).unwrap();
    let svg = fs::read_to_string(dir.path().join("learning-curves.svg")).unwrap();
    assert!(svg.contains("(diverged)") && svg.contains("no data"));
    assert_real_png(&dir.path().join("learning-curves.png"), 500, 400);
    // A run whose loss explodes: the chart clips the spike instead of flattening the curve.
    let mut r = run("lr=1", 2, RunStatus::Diverged, None);
    r.curves = curves(2, 0.0, 5);
    r.curves[4].train_loss = 1e30;
    r.curves[3].train_loss = f64::NAN;
    write_run(&r, None, dir.path()).unwrap();
    let svg = fs::read_to_string(dir.path().join("learning-curves.svg")).unwrap();
    assert!(
        svg.contains("loss (▲ values beyond the axis)"),
        "the clipped axis is said"
    );
}

#[test]
fn baseline_only_ablation_has_no_effect_chart() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = input();
    input.variants.truncate(1);
    input.runs.retain(|r| r.variant == "baseline");
    let summary = write_ablation(&input, dir.path()).unwrap();
    assert_eq!(summary.variants.len(), 1);
    assert!(!dir.path().join("effect.png").exists());
    let md = fs::read_to_string(summary.report().unwrap()).unwrap();
    assert!(md.contains("learning-curves.png") && !md.contains("effect.png"));
}

#[test]
fn output_folder_that_is_a_file_is_an_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    fs::write(&file, b"x").unwrap();
    let e = write_ablation(&input(), &file).unwrap_err();
    assert!(matches!(e, Error::Fs(_)), "{e}");
    assert!(e.to_string().contains("taken"), "{e}");
}

#[test]
fn many_classes_confusion_matrix_renders() {
    let dir = tempfile::tempdir().unwrap();
    let k = 47;
    let labels: Vec<String> = (0..k).map(|i| format!("class-{i}")).collect();
    let counts: Vec<Vec<u64>> = (0..k)
        .map(|t| {
            (0..k)
                .map(|p| if t == p { 50 } else { (t * p % 4) as u64 })
                .collect()
        })
        .collect();
    let r = run("baseline", 1, RunStatus::Ok, Some(0.8));
    write_run(&r, Some(&Confusion { labels, counts }), dir.path()).unwrap();
    assert_real_png(&dir.path().join("confusion.png"), 500, 500);
    let svg = fs::read_to_string(dir.path().join("confusion.svg")).unwrap();
    assert!(svg.contains("class-46"));
}
