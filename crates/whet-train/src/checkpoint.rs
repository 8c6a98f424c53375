//! Checkpoints in the safetensors format, and transfer learning from them.
//!
//! Layout (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length,
//! a JSON header (padded with spaces to a multiple of 8 bytes) mapping each tensor name to
//! `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}` plus `__metadata__` (string
//! values only), then the raw little-endian data. Tensors are `layers.{i}.weight` with shape
//! `[inputs, outputs]` (the forward pass is `x @ W + b`) and `layers.{i}.bias`. The metadata key
//! `whet_architecture` holds the [`Architecture`] as a JSON string. A network with convolutions
//! also has `conv.{j}.weight` `[k·k·c_in, filters]` (row `(ky·k + kx)·c_in + ci`, for the
//! channels-last im2col of [`crate::conv`]) and `conv.{j}.bias` `[filters]` for its `j`-th
//! convolution, and `batch_norm.{j}.weight` (`γ`), `.bias` (`β`), `.running_mean` and
//! `.running_var`, each `[channels]`, for its `j`-th batch normalisation (pools have no
//! tensors; the architecture's `spatial` list gives every image layer's kind and shapes).
//!
//! Python: `safetensors.numpy.load_file("model.safetensors")` returns the arrays.
//!
//! [`save_with_layout`] with [`WeightLayout::Torch`] writes the same tensors with every weight
//! transposed to `[outputs, inputs]` (the metadata key `weight_layout` says `torch`): that is
//! the state dict of a PyTorch `nn.ModuleList` named `layers` of `nn.Linear` modules
//! (`layers.{i}.weight` `[out, in]`, `layers.{i}.bias` `[out]`), which
//! `module.load_state_dict(safetensors.torch.load_file(path))` takes without
//! transposing. [`load`] reads both layouts.

use crate::config::{ModelConfig, TransferConfig};
use crate::conv::SpatialKind;
use crate::error::{Error, Result};
use crate::mlp::{Architecture, Dense, Mlp};
use ndarray::{Array1, Array2};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::Path;
use whet_core::fsx;

const ARCH_KEY: &str = "whet_architecture";
const LAYOUT_KEY: &str = "weight_layout";

/// The metadata value of `weight_layout` in whet's layout.
const WHET_LAYOUT: &str = "[inputs, outputs]; y = x @ W + b";
/// The metadata value of `weight_layout` in PyTorch's layout.
const TORCH_LAYOUT: &str = "torch: [outputs, inputs]; y = x @ W.T + b";

/// How the weight matrices are stored in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// whet's own: `layers.{i}.weight` is `[inputs, outputs]` (`y = x · W + b`).
    #[default]
    Whet,
    /// PyTorch `nn.Linear`'s: `layers.{i}.weight` is `[outputs, inputs]` (`y = x · Wᵀ + b`).
    Torch,
}

/// Writes `model` to `path` atomically as safetensors (whet's layout).
///
/// # Errors
/// [`Error::Write`] on I/O failure.
pub fn save(model: &Mlp, path: &Path) -> Result<()> {
    save_with_layout(model, path, WeightLayout::Whet)
}

