//! [`ImageSet`]: n images of the same shape with labels, a seeded stratified split, and the
//! normalisation of pixels to `f32`.

use crate::buf::below;
use crate::error::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `n` images of `h × w × c` `u8` (HWC, contiguous, `c` is 1 or 3), with labels in
/// `0..class_names.len()`.
///
/// The fields are private so that these invariants hold for every value: build one with
/// [`ImageSet::new`] (which checks them), read it through the accessors, and take it apart with
/// [`ImageSet::into_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// Height.
    h: usize,
    /// Width.
    w: usize,
    /// Channels (1 or 3).
    c: usize,
    /// `n * h * w * c` bytes.
    pixels: Vec<u8>,
    /// One label per image, each below `class_names.len()`.
    labels: Vec<u32>,
    /// Class names, indexed by label.
    class_names: Vec<String>,
}

/// Bytes a set of `n` images of `(h, w, c)` takes: the `u8` pixels and the `f32` copy the
/// network reads ([`ImageSet::to_arrays`]), saturating.
pub fn set_bytes(n: usize, (h, w, c): (usize, usize, usize)) -> u64 {
    whet_core::budget::product(&[n as u64, h as u64, w as u64, c as u64, 1 + 4])
}

/// Checks [`set_bytes`] against the memory budget before a set is read or made; `key` names
/// what changes it.
///
/// # Errors
/// [`Error::Budget`] when it does not fit.
pub(crate) fn check_set_memory(
    what: &str,
    n: usize,
    shape: (usize, usize, usize),
    key: &str,
) -> Result<()> {
    whet_core::budget::check(
        format!(
            "{what} ({n} of {}x{}x{} as bytes and as f32)",
            shape.0, shape.1, shape.2
        ),
        set_bytes(n, shape),
        key,
    )?;
    Ok(())
}

impl ImageSet {
    /// Builds a set, checking the shapes.
    ///
    /// # Errors
    /// [`Error::Shape`] when `pixels` is not `labels.len() * h * w * c` long, `c` is not 1 or 3,
    /// or a label is not below `class_names.len()`.
    pub fn new(
        h: usize,
        w: usize,
        c: usize,
        pixels: Vec<u8>,
        labels: Vec<u32>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let shape = |message: String| Error::Shape {
            op: "ImageSet::new",
            message,
        };
        if c != 1 && c != 3 {
            return Err(shape(format!("expected 1 or 3 channels, found {c}")));
        }
        if pixels.len() != labels.len() * h * w * c {
            return Err(shape(format!(
                "{} bytes for {} images of {h}x{w}x{c} (expected {})",
                pixels.len(),
                labels.len(),
                labels.len() * h * w * c
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= class_names.len())
        {
            return Err(shape(format!(
                "label {l} of image {i} is not below the class count {}",
                class_names.len()
            )));
        }
        Ok(Self {
            h,
            w,
            c,
            pixels,
            labels,
            class_names,
        })
    }

    /// Image height in pixels.
    pub fn h(&self) -> usize {
        self.h
    }

    /// Image width in pixels.
    pub fn w(&self) -> usize {
        self.w
    }

    /// Channels per pixel (1 or 3).
    pub fn c(&self) -> usize {
        self.c
    }

    /// The image shape `(h, w, c)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.h, self.w, self.c)
    }

    /// All pixels, `len() * h * w * c` bytes, image after image (HWC each).
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// One label per image, each below `class_names().len()`.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Replaces the class names (for example to give a test set the training set's list).
    ///
    /// # Errors
    /// [`Error::Shape`] when a label is not below `names.len()`; the set is then unchanged.
    pub fn set_class_names(&mut self, names: Vec<String>) -> Result<()> {
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= names.len())
        {
            return Err(Error::Shape {
                op: "ImageSet::set_class_names",
                message: format!(
                    "label {l} of image {i} is not below the new class count {}",
                    names.len()
                ),
            });
        }
        self.class_names = names;
        Ok(())
    }

    /// Takes the set apart into `(h, w, c, pixels, labels, class_names)`, the arguments of
    /// [`ImageSet::new`].
    pub fn into_parts(self) -> (usize, usize, usize, Vec<u8>, Vec<u32>, Vec<String>) {
        (
            self.h,
            self.w,
            self.c,
            self.pixels,
            self.labels,
            self.class_names,
        )
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image (`h * w * c`).
    pub fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// The bytes of image `i`.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order.
    ///
    /// # Panics
    /// When an index is out of range.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            h: self.h,
            w: self.w,
            c: self.c,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }

    /// Number of images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Splits off a stratified, seeded validation part: in each class, `round(fraction · n_c)`
    /// images chosen by a Fisher-Yates shuffle on the stream `[2, 0, class]` go to validation.
    /// Both parts keep the original order.
    ///
    /// # Errors
    /// [`Error::Config`] when `fraction` is not in `[0, 1)`.
    pub fn split_stratified(&self, fraction: f64, seed: u64) -> Result<(ImageSet, ImageSet)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::Config(format!(
                "validation fraction must be in [0, 1), found {fraction}"
            )));
        }
        let is_val = validation_mask(&self.labels, self.class_names.len(), fraction, seed);
        let train: Vec<usize> = (0..self.len()).filter(|&i| !is_val[i]).collect();
        let val: Vec<usize> = (0..self.len()).filter(|&i| is_val[i]).collect();
        Ok((self.select(&train), self.select(&val)))
    }
}

