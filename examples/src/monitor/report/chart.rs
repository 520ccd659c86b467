//! Inline SVG charts drawn with `plotters`' SVG backend (no font files: the backend emits
//! `<text>` elements and the viewer's fonts draw them).
//!
//! Only trusted text reaches a chart — times, counts and risk-level names — so nothing from the
//! tenant's data (file names, users) is ever placed in SVG markup.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use plotters::prelude::*;

use super::model::{HourBucket, RiskCounts};

const WIDTH: u32 = 720;
const HEIGHT: u32 = 260;
const BAR: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);

fn local_hour(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%H:%M").to_string()
}

/// Most bars drawn; longer periods merge consecutive hours into one bar.
pub const MAX_BARS: usize = 96;

/// A bar chart of blocks per hour, hours labelled in `tz`; over [`MAX_BARS`] hours, each bar
/// holds several consecutive hours (labelled with its first). `None` when drawing failed (the
/// report then shows the numbers only).
pub fn blocks_per_hour_svg(hours: &[HourBucket], tz: Tz) -> Option<String> {
    let group = hours.len().div_ceil(MAX_BARS).max(1);
    let buckets: Vec<HourBucket> = hours
        .chunks(group)
        .map(|c| HourBucket {
            hour: c[0].hour,
            blocks: c.iter().map(|b| b.blocks).sum(),
        })
        .collect();
    let label = |t: DateTime<Utc>| {
        if group > 1 || hours.len() > 24 {
            t.with_timezone(&tz).format("%d %H:%M").to_string()
        } else {
            local_hour(t, tz)
        }
    };
    let buckets = &buckets[..];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let n = buckets.len().max(1) as u32;
        let max = buckets.iter().map(|b| b.blocks).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0u32..n, 0u64..max + max.div_ceil(10))
            .ok()?;
        let labels: Vec<String> = buckets.iter().map(|b| label(b.hour)).collect();
        let step = (buckets.len() / 12).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(buckets.len().min(13))
            .x_label_formatter(&|i| {
                let i = *i as usize;
                if i.is_multiple_of(step) {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("blocks")
            .y_labels(5)
            .label_style(("sans-serif", 13))
            .draw()
            .ok()?;
        chart
            .draw_series(buckets.iter().enumerate().map(|(i, b)| {
                let x = i as u32;
                let mut r = Rectangle::new([(x, 0), (x + 1, b.blocks)], BAR.filled());
                r.set_margin(0, 0, 1, 1);
                r
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

/// A horizontal bar chart of detections per risk level. `None` when drawing failed.
pub fn detections_by_risk_svg(counts: &RiskCounts) -> Option<String> {
    let rows = [
        ("Critical", counts.critical, RGBColor(0x8b, 0x00, 0x00)),
        ("High", counts.high, RGBColor(0xd9, 0x48, 0x1c)),
        ("Medium", counts.medium, RGBColor(0xe0, 0xa1, 0x00)),
        ("Low", counts.low, RGBColor(0x4a, 0x7f, 0x4a)),
    ];
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 170)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(70)
            // Segmented: each risk level is a band with its label at the band's centre.
            .build_cartesian_2d(0u64..max + max.div_ceil(10), (0u32..4).into_segmented())
            .ok()?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(4)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => 3usize
                    .checked_sub(*i as usize)
                    .and_then(|k| rows.get(k))
                    .map(|r| r.0.to_owned())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_labels(5)
            .label_style(("sans-serif", 13))
            .draw()
            .ok()?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, n, color))| {
                let y = 3 - i as u32;
                let mut r = Rectangle::new(
                    [
                        (0, SegmentValue::Exact(y)),
                        (*n, SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                );
                r.set_margin(4, 4, 0, 0);
                r
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}
