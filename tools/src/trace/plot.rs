//! `trace plot`: an SVG timeline. The upper panel shows invalidations per
//! descriptor type as cumulative counts over time (one line per type, so
//! bursts are steps and a missing flush is a flat line); the lower panel
//! shows stale walks (red crosses) and faults (orange triangles) on their own
//! rows and guest serial lines as labelled ticks, which also appear as thin
//! vertical lines across the upper panel.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Kind;
use super::reader::{self, Body, ReadError, ReadOptions};
use super::summary::report_type;

/// Event times kept for plotting (8 bytes each, 32 MiB): enough for any run
/// the mini guest makes; later events still count in the caption.
pub const MAX_STORED_TIMES: usize = 1 << 22;
/// Points drawn per line: more than an SVG viewer can show at this width.
pub const MAX_POINTS_PER_LINE: usize = 2000;
/// Stale-walk and fault markers drawn per row (evenly sampled beyond it).
pub const MAX_MARKERS: usize = 2000;
/// Guest serial labels drawn (evenly sampled beyond it), so labels stay
/// readable.
pub const MAX_LABELS: usize = 40;
/// Characters of a serial line shown in its label.
pub const LABEL_CHARS: usize = 48;

/// Image size in pixels.
pub const SIZE: (u32, u32) = (1280, 760);

/// Errors of `trace plot`.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Reading the trace failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Drawing or writing the SVG failed.
    #[error("cannot draw {path}: {reason}")]
    Draw {
        /// The output.
        path: String,
        /// The error.
        reason: String,
    },
}

/// What the plot shows, gathered from a trace.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Run command (title).
    pub command: String,
    /// Invalidation times (ns) per report type name.
    pub invalidations: BTreeMap<String, Vec<u64>>,
    /// Stale-walk times (ns).
    pub stale: Vec<u64>,
    /// Fault times (ns).
    pub faults: Vec<u64>,
    /// Guest serial markers.
    pub markers: Vec<(u64, String)>,
    /// Last record time.
    pub duration_ns: u64,
    /// Events not stored because [`MAX_STORED_TIMES`] was reached.
    pub omitted: u64,
    /// Events dropped by the writer.
    pub dropped: u64,
    /// Truncated trace: its last complete line.
    pub truncated_after: Option<usize>,
    stored: usize,
}

impl Timeline {
    fn store(&mut self, which: Option<String>, t: u64) {
        if self.stored >= MAX_STORED_TIMES {
            self.omitted += 1;
            return;
        }
        self.stored += 1;
        match which {
            Some(ty) => self.invalidations.entry(ty).or_default().push(t),
            None => self.stale.push(t),
        }
    }

    /// Reads the trace at `path`.
    pub fn read(path: &Path, options: ReadOptions) -> Result<Timeline, ReadError> {
        let mut reader = reader::open(path, options)?;
        let mut tl = Timeline {
            command: reader.header().command.clone(),
            ..Timeline::default()
        };
        for rec in reader.by_ref() {
            let rec = rec?;
            tl.duration_ns = tl.duration_ns.max(rec.t_ns);
            match &rec.body {
                Body::Event {
                    kind: Kind::Inv,
                    data,
                } => {
                    if let Some(ty) = data
                        .get("descriptor")
                        .and_then(|d| d.get("type"))
                        .and_then(|t| t.as_str())
                    {
                        tl.store(Some(report_type(ty).to_string()), rec.t_ns);
                    }
                }
                Body::Event {
                    kind: Kind::Stale, ..
                } => tl.store(None, rec.t_ns),
                Body::Event {
                    kind: Kind::Fault, ..
                } => {
                    if tl.stored < MAX_STORED_TIMES {
                        tl.stored += 1;
                        tl.faults.push(rec.t_ns);
                    } else {
                        tl.omitted += 1;
                    }
                }
                Body::Serial { text } => {
                    if tl.stored < MAX_STORED_TIMES {
                        tl.stored += 1;
                        tl.markers.push((rec.t_ns, label_text(text)));
                    } else {
                        tl.omitted += 1;
                    }
                }
                Body::Dropped { total, .. } => tl.dropped = *total,
                _ => {}
            }
        }
        tl.truncated_after = reader.truncated_after();
        Ok(tl)
    }
}

/// `n` items of `v` evenly spaced, always keeping the last.
fn sample<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n || n == 0 {
        return v.to_vec();
    }
    let step = v.len().div_ceil(n);
    let mut out: Vec<T> = v.iter().step_by(step).cloned().collect();
    if let Some(last) = v.last() {
        out.push(last.clone());
    }
    out
}

fn ms(ns: u64) -> f64 {
    // Plot coordinates: precision loss above 2^52 ns is invisible.
    #[allow(clippy::cast_precision_loss)]
    let v = ns as f64 / 1e6;
    v
}

