//! The escalation ladder: who is told, and when, as a Code deadline approaches and passes.
//!
//! Each of a complaint's four deadlines (stage 1 and stage 2, acknowledgement and response) has a
//! ladder of steps. A step is a named level and an offset in working days from the deadline. A
//! step on or after the deadline (`offset >= 0`) fires when working day `offset` relative to the
//! deadline has ended, in England: `0` when the deadline day has ended without the step being
//! taken (the breach), `3` when the step is three working days late. A step before the deadline
//! (a warning) fires at the start of its working day, at the policy's warning time (08:00 UK time
//! unless configured), so it is read that morning: `-1` on the morning of the last working day
//! before the deadline day, leaving that day and the deadline day to act. (Fired as that day
//! ended instead, a Monday deadline's warning came out at midnight on Saturday and was read on
//! the Monday.) Working days come from the same [`WorkingDayCalendar`] that set the deadline.
//!
//! An escalation is identified by (complaint, deadline, level, when the deadline's clock started),
//! so each level is raised at most once per clock, and a reopening, which restarts a clock, raises
//! the ladder afresh.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::WorkingDayCalendar;
use crate::complaint::{Event, Stage};
use crate::input::{ComplaintId, ContractorId, EmailAddress, InvalidInput};

/// Namespace of escalation ids.
const ESCALATION_NAMESPACE: Uuid = Uuid::from_u128(0x3f6e_92a4_51c7_4d0b_8e2a_6b1d_9c4f_e5a2);

/// The four deadlines the Code sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Deadline {
    StageOneAcknowledgement,
    StageOneResponse,
    StageTwoAcknowledgement,
    StageTwoResponse,
}

impl Deadline {
    pub const ALL: [Self; 4] = [
        Self::StageOneAcknowledgement,
        Self::StageOneResponse,
        Self::StageTwoAcknowledgement,
        Self::StageTwoResponse,
    ];

    pub fn acknowledgement(stage: Stage) -> Self {
        match stage {
            Stage::One => Self::StageOneAcknowledgement,
            Stage::Two => Self::StageTwoAcknowledgement,
        }
    }

    pub fn response(stage: Stage) -> Self {
        match stage {
            Stage::One => Self::StageOneResponse,
            Stage::Two => Self::StageTwoResponse,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::StageOneAcknowledgement => "STAGE_ONE_ACKNOWLEDGEMENT",
            Self::StageOneResponse => "STAGE_ONE_RESPONSE",
            Self::StageTwoAcknowledgement => "STAGE_TWO_ACKNOWLEDGEMENT",
            Self::StageTwoResponse => "STAGE_TWO_RESPONSE",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|deadline| deadline.code() == code)
    }

    /// The settings key of this deadline's ladder, e.g. `stage_one_response`.
    pub fn key(self) -> &'static str {
        match self {
            Self::StageOneAcknowledgement => "stage_one_acknowledgement",
            Self::StageOneResponse => "stage_one_response",
            Self::StageTwoAcknowledgement => "stage_two_acknowledgement",
            Self::StageTwoResponse => "stage_two_response",
        }
    }
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StageOneAcknowledgement => "stage 1 acknowledgement",
            Self::StageOneResponse => "stage 1 response",
            Self::StageTwoAcknowledgement => "stage 2 acknowledgement",
            Self::StageTwoResponse => "stage 2 response",
        })
    }
}

/// A level of the ladder, named by the landlord: `warning`, `breach`, `liaison_officer`, …
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EscalationLevel(String);

impl EscalationLevel {
    /// 1 to 64 characters of lower-case letters, digits and underscores.
    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
        let value = value.trim();
        let well_formed = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            return Err(InvalidInput::new(
                field,
                "must be 1 to 64 lower-case letters, digits or underscores",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EscalationLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One rung of a ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderStep {
    pub level: EscalationLevel,
    /// Working days relative to the deadline: negative before it, 0 at it, positive after it.
    pub offset_working_days: i32,
}

/// Who is told at which level, and the ladder of each deadline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EscalationPolicy {
    ladders: BTreeMap<Deadline, Vec<LadderStep>>,
    recipients: BTreeMap<EscalationLevel, Vec<EmailAddress>>,
    contractor_recipients: BTreeMap<String, BTreeMap<EscalationLevel, Vec<EmailAddress>>>,
    /// When, UK time, a step before the deadline fires on the morning of its working day.
    warning_time: WarningTime,
}

/// The UK time of day a warning (a step before its deadline) fires on its working day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarningTime(pub NaiveTime);

impl Default for WarningTime {
    /// 08:00, the start of the working day, so the warning is read that morning.
    fn default() -> Self {
        Self(NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN))
    }
}

/// Who an escalation message is written for: the landlord's staff, who see the resident's
/// reference and property address, or a contractor, who never sees a resident's personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Staff,
    Contractor,
}

