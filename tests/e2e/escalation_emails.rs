//! Escalation emails as the people who get them read them, read back from a real SMTP server
//! (Python's aiosmtpd): the level, deadline, dates and lateness in words, the contractor by name,
//! a link to the case page; the landlord's staff see the resident's reference and the property,
//! a contractor never sees a resident's personal data and is told what is expected in words; a
//! backlog caught up at once sends one message per complaint; warnings come at 08:00 UK time on
//! the last working day before the deadline. Every round is driven by the test.

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::escalation_service_client::EscalationServiceClient;
use doorstep_server::settings::{EmailSettings, Settings};
use doorstep_tests::smtp::{Mail, SmtpServer};
use doorstep_tests::webhook::free_address;
use doorstep_tests::{
    TestApp, TestClock, gate_left_open, notify_on_test_rounds, requests, spawn_app_with, whole_log,
};

const CASE_PAGES: &str = "http://127.0.0.1:8080/complaints/{complaint_id}";

/// The notifier on rounds the test drives, emailing through `smtp`; the breach tells the
/// landlord's complaints team and acme-retrofit's complaints lead.
fn email_through(settings: &mut Settings, smtp: &SmtpServer) {
    notify_on_test_rounds(settings, "breach");
    settings.notifier.case_url_template = Some(CASE_PAGES.to_owned());
    settings.notifier.email = Some(EmailSettings {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: smtp.port,
        from: "Doorstep <complaints@landlord.example>".to_owned(),
    });
}

async fn log(app: &TestApp, key: &str, received_at: &str) -> v1::LogComplaintResponse {
    app.client
        .clone()
        .log_complaint(gate_left_open(key, received_at))
        .await
        .expect("logged")
        .into_inner()
}

fn to<'a>(messages: &'a [Mail], address: &str) -> Vec<&'a Mail> {
    messages
        .iter()
        .filter(|message| message.to() == address)
        .collect()
}

/// What no message may hold, whoever reads it: API names, levels spelled with underscores, and
/// the complaint's id anywhere but in its link.
fn assert_written_for_people(message: &Mail, complaint_id: &str) {
    let text = format!("{}\n{}", message.subject(), message.body);
    for api_name in [
        "AcknowledgeEscalation",
        "GetComplaint",
        "ListEscalations",
        "escalation id",
    ] {
        assert!(!text.contains(api_name), "{api_name} in:\n{text}");
    }
    assert!(!text.contains('_'), "an underscore in:\n{text}");
    let link = CASE_PAGES.replace("{complaint_id}", complaint_id);
    assert!(
        message.body.lines().any(|line| line == link),
        "the case page link on a line of its own:\n{text}"
    );
    assert_eq!(
        text.matches(complaint_id).count(),
        1,
        "the complaint's id only in its link:\n{text}"
    );
}

