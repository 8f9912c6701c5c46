//! The resident service standards that contractors agree to in their contracts.

use serde::{Deserialize, Serialize};

/// One resident service standard. Codes are stable identifiers; labels may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStandard {
    Courtesy,
    NoSmoking,
    Protection,
    Tidiness,
    Parking,
    FacilitiesPermission,
    GatesSecured,
    Identification,
    Other,
}

impl ServiceStandard {
    /// Every standard that ships by default, in catalogue order.
    pub const ALL: [ServiceStandard; 9] = [
        Self::Courtesy,
        Self::NoSmoking,
        Self::Protection,
        Self::Tidiness,
        Self::Parking,
        Self::FacilitiesPermission,
        Self::GatesSecured,
        Self::Identification,
        Self::Other,
    ];

    /// The stable code, as stored in events and read models.
    pub fn code(self) -> &'static str {
        match self {
            Self::Courtesy => "COURTESY",
            Self::NoSmoking => "NO_SMOKING",
            Self::Protection => "PROTECTION",
            Self::Tidiness => "TIDINESS",
            Self::Parking => "PARKING",
            Self::FacilitiesPermission => "FACILITIES_PERMISSION",
            Self::GatesSecured => "GATES_SECURED",
            Self::Identification => "IDENTIFICATION",
            Self::Other => "OTHER",
        }
    }

    /// Parses a stable code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|standard| standard.code() == code)
    }

    /// What the standard asks of a contractor, for people reading a report.
    pub fn label(self) -> &'static str {
        match self {
            Self::Courtesy => "Be polite and courteous",
            Self::NoSmoking => "No smoking in or next to residents' homes",
            Self::Protection => "Adequate floor and furniture protection",
            Self::Tidiness => "Leave work areas clean and tidy",
            Self::Parking => "Park with respect for the resident and neighbours",
            Self::FacilitiesPermission => {
                "Ask permission before using facilities such as the toilet"
            }
            Self::GatesSecured => "Close gates and doors behind you",
            Self::Identification => "Identify yourself: logo, named contact and phone number",
            Self::Other => "Anything else, described in text",
        }
    }
}

impl std::fmt::Display for ServiceStandard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for standard in ServiceStandard::ALL {
            assert_eq!(ServiceStandard::from_code(standard.code()), Some(standard));
        }
        assert_eq!(ServiceStandard::from_code("SMOKING"), None);
    }
}
