//! The API's enums and timestamps in words people read.

use doorstep_api::v1;

/// `SERVICE_STANDARD_GATES_SECURED` → "Gates secured".
fn sentence(name: &str, prefix: &str) -> String {
    let words = name
        .trim_start_matches(prefix)
        .replace('_', " ")
        .to_lowercase();
    let mut characters = words.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

pub fn standard(code: i32) -> String {
    v1::ServiceStandard::try_from(code).map_or_else(
        |_| "Unknown standard".to_owned(),
        |standard| sentence(standard.as_str_name(), "SERVICE_STANDARD_"),
    )
}

pub fn status(code: i32) -> String {
    v1::ComplaintStatus::try_from(code).map_or_else(
        |_| "Unknown".to_owned(),
        |status| sentence(status.as_str_name(), "COMPLAINT_STATUS_"),
    )
}

pub fn stage(code: i32) -> &'static str {
    match v1::Stage::try_from(code) {
        Ok(v1::Stage::One) => "Stage 1",
        Ok(v1::Stage::Two) => "Stage 2",
        _ => "—",
    }
}

pub fn deadline_status(code: i32) -> String {
    v1::DeadlineStatus::try_from(code).map_or_else(
        |_| "—".to_owned(),
        |status| match status {
            v1::DeadlineStatus::Unspecified => "—".to_owned(),
            other => sentence(other.as_str_name(), "DEADLINE_STATUS_"),
        },
    )
}

pub fn deadline(code: i32) -> String {
    v1::Deadline::try_from(code).map_or_else(
        |_| "—".to_owned(),
        |deadline| sentence(deadline.as_str_name(), "DEADLINE_"),
    )
}

pub fn audit_outcome(code: i32) -> String {
    v1::AuditOutcome::try_from(code).map_or_else(
        |_| "—".to_owned(),
        |outcome| sentence(outcome.as_str_name(), "AUDIT_OUTCOME_"),
    )
}

pub fn finding(code: i32) -> String {
    v1::FindingOutcome::try_from(code).map_or_else(
        |_| "—".to_owned(),
        |outcome| sentence(outcome.as_str_name(), "FINDING_OUTCOME_"),
    )
}

/// Who leads resident liaison, as a landlord says it.
pub fn liaison_lead(code: i32) -> &'static str {
    match v1::LiaisonLead::try_from(code) {
        Ok(v1::LiaisonLead::InHouse) => "In-house",
        Ok(v1::LiaisonLead::Contractor) => "Contractor",
        _ => "Unknown",
    }
}

/// A proportion (0 to 1) with its 95% interval, as "72.0% (95% interval 60.1% to 81.5%)"; a
/// dash when undefined.
pub fn share_with_interval(share: Option<&v1::Proportion>) -> String {
    match share.filter(|share| share.defined) {
        Some(share) => format!(
            "{:.1}% (95% interval {:.1}% to {:.1}%)",
            share.value * 100.0,
            share.lower * 100.0,
            share.upper * 100.0
        ),
        None => "—".to_owned(),
    }
}

/// A complaint id short enough to read and still tell complaints apart: its last 8 hex digits
/// (the first ones of a UUIDv7 are its time, shared by complaints logged close together).
pub fn short_id(id: &str) -> String {
    let hex: Vec<char> = id.chars().filter(char::is_ascii_hexdigit).collect();
    hex[hex.len().saturating_sub(8)..].iter().collect()
}

/// A setting's name in words: `contract_manager` → "Contract manager".
pub fn name(setting: &str) -> String {
    sentence(setting, "")
}

/// A timestamp as a date and time in England.
pub fn when(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|at| chrono::DateTime::from_timestamp(at.seconds, 0))
        .map_or_else(
            || "—".to_owned(),
            |at| {
                at.with_timezone(&chrono_tz::Europe::London)
                    .format("%-d %b %Y %H:%M")
                    .to_string()
            },
        )
}

/// A `YYYY-MM-DD` date as "5 May 2026"; empty as a dash.
pub fn date(text: &str) -> String {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_or_else(
        |_| {
            if text.is_empty() {
                "—".to_owned()
            } else {
                text.to_owned()
            }
        },
        |date| date.format("%-d %b %Y").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_read_as_words() {
        assert_eq!(
            standard(v1::ServiceStandard::GatesSecured as i32),
            "Gates secured"
        );
        assert_eq!(
            status(v1::ComplaintStatus::UnderInvestigation as i32),
            "Under investigation"
        );
        assert_eq!(date("2026-05-05"), "5 May 2026");
        assert_eq!(
            when(Some(&prost_types::Timestamp {
                seconds: 1_778_000_000,
                nanos: 0
            })),
            "5 May 2026 17:53"
        );
    }
}