#[tokio::test]
async fn staff_and_contractor_each_read_the_escalation_in_plain_english() {
    if !SmtpServer::available() {
        return;
    }
    let smtp = SmtpServer::start().await;
    let clock = TestClock::at("2026-04-02T10:00:00Z");
    let app = spawn_app_with(|settings, _| email_through(settings, &smtp), clock.clone()).await;
    let complaint_id = log(&app, "email-1", "2026-04-02T09:00:00Z")
        .await
        .complaint_id;
    // Acknowledged on time by Ann Officer on Friday 10 April: the response is due on Friday
    // 24 April. It is not sent, and on Tuesday 28 April the breach is raised.
    clock.set("2026-04-10T10:00:00Z".parse().expect("a time"));
    app.client
        .clone()
        .acknowledge_complaint(requests::acknowledgement(
            &complaint_id,
            v1::Stage::One,
            "Ann Officer",
            None,
        ))
        .await
        .expect("acknowledged");
    clock.set("2026-04-28T08:00:00Z".parse().expect("a time"));
    assert_eq!(app.raise_all_due().await, 2, "the warning and the breach");
    // The warning tells nobody; the breach tells the team and the contractor.
    assert_eq!(app.deliver_due().await, 2);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "{messages:#?}");

    let team = to(&messages, "complaints-team@landlord.example");
    let [team] = team.as_slice() else {
        panic!("one message to the team: {messages:#?}");
    };
    assert_eq!(
        team.subject(),
        "[Doorstep] Deadline missed: the stage 1 response is 1 working day late \
         (resident T-1001, acme-retrofit Ltd)"
    );
    for line in [
        "Resident:          T-1001",
        "Property:          1 Example Road, Leeds",
        "Contractor:        acme-retrofit Ltd (trading as acme-retrofit Warm Homes)",
        "Standards alleged: Close gates and doors behind you",
        "Stage:             Stage 1",
        "Deadline:          stage 1 response, due Friday 24 April 2026",
        "How late:          1 working day late",
        "Handled by:        Ann Officer",
        "Received:          Thursday 2 April 2026",
        "Escalated:         Tuesday 28 April 2026 at 09:00 (UK time)",
    ] {
        assert!(
            team.body.lines().any(|l| l == line),
            "{line:?} in:\n{}",
            team.body
        );
    }
    assert!(team.prose().contains(
        "What to do: send the resident the stage 1 response, or agree an extension and tell \
         the resident why, with the Ombudsman's contact details"
    ));
    assert_written_for_people(team, &complaint_id);

    let contractor = to(&messages, "complaints@acme.example");
    let [contractor] = contractor.as_slice() else {
        panic!("one message to the contractor: {messages:#?}");
    };
    assert_eq!(
        contractor.subject(),
        "[Doorstep] Deadline missed: the stage 1 response is 1 working day late \
         (complaint received Thursday 2 April 2026 about acme-retrofit Ltd)"
    );
    // Nothing of the resident's: not the reference, the name, the phone, the email, the
    // address, the property's UPRN or the reasonable adjustments.
    for personal in [
        "T-1001",
        "Ada",
        "07700",
        "ada@example.org",
        "Example Road",
        "100023336956",
        "Large print",
    ] {
        assert!(
            !contractor.raw.contains(personal),
            "{personal} in the contractor's copy:\n{}",
            contractor.raw
        );
    }
    assert!(
        contractor
            .body
            .lines()
            .any(|l| l == "Standards alleged: Close gates and doors behind you")
    );
    assert!(
        contractor.prose().contains(
            "What we need from you: please contact the complaints team at \
             complaints@landlord.example by the end of Wednesday 29 April 2026, with your \
             account of what happened"
        ),
        "{}",
        contractor.body
    );
    assert_written_for_people(contractor, &complaint_id);
    smtp.stop().await;
}

/// Every level of the default ladder tells the complaints team; acme-retrofit's complaints lead
/// hears of the breach and the contract manager.
fn every_level_emailed(settings: &mut Settings, smtp_port: u16) {
    notify_on_test_rounds(settings, "breach");
    for level in [
        "warning",
        "breach",
        "liaison_officer",
        "contract_manager",
        "head_of_service",
    ] {
        settings.escalation.recipients.insert(
            level.to_owned(),
            vec!["complaints-team@landlord.example".to_owned()],
        );
    }
    settings
        .escalation
        .contractor_recipients
        .entry("acme-retrofit".to_owned())
        .or_default()
        .insert(
            "contract_manager".to_owned(),
            vec!["complaints@acme.example".to_owned()],
        );
    settings.notifier.case_url_template = Some(CASE_PAGES.to_owned());
    settings.notifier.email = Some(EmailSettings {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port,
        from: "Doorstep <complaints@landlord.example>".to_owned(),
    });
}

/// An old complaint, received on Monday 2 March 2026 and never acknowledged (due Monday 9
/// March), caught up on Tuesday 14 April: every level of its ladder is due at once.
const OLD_COMPLAINT_RECEIVED: &str = "2026-03-02T09:00:00Z";
const CATCH_UP_AT: &str = "2026-04-14T08:00:00Z";

