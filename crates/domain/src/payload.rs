//! The stored form of events: the type is stored beside the payload, so the payload holds only
//! the event's fields.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::de::value::MapDeserializer;

use crate::complaint::EventDecodeError;

/// An internally tagged event (`#[serde(tag = "type")]`) as a payload without its tag.
pub fn untagged(event: &impl Serialize) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("type");
    }
    value
}

/// A stored payload as a reader has it: parsed, or the JSON text as stored (what a catch-up's
/// bulk read hands on, so that a payload is parsed once, into its event).
#[derive(Debug, Clone, Copy)]
pub enum StoredPayload<'a> {
    Parsed(&'a serde_json::Value),
    Text(&'a str),
}

impl<'a> From<&'a serde_json::Value> for StoredPayload<'a> {
    fn from(value: &'a serde_json::Value) -> Self {
        Self::Parsed(value)
    }
}

impl<'a> From<&'a Box<serde_json::value::RawValue>> for StoredPayload<'a> {
    fn from(text: &'a Box<serde_json::value::RawValue>) -> Self {
        Self::Text(text.get())
    }
}

impl StoredPayload<'_> {
    /// The payload as a JSON value (parsed, if it is text), for an upcaster to rewrite.
    pub fn to_value(
        self,
        event_type: &str,
        schema_version: u32,
    ) -> Result<serde_json::Value, EventDecodeError> {
        match self {
            Self::Parsed(value) => Ok(value.clone()),
            Self::Text(text) => serde_json::from_str(text).map_err(|e| EventDecodeError {
                event_type: event_type.to_owned(),
                schema_version,
                reason: format!("payload is not JSON: {e}"),
            }),
        }
    }
}

/// Reads a payload back into an internally tagged event of type `event_type`.
///
/// A payload's text is read straight into the event, with the tag written in front of its
/// fields. What that does not read (a payload with a `type` field of its own, or not an object)
/// is read as a parsed payload is, so both forms give the same event or the same error.
pub fn tagged<'a, T: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: impl Into<StoredPayload<'a>>,
) -> Result<T, EventDecodeError> {
    match payload.into() {
        StoredPayload::Parsed(value) => tagged_value(event_type, schema_version, value),
        StoredPayload::Text(text) => {
            if let Some(event) = with_tag(event_type, text)
                .and_then(|tagged| serde_json::from_str::<T>(&tagged).ok())
            {
                return Ok(event);
            }
            let value = StoredPayload::Text(text).to_value(event_type, schema_version)?;
            tagged_value(event_type, schema_version, &value)
        }
    }
}

/// The text of an object payload with `"type": event_type` as its first field.
fn with_tag(event_type: &str, text: &str) -> Option<String> {
    let fields = text.trim_start().strip_prefix('{')?;
    let tag = serde_json::to_string(event_type).ok()?;
    let mut tagged = String::with_capacity(text.len() + tag.len() + 9);
    tagged.push_str("{\"type\":");
    tagged.push_str(&tag);
    if !fields.trim_start().starts_with('}') {
        tagged.push(',');
    }
    tagged.push_str(fields);
    Some(tagged)
}

