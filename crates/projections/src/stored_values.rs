//! Values as the escalation tables and the outbox store them (times as milliseconds or exact
//! RFC 3339 text, dates, ids and codes), and how each is read back: a value that cannot be read
//! is a corrupt record, never a default.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use doorstep_domain::escalation::{Deadline, EscalationLevel};
use uuid::Uuid;

use crate::ProjectionError;

pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(value: i64, key: &str) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::from_timestamp_millis(value).ok_or_else(|| corrupt(key, "time out of range"))
}

pub(crate) fn exact(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn corrupt(key: &str, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::CorruptRecord {
        table: "escalations",
        key: key.to_owned(),
        reason: reason.into(),
    }
}

pub(crate) fn parse_deadline(code: &str, key: &str) -> Result<Deadline, ProjectionError> {
    Deadline::from_code(code).ok_or_else(|| corrupt(key, format!("unknown deadline {code}")))
}

pub(crate) fn parse_date(text: &str, key: &str) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| corrupt(key, format!("invalid date {text}")))
}

/// Reads a time [`exact`] wrote. RFC 3339 has four-digit years only, so a time before year 1
/// or after 9999 (which `exact` writes with a sign or a fifth digit, as chrono does) is read
/// with chrono's own year format: a row this model wrote must never be one it cannot read.
pub(crate) fn parse_exact(text: &str, key: &str) -> Result<DateTime<Utc>, ProjectionError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    text.strip_suffix('Z')
        .and_then(|utc| chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .map(|at| at.and_utc())
        .ok_or_else(|| corrupt(key, format!("invalid time {text}")))
}

pub(crate) fn parse_uuid(text: &str, key: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(text).map_err(|_| corrupt(key, format!("invalid id {text}")))
}

pub(crate) fn parse_level(text: &str, key: &str) -> Result<EscalationLevel, ProjectionError> {
    EscalationLevel::parse("level", text).map_err(|_| corrupt(key, format!("invalid level {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_time_written_is_read_back_whatever_its_year() {
        for text in [
            "-0001-12-30T09:00:00.5Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "2026-04-02T09:00:00.123456789Z",
            "9999-12-31T23:59:59Z",
            "+10000-01-01T00:00:00Z",
        ] {
            let at: DateTime<Utc> = text
                .parse()
                .unwrap_or_else(|error| panic!("{text}: {error}"));
            let written = exact(at);
            assert_eq!(parse_exact(&written, "key").ok(), Some(at), "{written}");
        }
        assert!(parse_exact("not a time", "key").is_err());
        assert!(parse_exact("-0001-12-30T09:00:00+01:00", "key").is_err());
    }
}