fn levels_raised(escalations: &[v1::Escalation]) -> Vec<&str> {
    escalations.iter().map(|e| e.level.as_str()).collect()
}

async fn escalations_of(app: &TestApp) -> Vec<v1::Escalation> {
    EscalationServiceClient::new(app.channel.clone())
        .list_escalations(v1::ListEscalationsRequest::default())
        .await
        .expect("listed")
        .into_inner()
        .escalations
}

/// The catch-up message to the team: one, at the head of service, listing the four others.
fn assert_one_catch_up_message_each(messages: &[Mail], complaint_id: &str) {
    assert_eq!(messages.len(), 2, "one per recipient: {messages:#?}");
    let team = to(messages, "complaints-team@landlord.example");
    let [team] = team.as_slice() else {
        panic!("one message to the team: {messages:#?}");
    };
    assert_eq!(
        team.subject(),
        "[Doorstep] Head of Service: the stage 1 acknowledgement is 23 working days late \
         (resident T-1001, acme-retrofit Ltd)"
    );
    let listed = team
        .body
        .split("Also reached for this complaint, and not sent separately:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("the other levels are listed:\n{}", team.body));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec![
            "  - Warning, on Friday 6 March 2026 at 08:00 (UK time)",
            "  - Deadline missed, at the end of Monday 9 March 2026",
            "  - Liaison officer, at the end of Wednesday 11 March 2026",
            "  - Contract manager, at the end of Monday 16 March 2026",
        ]
    );
    assert_written_for_people(team, complaint_id);
    let contractor = to(messages, "complaints@acme.example");
    let [contractor] = contractor.as_slice() else {
        panic!("one message to the contractor: {messages:#?}");
    };
    assert!(
        contractor
            .subject()
            .starts_with("[Doorstep] Contract manager: the stage 1 acknowledgement is 23"),
        "{}",
        contractor.subject()
    );
    assert!(
        contractor
            .body
            .contains("  - Deadline missed, at the end of Monday 9 March 2026\n")
    );
    assert!(contractor.prose().contains(
        "please respond to the contract manager through the complaints team at \
         complaints@landlord.example by the end of Wednesday 15 April 2026"
    ));
    assert!(!contractor.raw.contains("T-1001"));
    assert_written_for_people(contractor, complaint_id);
}

#[tokio::test]
async fn a_backlog_raises_every_level_but_sends_one_message_per_complaint_even_across_a_restart() {
    if !SmtpServer::available() {
        return;
    }
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let clock = TestClock::at(CATCH_UP_AT);
    let app = spawn_app_with(|settings, _| every_level_emailed(settings, port), clock).await;
    let logged = log(&app, "old-1", OLD_COMPLAINT_RECEIVED).await;
    let complaint_id = logged.complaint_id;
    app.read_models_reach(logged.position).await;
    // One scheduler round raises the clock's first due step, the warning; the breach is due
    // too and not raised yet, so the warning's email waits for it rather than going alone.
    assert_eq!(app.raise_due().await, 1);
    let head = whole_log(&app.channel)
        .await
        .last()
        .map_or(0, |event| event.position);
    app.read_models_reach(head).await;
    assert_eq!(levels_raised(&escalations_of(&app).await), vec!["warning"]);
    assert_eq!(app.deliver_due().await, 0, "the warning waits for the rest");
    assert!(smtp.messages().is_empty());

    // Every level is raised, each its own event, so the record is complete.
    assert_eq!(app.raise_all_due().await, 4);
    assert_eq!(
        levels_raised(&escalations_of(&app).await),
        vec![
            "warning",
            "breach",
            "liaison_officer",
            "contract_manager",
            "head_of_service"
        ]
    );
    // The server stops with every email owed, and comes back. Its delivery loop runs a round
    // as it starts, and the test runs two more side by side, as two replicas would: whichever
    // finds another holding part of a complaint's emails gives its part back, so the rounds
    // run until both messages are in, then once more to show nothing is owed.
    let app = app.restart().await;
    for _ in 0..500 {
        tokio::join!(app.deliver_due(), app.deliver_due());
        if smtp.messages().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.deliver_due().await, 0, "nothing is owed any more");
    // Five deliveries to the team and two to the contractor, sent as two messages.
    assert_one_catch_up_message_each(&smtp.messages(), &complaint_id);
    smtp.stop().await;
}

