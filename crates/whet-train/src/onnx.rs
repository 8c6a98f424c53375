//! ONNX export: a small hand-written protobuf encoder for the part of `onnx.proto` a feed-forward
//! network needs, and the graph of an [`Mlp`].
//!
//! The file is a `ModelProto` (IR version [`IR_VERSION`], default-domain opset [`OPSET`]) whose
//! graph holds the weights as initializers. Field numbers follow the public `onnx.proto`
//! (`ModelProto`: 1 `ir_version`, 2 `producer_name`, 3 `producer_version`, 6 `doc_string`,
//! 7 `graph`, 8 `opset_import`, 14 `metadata_props`; `GraphProto`: 1 `node`, 2 `name`,
//! 5 `initializer`, 11 `input`, 12 `output`; `NodeProto`: 1 `input`, 2 `output`, 3 `name`,
//! 4 `op_type`, 5 `attribute`; `AttributeProto`: 1 `name`, 2 `f`, 3 `i`, 8 `ints`, 20 `type`;
//! `TensorProto`: 1 `dims`, 2 `data_type`, 8 `name`, 9 `raw_data`; `ValueInfoProto`: 1 `name`,
//! 2 `type`; `TypeProto`: 1 `tensor_type` with 1 `elem_type` and 2 `shape`; a shape's
//! dimensions have 1 `dim_value` or 2 `dim_param`).
//!
//! [`Graph`] builds a graph node by node (each node's output gets a fresh name);
//! [`append_network`] adds an [`Mlp`]'s layers and its output head (what a [`Readout`] gives:
//! probabilities or values in the target's units, and labels) to a graph; whet composes it with
//! the preprocessing it can express in ONNX.

use crate::activation::{Activation, LEAKY_SLOPE};
use crate::config::Task;
use crate::conv::SpatialKind;
use crate::mlp::Mlp;
use crate::readout::Readout;

/// The ONNX IR version written (7: the one that goes with opset 13).
pub const IR_VERSION: i64 = 7;
/// The default-domain operator set the graphs use.
pub const OPSET: i64 = 13;

/// An ONNX tensor element type (`TensorProto.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 32-bit float (`FLOAT` = 1).
    Float,
    /// Unsigned byte (`UINT8` = 2).
    Uint8,
    /// 64-bit integer (`INT64` = 7).
    Int64,
    /// Boolean, one byte per element (`BOOL` = 9).
    Bool,
    /// 64-bit float (`DOUBLE` = 11).
    Double,
}

impl DataType {
    /// The `TensorProto.DataType` number.
    pub fn code(self) -> i64 {
        match self {
            DataType::Float => 1,
            DataType::Uint8 => 2,
            DataType::Int64 => 7,
            DataType::Bool => 9,
            DataType::Double => 11,
        }
    }
}

/// A constant tensor (an initializer), stored little-endian in `raw_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub data_type: DataType,
    /// Shape.
    pub dims: Vec<i64>,
    /// Little-endian element bytes, row-major.
    pub raw: Vec<u8>,
}

impl Tensor {
    /// A float tensor.
    ///
    /// # Panics
    /// If `values` does not have the product of `dims` elements.
    pub fn f32(dims: &[usize], values: &[f32]) -> Tensor {
        Self::from_bytes(DataType::Float, dims, values.len(), |b| {
            for v in values {
                b.extend_from_slice(&v.to_le_bytes());
            }
        })
    }

    /// A double tensor.
    ///
    /// # Panics
    /// If `values` does not have the product of `dims` elements.
    pub fn f64(dims: &[usize], values: &[f64]) -> Tensor {
        Self::from_bytes(DataType::Double, dims, values.len(), |b| {
            for v in values {
                b.extend_from_slice(&v.to_le_bytes());
            }
        })
    }

    /// An int64 tensor.
    ///
    /// # Panics
    /// If `values` does not have the product of `dims` elements.
    pub fn i64(dims: &[usize], values: &[i64]) -> Tensor {
        Self::from_bytes(DataType::Int64, dims, values.len(), |b| {
            for v in values {
                b.extend_from_slice(&v.to_le_bytes());
            }
        })
    }

