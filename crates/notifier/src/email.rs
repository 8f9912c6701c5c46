//! Email deliveries over SMTP: one plain-text message per recipient that a person can act on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::{Deadline, working_days_late};
use doorstep_projections::Delivery;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::DeliveryError;

/// Sends escalation emails through one SMTP relay.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    calendar: WorkingDayCalendar,
}

impl EmailSender {
    /// Plain SMTP to `host:port` (the local MTA or a relay on a private network), no TLS.
    pub fn new(
        host: &str,
        port: u16,
        from: &str,
        timeout: Duration,
        calendar: WorkingDayCalendar,
    ) -> Result<Self, DeliveryError> {
        let from: Mailbox = from
            .parse()
            .map_err(|error| DeliveryError::Message(format!("notifier.email.from: {error}")))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from,
            calendar,
        })
    }

    /// The message for one delivery.
    pub fn message(&self, delivery: &Delivery) -> Result<Message, DeliveryError> {
        if crate::finding_email::is_finding(delivery) {
            return crate::finding_email::message(&self.from, &self.calendar, delivery);
        }
        // The outbox writes every one of these: a body without one is corrupt, and an email
        // with blanks for its complaint or deadline would hide that.
        let text = |key: &str| {
            delivery
                .body
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| DeliveryError::Message(format!("the escalation has no {key}")))
        };
        let to: Mailbox = delivery
            .target
            .parse()
            .map_err(|error| DeliveryError::Message(format!("recipient: {error}")))?;
        let deadline_code = text("deadline")?;
        let deadline = Deadline::from_code(&deadline_code)
            .map_or(deadline_code, |deadline| deadline.to_string());
        let deadline_date = text("deadline_date")?;
        let level = text("level")?;
        let complaint_id = text("complaint_id")?;
        let contractor_id = text("contractor_id")?;
        let raised_text = text("raised_at")?;
        let escalation_id = text("escalation_id")?;
        let raised_at = parse_time(&raised_text);
        let lateness = self.lateness(&deadline_date, raised_at);
        let subject =
            format!("[Doorstep] {level}: {deadline} for complaint {complaint_id} ({lateness})");
        // Lines stay short so the message travels as plain 7-bit text, readable even raw.
        let body = format!(
            "A complaint about contractor {contractor_id} has reached\n\
             escalation level \"{level}\".\n\
             \n\
             Complaint:      {complaint_id}\n\
             Contractor:     {contractor_id}\n\
             Deadline:       {deadline}, due {deadline_date}\n\
             How late:       {lateness}\n\
             Raised:         {raised}\n\
             Escalation id:  {escalation_id}\n\
             \n\
             What to do: open the complaint in Doorstep\n\
             (GetComplaint {complaint_id})\n\
             and take the step that is due under the Complaint Handling Code.\n\
             Then acknowledge this escalation (AcknowledgeEscalation with the\n\
             escalation id above) so that everyone told knows it is in hand.\n\
             \n\
             This message is sent at least once: a copy with the same\n\
             Message-ID is the same message.\n\
             Delivery id: {delivery_id}\n",
            raised = raised_at.map_or_else(
                || raised_text.clone(),
                |at| at
                    .with_timezone(&chrono_tz_london())
                    .format("%A %-d %B %Y at %H:%M (UK time)")
                    .to_string()
            ),
            delivery_id = delivery.delivery_id,
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@doorstep>", delivery.delivery_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| DeliveryError::Message(error.to_string()))
    }

    /// How late the escalation is, in words a person reads.
    fn lateness(&self, deadline_date: &str, raised_at: Option<DateTime<Utc>>) -> String {
        match (
            chrono::NaiveDate::parse_from_str(deadline_date, "%Y-%m-%d"),
            raised_at,
        ) {
            (Ok(date), Some(raised)) => match working_days_late(&self.calendar, date, raised) {
                0 if doorstep_domain::england_date(raised) > date => {
                    "missed: the deadline day has ended".to_owned()
                }
                0 => "not yet missed: this is a warning".to_owned(),
                1 => "1 working day late".to_owned(),
                days => format!("{days} working days late"),
            },
            _ => "lateness unknown".to_owned(),
        }
    }

    /// One attempt: the relay accepting the message is success.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), DeliveryError> {
        let message = self.message(delivery)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| DeliveryError::Smtp(error.to_string()))
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn chrono_tz_london() -> chrono_tz::Tz {
    chrono_tz::Europe::London
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(level: &str, raised_at: &str) -> Delivery {
        Delivery {
            delivery_id: uuid::Uuid::nil(),
            escalation_id: uuid::Uuid::nil(),
            channel: doorstep_projections::DeliveryChannel::Email,
            target: "head-of-service@landlord.example".to_owned(),
            body: serde_json::json!({
                "type": "escalation.raised",
                "escalation_id": "5f0c2d9e-0000-5000-8000-000000000001",
                "complaint_id": "01a216ae-0000-7000-8000-000000000001",
                "contractor_id": "acme-retrofit",
                "deadline": "STAGE_ONE_RESPONSE",
                "level": level,
                "deadline_date": "2026-04-13",
                "raised_at": raised_at,
            }),
            attempts: 0,
            last_error: None,
            created_at: Utc::now(),
            next_attempt_at: Utc::now(),
        }
    }

    fn text(level: &str, raised_at: &str) -> String {
        let sender = EmailSender::new(
            "localhost",
            25,
            "Doorstep <complaints@landlord.example>",
            Duration::from_secs(1),
            WorkingDayCalendar::england_and_wales(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let message = sender
            .message(&delivery(level, raised_at))
            .unwrap_or_else(|error| panic!("{error}"));
        String::from_utf8_lossy(&message.formatted()).replace("\r\n", "\n")
    }

    #[test]
    fn the_message_says_what_is_late_by_how_much_and_what_to_do() {
        // Raised as Monday 27 April ended: 10 working days after Monday 13 April.
        let message = text("head_of_service", "2026-04-27T23:00:00Z");
        let unfolded = message.replace("\n ", " ");
        assert!(unfolded.contains(
            "Subject: [Doorstep] head_of_service: stage 1 response for complaint \
             01a216ae-0000-7000-8000-000000000001 (10 working days late)"
        ));
        assert!(message.contains("Content-Transfer-Encoding: 7bit"));
        assert!(message.contains("(GetComplaint 01a216ae-0000-7000-8000-000000000001)\n"));
        assert!(message.contains("Contractor:     acme-retrofit\n"));
        assert!(message.contains("Deadline:       stage 1 response, due 2026-04-13\n"));
        assert!(message.contains("How late:       10 working days late\n"));
        assert!(message.contains("Raised:         Tuesday 28 April 2026 at 00:00 (UK time)\n"));
        assert!(message.contains("Message-ID: <00000000-0000-0000-0000-000000000000@doorstep>"));
        // A warning says it is not late yet.
        let warning = text("warning", "2026-04-10T23:00:00Z");
        assert!(warning.contains("How late:       not yet missed: this is a warning\n"));
    }
}
