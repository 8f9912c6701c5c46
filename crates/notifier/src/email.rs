//! Email deliveries over SMTP: one plain-text message per recipient and complaint that a person
//! can act on, written for who reads it. The landlord's staff see the resident's reference and
//! the property; a contractor never sees a resident's personal data, and is told in words what
//! is expected of it. Levels, deadlines, dates and lateness are in words, the contractor by name,
//! and the complaint is linked to its case page.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::{
    Audience, Deadline, EscalationPolicy, end_of_england_day, shift_working_days, working_days_late,
};
use doorstep_projections::Delivery;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::DeliveryError;
use crate::case::CaseDetails;

/// Where a message links to when no template is configured: the console's case page on this
/// machine.
const DEFAULT_CASE_URL_TEMPLATE: &str = "http://127.0.0.1:8080/complaints/{complaint_id}";

/// The width body text is wrapped to: lettre sends lines under 76 characters as plain 7-bit
/// text, readable even raw.
const WIDTH: usize = 74;

/// Sends escalation emails through one SMTP relay.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    calendar: WorkingDayCalendar,
    policy: EscalationPolicy,
    case_url_template: String,
}

/// One email: the delivery it is sent for (the highest level reached), the other deliveries to
/// the same recipient about the same complaint that it stands for (a backlog caught up at once),
/// and the complaint's details when they could be found.
#[derive(Debug, Clone, Copy)]
pub struct Letter<'a> {
    pub main: &'a Delivery,
    pub also: &'a [Delivery],
    pub case: Option<&'a CaseDetails>,
}

/// The escalation fields of an outbox body that a message is written from.
struct Escalation {
    complaint_id: String,
    contractor_id: String,
    deadline: Option<Deadline>,
    deadline_text: String,
    deadline_date: Option<NaiveDate>,
    deadline_date_text: String,
    level: String,
    raised_at: Option<DateTime<Utc>>,
    due_at: Option<DateTime<Utc>>,
}

impl Escalation {
    fn read(delivery: &Delivery) -> Result<Self, DeliveryError> {
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
        let deadline_code = text("deadline")?;
        let deadline = Deadline::from_code(&deadline_code);
        let deadline_date_text = text("deadline_date")?;
        Ok(Self {
            complaint_id: text("complaint_id")?,
            contractor_id: text("contractor_id")?,
            deadline,
            deadline_text: deadline.map_or(deadline_code, |deadline| deadline.to_string()),
            deadline_date: NaiveDate::parse_from_str(&deadline_date_text, "%Y-%m-%d").ok(),
            deadline_date_text,
            level: text("level")?,
            raised_at: parse_time(&text("raised_at")?),
            due_at: delivery
                .body
                .get("due_at")
                .and_then(serde_json::Value::as_str)
                .and_then(parse_time),
        })
    }

    /// Whether the step fell due before its deadline had passed: a warning.
    fn before_deadline(&self) -> bool {
        match (self.due_at, self.deadline_date) {
            (Some(due), Some(date)) => due < end_of_england_day(date),
            _ => self.level == "warning",
        }
    }