    /// A boolean tensor.
    ///
    /// # Panics
    /// If `values` does not have the product of `dims` elements.
    pub fn bool(dims: &[usize], values: &[bool]) -> Tensor {
        Self::from_bytes(DataType::Bool, dims, values.len(), |b| {
            b.extend(values.iter().map(|&v| u8::from(v)));
        })
    }

    fn from_bytes(
        data_type: DataType,
        dims: &[usize],
        n: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Tensor {
        assert_eq!(dims.iter().product::<usize>(), n, "tensor element count");
        let mut raw = Vec::with_capacity(n * 8);
        fill(&mut raw);
        Tensor {
            data_type,
            dims: dims.iter().map(|&d| d as i64).collect(),
            raw,
        }
    }
}

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `FLOAT` (type 1).
    Float(f32),
    /// `INT` (type 2).
    Int(i64),
    /// `INTS` (type 7).
    Ints(Vec<i64>),
}

/// One dimension of a graph input's or output's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named, dynamic size (the batch: `N`).
    Named(String),
}

/// A graph input or output: a name, an element type and a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// Element type.
    pub data_type: DataType,
    /// Shape.
    pub shape: Vec<Dim>,
}

impl ValueInfo {
    /// A `[N, width]` value with a dynamic batch dimension `N`.
    pub fn batch(name: impl Into<String>, data_type: DataType, width: &[usize]) -> ValueInfo {
        let mut shape = vec![Dim::Named("N".into())];
        shape.extend(width.iter().map(|&w| Dim::Fixed(w)));
        ValueInfo {
            name: name.into(),
            data_type,
            shape,
        }
    }
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The operator (`Gemm`, `Relu`, …), default domain.
    pub op_type: String,
    /// Input value names.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes, by name.
    pub attributes: Vec<(String, AttrValue)>,
}

/// An ONNX graph under construction: nodes in topological order, named initializers, inputs and
/// outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    /// Nodes, in topological order.
    pub nodes: Vec<Node>,
    /// Named constants.
    pub initializers: Vec<(String, Tensor)>,
    /// Graph inputs.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
    counter: usize,
}

impl Graph {
    /// An empty graph called `name`.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds the constant `tensor` under a fresh name starting with `hint` and returns the name.
    pub fn constant(&mut self, hint: &str, tensor: Tensor) -> String {
        let name = self.fresh(hint);
        self.initializers.push((name.clone(), tensor));
        name
    }

    /// Adds a one-output node `op_type(inputs…)` and returns its output's (fresh) name.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<(&str, AttrValue)>,
    ) -> String {
        let out = self.fresh(&op_type.to_lowercase());
        self.op_named(op_type, inputs, attributes, &out);
        out
    }

    /// Adds a one-output node whose output is called `output` (a graph output's name).
    pub fn op_named(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<(&str, AttrValue)>,
        output: &str,
    ) {
        self.nodes.push(Node {
            op_type: op_type.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        });
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }
}

/// A whole ONNX model: the graph plus the producer and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The graph.
    pub graph: Graph,
    /// `producer_name` (`whet`).
    pub producer_name: String,
    /// `producer_version`.
    pub producer_version: String,
    /// `doc_string`: what the model computes, in words.
    pub doc: String,
    /// `metadata_props`, in order.
    pub metadata: Vec<(String, String)>,
}

impl Model {
    /// The model as `onnx.proto` `ModelProto` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, IR_VERSION as u64);
        put_bytes(&mut m, 2, self.producer_name.as_bytes());
        put_bytes(&mut m, 3, self.producer_version.as_bytes());
        put_bytes(&mut m, 6, self.doc.as_bytes());
        put_bytes(&mut m, 7, &encode_graph(&self.graph));
        let mut opset = Vec::new();
        put_bytes(&mut opset, 1, b"");
        put_varint_field(&mut opset, 2, OPSET as u64);
        put_bytes(&mut m, 8, &opset);
        for (k, v) in &self.metadata {
            let mut e = Vec::new();
            put_bytes(&mut e, 1, k.as_bytes());
            put_bytes(&mut e, 2, v.as_bytes());
            put_bytes(&mut m, 14, &e);
        }
        m
    }
}

