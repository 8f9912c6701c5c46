//! The contractors index and a contractor's page: profile, breaches per standard, the monthly
//! run chart, open complaints with their next deadline, open escalations and equality audits.
//! Each section is shown when the policy lets the user call the method it reads.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use doorstep_api::v1;
use doorstep_api::v1::contractor_service_server::ContractorService;
use doorstep_api::v1::escalation_service_server::EscalationService;
use doorstep_api::v1::performance_service_server::PerformanceService;
use maud::{Markup, html};

use super::super::Shared;
use super::super::access::{Page, may_call, method};
use super::super::charts::{self, RunPoint};
use super::super::error::ConsoleError;
use super::super::layout;
use super::super::services::call;
use super::super::session::Session;
use super::super::table::{Cell, Column, Row, Table};
use super::programme::{Chosen, Period};
use super::words;

/// `GET /contractors`: the registry, for staff who may list it; a contractor goes to its own.
pub async fn index(
    State(state): State<Shared>,
    session: Session,
) -> Result<Response, ConsoleError> {
    if session.principal.contractor_scope().is_some() {
        return Ok(Redirect::to("/contractors/mine").into_response());
    }
    let contractors = state.services.contractors.as_ref();
    let mut rows = Vec::new();
    let mut page_token = String::new();
    // The registry is small (tens of contractors); read it whole, a page at a time.
    for _ in 0..100 {
        let page = call(
            &session.principal,
            method::LIST_CONTRACTORS,
            v1::ListContractorsRequest {
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            },
            |request| contractors.list_contractors(request),
        )
        .await?;
        rows.extend(page.contractors);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let table = Table {
        id: "contractors",
        caption: "Registered contractors".to_owned(),
        columns: vec![
            Column {
                key: "contractor",
                heading: "Contractor",
                numeric: false,
            },
            Column {
                key: "contractor_id",
                heading: "Id",
                numeric: false,
            },
            Column {
                key: "status",
                heading: "Status",
                numeric: false,
            },
            Column {
                key: "public_phone",
                heading: "Public phone",
                numeric: false,
            },
            Column {
                key: "contracts_not_signed_off",
                heading: "Contracts not signed off",
                numeric: false,
            },
            Column {
                key: "equality_audit_overdue",
                heading: "Equality audit",
                numeric: false,
            },
        ],
        rows: rows
            .iter()
            .map(|contractor| {
                let status =
                    v1::ContractorStatus::try_from(contractor.status).map_or("—", |status| {
                        match status {
                            v1::ContractorStatus::Active => "Active",
                            v1::ContractorStatus::Suspended => "Suspended",
                            v1::ContractorStatus::Unspecified => "—",
                        }
                    });
                Row {
                    id: Some(("data-contractor-id", contractor.contractor_id.clone())),
                    cells: vec![
                        Cell::text(contractor.contractor_id.clone())
                            .shown_as(contractor.legal_name.clone())
                            .linked(format!("/contractors/{}", contractor.contractor_id)),
                        Cell::text(contractor.contractor_id.clone()),
                        Cell::text(status),
                        Cell::text(contractor.public_phone.clone()),
                        if contractor.contracts_not_signed_off.is_empty() {
                            Cell::text("").shown_as("All signed off")
                        } else {
                            Cell::text(contractor.contracts_not_signed_off.join(" "))
                                .shown_as(contractor.contracts_not_signed_off.join(", "))
                        },
                        if contractor.equality_audit_overdue {
                            Cell::text("true").shown_as("Overdue")
                        } else {
                            Cell::text("false").shown_as("Up to date")
                        },
                    ],
                }
            })
            .collect(),
        sortable: true,
    };
    Ok(layout::page(
        "Contractors",
        Some(&session),
        Some(Page::Contractors),
        table.html(),
    )
    .into_response())
}

/// `GET /contractors/mine`: a contractor's own page.
pub async fn mine(session: Session) -> Result<Redirect, ConsoleError> {
    let own = session
        .principal
        .contractor_scope()
        .ok_or(ConsoleError::NotFound)?;
    Ok(Redirect::to(&format!("/contractors/{}", own.as_str())))
}

/// `GET /contractors/{id}`.
pub async fn page(
    State(state): State<Shared>,
    session: Session,
    Path(contractor_id): Path<String>,
    Query(period): Query<Period>,
) -> Result<Markup, ConsoleError> {
    let principal = &session.principal;
    // Another contractor's page is exactly a missing one.
    if principal
        .contractor_scope()
        .is_some_and(|own| own.as_str() != contractor_id)
    {
        return Err(ConsoleError::NotFound);
    }
    if !Page::Contractors.allows(principal) {
        return Err(ConsoleError::Forbidden);
    }
    let chosen = Chosen::of(&period, &state);
    let services = &state.services;
    let profile = if may_call(principal, method::GET_CONTRACTOR) {
        let contractors = services.contractors.as_ref();
        Some(
            call(
                principal,
                method::GET_CONTRACTOR,
                v1::GetContractorRequest {
                    contractor_id: contractor_id.clone(),
                },
                |request| contractors.get_contractor(request),
            )
            .await?
            .contractor
            .unwrap_or_default(),
        )
    } else {
        None
    };
    let performance = if may_call(principal, method::GET_CONTRACTOR_PERFORMANCE) {
        let api = services.performance.as_ref();
        let request = || v1::GetContractorPerformanceRequest {
            contractor_id: contractor_id.clone(),
            from_month: chosen.from.clone(),
            to_month: chosen.to.clone(),
            min_position: None,
        };
        let figures = call(
            principal,
            method::GET_CONTRACTOR_PERFORMANCE,
            request(),
            |request| api.get_contractor_performance(request),
        )
        .await?;
        let (own, programme) = call(
            principal,
            method::GET_CONTRACTOR_PERFORMANCE,
            request(),
            |request| api.monthly_rates(request),
        )
        .await?;
        Some((figures, own, programme))
    } else {
        None
    };
    let complaints = if may_call(principal, method::LIST_COMPLAINTS) {
        let api = services.complaints.as_ref();
        let (rows, _) = call(
            principal,
            method::LIST_COMPLAINTS,
            v1::ListComplaintsRequest {
                contractor_id: contractor_id.clone(),
                page_size: 25,
                ..Default::default()
            },
            |request| api.list_complaints_by_deadline(request, 0),
        )
        .await?;
        Some(
            rows.into_iter()
                .filter(|row| !row.next_deadline.is_empty())
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let escalations = if may_call(principal, method::LIST_ESCALATIONS) {
        let api = services.escalations.as_ref();
        Some(
            call(
                principal,
                method::LIST_ESCALATIONS,
                v1::ListEscalationsRequest {
                    open_only: true,
                    contractor_id: contractor_id.clone(),
                    page_size: 100,
                    ..Default::default()
                },
                |request| api.list_escalations(request),
            )
            .await?
            .escalations,
        )
    } else {
        None
    };
    let name = profile
        .as_ref()
        .and_then(|contractor| contractor.profile.as_ref())
        .map(|profile| profile.legal_name.clone())
        .or_else(|| {
            performance
                .as_ref()
                .map(|(figures, _, _)| figures.legal_name.clone())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| contractor_id.clone());
    let body = html! {
        @if let Some(contractor) = &profile { (profile_section(contractor)) }
        @if let Some((figures, own, programme)) = &performance {
            (performance_section(&contractor_id, &name, &chosen, figures, own, programme))
        }
        @if let Some(complaints) = &complaints { (complaints_section(complaints)) }
        @if let Some(escalations) = &escalations { (escalations_section(escalations)) }
        (audits_section(profile.as_ref(), performance.as_ref().map(|(figures, _, _)| figures)))
    };
    Ok(layout::page(
        &name,
        Some(&session),
        Some(Page::Contractors),
        body,
    ))
}

fn profile_section(contractor: &v1::Contractor) -> Markup {
    let profile = contractor.profile.clone().unwrap_or_default();
    html! {
        h2 { "Profile" }
        div class="profile" {
            @if !profile.logo_url.is_empty() {
                img src=(profile.logo_url) alt=(format!("Logo of {}", profile.legal_name));
            }
            dl class="facts" {
                dt { "Legal name" } dd { (profile.legal_name) }
                @if !profile.trading_names.is_empty() {
                    dt { "Trading as" } dd { (profile.trading_names.join(", ")) }
                }
                dt { "Public contact" } dd { (profile.public_contact_name) }
                dt { "Public phone" } dd { a href=(format!("tel:{}", profile.public_phone.replace(' ', ""))) { (profile.public_phone) } }
                dt { "Status" } dd { (if contractor.status == v1::ContractorStatus::Suspended as i32 { "Suspended" } else { "Active" }) }
                dt { "Equality audit" } dd { (if contractor.equality_audit_overdue { "Overdue" } else { "Up to date" }) }
            }
        }
        h3 { "Contracts and the standards agreed" }
        @if profile.contracts.is_empty() {
            p { "No contract is recorded." }
        } @else {
            ul id="contracts" {
                @for contract in &profile.contracts {
                    li data-contract=(contract.reference) {
                        strong { (contract.reference) } ": "
                        (contract.standards.iter().map(|code| words::standard(*code)).collect::<Vec<_>>().join(", "))
                        ul {
                            li { (liaison_words(contract)) }
                            li { (sign_off_words(contract_sign_off(contractor, &contract.reference))) }
                            li { (conditions_words(contract.equality_conditions.as_ref())) }
                        }
                    }
                }
            }
        }
    }
}

fn liaison_words(contract: &v1::ContractTerms) -> String {
    match v1::LiaisonLead::try_from(contract.liaison_lead) {
        Ok(v1::LiaisonLead::InHouse) => format!(
            "Resident liaison led in-house (our liaison officers); contact: {}",
            contract.liaison_contact_name
        ),
        Ok(v1::LiaisonLead::Contractor) => format!(
            "Resident liaison led by the contractor; contact: {}",
            contract.liaison_contact_name
        ),
        _ => "Resident liaison lead not recorded".to_owned(),
    }
}

fn contract_sign_off<'a>(
    contractor: &'a v1::Contractor,
    reference: &str,
) -> Option<&'a v1::ContractSignOff> {
    contractor
        .contract_sign_offs
        .iter()
        .find(|sign_off| sign_off.contract_reference == reference)
}

fn sign_off_words(sign_off: Option<&v1::ContractSignOff>) -> String {
    let latest = sign_off.and_then(|sign_off| sign_off.latest_sign_off.as_ref());
    match (sign_off.is_some_and(|sign_off| sign_off.signed_off), latest) {
        (true, Some(latest)) => format!(
            "Signed off by resident champions on {}",
            words::date(&latest.signed_off_date)
        ),
        (true, None) => "Signed off by resident champions".to_owned(),
        (false, Some(latest)) => format!(
            "Not signed off: the standards changed after the resident champions' sign-off on {}",
            words::date(&latest.signed_off_date)
        ),
        (false, None) => "Not signed off by resident champions".to_owned(),
    }
}

fn conditions_words(conditions: Option<&v1::EqualityConditions>) -> String {
    match conditions {
        Some(conditions) => {
            let accepted: Vec<&str> = [
                (
                    conditions.equality_training,
                    "equality and diversity training",
                ),
                (conditions.equality_audits, "equality audits"),
                (conditions.code_of_conduct, "the code of conduct"),
            ]
            .into_iter()
            .filter_map(|(accepted, name)| accepted.then_some(name))
            .collect();
            format!(
                "Equality conditions accepted on {}: {}",
                words::date(&conditions.accepted_date),
                accepted.join(", ")
            )
        }
        None => "Equality conditions not recorded".to_owned(),
    }
}

fn performance_section(
    contractor_id: &str,
    name: &str,
    chosen: &Chosen,
    figures: &v1::GetContractorPerformanceResponse,
    own: &[crate::performance::MonthlyRate],
    programme: &[crate::performance::MonthlyRate],
) -> Markup {
    let rate = figures.upheld_per_100_visits.unwrap_or_default();
    let standards = Table {
        id: "standards",
        caption: format!("Breaches per standard, {} to {}", chosen.from, chosen.to),
        columns: vec![
            Column {
                key: "standard",
                heading: "Standard",
                numeric: false,
            },
            Column {
                key: "reported",
                heading: "Reported",
                numeric: true,
            },
            Column {
                key: "upheld",
                heading: "Upheld",
                numeric: true,
            },
            Column {
                key: "partly_upheld",
                heading: "Partly upheld",
                numeric: true,
            },
            Column {
                key: "not_upheld",
                heading: "Not upheld",
                numeric: true,
            },
            Column {
                key: "pending",
                heading: "No finding yet",
                numeric: true,
            },
            Column {
                key: "upheld_per_100_visits",
                heading: "Upheld per 100 visits",
                numeric: true,
            },
        ],
        rows: figures
            .standards
            .iter()
            .map(|standard| Row {
                id: None,
                cells: vec![
                    Cell::text(words::standard(standard.standard)),
                    Cell::count(standard.reported),
                    Cell::count(standard.upheld),
                    Cell::count(standard.partly_upheld),
                    Cell::count(standard.not_upheld),
                    Cell::count(standard.pending),
                    Cell::number(
                        standard
                            .upheld_per_100_visits
                            .as_ref()
                            .filter(|r| r.defined)
                            .map(|r| r.value),
                        2,
                    ),
                ],
            })
            .collect(),
        sortable: true,
    };
    let points: Vec<RunPoint> = own
        .iter()
        .zip(programme)
        .map(|(own, programme)| RunPoint {
            month: own.month.clone(),
            rate: own.rate.defined.then_some(own.rate.value),
            programme_rate: programme.rate.defined.then_some(programme.rate.value),
        })
        .collect();
    let monthly = Table {
        id: "run-table",
        caption: "Month by month".to_owned(),
        columns: vec![
            Column {
                key: "month",
                heading: "Month",
                numeric: false,
            },
            Column {
                key: "visits",
                heading: "Visits",
                numeric: true,
            },
            Column {
                key: "upheld_breaches",
                heading: "Upheld breaches",
                numeric: true,
            },
            Column {
                key: "upheld_per_100_visits",
                heading: "Per 100 visits",
                numeric: true,
            },
            Column {
                key: "programme_per_100_visits",
                heading: "Programme per 100 visits",
                numeric: true,
            },
        ],
        rows: own
            .iter()
            .zip(programme)
            .map(|(own, programme)| Row {
                id: None,
                cells: vec![
                    Cell::text(own.month.clone()),
                    Cell::count(own.visits),
                    Cell::count(own.upheld_breaches),
                    Cell::number(own.rate.defined.then_some(own.rate.value), 2),
                    Cell::number(programme.rate.defined.then_some(programme.rate.value), 2),
                ],
            })
            .collect(),
        sortable: false,
    };
    html! {
        h2 { "Performance, " (chosen.from) " to " (chosen.to) }
        form class="period" method="get" action=(format!("/contractors/{contractor_id}")) {
            div { label for="from" { "From month" } input id="from" name="from" type="month" value=(chosen.from); }
            div { label for="to" { "To month" } input id="to" name="to" type="month" value=(chosen.to); }
            div { button type="submit" { "Show" } }
        }
        h3 { "What residents told us" }
        div class="cards" {
            div class="card" { div { "Visits" } div class="figure" { (figures.visits) } }
            div class="card" { div { "Upheld breaches" } div class="figure" { (figures.upheld_breaches) } }
            div class="card" {
                div { "Upheld per 100 visits" }
                div class="figure" { @if rate.defined { (format!("{:.2}", rate.value)) } @else { "—" } }
                @if rate.defined { div { "95% interval " (format!("{:.2} to {:.2}", rate.lower, rate.upper)) } }
            }
            div class="card" { div { "Complaints" } div class="figure" { (figures.complaints) } }
        }
        (standards.html())
        (what_we_saw(chosen, figures.inspections.as_ref()))
        h3 id="run-heading" { "Monthly breach rate against the programme" }
        div class="figure-pair" {
            figure aria-labelledby="run-heading" { (charts::run_chart(name, &points)) }
            div { (monthly.html()) }
        }
    }
}

/// "What we saw": the landlord's own inspections beside the complaint figures.
fn what_we_saw(chosen: &Chosen, saw: Option<&v1::InspectionFigures>) -> Markup {
    let Some(saw) = saw else {
        return html! {};
    };
    let coverage = saw
        .coverage_per_100_visits
        .as_ref()
        .filter(|rate| rate.defined);
    let programme = saw
        .programme_share_met
        .as_ref()
        .filter(|share| share.defined);
    let standards = Table {
        id: "inspection-standards",
        caption: format!("What we saw per standard, {} to {}", chosen.from, chosen.to),
        columns: vec![
            Column {
                key: "standard",
                heading: "Standard",
                numeric: false,
            },
            Column {
                key: "observations",
                heading: "Observed (met or not met)",
                numeric: true,
            },
            Column {
                key: "not_met",
                heading: "Not met",
                numeric: true,
            },
            Column {
                key: "share_met",
                heading: "Share met",
                numeric: true,
            },
            Column {
                key: "share_met_lower",
                heading: "95% lower",
                numeric: true,
            },
            Column {
                key: "share_met_upper",
                heading: "95% upper",
                numeric: true,
            },
        ],
        rows: saw
            .standards
            .iter()
            .map(|standard| {
                let share = standard.share_met.as_ref().filter(|share| share.defined);
                Row {
                    id: None,
                    cells: vec![
                        Cell::text(words::standard(standard.standard)),
                        Cell::count(standard.observations),
                        Cell::count(standard.not_met),
                        Cell::share(share.map(|share| share.value)),
                        Cell::share(share.map(|share| share.lower)),
                        Cell::share(share.map(|share| share.upper)),
                    ],
                }
            })
            .collect(),
        sortable: true,
    };
    html! {
        section id="what-we-saw" aria-labelledby="what-we-saw-heading" {
            h3 id="what-we-saw-heading" { "What we saw: our inspections" }
            div class="cards" {
                div class="card" { div { "Inspections" } div class="figure" data-value=(saw.inspections) { (saw.inspections) } }
                div class="card" {
                    div { "Observations met" }
                    div class="figure" data-value=(saw.share_met.as_ref().filter(|s| s.defined).map(|s| s.value.to_string()).unwrap_or_default()) {
                        @match saw.share_met.as_ref().filter(|s| s.defined) {
                            Some(share) => (format!("{:.1}%", share.value * 100.0)),
                            None => "—",
                        }
                    }
                    @if saw.share_met.as_ref().is_some_and(|s| s.defined) {
                        div { (words::share_with_interval(saw.share_met.as_ref())) }
                    }
                    div { (saw.not_met) " not met of " (saw.observations) " observed" }
                    @if let Some(programme) = programme {
                        div { "Programme: " (format!("{:.1}%", programme.value * 100.0)) }
                    }
                }
                div class="card" {
                    div { "Inspections per 100 visits" }
                    div class="figure" data-value=(coverage.map(|r| r.value.to_string()).unwrap_or_default()) {
                        @match coverage { Some(rate) => (format!("{:.2}", rate.value)), None => "—" }
                    }
                    div { "Target " (format!("{:.2}", saw.coverage_target_per_100_visits)) }
                    @if saw.coverage_below_target {
                        div { strong { "Below target" } }
                    } @else if coverage.is_some() {
                        div { "Meets the target" }
                    }
                }
            }
            @if saw.sources_disagree {
                p id="sources-disagree" class="note" {
                    strong { "The sources disagree: " }
                    (super::programme::disagreement_text(saw.agreement))
                    ". Read the complaint figures with care."
                }
            }
            @if saw.standards.is_empty() {
                p { "No standard was observed on inspection in this period." }
            } @else {
                (standards.html())
            }
        }
    }
}

fn complaints_section(complaints: &[v1::ComplaintSummary]) -> Markup {
    html! {
        h2 { "Open complaints" }
        @if complaints.is_empty() {
            p { "No complaint is waiting on a deadline." }
        } @else {
            (super::complaints::summary_table("open-complaints", "Open complaints, the next deadline first", complaints, None).html())
        }
    }
}

fn escalations_section(escalations: &[v1::Escalation]) -> Markup {
    html! {
        h2 { "Open escalations" }
        @if escalations.is_empty() {
            p { "No escalation is open." }
        } @else {
            ul {
                @for escalation in escalations {
                    li {
                        strong { (escalation.level) } " — " (words::deadline(escalation.deadline))
                        " due " (words::date(&escalation.deadline_date)) ", complaint "
                        a href=(format!("/complaints/{}", escalation.complaint_id)) { (escalation.complaint_id) }
                    }
                }
            }
        }
    }
}

fn audits_section(
    profile: Option<&v1::Contractor>,
    figures: Option<&v1::GetContractorPerformanceResponse>,
) -> Markup {
    html! {
        h2 { "Equality audits" }
        @if profile.is_some_and(|contractor| contractor.equality_audit_overdue) {
            p id="equality-audit-overdue" class="note" { strong { "Equality audit overdue" } ": no audit in the time the landlord allows." }
        }
        @if let Some(contractor) = profile.filter(|contractor| !contractor.equality_training.is_empty()) {
            h3 { "Equality and diversity training" }
            ul id="equality-training" {
                @for training in &contractor.equality_training {
                    li { (words::date(&training.training_date)) ": " (training.course) ", " (training.staff_trained) " staff trained" }
                }
            }
        }
        @if let Some(contractor) = profile {
            @if contractor.equality_audits.is_empty() {
                p { "Not audited yet." }
            } @else {
                div class="table-wrap" tabindex="0" role="region" aria-label="Equality audits" {
                    table id="equality-audits" {
                        caption { "Equality audits, latest last" }
                        thead { tr {
                            th scope="col" { "Date" } th scope="col" { "Auditor" } th scope="col" { "Outcome" }
                            th scope="col" { "Requirements not met" }
                        } }
                        tbody {
                            @for audit in &contractor.equality_audits {
                                tr {
                                    th scope="row" { (words::date(&audit.audit_date)) }
                                    td { (audit.auditor) }
                                    td { (words::audit_outcome(audit.outcome)) }
                                    td { (audit.requirements_not_met) }
                                }
                            }
                        }
                    }
                }
            }
        } @else if let Some(audit) = figures.and_then(|figures| figures.equality_audit.as_ref()) {
            @if audit.audited {
                p { "Latest audit " (words::date(&audit.latest_audit_date)) ": " (words::audit_outcome(audit.latest_outcome)) "."
                    @if !audit.requirements_not_met.is_empty() { " Requirements not met: " (audit.requirements_not_met) "." } }
            } @else {
                p { "Not audited yet." }
            }
        }
    }
}