#[tokio::test]
async fn a_caught_up_message_that_fails_is_dead_lettered_and_retried_as_one_message() {
    if !SmtpServer::available() {
        return;
    }
    // Nothing listens for SMTP yet; every delivery fails on its only try.
    let port = free_address().port();
    let clock = TestClock::at(CATCH_UP_AT);
    let app = spawn_app_with(
        |settings, _| {
            every_level_emailed(settings, port);
            settings.notifier.max_attempts = 1;
        },
        clock,
    )
    .await;
    let complaint_id = log(&app, "old-2", OLD_COMPLAINT_RECEIVED)
        .await
        .complaint_id;
    assert_eq!(app.raise_all_due().await, 5);
    assert_eq!(app.deliver_due().await, 7);
    let mut escalations = EscalationServiceClient::new(app.channel.clone());
    let dead = escalations
        .list_dead_letters(v1::ListDeadLettersRequest::default())
        .await
        .expect("listed")
        .into_inner()
        .dead_letters;
    assert_eq!(dead.len(), 7, "each delivery is dead-lettered: {dead:#?}");

    let smtp = SmtpServer::start_on(port).await;
    for letter in &dead {
        escalations
            .retry_dead_letter(v1::RetryDeadLetterRequest {
                delivery_id: letter.delivery_id.clone(),
            })
            .await
            .expect("queued again");
    }
    assert_eq!(app.deliver_due().await, 7);
    assert_one_catch_up_message_each(&smtp.messages(), &complaint_id);
    smtp.stop().await;
}

/// Logs a complaint received at `received_at` whose warning alone emails the team, and checks
/// that nothing is raised or sent a minute before `warned_at` and that the warning is raised and
/// emailed at it. Returns the warning's message. (The times are in the past: escalations follow
/// the test's clock, but a delivery falls due on the machine's.)
async fn warning_sent_exactly_at(received_at: &str, warned_at: &str) -> Mail {
    let smtp = SmtpServer::start().await;
    let clock = TestClock::at(received_at);
    let app = spawn_app_with(
        |settings, _| {
            email_through(settings, &smtp);
            settings.escalation.recipients.insert(
                "warning".to_owned(),
                vec!["complaints-team@landlord.example".to_owned()],
            );
        },
        clock.clone(),
    )
    .await;
    let logged = log(&app, "warned-1", received_at).await;
    app.read_models_reach(logged.position).await;
    let warned_at: chrono::DateTime<chrono::Utc> = warned_at.parse().expect("a time");
    clock.set(warned_at - chrono::Duration::minutes(1));
    assert_eq!(
        app.raise_all_due().await,
        0,
        "no warning before {warned_at}"
    );
    assert_eq!(app.deliver_due().await, 0);
    assert!(smtp.messages().is_empty());
    clock.set(warned_at);
    assert_eq!(app.raise_all_due().await, 1, "the warning at {warned_at}");
    assert_eq!(app.deliver_due().await, 1);
    let messages = smtp.messages();
    let [message] = messages.as_slice() else {
        panic!("one warning: {messages:#?}");
    };
    assert_written_for_people(message, &logged.complaint_id);
    smtp.stop().await;
    message.clone()
}