fn encode_graph(g: &Graph) -> Vec<u8> {
    let mut out = Vec::new();
    for n in &g.nodes {
        let mut b = Vec::new();
        for i in &n.inputs {
            put_bytes(&mut b, 1, i.as_bytes());
        }
        for o in &n.outputs {
            put_bytes(&mut b, 2, o.as_bytes());
        }
        put_bytes(&mut b, 4, n.op_type.as_bytes());
        for (name, v) in &n.attributes {
            let mut a = Vec::new();
            put_bytes(&mut a, 1, name.as_bytes());
            match v {
                AttrValue::Float(f) => {
                    put_key(&mut a, 2, 5);
                    a.extend_from_slice(&f.to_le_bytes());
                    put_varint_field(&mut a, 20, 1);
                }
                AttrValue::Int(i) => {
                    put_varint_field(&mut a, 3, *i as u64);
                    put_varint_field(&mut a, 20, 2);
                }
                AttrValue::Ints(is) => {
                    for i in is {
                        put_varint_field(&mut a, 8, *i as u64);
                    }
                    put_varint_field(&mut a, 20, 7);
                }
            }
            put_bytes(&mut b, 5, &a);
        }
        put_bytes(&mut out, 1, &b);
    }
    put_bytes(&mut out, 2, g.name.as_bytes());
    for (name, t) in &g.initializers {
        let mut b = Vec::new();
        for d in &t.dims {
            put_varint_field(&mut b, 1, *d as u64);
        }
        put_varint_field(&mut b, 2, t.data_type.code() as u64);
        put_bytes(&mut b, 8, name.as_bytes());
        put_bytes(&mut b, 9, &t.raw);
        put_bytes(&mut out, 5, &b);
    }
    for (field, values) in [(11, &g.inputs), (12, &g.outputs)] {
        for v in values {
            put_bytes(&mut out, field, &encode_value_info(v));
        }
    }
    out
}

fn encode_value_info(v: &ValueInfo) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in &v.shape {
        let mut dim = Vec::new();
        match d {
            Dim::Fixed(n) => put_varint_field(&mut dim, 1, *n as u64),
            Dim::Named(s) => put_bytes(&mut dim, 2, s.as_bytes()),
        }
        put_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    put_varint_field(&mut tensor, 1, v.data_type.code() as u64);
    put_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    put_bytes(&mut ty, 1, &tensor);
    let mut b = Vec::new();
    put_bytes(&mut b, 1, v.name.as_bytes());
    put_bytes(&mut b, 2, &ty);
    b
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A field key: `(field << 3) | wire type` (0 varint, 2 length-delimited, 5 fixed 32-bit).
fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The name of the network's main output for `task`: `probability` (binary: the positive
/// class's sigmoid score, `float [N, 1]`), `probabilities` (classification: the softmax,
/// `float [N, classes]`) or `value` (regression: in the target's original units,
/// `double [N, outputs]`).
pub fn output_name(task: Task) -> &'static str {
    match task {
        Task::Binary => "probability",
        Task::Classification => "probabilities",
        Task::Regression => "value",
    }
}

/// The name of the label output (binary and classification tasks): `label`, `int64 [N]`, the
/// class index [`Readout::label`] gives.
pub const LABEL_OUTPUT: &str = "label";

