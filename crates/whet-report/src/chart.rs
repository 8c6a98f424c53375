//! Charts, drawn once with plotters and written twice: PNG (through the bitmap backend and the
//! `image` encoder) and SVG (text kept as SVG text).
//!
//! The font is DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`, Bitstream Vera
//! licence in `assets/DejaVuSans-LICENSE.txt`) and registered with plotters' `ab_glyph` font
//! table under the family name [`FONT_FAMILY`], so PNGs render the same on any machine; SVGs name
//! that family and fall back to the viewer's sans-serif.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::full_palette::{GREEN_600, GREY_200, GREY_500, RED_600};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::error::{Error, Result};
use crate::stats::Verdict;

/// Font family named in the charts (and in the SVG `font-family` attributes).
pub const FONT_FAMILY: &str = "DejaVu Sans, sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the embedded font once per process.
///
/// It is registered under [`FONT_FAMILY`] and also under plain `sans-serif`, the family plotters
/// uses for any text style we would forget to set, so no text can fail to find its font.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // `InvalidFont` carries no information (a private unit field), so there is no source to keep.
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok()
            && register_font("sans-serif", FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok { Ok(()) } else { Err(Error::Font) }
}

pub(crate) fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT_FAMILY, size).into_font())
}

pub(crate) type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A name as shown in a chart (legend, row label, title): at most 40 characters, `…` when cut.
pub(crate) fn chart_label(name: &str) -> String {
    let mut s: String = name.chars().take(40).collect();
    if name.chars().count() > 40 {
        s.push('…');
    }
    s
}

/// Something that can draw itself on any plotters backend.
pub(crate) trait Chart {
    /// Pixel size of the image.
    fn size(&self) -> (u32, u32);
    /// Draws on a white area of [`Chart::size`].
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

fn chart_err<E>(file: &Path) -> impl FnOnce(DrawingAreaErrorKind<E>) -> Error + '_
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| Error::Chart {
        file: file.to_path_buf(),
        source: Box::new(e),
    }
}

/// Draws `chart` into `dir/STEM.png` and `dir/STEM.svg`, atomically. Returns both paths.
pub(crate) fn write_chart(chart: &impl Chart, dir: &Path, stem: &str) -> Result<[PathBuf; 2]> {
    ensure_font()?;
    let (w, h) = chart.size();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));

    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(&png))?;
        chart.draw(&root).map_err(chart_err(&png))?;
        root.present().map_err(chart_err(&png))?;
    }
    let mut bytes = Vec::with_capacity(rgb.len() / 8);
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|source| Error::Png {
            file: png.clone(),
            source,
        })?;
    whet_core::fsx::atomic_write(&png, &bytes)?;

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(&svg))?;
        chart.draw(&root).map_err(chart_err(&svg))?;
        root.present().map_err(chart_err(&svg))?;
    }
    whet_core::fsx::atomic_write(&svg, text.as_bytes())?;
    Ok([png, svg])
}

/// Decimals for axis ticks spanning `span` display units.
pub(crate) fn tick_decimals(span: f64) -> usize {
    match span {
        s if s < 0.05 => 4,
        s if s < 0.5 => 3,
        s if s < 5.0 => 2,
        s if s < 50.0 => 1,
        _ => 0,
    }
}

/// Widest rendering of `labels` in `style`, in pixels.
fn max_text_width<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: impl IntoIterator<Item = impl AsRef<str>>,
    style: &TextStyle,
) -> std::result::Result<u32, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut w = 0;
    for l in labels {
        w = w.max(root.estimate_text_size(l.as_ref(), style)?.0);
    }
    Ok(w)
}

