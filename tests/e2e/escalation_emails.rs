//! Escalation emails as the people who get them read them, read back from a real SMTP server
//! (Python's aiosmtpd): the level, deadline, dates and lateness in words, the contractor by name,
//! a link to the case page; the landlord's staff see the resident's reference and the property,
//! a contractor never sees a resident's personal data and is told what is expected in words; a
//! backlog caught up at once sends one message per complaint; warnings come at 08:00 UK time on
//! the last working day before the deadline. Every round is driven by the test.

use doorstep_api::v1;
use doorstep_server::settings::{EmailSettings, Settings};
use doorstep_tests::smtp::{Mail, SmtpServer};
use doorstep_tests::{
    TestApp, TestClock, gate_left_open, notify_on_test_rounds, requests, spawn_app_with,
};

const CASE_PAGES: &str = "http://127.0.0.1:8080/complaints/{complaint_id}";

/// The notifier on rounds the test drives, emailing through `smtp`; the breach tells the
/// landlord's complaints team and acme-retrofit's complaints lead.
fn email_through(settings: &mut Settings, smtp: &SmtpServer) {
    notify_on_test_rounds(settings, "breach");
    settings.notifier.case_url_template = CASE_PAGES.to_owned();
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