/// Adds `activation(x)` to `g` and returns its output (`x` itself for the identity).
///
/// Every [`Activation`] maps exactly: `Relu`, `LeakyRelu` (`alpha` = [`LEAKY_SLOPE`]),
/// `Sigmoid`, `Tanh`, `Softmax` (`axis` -1, the last: rows) are single operators; `Step` is
/// `Cast(Greater(x, 0), FLOAT)` (1 for `x > 0`, else 0, as whet's).
pub fn append_activation(g: &mut Graph, activation: Activation, x: &str) -> String {
    match activation {
        Activation::Identity => x.to_string(),
        Activation::Relu => g.op("Relu", &[x], vec![]),
        Activation::LeakyRelu => g.op(
            "LeakyRelu",
            &[x],
            vec![("alpha", AttrValue::Float(LEAKY_SLOPE))],
        ),
        Activation::Sigmoid => g.op("Sigmoid", &[x], vec![]),
        Activation::Tanh => g.op("Tanh", &[x], vec![]),
        Activation::Softmax => g.op("Softmax", &[x], vec![("axis", AttrValue::Int(-1))]),
        Activation::Step => {
            let zero = g.constant("zero", Tensor::f32(&[], &[0.0]));
            let gt = g.op("Greater", &[x, &zero], vec![]);
            g.op(
                "Cast",
                &[&gt],
                vec![("to", AttrValue::Int(DataType::Float.code()))],
            )
        }
    }
}

/// Adds `net` (evaluation mode: no noise, no dropout) to `g`, reading the float `[N, inputs]`
/// value `x`, and declares its outputs as graph outputs. Each layer is a `Gemm` (`x · W + b`,
/// `W` stored `[inputs, outputs]` as whet keeps it) followed by its activation; the output
/// layer's raw outputs then go through the head, which computes what `readout` does
/// ([`Readout`], the one place raw outputs become predictions):
/// - binary: `probability` (`Sigmoid`, `float [N, 1]`) and `label` (`int64 [N]`: 1 when the
///   logit is above the decision's threshold as a logit, [`crate::Decision::logit_cut`], else 0);
/// - classification: `probabilities` (`Softmax` over the last axis, `float [N, classes]`) and
///   `label` (`ArgMax` of the logits, the first on ties, `int64 [N]`);
/// - regression: `value` (`double [N, outputs]`: the output cast to `double`, then, for a
///   network trained on a standardised target, `· std + mean` in `double` as
///   [`whet_core::TargetScale::invert`] computes it).
///
/// Returns the outputs, main output first.
///
/// # Panics
/// When `readout` is for another task than `net` (build it with [`Readout::of`]).
pub fn append_network(g: &mut Graph, net: &Mlp, readout: &Readout, x: &str) -> Vec<ValueInfo> {
    assert_eq!(
        readout.task(),
        net.task(),
        "the readout is for the network's task"
    );
    let mut cur = append_spatial(g, net, x);
    let last = net.layers().len() - 1;
    for (i, layer) in net.layers().iter().enumerate() {
        let w = g.constant(
            &format!("layers.{i}.weight"),
            Tensor::f32(
                &[layer.inputs(), layer.outputs()],
                layer.weight().as_slice().expect("standard layout weights"),
            ),
        );
        let b = g.constant(
            &format!("layers.{i}.bias"),
            Tensor::f32(
                &[layer.outputs()],
                layer.bias().as_slice().expect("contiguous bias"),
            ),
        );
        let z = g.op("Gemm", &[&cur, &w, &b], vec![]);
        cur = if i == last {
            z
        } else {
            append_activation(g, layer.activation(), &z)
        };
    }
    append_head(g, net, readout, &cur)
}