/// Shortens `s` to at most `max` characters with an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Short tick labels that stay distinct: each label cut to `max` characters with `…`; when two
/// cuts collide (`arr_delay_a`, `arr_delay_b` → `arr_de…`), every long label keeps its start
/// and its end (`arr…y_a`), with as much of the end as telling them apart needs; if even that
/// fails, labels are numbered (`1: arr…`).
pub(crate) fn distinct_labels(labels: &[String], max: usize) -> Vec<String> {
    let max = max.max(3);
    let distinct = |v: &[String]| {
        let mut seen = std::collections::HashSet::new();
        v.iter().all(|l| seen.insert(l.as_str()))
    };
    let cut: Vec<String> = labels.iter().map(|l| shorten(l, max)).collect();
    if distinct(&cut) {
        return cut;
    }
    for tail in 1..max - 1 {
        let head = max - 1 - tail;
        let both: Vec<String> = labels
            .iter()
            .map(|l| {
                let chars: Vec<char> = l.chars().collect();
                if chars.len() <= max {
                    l.clone()
                } else {
                    let mut t: String = chars[..head].iter().collect();
                    t.push('…');
                    t.extend(&chars[chars.len() - tail..]);
                    t
                }
            })
            .collect();
        if distinct(&both) {
            return both;
        }
    }
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let n = format!("{}: ", i + 1);
            format!("{n}{}", shorten(l, max.saturating_sub(n.len()).max(2)))
        })
        .collect()
}

/// A curve as drawn on an axis whose top is `top`: the runs of consecutive points within the
/// axis (each drawn as a line) and the points beyond it (drawn as markers at the edge, never as
/// a flat line along it). Non-finite values are left out.
pub(crate) fn split_clipped(
    points: &[(usize, f64)],
    top: f64,
) -> (Vec<Vec<(usize, f64)>>, Vec<usize>) {
    let mut runs: Vec<Vec<(usize, f64)>> = vec![];
    let mut beyond = vec![];
    let mut current = vec![];
    for &(e, v) in points.iter().filter(|p| p.1.is_finite()) {
        if v > top {
            beyond.push(e);
            if !current.is_empty() {
                runs.push(std::mem::take(&mut current));
            }
        } else {
            current.push((e, v));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    (runs, beyond)
}

/// One bar of the effect chart, in display units.
#[derive(Debug, Clone)]
pub(crate) struct EffectRow {
    pub label: String,
    pub mean: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub verdict: Verdict,
    /// The value written next to the bar (`+0.45 pp`).
    pub value_text: String,
}

/// Horizontal bars of Δ vs baseline with 95 % CI whiskers and a zero line.
#[derive(Debug, Clone)]
pub(crate) struct EffectChart {
    pub title: String,
    pub x_desc: String,
    /// Bottom to top: the caller sorts them so the best variant is on top.
    pub rows: Vec<EffectRow>,
}

impl EffectChart {
    fn x_range(&self) -> (f64, f64) {
        let mut lo: f64 = 0.0;
        let mut hi: f64 = 0.0;
        for r in &self.rows {
            for v in r
                .mean
                .into_iter()
                .chain(r.ci.into_iter().flat_map(|(a, b)| [a, b]))
            {
                if v.is_finite() {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        let span = if hi > lo { hi - lo } else { 1.0 };
        // Room on the right for the value labels.
        (lo - 0.08 * span, hi + 0.3 * span)
    }
}

impl Chart for EffectChart {
    fn size(&self) -> (u32, u32) {
        (960, 150 + 44 * self.rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let label_style = font(15.0).pos(Pos::new(HPos::Right, VPos::Center));
        let label_w = max_text_width(root, self.rows.iter().map(|r| &r.label), &font(15.0))?;
        let area = root.titled(&self.title, font(22.0))?;
        let (x0, x1) = self.x_range();
        let n = self.rows.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&area)
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(label_w + 20)
            .build_cartesian_2d(x0..x1, 0.0..n)?;
        let decimals = tick_decimals(x1 - x0);
        let fmt_tick = |v: &f64| format!("{:+.*}", decimals, v);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(8)
            .x_label_formatter(&fmt_tick)
            .x_desc(self.x_desc.as_str())
            .label_style(font(14.0))
            .axis_desc_style(font(15.0))
            .light_line_style(GREY_200)
            .draw()?;
        for (i, r) in self.rows.iter().enumerate() {
            let y = i as f64;
            let colour = match r.verdict {
                Verdict::Helps => GREEN_600,
                Verdict::Hurts => RED_600,
                _ => GREY_500,
            };
            if let Some(m) = r.mean.filter(|m| m.is_finite()) {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.2), (m, y + 0.8)],
                    colour.filled(),
                )))?;
                let mut right = m.max(0.0);
                if let Some((lo, hi)) = r.ci.filter(|(a, b)| a.is_finite() && b.is_finite()) {
                    chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                        y + 0.5,
                        lo,
                        m,
                        hi,
                        BLACK.stroke_width(2),
                        14,
                    )))?;
                    right = right.max(hi);
                }
                let (px, py) = chart.backend_coord(&(right, y + 0.5));
                root.draw_text(
                    &r.value_text,
                    &font(14.0).pos(Pos::new(HPos::Left, VPos::Center)),
                    (px + 8, py),
                )?;
            }
            let (px, py) = chart.backend_coord(&(x0, y + 0.5));
            root.draw_text(&r.label, &label_style, (px - 10, py))?;
        }
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, n)],
            BLACK.stroke_width(1),
        )))?;
        Ok(())
    }
}

