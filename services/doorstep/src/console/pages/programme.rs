//! The programme page: the funnel plot, the league table and CH01/CH02, for a period.

use std::collections::HashMap;

use crate::auth::Principal;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use doorstep_api::v1;
use doorstep_api::v1::performance_service_server::PerformanceService;
use http::header;
use maud::{Markup, html};
use serde::Deserialize;

use super::super::access::{Page, may_call, method};
use super::super::charts;
use super::super::error::ConsoleError;
use super::super::layout;
use super::super::services::call;
use super::super::session::Session;
use super::super::table::{Cell, Column, Row, Table};
use super::super::{ConsoleState, Shared};
use super::{months_before, this_month, words};

/// `?from=YYYY-MM&to=YYYY-MM&min_visits=N`; the last 12 months by default.
#[derive(Debug, Default, Deserialize)]
pub struct Period {
    pub from: Option<String>,
    pub to: Option<String>,
    pub min_visits: Option<u64>,
}

/// The period asked for, with defaults filled in.
pub struct Chosen {
    pub from: String,
    pub to: String,
    pub min_visits: u64,
}

impl Chosen {
    pub fn of(period: &Period, state: &ConsoleState) -> Self {
        let to_default = this_month(state.clock.as_ref());
        let chosen = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let to = chosen(&period.to).unwrap_or_else(|| to_default.to_string());
        let from = chosen(&period.from).unwrap_or_else(|| {
            doorstep_projections::Month::parse(&to)
                .map(|to| months_before(to, 11).to_string())
                .unwrap_or_else(|_| months_before(to_default, 11).to_string())
        });
        Self {
            from,
            to,
            min_visits: period.min_visits.unwrap_or(0),
        }
    }

    fn query(&self) -> String {
        format!(
            "from={}&to={}&min_visits={}",
            self.from, self.to, self.min_visits
        )
    }

    /// The reporting year (1 April to 31 March) the period ends in.
    fn reporting_year(&self) -> Option<u32> {
        let to = doorstep_projections::Month::parse(&self.to).ok()?;
        let year = if to.month() >= 4 {
            to.year()
        } else {
            to.year() - 1
        };
        u32::try_from(year).ok()
    }
}

/// What the page shows, read through the API's services.
struct Programme {
    list: v1::ListContractorPerformanceResponse,
    /// Each listed contractor's own figures, by id.
    figures: HashMap<String, v1::GetContractorPerformanceResponse>,
    handling: Option<v1::GetComplaintHandlingReportResponse>,
    /// Complaint handling by who leads resident liaison, when the policy lets the user see it.
    liaison: Option<v1::CompareLiaisonLeadsResponse>,
}

async fn load(
    state: &ConsoleState,
    session: &Session,
    chosen: &Chosen,
) -> Result<Programme, ConsoleError> {
    let principal = &session.principal;
    let performance = state.services.performance.as_ref();
    let list = call(
        principal,
        method::LIST_CONTRACTOR_PERFORMANCE,
        v1::ListContractorPerformanceRequest {
            from_month: chosen.from.clone(),
            to_month: chosen.to.clone(),
            min_visits: chosen.min_visits,
            min_position: None,
        },
        |request| performance.list_contractor_performance(request),
    )
    .await?;
    let requests = list.contractors.iter().map(|standing| {
        call(
            principal,
            method::GET_CONTRACTOR_PERFORMANCE,
            v1::GetContractorPerformanceRequest {
                contractor_id: standing.contractor_id.clone(),
                from_month: chosen.from.clone(),
                to_month: chosen.to.clone(),
                min_position: None,
            },
            |request| performance.get_contractor_performance(request),
        )
    });
    let mut figures = HashMap::new();
    for (standing, result) in list
        .contractors
        .iter()
        .zip(futures::future::join_all(requests).await)
    {
        match result {
            Ok(response) => {
                figures.insert(standing.contractor_id.clone(), response);
            }
            // A contractor with counters but no registry entry has no figures of its own: its
            // row shows the league's numbers and dashes for the rest.
            Err(ConsoleError::NotFound) => {}
            Err(error) => return Err(error),
        }
    }
    let handling = load_handling(state, principal, chosen).await?;
    let liaison = load_liaison(state, principal, chosen).await?;
    Ok(Programme {
        list,
        figures,
        handling,
        liaison,
    })
}

