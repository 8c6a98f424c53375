//! `whet export-model`: a run's network as an ONNX graph together with the fitted preprocessing
//! that maps onto ONNX operators, or its weights as safetensors in whet's or PyTorch's layout.
//!
//! The ONNX graph (opset [`whet_train::onnx::OPSET`]) has one input and one output, both with a
//! dynamic batch dimension `N`:
//! - image runs: `pixels`, `uint8 [N, H, W, C]` (the image's bytes, channels last), cast to
//!   float and normalised per channel as whet's normaliser does (`v · scale + offset`, that is
//!   `(v / 255 − mean) / std`), then flattened;
//! - table runs: `features`, `double [N, F]`, one column per feature of the run (metadata
//!   `whet.features`), each holding the value it has before its in-graph steps, missing values
//!   as NaN: numeric imputation (`isnan` + `Where`), clipping (`Max`/`Min`), scaling
//!   (`Sub`/`Mul`) and `log1p` (`Log(1 + x)`) run in the graph in `double`, like whet's
//!   (`whet.in_graph`); the steps that do not map (encodings, text fills, missing indicators,
//!   grouped fills) stay outside and are listed in `whet.outside` and in the report; then the
//!   matrix is cast to float;
//!
//! then the network's layers and output head ([`whet_train::onnx::append_network`]), which reads
//! the raw outputs as the run's [`whet_train::Readout`] does (the network's threshold, the
//! target's scale from the manifest):
//! - binary: `probability` (`float [N, 1]`, the positive class's score) and `label`
//!   (`int64 [N]`: 1 when the score is above the run's threshold, `whet.threshold`);
//! - classification: `probabilities` (`float [N, classes]`, in the order of `whet.classes`) and
//!   `label` (`int64 [N]`, the index of the class in `whet.classes`);
//! - regression: `value` (`double [N, outputs]`, in the target's original units:
//!   `whet.target_scale` records the mean and standard deviation the graph un-scales with).
//!
//! The outputs are listed in the model's metadata (`whet.outputs`) and in the report.

use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestKind};
use crate::prepare::{DataSummary, Preprocessing};
use std::path::{Path, PathBuf};
use whet_tabular::{ColumnOp, GraphPlan};
use whet_train::Mlp;
use whet_train::checkpoint::WeightLayout;
use whet_train::onnx::{AttrValue, DataType, Graph, Model, Tensor, ValueInfo};

/// The file format of [`export_model`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// An ONNX model: the network and the preprocessing that maps onto ONNX.
    Onnx,
    /// The weights as safetensors, in a [`WeightLayout`].
    Safetensors,
}

impl std::str::FromStr for ModelFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "onnx" => Ok(ModelFormat::Onnx),
            "safetensors" => Ok(ModelFormat::Safetensors),
            _ => Err(format!(
                "unknown model format `{s}`: expected `onnx` or `safetensors`"
            )),
        }
    }
}

/// Parses a `--layout` value: `whet` (`[in, out]`) or `torch` (`[out, in]`).
///
/// # Errors
/// A message naming the valid values.
pub fn parse_layout(s: &str) -> std::result::Result<WeightLayout, String> {
    match s {
        "whet" => Ok(WeightLayout::Whet),
        "torch" => Ok(WeightLayout::Torch),
        _ => Err(format!(
            "unknown weight layout `{s}`: expected `whet` ([in, out]) or `torch` ([out, in], nn.Linear)"
        )),
    }
}

/// What [`export_model`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelExportOptions {
    /// The file format.
    pub format: ModelFormat,
    /// The weight layout of a safetensors file (default whet's); an ONNX graph has its own, so
    /// giving one with [`ModelFormat::Onnx`] is an error.
    pub layout: Option<WeightLayout>,
}

/// What [`export_model`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelExportReport {
    /// The file written.
    pub out: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// The graph's input (`pixels uint8 [N, 28, 28, 1]`), or the tensors of a safetensors file.
    pub input: String,
    /// The graph's outputs, main output first (`probability float [N, 1]: …`, `label int64
    /// [N]: …`); empty for safetensors.
    pub outputs: Vec<String>,
    /// Preprocessing steps computed in the graph.
    pub in_graph: Vec<String>,
    /// Preprocessing steps to run before the graph (they do not map onto ONNX operators).
    pub outside: Vec<String>,
}

