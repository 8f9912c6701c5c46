//! The process's own CPU time as a metric (`process.cpu.time`, served to Prometheus as
//! `process_cpu_time_seconds_total`), so a benchmark driving a server from elsewhere can read
//! the server's CPU per call. Linux only: elsewhere the counter reports nothing.

use opentelemetry::metrics::{Meter, ObservableCounter};

/// Linux reports CPU time in clock ticks; `USER_HZ` is 100 on every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// The counter, observed at each collection from `/proc/self/stat`.
pub(crate) fn cpu_time_counter(meter: &Meter) -> ObservableCounter<f64> {
    meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("CPU time this process has used, user plus system")
        .with_callback(|observer| {
            if let Some(seconds) = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .as_deref()
                .and_then(cpu_seconds)
            {
                observer.observe(seconds, &[]);
            }
        })
        .build()
}

/// User plus system time from the text of `/proc/<pid>/stat` (fields 14 and 15), in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses; every field after its last
    // closing parenthesis is numeric, and field 3 is the first of them.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_added_after_a_name_with_spaces() {
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 125 0 0 20 0 8";
        assert_eq!(cpu_seconds(stat), Some(3.75));
    }

    #[test]
    fn a_truncated_line_gives_nothing() {
        assert_eq!(cpu_seconds("4242 (doorstep) S 1 4242"), None);
    }
}