/// CH01 and CH02 for the period's reporting year, when there is one and the policy lets the
/// user see them.
async fn load_handling(
    state: &ConsoleState,
    principal: &Principal,
    chosen: &Chosen,
) -> Result<Option<v1::GetComplaintHandlingReportResponse>, ConsoleError> {
    let Some(reporting_year) = chosen.reporting_year() else {
        return Ok(None);
    };
    if !may_call(principal, method::GET_COMPLAINT_HANDLING_REPORT) {
        return Ok(None);
    }
    let performance = state.services.performance.as_ref();
    call(
        principal,
        method::GET_COMPLAINT_HANDLING_REPORT,
        v1::GetComplaintHandlingReportRequest {
            reporting_year,
            // CH02 needs no homes; CH01 is shown only when they are configured.
            homes: state.settings.homes.max(1),
            min_position: None,
        },
        |request| performance.get_complaint_handling_report(request),
    )
    .await
    .map(Some)
}

/// Complaint handling by liaison lead, when the policy lets the user see it.
async fn load_liaison(
    state: &ConsoleState,
    principal: &Principal,
    chosen: &Chosen,
) -> Result<Option<v1::CompareLiaisonLeadsResponse>, ConsoleError> {
    if !may_call(principal, method::COMPARE_LIAISON_LEADS) {
        return Ok(None);
    }
    let performance = state.services.performance.as_ref();
    call(
        principal,
        method::COMPARE_LIAISON_LEADS,
        v1::CompareLiaisonLeadsRequest {
            from_month: chosen.from.clone(),
            to_month: chosen.to.clone(),
            min_position: None,
        },
        |request| performance.compare_liaison_leads(request),
    )
    .await
    .map(Some)
}

fn rate_value(rate: Option<&v1::Rate>, pick: fn(&v1::Rate) -> f64) -> Option<f64> {
    rate.filter(|rate| rate.defined).map(pick)
}

fn share_value(share: Option<&v1::Proportion>, pick: fn(&v1::Proportion) -> f64) -> Option<f64> {
    share.filter(|share| share.defined).map(pick)
}