/// Reads a parsed payload where it lies, with the tag presented as its first field: a rebuild
/// decodes millions of stored payloads, and copying each parsed value (to insert the tag) cost
/// more than reading it. (The text path copies the text instead, which is cheap beside building
/// a value.)
fn tagged_value<T: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: &serde_json::Value,
) -> Result<T, EventDecodeError> {
    let error = |reason: String| EventDecodeError {
        event_type: event_type.to_owned(),
        schema_version,
        reason,
    };
    let serde_json::Value::Object(fields) = payload else {
        return Err(error("payload is not a JSON object".to_owned()));
    };
    let tag = serde_json::Value::from(event_type);
    // A stored `type` field gives way to the stored type, as it did when the tag was inserted.
    let entries = std::iter::once(("type", &tag)).chain(
        fields
            .iter()
            .filter(|(name, _)| name.as_str() != "type")
            .map(|(name, value)| (name.as_str(), value)),
    );
    T::deserialize(MapDeserializer::<_, serde_json::Error>::new(entries))
        .map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(tag = "type")]
    enum Sample {
        Opened { note: String, count: u32 },
        Closed {},
    }

    /// A payload as stored, read from its text and from its parsed value.
    fn both(event_type: &str, payload: serde_json::Value) -> [Result<Sample, String>; 2] {
        let text = payload.to_string();
        [
            tagged(event_type, 1, &payload).map_err(|error| error.reason),
            tagged(event_type, 1, StoredPayload::Text(&text)).map_err(|error| error.reason),
        ]
    }

    #[test]
    fn text_and_parsed_payloads_read_the_same() {
        let opened = Sample::Opened {
            note: "gate \"left\" open \u{1f3e0}".to_owned(),
            count: 2,
        };
        let payload = json!({ "note": "gate \"left\" open \u{1f3e0}", "count": 2 });
        assert_eq!(
            both("Opened", payload),
            [
                Ok(opened),
                Ok(Sample::Opened {
                    note: "gate \"left\" open \u{1f3e0}".to_owned(),
                    count: 2,
                })
            ]
        );
        assert_eq!(
            both("Closed", json!({})),
            [Ok(Sample::Closed {}), Ok(Sample::Closed {})]
        );
        // A stored `type` field gives way to the stored type in both.
        let [parsed, text] = both(
            "Opened",
            json!({ "type": "Closed", "note": "n", "count": 1 }),
        );
        assert_eq!(parsed, text);
        assert!(matches!(parsed, Ok(Sample::Opened { .. })), "{parsed:?}");
        // What does not read fails alike.
        for (event_type, payload) in [
            ("Opened", json!({ "note": "n" })),
            ("Opened", json!([1, 2])),
            ("Opened", json!("text")),
            ("Unknown", json!({})),
        ] {
            let [parsed, text] = both(event_type, payload.clone());
            assert!(parsed.is_err(), "{event_type} {payload} does not read");
            assert_eq!(parsed, text, "{event_type} {payload}");
        }
        let not_json = tagged::<Sample>("Opened", 1, StoredPayload::Text("{\"note\":"));
        assert!(not_json.is_err());
    }

    /// Texts as other writers store them (PostgreSQL's `jsonb` puts spaces in, a hand-written
    /// row may repeat a key or escape one) read as their parsed values do.
    #[test]
    fn texts_in_other_shapes_read_as_their_parsed_values() {
        for (event_type, text) in [
            ("Closed", "{ }"),
            ("Closed", "  {}"),
            ("Opened", "{\"count\": 1, \"note\": \"n\"}"),
            ("Opened", " { \"note\" : \"n\" ,\n \"count\" : 1 } "),
            ("Opened", "{\"note\":\"a\",\"note\":\"b\",\"count\":1}"),
            (
                "Opened",
                "{\"\\u0074ype\":\"Closed\",\"note\":\"n\",\"count\":1}",
            ),
            ("Opened", "{\"note\":\"\\u00e9\\n\",\"count\":1e0}"),
            ("Op\"ened", "{\"note\":\"n\",\"count\":1}"),
        ] {
            let value: serde_json::Value = serde_json::from_str(text)
                .unwrap_or_else(|error| panic!("{text} is JSON: {error}"));
            let parsed: Result<Sample, _> =
                tagged(event_type, 1, &value).map_err(|error| error.reason);
            let from_text: Result<Sample, _> =
                tagged(event_type, 1, StoredPayload::Text(text)).map_err(|error| error.reason);
            assert_eq!(parsed, from_text, "{event_type} {text}");
        }
        // The repeated key's last value stands, and an escaped `type` gives way to the stored
        // type, as they do in a parsed value.
        let text = "{\"note\":\"a\",\"note\":\"b\",\"count\":1}";
        assert_eq!(
            tagged::<Sample>("Opened", 1, StoredPayload::Text(text)).ok(),
            Some(Sample::Opened {
                note: "b".to_owned(),
                count: 1
            })
        );
    }
}
