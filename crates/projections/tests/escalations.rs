//! The escalation schedule, the escalations raised and the delivery outbox against a real event
//! store on every backend: the schedule holds the running clock's ladder less what was raised,
//! moves with the clock, and a rebuild gives the same rows without queueing any delivery twice.

#[macro_use]
mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::complaint::{Command, Stage};
use doorstep_domain::escalation::{
    Deadline, EscalationLevel, EscalationPolicy, LadderStep, PlannedEscalation, default_ladder,
    plan,
};
use doorstep_domain::input::{EmailAddress, Handler, OptionalText, ShortText};
use doorstep_projections::{
    DueEscalation, EscalationFilter, EscalationPlanner, Month, ProjectionRunner, ReadModel,
};
use support::{ComplaintWriter, TestBackend, valid};

fn at(text: &str) -> DateTime<Utc> {
    valid(text.parse())
}

/// The ladder the planner would raise for the complaint's running clock.
fn planned(complaint: &ComplaintWriter) -> Vec<PlannedEscalation> {
    let clock = valid(complaint.complaint().running_clock().ok_or("a clock runs"));
    plan(
        &complaint.id,
        &complaint.complaint().contractor_id,
        &clock,
        &planner().policy,
        &WorkingDayCalendar::england_and_wales(),
    )
}

/// Raises `step` on the complaint at `raised_at`.
async fn raise(
    complaint: &mut ComplaintWriter,
    backend: &TestBackend,
    step: PlannedEscalation,
    raised_at: DateTime<Utc>,
) {
    let command = Command::RaiseEscalation {
        escalation: Box::new(step),
        at: raised_at,
    };
    complaint.run(backend, command).await;
}

/// The ladder steps due at `now`.
async fn due_at(read_model: &ReadModel, now: &str) -> Vec<DueEscalation> {
    valid(read_model.due_escalations(at(now), 10).await)
}

fn planner() -> EscalationPlanner {
    let level = |name: &str| valid(EscalationLevel::parse("level", name));
    let steps: Vec<LadderStep> = default_ladder()
        .into_iter()
        .map(|(name, offset)| LadderStep {
            level: level(&name),
            offset_working_days: offset,
        })
        .collect();
    let policy = valid(EscalationPolicy::new(
        Deadline::ALL
            .into_iter()
            .map(|d| (d, steps.clone()))
            .collect(),
        BTreeMap::from([(
            level("breach"),
            vec![
                valid(EmailAddress::parse("e", "liaison@landlord.example")),
                valid(EmailAddress::parse("e", "team@landlord.example")),
            ],
        )]),
        BTreeMap::new(),
    ));
    EscalationPlanner {
        policy,
        calendar: WorkingDayCalendar::england_and_wales(),
        webhook_urls: vec!["http://127.0.0.1:9/hook".to_owned()],
        email: true,
    }
}