/// The image layers of `net` on the float `[N, h·w·c]` value `x` (channels last), returning the
/// `[N, out_h·out_w·filters]` value the first dense layer reads (`x` itself without image
/// layers). ONNX convolutions and pools work on `NCHW`, so the rows are reshaped to
/// `[N, h, w, c]` and transposed to `[N, c, h, w]`, and back at the end. A convolution is a
/// `Conv` (its weights reordered from `[k·k·c_in, filters]` to `[filters, c_in, k, k]`, explicit
/// `pads` `[top, left, bottom, right]`) followed by its activation; pools are `MaxPool` and
/// `AveragePool` without padding; a batch normalisation is `BatchNormalization` with its running
/// statistics (evaluation mode) followed by its activation.
fn append_spatial(g: &mut Graph, net: &Mlp, x: &str) -> String {
    let (Some([h, w, c]), false) = (net.input_shape(), net.spatial().is_empty()) else {
        return x.to_string();
    };
    let shape = g.constant(
        "image_shape",
        Tensor::i64(&[4], &[-1, h as i64, w as i64, c as i64]),
    );
    let nhwc = g.op("Reshape", &[x, &shape], vec![]);
    let mut cur = g.op(
        "Transpose",
        &[&nhwc],
        vec![("perm", AttrValue::Ints(vec![0, 3, 1, 2]))],
    );
    let (mut convs, mut norms) = (0, 0);
    for layer in net.spatial() {
        let geo = layer.geometry();
        let k = geo.kernel as i64;
        let window = vec![
            ("kernel_shape", AttrValue::Ints(vec![k, k])),
            ("strides", AttrValue::Ints(vec![geo.stride as i64; 2])),
        ];
        cur = match layer.kind() {
            SpatialKind::Conv => {
                let (cin, f, kk) = (geo.input[2], geo.output[2], geo.kernel);
                let src = layer.weight();
                let mut wt = vec![0.0f32; f * cin * kk * kk];
                for fi in 0..f {
                    for ci in 0..cin {
                        for ky in 0..kk {
                            for kx in 0..kk {
                                wt[((fi * cin + ci) * kk + ky) * kk + kx] =
                                    src[[(ky * kk + kx) * cin + ci, fi]];
                            }
                        }
                    }
                }
                let wn = g.constant(
                    &format!("conv.{convs}.weight"),
                    Tensor::f32(&[f, cin, kk, kk], &wt),
                );
                let bn = g.constant(
                    &format!("conv.{convs}.bias"),
                    Tensor::f32(&[f], layer.bias().as_slice().expect("contiguous bias")),
                );
                convs += 1;
                let mut attrs = window;
                attrs.push(("pads", AttrValue::Ints(geo.pad.map(|p| p as i64).to_vec())));
                let z = g.op("Conv", &[&cur, &wn, &bn], attrs);
                append_activation(g, layer.activation(), &z)
            }
            SpatialKind::BatchNorm => {
                let c = geo.output[2];
                let [_, eps] = layer.norm().expect("a batch normalisation");
                let (mean, var) = layer.running();
                let scale = g.constant(
                    &format!("batch_norm.{norms}.weight"),
                    Tensor::f32(&[c], layer.weight().as_slice().expect("contiguous")),
                );
                let shift = g.constant(
                    &format!("batch_norm.{norms}.bias"),
                    Tensor::f32(&[c], layer.bias().as_slice().expect("contiguous")),
                );
                let mean = g.constant(
                    &format!("batch_norm.{norms}.running_mean"),
                    Tensor::f32(&[c], mean.as_slice().expect("contiguous")),
                );
                let var = g.constant(
                    &format!("batch_norm.{norms}.running_var"),
                    Tensor::f32(&[c], var.as_slice().expect("contiguous")),
                );
                norms += 1;
                let z = g.op(
                    "BatchNormalization",
                    &[&cur, &scale, &shift, &mean, &var],
                    vec![("epsilon", AttrValue::Float(eps))],
                );
                append_activation(g, layer.activation(), &z)
            }
            SpatialKind::MaxPool => g.op("MaxPool", &[&cur], window),
            SpatialKind::AvgPool => g.op("AveragePool", &[&cur], window),
        };
    }
    let back = g.op(
        "Transpose",
        &[&cur],
        vec![("perm", AttrValue::Ints(vec![0, 2, 3, 1]))],
    );
    let out_len = net.spatial().last().map_or(0, |s| s.geometry().out_len());
    let flat = g.constant("flat_shape", Tensor::i64(&[2], &[-1, out_len as i64]));
    g.op("Reshape", &[&back, &flat], vec![])
}

