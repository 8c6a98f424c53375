//! The `whet` crate used as a library, on the shipped data.

mod common;

use common::repo;
use whet::prelude::*;
use whet::{Error, Manifest, Override, PredictOptions, PreparedData};

/// A small image run file: 300 training images, online augmentation, 2 epochs.
fn tiny(extra: &str) -> String {
    format!(
        r#"name: tiny
seed: 3
data:
  images:
    train: {{ idx: {{ images: datasets/mnist/train-images-idx3-ubyte.gz, labels: datasets/mnist/train-labels-idx1-ubyte.gz }}, limit: 300 }}
    test: {{ idx: {{ images: datasets/mnist/t10k-images-idx3-ubyte.gz, labels: datasets/mnist/t10k-labels-idx1-ubyte.gz }}, limit: 200 }}
    validation: 0.1
    normalize: standardize
augment:
  mode: online
  ops:
    - rotate: {{ degrees: 10, p: 0.5 }}
model:
  task: classification
  hidden:
    - {{ dense: 32, activation: relu }}
train:
  optimizer: {{ adam: {{ lr: 0.003 }} }}
  batch_size: 32
  epochs: 2
{extra}"#
    )
}

#[test]
fn a_run_file_from_text_resolves_paths_against_the_base_folder() {
    let run = RunFile::from_yaml(&tiny(""), repo()).unwrap();
    assert_eq!(run.name(), "tiny");
    assert!(run.is_images());
    let whet::RunData::Images { images, augment } = run.data() else {
        panic!("image data")
    };
    assert!(images.train.idx.as_ref().unwrap().images.is_file());
    assert_eq!(augment.as_ref().unwrap().ops.len(), 1);
}

#[test]
fn errors_are_located_and_typed() {
    let text = tiny("").replace("epochs: 2", "epochs: 2\n  epoch: 3");
    match RunFile::from_yaml(&text, repo()) {
        Err(Error::Config(errors)) => {
            let e = &errors.0[0];
            assert!(e.position.is_some(), "{e}");
            assert!(e.to_string().contains("epoch"), "{e}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn prepare_fits_on_the_training_originals_and_is_deterministic() {
    let run = RunFile::from_yaml(&tiny(""), repo()).unwrap();
    let a = run.prepare(3, &Cache::off(), &NoProgress).unwrap();
    let b = run.prepare(3, &Cache::off(), &NoProgress).unwrap();
    let (PreparedData::Images(a), PreparedData::Images(b)) = (&a.data, &b.data) else {
        panic!("image data")
    };
    assert_eq!(a.normalizer, b.normalizer);
    let (a_train, b_train) = (a.train.in_memory().unwrap(), b.train.in_memory().unwrap());
    assert_eq!(a_train, b_train);
    // 300 images, 10 % held out for validation; online mode keeps the originals.
    assert_eq!(a.train.len() + a.validation.as_ref().unwrap().len(), 300);
    assert_eq!(a.train_originals, a.train.len());
    assert!(a.online.is_some());
    let fitted = whet::image::Normalizer::fit(whet::image::NormalizeKind::Standardize, a_train);
    assert_eq!(a.normalizer, fitted);
}

#[test]
fn execute_writes_metrics_and_manifest_and_an_ablation_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "ablation:\n  seeds: 1\n  variants:\n    - { name: no-augment, drop: augment }\n";
    let run = RunFile::from_yaml(&tiny(extra), repo()).unwrap();
    let out = dir.path().join("run");
    let outcome = run
        .execute(&out, run.seed(), &Cache::off(), &NoProgress)
        .unwrap();
    assert_eq!(outcome.status, whet::RunStatus::Ok);
    let acc = outcome.metrics.test["accuracy"];
    assert!(acc > 0.3, "{acc}");
    let written: Metrics =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(written.test, outcome.metrics.test);
    let m = whet::Manifest::load(&out.join("manifest.json")).unwrap();
    assert_eq!(m.kind, whet::ManifestKind::Run);
    assert!(m.architecture.is_some());

    let plan = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), 2);
    assert_ne!(plan.cells[0].hash, plan.cells[1].hash);
    // The same plan twice has the same hashes (a requeued cell is recognised).
    let again = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells, again.cells);
    let ab = dir.path().join("ab");
    let first = plan
        .run_cell(0, &ab, &Cache::off(), false, &NoProgress)
        .unwrap();
    assert!(!first.kept);
    // The baseline cell is the run above with the same seed: the same numbers.
    assert_eq!(first.record.metrics, outcome.metrics.test);
    let second = plan
        .run_cell(0, &ab, &Cache::off(), false, &NoProgress)
        .unwrap();
    assert!(second.kept);
    let report = plan.collect(&ab, vec![]).unwrap();
    assert_eq!(report.missing, vec![1]);
    assert!(ab.join("report.md").is_file());
}

