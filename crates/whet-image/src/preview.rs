//! A labelled preview grid: one row per chosen image, the original in the first column and
//! augmented versions to the right, scaled up (nearest neighbour) so small images are visible,
//! with the class names and the op list drawn in DejaVu Sans (embedded; licence in
//! `assets/DejaVuSans-LICENSE.txt`).

use crate::augment::Augmenter;
use crate::error::{Error, Result};
use crate::folder::encode_png;
use crate::set::ImageSet;
use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::draw_text_mut;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Smallest cell side in pixels; images are scaled up by an integer factor to reach it.
pub const MIN_CELL: usize = 96;
const GAP: usize = 4;
const LABEL_W: usize = 90;
const HEADER_H: usize = 22;
const TITLE_LINE_H: usize = 18;
const TITLE_CHARS: usize = 70;

/// Picks up to `rows` image indices cycling through the classes.
fn pick_rows(set: &ImageSet, rows: usize) -> Vec<usize> {
    let k = set.class_names().len().max(1);
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in set.labels().iter().enumerate() {
        if per_class[l as usize].len() < rows {
            per_class[l as usize].push(i);
        }
    }
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < rows && per_class.iter().any(|v| v.len() > round) {
        for v in &per_class {
            if out.len() < rows
                && let Some(&i) = v.get(round)
            {
                out.push(i);
            }
        }
        round += 1;
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("non-empty");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// Draws the preview grid of `set` through `aug` into an RGB image: `rows` images (one per class
/// in turn, first occurrences), each followed by `versions` augmented versions (version `j` uses
/// epoch `j - 1`, so the grid shows what the first epochs of online training see).
///
/// # Errors
/// [`Error::Shape`] when the set does not match the augmenter or is empty.
pub fn render_preview(
    set: &ImageSet,
    aug: &Augmenter,
    rows: usize,
    versions: usize,
) -> Result<RgbImage> {
    if set.shape() != aug.input_shape() || set.is_empty() {
        return Err(Error::Shape {
            op: "preview",
            message: format!(
                "{} images of {}x{}x{} for an augmenter built for {:?}",
                set.len(),
                set.h(),
                set.w(),
                set.c(),
                aug.input_shape()
            ),
        });
    }
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let (oh, ow, _) = aug.output_shape();
    let side = set.h().max(set.w()).max(oh).max(ow);
    let zoom = MIN_CELL.div_ceil(side).max(1);
    let cell = side * zoom;
    let rows = pick_rows(set, rows);
    let ops = if aug.op_labels().is_empty() {
        "ops: (none)".to_string()
    } else {
        format!("ops: {}", aug.op_labels().join(", "))
    };
    let title = wrap(&ops, TITLE_CHARS);
    let top = title.len() * TITLE_LINE_H + HEADER_H;
    let cols = 1 + versions;
    let width = LABEL_W + cols * (cell + GAP) + GAP;
    let height = top + rows.len() * (cell + GAP) + GAP;
    let mut canvas = RgbImage::from_pixel(width as u32, height as u32, Rgb([255, 255, 255]));
    let black = Rgb([0, 0, 0]);
    for (k, line) in title.iter().enumerate() {
        draw_text_mut(
            &mut canvas,
            black,
            6,
            (2 + k * TITLE_LINE_H) as i32,
            PxScale::from(15.0),
            &font,
            line,
        );
    }
    for col in 0..cols {
        let text = if col == 0 {
            "original".to_string()
        } else {
            format!("aug {col}")
        };
        let x = LABEL_W + GAP + col * (cell + GAP);
        draw_text_mut(
            &mut canvas,
            black,
            x as i32,
            (top - HEADER_H + 3) as i32,
            PxScale::from(14.0),
            &font,
            &text,
        );
    }
    let put =
        |canvas: &mut RgbImage, x0: usize, y0: usize, data: &[u8], h: usize, w: usize, c: usize| {
            for y in 0..h * zoom {
                for x in 0..w * zoom {
                    let i = ((y / zoom) * w + x / zoom) * c;
                    let px = if c == 1 {
                        Rgb([data[i]; 3])
                    } else {
                        Rgb([data[i], data[i + 1], data[i + 2]])
                    };
                    canvas.put_pixel((x0 + x) as u32, (y0 + y) as u32, px);
                }
            }
        };
    let mut scratch = crate::augment::Scratch::default();
    for (r, &i) in rows.iter().enumerate() {
        let y0 = top + GAP + r * (cell + GAP);
        let label = format!("{} (#{i})", set.class_names()[set.labels()[i] as usize]);
        draw_text_mut(
            &mut canvas,
            black,
            6,
            (y0 + cell / 2 - 8) as i32,
            PxScale::from(14.0),
            &font,
            &label,
        );
        put(
            &mut canvas,
            LABEL_W + GAP,
            y0,
            set.image(i),
            set.h(),
            set.w(),
            set.c(),
        );
        for v in 1..cols {
            let x0 = LABEL_W + GAP + v * (cell + GAP);
            let out = aug.apply(set.image(i), v as u64 - 1, i as u64, &mut scratch);
            put(&mut canvas, x0, y0, out, oh, ow, set.c());
        }
    }
    Ok(canvas)
}

/// Renders the preview (see [`render_preview`]) and writes it as a PNG, atomically.
///
/// # Errors
/// As [`render_preview`], plus [`Error::Encode`] / [`Error::Write`].
pub fn write_preview(
    set: &ImageSet,
    aug: &Augmenter,
    rows: usize,
    versions: usize,
    out: &Path,
) -> Result<()> {
    let img = render_preview(set, aug, rows, versions)?;
    encode_png(
        out,
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_splits_long_lines() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, vec!["aaa bbb", "ccc ddd"]);
    }

    #[test]
    fn rows_cycle_through_classes() {
        let set = ImageSet::new(
            1,
            1,
            1,
            vec![0; 6],
            vec![0, 0, 0, 1, 1, 2],
            vec!["a".into(), "b".into(), "c".into()],
        )
        .unwrap();
        assert_eq!(pick_rows(&set, 5), vec![0, 3, 5, 1, 4]);
    }
}
