//! Contractor performance counters: visits (the exposure), reported and upheld breaches per
//! standard, and visits with at least one upheld breach, each per contractor and month.
//!
//! Every figure is a counter kept exact as events arrive, so a report reads a handful of rows
//! per contractor and month however long the log grows:
//!
//! - `contractor_month_standard` counts, by the month a complaint was received, the standards it
//!   alleged and the current finding on each. `complaint_findings` remembers a complaint's
//!   current finding per standard, so a finding changed at stage 2 moves one count from the old
//!   outcome to the new one.
//! - `visits` holds each visit's upheld (or partly upheld) breaches from the complaints that name
//!   it, and `contractor_month_visits` the visits per contractor and visit month with the number
//!   of those visits that have at least one such breach. A complaint may name a visit before the
//!   work-order system has recorded it (or one it never records): its breaches wait on a `visits`
//!   row without a contractor, which the visit joins when it is recorded.

use std::collections::BTreeMap;

use doorstep_domain::ServiceStandard;
use doorstep_domain::complaint::FindingOutcome;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};

use crate::ProjectionError;
use crate::handling::count;
use crate::handling_counters::{self, HandlingSummary};
use crate::month::Month;
use crate::upsert::MultiRowUpsert;

/// Whether a finding makes the standard a breach: only upheld findings count, partly upheld
/// included; a complaint is an allegation until investigated.
pub fn is_breach(outcome: FindingOutcome) -> bool {
    matches!(
        outcome,
        FindingOutcome::Upheld | FindingOutcome::PartlyUpheld
    )
}

/// How one standard's counters of one contractor and month change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StandardDelta {
    pub reported: i64,
    pub upheld: i64,
    pub partly_upheld: i64,
    pub not_upheld: i64,
}

impl StandardDelta {
    fn outcome(outcome: FindingOutcome, by: i64) -> Self {
        match outcome {
            FindingOutcome::Upheld => Self {
                upheld: by,
                ..Self::default()
            },
            FindingOutcome::PartlyUpheld => Self {
                partly_upheld: by,
                ..Self::default()
            },
            FindingOutcome::NotUpheld => Self {
                not_upheld: by,
                ..Self::default()
            },
        }
    }

    pub(crate) fn plus(self, other: Self) -> Self {
        Self {
            reported: self.reported + other.reported,
            upheld: self.upheld + other.upheld,
            partly_upheld: self.partly_upheld + other.partly_upheld,
            not_upheld: self.not_upheld + other.not_upheld,
        }
    }
}

/// What a finding changes: the standard's counters, and the upheld breaches of the complaint's
/// visit (+1, -1 or 0). None when the finding is the one already recorded.
pub fn finding_change(
    previous: Option<FindingOutcome>,
    finding: FindingOutcome,
) -> Option<(StandardDelta, i64)> {
    if previous == Some(finding) {
        return None;
    }
    let standard = previous.map_or_else(StandardDelta::default, |old| {
        StandardDelta::outcome(old, -1)
    });
    let standard = standard.plus(StandardDelta::outcome(finding, 1));
    let visit = i64::from(is_breach(finding)) - i64::from(previous.is_some_and(is_breach));
    Some((standard, visit))
}

/// Adds standard deltas to `contractor_month_standard`; bound by [`bind_standard_delta`].
pub(crate) const ADD_TO_STANDARD: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO contractor_month_standard \
             (contractor_id, month, standard, reported, upheld, partly_upheld, not_upheld)",
    width: 7,
    on_conflict: "ON CONFLICT (contractor_id, month, standard) DO UPDATE SET \
         reported = contractor_month_standard.reported + excluded.reported, \
         upheld = contractor_month_standard.upheld + excluded.upheld, \
         partly_upheld = contractor_month_standard.partly_upheld + excluded.partly_upheld, \
         not_upheld = contractor_month_standard.not_upheld + excluded.not_upheld",
};

