//! Plots as SVG (plotters' SVG backend rendered to a string). In a notebook they display as
//! `image/svg+xml`, which GitHub's notebook viewer renders (plotters' own `evcxr_figure` emits
//! HTML, which it strips).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Result, SubspaceError};

/// An SVG image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svg(pub String);

impl Svg {
    /// evcxr's display hook.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.0
        );
    }

    /// Writes the SVG to a file.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::store::write_atomic(path, self.0.as_bytes())
    }
}

/// Colours of successive series (colour-blind friendly: Okabe–Ito).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

fn plot_err<E: std::fmt::Debug>(e: E) -> SubspaceError {
    SubspaceError::Backend(format!("drawing a plot: {e:?}"))
}

/// Wide enough for the title (plotters' naive font metrics: ~8.5 px a character at 17 px).
fn width_for(title: &str, min: u32) -> u32 {
    min.max(title.chars().count() as u32 * 9 + 60)
}

fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<Svg> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(out))
}

/// Grouped bars: for each category (e.g. an answer token), one bar per series (e.g. "base" and
/// "patched"). Values are probabilities, so the axis runs from 0 to 1.
pub fn grouped_bars(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f32>)],
) -> Result<Svg> {
    grouped_bars_highlighting(title, categories, series, &[])
}

/// [`grouped_bars`] with some categories marked (a shaded band behind their bars and a bold
/// label): the answers a reader should look at.
pub fn grouped_bars_highlighting(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f32>)],
    highlighted: &[usize],
) -> Result<Svg> {
    let n = categories.len().max(1);
    let width = width_for(title, (120 + 90 * n as u32).clamp(480, 1100));
    render((width, 360), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..n as f64, 0f64..1f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("probability")
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(plot_err)?;
        let bands = highlighted.iter().filter(|&&i| i < n).map(|&i| {
            Rectangle::new(
                [(i as f64 + 0.04, 0.0), (i as f64 + 0.96, 1.0)],
                RGBColor(255, 236, 150).mix(0.55).filled(),
            )
        });
        chart.draw_series(bands).map_err(plot_err)?;
        let k = series.len().max(1) as f64;
        let slot = 0.8 / k;
        for (s, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[s % PALETTE.len()];
            // A missing value (NaN) draws no bar and the label "–".
            let bars = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(move |(i, &v)| {
                    let x0 = i as f64 + 0.1 + s as f64 * slot;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + slot * 0.92, f64::from(v.clamp(0.0, 1.0)))],
                        color.filled(),
                    )
                });
            chart
                .draw_series(bars)
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            // The value above each bar.
            let labels = values.iter().enumerate().map(move |(i, &v)| {
                let x = i as f64 + 0.1 + (s as f64 + 0.46) * slot;
                let (text, y) = if v.is_finite() {
                    (format!("{v:.2}"), f64::from(v.clamp(0.0, 0.93)))
                } else {
                    ("–".to_string(), 0.0)
                };
                Text::new(
                    text,
                    (x, y + 0.015),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            });
            chart.draw_series(labels).map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.9))
            .draw()
            .map_err(plot_err)?;
        for (i, c) in categories.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let style = if highlighted.contains(&i) {
                FontStyle::Bold
            } else {
                FontStyle::Normal
            };
            root.draw(&Text::new(
                format!("{c:?}"),
                (px, py + 8),
                ("sans-serif", 13)
                    .into_font()
                    .style(style)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// Lines over a shared x axis (loss curves, metrics by layer).
pub fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    xs: &[f64],
    series: &[(String, Vec<f64>)],
) -> Result<Svg> {
    let finite = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo.min(0.0), hi.max(lo + 1e-6) * 1.05)
    } else {
        (0.0, 1.0)
    };
    let (x0, x1) = (
        xs.first().copied().unwrap_or(0.0),
        xs.last()
            .copied()
            .unwrap_or(1.0)
            .max(xs.first().copied().unwrap_or(0.0) + 1.0),
    );
    let integer_x = xs.iter().all(|x| x.fract() == 0.0);
    render((width_for(title, 640), 360), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .x_label_formatter(&|x| {
                if integer_x {
                    format!("{x:.0}")
                } else {
                    format!("{x:.2}")
                }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(plot_err)?;
        for (s, (name, ys)) in series.iter().enumerate() {
            let color = PALETTE[s % PALETTE.len()];
            let points: Vec<(f64, f64)> = xs
                .iter()
                .copied()
                .zip(ys.iter().copied())
                .filter(|(_, y)| y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(move |p| Circle::new(p, 3, color.filled())),
                )
                .map_err(plot_err)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .border_style(BLACK.mix(0.3))
                .background_style(WHITE.mix(0.9))
                .draw()
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// White → blue, for probabilities in [0, 1].
fn heat(v: f32) -> RGBColor {
    let t = f64::from(v.clamp(0.0, 1.0));
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// A grid of values in [0, 1]: `values[row][col]`, rows drawn bottom-up (layer 0 at the
/// bottom), each cell labelled with its value (`NaN`: no value, drawn grey).
pub fn heatmap(
    title: &str,
    row_desc: &str,
    row_labels: &[String],
    col_labels: &[String],
    values: &[Vec<f32>],
) -> Result<Svg> {
    let (rows, cols) = (row_labels.len().max(1), col_labels.len().max(1));
    let height = (90 + 17 * rows as u32).clamp(300, 900);
    let width = width_for(title, (110 + 72 * cols as u32).clamp(480, 1200));
    render((width, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..cols as f64, 0f64..rows as f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(rows.min(16))
            .y_desc(row_desc)
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                row_labels.get(i).cloned().unwrap_or_default()
            })
            .draw()
            .map_err(plot_err)?;
        for (r, row) in values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let (x, y) = (c as f64, r as f64);
                let fill = if v.is_nan() {
                    RGBColor(220, 220, 220)
                } else {
                    heat(v)
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        fill.filled(),
                    )))
                    .map_err(plot_err)?;
                let ink = if v > 0.55 { WHITE } else { BLACK };
                let label = if v.is_nan() {
                    "–".to_string()
                } else {
                    format!("{v:.2}")
                };
                chart
                    .draw_series(std::iter::once(Text::new(
                        label,
                        (x + 0.5, y + 0.5),
                        ("sans-serif", 10)
                            .into_font()
                            .color(&ink)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )))
                    .map_err(plot_err)?;
            }
        }
        for (c, label) in col_labels.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                format!("{label:?}"),
                (px, py + 6),
                ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bars_draw_their_values_and_skip_missing_ones() {
        let svg = grouped_bars(
            "t",
            &["a".to_string(), "b".to_string()],
            &[("s".to_string(), vec![0.25, f32::NAN])],
        )
        .unwrap()
        .0;
        assert!(svg.starts_with("<svg") && svg.contains("0.25"), "{svg}");
        assert!(svg.contains('–') && !svg.contains("NaN"), "{svg}");
    }
}
