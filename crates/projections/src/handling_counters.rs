//! Counters behind the complaint-handling figures, so that every report reads a few rows per
//! month however many complaints the log holds.
//!
//! A complaint's handling row contributes a fixed set of counts (see [`contributions`]): to its
//! contractor, in the month it was received (complaints, escalated, reopened, answered stages and
//! whether in time, working days to acknowledge and to respond as histograms); and landlord-wide,
//! in the month of each date the regulator counts (CH01: stage 1 receipt and stage 2 escalation;
//! CH02: each stage's response and whether it was in time). When a batch changes a row, the
//! counters move by what the new row contributes minus what the old one did, so they stay exact
//! whatever the order of events.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use doorstep_domain::WorkingDayCalendar;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyPool};

use crate::ProjectionError;
use crate::handling::{HandlingCounts, HandlingRow, StageClock, StageCounts, count};
use crate::month::Month;
use crate::upsert::MultiRowUpsert;

/// The `contractor_id` of the landlord-wide counters.
const LANDLORD_WIDE: &str = "";

const COMPLAINTS: &str = "complaints";
const ESCALATED: &str = "escalated";
const REOPENED: &str = "reopened";
const ANSWERED: &str = "answered";
const ANSWERED_WITHIN_ORIGINAL_DUE: &str = "answered_within_original_due";
const ANSWERED_WITHIN_EXTENDED_DUE: &str = "answered_within_extended_due";
const DAYS_TO_ACKNOWLEDGE: &str = "days_to_acknowledge";
const DAYS_TO_RESPOND: &str = "days_to_respond";

/// CH01/CH02 metrics, per stage: received, responded, within the original due date, within the
/// extended one.
const STAGE_ONE: [&str; 4] = [
    "stage_one_received",
    "stage_one_responded",
    "stage_one_responded_within_original_due",
    "stage_one_responded_within_extended_due",
];
const STAGE_TWO: [&str; 4] = [
    "stage_two_received",
    "stage_two_responded",
    "stage_two_responded_within_original_due",
    "stage_two_responded_within_extended_due",
];

/// One counter: whose, what, which month, and (for histograms) which value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CounterKey {
    contractor_id: String,
    metric: &'static str,
    month: Month,
    value: i64,
}

/// The counts one complaint's handling row adds.
fn contributions(row: &HandlingRow, calendar: &WorkingDayCalendar) -> Vec<CounterKey> {
    let mut keys = Vec::new();
    let mut contractor = |metric: &'static str, value: i64| {
        keys.push(CounterKey {
            contractor_id: row.contractor_id.clone(),
            metric,
            month: row.month,
            value,
        });
    };
    contractor(COMPLAINTS, 0);
    if row.escalated {
        contractor(ESCALATED, 0);
    }
    if row.reopen_count > 0 {
        contractor(REOPENED, 0);
    }
    let days = |from: NaiveDate, to: NaiveDate| calendar.working_days_between(from, to).max(0);
    for clock in std::iter::once(&row.stage_one).chain(row.stage_two.as_ref()) {
        if let Some(acknowledged) = clock.acknowledged {
            contractor(DAYS_TO_ACKNOWLEDGE, days(clock.started, acknowledged));
        }
        if let Some(responded) = clock.responded {
            contractor(DAYS_TO_RESPOND, days(clock.started, responded));
            contractor(ANSWERED, 0);
            if clock.responded_within_original_due() == Some(true) {
                contractor(ANSWERED_WITHIN_ORIGINAL_DUE, 0);
            }
            if clock.responded_within_extended_due() == Some(true) {
                contractor(ANSWERED_WITHIN_EXTENDED_DUE, 0);
            }
        }
    }

    let mut landlord = |metric: &'static str, date: NaiveDate| {
        keys.push(CounterKey {
            contractor_id: LANDLORD_WIDE.to_owned(),
            metric,
            month: Month::of(date),
            value: 0,
        });
    };
    let mut stage = |metrics: [&'static str; 4], clock: &StageClock| {
        landlord(metrics[0], clock.started);
        if let Some(responded) = clock.responded {
            landlord(metrics[1], responded);
            if clock.responded_within_original_due() == Some(true) {
                landlord(metrics[2], responded);
            }
            if clock.responded_within_extended_due() == Some(true) {
                landlord(metrics[3], responded);
            }
        }
    };
    stage(STAGE_ONE, &row.stage_one);
    if let Some(clock) = &row.stage_two {
        stage(STAGE_TWO, clock);
    }
    keys
}

