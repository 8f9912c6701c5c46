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
        let text = |key: &str| {
            delivery
                .body
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let to: Mailbox = delivery
            .target
            .parse()
            .map_err(|error| DeliveryError::Message(format!("recipient: {error}")))?;
        let deadline = Deadline::from_code(&text("deadline"))
            .map_or_else(|| text("deadline"), |deadline| deadline.to_string());
        let deadline_date = text("deadline_date");
        let level = text("level");
        let complaint_id = text("complaint_id");
        let contractor_id = text("contractor_id");
        let raised_at = parse_time(&text("raised_at"));
        let lateness = match (
            chrono::NaiveDate::parse_from_str(&deadline_date, "%Y-%m-%d"),
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
        };
        let subject =
            format!("[Doorstep] {level}: {deadline} for complaint {complaint_id} ({lateness})");
        let body = format!(
            "A complaint about contractor {contractor_id} has reached escalation level \"{level}\".\n\
             \n\
             Complaint:      {complaint_id}\n\
             Contractor:     {contractor_id}\n\
             Deadline:       {deadline}, due {deadline_date}\n\
             How late:       {lateness}\n\
             Raised:         {raised}\n\
             Escalation id:  {escalation_id}\n\
             \n\
             What to do: open the complaint in Doorstep (GetComplaint {complaint_id}) and take \
             the step that is due under the Complaint Handling Code. Then acknowledge this \
             escalation (AcknowledgeEscalation with the escalation id above) so that everyone \
             told knows it is in hand.\n\
             \n\
             This message is sent at least once; a copy with the same Message-ID is the same \
             message.\n\
             Delivery id: {delivery_id}\n",
            raised = raised_at.map_or_else(
                || text("raised_at"),
                |at| at
                    .with_timezone(&chrono_tz_london())
                    .format("%A %-d %B %Y at %H:%M (UK time)")
                    .to_string()
            ),
            escalation_id = text("escalation_id"),
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
