//! A table pipeline built in Rust: three nycflights13 tables joined, missing values imputed
//! (with indicators), carriers one-hot encoded, z-scored, split by time, and exported as the
//! data sets a run trains on, with the fitted preprocessing in `manifest.json`.
//!
//! Run from the repository root: `cargo run -p whet --example tables` (writes
//! `runs/flights-export/`).

use whet::prelude::*;

fn main() -> whet::Result<()> {
    let table = |name: &str| {
        let path = format!("datasets/nycflights13/{name}.csv.gz");
        (name.to_string(), TableSpec::new(path))
    };
    let mut flights = table("flights");
    flights.1.limit = Some(50_000);
    let model = ModelConfig::binary().with_hidden([HiddenConfig::dense(32)]);
    let fit = TrainConfig::new(OptimizerConfig::adam(0.001)).with_epochs(2);
    let target = TargetConfig::binary("arr_delay", 15.0);
    let after_the_fact = [
        "arr_time",
        "sched_arr_time",
        "dep_delay",
        "dep_time",
        "air_time",
    ];
    let run = RunFile::tables(
        "flights-export",
        [flights, table("weather"), table("planes")],
        target,
        model,
        fit,
    )
    .with_main("flights")
    .with_step(StepConfig::Join(JoinConfig::left(
        "weather",
        ["origin", "time_hour"],
    )))
    .with_step(StepConfig::Join(
        JoinConfig::left("planes", ["tailnum"]).with_suffix("_plane"),
    ))
    .with_step(StepConfig::Exclude(
        after_the_fact.map(String::from).to_vec(),
    ))
    .with_step(StepConfig::Impute(
        ImputeConfig::default().with_indicator(true),
    ))
    .with_step(StepConfig::Encode(EncodeConfig::one_hot([
        "carrier", "origin",
    ])))
    .with_step(StepConfig::Normalize(NormalizeConfig::new(
        NormMethod::Zscore,
    )))
    .with_split(SplitConfig::time("time_hour", 0.2).with_validation(0.1))
    .into_run(".")?;
    let options = ExportOptions {
        format: Some(ExportFormat::Parquet),
        ..ExportOptions::default()
    };
    let report = run.export("runs/flights-export", &options, &Cache::off(), &NoProgress)?;
    let [train, validation, test] = report.rows;
    println!(
        "{train} train / {validation} validation / {test} test rows, {} features",
        report.features
    );
    for f in &report.files {
        println!(
            "  {} ({} bytes, sha256 {})",
            f.name,
            f.bytes,
            &f.sha256[..12]
        );
    }
    Ok(())
}
