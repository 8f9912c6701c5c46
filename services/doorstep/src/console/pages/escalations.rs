//! Open escalations by level, acknowledged from the page (officers, managers); dead letters,
//! retried one at a time or all at once (administrators). Both actions are the API's own
//! writes, so an acknowledgement is an event on the complaint and a resent form is recognised.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Redirect;
use doorstep_api::v1;
use doorstep_api::v1::escalation_service_server::EscalationService;
use maud::{Markup, html};

use super::super::Shared;
use super::super::access::{Page, may_call, method};
use super::super::error::ConsoleError;
use super::super::layout;
use super::super::services::call;
use super::super::session::{Session, random_token};
use super::words;

/// `GET /escalations`.
pub async fn page(State(state): State<Shared>, session: Session) -> Result<Markup, ConsoleError> {
    let principal = &session.principal;
    if !Page::Escalations.allows(principal) {
        return Err(ConsoleError::Forbidden);
    }
    let api = state.services.escalations.as_ref();
    let open = if may_call(principal, method::LIST_ESCALATIONS) {
        let mut escalations = Vec::new();
        let mut page_token = String::new();
        // Open escalations are few (each is acknowledged or its complaint moves on); a bound
        // keeps a backlog from making the page unbounded.
        for _ in 0..10 {
            let page = call(
                principal,
                method::LIST_ESCALATIONS,
                v1::ListEscalationsRequest {
                    open_only: true,
                    page_size: 500,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                |request| api.list_escalations(request),
            )
            .await?;
            escalations.extend(page.escalations);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let mut by_level: BTreeMap<String, Vec<v1::Escalation>> = BTreeMap::new();
        for escalation in escalations {
            by_level
                .entry(escalation.level.clone())
                .or_default()
                .push(escalation);
        }
        let mut by_level: Vec<(String, Vec<v1::Escalation>)> = by_level.into_iter().collect();
        by_level.sort_by_key(|(level, _)| seniority(level));
        Some(by_level)
    } else {
        None
    };
    let names = contractor_names(&state, &session).await?;
    let dead = if may_call(principal, method::LIST_DEAD_LETTERS) {
        Some(
            call(
                principal,
                method::LIST_DEAD_LETTERS,
                v1::ListDeadLettersRequest {
                    page_size: 500,
                    page_token: String::new(),
                },
                |request| api.list_dead_letters(request),
            )
            .await?
            .dead_letters,
        )
    } else {
        None
    };
    let may_acknowledge = may_call(principal, method::ACKNOWLEDGE_ESCALATION);
    let may_retry = may_call(principal, method::RETRY_DEAD_LETTER);
    let body = html! {
        @if let Some(by_level) = &open {
            h2 { "Open escalations" }
            @if by_level.is_empty() {
                p { "No escalation is open." }
            }
            @for (level, escalations) in by_level {
                h3 { (level_words(level)) " (" (escalations.len()) ")" }
                div class="table-wrap" tabindex="0" role="region" aria-label=(format!("Open {} escalations", level_words(level))) {
                    table id=(format!("escalations-{level}")) class="stacked" {
                        caption { "Open " (level_words(level)) " escalations" }
                        thead { tr {
                            th scope="col" { "Complaint" } th scope="col" { "Contractor" }
                            th scope="col" { "Deadline" } th scope="col" { "Due" } th scope="col" { "Raised" }
                            @if may_acknowledge { th scope="col" { "Acknowledge" } }
                        } }
                        tbody {
                            @for escalation in escalations {
                                tr data-escalation-id=(escalation.escalation_id) {
                                    th scope="row" { a href=(format!("/complaints/{}", escalation.complaint_id)) { (words::short_id(&escalation.complaint_id)) } }
                                    td data-label="Contractor" { (names.get(&escalation.contractor_id).unwrap_or(&escalation.contractor_id)) }
                                    td data-label="Deadline" { (words::deadline(escalation.deadline)) }
                                    td data-label="Due" { (words::date(&escalation.deadline_date)) }
                                    td data-label="Raised" { (words::when(escalation.raised_at.as_ref())) }
                                    @if may_acknowledge {
                                        td data-label="Acknowledge" {
                                            form method="post" action=(format!("/escalations/{}/acknowledge", escalation.escalation_id)) {
                                                (layout::csrf_field(&session))
                                                input type="hidden" name="request_id" value=(random_token());
                                                label class="visually-hidden" for=(format!("note-{}", escalation.escalation_id)) { "Note on complaint " (words::short_id(&escalation.complaint_id)) " (optional)" }
                                                input id=(format!("note-{}", escalation.escalation_id)) name="note" type="text" maxlength="500" placeholder="Note (optional)";
                                                " "
                                                button type="submit" { "Acknowledge" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(dead) = &dead {
            h2 { "Dead letters" }
            p { "Deliveries that failed every try. Retrying sends the same delivery again, with the same id, so a receiver that did get it can tell." }
            @if dead.is_empty() {
                p { "No delivery is dead-lettered." }
            } @else {
                @if may_retry {
                    form method="post" action="/dead-letters/retry-all" {
                        (layout::csrf_field(&session))
                        button type="submit" { "Retry all " (dead.len()) }
                    }
                }
                div class="table-wrap" tabindex="0" role="region" aria-label="Dead-lettered deliveries" {
                    table id="dead-letters" {
                        caption { "Dead-lettered deliveries" }
                        thead { tr {
                            th scope="col" { "Receiver" } th scope="col" { "Channel" } th scope="col" class="number" { "Tries" }
                            th scope="col" { "Last error" } th scope="col" { "Created" }
                            @if may_retry { th scope="col" { "Retry" } }
                        } }
                        tbody {
                            @for letter in dead {
                                tr data-dead-letter-id=(letter.delivery_id) {
                                    th scope="row" { (letter.target) }
                                    td { (if letter.channel == v1::DeliveryChannel::Email as i32 { "Email" } else { "Webhook" }) }
                                    td class="number" { (letter.attempts) }
                                    td { (letter.last_error) }
                                    td { (words::when(letter.created_at.as_ref())) }
                                    @if may_retry {
                                        td {
                                            form method="post" action=(format!("/dead-letters/{}/retry", letter.delivery_id)) {
                                                (layout::csrf_field(&session))
                                                button type="submit" class="secondary" aria-label=(format!("Retry the delivery to {}", letter.target)) { "Retry" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        "Escalations",
        Some(&session),
        Some(Page::Escalations),
        body,
    ))
}

/// Most senior first, in the default ladder's order; levels of a ladder of the operator's own
/// after them, by name.
fn seniority(level: &str) -> (usize, String) {
    let ladder = doorstep_domain::escalation::default_ladder();
    let position = ladder
        .iter()
        .rev()
        .position(|(known, _)| known == level)
        .unwrap_or(ladder.len());
    (position, level.to_owned())
}

fn level_words(level: &str) -> String {
    words::name(level)
}

/// Contractors' legal names by id, when the user may list the registry (else ids are shown).
async fn contractor_names(
    state: &Shared,
    session: &Session,
) -> Result<HashMap<String, String>, ConsoleError> {
    if !may_call(&session.principal, method::LIST_CONTRACTORS) {
        return Ok(HashMap::new());
    }
    use doorstep_api::v1::contractor_service_server::ContractorService;
    let api = state.services.contractors.as_ref();
    let listed = call(
        &session.principal,
        method::LIST_CONTRACTORS,
        v1::ListContractorsRequest {
            page_size: 500,
            ..Default::default()
        },
        |request| api.list_contractors(request),
    )
    .await?;
    Ok(listed
        .contractors
        .into_iter()
        .filter(|contractor| !contractor.legal_name.is_empty())
        .map(|contractor| (contractor.contractor_id, contractor.legal_name))
        .collect())
}

fn checked(session: &Session, form: &HashMap<String, String>) -> Result<(), ConsoleError> {
    if session.accepts(form.get("csrf_token").map(String::as_str)) {
        Ok(())
    } else {
        Err(ConsoleError::MissingCsrfToken)
    }
}

/// `POST /escalations/{id}/acknowledge`: `AcknowledgeEscalation` as the signed-in user; the
/// form's request id makes a resent form a duplicate, not a second acknowledgement.
pub async fn acknowledge(
    State(state): State<Shared>,
    session: Session,
    Path(escalation_id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Redirect, ConsoleError> {
    checked(&session, &form)?;
    let by: String = session.principal.subject.chars().take(128).collect();
    let api = state.services.escalations.as_ref();
    call(
        &session.principal,
        method::ACKNOWLEDGE_ESCALATION,
        v1::AcknowledgeEscalationRequest {
            escalation_id,
            acknowledged_by: by,
            note: form.get("note").cloned().unwrap_or_default(),
            request_id: form.get("request_id").cloned().unwrap_or_default(),
        },
        |request| api.acknowledge_escalation(request),
    )
    .await?;
    Ok(Redirect::to("/escalations"))
}

/// `POST /dead-letters/{id}/retry`.
pub async fn retry(
    State(state): State<Shared>,
    session: Session,
    Path(delivery_id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Redirect, ConsoleError> {
    checked(&session, &form)?;
    let api = state.services.escalations.as_ref();
    call(
        &session.principal,
        method::RETRY_DEAD_LETTER,
        v1::RetryDeadLetterRequest { delivery_id },
        |request| api.retry_dead_letter(request),
    )
    .await?;
    Ok(Redirect::to("/escalations"))
}

/// `POST /dead-letters/retry-all`: every dead letter listed now, each retried as one would be.
pub async fn retry_all(
    State(state): State<Shared>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Redirect, ConsoleError> {
    checked(&session, &form)?;
    let principal = &session.principal;
    if !may_call(principal, method::RETRY_DEAD_LETTER) {
        return Err(ConsoleError::Forbidden);
    }
    let api = state.services.escalations.as_ref();
    let dead = call(
        principal,
        method::LIST_DEAD_LETTERS,
        v1::ListDeadLettersRequest {
            page_size: 500,
            page_token: String::new(),
        },
        |request| api.list_dead_letters(request),
    )
    .await?
    .dead_letters;
    for letter in dead {
        let retried = call(
            principal,
            method::RETRY_DEAD_LETTER,
            v1::RetryDeadLetterRequest {
                delivery_id: letter.delivery_id,
            },
            |request| api.retry_dead_letter(request),
        )
        .await;
        // Another administrator may have retried one meanwhile: not an error for the rest.
        match retried {
            Ok(_) | Err(ConsoleError::BadRequest(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Redirect::to("/escalations"))
}