async fn schedule_follows_the_clock_and_rebuilds(backend: TestBackend) {
    let (runner, read_model, database) = backend.projections().await;
    let runner = runner.with_escalations(planner());
    // Received Thursday 2 April 2026: acknowledgement due Monday 13 April (Easter between).
    let mut complaint = ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
    valid(runner.catch_up().await);
    // The warning comes at 08:00 UK time (07:00 UTC) on Friday 10 April, and not before.
    assert!(due_at(&read_model, "2026-04-10T06:59:00Z").await.is_empty());
    assert_eq!(due_at(&read_model, "2026-04-10T07:00:00Z").await.len(), 1);
    let due = due_at(&read_model, "2026-04-14T08:00:00Z").await;
    // The schedule holds each clock's next step only: the warning, though the breach is due too.
    let levels: Vec<&str> = due.iter().map(|step| step.level.as_str()).collect();
    assert_eq!(levels, vec!["warning"]);
    assert!(
        due.iter()
            .all(|step| step.deadline == Deadline::StageOneAcknowledgement)
    );

    // The scheduler raises the breach: it leaves the schedule, joins the escalations, and owes
    // one webhook delivery and one email per recipient.
    let breach = planned(&complaint)
        .into_iter()
        .find(|step| step.level.as_str() == "breach")
        .unwrap_or_else(|| panic!("a breach step"));
    let breach_id = breach.escalation_id;
    raise(&mut complaint, &backend, breach, at("2026-04-14T08:00:00Z")).await;
    valid(runner.catch_up().await);
    let due = due_at(&read_model, "2026-04-14T08:00:00Z").await;
    assert_eq!(due.len(), 1, "only the warning is still due");
    let raised = valid(
        read_model
            .list_escalations(&EscalationFilter::default(), 10, 0)
            .await,
    );
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].escalation_id, breach_id);
    assert_eq!(raised[0].recipients.len(), 2);
    let deliveries = valid(
        read_model
            .claim_due_deliveries(at("2026-04-14T09:00:00Z"), Duration::seconds(30), 10)
            .await,
    );
    assert_eq!(deliveries.len(), 3, "one webhook and two emails");
    // A second worker finds them all leased.
    assert!(
        valid(
            read_model
                .claim_due_deliveries(at("2026-04-14T09:00:01Z"), Duration::seconds(30), 10)
                .await
        )
        .is_empty()
    );
    for delivery in &deliveries {
        valid(
            read_model
                .mark_delivered(delivery.delivery_id, 1, at("2026-04-14T09:00:02Z"))
                .await,
        );
    }
    let figures = valid(
        read_model
            .contractor_performance(
                "acme-retrofit",
                valid(Month::parse("2026-04")),
                valid(Month::parse("2026-04")),
            )
            .await,
    );
    assert_eq!(
        (
            figures.escalations_raised,
            figures.escalations_past_deadline
        ),
        (1, 1)
    );
    assert_eq!(figures.escalations, 0, "no resident asked for stage 2");

    // Acknowledging stops the acknowledgement clock and starts the response clock.
    complaint
        .run(
            &backend,
            Command::Acknowledge {
                stage: Stage::One,
                handler: valid(Handler::parse("h", "Ann")),
                complaint_definition: OptionalText::default(),
                outcome_sought: OptionalText::default(),
                at: at("2026-04-14T10:00:00Z"),
            },
        )
        .await;
    valid(runner.catch_up().await);
    assert!(due_at(&read_model, "2026-04-20T00:00:00Z").await.is_empty());
    let due = due_at(&read_model, "2026-06-01T00:00:00Z").await;
    let levels: Vec<&str> = due.iter().map(|step| step.level.as_str()).collect();
    assert_eq!(levels, vec!["warning"], "the response clock's first step");
    assert!(
        due.iter()
            .all(|step| step.deadline == Deadline::StageOneResponse)
    );

    // The response warning is raised; then an extension moves the deadline. The warning stays
    // raised and is not scheduled again; the next step, the breach, follows the new date.
    let warning = planned(&complaint)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("a warning step"));
    let warning_due = warning.due_at;
    raise(&mut complaint, &backend, warning, warning_due).await;
    complaint
        .run(
            &backend,
            Command::ExtendDeadline {
                reason: valid(ShortText::parse("reason", "Waiting for the contractor")),
                working_days: 5,
                ombudsman_details_given: true,
                at: warning_due,
            },
        )
        .await;
    valid(runner.catch_up().await);
    let due = due_at(&read_model, "2026-06-01T00:00:00Z").await;
    let levels: Vec<&str> = due.iter().map(|step| step.level.as_str()).collect();
    assert_eq!(levels, vec!["breach"]);
    let extended_to = complaint
        .complaint()
        .current_stage()
        .response_due
        .unwrap_or_else(|| panic!("a response deadline"));
    assert!(due.iter().all(|step| step.deadline_date == extended_to));

    // Acknowledging the escalation shows in the list; "open" leaves it out.
    complaint
        .run(
            &backend,
            Command::AcknowledgeEscalation {
                escalation_id: breach_id,
                by: valid(Handler::parse("by", "Head of Service")),
                note: OptionalText::default(),
                at: at("2026-04-14T11:00:00Z"),
            },
        )
        .await;
    valid(runner.catch_up().await);
    let open = EscalationFilter {
        open_only: true,
        ..EscalationFilter::default()
    };
    let still_open = valid(read_model.list_escalations(&open, 10, 0).await);
    assert_eq!(still_open.len(), 1, "the response warning is still open");
    assert_eq!(still_open[0].level.as_str(), "warning");

    // A rebuild gives the same rows and queues no delivery again.
    let before = valid(database.snapshot().await);
    valid(runner.reset().await);
    valid(runner.catch_up().await);
    assert_eq!(valid(database.snapshot().await), before);
    assert!(
        valid(
            read_model
                .claim_due_deliveries(at("2026-04-15T00:00:00Z"), Duration::seconds(30), 10)
                .await
        )
        .is_empty()
    );
    // A fresh runner on the same database continues from the checkpoint.
    let (again, _) = valid(
        ProjectionRunner::open(backend.store.clone(), database.clone(), support::calendar()).await,
    );
    assert_eq!(valid(again.catch_up().await), read_model.position());
    database.close().await;
    backend.close().await;
}

