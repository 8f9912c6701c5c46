//! Parsed input: every value from outside becomes one of these types once, at the edge, and is
//! never validated again. A failure names the field so callers can fix their request.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a field of a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    /// The field's path in the request, e.g. `resident.phone` or `findings[1].standard`.
    pub field: String,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks length and control characters shared by every free-text field.
fn text(
    field: &str,
    value: &str,
    max_chars: usize,
    required: bool,
) -> Result<String, InvalidInput> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        return Err(InvalidInput::new(field, "is required"));
    }
    let length = trimmed.chars().count();
    if length > max_chars {
        return Err(InvalidInput::new(
            field,
            format!("is {length} characters long; at most {max_chars} are allowed"),
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(InvalidInput::new(field, "contains control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Checks an identifier made of letters, digits and `.`, `_`, `-`, `:`, `/`.
fn identifier(field: &str, value: &str, max_chars: usize) -> Result<String, InvalidInput> {
    let value = text(field, value, max_chars, true)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        return Err(InvalidInput::new(
            field,
            "may contain only letters, digits and . _ - : /",
        ));
    }
    Ok(value)
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, required = $required:expr $(, derive = $extra:ident)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize $(, $extra)?)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
                text(field, value, $max, $required).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! identifier_newtype {
    ($(#[$doc:meta])* $name:ident, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
                identifier(field, value, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier_newtype!(
    /// The contractor's identifier in the landlord's contractor registry.
    ContractorId, max = 64
);
identifier_newtype!(
    /// A completed visit's identifier from the work-order system.
    VisitId, max = 64
);
identifier_newtype!(
    /// The landlord's reference for the resident or tenancy.
    ResidentReference, max = 64
);
identifier_newtype!(
    /// The system or team that logged a complaint, e.g. `call-centre`.
    SourceSystem, max = 64
);
identifier_newtype!(
    /// A caller's key that makes a write idempotent (`idempotency_key`, `request_id`).
    RequestKey, max = 128
);

text_newtype!(
    /// A person's name as they gave it.
    PersonName, max = 200, required = false, derive = Default
);
text_newtype!(
    /// A member of staff who handles a stage, e.g. an officer's name or staff id.
    Handler, max = 128, required = true
);
text_newtype!(
    /// Short required text: a reason, a decision.
    ShortText, max = 2_000, required = true
);
text_newtype!(
    /// Optional short text.
    OptionalText, max = 2_000, required = false, derive = Default
);
text_newtype!(
    /// Long text: a complaint's description, a case note.
    LongText, max = 10_000, required = false, derive = Default
);
text_newtype!(
    /// A postal address.
    Address, max = 500, required = false, derive = Default
);

impl OptionalText {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A Unique Property Reference Number: 1 to 12 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Uprn(String);

impl Uprn {
    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
        let value = value.trim();
        if value.is_empty() {
            return Err(InvalidInput::new(field, "is required"));
        }
        if value.len() > 12 || !value.chars().all(|c| c.is_ascii_digit()) {
            return Err(InvalidInput::new(field, "must be a UPRN of 1 to 12 digits"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A UK or international phone number: digits with optional `+`, spaces, hyphens and brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
        let value = value.trim();
        let digits = value.chars().filter(char::is_ascii_digit).count();
        let allowed = value
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
        if !allowed || !(7..=15).contains(&digits) || value.len() > 32 {
            return Err(InvalidInput::new(
                field,
                "must be a phone number of 7 to 15 digits",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, checked for shape only: delivery proves the rest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
        let value = value.trim();
        let well_formed = value.len() <= 254
            && !value.chars().any(char::is_whitespace)
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            });
        if !well_formed {
            return Err(InvalidInput::new(field, "must be an email address"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A complaint's identifier: a UUID (time-ordered when Doorstep creates it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ComplaintId(Uuid);

impl ComplaintId {
    pub fn parse(field: &str, value: &str) -> Result<Self, InvalidInput> {
        let value = value.trim();
        if value.is_empty() {
            return Err(InvalidInput::new(field, "is required"));
        }
        Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| InvalidInput::new(field, "must be a complaint id (a UUID)"))
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for ComplaintId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_field() {
        let error = Uprn::parse("property.uprn", "12a").err();
        assert_eq!(error.map(|e| e.field), Some("property.uprn".to_owned()));
        assert!(ContractorId::parse("contractor_id", "").is_err());
        assert!(ContractorId::parse("contractor_id", "acme retrofit").is_err());
        assert!(ContractorId::parse("contractor_id", "acme-retrofit").is_ok());
    }

    #[test]
    fn oversized_text_is_refused() {
        let long = "x".repeat(LongText::MAX_CHARS + 1);
        let error = LongText::parse("description", &long).err();
        assert!(error.is_some_and(|e| e.reason.contains("at most 10000")));
    }

    #[test]
    fn phone_and_email_shapes() {
        assert!(PhoneNumber::parse("resident.phone", "+44 (0)20 7946 0018").is_ok());
        assert!(PhoneNumber::parse("resident.phone", "call me").is_err());
        assert!(EmailAddress::parse("resident.email", "a.resident@example.org").is_ok());
        assert!(EmailAddress::parse("resident.email", "a.resident@localhost").is_err());
        assert!(EmailAddress::parse("resident.email", "not an email").is_err());
    }

    #[test]
    fn text_is_trimmed_and_control_characters_refused() {
        assert_eq!(
            ShortText::parse("reason", "  late  ").map(|t| t.as_str().to_owned()),
            Ok("late".to_owned())
        );
        assert!(ShortText::parse("reason", "   ").is_err());
        assert!(ShortText::parse("reason", "bad\u{0}byte").is_err());
    }
}