/// A serial line as a label SVG can hold: ANSI escape sequences (colour,
/// cursor moves) removed, any other control character shown as U+FFFD, cut
/// to [`LABEL_CHARS`]. XML 1.0 has no way to write most control characters
/// at all, escaped or not, so a coloured guest line once made the whole SVG
/// invalid; the SVG backend escapes `<`, `>` and `&` itself.
fn label_text(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters/intermediates, then a final byte in
            // '@'..='~'. Other escapes: ESC and one more character.
            if chars.next_if_eq(&'[').is_some() {
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        if out.chars().count() >= LABEL_CHARS {
            break;
        }
        out.push(if c.is_control() && c != '\t' {
            '\u{fffd}'
        } else {
            c
        });
    }
    out
}

fn count(n: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = n as f64;
    v
}

/// Draws `tl` as an SVG at `output`.
pub fn draw(tl: &Timeline, output: &Path) -> Result<(), PlotError> {
    let name = output.display().to_string();
    let err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: name.clone(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(output, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(520);
    let x_max = ms(tl.duration_ns).max(1e-3);
    let total_inv: usize = tl.invalidations.values().map(Vec::len).sum();
    let y_max = tl
        .invalidations
        .values()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut title = format!(
        "stalewalk trace: {} invalidations, {} stale walks, {} faults",
        total_inv,
        tl.stale.len(),
        tl.faults.len()
    );
    if tl.dropped > 0 {
        title.push_str(&format!(", {} events dropped", tl.dropped));
    }
    if let Some(line) = tl.truncated_after {
        title.push_str(&format!(" (TRUNCATED after line {line})"));
    }
    let mut chart = ChartBuilder::on(&top)
        .caption(&title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..count(y_max) * 1.08)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("time since start (ms)")
        .y_desc("invalidations (cumulative, per type)")
        .y_labels(y_max.clamp(2, 11))
        .max_light_lines(1)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (t, _) in sample(&tl.markers, MAX_LABELS) {
        let x = ms(t);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, count(y_max) * 1.08)],
                RGBColor(190, 190, 190),
            )))
            .map_err(|e| err(&e))?;
    }
    for (i, (ty, times)) in tl.invalidations.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut points: Vec<(f64, f64)> = vec![(0.0, 0.0)];
        let steps: Vec<(usize, u64)> = times.iter().copied().enumerate().collect();
        // A step line: the count rises at each event's time.
        for (n, t) in sample(&steps, MAX_POINTS_PER_LINE) {
            points.push((ms(t), count(n)));
            points.push((ms(t), count(n + 1)));
        }
        points.push((x_max, count(times.len())));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{ty} ({})", times.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if !tl.invalidations.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }

    let mut events = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..4f64)
        .map_err(|e| err(&e))?;
    events
        .configure_mesh()
        .disable_y_mesh()
        .max_light_lines(0)
        .y_labels(5)
        .y_label_formatter(&|y| {
            let row = |r: f64| (y - r).abs() < 0.01;
            if row(3.0) {
                "stale walks"
            } else if row(2.0) {
                "faults"
            } else if row(1.0) {
                "guest"
            } else {
                ""
            }
            .to_string()
        })
        .x_desc("time since start (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    events
        .draw_series(
            sample(&tl.stale, MAX_MARKERS)
                .into_iter()
                .map(|t| Cross::new((ms(t), 3.0), 6, RED.stroke_width(2))),
        )
        .map_err(|e| err(&e))?;
    events
        .draw_series(
            sample(&tl.faults, MAX_MARKERS)
                .into_iter()
                .map(|t| TriangleMarker::new((ms(t), 2.0), 6, RGBColor(230, 130, 0).filled())),
        )
        .map_err(|e| err(&e))?;
    let left =
        TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let right =
        TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, (t, text)) in sample(&tl.markers, MAX_LABELS).into_iter().enumerate() {
        let x = ms(t);
        // Labels in the right half extend leftwards so they stay inside.
        let label_style = if x > x_max / 2.0 { &right } else { &left };
        let y = 0.35 + 0.3 * count(i % 4);
        events
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, y)],
                RGBColor(90, 90, 90),
            )))
            .map_err(|e| err(&e))?;
        events
            .draw_series(std::iter::once(Text::new(
                text,
                (x, y),
                label_style.clone(),
            )))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Plots the trace at `input` into the SVG file `output`.
pub fn plot(input: &Path, output: &Path, options: ReadOptions) -> Result<Timeline, PlotError> {
    let tl = Timeline::read(input, options)?;
    draw(&tl, output)?;
    Ok(tl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_control_characters_in_labels() {
        assert_eq!(label_text("\u{1b}[1;31mFAIL\u{1b}[0m ok"), "FAIL ok");
        assert_eq!(label_text("bell\u{7}\u{0}end"), "bell\u{fffd}\u{fffd}end");
        assert_eq!(label_text("\u{1b}Xa"), "a");
        let long = "x".repeat(LABEL_CHARS + 10);
        assert_eq!(label_text(&long).chars().count(), LABEL_CHARS);
    }

    #[test]
    fn sample_keeps_bounds() {
        let v: Vec<u32> = (0..10_000).collect();
        let s = sample(&v, 100);
        assert!(s.len() <= 101 && s.len() >= 100);
        assert_eq!(s.last(), Some(&9_999));
        assert_eq!(sample(&v[..5], 100), vec![0, 1, 2, 3, 4]);
    }
}
