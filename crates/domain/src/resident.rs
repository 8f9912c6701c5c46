//! What happens to a resident as a person rather than to one complaint: today, only erasure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::input::{OptionalText, ResidentReference};

/// The one event of a resident's stream (`resident-<reference>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ResidentEvent {
    /// The resident's personal data was erased on request: the key that sealed their name,
    /// phone, email and address was destroyed, so every complaint they made reads as erased.
    /// Counts and rates are untouched; the complaints themselves stay.
    ResidentForgotten {
        resident_reference: ResidentReference,
        reason: OptionalText,
        forgotten_at: DateTime<Utc>,
    },
}

impl ResidentEvent {
    pub fn event_type(&self) -> &'static str {
        "ResidentForgotten"
    }

    pub fn schema_version(&self) -> u32 {
        1
    }

    pub fn to_payload(&self) -> serde_json::Value {
        crate::payload::untagged(self)
    }

    pub fn from_payload<'a>(
        event_type: &str,
        schema_version: u32,
        payload: impl Into<crate::payload::StoredPayload<'a>>,
    ) -> Result<Self, crate::complaint::EventDecodeError> {
        crate::payload::tagged(event_type, schema_version, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_erasure_event_round_trips_through_its_stored_form() {
        let event = ResidentEvent::ResidentForgotten {
            resident_reference: ResidentReference::parse("resident_reference", "T-1001")
                .unwrap_or_else(|error| panic!("{error}")),
            reason: OptionalText::parse("reason", "Subject access and erasure request")
                .unwrap_or_else(|error| panic!("{error}")),
            forgotten_at: Utc::now(),
        };
        let decoded = ResidentEvent::from_payload(
            event.event_type(),
            event.schema_version(),
            &event.to_payload(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(decoded, event);
    }
}
