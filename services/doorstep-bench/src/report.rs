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
    /// `LogComplaint` through the real server.
    pub intake: PhaseSummary,
    /// One appender straight on the store: one event per transaction.
    pub baseline: PhaseSummary,
    /// Many appenders straight on the store, without the server: what group commit gives.
    pub store_concurrent: Option<PhaseSummary>,
    /// Bytes of payload and metadata JSON in each event appended straight to the store.
    pub store_event_bytes: usize,
    pub intake_over_baseline: f64,
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
    /// Transactions the store committed, when the phase could see them.
    pub commits: Option<u64>,
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
        let mut phases = vec![
            ("intake: LogComplaint over gRPC".to_owned(), &self.intake),
            ("baseline: store, 1 appender".to_owned(), &self.baseline),
        ];
        if let Some(store_concurrent) = &self.store_concurrent {
            phases.push((
                format!("store, {} appenders", self.store_appenders),
                store_concurrent,
            ));
        }
        phases
    }

    /// Judges the intake against `targets`; the ratio needs a baseline that wrote something.
    pub fn check(&mut self, targets: Targets) {
        let ratio = self.intake_over_baseline;
        let p99 = self.intake.latency.p99_ms;
        self.checks = vec![
            TargetCheck {
                name: "intake / baseline".to_owned(),
                target: format!(">= {:.1}x", targets.min_intake_over_baseline),
                actual: format!("{ratio:.2}x"),
                pass: ratio.is_finite() && ratio >= targets.min_intake_over_baseline,
            },
            TargetCheck {
                name: format!("intake p99, {} clients", self.clients),
                target: format!("< {:.1} ms", targets.max_p99_ms),
                actual: format!("{p99:.2} ms"),
                pass: self.intake.completed > 0 && p99 < targets.max_p99_ms,
            },
        ];
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        let _ = writeln!(
            out,
            "Doorstep intake benchmark: {} ({}), {} clients over {} HTTP/2 connections",
            self.backend, self.storage, self.clients, self.connections
        );
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
            "{:<31} {:>8} {:>5} {:>8} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6} {:>10} {:>15}",
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
            "cpu proc/busy/io"
        );
        for (name, phase) in self.phases() {
            let _ = writeln!(out, "{}", phase_row(&name, phase));
        }
        let _ = writeln!(
            out,
            "(store phases append {}-byte events (payload and metadata JSON) like the intake's; \
             per commit: events per transaction;\n cpu: this process in % of one core / machine \
             busy % / machine iowait %; a PostgreSQL server's own CPU shows only in machine busy)",
            self.store_event_bytes
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "intake / baseline = {:.2}x", self.intake_over_baseline);
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
    format!(
        "{:<31} {:>8} {:>5.1} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>7.2} {:>6} {:>10} {:>15}",
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
        cpu
    )
}