#[test]
fn fitting_the_normaliser_on_augmented_copies_is_an_explicit_option() {
    let offline = |extra: &str| {
        tiny("").replace(
            "  mode: online\n",
            &format!("  mode: offline\n  copies: 2\n{extra}"),
        )
    };
    let fitted = |text: String| {
        let run = RunFile::from_yaml(&text, repo()).unwrap();
        let p = run.prepare(3, &Cache::off(), &NoProgress).unwrap();
        let PreparedData::Images(p) = p.data else {
            panic!("image data")
        };
        let whet::TrainImages::Memory { set, .. } = p.train else {
            panic!("in memory")
        };
        (p.normalizer, set, p.train_originals)
    };
    let (plain, train, originals) = fitted(offline(""));
    assert_eq!(train.len(), 3 * originals);
    let originals_set = train.select(&(0..originals).collect::<Vec<_>>());
    let kind = whet::image::NormalizeKind::Standardize;
    assert_eq!(plain, whet::image::Normalizer::fit(kind, &originals_set));
    let (on_copies, train2, _) = fitted(offline("  fit_normalizer_on_copies: true\n"));
    assert_eq!(train2, train);
    assert_eq!(on_copies, whet::image::Normalizer::fit(kind, &train));
    assert_ne!(on_copies, plain);
    // Online copies change every epoch: there is nothing fixed to fit on.
    let online = tiny("").replace(
        "  mode: online\n",
        "  mode: online\n  fit_normalizer_on_copies: true\n",
    );
    assert!(matches!(
        RunFile::from_yaml(&online, repo()),
        Err(Error::Config(_))
    ));
}

fn record(
    variant: &str,
    seed: u64,
    status: whet::report::RunStatus,
    acc: f64,
) -> whet::report::RunRecord {
    whet::report::RunRecord {
        variant: variant.into(),
        seed,
        status,
        metrics: [("accuracy".to_string(), acc)].into(),
        validation: Default::default(),
        validation_samples: None,
        train_seconds: 1.0,
        curves: vec![],
        message: None,
        cross_validation: None,
    }
}