/// Writes `model` to `path` atomically as safetensors with its weights in `layout`.
///
/// # Errors
/// [`Error::Write`] on I/O failure.
///
/// [`Error::Config`] for [`WeightLayout::Torch`] with a network that has convolutions (the
/// PyTorch layout is the state dict of a stack of `nn.Linear` layers).
pub fn save_with_layout(model: &Mlp, path: &Path, layout: WeightLayout) -> Result<()> {
    if layout == WeightLayout::Torch && !model.spatial.is_empty() {
        return Err(Error::Config(
            "the PyTorch weight layout holds dense (nn.Linear) layers only, and this network has \
             convolutions or pools; save it in whet's layout"
                .into(),
        ));
    }
    let mut header = Map::new();
    let mut offset = 0usize;
    let transposed: Vec<Array2<f32>> = match layout {
        WeightLayout::Whet => vec![],
        WeightLayout::Torch => model
            .layers
            .iter()
            .map(|l| l.weight.t().as_standard_layout().into_owned())
            .collect(),
    };
    let mut tensors: Vec<&[f32]> = Vec::new();
    // (name, values, shape), in file order: the convolutions, then the dense layers.
    let mut entries: Vec<(String, &[f32], Vec<usize>)> = Vec::new();
    let (mut convs, mut norms) = (0, 0);
    for c in model.spatial.iter().filter(|s| s.has_weights()) {
        let w = c.weight.as_slice().expect("standard layout weights");
        let b = c.bias.as_slice().expect("contiguous bias");
        if c.kind() == SpatialKind::BatchNorm {
            let j = norms;
            norms += 1;
            let [mean, var] = &c.running;
            let mean = mean.as_slice().expect("contiguous");
            let var = var.as_slice().expect("contiguous");
            entries.push((format!("batch_norm.{j}.weight"), w, vec![w.len()]));
            entries.push((format!("batch_norm.{j}.bias"), b, vec![b.len()]));
            entries.push((
                format!("batch_norm.{j}.running_mean"),
                mean,
                vec![mean.len()],
            ));
            entries.push((format!("batch_norm.{j}.running_var"), var, vec![var.len()]));
        } else {
            let j = convs;
            convs += 1;
            entries.push((
                format!("conv.{j}.weight"),
                w,
                vec![c.weight.nrows(), c.weight.ncols()],
            ));
            entries.push((format!("conv.{j}.bias"), b, vec![b.len()]));
        }
    }
    for (i, l) in model.layers.iter().enumerate() {
        let (w, shape) = match layout {
            WeightLayout::Whet => (
                l.weight.as_slice().expect("standard layout weights"),
                vec![l.inputs(), l.outputs()],
            ),
            WeightLayout::Torch => (
                transposed[i].as_slice().expect("standard layout weights"),
                vec![l.outputs(), l.inputs()],
            ),
        };
        let b = l.bias.as_slice().expect("contiguous bias");
        entries.push((format!("layers.{i}.weight"), w, shape));
        entries.push((format!("layers.{i}.bias"), b, vec![l.outputs()]));
    }
    // Each tensor's header entry, its data following the previous one's.
    for (name, data, shape) in entries {
        let end = offset + 4 * data.len();
        header.insert(
            name,
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
        tensors.push(data);
    }
    let arch = serde_json::to_string(&model.architecture()).expect("architecture serialises");
    let layout_text = match layout {
        WeightLayout::Whet => WHET_LAYOUT,
        WeightLayout::Torch => TORCH_LAYOUT,
    };
    header.insert(
        "__metadata__".into(),
        json!({ ARCH_KEY: arch, "format": "whet-mlp/1", LAYOUT_KEY: layout_text }),
    );
    let mut hbytes = serde_json::to_vec(&Value::Object(header)).expect("header serialises");
    while !hbytes.len().is_multiple_of(8) {
        hbytes.push(b' ');
    }
    fsx::atomic_write_with(path, |w| {
        let io = fsx::io_err(path);
        let mut go = || -> std::io::Result<()> {
            w.write_all(&(hbytes.len() as u64).to_le_bytes())?;
            w.write_all(&hbytes)?;
            let mut buf = Vec::with_capacity(1 << 16);
            for t in &tensors {
                for chunk in t.chunks(1 << 14) {
                    buf.clear();
                    for v in chunk {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    w.write_all(&buf)?;
                }
            }
            Ok(())
        };
        go().map_err(io)
    })?;
    Ok(())
}

/// The largest checkpoint read, in bytes: 4 GiB (a billion parameters).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;

/// Reads a checkpoint written by [`save`] (a regular file or a pipe of at most
/// [`MAX_CHECKPOINT_BYTES`]).
///
/// # Errors
/// [`Error::Input`] when the file cannot be read (or is a device, a folder, too large);
/// [`Error::Checkpoint`] when it is not a valid
/// whet safetensors file (the message says what is wrong).
pub fn load(path: &Path) -> Result<Mlp> {
    let bytes = whet_core::input::read_capped(path, "checkpoints", MAX_CHECKPOINT_BYTES)?;
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "file has {} bytes, too short for a safetensors header",
            bytes.len()
        )));
    }
    let hlen = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if hlen > bytes.len() - 8 {
        return Err(bad(format!(
            "header length {hlen} exceeds the file's remaining {} bytes",
            bytes.len() - 8
        )));
    }
    let header: Value = serde_json::from_slice(&bytes[8..8 + hlen])
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let data = &bytes[8 + hlen..];
    let arch_str = header
        .get("__metadata__")
        .and_then(|m| m.get(ARCH_KEY))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(format!(
                "no `__metadata__.{ARCH_KEY}` entry: not a whet checkpoint"
            ))
        })?;
    let arch: Architecture = serde_json::from_str(arch_str)
        .map_err(|e| bad(format!("`{ARCH_KEY}` is not a valid architecture: {e}")))?;
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = header
            .get(name)
            .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
        if t.get("dtype").and_then(Value::as_str) != Some("F32") {
            return Err(bad(format!(
                "tensor `{name}`: expected dtype F32, found {}",
                t["dtype"]
            )));
        }
        let got: Option<Vec<usize>> = t
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        if got.as_deref() != Some(shape) {
            return Err(bad(format!(
                "tensor `{name}`: expected shape {shape:?}, found {}",
                t["shape"]
            )));
        }
        let offs: Option<[usize; 2]> = t
            .get("data_offsets")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let n: usize = shape.iter().product();
        match offs {
            Some([b, e]) if e >= b && e <= data.len() && e - b == 4 * n => {
                let v: Vec<f32> = data[b..e]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                // A NaN or infinite weight would make the first batch diverge, and the run
                // would be reported as "diverged, lower the learning rate".
                match v.iter().position(|x| !x.is_finite()) {
                    None => Ok(v),
                    Some(i) => Err(bad(format!(
                        "tensor `{name}` holds {} non-finite values (the first, {}, at index {i}): the checkpoint is damaged or was saved from a run that diverged; retrain it (delete it, or the pretrain output folder, and run again)",
                        v.iter().filter(|x| !x.is_finite()).count(),
                        v[i]
                    ))),
                }
            }
            _ => Err(bad(format!(
                "tensor `{name}`: data_offsets {} do not fit {n} f32 values in a {}-byte buffer",
                t["data_offsets"],
                data.len()
            ))),
        }
    };
    let torch = header
        .get("__metadata__")
        .and_then(|m| m.get(LAYOUT_KEY))
        .and_then(Value::as_str)
        == Some(TORCH_LAYOUT);
    let mut spatial = Vec::new();
    let (mut convs, mut norms) = (0, 0);
    let none = || [Array1::zeros(0), Array1::zeros(0)];
    for spec in &arch.spatial {
        let g = spec.geometry;
        let c = g.output[2];
        match spec.kind {
            SpatialKind::Conv => {
                let rows = g.patch();
                let w = tensor(&format!("conv.{convs}.weight"), &[rows, c])?;
                let b = tensor(&format!("conv.{convs}.bias"), &[c])?;
                convs += 1;
                spatial.push((
                    Array2::from_shape_vec((rows, c), w).expect("shape checked"),
                    Array1::from_vec(b),
                    none(),
                ));
            }
            SpatialKind::BatchNorm => {
                let t = |part: &str| tensor(&format!("batch_norm.{norms}.{part}"), &[c]);
                let (w, b) = (t("weight")?, t("bias")?);
                let running = [
                    Array1::from_vec(t("running_mean")?),
                    Array1::from_vec(t("running_var")?),
                ];
                norms += 1;
                spatial.push((
                    Array2::from_shape_vec((1, c), w).expect("shape checked"),
                    Array1::from_vec(b),
                    running,
                ));
            }
            _ => spatial.push((Array2::zeros((0, 0)), Array1::zeros(0), none())),
        }
    }
    let mut weights = Vec::new();
    for (i, spec) in arch.layers.iter().enumerate() {
        let name = format!("layers.{i}.weight");
        let w = if torch {
            let w = tensor(&name, &[spec.outputs, spec.inputs])?;
            Array2::from_shape_vec((spec.outputs, spec.inputs), w)
                .expect("shape checked")
                .reversed_axes()
                .as_standard_layout()
                .into_owned()
        } else {
            let w = tensor(&name, &[spec.inputs, spec.outputs])?;
            Array2::from_shape_vec((spec.inputs, spec.outputs), w).expect("shape checked")
        };
        let b = tensor(&format!("layers.{i}.bias"), &[spec.outputs])?;
        weights.push((w, Array1::from_vec(b)));
    }
    Mlp::from_parts(&arch, spatial, weights).map_err(|e| bad(e.to_string()))
}

