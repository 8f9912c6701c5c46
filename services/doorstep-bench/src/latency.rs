//! Per-call latencies, recorded in microseconds in an HDR histogram and reported in milliseconds.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// The slowest latency the histogram tells apart; slower calls are recorded as this. Every call
/// has a 30 s timeout, so nothing real is clipped.
const HIGHEST_MICROS: u64 = 60_000_000;

/// Latencies recorded by one task; tasks' recorders are merged at the end.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl LatencyRecorder {
    pub fn new() -> anyhow::Result<Self> {
        // Three significant digits: 0.1% resolution at any latency.
        let histogram = Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
            .context("creating the latency histogram")?;
        Ok(Self { histogram })
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("merging latency histograms")
    }

    pub fn summary(&self) -> LatencySummary {
        let millis = |micros: u64| micros as f64 / 1000.0;
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            calls: self.histogram.len(),
            mean_ms: self.histogram.mean() / 1000.0,
            p50_ms: millis(self.histogram.value_at_quantile(0.50)),
            p90_ms: millis(self.histogram.value_at_quantile(0.90)),
            p99_ms: millis(self.histogram.value_at_quantile(0.99)),
            p999_ms: millis(self.histogram.value_at_quantile(0.999)),
            max_ms: millis(self.histogram.max()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    pub calls: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}