pub(crate) fn bind_standard_delta<'q>(
    query: Query<'q, Any, AnyArguments>,
    contractor_id: &str,
    month: &str,
    standard: ServiceStandard,
    delta: &StandardDelta,
) -> Query<'q, Any, AnyArguments> {
    query
        .bind(contractor_id.to_owned())
        .bind(month.to_owned())
        .bind(standard.code())
        .bind(delta.reported)
        .bind(delta.upheld)
        .bind(delta.partly_upheld)
        .bind(delta.not_upheld)
}

/// Adds visit deltas to `contractor_month_visits`: contractor, month, visits, visits with an
/// upheld breach.
pub(crate) const ADD_TO_MONTH_VISITS: MultiRowUpsert = MultiRowUpsert {
    insert: "INSERT INTO contractor_month_visits \
             (contractor_id, month, visits, visits_with_upheld_breach)",
    width: 4,
    on_conflict: "ON CONFLICT (contractor_id, month) DO UPDATE SET \
         visits = contractor_month_visits.visits + excluded.visits, \
         visits_with_upheld_breach = \
         contractor_month_visits.visits_with_upheld_breach + excluded.visits_with_upheld_breach",
};

pub(crate) fn outcome_from_code(code: &str) -> Option<FindingOutcome> {
    [
        FindingOutcome::Upheld,
        FindingOutcome::PartlyUpheld,
        FindingOutcome::NotUpheld,
    ]
    .into_iter()
    .find(|outcome| outcome.code() == code)
}

/// One standard's counts for a contractor over a range of months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardFigures {
    pub standard: ServiceStandard,
    /// Complaints alleging the standard.
    pub reported: u64,
    pub upheld: u64,
    pub partly_upheld: u64,
    pub not_upheld: u64,
}

impl StandardFigures {
    /// Alleged, with no finding yet.
    pub fn pending(&self) -> u64 {
        self.reported
            .saturating_sub(self.upheld + self.partly_upheld + self.not_upheld)
    }

    /// Upheld and partly upheld: the breaches rates are computed from.
    pub fn upheld_breaches(&self) -> u64 {
        self.upheld + self.partly_upheld
    }
}

/// A contractor's figures over a range of months (both ends included). Visits count by visit
/// month; complaints, allegations and findings by the month the complaint was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractorFigures {
    pub contractor_id: String,
    pub from_month: Month,
    pub to_month: Month,
    pub visits: u64,
    pub visits_with_upheld_breach: u64,
    pub complaints: u64,
    /// Standards with at least one allegation in the range, in catalogue order.
    pub standards: Vec<StandardFigures>,
    /// Complaints received in the range that were escalated to stage 2.
    pub escalations: u64,
    /// Complaints received in the range that were reopened at least once.
    pub reopened: u64,
    /// Notifier escalations raised in the range (by month raised): every ladder step, warnings
    /// included. Not the same as `escalations`, which are residents' requests for stage 2.
    pub escalations_raised: u64,
    /// Of those, the steps raised once a deadline had passed (the breach and later levels).
    pub escalations_past_deadline: u64,
    /// How the complaints received in the range were handled: answered stages, in time or not,
    /// and working days to acknowledge and to respond.
    pub handling: HandlingSummary,
}

impl ContractorFigures {
    pub fn reported_breaches(&self) -> u64 {
        self.standards.iter().map(|s| s.reported).sum()
    }

    pub fn upheld_breaches(&self) -> u64 {
        self.standards
            .iter()
            .map(StandardFigures::upheld_breaches)
            .sum()
    }
}

/// One contractor's line in the programme-wide comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractorTotals {
    pub contractor_id: String,
    /// Empty when the contractor is not in the registry.
    pub legal_name: String,
    pub visits: u64,
    /// Upheld and partly upheld findings.
    pub upheld_breaches: u64,
    /// Standards alleged.
    pub reported: u64,
}