/// The league table: rank, rate with its Garwood interval, share of visits with an upheld
/// breach with its Wilson interval, answered within the Code, median days, escalations,
/// reopenings.
fn league_table(programme: &Programme) -> Table {
    const fn column(key: &'static str, heading: &'static str) -> Column {
        Column {
            key,
            heading,
            numeric: true,
        }
    }
    let columns = vec![
        Column {
            key: "contractor",
            heading: "Contractor",
            numeric: false,
        },
        column("rank", "Rank"),
        column("visits", "Visits"),
        column("upheld_breaches", "Upheld breaches"),
        column("upheld_per_100_visits", "Upheld per 100 visits"),
        column("upheld_per_100_visits_lower", "95% lower"),
        column("upheld_per_100_visits_upper", "95% upper"),
        column("visits_with_upheld_breach", "Visits with an upheld breach"),
        column("visits_with_upheld_breach_lower", "95% lower (share)"),
        column("visits_with_upheld_breach_upper", "95% upper (share)"),
        column("answered_within_code", "Answered within the Code"),
        column(
            "median_working_days_to_respond",
            "Median working days to respond",
        ),
        column("notifier_escalations_raised", "Escalations raised"),
        column("escalations_to_stage_two", "Escalated to stage 2"),
        column("reopened", "Reopened"),
        Column {
            key: "sources_disagree",
            heading: "Inspections disagree with complaints",
            numeric: false,
        },
    ];
    let rows = programme
        .list
        .contractors
        .iter()
        .map(|standing| {
            let figures = programme.figures.get(&standing.contractor_id);
            let rate = standing.upheld_per_100_visits.as_ref();
            let with_breach = figures.and_then(|f| f.visits_with_upheld_breach.as_ref());
            let within = figures.and_then(|f| f.answered_within_code.as_ref());
            let count = |pick: fn(&v1::GetContractorPerformanceResponse) -> u64| {
                figures.map_or_else(|| Cell::number(None, 0), |f| Cell::count(pick(f)))
            };
            Row {
                id: Some(("data-contractor-id", standing.contractor_id.clone())),
                cells: vec![
                    Cell::text(standing.contractor_id.clone())
                        .shown_as(charts::display_name(standing))
                        .linked(format!("/contractors/{}", standing.contractor_id)),
                    if standing.rank == 0 {
                        Cell::count(0).shown_as("not ranked")
                    } else {
                        Cell::count(u64::from(standing.rank))
                    },
                    Cell::count(standing.visits),
                    Cell::count(standing.upheld_breaches),
                    Cell::number(rate_value(rate, |r| r.value), 2),
                    Cell::number(rate_value(rate, |r| r.lower), 2),
                    Cell::number(rate_value(rate, |r| r.upper), 2),
                    Cell::share(share_value(with_breach, |s| s.value)),
                    Cell::share(share_value(with_breach, |s| s.lower)),
                    Cell::share(share_value(with_breach, |s| s.upper)),
                    Cell::share(share_value(within, |s| s.value)),
                    Cell::number(figures.and_then(|f| f.median_working_days_to_respond), 1),
                    count(|f| f.notifier_escalations_raised),
                    count(|f| f.escalations_to_stage_two),
                    count(|f| f.reopened),
                    disagreement_cell(standing.inspections.as_ref()),
                ],
            }
        })
        .collect();
    Table {
        id: "league-table",
        caption: "League table: ranked by upheld breaches per 100 visits, lowest first".to_owned(),
        columns,
        rows,
        sortable: true,
    }
}

/// Whether what we saw on inspection disagrees with what residents told us: "true"/"false" (empty
/// without inspection figures), in words.
fn disagreement_cell(inspections: Option<&v1::InspectionFigures>) -> Cell {
    match inspections {
        None => Cell::text("").shown_as("—"),
        Some(saw) if saw.sources_disagree => Cell::text("true").shown_as("Yes (see the note)"),
        Some(saw) if saw.agreement == v1::EvidenceAgreement::NotEnoughEvidence as i32 => {
            Cell::text("false").shown_as("Not enough evidence")
        }
        Some(_) => Cell::text("false").shown_as("No"),
    }
}

/// What a disagreement means, in a sentence.
pub fn disagreement_text(agreement: i32) -> &'static str {
    match v1::EvidenceAgreement::try_from(agreement) {
        Ok(v1::EvidenceAgreement::FewComplaintsPoorInspections) => {
            "few complaints from residents, but our inspections found the standards met significantly less often than across the programme"
        }
        Ok(v1::EvidenceAgreement::ManyComplaintsGoodInspections) => {
            "many complaints from residents, but our inspections found the standards met significantly more often than across the programme"
        }
        _ => "the two sources agree or there is not enough evidence to compare them",
    }
}