/// One line of a learning-curve panel.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub width: u32,
    /// (epoch, value in display units); non-finite values are skipped.
    pub points: Vec<(usize, f64)>,
    /// Text shown at a point (epoch, text): for a mean curve, the number of seeds from the
    /// epochs where it drops (`n=2`).
    pub notes: Vec<(usize, String)>,
}

/// One panel (one y quantity) of a learning-curve chart.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub title: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Legend in the upper right (losses) or lower right (accuracies).
    pub legend_top: bool,
}

/// Learning curves: one or more panels side by side.
#[derive(Debug, Clone)]
pub(crate) struct CurvesChart {
    pub title: String,
    pub panels: Vec<Panel>,
}

/// Colour `i` of a qualitative palette; index 0 (the baseline) is black. The others are the
/// ten "Tableau 10" colours (the matplotlib default cycle), which all read well on white.
pub(crate) fn series_colour(i: usize) -> RGBColor {
    const TABLEAU10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if i == 0 {
        return BLACK;
    }
    let (r, g, b) = TABLEAU10[(i - 1) % TABLEAU10.len()];
    RGBColor(r, g, b)
}

impl Panel {
    /// The y range and the value above which points are clipped (a diverging loss would otherwise
    /// flatten every other curve): at most 4 × the median, unless that hides nothing.
    fn y_range(&self) -> (f64, f64, bool) {
        let mut v: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .collect();
        if v.is_empty() {
            return (0.0, 1.0, false);
        }
        v.sort_by(f64::total_cmp);
        let (min, max) = (v[0], v[v.len() - 1]);
        let median = v[v.len() / 2];
        let cap = if median > 0.0 {
            4.0 * median
        } else {
            f64::INFINITY
        };
        let (hi, clipped) = if max > cap && min < cap {
            (cap, true)
        } else {
            (max, false)
        };
        let span = if hi > min {
            hi - min
        } else {
            min.abs().max(1.0) * 0.1
        };
        (min - 0.05 * span, hi + 0.05 * span, clipped)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let epochs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (e0, e1) = epochs.fold((usize::MAX, 0), |(a, b), e| (a.min(e), b.max(e)));
        let (e0, e1) = if e0 == usize::MAX {
            (0, 1)
        } else {
            (e0, e1.max(e0 + 1))
        };
        let (y0, y1, clipped) = self.y_range();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, font(17.0))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(e0..e1, y0..y1)?;
        let decimals = tick_decimals(y1 - y0);
        let fmt_y = |v: &f64| format!("{:.*}", decimals, v);
        let y_desc = if clipped {
            format!("{} (▲ values beyond the axis)", self.y_desc)
        } else {
            self.y_desc.clone()
        };
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels(10)
            .y_labels(8)
            .y_label_formatter(&fmt_y)
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(GREY_200)
            .draw()?;
        let mut any = false;
        for s in &self.series {
            let (runs, beyond) = split_clipped(&s.points, y1);
            if runs.is_empty() && beyond.is_empty() {
                continue;
            }
            any = true;
            let colour = s.colour;
            let width = s.width;
            let mut labelled = false;
            for pts in &runs {
                let drawn = chart.draw_series(LineSeries::new(
                    pts.iter().copied(),
                    colour.stroke_width(width),
                ))?;
                if !labelled {
                    labelled = true;
                    drawn.label(s.name.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(width + 1))
                    });
                }
            }
            let edge = y1 - 0.02 * (y1 - y0);
            let markers = chart.draw_series(
                beyond
                    .iter()
                    .map(|&e| TriangleMarker::new((e, edge), 5, colour.filled())),
            )?;
            if !labelled {
                markers.label(s.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(width + 1))
                });
            }
            let count: usize = runs.iter().map(Vec::len).sum();
            if count <= 40 {
                chart.draw_series(
                    runs.iter()
                        .flatten()
                        .map(|&p| Circle::new(p, 3, colour.filled())),
                )?;
            }
            for (e, text) in &s.notes {
                if let Some(&(_, v)) = s.points.iter().find(|p| p.0 == *e && p.1.is_finite()) {
                    chart.draw_series(std::iter::once(Text::new(
                        text.clone(),
                        (*e, v.min(edge)),
                        font(11.0)
                            .color(&colour)
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    )))?;
                }
            }
        }
        if any {
            chart
                .configure_series_labels()
                .position(if self.legend_top {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .label_font(font(13.0))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        } else {
            let (px, py) = chart.backend_coord(&(e0, (y0 + y1) / 2.0));
            let (qx, _) = chart.backend_coord(&(e1, y0));
            area.draw_text(
                "no data",
                &font(16.0).pos(Pos::new(HPos::Center, VPos::Center)),
                (
                    (px + qx) / 2 - area.get_base_pixel().0,
                    py - area.get_base_pixel().1,
                ),
            )?;
        }
        Ok(())
    }
}