pub(crate) async fn contractor_performance(
    pool: &AnyPool,
    contractor_id: &str,
    from: Month,
    to: Month,
) -> Result<ContractorFigures, ProjectionError> {
    let (from_text, to_text) = (from.to_string(), to.to_string());
    let visits = sqlx::query(
        "SELECT CAST(COALESCE(SUM(visits), 0) AS BIGINT) AS visits, \
         CAST(COALESCE(SUM(visits_with_upheld_breach), 0) AS BIGINT) AS with_breach \
         FROM contractor_month_visits WHERE contractor_id = $1 AND month >= $2 AND month <= $3",
    )
    .bind(contractor_id)
    .bind(from_text.as_str())
    .bind(to_text.as_str())
    .fetch_one(pool)
    .await?;
    let standard_rows = sqlx::query(
        "SELECT standard, CAST(SUM(reported) AS BIGINT) AS reported, \
         CAST(SUM(upheld) AS BIGINT) AS upheld, \
         CAST(SUM(partly_upheld) AS BIGINT) AS partly_upheld, \
         CAST(SUM(not_upheld) AS BIGINT) AS not_upheld \
         FROM contractor_month_standard WHERE contractor_id = $1 AND month >= $2 AND month <= $3 \
         GROUP BY standard",
    )
    .bind(contractor_id)
    .bind(from_text.as_str())
    .bind(to_text.as_str())
    .fetch_all(pool)
    .await?;
    let mut standards = Vec::with_capacity(standard_rows.len());
    for row in &standard_rows {
        let code: String = row.try_get("standard")?;
        let standard =
            ServiceStandard::from_code(&code).ok_or_else(|| ProjectionError::CorruptRecord {
                table: "contractor_month_standard",
                key: contractor_id.to_owned(),
                reason: format!("unknown standard {code}"),
            })?;
        let figures = StandardFigures {
            standard,
            reported: count(row, "reported")?,
            upheld: count(row, "upheld")?,
            partly_upheld: count(row, "partly_upheld")?,
            not_upheld: count(row, "not_upheld")?,
        };
        if figures.reported > 0 {
            standards.push(figures);
        }
    }
    standards.sort_by_key(|figures| figures.standard);
    let handling = handling_counters::contractor_summary(pool, contractor_id, from, to).await?;
    let (escalations_raised, escalations_past_deadline) =
        crate::escalations::raised_count(pool, contractor_id, from, to).await?;
    Ok(ContractorFigures {
        contractor_id: contractor_id.to_owned(),
        from_month: from,
        to_month: to,
        visits: count(&visits, "visits")?,
        visits_with_upheld_breach: count(&visits, "with_breach")?,
        complaints: handling.complaints,
        standards,
        escalations: handling.escalations,
        reopened: handling.reopened,
        escalations_raised,
        escalations_past_deadline,
        handling,
    })
}

pub(crate) async fn programme_performance(
    pool: &AnyPool,
    from: Month,
    to: Month,
) -> Result<Vec<ContractorTotals>, ProjectionError> {
    let (from, to) = (from.to_string(), to.to_string());
    let mut totals: BTreeMap<String, ContractorTotals> = BTreeMap::new();
    let registered = sqlx::query("SELECT contractor_id, legal_name FROM contractors")
        .fetch_all(pool)
        .await?;
    for row in &registered {
        line(&mut totals, row.try_get("contractor_id")?).legal_name = row.try_get("legal_name")?;
    }
    let visits = sqlx::query(
        "SELECT contractor_id, CAST(SUM(visits) AS BIGINT) AS visits \
         FROM contractor_month_visits WHERE month >= $1 AND month <= $2 GROUP BY contractor_id",
    )
    .bind(from.as_str())
    .bind(to.as_str())
    .fetch_all(pool)
    .await?;
    for row in &visits {
        line(&mut totals, row.try_get("contractor_id")?).visits = count(row, "visits")?;
    }
    let breaches = sqlx::query(
        "SELECT contractor_id, CAST(SUM(reported) AS BIGINT) AS reported, \
         CAST(SUM(upheld + partly_upheld) AS BIGINT) AS upheld_breaches \
         FROM contractor_month_standard WHERE month >= $1 AND month <= $2 GROUP BY contractor_id",
    )
    .bind(from.as_str())
    .bind(to.as_str())
    .fetch_all(pool)
    .await?;
    for row in &breaches {
        let totals = line(&mut totals, row.try_get("contractor_id")?);
        totals.reported = count(row, "reported")?;
        totals.upheld_breaches = count(row, "upheld_breaches")?;
    }
    Ok(totals.into_values().collect())
}