/// Complaint handling by who leads resident liaison.
fn liaison_table(compared: &v1::CompareLiaisonLeadsResponse) -> Table {
    let number = |key, heading| Column {
        key,
        heading,
        numeric: true,
    };
    let columns = vec![
        Column {
            key: "liaison_lead",
            heading: "Liaison lead",
            numeric: false,
        },
        number("contractors", "Contractors"),
        number("complaints", "Complaints"),
        number("answered_within_code", "Answered within the Code"),
        number("answered_within_code_lower", "95% lower"),
        number("answered_within_code_upper", "95% upper"),
        number(
            "median_working_days_to_acknowledge",
            "Median working days to acknowledge",
        ),
        number(
            "median_working_days_to_respond",
            "Median working days to respond",
        ),
        number("escalated_to_stage_two", "Taken to stage 2"),
        number(
            "notifier_escalations_past_deadline",
            "Escalations past a deadline",
        ),
        number(
            "notifier_escalations_past_deadline_per_100_complaints",
            "Escalations past a deadline per 100 complaints",
        ),
        number(
            "notifier_escalations_past_deadline_per_100_complaints_lower",
            "95% lower (per 100)",
        ),
        number(
            "notifier_escalations_past_deadline_per_100_complaints_upper",
            "95% upper (per 100)",
        ),
    ];
    let rows = compared
        .leads
        .iter()
        .map(|lead| {
            let key = match v1::LiaisonLead::try_from(lead.liaison_lead) {
                Ok(v1::LiaisonLead::InHouse) => "in_house",
                Ok(v1::LiaisonLead::Contractor) => "contractor",
                _ => "unknown",
            };
            let within = lead.answered_within_code.as_ref();
            let past = lead
                .notifier_escalations_past_deadline_per_100_complaints
                .as_ref();
            Row {
                id: None,
                cells: vec![
                    Cell::text(key).shown_as(words::liaison_lead(lead.liaison_lead)),
                    Cell::count(u64::from(lead.contractors)),
                    Cell::count(lead.complaints),
                    Cell::share(share_value(within, |s| s.value)),
                    Cell::share(share_value(within, |s| s.lower)),
                    Cell::share(share_value(within, |s| s.upper)),
                    Cell::number(lead.median_working_days_to_acknowledge, 1),
                    Cell::number(lead.median_working_days_to_respond, 1),
                    Cell::share(share_value(lead.escalated_to_stage_two.as_ref(), |s| {
                        s.value
                    })),
                    Cell::count(lead.notifier_escalations_past_deadline),
                    Cell::number(rate_value(past, |r| r.value), 2),
                    Cell::number(rate_value(past, |r| r.lower), 2),
                    Cell::number(rate_value(past, |r| r.upper), 2),
                ],
            }
        })
        .collect();
    Table {
        id: "liaison-leads",
        caption: format!(
            "Complaint handling by who leads resident liaison, complaints received {} to {}",
            compared.from_month, compared.to_month
        ),
        columns,
        rows,
        sortable: false,
    }
}

/// The funnel plot's numbers, one row per plotted contractor.
fn funnel_table(programme: &Programme) -> Table {
    let number = |key, heading| Column {
        key,
        heading,
        numeric: true,
    };
    let columns = vec![
        Column {
            key: "contractor",
            heading: "Contractor",
            numeric: false,
        },
        number("visits", "Visits"),
        number("upheld_per_100_visits", "Upheld per 100 visits"),
        number("alert_lower", "Alert lower"),
        number("alert_upper", "Alert upper"),
        number("alarm_lower", "Alarm lower"),
        number("alarm_upper", "Alarm upper"),
        Column {
            key: "funnel_status",
            heading: "Status",
            numeric: false,
        },
    ];
    let rows = programme
        .list
        .contractors
        .iter()
        .filter(|standing| standing.visits > 0)
        .map(|standing| Row {
            id: Some(("data-contractor-id", standing.contractor_id.clone())),
            cells: vec![
                Cell::text(standing.contractor_id.clone()).shown_as(charts::display_name(standing)),
                Cell::count(standing.visits),
                Cell::number(
                    rate_value(standing.upheld_per_100_visits.as_ref(), |r| r.value),
                    2,
                ),
                Cell::number(Some(standing.alert_lower), 2),
                Cell::number(Some(standing.alert_upper), 2),
                Cell::number(Some(standing.alarm_lower), 2),
                Cell::number(Some(standing.alarm_upper), 2),
                Cell::text(charts::status_key(standing.funnel_status))
                    .shown_as(charts::status_text(standing.funnel_status)),
            ],
        })
        .collect();
    Table {
        id: "funnel-table",
        caption: "The funnel plot's figures".to_owned(),
        columns,
        rows,
        sortable: true,
    }
}

