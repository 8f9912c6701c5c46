//! What the notifier counts, through the OpenTelemetry API (the binary installs the exporters).

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

/// How a delivery attempt ended, as the `outcome` attribute names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeliveryOutcome {
    Delivered,
    /// Failed; another attempt is scheduled.
    Failed,
    /// Failed for the last time.
    DeadLettered,
}

impl DeliveryOutcome {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Clone)]
pub(crate) struct NotifierMetrics {
    escalations_raised: Counter<u64>,
    deliveries: Counter<u64>,
    set_aside: Counter<u64>,
}

impl NotifierMetrics {
    pub(crate) fn new() -> Self {
        let meter = opentelemetry::global::meter(doorstep_telemetry::SCOPE);
        Self {
            escalations_raised: meter
                .u64_counter("doorstep.escalations.raised")
                .with_unit("{escalation}")
                .with_description("Escalations raised by this process, by deadline and level")
                .build(),
            deliveries: meter
                .u64_counter("doorstep.notifier.deliveries")
                .with_unit("{attempt}")
                .with_description(
                    "Delivery attempts by channel and outcome: delivered, failed (to be retried) \
                     or dead_lettered",
                )
                .build(),
            set_aside: meter
                .u64_counter("doorstep.notifier.rows_set_aside")
                .with_unit("{row}")
                .with_description(
                    "Schedule and outbox rows the notifier could not read and set aside (kept \
                     with the reason) instead of retrying them, by table",
                )
                .build(),
        }
    }

    pub(crate) fn row_set_aside(&self, table: &'static str) {
        self.set_aside.add(1, &[KeyValue::new("table", table)]);
    }

    pub(crate) fn escalation_raised(&self, deadline: &'static str, level: &str) {
        self.escalations_raised.add(
            1,
            &[
                KeyValue::new("deadline", deadline),
                KeyValue::new("level", level.to_owned()),
            ],
        );
    }

    pub(crate) fn delivery(&self, channel: &'static str, outcome: DeliveryOutcome) {
        self.deliveries.add(
            1,
            &[
                KeyValue::new("channel", channel),
                KeyValue::new("outcome", outcome.code()),
            ],
        );
    }
}