/// The contractor's line, started empty the first time it is seen.
fn line(
    totals: &mut BTreeMap<String, ContractorTotals>,
    contractor_id: String,
) -> &mut ContractorTotals {
    totals
        .entry(contractor_id.clone())
        .or_insert_with(|| ContractorTotals {
            contractor_id,
            legal_name: String::new(),
            visits: 0,
            upheld_breaches: 0,
            reported: 0,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_finding_moves_one_count() {
        let change = finding_change(Some(FindingOutcome::Upheld), FindingOutcome::NotUpheld);
        assert_eq!(
            change,
            Some((
                StandardDelta {
                    reported: 0,
                    upheld: -1,
                    partly_upheld: 0,
                    not_upheld: 1
                },
                -1
            ))
        );
        let change = finding_change(Some(FindingOutcome::Upheld), FindingOutcome::PartlyUpheld);
        assert_eq!(change.map(|(_, visit)| visit), Some(0));
        assert_eq!(
            finding_change(Some(FindingOutcome::NotUpheld), FindingOutcome::NotUpheld),
            None
        );
        let first = finding_change(None, FindingOutcome::PartlyUpheld);
        assert_eq!(
            first,
            Some((
                StandardDelta {
                    partly_upheld: 1,
                    ..StandardDelta::default()
                },
                1
            ))
        );
    }
}

/// Visits and upheld breaches in one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyBreaches {
    pub month: Month,
    pub visits: u64,
    pub upheld_breaches: u64,
}

/// Each month of `from..=to`, for one contractor or (with `None`) the whole programme: visits by
/// visit month and upheld breaches by the month the complaint was received, as the reports count
/// them, read from the same monthly counters. Months with neither are included with zeros.
pub(crate) async fn monthly_breaches(
    pool: &AnyPool,
    contractor_id: Option<&str>,
    from: Month,
    to: Month,
) -> Result<Vec<MonthlyBreaches>, ProjectionError> {
    let (from_text, to_text) = (from.to_string(), to.to_string());
    let contractor = contractor_id.unwrap_or_default();
    let every = i64::from(contractor_id.is_none());
    let visits = sqlx::query(
        "SELECT month, CAST(SUM(visits) AS BIGINT) AS visits FROM contractor_month_visits \
         WHERE (contractor_id = $1 OR $2 = 1) AND month >= $3 AND month <= $4 GROUP BY month",
    )
    .bind(contractor)
    .bind(every)
    .bind(from_text.as_str())
    .bind(to_text.as_str())
    .fetch_all(pool)
    .await?;
    let breaches = sqlx::query(
        "SELECT month, CAST(SUM(upheld + partly_upheld) AS BIGINT) AS upheld_breaches \
         FROM contractor_month_standard \
         WHERE (contractor_id = $1 OR $2 = 1) AND month >= $3 AND month <= $4 GROUP BY month",
    )
    .bind(contractor)
    .bind(every)
    .bind(from_text.as_str())
    .bind(to_text.as_str())
    .fetch_all(pool)
    .await?;
    let mut months: BTreeMap<Month, MonthlyBreaches> = BTreeMap::new();
    let mut month = from;
    while month <= to {
        months.insert(
            month,
            MonthlyBreaches {
                month,
                visits: 0,
                upheld_breaches: 0,
            },
        );
        month = month.next();
    }
    let month_of = |row: &sqlx::any::AnyRow| -> Result<Month, ProjectionError> {
        let text: String = row.try_get("month")?;
        Month::parse(&text).map_err(|_| ProjectionError::CorruptRecord {
            table: "contractor_month_visits",
            key: text.clone(),
            reason: "not a month".to_owned(),
        })
    };
    for row in &visits {
        if let Some(entry) = months.get_mut(&month_of(row)?) {
            entry.visits = count(row, "visits")?;
        }
    }
    for row in &breaches {
        if let Some(entry) = months.get_mut(&month_of(row)?) {
            entry.upheld_breaches = count(row, "upheld_breaches")?;
        }
    }
    Ok(months.into_values().collect())
}