/// Which of the images labelled `labels` (each below `classes`) go to a validation split of
/// `fraction` (in `[0, 1)`): per class, `round(fraction · count)` of its images, drawn with the
/// stream `[2, 0, class]` of `seed`. What [`ImageSet::split_stratified`] and the streaming
/// reader of shards split by, so both give the same split.
pub fn validation_mask(labels: &[u32], classes: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(c) = by_class.get_mut(l as usize) {
            c.push(i);
        }
    }
    let mut is_val = vec![false; labels.len()];
    for (class, idx) in by_class.iter_mut().enumerate() {
        let k = (fraction * idx.len() as f64).round() as usize;
        let mut rng = whet_core::rng::stream(seed, &[2, 0, class as u64]);
        for i in (1..idx.len()).rev() {
            let j = below(&mut rng, i + 1);
            idx.swap(i, j);
        }
        for &i in &idx[..k.min(idx.len())] {
            is_val[i] = true;
        }
    }
    is_val
}

/// Exact per-channel sums of pixel values and of their squares, which a [`Normalizer`] is
/// fitted from. Sums of images can be added in any order and give the same fit, so a streaming
/// reader can gather them shard by shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PixelStats {
    sum: Vec<u64>,
    sq: Vec<u64>,
    pixels: u64,
}

impl PixelStats {
    /// Empty sums for `c` channels.
    pub fn new(c: usize) -> Self {
        PixelStats {
            sum: vec![0; c],
            sq: vec![0; c],
            pixels: 0,
        }
    }

    /// Adds the pixels of HWC images (a multiple of the channel count long).
    pub fn add(&mut self, hwc: &[u8]) {
        let c = self.sum.len();
        for px in hwc.chunks_exact(c) {
            for k in 0..c {
                let v = px[k] as u64;
                self.sum[k] += v;
                self.sq[k] += v * v;
            }
        }
        self.pixels += (hwc.len() / c.max(1)) as u64;
    }

    /// Removes the sums of images that were added before (saturating at zero).
    pub fn subtract(&mut self, other: &PixelStats) {
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a = a.saturating_sub(*b);
        }
        for (a, b) in self.sq.iter_mut().zip(&other.sq) {
            *a = a.saturating_sub(*b);
        }
        self.pixels = self.pixels.saturating_sub(other.pixels);
    }
}

/// How pixels become `f32` inputs (YAML `normalize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NormalizeKind {
    /// `v / 255`, in `[0, 1]`.
    #[default]
    Unit,
    /// `(v / 255 - mean_c) / std_c` with per-channel mean and std fitted on the training split.
    Standardize,
}

/// A fitted normalisation: `x = v · scale_c + offset_c` per channel.
///
/// Invariant: the four vectors have one value per channel (all 1 or all 3 long) and every value
/// is finite. [`Normalizer::unit`], [`Normalizer::fit`] and [`Normalizer::new`] keep it, and
/// deserialising (it is stored in `manifest.json`) checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NormalizerParts")]
pub struct Normalizer {
    /// Per-channel multiplier.
    scale: Vec<f32>,
    /// Per-channel offset.
    offset: Vec<f32>,
    /// Fitted per-channel means on the 0-1 scale (0 for `unit`).
    mean: Vec<f32>,
    /// Fitted per-channel standard deviations on the 0-1 scale (1 for `unit`).
    std: Vec<f32>,
}