    /// The deadline date in words, or as stored when it cannot be read.
    fn deadline_day(&self) -> String {
        self.deadline_date
            .map_or_else(|| self.deadline_date_text.clone(), uk_date)
    }
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
            policy: EscalationPolicy::default(),
            case_url_template: DEFAULT_CASE_URL_TEMPLATE.to_owned(),
        })
    }

    /// The policy that says who each recipient is ([`EscalationPolicy::audience`]). Without
    /// one, every recipient is written to as a contractor, with no resident data.
    #[must_use]
    pub fn with_policy(mut self, policy: EscalationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The link to a complaint: `{complaint_id}` in the template is replaced by its id.
    #[must_use]
    pub fn with_case_url_template(mut self, template: &str) -> Self {
        template.trim().clone_into(&mut self.case_url_template);
        self
    }

    /// The message for a letter.
    pub fn letter(&self, letter: &Letter<'_>) -> Result<Message, DeliveryError> {
        let delivery = letter.main;
        if crate::finding_email::is_finding(delivery) {
            return crate::finding_email::message(&self.from, &self.calendar, delivery);
        }
        let to: Mailbox = delivery
            .target
            .parse()
            .map_err(|error| DeliveryError::Message(format!("recipient: {error}")))?;
        let escalation = Escalation::read(delivery)?;
        let also = letter
            .also
            .iter()
            .map(Escalation::read)
            .collect::<Result<Vec<_>, _>>()?;
        let audience = self.policy.audience(&delivery.target);
        let subject = self.subject(&escalation, letter.case, audience);
        let body = self.body(&escalation, &also, letter.case, audience, delivery);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@doorstep>", delivery.delivery_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| DeliveryError::Message(error.to_string()))
    }

    fn subject(
        &self,
        escalation: &Escalation,
        case: Option<&CaseDetails>,
        audience: Audience,
    ) -> String {
        let headline = self.headline(escalation);
        let deadline = &escalation.deadline_text;
        let day = escalation.deadline_day();
        let what = if escalation.before_deadline() {
            format!("{headline} for the {deadline}, due by the end of {day}")
        } else {
            match self.days_late(escalation) {
                Some(days @ 1..) => format!(
                    "{headline}: the {deadline} is {days} working day{} late",
                    if days == 1 { "" } else { "s" }
                ),
                _ => format!("{headline}: the {deadline} was due by the end of {day}"),
            }
        };
        let contractor = contractor_name(escalation, case);
        let which = match (audience, case) {
            (Audience::Staff, Some(case)) => {
                format!("resident {}, {contractor}", case.resident_reference)
            }
            (
                _,
                Some(CaseDetails {
                    received_at: Some(received),
                    ..
                }),
            ) => format!(
                "complaint received {} about {contractor}",
                uk_date(doorstep_domain::england_date(*received))
            ),
            _ => format!("complaint about {contractor}"),
        };
        format!("[Doorstep] {what} ({which})")
    }

    /// The level in words; a warning says when the deadline is.
    fn headline(&self, escalation: &Escalation) -> String {
        let title = level_title(&escalation.level);
        if !escalation.before_deadline() {
            return title;
        }
        let when = match (escalation.raised_at, escalation.deadline_date) {
            (Some(raised), Some(date)) => {
                let today = doorstep_domain::england_date(raised);
                if today == date {
                    "deadline today".to_owned()
                } else if today.succ_opt() == Some(date) {
                    "deadline tomorrow".to_owned()
                } else {
                    format!("deadline on {}", date.format("%A"))
                }
            }
            _ => format!("deadline on {}", escalation.deadline_day()),
        };
        format!("{title}: {when}")
    }

    fn body(
        &self,
        escalation: &Escalation,
        also: &[Escalation],
        case: Option<&CaseDetails>,
        audience: Audience,
        delivery: &Delivery,
    ) -> String {
        let mut body = String::new();
        let contractor = contractor_name(escalation, case);
        paragraph(&mut body, &self.opening(escalation, audience, &contractor));
        let mut fields: Vec<(&str, String)> = Vec::new();
        if audience == Audience::Staff
            && let Some(case) = case
        {
            fields.push(("Resident", case.resident_reference.clone()));
            fields.push((
                "Property",
                case.property_address
                    .clone()
                    .unwrap_or_else(|| "erased at the resident's request".to_owned()),
            ));
        }
        fields.push(("Contractor", contractor_full_name(escalation, case)));
        if let Some(case) = case {
            let standards = if case.standards.is_empty() {
                "none recorded".to_owned()
            } else {
                case.standards.join("; ")
            };
            fields.push(("Standards alleged", standards));
        }
        if let Some(stage) = escalation.deadline.map(stage_of) {
            fields.push(("Stage", format!("Stage {stage}")));
        }
        fields.push((
            "Deadline",
            format!(
                "{}, due {}",
                escalation.deadline_text,
                escalation.deadline_day()
            ),
        ));
        fields.push(("How late", self.lateness(escalation)));
        if let Some(case) = case {
            fields.push((
                "Handled by",
                case.handler
                    .clone()
                    .unwrap_or_else(|| "nobody yet: no handler is recorded".to_owned()),
            ));
            if let Some(received) = case.received_at {
                fields.push(("Received", uk_date(doorstep_domain::england_date(received))));
            }
        }
        if let Some(raised) = escalation.raised_at {
            fields.push(("Escalated", uk_time(raised)));
        }
        for (label, value) in &fields {
            field(&mut body, label, value);
        }
        body.push('\n');
        if !also.is_empty() {
            body.push_str("Also reached for this complaint, and not sent separately:\n");
            for other in also {
                let when = other
                    .due_at
                    .map_or_else(|| other.deadline_day(), due_in_words);
                // The deadline is named only when it is not the message's own.
                let deadline = if other.deadline_text == escalation.deadline_text {
                    String::new()
                } else {
                    format!(" ({})", other.deadline_text)
                };
                hanging(
                    &mut body,
                    "  - ",
                    &format!("{}{deadline}, {when}", level_title(&other.level)),
                );
            }
            body.push('\n');
        }
        body.push_str("Open the complaint:\n");
        body.push_str(&self.case_url(&escalation.complaint_id));
        body.push_str("\n\n");
        paragraph(&mut body, &self.what_to_do(escalation, audience));
        paragraph(
            &mut body,
            "This message is sent at least once: a copy with the same Message-ID is the same \
             message.",
        );
        body.push_str(&format!("Delivery id: {}\n", delivery.delivery_id));
        body
    }

    fn opening(&self, escalation: &Escalation, audience: Audience, contractor: &str) -> String {
        let about = match audience {
            Audience::Staff => format!("A complaint about {contractor}"),
            Audience::Contractor => format!("A complaint about {contractor}'s work"),
        };
        let deadline = &escalation.deadline_text;
        let day = escalation.deadline_day();
        if escalation.before_deadline() {
            return format!(
                "{about}: its {deadline} is due by the end of {day}, under the Complaint \
                 Handling Code. This is a warning; the deadline has not passed."
            );
        }
        let late = self.lateness(escalation).to_lowercase();
        match escalated_to(&escalation.level) {
            Some(whom) => format!(
                "{about} has been escalated to {whom}: its {deadline} was due by the end of \
                 {day} and is {late}."
            ),
            None => format!(
                "{about} has missed a deadline under the Complaint Handling Code: its \
                 {deadline} was due by the end of {day} and is {late}."
            ),
        }
    }

    fn what_to_do(&self, escalation: &Escalation, audience: Audience) -> String {
        let team = self.from.email.to_string();
        match audience {
            Audience::Staff => {
                let step = match escalation.deadline {
                    Some(Deadline::StageOneAcknowledgement | Deadline::StageTwoAcknowledgement) => {
                        "acknowledge the complaint to the resident, and define and log it"
                            .to_owned()
                    }
                    Some(deadline) => format!(
                        "send the resident the stage {} response, or agree an extension and \
                         tell the resident why, with the Ombudsman's contact details",
                        stage_of(deadline)
                    ),
                    None => "take the step that is due".to_owned(),
                };
                format!(
                    "What to do: {step}, as the Complaint Handling Code requires. Then record \
                     on the complaint that you have taken this escalation on, so that everyone \
                     told knows it is in hand."
                )
            }
            Audience::Contractor => {
                let by = escalation
                    .raised_at
                    .map(|raised| {
                        let today = doorstep_domain::england_date(raised);
                        uk_date(shift_working_days(&self.calendar, today, 1))
                    })
                    .unwrap_or_else(|| "the next working day".to_owned());
                if escalation.before_deadline() {
                    format!(
                        "What we need from you: if the complaints team has asked you for \
                         information about this complaint, please send it to them at {team} \
                         by the end of {by}, so that the deadline can be met."
                    )
                } else {
                    let whom = match escalated_to(&escalation.level) {
                        Some(whom) => format!("respond to {whom} through the complaints team"),
                        None => "contact the complaints team".to_owned(),
                    };
                    format!(
                        "What we need from you: please {whom} at {team} by the end of {by}, \
                         with your account of what happened and what you have done, or will \
                         do, to put it right."
                    )
                }
            }
        }
    }

    fn case_url(&self, complaint_id: &str) -> String {
        self.case_url_template
            .replace("{complaint_id}", complaint_id)
    }

    /// Whole working days past the deadline when the escalation was raised.
    fn days_late(&self, escalation: &Escalation) -> Option<u32> {
        let (date, raised) = escalation.deadline_date.zip(escalation.raised_at)?;
        Some(working_days_late(&self.calendar, date, raised))
    }

    /// How late the escalation is, in words a person reads.
    fn lateness(&self, escalation: &Escalation) -> String {
        match (escalation.deadline_date, escalation.raised_at) {
            (Some(date), Some(raised)) => match working_days_late(&self.calendar, date, raised) {
                0 if doorstep_domain::england_date(raised) > date => {
                    "Missed: the deadline day has ended".to_owned()
                }
                0 => "Not yet missed: this is a warning".to_owned(),
                1 => "1 working day late".to_owned(),
                days => format!("{days} working days late"),
            },
            _ => "Lateness unknown".to_owned(),
        }
    }

    /// One attempt: the relay accepting the message is success.
    pub async fn send(&self, letter: &Letter<'_>) -> Result<(), DeliveryError> {
        let message = self.letter(letter)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| DeliveryError::Smtp(error.to_string()))
    }
}