/// Transfer learning: loads `transfer.checkpoint`, optionally replaces its output layer by a
/// fresh one with `output_dim` outputs for `model`'s task (initialised from `seed`), and freezes
/// the layers in `transfer.freeze`.
///
/// The hidden layers come from the checkpoint. When `model.hidden` (or `model.layers`) is not
/// empty it must match them (units and activations; the image layers' kinds and shapes); its
/// noise and dropout settings then replace the checkpoint's. A network with image layers needs
/// images of the shape it was trained on (`shape`).
///
/// # Errors
/// Checkpoint errors; [`Error::Config`] when the input size, hidden layers, task or output size
/// do not fit, or the freeze list is out of range or freezes everything.
pub fn transfer(
    model: &ModelConfig,
    transfer: &TransferConfig,
    shape: Option<[usize; 3]>,
    input_dim: usize,
    output_dim: usize,
    seed: u64,
) -> Result<Mlp> {
    let mut net = load(&transfer.checkpoint)?;
    let path = transfer.checkpoint.display();
    if net.input_dim() != input_dim {
        return Err(Error::Config(format!(
            "transfer: checkpoint `{path}` expects {} inputs, the data has {input_dim}",
            net.input_dim()
        )));
    }
    if !net.spatial.is_empty() && net.input_shape() != shape {
        return Err(Error::Config(format!(
            "transfer: checkpoint `{path}` has convolutions or pools for images of {:?} \
             (height, width, channels), the data is {}",
            net.input_shape().unwrap_or_default(),
            shape.map_or("flat features".to_string(), |s| format!("images of {s:?}"))
        )));
    }
    if model.has_image_layers() {
        let wanted = shape
            .and_then(|s| crate::conv::geometries(model, s).ok())
            .unwrap_or_default();
        let kinds = model.layers.iter().filter(|l| l.is_image_layer());
        let same = wanted.len() == net.spatial.len()
            && kinds
                .zip(&net.spatial)
                .zip(&wanted)
                .all(|((l, s), g)| s.geo == *g && l.key() == crate::config::ser(&s.kind).as_str());
        if !same {
            return Err(Error::Config(format!(
                "transfer: the image layers of model.layers differ from checkpoint `{path}`'s \
                 ({}); list the same ones, or leave them out to take them from the checkpoint",
                net.spatial
                    .iter()
                    .map(|s| format!("{} {:?}", crate::config::ser(&s.kind), s.geo.output))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let image_layers = model.layers.iter().filter(|l| l.is_image_layer());
        for (l, s) in image_layers.zip(&mut net.spatial) {
            let (noise, dropout) = match l {
                crate::config::LayerConfig::Conv(c) => (c.noise, c.dropout),
                crate::config::LayerConfig::BatchNorm(b) => (b.noise, b.dropout),
                crate::config::LayerConfig::MaxPool(p) | crate::config::LayerConfig::AvgPool(p) => {
                    (p.noise, p.dropout)
                }
                _ => continue,
            };
            s.noise = noise.get() as f32;
            s.dropout = dropout.get() as f32;
        }
    }
    let hidden = net.layers.len() - 1;
    let dense = model.dense_layers();
    let key = if model.layers.is_empty() {
        "model.hidden"
    } else {
        "model.layers"
    };
    if !dense.is_empty() {
        if dense.len() != hidden {
            return Err(Error::Config(format!(
                "transfer: {key} lists {} dense layers, checkpoint `{path}` has {hidden} hidden \
                 layers (leave {key} empty to take them from the checkpoint)",
                dense.len()
            )));
        }
        for (i, (h, l)) in dense.iter().zip(&mut net.layers).enumerate() {
            if h.dense != l.outputs() || h.activation != l.activation {
                return Err(Error::Config(format!(
                    "transfer: {key}'s dense layer {i} is {} units with `{}`, the checkpoint's \
                     dense layer {i} is {} units with `{}`",
                    h.dense,
                    crate::config::ser(&h.activation),
                    l.outputs(),
                    crate::config::ser(&l.activation)
                )));
            }
            l.noise = h.noise.get() as f32;
            l.dropout = h.dropout.get() as f32;
        }
    }
    let (act, loss) = model.output_pair().map_err(Error::Config)?;
    crate::mlp::check_dims(model.task, input_dim, output_dim)?;
    if transfer.replace_output {
        let inputs = net.layers[hidden].inputs();
        let index = net.weighted_layers() - 1;
        net.layers[hidden] = Dense::new(inputs, output_dim, act, model.init, seed, index);
        net.task = model.task;
        net.loss = loss;
    } else if net.output_dim() != output_dim || net.task != model.task {
        return Err(Error::Config(format!(
            "transfer: the checkpoint's output layer has {} outputs for task `{}`, the data needs \
             {output_dim} for task `{}`; set transfer.replace_output: true",
            net.output_dim(),
            crate::config::ser(&net.task),
            crate::config::ser(&model.task)
        )));
    }
    // The new run's `model.threshold` decides its labels, not the checkpoint's.
    net.threshold = None;
    if let Some(crate::decision::ThresholdConfig::Fixed(t)) = model.threshold {
        net.set_threshold(t)?;
    }
    net.freeze(&transfer.freeze)?;
    Ok(net)
}