/// Why a policy is refused; names the settings key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PolicyError {
    pub key: String,
    pub reason: String,
}

impl PolicyError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl EscalationPolicy {
    /// Builds a policy, refusing a ladder whose offsets do not strictly increase, a level named
    /// twice in one ladder, or recipients for a level no ladder has (a typo would otherwise
    /// silently tell nobody).
    pub fn new(
        ladders: BTreeMap<Deadline, Vec<LadderStep>>,
        recipients: BTreeMap<EscalationLevel, Vec<EmailAddress>>,
        contractor_recipients: BTreeMap<String, BTreeMap<EscalationLevel, Vec<EmailAddress>>>,
    ) -> Result<Self, PolicyError> {
        for (deadline, steps) in &ladders {
            let key = format!("escalation.ladders.{}", deadline.key());
            for (index, pair) in steps.windows(2).enumerate() {
                if pair[1].offset_working_days <= pair[0].offset_working_days {
                    return Err(PolicyError::new(
                        format!("{key}[{}]", index + 1),
                        "steps must be in strictly increasing working-day order",
                    ));
                }
            }
            for (index, step) in steps.iter().enumerate() {
                if steps[..index].iter().any(|other| other.level == step.level) {
                    return Err(PolicyError::new(
                        format!("{key}[{index}]"),
                        format!("level `{}` appears twice", step.level),
                    ));
                }
                if step.offset_working_days.unsigned_abs() > 250 {
                    return Err(PolicyError::new(
                        format!("{key}[{index}]"),
                        "offsets may be at most 250 working days either side of the deadline",
                    ));
                }
            }
        }
        let known = |level: &EscalationLevel| {
            ladders
                .values()
                .any(|steps| steps.iter().any(|step| &step.level == level))
        };
        for level in recipients.keys() {
            if !known(level) {
                return Err(PolicyError::new(
                    format!("escalation.recipients.{level}"),
                    "no ladder has this level",
                ));
            }
        }
        for (contractor, levels) in &contractor_recipients {
            for level in levels.keys() {
                if !known(level) {
                    return Err(PolicyError::new(
                        format!("escalation.contractor_recipients.{contractor}.{level}"),
                        "no ladder has this level",
                    ));
                }
            }
        }
        Ok(Self {
            ladders,
            recipients,
            contractor_recipients,
            warning_time: WarningTime::default(),
        })
    }

    /// The same policy with warnings firing at `time` (UK time) on their working day.
    #[must_use]
    pub fn with_warning_time(mut self, time: NaiveTime) -> Self {
        self.warning_time = WarningTime(time);
        self
    }

    /// When, UK time, warnings fire on their working day.
    pub fn warning_time(&self) -> NaiveTime {
        self.warning_time.0
    }

    /// Who `address` is. An address the landlord lists only under `escalation.recipients` is
    /// staff. An address listed for any contractor (even if also listed as staff), and one the
    /// policy no longer lists at all (the settings changed after the escalation was raised), is
    /// written to as a contractor: when in doubt, a message holds less personal data.
    pub fn audience(&self, address: &str) -> Audience {
        let same = |known: &EmailAddress| known.as_str().eq_ignore_ascii_case(address.trim());
        let listed_for_a_contractor = self
            .contractor_recipients
            .values()
            .flat_map(BTreeMap::values)
            .flatten()
            .any(same);
        let listed_as_staff = self.recipients.values().flatten().any(same);
        if listed_as_staff && !listed_for_a_contractor {
            Audience::Staff
        } else {
            Audience::Contractor
        }
    }

    /// The ladder of one deadline, in firing order.
    pub fn ladder(&self, deadline: Deadline) -> &[LadderStep] {
        self.ladders.get(&deadline).map_or(&[], Vec::as_slice)
    }

    /// Everyone told at `level` about a complaint against `contractor`: the level's own
    /// recipients, then the contractor's, without repeats.
    pub fn recipients(
        &self,
        level: &EscalationLevel,
        contractor: &ContractorId,
    ) -> Vec<EmailAddress> {
        let mut all: Vec<EmailAddress> = Vec::new();
        let own = self.recipients.get(level).into_iter().flatten();
        let contractor_own = self
            .contractor_recipients
            .get(contractor.as_str())
            .and_then(|levels| levels.get(level))
            .into_iter()
            .flatten();
        for address in own.chain(contractor_own) {
            if !all
                .iter()
                .any(|known| known.as_str().eq_ignore_ascii_case(address.as_str()))
            {
                all.push(address.clone());
            }
        }
        all
    }
}

