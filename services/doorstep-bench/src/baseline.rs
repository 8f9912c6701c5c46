//! The store on its own, without the server: appends straight through the `EventStore` trait.
//!
//! With one appender (the baseline) every append waits for the previous one, so each event is
//! its own transaction and fsync: the store's group commit never has two appends to share a
//! commit between. With many appenders the same store shows what group commit can do before any
//! gRPC, parsing or domain work is added.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use doorstep_store::{EventStore, ExpectedVersion, StreamId};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::intake::{PhaseTally, keep_error_sample};
use crate::machine::CpuSnapshot;
use crate::workload::EventTemplate;

/// Runs `appenders` tasks, each appending `template` as the first event of a new stream and
/// waiting for it before the next, until `duration` is up. Each complaint is its own stream in
/// Doorstep, so every append has the shape of one intake.
pub async fn append_for(
    store: Arc<dyn EventStore>,
    template: Arc<EventTemplate>,
    appenders: usize,
    duration: Duration,
) -> anyhow::Result<PhaseTally> {
    let cpu_at_start = CpuSnapshot::now();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..appenders.max(1) {
        tasks.spawn(append_until(
            Arc::clone(&store),
            Arc::clone(&template),
            deadline,
        ));
    }
    let mut tally = PhaseTally::empty()?;
    while let Some(joined) = tasks.join_next().await {
        let task_tally = joined.map_err(|error| anyhow!("an appender task failed: {error}"))??;
        tally.absorb(task_tally)?;
    }
    tally.elapsed = started.elapsed();
    tally.cpu = CpuSnapshot::usage_since(&cpu_at_start);
    Ok(tally)
}

async fn append_until(
    store: Arc<dyn EventStore>,
    template: Arc<EventTemplate>,
    deadline: Instant,
) -> anyhow::Result<PhaseTally> {
    let mut tally = PhaseTally::empty()?;
    while Instant::now() < deadline {
        let stream = StreamId::new("complaint", Uuid::now_v7());
        let event = template.new_event();
        let append_started = Instant::now();
        let outcome = store
            .append(&stream, ExpectedVersion::NoStream, vec![event])
            .await;
        match outcome {
            Ok(_) => {
                tally.completed += 1;
                tally.latency.record(append_started.elapsed());
            }
            Err(error) => {
                tally.errors += 1;
                keep_error_sample(
                    &mut tally.error_samples,
                    format!("{:#}", anyhow::Error::new(error)),
                );
            }
        }
    }
    Ok(tally)
}
