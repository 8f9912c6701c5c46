//! Complaints in working order (overdue and due soon first), filterable and paged, and each
//! complaint's case page: its stage clocks and its history, event by event.

use axum::extract::{Path, Query, State};
use doorstep_api::v1;
use doorstep_api::v1::complaint_service_server::ComplaintService;
use maud::{Markup, html};
use serde::Deserialize;

use super::super::Shared;
use super::super::access::{Page, method};
use super::super::error::ConsoleError;
use super::super::layout;
use super::super::services::call;
use super::super::session::Session;
use super::super::table::{Cell, Column, Row, Table};
use super::words;

const PAGE_SIZE: u32 = 50;
/// A pending deadline this many days away or nearer is "due soon".
const DUE_SOON_DAYS: i64 = 3;

/// `?contractor=&stage=&status=&page=`.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    pub contractor: Option<String>,
    pub stage: Option<String>,
    pub status: Option<String>,
    pub page: Option<u32>,
}

const STATUSES: [v1::ComplaintStatus; 5] = [
    v1::ComplaintStatus::AwaitingAcknowledgement,
    v1::ComplaintStatus::UnderInvestigation,
    v1::ComplaintStatus::Responded,
    v1::ComplaintStatus::Closed,
    v1::ComplaintStatus::Withdrawn,
];

fn status_key(status: v1::ComplaintStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("COMPLAINT_STATUS_")
        .to_lowercase()
}

/// Whether a complaint is overdue, due soon or neither, in words and as a class.
fn urgency(
    summary: &v1::ComplaintSummary,
    today: chrono::NaiveDate,
) -> Option<(&'static str, &'static str)> {
    if summary.overdue {
        return Some(("overdue", "Overdue"));
    }
    let due = chrono::NaiveDate::parse_from_str(&summary.next_deadline, "%Y-%m-%d").ok()?;
    ((due - today).num_days() <= DUE_SOON_DAYS).then_some(("due-soon", "Due soon"))
}

/// Complaint summaries as a table, with each row's urgency when `today` is given.
pub fn summary_table(
    id: &'static str,
    caption: &str,
    complaints: &[v1::ComplaintSummary],
    today: Option<chrono::NaiveDate>,
) -> Table {
    let text = |key, heading| Column {
        key,
        heading,
        numeric: false,
    };
    let mut columns = vec![
        text("complaint_id", "Complaint"),
        text("contractor_id", "Contractor"),
        text("stage", "Stage"),
        text("status", "Status"),
        text("received_at", "Received"),
        text("next_deadline", "Next deadline"),
    ];
    if today.is_some() {
        columns.push(text("urgency", "Urgency"));
    }
    let rows = complaints
        .iter()
        .map(|summary| {
            let short = words::short_id(&summary.complaint_id);
            let received = summary
                .received_at
                .as_ref()
                .map(|at| at.seconds.to_string())
                .unwrap_or_default();
            let mut cells = vec![
                Cell::text(summary.complaint_id.clone())
                    .shown_as(short)
                    .linked(format!("/complaints/{}", summary.complaint_id)),
                Cell::text(summary.contractor_id.clone()),
                Cell::text(summary.stage.to_string()).shown_as(words::stage(summary.stage)),
                Cell::text(summary.status.to_string()).shown_as(words::status(summary.status)),
                Cell::text(received).shown_as(words::when(summary.received_at.as_ref())),
                Cell::text(summary.next_deadline.clone())
                    .shown_as(words::date(&summary.next_deadline)),
            ];
            if let Some(today) = today {
                cells.push(match urgency(summary, today) {
                    Some((key, text)) => Cell::text(key).shown_as(text),
                    None => Cell::text("").shown_as("—"),
                });
            }
            Row {
                id: Some(("data-complaint-id", summary.complaint_id.clone())),
                cells,
            }
        })
        .collect();
    Table {
        id,
        caption: caption.to_owned(),
        columns,
        rows,
        sortable: true,
    }
}

/// `GET /complaints`.
pub async fn list(
    State(state): State<Shared>,
    session: Session,
    Query(filters): Query<Filters>,
) -> Result<Markup, ConsoleError> {
    let principal = &session.principal;
    let page = filters.page.unwrap_or(0);
    let contractor = filters
        .contractor
        .clone()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let stage = match filters.stage.as_deref().unwrap_or_default() {
        "1" => v1::Stage::One as i32,
        "2" => v1::Stage::Two as i32,
        _ => 0,
    };
    let status = STATUSES
        .into_iter()
        .find(|status| Some(status_key(*status).as_str()) == filters.status.as_deref())
        .map_or(0, |status| status as i32);
    let api = state.services.complaints.as_ref();
    let (complaints, more) = call(
        principal,
        method::LIST_COMPLAINTS,
        v1::ListComplaintsRequest {
            contractor_id: contractor.clone(),
            stage,
            status,
            page_size: PAGE_SIZE,
            ..Default::default()
        },
        |request| api.list_complaints_by_deadline(request, page),
    )
    .await?;
    let today = doorstep_domain::england_date(state.clock.now());
    let query = |page: u32| {
        format!(
            "/complaints?contractor={}&stage={}&status={}&page={page}",
            urlencode(&contractor),
            filters.stage.as_deref().map(urlencode).unwrap_or_default(),
            filters.status.as_deref().map(urlencode).unwrap_or_default()
        )
    };
    let confined = principal.contractor_scope().is_some();
    let body = html! {
        p class="lead" { "Complaints waiting on a deadline come first, the overdue and those due soonest at the top; then the rest, newest first." }
        form class="filters" method="get" action="/complaints" {
            @if !confined {
                div { label for="contractor" { "Contractor id" } input id="contractor" name="contractor" type="text" value=(contractor); }
            }
            div {
                label for="stage" { "Stage" }
                select id="stage" name="stage" {
                    option value="" selected[stage == 0] { "Any" }
                    option value="1" selected[stage == 1] { "Stage 1" }
                    option value="2" selected[stage == 2] { "Stage 2" }
                }
            }
            div {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" selected[status == 0] { "Any" }
                    @for option in STATUSES {
                        option value=(status_key(option)) selected[status == option as i32] { (words::status(option as i32)) }
                    }
                }
            }
            div { button type="submit" { "Filter" } }
        }
        (summary_table("complaints", &format!("Complaints, page {}", page + 1), &complaints, Some(today)).html())
        nav class="pager" aria-label="Pages" {
            @if page > 0 { a href=(query(page - 1)) rel="prev" { "Previous page" } }
            @if more { a href=(query(page + 1)) rel="next" { "Next page" } }
        }
    };
    Ok(layout::page(
        "Complaints",
        Some(&session),
        Some(Page::Complaints),
        body,
    ))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `GET /complaints/{id}`: the case page.