/// Adds deltas to `liaison_handling_counters`; bound by [`bind`].
pub(crate) const UPSERT_LEADS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO liaison_handling_counters (liaison_lead, metric, month, value, count)",
    width: 5,
    on_conflict: "ON CONFLICT (liaison_lead, metric, month, value) DO UPDATE SET \
                  count = liaison_handling_counters.count + excluded.count",
};

/// Counter deltas gathered over a batch, by key. Hashed rather than ordered: a batch adds a
/// few dozen keys per changed row, and keeping them ordered as they came (a `BTreeMap`, whose
/// keys start with an id) was most of the comparing a rebuild's applying task did.
pub(crate) type CounterDeltas = HashMap<CounterKey, i64, foldhash::fast::RandomState>;

/// Moves the counters by what `after` contributes minus what `before` did (a row the batch
/// started contributed nothing), in `handling_counters` (`counters`) and in the liaison leads'
/// `liaison_handling_counters` (`leads`: the contractor's counts, kept under the lead's code
/// instead of the contractor id, '' for unknown).
pub(crate) fn add_change(
    counters: &mut CounterDeltas,
    leads: &mut CounterDeltas,
    before: Option<&HandlingRow>,
    after: &HandlingRow,
    calendar: &WorkingDayCalendar,
) {
    let mut add = |row: &HandlingRow, sign: i64| {
        let lead = crate::handling::lead_code(row.liaison_lead);
        for key in contributions(row, calendar) {
            if key.contractor_id != LANDLORD_WIDE {
                let lead_key = CounterKey {
                    contractor_id: lead.to_owned(),
                    ..key.clone()
                };
                *leads.entry(lead_key).or_default() += sign;
            }
            *counters.entry(key).or_default() += sign;
        }
    };
    if let Some(before) = before {
        add(before, -1);
    }
    add(after, 1);
}

/// The deltas that move a counter, in key order: the order every batch writes them in, so that
/// two replicas' batches on PostgreSQL take the rows' locks in the same order.
pub(crate) fn in_key_order(deltas: CounterDeltas) -> Vec<(CounterKey, i64)> {
    let mut deltas: Vec<_> = deltas
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .collect();
    deltas.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    deltas
}

/// Adds deltas to `handling_counters`; bound by [`bind`].
pub(crate) const UPSERT: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO handling_counters (contractor_id, metric, month, value, count)",
    width: 5,
    on_conflict: "ON CONFLICT (contractor_id, metric, month, value) DO UPDATE SET \
                  count = handling_counters.count + excluded.count",
};

pub(crate) fn bind<'q>(
    query: Query<'q, Any, AnyArguments>,
    (key, delta): &(CounterKey, i64),
) -> Query<'q, Any, AnyArguments> {
    query
        .bind(key.contractor_id.clone())
        .bind(key.metric)
        .bind(key.month.to_string())
        .bind(key.value)
        .bind(*delta)
}

/// How one contractor's complaints received in a range of months were handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlingSummary {
    pub complaints: u64,
    /// Complaints escalated to stage 2.
    pub escalations: u64,
    /// Complaints reopened at least once.
    pub reopened: u64,
    /// Stages answered (each stage of a complaint counts once).
    pub answered: u64,
    /// Of those, answered by the deadline set at acknowledgement.
    pub answered_within_original_due: u64,
    /// Of those, answered by the deadline including any extension.
    pub answered_within_extended_due: u64,
    /// Stages acknowledged, by working days from the stage's start: (days, stages), ascending.
    pub days_to_acknowledge: Vec<(i64, u64)>,
    /// Stages answered, by working days from the stage's start: (days, stages), ascending.
    pub days_to_respond: Vec<(i64, u64)>,
}

