//! Charts drawn on the server as inline SVG: the funnel plot and the run chart. Each has a
//! `<title>` and `<desc>`, and its page puts the same numbers in a table beside it; status is
//! shown by shape and words as well as colour.

use doorstep_api::v1;
use doorstep_domain::statistics::funnel_limits;
use maud::{Markup, html};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 56.0;

/// Rates are per 100 visits.
const PER_VISITS: f64 = 100.0;

/// The funnel status's name in the page's markup: the proto enum's suffix, lower case.
pub fn status_key(status: i32) -> String {
    v1::FunnelStatus::try_from(status)
        .unwrap_or(v1::FunnelStatus::Unspecified)
        .as_str_name()
        .trim_start_matches("FUNNEL_STATUS_")
        .to_lowercase()
}

/// What a funnel status means, in words.
pub fn status_text(status: i32) -> &'static str {
    match v1::FunnelStatus::try_from(status).unwrap_or(v1::FunnelStatus::Unspecified) {
        v1::FunnelStatus::Within => "Within the limits",
        v1::FunnelStatus::AlertHigh => "Alert: above the ≈2 SD limit",
        v1::FunnelStatus::AlertLow => "Low: below the ≈2 SD limit",
        v1::FunnelStatus::AlarmHigh => "Alarm: above the ≈3 SD limit",
        v1::FunnelStatus::AlarmLow => "Low: below the ≈3 SD limit",
        v1::FunnelStatus::NoExposure => "No visits",
        v1::FunnelStatus::Unspecified => "Unknown",
    }
}

/// A plotting area: data ranges mapped onto the SVG's pixels.
struct Frame {
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, value: f64) -> f64 {
        LEFT + value / self.x_max * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        HEIGHT - BOTTOM - value.min(self.y_max) / self.y_max * (HEIGHT - TOP - BOTTOM)
    }
}