#[tokio::test]
async fn a_monday_deadline_is_warned_at_eight_on_the_friday_morning() {
    if !SmtpServer::available() {
        return;
    }
    // Received on Monday 1 December 2025: acknowledgement due Monday 8 December. The warning
    // comes at 08:00 (GMT) on Friday 5 December, not at midnight as Friday ends.
    let message = warning_sent_exactly_at("2025-12-01T09:00:00Z", "2025-12-05T08:00:00Z").await;
    assert_eq!(
        message.subject(),
        "[Doorstep] Warning: deadline on Monday for the stage 1 acknowledgement, due by the \
         end of Monday 8 December 2025 (resident T-1001, acme-retrofit Ltd)"
    );
    assert!(
        message
            .body
            .lines()
            .any(|l| l == "Escalated:         Friday 5 December 2025 at 08:00 (UK time)")
    );
    assert!(
        message
            .body
            .lines()
            .any(|l| l == "How late:          Not yet missed: this is a warning")
    );
}

#[tokio::test]
async fn across_christmas_the_warning_comes_on_the_last_working_morning_before_it() {
    if !SmtpServer::available() {
        return;
    }
    // Received on Thursday 18 December 2025: acknowledgement due Monday 29 December (Christmas
    // Day and Boxing Day fall on the Thursday and Friday before it). The last working day before
    // it is Wednesday 24 December.
    let message = warning_sent_exactly_at("2025-12-18T09:00:00Z", "2025-12-24T08:00:00Z").await;
    assert_eq!(
        message.subject(),
        "[Doorstep] Warning: deadline on Monday for the stage 1 acknowledgement, due by the \
         end of Monday 29 December 2025 (resident T-1001, acme-retrofit Ltd)"
    );
}

#[tokio::test]
async fn in_summer_time_the_warning_still_comes_at_eight_uk_time() {
    if !SmtpServer::available() {
        return;
    }
    // Received on Wednesday 22 October 2025: acknowledgement due Wednesday 29 October, after
    // the clocks go back on Sunday 26th. Its warning, on Tuesday 28th, is at 08:00 GMT; the
    // warning of a deadline on Thursday 23rd, given on Wednesday 22nd in summer time, is at
    // 07:00 UTC.
    warning_sent_exactly_at("2025-10-22T09:00:00Z", "2025-10-28T08:00:00Z").await;
    let message = warning_sent_exactly_at("2025-10-16T09:00:00Z", "2025-10-22T07:00:00Z").await;
    assert!(
        message
            .body
            .lines()
            .any(|l| l == "Escalated:         Wednesday 22 October 2025 at 08:00 (UK time)"),
        "{}",
        message.body
    );
}

#[tokio::test]
async fn after_erasure_the_staff_copy_no_longer_gives_the_address() {
    if !SmtpServer::available() {
        return;
    }
    let smtp = SmtpServer::start().await;
    let clock = TestClock::at("2026-04-14T08:00:00Z");
    let app = spawn_app_with(|settings, _| email_through(settings, &smtp), clock).await;
    let logged = log(&app, "erased-1", "2026-04-02T09:00:00Z").await;
    // The resident asks to be forgotten before the breach is emailed.
    ComplaintServiceClient::new(app.channel_as(&["admin"]))
        .forget_resident(v1::ForgetResidentRequest {
            resident_reference: "T-1001".to_owned(),
            reason: "Erasure request".to_owned(),
            ..Default::default()
        })
        .await
        .expect("forgotten");
    assert_eq!(app.raise_all_due().await, 2);
    assert_eq!(app.deliver_due().await, 2);
    let messages = smtp.messages();
    let team = to(&messages, "complaints-team@landlord.example");
    let [team] = team.as_slice() else {
        panic!("one message to the team: {messages:#?}");
    };
    assert!(
        team.body
            .lines()
            .any(|l| l == "Property:          erased at the resident's request"),
        "{}",
        team.body
    );
    assert!(!team.raw.contains("Example Road"));
    assert_written_for_people(team, &logged.complaint_id);
    smtp.stop().await;
}