/// A deadline whose clock is running: what the complaint is waiting for, by when, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningClock {
    pub deadline: Deadline,
    pub due: NaiveDate,
    pub started_at: DateTime<Utc>,
}

/// One step of a running clock's ladder, with when it falls due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledStep {
    pub level: EscalationLevel,
    pub offset_working_days: i32,
    pub due_at: DateTime<Utc>,
}

/// When each step of `ladder` falls due for a deadline on `deadline_date`, in firing order: a
/// step before the deadline at `warning_time` (UK time) on the morning of its working day, any
/// other as its working day ends.
pub fn ladder_due_times(
    deadline_date: NaiveDate,
    ladder: &[LadderStep],
    calendar: &WorkingDayCalendar,
    warning_time: NaiveTime,
) -> Vec<ScheduledStep> {
    ladder
        .iter()
        .map(|step| scheduled_step(deadline_date, step, calendar, warning_time))
        .collect()
}

/// When one step of a ladder falls due for a deadline on `deadline_date` (see
/// [`ladder_due_times`]).
fn scheduled_step(
    deadline_date: NaiveDate,
    step: &LadderStep,
    calendar: &WorkingDayCalendar,
    warning_time: NaiveTime,
) -> ScheduledStep {
    let day = shift_working_days(calendar, deadline_date, step.offset_working_days);
    ScheduledStep {
        level: step.level.clone(),
        offset_working_days: step.offset_working_days,
        due_at: if step.offset_working_days < 0 {
            england_time(day, warning_time)
        } else {
            end_of_england_day(day)
        },
    }
}

/// The instant `time` strikes on `date` in England. A time the clocks skip (between 01:00 and
/// 02:00 on the last Sunday of March) is taken an hour later; a time they repeat (the last
/// Sunday of October) is its first occurrence.
pub fn england_time(date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    let london = chrono_tz::Europe::London;
    london
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            london
                .from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .map_or_else(
            || Utc.from_utc_datetime(&local),
            |at| at.with_timezone(&Utc),
        )
}

/// `date` moved `offset` working days later (negative: earlier). Zero gives `date` itself.
pub fn shift_working_days(
    calendar: &WorkingDayCalendar,
    date: NaiveDate,
    offset: i32,
) -> NaiveDate {
    if offset >= 0 {
        return calendar.add_working_days(date, offset.unsigned_abs());
    }
    let mut day = date;
    let mut remaining = offset.unsigned_abs();
    while remaining > 0 {
        day = day.pred_opt().unwrap_or(day);
        if calendar.is_working_day(day) {
            remaining -= 1;
        }
    }
    day
}

/// The instant `date` ends in England: midnight at the start of the next day, London time.
pub fn end_of_england_day(date: NaiveDate) -> DateTime<Utc> {
    let next = date.succ_opt().unwrap_or(date);
    let midnight = next.and_time(NaiveTime::MIN);
    // The UK changes its clocks at 01:00 and 02:00, never at midnight, so midnight always exists
    // exactly once; `earliest` only guards against a future rule change.
    chrono_tz::Europe::London
        .from_local_datetime(&midnight)
        .earliest()
        .map_or_else(
            || Utc.from_utc_datetime(&midnight),
            |local| local.with_timezone(&Utc),
        )
}

/// How many whole working days `at` is past `deadline_date` (0 on or before it).
pub fn working_days_late(
    calendar: &WorkingDayCalendar,
    deadline_date: NaiveDate,
    at: DateTime<Utc>,
) -> u32 {
    let today = crate::calendar::england_date(at);
    if today <= deadline_date {
        return 0;
    }
    // Working days that have fully ended after the deadline: those before today.
    let yesterday = today - Duration::days(1);
    u32::try_from(
        calendar
            .working_days_between(deadline_date, yesterday)
            .max(0),
    )
    .unwrap_or(0)
}

/// The escalation id, also the id of the `EscalationRaised` event: the same complaint, deadline,
/// level and clock always give the same id, so no retry, restart or second replica raises twice.
pub fn escalation_id(
    complaint_id: &ComplaintId,
    deadline: Deadline,
    level: &EscalationLevel,
    clock_started_at: DateTime<Utc>,
) -> Uuid {
    Uuid::new_v5(
        &ESCALATION_NAMESPACE,
        format!(
            "complaint-{complaint_id}/{}/{level}/{}",
            deadline.code(),
            clock_started_at.timestamp_micros()
        )
        .as_bytes(),
    )
}