/// CH01 and CH02 for the reporting year.
fn handling_table(report: &v1::GetComplaintHandlingReportResponse, homes_known: bool) -> Table {
    let number = |key, heading| Column {
        key,
        heading,
        numeric: true,
    };
    let mut columns = vec![
        Column {
            key: "stage",
            heading: "Stage",
            numeric: false,
        },
        number("received", "Received"),
    ];
    if homes_known {
        columns.push(number("per_1000_homes", "CH01: per 1,000 homes"));
    }
    columns.extend([
        number("responded", "Responded"),
        number("responded_within_code", "Within the Code"),
        number("percent_within_code", "CH02: % within the Code"),
    ]);
    let rows = [
        ("1", "Stage 1", &report.stage_one),
        ("2", "Stage 2", &report.stage_two),
    ]
    .into_iter()
    .filter_map(|(key, name, stage)| stage.as_ref().map(|stage| (key, name, stage)))
    .map(|(key, name, stage)| {
        let mut cells = vec![Cell::text(key).shown_as(name), Cell::count(stage.received)];
        if homes_known {
            cells.push(Cell::number(Some(stage.per_1000_homes), 2));
        }
        cells.extend([
            Cell::count(stage.responded),
            Cell::count(stage.responded_within_code),
            Cell::number(stage.percent_within_code, 1),
        ]);
        Row { id: None, cells }
    })
    .collect();
    Table {
        id: "complaint-handling",
        caption: format!(
            "Complaint handling, reporting year {} to {}",
            report.from_date, report.to_date
        ),
        columns,
        rows,
        sortable: false,
    }
}

/// `GET /programme`.
pub async fn page(
    State(state): State<Shared>,
    session: Session,
    Query(period): Query<Period>,
) -> Result<Markup, ConsoleError> {
    let chosen = Chosen::of(&period, &state);
    let programme = load(&state, &session, &chosen).await?;
    let average = programme
        .list
        .programme_upheld_per_100_visits
        .unwrap_or_default();
    let homes_known = state.settings.homes > 0;
    let query = chosen.query();
    let body = html! {
        p class="lead" {
            "Upheld breaches of the resident service standards per 100 visits, "
            (chosen.from) " to " (chosen.to) ": "
            strong { (format!("{:.2}", average.value)) }
            " across the programme (" (programme.list.programme_upheld_breaches) " upheld breaches in "
            (programme.list.programme_visits) " visits)."
        }
        form class="period" method="get" action="/programme" {
            div { label for="from" { "From month" } input id="from" name="from" type="month" value=(chosen.from); }
            div { label for="to" { "To month" } input id="to" name="to" type="month" value=(chosen.to); }
            div { label for="min_visits" { "Rank from visits" } input id="min_visits" name="min_visits" type="number" min="0" value=(chosen.min_visits); }
            div { button type="submit" { "Show" } }
        }
        h2 id="funnel-heading" { "Funnel plot" }
        div class="figure-pair" {
            figure aria-labelledby="funnel-heading" {
                (charts::funnel(&programme.list))
                figcaption { "Points outside the dashed lines differ from the programme average by more than chance would usually explain (≈2 SD); outside the dotted lines, by far more (≈3 SD)." }
            }
            div { (funnel_table(&programme).stacked_html()) }
        }
        p class="downloads" { a href=(format!("/programme/funnel.csv?{query}")) download { "Download the funnel figures (CSV)" } }
        h2 { "League table" }
        (league_table(&programme).html())
        (disagreement_note(&programme))
        p class="downloads" { a href=(format!("/programme/league.csv?{query}")) download { "Download the league table (CSV)" } }
        @if let Some(compared) = &programme.liaison {
            h2 { "Who leads resident liaison" }
            p { "Complaints are counted under the liaison lead every contract of their contractor named when they were received; \"Unknown\" holds contractors without a contract, without a recorded lead, or with contracts that name different leads." }
            (liaison_table(compared).html())
            p class="downloads" { a href=(format!("/programme/liaison-leads.csv?{query}")) download { "Download liaison leads (CSV)" } }
        }
        @if let Some(report) = &programme.handling {
            h2 { "Complaint handling (CH01, CH02)" }
            (handling_table(report, homes_known).html())
            @if !homes_known {
                p { "CH01 needs the number of homes owned: set " code { "console.homes" } "." }
            }
            p class="downloads" { a href=(format!("/programme/complaint-handling.csv?{query}")) download { "Download complaint handling (CSV)" } }
        }
    };
    Ok(layout::page(
        "Programme",
        Some(&session),
        Some(Page::Programme),
        body,
    ))
}