/// Writes the network of the run in `run_dir` (its `manifest.json` and `model.safetensors`) to
/// `out`, atomically. `out` may not be one of the run's files (checked first).
///
/// # Errors
/// An `out` that overlaps an input, a folder that is not a finished run (no manifest, an
/// export's manifest, no model), a model and a manifest that do not belong together, or a write
/// error.
pub fn export_model(
    run_dir: &Path,
    out: &Path,
    options: &ModelExportOptions,
) -> Result<ModelExportReport> {
    use whet_core::outputs::{self, Input, OutputKind};
    if options.format == ModelFormat::Onnx && options.layout.is_some() {
        return Err(Error::Invalid(
            "--layout applies to --format safetensors only (an ONNX graph stores its weights for its own operators)".into(),
        ));
    }
    let layout = options.layout.unwrap_or_default();
    let manifest_path = run_dir.join("manifest.json");
    let model_path = run_dir.join("model.safetensors");
    outputs::check(
        out,
        OutputKind::File,
        &[
            Input::new("the run's manifest", &manifest_path),
            Input::new("the run's model", &model_path),
        ],
    )?;
    if !manifest_path.is_file() {
        return Err(Error::Invalid(format!(
            "`{}` is not a run folder: it has no manifest.json (give the folder `whet run --out` wrote)",
            run_dir.display()
        )));
    }
    let manifest = Manifest::load(&manifest_path)?;
    manifest.refuse_folds(&manifest_path)?;
    if manifest.kind != ManifestKind::Run {
        return Err(Error::Invalid(format!(
            "`{}` is an export's manifest, which has no model: give the folder `whet run` wrote",
            manifest_path.display()
        )));
    }
    if !model_path.is_file() {
        return Err(Error::Invalid(format!(
            "`{}` has no model.safetensors (the run did not finish, or diverged before a model was kept)",
            run_dir.display()
        )));
    }
    let net = whet_train::checkpoint::load(&model_path)?;
    check_matches(&manifest, &manifest_path, &net, &model_path)?;
    match options.format {
        ModelFormat::Safetensors => {
            whet_train::checkpoint::save_with_layout(&net, out, layout)?;
            let shape = match layout {
                WeightLayout::Whet => "[in, out]",
                WeightLayout::Torch => "[out, in]",
            };
            Ok(ModelExportReport {
                out: out.to_path_buf(),
                format: ModelFormat::Safetensors,
                input: format!(
                    "layers.0..{}.weight {shape}, layers.*.bias [out]",
                    net.layers().len() - 1
                ),
                outputs: vec![],
                in_graph: vec![],
                outside: vec![],
            })
        }
        ModelFormat::Onnx => {
            let (model, report) = onnx_model(&manifest, &net, out)?;
            whet_core::fsx::atomic_write(out, &model.encode())?;
            Ok(report)
        }
    }
}

/// The run's manifest and model must describe the same network and data.
fn check_matches(manifest: &Manifest, mpath: &Path, net: &Mlp, npath: &Path) -> Result<()> {
    let mismatch = |what: String| {
        Error::Invalid(format!(
            "`{}` and `{}` do not belong together ({what}); they come from different runs: run again into a fresh folder",
            mpath.display(),
            npath.display()
        ))
    };
    let arch = net.architecture();
    match &manifest.architecture {
        None => return Err(mismatch("the manifest records no network".into())),
        Some(a) if *a != arch => {
            return Err(mismatch(format!(
                "the manifest's network has {} inputs and layers {:?}, the model's {} inputs and layers {:?}",
                a.input_dim,
                a.layers.iter().map(|l| l.outputs).collect::<Vec<_>>(),
                arch.input_dim,
                arch.layers.iter().map(|l| l.outputs).collect::<Vec<_>>()
            )));
        }
        Some(_) => {}
    }
    let inputs = match &manifest.data {
        DataSummary::Images { shape, .. } => shape.iter().product(),
        DataSummary::Tables { features, .. } => features.len(),
    };
    if inputs != net.input_dim() {
        return Err(mismatch(format!(
            "the data have {inputs} inputs, the model takes {}",
            net.input_dim()
        )));
    }
    if let Preprocessing::Tables(t) = &manifest.preprocessing
        && t.target_scale.is_some()
        && net.task() != whet_train::Task::Regression
    {
        return Err(mismatch(format!(
            "the manifest scales a regression target, the model is a {} network",
            task_name(net.task())
        )));
    }
    let classes = classes(manifest);
    if net.task() == whet_train::Task::Classification && classes.len() != net.output_dim() {
        return Err(mismatch(format!(
            "the data have {} classes, the model has {} outputs",
            classes.len(),
            net.output_dim()
        )));
    }
    Ok(())
}

fn task_name(task: whet_train::Task) -> &'static str {
    match task {
        whet_train::Task::Binary => "binary",
        whet_train::Task::Classification => "classification",
        whet_train::Task::Regression => "regression",
    }
}