/// A ladder level in words: the default ladder's levels by name, any other with its underscores
/// as spaces.
pub fn level_title(level: &str) -> String {
    match level {
        "warning" => "Warning".to_owned(),
        "breach" => "Deadline missed".to_owned(),
        "liaison_officer" => "Liaison officer".to_owned(),
        "contract_manager" => "Contract manager".to_owned(),
        "head_of_service" => "Head of Service".to_owned(),
        other => {
            let words = other.replace('_', " ");
            let mut letters = words.chars();
            letters.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(letters).collect()
            })
        }
    }
}

/// Who a level past the breach brings in, in a sentence; `None` for the warning and the breach.
fn escalated_to(level: &str) -> Option<String> {
    match level {
        "warning" | "breach" => None,
        "head_of_service" => Some("the Head of Service".to_owned()),
        other => Some(format!("the {}", other.replace('_', " "))),
    }
}

fn stage_of(deadline: Deadline) -> u8 {
    match deadline {
        Deadline::StageOneAcknowledgement | Deadline::StageOneResponse => 1,
        Deadline::StageTwoAcknowledgement | Deadline::StageTwoResponse => 2,
    }
}

/// The contractor's registered name, or its id when it is not registered.
fn contractor_name(escalation: &Escalation, case: Option<&CaseDetails>) -> String {
    case.and_then(|case| case.contractor_name.clone())
        .unwrap_or_else(|| escalation.contractor_id.clone())
}