/// The serialised form of a [`Normalizer`], checked by `TryFrom` on the way in.
#[derive(Deserialize)]
struct NormalizerParts {
    scale: Vec<f32>,
    offset: Vec<f32>,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl TryFrom<NormalizerParts> for Normalizer {
    type Error = Error;

    fn try_from(p: NormalizerParts) -> Result<Self> {
        Self::new(p.scale, p.offset, p.mean, p.std)
    }
}

impl Normalizer {
    /// A normalisation from its per-channel values: `x = v · scale_c + offset_c`, with `mean`
    /// and `std` (on the 0-1 scale) recorded for the manifest.
    ///
    /// # Errors
    /// [`Error::Shape`] when the four vectors do not all have 1 or all have 3 values, or a value
    /// is not finite.
    pub fn new(scale: Vec<f32>, offset: Vec<f32>, mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        let shape = |message: String| Error::Shape {
            op: "Normalizer::new",
            message,
        };
        let c = scale.len();
        if c != 1 && c != 3 {
            return Err(shape(format!("expected 1 or 3 channels, found {c} scales")));
        }
        for (name, v) in [("offset", &offset), ("mean", &mean), ("std", &std)] {
            if v.len() != c {
                return Err(shape(format!(
                    "{} {name} values for {c} channels (one scale per channel)",
                    v.len()
                )));
            }
        }
        for (name, v) in [
            ("scale", &scale),
            ("offset", &offset),
            ("mean", &mean),
            ("std", &std),
        ] {
            if let Some((k, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(shape(format!("{name} of channel {k} is {x}, not finite")));
            }
        }
        Ok(Self {
            scale,
            offset,
            mean,
            std,
        })
    }

    /// Number of channels (1 or 3).
    pub fn channels(&self) -> usize {
        self.scale.len()
    }

    /// Per-channel multiplier.
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// Per-channel offset.
    pub fn offset(&self) -> &[f32] {
        &self.offset
    }

    /// Fitted per-channel means on the 0-1 scale (0 for `unit`).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Fitted per-channel standard deviations on the 0-1 scale (1 for `unit`).
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// `v / 255` for `c` channels.
    ///
    /// # Panics
    /// When `c` is not 1 or 3.
    pub fn unit(c: usize) -> Self {
        assert!(
            c == 1 || c == 3,
            "Normalizer::unit: expected 1 or 3 channels, found {c}"
        );
        Self {
            scale: vec![1.0 / 255.0; c],
            offset: vec![0.0; c],
            mean: vec![0.0; c],
            std: vec![1.0; c],
        }
    }

    /// Fits `kind` on `train` (only ever the training split). Sums are exact (`u64`), so the
    /// result does not depend on threads.
    pub fn fit(kind: NormalizeKind, train: &ImageSet) -> Self {
        let c = train.c;
        if kind == NormalizeKind::Unit || train.is_empty() {
            return Self::unit(c);
        }
        let mut stats = PixelStats::new(c);
        stats.add(&train.pixels);
        Self::from_stats(kind, &stats)
    }

    /// Fits `kind` from the sums of the training images (as [`Normalizer::fit`]).
    ///
    /// # Panics
    /// When the sums are not for 1 or 3 channels.
    pub fn from_stats(kind: NormalizeKind, stats: &PixelStats) -> Self {
        let c = stats.sum.len();
        if kind == NormalizeKind::Unit || stats.pixels == 0 {
            return Self::unit(c);
        }
        let (sum, sq) = (&stats.sum, &stats.sq);
        let n = stats.pixels as f64;
        let mut out = Self::unit(c);
        for k in 0..c {
            let m = sum[k] as f64 / n;
            let var = (sq[k] as f64 / n - m * m).max(0.0);
            let sd = var.sqrt().max(1e-3 * 255.0);
            out.mean[k] = (m / 255.0) as f32;
            out.std[k] = (sd / 255.0) as f32;
            out.scale[k] = (1.0 / sd) as f32;
            out.offset[k] = (-m / sd) as f32;
        }
        out
    }

    /// Writes `src` (HWC bytes) normalised into `out`.
    ///
    /// # Panics
    /// When the lengths differ or are not a multiple of the channel count.
    pub fn apply(&self, src: &[u8], out: &mut [f32]) {
        assert_eq!(src.len(), out.len(), "Normalizer::apply: lengths differ");
        if self.scale.len() == 1 {
            let (a, b) = (self.scale[0], self.offset[0]);
            for (o, &v) in out.iter_mut().zip(src) {
                *o = v as f32 * a + b;
            }
        } else {
            let c = self.scale.len();
            for (o, s) in out.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
                for k in 0..c {
                    o[k] = s[k] as f32 * self.scale[k] + self.offset[k];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ImageSet {
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let pixels = (0..n * 4).map(|i| (i % 256) as u8).collect();
        ImageSet::new(
            2,
            2,
            1,
            pixels,
            labels,
            vec!["a".into(), "b".into(), "c".into()],
        )
        .unwrap()
    }

    #[test]
    fn split_is_stratified_seeded_and_disjoint() {
        let s = set(300);
        let (tr, va) = s.split_stratified(0.2, 7).unwrap();
        assert_eq!(tr.len() + va.len(), 300);
        assert_eq!(va.class_counts(), vec![20, 20, 20]);
        let (tr2, va2) = s.split_stratified(0.2, 7).unwrap();
        assert_eq!((tr, va.clone()), (tr2, va2));
        let (_, va3) = s.split_stratified(0.2, 8).unwrap();
        assert_ne!(va, va3);
        assert!(s.split_stratified(1.0, 0).is_err());
    }

    #[test]
    fn standardize_gives_zero_mean_unit_std() {
        let s = set(30);
        let n = Normalizer::fit(NormalizeKind::Standardize, &s);
        let mut out = vec![0.0; s.pixels().len()];
        n.apply(s.pixels(), &mut out);
        let m: f32 = out.iter().sum::<f32>() / out.len() as f32;
        let v: f32 = out.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / out.len() as f32;
        assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3, "{m} {v}");
    }

    #[test]
    fn class_names_can_grow_but_not_drop_a_label() {
        let mut s = set(6);
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).into();
        s.set_class_names(names.clone()).unwrap();
        assert_eq!(s.class_names(), names);
        assert!(s.set_class_names(vec!["a".into(), "b".into()]).is_err());
        assert_eq!(
            s.class_names(),
            names,
            "a refused change leaves the set as it was"
        );
    }

    #[test]
    fn into_parts_gives_back_the_arguments_of_new() {
        let s = set(5);
        let (h, w, c, pixels, labels, names) = s.clone().into_parts();
        assert_eq!(s.shape(), (h, w, c));
        assert_eq!(ImageSet::new(h, w, c, pixels, labels, names).unwrap(), s);
    }

    #[test]
    fn normalizer_json_round_trips_and_is_checked() {
        let n = Normalizer::fit(NormalizeKind::Standardize, &set(30));
        let json = serde_json::to_string(&n).unwrap();
        assert!(json.starts_with(r#"{"scale":["#), "{json}");
        assert_eq!(serde_json::from_str::<Normalizer>(&json).unwrap(), n);
        let two = r#"{"scale":[1,1],"offset":[0,0],"mean":[0,0],"std":[1,1]}"#;
        assert!(serde_json::from_str::<Normalizer>(two).is_err());
        let ragged = r#"{"scale":[1],"offset":[0],"mean":[0,0,0],"std":[1]}"#;
        assert!(serde_json::from_str::<Normalizer>(ragged).is_err());
        assert!(Normalizer::new(vec![f32::NAN], vec![0.0], vec![0.0], vec![1.0]).is_err());
        assert!(Normalizer::new(vec![1.0], vec![0.0], vec![0.0], vec![f32::INFINITY]).is_err());
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(ImageSet::new(2, 2, 2, vec![0; 8], vec![0], vec!["a".into()]).is_err());
        assert!(ImageSet::new(2, 2, 1, vec![0; 5], vec![0], vec!["a".into()]).is_err());
        assert!(ImageSet::new(2, 2, 1, vec![0; 4], vec![3], vec!["a".into()]).is_err());
    }
}
