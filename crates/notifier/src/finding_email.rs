//! The email for an inspection finding left unresolved: what was not met, where, how late, and
//! what to do, in plain English a contract manager can act on.

use chrono::NaiveDate;
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::working_days_late;
use doorstep_projections::Delivery;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};

use crate::DeliveryError;

/// The `type` of a finding escalation's document in the outbox.
pub const FINDING_DOCUMENT_TYPE: &str = "inspection_finding.escalated";

/// Whether a delivery is of a finding escalation (not a complaint's).
pub fn is_finding(delivery: &Delivery) -> bool {
    delivery
        .body
        .get("type")
        .and_then(serde_json::Value::as_str)
        == Some(FINDING_DOCUMENT_TYPE)
}

/// The message for one delivery of a finding escalation.
pub fn message(
    from: &Mailbox,
    calendar: &WorkingDayCalendar,
    delivery: &Delivery,
) -> Result<Message, DeliveryError> {
    // The outbox writes every one of these: a body without one is corrupt, and an email with a
    // blank where the inspection or standard should be would hide that.
    let text = |key: &str| {
        delivery
            .body
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DeliveryError::Message(format!("the finding escalation has no {key}")))
    };
    let to: Mailbox = delivery
        .target
        .parse()
        .map_err(|error| DeliveryError::Message(format!("recipient: {error}")))?;
    let level = text("level")?;
    let inspection_id = text("inspection_id")?;
    let finding_id = text("finding_id")?;
    let contractor_id = text("contractor_id")?;
    let standard = text("standard_label")?;
    let due_text = text("due_date")?;
    let raised_text = text("raised_at")?;
    let raised_at = crate::email::parse_time(&raised_text);
    let due = NaiveDate::parse_from_str(&due_text, "%Y-%m-%d").ok();
    let lateness = match (due, raised_at) {
        (Some(due), Some(raised)) => match working_days_late(calendar, due, raised) {
            0 => "overdue: its due day has ended".to_owned(),
            1 => "1 working day overdue".to_owned(),
            days => format!("{days} working days overdue"),
        },
        _ => "overdue".to_owned(),
    };
    let due_words = due.map_or_else(|| due_text.clone(), crate::email::uk_date);
    let subject = format!(
        "[Doorstep] {level}: inspection finding not resolved for {contractor_id} ({lateness})"
    );
    // Lines stay short so the message travels as plain 7-bit text, readable even raw.
    let body = format!(
        "An officer inspected work by {contractor_id} and found that a\n\
         service standard was not met. It should have been put right by\n\
         the end of {due_words}, and it has not been marked as\n\
         resolved. It is now {lateness}.\n\
         \n\
         Standard not met: {standard}\n\
         Contractor:       {contractor_id}\n\
         Inspection:       {inspection_id}\n\
         Finding:          {finding_id}\n\
         Resolve by:       {due_text}\n\
         Escalated to:     {level}\n\
         \n\
         What to do: read the inspection in Doorstep\n\
         (GetInspection {inspection_id}),\n\
         agree with {contractor_id} how the problem will be put right,\n\
         and once it is, record what was done (ResolveInspectionFinding\n\
         with the finding id above). Resolving the finding stops any\n\
         further escalation.\n\
         \n\
         This message is sent at least once: a copy with the same\n\
         Message-ID is the same message.\n\
         Delivery id: {delivery_id}\n",
        delivery_id = delivery.delivery_id,
    );
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{}@doorstep>", delivery.delivery_id)))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|error| DeliveryError::Message(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn the_message_says_what_was_not_met_how_late_and_what_to_do() {
        let delivery = Delivery {
            delivery_id: uuid::Uuid::nil(),
            escalation_id: uuid::Uuid::nil(),
            channel: doorstep_projections::DeliveryChannel::Email,
            target: "contracts@landlord.example".to_owned(),
            body: serde_json::json!({
                "type": FINDING_DOCUMENT_TYPE,
                "escalation_id": "5f0c2d9e-0000-5000-8000-000000000001",
                "finding_id": "7a0c2d9e-0000-5000-8000-000000000002",
                "inspection_id": "9b0c2d9e-0000-5000-8000-000000000003",
                "contractor_id": "acme-retrofit",
                "standard": "TIDINESS",
                "standard_label": "Leave work areas clean and tidy",
                "level": "contract_manager",
                "due_date": "2026-04-16",
                // Raised as Thursday 16 April ended (UK midnight is 23:00 UTC in summer).
                "raised_at": "2026-04-16T23:00:00Z",
            }),
            attempts: 0,
            last_error: None,
            created_at: Utc::now(),
            next_attempt_at: Utc::now(),
        };
        let from: Mailbox = "Doorstep <complaints@landlord.example>"
            .parse()
            .unwrap_or_else(|error| panic!("{error}"));
        let message = message(&from, &WorkingDayCalendar::england_and_wales(), &delivery)
            .unwrap_or_else(|error| panic!("{error}"));
        let text = String::from_utf8_lossy(&message.formatted()).replace("\r\n", "\n");
        let unfolded = text.replace("\n ", " ");
        assert!(unfolded.contains(
            "Subject: [Doorstep] contract_manager: inspection finding not resolved for \
             acme-retrofit (overdue: its due day has ended)"
        ));
        assert!(text.contains("the end of Thursday 16 April 2026, and it has not been marked"));
        assert!(text.contains("resolved. It is now overdue: its due day has ended.\n"));
        assert!(text.contains("Standard not met: Leave work areas clean and tidy\n"));
        assert!(text.contains("(GetInspection 9b0c2d9e-0000-5000-8000-000000000003),\n"));
        assert!(text.contains("Content-Transfer-Encoding: 7bit"));
        let mut without_standard = delivery.clone();
        if let Some(body) = without_standard.body.as_object_mut() {
            body.remove("standard_label");
        }
        assert!(message_error(&from, &without_standard).contains("standard_label"));
    }

    fn message_error(from: &Mailbox, delivery: &Delivery) -> String {
        message(from, &WorkingDayCalendar::england_and_wales(), delivery)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default()
    }
}