/// The contractor's name and the names it trades under.
fn contractor_full_name(escalation: &Escalation, case: Option<&CaseDetails>) -> String {
    let name = contractor_name(escalation, case);
    match case.map(|case| &case.contractor_trading_names) {
        Some(trading) if !trading.is_empty() => {
            format!("{name} (trading as {})", trading.join(", "))
        }
        _ => name,
    }
}

/// A date as a person in the UK writes it: "Friday 11 December 2026".
pub fn uk_date(date: NaiveDate) -> String {
    date.format("%A %-d %B %Y").to_string()
}

/// An instant in UK time: "Friday 11 December 2026 at 08:00 (UK time)".
fn uk_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Europe::London)
        .format("%A %-d %B %Y at %H:%M (UK time)")
        .to_string()
}

/// When a step fell due: "at the end of Monday 13 April 2026" for one that fires as its day
/// ends (at midnight), otherwise the day and time.
fn due_in_words(due: DateTime<Utc>) -> String {
    let local = due.with_timezone(&chrono_tz::Europe::London);
    if local.time() == chrono::NaiveTime::MIN {
        let day = local.date_naive().pred_opt().unwrap_or(local.date_naive());
        format!("at the end of {}", uk_date(day))
    } else {
        format!("on {}", uk_time(due))
    }
}

pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Words wrapped to `WIDTH`, each line after the first starting with `indent`.
fn wrapped(text: &str, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

fn paragraph(body: &mut String, text: &str) {
    body.push_str(&wrapped(text, "", ""));
    body.push('\n');
}

fn hanging(body: &mut String, first: &str, text: &str) {
    body.push_str(&wrapped(text, first, &" ".repeat(first.len() + 2)));
}

fn field(body: &mut String, label: &str, value: &str) {
    let first = format!("{:<19}", format!("{label}:"));
    body.push_str(&wrapped(value, &first, &" ".repeat(19)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(target: &str, level: &str, raised_at: &str, due_at: &str) -> Delivery {
        Delivery {
            delivery_id: uuid::Uuid::nil(),
            escalation_id: uuid::Uuid::nil(),
            channel: doorstep_projections::DeliveryChannel::Email,
            target: target.to_owned(),
            body: serde_json::json!({
                "type": "escalation.raised",
                "escalation_id": "5f0c2d9e-0000-5000-8000-000000000001",
                "complaint_id": "01a216ae-0000-7000-8000-000000000001",
                "contractor_id": "acme-retrofit",
                "deadline": "STAGE_ONE_RESPONSE",
                "level": level,
                "deadline_date": "2026-04-13",
                "due_at": due_at,
                "raised_at": raised_at,
            }),
            attempts: 0,
            last_error: None,
            created_at: Utc::now(),
            next_attempt_at: Utc::now(),
        }
    }

    fn policy() -> EscalationPolicy {
        use doorstep_domain::escalation::{EscalationLevel, LadderStep};
        use doorstep_domain::input::EmailAddress;
        use std::collections::BTreeMap;
        let level = |name: &str| {
            EscalationLevel::parse("level", name).unwrap_or_else(|error| panic!("{error}"))
        };
        let address =
            |text: &str| EmailAddress::parse("to", text).unwrap_or_else(|error| panic!("{error}"));
        let steps = vec![
            LadderStep {
                level: level("warning"),
                offset_working_days: -1,
            },
            LadderStep {
                level: level("head_of_service"),
                offset_working_days: 10,
            },
        ];
        EscalationPolicy::new(
            BTreeMap::from([(Deadline::StageOneResponse, steps)]),
            BTreeMap::from([(
                level("head_of_service"),
                vec![address("head-of-service@landlord.example")],
            )]),
            BTreeMap::from([(
                "acme-retrofit".to_owned(),
                BTreeMap::from([(
                    level("head_of_service"),
                    vec![address("complaints@acme.example")],
                )]),
            )]),
        )
        .unwrap_or_else(|error| panic!("{error}"))
    }

    fn case() -> CaseDetails {
        CaseDetails {
            contractor_name: Some("Acme Retrofit Ltd".to_owned()),
            contractor_trading_names: vec!["Acme Warm Homes".to_owned()],
            standards: vec!["Gates and doors left as found".to_owned()],
            received_at: Some(
                "2026-03-30T09:00:00Z"
                    .parse()
                    .unwrap_or_else(|_| Utc::now()),
            ),
            handler: Some("Ann Officer".to_owned()),
            resident_reference: "T-1001".to_owned(),
            property_address: Some("1 Example Road, Leeds".to_owned()),
        }
    }

    fn text(delivery: &Delivery, case: Option<&CaseDetails>) -> String {
        let sender = EmailSender::new(
            "localhost",
            25,
            "Doorstep <complaints@landlord.example>",
            Duration::from_secs(1),
            WorkingDayCalendar::england_and_wales(),
        )
        .unwrap_or_else(|error| panic!("{error}"))
        .with_policy(policy())
        .with_case_url_template("https://doorstep.example/c/{complaint_id}");
        let message = sender
            .letter(&Letter {
                main: delivery,
                also: &[],
                case,
            })
            .unwrap_or_else(|error| panic!("{error}"));
        let raw = String::from_utf8_lossy(&message.formatted()).replace("\r\n", "\n");
        // Long headers are folded; the body is as written.
        let (headers, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        format!("{}\n\n{body}", headers.replace("\n ", " "))
    }

    #[test]
    fn staff_read_the_level_the_names_the_deadline_and_lateness_in_words_and_a_link() {
        // Raised as Monday 27 April ended: 10 working days after Monday 13 April.
        let message = text(
            &delivery(
                "head-of-service@landlord.example",
                "head_of_service",
                "2026-04-27T23:00:00Z",
                "2026-04-27T23:00:00Z",
            ),
            Some(&case()),
        );
        assert!(
            message.contains(
                "Subject: [Doorstep] Head of Service: the stage 1 response is 10 working days \
                 late (resident T-1001, Acme Retrofit Ltd)"
            ),
            "{message}"
        );
        assert!(
            message.contains("Content-Transfer-Encoding: 7bit"),
            "{message}"
        );
        assert!(message.contains("Resident:          T-1001\n"), "{message}");
        assert!(message.contains("Property:          1 Example Road, Leeds\n"));
        assert!(
            message.contains("Contractor:        Acme Retrofit Ltd (trading as Acme Warm Homes)\n")
        );
        assert!(message.contains("Standards alleged: Gates and doors left as found\n"));
        assert!(message.contains("Stage:             Stage 1\n"));
        assert!(
            message.contains("Deadline:          stage 1 response, due Monday 13 April 2026\n")
        );
        assert!(message.contains("How late:          10 working days late\n"));
        assert!(message.contains("Handled by:        Ann Officer\n"));
        assert!(message.contains("Escalated:         Tuesday 28 April 2026 at 00:00 (UK time)\n"));
        assert!(
            message.contains("https://doorstep.example/c/01a216ae-0000-7000-8000-000000000001\n")
        );
        assert!(message.contains("Message-ID: <00000000-0000-0000-0000-000000000000@doorstep>"));
        assert!(!message.contains("AcknowledgeEscalation"));
        assert!(!message.contains("head_of_service"));
    }

    #[test]
    fn a_contractor_reads_no_resident_data_and_what_is_expected_in_words() {
        let message = text(
            &delivery(
                "complaints@acme.example",
                "head_of_service",
                "2026-04-27T23:00:00Z",
                "2026-04-27T23:00:00Z",
            ),
            Some(&case()),
        );
        assert!(!message.contains("T-1001"), "{message}");
        assert!(!message.contains("Example Road"));
        assert!(message.contains(
            "Subject: [Doorstep] Head of Service: the stage 1 response is 10 working days \
             late (complaint received Monday 30 March 2026 about Acme Retrofit Ltd)"
        ));
        // Raised on Tuesday 28 April: a reply is wanted by the end of the next working day.
        let unwrapped = message.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(unwrapped.contains(
            "please respond to the Head of Service through the complaints team at \
             complaints@landlord.example by the end of Wednesday 29 April 2026"
        ));
    }

    #[test]
    fn a_warning_says_when_the_deadline_is() {
        // Raised at 08:00 on Friday 10 April for Monday 13 April.
        let message = text(
            &delivery(
                "head-of-service@landlord.example",
                "warning",
                "2026-04-10T07:00:00Z",
                "2026-04-10T07:00:00Z",
            ),
            Some(&case()),
        );
        assert!(message.contains(
            "Subject: [Doorstep] Warning: deadline on Monday for the stage 1 response, due by \
             the end of Monday 13 April 2026 (resident T-1001, Acme Retrofit Ltd)"
        ));
        assert!(message.contains("How late:          Not yet missed: this is a warning\n"));
        // Raised at 08:00 on Monday 13 April for Tuesday 14 April.
        let mut tuesday = delivery(
            "head-of-service@landlord.example",
            "warning",
            "2026-04-13T07:00:00Z",
            "2026-04-13T07:00:00Z",
        );
        tuesday.body["deadline_date"] = serde_json::json!("2026-04-14");
        assert!(text(&tuesday, Some(&case())).contains(
            "Subject: [Doorstep] Warning: deadline tomorrow for the stage 1 response, due by \
             the end of Tuesday 14 April 2026 (resident T-1001, Acme Retrofit Ltd)"
        ));
        assert_eq!(level_title("site_visit_needed"), "Site visit needed");
    }
}