async fn deliveries_are_retried_dead_lettered_and_retried_again(backend: TestBackend) {
    let (runner, read_model, database) = backend.projections().await;
    let runner = runner.with_escalations(planner());
    let mut complaint = ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
    for step in planned(&complaint)
        .into_iter()
        .filter(|step| step.level.as_str() == "warning")
    {
        raise(&mut complaint, &backend, step, at("2026-04-14T08:00:00Z")).await;
    }
    valid(runner.catch_up().await);
    // The warning has no email recipients: one webhook delivery only.
    let lease = Duration::seconds(30);
    let claimed = valid(
        read_model
            .claim_due_deliveries(at("2026-04-14T09:00:00Z"), lease, 10)
            .await,
    );
    assert_eq!(claimed.len(), 1);
    let delivery = claimed[0].clone();
    assert_eq!(delivery.target, "http://127.0.0.1:9/hook");
    assert_eq!(delivery.body["level"], "warning");

    // A failed try with a retry time: not claimable before it, claimable after.
    valid(
        read_model
            .mark_failed(
                delivery.delivery_id,
                1,
                "connection refused",
                Some(at("2026-04-14T09:05:00Z")),
            )
            .await,
    );
    assert!(
        valid(
            read_model
                .claim_due_deliveries(at("2026-04-14T09:04:59Z"), lease, 10)
                .await
        )
        .is_empty()
    );
    let again = valid(
        read_model
            .claim_due_deliveries(at("2026-04-14T09:05:00Z"), lease, 10)
            .await,
    );
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));

    // The last try: dead-lettered, listed, and never claimed again until retried.
    valid(
        read_model
            .mark_failed(delivery.delivery_id, 2, "HTTP 503", None)
            .await,
    );
    assert!(
        valid(
            read_model
                .claim_due_deliveries(at("2026-05-01T00:00:00Z"), lease, 10)
                .await
        )
        .is_empty()
    );
    let dead = valid(read_model.dead_letters(10, None).await);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 503"));
    let after_last = Some((dead[0].created_at, dead[0].delivery_id));
    assert!(valid(read_model.dead_letters(10, after_last).await).is_empty());
    assert_eq!(
        valid(read_model.delivery_state(delivery.delivery_id).await).as_deref(),
        Some("DEAD")
    );
    assert!(valid(
        read_model
            .retry_dead_letter(delivery.delivery_id, at("2026-05-01T00:00:00Z"))
            .await
    ));
    assert!(
        !valid(
            read_model
                .retry_dead_letter(delivery.delivery_id, at("2026-05-01T00:00:00Z"))
                .await
        ),
        "only a dead letter can be retried"
    );
    let retried = valid(
        read_model
            .claim_due_deliveries(at("2026-05-01T00:00:00Z"), lease, 10)
            .await,
    );
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].delivery_id, delivery.delivery_id);
    assert_eq!(retried[0].attempts, 0);
    valid(
        read_model
            .mark_delivered(delivery.delivery_id, 1, at("2026-05-01T00:00:01Z"))
            .await,
    );
    assert_eq!(
        valid(read_model.delivery_state(delivery.delivery_id).await).as_deref(),
        Some("DELIVERED")
    );
    database.close().await;
    backend.close().await;
}