/// A round step for about `count` ticks over `range`.
fn tick_step(range: f64, count: f64) -> f64 {
    let raw = (range / count).max(f64::MIN_POSITIVE);
    let magnitude = 10_f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn ticks(max: f64) -> Vec<f64> {
    let step = tick_step(max, 5.0);
    (0..=50)
        .map(|index| f64::from(index) * step)
        .take_while(|value| *value <= max * 1.000_001)
        .collect()
}

fn format_tick(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn polyline(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The marker of a status: a circle within the limits, triangles pointing up or down for
/// alerts, squares and diamonds for alarms, so the status reads without colour.
fn marker(status: &str, x: f64, y: f64) -> Markup {
    let size = 7.0;
    html! {
        @match status {
            "alert_high" => polygon class="marker" points=(polyline(&[(x, y - size), (x + size, y + size * 0.8), (x - size, y + size * 0.8)])) {},
            "alert_low" => polygon class="marker" points=(polyline(&[(x, y + size), (x + size, y - size * 0.8), (x - size, y - size * 0.8)])) {},
            "alarm_high" => rect class="marker" x=(format!("{:.1}", x - size)) y=(format!("{:.1}", y - size)) width=(size * 2.0) height=(size * 2.0) {},
            "alarm_low" => polygon class="marker" points=(polyline(&[(x, y - size * 1.2), (x + size * 1.2, y), (x, y + size * 1.2), (x - size * 1.2, y)])) {},
            _ => circle class="marker" cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(size) {},
        }
    }
}

/// The legend's entries: status key, words.
const LEGEND: [(&str, &str); 5] = [
    ("within", "Within the limits (circle)"),
    ("alert_high", "Alert, high: above ≈2 SD (triangle up)"),
    ("alarm_high", "Alarm, high: above ≈3 SD (square)"),
    ("alert_low", "Low: below ≈2 SD (triangle down)"),
    ("alarm_low", "Low: below ≈3 SD (diamond)"),
];

/// The funnel plot of upheld breaches per 100 visits against visits.
pub fn funnel(list: &v1::ListContractorPerformanceResponse) -> Markup {
    let plotted: Vec<&v1::ContractorStanding> = list
        .contractors
        .iter()
        .filter(|standing| standing.visits > 0)
        .collect();
    let average = list
        .programme_upheld_per_100_visits
        .as_ref()
        .filter(|rate| rate.defined)
        .map_or(0.0, |rate| rate.value);
    let target = average / PER_VISITS;
    let rate_of = |standing: &v1::ContractorStanding| {
        standing
            .upheld_per_100_visits
            .as_ref()
            .map_or(0.0, |rate| rate.value)
    };
    let most_visits = plotted.iter().map(|s| s.visits).max().unwrap_or(0) as f64;
    let x_max = (most_visits * 1.1).max(10.0);
    let highest_rate = plotted
        .iter()
        .map(|s| rate_of(s))
        .fold(average * 2.0, f64::max);
    let y_max = (highest_rate * 1.15).max(1.0);
    let frame = Frame { x_max, y_max };
    let samples: Vec<f64> = (1..=120)
        .map(|index| x_max * (f64::from(index) / 120.0).powi(2))
        .collect();
    let curve = |pick: fn(&doorstep_domain::statistics::FunnelLimits) -> f64| -> String {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|visits| {
                funnel_limits(target, *visits, PER_VISITS)
                    .map(|limits| (frame.x(*visits), frame.y(pick(&limits))))
            })
            .collect();
        polyline(&points)
    };
    let description = format!(
        "Each contractor with visits in the period is a point: visits across, upheld breaches per \
         100 visits up. The solid line is the programme average, {average:.2} per 100 visits. \
         Dashed lines are the ≈2 SD alert limits and dotted lines the ≈3 SD alarm limits; they \
         narrow as visits grow. {} contractors are plotted; the table beside gives every figure.",
        plotted.len()
    );
    let plot_bottom = HEIGHT - BOTTOM;
    html! {
        div class="chart-wrap" tabindex="0" role="region" aria-label="Funnel plot (scrolls sideways on narrow screens)" {
        // A group, not an image: an image's children are presentational, and its points must
        // stay reachable from the keyboard, each an image named by its figures.
        svg id="funnel-plot" class="chart" role="group" aria-labelledby="funnel-title funnel-desc"
            viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) xmlns="http://www.w3.org/2000/svg" {
            title id="funnel-title" { "Funnel plot: upheld breaches per 100 visits by contractor" }
            desc id="funnel-desc" { (description) }
            defs {
                clipPath id="funnel-area" {
                    rect x=(LEFT) y=(TOP) width=(WIDTH - LEFT - RIGHT) height=(HEIGHT - TOP - BOTTOM) {}
                }
            }
            @for tick in ticks(y_max) {
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", frame.y(tick))) y2=(format!("{:.1}", frame.y(tick))) {}
                text x=(LEFT - 8.0) y=(format!("{:.1}", frame.y(tick) + 4.0)) text-anchor="end" font-size="12" { (format_tick(tick)) }
            }
            @for tick in ticks(x_max) {
                text x=(format!("{:.1}", frame.x(tick))) y=(plot_bottom + 18.0) text-anchor="middle" font-size="12" { (format_tick(tick)) }
            }
            line class="axis" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(plot_bottom) y2=(plot_bottom) {}
            line class="axis" x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(plot_bottom) {}
            text x=(format!("{:.1}", (LEFT + WIDTH - RIGHT) / 2.0)) y=(HEIGHT - 12.0) text-anchor="middle" font-size="13" { "Visits" }
            text x="16" y=(format!("{:.1}", (TOP + plot_bottom) / 2.0)) text-anchor="middle" font-size="13"
                transform=(format!("rotate(-90 16 {:.1})", (TOP + plot_bottom) / 2.0)) { "Upheld breaches per 100 visits" }
            g clip-path="url(#funnel-area)" aria-hidden="true" {
                polyline class="alarm-limit" points=(curve(|l| l.alarm_upper)) {}
                polyline class="alarm-limit" points=(curve(|l| l.alarm_lower)) {}
                polyline class="alert-limit" points=(curve(|l| l.alert_upper)) {}
                polyline class="alert-limit" points=(curve(|l| l.alert_lower)) {}
                line class="average" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", frame.y(average))) y2=(format!("{:.1}", frame.y(average))) {}
            }
            @for standing in &plotted {
                @let status = status_key(standing.funnel_status);
                @let (x, y) = (frame.x(standing.visits as f64), frame.y(rate_of(standing)));
                @let name = display_name(standing);
                @let near_right = x > WIDTH - RIGHT - 140.0;
                @let summary = point_summary(standing);
                g class="funnel-point" data-contractor-id=(standing.contractor_id) data-status=(status) tabindex="0" role="img" aria-label=(summary) {
                    title { (summary) }
                    (marker(&status, x, y))
                    text x=(format!("{:.1}", if near_right { x - 10.0 } else { x + 10.0 })) y=(format!("{:.1}", y + 4.0))
                        text-anchor=(if near_right { "end" } else { "start" })
                        paint-order="stroke" stroke="#ffffff" stroke-width="5" stroke-linejoin="round" { (name) }
                }
            }
        }
        }
        ul class="legend" aria-label="Legend" {
            li { svg viewBox="0 0 24 16" aria-hidden="true" { line class="average" x1="0" x2="24" y1="8" y2="8" stroke="#0b0c0c" stroke-width="2" {} } "Programme average" }
            li { svg viewBox="0 0 24 16" aria-hidden="true" { line x1="0" x2="24" y1="8" y2="8" stroke="#8a4b00" stroke-width="2" stroke-dasharray="8 5" {} } "≈2 SD alert limits" }
            li { svg viewBox="0 0 24 16" aria-hidden="true" { line x1="0" x2="24" y1="8" y2="8" stroke="#b10e1e" stroke-width="2" stroke-dasharray="2 4" {} } "≈3 SD alarm limits" }
            @for (status, words) in LEGEND {
                li {
                    svg viewBox="0 0 24 24" aria-hidden="true" class="chart-key" {
                        g class="legend-marker" data-status=(status) { (marker(status, 12.0, 12.0)) }
                    }
                    (words)
                }
            }
        }
    }
}

/// The name a point and a row show: the legal name, or the id for a contractor not in the
/// registry.
pub fn display_name(standing: &v1::ContractorStanding) -> &str {
    if standing.legal_name.is_empty() {
        &standing.contractor_id
    } else {
        &standing.legal_name
    }
}

/// A point's figures in words, for hover and focus.
fn point_summary(standing: &v1::ContractorStanding) -> String {
    let rate = standing.upheld_per_100_visits.unwrap_or_default();
    format!(
        "{}: {:.2} upheld breaches per 100 visits (95% interval {:.2} to {:.2}); {} upheld \
         breaches in {} visits; alert limits {:.2} to {:.2}, alarm limits {:.2} to {:.2}. {}.",
        display_name(standing),
        rate.value,
        rate.lower,
        rate.upper,
        standing.upheld_breaches,
        standing.visits,
        standing.alert_lower,
        standing.alert_upper,
        standing.alarm_lower,
        standing.alarm_upper,
        status_text(standing.funnel_status)
    )
}

/// One month of a run chart: the contractor's rate and the programme's.
pub struct RunPoint {
    pub month: String,
    pub rate: Option<f64>,
    pub programme_rate: Option<f64>,
}

/// The run chart of a contractor's monthly upheld breach rate against the programme average.
pub fn run_chart(name: &str, points: &[RunPoint]) -> Markup {
    let y_top = points
        .iter()
        .flat_map(|point| [point.rate, point.programme_rate])
        .flatten()
        .fold(0.0_f64, f64::max);
    let frame = Frame {
        x_max: (points.len().max(2) - 1) as f64,
        y_max: (y_top * 1.15).max(1.0),
    };
    let x_of = |index: usize| frame.x(index as f64);
    let series = |pick: fn(&RunPoint) -> Option<f64>| -> String {
        polyline(
            &points
                .iter()
                .enumerate()
                .filter_map(|(index, point)| pick(point).map(|rate| (x_of(index), frame.y(rate))))
                .collect::<Vec<_>>(),
        )
    };
    let plot_bottom = HEIGHT - BOTTOM;
    let every = points.len().div_ceil(12).max(1);
    html! {
        div class="chart-wrap" tabindex="0" role="region" aria-label="Run chart (scrolls sideways on narrow screens)" {
        svg id="run-chart" class="chart" role="img" aria-labelledby="run-title run-desc"
            viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) xmlns="http://www.w3.org/2000/svg" {
            title id="run-title" { "Monthly upheld breaches per 100 visits: " (name) " against the programme" }
            desc id="run-desc" {
                "A line per series, one point per month: " (name) "'s rate (solid, round markers) and the \
                 programme average (dashed, square markers). Months without visits have no point. The table beside gives every figure."
            }
            @for tick in ticks(frame.y_max) {
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", frame.y(tick))) y2=(format!("{:.1}", frame.y(tick))) {}
                text x=(LEFT - 8.0) y=(format!("{:.1}", frame.y(tick) + 4.0)) text-anchor="end" font-size="12" { (format_tick(tick)) }
            }
            @for (index, point) in points.iter().enumerate() {
                @if index % every == 0 {
                    text x=(format!("{:.1}", x_of(index))) y=(plot_bottom + 18.0) text-anchor="middle" font-size="12" { (point.month) }
                }
            }
            line class="axis" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(plot_bottom) y2=(plot_bottom) {}
            line class="axis" x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(plot_bottom) {}
            text x=(format!("{:.1}", (LEFT + WIDTH - RIGHT) / 2.0)) y=(HEIGHT - 12.0) text-anchor="middle" font-size="13" { "Month visited" }
            text x="16" y=(format!("{:.1}", (TOP + plot_bottom) / 2.0)) text-anchor="middle" font-size="13"
                transform=(format!("rotate(-90 16 {:.1})", (TOP + plot_bottom) / 2.0)) { "Upheld breaches per 100 visits" }
            polyline class="programme-series" points=(series(|p| p.programme_rate)) {}
            polyline class="series" points=(series(|p| p.rate)) {}
            @for (index, point) in points.iter().enumerate() {
                @if let Some(rate) = point.programme_rate {
                    rect x=(format!("{:.1}", x_of(index) - 3.5)) y=(format!("{:.1}", frame.y(rate) - 3.5)) width="7" height="7" fill="#ffffff" stroke="#0b0c0c" stroke-width="1.5" {
                        title { (point.month) ": programme " (format!("{rate:.2}")) " per 100 visits" }
                    }
                }
            }
            @for (index, point) in points.iter().enumerate() {
                @if let Some(rate) = point.rate {
                    circle cx=(format!("{:.1}", x_of(index))) cy=(format!("{:.1}", frame.y(rate))) r="4.5" fill="#1d4f91" stroke="#0b0c0c" {
                        title { (point.month) ": " (format!("{rate:.2}")) " per 100 visits" }
                    }
                }
            }
        }
        }
        ul class="legend" aria-label="Legend" {
            li { svg viewBox="0 0 24 16" aria-hidden="true" { line x1="0" x2="24" y1="8" y2="8" stroke="#1d4f91" stroke-width="2.5" {} } (name) }
            li { svg viewBox="0 0 24 16" aria-hidden="true" { line x1="0" x2="24" y1="8" y2="8" stroke="#0b0c0c" stroke-width="2" stroke-dasharray="6 4" {} } "Programme average" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named_as_the_contract_says() {
        assert_eq!(status_key(v1::FunnelStatus::AlarmHigh as i32), "alarm_high");
        assert_eq!(status_key(v1::FunnelStatus::Within as i32), "within");
        assert_eq!(status_key(v1::FunnelStatus::AlertLow as i32), "alert_low");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(tick_step(37.0, 5.0), 10.0);
        assert_eq!(tick_step(0.8, 5.0), 0.2);
    }
}