/// The target's scale of a run (regression tables trained on standardised values).
fn target_scale(manifest: &Manifest) -> Option<whet_core::TargetScale> {
    match &manifest.preprocessing {
        Preprocessing::Tables(t) => t.target_scale,
        Preprocessing::Images { .. } => None,
    }
}

/// What each of the graph's outputs holds, in words (for the report and `whet.outputs`).
fn describe_outputs(
    outputs: &[whet_train::onnx::ValueInfo],
    readout: &whet_train::Readout,
    classes: &[String],
) -> Vec<String> {
    use whet_train::onnx::{DataType, Dim};
    outputs
        .iter()
        .map(|v| {
            let ty = match v.data_type {
                DataType::Float => "float",
                DataType::Double => "double",
                DataType::Int64 => "int64",
                DataType::Uint8 => "uint8",
                DataType::Bool => "bool",
            };
            let dims: Vec<String> = v
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => n.to_string(),
                    Dim::Named(s) => s.clone(),
                })
                .collect();
            let what = match (readout.task(), v.name == whet_train::onnx::LABEL_OUTPUT) {
                (whet_train::Task::Binary, false) => {
                    "the positive class's probability (sigmoid)".to_string()
                }
                (whet_train::Task::Binary, true) => format!(
                    "1 when the probability is above the run's threshold {}, else 0 (classes {})",
                    readout.decision().threshold().unwrap_or(0.5),
                    classes.join(", ")
                ),
                (whet_train::Task::Classification, false) => {
                    "the softmax probability of each class, in the order of whet.classes".into()
                }
                (whet_train::Task::Classification, true) => {
                    "the index in whet.classes of the most probable class".into()
                }
                (whet_train::Task::Regression, _) => match readout.target_scale() {
                    Some(s) => format!(
                        "the prediction in the target's units (network output · {} + {})",
                        s.std, s.mean
                    ),
                    None => "the prediction in the target's units".into(),
                },
            };
            format!("{} {ty} [{}]: {what}", v.name, dims.join(", "))
        })
        .collect()
}

fn classes(manifest: &Manifest) -> Vec<String> {
    match (&manifest.data, &manifest.preprocessing) {
        (DataSummary::Images { classes, .. }, _) => classes.clone(),
        (_, Preprocessing::Tables(t)) => t.classes.clone(),
        _ => vec![],
    }
}

/// The ONNX model of a run: preprocessing, network, output head, metadata.
fn onnx_model(manifest: &Manifest, net: &Mlp, out: &Path) -> Result<(Model, ModelExportReport)> {
    let mut g = Graph::new(manifest.run.name.clone());
    let mut metadata: Vec<(String, String)> = vec![
        ("whet.run".into(), manifest.run.name.clone()),
        ("whet.variant".into(), manifest.variant.clone()),
        ("whet.seed".into(), manifest.seed.to_string()),
        ("whet.task".into(), task_name(net.task()).to_string()),
        (
            "whet.classes".into(),
            serde_json::to_string(&classes(manifest)).expect("strings serialise"),
        ),
    ];
    let (x, input, in_graph, outside) = match (&manifest.preprocessing, &manifest.data) {
        (Preprocessing::Images { normalizer, .. }, DataSummary::Images { shape, .. }) => {
            let [h, w, c] = *shape;
            if normalizer.channels() != c {
                return Err(Error::Invalid(format!(
                    "the manifest's normaliser has {} channels, its images {c}",
                    normalizer.channels()
                )));
            }
            g.inputs
                .push(ValueInfo::batch("pixels", DataType::Uint8, &[h, w, c]));
            let f = g.op(
                "Cast",
                &["pixels"],
                vec![("to", AttrValue::Int(DataType::Float.code()))],
            );
            let scale = g.constant("scale", Tensor::f32(&[c], normalizer.scale()));
            let offset = g.constant("offset", Tensor::f32(&[c], normalizer.offset()));
            let m = g.op("Mul", &[&f, &scale], vec![]);
            let a = g.op("Add", &[&m, &offset], vec![]);
            let to = g.constant("shape", Tensor::i64(&[2], &[-1, (h * w * c) as i64]));
            let x = g.op("Reshape", &[&a, &to], vec![]);
            (
                x,
                format!("pixels uint8 [N, {h}, {w}, {c}]"),
                vec![format!(
                    "normalise: v · scale + offset per channel (scale {:?}, offset {:?})",
                    normalizer.scale(),
                    normalizer.offset()
                )],
                vec![],
            )
        }
        (Preprocessing::Tables(t), _) => {
            let plan = whet_tabular::graph_plan(t);
            metadata.push((
                "whet.features".into(),
                serde_json::to_string(&plan.features).expect("strings serialise"),
            ));
            let x = append_table_steps(&mut g, &plan);
            let in_graph: Vec<String> = plan
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "fitted step {} {}: {}",
                        s.step,
                        s.name,
                        s.columns.join(", ")
                    )
                })
                .collect();
            (
                x,
                format!(
                    "features double [N, {}] (columns: metadata whet.features)",
                    plan.features.len()
                ),
                in_graph,
                plan.outside.clone(),
            )
        }
        (Preprocessing::Images { .. }, DataSummary::Tables { .. }) => {
            return Err(Error::Invalid(
                "the manifest has image preprocessing but table data".into(),
            ));
        }
    };
    // The graph reads the network as the run did: its decision (threshold), the target's scale.
    let readout = whet_train::Readout::of(net).with_target_scale(target_scale(manifest));
    let values = whet_train::onnx::append_network(&mut g, net, &readout, &x);
    let outputs = describe_outputs(&values, &readout, &classes(manifest));
    metadata.push(("whet.input".into(), input.clone()));
    metadata.push((
        "whet.outputs".into(),
        serde_json::to_string(&outputs).expect("strings serialise"),
    ));
    if let Some(t) = readout.decision().threshold() {
        metadata.push(("whet.threshold".into(), t.to_string()));
    }
    if let Some(s) = readout.target_scale() {
        metadata.push((
            "whet.target_scale".into(),
            serde_json::to_string(&s).expect("numbers serialise"),
        ));
    }
    metadata.push(("whet.in_graph".into(), in_graph.join("; ")));
    metadata.push(("whet.outside".into(), outside.join("; ")));
    let model = Model {
        graph: g,
        producer_name: "whet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc: format!(
            "whet run `{}` (seed {}): input {input}; outputs {}",
            manifest.run.name,
            manifest.seed,
            outputs.join("; ")
        ),
        metadata,
    };
    let report = ModelExportReport {
        out: out.to_path_buf(),
        format: ModelFormat::Onnx,
        input,
        outputs,
        in_graph,
        outside,
    };
    Ok((model, report))
}

