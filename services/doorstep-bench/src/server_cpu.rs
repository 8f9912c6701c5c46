//! The server's own CPU time, read from its Prometheus endpoint (`--metrics`), so a run against
//! a `--target` elsewhere reports the server's CPU per call beside the clients'.

use std::time::Duration;

use anyhow::{Context, anyhow};

/// The counter the server exports (`process.cpu.time` in OpenTelemetry's naming).
const CPU_SECONDS_METRIC: &str = "process_cpu_time_seconds_total";
/// A scrape that takes longer is a failure: the phase's figure would be skewed anyway.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A server's scrape endpoint.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    client: reqwest::Client,
    url: String,
}

impl ServerMetrics {
    /// The endpoint at `address` (`host:port`), checked by one scrape that must carry the
    /// server's CPU time.
    pub async fn connect(address: &str) -> anyhow::Result<Self> {
        // reqwest's rustls wants a process-wide provider even for plain http:// (the workspace
        // builds it without one); another part of the process may have installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .build()
            .context("building the metrics client")?;
        let metrics = Self {
            client,
            url: format!("http://{address}/metrics"),
        };
        metrics.cpu_seconds().await?;
        Ok(metrics)
    }

    /// The server's CPU time so far, in seconds.
    pub async fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let text = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("scraping {}", self.url))?
            .text()
            .await
            .with_context(|| format!("reading {}", self.url))?;
        cpu_seconds(&text).ok_or_else(|| anyhow!("{} has no {CPU_SECONDS_METRIC}", self.url))
    }
}

/// The value of the CPU time counter in Prometheus' text format (with or without labels).
fn cpu_seconds(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(CPU_SECONDS_METRIC)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        rest.rsplit_once(' ')?.1.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::cpu_seconds;

    #[test]
    fn the_counter_is_read_with_or_without_labels_and_not_mistaken_for_another() {
        let text = "\
# HELP process_cpu_time_seconds_total CPU time this process has used
# TYPE process_cpu_time_seconds_total counter
process_cpu_time_seconds_total_other 9
process_cpu_time_seconds_total{otel_scope_name=\"doorstep\"} 12.34
";
        assert_eq!(cpu_seconds(text), Some(12.34));
        assert_eq!(
            cpu_seconds("process_cpu_time_seconds_total 0.5\n"),
            Some(0.5)
        );
        assert_eq!(cpu_seconds("up 1\n"), None);
    }
}