/// A backlog's emails to one recipient about one complaint are claimed together, and the
/// notifier can tell that more of the complaint's levels are due and not raised yet.
async fn one_complaints_emails_to_one_recipient_are_claimed_together(backend: TestBackend) {
    let (runner, read_model, database) = backend.projections().await;
    let runner = runner.with_escalations(planner());
    let mut complaint = ComplaintWriter::log(&backend, at("2026-04-02T09:00:00Z")).await;
    valid(runner.catch_up().await);
    let id = complaint.id.to_string();
    // The warning is due at 08:00 on Friday 10 April; on Thursday 16 April every level up to
    // the liaison officer is.
    assert!(!valid(
        read_model
            .has_unraised_due_step(&id, at("2026-04-10T06:59:00Z"))
            .await
    ));
    assert!(valid(
        read_model
            .has_unraised_due_step(&id, at("2026-04-16T08:00:00Z"))
            .await
    ));
    let team = valid(EmailAddress::parse("e", "team@landlord.example"));
    for mut step in planned(&complaint).into_iter().take(3) {
        step.recipients = vec![team.clone()];
        raise(&mut complaint, &backend, step, at("2026-04-16T08:00:00Z")).await;
    }
    valid(runner.catch_up().await);
    // The next step, the contract manager, is not due until Monday 20 April ends.
    assert!(!valid(
        read_model
            .has_unraised_due_step(&id, at("2026-04-16T08:00:00Z"))
            .await
    ));
    let lease = Duration::seconds(30);
    let now = at("2026-04-16T08:00:01Z");
    let together: Vec<_> = valid(
        read_model
            .claim_email_companions(&id, "team@landlord.example", now, lease)
            .await,
    )
    .into_iter()
    .map(|row| valid(row.map_err(|unreadable| unreadable.reason)))
    .collect();
    let mut levels: Vec<String> = together
        .iter()
        .map(|delivery| {
            delivery.body["level"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    levels.sort();
    assert_eq!(levels, vec!["breach", "liaison_officer", "warning"]);
    // Held by this claim: nobody else takes them, until one is given back.
    assert!(
        valid(
            read_model
                .claim_email_companions(&id, "team@landlord.example", now, lease)
                .await
        )
        .is_empty()
    );
    assert!(
        valid(
            read_model
                .claim_email_companions(&id, "liaison@landlord.example", now, lease)
                .await
        )
        .is_empty(),
        "nothing else is owed to another recipient"
    );
    assert_eq!(
        valid(
            read_model
                .pending_email_companions(&id, "team@landlord.example")
                .await
        ),
        3
    );
    // A released email is still owed: a worker holding the others must not send without it.
    valid(read_model.release_delivery(together[0].delivery_id).await);
    assert_eq!(
        valid(
            read_model
                .pending_email_companions(&id, "team@landlord.example")
                .await
        ),
        3
    );
    let again = valid(
        read_model
            .claim_email_companions(&id, "team@landlord.example", now, lease)
            .await,
    );
    assert_eq!(again.len(), 1);
    database.close().await;
    backend.close().await;
}

on_every_backend!(
    schedule_follows_the_clock_and_rebuilds,
    deliveries_are_retried_dead_lettered_and_retried_again,
    one_complaints_emails_to_one_recipient_are_claimed_together
);