/// `isnan(x)` as `Not(Equal(x, x))` (a NaN is the one value not equal to itself): the same
/// booleans as `IsNaN`, which some runtimes (tract) type as the input's float type.
fn is_nan(g: &mut Graph, x: &str) -> String {
    let same = g.op("Equal", &[x, x], vec![]);
    g.op("Not", &[&same], vec![])
}

/// Adds the `features` input and the plan's column operations (in `double`, as whet computes
/// them), then the cast to float; returns the float matrix's name.
fn append_table_steps(g: &mut Graph, plan: &GraphPlan) -> String {
    let d = plan.features.len();
    g.inputs
        .push(ValueInfo::batch("features", DataType::Double, &[d]));
    let mut x = "features".to_string();
    for step in &plan.steps {
        x = match &step.op {
            ColumnOp::Fill { mask, values } => {
                let mask = g.constant("fill_mask", Tensor::bool(&[d], mask));
                let values = g.constant("fill_values", Tensor::f64(&[d], values));
                let nan = is_nan(g, &x);
                let pick = g.op("And", &[&nan, &mask], vec![]);
                g.op("Where", &[&pick, &values, &x], vec![])
            }
            ColumnOp::Clip { lo, hi } => {
                let lo = g.constant("clip_low", Tensor::f64(&[d], lo));
                let hi = g.constant("clip_high", Tensor::f64(&[d], hi));
                let up = g.op("Max", &[&x, &lo], vec![]);
                let clipped = g.op("Min", &[&up, &hi], vec![]);
                // NaN stays NaN (missing values are filled later, or refused), as in whet.
                let nan = is_nan(g, &x);
                g.op("Where", &[&nan, &x, &clipped], vec![])
            }
            ColumnOp::Affine { center, inv_scale } => {
                let c = g.constant("center", Tensor::f64(&[d], center));
                let s = g.constant("inv_scale", Tensor::f64(&[d], inv_scale));
                let shifted = g.op("Sub", &[&x, &c], vec![]);
                g.op("Mul", &[&shifted, &s], vec![])
            }
            ColumnOp::Log1p { mask } => {
                let mask = g.constant("log1p_mask", Tensor::bool(&[d], mask));
                let one = g.constant("one", Tensor::f64(&[], &[1.0]));
                let p = g.op("Add", &[&x, &one], vec![]);
                let l = g.op("Log", &[&p], vec![]);
                g.op("Where", &[&mask, &l, &x], vec![])
            }
        };
    }
    g.op(
        "Cast",
        &[&x],
        vec![("to", AttrValue::Int(DataType::Float.code()))],
    )
}