fn add_to_summary(summary: &mut HandlingSummary, metric: &str, value: i64, n: u64) {
    match metric {
        COMPLAINTS => summary.complaints += n,
        ESCALATED => summary.escalations += n,
        REOPENED => summary.reopened += n,
        ANSWERED => summary.answered += n,
        ANSWERED_WITHIN_ORIGINAL_DUE => summary.answered_within_original_due += n,
        ANSWERED_WITHIN_EXTENDED_DUE => summary.answered_within_extended_due += n,
        DAYS_TO_ACKNOWLEDGE if n > 0 => summary.days_to_acknowledge.push((value, n)),
        DAYS_TO_RESPOND if n > 0 => summary.days_to_respond.push((value, n)),
        _ => {}
    }
}

/// Each liaison lead's handling summary for complaints received in `from..=to`, by stored lead
/// code ('' for unknown); a lead with no counters is absent.
pub(crate) async fn lead_summaries(
    pool: &AnyPool,
    from: Month,
    to: Month,
) -> Result<BTreeMap<String, HandlingSummary>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT liaison_lead, metric, value, CAST(SUM(count) AS BIGINT) AS n \
         FROM liaison_handling_counters WHERE month >= $1 AND month <= $2 \
         GROUP BY liaison_lead, metric, value ORDER BY liaison_lead, metric, value",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(pool)
    .await?;
    let mut summaries: BTreeMap<String, HandlingSummary> = BTreeMap::new();
    for row in &rows {
        let lead: String = sqlx::Row::try_get(row, "liaison_lead")?;
        let metric: String = sqlx::Row::try_get(row, "metric")?;
        let value: i64 = sqlx::Row::try_get(row, "value")?;
        let n = count(row, "n")?;
        add_to_summary(summaries.entry(lead).or_default(), &metric, value, n);
    }
    Ok(summaries)
}

/// One contractor's handling summary for complaints received in `from..=to`.
pub(crate) async fn contractor_summary(
    pool: &AnyPool,
    contractor_id: &str,
    from: Month,
    to: Month,
) -> Result<HandlingSummary, ProjectionError> {
    let rows = sqlx::query(
        "SELECT metric, value, CAST(SUM(count) AS BIGINT) AS n FROM handling_counters \
         WHERE contractor_id = $1 AND month >= $2 AND month <= $3 \
         GROUP BY metric, value ORDER BY metric, value",
    )
    .bind(contractor_id)
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(pool)
    .await?;
    let mut summary = HandlingSummary::default();
    for row in &rows {
        let metric: String = sqlx::Row::try_get(row, "metric")?;
        let value: i64 = sqlx::Row::try_get(row, "value")?;
        let n = count(row, "n")?;
        add_to_summary(&mut summary, &metric, value, n);
    }
    Ok(summary)
}

/// Each stage's CH01/CH02 counts for the months `from..=to`, landlord-wide.
pub(crate) async fn report(
    pool: &AnyPool,
    from: Month,
    to: Month,
) -> Result<HandlingCounts, ProjectionError> {
    let rows = sqlx::query(
        "SELECT metric, CAST(SUM(count) AS BIGINT) AS n FROM handling_counters \
         WHERE contractor_id = $1 AND month >= $2 AND month <= $3 GROUP BY metric",
    )
    .bind(LANDLORD_WIDE)
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(pool)
    .await?;
    let mut totals = BTreeMap::new();
    for row in &rows {
        let metric: String = sqlx::Row::try_get(row, "metric")?;
        totals.insert(metric, count(row, "n")?);
    }
    let stage = |metrics: [&str; 4]| {
        let total = |metric: &str| totals.get(metric).copied().unwrap_or(0);
        StageCounts {
            received: total(metrics[0]),
            responded: total(metrics[1]),
            responded_within_original_due: total(metrics[2]),
            responded_within_extended_due: total(metrics[3]),
        }
    };
    Ok(HandlingCounts {
        stage_one: stage(STAGE_ONE),
        stage_two: stage(STAGE_TWO),
    })
}