impl Chart for CurvesChart {
    fn size(&self) -> (u32, u32) {
        (560 * self.panels.len().max(1) as u32, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = root.titled(&self.title, font(22.0))?;
        let cells = area.split_evenly((1, self.panels.len().max(1)));
        for (panel, cell) in self.panels.iter().zip(&cells) {
            panel.draw(cell)?;
        }
        Ok(())
    }
}

/// A curve in the unit square (ROC, precision-recall), with a reference line and one marked
/// point (the threshold in use).
#[derive(Debug, Clone)]
pub(crate) struct RateChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub points: Vec<(f64, f64)>,
    pub reference: ((f64, f64), (f64, f64)),
    pub reference_name: String,
    pub marked: Option<(f64, f64)>,
    pub marked_name: String,
}

impl Chart for RateChart {
    fn size(&self) -> (u32, u32) {
        (600, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let area = root.titled(&self.title, font(18.0))?;
        let mut chart = ChartBuilder::on(&area)
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0f64, 0.0..1.02f64)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style(font(13.0))
            .axis_desc_style(font(14.0))
            .light_line_style(GREY_200)
            .draw()?;
        let (a, b) = self.reference;
        chart
            .draw_series(LineSeries::new([a, b], GREY_500.stroke_width(1)))?
            .label(self.reference_name.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], GREY_500.stroke_width(2)));
        let colour = series_colour(1);
        let pts: Vec<(f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))?
            .label("model")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(3))
            });
        if let Some(p) = self.marked {
            chart
                .draw_series(std::iter::once(Circle::new(p, 6, RED_600.filled())))?
                .label(self.marked_name.as_str())
                .legend(|(x, y)| Circle::new((x + 11, y), 5, RED_600.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(13.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// A confusion-matrix heat map: cell colour is the share of the true class (row), with counts.
#[derive(Debug, Clone)]
pub(crate) struct ConfusionChart {
    pub title: String,
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionChart {
    fn cell(&self) -> u32 {
        (560 / self.labels.len().max(1) as u32).clamp(12, 60)
    }

    fn label_chars(&self) -> usize {
        24
    }
}

/// White to dark blue (the ends of ColorBrewer's "Blues").
fn heat(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * s).round() as u8;
    RGBColor(lerp(247, 8), lerp(251, 48), lerp(255, 107))
}

impl Chart for ConfusionChart {
    fn size(&self) -> (u32, u32) {
        let plot = self.cell() * self.labels.len().max(1) as u32;
        // Label widths are not known before drawing; 8 px per character is generous for 13 px
        // DejaVu Sans.
        let longest = self
            .labels
            .iter()
            .map(|l| l.chars().count().min(self.label_chars()))
            .max()
            .unwrap_or(1) as u32;
        ((plot + 8 * longest + 120).max(520), plot + 130)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let k = self.labels.len();
        let cell = self.cell();
        let labels = distinct_labels(&self.labels, self.label_chars());
        let x_labels = distinct_labels(&self.labels, (cell as usize / 8).max(3));
        let tick = font(13.0);
        let label_w = max_text_width(root, &labels, &tick)?;
        let area = root.titled(&self.title, font(20.0))?;
        // Lay the plot out as a square of whole cells, centred horizontally.
        let (aw, ah) = area.dim_in_pixel();
        let (left, bottom, top) = (label_w + 50, 60, 10);
        let side = (aw.saturating_sub(left + 20))
            .min(ah.saturating_sub(bottom + top + 10))
            .max(k as u32);
        let right = aw.saturating_sub(left + side).max(10);
        let mut chart = ChartBuilder::on(&area)
            .margin_top(top)
            .margin_right(right / 2)
            .margin_left(right - right / 2)
            .margin_bottom(ah.saturating_sub(top + bottom + side))
            .x_label_area_size(bottom)
            .y_label_area_size(left)
            .build_cartesian_2d(0.0..k as f64, 0.0..k as f64)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style(font(13.0))
            .axis_desc_style(font(15.0))
            .draw()?;
        let count_font = (cell as f64 * 0.36).clamp(8.0, 16.0);
        for (t, row) in self.counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let y = (k - 1 - t) as f64;
            for (p, &c) in row.iter().enumerate() {
                let share = if total > 0 {
                    c as f64 / total as f64
                } else {
                    0.0
                };
                let x = p as f64;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    heat(share).filled(),
                )))?;
                if cell >= 20 {
                    let colour = if share > 0.5 { WHITE } else { BLACK };
                    let style = font(count_font)
                        .color(&colour)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    chart.draw_series(std::iter::once(Text::new(
                        c.to_string(),
                        (x + 0.5, y + 0.5),
                        style,
                    )))?;
                }
            }
        }
        // Tick labels: every class when they fit, else every n-th.
        let every = 16usize.div_ceil(cell as usize);
        for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw_text(
                &x_labels[i],
                &tick.pos(Pos::new(HPos::Center, VPos::Top)),
                (px, py + 6),
            )?;
            let (px, py) = chart.backend_coord(&(0.0, (k - 1 - i) as f64 + 0.5));
            root.draw_text(
                l,
                &tick.pos(Pos::new(HPos::Right, VPos::Center)),
                (px - 6, py),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_registers() {
        ensure_font().unwrap();
        ensure_font().unwrap();
    }

    #[test]
    fn clipping_keeps_most_points_visible() {
        let p = Panel {
            title: "loss".into(),
            y_desc: "loss".into(),
            series: vec![Series {
                name: "train".into(),
                colour: BLACK,
                width: 2,
                points: vec![(1, 2.0), (2, 1.5), (3, 1.2), (4, 1e9), (5, f64::NAN)],
                notes: vec![],
            }],
            legend_top: true,
        };
        let (lo, hi, clipped) = p.y_range();
        assert!(clipped && lo < 1.2 && hi < 10.0, "{lo} {hi}");
    }

    #[test]
    fn confusion_labels_stay_distinct() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let short = distinct_labels(&l(&["arr_delay_a", "arr_delay_b", "x"]), 7);
        assert_eq!(short, ["arr_d…a", "arr_d…b", "x"]);
        // Labels that fit are kept; plain cuts are used when they are distinct.
        assert_eq!(
            distinct_labels(&l(&["alpha_one", "beta_two"]), 5),
            ["alph…", "beta…"]
        );
        // Same start and end: numbered.
        let n = distinct_labels(&l(&["ab_x_cd", "ab_y_cd"]), 4);
        assert_ne!(n[0], n[1]);
        assert!(n[0].starts_with("1: ") && n[1].starts_with("2: "), "{n:?}");
    }

    #[test]
    fn clipped_points_are_markers_not_a_flat_line() {
        let pts = [
            (0, 1.0),
            (1, 9.0),
            (2, 12.0),
            (3, 2.0),
            (4, f64::NAN),
            (5, 1.5),
        ];
        let (runs, beyond) = split_clipped(&pts, 5.0);
        assert_eq!(beyond, [1, 2]);
        assert_eq!(runs, vec![vec![(0, 1.0)], vec![(3, 2.0), (5, 1.5)]]);
    }

    #[test]
    fn heat_runs_white_to_blue() {
        assert_eq!(heat(0.0), RGBColor(247, 251, 255));
        assert_eq!(heat(1.0), RGBColor(8, 48, 107));
    }
}
