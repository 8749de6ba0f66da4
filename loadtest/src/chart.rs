//! The comparison drawn as an SVG: one bar panel per metric, one bar per server.
//!
//! plotters with only its SVG backend: text is emitted as SVG `<text>` and laid out with
//! plotters' built-in size estimate, so no font files or system libraries are needed.

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;
use std::path::Path;

/// One metric across servers; `None` where a server has no figure.
pub struct Panel {
    pub title: String,
    pub values: Vec<(String, Option<f64>)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Short number for a bar label.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws `panels` in a grid (two per row) under `title` into `path`.
pub fn draw(path: &Path, title: &str, panels: &[Panel]) -> Result<(), String> {
    let rows = panels.len().div_ceil(2).max(1);
    let height = 80 + 340 * rows as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 26))
        .map_err(|e| err(&e))?;
    let cells = root.split_evenly((rows, 2));
    for (panel, area) in panels.iter().zip(cells.iter()) {
        draw_panel(area, panel).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Bar labels sit centred just above the point they are given.
fn label_style(color: &RGBColor) -> TextStyle<'static> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    ("sans-serif", 14)
        .into_font()
        .color(color)
        .pos(Pos::new(HPos::Center, VPos::Bottom))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = panel.values.len().max(1);
    let top = panel
        .values
        .iter()
        .filter_map(|v| v.1)
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.2 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        // plotters' integer ranges include their end: 0..n-1 is n segments.
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)?;
    let names: Vec<String> = panel.values.iter().map(|v| v.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    for (i, (_, value)) in panel.values.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        match value {
            Some(v) => {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                chart.draw_series(std::iter::once(bar))?;
                chart.draw_series(std::iter::once(Text::new(
                    short(*v),
                    (SegmentValue::CenterOf(i), *v),
                    label_style(&BLACK),
                )))?;
            }
            None => {
                chart.draw_series(std::iter::once(Text::new(
                    "n/a".to_string(),
                    (SegmentValue::CenterOf(i), 0.0),
                    label_style(&RED),
                )))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_labels() {
        let path = std::env::temp_dir().join(format!("loadtest-chart-{}.svg", std::process::id()));
        let panels = vec![
            Panel {
                title: "deliveries/s".into(),
                values: vec![("a".into(), Some(1234.0)), ("b".into(), None)],
            },
            Panel {
                title: "p99 ms".into(),
                values: vec![("a".into(), Some(3.5)), ("b".into(), Some(7.0))],
            },
            Panel {
                title: "rss".into(),
                values: vec![("a".into(), Some(0.0)), ("b".into(), Some(1.0))],
            },
        ];
        draw(&path, "test chart", &panels).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        for s in [
            "test chart",
            "deliveries/s",
            "1234",
            "n/a",
            "\na\n",
            "\nb\n",
        ] {
            assert!(svg.contains(s), "missing {s}");
        }
    }
}