/// The league's contractors whose inspections disagree with their complaints, in words.
fn disagreement_note(programme: &Programme) -> Markup {
    let disagreeing: Vec<&v1::ContractorStanding> = programme
        .list
        .contractors
        .iter()
        .filter(|standing| {
            standing
                .inspections
                .as_ref()
                .is_some_and(|saw| saw.sources_disagree)
        })
        .collect();
    html! {
        @if !disagreeing.is_empty() {
            div id="sources-disagree" class="note" {
                p { strong { "Note: what we saw on inspection disagrees with what residents told us for:" } }
                ul {
                    @for standing in disagreeing {
                        li {
                            a href=(format!("/contractors/{}", standing.contractor_id)) { (charts::display_name(standing)) }
                            ": " (disagreement_text(standing.inspections.as_ref().map_or(0, |saw| saw.agreement))) "."
                        }
                    }
                }
            }
        }
    }
}

fn csv_response(name: &str, table: &Table) -> Result<Response, ConsoleError> {
    let text = table.csv().map_err(|error| {
        tracing::error!(%error, "cannot write a CSV table");
        ConsoleError::Internal
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        text,
    )
        .into_response())
}

/// `GET /programme/league.csv`: the league table as shown.
pub async fn league_csv(
    State(state): State<Shared>,
    session: Session,
    Query(period): Query<Period>,
) -> Result<Response, ConsoleError> {
    let chosen = Chosen::of(&period, &state);
    let programme = load(&state, &session, &chosen).await?;
    csv_response(
        &format!("league-{}-{}.csv", chosen.from, chosen.to),
        &league_table(&programme),
    )
}

/// `GET /programme/funnel.csv`.
pub async fn funnel_csv(
    State(state): State<Shared>,
    session: Session,
    Query(period): Query<Period>,
) -> Result<Response, ConsoleError> {
    let chosen = Chosen::of(&period, &state);
    let programme = load(&state, &session, &chosen).await?;
    csv_response(
        &format!("funnel-{}-{}.csv", chosen.from, chosen.to),
        &funnel_table(&programme),
    )
}

/// `GET /programme/complaint-handling.csv`.
pub async fn handling_csv(
    State(state): State<Shared>,
    session: Session,
    Query(period): Query<Period>,
) -> Result<Response, ConsoleError> {
    let chosen = Chosen::of(&period, &state);
    // Only the report itself: not the league's calls.
    if !may_call(&session.principal, method::GET_COMPLAINT_HANDLING_REPORT) {
        return Err(ConsoleError::Forbidden);
    }
    let report = load_handling(&state, &session.principal, &chosen)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    csv_response(
        &format!("complaint-handling-{}.csv", report.reporting_year),
        &handling_table(&report, state.settings.homes > 0),
    )
}

/// `GET /programme/liaison-leads.csv`.
pub async fn liaison_csv(
    State(state): State<Shared>,
    session: Session,
    Query(period): Query<Period>,
) -> Result<Response, ConsoleError> {
    let chosen = Chosen::of(&period, &state);
    // Only the comparison itself: not the league's calls.
    let compared = load_liaison(&state, &session.principal, &chosen)
        .await?
        .ok_or(ConsoleError::Forbidden)?;
    csv_response(
        &format!("liaison-leads-{}-{}.csv", chosen.from, chosen.to),
        &liaison_table(&compared),
    )
}
