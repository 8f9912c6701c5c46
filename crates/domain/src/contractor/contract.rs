//! What a contract says beyond its standards: who leads resident liaison, the equality conditions
//! the contractor accepted, and the resident champions' sign-off of the standards.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::input::{OptionalText, PersonName, ResidentReference, ShortText};
use crate::standard::ServiceStandard;

/// Who leads resident liaison under a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LiaisonLead {
    /// The landlord's own resident liaison officers.
    InHouse,
    /// The contractor's resident liaison officers.
    Contractor,
}

impl LiaisonLead {
    pub const ALL: [Self; 2] = [Self::InHouse, Self::Contractor];

    /// The stored code, as the read models keep it.
    pub fn code(self) -> &'static str {
        match self {
            Self::InHouse => "IN_HOUSE",
            Self::Contractor => "CONTRACTOR",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|lead| lead.code() == code)
    }
}

/// Who leads resident liaison under a contract, and the named contact residents are given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentLiaison {
    pub lead: LiaisonLead,
    pub contact_name: PersonName,
}

/// The equality conditions a contractor accepted in a contract, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EqualityConditions {
    /// Mandatory equality and diversity training for its staff.
    pub training: bool,
    /// Taking part in the landlord's equality audits.
    pub audits: bool,
    /// Keeping the landlord's code of conduct.
    pub code_of_conduct: bool,
    pub accepted_on: NaiveDate,
}

/// A resident champion: the landlord's reference, and a name only when the champion agreed to
/// publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentChampion {
    pub reference: ResidentReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_name: Option<PersonName>,
}

/// Resident champions' sign-off of the exact standards of one contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardsSignOff {
    pub contract_reference: ShortText,
    pub champions: Vec<ResidentChampion>,
    pub signed_off_on: NaiveDate,
    /// The standards signed off, exactly the contract's standards when signed.
    pub standards: Vec<ServiceStandard>,
    pub comments: OptionalText,
}

/// Equality and diversity training the contractor's staff completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EqualityTraining {
    pub trained_on: NaiveDate,
    pub course: ShortText,
    pub staff_trained: u32,
}

/// A contract's standards as a set: their order and repetition in a request mean nothing.
pub fn standard_set(standards: &[ServiceStandard]) -> BTreeSet<ServiceStandard> {
    standards.iter().copied().collect()
}

/// One contract's sign-off standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractSignOff {
    pub contract_reference: ShortText,
    /// True while the contract's standards are the ones its latest sign-off covered and have
    /// not changed since; a change makes it false until the champions sign off again.
    pub signed_off: bool,
    /// The latest sign-off, kept when it has gone stale so the page can say what was signed.
    pub latest: Option<StandardsSignOff>,
}

/// The liaison lead a complaint about a contractor is attributed to, from the contractor's
/// contracts: the lead they all name, or None (unknown) when there is no contract, a contract
/// names none, or two contracts name different leads.
pub fn attributed_lead<'a>(
    liaisons: impl IntoIterator<Item = Option<&'a ResidentLiaison>>,
) -> Option<LiaisonLead> {
    let mut leads = liaisons.into_iter();
    let first = leads.next()??.lead;
    leads
        .all(|liaison| liaison.is_some_and(|liaison| liaison.lead == first))
        .then_some(first)
}

/// Whether the latest equality audit (by audit date) is older than `max_age_months` before
/// `today`, or there is none: the contractor is then overdue an audit.
pub fn equality_audit_overdue(
    latest_audit: Option<NaiveDate>,
    today: NaiveDate,
    max_age_months: u32,
) -> bool {
    latest_audit.is_none_or(|latest| latest < oldest_audit_in_time(today, max_age_months))
}

/// The oldest audit date still within `max_age_months` of `today`: the same day of the month
/// `max_age_months` ago, or the last day of a month too short for it.
pub fn oldest_audit_in_time(today: NaiveDate, max_age_months: u32) -> NaiveDate {
    today
        .checked_sub_months(chrono::Months::new(max_age_months))
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap_or(NaiveDate::MIN)
    }

    fn liaison(lead: LiaisonLead) -> ResidentLiaison {
        ResidentLiaison {
            lead,
            contact_name: PersonName::default(),
        }
    }

    #[test]
    fn a_complaint_goes_to_the_lead_every_contract_names() {
        let in_house = liaison(LiaisonLead::InHouse);
        let contractor = liaison(LiaisonLead::Contractor);
        assert_eq!(attributed_lead([]), None);
        assert_eq!(
            attributed_lead([Some(&in_house), Some(&in_house)]),
            Some(LiaisonLead::InHouse)
        );
        assert_eq!(attributed_lead([Some(&in_house), Some(&contractor)]), None);
        assert_eq!(attributed_lead([Some(&contractor), None]), None);
        assert_eq!(attributed_lead([None]), None);
    }

    #[test]
    fn an_audit_is_overdue_once_older_than_the_window() {
        let today = date("2027-03-31");
        assert!(equality_audit_overdue(None, today, 12));
        assert!(!equality_audit_overdue(Some(date("2026-03-31")), today, 12));
        assert!(equality_audit_overdue(Some(date("2026-03-30")), today, 12));
        // 29 February counts back to 28 February.
        assert!(!equality_audit_overdue(
            Some(date("2027-02-28")),
            date("2028-02-29"),
            12
        ));
    }
}
