//! The run's results: a table for people and a JSON summary for machines.

use std::fmt::Write as _;

use serde::Serialize;

use crate::intake::PhaseTally;
use crate::latency::LatencySummary;
use crate::machine::{CpuUsage, Machine};

/// The figures the intake is held to.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Targets {
    /// Intake complaints per second over baseline events per second, at least.
    pub min_intake_over_baseline: f64,
    /// The intake's 99th percentile latency, below.
    pub max_p99_ms: f64,
    /// Intake complaints per second over echo calls per second, at least.
    pub min_intake_over_echo: f64,
}

/// Whose CPU time the phases' `cpu` and `cpu_us_per_call` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuCounted {
    /// The server and its clients, both in this process.
    ServerAndClients,
    /// The clients only: the server is the `--target`, in another process.
    ClientsOnly,
}

impl CpuCounted {
    fn words(self) -> &'static str {
        match self {
            Self::ServerAndClients => "this process: server and clients together",
            Self::ClientsOnly => "this process: the clients only (the server is the --target)",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub backend: String,
    pub storage: String,
    /// For PostgreSQL: the server's version and durability settings.
    pub database_settings: Option<String>,
    pub machine: Machine,
    pub clients: usize,
    pub connections: usize,
    pub warmup_seconds: u64,
    pub store_appenders: usize,
    /// `--target`'s address, when the server ran elsewhere.
    pub target: Option<String>,
    /// Whose CPU time the phases count.
    pub cpu_counted: CpuCounted,
    /// The bench's trivial `Echo` through the same server, layers, clients and connections.
    pub echo: Option<PhaseSummary>,
    /// Why there is no echo phase, when there is none.
    pub echo_skipped: Option<String>,
    /// `LogComplaint` through the real server.
    pub intake: PhaseSummary,
    /// Intake complaints per second over echo calls per second.
    pub intake_over_echo: Option<f64>,
    /// CPU µs per complaint over CPU µs per echo call.
    pub cpu_intake_over_echo: Option<f64>,
    /// The same for the `--target` server's own CPU, read from its metrics (`--metrics`).
    pub server_cpu_intake_over_echo: Option<f64>,
    /// One appender straight on the store: one event per transaction (not with `--target`).
    pub baseline: Option<PhaseSummary>,
    /// Many appenders straight on the store, without the server: what group commit gives.
    pub store_concurrent: Option<PhaseSummary>,
    /// Bytes of payload and metadata JSON in each event appended straight to the store.
    pub store_event_bytes: usize,
    pub intake_over_baseline: Option<f64>,
    pub checks: Vec<TargetCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub completed: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: LatencySummary,
    pub cpu: Option<CpuUsage>,
    /// Process CPU time per completed call, in µs (see [`Summary::cpu_counted`]).
    pub cpu_us_per_call: Option<f64>,
    /// The `--target` server's CPU time per completed call, in µs, from its metrics.
    pub server_cpu_us_per_call: Option<f64>,
    /// Transactions the store committed, when the phase could see them.
    pub commits: Option<u64>,
}

/// CPU µs per call; none without calls or without a CPU reading.
pub fn cpu_us_per_call(cpu_seconds: Option<f64>, calls: u64) -> Option<f64> {
    let seconds = cpu_seconds?;
    (calls > 0).then(|| seconds * 1e6 / calls as f64)
}

/// `numerator / denominator`, when both are finite and the denominator is above zero.
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (numerator.is_finite() && denominator.is_finite() && denominator > 0.0)
        .then(|| numerator / denominator)
}