/// The running clock after `event`, given the one before it. This is what a read model that does
/// not fold whole complaints keeps; it agrees with [`crate::Complaint::running_clock`].
pub fn clock_after(current: Option<RunningClock>, event: &Event) -> Option<RunningClock> {
    match event {
        Event::ComplaintReceived {
            received_at,
            acknowledgement_due,
            ..
        } => Some(RunningClock {
            deadline: Deadline::StageOneAcknowledgement,
            due: *acknowledgement_due,
            started_at: *received_at,
        }),
        Event::ComplaintAcknowledged {
            stage,
            acknowledged_at,
            response_due,
            ..
        } => Some(RunningClock {
            deadline: Deadline::response(*stage),
            due: *response_due,
            started_at: *acknowledged_at,
        }),
        Event::DeadlineExtended { response_due, .. } => current.map(|clock| RunningClock {
            due: *response_due,
            ..clock
        }),
        Event::StageTwoRequested {
            requested_at,
            acknowledgement_due,
            ..
        } => Some(RunningClock {
            deadline: Deadline::StageTwoAcknowledgement,
            due: *acknowledgement_due,
            started_at: *requested_at,
        }),
        Event::ResponseIssued { .. }
        | Event::ComplaintClosed { .. }
        | Event::ComplaintWithdrawn { .. } => None,
        Event::ComplaintReopened {
            stage,
            reopened_at,
            acknowledgement_due,
            response_due,
            ..
        } => match (acknowledgement_due, response_due) {
            (Some(due), _) => Some(RunningClock {
                deadline: Deadline::acknowledgement(*stage),
                due: *due,
                started_at: *reopened_at,
            }),
            (None, Some(due)) => Some(RunningClock {
                deadline: Deadline::response(*stage),
                due: *due,
                started_at: *reopened_at,
            }),
            (None, None) => None,
        },
        Event::FindingsRecorded { .. }
        | Event::NoteAdded { .. }
        | Event::EscalationRaised { .. }
        | Event::EscalationAcknowledged { .. } => current,
    }
}

/// An escalation worked out for a complaint, ready to be raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEscalation {
    pub escalation_id: Uuid,
    pub contractor_id: ContractorId,
    pub deadline: Deadline,
    pub level: EscalationLevel,
    pub deadline_date: NaiveDate,
    pub clock_started_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub recipients: Vec<EmailAddress>,
}

/// The steps of `clock`'s ladder for a complaint, each with its id and recipients.
pub fn plan(
    complaint_id: &ComplaintId,
    contractor_id: &ContractorId,
    clock: &RunningClock,
    policy: &EscalationPolicy,
    calendar: &WorkingDayCalendar,
) -> Vec<PlannedEscalation> {
    plan_steps(complaint_id, contractor_id, clock, policy, calendar).collect()
}

/// [`plan`]'s steps in firing order, each worked out only when it is reached: the schedule wants
/// the first step not raised yet, and every step's id is a SHA-1 hash.
pub fn plan_steps<'a>(
    complaint_id: &'a ComplaintId,
    contractor_id: &'a ContractorId,
    clock: &'a RunningClock,
    policy: &'a EscalationPolicy,
    calendar: &'a WorkingDayCalendar,
) -> impl Iterator<Item = PlannedEscalation> + 'a {
    policy.ladder(clock.deadline).iter().map(move |step| {
        let step = scheduled_step(clock.due, step, calendar, policy.warning_time());
        PlannedEscalation {
            escalation_id: escalation_id(
                complaint_id,
                clock.deadline,
                &step.level,
                clock.started_at,
            ),
            contractor_id: contractor_id.clone(),
            deadline: clock.deadline,
            recipients: policy.recipients(&step.level, contractor_id),
            level: step.level,
            deadline_date: clock.due,
            clock_started_at: clock.started_at,
            due_at: step.due_at,
        }
    })
}

/// The default ladder for every deadline: a warning when one working day is left, the breach,
/// then the liaison officer, the contract manager and the head of service 2, 5 and 10 working
/// days late.
pub fn default_ladder() -> Vec<(String, i32)> {
    vec![
        ("warning".to_owned(), -1),
        ("breach".to_owned(), 0),
        ("liaison_officer".to_owned(), 2),
        ("contract_manager".to_owned(), 5),
        ("head_of_service".to_owned(), 10),
    ]
}