/// The output head: the raw outputs `z` (`float [N, outputs]`) to the graph's outputs, as
/// `readout` reads them. The one place the graph's outputs are built.
fn append_head(g: &mut Graph, net: &Mlp, readout: &Readout, z: &str) -> Vec<ValueInfo> {
    let name = output_name(net.task());
    let width = net.output_dim();
    let flat = |g: &mut Graph, v: &str| {
        let shape = g.constant("label_shape", Tensor::i64(&[1], &[-1]));
        g.op_named("Reshape", &[v, &shape], vec![], LABEL_OUTPUT);
    };
    let label = ValueInfo::batch(LABEL_OUTPUT, DataType::Int64, &[]);
    let outputs = match net.task() {
        Task::Binary => {
            g.op_named("Sigmoid", &[z], vec![], name);
            let cut = readout
                .decision()
                .logit_cut()
                .expect("a binary decision has a cut");
            let cut = g.constant("logit_cut", Tensor::f32(&[], &[cut]));
            let above = g.op("Greater", &[z, &cut], vec![]);
            let as_int = g.op(
                "Cast",
                &[&above],
                vec![("to", AttrValue::Int(DataType::Int64.code()))],
            );
            flat(g, &as_int);
            vec![ValueInfo::batch(name, DataType::Float, &[width]), label]
        }
        Task::Classification => {
            g.op_named("Softmax", &[z], vec![("axis", AttrValue::Int(-1))], name);
            // ONNX's ArgMax takes the first index on ties (select_last_index = 0), as whet's.
            let arg = g.op(
                "ArgMax",
                &[z],
                vec![
                    ("axis", AttrValue::Int(-1)),
                    ("keepdims", AttrValue::Int(0)),
                ],
            );
            g.op_named("Identity", &[&arg], vec![], LABEL_OUTPUT);
            vec![ValueInfo::batch(name, DataType::Float, &[width]), label]
        }
        Task::Regression => {
            let wide = g.op(
                "Cast",
                &[z],
                vec![("to", AttrValue::Int(DataType::Double.code()))],
            );
            match readout.target_scale() {
                Some(s) => {
                    let std = g.constant("target_std", Tensor::f64(&[], &[s.std]));
                    let mean = g.constant("target_mean", Tensor::f64(&[], &[s.mean]));
                    let m = g.op("Mul", &[&wide, &std], vec![]);
                    g.op_named("Add", &[&m, &mean], vec![], name);
                }
                None => g.op_named("Identity", &[&wide], vec![], name),
            }
            vec![ValueInfo::batch(name, DataType::Double, &[width])]
        }
    };
    g.outputs.extend(outputs.iter().cloned());
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader: the fields of one message as (number, wire type, payload).
    pub(crate) fn fields(mut b: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
            let payload = match wire {
                0 => varint(&mut b).to_le_bytes().to_vec(),
                2 => {
                    let n = varint(&mut b) as usize;
                    let p = b[..n].to_vec();
                    b = &b[n..];
                    p
                }
                5 => {
                    let p = b[..4].to_vec();
                    b = &b[4..];
                    p
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((field, wire, payload));
        }
        out
    }

    fn get(fields: &[(u32, u8, Vec<u8>)], n: u32) -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|f| f.0 == n)
            .map(|f| f.2.clone())
            .collect()
    }

    fn int(p: &[u8]) -> u64 {
        u64::from_le_bytes(p.try_into().unwrap())
    }

    fn text(p: &[u8]) -> String {
        String::from_utf8(p.to_vec()).unwrap()
    }

    #[test]
    fn varints_match_the_protobuf_encoding() {
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        b.clear();
        // A negative int64 is ten bytes (two's complement).
        put_varint(&mut b, -1i64 as u64);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn decoding_what_was_written_gives_the_model_back() {
        let mut g = Graph::new("g");
        g.inputs.push(ValueInfo::batch("x", DataType::Float, &[2]));
        let w = g.constant("w", Tensor::f32(&[2, 1], &[1.5, -2.0]));
        let y = g.op("MatMul", &["x", w.as_str()], vec![]);
        let s = g.op("Softmax", &[&y], vec![("axis", AttrValue::Int(-1))]);
        g.op_named(
            "LeakyRelu",
            &[&s],
            vec![("alpha", AttrValue::Float(0.01))],
            "out",
        );
        g.outputs
            .push(ValueInfo::batch("out", DataType::Float, &[1]));
        let model = Model {
            graph: g,
            producer_name: "whet".into(),
            producer_version: "9.9".into(),
            doc: "doc".into(),
            metadata: vec![("k".into(), "v".into())],
        };
        let m = fields(&model.encode());
        assert_eq!(int(&get(&m, 1)[0]), IR_VERSION as u64);
        assert_eq!(text(&get(&m, 2)[0]), "whet");
        assert_eq!(text(&get(&m, 3)[0]), "9.9");
        let opset = fields(&get(&m, 8)[0]);
        assert_eq!(int(&get(&opset, 2)[0]), OPSET as u64);
        let meta = fields(&get(&m, 14)[0]);
        assert_eq!(
            (text(&get(&meta, 1)[0]), text(&get(&meta, 2)[0])),
            ("k".into(), "v".into())
        );

        let graph = fields(&get(&m, 7)[0]);
        assert_eq!(text(&get(&graph, 2)[0]), "g");
        let nodes: Vec<_> = get(&graph, 1).iter().map(|n| fields(n)).collect();
        let ops: Vec<String> = nodes.iter().map(|n| text(&get(n, 4)[0])).collect();
        assert_eq!(ops, ["MatMul", "Softmax", "LeakyRelu"]);
        let inputs: Vec<String> = get(&nodes[0], 1).iter().map(|p| text(p)).collect();
        assert_eq!(inputs, ["x", w.as_str()]);
        assert_eq!(text(&get(&nodes[2], 2)[0]), "out");
        // Attributes: Softmax axis = -1 (INT), LeakyRelu alpha = 0.01 (FLOAT).
        let axis = fields(&get(&nodes[1], 5)[0]);
        assert_eq!(text(&get(&axis, 1)[0]), "axis");
        assert_eq!(int(&get(&axis, 3)[0]) as i64, -1);
        assert_eq!(int(&get(&axis, 20)[0]), 2);
        let alpha = fields(&get(&nodes[2], 5)[0]);
        assert_eq!(
            f32::from_le_bytes(get(&alpha, 2)[0].clone().try_into().unwrap()),
            0.01
        );
        assert_eq!(int(&get(&alpha, 20)[0]), 1);

        let init = fields(&get(&graph, 5)[0]);
        let dims: Vec<u64> = get(&init, 1).iter().map(|p| int(p)).collect();
        assert_eq!(dims, [2, 1]);
        assert_eq!(int(&get(&init, 2)[0]), 1);
        assert_eq!(text(&get(&init, 8)[0]), w);
        let raw = &get(&init, 9)[0];
        let vals: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(vals, [1.5, -2.0]);

        // The input's type: tensor(FLOAT) of shape [N, 2].
        let input = fields(&get(&graph, 11)[0]);
        assert_eq!(text(&get(&input, 1)[0]), "x");
        let tensor = fields(&get(&fields(&get(&input, 2)[0]), 1)[0]);
        assert_eq!(int(&get(&tensor, 1)[0]), 1);
        let dims: Vec<Vec<(u32, u8, Vec<u8>)>> = get(&fields(&get(&tensor, 2)[0]), 1)
            .iter()
            .map(|d| fields(d))
            .collect();
        assert_eq!(text(&get(&dims[0], 2)[0]), "N");
        assert_eq!(int(&get(&dims[1], 1)[0]), 2);
        assert_eq!(text(&get(&fields(&get(&graph, 12)[0]), 1)[0]), "out");
    }
}