/// Sequential seeding decides from results alone: a variant clear after the first seeds stops
/// there, one that stays unclear gets every seed, one waiting for a result gets no further
/// seed, one without ok runs gets none added; the baseline runs what the neediest variant needs.
#[test]
fn sequential_seeding_adds_seeds_only_while_unresolved() {
    use whet::{SeedReason, report::RunStatus::*};
    let extra = "ablation:\n  seeds: { min: 2, max: 4 }\n  variants:\n    - { name: a, set: { train.epochs: 1 } }\n    - { name: b, set: { train.epochs: 3 } }\n    - { name: c, set: { train.batch_size: 16 } }\n    - { name: d, set: { train.batch_size: 8 } }\n";
    let run = RunFile::from_yaml(&tiny(extra), repo()).unwrap();
    let plan = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    assert_eq!(plan.seeds, vec![3, 4, 5, 6]);
    assert_eq!(plan.min_seeds, Some(2));
    assert_eq!(plan.cells.len(), 5 * 4);
    let base = [0.90, 0.92, 0.91, 0.93];
    // Differences from the baseline per seed; None = no result yet.
    let diffs: [(&str, [Option<f64>; 4]); 4] = [
        ("a", [Some(0.05), Some(0.051), None, None]),
        ("b", [Some(0.01), Some(-0.01), Some(0.02), Some(-0.02)]),
        ("c", [Some(0.01), Some(-0.01), Some(0.03), None]),
        ("d", [Some(0.0), Some(0.0), None, None]),
    ];
    let rec = |i: usize| -> Option<whet::report::RunRecord> {
        let (v, k) = (i / 4, i % 4);
        let seed = plan.seeds[k];
        if v == 0 {
            return Some(record("baseline", seed, Ok, base[k]));
        }
        let (name, d) = diffs[v - 1];
        let status = if name == "d" { Diverged } else { Ok };
        d[k].map(|d| record(name, seed, status, base[k] + d))
    };
    let decisions = plan.seeding(&rec).unwrap();
    let got: Vec<(usize, usize, SeedReason)> = decisions
        .iter()
        .map(|d| (d.variant, d.seeds, d.reason))
        .collect();
    assert_eq!(
        got,
        [
            (0, 4, SeedReason::Baseline),
            (1, 2, SeedReason::Resolved),
            (2, 4, SeedReason::Maximum),
            (3, 4, SeedReason::Waiting),
            (4, 2, SeedReason::TooFewPairs),
        ]
    );
    assert_eq!(
        plan.wanted_cells(&rec),
        [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    );
    // With nothing run yet, the first round is every variant's first 2 seeds.
    assert_eq!(
        plan.wanted_cells(&|_| None),
        [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]
    );
    // A fixed seed count wants every cell whatever the results.
    let fixed = Ablation::plan(
        &run,
        &PlanOptions {
            seeds: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(fixed.seeding(&|_| None).is_none());
    assert_eq!(fixed.wanted_cells(&|_| None), (0..10).collect::<Vec<_>>());
}

/// Sequential seeding judges as the headline does, after the Holm adjustment over the study's
/// variants: a variant whose own interval already excludes 0 after the first seeds, but whose
/// adjusted p-value does not pass 5 % beside two null variants, gets another seed.
#[test]
fn sequential_seeding_judges_after_the_holm_adjustment() {
    use whet::{SeedReason, report::RunStatus::Ok};
    let extra = "ablation:\n  seeds: { min: 2, max: 3 }\n  variants:\n    - { name: x, set: { train.epochs: 1 } }\n    - { name: n1, set: { train.epochs: 3 } }\n    - { name: n2, set: { train.batch_size: 16 } }\n";
    let run = RunFile::from_yaml(&tiny(extra), repo()).unwrap();
    let plan = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    let base = [0.90, 0.92, 0.91];
    let diffs: [[f64; 3]; 3] = [
        [0.05, 0.0535, 0.052],
        [0.01, -0.01, 0.01],
        [0.02, -0.02, 0.0],
    ];
    // Unadjusted, x is clear after its first two seeds ...
    let first = whet::report::describe(&diffs[0][..2]);
    assert!(!first.ci95.unwrap().contains(0.0));
    let p = whet::report::paired_p(&first).unwrap();
    // ... but not after the adjustment for three comparisons.
    assert!(p < 0.05 && 3.0 * p >= 0.05, "p = {p}");
    let rec = |i: usize| -> Option<whet::report::RunRecord> {
        let (v, k) = (i / 3, i % 3);
        let seed = plan.seeds[k];
        let (name, acc) = match v {
            0 => ("baseline", base[k]),
            _ => (["x", "n1", "n2"][v - 1], base[k] + diffs[v - 1][k]),
        };
        Some(record(name, seed, Ok, acc))
    };
    let got: Vec<(usize, usize, SeedReason)> = plan
        .seeding(&rec)
        .unwrap()
        .iter()
        .map(|d| (d.variant, d.seeds, d.reason))
        .collect();
    assert_eq!(
        got,
        [
            (0, 3, SeedReason::Baseline),
            (1, 3, SeedReason::Resolved),
            (2, 3, SeedReason::Maximum),
            (3, 3, SeedReason::Maximum),
        ]
    );
}

/// A real sequential ablation: every variant has between `min` and `max` seeds, a variant got
/// a seed beyond the minimum only when its difference over the seeds before was not clear
/// after the Holm adjustment, the
/// baseline has the most seeds, and the report says how many each got and why.
#[test]
fn a_sequential_ablation_runs_in_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "ablation:\n  seeds: { min: 2, max: 4 }\n  variants:\n    - { name: no-augment, drop: augment }\n    - { name: slow, set: { train.optimizer.adam.lr: 0.0001 } }\n";
    let run = RunFile::from_yaml(&tiny(extra), repo()).unwrap();
    let plan = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    let out = dir.path().join("ab");
    let report = plan.run(&out, &Cache::off(), false, &NoProgress).unwrap();
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    let runs = &report.input.runs;
    let seeds_of = |v: &str| -> Vec<u64> {
        let mut s: Vec<u64> = runs
            .iter()
            .filter(|r| r.variant == v)
            .map(|r| r.seed)
            .collect();
        s.sort();
        s
    };
    let base = seeds_of("baseline");
    for v in ["no-augment", "slow"] {
        let s = seeds_of(v);
        assert!((2..=4).contains(&s.len()), "{v}: {s:?}");
        assert_eq!(
            s,
            plan.seeds[..s.len()].to_vec(),
            "{v}: the first seeds, in order"
        );
        assert!(base.len() >= s.len());
        for k in 2..s.len() {
            // It got seed k+1 only because the interval over the first k contained 0.
            let d: Vec<f64> = (0..k)
                .map(|j| {
                    let m = |name: &str| {
                        runs.iter()
                            .find(|r| r.variant == name && r.seed == plan.seeds[j])
                            .unwrap()
                            .metrics["accuracy"]
                    };
                    m(v) - m("baseline")
                })
                .collect();
            // Not clear after the Holm adjustment over the two variants, which at most
            // doubles its p-value.
            let p = whet::report::paired_p(&whet::report::describe(&d)).unwrap();
            assert!(2.0 * p >= 0.05, "{v} after {k} seeds: p = {p}");
        }
    }
    assert_eq!(
        base.len(),
        seeds_of("no-augment").len().max(seeds_of("slow").len())
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        seeds_of("no-augment").len() > 2 || seeds_of("slow").len() > 2,
        "a second round ran: {:?}",
        report.input.notes[0]
    );
    assert!(
        md.contains("Sequential seeding (2 to 4 seeds")
            && md.contains(&format!("`no-augment` {}", seeds_of("no-augment").len())),
        "{md}"
    );
    // Resuming runs nothing new and gives the same records.
    let again = plan.run(&out, &Cache::off(), false, &NoProgress).unwrap();
    assert_eq!(again.input.runs.len(), runs.len());
    assert!(
        again
            .input
            .notes
            .iter()
            .any(|n| n.starts_with("All ") && n.contains("reused")),
        "{:?}",
        again.input.notes
    );
}

/// A k-fold run on the shipped small table: every row is tested once per repeat, each fold's
/// stages are fitted on its own training rows, the run's numbers are the folds' means with the
/// corrected interval, each fold folder is a complete run (predict takes it), the k-fold folder
/// itself is refused where one model is needed, and an ablation pairs over seeds × folds.
#[test]
fn a_kfold_run_tests_every_row_once_per_repeat_and_an_ablation_pairs_folds() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("pipelines/flights-small-delay.yaml");
    let run = Run::load(&file, &[Override::parse("train.epochs=2").unwrap()]).unwrap();
    assert_eq!(run.folds(), Some((5, 2)));
    let out = dir.path().join("cv");
    let o = run
        .execute(&out, run.seed(), &Cache::off(), &NoProgress)
        .unwrap();
    assert_eq!(o.status, whet::RunStatus::Ok);
    let cv = o.metrics.cross_validation.as_ref().unwrap();
    assert_eq!((cv.k, cv.repeats, cv.folds.len()), (5, 2, 10));
    // 1,000 rows, 34 without a target: 966 tested once per repeat, about a fifth per fold.
    for repeat in cv.folds.chunks(5) {
        let tested: usize = repeat.iter().map(|f| f.rows.test).sum();
        assert_eq!(tested, 966);
        for f in repeat {
            assert_eq!(f.rows.train + f.rows.validation + f.rows.test, 966);
            assert!((193..=194).contains(&f.rows.test), "{:?}", f.rows);
        }
    }
    // The run's number is the folds' mean; its interval is the corrected one, wider than
    // the plain one over 10 values.
    let auc: Vec<f64> = cv.folds.iter().map(|f| f.test["roc_auc"]).collect();
    let mean = auc.iter().sum::<f64>() / 10.0;
    assert!((o.metrics.test["roc_auc"] - mean).abs() < 1e-12);
    let ratio = cv.test_train_ratio;
    assert!((0.24..0.29).contains(&ratio), "{ratio}");
    let corrected = cv.summary["roc_auc"];
    assert_eq!(corrected, whet::report::describe_folds(&auc, ratio));
    let plain = whet::report::describe(&auc).ci95.unwrap();
    let c = corrected.ci95.unwrap();
    assert!(c.high - c.low > 1.5 * (plain.high - plain.low));
    // Each fold was fitted on its own training rows: the z-score means differ between folds.
    let fitted = |f: &whet::FoldMetrics| {
        let m = Manifest::load(&out.join(&f.folder).join("manifest.json")).unwrap();
        serde_json::to_string(&m.preprocessing).unwrap()
    };
    assert_ne!(fitted(&cv.folds[0]), fitted(&cv.folds[1]));
    // The fold folder is a run folder; the k-fold folder is refused, naming the folds.
    let csv = repo().join("datasets/nycflights13/flights-sample-1000.csv.gz");
    let p = whet::predict(
        &out.join(&cv.folds[0].folder),
        std::slice::from_ref(&csv),
        &dir.path().join("p.csv"),
        &PredictOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(p.rows_in, 1000);
    let e = whet::predict(
        &out,
        std::slice::from_ref(&csv),
        &dir.path().join("q.csv"),
        &PredictOptions::default(),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("k-fold run") && e.contains("repeat-1-fold-1"),
        "{e}"
    );
    let e = run
        .export(
            dir.path().join("ex"),
            &ExportOptions::default(),
            &Cache::off(),
            &NoProgress,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("split.method") && e.contains("one fold at a time"),
        "{e}"
    );
    // Run again into the same folder with fewer folds: the stale fold folders go.
    let three = Run::load(
        &file,
        &[
            Override::parse("train.epochs=1").unwrap(),
            Override::parse("split.k=3").unwrap(),
            Override::parse("split.repeats=1").unwrap(),
        ],
    )
    .unwrap();
    three.execute(&out, 1, &Cache::off(), &NoProgress).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(out.join("folds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["fold-1", "fold-2", "fold-3"]);

    // An ablation of 2 seeds: 20 (seed, fold) pairs per variant, described with the correction.
    let plan = Ablation::plan(
        &run,
        &PlanOptions {
            seeds: Some(2),
            only: vec!["no-weather".into()],
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let report = plan
        .run(&dir.path().join("ab"), &Cache::off(), false, &NoProgress)
        .unwrap();
    let base = report
        .input
        .runs
        .iter()
        .find(|r| r.variant == "baseline" && r.seed == plan.seeds[0])
        .unwrap();
    // The baseline cell with the run's seed is the run above.
    assert_eq!(base.metrics, o.metrics.test);
    let s = &report.summary.variants[1];
    let d = s.metrics["roc_auc"].delta.unwrap();
    assert_eq!(d.n, 20);
    let diffs: Vec<f64> = plan
        .seeds
        .iter()
        .flat_map(|&seed| {
            let folds = |v: &str| {
                report
                    .input
                    .runs
                    .iter()
                    .find(|r| r.variant == v && r.seed == seed)
                    .unwrap()
                    .cross_validation
                    .clone()
                    .unwrap()
                    .folds
            };
            folds(&s.name)
                .into_iter()
                .zip(folds("baseline"))
                .map(|(a, b)| {
                    assert_eq!(a.fold, b.fold);
                    a.metrics["roc_auc"] - b.metrics["roc_auc"]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let ratio = report.input.cross_validation().unwrap().1;
    assert_eq!(d, whet::report::describe_folds(&diffs, ratio));
    let md = std::fs::read_to_string(dir.path().join("ab/report.md")).unwrap();
    assert!(
        md.contains("over seeds × folds") && md.contains("Nadeau"),
        "{md}"
    );
}

#[test]
fn offline_copies_are_cached_by_the_images_not_only_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |shade: u8| {
        let pixels: Vec<u8> = (0..8 * 64)
            .map(|i| (i as u8).wrapping_mul(7) ^ shade)
            .collect();
        let set = whet::image::ImageSet::new(
            8,
            8,
            1,
            pixels,
            vec![0, 1, 0, 1, 0, 1, 0, 1],
            vec!["a".into(), "b".into()],
        )
        .unwrap();
        whet::image::write_png_folders(&set, &d.join("imgs")).unwrap();
    };
    write(0);
    let yaml = r#"name: offline
seed: 1
data:
  images:
    train: { folder: { path: imgs, width: 8, height: 8 } }
    test: { folder: { path: imgs, width: 8, height: 8 } }
augment:
  mode: offline
  copies: 1
  ops:
    - rotate: { degrees: 10 }
model:
  task: classification
  hidden:
    - { dense: 4, activation: relu }
train:
  optimizer: { adam: { lr: 0.01 } }
  batch_size: 4
  epochs: 1
"#;
    let run = RunFile::from_yaml(yaml, d).unwrap();
    let cache = Cache::at(d.join("cache"));
    let train = |p: &whet::Prepared| match &p.data {
        PreparedData::Images(i) => i.train.in_memory().unwrap().clone(),
        _ => panic!("image data"),
    };
    let first = run.prepare(1, &cache, &NoProgress).unwrap();
    assert!(first.cache_hits.is_empty(), "{:?}", first.cache_hits);
    let again = run.prepare(1, &cache, &NoProgress).unwrap();
    assert_eq!(again.cache_hits, ["offline augmentation"]);
    assert_eq!(train(&again), train(&first));
    // The same files, new pixels: the copies are made again from them.
    write(0x55);
    let changed = run.prepare(1, &cache, &NoProgress).unwrap();
    assert!(changed.cache_hits.is_empty(), "{:?}", changed.cache_hits);
    assert_ne!(train(&changed), train(&first));
    let fresh = run.prepare(1, &Cache::off(), &NoProgress).unwrap();
    assert_eq!(train(&changed), train(&fresh));
}

#[test]
fn a_run_split_by_time_prepares_its_tables_once_for_every_seed() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("pipelines/flights-small-delay.yaml");
    let with_split = |split: &str| {
        Run::load(
            &file,
            &[Override::parse(&format!("split={split}")).unwrap()],
        )
        .unwrap()
    };
    let tables = |p: &whet::Prepared| match &p.data {
        PreparedData::Tables(t) => t.clone(),
        _ => panic!("table data"),
    };
    let cache = Cache::at(dir.path().join("cache"));
    let by_time = with_split("{ method: time, order: time_hour, test: 0.2, validation: 0.1 }");
    let first = by_time.prepare(1, &cache, &NoProgress).unwrap();
    assert!(first.cache_hits.is_empty(), "{:?}", first.cache_hits);
    // Seed 2 finds seed 1's entry: the rows of a time split do not depend on the seed. What it
    // gets is what preparing with seed 2 makes, its manifest included (with seed 2).
    let second = by_time.prepare(2, &cache, &NoProgress).unwrap();
    assert_eq!(second.cache_hits, ["tables"]);
    let fresh = by_time.prepare(2, &Cache::off(), &NoProgress).unwrap();
    let (second, fresh) = (tables(&second), tables(&fresh));
    assert_eq!(second.manifest.seed, 2);
    // The whole manifest, the run's resolved target settings (not written to files) included.
    assert_eq!(second.manifest, fresh.manifest);
    assert_eq!(second.indices, fresh.indices);
    for (a, b) in [
        (&second.train, &fresh.train),
        (&second.validation, &fresh.validation),
        (&second.test, &fresh.test),
    ] {
        let (a, b) = (a.in_memory().unwrap(), b.in_memory().unwrap());
        assert_eq!((&a.x, &a.y), (&b.x, &b.y));
    }
    // A random split depends on the seed: an entry per seed.
    let random = with_split("{ method: random, test: 0.2, validation: 0.1 }");
    for (seed, hit) in [(1, false), (2, false), (1, true)] {
        let p = random.prepare(seed, &cache, &NoProgress).unwrap();
        assert_eq!(p.cache_hits.len(), usize::from(hit), "seed {seed}");
        assert_eq!(tables(&p).manifest.seed, seed);
    }
}

/// An ablation's cells share the tables the first ones loaded and, split by time, a variant's
/// prepared data across its seeds: with two cells at once, each table file is read at most
/// twice (once by each of the two first cells), and the numbers are those of cells run alone.
#[test]
fn an_ablation_reads_each_table_once_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("pipelines/flights-small-delay.yaml");
    let overrides = [
        "split={ method: time, order: time_hour, test: 0.2, validation: 0.1 }",
        "train.epochs=1",
        "ablation.seeds=2",
    ]
    .map(|o| Override::parse(o).unwrap());
    let run = Run::load(&file, &overrides).unwrap();
    let plan = Ablation::plan(&run, &PlanOptions::default()).unwrap();
    assert_eq!(plan.cells.len(), 6);
    let cache = Cache::at(dir.path().join("cache"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let out = dir.path().join("ab");
    let report = pool
        .install(|| plan.run(&out, &cache, false, &NoProgress))
        .unwrap();
    assert!(report.missing.is_empty());
    // Two tables (flights and weather), each read by at most the two first cells.
    let reads = cache.tables().reads();
    assert!((2..=4).contains(&reads), "{reads} reads");
    assert_eq!(cache.tables().len(), 2);
    // Every cell as when run alone, with nothing shared.
    for i in [0, 5] {
        let alone = plan
            .run_cell(
                i,
                &dir.path().join("alone"),
                &Cache::off(),
                false,
                &NoProgress,
            )
            .unwrap();
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(plan.cell_dir(&out, i).unwrap().join("record.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&alone.record.metrics).unwrap(),
            record["record"]["metrics"],
            "cell {i}"
        );
    }
}
