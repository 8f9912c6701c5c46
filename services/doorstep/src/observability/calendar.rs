//! How long the working-day calendar still covers. A step whose deadline falls after the
//! calendar's last year is refused, so operators are told well before that day comes: a warning
//! at start-up once the calendar ends within a year, and a gauge of the days left.

use std::sync::Arc;

use doorstep_domain::{WorkingDayCalendar, england_date};
use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;

use crate::clock::Clock;

/// A calendar that ends within this many days is warned about at start-up.
pub const WARN_WITHIN_DAYS: i64 = 365;

/// Days from `today` to the last day the calendar covers (negative once it has passed).
pub fn days_remaining(calendar: &WorkingDayCalendar, today: chrono::NaiveDate) -> i64 {
    (*calendar.covered().end() - today).num_days()
}

/// Keeps the `doorstep.calendar.coverage.remaining` gauge alive; dropping it stops reporting.
pub struct CalendarCoverage {
    _remaining: ObservableGauge<i64>,
}

impl CalendarCoverage {
    /// Logs the calendar's range (a warning when it ends within [`WARN_WITHIN_DAYS`]) and
    /// reports the days left as a gauge labelled with the calendar's version.
    pub fn watch(calendar: &WorkingDayCalendar, clock: Arc<dyn Clock>) -> Self {
        let covered = calendar.covered();
        let remaining = days_remaining(calendar, england_date(clock.now()));
        if remaining < WARN_WITHIN_DAYS {
            tracing::warn!(
                covered_from = %covered.start(),
                covered_until = %covered.end(),
                days_remaining = remaining,
                "the working-day calendar ends within 12 months: steps whose deadlines fall \
                 after it will be refused; set `calendar.bank_holidays_file` to GOV.UK's latest \
                 bank-holidays.json"
            );
        } else {
            tracing::info!(
                covered_from = %covered.start(),
                covered_until = %covered.end(),
                "the working-day calendar's range"
            );
        }
        let end = *covered.end();
        let version = KeyValue::new("calendar", calendar.version().to_owned());
        let remaining = opentelemetry::global::meter(doorstep_telemetry::SCOPE)
            .i64_observable_gauge("doorstep.calendar.coverage.remaining")
            .with_unit("d")
            .with_description(
                "Days until the last day the working-day calendar covers; deadlines after it \
                 are refused",
            )
            .with_callback(move |observer| {
                let today = england_date(clock.now());
                observer.observe((end - today).num_days(), std::slice::from_ref(&version));
            })
            .build();
        Self {
            _remaining: remaining,
        }
    }
}