impl PhaseSummary {
    pub fn from_tally(tally: &PhaseTally, commits: Option<u64>) -> Self {
        Self {
            completed: tally.completed,
            errors: tally.errors,
            error_samples: tally.error_samples.clone(),
            seconds: tally.elapsed.as_secs_f64(),
            per_second: tally.per_second(),
            latency: tally.latency.summary(),
            cpu: tally.cpu,
            cpu_us_per_call: cpu_us_per_call(
                tally.cpu.map(|cpu| cpu.process_cpu_seconds),
                tally.completed,
            ),
            server_cpu_us_per_call: cpu_us_per_call(tally.server_cpu_seconds, tally.completed),
            commits,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub target: String,
    pub actual: String,
    pub pass: bool,
}

impl Summary {
    pub fn errors(&self) -> u64 {
        self.phases().iter().map(|(_, phase)| phase.errors).sum()
    }

    fn phases(&self) -> Vec<(String, &PhaseSummary)> {
        let mut phases = Vec::new();
        if let Some(echo) = &self.echo {
            phases.push(("echo: trivial call, same stack".to_owned(), echo));
        }
        phases.push(("intake: LogComplaint over gRPC".to_owned(), &self.intake));
        if let Some(baseline) = &self.baseline {
            phases.push(("baseline: store, 1 appender".to_owned(), baseline));
        }
        if let Some(store_concurrent) = &self.store_concurrent {
            phases.push((
                format!("store, {} appenders", self.store_appenders),
                store_concurrent,
            ));
        }
        phases
    }

    /// Judges the intake against `targets`; a ratio needs its other phase to have run and done
    /// something, and is left out when the phase was skipped.
    pub fn check(&mut self, targets: Targets) {
        let p99 = self.intake.latency.p99_ms;
        self.checks = Vec::new();
        let ratios = [
            (
                "intake / echo",
                self.echo.is_some(),
                self.intake_over_echo,
                targets.min_intake_over_echo,
            ),
            (
                "intake / baseline",
                self.baseline.is_some(),
                self.intake_over_baseline,
                targets.min_intake_over_baseline,
            ),
        ];
        for (name, ran, actual, target) in ratios {
            if ran {
                self.checks.push(TargetCheck {
                    name: name.to_owned(),
                    target: format!(">= {target:.2}x"),
                    actual: actual.map_or("n/a".to_owned(), |ratio| format!("{ratio:.2}x")),
                    pass: actual.is_some_and(|ratio| ratio >= target),
                });
            }
        }
        self.checks.push(TargetCheck {
            name: format!("intake p99, {} clients", self.clients),
            target: format!("< {:.1} ms", targets.max_p99_ms),
            actual: format!("{p99:.2} ms"),
            pass: self.intake.completed > 0 && p99 < targets.max_p99_ms,
        });
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        match &self.target {
            Some(target) => {
                let _ = writeln!(
                    out,
                    "Doorstep intake benchmark: the server at {target}, {} clients over {} \
                     HTTP/2 connections",
                    self.clients, self.connections
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "Doorstep intake benchmark: {} ({}), {} clients over {} HTTP/2 connections",
                    self.backend, self.storage, self.clients, self.connections
                );
            }
        }
        let _ = writeln!(
            out,
            "machine: {} CPUs, {} GiB RAM{}",
            machine.cpus,
            machine
                .memory_gib
                .map_or("?".to_owned(), |gib| format!("{gib:.1}")),
            machine
                .data_filesystem
                .as_ref()
                .map_or(String::new(), |filesystem| format!(
                    ", data on {filesystem}"
                ))
        );
        if let Some(settings) = &self.database_settings {
            let _ = writeln!(out, "database: {settings}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<31} {:>8} {:>5} {:>8} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6} {:>10} {:>15} {:>9}",
            "phase",
            "count",
            "secs",
            "per sec",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "per commit",
            "cpu proc/busy/io",
            "cpu µs/op"
        );
        for (name, phase) in self.phases() {
            let _ = writeln!(out, "{}", phase_row(&name, phase));
        }
        if self.baseline.is_some() {
            let _ = writeln!(
                out,
                "(store phases append {}-byte events (payload and metadata JSON) like the \
                 intake's; per commit: events per transaction)",
                self.store_event_bytes
            );
        }
        let _ = writeln!(
            out,
            "(cpu: this process in % of one core / machine busy % / machine iowait %; a \
             PostgreSQL server's own CPU shows only in machine busy;\n cpu µs/op: process CPU \
             time per completed call, counting {})",
            self.cpu_counted.words()
        );
        for (name, phase) in self.phases() {
            if let Some(micros) = phase.server_cpu_us_per_call {
                let _ = writeln!(
                    out,
                    "server CPU (its process_cpu_time_seconds_total) in {name}: {micros:.0} µs/op"
                );
            }
        }
        if let Some(reason) = &self.echo_skipped {
            let _ = writeln!(out, "no echo phase: {reason}");
        }
        let _ = writeln!(out);
        let shown =
            |ratio: Option<f64>| ratio.map_or("n/a".to_owned(), |ratio| format!("{ratio:.2}x"));
        if self.echo.is_some() {
            let _ = writeln!(
                out,
                "intake / echo = {} (calls per second); cpu per complaint / cpu per echo = {}",
                shown(self.intake_over_echo),
                shown(self.cpu_intake_over_echo)
            );
            if self.server_cpu_intake_over_echo.is_some() {
                let _ = writeln!(
                    out,
                    "server cpu per complaint / server cpu per echo = {}",
                    shown(self.server_cpu_intake_over_echo)
                );
            }
        }
        if self.baseline.is_some() {
            let _ = writeln!(
                out,
                "intake / baseline = {}",
                shown(self.intake_over_baseline)
            );
        }
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{:<4} {:<30} target {:<10} actual {}",
                if check.pass { "PASS" } else { "MISS" },
                check.name,
                check.target,
                check.actual
            );
        }
        for (name, phase) in self.phases() {
            if phase.errors > 0 {
                let _ = writeln!(out, "ERRORS in {name}: {}", phase.errors);
                for sample in &phase.error_samples {
                    let _ = writeln!(out, "  {sample}");
                }
            }
        }
        out
    }
}

fn phase_row(name: &str, phase: &PhaseSummary) -> String {
    let latency = &phase.latency;
    let cpu = phase.cpu.map_or("n/a".to_owned(), |cpu| {
        format!(
            "{:.0}%/{:.0}%/{:.0}%",
            cpu.process_percent_of_one_core, cpu.machine_busy_percent, cpu.machine_iowait_percent
        )
    });
    let per_commit = phase
        .commits
        .filter(|commits| *commits > 0)
        .map_or("-".to_owned(), |commits| {
            format!("{:.1}", phase.completed as f64 / commits as f64)
        });
    let cpu_per_call = phase
        .cpu_us_per_call
        .map_or("n/a".to_owned(), |micros| format!("{micros:.0}"));
    format!(
        "{:<31} {:>8} {:>5.1} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>7.2} {:>6} {:>10} {:>15} {:>9}",
        name,
        phase.completed,
        phase.seconds,
        phase.per_second,
        latency.p50_ms,
        latency.p90_ms,
        latency.p99_ms,
        latency.p999_ms,
        latency.max_ms,
        phase.errors,
        per_commit,
        cpu,
        cpu_per_call
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_call_is_cpu_seconds_over_calls_in_microseconds() {
        assert_eq!(cpu_us_per_call(Some(1.5), 1_500), Some(1_000.0));
        assert_eq!(cpu_us_per_call(Some(0.25), 1_000), Some(250.0));
        assert_eq!(cpu_us_per_call(Some(1.0), 0), None);
        assert_eq!(cpu_us_per_call(None, 10), None);
    }

    #[test]
    fn a_ratio_needs_a_positive_finite_denominator() {
        assert_eq!(ratio(1_400.0, 20_000.0), Some(0.07));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, f64::NAN), None);
        assert_eq!(ratio(f64::INFINITY, 2.0), None);
    }
}
