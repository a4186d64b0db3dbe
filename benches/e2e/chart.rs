//! Draws `benches/e2e.sh`'s PNG chart: grouped bars of ratios (to the kernel bridge, or to
//! kernel VXLAN in the overlay group) per setup, one bar per metric.
//!
//! Not a measurement: a `[[bench]]` target only so that it may use dev-dependencies (plotters).
//! The script runs it as `cargo bench --bench e2e_chart -- DATA PNG`. Text is rendered with
//! plotters' `ab_glyph` backend from a TTF file (default: Debian's fonts-dejavu-core
//! `DejaVuSans.ttf`, or `$E2E_CHART_FONT`), so no fontconfig or system font lookup is needed.
//!
//! DATA is tab-separated, one record per line:
//!
//! ```text
//! title   TEXT                      # the chart's caption
//! metrics NAME NAME NAME            # one bar per metric, in this order
//! panel   TITLE                     # starts a panel (one per comparison group)
//! bar     SETUP V1 V2 V3            # ratios, "NA" when not measured
//! ```

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// Font used when `$E2E_CHART_FONT` is not set (Debian package fonts-dejavu-core).
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Bar colours, one per metric (cycled if there are more metrics).
const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
/// Width in pixels and height of one panel.
const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 420;

/// One comparison group: its title and (setup, ratio per metric) rows.
struct Panel {
    title: String,
    bars: Vec<(String, Vec<Option<f64>>)>,
}

/// The parsed DATA file.
struct Chart {
    title: String,
    metrics: Vec<String>,
    panels: Vec<Panel>,
}

fn parse(text: &str) -> Result<Chart, Box<dyn Error>> {
    let mut chart = Chart { title: String::new(), metrics: Vec::new(), panels: Vec::new() };
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            [""] => {}
            ["title", text] => chart.title = (*text).to_owned(),
            ["metrics", names @ ..] => chart.metrics = names.iter().map(|s| (*s).to_owned()).collect(),
            ["panel", title] => chart.panels.push(Panel { title: (*title).to_owned(), bars: Vec::new() }),
            ["bar", setup, values @ ..] => {
                let panel = chart.panels.last_mut().ok_or(format!("line {}: bar before any panel", n + 1))?;
                let values = values
                    .iter()
                    .map(|v| if *v == "NA" || v.is_empty() { Ok(None) } else { v.parse::<f64>().map(Some) })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("line {}: {e}", n + 1))?;
                panel.bars.push(((*setup).to_owned(), values));
            }
            _ => return Err(format!("line {}: unknown record {line:?}", n + 1).into()),
        }
    }
    if chart.metrics.is_empty() {
        return Err("no metrics line".into());
    }
    chart.panels.retain(|p| !p.bars.is_empty());
    if chart.panels.is_empty() {
        return Err("nothing to draw".into());
    }
    Ok(chart)
}

fn draw(chart: &Chart, out: &Path) -> Result<(), Box<dyn Error>> {
    let height = 40 + PANEL_HEIGHT * chart.panels.len() as u32;
    let root = BitMapBackend::new(out, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&chart.title, ("sans-serif", 20))?;
    let areas = root.split_evenly((chart.panels.len(), 1));
    let metrics = chart.metrics.len();
    for (panel, area) in chart.panels.iter().zip(areas) {
        let n = panel.bars.len();
        let top = panel.bars.iter().flat_map(|(_, v)| v.iter().flatten()).fold(1.0f64, |m, &v| m.max(v));
        let y_max = (top * 1.35).max(1.4);
        let mut ctx = ChartBuilder::on(&area)
            .caption(&panel.title, ("sans-serif", 17))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_max)?;
        ctx.configure_mesh().disable_x_mesh().x_labels(0).y_desc("ratio").y_label_style(("sans-serif", 13)).draw()?;
        // The reference setup sits at 1.0.
        ctx.draw_series(LineSeries::new([(0.0, 1.0), (n as f64, 1.0)], BLACK.stroke_width(1)))?;
        let slot = 0.8 / metrics as f64;
        for (m, name) in chart.metrics.iter().enumerate() {
            let colour = COLOURS[m % COLOURS.len()];
            let bars = panel.bars.iter().enumerate().filter_map(|(i, (_, values))| {
                let v = (*values.get(m)?)?;
                let x0 = i as f64 + 0.1 + m as f64 * slot;
                Some(Rectangle::new([(x0, 0.0), (x0 + slot * 0.9, v)], colour.filled()))
            });
            ctx.draw_series(bars)?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
            // The value above each bar.
            let labels = panel.bars.iter().enumerate().filter_map(|(i, (_, values))| {
                let v = (*values.get(m)?)?;
                let x = i as f64 + 0.1 + m as f64 * slot;
                Some(Text::new(format!("{v:.2}"), (x, v + y_max * 0.035), ("sans-serif", 12)))
            });
            ctx.draw_series(labels)?;
        }
        ctx.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()?;
        // Setup names under their group of bars, in pixel coordinates of the panel.
        let (x_off, y_off) = (area.get_base_pixel().0, area.get_base_pixel().1);
        for (i, (setup, _)) in panel.bars.iter().enumerate() {
            let (x, y) = ctx.backend_coord(&(i as f64 + 0.5, 0.0));
            let style = TextStyle::from(("sans-serif", 13).into_font()).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ));
            area.draw(&Text::new(setup.clone(), (x - x_off, y - y_off + 8), style))?;
        }
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` appends "--bench"; the rest are DATA and PNG.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [data, png] = args.as_slice() else {
        return Err("usage: e2e_chart DATA PNG".into());
    };
    let font_path = std::env::var("E2E_CHART_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_owned());
    let font = std::fs::read(&font_path).map_err(|e| format!("{font_path}: {e} (install fonts-dejavu-core)"))?;
    // plotters keeps registered fonts for the life of the process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{font_path}: not a usable TrueType font"))?;
    let chart = parse(&std::fs::read_to_string(data).map_err(|e| format!("{data}: {e}"))?)?;
    draw(&chart, Path::new(png))?;
    Ok(())
}