pub async fn case(
    State(state): State<Shared>,
    session: Session,
    Path(complaint_id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let api = state.services.complaints.as_ref();
    let answer = call(
        &session.principal,
        method::GET_COMPLAINT,
        v1::GetComplaintRequest { complaint_id },
        |request| api.get_complaint(request),
    )
    .await
    // A malformed id is as missing as any other.
    .map_err(|error| match error {
        ConsoleError::BadRequest(_) => ConsoleError::NotFound,
        other => other,
    })?;
    let complaint = answer.complaint.unwrap_or_default();
    let resident = complaint.resident.clone().unwrap_or_default();
    let property = complaint.property.clone().unwrap_or_default();
    let short = words::short_id(&complaint.complaint_id);
    let body = html! {
        p class="lead" {
            (words::status(complaint.status)) ", " (words::stage(complaint.stage)) ". Contractor "
            a href=(format!("/contractors/{}", complaint.contractor_id)) { (complaint.contractor_id) } "."
        }
        h2 { "The complaint" }
        dl class="facts" {
            dt { "Complaint id" } dd { (complaint.complaint_id) }
            dt { "Received" } dd { (words::when(complaint.received_at.as_ref())) }
            dt { "Resident" } dd { (if resident.name.is_empty() { "Withheld".to_owned() } else { resident.name.clone() }) " (" (resident.reference) ")" }
            @if !resident.phone.is_empty() { dt { "Phone" } dd { (resident.phone) } }
            @if !resident.email.is_empty() { dt { "Email" } dd { (resident.email) } }
            dt { "Property" } dd { (if property.address.is_empty() { "Withheld".to_owned() } else { property.address.clone() }) " (UPRN " (property.uprn) ")" }
            dt { "Standards" } dd { (complaint.standards.iter().map(|code| words::standard(*code)).collect::<Vec<_>>().join(", ")) }
            dt { "What happened" } dd { (complaint.description) }
            @if !complaint.outcome_sought.is_empty() { dt { "Outcome sought" } dd { (complaint.outcome_sought) } }
            @if !complaint.reasonable_adjustments.is_empty() { dt { "Reasonable adjustments" } dd { (complaint.reasonable_adjustments) } }
        }
        h2 { "Stage clocks" }
        div class="table-wrap" tabindex="0" role="region" aria-label="Stage clocks" {
            table id="stage-clocks" {
                caption { "Each stage's deadlines and whether they were kept" }
                thead { tr {
                    th scope="col" { "Stage" } th scope="col" { "Started" }
                    th scope="col" { "Acknowledgement due" } th scope="col" { "Acknowledgement" }
                    th scope="col" { "Response due" } th scope="col" { "Response" }
                    th scope="col" class="number" { "Extension (working days)" }
                } }
                tbody {
                    @for (name, stage) in [("Stage 1", &complaint.stage_one), ("Stage 2", &complaint.stage_two)] {
                        @if let Some(stage) = stage {
                            tr {
                                th scope="row" { (name) }
                                td { (words::when(stage.started_at.as_ref())) }
                                td { (words::date(&stage.acknowledgement_due)) }
                                td { (words::deadline_status(stage.acknowledgement_status))
                                    @if stage.acknowledged_at.is_some() { " (" (words::when(stage.acknowledged_at.as_ref())) ")" } }
                                td { (words::date(&stage.response_due)) }
                                td { (words::deadline_status(stage.response_status))
                                    @if stage.responded_at.is_some() { " (" (words::when(stage.responded_at.as_ref())) ")" } }
                                td class="number" { (stage.extension_working_days) }
                            }
                        }
                    }
                }
            }
        }
        @if !complaint.findings.is_empty() {
            h2 { "Findings" }
            ul {
                @for finding in &complaint.findings {
                    li { strong { (words::standard(finding.standard)) } ": " (words::finding(finding.outcome))
                        @if !finding.summary.is_empty() { " — " (finding.summary) } }
                }
            }
        }
        h2 { "History" }
        ol id="timeline" {
            @for entry in &answer.history {
                li {
                    div class="when" { (words::when(entry.recorded_at.as_ref())) " · " (entry.actor) }
                    div { (entry.summary) }
                }
            }
        }
    };
    Ok(layout::page(
        &format!("Complaint {short}"),
        Some(&session),
        Some(Page::Complaints),
        body,
    ))
}
